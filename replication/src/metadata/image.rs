//! The metadata image: the cluster's state after applying the log up to some offset.
//!
//! An image is immutable once published; the controller applies a batch to a copy and publishes
//! the copy. Topics sit behind `Arc` so that a copy shares every topic the batch did not touch.
//! Applying is deterministic and does no I/O, so the same records give the same image whether
//! they come from the controller, from recovery, or (later) from the Raft log.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use fjord_engine::topic_config::{resolve_topic_config, BrokerConfigs, TopicConfig};

use super::record::{MetadataRecord, TopicId};

/// A registered broker.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BrokerImage {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

/// One partition's assignment and leadership.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartitionImage {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// A topic: its id, partitions (index i at position i) and config overrides.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub id: TopicId,
    pub partitions: Vec<PartitionImage>,
    /// Topic config overrides only; resolve with [`MetadataImage::topic_config`].
    pub configs: BTreeMap<String, String>,
}

impl TopicImage {
    /// Replicas per partition, taken from partition 0 as Kafka does.
    pub fn replication_factor(&self) -> usize {
        self.partitions.first().map_or(0, |partition| partition.replicas.len())
    }
}

/// The cluster's metadata at one offset of the log. Shared read-only by every shard through
/// [`super::MetadataTable`].
#[derive(Clone, Debug, PartialEq)]
pub struct MetadataImage {
    /// Offset of the last applied record: the metadata version. -1 when nothing is applied.
    pub offset: i64,
    /// Controller epoch the last applied record was written in; 0 when nothing is applied.
    pub epoch: i32,
    pub cluster_id: String,
    pub brokers: BTreeMap<i32, BrokerImage>,
    pub topics: BTreeMap<String, Arc<TopicImage>>,
    pub topic_ids: HashMap<TopicId, String>,
    /// Dynamic broker configs (AlterConfigs on the broker resource), by broker key.
    pub broker_config: BTreeMap<String, String>,
}

/// A record that does not fit the image it is applied to. The controller validates before it
/// writes, so on replay this means the log is not one this code wrote.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("offset {offset} does not follow {last}")]
    OffsetNotIncreasing { offset: i64, last: i64 },
    #[error("epoch {epoch} is older than {last}")]
    EpochWentBack { epoch: i32, last: i32 },
    #[error("topic {name} already exists")]
    DuplicateTopicName { name: String },
    #[error("topic id {id:02x?} is already in use")]
    DuplicateTopicId { id: TopicId },
    #[error("no topic has id {id:02x?}")]
    UnknownTopicId { id: TopicId },
    #[error("partition {partition} of {topic} is not the next one ({expected})")]
    PartitionOutOfOrder { topic: String, partition: i32, expected: i32 },
    #[error("{topic} has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
}

impl MetadataImage {
    /// The image before any record.
    pub fn empty(cluster_id: &str) -> Self {
        MetadataImage {
            offset: -1,
            epoch: 0,
            cluster_id: cluster_id.to_string(),
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            topic_ids: HashMap::new(),
            broker_config: BTreeMap::new(),
        }
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &TopicId) -> Option<&Arc<TopicImage>> {
        self.topic_ids.get(id).and_then(|name| self.topics.get(name))
    }

    /// Partitions of all topics together.
    pub fn partition_count(&self) -> usize {
        self.topics.values().map(|topic| topic.partitions.len()).sum()
    }

    /// The broker-level configs: `static_` from this process, dynamic from the image.
    pub fn broker_configs(&self, static_: &BTreeMap<String, String>) -> BrokerConfigs {
        BrokerConfigs { static_: static_.clone(), dynamic: self.broker_config.clone() }
    }

    /// The effective config of a topic, or `None` if there is no such topic.
    pub fn topic_config(&self, name: &str, static_broker: &BTreeMap<String, String>) -> Option<TopicConfig> {
        let topic = self.topics.get(name)?;
        Some(resolve_topic_config(&self.broker_configs(static_broker), &topic.configs))
    }

    /// Applies one record written at `offset` in `epoch`. On error the image is unchanged.
    pub fn apply(&mut self, offset: i64, epoch: i32, record: &MetadataRecord) -> Result<(), ApplyError> {
        if offset <= self.offset {
            return Err(ApplyError::OffsetNotIncreasing { offset, last: self.offset });
        }
        if epoch < self.epoch {
            return Err(ApplyError::EpochWentBack { epoch, last: self.epoch });
        }
        self.apply_record(record)?;
        self.offset = offset;
        self.epoch = epoch;
        Ok(())
    }

    fn topic_name(&self, id: &TopicId) -> Result<String, ApplyError> {
        self.topic_ids.get(id).cloned().ok_or(ApplyError::UnknownTopicId { id: *id })
    }

    fn topic_mut(&mut self, id: &TopicId) -> Result<&mut TopicImage, ApplyError> {
        let name = self.topic_name(id)?;
        match self.topics.get_mut(&name) {
            Some(topic) => Ok(Arc::make_mut(topic)),
            None => Err(ApplyError::UnknownTopicId { id: *id }),
        }
    }

    fn apply_record(&mut self, record: &MetadataRecord) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::RegisterBroker { node_id, host, port, rack } => {
                let broker = BrokerImage { node_id: *node_id, host: host.clone(), port: *port, rack: rack.clone() };
                self.brokers.insert(*node_id, broker);
            }
            MetadataRecord::CreateTopic { topic_id, name, configs } => {
                if self.topics.contains_key(name) {
                    return Err(ApplyError::DuplicateTopicName { name: name.clone() });
                }
                if self.topic_ids.contains_key(topic_id) {
                    return Err(ApplyError::DuplicateTopicId { id: *topic_id });
                }
                let topic = TopicImage {
                    name: name.clone(),
                    id: *topic_id,
                    partitions: Vec::new(),
                    configs: configs.iter().cloned().collect(),
                };
                self.topics.insert(name.clone(), Arc::new(topic));
                self.topic_ids.insert(*topic_id, name.clone());
            }
            MetadataRecord::CreatePartition { topic_id, partition, replicas, isr, leader, leader_epoch } => {
                let topic = self.topic_mut(topic_id)?;
                let expected = topic.partitions.len() as i32;
                if *partition != expected {
                    return Err(ApplyError::PartitionOutOfOrder { topic: topic.name.clone(), partition: *partition, expected });
                }
                topic.partitions.push(PartitionImage {
                    partition: *partition,
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                });
            }
            MetadataRecord::PartitionChange { topic_id, partition, leader, leader_epoch, isr } => {
                let topic = self.topic_mut(topic_id)?;
                let name = topic.name.clone();
                let index = usize::try_from(*partition).ok();
                let Some(image) = index.and_then(|index| topic.partitions.get_mut(index)) else {
                    return Err(ApplyError::UnknownPartition { topic: name, partition: *partition });
                };
                image.leader = *leader;
                image.leader_epoch = *leader_epoch;
                image.isr = isr.clone();
            }
            MetadataRecord::DeleteTopic { topic_id } => {
                let name = self.topic_name(topic_id)?;
                self.topics.remove(&name);
                self.topic_ids.remove(topic_id);
            }
            MetadataRecord::AlterTopicConfig { topic_id, set } => {
                let topic = self.topic_mut(topic_id)?;
                apply_config_changes(&mut topic.configs, set);
            }
            MetadataRecord::AlterBrokerConfig { set } => {
                apply_config_changes(&mut self.broker_config, set);
            }
        }
        Ok(())
    }
}

fn apply_config_changes(configs: &mut BTreeMap<String, String>, set: &[(String, Option<String>)]) {
    for (key, value) in set {
        match value {
            Some(value) => configs.insert(key.clone(), value.clone()),
            None => configs.remove(key),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(image: &mut MetadataImage, offset: i64, id: u8, name: &str, partitions: i32) {
        let topic_id = [id; 16];
        image.apply(offset, 1, &MetadataRecord::CreateTopic { topic_id, name: name.into(), configs: vec![] }).unwrap();
        for partition in 0..partitions {
            let record = MetadataRecord::CreatePartition {
                topic_id,
                partition,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
            };
            image.apply(offset + 1 + i64::from(partition), 1, &record).unwrap();
        }
    }

    #[test]
    fn create_then_delete_leaves_no_trace_of_the_topic() {
        let mut image = MetadataImage::empty("c");
        create(&mut image, 0, 1, "a", 3);
        assert_eq!(image.offset, 3);
        assert_eq!(image.partition_count(), 3);
        assert_eq!(image.topic_by_id(&[1; 16]).map(|t| t.name.as_str()), Some("a"));
        image.apply(4, 1, &MetadataRecord::DeleteTopic { topic_id: [1; 16] }).unwrap();
        assert!(image.topics.is_empty() && image.topic_ids.is_empty());
        assert_eq!(image.offset, 4);
    }

    #[test]
    fn records_that_do_not_fit_leave_the_image_unchanged() {
        let mut image = MetadataImage::empty("c");
        create(&mut image, 0, 1, "a", 1);
        let before = image.clone();
        let out_of_order = MetadataRecord::CreatePartition {
            topic_id: [1; 16],
            partition: 5,
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
        };
        assert!(matches!(image.apply(9, 1, &out_of_order), Err(ApplyError::PartitionOutOfOrder { .. })));
        let unknown = MetadataRecord::DeleteTopic { topic_id: [9; 16] };
        assert!(matches!(image.apply(9, 1, &unknown), Err(ApplyError::UnknownTopicId { .. })));
        let duplicate = MetadataRecord::CreateTopic { topic_id: [2; 16], name: "a".into(), configs: vec![] };
        assert!(matches!(image.apply(9, 1, &duplicate), Err(ApplyError::DuplicateTopicName { .. })));
        let stale = MetadataRecord::AlterBrokerConfig { set: vec![] };
        assert!(matches!(image.apply(1, 1, &stale), Err(ApplyError::OffsetNotIncreasing { .. })));
        assert!(matches!(image.apply(9, 0, &stale), Err(ApplyError::EpochWentBack { .. })));
        assert_eq!(image, before);
    }

    #[test]
    fn config_changes_set_and_remove_overrides() {
        let mut image = MetadataImage::empty("c");
        create(&mut image, 0, 1, "a", 1);
        let set = MetadataRecord::AlterTopicConfig {
            topic_id: [1; 16],
            set: vec![("retention.ms".into(), Some("5".into())), ("segment.ms".into(), Some("9".into()))],
        };
        image.apply(2, 1, &set).unwrap();
        let remove = MetadataRecord::AlterTopicConfig { topic_id: [1; 16], set: vec![("segment.ms".into(), None)] };
        image.apply(3, 1, &remove).unwrap();
        let configs = &image.topics["a"].configs;
        assert_eq!(configs.len(), 1);
        assert_eq!(configs["retention.ms"], "5");
        let resolved = image.topic_config("a", &BTreeMap::new()).unwrap();
        assert_eq!(resolved.retention_ms, 5);
    }

    #[test]
    fn partition_change_moves_leadership() {
        let mut image = MetadataImage::empty("c");
        create(&mut image, 0, 1, "a", 2);
        let change =
            MetadataRecord::PartitionChange { topic_id: [1; 16], partition: 1, leader: 2, leader_epoch: 1, isr: vec![2] };
        image.apply(3, 2, &change).unwrap();
        let partition = &image.topics["a"].partitions[1];
        assert_eq!((partition.leader, partition.leader_epoch, partition.isr.clone()), (2, 1, vec![2]));
        assert_eq!(image.epoch, 2);
    }

    #[test]
    fn copies_share_untouched_topics() {
        let mut image = MetadataImage::empty("c");
        create(&mut image, 0, 1, "a", 1);
        create(&mut image, 2, 2, "b", 1);
        let mut next = image.clone();
        let change = MetadataRecord::AlterTopicConfig { topic_id: [2; 16], set: vec![("retention.ms".into(), Some("1".into()))] };
        next.apply(4, 1, &change).unwrap();
        assert!(Arc::ptr_eq(&image.topics["a"], &next.topics["a"]));
        assert!(!Arc::ptr_eq(&image.topics["b"], &next.topics["b"]));
    }
}
