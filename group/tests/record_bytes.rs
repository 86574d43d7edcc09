//! Byte-for-byte pins of every `__consumer_offsets` and `__transaction_state` record type. The
//! expected bytes were printed by the three hand-written codecs (records.rs, consumer/record.rs,
//! txn/record.rs) before they were moved onto one shared `codec.rs`, so a change in any shared
//! primitive (int16 strings, int32 bytes, compact lengths, unsigned varints, tagged fields) fails
//! here. The cases reach the multi-byte varint paths (a 200-byte compact string) and every null.

use bytes::Bytes;
use fjord_group::assignor::Assignment;
use fjord_group::consumer::{ConsumerRecord, CurrentAssignment, MemberMetadata, MemberState, TopicMetadata};
use fjord_group::records::{self, GroupMetadataValue, MemberMetadataValue, OffsetCommitValue, Record};
use fjord_group::txn::{self, TxnRecord, TxnState, TxnValue, VALUE_VERSION_V0};
use uuid::Uuid;

const TRANSACTIONAL_ID: &str = "transactional-id";

/// A record's name, key and value (`None`: a tombstone).
type Case = (&'static str, Vec<u8>, Option<Vec<u8>>);

/// Every record type, tombstones included.
fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (name, record) in classic_records() {
        out.push((name, records::encode_key(&record), records::encode_value(&record)));
    }
    for (name, record) in consumer_records() {
        let (key, value) = record.encode();
        out.push((name, key.to_vec(), value.map(|value| value.to_vec())));
    }
    for (name, record) in txn_records() {
        let (key, value) = record.encode();
        out.push((name, key.to_vec(), value.map(|value| value.to_vec())));
    }
    // Value version 0 (Kafka's transaction.version 0): Fjord reads it and can write it.
    for (name, value) in [("txn_ongoing_v0", ongoing_txn()), ("txn_empty_v0", empty_txn())] {
        out.push((name, txn::encode_key(TRANSACTIONAL_ID).to_vec(), Some(value.encode(VALUE_VERSION_V0).to_vec())));
    }
    out
}

fn classic_records() -> Vec<(&'static str, Record)> {
    let offset = |expire_timestamp_ms| OffsetCommitValue {
        offset: 1 << 40,
        leader_epoch: 7,
        metadata: "meta-é".into(),
        commit_timestamp_ms: 1_700_000_000_000,
        expire_timestamp_ms,
    };
    let members = vec![
        MemberMetadataValue {
            member_id: "member-1".into(),
            group_instance_id: Some("instance-1".into()),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 300_000,
            session_timeout_ms: 45_000,
            subscription: Bytes::from_static(&[0, 1, 2, 3]),
            assignment: Bytes::from_static(&[9, 8]),
        },
        MemberMetadataValue {
            member_id: "member-2".into(),
            group_instance_id: None,
            client_id: String::new(),
            client_host: "/10.0.0.2".into(),
            rebalance_timeout_ms: -1,
            session_timeout_ms: 10_000,
            subscription: Bytes::new(),
            assignment: Bytes::new(),
        },
    ];
    let group = |protocol: Option<&str>, members| GroupMetadataValue {
        protocol_type: "consumer".into(),
        generation: 12,
        protocol: protocol.map(str::to_owned),
        leader: protocol.map(|_| "member-1".to_owned()),
        current_state_timestamp_ms: 1_700_000_000_123,
        members,
    };
    let commit = |value| Record::OffsetCommit { group_id: "group".into(), topic: "topic".into(), partition: 3, value };
    vec![
        ("offset_commit_v3", commit(Some(offset(None)))),
        ("offset_commit_v1_with_expiry", commit(Some(offset(Some(1_700_000_600_000))))),
        ("offset_commit_tombstone", commit(None)),
        (
            "group_metadata_with_members",
            Record::GroupMetadata { group_id: "group".into(), value: Some(group(Some("range"), members)) },
        ),
        ("group_metadata_empty", Record::GroupMetadata { group_id: "group".into(), value: Some(group(None, vec![])) }),
        ("group_metadata_tombstone", Record::GroupMetadata { group_id: "group".into(), value: None }),
    ]
}

/// A topic name of `length` bytes that does not repeat within a line of the pinned bytes.
fn long_name(length: usize) -> String {
    (0..length).map(|index| char::from(b'a' + (index % 26) as u8)).collect()
}

fn assignment(topics: &[(u128, &[i32])]) -> Assignment {
    topics.iter().map(|(topic, partitions)| (Uuid::from_u128(*topic), partitions.iter().copied().collect())).collect()
}

fn consumer_records() -> Vec<(&'static str, ConsumerRecord)> {
    let group_id = || "group".to_string();
    let member_id = || "member".to_string();
    // A topic name of 200 bytes: its compact length (201) takes two varint bytes.
    let long_name = long_name(200);
    let topics = vec![
        TopicMetadata { topic_id: Uuid::from_u128(1), topic_name: "orders".into(), partition_count: 6 },
        TopicMetadata { topic_id: Uuid::from_u128(u128::MAX - 1), topic_name: long_name.clone(), partition_count: 300 },
    ];
    let metadata = MemberMetadata {
        instance_id: Some("instance".into()),
        rack_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        subscribed_topic_names: vec!["orders".into(), "payments".into()],
        subscribed_topic_regex: Some("ord.*".into()),
        rebalance_timeout_ms: 300_000,
        server_assignor: Some("uniform".into()),
    };
    let bare = MemberMetadata { client_id: "c".into(), client_host: "h".into(), ..MemberMetadata::default() };
    let current = CurrentAssignment {
        member_epoch: 9,
        previous_member_epoch: 8,
        state: MemberState::UnreleasedPartitions,
        assigned: assignment(&[(1, &[0, 2, 4]), (2, &[1])]),
        pending_revocation: assignment(&[(3, &[5])]),
    };
    vec![
        ("consumer_group_metadata", ConsumerRecord::GroupMetadata { group_id: group_id(), epoch: Some(42) }),
        ("consumer_group_metadata_tombstone", ConsumerRecord::GroupMetadata { group_id: group_id(), epoch: None }),
        ("consumer_partition_metadata", ConsumerRecord::PartitionMetadata { group_id: group_id(), topics: Some(topics) }),
        ("consumer_partition_metadata_empty", ConsumerRecord::PartitionMetadata { group_id: group_id(), topics: Some(vec![]) }),
        ("consumer_partition_metadata_tombstone", ConsumerRecord::PartitionMetadata { group_id: group_id(), topics: None }),
        (
            "consumer_member_metadata",
            ConsumerRecord::MemberMetadata { group_id: group_id(), member_id: member_id(), value: Some(metadata) },
        ),
        (
            "consumer_member_metadata_nulls",
            ConsumerRecord::MemberMetadata { group_id: group_id(), member_id: member_id(), value: Some(bare) },
        ),
        (
            "consumer_member_metadata_tombstone",
            ConsumerRecord::MemberMetadata { group_id: group_id(), member_id: member_id(), value: None },
        ),
        (
            "consumer_target_assignment_metadata",
            ConsumerRecord::TargetAssignmentMetadata { group_id: group_id(), assignment_epoch: Some(41) },
        ),
        (
            "consumer_target_assignment_metadata_tombstone",
            ConsumerRecord::TargetAssignmentMetadata { group_id: group_id(), assignment_epoch: None },
        ),
        (
            "consumer_target_assignment_member",
            ConsumerRecord::TargetAssignmentMember {
                group_id: group_id(),
                member_id: member_id(),
                assignment: Some(assignment(&[(1, &[0, 1]), (7, &[3])])),
            },
        ),
        (
            "consumer_target_assignment_member_tombstone",
            ConsumerRecord::TargetAssignmentMember { group_id: group_id(), member_id: member_id(), assignment: None },
        ),
        (
            "consumer_current_member_assignment",
            ConsumerRecord::CurrentMemberAssignment { group_id: group_id(), member_id: member_id(), value: Some(current) },
        ),
        (
            "consumer_current_member_assignment_tombstone",
            ConsumerRecord::CurrentMemberAssignment { group_id: group_id(), member_id: member_id(), value: None },
        ),
    ]
}

fn ongoing_txn() -> TxnValue {
    TxnValue {
        producer_id: 1_000,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch: 3,
        transaction_timeout_ms: 60_000,
        state: TxnState::Ongoing,
        // A topic name of 130 bytes: its compact length (131) takes two varint bytes.
        partitions: vec![("orders".into(), vec![0, 1, 2]), (long_name(130), vec![7])],
        last_update_ms: 1_700_000_000_500,
        start_ms: 1_700_000_000_000,
        client_transaction_version: 0,
    }
}

fn empty_txn() -> TxnValue {
    TxnValue {
        previous_producer_id: 999,
        next_producer_id: 1_001,
        client_transaction_version: 2,
        state: TxnState::Empty,
        partitions: vec![],
        start_ms: -1,
        ..ongoing_txn()
    }
}

fn txn_records() -> Vec<(&'static str, TxnRecord)> {
    let record = |value| TxnRecord { transactional_id: TRANSACTIONAL_ID.into(), value };
    vec![
        ("txn_ongoing_v1", record(Some(ongoing_txn()))),
        ("txn_empty_v1_with_tags", record(Some(empty_txn()))),
        ("txn_tombstone", record(None)),
    ]
}

#[test]
fn every_record_type_encodes_to_the_bytes_the_old_codecs_wrote() {
    let cases = cases();
    assert_eq!(cases.len(), PINNED.len(), "one pinned entry per case");
    for ((name, key, value), pinned) in cases.iter().zip(PINNED) {
        assert_eq!(*name, pinned.name, "cases and pinned bytes are in the same order");
        assert_eq!(&key[..], pinned.key, "{name}: key bytes");
        assert_eq!(value.as_deref(), pinned.value().as_deref(), "{name}: value bytes");
    }
}

#[test]
fn every_pinned_record_decodes() {
    for pinned in PINNED {
        let value = pinned.value();
        let decoded = if pinned.name.starts_with("txn_") {
            TxnRecord::decode(pinned.key, value.as_deref()).map(drop).map_err(|error| error.to_string())
        } else if pinned.name.starts_with("consumer_") {
            ConsumerRecord::decode(pinned.key, value.as_deref()).map(drop).map_err(|error| error.to_string())
        } else {
            records::decode(pinned.key, value.as_deref()).map(drop).map_err(|error| error.to_string())
        };
        assert_eq!(decoded, Ok(()), "{}", pinned.name);
    }
}

/// One record's bytes as the pre-`codec.rs` encoders wrote them.
struct Pinned {
    name: &'static str,
    key: &'static [u8],
    /// `None`: a tombstone. Otherwise the value's bytes in parts, one after the other, so that a
    /// long topic name is written once, as [`LONG_NAME`], between the bytes around it.
    value: Option<&'static [&'static [u8]]>,
}

impl Pinned {
    /// The value's bytes, its parts joined; `None` for a tombstone.
    fn value(&self) -> Option<Vec<u8>> {
        self.value.map(<[&[u8]]>::concat)
    }
}

/// The bytes of `long_name(200)`: the alphabet over and over.
const LONG_NAME: &[u8; 200] = b"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz\
    abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz\
    abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz\
    abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqr";
/// The bytes of `long_name(130)`.
const LONG_NAME_130: &[u8] = LONG_NAME.split_at(130).0;

// The keys, one per record type: int16 key version, then the key fields of the cases ("group",
// "topic", partition 3; "member"; "transactional-id").
const OFFSET_COMMIT_KEY: &[u8] = &[0, 1, 0, 5, 103, 114, 111, 117, 112, 0, 5, 116, 111, 112, 105, 99, 0, 0, 0, 3];
const GROUP_METADATA_KEY: &[u8] = &[0, 2, 0, 5, 103, 114, 111, 117, 112];
const CONSUMER_GROUP_METADATA_KEY: &[u8] = &[0, 3, 0, 5, 103, 114, 111, 117, 112];
const CONSUMER_PARTITION_METADATA_KEY: &[u8] = &[0, 4, 0, 5, 103, 114, 111, 117, 112];
const CONSUMER_MEMBER_METADATA_KEY: &[u8] = &[0, 5, 0, 5, 103, 114, 111, 117, 112, 0, 6, 109, 101, 109, 98, 101, 114];
const CONSUMER_TARGET_ASSIGNMENT_METADATA_KEY: &[u8] = &[0, 6, 0, 5, 103, 114, 111, 117, 112];
const CONSUMER_TARGET_ASSIGNMENT_MEMBER_KEY: &[u8] = &[0, 7, 0, 5, 103, 114, 111, 117, 112, 0, 6, 109, 101, 109, 98, 101, 114];
const CONSUMER_CURRENT_MEMBER_ASSIGNMENT_KEY: &[u8] = &[0, 8, 0, 5, 103, 114, 111, 117, 112, 0, 6, 109, 101, 109, 98, 101, 114];
const TXN_KEY: &[u8] = &[0, 0, 0, 16, 116, 114, 97, 110, 115, 97, 99, 116, 105, 111, 110, 97, 108, 45, 105, 100];

/// Printed by the old encoders (commit 1a769c5's records.rs, consumer/record.rs, txn/record.rs)
/// from [`cases`], in the same order.
#[rustfmt::skip]
const PINNED: &[Pinned] = &[
    Pinned { name: "offset_commit_v3", key: OFFSET_COMMIT_KEY, value: Some(&[&[
        0, 3, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 7, 109, 101, 116, 97,
        45, 195, 169, 0, 0, 1, 139, 207, 229, 104, 0,
    ]]) },
    Pinned { name: "offset_commit_v1_with_expiry", key: OFFSET_COMMIT_KEY, value: Some(&[&[
        0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 109, 101, 116, 97, 45, 195, 169, 0,
        0, 1, 139, 207, 229, 104, 0, 0, 0, 1, 139, 207, 238, 143, 192,
    ]]) },
    Pinned { name: "offset_commit_tombstone", key: OFFSET_COMMIT_KEY, value: None },
    Pinned { name: "group_metadata_with_members", key: GROUP_METADATA_KEY, value: Some(&[
        // The group: version 3, protocol type, generation, protocol, leader, state timestamp, 2 members.
        &[
            0, 3, 0, 8, 99, 111, 110, 115, 117, 109, 101, 114, 0, 0, 0, 12, 0, 5, 114, 97,
            110, 103, 101, 0, 8, 109, 101, 109, 98, 101, 114, 45, 49, 0, 0, 1, 139, 207, 229, 104,
            123, 0, 0, 0, 2,
        ],
        // member-1: every field set.
        &[
            0, 8, 109, 101, 109, 98, 101, 114, 45, 49, 0, 10, 105, 110, 115, 116, 97, 110, 99, 101,
            45, 49, 0, 6, 99, 108, 105, 101, 110, 116, 0, 10, 47, 49, 50, 55, 46, 48, 46, 48,
            46, 49, 0, 4, 147, 224, 0, 0, 175, 200, 0, 0, 0, 4, 0, 1, 2, 3, 0, 0,
            0, 2, 9, 8,
        ],
        // member-2: null instance id, empty client id, rebalance timeout -1, empty subscription and assignment.
        &[
            0, 8, 109, 101, 109, 98, 101, 114, 45, 50, 255, 255, 0, 0, 0, 9, 47, 49, 48, 46,
            48, 46, 48, 46, 50, 255, 255, 255, 255, 0, 0, 39, 16, 0, 0, 0, 0, 0, 0, 0,
            0,
        ],
    ]) },
    Pinned { name: "group_metadata_empty", key: GROUP_METADATA_KEY, value: Some(&[&[
        0, 3, 0, 8, 99, 111, 110, 115, 117, 109, 101, 114, 0, 0, 0, 12, 255, 255, 255, 255,
        0, 0, 1, 139, 207, 229, 104, 123, 0, 0, 0, 0,
    ]]) },
    Pinned { name: "group_metadata_tombstone", key: GROUP_METADATA_KEY, value: None },
    Pinned { name: "consumer_group_metadata", key: CONSUMER_GROUP_METADATA_KEY, value: Some(&[&[0, 0, 0, 0, 0, 42, 0]]) },
    Pinned { name: "consumer_group_metadata_tombstone", key: CONSUMER_GROUP_METADATA_KEY, value: None },
    Pinned { name: "consumer_partition_metadata", key: CONSUMER_PARTITION_METADATA_KEY, value: Some(&[
        &[
            0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 7,
            111, 114, 100, 101, 114, 115, 0, 0, 0, 6, 1, 0, 255, 255, 255, 255, 255, 255, 255, 255,
            255, 255, 255, 255, 255, 255, 255, 254, 201, 1,
        ],
        LONG_NAME,
        &[0, 0, 1, 44, 1, 0, 0],
    ]) },
    Pinned { name: "consumer_partition_metadata_empty", key: CONSUMER_PARTITION_METADATA_KEY, value: Some(&[&[0, 0, 1, 0]]) },
    Pinned { name: "consumer_partition_metadata_tombstone", key: CONSUMER_PARTITION_METADATA_KEY, value: None },
    Pinned { name: "consumer_member_metadata", key: CONSUMER_MEMBER_METADATA_KEY, value: Some(&[&[
        0, 0, 9, 105, 110, 115, 116, 97, 110, 99, 101, 0, 7, 99, 108, 105, 101, 110, 116, 11,
        47, 49, 50, 55, 46, 48, 46, 48, 46, 49, 3, 7, 111, 114, 100, 101, 114, 115, 9, 112,
        97, 121, 109, 101, 110, 116, 115, 6, 111, 114, 100, 46, 42, 0, 4, 147, 224, 8, 117, 110,
        105, 102, 111, 114, 109, 0,
    ]]) },
    Pinned { name: "consumer_member_metadata_nulls", key: CONSUMER_MEMBER_METADATA_KEY, value: Some(&[&[
        0, 0, 0, 0, 2, 99, 2, 104, 1, 0, 0, 0, 0, 0, 0, 0,
    ]]) },
    Pinned { name: "consumer_member_metadata_tombstone", key: CONSUMER_MEMBER_METADATA_KEY, value: None },
    Pinned { name: "consumer_target_assignment_metadata", key: CONSUMER_TARGET_ASSIGNMENT_METADATA_KEY, value: Some(&[&[
        0, 0, 0, 0, 0, 41, 0,
    ]]) },
    Pinned { name: "consumer_target_assignment_metadata_tombstone", key: CONSUMER_TARGET_ASSIGNMENT_METADATA_KEY, value: None },
    Pinned { name: "consumer_target_assignment_member", key: CONSUMER_TARGET_ASSIGNMENT_MEMBER_KEY, value: Some(&[&[
        0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3,
        0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 7, 2, 0, 0, 0, 3, 0, 0,
    ]]) },
    Pinned { name: "consumer_target_assignment_member_tombstone", key: CONSUMER_TARGET_ASSIGNMENT_MEMBER_KEY, value: None },
    Pinned { name: "consumer_current_member_assignment", key: CONSUMER_CURRENT_MEMBER_ASSIGNMENT_KEY, value: Some(&[&[
        0, 0, 0, 0, 0, 9, 0, 0, 0, 8, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
        4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 0,
        0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        3, 2, 0, 0, 0, 5, 0, 0,
    ]]) },
    Pinned { name: "consumer_current_member_assignment_tombstone", key: CONSUMER_CURRENT_MEMBER_ASSIGNMENT_KEY, value: None },
    Pinned { name: "txn_ongoing_v1", key: TXN_KEY, value: Some(&[
        &[
            0, 1, 0, 0, 0, 0, 0, 0, 3, 232, 0, 3, 0, 0, 234, 96, 1, 3, 7, 111,
            114, 100, 101, 114, 115, 4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 131,
            1,
        ],
        LONG_NAME_130,
        &[
            2, 0, 0, 0, 7, 0, 0, 0, 1, 139, 207, 229, 105, 244, 0, 0, 1, 139, 207, 229,
            104, 0, 0,
        ],
    ]) },
    Pinned { name: "txn_empty_v1_with_tags", key: TXN_KEY, value: Some(&[&[
        0, 1, 0, 0, 0, 0, 0, 0, 3, 232, 0, 3, 0, 0, 234, 96, 0, 0, 0, 0,
        1, 139, 207, 229, 105, 244, 255, 255, 255, 255, 255, 255, 255, 255, 3, 0, 8, 0, 0, 0,
        0, 0, 0, 3, 231, 1, 8, 0, 0, 0, 0, 0, 0, 3, 233, 2, 2, 0, 2,
    ]]) },
    Pinned { name: "txn_tombstone", key: TXN_KEY, value: None },
    Pinned { name: "txn_ongoing_v0", key: TXN_KEY, value: Some(&[
        &[
            0, 0, 0, 0, 0, 0, 0, 0, 3, 232, 0, 3, 0, 0, 234, 96, 1, 0, 0, 0,
            2, 0, 6, 111, 114, 100, 101, 114, 115, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0,
            1, 0, 0, 0, 2, 0, 130,
        ],
        LONG_NAME_130,
        &[
            0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 1, 139, 207, 229, 105, 244, 0, 0, 1, 139,
            207, 229, 104, 0,
        ],
    ]) },
    Pinned { name: "txn_empty_v0", key: TXN_KEY, value: Some(&[&[
        0, 0, 0, 0, 0, 0, 0, 0, 3, 232, 0, 3, 0, 0, 234, 96, 0, 255, 255, 255,
        255, 0, 0, 1, 139, 207, 229, 105, 244, 255, 255, 255, 255, 255, 255, 255, 255,
    ]]) },
];
