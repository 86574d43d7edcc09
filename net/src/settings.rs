//! Broker-wide settings the protocol layer needs, fixed at start.

use std::collections::BTreeMap;
use std::time::Duration;

use fjord_group::classic::ClassicConfig;
use fjord_group::consumer::ConsumerGroupConfig;
use fjord_group::txn::TxnConfig;

/// Settings shared (read-only) by every shard.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub node_id: i32,
    pub advertised_host: String,
    pub advertised_port: u16,
    pub auto_create_topics_enable: bool,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    /// socket.request.max.bytes: frames larger than this close the connection.
    pub socket_request_max_bytes: usize,
    /// queued.max.request.bytes for the whole broker: each shard's request memory budget is its
    /// share (`budget`), at least one frame of `socket_request_max_bytes`.
    pub queued_max_request_bytes: usize,
    /// connections.max.idle.ms: a connection with nothing in flight and no request for this long
    /// is closed.
    pub connections_max_idle: std::time::Duration,
    /// request.read.timeout.ms (Fjord's): a request's body must arrive within this once its memory
    /// is reserved, or the connection is closed.
    pub request_read_timeout: std::time::Duration,
    /// log.retention.check.interval.ms: how often each shard runs retention over its partitions.
    pub retention_check_interval: std::time::Duration,
    /// log.cleaner.backoff.ms: how long each shard's log cleaner sleeps between passes.
    pub cleaner_backoff: std::time::Duration,
    /// log.cleaner.io.max.bytes.per.second for the whole broker (0: no limit); each shard's
    /// cleaner reads at most its share.
    pub cleaner_io_bytes_per_second: u64,
    /// producer.id.expiration.ms: idempotent producers idle this long are forgotten per partition.
    pub producer_id_expiration_ms: i64,
    /// producer.id.expiration.check.interval.ms: how often each shard looks for them.
    pub producer_id_expiration_check_interval: std::time::Duration,
    /// Group coordinator settings (group.*, offsets.topic.num.partitions).
    pub coordinator: CoordinatorSettings,
    /// Transaction coordinator settings (transaction.*, transactional.id.expiration.ms).
    pub transactions: TxnSettings,
    /// Broker-level config values from the config file and flags (Kafka broker key names).
    pub static_configs: BTreeMap<String, String>,
}

/// Group coordinator settings from the broker's (group.* and offsets.topic.*).
#[derive(Debug, Clone)]
pub struct CoordinatorSettings {
    pub classic: ClassicConfig,
    pub consumer: ConsumerGroupConfig,
    pub offsets_topic_partitions: i32,
}

impl Default for CoordinatorSettings {
    fn default() -> Self {
        CoordinatorSettings {
            classic: ClassicConfig::default(),
            consumer: ConsumerGroupConfig::default(),
            offsets_topic_partitions: 50,
        }
    }
}

/// Transaction coordinator settings (transaction.*, transactional.id.expiration.ms).
#[derive(Debug, Clone)]
pub struct TxnSettings {
    pub config: TxnConfig,
    /// transaction.state.log.num.partitions.
    pub partitions: i32,
    /// transaction.abort.timed.out.transaction.cleanup.interval.ms.
    pub abort_check_interval: Duration,
}

impl Default for TxnSettings {
    fn default() -> Self {
        TxnSettings {
            config: TxnConfig { transaction_max_timeout_ms: 900_000, transactional_id_expiration_ms: 604_800_000 },
            partitions: 50,
            abort_check_interval: Duration::from_secs(10),
        }
    }
}
