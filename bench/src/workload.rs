//! Workload parameters: a TOML file in the spirit of the OpenMessaging Benchmark's workload files,
//! then command-line flags on top. Every field has a default, so a file names only what it changes.

use std::path::Path;

pub use fjord_client::records::CompressionCodec;
use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};

/// The smallest record value: the first 8 bytes carry the send timestamp.
pub const RECORD_SIZE_BYTES_MIN: usize = 8;
pub const RECORD_SIZE_BYTES_MAX: usize = 16 << 20;
pub const BATCH_RECORDS_MAX: u32 = 1 << 20;
pub const WORKERS_MAX: u32 = 1024;
pub const MAX_INFLIGHT_MAX: u32 = 1024;
pub const DURATION_SECONDS_MAX: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Producers only.
    Produce,
    /// Consumers only, catching up from the earliest offset of an existing topic.
    Consume,
    /// Producers plus consumers tailing from the end: end-to-end latency.
    E2e,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum KeyDistribution {
    /// No keys; batches go to the producer's partitions in turn.
    None,
    /// Random keys; each batch goes to a random partition of the producer.
    Random,
    /// Keys counting up; batches go to the producer's partitions in turn.
    RoundRobin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Acks {
    #[serde(rename = "0")]
    #[value(name = "0")]
    None,
    #[serde(rename = "1")]
    #[value(name = "1")]
    Leader,
    #[serde(rename = "all")]
    #[value(name = "all")]
    All,
}

impl Acks {
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    pub mode: Mode,
    pub topic: String,
    /// Partitions of the topic when the bench creates it; an existing topic keeps its own count.
    pub partitions: u32,
    pub replication_factor: i16,
    pub producers: u32,
    pub consumers: u32,
    /// Bytes of each record's value (the payload).
    pub record_size_bytes: usize,
    pub key_distribution: KeyDistribution,
    pub acks: Acks,
    pub compression: CompressionCodec,
    /// Records per batch; 0 derives it from `batch_size_bytes`.
    pub batch_records: u32,
    /// Payload bytes per batch, used when `batch_records` is 0.
    pub batch_size_bytes: usize,
    /// Open loop only: a batch waits at most this long for its records, so slow rates make small
    /// batches, as a client's linger.ms does.
    pub linger_ms: u64,
    /// Records per second over all producers; 0 sends as fast as acknowledgements allow (closed loop).
    pub target_rate_records_per_second: u64,
    pub warmup_seconds: u64,
    pub duration_seconds: u64,
    /// Produce requests in flight per connection.
    pub max_inflight: u32,
    /// Consume mode: produce (unmeasured) until the topic holds about this many payload bytes.
    pub prefill_bytes: u64,
    pub fetch_max_bytes: i32,
    pub fetch_partition_max_bytes: i32,
    pub fetch_max_wait_ms: i32,
}

impl Default for Workload {
    fn default() -> Workload {
        Workload {
            name: "custom".to_string(),
            mode: Mode::Produce,
            topic: "fjord-bench".to_string(),
            partitions: 8,
            replication_factor: 1,
            producers: 1,
            consumers: 1,
            record_size_bytes: 1024,
            key_distribution: KeyDistribution::None,
            acks: Acks::Leader,
            compression: CompressionCodec::None,
            batch_records: 0,
            batch_size_bytes: 64 * 1024,
            linger_ms: 5,
            target_rate_records_per_second: 0,
            warmup_seconds: 5,
            duration_seconds: 60,
            max_inflight: 5,
            prefill_bytes: 0,
            fetch_max_bytes: 32 << 20,
            fetch_partition_max_bytes: 4 << 20,
            fetch_max_wait_ms: 500,
        }
    }
}

impl Workload {
    pub fn from_toml(text: &str) -> Result<Workload> {
        toml::from_str(text).map_err(|e| BenchError::Workload(e.to_string()))
    }

    pub fn load(path: &Path) -> Result<Workload> {
        let text = std::fs::read_to_string(path).map_err(|e| BenchError::io(format!("reading {}", path.display()), e))?;
        let mut workload = Workload::from_toml(&text)?;
        if workload.name == Workload::default().name {
            if let Some(stem) = path.file_stem() {
                workload.name = stem.to_string_lossy().into_owned();
            }
        }
        Ok(workload)
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |what: String| Err(BenchError::Workload(what));
        if self.topic.is_empty() || self.topic.len() > 249 {
            return fail(format!("topic name {:?} must have 1..=249 characters", self.topic));
        }
        if self.partitions == 0 || self.partitions > 100_000 {
            return fail(format!("partitions {} must be in 1..=100000", self.partitions));
        }
        if !(RECORD_SIZE_BYTES_MIN..=RECORD_SIZE_BYTES_MAX).contains(&self.record_size_bytes) {
            return fail(format!(
                "record_size_bytes {} must be in {RECORD_SIZE_BYTES_MIN}..={RECORD_SIZE_BYTES_MAX}",
                self.record_size_bytes
            ));
        }
        if self.producers > WORKERS_MAX || self.consumers > WORKERS_MAX {
            return fail(format!("at most {WORKERS_MAX} producers and consumers"));
        }
        let needs_producers = self.mode != Mode::Consume || self.prefill_bytes > 0;
        if needs_producers && self.producers == 0 {
            return fail(format!("mode {:?} needs at least one producer", self.mode));
        }
        if self.mode != Mode::Produce && self.consumers == 0 {
            return fail(format!("mode {:?} needs at least one consumer", self.mode));
        }
        if self.batch_records > BATCH_RECORDS_MAX || (self.batch_records == 0 && self.batch_size_bytes == 0) {
            return fail(format!("batch_records must be in 1..={BATCH_RECORDS_MAX}, or batch_size_bytes above 0"));
        }
        if self.max_inflight == 0 || self.max_inflight > MAX_INFLIGHT_MAX {
            return fail(format!("max_inflight {} must be in 1..={MAX_INFLIGHT_MAX}", self.max_inflight));
        }
        if self.duration_seconds == 0 || self.duration_seconds + self.warmup_seconds > DURATION_SECONDS_MAX {
            return fail("duration_seconds must be above 0 and the run at most a week".to_string());
        }
        if self.fetch_max_bytes <= 0 || self.fetch_partition_max_bytes <= 0 || self.fetch_max_wait_ms < 0 {
            return fail("fetch sizes must be positive and fetch_max_wait_ms not negative".to_string());
        }
        Ok(())
    }

    /// Records per batch from the workload alone (before linger shortens open-loop batches).
    pub fn batch_records_nominal(&self) -> u32 {
        if self.batch_records > 0 {
            return self.batch_records;
        }
        ((self.batch_size_bytes / self.record_size_bytes).max(1) as u64).min(BATCH_RECORDS_MAX as u64) as u32
    }

    /// Records per batch for a producer sending `rate_records_per_second` (0 = closed loop): an
    /// open-loop batch holds at most what arrives within one linger.
    pub fn batch_records_for_rate(&self, rate_records_per_second: f64) -> u32 {
        let nominal = self.batch_records_nominal();
        if rate_records_per_second <= 0.0 {
            return nominal;
        }
        let within_linger = (rate_records_per_second * self.linger_ms.max(1) as f64 / 1000.0).floor() as u32;
        nominal.min(within_linger.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_file_overrides_defaults_and_rejects_unknown_fields() {
        let workload = Workload::from_toml(
            "mode = \"e2e\"\nacks = \"all\"\ncompression = \"zstd\"\nkey_distribution = \"round-robin\"\npartitions = 4\n",
        )
        .unwrap();
        assert_eq!(workload.mode, Mode::E2e);
        assert_eq!(workload.acks, Acks::All);
        assert_eq!(workload.acks.wire(), -1);
        assert_eq!(workload.compression, CompressionCodec::Zstd);
        assert_eq!(workload.key_distribution, KeyDistribution::RoundRobin);
        assert_eq!(workload.partitions, 4);
        assert_eq!(workload.record_size_bytes, 1024);
        assert!(Workload::from_toml("partitons = 4\n").is_err());
    }

    #[test]
    fn linger_shortens_open_loop_batches() {
        let workload = Workload { batch_size_bytes: 64 * 1024, record_size_bytes: 1024, linger_ms: 5, ..Workload::default() };
        assert_eq!(workload.batch_records_nominal(), 64);
        assert_eq!(workload.batch_records_for_rate(0.0), 64);
        // 2000 records/s fills 10 records in 5 ms.
        assert_eq!(workload.batch_records_for_rate(2000.0), 10);
        assert_eq!(workload.batch_records_for_rate(1.0), 1);
        assert_eq!(workload.batch_records_for_rate(1e9), 64);
    }

    #[test]
    fn every_shipped_workload_parses_and_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let workload = Workload::load(&path).unwrap();
                workload.validate().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                count += 1;
            }
        }
        assert!(count >= 5, "expected the named workloads in {}", dir.display());
    }
}
