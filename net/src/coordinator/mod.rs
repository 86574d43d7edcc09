//! Log-backed coordinators: a pure state machine (fjord-group's classic and consumer groups,
//! its transactions) per partition of an internal compacted topic, driven by the shard that owns
//! the partition, its state persisted as records in that partition and rebuilt from it on start.
//!
//! ```text
//!  any shard: call(partition p, request) ──mesh──▶ owner of <topic>-p
//!  owner shard:  CoordinatorPartition<S>
//!     state machine S ── Step { records, answers, follow-ups }
//!        records ──▶ one batch, appended acks=all ──▶ durable ──▶ answers, then follow-ups
//!     drain task: outcomes leave in the order they were made (one per partition)
//!     load task:  replay the log from its start, then S::finish_loading
//! ```
//! [`groups`] and [`transactions`] are the two coordinators; [`runtime`] is what they share:
//! the partition lifecycle (create on first use, load, drain), the internal topic, replay and
//! the record batch their records are written in.

pub mod groups;
pub mod runtime;
pub mod transactions;
