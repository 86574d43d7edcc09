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

use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fjord_engine::batch::BatchHeader;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType, NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};

use crate::error::{BenchError, Result};
use crate::rng::Rng;
use crate::wire::encode_frame;
use crate::workload::KeyDistribution;

pub const STAMP_BYTES: usize = 8;
const BATCH_HEADER_BYTES: usize = 61;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_BASE_TIMESTAMP: usize = 27;
const OFFSET_MAX_TIMESTAMP: usize = 35;
const FRAME_CORRELATION_ID_AT: usize = 8;

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

/// Kafka varint (zigzag) at `*at`, advancing it. None if the bytes end first or it overflows.
fn read_varint(bytes: &[u8], at: &mut usize) -> Option<i64> {
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

/// The send timestamp a producer of this bench wrote into the first record of `batch`. Compressed
/// batches are decompressed for it (only consumers measuring end-to-end latency ask).
pub fn first_record_stamp_ns(batch: &Bytes) -> Option<u64> {
    let header = BatchHeader::parse(batch).ok()?;
    if header.compression() == 0 {
        let range = first_record_value_range(batch)?;
        let value = batch.get(range.start..range.start + STAMP_BYTES)?;
        return Some(u64::from_be_bytes(value.try_into().ok()?));
    }
    let mut whole = batch.slice(..header.size_bytes.min(batch.len()));
    let set = RecordBatchDecoder::decode(&mut whole).ok()?;
    let value = set.records.first()?.value.as_ref()?;
    Some(u64::from_be_bytes(value.get(..STAMP_BYTES)?.try_into().ok()?))
}

/// Records for one batch: values of `record_size_bytes` random hex digits (compressible about
/// 2:1, like text), keys per the key distribution, all stamped `timestamp_ms`.
pub fn build_records(spec: &BatchSpec, rng: &mut Rng, timestamp_ms: i64) -> Vec<Record> {
    let count = spec.records as usize;
    let mut payload = vec![0u8; count * spec.record_size_bytes];
    rng.fill_hex(&mut payload);
    let payload = Bytes::from(payload);
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
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
                producer_id: NO_PRODUCER_ID,
                producer_epoch: NO_PRODUCER_EPOCH,
                timestamp_type: TimestampType::Creation,
                offset: index as i64,
                // The encoder starts a new batch wherever offset − sequence changes; counting up
                // from NO_SEQUENCE keeps one batch whose base sequence is NO_SEQUENCE.
                sequence: NO_SEQUENCE.wrapping_add(index as i32),
                timestamp: timestamp_ms,
                key,
                value: Some(payload.slice(start..start + spec.record_size_bytes)),
                headers: Default::default(),
            }
        })
        .collect()
}

pub fn encode_batch(records: &[Record], compression: Compression) -> Result<Bytes> {
    let mut buf = bytes::BytesMut::with_capacity(records.len() * 64 + BATCH_HEADER_BYTES);
    RecordBatchEncoder::encode(&mut buf, records, &RecordEncodeOptions { version: 2, compression })
        .map_err(|e| BenchError::codec("building a record batch", e))?;
    Ok(buf.freeze())
}

fn produce_frame(spec: &BatchSpec, batch: Bytes, correlation_id: i32) -> Result<bytes::BytesMut> {
    let request = ProduceRequest::default().with_acks(spec.acks).with_timeout_ms(spec.timeout_ms).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(spec.topic.clone())))
            .with_partition_data(vec![PartitionProduceData::default().with_index(spec.partition).with_records(Some(batch))]),
    ]);
    encode_frame(ApiKey::Produce, spec.produce_version, correlation_id, &request)
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
        let frame = produce_frame(&spec, batch.clone(), 0)?.to_vec();
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
            self.frame = produce_frame(&self.spec, batch.clone(), correlation_id)?.to_vec();
            self.batch_len = batch.len();
            self.batch_at = self.frame.len() - batch.len() - self.trailer_bytes();
            return Ok((&self.frame, self.batch_len));
        }
        self.frame[FRAME_CORRELATION_ID_AT..FRAME_CORRELATION_ID_AT + 4].copy_from_slice(&correlation_id.to_be_bytes());
        self.frame[self.stamp_at..self.stamp_at + STAMP_BYTES].copy_from_slice(&stamp_ns.to_be_bytes());
        let batch = &mut self.frame[self.batch_at..self.batch_at + self.batch_len];
        batch[OFFSET_BASE_TIMESTAMP..OFFSET_BASE_TIMESTAMP + 8].copy_from_slice(&stamp_ms.to_be_bytes());
        batch[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8].copy_from_slice(&stamp_ms.to_be_bytes());
        let crc = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..]);
        batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
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
    use fjord_engine::batch::validate_stored;

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
    fn malformed_batches_yield_no_stamp() {
        assert_eq!(first_record_stamp_ns(&Bytes::from_static(&[0u8; 10])), None);
        let mut template = ProduceTemplate::build(spec(Compression::None, KeyDistribution::None, 9), &mut Rng::new(3)).unwrap();
        template.prepare(1, 5).unwrap();
        let truncated = Bytes::copy_from_slice(&template.batch()[..70]);
        assert_eq!(first_record_value_range(&truncated), None);
    }
}
