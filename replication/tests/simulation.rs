//! A seeded simulation of one partition replicated on three nodes (replication factor 3,
//! min.insync.replicas 2), in the style of TigerBeetle's VOPR: the leader and follower state
//! machines of `fjord_replication` driven in one thread by a world that appends, fetches, syncs,
//! kills nodes (a killed node loses what it had not synced), restarts them, changes the ISR
//! through a controller that commits or refuses, and elects a new leader from the live ISR when
//! the leader dies. After every step:
//!
//! - every offset ever below a leader's high watermark (acknowledged to acks=all) holds the same
//!   record on the current leader, and on every node that has it up to that node's own high
//!   watermark (replicas are prefixes of the leader up to the high watermark);
//! - each leader's high watermark never moves back, and leader epochs only go up.
//!
//! Then a liveness phase: every node restarts, faults stop, and within a bounded number of rounds
//! every replica holds the leader's whole log and the high watermark reaches its end.
//!
//! `cargo test` runs [`SEEDS_DEFAULT`] seeds, each twice with the traces compared (the world must be
//! deterministic for a failing seed to replay). `FJORD_SIM_SEEDS=N` runs N seeds;
//! `FJORD_SIM_SEED=S` replays one and prints its trace.

use std::collections::BTreeMap;

use fjord_engine::epochs::EpochHistory;
use fjord_replication::follower::{self, FollowerLog};
use fjord_replication::leader::{Durability, FetchAnswer, Leader, LeaderConfig, PartitionState, ReplicaId};

const NODES: [ReplicaId; 3] = [1, 2, 3];
const MIN_INSYNC: usize = 2;
const LAG_MAX_MS: i64 = 5_000;
const STEPS: usize = 400;
const SEEDS_DEFAULT: u64 = 300;
const LIVENESS_ROUNDS_MAX: usize = 50;

/// splitmix64: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A record: the epoch it was written in and a number no other record has.
type Record = (i32, u64);

/// One node's disk and memory for the partition.
#[derive(Debug, Clone, Default)]
struct Node {
    alive: bool,
    log: Vec<Record>,
    durable: usize,
    high_watermark: i64,
    epochs: EpochHistory,
    broker_epoch: i64,
    /// The leader epoch this node knows (from the metadata).
    known_epoch: i32,
}

impl Node {
    fn view(&self) -> FollowerLog {
        FollowerLog {
            log_end_offset: self.log.len() as i64,
            durable_offset: self.durable as i64,
            high_watermark: self.high_watermark,
        }
    }

    /// Appends records copied from a leader; a record of a newer epoch starts that epoch here.
    fn append_copied(&mut self, records: &[Record]) {
        for record in records {
            let offset = self.log.len() as i64;
            if self.epochs.latest().is_none_or(|latest| latest.epoch < record.0) {
                self.epochs.assign(record.0, offset);
            }
            self.log.push(*record);
        }
    }

    fn truncate(&mut self, end: usize) {
        self.log.truncate(end);
        self.durable = self.durable.min(end);
        self.high_watermark = self.high_watermark.min(end as i64);
        self.epochs.truncate_from_end(end as i64);
    }
}

/// Which rule the world uses to pick a new leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Election {
    /// Kafka's: a live member of the ISR.
    FromIsr,
    /// Deliberately wrong: any live node (an unclean election the configuration did not allow).
    AnyLiveNode,
}

struct World {
    rng: Rng,
    nodes: BTreeMap<ReplicaId, Node>,
    /// The controller's copy of the partition.
    state: PartitionState,
    leader_id: Option<ReplicaId>,
    leader: Option<Leader>,
    now_ms: i64,
    next_record: u64,
    /// Every offset ever acknowledged, with its record.
    acknowledged: Vec<Record>,
    election: Election,
    trace: Vec<String>,
    /// The leader epoch and high watermark at the last check.
    last_seen: (i32, i64),
}

impl World {
    fn new(seed: u64, election: Election) -> World {
        let nodes = NODES.iter().map(|&id| (id, Node { alive: true, broker_epoch: 1, ..Node::default() })).collect();
        let state = PartitionState { leader_epoch: 0, partition_epoch: 0, replicas: NODES.to_vec(), isr: NODES.into() };
        let mut world = World {
            rng: Rng(seed),
            nodes,
            state,
            leader_id: None,
            leader: None,
            now_ms: 1_000_000,
            next_record: 0,
            acknowledged: Vec::new(),
            election,
            trace: Vec::new(),
            last_seen: (0, 0),
        };
        world.elect(NODES[0]);
        world
    }

    fn config() -> LeaderConfig {
        LeaderConfig { min_insync_replicas: MIN_INSYNC, replica_lag_time_max_ms: LAG_MAX_MS, durability: Durability::Synced }
    }

    /// The controller makes `id` leader in a new epoch; every live node learns the epoch.
    fn elect(&mut self, id: ReplicaId) {
        if !self.state.isr.contains(&id) {
            // Kafka's unclean election: the new leader is the whole ISR.
            self.state.isr = [id].into();
        }
        self.state.leader_epoch += 1;
        self.state.partition_epoch += 1;
        let epoch = self.state.leader_epoch;
        for node in self.nodes.values_mut().filter(|node| node.alive) {
            node.known_epoch = epoch;
        }
        let node = self.nodes.get_mut(&id).expect("a node");
        let end = node.log.len() as i64;
        node.epochs.fit_to_log(0, end, epoch);
        node.high_watermark = node.high_watermark.min(end);
        let broker_epochs = self.nodes.iter().map(|(&id, node)| (id, node.broker_epoch)).collect();
        let node = &self.nodes[&id];
        let leader = Leader::new(
            id,
            Self::config(),
            self.state.clone(),
            broker_epochs,
            0,
            end,
            node.durable as i64,
            node.high_watermark,
            self.now_ms,
        );
        self.trace.push(format!("elect {id} epoch {epoch} isr {:?} end {end}", self.state.isr));
        self.leader_id = Some(id);
        self.leader = Some(leader);
    }

    fn leader_node(&self) -> Option<&Node> {
        self.leader_id.map(|id| &self.nodes[&id])
    }

    fn step(&mut self) {
        let node = NODES[self.rng.below(3) as usize];
        match self.rng.below(100) {
            0..=24 => self.append(),
            25..=34 => self.sync(node),
            35..=69 => self.fetch(node),
            70..=79 => self.tick(),
            80..=86 => self.kill(node),
            87..=94 => self.restart(node),
            _ => self.maybe_elect(),
        }
    }

    fn append(&mut self) {
        let Some(id) = self.leader_id else { return };
        let count = 1 + self.rng.below(4);
        let epoch = self.state.leader_epoch;
        let node = self.nodes.get_mut(&id).expect("leader node");
        for _ in 0..count {
            node.log.push((epoch, self.next_record));
            self.next_record += 1;
        }
        let end = node.log.len() as i64;
        self.leader.as_mut().expect("a leader").appended(end);
        self.trace.push(format!("append {count} on {id} -> {end}"));
    }

    fn sync(&mut self, id: ReplicaId) {
        let node = self.nodes.get_mut(&id).expect("a node");
        if !node.alive {
            return;
        }
        node.durable = node.log.len();
        if self.leader_id == Some(id) {
            self.leader.as_mut().expect("a leader").synced(node.durable as i64);
        }
        self.trace.push(format!("sync {id} -> {}", node.durable));
        self.note_acknowledged();
    }

    fn fetch(&mut self, id: ReplicaId) {
        let Some(leader_id) = self.leader_id else { return };
        if leader_id == id || !self.nodes[&id].alive {
            return;
        }
        let count = self.rng.below(6) as usize;
        let node = &self.nodes[&id];
        let request = follower::next_fetch(id, node.broker_epoch, node.known_epoch, node.view(), &node.epochs);
        let leader_epochs = self.nodes[&leader_id].epochs.clone();
        let answer = self.leader.as_mut().expect("a leader").follower_fetch(&request, &leader_epochs, self.now_ms);
        match answer {
            FetchAnswer::Read { from } => {
                let leader_log = &self.nodes[&leader_id].log;
                let to = (from as usize + count).min(leader_log.len());
                let records = leader_log[from as usize..to].to_vec();
                let leader_high_watermark = self.leader.as_ref().expect("a leader").high_watermark();
                let node = self.nodes.get_mut(&id).expect("a node");
                node.append_copied(&records);
                node.high_watermark = follower::high_watermark_after_fetch(node.view(), leader_high_watermark);
                self.trace.push(format!("fetch {id} from {from}: {} records, hw {}", records.len(), node.high_watermark));
            }
            FetchAnswer::Diverging { epoch, end_offset } => {
                let node = self.nodes.get_mut(&id).expect("a node");
                let to = follower::truncation_offset(&node.epochs, node.view(), epoch, end_offset);
                node.truncate(to as usize);
                self.trace.push(format!("fetch {id}: diverging (epoch {epoch}, end {end_offset}), truncated to {to}"));
            }
            FetchAnswer::Error(code) => self.trace.push(format!("fetch {id}: error {code}")),
        }
        self.note_acknowledged();
    }

    fn tick(&mut self) {
        self.now_ms += self.rng.below(3_000) as i64;
        let commit = self.rng.chance(80);
        let Some(leader) = self.leader.as_mut() else { return };
        if let Some(proposal) = leader.propose_isr_change(self.now_ms) {
            assert_eq!(proposal.partition_epoch, self.state.partition_epoch, "a proposal from the committed state");
            if commit {
                self.state.isr = proposal.isr;
                self.state.partition_epoch += 1;
                leader.isr_committed(self.state.clone(), self.now_ms);
            } else {
                leader.isr_rejected();
            }
            self.trace.push(format!("isr {} -> {:?}", if commit { "committed" } else { "refused" }, self.state.isr));
        }
        self.note_acknowledged();
    }

    /// SIGKILL: what the node had not synced is gone; a dead leader leads no more.
    fn kill(&mut self, id: ReplicaId) {
        let node = self.nodes.get_mut(&id).expect("a node");
        if !node.alive {
            return;
        }
        node.alive = false;
        let durable = node.durable;
        node.truncate(durable);
        if self.leader_id == Some(id) {
            self.leader_id = None;
            self.leader = None;
        }
        self.trace.push(format!("kill {id}, keeps {durable}"));
    }

    /// The node comes back with a new broker epoch (it registers again) and learns the epoch.
    fn restart(&mut self, id: ReplicaId) {
        let epoch = self.state.leader_epoch;
        let node = self.nodes.get_mut(&id).expect("a node");
        if node.alive {
            return;
        }
        node.alive = true;
        node.broker_epoch += 1;
        node.known_epoch = epoch;
        let broker_epoch = node.broker_epoch;
        if let Some(leader) = self.leader.as_mut() {
            leader.broker_epoch_changed(id, broker_epoch);
        }
        self.trace.push(format!("restart {id} at broker epoch {broker_epoch}"));
    }

    /// Without a live leader the controller elects one by the world's rule, if it can.
    fn maybe_elect(&mut self) {
        if self.leader_id.is_some() {
            return;
        }
        let candidates: Vec<ReplicaId> = match self.election {
            Election::FromIsr => self.state.isr.iter().copied().filter(|id| self.nodes[id].alive).collect(),
            Election::AnyLiveNode => NODES.iter().copied().filter(|id| self.nodes[id].alive).collect(),
        };
        if candidates.is_empty() {
            return;
        }
        let chosen = candidates[self.rng.below(candidates.len() as u64) as usize];
        self.elect(chosen);
    }

    /// Records what the current leader's high watermark covers as acknowledged; a different
    /// record at an acknowledged offset is a violation.
    fn note_acknowledged(&mut self) {
        let (Some(leader), Some(id)) = (self.leader.as_ref(), self.leader_id) else { return };
        let high_watermark = leader.high_watermark() as usize;
        let log = &self.nodes[&id].log;
        let newly: Vec<Record> = log[self.acknowledged.len().min(high_watermark)..high_watermark].to_vec();
        self.acknowledged.extend(newly);
    }

    fn check(&mut self) -> Result<(), String> {
        let (last_epoch, last_high_watermark) = self.last_seen;
        if self.state.leader_epoch < last_epoch {
            return Err(format!("leader epoch went back from {last_epoch} to {}", self.state.leader_epoch));
        }
        if let Some(leader) = &self.leader {
            if self.state.leader_epoch == last_epoch && leader.high_watermark() < last_high_watermark {
                return Err(format!("high watermark of epoch {last_epoch} went back from {last_high_watermark}"));
            }
            self.last_seen = (self.state.leader_epoch, leader.high_watermark());
        }
        if let Some(leader) = &self.leader {
            leader.check_invariants();
            let node = self.leader_node().expect("leader node");
            if (node.log.len() as i64) < leader.high_watermark() {
                return Err(format!(
                    "leader holds {} records below its high watermark {}",
                    node.log.len(),
                    leader.high_watermark()
                ));
            }
            for (offset, record) in self.acknowledged.iter().enumerate() {
                if node.log.get(offset) != Some(record) {
                    return Err(format!(
                        "acknowledged offset {offset} ({record:?}) is {:?} on leader {}",
                        node.log.get(offset),
                        self.leader_id.expect("a leader")
                    ));
                }
            }
            for (id, replica) in self.nodes.iter().filter(|(id, node)| node.alive && Some(**id) != self.leader_id) {
                let shared = (replica.high_watermark as usize).min(replica.log.len());
                if replica.log[..shared] != node.log[..shared.min(node.log.len())] {
                    return Err(format!("node {id} differs from the leader below its high watermark {shared}"));
                }
            }
        }
        Ok(())
    }

    /// Faults stop: every node restarts, a leader is elected if none is, and rounds of fetches,
    /// syncs and ticks run until every replica holds the leader's log and the high watermark is
    /// at its end. Err if that does not happen within the bound.
    fn heal(&mut self) -> Result<(), String> {
        for id in NODES {
            self.restart(id);
        }
        for round in 0..LIVENESS_ROUNDS_MAX {
            self.maybe_elect();
            for id in NODES {
                self.sync(id);
                for _ in 0..8 {
                    self.fetch(id);
                }
            }
            self.now_ms += 1_000;
            if let Some(leader) = self.leader.as_mut() {
                if let Some(proposal) = leader.propose_isr_change(self.now_ms) {
                    self.state.isr = proposal.isr;
                    self.state.partition_epoch += 1;
                    leader.isr_committed(self.state.clone(), self.now_ms);
                }
            }
            self.note_acknowledged();
            self.check()?;
            let (Some(leader), Some(node)) = (self.leader.as_ref(), self.leader_node()) else { continue };
            let converged = self.nodes.values().all(|replica| replica.log == node.log)
                && leader.high_watermark() == node.log.len() as i64
                && self.state.isr.len() == NODES.len();
            if converged {
                self.trace.push(format!("converged after {round} rounds"));
                return Ok(());
            }
        }
        Err(format!("not converged after {LIVENESS_ROUNDS_MAX} rounds: isr {:?}", self.state.isr))
    }
}

/// Runs one seed: the faulty phase, then the liveness phase. The trace, and the first violation.
fn run_seed(seed: u64, election: Election) -> (Vec<String>, Result<(), String>) {
    let mut world = World::new(seed, election);
    for step in 0..STEPS {
        world.step();
        if let Err(violation) = world.check() {
            return (world.trace, Err(format!("seed {seed}, step {step}: {violation}")));
        }
    }
    let healed = world.heal().map_err(|violation| format!("seed {seed}, liveness: {violation}"));
    (world.trace, healed)
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("FJORD_SIM_SEED") {
        return vec![seed.parse().expect("FJORD_SIM_SEED is a number")];
    }
    let count = std::env::var("FJORD_SIM_SEEDS").ok().and_then(|count| count.parse().ok()).unwrap_or(SEEDS_DEFAULT);
    (0..count).collect()
}

#[test]
fn acknowledged_records_survive_kills_and_elections_and_the_replicas_converge() {
    let replay = std::env::var("FJORD_SIM_SEED").is_ok();
    for seed in seeds() {
        let (trace, outcome) = run_seed(seed, Election::FromIsr);
        if replay {
            println!("{}", trace.join("\n"));
        }
        let (again, _) = run_seed(seed, Election::FromIsr);
        assert_eq!(trace, again, "seed {seed} does not replay the same trace");
        if let Err(violation) = outcome {
            panic!("{violation}\nreplay: FJORD_SIM_SEED={seed} cargo test -p fjord-replication --test simulation -- --nocapture");
        }
    }
}

/// The checks catch the rule they guard: electing a live node outside the ISR loses acknowledged
/// records, and some seed among the first few hundred shows it.
#[test]
fn an_unclean_election_is_caught() {
    let found = (0..SEEDS_DEFAULT).find_map(|seed| run_seed(seed, Election::AnyLiveNode).1.err());
    let violation = found.expect("no seed caught an election outside the ISR");
    assert!(violation.contains("acknowledged offset") || violation.contains("differs"), "{violation}");
}
