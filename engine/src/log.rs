//! The segment set of one partition: open with recovery, roll, read, search by time, truncate.
//!
//! ```text
//!  dir/<topic>-<partition>/
//!    00000000000000000000.log  .index    sealed (exact size, stored index)
//!    00000000000000052113.log  .index    sealed
//!    00000000000000104398.log            active (appends; padding past the logical end)
//!    recovery-point                      last verified (segment, position), written on seal/close
//!    log-start-offset                    first readable offset, when above the first segment's base
//!                                        (DeleteRecords, retention); written before it takes effect
//!    partition.metadata                  topic id, so a recreated topic never adopts old data
//!    00000000000000104398.snapshot       producer state as of that offset (`producer_state`),
//!                                        written by the partition at roll and on close
//!    00000000000000052113.txnindex       aborted transactions whose abort marker was written
//!                                        while that segment was active (`txn_index`)
//! ```
//! Every batch carries the leader epoch it was appended under (patched into its header), which
//! is what KIP-101 truncation needs; the epoch→start-offset cache comes with replication.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::batch::{BatchHeader, EndTxnMarker};
use crate::error::{LogError, LogResult};
use crate::rt;
use crate::segment::{self, FileSlice, RecoveryReport, Segment, LOG_SUFFIX};

const RECOVERY_POINT_FILE: &str = "recovery-point";
const LOG_START_OFFSET_FILE: &str = "log-start-offset";

/// Why segments were removed from the front of a log (operators' log lines and counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalCause {
    /// Every record older than retention.ms.
    Time,
    /// The log over retention.bytes.
    Size,
    /// Entirely below the log start offset (DeleteRecords).
    StartOffset,
}

/// Segments removed from the front of a log by one retention pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemovalReport {
    pub segments: usize,
    pub bytes: u64,
}

impl RemovalReport {
    fn add(&mut self, other: RemovalReport) {
        self.segments += other.segments;
        self.bytes += other.bytes;
    }
}

/// The segments of one partition. Lives on the shard that owns the partition.
pub struct Log {
    pub(crate) dir: PathBuf,
    /// Keyed by base offset. The cleaner (compaction.rs) replaces groups of closed segments here.
    pub(crate) segments: RefCell<BTreeMap<i64, Rc<Segment>>>,
    log_start_offset: Cell<i64>,
    /// Whether the recovery-point file describes the log exactly: it was opened after a clean
    /// close, nothing was cut, and nothing has been written since. The file is removed before the
    /// first write (an idle partition never pays for it), and a close finds nothing to record.
    recovery_point_exact: Cell<bool>,
    /// Held by whoever removes or replaces segments across an await (retention, truncation, a
    /// compaction swap committing: their fsyncs run off the shard), so none of them acts on a
    /// segment set another has half changed. Appends and rolls only add at the end and take none.
    segment_set_busy: Cell<bool>,
    segment_set_free: Rc<rt::Notify>,
}

/// Exclusive right to remove or replace segments of a [`Log`]; released on drop.
pub(crate) struct SegmentSetGuard<'a> {
    log: &'a Log,
}

impl Drop for SegmentSetGuard<'_> {
    fn drop(&mut self) {
        self.log.segment_set_busy.set(false);
        self.log.segment_set_free.notify_all();
    }
}

/// What opening a log found, for the operator's log lines.
#[derive(Debug, Default)]
pub struct OpenReport {
    pub segments: usize,
    pub truncated_bytes: u64,
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering the last segment.
    pub async fn open(dir: &Path, now_ms: i64) -> LogResult<(Log, OpenReport)> {
        std::fs::create_dir_all(dir).map_err(|error| LogError::io(dir, error))?;
        // An interrupted compaction is finished (or undone) before the segments are listed.
        let owned = dir.to_path_buf();
        crate::fs::off_shard(move || crate::compaction::recover_interrupted(&owned)).await?;
        let base_offsets = list_segments(dir)?;
        let recovery_point = read_recovery_point(dir);
        let mut segments = BTreeMap::new();
        let mut report = OpenReport::default();
        let count = base_offsets.len();
        for (position, base_offset) in base_offsets.into_iter().enumerate() {
            let is_last = position + 1 == count;
            let verify_from = match recovery_point {
                Some((base, verified)) if base == base_offset => verified - verified % crate::limits::DMA_ALIGNMENT_BYTES,
                _ => 0,
            };
            let (segment, RecoveryReport { truncated_bytes, .. }) = Segment::open(dir, base_offset, is_last, verify_from).await?;
            report.truncated_bytes += truncated_bytes;
            segments.insert(base_offset, Rc::new(segment));
        }
        if segments.is_empty() {
            segments.insert(0, Rc::new(Segment::create(dir, 0, now_ms).await?));
        }
        // A truncated tail invalidates the recovery point (it is rewritten on the next close);
        // otherwise it goes before the first write (`note_write`).
        let recovery_point_exact = recovery_point.is_some() && report.truncated_bytes == 0;
        if recovery_point.is_some() && !recovery_point_exact {
            let _ = crate::fs::remove_file(&dir.join(RECOVERY_POINT_FILE));
        }
        report.segments = segments.len();
        let mut first_base = *segments.keys().next().expect("at least one segment");
        let end = segments.values().next_back().expect("at least one segment").next_offset();
        let stored = read_log_start_offset(dir).unwrap_or(first_base);
        if stored > end {
            // A crash lost unsynced data above an acknowledged log start (DeleteRecords of acks=1
            // data): every batch left lies below it, and offsets below it are never given out
            // again, so the log starts over, empty, at the log start (Kafka's
            // truncateFullyAndStartAt).
            tracing::warn!(dir = %dir.display(), log_start_offset = stored, end, "log ends below its log start offset; starting it empty there");
            for (_, segment) in std::mem::take(&mut segments) {
                delete_segment(segment).await?;
            }
            segments.insert(stored, Rc::new(Segment::create(dir, stored, now_ms).await?));
            first_base = stored;
            if recovery_point_exact {
                let _ = crate::fs::remove_file(&dir.join(RECOVERY_POINT_FILE));
            }
        }
        let recovery_point_exact = recovery_point_exact && stored <= end;
        let end = segments.values().next_back().expect("at least one segment").next_offset();
        let log_start_offset = stored.clamp(first_base, end.max(first_base));
        let log = Log {
            dir: dir.to_path_buf(),
            segments: RefCell::new(segments),
            log_start_offset: Cell::new(log_start_offset),
            recovery_point_exact: Cell::new(recovery_point_exact),
            segment_set_busy: Cell::new(false),
            segment_set_free: Rc::new(rt::Notify::default()),
        };
        Ok((log, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits until no other task removes or replaces segments, then holds that right until the
    /// guard drops.
    pub(crate) async fn lock_segment_set(&self) -> SegmentSetGuard<'_> {
        while self.segment_set_busy.get() {
            self.segment_set_free.notified().await;
        }
        self.segment_set_busy.set(true);
        SegmentSetGuard { log: self }
    }

    pub fn active(&self) -> Rc<Segment> {
        self.segments.borrow().values().next_back().expect("a log always has an active segment").clone()
    }

    /// Offset after the last written batch.
    pub fn end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.get()
    }

    /// Base offset of the segment holding `offset` (the first segment for an offset below it).
    pub fn segment_base_of(&self, offset: i64) -> i64 {
        let segments = self.segments.borrow();
        segments.range(..=offset).next_back().map_or_else(|| *segments.keys().next().expect("a segment"), |(base, _)| *base)
    }

    /// Base offset of the oldest segment.
    pub fn first_segment_base(&self) -> i64 {
        *self.segments.borrow().keys().next().expect("a log always has a segment")
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.borrow().values().map(|segment| segment.size_bytes()).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.borrow().len()
    }

    /// Seals the active segment and starts a new one at `base_offset`.
    pub async fn roll(&self, base_offset: i64, now_ms: i64) -> LogResult<()> {
        self.note_write();
        let active = self.active();
        assert!(base_offset >= active.next_offset(), "roll must not go backwards");
        if active.size_bytes() == 0 {
            return Ok(());
        }
        active.seal().await?;
        let segment = Segment::create(&self.dir, base_offset, now_ms).await?;
        self.segments.borrow_mut().insert(base_offset, Rc::new(segment));
        tracing::debug!(dir = %self.dir.display(), base_offset, "rolled segment");
        Ok(())
    }

    /// Cold read: a slice of the segment holding `offset`.
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64) -> LogResult<Option<FileSlice>> {
        Ok(self.read_bounded(offset, max_bytes, max_offset)?.map(|(slice, _)| slice))
    }

    /// [`Log::read`], with an offset the slice's batches all lie below: the end of the segment it
    /// comes from (read_committed bounds the aborted transactions it returns by it).
    pub fn read_bounded(&self, offset: i64, max_bytes: usize, max_offset: i64) -> LogResult<Option<(FileSlice, i64)>> {
        let segment = {
            let segments = self.segments.borrow();
            match segments.range(..=offset).next_back() {
                Some((_, segment)) => segment.clone(),
                None => return Ok(None),
            }
        };
        let slice = segment.read_from(offset, max_bytes, segment.end_position_before(max_offset)?)?;
        if let Some(slice) = slice {
            return Ok(Some((slice, segment.next_offset())));
        }
        // The offset may sit in a gap at the end of a segment (compaction removed the batches
        // there, or a whole cleaned segment is empty): the next batch after it answers, as in
        // Kafka. Each step moves to a later segment, so the walk ends.
        let mut from = segment.base_offset;
        loop {
            let next = self.segments.borrow().range(from + 1..).next().map(|(_, segment)| segment.clone());
            let Some(segment) = next else { return Ok(None) };
            if segment.base_offset >= max_offset {
                return Ok(None);
            }
            let slice = segment.read_from(offset, max_bytes, segment.end_position_before(max_offset)?)?;
            if let Some(slice) = slice {
                return Ok(Some((slice, segment.next_offset())));
            }
            from = segment.base_offset;
        }
    }

    /// First batch with max timestamp >= `timestamp_ms`: (offset, timestamp).
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> LogResult<Option<(i64, i64)>> {
        let segments: Vec<Rc<Segment>> = self.segments.borrow().values().cloned().collect();
        for segment in segments {
            if let Some(found) = segment.find_by_timestamp(timestamp_ms)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The offset holding the largest timestamp in the log, with that timestamp (KIP-734).
    pub fn max_timestamp(&self) -> LogResult<Option<(i64, i64)>> {
        let segments: Vec<Rc<Segment>> = self.segments.borrow().values().cloned().collect();
        let best = segments
            .iter()
            .filter(|segment| segment.max_timestamp_ms() >= 0)
            .max_by_key(|segment| (segment.max_timestamp_ms(), -segment.base_offset));
        match best {
            Some(segment) => segment.max_timestamp(),
            None => Ok(None),
        }
    }

    /// Walks the batch headers from the batch holding `from_offset` (or the first after it) to
    /// the end of the log, oldest first, reading headers only (producer state recovery).
    pub fn scan_headers(&self, from_offset: i64, mut visit: impl FnMut(&BatchHeader)) -> LogResult<usize> {
        self.scan(from_offset, false, &mut |header, _| visit(header))
    }

    /// [`Log::scan_headers`] that also reads the end-transaction marker of each control batch
    /// (producer state and aborted-transaction recovery; control batches are 78 bytes).
    pub fn scan_batches(&self, from_offset: i64, mut visit: impl FnMut(&BatchHeader, Option<EndTxnMarker>)) -> LogResult<usize> {
        self.scan(from_offset, true, &mut visit)
    }

    fn scan(
        &self,
        from_offset: i64,
        read_markers: bool,
        visit: &mut dyn FnMut(&BatchHeader, Option<EndTxnMarker>),
    ) -> LogResult<usize> {
        let segments: Vec<Rc<Segment>> = self.segments.borrow().values().cloned().collect();
        let mut batches = 0usize;
        for segment in segments.iter().filter(|segment| segment.next_offset() > from_offset) {
            let size = segment.size_bytes();
            let mut position = segment.position_of_batch_starting_at_or_after(from_offset)?;
            while position < size {
                let Some(header) = segment.read_header(position)? else { break };
                let marker = if read_markers && header.is_control() {
                    crate::batch::end_txn_marker(&segment.read_bytes(position, header.size_bytes)?)
                } else {
                    None
                };
                visit(&header, marker);
                batches += 1;
                position += header.size_bytes as u64;
            }
        }
        Ok(batches)
    }

    /// Moves the log start offset up to `offset` (never down) and persists it before it takes
    /// effect, then removes the segments entirely below it. The caller bounds `offset` by the
    /// high watermark. Returns the new log start offset and what was removed.
    pub async fn advance_start_offset(&self, offset: i64) -> LogResult<(i64, RemovalReport)> {
        self.note_write();
        if offset > self.log_start_offset.get() {
            self.write_log_start_offset(offset).await?;
            self.log_start_offset.set(offset);
        }
        let removed = self.remove_front_segments(RemovalCause::StartOffset, |_, next_base, _| next_base <= offset).await?;
        Ok((self.log_start_offset.get(), removed))
    }

    /// Asserts the segment set's shape: at least one segment, each keyed by its base offset,
    /// offsets increasing across segments (compaction may leave gaps, never overlaps), and the log
    /// start within [first segment base, end]. Walks every segment: debug builds only
    /// ([`crate::partition::Partition::check_invariants`]).
    pub fn check_invariants(&self) {
        let segments = self.segments.borrow();
        assert!(!segments.is_empty(), "{}: a log without segments", self.dir.display());
        let mut previous_end = i64::MIN;
        for (base, segment) in segments.iter() {
            assert_eq!(*base, segment.base_offset, "{}: segment keyed by another base", self.dir.display());
            assert!(
                *base >= previous_end,
                "{}: segment {base} overlaps the one before (ends {previous_end})",
                self.dir.display()
            );
            assert!(segment.next_offset() >= *base, "{}: segment {base} ends before it starts", self.dir.display());
            previous_end = segment.next_offset();
        }
        let first_base = *segments.keys().next().expect("checked");
        let start = self.log_start_offset.get();
        assert!(
            first_base <= start && start <= previous_end.max(first_base),
            "{}: log start {start} outside [{first_base}, {previous_end}]",
            self.dir.display()
        );
    }

    /// Makes `offset` the durable log start offset (before it takes effect in memory).
    async fn write_log_start_offset(&self, offset: i64) -> LogResult<()> {
        let path = self.dir.join(LOG_START_OFFSET_FILE);
        let written = path.clone();
        crate::fs::off_shard(move || write_durably(&written, format!("{offset}\n").as_bytes()))
            .await
            .map_err(|error| LogError::io(&path, error))
    }

    /// Whether the active segment holds records and all of them are older than `retention_ms`:
    /// the partition rolls it so the next retention pass can remove it, as Kafka does.
    pub fn active_expired(&self, now_ms: i64, retention_ms: i64) -> bool {
        let active = self.active();
        retention_ms >= 0
            && active.size_bytes() > 0
            && active.max_timestamp_ms() >= 0
            && now_ms - active.max_timestamp_ms() > retention_ms
    }

    /// One retention pass over the closed segments, oldest first: removes those whose newest
    /// record is older than `retention_ms`, then while the log minus the oldest segment is still
    /// at least `retention_bytes`, then any entirely below the log start offset. Negative limits
    /// are off. The active segment always stays, and so does every segment holding a record at
    /// or above `high_watermark` (Kafka's `deletableSegments`): a record written but not yet
    /// acknowledged is never removed by retention before its acknowledgement, which would then
    /// acknowledge what is gone. The log start offset moves to the first kept segment.
    pub async fn apply_retention(
        &self,
        now_ms: i64,
        retention_ms: i64,
        retention_bytes: i64,
        high_watermark: i64,
    ) -> LogResult<Vec<(RemovalCause, RemovalReport)>> {
        let mut reports = Vec::new();
        let below_high_watermark = |next_base: i64| next_base <= high_watermark;
        if retention_ms >= 0 {
            let removed = self
                .remove_front_segments(RemovalCause::Time, |segment, next_base, _| {
                    below_high_watermark(next_base)
                        && segment.max_timestamp_ms() >= 0
                        && now_ms - segment.max_timestamp_ms() > retention_ms
                })
                .await?;
            reports.push((RemovalCause::Time, removed));
        }
        if retention_bytes >= 0 {
            let mut excess = self.size_bytes() as i64 - retention_bytes;
            let removed = self
                .remove_front_segments(RemovalCause::Size, |segment, next_base, _| {
                    let size = segment.size_bytes() as i64;
                    if below_high_watermark(next_base) && excess - size >= 0 {
                        excess -= size;
                        true
                    } else {
                        false
                    }
                })
                .await?;
            reports.push((RemovalCause::Size, removed));
        }
        let start = self.log_start_offset.get();
        let removed = self.remove_front_segments(RemovalCause::StartOffset, |_, next_base, _| next_base <= start).await?;
        reports.push((RemovalCause::StartOffset, removed));
        reports.retain(|(_, report)| report.segments > 0);
        Ok(reports)
    }

    /// Removes closed segments from the front while `doomed(segment, next segment's base,
    /// cause)` holds; the active segment is never removed. Files of a segment still referenced
    /// elsewhere are unlinked (readers with an open file finish their sendfile).
    async fn remove_front_segments(
        &self,
        cause: RemovalCause,
        mut doomed: impl FnMut(&Segment, i64, RemovalCause) -> bool,
    ) -> LogResult<RemovalReport> {
        let mut report = RemovalReport::default();
        loop {
            let _segment_set = self.lock_segment_set().await;
            let candidate = {
                let segments = self.segments.borrow();
                let mut iter = segments.iter();
                match (iter.next(), iter.next()) {
                    (Some((base, segment)), Some((next_base, _))) if doomed(segment, *next_base, cause) => {
                        Some((*base, *next_base, segment.size_bytes()))
                    }
                    _ => None,
                }
            };
            let Some((base, next_base, bytes)) = candidate else { break };
            if self.log_start_offset.get() < next_base {
                // Readers must never be sent to a removed segment: the start moves first.
                self.write_log_start_offset(next_base).await?;
                self.log_start_offset.set(next_base);
            }
            let segment = self.segments.borrow_mut().remove(&base).expect("listed");
            delete_segment(segment).await?;
            report.add(RemovalReport { segments: 1, bytes });
            rt::yield_if_needed().await;
        }
        Ok(report)
    }

    /// Removes every batch at or after `offset`; used by replication when a follower's log
    /// diverges from its leader (KIP-101). The caller guarantees no append is in flight.
    pub async fn truncate_to(&self, offset: i64, now_ms: i64) -> LogResult<()> {
        let _segment_set = self.lock_segment_set().await;
        self.note_write();
        let doomed: Vec<i64> = self.segments.borrow().range(offset..).map(|(base, _)| *base).collect();
        for base in doomed {
            let segment = self.segments.borrow_mut().remove(&base).expect("listed");
            delete_segment(segment).await?;
        }
        if self.segments.borrow().is_empty() {
            let segment = Segment::create(&self.dir, offset, now_ms).await?;
            self.segments.borrow_mut().insert(offset, Rc::new(segment));
            self.log_start_offset.set(self.log_start_offset.get().min(offset));
        } else {
            let active = self.active();
            if active.next_offset() > offset {
                active.truncate_to_offset(offset).await?;
            }
        }
        Ok(())
    }

    /// The log (or the state kept beside it) is about to change: the recovery point no longer
    /// describes it. Before the first write after a clean open, removes the file.
    pub fn note_write(&self) {
        if self.recovery_point_exact.replace(false) {
            let _ = crate::fs::remove_file(&self.dir.join(RECOVERY_POINT_FILE));
        }
    }

    /// Whether nothing changed since the log was opened after a clean close (so a close has
    /// nothing to sync or record).
    pub fn unchanged_since_clean_open(&self) -> bool {
        self.recovery_point_exact.get()
    }

    /// Syncs the active segment and records how far the log is verified, so the next start
    /// CRC-checks only what came after.
    pub async fn checkpoint(&self) -> LogResult<()> {
        if self.unchanged_since_clean_open() {
            return Ok(());
        }
        let active = self.active();
        active.sync().await?;
        let contents = format!("{} {}\n", active.base_offset, active.size_bytes());
        let path = self.dir.join(RECOVERY_POINT_FILE);
        crate::fs::write(&path, contents.as_bytes()).map_err(|error| LogError::io(&path, error))
    }

    /// Closes every segment (files stay).
    pub async fn close(self) -> LogResult<()> {
        let segments = std::mem::take(&mut *self.segments.borrow_mut());
        for (_, segment) in segments {
            if let Ok(segment) = Rc::try_unwrap(segment) {
                segment.close().await?;
            }
        }
        Ok(())
    }

    /// Closes and removes the whole partition directory.
    pub async fn delete(self) -> LogResult<()> {
        let dir = self.dir.clone();
        self.close().await?;
        crate::fs::remove_dir_all(&dir).map_err(|error| LogError::io(&dir, error))
    }
}

pub(crate) fn list_segments(dir: &Path) -> LogResult<Vec<i64>> {
    let mut base_offsets = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|error| LogError::io(dir, error))? {
        let entry = entry.map_err(|error| LogError::io(dir, error))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(&format!(".{LOG_SUFFIX}")) {
            if let Ok(base_offset) = stem.parse::<i64>() {
                if segment::file_name(base_offset, LOG_SUFFIX) == name {
                    base_offsets.push(base_offset);
                }
            }
        }
    }
    base_offsets.sort_unstable();
    Ok(base_offsets)
}

fn read_recovery_point(dir: &Path) -> Option<(i64, u64)> {
    let text = std::fs::read_to_string(dir.join(RECOVERY_POINT_FILE)).ok()?;
    let mut parts = text.split_whitespace();
    let base = parts.next()?.parse().ok()?;
    let position = parts.next()?.parse().ok()?;
    Some((base, position))
}

/// Deletes a segment taken out of the list. Files of a segment still referenced elsewhere are
/// unlinked (readers with an open file finish their sendfile).
async fn delete_segment(segment: Rc<Segment>) -> LogResult<()> {
    match Rc::try_unwrap(segment) {
        Ok(segment) => segment.delete().await,
        Err(shared) => {
            let _ = crate::fs::remove_file(shared.path());
            let _ = crate::fs::remove_file(&shared.path().with_extension("index"));
            Ok(())
        }
    }
}

fn read_log_start_offset(dir: &Path) -> Option<i64> {
    std::fs::read_to_string(dir.join(LOG_START_OFFSET_FILE)).ok()?.trim().parse().ok()
}

// Kept for callers outside the engine (replication's metadata files); the engine names `fs`.
pub use crate::fs::write_durably;
