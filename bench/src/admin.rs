//! Topic setup before a run: Metadata for partition count and leaders, CreateTopics when the
//! topic is missing, ListOffsets for where consumers start and stop.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use fjord_client::metadata::{self, topic_name, LeaderWait, TopicLeaders, UNKNOWN_TOPIC_OR_PARTITION};
use fjord_client::requests;
pub use fjord_client::requests::{EARLIEST_TIMESTAMP as OFFSET_EARLIEST, LATEST_TIMESTAMP as OFFSET_LATEST};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::CreateTopicsRequest;

use crate::error::{BenchError, Result};
use crate::wire::{self, Connection, Timeouts};

const TOPIC_ALREADY_EXISTS: i16 = 36;
/// How long a new topic may take to get leaders for all its partitions: 150 × 200 ms = 30 s.
const TOPIC_READY_WAIT: LeaderWait = LeaderWait {
    auto_create: false,
    unknown_is_pending: true,
    attempt_count_max: 150,
    retry_backoff: Duration::from_millis(200),
};

/// Partitions of the benchmark topic and the brokers leading them.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicLayout {
    /// Partition index → leader node id.
    pub leaders: BTreeMap<i32, i32>,
    /// Node id → "host:port".
    pub brokers: HashMap<i32, String>,
}

impl TopicLayout {
    pub fn partition_count(&self) -> u32 {
        self.leaders.len() as u32
    }
    pub fn address_of(&self, partition: i32) -> Result<&str> {
        let leader = self.leaders.get(&partition).ok_or_else(|| BenchError::Workload(format!("no partition {partition}")))?;
        self.brokers
            .get(leader)
            .map(String::as_str)
            .ok_or_else(|| BenchError::Workload(format!("partition {partition} is led by unknown broker {leader}")))
    }
}

impl From<&TopicLeaders> for TopicLayout {
    fn from(found: &TopicLeaders) -> TopicLayout {
        TopicLayout {
            leaders: found.topic.partitions.iter().map(|p| (p.index, p.leader_id)).collect(),
            brokers: found.brokers.iter().map(|(id, broker)| (*id, broker.address())).collect(),
        }
    }
}

/// Finds the topic, creating it with `partitions` when missing and `create` is set, and waits
/// (bounded) until every partition has a leader.
pub fn ensure_topic(
    connection: &mut Connection,
    topic: &str,
    partitions: u32,
    replication_factor: i16,
    create: bool,
) -> Result<TopicLayout> {
    let cluster = metadata::fetch(connection, Some(&[topic.to_string()]), false)?;
    let exists = cluster.topics.iter().any(|t| t.name == topic && t.error_code != UNKNOWN_TOPIC_OR_PARTITION);
    if !exists {
        if !create {
            return Err(BenchError::Workload(format!("topic {topic} does not exist (consume mode reads an existing topic)")));
        }
        create_topic(connection, topic, partitions, replication_factor)?;
    }
    let found = metadata::wait_for_leaders(connection, topic, TOPIC_READY_WAIT)?;
    if found.topic.partitions.is_empty() {
        return Err(BenchError::Broker { api: "Metadata", code: 0, detail: format!(" (topic {topic} has no partitions)") });
    }
    Ok(TopicLayout::from(&found))
}

fn create_topic(connection: &mut Connection, topic: &str, partitions: u32, replication_factor: i16) -> Result<()> {
    let request = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![CreatableTopic::default()
        .with_name(topic_name(topic))
        .with_num_partitions(partitions as i32)
        .with_replication_factor(replication_factor)]);
    let response = connection.call(&request)?;
    for result in &response.topics {
        if result.error_code != 0 && result.error_code != TOPIC_ALREADY_EXISTS {
            let detail = result.error_message.as_ref().map(|m| format!(": {}", m.as_str())).unwrap_or_default();
            return Err(BenchError::Broker { api: "CreateTopics", code: result.error_code, detail });
        }
    }
    Ok(())
}

/// ListOffsets (`OFFSET_LATEST` or `OFFSET_EARLIEST`) for every partition, asking each leader.
pub fn list_offsets(layout: &TopicLayout, topic: &str, timestamp: i64, timeouts: Timeouts) -> Result<BTreeMap<i32, i64>> {
    let mut by_broker: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for &partition in layout.leaders.keys() {
        by_broker.entry(layout.address_of(partition)?).or_default().push(partition);
    }
    let timeout_ms = timeouts.request_timeout_ms();
    let mut offsets = BTreeMap::new();
    for (address, partitions) in by_broker {
        let mut connection = wire::open(address, timeouts)?;
        offsets.extend(requests::list_offsets(&mut connection, topic, &partitions, timestamp, timeout_ms)?);
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use fjord_client::metadata::{BrokerInfo, PartitionInfo, TopicInfo};

    use super::*;

    #[test]
    fn the_layout_maps_each_partition_to_its_leaders_address() {
        let partition = |index, leader_id| PartitionInfo {
            index,
            error_code: 0,
            leader_id,
            leader_epoch: 0,
            replicas: vec![],
            isr: vec![],
            offline: vec![],
        };
        let found = TopicLeaders {
            topic: TopicInfo {
                name: "t".into(),
                topic_id: Default::default(),
                error_code: 0,
                is_internal: false,
                partitions: vec![partition(0, 1), partition(1, 2)],
            },
            brokers: [(1, "kafka-1", 9092), (2, "::1", 9093)]
                .into_iter()
                .map(|(id, host, port)| (id, BrokerInfo { host: host.into(), port, rack: None }))
                .collect(),
        };
        let layout = TopicLayout::from(&found);
        assert_eq!(layout.partition_count(), 2);
        assert_eq!(layout.address_of(0).unwrap(), "kafka-1:9092");
        assert_eq!(layout.address_of(1).unwrap(), "[::1]:9093");
        assert!(layout.address_of(2).is_err());
    }
}
