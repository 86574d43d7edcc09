//! Fetch requests for a plain (group-less) reader, one topic at a time.

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::FetchRequest;

use super::super::limits::FETCH_SIZE_BYTES_MAX;
use super::super::metadata::{topic_name, TopicInfo};

/// Where one partition is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPosition {
    pub partition: i32,
    /// The next offset to fetch.
    pub offset: i64,
    /// Per-partition fetch size; grows when one batch does not fit.
    pub size_bytes: i32,
}

/// A session-less, read-uncommitted Fetch for the given positions. Both the topic name (up to
/// v12) and the topic id (v13+) are filled; the encoder writes the one its version has.
pub fn fetch_request(topic: &TopicInfo, positions: &[FetchPosition], wait_ms: i32) -> FetchRequest {
    let partitions = positions
        .iter()
        .map(|p| {
            FetchPartition::default()
                .with_partition(p.partition)
                .with_fetch_offset(p.offset)
                .with_partition_max_bytes(p.size_bytes)
        })
        .collect();
    let fetch_topic =
        FetchTopic::default().with_topic(topic_name(&topic.name)).with_topic_id(topic.topic_id).with_partitions(partitions);
    FetchRequest::default()
        .with_max_wait_ms(wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_SIZE_BYTES_MAX)
        .with_isolation_level(0)
        .with_topics(vec![fetch_topic])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::protocol::Encodable;
    use uuid::Uuid;

    #[test]
    fn fetch_request_encodes_at_every_version_and_is_sessionless() {
        let topic =
            TopicInfo { name: "t".into(), topic_id: Uuid::from_u128(9), error_code: 0, is_internal: false, partitions: vec![] };
        let position = FetchPosition { partition: 1, offset: 77, size_bytes: 1024 };
        let request = fetch_request(&topic, &[position], 500);
        assert_eq!((request.session_id, request.session_epoch), (0, -1));
        assert_eq!(request.replica_id, -1);
        assert_eq!(request.topics[0].partitions[0].fetch_offset, 77);
        let range = ApiKey::Fetch.valid_versions();
        for version in range.min..=range.max {
            let mut buf = bytes::BytesMut::new();
            request.encode(&mut buf, version).unwrap();
        }
    }
}
