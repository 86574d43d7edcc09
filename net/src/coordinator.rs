//! The group coordinator on its shards: classic groups (fjord-group's pure state machine) driven
//! by the shard that owns the `__consumer_offsets` partition a group hashes to, their state
//! persisted as records in that partition and rebuilt from it on start.
//!
//! ```text
//!  any shard: FindCoordinator → this node;  JoinGroup(g) … → partition p = hash(g) % N
//!        │ mesh (owner of __consumer_offsets-p)
//!        ▼
//!  owner shard: Groups[p].handle(request) → Outcome { records, replies }
//!        records ──▶ append to __consumer_offsets-p (acks=all) ──▶ then replies, in order
//!  tick task: session / rebalance timeouts → Outcomes, same path
//! ```
//! Replies of one partition leave in the order their outcomes were made, each only after its own
//! records and all earlier ones are durable (one drainer task per partition).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::unix::fs::FileExt;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_engine::partition::{now_ms, Acks, AppendTicket, Chunk, Isolation, Partition};
use fjord_engine::rt::{self, Notify};
use fjord_group::classic::{self, ClassicConfig, Groups, Outcome, Reply, RequestContext, Token};
use fjord_group::consumer::{self, ClientInfo, ConsumerGroupConfig, ConsumerGroups, ConsumerRecord, TopicsView};
use fjord_group::offsets::{metadata_too_large, CommitKind, OffsetAndMetadata};
use fjord_group::records;
use fjord_replication::metadata::MetadataImage;
use futures::channel::oneshot;
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup as ConsumerDescribedGroup;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest, OffsetCommitResponse,
    OffsetDeleteRequest, OffsetFetchRequest, SyncGroupRequest, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record as WireRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::admin::{self, NewTopic};
use crate::context::ShardContext;
use crate::router::ShardRequest;
use crate::txn_coordinator::Marker;

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// offsets.topic.segment.bytes (Kafka: 100 MiB).
const OFFSETS_SEGMENT_BYTES: u64 = 100 * 1024 * 1024;
/// Longest sleep of the tick task when no deadline is nearer (a handler call wakes it early).
const TICK_SLEEP_MAX: Duration = Duration::from_secs(1);
/// Bytes per read while loading a partition.
const LOAD_READ_BYTES: usize = 1 << 20;
/// How long a request waits for its partition to finish loading before the state machine answers
/// COORDINATOR_LOAD_IN_PROGRESS (librdkafka's admin calls do not retry that error).
const LOAD_WAIT_MAX: Duration = Duration::from_secs(5);

/// A group request for the owner of one `__consumer_offsets` partition.
pub enum GroupCall {
    Join(JoinGroupRequest),
    Sync(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    Leave(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    Describe(DescribeGroupsRequest),
    List(ListGroupsRequest),
    Delete(DeleteGroupsRequest),
    OffsetDelete(OffsetDeleteRequest),
    /// KIP-848 ConsumerGroupHeartbeat.
    ConsumerHeartbeat(ConsumerGroupHeartbeatRequest),
    /// KIP-848 ConsumerGroupDescribe of one group.
    ConsumerDescribe(ConsumerGroupDescribeRequest),
    /// Offsets committed inside a transaction: pending until the producer's marker.
    TxnOffsetCommit(TxnOffsetCommitRequest),
    /// The transaction coordinator's end-transaction marker for this partition.
    TxnMarker(Marker),
    /// These topics were deleted: their offsets go from every group of this partition.
    TopicsDeleted(Vec<String>),
}

/// The coordinator's answer to a [`GroupCall`].
pub enum GroupReply {
    Classic(Reply),
    ConsumerHeartbeat(ConsumerGroupHeartbeatResponse),
    ConsumerDescribe(ConsumerGroupDescribeResponse),
    TxnOffsetCommit(TxnOffsetCommitResponse),
    /// The marker is durable (0) or a Kafka error code.
    Marker(i16),
    /// The call's records are durable.
    Done,
}

pub struct GroupMessage {
    pub partition: i32,
    pub call: GroupCall,
    pub api_version: i16,
    pub client_id: String,
    pub client_host: String,
    /// Dropped without a reply when the coordinator cannot answer (its append failed, it stopped).
    pub reply: oneshot::Sender<GroupReply>,
}

/// Coordinator settings from the broker's (group.* and offsets.topic.*).
#[derive(Debug, Clone)]
pub struct CoordinatorSettings {
    pub classic: ClassicConfig,
    pub consumer: ConsumerGroupConfig,
    pub offsets_topic_partitions: i32,
}

impl Default for CoordinatorSettings {
    fn default() -> Self {
        CoordinatorSettings {
            classic: ClassicConfig::default(),
            consumer: ConsumerGroupConfig::default(),
            offsets_topic_partitions: 50,
        }
    }
}

/// One shard's share of the coordinator: the `__consumer_offsets` partitions it owns.
pub struct Coordinator {
    settings: CoordinatorSettings,
    partitions: RefCell<HashMap<i32, Rc<CoordinatorPartition>>>,
    /// A handler ran: deadlines may have moved earlier.
    deadlines_changed: Rc<Notify>,
    tick_started: Cell<bool>,
}

/// Replies waiting for their outcome's records (if any) to be durable.
type PendingReplies = (Option<AppendTicket>, Vec<(Token, GroupReply)>);

/// One step of either state machine: records (key, value) to append, then replies.
#[derive(Default)]
struct Step {
    records: Vec<(Bytes, Option<Bytes>)>,
    replies: Vec<(Token, GroupReply)>,
    /// The records belong to this producer's transaction (TxnOffsetCommit).
    producer: Option<(i64, i16)>,
}

impl From<Outcome> for Step {
    fn from(outcome: Outcome) -> Step {
        Step {
            records: outcome
                .records
                .iter()
                .map(|record| (Bytes::from(records::encode_key(record)), records::encode_value(record).map(Bytes::from)))
                .collect(),
            replies: outcome.replies.into_iter().map(|(token, reply)| (token, GroupReply::Classic(reply))).collect(),
            producer: None,
        }
    }
}

impl Step {
    fn reply(token: Token, reply: GroupReply) -> Step {
        Step { records: Vec::new(), replies: vec![(token, reply)], producer: None }
    }

    fn push_consumer_records(&mut self, consumer_records: &[ConsumerRecord]) {
        self.records.extend(consumer_records.iter().map(ConsumerRecord::encode));
    }
}

/// Both kinds of group share one `__consumer_offsets` partition and one group-id space: a group
/// id is a classic group (`groups`) or a KIP-848 consumer group (`consumer`). Committed offsets
/// of a consumer group live in `groups` as the offsets of an Empty ("simple") classic group of
/// the same id, which ListGroups and DescribeGroups do not show separately.
struct CoordinatorPartition {
    index: i32,
    groups: RefCell<Groups>,
    consumer: RefCell<ConsumerGroups>,
    log: RefCell<Option<Rc<Partition>>>,
    /// Offsets of open transactions by producer id (TxnOffsetCommit records in the log), applied
    /// when the producer's commit marker is written, dropped at its abort.
    pending_txn: RefCell<HashMap<i64, Vec<records::Record>>>,
    next_token: Cell<Token>,
    waiting: RefCell<HashMap<Token, oneshot::Sender<GroupReply>>>,
    queue: RefCell<VecDeque<PendingReplies>>,
    queue_wake: Rc<Notify>,
    /// Fired when loading is over.
    loaded: Rc<Notify>,
}

impl Coordinator {
    pub fn new(settings: CoordinatorSettings) -> Coordinator {
        Coordinator {
            settings,
            partitions: RefCell::new(HashMap::new()),
            deadlines_changed: Rc::new(Notify::default()),
            tick_started: Cell::new(false),
        }
    }

    pub fn offsets_topic_partitions(&self) -> i32 {
        self.settings.offsets_topic_partitions
    }

    /// Handles a group call on the owner shard of its partition.
    pub async fn handle(ctx: &Rc<ShardContext>, message: GroupMessage) {
        let coordinator = &ctx.coordinator;
        let partition = coordinator.partition(ctx, message.partition);
        if partition.groups.borrow().is_loading() {
            let loaded = partition.loaded.notified();
            if partition.groups.borrow().is_loading() {
                let _ = rt::timeout(LOAD_WAIT_MAX, loaded).await;
            }
        }
        if let GroupCall::TxnMarker(marker) = message.call {
            partition.write_marker(marker, message.reply).await;
            return;
        }
        let token = partition.next_token.get();
        partition.next_token.set(token + 1);
        partition.waiting.borrow_mut().insert(token, message.reply);
        let request = RequestContext {
            token,
            api_version: message.api_version,
            client_id: message.client_id,
            client_host: message.client_host,
        };
        let step = partition.dispatch(ctx, &request, message.call, now_ms());
        partition.submit(step).await;
        coordinator.deadlines_changed.notify_all();
    }

    /// The state of `__consumer_offsets-<index>`, loading it from the log on first use (requests
    /// meanwhile get COORDINATOR_LOAD_IN_PROGRESS from the state machine).
    fn partition(&self, ctx: &Rc<ShardContext>, index: i32) -> Rc<CoordinatorPartition> {
        if let Some(partition) = self.partitions.borrow().get(&index) {
            return partition.clone();
        }
        let seed = now_ms() as u64 ^ ((ctx.shard_id as u64) << 48) ^ ((index as u64) << 32);
        let partition = Rc::new(CoordinatorPartition {
            index,
            groups: RefCell::new(Groups::new_loading(self.settings.classic.clone(), seed)),
            consumer: RefCell::new(ConsumerGroups::new(self.settings.consumer.clone())),
            log: RefCell::new(None),
            pending_txn: RefCell::new(HashMap::new()),
            next_token: Cell::new(1),
            waiting: RefCell::new(HashMap::new()),
            queue: RefCell::new(VecDeque::new()),
            queue_wake: Rc::new(Notify::default()),
            loaded: Rc::new(Notify::default()),
        });
        self.partitions.borrow_mut().insert(index, partition.clone());
        rt::spawn_detached(CoordinatorPartition::drain(partition.clone()));
        let loading = partition.clone();
        let ctx_for_load = ctx.clone();
        rt::spawn_detached(async move { loading.load(&ctx_for_load).await });
        if !self.tick_started.replace(true) {
            rt::spawn_detached(run_ticks(ctx.clone()));
        }
        partition
    }

    /// Loads the `__consumer_offsets` partitions this shard owns (at start, so sessions of
    /// restored groups run again).
    pub fn load_owned(ctx: &Rc<ShardContext>) {
        let Some(info) = ctx.topic(OFFSETS_TOPIC) else { return };
        for index in 0..info.partition_count {
            if ctx.table.owner(OFFSETS_TOPIC, index) == ctx.shard_id {
                ctx.coordinator.partition(ctx, index);
            }
        }
    }
}

impl CoordinatorPartition {
    /// Runs one call against the state machines. Group ids held by the consumer-group module get
    /// its answers; classic calls naming them are answered as Kafka answers for a group of the
    /// other type.
    fn dispatch(&self, ctx: &ShardContext, request: &RequestContext, call: GroupCall, now: i64) -> Step {
        let mut groups = self.groups.borrow_mut();
        let mut consumer = self.consumer.borrow_mut();
        let token = request.token;
        let is_consumer = |group_id: &str| !groups.is_loading() && consumer.contains_group(group_id);
        match call {
            GroupCall::Join(body) if is_consumer(&body.group_id) => {
                let mut response = JoinGroupResponse::default();
                response.error_code = crate::api::codes::INCONSISTENT_GROUP_PROTOCOL;
                response.generation_id = -1;
                Step::reply(token, GroupReply::Classic(Reply::JoinGroup(response)))
            }
            GroupCall::Join(body) => groups.join_group(request, &body, now).into(),
            GroupCall::Sync(body) => groups.sync_group(request, &body, now).into(),
            GroupCall::Heartbeat(body) => groups.heartbeat(request, &body, now).into(),
            GroupCall::Leave(body) => groups.leave_group(request, &body, now).into(),
            GroupCall::OffsetCommit(mut body) if is_consumer(&body.group_id) => {
                let validated = consumer.validate_offset_commit(
                    &body.group_id,
                    &body.member_id,
                    body.generation_id_or_member_epoch,
                    CommitKind::Plain,
                );
                match validated {
                    Err(error) => {
                        let response = offset_commit_error(&body, error.code());
                        Step::reply(token, GroupReply::Classic(Reply::OffsetCommit(response)))
                    }
                    Ok(()) => {
                        // Validated against the consumer group: store as a commit into the Empty
                        // classic group that holds this group id's offsets.
                        body.generation_id_or_member_epoch = -1;
                        body.member_id = StrBytes::default();
                        body.group_instance_id = None;
                        groups.offset_commit(request, &body, now).into()
                    }
                }
            }
            GroupCall::OffsetCommit(body) => groups.offset_commit(request, &body, now).into(),
            GroupCall::OffsetFetch(body) => {
                // v8+ requests arrive split per group; v9 may name a member to validate.
                let member = body
                    .groups
                    .first()
                    .filter(|group| is_consumer(&group.group_id))
                    .and_then(|group| Some((group.group_id.to_string(), group.member_id.clone()?, group.member_epoch)));
                if let Some((group_id, member_id, member_epoch)) = member {
                    if let Err(error) = consumer.validate_offset_fetch(&group_id, &member_id, member_epoch) {
                        let mut response = kafka_protocol::messages::OffsetFetchResponse::default();
                        let mut failed = kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup::default();
                        failed.group_id = GroupId(StrBytes::from_string(group_id));
                        failed.error_code = error.code();
                        response.groups.push(failed);
                        return Step::reply(token, GroupReply::Classic(Reply::OffsetFetch(response)));
                    }
                }
                let mut step: Step = groups.offset_fetch(request, &body).into();
                if body.require_stable {
                    if let Some((_, GroupReply::Classic(Reply::OffsetFetch(response)))) = step.replies.first_mut() {
                        self.mark_unstable(&body, response);
                    }
                }
                step
            }
            GroupCall::Describe(body) => {
                // Split per group by the handler. A consumer group is not a classic group: Kafka
                // shows it Dead to DescribeGroups v0–5.
                if let Some(group_id) = body.groups.first().filter(|group_id| is_consumer(group_id)) {
                    let mut described = DescribedGroup::default();
                    described.group_id = group_id.clone();
                    described.group_state = StrBytes::from_static_str("Dead");
                    let response = DescribeGroupsResponse::default().with_groups(vec![described]);
                    return Step::reply(token, GroupReply::Classic(Reply::DescribeGroups(response)));
                }
                groups.describe_groups(request, &body).into()
            }
            GroupCall::List(body) => {
                let mut step: Step = groups.list_groups(request, &body).into();
                if let Some((_, GroupReply::Classic(Reply::ListGroups(listed)))) = step.replies.first_mut() {
                    if listed.error_code == 0 {
                        listed.groups.retain(|group| !consumer.contains_group(&group.group_id));
                        listed.groups.extend(list_consumer_groups(&consumer, &body));
                    }
                }
                step
            }
            GroupCall::Delete(body) => {
                let Some(group_id) = body.groups_names.first().filter(|group_id| is_consumer(group_id)).cloned() else {
                    return groups.delete_groups(request, &body).into();
                };
                match consumer.remove_group(&group_id) {
                    Err(error) => {
                        let mut result = kafka_protocol::messages::delete_groups_response::DeletableGroupResult::default();
                        result.group_id = group_id;
                        result.error_code = error.code();
                        let response = DeleteGroupsResponse::default().with_results(vec![result]);
                        Step::reply(token, GroupReply::Classic(Reply::DeleteGroups(response)))
                    }
                    Ok(removed) => {
                        // The offsets go with the group (the Empty classic group holding them).
                        let mut step: Step = if groups.group(&group_id).is_some() {
                            groups.delete_groups(request, &body).into()
                        } else {
                            let mut result = kafka_protocol::messages::delete_groups_response::DeletableGroupResult::default();
                            result.group_id = group_id;
                            let response = DeleteGroupsResponse::default().with_results(vec![result]);
                            Step::reply(token, GroupReply::Classic(Reply::DeleteGroups(response)))
                        };
                        let mut records = Step::default();
                        records.push_consumer_records(&removed);
                        step.records.splice(0..0, records.records);
                        step
                    }
                }
            }
            GroupCall::OffsetDelete(body) => groups.offset_delete(request, &body).into(),
            GroupCall::TopicsDeleted(topics) => {
                let mut outcome = groups.delete_topic_offsets(&topics);
                // Offsets of open transactions go too, each with a tombstone: a tombstone read
                // back drops the pending offset it names (see `replay_record`), as in Kafka.
                for pending in self.pending_txn.borrow_mut().values_mut() {
                    pending.retain(|record| match record {
                        records::Record::OffsetCommit { group_id, topic, partition, .. } if topics.contains(topic) => {
                            outcome.records.push(records::Record::OffsetCommit {
                                group_id: group_id.clone(),
                                topic: topic.clone(),
                                partition: *partition,
                                value: None,
                            });
                            false
                        }
                        _ => true,
                    });
                }
                let mut step: Step = outcome.into();
                step.replies.push((token, GroupReply::Done));
                step
            }
            GroupCall::TxnOffsetCommit(body) => {
                let validated = validate_txn_offset_commit(&mut groups, &consumer, request, &body, now);
                self.txn_offset_commit(&groups, request.token, &body, validated, now)
            }
            GroupCall::TxnMarker(_) => unreachable!("markers are handled before dispatch"),
            GroupCall::ConsumerHeartbeat(body) => {
                let error = if groups.is_loading() {
                    Some((crate::api::codes::COORDINATOR_LOAD_IN_PROGRESS, None))
                } else if groups.group(&body.group_id).is_some_and(|group| group.state() != classic::GroupState::Empty) {
                    Some((
                        crate::api::codes::GROUP_ID_NOT_FOUND,
                        Some(format!("Group {} is not a consumer group.", &*body.group_id)),
                    ))
                } else {
                    None
                };
                if let Some((code, message)) = error {
                    let mut response = ConsumerGroupHeartbeatResponse::default();
                    response.error_code = code;
                    response.error_message = message.map(StrBytes::from_string);
                    return Step::reply(token, GroupReply::ConsumerHeartbeat(response));
                }
                let client = ClientInfo { client_id: request.client_id.clone(), client_host: request.client_host.clone() };
                let topics = ImageTopics(ctx.image());
                let outcome = consumer.heartbeat_from(now, &body, request.api_version, &client, &topics);
                let mut step = Step::reply(token, GroupReply::ConsumerHeartbeat(outcome.reply));
                step.push_consumer_records(&outcome.records);
                step
            }
            GroupCall::ConsumerDescribe(body) => {
                let response = if groups.is_loading() {
                    let mut response = ConsumerGroupDescribeResponse::default();
                    for group_id in &body.group_ids {
                        let mut described = ConsumerDescribedGroup::default();
                        described.group_id = group_id.clone();
                        described.error_code = crate::api::codes::COORDINATOR_LOAD_IN_PROGRESS;
                        response.groups.push(described);
                    }
                    response
                } else {
                    consumer.describe(&body, &ImageTopics(ctx.image()))
                };
                Step::reply(token, GroupReply::ConsumerDescribe(response))
            }
        }
    }

    /// TxnOffsetCommit: the offsets are written as the producer's transactional records and kept
    /// pending until its marker (Kafka's OffsetMetadataManager `pendingTransactionalOffsets`).
    fn txn_offset_commit(
        &self,
        groups: &Groups,
        token: Token,
        body: &TxnOffsetCommitRequest,
        validated: Result<(), i16>,
        now: i64,
    ) -> Step {
        let mut step = Step { producer: Some((body.producer_id.0, body.producer_epoch)), ..Step::default() };
        let mut pending = Vec::new();
        let mut response = TxnOffsetCommitResponse::default();
        let chars_max = groups.config().offset_metadata_chars_max;
        for topic in &body.topics {
            let mut answered = TxnOffsetCommitResponseTopic::default();
            answered.name = topic.name.clone();
            for partition in &topic.partitions {
                let metadata = partition.committed_metadata.as_deref().unwrap_or_default();
                let code = match validated {
                    Err(code) => code,
                    Ok(()) if metadata_too_large(metadata, chars_max) => crate::api::codes::OFFSET_METADATA_TOO_LARGE,
                    Ok(()) => {
                        let offset = OffsetAndMetadata {
                            committed_offset: partition.committed_offset,
                            leader_epoch: (partition.committed_leader_epoch >= 0).then_some(partition.committed_leader_epoch),
                            metadata: metadata.to_owned(),
                            commit_timestamp_ms: now,
                            expire_timestamp_ms: None,
                        };
                        let record = records::Record::OffsetCommit {
                            group_id: body.group_id.to_string(),
                            topic: topic.name.to_string(),
                            partition: partition.partition_index,
                            value: Some(offset.to_value()),
                        };
                        step.records
                            .push((Bytes::from(records::encode_key(&record)), records::encode_value(&record).map(Bytes::from)));
                        pending.push(record);
                        crate::api::codes::NONE
                    }
                };
                let mut result = TxnOffsetCommitResponsePartition::default();
                result.partition_index = partition.partition_index;
                result.error_code = code;
                answered.partitions.push(result);
            }
            response.topics.push(answered);
        }
        if !pending.is_empty() {
            self.pending_txn.borrow_mut().entry(body.producer_id.0).or_default().extend(pending);
        }
        step.replies.push((token, GroupReply::TxnOffsetCommit(response)));
        step
    }

    /// Writes a transaction's marker and applies (commit) or drops (abort) its pending offsets;
    /// the reply goes once the marker is durable.
    async fn write_marker(&self, marker: Marker, reply: oneshot::Sender<GroupReply>) {
        let log = self.log.borrow().clone();
        let Some(log) = log else {
            let _ = reply.send(GroupReply::Marker(crate::api::codes::COORDINATOR_LOAD_IN_PROGRESS));
            return;
        };
        let ticket = match log
            .append_marker(marker.producer_id, marker.producer_epoch, marker.coordinator_epoch, marker.control())
            .await
        {
            Ok(ticket) => ticket,
            Err(error) => {
                let _ = reply.send(GroupReply::Marker(error.kafka_error_code()));
                return;
            }
        };
        let pending = self.pending_txn.borrow_mut().remove(&marker.producer_id).unwrap_or_default();
        if marker.commit {
            let mut groups = self.groups.borrow_mut();
            pending.iter().for_each(|record| groups.replay(record));
        }
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        self.waiting.borrow_mut().insert(token, reply);
        self.queue.borrow_mut().push_back((Some(ticket), vec![(token, GroupReply::Marker(crate::api::codes::NONE))]));
        self.queue_wake.notify_all();
    }

    /// OffsetFetch with require_stable (KIP-447): partitions with offsets of an open transaction
    /// answer UNSTABLE_OFFSET_COMMIT, so the consumer retries instead of reading a stale offset.
    fn mark_unstable(&self, request: &OffsetFetchRequest, response: &mut kafka_protocol::messages::OffsetFetchResponse) {
        let pending = self.pending_txn.borrow();
        let is_pending = |group_id: &str, topic: &str, partition: i32| {
            pending.values().flatten().any(|record| {
                matches!(record, records::Record::OffsetCommit { group_id: g, topic: t, partition: p, .. }
                    if g == group_id && t == topic && *p == partition)
            })
        };
        if pending.is_empty() {
            return;
        }
        for group in &mut response.groups {
            for topic in &mut group.topics {
                for partition in &mut topic.partitions {
                    if is_pending(&group.group_id, &topic.name, partition.partition_index) {
                        partition.error_code = crate::api::codes::UNSTABLE_OFFSET_COMMIT;
                        partition.committed_offset = -1;
                    }
                }
            }
        }
        for topic in &mut response.topics {
            for partition in &mut topic.partitions {
                if is_pending(&request.group_id, &topic.name, partition.partition_index) {
                    partition.error_code = crate::api::codes::UNSTABLE_OFFSET_COMMIT;
                    partition.committed_offset = -1;
                }
            }
        }
    }

    async fn load(self: Rc<Self>, ctx: &Rc<ShardContext>) {
        let started = std::time::Instant::now();
        let log = loop {
            match open_log(ctx, self.index).await {
                Ok(log) => break log,
                Err(error) => {
                    tracing::warn!(partition = self.index, error, "cannot open the group log yet; retrying");
                    rt::sleep(Duration::from_millis(500)).await;
                    if ctx.shutting_down.get() {
                        return;
                    }
                }
            }
        };
        let mut records = 0usize;
        replay_log(&log, |record| records += self.replay_record(record)).await;
        *self.log.borrow_mut() = Some(log);
        let now = now_ms();
        let outcome: Step = self.groups.borrow_mut().finish_loading(now).into();
        self.consumer.borrow_mut().arm_loaded_timers(now);
        let groups = self.groups.borrow().groups().count();
        tracing::info!(
            partition = self.index,
            records,
            groups,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded group coordinator partition"
        );
        self.loaded.notify_all();
        self.submit(outcome).await;
    }

    /// Applies one record read back from the log; returns 1 if it changed group state. Records
    /// of a transaction (TxnOffsetCommit) wait for their producer's marker: a commit applies
    /// them, an abort drops them.
    fn replay_record(&self, record: &WireRecord) -> usize {
        if record.control {
            let Some(commit) = record.key.as_deref().and_then(control_commits) else { return 0 };
            let pending = self.pending_txn.borrow_mut().remove(&record.producer_id).unwrap_or_default();
            if commit {
                let mut groups = self.groups.borrow_mut();
                pending.iter().for_each(|record| groups.replay(record));
                return pending.len();
            }
            return 0;
        }
        let Some(key) = record.key.as_deref() else { return 0 };
        match records::decode(key, record.value.as_deref()) {
            Ok(records::Record::Unknown { key_version }) if ConsumerRecord::is_consumer_key_version(key_version) => {
                match ConsumerRecord::decode(key, record.value.as_deref()) {
                    Ok(decoded) => {
                        self.consumer.borrow_mut().replay(&decoded);
                        1
                    }
                    Err(error) => {
                        tracing::warn!(
                            partition = self.index,
                            offset = record.offset,
                            ?error,
                            "skipping an undecodable consumer group record"
                        );
                        0
                    }
                }
            }
            Ok(decoded) if record.transactional => {
                self.pending_txn.borrow_mut().entry(record.producer_id).or_default().push(decoded);
                0
            }
            Ok(decoded) => {
                if let records::Record::OffsetCommit { group_id, topic, partition, value: None } = &decoded {
                    self.drop_pending(group_id, topic, *partition);
                }
                self.groups.borrow_mut().replay(&decoded);
                1
            }
            Err(error) => {
                tracing::warn!(partition = self.index, offset = record.offset, %error, "skipping an undecodable group record");
                0
            }
        }
    }

    /// A tombstone removes the offset from every open transaction of its group too (Kafka's
    /// `OffsetMetadataManager.replay`), so a later commit marker cannot bring it back.
    fn drop_pending(&self, group: &str, topic: &str, partition: i32) {
        for pending in self.pending_txn.borrow_mut().values_mut() {
            pending.retain(|record| {
                !matches!(record, records::Record::OffsetCommit { group_id: g, topic: t, partition: p, .. }
                    if g == group && t == topic && *p == partition)
            });
        }
    }

    /// Appends the outcome's records (acks=all) and queues its replies behind them.
    async fn submit(&self, step: Step) {
        let Step { records, replies, producer } = step;
        let ticket = if records.is_empty() {
            None
        } else {
            let log = self.log.borrow().clone();
            let appended = match log {
                Some(log) => match encode_batch(&records, producer) {
                    Some(batch) if producer.is_some() => {
                        log.append_as_coordinator(batch, Acks::Synced).await.map_err(|error| error.to_string())
                    }
                    Some(batch) => log.append(batch, Acks::Synced).await.map_err(|error| error.to_string()),
                    None => Err("cannot encode group records".to_string()),
                },
                None => Err("group log not open".to_string()),
            };
            match appended {
                Ok(ticket) => Some(ticket),
                Err(error) => {
                    tracing::error!(partition = self.index, error, "cannot persist group state; its replies are dropped");
                    for (token, _) in replies {
                        self.waiting.borrow_mut().remove(&token);
                    }
                    return;
                }
            }
        };
        if replies.is_empty() && ticket.is_none() {
            return;
        }
        self.queue.borrow_mut().push_back((ticket, replies));
        self.queue_wake.notify_all();
    }

    /// Sends replies in outcome order, each after its records are durable.
    async fn drain(self: Rc<Self>) {
        loop {
            let next = self.queue.borrow_mut().pop_front();
            let Some((ticket, replies)) = next else {
                self.queue_wake.notified().await;
                continue;
            };
            let durable = match ticket {
                Some(ticket) => ticket.wait().await.is_ok(),
                None => true,
            };
            if !durable {
                tracing::error!(partition = self.index, "group records were not persisted; replies dropped");
            }
            for (token, reply) in replies {
                if let Some(sender) = self.waiting.borrow_mut().remove(&token) {
                    if durable {
                        let _ = sender.send(reply);
                    }
                }
            }
        }
    }
}

/// Runs every deadline of this shard's groups (session and rebalance timeouts).
async fn run_ticks(ctx: Rc<ShardContext>) {
    let coordinator = &ctx.coordinator;
    while !ctx.shutting_down.get() {
        let partitions: Vec<Rc<CoordinatorPartition>> = coordinator.partitions.borrow().values().cloned().collect();
        let now = now_ms();
        for partition in &partitions {
            if partition.groups.borrow().is_loading() {
                continue;
            }
            let mut step: Step = partition.groups.borrow_mut().tick(now).into();
            let expired = partition.consumer.borrow_mut().tick(now);
            step.push_consumer_records(&expired);
            partition.submit(step).await;
        }
        let next = partitions
            .iter()
            .flat_map(|partition| [partition.groups.borrow().next_deadline(), partition.consumer.borrow().next_deadline()])
            .flatten()
            .min();
        let sleep = match next {
            Some(deadline) => Duration::from_millis((deadline - now_ms()).clamp(1, TICK_SLEEP_MAX.as_millis() as i64) as u64),
            None => TICK_SLEEP_MAX,
        };
        let changed = coordinator.deadlines_changed.notified();
        let _ = rt::timeout(sleep, changed).await;
    }
}

/// Kafka's `validateTransactionalOffsetCommit`: the checks of OffsetCommit for a transactional
/// commit (member id and generation checked only when the request carries them; a missing group
/// is created as a simple group when the generation is negative), a stale member epoch of a
/// consumer group answered as ILLEGAL_GENERATION.
fn validate_txn_offset_commit(
    groups: &mut Groups,
    consumer: &ConsumerGroups,
    request: &RequestContext,
    body: &TxnOffsetCommitRequest,
    now: i64,
) -> Result<(), i16> {
    if groups.is_loading() {
        return Err(crate::api::codes::COORDINATOR_LOAD_IN_PROGRESS);
    }
    let mut as_commit = OffsetCommitRequest::default();
    as_commit.group_id = body.group_id.clone();
    if consumer.contains_group(&body.group_id) {
        consumer.validate_offset_commit(&body.group_id, &body.member_id, body.generation_id, CommitKind::Transactional).map_err(
            |error| {
                if error.code() == crate::api::codes::STALE_MEMBER_EPOCH {
                    crate::api::codes::ILLEGAL_GENERATION
                } else {
                    error.code()
                }
            },
        )?;
        // The offsets live in the Empty classic group of the same id.
        as_commit.generation_id_or_member_epoch = -1;
    } else {
        as_commit.generation_id_or_member_epoch = body.generation_id;
        as_commit.member_id = body.member_id.clone();
        as_commit.group_instance_id = body.group_instance_id.clone();
    }
    groups.validate_offset_commit(request, &as_commit, CommitKind::Transactional, now).map(|_| ()).map_err(|error| error.code())
}

/// Starts writing a transaction marker to `__consumer_offsets-<partition>` (owned by this
/// shard); the receiver answers once it is durable.
pub(crate) async fn start_txn_marker(ctx: &Rc<ShardContext>, partition: i32, marker: Marker) -> oneshot::Receiver<GroupReply> {
    let (reply, answer) = oneshot::channel();
    let message = GroupMessage {
        partition,
        call: GroupCall::TxnMarker(marker),
        api_version: 0,
        client_id: String::new(),
        client_host: String::new(),
        reply,
    };
    Coordinator::handle(ctx, message).await;
    answer
}

async fn open_log(ctx: &Rc<ShardContext>, index: i32) -> Result<Rc<Partition>, String> {
    let info = ensure_offsets_topic(ctx).await.map_err(|code| format!("offsets topic unavailable (error {code})"))?;
    ctx.store.get_or_open(OFFSETS_TOPIC, index, &info.spec(index)).await.map_err(|error| error.to_string())
}

/// Reads a coordinator log from its start to its high watermark, giving every record of every
/// batch to `visit` in order (control records included). Undecodable batches are skipped.
pub(crate) async fn replay_log(log: &Partition, mut visit: impl FnMut(&WireRecord)) {
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let bytes = match read_bytes(log, offset) {
            Ok(bytes) if !bytes.is_empty() => bytes,
            Ok(_) => break,
            Err(error) => {
                tracing::error!(partition = log.name(), %error, "cannot read the coordinator log; its state starts from what was read");
                break;
            }
        };
        let next = replay_batches(log.name(), bytes, offset, &mut visit);
        if next <= offset {
            break;
        }
        offset = next;
        rt::yield_if_needed().await;
    }
}

/// Visits the records at or after `from` of the whole batches in `bytes`; returns the offset
/// after the last whole batch.
fn replay_batches(name: &str, bytes: Bytes, from: i64, visit: &mut impl FnMut(&WireRecord)) -> i64 {
    let mut next = from;
    let mut position = 0usize;
    while bytes.len() - position >= 61 {
        let base_offset = i64::from_be_bytes(bytes[position..position + 8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(bytes[position + 8..position + 12].try_into().expect("4 bytes"));
        let size = 12 + length.max(0) as usize;
        if length < 49 || position + size > bytes.len() {
            break;
        }
        let last_offset_delta = i32::from_be_bytes(bytes[position + 23..position + 27].try_into().expect("4 bytes"));
        let mut batch = bytes.slice(position..position + size);
        match RecordBatchDecoder::decode(&mut batch) {
            Ok(set) => set.records.iter().filter(|record| record.offset >= from).for_each(&mut *visit),
            Err(error) => tracing::warn!(partition = name, base_offset, %error, "skipping an undecodable coordinator batch"),
        }
        next = base_offset + last_offset_delta as i64 + 1;
        position += size;
    }
    next
}

/// Kafka's EndTxnMarker key: version i16, type i16 (0 abort, 1 commit). `Some(commit)`.
fn control_commits(key: &[u8]) -> Option<bool> {
    match key {
        [_, _, 0, 0] => Some(false),
        [_, _, 0, 1] => Some(true),
        _ => None,
    }
}

/// The bytes at `offset`: from the cache or the segment file.
fn read_bytes(log: &Partition, offset: i64) -> std::io::Result<Bytes> {
    let result = log
        .read(offset, LOAD_READ_BYTES, Isolation::ReadUncommitted)
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    let mut out = BytesMut::with_capacity(result.bytes());
    for chunk in result.chunks {
        match chunk {
            Chunk::Memory(bytes) => out.extend_from_slice(&bytes),
            Chunk::File(slice) => {
                let mut buffer = vec![0u8; slice.length];
                slice.file.read_exact_at(&mut buffer, slice.position)?;
                out.extend_from_slice(&buffer);
            }
        }
    }
    Ok(out.freeze())
}

/// One record batch of `records` (key, value); with `producer`, a transactional batch of that
/// producer id and epoch (Kafka writes TxnOffsetCommit records so, sequence -1).
pub(crate) fn encode_batch(group_records: &[(Bytes, Option<Bytes>)], producer: Option<(i64, i16)>) -> Option<Bytes> {
    let now = now_ms();
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let wire: Vec<WireRecord> = group_records
        .iter()
        .enumerate()
        .map(|(index, (key, value))| WireRecord {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // The encoder starts a new batch wherever offset − sequence changes: counting up
            // keeps one batch. Base sequence -1 without a producer; 0 for a producer's records
            // (the broker refuses a producer id with a negative sequence, and a coordinator's
            // append is not sequence-checked).
            sequence: if producer.is_some() { index as i32 } else { (-1i32).wrapping_add(index as i32) },
            timestamp: now,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut out, &wire, &options).ok()?;
    Some(out.freeze())
}

/// Creates `__consumer_offsets` (compacted, offsets.topic.num.partitions) if it does not exist.
/// Error: a Kafka error code (COORDINATOR_NOT_AVAILABLE when it cannot be created).
pub async fn ensure_offsets_topic(ctx: &ShardContext) -> Result<Rc<crate::context::TopicInfo>, i16> {
    ensure_internal_topic(ctx, OFFSETS_TOPIC, ctx.coordinator.offsets_topic_partitions(), OFFSETS_SEGMENT_BYTES).await
}

/// Creates a coordinator's internal topic (compacted, `partitions`, `segment_bytes`) if it does
/// not exist. Error: COORDINATOR_NOT_AVAILABLE when it cannot be created.
pub(crate) async fn ensure_internal_topic(
    ctx: &ShardContext,
    name: &str,
    partitions: i32,
    segment_bytes: u64,
) -> Result<Rc<crate::context::TopicInfo>, i16> {
    if let Some(info) = ctx.topic(name) {
        return Ok(info);
    }
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert("segment.bytes".to_string(), segment_bytes.to_string());
    let topic = NewTopic {
        name: name.to_string(),
        num_partitions: partitions,
        replication_factor: 1,
        assignments: None,
        configs,
        validate_only: false,
    };
    match admin::create_topic(ctx, topic).await {
        Ok(_) => tracing::info!(partitions, "created {name}"),
        Err(error) if error.code == crate::api::codes::TOPIC_ALREADY_EXISTS => {}
        Err(error) => {
            tracing::warn!(code = error.code, message = %error.message, "cannot create {name}");
            return Err(crate::api::codes::COORDINATOR_NOT_AVAILABLE);
        }
    }
    ctx.topic(name).ok_or(crate::api::codes::COORDINATOR_NOT_AVAILABLE)
}

/// Sends a group call to the owner of `group_id`'s partition and waits for the reply. Error: a
/// Kafka error code for the whole request.
pub async fn route(
    ctx: &Rc<ShardContext>,
    group_id: &str,
    call: GroupCall,
    api_version: i16,
    client_id: &str,
    client_host: &str,
) -> Result<GroupReply, i16> {
    let info = ensure_offsets_topic(ctx).await?;
    let partition = records::partition_for(group_id, info.partition_count);
    call_partition(ctx, partition, call, api_version, client_id, client_host).await
}

/// Kafka's `onPartitionsDeleted`: every coordinator partition drops the committed (and pending
/// transactional) offsets of a deleted topic, with tombstones, before this returns.
pub async fn topic_deleted(ctx: &Rc<ShardContext>, topic: &str) {
    let Some(info) = ctx.topic(OFFSETS_TOPIC) else { return };
    let calls = (0..info.partition_count).map(|partition| async move {
        let call = GroupCall::TopicsDeleted(vec![topic.to_owned()]);
        if let Err(code) = call_partition(ctx, partition, call, 0, "", "").await {
            tracing::warn!(topic, partition, code, "could not drop the committed offsets of a deleted topic");
        }
    });
    futures::future::join_all(calls).await;
}

/// Sends a group call to the owner of `__consumer_offsets-<partition>`.
pub async fn call_partition(
    ctx: &Rc<ShardContext>,
    partition: i32,
    call: GroupCall,
    api_version: i16,
    client_id: &str,
    client_host: &str,
) -> Result<GroupReply, i16> {
    let (reply, answer) = oneshot::channel();
    let message = GroupMessage {
        partition,
        call,
        api_version,
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        reply,
    };
    let owner = ctx.table.owner(OFFSETS_TOPIC, partition);
    if owner == ctx.shard_id {
        Coordinator::handle(ctx, message).await;
    } else if ctx.mesh.send(owner, ShardRequest::Group(message)).await.is_err() {
        return Err(crate::api::codes::COORDINATOR_NOT_AVAILABLE);
    }
    answer.await.map_err(|_| crate::api::codes::COORDINATOR_NOT_AVAILABLE)
}

/// The reply's variant, or COORDINATOR_NOT_AVAILABLE if the state machine answered another kind.
pub fn expect<T>(reply: GroupReply, pick: impl FnOnce(GroupReply) -> Option<T>) -> Result<T, i16> {
    pick(reply).ok_or(crate::api::codes::COORDINATOR_NOT_AVAILABLE)
}

/// The classic reply's variant, or COORDINATOR_NOT_AVAILABLE for any other answer.
pub fn expect_classic<T>(reply: GroupReply, pick: impl FnOnce(Reply) -> Option<T>) -> Result<T, i16> {
    match reply {
        GroupReply::Classic(reply) => pick(reply).ok_or(crate::api::codes::COORDINATOR_NOT_AVAILABLE),
        _ => Err(crate::api::codes::COORDINATOR_NOT_AVAILABLE),
    }
}

/// An OffsetCommit answer giving every requested partition `code`.
pub fn offset_commit_error(request: &OffsetCommitRequest, code: i16) -> OffsetCommitResponse {
    let mut response = OffsetCommitResponse::default();
    for wanted in &request.topics {
        let mut topic = OffsetCommitResponseTopic::default();
        topic.name = wanted.name.clone();
        for partition in &wanted.partitions {
            let mut answered = OffsetCommitResponsePartition::default();
            answered.partition_index = partition.partition_index;
            answered.error_code = code;
            topic.partitions.push(answered);
        }
        response.topics.push(topic);
    }
    response
}

/// ListGroups entries for the consumer groups, with KIP-518 state and KIP-848 type filters.
fn list_consumer_groups(consumer: &ConsumerGroups, request: &ListGroupsRequest) -> Vec<ListedGroup> {
    let type_wanted = request.types_filter.is_empty()
        || request.types_filter.iter().any(|group_type| group_type.eq_ignore_ascii_case(consumer::GROUP_TYPE));
    if !type_wanted {
        return Vec::new();
    }
    consumer
        .list_groups()
        .filter(|(_, state)| {
            request.states_filter.is_empty()
                || request.states_filter.iter().any(|wanted| wanted.eq_ignore_ascii_case(state.as_str()))
        })
        .map(|(group_id, state)| {
            let mut listed = ListedGroup::default();
            listed.group_id = GroupId(StrBytes::from_string(group_id.to_string()));
            listed.protocol_type = StrBytes::from_static_str("consumer");
            listed.group_state = StrBytes::from_static_str(state.as_str());
            listed.group_type = StrBytes::from_static_str(consumer::GROUP_TYPE);
            listed
        })
        .collect()
}

/// Cluster metadata as the consumer-group module sees it: user topics of the current image.
struct ImageTopics(std::sync::Arc<MetadataImage>);

impl TopicsView for ImageTopics {
    fn topic(&self, name: &str) -> Option<consumer::TopicInfo> {
        if name.starts_with("__") {
            return None;
        }
        let topic = self.0.topics.get(name)?;
        Some(consumer::TopicInfo { topic_id: uuid::Uuid::from_bytes(topic.id), partition_count: topic.partitions.len() as i32 })
    }

    fn for_each_topic(&self, visit: &mut dyn FnMut(&str, consumer::TopicInfo)) {
        for (name, topic) in &self.0.topics {
            if !name.starts_with("__") {
                let info = consumer::TopicInfo {
                    topic_id: uuid::Uuid::from_bytes(topic.id),
                    partition_count: topic.partitions.len() as i32,
                };
                visit(name, info);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_becomes_one_batch() {
        let records: Vec<(Bytes, Option<Bytes>)> = (0..3)
            .map(|index| (Bytes::from(format!("key-{index}")), (index != 1).then(|| Bytes::from_static(b"value"))))
            .collect();
        let batch = encode_batch(&records, None).expect("encodes");
        let length = i32::from_be_bytes(batch[8..12].try_into().unwrap()) as usize;
        assert_eq!(12 + length, batch.len(), "exactly one batch");
        assert_eq!(i32::from_be_bytes(batch[57..61].try_into().unwrap()), 3, "record count");
        assert_eq!(i32::from_be_bytes(batch[53..57].try_into().unwrap()), -1, "base sequence: not idempotent");
        let decoded = RecordBatchDecoder::decode(&mut batch.clone()).expect("decodes");
        let keys: Vec<_> = decoded.records.iter().map(|record| record.key.clone().unwrap()).collect();
        assert_eq!(keys, records.iter().map(|(key, _)| key.clone()).collect::<Vec<_>>());
        assert!(decoded.records[1].value.is_none(), "tombstone kept");
    }
}
