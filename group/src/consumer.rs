//! The KIP-848 consumer group state machine (ConsumerGroupHeartbeat, ConsumerGroupDescribe).
//!
//! [`ConsumerGroups`] holds every consumer group of one `__consumer_offsets` partition and lives
//! on the shard that owns that partition; it is never shared between shards. It is pure: every
//! call takes the time and a [`TopicsView`] of cluster metadata, and returns the records that
//! describe the change together with the reply.
//!
//! ```text
//!   heartbeat ──► validate (no state touched on error)
//!             ──► member metadata (5) ─► subscription metadata (4) ─► group epoch (3)
//!             ──► target assignment members (7) + target epoch (6)   [if group epoch moved]
//!             ──► member current assignment (8)                      [reconciliation]
//!             ──► Outcome { records, reply }
//! ```
//!
//! Sequencing contract for the caller: append `Outcome::records` to the group's
//! `__consumer_offsets` partition and wait until they are durable before sending `reply`. The
//! state has already moved on (records are applied as they are emitted), so the caller must not
//! serve later requests of the same group from a state it then fails to persist: if the append
//! fails, drop the shard's `ConsumerGroups` and rebuild it by [`ConsumerGroups::replay`] from the
//! log (what Kafka's coordinator does by reverting to the last committed offset). Errors carry
//! no records and change nothing. `tick` returns records the same way (removals); after loading
//! by `replay`, call `arm_loaded_timers(now)` once so every member gets a fresh session.
//!
//! Group ids are shared with the classic module: the caller routes a request to this module only
//! for groups that are not classic groups, and answers GROUP_ID_NOT_FOUND ("not a consumer group")
//! otherwise, as Kafka does.
//!
//! Differences from Kafka, on purpose or not yet done:
//! - Regexes are resolved synchronously at every heartbeat with a built-in subset engine
//!   (`topic_regex`); Kafka resolves them in the background with RE2J and persists the result
//!   (key version 16). Patterns outside the subset get INVALID_REGULAR_EXPRESSION.
//! - No rack-aware assignment (rack ids are stored, partition racks written empty), no KIP-1101
//!   metadata hash (key version 4 records are written instead, as Kafka 3.7–4.0 do), no classic
//!   members inside consumer groups (online upgrade), no per-group dynamic configs, no
//!   `group.consumer.assignment.interval.ms` batching: the target is computed in the heartbeat
//!   that finds the group epoch ahead of it.
//! - A known member that rejoins with epoch 0 (a fenced v1 client keeps its member id) is taken
//!   back with its assigned partitions and its revocations released, instead of being fenced.
//! - Timers are scanned linearly by `tick`/`next_deadline` (fine for thousands of members).

mod group;
mod record;
mod topic_regex;

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{self as describe, DescribedGroup};
use kafka_protocol::messages::consumer_group_heartbeat_response::{self as heartbeat};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::assignor::{assignor_by_name, Assignment, AssignmentSpec, MemberSpec, UNIFORM_ASSIGNOR_NAME};
use crate::offsets::CommitKind;
pub use group::GroupState;
use group::{is_subset, Group, Member, MemberTimers};
pub use record::{ConsumerRecord, CurrentAssignment, MemberMetadata, MemberState, RecordError, TopicMetadata};
pub use topic_regex::{RegexError, TopicRegex};

/// ConsumerGroupHeartbeat versions handled here (v1 is KIP-1082: client-generated member ids).
pub const HEARTBEAT_VERSION_MIN: i16 = 0;
pub const HEARTBEAT_VERSION_MAX: i16 = 1;
/// ConsumerGroupDescribe versions handled here.
pub const DESCRIBE_VERSION_MIN: i16 = 0;
pub const DESCRIBE_VERSION_MAX: i16 = 1;

/// Member epoch a member sends to join (or rejoin after being fenced).
pub const JOIN_GROUP_MEMBER_EPOCH: i32 = 0;
/// Member epoch a member sends to leave the group.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// Member epoch a static member sends to leave temporarily, keeping its partitions reserved.
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// Longest member id accepted (Kafka's and librdkafka's ids are 22 characters, UUID strings 36).
pub const MEMBER_ID_LENGTH_MAX: usize = 64;
/// Longest group id: ids are i16-length strings in record keys.
pub const GROUP_ID_LENGTH_MAX: usize = i16::MAX as usize;
/// Most topic names one member may subscribe to by name.
pub const SUBSCRIBED_TOPIC_NAMES_MAX: usize = 10_000;

const _: () = assert!(MEMBER_ID_LENGTH_MAX >= 36, "server-generated UUID member ids must fit");
const _: () = assert!(GROUP_ID_LENGTH_MAX <= i16::MAX as usize, "ids are i16-length strings in record keys");
const _: () =
    assert!(LEAVE_GROUP_STATIC_MEMBER_EPOCH < LEAVE_GROUP_MEMBER_EPOCH && LEAVE_GROUP_MEMBER_EPOCH < JOIN_GROUP_MEMBER_EPOCH);

/// `authorized_operations` when the client did not ask for them (Kafka's INT32_MIN sentinel).
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;
/// ConsumerGroupDescribe v1 member type of a member using the consumer protocol.
const MEMBER_TYPE_CONSUMER: i8 = 1;

/// Broker settings for consumer groups (Kafka's `group.consumer.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`, sent in every successful response.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`.
    pub group_size_max: usize,
    /// Assignor used when no member names one (`group.consumer.assignors`, first entry).
    pub default_assignor: &'static str,
}

impl Default for ConsumerGroupConfig {
    fn default() -> ConsumerGroupConfig {
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            group_size_max: i32::MAX as usize,
            default_assignor: UNIFORM_ASSIGNOR_NAME,
        }
    }
}

/// A topic as cluster metadata knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    pub topic_id: Uuid,
    pub partition_count: i32,
}

/// Read view of cluster metadata (a `*_table` in Fjord's vocabulary).
pub trait TopicsView {
    fn topic(&self, name: &str) -> Option<TopicInfo>;
    /// Every topic; used to resolve subscription regexes.
    fn for_each_topic(&self, visit: &mut dyn FnMut(&str, TopicInfo));
}

/// A plain in-memory [`TopicsView`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicsTable {
    pub topics: IndexMap<String, TopicInfo>,
}

impl TopicsTable {
    pub fn with_topic(mut self, name: &str, topic_id: Uuid, partition_count: i32) -> TopicsTable {
        self.topics.insert(name.to_string(), TopicInfo { topic_id, partition_count });
        self
    }
}

impl TopicsView for TopicsTable {
    fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.topics.get(name).copied()
    }

    fn for_each_topic(&self, visit: &mut dyn FnMut(&str, TopicInfo)) {
        for (name, info) in &self.topics {
            visit(name, *info);
        }
    }
}

/// Request-header facts the heartbeat body does not carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub client_id: String,
    pub client_host: String,
}

/// Result of a heartbeat: persist `records`, then send `reply`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub records: Vec<ConsumerRecord>,
    pub reply: ConsumerGroupHeartbeatResponse,
}

/// Read-only summary of a group for ListGroups / DescribeGroups (group type "consumer").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: GroupState,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor_name: String,
    pub members: Vec<MemberSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub member_epoch: i32,
    pub state: MemberState,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
    pub target: Assignment,
}

/// Group type string for ListGroups.
pub const GROUP_TYPE: &str = "consumer";

type HeartbeatError = (ResponseError, &'static str);

/// How a heartbeat's member id resolves, decided before any state changes.
enum Resolution {
    New(String),
    Existing(String),
    /// A static member rejoins under a new member id after leaving with epoch -2.
    ReplaceStatic {
        old: String,
        new: String,
    },
}

/// All consumer groups of one `__consumer_offsets` partition. Lives on the shard that owns the
/// partition.
#[derive(Debug, Clone)]
pub struct ConsumerGroups {
    config: ConsumerGroupConfig,
    groups: BTreeMap<String, Group>,
    /// `Some` makes generated member ids deterministic (simulation tests).
    member_id_seed: Option<u64>,
}

/// Equal when the groups the records describe are equal (timers and config aside).
impl PartialEq for ConsumerGroups {
    fn eq(&self, other: &ConsumerGroups) -> bool {
        self.groups == other.groups
    }
}

impl ConsumerGroups {
    pub fn new(config: ConsumerGroupConfig) -> ConsumerGroups {
        assert!(config.session_timeout_ms > 0 && config.heartbeat_interval_ms > 0);
        assert!(assignor_by_name(config.default_assignor).is_some(), "unknown default assignor");
        ConsumerGroups { config, groups: BTreeMap::new(), member_id_seed: None }
    }

    /// Server-generated member ids (heartbeat v0) come from a seeded generator instead of v4 UUIDs.
    pub fn with_member_id_seed(mut self, seed: u64) -> ConsumerGroups {
        self.member_id_seed = Some(seed.max(1));
        self
    }

    pub fn config(&self) -> &ConsumerGroupConfig {
        &self.config
    }

    /// ConsumerGroupHeartbeat without header facts (client id and host recorded as empty).
    pub fn heartbeat(
        &mut self,
        now_ms: i64,
        request: &ConsumerGroupHeartbeatRequest,
        version: i16,
        topics: &dyn TopicsView,
    ) -> Outcome {
        self.handle_heartbeat(now_ms, request, version, None, topics)
    }

    /// ConsumerGroupHeartbeat. Always answers at once; errors carry no records and leave the
    /// state untouched.
    pub fn heartbeat_from(
        &mut self,
        now_ms: i64,
        request: &ConsumerGroupHeartbeatRequest,
        version: i16,
        client: &ClientInfo,
        topics: &dyn TopicsView,
    ) -> Outcome {
        self.handle_heartbeat(now_ms, request, version, Some(client), topics)
    }

    fn handle_heartbeat(
        &mut self,
        now_ms: i64,
        request: &ConsumerGroupHeartbeatRequest,
        version: i16,
        client: Option<&ClientInfo>,
        topics: &dyn TopicsView,
    ) -> Outcome {
        let result = validate_heartbeat(request, version).and_then(|()| match request.member_epoch {
            LEAVE_GROUP_MEMBER_EPOCH => self.leave(request),
            LEAVE_GROUP_STATIC_MEMBER_EPOCH => self.leave_static(request),
            _ => self.join_or_heartbeat(now_ms, request, client, topics),
        });
        match result {
            Ok(outcome) => outcome,
            Err((error, message)) => {
                tracing::debug!(
                    group = request.group_id.0.as_str(),
                    member = request.member_id.as_str(),
                    ?error,
                    message,
                    "consumer group heartbeat refused"
                );
                let mut reply = ConsumerGroupHeartbeatResponse::default();
                reply.error_code = error.code();
                reply.error_message = Some(StrBytes::from_static_str(message));
                Outcome { records: Vec::new(), reply }
            }
        }
    }

    fn reply(&self, member_id: &str, member_epoch: i32) -> ConsumerGroupHeartbeatResponse {
        let mut reply = ConsumerGroupHeartbeatResponse::default();
        reply.member_id = Some(StrBytes::from_string(member_id.to_string()));
        reply.member_epoch = member_epoch;
        reply.heartbeat_interval_ms = self.config.heartbeat_interval_ms;
        reply
    }

    /// Member epoch -1: the member leaves for good; its partitions go to others at the next
    /// assignment.
    fn leave(&mut self, request: &ConsumerGroupHeartbeatRequest) -> Result<Outcome, HeartbeatError> {
        let group = self.groups.get_mut(request.group_id.0.as_str()).ok_or(GROUP_NOT_FOUND)?;
        let member_id = match request.instance_id.as_ref() {
            Some(instance_id) => {
                let member = group.member_by_instance(instance_id.as_str()).ok_or(UNKNOWN_MEMBER)?;
                if member.member_id != request.member_id.as_str() {
                    return Err(FENCED_INSTANCE);
                }
                member.member_id.clone()
            }
            None => group.members.get(request.member_id.as_str()).ok_or(UNKNOWN_MEMBER)?.member_id.clone(),
        };
        let mut records = Vec::new();
        remove_member(group, &member_id, &mut records);
        Ok(Outcome { records, reply: self.reply(&member_id, LEAVE_GROUP_MEMBER_EPOCH) })
    }

    /// Member epoch -2: a static member leaves but keeps its partitions until it rejoins with the
    /// same instance id or its session times out; the group does not rebalance.
    fn leave_static(&mut self, request: &ConsumerGroupHeartbeatRequest) -> Result<Outcome, HeartbeatError> {
        let group = self.groups.get_mut(request.group_id.0.as_str()).ok_or(GROUP_NOT_FOUND)?;
        let instance_id = request.instance_id.as_ref().map(StrBytes::as_str).unwrap_or_default();
        let member = group.member_by_instance(instance_id).ok_or(UNKNOWN_MEMBER)?;
        if member.member_id != request.member_id.as_str() {
            return Err(FENCED_INSTANCE);
        }
        let member_id = member.member_id.clone();
        let current = &member.current;
        // The epoch it left at is kept as the previous epoch so the rejoining instance resumes there.
        let left_epoch = if current.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            current.previous_member_epoch
        } else {
            current.member_epoch
        };
        let value = CurrentAssignment {
            member_epoch: LEAVE_GROUP_STATIC_MEMBER_EPOCH,
            previous_member_epoch: left_epoch,
            state: MemberState::Stable,
            assigned: current.assigned.clone(),
            pending_revocation: Assignment::new(),
        };
        let mut records = Vec::new();
        emit(group, &mut records, current_record(&group.group_id, &member_id, Some(value)));
        if let Some(timers) = group.timers.get_mut(&member_id) {
            timers.revocation_deadline_ms = None;
        }
        Ok(Outcome { records, reply: self.reply(&member_id, LEAVE_GROUP_STATIC_MEMBER_EPOCH) })
    }

    fn resolve_member(&mut self, request: &ConsumerGroupHeartbeatRequest) -> Result<Resolution, HeartbeatError> {
        let group = self.groups.get(request.group_id.0.as_str());
        let epoch = request.member_epoch;
        let member_id = request.member_id.as_str();
        let owned = owned_partitions(request);
        if epoch != JOIN_GROUP_MEMBER_EPOCH {
            let group = group.ok_or(GROUP_NOT_FOUND)?;
            let member = match request.instance_id.as_ref() {
                Some(instance_id) => {
                    let member = group.member_by_instance(instance_id.as_str()).ok_or(UNKNOWN_MEMBER)?;
                    if member.member_id != member_id {
                        return Err(FENCED_INSTANCE);
                    }
                    member
                }
                None => group.members.get(member_id).ok_or(UNKNOWN_MEMBER)?,
            };
            check_member_epoch(member, epoch, owned.as_ref())?;
            return Ok(Resolution::Existing(member.member_id.clone()));
        }
        let size_ok = |group: Option<&Group>| group.is_none_or(|group| group.members.len() < self.config.group_size_max);
        if let Some(instance_id) = request.instance_id.as_ref() {
            if let Some(existing) = group.and_then(|group| group.member_by_instance(instance_id.as_str())) {
                if existing.member_id == member_id {
                    return Ok(Resolution::Existing(existing.member_id.clone()));
                }
                if existing.current.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                    return Err((ResponseError::UnreleasedInstanceId, "another live member holds this group.instance.id"));
                }
                let old = existing.member_id.clone();
                let new = if member_id.is_empty() { self.generate_member_id() } else { member_id.to_string() };
                return Ok(Resolution::ReplaceStatic { old, new });
            }
        }
        if !member_id.is_empty() {
            if let Some(existing) = group.and_then(|group| group.members.get(member_id)) {
                if existing.metadata.instance_id.is_some()
                    && existing.metadata.instance_id != request.instance_id.as_ref().map(|id| id.to_string())
                {
                    return Err(FENCED_INSTANCE);
                }
                return Ok(Resolution::Existing(member_id.to_string()));
            }
        }
        if !size_ok(group) {
            return Err((ResponseError::GroupMaxSizeReached, "the consumer group has reached group.consumer.max.size"));
        }
        let member_id = if member_id.is_empty() { self.generate_member_id() } else { member_id.to_string() };
        Ok(Resolution::New(member_id))
    }

    fn join_or_heartbeat(
        &mut self,
        now_ms: i64,
        request: &ConsumerGroupHeartbeatRequest,
        client: Option<&ClientInfo>,
        topics: &dyn TopicsView,
    ) -> Result<Outcome, HeartbeatError> {
        let resolution = self.resolve_member(request)?;
        // Nothing below fails: from here on, state changes and records go together.
        let group_id = request.group_id.0.as_str();
        let group = self.groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id));
        let mut records = Vec::new();
        let joining = request.member_epoch == JOIN_GROUP_MEMBER_EPOCH;
        let (member_id, is_new) = match resolution {
            Resolution::New(member_id) => (member_id, true),
            Resolution::Existing(member_id) => (member_id, false),
            Resolution::ReplaceStatic { old, new } => {
                replace_static_member(group, &old, &new, &mut records);
                (new, false)
            }
        };

        let before = group.members.get(&member_id).cloned();
        let mut metadata = before
            .as_ref()
            .map(|member| member.metadata.clone())
            .unwrap_or_else(|| MemberMetadata { rebalance_timeout_ms: -1, ..MemberMetadata::default() });
        if let Some(client) = client {
            // As Kafka does, the header's client id and host are taken from every heartbeat (a
            // restarted static member may come from another host).
            metadata.client_id.clone_from(&client.client_id);
            metadata.client_host.clone_from(&client.client_host);
        }
        apply_request_fields(&mut metadata, request);
        let mut bump_epoch = is_new;
        if before.as_ref().is_none_or(|member| member.metadata != metadata) {
            bump_epoch |= before.as_ref().is_some_and(|member| subscription_changed(&member.metadata, &metadata));
            let record = ConsumerRecord::MemberMetadata {
                group_id: group_id.to_string(),
                member_id: member_id.clone(),
                value: Some(metadata),
            };
            emit(group, &mut records, record);
        }

        let subscription = subscription_metadata(group, topics);
        if subscription != group.subscription {
            let record = ConsumerRecord::PartitionMetadata {
                group_id: group_id.to_string(),
                topics: Some(subscription.into_values().collect()),
            };
            emit(group, &mut records, record);
            bump_epoch = true;
        }
        if bump_epoch {
            let epoch = crate::next_epoch(group.epoch);
            emit(group, &mut records, ConsumerRecord::GroupMetadata { group_id: group_id.to_string(), epoch: Some(epoch) });
        }
        // `!=`, not `>`: past i32::MAX the group epoch starts again at 1 (`next_epoch`).
        if group.epoch != group.target_epoch {
            compute_target_assignment(group, self.config.default_assignor, &mut records);
        }

        let member = group.members.get(&member_id).expect("member exists after its metadata record");
        let current_before = member.current.clone();
        let owned = owned_partitions(request);
        let mut base = current_before.clone();
        if joining && !is_new {
            // A (re)join says the client owns nothing: whatever it was revoking is released, and
            // whatever it was assigned is offered again.
            base.pending_revocation.clear();
            base.state = MemberState::UnreleasedPartitions;
        }
        let current = group.reconcile(&member_id, &base, owned.as_ref());
        if current != current_before {
            // The exclusivity invariant, checked where partitions are handed out: a partition
            // goes to this member only if no other member holds it (assigned or revoking).
            for (topic_id, partitions) in &current.assigned {
                for partition in partitions {
                    assert!(!group.held_by_other(&member_id, *topic_id, *partition), "partition {topic_id}/{partition} is held");
                }
            }
            emit(group, &mut records, current_record(group_id, &member_id, Some(current.clone())));
        }

        let timers = group.timers.entry(member_id.clone()).or_default();
        timers.session_deadline_ms = now_ms.saturating_add(i64::from(self.config.session_timeout_ms));
        if current.state != MemberState::UnrevokedPartitions {
            timers.revocation_deadline_ms = None;
        } else if current_before.state != MemberState::UnrevokedPartitions
            || current_before.pending_revocation != current.pending_revocation
            || timers.revocation_deadline_ms.is_none()
        {
            // Each new revocation request gets the member's full rebalance timeout.
            let rebalance_timeout_ms = group.members[&member_id].metadata.rebalance_timeout_ms.max(0);
            timers.revocation_deadline_ms = Some(now_ms.saturating_add(i64::from(rebalance_timeout_ms)));
        }

        let mut reply = self.reply(&member_id, current.member_epoch);
        let reported_differs = owned.as_ref().is_some_and(|owned| owned != &current.assigned);
        if joining || current.assigned != current_before.assigned || reported_differs {
            reply.assignment = Some(to_reply_assignment(&current.assigned));
        }
        Ok(Outcome { records, reply })
    }

    fn generate_member_id(&mut self) -> String {
        match self.member_id_seed.as_mut() {
            Some(seed) => {
                // xorshift64*: deterministic ids for simulation, distinct for every call.
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                let high = u128::from(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
                Uuid::from_u128((high << 64) | u128::from(*seed)).hyphenated().to_string()
            }
            None => Uuid::new_v4().hyphenated().to_string(),
        }
    }

    /// ConsumerGroupDescribe. Topic names come from the group's subscription metadata, falling
    /// back to `topics`; partitions of a topic that no longer exists are listed without a name.
    pub fn describe(&self, request: &ConsumerGroupDescribeRequest, topics: &dyn TopicsView) -> ConsumerGroupDescribeResponse {
        let mut names: BTreeMap<Uuid, String> = BTreeMap::new();
        topics.for_each_topic(&mut |name, info| {
            names.insert(info.topic_id, name.to_string());
        });
        let mut response = ConsumerGroupDescribeResponse::default();
        for group_id in &request.group_ids {
            let mut described = DescribedGroup::default();
            described.group_id = group_id.clone();
            described.authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
            match self.groups.get(group_id.0.as_str()) {
                None => {
                    described.error_code = ResponseError::GroupIdNotFound.code();
                    described.error_message = Some(StrBytes::from_static_str("Group not found."));
                    described.group_state = StrBytes::from_static_str(GroupState::Dead.as_str());
                }
                Some(group) => {
                    let mut names = names.clone();
                    for topic in group.subscription.values() {
                        names.insert(topic.topic_id, topic.topic_name.clone());
                    }
                    described.group_state = StrBytes::from_static_str(group.state().as_str());
                    described.group_epoch = group.epoch;
                    described.assignment_epoch = group.target_epoch;
                    described.assignor_name =
                        StrBytes::from_string(group.preferred_assignor(self.config.default_assignor).to_string());
                    for member in group.members.values() {
                        described.members.push(describe_member(group, member, &names));
                    }
                }
            }
            response.groups.push(described);
        }
        response
    }

    /// After loading by replay: gives every member a full session (and a full rebalance timeout
    /// if it was revoking), as Kafka does when a coordinator takes over a partition.
    pub fn arm_loaded_timers(&mut self, now_ms: i64) {
        let session_timeout_ms = self.config.session_timeout_ms;
        for group in self.groups.values_mut() {
            for member in group.members.values() {
                group.timers.entry(member.member_id.clone()).or_insert_with(|| fresh_timers(member, now_ms, session_timeout_ms));
            }
        }
    }

    /// Expires sessions and revocations due at `now_ms`; returns the records of the removals.
    /// Members without timers (loaded by replay, if `arm_loaded_timers` was not called) get
    /// fresh ones here instead of expiring.
    pub fn tick(&mut self, now_ms: i64) -> Vec<ConsumerRecord> {
        let mut records = Vec::new();
        for group in self.groups.values_mut() {
            let mut expired = Vec::new();
            for member in group.members.values() {
                let timers = group
                    .timers
                    .entry(member.member_id.clone())
                    .or_insert_with(|| fresh_timers(member, now_ms, self.config.session_timeout_ms));
                let session_expired = timers.session_deadline_ms <= now_ms;
                let revocation_expired = timers.revocation_deadline_ms.is_some_and(|deadline| deadline <= now_ms)
                    && member.current.state == MemberState::UnrevokedPartitions;
                if session_expired || revocation_expired {
                    tracing::info!(group = %group.group_id, member = %member.member_id, session_expired, revocation_expired,
                        "fencing consumer group member");
                    expired.push(member.member_id.clone());
                }
            }
            for member_id in expired {
                remove_member(group, &member_id, &mut records);
            }
        }
        records
    }

    /// Earliest time at which [`ConsumerGroups::tick`] has work.
    pub fn next_deadline(&self) -> Option<i64> {
        self.groups
            .values()
            .flat_map(|group| group.timers.values())
            .flat_map(|timers| std::iter::once(timers.session_deadline_ms).chain(timers.revocation_deadline_ms))
            .min()
    }

    /// DeleteGroups: tombstones for everything the group wrote. Only empty groups can be deleted.
    pub fn remove_group(&mut self, group_id: &str) -> Result<Vec<ConsumerRecord>, ResponseError> {
        let group = self.groups.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
        if !group.members.is_empty() {
            return Err(ResponseError::NonEmptyGroup);
        }
        let mut records = Vec::new();
        let group_id = group_id.to_string();
        let member_ids: BTreeSet<&String> = group.members.keys().chain(group.target.keys()).collect();
        for member_id in member_ids {
            records.push(current_record(&group_id, member_id, None));
            records.push(ConsumerRecord::TargetAssignmentMember {
                group_id: group_id.clone(),
                member_id: member_id.clone(),
                assignment: None,
            });
            records.push(ConsumerRecord::MemberMetadata {
                group_id: group_id.clone(),
                member_id: member_id.clone(),
                value: None,
            });
        }
        records.push(ConsumerRecord::TargetAssignmentMetadata { group_id: group_id.clone(), assignment_epoch: None });
        records.push(ConsumerRecord::PartitionMetadata { group_id: group_id.clone(), topics: None });
        records.push(ConsumerRecord::GroupMetadata { group_id: group_id.clone(), epoch: None });
        for record in &records {
            self.replay(record);
        }
        Ok(records)
    }

    /// Rebuilds state from a record read back from `__consumer_offsets` (in log order).
    pub fn replay(&mut self, record: &ConsumerRecord) {
        let group_id = record.group_id();
        if let ConsumerRecord::GroupMetadata { epoch: None, .. } = record {
            self.groups.remove(group_id);
            return;
        }
        if record.is_tombstone() && !self.groups.contains_key(group_id) {
            return;
        }
        self.groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id)).replay(record);
    }

    pub fn contains_group(&self, group_id: &str) -> bool {
        self.groups.contains_key(group_id)
    }

    pub fn is_empty_group(&self, group_id: &str) -> bool {
        self.groups.get(group_id).is_some_and(|group| group.members.is_empty())
    }

    /// `Dead` for a group this shard does not hold.
    pub fn state(&self, group_id: &str) -> GroupState {
        self.groups.get(group_id).map_or(GroupState::Dead, Group::state)
    }

    /// ListGroups: every group with its state (group type [`GROUP_TYPE`]).
    pub fn list_groups(&self) -> impl Iterator<Item = (&str, GroupState)> + '_ {
        self.groups.iter().map(|(group_id, group)| (group_id.as_str(), group.state()))
    }

    pub fn group_summary(&self, group_id: &str) -> Option<GroupSummary> {
        let group = self.groups.get(group_id)?;
        Some(GroupSummary {
            group_id: group_id.to_string(),
            state: group.state(),
            group_epoch: group.epoch,
            assignment_epoch: group.target_epoch,
            assignor_name: group.preferred_assignor(self.config.default_assignor).to_string(),
            members: group
                .members
                .values()
                .map(|member| MemberSummary {
                    member_id: member.member_id.clone(),
                    instance_id: member.metadata.instance_id.clone(),
                    client_id: member.metadata.client_id.clone(),
                    client_host: member.metadata.client_host.clone(),
                    member_epoch: member.current.member_epoch,
                    state: member.current.state,
                    assigned: member.current.assigned.clone(),
                    pending_revocation: member.current.pending_revocation.clone(),
                    target: group.target.get(&member.member_id).cloned().unwrap_or_default(),
                })
                .collect(),
        })
    }

    /// OffsetCommit (v9+) check for a consumer group: a negative epoch commits only into an empty
    /// group (admin or manual-assignment commits), otherwise the member must exist and send its
    /// current epoch. `GroupIdNotFound` means this module does not hold the group: the caller
    /// decides (classic or simple group, or ILLEGAL_GENERATION before v9).
    pub fn validate_offset_commit(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
        kind: CommitKind,
    ) -> Result<(), ResponseError> {
        let group = self.groups.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
        if member_epoch < 0 && group.members.is_empty() {
            return Ok(());
        }
        if kind == CommitKind::Transactional && member_epoch < 0 && member_id.is_empty() {
            // Kafka's ConsumerGroup.validateOffsetCommit: TxnOffsetCommit does not require the
            // member fields, so they are checked only when given (KAFKA-18060).
            return Ok(());
        }
        let member = group.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if member_epoch != member.current.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// OffsetFetch (v9+) check when the request names a member: the member must exist and send
    /// its current epoch.
    pub fn validate_offset_fetch(&self, group_id: &str, member_id: &str, member_epoch: i32) -> Result<(), ResponseError> {
        let group = self.groups.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
        let member = group.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if member_epoch != member.current.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }
}

/// Kafka answers GROUP_ID_NOT_FOUND when a non-joining heartbeat names a group it does not hold.
const GROUP_NOT_FOUND: HeartbeatError = (ResponseError::GroupIdNotFound, "consumer group not found");
const UNKNOWN_MEMBER: HeartbeatError = (ResponseError::UnknownMemberId, "unknown member");
const FENCED_INSTANCE: HeartbeatError =
    (ResponseError::FencedInstanceId, "another member id has registered with this group.instance.id");

fn invalid(message: &'static str) -> HeartbeatError {
    (ResponseError::InvalidRequest, message)
}

/// Request checks that need no state (Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`).
fn validate_heartbeat(request: &ConsumerGroupHeartbeatRequest, version: i16) -> Result<(), HeartbeatError> {
    if !(HEARTBEAT_VERSION_MIN..=HEARTBEAT_VERSION_MAX).contains(&version) {
        return Err((ResponseError::UnsupportedVersion, "unsupported ConsumerGroupHeartbeat version"));
    }
    let group_id = request.group_id.0.as_str();
    let member_id = request.member_id.as_str();
    let epoch = request.member_epoch;
    if group_id.is_empty() || group_id.len() > GROUP_ID_LENGTH_MAX {
        return Err(invalid("GroupId can't be empty."));
    }
    if member_id.len() > MEMBER_ID_LENGTH_MAX {
        return Err(invalid("MemberId is too long."));
    }
    if member_id.is_empty() && (version >= 1 || epoch != JOIN_GROUP_MEMBER_EPOCH) {
        return Err(invalid("MemberId can't be empty."));
    }
    if epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        return Err(invalid("MemberEpoch is invalid."));
    }
    if epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH && request.instance_id.is_none() {
        return Err(invalid("InstanceId can't be null."));
    }
    if request.instance_id.as_ref().is_some_and(|id| id.is_empty()) {
        return Err(invalid("InstanceId can't be empty."));
    }
    if request.rack_id.as_ref().is_some_and(|id| id.is_empty()) {
        return Err(invalid("RackId can't be empty."));
    }
    if epoch == JOIN_GROUP_MEMBER_EPOCH {
        if request.rebalance_timeout_ms == -1 {
            return Err(invalid("RebalanceTimeoutMs must be provided in first request."));
        }
        if request.topic_partitions.as_ref().is_none_or(|partitions| !partitions.is_empty()) {
            return Err(invalid("TopicPartitions must be empty when (re-)joining."));
        }
        if request.subscribed_topic_names.is_none() && request.subscribed_topic_regex.is_none() {
            return Err(invalid("SubscribedTopicNames or SubscribedTopicRegex must be set in first request."));
        }
    }
    if request.rebalance_timeout_ms < -1 {
        return Err(invalid("RebalanceTimeoutMs is invalid."));
    }
    if request.subscribed_topic_names.as_ref().is_some_and(|names| names.len() > SUBSCRIBED_TOPIC_NAMES_MAX) {
        return Err(invalid("Too many SubscribedTopicNames."));
    }
    if let Some(assignor) = request.server_assignor.as_ref() {
        if assignor_by_name(assignor.as_str()).is_none() {
            return Err((ResponseError::UnsupportedAssignor, "ServerAssignor is not supported."));
        }
    }
    if let Some(pattern) = request.subscribed_topic_regex.as_ref().filter(|pattern| !pattern.is_empty()) {
        if TopicRegex::new(pattern.as_str()).is_err() {
            return Err((ResponseError::InvalidRegularExpression, "SubscribedTopicRegex is not a supported regular expression."));
        }
    }
    Ok(())
}

/// KIP-848 epoch check: a newer epoch than the server's is fenced; an older one is accepted only
/// if it is the previous epoch and the member owns a subset of its assignment (the response that
/// carried the bump was lost).
fn check_member_epoch(member: &Member, epoch: i32, owned: Option<&Assignment>) -> Result<(), HeartbeatError> {
    let current = &member.current;
    let fenced = (ResponseError::FencedMemberEpoch, "the member epoch is fenced; the member must rejoin");
    if epoch > current.member_epoch {
        return Err(fenced);
    }
    if epoch < current.member_epoch && (epoch != current.previous_member_epoch || !is_subset(owned, &current.assigned)) {
        return Err(fenced);
    }
    Ok(())
}

fn owned_partitions(request: &ConsumerGroupHeartbeatRequest) -> Option<Assignment> {
    let partitions = request.topic_partitions.as_ref()?;
    let mut owned = Assignment::new();
    for topic in partitions {
        if !topic.partitions.is_empty() {
            owned.entry(topic.topic_id).or_default().extend(topic.partitions.iter().copied());
        }
    }
    Some(owned)
}

/// Fields of a heartbeat are sent only when they change; null (or -1) means "as before".
fn apply_request_fields(metadata: &mut MemberMetadata, request: &ConsumerGroupHeartbeatRequest) {
    if let Some(instance_id) = request.instance_id.as_ref() {
        metadata.instance_id = Some(instance_id.to_string());
    }
    if let Some(rack_id) = request.rack_id.as_ref() {
        metadata.rack_id = Some(rack_id.to_string());
    }
    if request.rebalance_timeout_ms != -1 {
        metadata.rebalance_timeout_ms = request.rebalance_timeout_ms;
    }
    if let Some(names) = request.subscribed_topic_names.as_ref() {
        let names: BTreeSet<String> = names.iter().map(|name| name.0.to_string()).collect();
        metadata.subscribed_topic_names = names.into_iter().collect();
    }
    if let Some(pattern) = request.subscribed_topic_regex.as_ref() {
        // An empty pattern clears the regex subscription, as the Java client sends it.
        metadata.subscribed_topic_regex = (!pattern.is_empty()).then(|| pattern.to_string());
    }
    if let Some(assignor) = request.server_assignor.as_ref() {
        metadata.server_assignor = Some(assignor.to_string());
    }
}

fn subscription_changed(before: &MemberMetadata, after: &MemberMetadata) -> bool {
    before.subscribed_topic_names != after.subscribed_topic_names
        || before.subscribed_topic_regex != after.subscribed_topic_regex
        || before.server_assignor != after.server_assignor
}

/// The topics the members subscribe to (by name or regex) that exist, with partition counts.
fn subscription_metadata(group: &Group, topics: &dyn TopicsView) -> BTreeMap<String, TopicMetadata> {
    let mut names: BTreeSet<&str> = BTreeSet::new();
    let mut patterns: BTreeSet<&str> = BTreeSet::new();
    for member in group.members.values() {
        names.extend(member.metadata.subscribed_topic_names.iter().map(String::as_str));
        patterns.extend(member.metadata.subscribed_topic_regex.as_deref());
    }
    let mut subscription = BTreeMap::new();
    for name in names {
        if let Some(info) = topics.topic(name) {
            subscription.insert(name.to_string(), topic_metadata(name, info));
        }
    }
    let regexes: Vec<TopicRegex> = patterns.into_iter().filter_map(|pattern| TopicRegex::new(pattern).ok()).collect();
    if !regexes.is_empty() {
        topics.for_each_topic(&mut |name, info| {
            if regexes.iter().any(|regex| regex.is_match(name)) {
                subscription.insert(name.to_string(), topic_metadata(name, info));
            }
        });
    }
    subscription
}

fn topic_metadata(name: &str, info: TopicInfo) -> TopicMetadata {
    TopicMetadata { topic_id: info.topic_id, topic_name: name.to_string(), partition_count: info.partition_count }
}

/// The subscription metadata restricted to what the remaining members subscribe to (removal
/// needs no cluster metadata: the topics it keeps were all resolved before).
fn pruned_subscription(group: &Group) -> BTreeMap<String, TopicMetadata> {
    let regexes: Vec<TopicRegex> = group
        .members
        .values()
        .filter_map(|member| member.metadata.subscribed_topic_regex.as_deref())
        .filter_map(|p| TopicRegex::new(p).ok())
        .collect();
    group
        .subscription
        .iter()
        .filter(|(name, _)| {
            group.members.values().any(|member| member.metadata.subscribed_topic_names.binary_search(name).is_ok())
                || regexes.iter().any(|regex| regex.is_match(name))
        })
        .map(|(name, topic)| (name.clone(), topic.clone()))
        .collect()
}

fn fresh_timers(member: &Member, now_ms: i64, session_timeout_ms: i32) -> MemberTimers {
    MemberTimers {
        session_deadline_ms: now_ms.saturating_add(i64::from(session_timeout_ms)),
        revocation_deadline_ms: (member.current.state == MemberState::UnrevokedPartitions)
            .then(|| now_ms.saturating_add(i64::from(member.metadata.rebalance_timeout_ms.max(0)))),
    }
}

/// Applies a record to the group and queues it for the caller to persist.
fn emit(group: &mut Group, records: &mut Vec<ConsumerRecord>, record: ConsumerRecord) {
    group.replay(&record);
    records.push(record);
}

fn current_record(group_id: &str, member_id: &str, value: Option<CurrentAssignment>) -> ConsumerRecord {
    ConsumerRecord::CurrentMemberAssignment { group_id: group_id.to_string(), member_id: member_id.to_string(), value }
}

/// Fences a member out of the group (leave, session or rebalance timeout) and bumps the group
/// epoch so the next heartbeat recomputes the target assignment.
fn remove_member(group: &mut Group, member_id: &str, records: &mut Vec<ConsumerRecord>) {
    let group_id = group.group_id.clone();
    emit_member_tombstones(group, member_id, records);
    let subscription = pruned_subscription(group);
    if subscription != group.subscription {
        let record =
            ConsumerRecord::PartitionMetadata { group_id: group_id.clone(), topics: Some(subscription.into_values().collect()) };
        emit(group, records, record);
    }
    let epoch = crate::next_epoch(group.epoch);
    emit(group, records, ConsumerRecord::GroupMetadata { group_id, epoch: Some(epoch) });
}

/// The tombstones that take a member out of the log: its current assignment, its target
/// assignment and its metadata.
fn emit_member_tombstones(group: &mut Group, member_id: &str, records: &mut Vec<ConsumerRecord>) {
    let group_id = group.group_id.clone();
    emit(group, records, current_record(&group_id, member_id, None));
    let target =
        ConsumerRecord::TargetAssignmentMember { group_id: group_id.clone(), member_id: member_id.to_string(), assignment: None };
    emit(group, records, target);
    emit(group, records, ConsumerRecord::MemberMetadata { group_id, member_id: member_id.to_string(), value: None });
}

/// A static member rejoins under a new member id: the new id takes over the old one's
/// subscription, target and partitions without a rebalance (Kafka's static member replacement).
fn replace_static_member(group: &mut Group, old: &str, new: &str, records: &mut Vec<ConsumerRecord>) {
    let group_id = group.group_id.clone();
    let old_member = group.members.get(old).cloned().expect("resolved from the group");
    let old_target = group.target.get(old).cloned();
    emit_member_tombstones(group, old, records);
    let record = ConsumerRecord::MemberMetadata {
        group_id: group_id.clone(),
        member_id: new.to_string(),
        value: Some(old_member.metadata),
    };
    emit(group, records, record);
    if let Some(assignment) = old_target {
        let record = ConsumerRecord::TargetAssignmentMember {
            group_id: group_id.clone(),
            member_id: new.to_string(),
            assignment: Some(assignment),
        };
        emit(group, records, record);
    }
    let left_epoch = old_member.current.previous_member_epoch;
    let value = CurrentAssignment {
        member_epoch: left_epoch,
        previous_member_epoch: left_epoch,
        state: MemberState::Stable,
        assigned: old_member.current.assigned,
        pending_revocation: Assignment::new(),
    };
    emit(group, records, current_record(&group_id, new, Some(value)));
}

/// Runs the group's assignor and records the members whose target changed, then the new target
/// epoch (the group epoch).
fn compute_target_assignment(group: &mut Group, default_assignor: &str, records: &mut Vec<ConsumerRecord>) {
    let assignor_name = group.preferred_assignor(default_assignor).to_string();
    let assignor = assignor_by_name(&assignor_name)
        .or_else(|| assignor_by_name(default_assignor))
        .expect("the default assignor is validated at construction");
    let spec = AssignmentSpec {
        members: group
            .members
            .values()
            .map(|member| MemberSpec {
                member_id: member.member_id.clone(),
                instance_id: member.metadata.instance_id.clone(),
                subscribed_topic_ids: group.member_topic_ids(&member.metadata),
                current: group.target.get(&member.member_id).cloned().unwrap_or_default(),
            })
            .collect(),
        topics: group.subscription.values().map(|topic| (topic.topic_id, topic.partition_count.max(0))).collect(),
    };
    let assignment = assignor.assign(&spec);
    debug_assert_eq!(crate::assignor::check_assignment(&spec, &assignment), Ok(()));
    let group_id = group.group_id.clone();
    for (member_id, mut partitions) in assignment {
        partitions.retain(|_, partitions| !partitions.is_empty());
        if group.target.get(&member_id) != Some(&partitions) {
            let record =
                ConsumerRecord::TargetAssignmentMember { group_id: group_id.clone(), member_id, assignment: Some(partitions) };
            emit(group, records, record);
        }
    }
    let epoch = group.epoch;
    emit(group, records, ConsumerRecord::TargetAssignmentMetadata { group_id, assignment_epoch: Some(epoch) });
}

fn to_reply_assignment(assigned: &Assignment) -> heartbeat::Assignment {
    let mut assignment = heartbeat::Assignment::default();
    for (topic_id, partitions) in assigned {
        let mut topic = heartbeat::TopicPartitions::default();
        topic.topic_id = *topic_id;
        topic.partitions = partitions.iter().copied().collect();
        assignment.topic_partitions.push(topic);
    }
    assignment
}

fn to_describe_assignment(assigned: &Assignment, names: &BTreeMap<Uuid, String>) -> describe::Assignment {
    let mut assignment = describe::Assignment::default();
    for (topic_id, partitions) in assigned {
        let mut topic = describe::TopicPartitions::default();
        topic.topic_id = *topic_id;
        topic.topic_name = TopicName(StrBytes::from_string(names.get(topic_id).cloned().unwrap_or_default()));
        topic.partitions = partitions.iter().copied().collect();
        assignment.topic_partitions.push(topic);
    }
    assignment
}

fn describe_member(group: &Group, member: &Member, names: &BTreeMap<Uuid, String>) -> describe::Member {
    let metadata = &member.metadata;
    let mut described = describe::Member::default();
    described.member_id = StrBytes::from_string(member.member_id.clone());
    described.instance_id = metadata.instance_id.clone().map(StrBytes::from_string);
    described.rack_id = metadata.rack_id.clone().map(StrBytes::from_string);
    described.member_epoch = member.current.member_epoch;
    described.client_id = StrBytes::from_string(metadata.client_id.clone());
    described.client_host = StrBytes::from_string(metadata.client_host.clone());
    described.subscribed_topic_names =
        metadata.subscribed_topic_names.iter().map(|name| TopicName(StrBytes::from_string(name.clone()))).collect();
    described.subscribed_topic_regex = metadata.subscribed_topic_regex.clone().map(StrBytes::from_string);
    described.assignment = to_describe_assignment(&member.current.assigned, names);
    let empty = Assignment::new();
    described.target_assignment = to_describe_assignment(group.target.get(&member.member_id).unwrap_or(&empty), names);
    described.member_type = MEMBER_TYPE_CONSUMER;
    described
}
