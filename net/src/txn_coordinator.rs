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
//! [`crate::coordinator`].

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use fjord_engine::batch::ControlType;
use fjord_engine::partition::{now_ms, Acks, AppendTicket, Partition};
use fjord_engine::rt::{self, Notify};
use fjord_group::txn::{self, MarkerJob, Outcome, Transactions, TxnConfig, TxnRecord, TxnReply};
use futures::channel::oneshot;
use kafka_protocol::messages::describe_transactions_response::TransactionState as DescribedTxn;
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTxn;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, InitProducerIdRequest, ListTransactionsRequest,
};

use crate::context::ShardContext;
use crate::coordinator::{self, OFFSETS_TOPIC};
use crate::router::ShardRequest;

pub const TXN_TOPIC: &str = "__transaction_state";
/// transaction.state.log.segment.bytes (Kafka: 100 MiB).
const TXN_SEGMENT_BYTES: u64 = 100 * 1024 * 1024;
/// How long a request waits for its partition to finish loading before it is answered anyway
/// (the state machine then says COORDINATOR_LOAD_IN_PROGRESS).
const LOAD_WAIT_MAX: Duration = Duration::from_secs(5);
/// Backoff between attempts to write a marker that failed with a retriable error.
const MARKER_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Transaction coordinator settings (transaction.*, transactional.id.expiration.ms).
#[derive(Debug, Clone)]
pub struct TxnSettings {
    pub config: TxnConfig,
    /// transaction.state.log.num.partitions.
    pub partitions: i32,
    /// transaction.abort.timed.out.transaction.cleanup.interval.ms.
    pub abort_check_interval: Duration,
}

impl Default for TxnSettings {
    fn default() -> Self {
        TxnSettings {
            config: TxnConfig { transaction_max_timeout_ms: 900_000, transactional_id_expiration_ms: 604_800_000 },
            partitions: 50,
            abort_check_interval: Duration::from_secs(10),
        }
    }
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

/// One shard's share of the transaction coordinator: the `__transaction_state` partitions it owns.
pub struct TxnCoordinator {
    settings: TxnSettings,
    partitions: RefCell<HashMap<i32, Rc<TxnPartition>>>,
    tick_started: Cell<bool>,
}

type Token = u64;

/// Replies and marker jobs waiting for their outcome's records to be durable.
struct Pending {
    ticket: Option<AppendTicket>,
    replies: Vec<(Token, TxnReply)>,
    markers: Vec<MarkerJob>,
}

/// One `__transaction_state` partition on its owner shard.
struct TxnPartition {
    index: i32,
    state: RefCell<Transactions>,
    log: RefCell<Option<Rc<Partition>>>,
    next_token: Cell<Token>,
    waiting: RefCell<HashMap<Token, oneshot::Sender<TxnAnswer>>>,
    queue: RefCell<VecDeque<Pending>>,
    queue_wake: Rc<Notify>,
    loaded: Rc<Notify>,
}

impl TxnCoordinator {
    pub fn new(settings: TxnSettings) -> TxnCoordinator {
        TxnCoordinator { settings, partitions: RefCell::new(HashMap::new()), tick_started: Cell::new(false) }
    }

    pub fn state_partitions(&self) -> i32 {
        self.settings.partitions
    }

    /// Handles a transaction call on the owner shard of its partition.
    pub async fn handle(ctx: &Rc<ShardContext>, message: TxnMessage) {
        let partition = ctx.transactions.partition(ctx, message.partition);
        if partition.state.borrow().is_loading() {
            let loaded = partition.loaded.notified();
            if partition.state.borrow().is_loading() {
                let _ = rt::timeout(LOAD_WAIT_MAX, loaded).await;
            }
        }
        let now = now_ms();
        let TxnMessage { call, api_version, reply, .. } = message;
        let token = partition.next_token.get();
        partition.next_token.set(token + 1);
        let outcome = {
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
                    let mut allocate = || allocate_producer_id(ctx);
                    state.init_producer_id(token, api_version, &request, now, &mut allocate)
                }
                TxnCall::AddPartitions(request) => {
                    let exists =
                        |topic: &str, index: i32| ctx.topic(topic).is_some_and(|info| index >= 0 && index < info.partition_count);
                    state.add_partitions(token, api_version, &request, now, &exists)
                }
                TxnCall::AddOffsets { request, offsets_partition } => {
                    state.add_offsets(token, api_version, &request, offsets_partition, now)
                }
                TxnCall::EndTxn(request) => state.end_txn(token, api_version, &request, now),
            }
        };
        partition.waiting.borrow_mut().insert(token, reply);
        partition.submit(outcome).await;
    }

    /// The state of `__transaction_state-<index>`, loading it from the log on first use.
    fn partition(&self, ctx: &Rc<ShardContext>, index: i32) -> Rc<TxnPartition> {
        if let Some(partition) = self.partitions.borrow().get(&index) {
            return partition.clone();
        }
        // One node: the coordinator epoch is the state partition's leader epoch, which stays 0.
        let coordinator_epoch =
            ctx.topic(TXN_TOPIC).and_then(|info| info.leader_epochs.get(index as usize).copied()).unwrap_or(0);
        let partition = Rc::new(TxnPartition {
            index,
            state: RefCell::new(Transactions::new_loading(self.settings.config.clone(), coordinator_epoch)),
            log: RefCell::new(None),
            next_token: Cell::new(1),
            waiting: RefCell::new(HashMap::new()),
            queue: RefCell::new(VecDeque::new()),
            queue_wake: Rc::new(Notify::default()),
            loaded: Rc::new(Notify::default()),
        });
        self.partitions.borrow_mut().insert(index, partition.clone());
        rt::spawn_detached(TxnPartition::drain(partition.clone(), ctx.clone()));
        let loading = partition.clone();
        let ctx_for_load = ctx.clone();
        rt::spawn_detached(async move { loading.load(&ctx_for_load).await });
        if !self.tick_started.replace(true) {
            rt::spawn_detached(run_ticks(ctx.clone()));
        }
        partition
    }

    /// Loads the `__transaction_state` partitions this shard owns (at start, so transactions
    /// left open time out and half-written markers are written again).
    pub fn load_owned(ctx: &Rc<ShardContext>) {
        let Some(info) = ctx.topic(TXN_TOPIC) else { return };
        for index in 0..info.partition_count {
            if ctx.table.owner(TXN_TOPIC, index) == ctx.shard_id {
                ctx.transactions.partition(ctx, index);
            }
        }
    }
}

fn allocate_producer_id(ctx: &ShardContext) -> Result<i64, i16> {
    let mut controller = ctx.controller.lock().map_err(|_| crate::api::codes::COORDINATOR_NOT_AVAILABLE)?;
    controller.next_producer_id().map_err(|error| {
        tracing::error!(%error, "cannot reserve producer ids");
        crate::api::codes::UNKNOWN_SERVER_ERROR
    })
}

impl TxnPartition {
    async fn load(self: Rc<Self>, ctx: &Rc<ShardContext>) {
        let started = std::time::Instant::now();
        let log = loop {
            match open_log(ctx, self.index).await {
                Ok(log) => break log,
                Err(error) => {
                    tracing::warn!(partition = self.index, error, "cannot open the transaction log yet; retrying");
                    rt::sleep(Duration::from_millis(500)).await;
                    if ctx.shutting_down.get() {
                        return;
                    }
                }
            }
        };
        let mut records = 0usize;
        coordinator::replay_log(&log, |record| {
            if record.control {
                return;
            }
            let Some(key) = record.key.as_deref() else { return };
            match TxnRecord::decode(key, record.value.as_deref()) {
                Ok(decoded) => {
                    self.state.borrow_mut().replay(&decoded);
                    records += 1;
                }
                Err(error) => tracing::warn!(
                    partition = self.index,
                    offset = record.offset,
                    ?error,
                    "skipping an undecodable transaction record"
                ),
            }
        })
        .await;
        *self.log.borrow_mut() = Some(log);
        let outcome = self.state.borrow_mut().finish_loading(now_ms());
        tracing::info!(
            partition = self.index,
            records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded transaction coordinator partition"
        );
        self.loaded.notify_all();
        self.submit(outcome).await;
    }

    /// Appends the outcome's records (acks=all) and queues its replies and markers behind them.
    async fn submit(&self, outcome: Outcome) {
        let Outcome { records, replies, markers } = outcome;
        let ticket = if records.is_empty() {
            None
        } else {
            let encoded: Vec<_> = records.iter().map(TxnRecord::encode).collect();
            let log = self.log.borrow().clone();
            let appended = match log {
                Some(log) => match coordinator::encode_batch(&encoded, None) {
                    Some(batch) => log.append(batch, Acks::Synced).await.map_err(|error| error.to_string()),
                    None => Err("cannot encode transaction records".to_string()),
                },
                None => Err("transaction log not open".to_string()),
            };
            match appended {
                Ok(ticket) => Some(ticket),
                Err(error) => {
                    tracing::error!(partition = self.index, error, "cannot persist transaction state; its replies are dropped");
                    for (token, _) in replies {
                        self.waiting.borrow_mut().remove(&token);
                    }
                    return;
                }
            }
        };
        if replies.is_empty() && markers.is_empty() && ticket.is_none() {
            return;
        }
        self.queue.borrow_mut().push_back(Pending { ticket, replies, markers });
        self.queue_wake.notify_all();
    }

    /// Sends replies in outcome order, each after its records are durable, then starts the
    /// outcome's marker jobs.
    async fn drain(self: Rc<Self>, ctx: Rc<ShardContext>) {
        loop {
            let next = self.queue.borrow_mut().pop_front();
            let Some(Pending { ticket, replies, markers }) = next else {
                self.queue_wake.notified().await;
                continue;
            };
            let durable = match ticket {
                Some(ticket) => ticket.wait().await.is_ok(),
                None => true,
            };
            if !durable {
                tracing::error!(partition = self.index, "transaction records were not persisted; replies and markers dropped");
            }
            let end_txn_acked = durable && replies.iter().any(|(_, reply)| matches!(reply, TxnReply::EndTxn(_)));
            for (token, reply) in replies {
                if let Some(sender) = self.waiting.borrow_mut().remove(&token) {
                    if durable {
                        let _ = sender.send(TxnAnswer::Reply(reply));
                    }
                }
            }
            if end_txn_acked && !markers.is_empty() && stop_after_end_txn_ack() {
                tracing::warn!(
                    partition = self.index,
                    "FJORD_DEBUG_STOP_AFTER_END_TXN_ACK: EndTxn acknowledged, markers never written"
                );
                std::future::pending::<()>().await;
            }
            if durable {
                for job in markers {
                    rt::spawn_detached(complete_transaction(ctx.clone(), self.clone(), job));
                }
            }
        }
    }
}

/// Test hook for the crash window between an EndTxn acknowledgement and its markers: with the
/// environment variable FJORD_DEBUG_STOP_AFTER_END_TXN_ACK set (to anything; read once per
/// process), a partition's drainer that has just sent an EndTxn reply (its PrepareCommit or
/// PrepareAbort record durable) parks forever instead of starting the markers, so a test can
/// SIGKILL the broker there and check that recovery completes the transaction. Never set in
/// production; unset, this costs one cached load per drained outcome.
fn stop_after_end_txn_ack() -> bool {
    static STOP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STOP.get_or_init(|| std::env::var_os("FJORD_DEBUG_STOP_AFTER_END_TXN_ACK").is_some())
}

/// Writes a job's markers until every partition has one (or is gone), then records the
/// transaction complete (Kafka's TransactionMarkerChannelManager, which also retries forever).
async fn complete_transaction(ctx: Rc<ShardContext>, partition: Rc<TxnPartition>, job: MarkerJob) {
    let marker = Marker {
        producer_id: job.producer_id,
        producer_epoch: job.producer_epoch,
        coordinator_epoch: job.coordinator_epoch,
        commit: job.commit,
    };
    let mut remaining = job.partitions.clone();
    let mut backoff = Duration::from_millis(50);
    while !remaining.is_empty() {
        let codes = write_markers(&ctx, &remaining, marker).await;
        let mut retry = Vec::new();
        for ((topic, index), code) in remaining.into_iter().zip(codes) {
            match code {
                crate::api::codes::NONE => {}
                // Deleted meanwhile: nothing left to mark.
                crate::api::codes::UNKNOWN_TOPIC_OR_PARTITION
                    if ctx.topic(&topic).is_none_or(|info| index >= info.partition_count) => {}
                crate::api::codes::INVALID_PRODUCER_EPOCH | crate::api::codes::TRANSACTION_COORDINATOR_FENCED => {
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
    partition.submit(outcome).await;
}

/// Writes `marker` to each partition through its owner shard; a Kafka error code per partition.
pub async fn write_markers(ctx: &Rc<ShardContext>, partitions: &[(String, i32)], marker: Marker) -> Vec<i16> {
    let mut codes = vec![crate::api::codes::NONE; partitions.len()];
    let mut routed = Vec::new();
    for (position, (topic, index)) in partitions.iter().enumerate() {
        match ctx.topic(topic) {
            Some(info) if *index >= 0 && *index < info.partition_count => {
                routed.push((position, MarkerPart { topic: topic.clone(), partition: *index, spec: info.spec(*index) }))
            }
            _ => codes[position] = crate::api::codes::UNKNOWN_TOPIC_OR_PARTITION,
        }
    }
    let (orders, by_shard) = crate::router::split_by_owner(routed, |part| ctx.table.owner(&part.topic, part.partition));
    let receivers =
        crate::router::fan_out(ctx, by_shard, |parts, reply| ShardRequest::WriteMarkers { parts, marker, reply }).await;
    for (receiver, order) in receivers.into_iter().zip(orders) {
        match receiver.await {
            Ok(replies) => {
                for (position, code) in order.into_iter().zip(replies) {
                    codes[position] = code;
                }
            }
            Err(_) => {
                for position in order {
                    codes[position] = crate::api::codes::COORDINATOR_NOT_AVAILABLE;
                }
            }
        }
    }
    codes
}

/// One partition a marker goes to.
pub struct MarkerPart {
    pub topic: String,
    pub partition: i32,
    pub spec: fjord_engine::shard::PartitionSpec,
}

/// On the owner shard: appends the marker to each part in order, then (spawned) waits for them
/// to be durable and replies. `__consumer_offsets` parts go through the group coordinator, which
/// applies or drops the transaction's offsets.
pub async fn write_markers_local(
    ctx: &Rc<ShardContext>,
    parts: Vec<MarkerPart>,
    marker: Marker,
    reply: oneshot::Sender<Vec<i16>>,
) {
    enum Waiting {
        Done(i16),
        Data(AppendTicket),
        Offsets(oneshot::Receiver<coordinator::GroupReply>),
    }
    let mut waiting = Vec::with_capacity(parts.len());
    for part in parts {
        if part.topic == OFFSETS_TOPIC {
            waiting.push(Waiting::Offsets(coordinator::start_txn_marker(ctx, part.partition, marker).await));
            continue;
        }
        let appended = match ctx.store.get_or_open(&part.topic, part.partition, &part.spec).await {
            Ok(partition) => {
                partition
                    .append_marker(marker.producer_id, marker.producer_epoch, marker.coordinator_epoch, marker.control())
                    .await
            }
            Err(error) => Err(error),
        };
        waiting.push(match appended {
            Ok(ticket) => Waiting::Data(ticket),
            Err(error) => Waiting::Done(error.kafka_error_code()),
        });
    }
    rt::spawn_detached(async move {
        let mut codes = Vec::with_capacity(waiting.len());
        for item in waiting {
            codes.push(match item {
                Waiting::Done(code) => code,
                Waiting::Data(ticket) => ticket.wait().await.err().unwrap_or(0),
                Waiting::Offsets(receiver) => match receiver.await {
                    Ok(coordinator::GroupReply::Marker(code)) => code,
                    _ => crate::api::codes::COORDINATOR_NOT_AVAILABLE,
                },
            });
        }
        let _ = reply.send(codes);
    });
}

/// Aborts transactions past their timeout and expires idle transactional ids, every
/// transaction.abort.timed.out.transaction.cleanup.interval.ms.
async fn run_ticks(ctx: Rc<ShardContext>) {
    let interval = ctx.transactions.settings.abort_check_interval;
    while !ctx.shutting_down.get() {
        let shutdown = ctx.shutdown.notified();
        let _ = rt::timeout(interval, shutdown).await;
        let partitions: Vec<Rc<TxnPartition>> = ctx.transactions.partitions.borrow().values().cloned().collect();
        for partition in partitions {
            if partition.state.borrow().is_loading() {
                continue;
            }
            let outcome = partition.state.borrow_mut().tick(now_ms());
            partition.submit(outcome).await;
        }
    }
}

async fn open_log(ctx: &Rc<ShardContext>, index: i32) -> Result<Rc<Partition>, String> {
    let info = ensure_txn_topic(ctx).await.map_err(|code| format!("transaction state topic unavailable (error {code})"))?;
    ctx.store.get_or_open(TXN_TOPIC, index, &info.spec(index)).await.map_err(|error| error.to_string())
}

/// Creates `__transaction_state` (compacted, transaction.state.log.num.partitions) if it does not
/// exist. Error: COORDINATOR_NOT_AVAILABLE when it cannot be created.
pub async fn ensure_txn_topic(ctx: &ShardContext) -> Result<Rc<crate::context::TopicInfo>, i16> {
    coordinator::ensure_internal_topic(ctx, TXN_TOPIC, ctx.transactions.state_partitions(), TXN_SEGMENT_BYTES).await
}

/// Sends a transaction call to the owner of `transactional_id`'s partition and waits for the
/// answer. Error: a Kafka error code for the whole request.
pub async fn route(ctx: &Rc<ShardContext>, transactional_id: &str, call: TxnCall, api_version: i16) -> Result<TxnAnswer, i16> {
    let info = ensure_txn_topic(ctx).await?;
    let partition = txn::partition_for(transactional_id, info.partition_count);
    call_partition(ctx, partition, call, api_version).await
}

/// Sends a transaction call to the owner of `__transaction_state-<partition>`.
pub async fn call_partition(ctx: &Rc<ShardContext>, partition: i32, call: TxnCall, api_version: i16) -> Result<TxnAnswer, i16> {
    let (reply, answer) = oneshot::channel();
    let message = TxnMessage { partition, call, api_version, reply };
    let owner = ctx.table.owner(TXN_TOPIC, partition);
    if owner == ctx.shard_id {
        TxnCoordinator::handle(ctx, message).await;
    } else if ctx.mesh.send(owner, ShardRequest::Txn(message)).await.is_err() {
        return Err(crate::api::codes::COORDINATOR_NOT_AVAILABLE);
    }
    answer.await.map_err(|_| crate::api::codes::COORDINATOR_NOT_AVAILABLE)
}
