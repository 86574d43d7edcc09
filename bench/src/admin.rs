//! Topic setup before a run: Metadata for partition count and leaders, CreateTopics when the
//! topic is missing, ListOffsets for where consumers start and stop.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::error::{BenchError, Result};
use crate::wire::{Connection, Timeouts};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const LEADER_NOT_AVAILABLE: i16 = 5;
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// How long a new topic may take to get leaders for all its partitions.
const TOPIC_READY_WAIT_MAX: Duration = Duration::from_secs(30);
const METADATA_RETRY_INTERVAL: Duration = Duration::from_millis(200);
pub const OFFSET_LATEST: i64 = -1;
pub const OFFSET_EARLIEST: i64 = -2;

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

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn metadata(connection: &mut Connection, topic: &str) -> Result<MetadataResponse> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]))
        .with_allow_auto_topic_creation(false);
    connection.call(ApiKey::Metadata, &request)
}

/// The layout if the topic exists with a leader for every partition; `None` if it does not exist.
fn layout(response: &MetadataResponse, topic: &str) -> Result<Option<TopicLayout>> {
    let Some(entry) = response.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)) else {
        return Ok(None);
    };
    match entry.error_code {
        0 => {}
        UNKNOWN_TOPIC_OR_PARTITION => return Ok(None),
        LEADER_NOT_AVAILABLE => {
            return Err(BenchError::Broker { api: "Metadata", code: LEADER_NOT_AVAILABLE, detail: String::new() })
        }
        code => return Err(BenchError::Broker { api: "Metadata", code, detail: format!(" for topic {topic}") }),
    }
    let brokers: HashMap<i32, String> =
        response.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect();
    let mut leaders = BTreeMap::new();
    for partition in &entry.partitions {
        if partition.error_code != 0 || partition.leader_id.0 < 0 || !brokers.contains_key(&partition.leader_id.0) {
            return Err(BenchError::Broker {
                api: "Metadata",
                code: partition.error_code,
                detail: format!(" (partition {} has no usable leader yet)", partition.partition_index),
            });
        }
        leaders.insert(partition.partition_index, partition.leader_id.0);
    }
    if leaders.is_empty() {
        return Err(BenchError::Broker { api: "Metadata", code: 0, detail: format!(" (topic {topic} has no partitions)") });
    }
    Ok(Some(TopicLayout { leaders, brokers }))
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
    let deadline = Instant::now() + TOPIC_READY_WAIT_MAX;
    let mut created = false;
    loop {
        let outcome = metadata(connection, topic).and_then(|response| layout(&response, topic));
        match outcome {
            Ok(Some(layout)) => return Ok(layout),
            Ok(None) if !create => {
                return Err(BenchError::Workload(format!("topic {topic} does not exist (consume mode reads an existing topic)")))
            }
            Ok(None) if !created => {
                create_topic(connection, topic, partitions, replication_factor)?;
                created = true;
            }
            Ok(None) | Err(BenchError::Broker { .. }) if Instant::now() < deadline => {}
            Ok(None) => return Err(BenchError::Timeout(format!("topic {topic} did not appear in metadata"))),
            Err(e) => return Err(e),
        }
        std::thread::sleep(METADATA_RETRY_INTERVAL);
    }
}

fn create_topic(connection: &mut Connection, topic: &str, partitions: u32, replication_factor: i16) -> Result<()> {
    let request = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![CreatableTopic::default()
        .with_name(topic_name(topic))
        .with_num_partitions(partitions as i32)
        .with_replication_factor(replication_factor)]);
    let response = connection.call(ApiKey::CreateTopics, &request)?;
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
    let mut offsets = BTreeMap::new();
    for (address, partitions) in by_broker {
        let mut connection = Connection::open(address, timeouts)?;
        let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_current_leader_epoch(-1)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
        let response = connection.call(ApiKey::ListOffsets, &request)?;
        for topic_response in &response.topics {
            for partition in &topic_response.partitions {
                if partition.error_code != 0 {
                    return Err(BenchError::Broker {
                        api: "ListOffsets",
                        code: partition.error_code,
                        detail: format!(" for partition {}", partition.partition_index),
                    });
                }
                offsets.insert(partition.partition_index, partition.offset);
            }
        }
    }
    if offsets.len() != layout.leaders.len() {
        return Err(BenchError::Protocol {
            address: "ListOffsets".to_string(),
            detail: format!("{} offsets for {} partitions", offsets.len(), layout.leaders.len()),
        });
    }
    Ok(offsets)
}
