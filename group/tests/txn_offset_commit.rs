//! TxnOffsetCommit's group checks (`Groups::validate_txn_offset_commit`), on groups rebuilt from
//! their records as a coordinator has them after a load. Rules: KIP-447 (TxnOffsetCommit v3 carries
//! the consumer's member id, generation and group instance id so that the group coordinator fences
//! a zombie producer of an older generation), KAFKA-18060 (the fields are checked only when given),
//! and Kafka's `OffsetMetadataManager.validateTransactionalOffsetCommit`.

use bytes::Bytes;
use fjord_group::classic::{ClassicConfig, Groups, RequestContext};
use fjord_group::consumer::{ConsumerGroupConfig, ConsumerGroups, ConsumerRecord, CurrentAssignment, MemberMetadata};
use fjord_group::records::{GroupMetadataValue, MemberMetadataValue, Record};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{GroupId, TxnOffsetCommitRequest};
use kafka_protocol::protocol::StrBytes;

const NOW_MS: i64 = 1_700_000_000_000;
const CLASSIC: &str = "classic";
const GENERATION: i32 = 4;
const CONSUMER: &str = "consumer";
const MEMBER_EPOCH: i32 = 5;

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn member(member_id: &str, group_instance_id: Option<&str>) -> MemberMetadataValue {
    MemberMetadataValue {
        member_id: member_id.into(),
        group_instance_id: group_instance_id.map(str::to_owned),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        rebalance_timeout_ms: 30_000,
        session_timeout_ms: 10_000,
        subscription: Bytes::new(),
        assignment: Bytes::new(),
    }
}

/// A classic group `CLASSIC` (Stable, generation `GENERATION`: member "m1" and static member "m2"
/// with instance "i2") and a KIP-848 consumer group `CONSUMER` (member "m" at `MEMBER_EPOCH`).
fn coordinator() -> (Groups, ConsumerGroups) {
    let mut groups = Groups::new_loading(ClassicConfig::default(), 7);
    groups.replay(&Record::GroupMetadata {
        group_id: CLASSIC.into(),
        value: Some(GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: GENERATION,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp_ms: NOW_MS,
            members: vec![member("m1", None), member("m2", Some("i2"))],
        }),
    });
    let _ = groups.finish_loading(NOW_MS);
    let mut consumer = ConsumerGroups::new(ConsumerGroupConfig::default());
    let metadata = MemberMetadata { client_id: "client".into(), client_host: "/127.0.0.1".into(), ..MemberMetadata::default() };
    let current =
        CurrentAssignment { member_epoch: MEMBER_EPOCH, previous_member_epoch: MEMBER_EPOCH - 1, ..CurrentAssignment::default() };
    for record in [
        ConsumerRecord::GroupMetadata { group_id: CONSUMER.into(), epoch: Some(MEMBER_EPOCH) },
        ConsumerRecord::MemberMetadata { group_id: CONSUMER.into(), member_id: "m".into(), value: Some(metadata) },
        ConsumerRecord::TargetAssignmentMetadata { group_id: CONSUMER.into(), assignment_epoch: Some(MEMBER_EPOCH) },
        ConsumerRecord::CurrentMemberAssignment { group_id: CONSUMER.into(), member_id: "m".into(), value: Some(current) },
    ] {
        consumer.replay(&record);
    }
    (groups, consumer)
}

/// A TxnOffsetCommit v3 of `group_id`; `generation_id` -1, `member_id` "" and no instance id are
/// what v0–2 (and producers that send only the group id) carry.
fn request(group_id: &str, generation_id: i32, member_id: &str, group_instance_id: Option<&str>) -> TxnOffsetCommitRequest {
    TxnOffsetCommitRequest::default()
        .with_transactional_id(s("tx").into())
        .with_group_id(GroupId(s(group_id)))
        .with_generation_id(generation_id)
        .with_member_id(s(member_id))
        .with_group_instance_id(group_instance_id.map(s))
}

fn validate(groups: &mut Groups, consumer: &ConsumerGroups, request: &TxnOffsetCommitRequest) -> Result<(), ResponseError> {
    let ctx = RequestContext { token: 1, api_version: 3, client_id: "producer".into(), client_host: "/127.0.0.1".into() };
    groups.validate_txn_offset_commit(consumer, &ctx, request, NOW_MS)
}

#[test]
fn a_loading_coordinator_answers_load_in_progress() {
    let mut groups = Groups::new_loading(ClassicConfig::default(), 7);
    let consumer = ConsumerGroups::new(ConsumerGroupConfig::default());
    let request = request(CLASSIC, -1, "", None);
    assert_eq!(validate(&mut groups, &consumer, &request), Err(ResponseError::CoordinatorLoadInProgress));
}

/// KIP-447: a producer of the current generation commits; one of an older generation (a zombie
/// left behind by a rebalance) is fenced with ILLEGAL_GENERATION, an unknown member with
/// UNKNOWN_MEMBER_ID, and a static member whose instance id has moved with FENCED_INSTANCE_ID.
#[test]
fn classic_group_fences_commits_of_other_generations_and_members_kip_447() {
    let (mut groups, consumer) = coordinator();
    let mut check = |generation_id, member_id, instance_id| {
        validate(&mut groups, &consumer, &request(CLASSIC, generation_id, member_id, instance_id))
    };
    assert_eq!(check(GENERATION, "m1", None), Ok(()));
    assert_eq!(check(GENERATION, "m2", Some("i2")), Ok(()));
    assert_eq!(check(GENERATION - 1, "m1", None), Err(ResponseError::IllegalGeneration));
    assert_eq!(check(GENERATION + 1, "m1", None), Err(ResponseError::IllegalGeneration));
    assert_eq!(check(GENERATION, "stranger", None), Err(ResponseError::UnknownMemberId));
    assert_eq!(check(GENERATION, "m1", Some("i2")), Err(ResponseError::FencedInstanceId));
    assert_eq!(check(GENERATION, "m2", Some("unknown-instance")), Err(ResponseError::UnknownMemberId));
}

/// KAFKA-18060: TxnOffsetCommit v0–2 cannot carry the member fields and producers using the
/// group-id-only `sendOffsetsToTransaction` leave them empty: such a commit to a Stable group is
/// accepted (the producer epoch fences instead). A member id without a generation is checked.
#[test]
fn classic_group_accepts_a_commit_without_member_fields() {
    let (mut groups, consumer) = coordinator();
    assert_eq!(validate(&mut groups, &consumer, &request(CLASSIC, -1, "", None)), Ok(()));
    assert_eq!(validate(&mut groups, &consumer, &request(CLASSIC, -1, "stranger", None)), Err(ResponseError::UnknownMemberId));
}

/// Kafka `validateOffsetCommit` for a group the coordinator does not hold: with a negative
/// generation it becomes a simple group (as OffsetCommit makes one), with a generation
/// ILLEGAL_GENERATION; an empty group id is INVALID_GROUP_ID.
#[test]
fn a_missing_group_is_created_only_without_a_generation() {
    let (mut groups, consumer) = coordinator();
    assert_eq!(validate(&mut groups, &consumer, &request("other", 1, "m", None)), Err(ResponseError::IllegalGeneration));
    assert!(groups.group("other").is_none());
    assert_eq!(validate(&mut groups, &consumer, &request("other", -1, "", None)), Ok(()));
    assert!(groups.group("other").is_some(), "a simple group holds the offsets");
    assert_eq!(validate(&mut groups, &consumer, &request("", -1, "", None)), Err(ResponseError::InvalidGroupId));
}

/// KIP-848 consumer group: the member epoch travels in the generation field. A stale epoch is
/// ILLEGAL_GENERATION, not STALE_MEMBER_EPOCH: the producer's TxnOffsetCommitHandler treats only
/// the KIP-447 errors as an abortable fenced commit. Member fields are checked only when given.
#[test]
fn consumer_group_checks_member_epochs_and_answers_a_stale_one_as_illegal_generation() {
    let (mut groups, consumer) = coordinator();
    // The KIP-848 path is taken: no classic group of that id exists before the commit.
    assert!(consumer.contains_group(CONSUMER) && groups.group(CONSUMER).is_none());
    let mut check =
        |generation_id, member_id| validate(&mut groups, &consumer, &request(CONSUMER, generation_id, member_id, None));
    assert_eq!(check(MEMBER_EPOCH, "m"), Ok(()));
    assert_eq!(check(-1, ""), Ok(()));
    assert_eq!(check(MEMBER_EPOCH - 1, "m"), Err(ResponseError::IllegalGeneration));
    assert_eq!(check(MEMBER_EPOCH, "nobody"), Err(ResponseError::UnknownMemberId));
    assert_eq!(check(MEMBER_EPOCH, ""), Err(ResponseError::UnknownMemberId));
}
