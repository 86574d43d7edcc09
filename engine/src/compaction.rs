//! Log compaction: Kafka's log cleaner for topics whose cleanup.policy includes `compact`.
//!
//! ```text
//!  log:  [seg 0][seg 1][seg 2] | [seg 3][seg 4] | [seg 5][seg 6] | [active]
//!        └─ clean (cleaned ──┘ └─ dirty ───────┘ └─ uncleanable ─┘   never touched
//!           before)            first dirty       first uncleanable offset: the active segment,
//!                              offset = the      or the first segment holding a batch younger
//!                              checkpoint        than min.compaction.lag.ms
//!
//!  1. offset map: the latest offset of every key in the dirty part (bounded memory; stops at a
//!     segment boundary when full, and that boundary ends this pass)
//!  2. every closed segment below that end, in groups whose sizes sum to at most segment.bytes
//!     (Kafka's groupSegmentsBySize), is rewritten into one `.cleaned` segment keeping a record
//!     iff it is its key's latest (and, for a tombstone, only while delete.retention.ms lasts)
//!  3. per group: fsync the `.cleaned` files → rename to `.swap` (+ fsync dir: the commit point)
//!     → swap the in-memory segment list → unlink the replaced files (+ fsync dir) → rename the
//!     `.swap` files to the final names (+ fsync dir)
//!  4. `cleaner-offset-checkpoint` (durable) moves to the end of the cleaned part
//! ```
//! Offsets never change: a rebuilt batch keeps its base offset, last offset delta and base
//! timestamp, and its surviving records keep their raw bytes (offset and timestamp deltas), so a
//! cleaned log has gaps and a read inside one gets the next surviving batch.
//!
//! Crash safety: recovery ([`recover_interrupted`], from `Log::open`) deletes `.cleaned` leftovers
//! and completes every `.swap`. A swap file is named `<base>.<end>.log.swap`: the replaced
//! segments are those with base offsets in `[base, end)`. The end is in the name rather than taken
//! from the swapped segment's last offset because a group's trailing segments can lose every batch,
//! and they must still go.
//!
//! Transactions (KIP-98): nothing at or past the last stable offset is cleaned (Kafka's cleanable
//! upper bound is min(first unstable offset, active segment base)): only whole segments below it.
//! Records of aborted transactions are removed — no read_committed consumer ever sees them, and
//! they must not shadow a committed value of the same key — so they are kept out of the offset
//! map and dropped when their batch is rewritten. Committed transactional batches are compacted
//! like any other. Control batches (markers) are kept as they are. TODO: Kafka removes a marker
//! once delete.retention.ms has passed since the pass that found its transaction's data gone
//! (KIP-534's delete horizon); markers stay here for now.
//!
//! Tombstones: Kafka (KIP-534) stamps a delete horizon into a batch when it first cleans it. Here a
//! tombstone is dropped once it lies below the clean point of an earlier pass (it has been cleaned
//! once, so every older value of its key is already gone) and its timestamp is older than
//! now − delete.retention.ms. The checkpoint also keeps the oldest retained tombstone's timestamp,
//! so a pass runs when it expires even if nothing is dirty (Kafka's tombstone-expiry cleaning).

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use ahash::AHashMap;
use bytes::Bytes;

use crate::batch::{self, BatchHeader};
use crate::error::{LogError, LogResult};
use crate::fs::write_durably;
use crate::limits::{
    BATCH_HEADER_BYTES, CLEANER_OFFSET_MAP_BYTES_MAX, CLEANER_OFFSET_MAP_ENTRY_BYTES, CLEANER_READ_BYTES, CLEANER_WRITE_BYTES,
    SEGMENT_BYTES_MAX,
};
use crate::log::{list_segments, Log};
use crate::rt;
use crate::segment::{file_name, Segment, INDEX_SUFFIX, LOG_SUFFIX};
use crate::topic_config::TopicConfig;
use crate::txn_index::AbortedTxn;

/// Kafka's name for the per-log clean point (there: one file per data directory).
pub const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
const CLEANED_SUFFIX: &str = "cleaned";
const SWAP_SUFFIX: &str = "swap";

/// Running totals of one shard's cleaner (operators' log lines; a metrics endpoint reads them
/// through `ShardStore::cleaner_stats`). Lives on one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanerStats {
    pub passes: u64,
    pub segments_cleaned: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
}

impl CleanerStats {
    pub fn add(&mut self, report: &CleanReport) {
        self.passes += 1;
        self.segments_cleaned += report.segments_before as u64;
        self.bytes_read += report.bytes_read;
        self.bytes_written += report.bytes_after;
        self.records_removed += report.records_before - report.records_after;
        self.tombstones_removed += report.tombstones_removed;
    }
}

/// The topic configs the cleaner follows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionConfig {
    /// Cleaned groups stay under this (segment.bytes).
    pub segment_bytes: u64,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
}

impl From<&TopicConfig> for CompactionConfig {
    fn from(config: &TopicConfig) -> Self {
        CompactionConfig {
            segment_bytes: config.segment_bytes,
            delete_retention_ms: config.delete_retention_ms,
            min_compaction_lag_ms: config.min_compaction_lag_ms,
            max_compaction_lag_ms: config.max_compaction_lag_ms,
            min_cleanable_dirty_ratio: config.min_cleanable_dirty_ratio,
        }
    }
}

/// What a pass needs to know of the log's transactions, taken before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanerTxns {
    /// Nothing at or past it is cleaned.
    pub last_stable_offset: i64,
    /// The aborted transactions (any order); their records are removed.
    pub aborted: Vec<AbortedTxn>,
}

impl CleanerTxns {
    /// A log without transactions.
    pub fn none() -> CleanerTxns {
        CleanerTxns { last_stable_offset: i64::MAX, aborted: Vec::new() }
    }
}

/// The aborted offset ranges of each producer, sorted, for a lookup per batch.
#[derive(Default)]
struct AbortedRanges {
    by_producer: AHashMap<i64, Vec<(i64, i64)>>,
}

impl AbortedRanges {
    fn new(aborted: &[AbortedTxn]) -> AbortedRanges {
        let mut by_producer: AHashMap<i64, Vec<(i64, i64)>> = AHashMap::new();
        for txn in aborted {
            by_producer.entry(txn.producer_id).or_default().push((txn.first_offset, txn.last_offset));
        }
        for ranges in by_producer.values_mut() {
            ranges.sort_unstable();
        }
        AbortedRanges { by_producer }
    }

    /// Whether a transactional data batch belongs to an aborted transaction of its producer (a
    /// producer's transactions do not overlap, so the last range starting at or before it decides).
    fn contains(&self, header: &BatchHeader) -> bool {
        if !header.is_transactional() || header.is_control() {
            return false;
        }
        let Some(ranges) = self.by_producer.get(&header.producer_id) else { return false };
        let after = ranges.partition_point(|(first, _)| *first <= header.base_offset);
        after > 0 && header.base_offset <= ranges[after - 1].1
    }
}

/// Where a test stops a pass, to check what recovery makes of the files left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The first group's `.cleaned` files are written and synced.
    CleanedWritten,
    /// ... renamed to `.swap` (the commit point).
    SwapRenamed,
    /// ... swapped in memory and the replaced files unlinked; the final renames not done.
    OldDeleted,
}

/// How one pass runs.
#[derive(Debug, Clone, Copy)]
pub struct CompactOptions {
    /// Run a pass over every closed segment below the first uncleanable offset, whatever the
    /// dirty ratio, the lags' triggers and the tombstones say (tests, operators' tools).
    pub force: bool,
    /// Memory for the offset map (Kafka: log.cleaner.dedupe.buffer.size).
    pub offset_map_bytes_max: usize,
    /// Test hook: stop the pass after this step of its first rewritten group.
    pub stop_after: Option<CrashPoint>,
    /// Read pace of this pass (Kafka's log.cleaner.io.max.bytes.per.second, split over the
    /// shards); `None` reads as fast as the disk allows.
    pub io_bytes_per_second: Option<u64>,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            force: false,
            offset_map_bytes_max: CLEANER_OFFSET_MAP_BYTES_MAX,
            stop_after: None,
            io_bytes_per_second: None,
        }
    }
}

/// What one pass over one log did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanReport {
    /// The dirty part cleaned: [first_dirty_offset, end_offset).
    pub first_dirty_offset: i64,
    pub end_offset: i64,
    pub dirty_ratio: f64,
    /// Closed segments read, and the segments that replaced them (unchanged single segments
    /// count on both sides).
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Bytes read, offset map pass included.
    pub bytes_read: u64,
    pub records_before: u64,
    pub records_after: u64,
    pub tombstones_removed: u64,
    pub duration_ms: u64,
    /// False when the pass stopped early (a concurrent retention or truncation changed the
    /// segments, the partition is closing, or a test hook): the checkpoint did not move.
    pub completed: bool,
}

impl CleanReport {
    /// Throughput of the log rewritten, in MB/s (bytes read over the pass's duration).
    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes_read as f64 / 1e6 / (self.duration_ms.max(1) as f64 / 1e3)
    }
}

/// The durable clean point of one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checkpoint {
    /// Every offset below has been through at least one pass.
    clean_offset: i64,
    /// Timestamp of the oldest tombstone the last pass kept; -1 if none.
    oldest_tombstone_ms: i64,
}

impl Checkpoint {
    fn read(dir: &Path) -> Option<Checkpoint> {
        let text = std::fs::read_to_string(dir.join(CHECKPOINT_FILE)).ok()?;
        let mut parts = text.split_whitespace();
        let clean_offset = parts.next()?.parse().ok()?;
        let oldest_tombstone_ms = parts.next().and_then(|part| part.parse().ok()).unwrap_or(-1);
        Some(Checkpoint { clean_offset, oldest_tombstone_ms })
    }

    /// Writes the checkpoint durably, off the shard.
    async fn write(&self, dir: &Path) -> LogResult<()> {
        let path = dir.join(CHECKPOINT_FILE);
        let contents = format!("{} {}\n", self.clean_offset, self.oldest_tombstone_ms);
        let written = path.clone();
        crate::fs::off_shard(move || write_durably(&written, contents.as_bytes()))
            .await
            .map_err(|error| LogError::io(&path, error))
    }
}

/// The clean point recorded for the log in `dir` (tests and operators): offsets below it have
/// been compacted at least once.
pub fn clean_offset(dir: &Path) -> Option<i64> {
    Checkpoint::read(dir).map(|checkpoint| checkpoint.clean_offset)
}

/// Latest offset of each key of the dirty part. Keys are copied (not slices of a batch), and
/// their bytes plus a fixed overhead per entry are counted against a budget.
#[derive(Default)]
struct OffsetMap {
    latest: AHashMap<Bytes, i64>,
    bytes: usize,
}

impl OffsetMap {
    fn insert(&mut self, key: &[u8], offset: i64) {
        if let Some(latest) = self.latest.get_mut(key) {
            *latest = (*latest).max(offset);
            return;
        }
        self.bytes += key.len() + CLEANER_OFFSET_MAP_ENTRY_BYTES;
        self.latest.insert(Bytes::copy_from_slice(key), offset);
    }
    fn get(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(key).copied()
    }
}

/// Which part of the log a pass cleans, and why.
struct Plan {
    first_dirty_offset: i64,
    first_uncleanable_offset: i64,
    dirty_ratio: f64,
    /// Closed segments below the first uncleanable offset, oldest first.
    cleanable: Vec<Rc<Segment>>,
    /// Index in `cleanable` of the first segment with dirty offsets.
    first_dirty_index: usize,
}

/// What a pass needs while it rewrites batches.
struct Pass<'a> {
    map: OffsetMap,
    /// The clean point before this pass (tombstones below it may go).
    previous_clean_offset: i64,
    tombstone_deadline_ms: i64,
    oldest_tombstone_ms: i64,
    report: CleanReport,
    stop: &'a dyn Fn() -> bool,
    throttle: Throttle,
    aborted: AbortedRanges,
}

/// Keeps a pass's reads at or below a rate: after each chunk it sleeps until the bytes read so
/// far are due. The cleaner's reads compete with produce for the disk; unpaced, a large pass
/// saturates it and acks wait behind the reads.
struct Throttle {
    bytes_per_second: Option<u64>,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    fn new(bytes_per_second: Option<u64>) -> Throttle {
        Throttle { bytes_per_second: bytes_per_second.filter(|rate| *rate > 0), started: Instant::now(), bytes: 0 }
    }

    async fn pace(&mut self, bytes: u64) {
        let Some(rate) = self.bytes_per_second else { return };
        self.bytes += bytes;
        let due = std::time::Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            rt::sleep(due - elapsed).await;
        }
    }
}

/// What happened to one group.
enum GroupOutcome {
    Swapped,
    Unchanged,
    /// The pass must end here (segments changed under it, closing, or a test hook).
    Stopped,
}

impl Log {
    /// One cleaning pass, if the log needs one (min.cleanable.dirty.ratio, max.compaction.lag.ms,
    /// an expired tombstone). Only closed segments below the first uncleanable offset are
    /// rewritten. `on_swap(base, end)` runs right after segments with offsets in `[base, end)`
    /// were replaced in memory (the partition drops its cached batches there). `stop` is polled
    /// between batches; when it holds the pass ends early.
    pub async fn compact(
        &self,
        config: &CompactionConfig,
        now_ms: i64,
        options: &CompactOptions,
        txns: &CleanerTxns,
        on_swap: &mut dyn FnMut(i64, i64),
        stop: &dyn Fn() -> bool,
    ) -> LogResult<Option<CleanReport>> {
        let started = Instant::now();
        let checkpoint = Checkpoint::read(&self.dir);
        let Some(plan) = self.plan(config, now_ms, options, checkpoint, txns.last_stable_offset)? else { return Ok(None) };
        self.note_write();
        let mut pass = Pass {
            map: OffsetMap::default(),
            previous_clean_offset: checkpoint.map_or(-1, |checkpoint| checkpoint.clean_offset),
            tombstone_deadline_ms: now_ms.saturating_sub(config.delete_retention_ms.max(0)),
            oldest_tombstone_ms: -1,
            report: CleanReport {
                first_dirty_offset: plan.first_dirty_offset,
                dirty_ratio: plan.dirty_ratio,
                ..CleanReport::default()
            },
            stop,
            throttle: Throttle::new(options.io_bytes_per_second),
            aborted: AbortedRanges::new(&txns.aborted),
        };
        let Some(end_offset) = self.build_offset_map(&plan, &mut pass, options.offset_map_bytes_max).await? else {
            return Ok(None);
        };
        pass.report.end_offset = end_offset;
        let to_clean: Vec<Rc<Segment>> =
            plan.cleanable.iter().filter(|segment| segment.base_offset < end_offset).cloned().collect();
        let group_bytes_max = config.segment_bytes.clamp(1, SEGMENT_BYTES_MAX / 2);
        let mut completed = true;
        let mut first_group = true;
        for (group, group_end) in group_by_size(&to_clean, end_offset, group_bytes_max) {
            let stop_after = if first_group { options.stop_after } else { None };
            match self.clean_group(&group, group_end, now_ms, &mut pass, stop_after, on_swap).await? {
                GroupOutcome::Swapped => first_group = false,
                GroupOutcome::Unchanged => {}
                GroupOutcome::Stopped => {
                    completed = false;
                    break;
                }
            }
        }
        if completed {
            let previous = checkpoint.map_or(i64::MIN, |checkpoint| checkpoint.clean_offset);
            Checkpoint { clean_offset: end_offset.max(previous), oldest_tombstone_ms: pass.oldest_tombstone_ms }
                .write(&self.dir)
                .await?;
        }
        pass.report.completed = completed;
        pass.report.duration_ms = started.elapsed().as_millis() as u64;
        Ok(Some(pass.report))
    }

    /// Kafka's LogCleanerManager rules: the dirty part starts at the checkpoint (or the log start
    /// offset), ends before the active segment, before the first segment reaching the last stable
    /// offset, and before the first segment whose newest batch is younger than min.compaction.lag.ms; the log is cleaned when dirty bytes / bytes since the
    /// log start exceed min.cleanable.dirty.ratio, when its oldest dirty batch is older than
    /// max.compaction.lag.ms, or when a kept tombstone has expired.
    fn plan(
        &self,
        config: &CompactionConfig,
        now_ms: i64,
        options: &CompactOptions,
        checkpoint: Option<Checkpoint>,
        last_stable_offset: i64,
    ) -> LogResult<Option<Plan>> {
        let closed: Vec<Rc<Segment>> = {
            let segments = self.segments.borrow();
            let count = segments.len();
            segments.values().take(count.saturating_sub(1)).cloned().collect()
        };
        if closed.is_empty() {
            return Ok(None);
        }
        let log_start = self.log_start_offset();
        let end = self.end_offset();
        let first_dirty_offset = match checkpoint {
            Some(checkpoint) if checkpoint.clean_offset >= log_start && checkpoint.clean_offset <= end => checkpoint.clean_offset,
            _ => log_start,
        };
        let first_dirty_index =
            closed.iter().position(|segment| segment.next_offset() > first_dirty_offset && segment.size_bytes() > 0);
        let first_dirty_index = first_dirty_index.unwrap_or(closed.len());
        // Kafka's cleanableUpperBound: a segment holding offsets at or past the first unstable
        // offset may hold undecided transactions.
        let mut first_uncleanable_index =
            closed.iter().position(|segment| segment.next_offset() > last_stable_offset).unwrap_or(closed.len());
        let first_dirty_index = first_dirty_index.min(first_uncleanable_index);
        if config.min_compaction_lag_ms > 0 {
            let young = now_ms.saturating_sub(config.min_compaction_lag_ms);
            if let Some(position) =
                closed[first_dirty_index..first_uncleanable_index].iter().position(|segment| segment.max_timestamp_ms() > young)
            {
                first_uncleanable_index = first_dirty_index + position;
            }
        }
        let first_uncleanable_offset =
            closed.get(first_uncleanable_index).map_or_else(|| self.active().base_offset, |segment| segment.base_offset);
        let cleanable: Vec<Rc<Segment>> = closed[..first_uncleanable_index].to_vec();
        let first_dirty_index = first_dirty_index.min(cleanable.len());
        let clean_bytes: u64 = cleanable[..first_dirty_index].iter().map(|segment| segment.size_bytes()).sum();
        let dirty_bytes: u64 = cleanable[first_dirty_index..].iter().map(|segment| segment.size_bytes()).sum();
        let total_bytes = clean_bytes + dirty_bytes;
        let dirty_ratio = if total_bytes == 0 { 0.0 } else { dirty_bytes as f64 / total_bytes as f64 };
        let overdue = match cleanable.get(first_dirty_index) {
            Some(segment) if config.max_compaction_lag_ms > 0 && config.max_compaction_lag_ms < i64::MAX => segment
                .first_batch_max_timestamp_ms()?
                .is_some_and(|first| now_ms.saturating_sub(first) > config.max_compaction_lag_ms),
            _ => false,
        };
        let tombstones_due = checkpoint.is_some_and(|checkpoint| {
            checkpoint.oldest_tombstone_ms >= 0
                && checkpoint.oldest_tombstone_ms < now_ms.saturating_sub(config.delete_retention_ms.max(0))
        });
        let dirty_enough = dirty_bytes > 0 && (dirty_ratio > config.min_cleanable_dirty_ratio || overdue);
        if cleanable.is_empty() || !(options.force || dirty_enough || tombstones_due) {
            return Ok(None);
        }
        Ok(Some(Plan { first_dirty_offset, first_uncleanable_offset, dirty_ratio, cleanable, first_dirty_index }))
    }

    /// Fills the offset map from the dirty segments; returns the end of the part this pass
    /// cleans (a segment base: where the map filled up, or the first uncleanable offset), or
    /// `None` when the pass was stopped.
    async fn build_offset_map(&self, plan: &Plan, pass: &mut Pass<'_>, bytes_max: usize) -> LogResult<Option<i64>> {
        let dirty = &plan.cleanable[plan.first_dirty_index..];
        for (index, segment) in dirty.iter().enumerate() {
            if index > 0 && pass.map.bytes >= bytes_max {
                // Kafka's rule too: the map covers whole segments; the rest waits for the next pass.
                return Ok(Some(segment.base_offset));
            }
            let mut reader = BatchReader::new(segment)?;
            while let Some(batches) = reader.next_chunk().await? {
                if (pass.stop)() {
                    return Ok(None);
                }
                let chunk_bytes = batches.iter().map(|batch| batch.len() as u64).sum::<u64>();
                pass.report.bytes_read += chunk_bytes;
                pass.throttle.pace(chunk_bytes).await;
                for bytes in batches {
                    let header = BatchHeader::parse(&bytes)?;
                    if header.is_control() || header.last_offset() < plan.first_dirty_offset || pass.aborted.contains(&header) {
                        continue;
                    }
                    let decoded = batch::decode_records(&bytes)?;
                    for record in &decoded.records {
                        if let (Some(key), true) = (&record.key, record.offset >= plan.first_dirty_offset) {
                            pass.map.insert(key, record.offset);
                        }
                    }
                }
                rt::yield_if_needed().await;
            }
        }
        Ok(Some(plan.first_uncleanable_offset))
    }

    /// Rewrites one group of segments into one and swaps it in (steps 2 and 3 of the module
    /// diagram).
    async fn clean_group(
        &self,
        group: &[Rc<Segment>],
        group_end: i64,
        now_ms: i64,
        pass: &mut Pass<'_>,
        stop_after: Option<CrashPoint>,
        on_swap: &mut dyn FnMut(i64, i64),
    ) -> LogResult<GroupOutcome> {
        let base = group[0].base_offset;
        let cleaned_log = self.dir.join(format!("{}.{CLEANED_SUFFIX}", file_name(base, LOG_SUFFIX)));
        let cleaned_index = self.dir.join(format!("{}.{CLEANED_SUFFIX}", file_name(base, INDEX_SUFFIX)));
        let mut cleaned = Segment::create_at(cleaned_log, cleaned_index, base, now_ms).await?;
        let counts = match self.rewrite_group(&cleaned, group, pass).await {
            Ok(Some(counts)) => counts,
            Ok(None) => {
                cleaned.delete().await?;
                return Ok(GroupOutcome::Stopped);
            }
            Err(error) => {
                let _ = cleaned.delete().await;
                return Err(error);
            }
        };
        cleaned.seal().await?;
        cleaned.sync().await?; // seal's truncate must be durable before the swap
        let bytes_before: u64 = group.iter().map(|segment| segment.size_bytes()).sum();
        pass.report.segments_before += group.len();
        pass.report.bytes_before += bytes_before;
        pass.report.records_before += counts.records_before;
        pass.report.records_after += counts.records_after;
        pass.report.tombstones_removed += counts.tombstones_removed;
        if group.len() == 1 && counts.records_after == counts.records_before {
            // Nothing to remove and nothing to merge: keep the segment as it is.
            pass.report.segments_after += 1;
            pass.report.bytes_after += bytes_before;
            cleaned.delete().await?;
            return Ok(GroupOutcome::Unchanged);
        }
        if stop_after == Some(CrashPoint::CleanedWritten) {
            return Ok(GroupOutcome::Stopped);
        }
        // From here to the end, retention and truncation wait (they take the segment-set lock),
        // so the group stays as checked; reads on this shard see either the old segments or the
        // new one. The new segment's reader is opened now, under the `.cleaned` name, and held
        // until its final rename: a read never opens it by a name it does not have yet.
        let _segment_set = self.lock_segment_set().await;
        let pinned_reader = cleaned.reader()?;
        if !self.group_intact(group) {
            tracing::info!(dir = %self.dir.display(), base, "segments changed during cleaning; the group is cleaned next pass");
            drop(cleaned); // its files go below; the descriptor closes asynchronously
            remove_if_exists(&self.dir.join(format!("{}.{CLEANED_SUFFIX}", file_name(base, LOG_SUFFIX))))?;
            remove_if_exists(&self.dir.join(format!("{}.{CLEANED_SUFFIX}", file_name(base, INDEX_SUFFIX))))?;
            return Ok(GroupOutcome::Stopped);
        }
        let (swap_log, swap_index) = swap_paths(&self.dir, base, group_end);
        let final_log = self.dir.join(file_name(base, LOG_SUFFIX));
        let final_index = self.dir.join(file_name(base, INDEX_SUFFIX));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| LogError::io(path, error)
        };
        // The commit point: both swap names durable (recovery completes the swap from here).
        let commit = [(cleaned.index_path().to_path_buf(), swap_index.clone()), (cleaned.path().to_path_buf(), swap_log.clone())];
        let dir = self.dir.clone();
        crate::fs::off_shard(move || crate::fs::rename_durably(&as_paths(&commit), &dir)).await.map_err(io(&swap_log))?;
        if stop_after == Some(CrashPoint::SwapRenamed) {
            return Ok(GroupOutcome::Stopped);
        }
        pass.report.segments_after += 1;
        pass.report.bytes_after += cleaned.size_bytes();
        cleaned.set_paths(final_log.clone(), final_index.clone());
        {
            let mut segments = self.segments.borrow_mut();
            for segment in group {
                segments.remove(&segment.base_offset);
            }
            segments.insert(base, Rc::new(cleaned));
        }
        on_swap(base, group_end);
        // The unlinks must be durable before a final name can point at the new file.
        let replaced: Vec<PathBuf> =
            group.iter().flat_map(|segment| [segment.index_path().to_path_buf(), segment.path().to_path_buf()]).collect();
        let dir = self.dir.clone();
        crate::fs::off_shard(move || {
            let replaced: Vec<&Path> = replaced.iter().map(PathBuf::as_path).collect();
            crate::fs::remove_durably(&replaced, &dir)
        })
        .await
        .map_err(io(&self.dir))?;
        if stop_after == Some(CrashPoint::OldDeleted) {
            return Ok(GroupOutcome::Stopped);
        }
        let finals = [(swap_index, final_index), (swap_log, final_log.clone())];
        let dir = self.dir.clone();
        crate::fs::off_shard(move || crate::fs::rename_durably(&as_paths(&finals), &dir)).await.map_err(io(&final_log))?;
        drop(pinned_reader);
        Ok(GroupOutcome::Swapped)
    }

    /// Whether every segment of `group` is still in the log, as the same segment.
    fn group_intact(&self, group: &[Rc<Segment>]) -> bool {
        let segments = self.segments.borrow();
        let last = segments.keys().next_back().copied();
        group.iter().all(|segment| {
            Some(segment.base_offset) != last
                && segments.get(&segment.base_offset).is_some_and(|current| Rc::ptr_eq(current, segment))
        })
    }

    /// Copies the records of `group` that survive into `cleaned`. `None`: stopped.
    async fn rewrite_group(
        &self,
        cleaned: &Segment,
        group: &[Rc<Segment>],
        pass: &mut Pass<'_>,
    ) -> LogResult<Option<GroupCounts>> {
        let mut counts = GroupCounts::default();
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_bytes = 0usize;
        for segment in group {
            let mut reader = BatchReader::new(segment)?;
            while let Some(batches) = reader.next_chunk().await? {
                if (pass.stop)() {
                    return Ok(None);
                }
                pass.throttle.pace(batches.iter().map(|batch| batch.len() as u64).sum()).await;
                for bytes in batches {
                    pass.report.bytes_read += bytes.len() as u64;
                    if let Some(kept) = filter_batch(bytes, pass, &mut counts)? {
                        pending_bytes += kept.len();
                        pending.push(kept);
                    }
                }
                if pending_bytes >= CLEANER_WRITE_BYTES {
                    cleaned.append(&pending).await?;
                    pending.clear();
                    pending_bytes = 0;
                }
                rt::yield_if_needed().await;
            }
        }
        cleaned.append(&pending).await?;
        Ok(Some(counts))
    }
}

#[derive(Debug, Default)]
struct GroupCounts {
    records_before: u64,
    records_after: u64,
    tombstones_removed: u64,
}

/// The batch as it stays in the log: unchanged, rebuilt with fewer records, or `None` when no
/// record survives (or it belongs to an aborted transaction). Kafka keeps such an empty batch when
/// it holds the last sequence of an idempotent producer, so the producer-id state survives
/// cleaning. Here it is dropped: the producer state is restored from the snapshot written at each
/// roll, which lies at or above every segment the cleaner rewrites (the batch headers only fill in
/// what follows the snapshot). Control batches (transaction markers) stay as they are for now.
fn filter_batch(bytes: Bytes, pass: &mut Pass<'_>, counts: &mut GroupCounts) -> LogResult<Option<Bytes>> {
    let header = BatchHeader::parse(&bytes)?;
    if header.is_control() {
        counts.records_before += header.records_count.max(0) as u64;
        counts.records_after += header.records_count.max(0) as u64;
        return Ok(Some(bytes));
    }
    if pass.aborted.contains(&header) {
        counts.records_before += header.records_count.max(0) as u64;
        return Ok(None);
    }
    let decoded = batch::decode_records(&bytes)?;
    let mut kept: Vec<Bytes> = Vec::with_capacity(decoded.records.len());
    let mut max_timestamp = header.base_timestamp;
    for (record, raw) in decoded.records.iter().zip(&decoded.raw) {
        let timestamp = if header.is_log_append_time() { header.max_timestamp } else { record.timestamp };
        let keep = match &record.key {
            // Kafka's cleaner drops records without a key (produce refuses them on compacted
            // topics; these predate a change of cleanup.policy).
            None => false,
            Some(key) => pass.map.get(key).is_none_or(|latest| record.offset >= latest),
        };
        let keep = keep && {
            let expired_tombstone =
                record.value.is_none() && record.offset < pass.previous_clean_offset && timestamp < pass.tombstone_deadline_ms;
            if expired_tombstone {
                counts.tombstones_removed += 1;
            } else if record.value.is_none() && (pass.oldest_tombstone_ms < 0 || timestamp < pass.oldest_tombstone_ms) {
                pass.oldest_tombstone_ms = timestamp;
            }
            !expired_tombstone
        };
        if keep {
            kept.push(raw.clone());
            max_timestamp = max_timestamp.max(timestamp);
        }
    }
    counts.records_before += decoded.records.len() as u64;
    counts.records_after += kept.len() as u64;
    if kept.len() == decoded.records.len() {
        return Ok(Some(bytes));
    }
    if kept.is_empty() {
        return Ok(None);
    }
    Ok(Some(batch::rebuild(&bytes, &header, &kept, max_timestamp)?))
}

/// Groups consecutive segments whose sizes sum to at most `bytes_max` (a segment larger than
/// that is a group of its own) and whose offsets fit one segment's relative offsets. Each group
/// comes with the end of its offset range: the next segment's base offset, or `end_offset`.
fn group_by_size(segments: &[Rc<Segment>], end_offset: i64, bytes_max: u64) -> Vec<(Vec<Rc<Segment>>, i64)> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let base = segments[start].base_offset;
        let mut bytes = segments[start].size_bytes();
        let mut end = start + 1;
        while end < segments.len()
            && bytes + segments[end].size_bytes() <= bytes_max
            && segments[end].next_offset() - base <= i32::MAX as i64
        {
            bytes += segments[end].size_bytes();
            end += 1;
        }
        let group_end = segments.get(end).map_or(end_offset, |next| next.base_offset);
        groups.push((segments[start..end].to_vec(), group_end));
        start = end;
    }
    groups
}

/// Reads a closed segment's batches in chunks of about [`CLEANER_READ_BYTES`], on the blocking
/// pool (the data was written with O_DIRECT and is not in the page cache: the reads go to disk).
/// Every batch is CRC-checked before the cleaner uses it.
struct BatchReader {
    file: std::sync::Arc<std::fs::File>,
    path: PathBuf,
    position: u64,
    end: u64,
}

impl BatchReader {
    fn new(segment: &Segment) -> LogResult<BatchReader> {
        Ok(BatchReader { file: segment.reader()?, path: segment.path().to_path_buf(), position: 0, end: segment.size_bytes() })
    }

    async fn next_chunk(&mut self) -> LogResult<Option<Vec<Bytes>>> {
        if self.position >= self.end {
            return Ok(None);
        }
        let length = (self.end - self.position).min(CLEANER_READ_BYTES as u64) as usize;
        let mut chunk = self.read(self.position, length).await?;
        let mut batches = Vec::new();
        let mut at = 0usize;
        while chunk.len() - at >= BATCH_HEADER_BYTES {
            let header = BatchHeader::parse(&chunk[at..])?;
            if header.size_bytes > chunk.len() - at {
                if at == 0 {
                    // One batch larger than a chunk: read it whole.
                    chunk = self.read(self.position, header.size_bytes).await?;
                    continue;
                }
                break;
            }
            let bytes = chunk.slice(at..at + header.size_bytes);
            batch::validate_stored(&bytes)?;
            batches.push(bytes);
            at += header.size_bytes;
        }
        if at == 0 {
            return Err(LogError::io(&self.path, std::io::Error::other("a closed segment ends inside a batch")));
        }
        self.position += at as u64;
        Ok(Some(batches))
    }

    async fn read(&self, position: u64, length: usize) -> LogResult<Bytes> {
        if position + length as u64 > self.end {
            return Err(LogError::io(&self.path, std::io::Error::other("a batch runs past the end of its segment")));
        }
        let file = self.file.clone();
        let read = rt::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut buffer = vec![0u8; length];
            file.read_exact_at(&mut buffer, position).map(|()| buffer)
        })
        .await;
        read.map(Bytes::from).map_err(|error| LogError::io(&self.path, error))
    }
}

/// Borrowed `(from, to)` pairs for [`crate::fs::rename_durably`].
fn as_paths(renames: &[(PathBuf, PathBuf)]) -> Vec<(&Path, &Path)> {
    renames.iter().map(|(from, to)| (from.as_path(), to.as_path())).collect()
}

fn swap_paths(dir: &Path, base: i64, end: i64) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{base:020}.{end:020}.{LOG_SUFFIX}.{SWAP_SUFFIX}")),
        dir.join(format!("{}.{SWAP_SUFFIX}", file_name(base, INDEX_SUFFIX))),
    )
}

fn remove_if_exists(path: &Path) -> LogResult<()> {
    match crate::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(LogError::io(path, error)),
        _ => Ok(()),
    }
}

/// Recovery of an interrupted pass (Kafka's LogLoader does the same): `.cleaned` files are
/// deleted (the pass had not committed); each `<base>.<end>.log.swap` is completed — the segments
/// with base offsets in `[base, end)` are deleted and the swap files take their final names.
/// Idempotent: a crash during recovery is recovered the same way.
pub fn recover_interrupted(dir: &Path) -> LogResult<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| LogError::io(path, error)
    };
    let mut swaps: Vec<(i64, i64, PathBuf)> = Vec::new();
    let mut index_swaps: Vec<(i64, PathBuf)> = Vec::new();
    let mut removed_cleaned = false;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(&format!(".{CLEANED_SUFFIX}")) {
            remove_if_exists(&entry.path())?;
            removed_cleaned = true;
        } else if let Some(stem) = name.strip_suffix(&format!(".{LOG_SUFFIX}.{SWAP_SUFFIX}")) {
            let parsed = stem.split_once('.').and_then(|(base, end)| Some((base.parse().ok()?, end.parse().ok()?)));
            match parsed {
                Some((base, end)) => swaps.push((base, end, entry.path())),
                None => tracing::warn!(file = %entry.path().display(), "ignoring a swap file with an unexpected name"),
            }
        } else if let Some(stem) = name.strip_suffix(&format!(".{INDEX_SUFFIX}.{SWAP_SUFFIX}")) {
            if let Ok(base) = stem.parse() {
                index_swaps.push((base, entry.path()));
            }
        }
    }
    swaps.sort_unstable_by_key(|(base, _, _)| *base);
    for (base, end, swap_log) in &swaps {
        let replaced: Vec<PathBuf> = list_segments(dir)?
            .into_iter()
            .filter(|offset| (*base..*end).contains(offset))
            .flat_map(|replaced| [dir.join(file_name(replaced, INDEX_SUFFIX)), dir.join(file_name(replaced, LOG_SUFFIX))])
            .collect();
        let replaced: Vec<&Path> = replaced.iter().map(PathBuf::as_path).collect();
        crate::fs::remove_durably(&replaced, dir).map_err(io(dir))?;
        let (_, swap_index) = swap_paths(dir, *base, *end);
        let final_index = dir.join(file_name(*base, INDEX_SUFFIX));
        let final_log = dir.join(file_name(*base, LOG_SUFFIX));
        let mut finals = vec![(swap_log.as_path(), final_log.as_path())];
        if swap_index.exists() {
            finals.insert(0, (swap_index.as_path(), final_index.as_path()));
        }
        crate::fs::rename_durably(&finals, dir).map_err(io(&final_log))?;
        tracing::info!(dir = %dir.display(), base, end, "completed an interrupted compaction swap");
    }
    for (base, path) in index_swaps {
        // An index swap without its log swap: the pass stopped between the two commit renames.
        if !swaps.iter().any(|(swap_base, _, _)| *swap_base == base) {
            remove_if_exists(&path)?;
        }
    }
    if removed_cleaned {
        tracing::info!(dir = %dir.display(), "removed the files of an interrupted compaction");
    }
    Ok(())
}
