//! Fjord's replicated state: the controller's durable, versioned metadata log and the metadata
//! image every shard reads (`metadata`), and the leader side of partition replication as a
//! sans-I/O state machine (`leader`: follower progress, the high watermark, ISR changes). A
//! one-node quorum on a single broker for now; the Raft controller replaces the transport of the
//! metadata log, not its shape.

pub mod leader;
pub mod metadata;
