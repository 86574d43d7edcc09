//! Fjord's replicated state: the controller's durable, versioned metadata log and the metadata
//! image every shard reads (`metadata`), and partition replication as sans-I/O state machines
//! (`leader`: follower progress, the high watermark, ISR changes; `follower`: what to fetch,
//! where to truncate). A one-node quorum on a single broker for now; the Raft controller
//! replaces the transport of the metadata log, not its shape.

pub mod follower;
pub mod leader;
pub mod metadata;
