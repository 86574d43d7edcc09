//! `fjord start`: checks the data directory and the port, opens the metadata log, starts one
//! shard per core and waits for SIGTERM/SIGINT, then shuts down cleanly (exit 0).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fjord_engine::limits::IO_MEMORY_BYTES_PER_SHARD;
use fjord_engine::metrics::Metrics;
use fjord_engine::partition::PartitionSettings;
use fjord_engine::rt::{self, ShardRuntimeConfig};
use fjord_net::server::{self, Shared, StartupPhase};
use fjord_net::settings::BrokerSettings;
use fjord_replication::metadata::Controller;

use crate::config::{StartArgs, StartConfig};

pub fn start(args: StartArgs) -> i32 {
    let config = match args.resolve() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("fjord: {error}");
            return 2;
        }
    };
    init_logging(&config.log);
    match run(&config) {
        Ok(()) => 0,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("fjord: {message}");
            1
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: logs written to a file or a pipe carry no escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

fn run(config: &StartConfig) -> Result<(), String> {
    let segment_files_per_shard = segment_file_budget(config);
    let _lock = lock_data_dir(&config.data_dir)?;
    probe_port(config)?;
    block_shutdown_signals();
    let (mut controller, metadata) =
        Controller::open(&config.data_dir, config.node_id, &config.advertised_host, config.advertised_port)
            .map_err(|error| format!("cannot open the metadata log in {}: {error}", config.data_dir.display()))?;
    controller.set_static_broker_configs(config.static_broker_configs());
    let settings = BrokerSettings {
        node_id: config.node_id,
        advertised_host: config.advertised_host.clone(),
        advertised_port: config.advertised_port,
        auto_create_topics_enable: config.auto_create_topics_enable,
        num_partitions: config.num_partitions,
        default_replication_factor: 1,
        socket_request_max_bytes: config.socket_request_max_bytes,
        queued_max_request_bytes: config.queued_max_request_bytes,
        connections_max_idle: Duration::from_millis(config.connections_max_idle_ms),
        request_read_timeout: Duration::from_millis(config.request_read_timeout_ms),
        retention_check_interval: std::time::Duration::from_millis(config.log_retention_check_interval_ms),
        cleaner_backoff: std::time::Duration::from_millis(config.log_cleaner_backoff_ms),
        cleaner_io_bytes_per_second: config.log_cleaner_io_max_bytes_per_second,
        producer_id_expiration_ms: config.producer_id_expiration_ms,
        producer_id_expiration_check_interval: std::time::Duration::from_millis(config.producer_id_expiration_check_interval_ms),
        coordinator: fjord_net::settings::CoordinatorSettings {
            classic: fjord_group::classic::ClassicConfig {
                rebalance_delay_initial_ms: config.group_initial_rebalance_delay_ms,
                session_timeout_ms_min: config.group_min_session_timeout_ms,
                session_timeout_ms_max: config.group_max_session_timeout_ms,
                ..Default::default()
            },
            consumer: fjord_group::consumer::ConsumerGroupConfig {
                session_timeout_ms: config.group_consumer_session_timeout_ms,
                heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
                ..Default::default()
            },
            offsets_topic_partitions: config.offsets_topic_num_partitions,
        },
        transactions: fjord_net::settings::TxnSettings {
            config: fjord_group::txn::TxnConfig {
                transaction_max_timeout_ms: config.transaction_max_timeout_ms,
                transactional_id_expiration_ms: config.transactional_id_expiration_ms,
            },
            partitions: config.transaction_state_log_num_partitions,
            abort_check_interval: std::time::Duration::from_millis(
                config.transaction_abort_timed_out_transaction_cleanup_interval_ms,
            ),
        },
        static_configs: config.static_broker_configs(),
    };
    let shared = Arc::new(Shared {
        settings: Arc::new(settings),
        metadata,
        controller: Arc::new(Mutex::new(controller)),
        data_dir: config.data_dir.clone(),
        listen: config.listen,
        cache_bytes_per_shard: config.batch_cache_bytes / config.shards,
        partition_settings: PartitionSettings { flush_interval_ms: config.log_flush_interval_ms },
        shard_count: config.shards,
        segment_files_per_shard,
        metrics: Arc::new(Metrics::new(config.shards).with_api_names(fjord_net::api::api_names())),
        shutdown: AtomicBool::new(false),
        drained: AtomicUsize::new(0),
        listening: AtomicUsize::new(0),
        startup_error: Mutex::new(None),
        startup_phases: (0..config.shards).map(|_| AtomicU8::new(StartupPhase::ConnectingMesh as u8)).collect(),
    });
    if let Some(listen) = config.metrics_listen {
        match crate::metrics_http::spawn(listen, shared.metrics.clone()) {
            Ok(bound) => tracing::info!(%bound, "serving Prometheus metrics at /metrics"),
            Err(error) if config.metrics_listen_explicit => {
                return Err(format!("cannot serve metrics on {listen}: {error}"));
            }
            Err(error) => tracing::warn!(%listen, %error, "cannot serve metrics on the default address; /metrics is off"),
        }
    }
    spawn_signal_thread(shared.clone());
    spawn_ready_reporter(shared.clone(), config.clone());
    let spin_before_park = (config.spin_before_park_us > 0).then(|| Duration::from_micros(config.spin_before_park_us));
    let runtime = ShardRuntimeConfig { io_memory_bytes: IO_MEMORY_BYTES_PER_SHARD, spin_before_park, pin_to_cores: true };
    let body_shared = shared.clone();
    rt::run_shards(config.shards, runtime, move |shard_id, mesh| server::run_shard(shard_id, mesh, body_shared.clone()))
        .map_err(|error| format!("shards failed: {error}"))?;
    if let Some(error) = shared.startup_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
        return Err(error);
    }
    tracing::info!("stopped cleanly: every partition flushed and synced");
    Ok(())
}

/// Raises the soft open-file limit to the hard one, then sizes each shard's budget of segment
/// descriptors: `--open-segment-files-max` or half the limit, split over the shards. The other
/// half is for client connections, the metadata log, rings and transient files.
fn segment_file_budget(config: &StartConfig) -> usize {
    let limit = raise_open_file_limit();
    let total = config.open_segment_files_max.unwrap_or((limit / 2) as usize);
    let per_shard = (total / config.shards).max(fjord_engine::files::SHARD_FILES_MIN);
    if config.open_segment_files_max.is_some_and(|max| max as u64 >= limit) {
        tracing::warn!(
            open_file_limit = limit,
            open_segment_files_max = total,
            "the segment file budget leaves no descriptors for connections"
        );
    }
    tracing::info!(
        open_file_limit = limit,
        segment_files_per_shard = per_shard,
        shards = config.shards,
        "descriptor budget: segment files are opened on demand and the least recently used idle ones closed"
    );
    per_shard
}

/// Sets the soft RLIMIT_NOFILE to the hard limit; returns the soft limit in force.
fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit write and read only the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    // RLIM_INFINITY (or anything past what a process could use) counts as a million.
    limit.rlim_cur.min(1 << 20)
}

/// Holds an exclusive flock on `<data_dir>/.lock` for the life of the process.
fn lock_data_dir(dir: &Path) -> Result<File, String> {
    std::fs::create_dir_all(dir).map_err(|error| format!("cannot create data directory {}: {error}", dir.display()))?;
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|error| format!("data directory {} is not writable: {error}", dir.display()))?;
    // SAFETY: flock on a descriptor we own.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        return Err(format!(
            "data directory {} is locked by another Fjord broker{}; stop it or use another --data-dir",
            dir.display(),
            if holder.trim().is_empty() { String::new() } else { format!(" (pid {})", holder.trim()) }
        ));
    }
    file.set_len(0).map_err(|error| format!("data directory {} is not writable: {error}", dir.display()))?;
    std::fs::write(&path, format!("{}\n", std::process::id()))
        .map_err(|error| format!("data directory {} is not writable: {error}", dir.display()))?;
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"ok").map_err(|error| format!("data directory {} is not writable: {error}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(file)
}

/// The shards bind with SO_REUSEPORT, which would happily share a port with another broker, so a
/// listener already answering on the address means the port is in use. (A plain bind would also
/// fail on our own TIME_WAIT sockets of a previous run.) A non-reuseport holder makes the shards'
/// bind fail, reported the same way.
fn probe_port(config: &StartConfig) -> Result<(), String> {
    let mut target = config.listen;
    if target.ip().is_unspecified() {
        target.set_ip(if target.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    // A broker killed a moment ago still holds its listener until the kernel tears down its
    // io_uring (asynchronously, after the process is gone): give such a port a few seconds.
    let deadline = std::time::Instant::now() + PORT_RELEASE_WAIT_MAX;
    loop {
        match std::net::TcpStream::connect_timeout(&target, Duration::from_millis(500)) {
            Err(_) => return Ok(()),
            Ok(_) if std::time::Instant::now() >= deadline => {
                return Err(format!("address {} is already in use (something is listening on it)", config.listen))
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// How often a start-up that is not ready yet says which shard is doing what.
const STARTUP_SLOW_REPORT: Duration = Duration::from_secs(10);

/// How long start-up waits for a port that something still answers on.
const PORT_RELEASE_WAIT_MAX: Duration = Duration::from_secs(5);

fn shutdown_signal_set() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local value.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// Blocks SIGTERM/SIGINT in this thread before any other starts, so every thread inherits the
/// mask and only the signal thread receives them (via sigwait).
fn block_shutdown_signals() {
    let set = shutdown_signal_set();
    // SAFETY: setting this thread's signal mask.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn spawn_signal_thread(shared: Arc<Shared>) {
    std::thread::Builder::new()
        .name("fjord-signals".into())
        .spawn(move || {
            let set = shutdown_signal_set();
            let mut signal: libc::c_int = 0;
            // SAFETY: waits for one of the blocked signals.
            unsafe { libc::sigwait(&set, &mut signal) };
            tracing::info!(signal, "shutting down: no new connections; finishing in-flight requests");
            shared.shutdown.store(true, Ordering::SeqCst);
        })
        .expect("spawn signal thread");
}

fn spawn_ready_reporter(shared: Arc<Shared>, config: StartConfig) {
    std::thread::Builder::new()
        .name("fjord-ready".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            let mut next_report = STARTUP_SLOW_REPORT;
            loop {
                if shared.shutdown.load(Ordering::SeqCst) {
                    return;
                }
                if started.elapsed() >= next_report {
                    // A watchdog, not a deadline: recovering a large log can take long.
                    let stragglers = shared.startup_stragglers();
                    let waiting: Vec<String> =
                        stragglers.iter().map(|(shard, phase)| format!("shard {shard} is {phase}")).collect();
                    tracing::warn!(seconds = next_report.as_secs(), "start-up is slow: {}", waiting.join("; "));
                    next_report += STARTUP_SLOW_REPORT;
                }
                if shared.listening.load(Ordering::SeqCst) == shared.shard_count {
                    tracing::info!(
                        listen = %config.listen,
                        advertised = %format!("{}:{}", config.advertised_host, config.advertised_port),
                        shards = config.shards,
                        data_dir = %config.data_dir.display(),
                        "Fjord broker ready"
                    );
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
        .expect("spawn ready reporter");
}
