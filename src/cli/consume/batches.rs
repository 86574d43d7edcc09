//! Record batches out of a Fetch response's `records` bytes, split and decoded by
//! [`fjord_client::batch::Batches`]. A batch may start before the requested offset (the log is
//! read in whole batches), so callers drop records below it.

use bytes::Bytes;
use fjord_client::batch::{Batches, CorruptBatch};
use kafka_protocol::records::Record;

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

/// Splits `records` into complete batches and decodes each (any codec).
pub fn decode(records: Bytes) -> Result<Decoded, CorruptBatch> {
    let mut split = Batches::new(records);
    let mut batches = Vec::new();
    for raw in &mut split {
        let raw = raw?;
        let base_offset = raw.header.base_offset;
        let records = raw.records().map_err(|error| CorruptBatch { base_offset, error })?;
        batches.push(FetchedBatch { base_offset, last_offset: raw.header.last_offset(), records });
    }
    Ok(Decoded { batches, partial_tail_bytes: split.partial_tail_bytes() })
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
    fn a_corrupted_batch_is_reported_at_its_base_offset() {
        let mut bytes = batch(4..7, false, Compression::None).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert_eq!(decode(Bytes::from(bytes)).unwrap_err().base_offset, 4);
    }
}
