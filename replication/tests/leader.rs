//! The leader side of partition replication (`fjord_replication::leader`): Kafka's answers to
//! follower fetches, the strict high watermark of KIP-966 over durable offsets, ISR shrink and
//! expand, and a seeded world of one leader and two followers that append, fetch, sync, crash
//! (losing what they had not synced) and change the ISR in any order, checked after every step:
//! every offset below the high watermark is durable on at least min.insync.replicas replicas.

use std::collections::{BTreeMap, BTreeSet};

use fjord_engine::epochs::EpochHistory;
use fjord_replication::leader::{
    AcksAll, Durability, FetchAnswer, FollowerFetch, IsrProposal, Leader, LeaderConfig, PartitionState, ReplicaId,
};
use kafka_protocol::error::ResponseError;
use proptest::prelude::*;

const LEADER: ReplicaId = 1;
const FOLLOWERS: [ReplicaId; 2] = [2, 3];
const EPOCH: i32 = 4;
const LAG_MAX_MS: i64 = 10_000;
const START_MS: i64 = 1_000_000;

fn config(durability: Durability) -> LeaderConfig {
    LeaderConfig { min_insync_replicas: 2, replica_lag_time_max_ms: LAG_MAX_MS, durability }
}

fn state(isr: &[ReplicaId], partition_epoch: i32) -> PartitionState {
    PartitionState {
        leader_epoch: EPOCH,
        partition_epoch,
        replicas: vec![LEADER, FOLLOWERS[0], FOLLOWERS[1]],
        isr: isr.iter().copied().collect(),
    }
}

/// Every follower at broker epoch 10.
fn broker_epochs() -> BTreeMap<ReplicaId, i64> {
    FOLLOWERS.iter().map(|&replica| (replica, 10)).collect()
}

/// A leader of an empty log with the whole replica set in its ISR.
fn leader(durability: Durability) -> Leader {
    Leader::new(LEADER, config(durability), state(&[1, 2, 3], 0), broker_epochs(), 0, 0, 0, 0, START_MS)
}

/// This epoch's history: everything written under [`EPOCH`].
fn epochs() -> EpochHistory {
    let mut history = EpochHistory::default();
    history.assign(EPOCH, 0);
    history
}

fn fetch(replica: ReplicaId, fetch_offset: i64, durable_offset: i64) -> FollowerFetch {
    FollowerFetch {
        replica,
        broker_epoch: 10,
        current_leader_epoch: EPOCH,
        fetch_offset,
        last_fetched_epoch: (fetch_offset > 0).then_some(EPOCH),
        durable_offset,
    }
}

#[test]
fn the_high_watermark_is_the_least_durable_offset_of_the_isr() {
    let mut leader = leader(Durability::Synced);
    leader.appended(10);
    leader.synced(10);
    assert_eq!(leader.high_watermark(), 0, "no follower has fetched");
    assert_eq!(leader.follower_fetch(&fetch(2, 10, 6), &epochs(), START_MS), FetchAnswer::Read { from: 10 });
    assert_eq!(leader.high_watermark(), 0, "follower 3 of the ISR holds nothing known");
    leader.follower_fetch(&fetch(3, 10, 8), &epochs(), START_MS);
    assert_eq!(leader.high_watermark(), 6, "follower 2 has synced 6 of its 10");
    assert_eq!(leader.acks_all(5), AcksAll::Done);
    assert_eq!(leader.acks_all(6), AcksAll::Waiting);
    leader.follower_fetch(&fetch(2, 10, 10), &epochs(), START_MS);
    assert_eq!(leader.high_watermark(), 8);
    leader.follower_fetch(&fetch(3, 10, 10), &epochs(), START_MS);
    assert_eq!(leader.high_watermark(), 10, "every ISR member holds 10 durably");
    leader.check_invariants();

    let mut written = self::leader(Durability::Written);
    written.appended(10);
    written.follower_fetch(&fetch(2, 10, 0), &epochs(), START_MS);
    written.follower_fetch(&fetch(3, 7, 0), &epochs(), START_MS);
    assert_eq!(written.high_watermark(), 7, "Kafka's rule: written, not synced, counts");
}

#[test]
fn below_min_insync_replicas_acks_all_is_refused_and_the_high_watermark_stands_still() {
    let mut leader = Leader::new(LEADER, config(Durability::Synced), state(&[1], 3), broker_epochs(), 0, 5, 5, 5, START_MS);
    assert_eq!(leader.admit_acks_all(), Err(ResponseError::NotEnoughReplicas.code()));
    leader.appended(9);
    leader.synced(9);
    assert_eq!(leader.high_watermark(), 5, "KIP-966: no progress with an ISR below min.insync.replicas");
    leader.isr_committed(state(&[1, 2], 4), START_MS);
    assert_eq!(leader.admit_acks_all(), Ok(()));
    leader.follower_fetch(&fetch(2, 9, 9), &epochs(), START_MS);
    assert_eq!(leader.high_watermark(), 9);
}

#[test]
fn fetches_with_another_epoch_a_diverging_log_or_an_offset_out_of_range_are_answered_as_kafka_does() {
    let mut leader = leader(Durability::Synced);
    leader.appended(20);
    let mut history = EpochHistory::default();
    history.assign(2, 0);
    history.assign(EPOCH, 12);
    let stale = FollowerFetch { current_leader_epoch: EPOCH - 1, ..fetch(2, 5, 5) };
    assert_eq!(leader.follower_fetch(&stale, &history, START_MS), FetchAnswer::Error(ResponseError::FencedLeaderEpoch.code()));
    let ahead = FollowerFetch { current_leader_epoch: EPOCH + 1, ..fetch(2, 5, 5) };
    assert_eq!(leader.follower_fetch(&ahead, &history, START_MS), FetchAnswer::Error(ResponseError::UnknownLeaderEpoch.code()));
    // The follower wrote offsets 12..15 under epoch 3, which this leader never had: epoch 2 ends at 12.
    let diverged = FollowerFetch { last_fetched_epoch: Some(3), ..fetch(2, 15, 15) };
    assert_eq!(leader.follower_fetch(&diverged, &history, START_MS), FetchAnswer::Diverging { epoch: 2, end_offset: 12 });
    let agreeing = FollowerFetch { last_fetched_epoch: Some(2), ..fetch(2, 12, 12) };
    assert_eq!(leader.follower_fetch(&agreeing, &history, START_MS), FetchAnswer::Read { from: 12 });
    let beyond = FollowerFetch { last_fetched_epoch: Some(EPOCH), ..fetch(2, 21, 21) };
    assert_eq!(leader.follower_fetch(&beyond, &history, START_MS), FetchAnswer::Diverging { epoch: EPOCH, end_offset: 20 });
    let past_end = FollowerFetch { last_fetched_epoch: None, ..fetch(2, 21, 0) };
    assert_eq!(leader.follower_fetch(&past_end, &history, START_MS), FetchAnswer::Error(ResponseError::OffsetOutOfRange.code()));
    let stranger = fetch(9, 0, 0);
    assert_eq!(
        leader.follower_fetch(&stranger, &history, START_MS),
        FetchAnswer::Error(ResponseError::NotLeaderOrFollower.code())
    );
}

#[test]
fn a_lagging_follower_leaves_the_isr_and_rejoins_once_it_holds_the_high_watermark() {
    let mut leader = leader(Durability::Synced);
    leader.appended(10);
    leader.synced(10);
    leader.follower_fetch(&fetch(2, 10, 10), &epochs(), START_MS);
    leader.follower_fetch(&fetch(3, 0, 0), &epochs(), START_MS);
    assert_eq!(leader.propose_isr_change(START_MS + LAG_MAX_MS), None, "not lagging for longer than the limit yet");
    let later = START_MS + LAG_MAX_MS + 1;
    leader.follower_fetch(&fetch(2, 10, 10), &epochs(), later);
    let shrink = leader.propose_isr_change(later).expect("follower 3 lags");
    assert_eq!(shrink, IsrProposal { partition_epoch: 0, isr: BTreeSet::from([1, 2]) });
    assert_eq!(leader.propose_isr_change(later), None, "one proposal in flight at a time");
    assert_eq!(leader.maximal_isr(), BTreeSet::from([1, 2, 3]), "a removal in flight still counts the replica");
    leader.isr_committed(state(&[1, 2], 1), later);
    assert_eq!(leader.high_watermark(), 10, "without follower 3 the ISR holds 10 durably");

    // Follower 3 has fetched everything but synced only 6: not yet a member.
    leader.follower_fetch(&fetch(3, 10, 6), &epochs(), later);
    assert_eq!(leader.propose_isr_change(later), None, "it does not hold the high watermark durably");
    // A fetch from an earlier incarnation of broker 3 (KIP-903) does not count.
    let old_incarnation = FollowerFetch { broker_epoch: 9, ..fetch(3, 10, 10) };
    leader.follower_fetch(&old_incarnation, &epochs(), later);
    assert_eq!(leader.propose_isr_change(later), None, "a stale broker epoch's fetch moves nothing");
    leader.follower_fetch(&fetch(3, 10, 10), &epochs(), later);
    let expand = leader.propose_isr_change(later).expect("follower 3 caught up");
    assert_eq!(expand.isr, BTreeSet::from([1, 2, 3]));
    leader.isr_rejected();
    assert_eq!(leader.propose_isr_change(later).map(|proposal| proposal.isr), Some(BTreeSet::from([1, 2, 3])));
    leader.isr_committed(state(&[1, 2, 3], 2), later);
    leader.check_invariants();
}

// ---------------------------------------------------------------------------------------------
// The seeded world

#[derive(Debug, Clone, Copy)]
enum Event {
    /// The leader appends this many records.
    Append(u8),
    LeaderSync,
    /// Follower (index) fetches and copies up to this many records.
    Fetch(usize, u8),
    /// Follower (index) syncs what it holds.
    FollowerSync(usize),
    /// Follower (index) is killed: what it had not synced is gone; it registers again with a
    /// new broker epoch.
    FollowerCrash(usize),
    /// Time passes; the leader proposes an ISR change, which the controller commits or refuses.
    Tick(u16, bool),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => (1..8u8).prop_map(Event::Append),
        2 => Just(Event::LeaderSync),
        4 => (0..2usize, 0..8u8).prop_map(|(follower, count)| Event::Fetch(follower, count)),
        2 => (0..2usize).prop_map(Event::FollowerSync),
        1 => (0..2usize).prop_map(Event::FollowerCrash),
        2 => (0..6000u16, any::<bool>()).prop_map(|(ms, commit)| Event::Tick(ms, commit)),
    ]
}

#[derive(Debug, Clone, Copy, Default)]
struct FollowerLog {
    end: i64,
    durable: i64,
    broker_epoch: i64,
}

/// One leader, two followers, the controller's copy of the partition, and the truth about every
/// replica's disk.
struct World {
    leader: Leader,
    leader_end: i64,
    leader_durable: i64,
    followers: [FollowerLog; 2],
    committed: PartitionState,
    now_ms: i64,
    last_high_watermark: i64,
}

impl World {
    fn new(durability: Durability) -> World {
        World {
            leader: leader(durability),
            leader_end: 0,
            leader_durable: 0,
            followers: [FollowerLog { broker_epoch: 10, ..FollowerLog::default() }; 2],
            committed: state(&[1, 2, 3], 0),
            now_ms: START_MS,
            last_high_watermark: 0,
        }
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Append(count) => {
                self.leader_end += i64::from(count);
                self.leader.appended(self.leader_end);
            }
            Event::LeaderSync => {
                self.leader_durable = self.leader_end;
                self.leader.synced(self.leader_durable);
            }
            Event::Fetch(index, count) => {
                let replica = FOLLOWERS[index];
                let log = self.followers[index];
                let request = FollowerFetch { broker_epoch: log.broker_epoch, ..fetch(replica, log.end, log.durable) };
                match self.leader.follower_fetch(&request, &epochs(), self.now_ms) {
                    FetchAnswer::Read { from } => {
                        assert_eq!(from, log.end);
                        self.followers[index].end = (log.end + i64::from(count)).min(self.leader_end);
                    }
                    other => panic!("a follower of one epoch was answered {other:?}"),
                }
            }
            Event::FollowerSync(index) => self.followers[index].durable = self.followers[index].end,
            Event::FollowerCrash(index) => {
                let log = &mut self.followers[index];
                log.end = log.durable;
                log.broker_epoch += 1;
                self.leader.broker_epoch_changed(FOLLOWERS[index], log.broker_epoch);
            }
            Event::Tick(ms, commit) => {
                self.now_ms += i64::from(ms);
                if let Some(proposal) = self.leader.propose_isr_change(self.now_ms) {
                    assert_eq!(proposal.partition_epoch, self.committed.partition_epoch);
                    if commit {
                        self.committed.isr = proposal.isr;
                        self.committed.partition_epoch += 1;
                        self.leader.isr_committed(self.committed.clone(), self.now_ms);
                    } else {
                        self.leader.isr_rejected();
                    }
                }
            }
        }
    }

    /// What must hold after every step. Err: the first violation.
    fn check(&mut self) -> Result<(), String> {
        self.leader.check_invariants();
        let high_watermark = self.leader.high_watermark();
        if high_watermark < self.last_high_watermark {
            return Err(format!("high watermark went back from {} to {high_watermark}", self.last_high_watermark));
        }
        self.last_high_watermark = high_watermark;
        if high_watermark > 0 {
            let durable = std::iter::once(self.leader_durable).chain(self.followers.iter().map(|log| log.durable));
            let holding = durable.filter(|&durable| durable >= high_watermark).count();
            if holding < 2 {
                return Err(format!(
                    "offsets below the high watermark {high_watermark} are durable on {holding} replica(s), min.insync.replicas is 2"
                ));
            }
        }
        Ok(())
    }
}

/// Runs `events` in a fresh world; the first violation, if any.
fn run(durability: Durability, events: &[Event]) -> Result<(), String> {
    let mut world = World::new(durability);
    for (index, event) in events.iter().enumerate() {
        world.step(*event);
        world.check().map_err(|violation| format!("after event {index} ({event:?}): {violation}"))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Whatever the order of appends, fetches, syncs, crashes and ISR changes, nothing below the
    /// high watermark is durable on fewer than min.insync.replicas replicas, and the high
    /// watermark never moves back.
    #[test]
    fn acknowledged_offsets_are_durable_on_min_insync_replicas(events in prop::collection::vec(event(), 1..120)) {
        prop_assert_eq!(run(Durability::Synced, &events), Ok(()));
    }
}

/// The same checker catches the rule it exists for: in Kafka's "written" mode two followers
/// that crash before syncing take acknowledged offsets with them, and the world says so.
#[test]
fn the_checker_finds_acknowledged_offsets_lost_when_unsynced_writes_count() {
    use Event::*;
    let events = [Append(5), LeaderSync, Fetch(0, 5), Fetch(1, 5), Fetch(0, 0), Fetch(1, 0), FollowerCrash(0), FollowerCrash(1)];
    assert_eq!(run(Durability::Synced, &events), Ok(()), "the strict rule acknowledged nothing unsynced");
    let found = run(Durability::Written, &events).expect_err("the loose rule acknowledged what the crashes lost");
    assert!(found.contains("durable on 1 replica"), "{found}");
}
