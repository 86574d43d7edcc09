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
//! records and all earlier ones are durable (the runtime in [`super`]).

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use fjord_engine::partition::now_ms;
use fjord_engine::rt::{self, Notify};
use fjord_group::classic::{self, Groups, Outcome, Reply, RequestContext};
use fjord_group::consumer::{self, ClientInfo, ConsumerGroups, ConsumerRecord, TopicsView};
use fjord_group::offsets::{metadata_too_large, CommitKind, OffsetAndMetadata};
use fjord_group::records;
use fjord_replication::metadata::MetadataImage;
use futures::channel::oneshot;
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup as ConsumerDescribedGroup;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::{
    ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatResponse, DeleteGroupsResponse, DescribeGroupsResponse, GroupId,
    JoinGroupResponse, ListGroupsRequest, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Record as WireRecord;

use super::runtime::{control_commits, CoordinatorPartition, CoordinatorPartitions, CoordinatorState, InternalTopic, Token};
use crate::codes;
use crate::context::{ShardContext, TopicInfo};
use crate::message::{GroupCall, GroupMessage, GroupReply, Marker, ShardRequest};
use crate::settings::CoordinatorSettings;

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// offsets.topic.segment.bytes (Kafka: 100 MiB).
const OFFSETS_SEGMENT_BYTES: u64 = 100 * 1024 * 1024;
/// Longest sleep of the tick task when no deadline is nearer (a handler call wakes it early).
const TICK_SLEEP_MAX: Duration = Duration::from_secs(1);
/// One shard's share of the group coordinator: the `__consumer_offsets` partitions it owns.
/// Lives on one shard.
pub struct GroupCoordinator {
    ctx: Rc<ShardContext>,
    settings: CoordinatorSettings,
    partitions: CoordinatorPartitions<GroupState>,
    /// A handler ran: deadlines may have moved earlier.
    deadlines_changed: Rc<Notify>,
}

type Step = super::runtime::Step<GroupState>;
type Partition = CoordinatorPartition<GroupState>;

impl From<Outcome> for Step {
    fn from(outcome: Outcome) -> Step {
        Step {
            records: outcome.records.iter().map(encode_record).collect(),
            answers: outcome.replies.into_iter().map(|(token, reply)| (token, GroupReply::Classic(reply))).collect(),
            ..Step::default()
        }
    }
}

impl Step {
    fn push_consumer_records(&mut self, consumer_records: &[ConsumerRecord]) {
        self.records.extend(consumer_records.iter().map(ConsumerRecord::encode));
    }
}

fn encode_record(record: &records::Record) -> (Bytes, Option<Bytes>) {
    (Bytes::from(records::encode_key(record)), records::encode_value(record).map(Bytes::from))
}

/// Both kinds of group share one `__consumer_offsets` partition and one group-id space: a group
/// id is a classic group (`groups`) or a KIP-848 consumer group (`consumer`). Committed offsets
/// of a consumer group live in `groups` as the offsets of an Empty ("simple") classic group of
/// the same id, which ListGroups and DescribeGroups do not show separately.
pub struct GroupState {
    groups: Groups,
    consumer: ConsumerGroups,
    /// Offsets of open transactions by producer id (TxnOffsetCommit records in the log), applied
    /// when the producer's commit marker is written, dropped at its abort.
    pending_txn: HashMap<i64, Vec<records::Record>>,
}

impl CoordinatorState for GroupState {
    type Answer = GroupReply;
    type FollowUp = ();
    const TOPIC: &'static str = OFFSETS_TOPIC;
    const KIND: &'static str = "group";

    fn is_loading(&self) -> bool {
        self.groups.is_loading()
    }

    /// Records of a transaction (TxnOffsetCommit) wait for their producer's marker: a commit
    /// applies them, an abort drops them.
    fn replay(&mut self, partition: i32, record: &WireRecord) -> usize {
        if record.control {
            let Some(commit) = record.key.as_deref().and_then(control_commits) else { return 0 };
            let pending = self.pending_txn.remove(&record.producer_id).unwrap_or_default();
            if commit {
                pending.iter().for_each(|record| self.groups.replay(record));
                return pending.len();
            }
            return 0;
        }
        let Some(key) = record.key.as_deref() else { return 0 };
        match records::decode(key, record.value.as_deref()) {
            Ok(records::Record::Unknown { key_version }) if ConsumerRecord::is_consumer_key_version(key_version) => {
                match ConsumerRecord::decode(key, record.value.as_deref()) {
                    Ok(decoded) => {
                        self.consumer.replay(&decoded);
                        1
                    }
                    Err(error) => {
                        tracing::warn!(
                            partition,
                            offset = record.offset,
                            ?error,
                            "skipping an undecodable consumer group record"
                        );
                        0
                    }
                }
            }
            Ok(decoded) if record.transactional => {
                self.pending_txn.entry(record.producer_id).or_default().push(decoded);
                0
            }
            Ok(decoded) => {
                if let records::Record::OffsetCommit { group_id, topic, partition, value: None } = &decoded {
                    self.drop_pending(group_id, topic, *partition);
                }
                self.groups.replay(&decoded);
                1
            }
            Err(error) => {
                tracing::warn!(partition, offset = record.offset, %error, "skipping an undecodable group record");
                0
            }
        }
    }

    fn finish_loading(&mut self, now: i64) -> Step {
        let step = self.groups.finish_loading(now).into();
        self.consumer.arm_loaded_timers(now);
        step
    }
}

impl GroupCoordinator {
    pub fn new(ctx: Rc<ShardContext>, settings: CoordinatorSettings) -> Rc<GroupCoordinator> {
        let topic = InternalTopic {
            name: OFFSETS_TOPIC,
            partitions: settings.offsets_topic_partitions,
            segment_bytes: OFFSETS_SEGMENT_BYTES,
        };
        Rc::new(GroupCoordinator {
            partitions: CoordinatorPartitions::new(ctx.clone(), topic),
            ctx,
            settings,
            deadlines_changed: Rc::new(Notify::default()),
        })
    }

    /// `__consumer_offsets`, created if it does not exist.
    pub async fn ensure_topic(&self) -> Result<Rc<TopicInfo>, i16> {
        self.partitions.ensure_topic().await
    }

    /// Handles a group call on the owner shard of its partition.
    pub async fn handle(self: &Rc<Self>, message: GroupMessage) {
        let partition = self.partition(message.partition);
        partition.wait_loaded().await;
        if let GroupCall::TxnMarker(marker) = message.call {
            self.write_marker(&partition, marker, message.reply).await;
            return;
        }
        let token = partition.register(message.reply);
        let request = RequestContext {
            token,
            api_version: message.api_version,
            client_id: message.client_id,
            client_host: message.client_host,
        };
        let step = partition.state.borrow_mut().dispatch(&self.ctx, &request, message.call, now_ms());
        partition.submit(step).await;
        self.deadlines_changed.notify_all();
    }

    /// The state of `__consumer_offsets-<index>`, loading it from the log on first use (requests
    /// meanwhile get COORDINATOR_LOAD_IN_PROGRESS from the state machine).
    fn partition(self: &Rc<Self>, index: i32) -> Rc<Partition> {
        if let Some(partition) = self.partitions.get(index) {
            return partition;
        }
        let seed = now_ms() as u64 ^ ((self.ctx.shard_id as u64) << 48) ^ ((index as u64) << 32);
        let state = GroupState {
            groups: Groups::new_loading(self.settings.classic.clone(), seed),
            consumer: ConsumerGroups::new(self.settings.consumer.clone()),
            pending_txn: HashMap::new(),
        };
        let partition = self.partitions.start(index, state, |_, _| {});
        self.partitions.spawn_ticks_once(|| run_ticks(self.clone()));
        partition
    }

    /// Loads the `__consumer_offsets` partitions this shard owns (at start, so sessions of
    /// restored groups run again).
    pub fn load_owned(self: &Rc<Self>) {
        for index in self.partitions.owned() {
            self.partition(index);
        }
    }

    /// Writes a transaction's marker and applies (commit) or drops (abort) its pending offsets;
    /// the reply goes once the marker is durable.
    async fn write_marker(&self, partition: &Partition, marker: Marker, reply: oneshot::Sender<GroupReply>) {
        let Some(log) = partition.log() else {
            let _ = reply.send(GroupReply::Marker(codes::COORDINATOR_LOAD_IN_PROGRESS));
            return;
        };
        let appended =
            log.append_marker(marker.producer_id, marker.producer_epoch, marker.coordinator_epoch, marker.control()).await;
        let ticket = match appended {
            Ok(ticket) => ticket,
            Err(error) => {
                let _ = reply.send(GroupReply::Marker(error.kafka_error_code()));
                return;
            }
        };
        {
            let mut state = partition.state.borrow_mut();
            let pending = state.pending_txn.remove(&marker.producer_id).unwrap_or_default();
            if marker.commit {
                pending.iter().for_each(|record| state.groups.replay(record));
            }
        }
        let token = partition.register(reply);
        partition.queue_behind(Some(ticket), vec![(token, GroupReply::Marker(codes::NONE))], Vec::new());
    }
}

impl GroupState {
    /// Runs one call against the state machines. Group ids held by the consumer-group module get
    /// its answers; classic calls naming them are answered as Kafka answers for a group of the
    /// other type.
    fn dispatch(&mut self, ctx: &ShardContext, request: &RequestContext, call: GroupCall, now: i64) -> Step {
        let GroupState { groups, consumer, pending_txn } = self;
        let token = request.token;
        let is_consumer = |group_id: &str| !groups.is_loading() && consumer.contains_group(group_id);
        match call {
            GroupCall::Join(body) if is_consumer(&body.group_id) => {
                let mut response = JoinGroupResponse::default();
                response.error_code = codes::INCONSISTENT_GROUP_PROTOCOL;
                response.generation_id = -1;
                Step::answer(token, GroupReply::Classic(Reply::JoinGroup(response)))
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
                        Step::answer(token, GroupReply::Classic(Reply::OffsetCommit(response)))
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
                        return Step::answer(token, GroupReply::Classic(Reply::OffsetFetch(response)));
                    }
                }
                let mut step: Step = groups.offset_fetch(request, &body).into();
                if body.require_stable {
                    if let Some((_, GroupReply::Classic(Reply::OffsetFetch(response)))) = step.answers.first_mut() {
                        Self::mark_unstable(pending_txn, &body, response);
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
                    return Step::answer(token, GroupReply::Classic(Reply::DescribeGroups(response)));
                }
                groups.describe_groups(request, &body).into()
            }
            GroupCall::List(body) => {
                let mut step: Step = groups.list_groups(request, &body).into();
                if let Some((_, GroupReply::Classic(Reply::ListGroups(listed)))) = step.answers.first_mut() {
                    if listed.error_code == 0 {
                        listed.groups.retain(|group| !consumer.contains_group(&group.group_id));
                        listed.groups.extend(list_consumer_groups(consumer, &body));
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
                        Step::answer(token, GroupReply::Classic(Reply::DeleteGroups(response)))
                    }
                    Ok(removed) => {
                        // The offsets go with the group (the Empty classic group holding them).
                        let mut step: Step = if groups.group(&group_id).is_some() {
                            groups.delete_groups(request, &body).into()
                        } else {
                            let mut result = kafka_protocol::messages::delete_groups_response::DeletableGroupResult::default();
                            result.group_id = group_id;
                            let response = DeleteGroupsResponse::default().with_results(vec![result]);
                            Step::answer(token, GroupReply::Classic(Reply::DeleteGroups(response)))
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
                for pending in pending_txn.values_mut() {
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
                step.answers.push((token, GroupReply::Done));
                step
            }
            GroupCall::TxnOffsetCommit(body) => {
                let validated = groups.validate_txn_offset_commit(consumer, request, &body, now).map_err(|error| error.code());
                Self::txn_offset_commit(pending_txn, groups, request.token, &body, validated, now)
            }
            GroupCall::TxnMarker(_) => unreachable!("markers are handled before dispatch"),
            GroupCall::ConsumerHeartbeat(body) => {
                let error = if groups.is_loading() {
                    Some((codes::COORDINATOR_LOAD_IN_PROGRESS, None))
                } else if groups.group(&body.group_id).is_some_and(|group| group.state() != classic::GroupState::Empty) {
                    Some((codes::GROUP_ID_NOT_FOUND, Some(format!("Group {} is not a consumer group.", &*body.group_id))))
                } else {
                    None
                };
                if let Some((code, message)) = error {
                    let mut response = ConsumerGroupHeartbeatResponse::default();
                    response.error_code = code;
                    response.error_message = message.map(StrBytes::from_string);
                    return Step::answer(token, GroupReply::ConsumerHeartbeat(response));
                }
                let client = ClientInfo { client_id: request.client_id.clone(), client_host: request.client_host.clone() };
                let topics = ImageTopics(ctx.image());
                let outcome = consumer.heartbeat_from(now, &body, request.api_version, &client, &topics);
                let mut step = Step::answer(token, GroupReply::ConsumerHeartbeat(outcome.reply));
                step.push_consumer_records(&outcome.records);
                step
            }
            GroupCall::ConsumerDescribe(body) => {
                let response = if groups.is_loading() {
                    let mut response = ConsumerGroupDescribeResponse::default();
                    for group_id in &body.group_ids {
                        let mut described = ConsumerDescribedGroup::default();
                        described.group_id = group_id.clone();
                        described.error_code = codes::COORDINATOR_LOAD_IN_PROGRESS;
                        response.groups.push(described);
                    }
                    response
                } else {
                    consumer.describe(&body, &ImageTopics(ctx.image()))
                };
                Step::answer(token, GroupReply::ConsumerDescribe(response))
            }
        }
    }

    /// TxnOffsetCommit: the offsets are written as the producer's transactional records and kept
    /// pending until its marker (Kafka's OffsetMetadataManager `pendingTransactionalOffsets`).
    fn txn_offset_commit(
        pending_txn: &mut HashMap<i64, Vec<records::Record>>,
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
                    Ok(()) if metadata_too_large(metadata, chars_max) => codes::OFFSET_METADATA_TOO_LARGE,
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
                        codes::NONE
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
            pending_txn.entry(body.producer_id.0).or_default().extend(pending);
        }
        step.answers.push((token, GroupReply::TxnOffsetCommit(response)));
        step
    }

    /// OffsetFetch with require_stable (KIP-447): partitions with offsets of an open transaction
    /// answer UNSTABLE_OFFSET_COMMIT, so the consumer retries instead of reading a stale offset.
    fn mark_unstable(
        pending: &HashMap<i64, Vec<records::Record>>,
        request: &OffsetFetchRequest,
        response: &mut kafka_protocol::messages::OffsetFetchResponse,
    ) {
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
                        partition.error_code = codes::UNSTABLE_OFFSET_COMMIT;
                        partition.committed_offset = -1;
                    }
                }
            }
        }
        for topic in &mut response.topics {
            for partition in &mut topic.partitions {
                if is_pending(&request.group_id, &topic.name, partition.partition_index) {
                    partition.error_code = codes::UNSTABLE_OFFSET_COMMIT;
                    partition.committed_offset = -1;
                }
            }
        }
    }

    /// A tombstone removes the offset from every open transaction of its group too (Kafka's
    /// `OffsetMetadataManager.replay`), so a later commit marker cannot bring it back.
    fn drop_pending(&mut self, group: &str, topic: &str, partition: i32) {
        for pending in self.pending_txn.values_mut() {
            pending.retain(|record| {
                !matches!(record, records::Record::OffsetCommit { group_id: g, topic: t, partition: p, .. }
                    if g == group && t == topic && *p == partition)
            });
        }
    }
}

/// Runs every deadline of this shard's groups (session and rebalance timeouts).
async fn run_ticks(coordinator: Rc<GroupCoordinator>) {
    while !coordinator.ctx.shutting_down.get() {
        let partitions = coordinator.partitions.all();
        let now = now_ms();
        for partition in &partitions {
            let step = {
                let mut state = partition.state.borrow_mut();
                if state.groups.is_loading() {
                    continue;
                }
                let mut step: Step = state.groups.tick(now).into();
                let expired = state.consumer.tick(now);
                step.push_consumer_records(&expired);
                step
            };
            partition.submit(step).await;
        }
        let next = partitions
            .iter()
            .flat_map(|partition| {
                let state = partition.state.borrow();
                [state.groups.next_deadline(), state.consumer.next_deadline()]
            })
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

impl GroupCoordinator {
    /// Starts writing a transaction marker to `__consumer_offsets-<partition>` (owned by this
    /// shard); the receiver answers once it is durable.
    pub async fn start_txn_marker(self: &Rc<Self>, partition: i32, marker: Marker) -> oneshot::Receiver<GroupReply> {
        let (reply, answer) = oneshot::channel();
        let message = GroupMessage {
            partition,
            call: GroupCall::TxnMarker(marker),
            api_version: 0,
            client_id: String::new(),
            client_host: String::new(),
            reply,
        };
        self.handle(message).await;
        answer
    }

    /// Sends a group call to the owner of `group_id`'s partition and waits for the reply. Error:
    /// a Kafka error code for the whole request.
    pub async fn route(
        self: &Rc<Self>,
        group_id: &str,
        call: GroupCall,
        api_version: i16,
        client_id: &str,
        client_host: &str,
    ) -> Result<GroupReply, i16> {
        let info = self.ensure_topic().await?;
        let partition = records::partition_for(group_id, info.partition_count);
        self.call_partition(partition, call, api_version, client_id, client_host).await
    }

    /// Kafka's `onPartitionsDeleted`: every coordinator partition drops the committed (and
    /// pending transactional) offsets of a deleted topic, with tombstones, before this returns.
    pub async fn topic_deleted(self: &Rc<Self>, topic: &str) {
        let Some(info) = self.ctx.topic(OFFSETS_TOPIC) else { return };
        let calls = (0..info.partition_count).map(|partition| async move {
            let call = GroupCall::TopicsDeleted(vec![topic.to_owned()]);
            if let Err(code) = self.call_partition(partition, call, 0, "", "").await {
                tracing::warn!(topic, partition, code, "could not drop the committed offsets of a deleted topic");
            }
        });
        futures::future::join_all(calls).await;
    }

    /// Sends a group call to the owner of `__consumer_offsets-<partition>`.
    pub async fn call_partition(
        self: &Rc<Self>,
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
        self.partitions
            .call_owner(partition, message, answer, ShardRequest::Group, async |message| self.handle(message).await)
            .await
    }
}

/// An OffsetCommit answer giving every requested partition `code`.
pub fn offset_commit_error(request: &OffsetCommitRequest, code: i16) -> OffsetCommitResponse {
    let topics =
        request.topics.iter().map(|topic| (&topic.name, topic.partitions.iter().map(|partition| partition.partition_index)));
    OffsetCommitResponse::default().with_topics(crate::api::per_partition::all_failed(topics, code))
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
