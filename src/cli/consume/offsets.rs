//! Where consumption starts: `beginning`, `end` (resolved with ListOffsets) or an offset.

use std::collections::BTreeMap;
use std::str::FromStr;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::ListOffsetsRequest;

use super::super::error::{CliError, KafkaError};
use super::super::limits::REQUEST_TIMEOUT_MS;
use super::super::metadata::{topic_name, TopicInfo};
use super::super::pool::BrokerPool;

/// ListOffsets timestamp asking for the log start offset.
const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets timestamp asking for the log end offset (high watermark).
const LATEST_TIMESTAMP: i64 = -1;

/// The `--from` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    Beginning,
    End,
    Offset(i64),
}

impl FromStr for StartFrom {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "beginning" | "earliest" => Ok(StartFrom::Beginning),
            "end" | "latest" => Ok(StartFrom::End),
            other => match other.parse::<i64>() {
                Ok(offset) if offset >= 0 => Ok(StartFrom::Offset(offset)),
                _ => Err(format!("expected beginning, end or a non-negative offset, got '{other}'")),
            },
        }
    }
}

/// The first offset to fetch for each partition.
pub fn resolve(
    pool: &mut BrokerPool,
    topic: &TopicInfo,
    partitions: &[i32],
    from: StartFrom,
) -> Result<BTreeMap<i32, i64>, CliError> {
    let timestamp = match from {
        StartFrom::Offset(offset) => return Ok(partitions.iter().map(|p| (*p, offset)).collect()),
        StartFrom::Beginning => EARLIEST_TIMESTAMP,
        StartFrom::End => LATEST_TIMESTAMP,
    };
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in partitions {
        let leader = topic.partition(*p).map_or(-1, |info| info.leader_id);
        by_leader.entry(leader).or_default().push(*p);
    }
    let mut starts = BTreeMap::new();
    for (leader, group) in by_leader {
        starts.extend(list_offsets(pool, topic, leader, &group, timestamp)?);
    }
    Ok(starts)
}

fn list_offsets(
    pool: &mut BrokerPool,
    topic: &TopicInfo,
    leader: i32,
    partitions: &[i32],
    timestamp: i64,
) -> Result<Vec<(i32, i64)>, CliError> {
    let request = list_offsets_request(&topic.name, partitions, timestamp);
    let response = pool.broker(leader)?.call(&request)?;
    let mut found = Vec::new();
    for p in response.topics.into_iter().flat_map(|t| t.partitions) {
        KafkaError::check(p.error_code, None, || format!("cannot list offsets of {}-{}", topic.name, p.partition_index))?;
        found.push((p.partition_index, p.offset));
    }
    if found.len() != partitions.len() {
        return Err(CliError::input(format!("broker answered {} of {} partitions", found.len(), partitions.len())));
    }
    Ok(found)
}

/// A ListOffsets request as a consumer sends it (replica id -1, read uncommitted).
pub fn list_offsets_request(topic: &str, partitions: &[i32], timestamp: i64) -> ListOffsetsRequest {
    let partitions = partitions
        .iter()
        .map(|p| ListOffsetsPartition::default().with_partition_index(*p).with_current_leader_epoch(-1).with_timestamp(timestamp))
        .collect();
    let topic = ListOffsetsTopic::default().with_name(topic_name(topic)).with_partitions(partitions);
    ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(0)
        .with_topics(vec![topic])
        .with_timeout_ms(REQUEST_TIMEOUT_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn start_accepts_names_aliases_and_non_negative_offsets() {
        assert_eq!("beginning".parse(), Ok(StartFrom::Beginning));
        assert_eq!("earliest".parse(), Ok(StartFrom::Beginning));
        assert_eq!("end".parse(), Ok(StartFrom::End));
        assert_eq!("latest".parse(), Ok(StartFrom::End));
        assert_eq!("42".parse(), Ok(StartFrom::Offset(42)));
        assert!("-1".parse::<StartFrom>().is_err());
        assert!("middle".parse::<StartFrom>().is_err());
    }

    #[test]
    fn list_offsets_request_encodes_at_every_version() {
        let request = list_offsets_request("t", &[0, 1], EARLIEST_TIMESTAMP);
        assert_eq!(request.topics[0].partitions[1].timestamp, EARLIEST_TIMESTAMP);
        let range = ApiKey::ListOffsets.valid_versions();
        for version in range.min..=range.max {
            let mut buf = bytes::BytesMut::new();
            request.encode(&mut buf, version).unwrap();
        }
    }
}
