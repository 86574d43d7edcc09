//! The controller's durable, versioned metadata log and the image every shard reads.
//!
//! Shaped like KRaft's `__cluster_metadata` (KIP-500, KIP-631): an ordered log of records, each
//! with an offset (the metadata version) and the controller epoch (Raft term) it was written in;
//! an image built by applying records in order; and snapshots of that image so that recovery
//! does not replay history from the start. For now the quorum is this one node and the log is
//! a local file; the Raft controller of a later issue replaces the transport, not the shape.
//!
//! ```text
//!  admin request ──▶ Controller (the frontend: validates, builds records)
//!                      │ 1. apply the batch to a copy of the image (a record that would not
//!                      │    apply is a validation bug, refused before anything is written)
//!                      │ 2. MetadataLog::append: one frame per batch, fdatasync
//!                      │ 3. MetadataTable::publish(new image)  ──▶ shards: table.current()
//!                      │ 4. every N records: snapshot the image, roll the log segment
//!                      ▼
//!  <data_dir>/meta.properties                      cluster.id, node.id (as Kafka's)
//!  <data_dir>/__cluster_metadata-0/
//!      00000000000000000000.log                    frames of record batches
//!      00000000000000004096.log                    next segment, rolled at a snapshot
//!      snapshot-00000000000000004095.bin           image after offset 4095
//! ```
//!
//! On open, the newest valid snapshot is loaded, the log after it is replayed, and the log is
//! truncated at the first torn or corrupt frame; a batch is applied whole or not at all.
//!
//! Module map: `record` (records and their frames), `image` (the state they build), `log`
//! (segments, recovery, snapshots), `table` (the read view shared by shards), `controller`
//! (validation and the admin operations), `meta_properties` (cluster id), `producer_ids`
//! (durable producer id blocks for InitProducerId).

mod controller;
mod image;
mod log;
mod meta_properties;
mod producer_ids;
mod record;
mod table;

use std::io;
use std::path::PathBuf;

pub use controller::{validate_topic_name, AlterOp, Controller, ControllerError, ControllerOptions};
pub use image::{ApplyError, BrokerImage, MetadataImage, PartitionImage, TopicImage};
pub use log::{LogOptions, MetadataLog};
pub use meta_properties::{topic_id_to_string, ClusterId};
pub use producer_ids::{ProducerIdManager, PRODUCER_ID_BLOCK_SIZE};
pub use record::{MetadataRecord, TopicId};
pub use table::MetadataTable;

/// Name of the metadata log's directory under the data directory (Kafka's topic-partition).
pub const METADATA_LOG_DIR_NAME: &str = "__cluster_metadata-0";

/// Largest encoded batch (one frame's payload). A create of a topic with the most partitions
/// allowed must fit: see the compile-time check below.
pub const METADATA_BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Most records in one batch: a topic record and one record per partition.
pub const METADATA_BATCH_RECORDS_MAX: usize = PARTITIONS_PER_TOPIC_MAX as usize + 1;
/// Largest snapshot file read back on open.
pub const METADATA_SNAPSHOT_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Records between two snapshots, unless the options say otherwise.
pub const SNAPSHOT_INTERVAL_RECORDS_DEFAULT: u64 = 4096;
/// Snapshots kept on disk; the log is kept from the oldest of them on.
pub const SNAPSHOTS_RETAINED: usize = 2;

/// Most topics in the cluster.
pub const TOPICS_MAX: usize = 100_000;
/// Most partitions in one topic.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 100_000;
/// Most partitions in the cluster, all topics together.
pub const PARTITIONS_TOTAL_MAX: usize = 1_000_000;
/// Most replicas of one partition.
pub const REPLICATION_FACTOR_MAX: usize = 32;
/// Longest topic name Kafka allows (`Topic.MAX_NAME_LENGTH`).
pub const TOPIC_NAME_LENGTH_MAX: usize = 249;
/// Longest config value kept in the metadata log.
pub const CONFIG_VALUE_BYTES_MAX: usize = 4096;
/// Longest broker host name (DNS limit).
pub const HOST_BYTES_MAX: usize = 255;

// A CreatePartition record with a full replica set encodes to well under 512 bytes, so the
// largest create (topic record plus every partition) fits one batch.
const _: () = assert!(METADATA_BATCH_RECORDS_MAX * 512 <= METADATA_BATCH_BYTES_MAX);
const _: () = assert!((PARTITIONS_PER_TOPIC_MAX as usize) <= PARTITIONS_TOTAL_MAX);
const _: () = assert!(SNAPSHOTS_RETAINED >= 1);

/// Failures of the metadata log and its files.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata I/O failed: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not encode metadata: {0}")]
    Encode(#[source] rkyv::rancor::Error),
    #[error("could not decode metadata in {path} at byte {position}: {source}")]
    Decode {
        path: PathBuf,
        position: u64,
        #[source]
        source: rkyv::rancor::Error,
    },
    #[error("{path} at byte {position} has metadata schema {version}; this build reads {supported}")]
    UnsupportedSchema { path: PathBuf, position: u64, version: u8, supported: u8 },
    #[error("metadata batch of {bytes} bytes is larger than the {max} allowed")]
    BatchTooLarge { bytes: usize, max: usize },
    #[error("metadata batch of {count} records is larger than the {max} allowed")]
    TooManyRecords { count: usize, max: usize },
    #[error("metadata batch is empty")]
    EmptyBatch,
    #[error("metadata epoch {epoch} is older than the log's last epoch {last}")]
    EpochWentBack { epoch: i32, last: i32 },
    #[error("the metadata log failed to write or sync earlier and accepts no more writes")]
    Poisoned,
    #[error("metadata record at offset {offset} in {path} does not apply: {source}")]
    Inconsistent {
        path: PathBuf,
        offset: i64,
        #[source]
        source: ApplyError,
    },
    #[error("metadata log in {path} resumes at offset {log_offset}, but the snapshot ends at {snapshot_offset}")]
    LogGap { path: PathBuf, snapshot_offset: i64, log_offset: i64 },
    #[error("metadata belongs to cluster {stored}, not {expected}")]
    ClusterIdMismatch { stored: String, expected: String },
    #[error("{path} was written by node {stored}, but this node is {configured}")]
    NodeIdMismatch { path: PathBuf, stored: i32, configured: i32 },
    #[error("could not register broker {node_id}: {reason}")]
    Registration { node_id: i32, reason: String },
    #[error("{path}: {problem}")]
    MetaProperties { path: PathBuf, problem: &'static str },
}

impl MetadataError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        MetadataError::Io { op, path: path.into(), source }
    }
}
