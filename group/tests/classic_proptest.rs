//! Random sequences of client operations against the classic coordinator: nothing panics, the
//! group invariants hold after every step, generations never go backwards, every parked request is
//! answered at most once, every reply encodes at its request's version, every record round-trips
//! through its byte encoding, and replaying the log rebuilds the Stable groups and all offsets.

mod common;
use common::assert_reply_encodes;

use std::collections::{HashMap, HashSet};

use bytes::{BufMut, Bytes, BytesMut};
use fjord_group::classic::{ClassicConfig, GroupState, Groups, Outcome, Reply, RequestContext, Token};
use fjord_group::records::{self, Record};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;

const CLIENTS: u8 = 5;
const GROUPS: [&str; 2] = ["g0", "g1"];
const TOPICS: [&str; 2] = ["t0", "t1"];

#[derive(Debug, Clone)]
enum Op {
    Join {
        client: u8,
        group: usize,
        version: i16,
        is_static: bool,
        fresh: bool,
        protocol: u8,
    },
    Sync {
        client: u8,
        group: usize,
    },
    Heartbeat {
        client: u8,
        group: usize,
    },
    Leave {
        client: u8,
        group: usize,
        by_instance: bool,
    },
    Commit {
        client: u8,
        group: usize,
        simple: bool,
        topic: usize,
        partition: i32,
    },
    OffsetDelete {
        group: usize,
        topic: usize,
    },
    Delete {
        group: usize,
    },
    Advance {
        ms: i64,
    },
    /// Every client that knows a member id rejoins with it (what clients do after REBALANCE_IN_PROGRESS).
    JoinAll {
        group: usize,
    },
    /// Every client that knows a member id syncs, the one told it leads last.
    SyncAll {
        group: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS;
    let group = 0..GROUPS.len();
    prop_oneof![
        4 => (client.clone(), group.clone(), prop::sample::select(vec![3i16, 5, 9]), prop::bool::weighted(0.3), prop::bool::weighted(0.1), 0..3u8)
            .prop_map(|(client, group, version, is_static, fresh, protocol)| Op::Join { client, group, version, is_static, fresh, protocol }),
        3 => (client.clone(), group.clone()).prop_map(|(client, group)| Op::Sync { client, group }),
        3 => (client.clone(), group.clone()).prop_map(|(client, group)| Op::Heartbeat { client, group }),
        1 => (client.clone(), group.clone(), prop::bool::weighted(0.2))
            .prop_map(|(client, group, by_instance)| Op::Leave { client, group, by_instance }),
        2 => (client, group.clone(), prop::bool::weighted(0.2), 0..TOPICS.len(), 0..3i32)
            .prop_map(|(client, group, simple, topic, partition)| Op::Commit { client, group, simple, topic, partition }),
        1 => (group.clone(), 0..TOPICS.len()).prop_map(|(group, topic)| Op::OffsetDelete { group, topic }),
        1 => group.prop_map(|group| Op::Delete { group }),
        4 => prop_oneof![3 => 0..4_000i64, 1 => 4_000..40_000i64].prop_map(|ms| Op::Advance { ms }),
        2 => (0..GROUPS.len()).prop_map(|group| Op::JoinAll { group }),
        3 => (0..GROUPS.len()).prop_map(|group| Op::SyncAll { group }),
    ]
}

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn subscription(topics: &[&str]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| s(t)).collect()).encode(&mut buf, 0).unwrap();
    buf.freeze()
}

/// What one client believes about its membership in one group, learned from replies.
#[derive(Debug, Clone, Default)]
struct ClientView {
    member_id: String,
    generation_id: i32,
    /// Members handed to the client when it was told it leads.
    members: Vec<String>,
}

struct Sim {
    groups: Groups,
    now_ms: i64,
    next_token: Token,
    requests: HashMap<Token, (i16, u8, usize)>,
    answered: HashSet<Token>,
    views: HashMap<(u8, usize), ClientView>,
    generations: HashMap<String, i32>,
    log: Vec<Record>,
}

impl Sim {
    fn ctx(&mut self, api_version: i16, client: u8, group: usize) -> RequestContext {
        self.next_token += 1;
        self.requests.insert(self.next_token, (api_version, client, group));
        RequestContext {
            token: self.next_token,
            api_version,
            client_id: format!("client{client}"),
            client_host: "/10.0.0.1".into(),
        }
    }

    fn view(&mut self, client: u8, group: usize) -> ClientView {
        self.views.get(&(client, group)).cloned().unwrap_or_default()
    }

    fn clients_with_member_id(&self, group: usize) -> Vec<u8> {
        (0..CLIENTS).filter(|client| self.views.get(&(*client, group)).is_some_and(|view| !view.member_id.is_empty())).collect()
    }

    fn absorb(&mut self, out: Outcome) {
        for record in &out.records {
            let key = records::encode_key(record);
            let value = records::encode_value(record);
            assert_eq!(&records::decode(&key, value.as_deref()).unwrap(), record);
        }
        self.log.extend(out.records);
        for (token, reply) in out.replies {
            assert!(self.answered.insert(token), "token {token} answered twice");
            let (version, client, group) = self.requests[&token];
            assert_reply_encodes(&reply, version);
            let view = self.views.entry((client, group)).or_default();
            match reply {
                Reply::JoinGroup(response) => {
                    let error = response.error_code;
                    if error == 0 {
                        view.member_id = response.member_id.to_string();
                        view.generation_id = response.generation_id;
                        view.members = response.members.iter().map(|m| m.member_id.to_string()).collect();
                    } else if error == ResponseError::MemberIdRequired.code() {
                        view.member_id = response.member_id.to_string();
                    } else if error == ResponseError::UnknownMemberId.code() || error == ResponseError::FencedInstanceId.code() {
                        *view = ClientView::default();
                    }
                }
                Reply::Heartbeat(response) if response.error_code == ResponseError::UnknownMemberId.code() => {
                    *view = ClientView::default();
                }
                _ => {}
            }
        }
        self.check();
    }

    fn check(&mut self) {
        self.groups.check_invariants();
        let mut seen = HashSet::new();
        for group in self.groups.groups() {
            seen.insert(group.group_id().to_owned());
            let previous = self.generations.insert(group.group_id().to_owned(), group.generation_id());
            assert!(previous.is_none_or(|previous| previous <= group.generation_id()), "generation went back");
            if group.state() == GroupState::Stable {
                let leader = group.leader_id().expect("Stable group has a leader");
                assert!(group.has_member(leader));
            }
        }
        // A deleted group may start over from generation 0.
        self.generations.retain(|group_id, _| seen.contains(group_id));
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Join { client, group, version, is_static, fresh, protocol } => {
                let view = self.view(client, group);
                let member_id = if fresh { String::new() } else { view.member_id };
                let protocols = match protocol {
                    0 => vec!["range", "roundrobin"],
                    1 => vec!["roundrobin"],
                    _ => vec!["range"],
                };
                let topics: &[&str] = if client % 2 == 0 { &["t0"] } else { &["t0", "t1"] };
                let request = JoinGroupRequest::default()
                    .with_group_id(GroupId(s(GROUPS[group])))
                    .with_session_timeout_ms(10_000)
                    .with_rebalance_timeout_ms(20_000)
                    .with_member_id(s(&member_id))
                    .with_group_instance_id(is_static.then(|| s(&format!("instance{client}"))))
                    .with_protocol_type(s("consumer"))
                    .with_protocols(
                        protocols
                            .iter()
                            .map(|name| {
                                JoinGroupRequestProtocol::default().with_name(s(name)).with_metadata(subscription(topics))
                            })
                            .collect(),
                    );
                let ctx = self.ctx(version, client, group);
                let out = self.groups.join_group(&ctx, &request, self.now_ms);
                self.absorb(out);
            }
            Op::Sync { client, group } => {
                let view = self.view(client, group);
                let assignments = view
                    .members
                    .iter()
                    .map(|member| {
                        SyncGroupRequestAssignment::default().with_member_id(s(member)).with_assignment(Bytes::from_static(b"a"))
                    })
                    .collect();
                let request = SyncGroupRequest::default()
                    .with_group_id(GroupId(s(GROUPS[group])))
                    .with_generation_id(view.generation_id)
                    .with_member_id(s(&view.member_id))
                    .with_assignments(assignments);
                let ctx = self.ctx(5, client, group);
                let out = self.groups.sync_group(&ctx, &request, self.now_ms);
                self.absorb(out);
            }
            Op::Heartbeat { client, group } => {
                let view = self.view(client, group);
                let request = HeartbeatRequest::default()
                    .with_group_id(GroupId(s(GROUPS[group])))
                    .with_generation_id(view.generation_id)
                    .with_member_id(s(&view.member_id));
                let ctx = self.ctx(4, client, group);
                let out = self.groups.heartbeat(&ctx, &request, self.now_ms);
                self.absorb(out);
            }
            Op::Leave { client, group, by_instance } => {
                let view = self.view(client, group);
                let identity = if by_instance {
                    MemberIdentity::default().with_group_instance_id(Some(s(&format!("instance{client}"))))
                } else {
                    MemberIdentity::default().with_member_id(s(&view.member_id))
                };
                let request = LeaveGroupRequest::default().with_group_id(GroupId(s(GROUPS[group]))).with_members(vec![identity]);
                let ctx = self.ctx(4, client, group);
                let out = self.groups.leave_group(&ctx, &request, self.now_ms);
                self.absorb(out);
            }
            Op::Commit { client, group, simple, topic, partition } => {
                let view = self.view(client, group);
                let (generation_id, member_id) = if simple { (-1, String::new()) } else { (view.generation_id, view.member_id) };
                let request = OffsetCommitRequest::default()
                    .with_group_id(GroupId(s(GROUPS[group])))
                    .with_generation_id_or_member_epoch(generation_id)
                    .with_member_id(s(&member_id))
                    .with_topics(vec![OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(TOPICS[topic])))
                        .with_partitions(vec![OffsetCommitRequestPartition::default()
                            .with_partition_index(partition)
                            .with_committed_offset(self.now_ms)
                            .with_committed_metadata(Some(s("m")))])]);
                let ctx = self.ctx(8, client, group);
                let out = self.groups.offset_commit(&ctx, &request, self.now_ms);
                self.absorb(out);
            }
            Op::OffsetDelete { group, topic } => {
                let request = OffsetDeleteRequest::default().with_group_id(GroupId(s(GROUPS[group]))).with_topics(vec![
                    OffsetDeleteRequestTopic::default().with_name(TopicName(s(TOPICS[topic]))).with_partitions(
                        (0..3).map(|p| OffsetDeleteRequestPartition::default().with_partition_index(p)).collect(),
                    ),
                ]);
                let ctx = self.ctx(0, 0, group);
                let out = self.groups.offset_delete(&ctx, &request);
                self.absorb(out);
            }
            Op::Delete { group } => {
                let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(GROUPS[group]))]);
                let ctx = self.ctx(2, 0, group);
                let out = self.groups.delete_groups(&ctx, &request);
                self.absorb(out);
            }
            Op::Advance { ms } => {
                self.now_ms += ms;
                let out = self.groups.tick(self.now_ms);
                self.absorb(out);
            }
            Op::JoinAll { group } => {
                for client in self.clients_with_member_id(group) {
                    self.apply(Op::Join { client, group, version: 5, is_static: false, fresh: false, protocol: 0 });
                }
            }
            Op::SyncAll { group } => {
                let mut clients = self.clients_with_member_id(group);
                clients.sort_by_key(|client| !self.view(*client, group).members.is_empty());
                for client in clients {
                    self.apply(Op::Sync { client, group });
                }
            }
        }
    }

    /// Replays the log into a fresh coordinator and compares what the log is meant to hold.
    fn check_replay(&self) {
        let mut replayed = Groups::new_loading(ClassicConfig::default(), 0);
        for record in &self.log {
            replayed.replay(record);
        }
        replayed.finish_loading(self.now_ms);
        replayed.check_invariants();
        for group in replayed.groups() {
            assert!(self.groups.group(group.group_id()).is_some(), "replay resurrected {}", group.group_id());
        }
        for live in self.groups.groups() {
            let rebuilt = replayed.group(live.group_id());
            let offsets = rebuilt.map(|group| group.offsets().clone()).unwrap_or_default();
            assert_eq!(&offsets, live.offsets(), "offsets of {}", live.group_id());
            if live.state() == GroupState::Stable {
                let rebuilt = rebuilt.expect("a Stable group was persisted");
                assert_eq!(rebuilt.generation_id(), live.generation_id());
                assert_eq!(rebuilt.leader_id(), live.leader_id());
                assert_eq!(rebuilt.member_ids().collect::<Vec<_>>(), live.member_ids().collect::<Vec<_>>());
                for member_id in live.member_ids() {
                    assert_eq!(rebuilt.member_assignment(member_id), live.member_assignment(member_id));
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_invariants(ops in prop::collection::vec(op(), 1..80)) {
        let mut sim = Sim {
            groups: Groups::new(ClassicConfig { group_size_max: 4, ..ClassicConfig::default() }, 3),
            now_ms: 0,
            next_token: 0,
            requests: HashMap::new(),
            answered: HashSet::new(),
            views: HashMap::new(),
            generations: HashMap::new(),
            log: Vec::new(),
        };
        for op in ops {
            sim.apply(op);
        }
        sim.check_replay();
        // Let every deadline pass: each parked request is answered once the dust settles.
        for _ in 0..50 {
            sim.apply(Op::Advance { ms: 400_000 });
        }
        let unanswered: Vec<_> = sim.requests.keys().filter(|token| !sim.answered.contains(token)).collect();
        prop_assert!(unanswered.is_empty(), "requests never answered: {:?}", unanswered);
    }
}
