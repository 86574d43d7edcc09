//! Sparse per-segment indexes, kept in memory and written beside the segment when it is sealed.
//!
//! ```text
//!  offset index: [relative offset u32][byte position u32] ... one entry per ~4 KiB of log
//!  time index:   [max timestamp i64][relative offset u32] ... monotonic in timestamp
//!  file:         ["FJI2" u32][covered segment bytes u64][entry count u32][crc32c u32][entries]
//! ```
//! A stored index is trusted only if it covers exactly the segment's current size and its CRC
//! matches; otherwise it is stale and recovery rebuilds it from the batch headers.

use std::io;
use std::path::Path;

/// "FJI2": time entries are what the records say (an "FJIX" index trusted the producer's batch
/// max timestamp, so it is stale and rebuilt).
const INDEX_MAGIC: u32 = u32::from_be_bytes(*b"FJI2");
const INDEX_FILE_HEADER_BYTES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp_ms: i64,
    pub relative_offset: u32,
}

/// Both indexes of one segment. Lives on the shard that owns the partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SegmentIndex {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
}

impl SegmentIndex {
    pub fn push_offset(&mut self, relative_offset: u32, position: u32) {
        debug_assert!(self.offsets.last().is_none_or(|last| last.relative_offset < relative_offset));
        self.offsets.push(OffsetEntry { relative_offset, position });
    }

    /// Records a batch's max timestamp if it is a new maximum for the segment.
    pub fn push_time(&mut self, timestamp_ms: i64, relative_offset: u32) {
        if self.times.last().is_none_or(|last| timestamp_ms > last.timestamp_ms) {
            self.times.push(TimeEntry { timestamp_ms, relative_offset });
        }
    }

    /// Byte position of the last indexed batch starting at or before `relative_offset`.
    pub fn position_floor(&self, relative_offset: u32) -> u32 {
        let index = self.offsets.partition_point(|entry| entry.relative_offset <= relative_offset);
        if index == 0 {
            0
        } else {
            self.offsets[index - 1].position
        }
    }

    /// Relative offset to start searching from for the first batch with max timestamp >= target.
    pub fn time_floor(&self, timestamp_ms: i64) -> u32 {
        let index = self.times.partition_point(|entry| entry.timestamp_ms < timestamp_ms);
        if index == 0 {
            0
        } else {
            self.times[index - 1].relative_offset
        }
    }

    /// Drops entries at or after `position` (truncation).
    pub fn truncate_to_position(&mut self, position: u32, relative_offset: u32) {
        self.offsets.retain(|entry| entry.position < position);
        self.times.retain(|entry| entry.relative_offset < relative_offset);
    }

    pub fn encode(&self, covered_bytes: u64) -> Vec<u8> {
        let mut body = Vec::with_capacity(4 + self.offsets.len() * 8 + self.times.len() * 12);
        body.extend((self.times.len() as u32).to_be_bytes());
        for entry in &self.offsets {
            body.extend(entry.relative_offset.to_be_bytes());
            body.extend(entry.position.to_be_bytes());
        }
        for entry in &self.times {
            body.extend(entry.timestamp_ms.to_be_bytes());
            body.extend(entry.relative_offset.to_be_bytes());
        }
        let mut out = Vec::with_capacity(INDEX_FILE_HEADER_BYTES + body.len());
        out.extend(INDEX_MAGIC.to_be_bytes());
        out.extend(covered_bytes.to_be_bytes());
        out.extend((self.offsets.len() as u32).to_be_bytes());
        out.extend(crc32c::crc32c(&body).to_be_bytes());
        out.extend(body);
        out
    }

    /// Decodes a stored index; `None` if it is damaged or does not cover `segment_bytes`.
    pub fn decode(bytes: &[u8], segment_bytes: u64) -> Option<SegmentIndex> {
        if bytes.len() < INDEX_FILE_HEADER_BYTES + 4 {
            return None;
        }
        let magic = u32::from_be_bytes(bytes[0..4].try_into().ok()?);
        let covered = u64::from_be_bytes(bytes[4..12].try_into().ok()?);
        let offset_count = u32::from_be_bytes(bytes[12..16].try_into().ok()?) as usize;
        let crc = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
        let body = &bytes[INDEX_FILE_HEADER_BYTES..];
        if magic != INDEX_MAGIC || covered != segment_bytes || crc32c::crc32c(body) != crc {
            return None;
        }
        let time_count = u32::from_be_bytes(body[0..4].try_into().ok()?) as usize;
        if body.len() != 4 + offset_count * 8 + time_count * 12 {
            return None;
        }
        let mut index = SegmentIndex::default();
        let mut at = 4;
        for _ in 0..offset_count {
            let relative_offset = u32::from_be_bytes(body[at..at + 4].try_into().ok()?);
            let position = u32::from_be_bytes(body[at + 4..at + 8].try_into().ok()?);
            index.offsets.push(OffsetEntry { relative_offset, position });
            at += 8;
        }
        for _ in 0..time_count {
            let timestamp_ms = i64::from_be_bytes(body[at..at + 8].try_into().ok()?);
            let relative_offset = u32::from_be_bytes(body[at + 8..at + 12].try_into().ok()?);
            index.times.push(TimeEntry { timestamp_ms, relative_offset });
            at += 12;
        }
        Some(index)
    }

    pub fn load(path: &Path, segment_bytes: u64) -> Option<SegmentIndex> {
        let bytes = std::fs::read(path).ok()?;
        SegmentIndex::decode(&bytes, segment_bytes)
    }

    /// Writes the index durably (temp file, fsync, rename, fsync of the directory).
    pub fn store(&self, path: &Path, covered_bytes: u64) -> io::Result<()> {
        crate::fs::write_durably(path, &self.encode(covered_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_lookup_finds_last_entry_at_or_before() {
        let mut index = SegmentIndex::default();
        index.push_offset(0, 0);
        index.push_offset(10, 4096);
        index.push_offset(25, 9000);
        assert_eq!(index.position_floor(0), 0);
        assert_eq!(index.position_floor(9), 0);
        assert_eq!(index.position_floor(10), 4096);
        assert_eq!(index.position_floor(24), 4096);
        assert_eq!(index.position_floor(1000), 9000);
    }

    #[test]
    fn stored_index_round_trips_and_stale_index_is_rejected() {
        let mut index = SegmentIndex::default();
        index.push_offset(0, 0);
        index.push_offset(7, 5000);
        index.push_time(100, 0);
        index.push_time(90, 3); // not a new maximum: ignored
        index.push_time(200, 7);
        let bytes = index.encode(12345);
        assert_eq!(SegmentIndex::decode(&bytes, 12345), Some(index.clone()));
        assert_eq!(SegmentIndex::decode(&bytes, 12346), None, "covers a different size: stale");
        let mut damaged = bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert_eq!(SegmentIndex::decode(&damaged, 12345), None);
        assert_eq!(index.time_floor(150), 0);
        assert_eq!(index.time_floor(201), 7);
    }
}
