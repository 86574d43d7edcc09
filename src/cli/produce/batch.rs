//! Per-partition batching of produced records and their encoding as one RecordBatch v2.
//!
//! ```text
//!  add(partition, record) ──▶ open batch of that partition ──full?──▶ sealed (ready to send)
//!  drain() at linger/EOF ────▶ every open batch sealed
//! ```

use std::collections::BTreeMap;

use bytes::Bytes;
use fjord_client::records::{encode_batch, record, Headers};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record};

use super::super::error::CliError;
use super::super::limits::{BATCH_RECORD_COUNT_MAX, BATCH_SIZE_BYTES_MAX};

/// Framing bytes a record adds on top of key and value (length, attributes, deltas, counts).
const RECORD_OVERHEAD_BYTES: usize = 16;

/// One record waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRecord {
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub timestamp_ms: i64,
}

impl PendingRecord {
    fn size_bytes(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len) + self.value.len() + RECORD_OVERHEAD_BYTES
    }
}

/// Records of one partition that travel together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionBatch {
    pub partition: i32,
    pub records: Vec<PendingRecord>,
    pub size_bytes: usize,
}

/// Open batches, one per partition.
#[derive(Debug, Default)]
pub struct Accumulator {
    open: BTreeMap<i32, PartitionBatch>,
}

impl Accumulator {
    /// Adds a record; returns its partition's batch when that batch is now full.
    pub fn add(&mut self, partition: i32, record: PendingRecord) -> Option<PartitionBatch> {
        let batch = self.open.entry(partition).or_insert_with(|| PartitionBatch { partition, ..Default::default() });
        batch.size_bytes += record.size_bytes();
        batch.records.push(record);
        let full = batch.records.len() >= BATCH_RECORD_COUNT_MAX || batch.size_bytes >= BATCH_SIZE_BYTES_MAX;
        if full {
            self.open.remove(&partition)
        } else {
            None
        }
    }

    /// Seals every open batch.
    pub fn drain(&mut self) -> Vec<PartitionBatch> {
        std::mem::take(&mut self.open).into_values().collect()
    }

    /// Whether no record is waiting.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// Encodes the records as exactly one RecordBatch v2 (a Produce request carries one batch per
/// partition), with the same `headers` on every record.
pub fn encode(records: &[PendingRecord], headers: &[(String, Bytes)], compression: Compression) -> Result<Bytes, CliError> {
    let headers: Headers = headers.iter().map(|(k, v)| (StrBytes::from_string(k.clone()), Some(v.clone()))).collect();
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(index, r)| record(index as i64, r.timestamp_ms, r.key.clone(), r.value.clone(), &headers))
        .collect();
    Ok(encode_batch(&records, compression)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    fn record(key: Option<&'static [u8]>, value: &'static [u8]) -> PendingRecord {
        PendingRecord { key: key.map(Bytes::from_static), value: Bytes::from_static(value), timestamp_ms: 1_700_000_000_000 }
    }

    #[test]
    fn encode_puts_the_headers_on_every_record_and_keeps_keys_and_timestamps() {
        let records = vec![record(Some(b"k1"), b"v1"), record(None, b"v2")];
        let headers = vec![("trace".to_string(), Bytes::from_static(b"abc"))];
        let mut encoded = encode(&records, &headers, Compression::Zstd).unwrap();
        let sets = RecordBatchDecoder::decode_all(&mut encoded).unwrap();
        for (got, sent) in sets[0].records.iter().zip(&records) {
            assert_eq!((&got.key, got.value.as_ref(), got.timestamp), (&sent.key, Some(&sent.value), sent.timestamp_ms));
            assert_eq!(got.headers.get(&StrBytes::from_static_str("trace")), Some(&Some(Bytes::from_static(b"abc"))));
        }
    }

    #[test]
    fn a_full_batch_is_one_record_batch() {
        let records: Vec<PendingRecord> = (0..BATCH_RECORD_COUNT_MAX).map(|_| record(None, b"x")).collect();
        let mut encoded = encode(&records, &[], Compression::None).unwrap();
        let sets = RecordBatchDecoder::decode_all(&mut encoded).unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].records.len(), BATCH_RECORD_COUNT_MAX);
    }

    #[test]
    fn accumulator_seals_a_batch_at_the_record_count_limit() {
        let mut accumulator = Accumulator::default();
        // Empty values keep the batch under the size limit, so the count limit seals it.
        for _ in 0..BATCH_RECORD_COUNT_MAX - 1 {
            assert!(accumulator.add(0, record(None, b"")).is_none());
        }
        let sealed = accumulator.add(0, record(None, b"")).unwrap();
        assert_eq!(sealed.records.len(), BATCH_RECORD_COUNT_MAX);
        assert!(accumulator.is_empty());
    }

    #[test]
    fn accumulator_seals_a_batch_at_the_size_limit_and_keeps_partitions_apart() {
        let mut accumulator = Accumulator::default();
        let big = PendingRecord { key: None, value: Bytes::from(vec![0u8; BATCH_SIZE_BYTES_MAX / 2]), timestamp_ms: 0 };
        assert!(accumulator.add(1, big.clone()).is_none());
        assert!(accumulator.add(2, big.clone()).is_none());
        let sealed = accumulator.add(1, big).unwrap();
        assert_eq!((sealed.partition, sealed.records.len()), (1, 2));
        let rest = accumulator.drain();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].partition, 2);
        assert!(accumulator.is_empty());
    }
}
