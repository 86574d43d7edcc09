//! The classic group coordinator driven through its public API, the way the broker shard drives
//! it: requests in, records and replies out, time passed explicitly. Rules cited are Kafka's
//! (GroupMetadataManager, ClassicGroup, OffsetMetadataManager) and KIP-345 / KIP-394 / KIP-814.

mod common;
use common::assert_reply_encodes;

use bytes::{BufMut, Bytes, BytesMut};
use fjord_group::classic::{ClassicConfig, GroupState, Groups, Outcome, Reply, RequestContext, Token};
use fjord_group::offsets::CommitKind;
use fjord_group::records::{self, Record};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;
const GROUP: &str = "g";

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn code(error: ResponseError) -> i16 {
    error.code()
}

/// Consumer protocol metadata: int16 version, then ConsumerProtocolSubscription.
fn subscription(topics: &[&str]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(1);
    ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|topic| s(topic)).collect())
        .encode(&mut buf, 1)
        .unwrap();
    buf.freeze()
}

/// A coordinator plus a clock and a token counter; checks invariants after every call and that
/// every reply encodes at the version of its request.
struct Harness {
    groups: Groups,
    now_ms: i64,
    next_token: Token,
    versions: std::collections::HashMap<Token, i16>,
    answered: std::collections::HashSet<Token>,
    log: Vec<Record>,
}

impl Harness {
    fn new() -> Self {
        Harness::with_config(ClassicConfig::default())
    }

    fn with_config(config: ClassicConfig) -> Self {
        Harness {
            groups: Groups::new(config, 7),
            now_ms: 1_000_000,
            next_token: 0,
            versions: Default::default(),
            answered: Default::default(),
            log: Vec::new(),
        }
    }

    fn ctx(&mut self, api_version: i16, client_id: &str) -> RequestContext {
        self.next_token += 1;
        self.versions.insert(self.next_token, api_version);
        RequestContext {
            token: self.next_token,
            api_version,
            client_id: client_id.to_owned(),
            client_host: "/127.0.0.1".to_owned(),
        }
    }

    fn check(&mut self, out: Outcome) -> Outcome {
        self.groups.check_invariants();
        for (token, reply) in &out.replies {
            assert!(self.answered.insert(*token), "token {token} answered twice");
            let version = self.versions[token];
            assert_reply_encodes(reply, version);
        }
        self.log.extend(out.records.iter().cloned());
        out
    }

    fn advance(&mut self, ms: i64) -> Outcome {
        self.now_ms += ms;
        let out = self.groups.tick(self.now_ms);
        self.check(out)
    }

    /// Advances deadline by deadline until some request is answered.
    fn advance_until_replies(&mut self) -> Outcome {
        for _ in 0..100 {
            let out = self.advance_to_next_deadline();
            if !out.replies.is_empty() {
                return out;
            }
        }
        panic!("nothing answered after 100 deadlines");
    }

    /// Advances to the next deadline and fires it.
    fn advance_to_next_deadline(&mut self) -> Outcome {
        let deadline = self.groups.next_deadline().expect("a deadline");
        self.now_ms = self.now_ms.max(deadline);
        let out = self.groups.tick(self.now_ms);
        self.check(out)
    }

    fn join(
        &mut self,
        version: i16,
        client: &str,
        member_id: &str,
        instance_id: Option<&str>,
        topics: &[&str],
    ) -> (Token, Outcome) {
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_session_timeout_ms(SESSION_MS)
            .with_rebalance_timeout_ms(REBALANCE_MS)
            .with_member_id(s(member_id))
            .with_group_instance_id(instance_id.map(s))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(subscription(topics)),
                JoinGroupRequestProtocol::default().with_name(s("roundrobin")).with_metadata(subscription(topics)),
            ]);
        let ctx = self.ctx(version, client);
        let out = self.groups.join_group(&ctx, &request, self.now_ms);
        (ctx.token, self.check(out))
    }

    fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        assignments: &[(&str, &[u8])],
    ) -> (Token, Outcome) {
        let request = SyncGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id(generation_id)
            .with_member_id(s(member_id))
            .with_group_instance_id(instance_id.map(s))
            .with_protocol_type(Some(s("consumer")))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(member, assignment)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(s(member))
                            .with_assignment(Bytes::copy_from_slice(assignment))
                    })
                    .collect(),
            );
        let ctx = self.ctx(5, "c");
        let out = self.groups.sync_group(&ctx, &request, self.now_ms);
        (ctx.token, self.check(out))
    }

    fn heartbeat(&mut self, group: &str, member_id: &str, instance_id: Option<&str>, generation_id: i32) -> i16 {
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id(generation_id)
            .with_member_id(s(member_id))
            .with_group_instance_id(instance_id.map(s));
        let ctx = self.ctx(4, "c");
        let out = self.groups.heartbeat(&ctx, &request, self.now_ms);
        let out = self.check(out);
        match &out.replies[..] {
            [(token, Reply::Heartbeat(response))] if *token == ctx.token => response.error_code,
            other => panic!("unexpected heartbeat replies {other:?}"),
        }
    }

    fn leave(&mut self, members: &[(&str, Option<&str>)]) -> (LeaveGroupResponse, Outcome) {
        let request = LeaveGroupRequest::default().with_group_id(GroupId(s(GROUP))).with_members(
            members
                .iter()
                .map(|(member_id, instance_id)| {
                    MemberIdentity::default().with_member_id(s(member_id)).with_group_instance_id(instance_id.map(s))
                })
                .collect(),
        );
        let ctx = self.ctx(4, "c");
        let out = self.groups.leave_group(&ctx, &request, self.now_ms);
        let out = self.check(out);
        (leave_reply(&out, ctx.token).clone(), out)
    }

    fn commit(
        &mut self,
        version: i16,
        group: &str,
        generation_id: i32,
        member_id: &str,
        partitions: &[(&str, i32, i64, Option<&str>)],
    ) -> (OffsetCommitResponse, Outcome) {
        let topics = partitions
            .iter()
            .map(|(topic, partition, offset, metadata)| {
                OffsetCommitRequestTopic::default().with_name(TopicName(s(topic))).with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(*partition)
                        .with_committed_offset(*offset)
                        .with_committed_leader_epoch(3)
                        .with_committed_metadata(metadata.map(s)),
                ])
            })
            .collect();
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(generation_id)
            .with_member_id(s(member_id))
            .with_topics(topics);
        let ctx = self.ctx(version, "c");
        let out = self.groups.offset_commit(&ctx, &request, self.now_ms);
        let out = self.check(out);
        let response = match &out.replies[..] {
            [(_, Reply::OffsetCommit(response))] => response.clone(),
            other => panic!("unexpected commit replies {other:?}"),
        };
        (response, out)
    }

    fn fetch_v7(&mut self, group: &str, topics: Option<&[(&str, &[i32])]>) -> OffsetFetchResponse {
        let request = OffsetFetchRequest::default().with_group_id(GroupId(s(group))).with_topics(topics.map(|topics| {
            topics
                .iter()
                .map(|(topic, partitions)| {
                    OffsetFetchRequestTopic::default().with_name(TopicName(s(topic))).with_partition_indexes(partitions.to_vec())
                })
                .collect()
        }));
        let ctx = self.ctx(7, "c");
        let out = self.groups.offset_fetch(&ctx, &request);
        match &self.check(out).replies[..] {
            [(_, Reply::OffsetFetch(response))] => response.clone(),
            other => panic!("unexpected fetch replies {other:?}"),
        }
    }

    fn delete_groups(&mut self, group_ids: &[&str]) -> (Vec<i16>, Outcome) {
        let request = DeleteGroupsRequest::default().with_groups_names(group_ids.iter().map(|id| GroupId(s(id))).collect());
        let ctx = self.ctx(2, "c");
        let out = self.groups.delete_groups(&ctx, &request);
        let out = self.check(out);
        let codes = match &out.replies[..] {
            [(_, Reply::DeleteGroups(response))] => response.results.iter().map(|result| result.error_code).collect(),
            other => panic!("unexpected delete replies {other:?}"),
        };
        (codes, out)
    }

    fn offset_delete(&mut self, topics: &[(&str, &[i32])]) -> (OffsetDeleteResponse, Outcome) {
        let request = OffsetDeleteRequest::default().with_group_id(GroupId(s(GROUP))).with_topics(
            topics
                .iter()
                .map(|(topic, partitions)| {
                    OffsetDeleteRequestTopic::default().with_name(TopicName(s(topic))).with_partitions(
                        partitions.iter().map(|p| OffsetDeleteRequestPartition::default().with_partition_index(*p)).collect(),
                    )
                })
                .collect(),
        );
        let ctx = self.ctx(0, "c");
        let out = self.groups.offset_delete(&ctx, &request);
        let out = self.check(out);
        let response = match &out.replies[..] {
            [(_, Reply::OffsetDelete(response))] => response.clone(),
            other => panic!("unexpected offset delete replies {other:?}"),
        };
        (response, out)
    }

    fn state(&self) -> GroupState {
        self.groups.group(GROUP).expect("group exists").state()
    }

    fn generation(&self) -> i32 {
        self.groups.group(GROUP).expect("group exists").generation_id()
    }
}

/// The reply to `token` in `out` that `pick` takes out of its [`Reply`] (`None`: another kind);
/// panics, naming `kind`, if `out` has none.
fn reply_to<'a, T>(out: &'a Outcome, token: Token, kind: &str, pick: impl Fn(&'a Reply) -> Option<&'a T>) -> &'a T {
    out.replies
        .iter()
        .filter(|(t, _)| *t == token)
        .find_map(|(_, reply)| pick(reply))
        .unwrap_or_else(|| panic!("no {kind} reply for token {token} in {out:?}"))
}

fn join_reply(out: &Outcome, token: Token) -> &JoinGroupResponse {
    reply_to(out, token, "JoinGroup", |reply| if let Reply::JoinGroup(response) = reply { Some(response) } else { None })
}

fn sync_reply(out: &Outcome, token: Token) -> &SyncGroupResponse {
    reply_to(out, token, "SyncGroup", |reply| if let Reply::SyncGroup(response) = reply { Some(response) } else { None })
}

fn leave_reply(out: &Outcome, token: Token) -> &LeaveGroupResponse {
    reply_to(out, token, "LeaveGroup", |reply| if let Reply::LeaveGroup(response) = reply { Some(response) } else { None })
}

/// KIP-394 round trip for each client, then the initial rebalance delay: returns the member ids in
/// join order (the first is the leader) and the generation.
fn form_group(h: &mut Harness, clients: &[&str], topics: &[&str]) -> (Vec<String>, i32) {
    let mut member_ids = Vec::new();
    let mut tokens = Vec::new();
    for client in clients {
        let (token, out) = h.join(5, client, "", None, topics);
        let response = join_reply(&out, token);
        assert_eq!(response.error_code, code(ResponseError::MemberIdRequired));
        let member_id = response.member_id.to_string();
        assert!(member_id.starts_with(&format!("{client}-")), "{member_id} is client id + uuid");
        let (token, out) = h.join(5, client, &member_id, None, topics);
        assert!(out.replies.is_empty(), "join parks during the initial rebalance delay");
        member_ids.push(member_id);
        tokens.push(token);
    }
    let out = h.advance_until_replies();
    let generation = h.generation();
    for (index, token) in tokens.iter().enumerate() {
        let response = join_reply(&out, *token);
        assert_eq!(response.error_code, 0);
        assert_eq!(response.generation_id, generation);
        assert_eq!(response.leader.as_str(), member_ids[0]);
        assert_eq!(response.protocol_name.as_deref(), Some("range"));
        let expected_members = if index == 0 { clients.len() } else { 0 };
        assert_eq!(response.members.len(), expected_members);
    }
    (member_ids, generation)
}

/// Forms the group and completes SyncGroup: member i gets assignment `[i]`.
fn stable_group(h: &mut Harness, clients: &[&str], topics: &[&str]) -> (Vec<String>, i32) {
    let (ids, generation) = form_group(h, clients, topics);
    let assignments: Vec<(String, Vec<u8>)> = ids.iter().enumerate().map(|(i, id)| (id.clone(), vec![i as u8])).collect();
    let borrowed: Vec<(&str, &[u8])> = assignments.iter().map(|(id, a)| (id.as_str(), a.as_slice())).collect();
    for id in &ids[1..] {
        let (_, out) = h.sync(id, None, generation, &[]);
        assert!(out.replies.is_empty());
    }
    let (_, out) = h.sync(&ids[0], None, generation, &borrowed);
    assert_eq!(out.replies.len(), ids.len());
    assert_eq!(h.state(), GroupState::Stable);
    (ids, generation)
}

/// A Stable group of one static member, client "a" with instance id "ia", which leads
/// generation 1 and assigns itself b"x": its member id.
fn stable_static_member(h: &mut Harness) -> String {
    let (token, _) = h.join(5, "a", "", Some("ia"), &["t"]);
    let out = h.advance_until_replies();
    let member_id = join_reply(&out, token).member_id.to_string();
    h.sync(&member_id, Some("ia"), 1, &[(&member_id, b"x")]);
    member_id
}

#[test]
fn three_members_join_with_kip394_member_ids_and_one_leader() {
    let mut h = Harness::new();
    let (ids, generation) = form_group(&mut h, &["c1", "c2", "c3"], &["t"]);
    assert_eq!(generation, 1);
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    assert_eq!(h.groups.group(GROUP).unwrap().leader_id(), Some(ids[0].as_str()));
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 3);
}

#[test]
fn initial_rebalance_delay_extends_while_members_join_capped_by_rebalance_timeout() {
    let mut h = Harness::new();
    let (token, out) = h.join(5, "c1", "", None, &["t"]);
    let id = join_reply(&out, token).member_id.to_string();
    let start = h.now_ms;
    let (token, _) = h.join(5, "c1", &id, None, &["t"]);
    // Another member every 2 s keeps extending the 3 s delay.
    let mut tokens = vec![token];
    for client in ["c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9", "c10", "c11", "c12", "c13", "c14", "c15", "c16", "c17"] {
        let out = h.advance(2_000);
        if !out.replies.is_empty() {
            break;
        }
        let (token, _) = h.join(3, client, "", None, &["t"]);
        tokens.push(token);
    }
    // Never longer than the rebalance timeout (30 s) plus one delay step in total.
    assert_eq!(h.state(), GroupState::CompletingRebalance, "at {}", h.now_ms - start);
    assert!(h.now_ms - start <= i64::from(REBALANCE_MS) + 3_000);
}

#[test]
fn sync_distributes_the_leaders_assignment_and_persists_it() {
    let mut h = Harness::new();
    let (ids, generation) = form_group(&mut h, &["c1", "c2", "c3"], &["t"]);
    let (t2, out) = h.sync(&ids[1], None, generation, &[]);
    assert!(out.replies.is_empty(), "followers wait for the leader");
    let (t0, out) = h.sync(&ids[0], None, generation, &[(&ids[0], b"A"), (&ids[1], b"B"), (&ids[2], b"C")]);
    assert_eq!(sync_reply(&out, t0).assignment.as_ref(), b"A");
    assert_eq!(sync_reply(&out, t2).assignment.as_ref(), b"B");
    assert!(matches!(&out.records[..], [Record::GroupMetadata { value: Some(value), .. }] if value.members.len() == 3));
    assert_eq!(h.state(), GroupState::Stable);
    // The late follower gets its assignment straight from the Stable group.
    let (t1, out) = h.sync(&ids[2], None, generation, &[]);
    assert_eq!(sync_reply(&out, t1).assignment.as_ref(), b"C");
    assert_eq!(sync_reply(&out, t1).error_code, 0);
}

#[test]
fn sync_errors_follow_kafka() {
    let mut h = Harness::new();
    let (ids, generation) = form_group(&mut h, &["c1", "c2"], &["t"]);
    let (t, out) = h.sync(&ids[1], None, generation + 1, &[]);
    assert_eq!(sync_reply(&out, t).error_code, code(ResponseError::IllegalGeneration));
    let (t, out) = h.sync("nobody", None, generation, &[]);
    assert_eq!(sync_reply(&out, t).error_code, code(ResponseError::UnknownMemberId));
}

#[test]
fn heartbeat_errors_in_each_state() {
    let mut h = Harness::new();
    assert_eq!(h.heartbeat("missing", "m", None, 1), code(ResponseError::UnknownMemberId));
    assert_eq!(h.heartbeat("", "m", None, 1), code(ResponseError::InvalidGroupId));
    let (ids, generation) = form_group(&mut h, &["c1", "c2"], &["t"]);
    // CompletingRebalance: heartbeats are fine.
    assert_eq!(h.heartbeat(GROUP, &ids[1], None, generation), 0);
    assert_eq!(h.heartbeat(GROUP, &ids[1], None, generation - 1), code(ResponseError::IllegalGeneration));
    assert_eq!(h.heartbeat(GROUP, "stranger", None, generation), code(ResponseError::UnknownMemberId));
    let (_, _) = h.sync(&ids[1], None, generation, &[]);
    let (_, _) = h.sync(&ids[0], None, generation, &[(&ids[0], b"a"), (&ids[1], b"b")]);
    assert_eq!(h.state(), GroupState::Stable);
    assert_eq!(h.heartbeat(GROUP, &ids[1], None, generation), 0);
    // A new member joining moves the group to PreparingRebalance.
    let (_, _) = h.join(3, "c3", "", None, &["t"]);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(GROUP, &ids[1], None, generation), code(ResponseError::RebalanceInProgress));
    assert_eq!(h.heartbeat(GROUP, &ids[1], Some("unknown-instance"), generation), code(ResponseError::UnknownMemberId));

    let mut loading = Groups::new_loading(ClassicConfig::default(), 1);
    let ctx = RequestContext { token: 1, api_version: 4, client_id: "c".into(), client_host: "h".into() };
    let request = HeartbeatRequest::default().with_group_id(GroupId(s(GROUP)));
    let out = loading.heartbeat(&ctx, &request, 0);
    assert!(
        matches!(&out.replies[..], [(1, Reply::Heartbeat(r))] if r.error_code == code(ResponseError::CoordinatorLoadInProgress))
    );
}

#[test]
fn session_expiry_removes_the_member_and_the_others_complete_the_rebalance() {
    let mut h = Harness::new();
    let (ids, generation) = stable_group(&mut h, &["c1", "c2", "c3"], &["t"]);
    h.advance(i64::from(SESSION_MS) - 1_000);
    assert_eq!(h.heartbeat(GROUP, &ids[0], None, generation), 0);
    assert_eq!(h.heartbeat(GROUP, &ids[1], None, generation), 0);
    h.advance(2_000);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert!(!h.groups.group(GROUP).unwrap().has_member(&ids[2]));
    assert_eq!(h.heartbeat(GROUP, &ids[1], None, generation), code(ResponseError::RebalanceInProgress));
    let (t1, out) = h.join(5, "c2", &ids[1], None, &["t"]);
    assert!(out.replies.is_empty());
    let (t0, out) = h.join(5, "c1", &ids[0], None, &["t"]);
    // Every known member rejoined: the join phase completes at once (not the initial rebalance).
    assert_eq!(join_reply(&out, t0).generation_id, generation + 1);
    assert_eq!(join_reply(&out, t0).members.len(), 2);
    assert_eq!(join_reply(&out, t1).leader.as_str(), ids[0]);
    assert_eq!(h.state(), GroupState::CompletingRebalance);
}

#[test]
fn rebalance_timeout_drops_the_members_that_did_not_rejoin() {
    let mut h = Harness::new();
    let (ids, generation) = stable_group(&mut h, &["c1", "c2", "c3"], &["t"]);
    // The leader rejoining forces a rebalance (Kafka: the leader may have seen metadata change).
    let (t0, out) = h.join(5, "c1", &ids[0], None, &["t"]);
    assert!(out.replies.is_empty());
    let (t1, _) = h.join(5, "c2", &ids[1], None, &["t"]);
    // c3 keeps heartbeating but never rejoins.
    let mut out = Outcome::default();
    for _ in 0..4 {
        assert_eq!(h.heartbeat(GROUP, &ids[2], None, generation), code(ResponseError::RebalanceInProgress));
        out = h.advance(i64::from(REBALANCE_MS) / 4);
    }
    assert_eq!(join_reply(&out, t0).generation_id, generation + 1);
    assert_eq!(join_reply(&out, t0).members.len(), 2);
    assert_eq!(join_reply(&out, t1).error_code, 0);
    assert!(!h.groups.group(GROUP).unwrap().has_member(&ids[2]));
    assert_eq!(h.heartbeat(GROUP, &ids[2], None, generation), code(ResponseError::UnknownMemberId));
}

#[test]
fn leave_during_completing_rebalance_triggers_a_new_rebalance() {
    let mut h = Harness::new();
    let (ids, generation) = form_group(&mut h, &["c1", "c2", "c3"], &["t"]);
    let (t1, out) = h.sync(&ids[1], None, generation, &[]);
    assert!(out.replies.is_empty());
    let (response, out) = h.leave(&[(&ids[2], None)]);
    assert_eq!(response.error_code, 0);
    assert_eq!(response.members[0].error_code, 0);
    assert_eq!(sync_reply(&out, t1).error_code, code(ResponseError::RebalanceInProgress));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let (_, out) = h.join(5, "c2", &ids[1], None, &["t"]);
    assert!(out.replies.is_empty());
    let (t0, out) = h.join(5, "c1", &ids[0], None, &["t"]);
    assert_eq!(join_reply(&out, t0).generation_id, generation + 1);
    assert_eq!(join_reply(&out, t0).members.len(), 2);
}

#[test]
fn last_member_leaving_empties_the_group_and_persists_it() {
    let mut h = Harness::new();
    let (ids, generation) = stable_group(&mut h, &["c1"], &["t"]);
    let (_, out) = h.leave(&[(&ids[0], None), ("ghost", None)]);
    assert_eq!(h.state(), GroupState::Empty);
    assert_eq!(h.generation(), generation + 1);
    assert!(matches!(&out.records[..], [Record::GroupMetadata { value: Some(value), .. }] if value.members.is_empty()));
    let response = leave_reply(&out, h.next_token);
    assert_eq!(response.members[1].error_code, code(ResponseError::UnknownMemberId));
}

#[test]
fn static_member_restart_keeps_generation_and_assignment_and_fences_the_old_id() {
    let mut h = Harness::new();
    // Static members are given their member id directly (no MEMBER_ID_REQUIRED round trip).
    let (ta, out) = h.join(5, "a", "", Some("ia"), &["t"]);
    assert!(out.replies.is_empty());
    let (tb, _) = h.join(5, "b", "", Some("ib"), &["t"]);
    let out = h.advance_until_replies();
    let a = join_reply(&out, ta).member_id.to_string();
    let b = join_reply(&out, tb).member_id.to_string();
    assert!(a.starts_with("ia-"), "static member ids start with the instance id");
    let generation = h.generation();
    h.sync(&b, Some("ib"), generation, &[]);
    h.sync(&a, Some("ia"), generation, &[(&a, b"for-a"), (&b, b"for-b")]);
    assert_eq!(h.state(), GroupState::Stable);

    // b restarts within its session timeout: a new member id, same generation, no rebalance.
    h.advance(2_000);
    let (t, out) = h.join(5, "b", "", Some("ib"), &["t"]);
    let response = join_reply(&out, t);
    let b2 = response.member_id.to_string();
    assert_ne!(b2, b);
    assert_eq!(response.error_code, 0);
    assert_eq!(response.generation_id, generation);
    assert!(response.members.is_empty());
    assert!(matches!(&out.records[..], [Record::GroupMetadata { .. }]));
    assert_eq!(h.state(), GroupState::Stable);
    let (t, out) = h.sync(&b2, Some("ib"), generation, &[]);
    assert_eq!(sync_reply(&out, t).assignment.as_ref(), b"for-b");
    assert_eq!(h.heartbeat(GROUP, &b, Some("ib"), generation), code(ResponseError::FencedInstanceId));
    assert_eq!(h.heartbeat(GROUP, &b2, Some("ib"), generation), 0);

    // The leader restarting (v5) is shown the previous leader id so it does not reassign.
    let (t, out) = h.join(5, "a", "", Some("ia"), &["t"]);
    let response = join_reply(&out, t);
    let a2 = response.member_id.to_string();
    assert_eq!(response.leader.as_str(), a);
    assert!(response.members.is_empty());
    assert_eq!(h.groups.group(GROUP).unwrap().leader_id(), Some(a2.as_str()));
    let (t, out) = h.sync(&a2, Some("ia"), generation, &[]);
    assert_eq!(sync_reply(&out, t).assignment.as_ref(), b"for-a");

    // v9 (KIP-814): the restarted leader gets the members but skips the assignment.
    let (t, out) = h.join(9, "a", "", Some("ia"), &["t"]);
    let response = join_reply(&out, t);
    assert!(response.skip_assignment);
    assert_eq!(response.leader, response.member_id);
    assert_eq!(response.members.len(), 2);
    assert_eq!(h.generation(), generation);
}

#[test]
fn static_member_rejoining_with_a_changed_protocol_triggers_a_rebalance() {
    let mut h = Harness::new();
    stable_static_member(&mut h);
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_session_timeout_ms(SESSION_MS)
        .with_rebalance_timeout_ms(REBALANCE_MS)
        .with_group_instance_id(Some(s("ia")))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("roundrobin")).with_metadata(subscription(&["t"]))]);
    // "roundrobin" is supported by the only member, so the join is accepted but changes the vote.
    let ctx = h.ctx(5, "a");
    let out = h.groups.join_group(&ctx, &request, h.now_ms);
    let out = h.check(out);
    let response = join_reply(&out, ctx.token);
    assert_eq!(response.generation_id, 2);
    assert_eq!(response.protocol_name.as_deref(), Some("roundrobin"));
}

#[test]
fn static_member_is_removed_by_session_timeout_only_after_it_stops_heartbeating() {
    let mut h = Harness::new();
    let (ta, _) = h.join(5, "a", "", Some("ia"), &["t"]);
    let (tb, _) = h.join(5, "b", "", Some("ib"), &["t"]);
    let out = h.advance_until_replies();
    let a = join_reply(&out, ta).member_id.to_string();
    let b = join_reply(&out, tb).member_id.to_string();
    h.sync(&b, Some("ib"), 1, &[]);
    h.sync(&a, Some("ia"), 1, &[(&a, b"x"), (&b, b"y")]);
    h.advance(i64::from(SESSION_MS) - 1);
    assert_eq!(h.heartbeat(GROUP, &a, Some("ia"), 1), 0);
    h.advance(2);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert!(h.groups.group(GROUP).unwrap().static_member_id("ib").is_none());
}

#[test]
fn join_validation_errors() {
    let mut h = Harness::with_config(ClassicConfig { group_size_max: 1, ..ClassicConfig::default() });
    let (t, out) = h.join(5, "c", "who", None, &["t"]);
    assert_eq!(join_reply(&out, t).error_code, code(ResponseError::UnknownMemberId));
    let request =
        JoinGroupRequest::default().with_group_id(GroupId(s(GROUP))).with_session_timeout_ms(1).with_protocol_type(s("consumer"));
    let ctx = h.ctx(5, "c");
    let out = h.groups.join_group(&ctx, &request, h.now_ms);
    assert_eq!(join_reply(&out, ctx.token).error_code, code(ResponseError::InvalidSessionTimeout));
    // A group id longer than the records' int16 string length is refused up front.
    let request = JoinGroupRequest::default().with_group_id(GroupId(s(&"g".repeat(40_000)))).with_session_timeout_ms(SESSION_MS);
    let ctx = h.ctx(6, "c");
    let out = h.groups.join_group(&ctx, &request, h.now_ms);
    assert_eq!(join_reply(&out, ctx.token).error_code, code(ResponseError::InvalidGroupId));
    let (ids, _) = stable_group(&mut h, &["c1"], &["t"]);
    let (t, out) = h.join(5, "c2", "", None, &["t"]);
    assert_eq!(join_reply(&out, t).error_code, code(ResponseError::GroupMaxSizeReached));
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_member_id(s(&ids[0]))
        .with_session_timeout_ms(SESSION_MS)
        .with_protocol_type(s("connect"))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("range"))]);
    let ctx = h.ctx(5, "c");
    let out = h.groups.join_group(&ctx, &request, h.now_ms);
    assert_eq!(join_reply(&out, ctx.token).error_code, code(ResponseError::InconsistentGroupProtocol));
}

#[test]
fn offset_commit_and_fetch_round_trip_with_metadata() {
    let mut h = Harness::new();
    let (ids, generation) = stable_group(&mut h, &["c1"], &["t"]);
    let (response, out) = h.commit(8, GROUP, generation, &ids[0], &[("t", 0, 42, Some("meta")), ("t", 1, 7, None)]);
    assert!(response.topics.iter().flat_map(|t| &t.partitions).all(|p| p.error_code == 0));
    assert_eq!(out.records.len(), 2);
    let fetched = h.fetch_v7(GROUP, Some(&[("t", &[0, 1, 2])]));
    let partitions = &fetched.topics[0].partitions;
    assert_eq!((partitions[0].committed_offset, partitions[0].metadata.as_deref()), (42, Some("meta")));
    assert_eq!(partitions[0].committed_leader_epoch, 3);
    assert_eq!((partitions[1].committed_offset, partitions[1].metadata.as_deref()), (7, Some("")));
    assert_eq!(partitions[2].committed_offset, -1, "no committed offset");
    // All topics (topics = null).
    let all = h.fetch_v7(GROUP, None);
    assert_eq!(all.topics.len(), 1);
    assert_eq!(all.topics[0].partitions.len(), 2);
    // v8+: several groups in one request.
    let request = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default().with_group_id(GroupId(s(GROUP))).with_topics(Some(vec![
            OffsetFetchRequestTopics::default().with_name(TopicName(s("t"))).with_partition_indexes(vec![0]),
        ])),
        OffsetFetchRequestGroup::default().with_group_id(GroupId(s("other"))).with_topics(None),
    ]);
    let ctx = h.ctx(8, "c");
    let out = h.groups.offset_fetch(&ctx, &request);
    let out = h.check(out);
    let Reply::OffsetFetch(response) = &out.replies[0].1 else { panic!() };
    assert_eq!(response.groups[0].topics[0].partitions[0].committed_offset, 42);
    assert!(response.groups[1].topics.is_empty());
}

#[test]
fn offset_metadata_over_the_limit_fails_only_that_partition() {
    let mut h = Harness::new();
    let long = "x".repeat(4097);
    let (response, out) = h.commit(8, GROUP, -1, "", &[("t", 0, 1, Some(&long)), ("t", 1, 2, Some("ok"))]);
    assert_eq!(response.topics[0].partitions[0].error_code, code(ResponseError::OffsetMetadataTooLarge));
    assert_eq!(response.topics[1].partitions[0].error_code, 0);
    assert_eq!(out.records.len(), 1);
}

#[test]
fn commit_with_a_stale_generation_is_illegal_generation() {
    let mut h = Harness::new();
    let (ids, generation) = stable_group(&mut h, &["c1"], &["t"]);
    let (response, out) = h.commit(8, GROUP, generation - 1, &ids[0], &[("t", 0, 1, None)]);
    assert_eq!(response.topics[0].partitions[0].error_code, code(ResponseError::IllegalGeneration));
    assert!(out.records.is_empty());
    let (response, _) = h.commit(8, GROUP, generation, "stranger", &[("t", 0, 1, None)]);
    assert_eq!(response.topics[0].partitions[0].error_code, code(ResponseError::UnknownMemberId));
}

/// Kafka's ClassicGroup.validateOffsetCommit(isTransactional = true): without member id and
/// generation (TxnOffsetCommit v0–2, or a producer that sends only the group id) a
/// transactional commit is accepted while the group is Stable or rebalancing; with them, they are
/// checked as for OffsetCommit. A plain commit without them is refused (UNKNOWN_MEMBER_ID).
#[test]
fn transactional_commit_checks_member_and_generation_only_when_given() {
    let mut h = Harness::new();
    let (ids, generation) = stable_group(&mut h, &["c1", "c2"], &["t"]);
    let validate = |h: &mut Harness, generation: i32, member_id: &str, kind: CommitKind| {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member_id));
        let ctx = h.ctx(3, "producer");
        h.groups.validate_offset_commit(&ctx, &request, kind, h.now_ms).map(|_| ())
    };
    let txn = CommitKind::Transactional;
    assert_eq!(validate(&mut h, -1, "", txn), Ok(()));
    assert_eq!(validate(&mut h, -1, "", CommitKind::Plain), Err(ResponseError::UnknownMemberId));
    assert_eq!(validate(&mut h, generation, &ids[1], txn), Ok(()));
    assert_eq!(validate(&mut h, generation - 1, &ids[1], txn), Err(ResponseError::IllegalGeneration));
    assert_eq!(validate(&mut h, generation, "stranger", txn), Err(ResponseError::UnknownMemberId));
    assert_eq!(validate(&mut h, generation, "", txn), Err(ResponseError::UnknownMemberId));
    // A missing group with a generation: ILLEGAL_GENERATION whatever the version.
    let request = OffsetCommitRequest::default().with_group_id(GroupId(s("missing"))).with_generation_id_or_member_epoch(1);
    let ctx = h.ctx(9, "producer");
    assert_eq!(h.groups.validate_offset_commit(&ctx, &request, txn, h.now_ms).map(|_| ()), Err(ResponseError::IllegalGeneration));
    // During CompletingRebalance a transactional commit of the new generation is accepted.
    let mut h = Harness::new();
    let (ids, generation) = form_group(&mut h, &["c1", "c2"], &["t"]);
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    assert_eq!(validate(&mut h, generation, &ids[1], txn), Ok(()));
    assert_eq!(validate(&mut h, generation, &ids[1], CommitKind::Plain), Err(ResponseError::RebalanceInProgress));
}

#[test]
fn commit_during_completing_rebalance_is_rebalance_in_progress_but_preparing_is_accepted() {
    let mut h = Harness::new();
    let (ids, generation) = form_group(&mut h, &["c1", "c2"], &["t"]);
    let (response, _) = h.commit(8, GROUP, generation, &ids[1], &[("t", 0, 1, None)]);
    assert_eq!(response.topics[0].partitions[0].error_code, code(ResponseError::RebalanceInProgress));
    h.sync(&ids[1], None, generation, &[]);
    h.sync(&ids[0], None, generation, &[]);
    // Eager consumers commit in onPartitionsRevoked, after the rebalance has started.
    h.join(5, "c1", &ids[0], None, &["t"]);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let (response, _) = h.commit(8, GROUP, generation, &ids[1], &[("t", 0, 5, None)]);
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
}

#[test]
fn simple_commit_is_accepted_only_for_an_empty_or_missing_group() {
    let mut h = Harness::new();
    let (response, _) = h.commit(8, "simple", -1, "", &[("t", 0, 1, None)]);
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
    assert_eq!(h.groups.group("simple").unwrap().state(), GroupState::Empty);
    let (response, _) = h.commit(8, "missing", 3, "m", &[("t", 0, 1, None)]);
    assert_eq!(response.topics[0].partitions[0].error_code, code(ResponseError::IllegalGeneration));
    let (response, _) = h.commit(9, "missing", 3, "m", &[("t", 0, 1, None)]);
    assert_eq!(response.topics[0].partitions[0].error_code, code(ResponseError::GroupIdNotFound));
    stable_group(&mut h, &["c1"], &["t"]);
    let (response, out) = h.commit(8, GROUP, -1, "", &[("t", 0, 1, None)]);
    assert_eq!(response.topics[0].partitions[0].error_code, code(ResponseError::UnknownMemberId));
    assert!(out.records.is_empty());
}

#[test]
fn commit_by_a_fenced_static_member_is_fenced_instance_id() {
    let mut h = Harness::new();
    let a = stable_static_member(&mut h);
    h.join(5, "a", "", Some("ia"), &["t"]);
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_generation_id_or_member_epoch(1)
        .with_member_id(s(&a))
        .with_group_instance_id(Some(s("ia")))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()])]);
    let ctx = h.ctx(8, "a");
    let out = h.groups.offset_commit(&ctx, &request, h.now_ms);
    let Reply::OffsetCommit(response) = &out.replies[0].1 else { panic!() };
    assert_eq!(response.topics[0].partitions[0].error_code, code(ResponseError::FencedInstanceId));
}

#[test]
fn delete_groups_rejects_non_empty_and_missing_groups_and_tombstones_the_rest() {
    let mut h = Harness::new();
    stable_group(&mut h, &["c1"], &["t"]);
    h.commit(8, "simple", -1, "", &[("t", 0, 1, None), ("u", 2, 3, None)]);
    let (codes, out) = h.delete_groups(&[GROUP, "missing", "simple", ""]);
    assert_eq!(
        codes,
        [code(ResponseError::NonEmptyGroup), code(ResponseError::GroupIdNotFound), 0, code(ResponseError::InvalidGroupId)]
    );
    assert_eq!(out.records.len(), 3, "two offset tombstones and a group tombstone");
    assert!(out
        .records
        .iter()
        .all(|record| matches!(record, Record::OffsetCommit { value: None, .. } | Record::GroupMetadata { value: None, .. })));
    assert!(h.groups.group("simple").is_none());
}

#[test]
fn offset_delete_refuses_topics_the_group_is_subscribed_to() {
    let mut h = Harness::new();
    let (ids, generation) = stable_group(&mut h, &["c1"], &["t"]);
    h.commit(8, GROUP, generation, &ids[0], &[("t", 0, 1, None), ("old", 0, 2, None)]);
    let (response, out) = h.offset_delete(&[("t", &[0]), ("old", &[0, 1])]);
    assert_eq!(response.error_code, 0);
    assert_eq!(response.topics[0].partitions[0].error_code, code(ResponseError::GroupSubscribedToTopic));
    assert_eq!(response.topics[1].partitions[0].error_code, 0);
    assert_eq!(response.topics[1].partitions[1].error_code, 0);
    assert!(matches!(&out.records[..], [Record::OffsetCommit { topic, value: None, .. }] if topic == "old"));
    assert!(h.groups.group(GROUP).unwrap().offsets().get("old", 0).is_none());
}

#[test]
fn describe_and_list_groups() {
    let mut h = Harness::new();
    let (ids, _) = stable_group(&mut h, &["c1", "c2"], &["t"]);
    h.commit(8, "simple", -1, "", &[("t", 0, 1, None)]);
    let ctx = h.ctx(5, "c");
    let out = h
        .groups
        .describe_groups(&ctx, &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(GROUP)), GroupId(s("nope"))]));
    let out = h.check(out);
    let Reply::DescribeGroups(response) = &out.replies[0].1 else { panic!() };
    assert_eq!(response.groups[0].group_state.as_str(), "Stable");
    assert_eq!(response.groups[0].protocol_data.as_str(), "range");
    assert_eq!(response.groups[0].members[1].member_id.as_str(), ids[1]);
    assert_eq!(response.groups[0].members[1].member_assignment.as_ref(), [1]);
    assert_eq!(response.groups[1].group_state.as_str(), "Dead");
    let ctx = h.ctx(4, "c");
    let out = h.groups.list_groups(&ctx, &ListGroupsRequest::default().with_states_filter(vec![s("empty")]));
    let out = h.check(out);
    let Reply::ListGroups(response) = &out.replies[0].1 else { panic!() };
    assert_eq!(response.groups.len(), 1);
    assert_eq!(response.groups[0].group_id.as_str(), "simple");
}

#[test]
fn records_round_trip_and_replay_rebuilds_groups_and_offsets() {
    let mut h = Harness::new();
    let (ids, generation) = stable_group(&mut h, &["c1", "c2"], &["t"]);
    h.commit(8, GROUP, generation, &ids[0], &[("t", 0, 10, Some("a")), ("t", 1, 11, None)]);
    h.commit(8, GROUP, generation, &ids[1], &[("t", 0, 12, Some("b"))]);
    h.commit(8, "simple", -1, "", &[("u", 0, 5, None)]);
    h.commit(8, "deleted", -1, "", &[("u", 0, 5, None)]);
    h.delete_groups(&["deleted"]);

    let mut replayed = Groups::new_loading(ClassicConfig::default(), 99);
    for record in &h.log {
        let key = records::encode_key(record);
        let value = records::encode_value(record);
        let decoded = records::decode(&key, value.as_deref()).unwrap();
        assert_eq!(&decoded, record);
        replayed.replay(&decoded);
    }
    let out = replayed.finish_loading(h.now_ms);
    assert!(out.replies.is_empty() && out.records.is_empty());
    replayed.check_invariants();

    let original = h.groups.group(GROUP).unwrap();
    let rebuilt = replayed.group(GROUP).unwrap();
    assert_eq!(rebuilt.state(), GroupState::Stable);
    assert_eq!(rebuilt.generation_id(), original.generation_id());
    assert_eq!(rebuilt.leader_id(), original.leader_id());
    assert_eq!(rebuilt.protocol_name(), original.protocol_name());
    assert_eq!(rebuilt.member_ids().collect::<Vec<_>>(), original.member_ids().collect::<Vec<_>>());
    for id in &ids {
        assert_eq!(rebuilt.member_assignment(id), original.member_assignment(id));
    }
    assert_eq!(rebuilt.offsets(), original.offsets());
    assert_eq!(replayed.group("simple").unwrap().offsets(), h.groups.group("simple").unwrap().offsets());
    assert!(replayed.group("deleted").is_none());

    // Loaded members heartbeat against the rebuilt group, and expire if they do not.
    let mut after = h.now_ms;
    let ctx = RequestContext { token: 1, api_version: 4, client_id: "c".into(), client_host: "h".into() };
    let request =
        HeartbeatRequest::default().with_group_id(GroupId(s(GROUP))).with_generation_id(generation).with_member_id(s(&ids[0]));
    let out = replayed.heartbeat(&ctx, &request, after);
    assert!(matches!(&out.replies[..], [(1, Reply::Heartbeat(r))] if r.error_code == 0));
    after += i64::from(SESSION_MS) + 1;
    replayed.tick(after);
    assert_eq!(replayed.group(GROUP).unwrap().state(), GroupState::Empty);
}

/// A generation loaded at `i32::MAX` (a log from elsewhere; found by the group_records fuzz
/// target) starts again at 1 on the next rebalance instead of overflowing.
#[test]
fn a_loaded_generation_at_i32_max_wraps_to_one() {
    let mut h = Harness::new();
    stable_group(&mut h, &["c1"], &["t"]);
    let mut replayed = Groups::new_loading(ClassicConfig::default(), 99);
    for record in &h.log {
        let mut record = record.clone();
        if let Record::GroupMetadata { value: Some(value), .. } = &mut record {
            value.generation = i32::MAX;
        }
        replayed.replay(&record);
    }
    replayed.finish_loading(h.now_ms);
    assert_eq!(replayed.group(GROUP).unwrap().generation_id(), i32::MAX);
    replayed.tick(h.now_ms + i64::from(SESSION_MS) + 1);
    let group = replayed.group(GROUP).unwrap();
    assert_eq!(group.state(), GroupState::Empty);
    assert_eq!(group.generation_id(), 1);
    replayed.check_invariants();
}

#[test]
fn a_coordinator_that_is_loading_answers_load_in_progress() {
    let mut groups = Groups::new_loading(ClassicConfig::default(), 1);
    let ctx = RequestContext { token: 5, api_version: 5, client_id: "c".into(), client_host: "h".into() };
    let out = groups.join_group(&ctx, &JoinGroupRequest::default().with_group_id(GroupId(s(GROUP))), 0);
    assert!(
        matches!(&out.replies[..], [(5, Reply::JoinGroup(r))] if r.error_code == code(ResponseError::CoordinatorLoadInProgress))
    );
    let out = groups.delete_groups(&ctx, &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(GROUP))]));
    assert!(
        matches!(&out.replies[..], [(5, Reply::DeleteGroups(r))] if r.results[0].error_code == code(ResponseError::CoordinatorLoadInProgress))
    );
}

#[test]
fn leave_group_v0_reports_the_member_error_at_top_level() {
    let mut h = Harness::new();
    stable_group(&mut h, &["c1"], &["t"]);
    let ctx = h.ctx(1, "c");
    let request = LeaveGroupRequest::default().with_group_id(GroupId(s(GROUP))).with_member_id(s("ghost"));
    let out = h.groups.leave_group(&ctx, &request, h.now_ms);
    let out = h.check(out);
    assert_eq!(leave_reply(&out, ctx.token).error_code, code(ResponseError::UnknownMemberId));
}
