//! One partition's replication as its leader sees it, without I/O (Kafka's `Partition` leader
//! side, with KIP-966's strict high watermark): what each follower holds, when the high watermark
//! moves, which fetches must truncate first, which replicas fall out of or come back into the ISR,
//! and whether an acks=all produce may start or has completed. The owner shard feeds it events
//! (its own appends and syncs, follower fetches, the clock, ISR changes the controller committed)
//! and carries out what it answers; a simulator feeds it the same events in one thread.
//!
//! ```text
//!   follower fetch(offset, last epoch, durable)          controller
//!        │                                                   ▲  AlterPartition(ISR, partition epoch)
//!        ▼                                                   │
//!   ┌─ validate epoch ─ diverging? ──▶ Diverging{epoch, end}  │
//!   │  progress: end, durable, caught-up time  ── expand? ───┤
//!   │  HW = min durable over the maximal ISR                 │
//!   │       (only while |ISR| ≥ min.insync.replicas)         │
//!   └─ tick(now): lagging past replica.lag.time.max.ms ─ shrink? ─┘
//! ```
//!
//! The high watermark is the minimum, over every member of the maximal ISR (the committed ISR
//! plus a replica whose addition is in flight), of the offset that member holds *durably*: a
//! follower reports its fsynced end with every fetch. So an acks=all record below the high
//! watermark survives the loss of any min.insync.replicas − 1 of them. In the looser
//! [`Durability::Written`] mode (Kafka's own) the members' log end offsets count instead. The
//! high watermark never moves back, and does not move at all while the committed ISR is smaller
//! than min.insync.replicas (KIP-966): acks=all produces then wait, and time out.

use std::collections::{BTreeMap, BTreeSet};

use fjord_engine::epochs::EpochHistory;
use kafka_protocol::error::ResponseError;

/// A broker id.
pub type ReplicaId = i32;

/// What counts as a replica holding a record for the high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk (fdatasync'ed) on every member of the ISR: Fjord's default.
    Synced,
    /// Written, not necessarily synced (Kafka's rule: a follower's log end offset counts).
    Written,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderConfig {
    /// `min.insync.replicas`.
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms`: a follower not caught up for longer leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    pub durability: Durability,
}

/// The partition as the controller last committed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<ReplicaId>,
    pub isr: BTreeSet<ReplicaId>,
}

/// A follower's fetch, as the leader needs it (Fetch with a replica id, KIP-903 broker epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerFetch {
    pub replica: ReplicaId,
    pub broker_epoch: i64,
    /// The leader epoch the follower believes current.
    pub current_leader_epoch: i32,
    /// The follower's log end offset: where it wants to read from.
    pub fetch_offset: i64,
    /// The epoch of the last batch the follower holds (`None` for an empty log).
    pub last_fetched_epoch: Option<i32>,
    /// The end of what the follower holds durably (fsynced).
    pub durable_offset: i64,
}

/// What the leader answers a follower's fetch with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchAnswer {
    /// Read the log from `from` (the fetch offset) and send it with the high watermark.
    Read { from: i64 },
    /// The follower's log diverges: truncate to at most `end_offset` (the end of `epoch` here)
    /// and fetch again (KIP-320, KAFKA-10554).
    Diverging { epoch: i32, end_offset: i64 },
    /// A Kafka error code for the partition.
    Error(i16),
}

/// An ISR change to propose to the controller (AlterPartition), one at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub partition_epoch: i32,
    pub isr: BTreeSet<ReplicaId>,
}

/// Whether an acks=all produce whose last offset is `last_offset` is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcksAll {
    Waiting,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    broker_epoch: i64,
    log_end_offset: i64,
    durable_offset: i64,
    last_caught_up_ms: i64,
    /// The leader's log end offset and the time at the previous fetch (Kafka's
    /// `lastFetchLeaderLogEndOffset` and `lastFetchTimeMs`).
    last_fetch_leader_end: i64,
    last_fetch_ms: i64,
}

impl Progress {
    /// A follower that has not fetched from this leader yet: nothing known held, and
    /// `replica_lag_time_max_ms` from `now_ms` to catch up.
    fn unknown(now_ms: i64) -> Progress {
        Progress {
            broker_epoch: -1,
            log_end_offset: -1,
            durable_offset: -1,
            last_caught_up_ms: now_ms,
            last_fetch_leader_end: -1,
            last_fetch_ms: now_ms,
        }
    }
}

/// The leader side of one partition's replication. Lives on the partition's owner shard.
#[derive(Debug, Clone)]
pub struct Leader {
    id: ReplicaId,
    config: LeaderConfig,
    state: PartitionState,
    /// The proposal the controller has not answered yet.
    in_flight: Option<IsrProposal>,
    followers: BTreeMap<ReplicaId, Progress>,
    /// Broker epochs as the metadata has them (KIP-903): a fetch carrying another is stale.
    broker_epochs: BTreeMap<ReplicaId, i64>,
    log_start_offset: i64,
    log_end_offset: i64,
    durable_offset: i64,
    high_watermark: i64,
    /// The first offset written in this leader epoch: a follower rejoins the ISR only past it.
    epoch_start_offset: i64,
}

impl Leader {
    /// Becomes leader of `state` (Kafka `makeLeader`) over a log holding `[log_start, log_end)`,
    /// `durable` of it synced, with the high watermark it had. Followers start as not caught up
    /// since now (they have `replica_lag_time_max_ms` to fetch).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: ReplicaId,
        config: LeaderConfig,
        state: PartitionState,
        broker_epochs: BTreeMap<ReplicaId, i64>,
        log_start_offset: i64,
        log_end_offset: i64,
        durable_offset: i64,
        high_watermark: i64,
        now_ms: i64,
    ) -> Leader {
        assert!(state.replicas.contains(&id), "leader {id} is not a replica of {state:?}");
        assert!(log_start_offset <= high_watermark && high_watermark <= log_end_offset && durable_offset <= log_end_offset);
        let followers = state
            .replicas
            .iter()
            .filter(|&&replica| replica != id)
            .map(|&replica| (replica, Progress::unknown(now_ms)))
            .collect();
        Leader {
            id,
            config,
            state,
            in_flight: None,
            followers,
            broker_epochs,
            log_start_offset,
            log_end_offset,
            durable_offset,
            high_watermark,
            epoch_start_offset: log_end_offset,
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn state(&self) -> &PartitionState {
        &self.state
    }

    pub fn in_flight(&self) -> Option<&IsrProposal> {
        self.in_flight.as_ref()
    }

    /// The committed ISR plus a replica whose addition is in flight: the set the high watermark
    /// waits for (Kafka's `maximalIsr`). A removal in flight still counts the replica.
    pub fn maximal_isr(&self) -> BTreeSet<ReplicaId> {
        let mut isr = self.state.isr.clone();
        if let Some(proposal) = &self.in_flight {
            isr.extend(proposal.isr.iter().copied());
        }
        isr
    }

    /// The leader appended up to `log_end_offset` (the epoch history records the first append of
    /// an epoch; that is the partition's job).
    pub fn appended(&mut self, log_end_offset: i64) {
        debug_assert!(log_end_offset >= self.log_end_offset);
        self.log_end_offset = log_end_offset;
        self.advance_high_watermark();
    }

    /// The leader's own log is durable up to `durable_offset`.
    pub fn synced(&mut self, durable_offset: i64) {
        debug_assert!(durable_offset <= self.log_end_offset);
        self.durable_offset = self.durable_offset.max(durable_offset);
        self.advance_high_watermark();
    }

    /// The log now starts at `log_start_offset` (retention, DeleteRecords).
    pub fn log_start_moved(&mut self, log_start_offset: i64) {
        self.log_start_offset = self.log_start_offset.max(log_start_offset);
    }

    /// Whether an acks=all produce may be appended now (Kafka: NOT_ENOUGH_REPLICAS when the
    /// committed ISR is smaller than min.insync.replicas).
    pub fn admit_acks_all(&self) -> Result<(), i16> {
        if self.state.isr.len() < self.config.min_insync_replicas {
            return Err(ResponseError::NotEnoughReplicas.code());
        }
        Ok(())
    }

    /// An acks=all produce whose batch ends at `last_offset`: done once the high watermark has
    /// passed it.
    pub fn acks_all(&self, last_offset: i64) -> AcksAll {
        if self.high_watermark > last_offset {
            AcksAll::Done
        } else {
            AcksAll::Waiting
        }
    }

    /// A follower's fetch (Kafka `Partition.fetchRecords` for a follower, then
    /// `updateFollowerFetchState`). `epochs` is this log's epoch history.
    pub fn follower_fetch(&mut self, fetch: &FollowerFetch, epochs: &EpochHistory, now_ms: i64) -> FetchAnswer {
        if fetch.current_leader_epoch < self.state.leader_epoch {
            return FetchAnswer::Error(ResponseError::FencedLeaderEpoch.code());
        }
        if fetch.current_leader_epoch > self.state.leader_epoch {
            return FetchAnswer::Error(ResponseError::UnknownLeaderEpoch.code());
        }
        if !self.followers.contains_key(&fetch.replica) {
            return FetchAnswer::Error(ResponseError::NotLeaderOrFollower.code());
        }
        if let Some(last_epoch) = fetch.last_fetched_epoch {
            let (epoch, end_offset) = epochs.end_offset_for(last_epoch, self.log_end_offset);
            if epoch < last_epoch || end_offset < fetch.fetch_offset {
                return FetchAnswer::Diverging { epoch, end_offset };
            }
        }
        if fetch.fetch_offset < self.log_start_offset || fetch.fetch_offset > self.log_end_offset {
            return FetchAnswer::Error(ResponseError::OffsetOutOfRange.code());
        }
        // KIP-903: a fetch from an earlier incarnation of the broker does not move its progress.
        let known_epoch = self.broker_epochs.get(&fetch.replica).copied().unwrap_or(-1);
        if fetch.broker_epoch == known_epoch {
            self.record_progress(fetch, now_ms);
            self.advance_high_watermark();
        }
        FetchAnswer::Read { from: fetch.fetch_offset }
    }

    /// Kafka `Replica.updateFetchStateOrThrow`: a follower is caught up at this fetch if it asks
    /// from the leader's end, or at the previous fetch if it asks from where the leader's end
    /// was then.
    fn record_progress(&mut self, fetch: &FollowerFetch, now_ms: i64) {
        let leader_end = self.log_end_offset;
        let progress = self.followers.get_mut(&fetch.replica).expect("checked by the caller");
        if fetch.fetch_offset >= leader_end {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(now_ms);
        } else if fetch.fetch_offset >= progress.last_fetch_leader_end {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(progress.last_fetch_ms);
        }
        progress.broker_epoch = fetch.broker_epoch;
        progress.log_end_offset = fetch.fetch_offset;
        // A follower's durable end can only lag what it holds.
        progress.durable_offset = fetch.durable_offset.min(fetch.fetch_offset);
        progress.last_fetch_leader_end = leader_end;
        progress.last_fetch_ms = now_ms;
    }

    /// What `replica` holds for the high watermark's purpose.
    fn held(&self, replica: ReplicaId) -> i64 {
        let (end, durable) = if replica == self.id {
            (self.log_end_offset, self.durable_offset)
        } else {
            self.followers.get(&replica).map_or((-1, -1), |progress| (progress.log_end_offset, progress.durable_offset))
        };
        match self.config.durability {
            Durability::Synced => durable,
            Durability::Written => end,
        }
    }

    fn advance_high_watermark(&mut self) {
        if self.state.isr.len() < self.config.min_insync_replicas {
            return;
        }
        let Some(candidate) = self.maximal_isr().into_iter().map(|replica| self.held(replica)).min() else { return };
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
        }
    }

    /// The ISR change to propose now, if none is in flight: a follower out of the ISR that has
    /// caught up to the high watermark and this epoch's start joins (Kafka `maybeExpandIsr`); a
    /// member not caught up for `replica_lag_time_max_ms` leaves (`maybeShrinkIsr`). The leader
    /// never leaves its own ISR. The proposal is in flight until [`Leader::isr_committed`] or
    /// [`Leader::isr_rejected`].
    pub fn propose_isr_change(&mut self, now_ms: i64) -> Option<IsrProposal> {
        if self.in_flight.is_some() {
            return None;
        }
        let isr = &self.state.isr;
        // A member must hold (durably, in the default mode) everything below the high watermark
        // and everything earlier leaders wrote: a new leader's high watermark starts from what it
        // knew as a follower, below what was acknowledged, while its epoch starts past all of it.
        let joining = self.followers.iter().find(|(&replica, progress)| {
            !isr.contains(&replica)
                && progress.broker_epoch == self.broker_epochs.get(&replica).copied().unwrap_or(-1)
                && self.held(replica) >= self.high_watermark.max(self.epoch_start_offset)
        });
        let lagging: Vec<ReplicaId> = self
            .followers
            .iter()
            .filter(|(replica, progress)| {
                isr.contains(replica) && now_ms - progress.last_caught_up_ms > self.config.replica_lag_time_max_ms
            })
            .map(|(&replica, _)| replica)
            .collect();
        let mut proposed = isr.clone();
        if let Some((&replica, _)) = joining {
            proposed.insert(replica);
        } else if !lagging.is_empty() {
            proposed.retain(|replica| !lagging.contains(replica));
        } else {
            return None;
        }
        let proposal = IsrProposal { partition_epoch: self.state.partition_epoch, isr: proposed };
        self.in_flight = Some(proposal.clone());
        Some(proposal)
    }

    /// The controller committed a new state for the partition (an answer to a proposal, or a
    /// change of its own: reassignment, a broker fenced). The leader keeps leading only if the
    /// epoch is unchanged; a new leader epoch is a new [`Leader`].
    pub fn isr_committed(&mut self, state: PartitionState, now_ms: i64) {
        assert_eq!(state.leader_epoch, self.state.leader_epoch, "a new leader epoch makes a new Leader");
        assert!(state.partition_epoch >= self.state.partition_epoch, "partition epochs only go up");
        self.in_flight = None;
        for replica in &state.replicas {
            if *replica != self.id {
                self.followers.entry(*replica).or_insert_with(|| Progress::unknown(now_ms));
            }
        }
        self.followers.retain(|replica, _| state.replicas.contains(replica));
        self.state = state;
        self.advance_high_watermark();
    }

    /// The controller refused the proposal (a stale partition epoch, a fenced broker): propose
    /// again from the state it has.
    pub fn isr_rejected(&mut self) {
        self.in_flight = None;
    }

    /// A broker registered again or was fenced: its epoch as the metadata has it now.
    pub fn broker_epoch_changed(&mut self, replica: ReplicaId, broker_epoch: i64) {
        self.broker_epochs.insert(replica, broker_epoch);
    }

    /// Checks the invariants that hold between any two events (tests and debug builds).
    pub fn check_invariants(&self) {
        assert!(self.log_start_offset <= self.high_watermark, "log start above the high watermark");
        assert!(self.high_watermark <= self.log_end_offset, "high watermark above the log end");
        assert!(self.state.isr.contains(&self.id) || self.state.isr.is_empty(), "the leader is in its own ISR");
        for replica in self.state.isr.iter().filter(|&&replica| replica != self.id) {
            if self.state.isr.len() >= self.config.min_insync_replicas {
                // The HW moved only over members' held offsets; a member that joined since holds
                // at least the HW it joined at.
                let held = self.held(*replica);
                assert!(held >= self.high_watermark || held == -1, "ISR member {replica} holds {held} < HW");
            }
        }
    }
}
