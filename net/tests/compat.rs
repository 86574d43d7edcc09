//! Compatibility of the group and transaction APIs with Apache Kafka 4, on the wire: the real
//! `fjord` binary (see `support`) is sent the requests a Kafka client sends, and every answer is
//! checked for the exact error codes Kafka's broker (KafkaApis and its group and transaction
//! coordinators) gives.
//!
//! - a transactional offset commit (KIP-98, KIP-447) is accepted while the group it names is
//!   Stable with a live member, at the lowest and the highest TxnOffsetCommit version advertised,
//!   with and without the member fields;
//! - offsets, transactions and admin requests naming a topic or partition that does not exist are
//!   answered UNKNOWN_TOPIC_OR_PARTITION and neither commit anything nor create the topic.
//!
//! The broker binary is `$FJORD_BIN`, else `target/release/fjord`, else `target/debug/fjord` of
//! this workspace; build it first, the test does not.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey,
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeProducersRequest, DescribeProducersResponse,
    EndTxnRequest, EndTxnResponse, FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
    InitProducerIdRequest, InitProducerIdResponse, JoinGroupResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, ProducerId, SyncGroupRequest, SyncGroupResponse, TopicName, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use support::{
    group_id, join_group_request, text, topic_name, transactional_id, Broker, Client, ILLEGAL_GENERATION, KEY_TYPE_GROUP,
    KEY_TYPE_TRANSACTION, MEMBER_ID_REQUIRED, NONE, OPERATION_NOT_ATTEMPTED, RETRIABLE, TRANSACTION_TIMEOUT_MS,
    UNKNOWN_MEMBER_ID, UNKNOWN_TOPIC_OR_PARTITION,
};

// ---------------------------------------------------------------------------------------------
// Fixed inputs (Kafka's error codes are in support)

/// OffsetFetch's committed offset for a partition with none.
const NO_OFFSET: i64 = -1;

/// Upper bound on waiting for something the broker completes asynchronously (transaction
/// markers reaching the offsets, a deleted topic's offsets being dropped, coordinator loading).
const ASYNC_WAIT_MAX: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Versions used where the test is not about the version.
const CREATE_TOPICS_VERSION: i16 = 7;
const DELETE_TOPICS_VERSION: i16 = 6;
const FIND_COORDINATOR_VERSION: i16 = 4;
const INIT_PRODUCER_ID_VERSION: i16 = 4;
const JOIN_GROUP_VERSION: i16 = 5;
const SYNC_GROUP_VERSION: i16 = 3;
const HEARTBEAT_VERSION: i16 = 4;
/// Highest Metadata version carrying allow_auto_topic_creation that Fjord serves.
const METADATA_VERSION: i16 = 12;

// ---------------------------------------------------------------------------------------------
// Request building blocks

/// One partition's offset to commit: (topic, partition, offset).
type Offset<'a> = (&'a str, i32, i64);

/// One partition's answer: (topic, partition, error code).
type PartitionCode = (String, i32, i16);

/// Calls `attempt` until its code is not one a client retries, at most [`ASYNC_WAIT_MAX`].
fn retrying<T>(what: &str, mut attempt: impl FnMut() -> (i16, T)) -> (i16, T) {
    let deadline = Instant::now() + ASYNC_WAIT_MAX;
    loop {
        let (code, value) = attempt();
        if !RETRIABLE.contains(&code) || Instant::now() >= deadline {
            if RETRIABLE.contains(&code) {
                eprintln!("{what}: still error {code} after {ASYNC_WAIT_MAX:?}");
            }
            return (code, value);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// `items` gathered per topic, the topics in the order they first appear: the shape of a
/// request's topics and their partitions.
fn by_topic<'a, T>(items: impl IntoIterator<Item = (&'a str, T)>) -> Vec<(&'a str, Vec<T>)> {
    let mut topics: Vec<(&str, Vec<T>)> = Vec::new();
    for (topic, item) in items {
        match topics.iter_mut().find(|(known, _)| *known == topic) {
            Some((_, entries)) => entries.push(item),
            None => topics.push((topic, vec![item])),
        }
    }
    topics
}

/// The (topic, partition, error code) rows of a response's topics, sorted.
fn sorted_codes<'a, P: Iterator<Item = (i32, i16)>>(topics: impl Iterator<Item = (&'a StrBytes, P)>) -> Vec<PartitionCode> {
    let mut codes: Vec<PartitionCode> = topics
        .flat_map(|(name, partitions)| partitions.map(move |(partition, code)| (name.to_string(), partition, code)))
        .collect();
    codes.sort();
    codes
}

/// The versions the broker advertises for `api` in an ApiVersions v3 response (KIP-511: v3
/// carries the client's software name and version, which must not be empty).
fn advertised(client: &mut Client, api: ApiKey) -> (i16, i16) {
    let request = ApiVersionsRequest::default()
        .with_client_software_name(text("fjord-compat-test"))
        .with_client_software_version(text("1.0"));
    let response: ApiVersionsResponse = client.send(3, &request);
    assert_eq!(response.error_code, NONE, "ApiVersions v3 error");
    let entry = response
        .api_keys
        .iter()
        .find(|entry| entry.api_key == api as i16)
        .unwrap_or_else(|| panic!("ApiVersions v3 does not advertise {api:?}"));
    assert!(entry.min_version <= entry.max_version, "{api:?}: advertised {}..={}", entry.min_version, entry.max_version);
    (entry.min_version, entry.max_version)
}

/// Setup: CreateTopics v7, one replica; the topic must be created.
fn create_topic(client: &mut Client, name: &str, partitions: i32) {
    let topic = CreatableTopic::default().with_name(topic_name(name)).with_num_partitions(partitions).with_replication_factor(1);
    let request = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![topic]);
    let response: CreateTopicsResponse = client.send(CREATE_TOPICS_VERSION, &request);
    let result = response.topics.iter().find(|result| result.name.0.as_str() == name).expect("CreateTopics answers the topic");
    assert_eq!(result.error_code, NONE, "create {name}: {:?}", result.error_message);
}

/// The code of the first of `answers`, (topic name, error code), that names `name`.
fn code_for<'a>(name: &str, mut answers: impl Iterator<Item = (Option<&'a TopicName>, i16)>) -> Option<i16> {
    answers.find(|(answered, _)| answered.is_some_and(|answered| answered.0.as_str() == name)).map(|(_, code)| code)
}

/// DeleteTopics v6 by name: the topic's error code.
fn delete_topic(client: &mut Client, name: &str) -> i16 {
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![DeleteTopicState::default().with_name(Some(topic_name(name)))]);
    let response: DeleteTopicsResponse = client.send(DELETE_TOPICS_VERSION, &request);
    code_for(name, response.responses.iter().map(|result| (result.name.as_ref(), result.error_code)))
        .unwrap_or_else(|| panic!("DeleteTopics did not answer {name}"))
}

/// FindCoordinator v4 (batched keys, KIP-699) for one key; retried while the coordinator's
/// internal topic is created or loaded. The coordinator's error code.
fn find_coordinator(client: &mut Client, key: &str, key_type: i8) -> i16 {
    let request = FindCoordinatorRequest::default().with_key_type(key_type).with_coordinator_keys(vec![text(key)]);
    retrying(&format!("FindCoordinator {key}"), || {
        let response: FindCoordinatorResponse = client.send(FIND_COORDINATOR_VERSION, &request);
        let coordinator = response.coordinators.first().expect("FindCoordinator v4 answers each key");
        (coordinator.error_code, ())
    })
    .0
}

/// Metadata for `name` with allow_auto_topic_creation=false: its error code, or `None` if the
/// response does not list it.
fn metadata_error(client: &mut Client, name: &str) -> Option<i16> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(name)))]))
        .with_allow_auto_topic_creation(false);
    let response: MetadataResponse = client.send(METADATA_VERSION, &request);
    code_for(name, response.topics.iter().map(|topic| (topic.name.as_ref(), topic.error_code)))
}

/// A transactional producer: FindCoordinator (key type 1) then InitProducerId for
/// `transactional_id`, both retried while the transaction coordinator loads. (producer id, epoch).
fn init_transactional_producer(client: &mut Client, transactional: &str) -> (ProducerId, i16) {
    let found = find_coordinator(client, transactional, KEY_TYPE_TRANSACTION);
    assert_eq!(found, NONE, "FindCoordinator (transaction) {transactional}");
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(transactional_id(transactional)))
        .with_transaction_timeout_ms(TRANSACTION_TIMEOUT_MS);
    let (code, response) = retrying(&format!("InitProducerId {transactional}"), || {
        let response: InitProducerIdResponse = client.send(INIT_PRODUCER_ID_VERSION, &request);
        (response.error_code, response)
    });
    assert_eq!(code, NONE, "InitProducerId {transactional}");
    (response.producer_id, response.producer_epoch)
}

/// One transactional producer's identity.
#[derive(Clone, Copy)]
struct Producer<'a> {
    transactional_id: &'a str,
    producer_id: ProducerId,
    producer_epoch: i16,
}

fn add_offsets_to_txn(client: &mut Client, version: i16, producer: Producer, group: &str) -> i16 {
    let request = AddOffsetsToTxnRequest::default()
        .with_transactional_id(transactional_id(producer.transactional_id))
        .with_producer_id(producer.producer_id)
        .with_producer_epoch(producer.producer_epoch)
        .with_group_id(group_id(group));
    let response: AddOffsetsToTxnResponse = client.send(version, &request);
    response.error_code
}

/// TxnOffsetCommit; `member` is (member id, generation), sent only when given (v3+).
fn txn_offset_commit(
    client: &mut Client,
    version: i16,
    producer: Producer,
    group: &str,
    member: Option<(&str, i32)>,
    offsets: &[Offset],
) -> Vec<PartitionCode> {
    let partition = |partition, offset| {
        TxnOffsetCommitRequestPartition::default().with_partition_index(partition).with_committed_offset(offset)
    };
    let topics = by_topic(offsets.iter().map(|&(topic, index, offset)| (topic, partition(index, offset))))
        .into_iter()
        .map(|(topic, partitions)| {
            TxnOffsetCommitRequestTopic::default().with_name(topic_name(topic)).with_partitions(partitions)
        })
        .collect();
    let mut request = TxnOffsetCommitRequest::default()
        .with_transactional_id(transactional_id(producer.transactional_id))
        .with_group_id(group_id(group))
        .with_producer_id(producer.producer_id)
        .with_producer_epoch(producer.producer_epoch)
        .with_topics(topics);
    if let Some((member_id, generation)) = member {
        request = request.with_member_id(text(member_id)).with_generation_id(generation);
    }
    let response: TxnOffsetCommitResponse = client.send(version, &request);
    sorted_codes(
        response.topics.iter().map(|topic| {
            (&topic.name.0, topic.partitions.iter().map(|partition| (partition.partition_index, partition.error_code)))
        }),
    )
}

fn end_txn(client: &mut Client, version: i16, producer: Producer, commit: bool) -> i16 {
    let request = EndTxnRequest::default()
        .with_transactional_id(transactional_id(producer.transactional_id))
        .with_producer_id(producer.producer_id)
        .with_producer_epoch(producer.producer_epoch)
        .with_committed(commit);
    let response: EndTxnResponse = client.send(version, &request);
    response.error_code
}

/// A plain OffsetCommit: generation -1 and member "" (a simple group, no members).
fn offset_commit(client: &mut Client, version: i16, group: &str, offsets: &[Offset]) -> Vec<PartitionCode> {
    let partition =
        |partition, offset| OffsetCommitRequestPartition::default().with_partition_index(partition).with_committed_offset(offset);
    let topics = by_topic(offsets.iter().map(|&(topic, index, offset)| (topic, partition(index, offset))))
        .into_iter()
        .map(|(topic, partitions)| OffsetCommitRequestTopic::default().with_name(topic_name(topic)).with_partitions(partitions))
        .collect();
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(text(""))
        .with_topics(topics);
    let response: OffsetCommitResponse = client.send(version, &request);
    sorted_codes(
        response.topics.iter().map(|topic| {
            (&topic.name.0, topic.partitions.iter().map(|partition| (partition.partition_index, partition.error_code)))
        }),
    )
}

/// One OffsetFetch answer: the group's error code and (topic, partition, offset, error) rows.
struct Fetched {
    error: i16,
    rows: Vec<(String, i32, i64, i16)>,
}

impl Fetched {
    /// The group's error code and the (offset, error) rows of a response's topics.
    fn new<'a, P: Iterator<Item = (i32, i64, i16)>>(error: i16, topics: impl Iterator<Item = (&'a StrBytes, P)>) -> Fetched {
        let rows = topics
            .flat_map(|(name, partitions)| {
                partitions.map(move |(partition, offset, code)| (name.to_string(), partition, offset, code))
            })
            .collect();
        Fetched { error, rows }
    }

    /// (offset, error) of one partition, `None` if not listed.
    fn partition(&self, topic: &str, partition: i32) -> Option<(i64, i16)> {
        self.rows.iter().find(|row| row.0 == topic && row.1 == partition).map(|&(_, _, offset, error)| (offset, error))
    }
}

/// OffsetFetch of `group`: the single-group form below v8, the groups form (KIP-709) from v8.
/// `wanted` names the (topic, partition)s to fetch; None asks for every topic the group has
/// offsets for.
fn offset_fetch(client: &mut Client, version: i16, group: &str, wanted: Option<&[(&str, i32)]>) -> Fetched {
    let wanted = wanted.map(|wanted| by_topic(wanted.iter().copied()));
    if version < 8 {
        let topic = |(name, partitions)| {
            OffsetFetchRequestTopic::default().with_name(topic_name(name)).with_partition_indexes(partitions)
        };
        let request = OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(wanted.map(|wanted| wanted.into_iter().map(topic).collect()));
        let response: OffsetFetchResponse = client.send(version, &request);
        let topics = response.topics.iter().map(|topic| {
            let partitions = topic.partitions.iter();
            (
                &topic.name.0,
                partitions.map(|partition| (partition.partition_index, partition.committed_offset, partition.error_code)),
            )
        });
        Fetched::new(response.error_code, topics)
    } else {
        let topic = |(name, partitions)| {
            OffsetFetchRequestTopics::default().with_name(topic_name(name)).with_partition_indexes(partitions)
        };
        let asked = OffsetFetchRequestGroup::default()
            .with_group_id(group_id(group))
            .with_topics(wanted.map(|wanted| wanted.into_iter().map(topic).collect()));
        let response: OffsetFetchResponse = client.send(version, &OffsetFetchRequest::default().with_groups(vec![asked]));
        assert_eq!(response.groups.len(), 1, "OffsetFetch v{version} answers the one group asked");
        let answered = &response.groups[0];
        let topics = answered.topics.iter().map(|topic| {
            let partitions = topic.partitions.iter();
            (
                &topic.name.0,
                partitions.map(|partition| (partition.partition_index, partition.committed_offset, partition.error_code)),
            )
        });
        Fetched::new(answered.error_code, topics)
    }
}

/// OffsetFetch of `wanted`, repeated until `done` holds or [`ASYNC_WAIT_MAX`] passes (the
/// transaction markers and topic deletion complete after their request is answered); the last
/// answer either way.
fn offset_fetch_until(
    client: &mut Client,
    version: i16,
    group: &str,
    wanted: Option<&[(&str, i32)]>,
    done: impl Fn(&Fetched) -> bool,
) -> Fetched {
    let deadline = Instant::now() + ASYNC_WAIT_MAX;
    loop {
        let fetched = offset_fetch(client, version, group, wanted);
        if done(&fetched) || Instant::now() >= deadline {
            return fetched;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

// ---------------------------------------------------------------------------------------------
// 1. TxnOffsetCommit against a Stable group

/// The one member of a Stable classic group.
struct Member {
    id: String,
    generation: i32,
}

/// Forms a Stable classic group with one member: JoinGroup v5 without a member id gets
/// MEMBER_ID_REQUIRED and an id (KIP-394), the join with it completes the rebalance (this member
/// is the leader), and SyncGroup v3 with the leader's assignment makes the group Stable.
fn form_stable_group(client: &mut Client, group: &str) -> Member {
    assert_eq!(find_coordinator(client, group, KEY_TYPE_GROUP), NONE, "FindCoordinator (group) {group}");
    let join = |member_id: &str| join_group_request(group, member_id, Bytes::new());
    let first: JoinGroupResponse = client.send(JOIN_GROUP_VERSION, &join(""));
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED, "first JoinGroup v5 without a member id (KIP-394)");
    assert!(!first.member_id.is_empty(), "MEMBER_ID_REQUIRED carries the member id to join with");
    let joined: JoinGroupResponse = client.send(JOIN_GROUP_VERSION, &join(first.member_id.as_str()));
    assert_eq!(joined.error_code, NONE, "JoinGroup v5 with the given member id");
    assert_eq!(joined.member_id, first.member_id, "the member keeps its id");
    assert_eq!(joined.leader, joined.member_id, "the only member leads");
    assert_eq!(joined.members.len(), 1, "the leader is told of its one member");
    let member = Member { id: joined.member_id.to_string(), generation: joined.generation_id };
    let sync = SyncGroupRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id(member.generation)
        .with_member_id(text(&member.id))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(text(&member.id))
            .with_assignment(Bytes::new())]);
    let synced: SyncGroupResponse = client.send(SYNC_GROUP_VERSION, &sync);
    assert_eq!(synced.error_code, NONE, "SyncGroup v3 from the leader");
    member
}

/// Heartbeat v4 of the member: NONE while the group is Stable (REBALANCE_IN_PROGRESS otherwise).
fn heartbeat(client: &mut Client, group: &str, member: &Member) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id(member.generation)
        .with_member_id(text(&member.id));
    let response: HeartbeatResponse = client.send(HEARTBEAT_VERSION, &request);
    response.error_code
}

/// A transactional offset commit is accepted while the group it names is Stable with a live
/// member (KIP-98 `sendOffsetsToTransaction`; KIP-447 added the member id and generation to
/// TxnOffsetCommit v3 so the coordinator can fence zombies).
///
/// Kafka's rule (GroupCoordinator / ClassicGroup.validateOffsetCommit with isTransactional,
/// KAFKA-18060): a TxnOffsetCommit that carries no member fields (member id "", generation -1,
/// no instance id; always the case below v3) is accepted whatever the group's state; one that
/// carries them is checked as an OffsetCommit is: an unknown member gets UNKNOWN_MEMBER_ID (25),
/// a known member with another generation gets ILLEGAL_GENERATION (22). The commit takes effect
/// when the transaction commits (EndTxn), after which OffsetFetch returns the offset.
#[test]
fn txn_offset_commit_is_accepted_while_the_group_is_stable_at_the_lowest_and_highest_versions() {
    let broker = Broker::start_with(&["--group-initial-rebalance-delay-ms", "0", "--group-min-session-timeout-ms", "1000"]);
    let mut client = broker.connect();
    let (min, max) = advertised(&mut client, ApiKey::TxnOffsetCommit);
    assert!(max >= 3, "TxnOffsetCommit advertised up to v{max}: the member fields (v3+, KIP-447) cannot be tested");
    const TOPIC: &str = "compat-txn-topic";
    const GROUP: &str = "g";
    create_topic(&mut client, TOPIC, 1);
    let member = form_stable_group(&mut client, GROUP);

    let mut offset = 1000;
    let mut last_committed = None;
    for version in [min, max] {
        for with_member in [false, true] {
            if with_member && version < 3 {
                continue; // TxnOffsetCommit carries the member fields from v3 only
            }
            let case = format!(
                "TxnOffsetCommit v{version} {}",
                if with_member { "with member id and generation" } else { "without member fields" }
            );
            assert_eq!(heartbeat(&mut client, GROUP, &member), NONE, "{case}: the group is Stable before");
            offset += 10;
            let transactional = format!("compat-txn-v{version}-{}", if with_member { "member" } else { "anonymous" });
            let (producer_id, producer_epoch) = init_transactional_producer(&mut client, &transactional);
            let producer = Producer { transactional_id: &transactional, producer_id, producer_epoch };
            assert_eq!(add_offsets_to_txn(&mut client, version, producer, GROUP), NONE, "{case}: AddOffsetsToTxn v{version}");
            let fields = with_member.then_some((member.id.as_str(), member.generation));
            let codes = txn_offset_commit(&mut client, version, producer, GROUP, fields, &[(TOPIC, 0, offset)]);
            assert_eq!(codes, vec![(TOPIC.to_string(), 0, NONE)], "{case}: partition error");
            assert_eq!(end_txn(&mut client, version, producer, true), NONE, "{case}: EndTxn v{version} commit");
            let fetch_version = if version == min { 7 } else { 8 };
            let fetched = offset_fetch_until(&mut client, fetch_version, GROUP, Some(&[(TOPIC, 0)]), |fetched| {
                fetched.partition(TOPIC, 0).map(|(committed, _)| committed) == Some(offset)
            });
            assert_eq!(fetched.error, NONE, "{case}: OffsetFetch v{fetch_version} group error");
            assert_eq!(
                fetched.partition(TOPIC, 0),
                Some((offset, NONE)),
                "{case}: OffsetFetch v{fetch_version} after the commit (waited up to {ASYNC_WAIT_MAX:?} for the markers)"
            );
            last_committed = Some(offset);
        }
    }
    let last_committed = last_committed.expect("at least one commit");

    // The member fields are checked when given, at the highest version.
    let negatives = [
        ("a member id the group does not know", "stranger".to_string(), member.generation, UNKNOWN_MEMBER_ID),
        ("the member's id with the next generation", member.id.clone(), member.generation + 1, ILLEGAL_GENERATION),
    ];
    for (what, member_id, generation, expected) in negatives {
        let case = format!("TxnOffsetCommit v{max} with {what}");
        assert_eq!(heartbeat(&mut client, GROUP, &member), NONE, "{case}: the group is Stable before");
        offset += 10;
        let transactional = format!("compat-txn-v{max}-{expected}");
        let (producer_id, producer_epoch) = init_transactional_producer(&mut client, &transactional);
        let producer = Producer { transactional_id: &transactional, producer_id, producer_epoch };
        assert_eq!(add_offsets_to_txn(&mut client, max, producer, GROUP), NONE, "{case}: AddOffsetsToTxn v{max}");
        let codes = txn_offset_commit(&mut client, max, producer, GROUP, Some((&member_id, generation)), &[(TOPIC, 0, offset)]);
        assert_eq!(codes, vec![(TOPIC.to_string(), 0, expected)], "{case}: partition error");
        assert_eq!(end_txn(&mut client, max, producer, false), NONE, "{case}: EndTxn v{max} abort");
        let fetched = offset_fetch(&mut client, 8, GROUP, Some(&[(TOPIC, 0)]));
        assert_eq!(fetched.partition(TOPIC, 0), Some((last_committed, NONE)), "{case}: the rejected offset is not committed");
    }
    assert_eq!(heartbeat(&mut client, GROUP, &member), NONE, "the group is still Stable with its member at the end");
}

// ---------------------------------------------------------------------------------------------
// 2. Unknown topics and partitions

/// What a case observed: (label, value) pairs, compared with the expected ones as sorted lists
/// (Kafka answers the topics it refuses and those it passes to the coordinator in either order).
type Observed = Vec<(String, i64)>;

struct Case<'a> {
    name: String,
    expected: Observed,
    run: Box<dyn FnOnce(&mut Client) -> Observed + 'a>,
}

fn case<'a>(name: impl Into<String>, expected: Observed, run: impl FnOnce(&mut Client) -> Observed + 'a) -> Case<'a> {
    Case { name: name.into(), expected, run: Box::new(run) }
}

fn label(label: impl Into<String>, value: impl Into<i64>) -> (String, i64) {
    (label.into(), value.into())
}

/// Per-partition codes as observations labelled `topic/partition`.
fn partition_codes(codes: Vec<PartitionCode>) -> Observed {
    codes.into_iter().map(|(topic, partition, code)| label(format!("{topic}/{partition}"), code)).collect()
}

/// The offset and error of each wanted partition, labelled `topic/partition offset|error`; a
/// partition the answer does not list is observed as offset and error [`ABSENT`].
fn offset_rows(fetched: &Fetched, wanted: &[(&str, i32)]) -> Observed {
    let mut observed = vec![label("group error", fetched.error)];
    for &(topic, partition) in wanted {
        let (offset, error) = fetched.partition(topic, partition).unwrap_or((ABSENT, ABSENT as i16));
        observed.push(label(format!("{topic}/{partition} offset"), offset));
        observed.push(label(format!("{topic}/{partition} error"), error));
    }
    observed
}

/// Observed for a partition or topic the answer leaves out.
const ABSENT: i64 = -9999;

/// `name`, noted in `unknown_topics`: a topic no case may create.
fn unknown_topic(unknown_topics: &mut Vec<String>, name: String) -> String {
    unknown_topics.push(name.clone());
    name
}

/// The case of an OffsetFetch v`version` of `group` after a commit of `committed` (topic,
/// partition, offset) that refused the other `wanted` partitions: only the committed partition
/// has an offset, every wanted partition answers no error. With `after_markers` it waits up to
/// [`ASYNC_WAIT_MAX`] for the offset (a transaction's arrives with its markers); a plain commit's
/// must be there at the first fetch.
fn fetch_after_commit(
    name: String,
    version: i16,
    group: String,
    committed: Offset<'static>,
    wanted: Vec<(String, i32)>,
    after_markers: bool,
) -> Case<'static> {
    let (committed_topic, committed_partition, offset) = committed;
    let expected = std::iter::once(label("group error", NONE))
        .chain(wanted.iter().flat_map(|(topic, partition)| {
            let expected =
                if (topic.as_str(), *partition) == (committed_topic, committed_partition) { offset } else { NO_OFFSET };
            [label(format!("{topic}/{partition} offset"), expected), label(format!("{topic}/{partition} error"), NONE)]
        }))
        .collect();
    case(name, expected, move |client| {
        let wanted: Vec<(&str, i32)> = wanted.iter().map(|(topic, partition)| (topic.as_str(), *partition)).collect();
        let fetched = if after_markers {
            offset_fetch_until(client, version, &group, Some(&wanted), |fetched| {
                fetched.partition(committed_topic, committed_partition).map(|(committed, _)| committed) == Some(offset)
            })
        } else {
            offset_fetch(client, version, &group, Some(&wanted))
        };
        offset_rows(&fetched, &wanted)
    })
}

/// `api` at `version` for partition 0 of `topic` (DescribeProducers, ListOffsets latest,
/// DeleteRecords before offset 0): the per-partition codes of the answer.
fn partition_zero_codes(client: &mut Client, api: ApiKey, version: i16, topic: &str) -> Vec<PartitionCode> {
    match api {
        ApiKey::DescribeProducers => {
            let request = DescribeProducersRequest::default()
                .with_topics(vec![TopicRequest::default().with_name(topic_name(topic)).with_partition_indexes(vec![0])]);
            let response: DescribeProducersResponse = client.send(version, &request);
            sorted_codes(response.topics.iter().map(|topic| {
                (&topic.name.0, topic.partitions.iter().map(|partition| (partition.partition_index, partition.error_code)))
            }))
        }
        ApiKey::ListOffsets => {
            let partition = ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1);
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default().with_name(topic_name(topic)).with_partitions(vec![partition])]);
            let response: ListOffsetsResponse = client.send(version, &request);
            sorted_codes(response.topics.iter().map(|topic| {
                (&topic.name.0, topic.partitions.iter().map(|partition| (partition.partition_index, partition.error_code)))
            }))
        }
        ApiKey::DeleteRecords => {
            let partition = DeleteRecordsPartition::default().with_partition_index(0).with_offset(0);
            let request = DeleteRecordsRequest::default()
                .with_timeout_ms(5_000)
                .with_topics(vec![DeleteRecordsTopic::default().with_name(topic_name(topic)).with_partitions(vec![partition])]);
            let response: DeleteRecordsResponse = client.send(version, &request);
            sorted_codes(response.topics.iter().map(|topic| {
                (&topic.name.0, topic.partitions.iter().map(|partition| (partition.partition_index, partition.error_code)))
            }))
        }
        other => panic!("no partition 0 request for {other:?}"),
    }
}

/// Kafka 4's answers for topics and partitions that do not exist (KafkaApis):
///
/// - OffsetCommit (handleOffsetCommitRequest) and TxnOffsetCommit (handleTxnOffsetCommitRequest,
///   KIP-98): a topic not in the metadata cache gets UNKNOWN_TOPIC_OR_PARTITION (3) for each of
///   its partitions, and so does a partition index at or past an existing topic's partition
///   count; only the others go to the group coordinator and are committed (0). Nothing creates
///   the unknown topic (Metadata with allow_auto_topic_creation=false then answers 3).
/// - OffsetFetch (handleOffsetFetchRequest) does not check topics: a partition without a
///   committed offset answers offset -1, error 0.
/// - OffsetDelete (handleOffsetDeleteRequest, KIP-496): an unknown topic gets 3 per partition.
/// - AddPartitionsToTxn v3 (handleAddPartitionsToTxnRequest, KIP-98): an unknown topic gets 3 and
///   every other partition of the request OPERATION_NOT_ATTEMPTED (55); nothing is added.
/// - DescribeProducers (KIP-664), ListOffsets and DeleteRecords (KIP-107): 3 for an unknown topic.
/// - A deleted topic's committed offsets are dropped (GroupCoordinator.onPartitionsDeleted):
///   OffsetFetch of all topics no longer lists it, and a new commit to it gets 3.
#[test]
fn group_and_transaction_apis_answer_unknown_topics_as_kafka_does() {
    let broker = Broker::start();
    const TOPIC: &str = "compat-known"; // 2 partitions: index 2 does not exist
    const DELETED: &str = "d";
    const DELETED_GROUP: &str = "g2";
    {
        let mut client = broker.connect();
        create_topic(&mut client, TOPIC, 2);
        create_topic(&mut client, DELETED, 1);
    }
    let known0 = format!("{TOPIC}/0");
    let known1 = format!("{TOPIC}/1");
    let known2 = format!("{TOPIC}/2");
    let mut unknown_topics: Vec<String> = Vec::new();
    let mut cases: Vec<Case> = Vec::new();

    // OffsetCommit at the lowest and highest advertised versions, then OffsetFetch of the same.
    for (version, fetch_version, committed) in [(2, 7, 102), (9, 8, 109)] {
        let group = format!("compat-oc-v{version}");
        let missing = unknown_topic(&mut unknown_topics, format!("compat-missing-oc-v{version}"));
        let fetch = fetch_after_commit(
            format!("OffsetFetch v{fetch_version} after OffsetCommit v{version}: only {TOPIC}/0 has an offset"),
            fetch_version,
            group.clone(),
            (TOPIC, 0, committed),
            vec![(TOPIC.to_string(), 0), (TOPIC.to_string(), 2), (missing.clone(), 0), (missing.clone(), 1)],
            false,
        );
        cases.push(case(
            format!("OffsetCommit v{version}: {TOPIC}/0 committed, {TOPIC}/2 and {missing}/0,1 unknown"),
            vec![
                label(&known0, NONE),
                label(&known2, UNKNOWN_TOPIC_OR_PARTITION),
                label(format!("{missing}/0"), UNKNOWN_TOPIC_OR_PARTITION),
                label(format!("{missing}/1"), UNKNOWN_TOPIC_OR_PARTITION),
            ],
            move |client| {
                let missing = missing.as_str();
                let offsets = [(TOPIC, 0, committed), (TOPIC, 2, committed), (missing, 0, committed), (missing, 1, committed)];
                partition_codes(offset_commit(client, version, &group, &offsets))
            },
        ));
        cases.push(fetch);
    }

    // TxnOffsetCommit at the lowest and highest advertised versions (0 and 4), committed by EndTxn,
    // then OffsetFetch once the markers are written.
    for (version, committed) in [(0i16, 200), (4, 204)] {
        let group = format!("compat-toc-v{version}");
        let missing = unknown_topic(&mut unknown_topics, format!("compat-missing-toc-v{version}"));
        let fetch = fetch_after_commit(
            format!("OffsetFetch v8 after TxnOffsetCommit v{version} and EndTxn: only {TOPIC}/0 has an offset"),
            8,
            group.clone(),
            (TOPIC, 0, committed),
            vec![(TOPIC.to_string(), 0), (TOPIC.to_string(), 2), (missing.clone(), 0)],
            true,
        );
        cases.push(case(
            format!("TxnOffsetCommit v{version}: {TOPIC}/0 committed, {TOPIC}/2 and {missing}/0 unknown"),
            vec![
                label("AddOffsetsToTxn", NONE),
                label(&known0, NONE),
                label(&known2, UNKNOWN_TOPIC_OR_PARTITION),
                label(format!("{missing}/0"), UNKNOWN_TOPIC_OR_PARTITION),
                label("EndTxn commit", NONE),
            ],
            move |client| {
                let transactional = format!("compat-toc-txn-v{version}");
                let (producer_id, producer_epoch) = init_transactional_producer(client, &transactional);
                let producer = Producer { transactional_id: &transactional, producer_id, producer_epoch };
                let mut observed = vec![label("AddOffsetsToTxn", add_offsets_to_txn(client, version, producer, &group))];
                let offsets = [(TOPIC, 0, committed), (TOPIC, 2, committed), (missing.as_str(), 0, committed)];
                observed.extend(partition_codes(txn_offset_commit(client, version, producer, &group, None, &offsets)));
                observed.push(label("EndTxn commit", end_txn(client, version, producer, true)));
                observed
            },
        ));
        cases.push(fetch);
    }

    // OffsetDelete of an Empty group's offsets: the known partition's offset is deleted, the
    // unknown topic's partition refused.
    {
        let missing = unknown_topic(&mut unknown_topics, "compat-missing-od".to_string());
        cases.push(case(
            format!("OffsetDelete v0: {TOPIC}/0 deleted, {missing}/0 unknown"),
            vec![
                label("setup OffsetCommit v8", NONE),
                label("group error", NONE),
                label(&known0, NONE),
                label(format!("{missing}/0"), UNKNOWN_TOPIC_OR_PARTITION),
            ],
            move |client| {
                let group = "compat-od";
                let setup = offset_commit(client, 8, group, &[(TOPIC, 0, 300)]);
                let mut observed = vec![label("setup OffsetCommit v8", setup.first().map(|row| row.2).unwrap_or(ABSENT as i16))];
                let topic = |name| {
                    OffsetDeleteRequestTopic::default()
                        .with_name(topic_name(name))
                        .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)])
                };
                let request = OffsetDeleteRequest::default()
                    .with_group_id(group_id(group))
                    .with_topics(vec![topic(TOPIC), topic(missing.as_str())]);
                let response: OffsetDeleteResponse = client.send(0, &request);
                observed.push(label("group error", response.error_code));
                observed.extend(partition_codes(sorted_codes(response.topics.iter().map(|topic| {
                    (&topic.name.0, topic.partitions.iter().map(|partition| (partition.partition_index, partition.error_code)))
                }))));
                observed
            },
        ));
    }

    // AddPartitionsToTxn v3 (one transaction per request): nothing is added if a topic is unknown.
    {
        let missing = unknown_topic(&mut unknown_topics, "compat-missing-apt".to_string());
        cases.push(case(
            format!("AddPartitionsToTxn v3: {missing}/0 unknown, {TOPIC}/0,1 not attempted"),
            vec![
                label(format!("{missing}/0"), UNKNOWN_TOPIC_OR_PARTITION),
                label(&known0, OPERATION_NOT_ATTEMPTED),
                label(&known1, OPERATION_NOT_ATTEMPTED),
            ],
            move |client| {
                let transactional = "compat-apt-txn";
                let (producer_id, producer_epoch) = init_transactional_producer(client, transactional);
                let mut request = AddPartitionsToTxnRequest::default();
                request.v3_and_below_transactional_id = transactional_id(transactional);
                request.v3_and_below_producer_id = producer_id;
                request.v3_and_below_producer_epoch = producer_epoch;
                request.v3_and_below_topics = vec![
                    AddPartitionsToTxnTopic::default().with_name(topic_name(TOPIC)).with_partitions(vec![0, 1]),
                    AddPartitionsToTxnTopic::default().with_name(topic_name(&missing)).with_partitions(vec![0]),
                ];
                let response: AddPartitionsToTxnResponse = client.send(3, &request);
                partition_codes(sorted_codes(response.results_by_topic_v3_and_below.iter().map(|topic| {
                    let partitions = topic.results_by_partition.iter();
                    (&topic.name.0, partitions.map(|partition| (partition.partition_index, partition.partition_error_code)))
                })))
            },
        ));
    }

    // DescribeProducers, ListOffsets (lowest and highest versions), DeleteRecords (likewise) for
    // partition 0 of an unknown topic.
    for (api, version, missing) in [
        (ApiKey::DescribeProducers, 0, "compat-missing-dp"),
        (ApiKey::ListOffsets, 1, "compat-missing-lo-v1"),
        (ApiKey::ListOffsets, 9, "compat-missing-lo-v9"),
        (ApiKey::DeleteRecords, 0, "compat-missing-dr-v0"),
        (ApiKey::DeleteRecords, 2, "compat-missing-dr-v2"),
    ] {
        unknown_topic(&mut unknown_topics, missing.to_string());
        cases.push(case(
            format!("{api:?} v{version}: {missing}/0 unknown"),
            vec![label(format!("{missing}/0"), UNKNOWN_TOPIC_OR_PARTITION)],
            move |client| partition_codes(partition_zero_codes(client, api, version, missing)),
        ));
    }

    // A deleted topic: its offsets go, and it cannot be committed to again.
    cases.push(case(
        format!("OffsetCommit v8 ({DELETED_GROUP}) to {DELETED}/0 and {TOPIC}/1 before {DELETED} is deleted"),
        vec![label(format!("{DELETED}/0"), NONE), label(&known1, NONE)],
        |client| partition_codes(offset_commit(client, 8, DELETED_GROUP, &[(DELETED, 0, 400), (TOPIC, 1, 401)])),
    ));
    cases.push(case(format!("DeleteTopics v6 {DELETED}"), vec![label("error", NONE)], |client| {
        vec![label("error", delete_topic(client, DELETED))]
    }));
    cases.push(case(
        format!("OffsetFetch v8 ({DELETED_GROUP}, all topics) after {DELETED} is deleted: {DELETED} not listed"),
        vec![
            label("group error", NONE),
            label("d partitions listed", 0),
            label(format!("{known1} offset"), 401),
            label(format!("{known1} error"), NONE),
        ],
        |client| {
            let fetched =
                offset_fetch_until(client, 8, DELETED_GROUP, None, |fetched| fetched.rows.iter().all(|row| row.0 != DELETED));
            let listed = fetched.rows.iter().filter(|row| row.0 == DELETED).count() as i64;
            let (offset, error) = fetched.partition(TOPIC, 1).unwrap_or((ABSENT, ABSENT as i16));
            vec![
                label("group error", fetched.error),
                label("d partitions listed", listed),
                label(format!("{TOPIC}/1 offset"), offset),
                label(format!("{TOPIC}/1 error"), error),
            ]
        },
    ));
    cases.push(case(
        format!("OffsetCommit v8 ({DELETED_GROUP}) to {DELETED}/0 after {DELETED} is deleted"),
        vec![label(format!("{DELETED}/0"), UNKNOWN_TOPIC_OR_PARTITION)],
        |client| partition_codes(offset_commit(client, 8, DELETED_GROUP, &[(DELETED, 0, 402)])),
    ));

    // Nothing above created a topic it was refused for.
    {
        let expected: Observed = unknown_topics.iter().map(|name| label(name.clone(), UNKNOWN_TOPIC_OR_PARTITION)).collect();
        let names = unknown_topics.clone();
        cases.push(case(
            format!("Metadata v{METADATA_VERSION} (allow_auto_topic_creation=false): no unknown topic was created"),
            expected,
            move |client| {
                names
                    .iter()
                    .map(|name| label(name.clone(), metadata_error(client, name).map(i64::from).unwrap_or(ABSENT)))
                    .collect()
            },
        ));
    }

    // Every case runs, on its own connection; all mismatches are reported together.
    let total = cases.len();
    let mut mismatches = Vec::new();
    for Case { name, mut expected, run } in cases {
        let mut client = broker.connect();
        let outcome = catch_unwind(AssertUnwindSafe(|| run(&mut client)));
        match outcome {
            Ok(mut observed) => {
                observed.sort();
                expected.sort();
                if observed == expected {
                    eprintln!("PASS {name}");
                } else {
                    eprintln!("FAIL {name}: expected {expected:?}, observed {observed:?}");
                    mismatches.push(format!("{name}:\n    expected {expected:?}\n    observed {observed:?}"));
                }
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                    .unwrap_or_else(|| "a panic".to_string());
                eprintln!("FAIL {name}: panicked: {message}");
                mismatches.push(format!("{name}:\n    panicked: {message}"));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {total} cases differ from Kafka 4:\n{}\nbroker log:\n{}",
        mismatches.len(),
        mismatches.join("\n"),
        broker.log_text()
    );
}
