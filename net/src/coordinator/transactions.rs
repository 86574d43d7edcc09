//! The transaction coordinator on its shards (KIP-98): `fjord_group::txn`'s pure state machine,
//! driven by the shard that owns the `__transaction_state` partition a transactional id hashes
//! to, persisted as records in that partition and rebuilt from it on start. Markers go to the
//! owners of the transaction's partitions as control batches.
//!
//! ```text
//!  InitProducerId / AddPartitionsToTxn / AddOffsetsToTxn / EndTxn   (any shard)
//!        │ mesh: owner of __transaction_state-p, p = hash(transactional id) % N
//!        ▼
//!  Transactions[p] → Outcome { records, replies, markers }
//!        records ──▶ append (acks=all) ──▶ replies ──▶ each MarkerJob:
//!              WriteMarkers to the partitions' owners (control batches, acks=all; the
//!              __consumer_offsets ones through the group coordinator, which then makes the
//!              transaction's offsets visible) ──▶ markers_written ──▶ Complete* record
//!  tick task: transactions past their timeout are aborted (epoch bump), idle ids expire
//! ```
//! Replies of one partition leave in the order their outcomes were made, each after its own
//! records and all earlier ones are durable (one drainer task per partition), as in
//! [`super`].

use std::rc::Rc;
use std::time::Duration;

use fjord_engine::partition::now_ms;
use fjord_engine::rt;
use fjord_group::txn::{self, MarkerJob, Outcome, Transactions, TxnRecord, TxnReply};
use futures::channel::oneshot;
use kafka_protocol::records::Record as WireRecord;

use super::runtime::{CoordinatorPartition, CoordinatorPartitions, CoordinatorState, InternalTopic};
use crate::codes;
use crate::context::{ShardContext, TopicInfo};
use crate::message::{Marker, MarkerPart, ShardRequest, TxnAnswer, TxnCall, TxnMessage};
use crate::router;
use crate::settings::TxnSettings;

pub const TXN_TOPIC: &str = "__transaction_state";
/// transaction.state.log.segment.bytes (Kafka: 100 MiB).
const TXN_SEGMENT_BYTES: u64 = 100 * 1024 * 1024;
/// Backoff between attempts to write a marker that failed with a retriable error.
const MARKER_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

type Step = super::runtime::Step<Transactions>;
type Partition = CoordinatorPartition<Transactions>;

impl From<Outcome> for Step {
    fn from(outcome: Outcome) -> Step {
        let after_end_txn_ack = outcome.replies.iter().any(|(_, reply)| matches!(reply, TxnReply::EndTxn(_)));
        Step {
            records: outcome.records.iter().map(TxnRecord::encode).collect(),
            producer: None,
            answers: outcome.replies.into_iter().map(|(token, reply)| (token, TxnAnswer::Reply(reply))).collect(),
            follow_ups: outcome.markers.into_iter().map(|job| MarkerFollowUp { job, after_end_txn_ack }).collect(),
        }
    }
}

/// A transaction's markers to write once the outcome that decided it is durable.
pub struct MarkerFollowUp {
    job: MarkerJob,
    /// The outcome answered an EndTxn (the test hook below stops exactly there).
    after_end_txn_ack: bool,
}

impl CoordinatorState for Transactions {
    type Answer = TxnAnswer;
    type FollowUp = MarkerFollowUp;
    const TOPIC: &'static str = TXN_TOPIC;
    const KIND: &'static str = "transaction";

    fn is_loading(&self) -> bool {
        Transactions::is_loading(self)
    }

    fn replay(&mut self, partition: i32, record: &WireRecord) -> usize {
        if record.control {
            return 0;
        }
        let Some(key) = record.key.as_deref() else { return 0 };
        match TxnRecord::decode(key, record.value.as_deref()) {
            Ok(decoded) => {
                Transactions::replay(self, &decoded);
                1
            }
            Err(error) => {
                tracing::warn!(partition, offset = record.offset, ?error, "skipping an undecodable transaction record");
                0
            }
        }
    }

    fn finish_loading(&mut self, now: i64) -> Step {
        Transactions::finish_loading(self, now).into()
    }
}

/// One shard's share of the transaction coordinator: the `__transaction_state` partitions it
/// owns. Lives on one shard.
pub struct TxnCoordinator {
    ctx: Rc<ShardContext>,
    settings: TxnSettings,
    partitions: CoordinatorPartitions<Transactions>,
}

impl TxnCoordinator {
    pub fn new(ctx: Rc<ShardContext>, settings: TxnSettings) -> Rc<TxnCoordinator> {
        let topic = InternalTopic { name: TXN_TOPIC, partitions: settings.partitions, segment_bytes: TXN_SEGMENT_BYTES };
        Rc::new(TxnCoordinator { partitions: CoordinatorPartitions::new(ctx.clone(), topic), ctx, settings })
    }

    /// `__transaction_state`, created if it does not exist.
    pub async fn ensure_topic(&self) -> Result<Rc<TopicInfo>, i16> {
        self.partitions.ensure_topic().await
    }

    /// Handles a transaction call on the owner shard of its partition.
    pub async fn handle(self: &Rc<Self>, message: TxnMessage) {
        let partition = self.partition(message.partition);
        partition.wait_loaded().await;
        let now = now_ms();
        let TxnMessage { call, api_version, reply, .. } = message;
        // Reserved before the state machine runs: the controller's reservation is blocking
        // work, done on a blocking thread, never under the state's borrow.
        let producer_id = match &call {
            TxnCall::InitProducerId(_) => Some(crate::admin::next_producer_id(&self.ctx).await),
            _ => None,
        };
        let token = partition.next_token();
        let step: Step = {
            let mut state = partition.state.borrow_mut();
            match call {
                TxnCall::Verify { transactional_id, producer_id, producer_epoch, partitions } => {
                    let codes = partitions
                        .iter()
                        .map(|(topic, index)| {
                            state.verify(&transactional_id, producer_id, producer_epoch, topic, *index).err().unwrap_or(0)
                        })
                        .collect();
                    let _ = reply.send(TxnAnswer::Verified(codes));
                    return;
                }
                TxnCall::List(request) => {
                    let listed = match state.list_error(&request) {
                        Some(code) => Err(code),
                        None => Ok(state.list(&request, now)),
                    };
                    let _ = reply.send(TxnAnswer::Listed(listed));
                    return;
                }
                TxnCall::Describe(transactional_id) => {
                    let _ = reply.send(TxnAnswer::Described(state.describe(&transactional_id)));
                    return;
                }
                TxnCall::InitProducerId(request) => {
                    let mut reserved = producer_id;
                    let mut allocate = || reserved.take().unwrap_or(Err(codes::COORDINATOR_NOT_AVAILABLE));
                    state.init_producer_id(token, api_version, &request, now, &mut allocate)
                }
                TxnCall::AddPartitions(request) => {
                    let ctx = &self.ctx;
                    let exists =
                        |topic: &str, index: i32| ctx.topic(topic).is_some_and(|info| index >= 0 && index < info.partition_count);
                    state.add_partitions(token, api_version, &request, now, &exists)
                }
                TxnCall::AddOffsets { request, offsets_partition } => {
                    state.add_offsets(token, api_version, &request, offsets_partition, now)
                }
                TxnCall::EndTxn(request) => state.end_txn(token, api_version, &request, now),
            }
            .into()
        };
        partition.wait_for(token, reply);
        partition.submit(step).await;
    }

    /// The state of `__transaction_state-<index>`, loading it from the log on first use.
    fn partition(self: &Rc<Self>, index: i32) -> Rc<Partition> {
        if let Some(partition) = self.partitions.get(index) {
            return partition;
        }
        // One node: the coordinator epoch is the state partition's leader epoch, which stays 0.
        let coordinator_epoch =
            self.ctx.topic(TXN_TOPIC).and_then(|info| info.leader_epochs.get(index as usize).copied()).unwrap_or(0);
        let state = Transactions::new_loading(self.settings.config.clone(), coordinator_epoch);
        let coordinator = Rc::downgrade(self);
        let partition = self.partitions.start(index, state, move |partition, follow_ups| {
            let Some(coordinator) = coordinator.upgrade() else { return };
            for MarkerFollowUp { job, after_end_txn_ack } in follow_ups {
                if after_end_txn_ack && stop_after_end_txn_ack() {
                    tracing::warn!(
                        partition = partition.index,
                        "FJORD_DEBUG_STOP_AFTER_END_TXN_ACK: EndTxn acknowledged, markers never written"
                    );
                    continue;
                }
                rt::spawn_detached(complete_transaction(coordinator.clone(), partition.clone(), job));
            }
        });
        self.partitions.spawn_ticks_once(|| run_ticks(self.clone()));
        partition
    }

    /// Loads the `__transaction_state` partitions this shard owns (at start, so transactions
    /// left open time out and half-written markers are written again).
    pub fn load_owned(self: &Rc<Self>) {
        for index in self.partitions.owned() {
            self.partition(index);
        }
    }

    /// Sends a transaction call to the owner of `transactional_id`'s partition and waits for the
    /// answer. Error: a Kafka error code for the whole request.
    pub async fn route(self: &Rc<Self>, transactional_id: &str, call: TxnCall, api_version: i16) -> Result<TxnAnswer, i16> {
        let info = self.ensure_topic().await?;
        let partition = txn::partition_for(transactional_id, info.partition_count);
        self.call_partition(partition, call, api_version).await
    }

    /// Sends a transaction call to the owner of `__transaction_state-<partition>`.
    pub async fn call_partition(self: &Rc<Self>, partition: i32, call: TxnCall, api_version: i16) -> Result<TxnAnswer, i16> {
        let (reply, answer) = oneshot::channel();
        let message = TxnMessage { partition, call, api_version, reply };
        self.partitions
            .call_owner(partition, message, answer, ShardRequest::Txn, async |message| self.handle(message).await)
            .await
    }
}

/// Test hook for the crash window between an EndTxn acknowledgement and its markers: with the
/// environment variable FJORD_DEBUG_STOP_AFTER_END_TXN_ACK set (to anything; read once per
/// process), the markers of an outcome that has just answered an EndTxn (its PrepareCommit or
/// PrepareAbort record durable) are never started, so a test can
/// SIGKILL the broker there and check that recovery completes the transaction. Never set in
/// production; unset, this costs one cached load per drained outcome.
fn stop_after_end_txn_ack() -> bool {
    static STOP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STOP.get_or_init(|| std::env::var_os("FJORD_DEBUG_STOP_AFTER_END_TXN_ACK").is_some())
}

/// Writes a job's markers until every partition has one (or is gone), then records the
/// transaction complete (Kafka's TransactionMarkerChannelManager, which also retries forever).
async fn complete_transaction(coordinator: Rc<TxnCoordinator>, partition: Rc<Partition>, job: MarkerJob) {
    let ctx = &coordinator.ctx;
    let marker = Marker {
        producer_id: job.producer_id,
        producer_epoch: job.producer_epoch,
        coordinator_epoch: job.coordinator_epoch,
        commit: job.commit,
    };
    let mut remaining = job.partitions.clone();
    let mut backoff = Duration::from_millis(50);
    while !remaining.is_empty() {
        let codes = write_markers(ctx, &remaining, marker).await;
        let mut retry = Vec::new();
        for ((topic, index), code) in remaining.into_iter().zip(codes) {
            match code {
                codes::NONE => {}
                // Deleted meanwhile: nothing left to mark.
                codes::UNKNOWN_TOPIC_OR_PARTITION if ctx.topic(&topic).is_none_or(|info| index >= info.partition_count) => {}
                codes::INVALID_PRODUCER_EPOCH | codes::TRANSACTION_COORDINATOR_FENCED => {
                    tracing::warn!(
                        transactional_id = %job.transactional_id,
                        topic,
                        partition = index,
                        code,
                        "a newer producer epoch or coordinator already decided this partition; marker skipped"
                    );
                }
                code => {
                    tracing::warn!(transactional_id = %job.transactional_id, topic, partition = index, code, "marker write failed; retrying");
                    retry.push((topic, index));
                }
            }
        }
        remaining = retry;
        if !remaining.is_empty() {
            if ctx.shutting_down.get() {
                return;
            }
            rt::sleep(backoff).await;
            backoff = (backoff * 2).min(MARKER_RETRY_BACKOFF_MAX);
        }
    }
    let outcome =
        partition.state.borrow_mut().markers_written(&job.transactional_id, job.producer_id, job.producer_epoch, now_ms());
    partition.submit(outcome.into()).await;
}

/// Writes `marker` to each partition through its owner shard; a Kafka error code per partition.
pub async fn write_markers(ctx: &Rc<ShardContext>, partitions: &[(String, i32)], marker: Marker) -> Vec<i16> {
    let mut codes = vec![codes::NONE; partitions.len()];
    let mut routed = Vec::new();
    for (position, (topic, index)) in partitions.iter().enumerate() {
        match ctx.topic(topic) {
            Some(info) if *index >= 0 && *index < info.partition_count => {
                routed.push((position, MarkerPart { topic: topic.clone(), partition: *index, spec: info.spec(*index) }))
            }
            _ => codes[position] = codes::UNKNOWN_TOPIC_OR_PARTITION,
        }
    }
    let split = router::split_by_owner(routed, |part| ctx.table.owner(&part.topic, part.partition));
    let replies = router::call(ctx, split, |parts, reply| ShardRequest::WriteMarkers { parts, marker, reply }).await;
    for (position, code) in replies {
        codes[position] = code.unwrap_or(codes::COORDINATOR_NOT_AVAILABLE);
    }
    codes
}

/// Aborts transactions past their timeout and expires idle transactional ids, every
/// transaction.abort.timed.out.transaction.cleanup.interval.ms.
async fn run_ticks(coordinator: Rc<TxnCoordinator>) {
    let ctx = &coordinator.ctx;
    while !ctx.shutting_down.get() {
        let shutdown = ctx.shutdown.notified();
        let _ = rt::timeout(coordinator.settings.abort_check_interval, shutdown).await;
        for partition in coordinator.partitions.all() {
            let step: Step = {
                let mut state = partition.state.borrow_mut();
                if state.is_loading() {
                    continue;
                }
                state.tick(now_ms()).into()
            };
            partition.submit(step).await;
        }
    }
}
