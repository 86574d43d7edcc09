//! Fjord's storage engine.
//!
//! Everything a shard owns outright lives here: the runtime boundary (`rt`, the only module that
//! names glommio), RecordBatch v2 validation (`batch`), segments with their sparse indexes
//! (`segment`, `index`), the segment set with roll, recovery and truncation (`log`), log
//! compaction (`compaction`), the batch cache for tail reads (`cache`), partitions with group
//! commit (`partition`), idempotent and transactional producers' state (`producer_state`), the
//! aborted-transaction index (`txn_index`), the leader epoch history (`epochs`), topic configuration
//! (`topic_config`), broker counters (`metrics`) and the limits every queue and buffer is held to
//! (`limits`). A shard's background work runs as named tasks with shutdown tracking (`tasks`); its
//! maintenance of the partitions it owns (retention, the log cleaner, producer-id expiry, gauges)
//! is registered there by `maintenance`; segment descriptors are opened on demand within a per-shard budget (`files`). File-system changes outside segment appends go through `fs`, which says what is
//! durable when; `sim_disk` watches both for crash and fault tests.
//!
//! Dependencies point one way: engine ← replication ← net ← fjord.

pub mod batch;
pub mod cache;
pub mod compaction;
pub mod epochs;
pub mod error;
pub mod files;
pub mod fs;
pub mod index;
pub mod limits;
pub mod log;
pub mod maintenance;
pub mod metrics;
pub mod partition;
pub mod producer_state;
pub mod rt;
pub mod segment;
pub mod shard;
pub mod sim_disk;
pub mod tasks;
pub mod topic_config;
pub mod txn_index;
