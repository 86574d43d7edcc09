//! Cluster metadata (brokers, topics, partition leaders) from the Metadata API, and the bounded
//! wait for a topic's partitions to have leaders.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::connection::Connection;
use crate::error::{ClientError, KafkaError};

/// Kafka error codes the metadata wait treats specially.
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const LEADER_NOT_AVAILABLE: i16 = 5;

/// A broker as advertised in metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// HOST:PORT, bracketing IPv6 literals.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One partition's placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub index: i32,
    pub error_code: i16,
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
}

/// One topic's metadata; partitions sorted by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub topic_id: Uuid,
    pub error_code: i16,
    pub is_internal: bool,
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// The topic's own error, if the broker reported one.
    pub fn check(&self) -> Result<(), KafkaError> {
        KafkaError::check(self.error_code, None, || format!("topic '{}'", self.name))
    }

    /// The partition with this index.
    pub fn partition(&self, index: i32) -> Option<&PartitionInfo> {
        self.partitions.iter().find(|p| p.index == index)
    }
}

/// What a Metadata response says about the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: Vec<TopicInfo>,
}

impl ClusterInfo {
    /// (node id, HOST:PORT) of every broker.
    pub fn broker_addresses(&self) -> Vec<(i32, String)> {
        self.brokers.iter().map(|(id, b)| (*id, b.address())).collect()
    }
}

/// Asks for metadata of `topics` (all topics when `None`).
pub fn fetch(connection: &mut Connection, topics: Option<&[String]>, auto_create: bool) -> Result<ClusterInfo, ClientError> {
    let version = connection.version_of(ApiKey::Metadata)?;
    let request = metadata_request(topics, auto_create, version);
    let response = connection.call_at(&request, version)?;
    Ok(cluster_info(response))
}

/// Builds a Metadata request; v0-3 always auto-create, so the flag is only sent from v4.
pub fn metadata_request(topics: Option<&[String]>, auto_create: bool, version: i16) -> MetadataRequest {
    let topics =
        topics.map(|names| names.iter().map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n)))).collect());
    MetadataRequest::default().with_topics(topics).with_allow_auto_topic_creation(auto_create || version < 4)
}

/// How long [`wait_for_leaders`] asks again.
#[derive(Debug, Clone, Copy)]
pub struct LeaderWait {
    /// Ask the broker to create the topic if it is missing.
    pub auto_create: bool,
    /// Ask again while the topic is unknown (it is being created).
    pub unknown_is_pending: bool,
    pub attempt_count_max: u32,
    pub retry_backoff: Duration,
}

/// One topic and the brokers that lead its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicLeaders {
    pub topic: TopicInfo,
    pub brokers: BTreeMap<i32, BrokerInfo>,
}

/// Fetches metadata for one topic, waiting (bounded) until every partition has a leader.
///
/// A freshly created (or auto-created) topic briefly reports LEADER_NOT_AVAILABLE or a leader
/// of -1; those are retried, and so is UNKNOWN_TOPIC_OR_PARTITION when `unknown_is_pending`.
pub fn wait_for_leaders(connection: &mut Connection, topic: &str, wait: LeaderWait) -> Result<TopicLeaders, ClientError> {
    let names = [topic.to_string()];
    let mut attempt = 1;
    loop {
        let cluster = fetch(connection, Some(&names), wait.auto_create)?;
        let info = cluster
            .topics
            .into_iter()
            .find(|t| t.name == topic)
            .ok_or_else(|| ClientError::MissingTopic { topic: topic.to_string() })?;
        let waiting = leaders_pending(&info, wait.unknown_is_pending);
        if !waiting || attempt >= wait.attempt_count_max {
            info.check()?;
            if waiting {
                let text = format!("topic '{topic}' has partitions without a leader");
                return Err(KafkaError { code: LEADER_NOT_AVAILABLE, text }.into());
            }
            return Ok(TopicLeaders { topic: info, brokers: cluster.brokers });
        }
        attempt += 1;
        std::thread::sleep(wait.retry_backoff);
    }
}

/// Whether metadata for this topic is still settling (worth asking again).
fn leaders_pending(info: &TopicInfo, unknown_is_pending: bool) -> bool {
    match info.error_code {
        0 => info.partitions.is_empty() || info.partitions.iter().any(|p| p.leader_id < 0),
        LEADER_NOT_AVAILABLE => true,
        UNKNOWN_TOPIC_OR_PARTITION => unknown_is_pending,
        _ => false,
    }
}

/// Makes a topic name for a request.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn cluster_info(response: MetadataResponse) -> ClusterInfo {
    let brokers = response.brokers.into_iter().map(|b| (b.node_id.0, broker_info(b.host, b.port, b.rack))).collect();
    ClusterInfo {
        cluster_id: response.cluster_id.map(|c| c.to_string()),
        controller_id: response.controller_id.0,
        brokers,
        topics: response.topics.into_iter().map(topic_info).collect(),
    }
}

/// A broker as Metadata and DescribeCluster describe it.
pub fn broker_info(host: StrBytes, port: i32, rack: Option<StrBytes>) -> BrokerInfo {
    BrokerInfo { host: host.to_string(), port, rack: rack.map(|r| r.to_string()) }
}

fn topic_info(topic: MetadataResponseTopic) -> TopicInfo {
    let mut partitions: Vec<PartitionInfo> = topic.partitions.into_iter().map(partition_info).collect();
    partitions.sort_by_key(|p| p.index);
    TopicInfo {
        name: topic.name.map(|n| n.0.to_string()).unwrap_or_default(),
        topic_id: topic.topic_id,
        error_code: topic.error_code,
        is_internal: topic.is_internal,
        partitions,
    }
}

fn partition_info(p: MetadataResponsePartition) -> PartitionInfo {
    let ids = |v: Vec<BrokerId>| v.into_iter().map(|b| b.0).collect();
    PartitionInfo {
        index: p.partition_index,
        error_code: p.error_code,
        leader_id: p.leader_id.0,
        leader_epoch: p.leader_epoch,
        replicas: ids(p.replica_nodes),
        isr: ids(p.isr_nodes),
        offline: ids(p.offline_replicas),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versions::codec_versions;

    fn topic(error_code: i16, leaders: &[i32]) -> TopicInfo {
        TopicInfo {
            name: "t".into(),
            topic_id: Uuid::nil(),
            error_code,
            is_internal: false,
            partitions: leaders
                .iter()
                .enumerate()
                .map(|(i, l)| PartitionInfo {
                    index: i as i32,
                    error_code: 0,
                    leader_id: *l,
                    leader_epoch: 0,
                    replicas: vec![],
                    isr: vec![],
                    offline: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn metadata_waits_for_missing_leaders_but_not_for_hard_errors() {
        assert!(leaders_pending(&topic(0, &[1, -1]), false));
        assert!(!leaders_pending(&topic(0, &[1, 2]), false));
        assert!(leaders_pending(&topic(LEADER_NOT_AVAILABLE, &[]), false));
        assert!(leaders_pending(&topic(UNKNOWN_TOPIC_OR_PARTITION, &[]), true));
        assert!(!leaders_pending(&topic(UNKNOWN_TOPIC_OR_PARTITION, &[]), false));
        assert!(!leaders_pending(&topic(29, &[]), true));
    }

    #[test]
    fn metadata_request_only_disables_auto_create_from_v4() {
        assert!(metadata_request(None, false, 3).allow_auto_topic_creation);
        assert!(!metadata_request(None, false, 4).allow_auto_topic_creation);
        assert!(metadata_request(None, false, 12).topics.is_none());
        let named = metadata_request(Some(&["a".to_string()]), true, 12);
        assert_eq!(named.topics.unwrap()[0].name.as_ref().unwrap().0.as_str(), "a");
    }

    #[test]
    fn ipv6_broker_hosts_are_bracketed() {
        let b = BrokerInfo { host: "::1".into(), port: 9092, rack: None };
        assert_eq!(b.address(), "[::1]:9092");
        let b = BrokerInfo { host: "kafka-0".into(), port: 9093, rack: None };
        assert_eq!(b.address(), "kafka-0:9093");
    }

    #[test]
    fn metadata_requests_encode_at_every_client_version() {
        let range = codec_versions(ApiKey::Metadata);
        let names = ["a".to_string()];
        for version in range.min..=range.max {
            for request in [metadata_request(None, false, version), metadata_request(Some(&names), true, version)] {
                let mut buf = bytes::BytesMut::new();
                kafka_protocol::protocol::Encodable::encode(&request, &mut buf, version).unwrap();
            }
        }
    }
}
