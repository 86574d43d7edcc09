//! RecordBatch v2: a read-only view of the 61-byte header, validation on produce, and the in-place
//! patches the broker makes (base offset and leader epoch, which the CRC does not cover; and
//! LogAppendTime, which it does, so the CRC is recomputed).
//!
//! ```text
//!  0        8         12             16     17    21          23               27
//!  | base   | batch   | partition    |magic | crc | attributes| last offset     |
//!  | offset | length  | leader epoch | (=2) |     |           | delta           |
//!  27             35            43            51             53             57         61
//!  | base         | max         | producer    | producer     | base         | records  |
//!  | timestamp    | timestamp   | id          | epoch        | sequence     | count    |
//! ```
//! The CRC32C covers bytes 21..end (attributes through the last record).

use crate::limits::{BATCH_DECOMPRESSED_BYTES_MAX, BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES};
use kafka_protocol::error::ResponseError as E;

const OFFSET_BASE_OFFSET: usize = 0;
const OFFSET_LENGTH: usize = 8;
const OFFSET_LEADER_EPOCH: usize = 12;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_BASE_TIMESTAMP: usize = 27;
const OFFSET_MAX_TIMESTAMP: usize = 35;
const OFFSET_PRODUCER_ID: usize = 43;
const OFFSET_PRODUCER_EPOCH: usize = 51;
const OFFSET_BASE_SEQUENCE: usize = 53;
const OFFSET_RECORDS_COUNT: usize = 57;

const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
const ATTRIBUTE_TIMESTAMP_TYPE: i16 = 0x08;
const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
const ATTRIBUTE_CONTROL: i16 = 0x20;

/// Why a batch was refused. Maps onto Kafka's CORRUPT_MESSAGE / INVALID_RECORD / MESSAGE_TOO_LARGE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: {available} bytes, header needs {needed}")]
    Truncated { available: usize, needed: usize },
    #[error("unsupported record batch magic {0} (only v2 is accepted)")]
    Magic(i8),
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("batch length {0} is invalid")]
    Length(i32),
    #[error("invalid batch: {0}")]
    Invalid(&'static str),
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
    #[error("{0}")]
    Timestamp(String),
}

impl BatchError {
    /// The Kafka error code a producer gets for this batch.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            BatchError::TooLarge { .. } => E::MessageTooLarge.code(),
            BatchError::Invalid(_) => E::InvalidRecord.code(),
            BatchError::Timestamp(_) => E::InvalidTimestamp.code(),
            _ => E::CorruptMessage.code(),
        }
    }
}

fn read_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}
fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}
fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(bytes[at..at + 2].try_into().expect("2 bytes"))
}

/// A checked view of one batch header. Construct with [`BatchHeader::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Whole batch size in bytes, including the 12 bytes in front of `batchLength`.
    pub size_bytes: usize,
    pub leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `bytes`. Checks only what the header alone can tell.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated { available: bytes.len(), needed: BATCH_HEADER_BYTES });
        }
        let length = read_i32(bytes, OFFSET_LENGTH);
        if length < (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i32 {
            return Err(BatchError::Length(length));
        }
        let magic = bytes[OFFSET_MAGIC] as i8;
        if magic != 2 {
            return Err(BatchError::Magic(magic));
        }
        // Recovery and the offset index rely on offsets growing within a batch (Kafka never
        // writes a negative delta; its producers' count check refuses one).
        if read_i32(bytes, OFFSET_LAST_OFFSET_DELTA) < 0 {
            return Err(BatchError::Invalid("negative lastOffsetDelta"));
        }
        Ok(BatchHeader {
            base_offset: read_i64(bytes, OFFSET_BASE_OFFSET),
            size_bytes: length as usize + BATCH_LOG_OVERHEAD_BYTES,
            leader_epoch: read_i32(bytes, OFFSET_LEADER_EPOCH),
            magic,
            crc: read_i32(bytes, OFFSET_CRC) as u32,
            attributes: read_i16(bytes, OFFSET_ATTRIBUTES),
            last_offset_delta: read_i32(bytes, OFFSET_LAST_OFFSET_DELTA),
            base_timestamp: read_i64(bytes, OFFSET_BASE_TIMESTAMP),
            max_timestamp: read_i64(bytes, OFFSET_MAX_TIMESTAMP),
            producer_id: read_i64(bytes, OFFSET_PRODUCER_ID),
            producer_epoch: read_i16(bytes, OFFSET_PRODUCER_EPOCH),
            base_sequence: read_i32(bytes, OFFSET_BASE_SEQUENCE),
            records_count: read_i32(bytes, OFFSET_RECORDS_COUNT),
        })
    }

    /// The batch's last offset; saturates rather than wrapping for a base offset no log can
    /// hold (the base offset is not covered by the CRC, so a corrupt one may be anything).
    pub fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(self.last_offset_delta as i64)
    }
    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }
    pub fn compression(&self) -> i16 {
        self.attributes & ATTRIBUTE_COMPRESSION_MASK
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTRIBUTE_TIMESTAMP_TYPE != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTRIBUTE_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & ATTRIBUTE_CONTROL != 0
    }
}

/// CRC32C of a whole batch as stored in its header (bytes 21..end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..])
}

/// Checks one complete batch: header, length, CRC. `batch` must be exactly one batch.
pub fn validate_stored(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.size_bytes != batch.len() {
        return Err(BatchError::Length(header.size_bytes as i32));
    }
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(BatchError::Crc { stored: header.crc, computed });
    }
    Ok(header)
}

/// Splits produced record bytes into batches and validates each as Kafka's broker does before
/// anything is stored: magic, length, CRC, record count, compression codec, size limit.
pub fn validate_produced(records: &[u8], max_message_bytes: usize) -> Result<Vec<BatchHeader>, BatchError> {
    if records.is_empty() {
        return Err(BatchError::Invalid("produce request with no record batch"));
    }
    let mut headers = Vec::new();
    let mut position = 0usize;
    while position < records.len() {
        let rest = &records[position..];
        let header = BatchHeader::parse(rest)?;
        if header.size_bytes > rest.len() {
            return Err(BatchError::Truncated { available: rest.len(), needed: header.size_bytes });
        }
        if header.size_bytes > max_message_bytes {
            return Err(BatchError::TooLarge { size: header.size_bytes, max: max_message_bytes });
        }
        let header = validate_stored(&rest[..header.size_bytes])?;
        if header.records_count <= 0 {
            return Err(BatchError::Invalid("record batch has no records"));
        }
        if header.last_offset_delta != header.records_count - 1 {
            return Err(BatchError::Invalid("lastOffsetDelta does not match the record count"));
        }
        if header.compression() > 4 {
            return Err(BatchError::Invalid("unknown compression codec"));
        }
        if header.is_control() {
            return Err(BatchError::Invalid("clients may not produce control batches"));
        }
        if header.is_transactional() && header.producer_id < 0 {
            // Kafka's LogValidator: a transactional batch must name its producer (KIP-98).
            return Err(BatchError::Invalid("transactional batch without a producer id"));
        }
        if header.producer_id >= 0 && header.base_sequence < 0 {
            return Err(BatchError::Invalid("idempotent batch with a negative base sequence"));
        }
        headers.push(header);
        position += header.size_bytes;
    }
    Ok(headers)
}

/// What a produced batch's records say, read as Kafka's LogValidator reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordsSummary {
    /// The largest record timestamp (base timestamp + delta): what the header's max timestamp
    /// must say for a CreateTime batch.
    pub max_timestamp: i64,
    /// The smallest record timestamp other than -1 (`i64::MAX` if none), for the topic's
    /// `message.timestamp.before.max.ms` check.
    pub min_timestamp: i64,
}

/// A record without a timestamp (Kafka's `RecordBatch.NO_TIMESTAMP`).
pub const NO_TIMESTAMP: i64 = -1;

/// Reads the records of one produced batch (decompressing it if needed) as Kafka's LogValidator
/// does: exactly `records_count` records, each inside the batch, nothing after the last, and in a
/// compressed batch offset deltas 0, 1, 2, ... Returns their timestamp range. An uncompressed
/// batch is walked in place, reading four varints per record and skipping keys and values.
pub fn summarize_records(batch: &[u8], header: &BatchHeader) -> Result<RecordsSummary, BatchError> {
    const MALFORMED: BatchError = BatchError::Invalid("records do not match the batch header");
    if header.compression() == 0 {
        return walk_records(&batch[BATCH_HEADER_BYTES..], header, false);
    }
    let plain = decompress(batch, header)?;
    walk_records(&plain, header, true).map_err(|_| MALFORMED)
}

fn walk_records(mut records: &[u8], header: &BatchHeader, offsets_checked: bool) -> Result<RecordsSummary, BatchError> {
    const MALFORMED: BatchError = BatchError::Invalid("records do not match the batch header");
    let mut summary = RecordsSummary { max_timestamp: i64::MIN, min_timestamp: i64::MAX };
    for index in 0..header.records_count {
        let (length, used) = read_varint(records).ok_or(MALFORMED)?;
        let length = usize::try_from(length).map_err(|_| MALFORMED)?;
        let body = records.get(used..used + length).ok_or(MALFORMED)?;
        // attributes (int8), timestamp delta (varlong), offset delta (varint)
        let (timestamp_delta, at) = read_varint(body.get(1..).ok_or(MALFORMED)?).ok_or(MALFORMED)?;
        let (offset_delta, _) = read_varint(body.get(1 + at..).ok_or(MALFORMED)?).ok_or(MALFORMED)?;
        if offsets_checked && offset_delta != i64::from(index) {
            return Err(BatchError::Invalid("records inside the compressed batch do not have incremental offsets"));
        }
        let timestamp = header.base_timestamp.wrapping_add(timestamp_delta);
        summary.max_timestamp = summary.max_timestamp.max(timestamp);
        if timestamp != NO_TIMESTAMP {
            summary.min_timestamp = summary.min_timestamp.min(timestamp);
        }
        records = &records[used + length..];
    }
    if !records.is_empty() {
        return Err(BatchError::Invalid("bytes remain after the batch's last record"));
    }
    Ok(summary)
}

/// The records part of a compressed batch, decompressed.
fn decompress(batch: &[u8], header: &BatchHeader) -> Result<bytes::Bytes, BatchError> {
    decompress_bounded(header.compression(), &batch[BATCH_HEADER_BYTES..]).map(bytes::Bytes::from)
}

/// Decompresses a batch's records with `codec`, refusing to produce more than
/// [`BATCH_DECOMPRESSED_BYTES_MAX`] (the codecs' own readers, not kafka-protocol's, which inflate
/// whatever a header claims). Snappy is Kafka's (xerial-framed) or raw, as Kafka's reader accepts.
fn decompress_bounded(codec: i16, compressed: &[u8]) -> Result<Vec<u8>, BatchError> {
    use std::io::Read;
    const UNDECODABLE: BatchError = BatchError::Invalid("records inside the batch cannot be decompressed");
    const TOO_LARGE: BatchError = BatchError::Invalid("records inside the batch decompress past the broker's limit");
    let limit = BATCH_DECOMPRESSED_BYTES_MAX;
    let read_all = |reader: &mut dyn Read| -> Result<Vec<u8>, BatchError> {
        let mut out = Vec::new();
        reader.take(limit as u64 + 1).read_to_end(&mut out).map_err(|_| UNDECODABLE)?;
        if out.len() > limit {
            return Err(TOO_LARGE);
        }
        Ok(out)
    };
    match codec {
        0 => Ok(compressed.to_vec()),
        1 => read_all(&mut flate2::read::GzDecoder::new(compressed)),
        2 => snappy_bounded(compressed, limit).ok_or(UNDECODABLE)?.ok_or(TOO_LARGE),
        3 => read_all(&mut lz4::Decoder::new(compressed).map_err(|_| UNDECODABLE)?),
        4 => read_all(&mut zstd::stream::read::Decoder::new(compressed).map_err(|_| UNDECODABLE)?),
        _ => Err(BatchError::Invalid("unknown compression codec")),
    }
}

/// Snappy as Kafka's clients write it: xerial's framing (a magic header, then blocks each with
/// a big-endian length) or, without the magic, one raw block. `None`: undecodable;
/// `Some(None)`: more than `limit` bytes claimed.
fn snappy_bounded(compressed: &[u8], limit: usize) -> Option<Option<Vec<u8>>> {
    const XERIAL_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
    let mut decoder = snap::raw::Decoder::new();
    let mut out = Vec::new();
    let mut block = |block: &[u8], out: &mut Vec<u8>| -> Option<bool> {
        let length = snap::raw::decompress_len(block).ok()?;
        if out.len() + length > limit {
            return Some(false);
        }
        let start = out.len();
        out.resize(start + length, 0);
        decoder.decompress(block, &mut out[start..]).ok()?;
        Some(true)
    };
    match compressed.strip_prefix(XERIAL_MAGIC.as_slice()) {
        None => {
            if !block(compressed, &mut out)? {
                return Some(None);
            }
        }
        Some(mut rest) => {
            while !rest.is_empty() {
                let length = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
                let body = rest.get(4..4 + length)?;
                if !block(body, &mut out)? {
                    return Some(None);
                }
                rest = &rest[4 + length..];
            }
        }
    }
    Some(Some(out))
}

/// Sets a CreateTime batch's max timestamp to `max_timestamp` (what its records say, as Kafka's
/// LogValidator sets it), recomputing the CRC only when the header said otherwise.
pub fn patch_max_timestamp(batch: &mut [u8], max_timestamp: i64) {
    let attributes = read_i16(batch, OFFSET_ATTRIBUTES);
    if read_i64(batch, OFFSET_MAX_TIMESTAMP) == max_timestamp && attributes & ATTRIBUTE_TIMESTAMP_TYPE == 0 {
        return;
    }
    batch[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&(attributes & !ATTRIBUTE_TIMESTAMP_TYPE).to_be_bytes());
    batch[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Writes the broker-assigned base offset and leader epoch into a batch (not covered by the CRC).
pub fn patch_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[OFFSET_BASE_OFFSET..OFFSET_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[OFFSET_LEADER_EPOCH..OFFSET_LEADER_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Marks a batch LogAppendTime with the broker's clock and recomputes its CRC (Kafka does the same:
/// the record timestamps stay, readers use maxTimestamp for every record of such a batch).
pub fn patch_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = read_i16(batch, OFFSET_ATTRIBUTES) | ATTRIBUTE_TIMESTAMP_TYPE;
    batch[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The kind of an end-transaction marker: Kafka's `ControlRecordType` (ABORT = 0, COMMIT = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

impl ControlType {
    /// The type field of the control record's key.
    pub fn code(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }
    pub fn from_code(code: i16) -> Option<ControlType> {
        match code {
            0 => Some(ControlType::Abort),
            1 => Some(ControlType::Commit),
            _ => None,
        }
    }
}

/// Bytes of an end-transaction marker batch: the header and one 17-byte control record.
pub const END_TXN_MARKER_BYTES: usize = BATCH_HEADER_BYTES + 17;

/// Builds Kafka's end-transaction marker (`MemoryRecords.withEndTransactionMarker`, KIP-98): a
/// RecordBatch v2, uncompressed, CreateTime, attributes transactional | control, the producer's id
/// and epoch, base sequence -1, and one record whose key is `[version i16 = 0][type i16]` and
/// whose value is `[version i16 = 0][coordinator epoch i32]`. Base offset 0 and leader epoch -1:
/// the append path assigns both (the CRC does not cover them).
pub fn build_end_txn_marker(
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    control: ControlType,
    timestamp_ms: i64,
) -> Vec<u8> {
    const KEY_BYTES: i64 = 4;
    const VALUE_BYTES: i64 = 6;
    let mut record = Vec::with_capacity(17);
    record.push(0); // length, filled below (the body is 16 bytes: one varint byte)
    record.push(0); // record attributes
    record.push(0); // timestamp delta 0 (zigzag varint)
    record.push(0); // offset delta 0
    record.push((KEY_BYTES << 1) as u8); // key length 4 (zigzag varint)
    record.extend_from_slice(&0i16.to_be_bytes()); // key version
    record.extend_from_slice(&control.code().to_be_bytes());
    record.push((VALUE_BYTES << 1) as u8); // value length 6
    record.extend_from_slice(&0i16.to_be_bytes()); // value version
    record.extend_from_slice(&coordinator_epoch.to_be_bytes());
    record.push(0); // no headers
    record[0] = ((record.len() - 1) << 1) as u8;
    let mut out = Vec::with_capacity(END_TXN_MARKER_BYTES);
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&((END_TXN_MARKER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i32).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out.push(2);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&(ATTRIBUTE_TRANSACTIONAL | ATTRIBUTE_CONTROL).to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&producer_id.to_be_bytes());
    out.extend_from_slice(&producer_epoch.to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence: markers carry none
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&record);
    let crc = compute_crc(&out);
    out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    // Paired check (STYLE.md): what the coordinator path writes must pass the check recovery makes.
    let check = validate_stored(&out).expect("a built marker is a valid batch");
    assert!(check.is_control() && check.is_transactional() && out.len() == END_TXN_MARKER_BYTES);
    out
}

/// What an end-transaction marker says: Kafka's `EndTransactionMarker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    pub control: ControlType,
    pub coordinator_epoch: i32,
}

/// Reads the end-transaction marker of a stored control batch from its first record: the type from
/// the key (Kafka's `ControlRecordType.parse`), the coordinator epoch from the value. `None` if the
/// batch is no control batch or its record is not a known marker (Kafka ignores unknown control
/// types when it loads producer state).
pub fn end_txn_marker(batch: &[u8]) -> Option<EndTxnMarker> {
    let header = BatchHeader::parse(batch).ok()?;
    if !header.is_control() || header.records_count < 1 || batch.len() < header.size_bytes {
        return None;
    }
    let (key, value) = if header.compression() == 0 {
        let records = &batch[BATCH_HEADER_BYTES..header.size_bytes];
        let (_, mut at) = read_varint(records)?; // record length
        at += 1; // record attributes
        for _ in 0..2 {
            let (_, used) = read_varint(records.get(at..)?)?; // timestamp delta, offset delta
            at += used;
        }
        let (key_length, used) = read_varint(records.get(at..)?)?;
        at += used;
        let key = records.get(at..at + usize::try_from(key_length).ok()?)?;
        at += key.len();
        let (value_length, used) = read_varint(records.get(at..)?)?;
        at += used;
        let value = records.get(at..at + usize::try_from(value_length).ok()?)?;
        (key.to_vec(), value.to_vec())
    } else {
        let decoded = decode_records(&bytes::Bytes::copy_from_slice(&batch[..header.size_bytes])).ok()?;
        let record = decoded.records.first()?;
        (record.key.as_ref()?.to_vec(), record.value.as_ref()?.to_vec())
    };
    if key.len() < 4 || value.len() < 6 {
        return None;
    }
    Some(EndTxnMarker { control: ControlType::from_code(read_i16(&key, 2))?, coordinator_epoch: read_i32(&value, 2) })
}

/// (offset, timestamp) of every record of one stored batch, decompressing if needed. Used only
/// where the broker must look inside a batch (ListOffsets by time, KIP-734 max timestamp).
pub fn record_timestamps(batch: &[u8]) -> Result<Vec<(i64, i64)>, BatchError> {
    let decoded = decode_records(&bytes::Bytes::copy_from_slice(batch))?;
    let header = decoded.header;
    Ok(decoded
        .records
        .iter()
        .map(|record| {
            let timestamp = if header.is_log_append_time() { header.max_timestamp } else { record.timestamp };
            (record.offset, timestamp)
        })
        .collect())
}

/// The records of one stored batch, decompressed: each record decoded (`records`) and its raw
/// bytes, length prefix included (`raw`, same order). Raw bytes hold offset and timestamp deltas
/// from the batch's base offset and base timestamp, so a rebuilt batch that keeps both can carry
/// them over unchanged.
pub struct DecodedBatch {
    pub header: BatchHeader,
    pub records: Vec<kafka_protocol::records::Record>,
    pub raw: Vec<bytes::Bytes>,
}

/// Decodes (decompressing if needed) every record of one stored batch.
pub fn decode_records(batch: &bytes::Bytes) -> Result<DecodedBatch, BatchError> {
    use kafka_protocol::records::Compression;

    const UNDECODABLE: BatchError = BatchError::Invalid("records inside the batch cannot be decoded");
    let header = validate_stored(batch)?;
    let plain = std::cell::RefCell::new(bytes::Bytes::new());
    let mut input = batch.clone();
    let set = kafka_protocol::records::RecordBatchDecoder::decode_with_custom_compression(
        &mut input,
        Some(|records: &mut bytes::Bytes, compression: Compression| {
            let codec = match compression {
                Compression::None => 0,
                Compression::Gzip => 1,
                Compression::Snappy => 2,
                Compression::Lz4 => 3,
                Compression::Zstd => 4,
            };
            let decompressed = bytes::Bytes::from(decompress_bounded(codec, records)?);
            records.clear();
            *plain.borrow_mut() = decompressed.clone();
            Ok(decompressed)
        }),
    )
    .map_err(|_| UNDECODABLE)?;
    let plain = plain.into_inner();
    let mut raw = Vec::with_capacity(set.records.len());
    let mut start = 0usize;
    for _ in 0..set.records.len() {
        // kafka-protocol keeps its varint decoder private; the length prefix is all we need.
        let (length, prefix) = read_varint(&plain[start..]).ok_or(UNDECODABLE)?;
        let end = start + prefix + usize::try_from(length).map_err(|_| UNDECODABLE)?;
        if end > plain.len() {
            return Err(UNDECODABLE);
        }
        raw.push(plain.slice(start..end));
        start = end;
    }
    Ok(DecodedBatch { header, records: set.records, raw })
}

/// A zigzag varint (a record's length prefix): its value and how many bytes it took.
fn read_varint(bytes: &[u8]) -> Option<(i64, usize)> {
    let mut zigzag = 0u64;
    for (index, byte) in bytes.iter().take(10).enumerate() {
        zigzag |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some(((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64), index + 1));
        }
    }
    None
}

/// Compacted topics refuse records without a key at produce time, as Kafka's LogValidator does
/// (INVALID_RECORD). Decompresses the batch: only compacted topics pay for it.
pub fn require_keys(batch: &bytes::Bytes) -> Result<(), BatchError> {
    let decoded = decode_records(batch)?;
    if decoded.records.iter().any(|record| record.key.is_none()) {
        return Err(BatchError::Invalid("Compacted topic cannot accept message without key"));
    }
    Ok(())
}

/// Rebuilds a stored batch with a subset of its records (the log cleaner): the header is the
/// original's (base offset, last offset delta, base timestamp, producer fields, attributes and
/// codec kept, as Kafka's cleaner keeps them for v2), then the kept raw records, compressed again
/// with the batch's own codec; the record count, max timestamp, length and CRC are recomputed.
/// `max_timestamp` is the kept records' largest (LogAppendTime batches keep theirs).
pub fn rebuild(
    original: &[u8],
    header: &BatchHeader,
    kept_raw: &[bytes::Bytes],
    max_timestamp: i64,
) -> Result<bytes::Bytes, BatchError> {
    rebuild_with_codec(original, header, kept_raw, max_timestamp, header.compression())
}

/// A produced batch compressed again with `codec` (a topic's `compression.type` other than
/// `producer`, as Kafka's LogValidator recompresses): every record kept, header fields kept
/// but the codec, and length and CRC recomputed.
pub fn recompress(batch: &bytes::Bytes, header: &BatchHeader, codec: i16) -> Result<bytes::Bytes, BatchError> {
    let decoded = decode_records(batch)?;
    rebuild_with_codec(batch, header, &decoded.raw, header.max_timestamp, codec)
}

fn rebuild_with_codec(
    original: &[u8],
    header: &BatchHeader,
    kept_raw: &[bytes::Bytes],
    max_timestamp: i64,
    codec: i16,
) -> Result<bytes::Bytes, BatchError> {
    use bytes::BytesMut;
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

    let plain_len: usize = kept_raw.iter().map(bytes::Bytes::len).sum();
    let mut plain = BytesMut::with_capacity(plain_len);
    for record in kept_raw {
        plain.extend_from_slice(record);
    }
    let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + plain_len);
    out.extend_from_slice(&original[..BATCH_HEADER_BYTES]);
    let attributes = (header.attributes & !ATTRIBUTE_COMPRESSION_MASK) | (codec & ATTRIBUTE_COMPRESSION_MASK);
    out[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let write_plain = |buf: &mut BytesMut| {
        buf.extend_from_slice(&plain);
        Ok(())
    };
    let compressed = match codec {
        0 => write_plain(&mut out),
        1 => Gzip::compress(&mut out, write_plain),
        2 => Snappy::compress(&mut out, write_plain),
        3 => Lz4::compress(&mut out, write_plain),
        4 => Zstd::compress(&mut out, write_plain),
        _ => return Err(BatchError::Invalid("unknown compression codec")),
    };
    compressed.map_err(|_| BatchError::Invalid("records cannot be compressed again"))?;
    let length = i32::try_from(out.len() - BATCH_LOG_OVERHEAD_BYTES).map_err(|_| BatchError::Length(i32::MAX))?;
    out[OFFSET_LENGTH..OFFSET_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    out[OFFSET_RECORDS_COUNT..OFFSET_RECORDS_COUNT + 4].copy_from_slice(&(kept_raw.len() as i32).to_be_bytes());
    if !header.is_log_append_time() {
        out[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    }
    let crc = compute_crc(&out);
    out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    let rebuilt = out.freeze();
    // Paired check (STYLE.md): what the cleaner writes must pass the check recovery makes.
    let check = validate_stored(&rebuilt)?;
    assert_eq!((check.base_offset, check.last_offset_delta), (header.base_offset, header.last_offset_delta));
    Ok(rebuilt)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds an uncompressed batch of `count` tiny records by hand, as a producer would.
    pub(crate) fn make_batch(base_offset: i64, count: i32, value_bytes: usize) -> Vec<u8> {
        let mut records = Vec::new();
        for index in 0..count {
            let mut body = vec![0u8]; // attributes
            put_varint(&mut body, 0); // timestamp delta
            put_varint(&mut body, index as i64); // offset delta
            put_varint(&mut body, -1); // key: null
            put_varint(&mut body, value_bytes as i64);
            body.extend(std::iter::repeat_n(b'v', value_bytes));
            put_varint(&mut body, 0); // headers
            put_varint(&mut records, body.len() as i64);
            records.extend(body);
        }
        let mut batch = Vec::new();
        batch.extend(base_offset.to_be_bytes());
        batch.extend(((BATCH_HEADER_BYTES - 12 + records.len()) as i32).to_be_bytes());
        batch.extend(0i32.to_be_bytes());
        batch.push(2);
        batch.extend(0u32.to_be_bytes());
        batch.extend(0i16.to_be_bytes());
        batch.extend((count - 1).to_be_bytes());
        batch.extend(1_700_000_000_000i64.to_be_bytes());
        batch.extend(1_700_000_000_000i64.to_be_bytes());
        batch.extend((-1i64).to_be_bytes());
        batch.extend((-1i16).to_be_bytes());
        batch.extend((-1i32).to_be_bytes());
        batch.extend(count.to_be_bytes());
        batch.extend(records);
        let crc = compute_crc(&batch);
        batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    fn put_varint(out: &mut Vec<u8>, value: i64) {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        loop {
            if zigzag < 0x80 {
                out.push(zigzag as u8);
                return;
            }
            out.push((zigzag as u8 & 0x7f) | 0x80);
            zigzag >>= 7;
        }
    }

    /// A batch of records with these timestamps, encoded by kafka-protocol with `compression`,
    /// whose header then claims `claimed_max` (CRC recomputed, as a client would have sent it).
    fn batch_claiming(timestamps: &[i64], compression: kafka_protocol::records::Compression, claimed_max: i64) -> Vec<u8> {
        use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
        let records: Vec<Record> = timestamps
            .iter()
            .enumerate()
            .map(|(index, timestamp)| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: index as i64,
                // One batch: kafka-protocol starts a new one where offset - sequence changes.
                sequence: index as i32,
                timestamp: *timestamp,
                key: None,
                value: Some(bytes::Bytes::from(vec![b'v'; 100])),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut out = bytes::BytesMut::new();
        RecordBatchEncoder::encode(&mut out, &records, &RecordEncodeOptions { version: 2, compression }).expect("encode");
        let mut batch = out.to_vec();
        let header =
            validate_stored(&batch).unwrap_or_else(|error| panic!("{compression:?} as encoded: {error}, {} bytes", batch.len()));
        assert_eq!(header.size_bytes, batch.len());
        batch[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8].copy_from_slice(&claimed_max.to_be_bytes());
        let crc = compute_crc(&batch);
        batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    /// Kafka's LogValidator sets a CreateTime batch's max timestamp from its records: whatever
    /// the header claims (-1 from older clients, too low, too high), the patched header says the
    /// records' largest timestamp, and the CRC still holds.
    #[test]
    fn max_timestamp_comes_from_the_records_whatever_the_header_claims() {
        use kafka_protocol::records::Compression;
        let timestamps = [1_700_000_000_500, 1_700_000_002_000, 1_700_000_001_000];
        for compression in [Compression::None, Compression::Gzip, Compression::Lz4, Compression::Zstd, Compression::Snappy] {
            for claimed in [-1, 1_000, 1_700_000_000_000, 4_102_444_800_000] {
                let mut batch = batch_claiming(&timestamps, compression, claimed);
                let header = validate_produced(&batch, 1 << 20).expect("valid")[0];
                let summary = summarize_records(&batch, &header).expect("records readable");
                assert_eq!(summary.max_timestamp, 1_700_000_002_000, "{compression:?}, claimed {claimed}");
                assert_eq!(summary.min_timestamp, 1_700_000_000_500);
                patch_max_timestamp(&mut batch, summary.max_timestamp);
                let stored = validate_stored(&batch).expect("crc recomputed");
                assert_eq!(stored.max_timestamp, 1_700_000_002_000);
                assert_eq!(record_timestamps(&batch).expect("decodable").len(), 3);
            }
        }
    }

    /// A topic's `compression.type` other than `producer`: the batch is stored in that codec
    /// with the same records, offsets, timestamps and producer fields.
    #[test]
    fn recompressed_batch_keeps_every_record_and_header_field_but_the_codec() {
        use kafka_protocol::records::Compression;
        let timestamps = [1_700_000_000_500, 1_700_000_002_000, 1_700_000_001_000];
        for (from, to) in [(Compression::None, 3i16), (Compression::Gzip, 0), (Compression::Zstd, 2), (Compression::Lz4, 1)] {
            let original = bytes::Bytes::from(batch_claiming(&timestamps, from, 1_700_000_002_000));
            let header = validate_stored(&original).expect("valid");
            let again = recompress(&original, &header, to).expect("recompressed");
            let stored = validate_produced(&again, 1 << 20).expect("valid after recompression")[0];
            assert_eq!(stored.compression(), to, "{from:?} -> {to}");
            let fields = |h: &BatchHeader| {
                (
                    h.base_offset,
                    h.last_offset_delta,
                    h.base_timestamp,
                    h.max_timestamp,
                    h.records_count,
                    h.producer_id,
                    h.base_sequence,
                )
            };
            assert_eq!(fields(&stored), fields(&header));
            let records = |batch: &bytes::Bytes| -> Vec<_> {
                let decoded = decode_records(batch).expect("decodable");
                decoded.records.into_iter().map(|r| (r.offset, r.timestamp, r.value)).collect()
            };
            assert_eq!(records(&original), records(&again));
        }
    }

    #[test]
    fn records_that_disagree_with_the_header_are_invalid_record() {
        // One record fewer than the header's count: the walk runs off the end.
        let mut batch = make_batch(0, 3, 10);
        batch[OFFSET_RECORDS_COUNT..OFFSET_RECORDS_COUNT + 4].copy_from_slice(&4i32.to_be_bytes());
        let header = BatchHeader::parse(&batch).expect("header");
        assert_eq!(summarize_records(&batch, &header).unwrap_err().kafka_error_code(), 87);
        // One record more than the header's count: bytes remain after the last one.
        let mut batch = make_batch(0, 3, 10);
        batch[OFFSET_RECORDS_COUNT..OFFSET_RECORDS_COUNT + 4].copy_from_slice(&2i32.to_be_bytes());
        let header = BatchHeader::parse(&batch).expect("header");
        assert_eq!(summarize_records(&batch, &header).unwrap_err().kafka_error_code(), 87);
        let batch = make_batch(0, 3, 10);
        let header = BatchHeader::parse(&batch).expect("header");
        assert!(summarize_records(&batch, &header).is_ok());
    }

    #[test]
    fn produced_batch_validates_and_patching_keeps_crc_valid() {
        let mut batch = make_batch(0, 3, 10);
        let headers = validate_produced(&batch, 1 << 20).expect("valid");
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].records_count, 3);
        patch_offset_and_epoch(&mut batch, 1234, 7);
        let header = validate_stored(&batch).expect("crc does not cover offset and epoch");
        assert_eq!(header.base_offset, 1234);
        assert_eq!(header.last_offset(), 1236);
        assert_eq!(header.leader_epoch, 7);
        patch_log_append_time(&mut batch, 42);
        let header = validate_stored(&batch).expect("crc recomputed");
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, 42);
    }

    /// Golden bytes of Kafka's EndTxnMarker for producer 42, epoch 3, coordinator epoch 7, COMMIT,
    /// at 1_700_000_000_000 ms (layout: DefaultRecordBatch v2 + EndTransactionMarker, KIP-98).
    #[test]
    fn end_txn_marker_matches_kafkas_golden_bytes() {
        let marker = build_end_txn_marker(42, 3, 7, ControlType::Commit, 1_700_000_000_000);
        #[rustfmt::skip]
        let golden: [u8; 78] = [
            0, 0, 0, 0, 0, 0, 0, 0,             // base offset (assigned on append)
            0, 0, 0, 66,                        // batch length: 78 - 12
            0xff, 0xff, 0xff, 0xff,             // partition leader epoch (assigned on append)
            2,                                  // magic
            0xc9, 0xe5, 0xaa, 0x34,             // crc32c of bytes 21.. (computed independently)
            0, 0x30,                            // attributes: transactional | control
            0, 0, 0, 0,                         // last offset delta
            0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, // base timestamp
            0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, // max timestamp
            0, 0, 0, 0, 0, 0, 0, 42,            // producer id
            0, 3,                               // producer epoch
            0xff, 0xff, 0xff, 0xff,             // base sequence: none
            0, 0, 0, 1,                         // one record
            32,                                 // record length 16 (zigzag)
            0, 0, 0,                            // attributes, timestamp delta, offset delta
            8, 0, 0, 0, 1,                      // key: 4 bytes, version 0, type 1 (COMMIT)
            12, 0, 0, 0, 0, 0, 7,               // value: 6 bytes, version 0, coordinator epoch 7
            0,                                  // no headers
        ];
        assert_eq!(marker.len(), END_TXN_MARKER_BYTES);
        assert_eq!(&marker[..21], &golden[..21], "header up to the crc");
        assert_eq!(&marker[21..], &golden[21..], "attributes through the record");
        let header = validate_stored(&marker).expect("valid");
        assert!(header.is_control() && header.is_transactional());
        assert_eq!(end_txn_marker(&marker), Some(EndTxnMarker { control: ControlType::Commit, coordinator_epoch: 7 }));
        let abort = build_end_txn_marker(42, 3, -5, ControlType::Abort, 1_700_000_000_000);
        assert_eq!(end_txn_marker(&abort), Some(EndTxnMarker { control: ControlType::Abort, coordinator_epoch: -5 }));
        assert_eq!(end_txn_marker(&make_batch(0, 1, 4)), None, "not a control batch");
        // An independent decoder (kafka-protocol) reads the same record.
        let decoded = decode_records(&bytes::Bytes::from(marker)).expect("decodes");
        let record = &decoded.records[0];
        assert!(record.control && record.transactional);
        assert_eq!(record.key.as_deref(), Some(&[0u8, 0, 0, 1][..]));
        assert_eq!(record.value.as_deref(), Some(&[0u8, 0, 0, 0, 0, 7][..]));
        assert_eq!((record.producer_id, record.producer_epoch, record.sequence), (42, 3, -1));
    }

    #[test]
    fn clients_may_not_produce_control_batches_invalid_record() {
        let marker = build_end_txn_marker(1, 0, 0, ControlType::Abort, 0);
        let error = validate_produced(&marker, 1 << 20).unwrap_err();
        assert_eq!(error.kafka_error_code(), 87);
    }

    #[test]
    fn flipped_byte_is_corrupt_message() {
        let mut batch = make_batch(0, 2, 10);
        let last = batch.len() - 1;
        batch[last] ^= 0xff;
        let error = validate_produced(&batch, 1 << 20).unwrap_err();
        assert!(matches!(error, BatchError::Crc { .. }));
        assert_eq!(error.kafka_error_code(), 2);
    }

    #[test]
    fn oversized_batch_is_message_too_large() {
        let batch = make_batch(0, 1, 2000);
        let error = validate_produced(&batch, 1000).unwrap_err();
        assert_eq!(error.kafka_error_code(), 10);
    }

    /// Found by fuzzing: a 109-byte snappy batch whose records claim about 2.4 GB. The broker
    /// refuses it (INVALID_RECORD) without inflating it, whatever path decompresses it.
    #[test]
    fn a_compressed_batch_claiming_more_than_the_limit_is_refused_not_inflated() {
        // Raw snappy announcing 2^31 bytes of output, then xerial-framed (Kafka's own framing).
        let mut claim = vec![0x80, 0x80, 0x80, 0x80, 0x08]; // varint 2^31
        claim.extend_from_slice(&[0u8; 16]);
        assert_eq!(decompress_bounded(2, &claim).unwrap_err().kafka_error_code(), 87);
        let mut framed = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        framed.extend_from_slice(&(claim.len() as u32).to_be_bytes());
        framed.extend_from_slice(&claim);
        assert_eq!(decompress_bounded(2, &framed).unwrap_err().kafka_error_code(), 87);
    }

    /// Found by fuzzing recovery: a negative lastOffsetDelta is not a batch (the offset index
    /// would go backwards), and a base offset near i64::MAX (not covered by the CRC) does not
    /// overflow the last offset.
    #[test]
    fn impossible_offsets_in_a_header_are_refused_or_saturate() {
        let mut batch = make_batch(0, 3, 10);
        batch[OFFSET_LAST_OFFSET_DELTA..OFFSET_LAST_OFFSET_DELTA + 4].copy_from_slice(&(-3i32).to_be_bytes());
        assert!(BatchHeader::parse(&batch).is_err());
        let mut batch = make_batch(i64::MAX - 1, 3, 10);
        batch[OFFSET_LAST_OFFSET_DELTA..OFFSET_LAST_OFFSET_DELTA + 4].copy_from_slice(&2i32.to_be_bytes());
        let header = BatchHeader::parse(&batch).expect("parses");
        assert_eq!(header.last_offset(), i64::MAX);
        assert_eq!(header.next_offset(), i64::MAX);
    }
}
