//! Broker counters for operators, exported in the Prometheus text format.
//!
//! Each shard writes only its own [`ShardMetrics`] (relaxed atomic adds on a cache-line-aligned
//! block, so shards never share a line); the `/metrics` endpoint reads every shard's block from
//! its own thread and labels each sample with `shard`. Counters only go up; a restart starts
//! them at zero, which Prometheus' `rate()` understands. Request times are Prometheus histograms
//! (fixed buckets), one per API the shard has answered: Kafka's `RequestMetrics.TotalTimeMs`, from
//! the request read off the socket to its response written.

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

/// Upper bounds of the request-time buckets, in microseconds (the `+Inf` bucket follows). From
/// a tenth of a millisecond, below an fdatasync on a fast disk, to Kafka's 30 s request timeout.
pub const REQUEST_TIME_BUCKETS_US: [u64; 17] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 30_000_000,
];

/// API keys with a request-time histogram; higher (and negative) keys are counted under the last.
pub const API_KEYS_TIMED: usize = 128;

/// A Prometheus histogram of durations with the [`REQUEST_TIME_BUCKETS_US`] buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket, not cumulative; the last is `+Inf`.
    buckets: [Counter; REQUEST_TIME_BUCKETS_US.len() + 1],
    sum_us: Counter,
}

impl Histogram {
    pub fn observe(&self, duration: std::time::Duration) {
        let us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let bucket = REQUEST_TIME_BUCKETS_US.partition_point(|&bound| bound < us);
        self.buckets[bucket].add(1);
        self.sum_us.add(us);
    }

    /// Cumulative counts per bucket bound, `+Inf` last (what Prometheus' `_bucket` series show).
    pub fn cumulative(&self) -> Vec<u64> {
        let mut total = 0;
        self.buckets
            .iter()
            .map(|bucket| {
                total += bucket.get();
                total
            })
            .collect()
    }
}

/// One request-time histogram per API key.
#[derive(Debug)]
pub struct RequestTimes(Vec<Histogram>);

impl Default for RequestTimes {
    fn default() -> Self {
        RequestTimes((0..API_KEYS_TIMED).map(|_| Histogram::default()).collect())
    }
}

impl RequestTimes {
    pub fn api(&self, api_key: i16) -> &Histogram {
        let key = usize::try_from(api_key).unwrap_or(API_KEYS_TIMED - 1);
        &self.0[key.min(API_KEYS_TIMED - 1)]
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

/// Why the broker closed a client connection; the index into the per-reason counters. (A client
/// closing its own connection, and shutdown, are not counted.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No request for connections.max.idle.ms with nothing in flight.
    Idle = 0,
    /// A request's body did not arrive within the request read timeout.
    RequestReadTimeout = 1,
    /// A response write made no progress for the write stall bound (the client stopped reading).
    ResponseWriteTimeout = 2,
    /// A frame or request the broker refuses (size, garbage, unknown API or version).
    InvalidRequest = 3,
    /// The client went away or the socket failed in the middle of a request.
    AbortedRequest = 4,
}

pub const CLOSE_REASONS: [(CloseReason, &str); 5] = [
    (CloseReason::Idle, "idle"),
    (CloseReason::RequestReadTimeout, "request_read_timeout"),
    (CloseReason::ResponseWriteTimeout, "response_write_timeout"),
    (CloseReason::InvalidRequest, "invalid_request"),
    (CloseReason::AbortedRequest, "aborted_request"),
];

impl CloseReason {
    /// The `reason` label (also used in log lines).
    pub fn label(self) -> &'static str {
        CLOSE_REASONS[self as usize].1
    }
}

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
    /// Bytes of requests in flight held against the shard's request memory budget: frames being
    /// read or handled, responses until written. Set under the budget's lock, possibly by the
    /// shard that frees a produced frame's last slice.
    pub request_memory_bytes: Gauge,
    /// The shard's request memory budget (queued.max.request.bytes / shards).
    pub request_memory_budget_bytes: Gauge,
    /// Request reads that waited for the budget.
    pub request_reads_throttled: Counter,
    /// Connections the broker closed, per [`CloseReason`].
    pub connections_closed: [Counter; CLOSE_REASONS.len()],
    /// Partitions this shard has open.
    pub partitions: Gauge,
    /// Bytes held by this shard's batch cache.
    pub cache_bytes: Gauge,
    /// Time from a request read to its response written, per API key.
    pub request_time: RequestTimes,
    /// The shard's segment descriptor cache (`files`), copied from it periodically.
    pub segment_files: SegmentFileGauges,
}

/// Copies of the shard's [`crate::files::FileStats`]; the counts only go up.
#[derive(Debug, Default)]
pub struct SegmentFileGauges {
    pub open: Gauge,
    pub budget: Gauge,
    pub hits: Gauge,
    pub opens: Gauge,
    pub evictions: Gauge,
    pub fetch_deferrals: Gauge,
    pub exhausted: Gauge,
}

impl SegmentFileGauges {
    pub fn record(&self, stats: crate::files::FileStats) {
        self.open.set(stats.open as u64);
        self.budget.set(stats.budget as u64);
        self.hits.set(stats.hits);
        self.opens.set(stats.opens);
        self.evictions.set(stats.evictions);
        self.fetch_deferrals.set(stats.fetch_deferrals);
        self.exhausted.set(stats.exhausted);
    }
}

/// The segment descriptor cache's series.
const SEGMENT_FILE_SERIES: [Series; 7] = [
    ("fjord_segment_files_open", "gauge", "Segment file descriptors the shard holds open.", |m| m.segment_files.open.get()),
    ("fjord_segment_files_budget", "gauge", "The shard's budget of open segment file descriptors.", |m| {
        m.segment_files.budget.get()
    }),
    ("fjord_segment_file_hits_total", "counter", "Segment file uses that found the descriptor open.", |m| {
        m.segment_files.hits.get()
    }),
    ("fjord_segment_file_opens_total", "counter", "Segment file descriptors opened (first use or after eviction).", |m| {
        m.segment_files.opens.get()
    }),
    ("fjord_segment_file_evictions_total", "counter", "Idle segment file descriptors closed to stay within the budget.", |m| {
        m.segment_files.evictions.get()
    }),
    (
        "fjord_segment_file_fetch_deferrals_total",
        "counter",
        "Fetch reads that found the budget held by descriptors in use and returned no data for the partition.",
        |m| m.segment_files.fetch_deferrals.get(),
    ),
    (
        "fjord_segment_file_exhausted_total",
        "counter",
        "Opens that failed for want of descriptors in the process or system (EMFILE/ENFILE).",
        |m| m.segment_files.exhausted.get(),
    ),
];

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
    /// The `api` label of each API key's request times (the key itself where unnamed).
    api_names: Vec<String>,
}

impl Metrics {
    pub fn new(shard_count: usize) -> Metrics {
        Metrics { shards: (0..shard_count).map(|_| ShardMetrics::default()).collect(), api_names: Vec::new() }
    }

    /// Names the APIs in the request-time series (`api_names[key]`, Kafka's request names).
    pub fn with_api_names(mut self, api_names: Vec<String>) -> Metrics {
        self.api_names = api_names;
        self
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
        for (name, kind, help, read) in simple.into_iter().chain(SEGMENT_FILE_SERIES) {
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
        self.render_connections(&mut out);
        self.render_request_times(&mut out);
        out
    }

    /// Request memory (issue 22's budget) and connection closes by reason.
    fn render_connections(&self, out: &mut String) {
        let series: [Series; 3] = [
            (
                "fjord_request_memory_bytes",
                "gauge",
                "Bytes of requests in flight (frames being read or handled, responses until written) held against the shard's budget.",
                |m| m.request_memory_bytes.get(),
            ),
            (
                "fjord_request_memory_budget_bytes",
                "gauge",
                "The shard's budget for requests in flight (queued.max.request.bytes / shards).",
                |m| m.request_memory_budget_bytes.get(),
            ),
            (
                "fjord_request_reads_throttled_total",
                "counter",
                "Request reads that waited for the shard's request memory budget (the socket was not read meanwhile).",
                |m| m.request_reads_throttled.get(),
            ),
        ];
        for (name, kind, help, read) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (shard, metrics) in self.shards.iter().enumerate() {
                let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", read(metrics));
            }
        }
        let name = "fjord_connections_closed_total";
        let _ = writeln!(out, "# HELP {name} Connections the broker closed, by reason.\n# TYPE {name} counter");
        for (shard, metrics) in self.shards.iter().enumerate() {
            for (reason, label) in CLOSE_REASONS {
                let _ = writeln!(
                    out,
                    "{name}{{shard=\"{shard}\",reason=\"{label}\"}} {}",
                    metrics.connections_closed[reason as usize].get()
                );
            }
        }
    }

    fn render_request_times(&self, out: &mut String) {
        let name = "fjord_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from a request read off the socket to its response written, per API.\n# TYPE {name} histogram"
        );
        for (shard, metrics) in self.shards.iter().enumerate() {
            for (key, histogram) in metrics.request_time.0.iter().enumerate() {
                // One read of the buckets, so `_count` equals the `+Inf` bucket even while the
                // shard keeps observing.
                let cumulative = histogram.cumulative();
                let count = cumulative[cumulative.len() - 1];
                if count == 0 {
                    continue;
                }
                let api = self.api_names.get(key).cloned().unwrap_or_else(|| key.to_string());
                let labels = format!("shard=\"{shard}\",api=\"{api}\"");
                for (bound, total) in REQUEST_TIME_BUCKETS_US.iter().zip(&cumulative) {
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{}\"}} {total}", *bound as f64 / 1e6);
                }
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
                let _ = writeln!(out, "{name}_sum{{{labels}}} {}", histogram.sum_us.get() as f64 / 1e6);
                let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_labels_every_shard_and_cause() {
        let metrics = Metrics::new(2).with_api_names(vec!["Produce".into(), "Fetch".into()]);
        metrics.shard(1).request_time.api(0).observe(std::time::Duration::from_micros(700));
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
                let name = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix).filter(|base| declared.contains(*base)))
                    .unwrap_or(name);
                assert!(declared.contains(name), "{name} sampled before its # TYPE");
            }
        }
    }

    #[test]
    fn request_times_render_as_cumulative_prometheus_histograms() {
        let metrics = Metrics::new(1).with_api_names(vec!["Produce".into()]);
        let produce = metrics.shard(0).request_time.api(0);
        for us in [50, 100, 101, 900, 40_000_000] {
            produce.observe(std::time::Duration::from_micros(us));
        }
        metrics.shard(0).request_time.api(3).observe(std::time::Duration::from_millis(2));
        let text = metrics.render();
        let series = "fjord_request_duration_seconds";
        // A bound counts observations at or below it; the bounds are seconds.
        assert!(text.contains(&format!("{series}_bucket{{shard=\"0\",api=\"Produce\",le=\"0.0001\"}} 2\n")), "{text}");
        assert!(text.contains(&format!("{series}_bucket{{shard=\"0\",api=\"Produce\",le=\"0.00025\"}} 3\n")), "{text}");
        assert!(text.contains(&format!("{series}_bucket{{shard=\"0\",api=\"Produce\",le=\"0.001\"}} 4\n")), "{text}");
        assert!(text.contains(&format!("{series}_bucket{{shard=\"0\",api=\"Produce\",le=\"30\"}} 4\n")), "{text}");
        assert!(text.contains(&format!("{series}_bucket{{shard=\"0\",api=\"Produce\",le=\"+Inf\"}} 5\n")), "{text}");
        assert!(text.contains(&format!("{series}_count{{shard=\"0\",api=\"Produce\"}} 5\n")), "{text}");
        assert!(text.contains(&format!("{series}_sum{{shard=\"0\",api=\"Produce\"}} 40.001151\n")), "{text}");
        // An API without a name is labelled with its key; APIs never answered are left out.
        assert!(text.contains(&format!("{series}_count{{shard=\"0\",api=\"3\"}} 1\n")), "{text}");
        assert!(!text.contains("api=\"1\""), "{text}");
        // Keys past the table share its last histogram instead of indexing out of it.
        metrics.shard(0).request_time.api(i16::MAX).observe(std::time::Duration::from_millis(1));
        assert_eq!(metrics.shard(0).request_time.api((API_KEYS_TIMED - 1) as i16).cumulative().last(), Some(&1));
    }

    #[test]
    fn request_memory_and_connection_closes_render_per_shard_and_reason() {
        let metrics = Metrics::new(2);
        metrics.shard(1).request_memory_bytes.set(4096);
        metrics.shard(1).request_memory_budget_bytes.set(1 << 20);
        metrics.shard(0).request_reads_throttled.add(3);
        metrics.shard(1).connections_closed[CloseReason::RequestReadTimeout as usize].add(7);
        let text = metrics.render();
        assert!(text.contains("# TYPE fjord_request_memory_bytes gauge\n"), "{text}");
        assert!(text.contains("fjord_request_memory_bytes{shard=\"1\"} 4096\n"), "{text}");
        assert!(text.contains("fjord_request_memory_budget_bytes{shard=\"1\"} 1048576\n"), "{text}");
        assert!(text.contains("fjord_request_reads_throttled_total{shard=\"0\"} 3\n"), "{text}");
        assert!(text.contains("fjord_connections_closed_total{shard=\"1\",reason=\"request_read_timeout\"} 7\n"), "{text}");
        assert!(text.contains("fjord_connections_closed_total{shard=\"0\",reason=\"idle\"} 0\n"), "{text}");
        for (reason, label) in CLOSE_REASONS {
            assert_eq!(reason.label(), label);
        }
    }
}
