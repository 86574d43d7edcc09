//! Building RecordBatch v2 for Produce: records of a non-idempotent producer, encoded (and
//! compressed with any codec) by `kafka-protocol` into exactly one batch.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID, NO_SEQUENCE,
};

use crate::batch::BATCH_HEADER_BYTES;
use crate::error::ClientError;

/// Record headers, in order.
pub type Headers = IndexMap<StrBytes, Option<Bytes>>;

/// The codecs a producer may compress batches with, by their Kafka (`compression.type`) names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "lowercase"))]
pub enum CompressionCodec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<CompressionCodec> for Compression {
    fn from(codec: CompressionCodec) -> Self {
        match codec {
            CompressionCodec::None => Compression::None,
            CompressionCodec::Gzip => Compression::Gzip,
            CompressionCodec::Snappy => Compression::Snappy,
            CompressionCodec::Lz4 => Compression::Lz4,
            CompressionCodec::Zstd => Compression::Zstd,
        }
    }
}

/// Bytes a record is guessed to add on top of its value when sizing the encode buffer.
const RECORD_OVERHEAD_BYTES_GUESS: usize = 64;

/// A record at offset delta `offset_delta` of its batch, without producer id (not idempotent).
///
/// The encoder keeps records in one batch only while `offset - sequence` stays constant and
/// derives the batch's base sequence from the first record, so `sequence = offset - 1` yields a
/// single batch whose base sequence is -1 (NO_SEQUENCE), as a non-idempotent producer sends.
pub fn record(offset_delta: i64, timestamp_ms: i64, key: Option<Bytes>, value: Bytes, headers: &Headers) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        timestamp_type: TimestampType::Creation,
        offset: offset_delta,
        sequence: NO_SEQUENCE.wrapping_add(offset_delta as i32),
        timestamp: timestamp_ms,
        key,
        value: Some(value),
        headers: headers.clone(),
    }
}

/// Encodes records made by [`record`] as exactly one RecordBatch v2 (a Produce request carries
/// one batch per partition).
pub fn encode_batch(records: &[Record], compression: Compression) -> Result<Bytes, ClientError> {
    let value_bytes: usize = records.iter().map(|r| r.value.as_ref().map_or(0, Bytes::len)).sum();
    let mut buf = BytesMut::with_capacity(BATCH_HEADER_BYTES + value_bytes + records.len() * RECORD_OVERHEAD_BYTES_GUESS);
    RecordBatchEncoder::encode(&mut buf, records, &RecordEncodeOptions { version: 2, compression })
        .map_err(|e| ClientError::RecordEncode { detail: e.to_string() })?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{verify, BASE_SEQUENCE_AT};
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn batch_round_trips_through_encoder_and_decoder_with_every_codec() {
        let headers: Headers = [(StrBytes::from_static_str("trace"), Some(Bytes::from_static(b"abc")))].into_iter().collect();
        let sent = [(Some(&b"k1"[..]), &b"v1"[..]), (None, b"v2"), (Some(b""), b"")];
        let records: Vec<Record> = sent
            .iter()
            .enumerate()
            .map(|(i, (k, v))| record(i as i64, 1_700_000_000_000, k.map(Bytes::from_static), Bytes::from_static(v), &headers))
            .collect();
        for compression in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let mut encoded = encode_batch(&records, compression).unwrap();
            let header = verify(&encoded).unwrap();
            assert_eq!(header.base_sequence, -1, "{compression:?}");
            assert_eq!(&encoded[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4], &(-1i32).to_be_bytes());
            let sets = RecordBatchDecoder::decode_all(&mut encoded).unwrap();
            assert_eq!(sets.len(), 1, "{compression:?}: exactly one batch");
            assert_eq!(sets[0].compression, compression);
            let decoded = &sets[0].records;
            assert_eq!(decoded.len(), 3);
            for (index, (got, sent)) in decoded.iter().zip(&records).enumerate() {
                assert_eq!(got.offset, index as i64);
                assert_eq!(got.key, sent.key);
                assert_eq!(got.value, sent.value);
                assert_eq!(got.timestamp, sent.timestamp);
                assert_eq!(got.producer_id, NO_PRODUCER_ID);
                assert_eq!(got.headers.get(&StrBytes::from_static_str("trace")), Some(&Some(Bytes::from_static(b"abc"))));
            }
        }
    }
}
