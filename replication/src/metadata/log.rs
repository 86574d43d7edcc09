//! The metadata log on disk: segments of frames, recovery, snapshots.
//!
//! ```text
//!  __cluster_metadata-0/
//!    00000000000000000000.log   offsets 0..=4095      ┐ deleted once the older retained
//!    snapshot-00000000000000004095.bin                ┘ snapshot is past them
//!    00000000000000004096.log   offsets 4096..=8191
//!    snapshot-00000000000000008191.bin
//!    00000000000000008192.log   offsets 8192..        ◀ active segment, appended to
//! ```
//!
//! A segment is named by the offset of its first record (Kafka's naming). Appends write one
//! frame per batch and fdatasync before returning. Every `snapshot_interval_records` records the
//! image is written to `snapshot-<offset>.bin` (temp file, fsync, rename, fsync directory) and a
//! new segment is started, so old segments can be dropped whole.
//!
//! Open loads the newest snapshot that passes its checks, then replays every batch after it.
//! The first torn or corrupt frame ends the log: the file is truncated there (with a warning
//! naming what was cut) and later segments are removed, so nothing after a hole is ever served.
//! A write or sync failure poisons the log: it accepts nothing more until reopened, because the
//! state of the file after a failed fsync is unknown (fsyncgate; fjall and Postgres do the same).

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use fjord_engine::fs as engine_fs;

use rkyv::rancor;
use rkyv::util::AlignedVec;

use super::image::{BrokerImage, MetadataImage, TopicImage};
use super::record::{encode_batch, read_frame, FrameRead, MetadataRecord};
use super::{MetadataError, METADATA_SNAPSHOT_BYTES_MAX, SNAPSHOTS_RETAINED, SNAPSHOT_INTERVAL_RECORDS_DEFAULT};

const SEGMENT_SUFFIX: &str = ".log";
const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".bin";
const TEMP_SUFFIX: &str = ".tmp";
/// Width of the zero-padded offset in file names, as Kafka pads it.
const OFFSET_DIGITS: usize = 20;

const SNAPSHOT_MAGIC: &[u8; 4] = b"FJMS";
const SNAPSHOT_SCHEMA_VERSION: u8 = 1;
/// magic, schema, 3 reserved bytes, crc32c of the payload, payload length.
const SNAPSHOT_HEADER_BYTES: usize = 4 + 1 + 3 + 4 + 8;

/// Tuning of the metadata log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// Records between snapshots; 0 never snapshots.
    pub snapshot_interval_records: u64,
    /// Remove segments that the older retained snapshot makes unnecessary. Tests turn this off
    /// to compare a replay from a snapshot with a replay of the whole log.
    pub delete_covered_segments: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { snapshot_interval_records: SNAPSHOT_INTERVAL_RECORDS_DEFAULT, delete_covered_segments: true }
    }
}

/// The image as a snapshot stores it. Derived maps (topic ids) are rebuilt on load.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
struct SnapshotPayload {
    offset: i64,
    epoch: i32,
    cluster_id: String,
    brokers: Vec<BrokerImage>,
    topics: Vec<TopicImage>,
    broker_config: Vec<(String, String)>,
}

/// The metadata log of one node. Owned by the controller; lives on the controller's thread.
#[derive(Debug)]
pub struct MetadataLog {
    dir: PathBuf,
    options: LogOptions,
    active: engine_fs::AppendFile,
    /// Base offsets of the segments on disk, ascending; the last is the active one.
    segments: Vec<i64>,
    /// Offsets of the valid snapshots on disk, ascending.
    snapshots: Vec<i64>,
    next_offset: i64,
    last_epoch: i32,
    records_since_snapshot: u64,
    poisoned: bool,
}

fn segment_name(base_offset: i64) -> String {
    format!("{base_offset:0width$}{SEGMENT_SUFFIX}", width = OFFSET_DIGITS)
}

fn snapshot_name(offset: i64) -> String {
    format!("{SNAPSHOT_PREFIX}{offset:0width$}{SNAPSHOT_SUFFIX}", width = OFFSET_DIGITS)
}

fn parse_offset(digits: &str) -> Option<i64> {
    if digits.len() == OFFSET_DIGITS && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), MetadataError> {
    engine_fs::sync_dir(dir).map_err(|e| MetadataError::io("fsync directory", dir, e))
}

/// Segment base offsets and snapshot offsets found in `dir`; stray temp files are removed.
fn list_dir(dir: &Path) -> Result<(Vec<i64>, Vec<i64>), MetadataError> {
    let mut segments = Vec::new();
    let mut snapshots = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| MetadataError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| MetadataError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TEMP_SUFFIX) {
            let path = entry.path();
            tracing::warn!(path = %path.display(), "removing unfinished metadata temp file");
            engine_fs::remove_file(&path).map_err(|e| MetadataError::io("remove", &path, e))?;
        } else if let Some(offset) = name.strip_suffix(SEGMENT_SUFFIX).and_then(parse_offset) {
            segments.push(offset);
        } else if let Some(offset) =
            name.strip_prefix(SNAPSHOT_PREFIX).and_then(|rest| rest.strip_suffix(SNAPSHOT_SUFFIX)).and_then(parse_offset)
        {
            snapshots.push(offset);
        }
    }
    segments.sort_unstable();
    snapshots.sort_unstable();
    Ok((segments, snapshots))
}

fn encode_snapshot(image: &MetadataImage) -> Result<Vec<u8>, MetadataError> {
    let payload = SnapshotPayload {
        offset: image.offset,
        epoch: image.epoch,
        cluster_id: image.cluster_id.clone(),
        brokers: image.brokers.values().cloned().collect(),
        topics: image.topics.values().map(|topic| TopicImage::clone(topic)).collect(),
        broker_config: image.broker_config.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    };
    let bytes = rkyv::to_bytes::<rancor::Error>(&payload).map_err(MetadataError::Encode)?;
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + bytes.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.push(SNAPSHOT_SCHEMA_VERSION);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&bytes);
    Ok(out)
}

/// Why a snapshot file was passed over.
enum SnapshotProblem {
    Invalid(String),
    Failed(MetadataError),
}

fn load_snapshot(path: &Path, offset: i64) -> Result<MetadataImage, SnapshotProblem> {
    let invalid = |why: String| SnapshotProblem::Invalid(why);
    let size = fs::metadata(path).map_err(|e| SnapshotProblem::Failed(MetadataError::io("stat", path, e)))?.len();
    if size > METADATA_SNAPSHOT_BYTES_MAX {
        return Err(invalid(format!("{size} bytes is over the limit")));
    }
    let bytes = fs::read(path).map_err(|e| SnapshotProblem::Failed(MetadataError::io("read", path, e)))?;
    if bytes.len() < SNAPSHOT_HEADER_BYTES || &bytes[..4] != SNAPSHOT_MAGIC {
        return Err(invalid("no snapshot header".to_string()));
    }
    if bytes[4] != SNAPSHOT_SCHEMA_VERSION {
        return Err(SnapshotProblem::Failed(MetadataError::UnsupportedSchema {
            path: path.to_path_buf(),
            position: 4,
            version: bytes[4],
            supported: SNAPSHOT_SCHEMA_VERSION,
        }));
    }
    let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let mut length = [0u8; 8];
    length.copy_from_slice(&bytes[12..20]);
    let length = u64::from_le_bytes(length);
    let payload = &bytes[SNAPSHOT_HEADER_BYTES..];
    if payload.len() as u64 != length {
        return Err(invalid(format!("payload is {} bytes, header says {length}", payload.len())));
    }
    if crc32c::crc32c(payload) != crc {
        return Err(invalid("CRC mismatch".to_string()));
    }
    let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    let snapshot = rkyv::from_bytes::<SnapshotPayload, rancor::Error>(&aligned).map_err(|source| {
        SnapshotProblem::Failed(MetadataError::Decode {
            path: path.to_path_buf(),
            position: SNAPSHOT_HEADER_BYTES as u64,
            source,
        })
    })?;
    if snapshot.offset != offset {
        return Err(invalid(format!("holds offset {}, not {offset}", snapshot.offset)));
    }
    let mut image = MetadataImage::empty(&snapshot.cluster_id);
    image.offset = snapshot.offset;
    image.epoch = snapshot.epoch;
    image.brokers = snapshot.brokers.into_iter().map(|broker| (broker.node_id, broker)).collect();
    image.broker_config = snapshot.broker_config.into_iter().collect();
    for topic in snapshot.topics {
        image.topic_ids.insert(topic.id, topic.name.clone());
        image.topics.insert(topic.name.clone(), std::sync::Arc::new(topic));
    }
    Ok(image)
}

/// Cuts `path` to `length` bytes and syncs it.
fn truncate(path: &Path, length: u64) -> Result<(), MetadataError> {
    engine_fs::truncate_synced(path, length).map_err(|e| MetadataError::io("truncate", path, e))
}

/// What replaying one segment found.
struct SegmentScan {
    /// Offset after the segment's last valid batch.
    end_offset: i64,
    last_epoch: i32,
    /// The segment had to be cut: later segments cannot follow it.
    truncated: bool,
}

impl MetadataLog {
    /// Opens (creating if needed) the log in `dir` and rebuilds the image from the newest valid
    /// snapshot plus the log after it. `cluster_id` names the cluster this log must belong to.
    pub fn open(dir: &Path, cluster_id: &str, options: LogOptions) -> Result<(MetadataLog, MetadataImage), MetadataError> {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|e| MetadataError::io("create directory", dir, e))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let (mut segments, mut snapshots) = list_dir(dir)?;
        let mut image = Self::load_newest_snapshot(dir, &mut snapshots)?.unwrap_or_else(|| MetadataImage::empty(cluster_id));
        if image.cluster_id != cluster_id {
            return Err(MetadataError::ClusterIdMismatch { stored: image.cluster_id.clone(), expected: cluster_id.to_string() });
        }
        let snapshot_offset = image.offset;
        let mut last_epoch = image.epoch;
        let mut end_offset = image.offset + 1;

        // The last segment is never covered (nothing follows it), so it is always replayed and
        // `last_scan_end` ends up describing it.
        let mut last_scan_end = None;
        let mut index = 0;
        while index < segments.len() {
            let base = segments[index];
            let covered = segments.get(index + 1).is_some_and(|&next| next <= snapshot_offset + 1);
            if covered {
                index += 1;
                continue;
            }
            let path = dir.join(segment_name(base));
            if last_scan_end.is_none() && base > snapshot_offset + 1 {
                return Err(MetadataError::LogGap { path, snapshot_offset, log_offset: base });
            }
            let scan = Self::replay_segment(&path, base, &mut image, snapshot_offset)?;
            last_epoch = last_epoch.max(scan.last_epoch);
            end_offset = end_offset.max(scan.end_offset);
            last_scan_end = Some(scan.end_offset);
            let gap = segments.get(index + 1).is_some_and(|&next| next != scan.end_offset);
            if gap && !scan.truncated {
                tracing::warn!(
                    path = %path.display(),
                    end_offset = scan.end_offset,
                    "metadata segment does not reach the next one; dropping the segments after it"
                );
            }
            if scan.truncated || gap {
                Self::remove_segments_after(dir, &mut segments, index)?;
            }
            index += 1;
        }

        // The active segment must end where the next append goes. If the log stops short of the
        // snapshot (its tail was cut, or segments were lost), start a new segment after it.
        let next_offset = end_offset;
        let active_base = match (segments.last(), last_scan_end) {
            (Some(&base), Some(end)) if end == next_offset => base,
            _ => {
                // Every listed segment starts at or before the end of the replayed log, so
                // this name is free.
                let path = dir.join(segment_name(next_offset));
                engine_fs::AppendFile::create_new(&path).map_err(|e| MetadataError::io("create", &path, e))?;
                sync_dir(dir)?;
                segments.push(next_offset);
                next_offset
            }
        };
        let active_path = dir.join(segment_name(active_base));
        let active = engine_fs::AppendFile::open(&active_path).map_err(|e| MetadataError::io("open", &active_path, e))?;
        let newest_snapshot = snapshots.last().copied().unwrap_or(-1);
        let log = MetadataLog {
            dir: dir.to_path_buf(),
            options,
            active,
            segments,
            snapshots,
            next_offset,
            last_epoch,
            records_since_snapshot: u64::try_from(next_offset - 1 - newest_snapshot).unwrap_or(0),
            poisoned: false,
        };
        tracing::info!(
            dir = %dir.display(),
            snapshot_offset,
            next_offset,
            topics = image.topics.len(),
            "opened metadata log"
        );
        Ok((log, image))
    }

    /// Removes every segment after `segments[index]`: they cannot follow a cut.
    fn remove_segments_after(dir: &Path, segments: &mut Vec<i64>, index: usize) -> Result<(), MetadataError> {
        if index + 1 >= segments.len() {
            return Ok(());
        }
        for later in segments.drain(index + 1..) {
            let path = dir.join(segment_name(later));
            tracing::warn!(path = %path.display(), "removing metadata segment after a cut");
            engine_fs::remove_file(&path).map_err(|e| MetadataError::io("remove", &path, e))?;
        }
        sync_dir(dir)
    }

    fn load_newest_snapshot(dir: &Path, snapshots: &mut Vec<i64>) -> Result<Option<MetadataImage>, MetadataError> {
        while let Some(&offset) = snapshots.last() {
            let path = dir.join(snapshot_name(offset));
            match load_snapshot(&path, offset) {
                Ok(image) => return Ok(Some(image)),
                Err(SnapshotProblem::Invalid(why)) => {
                    tracing::warn!(path = %path.display(), %why, "skipping invalid metadata snapshot");
                    snapshots.pop();
                }
                Err(SnapshotProblem::Failed(error)) => return Err(error),
            }
        }
        Ok(None)
    }

    /// Replays the batches of one segment that come after `snapshot_offset` into `image`,
    /// cutting the file at the first torn or corrupt frame.
    fn replay_segment(
        path: &Path,
        base: i64,
        image: &mut MetadataImage,
        snapshot_offset: i64,
    ) -> Result<SegmentScan, MetadataError> {
        let file = File::open(path).map_err(|e| MetadataError::io("open", path, e))?;
        let file_bytes = file.metadata().map_err(|e| MetadataError::io("stat", path, e))?.len();
        let mut reader = BufReader::new(file);
        let mut position = 0u64;
        let mut expected_offset = base;
        let mut last_epoch = image.epoch;
        let problem = loop {
            let batch = match read_frame(&mut reader, path, position)? {
                FrameRead::End => break None,
                FrameRead::Torn(why) => break Some(format!("torn frame: {why}")),
                FrameRead::Corrupt(why) => break Some(format!("corrupt frame: {why}")),
                FrameRead::Batch(batch) => batch,
            };
            if batch.base_offset != expected_offset {
                break Some(format!("frame holds offset {}, expected {expected_offset}", batch.base_offset));
            }
            if batch.epoch < last_epoch {
                break Some(format!("frame epoch {} is older than {last_epoch}", batch.epoch));
            }
            let last_offset = batch.last_offset();
            if last_offset > snapshot_offset {
                if batch.base_offset != image.offset + 1 {
                    return Err(MetadataError::LogGap {
                        path: path.to_path_buf(),
                        snapshot_offset,
                        log_offset: batch.base_offset,
                    });
                }
                for (offset, record) in (batch.base_offset..).zip(&batch.records) {
                    image.apply(offset, batch.epoch, record).map_err(|source| MetadataError::Inconsistent {
                        path: path.to_path_buf(),
                        offset,
                        source,
                    })?;
                }
            }
            last_epoch = batch.epoch;
            expected_offset = last_offset + 1;
            position += batch.frame_bytes;
        };
        let truncated = problem.is_some();
        if let Some(why) = problem {
            tracing::warn!(
                path = %path.display(),
                position,
                bytes_cut = file_bytes - position,
                %why,
                "truncating metadata log at the first bad frame"
            );
            truncate(path, position)?;
        }
        Ok(SegmentScan { end_offset: expected_offset, last_epoch, truncated })
    }

    /// Offset the next appended record gets.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Epoch of the last record in the log (or the snapshot); 0 for an empty log.
    pub fn last_epoch(&self) -> i32 {
        self.last_epoch
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn active_path(&self) -> PathBuf {
        // The active segment is always listed.
        let base = self.segments.last().copied().unwrap_or(self.next_offset);
        self.dir.join(segment_name(base))
    }

    /// Appends `records` as one batch written in `epoch` and syncs it. Returns the offset of the
    /// first record. Any write or sync failure poisons the log.
    pub fn append(&mut self, epoch: i32, records: &[MetadataRecord]) -> Result<i64, MetadataError> {
        if self.poisoned {
            return Err(MetadataError::Poisoned);
        }
        if epoch < self.last_epoch {
            return Err(MetadataError::EpochWentBack { epoch, last: self.last_epoch });
        }
        let base_offset = self.next_offset;
        let frame = encode_batch(base_offset, epoch, records)?;
        let path = self.active_path();
        if let Err(error) = self.active.append(&frame) {
            self.poisoned = true;
            return Err(MetadataError::io("write", path, error));
        }
        if let Err(error) = self.active.sync_data() {
            self.poisoned = true;
            return Err(MetadataError::io("fdatasync", path, error));
        }
        self.next_offset += records.len() as i64;
        self.last_epoch = epoch;
        self.records_since_snapshot += records.len() as u64;
        Ok(base_offset)
    }

    /// Whether enough records were appended since the last snapshot to take another.
    pub fn snapshot_due(&self) -> bool {
        self.options.snapshot_interval_records > 0 && self.records_since_snapshot >= self.options.snapshot_interval_records
    }

    /// Writes a snapshot of `image`, which must be the image after the last appended record,
    /// then starts a new segment and drops what the retained snapshots make unnecessary.
    pub fn snapshot(&mut self, image: &MetadataImage) -> Result<(), MetadataError> {
        if self.poisoned {
            return Err(MetadataError::Poisoned);
        }
        assert_eq!(image.offset, self.next_offset - 1, "snapshot of an image that is not the log's head");
        if self.snapshots.last() == Some(&image.offset) {
            return Ok(());
        }
        let bytes = encode_snapshot(image)?;
        let name = snapshot_name(image.offset);
        let path = self.dir.join(&name);
        let temp = self.dir.join(format!("{name}{TEMP_SUFFIX}"));
        engine_fs::write_synced(&temp, &bytes).map_err(|e| MetadataError::io("write", &temp, e))?;
        engine_fs::rename(&temp, &path).map_err(|e| MetadataError::io("rename", &path, e))?;
        sync_dir(&self.dir)?;
        self.snapshots.push(image.offset);
        self.records_since_snapshot = 0;
        tracing::info!(path = %path.display(), "wrote metadata snapshot");
        self.roll()?;
        self.drop_unneeded()
    }

    /// Starts a new active segment at the next offset.
    fn roll(&mut self) -> Result<(), MetadataError> {
        if self.segments.last() == Some(&self.next_offset) {
            return Ok(());
        }
        let path = self.dir.join(segment_name(self.next_offset));
        let file = engine_fs::AppendFile::create_new(&path).map_err(|e| MetadataError::io("create", &path, e))?;
        // Appends into a file whose directory entry may not be durable could be lost: a failed
        // directory sync poisons the log like a failed fdatasync.
        if let Err(error) = sync_dir(&self.dir) {
            self.poisoned = true;
            return Err(error);
        }
        self.active = file;
        self.segments.push(self.next_offset);
        Ok(())
    }

    /// Removes snapshots beyond the retained count and segments older than the oldest kept
    /// snapshot.
    fn drop_unneeded(&mut self) -> Result<(), MetadataError> {
        while self.snapshots.len() > SNAPSHOTS_RETAINED {
            let offset = self.snapshots.remove(0);
            let path = self.dir.join(snapshot_name(offset));
            engine_fs::remove_file(&path).map_err(|e| MetadataError::io("remove", &path, e))?;
        }
        if !self.options.delete_covered_segments || self.snapshots.len() < SNAPSHOTS_RETAINED {
            return Ok(());
        }
        let oldest_kept = self.snapshots[0];
        while self.segments.len() > 1 && self.segments[1] <= oldest_kept + 1 {
            let base = self.segments.remove(0);
            let path = self.dir.join(segment_name(base));
            engine_fs::remove_file(&path).map_err(|e| MetadataError::io("remove", &path, e))?;
        }
        Ok(())
    }

    /// Bytes in the active segment (for tests and metrics).
    pub fn active_segment_bytes(&mut self) -> Result<u64, MetadataError> {
        let path = self.active_path();
        std::fs::metadata(&path).map(|meta| meta.len()).map_err(|e| MetadataError::io("stat", path, e))
    }
}

/// Reads every frame of a segment file, for tests that inspect the bytes.
#[cfg(test)]
pub(crate) fn read_all_batches(path: &Path) -> Vec<super::record::Batch> {
    let mut reader = BufReader::new(File::open(path).unwrap());
    let mut batches = Vec::new();
    let mut position = 0;
    while let FrameRead::Batch(batch) = read_frame(&mut reader, path, position).unwrap() {
        position += batch.frame_bytes;
        batches.push(batch);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(node_id: i32) -> MetadataRecord {
        MetadataRecord::RegisterBroker { node_id, host: "h".into(), port: 9092, rack: None }
    }

    fn config(value: &str) -> MetadataRecord {
        MetadataRecord::AlterBrokerConfig { set: vec![("log.retention.ms".into(), Some(value.into()))] }
    }

    fn open(dir: &Path, options: LogOptions) -> (MetadataLog, MetadataImage) {
        MetadataLog::open(dir, "cluster", options).unwrap()
    }

    fn append_applied(log: &mut MetadataLog, image: &mut MetadataImage, records: &[MetadataRecord]) {
        let base = log.append(1, records).unwrap();
        for (offset, record) in (base..).zip(records) {
            image.apply(offset, 1, record).unwrap();
        }
    }

    fn no_snapshots() -> LogOptions {
        LogOptions { snapshot_interval_records: 0, delete_covered_segments: true }
    }

    #[test]
    fn appended_batches_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut image) = open(dir.path(), no_snapshots());
        append_applied(&mut log, &mut image, &[broker(1)]);
        append_applied(&mut log, &mut image, &[config("1"), config("2")]);
        assert_eq!(log.next_offset(), 3);
        drop(log);
        let (log, reopened) = open(dir.path(), no_snapshots());
        assert_eq!(reopened, image);
        assert_eq!(reopened.offset, 2);
        assert_eq!(reopened.broker_config["log.retention.ms"], "2");
        assert_eq!(log.next_offset(), 3);
        assert_eq!(log.last_epoch(), 1);
        assert!(dir.path().join("00000000000000000000.log").exists());
    }

    #[test]
    fn torn_tail_is_cut_on_reopen_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut image) = open(dir.path(), no_snapshots());
        append_applied(&mut log, &mut image, &[broker(1)]);
        let good_bytes = log.active_segment_bytes().unwrap();
        append_applied(&mut log, &mut MetadataImage::empty("x"), &[config("torn"), config("torn2")]);
        drop(log);
        // Cut the second batch mid-frame, as a crash during write would.
        let path = dir.path().join(segment_name(0));
        let full = fs::metadata(&path).unwrap().len();
        truncate(&path, good_bytes + (full - good_bytes) / 2).unwrap();

        let (mut log, reopened) = open(dir.path(), no_snapshots());
        assert_eq!(reopened, image, "the torn batch is gone whole");
        assert_eq!(fs::metadata(&path).unwrap().len(), good_bytes);
        assert_eq!(log.next_offset(), 1);
        let mut image = reopened;
        append_applied(&mut log, &mut image, &[config("after")]);
        drop(log);
        let (_, again) = open(dir.path(), no_snapshots());
        assert_eq!(again.broker_config["log.retention.ms"], "after");
        assert_eq!(again.offset, 1);
    }

    #[test]
    fn garbage_after_the_last_frame_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut image) = open(dir.path(), no_snapshots());
        append_applied(&mut log, &mut image, &[broker(1)]);
        let good_bytes = log.active_segment_bytes().unwrap();
        drop(log);
        let path = dir.path().join(segment_name(0));
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut file, &[0xAB; 100]).unwrap();
        drop(file);
        let (_, reopened) = open(dir.path(), no_snapshots());
        assert_eq!(reopened, image);
        assert_eq!(fs::metadata(&path).unwrap().len(), good_bytes);
    }

    #[test]
    fn corrupt_crc_cuts_that_batch_and_everything_after() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut image) = open(dir.path(), no_snapshots());
        append_applied(&mut log, &mut image, &[broker(1)]);
        let good_bytes = log.active_segment_bytes().unwrap();
        append_applied(&mut log, &mut MetadataImage::empty("x"), &[config("bad")]);
        append_applied(&mut log, &mut MetadataImage::empty("x"), &[config("after bad")]);
        drop(log);
        let path = dir.path().join(segment_name(0));
        let mut bytes = fs::read(&path).unwrap();
        let flip = good_bytes as usize + 30;
        bytes[flip] ^= 0x01;
        fs::write(&path, &bytes).unwrap();

        let (log, reopened) = open(dir.path(), no_snapshots());
        assert_eq!(reopened, image);
        assert_eq!(log.next_offset(), 1);
        assert_eq!(fs::metadata(&path).unwrap().len(), good_bytes);
        assert_eq!(read_all_batches(&path).len(), 1);
    }

    #[test]
    fn snapshot_rolls_segment_and_reopen_uses_it() {
        let dir = tempfile::tempdir().unwrap();
        let options = LogOptions { snapshot_interval_records: 3, delete_covered_segments: true };
        let (mut log, mut image) = open(dir.path(), options.clone());
        for round in 0..10 {
            append_applied(&mut log, &mut image, &[config(&round.to_string())]);
            if log.snapshot_due() {
                log.snapshot(&image).unwrap();
            }
        }
        // Snapshots at offsets 2, 5, 8; only the newest two are kept, and the segments before
        // the older one are gone.
        assert_eq!(log.snapshots, vec![5, 8]);
        assert_eq!(log.segments, vec![6, 9]);
        drop(log);
        let (log, reopened) = open(dir.path(), options);
        assert_eq!(reopened, image);
        assert_eq!(log.next_offset(), 10);
    }

    #[test]
    fn invalid_newest_snapshot_falls_back_to_the_older_one() {
        let dir = tempfile::tempdir().unwrap();
        let options = LogOptions { snapshot_interval_records: 2, delete_covered_segments: true };
        let (mut log, mut image) = open(dir.path(), options.clone());
        for round in 0..5 {
            append_applied(&mut log, &mut image, &[config(&round.to_string())]);
            if log.snapshot_due() {
                log.snapshot(&image).unwrap();
            }
        }
        assert_eq!(log.snapshots, vec![1, 3]);
        drop(log);
        let newest = dir.path().join(snapshot_name(3));
        let mut bytes = fs::read(&newest).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&newest, bytes).unwrap();
        let (_, reopened) = open(dir.path(), options);
        assert_eq!(reopened, image);
    }

    #[test]
    fn another_clusters_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let options = LogOptions { snapshot_interval_records: 1, delete_covered_segments: true };
        let (mut log, mut image) = open(dir.path(), options.clone());
        append_applied(&mut log, &mut image, &[broker(1)]);
        log.snapshot(&image).unwrap();
        drop(log);
        let result = MetadataLog::open(dir.path(), "other", options);
        assert!(matches!(result, Err(MetadataError::ClusterIdMismatch { .. })));
    }

    #[test]
    fn corrupt_middle_segment_drops_the_segments_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let options = LogOptions { snapshot_interval_records: 2, delete_covered_segments: false };
        let (mut log, mut image) = open(dir.path(), options.clone());
        let mut after_first_segment = None;
        for round in 0..7 {
            append_applied(&mut log, &mut image, &[config(&round.to_string())]);
            if log.snapshot_due() {
                log.snapshot(&image).unwrap();
                after_first_segment.get_or_insert_with(|| image.clone());
            }
        }
        assert_eq!(log.segments, vec![0, 2, 4, 6]);
        drop(log);
        // Without snapshots, recovery must replay from segment 0 and meet the damage in 2.
        for offset in [1, 3, 5] {
            let _ = fs::remove_file(dir.path().join(snapshot_name(offset)));
        }
        let middle = dir.path().join(segment_name(2));
        let mut bytes = fs::read(&middle).unwrap();
        bytes[10] ^= 0x10;
        fs::write(&middle, bytes).unwrap();

        let (log, reopened) = open(dir.path(), options);
        assert_eq!(Some(reopened), after_first_segment);
        assert_eq!(log.segments, vec![0, 2]);
        assert_eq!(log.next_offset(), 2);
        assert_eq!(fs::metadata(&middle).unwrap().len(), 0);
        assert!(!dir.path().join(segment_name(4)).exists());
        assert!(!dir.path().join(segment_name(6)).exists());
    }

    #[test]
    fn write_failure_poisons_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), no_snapshots());
        // A failing disk: the simulated disk fails the next write of the segment.
        let disk = fjord_engine::sim_disk::SimDisk::attach(dir.path()).unwrap();
        disk.inject(fjord_engine::sim_disk::Fault {
            op: fjord_engine::sim_disk::Op::Write,
            name_contains: ".log".into(),
            errno: libc::EIO,
            skip: 0,
            count: 1,
        });
        assert!(matches!(log.append(1, &[broker(1)]), Err(MetadataError::Io { .. })));
        disk.detach();
        assert!(log.is_poisoned());
        assert!(matches!(log.append(1, &[broker(1)]), Err(MetadataError::Poisoned)));
        assert_eq!(log.next_offset(), 0);
    }

    /// The metadata log on the simulated disk (engine/src/sim_disk.rs), crashed after each of
    /// its file operations in turn during appends, snapshots and rolls: a crash keeps only what
    /// was synced, and the reopened image holds every acknowledged append, nothing torn.
    #[test]
    fn acknowledged_records_survive_a_crash_at_every_step_of_appends_snapshots_and_rolls() {
        use fjord_engine::sim_disk::{CrashMode, SimDisk};
        let options = || LogOptions { snapshot_interval_records: 3, delete_covered_segments: true };
        let mut total = None;
        let mut point = 0usize;
        loop {
            let dir = tempfile::tempdir().unwrap();
            let disk = SimDisk::attach(dir.path()).unwrap();
            let before = disk.operations();
            if total.is_some() {
                disk.freeze_after(point);
            }
            let mut acknowledged = 0;
            if let Ok((mut log, mut image)) = MetadataLog::open(dir.path(), "cluster", options()) {
                for node_id in 1..=10 {
                    let Ok(base) = log.append(1, &[broker(node_id)]) else { break };
                    image.apply(base, 1, &broker(node_id)).unwrap();
                    acknowledged = node_id;
                    if log.snapshot_due() && log.snapshot(&image).is_err() {
                        break;
                    }
                }
            }
            let operations = disk.operations() - before;
            disk.crash(CrashMode::DropUnsynced).unwrap();
            let (_, reopened) = MetadataLog::open(dir.path(), "cluster", options())
                .unwrap_or_else(|error| panic!("crash after {point} of {total:?} operations: reopen failed: {error}"));
            disk.detach();
            for node_id in 1..=acknowledged {
                assert!(
                    reopened.brokers.contains_key(&node_id),
                    "crash after {point} of {total:?} operations: acknowledged broker {node_id} lost ({:?})",
                    reopened.brokers.keys().collect::<Vec<_>>()
                );
            }
            match total {
                None => total = Some(operations),
                Some(total) if point >= total => break,
                Some(_) => point += 1,
            }
        }
        assert!(total.is_some_and(|total| total > 10), "{total:?} operations");
    }

    #[test]
    fn epoch_may_not_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path(), no_snapshots());
        log.append(5, &[broker(1)]).unwrap();
        assert!(matches!(log.append(4, &[broker(1)]), Err(MetadataError::EpochWentBack { .. })));
        assert_eq!(log.last_epoch(), 5);
    }
}
