//! Record batches out of a Fetch response's `records` bytes.
//!
//! ```text
//! [base offset i64][length i32][epoch i32][magic i8][crc][attrs][last offset delta i32]…  × n
//!  └──────── log overhead (12) ┘└──────────────── length bytes ─────────────────────────┘
//! ```
//! The broker may cut the last batch at the fetch size, so an incomplete tail is left alone
//! (the next fetch starts at its offset). A batch may start before the requested offset (the
//! log is read in whole batches), so callers drop records below it.

use bytes::{Buf, Bytes};
use kafka_protocol::records::{Record, RecordBatchDecoder};

/// Base offset plus batch length.
const LOG_OVERHEAD_BYTES: usize = 12;
/// Position of the magic byte within a batch.
const MAGIC_POSITION: usize = 16;
/// Position of the last offset delta within a v2 batch.
const LAST_OFFSET_DELTA_POSITION: usize = 23;
/// Size of a v2 batch header, up to and including the record count.
const BATCH_HEADER_BYTES: usize = 61;

/// One complete, decoded batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedBatch {
    pub base_offset: i64,
    /// Offset of the batch's last record as written, even if compaction removed it.
    pub last_offset: i64,
    pub records: Vec<Record>,
}

/// Every complete batch, and how many bytes of an incomplete batch followed them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    pub batches: Vec<FetchedBatch>,
    pub partial_tail_bytes: usize,
}

/// A batch that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct BatchError {
    pub offset: i64,
    pub detail: String,
}

/// Splits `records` into complete batches and decodes each (any codec).
pub fn decode(mut records: Bytes) -> Result<Decoded, BatchError> {
    let mut decoded = Decoded::default();
    while records.len() >= LOG_OVERHEAD_BYTES {
        let base_offset = (&records[0..8]).get_i64();
        let length = (&records[8..12]).get_i32();
        let corrupt = |detail: String| BatchError { offset: base_offset, detail };
        let length = usize::try_from(length).map_err(|_| corrupt(format!("negative batch length {length}")))?;
        let total = LOG_OVERHEAD_BYTES + length;
        if records.len() < total {
            break;
        }
        let batch = records.split_to(total);
        decoded.batches.push(decode_one(base_offset, batch).map_err(corrupt)?);
    }
    decoded.partial_tail_bytes = records.len();
    Ok(decoded)
}

fn decode_one(base_offset: i64, mut batch: Bytes) -> Result<FetchedBatch, String> {
    if batch.len() <= MAGIC_POSITION {
        return Err("batch too short to hold a magic byte".into());
    }
    let magic = batch[MAGIC_POSITION];
    if magic != 2 {
        return Err(format!("message format v{magic} is not supported (only record batch v2)"));
    }
    if batch.len() < BATCH_HEADER_BYTES {
        return Err(format!("batch of {} bytes is shorter than its header", batch.len()));
    }
    let last_offset_delta = (&batch[LAST_OFFSET_DELTA_POSITION..LAST_OFFSET_DELTA_POSITION + 4]).get_i32();
    let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| e.to_string())?;
    Ok(FetchedBatch { base_offset, last_offset: base_offset + i64::from(last_offset_delta), records: set.records })
}

/// The records a reader starting at `fetch_offset` should see, and the offset to fetch next.
/// Control records (transaction markers) are never shown.
pub fn visible_records(decoded: Decoded, fetch_offset: i64) -> (Vec<Record>, i64) {
    let next_offset = decoded.batches.iter().map(|b| b.last_offset + 1).max().map_or(fetch_offset, |n| n.max(fetch_offset));
    let records =
        decoded.batches.into_iter().flat_map(|b| b.records).filter(|r| !r.control && r.offset >= fetch_offset).collect();
    (records, next_offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use indexmap::IndexMap;
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    fn record(offset: i64, control: bool) -> Record {
        Record {
            transactional: control,
            control,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: (offset - 1) as i32,
            timestamp: 1000 + offset,
            key: None,
            value: Some(Bytes::from(format!("v{offset}"))),
            headers: IndexMap::new(),
        }
    }

    fn batch(offsets: std::ops::Range<i64>, control: bool, compression: Compression) -> Bytes {
        let records: Vec<Record> = offsets.map(|o| record(o, control)).collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression }).unwrap();
        buf.freeze()
    }

    fn concat(parts: &[Bytes]) -> Bytes {
        parts.iter().flat_map(|p| p.iter().copied()).collect::<Vec<u8>>().into()
    }

    #[test]
    fn incomplete_trailing_batch_is_ignored_and_complete_ones_decoded() {
        let first = batch(10..13, false, Compression::Lz4);
        let second = batch(13..15, false, Compression::Gzip);
        let cut = second.slice(..second.len() - 5);
        let decoded = decode(concat(&[first, cut.clone()])).unwrap();
        assert_eq!(decoded.batches.len(), 1);
        assert_eq!(decoded.partial_tail_bytes, cut.len());
        let (records, next) = visible_records(decoded, 10);
        assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![10, 11, 12]);
        assert_eq!(next, 13);
    }

    #[test]
    fn a_tail_shorter_than_the_log_overhead_is_partial_too() {
        let first = batch(0..1, false, Compression::None);
        let decoded = decode(concat(&[first, Bytes::from_static(&[0, 0, 0])])).unwrap();
        assert_eq!((decoded.batches.len(), decoded.partial_tail_bytes), (1, 3));
    }

    #[test]
    fn records_below_the_requested_offset_are_skipped() {
        let decoded =
            decode(concat(&[batch(10..13, false, Compression::Snappy), batch(13..15, false, Compression::Zstd)])).unwrap();
        let (records, next) = visible_records(decoded, 12);
        assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![12, 13, 14]);
        assert_eq!(records[0].value.as_deref(), Some(&b"v12"[..]));
        assert_eq!(next, 15);
    }

    #[test]
    fn control_batches_are_hidden_but_advance_the_offset() {
        let decoded = decode(concat(&[batch(0..2, false, Compression::None), batch(2..3, true, Compression::None)])).unwrap();
        let (records, next) = visible_records(decoded, 0);
        assert_eq!(records.len(), 2);
        assert_eq!(next, 3);
    }

    #[test]
    fn nothing_fetched_keeps_the_offset() {
        let (records, next) = visible_records(decode(Bytes::new()).unwrap(), 7);
        assert!(records.is_empty());
        assert_eq!(next, 7);
    }

    #[test]
    fn legacy_message_format_is_reported_not_misread() {
        let mut legacy = batch(5..6, false, Compression::None).to_vec();
        legacy[MAGIC_POSITION] = 1;
        let err = decode(Bytes::from(legacy)).unwrap_err();
        assert_eq!(err.offset, 5);
        assert!(err.detail.contains("v1"), "{}", err.detail);
    }

    #[test]
    fn a_corrupted_batch_fails_its_crc_check() {
        let mut bytes = batch(0..3, false, Compression::None).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert!(decode(Bytes::from(bytes)).is_err());
    }
}
