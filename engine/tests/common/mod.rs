//! Helpers shared by the engine's integration tests.
//!
//! - [`run`]: one glommio executor per test (1 MiB of io memory: RLIMIT_MEMLOCK is 8 MiB and tests
//!   run in parallel threads); a panic inside it is re-raised on the test thread with its message.
//! - [`temp_dir`]: on the ext4 disk under the cargo target dir; segments use O_DIRECT, which tmpfs
//!   refuses.
//! - [`open_partition`], [`open_in_temp_dir`], [`open_and_append`]: the test partition, opened
//!   empty or filled with produced batches; [`crash_copy`]: its files as a crash leaves them.
//! - [`BatchSpec`]: uncompressed RecordBatch v2 bytes built by hand as a producer would send them,
//!   and [`stored`], the same bytes after the broker assigns the base offset and leader epoch.
//! - [`Model`]: the log as a plain list of batches, and checks of `Partition::read` against it.
//!
//! Test files use different subsets of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use fjord_engine::cache::CacheBudget;
use fjord_engine::error::LogError;
use fjord_engine::partition::{Acks, Chunk, Isolation, Partition, PartitionSettings, ReadResult};
use fjord_engine::topic_config::{resolve_topic_config, BrokerConfigs, TopicConfig};

pub const TOPIC: &str = "orders";
pub const PARTITION: i32 = 0;
pub const TOPIC_ID: [u8; 16] = *b"fjord-test-topic";
pub const LEADER_EPOCH: i32 = 7;
/// Large enough that the periodic acks=1 fsync never runs during a test: keeps runs deterministic.
pub const FLUSH_INTERVAL_MS: u64 = 600_000;

const BATCH_HEADER_BYTES: usize = 61;

/// Runs `body` on a fresh single-threaded glommio executor and returns its output.
pub fn run<T, Fut>(body: impl FnOnce() -> Fut + Send + 'static) -> T
where
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    fjord_engine::rt::run_local(body)
}

/// A temporary directory on the disk that holds the cargo target dir (ext4, O_DIRECT capable).
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("fjord-engine-test-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir under CARGO_TARGET_TMPDIR")
}

/// Kafka's topic defaults with a small segment size, so that tests roll segments.
pub fn topic_config(segment_bytes: u64) -> TopicConfig {
    let mut config = resolve_topic_config(&BrokerConfigs::default(), &BTreeMap::new());
    config.segment_bytes = segment_bytes;
    config
}

pub fn settings() -> PartitionSettings {
    PartitionSettings { flush_interval_ms: FLUSH_INTERVAL_MS }
}

/// Opens (or recovers) the test partition in `dir`.
pub async fn open_partition(dir: &Path, config: TopicConfig, budget: Rc<CacheBudget>) -> Rc<Partition> {
    open_partition_with(dir, config, settings(), budget).await
}

/// [`open_partition`] with other partition settings than the tests' [`settings`].
pub async fn open_partition_with(
    dir: &Path,
    config: TopicConfig,
    settings: PartitionSettings,
    budget: Rc<CacheBudget>,
) -> Rc<Partition> {
    Partition::open(dir.to_path_buf(), Rc::from(TOPIC), PARTITION, TOPIC_ID, LEADER_EPOCH, config, settings, budget)
        .await
        .expect("partition opens")
}

/// A new temporary directory and the test partition opened in it; the directory lives as long as
/// the returned handle.
pub async fn open_in_temp_dir(config: TopicConfig, budget: Rc<CacheBudget>) -> (tempfile::TempDir, Rc<Partition>) {
    let dir = temp_dir();
    let partition = open_partition(dir.path(), config, budget).await;
    (dir, partition)
}

/// Opens the test partition in `dir` (1 MiB of cache) and appends `batches`, one produce each
/// with `acks`, checking every base offset against the model (see [`append_checked`]); returns
/// the open partition and its model.
pub async fn open_and_append(
    dir: &Path,
    config: TopicConfig,
    batches: impl IntoIterator<Item = BatchSpec>,
    acks: Acks,
) -> (Rc<Partition>, Model) {
    let partition = open_partition(dir, config, CacheBudget::new(1 << 20)).await;
    let mut model = Model::default();
    for batch in batches {
        append_checked(&partition, &mut model, batch.encode(), acks).await;
    }
    (partition, model)
}

// ---------------------------------------------------------------------------------------------
// Building batches

/// One record of a hand-built batch.
#[derive(Debug, Clone)]
pub struct RecordSpec {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub timestamp_delta_ms: i64,
}

/// An uncompressed RecordBatch v2 as a producer sends it: base offset 0, leader epoch -1,
/// no producer id.
#[derive(Debug, Clone)]
pub struct BatchSpec {
    pub base_timestamp_ms: i64,
    pub records: Vec<RecordSpec>,
}

impl BatchSpec {
    /// `record_count` records of `value_bytes` bytes each; `seed` makes the contents unique so
    /// a read that returns the wrong batch cannot compare equal by accident.
    pub fn simple(record_count: usize, value_bytes: usize, seed: u64, base_timestamp_ms: i64) -> BatchSpec {
        let records = (0..record_count)
            .map(|index| RecordSpec {
                key: if index % 2 == 0 { Some(format!("k{seed}-{index}").into_bytes()) } else { None },
                value: pattern(seed.wrapping_mul(1_000_003).wrapping_add(index as u64), value_bytes),
                timestamp_delta_ms: index as i64,
            })
            .collect();
        BatchSpec { base_timestamp_ms, records }
    }

    pub fn max_timestamp_ms(&self) -> i64 {
        self.base_timestamp_ms + self.records.iter().map(|record| record.timestamp_delta_ms).max().unwrap_or(0)
    }

    pub fn encode(&self) -> Vec<u8> {
        assert!(!self.records.is_empty(), "a produced batch has at least one record");
        let mut records = Vec::new();
        for (index, record) in self.records.iter().enumerate() {
            let mut body = vec![0u8]; // record attributes
            put_varint(&mut body, record.timestamp_delta_ms);
            put_varint(&mut body, index as i64); // offset delta
            match &record.key {
                Some(key) => {
                    put_varint(&mut body, key.len() as i64);
                    body.extend_from_slice(key);
                }
                None => put_varint(&mut body, -1),
            }
            put_varint(&mut body, record.value.len() as i64);
            body.extend_from_slice(&record.value);
            put_varint(&mut body, 0); // no headers
            put_varint(&mut records, body.len() as i64);
            records.extend(body);
        }
        let count = self.records.len() as i32;
        let mut batch = Vec::with_capacity(BATCH_HEADER_BYTES + records.len());
        batch.extend(0i64.to_be_bytes()); // base offset: the broker assigns it
        batch.extend(((BATCH_HEADER_BYTES - 12 + records.len()) as i32).to_be_bytes());
        batch.extend((-1i32).to_be_bytes()); // partition leader epoch: the broker assigns it
        batch.push(2); // magic
        batch.extend(0u32.to_be_bytes()); // crc, filled below
        batch.extend(0i16.to_be_bytes()); // attributes: no compression, CreateTime
        batch.extend((count - 1).to_be_bytes());
        batch.extend(self.base_timestamp_ms.to_be_bytes());
        batch.extend(self.max_timestamp_ms().to_be_bytes());
        batch.extend((-1i64).to_be_bytes()); // producer id
        batch.extend((-1i16).to_be_bytes()); // producer epoch
        batch.extend((-1i32).to_be_bytes()); // base sequence
        batch.extend(count.to_be_bytes());
        batch.extend(records);
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }
}

/// Deterministic, seed-dependent filler bytes.
pub fn pattern(seed: u64, length: usize) -> Vec<u8> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// The bytes a produced batch has once stored: base offset and leader epoch written in place
/// (the CRC does not cover them, so it stays valid).
pub fn stored(produced: &[u8], base_offset: i64, leader_epoch: i32) -> Vec<u8> {
    let mut bytes = produced.to_vec();
    bytes[0..8].copy_from_slice(&base_offset.to_be_bytes());
    bytes[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    bytes
}

pub fn record_count(batch: &[u8]) -> i64 {
    i32::from_be_bytes(batch[57..61].try_into().unwrap()) as i64
}

// ---------------------------------------------------------------------------------------------
// Reading back

/// A whole batch found in read bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub bytes: Vec<u8>,
}

/// Concatenates a read's chunks (file slices are read with pread, as sendfile would send them).
pub fn result_bytes(result: &ReadResult) -> Vec<u8> {
    let mut out = Vec::with_capacity(result.bytes());
    for chunk in &result.chunks {
        match chunk {
            Chunk::Memory(bytes) => out.extend_from_slice(bytes),
            Chunk::File(slice) => {
                let mut buffer = vec![0u8; slice.length];
                slice.file.read_exact_at(&mut buffer, slice.position).expect("file slice lies inside its file");
                out.extend(buffer);
            }
        }
    }
    out
}

/// Splits read bytes into whole batches; returns them and the length of the partial batch at the
/// end (a file slice may be cut by max_bytes in the middle of a batch, as Kafka's are).
pub fn whole_batches(bytes: &[u8]) -> (Vec<FoundBatch>, usize) {
    let mut found = Vec::new();
    let mut position = 0usize;
    while position + 12 <= bytes.len() {
        let length = i32::from_be_bytes(bytes[position + 8..position + 12].try_into().unwrap());
        assert!(length >= (BATCH_HEADER_BYTES - 12) as i32, "batch length {length} at byte {position} of a read");
        let size = length as usize + 12;
        if position + size > bytes.len() {
            break;
        }
        let batch = &bytes[position..position + size];
        let base_offset = i64::from_be_bytes(batch[0..8].try_into().unwrap());
        let last_offset_delta = i32::from_be_bytes(batch[23..27].try_into().unwrap()) as i64;
        found.push(FoundBatch { base_offset, last_offset: base_offset + last_offset_delta, bytes: batch.to_vec() });
        position += size;
    }
    (found, bytes.len() - position)
}

pub fn chunk_kinds(result: &ReadResult) -> Vec<&'static str> {
    result
        .chunks
        .iter()
        .map(|chunk| match chunk {
            Chunk::Memory(_) => "memory",
            Chunk::File(_) => "file",
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The model

#[derive(Debug, Clone)]
pub struct ModelBatch {
    pub base_offset: i64,
    pub record_count: i64,
    /// Exactly the bytes the log must hold: the produced batch with offset and epoch assigned.
    pub bytes: Vec<u8>,
    pub max_timestamp_ms: i64,
    /// The timestamp of each record, in offset order.
    pub record_timestamps_ms: Vec<i64>,
}

impl ModelBatch {
    pub fn new(base_offset: i64, bytes: Vec<u8>) -> ModelBatch {
        let record_timestamps_ms = record_timestamps(&bytes);
        ModelBatch {
            base_offset,
            record_count: record_count(&bytes),
            max_timestamp_ms: i64::from_be_bytes(bytes[35..43].try_into().unwrap()),
            record_timestamps_ms,
            bytes,
        }
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.record_count - 1
    }
    pub fn next_offset(&self) -> i64 {
        self.base_offset + self.record_count
    }
}

/// Each record's timestamp, decoded independently of the engine: baseTimestamp plus the record's
/// timestampDelta, or maxTimestamp for every record of a LogAppendTime batch.
pub fn record_timestamps(batch: &[u8]) -> Vec<i64> {
    let attributes = i16::from_be_bytes(batch[21..23].try_into().unwrap());
    let base_timestamp_ms = i64::from_be_bytes(batch[27..35].try_into().unwrap());
    let max_timestamp_ms = i64::from_be_bytes(batch[35..43].try_into().unwrap());
    let mut timestamps = Vec::new();
    let mut position = BATCH_HEADER_BYTES;
    for _ in 0..record_count(batch) {
        let length = get_varint(batch, &mut position) as usize;
        let mut at = position + 1; // record attributes
        let delta = get_varint(batch, &mut at);
        timestamps.push(if attributes & 0x08 != 0 { max_timestamp_ms } else { base_timestamp_ms + delta });
        position += length;
    }
    timestamps
}

fn get_varint(bytes: &[u8], position: &mut usize) -> i64 {
    let mut zigzag = 0u64;
    let mut shift = 0;
    loop {
        let byte = bytes[*position];
        *position += 1;
        zigzag |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return (zigzag >> 1) as i64 ^ -((zigzag & 1) as i64);
        }
        shift += 7;
    }
}

/// The log as a list of batches: what every read, reopen and truncation is checked against.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub batches: Vec<ModelBatch>,
    /// Where the next append goes while no batch is left (a log started over at its log start).
    pub empty_end_offset: i64,
}

impl Model {
    pub fn end_offset(&self) -> i64 {
        self.batches.last().map_or(self.empty_end_offset, ModelBatch::next_offset)
    }

    /// Appends produced bytes holding one or more batches; returns the base offset they get.
    pub fn append(&mut self, produced: &[u8]) -> i64 {
        let base_offset = self.end_offset();
        let mut next = base_offset;
        let mut position = 0;
        while position < produced.len() {
            let size = i32::from_be_bytes(produced[position + 8..position + 12].try_into().unwrap()) as usize + 12;
            let batch = ModelBatch::new(next, stored(&produced[position..position + size], next, LEADER_EPOCH));
            next = batch.next_offset();
            self.batches.push(batch);
            position += size;
        }
        base_offset
    }

    /// Kafka's truncateTo (KIP-101): afterwards the log holds no offset >= `offset`, so a batch
    /// that contains `offset` goes as a whole.
    pub fn truncate_to(&mut self, offset: i64) {
        self.batches.retain(|batch| batch.last_offset() < offset);
    }

    pub fn index_of_batch_containing(&self, offset: i64) -> Option<usize> {
        let index = self.batches.partition_point(|batch| batch.last_offset() < offset);
        (index < self.batches.len() && self.batches[index].base_offset <= offset).then_some(index)
    }

    /// ListOffsets by timestamp (Kafka's `LogSegment.findOffsetByTimestamp`): the first record,
    /// in offset order, whose timestamp is at least `target`, as (offset, timestamp).
    pub fn offset_for_timestamp(&self, target: i64) -> Option<(i64, i64)> {
        self.batches.iter().find_map(|batch| {
            let index = batch.record_timestamps_ms.iter().position(|timestamp| *timestamp >= target)?;
            Some((batch.base_offset + index as i64, batch.record_timestamps_ms[index]))
        })
    }

    /// ListOffsets MAX_TIMESTAMP (KIP-734, KAFKA-16310): the first record holding the largest
    /// timestamp, as (offset, timestamp).
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        let mut best: Option<(i64, i64)> = None;
        for batch in &self.batches {
            for (index, timestamp) in batch.record_timestamps_ms.iter().enumerate() {
                if best.is_none_or(|(_, largest)| *timestamp > largest) {
                    best = Some((batch.base_offset + index as i64, *timestamp));
                }
            }
        }
        best
    }

    pub fn total_bytes(&self) -> usize {
        self.batches.iter().map(|batch| batch.bytes.len()).sum()
    }
}

/// Checks one `Partition::read` against the model:
/// - below the log start or past the log end: OFFSET_OUT_OF_RANGE; from the high watermark to the
///   log end: nothing (not yet readable, but in range, as Kafka answers consumers);
/// - otherwise whole batches, the first containing `offset` and always whole (KIP-74), each equal
///   byte for byte to the model's, contiguous, none at or past the high watermark;
/// - a partial batch at the end (max_bytes cut) is a prefix of the next batch;
/// - no more than max(max_bytes, first batch) bytes.
pub fn check_read(partition: &Partition, model: &Model, offset: i64, max_bytes: usize) -> Result<(), String> {
    let high_watermark = partition.high_watermark();
    let log_end_offset = partition.log_end_offset();
    let outcome = partition.read(offset, max_bytes, Isolation::ReadUncommitted);
    if offset < 0 || offset > log_end_offset {
        return match outcome {
            Err(error @ LogError::OffsetOutOfRange { .. }) if error.kafka_error_code() == 1 => Ok(()),
            other => {
                Err(format!("read at {offset} past the log end {log_end_offset}: expected OFFSET_OUT_OF_RANGE, got {other:?}"))
            }
        };
    }
    let result = outcome.map_err(|error| format!("read at {offset} (hw {high_watermark}) failed: {error}"))?;
    if result.high_watermark != high_watermark {
        return Err(format!("read reports high watermark {} but the partition says {high_watermark}", result.high_watermark));
    }
    if offset >= high_watermark {
        return if result.chunks.iter().all(Chunk::is_empty) {
            Ok(())
        } else {
            Err(format!("read at {offset}, at or past the high watermark {high_watermark}, returned {} bytes", result.bytes()))
        };
    }
    let bytes = result_bytes(&result);
    let (found, partial_bytes) = whole_batches(&bytes);
    let Some(first) = found.first() else {
        return Err(format!(
            "read at {offset} (hw {high_watermark}, max_bytes {max_bytes}) returned no whole batch ({} bytes)",
            bytes.len()
        ));
    };
    let Some(first_index) = model.index_of_batch_containing(offset) else {
        return Err(format!("model has no batch containing {offset} below hw {high_watermark}"));
    };
    if !(first.base_offset <= offset && offset <= first.last_offset) {
        return Err(format!(
            "read at {offset} starts with batch {}..={}, which does not contain it (chunks {:?})",
            first.base_offset,
            first.last_offset,
            chunk_kinds(&result)
        ));
    }
    for (position, batch) in found.iter().enumerate() {
        let Some(expected) = model.batches.get(first_index + position) else {
            return Err(format!(
                "read at {offset} returned batch {}.. past the model's end {}",
                batch.base_offset,
                model.end_offset()
            ));
        };
        if batch.base_offset != expected.base_offset || batch.bytes != expected.bytes {
            return Err(format!(
                "read at {offset}: batch #{position} is {}..={} ({} bytes) but the model holds {}..={} ({} bytes) there; bytes equal: {} (chunks {:?})",
                batch.base_offset,
                batch.last_offset,
                batch.bytes.len(),
                expected.base_offset,
                expected.last_offset(),
                expected.bytes.len(),
                batch.bytes == expected.bytes,
                chunk_kinds(&result)
            ));
        }
        if batch.last_offset >= high_watermark {
            return Err(format!(
                "read at {offset} returned batch {}..={} at or past the high watermark {high_watermark}",
                batch.base_offset, batch.last_offset
            ));
        }
    }
    if partial_bytes > 0 {
        let tail = &bytes[bytes.len() - partial_bytes..];
        match model.batches.get(first_index + found.len()) {
            Some(next) if next.bytes.starts_with(tail) => {}
            _ => {
                return Err(format!("read at {offset} ends with {partial_bytes} bytes that are not the start of the next batch"))
            }
        }
    }
    let limit = max_bytes.max(first.bytes.len());
    if bytes.len() > limit {
        return Err(format!(
            "read at {offset} returned {} bytes, more than max_bytes {max_bytes} (first batch {})",
            bytes.len(),
            first.bytes.len()
        ));
    }
    Ok(())
}

/// Reads the whole log from offset 0 with large reads and compares it with the model.
pub fn check_whole_log(partition: &Partition, model: &Model) -> Result<(), String> {
    if partition.log_end_offset() != model.end_offset() {
        return Err(format!("log end offset {} but the model ends at {}", partition.log_end_offset(), model.end_offset()));
    }
    if partition.high_watermark() != model.end_offset() {
        return Err(format!(
            "high watermark {} but everything up to {} was acknowledged",
            partition.high_watermark(),
            model.end_offset()
        ));
    }
    let mut offset = 0;
    let mut batches_seen = 0;
    while offset < model.end_offset() {
        check_read(partition, model, offset, 1 << 20)?;
        let (found, _) = whole_batches(&result_bytes(
            &partition.read(offset, 1 << 20, Isolation::ReadUncommitted).map_err(|e| e.to_string())?,
        ));
        batches_seen += found.len();
        offset = found.last().expect("check_read saw a whole batch").last_offset + 1;
    }
    if batches_seen != model.batches.len() {
        return Err(format!("whole-log read saw {batches_seen} batches, the model holds {}", model.batches.len()));
    }
    check_read(partition, model, model.end_offset(), 1 << 20)?;
    check_read(partition, model, model.end_offset() + 1, 1 << 20)
}

/// ListOffsets against the model: the first record whose timestamp is at least each of
/// `targets`, and the first record holding the largest timestamp (MAX_TIMESTAMP, KIP-734).
pub fn check_timestamp_lookups_at(partition: &Partition, model: &Model, targets: impl IntoIterator<Item = i64>) {
    for target in targets {
        assert_eq!(
            partition.offset_for_timestamp(target).expect("timestamp lookup"),
            model.offset_for_timestamp(target),
            "offset_for_timestamp({target}): the first record with a timestamp >= {target}"
        );
    }
    assert_eq!(
        partition.max_timestamp().expect("max timestamp lookup"),
        model.max_timestamp(),
        "max_timestamp: the first record holding the largest timestamp"
    );
}

/// Reads at every batch's base, middle and last offset with max_bytes 1: each read must return
/// exactly that batch (index and offset lookups after recovery).
pub fn check_reads_at_every_batch(partition: &Partition, model: &Model) -> Result<(), String> {
    for batch in &model.batches {
        for offset in [batch.base_offset, batch.base_offset + batch.record_count / 2, batch.last_offset()] {
            check_read(partition, model, offset, 1)?;
            let (found, _) =
                whole_batches(&result_bytes(&partition.read(offset, 1, Isolation::ReadUncommitted).map_err(|e| e.to_string())?));
            if found.len() != 1 {
                return Err(format!(
                    "read at {offset} with max_bytes 1 returned {} whole batches, expected exactly 1",
                    found.len()
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Files

/// The `.log` files of a partition directory, by base offset.
pub fn segment_files(dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut found: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .expect("partition dir")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let stem = path.file_name()?.to_str()?.strip_suffix(".log")?;
            Some((stem.parse().ok()?, path))
        })
        .collect();
    found.sort();
    found
}

pub fn index_path(log_path: &Path) -> PathBuf {
    log_path.with_extension("index")
}

pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("file exists").len()
}

/// A copy of every file of an open partition's directory: what a process crash leaves behind
/// (no clean close, no recovery point).
pub fn crash_copy(dir: &Path) -> tempfile::TempDir {
    let crashed = temp_dir();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, crashed.path().join(path.file_name().expect("a file name"))).expect("copied");
    }
    crashed
}

/// Removes every producer-state snapshot of a partition directory, as a crash that lost them
/// would: recovery must rebuild the producers from the batch headers.
pub fn remove_producer_snapshots(dir: &Path) {
    for offset in fjord_engine::producer_state::list_snapshots(dir) {
        std::fs::remove_file(fjord_engine::producer_state::snapshot_path(dir, offset)).expect("snapshot removed");
    }
}

/// Appends `produced` and waits for the ticket; returns the assigned base offset.
pub async fn append_and_wait(partition: &Partition, produced: Vec<u8>, acks: Acks) -> i64 {
    let ticket = partition.append(Bytes::from(produced), acks).await.expect("append accepted");
    let base_offset = ticket.base_offset;
    ticket.wait().await.expect("append written");
    base_offset
}

/// Appends `produced` to both the partition (waiting for `acks`) and the model, and checks that
/// the partition assigned the base offset the model expects; returns it.
pub async fn append_checked(partition: &Partition, model: &mut Model, produced: Vec<u8>, acks: Acks) -> i64 {
    let base_offset = model.append(&produced);
    assert_eq!(append_and_wait(partition, produced, acks).await, base_offset, "base offset of the append");
    base_offset
}

/// Panics with the check's own message (tests outside proptest).
#[track_caller]
pub fn must(check: Result<(), String>) {
    if let Err(message) = check {
        panic!("{message}");
    }
}

/// Closes `partition`, opens it again from `dir` with `config` and no cache (every read comes
/// from the segment files), and checks that it holds exactly `model`, by whole-log and
/// per-batch reads, before closing it again.
pub async fn reopen_uncached_and_check(dir: &Path, partition: Rc<Partition>, config: TopicConfig, model: &Model) {
    partition.close().await.expect("clean close");
    let partition = open_partition(dir, config, CacheBudget::new(0)).await;
    must(check_whole_log(&partition, model));
    must(check_reads_at_every_batch(&partition, model));
    partition.close().await.expect("clean close");
}
