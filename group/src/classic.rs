//! The classic group protocol state machine (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) and the
//! offset APIs of classic groups, after Kafka's `GroupMetadataManager`, `ClassicGroup` and
//! `OffsetMetadataManager` (group-coordinator module).
//!
//! Pure: every handler takes `now_ms` and returns an [`Outcome`]; nothing sleeps, spawns or does
//! I/O. Requests whose answer must wait (JoinGroup during a rebalance, followers' SyncGroup until the
//! leader's) stay parked in their member under the caller's [`Token`] and are answered by a later
//! Outcome. [`Groups::tick`] fires every deadline; [`Groups::next_deadline`] says when to call it.
//!
//! ```text
//!            join (new member)        all known members joined / rebalance timeout
//!   Empty ─────────────────────▶ PreparingRebalance ─────────────────────▶ CompletingRebalance
//!     ▲                          ▲        ▲  │ (no member left)                  │ leader SyncGroup
//!     └──────────────────────────┼────────┼──┘                                   ▼ (group metadata record)
//!                                │        └──── member joins/leaves/expires ─ Stable
//!                                └──── member leaves/expires, leader rejoins, metadata changes ─┘
//! ```
//!
//! Sequencing contract with the caller: apply an Outcome's `records` to the log in order, and send its
//! `replies` only once those records, and every record of every earlier Outcome, are durable. If an
//! append fails, the state here is ahead of the log: drop this `Groups` and rebuild it by replay.
//!
//! [`Groups`] lives on the one shard that owns a `__consumer_offsets` partition, and holds every
//! classic group that hashes to that partition.

use std::collections::{BTreeSet, HashMap, HashSet};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::consumer::ConsumerGroups;
use crate::offsets::{metadata_too_large, CommitKind, GroupOffsets, OffsetAndMetadata, OFFSET_METADATA_CHARS_MAX};
use crate::records::{GroupMetadataValue, MemberMetadataValue, Record, STRING_BYTES_MAX};

/// Identifies a pending request; chosen by the caller, echoed in [`Outcome::replies`].
pub type Token = u64;

/// The protocol type whose member metadata is a `ConsumerProtocolSubscription` (KIP-429 et al.).
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Timer firings handled for one group in one [`Groups::tick`]; the rest wait for the next tick.
/// Bounds the work of a tick even with zero timeouts (which reschedule at `now`).
pub const TIMER_FIRINGS_PER_GROUP_PER_TICK_MAX: usize = 64;

/// Coordinator settings, with Kafka's broker defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicConfig {
    /// `group.min.session.timeout.ms`.
    pub session_timeout_ms_min: i32,
    /// `group.max.session.timeout.ms`.
    pub session_timeout_ms_max: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub rebalance_delay_initial_ms: i32,
    /// `group.max.size` (Kafka default `Int.MaxValue`: unlimited).
    pub group_size_max: usize,
    /// How long a new member's parked JoinGroup may wait before the member is dropped (Kafka's
    /// `classicGroupNewMemberJoinTimeoutMs`, 5 minutes).
    pub new_member_join_timeout_ms: i32,
    /// `offset.metadata.max.bytes` (Kafka counts Java string length).
    pub offset_metadata_chars_max: usize,
}

impl Default for ClassicConfig {
    fn default() -> Self {
        ClassicConfig {
            session_timeout_ms_min: 6_000,
            session_timeout_ms_max: 1_800_000,
            rebalance_delay_initial_ms: 3_000,
            group_size_max: i32::MAX as usize,
            new_member_join_timeout_ms: 300_000,
            offset_metadata_chars_max: OFFSET_METADATA_CHARS_MAX,
        }
    }
}

/// Who sent a request and which version it was decoded with (responses are shaped by version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub token: Token,
    pub api_version: i16,
    /// From the request header; prefix of generated member ids.
    pub client_id: String,
    /// The peer address as Kafka shows it (`/127.0.0.1`).
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    JoinGroup(JoinGroupResponse),
    SyncGroup(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    LeaveGroup(LeaveGroupResponse),
    OffsetCommit(OffsetCommitResponse),
    OffsetFetch(OffsetFetchResponse),
    DescribeGroups(DescribeGroupsResponse),
    ListGroups(ListGroupsResponse),
    DeleteGroups(DeleteGroupsResponse),
    OffsetDelete(OffsetDeleteResponse),
}

/// What an operation produced: records to append durably, then replies to send (see the module
/// documentation for the order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub records: Vec<Record>,
    pub replies: Vec<(Token, Reply)>,
}

impl Outcome {
    fn reply(&mut self, token: Token, reply: Reply) {
        self.replies.push((token, reply));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The names Kafka uses in DescribeGroups and ListGroups.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A parked request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiter {
    token: Token,
    api_version: i16,
}

#[derive(Debug, Clone)]
struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout_ms: i32,
    session_timeout_ms: i32,
    protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    join_waiter: Option<Waiter>,
    sync_waiter: Option<Waiter>,
    /// Joined but not yet through a completed join phase: cannot heartbeat, expires on its own timer.
    is_new: bool,
    /// `None` while the member's heartbeat expectation is suspended (it is parked in a rebalance).
    heartbeat_deadline_ms: Option<i64>,
}

impl Member {
    fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(name, _)| name == protocol).map(|(_, metadata)| metadata.clone()).unwrap_or_default()
    }

    /// Kafka `ClassicGroupMember.vote`: the first protocol in the member's preference order that
    /// every member supports.
    fn vote<'a>(&'a self, candidates: &HashSet<&str>) -> Option<&'a str> {
        self.protocols.iter().map(|(name, _)| name.as_str()).find(|name| candidates.contains(name))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinTimerKind {
    /// The initial rebalance of an empty group (Kafka `tryCompleteInitialRebalanceElseSchedule`).
    Initial { delay_ms: i64, remaining_ms: i64 },
    /// The rebalance timeout.
    Rebalance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct JoinTimer {
    deadline_ms: i64,
    kind: JoinTimerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SyncTimer {
    deadline_ms: i64,
    generation_id: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TimerKey {
    Join,
    Sync,
    Heartbeat(String),
    PendingMember(String),
}

/// What the handlers of one call share: settings, the time, and the Outcome being built.
struct Env<'a> {
    config: &'a ClassicConfig,
    now_ms: i64,
    out: &'a mut Outcome,
}

/// One classic group and its committed offsets.
#[derive(Debug, Clone)]
pub struct ClassicGroup {
    group_id: String,
    state: GroupState,
    previous_state: GroupState,
    state_timestamp_ms: i64,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader_id: Option<String>,
    /// In join order: the first member is the leader of last resort.
    members: IndexMap<String, Member>,
    /// group.instance.id -> member id.
    static_members: HashMap<String, String>,
    /// KIP-394 member ids handed out with MEMBER_ID_REQUIRED -> expiry deadline.
    pending_members: IndexMap<String, i64>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pending_sync_members: HashSet<String>,
    /// Another member joined during the initial rebalance: extend its delay once more.
    new_member_added: bool,
    join_timer: Option<JoinTimer>,
    sync_timer: Option<SyncTimer>,
    /// Topics of the members' consumer subscriptions for the selected protocol; `None` when unknown
    /// (not the consumer protocol, or undecodable).
    subscribed_topics: Option<BTreeSet<String>>,
    offsets: GroupOffsets,
}

impl ClassicGroup {
    fn new(group_id: &str, now_ms: i64) -> Self {
        ClassicGroup {
            group_id: group_id.to_owned(),
            state: GroupState::Empty,
            previous_state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending_members: IndexMap::new(),
            pending_sync_members: HashSet::new(),
            new_member_added: false,
            join_timer: None,
            sync_timer: None,
            subscribed_topics: None,
            offsets: GroupOffsets::default(),
        }
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    pub fn leader_id(&self) -> Option<&str> {
        self.leader_id.as_deref()
    }

    pub fn member_ids(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    pub fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    pub fn member_assignment(&self, member_id: &str) -> Option<&Bytes> {
        self.members.get(member_id).map(|member| &member.assignment)
    }

    /// The member id currently registered for a group.instance.id (KIP-345).
    pub fn static_member_id(&self, group_instance_id: &str) -> Option<&str> {
        self.static_members.get(group_instance_id).map(String::as_str)
    }

    pub fn offsets(&self) -> &GroupOffsets {
        &self.offsets
    }

    /// Panics when an internal invariant does not hold; cheap enough for tests and debug checks.
    pub fn check_invariants(&self) {
        assert_eq!(self.leader_id.is_some(), !self.members.is_empty(), "group {}: leader iff members", self.group_id);
        if let Some(leader_id) = &self.leader_id {
            assert!(self.members.contains_key(leader_id), "group {}: leader {leader_id} is not a member", self.group_id);
        }
        match self.state {
            GroupState::Empty => assert!(self.members.is_empty(), "group {}: Empty with members", self.group_id),
            GroupState::CompletingRebalance | GroupState::Stable => {
                assert!(!self.members.is_empty(), "group {}: {:?} without members", self.group_id, self.state);
                assert!(self.protocol_name.is_some(), "group {}: {:?} without protocol", self.group_id, self.state);
            }
            GroupState::PreparingRebalance | GroupState::Dead => {}
        }
        for (instance_id, member_id) in &self.static_members {
            let member = self.members.get(member_id).expect("static member is a member");
            assert_eq!(member.group_instance_id.as_deref(), Some(instance_id.as_str()));
        }
        for member in self.members.values() {
            assert!(member.sync_waiter.is_none() || self.state == GroupState::CompletingRebalance);
            assert!(member.join_waiter.is_none() || self.state == GroupState::PreparingRebalance);
        }
    }

    fn transition(&mut self, state: GroupState, now_ms: i64) {
        tracing::debug!(group = %self.group_id, from = ?self.state, to = ?state, "classic group transition");
        self.previous_state = self.state;
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    fn can_rebalance(&self) -> bool {
        matches!(self.state, GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty)
    }

    fn awaiting_join_count(&self) -> usize {
        self.members.values().filter(|member| member.join_waiter.is_some()).count()
    }

    fn has_all_members_joined(&self) -> bool {
        self.members.len() == self.awaiting_join_count() && self.pending_members.is_empty()
    }

    /// Kafka `ClassicGroup.rebalanceTimeoutMs`: the largest of the members'.
    fn rebalance_timeout_ms(&self) -> i64 {
        self.members.values().map(|member| i64::from(member.rebalance_timeout_ms)).max().unwrap_or(0)
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// Kafka `ClassicGroup.supportsProtocols`.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.state == GroupState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| self.support_count(name) == self.members.len())
    }

    fn support_count(&self, protocol: &str) -> usize {
        self.members.values().filter(|member| member.protocols.iter().any(|(name, _)| name == protocol)).count()
    }

    /// Kafka `ClassicGroup.selectProtocol`: the protocol every member supports with the most votes.
    /// Kafka breaks ties by hash order; here the protocol that got its first vote earliest (in
    /// member join order) wins, so the choice is deterministic.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: HashSet<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.support_count(name) == self.members.len())
            .collect();
        let mut votes: IndexMap<&str, usize> = IndexMap::new();
        for member in self.members.values() {
            if let Some(vote) = member.vote(&candidates) {
                *votes.entry(vote).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, best_count)| count > best_count) {
                best = Some((name, count));
            }
        }
        // No common protocol can only follow a member changing its protocols mid-rebalance (Kafka
        // throws there); fall back to the leader's first choice rather than failing the group.
        best.map(|(name, _)| name.to_owned()).or_else(|| {
            let leader = self.leader_id.as_ref().and_then(|id| self.members.get(id)).unwrap_or(first);
            leader.protocols.first().map(|(name, _)| name.clone())
        })
    }

    /// Kafka `ClassicGroup.computeSubscribedTopics`.
    fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            topics.extend(decode_subscription_topics(&member.metadata(protocol))?);
        }
        Some(topics)
    }

    fn is_subscribed_to_topic(&self, topic: &str) -> bool {
        self.subscribed_topics.as_ref().is_some_and(|topics| topics.contains(topic))
    }

    /// Kafka `validateExistingMember`.
    fn validate_existing_member(&self, member_id: &str, group_instance_id: Option<&str>) -> Result<(), ResponseError> {
        match group_instance_id {
            None if self.members.contains_key(member_id) => Ok(()),
            None => Err(ResponseError::UnknownMemberId),
            Some(instance_id) => match self.static_members.get(instance_id) {
                None => Err(ResponseError::UnknownMemberId),
                Some(existing) if existing != member_id => Err(ResponseError::FencedInstanceId),
                Some(_) => Ok(()),
            },
        }
    }

    fn add_member(&mut self, member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        if let Some(instance_id) = &member.group_instance_id {
            self.static_members.insert(instance_id.clone(), member.member_id.clone());
        }
        self.pending_members.shift_remove(&member.member_id);
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member without triggering a rebalance (Kafka `ClassicGroup.remove`). Its parked
    /// requests are answered with UNKNOWN_MEMBER_ID so that a live client rejoins.
    fn remove_member(&mut self, member_id: &str, out: &mut Outcome) -> Option<Member> {
        self.pending_members.shift_remove(member_id);
        self.pending_sync_members.remove(member_id);
        let member = self.members.shift_remove(member_id)?;
        if let Some(instance_id) = &member.group_instance_id {
            if self.static_members.get(instance_id).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance_id);
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        if let Some(waiter) = member.join_waiter {
            out.reply(waiter.token, Reply::JoinGroup(join_error(waiter.api_version, "", ResponseError::UnknownMemberId)));
        }
        if let Some(waiter) = member.sync_waiter {
            out.reply(waiter.token, Reply::SyncGroup(sync_error(ResponseError::UnknownMemberId)));
        }
        Some(member)
    }

    /// Kafka `removeMemberAndUpdateClassicGroup`.
    fn remove_member_and_update(&mut self, member_id: &str, reason: &str, env: &mut Env) {
        self.remove_member(member_id, env.out);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(reason, env),
            GroupState::PreparingRebalance => self.complete_join_if_all_joined(env),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// After a removal Kafka completes the join phase as soon as everyone left has joined, even
    /// during the initial rebalance (unlike [`ClassicGroup::maybe_complete_join_phase`]).
    fn complete_join_if_all_joined(&mut self, env: &mut Env) {
        if self.state == GroupState::PreparingRebalance && self.has_all_members_joined() {
            self.complete_join(env);
        }
    }

    fn reschedule_heartbeat(&mut self, member_id: &str, now_ms: i64) {
        if let Some(member) = self.members.get_mut(member_id) {
            member.heartbeat_deadline_ms = Some(now_ms + i64::from(member.session_timeout_ms));
        }
    }

    /// Replaces a member's protocols and timeouts and parks its JoinGroup (Kafka `updateMember`).
    fn update_member(
        &mut self,
        member_id: &str,
        request: &JoinGroupRequest,
        rebalance_timeout_ms: i32,
        waiter: Waiter,
        out: &mut Outcome,
    ) {
        let member = self.members.get_mut(member_id).expect("update of a known member");
        member.protocols = request_protocols(request);
        member.rebalance_timeout_ms = rebalance_timeout_ms;
        member.session_timeout_ms = request.session_timeout_ms;
        // Kafka drops a superseded JoinGroup silently; a Token must always be answered here.
        if let Some(old) = member.join_waiter.replace(waiter) {
            out.reply(old.token, Reply::JoinGroup(join_error(old.api_version, member_id, ResponseError::RebalanceInProgress)));
        }
    }

    fn maybe_prepare_rebalance_or_complete_join(&mut self, reason: &str, env: &mut Env) {
        if self.can_rebalance() {
            self.prepare_rebalance(reason, env);
        } else {
            self.maybe_complete_join_phase(env);
        }
    }

    /// Kafka `prepareRebalance`.
    fn prepare_rebalance(&mut self, reason: &str, env: &mut Env) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_and_propagate_assignment(ResponseError::RebalanceInProgress, env);
        }
        self.sync_timer = None;
        let is_initial = self.state == GroupState::Empty;
        tracing::info!(group = %self.group_id, generation = self.generation_id, reason, "preparing to rebalance");
        self.transition(GroupState::PreparingRebalance, env.now_ms);
        if is_initial {
            // A new group: give the other members time to join (group.initial.rebalance.delay.ms).
            let delay_ms = i64::from(env.config.rebalance_delay_initial_ms);
            let remaining_ms = (self.rebalance_timeout_ms() - delay_ms).max(0);
            self.join_timer =
                Some(JoinTimer { deadline_ms: env.now_ms + delay_ms, kind: JoinTimerKind::Initial { delay_ms, remaining_ms } });
        } else if self.has_all_members_joined() {
            self.complete_join(env);
        } else {
            self.schedule_rebalance_timeout(env.now_ms);
        }
    }

    fn schedule_rebalance_timeout(&mut self, now_ms: i64) {
        self.join_timer = Some(JoinTimer { deadline_ms: now_ms + self.rebalance_timeout_ms(), kind: JoinTimerKind::Rebalance });
    }

    /// Kafka `maybeCompleteJoinPhase`: the initial rebalance completes only on its timer.
    fn maybe_complete_join_phase(&mut self, env: &mut Env) {
        if self.state == GroupState::PreparingRebalance
            && self.has_all_members_joined()
            && self.previous_state != GroupState::Empty
        {
            self.complete_join(env);
        }
    }

    /// Kafka `maybeElectNewJoinedLeader`: the leader must be among the members that rejoined.
    fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader_id) = &self.leader_id else { return false };
        if self.members.get(leader_id).is_some_and(|leader| leader.join_waiter.is_some()) {
            return true;
        }
        match self.members.values().find(|member| member.join_waiter.is_some()) {
            Some(member) => {
                tracing::info!(group = %self.group_id, old = %leader_id, new = %member.member_id, "leader did not rejoin");
                self.leader_id = Some(member.member_id.clone());
                true
            }
            None => false,
        }
    }

    /// Kafka `completeClassicGroupJoin`: ends the join phase and answers every parked JoinGroup.
    fn complete_join(&mut self, env: &mut Env) {
        self.join_timer = None;
        // Dynamic members that did not rejoin are dropped; static ones stay until their session
        // times out (KIP-345).
        let stale: Vec<String> = self
            .members
            .values()
            .filter(|member| member.join_waiter.is_none() && member.group_instance_id.is_none())
            .map(|member| member.member_id.clone())
            .collect();
        for member_id in stale {
            tracing::info!(group = %self.group_id, member = %member_id, "removing member that did not rejoin");
            self.remove_member(&member_id, env.out);
        }
        if !self.maybe_elect_new_joined_leader() && !self.members.is_empty() {
            // Nobody rejoined: wait another rebalance timeout for session expiry to clear them out.
            self.schedule_rebalance_timeout(env.now_ms);
            return;
        }
        self.init_next_generation(env.now_ms);
        if self.state == GroupState::Empty {
            tracing::info!(group = %self.group_id, generation = self.generation_id, "group is now empty");
            env.out.records.push(self.metadata_record());
            return;
        }
        tracing::info!(group = %self.group_id, generation = self.generation_id, members = self.members.len(), "stabilized");
        let member_ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in member_ids {
            let waiter = self.members.get_mut(&member_id).and_then(|member| member.join_waiter.take());
            if let Some(waiter) = waiter {
                let members = if self.is_leader(&member_id) { self.join_response_members() } else { Vec::new() };
                let response = self.join_success(waiter.api_version, &member_id, members, self.leader_id.clone());
                env.out.reply(waiter.token, Reply::JoinGroup(response));
            }
            self.reschedule_heartbeat(&member_id, env.now_ms);
            if let Some(member) = self.members.get_mut(&member_id) {
                member.is_new = false;
            }
            self.pending_sync_members.insert(member_id);
        }
        self.sync_timer =
            Some(SyncTimer { deadline_ms: env.now_ms + self.rebalance_timeout_ms(), generation_id: self.generation_id });
    }

    fn init_next_generation(&mut self, now_ms: i64) {
        self.generation_id = crate::next_epoch(self.generation_id);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(GroupState::Empty, now_ms);
        } else {
            self.protocol_name = self.select_protocol();
            self.transition(GroupState::CompletingRebalance, now_ms);
        }
        self.subscribed_topics = self.compute_subscribed_topics();
        self.pending_sync_members.clear();
    }

    fn reset_and_propagate_assignment(&mut self, error: ResponseError, env: &mut Env) {
        for member in self.members.values_mut() {
            member.assignment = Bytes::new();
        }
        self.propagate_assignment(Some(error), env);
    }

    /// Answers every parked SyncGroup with the member's assignment (Kafka `propagateAssignment`).
    fn propagate_assignment(&mut self, error: Option<ResponseError>, env: &mut Env) {
        let protocol_type = self.protocol_type.clone().map(StrBytes::from_string);
        let protocol_name = self.protocol_name.clone().map(StrBytes::from_string);
        for member in self.members.values_mut() {
            let Some(waiter) = member.sync_waiter.take() else { continue };
            let response = SyncGroupResponse::default()
                .with_error_code(error.map_or(0, |error| error.code()))
                .with_protocol_type(protocol_type.clone())
                .with_protocol_name(protocol_name.clone())
                .with_assignment(member.assignment.clone());
            env.out.reply(waiter.token, Reply::SyncGroup(response));
            // Expiry was suspended while the member was parked: expect heartbeats again from now.
            member.heartbeat_deadline_ms = Some(env.now_ms + i64::from(member.session_timeout_ms));
        }
    }

    fn join_response_members(&self) -> Vec<JoinGroupResponseMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .values()
            .map(|member| {
                JoinGroupResponseMember::default()
                    .with_member_id(str_bytes(&member.member_id))
                    .with_group_instance_id(member.group_instance_id.as_deref().map(str_bytes))
                    .with_metadata(member.metadata(protocol))
            })
            .collect()
    }

    fn join_success(
        &self,
        api_version: i16,
        member_id: &str,
        members: Vec<JoinGroupResponseMember>,
        leader: Option<String>,
    ) -> JoinGroupResponse {
        let response = JoinGroupResponse::default()
            .with_error_code(0)
            .with_generation_id(self.generation_id)
            .with_protocol_type(self.protocol_type.clone().map(StrBytes::from_string))
            .with_protocol_name(self.protocol_name.clone().map(StrBytes::from_string))
            .with_leader(leader.map(StrBytes::from_string).unwrap_or_default())
            .with_member_id(str_bytes(member_id))
            .with_members(members);
        shape_join_response(api_version, response)
    }

    /// The GroupMetadata record for the group as it is now (Kafka `newGroupMetadataRecord`).
    fn metadata_record(&self) -> Record {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        let members = self
            .members
            .values()
            .map(|member| MemberMetadataValue {
                member_id: member.member_id.clone(),
                group_instance_id: member.group_instance_id.clone(),
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                rebalance_timeout_ms: member.rebalance_timeout_ms,
                session_timeout_ms: member.session_timeout_ms,
                subscription: member.metadata(protocol),
                assignment: member.assignment.clone(),
            })
            .collect();
        Record::GroupMetadata {
            group_id: self.group_id.clone(),
            value: Some(GroupMetadataValue {
                protocol_type: self.protocol_type.clone().unwrap_or_default(),
                generation: self.generation_id,
                protocol: self.protocol_name.clone(),
                leader: self.leader_id.clone(),
                current_state_timestamp_ms: self.state_timestamp_ms,
                members,
            }),
        }
    }

    /// Rebuilds a group from its GroupMetadata record (Kafka `ClassicGroup.fromRecord`), keeping
    /// the offsets already replayed.
    fn from_record(group_id: &str, value: &GroupMetadataValue, offsets: GroupOffsets) -> Self {
        let mut group = ClassicGroup::new(group_id, value.current_state_timestamp_ms);
        group.offsets = offsets;
        group.generation_id = value.generation;
        group.protocol_type = Some(value.protocol_type.clone()).filter(|protocol_type| !protocol_type.is_empty());
        group.protocol_name = value.protocol.clone();
        let protocol = value.protocol.clone().unwrap_or_default();
        for record in &value.members {
            let member = Member {
                member_id: record.member_id.clone(),
                group_instance_id: record.group_instance_id.clone(),
                client_id: record.client_id.clone(),
                client_host: record.client_host.clone(),
                rebalance_timeout_ms: record.rebalance_timeout_ms,
                session_timeout_ms: record.session_timeout_ms,
                protocol_type: value.protocol_type.clone(),
                protocols: vec![(protocol.clone(), record.subscription.clone())],
                assignment: record.assignment.clone(),
                join_waiter: None,
                sync_waiter: None,
                is_new: false,
                heartbeat_deadline_ms: None,
            };
            if let Some(instance_id) = &member.group_instance_id {
                group.static_members.insert(instance_id.clone(), member.member_id.clone());
            }
            group.members.insert(member.member_id.clone(), member);
        }
        group.leader_id = value.leader.clone().filter(|leader| group.members.contains_key(leader));
        if group.leader_id.is_none() {
            group.leader_id = group.members.keys().next().cloned();
        }
        let state = if group.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        group.state = state;
        group.previous_state = state;
        if state == GroupState::Stable && group.protocol_name.is_none() {
            // A record Kafka would not write; keep the invariant that Stable has a protocol.
            group.protocol_name = Some(protocol);
        }
        group.subscribed_topics = group.compute_subscribed_topics();
        group
    }

    /// The earliest deadline of this group, if any.
    fn next_deadline(&self) -> Option<i64> {
        let timers = [self.join_timer.map(|timer| timer.deadline_ms), self.sync_timer.map(|timer| timer.deadline_ms)];
        let members = self.members.values().filter_map(|member| member.heartbeat_deadline_ms);
        let pending = self.pending_members.values().copied();
        timers.into_iter().flatten().chain(members).chain(pending).min()
    }

    fn next_expired(&self, now_ms: i64) -> Option<TimerKey> {
        let mut best: Option<(i64, TimerKey)> = None;
        let mut consider = |deadline_ms: i64, key: TimerKey| {
            if deadline_ms <= now_ms && best.as_ref().is_none_or(|(best_ms, _)| deadline_ms < *best_ms) {
                best = Some((deadline_ms, key));
            }
        };
        if let Some(timer) = self.join_timer {
            consider(timer.deadline_ms, TimerKey::Join);
        }
        if let Some(timer) = self.sync_timer {
            consider(timer.deadline_ms, TimerKey::Sync);
        }
        for member in self.members.values() {
            if let Some(deadline_ms) = member.heartbeat_deadline_ms {
                consider(deadline_ms, TimerKey::Heartbeat(member.member_id.clone()));
            }
        }
        for (member_id, deadline_ms) in &self.pending_members {
            consider(*deadline_ms, TimerKey::PendingMember(member_id.clone()));
        }
        best.map(|(_, key)| key)
    }

    fn fire(&mut self, key: TimerKey, env: &mut Env) {
        match key {
            TimerKey::Join => self.fire_join_timer(env),
            TimerKey::Sync => self.fire_sync_timer(env),
            TimerKey::Heartbeat(member_id) => self.expire_heartbeat(&member_id, env),
            TimerKey::PendingMember(member_id) => {
                tracing::info!(group = %self.group_id, member = %member_id, "pending member did not rejoin in time");
                self.pending_members.shift_remove(&member_id);
                self.complete_join_if_all_joined(env);
            }
        }
    }

    fn fire_join_timer(&mut self, env: &mut Env) {
        let Some(timer) = self.join_timer.take() else { return };
        match timer.kind {
            JoinTimerKind::Initial { delay_ms, remaining_ms } if self.new_member_added && remaining_ms != 0 => {
                // Members keep arriving: wait again, never past the rebalance timeout in total.
                self.new_member_added = false;
                let next_delay_ms = i64::from(env.config.rebalance_delay_initial_ms).min(remaining_ms);
                let next_remaining_ms = (remaining_ms - delay_ms).max(0);
                // From the old deadline, not from `now`: a late tick must not stretch the delay.
                self.join_timer = Some(JoinTimer {
                    deadline_ms: timer.deadline_ms + next_delay_ms,
                    kind: JoinTimerKind::Initial { delay_ms: next_delay_ms, remaining_ms: next_remaining_ms },
                });
            }
            JoinTimerKind::Initial { .. } | JoinTimerKind::Rebalance => {
                if self.state == GroupState::PreparingRebalance {
                    self.new_member_added = false;
                    self.complete_join(env);
                }
            }
        }
    }

    /// Kafka `expirePendingSync`: members of the generation that never sent SyncGroup are removed.
    fn fire_sync_timer(&mut self, env: &mut Env) {
        let Some(timer) = self.sync_timer.take() else { return };
        let in_sync_phase = matches!(self.state, GroupState::CompletingRebalance | GroupState::Stable);
        if timer.generation_id != self.generation_id || !in_sync_phase || self.pending_sync_members.is_empty() {
            return;
        }
        let mut missing: Vec<String> = self.pending_sync_members.iter().cloned().collect();
        missing.sort();
        for member_id in &missing {
            self.remove_member(member_id, env.out);
        }
        self.prepare_rebalance(&format!("removing {missing:?} on pending sync request expiration"), env);
    }

    /// Kafka `onClassicGroupMemberHeartbeatExpiration` with `hasSatisfiedHeartbeat`.
    fn expire_heartbeat(&mut self, member_id: &str, env: &mut Env) {
        let Some(member) = self.members.get_mut(member_id) else { return };
        let parked = member.join_waiter.is_some() || member.sync_waiter.is_some();
        if parked && !member.is_new {
            // A member parked in a rebalance satisfies its heartbeats; the rebalance reschedules it.
            member.heartbeat_deadline_ms = None;
            return;
        }
        tracing::info!(group = %self.group_id, member = %member_id, "member session expired");
        self.remove_member_and_update(member_id, "removing member on heartbeat expiration", env);
    }
}

/// Every classic group of one `__consumer_offsets` partition.
///
/// Lives on the shard that owns that partition; never shared across shards.
#[derive(Debug, Clone)]
pub struct Groups {
    config: ClassicConfig,
    groups: GroupMap,
    loading: bool,
    member_id_seed: u64,
    member_id_count: u64,
}

impl Groups {
    /// A coordinator with nothing to load (a new partition). `member_id_seed` makes the generated
    /// member ids differ between coordinators and runs; the same seed gives the same ids.
    pub fn new(config: ClassicConfig, member_id_seed: u64) -> Self {
        Groups {
            config,
            groups: IndexMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4)),
            loading: false,
            member_id_seed,
            member_id_count: 0,
        }
    }

    /// A coordinator that answers COORDINATOR_LOAD_IN_PROGRESS until [`Groups::finish_loading`].
    pub fn new_loading(config: ClassicConfig, member_id_seed: u64) -> Self {
        Groups { loading: true, ..Groups::new(config, member_id_seed) }
    }

    pub fn config(&self) -> &ClassicConfig {
        &self.config
    }

    pub fn is_loading(&self) -> bool {
        self.loading
    }

    pub fn group(&self, group_id: &str) -> Option<&ClassicGroup> {
        self.groups.get(group_id)
    }

    pub fn groups(&self) -> impl Iterator<Item = &ClassicGroup> {
        self.groups.values()
    }

    pub fn check_invariants(&self) {
        self.groups.values().for_each(ClassicGroup::check_invariants);
    }

    /// Applies one record read back from the log, in log order.
    pub fn replay(&mut self, record: &Record) {
        match record {
            Record::OffsetCommit { group_id, topic, partition, value: Some(value) } => {
                // Offsets without group metadata belong to a "simple" group: Kafka creates it too.
                let group = self.get_or_create(group_id, value.commit_timestamp_ms);
                group.offsets.replay(topic, *partition, Some(value));
            }
            Record::OffsetCommit { group_id, topic, partition, value: None } => {
                // A tombstone never creates a group.
                if let Some(group) = self.groups.get_mut(group_id) {
                    group.offsets.replay(topic, *partition, None);
                }
            }
            Record::GroupMetadata { group_id, value: Some(value) } => {
                let offsets = self.groups.shift_remove(group_id).map(|group| group.offsets).unwrap_or_default();
                self.groups.insert(group_id.clone(), ClassicGroup::from_record(group_id, value, offsets));
            }
            Record::GroupMetadata { group_id, value: None } => {
                self.groups.shift_remove(group_id);
            }
            Record::Unknown { .. } => {}
        }
    }

    /// Ends loading: members start their sessions now (Kafka `onLoaded`).
    pub fn finish_loading(&mut self, now_ms: i64) -> Outcome {
        let mut out = Outcome::default();
        self.loading = false;
        let mut env = Env { config: &self.config, now_ms, out: &mut out };
        for group in self.groups.values_mut() {
            let member_ids: Vec<String> = group.members.keys().cloned().collect();
            for member_id in member_ids {
                group.reschedule_heartbeat(&member_id, now_ms);
            }
            if group.members.len() > env.config.group_size_max {
                // group.max.size was lowered since the group formed.
                group.prepare_rebalance("freshly loaded group is over capacity", &mut env);
            }
        }
        out
    }

    /// The earliest deadline of any group: call [`Groups::tick`] then.
    pub fn next_deadline(&self) -> Option<i64> {
        self.groups.values().filter_map(ClassicGroup::next_deadline).min()
    }

    /// Fires every deadline at or before `now_ms`.
    pub fn tick(&mut self, now_ms: i64) -> Outcome {
        let mut out = Outcome::default();
        if self.loading {
            return out;
        }
        let mut env = Env { config: &self.config, now_ms, out: &mut out };
        for group in self.groups.values_mut() {
            for _ in 0..TIMER_FIRINGS_PER_GROUP_PER_TICK_MAX {
                let Some(key) = group.next_expired(now_ms) else { break };
                group.fire(key, &mut env);
            }
        }
        out
    }

    fn get_or_create(&mut self, group_id: &str, now_ms: i64) -> &mut ClassicGroup {
        self.groups.entry(group_id.to_owned()).or_insert_with(|| ClassicGroup::new(group_id, now_ms))
    }

    /// `prefix + "-" + uuid` (Kafka `ClassicGroup.generateMemberId`), the uuid derived from the seed.
    fn generate_member_id(&mut self, prefix: &str) -> String {
        self.member_id_count += 1;
        let high = splitmix64(self.member_id_seed ^ self.member_id_count.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let low = splitmix64(high ^ self.member_id_count);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&high.to_be_bytes());
        bytes[8..].copy_from_slice(&low.to_be_bytes());
        let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
        format!("{prefix}-{}", uuid.hyphenated())
    }

    // ---------------------------------------------------------------------------------------------
    // JoinGroup

    pub fn join_group(&mut self, ctx: &RequestContext, request: &JoinGroupRequest, now_ms: i64) -> Outcome {
        let mut out = Outcome::default();
        let member_id = request.member_id.as_str();
        let error = if self.loading {
            Some(ResponseError::CoordinatorLoadInProgress)
        } else if request.group_id.is_empty() || !fits_record_string(&request.group_id) {
            Some(ResponseError::InvalidGroupId)
        } else if !join_strings_fit_records(ctx, request) {
            // Kafka would fail to write such a member's record; refuse it before any state changes.
            Some(ResponseError::InvalidRequest)
        } else if request.session_timeout_ms < self.config.session_timeout_ms_min
            || request.session_timeout_ms > self.config.session_timeout_ms_max
        {
            Some(ResponseError::InvalidSessionTimeout)
        } else if !member_id.is_empty() && !self.groups.contains_key(request.group_id.as_str()) {
            Some(ResponseError::UnknownMemberId)
        } else {
            None
        };
        if let Some(error) = error {
            out.reply(ctx.token, Reply::JoinGroup(join_error(ctx.api_version, member_id, error)));
            return out;
        }
        let new_member_id = if member_id.is_empty() {
            let prefix = request.group_instance_id.as_ref().map_or(ctx.client_id.as_str(), StrBytes::as_str);
            Some(self.generate_member_id(prefix))
        } else {
            None
        };
        let group =
            self.groups.entry(request.group_id.to_string()).or_insert_with(|| ClassicGroup::new(&request.group_id, now_ms));
        let mut env = Env { config: &self.config, now_ms, out: &mut out };
        if !accept_joining_member(group, member_id, env.config.group_size_max) {
            // Kafka also drops the member it refuses.
            group.remove_member(member_id, env.out);
            env.out.reply(ctx.token, Reply::JoinGroup(join_error(ctx.api_version, "", ResponseError::GroupMaxSizeReached)));
            return out;
        }
        match new_member_id {
            Some(new_member_id) => join_new_member(group, ctx, request, new_member_id, &mut env),
            None => join_existing_member(group, ctx, request, &mut env),
        }
        out
    }

    // ---------------------------------------------------------------------------------------------
    // SyncGroup

    pub fn sync_group(&mut self, ctx: &RequestContext, request: &SyncGroupRequest, now_ms: i64) -> Outcome {
        let mut out = Outcome::default();
        if let Err(error) = self.try_sync_group(ctx, request, now_ms, &mut out) {
            out.reply(ctx.token, Reply::SyncGroup(sync_error(error)));
        }
        out
    }

    fn try_sync_group(
        &mut self,
        ctx: &RequestContext,
        request: &SyncGroupRequest,
        now_ms: i64,
        out: &mut Outcome,
    ) -> Result<(), ResponseError> {
        let member_id = request.member_id.as_str();
        let group = current_member_group(&mut self.groups, self.loading, request)?;
        if is_protocol_inconsistent(request.protocol_type.as_deref(), group.protocol_type.as_deref())
            || is_protocol_inconsistent(request.protocol_name.as_deref(), group.protocol_name.as_deref())
        {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        let mut env = Env { config: &self.config, now_ms, out };
        match group.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            GroupState::Empty | GroupState::Dead => Err(ResponseError::UnknownMemberId),
            GroupState::Stable => {
                group.pending_sync_members.remove(member_id);
                let member = &group.members[member_id];
                let response = SyncGroupResponse::default()
                    .with_protocol_type(group.protocol_type.clone().map(StrBytes::from_string))
                    .with_protocol_name(group.protocol_name.clone().map(StrBytes::from_string))
                    .with_assignment(member.assignment.clone());
                env.out.reply(ctx.token, Reply::SyncGroup(response));
                Ok(())
            }
            GroupState::CompletingRebalance => {
                let waiter = Waiter { token: ctx.token, api_version: ctx.api_version };
                let member = group.members.get_mut(member_id).expect("validated member");
                if let Some(old) = member.sync_waiter.replace(waiter) {
                    env.out.reply(old.token, Reply::SyncGroup(sync_error(ResponseError::RebalanceInProgress)));
                }
                group.pending_sync_members.remove(member_id);
                if group.is_leader(member_id) {
                    complete_sync_with_leader_assignment(group, request, &mut env);
                }
                Ok(())
            }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Heartbeat

    pub fn heartbeat(&mut self, ctx: &RequestContext, request: &HeartbeatRequest, now_ms: i64) -> Outcome {
        let mut out = Outcome::default();
        let error = self.try_heartbeat(request, now_ms).err();
        let response = HeartbeatResponse::default().with_error_code(error.map_or(0, |error| error.code()));
        out.reply(ctx.token, Reply::Heartbeat(response));
        out
    }

    fn try_heartbeat(&mut self, request: &HeartbeatRequest, now_ms: i64) -> Result<(), ResponseError> {
        let member_id = request.member_id.as_str();
        let group = current_member_group(&mut self.groups, self.loading, request)?;
        match group.state {
            GroupState::Empty | GroupState::Dead => Err(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                group.reschedule_heartbeat(member_id, now_ms);
                Err(ResponseError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                group.reschedule_heartbeat(member_id, now_ms);
                Ok(())
            }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // LeaveGroup

    pub fn leave_group(&mut self, ctx: &RequestContext, request: &LeaveGroupRequest, now_ms: i64) -> Outcome {
        let mut out = Outcome::default();
        // v0-2 name one dynamic member in the top-level member id.
        let identities = if ctx.api_version < 3 {
            vec![MemberIdentity::default().with_member_id(request.member_id.clone())]
        } else {
            request.members.clone()
        };
        let (error, members) = match existing_group(&mut self.groups, self.loading, &request.group_id) {
            // Kafka answers a missing group member by member (GroupCoordinatorService.leaveGroup).
            Err(ResponseError::UnknownMemberId) => (
                None,
                identities.iter().map(|identity| member_response(identity, Some(ResponseError::UnknownMemberId))).collect(),
            ),
            Err(error) => (Some(error), Vec::new()),
            Ok(group) if group.state == GroupState::Dead => (Some(ResponseError::CoordinatorNotAvailable), Vec::new()),
            Ok(group) => {
                let mut env = Env { config: &self.config, now_ms, out: &mut out };
                (None, leave_members(group, &identities, &mut env))
            }
        };
        out.reply(ctx.token, Reply::LeaveGroup(shape_leave_response(ctx.api_version, error, members)));
        out
    }

    // ---------------------------------------------------------------------------------------------
    // OffsetCommit

    pub fn offset_commit(&mut self, ctx: &RequestContext, request: &OffsetCommitRequest, now_ms: i64) -> Outcome {
        let mut out = Outcome::default();
        let response = match self.validate_offset_commit(ctx, request, CommitKind::Plain, now_ms) {
            Err(error) => offset_commit_response(request, |_| Some(error)),
            Ok(group) => {
                let expire_timestamp_ms = (request.retention_time_ms != -1).then(|| now_ms + request.retention_time_ms);
                let chars_max = self.config.offset_metadata_chars_max;
                let group = self.groups.get_mut(group.as_str()).expect("validated group");
                offset_commit_response(request, |(topic, partition)| {
                    if !fits_record_string(topic) {
                        // No such topic can exist (Kafka topic names are at most 249 characters).
                        return Some(ResponseError::UnknownTopicOrPartition);
                    }
                    let metadata = partition.committed_metadata.as_deref().unwrap_or_default();
                    if !fits_record_string(metadata) || metadata_too_large(metadata, chars_max) {
                        return Some(ResponseError::OffsetMetadataTooLarge);
                    }
                    let offset = OffsetAndMetadata {
                        committed_offset: partition.committed_offset,
                        leader_epoch: (partition.committed_leader_epoch >= 0).then_some(partition.committed_leader_epoch),
                        metadata: metadata.to_owned(),
                        commit_timestamp_ms: now_ms,
                        expire_timestamp_ms,
                    };
                    out.records.push(Record::OffsetCommit {
                        group_id: group.group_id.clone(),
                        topic: topic.to_owned(),
                        partition: partition.partition_index,
                        value: Some(offset.to_value()),
                    });
                    group.offsets.commit(topic, partition.partition_index, offset);
                    None
                })
            }
        };
        out.reply(ctx.token, Reply::OffsetCommit(response));
        out
    }

    /// Kafka `OffsetMetadataManager.validateOffsetCommit` + `ClassicGroup.validateOffsetCommit`.
    /// Returns the group id on success (the group exists afterwards).
    pub fn validate_offset_commit(
        &mut self,
        ctx: &RequestContext,
        request: &OffsetCommitRequest,
        kind: CommitKind,
        now_ms: i64,
    ) -> Result<String, ResponseError> {
        if self.loading {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        if request.group_id.is_empty() || !fits_record_string(&request.group_id) {
            return Err(ResponseError::InvalidGroupId);
        }
        let generation_id = request.generation_id_or_member_epoch;
        let group_id = request.group_id.to_string();
        if !self.groups.contains_key(&group_id) {
            if generation_id < 0 {
                // A "simple" group (admin client, or a consumer without group management).
                self.get_or_create(&group_id, now_ms);
            } else if kind == CommitKind::Plain && ctx.api_version >= 9 {
                return Err(ResponseError::GroupIdNotFound);
            } else {
                return Err(ResponseError::IllegalGeneration);
            }
        }
        let group = &self.groups[&group_id];
        let member_id = request.member_id.as_str();
        let group_instance_id = request.group_instance_id.as_deref();
        if group.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation_id < 0 && group.state == GroupState::Empty {
            return Ok(group_id);
        }
        if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            match group_instance_id {
                Some(instance_id) => match group.static_members.get(instance_id) {
                    None => return Err(ResponseError::UnknownMemberId),
                    Some(existing) if existing != member_id => return Err(ResponseError::FencedInstanceId),
                    Some(_) => {}
                },
                None if !group.members.contains_key(member_id) => return Err(ResponseError::UnknownMemberId),
                None => {}
            }
            if generation_id != group.generation_id {
                return Err(ResponseError::IllegalGeneration);
            }
        } else if kind == CommitKind::Plain {
            // Without member id and generation, plain commits are accepted only while the group
            // is Empty; a transactional one is accepted (its producer is fenced by epoch instead).
            return Err(ResponseError::UnknownMemberId);
        }
        if kind == CommitKind::Plain && group.state == GroupState::CompletingRebalance {
            // The member knows the new generation but has no assignment yet. A transactional
            // commit lands with its marker, after the rebalance; Kafka does not refuse it here.
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(group_id)
    }

    /// TxnOffsetCommit's group checks (Kafka `OffsetMetadataManager.validateTransactionalOffsetCommit`),
    /// after the transaction coordinator has checked the producer id and epoch (KIP-890 verify):
    ///
    /// - COORDINATOR_LOAD_IN_PROGRESS while this coordinator loads.
    /// - A KIP-848 consumer group of that id: its member checks ([`ConsumerGroups::validate_offset_commit`]),
    ///   member id and epoch checked only when given (KAFKA-18060); a stale epoch is answered
    ///   ILLEGAL_GENERATION, the fencing error KIP-447 producers handle (see below). The offsets
    ///   then go to the Empty classic group of the same id, checked as a simple commit.
    /// - Otherwise the classic checks of [`Groups::validate_offset_commit`] with
    ///   [`CommitKind::Transactional`]: generation, member id and group instance id (KIP-447
    ///   fencing of zombie producers by group generation), each only when the request carries them.
    ///
    /// A missing group is created as a simple group when the generation is negative, as an
    /// OffsetCommit would: hence `&mut self`. Net/ answers every partition of the request with the
    /// error (`ResponseError::code`).
    ///
    /// Kafka's own `ConsumerGroup.validateMemberEpoch` throws STALE_MEMBER_EPOCH here for a member
    /// of the new protocol. Fjord answers ILLEGAL_GENERATION: the producer's `TxnOffsetCommitHandler`
    /// (TransactionManager) makes UNKNOWN_MEMBER_ID and ILLEGAL_GENERATION an abortable
    /// CommitFailedException and any error it does not list a fatal one.
    pub fn validate_txn_offset_commit(
        &mut self,
        consumer: &ConsumerGroups,
        ctx: &RequestContext,
        request: &TxnOffsetCommitRequest,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        if self.loading {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        let as_commit = if consumer.contains_group(&request.group_id) {
            consumer
                .validate_offset_commit(&request.group_id, &request.member_id, request.generation_id, CommitKind::Transactional)
                .map_err(|error| match error {
                    ResponseError::StaleMemberEpoch => ResponseError::IllegalGeneration,
                    error => error,
                })?;
            // The offsets live in the Empty classic group of the same id.
            OffsetCommitRequest::default().with_group_id(request.group_id.clone()).with_generation_id_or_member_epoch(-1)
        } else {
            OffsetCommitRequest::default()
                .with_group_id(request.group_id.clone())
                .with_generation_id_or_member_epoch(request.generation_id)
                .with_member_id(request.member_id.clone())
                .with_group_instance_id(request.group_instance_id.clone())
        };
        self.validate_offset_commit(ctx, &as_commit, CommitKind::Transactional, now_ms).map(drop)
    }

    // ---------------------------------------------------------------------------------------------
    // OffsetFetch

    pub fn offset_fetch(&mut self, ctx: &RequestContext, request: &OffsetFetchRequest) -> Outcome {
        let mut out = Outcome::default();
        let response = if ctx.api_version >= 8 {
            let groups = request
                .groups
                .iter()
                .map(|wanted| {
                    let topics = wanted.topics.as_ref().map(|topics| {
                        topics.iter().map(|topic| (topic.name.as_str(), topic.partition_indexes.as_slice())).collect::<Vec<_>>()
                    });
                    let (error, fetched) = self.fetch_group_offsets(&wanted.group_id, topics.as_deref());
                    OffsetFetchResponseGroup::default()
                        .with_group_id(wanted.group_id.clone())
                        .with_error_code(error.map_or(0, |error| error.code()))
                        .with_topics(fetched.into_iter().map(fetched_topic_v8).collect())
                })
                .collect();
            OffsetFetchResponse::default().with_groups(groups)
        } else {
            let topics = request.topics.as_ref().map(|topics| {
                topics.iter().map(|topic| (topic.name.as_str(), topic.partition_indexes.as_slice())).collect::<Vec<_>>()
            });
            let (error, fetched) = self.fetch_group_offsets(&request.group_id, topics.as_deref());
            let mut topics: Vec<OffsetFetchResponseTopic> = fetched.into_iter().map(fetched_topic_v0).collect();
            let mut error_code = error.map_or(0, |error| error.code());
            if ctx.api_version < 2 {
                // v0-1 have no top-level error: it goes on every requested partition.
                for topic in &mut topics {
                    for partition in &mut topic.partitions {
                        if partition.error_code == 0 {
                            partition.error_code = error_code;
                        }
                    }
                }
                error_code = 0;
            }
            OffsetFetchResponse::default().with_topics(topics).with_error_code(error_code)
        };
        out.reply(ctx.token, Reply::OffsetFetch(response));
        out
    }

    /// One group's offsets: every committed partition when `topics` is `None`, else the requested
    /// ones (offset -1 when none is committed, as Kafka answers).
    fn fetch_group_offsets(
        &self,
        group_id: &str,
        topics: Option<&[(&str, &[i32])]>,
    ) -> (Option<ResponseError>, Vec<FetchedTopic>) {
        let group_error = if self.loading {
            Some(ResponseError::CoordinatorLoadInProgress)
        } else if group_id.is_empty() {
            Some(ResponseError::InvalidGroupId)
        } else {
            None
        };
        let offsets = self.groups.get(group_id).map(|group| &group.offsets);
        let fetched = match (group_error, topics) {
            (Some(error), Some(topics)) => topics
                .iter()
                .map(|(topic, partitions)| FetchedTopic {
                    name: (*topic).to_owned(),
                    partitions: partitions.iter().map(|&partition| (partition, None, Some(error))).collect(),
                })
                .collect(),
            (Some(_), None) => Vec::new(),
            (None, Some(topics)) => topics
                .iter()
                .map(|(topic, partitions)| FetchedTopic {
                    name: (*topic).to_owned(),
                    partitions: partitions
                        .iter()
                        .map(|&partition| (partition, offsets.and_then(|offsets| offsets.get(topic, partition)).cloned(), None))
                        .collect(),
                })
                .collect(),
            (None, None) => offsets
                .into_iter()
                .flat_map(|offsets| {
                    offsets.topics().map(|topic| FetchedTopic {
                        name: topic.to_owned(),
                        partitions: offsets
                            .partitions(topic)
                            .map(|(partition, offset)| (partition, Some(offset.clone()), None))
                            .collect(),
                    })
                })
                .collect(),
        };
        (group_error, fetched)
    }

    // ---------------------------------------------------------------------------------------------
    // DescribeGroups, ListGroups

    pub fn describe_groups(&mut self, ctx: &RequestContext, request: &DescribeGroupsRequest) -> Outcome {
        let mut out = Outcome::default();
        let groups = request.groups.iter().map(|group_id| self.describe_group(ctx.api_version, group_id)).collect();
        out.reply(ctx.token, Reply::DescribeGroups(DescribeGroupsResponse::default().with_groups(groups)));
        out
    }

    fn describe_group(&self, api_version: i16, group_id: &GroupId) -> DescribedGroup {
        let mut described = DescribedGroup::default().with_group_id(group_id.clone());
        let error = if self.loading {
            Some(ResponseError::CoordinatorLoadInProgress)
        } else if group_id.is_empty() {
            Some(ResponseError::InvalidGroupId)
        } else {
            None
        };
        if let Some(error) = error {
            described.error_code = error.code();
            return described;
        }
        let Some(group) = self.groups.get(group_id.as_str()) else {
            if api_version >= 6 {
                // KIP-1043: v6+ report a missing group instead of a Dead one.
                described.error_code = ResponseError::GroupIdNotFound.code();
                described.error_message = Some(StrBytes::from_string(format!("Group {} not found.", group_id.as_str())));
            } else {
                described.group_state = StrBytes::from_static_str(GroupState::Dead.as_str());
            }
            return described;
        };
        described.group_state = StrBytes::from_static_str(group.state.as_str());
        described.protocol_type = str_bytes(group.protocol_type.as_deref().unwrap_or_default());
        // Kafka shows the protocol and member metadata only for a Stable group.
        let stable_protocol = if group.state == GroupState::Stable { group.protocol_name.as_deref() } else { None };
        described.protocol_data = str_bytes(stable_protocol.unwrap_or_default());
        described.members = group
            .members
            .values()
            .map(|member| {
                DescribedGroupMember::default()
                    .with_member_id(str_bytes(&member.member_id))
                    .with_group_instance_id(member.group_instance_id.as_deref().map(str_bytes))
                    .with_client_id(str_bytes(&member.client_id))
                    .with_client_host(str_bytes(&member.client_host))
                    .with_member_metadata(stable_protocol.map(|protocol| member.metadata(protocol)).unwrap_or_default())
                    .with_member_assignment(if stable_protocol.is_some() { member.assignment.clone() } else { Bytes::new() })
            })
            .collect();
        described
    }

    pub fn list_groups(&mut self, ctx: &RequestContext, request: &ListGroupsRequest) -> Outcome {
        let mut out = Outcome::default();
        let response = if self.loading {
            ListGroupsResponse::default().with_error_code(ResponseError::CoordinatorLoadInProgress.code())
        } else {
            // KIP-518 states and KIP-848 types filters compare case-insensitively.
            let states: Vec<String> = request.states_filter.iter().map(|state| state.to_lowercase()).collect();
            let classic_wanted = request.types_filter.is_empty()
                || request.types_filter.iter().any(|group_type| group_type.eq_ignore_ascii_case("classic"));
            let groups = self
                .groups
                .values()
                .filter(|_| classic_wanted)
                .filter(|group| states.is_empty() || states.contains(&group.state.as_str().to_lowercase()))
                .map(|group| {
                    ListedGroup::default()
                        .with_group_id(GroupId(str_bytes(&group.group_id)))
                        .with_protocol_type(str_bytes(group.protocol_type.as_deref().unwrap_or_default()))
                        .with_group_state(StrBytes::from_static_str(group.state.as_str()))
                        .with_group_type(StrBytes::from_static_str("classic"))
                })
                .collect();
            ListGroupsResponse::default().with_groups(groups)
        };
        out.reply(ctx.token, Reply::ListGroups(response));
        out
    }

    // ---------------------------------------------------------------------------------------------
    // DeleteGroups, OffsetDelete

    pub fn delete_groups(&mut self, ctx: &RequestContext, request: &DeleteGroupsRequest) -> Outcome {
        let mut out = Outcome::default();
        let mut results = Vec::with_capacity(request.groups_names.len());
        for group_id in &request.groups_names {
            let error = self.delete_group(group_id, &mut out.records).err();
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(group_id.clone())
                    .with_error_code(error.map_or(0, |error| error.code())),
            );
        }
        out.reply(ctx.token, Reply::DeleteGroups(DeleteGroupsResponse::default().with_results(results)));
        out
    }

    fn delete_group(&mut self, group_id: &GroupId, records: &mut Vec<Record>) -> Result<(), ResponseError> {
        if self.administered_group(group_id)?.state != GroupState::Empty {
            return Err(ResponseError::NonEmptyGroup);
        }
        let group = self.groups.shift_remove(group_id.as_str()).expect("checked above");
        for (topic, partition, _) in group.offsets.iter() {
            records.push(Record::OffsetCommit {
                group_id: group.group_id.clone(),
                topic: topic.to_owned(),
                partition,
                value: None,
            });
        }
        records.push(Record::GroupMetadata { group_id: group.group_id.clone(), value: None });
        Ok(())
    }

    pub fn offset_delete(&mut self, ctx: &RequestContext, request: &OffsetDeleteRequest) -> Outcome {
        let mut out = Outcome::default();
        let response = match self.validate_offset_delete(&request.group_id) {
            Err(error) => OffsetDeleteResponse::default().with_error_code(error.code()),
            Ok(group) => {
                let topics = request
                    .topics
                    .iter()
                    .map(|topic| {
                        let subscribed = group.is_subscribed_to_topic(&topic.name);
                        let partitions = topic
                            .partitions
                            .iter()
                            .map(|partition| {
                                let index = partition.partition_index;
                                let error = if subscribed {
                                    ResponseError::GroupSubscribedToTopic.code()
                                } else {
                                    if group.offsets.remove(&topic.name, index) {
                                        out.records.push(Record::OffsetCommit {
                                            group_id: group.group_id.clone(),
                                            topic: topic.name.to_string(),
                                            partition: index,
                                            value: None,
                                        });
                                    }
                                    0
                                };
                                OffsetDeleteResponsePartition::default().with_partition_index(index).with_error_code(error)
                            })
                            .collect();
                        OffsetDeleteResponseTopic::default().with_name(topic.name.clone()).with_partitions(partitions)
                    })
                    .collect();
                OffsetDeleteResponse::default().with_topics(topics)
            }
        };
        out.reply(ctx.token, Reply::OffsetDelete(response));
        out
    }

    /// Kafka's `OffsetMetadataManager.onPartitionsDeleted`: the committed offsets of deleted
    /// topics go from every group, each with its tombstone (so a reload does not bring them back).
    pub fn delete_topic_offsets(&mut self, topics: &[String]) -> Outcome {
        let mut out = Outcome::default();
        for group in self.groups.values_mut() {
            let doomed: Vec<(String, i32)> = group
                .offsets
                .iter()
                .filter(|(topic, _, _)| topics.iter().any(|deleted| deleted == topic))
                .map(|(topic, partition, _)| (topic.to_owned(), partition))
                .collect();
            for (topic, partition) in doomed {
                if group.offsets.remove(&topic, partition) {
                    out.records.push(Record::OffsetCommit { group_id: group.group_id.clone(), topic, partition, value: None });
                }
            }
        }
        out
    }

    /// The live group an admin request (DeleteGroups, OffsetDelete) names. Error: the state is
    /// loading, the id is empty, or no live group has it (GROUP_ID_NOT_FOUND).
    fn administered_group(&mut self, group_id: &GroupId) -> Result<&mut ClassicGroup, ResponseError> {
        if self.loading {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        match self.groups.get_mut(group_id.as_str()) {
            Some(group) if group.state != GroupState::Dead => Ok(group),
            _ => Err(ResponseError::GroupIdNotFound),
        }
    }

    /// Kafka `ClassicGroup.validateOffsetDelete`.
    fn validate_offset_delete(&mut self, group_id: &GroupId) -> Result<&mut ClassicGroup, ResponseError> {
        let group = self.administered_group(group_id)?;
        match group.state {
            GroupState::Empty => Ok(group),
            // Only a consumer group tells which topics it uses; any other protocol must be empty.
            _ if group.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE) => Ok(group),
            _ => Err(ResponseError::NonEmptyGroup),
        }
    }
}

// -------------------------------------------------------------------------------------------------
// JoinGroup paths (Kafka GroupMetadataManager.classicGroupJoin*)

type GroupMap = IndexMap<String, ClassicGroup, ahash::RandomState>;

/// The group a SyncGroup, Heartbeat or LeaveGroup names.
fn existing_group<'a>(
    groups: &'a mut GroupMap,
    loading: bool,
    group_id: &GroupId,
) -> Result<&'a mut ClassicGroup, ResponseError> {
    if loading {
        return Err(ResponseError::CoordinatorLoadInProgress);
    }
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    // Kafka: a classic group that does not exist is an unknown member for the group APIs.
    groups.get_mut(group_id.as_str()).ok_or(ResponseError::UnknownMemberId)
}

/// A request only a member of its group's current generation may make.
trait MemberRequest {
    /// The group id, member id, group instance id and generation id it names.
    fn member(&self) -> (&GroupId, &str, Option<&str>, i32);
}

macro_rules! member_requests {
    ($($request:ty),*) => {$(
        impl MemberRequest for $request {
            fn member(&self) -> (&GroupId, &str, Option<&str>, i32) {
                (&self.group_id, &self.member_id, self.group_instance_id.as_deref(), self.generation_id)
            }
        }
    )*};
}

member_requests!(SyncGroupRequest, HeartbeatRequest);

/// The group a SyncGroup or Heartbeat names, which must be live and have the request's member as
/// a member of its current generation.
fn current_member_group<'a>(
    groups: &'a mut GroupMap,
    loading: bool,
    request: &impl MemberRequest,
) -> Result<&'a mut ClassicGroup, ResponseError> {
    let (group_id, member_id, group_instance_id, generation_id) = request.member();
    let group = existing_group(groups, loading, group_id)?;
    if group.state == GroupState::Dead {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    group.validate_existing_member(member_id, group_instance_id)?;
    if generation_id != group.generation_id {
        return Err(ResponseError::IllegalGeneration);
    }
    Ok(group)
}

/// Kafka `acceptJoiningMember`: group.max.size counts members, and during a rebalance only the
/// members that rejoined.
fn accept_joining_member(group: &ClassicGroup, member_id: &str, group_size_max: usize) -> bool {
    match group.state {
        GroupState::Empty | GroupState::Dead => true,
        GroupState::PreparingRebalance => {
            group.members.get(member_id).is_some_and(|member| member.join_waiter.is_some())
                || group.awaiting_join_count() < group_size_max
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            group.members.contains_key(member_id) || group.members.len() < group_size_max
        }
    }
}

fn join_new_member(
    group: &mut ClassicGroup,
    ctx: &RequestContext,
    request: &JoinGroupRequest,
    new_member_id: String,
    env: &mut Env,
) {
    if group.state == GroupState::Dead {
        env.out.reply(ctx.token, Reply::JoinGroup(join_error(ctx.api_version, "", ResponseError::CoordinatorNotAvailable)));
        return;
    }
    if !group.supports_protocols(&request.protocol_type, &request_protocols(request)) {
        env.out.reply(ctx.token, Reply::JoinGroup(join_error(ctx.api_version, "", ResponseError::InconsistentGroupProtocol)));
        return;
    }
    if let Some(instance_id) = request.group_instance_id.as_deref() {
        match group.static_members.get(instance_id).cloned() {
            Some(old_member_id) => update_static_member(group, ctx, request, &old_member_id, new_member_id, env),
            None => add_member_then_rebalance(group, ctx, request, new_member_id, env),
        }
    } else if ctx.api_version >= 4 {
        // KIP-394: hand out the member id first; the member is counted once it rejoins with it.
        let deadline_ms = env.now_ms + i64::from(request.session_timeout_ms);
        group.pending_members.insert(new_member_id.clone(), deadline_ms);
        env.out.reply(ctx.token, Reply::JoinGroup(join_error(ctx.api_version, &new_member_id, ResponseError::MemberIdRequired)));
    } else {
        add_member_then_rebalance(group, ctx, request, new_member_id, env);
    }
}

fn join_existing_member(group: &mut ClassicGroup, ctx: &RequestContext, request: &JoinGroupRequest, env: &mut Env) {
    let member_id = request.member_id.as_str();
    let reply_error = |env: &mut Env, error: ResponseError| {
        env.out.reply(ctx.token, Reply::JoinGroup(join_error(ctx.api_version, member_id, error)));
    };
    if group.state == GroupState::Dead {
        return reply_error(env, ResponseError::CoordinatorNotAvailable);
    }
    let protocols = request_protocols(request);
    if !group.supports_protocols(&request.protocol_type, &protocols) {
        return reply_error(env, ResponseError::InconsistentGroupProtocol);
    }
    if group.pending_members.contains_key(member_id) {
        // Pending ids are only handed to dynamic members (Kafka throws on a static one).
        if request.group_instance_id.is_some() {
            return reply_error(env, ResponseError::UnknownMemberId);
        }
        return add_member_then_rebalance(group, ctx, request, member_id.to_owned(), env);
    }
    if let Err(error) = group.validate_existing_member(member_id, request.group_instance_id.as_deref()) {
        return reply_error(env, error);
    }
    let waiter = Waiter { token: ctx.token, api_version: ctx.api_version };
    let rebalance_timeout_ms = rebalance_timeout_ms(ctx, request);
    let matches = group.members[member_id].matches(&protocols);
    match group.state {
        GroupState::PreparingRebalance => {
            group.update_member(member_id, request, rebalance_timeout_ms, waiter, env.out);
            group.maybe_prepare_rebalance_or_complete_join("member joining during PreparingRebalance", env);
        }
        GroupState::CompletingRebalance if matches => {
            // The member lost its JoinGroup response: answer again for the current generation.
            let members = if group.is_leader(member_id) { group.join_response_members() } else { Vec::new() };
            let response = group.join_success(ctx.api_version, member_id, members, group.leader_id.clone());
            env.out.reply(ctx.token, Reply::JoinGroup(response));
        }
        GroupState::Stable if matches && !group.is_leader(member_id) => {
            // A follower without metadata changes: it may go straight to SyncGroup.
            let response = group.join_success(ctx.api_version, member_id, Vec::new(), group.leader_id.clone());
            env.out.reply(ctx.token, Reply::JoinGroup(response));
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            // Changed metadata, or the leader rejoining (it may have seen topic metadata change).
            group.update_member(member_id, request, rebalance_timeout_ms, waiter, env.out);
            group.maybe_prepare_rebalance_or_complete_join("member rejoined with new metadata or as leader", env);
        }
        GroupState::Empty | GroupState::Dead => reply_error(env, ResponseError::UnknownMemberId),
    }
}

/// Kafka `addMemberThenRebalanceOrCompleteJoin`.
fn add_member_then_rebalance(
    group: &mut ClassicGroup,
    ctx: &RequestContext,
    request: &JoinGroupRequest,
    member_id: String,
    env: &mut Env,
) {
    let member = Member {
        member_id: member_id.clone(),
        group_instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host.clone(),
        rebalance_timeout_ms: rebalance_timeout_ms(ctx, request),
        session_timeout_ms: request.session_timeout_ms,
        protocol_type: request.protocol_type.to_string(),
        protocols: request_protocols(request),
        assignment: Bytes::new(),
        join_waiter: Some(Waiter { token: ctx.token, api_version: ctx.api_version }),
        sync_waiter: None,
        is_new: true,
        // A new member cannot heartbeat while parked; its JoinGroup expires on this timer instead.
        heartbeat_deadline_ms: Some(env.now_ms + i64::from(env.config.new_member_join_timeout_ms)),
    };
    if group.state == GroupState::PreparingRebalance && group.previous_state == GroupState::Empty {
        group.new_member_added = true;
    }
    group.add_member(member);
    group.maybe_prepare_rebalance_or_complete_join(&format!("adding new member {member_id}"), env);
}

/// Kafka `updateStaticMemberThenRebalanceOrCompleteJoin` (KIP-345): a known group.instance.id
/// joined with an empty member id. It takes over the old member id's place, assignment and
/// leadership; the old id is fenced.
fn update_static_member(
    group: &mut ClassicGroup,
    ctx: &RequestContext,
    request: &JoinGroupRequest,
    old_member_id: &str,
    new_member_id: String,
    env: &mut Env,
) {
    let current_leader = group.leader_id.clone();
    replace_static_member(group, old_member_id, &new_member_id, env);
    let waiter = Waiter { token: ctx.token, api_version: ctx.api_version };
    group.update_member(&new_member_id, request, rebalance_timeout_ms(ctx, request), waiter, env.out);
    match group.state {
        GroupState::Stable => {
            if group.select_protocol() != group.protocol_name {
                group.maybe_prepare_rebalance_or_complete_join("static member joined with a change of protocol", env);
                return;
            }
            // No rebalance: persist the new member id, answer with the current generation.
            env.out.records.push(group.metadata_record());
            let member = group.members.get_mut(&new_member_id).expect("replaced member");
            let waiter = member.join_waiter.take().expect("just parked");
            let response = if waiter.api_version >= 9 {
                // KIP-814: the leader gets the members but is told to skip the assignment.
                let is_leader = group.is_leader(&new_member_id);
                let members = if is_leader { group.join_response_members() } else { Vec::new() };
                let mut response = group.join_success(waiter.api_version, &new_member_id, members, group.leader_id.clone());
                response.skip_assignment = is_leader;
                response
            } else {
                // Older clients are shown the previous leader id, so a restarted leader does not
                // recompute an assignment: it syncs and gets its old one back.
                group.join_success(waiter.api_version, &new_member_id, Vec::new(), current_leader)
            };
            env.out.reply(waiter.token, Reply::JoinGroup(response));
        }
        // Its assignment would belong to the next generation: rebalance.
        GroupState::CompletingRebalance => group.prepare_rebalance("static member rejoined during CompletingRebalance", env),
        GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => group.maybe_complete_join_phase(env),
    }
}

/// Kafka `ClassicGroup.replaceStaticMember`.
fn replace_static_member(group: &mut ClassicGroup, old_member_id: &str, new_member_id: &str, env: &mut Env) {
    let Some((index, _, old)) = group.members.shift_remove_full(old_member_id) else { return };
    if let Some(waiter) = old.join_waiter {
        env.out.reply(
            waiter.token,
            Reply::JoinGroup(join_error(waiter.api_version, old_member_id, ResponseError::FencedInstanceId)),
        );
    }
    if let Some(waiter) = old.sync_waiter {
        env.out.reply(waiter.token, Reply::SyncGroup(sync_error(ResponseError::FencedInstanceId)));
    }
    let new = Member {
        member_id: new_member_id.to_owned(),
        join_waiter: None,
        sync_waiter: None,
        is_new: false,
        heartbeat_deadline_ms: Some(env.now_ms + i64::from(old.session_timeout_ms)),
        ..old
    };
    if let Some(instance_id) = &new.group_instance_id {
        group.static_members.insert(instance_id.clone(), new_member_id.to_owned());
    }
    let (new_index, _) = group.members.insert_full(new_member_id.to_owned(), new);
    group.members.move_index(new_index, index);
    if group.is_leader(old_member_id) {
        group.leader_id = Some(new_member_id.to_owned());
    }
    if group.pending_sync_members.remove(old_member_id) {
        group.pending_sync_members.insert(new_member_id.to_owned());
    }
}

// -------------------------------------------------------------------------------------------------
// SyncGroup, LeaveGroup helpers

/// The leader's SyncGroup: persist the assignment and answer every parked follower.
fn complete_sync_with_leader_assignment(group: &mut ClassicGroup, request: &SyncGroupRequest, env: &mut Env) {
    let mut assignments: HashMap<&str, &Bytes> = HashMap::new();
    for assignment in &request.assignments {
        assignments.insert(assignment.member_id.as_str(), &assignment.assignment);
    }
    for member in group.members.values_mut() {
        // Members the leader left out get an empty assignment (Kafka does the same).
        member.assignment = assignments.get(member.member_id.as_str()).map(|bytes| (*bytes).clone()).unwrap_or_default();
    }
    env.out.records.push(group.metadata_record());
    group.propagate_assignment(None, env);
    group.transition(GroupState::Stable, env.now_ms);
    tracing::info!(group = %group.group_id, generation = group.generation_id, "assignment received from leader");
}

/// Kafka `classicGroupLeave`: removes each named member, then rebalances once.
fn leave_members(group: &mut ClassicGroup, identities: &[MemberIdentity], env: &mut Env) -> Vec<MemberResponse> {
    let mut removed_member = false;
    let mut removed_pending = false;
    let mut responses = Vec::with_capacity(identities.len());
    for identity in identities {
        let member_id = identity.member_id.as_str();
        let instance_id = identity.group_instance_id.as_deref();
        let result = if member_id.is_empty() {
            // Administrative removal by group.instance.id alone (KIP-345).
            match instance_id.and_then(|instance_id| group.static_members.get(instance_id).cloned()) {
                Some(current) => {
                    group.remove_member(&current, env.out);
                    removed_member = true;
                    Ok(())
                }
                None => Err(ResponseError::UnknownMemberId),
            }
        } else if group.pending_members.shift_remove(member_id).is_some() {
            removed_pending = true;
            Ok(())
        } else {
            group.validate_existing_member(member_id, instance_id).map(|()| {
                group.remove_member(member_id, env.out);
                removed_member = true;
            })
        };
        responses.push(member_response(identity, result.err()));
    }
    match group.state {
        GroupState::Stable | GroupState::CompletingRebalance if removed_member => {
            group.maybe_prepare_rebalance_or_complete_join("members left the group", env);
        }
        // A pending (KIP-394) member leaving changes nothing outside a join phase.
        GroupState::PreparingRebalance if removed_member || removed_pending => group.complete_join_if_all_joined(env),
        _ => {}
    }
    responses
}

fn member_response(identity: &MemberIdentity, error: Option<ResponseError>) -> MemberResponse {
    MemberResponse::default()
        .with_member_id(identity.member_id.clone())
        .with_group_instance_id(identity.group_instance_id.clone())
        .with_error_code(error.map_or(0, |error| error.code()))
}

/// v0-2 carry no member list: the top-level error is the first member error (Kafka
/// `LeaveGroupResponse` constructor).
fn shape_leave_response(api_version: i16, error: Option<ResponseError>, members: Vec<MemberResponse>) -> LeaveGroupResponse {
    let mut error_code = error.map_or(0, |error| error.code());
    if api_version >= 3 {
        return LeaveGroupResponse::default().with_error_code(error_code).with_members(members);
    }
    if error_code == 0 {
        error_code = members.iter().map(|member| member.error_code).find(|&code| code != 0).unwrap_or(0);
    }
    LeaveGroupResponse::default().with_error_code(error_code)
}

// -------------------------------------------------------------------------------------------------
// Response shaping

/// Whether a string fits the int16 length of the non-flexible record schemas.
fn fits_record_string(s: &str) -> bool {
    s.len() <= STRING_BYTES_MAX
}

/// Every string of a JoinGroup that ends up in a GroupMetadata record, including the member id
/// generated from the client id or instance id (`prefix + "-" + 36-character uuid`).
fn join_strings_fit_records(ctx: &RequestContext, request: &JoinGroupRequest) -> bool {
    const GENERATED_SUFFIX_BYTES: usize = 37;
    let prefix = request.group_instance_id.as_deref().unwrap_or(&ctx.client_id);
    prefix.len() + GENERATED_SUFFIX_BYTES <= STRING_BYTES_MAX
        && fits_record_string(&ctx.client_id)
        && fits_record_string(&ctx.client_host)
        && fits_record_string(&request.member_id)
        && fits_record_string(&request.protocol_type)
        && request.protocols.iter().all(|protocol| fits_record_string(&protocol.name))
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn request_protocols(request: &JoinGroupRequest) -> Vec<(String, Bytes)> {
    request.protocols.iter().map(|protocol| (protocol.name.to_string(), protocol.metadata.clone())).collect()
}

/// JoinGroup v0 has no rebalance timeout: Kafka uses the session timeout.
fn rebalance_timeout_ms(ctx: &RequestContext, request: &JoinGroupRequest) -> i32 {
    if ctx.api_version == 0 {
        request.session_timeout_ms
    } else {
        request.rebalance_timeout_ms
    }
}

fn is_protocol_inconsistent(requested: Option<&str>, group: Option<&str>) -> bool {
    matches!((requested, group), (Some(requested), Some(group)) if requested != group)
}

fn join_error(api_version: i16, member_id: &str, error: ResponseError) -> JoinGroupResponse {
    let response =
        JoinGroupResponse::default().with_error_code(error.code()).with_generation_id(-1).with_member_id(str_bytes(member_id));
    shape_join_response(api_version, response)
}

/// ProtocolName is nullable only from v7 (Kafka's `JoinGroupResponse` sets "" below), and
/// SkipAssignment exists only from v9.
fn shape_join_response(api_version: i16, mut response: JoinGroupResponse) -> JoinGroupResponse {
    if api_version < 7 && response.protocol_name.is_none() {
        response.protocol_name = Some(StrBytes::new());
    }
    if api_version < 9 {
        response.skip_assignment = false;
    }
    response
}

fn sync_error(error: ResponseError) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(error.code())
}

fn offset_commit_response(
    request: &OffsetCommitRequest,
    mut partition_error: impl FnMut(
        (&str, &kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition),
    ) -> Option<ResponseError>,
) -> OffsetCommitResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            OffsetCommitResponseTopic::default().with_name(topic.name.clone()).with_topic_id(topic.topic_id).with_partitions(
                topic
                    .partitions
                    .iter()
                    .map(|partition| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(partition.partition_index)
                            .with_error_code(partition_error((topic.name.as_str(), partition)).map_or(0, |error| error.code()))
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

struct FetchedTopic {
    name: String,
    partitions: Vec<(i32, Option<OffsetAndMetadata>, Option<ResponseError>)>,
}

fn fetched_partition_fields(offset: &Option<OffsetAndMetadata>) -> (i64, i32, Option<StrBytes>) {
    match offset {
        Some(offset) => {
            (offset.committed_offset, offset.leader_epoch.unwrap_or(-1), Some(StrBytes::from_string(offset.metadata.clone())))
        }
        // Kafka: INVALID_OFFSET, no leader epoch, NO_METADATA ("").
        None => (-1, -1, Some(StrBytes::new())),
    }
}

/// OffsetFetch's answer for one topic: the same fields in the per-group-less type (v0–7) and
/// in the per-group one (v8+).
macro_rules! fetched_topic {
    ($name:ident, $topic:ty, $partition:ty) => {
        fn $name(topic: FetchedTopic) -> $topic {
            <$topic>::default().with_name(TopicName(StrBytes::from_string(topic.name))).with_partitions(
                topic
                    .partitions
                    .into_iter()
                    .map(|(partition_index, offset, error)| {
                        let (committed_offset, committed_leader_epoch, metadata) = fetched_partition_fields(&offset);
                        <$partition>::default()
                            .with_partition_index(partition_index)
                            .with_committed_offset(committed_offset)
                            .with_committed_leader_epoch(committed_leader_epoch)
                            .with_metadata(metadata)
                            .with_error_code(error.map_or(0, |error| error.code()))
                    })
                    .collect(),
            )
        }
    };
}

fetched_topic!(fetched_topic_v0, OffsetFetchResponseTopic, OffsetFetchResponsePartition);
fetched_topic!(fetched_topic_v8, OffsetFetchResponseTopics, OffsetFetchResponsePartitions);

/// The topics of a consumer protocol subscription: int16 version, then
/// `ConsumerProtocolSubscription` (Kafka `ConsumerProtocol.deserializeSubscription`, which reads
/// newer versions with the newest schema it knows). `None` when undecodable.
pub fn decode_subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut buf = Bytes::copy_from_slice(metadata);
    if buf.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    if version < 0 {
        return None;
    }
    let _ = bytes::Buf::get_i16(&mut buf);
    let subscription = ConsumerProtocolSubscription::decode(&mut buf, version.min(3)).ok()?;
    Some(subscription.topics.iter().map(|topic| topic.to_string()).collect())
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
