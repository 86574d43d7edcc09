//! A shard's life: open its partitions (recovering them), serve the mesh and its listener
//! (SO_REUSEPORT: the kernel spreads connections over shards), and on shutdown stop accepting,
//! finish in-flight requests, then flush, sync and close every partition.

use fjord_engine::log::RemovalCause;
use fjord_engine::metrics::{Metrics, RetentionCause};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fjord_engine::compaction::CompactOptions;
use fjord_engine::partition::{Partition, PartitionSettings};
use fjord_engine::rt::{self, Mesh};
use fjord_engine::shard::{ShardStore, ShardTable};
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
            finish(&ctx, &shared).await;
            return;
        }
    };
    shared.enter_phase(shard_id, StartupPhase::Listening);
    shared.listening.fetch_add(1, Ordering::SeqCst);
    rt::spawn_background(run_retention(ctx.clone()));
    rt::spawn_background(run_cleaner(ctx.clone()));
    rt::spawn_background(run_gauges(ctx.clone()));
    rt::spawn_background(run_producer_expiry(ctx.clone()));
    let connections = Rc::new(std::cell::Cell::new(0usize));
    let watcher_ctx = ctx.clone();
    let watcher_shared = shared.clone();
    rt::spawn_detached(async move {
        while !watcher_shared.shutdown.load(Ordering::SeqCst) {
            rt::sleep(SHUTDOWN_POLL).await;
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
    let waited = std::time::Instant::now();
    while connections.get() > 0 && waited.elapsed() < DRAIN_WAIT_MAX {
        rt::sleep(Duration::from_millis(10)).await;
    }
    finish(&ctx, &shared).await;
}

/// The shard's retention task: every log.retention.check.interval.ms, one pass over the
/// partitions it owns (closed segments past retention.ms / retention.bytes, or below the log start
/// offset, are removed). Logs each removal and a running total per shard.
async fn run_retention(ctx: Rc<ShardContext>) {
    let interval = ctx.settings.retention_check_interval;
    let mut removed_segments = 0u64;
    let mut removed_bytes = 0u64;
    while !ctx.shutting_down.get() {
        let shutdown = ctx.shutdown.notified();
        if rt::timeout(interval, shutdown).await.is_some() {
            break;
        }
        let started = std::time::Instant::now();
        let partitions = ctx.store.partitions();
        for partition in &partitions {
            if ctx.shutting_down.get() {
                break;
            }
            refresh_config(&ctx, partition);
            match partition.enforce_retention(fjord_engine::partition::now_ms()).await {
                Ok(reports) => {
                    for (cause, report) in reports {
                        let counted = match cause {
                            RemovalCause::Time => RetentionCause::Time,
                            RemovalCause::Size => RetentionCause::Size,
                            RemovalCause::StartOffset => RetentionCause::StartOffset,
                        };
                        ctx.metrics().retention_removed(counted, report.segments as u64, report.bytes);
                        removed_segments += report.segments as u64;
                        removed_bytes += report.bytes;
                        tracing::info!(
                            partition = partition.name(),
                            ?cause,
                            segments = report.segments,
                            bytes = report.bytes,
                            log_start_offset = partition.log_start_offset(),
                            shard_removed_segments_total = removed_segments,
                            shard_removed_bytes_total = removed_bytes,
                            "retention removed segments"
                        );
                    }
                }
                Err(error) => tracing::warn!(partition = partition.name(), %error, "retention pass failed"),
            }
            rt::yield_if_needed().await;
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::debug!(shard = ctx.shard_id, partitions = partitions.len(), elapsed_ms, "retention pass");
    }
}

/// Config changes reach partitions lazily (the produce path applies them too).
fn refresh_config(ctx: &ShardContext, partition: &Partition) {
    if let Some(info) = ctx.topic(&partition.topic) {
        if !partition.config_is(&info.config) {
            partition.set_config(info.config.clone());
        }
    }
}

/// The shard's log cleaner: every log.cleaner.backoff.ms, one pass over the compacted partitions
/// it owns (each cleaned only if it needs it: dirty ratio, lags, expired tombstones). One log line
/// per cleaned partition, with the shard's running totals. A pass visits only the partitions of
/// compacted topics: 100,000 partitions of other topics cost it nothing.
async fn run_cleaner(ctx: Rc<ShardContext>) {
    let backoff = ctx.settings.cleaner_backoff;
    let io_limit = ctx.settings.cleaner_io_bytes_per_second;
    let options = CompactOptions {
        io_bytes_per_second: (io_limit > 0).then(|| (io_limit / ctx.table.shard_count() as u64).max(1)),
        ..CompactOptions::default()
    };
    while !ctx.shutting_down.get() {
        let shutdown = ctx.shutdown.notified();
        if rt::timeout(backoff, shutdown).await.is_some() {
            break;
        }
        for partition in compacted_partitions(&ctx) {
            if ctx.shutting_down.get() {
                break;
            }
            refresh_config(&ctx, &partition);
            match partition.compact(fjord_engine::partition::now_ms(), &options).await {
                Ok(Some(report)) => {
                    let totals = ctx.store.note_cleaning(&report);
                    let counters = ctx.metrics();
                    counters.compaction_passes.add(1);
                    counters.compaction_segments_cleaned.add(report.segments_before as u64);
                    counters.compaction_bytes_read.add(report.bytes_read);
                    counters.compaction_bytes_written.add(report.bytes_after);
                    counters.compaction_records_removed.add(report.records_before - report.records_after);
                    counters.compaction_tombstones_removed.add(report.tombstones_removed);
                    tracing::info!(
                        partition = partition.name(),
                        completed = report.completed,
                        dirty_offsets = format!("{}..{}", report.first_dirty_offset, report.end_offset),
                        dirty_ratio = format!("{:.3}", report.dirty_ratio),
                        segments = format!("{} -> {}", report.segments_before, report.segments_after),
                        records = format!("{} -> {}", report.records_before, report.records_after),
                        bytes = format!("{} -> {}", report.bytes_before, report.bytes_after),
                        tombstones_removed = report.tombstones_removed,
                        duration_ms = report.duration_ms,
                        mb_per_s = format!("{:.1}", report.megabytes_per_second()),
                        shard_passes_total = totals.passes,
                        shard_segments_cleaned_total = totals.segments_cleaned,
                        shard_bytes_read_total = totals.bytes_read,
                        shard_bytes_written_total = totals.bytes_written,
                        shard_records_removed_total = totals.records_removed,
                        shard_tombstones_removed_total = totals.tombstones_removed,
                        "log cleaner compacted partition"
                    );
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(partition = partition.name(), %error, "log cleaner pass failed"),
            }
            rt::yield_if_needed().await;
        }
    }
}

/// The open partitions this shard owns of the topics whose cleanup policy compacts.
fn compacted_partitions(ctx: &ShardContext) -> Vec<Rc<Partition>> {
    let image = ctx.image();
    let mut partitions = Vec::new();
    for name in image.topics.keys() {
        let Some(info) = ctx.topic(name) else { continue };
        if !info.config.cleanup_policy.compacts() {
            continue;
        }
        for index in 0..info.partition_count {
            if ctx.table.owner(name, index) == ctx.shard_id {
                partitions.extend(ctx.store.get(name, index));
            }
        }
    }
    partitions
}

/// The shard's producer expiry task: every producer.id.expiration.check.interval.ms, forgets
/// the idempotent producers idle for producer.id.expiration.ms on the partitions it owns
/// (Kafka's `removeExpiredProducers`).
async fn run_producer_expiry(ctx: Rc<ShardContext>) {
    let interval = ctx.settings.producer_id_expiration_check_interval;
    let expiration_ms = ctx.settings.producer_id_expiration_ms;
    while !ctx.shutting_down.get() {
        let shutdown = ctx.shutdown.notified();
        if rt::timeout(interval, shutdown).await.is_some() {
            break;
        }
        let now_ms = fjord_engine::partition::now_ms();
        for partition in ctx.store.partitions() {
            let expired = partition.expire_producers(now_ms, expiration_ms);
            if expired > 0 {
                tracing::info!(partition = partition.name(), expired, "expired idle producer ids");
            }
            rt::yield_if_needed().await;
        }
    }
}

/// How often a shard refreshes its gauges (open partitions, cache bytes) for /metrics.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

async fn run_gauges(ctx: Rc<ShardContext>) {
    while !ctx.shutting_down.get() {
        ctx.metrics().partitions.set(ctx.store.partitions().len() as u64);
        ctx.metrics().cache_bytes.set(ctx.store.cache_used_bytes() as u64);
        ctx.metrics().segment_files.record(fjord_engine::files::stats());
        let shutdown = ctx.shutdown.notified();
        if rt::timeout(GAUGE_INTERVAL, shutdown).await.is_some() {
            break;
        }
    }
}

/// Second phase: once every shard has stopped serving clients, close this shard's partitions.
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
