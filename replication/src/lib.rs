//! Fjord's replicated state. For now: the controller's durable, versioned metadata log and the
//! metadata image every shard reads (`metadata`). A one-node quorum on a single broker; the Raft
//! controller of a later issue replaces the transport of this log, not its shape.

pub mod metadata;
