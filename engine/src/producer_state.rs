//! Producer state of one partition: what idempotent producers (KIP-98, KIP-360) need the broker
//! to remember so that a retried batch is written once and a batch out of order is refused.
//!
//! ```text
//!  producer id ─▶ ProducerEntry { epoch, last timestamp,
//!                                 last 5 batches: (first seq, last seq, first offset, last offset) }
//!
//!  append of batch (pid, epoch, seq..seq+n-1) at offsets o..o+n-1, in Kafka's order:
//!    1. same epoch and the same sequence range as one of the last 5 batches → duplicate:
//!       answered with that batch's offsets, nothing written
//!    2. epoch below the producer's epoch                 → INVALID_PRODUCER_EPOCH (47)
//!    3. epoch above it (a bump), sequence not 0          → OUT_OF_ORDER_SEQUENCE_NUMBER (45)
//!       (a producer with no state at all is accepted at any sequence: KIP-360)
//!    4. same epoch, sequence not last + 1 (i32::MAX wraps to 0) → OUT_OF_ORDER_SEQUENCE_NUMBER
//! ```
//! The partition runs [`ProducerStateTable::check`] and [`ProducerStateTable::commit`] in the same
//! synchronous section that assigns offsets, so no other append of the shard comes between.
//!
//! Transactions (KIP-98, Kafka's `ProducerStateManager`): a transactional batch from a producer
//! with no open transaction opens one at the batch's first offset (`current_txn_first_offset`);
//! a non-transactional batch while one is open is INVALID_TXN_STATE (48). An end-transaction
//! marker from the coordinator (a control batch) closes it: its epoch must not be below the
//! producer's (47) nor its coordinator epoch below the one of the last marker (52); it becomes a
//! [`CompletedTxn`], the producer takes the marker's epoch (a higher one forgets the retained
//! batches, as a bump does) and the marker's coordinator epoch. Markers never touch sequences.
//! The open transactions are also kept by first offset, so the first unstable offset is a lookup.
//!
//! Persistence (Kafka's `<offset>.snapshot` files, version 2 with each producer's coordinator
//! epoch and open transaction; version 1 files still load): the whole table is written to
//! `<offset>.snapshot` in the partition directory when a segment rolls and on a clean close;
//! opening a partition loads the newest snapshot at or below the log end and replays the batch
//! headers (and the markers of control batches) after it. Retention and DeleteRecords keep the
//! state (KIP-360: only expiry removes a producer); truncation reloads it from a snapshot at or
//! below the new end.

use kafka_protocol::error::ResponseError as E;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use ahash::AHashMap;

pub use crate::batch::ControlType;
use crate::batch::{BatchHeader, EndTxnMarker};
use crate::limits::{PRODUCERS_PER_PARTITION_MAX, PRODUCER_BATCHES_RETAINED, PRODUCER_SNAPSHOTS_RETAINED};
pub use crate::txn_index::AbortedTxn;

/// Kafka's RecordBatch.NO_PRODUCER_EPOCH / NO_SEQUENCE.
pub const NO_PRODUCER_EPOCH: i16 = -1;
pub const NO_SEQUENCE: i32 = -1;

pub const SNAPSHOT_SUFFIX: &str = "snapshot";

/// Metadata of one retained batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub timestamp_ms: i64,
}

/// What a partition remembers of one producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub last_timestamp_ms: i64,
    /// First offset of the producer's open transaction on this partition (Kafka's
    /// `currentTxnFirstOffset`).
    pub current_txn_first_offset: Option<i64>,
    /// Coordinator epoch of the last marker written for this producer; -1 before any.
    pub coordinator_epoch: i32,
    /// Oldest first; at most [`PRODUCER_BATCHES_RETAINED`], all of `epoch`.
    batches: VecDeque<BatchMetadata>,
}

impl ProducerEntry {
    fn new(epoch: i16) -> ProducerEntry {
        ProducerEntry {
            epoch,
            last_timestamp_ms: -1,
            current_txn_first_offset: None,
            coordinator_epoch: -1,
            batches: VecDeque::new(),
        }
    }

    /// Last sequence written by this epoch, or -1.
    pub fn last_sequence(&self) -> i32 {
        self.batches.back().map_or(NO_SEQUENCE, |batch| batch.last_sequence)
    }

    pub fn last_offset(&self) -> i64 {
        self.batches.back().map_or(-1, |batch| batch.last_offset)
    }

    pub fn batches(&self) -> impl Iterator<Item = &BatchMetadata> {
        self.batches.iter()
    }

    fn find_duplicate(&self, batch: &ProducerBatch) -> Option<BatchMetadata> {
        if batch.epoch != self.epoch {
            return None;
        }
        let last_sequence = batch.last_sequence();
        self.batches
            .iter()
            .find(|kept| kept.first_sequence == batch.first_sequence && kept.last_sequence == last_sequence)
            .copied()
    }

    /// Records a batch; a new epoch forgets the batches of the old one (Kafka's `addBatch`).
    fn add(&mut self, batch: &ProducerBatch) {
        if batch.epoch != self.epoch {
            self.batches.clear();
            self.epoch = batch.epoch;
        }
        if self.batches.len() == PRODUCER_BATCHES_RETAINED {
            self.batches.pop_front();
        }
        self.batches.push_back(batch.metadata());
        self.last_timestamp_ms = batch.timestamp_ms;
    }

    /// A transactional batch opens a transaction unless one is open (Kafka's `appendDataBatch`).
    fn note_data(&mut self, batch: &ProducerBatch, transactional: bool) {
        if transactional && self.current_txn_first_offset.is_none() {
            self.current_txn_first_offset = Some(batch.first_offset);
        }
    }

    /// An end-transaction marker closes the open transaction (Kafka's `appendEndTxnMarker` then
    /// `ProducerStateEntry.update`). A higher epoch forgets the retained batches.
    fn end_txn(&mut self, marker: &MarkerBatch) -> CompletedTxn {
        let completed = CompletedTxn {
            producer_id: marker.producer_id,
            first_offset: self.current_txn_first_offset.unwrap_or(marker.offset),
            last_offset: marker.offset,
            aborted: marker.marker.control == ControlType::Abort,
        };
        if marker.epoch != self.epoch {
            self.batches.clear();
            self.epoch = marker.epoch;
        }
        self.coordinator_epoch = marker.marker.coordinator_epoch;
        self.last_timestamp_ms = marker.timestamp_ms;
        self.current_txn_first_offset = None;
        completed
    }
}

/// An end-transaction marker as producer state sees it, with the offset it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub marker: EndTxnMarker,
    pub offset: i64,
    pub timestamp_ms: i64,
}

/// A transaction closed by a marker (Kafka's `CompletedTxn`). A marker for a producer with no open
/// transaction completes an empty one at the marker's own offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub aborted: bool,
}

/// One batch of an append, as producer state sees it, with the offsets it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_sequence: i32,
    /// Records in the batch minus one (the batch's lastOffsetDelta).
    pub last_offset_delta: i32,
    pub first_offset: i64,
    /// The batch's max timestamp (the append time for LogAppendTime topics).
    pub timestamp_ms: i64,
}

impl ProducerBatch {
    /// The producer part of a batch at `first_offset`; `None` for a batch without a producer id.
    pub fn from_header(header: &BatchHeader, first_offset: i64, timestamp_ms: i64) -> Option<ProducerBatch> {
        (header.producer_id >= 0).then_some(ProducerBatch {
            producer_id: header.producer_id,
            epoch: header.producer_epoch,
            first_sequence: header.base_sequence,
            last_offset_delta: header.last_offset_delta,
            first_offset,
            timestamp_ms,
        })
    }

    /// Kafka's `DefaultRecordBatch.incrementSequence`: sequences wrap from i32::MAX to 0.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.first_sequence, self.last_offset_delta)
    }

    pub fn last_offset(&self) -> i64 {
        self.first_offset + self.last_offset_delta as i64
    }

    fn metadata(&self) -> BatchMetadata {
        BatchMetadata {
            first_sequence: self.first_sequence,
            last_sequence: self.last_sequence(),
            first_offset: self.first_offset,
            last_offset: self.last_offset(),
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// `sequence + increment`, wrapping past i32::MAX to 0 as Kafka does.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// Kafka's `inSequence`: the next sequence follows the last one, wrapping at i32::MAX.
fn in_sequence(last_sequence: i32, next_sequence: i32) -> bool {
    next_sequence as i64 == last_sequence as i64 + 1 || (next_sequence == 0 && last_sequence == i32::MAX)
}

/// Why an idempotent batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("out of order sequence number for producer {producer_id}: {sequence} (incoming), {last_sequence} (current end)")]
    OutOfOrderSequence { producer_id: i64, sequence: i32, last_sequence: i32 },
    #[error("invalid sequence number for new epoch {epoch} of producer {producer_id}: {sequence} (must be 0; current epoch {current_epoch})")]
    NewEpochNotAtZero { producer_id: i64, epoch: i16, sequence: i32, current_epoch: i16 },
    #[error("epoch {epoch} of producer {producer_id} is older than its current epoch {current_epoch}")]
    InvalidEpoch { producer_id: i64, epoch: i16, current_epoch: i16 },
    #[error("producer {producer_id} sent a non-transactional batch while its transaction from offset {first_offset} is open")]
    InvalidTxnState { producer_id: i64, first_offset: i64 },
    #[error(
        "marker of producer {producer_id} from coordinator epoch {coordinator_epoch}, older than {current_coordinator_epoch}"
    )]
    CoordinatorFenced { producer_id: i64, coordinator_epoch: i32, current_coordinator_epoch: i32 },
}

impl ProducerError {
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            ProducerError::OutOfOrderSequence { .. } | ProducerError::NewEpochNotAtZero { .. } => {
                E::OutOfOrderSequenceNumber.code()
            }
            // Since Kafka 2.7 (KIP-588) a stale epoch of a produce is INVALID_PRODUCER_EPOCH, not
            // PRODUCER_FENCED.
            ProducerError::InvalidEpoch { .. } => E::InvalidProducerEpoch.code(),
            ProducerError::InvalidTxnState { .. } => E::InvalidTxnState.code(),
            ProducerError::CoordinatorFenced { .. } => E::TransactionCoordinatorFenced.code(),
        }
    }
}

/// The outcome of checking an append.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write it; then [`ProducerStateTable::commit`] these entries.
    Append(Staged),
    /// A retry of a batch already in the log: answer with its offsets, write nothing.
    Duplicate(BatchMetadata),
}

/// Entries updated by an append, applied only once it is accepted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Staged {
    entries: Vec<(i64, ProducerEntry)>,
}

impl Staged {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A marker's producer entry, applied only once the marker is accepted.
#[derive(Debug, PartialEq, Eq)]
pub struct StagedMarker {
    producer_id: i64,
    entry: ProducerEntry,
    completed: CompletedTxn,
}

impl StagedMarker {
    pub fn completed(&self) -> CompletedTxn {
        self.completed
    }
}

/// The producers of one partition. Lives on the shard that owns the partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerStateTable {
    producers: AHashMap<i64, ProducerEntry>,
    /// Open transactions: first offset → producer id (Kafka's `ongoingTxns`). Always the
    /// `current_txn_first_offset` of the entries, kept in step by [`ProducerStateTable::put`].
    ongoing: BTreeMap<i64, i64>,
}

impl ProducerStateTable {
    pub fn len(&self) -> usize {
        self.producers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// First offset of the oldest open transaction (Kafka's first undecided offset among the
    /// ongoing transactions).
    pub fn first_ongoing_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Open transactions, oldest first: (producer id, epoch, first offset).
    pub fn ongoing_txns(&self) -> Vec<(i64, i16, i64)> {
        self.ongoing
            .iter()
            .map(|(first_offset, producer_id)| {
                (*producer_id, self.producers.get(producer_id).map_or(NO_PRODUCER_EPOCH, |entry| entry.epoch), *first_offset)
            })
            .collect()
    }

    /// Inserts or replaces an entry, keeping the index of open transactions in step.
    fn put(&mut self, producer_id: i64, entry: ProducerEntry) {
        if let Some(first_offset) = entry.current_txn_first_offset {
            self.ongoing.insert(first_offset, producer_id);
        }
        if let Some(old) = self.producers.insert(producer_id, entry) {
            let new = self.producers[&producer_id].current_txn_first_offset;
            if let Some(first_offset) = old.current_txn_first_offset.filter(|old| Some(*old) != new) {
                self.ongoing.remove(&first_offset);
            }
        }
    }

    fn remove(&mut self, producer_id: i64) {
        if let Some(first_offset) = self.producers.remove(&producer_id).and_then(|entry| entry.current_txn_first_offset) {
            self.ongoing.remove(&first_offset);
        }
    }

    /// Producers sorted by id, for DescribeProducers and tests.
    pub fn producers(&self) -> Vec<(i64, ProducerEntry)> {
        let mut all: Vec<_> = self.producers.iter().map(|(id, entry)| (*id, entry.clone())).collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all
    }

    /// Checks the idempotent batches of one append (in log order) against the state, as
    /// Kafka's `analyzeAndValidateProducerState` does for a client append: a duplicate of a
    /// retained batch wins over every other check; otherwise each batch must follow the one
    /// before it of the same producer, including earlier batches of this append.
    /// Batches of non-transactional producers; see [`ProducerStateTable::check_append`].
    pub fn check(&self, batches: &[ProducerBatch]) -> Result<Verdict, ProducerError> {
        let flagged: Vec<(ProducerBatch, bool)> = batches.iter().map(|batch| (*batch, false)).collect();
        self.check_append(&flagged)
    }

    /// [`ProducerStateTable::check`] for batches flagged transactional or not (the batch's
    /// attribute bit 4): a transactional batch opens a transaction; a non-transactional one while a
    /// transaction is open is INVALID_TXN_STATE.
    pub fn check_append(&self, batches: &[(ProducerBatch, bool)]) -> Result<Verdict, ProducerError> {
        self.check_append_from(batches, Origin::Client)
    }

    /// Checks batches a coordinator writes for a producer (TxnOffsetCommit records, sequence
    /// -1): Kafka's AppendOrigin.COORDINATOR checks the epoch and transaction state, not
    /// sequences, and finds no duplicates.
    pub fn check_coordinator_append(&self, batches: &[(ProducerBatch, bool)]) -> Result<Verdict, ProducerError> {
        self.check_append_from(batches, Origin::Coordinator)
    }

    fn check_append_from(&self, batches: &[(ProducerBatch, bool)], origin: Origin) -> Result<Verdict, ProducerError> {
        let mut staged = Staged::default();
        for (batch, transactional) in batches {
            let duplicate = match origin {
                Origin::Client => self.producers.get(&batch.producer_id).and_then(|entry| entry.find_duplicate(batch)),
                Origin::Coordinator => None,
            };
            if let Some(duplicate) = duplicate {
                return Ok(Verdict::Duplicate(duplicate));
            }
            let position = match staged.entries.iter().position(|(id, _)| *id == batch.producer_id) {
                Some(position) => position,
                None => {
                    let current = self.producers.get(&batch.producer_id);
                    // Kafka's `updatedEntry`: the current epoch, no batches yet.
                    let mut updated = ProducerEntry::new(current.map_or(NO_PRODUCER_EPOCH, |entry| entry.epoch));
                    updated.last_timestamp_ms = current.map_or(-1, |entry| entry.last_timestamp_ms);
                    updated.current_txn_first_offset = current.and_then(|entry| entry.current_txn_first_offset);
                    updated.coordinator_epoch = current.map_or(-1, |entry| entry.coordinator_epoch);
                    staged.entries.push((batch.producer_id, updated));
                    staged.entries.len() - 1
                }
            };
            let current = self.producers.get(&batch.producer_id);
            let updated = &staged.entries[position].1;
            match origin {
                Origin::Client => check_batch(batch, current, updated)?,
                Origin::Coordinator if batch.epoch < updated.epoch => {
                    return Err(ProducerError::InvalidEpoch {
                        producer_id: batch.producer_id,
                        epoch: batch.epoch,
                        current_epoch: updated.epoch,
                    })
                }
                Origin::Coordinator => {}
            }
            // A fresh append carries over the retained batches of the same epoch.
            let entry = &mut staged.entries[position].1;
            if entry.batches.is_empty() {
                if let Some(current) = current.filter(|current| current.epoch == batch.epoch) {
                    entry.batches = current.batches.clone();
                }
            }
            if let (false, Some(first_offset)) = (*transactional, entry.current_txn_first_offset) {
                return Err(ProducerError::InvalidTxnState { producer_id: batch.producer_id, first_offset });
            }
            entry.add(batch);
            entry.note_data(batch, *transactional);
        }
        Ok(Verdict::Append(staged))
    }

    /// Checks an end-transaction marker as Kafka's `appendEndTxnMarker` does for the coordinator:
    /// the producer epoch (47) and the coordinator epoch (52). A producer with no state is accepted.
    pub fn check_marker(&self, marker: &MarkerBatch) -> Result<StagedMarker, ProducerError> {
        let current = self.producers.get(&marker.producer_id);
        if let Some(current) = current {
            if marker.epoch < current.epoch {
                return Err(ProducerError::InvalidEpoch {
                    producer_id: marker.producer_id,
                    epoch: marker.epoch,
                    current_epoch: current.epoch,
                });
            }
            if marker.marker.coordinator_epoch < current.coordinator_epoch {
                return Err(ProducerError::CoordinatorFenced {
                    producer_id: marker.producer_id,
                    coordinator_epoch: marker.marker.coordinator_epoch,
                    current_coordinator_epoch: current.coordinator_epoch,
                });
            }
        }
        let mut entry = current.cloned().unwrap_or_else(|| ProducerEntry::new(marker.epoch));
        let completed = entry.end_txn(marker);
        Ok(StagedMarker { producer_id: marker.producer_id, entry, completed })
    }

    /// Applies an accepted marker; returns the transaction it completed.
    pub fn commit_marker(&mut self, staged: StagedMarker) -> CompletedTxn {
        if !self.producers.contains_key(&staged.producer_id) && self.producers.len() >= PRODUCERS_PER_PARTITION_MAX {
            self.evict_least_recent();
        }
        self.put(staged.producer_id, staged.entry);
        staged.completed
    }

    /// Records a marker read back from the log (recovery): no checks.
    pub fn replay_marker(&mut self, marker: &MarkerBatch) -> CompletedTxn {
        let mut entry = self.producers.get(&marker.producer_id).cloned().unwrap_or_else(|| ProducerEntry::new(marker.epoch));
        let completed = entry.end_txn(marker);
        if !self.producers.contains_key(&marker.producer_id) && self.producers.len() >= PRODUCERS_PER_PARTITION_MAX {
            self.evict_least_recent();
        }
        self.put(marker.producer_id, entry);
        completed
    }

    /// Applies the entries of an accepted append.
    pub fn commit(&mut self, staged: Staged) {
        for (producer_id, entry) in staged.entries {
            if !self.producers.contains_key(&producer_id) && self.producers.len() >= PRODUCERS_PER_PARTITION_MAX {
                self.evict_least_recent();
            }
            self.put(producer_id, entry);
        }
    }

    /// Records a batch read back from the log (recovery): no checks, as Kafka's load from the log.
    pub fn replay(&mut self, batch: &ProducerBatch) {
        self.replay_batch(batch, false);
    }

    /// [`ProducerStateTable::replay`] of a batch flagged transactional or not.
    pub fn replay_batch(&mut self, batch: &ProducerBatch, transactional: bool) {
        if !self.producers.contains_key(&batch.producer_id) && self.producers.len() >= PRODUCERS_PER_PARTITION_MAX {
            self.evict_least_recent();
        }
        let mut entry = self.producers.get(&batch.producer_id).cloned().unwrap_or_else(|| ProducerEntry::new(batch.epoch));
        entry.add(batch);
        entry.note_data(batch, transactional);
        self.put(batch.producer_id, entry);
    }

    /// Removes producers idle for at least `expiration_ms` (producer.id.expiration.ms; Kafka's
    /// `isProducerExpired` compares the last batch timestamp and never expires a producer with an
    /// open transaction). Returns how many went.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, entry| entry.current_txn_first_offset.is_some() || now_ms - entry.last_timestamp_ms < expiration_ms);
        before - self.producers.len()
    }

    /// The producer least recently active goes when a partition holds too many; never one with an
    /// open transaction (its records would turn visible to read_committed consumers).
    fn evict_least_recent(&mut self) {
        let oldest = self
            .producers
            .iter()
            .filter(|(_, entry)| entry.current_txn_first_offset.is_none())
            .min_by_key(|(id, entry)| (entry.last_timestamp_ms, **id))
            .map(|(id, _)| *id);
        if let Some(oldest) = oldest {
            tracing::warn!(
                producer_id = oldest,
                max = PRODUCERS_PER_PARTITION_MAX,
                "too many producers on a partition: evicting the least recent"
            );
            self.remove(oldest);
        }
    }

    /// Encodes the table (see the layout at [`ProducerStateTable::decode`]).
    pub fn encode(&self, offset: i64) -> Vec<u8> {
        let producers = self.producers();
        let mut body = Vec::with_capacity(16 + producers.len() * (31 + PRODUCER_BATCHES_RETAINED * 32));
        body.extend_from_slice(&offset.to_be_bytes());
        body.extend_from_slice(&(producers.len() as u32).to_be_bytes());
        for (producer_id, entry) in &producers {
            body.extend_from_slice(&producer_id.to_be_bytes());
            body.extend_from_slice(&entry.epoch.to_be_bytes());
            body.extend_from_slice(&entry.last_timestamp_ms.to_be_bytes());
            body.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
            body.extend_from_slice(&entry.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
            body.push(entry.batches.len() as u8);
            for batch in &entry.batches {
                body.extend_from_slice(&batch.first_sequence.to_be_bytes());
                body.extend_from_slice(&batch.last_sequence.to_be_bytes());
                body.extend_from_slice(&batch.first_offset.to_be_bytes());
                body.extend_from_slice(&batch.last_offset.to_be_bytes());
                body.extend_from_slice(&batch.timestamp_ms.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + body.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.push(SNAPSHOT_VERSION);
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes a snapshot: `FJPS` | version u8 | crc32c u32 of the rest | offset i64 | count u32 |
    /// per producer: id i64, epoch i16, last timestamp i64, [version 2: coordinator epoch i32,
    /// open transaction's first offset i64 (-1: none)], batch count u8, per batch: first
    /// sequence i32, last sequence i32, first offset i64, last offset i64, timestamp i64
    /// (big-endian). Version 1 files (before transactions) still load. `None` if anything is off:
    /// a snapshot that cannot be trusted is not used.
    pub fn decode(bytes: &[u8]) -> Option<(i64, ProducerStateTable)> {
        if bytes.len() < SNAPSHOT_HEADER_BYTES || &bytes[..4] != SNAPSHOT_MAGIC {
            return None;
        }
        let version = bytes[4];
        if !(1..=SNAPSHOT_VERSION).contains(&version) {
            return None;
        }
        let body = &bytes[SNAPSHOT_HEADER_BYTES..];
        if crc32c::crc32c(body) != u32::from_be_bytes(bytes[5..9].try_into().ok()?) {
            return None;
        }
        let mut reader = Reader { bytes: body };
        let offset = reader.i64()?;
        let count = reader.u32()? as usize;
        if count > PRODUCERS_PER_PARTITION_MAX {
            return None;
        }
        let mut table = ProducerStateTable::default();
        for _ in 0..count {
            let producer_id = reader.i64()?;
            let mut entry = ProducerEntry::new(reader.i16()?);
            entry.last_timestamp_ms = reader.i64()?;
            if version >= 2 {
                entry.coordinator_epoch = reader.i32()?;
                let first_offset = reader.i64()?;
                if first_offset < -1 {
                    return None;
                }
                entry.current_txn_first_offset = (first_offset >= 0).then_some(first_offset);
            }
            let batches = reader.u8()? as usize;
            if batches > PRODUCER_BATCHES_RETAINED {
                return None;
            }
            for _ in 0..batches {
                entry.batches.push_back(BatchMetadata {
                    first_sequence: reader.i32()?,
                    last_sequence: reader.i32()?,
                    first_offset: reader.i64()?,
                    last_offset: reader.i64()?,
                    timestamp_ms: reader.i64()?,
                });
            }
            if table.producers.contains_key(&producer_id)
                || entry.current_txn_first_offset.is_some_and(|first_offset| table.ongoing.contains_key(&first_offset))
            {
                return None;
            }
            table.put(producer_id, entry);
        }
        reader.bytes.is_empty().then_some((offset, table))
    }
}

/// Who writes a batch (Kafka's AppendOrigin, without replication).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Client,
    Coordinator,
}

/// Kafka's `checkProducerEpoch` then `checkSequence` (client appends only).
fn check_batch(batch: &ProducerBatch, current: Option<&ProducerEntry>, updated: &ProducerEntry) -> Result<(), ProducerError> {
    if batch.epoch < updated.epoch {
        return Err(ProducerError::InvalidEpoch {
            producer_id: batch.producer_id,
            epoch: batch.epoch,
            current_epoch: updated.epoch,
        });
    }
    if batch.epoch != updated.epoch {
        if batch.first_sequence != 0 && updated.epoch != NO_PRODUCER_EPOCH {
            return Err(ProducerError::NewEpochNotAtZero {
                producer_id: batch.producer_id,
                epoch: batch.epoch,
                sequence: batch.first_sequence,
                current_epoch: updated.epoch,
            });
        }
        return Ok(());
    }
    let last_sequence = if !updated.batches.is_empty() {
        updated.last_sequence()
    } else {
        match current {
            Some(current) if current.epoch == batch.epoch => current.last_sequence(),
            _ => NO_SEQUENCE,
        }
    };
    // No state for this producer (expired, or never seen here): any sequence is accepted (KIP-360).
    let unknown = current.is_none_or(|current| current.epoch == NO_PRODUCER_EPOCH);
    if unknown || in_sequence(last_sequence, batch.first_sequence) {
        Ok(())
    } else {
        Err(ProducerError::OutOfOrderSequence { producer_id: batch.producer_id, sequence: batch.first_sequence, last_sequence })
    }
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"FJPS";
/// 2: transactions (coordinator epoch, open transaction). Version 1 files are still read.
const SNAPSHOT_VERSION: u8 = 2;
const SNAPSHOT_HEADER_BYTES: usize = 4 + 1 + 4;

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        if self.bytes.len() < N {
            return None;
        }
        let (head, rest) = self.bytes.split_at(N);
        self.bytes = rest;
        head.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|bytes| bytes[0])
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

/// `<dir>/<offset, 20 digits>.snapshot`.
pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(crate::segment::file_name(offset, SNAPSHOT_SUFFIX))
}

/// Offsets of the snapshot files in `dir`, ascending.
pub fn list_snapshots(dir: &Path) -> Vec<i64> {
    crate::segment::list_offsets(dir, SNAPSHOT_SUFFIX)
}

/// Writes the snapshot of `table` at `offset` durably (temporary file, fsync, rename), then
/// removes all but the newest [`PRODUCER_SNAPSHOTS_RETAINED`] snapshots.
pub fn write_snapshot(dir: &Path, offset: i64, table: &ProducerStateTable) -> std::io::Result<()> {
    write_snapshot_encoded(dir, offset, &table.encode(offset))
}

/// [`write_snapshot`] of a table already encoded (`ProducerStateTable::encode`), so the write can
/// run off the shard while the table changes.
pub fn write_snapshot_encoded(dir: &Path, offset: i64, encoded: &[u8]) -> std::io::Result<()> {
    let path = snapshot_path(dir, offset);
    crate::fs::write_durably(&path, encoded)?;
    let offsets = list_snapshots(dir);
    let excess = offsets.len().saturating_sub(PRODUCER_SNAPSHOTS_RETAINED);
    for old in &offsets[..excess] {
        let _ = crate::fs::remove_file(&snapshot_path(dir, *old));
    }
    Ok(())
}

/// Removes the snapshots above `offset` (the log ends there now), then returns the newest
/// readable snapshot left: (offset, table). Unreadable snapshots are skipped (and logged).
pub fn load_snapshot_at_or_below(dir: &Path, offset: i64) -> Option<(i64, ProducerStateTable)> {
    let offsets = list_snapshots(dir);
    for stale in offsets.iter().filter(|found| **found > offset) {
        let _ = crate::fs::remove_file(&snapshot_path(dir, *stale));
    }
    for candidate in offsets.iter().rev().filter(|found| **found <= offset) {
        let path = snapshot_path(dir, *candidate);
        match std::fs::read(&path).ok().and_then(|bytes| ProducerStateTable::decode(&bytes)) {
            Some((stored, table)) if stored == *candidate => return Some((stored, table)),
            _ => tracing::warn!(snapshot = %path.display(), "producer state snapshot unreadable; using an older one"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(producer_id: i64, epoch: i16, first_sequence: i32, count: i32, first_offset: i64) -> ProducerBatch {
        ProducerBatch {
            producer_id,
            epoch,
            first_sequence,
            last_offset_delta: count - 1,
            first_offset,
            timestamp_ms: 1000 + first_offset,
        }
    }

    fn append(table: &mut ProducerStateTable, batch: ProducerBatch) -> Result<Option<BatchMetadata>, ProducerError> {
        match table.check(&[batch])? {
            Verdict::Append(staged) => {
                table.commit(staged);
                Ok(None)
            }
            Verdict::Duplicate(found) => Ok(Some(found)),
        }
    }

    #[test]
    fn retry_of_one_of_the_last_five_batches_is_a_duplicate_with_its_original_offsets() {
        let mut table = ProducerStateTable::default();
        for index in 0..6 {
            assert_eq!(append(&mut table, batch(7, 0, index * 2, 2, 100 + index as i64 * 2)), Ok(None));
        }
        let found = append(&mut table, batch(7, 0, 2, 2, 999)).unwrap().expect("duplicate");
        assert_eq!((found.first_offset, found.last_offset), (102, 103));
        // The first batch fell out of the window of five: its retry is out of order (KIP-98).
        assert!(matches!(append(&mut table, batch(7, 0, 0, 2, 999)), Err(ProducerError::OutOfOrderSequence { .. })));
    }

    #[test]
    fn gap_in_sequence_is_out_of_order_and_changes_nothing() {
        let mut table = ProducerStateTable::default();
        append(&mut table, batch(1, 0, 0, 3, 0)).unwrap();
        let before = table.clone();
        let error = append(&mut table, batch(1, 0, 4, 1, 3)).unwrap_err();
        assert_eq!(error.kafka_error_code(), 45);
        assert_eq!(table, before);
        assert_eq!(append(&mut table, batch(1, 0, 3, 1, 3)), Ok(None));
    }

    #[test]
    fn older_epoch_is_invalid_producer_epoch_kip_588() {
        let mut table = ProducerStateTable::default();
        append(&mut table, batch(1, 3, 0, 1, 0)).unwrap();
        let error = append(&mut table, batch(1, 2, 1, 1, 1)).unwrap_err();
        assert_eq!(error.kafka_error_code(), 47);
    }

    #[test]
    fn new_epoch_must_start_at_sequence_zero_and_forgets_old_batches() {
        let mut table = ProducerStateTable::default();
        append(&mut table, batch(1, 0, 0, 1, 0)).unwrap();
        assert!(matches!(append(&mut table, batch(1, 1, 5, 1, 1)), Err(ProducerError::NewEpochNotAtZero { .. })));
        assert_eq!(append(&mut table, batch(1, 1, 0, 1, 1)), Ok(None));
        // The old epoch's batch is no duplicate any more: its epoch is stale.
        assert_eq!(append(&mut table, batch(1, 0, 0, 1, 2)).unwrap_err().kafka_error_code(), 47);
        assert_eq!(table.get(1).unwrap().batches().count(), 1);
    }

    #[test]
    fn unknown_producer_is_accepted_at_any_sequence_kip_360() {
        let mut table = ProducerStateTable::default();
        assert_eq!(append(&mut table, batch(9, 4, 12345, 2, 0)), Ok(None));
        assert_eq!(table.get(9).unwrap().last_sequence(), 12346);
    }

    #[test]
    fn sequence_wraps_from_i32_max_to_zero() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        let mut table = ProducerStateTable::default();
        append(&mut table, batch(1, 0, i32::MAX - 1, 2, 0)).unwrap();
        assert_eq!(table.get(1).unwrap().last_sequence(), i32::MAX);
        assert_eq!(append(&mut table, batch(1, 0, 0, 1, 2)), Ok(None));
        let mut wrapped = ProducerStateTable::default();
        append(&mut wrapped, batch(2, 0, i32::MAX, 3, 0)).unwrap();
        assert_eq!(wrapped.get(2).unwrap().last_sequence(), 1);
        assert_eq!(append(&mut wrapped, batch(2, 0, 2, 1, 3)), Ok(None));
    }

    #[test]
    fn batches_of_one_append_chain_and_an_error_stages_nothing() {
        let mut table = ProducerStateTable::default();
        let Verdict::Append(staged) = table.check(&[batch(1, 0, 0, 2, 0), batch(1, 0, 2, 2, 2)]).unwrap() else { panic!() };
        table.commit(staged);
        assert_eq!(table.get(1).unwrap().last_sequence(), 3);
        let before = table.clone();
        assert!(table.check(&[batch(1, 0, 4, 1, 4), batch(1, 0, 6, 1, 5)]).is_err());
        assert_eq!(table, before);
    }

    #[test]
    fn expiry_removes_idle_producers_only() {
        let mut table = ProducerStateTable::default();
        append(&mut table, batch(1, 0, 0, 1, 0)).unwrap(); // timestamp 1000
        append(&mut table, batch(2, 0, 0, 1, 500)).unwrap(); // timestamp 1500
        assert_eq!(table.expire(2000, 1000), 1);
        assert!(table.get(1).is_none() && table.get(2).is_some());
    }

    #[test]
    fn snapshot_round_trips_and_rejects_corruption() {
        let mut table = ProducerStateTable::default();
        for producer in 0..4 {
            for index in 0..7 {
                append(&mut table, batch(producer, 1, index, 1, producer * 100 + index as i64)).unwrap();
            }
        }
        let bytes = table.encode(4242);
        assert_eq!(ProducerStateTable::decode(&bytes), Some((4242, table.clone())));
        for position in [0, 6, 20, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[position] ^= 1;
            assert_eq!(ProducerStateTable::decode(&bad), None, "flip at {position}");
        }
        assert_eq!(ProducerStateTable::decode(&bytes[..bytes.len() - 1]), None);
    }

    fn end_marker(producer_id: i64, epoch: i16, coordinator_epoch: i32, control: ControlType, offset: i64) -> MarkerBatch {
        MarkerBatch {
            producer_id,
            epoch,
            marker: EndTxnMarker { control, coordinator_epoch },
            offset,
            timestamp_ms: 5000 + offset,
        }
    }

    fn txn_append(table: &mut ProducerStateTable, batch: ProducerBatch, transactional: bool) -> Result<(), ProducerError> {
        match table.check_append(&[(batch, transactional)])? {
            Verdict::Append(staged) => table.commit(staged),
            Verdict::Duplicate(_) => panic!("unexpected duplicate"),
        }
        Ok(())
    }

    #[test]
    fn transactional_batch_opens_a_txn_that_a_marker_completes_kip_98() {
        let mut table = ProducerStateTable::default();
        txn_append(&mut table, batch(1, 0, 0, 2, 10), true).unwrap();
        txn_append(&mut table, batch(1, 0, 2, 2, 14), true).unwrap();
        assert_eq!(table.get(1).unwrap().current_txn_first_offset, Some(10), "the first batch opened it");
        assert_eq!(table.first_ongoing_offset(), Some(10));
        let staged = table.check_marker(&end_marker(1, 0, 3, ControlType::Abort, 20)).unwrap();
        let completed = table.commit_marker(staged);
        assert_eq!(completed, CompletedTxn { producer_id: 1, first_offset: 10, last_offset: 20, aborted: true });
        let entry = table.get(1).unwrap();
        assert_eq!((entry.current_txn_first_offset, entry.coordinator_epoch, entry.last_sequence()), (None, 3, 3));
        assert_eq!(table.first_ongoing_offset(), None);
        // The sequence carries on after a marker of the same epoch: markers never touch sequences.
        txn_append(&mut table, batch(1, 0, 4, 1, 21), true).unwrap();
    }

    #[test]
    fn marker_with_a_higher_epoch_forgets_the_batches_and_stale_markers_are_fenced() {
        let mut table = ProducerStateTable::default();
        txn_append(&mut table, batch(1, 2, 0, 2, 0), true).unwrap();
        let stale_epoch = table.check_marker(&end_marker(1, 1, 0, ControlType::Commit, 2)).unwrap_err();
        assert_eq!(stale_epoch.kafka_error_code(), 47);
        let staged = table.check_marker(&end_marker(1, 3, 5, ControlType::Commit, 2)).unwrap();
        assert!(!table.commit_marker(staged).aborted);
        let entry = table.get(1).unwrap();
        assert_eq!((entry.epoch, entry.batches().count()), (3, 0), "a bump forgets the retained batches");
        let fenced = table.check_marker(&end_marker(1, 3, 4, ControlType::Abort, 3)).unwrap_err();
        assert_eq!(fenced.kafka_error_code(), 52);
        // A producer without state: accepted, an empty transaction at the marker's own offset.
        let staged = table.check_marker(&end_marker(9, 0, 0, ControlType::Abort, 7)).unwrap();
        assert_eq!(table.commit_marker(staged), CompletedTxn { producer_id: 9, first_offset: 7, last_offset: 7, aborted: true });
    }

    #[test]
    fn non_transactional_batch_during_an_open_txn_is_invalid_txn_state() {
        let mut table = ProducerStateTable::default();
        txn_append(&mut table, batch(1, 0, 0, 1, 0), true).unwrap();
        let before = table.clone();
        assert_eq!(txn_append(&mut table, batch(1, 0, 1, 1, 1), false).unwrap_err().kafka_error_code(), 48);
        assert_eq!(table, before);
    }

    #[test]
    fn expiry_keeps_producers_with_an_open_txn() {
        let mut table = ProducerStateTable::default();
        txn_append(&mut table, batch(1, 0, 0, 1, 0), true).unwrap();
        append(&mut table, batch(2, 0, 0, 1, 1)).unwrap();
        assert_eq!(table.expire(i64::MAX / 2, 1), 1);
        assert!(table.get(1).is_some());
    }

    #[test]
    fn snapshot_v2_keeps_open_txns_and_v1_files_still_load() {
        let mut table = ProducerStateTable::default();
        txn_append(&mut table, batch(1, 0, 0, 2, 0), true).unwrap();
        append(&mut table, batch(2, 4, 0, 1, 2)).unwrap();
        let staged = table.check_marker(&end_marker(2, 4, 6, ControlType::Commit, 3)).unwrap();
        table.commit_marker(staged);
        let (offset, decoded) = ProducerStateTable::decode(&table.encode(4)).unwrap();
        assert_eq!((offset, &decoded), (4, &table));
        assert_eq!(decoded.ongoing_txns(), vec![(1, 0, 0)]);
        assert_eq!(decoded.get(2).unwrap().coordinator_epoch, 6);
        // A version 1 file (before transactions): producer 7, epoch 1, one batch.
        let mut body = Vec::new();
        body.extend_from_slice(&100i64.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&7i64.to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&1234i64.to_be_bytes());
        body.push(1);
        for value in [0i32, 4] {
            body.extend_from_slice(&value.to_be_bytes());
        }
        for value in [90i64, 94, 1234] {
            body.extend_from_slice(&value.to_be_bytes());
        }
        let mut v1 = b"FJPS".to_vec();
        v1.push(1);
        v1.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        v1.extend_from_slice(&body);
        let (offset, loaded) = ProducerStateTable::decode(&v1).expect("version 1 loads");
        let entry = loaded.get(7).unwrap();
        assert_eq!(
            (offset, entry.epoch, entry.last_sequence(), entry.current_txn_first_offset, entry.coordinator_epoch),
            (100, 1, 4, None, -1)
        );
    }

    #[test]
    fn snapshot_files_keep_the_newest_and_drop_those_past_the_log_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = ProducerStateTable::default();
        append(&mut table, batch(1, 0, 0, 1, 0)).unwrap();
        for offset in [10, 20, 30] {
            write_snapshot(dir.path(), offset, &table).unwrap();
        }
        assert_eq!(list_snapshots(dir.path()), vec![20, 30]);
        let (offset, loaded) = load_snapshot_at_or_below(dir.path(), 25).unwrap();
        assert_eq!((offset, loaded), (20, table));
        assert_eq!(list_snapshots(dir.path()), vec![20]);
        assert!(load_snapshot_at_or_below(dir.path(), 19).is_none());
    }
}
