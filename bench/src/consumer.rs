//! A consumer: one connection, a set of partitions, a Fetch loop (one fetch in flight, no fetch
//! session: every request lists all partitions still being read). Responses are walked batch
//! header by batch header; nothing is decoded beyond the headers except, when measuring end-to-end
//! latency, the first record's stamp.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use fjord_client::batch::Batches;
use fjord_client::requests::{fetch_request, FetchPosition};
use kafka_protocol::messages::ApiKey;
use uuid::Uuid;

use crate::batch::{first_record_stamp_ns, realtime_ns};
use crate::error::{BenchError, Result};
use crate::shared::Shared;
use crate::wire::{self, Timeouts};
use crate::workload::Workload;

const OFFSET_OUT_OF_RANGE: i16 = 1;
/// Error responses in a row after which a consumer gives up.
const CONSECUTIVE_ERRORS_MAX: u32 = 100;
/// Stamps further than this from the consumer's clock are not from this run.
const STAMP_SKEW_NS_MAX: u64 = 3_600_000_000_000;

#[derive(Debug, Clone)]
pub struct ConsumerPlan {
    pub name: String,
    pub address: String,
    pub topic: String,
    /// (partition, first offset to read, offset to stop at or `None` to tail).
    pub partitions: Vec<(i32, i64, Option<i64>)>,
    pub workload: Workload,
    pub timeouts: Timeouts,
    pub measure_e2e: bool,
    /// First fetch not before this (the start of the measured run).
    pub start: std::time::Instant,
}

struct Cursor {
    partition: i32,
    next_offset: i64,
    stop_offset: Option<i64>,
}

impl Cursor {
    fn done(&self) -> bool {
        self.stop_offset.is_some_and(|stop| self.next_offset >= stop)
    }
}

/// What a fetch response held for one partition.
#[derive(Debug, Default, PartialEq)]
pub struct Walked {
    pub records: u64,
    pub bytes: u64,
    pub next_offset: i64,
}

/// Walks the batch headers of one partition's records, from `next_offset` on; a partial batch at
/// the end (allowed by the protocol) is left for the next fetch. Calls `on_batch` with each whole
/// batch so the caller may read its stamp.
pub fn walk_batches(records: &Bytes, next_offset: i64, mut on_batch: impl FnMut(&Bytes)) -> Walked {
    let mut walked = Walked { next_offset, ..Walked::default() };
    for batch in Batches::new(records.clone()).map_while(|batch| batch.ok()) {
        let header = batch.header;
        if header.next_offset() > walked.next_offset {
            let first = header.base_offset.max(walked.next_offset);
            walked.records += (header.next_offset() - first) as u64;
            walked.bytes += header.size_bytes as u64;
            walked.next_offset = header.next_offset();
            on_batch(&batch.bytes);
        }
    }
    walked
}

pub fn run_consumer(plan: ConsumerPlan, shared: Arc<Shared>) -> Result<()> {
    let mut connection = wire::open(&plan.address, plan.timeouts)?;
    let version = connection.version_of(ApiKey::Fetch)?;
    let mut cursors: Vec<Cursor> = plan
        .partitions
        .iter()
        .map(|&(partition, next_offset, stop_offset)| Cursor { partition, next_offset, stop_offset })
        .collect();
    if !crate::schedule::sleep_until(plan.start, &shared.stop_consumers) {
        return Ok(());
    }
    let mut consecutive_errors = 0u32;
    while !shared.stop_consumers.load(Ordering::Relaxed) {
        let active: Vec<FetchPosition> = cursors
            .iter()
            .filter(|c| !c.done())
            .map(|c| FetchPosition {
                partition: c.partition,
                offset: c.next_offset,
                size_bytes: plan.workload.fetch_partition_max_bytes,
            })
            .collect();
        if active.is_empty() {
            shared.note_caught_up();
            break;
        }
        let (wait_ms, size_bytes_max) = (plan.workload.fetch_max_wait_ms, plan.workload.fetch_max_bytes);
        let request = fetch_request(&plan.topic, Uuid::nil(), &active, wait_ms, size_bytes_max);
        let response = connection.call_at(&request, version)?;
        if response.error_code != 0 {
            return Err(BenchError::Broker { api: "Fetch", code: response.error_code, detail: String::new() });
        }
        let (mut records, mut bytes, mut errors) = (0u64, 0u64, 0u32);
        for partition_data in response.responses.iter().flat_map(|t| t.partitions.iter()) {
            let Some(cursor) = cursors.iter_mut().find(|c| c.partition == partition_data.partition_index) else { continue };
            if partition_data.error_code != 0 {
                errors += 1;
                shared.consumed.add_error();
                shared.note_broker_error(partition_data.error_code);
                if partition_data.error_code == OFFSET_OUT_OF_RANGE && partition_data.log_start_offset > cursor.next_offset {
                    cursor.next_offset = partition_data.log_start_offset;
                }
                continue;
            }
            let Some(data) = partition_data.records.as_ref() else { continue };
            let walked = walk_batches(data, cursor.next_offset, |batch| {
                if plan.measure_e2e {
                    record_e2e(batch, &shared);
                }
            });
            records += walked.records;
            bytes += walked.bytes;
            cursor.next_offset = walked.next_offset;
        }
        if records > 0 {
            shared.consumed.add(records, bytes, 0);
        }
        consecutive_errors = if errors > 0 && records == 0 { consecutive_errors + 1 } else { 0 };
        if consecutive_errors >= CONSECUTIVE_ERRORS_MAX {
            return Err(BenchError::Broker {
                api: "Fetch",
                code: shared.broker_errors().last().map_or(0, |e| e.0),
                detail: format!(" in {CONSECUTIVE_ERRORS_MAX} responses in a row"),
            });
        }
    }
    Ok(())
}

fn record_e2e(batch: &Bytes, shared: &Shared) {
    let Some(stamp) = first_record_stamp_ns(batch) else { return };
    let now = realtime_ns();
    if stamp.abs_diff(now) > STAMP_SKEW_NS_MAX || stamp < shared.origin_realtime_ns {
        return;
    }
    shared.e2e_latency.record(now.saturating_sub(stamp));
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::Compression;

    use super::*;
    use crate::batch::{BatchSpec, ProduceTemplate};
    use crate::rng::Rng;
    use crate::workload::KeyDistribution;

    fn batch_at(base_offset: i64, records: u32, stamp: u64) -> Vec<u8> {
        let spec = BatchSpec {
            topic: "t".to_string(),
            partition: 0,
            records,
            record_size_bytes: 32,
            key_distribution: KeyDistribution::None,
            compression: Compression::None,
            acks: 1,
            timeout_ms: 1000,
            produce_version: 9,
        };
        let mut template = ProduceTemplate::build(spec, &mut Rng::new(1)).unwrap();
        template.prepare(1, stamp).unwrap();
        let mut batch = template.batch().to_vec();
        batch[..8].copy_from_slice(&base_offset.to_be_bytes());
        batch
    }

    #[test]
    fn walking_counts_whole_batches_and_stops_at_a_partial_one() {
        let mut data = batch_at(0, 5, 11);
        data.extend(batch_at(5, 3, 22));
        let whole = data.len();
        data.extend(&batch_at(8, 4, 33)[..70]);
        let mut stamps = Vec::new();
        let walked = walk_batches(&Bytes::from(data), 0, |b| stamps.push(first_record_stamp_ns(b).unwrap()));
        assert_eq!(walked, Walked { records: 8, bytes: whole as u64, next_offset: 8 });
        assert_eq!(stamps, vec![11, 22]);
    }

    #[test]
    fn walking_from_inside_a_batch_counts_only_the_rest() {
        let data = Bytes::from(batch_at(10, 10, 1));
        let walked = walk_batches(&data, 15, |_| {});
        assert_eq!(walked.records, 5);
        assert_eq!(walked.next_offset, 20);
        let walked = walk_batches(&data, 20, |_| panic!("already read"));
        assert_eq!(walked, Walked { records: 0, bytes: 0, next_offset: 20 });
    }
}
