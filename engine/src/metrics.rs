//! Broker counters for operators, exported in the Prometheus text format.
//!
//! Each shard writes only its own [`ShardMetrics`] (relaxed atomic adds on a cache-line-aligned
//! block, so shards never share a line); the `/metrics` endpoint reads every shard's block from
//! its own thread and labels each sample with `shard`. Counters only go up; a restart starts
//! them at zero, which Prometheus' `rate()` understands.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, amount: u64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (set by its owner shard).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why retention removed segments; the index into the per-cause counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionCause {
    Time = 0,
    Size = 1,
    StartOffset = 2,
}

const RETENTION_CAUSES: [(RetentionCause, &str); 3] =
    [(RetentionCause::Time, "time"), (RetentionCause::Size, "size"), (RetentionCause::StartOffset, "start_offset")];

/// One shard's counters. Written only by that shard.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardMetrics {
    pub produce_requests: Counter,
    /// Record-batch bytes received in produce requests.
    pub produce_bytes: Counter,
    pub fetch_requests: Counter,
    /// Record-batch bytes sent in fetch responses.
    pub fetch_bytes: Counter,
    pub retention_segments_removed: [Counter; 3],
    pub retention_bytes_removed: [Counter; 3],
    pub compaction_passes: Counter,
    pub compaction_segments_cleaned: Counter,
    pub compaction_bytes_read: Counter,
    pub compaction_bytes_written: Counter,
    pub compaction_records_removed: Counter,
    pub compaction_tombstones_removed: Counter,
    /// Partitions this shard has open.
    pub partitions: Gauge,
    /// Bytes held by this shard's batch cache.
    pub cache_bytes: Gauge,
}

impl ShardMetrics {
    pub fn retention_removed(&self, cause: RetentionCause, segments: u64, bytes: u64) {
        self.retention_segments_removed[cause as usize].add(segments);
        self.retention_bytes_removed[cause as usize].add(bytes);
    }
}

/// One exported series: name, type, help, and how to read it from a shard's block.
type Series = (&'static str, &'static str, &'static str, fn(&ShardMetrics) -> u64);

/// Every shard's counters.
#[derive(Debug)]
pub struct Metrics {
    shards: Vec<ShardMetrics>,
}

impl Metrics {
    pub fn new(shard_count: usize) -> Metrics {
        Metrics { shards: (0..shard_count).map(|_| ShardMetrics::default()).collect() }
    }

    pub fn shard(&self, shard_id: usize) -> &ShardMetrics {
        &self.shards[shard_id]
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let simple: [Series; 12] = [
            ("fjord_produce_requests_total", "counter", "Produce requests received.", |m| m.produce_requests.get()),
            ("fjord_produce_bytes_total", "counter", "Record-batch bytes received in produce requests.", |m| {
                m.produce_bytes.get()
            }),
            ("fjord_fetch_requests_total", "counter", "Fetch requests answered.", |m| m.fetch_requests.get()),
            ("fjord_fetch_bytes_total", "counter", "Record-batch bytes sent in fetch responses.", |m| m.fetch_bytes.get()),
            ("fjord_compaction_passes_total", "counter", "Partitions compacted (one cleaning of one partition).", |m| {
                m.compaction_passes.get()
            }),
            ("fjord_compaction_segments_cleaned_total", "counter", "Segments rewritten by compaction.", |m| {
                m.compaction_segments_cleaned.get()
            }),
            ("fjord_compaction_bytes_read_total", "counter", "Log bytes read by compaction.", |m| m.compaction_bytes_read.get()),
            ("fjord_compaction_bytes_written_total", "counter", "Log bytes written by compaction.", |m| {
                m.compaction_bytes_written.get()
            }),
            (
                "fjord_compaction_records_removed_total",
                "counter",
                "Records removed by compaction (superseded or tombstones).",
                |m| m.compaction_records_removed.get(),
            ),
            ("fjord_compaction_tombstones_removed_total", "counter", "Tombstones removed after delete.retention.ms.", |m| {
                m.compaction_tombstones_removed.get()
            }),
            ("fjord_partitions", "gauge", "Partitions open on the shard.", |m| m.partitions.get()),
            ("fjord_batch_cache_bytes", "gauge", "Bytes held by the shard's batch cache.", |m| m.cache_bytes.get()),
        ];
        for (name, kind, help, read) in simple {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (shard, metrics) in self.shards.iter().enumerate() {
                let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", read(metrics));
            }
        }
        for (name, help, pick) in [
            (
                "fjord_retention_segments_removed_total",
                "Segments removed by retention (retention.ms, retention.bytes, below the log start offset).",
                (|m: &ShardMetrics, cause: usize| m.retention_segments_removed[cause].get()) as fn(&ShardMetrics, usize) -> u64,
            ),
            ("fjord_retention_bytes_removed_total", "Bytes removed by retention.", |m: &ShardMetrics, cause: usize| {
                m.retention_bytes_removed[cause].get()
            }),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (shard, metrics) in self.shards.iter().enumerate() {
                for (cause, label) in RETENTION_CAUSES {
                    let _ = writeln!(out, "{name}{{shard=\"{shard}\",cause=\"{label}\"}} {}", pick(metrics, cause as usize));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_labels_every_shard_and_cause() {
        let metrics = Metrics::new(2);
        metrics.shard(1).produce_bytes.add(1024);
        metrics.shard(0).retention_removed(RetentionCause::Size, 2, 4096);
        metrics.shard(1).retention_removed(RetentionCause::Time, 1, 100);
        let text = metrics.render();
        assert!(text.contains("fjord_produce_bytes_total{shard=\"1\"} 1024\n"), "{text}");
        assert!(text.contains("fjord_produce_bytes_total{shard=\"0\"} 0\n"), "{text}");
        assert!(text.contains("fjord_retention_segments_removed_total{shard=\"0\",cause=\"size\"} 2\n"), "{text}");
        assert!(text.contains("fjord_retention_bytes_removed_total{shard=\"1\",cause=\"time\"} 100\n"), "{text}");
        // Every sample line belongs to a metric declared with # TYPE before it.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split('{').next().unwrap();
                assert!(declared.contains(name), "{name} sampled before its # TYPE");
            }
        }
    }
}
