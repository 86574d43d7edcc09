//! A shard's maintenance of the partitions it owns: retention, the log cleaner, producer-id
//! expiry and the /metrics gauges, each a named periodic task in the shard's [`TaskRegistry`].
//!
//! What only the layers above know (a topic's current configuration, which topics compact) comes
//! through [`MaintenanceHost`]; the engine depends on neither net nor replication.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::compaction::CompactOptions;
use crate::log::RemovalCause;
use crate::metrics::{RetentionCause, ShardMetrics};
use crate::partition::{now_ms, Partition};
use crate::rt;
use crate::shard::ShardStore;
use crate::tasks::{Priority, StopSignal, TaskRegistry};
use crate::topic_config::TopicConfig;

/// How often a shard refreshes its gauges (open partitions, cache bytes, segment files).
pub const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// The topic metadata the maintenance follows, owned above the engine.
pub trait TopicConfigs {
    /// The topic's current configuration; `None` once the topic is gone.
    fn config(&self, topic: &str) -> Option<TopicConfig>;
    /// The open partitions this shard owns of the topics whose cleanup policy compacts.
    fn compacted_partitions(&self) -> Vec<Rc<Partition>>;
}

/// The shard the maintenance runs for. Lives on that shard.
pub trait MaintenanceHost: TopicConfigs {
    fn store(&self) -> &ShardStore;
    fn metrics(&self) -> &ShardMetrics;
}

/// The broker settings the maintenance runs by.
#[derive(Debug, Clone, Copy)]
pub struct MaintenanceSettings {
    /// log.retention.check.interval.ms
    pub retention_check_interval: Duration,
    /// log.cleaner.backoff.ms
    pub cleaner_backoff: Duration,
    /// log.cleaner.io.max.bytes.per.second for the whole broker (0: unlimited).
    pub cleaner_io_bytes_per_second: u64,
    /// producer.id.expiration.ms
    pub producer_id_expiration_ms: i64,
    /// producer.id.expiration.check.interval.ms
    pub producer_id_expiration_check_interval: Duration,
}

/// Registers the shard's maintenance as named background tasks: "retention", "log-cleaner",
/// "producer-expiry" and "gauges" (the gauges are refreshed once now as well).
pub fn start<H: MaintenanceHost + 'static>(registry: &TaskRegistry, host: Rc<H>, settings: &MaintenanceSettings) {
    let stop = registry.stop_signal();
    let totals = Rc::new(Cell::new(RetentionTotals::default()));
    let (retention_host, retention_stop) = (host.clone(), stop.clone());
    registry.periodic("retention", settings.retention_check_interval, Priority::Background, move || {
        let (host, stop, totals) = (retention_host.clone(), retention_stop.clone(), totals.clone());
        async move { retention_pass(&*host, &totals, &stop).await }
    });
    let options = cleaner_options(settings.cleaner_io_bytes_per_second, host.store().table.shard_count());
    let (cleaner_host, cleaner_stop) = (host.clone(), stop.clone());
    registry.periodic("log-cleaner", settings.cleaner_backoff, Priority::Background, move || {
        let (host, stop) = (cleaner_host.clone(), cleaner_stop.clone());
        async move { cleaner_pass(&*host, &options, &stop).await }
    });
    let (expiry_host, expiration_ms) = (host.clone(), settings.producer_id_expiration_ms);
    registry.periodic("producer-expiry", settings.producer_id_expiration_check_interval, Priority::Background, move || {
        let host = expiry_host.clone();
        async move { expire_producers(host.store(), expiration_ms).await }
    });
    refresh_gauges(host.store(), host.metrics());
    registry.periodic("gauges", GAUGE_INTERVAL, Priority::Background, move || {
        refresh_gauges(host.store(), host.metrics());
        async {}
    });
}

/// What retention removed on this shard since start (logged with each removal).
#[derive(Debug, Clone, Copy, Default)]
pub struct RetentionTotals {
    pub segments: u64,
    pub bytes: u64,
}

/// One retention pass over the partitions the shard owns: closed segments past retention.ms /
/// retention.bytes, or below the log start offset, are removed. Logs each removal with the
/// shard's running totals; stops between partitions at the stop signal.
pub async fn retention_pass(host: &impl MaintenanceHost, totals: &Cell<RetentionTotals>, stop: &StopSignal) {
    let store = host.store();
    let started = Instant::now();
    let partitions = store.partitions();
    for partition in &partitions {
        if stop.is_stopping() {
            break;
        }
        refresh_config(host, partition);
        match partition.enforce_retention(now_ms()).await {
            Ok(reports) => {
                for (cause, report) in reports {
                    let counted = match cause {
                        RemovalCause::Time => RetentionCause::Time,
                        RemovalCause::Size => RetentionCause::Size,
                        RemovalCause::StartOffset => RetentionCause::StartOffset,
                    };
                    host.metrics().retention_removed(counted, report.segments as u64, report.bytes);
                    let mut total = totals.get();
                    total.segments += report.segments as u64;
                    total.bytes += report.bytes;
                    totals.set(total);
                    tracing::info!(
                        partition = partition.name(),
                        ?cause,
                        segments = report.segments,
                        bytes = report.bytes,
                        log_start_offset = partition.log_start_offset(),
                        shard_removed_segments_total = total.segments,
                        shard_removed_bytes_total = total.bytes,
                        "retention removed segments"
                    );
                }
            }
            Err(error) => tracing::warn!(partition = partition.name(), %error, "retention pass failed"),
        }
        rt::yield_if_needed().await;
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::debug!(shard = store.shard_id, partitions = partitions.len(), elapsed_ms, "retention pass");
}

/// Config changes reach partitions lazily (the produce path applies them too).
fn refresh_config(configs: &impl TopicConfigs, partition: &Partition) {
    if let Some(config) = configs.config(&partition.topic) {
        if !partition.config_is(&config) {
            partition.set_config(config);
        }
    }
}

/// The cleaner's pass options: the broker's read pace split over the shards.
fn cleaner_options(io_bytes_per_second: u64, shard_count: usize) -> CompactOptions {
    CompactOptions {
        io_bytes_per_second: (io_bytes_per_second > 0).then(|| (io_bytes_per_second / shard_count as u64).max(1)),
        ..CompactOptions::default()
    }
}

/// One log-cleaner pass over the compacted partitions the shard owns (each cleaned only if it
/// needs it: dirty ratio, lags, expired tombstones). One log line per cleaned partition, with the
/// shard's running totals. Only the partitions of compacted topics are visited: 100,000
/// partitions of other topics cost it nothing. At the stop signal a compaction stops between two
/// batches and the pass ends.
pub async fn cleaner_pass(host: &impl MaintenanceHost, options: &CompactOptions, stop: &StopSignal) {
    let is_stopping = || stop.is_stopping();
    for partition in host.compacted_partitions() {
        if stop.is_stopping() {
            break;
        }
        refresh_config(host, &partition);
        match partition.compact_until(now_ms(), options, &is_stopping).await {
            Ok(Some(report)) => {
                let totals = host.store().note_cleaning(&report);
                let counters = host.metrics();
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

/// Forgets the idempotent producers idle for `expiration_ms` on the partitions the shard owns
/// (Kafka's `removeExpiredProducers`).
pub async fn expire_producers(store: &ShardStore, expiration_ms: i64) {
    let now_ms = now_ms();
    for partition in store.partitions() {
        let expired = partition.expire_producers(now_ms, expiration_ms);
        if expired > 0 {
            tracing::info!(partition = partition.name(), expired, "expired idle producer ids");
        }
        rt::yield_if_needed().await;
    }
}

/// Sets the shard's gauges for /metrics: open partitions, cache bytes, segment files.
pub fn refresh_gauges(store: &ShardStore, metrics: &ShardMetrics) {
    metrics.partitions.set(store.partitions().len() as u64);
    metrics.cache_bytes.set(store.cache_used_bytes() as u64);
    metrics.segment_files.record(crate::files::stats());
}
