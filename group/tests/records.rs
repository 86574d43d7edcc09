//! `__consumer_offsets` record encodings: arbitrary records survive encode -> decode, and arbitrary
//! bytes never make the decoder panic (it reads untrusted log contents at load).

use bytes::Bytes;
use fjord_group::records::{self, GroupMetadataValue, MemberMetadataValue, OffsetCommitValue, Record};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._é-]{0,12}"
}

fn offset_commit() -> impl Strategy<Value = Record> {
    let value = (any::<i64>(), -1..100i32, name(), any::<i64>(), prop::option::of(0..i64::MAX)).prop_map(
        |(offset, leader_epoch, metadata, commit_timestamp_ms, expire_timestamp_ms)| OffsetCommitValue {
            offset,
            // Value version 1 (written when an expiry is set) has no leader epoch.
            leader_epoch: if expire_timestamp_ms.is_some() { -1 } else { leader_epoch },
            metadata,
            commit_timestamp_ms,
            expire_timestamp_ms,
        },
    );
    (name(), name(), any::<i32>(), prop::option::of(value)).prop_map(|(group_id, topic, partition, value)| Record::OffsetCommit {
        group_id,
        topic,
        partition,
        value,
    })
}

fn member() -> impl Strategy<Value = MemberMetadataValue> {
    (name(), prop::option::of(name()), name(), name(), any::<i32>(), any::<i32>(), prop::collection::vec(any::<u8>(), 0..8))
        .prop_map(|(id, instance_id, client, host, rebalance_ms, session_ms, subscription)| MemberMetadataValue {
            member_id: id,
            group_instance_id: instance_id,
            client_id: client,
            client_host: host,
            rebalance_timeout_ms: rebalance_ms,
            session_timeout_ms: session_ms,
            // Bytes other than the subscription's: the same, reversed.
            assignment: Bytes::from(subscription.iter().rev().copied().collect::<Vec<_>>()),
            subscription: Bytes::from(subscription),
        })
}

fn group_metadata() -> impl Strategy<Value = Record> {
    let value =
        (
            name(),
            any::<i32>(),
            prop::option::of(name()),
            prop::option::of(name()),
            any::<i64>(),
            prop::collection::vec(member(), 0..4),
        )
            .prop_map(|(protocol_type, generation, protocol, leader, current_state_timestamp_ms, members)| {
                GroupMetadataValue { protocol_type, generation, protocol, leader, current_state_timestamp_ms, members }
            });
    (name(), prop::option::of(value)).prop_map(|(group_id, value)| Record::GroupMetadata { group_id, value })
}

proptest! {
    #[test]
    fn every_record_round_trips(record in prop_oneof![offset_commit(), group_metadata()]) {
        let key = records::encode_key(&record);
        let value = records::encode_value(&record);
        prop_assert_eq!(records::decode(&key, value.as_deref()), Ok(record));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(
        key_version in 0..4i16,
        key_tail in prop::collection::vec(any::<u8>(), 0..40),
        value in prop::option::of(prop::collection::vec(any::<u8>(), 0..80)),
    ) {
        let mut key = key_version.to_be_bytes().to_vec();
        key.extend(key_tail);
        let _ = records::decode(&key, value.as_deref());
    }
}
