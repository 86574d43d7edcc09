//! Keys and values of `__consumer_offsets` records, byte for byte as Kafka writes them.
//!
//! Schemas: apache/kafka `group-coordinator/src/main/resources/common/message/{OffsetCommitKey,
//! OffsetCommitValue,GroupMetadataKey,GroupMetadataValue}.json`. Every key and every value starts
//! with an int16 version; all the versions written here are non-flexible (int16-length strings,
//! int32-length bytes and arrays).
//!
//! ```text
//!   key   = version:i16 | fields...       version 0,1 = offset commit (group, topic, partition)
//!                                          version 2   = group metadata (group)
//!                                          version 3.. = KIP-848 and transaction records (skipped here)
//!   value = version:i16 | fields...       absent (null) = tombstone
//! ```
//!
//! Lives on the shard that owns the `__consumer_offsets` partition the group hashes to
//! (see [`partition_for`]). The strings, bytes and bounded reads are the shared ones of
//! [`crate::codec`].

use bytes::{BufMut, Bytes};

use crate::codec::{put_array_length, put_bytes, put_nullable_string, put_string, Reader};
pub use crate::codec::{RecordError, STRING_BYTES_MAX};

/// Key version of an offset commit written by Kafka before 0.10 (same layout as version 1).
pub const KEY_VERSION_OFFSET_COMMIT_LEGACY: i16 = 0;
/// Key version (record type) of an offset commit.
pub const KEY_VERSION_OFFSET_COMMIT: i16 = 1;
/// Key version (record type) of a classic group's metadata.
pub const KEY_VERSION_GROUP_METADATA: i16 = 2;

/// OffsetCommitValue v3: the newest non-flexible version, without an expire timestamp.
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
/// OffsetCommitValue v1: the only version carrying an expire timestamp (OffsetCommit v2-4 retention).
pub const OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY: i16 = 1;
/// GroupMetadataValue v3: the newest non-flexible version (adds groupInstanceId).
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;

/// One `__consumer_offsets` record, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// `value: None` is a tombstone (OffsetDelete, DeleteGroups, offset expiry).
    OffsetCommit { group_id: String, topic: String, partition: i32, value: Option<OffsetCommitValue> },
    /// `value: None` is a tombstone (DeleteGroups).
    GroupMetadata { group_id: String, value: Option<GroupMetadataValue> },
    /// A key version this module does not own (KIP-848 consumer group records, versions 3..=8, and
    /// anything newer). Replay skips it.
    Unknown { key_version: i16 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    pub offset: i64,
    /// -1 when the committer did not know the leader epoch.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Set only by OffsetCommit v2-4 with an explicit retention; written as value version 1.
    pub expire_timestamp_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// -1 when unknown (value versions 0 and 1 do not carry it).
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberMetadataValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadataValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

impl Record {
    pub fn group_id(&self) -> Option<&str> {
        match self {
            Record::OffsetCommit { group_id, .. } | Record::GroupMetadata { group_id, .. } => Some(group_id),
            Record::Unknown { .. } => None,
        }
    }
}

/// The `__consumer_offsets` partition that owns `group_id`: `Utils.abs(groupId.hashCode()) % partitions`
/// (Kafka `GroupCoordinatorService.partitionFor`). Java's `String.hashCode` runs over UTF-16 code
/// units, and `Utils.abs(Integer.MIN_VALUE)` is 0.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    assert!(partitions > 0, "partition count must be positive");
    let hash = group_id.encode_utf16().fold(0i32, |hash, unit| hash.wrapping_mul(31).wrapping_add(i32::from(unit)));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions
}

pub fn encode_key(record: &Record) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    match record {
        Record::OffsetCommit { group_id, topic, partition, .. } => {
            buf.put_i16(KEY_VERSION_OFFSET_COMMIT);
            put_string(&mut buf, group_id);
            put_string(&mut buf, topic);
            buf.put_i32(*partition);
        }
        Record::GroupMetadata { group_id, .. } => {
            buf.put_i16(KEY_VERSION_GROUP_METADATA);
            put_string(&mut buf, group_id);
        }
        Record::Unknown { key_version } => panic!("cannot encode a record of unknown key version {key_version}"),
    }
    buf
}

/// `None` for a tombstone.
pub fn encode_value(record: &Record) -> Option<Vec<u8>> {
    match record {
        Record::OffsetCommit { value, .. } => value.as_ref().map(encode_offset_commit_value),
        Record::GroupMetadata { value, .. } => value.as_ref().map(encode_group_metadata_value),
        Record::Unknown { key_version } => panic!("cannot encode a record of unknown key version {key_version}"),
    }
}

fn encode_offset_commit_value(value: &OffsetCommitValue) -> Vec<u8> {
    let mut buf = Vec::with_capacity(32 + value.metadata.len());
    match value.expire_timestamp_ms {
        // Kafka writes version 1 only to keep an explicit expire timestamp (no leader epoch there).
        Some(expire_timestamp_ms) => {
            buf.put_i16(OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY);
            buf.put_i64(value.offset);
            put_string(&mut buf, &value.metadata);
            buf.put_i64(value.commit_timestamp_ms);
            buf.put_i64(expire_timestamp_ms);
        }
        None => {
            buf.put_i16(OFFSET_COMMIT_VALUE_VERSION);
            buf.put_i64(value.offset);
            buf.put_i32(value.leader_epoch);
            put_string(&mut buf, &value.metadata);
            buf.put_i64(value.commit_timestamp_ms);
        }
    }
    buf
}

fn encode_group_metadata_value(value: &GroupMetadataValue) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    buf.put_i16(GROUP_METADATA_VALUE_VERSION);
    put_string(&mut buf, &value.protocol_type);
    buf.put_i32(value.generation);
    put_nullable_string(&mut buf, value.protocol.as_deref());
    put_nullable_string(&mut buf, value.leader.as_deref());
    buf.put_i64(value.current_state_timestamp_ms);
    put_array_length(&mut buf, value.members.len());
    for member in &value.members {
        put_string(&mut buf, &member.member_id);
        put_nullable_string(&mut buf, member.group_instance_id.as_deref());
        put_string(&mut buf, &member.client_id);
        put_string(&mut buf, &member.client_host);
        buf.put_i32(member.rebalance_timeout_ms);
        buf.put_i32(member.session_timeout_ms);
        put_bytes(&mut buf, &member.subscription);
        put_bytes(&mut buf, &member.assignment);
    }
    buf
}

/// Decodes one record. Keys of versions this module does not own decode to [`Record::Unknown`]
/// without looking at the value.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Record, RecordError> {
    let mut reader = Reader::new(key);
    let key_version = reader.i16()?;
    let record = match key_version {
        KEY_VERSION_OFFSET_COMMIT_LEGACY | KEY_VERSION_OFFSET_COMMIT => {
            let group_id = reader.string()?;
            let topic = reader.string()?;
            let partition = reader.i32()?;
            reader.finish()?;
            let value = value.map(decode_offset_commit_value).transpose()?;
            Record::OffsetCommit { group_id, topic, partition, value }
        }
        KEY_VERSION_GROUP_METADATA => {
            let group_id = reader.string()?;
            reader.finish()?;
            let value = value.map(decode_group_metadata_value).transpose()?;
            Record::GroupMetadata { group_id, value }
        }
        key_version => Record::Unknown { key_version },
    };
    Ok(record)
}

fn decode_offset_commit_value(bytes: &[u8]) -> Result<OffsetCommitValue, RecordError> {
    let mut reader = Reader::new(bytes);
    let version = reader.version("OffsetCommitValue", 0..=3)?;
    let offset = reader.i64()?;
    let leader_epoch = if version >= 3 { reader.i32()? } else { -1 };
    let metadata = reader.string()?;
    let commit_timestamp_ms = reader.i64()?;
    let expire_timestamp_ms = if version == 1 { Some(reader.i64()?).filter(|&ms| ms != -1) } else { None };
    reader.finish()?;
    Ok(OffsetCommitValue { offset, leader_epoch, metadata, commit_timestamp_ms, expire_timestamp_ms })
}

fn decode_group_metadata_value(bytes: &[u8]) -> Result<GroupMetadataValue, RecordError> {
    let mut reader = Reader::new(bytes);
    let version = reader.version("GroupMetadataValue", 0..=3)?;
    let protocol_type = reader.string()?;
    let generation = reader.i32()?;
    let protocol = reader.nullable_string()?;
    let leader = reader.nullable_string()?;
    let current_state_timestamp_ms = if version >= 2 { reader.i64()? } else { -1 };
    let count = reader.array_length()?.ok_or(RecordError::UnexpectedNull)?;
    let mut members = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let member_id = reader.string()?;
        let group_instance_id = if version >= 3 { reader.nullable_string()? } else { None };
        let client_id = reader.string()?;
        let client_host = reader.string()?;
        let rebalance_timeout_ms = if version >= 1 { reader.i32()? } else { -1 };
        let session_timeout_ms = reader.i32()?;
        let subscription = reader.bytes()?;
        let assignment = reader.bytes()?;
        // Version 0 has no rebalance timeout: Kafka uses the session timeout in its place.
        let rebalance_timeout_ms = if version == 0 { session_timeout_ms } else { rebalance_timeout_ms };
        members.push(MemberMetadataValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    reader.finish()?;
    Ok(GroupMetadataValue { protocol_type, generation, protocol, leader, current_state_timestamp_ms, members })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_for_matches_java_string_hash_code() {
        // "a".hashCode() = 97; "ab".hashCode() = 97 * 31 + 98 = 3105.
        assert_eq!(partition_for("a", 50), 47);
        assert_eq!(partition_for("ab", 50), 5);
        // "my-group".hashCode(): h = 31 * h + c over the chars, wrapping at 32 bits, is
        // -1_906_497_762; Utils.abs gives 1_906_497_762, and 1_906_497_762 % 50 = 12.
        assert_eq!(partition_for("my-group", 50), 12);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE, and Utils.abs(MIN_VALUE) == 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // A negative hash: "zzzzzzzz".hashCode() is negative; Utils.abs flips it.
        let negative = "zzzzzzzz".encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
        assert!(negative < 0);
        assert_eq!(partition_for("zzzzzzzz", 50), negative.abs() % 50);
    }

    #[test]
    fn offset_commit_key_golden_bytes() {
        let record = Record::OffsetCommit { group_id: "g".into(), topic: "t".into(), partition: 7, value: None };
        assert_eq!(encode_key(&record), [0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7]);
        assert_eq!(encode_value(&record), None);
        assert_eq!(decode(&encode_key(&record), None), Ok(record));
    }

    #[test]
    fn offset_commit_value_v3_golden_bytes() {
        let value = OffsetCommitValue {
            offset: 5,
            leader_epoch: 2,
            metadata: "m".into(),
            commit_timestamp_ms: 9,
            expire_timestamp_ms: None,
        };
        let record = Record::OffsetCommit { group_id: "g".into(), topic: "t".into(), partition: 0, value: Some(value) };
        let bytes = encode_value(&record).unwrap();
        assert_eq!(bytes, [0, 3, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 2, 0, 1, b'm', 0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(decode(&encode_key(&record), Some(&bytes)), Ok(record));
    }

    #[test]
    fn offset_commit_value_with_expiry_is_written_as_v1() {
        let value = OffsetCommitValue {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 2,
            expire_timestamp_ms: Some(3),
        };
        let record = Record::OffsetCommit { group_id: "g".into(), topic: "t".into(), partition: 0, value: Some(value) };
        let bytes = encode_value(&record).unwrap();
        assert_eq!(&bytes[..2], [0, 1]);
        assert_eq!(decode(&encode_key(&record), Some(&bytes)), Ok(record));
    }

    #[test]
    fn group_metadata_value_round_trip() {
        let value = GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 3,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp_ms: 1234,
            members: vec![MemberMetadataValue {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 60_000,
                session_timeout_ms: 10_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let record = Record::GroupMetadata { group_id: "g".into(), value: Some(value) };
        assert_eq!(encode_key(&record), [0, 2, 0, 1, b'g']);
        let bytes = encode_value(&record).unwrap();
        assert_eq!(&bytes[..2], [0, 3]);
        assert_eq!(decode(&encode_key(&record), Some(&bytes)), Ok(record));
    }

    #[test]
    fn unknown_key_versions_are_skippable_not_errors() {
        for key_version in 3..=8i16 {
            let key = key_version.to_be_bytes();
            assert_eq!(decode(&key, Some(b"anything")), Ok(Record::Unknown { key_version }));
        }
    }

    #[test]
    fn truncated_input_is_an_error_at_every_length() {
        let record = Record::GroupMetadata {
            group_id: "group".into(),
            value: Some(GroupMetadataValue {
                protocol_type: "consumer".into(),
                generation: 1,
                protocol: None,
                leader: None,
                current_state_timestamp_ms: -1,
                members: vec![],
            }),
        };
        let key = encode_key(&record);
        let value = encode_value(&record).unwrap();
        for cut in 0..key.len() {
            assert!(decode(&key[..cut], Some(&value)).is_err());
        }
        for cut in 0..value.len() {
            assert!(decode(&key, Some(&value[..cut])).is_err());
        }
    }
}
