//! The `__consumer_offsets` records of KIP-848 consumer groups, key versions 3..=8, encoded the
//! way Kafka's generated coordinator messages are:
//!
//! ```text
//!   key   = i16 key version (3..=8) | key struct, non-flexible (i16-length strings)
//!   value = i16 value version (0)   | value struct, flexible (compact strings/arrays, tagged fields)
//!   tombstone = key with a null value
//! ```
//!
//! Field lists follow the JSON schemas in apache/kafka `group-coordinator/src/main/resources/
//! common/message/ConsumerGroup*{Key,Value}.json`. Tagged fields are written empty and skipped on
//! read; the optional racks in partition metadata are written empty. Key versions 0..=2 belong to
//! the classic group and offset records (records.rs) and are rejected here. The primitives
//! (compact lengths, unsigned varints, tag sections, bounded reads) are [`crate::codec`]'s.

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use crate::assignor::Assignment;
pub use crate::codec::RecordError;
use crate::codec::{put_compact_length, put_compact_nullable_string, put_compact_string, put_empty_tags, put_string, Reader};

pub const GROUP_METADATA_KEY_VERSION: i16 = 3;
pub const PARTITION_METADATA_KEY_VERSION: i16 = 4;
pub const MEMBER_METADATA_KEY_VERSION: i16 = 5;
pub const TARGET_ASSIGNMENT_METADATA_KEY_VERSION: i16 = 6;
pub const TARGET_ASSIGNMENT_MEMBER_KEY_VERSION: i16 = 7;
pub const CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION: i16 = 8;
const VALUE_VERSION: i16 = 0;
// Key versions 0..=2 are the classic records (offset commit, group metadata): never ours.
const _: () = assert!(GROUP_METADATA_KEY_VERSION == 3 && CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION == 8);

/// Reconciliation state of a member (Kafka's `MemberState`, persisted as an int8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemberState {
    /// Owns its whole assignment at the target epoch.
    #[default]
    Stable,
    /// Must give up `partitions_pending_revocation` before it can move to the next epoch.
    UnrevokedPartitions,
    /// At the target epoch, waiting for other members to release partitions it was given.
    UnreleasedPartitions,
}

impl MemberState {
    fn code(self) -> i8 {
        match self {
            MemberState::Stable => 1,
            MemberState::UnrevokedPartitions => 2,
            MemberState::UnreleasedPartitions => 3,
        }
    }

    fn from_code(code: i8) -> Result<MemberState, RecordError> {
        match code {
            // 0 is Kafka's UNKNOWN; a member in it reconciles from scratch, as Stable does.
            0 | 1 => Ok(MemberState::Stable),
            2 => Ok(MemberState::UnrevokedPartitions),
            3 => Ok(MemberState::UnreleasedPartitions),
            code => Err(RecordError::UnknownCode { what: "member state", code }),
        }
    }
}

/// Topic of the group's subscription metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub topic_id: Uuid,
    pub topic_name: String,
    pub partition_count: i32,
}

/// Value of ConsumerGroupMemberMetadata (key version 5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberMetadata {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Sorted and without duplicates.
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
}

/// Value of ConsumerGroupCurrentMemberAssignment (key version 8).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CurrentAssignment {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
}

/// One KIP-848 record. `None` values are tombstones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerRecord {
    /// Key version 3: the group epoch.
    GroupMetadata { group_id: String, epoch: Option<i32> },
    /// Key version 4: the subscribed topics and their partition counts.
    PartitionMetadata { group_id: String, topics: Option<Vec<TopicMetadata>> },
    /// Key version 5: a member's subscription and identity.
    MemberMetadata { group_id: String, member_id: String, value: Option<MemberMetadata> },
    /// Key version 6: the epoch of the target assignment.
    TargetAssignmentMetadata { group_id: String, assignment_epoch: Option<i32> },
    /// Key version 7: a member's target assignment.
    TargetAssignmentMember { group_id: String, member_id: String, assignment: Option<Assignment> },
    /// Key version 8: a member's current assignment and epoch.
    CurrentMemberAssignment { group_id: String, member_id: String, value: Option<CurrentAssignment> },
}

impl ConsumerRecord {
    pub fn group_id(&self) -> &str {
        match self {
            ConsumerRecord::GroupMetadata { group_id, .. }
            | ConsumerRecord::PartitionMetadata { group_id, .. }
            | ConsumerRecord::MemberMetadata { group_id, .. }
            | ConsumerRecord::TargetAssignmentMetadata { group_id, .. }
            | ConsumerRecord::TargetAssignmentMember { group_id, .. }
            | ConsumerRecord::CurrentMemberAssignment { group_id, .. } => group_id,
        }
    }

    pub fn key_version(&self) -> i16 {
        match self {
            ConsumerRecord::GroupMetadata { .. } => GROUP_METADATA_KEY_VERSION,
            ConsumerRecord::PartitionMetadata { .. } => PARTITION_METADATA_KEY_VERSION,
            ConsumerRecord::MemberMetadata { .. } => MEMBER_METADATA_KEY_VERSION,
            ConsumerRecord::TargetAssignmentMetadata { .. } => TARGET_ASSIGNMENT_METADATA_KEY_VERSION,
            ConsumerRecord::TargetAssignmentMember { .. } => TARGET_ASSIGNMENT_MEMBER_KEY_VERSION,
            ConsumerRecord::CurrentMemberAssignment { .. } => CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION,
        }
    }

    /// The key version of a `__consumer_offsets` record key, to route it between this module
    /// (3..=8) and the classic group and offset records (0..=2).
    pub fn key_version_of(key: &[u8]) -> Option<i16> {
        Some(i16::from_be_bytes([*key.first()?, *key.get(1)?]))
    }

    /// Whether a key version belongs to this module (the caller routes records by it).
    pub fn is_consumer_key_version(key_version: i16) -> bool {
        (GROUP_METADATA_KEY_VERSION..=CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION).contains(&key_version)
    }

    pub fn is_tombstone(&self) -> bool {
        match self {
            ConsumerRecord::GroupMetadata { epoch, .. } => epoch.is_none(),
            ConsumerRecord::PartitionMetadata { topics, .. } => topics.is_none(),
            ConsumerRecord::MemberMetadata { value, .. } => value.is_none(),
            ConsumerRecord::TargetAssignmentMetadata { assignment_epoch, .. } => assignment_epoch.is_none(),
            ConsumerRecord::TargetAssignmentMember { assignment, .. } => assignment.is_none(),
            ConsumerRecord::CurrentMemberAssignment { value, .. } => value.is_none(),
        }
    }

    /// Record key and value (`None` for a tombstone).
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::new();
        key.put_i16(self.key_version());
        put_string(&mut key, self.group_id());
        match self {
            ConsumerRecord::MemberMetadata { member_id, .. }
            | ConsumerRecord::TargetAssignmentMember { member_id, .. }
            | ConsumerRecord::CurrentMemberAssignment { member_id, .. } => put_string(&mut key, member_id),
            _ => {}
        }
        let value = self.encode_value();
        (key.freeze(), value.map(BytesMut::freeze))
    }

    fn encode_value(&self) -> Option<BytesMut> {
        let mut out = BytesMut::new();
        out.put_i16(VALUE_VERSION);
        match self {
            ConsumerRecord::GroupMetadata { epoch, .. } => out.put_i32((*epoch)?),
            ConsumerRecord::PartitionMetadata { topics, .. } => {
                let topics = topics.as_ref()?;
                put_compact_length(&mut out, topics.len());
                for topic in topics {
                    out.put_slice(topic.topic_id.as_bytes());
                    put_compact_string(&mut out, &topic.topic_name);
                    out.put_i32(topic.partition_count);
                    put_compact_length(&mut out, 0); // PartitionRacks: Fjord has no racks.
                    put_empty_tags(&mut out);
                }
            }
            ConsumerRecord::MemberMetadata { value, .. } => {
                let value = value.as_ref()?;
                put_compact_nullable_string(&mut out, value.instance_id.as_deref());
                put_compact_nullable_string(&mut out, value.rack_id.as_deref());
                put_compact_string(&mut out, &value.client_id);
                put_compact_string(&mut out, &value.client_host);
                put_compact_length(&mut out, value.subscribed_topic_names.len());
                for name in &value.subscribed_topic_names {
                    put_compact_string(&mut out, name);
                }
                put_compact_nullable_string(&mut out, value.subscribed_topic_regex.as_deref());
                out.put_i32(value.rebalance_timeout_ms);
                put_compact_nullable_string(&mut out, value.server_assignor.as_deref());
            }
            ConsumerRecord::TargetAssignmentMetadata { assignment_epoch, .. } => out.put_i32((*assignment_epoch)?),
            ConsumerRecord::TargetAssignmentMember { assignment, .. } => put_assignment(&mut out, assignment.as_ref()?),
            ConsumerRecord::CurrentMemberAssignment { value, .. } => {
                let value = value.as_ref()?;
                out.put_i32(value.member_epoch);
                out.put_i32(value.previous_member_epoch);
                out.put_i8(value.state.code());
                put_assignment(&mut out, &value.assigned);
                put_assignment(&mut out, &value.pending_revocation);
            }
        }
        put_empty_tags(&mut out);
        Some(out)
    }

    /// Decodes a record written by [`ConsumerRecord::encode`] (or by Kafka).
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<ConsumerRecord, RecordError> {
        let mut key = Reader::new(key);
        let key_version = key.i16()?;
        if !Self::is_consumer_key_version(key_version) {
            return Err(RecordError::UnknownKeyVersion(key_version));
        }
        let group_id = key.string()?;
        let has_member = matches!(
            key_version,
            MEMBER_METADATA_KEY_VERSION | TARGET_ASSIGNMENT_MEMBER_KEY_VERSION | CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION
        );
        let member_id = if has_member { key.string()? } else { String::new() };
        key.finish()?;
        let Some(value) = value else {
            return Ok(Self::tombstone(key_version, group_id, member_id));
        };
        let buf = &mut Reader::new(value);
        buf.version("consumer group record value", VALUE_VERSION..=VALUE_VERSION)?;
        let record = match key_version {
            GROUP_METADATA_KEY_VERSION => ConsumerRecord::GroupMetadata { group_id, epoch: Some(buf.i32()?) },
            PARTITION_METADATA_KEY_VERSION => {
                let count = buf.compact_array_length()?;
                let mut topics = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    let topic_id = buf.uuid()?;
                    let topic_name = buf.compact_string()?;
                    let partition_count = buf.i32()?;
                    // PartitionRacks: [partition:i32 | racks:[string] | tags], read and dropped.
                    for _ in 0..buf.compact_length()?.unwrap_or(0) {
                        buf.i32()?;
                        for _ in 0..buf.compact_length()?.unwrap_or(0) {
                            buf.compact_nullable_string()?;
                        }
                        buf.skip_tags()?;
                    }
                    buf.skip_tags()?;
                    topics.push(TopicMetadata { topic_id, topic_name, partition_count });
                }
                ConsumerRecord::PartitionMetadata { group_id, topics: Some(topics) }
            }
            MEMBER_METADATA_KEY_VERSION => {
                let instance_id = buf.compact_nullable_string()?;
                let rack_id = buf.compact_nullable_string()?;
                let client_id = buf.compact_string()?;
                let client_host = buf.compact_string()?;
                let count = buf.compact_array_length()?;
                let mut subscribed_topic_names = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    subscribed_topic_names.push(buf.compact_string()?);
                }
                let subscribed_topic_regex = buf.compact_nullable_string()?;
                let rebalance_timeout_ms = buf.i32()?;
                let server_assignor = buf.compact_nullable_string()?;
                let value = MemberMetadata {
                    instance_id,
                    rack_id,
                    client_id,
                    client_host,
                    subscribed_topic_names,
                    subscribed_topic_regex,
                    rebalance_timeout_ms,
                    server_assignor,
                };
                ConsumerRecord::MemberMetadata { group_id, member_id, value: Some(value) }
            }
            TARGET_ASSIGNMENT_METADATA_KEY_VERSION => {
                ConsumerRecord::TargetAssignmentMetadata { group_id, assignment_epoch: Some(buf.i32()?) }
            }
            TARGET_ASSIGNMENT_MEMBER_KEY_VERSION => {
                ConsumerRecord::TargetAssignmentMember { group_id, member_id, assignment: Some(get_assignment(buf)?) }
            }
            _ => {
                let member_epoch = buf.i32()?;
                let previous_member_epoch = buf.i32()?;
                let state = MemberState::from_code(buf.i8()?)?;
                let assigned = get_assignment(buf)?;
                let pending_revocation = get_assignment(buf)?;
                let value = CurrentAssignment { member_epoch, previous_member_epoch, state, assigned, pending_revocation };
                ConsumerRecord::CurrentMemberAssignment { group_id, member_id, value: Some(value) }
            }
        };
        buf.skip_tags()?;
        buf.finish()?;
        Ok(record)
    }

    fn tombstone(key_version: i16, group_id: String, member_id: String) -> ConsumerRecord {
        match key_version {
            GROUP_METADATA_KEY_VERSION => ConsumerRecord::GroupMetadata { group_id, epoch: None },
            PARTITION_METADATA_KEY_VERSION => ConsumerRecord::PartitionMetadata { group_id, topics: None },
            MEMBER_METADATA_KEY_VERSION => ConsumerRecord::MemberMetadata { group_id, member_id, value: None },
            TARGET_ASSIGNMENT_METADATA_KEY_VERSION => {
                ConsumerRecord::TargetAssignmentMetadata { group_id, assignment_epoch: None }
            }
            TARGET_ASSIGNMENT_MEMBER_KEY_VERSION => {
                ConsumerRecord::TargetAssignmentMember { group_id, member_id, assignment: None }
            }
            _ => ConsumerRecord::CurrentMemberAssignment { group_id, member_id, value: None },
        }
    }
}

fn put_assignment(out: &mut BytesMut, assignment: &Assignment) {
    put_compact_length(out, assignment.len());
    for (topic_id, partitions) in assignment {
        out.put_slice(topic_id.as_bytes());
        put_compact_length(out, partitions.len());
        for partition in partitions {
            out.put_i32(*partition);
        }
        put_empty_tags(out);
    }
}

fn get_assignment(buf: &mut Reader<'_>) -> Result<Assignment, RecordError> {
    let count = buf.compact_array_length()?;
    let mut assignment = Assignment::new();
    for _ in 0..count {
        let topic_id = buf.uuid()?;
        let partition_count = buf.compact_array_length()?;
        let partitions = assignment.entry(topic_id).or_default();
        for _ in 0..partition_count {
            partitions.insert(buf.i32()?);
        }
        buf.skip_tags()?;
    }
    assignment.retain(|_, partitions| !partitions.is_empty());
    Ok(assignment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topic(index: u128) -> Uuid {
        Uuid::from_u128(index)
    }

    #[test]
    fn group_metadata_golden_bytes() {
        // Key: i16 version 3, i16-length "g". Value: i16 version 0, i32 epoch 5, empty tagged fields.
        let record = ConsumerRecord::GroupMetadata { group_id: "g".into(), epoch: Some(5) };
        let (key, value) = record.encode();
        assert_eq!(&key[..], &[0, 3, 0, 1, b'g']);
        assert_eq!(value.as_deref(), Some(&[0, 0, 0, 0, 0, 5, 0][..]));
    }

    #[test]
    fn current_assignment_golden_bytes() {
        let value = CurrentAssignment {
            member_epoch: 2,
            previous_member_epoch: 1,
            state: MemberState::UnrevokedPartitions,
            assigned: [(topic(1), [0].into())].into(),
            pending_revocation: Assignment::new(),
        };
        let record = ConsumerRecord::CurrentMemberAssignment { group_id: "g".into(), member_id: "m".into(), value: Some(value) };
        let (key, value) = record.encode();
        assert_eq!(&key[..], &[0, 8, 0, 1, b'g', 0, 1, b'm']);
        let mut expected = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 2];
        expected.push(2); // one topic (compact length + 1)
        expected.extend_from_slice(topic(1).as_bytes());
        expected.extend_from_slice(&[2, 0, 0, 0, 0, 0]); // one partition: 0; empty tags
        expected.extend_from_slice(&[1, 0]); // no pending revocation; empty tags of the value
        assert_eq!(value.as_deref(), Some(&expected[..]));
    }

    #[test]
    fn tombstones_have_no_value_and_decode_back() {
        let record = ConsumerRecord::MemberMetadata { group_id: "g".into(), member_id: "m".into(), value: None };
        let (key, value) = record.encode();
        assert!(value.is_none());
        assert_eq!(ConsumerRecord::decode(&key, None), Ok(record));
    }

    #[test]
    fn classic_key_versions_are_not_ours() {
        for version in 0i16..=2 {
            let key = [version.to_be_bytes().as_slice(), &[0, 1, b'g']].concat();
            assert_eq!(ConsumerRecord::decode(&key, None), Err(RecordError::UnknownKeyVersion(version)));
        }
    }

    fn assignment() -> impl Strategy<Value = Assignment> {
        proptest::collection::btree_map(0u128..4, proptest::collection::btree_set(0i32..64, 1..5), 0..3)
            .prop_map(|map| map.into_iter().map(|(t, p)| (topic(t), p)).collect())
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9-]{0,12}"
    }

    fn record() -> impl Strategy<Value = ConsumerRecord> {
        let state = prop_oneof![
            Just(MemberState::Stable),
            Just(MemberState::UnrevokedPartitions),
            Just(MemberState::UnreleasedPartitions)
        ];
        let metadata = (
            proptest::option::of(name()),
            proptest::option::of(name()),
            name(),
            name(),
            proptest::collection::vec(name(), 0..4),
            proptest::option::of(name()),
            -1i32..100_000,
            proptest::option::of(name()),
        )
            .prop_map(|(instance_id, rack_id, client_id, client_host, names, regex, timeout, assignor)| MemberMetadata {
                instance_id,
                rack_id,
                client_id,
                client_host,
                subscribed_topic_names: names,
                subscribed_topic_regex: regex,
                rebalance_timeout_ms: timeout,
                server_assignor: assignor,
            });
        let current = (any::<i32>(), any::<i32>(), state, assignment(), assignment()).prop_map(
            |(member_epoch, previous_member_epoch, state, assigned, pending_revocation)| CurrentAssignment {
                member_epoch,
                previous_member_epoch,
                state,
                assigned,
                pending_revocation,
            },
        );
        let topics = proptest::collection::vec((0u128..8, name(), 0i32..1000), 0..4).prop_map(|topics| {
            topics
                .into_iter()
                .map(|(id, topic_name, partition_count)| TopicMetadata { topic_id: topic(id), topic_name, partition_count })
                .collect::<Vec<_>>()
        });
        prop_oneof![
            (name(), proptest::option::of(any::<i32>()))
                .prop_map(|(group_id, epoch)| ConsumerRecord::GroupMetadata { group_id, epoch }),
            (name(), proptest::option::of(topics))
                .prop_map(|(group_id, topics)| ConsumerRecord::PartitionMetadata { group_id, topics }),
            (name(), name(), proptest::option::of(metadata))
                .prop_map(|(group_id, member_id, value)| ConsumerRecord::MemberMetadata { group_id, member_id, value }),
            (name(), proptest::option::of(any::<i32>()))
                .prop_map(|(group_id, assignment_epoch)| ConsumerRecord::TargetAssignmentMetadata { group_id, assignment_epoch }),
            (name(), name(), proptest::option::of(assignment())).prop_map(|(group_id, member_id, assignment)| {
                ConsumerRecord::TargetAssignmentMember { group_id, member_id, assignment }
            }),
            (name(), name(), proptest::option::of(current))
                .prop_map(|(group_id, member_id, value)| ConsumerRecord::CurrentMemberAssignment { group_id, member_id, value }),
        ]
    }

    proptest! {
        #[test]
        fn every_record_round_trips(record in record()) {
            let (key, value) = record.encode();
            prop_assert_eq!(ConsumerRecord::decode(&key, value.as_deref()), Ok(record));
        }

        #[test]
        fn truncated_or_garbage_records_error_instead_of_panicking(
            record in record(),
            cut in any::<prop::sample::Index>(),
            garbage in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let (key, value) = record.encode();
            if let Some(value) = value {
                let cut = cut.index(value.len());
                prop_assert!(ConsumerRecord::decode(&key, Some(&value[..cut])).is_err());
            }
            let _ = ConsumerRecord::decode(&key, Some(&garbage));
            let _ = ConsumerRecord::decode(&garbage, Some(&garbage));
        }
    }
}
