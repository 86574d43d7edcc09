//! The segment set of one partition: open with recovery, roll, read, search by time, truncate.
//!
//! ```text
//!  dir/<topic>-<partition>/
//!    00000000000000000000.log  .index    sealed (exact size, stored index)
//!    00000000000000052113.log  .index    sealed
//!    00000000000000104398.log            active (appends; padding past the logical end)
//!    recovery-point                      last verified (segment, position), written on seal/close
//!    partition.metadata                  topic id, so a recreated topic never adopts old data
//! ```
//! Every batch carries the leader epoch it was appended under (patched into its header), which
//! is what KIP-101 truncation needs; the epoch→start-offset cache comes with replication.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::{LogError, LogResult};
use crate::segment::{self, FileSlice, RecoveryReport, Segment, LOG_SUFFIX};

const RECOVERY_POINT_FILE: &str = "recovery-point";

/// The segments of one partition. Lives on the shard that owns the partition.
pub struct Log {
    dir: PathBuf,
    segments: RefCell<BTreeMap<i64, Rc<Segment>>>,
    log_start_offset: Cell<i64>,
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
        // A truncated tail invalidates the recovery point; it is rewritten on the next seal/close.
        let _ = std::fs::remove_file(dir.join(RECOVERY_POINT_FILE));
        report.segments = segments.len();
        let log_start_offset = *segments.keys().next().expect("at least one segment");
        let log = Log { dir: dir.to_path_buf(), segments: RefCell::new(segments), log_start_offset: Cell::new(log_start_offset) };
        Ok((log, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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

    pub fn size_bytes(&self) -> u64 {
        self.segments.borrow().values().map(|segment| segment.size_bytes()).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.borrow().len()
    }

    /// Seals the active segment and starts a new one at `base_offset`.
    pub async fn roll(&self, base_offset: i64, now_ms: i64) -> LogResult<()> {
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
        let segment = {
            let segments = self.segments.borrow();
            match segments.range(..=offset).next_back() {
                Some((_, segment)) => segment.clone(),
                None => return Ok(None),
            }
        };
        let slice = segment.read_from(offset, max_bytes, segment.end_position_before(max_offset)?)?;
        if slice.is_some() {
            return Ok(slice);
        }
        // The offset may sit in a gap at the end of a segment: continue with the next one.
        let next = self.segments.borrow().range(offset + 1..).next().map(|(_, segment)| segment.clone());
        match next {
            Some(segment) => segment.read_from(offset, max_bytes, segment.end_position_before(max_offset)?),
            None => Ok(None),
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

    /// Removes every batch at or after `offset`; used by replication when a follower's log
    /// diverges from its leader (KIP-101). The caller guarantees no append is in flight.
    pub async fn truncate_to(&self, offset: i64, now_ms: i64) -> LogResult<()> {
        let doomed: Vec<i64> = self.segments.borrow().range(offset..).map(|(base, _)| *base).collect();
        for base in doomed {
            let segment = self.segments.borrow_mut().remove(&base).expect("listed");
            match Rc::try_unwrap(segment) {
                Ok(segment) => segment.delete().await?,
                Err(shared) => {
                    let _ = std::fs::remove_file(shared.path());
                    let _ = std::fs::remove_file(shared.path().with_extension("index"));
                }
            }
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
        let _ = std::fs::remove_file(self.dir.join(RECOVERY_POINT_FILE));
        Ok(())
    }

    /// Syncs the active segment and records how far the log is verified, so the next start
    /// CRC-checks only what came after.
    pub async fn checkpoint(&self) -> LogResult<()> {
        let active = self.active();
        active.sync().await?;
        let contents = format!("{} {}\n", active.base_offset, active.size_bytes());
        let path = self.dir.join(RECOVERY_POINT_FILE);
        std::fs::write(&path, contents).map_err(|error| LogError::io(&path, error))
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
        std::fs::remove_dir_all(&dir).map_err(|error| LogError::io(&dir, error))
    }
}

fn list_segments(dir: &Path) -> LogResult<Vec<i64>> {
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

/// Recovery's scan of raw segment bytes (for the fuzz target): length of the valid prefix.
pub fn recover_scan(bytes: &[u8]) -> usize {
    crate::batch::scan_valid_prefix(bytes, |_, _| {})
}
