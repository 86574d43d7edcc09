//! The runtime both coordinators run on (see the module above for the picture).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_engine::partition::{now_ms, Acks, AppendTicket, Partition};
use fjord_engine::rt::{self, Notify};
use futures::channel::oneshot;
use kafka_protocol::records::{
    Compression, Record as WireRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::admin::{self, NewTopic};
use crate::codes;
use crate::context::{ShardContext, TopicInfo};
use crate::message::ShardRequest;

/// How long a call waits for its partition to finish loading before the state machine answers
/// anyway (COORDINATOR_LOAD_IN_PROGRESS; librdkafka's admin calls do not retry that error).
const LOAD_WAIT_MAX: Duration = Duration::from_secs(5);
/// Pause between attempts to open a coordinator log that cannot be opened yet.
const OPEN_RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// Bytes per read while loading a partition.
const LOAD_READ_BYTES: usize = 1 << 20;

/// Orders a call's answer among the partition's outcomes.
pub type Token = u64;

/// A coordinator's state machine for one partition of its internal topic. Lives on the
/// partition's owner shard.
pub trait CoordinatorState: Sized + 'static {
    /// What a caller waits for.
    type Answer: 'static;
    /// Work an outcome starts once its records are durable (the transaction markers).
    type FollowUp: 'static;
    /// The internal topic (`__consumer_offsets`, `__transaction_state`).
    const TOPIC: &'static str;
    /// The coordinator's name in logs.
    const KIND: &'static str;

    fn is_loading(&self) -> bool;
    /// Applies one record read back from the log (control records included); returns how many
    /// records changed state.
    fn replay(&mut self, partition: i32, record: &WireRecord) -> usize;
    /// Loading is over: what the state machine must write or answer first.
    fn finish_loading(&mut self, now: i64) -> Step<Self>;
}

/// One step of a state machine: records (key, value) to append as one batch, then its answers
/// and follow-ups, released once the records are durable.
pub struct Step<S: CoordinatorState> {
    pub records: Vec<(Bytes, Option<Bytes>)>,
    /// The records belong to this producer's transaction (TxnOffsetCommit).
    pub producer: Option<(i64, i16)>,
    pub answers: Vec<(Token, S::Answer)>,
    pub follow_ups: Vec<S::FollowUp>,
}

impl<S: CoordinatorState> Default for Step<S> {
    fn default() -> Self {
        Step { records: Vec::new(), producer: None, answers: Vec::new(), follow_ups: Vec::new() }
    }
}

impl<S: CoordinatorState> Step<S> {
    pub fn answer(token: Token, answer: S::Answer) -> Step<S> {
        Step { answers: vec![(token, answer)], ..Step::default() }
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.answers.is_empty() && self.follow_ups.is_empty()
    }
}

/// An outcome waiting for its records (if any) to be durable.
struct Pending<S: CoordinatorState> {
    ticket: Option<AppendTicket>,
    answers: Vec<(Token, S::Answer)>,
    follow_ups: Vec<S::FollowUp>,
}

/// One partition of a coordinator's internal topic on its owner shard: the state machine, its
/// log once loaded, and the answers waiting for durability.
pub struct CoordinatorPartition<S: CoordinatorState> {
    pub index: i32,
    pub state: RefCell<S>,
    log: RefCell<Option<Rc<Partition>>>,
    next_token: Cell<Token>,
    waiting: RefCell<HashMap<Token, oneshot::Sender<S::Answer>>>,
    queue: RefCell<VecDeque<Pending<S>>>,
    queue_wake: Rc<Notify>,
    /// Fired when loading is over.
    loaded: Rc<Notify>,
}

impl<S: CoordinatorState> CoordinatorPartition<S> {
    fn new(index: i32, state: S) -> Rc<Self> {
        Rc::new(CoordinatorPartition {
            index,
            state: RefCell::new(state),
            log: RefCell::new(None),
            next_token: Cell::new(1),
            waiting: RefCell::new(HashMap::new()),
            queue: RefCell::new(VecDeque::new()),
            queue_wake: Rc::new(Notify::default()),
            loaded: Rc::new(Notify::default()),
        })
    }

    /// Waits (up to [`LOAD_WAIT_MAX`]) for loading to end.
    pub async fn wait_loaded(&self) {
        if self.state.borrow().is_loading() {
            let loaded = self.loaded.notified();
            if self.state.borrow().is_loading() {
                let _ = rt::timeout(LOAD_WAIT_MAX, loaded).await;
            }
        }
    }

    /// A token for a call whose answer goes to `reply` once its outcome is durable.
    pub fn register(&self, reply: oneshot::Sender<S::Answer>) -> Token {
        let token = self.next_token();
        self.wait_for(token, reply);
        token
    }

    /// The next call's token.
    pub fn next_token(&self) -> Token {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        token
    }

    /// The answer of `token`'s outcome goes to `reply` once the outcome is durable.
    pub fn wait_for(&self, token: Token, reply: oneshot::Sender<S::Answer>) {
        let previous = self.waiting.borrow_mut().insert(token, reply);
        assert!(previous.is_none(), "token {token} of {}-{} answered twice", S::TOPIC, self.index);
    }

    /// The partition's log, once loaded.
    pub fn log(&self) -> Option<Rc<Partition>> {
        self.log.borrow().clone()
    }

    /// Appends the step's records (acks=all) and queues its answers and follow-ups behind them.
    /// If the append fails, the step's callers get no answer (their senders drop).
    pub async fn submit(&self, step: Step<S>) {
        if step.is_empty() {
            return;
        }
        let Step { records, producer, answers, follow_ups } = step;
        let ticket = if records.is_empty() { None } else { self.append(&records, producer).await };
        if ticket.is_none() && !records.is_empty() {
            for (token, _) in answers {
                self.waiting.borrow_mut().remove(&token);
            }
            return;
        }
        self.queue_behind(ticket, answers, follow_ups);
    }

    /// Queues answers (and follow-ups) behind `ticket`'s durability, in outcome order.
    pub fn queue_behind(&self, ticket: Option<AppendTicket>, answers: Vec<(Token, S::Answer)>, follow_ups: Vec<S::FollowUp>) {
        self.queue.borrow_mut().push_back(Pending { ticket, answers, follow_ups });
        self.queue_wake.notify_all();
    }

    async fn append(&self, records: &[(Bytes, Option<Bytes>)], producer: Option<(i64, i16)>) -> Option<AppendTicket> {
        let log = self.log();
        let appended = match (log, encode_batch(records, producer)) {
            (None, _) => Err(format!("{} log not open", S::KIND)),
            (_, None) => Err(format!("cannot encode {} records", S::KIND)),
            (Some(log), Some(batch)) if producer.is_some() => {
                log.append_as_coordinator(batch, Acks::Synced).await.map_err(|error| error.to_string())
            }
            (Some(log), Some(batch)) => log.append(batch, Acks::Synced).await.map_err(|error| error.to_string()),
        };
        match appended {
            Ok(ticket) => Some(ticket),
            Err(error) => {
                tracing::error!(
                    kind = S::KIND,
                    partition = self.index,
                    error,
                    "cannot persist coordinator state; its answers are dropped"
                );
                None
            }
        }
    }

    /// Sends answers in outcome order, each after its records are durable, then hands the
    /// outcome's follow-ups to `follow_up`. Runs as long as the shard.
    async fn drain(self: Rc<Self>, follow_up: impl Fn(&Rc<Self>, Vec<S::FollowUp>) + 'static) {
        loop {
            let next = self.queue.borrow_mut().pop_front();
            let Some(Pending { ticket, answers, follow_ups }) = next else {
                self.queue_wake.notified().await;
                continue;
            };
            let durable = match ticket {
                Some(ticket) => ticket.wait().await.is_ok(),
                None => true,
            };
            if !durable {
                tracing::error!(
                    kind = S::KIND,
                    partition = self.index,
                    "coordinator records were not persisted; answers dropped"
                );
            }
            for (token, answer) in answers {
                let sender = self.waiting.borrow_mut().remove(&token);
                if let (Some(sender), true) = (sender, durable) {
                    let _ = sender.send(answer);
                }
            }
            if durable && !follow_ups.is_empty() {
                follow_up(&self, follow_ups);
            }
        }
    }

    /// Opens the log (retrying until it can, or the shard stops), replays it into the state
    /// machine, then ends loading.
    async fn load(self: Rc<Self>, ctx: Rc<ShardContext>, topic: InternalTopic) {
        let started = std::time::Instant::now();
        let log = loop {
            match topic.open(&ctx, self.index).await {
                Ok(log) => break log,
                Err(error) => {
                    tracing::warn!(
                        kind = S::KIND,
                        partition = self.index,
                        error,
                        "cannot open the coordinator log yet; retrying"
                    );
                    rt::sleep(OPEN_RETRY_BACKOFF).await;
                    if ctx.shutting_down.get() {
                        return;
                    }
                }
            }
        };
        let mut records = 0usize;
        replay_log(&log, |record| records += self.state.borrow_mut().replay(self.index, record)).await;
        *self.log.borrow_mut() = Some(log);
        let step = self.state.borrow_mut().finish_loading(now_ms());
        tracing::info!(
            kind = S::KIND,
            partition = self.index,
            records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded coordinator partition"
        );
        self.loaded.notify_all();
        self.submit(step).await;
    }
}

/// A coordinator's internal topic: compacted, created on first use.
#[derive(Debug, Clone, Copy)]
pub struct InternalTopic {
    pub name: &'static str,
    /// offsets.topic.num.partitions / transaction.state.log.num.partitions.
    pub partitions: i32,
    /// offsets.topic.segment.bytes / transaction.state.log.segment.bytes.
    pub segment_bytes: u64,
}

impl InternalTopic {
    /// The topic, created (compacted, `partitions`, `segment_bytes`) if it does not exist.
    /// Error: COORDINATOR_NOT_AVAILABLE when it cannot be created.
    pub async fn ensure(&self, ctx: &ShardContext) -> Result<Rc<TopicInfo>, i16> {
        if let Some(info) = ctx.topic(self.name) {
            return Ok(info);
        }
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
        configs.insert("segment.bytes".to_string(), self.segment_bytes.to_string());
        let topic = NewTopic {
            name: self.name.to_string(),
            num_partitions: self.partitions,
            replication_factor: 1,
            assignments: None,
            configs,
            validate_only: false,
        };
        match admin::create_topic(ctx, topic).await {
            Ok(_) => tracing::info!(partitions = self.partitions, "created {}", self.name),
            Err(error) if error.code == codes::TOPIC_ALREADY_EXISTS => {}
            Err(error) => {
                tracing::warn!(code = error.code, message = %error.message, "cannot create {}", self.name);
                return Err(codes::COORDINATOR_NOT_AVAILABLE);
            }
        }
        ctx.topic(self.name).ok_or(codes::COORDINATOR_NOT_AVAILABLE)
    }

    async fn open(&self, ctx: &ShardContext, index: i32) -> Result<Rc<Partition>, String> {
        let info = self.ensure(ctx).await.map_err(|code| format!("{} unavailable (error {code})", self.name))?;
        ctx.store.get_or_open(self.name, index, &info.spec(index)).await.map_err(|error| error.to_string())
    }
}

/// The partitions of one coordinator's topic that this shard owns, each created (and loaded)
/// on first use. Lives on one shard.
pub struct CoordinatorPartitions<S: CoordinatorState> {
    ctx: Rc<ShardContext>,
    topic: InternalTopic,
    partitions: RefCell<HashMap<i32, Rc<CoordinatorPartition<S>>>>,
    ticks_started: Cell<bool>,
}

impl<S: CoordinatorState> CoordinatorPartitions<S> {
    pub fn new(ctx: Rc<ShardContext>, topic: InternalTopic) -> Self {
        CoordinatorPartitions { ctx, topic, partitions: RefCell::new(HashMap::new()), ticks_started: Cell::new(false) }
    }

    /// The topic, created if it does not exist. Error: a Kafka error code
    /// (COORDINATOR_NOT_AVAILABLE when it cannot be created).
    pub async fn ensure_topic(&self) -> Result<Rc<TopicInfo>, i16> {
        self.topic.ensure(&self.ctx).await
    }

    /// Delivers `message` for `partition` to the shard that owns it: `here` handles it when that
    /// is this shard, else it crosses the mesh as `wrap(message)`. Then waits for `answer`.
    /// Error: COORDINATOR_NOT_AVAILABLE when the owner cannot be reached or drops the reply.
    pub async fn call_owner<M, A>(
        &self,
        partition: i32,
        message: M,
        answer: oneshot::Receiver<A>,
        wrap: fn(M) -> ShardRequest,
        here: impl AsyncFnOnce(M),
    ) -> Result<A, i16> {
        let owner = self.ctx.table.owner(self.topic.name, partition);
        if owner == self.ctx.shard_id {
            here(message).await;
        } else if self.ctx.mesh.send(owner, wrap(message)).await.is_err() {
            return Err(codes::COORDINATOR_NOT_AVAILABLE);
        }
        answer.await.map_err(|_| codes::COORDINATOR_NOT_AVAILABLE)
    }

    /// Spawns the coordinator's timer task the first time this is called on the shard (with its
    /// first partition); later calls do nothing.
    pub fn spawn_ticks_once<F: Future<Output = ()> + 'static>(&self, ticks: impl FnOnce() -> F) {
        if !self.ticks_started.replace(true) {
            rt::spawn_detached(ticks());
        }
    }

    /// The partition, if this shard has started it.
    pub fn get(&self, index: i32) -> Option<Rc<CoordinatorPartition<S>>> {
        self.partitions.borrow().get(&index).cloned()
    }

    /// Every partition started on this shard.
    pub fn all(&self) -> Vec<Rc<CoordinatorPartition<S>>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Starts partition `index` (its load and drain tasks) with `state`, which must be loading.
    /// `follow_up` runs each durable outcome's follow-ups.
    pub fn start(
        &self,
        index: i32,
        state: S,
        follow_up: impl Fn(&Rc<CoordinatorPartition<S>>, Vec<S::FollowUp>) + 'static,
    ) -> Rc<CoordinatorPartition<S>> {
        assert!(state.is_loading(), "a coordinator partition starts by loading its log");
        let partition = CoordinatorPartition::new(index, state);
        let previous = self.partitions.borrow_mut().insert(index, partition.clone());
        assert!(previous.is_none(), "{}-{index} started twice on one shard", S::TOPIC);
        rt::spawn_detached(partition.clone().drain(follow_up));
        rt::spawn_detached(partition.clone().load(self.ctx.clone(), self.topic));
        partition
    }

    /// The indexes of this topic's partitions that this shard owns (none before the topic exists).
    pub fn owned(&self) -> Vec<i32> {
        let Some(info) = self.ctx.topic(self.topic.name) else { return Vec::new() };
        (0..info.partition_count).filter(|index| self.ctx.table.owner(self.topic.name, *index) == self.ctx.shard_id).collect()
    }
}

/// Reads a coordinator log from its start to its high watermark, giving every record of every
/// batch to `visit` in order (control records included). A batch the codec cannot decode is
/// skipped; a read that fails ends the replay (the state starts from what was read).
pub async fn replay_log(log: &Partition, mut visit: impl FnMut(&WireRecord)) {
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let read = match log.read_batches(offset, LOAD_READ_BYTES).await {
            Ok(read) => read,
            Err(error) => {
                tracing::error!(partition = log.name(), %error, "cannot read the coordinator log; its state starts from what was read");
                break;
            }
        };
        if read.batches.is_empty() || read.next_offset <= offset {
            break;
        }
        for mut batch in read.batches {
            match RecordBatchDecoder::decode(&mut batch) {
                // The first batch is the one holding `offset`, whole.
                Ok(set) => set.records.iter().filter(|record| record.offset >= offset).for_each(&mut visit),
                Err(error) => tracing::warn!(partition = log.name(), offset, %error, "skipping an undecodable coordinator batch"),
            }
        }
        offset = read.next_offset;
        rt::yield_if_needed().await;
    }
}

/// Kafka's EndTxnMarker key: version i16, type i16 (0 abort, 1 commit). `Some(commit)`.
pub fn control_commits(key: &[u8]) -> Option<bool> {
    match key {
        [_, _, 0, 0] => Some(false),
        [_, _, 0, 1] => Some(true),
        _ => None,
    }
}

/// One record batch of `records` (key, value); with `producer`, a transactional batch of that
/// producer id and epoch (Kafka writes TxnOffsetCommit records so, sequence -1).
pub fn encode_batch(records: &[(Bytes, Option<Bytes>)], producer: Option<(i64, i16)>) -> Option<Bytes> {
    let now = now_ms();
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let wire: Vec<WireRecord> = records
        .iter()
        .enumerate()
        .map(|(index, (key, value))| WireRecord {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // The encoder starts a new batch wherever offset − sequence changes: counting up
            // keeps one batch. Base sequence -1 without a producer; 0 for a producer's records
            // (the broker refuses a producer id with a negative sequence, and a coordinator's
            // append is not sequence-checked).
            sequence: if producer.is_some() { index as i32 } else { (-1i32).wrapping_add(index as i32) },
            timestamp: now,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut out, &wire, &options).ok()?;
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_becomes_one_batch() {
        let records: Vec<(Bytes, Option<Bytes>)> = (0..3)
            .map(|index| (Bytes::from(format!("key-{index}")), (index != 1).then(|| Bytes::from_static(b"value"))))
            .collect();
        let batch = encode_batch(&records, None).expect("encodes");
        let length = i32::from_be_bytes(batch[8..12].try_into().unwrap()) as usize;
        assert_eq!(12 + length, batch.len(), "exactly one batch");
        assert_eq!(i32::from_be_bytes(batch[57..61].try_into().unwrap()), 3, "record count");
        assert_eq!(i32::from_be_bytes(batch[53..57].try_into().unwrap()), -1, "base sequence: not idempotent");
        let decoded = RecordBatchDecoder::decode(&mut batch.clone()).expect("decodes");
        let keys: Vec<_> = decoded.records.iter().map(|record| record.key.clone().unwrap()).collect();
        assert_eq!(keys, records.iter().map(|(key, _)| key.clone()).collect::<Vec<_>>());
        assert!(decoded.records[1].value.is_none(), "tombstone kept");
    }
}
