//! Transaction coordinator tests. Rules cite Kafka's `TransactionCoordinator` (TC),
//! `TransactionMetadata` (TM) and `TransactionStateManager` (TSM), and the KIPs.

use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, EndTxnRequest, InitProducerIdRequest,
    InitProducerIdResponse, ListTransactionsRequest, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use proptest::prelude::*;

use super::*;

const PRODUCER_FENCED: i16 = 90;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
const CONCURRENT_TRANSACTIONS: i16 = 51;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const OPERATION_NOT_ATTEMPTED: i16 = 55;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
const TRANSACTION_ABORTABLE: i16 = 120;
const UNSUPPORTED_VERSION: i16 = 35;

const COORDINATOR_EPOCH: i32 = 7;

/// A MarkerJob's transactional id, commit flag and partitions.
type JobSummary = (String, bool, Vec<(String, i32)>);
const TIMEOUT_MS: i32 = 60_000;

fn id(s: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(s.to_owned()))
}

fn topics(partitions: &[(&str, i32)]) -> Vec<AddPartitionsToTxnTopic> {
    let mut out: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (topic, partition) in partitions {
        let mut entry = AddPartitionsToTxnTopic::default();
        entry.name = TopicName(StrBytes::from_string((*topic).to_owned()));
        entry.partitions = vec![*partition];
        out.push(entry);
    }
    out
}

fn exists(topic: &str, _partition: i32) -> bool {
    topic != "missing"
}

/// A coordinator plus the log it wrote and a producer id allocator.
struct Harness {
    txns: Transactions,
    log: Vec<TxnRecord>,
    next_producer_id: i64,
    now_ms: i64,
}

impl Harness {
    fn new() -> Self {
        Harness::with_config(TxnConfig::default())
    }

    /// A loaded, empty coordinator with `config`.
    fn with_config(config: TxnConfig) -> Self {
        let mut txns = Transactions::new_loading(config, COORDINATOR_EPOCH);
        assert_eq!(txns.finish_loading(0), Outcome::default());
        Harness { txns, log: Vec::new(), next_producer_id: 1000, now_ms: 1_000 }
    }

    /// A coordinator whose idle transactional ids expire after `expiration_ms`.
    fn expiring_after(expiration_ms: i64) -> Self {
        Harness::with_config(TxnConfig { transaction_max_timeout_ms: 900_000, transactional_id_expiration_ms: expiration_ms })
    }

    fn take(&mut self, out: Outcome) -> Outcome {
        for record in &out.records {
            // Every record survives its own encoding.
            let (key, value) = record.encode();
            assert_eq!(&TxnRecord::decode(&key, value.as_deref()).unwrap(), record);
        }
        self.log.extend(out.records.iter().cloned());
        self.txns.check_invariants();
        out
    }

    fn init_with(
        &mut self,
        api_version: i16,
        transactional_id: &str,
        producer: Option<(i64, i16)>,
    ) -> (InitProducerIdResponse, Outcome) {
        let mut request = InitProducerIdRequest::default();
        request.transactional_id = Some(id(transactional_id));
        request.transaction_timeout_ms = TIMEOUT_MS;
        if let Some((producer_id, producer_epoch)) = producer {
            request.producer_id = ProducerId(producer_id);
            request.producer_epoch = producer_epoch;
        }
        let next = &mut self.next_producer_id;
        let mut allocate = || {
            *next += 1;
            Ok(*next)
        };
        let out = self.txns.init_producer_id(1, api_version, &request, self.now_ms, &mut allocate);
        let out = self.take(out);
        let TxnReply::InitProducerId(response) = out.replies[0].1.clone() else { panic!("not an InitProducerId reply") };
        (response, out)
    }

    /// InitProducerId v4 that must succeed: (producer id, epoch).
    fn init(&mut self, transactional_id: &str) -> (i64, i16) {
        let (response, _) = self.init_with(4, transactional_id, None);
        assert_eq!(response.error_code, 0);
        (response.producer_id.0, response.producer_epoch)
    }

    fn add_with(
        &mut self,
        api_version: i16,
        transactional_id: &str,
        producer: (i64, i16),
        partitions: &[(&str, i32)],
    ) -> (AddPartitionsToTxnResponse, Outcome) {
        let mut request = AddPartitionsToTxnRequest::default();
        request.v3_and_below_transactional_id = id(transactional_id);
        request.v3_and_below_producer_id = ProducerId(producer.0);
        request.v3_and_below_producer_epoch = producer.1;
        request.v3_and_below_topics = topics(partitions);
        let out = self.txns.add_partitions(2, api_version, &request, self.now_ms, &exists);
        let out = self.take(out);
        let TxnReply::AddPartitions(response) = out.replies[0].1.clone() else { panic!("not an AddPartitions reply") };
        (response, out)
    }

    /// AddPartitionsToTxn v3; the one error code when every partition has the same.
    fn add(&mut self, transactional_id: &str, producer: (i64, i16), partitions: &[(&str, i32)]) -> i16 {
        let (response, _) = self.add_with(3, transactional_id, producer, partitions);
        let codes: BTreeSet<i16> = response
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|topic| topic.results_by_partition.iter().map(|p| p.partition_error_code))
            .collect();
        assert_eq!(codes.len(), 1, "{codes:?}");
        codes.into_iter().next().unwrap()
    }

    fn add_offsets(&mut self, api_version: i16, transactional_id: &str, producer: (i64, i16), offsets_partition: i32) -> i16 {
        let mut request = AddOffsetsToTxnRequest::default();
        request.transactional_id = id(transactional_id);
        request.producer_id = ProducerId(producer.0);
        request.producer_epoch = producer.1;
        request.group_id = kafka_protocol::messages::GroupId(StrBytes::from_static_str("group"));
        let out = self.txns.add_offsets(3, api_version, &request, offsets_partition, self.now_ms);
        let out = self.take(out);
        let TxnReply::AddOffsets(response) = &out.replies[0].1 else { panic!("not an AddOffsets reply") };
        response.error_code
    }

    fn end_with(&mut self, api_version: i16, transactional_id: &str, producer: (i64, i16), commit: bool) -> (i16, Outcome) {
        let mut request = EndTxnRequest::default();
        request.transactional_id = id(transactional_id);
        request.producer_id = ProducerId(producer.0);
        request.producer_epoch = producer.1;
        request.committed = commit;
        let out = self.txns.end_txn(4, api_version, &request, self.now_ms);
        let out = self.take(out);
        let TxnReply::EndTxn(response) = &out.replies[0].1 else { panic!("not an EndTxn reply") };
        (response.error_code, out)
    }

    fn end(&mut self, transactional_id: &str, producer: (i64, i16), commit: bool) -> (i16, Vec<MarkerJob>) {
        let (error, out) = self.end_with(4, transactional_id, producer, commit);
        (error, out.markers)
    }

    fn write_markers(&mut self, job: &MarkerJob) -> Outcome {
        let out = self.txns.markers_written(&job.transactional_id, job.producer_id, job.producer_epoch, self.now_ms);
        self.take(out)
    }

    fn tick(&mut self) -> Outcome {
        let out = self.txns.tick(self.now_ms);
        self.take(out)
    }

    fn state(&self, transactional_id: &str) -> Option<TxnState> {
        self.txns.value(transactional_id).map(|value| value.state)
    }

    /// A fresh coordinator loaded from this one's log.
    fn replayed(&self) -> Transactions {
        let mut txns = Transactions::new_loading(self.txns.config().clone(), COORDINATOR_EPOCH);
        for record in &self.log {
            let (key, value) = record.encode();
            txns.replay(&TxnRecord::decode(&key, value.as_deref()).unwrap());
        }
        txns
    }
}

#[test]
fn commit_happy_path_prepares_then_completes_after_the_markers() {
    let mut h = Harness::new();
    let producer = h.init("tx");
    assert_eq!(producer, (1001, 0), "a new transactional id gets a fresh producer id at epoch 0 (TC handleInitProducerId)");
    assert_eq!(h.state("tx"), Some(TxnState::Empty));
    assert_eq!(h.add("tx", producer, &[("b", 1), ("a", 0)]), 0);
    assert_eq!(h.state("tx"), Some(TxnState::Ongoing));
    assert_eq!(h.add_offsets(3, "tx", producer, 12), 0);
    let (error, markers) = h.end("tx", producer, true);
    assert_eq!(error, 0);
    assert_eq!(h.state("tx"), Some(TxnState::PrepareCommit));
    assert_eq!(
        markers,
        [MarkerJob {
            transactional_id: "tx".into(),
            producer_id: 1001,
            producer_epoch: 0,
            coordinator_epoch: COORDINATOR_EPOCH,
            commit: true,
            partitions: vec![(CONSUMER_OFFSETS_TOPIC.into(), 12), ("a".into(), 0), ("b".into(), 1)],
        }]
    );
    let out = h.write_markers(&markers[0]);
    assert_eq!(out.records.len(), 1);
    let value = h.txns.value("tx").unwrap();
    assert_eq!(value.state, TxnState::CompleteCommit);
    assert!(value.partitions.is_empty(), "TM prepareComplete clears the partitions");
    // The id accepts the next transaction at the same epoch (transaction version 1).
    assert_eq!(h.add("tx", producer, &[("a", 0)]), 0);
    assert_eq!(h.state("tx"), Some(TxnState::Ongoing));
}

#[test]
fn abort_happy_path_completes_abort() {
    let mut h = Harness::new();
    let producer = h.init("tx");
    h.add("tx", producer, &[("a", 0)]);
    let (error, markers) = h.end("tx", producer, false);
    assert_eq!(error, 0);
    assert!(!markers[0].commit);
    assert_eq!(h.state("tx"), Some(TxnState::PrepareAbort));
    h.write_markers(&markers[0]);
    assert_eq!(h.state("tx"), Some(TxnState::CompleteAbort));
    // A second markers_written for the same job (a resend) changes nothing.
    assert_eq!(h.write_markers(&markers[0]), Outcome::default());
}

#[test]
fn end_txn_retries_and_invalid_states_follow_end_transaction_with_tv1() {
    let mut h = Harness::new();
    let producer = h.init("tx");
    // Empty accepts neither commit nor abort (TC endTransactionWithTV1).
    assert_eq!(h.end("tx", producer, true).0, INVALID_TXN_STATE);
    assert_eq!(h.end("tx", producer, false).0, INVALID_TXN_STATE);
    h.add("tx", producer, &[("a", 0)]);
    let (_, markers) = h.end("tx", producer, true);
    // A retry while the markers are written: CONCURRENT_TRANSACTIONS; the opposite: INVALID_TXN_STATE.
    assert_eq!(h.end("tx", producer, true).0, CONCURRENT_TRANSACTIONS);
    assert_eq!(h.end("tx", producer, false).0, INVALID_TXN_STATE);
    h.write_markers(&markers[0]);
    // A retry after completion is answered NONE without a record; the opposite is INVALID_TXN_STATE.
    let (error, out) = h.end_with(4, "tx", producer, true);
    assert_eq!((error, out.records.len(), out.markers.len()), (0, 0, 0));
    assert_eq!(h.end("tx", producer, false).0, INVALID_TXN_STATE);
    // Wrong producer id, stale epoch (KIP-588: INVALID_PRODUCER_EPOCH before EndTxn v2), v5.
    assert_eq!(h.end("tx", (producer.0 + 1, producer.1), true).0, INVALID_PRODUCER_ID_MAPPING);
    assert_eq!(h.end("nope", producer, true).0, INVALID_PRODUCER_ID_MAPPING);
    assert_eq!(h.end("tx", (producer.0, producer.1 + 1), true).0, PRODUCER_FENCED);
    assert_eq!(h.end_with(1, "tx", (producer.0, producer.1 + 1), true).0, INVALID_PRODUCER_EPOCH);
    assert_eq!(h.end_with(5, "tx", producer, true).0, UNSUPPORTED_VERSION);
}

#[test]
fn init_producer_id_bumps_the_epoch_of_a_known_id_and_writes_empty() {
    let mut h = Harness::new();
    let first = h.init("tx");
    let second = h.init("tx");
    assert_eq!(second, (first.0, first.1 + 1));
    h.add("tx", second, &[("a", 0)]);
    let (_, markers) = h.end("tx", second, true);
    h.write_markers(&markers[0]);
    let third = h.init("tx");
    assert_eq!(third, (first.0, 2), "CompleteCommit -> Empty with epoch + 1 (TM prepareIncrementProducerEpoch)");
    let value = h.txns.value("tx").unwrap();
    assert_eq!((value.state, value.start_ms, value.partitions.len()), (TxnState::Empty, -1, 0));
    // The old producer is fenced.
    assert_eq!(h.add("tx", second, &[("a", 0)]), PRODUCER_FENCED);
}

#[test]
fn init_producer_id_validates_the_timeout_and_the_id() {
    let mut h = Harness::new();
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = Some(id("tx"));
    let mut allocate = || Ok(5);
    // TSM validateTransactionTimeoutMs: 0 < timeout <= transaction.max.timeout.ms.
    for timeout_ms in [0, -1, 900_001] {
        request.transaction_timeout_ms = timeout_ms;
        let out = h.txns.init_producer_id(1, 4, &request, 0, &mut allocate);
        let TxnReply::InitProducerId(response) = &out.replies[0].1 else { panic!() };
        assert_eq!((response.error_code, response.producer_id.0, response.producer_epoch), (INVALID_TRANSACTION_TIMEOUT, -1, -1));
        assert!(out.records.is_empty());
    }
    request.transaction_timeout_ms = 900_000;
    request.transactional_id = Some(id(""));
    let out = h.txns.init_producer_id(1, 4, &request, 0, &mut allocate);
    let TxnReply::InitProducerId(response) = &out.replies[0].1 else { panic!() };
    assert_eq!(response.error_code, 42, "an empty transactional id is INVALID_REQUEST");
    // Only one of producer id and epoch: INVALID_REQUEST (KafkaApis, KIP-360).
    request.transactional_id = Some(id("tx"));
    request.producer_id = ProducerId(5);
    let out = h.txns.init_producer_id(1, 4, &request, 0, &mut allocate);
    let TxnReply::InitProducerId(response) = &out.replies[0].1 else { panic!() };
    assert_eq!(response.error_code, 42);
}

#[test]
fn init_producer_id_without_transactional_id_allocates_and_passes_allocation_errors() {
    let mut h = Harness::new();
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = None;
    let out = h.txns.init_producer_id(1, 4, &request, 0, &mut || Ok(77));
    let TxnReply::InitProducerId(response) = &out.replies[0].1 else { panic!() };
    assert_eq!((response.error_code, response.producer_id.0, response.producer_epoch), (0, 77, 0));
    assert!(out.records.is_empty());
    request.transactional_id = Some(id("tx"));
    request.transaction_timeout_ms = TIMEOUT_MS;
    let out = h.txns.init_producer_id(1, 4, &request, 0, &mut || Err(15));
    let TxnReply::InitProducerId(response) = &out.replies[0].1 else { panic!() };
    assert_eq!(response.error_code, 15);
    assert!(out.records.is_empty() && h.txns.value("tx").is_none(), "a failed allocation leaves no id behind");
}

#[test]
fn init_producer_id_during_ongoing_fences_aborts_and_the_retry_gets_epoch_plus_two() {
    // TC prepareInitProducerIdTransit, case Ongoing: prepareFenceProducerEpoch (epoch + 1, never
    // returned), PrepareAbort, CONCURRENT_TRANSACTIONS; the retry bumps again.
    let mut h = Harness::new();
    let producer = h.init("tx");
    h.add("tx", producer, &[("a", 0)]);
    let (response, out) = h.init_with(4, "tx", None);
    assert_eq!(response.error_code, CONCURRENT_TRANSACTIONS);
    assert_eq!(out.records.len(), 1);
    let value = h.txns.value("tx").unwrap();
    assert_eq!((value.state, value.producer_epoch), (TxnState::PrepareAbort, producer.1 + 1));
    assert_eq!(out.markers.len(), 1);
    let job = out.markers[0].clone();
    assert_eq!((job.commit, job.producer_epoch, job.partitions.clone()), (false, producer.1 + 1, vec![("a".to_owned(), 0)]));
    // Until the markers are written, retries wait.
    assert_eq!(h.init_with(4, "tx", None).0.error_code, CONCURRENT_TRANSACTIONS);
    // The fenced producer cannot end its transaction.
    assert_eq!(h.end("tx", producer, true).0, PRODUCER_FENCED);
    h.write_markers(&job);
    assert_eq!(h.state("tx"), Some(TxnState::CompleteAbort));
    assert_eq!(h.init("tx"), (producer.0, producer.1 + 2));
}

#[test]
fn kip_360_init_producer_id_with_the_current_epoch_bumps_and_a_lost_answer_retries_to_the_same_epoch() {
    let mut h = Harness::new();
    let (producer_id, epoch) = h.init("tx");
    let (response, _) = h.init_with(4, "tx", Some((producer_id, epoch)));
    assert_eq!((response.error_code, response.producer_id.0, response.producer_epoch), (0, producer_id, epoch + 1));
    // The same request again (its answer was lost): the same epoch, no second bump (TM lastProducerEpoch).
    let (retry, out) = h.init_with(4, "tx", Some((producer_id, epoch)));
    assert_eq!((retry.error_code, retry.producer_epoch), (0, epoch + 1));
    assert_eq!(out.records.len(), 1, "Kafka still writes the (unchanged) transition");
    // Another producer takes over: the epoch the first one knew is fenced (v4+), or
    // INVALID_PRODUCER_EPOCH for InitProducerId v3 (KIP-588).
    h.init("tx");
    assert_eq!(h.init_with(4, "tx", Some((producer_id, epoch + 1))).0.error_code, PRODUCER_FENCED);
    assert_eq!(h.init_with(3, "tx", Some((producer_id, epoch + 1))).0.error_code, INVALID_PRODUCER_EPOCH);
    // A producer id that is neither current nor previous: fenced (TC isValidProducerId).
    assert_eq!(h.init_with(4, "tx", Some((producer_id + 50, 0))).0.error_code, PRODUCER_FENCED);
}

#[test]
fn exhausted_epoch_rotates_the_producer_id_and_the_retry_with_the_old_id_succeeds() {
    let mut h = Harness::new();
    let (producer_id, _) = h.init("tx");
    // Jump to the last usable epoch by replaying a record, as a long-lived id would reach it.
    let mut value = h.txns.value("tx").unwrap();
    value.producer_epoch = i16::MAX - 1;
    h.txns.replay(&TxnRecord { transactional_id: "tx".into(), value: Some(value) });
    let (response, out) = h.init_with(4, "tx", Some((producer_id, i16::MAX - 1)));
    assert_eq!(response.error_code, 0);
    assert_ne!(response.producer_id.0, producer_id, "TM prepareProducerIdRotation: a new producer id");
    assert_eq!(response.producer_epoch, 0);
    let written = out.records[0].value.clone().unwrap();
    assert_eq!((written.previous_producer_id, written.producer_id), (producer_id, response.producer_id.0));
    // The retry names the old id with its exhausted epoch: same answer (TC isValidProducerId case 3).
    let (retry, _) = h.init_with(4, "tx", Some((producer_id, i16::MAX - 1)));
    assert_eq!((retry.error_code, retry.producer_id.0, retry.producer_epoch), (0, response.producer_id.0, 0));
    // The previous producer id survives a reload (written as a v1 tag).
    let replayed = h.replayed();
    assert_eq!(replayed.value("tx").unwrap().previous_producer_id, producer_id);
}

#[test]
fn add_partitions_checks_producer_id_epoch_and_state() {
    let mut h = Harness::new();
    let producer = h.init("tx");
    assert_eq!(h.add("nope", producer, &[("a", 0)]), INVALID_PRODUCER_ID_MAPPING);
    assert_eq!(h.add("tx", (producer.0 + 1, producer.1), &[("a", 0)]), INVALID_PRODUCER_ID_MAPPING);
    assert_eq!(h.add("tx", (producer.0, producer.1 + 1), &[("a", 0)]), PRODUCER_FENCED);
    // KIP-588: AddPartitionsToTxn v0-1 get INVALID_PRODUCER_EPOCH, and so do AddOffsetsToTxn v0-1.
    let (response, _) = h.add_with(1, "tx", (producer.0, producer.1 + 1), &[("a", 0)]);
    assert_eq!(response.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code, INVALID_PRODUCER_EPOCH);
    assert_eq!(h.add_offsets(1, "tx", (producer.0, producer.1 + 1), 0), INVALID_PRODUCER_EPOCH);
    assert_eq!(h.add_offsets(2, "tx", (producer.0, producer.1 + 1), 0), PRODUCER_FENCED);
    h.add("tx", producer, &[("a", 0)]);
    h.end("tx", producer, true);
    assert_eq!(h.add("tx", producer, &[("a", 1)]), CONCURRENT_TRANSACTIONS);
    assert_eq!(h.add_offsets(3, "tx", producer, 0), CONCURRENT_TRANSACTIONS);
}

#[test]
fn add_partitions_with_a_missing_partition_adds_nothing() {
    // KafkaApis handleAddPartitionsToTxnRequest: UNKNOWN_TOPIC_OR_PARTITION for the missing ones,
    // OPERATION_NOT_ATTEMPTED for the rest.
    let mut h = Harness::new();
    let producer = h.init("tx");
    let (response, out) = h.add_with(3, "tx", producer, &[("a", 0), ("missing", 1)]);
    assert!(out.records.is_empty());
    let codes: Vec<(String, i32, i16)> = response
        .results_by_topic_v3_and_below
        .iter()
        .flat_map(|topic| {
            topic.results_by_partition.iter().map(|p| (topic.name.0.to_string(), p.partition_index, p.partition_error_code))
        })
        .collect();
    assert_eq!(codes, [("a".into(), 0, OPERATION_NOT_ATTEMPTED), ("missing".into(), 1, UNKNOWN_TOPIC_OR_PARTITION)]);
    assert!(response.results_by_transaction.is_empty(), "v3 answers in results_by_topic_v3_and_below");
    assert_eq!(h.state("tx"), Some(TxnState::Empty));
}

#[test]
fn add_partitions_writes_a_record_only_when_the_partitions_or_the_state_change() {
    let mut h = Harness::new();
    let producer = h.init("tx");
    h.now_ms = 5_000;
    assert_eq!(h.add_with(3, "tx", producer, &[("a", 0)]).1.records.len(), 1);
    h.now_ms = 6_000;
    // Already in the transaction: NONE at once (TC's subset optimization).
    assert_eq!(h.add_with(3, "tx", producer, &[("a", 0)]).1.records.len(), 0);
    let grown = h.add_with(3, "tx", producer, &[("a", 0), ("a", 1)]).1;
    assert_eq!(grown.records.len(), 1);
    let value = grown.records[0].value.clone().unwrap();
    assert_eq!(value.partitions, [("a".to_owned(), vec![0, 1])]);
    assert_eq!(
        (value.start_ms, value.last_update_ms),
        (5_000, 6_000),
        "the start time is the first add's (TM prepareAddPartitions)"
    );
}

fn batched(
    transactional_id: &str,
    producer: (i64, i16),
    verify_only: bool,
    partitions: &[(&str, i32)],
) -> AddPartitionsToTxnTransaction {
    let mut transaction = AddPartitionsToTxnTransaction::default();
    transaction.transactional_id = id(transactional_id);
    transaction.producer_id = ProducerId(producer.0);
    transaction.producer_epoch = producer.1;
    transaction.verify_only = verify_only;
    transaction.topics = topics(partitions);
    transaction
}

fn batch_codes(response: &AddPartitionsToTxnResponse) -> Vec<(String, String, i32, i16)> {
    response
        .results_by_transaction
        .iter()
        .flat_map(|result| {
            result.topic_results.iter().flat_map(move |topic| {
                topic.results_by_partition.iter().map(move |p| {
                    (result.transactional_id.0.to_string(), topic.name.0.to_string(), p.partition_index, p.partition_error_code)
                })
            })
        })
        .collect()
}

#[test]
fn add_partitions_v4_batch_verifies_without_changes_and_adds_the_others() {
    let mut h = Harness::new();
    let one = h.init("one");
    let two = h.init("two");
    h.add("one", one, &[("a", 0)]);
    let mut request = AddPartitionsToTxnRequest::default();
    request.transactions = vec![
        batched("one", one, true, &[("a", 0), ("a", 1)]),
        batched("two", two, false, &[("b", 0)]),
        batched("one", (one.0, one.1 + 1), true, &[("a", 0)]),
    ];
    for (api_version, not_in_transaction) in [(4, INVALID_TXN_STATE), (5, TRANSACTION_ABORTABLE)] {
        let out = h.txns.add_partitions(9, api_version, &request, h.now_ms, &exists);
        let out = h.take(out);
        let TxnReply::AddPartitions(response) = &out.replies[0].1 else { panic!() };
        assert_eq!(response.error_code, 0);
        assert!(response.results_by_topic_v3_and_below.is_empty(), "v4+ answers in results_by_transaction");
        assert_eq!(
            batch_codes(response),
            [
                ("one".into(), "a".into(), 0, 0),
                ("one".into(), "a".into(), 1, not_in_transaction),
                ("two".into(), "b".into(), 0, 0),
                ("one".into(), "a".into(), 0, PRODUCER_FENCED),
            ]
        );
    }
    assert_eq!(h.txns.value("one").unwrap().partitions, [("a".to_owned(), vec![0])], "verify_only changes nothing");
    assert_eq!(h.state("two"), Some(TxnState::Ongoing));
}

#[test]
fn verify_answers_for_a_produce_as_kip_890_verification_does() {
    let mut h = Harness::new();
    let producer = h.init("tx");
    assert_eq!(h.txns.verify("tx", producer.0, producer.1, "a", 0), Err(INVALID_TXN_STATE));
    h.add("tx", producer, &[("a", 0)]);
    assert_eq!(h.txns.verify("tx", producer.0, producer.1, "a", 0), Ok(()));
    assert_eq!(h.txns.verify("tx", producer.0, producer.1, "a", 1), Err(INVALID_TXN_STATE));
    assert_eq!(h.txns.verify("tx", producer.0, producer.1 + 1, "a", 0), Err(PRODUCER_FENCED));
    assert_eq!(h.txns.verify("tx", producer.0 + 1, producer.1, "a", 0), Err(INVALID_PRODUCER_ID_MAPPING));
    assert_eq!(h.txns.verify("nope", producer.0, producer.1, "a", 0), Err(INVALID_PRODUCER_ID_MAPPING));
    h.end("tx", producer, true);
    assert_eq!(h.txns.verify("tx", producer.0, producer.1, "a", 0), Err(CONCURRENT_TRANSACTIONS));
}

#[test]
fn timeout_aborts_with_an_epoch_bump_and_fences_the_old_epoch() {
    // TC abortTimedOutTransactions: prepareFenceProducerEpoch then PrepareAbort.
    let mut h = Harness::new();
    let producer = h.init("tx");
    h.now_ms = 10_000;
    h.add("tx", producer, &[("a", 0)]);
    assert_eq!(h.txns.next_deadline(), Some(10_000 + i64::from(TIMEOUT_MS) + 1), "TSM aborts when start + timeout < now");
    h.now_ms = 10_000 + i64::from(TIMEOUT_MS);
    assert_eq!(h.tick(), Outcome::default(), "not yet: the comparison is strict");
    h.now_ms += 1;
    let out = h.tick();
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.markers.len(), 1);
    let job = out.markers[0].clone();
    assert_eq!((job.commit, job.producer_epoch), (false, producer.1 + 1));
    assert_eq!(h.end("tx", producer, false).0, PRODUCER_FENCED, "the old producer's abort is fenced");
    assert_eq!(h.add("tx", producer, &[("a", 0)]), PRODUCER_FENCED);
    h.write_markers(&job);
    assert_eq!(h.state("tx"), Some(TxnState::CompleteAbort));
    assert_eq!(h.end("tx", producer, false).0, PRODUCER_FENCED);
    assert_eq!(h.init("tx"), (producer.0, producer.1 + 2));
}

#[test]
fn idle_ids_expire_with_a_tombstone_and_ongoing_ones_do_not() {
    // TSM removeExpiredTransactionalIds: Empty/CompleteCommit/CompleteAbort whose last update is at
    // least transactional.id.expiration.ms old.
    let mut h = Harness::expiring_after(50_000);
    h.init("idle");
    let busy = h.init("busy");
    h.add("busy", busy, &[("a", 0)]);
    assert_eq!(h.txns.next_deadline(), Some(h.now_ms + 50_000));
    h.now_ms += 50_000;
    let out = h.tick();
    assert_eq!(out.records, [TxnRecord { transactional_id: "idle".into(), value: None }]);
    assert_eq!(h.txns.value("idle"), None);
    assert_eq!(h.describe_code("idle"), TRANSACTIONAL_ID_NOT_FOUND);
    // Ongoing ids never expire; this one's 60 s transaction timeout has not passed either.
    assert_eq!(h.state("busy"), Some(TxnState::Ongoing));
    let replayed = h.replayed();
    assert_eq!(replayed.transactional_ids().collect::<Vec<_>>(), ["busy"]);
    // An expired id starts over with a new producer id.
    let again = h.init("idle");
    assert_eq!(again.1, 0);
}

#[test]
fn a_tick_does_at_most_tick_records_max_and_the_deadline_stays_due() {
    let mut h = Harness::expiring_after(1_000);
    let count = TICK_RECORDS_MAX + 5;
    for index in 0..count {
        h.init(&format!("id-{index:05}"));
    }
    h.now_ms += 1_000;
    assert_eq!(h.tick().records.len(), TICK_RECORDS_MAX);
    assert!(h.txns.next_deadline().is_some_and(|deadline| deadline <= h.now_ms), "the rest are still due");
    assert_eq!(h.tick().records.len(), 5);
    assert_eq!(h.txns.next_deadline(), None);
}

impl Harness {
    fn describe_code(&self, transactional_id: &str) -> i16 {
        self.txns.describe(transactional_id).error_code
    }
}

#[test]
fn loading_answers_coordinator_load_in_progress_and_finish_loading_resends_markers() {
    let mut h = Harness::new();
    let committing = h.init("committing");
    h.add("committing", committing, &[("a", 0)]);
    h.end("committing", committing, true);
    let aborting = h.init("aborting");
    h.add_offsets(3, "aborting", aborting, 4);
    h.end("aborting", aborting, false);
    let open = h.init("open");
    h.add("open", open, &[("b", 2)]);

    let mut loaded = h.replayed();
    assert!(loaded.is_loading());
    h.txns = loaded.clone();
    assert_eq!(h.add("open", open, &[("b", 3)]), COORDINATOR_LOAD_IN_PROGRESS);
    assert_eq!(h.end("open", open, true).0, COORDINATOR_LOAD_IN_PROGRESS);
    assert_eq!(h.init_with(4, "open", None).0.error_code, COORDINATOR_LOAD_IN_PROGRESS);
    assert_eq!(h.describe_code("open"), COORDINATOR_LOAD_IN_PROGRESS);
    assert_eq!(h.txns.list_error(&ListTransactionsRequest::default()), Some(COORDINATOR_LOAD_IN_PROGRESS));
    assert_eq!(h.txns.tick(i64::MAX), Outcome::default());
    assert_eq!(h.txns.markers_written("committing", committing.0, committing.1, 0), Outcome::default());

    // TSM loadTransactionsForTxnTopicPartition: PrepareCommit/PrepareAbort get their markers again.
    let out = loaded.finish_loading(h.now_ms);
    assert!(out.records.is_empty() && out.replies.is_empty());
    let jobs: Vec<JobSummary> =
        out.markers.iter().map(|job| (job.transactional_id.clone(), job.commit, job.partitions.clone())).collect();
    assert_eq!(
        jobs,
        [
            ("aborting".into(), false, vec![(CONSUMER_OFFSETS_TOPIC.into(), 4)]),
            ("committing".into(), true, vec![("a".into(), 0)]),
        ]
    );
    assert!(out.markers.iter().all(|job| job.coordinator_epoch == COORDINATOR_EPOCH));
    h.txns = loaded;
    for job in out.markers {
        h.write_markers(&job);
    }
    assert_eq!(h.state("committing"), Some(TxnState::CompleteCommit));
    assert_eq!(h.state("aborting"), Some(TxnState::CompleteAbort));
    assert_eq!(h.state("open"), Some(TxnState::Ongoing));
}

fn list_request(states: &[&str], producer_ids: &[i64], duration_filter: i64, pattern: Option<&str>) -> ListTransactionsRequest {
    let mut request = ListTransactionsRequest::default();
    request.state_filters = states.iter().map(|s| StrBytes::from_string((*s).to_owned())).collect();
    request.producer_id_filters = producer_ids.iter().map(|id| ProducerId(*id)).collect();
    request.duration_filter = duration_filter;
    request.transactional_id_pattern = pattern.map(|p| StrBytes::from_string(p.to_owned()));
    request
}

fn listed(h: &Harness, request: &ListTransactionsRequest) -> Vec<(String, i64, String)> {
    h.txns
        .list(request, h.now_ms)
        .into_iter()
        .map(|entry| (entry.transactional_id.0.to_string(), entry.producer_id.0, entry.transaction_state.to_string()))
        .collect()
}

#[test]
fn list_filters_by_state_producer_id_duration_and_pattern() {
    let mut h = Harness::new();
    let (empty_pid, _) = h.init("app-empty");
    let ongoing = h.init("app-ongoing");
    h.now_ms = 2_000;
    h.add("app-ongoing", ongoing, &[("a", 0)]);
    let other = h.init("other");
    h.now_ms = 3_000;
    h.add("other", other, &[("a", 0)]);
    h.now_ms = 10_000;

    let all = listed(&h, &list_request(&[], &[], -1, None));
    assert_eq!(all.len(), 3);
    // KIP-664 state and producer id filters.
    assert_eq!(listed(&h, &list_request(&["Ongoing"], &[], -1, None)).len(), 2);
    assert_eq!(listed(&h, &list_request(&[], &[empty_pid], -1, None)), [("app-empty".into(), empty_pid, "Empty".into())]);
    assert_eq!(listed(&h, &list_request(&["Bogus"], &[], -1, None)), []);
    assert_eq!(unknown_state_filters(&list_request(&["Bogus", "Empty"], &[], -1, None)), [StrBytes::from_static_str("Bogus")]);
    // KIP-994: running longer than the duration (the Ongoing ones started at 2 s and 3 s).
    let long = listed(&h, &list_request(&["Ongoing"], &[], 7_500, None));
    assert_eq!(long, [("app-ongoing".into(), ongoing.0, "Ongoing".into())]);
    // KIP-1152 (v2): a full match of the transactional id.
    let matching: Vec<String> = listed(&h, &list_request(&[], &[], -1, Some("app-.*"))).into_iter().map(|e| e.0).collect();
    assert_eq!(matching, ["app-empty", "app-ongoing"]);
    assert_eq!(listed(&h, &list_request(&[], &[], -1, Some("app"))), []);
    assert_eq!(h.txns.list_error(&list_request(&[], &[], -1, Some("(unclosed"))), Some(128));
    assert_eq!(h.txns.list_error(&list_request(&[], &[], -1, Some("app-.*"))), None);
}

#[test]
fn describe_shows_the_transaction_or_transactional_id_not_found() {
    let mut h = Harness::new();
    let producer = h.init("tx");
    h.now_ms = 4_000;
    h.add("tx", producer, &[("b", 1), ("a", 2), ("a", 0)]);
    let entry = h.txns.describe("tx");
    assert_eq!(entry.error_code, 0);
    assert_eq!(entry.transaction_state.as_str(), "Ongoing");
    assert_eq!((entry.producer_id.0, entry.producer_epoch), producer);
    assert_eq!((entry.transaction_timeout_ms, entry.transaction_start_time_ms), (TIMEOUT_MS, 4_000));
    let topics: Vec<(String, Vec<i32>)> = entry.topics.iter().map(|t| (t.topic.0.to_string(), t.partitions.clone())).collect();
    assert_eq!(topics, [("a".to_owned(), vec![0, 2]), ("b".to_owned(), vec![1])]);
    assert_eq!(h.describe_code("unknown"), TRANSACTIONAL_ID_NOT_FOUND);
    assert_eq!(h.describe_code(""), 42);
}

#[test]
fn partition_for_uses_the_group_hash() {
    assert_eq!(partition_for("my-group", 50), crate::records::partition_for("my-group", 50));
    assert_eq!(partition_for("polygenelubricants", 50), 0);
}

// -------------------------------------------------------------------------------------------------
// Replay property: whatever the requests, the records rebuild the same state.

#[derive(Debug, Clone)]
enum Op {
    Init { id: usize, with_producer: bool, stale: bool },
    Add { id: usize, partition: i32, stale: bool },
    AddOffsets { id: usize },
    End { id: usize, commit: bool, stale: bool },
    WriteMarkers { index: usize },
    Advance { ms: i64 },
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, any::<bool>(), any::<bool>()).prop_map(|(id, with_producer, stale)| Op::Init { id, with_producer, stale }),
        (0..3usize, 0..3i32, prop::bool::weighted(0.1)).prop_map(|(id, partition, stale)| Op::Add { id, partition, stale }),
        (0..3usize).prop_map(|id| Op::AddOffsets { id }),
        (0..3usize, any::<bool>(), prop::bool::weighted(0.1)).prop_map(|(id, commit, stale)| Op::End { id, commit, stale }),
        (0..4usize).prop_map(|index| Op::WriteMarkers { index }),
        (0..40_000i64).prop_map(|ms| Op::Advance { ms }),
        Just(Op::Tick),
    ]
}

const IDS: [&str; 3] = ["alpha", "beta", "gamma"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn replaying_the_records_of_any_run_rebuilds_the_same_state(ops in prop::collection::vec(op(), 1..80)) {
        let mut h = Harness::expiring_after(200_000);
        let mut jobs: Vec<MarkerJob> = Vec::new();
        // The producer each id last got (what a client would use).
        let mut producers: [Option<(i64, i16)>; 3] = [None; 3];
        for op in ops {
            let current = |id: usize, stale: bool| {
                producers[id].map(|(pid, epoch)| if stale { (pid, epoch.saturating_sub(1)) } else { (pid, epoch) }).unwrap_or((0, 0))
            };
            let out = match op {
                Op::Init { id, with_producer, stale } => {
                    let producer = if with_producer { producers[id].map(|_| current(id, stale)) } else { None };
                    let (response, out) = h.init_with(4, IDS[id], producer);
                    if response.error_code == 0 {
                        producers[id] = Some((response.producer_id.0, response.producer_epoch));
                    }
                    out
                }
                Op::Add { id, partition, stale } => h.add_with(3, IDS[id], current(id, stale), &[("t", partition)]).1,
                Op::AddOffsets { id } => {
                    h.add_offsets(3, IDS[id], current(id, false), 0);
                    Outcome::default()
                }
                Op::End { id, commit, stale } => h.end_with(4, IDS[id], current(id, stale), commit).1,
                Op::WriteMarkers { index } => {
                    if jobs.is_empty() {
                        Outcome::default()
                    } else {
                        let job = jobs.remove(index % jobs.len());
                        h.write_markers(&job)
                    }
                }
                Op::Advance { ms } => {
                    h.now_ms += ms;
                    Outcome::default()
                }
                Op::Tick => h.tick(),
            };
            jobs.extend(out.markers);
            // The harness checked invariants and record round trips; now the replay property.
            let mut replayed = h.replayed();
            let resent = replayed.finish_loading(h.now_ms);
            for transactional_id in IDS {
                prop_assert_eq!(replayed.value(transactional_id), h.txns.value(transactional_id));
                prop_assert_eq!(replayed.describe(transactional_id), h.txns.describe(transactional_id));
            }
            prop_assert_eq!(replayed.next_deadline(), h.txns.next_deadline());
            // Every transaction waiting for markers gets a job on load.
            let preparing = IDS
                .iter()
                .filter(|id| matches!(h.state(id), Some(TxnState::PrepareCommit | TxnState::PrepareAbort)))
                .count();
            prop_assert_eq!(resent.markers.len(), preparing);
        }
    }
}
