//! The transaction coordinator as a pure state machine: InitProducerId, AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn, ListTransactions and DescribeTransactions for the transactional ids of
//! one `__transaction_state` partition, after Kafka's `TransactionCoordinator`,
//! `TransactionMetadata` and `TransactionStateManager` (transaction version 1: KIP-98, KIP-360,
//! KIP-588, KIP-664, KIP-890 part 1 verification).
//!
//! ```text
//!                 AddPartitions / AddOffsets                 EndTxn(commit)
//!   Empty ───────────────────────────────────▶ Ongoing ──────────────────────▶ PrepareCommit
//!   CompleteCommit ─┘  (InitProducerId:            │  EndTxn(abort),               │ markers_written
//!   CompleteAbort ──┘   epoch + 1, stays Empty)    │  InitProducerId (fence),      ▼
//!       ▲                                          │  timeout (fence)        CompleteCommit
//!       │ markers_written                          ▼
//!       └──────────────────────────────────── PrepareAbort
//!   Empty / Complete*, idle past transactional.id.expiration.ms ──▶ removed (tombstone)
//! ```
//!
//! Sequencing contract with the caller (net/): append an Outcome's `records` to this partition of
//! `__transaction_state` with acks=all, and only once they (and every earlier Outcome's records)
//! are durable send its `replies` and start writing the markers of its `markers` to the data
//! partitions. When every marker of a job is durable, call [`Transactions::markers_written`]. The
//! state here moves as the records are emitted (Kafka applies a transition in its append callback;
//! on a single node the append either succeeds or the log is poisoned), so if an append fails the
//! caller must drop the replies, drop this `Transactions` and rebuild it by [`Transactions::replay`].
//! Kafka's pending-state machinery (`pendingState`, `hasFailedEpochFence`) exists for the window
//! between the two; it has no counterpart here.
//!
//! Nothing is ever parked: EndTxn is answered as soon as PrepareCommit/PrepareAbort is durable
//! (Kafka answers before it sends markers), and an InitProducerId that finds an Ongoing transaction
//! aborts it with an epoch bump and answers CONCURRENT_TRANSACTIONS at once; the client retries.
//!
//! Differences from Kafka:
//! - Transaction version 2 (KIP-890 part 2: an epoch bump per transaction, EndTxn v5) is not run:
//!   advertise EndTxn up to v4 ([`END_TXN_VERSION_MAX`]); a v5 EndTxn gets UNSUPPORTED_VERSION.
//!   InitProducerId `keep_prepared_txn` / `enable_2_pc` (KIP-939) are not supported.
//! - Values are written as TransactionLogValue v1 with the previous producer id set after a
//!   producer id rotation, so a KIP-360 retry of that InitProducerId still works after a reload;
//!   Kafka leaves that tag at its default. The last producer epoch is not persisted (as in Kafka).
//!   A retried InitProducerId that changes nothing keeps that previous producer id where Kafka
//!   overwrites it, so a second retry of a rotation is not fenced.
//! - Timeouts and expiry fire at their exact deadline ([`Transactions::next_deadline`]) rather than
//!   on Kafka's 10 s / 1 h scan intervals; a tick does at most [`TICK_RECORDS_MAX`] of them.
//! - DescribeTransactions lists every partition of a preparing transaction; Kafka drops each one as
//!   its marker is written.
//!
//! [`Transactions`] lives on the shard that owns its `__transaction_state` partition and is never
//! shared between shards.

mod record;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{self, TopicData};
use kafka_protocol::messages::list_transactions_response;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, EndTxnRequest,
    EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse, ListTransactionsRequest, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

pub use record::{
    encode_key, TxnRecord, TxnRecordError, TxnState, TxnValue, KEY_VERSION, TRANSACTIONAL_ID_BYTES_MAX, VALUE_VERSION_V0,
    VALUE_VERSION_V1,
};

use crate::consumer::TopicRegex;

/// Identifies a request; chosen by the caller, echoed in [`Outcome::replies`].
pub type Token = crate::classic::Token;

/// Where a transaction's offsets go: AddOffsetsToTxn adds the group's partition of this topic.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The topic whose partitions hold these records.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// The newest EndTxn served: v5 means transaction version 2, which is not run here.
pub const END_TXN_VERSION_MAX: i16 = 4;
/// Timeouts and expiries handled by one [`Transactions::tick`]; the rest wait for the next one
/// (the deadline stays in the past, so the caller ticks again at once).
pub const TICK_RECORDS_MAX: usize = 1024;
/// Transactions in one batched (v4+) AddPartitionsToTxn; the rest are answered INVALID_REQUEST.
pub const ADD_PARTITIONS_TRANSACTIONS_MAX: usize = 1024;

const _: () = assert!(TICK_RECORDS_MAX > 0 && ADD_PARTITIONS_TRANSACTIONS_MAX > 0);

const NONE: i16 = 0;
/// Kafka `RecordBatch.NO_PRODUCER_ID` / `NO_PRODUCER_EPOCH`.
const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;

// KIP-588: requests older than these versions get INVALID_PRODUCER_EPOCH instead of
// PRODUCER_FENCED (the request schemas' "Version N adds the support for new error code
// PRODUCER_FENCED"; Kafka's KafkaApis does the mapping).
const INIT_PRODUCER_ID_FENCED_VERSION_MIN: i16 = 4;
const ADD_PARTITIONS_FENCED_VERSION_MIN: i16 = 2;
const ADD_OFFSETS_FENCED_VERSION_MIN: i16 = 2;
const END_TXN_FENCED_VERSION_MIN: i16 = 2;
/// AddPartitionsToTxn v5 adds TRANSACTION_ABORTABLE (KIP-890); v4 verification answers
/// INVALID_TXN_STATE for a partition outside the transaction.
const ADD_PARTITIONS_ABORTABLE_VERSION_MIN: i16 = 5;

/// Coordinator settings, with Kafka's broker defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`.
    pub transaction_max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    pub transactional_id_expiration_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig { transaction_max_timeout_ms: 900_000, transactional_id_expiration_ms: 604_800_000 }
    }
}

/// The `__transaction_state` partition that owns `transactional_id`: `Utils.abs(hashCode) % n`
/// (Kafka `TransactionStateManager.partitionFor`), the same hash as groups.
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    crate::records::partition_for(transactional_id, partitions)
}

/// Markers to write: one COMMIT or ABORT control record per partition, with this producer id and
/// epoch and coordinator epoch. Kafka treats UNKNOWN_TOPIC_OR_PARTITION from a marker write (a
/// deleted topic) as written; so should the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub commit: bool,
    /// Every partition of the transaction, data and `__consumer_offsets` alike, sorted. Empty only
    /// if a client sent AddPartitionsToTxn with no partitions: call `markers_written` at once.
    pub partitions: Vec<(String, i32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TxnReply {
    InitProducerId(InitProducerIdResponse),
    AddPartitions(AddPartitionsToTxnResponse),
    AddOffsets(AddOffsetsToTxnResponse),
    EndTxn(EndTxnResponse),
}

/// What an operation produced: records to append durably, then replies to send and markers to
/// write (see the module documentation for the order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub records: Vec<TxnRecord>,
    pub replies: Vec<(Token, TxnReply)>,
    pub markers: Vec<MarkerJob>,
}

/// One transactional id's state: Kafka `TransactionMetadata` without the pending state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TxnMetadata {
    producer_id: i64,
    previous_producer_id: i64,
    next_producer_id: i64,
    producer_epoch: i16,
    /// The epoch before the last InitProducerId bump, so that its retry gets the same answer
    /// (KIP-360). Not in the record: -1 after a reload, as in Kafka.
    last_producer_epoch: i16,
    timeout_ms: i32,
    state: TxnState,
    partitions: BTreeSet<(String, i32)>,
    start_ms: i64,
    last_update_ms: i64,
    client_transaction_version: i16,
}

impl TxnMetadata {
    /// Kafka creates the metadata of a new id with epoch -1 and bumps it to 0 in the same request.
    fn new(producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMetadata {
            producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            client_transaction_version: 0,
        }
    }

    fn from_value(value: &TxnValue) -> Self {
        let partitions = if value.state == TxnState::Empty {
            BTreeSet::new()
        } else {
            value
                .partitions
                .iter()
                .flat_map(|(topic, partitions)| partitions.iter().map(move |partition| (topic.clone(), *partition)))
                .collect()
        };
        TxnMetadata {
            producer_id: value.producer_id,
            previous_producer_id: value.previous_producer_id,
            next_producer_id: value.next_producer_id,
            producer_epoch: value.producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: value.transaction_timeout_ms,
            state: value.state,
            partitions,
            start_ms: value.start_ms,
            last_update_ms: value.last_update_ms,
            client_transaction_version: value.client_transaction_version,
        }
    }

    fn to_value(&self) -> TxnValue {
        TxnValue {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            transaction_timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: group_by_topic(&self.partitions),
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
            client_transaction_version: self.client_transaction_version,
        }
    }

    fn record(&self, transactional_id: &str) -> TxnRecord {
        TxnRecord { transactional_id: transactional_id.to_owned(), value: Some(self.to_value()) }
    }

    fn marker_job(&self, transactional_id: &str, coordinator_epoch: i32) -> MarkerJob {
        debug_assert!(matches!(self.state, TxnState::PrepareCommit | TxnState::PrepareAbort));
        MarkerJob {
            transactional_id: transactional_id.to_owned(),
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            coordinator_epoch,
            commit: self.state == TxnState::PrepareCommit,
            partitions: self.partitions.iter().cloned().collect(),
        }
    }

    /// Kafka `isProducerEpochExhausted`: epoch `i16::MAX` is kept back so a producer can always be fenced.
    fn epoch_exhausted(&self) -> bool {
        epoch_exhausted(self.producer_epoch)
    }

    fn check_invariants(&self, transactional_id: &str) {
        match self.state {
            TxnState::Empty => {
                assert!(self.partitions.is_empty(), "{transactional_id}: Empty with partitions");
                assert_eq!(self.start_ms, -1, "{transactional_id}: Empty with a start time");
            }
            TxnState::CompleteCommit | TxnState::CompleteAbort => {
                assert!(self.partitions.is_empty(), "{transactional_id}: {:?} with partitions", self.state)
            }
            TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort => {
                assert!(self.start_ms >= 0, "{transactional_id}: {:?} without a start time", self.state)
            }
            TxnState::Dead | TxnState::PrepareEpochFence => {}
        }
        assert!(self.producer_epoch >= 0, "{transactional_id}: negative epoch {}", self.producer_epoch);
        assert!(self.producer_id >= 0, "{transactional_id}: negative producer id {}", self.producer_id);
    }
}

fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

fn group_by_topic(partitions: &BTreeSet<(String, i32)>) -> Vec<(String, Vec<i32>)> {
    let mut grouped: Vec<(String, Vec<i32>)> = Vec::new();
    for (topic, partition) in partitions {
        match grouped.last_mut() {
            Some((last, ids)) if last == topic => ids.push(*partition),
            _ => grouped.push((topic.clone(), vec![*partition])),
        }
    }
    grouped
}

fn code(error: ResponseError) -> i16 {
    error.code()
}

/// PRODUCER_FENCED, or INVALID_PRODUCER_EPOCH for requests older than `fenced_version_min` (KIP-588).
fn fenced(api_version: i16, fenced_version_min: i16) -> i16 {
    if api_version >= fenced_version_min {
        code(ResponseError::ProducerFenced)
    } else {
        code(ResponseError::InvalidProducerEpoch)
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// The state of one `__transaction_state` partition's transactional ids.
///
/// Lives on the shard that owns that partition; never shared across shards.
#[derive(Debug, Clone)]
pub struct Transactions {
    config: TxnConfig,
    coordinator_epoch: i32,
    loading: bool,
    ids: BTreeMap<String, TxnMetadata>,
}

impl Transactions {
    /// A coordinator that answers COORDINATOR_LOAD_IN_PROGRESS until [`Transactions::finish_loading`].
    pub fn new_loading(config: TxnConfig, coordinator_epoch: i32) -> Self {
        Transactions { config, coordinator_epoch, loading: true, ids: BTreeMap::new() }
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    pub fn coordinator_epoch(&self) -> i32 {
        self.coordinator_epoch
    }

    pub fn is_loading(&self) -> bool {
        self.loading
    }

    pub fn transactional_ids(&self) -> impl Iterator<Item = &str> {
        self.ids.keys().map(String::as_str)
    }

    /// What the last record of `transactional_id` says (its persisted state).
    pub fn value(&self, transactional_id: &str) -> Option<TxnValue> {
        self.ids.get(transactional_id).map(TxnMetadata::to_value)
    }

    /// Panics when an internal invariant does not hold.
    pub fn check_invariants(&self) {
        self.ids.iter().for_each(|(transactional_id, metadata)| metadata.check_invariants(transactional_id));
    }

    /// Applies one record read back from the log, in log order (Kafka `loadTransactionMetadata`).
    pub fn replay(&mut self, record: &TxnRecord) {
        match &record.value {
            // Kafka never writes a Dead value (expiry writes a tombstone); read one as the expiry it announces.
            None | Some(TxnValue { state: TxnState::Dead, .. }) => {
                self.ids.remove(&record.transactional_id);
            }
            Some(value) => {
                self.ids.insert(record.transactional_id.clone(), TxnMetadata::from_value(value));
            }
        }
    }

    /// Ends loading. Transactions found in PrepareCommit/PrepareAbort get their MarkerJobs again
    /// (Kafka `loadTransactionsForTxnTopicPartition` resends their markers).
    pub fn finish_loading(&mut self, _now_ms: i64) -> Outcome {
        self.loading = false;
        let mut out = Outcome::default();
        for (transactional_id, metadata) in &self.ids {
            if matches!(metadata.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
                out.markers.push(metadata.marker_job(transactional_id, self.coordinator_epoch));
            }
        }
        out
    }

    // ---------------------------------------------------------------------------------------------
    // InitProducerId

    /// `allocate` gives a fresh producer id (Err = Kafka error code to return). A request without a
    /// transactional id (an idempotent producer) just gets a new producer id with epoch 0.
    pub fn init_producer_id(
        &mut self,
        token: Token,
        api_version: i16,
        request: &InitProducerIdRequest,
        now_ms: i64,
        allocate: &mut dyn FnMut() -> Result<i64, i16>,
    ) -> Outcome {
        let mut out = Outcome::default();
        let mut response = InitProducerIdResponse::default();
        match self.try_init_producer_id(api_version, request, now_ms, allocate, &mut out) {
            Ok((producer_id, producer_epoch)) => {
                response.producer_id = producer_id.into();
                response.producer_epoch = producer_epoch;
            }
            Err(error_code) => {
                response.error_code = error_code;
                response.producer_id = NO_PRODUCER_ID.into();
                response.producer_epoch = NO_PRODUCER_EPOCH;
            }
        }
        out.replies.push((token, TxnReply::InitProducerId(response)));
        out
    }

    /// Kafka `handleInitProducerId` and `prepareInitProducerIdTransit`.
    fn try_init_producer_id(
        &mut self,
        api_version: i16,
        request: &InitProducerIdRequest,
        now_ms: i64,
        allocate: &mut dyn FnMut() -> Result<i64, i16>,
        out: &mut Outcome,
    ) -> Result<(i64, i16), i16> {
        let Some(transactional_id) = request.transactional_id.as_ref().map(|id| id.0.as_str()) else {
            return allocate().map(|producer_id| (producer_id, 0));
        };
        if transactional_id.is_empty() || transactional_id.len() > TRANSACTIONAL_ID_BYTES_MAX {
            return Err(code(ResponseError::InvalidRequest));
        }
        let timeout_ms = request.transaction_timeout_ms;
        if timeout_ms <= 0 || timeout_ms > self.config.transaction_max_timeout_ms {
            return Err(code(ResponseError::InvalidTransactionTimeout));
        }
        if self.loading {
            return Err(code(ResponseError::CoordinatorLoadInProgress));
        }
        // KIP-360 (KafkaApis): both or neither of producer id and epoch.
        let expected = match (request.producer_id.0, request.producer_epoch) {
            (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => None,
            (NO_PRODUCER_ID, _) | (_, NO_PRODUCER_EPOCH) => return Err(code(ResponseError::InvalidRequest)),
            (producer_id, producer_epoch) => Some((producer_id, producer_epoch)),
        };
        let fenced = fenced(api_version, INIT_PRODUCER_ID_FENCED_VERSION_MIN);
        if !self.ids.contains_key(transactional_id) {
            let producer_id = allocate()?;
            self.ids.insert(transactional_id.to_owned(), TxnMetadata::new(producer_id, timeout_ms, now_ms));
        }
        let coordinator_epoch = self.coordinator_epoch;
        let metadata = self.ids.get_mut(transactional_id).expect("inserted above");
        if let Some((producer_id, producer_epoch)) = expected {
            // Kafka `isValidProducerId`: a just-created id, the current producer id, or the previous
            // one with an exhausted epoch (a retry of the InitProducerId that rotated the id).
            let valid = metadata.producer_epoch == NO_PRODUCER_EPOCH
                || producer_id == metadata.producer_id
                || (producer_id == metadata.previous_producer_id && epoch_exhausted(producer_epoch));
            if !valid {
                return Err(fenced);
            }
        }
        match metadata.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence | TxnState::Dead => {
                Err(code(ResponseError::ConcurrentTransactions))
            }
            TxnState::Ongoing => {
                // Abort the open transaction with a bumped epoch and let the client retry: the retry
                // finds CompleteAbort and bumps once more, so the client ends at epoch + 2 (or gets
                // a new producer id if that exhausts the epochs).
                fence_and_abort(transactional_id, metadata, now_ms, coordinator_epoch, out);
                Err(code(ResponseError::ConcurrentTransactions))
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                if metadata.epoch_exhausted() && expected.is_none_or(|(_, epoch)| epoch == metadata.producer_epoch) {
                    // Kafka `prepareProducerIdRotation`.
                    let producer_id = allocate()?;
                    metadata.last_producer_epoch = if expected.is_some() { metadata.producer_epoch } else { NO_PRODUCER_EPOCH };
                    metadata.previous_producer_id = metadata.producer_id;
                    metadata.producer_id = producer_id;
                    metadata.producer_epoch = 0;
                } else {
                    // Kafka `prepareIncrementProducerEpoch`; the bump cannot overflow: an exhausted
                    // epoch took the branch above unless the request named another epoch.
                    let (epoch, last_epoch) = match expected {
                        None => (metadata.producer_epoch + 1, NO_PRODUCER_EPOCH),
                        Some((_, epoch)) if metadata.producer_epoch == NO_PRODUCER_EPOCH || epoch == metadata.producer_epoch => {
                            (metadata.producer_epoch + 1, metadata.producer_epoch)
                        }
                        // A retry of a bump (or rotation) whose answer was lost: the same answer again.
                        Some((_, epoch)) if epoch == metadata.last_producer_epoch => {
                            (metadata.producer_epoch, metadata.last_producer_epoch)
                        }
                        Some(_) => return Err(fenced),
                    };
                    if epoch != metadata.producer_epoch {
                        // Kafka records the producer id itself as "previous" on a bump; -1 means the
                        // same to every check and keeps the record at its defaults. A retry keeps the
                        // previous id of a rotation, so that the retry can be retried too.
                        metadata.previous_producer_id = NO_PRODUCER_ID;
                    }
                    metadata.producer_epoch = epoch;
                    metadata.last_producer_epoch = last_epoch;
                }
                metadata.next_producer_id = NO_PRODUCER_ID;
                metadata.state = TxnState::Empty;
                metadata.timeout_ms = timeout_ms;
                metadata.partitions.clear();
                metadata.start_ms = -1;
                metadata.last_update_ms = now_ms;
                out.records.push(metadata.record(transactional_id));
                Ok((metadata.producer_id, metadata.producer_epoch))
            }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // AddPartitionsToTxn, AddOffsetsToTxn

    /// v0–3 (a client adding partitions to its one transaction) and v4–5 (a broker's batch; entries
    /// with `verify_only` are checked without changing anything, KIP-890). `partition_exists(topic,
    /// partition)` says whether the topic partition exists.
    pub fn add_partitions(
        &mut self,
        token: Token,
        api_version: i16,
        request: &AddPartitionsToTxnRequest,
        now_ms: i64,
        partition_exists: &dyn Fn(&str, i32) -> bool,
    ) -> Outcome {
        let mut out = Outcome::default();
        let mut response = AddPartitionsToTxnResponse::default();
        if api_version <= 3 {
            response.results_by_topic_v3_and_below = self.add_partitions_of_transaction(
                api_version,
                &request.v3_and_below_transactional_id,
                request.v3_and_below_producer_id.0,
                request.v3_and_below_producer_epoch,
                &request.v3_and_below_topics,
                now_ms,
                partition_exists,
                &mut out,
            );
        } else {
            for (index, transaction) in request.transactions.iter().enumerate() {
                let topic_results = if index >= ADD_PARTITIONS_TRANSACTIONS_MAX {
                    topic_results(&requested_partitions(&transaction.topics), |_| code(ResponseError::InvalidRequest))
                } else if transaction.verify_only {
                    self.verify_partitions_of_transaction(api_version, transaction)
                } else {
                    self.add_partitions_of_transaction(
                        api_version,
                        &transaction.transactional_id,
                        transaction.producer_id.0,
                        transaction.producer_epoch,
                        &transaction.topics,
                        now_ms,
                        partition_exists,
                        &mut out,
                    )
                };
                let mut result = AddPartitionsToTxnResult::default();
                result.transactional_id = transaction.transactional_id.clone();
                result.topic_results = topic_results;
                response.results_by_transaction.push(result);
            }
        }
        out.replies.push((token, TxnReply::AddPartitions(response)));
        out
    }

    /// One transaction of AddPartitionsToTxn. KafkaApis answers UNKNOWN_TOPIC_OR_PARTITION for the
    /// partitions that do not exist and OPERATION_NOT_ATTEMPTED for the others, adding nothing.
    #[allow(clippy::too_many_arguments)]
    fn add_partitions_of_transaction(
        &mut self,
        api_version: i16,
        transactional_id: &TransactionalId,
        producer_id: i64,
        producer_epoch: i16,
        topics: &[AddPartitionsToTxnTopic],
        now_ms: i64,
        partition_exists: &dyn Fn(&str, i32) -> bool,
        out: &mut Outcome,
    ) -> Vec<AddPartitionsToTxnTopicResult> {
        let requested = requested_partitions(topics);
        let missing: BTreeSet<&(String, i32)> =
            requested.iter().filter(|(topic, partition)| !partition_exists(topic, *partition)).collect();
        if !missing.is_empty() {
            return topic_results(&requested, |partition| {
                if missing.contains(partition) {
                    code(ResponseError::UnknownTopicOrPartition)
                } else {
                    code(ResponseError::OperationNotAttempted)
                }
            });
        }
        let fenced = fenced(api_version, ADD_PARTITIONS_FENCED_VERSION_MIN);
        let error =
            self.add_to_transaction(transactional_id.0.as_str(), producer_id, producer_epoch, &requested, fenced, now_ms, out);
        topic_results(&requested, |_| error.err().unwrap_or(NONE))
    }

    fn verify_partitions_of_transaction(
        &self,
        api_version: i16,
        transaction: &AddPartitionsToTxnTransaction,
    ) -> Vec<AddPartitionsToTxnTopicResult> {
        let requested = requested_partitions(&transaction.topics);
        let not_in_transaction = if api_version >= ADD_PARTITIONS_ABORTABLE_VERSION_MIN {
            code(ResponseError::TransactionAbortable)
        } else {
            code(ResponseError::InvalidTxnState)
        };
        match self.verifiable(transaction.transactional_id.0.as_str(), transaction.producer_id.0, transaction.producer_epoch) {
            Err(error) => topic_results(&requested, |_| error),
            Ok(metadata) => {
                topic_results(
                    &requested,
                    |partition| if metadata.partitions.contains(partition) { NONE } else { not_in_transaction },
                )
            }
        }
    }

    /// The group's partition of `__consumer_offsets` joins the transaction: the caller passes
    /// `offsets_partition = records::partition_for(group_id, offsets partitions)`.
    pub fn add_offsets(
        &mut self,
        token: Token,
        api_version: i16,
        request: &AddOffsetsToTxnRequest,
        offsets_partition: i32,
        now_ms: i64,
    ) -> Outcome {
        let mut out = Outcome::default();
        let partitions = BTreeSet::from([(CONSUMER_OFFSETS_TOPIC.to_owned(), offsets_partition)]);
        let fenced = fenced(api_version, ADD_OFFSETS_FENCED_VERSION_MIN);
        let result = self.add_to_transaction(
            request.transactional_id.0.as_str(),
            request.producer_id.0,
            request.producer_epoch,
            &partitions,
            fenced,
            now_ms,
            &mut out,
        );
        let mut response = AddOffsetsToTxnResponse::default();
        response.error_code = result.err().unwrap_or(NONE);
        out.replies.push((token, TxnReply::AddOffsets(response)));
        out
    }

    /// The checks Kafka makes before touching a transactional id's transaction: the id is named,
    /// the state is loaded, and the id's producer is `producer_id` at `producer_epoch`. Error: the
    /// Kafka code; another epoch gets `fenced`.
    fn current_producer(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        fenced: i16,
    ) -> Result<&TxnMetadata, i16> {
        if transactional_id.is_empty() {
            return Err(code(ResponseError::InvalidRequest));
        }
        if self.loading {
            return Err(code(ResponseError::CoordinatorLoadInProgress));
        }
        let metadata = self.ids.get(transactional_id).ok_or(code(ResponseError::InvalidProducerIdMapping))?;
        if metadata.producer_id != producer_id {
            return Err(code(ResponseError::InvalidProducerIdMapping));
        }
        if metadata.producer_epoch != producer_epoch {
            return Err(fenced);
        }
        Ok(metadata)
    }

    /// Kafka `handleAddPartitionsToTransaction` and `prepareAddPartitions`.
    #[allow(clippy::too_many_arguments)]
    fn add_to_transaction(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &BTreeSet<(String, i32)>,
        fenced: i16,
        now_ms: i64,
        out: &mut Outcome,
    ) -> Result<(), i16> {
        self.current_producer(transactional_id, producer_id, producer_epoch, fenced)?;
        let metadata = self.ids.get_mut(transactional_id).expect("checked by current_producer");
        match metadata.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence | TxnState::Dead => {
                Err(code(ResponseError::ConcurrentTransactions))
            }
            // Nothing new: answered without a record.
            TxnState::Ongoing if partitions.is_subset(&metadata.partitions) => Ok(()),
            TxnState::Ongoing | TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                if metadata.state != TxnState::Ongoing {
                    metadata.start_ms = now_ms;
                }
                metadata.state = TxnState::Ongoing;
                metadata.partitions.extend(partitions.iter().cloned());
                metadata.last_update_ms = now_ms;
                out.records.push(metadata.record(transactional_id));
                Ok(())
            }
        }
    }

    /// KIP-890 verification of a transactional produce: Ok when `producer_id`/`producer_epoch` own an
    /// Ongoing transaction of `transactional_id` that contains the partition. The errors are those of
    /// a v4 verify-only AddPartitionsToTxn: INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED,
    /// CONCURRENT_TRANSACTIONS (Kafka turns this one into NOT_ENOUGH_REPLICAS for a produce, which
    /// clients retry), INVALID_TXN_STATE (not in the transaction; TRANSACTION_ABORTABLE for clients
    /// that know it), COORDINATOR_LOAD_IN_PROGRESS, INVALID_REQUEST.
    pub fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), i16> {
        let metadata = self.verifiable(transactional_id, producer_id, producer_epoch)?;
        if metadata.partitions.iter().any(|(t, p)| t == topic && *p == partition) {
            Ok(())
        } else {
            Err(code(ResponseError::InvalidTxnState))
        }
    }

    /// Kafka `handleVerifyPartitionsInTransaction` up to the partition check.
    fn verifiable(&self, transactional_id: &str, producer_id: i64, producer_epoch: i16) -> Result<&TxnMetadata, i16> {
        let metadata =
            self.current_producer(transactional_id, producer_id, producer_epoch, code(ResponseError::ProducerFenced))?;
        if matches!(metadata.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(code(ResponseError::ConcurrentTransactions));
        }
        Ok(metadata)
    }

    // ---------------------------------------------------------------------------------------------
    // EndTxn

    /// Served up to v4 ([`END_TXN_VERSION_MAX`]): transaction version 1, one epoch per producer session.
    pub fn end_txn(&mut self, token: Token, api_version: i16, request: &EndTxnRequest, now_ms: i64) -> Outcome {
        let mut out = Outcome::default();
        let mut response = EndTxnResponse::default();
        response.error_code = self.try_end_txn(api_version, request, now_ms, &mut out).err().unwrap_or(NONE);
        out.replies.push((token, TxnReply::EndTxn(response)));
        out
    }

    /// Kafka `endTransactionWithTV1` (isFromClient = true).
    fn try_end_txn(&mut self, api_version: i16, request: &EndTxnRequest, now_ms: i64, out: &mut Outcome) -> Result<(), i16> {
        if api_version > END_TXN_VERSION_MAX {
            return Err(code(ResponseError::UnsupportedVersion));
        }
        let transactional_id = request.transactional_id.0.as_str();
        if transactional_id.is_empty() {
            return Err(code(ResponseError::InvalidRequest));
        }
        if self.loading {
            return Err(code(ResponseError::CoordinatorLoadInProgress));
        }
        let coordinator_epoch = self.coordinator_epoch;
        let metadata = self.ids.get_mut(transactional_id).ok_or(code(ResponseError::InvalidProducerIdMapping))?;
        if metadata.producer_id != request.producer_id.0 {
            return Err(code(ResponseError::InvalidProducerIdMapping));
        }
        // Strict equality: after a timeout or InitProducerId fence bumped the epoch, the old
        // producer's EndTxn is fenced.
        if metadata.producer_epoch != request.producer_epoch {
            return Err(fenced(api_version, END_TXN_FENCED_VERSION_MIN));
        }
        let commit = request.committed;
        match (metadata.state, commit) {
            (TxnState::Ongoing, _) => {
                metadata.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
                metadata.last_update_ms = now_ms;
                out.records.push(metadata.record(transactional_id));
                out.markers.push(metadata.marker_job(transactional_id, coordinator_epoch));
                Ok(())
            }
            // A retry of an EndTxn that completed.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(()),
            // A retry of an EndTxn whose markers are still being written.
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => Err(code(ResponseError::ConcurrentTransactions)),
            // Never held here (see `replay`); Kafka throws.
            (TxnState::PrepareEpochFence | TxnState::Dead, _) => Err(code(ResponseError::ConcurrentTransactions)),
            (TxnState::Empty, _)
            | (TxnState::CompleteCommit, false)
            | (TxnState::CompleteAbort, true)
            | (TxnState::PrepareCommit, false)
            | (TxnState::PrepareAbort, true) => {
                tracing::warn!(transactional_id, state = metadata.state.as_str(), commit, "EndTxn in an invalid state");
                Err(code(ResponseError::InvalidTxnState))
            }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Markers, timers

    /// Every marker of the job for this producer id and epoch is durable: the transaction completes
    /// (Kafka `prepareComplete`), its partitions are cleared and the id accepts the next transaction.
    /// A job that no longer matches (already completed, or resent on load twice) changes nothing.
    pub fn markers_written(&mut self, transactional_id: &str, producer_id: i64, producer_epoch: i16, now_ms: i64) -> Outcome {
        let mut out = Outcome::default();
        if self.loading {
            return out;
        }
        let Some(metadata) = self.ids.get_mut(transactional_id) else { return out };
        if metadata.producer_id != producer_id || metadata.producer_epoch != producer_epoch {
            return out;
        }
        metadata.state = match metadata.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return out,
        };
        metadata.partitions.clear();
        metadata.last_update_ms = now_ms;
        out.records.push(metadata.record(transactional_id));
        out
    }

    /// Aborts Ongoing transactions past their timeout with an epoch bump (Kafka
    /// `abortTimedOutTransactions`: `prepareFenceProducerEpoch`, then PrepareAbort; the old epoch is
    /// fenced from then on), and removes ids idle in Empty/CompleteCommit/CompleteAbort for
    /// `transactional_id_expiration_ms` with a tombstone (Kafka `removeExpiredTransactionalIds`).
    pub fn tick(&mut self, now_ms: i64) -> Outcome {
        let mut out = Outcome::default();
        if self.loading {
            return out;
        }
        let coordinator_epoch = self.coordinator_epoch;
        let expiration_ms = self.config.transactional_id_expiration_ms;
        let mut expired = Vec::new();
        for (transactional_id, metadata) in &mut self.ids {
            if out.records.len() >= TICK_RECORDS_MAX {
                break;
            }
            match metadata.state {
                TxnState::Ongoing if metadata.start_ms.saturating_add(i64::from(metadata.timeout_ms)) < now_ms => {
                    tracing::info!(transactional_id, producer_id = metadata.producer_id, "aborting timed out transaction");
                    fence_and_abort(transactional_id, metadata, now_ms, coordinator_epoch, &mut out);
                }
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    if metadata.last_update_ms <= now_ms.saturating_sub(expiration_ms) =>
                {
                    out.records.push(TxnRecord { transactional_id: transactional_id.clone(), value: None });
                    expired.push(transactional_id.clone());
                }
                _ => {}
            }
        }
        for transactional_id in expired {
            self.ids.remove(&transactional_id);
        }
        out
    }

    /// The earliest timeout or expiry: call [`Transactions::tick`] then.
    pub fn next_deadline(&self) -> Option<i64> {
        if self.loading {
            return None;
        }
        let expiration_ms = self.config.transactional_id_expiration_ms;
        self.ids
            .values()
            .filter_map(|metadata| match metadata.state {
                // Kafka aborts when start + timeout < now.
                TxnState::Ongoing => Some(metadata.start_ms.saturating_add(i64::from(metadata.timeout_ms)).saturating_add(1)),
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                    Some(metadata.last_update_ms.saturating_add(expiration_ms))
                }
                _ => None,
            })
            .min()
    }

    // ---------------------------------------------------------------------------------------------
    // ListTransactions, DescribeTransactions

    /// The error ListTransactions answers with, if any: COORDINATOR_LOAD_IN_PROGRESS while loading
    /// (Kafka answers it when any partition loads), INVALID_REGULAR_EXPRESSION for a v2 pattern that
    /// does not compile. Check it before [`Transactions::list`], which returns nothing in both cases.
    pub fn list_error(&self, request: &ListTransactionsRequest) -> Option<i16> {
        if self.loading {
            return Some(code(ResponseError::CoordinatorLoadInProgress));
        }
        match transactional_id_pattern(request) {
            Err(()) => Some(code(ResponseError::InvalidRegularExpression)),
            Ok(_) => None,
        }
    }

    /// The transactions that pass the KIP-664 filters (states, producer ids), the KIP-994 duration
    /// filter (v1: running longer than `duration_filter` ms) and the KIP-1152 transactional id pattern
    /// (v2: a full match, with the subset engine of [`TopicRegex`]). Unknown state names match
    /// nothing here; report them with [`unknown_state_filters`].
    pub fn list(&self, request: &ListTransactionsRequest, now_ms: i64) -> Vec<list_transactions_response::TransactionState> {
        if self.loading {
            return Vec::new();
        }
        let Ok(pattern) = transactional_id_pattern(request) else { return Vec::new() };
        let states: BTreeSet<&str> = request.state_filters.iter().map(StrBytes::as_str).collect();
        let producer_ids: BTreeSet<i64> = request.producer_id_filters.iter().map(|producer_id| producer_id.0).collect();
        self.ids
            .iter()
            .filter(|(transactional_id, metadata)| {
                // Dead is transient in Kafka (being expired) and never listed.
                metadata.state != TxnState::Dead
                    && (states.is_empty() || states.contains(metadata.state.as_str()))
                    && (producer_ids.is_empty() || producer_ids.contains(&metadata.producer_id))
                    && (request.duration_filter < 0 || now_ms.saturating_sub(metadata.start_ms) > request.duration_filter)
                    && pattern.as_ref().is_none_or(|pattern| pattern.is_match(transactional_id))
            })
            .map(|(transactional_id, metadata)| {
                let mut entry = list_transactions_response::TransactionState::default();
                entry.transactional_id = TransactionalId(str_bytes(transactional_id));
                entry.producer_id = metadata.producer_id.into();
                entry.transaction_state = StrBytes::from_static_str(metadata.state.as_str());
                entry
            })
            .collect()
    }

    /// Kafka `handleDescribeTransactions`: TRANSACTIONAL_ID_NOT_FOUND for an unknown id.
    pub fn describe(&self, transactional_id: &str) -> describe_transactions_response::TransactionState {
        let mut entry = describe_transactions_response::TransactionState::default();
        entry.transactional_id = TransactionalId(str_bytes(transactional_id));
        if self.loading {
            entry.error_code = code(ResponseError::CoordinatorLoadInProgress);
            return entry;
        }
        if transactional_id.is_empty() {
            entry.error_code = code(ResponseError::InvalidRequest);
            return entry;
        }
        let Some(metadata) = self.ids.get(transactional_id).filter(|metadata| metadata.state != TxnState::Dead) else {
            entry.error_code = code(ResponseError::TransactionalIdNotFound);
            return entry;
        };
        entry.transaction_state = StrBytes::from_static_str(metadata.state.as_str());
        entry.transaction_timeout_ms = metadata.timeout_ms;
        entry.transaction_start_time_ms = metadata.start_ms;
        entry.producer_id = metadata.producer_id.into();
        entry.producer_epoch = metadata.producer_epoch;
        entry.topics = group_by_topic(&metadata.partitions)
            .into_iter()
            .map(|(topic, partitions)| {
                let mut data = TopicData::default();
                data.topic = TopicName(StrBytes::from_string(topic));
                data.partitions = partitions;
                data
            })
            .collect();
        entry
    }
}

/// The state filters of a ListTransactions request that name no state (Kafka answers them in
/// `unknown_state_filters`).
pub fn unknown_state_filters(request: &ListTransactionsRequest) -> Vec<StrBytes> {
    request.state_filters.iter().filter(|name| TxnState::from_name(name.as_str()).is_none()).cloned().collect()
}

/// `Ok(None)` when the request has no pattern (absent or empty matches everything).
fn transactional_id_pattern(request: &ListTransactionsRequest) -> Result<Option<TopicRegex>, ()> {
    match request.transactional_id_pattern.as_ref().map(StrBytes::as_str) {
        None | Some("") => Ok(None),
        Some(pattern) => TopicRegex::new(pattern).map(Some).map_err(|_| ()),
    }
}

/// Kafka `prepareFenceProducerEpoch` followed by `endTransaction(ABORT, isFromClient = false)`: the
/// epoch goes up by one (the bumped epoch is never handed to a client) and the transaction aborts.
fn fence_and_abort(transactional_id: &str, metadata: &mut TxnMetadata, now_ms: i64, coordinator_epoch: i32, out: &mut Outcome) {
    debug_assert_eq!(metadata.state, TxnState::Ongoing);
    if metadata.producer_epoch < i16::MAX {
        metadata.producer_epoch += 1;
    } else {
        // Unreachable for a well-behaved client (epochs stop at i16::MAX - 1); Kafka throws.
        tracing::warn!(transactional_id, "cannot bump an epoch of i16::MAX; aborting at the same epoch");
    }
    metadata.last_producer_epoch = NO_PRODUCER_EPOCH;
    metadata.state = TxnState::PrepareAbort;
    metadata.last_update_ms = now_ms;
    out.records.push(metadata.record(transactional_id));
    out.markers.push(metadata.marker_job(transactional_id, coordinator_epoch));
}

fn requested_partitions(topics: &[AddPartitionsToTxnTopic]) -> BTreeSet<(String, i32)> {
    topics.iter().flat_map(|topic| topic.partitions.iter().map(move |partition| (topic.name.0.to_string(), *partition))).collect()
}

fn topic_results(
    partitions: &BTreeSet<(String, i32)>,
    mut error_for: impl FnMut(&(String, i32)) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut results: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for partition in partitions {
        let mut result = AddPartitionsToTxnPartitionResult::default();
        result.partition_index = partition.1;
        result.partition_error_code = error_for(partition);
        match results.last_mut() {
            Some(last) if last.name.0.as_str() == partition.0 => last.results_by_partition.push(result),
            _ => {
                let mut topic = AddPartitionsToTxnTopicResult::default();
                topic.name = TopicName(str_bytes(&partition.0));
                topic.results_by_partition.push(result);
                results.push(topic);
            }
        }
    }
    results
}
