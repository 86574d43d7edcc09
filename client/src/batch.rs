//! Reading RecordBatch v2 (magic 2) as Kafka documents it (`DefaultRecordBatch`), written here
//! rather than borrowed from the broker so the tools see only what any client sees on the wire.
//!
//! ```text
//!  0        8         12             16     17    21          23               27
//!  | base   | batch   | partition    |magic | crc | attributes| last offset     |
//!  | offset | length  | leader epoch | (=2) |     |           | delta           |
//!  27             35            43            51             53             57         61
//!  | base         | max         | producer    | producer     | base         | records  |
//!  | timestamp    | timestamp   | id          | epoch        | sequence     | count    |
//! ```
//! The CRC32C covers bytes 21..end (attributes through the last record); `batch length` counts
//! the bytes after itself. A Fetch response's records are whole batches back to back, but the
//! broker may cut the last one at the fetch size: [`Batches`] yields the whole ones and leaves
//! the tail (the next fetch starts at its offset).

use std::ops::Range;

use bytes::{Buf, Bytes};
use kafka_protocol::records::{Record, RecordBatchDecoder};

/// Base offset plus batch length: the bytes in front of what `batch length` counts.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The v2 header, up to and including the record count.
pub const BATCH_HEADER_BYTES: usize = 61;
pub const MAGIC_AT: usize = 16;
pub const CRC_AT: usize = 17;
pub const ATTRIBUTES_AT: usize = 21;
pub const LAST_OFFSET_DELTA_AT: usize = 23;
pub const BASE_TIMESTAMP_AT: usize = 27;
pub const MAX_TIMESTAMP_AT: usize = 35;
pub const BASE_SEQUENCE_AT: usize = 53;
pub const RECORDS_COUNT_AT: usize = 57;
const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;

/// Why bytes are not a v2 batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch of {size_bytes} bytes is shorter than its header")]
    Truncated { size_bytes: usize },
    #[error("message format v{magic} is not supported (only record batch v2)")]
    Magic { magic: i8 },
    #[error("batch length {length} is invalid")]
    Length { length: i64 },
    #[error("negative last offset delta {delta}")]
    LastOffsetDelta { delta: i32 },
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    /// kafka-protocol's record decoder refused the batch (its message kept).
    #[error("{detail}")]
    Decode { detail: String },
}

/// The header of one v2 batch. Construct with [`BatchHeader::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Whole batch size in bytes, including the log overhead in front of `batch length`.
    pub size_bytes: usize,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `bytes`; checks only what the header alone can tell.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() <= MAGIC_AT {
            return Err(BatchError::Truncated { size_bytes: bytes.len() });
        }
        let magic = bytes[MAGIC_AT] as i8;
        if magic != 2 {
            return Err(BatchError::Magic { magic });
        }
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated { size_bytes: bytes.len() });
        }
        let length = (&bytes[LOG_OVERHEAD_BYTES - 4..]).get_i32();
        if length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
            return Err(BatchError::Length { length: i64::from(length) });
        }
        let last_offset_delta = (&bytes[LAST_OFFSET_DELTA_AT..]).get_i32();
        if last_offset_delta < 0 {
            return Err(BatchError::LastOffsetDelta { delta: last_offset_delta });
        }
        Ok(BatchHeader {
            base_offset: (&bytes[..]).get_i64(),
            size_bytes: length as usize + LOG_OVERHEAD_BYTES,
            crc: (&bytes[CRC_AT..]).get_u32(),
            attributes: (&bytes[ATTRIBUTES_AT..]).get_i16(),
            last_offset_delta,
            base_timestamp: (&bytes[BASE_TIMESTAMP_AT..]).get_i64(),
            max_timestamp: (&bytes[MAX_TIMESTAMP_AT..]).get_i64(),
            base_sequence: (&bytes[BASE_SEQUENCE_AT..]).get_i32(),
            records_count: (&bytes[RECORDS_COUNT_AT..]).get_i32(),
        })
    }

    /// Offset of the batch's last record as written, even if compaction removed it; saturates
    /// (the base offset is not covered by the CRC, so a corrupt one may be anything).
    pub fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// The codec, as `kafka_protocol::records::Compression` numbers it (0 = none).
    pub fn compression(&self) -> i16 {
        self.attributes & ATTRIBUTE_COMPRESSION_MASK
    }
}

/// CRC32C of a whole batch as its header stores it (bytes 21..end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_AT..])
}

/// Checks that `batch` is exactly one batch whose CRC matches.
pub fn verify(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.size_bytes != batch.len() {
        return Err(BatchError::Length { length: header.size_bytes as i64 });
    }
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(BatchError::Crc { stored: header.crc, computed });
    }
    Ok(header)
}

/// One whole batch out of a Fetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBatch {
    pub header: BatchHeader,
    pub bytes: Bytes,
}

impl RawBatch {
    /// Every record, decompressed; the decoder checks the CRC.
    pub fn records(&self) -> Result<Vec<Record>, BatchError> {
        let mut bytes = self.bytes.clone();
        let set = RecordBatchDecoder::decode(&mut bytes).map_err(|e| BatchError::Decode { detail: e.to_string() })?;
        Ok(set.records)
    }
}

/// A batch that is whole but not a readable v2 batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch at offset {base_offset}: {error}")]
pub struct CorruptBatch {
    pub base_offset: i64,
    pub error: BatchError,
}

/// The whole batches at the front of a Fetch response's records, in order. Stops at an
/// incomplete tail (a batch the broker cut at the fetch size) and after a corrupt batch.
#[derive(Debug, Clone)]
pub struct Batches {
    rest: Bytes,
}

impl Batches {
    pub fn new(records: Bytes) -> Self {
        Batches { rest: records }
    }
}

impl Iterator for Batches {
    type Item = Result<RawBatch, CorruptBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < LOG_OVERHEAD_BYTES {
            return None;
        }
        let base_offset = (&self.rest[..]).get_i64();
        let length = (&self.rest[LOG_OVERHEAD_BYTES - 4..]).get_i32();
        let Ok(length) = usize::try_from(length) else {
            self.rest = Bytes::new();
            return Some(Err(CorruptBatch { base_offset, error: BatchError::Length { length: i64::from(length) } }));
        };
        let size_bytes = LOG_OVERHEAD_BYTES.checked_add(length)?;
        if self.rest.len() < size_bytes {
            return None;
        }
        let bytes = self.rest.split_to(size_bytes);
        match BatchHeader::parse(&bytes) {
            Ok(header) => Some(Ok(RawBatch { header, bytes })),
            Err(error) => {
                self.rest = Bytes::new();
                Some(Err(CorruptBatch { base_offset, error }))
            }
        }
    }
}

/// The records of a Fetch response's `records` that a reader at `fetch_offset` should see, and
/// the offset to fetch next; `None` when not one whole batch arrived (the partition's fetch size
/// is too small for it). A batch may start before the requested offset (the log is read in whole
/// batches), so records below it are dropped; control records (transaction markers) are never
/// shown but advance the offset.
pub fn visible_records(records: Bytes, fetch_offset: i64) -> Result<Option<(Vec<Record>, i64)>, CorruptBatch> {
    let mut visible = Vec::new();
    let mut next_offset = None;
    for raw in Batches::new(records) {
        let raw = raw?;
        let base_offset = raw.header.base_offset;
        let records = raw.records().map_err(|error| CorruptBatch { base_offset, error })?;
        visible.extend(records.into_iter().filter(|r| !r.control && r.offset >= fetch_offset));
        next_offset = Some(raw.header.next_offset().max(next_offset.unwrap_or(fetch_offset)));
    }
    Ok(next_offset.map(|next| (visible, next)))
}

/// Kafka varint (zigzag) at `*at`, advancing it. None if the bytes end first or it overflows.
pub fn read_varint(bytes: &[u8], at: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// Where the first record's value lies inside an uncompressed batch. None for a compressed,
/// empty or malformed batch. Reads only the header and the first record's prefix.
pub fn first_record_value_range(batch: &[u8]) -> Option<Range<usize>> {
    let header = BatchHeader::parse(batch).ok()?;
    if header.compression() != 0 || header.records_count < 1 || header.size_bytes > batch.len() {
        return None;
    }
    let batch = &batch[..header.size_bytes];
    let mut at = BATCH_HEADER_BYTES;
    let _record_length = read_varint(batch, &mut at)?;
    at += 1; // attributes
    let _timestamp_delta = read_varint(batch, &mut at)?;
    let _offset_delta = read_varint(batch, &mut at)?;
    let key_length = read_varint(batch, &mut at)?;
    if key_length > 0 {
        at = at.checked_add(key_length as usize)?;
    }
    let value_length = read_varint(batch, &mut at)?;
    if value_length < 0 {
        return None;
    }
    let end = at.checked_add(value_length as usize)?;
    (end <= batch.len()).then_some(at..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{encode_batch, record};
    use kafka_protocol::records::Compression;

    fn batch(offsets: Range<i64>, compression: Compression) -> Bytes {
        batch_of(offsets, false, compression)
    }

    /// A batch at `offsets`, of control records (transaction markers) when `control`.
    fn batch_of(offsets: Range<i64>, control: bool, compression: Compression) -> Bytes {
        let record = |o: i64| {
            let (key, value) = (Bytes::from(format!("k{o}")), Bytes::from(format!("v{o}")));
            record(o - offsets.start, 1000 + o, Some(key), value, &Default::default())
        };
        let records: Vec<Record> = offsets.clone().map(|o| Record { control, transactional: control, ..record(o) }).collect();
        let mut bytes = encode_batch(&records, compression).unwrap().to_vec();
        bytes[..8].copy_from_slice(&offsets.start.to_be_bytes());
        Bytes::from(bytes)
    }

    fn concat(parts: &[Bytes]) -> Bytes {
        parts.iter().flat_map(|p| p.iter().copied()).collect::<Vec<u8>>().into()
    }

    #[test]
    fn the_header_reads_kafkas_documented_positions() {
        let bytes = batch(10..13, Compression::Lz4);
        let header = verify(&bytes).unwrap();
        assert_eq!(header.base_offset, 10);
        assert_eq!(header.size_bytes, bytes.len());
        assert_eq!((header.last_offset_delta, header.records_count), (2, 3));
        assert_eq!((header.last_offset(), header.next_offset()), (12, 13));
        assert_eq!(header.compression(), Compression::Lz4 as i16);
        assert_eq!((header.base_timestamp, header.max_timestamp), (1010, 1012));
        assert_eq!(header.base_sequence, -1);
    }

    #[test]
    fn verify_catches_a_flipped_byte_and_a_batch_of_the_wrong_size() {
        let mut bytes = batch(0..3, Compression::None).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert!(matches!(verify(&bytes), Err(BatchError::Crc { .. })));
        bytes.push(0);
        assert!(matches!(verify(&bytes), Err(BatchError::Length { .. })));
    }

    #[test]
    fn a_tail_shorter_than_the_log_overhead_is_left_too() {
        let mut batches = Batches::new(concat(&[batch(0..1, Compression::None), Bytes::from_static(&[0, 0, 0])]));
        assert!(batches.next().unwrap().is_ok());
        assert!(batches.next().is_none());
    }

    #[test]
    fn legacy_message_format_is_reported_not_misread() {
        let mut legacy = batch(5..6, Compression::None).to_vec();
        legacy[MAGIC_AT] = 1;
        let corrupt = Batches::new(Bytes::from(legacy)).next().unwrap().unwrap_err();
        assert_eq!(corrupt.base_offset, 5);
        assert_eq!(corrupt.error, BatchError::Magic { magic: 1 });
        assert!(corrupt.error.to_string().contains("v1"));
    }

    #[test]
    fn a_negative_batch_length_is_corrupt_and_ends_the_walk() {
        let mut bytes = batch(7..8, Compression::None).to_vec();
        bytes[8..12].copy_from_slice(&(-3i32).to_be_bytes());
        let mut batches = Batches::new(Bytes::from(bytes));
        assert_eq!(batches.next().unwrap().unwrap_err().error, BatchError::Length { length: -3 });
        assert!(batches.next().is_none());
    }

    fn offsets(records: &[Record]) -> Vec<i64> {
        records.iter().map(|r| r.offset).collect()
    }

    #[test]
    fn a_reader_sees_whole_batches_and_fetches_the_cut_one_again() {
        let second = batch(13..15, Compression::Gzip);
        let records = concat(&[batch(10..13, Compression::Lz4), second.slice(..second.len() - 5)]);
        let (visible, next) = visible_records(records, 10).unwrap().unwrap();
        assert_eq!((offsets(&visible), next), (vec![10, 11, 12], 13));
        assert_eq!(visible_records(second.slice(..20), 13), Ok(None));
        assert_eq!(visible_records(Bytes::new(), 7), Ok(None));
    }

    #[test]
    fn records_below_the_requested_offset_are_skipped() {
        let records = concat(&[batch(10..13, Compression::Snappy), batch(13..15, Compression::Zstd)]);
        let (visible, next) = visible_records(records, 12).unwrap().unwrap();
        assert_eq!((offsets(&visible), next), (vec![12, 13, 14], 15));
        assert_eq!(visible[0].value.as_deref(), Some(&b"v12"[..]));
    }

    #[test]
    fn control_batches_are_hidden_but_advance_the_offset() {
        let records = concat(&[batch(0..2, Compression::None), batch_of(2..3, true, Compression::None)]);
        let (visible, next) = visible_records(records, 0).unwrap().unwrap();
        assert_eq!((offsets(&visible), next), (vec![0, 1], 3));
    }

    #[test]
    fn a_corrupted_batch_is_reported_at_its_base_offset() {
        let mut bytes = batch(4..7, Compression::None).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let corrupt = visible_records(Bytes::from(bytes), 4).unwrap_err();
        assert!(matches!(corrupt, CorruptBatch { base_offset: 4, error: BatchError::Decode { .. } }));
    }

    #[test]
    fn varints_decode_as_zigzag() {
        let mut at = 0;
        assert_eq!(read_varint(&[0x01], &mut at), Some(-1));
        at = 0;
        assert_eq!(read_varint(&[0xac, 0x02], &mut at), Some(150));
        assert_eq!(at, 2);
        at = 0;
        assert_eq!(read_varint(&[0x80], &mut at), None);
    }

    #[test]
    fn the_first_value_is_found_in_an_uncompressed_batch_only() {
        let plain = batch(0..2, Compression::None);
        let range = first_record_value_range(&plain).unwrap();
        assert_eq!(&plain[range], b"v0");
        assert_eq!(first_record_value_range(&batch(0..2, Compression::Zstd)), None);
        assert_eq!(first_record_value_range(&plain[..70]), None);
        assert_eq!(first_record_value_range(&[0u8; 10]), None);
    }
}
