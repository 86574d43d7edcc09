//! The messages shards send each other: one [`ShardRequest`] per owner shard and request part,
//! never per record. Plain data: the halves that make and serve them live with their API
//! (`crate::api::*`) and coordinator (`crate::coordinator::*`); the router only carries them.
//! A reply sender dropped without a reply means "the owner could not answer" (it stopped, or its
//! append failed); every receiver maps that to a Kafka error code.

use bytes::Bytes;
use fjord_engine::batch::ControlType;
use fjord_engine::partition::{Acks, Chunk, Isolation};
use fjord_engine::producer_state::AbortedTxn;
use fjord_engine::shard::PartitionSpec;
use fjord_group::classic::Reply;
use fjord_group::txn::TxnReply;
use futures::channel::oneshot;
use kafka_protocol::messages::describe_transactions_response::TransactionState as DescribedTxn;
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTxn;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupsRequest, DescribeGroupsRequest, EndTxnRequest,
    HeartbeatRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, ListTransactionsRequest,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, SyncGroupRequest, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};

pub struct ProducePart {
    pub topic: String,
    pub partition: i32,
    pub spec: PartitionSpec,
    pub records: Bytes,
}

#[derive(Debug, Clone, Default)]
pub struct ProduceResult {
    pub error_code: i16,
    pub error_message: Option<String>,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

pub struct FetchPart {
    pub topic: String,
    pub partition: i32,
    pub spec: PartitionSpec,
    pub fetch_offset: i64,
    pub max_bytes: usize,
    pub isolation: Isolation,
}

#[derive(Debug, Clone, Default)]
pub struct FetchResult {
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub chunks: Vec<Chunk>,
    /// read_committed: aborted transactions the data may hold.
    pub aborted: Vec<AbortedTxn>,
}

impl FetchResult {
    /// A partition answered with an error: no offsets, no data (as Kafka).
    pub fn error(error_code: i16) -> FetchResult {
        FetchResult { error_code, high_watermark: -1, last_stable_offset: -1, log_start_offset: -1, ..Default::default() }
    }
}

/// ListOffsets targets: -2 earliest, -1 latest, -3 max timestamp, else a timestamp.
pub struct ListOffsetsPart {
    pub topic: String,
    pub partition: i32,
    pub spec: PartitionSpec,
    pub timestamp: i64,
    /// read_committed: "latest" is the last stable offset (KIP-98).
    pub isolation: Isolation,
}

#[derive(Debug, Clone, Default)]
pub struct ListOffsetsResult {
    pub error_code: i16,
    pub offset: i64,
    pub timestamp: i64,
    pub leader_epoch: i32,
}

impl ListOffsetsResult {
    /// No offset found (-1 everywhere), with `error_code`.
    pub fn failed(error_code: i16) -> ListOffsetsResult {
        ListOffsetsResult { error_code, offset: -1, timestamp: -1, leader_epoch: -1 }
    }
}

/// DeleteRecords: move the log start offset of one partition to `offset` (-1: high watermark).
pub struct DeleteRecordsPart {
    pub topic: String,
    pub partition: i32,
    pub spec: PartitionSpec,
    pub offset: i64,
}

/// DescribeProducers: the producer state of one partition.
pub struct DescribeProducersPart {
    pub topic: String,
    pub partition: i32,
    pub spec: PartitionSpec,
}

/// OffsetForLeaderEpoch: where `leader_epoch` ends in one partition's log.
pub struct OffsetForLeaderEpochPart {
    pub topic: String,
    pub partition: i32,
    pub spec: PartitionSpec,
    /// The epoch the client believes current (-1: not checked).
    pub current_leader_epoch: i32,
    pub leader_epoch: i32,
}

/// A partition's OffsetForLeaderEpoch answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    pub error_code: i16,
    pub leader_epoch: i32,
    pub end_offset: i64,
}

impl EpochEnd {
    /// No epoch found (Kafka's -1 and -1), with `error_code`.
    pub fn failed(error_code: i16) -> EpochEnd {
        EpochEnd { error_code, leader_epoch: -1, end_offset: -1 }
    }
}

/// A part addressed to the shard owning one partition: that partition, and the message that
/// carries such parts to their owner, which answers each with one `Answer`.
pub trait PartitionPart: Sized {
    type Answer;
    fn partition(&self) -> (&str, i32);
    /// How to open the partition if the owner has not yet.
    fn spec(&self) -> &PartitionSpec;
    fn request(parts: Vec<Self>, reply: oneshot::Sender<Vec<Self::Answer>>) -> ShardRequest;
}

macro_rules! partition_parts {
    ($($part:ty => $variant:ident($answer:ty);)*) => {$(
        impl PartitionPart for $part {
            type Answer = $answer;
            fn partition(&self) -> (&str, i32) {
                (&self.topic, self.partition)
            }
            fn spec(&self) -> &PartitionSpec {
                &self.spec
            }
            fn request(parts: Vec<Self>, reply: oneshot::Sender<Vec<$answer>>) -> ShardRequest {
                ShardRequest::$variant { parts, reply }
            }
        }
    )*};
}

partition_parts! {
    ListOffsetsPart => ListOffsets(ListOffsetsResult);
    DeleteRecordsPart => DeleteRecords((i16, i64));
    DescribeProducersPart => DescribeProducers(Result<Vec<ProducerSummary>, i16>);
    OffsetForLeaderEpochPart => OffsetForLeaderEpoch(EpochEnd);
}

/// One active producer of a partition, as DescribeProducers reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSummary {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp_ms: i64,
    /// First offset of its open transaction on the partition, or -1.
    pub current_txn_start_offset: i64,
}

/// A message to the shard that owns the partitions named in it.
pub enum ShardRequest {
    Produce {
        parts: Vec<ProducePart>,
        acks: Acks,
        reply: oneshot::Sender<Vec<ProduceResult>>,
    },
    Fetch {
        parts: Vec<FetchPart>,
        reply: oneshot::Sender<Vec<FetchResult>>,
    },
    /// Reply once any partition's readable end (high watermark, or last stable offset for
    /// read_committed) passes its offset (long-poll fetch).
    Watch {
        parts: Vec<(String, i32, i64)>,
        isolation: Isolation,
        reply: oneshot::Sender<()>,
    },
    ListOffsets {
        parts: Vec<ListOffsetsPart>,
        reply: oneshot::Sender<Vec<ListOffsetsResult>>,
    },
    /// Replies (error code, new low watermark) per part.
    DeleteRecords {
        parts: Vec<DeleteRecordsPart>,
        reply: oneshot::Sender<Vec<(i16, i64)>>,
    },
    /// Replies, per part, the partition's producers or an error code.
    DescribeProducers {
        parts: Vec<DescribeProducersPart>,
        reply: oneshot::Sender<Vec<Result<Vec<ProducerSummary>, i16>>>,
    },
    /// Replies, per part, where the asked epoch ends.
    OffsetForLeaderEpoch {
        parts: Vec<OffsetForLeaderEpochPart>,
        reply: oneshot::Sender<Vec<EpochEnd>>,
    },
    /// A topic was deleted: drop its partitions' data on this shard.
    DropTopic {
        topic: String,
        partitions: i32,
        reply: oneshot::Sender<()>,
    },
    /// A group call for the owner of a `__consumer_offsets` partition.
    Group(GroupMessage),
    /// A transaction call for the owner of a `__transaction_state` partition.
    Txn(TxnMessage),
    /// End-transaction markers for partitions this shard owns; replies a code per part.
    WriteMarkers {
        parts: Vec<MarkerPart>,
        marker: Marker,
        reply: oneshot::Sender<Vec<i16>>,
    },
}

/// A group request for the owner of one `__consumer_offsets` partition.
pub enum GroupCall {
    Join(JoinGroupRequest),
    Sync(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    Leave(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    Describe(DescribeGroupsRequest),
    List(ListGroupsRequest),
    Delete(DeleteGroupsRequest),
    OffsetDelete(OffsetDeleteRequest),
    /// KIP-848 ConsumerGroupHeartbeat.
    ConsumerHeartbeat(ConsumerGroupHeartbeatRequest),
    /// KIP-848 ConsumerGroupDescribe of one group.
    ConsumerDescribe(ConsumerGroupDescribeRequest),
    /// Offsets committed inside a transaction: pending until the producer's marker.
    TxnOffsetCommit(TxnOffsetCommitRequest),
    /// The transaction coordinator's end-transaction marker for this partition.
    TxnMarker(Marker),
    /// These topics were deleted: their offsets go from every group of this partition.
    TopicsDeleted(Vec<String>),
}

/// The coordinator's answer to a [`GroupCall`].
pub enum GroupReply {
    Classic(Reply),
    ConsumerHeartbeat(ConsumerGroupHeartbeatResponse),
    ConsumerDescribe(ConsumerGroupDescribeResponse),
    TxnOffsetCommit(TxnOffsetCommitResponse),
    /// The marker is durable (0) or a Kafka error code.
    Marker(i16),
    /// The call's records are durable.
    Done,
}

pub struct GroupMessage {
    pub partition: i32,
    pub call: GroupCall,
    pub api_version: i16,
    pub client_id: String,
    pub client_host: String,
    /// Dropped without a reply when the coordinator cannot answer (its append failed, it stopped).
    pub reply: oneshot::Sender<GroupReply>,
}

/// A transaction call for the owner of one `__transaction_state` partition.
pub enum TxnCall {
    InitProducerId(InitProducerIdRequest),
    /// v0–3, or v4+ holding exactly one transaction (the handler splits batches).
    AddPartitions(AddPartitionsToTxnRequest),
    AddOffsets {
        request: AddOffsetsToTxnRequest,
        offsets_partition: i32,
    },
    EndTxn(EndTxnRequest),
    /// KIP-890: may this producer write these partitions in its open transaction?
    Verify {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
    },
    List(ListTransactionsRequest),
    Describe(String),
}

/// The coordinator's answer to a [`TxnCall`].
pub enum TxnAnswer {
    Reply(TxnReply),
    /// Per verified partition: 0 or a Kafka error code.
    Verified(Vec<i16>),
    /// The partition's transactions, or an error code (loading).
    Listed(Result<Vec<ListedTxn>, i16>),
    Described(DescribedTxn),
}

pub struct TxnMessage {
    pub partition: i32,
    pub call: TxnCall,
    pub api_version: i16,
    /// Dropped without a reply when the coordinator cannot answer (its append failed).
    pub reply: oneshot::Sender<TxnAnswer>,
}

/// An end-transaction marker to write.
#[derive(Debug, Clone, Copy)]
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub commit: bool,
}

impl Marker {
    pub fn control(&self) -> ControlType {
        if self.commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        }
    }
}

/// One partition a marker goes to.
pub struct MarkerPart {
    pub topic: String,
    pub partition: i32,
    pub spec: PartitionSpec,
}
