//! Idempotent producers on a real partition: duplicates are answered with their original offsets
//! and never stored twice, across a clean restart, a crash (the directory copied while open),
//! retention that removed the producer's segments, and truncation; out-of-order and stale-epoch
//! batches store nothing. Rules: KIP-98 (sequence numbers, last five batches), KIP-360 (state kept
//! when the log start moves; unknown producers accepted), KIP-588 (INVALID_PRODUCER_EPOCH).

mod common;

use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use common::*;
use fjord_engine::cache::CacheBudget;
use fjord_engine::partition::{Acks, Partition};

/// A produced batch of `count` records from producer `producer_id` at `sequence`.
fn idempotent(producer_id: i64, epoch: i16, sequence: i32, count: usize, seed: u64) -> Vec<u8> {
    let mut batch = BatchSpec::simple(count, 100, seed, 1_700_000_000_000 + seed as i64).encode();
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// Appends and waits; Ok(base offset) or Err(Kafka error code).
async fn produce(partition: &Partition, batch: &[u8]) -> Result<i64, i16> {
    let ticket = partition.append(Bytes::copy_from_slice(batch), Acks::Synced).await.map_err(|error| error.kafka_error_code())?;
    let base_offset = ticket.base_offset;
    ticket.wait().await?;
    Ok(base_offset)
}

/// Small enough that producer 7's log rolls several segments.
const SMALL_SEGMENT_BYTES: u64 = 1500;

/// The batches producer 7 wrote, with their offsets.
type Written = Vec<(Vec<u8>, i64)>;

/// Opens (or recovers) the partition in `dir` with 1 MiB of cache.
async fn open(dir: &Path, segment_bytes: u64) -> Rc<Partition> {
    open_partition(dir, topic_config(segment_bytes), CacheBudget::new(1 << 20)).await
}

/// Opens a partition with `segment_bytes` segments in a new temporary directory and writes 12
/// batches of 3 records for producer 7 (sequence 0, 3, ...). Returns the directory, the open
/// partition and the batches with their offsets.
async fn producer_log(segment_bytes: u64) -> (tempfile::TempDir, Rc<Partition>, Written) {
    let (dir, partition) = open_in_temp_dir(topic_config(segment_bytes), CacheBudget::new(1 << 20)).await;
    let mut written = Vec::new();
    for index in 0..12 {
        let batch = idempotent(7, 0, index * 3, 3, index as u64);
        let offset = produce(&partition, &batch).await.expect("in-sequence batch accepted");
        assert_eq!(offset, index as i64 * 3);
        written.push((batch, offset));
    }
    (dir, partition, written)
}

/// The retries a restarted broker must still recognize: the last five batches.
async fn check_retries(partition: &Partition, written: &[(Vec<u8>, i64)]) {
    let end = partition.log_end_offset();
    for (batch, offset) in &written[written.len() - 5..] {
        assert_eq!(produce(partition, batch).await, Ok(*offset), "retry answered with the original offset");
    }
    assert_eq!(partition.log_end_offset(), end, "retries wrote nothing");
    // Older than the window of five: no longer recognizable, so out of order.
    assert_eq!(produce(partition, &written[written.len() - 6].0).await, Err(45));
    assert_eq!(produce(partition, &idempotent(7, 0, 36 + 1, 1, 99)).await, Err(45), "gap");
    assert_eq!(partition.log_end_offset(), end, "refused batches wrote nothing");
    assert_eq!(produce(partition, &idempotent(7, 0, 36, 1, 99)).await, Ok(end), "next in sequence");
}

fn snapshot_count(dir: &Path) -> usize {
    fjord_engine::producer_state::list_snapshots(dir).len()
}

#[test]
fn duplicates_are_answered_with_the_original_offset_and_stored_once() {
    run(|| async {
        let (_dir, partition, written) = producer_log(1 << 20).await;
        check_retries(&partition, &written).await;
        assert_eq!(produce(&partition, &idempotent(7, 1, 3, 1, 100)).await, Err(45), "a new epoch starts at 0");
        assert_eq!(produce(&partition, &idempotent(7, 1, 0, 1, 100)).await, Ok(37));
        assert_eq!(produce(&partition, &idempotent(7, 0, 37, 1, 101)).await, Err(47), "stale epoch");
        partition.close().await.unwrap();
    });
}

#[test]
fn duplicates_after_a_clean_restart_are_still_detected() {
    run(|| async {
        let (dir, partition, written) = producer_log(SMALL_SEGMENT_BYTES).await;
        partition.close().await.unwrap();
        assert!(segment_files(dir.path()).len() >= 3, "precondition: segments rolled");
        assert!(snapshot_count(dir.path()) >= 1, "a clean close writes a snapshot");
        let partition = open(dir.path(), SMALL_SEGMENT_BYTES).await;
        check_retries(&partition, &written).await;
        partition.close().await.unwrap();
    });
}

#[test]
fn duplicates_after_a_crash_are_detected_from_snapshots_and_batch_headers() {
    for remove_snapshots in [false, true] {
        run(move || async move {
            let (dir, partition, written) = producer_log(SMALL_SEGMENT_BYTES).await;
            let crashed = crash_copy(dir.path());
            partition.close().await.unwrap();
            if remove_snapshots {
                remove_producer_snapshots(crashed.path());
            } else {
                assert!(snapshot_count(crashed.path()) >= 1, "precondition: rolls wrote snapshots");
            }
            let partition = open(crashed.path(), SMALL_SEGMENT_BYTES).await;
            check_retries(&partition, &written).await;
            partition.close().await.unwrap();
        });
    }
}

#[test]
fn producer_state_outlives_the_segments_retention_removed_kip_360() {
    run(|| async {
        let (dir, partition, written) = producer_log(SMALL_SEGMENT_BYTES).await;
        // Another producer's data rolls segments past everything producer 7 wrote.
        for index in 0..12 {
            produce(&partition, &idempotent(8, 0, index * 3, 3, 200 + index as u64)).await.unwrap();
        }
        let (start, _) = partition.delete_records(written.last().unwrap().1 + 3).await.unwrap();
        assert!(segment_files(dir.path()).first().unwrap().0 > written.last().unwrap().1, "producer 7's segments are gone");
        let crashed = crash_copy(dir.path());
        partition.close().await.unwrap();
        for directory in [dir.path(), crashed.path()] {
            let partition = open(directory, SMALL_SEGMENT_BYTES).await;
            assert_eq!(partition.log_start_offset(), start);
            let (last_batch, last_offset) = written.last().unwrap();
            assert_eq!(produce(&partition, last_batch).await, Ok(*last_offset), "retry still recognized");
            assert_eq!(produce(&partition, &idempotent(7, 0, 37, 1, 300)).await, Err(45), "still sequenced");
            partition.close().await.unwrap();
        }
    });
}

#[test]
fn truncation_forgets_the_batches_it_removed() {
    run(|| async {
        let (_dir, partition, written) = producer_log(SMALL_SEGMENT_BYTES).await;
        let (last_batch, last_offset) = written.last().unwrap().clone();
        partition.truncate_to(last_offset).await.unwrap();
        // The removed batch is no duplicate any more: it is appended again, where it belongs.
        assert_eq!(produce(&partition, &last_batch).await, Ok(last_offset));
        assert_eq!(produce(&partition, &last_batch).await, Ok(last_offset), "and then it is a duplicate");
        assert_eq!(partition.log_end_offset(), last_offset + 3);
        partition.close().await.unwrap();
    });
}

#[test]
fn expired_producers_are_forgotten_and_then_accepted_at_any_sequence() {
    run(|| async {
        let (_dir, partition, _) = producer_log(1 << 20).await;
        assert_eq!(partition.producers().len(), 1);
        assert_eq!(partition.expire_producers(1_700_000_000_000 + 11, 1_000_000), 0, "not idle long enough");
        assert_eq!(partition.expire_producers(1_700_000_000_000 + 11 + 2 + 1_000_000, 1_000_000), 1);
        assert!(partition.producers().is_empty());
        assert_eq!(produce(&partition, &idempotent(7, 0, 500, 1, 400)).await, Ok(36));
        partition.close().await.unwrap();
    });
}
