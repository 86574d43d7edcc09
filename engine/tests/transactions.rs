//! The partition side of Kafka transactions (KIP-98): end-transaction markers, the last stable
//! offset (LSO), read_committed reads with their aborted transactions, the aborted-transaction
//! index across restarts and crashes, retention and truncation of that index, compaction of
//! transactional data, and the fencing errors a marker can meet (KIP-98, KIP-890 part 1; Kafka's
//! `ProducerStateManager`, `ProducerAppendInfo`, `TransactionIndex`, `LogCleaner`).

mod common;

use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use common::*;
use fjord_engine::cache::CacheBudget;
use fjord_engine::compaction::CompactOptions;
use fjord_engine::partition::{now_ms, Acks, Isolation, Partition, ReadResult};
use fjord_engine::producer_state::{AbortedTxn, ControlType};
use fjord_engine::topic_config::{CleanupPolicy, TopicConfig};
use fjord_engine::txn_index::list_txn_indexes;

const TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// Sets the producer fields (and the transactional bit) of a produced batch; recomputes the CRC.
fn with_producer(mut batch: Vec<u8>, producer_id: i64, epoch: i16, sequence: i32, transactional: bool) -> Vec<u8> {
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&sequence.to_be_bytes());
    let attributes = i16::from_be_bytes([batch[21], batch[22]]) | if transactional { 0x10 } else { 0 };
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// A transactional batch of `count` records.
fn txn_batch(producer_id: i64, epoch: i16, sequence: i32, count: usize, seed: u64) -> Vec<u8> {
    with_producer(BatchSpec::simple(count, 40, seed, TIMESTAMP_MS + seed as i64).encode(), producer_id, epoch, sequence, true)
}

/// A batch without a producer.
fn plain_batch(count: usize, seed: u64) -> Vec<u8> {
    BatchSpec::simple(count, 40, seed, TIMESTAMP_MS + seed as i64).encode()
}

/// A batch of one keyed record.
fn keyed(key: &str, value: &str) -> Vec<u8> {
    BatchSpec {
        base_timestamp_ms: TIMESTAMP_MS,
        records: vec![RecordSpec { key: Some(key.as_bytes().to_vec()), value: value.as_bytes().to_vec(), timestamp_delta_ms: 0 }],
    }
    .encode()
}

/// Appends (acks=all) and waits; Ok(base offset) or Err(Kafka error code).
async fn produce(partition: &Partition, batch: &[u8]) -> Result<i64, i16> {
    let ticket = partition.append(Bytes::copy_from_slice(batch), Acks::Synced).await.map_err(|error| error.kafka_error_code())?;
    let base_offset = ticket.base_offset;
    ticket.wait().await?;
    Ok(base_offset)
}

/// Writes a marker and waits for it; Ok(its offset) or Err(Kafka error code).
async fn marker(
    partition: &Partition,
    producer_id: i64,
    epoch: i16,
    coordinator_epoch: i32,
    control: ControlType,
) -> Result<i64, i16> {
    let ticket = partition
        .append_marker(producer_id, epoch, coordinator_epoch, control)
        .await
        .map_err(|error| error.kafka_error_code())?;
    let offset = ticket.base_offset;
    ticket.wait().await?;
    Ok(offset)
}

fn aborted(producer_id: i64, first_offset: i64, last_offset: i64, last_stable_offset: i64) -> AbortedTxn {
    AbortedTxn { producer_id, first_offset, last_offset, last_stable_offset }
}

/// (base offset, last offset) of every whole batch a read returned.
fn batch_ranges(result: &ReadResult) -> Vec<(i64, i64)> {
    whole_batches(&result_bytes(result)).0.iter().map(|batch| (batch.base_offset, batch.last_offset)).collect()
}

/// Opens (or recovers) the partition in `dir` with 1 MiB of cache.
async fn open(dir: &Path, config: TopicConfig) -> Rc<Partition> {
    open_partition(dir, config, CacheBudget::new(1 << 20)).await
}

/// A new temporary directory and the partition opened in it (see [`open`]).
async fn open_new(config: TopicConfig) -> (tempfile::TempDir, Rc<Partition>) {
    open_in_temp_dir(config, CacheBudget::new(1 << 20)).await
}

/// Aborts the only open transaction, producer `producer_id`'s from `first_offset`, with a marker
/// (coordinator epoch 0) expected at `marker_offset`. Kafka's last stable offset of an abort with
/// no other transaction open is the marker + 1: the LSO moves there, and the aborted index holds
/// exactly this transaction.
async fn abort_the_only_open_txn(partition: &Partition, producer_id: i64, epoch: i16, first_offset: i64, marker_offset: i64) {
    assert_eq!(marker(partition, producer_id, epoch, 0, ControlType::Abort).await, Ok(marker_offset));
    assert_eq!(partition.last_stable_offset(), marker_offset + 1);
    assert_eq!(partition.aborted_txns(), vec![aborted(producer_id, first_offset, marker_offset, marker_offset + 1)]);
}

#[test]
fn commit_and_abort_move_the_last_stable_offset_kip_98() {
    run(|| async {
        let (_dir, partition) = open_new(topic_config(1 << 20)).await;
        assert_eq!(produce(&partition, &txn_batch(1, 0, 0, 3, 1)).await, Ok(0));
        assert_eq!(partition.high_watermark(), 3);
        assert_eq!(partition.last_stable_offset(), 0, "producer 1's transaction is open from 0");
        assert!(partition.has_ongoing_txn(1, 0));
        assert!(!partition.has_ongoing_txn(1, 1), "KIP-890: another epoch has no transaction here");
        assert_eq!(partition.ongoing_txns(), vec![(1, 0, 0)]);
        assert_eq!(marker(&partition, 1, 0, 0, ControlType::Commit).await, Ok(3));
        assert_eq!(partition.last_stable_offset(), 4, "committed: stable up to the high watermark");
        assert!(partition.ongoing_txns().is_empty() && !partition.has_ongoing_txn(1, 0));
        assert_eq!(produce(&partition, &txn_batch(2, 5, 0, 2, 2)).await, Ok(4));
        assert_eq!(produce(&partition, &plain_batch(2, 3)).await, Ok(6));
        assert_eq!(partition.last_stable_offset(), 4, "non-transactional data does not move it past an open txn");
        abort_the_only_open_txn(&partition, 2, 5, 4, 8).await;
        partition.close().await.unwrap();
    });
}

#[test]
fn lso_stays_at_the_oldest_open_txn_while_another_producers_later_txn_opens_and_commits() {
    run(|| async {
        let (_dir, partition) = open_new(topic_config(1 << 20)).await;
        produce(&partition, &plain_batch(2, 1)).await.unwrap();
        assert_eq!(produce(&partition, &txn_batch(1, 0, 0, 2, 2)).await, Ok(2));
        assert_eq!(produce(&partition, &txn_batch(2, 0, 0, 2, 3)).await, Ok(4));
        assert_eq!(produce(&partition, &txn_batch(1, 0, 2, 1, 4)).await, Ok(6), "a second batch of the same txn");
        assert_eq!(partition.last_stable_offset(), 2);
        assert_eq!(partition.ongoing_txns(), vec![(1, 0, 2), (2, 0, 4)]);
        assert_eq!(marker(&partition, 2, 0, 0, ControlType::Commit).await, Ok(7));
        assert_eq!(partition.last_stable_offset(), 2, "producer 1 is still undecided");
        abort_the_only_open_txn(&partition, 1, 0, 2, 8).await;
        partition.close().await.unwrap();
    });
}

#[test]
fn lso_never_exceeds_the_high_watermark_and_a_queued_marker_decides_nothing_yet() {
    run(|| async {
        let (_dir, partition) = open_new(topic_config(1 << 20)).await;
        produce(&partition, &txn_batch(1, 0, 0, 2, 1)).await.unwrap();
        // Queued, not yet written: the flusher has not run (nothing awaited since the append).
        let ticket = partition.append(Bytes::from(plain_batch(3, 2)), Acks::Written).await.unwrap();
        let marker_ticket = partition.append_marker(1, 0, 0, ControlType::Commit).await.unwrap();
        assert_eq!(marker_ticket.base_offset, 5);
        assert_eq!(partition.high_watermark(), 2);
        assert_eq!(partition.last_stable_offset(), 0, "the commit is queued: still undecided for readers");
        assert!(partition.ongoing_txns().is_empty(), "but no longer open for producer state");
        ticket.wait().await.unwrap();
        marker_ticket.wait().await.unwrap();
        assert_eq!((partition.high_watermark(), partition.last_stable_offset()), (6, 6));
        let ticket = partition.append(Bytes::from(plain_batch(1, 3)), Acks::Written).await.unwrap();
        assert!(partition.last_stable_offset() <= partition.high_watermark());
        assert_eq!(partition.last_stable_offset(), 6);
        ticket.wait().await.unwrap();
        assert_eq!(partition.last_stable_offset(), 7);
        partition.close().await.unwrap();
    });
}

/// Offsets: p1 txn [0,2], p2 txn [3,5], p1 abort 6, plain [7,9], p2 commit 10, p4 txn [11,13] open.
async fn write_mixed_log(partition: &Partition) {
    assert_eq!(produce(partition, &txn_batch(1, 0, 0, 3, 1)).await, Ok(0));
    assert_eq!(produce(partition, &txn_batch(2, 0, 0, 3, 2)).await, Ok(3));
    assert_eq!(marker(partition, 1, 0, 0, ControlType::Abort).await, Ok(6));
    assert_eq!(produce(partition, &plain_batch(3, 3)).await, Ok(7));
    assert_eq!(marker(partition, 2, 0, 0, ControlType::Commit).await, Ok(10));
    assert_eq!(produce(partition, &txn_batch(4, 0, 0, 3, 4)).await, Ok(11));
}

async fn check_mixed_log_reads(partition: &Partition) {
    assert_eq!(partition.last_stable_offset(), 11);
    assert_eq!(partition.high_watermark(), 14);
    // p1's abort happened while p2's txn (from 3) was open: Kafka stores 3 as its stable offset.
    let p1 = aborted(1, 0, 6, 3);
    assert_eq!(partition.aborted_txns(), vec![p1]);
    let result = partition.read(0, 1 << 20, Isolation::ReadCommitted).unwrap();
    assert_eq!(batch_ranges(&result), vec![(0, 2), (3, 5), (6, 6), (7, 9), (10, 10)], "stops at the LSO");
    assert_eq!((result.last_stable_offset, result.high_watermark), (11, 14));
    assert_eq!(result.aborted, vec![p1]);
    let result = partition.read(5, 1 << 20, Isolation::ReadCommitted).unwrap();
    assert_eq!(result.aborted, vec![p1], "fetch inside the aborted range still gets it");
    let result = partition.read(7, 1 << 20, Isolation::ReadCommitted).unwrap();
    assert_eq!(batch_ranges(&result), vec![(7, 9), (10, 10)]);
    assert_eq!(result.aborted, vec![], "the abort marker lies before the fetch offset");
    let result = partition.read(11, 1 << 20, Isolation::ReadCommitted).unwrap();
    assert!(result.chunks.is_empty(), "nothing stable at or past the LSO");
    let result = partition.read(0, 1 << 20, Isolation::ReadUncommitted).unwrap();
    assert_eq!(batch_ranges(&result).last(), Some(&(11, 13)), "read_uncommitted reads to the high watermark");
    assert_eq!((result.aborted.len(), result.last_stable_offset), (0, 11));
}

#[test]
fn read_committed_stops_at_the_lso_and_returns_the_overlapping_aborted_txns() {
    run(|| async {
        let (dir, partition) = open_new(topic_config(1 << 20)).await;
        write_mixed_log(&partition).await;
        check_mixed_log_reads(&partition).await;
        // From the segment files instead of the cache.
        partition.close().await.unwrap();
        let partition = open(dir.path(), topic_config(1 << 20)).await;
        check_mixed_log_reads(&partition).await;
        partition.close().await.unwrap();
    });
}

#[test]
fn aborted_txns_starting_after_the_returned_data_are_not_listed() {
    run(|| async {
        let (_dir, partition) = open_new(topic_config(1 << 20)).await;
        produce(&partition, &plain_batch(3, 1)).await.unwrap();
        assert_eq!(produce(&partition, &txn_batch(9, 0, 0, 3, 2)).await, Ok(3));
        assert_eq!(marker(&partition, 9, 0, 0, ControlType::Abort).await, Ok(6));
        let first_batch_only = partition.read(0, 1, Isolation::ReadCommitted).unwrap();
        assert_eq!(batch_ranges(&first_batch_only), vec![(0, 2)]);
        assert_eq!(first_batch_only.aborted, vec![], "the returned data ends before the aborted txn");
        let everything = partition.read(0, 1 << 20, Isolation::ReadCommitted).unwrap();
        assert_eq!(everything.aborted, vec![aborted(9, 3, 6, 7)]);
        partition.close().await.unwrap();
    });
}

/// Small segments; p1 aborted, p2 committed after an epoch bump by its marker, p3 open.
async fn write_restart_log(partition: &Partition) {
    for seed in 0..4 {
        produce(partition, &plain_batch(4, seed)).await.unwrap();
    }
    produce(partition, &txn_batch(1, 2, 0, 3, 10)).await.unwrap();
    produce(partition, &txn_batch(2, 0, 0, 3, 11)).await.unwrap();
    marker(partition, 1, 2, 5, ControlType::Abort).await.unwrap();
    produce(partition, &plain_batch(4, 12)).await.unwrap();
    marker(partition, 2, 1, 5, ControlType::Commit).await.unwrap();
    produce(partition, &txn_batch(3, 0, 0, 2, 13)).await.unwrap();
    produce(partition, &plain_batch(4, 14)).await.unwrap();
}

/// (LSO, aborted, open txns, producers' (id, epoch, coordinator epoch)) of a partition.
type TxnView = (i64, Vec<AbortedTxn>, Vec<(i64, i16, i64)>, Vec<(i64, i16, i32)>);

fn txn_view(partition: &Partition) -> TxnView {
    let producers = partition.producers().into_iter().map(|(id, entry)| (id, entry.epoch, entry.coordinator_epoch)).collect();
    (partition.last_stable_offset(), partition.aborted_txns(), partition.ongoing_txns(), producers)
}

#[test]
fn clean_restart_keeps_aborted_index_open_txns_and_marker_epochs() {
    run(|| async {
        let (dir, partition) = open_new(topic_config(700)).await;
        write_restart_log(&partition).await;
        let before = txn_view(&partition);
        assert_eq!(before.1.len(), 1);
        assert_eq!(before.2.len(), 1, "producer 3 is open");
        assert!(before.3.contains(&(2, 1, 5)), "the commit marker bumped producer 2 to epoch 1");
        partition.close().await.unwrap();
        assert!(segment_files(dir.path()).len() >= 3, "precondition: segments rolled");
        assert!(!list_txn_indexes(dir.path()).is_empty());
        let partition = open(dir.path(), topic_config(700)).await;
        assert_eq!(txn_view(&partition), before);
        assert_eq!(marker(&partition, 2, 0, 5, ControlType::Abort).await, Err(47), "the bumped epoch survived");
        // Producer 3's transaction, open across the restart, aborts from its original first offset.
        let (_, _, first_offset) = before.2[0];
        let offset = marker(&partition, 3, 0, 4, ControlType::Abort).await.unwrap();
        let last = partition.aborted_txns().last().copied().unwrap();
        assert_eq!((last.producer_id, last.first_offset, last.last_offset), (3, first_offset, offset));
        assert_eq!(partition.last_stable_offset(), partition.high_watermark());
        partition.close().await.unwrap();
    });
}

#[test]
fn crash_keeps_aborted_index_open_txns_and_marker_epochs() {
    // The directory copied while the partition is open is what a SIGKILL leaves; variants lose
    // the producer snapshots, or the snapshots and the txnindex files (rebuilt from the log).
    for (lose_snapshots, lose_txn_indexes) in [(false, false), (true, false), (true, true)] {
        run(move || async move {
            let (dir, partition) = open_new(topic_config(700)).await;
            write_restart_log(&partition).await;
            let before = txn_view(&partition);
            let crashed = crash_copy(dir.path());
            partition.close().await.unwrap();
            if lose_snapshots {
                remove_producer_snapshots(crashed.path());
            }
            if lose_txn_indexes {
                for bucket in list_txn_indexes(crashed.path()) {
                    std::fs::remove_file(fjord_engine::txn_index::txn_index_path(crashed.path(), bucket)).unwrap();
                }
            }
            let partition = open(crashed.path(), topic_config(700)).await;
            assert_eq!(txn_view(&partition), before, "snapshots lost: {lose_snapshots}, txnindex lost: {lose_txn_indexes}");
            assert_eq!(marker(&partition, 1, 1, 5, ControlType::Abort).await, Err(47), "stale epoch after the crash");
            partition.close().await.unwrap();
            // And again after the reopened partition's own clean close.
            let partition = open(crashed.path(), topic_config(700)).await;
            assert_eq!(txn_view(&partition).1, before.1);
            partition.close().await.unwrap();
        });
    }
}

#[test]
fn stale_marker_epochs_and_client_control_batches_are_refused_and_write_nothing() {
    run(|| async {
        let (_dir, partition) = open_new(topic_config(1 << 20)).await;
        produce(&partition, &txn_batch(1, 3, 0, 2, 1)).await.unwrap();
        marker(&partition, 1, 3, 10, ControlType::Commit).await.unwrap();
        let end = partition.log_end_offset();
        assert_eq!(marker(&partition, 1, 2, 10, ControlType::Abort).await, Err(47), "INVALID_PRODUCER_EPOCH");
        assert_eq!(marker(&partition, 1, 3, 9, ControlType::Abort).await, Err(52), "TRANSACTION_COORDINATOR_FENCED");
        let control = fjord_engine::batch::build_end_txn_marker(1, 3, 10, ControlType::Abort, TIMESTAMP_MS);
        assert_eq!(produce(&partition, &control).await, Err(87), "INVALID_RECORD: clients may not write markers");
        assert_eq!(partition.log_end_offset(), end, "nothing written");
        assert!(partition.aborted_txns().is_empty());
        // A non-transactional batch while the producer's transaction is open: INVALID_TXN_STATE.
        produce(&partition, &txn_batch(1, 3, 2, 1, 2)).await.unwrap();
        let plain = with_producer(plain_batch(1, 3), 1, 3, 3, false);
        assert_eq!(produce(&partition, &plain).await, Err(48));
        // A marker for a producer this partition never saw is accepted; an abort is indexed.
        let offset = marker(&partition, 77, 0, 0, ControlType::Abort).await.unwrap();
        assert_eq!(partition.aborted_txns(), vec![aborted(77, offset, offset, 3)]);
        partition.close().await.unwrap();
    });
}

#[test]
fn retention_and_delete_records_drop_aborted_txns_below_the_log_start() {
    run(|| async {
        let (dir, partition) = open_new(topic_config(600)).await;
        let mut markers = Vec::new();
        for producer in 0..4 {
            produce(&partition, &txn_batch(producer, 0, 0, 3, producer as u64)).await.unwrap();
            markers.push(marker(&partition, producer, 0, 0, ControlType::Abort).await.unwrap());
            produce(&partition, &plain_batch(4, 10 + producer as u64)).await.unwrap();
        }
        assert_eq!(partition.aborted_txns().len(), 4);
        let files_before = list_txn_indexes(dir.path());
        assert!(files_before.len() >= 2, "precondition: markers in several segments");
        let (start, _) = partition.delete_records(markers[1] + 1).await.unwrap();
        let left: Vec<i64> = partition.aborted_txns().iter().map(|txn| txn.last_offset).collect();
        assert_eq!(left, markers[2..].to_vec());
        assert!(list_txn_indexes(dir.path()).iter().all(|bucket| *bucket >= segment_files(dir.path())[0].0));
        partition.close().await.unwrap();
        let partition = open(dir.path(), topic_config(600)).await;
        assert_eq!(partition.log_start_offset(), start);
        let left: Vec<i64> = partition.aborted_txns().iter().map(|txn| txn.last_offset).collect();
        assert_eq!(left, markers[2..].to_vec(), "after a restart too");
        partition.close().await.unwrap();
    });
}

#[test]
fn truncation_drops_aborted_txns_past_the_new_end_and_reopens_txns() {
    run(|| async {
        let (dir, partition) = open_new(topic_config(600)).await;
        produce(&partition, &txn_batch(1, 0, 0, 3, 1)).await.unwrap();
        let first_abort = marker(&partition, 1, 0, 0, ControlType::Abort).await.unwrap();
        produce(&partition, &plain_batch(4, 2)).await.unwrap();
        let second_txn = produce(&partition, &txn_batch(2, 0, 0, 3, 3)).await.unwrap();
        produce(&partition, &plain_batch(4, 4)).await.unwrap();
        let second_abort = marker(&partition, 2, 0, 0, ControlType::Abort).await.unwrap();
        assert_eq!(partition.aborted_txns().len(), 2);
        partition.truncate_to(second_abort).await.unwrap();
        assert_eq!(partition.aborted_txns().iter().map(|txn| txn.last_offset).collect::<Vec<_>>(), vec![first_abort]);
        assert_eq!(partition.ongoing_txns(), vec![(2, 0, second_txn)], "the abort was cut: producer 2 is open again");
        assert_eq!(partition.last_stable_offset(), second_txn);
        partition.close().await.unwrap();
        let partition = open(dir.path(), topic_config(600)).await;
        assert_eq!(partition.aborted_txns().len(), 1);
        assert_eq!(partition.last_stable_offset(), second_txn);
        partition.close().await.unwrap();
    });
}

#[test]
fn expiry_never_forgets_a_producer_with_an_open_txn() {
    run(|| async {
        let (_dir, partition) = open_new(topic_config(1 << 20)).await;
        produce(&partition, &txn_batch(1, 0, 0, 1, 1)).await.unwrap();
        produce(&partition, &with_producer(plain_batch(1, 2), 2, 0, 0, false)).await.unwrap();
        assert_eq!(partition.expire_producers(i64::MAX / 2, 1), 1, "only the idle producer without a txn");
        assert!(partition.has_ongoing_txn(1, 0));
        marker(&partition, 1, 0, 0, ControlType::Commit).await.unwrap();
        assert_eq!(partition.expire_producers(i64::MAX / 2, 1), 1);
        partition.close().await.unwrap();
    });
}

fn compacted_config(segment_bytes: u64) -> TopicConfig {
    let mut config = topic_config(segment_bytes);
    config.cleanup_policy = CleanupPolicy::Compact;
    config
}

/// (offset, key, value) of every data record from the log start to the high watermark.
fn records(partition: &Partition) -> Vec<(i64, String, String)> {
    let text = |bytes: &Option<Bytes>| bytes.as_ref().map_or(String::new(), |b| String::from_utf8_lossy(b).into_owned());
    let mut out = Vec::new();
    let mut offset = partition.log_start_offset();
    while offset < partition.high_watermark() {
        let result = partition.read(offset, 1 << 20, Isolation::ReadUncommitted).unwrap();
        let batches = whole_batches(&result_bytes(&result)).0;
        assert!(!batches.is_empty(), "a read below the high watermark returns a batch");
        for batch in batches {
            let mut bytes = Bytes::from(batch.bytes.clone());
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).unwrap();
            for record in set.records.iter().filter(|record| !record.control) {
                out.push((record.offset, text(&record.key), text(&record.value)));
            }
            offset = batch.last_offset + 1;
        }
    }
    out
}

#[test]
fn compaction_removes_aborted_values_keeps_committed_ones_and_never_cleans_past_the_lso() {
    run(|| async {
        let (dir, partition) = open_new(compacted_config(170)).await;
        let committed = produce(&partition, &with_producer(keyed("k", "committed"), 1, 0, 0, true)).await.unwrap();
        marker(&partition, 1, 0, 0, ControlType::Commit).await.unwrap();
        let aborted_value = produce(&partition, &with_producer(keyed("k", "aborted"), 2, 0, 0, true)).await.unwrap();
        marker(&partition, 2, 0, 0, ControlType::Abort).await.unwrap();
        produce(&partition, &keyed("other", "1")).await.unwrap();
        // Producer 3's transaction stays open: nothing from its first offset on may be cleaned.
        let open_txn = produce(&partition, &with_producer(keyed("j", "open-1"), 3, 0, 0, true)).await.unwrap();
        produce(&partition, &keyed("j", "plain-after-open")).await.unwrap();
        produce(&partition, &keyed("other", "2")).await.unwrap();
        produce(&partition, &keyed("j", "plain-last")).await.unwrap();
        produce(&partition, &keyed("pad", "x")).await.unwrap();
        assert!(segment_files(dir.path()).len() >= 5, "precondition: small segments");
        assert_eq!(partition.last_stable_offset(), open_txn);
        let before = records(&partition);
        assert!(before.iter().any(|(offset, _, _)| *offset == aborted_value), "precondition: the aborted value is in the log");
        let report = partition.compact(now_ms(), &CompactOptions { force: true, ..CompactOptions::default() }).await.unwrap();
        assert!(report.is_some(), "a pass ran");
        let after = records(&partition);
        assert!(after.iter().any(|(offset, _, value)| *offset == committed && value == "committed"), "{after:?}");
        assert!(!after.iter().any(|(offset, _, _)| *offset == aborted_value), "the aborted value is gone: {after:?}");
        let untouched: Vec<_> = before.iter().filter(|(offset, _, _)| *offset >= open_txn).collect();
        let kept: Vec<_> = after.iter().filter(|(offset, _, _)| *offset >= open_txn).collect();
        assert_eq!(kept, untouched, "nothing at or past the LSO is cleaned");
        let committed_reads = partition.read(0, 1 << 20, Isolation::ReadCommitted).unwrap();
        assert!(batch_ranges(&committed_reads).iter().all(|(_, last)| *last < open_txn));
        partition.close().await.unwrap();
    });
}

#[test]
fn read_committed_fetchers_are_woken_when_the_lso_moves() {
    run(|| async {
        let (_dir, partition) = open_new(topic_config(1 << 20)).await;
        produce(&partition, &txn_batch(1, 0, 0, 2, 1)).await.unwrap();
        let woken = partition.data_arrived.notified();
        let commit = partition.append_marker(1, 0, 0, ControlType::Commit).await.unwrap();
        commit.wait().await.unwrap();
        woken.await;
        assert_eq!(partition.last_stable_offset(), 3);
        partition.close().await.unwrap();
    });
}
