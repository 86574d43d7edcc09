//! Metadata records and the frames they are stored in.
//!
//! Records follow KRaft's record types (KIP-631): a topic record, then one partition record per
//! partition, partition changes, removals and config records. A batch of records is one frame,
//! so a batch is recovered whole or not at all:
//!
//! ```text
//!  0        4        8               16       20      21
//!  ┌────────┬────────┬───────────────┬────────┬───────┬──────────────────────────────┐
//!  │ length │ crc32c │ base offset   │ epoch  │schema │ rkyv payload (Vec of records)│
//!  │ u32 LE │ u32 LE │ i64 LE        │ i32 LE │ u8    │                              │
//!  └────────┴────────┴───────────────┴────────┴───────┴──────────────────────────────┘
//!   length counts every byte after itself; the CRC covers every byte after itself.
//!   Record i of the batch has offset base + i; all were written in `epoch`.
//! ```
//!
//! The schema byte names the payload's layout. A frame with an unknown schema is not torn (its
//! CRC holds): it was written by a newer Fjord, and recovery refuses it instead of cutting it.

use std::io::{self, Read};
use std::path::Path;

use rkyv::rancor;
use rkyv::util::AlignedVec;

use super::{MetadataError, METADATA_BATCH_BYTES_MAX, METADATA_BATCH_RECORDS_MAX};

/// A topic's id: Kafka's 128-bit `Uuid`, as bytes.
pub type TopicId = [u8; 16];

/// Layout of the frame payload this build writes and reads.
pub(crate) const SCHEMA_VERSION: u8 = 1;

const LENGTH_BYTES: usize = 4;
const CRC_BYTES: usize = 4;
/// Bytes covered by the length but before the payload: crc, base offset, epoch, schema.
const HEADER_AFTER_LENGTH_BYTES: usize = CRC_BYTES + 8 + 4 + 1;
/// Every byte before the payload.
#[cfg(test)]
const FRAME_HEADER_BYTES: usize = LENGTH_BYTES + HEADER_AFTER_LENGTH_BYTES;

/// One change to the cluster's metadata.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum MetadataRecord {
    /// A broker joined, or came back with a new address (KRaft `RegisterBrokerRecord`).
    RegisterBroker { node_id: i32, host: String, port: u16, rack: Option<String> },
    /// A topic exists from here on; its partitions follow (`TopicRecord` + `ConfigRecord`s).
    CreateTopic { topic_id: TopicId, name: String, configs: Vec<(String, String)> },
    /// One partition of a topic, created in index order (`PartitionRecord`).
    CreatePartition { topic_id: TopicId, partition: i32, replicas: Vec<i32>, isr: Vec<i32>, leader: i32, leader_epoch: i32 },
    /// New leader, leader epoch or in-sync set of a partition (`PartitionChangeRecord`).
    PartitionChange { topic_id: TopicId, partition: i32, leader: i32, leader_epoch: i32, isr: Vec<i32> },
    /// The topic and its configs are gone (`RemoveTopicRecord`).
    DeleteTopic { topic_id: TopicId },
    /// Topic config overrides to set (`Some`) or remove (`None`).
    AlterTopicConfig { topic_id: TopicId, set: Vec<(String, Option<String>)> },
    /// Dynamic broker configs to set (`Some`) or remove (`None`).
    AlterBrokerConfig { set: Vec<(String, Option<String>)> },
}

/// What a frame carries.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
struct BatchPayload {
    records: Vec<MetadataRecord>,
}

/// A batch read back from a frame.
#[derive(Debug, PartialEq)]
pub(crate) struct Batch {
    pub(crate) base_offset: i64,
    pub(crate) epoch: i32,
    pub(crate) records: Vec<MetadataRecord>,
    /// Bytes the frame takes on disk.
    pub(crate) frame_bytes: u64,
}

impl Batch {
    /// Offset of the batch's last record.
    pub(crate) fn last_offset(&self) -> i64 {
        self.base_offset + self.records.len() as i64 - 1
    }
}

/// The result of reading one frame.
#[derive(Debug)]
pub(crate) enum FrameRead {
    Batch(Batch),
    /// Clean end of file.
    End,
    /// The file ends inside a frame: a write that did not finish.
    Torn(String),
    /// A complete frame that fails its checks: bit rot or a write that landed partly.
    Corrupt(String),
}

/// Encodes a batch as one frame.
pub(crate) fn encode_batch(base_offset: i64, epoch: i32, records: &[MetadataRecord]) -> Result<Vec<u8>, MetadataError> {
    if records.is_empty() {
        return Err(MetadataError::EmptyBatch);
    }
    if records.len() > METADATA_BATCH_RECORDS_MAX {
        return Err(MetadataError::TooManyRecords { count: records.len(), max: METADATA_BATCH_RECORDS_MAX });
    }
    let payload = BatchPayload { records: records.to_vec() };
    let bytes = rkyv::to_bytes::<rancor::Error>(&payload).map_err(MetadataError::Encode)?;
    if bytes.len() > METADATA_BATCH_BYTES_MAX {
        return Err(MetadataError::BatchTooLarge { bytes: bytes.len(), max: METADATA_BATCH_BYTES_MAX });
    }
    let length = HEADER_AFTER_LENGTH_BYTES + bytes.len();
    let mut frame = Vec::with_capacity(LENGTH_BYTES + length);
    // The batch limit keeps the length far below u32::MAX.
    frame.extend_from_slice(&(length as u32).to_le_bytes());
    frame.extend_from_slice(&[0; CRC_BYTES]);
    frame.extend_from_slice(&base_offset.to_le_bytes());
    frame.extend_from_slice(&epoch.to_le_bytes());
    frame.push(SCHEMA_VERSION);
    frame.extend_from_slice(&bytes);
    let crc = crc32c::crc32c(&frame[LENGTH_BYTES + CRC_BYTES..]);
    frame[LENGTH_BYTES..LENGTH_BYTES + CRC_BYTES].copy_from_slice(&crc.to_le_bytes());
    debug_assert!(matches!(
        read_frame(&mut &frame[..], Path::new("<encode>"), 0),
        Ok(FrameRead::Batch(ref batch)) if batch.records == records
    ));
    Ok(frame)
}

/// Reads as many bytes as are there, up to `buf.len()`; fewer only at end of file.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Reads the frame at the reader's position (byte `position` of `path`, for messages).
pub(crate) fn read_frame(reader: &mut impl Read, path: &Path, position: u64) -> Result<FrameRead, MetadataError> {
    let mut length_bytes = [0u8; LENGTH_BYTES];
    let got = read_full(reader, &mut length_bytes).map_err(|e| MetadataError::io("read", path, e))?;
    if got == 0 {
        return Ok(FrameRead::End);
    }
    if got < LENGTH_BYTES {
        return Ok(FrameRead::Torn(format!("{got} bytes where a frame length was expected")));
    }
    let length = u32::from_le_bytes(length_bytes) as usize;
    if length <= HEADER_AFTER_LENGTH_BYTES || length > HEADER_AFTER_LENGTH_BYTES + METADATA_BATCH_BYTES_MAX {
        return Ok(FrameRead::Corrupt(format!("frame length {length} out of range")));
    }
    let mut body = vec![0u8; length];
    let got = read_full(reader, &mut body).map_err(|e| MetadataError::io("read", path, e))?;
    if got < length {
        return Ok(FrameRead::Torn(format!("frame of {length} bytes cut after {got}")));
    }
    let stored_crc = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
    let actual_crc = crc32c::crc32c(&body[CRC_BYTES..]);
    if stored_crc != actual_crc {
        return Ok(FrameRead::Corrupt(format!("CRC mismatch: stored {stored_crc:#010x}, computed {actual_crc:#010x}")));
    }
    let mut header = &body[CRC_BYTES..HEADER_AFTER_LENGTH_BYTES];
    let base_offset = i64::from_le_bytes(take::<8>(&mut header));
    let epoch = i32::from_le_bytes(take::<4>(&mut header));
    let schema = header[0];
    if schema != SCHEMA_VERSION {
        return Err(MetadataError::UnsupportedSchema {
            path: path.to_path_buf(),
            position,
            version: schema,
            supported: SCHEMA_VERSION,
        });
    }
    // rkyv reads archived data in place and needs it aligned; the payload sits at an odd offset
    // of the frame, so copy it out.
    let mut aligned = AlignedVec::<16>::with_capacity(length - HEADER_AFTER_LENGTH_BYTES);
    aligned.extend_from_slice(&body[HEADER_AFTER_LENGTH_BYTES..]);
    let payload = rkyv::from_bytes::<BatchPayload, rancor::Error>(&aligned).map_err(|source| MetadataError::Decode {
        path: path.to_path_buf(),
        position,
        source,
    })?;
    if payload.records.is_empty() {
        return Ok(FrameRead::Corrupt("empty batch".to_string()));
    }
    if base_offset < 0 {
        return Ok(FrameRead::Corrupt(format!("negative base offset {base_offset}")));
    }
    Ok(FrameRead::Batch(Batch { base_offset, epoch, records: payload.records, frame_bytes: (LENGTH_BYTES + length) as u64 }))
}

fn take<const N: usize>(bytes: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    *bytes = &bytes[N..];
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<MetadataRecord> {
        vec![
            MetadataRecord::CreateTopic {
                topic_id: [7; 16],
                name: "orders".into(),
                configs: vec![("retention.ms".into(), "1000".into())],
            },
            MetadataRecord::CreatePartition {
                topic_id: [7; 16],
                partition: 0,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
            },
            MetadataRecord::AlterBrokerConfig { set: vec![("log.retention.ms".into(), None)] },
        ]
    }

    #[test]
    fn frame_round_trips_offset_epoch_and_records() {
        let frame = encode_batch(42, 3, &sample()).unwrap();
        let read = read_frame(&mut &frame[..], Path::new("t"), 0).unwrap();
        let FrameRead::Batch(batch) = read else { panic!("{read:?}") };
        assert_eq!(batch.base_offset, 42);
        assert_eq!(batch.epoch, 3);
        assert_eq!(batch.records, sample());
        assert_eq!(batch.last_offset(), 44);
        assert_eq!(batch.frame_bytes, frame.len() as u64);
    }

    #[test]
    fn every_cut_of_a_frame_reads_as_torn() {
        let frame = encode_batch(0, 1, &sample()).unwrap();
        for cut in 1..frame.len() {
            let read = read_frame(&mut &frame[..cut], Path::new("t"), 0).unwrap();
            assert!(matches!(read, FrameRead::Torn(_)), "cut at {cut}: {read:?}");
        }
        assert!(matches!(read_frame(&mut &frame[..0], Path::new("t"), 0), Ok(FrameRead::End)));
    }

    #[test]
    fn flipped_payload_bit_fails_the_crc() {
        let mut frame = encode_batch(0, 1, &sample()).unwrap();
        let last = frame.len() - 1;
        frame[last] ^= 0x40;
        let read = read_frame(&mut &frame[..], Path::new("t"), 0).unwrap();
        assert!(matches!(read, FrameRead::Corrupt(_)), "{read:?}");
    }

    #[test]
    fn unknown_schema_is_refused_not_truncated() {
        let mut frame = encode_batch(0, 1, &sample()).unwrap();
        frame[FRAME_HEADER_BYTES - 1] = SCHEMA_VERSION + 1;
        let crc = crc32c::crc32c(&frame[LENGTH_BYTES + CRC_BYTES..]);
        frame[LENGTH_BYTES..LENGTH_BYTES + CRC_BYTES].copy_from_slice(&crc.to_le_bytes());
        let read = read_frame(&mut &frame[..], Path::new("t"), 0);
        assert!(matches!(read, Err(MetadataError::UnsupportedSchema { version: 2, .. })), "{read:?}");
    }

    #[test]
    fn empty_batch_is_not_encoded() {
        assert!(matches!(encode_batch(0, 1, &[]), Err(MetadataError::EmptyBatch)));
    }
}
