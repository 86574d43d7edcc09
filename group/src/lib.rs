//! Group coordination without I/O: the classic group protocol (JoinGroup/SyncGroup/Heartbeat/
//! LeaveGroup), the KIP-848 consumer group protocol (ConsumerGroupHeartbeat) with server-side
//! assignors, committed offsets, and the records that persist all of it in `__consumer_offsets`;
//! and the transaction coordinator (`txn`) with its `__transaction_state` records. All three
//! record codecs are built on one set of bounded wire primitives (`codec`).
//!
//! Every state machine here is pure: it takes the current time as an argument, returns the records
//! the caller must append durably before answering, and never sleeps or spawns. The shard that owns
//! a `__consumer_offsets` partition drives the groups that hash to it (net/).

pub mod assignor;
pub mod classic;
pub mod codec;
pub mod consumer;
pub mod offsets;
pub mod records;
pub mod txn;

/// The generation or group epoch after `current`. Past `i32::MAX` (only a log written elsewhere
/// holds one so high) it starts again at 1: Kafka's Java int would wrap to a negative value, which
/// clients read as "no generation".
pub(crate) fn next_epoch(current: i32) -> i32 {
    current.checked_add(1).unwrap_or(1)
}
