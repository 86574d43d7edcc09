//! Topic and broker configuration, as Kafka defines it.
//!
//! One table, [`TOPIC_CONFIGS`], holds every topic config Fjord knows: its topic key, the broker
//! keys that supply its default (Kafka's "server default property", in priority order), its Kafka
//! type, Kafka's default value, the validator Kafka applies and a one-line description. A second
//! table, [`BROKER_ONLY_CONFIGS`], holds the broker keys that are not topic defaults.
//!
//! ```text
//!   effective value of a topic config (first one present wins)
//!   ┌──────────────────────────┐
//!   │ topic override           │  DYNAMIC_TOPIC_CONFIG (1)    CreateTopics / AlterConfigs
//!   ├──────────────────────────┤
//!   │ for each broker synonym: │
//!   │   dynamic broker value   │  DYNAMIC_BROKER_CONFIG (2)   AlterConfigs on the broker
//!   │   static broker value    │  STATIC_BROKER_CONFIG (4)    config file / flags
//!   ├──────────────────────────┤
//!   │ Kafka's default          │  DEFAULT_CONFIG (5)
//!   └──────────────────────────┘
//! ```
//!
//! Values are parsed and validated the way Kafka's `ConfigDef` does it (trimmed, Java number
//! ranges, case-sensitive enumerations) and rejected with Kafka's wording, so an admin client
//! shows the same message it would show against Kafka. Defaults and bounds follow Kafka 4.0,
//! including KIP-1030 (`segment.bytes` at least 1 MiB, `message.timestamp.after.max.ms` one hour).
//!
//! Everything here is plain data and pure functions: the metadata image carries the overrides and
//! the dynamic broker values, and each shard resolves a [`TopicConfig`] from them when it opens a
//! partition or sees a config change.

use std::collections::BTreeMap;
use std::fmt;

// ---------------------------------------------------------------------------------------------
// Kafka's defaults (Kafka 4.0), one named constant each. The table below repeats them as the
// strings DescribeConfigs returns; `table_defaults_match_named_constants` keeps the two equal.
// ---------------------------------------------------------------------------------------------

/// `retention.ms`: 7 days.
pub const RETENTION_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;
/// `retention.bytes`: no size limit.
pub const RETENTION_BYTES_DEFAULT: i64 = -1;
/// `segment.bytes`: 1 GiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;
/// Smallest `segment.bytes` Kafka 4.0 accepts (KIP-1030; it was 14 bytes before 4.0).
pub const SEGMENT_BYTES_MIN: i64 = 1024 * 1024;
/// `segment.ms`: 7 days.
pub const SEGMENT_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;
/// `segment.jitter.ms`: no jitter.
pub const SEGMENT_JITTER_MS_DEFAULT: i64 = 0;
/// `segment.index.bytes`: 10 MiB.
pub const SEGMENT_INDEX_BYTES_DEFAULT: u32 = 10 * 1024 * 1024;
/// Smallest `segment.index.bytes` Kafka accepts (one index entry).
pub const SEGMENT_INDEX_BYTES_MIN: i64 = 4;
/// `max.message.bytes`: 1 MiB plus the 12-byte log overhead of a batch.
pub const MAX_MESSAGE_BYTES_DEFAULT: u32 = 1024 * 1024 + 12;
/// `min.insync.replicas`.
pub const MIN_INSYNC_REPLICAS_DEFAULT: i32 = 1;
/// `delete.retention.ms`: 1 day.
pub const DELETE_RETENTION_MS_DEFAULT: i64 = 24 * 60 * 60 * 1000;
/// `min.compaction.lag.ms`.
pub const MIN_COMPACTION_LAG_MS_DEFAULT: i64 = 0;
/// `max.compaction.lag.ms`: unbounded.
pub const MAX_COMPACTION_LAG_MS_DEFAULT: i64 = i64::MAX;
/// `min.cleanable.dirty.ratio`.
pub const MIN_CLEANABLE_DIRTY_RATIO_DEFAULT: f64 = 0.5;
/// `flush.ms`: never force a flush by time (Fjord's own durability is group commit).
pub const FLUSH_MS_DEFAULT: i64 = i64::MAX;
/// `flush.messages`: never force a flush by count.
pub const FLUSH_MESSAGES_DEFAULT: i64 = i64::MAX;
/// `file.delete.delay.ms`: 1 minute.
pub const FILE_DELETE_DELAY_MS_DEFAULT: i64 = 60_000;
/// `index.interval.bytes`.
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;
/// `message.timestamp.before.max.ms`: unbounded.
pub const MESSAGE_TIMESTAMP_BEFORE_MAX_MS_DEFAULT: i64 = i64::MAX;
/// `message.timestamp.after.max.ms`: 1 hour since Kafka 4.0 (KIP-1030).
pub const MESSAGE_TIMESTAMP_AFTER_MAX_MS_DEFAULT: i64 = 60 * 60 * 1000;
/// `unclean.leader.election.enable`.
pub const UNCLEAN_LEADER_ELECTION_ENABLE_DEFAULT: bool = false;
/// `preallocate`.
pub const PREALLOCATE_DEFAULT: bool = false;
/// `compression.gzip.level`: -1 asks zlib for its own default level (KIP-390).
pub const COMPRESSION_GZIP_LEVEL_DEFAULT: i32 = -1;
/// `compression.lz4.level` (KIP-390).
pub const COMPRESSION_LZ4_LEVEL_DEFAULT: i32 = 9;
/// `compression.zstd.level` (KIP-390).
pub const COMPRESSION_ZSTD_LEVEL_DEFAULT: i32 = 3;

/// Broker `num.partitions`.
pub const NUM_PARTITIONS_DEFAULT: i32 = 1;
/// Broker `default.replication.factor`.
pub const DEFAULT_REPLICATION_FACTOR_DEFAULT: i16 = 1;
/// Broker `auto.create.topics.enable`.
pub const AUTO_CREATE_TOPICS_ENABLE_DEFAULT: bool = true;
/// Broker `socket.request.max.bytes`: 100 MiB.
pub const SOCKET_REQUEST_MAX_BYTES_DEFAULT: i32 = 100 * 1024 * 1024;

const MS_PER_MINUTE: i64 = 60 * 1000;
const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;

// ---------------------------------------------------------------------------------------------
// Kafka's enumerations on the wire.
// ---------------------------------------------------------------------------------------------

/// Where a config value comes from: DescribeConfigs v1+ `ConfigSource` (KIP-226).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfigSource {
    Unknown,
    /// An override set on the topic.
    DynamicTopicConfig,
    /// Set by AlterConfigs on this broker.
    DynamicBrokerConfig,
    /// Set by AlterConfigs as the cluster-wide broker default.
    DynamicDefaultBrokerConfig,
    /// From the broker's config file or command line.
    StaticBrokerConfig,
    /// Kafka's built-in default.
    DefaultConfig,
}

impl ConfigSource {
    /// The `config_source` byte of DescribeConfigs.
    pub const fn code(self) -> i8 {
        match self {
            ConfigSource::Unknown => 0,
            ConfigSource::DynamicTopicConfig => 1,
            ConfigSource::DynamicBrokerConfig => 2,
            ConfigSource::DynamicDefaultBrokerConfig => 3,
            ConfigSource::StaticBrokerConfig => 4,
            ConfigSource::DefaultConfig => 5,
        }
    }
}

/// The type of a config: DescribeConfigs v4+ `config_type` (KIP-569).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfigType {
    Unknown,
    Boolean,
    String,
    Int,
    Short,
    Long,
    Double,
    List,
    Class,
    Password,
}

impl ConfigType {
    /// The `config_type` byte of DescribeConfigs.
    pub const fn code(self) -> i8 {
        match self {
            ConfigType::Unknown => 0,
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Short => 4,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
            ConfigType::Class => 8,
            ConfigType::Password => 9,
        }
    }

    /// The name Kafka prints in "Not a number of type LONG".
    pub const fn kafka_name(self) -> &'static str {
        match self {
            ConfigType::Unknown => "UNKNOWN",
            ConfigType::Boolean => "BOOLEAN",
            ConfigType::String => "STRING",
            ConfigType::Int => "INT",
            ConfigType::Short => "SHORT",
            ConfigType::Long => "LONG",
            ConfigType::Double => "DOUBLE",
            ConfigType::List => "LIST",
            ConfigType::Class => "CLASS",
            ConfigType::Password => "PASSWORD",
        }
    }
}

/// `cleanup.policy`: which of deletion by retention and compaction apply to a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    pub const fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }

    pub const fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
}

/// `message.timestamp.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// `compression.type` of a topic: the codec the broker stores batches in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompressionType {
    Uncompressed,
    Zstd,
    Lz4,
    Snappy,
    Gzip,
    /// Keep whatever codec the producer used.
    Producer,
}

impl CompressionType {
    /// The RecordBatch attribute codec batches are stored with, `None` for the producer's own.
    pub fn codec(self) -> Option<i16> {
        match self {
            CompressionType::Uncompressed => Some(0),
            CompressionType::Gzip => Some(1),
            CompressionType::Snappy => Some(2),
            CompressionType::Lz4 => Some(3),
            CompressionType::Zstd => Some(4),
            CompressionType::Producer => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tables.
// ---------------------------------------------------------------------------------------------

/// How Kafka validates a value once it has parsed it as its type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Validator {
    Any,
    /// `Range.atLeast(min)` for INT and LONG.
    AtLeast(i64),
    /// `Range.between(min, max)` for INT, both ends inclusive.
    IntBetween(i64, i64),
    /// `Range.between(min, max)` for DOUBLE, both ends inclusive.
    DoubleBetween(f64, f64),
    /// gzip levels: 1 to 9, or -1 for zlib's default.
    GzipLevel,
    /// `ValidString.in(...)`, case-sensitive.
    OneOf(&'static [&'static str]),
    /// `ValidList.in(...)`: a non-empty comma-separated list of these, case-sensitive.
    ListOf(&'static [&'static str]),
}

/// A broker key that supplies a topic config's default. `ms_per_unit` converts broker keys in
/// hours or minutes (`log.retention.hours`) to the topic config's milliseconds; 1 otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokerSynonym {
    pub name: &'static str,
    pub ms_per_unit: i64,
    /// The broker's own type for this key (`log.retention.hours` is an INT).
    pub config_type: ConfigType,
}

const fn same_unit(name: &'static str, config_type: ConfigType) -> BrokerSynonym {
    BrokerSynonym { name, ms_per_unit: 1, config_type }
}

/// One topic config, as Kafka defines it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConfigDef {
    /// Topic key, e.g. `retention.ms`.
    pub name: &'static str,
    /// Broker keys supplying the default, highest priority first. The first is the one that
    /// AlterConfigs may set on a broker; the others are static-only aliases in other units.
    pub broker_synonyms: &'static [BrokerSynonym],
    pub config_type: ConfigType,
    /// Kafka's default, as DescribeConfigs prints it.
    pub default: &'static str,
    pub validator: Validator,
    pub documentation: &'static str,
}

impl ConfigDef {
    /// The broker key that AlterConfigs may set dynamically for this topic config.
    pub fn broker_key(&self) -> &'static str {
        self.broker_synonyms[0].name
    }
}

const CLEANUP_POLICIES: &[&str] = &["compact", "delete"];
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

/// Every topic config Fjord knows, sorted by topic key.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        broker_synonyms: &[same_unit("log.cleanup.policy", ConfigType::List)],
        config_type: ConfigType::List,
        default: "delete",
        validator: Validator::ListOf(CLEANUP_POLICIES),
        documentation: "Retention policy for old segments: delete, compact, or both (comma-separated).",
    },
    ConfigDef {
        name: "compression.gzip.level",
        broker_synonyms: &[same_unit("compression.gzip.level", ConfigType::Int)],
        config_type: ConfigType::Int,
        default: "-1",
        validator: Validator::GzipLevel,
        documentation: "Level used when the broker compresses batches with gzip.",
    },
    ConfigDef {
        name: "compression.lz4.level",
        broker_synonyms: &[same_unit("compression.lz4.level", ConfigType::Int)],
        config_type: ConfigType::Int,
        default: "9",
        validator: Validator::IntBetween(1, 17),
        documentation: "Level used when the broker compresses batches with lz4.",
    },
    ConfigDef {
        name: "compression.type",
        broker_synonyms: &[same_unit("compression.type", ConfigType::String)],
        config_type: ConfigType::String,
        default: "producer",
        validator: Validator::OneOf(COMPRESSION_TYPES),
        documentation: "Codec batches are stored in; 'producer' keeps the producer's codec.",
    },
    ConfigDef {
        name: "compression.zstd.level",
        broker_synonyms: &[same_unit("compression.zstd.level", ConfigType::Int)],
        config_type: ConfigType::Int,
        default: "3",
        validator: Validator::IntBetween(-131_072, 22),
        documentation: "Level used when the broker compresses batches with zstd.",
    },
    ConfigDef {
        name: "delete.retention.ms",
        broker_synonyms: &[same_unit("log.cleaner.delete.retention.ms", ConfigType::Long)],
        config_type: ConfigType::Long,
        default: "86400000",
        validator: Validator::AtLeast(0),
        documentation: "How long tombstones are kept in a compacted topic.",
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        broker_synonyms: &[same_unit("log.segment.delete.delay.ms", ConfigType::Long)],
        config_type: ConfigType::Long,
        default: "60000",
        validator: Validator::AtLeast(0),
        documentation: "Delay before a deleted segment's files are removed from disk.",
    },
    ConfigDef {
        name: "flush.messages",
        broker_synonyms: &[same_unit("log.flush.interval.messages", ConfigType::Long)],
        config_type: ConfigType::Long,
        default: "9223372036854775807",
        validator: Validator::AtLeast(1),
        documentation: "Force an fsync after this many messages.",
    },
    ConfigDef {
        name: "flush.ms",
        broker_synonyms: &[
            same_unit("log.flush.interval.ms", ConfigType::Long),
            same_unit("log.flush.scheduler.interval.ms", ConfigType::Long),
        ],
        config_type: ConfigType::Long,
        default: "9223372036854775807",
        validator: Validator::AtLeast(0),
        documentation: "Force an fsync when a message has waited this long.",
    },
    ConfigDef {
        name: "index.interval.bytes",
        broker_synonyms: &[same_unit("log.index.interval.bytes", ConfigType::Int)],
        config_type: ConfigType::Int,
        default: "4096",
        validator: Validator::AtLeast(0),
        documentation: "Bytes of log between two entries of the offset index.",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        broker_synonyms: &[same_unit("log.cleaner.max.compaction.lag.ms", ConfigType::Long)],
        config_type: ConfigType::Long,
        default: "9223372036854775807",
        validator: Validator::AtLeast(1),
        documentation: "Longest time a message stays ineligible for compaction.",
    },
    ConfigDef {
        name: "max.message.bytes",
        broker_synonyms: &[same_unit("message.max.bytes", ConfigType::Int)],
        config_type: ConfigType::Int,
        default: "1048588",
        validator: Validator::AtLeast(0),
        documentation: "Largest record batch the topic accepts, after compression.",
    },
    ConfigDef {
        name: "message.timestamp.after.max.ms",
        broker_synonyms: &[same_unit("log.message.timestamp.after.max.ms", ConfigType::Long)],
        config_type: ConfigType::Long,
        default: "3600000",
        validator: Validator::AtLeast(0),
        documentation: "How far ahead of broker time a CreateTime timestamp may be.",
    },
    ConfigDef {
        name: "message.timestamp.before.max.ms",
        broker_synonyms: &[same_unit("log.message.timestamp.before.max.ms", ConfigType::Long)],
        config_type: ConfigType::Long,
        default: "9223372036854775807",
        validator: Validator::AtLeast(0),
        documentation: "How far behind broker time a CreateTime timestamp may be.",
    },
    ConfigDef {
        name: "message.timestamp.type",
        broker_synonyms: &[same_unit("log.message.timestamp.type", ConfigType::String)],
        config_type: ConfigType::String,
        default: "CreateTime",
        validator: Validator::OneOf(TIMESTAMP_TYPES),
        documentation: "Whether record timestamps are the producer's (CreateTime) or the broker's.",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        broker_synonyms: &[same_unit("log.cleaner.min.cleanable.ratio", ConfigType::Double)],
        config_type: ConfigType::Double,
        default: "0.5",
        validator: Validator::DoubleBetween(0.0, 1.0),
        documentation: "Share of uncompacted log above which the cleaner compacts the topic.",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        broker_synonyms: &[same_unit("log.cleaner.min.compaction.lag.ms", ConfigType::Long)],
        config_type: ConfigType::Long,
        default: "0",
        validator: Validator::AtLeast(0),
        documentation: "Shortest time a message stays uncompacted.",
    },
    ConfigDef {
        name: "min.insync.replicas",
        broker_synonyms: &[same_unit("min.insync.replicas", ConfigType::Int)],
        config_type: ConfigType::Int,
        default: "1",
        validator: Validator::AtLeast(1),
        documentation: "Replicas that must have a write before acks=all succeeds.",
    },
    ConfigDef {
        name: "preallocate",
        broker_synonyms: &[same_unit("log.preallocate", ConfigType::Boolean)],
        config_type: ConfigType::Boolean,
        default: "false",
        validator: Validator::Any,
        documentation: "Allocate a new segment's full size on disk when it is created.",
    },
    ConfigDef {
        name: "retention.bytes",
        broker_synonyms: &[same_unit("log.retention.bytes", ConfigType::Long)],
        config_type: ConfigType::Long,
        default: "-1",
        validator: Validator::Any,
        documentation: "Largest size a partition grows to before old segments are deleted; -1 for none.",
    },
    ConfigDef {
        name: "retention.ms",
        broker_synonyms: &[
            same_unit("log.retention.ms", ConfigType::Long),
            BrokerSynonym { name: "log.retention.minutes", ms_per_unit: MS_PER_MINUTE, config_type: ConfigType::Int },
            BrokerSynonym { name: "log.retention.hours", ms_per_unit: MS_PER_HOUR, config_type: ConfigType::Int },
        ],
        config_type: ConfigType::Long,
        default: "604800000",
        validator: Validator::AtLeast(-1),
        documentation: "How long a segment is kept before deletion; -1 for no time limit.",
    },
    ConfigDef {
        name: "segment.bytes",
        broker_synonyms: &[same_unit("log.segment.bytes", ConfigType::Int)],
        config_type: ConfigType::Int,
        default: "1073741824",
        validator: Validator::AtLeast(SEGMENT_BYTES_MIN),
        documentation: "Size at which the active segment is rolled.",
    },
    ConfigDef {
        name: "segment.index.bytes",
        broker_synonyms: &[same_unit("log.index.size.max.bytes", ConfigType::Int)],
        config_type: ConfigType::Int,
        default: "10485760",
        validator: Validator::AtLeast(SEGMENT_INDEX_BYTES_MIN),
        documentation: "Largest size of a segment's offset index.",
    },
    ConfigDef {
        name: "segment.jitter.ms",
        broker_synonyms: &[
            same_unit("log.roll.jitter.ms", ConfigType::Long),
            BrokerSynonym { name: "log.roll.jitter.hours", ms_per_unit: MS_PER_HOUR, config_type: ConfigType::Int },
        ],
        config_type: ConfigType::Long,
        default: "0",
        validator: Validator::AtLeast(0),
        documentation: "Largest random amount subtracted from segment.ms, to spread rolls out.",
    },
    ConfigDef {
        name: "segment.ms",
        broker_synonyms: &[
            same_unit("log.roll.ms", ConfigType::Long),
            BrokerSynonym { name: "log.roll.hours", ms_per_unit: MS_PER_HOUR, config_type: ConfigType::Int },
        ],
        config_type: ConfigType::Long,
        default: "604800000",
        validator: Validator::AtLeast(1),
        documentation: "Age at which the active segment is rolled even if not full.",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        broker_synonyms: &[same_unit("unclean.leader.election.enable", ConfigType::Boolean)],
        config_type: ConfigType::Boolean,
        default: "false",
        validator: Validator::Any,
        documentation: "Allow a replica outside the in-sync set to become leader (may lose data).",
    },
];

/// A broker config that is not the default of a topic config.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BrokerConfigDef {
    pub name: &'static str,
    pub config_type: ConfigType,
    /// Kafka's default; `None` where Kafka's is null.
    pub default: Option<&'static str>,
    pub validator: Validator,
    /// Cannot be changed by AlterConfigs (it needs a restart).
    pub read_only: bool,
    pub documentation: &'static str,
}

/// Broker keys that are not the first broker synonym of a topic config, sorted by key.
pub const BROKER_ONLY_CONFIGS: &[BrokerConfigDef] = &[
    BrokerConfigDef {
        name: "advertised.listeners",
        config_type: ConfigType::String,
        default: None,
        validator: Validator::Any,
        read_only: true,
        documentation: "Listeners published to clients, if different from listeners.",
    },
    BrokerConfigDef {
        name: "auto.create.topics.enable",
        config_type: ConfigType::Boolean,
        default: Some("true"),
        validator: Validator::Any,
        read_only: true,
        documentation: "Create a topic when a client asks for metadata of an unknown one.",
    },
    BrokerConfigDef {
        name: "broker.id",
        config_type: ConfigType::Int,
        default: Some("-1"),
        validator: Validator::Any,
        read_only: true,
        documentation: "This broker's id; the same as node.id.",
    },
    BrokerConfigDef {
        name: "default.replication.factor",
        config_type: ConfigType::Int,
        default: Some("1"),
        validator: Validator::AtLeast(1),
        read_only: true,
        documentation: "Replication factor of topics created without one.",
    },
    BrokerConfigDef {
        name: "listeners",
        config_type: ConfigType::String,
        default: Some("PLAINTEXT://:9092"),
        validator: Validator::Any,
        read_only: true,
        documentation: "Addresses the broker listens on.",
    },
    BrokerConfigDef {
        name: "log.dirs",
        config_type: ConfigType::List,
        default: None,
        validator: Validator::Any,
        read_only: true,
        documentation: "Directories holding the log data.",
    },
    BrokerConfigDef {
        name: "log.flush.scheduler.interval.ms",
        config_type: ConfigType::Long,
        default: Some("9223372036854775807"),
        validator: Validator::Any,
        read_only: true,
        documentation: "Fallback for log.flush.interval.ms when that is not set.",
    },
    BrokerConfigDef {
        name: "log.retention.hours",
        config_type: ConfigType::Int,
        default: Some("168"),
        validator: Validator::Any,
        read_only: true,
        documentation: "Retention in hours, used when log.retention.ms and .minutes are not set.",
    },
    BrokerConfigDef {
        name: "log.retention.minutes",
        config_type: ConfigType::Int,
        default: None,
        validator: Validator::Any,
        read_only: true,
        documentation: "Retention in minutes, used when log.retention.ms is not set.",
    },
    BrokerConfigDef {
        name: "log.roll.hours",
        config_type: ConfigType::Int,
        default: Some("168"),
        validator: Validator::AtLeast(1),
        read_only: true,
        documentation: "Segment roll age in hours, used when log.roll.ms is not set.",
    },
    BrokerConfigDef {
        name: "log.roll.jitter.hours",
        config_type: ConfigType::Int,
        default: Some("0"),
        validator: Validator::AtLeast(0),
        read_only: true,
        documentation: "Roll jitter in hours, used when log.roll.jitter.ms is not set.",
    },
    BrokerConfigDef {
        name: "node.id",
        config_type: ConfigType::Int,
        default: Some("-1"),
        validator: Validator::Any,
        read_only: true,
        documentation: "This node's id in the cluster.",
    },
    BrokerConfigDef {
        name: "num.partitions",
        config_type: ConfigType::Int,
        default: Some("1"),
        validator: Validator::AtLeast(1),
        read_only: true,
        documentation: "Partition count of topics created without one.",
    },
    BrokerConfigDef {
        name: "socket.request.max.bytes",
        config_type: ConfigType::Int,
        default: Some("104857600"),
        validator: Validator::AtLeast(1),
        read_only: true,
        documentation: "Largest request the broker reads from a socket.",
    },
];

/// The definition of a topic config, by topic key.
pub fn topic_config_def(key: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|def| def.name == key)
}

/// The topic config whose dynamic broker key (first synonym) is `broker_key`.
pub fn topic_config_for_broker_key(broker_key: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|def| def.broker_key() == broker_key)
}

/// The definition of a broker-only config, by key.
pub fn broker_only_config_def(key: &str) -> Option<&'static BrokerConfigDef> {
    BROKER_ONLY_CONFIGS.iter().find(|def| def.name == key)
}

/// The type of a broker key, whether a topic default or broker-only.
pub fn broker_config_type(key: &str) -> Option<ConfigType> {
    if let Some(def) = topic_config_for_broker_key(key) {
        return Some(def.config_type);
    }
    broker_only_config_def(key).map(|def| def.config_type)
}

// ---------------------------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------------------------

/// Why Kafka would refuse a value; the text after "Invalid value X for configuration Y: ".
#[derive(Clone, Debug, PartialEq)]
pub enum InvalidReason {
    NotANumber(ConfigType),
    NotABoolean,
    AtLeast(String),
    NoMoreThan(String),
    GzipLevel,
    OneOf(&'static [&'static str]),
    EmptyList,
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidReason::NotANumber(ty) => write!(f, "Not a number of type {}", ty.kafka_name()),
            InvalidReason::NotABoolean => f.write_str("Expected value to be either true or false"),
            InvalidReason::AtLeast(min) => write!(f, "Value must be at least {min}"),
            InvalidReason::NoMoreThan(max) => write!(f, "Value must be no more than {max}"),
            InvalidReason::GzipLevel => f.write_str("Value must be between 1 and 9 or equal to -1"),
            InvalidReason::OneOf(allowed) => {
                write!(f, "String must be one of: {}", allowed.join(", "))
            }
            InvalidReason::EmptyList => f.write_str("List must not be empty"),
        }
    }
}

/// A config name or value Kafka would refuse, with Kafka's message.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("Unknown topic config name: {0}")]
    Unknown(String),
    #[error("Unknown broker config name: {0}")]
    UnknownBroker(String),
    #[error("Invalid value {value} for configuration {key}: {reason}")]
    Invalid { key: String, value: String, reason: InvalidReason },
    /// A broker config that only a restart can change.
    #[error("Cannot update these configs dynamically: Set({0})")]
    ReadOnly(String),
    #[error("conflict topic config setting min.compaction.lag.ms ({min_ms}) > max.compaction.lag.ms ({max_ms})")]
    CompactionLagConflict { min_ms: i64, max_ms: i64 },
}

// ---------------------------------------------------------------------------------------------
// Parsing and validation, as Kafka's ConfigDef does it.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Parsed {
    Boolean(bool),
    Int(i32),
    Long(i64),
    Double(f64),
    Text(String),
    List(Vec<String>),
}

/// Splits a LIST value the way Kafka does: trimmed, comma-separated, whitespace around commas
/// ignored; an empty string is an empty list.
pub fn split_list(value: &str) -> Vec<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed.split(',').map(|item| item.trim().to_string()).collect()
}

/// Joins a LIST value back into Kafka's comma-separated form.
pub fn join_list(items: &[String]) -> String {
    items.join(",")
}

fn invalid(key: &str, value: &str, reason: InvalidReason) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), value: value.to_string(), reason }
}

fn parse_typed(key: &str, config_type: ConfigType, raw: &str) -> Result<Parsed, ConfigError> {
    let trimmed = raw.trim();
    let not_a_number = || invalid(key, raw, InvalidReason::NotANumber(config_type));
    match config_type {
        ConfigType::Boolean => {
            if trimmed.eq_ignore_ascii_case("true") {
                Ok(Parsed::Boolean(true))
            } else if trimmed.eq_ignore_ascii_case("false") {
                Ok(Parsed::Boolean(false))
            } else {
                Err(invalid(key, raw, InvalidReason::NotABoolean))
            }
        }
        ConfigType::Int | ConfigType::Short => trimmed.parse::<i32>().map(Parsed::Int).map_err(|_| not_a_number()),
        ConfigType::Long => trimmed.parse::<i64>().map(Parsed::Long).map_err(|_| not_a_number()),
        ConfigType::Double => match trimmed.parse::<f64>() {
            // Java's parseDouble would take NaN, and its range checks would then pass it; a NaN
            // ratio means nothing, so refuse it as not a number.
            Ok(number) if !number.is_nan() => Ok(Parsed::Double(number)),
            _ => Err(not_a_number()),
        },
        ConfigType::List => Ok(Parsed::List(split_list(raw))),
        ConfigType::String | ConfigType::Class | ConfigType::Password | ConfigType::Unknown => {
            Ok(Parsed::Text(trimmed.to_string()))
        }
    }
}

fn check(key: &str, raw: &str, parsed: &Parsed, validator: Validator) -> Result<(), ConfigError> {
    let whole = match parsed {
        Parsed::Int(n) => Some(i64::from(*n)),
        Parsed::Long(n) => Some(*n),
        _ => None,
    };
    match validator {
        Validator::Any => Ok(()),
        Validator::AtLeast(min) => match whole {
            Some(n) if n < min => Err(invalid(key, raw, InvalidReason::AtLeast(min.to_string()))),
            _ => Ok(()),
        },
        Validator::IntBetween(min, max) => match whole {
            Some(n) if n < min => Err(invalid(key, raw, InvalidReason::AtLeast(min.to_string()))),
            Some(n) if n > max => Err(invalid(key, raw, InvalidReason::NoMoreThan(max.to_string()))),
            _ => Ok(()),
        },
        Validator::DoubleBetween(min, max) => match parsed {
            Parsed::Double(x) if *x < min => Err(invalid(key, raw, InvalidReason::AtLeast(min.to_string()))),
            Parsed::Double(x) if *x > max => Err(invalid(key, raw, InvalidReason::NoMoreThan(max.to_string()))),
            _ => Ok(()),
        },
        Validator::GzipLevel => match whole {
            Some(n) if n == -1 || (1..=9).contains(&n) => Ok(()),
            Some(_) => Err(invalid(key, raw, InvalidReason::GzipLevel)),
            None => Ok(()),
        },
        Validator::OneOf(allowed) => match parsed {
            Parsed::Text(text) if !allowed.contains(&text.as_str()) => Err(invalid(key, raw, InvalidReason::OneOf(allowed))),
            _ => Ok(()),
        },
        Validator::ListOf(allowed) => match parsed {
            // Kafka 4.0 still takes an empty cleanup.policy; Fjord has no "neither" policy, so
            // it refuses one rather than guess what the topic should do.
            Parsed::List(items) if items.is_empty() => Err(invalid(key, raw, InvalidReason::EmptyList)),
            Parsed::List(items) => match items.iter().find(|item| !allowed.contains(&item.as_str())) {
                Some(bad) => Err(invalid(key, bad, InvalidReason::OneOf(allowed))),
                None => Ok(()),
            },
            _ => Ok(()),
        },
    }
}

fn parse_and_check(key: &str, config_type: ConfigType, validator: Validator, raw: &str) -> Result<Parsed, ConfigError> {
    let parsed = parse_typed(key, config_type, raw)?;
    check(key, raw, &parsed, validator)?;
    Ok(parsed)
}

/// Checks one topic config override: the key must be a topic config and the value valid for it.
pub fn validate_topic_config(key: &str, value: &str) -> Result<(), ConfigError> {
    let def = topic_config_def(key).ok_or_else(|| ConfigError::Unknown(key.to_string()))?;
    parse_and_check(def.name, def.config_type, def.validator, value).map(|_| ())
}

/// Checks a topic's whole override set: each entry, then the rules across entries Kafka applies
/// (`LogConfig.validateValues`), with Kafka's defaults standing in for keys not overridden.
pub fn validate_topic_overrides(overrides: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (key, value) in overrides {
        validate_topic_config(key, value)?;
    }
    let long_or =
        |key: &str, default: i64| overrides.get(key).and_then(|value| value.trim().parse::<i64>().ok()).unwrap_or(default);
    let min_ms = long_or("min.compaction.lag.ms", MIN_COMPACTION_LAG_MS_DEFAULT);
    let max_ms = long_or("max.compaction.lag.ms", MAX_COMPACTION_LAG_MS_DEFAULT);
    if min_ms > max_ms {
        return Err(ConfigError::CompactionLagConflict { min_ms, max_ms });
    }
    Ok(())
}

/// Checks a broker config set by AlterConfigs on a broker resource. The first broker synonym
/// of each topic config may change at run time; everything else needs a restart.
pub fn validate_broker_dynamic(key: &str, value: &str) -> Result<(), ConfigError> {
    if let Some(def) = topic_config_for_broker_key(key) {
        let synonym = def.broker_synonyms[0];
        return parse_and_check(key, synonym.config_type, def.validator, value).map(|_| ());
    }
    match broker_only_config_def(key) {
        Some(def) if def.read_only => Err(ConfigError::ReadOnly(key.to_string())),
        Some(def) => parse_and_check(key, def.config_type, def.validator, value).map(|_| ()),
        None => Err(ConfigError::UnknownBroker(key.to_string())),
    }
}

// ---------------------------------------------------------------------------------------------
// Resolution.
// ---------------------------------------------------------------------------------------------

/// Broker-level config values by broker key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BrokerConfigs {
    /// From the config file and command line; fixed for the life of the process.
    pub static_: BTreeMap<String, String>,
    /// From AlterConfigs on the broker resource, kept in the metadata log.
    pub dynamic: BTreeMap<String, String>,
}

/// The effective config of one topic, every value resolved and typed.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub segment_jitter_ms: i64,
    pub segment_index_bytes: u32,
    pub cleanup_policy: CleanupPolicy,
    pub max_message_bytes: u32,
    pub message_timestamp_type: TimestampType,
    pub message_timestamp_before_max_ms: i64,
    pub message_timestamp_after_max_ms: i64,
    pub min_insync_replicas: i32,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub flush_ms: i64,
    pub flush_messages: i64,
    pub compression_type: CompressionType,
    pub compression_gzip_level: i32,
    pub compression_lz4_level: i32,
    pub compression_zstd_level: i32,
    pub unclean_leader_election_enable: bool,
    pub file_delete_delay_ms: i64,
    pub index_interval_bytes: u32,
    pub preallocate: bool,
}

impl Default for TopicConfig {
    /// Kafka's defaults, with no broker or topic settings.
    fn default() -> Self {
        TopicConfig {
            retention_ms: RETENTION_MS_DEFAULT,
            retention_bytes: RETENTION_BYTES_DEFAULT,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: SEGMENT_MS_DEFAULT,
            segment_jitter_ms: SEGMENT_JITTER_MS_DEFAULT,
            segment_index_bytes: SEGMENT_INDEX_BYTES_DEFAULT,
            cleanup_policy: CleanupPolicy::Delete,
            max_message_bytes: MAX_MESSAGE_BYTES_DEFAULT,
            message_timestamp_type: TimestampType::CreateTime,
            message_timestamp_before_max_ms: MESSAGE_TIMESTAMP_BEFORE_MAX_MS_DEFAULT,
            message_timestamp_after_max_ms: MESSAGE_TIMESTAMP_AFTER_MAX_MS_DEFAULT,
            min_insync_replicas: MIN_INSYNC_REPLICAS_DEFAULT,
            delete_retention_ms: DELETE_RETENTION_MS_DEFAULT,
            min_compaction_lag_ms: MIN_COMPACTION_LAG_MS_DEFAULT,
            max_compaction_lag_ms: MAX_COMPACTION_LAG_MS_DEFAULT,
            min_cleanable_dirty_ratio: MIN_CLEANABLE_DIRTY_RATIO_DEFAULT,
            flush_ms: FLUSH_MS_DEFAULT,
            flush_messages: FLUSH_MESSAGES_DEFAULT,
            compression_type: CompressionType::Producer,
            compression_gzip_level: COMPRESSION_GZIP_LEVEL_DEFAULT,
            compression_lz4_level: COMPRESSION_LZ4_LEVEL_DEFAULT,
            compression_zstd_level: COMPRESSION_ZSTD_LEVEL_DEFAULT,
            unclean_leader_election_enable: UNCLEAN_LEADER_ELECTION_ENABLE_DEFAULT,
            file_delete_delay_ms: FILE_DELETE_DELAY_MS_DEFAULT,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            preallocate: PREALLOCATE_DEFAULT,
        }
    }
}

/// One resolved value: the text DescribeConfigs shows (in the topic config's units) and the
/// source it came from.
#[derive(Clone, Debug, PartialEq)]
struct Resolved {
    value: String,
    parsed: Parsed,
    source: ConfigSource,
}

/// A value from a broker synonym, checked against the topic config's rules and converted to
/// its units. `None` (with a warning) when it is not valid: the next source is used instead.
fn from_broker_synonym(def: &ConfigDef, synonym: &BrokerSynonym, raw: &str) -> Option<Parsed> {
    let parsed = match parse_typed(synonym.name, synonym.config_type, raw) {
        Ok(parsed) => parsed,
        Err(error) => {
            tracing::warn!(%error, "ignoring broker config {}", synonym.name);
            return None;
        }
    };
    let converted = match (synonym.ms_per_unit, &parsed) {
        (1, _) => parsed,
        (per_unit, Parsed::Int(n)) => Parsed::Long(i64::from(*n).saturating_mul(per_unit)),
        (per_unit, Parsed::Long(n)) => Parsed::Long(n.saturating_mul(per_unit)),
        _ => parsed,
    };
    // An INT broker key feeding a LONG topic config (or the reverse) keeps its number.
    let converted = match (def.config_type, converted) {
        (ConfigType::Long, Parsed::Int(n)) => Parsed::Long(i64::from(n)),
        (ConfigType::Int, Parsed::Long(n)) => match i32::try_from(n) {
            Ok(n) => Parsed::Int(n),
            Err(_) => {
                tracing::warn!("ignoring broker config {}: {raw} does not fit an INT", synonym.name);
                return None;
            }
        },
        (_, converted) => converted,
    };
    let shown = display_parsed(&converted);
    match check(def.name, &shown, &converted, def.validator) {
        Ok(()) => Some(converted),
        Err(error) => {
            tracing::warn!(%error, "ignoring broker config {}", synonym.name);
            None
        }
    }
}

fn display_parsed(parsed: &Parsed) -> String {
    match parsed {
        Parsed::Boolean(b) => b.to_string(),
        Parsed::Int(n) => n.to_string(),
        Parsed::Long(n) => n.to_string(),
        Parsed::Double(x) => x.to_string(),
        Parsed::Text(text) => text.clone(),
        Parsed::List(items) => join_list(items),
    }
}

/// The broker-level value of a topic config: each synonym in priority order, dynamic before
/// static, then Kafka's default (Kafka's `DynamicBrokerConfig` order).
fn resolve_broker_level(broker: &BrokerConfigs, def: &ConfigDef) -> Resolved {
    for synonym in def.broker_synonyms {
        let sources = [
            (broker.dynamic.get(synonym.name), ConfigSource::DynamicBrokerConfig),
            (broker.static_.get(synonym.name), ConfigSource::StaticBrokerConfig),
        ];
        for (raw, source) in sources {
            if let Some(parsed) = raw.and_then(|raw| from_broker_synonym(def, synonym, raw)) {
                return Resolved { value: display_parsed(&parsed), parsed, source };
            }
        }
    }
    default_of(def)
}

fn default_of(def: &ConfigDef) -> Resolved {
    let parsed = match parse_typed(def.name, def.config_type, def.default) {
        Ok(parsed) => parsed,
        // The table is checked by `every_default_passes_its_own_validator`.
        Err(_) => unreachable!("default of {} does not parse", def.name),
    };
    Resolved { value: def.default.to_string(), parsed, source: ConfigSource::DefaultConfig }
}

fn resolve_one(broker: &BrokerConfigs, overrides: &BTreeMap<String, String>, def: &ConfigDef) -> Resolved {
    if let Some(raw) = overrides.get(def.name) {
        match parse_and_check(def.name, def.config_type, def.validator, raw) {
            Ok(parsed) => {
                return Resolved { value: raw.clone(), parsed, source: ConfigSource::DynamicTopicConfig };
            }
            // Overrides are validated before they enter the metadata log; one that fails here
            // was written by an older, laxer version. Fall back rather than refuse the topic.
            Err(error) => tracing::warn!(%error, "ignoring topic override {}", def.name),
        }
    }
    resolve_broker_level(broker, def)
}

/// The effective config of a topic: override, then dynamic broker, then static broker, then
/// Kafka's default, for each key.
pub fn resolve_topic_config(broker: &BrokerConfigs, overrides: &BTreeMap<String, String>) -> TopicConfig {
    let mut config = TopicConfig::default();
    for def in TOPIC_CONFIGS {
        let resolved = resolve_one(broker, overrides, def);
        apply_resolved(&mut config, def.name, &resolved.parsed);
    }
    config
}

fn as_i64(parsed: &Parsed) -> Option<i64> {
    match parsed {
        Parsed::Int(n) => Some(i64::from(*n)),
        Parsed::Long(n) => Some(*n),
        _ => None,
    }
}

fn as_i32(parsed: &Parsed) -> Option<i32> {
    as_i64(parsed).and_then(|n| i32::try_from(n).ok())
}

fn as_u32(parsed: &Parsed) -> Option<u32> {
    as_i64(parsed).and_then(|n| u32::try_from(n).ok())
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

fn apply_resolved(config: &mut TopicConfig, name: &str, parsed: &Parsed) {
    let long = as_i64(parsed);
    let boolean = match parsed {
        Parsed::Boolean(b) => Some(*b),
        _ => None,
    };
    match name {
        "cleanup.policy" => set(&mut config.cleanup_policy, cleanup_policy_of(parsed)),
        "compression.gzip.level" => set(&mut config.compression_gzip_level, as_i32(parsed)),
        "compression.lz4.level" => set(&mut config.compression_lz4_level, as_i32(parsed)),
        "compression.type" => set(&mut config.compression_type, compression_type_of(parsed)),
        "compression.zstd.level" => set(&mut config.compression_zstd_level, as_i32(parsed)),
        "delete.retention.ms" => set(&mut config.delete_retention_ms, long),
        "file.delete.delay.ms" => set(&mut config.file_delete_delay_ms, long),
        "flush.messages" => set(&mut config.flush_messages, long),
        "flush.ms" => set(&mut config.flush_ms, long),
        "index.interval.bytes" => set(&mut config.index_interval_bytes, as_u32(parsed)),
        "max.compaction.lag.ms" => set(&mut config.max_compaction_lag_ms, long),
        "max.message.bytes" => set(&mut config.max_message_bytes, as_u32(parsed)),
        "message.timestamp.after.max.ms" => set(&mut config.message_timestamp_after_max_ms, long),
        "message.timestamp.before.max.ms" => set(&mut config.message_timestamp_before_max_ms, long),
        "message.timestamp.type" => set(&mut config.message_timestamp_type, timestamp_type_of(parsed)),
        "min.cleanable.dirty.ratio" => {
            if let Parsed::Double(ratio) = parsed {
                config.min_cleanable_dirty_ratio = *ratio;
            }
        }
        "min.compaction.lag.ms" => set(&mut config.min_compaction_lag_ms, long),
        "min.insync.replicas" => set(&mut config.min_insync_replicas, as_i32(parsed)),
        "preallocate" => set(&mut config.preallocate, boolean),
        "retention.bytes" => set(&mut config.retention_bytes, long),
        "retention.ms" => set(&mut config.retention_ms, long),
        "segment.bytes" => set(&mut config.segment_bytes, long.and_then(|n| u64::try_from(n).ok())),
        "segment.index.bytes" => set(&mut config.segment_index_bytes, as_u32(parsed)),
        "segment.jitter.ms" => set(&mut config.segment_jitter_ms, long),
        "segment.ms" => set(&mut config.segment_ms, long),
        "unclean.leader.election.enable" => set(&mut config.unclean_leader_election_enable, boolean),
        _ => {}
    }
}

fn cleanup_policy_of(parsed: &Parsed) -> Option<CleanupPolicy> {
    let Parsed::List(items) = parsed else {
        return None;
    };
    let compact = items.iter().any(|item| item == "compact");
    let delete = items.iter().any(|item| item == "delete");
    match (compact, delete) {
        (true, true) => Some(CleanupPolicy::CompactDelete),
        (true, false) => Some(CleanupPolicy::Compact),
        (false, true) => Some(CleanupPolicy::Delete),
        (false, false) => None,
    }
}

fn compression_type_of(parsed: &Parsed) -> Option<CompressionType> {
    let Parsed::Text(text) = parsed else {
        return None;
    };
    match text.as_str() {
        "uncompressed" => Some(CompressionType::Uncompressed),
        "zstd" => Some(CompressionType::Zstd),
        "lz4" => Some(CompressionType::Lz4),
        "snappy" => Some(CompressionType::Snappy),
        "gzip" => Some(CompressionType::Gzip),
        "producer" => Some(CompressionType::Producer),
        _ => None,
    }
}

fn timestamp_type_of(parsed: &Parsed) -> Option<TimestampType> {
    let Parsed::Text(text) = parsed else {
        return None;
    };
    match text.as_str() {
        "CreateTime" => Some(TimestampType::CreateTime),
        "LogAppendTime" => Some(TimestampType::LogAppendTime),
        _ => None,
    }
}

/// Broker settings that are not topic configs but that request handlers need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerDefaults {
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics_enable: bool,
    pub socket_request_max_bytes: i32,
}

/// Resolves [`BrokerDefaults`] from the static and dynamic broker values; an invalid value is
/// ignored with a warning in favour of Kafka's default.
pub fn resolve_broker_defaults(broker: &BrokerConfigs) -> BrokerDefaults {
    let int = |key: &str| -> Option<i64> {
        let def = broker_only_config_def(key)?;
        let raw = broker.dynamic.get(key).or_else(|| broker.static_.get(key))?;
        match parse_and_check(key, def.config_type, def.validator, raw) {
            Ok(parsed) => as_i64(&parsed),
            Err(error) => {
                tracing::warn!(%error, "ignoring broker config {key}");
                None
            }
        }
    };
    let boolean = |key: &str| -> Option<bool> {
        let raw = broker.dynamic.get(key).or_else(|| broker.static_.get(key))?;
        match parse_typed(key, ConfigType::Boolean, raw) {
            Ok(Parsed::Boolean(b)) => Some(b),
            _ => {
                tracing::warn!("ignoring broker config {key}: {raw} is not a boolean");
                None
            }
        }
    };
    BrokerDefaults {
        num_partitions: int("num.partitions").and_then(|n| i32::try_from(n).ok()).unwrap_or(NUM_PARTITIONS_DEFAULT),
        default_replication_factor: int("default.replication.factor")
            .and_then(|n| i16::try_from(n).ok())
            .unwrap_or(DEFAULT_REPLICATION_FACTOR_DEFAULT),
        auto_create_topics_enable: boolean("auto.create.topics.enable").unwrap_or(AUTO_CREATE_TOPICS_ENABLE_DEFAULT),
        socket_request_max_bytes: int("socket.request.max.bytes")
            .and_then(|n| i32::try_from(n).ok())
            .unwrap_or(SOCKET_REQUEST_MAX_BYTES_DEFAULT),
    }
}

// ---------------------------------------------------------------------------------------------
// DescribeConfigs.
// ---------------------------------------------------------------------------------------------

/// One entry of a DescribeConfigs response.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigEntry {
    pub name: String,
    /// `None` where Kafka answers null (a broker key with no value and no default).
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
    pub config_type: ConfigType,
    pub documentation: &'static str,
    /// Every place a value for this entry is set, highest precedence first: (name, value,
    /// source). The first is the one in effect (DescribeConfigs v1+ `include_synonyms`).
    pub synonyms: Vec<(String, String, ConfigSource)>,
}

fn wanted(keys: Option<&[String]>, name: &str) -> bool {
    keys.is_none_or(|keys| keys.iter().any(|key| key == name))
}

/// Broker-level synonyms of a topic config, highest precedence first, ending with the default.
fn broker_level_synonyms(broker: &BrokerConfigs, def: &ConfigDef) -> Vec<(String, String, ConfigSource)> {
    let mut synonyms = Vec::new();
    for synonym in def.broker_synonyms {
        if let Some(raw) = broker.dynamic.get(synonym.name) {
            synonyms.push((synonym.name.to_string(), raw.clone(), ConfigSource::DynamicBrokerConfig));
        }
        if let Some(raw) = broker.static_.get(synonym.name) {
            synonyms.push((synonym.name.to_string(), raw.clone(), ConfigSource::StaticBrokerConfig));
        }
    }
    synonyms.push((def.broker_key().to_string(), def.default.to_string(), ConfigSource::DefaultConfig));
    synonyms
}

/// DescribeConfigs for a topic: every topic config (or only `keys`, skipping unknown ones) with
/// its effective value and where it comes from.
pub fn describe_topic_configs(
    broker: &BrokerConfigs,
    overrides: &BTreeMap<String, String>,
    keys: Option<&[String]>,
) -> Vec<ConfigEntry> {
    TOPIC_CONFIGS
        .iter()
        .filter(|def| wanted(keys, def.name))
        .map(|def| {
            let resolved = resolve_one(broker, overrides, def);
            let mut synonyms = Vec::new();
            if let Some(raw) = overrides.get(def.name) {
                synonyms.push((def.name.to_string(), raw.clone(), ConfigSource::DynamicTopicConfig));
            }
            synonyms.extend(broker_level_synonyms(broker, def));
            ConfigEntry {
                name: def.name.to_string(),
                value: Some(resolved.value),
                source: resolved.source,
                read_only: false,
                sensitive: false,
                config_type: def.config_type,
                documentation: def.documentation,
                synonyms,
            }
        })
        .collect()
}

/// DescribeConfigs for the broker: the broker key of every topic config, the other broker keys
/// Fjord knows, sorted by name (or only `keys`, skipping unknown ones).
pub fn describe_broker_configs(broker: &BrokerConfigs, keys: Option<&[String]>) -> Vec<ConfigEntry> {
    let mut entries: Vec<ConfigEntry> = TOPIC_CONFIGS
        .iter()
        .filter(|def| wanted(keys, def.broker_key()))
        .map(|def| {
            let resolved = resolve_broker_level(broker, def);
            ConfigEntry {
                name: def.broker_key().to_string(),
                value: Some(resolved.value),
                source: resolved.source,
                read_only: false,
                sensitive: false,
                config_type: def.broker_synonyms[0].config_type,
                documentation: def.documentation,
                synonyms: broker_level_synonyms(broker, def),
            }
        })
        .collect();
    entries.extend(BROKER_ONLY_CONFIGS.iter().filter(|def| wanted(keys, def.name)).map(|def| describe_broker_only(broker, def)));
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

fn describe_broker_only(broker: &BrokerConfigs, def: &BrokerConfigDef) -> ConfigEntry {
    let mut synonyms = Vec::new();
    if let Some(raw) = broker.dynamic.get(def.name) {
        synonyms.push((def.name.to_string(), raw.clone(), ConfigSource::DynamicBrokerConfig));
    }
    if let Some(raw) = broker.static_.get(def.name) {
        synonyms.push((def.name.to_string(), raw.clone(), ConfigSource::StaticBrokerConfig));
    }
    if let Some(default) = def.default {
        synonyms.push((def.name.to_string(), default.to_string(), ConfigSource::DefaultConfig));
    }
    let (value, source) = match synonyms.first() {
        Some((_, value, source)) => (Some(value.clone()), *source),
        None => (None, ConfigSource::DefaultConfig),
    };
    ConfigEntry {
        name: def.name.to_string(),
        value,
        source,
        read_only: def.read_only,
        sensitive: false,
        config_type: def.config_type,
        documentation: def.documentation,
        synonyms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_default_passes_its_own_validator() {
        for def in TOPIC_CONFIGS {
            assert_eq!(validate_topic_config(def.name, def.default), Ok(()), "{}", def.name);
            let synonym = def.broker_synonyms[0];
            assert_eq!(synonym.ms_per_unit, 1, "{}: first synonym is in the topic's units", def.name);
        }
        for def in BROKER_ONLY_CONFIGS {
            if let Some(default) = def.default {
                assert!(parse_and_check(def.name, def.config_type, def.validator, default).is_ok());
            }
        }
    }

    #[test]
    fn tables_are_sorted_and_keys_unique() {
        assert!(TOPIC_CONFIGS.windows(2).all(|w| w[0].name < w[1].name));
        assert!(BROKER_ONLY_CONFIGS.windows(2).all(|w| w[0].name < w[1].name));
        for def in BROKER_ONLY_CONFIGS {
            assert!(topic_config_for_broker_key(def.name).is_none(), "{} listed twice", def.name);
        }
    }

    #[test]
    fn table_defaults_match_named_constants() {
        let config = resolve_topic_config(&BrokerConfigs::default(), &BTreeMap::new());
        assert_eq!(config, TopicConfig::default());
    }

    #[test]
    fn defaults_match_kafka_4() {
        let config = TopicConfig::default();
        assert_eq!(config.retention_ms, 604_800_000);
        assert_eq!(config.retention_bytes, -1);
        assert_eq!(config.segment_bytes, 1_073_741_824);
        assert_eq!(config.segment_ms, 604_800_000);
        assert_eq!(config.segment_index_bytes, 10_485_760);
        assert_eq!(config.cleanup_policy, CleanupPolicy::Delete);
        assert_eq!(config.max_message_bytes, 1_048_588);
        assert_eq!(config.message_timestamp_type, TimestampType::CreateTime);
        assert_eq!(config.min_insync_replicas, 1);
        assert_eq!(config.delete_retention_ms, 86_400_000);
        assert_eq!(config.min_compaction_lag_ms, 0);
        assert_eq!(config.max_compaction_lag_ms, i64::MAX);
        assert_eq!(config.min_cleanable_dirty_ratio, 0.5);
        assert_eq!(config.flush_ms, i64::MAX);
        assert_eq!(config.flush_messages, i64::MAX);
        assert_eq!(config.compression_type, CompressionType::Producer);
        assert!(!config.unclean_leader_election_enable);
        assert_eq!(config.file_delete_delay_ms, 60_000);
        assert_eq!(config.index_interval_bytes, 4096);
        assert_eq!(config.segment_jitter_ms, 0);
        assert_eq!(config.message_timestamp_before_max_ms, i64::MAX);
        // KIP-1030 changed this default in 4.0.
        assert_eq!(config.message_timestamp_after_max_ms, 3_600_000);
        assert!(!config.preallocate);
    }

    #[test]
    fn broker_synonyms_follow_kafkas_names() {
        let key = |topic: &str| topic_config_def(topic).map(|def| def.broker_key());
        assert_eq!(key("retention.ms"), Some("log.retention.ms"));
        assert_eq!(key("segment.ms"), Some("log.roll.ms"));
        assert_eq!(key("segment.bytes"), Some("log.segment.bytes"));
        assert_eq!(key("segment.index.bytes"), Some("log.index.size.max.bytes"));
        assert_eq!(key("max.message.bytes"), Some("message.max.bytes"));
        assert_eq!(key("message.timestamp.type"), Some("log.message.timestamp.type"));
        assert_eq!(key("cleanup.policy"), Some("log.cleanup.policy"));
        assert_eq!(key("min.insync.replicas"), Some("min.insync.replicas"));
        assert_eq!(key("delete.retention.ms"), Some("log.cleaner.delete.retention.ms"));
        assert_eq!(key("min.compaction.lag.ms"), Some("log.cleaner.min.compaction.lag.ms"));
        assert_eq!(key("min.cleanable.dirty.ratio"), Some("log.cleaner.min.cleanable.ratio"));
        assert_eq!(key("flush.ms"), Some("log.flush.interval.ms"));
        assert_eq!(key("flush.messages"), Some("log.flush.interval.messages"));
        assert_eq!(key("compression.type"), Some("compression.type"));
        assert_eq!(key("file.delete.delay.ms"), Some("log.segment.delete.delay.ms"));
    }

    #[test]
    fn override_beats_dynamic_beats_static_beats_default() {
        let mut broker = BrokerConfigs::default();
        let none = BTreeMap::new();
        assert_eq!(resolve_topic_config(&broker, &none).retention_ms, RETENTION_MS_DEFAULT);

        broker.static_.insert("log.retention.ms".into(), "3000".into());
        assert_eq!(resolve_topic_config(&broker, &none).retention_ms, 3000);

        broker.dynamic.insert("log.retention.ms".into(), "2000".into());
        assert_eq!(resolve_topic_config(&broker, &none).retention_ms, 2000);

        let overrides = map(&[("retention.ms", "1000")]);
        assert_eq!(resolve_topic_config(&broker, &overrides).retention_ms, 1000);
    }

    #[test]
    fn static_hours_synonym_converts_to_milliseconds() {
        let broker =
            BrokerConfigs { static_: map(&[("log.retention.hours", "1"), ("log.roll.hours", "2")]), dynamic: BTreeMap::new() };
        let config = resolve_topic_config(&broker, &BTreeMap::new());
        assert_eq!(config.retention_ms, 3_600_000);
        assert_eq!(config.segment_ms, 7_200_000);
        // The millisecond key outranks the hours key (Kafka's synonym order).
        let broker =
            BrokerConfigs { static_: map(&[("log.retention.hours", "1"), ("log.retention.ms", "5")]), dynamic: BTreeMap::new() };
        assert_eq!(resolve_topic_config(&broker, &BTreeMap::new()).retention_ms, 5);
    }

    #[test]
    fn invalid_static_broker_value_falls_back_to_default() {
        let broker = BrokerConfigs {
            static_: map(&[("log.segment.bytes", "100"), ("min.insync.replicas", "x")]),
            dynamic: BTreeMap::new(),
        };
        let config = resolve_topic_config(&broker, &BTreeMap::new());
        assert_eq!(config.segment_bytes, SEGMENT_BYTES_DEFAULT);
        assert_eq!(config.min_insync_replicas, 1);
    }

    #[test]
    fn enum_configs_resolve_to_their_variants() {
        let overrides = map(&[
            ("cleanup.policy", "compact, delete"),
            ("compression.type", "zstd"),
            ("message.timestamp.type", "LogAppendTime"),
            ("min.cleanable.dirty.ratio", "0.25"),
            ("unclean.leader.election.enable", "TRUE"),
        ]);
        let config = resolve_topic_config(&BrokerConfigs::default(), &overrides);
        assert_eq!(config.cleanup_policy, CleanupPolicy::CompactDelete);
        assert!(config.cleanup_policy.compacts() && config.cleanup_policy.deletes());
        assert_eq!(config.compression_type, CompressionType::Zstd);
        assert_eq!(config.message_timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(config.min_cleanable_dirty_ratio, 0.25);
        assert!(config.unclean_leader_election_enable);
    }

    #[test]
    fn unknown_topic_key_is_refused_with_kafkas_message() {
        let error = validate_topic_config("foo", "1").unwrap_err();
        assert_eq!(error.to_string(), "Unknown topic config name: foo");
    }

    #[test]
    fn validators_refuse_bad_values_with_kafkas_messages() {
        let message = |key: &str, value: &str| validate_topic_config(key, value).unwrap_err().to_string();
        assert_eq!(message("retention.ms", "abc"), "Invalid value abc for configuration retention.ms: Not a number of type LONG");
        assert_eq!(message("retention.ms", "-2"), "Invalid value -2 for configuration retention.ms: Value must be at least -1");
        assert_eq!(
            message("segment.bytes", "14"),
            "Invalid value 14 for configuration segment.bytes: Value must be at least 1048576"
        );
        assert_eq!(
            message("segment.bytes", "3000000000"),
            "Invalid value 3000000000 for configuration segment.bytes: Not a number of type INT"
        );
        assert_eq!(
            message("min.cleanable.dirty.ratio", "1.5"),
            "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: Value must be no more than 1"
        );
        assert_eq!(
            message("message.timestamp.type", "createtime"),
            "Invalid value createtime for configuration message.timestamp.type: String must be one \
             of: CreateTime, LogAppendTime"
        );
        assert_eq!(
            message("cleanup.policy", "delete,forever"),
            "Invalid value forever for configuration cleanup.policy: String must be one of: \
             compact, delete"
        );
        assert_eq!(
            message("preallocate", "yes"),
            "Invalid value yes for configuration preallocate: Expected value to be either true or false"
        );
        assert_eq!(
            message("compression.type", "brotli"),
            "Invalid value brotli for configuration compression.type: String must be one of: \
             uncompressed, zstd, lz4, snappy, gzip, producer"
        );
        assert!(validate_topic_config("compression.gzip.level", "0").is_err());
        assert!(validate_topic_config("compression.gzip.level", "-1").is_ok());
        assert!(validate_topic_config("min.insync.replicas", "0").is_err());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "NaN").is_err());
        assert!(validate_topic_config("cleanup.policy", "").is_err());
        assert!(validate_topic_config("retention.ms", " 42 ").is_ok());
    }

    #[test]
    fn compaction_lags_must_not_cross() {
        let overrides = map(&[("min.compaction.lag.ms", "10"), ("max.compaction.lag.ms", "5")]);
        assert_eq!(validate_topic_overrides(&overrides), Err(ConfigError::CompactionLagConflict { min_ms: 10, max_ms: 5 }));
        assert!(validate_topic_overrides(&map(&[("min.compaction.lag.ms", "10")])).is_ok());
    }

    #[test]
    fn broker_dynamic_keys_are_topic_defaults_only() {
        assert_eq!(validate_broker_dynamic("log.retention.ms", "1000"), Ok(()));
        assert_eq!(validate_broker_dynamic("message.max.bytes", "2000000"), Ok(()));
        assert_eq!(validate_broker_dynamic("log.flush.interval.ms", "1000"), Ok(()));
        assert_eq!(validate_broker_dynamic("log.cleanup.policy", "compact"), Ok(()));
        assert!(matches!(validate_broker_dynamic("log.segment.bytes", "10"), Err(ConfigError::Invalid { .. })));
        for read_only in ["listeners", "log.dirs", "node.id", "log.retention.hours"] {
            assert_eq!(validate_broker_dynamic(read_only, "x"), Err(ConfigError::ReadOnly(read_only.to_string())));
        }
        assert_eq!(validate_broker_dynamic("no.such.key", "1"), Err(ConfigError::UnknownBroker("no.such.key".into())));
    }

    #[test]
    fn describe_topic_reports_each_source() {
        let broker =
            BrokerConfigs { static_: map(&[("log.segment.bytes", "2097152")]), dynamic: map(&[("log.retention.ms", "2000")]) };
        let overrides = map(&[("max.message.bytes", "5000")]);
        let entries = describe_topic_configs(&broker, &overrides, None);
        assert_eq!(entries.len(), TOPIC_CONFIGS.len());
        let entry = |name: &str| entries.iter().find(|e| e.name == name).cloned().unwrap();

        let max = entry("max.message.bytes");
        assert_eq!(max.value.as_deref(), Some("5000"));
        assert_eq!(max.source, ConfigSource::DynamicTopicConfig);
        assert_eq!(max.source.code(), 1);
        assert_eq!(max.config_type.code(), 3);
        assert_eq!(max.synonyms[0], ("max.message.bytes".into(), "5000".into(), max.source));
        assert_eq!(max.synonyms.last().map(|s| s.2), Some(ConfigSource::DefaultConfig));

        let retention = entry("retention.ms");
        assert_eq!(retention.value.as_deref(), Some("2000"));
        assert_eq!(retention.source.code(), 2);
        assert_eq!(retention.config_type.code(), 5);

        let segment = entry("segment.bytes");
        assert_eq!(segment.value.as_deref(), Some("2097152"));
        assert_eq!(segment.source.code(), 4);

        let policy = entry("cleanup.policy");
        assert_eq!(policy.value.as_deref(), Some("delete"));
        assert_eq!(policy.source.code(), 5);
        assert_eq!(policy.config_type.code(), 7);
        assert!(!policy.read_only && !policy.sensitive);
    }

    #[test]
    fn describe_topic_keeps_only_requested_known_keys() {
        let keys = vec!["retention.ms".to_string(), "nope".to_string()];
        let entries = describe_topic_configs(&BrokerConfigs::default(), &BTreeMap::new(), Some(&keys));
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].name, "retention.ms");
    }

    #[test]
    fn describe_broker_lists_topic_defaults_and_broker_keys() {
        let broker = BrokerConfigs {
            static_: map(&[("node.id", "1"), ("log.dirs", "/data")]),
            dynamic: map(&[("message.max.bytes", "2000000")]),
        };
        let entries = describe_broker_configs(&broker, None);
        assert!(entries.windows(2).all(|w| w[0].name < w[1].name));
        let entry = |name: &str| entries.iter().find(|e| e.name == name).cloned().unwrap();

        let max = entry("message.max.bytes");
        assert_eq!((max.value.as_deref(), max.source), (Some("2000000"), ConfigSource::DynamicBrokerConfig));
        assert!(!max.read_only);

        let node = entry("node.id");
        assert_eq!((node.value.as_deref(), node.source), (Some("1"), ConfigSource::StaticBrokerConfig));
        assert!(node.read_only);

        let partitions = entry("num.partitions");
        assert_eq!(partitions.value.as_deref(), Some("1"));
        assert_eq!(partitions.source, ConfigSource::DefaultConfig);

        let advertised = entry("advertised.listeners");
        assert_eq!(advertised.value, None);

        assert_eq!(entry("socket.request.max.bytes").value.as_deref(), Some("104857600"));
        assert_eq!(entry("auto.create.topics.enable").value.as_deref(), Some("true"));
        assert_eq!(entry("default.replication.factor").value.as_deref(), Some("1"));
        assert!(entries.iter().any(|e| e.name == "log.flush.interval.ms"));
    }

    #[test]
    fn broker_defaults_resolve_from_static_values() {
        let broker = BrokerConfigs {
            static_: map(&[("num.partitions", "6"), ("auto.create.topics.enable", "false")]),
            dynamic: BTreeMap::new(),
        };
        let defaults = resolve_broker_defaults(&broker);
        assert_eq!(defaults.num_partitions, 6);
        assert!(!defaults.auto_create_topics_enable);
        assert_eq!(defaults.default_replication_factor, 1);
        assert_eq!(defaults.socket_request_max_bytes, SOCKET_REQUEST_MAX_BYTES_DEFAULT);
    }

    #[test]
    fn list_values_split_like_kafka() {
        assert_eq!(split_list(" compact , delete "), vec!["compact", "delete"]);
        assert!(split_list("  ").is_empty());
        assert_eq!(join_list(&split_list("a, b")), "a,b");
    }
}
