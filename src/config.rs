//! `fjord start` settings: flag > `FJORD_*` environment variable > `--config` TOML file > default.
//! TOML keys are the flag names (`data-dir = "/var/lib/fjord"`).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use serde::Deserialize;

/// Every setting of `fjord start`. Unset values fall back to the config file, then the default.
#[derive(clap::Args, Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StartArgs {
    /// TOML file with any of these settings (keys are the flag names).
    #[arg(long, env = "FJORD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Data directory (partition logs and the metadata log) [default: ./fjord-data]
    #[arg(long, env = "FJORD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Kafka listener address [default: 0.0.0.0:9092]
    #[arg(long, env = "FJORD_LISTEN")]
    pub listen: Option<String>,
    /// Address clients are told to connect to [default: localhost:<listen port>]
    #[arg(long, env = "FJORD_ADVERTISE")]
    pub advertise: Option<String>,
    /// Shards (one pinned thread and io_uring each) [default: one per core]
    #[arg(long, env = "FJORD_SHARDS")]
    pub shards: Option<usize>,
    /// This broker's node id [default: 1]
    #[arg(long, env = "FJORD_NODE_ID")]
    pub node_id: Option<i32>,
    /// Create unknown topics on Metadata and Produce (auto.create.topics.enable) [default: true]
    #[arg(long, env = "FJORD_AUTO_CREATE_TOPICS_ENABLE")]
    pub auto_create_topics_enable: Option<bool>,
    /// Partitions of auto-created topics and of CreateTopics without a count (num.partitions) [default: 1]
    #[arg(long, env = "FJORD_NUM_PARTITIONS")]
    pub num_partitions: Option<i32>,
    /// Largest record batch a topic accepts unless it overrides max.message.bytes (message.max.bytes) [default: 1048588]
    #[arg(long, env = "FJORD_MESSAGE_MAX_BYTES")]
    pub message_max_bytes: Option<u32>,
    /// Largest request frame; larger ones close the connection (socket.request.max.bytes) [default: 104857600]
    #[arg(long, env = "FJORD_SOCKET_REQUEST_MAX_BYTES")]
    pub socket_request_max_bytes: Option<usize>,
    /// Segment file descriptors the broker keeps open at most, over all shards; idle ones are closed least recently used first and reopened on demand [default: half the open-file limit]
    #[arg(long, env = "FJORD_OPEN_SEGMENT_FILES_MAX")]
    pub open_segment_files_max: Option<usize>,
    /// Segment size before a roll (log.segment.bytes) [default: 1073741824]
    #[arg(long, env = "FJORD_LOG_SEGMENT_BYTES")]
    pub log_segment_bytes: Option<u64>,
    /// Segment age before a roll (log.roll.ms) [default: 604800000]
    #[arg(long, env = "FJORD_LOG_ROLL_MS")]
    pub log_roll_ms: Option<i64>,
    /// Retention by time (log.retention.ms) [default: 604800000]
    #[arg(long, env = "FJORD_LOG_RETENTION_MS")]
    pub log_retention_ms: Option<i64>,
    /// Retention by size per partition (log.retention.bytes) [default: -1]
    #[arg(long, env = "FJORD_LOG_RETENTION_BYTES")]
    pub log_retention_bytes: Option<i64>,
    /// How often each shard applies retention to its partitions (log.retention.check.interval.ms) [default: 300000]
    #[arg(long, env = "FJORD_LOG_RETENTION_CHECK_INTERVAL_MS")]
    pub log_retention_check_interval_ms: Option<u64>,
    /// How long each shard's log cleaner waits between passes over its compacted partitions (log.cleaner.backoff.ms) [default: 15000]
    #[arg(long, env = "FJORD_LOG_CLEANER_BACKOFF_MS")]
    pub log_cleaner_backoff_ms: Option<u64>,
    /// Read rate of the log cleaner, all shards together; 0 for no limit (log.cleaner.io.max.bytes.per.second) [default: 100000000]
    #[arg(long, env = "FJORD_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND")]
    pub log_cleaner_io_max_bytes_per_second: Option<u64>,
    /// How long an idle idempotent producer's state is kept per partition (producer.id.expiration.ms) [default: 86400000]
    #[arg(long, env = "FJORD_PRODUCER_ID_EXPIRATION_MS")]
    pub producer_id_expiration_ms: Option<i64>,
    /// How often each shard removes expired producer state (producer.id.expiration.check.interval.ms) [default: 600000]
    #[arg(long, env = "FJORD_PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS")]
    pub producer_id_expiration_check_interval_ms: Option<u64>,
    /// Partitions of the __consumer_offsets topic, fixed when it is created (offsets.topic.num.partitions) [default: 50]
    #[arg(long, env = "FJORD_OFFSETS_TOPIC_NUM_PARTITIONS")]
    pub offsets_topic_num_partitions: Option<i32>,
    /// Partitions of the __transaction_state topic, fixed when it is created (transaction.state.log.num.partitions) [default: 50]
    #[arg(long, env = "FJORD_TRANSACTION_STATE_LOG_NUM_PARTITIONS")]
    pub transaction_state_log_num_partitions: Option<i32>,
    /// Largest transaction timeout a producer may ask for (transaction.max.timeout.ms) [default: 900000]
    #[arg(long, env = "FJORD_TRANSACTION_MAX_TIMEOUT_MS")]
    pub transaction_max_timeout_ms: Option<i32>,
    /// How often the coordinator aborts transactions past their timeout (transaction.abort.timed.out.transaction.cleanup.interval.ms) [default: 10000]
    #[arg(long, env = "FJORD_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS")]
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: Option<u64>,
    /// How long an idle transactional id is kept (transactional.id.expiration.ms) [default: 604800000]
    #[arg(long, env = "FJORD_TRANSACTIONAL_ID_EXPIRATION_MS")]
    pub transactional_id_expiration_ms: Option<i64>,
    /// How long a new group waits for more members before its first rebalance (group.initial.rebalance.delay.ms) [default: 3000]
    #[arg(long, env = "FJORD_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<i32>,
    /// Smallest session timeout a group member may ask for (group.min.session.timeout.ms) [default: 6000]
    #[arg(long, env = "FJORD_GROUP_MIN_SESSION_TIMEOUT_MS")]
    pub group_min_session_timeout_ms: Option<i32>,
    /// Largest session timeout a group member may ask for (group.max.session.timeout.ms) [default: 1800000]
    #[arg(long, env = "FJORD_GROUP_MAX_SESSION_TIMEOUT_MS")]
    pub group_max_session_timeout_ms: Option<i32>,
    /// Session timeout of members of KIP-848 consumer groups (group.consumer.session.timeout.ms) [default: 45000]
    #[arg(long, env = "FJORD_GROUP_CONSUMER_SESSION_TIMEOUT_MS")]
    pub group_consumer_session_timeout_ms: Option<i32>,
    /// Heartbeat interval told to members of KIP-848 consumer groups (group.consumer.heartbeat.interval.ms) [default: 5000]
    #[arg(long, env = "FJORD_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS")]
    pub group_consumer_heartbeat_interval_ms: Option<i32>,
    /// fdatasync interval for data acknowledged with acks=0/1 (log.flush.interval.ms) [default: 1000]
    #[arg(long, env = "FJORD_LOG_FLUSH_INTERVAL_MS")]
    pub log_flush_interval_ms: Option<u64>,
    /// Memory for the batch cache of recent batches, all shards together [default: 134217728]
    #[arg(long, env = "FJORD_BATCH_CACHE_BYTES")]
    pub batch_cache_bytes: Option<usize>,
    /// Microseconds a shard spins before parking when idle (lower wake latency, more CPU) [default: 0]
    #[arg(long, env = "FJORD_SPIN_BEFORE_PARK_US")]
    pub spin_before_park_us: Option<u64>,
    /// Memory for requests in flight, all shards together (each gets an equal share, at least one frame of --socket-request-max-bytes); a shard whose share is spent stops reading requests until memory is released (queued.max.request.bytes) [default: 268435456, or --socket-request-max-bytes × shards if larger]
    #[arg(long, env = "FJORD_QUEUED_MAX_REQUEST_BYTES", allow_negative_numbers = true)]
    pub queued_max_request_bytes: Option<i64>,
    /// Time for a request's body to arrive once its size is read and its memory reserved; slower connections are closed [default: 30000]
    #[arg(long, env = "FJORD_REQUEST_READ_TIMEOUT_MS")]
    pub request_read_timeout_ms: Option<u64>,
    /// Connections with no request (and none in flight) for this long are closed (connections.max.idle.ms) [default: 600000]
    #[arg(long, env = "FJORD_CONNECTIONS_MAX_IDLE_MS")]
    pub connections_max_idle_ms: Option<u64>,
    /// Log filter (tracing EnvFilter syntax) [default: info]
    #[arg(long, env = "FJORD_LOG")]
    pub log: Option<String>,
    /// HOST:PORT of the Prometheus /metrics endpoint, or "off" [default: 0.0.0.0:9644]
    #[arg(long, env = "FJORD_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}

/// Settings after precedence and defaults.
#[derive(Debug, Clone)]
pub struct StartConfig {
    /// Kafka-named broker settings the operator set (flag, environment or file): reported by
    /// DescribeConfigs as STATIC_BROKER_CONFIG; everything else reports DEFAULT_CONFIG.
    pub explicit: BTreeMap<String, String>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: u16,
    pub shards: usize,
    pub node_id: i32,
    pub auto_create_topics_enable: bool,
    pub num_partitions: i32,
    pub socket_request_max_bytes: usize,
    /// None: half the open-file limit, decided at start once the limit is raised.
    pub open_segment_files_max: Option<usize>,
    pub log_flush_interval_ms: u64,
    pub log_retention_check_interval_ms: u64,
    pub log_cleaner_backoff_ms: u64,
    pub log_cleaner_io_max_bytes_per_second: u64,
    pub producer_id_expiration_ms: i64,
    pub producer_id_expiration_check_interval_ms: u64,
    pub offsets_topic_num_partitions: i32,
    pub transaction_state_log_num_partitions: i32,
    pub transaction_max_timeout_ms: i32,
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: u64,
    pub transactional_id_expiration_ms: i64,
    pub group_initial_rebalance_delay_ms: i32,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub group_consumer_session_timeout_ms: i32,
    pub group_consumer_heartbeat_interval_ms: i32,
    pub batch_cache_bytes: usize,
    pub spin_before_park_us: u64,
    /// Request memory for the whole broker; each shard's share holds at least one largest frame.
    pub queued_max_request_bytes: usize,
    pub request_read_timeout_ms: u64,
    pub connections_max_idle_ms: u64,
    pub log: String,
    /// Where /metrics is served (None: off).
    pub metrics_listen: Option<SocketAddr>,
    /// The address was asked for (a bind failure stops the broker, not only a warning).
    pub metrics_listen_explicit: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// queued.max.request.bytes default for the broker (Kafka's is -1, unbounded), unless one frame
/// of socket.request.max.bytes per shard needs more.
const QUEUED_MAX_REQUEST_BYTES_DEFAULT: usize = 256 * 1024 * 1024;

/// log.cleaner.io.max.bytes.per.second default. Kafka's is unlimited; unpaced, a large pass
/// saturated this machine's disk and produce acks at 50 MB/s reached p99 3–5 s, against 25 ms at
/// 100 MB/s (scripts/bench-compaction.sh).
const CLEANER_IO_DEFAULT: u64 = 100_000_000;

macro_rules! pick {
    ($flags:expr, $file:expr, $field:ident, $default:expr) => {
        $flags.$field.clone().or_else(|| $file.$field.clone()).unwrap_or_else(|| $default)
    };
}

impl StartArgs {
    pub fn resolve(&self) -> Result<StartConfig, ConfigFileError> {
        let file = match &self.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read { path: path.clone(), source })?;
                toml::from_str::<StartArgs>(&text)
                    .map_err(|error| ConfigFileError::Parse { path: path.clone(), message: error.to_string() })?
            }
            None => StartArgs::default(),
        };
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let listen_text = pick!(self, file, listen, "0.0.0.0:9092".to_string());
        let listen = listen_text
            .to_socket_addrs()
            .ok()
            .and_then(|mut addresses| addresses.next())
            .ok_or_else(|| ConfigFileError::Invalid(format!("--listen {listen_text} is not HOST:PORT")))?;
        let advertise = pick!(self, file, advertise, format!("localhost:{}", listen.port()));
        let (advertised_host, advertised_port) = advertise
            .rsplit_once(':')
            .and_then(|(host, port)| port.parse::<u16>().ok().map(|port| (host.trim_matches(['[', ']']).to_string(), port)))
            .ok_or_else(|| ConfigFileError::Invalid(format!("--advertise {advertise} is not HOST:PORT")))?;
        let shards = pick!(self, file, shards, cores);
        if shards == 0 || shards > 256 {
            return Err(ConfigFileError::Invalid(format!("--shards {shards} must be between 1 and 256")));
        }
        let num_partitions = pick!(self, file, num_partitions, 1);
        if num_partitions < 1 {
            return Err(ConfigFileError::Invalid("--num-partitions must be at least 1".into()));
        }
        let socket_request_max_bytes = pick!(self, file, socket_request_max_bytes, 104_857_600);
        if socket_request_max_bytes < 1024 {
            return Err(ConfigFileError::Invalid("--socket-request-max-bytes must be at least 1024".into()));
        }
        let queued_max_request_bytes = queued_max_request_bytes(
            self.queued_max_request_bytes.or(file.queued_max_request_bytes),
            socket_request_max_bytes,
            shards,
        )?;
        let request_read_timeout_ms = pick!(self, file, request_read_timeout_ms, 30_000);
        let connections_max_idle_ms = pick!(self, file, connections_max_idle_ms, 600_000);
        if request_read_timeout_ms == 0 || connections_max_idle_ms == 0 {
            return Err(ConfigFileError::Invalid(
                "--request-read-timeout-ms and --connections-max-idle-ms must be at least 1".into(),
            ));
        }
        let consumer_session_ms = pick!(self, file, group_consumer_session_timeout_ms, 45_000);
        let consumer_heartbeat_ms = pick!(self, file, group_consumer_heartbeat_interval_ms, 5_000);
        if consumer_heartbeat_ms < 1 || consumer_session_ms <= consumer_heartbeat_ms {
            return Err(ConfigFileError::Invalid(format!(
                "--group-consumer-heartbeat-interval-ms ({consumer_heartbeat_ms}) must be at least 1 and below --group-consumer-session-timeout-ms ({consumer_session_ms})"
            )));
        }
        let metrics_listen_explicit = self.metrics_listen.is_some() || file.metrics_listen.is_some();
        let metrics_text = pick!(self, file, metrics_listen, "0.0.0.0:9644".to_string());
        let metrics_listen = match metrics_text.trim() {
            "" | "off" | "none" => None,
            text => Some(
                text.to_socket_addrs()
                    .ok()
                    .and_then(|mut addresses| addresses.next())
                    .ok_or_else(|| ConfigFileError::Invalid(format!("--metrics-listen {text} is not HOST:PORT (or \"off\")")))?,
            ),
        };
        let mut explicit = BTreeMap::new();
        let mut note = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                explicit.insert(key.to_string(), value);
            }
        };
        macro_rules! set {
            ($field:ident) => {
                self.$field.clone().or_else(|| file.$field.clone()).map(|value| value.to_string())
            };
        }
        note("auto.create.topics.enable", set!(auto_create_topics_enable));
        note("num.partitions", set!(num_partitions));
        note("message.max.bytes", set!(message_max_bytes));
        note("socket.request.max.bytes", set!(socket_request_max_bytes));
        note("queued.max.request.bytes", set!(queued_max_request_bytes));
        note("connections.max.idle.ms", set!(connections_max_idle_ms));
        note("log.segment.bytes", set!(log_segment_bytes));
        note("log.roll.ms", set!(log_roll_ms));
        note("log.retention.ms", set!(log_retention_ms));
        note("log.retention.bytes", set!(log_retention_bytes));
        note("log.flush.interval.ms", set!(log_flush_interval_ms));
        note("log.retention.check.interval.ms", set!(log_retention_check_interval_ms));
        note("log.cleaner.backoff.ms", set!(log_cleaner_backoff_ms));
        note("log.cleaner.io.max.bytes.per.second", set!(log_cleaner_io_max_bytes_per_second));
        note("producer.id.expiration.ms", set!(producer_id_expiration_ms));
        note("producer.id.expiration.check.interval.ms", set!(producer_id_expiration_check_interval_ms));
        note("offsets.topic.num.partitions", set!(offsets_topic_num_partitions));
        note("transaction.state.log.num.partitions", set!(transaction_state_log_num_partitions));
        note("transaction.max.timeout.ms", set!(transaction_max_timeout_ms));
        note(
            "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            set!(transaction_abort_timed_out_transaction_cleanup_interval_ms),
        );
        note("transactional.id.expiration.ms", set!(transactional_id_expiration_ms));
        note("group.initial.rebalance.delay.ms", set!(group_initial_rebalance_delay_ms));
        note("group.min.session.timeout.ms", set!(group_min_session_timeout_ms));
        note("group.max.session.timeout.ms", set!(group_max_session_timeout_ms));
        note("group.consumer.session.timeout.ms", set!(group_consumer_session_timeout_ms));
        note("group.consumer.heartbeat.interval.ms", set!(group_consumer_heartbeat_interval_ms));
        Ok(StartConfig {
            explicit,
            data_dir: pick!(self, file, data_dir, PathBuf::from("./fjord-data")),
            listen,
            advertised_host,
            advertised_port,
            shards,
            node_id: pick!(self, file, node_id, 1),
            auto_create_topics_enable: pick!(self, file, auto_create_topics_enable, true),
            num_partitions,
            socket_request_max_bytes,
            open_segment_files_max: self.open_segment_files_max.or(file.open_segment_files_max),
            log_flush_interval_ms: pick!(self, file, log_flush_interval_ms, 1000),
            log_retention_check_interval_ms: pick!(self, file, log_retention_check_interval_ms, 300_000).max(1),
            log_cleaner_backoff_ms: pick!(self, file, log_cleaner_backoff_ms, 15_000).max(1),
            log_cleaner_io_max_bytes_per_second: pick!(self, file, log_cleaner_io_max_bytes_per_second, CLEANER_IO_DEFAULT),
            producer_id_expiration_ms: pick!(self, file, producer_id_expiration_ms, 86_400_000).max(1),
            producer_id_expiration_check_interval_ms: pick!(self, file, producer_id_expiration_check_interval_ms, 600_000).max(1),
            offsets_topic_num_partitions: pick!(self, file, offsets_topic_num_partitions, 50).clamp(1, 10_000),
            transaction_state_log_num_partitions: pick!(self, file, transaction_state_log_num_partitions, 50).clamp(1, 10_000),
            transaction_max_timeout_ms: pick!(self, file, transaction_max_timeout_ms, 900_000).max(1),
            transaction_abort_timed_out_transaction_cleanup_interval_ms: pick!(
                self,
                file,
                transaction_abort_timed_out_transaction_cleanup_interval_ms,
                10_000
            )
            .max(1),
            transactional_id_expiration_ms: pick!(self, file, transactional_id_expiration_ms, 604_800_000).max(1),
            group_initial_rebalance_delay_ms: pick!(self, file, group_initial_rebalance_delay_ms, 3_000).max(0),
            group_min_session_timeout_ms: pick!(self, file, group_min_session_timeout_ms, 6_000).max(0),
            group_max_session_timeout_ms: pick!(self, file, group_max_session_timeout_ms, 1_800_000).max(0),
            group_consumer_session_timeout_ms: consumer_session_ms,
            group_consumer_heartbeat_interval_ms: consumer_heartbeat_ms,
            batch_cache_bytes: pick!(self, file, batch_cache_bytes, 128 * 1024 * 1024),
            spin_before_park_us: pick!(self, file, spin_before_park_us, 0),
            queued_max_request_bytes,
            request_read_timeout_ms,
            connections_max_idle_ms,
            log: pick!(self, file, log, "info".to_string()),
            metrics_listen,
            metrics_listen_explicit,
        })
    }
}

/// queued.max.request.bytes as set (or the default), checked against the shards and the frame
/// size: each shard's share must hold one frame of socket.request.max.bytes, or that frame could
/// never be read.
fn queued_max_request_bytes(set: Option<i64>, socket_request_max_bytes: usize, shards: usize) -> Result<usize, ConfigFileError> {
    let frames = socket_request_max_bytes.saturating_mul(shards);
    let Some(set) = set else { return Ok(QUEUED_MAX_REQUEST_BYTES_DEFAULT.max(frames)) };
    if set <= 0 {
        return Err(ConfigFileError::Invalid(format!(
            "--queued-max-request-bytes {set} must be positive: Fjord always bounds the memory of requests in flight (Kafka's -1, unbounded, is not supported)"
        )));
    }
    let total = usize::try_from(set).unwrap_or(usize::MAX);
    if total / shards < socket_request_max_bytes {
        return Err(ConfigFileError::Invalid(format!(
            "--queued-max-request-bytes {total} gives each of the {shards} shards {} bytes, less than one request of --socket-request-max-bytes {socket_request_max_bytes}: raise it to at least {frames} or lower --socket-request-max-bytes",
            total / shards
        )));
    }
    Ok(total)
}

impl StartConfig {
    /// The broker-level values in Kafka's key names, as DescribeConfigs reports them
    /// (source STATIC_BROKER_CONFIG).
    pub fn static_broker_configs(&self) -> BTreeMap<String, String> {
        let mut configs = BTreeMap::new();
        let mut put = |key: &str, value: String| {
            configs.insert(key.to_string(), value);
        };
        put("node.id", self.node_id.to_string());
        put("broker.id", self.node_id.to_string());
        put("log.dirs", self.data_dir.display().to_string());
        put("listeners", format!("PLAINTEXT://{}", self.listen));
        put("advertised.listeners", format!("PLAINTEXT://{}:{}", self.advertised_host, self.advertised_port));
        // Fjord syncs acks=1 data every second by default (Kafka leaves it to the OS), so this
        // one is always reported as the broker's own setting.
        put("log.flush.interval.ms", self.log_flush_interval_ms.to_string());
        for (key, value) in &self.explicit {
            put(key, value.clone());
        }
        configs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_file_and_file_beats_default() {
        let dir = std::env::temp_dir().join(format!("fjord-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fjord.toml");
        std::fs::write(&path, "num-partitions = 6\nlisten = \"127.0.0.1:19092\"\n").unwrap();
        let args = StartArgs { config: Some(path.clone()), listen: Some("127.0.0.1:29092".into()), ..Default::default() };
        let config = args.resolve().unwrap();
        assert_eq!(config.listen.port(), 29092, "flag wins");
        assert_eq!(config.num_partitions, 6, "file wins over default");
        assert_eq!(config.advertised_port, 29092);
        assert_eq!(config.data_dir, PathBuf::from("./fjord-data"));
        std::fs::write(&path, "no-such-key = 1\n").unwrap();
        assert!(matches!(args.resolve(), Err(ConfigFileError::Parse { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn request_memory_must_hold_one_largest_frame_per_shard() {
        let resolve = |queued: Option<i64>, frame: usize, shards: usize| {
            StartArgs {
                queued_max_request_bytes: queued,
                socket_request_max_bytes: Some(frame),
                shards: Some(shards),
                ..Default::default()
            }
            .resolve()
        };
        // Defaults: 256 MiB, or more where the shards' frames need it.
        assert_eq!(resolve(None, 104_857_600, 2).unwrap().queued_max_request_bytes, 256 << 20);
        assert_eq!(resolve(None, 104_857_600, 8).unwrap().queued_max_request_bytes, 8 * 104_857_600);
        assert_eq!(resolve(Some(64 << 20), 8 << 20, 2).unwrap().queued_max_request_bytes, 64 << 20);
        let contradiction = resolve(Some(64 << 20), 104_857_600, 2).unwrap_err().to_string();
        assert!(contradiction.contains("less than one request of --socket-request-max-bytes"), "{contradiction}");
        assert!(resolve(Some(-1), 1024, 1).unwrap_err().to_string().contains("must be positive"));
    }
}
