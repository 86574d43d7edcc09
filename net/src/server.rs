//! A shard's life: open its partitions (recovering them), serve the mesh and its listener
//! (SO_REUSEPORT: the kernel spreads connections over shards), and on shutdown stop accepting,
//! finish in-flight requests, then flush, sync and close every partition.

use fjord_engine::maintenance::{self, MaintenanceHost, MaintenanceSettings, TopicConfigs};
use fjord_engine::metrics::{Metrics, ShardMetrics};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fjord_engine::partition::{Partition, PartitionSettings};
use fjord_engine::rt::{self, Mesh};
use fjord_engine::shard::{ShardStore, ShardTable};
use fjord_engine::tasks::{Priority, TaskRegistry};
use fjord_engine::topic_config::TopicConfig;
use fjord_replication::metadata::{Controller, MetadataTable};
use futures::future::{select, Either};

use crate::context::ShardContext;
use crate::message::ShardRequest;
use crate::settings::BrokerSettings;
use crate::shard::Shard;

/// State every shard starts from. Shared, read-only except for the atomics and the controller.
pub struct Shared {
    pub settings: Arc<BrokerSettings>,
    pub metadata: Arc<MetadataTable>,
    pub controller: Arc<Mutex<Controller>>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub cache_bytes_per_shard: usize,
    pub partition_settings: PartitionSettings,
    pub shard_count: usize,
    /// Each shard's budget of open segment file descriptors (`fjord_engine::files`).
    pub segment_files_per_shard: usize,
    /// Every shard's counters (the /metrics endpoint reads them).
    pub metrics: Arc<Metrics>,
    /// Set by the signal handler thread.
    pub shutdown: AtomicBool,
    /// Shards that have finished serving clients (second phase of shutdown starts at all).
    pub drained: AtomicUsize,
    /// Shards listening (the broker is up when this reaches the shard count).
    pub listening: AtomicUsize,
    /// First fatal startup error of any shard.
    pub startup_error: Mutex<Option<String>>,
    /// Where each shard is in start-up, so a slow or stuck start can say where (see
    /// [`StartupPhase`]); indexed by shard.
    pub startup_phases: Vec<AtomicU8>,
}

/// The steps of a shard's start-up, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StartupPhase {
    /// The executor is up and connecting to the other shards (before `run_shard` runs).
    ConnectingMesh,
    /// Opening, and so recovering, the partitions this shard owns.
    OpeningPartitions,
    /// Loading the group and transaction coordinators' state.
    LoadingCoordinators,
    /// Binding the client listener.
    Binding,
    /// Accepting clients.
    Listening,
}

impl StartupPhase {
    /// Every phase, indexed by its `u8` value (as stored in [`Shared::startup_phases`]).
    const ALL: [StartupPhase; 5] = [
        StartupPhase::ConnectingMesh,
        StartupPhase::OpeningPartitions,
        StartupPhase::LoadingCoordinators,
        StartupPhase::Binding,
        StartupPhase::Listening,
    ];

    fn description(self) -> &'static str {
        match self {
            StartupPhase::ConnectingMesh => "connecting the shard mesh",
            StartupPhase::OpeningPartitions => "opening (recovering) its partitions",
            StartupPhase::LoadingCoordinators => "loading the group and transaction coordinators",
            StartupPhase::Binding => "binding the listener",
            StartupPhase::Listening => "listening",
        }
    }
}

impl Shared {
    fn enter_phase(&self, shard_id: usize, phase: StartupPhase) {
        self.startup_phases[shard_id].store(phase as u8, Ordering::SeqCst);
        tracing::debug!(shard = shard_id, phase = phase.description(), "start-up");
    }

    /// Shards not yet listening, with what each is doing.
    pub fn startup_stragglers(&self) -> Vec<(usize, &'static str)> {
        (self.startup_phases.iter().map(|phase| StartupPhase::ALL[phase.load(Ordering::SeqCst) as usize]).enumerate())
            .filter(|&(_, phase)| phase != StartupPhase::Listening)
            .map(|(shard, phase)| (shard, phase.description()))
            .collect()
    }
}

/// How long shutdown waits for in-flight requests (a long poll ends early on shutdown).
const DRAIN_WAIT_MAX: Duration = Duration::from_secs(10);
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);
/// How long shutdown waits for the shard's tasks (maintenance) to stop before closing its
/// partitions: a pass stops between partitions, a compaction between two batches.
const TASKS_STOP_WAIT_MAX: Duration = Duration::from_secs(10);

pub async fn run_shard(shard_id: usize, mesh: Mesh<ShardRequest>, shared: Arc<Shared>) {
    fjord_engine::files::set_budget(shared.segment_files_per_shard);
    let table = ShardTable::new(shared.shard_count);
    let store = ShardStore::new(
        shard_id,
        table,
        shared.data_dir.clone(),
        shared.partition_settings.clone(),
        shared.cache_bytes_per_shard,
    );
    let ctx = Rc::new(ShardContext::new(
        store,
        mesh,
        shared.metadata.clone(),
        shared.controller.clone(),
        shared.settings.clone(),
        shared.metrics.clone(),
    ));
    let shard = Shard::new(ctx.clone());
    // The shard serves its own messages as the mesh does; a weak reference, or the context
    // would keep the shard (which holds it) alive.
    let local = Rc::downgrade(&shard);
    ctx.set_serve_local(Box::new(move |request| {
        let shard = local.upgrade();
        Box::pin(async move {
            if let Some(shard) = shard {
                crate::api::serve_owner(shard, request).await;
            }
        })
    }));
    let serving = shard.clone();
    ctx.mesh.serve(move |request| crate::api::serve_owner(serving.clone(), request));
    let tasks = TaskRegistry::new(shard_id);
    shared.enter_phase(shard_id, StartupPhase::OpeningPartitions);
    open_owned_partitions(&ctx).await;
    shared.enter_phase(shard_id, StartupPhase::LoadingCoordinators);
    shard.load_coordinators();
    if shard_id == 0 {
        remove_orphan_partition_dirs(&ctx, &shared.data_dir);
    }
    shared.enter_phase(shard_id, StartupPhase::Binding);
    let listener = match rt::bind_listener(shared.listen) {
        Ok(listener) => listener,
        Err(error) => {
            {
                let mut slot = shared.startup_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                slot.get_or_insert_with(|| match error.kind() {
                    std::io::ErrorKind::AddrInUse => format!("address {} is already in use", shared.listen),
                    _ => format!("cannot listen on {}: {error}", shared.listen),
                });
            }
            shared.shutdown.store(true, Ordering::SeqCst);
            tasks.shutdown(TASKS_STOP_WAIT_MAX).await;
            finish(&ctx, &shared).await;
            return;
        }
    };
    shared.enter_phase(shard_id, StartupPhase::Listening);
    shared.listening.fetch_add(1, Ordering::SeqCst);
    maintenance::start(&tasks, ctx.clone(), &maintenance_settings(&ctx.settings));
    let connections = Rc::new(std::cell::Cell::new(0usize));
    // Turns the signal handler's flag into this shard's shutdown: the accept loop, connections
    // and coordinators watch `ctx.shutdown`.
    let (watcher_ctx, watcher_shared, stop) = (ctx.clone(), shared.clone(), tasks.stop_signal());
    tasks.continuous("shutdown-watcher", Priority::Normal, async move {
        while !watcher_shared.shutdown.load(Ordering::SeqCst) {
            if rt::timeout(SHUTDOWN_POLL, stop.stopped()).await.is_some() {
                return;
            }
        }
        watcher_ctx.shutting_down.set(true);
        watcher_ctx.shutdown.notify_all();
    });
    loop {
        let shutdown = ctx.shutdown.notified();
        if ctx.shutting_down.get() {
            break;
        }
        match select(Box::pin(listener.accept()), Box::pin(shutdown)).await {
            Either::Left((Ok(stream), _)) => {
                let shard = shard.clone();
                let connections = connections.clone();
                connections.set(connections.get() + 1);
                rt::spawn_detached(async move {
                    crate::connection::serve(shard, stream).await;
                    connections.set(connections.get() - 1);
                });
            }
            Either::Left((Err(error), _)) => {
                tracing::warn!(%error, "accept failed");
                rt::sleep(Duration::from_millis(10)).await;
            }
            Either::Right(_) => break,
        }
    }
    drop(listener);
    // The maintenance stops while the connections drain, as both did at the shutdown signal.
    let drained = async {
        let waited = std::time::Instant::now();
        while connections.get() > 0 && waited.elapsed() < DRAIN_WAIT_MAX {
            rt::sleep(Duration::from_millis(10)).await;
        }
    };
    futures::future::join(tasks.shutdown(TASKS_STOP_WAIT_MAX), drained).await;
    finish(&ctx, &shared).await;
}

/// What the engine's maintenance reads from the shard: the topic configuration and which topics
/// compact come from the metadata, which the engine does not own.
impl TopicConfigs for ShardContext {
    fn config(&self, topic: &str) -> Option<TopicConfig> {
        self.topic(topic).map(|info| info.config.clone())
    }

    fn compacted_partitions(&self) -> Vec<Rc<Partition>> {
        let image = self.image();
        let mut partitions = Vec::new();
        for name in image.topics.keys() {
            let Some(info) = self.topic(name) else { continue };
            if !info.config.cleanup_policy.compacts() {
                continue;
            }
            for index in 0..info.partition_count {
                if self.table.owner(name, index) == self.shard_id {
                    partitions.extend(self.store.get(name, index));
                }
            }
        }
        partitions
    }
}

impl MaintenanceHost for ShardContext {
    fn store(&self) -> &ShardStore {
        &self.store
    }

    fn metrics(&self) -> &ShardMetrics {
        ShardContext::metrics(self)
    }
}

fn maintenance_settings(settings: &BrokerSettings) -> MaintenanceSettings {
    MaintenanceSettings {
        retention_check_interval: settings.retention_check_interval,
        cleaner_backoff: settings.cleaner_backoff,
        cleaner_io_bytes_per_second: settings.cleaner_io_bytes_per_second,
        producer_id_expiration_ms: settings.producer_id_expiration_ms,
        producer_id_expiration_check_interval: settings.producer_id_expiration_check_interval,
    }
}

/// Second phase: once every shard has stopped serving clients, close this shard's partitions.
/// The shard's tasks have stopped (or been named as not stopping) before this.
async fn finish(ctx: &Rc<ShardContext>, shared: &Shared) {
    shared.drained.fetch_add(1, Ordering::SeqCst);
    while shared.drained.load(Ordering::SeqCst) < shared.shard_count {
        rt::sleep(Duration::from_millis(5)).await;
    }
    ctx.store.close_all().await;
    tracing::debug!(shard = ctx.shard_id, "shard stopped");
}

/// Opens (and so recovers) every partition this shard owns, so a torn tail is cut at start.
async fn open_owned_partitions(ctx: &Rc<ShardContext>) {
    let image = ctx.image();
    let started = std::time::Instant::now();
    let (mut opened, mut recovered, mut recovered_bytes, mut failed) = (0usize, 0usize, 0u64, 0usize);
    for topic in image.topics.values() {
        let Some(info) = ctx.topic(&topic.name) else { continue };
        for partition in 0..info.partition_count {
            if ctx.table.owner(&topic.name, partition) != ctx.shard_id {
                continue;
            }
            tracing::debug!(shard = ctx.shard_id, topic = %topic.name, partition, "opening partition");
            match ctx.store.get_or_open(&topic.name, partition, &info.spec(partition)).await {
                Ok(open) => {
                    opened += 1;
                    recovered += usize::from(open.recovered_bytes() > 0);
                    recovered_bytes += open.recovered_bytes();
                }
                Err(error) => {
                    failed += 1;
                    tracing::error!(topic = %topic.name, partition, %error, "cannot open partition");
                }
            }
            rt::yield_if_needed().await;
        }
    }
    tracing::info!(
        shard = ctx.shard_id,
        partitions = opened,
        failed,
        recovered_after_unclean_stop = recovered,
        recovered_bytes_cut = recovered_bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "opened partitions"
    );
}

/// Partition directories of topics no longer in the metadata (deleted while the broker was down).
fn remove_orphan_partition_dirs(ctx: &ShardContext, data_dir: &std::path::Path) {
    let image = ctx.image();
    let Ok(entries) = std::fs::read_dir(data_dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("__cluster_metadata") || !entry.path().is_dir() {
            continue;
        }
        let Some((topic, partition)) = name.rsplit_once('-') else { continue };
        let Ok(partition) = partition.parse::<i32>() else { continue };
        let known = image.topics.get(topic).is_some_and(|found| (partition as usize) < found.partitions.len());
        if !known {
            tracing::info!(dir = %entry.path().display(), "removing data of a deleted topic");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
