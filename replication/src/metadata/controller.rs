//! The controller: the frontend that validates admin operations, writes their records to the
//! metadata log and publishes the new image.
//!
//! Validation follows Kafka's KRaft controller (`ReplicationControlManager`,
//! `ConfigurationControlManager`): the same checks in the same order, the same error codes and
//! messages, so admin clients report what they would report against Kafka. Every operation
//! builds its records, applies them to a copy of the image (a record that does not apply is a
//! bug here, caught before anything is written), appends them as one batch with fdatasync, and
//! only then publishes the copy. With `validate_only` it stops before the append.
//!
//! Lives on one thread (the caller runs it off the request hot path: its appends block on
//! fdatasync); shards read the result through the shared [`MetadataTable`].

use kafka_protocol::error::ResponseError as E;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use fjord_engine::topic_config::{
    describe_broker_configs, join_list, resolve_topic_config, split_list, topic_config_def, topic_config_for_broker_key,
    validate_broker_dynamic, validate_topic_config, validate_topic_overrides, BrokerConfigs, ConfigError, ConfigType,
};

use super::image::{ApplyError, MetadataImage, TopicImage};
use super::log::{LogOptions, MetadataLog};
use super::meta_properties::{self, is_usable_id, random_id, topic_id_to_string};
use super::producer_ids::ProducerIdManager;
use super::record::{MetadataRecord, TopicId};
use super::table::MetadataTable;
use super::{
    MetadataError, CONFIG_VALUE_BYTES_MAX, HOST_BYTES_MAX, METADATA_LOG_DIR_NAME, PARTITIONS_PER_TOPIC_MAX, PARTITIONS_TOTAL_MAX,
    REPLICATION_FACTOR_MAX, TOPICS_MAX, TOPIC_NAME_LENGTH_MAX,
};

/// Replication factor of a topic created with -1: Kafka's `default.replication.factor` default.
const REPLICATION_FACTOR_DEFAULT: i16 = 1;
/// Leader epoch of a new partition (Kafka's `PartitionRecord` starts at 0).
const LEADER_EPOCH_INITIAL: i32 = 0;

/// One change of an IncrementalAlterConfigs request (KIP-339).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlterOp {
    Set(String),
    /// Remove the override, falling back to the broker or default value.
    Delete,
    /// Add an item to a LIST config, if it is not there.
    Append(String),
    /// Remove an item from a LIST config.
    Subtract(String),
}

impl AlterOp {
    fn kafka_name(&self) -> &'static str {
        match self {
            AlterOp::Set(_) => "set",
            AlterOp::Delete => "delete",
            AlterOp::Append(_) => "append",
            AlterOp::Subtract(_) => "subtract",
        }
    }
}

/// Why the controller refused an operation, as Kafka would say it.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("Topic '{0}' already exists.")]
    TopicAlreadyExists(String),
    #[error("{0}")]
    InvalidTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("This server does not host this topic-partition.")]
    UnknownTopicOrPartition,
    #[error("This server does not host this topic ID.")]
    UnknownTopicId,
    #[error("{0}")]
    InvalidRequest(String),
    /// A limit of this broker (not of Kafka) was reached.
    #[error("{0}")]
    PolicyViolation(String),
    #[error("metadata storage failed: {0}")]
    Storage(#[from] MetadataError),
    /// Records that passed validation did not apply: a bug in this module.
    #[error("metadata records did not apply: {0}")]
    Inconsistent(#[from] ApplyError),
}

impl ControllerError {
    /// The Kafka error code to answer with.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            ControllerError::TopicAlreadyExists(_) => E::TopicAlreadyExists.code(),
            ControllerError::InvalidTopic(_) => E::InvalidTopicException.code(),
            ControllerError::InvalidPartitions(_) => E::InvalidPartitions.code(),
            ControllerError::InvalidReplicationFactor(_) => E::InvalidReplicationFactor.code(),
            ControllerError::InvalidReplicaAssignment(_) => E::InvalidReplicaAssignment.code(),
            ControllerError::InvalidConfig(_) => E::InvalidConfig.code(),
            ControllerError::UnknownTopicOrPartition => E::UnknownTopicOrPartition.code(),
            ControllerError::UnknownTopicId => E::UnknownTopicId.code(),
            ControllerError::InvalidRequest(_) => E::InvalidRequest.code(),
            ControllerError::PolicyViolation(_) => E::PolicyViolation.code(),
            ControllerError::Storage(_) => E::KafkaStorageError.code(),
            ControllerError::Inconsistent(_) => E::UnknownServerError.code(),
        }
    }

    /// The error message to answer with. Storage and internal failures answer with Kafka's
    /// generic text; their detail goes to the log, not to clients.
    pub fn message(&self) -> String {
        match self {
            ControllerError::Storage(_) => "Disk error when trying to access log file on the disk.".to_string(),
            ControllerError::Inconsistent(_) => {
                "The server experienced an unexpected error when processing the request.".to_string()
            }
            other => other.to_string(),
        }
    }
}

impl From<ConfigError> for ControllerError {
    fn from(error: ConfigError) -> Self {
        match error {
            // Kafka refuses a static-only broker config with INVALID_REQUEST.
            ConfigError::ReadOnly(_) => ControllerError::InvalidRequest(error.to_string()),
            other => ControllerError::InvalidConfig(other.to_string()),
        }
    }
}

/// How to open the controller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControllerOptions {
    pub rack: Option<String>,
    pub log: LogOptions,
}

/// The metadata controller of this node: a one-node quorum for now.
#[derive(Debug)]
pub struct Controller {
    log: MetadataLog,
    table: Arc<MetadataTable>,
    image: Arc<MetadataImage>,
    node_id: i32,
    /// This controller's term: one more than any epoch in the log, as a one-node Raft election
    /// at start would give.
    epoch: i32,
    static_broker: BTreeMap<String, String>,
    producer_ids: ProducerIdManager,
}

/// Kafka's topic name rules (`Topic.validate`), with its messages.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    if name.is_empty() {
        return Err(ControllerError::InvalidTopic("Topic name is illegal, it can't be empty".into()));
    }
    if name == "." || name == ".." {
        return Err(ControllerError::InvalidTopic("Topic name cannot be \".\" or \"..\"".into()));
    }
    if name.len() > TOPIC_NAME_LENGTH_MAX {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic name is illegal, it can't be longer than {TOPIC_NAME_LENGTH_MAX} characters, Topic name: {name}"
        )));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// Kafka refuses topics whose names differ only by '.' versus '_': their metric names collide.
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

fn colliding_topic<'a>(image: &'a MetadataImage, name: &str) -> Option<&'a str> {
    if !name.contains(['.', '_']) {
        return None;
    }
    let key = collision_key(name);
    image.topics.keys().map(String::as_str).filter(|existing| *existing != name && collision_key(existing) == key).min()
}

fn check_config_value_size(key: &str, value: &str) -> Result<(), ControllerError> {
    if value.len() > CONFIG_VALUE_BYTES_MAX {
        return Err(ControllerError::InvalidConfig(format!(
            "Value of {key} is {} bytes, more than the {CONFIG_VALUE_BYTES_MAX} allowed",
            value.len()
        )));
    }
    Ok(())
}

fn check_duplicate_keys(ops: &[(String, AlterOp)]) -> Result<(), ControllerError> {
    let mut seen = BTreeSet::new();
    if ops.iter().all(|(key, _)| seen.insert(key.as_str())) {
        Ok(())
    } else {
        Err(ControllerError::InvalidRequest("Error due to duplicate config keys".into()))
    }
}

/// Applies an Append or Subtract to a LIST value.
fn edit_list(current: &str, op: &AlterOp) -> String {
    let mut items = split_list(current);
    match op {
        AlterOp::Append(value) => {
            for item in split_list(value) {
                if !items.contains(&item) {
                    items.push(item);
                }
            }
        }
        AlterOp::Subtract(value) => {
            let removed = split_list(value);
            items.retain(|item| !removed.contains(item));
        }
        AlterOp::Set(_) | AlterOp::Delete => {}
    }
    join_list(&items)
}

fn list_op_not_allowed(key: &str, op: &AlterOp) -> ControllerError {
    ControllerError::InvalidConfig(format!("Config value {} is not allowed for config key: {key}", op.kafka_name()))
}

impl Controller {
    /// Opens the metadata of `data_dir` for node `node_id` listening on `host:port`, and
    /// registers the broker if its address changed. Returns the table shards read from.
    pub fn open(data_dir: &Path, node_id: i32, host: &str, port: u16) -> Result<(Controller, Arc<MetadataTable>), MetadataError> {
        Self::open_with_options(data_dir, node_id, host, port, ControllerOptions::default())
    }

    pub fn open_with_options(
        data_dir: &Path,
        node_id: i32,
        host: &str,
        port: u16,
        options: ControllerOptions,
    ) -> Result<(Controller, Arc<MetadataTable>), MetadataError> {
        std::fs::create_dir_all(data_dir).map_err(|e| MetadataError::io("create directory", data_dir, e))?;
        let ids = meta_properties::load_or_create(data_dir, node_id)?;
        let log_dir = data_dir.join(METADATA_LOG_DIR_NAME);
        let (log, image) = MetadataLog::open(&log_dir, &ids.cluster_id, options.log)?;
        let epoch = log.last_epoch().saturating_add(1);
        let image = Arc::new(image);
        let table = Arc::new(MetadataTable::new(Arc::clone(&image)));
        let producer_ids = ProducerIdManager::open(data_dir)?;
        let mut controller =
            Controller { log, table: Arc::clone(&table), image, node_id, epoch, static_broker: BTreeMap::new(), producer_ids };
        controller.register_broker(node_id, host, port, options.rack).map_err(|error| match error {
            ControllerError::Storage(storage) => storage,
            other => MetadataError::Registration { node_id, reason: other.to_string() },
        })?;
        Ok((controller, table))
    }

    /// A producer id never handed out before by this node (InitProducerId without a
    /// transactional id); reserves ids in durable blocks (see `producer_ids`).
    pub fn next_producer_id(&mut self) -> Result<i64, MetadataError> {
        self.producer_ids.next_producer_id()
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    /// The controller's current image (the same one the table publishes).
    pub fn image(&self) -> Arc<MetadataImage> {
        Arc::clone(&self.image)
    }

    pub fn table(&self) -> Arc<MetadataTable> {
        Arc::clone(&self.table)
    }

    /// The static broker configs of this process, used as the base of Append/Subtract and of
    /// resolved values.
    pub fn set_static_broker_configs(&mut self, static_broker: BTreeMap<String, String>) {
        self.static_broker = static_broker;
    }

    fn broker_configs(&self) -> BrokerConfigs {
        self.image.broker_configs(&self.static_broker)
    }

    /// Registers (or re-registers with a new address) a broker. No record if nothing changed.
    pub fn register_broker(&mut self, node_id: i32, host: &str, port: u16, rack: Option<String>) -> Result<(), ControllerError> {
        if host.len() > HOST_BYTES_MAX {
            return Err(ControllerError::InvalidRequest(format!("Host name is longer than {HOST_BYTES_MAX} bytes")));
        }
        let unchanged = self
            .image
            .brokers
            .get(&node_id)
            .is_some_and(|broker| broker.host == host && broker.port == port && broker.rack == rack);
        if unchanged {
            return Ok(());
        }
        let record = MetadataRecord::RegisterBroker { node_id, host: host.to_string(), port, rack };
        self.commit(vec![record]).map(|_| ())
    }

    /// Applies `records` to a copy of the image and returns it, without writing anything.
    fn stage(&self, records: &[MetadataRecord]) -> Result<MetadataImage, ControllerError> {
        let mut next = MetadataImage::clone(&self.image);
        for (offset, record) in (self.log.next_offset()..).zip(records) {
            next.apply(offset, self.epoch, record)?;
        }
        Ok(next)
    }

    /// Stages, appends with fdatasync, publishes; snapshots when one is due.
    fn commit(&mut self, records: Vec<MetadataRecord>) -> Result<Arc<MetadataImage>, ControllerError> {
        let next = self.stage(&records)?;
        let base_offset = self.log.append(self.epoch, &records)?;
        debug_assert_eq!(next.offset, base_offset + records.len() as i64 - 1);
        let next = Arc::new(next);
        self.image = Arc::clone(&next);
        self.table.publish(Arc::clone(&next));
        if self.log.snapshot_due() {
            // The batch is durable in the log already; a failed snapshot only means a longer
            // replay at the next open.
            if let Err(error) = self.log.snapshot(&next) {
                tracing::warn!(%error, "metadata snapshot failed");
            }
        }
        Ok(next)
    }

    fn registered_brokers(&self) -> Vec<i32> {
        self.image.brokers.keys().copied().collect()
    }

    /// Kafka's `validateManualPartitionAssignment`: non-empty, registered, no repeats, and the
    /// same replica count as the partitions before.
    fn validate_manual_assignment(&self, replicas: &[i32], replication_factor: Option<usize>) -> Result<(), ControllerError> {
        if replicas.is_empty() {
            return Err(ControllerError::InvalidReplicaAssignment(
                "The manual partition assignment includes an empty replica list.".into(),
            ));
        }
        let mut sorted = replicas.to_vec();
        sorted.sort_unstable();
        let mut previous = None;
        for broker in sorted {
            if !self.image.brokers.contains_key(&broker) {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "The manual partition assignment includes broker {broker}, but no such broker is registered."
                )));
            }
            if previous == Some(broker) {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "The manual partition assignment includes the broker {broker} more than once."
                )));
            }
            previous = Some(broker);
        }
        if let Some(expected) = replication_factor {
            if replicas.len() != expected {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {expected} replica(s).",
                    replicas.len()
                )));
            }
        }
        if replicas.len() > REPLICATION_FACTOR_MAX {
            return Err(ControllerError::PolicyViolation(format!(
                "Replication factor {} is more than the {REPLICATION_FACTOR_MAX} this broker allows.",
                replicas.len()
            )));
        }
        Ok(())
    }

    /// Places `count` partitions starting at index `first` on the registered brokers, striped
    /// so that leaders spread out. One node: every replica list is `[node_id]`.
    fn place(&self, first: i32, count: i32, replication_factor: i16) -> Result<Vec<Vec<i32>>, ControllerError> {
        let brokers = self.registered_brokers();
        let wanted = usize::try_from(replication_factor).unwrap_or(0);
        if wanted > brokers.len() {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {} broker(s) are registered.",
                brokers.len()
            )));
        }
        if wanted > REPLICATION_FACTOR_MAX {
            return Err(ControllerError::PolicyViolation(format!(
                "Replication factor {wanted} is more than the {REPLICATION_FACTOR_MAX} this broker allows."
            )));
        }
        Ok((first..first + count)
            .map(|partition| {
                let start = usize::try_from(partition).unwrap_or(0) % brokers.len();
                (0..wanted).map(|i| brokers[(start + i) % brokers.len()]).collect()
            })
            .collect())
    }

    fn check_partition_limits(&self, existing: usize, added: usize) -> Result<(), ControllerError> {
        let per_topic = PARTITIONS_PER_TOPIC_MAX as usize;
        if existing + added > per_topic {
            return Err(ControllerError::PolicyViolation(format!(
                "A topic may have at most {per_topic} partitions on this broker; {} were requested.",
                existing + added
            )));
        }
        let total = self.image.partition_count() + added;
        if total > PARTITIONS_TOTAL_MAX {
            return Err(ControllerError::PolicyViolation(format!(
                "The cluster may have at most {PARTITIONS_TOTAL_MAX} partitions; this would make {total}."
            )));
        }
        Ok(())
    }

    fn new_topic_id(&self) -> Result<TopicId, ControllerError> {
        for _ in 0..meta_properties::RANDOM_ID_ATTEMPTS_MAX {
            let id = random_id();
            if is_usable_id(&id) && !self.image.topic_ids.contains_key(&id) {
                return Ok(id);
            }
        }
        Err(ControllerError::InvalidRequest("Could not draw an unused topic id.".into()))
    }

    /// Replica lists of a CreateTopics entry, Kafka's rules for manual and automatic assignment.
    fn creation_placement(
        &self,
        num_partitions: i32,
        replication_factor: i16,
        assignments: Option<Vec<(i32, Vec<i32>)>>,
        default_partitions: i32,
    ) -> Result<Vec<Vec<i32>>, ControllerError> {
        match assignments.filter(|assignments| !assignments.is_empty()) {
            Some(assignments) => {
                if replication_factor != -1 {
                    return Err(ControllerError::InvalidRequest(
                        "A manual partition assignment was specified, but replication factor was not set to -1.".into(),
                    ));
                }
                if num_partitions != -1 {
                    return Err(ControllerError::InvalidRequest(
                        "A manual partition assignment was specified, but numPartitions was not set to -1.".into(),
                    ));
                }
                self.check_partition_limits(0, assignments.len())?;
                let mut by_partition: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
                let mut replication_factor = None;
                for (partition, replicas) in assignments {
                    if by_partition.contains_key(&partition) {
                        return Err(ControllerError::InvalidReplicaAssignment(format!(
                            "Found multiple manual partition assignments for partition {partition}"
                        )));
                    }
                    self.validate_manual_assignment(&replicas, replication_factor)?;
                    replication_factor = Some(replicas.len());
                    by_partition.insert(partition, replicas);
                }
                let consecutive = by_partition.keys().copied().eq(0..by_partition.len() as i32);
                if !consecutive {
                    return Err(ControllerError::InvalidReplicaAssignment(
                        "partitions should be a consecutive 0-based integer sequence".into(),
                    ));
                }
                Ok(by_partition.into_values().collect())
            }
            None => {
                if replication_factor < -1 || replication_factor == 0 {
                    return Err(ControllerError::InvalidReplicationFactor(
                        "Replication factor was set to an invalid non-positive value.".into(),
                    ));
                }
                if num_partitions < -1 || num_partitions == 0 {
                    return Err(ControllerError::InvalidPartitions(
                        "Number of partitions was set to an invalid non-positive value.".into(),
                    ));
                }
                let count = if num_partitions == -1 { default_partitions } else { num_partitions };
                if count < 1 {
                    return Err(ControllerError::InvalidPartitions(
                        "Number of partitions was set to an invalid non-positive value.".into(),
                    ));
                }
                let replication_factor = if replication_factor == -1 { REPLICATION_FACTOR_DEFAULT } else { replication_factor };
                self.check_partition_limits(0, count as usize)?;
                self.place(0, count, replication_factor)
            }
        }
    }

    /// CreateTopics for one topic. `num_partitions` and `replication_factor` of -1 take the
    /// broker defaults (`default_partitions`, and Kafka's default replication factor of 1);
    /// `assignments` lists `(partition, replicas)` and requires both to be -1. Returns the topic
    /// as created (or as it would be, with `validate_only`).
    #[allow(clippy::too_many_arguments)]
    pub fn create_topic(
        &mut self,
        name: &str,
        num_partitions: i32,
        replication_factor: i16,
        assignments: Option<Vec<(i32, Vec<i32>)>>,
        configs: &BTreeMap<String, String>,
        validate_only: bool,
        default_partitions: i32,
    ) -> Result<Arc<TopicImage>, ControllerError> {
        validate_topic_name(name)?;
        if self.image.topics.contains_key(name) {
            return Err(ControllerError::TopicAlreadyExists(name.to_string()));
        }
        if let Some(existing) = colliding_topic(&self.image, name) {
            return Err(ControllerError::InvalidTopic(format!("Topic '{name}' collides with existing topic: {existing}")));
        }
        for (key, value) in configs {
            check_config_value_size(key, value)?;
        }
        validate_topic_overrides(configs)?;
        let placement = self.creation_placement(num_partitions, replication_factor, assignments, default_partitions)?;
        if self.image.topics.len() >= TOPICS_MAX {
            return Err(ControllerError::PolicyViolation(format!("The cluster may have at most {TOPICS_MAX} topics.")));
        }
        let topic_id = self.new_topic_id()?;
        let mut records = Vec::with_capacity(placement.len() + 1);
        records.push(MetadataRecord::CreateTopic {
            topic_id,
            name: name.to_string(),
            configs: configs.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        });
        for (partition, replicas) in (0..).zip(placement) {
            records.push(MetadataRecord::CreatePartition {
                topic_id,
                partition,
                leader: replicas[0],
                isr: replicas.clone(),
                replicas,
                leader_epoch: LEADER_EPOCH_INITIAL,
            });
        }
        let image = if validate_only { Arc::new(self.stage(&records)?) } else { self.commit(records)? };
        let topic = image.topics.get(name).cloned();
        if !validate_only {
            tracing::info!(topic = name, id = %topic_id_to_string(&topic_id), "created topic");
        }
        topic.ok_or(ControllerError::Inconsistent(ApplyError::UnknownTopicId { id: topic_id }))
    }

    /// DeleteTopics by name; returns the deleted topic's id.
    pub fn delete_topic_by_name(&mut self, name: &str) -> Result<TopicId, ControllerError> {
        let id = self.image.topics.get(name).map(|topic| topic.id).ok_or(ControllerError::UnknownTopicOrPartition)?;
        self.commit(vec![MetadataRecord::DeleteTopic { topic_id: id }])?;
        tracing::info!(topic = name, id = %topic_id_to_string(&id), "deleted topic");
        Ok(id)
    }

    /// DeleteTopics by id (v6+); returns the deleted topic's name.
    pub fn delete_topic_by_id(&mut self, id: TopicId) -> Result<String, ControllerError> {
        if id == [0; 16] {
            return Err(ControllerError::InvalidRequest(format!(
                "Attempt to find topic with invalid topicId {}",
                topic_id_to_string(&id)
            )));
        }
        let name = self.image.topic_ids.get(&id).cloned().ok_or(ControllerError::UnknownTopicId)?;
        self.commit(vec![MetadataRecord::DeleteTopic { topic_id: id }])?;
        tracing::info!(topic = %name, id = %topic_id_to_string(&id), "deleted topic");
        Ok(name)
    }

    /// CreatePartitions: grows `name` to `new_total` partitions. `assignments` gives the replica
    /// list of each new partition, in order.
    pub fn create_partitions(
        &mut self,
        name: &str,
        new_total: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<Arc<TopicImage>, ControllerError> {
        let topic = self.image.topics.get(name).cloned().ok_or(ControllerError::UnknownTopicOrPartition)?;
        let current = topic.partitions.len() as i32;
        if new_total == current {
            return Err(ControllerError::InvalidPartitions(format!("Topic already has {current} partition(s).")));
        }
        if new_total < current {
            return Err(ControllerError::InvalidPartitions(format!(
                "The topic {name} currently has {current} partition(s); {new_total} would not be an increase."
            )));
        }
        let added = new_total - current;
        self.check_partition_limits(topic.partitions.len(), added as usize)?;
        let replication_factor = topic.replication_factor();
        let placement = match assignments {
            Some(assignments) => {
                if assignments.len() != added as usize {
                    return Err(ControllerError::InvalidReplicaAssignment(format!(
                        "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
                        assignments.len()
                    )));
                }
                for replicas in &assignments {
                    self.validate_manual_assignment(replicas, Some(replication_factor))?;
                }
                assignments
            }
            None => self.place(current, added, replication_factor as i16)?,
        };
        let records: Vec<MetadataRecord> = (current..)
            .zip(placement)
            .map(|(partition, replicas)| MetadataRecord::CreatePartition {
                topic_id: topic.id,
                partition,
                leader: replicas[0],
                isr: replicas.clone(),
                replicas,
                leader_epoch: LEADER_EPOCH_INITIAL,
            })
            .collect();
        let image = if validate_only { Arc::new(self.stage(&records)?) } else { self.commit(records)? };
        image.topics.get(name).cloned().ok_or(ControllerError::Inconsistent(ApplyError::UnknownTopicId { id: topic.id }))
    }

    /// The value an Append or Subtract starts from: the override, else the broker-level value.
    fn topic_list_base(&self, overrides: &BTreeMap<String, String>, key: &str) -> String {
        if let Some(value) = overrides.get(key) {
            return value.clone();
        }
        let entries = fjord_engine::topic_config::describe_topic_configs(
            &self.broker_configs(),
            &BTreeMap::new(),
            Some(&[key.to_string()]),
        );
        entries.into_iter().next().and_then(|entry| entry.value).unwrap_or_default()
    }

    /// IncrementalAlterConfigs on a topic.
    pub fn alter_topic_configs(
        &mut self,
        name: &str,
        ops: &[(String, AlterOp)],
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        let topic = self.image.topics.get(name).cloned().ok_or(ControllerError::UnknownTopicOrPartition)?;
        check_duplicate_keys(ops)?;
        let mut next = topic.configs.clone();
        for (key, op) in ops {
            let def = topic_config_def(key).ok_or_else(|| ConfigError::Unknown(key.clone()))?;
            match op {
                AlterOp::Set(value) => {
                    check_config_value_size(key, value)?;
                    validate_topic_config(key, value)?;
                    next.insert(key.clone(), value.clone());
                }
                AlterOp::Delete => {
                    next.remove(key);
                }
                AlterOp::Append(value) | AlterOp::Subtract(value) => {
                    if def.config_type != ConfigType::List {
                        return Err(list_op_not_allowed(key, op));
                    }
                    check_config_value_size(key, value)?;
                    let edited = edit_list(&self.topic_list_base(&topic.configs, key), op);
                    check_config_value_size(key, &edited)?;
                    validate_topic_config(key, &edited)?;
                    next.insert(key.clone(), edited);
                }
            }
        }
        self.write_topic_configs(&topic, next, validate_only)
    }

    /// Legacy AlterConfigs on a topic: `full` replaces every override.
    pub fn replace_topic_configs(
        &mut self,
        name: &str,
        full: &BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        let topic = self.image.topics.get(name).cloned().ok_or(ControllerError::UnknownTopicOrPartition)?;
        for (key, value) in full {
            check_config_value_size(key, value)?;
        }
        self.write_topic_configs(&topic, full.clone(), validate_only)
    }

    fn write_topic_configs(
        &mut self,
        topic: &TopicImage,
        next: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        validate_topic_overrides(&next)?;
        let set = config_diff(&topic.configs, &next);
        if validate_only || set.is_empty() {
            return Ok(());
        }
        self.commit(vec![MetadataRecord::AlterTopicConfig { topic_id: topic.id, set }])?;
        tracing::info!(topic = %topic.name, "altered topic configs");
        Ok(())
    }

    /// IncrementalAlterConfigs on the broker resource: dynamic broker configs, which are the
    /// defaults of topic configs.
    pub fn alter_broker_configs(&mut self, ops: &[(String, AlterOp)], validate_only: bool) -> Result<(), ControllerError> {
        check_duplicate_keys(ops)?;
        let current = self.image.broker_config.clone();
        let mut next = current.clone();
        for (key, op) in ops {
            match op {
                AlterOp::Set(value) => {
                    check_config_value_size(key, value)?;
                    validate_broker_dynamic(key, value)?;
                    next.insert(key.clone(), value.clone());
                }
                AlterOp::Delete => {
                    if topic_config_for_broker_key(key).is_none() {
                        // Same answer as setting it: unknown or static-only.
                        validate_broker_dynamic(key, "")?;
                    }
                    next.remove(key);
                }
                AlterOp::Append(value) | AlterOp::Subtract(value) => {
                    let def = topic_config_for_broker_key(key);
                    if def.is_none() {
                        validate_broker_dynamic(key, value)?;
                    }
                    if def.is_none_or(|def| def.config_type != ConfigType::List) {
                        return Err(list_op_not_allowed(key, op));
                    }
                    let base = match current.get(key) {
                        Some(value) => value.clone(),
                        None => describe_broker_configs(&self.broker_configs(), Some(std::slice::from_ref(key)))
                            .into_iter()
                            .next()
                            .and_then(|entry| entry.value)
                            .unwrap_or_default(),
                    };
                    let edited = edit_list(&base, op);
                    check_config_value_size(key, &edited)?;
                    validate_broker_dynamic(key, &edited)?;
                    next.insert(key.clone(), edited);
                }
            }
        }
        let set = config_diff(&current, &next);
        if validate_only || set.is_empty() {
            return Ok(());
        }
        self.commit(vec![MetadataRecord::AlterBrokerConfig { set }])?;
        tracing::info!("altered dynamic broker configs");
        Ok(())
    }

    /// The effective config of a topic as this controller sees it.
    pub fn topic_config(&self, name: &str) -> Option<fjord_engine::topic_config::TopicConfig> {
        let topic = self.image.topics.get(name)?;
        Some(resolve_topic_config(&self.broker_configs(), &topic.configs))
    }
}

/// The changes turning `current` into `next`: `Some` to set, `None` to remove.
fn config_diff(current: &BTreeMap<String, String>, next: &BTreeMap<String, String>) -> Vec<(String, Option<String>)> {
    let removed = current.keys().filter(|key| !next.contains_key(*key)).map(|key| (key.clone(), None));
    let set = next
        .iter()
        .filter(|(key, value)| current.get(*key) != Some(*value))
        .map(|(key, value)| (key.clone(), Some(value.clone())));
    removed.chain(set).collect()
}

#[cfg(test)]
mod tests;
