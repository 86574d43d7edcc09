//! The data-path requests as a plain (group-less, non-transactional) client sends them: Produce,
//! Fetch and ListOffsets for one topic. Both the topic name (Produce and Fetch up to v12) and the
//! topic id (v13+) are filled; the encoder writes the one its version has.

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchRequest, ListOffsetsRequest, ProduceRequest};
use uuid::Uuid;

use crate::connection::Connection;
use crate::error::{ClientError, KafkaError};
use crate::metadata::topic_name;

/// ListOffsets timestamp asking for the log start offset.
pub const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets timestamp asking for the log end offset (high watermark).
pub const LATEST_TIMESTAMP: i64 = -1;

/// One Produce request carrying one encoded batch (`records`) per partition.
pub fn produce_request(
    topic: &str,
    topic_id: Uuid,
    acks: i16,
    timeout_ms: i32,
    batches: impl IntoIterator<Item = (i32, Bytes)>,
) -> ProduceRequest {
    let partition_data = batches
        .into_iter()
        .map(|(partition, records)| PartitionProduceData::default().with_index(partition).with_records(Some(records)))
        .collect();
    let topic_data =
        TopicProduceData::default().with_name(topic_name(topic)).with_topic_id(topic_id).with_partition_data(partition_data);
    ProduceRequest::default().with_acks(acks).with_timeout_ms(timeout_ms).with_topic_data(vec![topic_data])
}

/// Where one partition is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPosition {
    pub partition: i32,
    /// The next offset to fetch.
    pub offset: i64,
    /// How much of this partition one response may carry.
    pub size_bytes: i32,
}

/// A session-less, read-uncommitted Fetch for the given positions, answered after up to
/// `wait_ms` once it has a byte, with at most `size_bytes_max` in all.
pub fn fetch_request(
    topic: &str,
    topic_id: Uuid,
    positions: &[FetchPosition],
    wait_ms: i32,
    size_bytes_max: i32,
) -> FetchRequest {
    let partitions = positions
        .iter()
        .map(|p| {
            FetchPartition::default()
                .with_partition(p.partition)
                .with_fetch_offset(p.offset)
                .with_partition_max_bytes(p.size_bytes)
        })
        .collect();
    let fetch_topic = FetchTopic::default().with_topic(topic_name(topic)).with_topic_id(topic_id).with_partitions(partitions);
    FetchRequest::default()
        .with_max_wait_ms(wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(size_bytes_max)
        .with_isolation_level(0)
        .with_topics(vec![fetch_topic])
}

/// A ListOffsets request as a consumer sends it (replica id -1, read uncommitted).
pub fn list_offsets_request(topic: &str, partitions: &[i32], timestamp: i64, timeout_ms: i32) -> ListOffsetsRequest {
    let partitions = partitions
        .iter()
        .map(|p| ListOffsetsPartition::default().with_partition_index(*p).with_current_leader_epoch(-1).with_timestamp(timestamp))
        .collect();
    let topic = ListOffsetsTopic::default().with_name(topic_name(topic)).with_partitions(partitions);
    ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(0)
        .with_topics(vec![topic])
        .with_timeout_ms(timeout_ms)
}

/// The offset at `timestamp` ([`EARLIEST_TIMESTAMP`], [`LATEST_TIMESTAMP`]) of each partition,
/// asked of `connection`, which must lead them all.
pub fn list_offsets(
    connection: &mut Connection,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
    timeout_ms: i32,
) -> Result<Vec<(i32, i64)>, ClientError> {
    let response = connection.call(&list_offsets_request(topic, partitions, timestamp, timeout_ms))?;
    let mut found = Vec::with_capacity(partitions.len());
    for p in response.topics.into_iter().flat_map(|t| t.partitions) {
        KafkaError::check(p.error_code, None, || format!("cannot list offsets of {topic}-{}", p.partition_index))?;
        found.push((p.partition_index, p.offset));
    }
    if found.len() != partitions.len() {
        return Err(ClientError::PartitionCount { answered: found.len(), asked: partitions.len() });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::protocol::Encodable;

    fn assert_encodes_at_every_codec_version(api: ApiKey, request: &impl Encodable) {
        let range = api.valid_versions();
        for version in range.min..=range.max {
            let mut buf = bytes::BytesMut::new();
            request.encode(&mut buf, version).unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
        }
    }

    #[test]
    fn produce_request_encodes_at_every_version_with_name_or_topic_id() {
        let request = produce_request("t", Uuid::from_u128(7), -1, 30_000, [(2, Bytes::from_static(b"raw"))]);
        assert_eq!(request.acks, -1);
        assert_eq!(request.topic_data[0].topic_id, Uuid::from_u128(7));
        assert_eq!(request.topic_data[0].partition_data[0].index, 2);
        assert_encodes_at_every_codec_version(ApiKey::Produce, &request);
    }

    #[test]
    fn fetch_request_encodes_at_every_version_and_is_sessionless() {
        let position = FetchPosition { partition: 1, offset: 77, size_bytes: 1024 };
        let request = fetch_request("t", Uuid::from_u128(9), &[position], 500, 1 << 20);
        assert_eq!((request.session_id, request.session_epoch), (0, -1));
        assert_eq!(request.replica_id, -1);
        let partition = &request.topics[0].partitions[0];
        assert_eq!((partition.fetch_offset, partition.current_leader_epoch, partition.log_start_offset), (77, -1, -1));
        assert_encodes_at_every_codec_version(ApiKey::Fetch, &request);
    }

    #[test]
    fn list_offsets_request_encodes_at_every_version() {
        let request = list_offsets_request("t", &[0, 1], EARLIEST_TIMESTAMP, 30_000);
        assert_eq!(request.topics[0].partitions[1].timestamp, EARLIEST_TIMESTAMP);
        assert_encodes_at_every_codec_version(ApiKey::ListOffsets, &request);
    }
}
