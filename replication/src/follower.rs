//! One partition's replication as a follower sees it, without I/O (Kafka's
//! `AbstractFetcherThread` for one partition): what to ask the leader for, where to truncate
//! when the leader says the log diverges, and what high watermark the follower may expose.
//!
//! ```text
//!   next_fetch ──▶ leader ──▶ Read: append the leader's batches as they are, epochs from their
//!       ▲                           headers; high watermark = min(leader's, own log end)
//!       │                 └─▶ Diverging{epoch, end}: truncate to `truncation_offset`, then
//!       └──────────────────────── fetch again from the new end (KAFKA-10554: no extra request)
//! ```

use fjord_engine::epochs::{EpochHistory, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};

use crate::leader::{FollowerFetch, ReplicaId};

/// What a follower holds of its log, as the fetch needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerLog {
    pub log_end_offset: i64,
    pub durable_offset: i64,
    pub high_watermark: i64,
}

/// The fetch a follower sends next: from its log end, naming the epoch of its last record so the
/// leader can tell whether the two logs diverge (KIP-320), and its durable end so the leader can
/// move the high watermark (Fjord's strict rule).
pub fn next_fetch(
    replica: ReplicaId,
    broker_epoch: i64,
    leader_epoch: i32,
    log: FollowerLog,
    epochs: &EpochHistory,
) -> FollowerFetch {
    FollowerFetch {
        replica,
        broker_epoch,
        current_leader_epoch: leader_epoch,
        fetch_offset: log.log_end_offset,
        last_fetched_epoch: if log.log_end_offset > 0 { epochs.epoch_at(log.log_end_offset - 1) } else { None },
        durable_offset: log.durable_offset,
    }
}

/// Kafka `getOffsetTruncationState`: where a follower whose log diverges truncates, given the
/// leader's answer (the largest epoch it knows at or below the follower's last one, and where
/// that epoch ends in the leader's log). When the follower does not know the leader's epoch it
/// truncates to the end of its own largest epoch below it and fetches again (the next answer
/// narrows it further); never past its own log end.
pub fn truncation_offset(epochs: &EpochHistory, log: FollowerLog, leader_epoch: i32, leader_end_offset: i64) -> i64 {
    let end = log.log_end_offset;
    if leader_end_offset == UNDEFINED_EPOCH_OFFSET {
        // The leader knows no epoch that old: only the high watermark is known to be shared.
        return log.high_watermark.min(end);
    }
    if leader_epoch == UNDEFINED_EPOCH {
        return leader_end_offset.min(end);
    }
    match epochs.end_offset_for(leader_epoch, end) {
        (_, UNDEFINED_EPOCH_OFFSET) => leader_end_offset.min(end),
        (follower_epoch, follower_end) if follower_epoch != leader_epoch => follower_end.min(end),
        (_, follower_end) => follower_end.min(leader_end_offset).min(end),
    }
}

/// The follower's high watermark after a fetch: the leader's, bounded by what it holds; it does
/// not move back when a new leader still reports a lower one.
pub fn high_watermark_after_fetch(log: FollowerLog, leader_high_watermark: i64) -> i64 {
    log.high_watermark.max(leader_high_watermark).min(log.log_end_offset)
}
