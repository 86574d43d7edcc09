//! Pre-built produce requests. Each producer builds, once per partition, a whole Produce request
//! frame holding one RecordBatch v2; before each send it patches the correlation id, the send
//! timestamp and the CRC in place, so sending costs a CRC32C pass and a `write`, no encoding.
//!
//! ```text
//!  frame: | size | request header | produce body ... | RecordBatch v2 | tagged fields |
//!                                                    ^ batch_at
//!  batch: | 61-byte header (CRC at 17, covers 21..end) | record 0 | record 1 | ...
//!  record 0 value: | send timestamp, u64 big-endian ns since the Unix epoch | payload ... |
//! ```
//! Compressed batches cannot be patched in place (the value sits inside the compressed block), so
//! they are re-encoded with `RecordBatchEncoder` per send, which is the compression a real client
//! pays per batch anyway.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fjord_client::batch::{
    compute_crc, first_record_value_range, BatchHeader, RawBatch, BASE_TIMESTAMP_AT, CRC_AT, MAX_TIMESTAMP_AT,
};
use fjord_client::records::{encode_batch, record, Headers};
use fjord_client::requests::produce_request;
use fjord_client::wire::{encode_request, REQUEST_CORRELATION_ID_AT};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::records::{Compression, Record};
use uuid::Uuid;

use crate::error::{BenchError, Result};
use crate::rng::Rng;
use crate::wire::CLIENT_ID;
use crate::workload::KeyDistribution;

pub const STAMP_BYTES: usize = 8;

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME): the clock producers stamp and consumers
/// read, so end-to-end latency is meaningful between processes on one host.
pub fn realtime_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// What one pre-built produce request carries.
#[derive(Debug, Clone)]
pub struct BatchSpec {
    pub topic: String,
    pub partition: i32,
    pub records: u32,
    pub record_size_bytes: usize,
    pub key_distribution: KeyDistribution,
    pub compression: Compression,
    pub acks: i16,
    pub timeout_ms: i32,
    pub produce_version: i16,
}

/// The send timestamp a producer of this bench wrote into the first record of `batch`. Compressed
/// batches are decompressed for it (only consumers measuring end-to-end latency ask).
pub fn first_record_stamp_ns(batch: &Bytes) -> Option<u64> {
    let header = BatchHeader::parse(batch).ok()?;
    let value = if header.compression() == 0 {
        batch.slice(first_record_value_range(batch)?)
    } else {
        let raw = RawBatch { header, bytes: batch.slice(..header.size_bytes.min(batch.len())) };
        raw.records().ok()?.first()?.value.clone()?
    };
    Some(u64::from_be_bytes(value.get(..STAMP_BYTES)?.try_into().ok()?))
}

/// Records for one batch: values of `record_size_bytes` random hex digits (compressible about
/// 2:1, like text), keys per the key distribution, all stamped `timestamp_ms`.
pub fn build_records(spec: &BatchSpec, rng: &mut Rng, timestamp_ms: i64) -> Vec<Record> {
    let count = spec.records as usize;
    let mut payload = vec![0u8; count * spec.record_size_bytes];
    rng.fill_hex(&mut payload);
    let payload = Bytes::from(payload);
    let headers = Headers::new();
    (0..count)
        .map(|index| {
            let key = match spec.key_distribution {
                KeyDistribution::None => None,
                KeyDistribution::Random => {
                    let mut key = vec![0u8; 16];
                    rng.fill_hex(&mut key);
                    Some(Bytes::from(key))
                }
                KeyDistribution::RoundRobin => Some(Bytes::from(format!("key-{index}"))),
            };
            let start = index * spec.record_size_bytes;
            let value = payload.slice(start..start + spec.record_size_bytes);
            record(index as i64, timestamp_ms, key, value, &headers)
        })
        .collect()
}

fn produce_frame(spec: &BatchSpec, batch: Bytes, correlation_id: i32) -> Result<Vec<u8>> {
    let request = produce_request(&spec.topic, Uuid::nil(), spec.acks, spec.timeout_ms, [(spec.partition, batch)]);
    Ok(encode_request(CLIENT_ID, ApiKey::Produce, spec.produce_version, correlation_id, &request)?.to_vec())
}

/// One partition's produce request, ready to stamp and send.
pub struct ProduceTemplate {
    spec: BatchSpec,
    frame: Vec<u8>,
    batch_at: usize,
    batch_len: usize,
    /// Absolute position of the first record's value in `frame` (uncompressed only).
    stamp_at: usize,
    /// Compressed only: the records, re-encoded per send.
    records: Vec<Record>,
}

impl ProduceTemplate {
    pub fn build(spec: BatchSpec, rng: &mut Rng) -> Result<ProduceTemplate> {
        if spec.records == 0 || spec.record_size_bytes < STAMP_BYTES {
            return Err(BenchError::Workload(format!("a batch needs at least one record of at least {STAMP_BYTES} bytes")));
        }
        let now_ms = (realtime_ns() / 1_000_000) as i64;
        let records = build_records(&spec, rng, now_ms);
        let batch = encode_batch(&records, spec.compression)?;
        let frame = produce_frame(&spec, batch.clone(), 0)?;
        let batch_at = (0..=frame.len() - batch.len())
            .rev()
            .find(|&at| frame[at..at + batch.len()] == batch[..])
            .ok_or_else(|| BenchError::codec("building a produce request", "batch not found in the frame"))?;
        let (stamp_at, records) = if spec.compression == Compression::None {
            let range = first_record_value_range(&batch)
                .ok_or_else(|| BenchError::codec("building a produce request", "first record not found"))?;
            (batch_at + range.start, Vec::new())
        } else {
            (0, records)
        };
        Ok(ProduceTemplate { batch_len: batch.len(), spec, frame, batch_at, stamp_at, records })
    }

    pub fn records(&self) -> u32 {
        self.spec.records
    }
    pub fn partition(&self) -> i32 {
        self.spec.partition
    }
    pub fn payload_bytes(&self) -> u64 {
        self.spec.records as u64 * self.spec.record_size_bytes as u64
    }
    /// The batch as last prepared.
    pub fn batch(&self) -> &[u8] {
        &self.frame[self.batch_at..self.batch_at + self.batch_len]
    }

    /// Stamps the request for sending; returns the whole frame and the batch's size in bytes.
    pub fn prepare(&mut self, correlation_id: i32, stamp_ns: u64) -> Result<(&[u8], usize)> {
        let stamp_ms = (stamp_ns / 1_000_000) as i64;
        if self.spec.compression != Compression::None {
            for record in &mut self.records {
                record.timestamp = stamp_ms;
            }
            if let Some(value) = self.records[0].value.as_ref() {
                let mut stamped = value.to_vec();
                stamped[..STAMP_BYTES].copy_from_slice(&stamp_ns.to_be_bytes());
                self.records[0].value = Some(Bytes::from(stamped));
            }
            let batch = encode_batch(&self.records, self.spec.compression)?;
            self.frame = produce_frame(&self.spec, batch.clone(), correlation_id)?;
            self.batch_len = batch.len();
            self.batch_at = self.frame.len() - batch.len() - self.trailer_bytes();
            return Ok((&self.frame, self.batch_len));
        }
        self.frame[REQUEST_CORRELATION_ID_AT..REQUEST_CORRELATION_ID_AT + 4].copy_from_slice(&correlation_id.to_be_bytes());
        self.frame[self.stamp_at..self.stamp_at + STAMP_BYTES].copy_from_slice(&stamp_ns.to_be_bytes());
        let batch = &mut self.frame[self.batch_at..self.batch_at + self.batch_len];
        batch[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&stamp_ms.to_be_bytes());
        batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&stamp_ms.to_be_bytes());
        let crc = compute_crc(batch);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        Ok((&self.frame, self.batch_len))
    }

    /// Bytes after the records in a produce frame: the tagged-field counts of partition, topic and
    /// request in flexible versions (9+), none before.
    fn trailer_bytes(&self) -> usize {
        if self.spec.produce_version >= 9 {
            3
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use fjord_client::batch::verify as validate_stored;

    use super::*;

    fn spec(compression: Compression, keys: KeyDistribution, version: i16) -> BatchSpec {
        BatchSpec {
            topic: "t".to_string(),
            partition: 3,
            records: 10,
            record_size_bytes: 100,
            key_distribution: keys,
            compression,
            acks: 1,
            timeout_ms: 30_000,
            produce_version: version,
        }
    }

    #[test]
    fn timestamp_patch_keeps_the_batch_crc_valid() {
        for keys in [KeyDistribution::None, KeyDistribution::Random, KeyDistribution::RoundRobin] {
            for version in [3, 8, 9] {
                let mut template = ProduceTemplate::build(spec(Compression::None, keys, version), &mut Rng::new(7)).unwrap();
                validate_stored(template.batch()).unwrap();
                let stamp = 1_700_000_000_123_456_789u64;
                let frame = template.prepare(42, stamp).unwrap().0.to_vec();
                assert_eq!(i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize, frame.len() - 4);
                assert_eq!(i32::from_be_bytes(frame[8..12].try_into().unwrap()), 42);
                let header = validate_stored(template.batch()).unwrap();
                assert_eq!(header.records_count, 10);
                assert_eq!(header.base_timestamp, (stamp / 1_000_000) as i64);
                assert_eq!(first_record_stamp_ns(&Bytes::copy_from_slice(template.batch())), Some(stamp));
                // A second patch with another stamp must also leave a valid batch.
                template.prepare(43, stamp + 5).unwrap();
                validate_stored(template.batch()).unwrap();
                assert_eq!(first_record_stamp_ns(&Bytes::copy_from_slice(template.batch())), Some(stamp + 5));
            }
        }
    }

    #[test]
    fn compressed_batches_are_reencoded_with_the_stamp() {
        for compression in [Compression::Lz4, Compression::Zstd, Compression::Snappy, Compression::Gzip] {
            for version in [7, 9] {
                let mut template =
                    ProduceTemplate::build(spec(compression, KeyDistribution::None, version), &mut Rng::new(1)).unwrap();
                let stamp = 1_700_000_000_000_000_001u64;
                template.prepare(9, stamp).unwrap();
                let header = validate_stored(template.batch()).unwrap();
                assert_eq!(header.compression(), compression as i16);
                assert_eq!(header.records_count, 10);
                assert_eq!(first_record_stamp_ns(&Bytes::copy_from_slice(template.batch())), Some(stamp));
            }
        }
    }

    #[test]
    fn malformed_batches_yield_no_stamp() {
        assert_eq!(first_record_stamp_ns(&Bytes::from_static(&[0u8; 10])), None);
        let mut template = ProduceTemplate::build(spec(Compression::None, KeyDistribution::None, 9), &mut Rng::new(3)).unwrap();
        template.prepare(1, 5).unwrap();
        let truncated = Bytes::copy_from_slice(&template.batch()[..70]);
        assert_eq!(first_record_stamp_ns(&truncated), None);
    }
}
