//! KIP-848 consumer group protocol, driven the way clients drive it: simulated consumers send
//! ConsumerGroupHeartbeat, apply the assignments they get back (dropping revoked partitions at
//! once) and report what they own. Every step checks that no partition is held by two members,
//! both as the server sees it and as the clients see it. Time is virtual.

use std::collections::{BTreeMap, BTreeSet};

use fjord_group::assignor::{partition_count, Assignment};
use fjord_group::consumer::{
    ClientInfo, ConsumerGroupConfig, ConsumerGroups, ConsumerRecord, GroupState, MemberState, Outcome, TopicsTable,
};
use fjord_group::offsets::CommitKind;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use proptest::prelude::*;
use uuid::Uuid;

const GROUP: &str = "orders-app";
const REBALANCE_TIMEOUT_MS: i32 = 30_000;

fn topic_a() -> Uuid {
    Uuid::from_u128(0xa)
}

fn topic_b() -> Uuid {
    Uuid::from_u128(0xb)
}

fn topics() -> TopicsTable {
    TopicsTable::default().with_topic("a", topic_a(), 6).with_topic("b", topic_b(), 3)
}

fn string(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// A consumer as the client library keeps it.
#[derive(Debug, Clone)]
struct Client {
    member_id: String,
    epoch: i32,
    owned: Assignment,
    instance_id: Option<String>,
    subscription: Vec<String>,
    assignor: Option<String>,
    rebalance_timeout_ms: i32,
}

impl Client {
    fn new(name: &str) -> Client {
        Client {
            member_id: format!("member-{name}"),
            epoch: 0,
            owned: Assignment::new(),
            instance_id: None,
            subscription: vec!["a".to_string()],
            assignor: None,
            rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
        }
    }

    fn static_member(name: &str, instance_id: &str) -> Client {
        Client { instance_id: Some(instance_id.to_string()), ..Client::new(name) }
    }

    fn request(&self) -> ConsumerGroupHeartbeatRequest {
        let mut request = ConsumerGroupHeartbeatRequest::default();
        request.group_id = GroupId(string(GROUP));
        request.member_id = string(&self.member_id);
        request.member_epoch = self.epoch;
        request.instance_id = self.instance_id.as_deref().map(string);
        request.topic_partitions = Some(
            self.owned
                .iter()
                .map(|(topic_id, partitions)| {
                    let mut topic = TopicPartitions::default();
                    topic.topic_id = *topic_id;
                    topic.partitions = partitions.iter().copied().collect();
                    topic
                })
                .collect(),
        );
        if self.epoch == 0 {
            request.rebalance_timeout_ms = self.rebalance_timeout_ms;
            request.subscribed_topic_names = Some(self.subscription.iter().map(|name| TopicName(string(name))).collect());
            request.server_assignor = self.assignor.as_deref().map(string);
        } else {
            request.rebalance_timeout_ms = -1;
        }
        request
    }

    /// Applies a reply as the Java consumer does: an assignment replaces what it owns (revoked
    /// partitions are dropped before the next heartbeat), a fencing error drops everything.
    fn apply(&mut self, outcome: &Outcome) {
        let reply = &outcome.reply;
        if reply.error_code == ResponseError::FencedMemberEpoch.code()
            || reply.error_code == ResponseError::UnknownMemberId.code()
        {
            self.epoch = 0;
            self.owned.clear();
            return;
        }
        if reply.error_code != 0 {
            return;
        }
        self.member_id = reply.member_id.as_ref().expect("member id in every success").to_string();
        self.epoch = reply.member_epoch;
        if let Some(assignment) = &reply.assignment {
            self.owned = assignment
                .topic_partitions
                .iter()
                .filter(|topic| !topic.partitions.is_empty())
                .map(|topic| (topic.topic_id, topic.partitions.iter().copied().collect()))
                .collect();
        }
    }
}

/// A broker's consumer groups plus the log of every record they emitted.
struct Harness {
    groups: ConsumerGroups,
    log: Vec<ConsumerRecord>,
    now_ms: i64,
    topics: TopicsTable,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_config(ConsumerGroupConfig::default())
    }

    fn with_config(config: ConsumerGroupConfig) -> Harness {
        Harness { groups: ConsumerGroups::new(config).with_member_id_seed(7), log: Vec::new(), now_ms: 1_000, topics: topics() }
    }

    fn send(&mut self, request: &ConsumerGroupHeartbeatRequest) -> Outcome {
        let outcome = self.groups.heartbeat(self.now_ms, request, 1, &self.topics);
        self.log.extend(outcome.records.iter().cloned());
        outcome
    }

    fn heartbeat(&mut self, client: &mut Client) -> Outcome {
        let outcome = self.send(&client.request());
        client.apply(&outcome);
        outcome
    }

    fn tick(&mut self) -> Vec<ConsumerRecord> {
        let records = self.groups.tick(self.now_ms);
        self.log.extend(records.iter().cloned());
        records
    }

    /// Heartbeats every client in turn until the group is Stable and every client owns its
    /// target, checking the exclusivity invariants after every heartbeat.
    fn settle(&mut self, clients: &mut [Client]) {
        for _round in 0..20 {
            for index in 0..clients.len() {
                let outcome = self.heartbeat(&mut clients[index]);
                assert_eq!(outcome.reply.error_code, 0, "{:?}", outcome.reply.error_message);
                self.check_exclusive(clients);
            }
            if self.settled(clients) {
                return;
            }
            self.now_ms += 1_000;
        }
        panic!("group did not settle: {:?}", self.groups.group_summary(GROUP));
    }

    fn settled(&self, clients: &[Client]) -> bool {
        let summary = self.groups.group_summary(GROUP).expect("group exists");
        summary.state == GroupState::Stable
            && clients.iter().all(|client| {
                summary.members.iter().any(|member| {
                    member.member_id == client.member_id && member.assigned == client.owned && client.epoch == summary.group_epoch
                })
            })
    }

    /// No partition is held by two members: not in the server's view (assigned or pending
    /// revocation), not in the clients' view (what they consume from).
    fn check_exclusive(&self, clients: &[Client]) {
        if let Some(summary) = self.groups.group_summary(GROUP) {
            let mut held = BTreeSet::new();
            for member in &summary.members {
                for (topic_id, partitions) in member.assigned.iter().chain(&member.pending_revocation) {
                    for partition in partitions {
                        assert!(held.insert((*topic_id, *partition)), "server gave {topic_id}/{partition} twice: {summary:?}");
                    }
                }
            }
        }
        let mut owned = BTreeSet::new();
        for client in clients {
            for (topic_id, partitions) in &client.owned {
                for partition in partitions {
                    assert!(owned.insert((*topic_id, *partition)), "two clients consume {topic_id}/{partition}: {clients:?}");
                }
            }
        }
    }

    fn replayed(&self) -> ConsumerGroups {
        let mut replayed = ConsumerGroups::new(ConsumerGroupConfig::default());
        for record in &self.log {
            let (key, value) = record.encode();
            let decoded = ConsumerRecord::decode(&key, value.as_deref()).expect("own records decode");
            assert_eq!(&decoded, record);
            replayed.replay(&decoded);
        }
        replayed
    }
}

fn all_partitions(clients: &[Client]) -> BTreeMap<(Uuid, i32), String> {
    let mut all = BTreeMap::new();
    for client in clients {
        for (topic_id, partitions) in &client.owned {
            for partition in partitions {
                assert!(all.insert((*topic_id, *partition), client.member_id.clone()).is_none());
            }
        }
    }
    all
}

fn three_stable_members(harness: &mut Harness) -> Vec<Client> {
    let mut clients = vec![Client::new("1"), Client::new("2"), Client::new("3")];
    harness.settle(&mut clients);
    clients
}

#[test]
fn three_members_share_six_partitions_two_each_exactly_once() {
    let mut harness = Harness::new();
    let clients = three_stable_members(&mut harness);
    for client in &clients {
        assert_eq!(partition_count(&client.owned), 2, "{client:?}");
    }
    let all = all_partitions(&clients);
    assert_eq!(all.keys().copied().collect::<Vec<_>>(), (0..6).map(|p| (topic_a(), p)).collect::<Vec<_>>());
    assert_eq!(harness.groups.state(GROUP), GroupState::Stable);
}

#[test]
fn first_member_gets_everything_then_revokes_before_others_receive() {
    // KIP-848: a partition moves only after its previous owner confirmed the revocation.
    let mut harness = Harness::new();
    let mut first = Client::new("1");
    harness.heartbeat(&mut first);
    assert_eq!(partition_count(&first.owned), 6);
    let mut second = Client::new("2");
    let outcome = harness.heartbeat(&mut second);
    assert_eq!(partition_count(&second.owned), 0, "nothing is free yet");
    assert_eq!(outcome.reply.assignment.map(|a| a.topic_partitions.len()), Some(0));
    assert_eq!(harness.groups.state(GROUP), GroupState::Reconciling);
    // The first member is told to revoke 3 and stays at its epoch until it confirms.
    let epoch_before = first.epoch;
    harness.heartbeat(&mut first);
    assert_eq!(partition_count(&first.owned), 3);
    assert_eq!(first.epoch, epoch_before);
    let summary = harness.groups.group_summary(GROUP).unwrap();
    let member = summary.members.iter().find(|m| m.member_id == first.member_id).unwrap();
    assert_eq!(member.state, MemberState::UnrevokedPartitions);
    // Confirmation (owned partitions reported without the revoked ones) moves it to the new epoch.
    harness.heartbeat(&mut first);
    assert_eq!(first.epoch, summary.group_epoch);
    harness.heartbeat(&mut second);
    assert_eq!(partition_count(&second.owned), 3);
    harness.check_exclusive(&[first, second]);
}

#[test]
fn leaving_member_partitions_move_only_after_it_is_gone() {
    let mut harness = Harness::new();
    let mut clients = three_stable_members(&mut harness);
    let mut leaver = clients.pop().unwrap();
    let leaver_partitions = leaver.owned.clone();
    let epoch_before = harness.groups.group_summary(GROUP).unwrap().group_epoch;

    leaver.epoch = -1;
    let outcome = harness.send(&leaver.request());
    assert_eq!(outcome.reply.error_code, 0);
    assert_eq!(outcome.reply.member_epoch, -1);
    assert!(
        matches!(outcome.records.last(), Some(ConsumerRecord::GroupMetadata { epoch: Some(epoch), .. }) if *epoch == epoch_before + 1)
    );
    let summary = harness.groups.group_summary(GROUP).unwrap();
    assert!(summary.members.iter().all(|member| member.member_id != leaver.member_id));
    assert_eq!(summary.state, GroupState::Assigning);

    harness.settle(&mut clients);
    for client in &clients {
        assert_eq!(partition_count(&client.owned), 3);
    }
    let all = all_partitions(&clients);
    for (topic_id, partitions) in &leaver_partitions {
        for partition in partitions {
            assert!(all.contains_key(&(*topic_id, *partition)));
        }
    }
}

#[test]
fn silent_member_is_removed_by_session_timeout_and_others_take_over() {
    let mut harness = Harness::new();
    let mut clients = three_stable_members(&mut harness);
    let silent = clients.pop().unwrap();
    // The others keep heartbeating; the silent one does not.
    let deadline = harness.groups.next_deadline().expect("members have sessions");
    harness.now_ms = deadline - 1;
    for client in clients.iter_mut() {
        harness.heartbeat(client);
    }
    assert!(harness.tick().is_empty(), "nobody expired yet");
    harness.now_ms = deadline;
    let records = harness.tick();
    assert!(records.contains(&ConsumerRecord::MemberMetadata {
        group_id: GROUP.to_string(),
        member_id: silent.member_id.clone(),
        value: None
    }));
    assert!(harness.groups.group_summary(GROUP).unwrap().members.iter().all(|m| m.member_id != silent.member_id));
    harness.settle(&mut clients);
    assert_eq!(all_partitions(&clients).len(), 6);
    // The removed member's next heartbeat is refused; its client rejoins from scratch.
    let mut silent = silent;
    let outcome = harness.heartbeat(&mut silent);
    assert_eq!(outcome.reply.error_code, ResponseError::UnknownMemberId.code());
}

#[test]
fn member_that_does_not_revoke_within_rebalance_timeout_is_fenced() {
    let mut harness = Harness::new();
    let mut stubborn = Client { rebalance_timeout_ms: 2_000, ..Client::new("1") };
    harness.heartbeat(&mut stubborn);
    let all_six = stubborn.owned.clone();
    let mut second = Client::new("2");
    harness.heartbeat(&mut second);
    // The stubborn client is asked to revoke but keeps reporting every partition.
    harness.heartbeat(&mut stubborn);
    stubborn.owned = all_six;
    harness.now_ms += 1_000;
    harness.heartbeat(&mut stubborn);
    stubborn.owned = harness
        .groups
        .group_summary(GROUP)
        .unwrap()
        .members
        .iter()
        .find(|m| m.member_id == stubborn.member_id)
        .unwrap()
        .assigned
        .clone();
    assert!(harness.tick().is_empty());
    harness.now_ms += 1_000;
    let records = harness.tick();
    assert!(!records.is_empty(), "revocation deadline passed");
    assert!(harness.groups.group_summary(GROUP).unwrap().members.iter().all(|m| m.member_id != stubborn.member_id));
    harness.settle(std::slice::from_mut(&mut second));
    assert_eq!(partition_count(&second.owned), 6);
}

#[test]
fn wrong_epochs_are_fenced_and_previous_epoch_is_accepted_with_a_subset() {
    let mut harness = Harness::new();
    let mut clients = three_stable_members(&mut harness);
    let client = clients[0].clone();

    let mut ahead = client.clone();
    ahead.epoch += 1;
    assert_eq!(harness.send(&ahead.request()).reply.error_code, ResponseError::FencedMemberEpoch.code());

    let mut unknown = client.clone();
    unknown.member_id = "nobody".to_string();
    assert_eq!(harness.send(&unknown.request()).reply.error_code, ResponseError::UnknownMemberId.code());

    // Previous epoch with owned partitions that are a subset of the assignment: the reply that
    // carried the bump was lost, so the member is accepted and told its current epoch.
    let summary = harness.groups.group_summary(GROUP).unwrap();
    let member = summary.members.iter().find(|m| m.member_id == client.member_id).unwrap();
    let mut lagging = client.clone();
    let previous = harness.log.iter().rev().find_map(|record| match record {
        ConsumerRecord::CurrentMemberAssignment { member_id, value: Some(value), .. } if *member_id == client.member_id => {
            Some(value.previous_member_epoch)
        }
        _ => None,
    });
    lagging.epoch = previous.unwrap();
    assert!(lagging.epoch < member.member_epoch);
    let outcome = harness.send(&lagging.request());
    assert_eq!(outcome.reply.error_code, 0);
    assert_eq!(outcome.reply.member_epoch, member.member_epoch);

    // The previous epoch with partitions outside the assignment is fenced; the client rejoins
    // with epoch 0 and gets its partitions back without disturbing the others.
    let mut stale = lagging.clone();
    stale.owned = clients[1].owned.clone();
    let outcome = harness.send(&stale.request());
    assert_eq!(outcome.reply.error_code, ResponseError::FencedMemberEpoch.code());
    stale.apply(&outcome);
    clients[0] = stale;
    harness.settle(&mut clients);
    assert!(clients.iter().all(|c| partition_count(&c.owned) == 2));
}

#[test]
fn static_member_leaves_temporarily_and_rejoins_with_its_partitions() {
    let mut harness = Harness::new();
    let mut clients = vec![Client::static_member("1", "instance-1"), Client::new("2"), Client::new("3")];
    harness.settle(&mut clients);
    let group_epoch = harness.groups.group_summary(GROUP).unwrap().group_epoch;
    let kept = clients[0].clone();

    let mut leaving = clients[0].clone();
    leaving.epoch = -2;
    let outcome = harness.send(&leaving.request());
    assert_eq!(outcome.reply.error_code, 0);
    assert_eq!(outcome.reply.member_epoch, -2);
    // No rebalance: same group epoch, and the others do not receive its partitions.
    assert_eq!(harness.groups.group_summary(GROUP).unwrap().group_epoch, group_epoch);
    for other in &clients[1..] {
        let mut client = other.clone();
        harness.heartbeat(&mut client);
        assert_eq!(client.owned, other.owned);
    }

    // Another process with the same instance id may take over only because the slot is released;
    // while it lives, a third one is refused.
    let mut restarted = Client::static_member("1-restarted", "instance-1");
    let outcome = harness.heartbeat(&mut restarted);
    assert_eq!(outcome.reply.error_code, 0);
    assert_eq!(restarted.owned, kept.owned);
    assert_eq!(restarted.epoch, group_epoch);
    let mut intruder = Client::static_member("1-intruder", "instance-1");
    assert_eq!(harness.heartbeat(&mut intruder).reply.error_code, ResponseError::UnreleasedInstanceId.code());
    // The replaced member id is fenced by instance id.
    let mut old = kept.clone();
    old.epoch = restarted.epoch;
    assert_eq!(harness.send(&old.request()).reply.error_code, ResponseError::FencedInstanceId.code());
    clients[0] = restarted;
    harness.settle(&mut clients);
    assert_eq!(harness.groups.group_summary(GROUP).unwrap().group_epoch, group_epoch);
}

#[test]
fn range_and_uniform_assign_two_topics_differently() {
    let outcome_for = |assignor: &str| {
        let mut harness = Harness::new();
        let mut clients: Vec<Client> = ["1", "2"]
            .iter()
            .map(|name| Client {
                subscription: vec!["a".into(), "b".into()],
                assignor: Some(assignor.to_string()),
                ..Client::new(name)
            })
            .collect();
        harness.settle(&mut clients);
        clients
    };
    let range = outcome_for("range");
    // Range: per topic, member-1 (first by id) gets the first ranges of both topics.
    assert_eq!(range[0].owned[&topic_a()], [0, 1, 2].into());
    assert_eq!(range[0].owned[&topic_b()], [0, 1].into());
    assert_eq!(range[1].owned[&topic_a()], [3, 4, 5].into());
    assert_eq!(range[1].owned[&topic_b()], [2].into());
    let uniform = outcome_for("uniform");
    let counts: Vec<usize> = uniform.iter().map(|c| partition_count(&c.owned)).collect();
    assert!(counts.iter().all(|count| *count == 4 || *count == 5), "{counts:?}");
    assert_eq!(all_partitions(&uniform).len(), 9);
}

#[test]
fn replay_of_emitted_records_rebuilds_an_equal_state_and_members_keep_going() {
    let mut harness = Harness::new();
    let mut clients = vec![Client::static_member("1", "instance-1"), Client::new("2"), Client::new("3")];
    harness.settle(&mut clients);
    let mut leaver = clients.pop().unwrap();
    leaver.epoch = -1;
    harness.send(&leaver.request());
    harness.heartbeat(&mut clients[0]);
    let mut replayed = harness.replayed();
    assert!(replayed == harness.groups, "replayed state differs");

    // After a "restart" the members continue with their epochs.
    replayed.arm_loaded_timers(harness.now_ms);
    assert_eq!(replayed.next_deadline(), Some(harness.now_ms + 45_000));
    harness.groups = replayed;
    harness.settle(&mut clients);
    assert!(harness.replayed() == harness.groups);
    assert_eq!(all_partitions(&clients).len(), 6);
}

#[test]
fn join_validation_errors() {
    let mut harness = Harness::with_config(ConsumerGroupConfig { group_size_max: 1, ..ConsumerGroupConfig::default() });
    let base = Client::new("1").request();
    let expect = |harness: &mut Harness, request: &ConsumerGroupHeartbeatRequest, version: i16, error: ResponseError| {
        let outcome = harness.groups.heartbeat(harness.now_ms, request, version, &harness.topics);
        assert_eq!(outcome.reply.error_code, error.code(), "{:?}", outcome.reply.error_message);
        assert!(outcome.records.is_empty());
    };
    let mut request = base.clone();
    request.rebalance_timeout_ms = -1;
    expect(&mut harness, &request, 1, ResponseError::InvalidRequest);
    let mut request = base.clone();
    request.subscribed_topic_names = None;
    expect(&mut harness, &request, 1, ResponseError::InvalidRequest);
    let mut request = base.clone();
    request.topic_partitions = None;
    expect(&mut harness, &request, 1, ResponseError::InvalidRequest);
    let mut request = base.clone();
    request.member_id = StrBytes::default();
    expect(&mut harness, &request, 1, ResponseError::InvalidRequest);
    let mut request = base.clone();
    request.server_assignor = Some(string("sticky-cooperative"));
    expect(&mut harness, &request, 1, ResponseError::UnsupportedAssignor);
    let mut request = base.clone();
    request.subscribed_topic_regex = Some(string("(unclosed"));
    expect(&mut harness, &request, 1, ResponseError::InvalidRegularExpression);
    let mut request = base.clone();
    request.member_epoch = 5;
    expect(&mut harness, &request, 1, ResponseError::GroupIdNotFound);
    assert!(!harness.groups.contains_group(GROUP), "failed requests create nothing");

    let mut first = Client::new("1");
    assert_eq!(harness.heartbeat(&mut first).reply.error_code, 0);
    expect(&mut harness, &Client::new("2").request(), 1, ResponseError::GroupMaxSizeReached);
}

#[test]
fn version_zero_member_ids_are_generated_by_the_server() {
    let mut harness = Harness::new();
    let mut request = Client::new("1").request();
    request.member_id = StrBytes::default();
    let outcome = harness.groups.heartbeat(harness.now_ms, &request, 0, &harness.topics);
    assert_eq!(outcome.reply.error_code, 0);
    let member_id = outcome.reply.member_id.unwrap().to_string();
    assert!(Uuid::parse_str(&member_id).is_ok(), "{member_id}");
    assert_eq!(outcome.reply.member_epoch, 1);
    assert_eq!(outcome.reply.heartbeat_interval_ms, 5_000);
    let partitions: usize = outcome.reply.assignment.unwrap().topic_partitions.iter().map(|t| t.partitions.len()).sum();
    assert_eq!(partitions, 6);
}

#[test]
fn regex_subscription_resolves_against_cluster_topics() {
    let mut harness = Harness::new();
    harness.topics = TopicsTable::default()
        .with_topic("orders-eu", Uuid::from_u128(1), 2)
        .with_topic("orders-us", Uuid::from_u128(2), 2)
        .with_topic("payments", Uuid::from_u128(3), 2);
    let mut client = Client { subscription: Vec::new(), ..Client::new("1") };
    let mut request = client.request();
    request.subscribed_topic_names = None;
    request.subscribed_topic_regex = Some(string("orders-.*"));
    let outcome = harness.send(&request);
    client.apply(&outcome);
    assert_eq!(client.owned.keys().copied().collect::<Vec<_>>(), vec![Uuid::from_u128(1), Uuid::from_u128(2)]);
    // A new matching topic bumps the group epoch and is assigned at the next heartbeat.
    harness.topics = harness.topics.clone().with_topic("orders-apac", Uuid::from_u128(4), 1);
    harness.heartbeat(&mut client);
    harness.heartbeat(&mut client);
    assert_eq!(partition_count(&client.owned), 5);
}

#[test]
fn partition_count_growth_bumps_the_epoch_and_spreads_new_partitions() {
    let mut harness = Harness::new();
    let mut clients = three_stable_members(&mut harness);
    let epoch = harness.groups.group_summary(GROUP).unwrap().group_epoch;
    harness.topics = harness.topics.clone().with_topic("a", topic_a(), 9);
    harness.heartbeat(&mut clients[0]);
    assert_eq!(harness.groups.group_summary(GROUP).unwrap().group_epoch, epoch + 1);
    harness.settle(&mut clients);
    assert!(clients.iter().all(|c| partition_count(&c.owned) == 3));
}

#[test]
fn offset_commit_validation_follows_member_epochs() {
    let mut harness = Harness::new();
    let clients = three_stable_members(&mut harness);
    let client = &clients[0];
    assert_eq!(harness.groups.validate_offset_commit(GROUP, &client.member_id, client.epoch, CommitKind::Plain), Ok(()));
    assert_eq!(
        harness.groups.validate_offset_commit(GROUP, &client.member_id, client.epoch - 1, CommitKind::Plain),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        harness.groups.validate_offset_commit(GROUP, "nobody", client.epoch, CommitKind::Plain),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(harness.groups.validate_offset_commit(GROUP, "", -1, CommitKind::Plain), Err(ResponseError::UnknownMemberId));
    assert_eq!(harness.groups.validate_offset_commit("other", "", -1, CommitKind::Plain), Err(ResponseError::GroupIdNotFound));
    assert_eq!(harness.groups.validate_offset_fetch(GROUP, &client.member_id, client.epoch), Ok(()));
}

/// KAFKA-18060 / Kafka's ConsumerGroup.validateOffsetCommit(isTransactional = true): a
/// TxnOffsetCommit without member fields (v0–2 cannot carry them) is accepted while the group
/// has members; when it carries them they are checked as for OffsetCommit.
#[test]
fn transactional_commit_checks_member_fields_only_when_given() {
    let mut harness = Harness::new();
    let clients = three_stable_members(&mut harness);
    let client = &clients[0];
    let txn = CommitKind::Transactional;
    assert_eq!(harness.groups.validate_offset_commit(GROUP, "", -1, txn), Ok(()));
    assert_eq!(harness.groups.validate_offset_commit(GROUP, &client.member_id, client.epoch, txn), Ok(()));
    assert_eq!(
        harness.groups.validate_offset_commit(GROUP, &client.member_id, client.epoch - 1, txn),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(harness.groups.validate_offset_commit(GROUP, "nobody", client.epoch, txn), Err(ResponseError::UnknownMemberId));
    assert_eq!(harness.groups.validate_offset_commit(GROUP, "", client.epoch, txn), Err(ResponseError::UnknownMemberId));
}

#[test]
fn describe_reports_members_assignments_and_state() {
    let mut harness = Harness::new();
    let clients = three_stable_members(&mut harness);
    let client = ClientInfo { client_id: "billing".into(), client_host: "/10.0.0.7".into() };
    let outcome = harness.groups.heartbeat_from(harness.now_ms, &clients[0].request(), 1, &client, &harness.topics);
    assert_eq!(outcome.reply.error_code, 0);
    let mut request = ConsumerGroupDescribeRequest::default();
    request.group_ids = vec![GroupId(string(GROUP)), GroupId(string("missing"))];
    let response = harness.groups.describe(&request, &harness.topics);
    let group = &response.groups[0];
    assert_eq!(group.error_code, 0);
    assert_eq!(group.group_state.as_str(), "Stable");
    assert_eq!(group.assignor_name.as_str(), "uniform");
    assert_eq!(group.members.len(), 3);
    for member in &group.members {
        let client = clients.iter().find(|c| c.member_id == member.member_id.as_str()).unwrap();
        assert_eq!(member.member_epoch, client.epoch);
        assert_eq!(member.assignment.topic_partitions[0].topic_name.0.as_str(), "a");
        assert_eq!(member.assignment, member.target_assignment);
        if member.member_id.as_str() == clients[0].member_id {
            assert_eq!((member.client_id.as_str(), member.client_host.as_str()), ("billing", "/10.0.0.7"));
        }
    }
    assert_eq!(response.groups[1].error_code, ResponseError::GroupIdNotFound.code());
}

#[test]
fn empty_group_can_be_deleted_and_its_tombstones_replay_to_nothing() {
    let mut harness = Harness::new();
    let mut client = Client::new("1");
    harness.heartbeat(&mut client);
    assert_eq!(harness.groups.remove_group(GROUP), Err(ResponseError::NonEmptyGroup));
    client.epoch = -1;
    harness.send(&client.request());
    assert!(harness.groups.is_empty_group(GROUP));
    assert_eq!(harness.groups.state(GROUP), GroupState::Empty);
    let records = harness.groups.remove_group(GROUP).unwrap();
    harness.log.extend(records);
    assert_eq!(harness.groups.state(GROUP), GroupState::Dead);
    assert!(harness.replayed() == harness.groups);
    assert!(!harness.replayed().contains_group(GROUP));
}

#[derive(Debug, Clone)]
enum Op {
    Heartbeat(usize),
    Join(usize),
    Leave(usize),
    StaticLeave(usize),
    /// The client heartbeats but forgets to drop revoked partitions (a slow revocation).
    HeartbeatHoldingOn(usize),
    Advance(i64),
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..5).prop_map(Op::Heartbeat),
        2 => (0usize..5).prop_map(Op::Join),
        1 => (0usize..5).prop_map(Op::Leave),
        1 => (0usize..5).prop_map(Op::StaticLeave),
        1 => (0usize..5).prop_map(Op::HeartbeatHoldingOn),
        2 => (0i64..40_000).prop_map(Op::Advance),
        2 => Just(Op::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_membership_changes_never_give_a_partition_to_two_members(ops in proptest::collection::vec(op(), 1..120)) {
        let mut harness = Harness::new();
        let mut clients: Vec<Client> = (0..5)
            .map(|index| {
                let mut client = if index % 2 == 0 { Client::static_member(&index.to_string(), &format!("i{index}")) } else { Client::new(&index.to_string()) };
                client.subscription = if index == 4 { vec!["b".into()] } else { vec!["a".into(), "b".into()] };
                client.rebalance_timeout_ms = 10_000;
                client
            })
            .collect();
        let mut active = [false; 5];
        for op in ops {
            match op {
                // A live client rejoining with epoch 0 and its member id: what a fenced v1 client does.
                Op::Join(index) | Op::Heartbeat(index) if !active[index] || matches!(op, Op::Join(_)) => {
                    clients[index].epoch = 0;
                    clients[index].owned.clear();
                    let outcome = harness.heartbeat(&mut clients[index]);
                    active[index] = outcome.reply.error_code == 0;
                }
                Op::Join(_) => unreachable!("handled above"),
                Op::Heartbeat(index) => {
                    let outcome = harness.heartbeat(&mut clients[index]);
                    if outcome.reply.error_code != 0 {
                        active[index] = false;
                        clients[index].owned.clear();
                    }
                }
                Op::HeartbeatHoldingOn(index) if active[index] => {
                    let held = clients[index].owned.clone();
                    let outcome = harness.heartbeat(&mut clients[index]);
                    if outcome.reply.error_code != 0 {
                        active[index] = false;
                        clients[index].owned.clear();
                    } else {
                        // Still consuming the revoked partitions: report them, keep them.
                        let server = harness.groups.group_summary(GROUP).unwrap();
                        let member = server.members.iter().find(|m| m.member_id == clients[index].member_id).unwrap();
                        let pending: Assignment = member.pending_revocation.clone();
                        for (topic_id, partitions) in pending {
                            for partition in partitions {
                                if held.get(&topic_id).is_some_and(|p| p.contains(&partition)) {
                                    clients[index].owned.entry(topic_id).or_default().insert(partition);
                                }
                            }
                        }
                    }
                }
                Op::HeartbeatHoldingOn(_) => {}
                Op::Leave(index) | Op::StaticLeave(index) if active[index] => {
                    let epoch = if matches!(op, Op::StaticLeave(_)) && clients[index].instance_id.is_some() { -2 } else { -1 };
                    clients[index].epoch = epoch;
                    harness.send(&clients[index].request());
                    clients[index].owned.clear();
                    clients[index].epoch = 0;
                    active[index] = false;
                }
                Op::Leave(_) | Op::StaticLeave(_) => {}
                Op::Advance(ms) => harness.now_ms += ms,
                Op::Tick => {
                    harness.tick();
                    // Clients whose member is gone find out at their next heartbeat; until then
                    // they may still consume: model the broker side only for those.
                    let summary = harness.groups.group_summary(GROUP);
                    for (index, client) in clients.iter_mut().enumerate() {
                        let alive = summary.as_ref().is_some_and(|s| s.members.iter().any(|m| m.member_id == client.member_id));
                        if active[index] && !alive {
                            active[index] = false;
                            client.owned.clear();
                            client.epoch = 0;
                        }
                    }
                }
            }
            harness.check_exclusive(&clients);
        }
        prop_assert!(harness.replayed() == harness.groups);

        // Liveness: static members that left come back, everyone heartbeats, and the group
        // settles with every subscribed partition consumed exactly once.
        if let Some(summary) = harness.groups.group_summary(GROUP) {
            for (index, client) in clients.iter_mut().enumerate() {
                if !active[index] && summary.members.iter().any(|m| m.member_id == client.member_id) {
                    client.epoch = 0;
                    client.owned.clear();
                    active[index] = true;
                }
            }
        }
        let mut live: Vec<Client> = clients.iter().zip(active).filter(|(_, active)| *active).map(|(c, _)| c.clone()).collect();
        if !live.is_empty() {
            harness.settle(&mut live);
            let subscribed: BTreeSet<&str> = live.iter().flat_map(|c| c.subscription.iter().map(String::as_str)).collect();
            let expected = subscribed.iter().map(|name| if *name == "a" { 6 } else { 3 }).sum::<usize>();
            prop_assert_eq!(all_partitions(&live).len(), expected);
        }
    }
}

#[test]
fn replies_carry_the_assignment_only_when_it_changed() {
    let mut harness = Harness::new();
    let mut clients = three_stable_members(&mut harness);
    let outcome = harness.heartbeat(&mut clients[0]);
    assert_eq!(outcome.reply.error_code, 0);
    assert!(outcome.reply.assignment.is_none(), "steady heartbeat: null assignment");
    assert!(outcome.records.is_empty(), "steady heartbeat writes nothing");
    assert_eq!(outcome.reply.member_epoch, clients[0].epoch);
}

#[test]
fn subscription_change_bumps_the_epoch_and_reassigns() {
    let mut harness = Harness::new();
    let mut clients = three_stable_members(&mut harness);
    let epoch = harness.groups.group_summary(GROUP).unwrap().group_epoch;
    // Member 1 adds topic b: only it can take b's partitions.
    let mut request = clients[0].request();
    request.subscribed_topic_names = Some(vec![TopicName(string("a")), TopicName(string("b"))]);
    let outcome = harness.send(&request);
    clients[0].apply(&outcome);
    clients[0].subscription = vec!["a".into(), "b".into()];
    assert_eq!(harness.groups.group_summary(GROUP).unwrap().group_epoch, epoch + 1);
    harness.settle(&mut clients);
    assert_eq!(clients[0].owned.get(&topic_b()).map(BTreeSet::len), Some(3));
    assert_eq!(all_partitions(&clients).len(), 9);
    let counts: Vec<usize> = clients.iter().map(|c| partition_count(&c.owned)).collect();
    assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 3, "{counts:?}");
}
