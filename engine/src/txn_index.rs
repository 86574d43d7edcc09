//! The aborted-transaction index of one partition (KIP-98): which offset ranges of which producer
//! belong to aborted transactions, so read_committed consumers can drop those records.
//!
//! ```text
//!  memory:  marker offset ─▶ (AbortedTxn, bucket)        ordered by the abort marker's offset
//!  disk:    <bucket, 20 digits>.txnindex                 Kafka's layout, 34 bytes per entry:
//!             | version i16 = 0 | producer id i64 | first offset i64 | last offset i64 |
//!             | last stable offset i64 |                 (big-endian, no header)
//! ```
//! A bucket is the base offset of the segment that was active when the abort marker was written,
//! so each `.txnindex` file sits next to the segment holding its markers, as in Kafka. Compaction
//! merges segments without touching these files: a merged segment may then own several buckets
//! (all at or above its base offset). Retention removes the buckets below the first segment left;
//! truncation removes or rewrites the buckets at or past the new end.
//!
//! Entries are appended and fsynced *before* the abort marker's own write (see `Partition`), so a
//! marker on disk always has its entry; an entry whose marker a crash lost lies at or past the
//! recovered log end and is dropped on open.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::limits::ABORTED_TXNS_PER_READ_MAX;

pub const TXN_INDEX_SUFFIX: &str = "txnindex";

/// Bytes of one `.txnindex` entry (Kafka's `AbortedTxn.TOTAL_SIZE`).
pub const TXN_INDEX_ENTRY_BYTES: usize = 34;

const TXN_INDEX_VERSION: i16 = 0;

/// One aborted transaction: its producer, the offsets of its first record and of its abort
/// marker, and the last stable offset when it was aborted (Kafka's value: the first offset of the
/// oldest other transaction still open, or the marker's offset + 1). A read stops collecting at an
/// entry whose last stable offset reaches its upper bound: every transaction starting below that
/// had completed earlier, so its entry came before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    pub fn encode(&self) -> [u8; TXN_INDEX_ENTRY_BYTES] {
        let mut out = [0u8; TXN_INDEX_ENTRY_BYTES];
        out[0..2].copy_from_slice(&TXN_INDEX_VERSION.to_be_bytes());
        out[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        out[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        out
    }

    /// `None` for an entry that cannot be one this broker wrote (wrong version, offsets that do
    /// not nest): the file is read no further.
    pub fn decode(bytes: &[u8]) -> Option<AbortedTxn> {
        let bytes: &[u8; TXN_INDEX_ENTRY_BYTES] = bytes.get(..TXN_INDEX_ENTRY_BYTES)?.try_into().ok()?;
        let i64_at = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        if i16::from_be_bytes([bytes[0], bytes[1]]) != TXN_INDEX_VERSION {
            return None;
        }
        let txn = AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        };
        (txn.producer_id >= 0 && 0 <= txn.first_offset && txn.first_offset <= txn.last_offset).then_some(txn)
    }
}

/// `<dir>/<bucket, 20 digits>.txnindex`.
pub fn txn_index_path(dir: &Path, bucket: i64) -> PathBuf {
    dir.join(crate::segment::file_name(bucket, TXN_INDEX_SUFFIX))
}

/// Buckets of the `.txnindex` files in `dir`, ascending.
pub fn list_txn_indexes(dir: &Path) -> Vec<i64> {
    crate::segment::list_offsets(dir, TXN_INDEX_SUFFIX)
}

/// Reads the entries of one file, up to the first torn or invalid one.
fn read_file(path: &Path) -> std::io::Result<(Vec<AbortedTxn>, bool)> {
    let bytes = std::fs::read(path)?;
    let mut entries = Vec::with_capacity(bytes.len() / TXN_INDEX_ENTRY_BYTES);
    for chunk in bytes.chunks(TXN_INDEX_ENTRY_BYTES) {
        match AbortedTxn::decode(chunk) {
            Some(txn) => entries.push(txn),
            None => return Ok((entries, false)),
        }
    }
    Ok((entries, true))
}

/// Writes `entries` as the whole file (temporary file, fsync, rename, fsync dir); no entries:
/// the file is removed.
fn rewrite_file(dir: &Path, bucket: i64, entries: &[AbortedTxn]) -> std::io::Result<()> {
    let path = txn_index_path(dir, bucket);
    if entries.is_empty() {
        return crate::fs::remove_durably(&[&path], dir);
    }
    let bytes: Vec<u8> = entries.iter().flat_map(|txn| txn.encode()).collect();
    crate::fs::write_durably(&path, &bytes)
}

/// Every aborted transaction of one partition whose marker is in the log. Lives on the shard
/// that owns the partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AbortedIndex {
    /// Keyed by the abort marker's offset (`last_offset`), which is unique.
    entries: BTreeMap<i64, (AbortedTxn, i64)>,
}

impl AbortedIndex {
    /// Loads the `.txnindex` files of `dir`, keeping the entries of markers in
    /// `[log_start_offset, end_offset)`. Files below `first_segment_base` (their segments were
    /// removed) go; files that held entries past the end or a torn tail are rewritten without them.
    pub fn load(dir: &Path, log_start_offset: i64, first_segment_base: i64, end_offset: i64) -> std::io::Result<AbortedIndex> {
        let mut index = AbortedIndex::default();
        for bucket in list_txn_indexes(dir) {
            let path = txn_index_path(dir, bucket);
            if bucket < first_segment_base || bucket >= end_offset {
                rewrite_file(dir, bucket, &[])?;
                continue;
            }
            let (entries, complete) = read_file(&path)?;
            let kept: Vec<AbortedTxn> =
                entries.iter().copied().filter(|txn| txn.last_offset < end_offset && txn.last_offset >= bucket).collect();
            if !complete || kept.len() != entries.len() {
                tracing::info!(file = %path.display(), dropped = entries.len() - kept.len(), complete, "aborted transaction index rewritten on open");
                rewrite_file(dir, bucket, &kept)?;
            }
            for txn in kept.into_iter().filter(|txn| txn.last_offset >= log_start_offset) {
                index.entries.insert(txn.last_offset, (txn, bucket));
            }
        }
        Ok(index)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Whether the abort marker at `marker_offset` has its entry.
    pub fn contains(&self, marker_offset: i64) -> bool {
        self.entries.contains_key(&marker_offset)
    }

    /// Every entry, oldest marker first.
    pub fn all(&self) -> Vec<AbortedTxn> {
        self.entries.values().map(|(txn, _)| *txn).collect()
    }

    /// Records an entry in memory; [`AbortedIndex::append_to_file`] makes it durable.
    pub fn insert(&mut self, txn: AbortedTxn, bucket: i64) {
        assert!(txn.first_offset <= txn.last_offset && bucket <= txn.last_offset, "aborted txn {txn:?} in bucket {bucket}");
        self.entries.insert(txn.last_offset, (txn, bucket));
    }

    /// Appends entries to the bucket's file and fsyncs it (and the directory for a new file).
    pub fn append_to_file(dir: &Path, bucket: i64, entries: &[AbortedTxn]) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let path = txn_index_path(dir, bucket);
        let mut bytes = Vec::with_capacity(entries.len() * TXN_INDEX_ENTRY_BYTES);
        for txn in entries {
            bytes.extend_from_slice(&txn.encode());
        }
        crate::fs::append_durably(&path, &bytes)
    }

    /// Kafka's `collectAbortedTxns`: entries whose marker is at or after `fetch_offset` and whose
    /// first offset is below `upper_bound_offset`, oldest first; stops at the first entry whose last
    /// stable offset reaches the bound (nothing later can start below it). At most
    /// [`ABORTED_TXNS_PER_READ_MAX`].
    pub fn collect(&self, fetch_offset: i64, upper_bound_offset: i64) -> Vec<AbortedTxn> {
        let mut found = Vec::new();
        for (txn, _) in self.entries.range(fetch_offset..).map(|(_, entry)| entry) {
            if txn.first_offset < upper_bound_offset {
                if found.len() == ABORTED_TXNS_PER_READ_MAX {
                    tracing::warn!(
                        fetch_offset,
                        upper_bound_offset,
                        max = ABORTED_TXNS_PER_READ_MAX,
                        "aborted transactions of one read capped"
                    );
                    break;
                }
                found.push(*txn);
            }
            if txn.last_stable_offset >= upper_bound_offset {
                break;
            }
        }
        found
    }

    /// The log start moved (retention, DeleteRecords): entries whose marker is below it go from
    /// memory, files of buckets below the first segment left go from disk.
    pub fn drop_below(&mut self, dir: &Path, log_start_offset: i64, first_segment_base: i64) -> std::io::Result<()> {
        self.drop_below_in_memory(dir, log_start_offset, first_segment_base).apply()
    }

    /// [`AbortedIndex::drop_below`] in memory now; the file changes it implies are returned, to be
    /// made durable off the shard.
    pub fn drop_below_in_memory(&mut self, dir: &Path, log_start_offset: i64, first_segment_base: i64) -> IndexFileChanges {
        self.entries = self.entries.split_off(&log_start_offset);
        IndexFileChanges { dir: dir.to_path_buf(), rewrites: Vec::new(), remove: BucketRange::Below(first_segment_base) }
    }

    /// The log was truncated to `offset`: entries of markers at or after it go, from memory and
    /// from disk (buckets at or past it are removed, the one before it rewritten).
    pub fn truncate_to(&mut self, dir: &Path, offset: i64) -> std::io::Result<()> {
        self.truncate_in_memory(dir, offset).apply()
    }

    /// [`AbortedIndex::truncate_to`] in memory now; the file changes it implies are returned, to
    /// be made durable off the shard.
    pub fn truncate_in_memory(&mut self, dir: &Path, offset: i64) -> IndexFileChanges {
        let dropped = self.entries.split_off(&offset);
        let mut touched: Vec<i64> = dropped.values().map(|(_, bucket)| *bucket).collect();
        touched.sort_unstable();
        touched.dedup();
        let rewrites = touched
            .into_iter()
            .map(|bucket| {
                let kept = self.entries.values().filter(|(_, kept)| *kept == bucket).map(|(txn, _)| *txn).collect();
                (bucket, kept)
            })
            .collect();
        // Every kept entry lies below `offset`, and so does its bucket: a file at or past it
        // keeps nothing.
        IndexFileChanges { dir: dir.to_path_buf(), rewrites, remove: BucketRange::AtOrAbove(offset) }
    }
}

/// Buckets whose files an index change removes, whichever exist on disk when it is applied.
#[derive(Debug, Clone, Copy)]
enum BucketRange {
    Below(i64),
    AtOrAbove(i64),
}

/// The `.txnindex` file changes an in-memory change of an [`AbortedIndex`] implies: files
/// rewritten with the entries they keep (removed when they keep none), each durably. `Send`, so
/// [`IndexFileChanges::apply`] can run on the shard's blocking pool.
#[must_use = "the index on disk changes only when the changes are applied"]
#[derive(Debug)]
pub struct IndexFileChanges {
    dir: PathBuf,
    rewrites: Vec<(i64, Vec<AbortedTxn>)>,
    remove: BucketRange,
}

impl IndexFileChanges {
    /// Makes the changes durable, bucket by bucket in ascending order (blocking).
    pub fn apply(self) -> std::io::Result<()> {
        let mut touched: BTreeMap<i64, Vec<AbortedTxn>> = self.rewrites.into_iter().collect();
        for bucket in list_txn_indexes(&self.dir) {
            let removed = match self.remove {
                BucketRange::Below(end) => bucket < end,
                BucketRange::AtOrAbove(start) => bucket >= start,
            };
            if removed {
                touched.entry(bucket).or_default();
            }
        }
        for (bucket, kept) in touched {
            rewrite_file(&self.dir, bucket, &kept)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn txn(producer_id: i64, first_offset: i64, last_offset: i64, last_stable_offset: i64) -> AbortedTxn {
        AbortedTxn { producer_id, first_offset, last_offset, last_stable_offset }
    }

    #[test]
    fn entry_is_kafkas_34_byte_layout() {
        let bytes = txn(0x0102, 3, 9, 10).encode();
        assert_eq!(bytes.len(), 34);
        assert_eq!(&bytes[..2], &[0, 0], "version 0");
        assert_eq!(&bytes[2..10], &0x0102i64.to_be_bytes());
        assert_eq!(&bytes[26..34], &10i64.to_be_bytes());
        assert_eq!(AbortedTxn::decode(&bytes), Some(txn(0x0102, 3, 9, 10)));
        let mut bad = bytes;
        bad[1] = 1;
        assert_eq!(AbortedTxn::decode(&bad), None, "unknown version");
    }

    #[test]
    fn collect_returns_overlapping_entries_and_stops_at_a_stable_offset_past_the_bound() {
        let mut index = AbortedIndex::default();
        // Producer 1 aborts [0, 5] while producer 2 is open from 3; 2 aborts [3, 8]; 3 aborts [20, 22].
        index.insert(txn(1, 0, 5, 3), 0);
        index.insert(txn(2, 3, 8, 9), 0);
        index.insert(txn(3, 20, 22, 23), 0);
        assert_eq!(index.collect(0, 4), vec![txn(1, 0, 5, 3), txn(2, 3, 8, 9)]);
        assert_eq!(index.collect(6, 9), vec![txn(2, 3, 8, 9)]);
        assert_eq!(index.collect(9, 20), vec![], "[20, 22] starts at the bound");
        assert_eq!(index.collect(9, 21), vec![txn(3, 20, 22, 23)]);
        assert_eq!(index.collect(23, 100), vec![]);
    }

    #[test]
    fn files_survive_reload_and_drop_entries_past_the_end_or_below_the_start() {
        let dir = tempfile::tempdir().unwrap();
        AbortedIndex::append_to_file(dir.path(), 0, &[txn(1, 0, 5, 6), txn(2, 1, 9, 10)]).unwrap();
        AbortedIndex::append_to_file(dir.path(), 10, &[txn(3, 11, 12, 13)]).unwrap();
        let loaded = AbortedIndex::load(dir.path(), 0, 0, 100).unwrap();
        assert_eq!(loaded.all(), vec![txn(1, 0, 5, 6), txn(2, 1, 9, 10), txn(3, 11, 12, 13)]);
        // A crash lost the log from 9 on: the entries of markers at 9 and 12 go, on disk too.
        let loaded = AbortedIndex::load(dir.path(), 0, 0, 9).unwrap();
        assert_eq!(loaded.all(), vec![txn(1, 0, 5, 6)]);
        assert_eq!(list_txn_indexes(dir.path()), vec![0]);
        // A torn entry at the end of a file is cut.
        let mut file = std::fs::OpenOptions::new().append(true).open(txn_index_path(dir.path(), 0)).unwrap();
        file.write_all(&txn(4, 6, 7, 8).encode()[..20]).unwrap();
        assert_eq!(AbortedIndex::load(dir.path(), 0, 0, 100).unwrap().all(), vec![txn(1, 0, 5, 6)]);
        assert_eq!(std::fs::metadata(txn_index_path(dir.path(), 0)).unwrap().len(), 34);
        assert!(AbortedIndex::load(dir.path(), 6, 0, 100).unwrap().is_empty(), "below the log start");
    }

    #[test]
    fn truncation_and_retention_remove_entries_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = AbortedIndex::default();
        for (bucket, entry) in [(0, txn(1, 0, 5, 6)), (0, txn(2, 1, 9, 10)), (10, txn(3, 11, 12, 13)), (20, txn(3, 21, 22, 23))] {
            AbortedIndex::append_to_file(dir.path(), bucket, &[entry]).unwrap();
            index.insert(entry, bucket);
        }
        index.truncate_to(dir.path(), 9).unwrap();
        assert_eq!(index.all(), vec![txn(1, 0, 5, 6)]);
        assert_eq!(list_txn_indexes(dir.path()), vec![0]);
        assert_eq!(AbortedIndex::load(dir.path(), 0, 0, 100).unwrap(), index);
        index.drop_below(dir.path(), 6, 8).unwrap();
        assert!(index.is_empty());
        assert_eq!(list_txn_indexes(dir.path()), Vec::<i64>::new());
    }
}
