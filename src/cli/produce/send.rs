//! Sending sealed batches to partition leaders with Produce, retrying retriable errors.
//!
//! A failed batch is reported on stderr at once and counted; the producer goes on with the
//! rest and exits non-zero at the end. A broken connection stops everything.

use std::collections::BTreeMap;
use std::thread::sleep;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::records::Compression;

use super::super::error::{CliError, KafkaError};
use super::super::limits::{METADATA_RETRY_BACKOFF_MS, PRODUCE_ATTEMPT_COUNT_MAX, REQUEST_TIMEOUT_MS};
use super::super::metadata::{self, TopicInfo};
use super::super::pool::BrokerPool;
use super::batch::{self, PartitionBatch};

/// Kafka's LEADER_NOT_AVAILABLE error code.
const LEADER_NOT_AVAILABLE: i16 = 5;

/// How records are sent.
#[derive(Debug, Clone)]
pub struct Settings {
    /// 0, 1 or -1 (all in-sync replicas).
    pub acks: i16,
    pub compression: Compression,
    /// Headers put on every record.
    pub headers: Vec<(String, Bytes)>,
}

/// A batch encoded for the wire.
#[derive(Debug, Clone)]
pub struct SealedBatch {
    pub partition: i32,
    pub record_count: usize,
    pub records: Bytes,
}

/// Sends batches of one topic and keeps count of those that failed.
pub struct Sender {
    pool: BrokerPool,
    topic: TopicInfo,
    settings: Settings,
    failed_batch_count: usize,
    failed_record_count: usize,
}

impl Sender {
    pub fn new(pool: BrokerPool, topic: TopicInfo, settings: Settings) -> Self {
        Sender { pool, topic, settings, failed_batch_count: 0, failed_record_count: 0 }
    }

    /// Sends the batches, retrying retriable errors after refreshing metadata.
    pub fn send(&mut self, batches: Vec<PartitionBatch>) -> Result<(), CliError> {
        let mut pending = Vec::with_capacity(batches.len());
        for b in batches {
            match batch::encode(&b.records, &self.settings.headers, self.settings.compression) {
                Ok(records) => pending.push(SealedBatch { partition: b.partition, record_count: b.records.len(), records }),
                Err(e) => self.fail(b.records.len(), &e),
            }
        }
        let mut attempt = 1;
        while !pending.is_empty() {
            let retry = self.send_once(pending)?;
            if attempt >= PRODUCE_ATTEMPT_COUNT_MAX {
                for (b, e) in retry {
                    self.fail(b.record_count, &e.into());
                }
                return Ok(());
            }
            if !retry.is_empty() {
                sleep(Duration::from_millis(METADATA_RETRY_BACKOFF_MS));
                self.topic = metadata::wait_for_leaders(&mut self.pool, &self.topic.name, false)?;
            }
            pending = retry.into_iter().map(|(b, _)| b).collect();
            attempt += 1;
        }
        Ok(())
    }

    /// Ok when every batch was produced, else how many were not.
    pub fn finish(self) -> Result<(), CliError> {
        if self.failed_batch_count == 0 {
            return Ok(());
        }
        Err(CliError::ProduceFailed { batch_count: self.failed_batch_count, record_count: self.failed_record_count })
    }

    fn fail(&mut self, record_count: usize, error: &CliError) {
        for line in error.report_lines() {
            eprintln!("{line}");
        }
        self.failed_batch_count += 1;
        self.failed_record_count += record_count;
    }

    /// One pass over the leaders; returns the batches worth retrying.
    fn send_once(&mut self, batches: Vec<SealedBatch>) -> Result<Vec<(SealedBatch, KafkaError)>, CliError> {
        let mut retry = Vec::new();
        for (leader, group) in group_by_leader(&self.topic, batches) {
            if leader < 0 {
                for b in group {
                    let error = KafkaError { code: LEADER_NOT_AVAILABLE, text: self.context(&b) };
                    retry.push((b, error));
                }
                continue;
            }
            retry.extend(self.send_to(leader, group)?);
        }
        Ok(retry)
    }

    fn send_to(&mut self, leader: i32, group: Vec<SealedBatch>) -> Result<Vec<(SealedBatch, KafkaError)>, CliError> {
        let request = produce_request(&self.topic, &group, self.settings.acks);
        let connection = self.pool.broker(leader)?;
        let version = connection.version_of(ApiKey::Produce)?;
        if self.settings.acks == 0 {
            // The broker sends no response to acks=0.
            connection.send_only(&request, version)?;
            return Ok(Vec::new());
        }
        let mut outcomes = partition_outcomes(connection.call_at(&request, version)?);
        let mut retry = Vec::new();
        for b in group {
            match outcomes.remove(&b.partition) {
                Some(None) => {}
                Some(Some((code, message))) => {
                    let text = message.map_or_else(|| self.context(&b), |m| format!("{}: {m}", self.context(&b)));
                    let error = KafkaError { code, text };
                    if error.is_retriable() {
                        retry.push((b, error));
                    } else {
                        self.fail(b.record_count, &error.into());
                    }
                }
                None => {
                    let error = CliError::input(format!("{}: broker sent no result", self.context(&b)));
                    self.fail(b.record_count, &error);
                }
            }
        }
        Ok(retry)
    }

    fn context(&self, b: &SealedBatch) -> String {
        format!("cannot produce {} records to {}-{}", b.record_count, self.topic.name, b.partition)
    }
}

/// Batches grouped by the current leader of their partition (-1 when it has none).
fn group_by_leader(topic: &TopicInfo, batches: Vec<SealedBatch>) -> BTreeMap<i32, Vec<SealedBatch>> {
    let mut groups: BTreeMap<i32, Vec<SealedBatch>> = BTreeMap::new();
    for b in batches {
        let leader = topic.partition(b.partition).map_or(-1, |p| p.leader_id);
        groups.entry(leader).or_default().push(b);
    }
    groups
}

/// One Produce request for the batches.
pub fn produce_request(topic: &TopicInfo, batches: &[SealedBatch], acks: i16) -> ProduceRequest {
    let batches = batches.iter().map(|b| (b.partition, b.records.clone()));
    fjord_client::requests::produce_request(&topic.name, topic.topic_id, acks, REQUEST_TIMEOUT_MS, batches)
}

/// Per partition: `None` on success, else the error code and the broker's message (or the
/// first per-record error message). The request names one topic, so partitions are unique.
fn partition_outcomes(response: ProduceResponse) -> BTreeMap<i32, Option<(i16, Option<String>)>> {
    let partitions = response.responses.into_iter().flat_map(|t| t.partition_responses);
    partitions
        .map(|p| {
            let record_message = p.record_errors.iter().find_map(|e| e.batch_index_error_message.as_ref());
            let message = p.error_message.as_ref().or(record_message).map(|m| m.to_string());
            let outcome = (p.error_code != 0).then_some((p.error_code, message));
            (p.index, outcome)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
    use kafka_protocol::protocol::StrBytes;
    use uuid::Uuid;

    fn topic() -> TopicInfo {
        TopicInfo { name: "t".into(), topic_id: Uuid::from_u128(7), error_code: 0, is_internal: false, partitions: vec![] }
    }

    #[test]
    fn produce_request_carries_the_topic_id_acks_and_each_batch() {
        let batch = SealedBatch { partition: 2, record_count: 1, records: Bytes::from_static(b"raw") };
        let request = produce_request(&topic(), &[batch], -1);
        assert_eq!((request.acks, request.timeout_ms), (-1, REQUEST_TIMEOUT_MS));
        assert_eq!(request.topic_data[0].topic_id, Uuid::from_u128(7));
        let partition = &request.topic_data[0].partition_data[0];
        assert_eq!((partition.index, partition.records.as_deref()), (2, Some(&b"raw"[..])));
    }

    #[test]
    fn produce_outcomes_prefer_the_partition_message_then_record_errors() {
        use kafka_protocol::messages::produce_response::BatchIndexAndErrorMessage;
        let ok = PartitionProduceResponse::default().with_index(0);
        let failed = PartitionProduceResponse::default()
            .with_index(1)
            .with_error_code(87)
            .with_record_errors(vec![BatchIndexAndErrorMessage::default()
                .with_batch_index_error_message(Some(StrBytes::from_static_str("bad record")))]);
        let response = ProduceResponse::default()
            .with_responses(vec![TopicProduceResponse::default().with_partition_responses(vec![ok, failed])]);
        let outcomes = partition_outcomes(response);
        assert_eq!(outcomes[&0], None);
        assert_eq!(outcomes[&1], Some((87, Some("bad record".to_string()))));
    }
}
