//! A partition on its owner shard: the log, the batch cache, offsets, and group commit.
//!
//! ```text
//!  produce ──▶ append(): validate, assign offsets (patch header), cache, queue ──┐
//!                                                                              ▼
//!  flusher task: take queued batches ─▶ one O_DIRECT write ─▶ fdatasync if any acks=all
//!                (group commit: everything queued meanwhile goes in the same write/sync)
//!                 └▶ high watermark = written end; wake fetchers; complete acks
//! ```
//! Idempotent producers: `append()` checks each batch with a producer id against the producer
//! state (`producer_state`) in the same synchronous section that assigns offsets; a retried
//! batch is answered with its original offsets once everything queued before it is written.
//! The state is snapshotted at each segment roll and on close, and rebuilt on open from the
//! newest snapshot plus the batch headers after it.
//!
//! Transactions (KIP-98): transactional batches open a transaction per producer (producer
//! state); `append_marker` writes the coordinator's end-transaction marker. The last stable
//! offset (LSO) is the first offset of the oldest undecided transaction — open, or decided by a
//! marker the high watermark has not passed yet — or the high watermark if that is lower.
//! read_committed reads stop there and come with the aborted transactions they overlap, from the
//! aborted-transaction index (`txn_index`), whose entries are made durable before their marker's
//! own write.
//!
//! ```text
//!   offsets:  ... [committed] [p1 txn ... (open)] [p2 txn ...] [p2 commit]  |hw ... queued
//!                             ^ LSO: p1's first offset
//! ```
//!
//! An I/O error poisons the partition: queued and later appends fail with KAFKA_STORAGE_ERROR;
//! nothing is retried blindly (a failed fsync may have dropped dirty pages).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;

use crate::batch::{self, ControlType, EndTxnMarker};
use crate::cache::{BatchCache, CacheBudget, CachedBatch};
use crate::compaction::{CleanReport, CleanerTxns, CompactOptions, CompactionConfig};
use crate::epochs::{self, EpochHistory};
use crate::error::{LogError, LogResult};
use crate::limits::{DMA_WRITE_BYTES_MAX, INDEX_ENTRIES_MAX, PENDING_BYTES_MAX, SEGMENT_BYTES_MAX};
use crate::log::{Log, RemovalCause, RemovalReport};
use crate::producer_state::{
    self, BatchMetadata, CompletedTxn, MarkerBatch, ProducerBatch, ProducerEntry, ProducerStateTable, Verdict,
};
use crate::rt::{self, Notify};
use crate::segment::FileSlice;
use crate::topic_config::{TimestampType, TopicConfig};
use crate::txn_index::{AbortedIndex, AbortedTxn};

/// How long a produce waits for durability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// acks=0 or 1: acknowledged once written to the log.
    Written,
    /// acks=all: acknowledged after fdatasync.
    Synced,
}

/// Part of a fetch response: memory from the cache, or a file range sent with sendfile(2).
#[derive(Debug, Clone)]
pub enum Chunk {
    Memory(Bytes),
    File(FileSlice),
}

impl Chunk {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Memory(bytes) => bytes.len(),
            Chunk::File(slice) => slice.length,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which records a read may return (the Fetch request's isolation level, KIP-98).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Everything below the high watermark.
    ReadUncommitted,
    /// Everything below the last stable offset, with the aborted transactions it overlaps.
    ReadCommitted,
}

/// What a read returns besides the data.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub chunks: Vec<Chunk>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub last_stable_offset: i64,
    /// ReadCommitted only: aborted transactions that may overlap the returned data (Kafka:
    /// lastOffset >= fetch offset and firstOffset < the upper bound of the read), oldest first.
    pub aborted: Vec<AbortedTxn>,
}

impl ReadResult {
    pub fn bytes(&self) -> usize {
        self.chunks.iter().map(Chunk::len).sum()
    }
}

/// Whole batches read back for a coordinator's replay ([`Partition::read_batches`]).
#[derive(Debug, Clone, Default)]
pub struct ReadBatches {
    /// RecordBatch v2 bytes as stored, oldest first, each CRC-checked. The first is the batch
    /// holding the offset asked for, whole: records of it below that offset are the caller's to
    /// skip. Offsets increase, with gaps where compaction removed batches.
    pub batches: Vec<Bytes>,
    /// Where the next read starts: the offset after the last batch returned (the offset asked for
    /// when none was).
    pub next_offset: i64,
    pub high_watermark: i64,
}

/// The outcome of an append once the flusher is done with it.
pub type AppendOutcome = Result<(), i16>;

/// An appended batch set waiting for its write (and sync).
pub struct AppendTicket {
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    done: oneshot::Receiver<AppendOutcome>,
}

impl AppendTicket {
    /// Completes when the append is written (acks=1) or synced (acks=all). Error: Kafka code.
    pub async fn wait(self) -> AppendOutcome {
        self.done.await.unwrap_or(Err(56))
    }
}

struct PendingAppend {
    batches: Vec<Bytes>,
    bytes: usize,
    base_offset: i64,
    acks: Acks,
    /// An abort marker's index entry: made durable before the marker is written.
    aborted: Option<AbortedTxn>,
    done: oneshot::Sender<AppendOutcome>,
}

/// Transactions' state besides what producer state holds (the open transactions).
#[derive(Debug, Default)]
struct TxnState {
    /// Transactions decided by a marker the high watermark has not passed: first offset →
    /// marker offset (Kafka's `unreplicatedTxns`). Bounded by the queued appends.
    unreplicated: BTreeMap<i64, i64>,
    aborted: AbortedIndex,
}

/// Where a partition is in its life. Appends are accepted only while `Open`.
///
/// ```text
///   Open ──I/O error──▶ Poisoned ──close/delete──▶ Closing { poisoned: true }
///    └────────────close/delete──────────────────▶ Closing { poisoned: false } ──I/O error──┘
///   Closing ──flusher drained, log closed──▶ Closed { poisoned }
/// ```
/// Poisoned is remembered through the close: a poisoned log is not checkpointed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Open,
    /// A write or fsync failed: no further writes (queued ones fail with KAFKA_STORAGE_ERROR).
    Poisoned,
    /// `close` or `delete` runs: no new appends, the flusher drains what is queued and stops.
    Closing {
        poisoned: bool,
    },
    /// Closed or deleted: the log is gone.
    Closed {
        poisoned: bool,
    },
}

impl Lifecycle {
    pub fn is_poisoned(self) -> bool {
        matches!(self, Lifecycle::Poisoned | Lifecycle::Closing { poisoned: true } | Lifecycle::Closed { poisoned: true })
    }
    /// Whether a close has begun (closing or closed).
    pub fn is_closing(self) -> bool {
        matches!(self, Lifecycle::Closing { .. } | Lifecycle::Closed { .. })
    }
    fn poisoned(self) -> Lifecycle {
        match self {
            Lifecycle::Open | Lifecycle::Poisoned => Lifecycle::Poisoned,
            Lifecycle::Closing { .. } => Lifecycle::Closing { poisoned: true },
            Lifecycle::Closed { .. } => Lifecycle::Closed { poisoned: true },
        }
    }
    fn closing(self) -> Lifecycle {
        match self {
            Lifecycle::Open => Lifecycle::Closing { poisoned: false },
            Lifecycle::Poisoned => Lifecycle::Closing { poisoned: true },
            closing_or_closed => closing_or_closed,
        }
    }
    fn closed(self) -> Lifecycle {
        Lifecycle::Closed { poisoned: self.is_poisoned() }
    }
}

/// What the flusher task is doing. It runs only while something is queued or unsynced (a task
/// per idle partition would cost about 1.5 KiB each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlusherActivity {
    /// No flusher task: the next wake starts one.
    Stopped,
    /// Running, between writes (waiting for a wake or the periodic sync).
    Waiting,
    /// Writing, syncing or rolling (truncation waits for it to be idle).
    Writing,
}

/// Broker-wide settings a partition needs besides its topic config.
#[derive(Debug, Clone)]
pub struct PartitionSettings {
    /// Periodic fdatasync of acks=1 data (log.flush.interval.ms).
    pub flush_interval_ms: u64,
}

/// One partition of a topic. Lives on exactly one shard, its owner (see `shard_table`).
pub struct Partition {
    pub topic: Rc<str>,
    pub partition: i32,
    pub topic_id: [u8; 16],
    name: String,
    log: RefCell<Option<Rc<Log>>>,
    config: RefCell<TopicConfig>,
    settings: PartitionSettings,
    cache: RefCell<BatchCache>,
    next_offset: Cell<i64>,
    high_watermark: Cell<i64>,
    leader_epoch: Cell<i32>,
    pending: RefCell<VecDeque<PendingAppend>>,
    pending_bytes: Cell<usize>,
    flusher_wake: Rc<Notify>,
    /// Fired whenever the high watermark or the last stable offset moves, or the partition closes.
    pub data_arrived: Rc<Notify>,
    flushed: Rc<Notify>,
    /// Open, poisoned, closing or closed (see [`Lifecycle`]).
    lifecycle: Cell<Lifecycle>,
    /// Whether the flusher task runs, and whether it is writing (see [`FlusherActivity`]).
    flusher: Cell<FlusherActivity>,
    // The flags below are independent of the lifecycle and of each other, so they stay flags:
    /// Data written and not yet synced (the periodic sync's work). A property of the data, true
    /// or false in every lifecycle and flusher state.
    unsynced: Cell<bool>,
    /// The last group written was synced (acks=all): worth writing ahead (see `flush_once`). A
    /// hint about the workload, not a state.
    last_group_synced: Cell<bool>,
    /// Retention found the active segment expired: the flusher rolls it when idle. A request
    /// raised by another task, taken by the flusher whatever it is doing.
    roll_requested: Cell<bool>,
    /// A cleaning pass runs (close waits for it: the pass holds the log). A background activity
    /// beside the flusher, in an open partition only, that a close stops and waits for.
    compacting: Cell<bool>,
    compaction_done: Rc<Notify>,
    /// Idempotent producers' state, up to `next_offset` (appends update it as they are queued).
    producers: RefCell<ProducerStateTable>,
    txns: RefCell<TxnState>,
    /// Where each leader epoch's records start (the `leader-epoch-checkpoint` file's contents).
    epochs: RefCell<EpochHistory>,
    /// The last stable offset as last announced (`data_arrived` fires when it moves).
    last_stable_offset_announced: Cell<i64>,
    /// The flusher task while it runs (then its finished handle). An idle partition has none:
    /// it starts on the first wake and ends once nothing is queued or unsynced.
    flusher_done: RefCell<Option<rt::Task<()>>>,
    /// This partition (the flusher task holds a strong reference while it runs).
    me: std::rc::Weak<Partition>,
    /// Bytes recovery cut when the partition was opened.
    recovered_bytes: u64,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Partition {
    /// Opens (recovering) or creates the partition in `dir` and starts its flusher.
    #[allow(clippy::too_many_arguments)] // each is a distinct piece of the partition's identity
    pub async fn open(
        dir: PathBuf,
        topic: Rc<str>,
        partition: i32,
        topic_id: [u8; 16],
        leader_epoch: i32,
        config: TopicConfig,
        settings: PartitionSettings,
        budget: Rc<CacheBudget>,
    ) -> LogResult<Rc<Partition>> {
        let name = format!("{topic}-{partition}");
        check_topic_id(&dir, &topic_id, leader_epoch).await?;
        let (log, report) = Log::open(&dir, now_ms()).await?;
        if report.truncated_bytes > 0 {
            // One line per partition would be 100,000 at scale: the shard sums them at start
            // (`recovered_bytes`); a torn tail (not padding) is a warning of its segment's.
            tracing::debug!(partition = %name, truncated_bytes = report.truncated_bytes, "recovered partition after an unclean stop");
        }
        let end = log.end_offset();
        let (log_start_offset, first_segment_base, index_dir) = (log.log_start_offset(), log.first_segment_base(), dir.clone());
        let (aborted, epochs) = crate::fs::off_shard(move || {
            let aborted = AbortedIndex::load(&index_dir, log_start_offset, first_segment_base, end)?;
            Ok::<_, std::io::Error>((aborted, read_epochs(&index_dir)?))
        })
        .await
        .map_err(|error| LogError::io(&dir, error))?;
        let epochs = fit_epochs(&dir, epochs, log_start_offset, end, leader_epoch).await?;
        let aborted = RefCell::new(aborted);
        let producers = recover_producers(
            &log,
            |offset| aborted.borrow().contains(offset),
            |txn, bucket| aborted.borrow_mut().insert(txn, bucket),
        )
        .await?;
        let aborted = aborted.into_inner();
        let partition = Rc::new_cyclic(|me| Partition {
            topic,
            partition,
            topic_id,
            name,
            cache: RefCell::new(BatchCache::new(budget)),
            next_offset: Cell::new(end),
            high_watermark: Cell::new(end),
            leader_epoch: Cell::new(leader_epoch),
            log: RefCell::new(Some(Rc::new(log))),
            config: RefCell::new(config),
            settings,
            pending: RefCell::new(VecDeque::new()),
            pending_bytes: Cell::new(0),
            flusher_wake: Rc::new(Notify::default()),
            data_arrived: Rc::new(Notify::default()),
            flushed: Rc::new(Notify::default()),
            lifecycle: Cell::new(Lifecycle::Open),
            flusher: Cell::new(FlusherActivity::Stopped),
            unsynced: Cell::new(false),
            last_group_synced: Cell::new(false),
            roll_requested: Cell::new(false),
            compacting: Cell::new(false),
            compaction_done: Rc::new(Notify::default()),
            producers: RefCell::new(producers),
            txns: RefCell::new(TxnState { unreplicated: BTreeMap::new(), aborted }),
            epochs: RefCell::new(epochs),
            last_stable_offset_announced: Cell::new(end),
            flusher_done: RefCell::new(None),
            me: me.clone(),
            recovered_bytes: report.truncated_bytes,
        });
        partition.last_stable_offset_announced.set(partition.last_stable_offset());
        Ok(partition)
    }

    /// Bytes recovery cut when the partition was opened (torn tail, or the padding of an
    /// unclean stop).
    pub fn recovered_bytes(&self) -> u64 {
        self.recovered_bytes
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.get()
    }
    pub fn log_end_offset(&self) -> i64 {
        self.next_offset.get()
    }
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.get()
    }
    pub fn log_start_offset(&self) -> i64 {
        self.with_log(|log| log.log_start_offset()).unwrap_or(0)
    }
    pub fn size_bytes(&self) -> u64 {
        self.with_log(|log| log.size_bytes()).unwrap_or(0)
    }
    pub fn is_poisoned(&self) -> bool {
        self.lifecycle.get().is_poisoned()
    }
    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle.get()
    }
    /// Whether the flusher has taken a group and its write or fdatasync is under way (tests of
    /// races against it assert the race happened).
    pub fn is_writing(&self) -> bool {
        self.flusher.get() == FlusherActivity::Writing
    }
    /// Appends queued for the flusher and not yet taken by it.
    pub fn queued_appends(&self) -> usize {
        self.pending.borrow().len()
    }
    pub fn set_config(&self, config: TopicConfig) {
        *self.config.borrow_mut() = config;
    }
    pub fn config(&self) -> TopicConfig {
        self.config.borrow().clone()
    }
    /// Whether the partition already runs with `config` (no clone on the produce path).
    pub fn config_is(&self, config: &TopicConfig) -> bool {
        *self.config.borrow() == *config
    }

    fn with_log<R>(&self, f: impl FnOnce(&Log) -> R) -> Option<R> {
        self.log.borrow().as_deref().map(f)
    }

    /// Validates produced record batches, assigns their offsets and queues them for the flusher.
    /// Everything before the first await of the returned ticket happens in call order, so two
    /// appends from one connection land in the order they were made.
    pub async fn append(&self, records: Bytes, acks: Acks) -> LogResult<AppendTicket> {
        self.append_from(records, acks, false).await
    }

    /// An append by a coordinator for a producer (the group coordinator's TxnOffsetCommit
    /// records): producer epochs and transactions are checked and tracked, sequences are not.
    pub async fn append_as_coordinator(&self, records: Bytes, acks: Acks) -> LogResult<AppendTicket> {
        self.append_from(records, acks, true).await
    }

    async fn append_from(&self, records: Bytes, acks: Acks, coordinator: bool) -> LogResult<AppendTicket> {
        while self.pending_bytes.get() > PENDING_BYTES_MAX && !self.is_poisoned() {
            self.flushed.notified().await;
        }
        if self.lifecycle.get() != Lifecycle::Open {
            return Err(LogError::Poisoned(self.name.clone()));
        }
        let (max_message_bytes, log_append_time, before_max_ms, after_max_ms, codec) = {
            let config = self.config.borrow();
            (
                config.max_message_bytes as usize,
                config.message_timestamp_type == TimestampType::LogAppendTime,
                config.message_timestamp_before_max_ms,
                config.message_timestamp_after_max_ms,
                config.compression_type.codec(),
            )
        };
        let mut headers = batch::validate_produced(&records, max_message_bytes)?;
        let append_time_ms = now_ms();
        let mut position = 0usize;
        for header in &mut headers {
            // Kafka's LogValidator: the records decide the max timestamp, never the header.
            let summary = batch::summarize_records(&records[position..position + header.size_bytes], header)?;
            if !log_append_time {
                check_timestamps(header, &summary, append_time_ms, before_max_ms, after_max_ms)?;
                header.max_timestamp = summary.max_timestamp;
            }
            position += header.size_bytes;
        }
        let (records, headers) = match codec {
            Some(codec) if !coordinator && headers.iter().any(|header| header.compression() != codec) => {
                recompress_all(&records, &headers, codec, max_message_bytes)?
            }
            _ => (records, headers),
        };
        if self.config.borrow().cleanup_policy.compacts() {
            let mut position = 0usize;
            for header in &headers {
                batch::require_keys(&records.slice(position..position + header.size_bytes))?;
                position += header.size_bytes;
            }
        }
        let base_offset = self.next_offset.get();
        let producer_batches = producer_batches(&headers, base_offset, log_append_time.then_some(append_time_ms));
        let staged = if producer_batches.is_empty() {
            None
        } else {
            let producers = self.producers.borrow();
            let verdict = if coordinator {
                producers.check_coordinator_append(&producer_batches)
            } else {
                producers.check_append(&producer_batches)
            };
            match verdict? {
                Verdict::Duplicate(original) => return Ok(self.acknowledge_duplicate(original, acks)),
                Verdict::Append(staged) => Some(staged),
            }
        };
        let mut copy = BytesMut::from(&records[..]);
        let mut next = base_offset;
        let mut position = 0usize;
        let mut batches = Vec::with_capacity(headers.len());
        for header in &headers {
            let slice = &mut copy[position..position + header.size_bytes];
            batch::patch_offset_and_epoch(slice, next, self.leader_epoch.get());
            if log_append_time {
                batch::patch_log_append_time(slice, append_time_ms);
            } else {
                batch::patch_max_timestamp(slice, header.max_timestamp);
            }
            position += header.size_bytes;
            next += header.last_offset_delta as i64 + 1;
        }
        let frozen = copy.freeze();
        let mut position = 0usize;
        let mut offset = base_offset;
        let written_end = self.high_watermark.get();
        for header in &headers {
            let bytes = frozen.slice(position..position + header.size_bytes);
            let last_offset = offset + header.last_offset_delta as i64;
            // Paired with the patch above: the bytes queued carry the offsets assigned.
            let patched = batch::BatchHeader::parse(&bytes)?;
            assert!(patched.base_offset == offset && patched.last_offset() == last_offset && last_offset >= offset);
            self.cache.borrow_mut().push(CachedBatch { base_offset: offset, last_offset, bytes: bytes.clone() }, written_end);
            batches.push(bytes);
            position += header.size_bytes;
            offset = last_offset + 1;
        }
        assert_eq!(offset, next, "offsets assigned and offsets queued differ");
        self.next_offset.set(next);
        if let Some(staged) = staged {
            self.producers.borrow_mut().commit(staged);
        }
        let (done, receiver) = oneshot::channel();
        self.pending_bytes.set(self.pending_bytes.get() + frozen.len());
        self.pending.borrow_mut().push_back(PendingAppend {
            batches,
            bytes: frozen.len(),
            base_offset,
            acks,
            aborted: None,
            done,
        });
        self.wake_flusher();
        self.debug_check_invariants();
        let log_append_time_ms = if log_append_time { append_time_ms } else { -1 };
        Ok(AppendTicket { base_offset, log_append_time_ms, done: receiver })
    }

    /// A retry of a batch already appended: nothing is written; the ticket carries the original
    /// offsets and completes once everything queued before it is written (synced for acks=all),
    /// since the original may still be waiting in the queue.
    fn acknowledge_duplicate(&self, original: BatchMetadata, acks: Acks) -> AppendTicket {
        tracing::debug!(
            partition = %self.name,
            first_sequence = original.first_sequence,
            first_offset = original.first_offset,
            "duplicate batch: acknowledged with its original offsets, not written again"
        );
        let (done, receiver) = oneshot::channel();
        let roll_point = self.next_offset.get();
        self.pending.borrow_mut().push_back(PendingAppend {
            batches: Vec::new(),
            bytes: 0,
            base_offset: roll_point,
            acks,
            aborted: None,
            done,
        });
        self.wake_flusher();
        AppendTicket { base_offset: original.first_offset, log_append_time_ms: -1, done: receiver }
    }

    /// Appends an end-transaction marker (a control batch) for the producer, as Kafka's
    /// `appendAsLeader` with origin COORDINATOR: the marker's epoch must not be below the
    /// producer's (INVALID_PRODUCER_EPOCH) nor its coordinator epoch below the last marker's
    /// (TRANSACTION_COORDINATOR_FENCED); nothing is written then. Returns when queued like
    /// [`Partition::append`]; the ticket completes once synced (markers are always acks=all).
    pub async fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        control: ControlType,
    ) -> LogResult<AppendTicket> {
        while self.pending_bytes.get() > PENDING_BYTES_MAX && !self.is_poisoned() {
            self.flushed.notified().await;
        }
        if self.lifecycle.get() != Lifecycle::Open {
            return Err(LogError::Poisoned(self.name.clone()));
        }
        let offset = self.next_offset.get();
        let timestamp_ms = now_ms();
        let marker = EndTxnMarker { control, coordinator_epoch };
        let staged = self.producers.borrow().check_marker(&MarkerBatch {
            producer_id,
            epoch: producer_epoch,
            marker,
            offset,
            timestamp_ms,
        })?;
        let mut bytes = batch::build_end_txn_marker(producer_id, producer_epoch, coordinator_epoch, control, timestamp_ms);
        batch::patch_offset_and_epoch(&mut bytes, offset, self.leader_epoch.get());
        let bytes = Bytes::from(bytes);
        let written_end = self.high_watermark.get();
        self.cache.borrow_mut().push(CachedBatch { base_offset: offset, last_offset: offset, bytes: bytes.clone() }, written_end);
        self.next_offset.set(offset + 1);
        let completed = self.producers.borrow_mut().commit_marker(staged);
        let aborted = self.complete_txn(completed);
        let (done, receiver) = oneshot::channel();
        self.pending_bytes.set(self.pending_bytes.get() + bytes.len());
        self.pending.borrow_mut().push_back(PendingAppend {
            bytes: bytes.len(),
            batches: vec![bytes],
            base_offset: offset,
            acks: Acks::Synced,
            aborted,
            done,
        });
        self.wake_flusher();
        self.debug_check_invariants();
        Ok(AppendTicket { base_offset: offset, log_append_time_ms: -1, done: receiver })
    }

    /// A transaction decided by a queued marker stays undecided for readers until the high
    /// watermark passes the marker. An abort gets its index entry, with Kafka's last stable offset
    /// (`ProducerStateManager.lastStableOffset(completedTxn)`: the first offset of the oldest other
    /// open transaction, or the marker's offset + 1).
    fn complete_txn(&self, completed: CompletedTxn) -> Option<AbortedTxn> {
        self.txns.borrow_mut().unreplicated.insert(completed.first_offset, completed.last_offset);
        completed.aborted.then(|| AbortedTxn {
            producer_id: completed.producer_id,
            first_offset: completed.first_offset,
            last_offset: completed.last_offset,
            last_stable_offset: self.producers.borrow().first_ongoing_offset().unwrap_or(completed.last_offset + 1),
        })
    }

    /// Last stable offset: min(first offset of every undecided transaction, high watermark),
    /// never below the log start offset (Kafka's `UnifiedLog.lastStableOffset`).
    pub fn last_stable_offset(&self) -> i64 {
        let high_watermark = self.high_watermark.get();
        let ongoing = self.producers.borrow().first_ongoing_offset();
        let unreplicated = self.txns.borrow().unreplicated.keys().next().copied();
        match ongoing.into_iter().chain(unreplicated).min() {
            Some(first_unstable) => first_unstable.max(self.log_start_offset()).min(high_watermark),
            None => high_watermark,
        }
    }

    /// Wakes read_committed fetchers waiting on `data_arrived` when the last stable offset moved.
    fn announce_last_stable_offset(&self) {
        let current = self.last_stable_offset();
        if self.last_stable_offset_announced.replace(current) != current {
            self.data_arrived.notify_all();
        }
    }

    /// KIP-890 part 1: whether the producer has an undecided transaction on this partition at
    /// `producer_epoch` (the broker asks the coordinator before accepting the first transactional
    /// batch otherwise).
    pub fn has_ongoing_txn(&self, producer_id: i64, producer_epoch: i16) -> bool {
        self.producers
            .borrow()
            .get(producer_id)
            .is_some_and(|entry| entry.epoch == producer_epoch && entry.current_txn_first_offset.is_some())
    }

    /// Undecided transactions: (producer id, producer epoch, first offset), oldest first
    /// (DescribeProducers' currentTxnStartOffset).
    pub fn ongoing_txns(&self) -> Vec<(i64, i16, i64)> {
        self.producers.borrow().ongoing_txns()
    }

    /// Every aborted transaction in the index, oldest marker first (tests, operators' tools).
    pub fn aborted_txns(&self) -> Vec<AbortedTxn> {
        self.txns.borrow().aborted.all()
    }

    /// The idempotent producers of this partition, by id (DescribeProducers).
    pub fn producers(&self) -> Vec<(i64, ProducerEntry)> {
        self.producers.borrow().producers()
    }

    /// Forgets producers idle for `expiration_ms` or longer (producer.id.expiration.ms), except
    /// those with an open transaction.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        let expired = self.producers.borrow_mut().expire(now_ms, expiration_ms);
        if expired > 0 {
            // The producer snapshot is rewritten at close.
            self.with_log(Log::note_write);
        }
        expired
    }

    /// Writes the producer state as of the appended end (Kafka's snapshot at segment roll).
    /// A failure only means a longer header scan at the next open.
    /// The table is encoded now (appends may change it while the file is written off the shard).
    async fn snapshot_producers(&self, log: &Log) {
        let offset = self.next_offset.get();
        let encoded = self.producers.borrow().encode(offset);
        let dir = log.dir().to_path_buf();
        let written = crate::fs::off_shard(move || producer_state::write_snapshot_encoded(&dir, offset, &encoded)).await;
        if let Err(error) = written {
            tracing::warn!(partition = %self.name, offset, %error, "could not write the producer state snapshot");
        }
    }

    /// Wakes the flusher, starting it if it is not running (a task per idle partition would cost
    /// about 1.5 KiB each, most of a partition's idle memory).
    fn wake_flusher(&self) {
        self.flusher_wake.notify_all();
        if self.lifecycle.get().is_closing() || self.flusher.get() != FlusherActivity::Stopped {
            return;
        }
        if let Some(partition) = self.me.upgrade() {
            self.flusher.set(FlusherActivity::Waiting);
            *self.flusher_done.borrow_mut() = Some(rt::spawn(Partition::run_flusher(partition)));
        }
    }

    async fn run_flusher(partition: Rc<Partition>) {
        loop {
            if partition.pending.borrow().is_empty() {
                if partition.lifecycle.get().is_closing() {
                    break;
                }
                if partition.roll_requested.take() && !partition.is_poisoned() {
                    partition.roll_idle().await;
                    continue;
                }
                let wake = partition.flusher_wake.notified();
                if !partition.unsynced.get() {
                    // Nothing queued, nothing to sync: the next wake starts a new flusher.
                    break;
                }
                let interval = Duration::from_millis(partition.settings.flush_interval_ms.max(1));
                if rt::timeout(interval, wake).await.is_none() && partition.unsynced.get() && !partition.is_poisoned() {
                    let active = partition.with_log(|log| log.active());
                    if let Some(active) = active {
                        partition.flusher.set(FlusherActivity::Writing);
                        let synced = active.sync().await;
                        drop(active);
                        partition.flusher.set(FlusherActivity::Waiting);
                        match synced {
                            Ok(()) => partition.unsynced.set(false),
                            Err(error) => partition.poison(&error),
                        }
                        partition.flushed.notify_all();
                    }
                }
                continue;
            }
            partition.flush_once().await;
        }
        partition.flusher.set(FlusherActivity::Stopped);
    }

    /// Rolls the active segment while nothing is queued (retention of an expired active segment).
    async fn roll_idle(&self) {
        let Some(log) = self.log.borrow().clone() else { return };
        if !self.pending.borrow().is_empty() || log.active().size_bytes() == 0 {
            return;
        }
        self.flusher.set(FlusherActivity::Writing);
        let rolled = log.roll(self.next_offset.get(), now_ms()).await;
        self.flusher.set(FlusherActivity::Waiting);
        match rolled {
            Ok(()) => {
                self.unsynced.set(false);
                self.snapshot_producers(&log).await;
            }
            Err(error) => self.poison(&error),
        }
        self.flushed.notify_all();
        self.debug_check_invariants();
    }

    /// One retention pass (the shard's background task calls it): removes closed segments by
    /// retention.ms / retention.bytes when the cleanup policy deletes, and those below the log
    /// start offset always; asks the flusher to roll an expired active segment so the next pass
    /// can remove it.
    pub async fn enforce_retention(&self, now_ms: i64) -> LogResult<Vec<(RemovalCause, RemovalReport)>> {
        let Some(log) = self.log.borrow().clone() else { return Ok(Vec::new()) };
        if self.is_poisoned() {
            return Ok(Vec::new());
        }
        let (deletes, retention_ms, retention_bytes) = {
            let config = self.config.borrow();
            (config.cleanup_policy.deletes(), config.retention_ms, config.retention_bytes)
        };
        let (retention_ms, retention_bytes) = if deletes { (retention_ms, retention_bytes) } else { (-1, -1) };
        let reports = log.apply_retention(now_ms, retention_ms, retention_bytes, self.high_watermark.get()).await?;
        // Only removals move the log start here (DeleteRecords drops its own): a pass that
        // removes nothing lists no directory.
        if !reports.is_empty() {
            self.drop_aborted_below_start(&log).await?;
        }
        if log.active_expired(now_ms, retention_ms) {
            self.roll_requested.set(true);
            self.wake_flusher();
        }
        self.debug_check_invariants();
        Ok(reports)
    }

    /// One log-cleaner pass (the shard's background cleaner calls it) when the cleanup policy
    /// compacts and the log needs it; see `compaction`. Cached batches of replaced segments are
    /// dropped as the segments are swapped; a close stops the pass between two batches.
    pub async fn compact(&self, now_ms: i64, options: &CompactOptions) -> LogResult<Option<CleanReport>> {
        self.compact_until(now_ms, options, &|| false).await
    }

    /// [`Partition::compact`] that also stops between two batches once `stop` says so (the
    /// shard's cleaner at shutdown), as a close would stop it.
    pub async fn compact_until(
        &self,
        now_ms: i64,
        options: &CompactOptions,
        stop: &dyn Fn() -> bool,
    ) -> LogResult<Option<CleanReport>> {
        let Some(log) = self.log.borrow().clone() else { return Ok(None) };
        let config = self.config.borrow().clone();
        if self.lifecycle.get() != Lifecycle::Open || self.compacting.get() || !config.cleanup_policy.compacts() {
            return Ok(None);
        }
        self.compacting.set(true);
        // Taken before the pass: everything below the last stable offset is decided, so no
        // aborted transaction the pass may meet can be added meanwhile.
        let txns = CleanerTxns { last_stable_offset: self.last_stable_offset(), aborted: self.aborted_txns() };
        let mut on_swap = |_base: i64, end: i64| self.cache.borrow_mut().remove_below(end);
        let stop = || self.lifecycle.get().is_closing() || stop();
        let result = log.compact(&CompactionConfig::from(&config), now_ms, options, &txns, &mut on_swap, &stop).await;
        drop(log);
        self.compacting.set(false);
        self.compaction_done.notify_all();
        self.debug_check_invariants();
        result
    }

    async fn wait_for_compaction(&self) {
        while self.compacting.get() {
            self.compaction_done.notified().await;
        }
    }

    /// DeleteRecords: makes `offset` (-1: the high watermark) the first readable offset and
    /// removes the segments entirely below it. Returns the new log start offset (low watermark).
    pub async fn delete_records(&self, offset: i64) -> LogResult<(i64, RemovalReport)> {
        let Some(log) = self.log.borrow().clone() else {
            return Err(LogError::Deleted(self.name.clone()));
        };
        let high_watermark = self.high_watermark.get();
        let offset = if offset == -1 { high_watermark } else { offset };
        if offset < 0 || offset > high_watermark {
            return Err(LogError::OffsetOutOfRange { offset, start: log.log_start_offset(), end: high_watermark });
        }
        let advanced = log.advance_start_offset(offset).await?;
        self.drop_aborted_below_start(&log).await?;
        self.debug_check_invariants();
        Ok(advanced)
    }

    /// The log start moved: aborted transactions whose marker is below it are forgotten, and the
    /// index files of removed segments go with them.
    async fn drop_aborted_below_start(&self, log: &Log) -> LogResult<()> {
        let changes =
            self.txns.borrow_mut().aborted.drop_below_in_memory(log.dir(), log.log_start_offset(), log.first_segment_base());
        crate::fs::off_shard(move || changes.apply()).await.map_err(|error| LogError::io(log.dir(), error))?;
        if self.epochs.borrow_mut().truncate_from_start(log.log_start_offset()) {
            self.persist_epochs(log).await?;
        }
        self.announce_last_stable_offset();
        Ok(())
    }

    /// Writes the changed epoch history to the partition's checkpoint, durably.
    async fn persist_epochs(&self, log: &Log) -> LogResult<()> {
        let text = self.epochs.borrow().encode();
        write_epochs(log.dir(), text).await
    }

    /// Kafka `endOffsetForEpoch` (OffsetForLeaderEpoch, a follower's divergence check): the
    /// largest epoch at or below `epoch` this log knows and the offset where it ends; `None` for
    /// an undefined epoch or one newer than any known.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let (found, end_offset) = self.epochs.borrow().end_offset_for(epoch, self.next_offset.get());
        (end_offset != epochs::UNDEFINED_EPOCH_OFFSET).then_some((found, end_offset))
    }

    /// Writes one group of queued appends (and syncs if any needs it).
    async fn flush_once(&self) {
        self.flusher.set(FlusherActivity::Writing);
        self.flush_group().await;
        // Zeros written ahead (by a background task) make the next acks=all writes overwrites,
        // whose fdatasync is cheaper. acks=1 reserves space instead: it has no fdatasync to pay
        // for the unwritten extents, and zeros would double its disk writes (measured: README).
        if !self.is_poisoned() {
            if let Some(active) = self.with_log(|log| log.active()) {
                if self.last_group_synced.get() {
                    active.fill_ahead();
                } else {
                    active.reserve_ahead();
                }
            }
        }
        self.flusher.set(FlusherActivity::Waiting);
        self.flushed.notify_all();
    }

    async fn flush_group(&self) {
        let group = self.take_group();
        if self.is_poisoned() {
            for pending in group {
                let _ = pending.done.send(Err(56));
            }
            return;
        }
        let result = self.write_group(&group).await;
        let bytes: usize = group.iter().map(|pending| pending.bytes).sum();
        self.pending_bytes.set(self.pending_bytes.get() - bytes);
        match result {
            Ok(end) => {
                self.advance_high_watermark(end);
                // Kafka's `onHighWatermarkUpdated`: transactions whose marker is below the high
                // watermark are decided for readers now.
                self.txns.borrow_mut().unreplicated.retain(|_, marker_offset| *marker_offset >= end);
                self.last_stable_offset_announced.set(self.last_stable_offset());
                self.cache.borrow_mut().evict(end);
                for pending in group {
                    let _ = pending.done.send(Ok(()));
                }
                self.data_arrived.notify_all();
            }
            Err(error) => {
                self.poison(&error);
                for pending in group {
                    let _ = pending.done.send(Err(error.kafka_error_code()));
                }
            }
        }
        self.flushed.notify_all();
        self.debug_check_invariants();
    }

    fn take_group(&self) -> Vec<PendingAppend> {
        let mut pending = self.pending.borrow_mut();
        let mut group = Vec::new();
        let mut bytes = 0usize;
        while let Some(next) = pending.front() {
            if !group.is_empty() && bytes + next.bytes > DMA_WRITE_BYTES_MAX {
                break;
            }
            bytes += next.bytes;
            group.push(pending.pop_front().expect("front exists"));
        }
        group
    }

    async fn write_group(&self, group: &[PendingAppend]) -> LogResult<i64> {
        let Some(log) = self.log.borrow().clone() else {
            return Err(LogError::Deleted(self.name.clone()));
        };
        self.write_group_to(&log, group).await
    }

    /// Returns the log end after the write, asserted equal to the end of what the group queued.
    async fn write_group_to(&self, log: &Log, group: &[PendingAppend]) -> LogResult<i64> {
        log.note_write();
        // Offset continuity where queued batches cross into the log: each starts where the
        // previous one (or the log) ends.
        let mut queued_end = log.end_offset();
        let config = self.config.borrow().clone();
        let mut sync = false;
        let mut run: Vec<Bytes> = Vec::new();
        let mut run_aborted: Vec<AbortedTxn> = Vec::new();
        let mut run_bytes = 0u64;
        for pending in group {
            let active = log.active();
            let now = now_ms();
            let too_big = active.size_bytes() + run_bytes + pending.bytes as u64 > config.segment_bytes.min(SEGMENT_BYTES_MAX);
            // A compacted log also rolls by max.compaction.lag.ms, so its newest records become
            // cleanable in time (Kafka: LogConfig.maxSegmentMs).
            let segment_ms = if config.cleanup_policy.compacts() && config.max_compaction_lag_ms > 0 {
                config.segment_ms.min(config.max_compaction_lag_ms)
            } else {
                config.segment_ms
            };
            let too_old = segment_ms > 0 && now - active.created_at_ms > segment_ms;
            let index_full = active.index_entries() >= INDEX_ENTRIES_MAX;
            if active.size_bytes() + run_bytes > 0 && (too_big || too_old || index_full) {
                self.index_aborted(log, &active, &mut run_aborted).await?;
                active.append(&run).await?;
                run.clear();
                run_bytes = 0;
                log.roll(pending.base_offset, now).await?;
                self.unsynced.set(false);
                self.snapshot_producers(log).await;
            }
            assert_eq!(pending.base_offset, queued_end, "{}: a queued append does not start at the log end", self.name);
            for bytes in &pending.batches {
                let header = batch::BatchHeader::parse(bytes)?;
                assert_eq!(header.base_offset, queued_end, "{}: a batch does not start at the log end", self.name);
                assert!(header.last_offset() >= header.base_offset, "{}: a batch ends before it starts", self.name);
                queued_end = header.next_offset();
            }
            run.extend(pending.batches.iter().cloned());
            run_aborted.extend(pending.aborted);
            run_bytes += pending.bytes as u64;
            sync |= pending.acks == Acks::Synced;
        }
        let active = log.active();
        self.index_aborted(log, &active, &mut run_aborted).await?;
        active.append(&run).await?;
        drop(active);
        self.unsynced.set(true);
        self.last_group_synced.set(sync);
        if sync {
            log.active().sync().await?;
            self.unsynced.set(false);
        }
        // raft-rs `log_unstable`: what was written must be exactly what was queued; a mismatch is
        // a bug, and acknowledging past it would acknowledge what is not there.
        let persisted_end = log.end_offset();
        assert_eq!(
            persisted_end, queued_end,
            "{}: the flush persisted up to {persisted_end}, queued up to {queued_end}",
            self.name
        );
        Ok(persisted_end)
    }

    /// Makes the index entries of the abort markers about to be written to `active` durable
    /// first, in its `.txnindex` file: a marker on disk always has its entry (an entry whose marker
    /// a crash lost lies past the recovered end and is dropped on open).
    async fn index_aborted(&self, log: &Log, active: &crate::segment::Segment, entries: &mut Vec<AbortedTxn>) -> LogResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        append_aborted_off_shard(log.dir(), active.base_offset, entries.clone()).await?;
        let mut txns = self.txns.borrow_mut();
        for entry in entries.drain(..) {
            txns.aborted.insert(entry, active.base_offset);
        }
        Ok(())
    }

    fn poison(&self, error: &LogError) {
        let lifecycle = self.lifecycle.get();
        if !lifecycle.is_poisoned() {
            self.lifecycle.set(lifecycle.poisoned());
            tracing::error!(partition = %self.name, %error, "write or fsync failed: partition poisoned, no further writes accepted");
        }
        self.flushed.notify_all();
    }

    /// Reads from `offset`: the cache for the tail, the segment files (sendfile) below it.
    /// ReadUncommitted stops at the high watermark; ReadCommitted at the last stable offset (a
    /// transaction starts at a batch boundary, so no batch straddles it) and returns the aborted
    /// transactions the data may overlap.
    pub fn read(&self, offset: i64, max_bytes: usize, isolation: Isolation) -> LogResult<ReadResult> {
        let high_watermark = self.high_watermark.get();
        let log_start_offset = self.log_start_offset();
        let log_end_offset = self.next_offset.get();
        if offset < log_start_offset || offset > log_end_offset {
            return Err(LogError::OffsetOutOfRange { offset, start: log_start_offset, end: log_end_offset });
        }
        let last_stable_offset = self.last_stable_offset();
        let end = match isolation {
            Isolation::ReadUncommitted => high_watermark,
            Isolation::ReadCommitted => last_stable_offset,
        };
        let mut result =
            ReadResult { chunks: Vec::new(), high_watermark, log_start_offset, last_stable_offset, aborted: Vec::new() };
        if offset >= end {
            // Between the readable end and the log end: not readable yet, but not out of range.
            return Ok(result);
        }
        // Every returned batch lies below this (the segment end bounds a file slice cheaply).
        let upper_bound_offset;
        if let Some(batches) = self.cache.borrow().read(offset, max_bytes, end) {
            upper_bound_offset =
                batches.last().and_then(|last| batch::BatchHeader::parse(last).ok()).map_or(end, |header| header.next_offset());
            result.chunks = batches.into_iter().map(Chunk::Memory).collect();
        } else {
            let slice = match self.with_log(|log| log.read_bounded(offset, max_bytes, end)).unwrap_or(Ok(None)) {
                // No descriptor to spare now: no data this time; a later fetch gets it.
                Err(LogError::DescriptorsBusy) => return Ok(result),
                slice => slice?,
            };
            upper_bound_offset = slice.as_ref().map_or(end, |(_, segment_end)| (*segment_end).min(end));
            result.chunks.extend(slice.map(|(slice, _)| Chunk::File(slice)));
        }
        if isolation == Isolation::ReadCommitted && !result.chunks.is_empty() {
            result.aborted = self.txns.borrow().aborted.collect(offset, upper_bound_offset);
        }
        Ok(result)
    }

    /// Reads whole batches below the high watermark from `offset`, about `max_bytes` of them (at
    /// least one when any is readable), for a coordinator replaying its log: from the batch cache
    /// for the tail, else from the segment file through the shard's descriptor budget, read on the
    /// blocking pool. Nothing is returned at or past the high watermark. A batch that fails its
    /// CRC check is an error, never skipped.
    pub async fn read_batches(&self, offset: i64, max_bytes: usize) -> LogResult<ReadBatches> {
        let mut busy_retries = 0usize;
        loop {
            let high_watermark = self.high_watermark.get();
            let (log_start_offset, log_end_offset) = (self.log_start_offset(), self.next_offset.get());
            if offset < log_start_offset || offset > log_end_offset {
                return Err(LogError::OffsetOutOfRange { offset, start: log_start_offset, end: log_end_offset });
            }
            let mut read = ReadBatches { batches: Vec::new(), next_offset: offset, high_watermark };
            if offset >= high_watermark {
                return Ok(read);
            }
            let cached = self.cache.borrow().read(offset, max_bytes, high_watermark);
            if let Some(batches) = cached {
                if cfg!(debug_assertions) {
                    for batch in &batches {
                        batch::validate_stored(batch).expect("a cached batch passed validation when appended");
                    }
                }
                read.batches = batches;
            } else {
                let Some(log) = self.log.borrow().clone() else { return Err(LogError::Deleted(self.name.clone())) };
                let slice = match log.read(offset, max_bytes, high_watermark) {
                    // The budget is held by descriptors in use (sendfiles in flight) for a moment.
                    Err(LogError::DescriptorsBusy) if busy_retries < DESCRIPTORS_BUSY_RETRIES_MAX => {
                        busy_retries += 1;
                        rt::sleep(DESCRIPTORS_BUSY_RETRY_INTERVAL).await;
                        continue;
                    }
                    slice => slice?,
                };
                if let Some(slice) = slice {
                    read.batches = read_whole_batches(log.dir(), slice).await?;
                }
            }
            if let Some(last) = read.batches.last() {
                read.next_offset = batch::BatchHeader::parse(last)?.next_offset();
            }
            check_read_batches(offset, &read);
            return Ok(read);
        }
    }

    /// ListOffsets by timestamp: first offset whose batch max timestamp is >= `timestamp_ms`.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> LogResult<Option<(i64, i64)>> {
        self.with_log(|log| log.offset_for_timestamp(timestamp_ms)).unwrap_or(Ok(None))
    }

    /// ListOffsets max timestamp (KIP-734): the offset holding the largest timestamp.
    pub fn max_timestamp(&self) -> LogResult<Option<(i64, i64)>> {
        self.with_log(|log| log.max_timestamp()).unwrap_or(Ok(None))
    }

    /// Truncates the log to `offset` (replication, KIP-101). Waits for queued writes first.
    pub async fn truncate_to(&self, offset: i64) -> LogResult<()> {
        while !self.pending.borrow().is_empty() || self.flusher.get() == FlusherActivity::Writing {
            self.flushed.notified().await;
        }
        let Some(log) = self.log.borrow().clone() else {
            return Err(LogError::Deleted(self.name.clone()));
        };
        log.truncate_to(offset, now_ms()).await?;
        let end = log.end_offset();
        let changes = {
            let mut txns = self.txns.borrow_mut();
            txns.unreplicated.clear();
            txns.aborted.truncate_in_memory(log.dir(), end)
        };
        crate::fs::off_shard(move || changes.apply()).await.map_err(|error| LogError::io(log.dir(), error))?;
        // The epochs above the cut go; the current epoch starts again at the new end.
        if self.epochs.borrow_mut().fit_to_log(log.log_start_offset(), end, self.leader_epoch.get()) {
            self.persist_epochs(&log).await?;
        }
        let producers = recover_producers(
            &log,
            |offset| self.txns.borrow().aborted.contains(offset),
            |txn, bucket| self.txns.borrow_mut().aborted.insert(txn, bucket),
        )
        .await?;
        *self.producers.borrow_mut() = producers;
        self.cache.borrow_mut().truncate_to(offset);
        self.next_offset.set(end);
        // The one place the high watermark may move back: an explicit truncation (KIP-101).
        self.high_watermark.set(self.high_watermark.get().min(end));
        self.announce_last_stable_offset();
        self.debug_check_invariants();
        Ok(())
    }

    /// Moves the high watermark to `end` after a flush: never back (only a truncation moves it
    /// back), never past the log end.
    fn advance_high_watermark(&self, end: i64) {
        let previous = self.high_watermark.get();
        assert!(end >= previous, "{}: high watermark moving back from {previous} to {end}", self.name);
        assert!(end <= self.next_offset.get(), "{}: high watermark {end} past the log end {}", self.name, self.next_offset.get());
        self.high_watermark.set(end);
    }

    /// [`Partition::check_invariants`] in debug builds (called after every change of state).
    fn debug_check_invariants(&self) {
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
    }

    /// Asserts how the partition's offsets relate (panics on a violation):
    ///
    /// ```text
    ///   log start <= last stable offset <= high watermark <= log end (next offset)
    ///   queued appends: contiguous, from the high watermark (no group in flight) to the log end
    /// ```
    /// While the flusher writes, the log may have rolled to a segment above the high watermark
    /// and retention may have moved the log start there, so `log start <= high watermark` and
    /// `written end == high watermark` are checked only between writes (and not once poisoned). Walks the queue and the segments: debug builds call it after
    /// every change of state; tests may call it any time.
    pub fn check_invariants(&self) {
        let high_watermark = self.high_watermark.get();
        let log_end_offset = self.next_offset.get();
        if let Some(latest) = self.epochs.borrow().latest() {
            assert!(latest.start_offset <= log_end_offset, "{}: epoch {latest:?} starts past the log end", self.name);
        }
        let last_stable_offset = self.last_stable_offset();
        assert!(high_watermark <= log_end_offset, "{}: high watermark {high_watermark} > log end {log_end_offset}", self.name);
        assert!(
            last_stable_offset <= high_watermark,
            "{}: LSO {last_stable_offset} > high watermark {high_watermark}",
            self.name
        );
        // A poisoned partition stops where its write failed: its log may hold part of a group the
        // high watermark never reached, and its queue waits to be failed.
        let settled = self.flusher.get() != FlusherActivity::Writing && !self.is_poisoned();
        if let Some(log) = self.log.borrow().as_deref() {
            log.check_invariants();
            let log_start_offset = log.log_start_offset();
            assert!(log_start_offset <= log_end_offset, "{}: log start {log_start_offset} > log end {log_end_offset}", self.name);
            // Retention keeps every segment at or above the high watermark, and DeleteRecords
            // stops at it, so even mid-flush (a roll may have made a segment above it) the log
            // starts at or below it.
            if !self.is_poisoned() {
                assert!(
                    log_start_offset <= high_watermark,
                    "{}: log start {log_start_offset} > high watermark {high_watermark}",
                    self.name
                );
            }
            if settled {
                assert_eq!(log.end_offset(), high_watermark, "{}: the written end is not the high watermark", self.name);
            }
        }
        let pending = self.pending.borrow();
        let mut queued_end = pending.front().map_or(log_end_offset, |first| first.base_offset);
        if settled && !pending.is_empty() {
            assert_eq!(queued_end, high_watermark, "{}: the queue does not start at the high watermark", self.name);
        }
        let mut queued_bytes = 0usize;
        for append in pending.iter() {
            assert_eq!(append.base_offset, queued_end, "{}: queued appends are not contiguous", self.name);
            for bytes in &append.batches {
                let header = batch::BatchHeader::parse(bytes).expect("queued batches were validated");
                assert_eq!(header.base_offset, queued_end, "{}: queued batches are not contiguous", self.name);
                queued_end = header.next_offset();
            }
            queued_bytes += append.bytes;
        }
        assert_eq!(queued_end, log_end_offset, "{}: the queue does not end at the log end", self.name);
        assert!(queued_bytes <= self.pending_bytes.get(), "{}: queued bytes not counted", self.name);
    }

    /// Marks the partition closing, lets the flusher write and sync everything queued and waits
    /// for it to stop (and for a compaction under way), then wakes long polls so they see it.
    async fn stop_flusher(&self) {
        self.lifecycle.set(self.lifecycle.get().closing());
        self.flusher_wake.notify_all();
        self.wait_for_compaction().await;
        let flusher = self.flusher_done.borrow_mut().take();
        if let Some(flusher) = flusher {
            flusher.await;
        }
        self.data_arrived.notify_all();
    }

    /// Stops the flusher after it has written and synced everything queued, and checkpoints.
    pub async fn close(&self) -> LogResult<()> {
        self.stop_flusher().await;
        let log = self.log.borrow_mut().take();
        self.cache.borrow_mut().clear();
        if let Some(log) = log.and_then(|log| Rc::try_unwrap(log).ok()) {
            // Idle since a clean open: the recovery point and producer snapshot on disk are exact.
            if !self.is_poisoned() && !log.unchanged_since_clean_open() {
                log.checkpoint().await?;
                self.snapshot_producers(&log).await;
            }
            log.close().await?;
        }
        self.lifecycle.set(self.lifecycle.get().closed());
        Ok(())
    }

    /// Closes and removes the partition's directory (topic deletion).
    pub async fn delete(&self) -> LogResult<()> {
        self.stop_flusher().await;
        self.cache.borrow_mut().clear();
        let log = self.log.borrow_mut().take();
        let deleted = match log.map(Rc::try_unwrap) {
            Some(Ok(log)) => log.delete().await,
            Some(Err(log)) => {
                let dir = log.dir().to_path_buf();
                crate::fs::remove_dir_all(&dir).map_err(|error| LogError::io(&dir, error))
            }
            None => Ok(()),
        };
        self.lifecycle.set(self.lifecycle.get().closed());
        deleted
    }
}

/// How long [`Partition::read_batches`] waits for a segment descriptor when the shard's budget is
/// held by descriptors in use.
const DESCRIPTORS_BUSY_RETRY_INTERVAL: Duration = Duration::from_millis(1);
/// ... and how many times before it gives up with [`LogError::DescriptorsBusy`] (retriable).
const DESCRIPTORS_BUSY_RETRIES_MAX: usize = 1000;

/// The whole batches of a file slice, read on the blocking pool (segment data is written with
/// O_DIRECT, so it is not in the page cache), each CRC-checked: the pair of the check made when it
/// was appended.
async fn read_whole_batches(dir: &std::path::Path, slice: FileSlice) -> LogResult<Vec<Bytes>> {
    let FileSlice { file, position, length, first_batch_bytes } = slice;
    let bytes = rt::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let mut buffer = vec![0u8; length];
        file.read_exact_at(&mut buffer, position).map(|()| Bytes::from(buffer))
    })
    .await
    .map_err(|error| LogError::io(dir, error))?;
    let mut batches = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= crate::limits::BATCH_HEADER_BYTES {
        let header = batch::BatchHeader::parse(&bytes[at..])?;
        if at + header.size_bytes > bytes.len() {
            break; // cut by max_bytes: the next read starts with it
        }
        let whole = bytes.slice(at..at + header.size_bytes);
        batch::validate_stored(&whole)?;
        batches.push(whole);
        at += header.size_bytes;
    }
    // A slice always starts with a whole batch (`Segment::read_from`).
    assert!(at >= first_batch_bytes, "a segment slice of {length} bytes holds no whole first batch");
    Ok(batches)
}

/// What [`Partition::read_batches`] hands across to a coordinator: the batch holding `offset`
/// first, offsets increasing, nothing at or past the high watermark.
fn check_read_batches(offset: i64, read: &ReadBatches) {
    let mut previous_end = offset;
    for (index, bytes) in read.batches.iter().enumerate() {
        let header = batch::BatchHeader::parse(bytes).expect("parsed when read");
        if index == 0 {
            // Holds `offset`, or is the next batch after a gap compaction left.
            assert!(header.last_offset() >= offset, "first batch ends at {} below {offset}", header.last_offset());
        } else {
            assert!(header.base_offset >= previous_end, "batches out of order: {} after {previous_end}", header.base_offset);
        }
        assert!(header.last_offset() < read.high_watermark, "a batch past the high watermark {}", read.high_watermark);
        previous_end = header.next_offset();
    }
    assert_eq!(read.next_offset, previous_end);
}

/// The batches of a produce request in the topic's codec (`compression.type`), each header's
/// corrected max timestamp kept; the size limit applies to what is stored, as in Kafka.
fn recompress_all(
    records: &Bytes,
    headers: &[batch::BatchHeader],
    codec: i16,
    max_message_bytes: usize,
) -> Result<(Bytes, Vec<batch::BatchHeader>), batch::BatchError> {
    let mut out = BytesMut::with_capacity(records.len());
    let mut position = 0usize;
    for header in headers {
        let original = records.slice(position..position + header.size_bytes);
        if header.compression() == codec {
            out.extend_from_slice(&original);
        } else {
            out.extend_from_slice(&batch::recompress(&original, header, codec)?);
        }
        position += header.size_bytes;
    }
    let out = out.freeze();
    let stored = batch::validate_produced(&out, max_message_bytes)?;
    // Paired check: the same batches, the same offsets and timestamps, only the codec changed.
    assert_eq!(stored.len(), headers.len());
    for (stored, header) in stored.iter().zip(headers) {
        assert_eq!(
            (stored.last_offset_delta, stored.max_timestamp, stored.compression()),
            (header.last_offset_delta, header.max_timestamp, codec)
        );
    }
    Ok((out, stored))
}

/// A CreateTime topic's timestamp rules (Kafka's `LogValidator.validateTimestamp`): no producer
/// may mark its batch LogAppendTime, and every record timestamp other than -1 lies within
/// [now - message.timestamp.before.max.ms, now + message.timestamp.after.max.ms].
fn check_timestamps(
    header: &batch::BatchHeader,
    summary: &batch::RecordsSummary,
    now_ms: i64,
    before_max_ms: i64,
    after_max_ms: i64,
) -> Result<(), batch::BatchError> {
    if header.is_log_append_time() {
        return Err(batch::BatchError::Timestamp("Producer should not set timestamp type to LogAppendTime".into()));
    }
    let earliest = now_ms.saturating_sub(before_max_ms);
    let latest = now_ms.saturating_add(after_max_ms);
    let out_of_range = |timestamp: i64| {
        batch::BatchError::Timestamp(format!(
            "Timestamp {timestamp} of a record is out of range. The timestamp should be within [{earliest}, {latest}]"
        ))
    };
    if summary.max_timestamp != batch::NO_TIMESTAMP && summary.max_timestamp > latest {
        return Err(out_of_range(summary.max_timestamp));
    }
    if summary.min_timestamp != i64::MAX && summary.min_timestamp < earliest {
        return Err(out_of_range(summary.min_timestamp));
    }
    Ok(())
}

/// The idempotent batches of an append at `base_offset`, with their offsets and timestamps, each
/// flagged transactional or not.
fn producer_batches(headers: &[batch::BatchHeader], base_offset: i64, append_time_ms: Option<i64>) -> Vec<(ProducerBatch, bool)> {
    let mut offset = base_offset;
    let mut batches = Vec::new();
    for header in headers {
        let timestamp_ms = append_time_ms.unwrap_or(header.max_timestamp);
        batches.extend(ProducerBatch::from_header(header, offset, timestamp_ms).map(|batch| (batch, header.is_transactional())));
        offset += header.last_offset_delta as i64 + 1;
    }
    batches
}

/// Producer state of `log` as of its end: the newest snapshot at or below the end (snapshots
/// past it, from appends a crash lost, are removed), then the batches after it — data batches'
/// headers, and the end-transaction markers of control batches (Kafka's `loadProducersFromRecords`).
/// An abort marker missing from `aborted` (its index file lost) gets its entry back.
/// The index is reached through `contains` and `insert`, so no borrow of it is held across the
/// awaits of the file writes (reads consult it meanwhile).
async fn recover_producers(
    log: &Log,
    contains: impl Fn(i64) -> bool,
    mut insert: impl FnMut(AbortedTxn, i64),
) -> LogResult<ProducerStateTable> {
    let end = log.end_offset();
    let (from, mut table) = producer_state::load_snapshot_at_or_below(log.dir(), end).unwrap_or_default();
    let mut missing: Vec<AbortedTxn> = Vec::new();
    let log_start_offset = log.log_start_offset();
    let scanned = log.scan_batches(from, |header, marker| {
        if header.producer_id < 0 {
            return;
        }
        if header.is_control() {
            let Some(marker) = marker else { return };
            let completed = table.replay_marker(&MarkerBatch {
                producer_id: header.producer_id,
                epoch: header.producer_epoch,
                marker,
                offset: header.base_offset,
                timestamp_ms: header.max_timestamp,
            });
            if completed.aborted && completed.last_offset >= log_start_offset && !contains(completed.last_offset) {
                missing.push(AbortedTxn {
                    producer_id: completed.producer_id,
                    first_offset: completed.first_offset,
                    last_offset: completed.last_offset,
                    last_stable_offset: table.first_ongoing_offset().unwrap_or(completed.last_offset + 1),
                });
            }
        } else if let Some(batch) = ProducerBatch::from_header(header, header.base_offset, header.max_timestamp) {
            table.replay_batch(&batch, header.is_transactional());
        }
    })?;
    if !missing.is_empty() {
        tracing::info!(dir = %log.dir().display(), entries = missing.len(), "aborted transaction index rebuilt from the log");
    }
    let mut position = 0;
    while position < missing.len() {
        let bucket = log.segment_base_of(missing[position].last_offset);
        let count = missing[position..].iter().take_while(|txn| log.segment_base_of(txn.last_offset) == bucket).count();
        let group = &missing[position..position + count];
        append_aborted_off_shard(log.dir(), bucket, group.to_vec()).await?;
        for txn in group {
            insert(*txn, bucket);
        }
        position += count;
    }
    tracing::debug!(
        dir = %log.dir().display(),
        snapshot_offset = from,
        scanned,
        producers = table.len(),
        open_txns = table.ongoing_txns().len(),
        "producer state recovered"
    );
    Ok(table)
}

/// Appends `entries` to the aborted-transaction index file of `bucket` durably, off the shard.
async fn append_aborted_off_shard(dir: &std::path::Path, bucket: i64, entries: Vec<AbortedTxn>) -> LogResult<()> {
    let owned = dir.to_path_buf();
    crate::fs::off_shard(move || AbortedIndex::append_to_file(&owned, bucket, &entries))
        .await
        .map_err(|error| LogError::io(dir, error))
}

const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// Makes sure `dir` holds data of this topic id, not of an earlier topic with the same name. A new
/// directory also gets the epoch checkpoint of an empty log led in `leader_epoch`, synced, its
/// name made durable by the same directory sync as the metadata file's: a partition reopened
/// under a later epoch must know which epoch its records were written in.
async fn check_topic_id(dir: &std::path::Path, topic_id: &[u8; 16], leader_epoch: i32) -> LogResult<()> {
    let path = dir.join(PARTITION_METADATA_FILE);
    let expected = format!("version: 0\ntopic_id: {}\n", uuid::Uuid::from_bytes(*topic_id));
    match std::fs::read_to_string(&path) {
        Ok(found) if found == expected => return Ok(()),
        Ok(_) => {
            tracing::warn!(dir = %dir.display(), "partition directory belongs to a deleted topic of the same name; removing it");
            crate::fs::remove_dir_all(dir).map_err(|error| LogError::io(dir, error))?;
        }
        Err(_) => {}
    }
    std::fs::create_dir_all(dir).map_err(|error| LogError::io(dir, error))?;
    // Durably: a torn or empty file left by a crash would read as another topic's, and the
    // directory would be removed as that topic's at the next start.
    let written = path.clone();
    let checkpoint = (dir.join(epochs::CHECKPOINT_FILE), EpochHistory::single(leader_epoch, 0).encode());
    crate::fs::off_shard(move || {
        crate::fs::write_synced(&checkpoint.0, checkpoint.1.as_bytes())?;
        crate::fs::write_durably(&written, expected.as_bytes())
    })
    .await
    .map_err(|error| LogError::io(&path, error))
}

/// The epoch checkpoint in `dir` as written; `None` if there is none (a directory from before
/// epochs were kept). Bytes that are not UTF-8 come back replaced, so they fail to decode and the
/// checkpoint is rewritten like any damaged one. Blocking.
fn read_epochs(dir: &std::path::Path) -> std::io::Result<Option<String>> {
    match std::fs::read(dir.join(epochs::CHECKPOINT_FILE)) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// The epoch history fitted to the recovered log `[log_start, log_end)` (Kafka trims its cache to
/// the log at load), with `leader_epoch` starting at the log end if it is newer than any known;
/// rewritten durably if that changed it. A missing checkpoint (a directory from before epochs
/// were kept) or an unreadable one is taken to say that every record is of `leader_epoch`.
async fn fit_epochs(
    dir: &std::path::Path,
    text: Option<String>,
    log_start: i64,
    log_end: i64,
    leader_epoch: i32,
) -> LogResult<EpochHistory> {
    let (mut history, mut changed) = match text.as_deref().map(EpochHistory::decode) {
        Some(Ok(history)) => (history, false),
        Some(Err(error)) => {
            tracing::warn!(dir = %dir.display(), %error, "unreadable leader epoch checkpoint; all records count as the current epoch's");
            (EpochHistory::single(leader_epoch, log_start), true)
        }
        None => (EpochHistory::single(leader_epoch, log_start), true),
    };
    changed |= history.fit_to_log(log_start, log_end, leader_epoch);
    if changed {
        write_epochs(dir, history.encode()).await?;
    }
    Ok(history)
}

/// Writes `text` as the checkpoint in `dir`, durably, off the shard thread.
async fn write_epochs(dir: &std::path::Path, text: String) -> LogResult<()> {
    let path = dir.join(epochs::CHECKPOINT_FILE);
    let written = path.clone();
    crate::fs::off_shard(move || crate::fs::write_durably(&written, text.as_bytes()))
        .await
        .map_err(|error| LogError::io(&path, error))
}
