//! The router: splits a request by partition owner, sends each owner shard one message with its
//! part (over the channel mesh, or directly when the owner is this shard), and gathers replies.
//!
//! ```text
//!  connection shard k                               owner shard j
//!  ─────────────────                                ─────────────
//!  decode ─▶ group parts by owner ──ShardRequest──▶ serve(): ordered part (append, offsets)
//!                                                    └─ spawned: await durability, reply
//!  await replies (oneshot) ◀─────────────────────── reply
//! ```
//! One message per request part per shard, never per record. Everything an owner does before its
//! first await happens in the order the messages were sent, which keeps a connection's appends to
//! one partition in order.

use fjord_engine::metrics::RetentionCause;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use fjord_engine::error::LogError;
use fjord_engine::partition::{Acks, Chunk, Isolation};
use fjord_engine::producer_state::AbortedTxn;
use fjord_engine::rt;
use fjord_engine::shard::PartitionSpec;
use fjord_engine::topic_config::TopicConfig;
use futures::channel::oneshot;
use futures::future::{select, select_all, Either};

use crate::context::ShardContext;

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
    /// A topic was deleted: drop its partitions' data on this shard.
    DropTopic {
        topic: String,
        partitions: i32,
        reply: oneshot::Sender<()>,
    },
    /// A group call for the owner of a `__consumer_offsets` partition.
    Group(crate::coordinator::GroupMessage),
    /// A topic's config changed: apply to open partitions.
    UpdateConfig {
        topic: String,
        config: TopicConfig,
    },
    /// A transaction call for the owner of a `__transaction_state` partition.
    Txn(crate::txn_coordinator::TxnMessage),
    /// End-transaction markers for partitions this shard owns; replies a code per part.
    WriteMarkers {
        parts: Vec<crate::txn_coordinator::MarkerPart>,
        marker: crate::txn_coordinator::Marker,
        reply: oneshot::Sender<Vec<i16>>,
    },
}

/// Handles a message from another shard. Awaited in arrival order per sending shard.
pub async fn serve(ctx: Rc<ShardContext>, request: ShardRequest) {
    match request {
        ShardRequest::Produce { parts, acks, reply } => {
            let pending = produce_local(&ctx, parts, acks).await;
            rt::spawn_detached(async move {
                let _ = reply.send(finish_produce(pending).await);
            });
        }
        ShardRequest::Fetch { parts, reply } => {
            let _ = reply.send(fetch_local(&ctx, parts).await);
        }
        ShardRequest::Watch { parts, isolation, reply } => {
            let ctx = ctx.clone();
            rt::spawn_detached(async move { watch_local(&ctx, parts, isolation, reply).await });
        }
        ShardRequest::ListOffsets { parts, reply } => {
            let _ = reply.send(list_offsets_local(&ctx, parts).await);
        }
        ShardRequest::DeleteRecords { parts, reply } => {
            let _ = reply.send(delete_records_local(&ctx, parts).await);
        }
        ShardRequest::DescribeProducers { parts, reply } => {
            let _ = reply.send(describe_producers_local(&ctx, parts).await);
        }
        ShardRequest::DropTopic { topic, partitions, reply } => {
            drop_topic_local(&ctx, &topic, partitions).await;
            let _ = reply.send(());
        }
        ShardRequest::Group(message) => crate::coordinator::Coordinator::handle(&ctx, message).await,
        ShardRequest::UpdateConfig { topic, config } => update_config_local(&ctx, &topic, config),
        ShardRequest::Txn(message) => crate::txn_coordinator::TxnCoordinator::handle(&ctx, message).await,
        ShardRequest::WriteMarkers { parts, marker, reply } => {
            crate::txn_coordinator::write_markers_local(&ctx, parts, marker, reply).await
        }
    }
}

/// Appends already made, waiting for durability: one entry per part, in order.
pub enum PendingProduce {
    Ticket(fjord_engine::partition::AppendTicket, i64),
    Failed(ProduceResult),
}

/// The ordered half of a produce on the owner: validate, assign offsets, queue.
pub async fn produce_local(ctx: &ShardContext, parts: Vec<ProducePart>, acks: Acks) -> Vec<PendingProduce> {
    let mut pending = Vec::with_capacity(parts.len());
    for part in parts {
        let opened = ctx.store.get_or_open(&part.topic, part.partition, &part.spec).await;
        let outcome = match opened {
            Ok(partition) => {
                if !partition.config_is(&part.spec.config) {
                    partition.set_config(part.spec.config.clone());
                }
                let log_start = partition.log_start_offset();
                partition.append(part.records, acks).await.map(|ticket| (ticket, log_start))
            }
            Err(error) => Err(error),
        };
        pending.push(match outcome {
            Ok((ticket, log_start)) => PendingProduce::Ticket(ticket, log_start),
            Err(error) => PendingProduce::Failed(produce_error(&part.topic, part.partition, &error)),
        });
    }
    pending
}

fn produce_error(topic: &str, partition: i32, error: &LogError) -> ProduceResult {
    if !matches!(error, LogError::Batch(_) | LogError::Producer(_)) {
        tracing::warn!(topic, partition, %error, "produce failed");
    }
    ProduceResult {
        error_code: error.kafka_error_code(),
        error_message: Some(error.to_string()),
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
    }
}

/// The second half: wait until each append is written (or synced).
pub async fn finish_produce(pending: Vec<PendingProduce>) -> Vec<ProduceResult> {
    let mut results = Vec::with_capacity(pending.len());
    for item in pending {
        results.push(match item {
            PendingProduce::Failed(result) => result,
            PendingProduce::Ticket(ticket, log_start_offset) => {
                let base_offset = ticket.base_offset;
                let log_append_time_ms = ticket.log_append_time_ms;
                match ticket.wait().await {
                    Ok(()) => {
                        ProduceResult { error_code: 0, error_message: None, base_offset, log_append_time_ms, log_start_offset }
                    }
                    Err(code) => ProduceResult {
                        error_code: code,
                        error_message: Some("the write to the log failed; the partition no longer accepts writes".into()),
                        base_offset: -1,
                        log_append_time_ms: -1,
                        log_start_offset: -1,
                    },
                }
            }
        });
    }
    results
}

pub async fn fetch_local(ctx: &ShardContext, parts: Vec<FetchPart>) -> Vec<FetchResult> {
    let mut results = Vec::with_capacity(parts.len());
    for part in parts {
        let result = match ctx.store.get_or_open(&part.topic, part.partition, &part.spec).await {
            Ok(partition) => match partition.read(part.fetch_offset, part.max_bytes, part.isolation) {
                Ok(read) => FetchResult {
                    error_code: 0,
                    high_watermark: read.high_watermark,
                    last_stable_offset: read.last_stable_offset,
                    log_start_offset: read.log_start_offset,
                    chunks: read.chunks,
                    aborted: read.aborted,
                },
                // As Kafka: an error partition carries no offsets.
                Err(error) => FetchResult::error(error.kafka_error_code()),
            },
            Err(error) => FetchResult::error(error.kafka_error_code()),
        };
        results.push(result);
    }
    results
}

/// Waits on this shard until one of `parts` has data past its offset, the requester gives up
/// (drops its receiver) or a bound passes.
pub async fn watch_local(
    ctx: &ShardContext,
    parts: Vec<(String, i32, i64)>,
    isolation: Isolation,
    mut reply: oneshot::Sender<()>,
) {
    const WATCH_BOUND: Duration = Duration::from_secs(60);
    let partitions: Vec<_> = parts
        .iter()
        .filter_map(|(topic, partition, offset)| ctx.store.get(topic, *partition).map(|found| (found, *offset)))
        .collect();
    if partitions.is_empty() {
        return;
    }
    let deadline = std::time::Instant::now() + WATCH_BOUND;
    loop {
        let readable_end = |partition: &fjord_engine::partition::Partition| match isolation {
            Isolation::ReadUncommitted => partition.high_watermark(),
            Isolation::ReadCommitted => partition.last_stable_offset(),
        };
        if partitions.iter().any(|(partition, offset)| readable_end(partition) > *offset || partition.is_poisoned()) {
            let _ = reply.send(());
            return;
        }
        if std::time::Instant::now() >= deadline || ctx.shutting_down.get() {
            return;
        }
        let arrivals = select_all(partitions.iter().map(|(partition, _)| Box::pin(partition.data_arrived.notified())));
        let shutdown = ctx.shutdown.notified();
        let canceled = reply.cancellation();
        let waiting = select(arrivals, select(Box::pin(canceled), Box::pin(shutdown)));
        match rt::timeout(Duration::from_secs(1), waiting).await {
            Some(Either::Right((Either::Left(_), _))) => return, // requester gone
            _ => continue,
        }
    }
}

pub async fn list_offsets_local(ctx: &ShardContext, parts: Vec<ListOffsetsPart>) -> Vec<ListOffsetsResult> {
    let mut results = Vec::with_capacity(parts.len());
    for part in parts {
        let partition = match ctx.store.get_or_open(&part.topic, part.partition, &part.spec).await {
            Ok(partition) => partition,
            Err(error) => {
                results.push(ListOffsetsResult {
                    error_code: error.kafka_error_code(),
                    offset: -1,
                    timestamp: -1,
                    leader_epoch: -1,
                });
                continue;
            }
        };
        let epoch = partition.leader_epoch();
        let found = match part.timestamp {
            -2 | -4 => Ok(Some((partition.log_start_offset(), -1))),
            // Latest tiered offset (KIP-1005): nothing is tiered.
            -5 => Ok(None),
            -1 if part.isolation == Isolation::ReadCommitted => Ok(Some((partition.last_stable_offset(), -1))),
            -1 => Ok(Some((partition.high_watermark(), -1))),
            -3 => partition.max_timestamp().map(|found| found.filter(|(offset, _)| *offset < partition.high_watermark())),
            timestamp => partition.offset_for_timestamp(timestamp).map(|found| {
                found
                    .filter(|(offset, _)| *offset < partition.high_watermark())
                    .map(|(offset, timestamp)| (offset.max(partition.log_start_offset()), timestamp))
            }),
        };
        results.push(match found {
            Ok(Some((offset, timestamp))) => ListOffsetsResult { error_code: 0, offset, timestamp, leader_epoch: epoch },
            Ok(None) => ListOffsetsResult { error_code: 0, offset: -1, timestamp: -1, leader_epoch: -1 },
            Err(error) => ListOffsetsResult { error_code: error.kafka_error_code(), offset: -1, timestamp: -1, leader_epoch: -1 },
        });
    }
    results
}

pub async fn delete_records_local(ctx: &ShardContext, parts: Vec<DeleteRecordsPart>) -> Vec<(i16, i64)> {
    let mut results = Vec::with_capacity(parts.len());
    for part in parts {
        let outcome = match ctx.store.get_or_open(&part.topic, part.partition, &part.spec).await {
            Ok(partition) => partition.delete_records(part.offset).await,
            Err(error) => Err(error),
        };
        results.push(match outcome {
            Ok((low_watermark, removed)) => {
                ctx.metrics().retention_removed(RetentionCause::StartOffset, removed.segments as u64, removed.bytes);
                tracing::info!(
                    topic = %part.topic,
                    partition = part.partition,
                    low_watermark,
                    removed_segments = removed.segments,
                    removed_bytes = removed.bytes,
                    "DeleteRecords moved the log start offset"
                );
                (0, low_watermark)
            }
            Err(error) => (error.kafka_error_code(), -1),
        });
    }
    results
}

pub async fn describe_producers_local(
    ctx: &ShardContext,
    parts: Vec<DescribeProducersPart>,
) -> Vec<Result<Vec<ProducerSummary>, i16>> {
    let mut results = Vec::with_capacity(parts.len());
    for part in parts {
        results.push(match ctx.store.get_or_open(&part.topic, part.partition, &part.spec).await {
            Ok(partition) => {
                let open = partition.ongoing_txns();
                Ok(partition
                    .producers()
                    .into_iter()
                    .map(|(producer_id, entry)| ProducerSummary {
                        producer_id,
                        epoch: entry.epoch,
                        last_sequence: entry.last_sequence(),
                        last_timestamp_ms: entry.last_timestamp_ms,
                        current_txn_start_offset: open
                            .iter()
                            .find(|(id, _, _)| *id == producer_id)
                            .map_or(-1, |(_, _, first_offset)| *first_offset),
                    })
                    .collect())
            }
            Err(error) => Err(error.kafka_error_code()),
        });
    }
    results
}

async fn drop_topic_local(ctx: &ShardContext, topic: &str, partitions: i32) {
    for partition in 0..partitions {
        if ctx.table.owner(topic, partition) != ctx.shard_id {
            continue;
        }
        if let Err(error) = ctx.store.remove(topic, partition).await {
            tracing::error!(topic, partition, %error, "could not remove partition data");
        }
    }
}

fn update_config_local(ctx: &ShardContext, topic: &str, config: TopicConfig) {
    for partition in ctx.store.partitions() {
        if &*partition.topic == topic {
            partition.set_config(config.clone());
        }
    }
}

/// Sends `make(parts)` to each owner shard (directly for this shard) and returns, per shard, the
/// receiver of its reply. Remote sends happen in order before this returns.
pub async fn fan_out<P, R>(
    ctx: &Rc<ShardContext>,
    by_shard: Vec<(usize, Vec<P>)>,
    make: impl Fn(Vec<P>, oneshot::Sender<R>) -> ShardRequest,
) -> Vec<oneshot::Receiver<R>> {
    let mut receivers = Vec::with_capacity(by_shard.len());
    for (shard, parts) in by_shard {
        let (sender, receiver) = oneshot::channel();
        let request = make(parts, sender);
        if shard == ctx.shard_id {
            serve(ctx.clone(), request).await;
        } else if ctx.mesh.send(shard, request).await.is_err() {
            tracing::debug!(shard, "owner shard stopped; its part of the request fails");
        }
        receivers.push(receiver);
    }
    receivers
}

/// Per owner shard: the request positions of its items, and (shard, items) for [`fan_out`].
pub type Split<P> = (Vec<Vec<usize>>, Vec<(usize, Vec<P>)>);

/// Groups items by owner shard: per shard, the items' positions in the request and the items.
/// Returns the positions (to put replies back in request order) and the parts for [`fan_out`].
pub fn split_by_owner<P>(items: Vec<(usize, P)>, owner: impl Fn(&P) -> usize) -> Split<P> {
    let mut orders: Vec<Vec<usize>> = Vec::new();
    let mut by_shard: Vec<(usize, Vec<P>)> = Vec::new();
    for (position, item) in items {
        let shard = owner(&item);
        match by_shard.iter().position(|(candidate, _)| *candidate == shard) {
            Some(index) => {
                orders[index].push(position);
                by_shard[index].1.push(item);
            }
            None => {
                orders.push(vec![position]);
                by_shard.push((shard, vec![item]));
            }
        }
    }
    (orders, by_shard)
}
