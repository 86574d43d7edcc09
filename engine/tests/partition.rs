//! Partition behaviour other than recovery: segment roll by segment.bytes, ListOffsets lookups
//! across segments, group commit under concurrent produces, the batch cache and its budget,
//! validation of produced batches, and truncation (KIP-101).

mod common;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use common::*;
use fjord_engine::cache::CacheBudget;
use fjord_engine::error::LogError;
use fjord_engine::partition::{Acks, Chunk, Isolation, Partition, PartitionSettings};
use fjord_engine::shard::{partition_dir, PartitionSpec, ShardStore, ShardTable};
use futures::FutureExt;
use tempfile::TempDir;

const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;

// ---------------------------------------------------------------------------------------------
// Segment roll and ListOffsets

/// Where segments must start if a segment rolls exactly when the next produce would take it past
/// `segment_bytes` (Kafka's rule), given one batch per produce.
fn expected_segment_bases(model: &Model, segment_bytes: u64) -> Vec<i64> {
    let mut bases = vec![0];
    let mut size = 0u64;
    for batch in &model.batches {
        let length = batch.bytes.len() as u64;
        if size > 0 && size + length > segment_bytes {
            bases.push(batch.base_offset);
            size = 0;
        }
        size += length;
    }
    bases
}

/// ListOffsets against the model, at and around every record's timestamp and past both ends.
fn check_listoffsets(partition: &Partition, model: &Model) {
    let mut targets = vec![i64::MIN + 1, 0];
    for batch in &model.batches {
        for timestamp in &batch.record_timestamps_ms {
            targets.extend([timestamp - 1, *timestamp, timestamp + 1]);
        }
    }
    targets.push(model.max_timestamp().unwrap().1 + 1);
    check_timestamp_lookups_at(partition, model, targets);
}

#[test]
fn segments_roll_at_segment_bytes_and_timestamp_lookups_span_every_segment() {
    run(|| async {
        let dir = temp_dir();
        let segment_bytes = 6_000;
        let batches = (0..60u64).map(|index| {
            // Timestamps out of order, as clients with skewed clocks send them.
            let timestamp = BASE_TIMESTAMP_MS + ((index * 37) % 60) as i64 * 1000;
            BatchSpec::simple(2 + (index % 4) as usize, 100 + (index % 7) as usize * 30, index, timestamp)
        });
        let (partition, model) = open_and_append(dir.path(), topic_config(segment_bytes), batches, Acks::Written).await;
        let bases: Vec<i64> = segment_files(dir.path()).into_iter().map(|(base, _)| base).collect();
        assert_eq!(bases, expected_segment_bases(&model, segment_bytes), "segment base offsets");
        assert!(bases.len() >= 5, "test precondition: several segments");
        for (_, path) in &segment_files(dir.path())[..bases.len() - 1] {
            assert!(file_len(path) <= segment_bytes, "sealed segment {} is {} bytes", path.display(), file_len(path));
            assert!(index_path(path).exists(), "sealed segment {} has its index stored", path.display());
        }
        check_listoffsets(&partition, &model);
        partition.close().await.expect("clean close");

        // Again from the stored indexes, and with every read from the files.
        let partition = open_partition(dir.path(), topic_config(segment_bytes), CacheBudget::new(0)).await;
        check_listoffsets(&partition, &model);
        must(check_whole_log(&partition, &model));
        must(check_reads_at_every_batch(&partition, &model));
        partition.close().await.expect("clean close");
    });
}

#[test]
fn max_timestamp_tie_across_segments_goes_to_the_earliest_batch() {
    // KIP-734 MAX_TIMESTAMP: Kafka keeps the first offset that reached the maximum.
    run(|| async {
        let dir = temp_dir();
        let segment_bytes = 1_000;
        let timestamps = [5_000, 9_000, 3_000, 9_000, 1_000];
        let batches =
            timestamps.into_iter().enumerate().map(|(seed, timestamp)| BatchSpec::simple(3, 200, seed as u64, timestamp));
        let (partition, model) = open_and_append(dir.path(), topic_config(segment_bytes), batches, Acks::Written).await;
        assert!(segment_files(dir.path()).len() >= 4, "test precondition: the tied batches are in different segments");
        check_listoffsets(&partition, &model);
        assert_eq!(partition.max_timestamp().unwrap(), Some((5, 9_002)));
        partition.close().await.expect("clean close");
        let partition = open_partition(dir.path(), topic_config(segment_bytes), CacheBudget::new(0)).await;
        check_listoffsets(&partition, &model);
        partition.close().await.expect("clean close");
    });
}

#[test]
fn max_timestamp_forgets_a_largest_timestamp_that_was_truncated_away() {
    run(|| async {
        let dir = temp_dir();
        // Segment 0: timestamps around 5 000; segment 3: around 1 000, then the largest, 9 000.
        let batches = [(0, 200, 5_000), (1, 200, 1_000), (2, 10, 9_000)]
            .map(|(seed, value_bytes, timestamp)| BatchSpec::simple(3, value_bytes, seed, timestamp));
        let (partition, mut model) = open_and_append(dir.path(), topic_config(1_000), batches, Acks::Written).await;
        let bases: Vec<i64> = segment_files(dir.path()).into_iter().map(|(base, _)| base).collect();
        assert_eq!(bases, vec![0, 3], "test precondition: the last two batches share a segment");
        assert_eq!(partition.max_timestamp().unwrap(), Some((8, 9_002)));
        partition.truncate_to(6).await.expect("truncate");
        model.truncate_to(6);
        assert_eq!(partition.max_timestamp().unwrap(), model.max_timestamp(), "the largest timestamp left is in segment 0");
        check_listoffsets(&partition, &model);
        partition.close().await.expect("clean close");
    });
}

#[test]
fn produce_larger_than_segment_bytes_goes_whole_into_a_fresh_segment() {
    run(|| async {
        let dir = temp_dir();
        let segment_bytes = 2_000;
        let value_sizes = [100, 3_000, 100, 100, 5_000];
        let batches = value_sizes
            .into_iter()
            .enumerate()
            .map(|(seed, value_bytes)| BatchSpec::simple(2, value_bytes, seed as u64, BASE_TIMESTAMP_MS));
        let (partition, model) = open_and_append(dir.path(), topic_config(segment_bytes), batches, Acks::Synced).await;
        let bases: Vec<i64> = segment_files(dir.path()).into_iter().map(|(base, _)| base).collect();
        assert_eq!(bases, expected_segment_bases(&model, segment_bytes));
        must(check_whole_log(&partition, &model));
        reopen_uncached_and_check(dir.path(), partition, topic_config(segment_bytes), &model).await;
    });
}

// ---------------------------------------------------------------------------------------------
// Group commit

/// Many producers at once, each acks=all; a reader polls meanwhile. Every append completes,
/// offsets are contiguous and non-overlapping, and no read ever shows a batch at or past the
/// high watermark it reports.
async fn concurrent_produce_case(cache_bytes: usize) {
    let dir = temp_dir();
    let segment_bytes = 64 * 1024;
    let partition = open_partition(dir.path(), topic_config(segment_bytes), CacheBudget::new(cache_bytes)).await;
    let produced_by_base: Rc<RefCell<BTreeMap<i64, Vec<u8>>>> = Rc::default();
    let producers_left = Rc::new(Cell::new(0usize));
    let mut tasks = Vec::new();
    for producer in 0..40u64 {
        let partition = partition.clone();
        let produced_by_base = produced_by_base.clone();
        let producers_left = producers_left.clone();
        producers_left.set(producers_left.get() + 1);
        tasks.push(glommio::spawn_local(async move {
            let mut outcomes = Vec::new();
            for round in 0..5u64 {
                let seed = producer * 100 + round;
                // Up to 40 KB a batch: a round of 40 producers can exceed one 1 MiB group write.
                let produced = BatchSpec::simple(
                    1 + (seed % 9) as usize,
                    40 + (seed % 13) as usize * 350,
                    seed,
                    BASE_TIMESTAMP_MS + seed as i64,
                )
                .encode();
                let ticket = partition.append(Bytes::from(produced.clone()), Acks::Synced).await.expect("append accepted");
                produced_by_base.borrow_mut().insert(ticket.base_offset, produced.clone());
                let base_offset = ticket.base_offset;
                outcomes.push((base_offset, record_count(&produced), ticket.wait().await));
            }
            producers_left.set(producers_left.get() - 1);
            outcomes
        }));
    }
    let reader = {
        let partition = partition.clone();
        let produced_by_base = produced_by_base.clone();
        let producers_left = producers_left.clone();
        glommio::spawn_local(async move {
            let mut reads = 0u64;
            let mut violations = Vec::new();
            while producers_left.get() > 0 {
                let high_watermark = partition.high_watermark();
                if high_watermark > 0 {
                    let offset = (reads as i64 * 7919) % high_watermark;
                    let result =
                        partition.read(offset, 16 * 1024, Isolation::ReadUncommitted).expect("read below the high watermark");
                    let bytes = result_bytes(&result);
                    let (found, partial_bytes) = whole_batches(&bytes);
                    for batch in &found {
                        let produced = produced_by_base.borrow().get(&batch.base_offset).cloned();
                        match produced {
                            Some(produced) if stored(&produced, batch.base_offset, LEADER_EPOCH) == batch.bytes => {}
                            _ => violations
                                .push(format!("read at {offset}: batch {} is not what was produced there", batch.base_offset)),
                        }
                        if batch.last_offset >= result.high_watermark {
                            violations.push(format!(
                                "read at {offset} returned batch {}..={} at or past its high watermark {} (chunks {:?})",
                                batch.base_offset,
                                batch.last_offset,
                                result.high_watermark,
                                chunk_kinds(&result)
                            ));
                        }
                    }
                    if partial_bytes >= 8 {
                        let partial_base = i64::from_be_bytes(bytes[bytes.len() - partial_bytes..][..8].try_into().unwrap());
                        if partial_base >= result.high_watermark {
                            violations.push(format!(
                                "read at {offset} ends with part of batch {partial_base}, past its high watermark {}",
                                result.high_watermark
                            ));
                        }
                    }
                }
                reads += 1;
                violations.truncate(10);
                // A timer, not a bare yield: a task that only yields keeps the run queue full and
                // starves the I/O completions the producers wait for.
                glommio::timer::sleep(std::time::Duration::from_micros(100)).await;
            }
            (reads, violations)
        })
    };
    let mut model_entries = Vec::new();
    for task in tasks {
        for (base_offset, count, outcome) in task.await {
            assert_eq!(outcome, Ok(()), "acks=all append at {base_offset} completes");
            model_entries.push((base_offset, count));
        }
    }
    let (reads, violations) = reader.await;
    assert!(reads > 0, "test precondition: the reader ran while producers waited");
    model_entries.sort();
    let mut next = 0;
    for (base_offset, count) in &model_entries {
        assert_eq!(*base_offset, next, "offsets are contiguous and do not overlap");
        next += count;
    }
    assert_eq!(partition.log_end_offset(), next);
    assert_eq!(partition.high_watermark(), next, "every ticket completed: the high watermark is the log end");
    let mut model = Model::default();
    for (base_offset, produced) in produced_by_base.borrow().iter() {
        assert_eq!(model.append(produced), *base_offset);
    }
    must(check_whole_log(&partition, &model));
    partition.close().await.expect("clean close");
    assert!(violations.is_empty(), "bad reads while producing, first: {}", violations[0]);
    let partition = open_partition(dir.path(), topic_config(segment_bytes), CacheBudget::new(cache_bytes)).await;
    must(check_whole_log(&partition, &model));
    partition.close().await.expect("clean close");
}

#[test]
fn concurrent_acks_all_appends_complete_with_contiguous_offsets_and_reads_stay_below_the_high_watermark() {
    run(|| concurrent_produce_case(8 << 20));
}

#[test]
fn concurrent_acks_all_appends_read_from_files_never_show_batches_past_the_high_watermark() {
    // With no cache budget every read of written data is a file slice (sendfile).
    run(|| concurrent_produce_case(0));
}

// ---------------------------------------------------------------------------------------------
// Batch cache

fn spec(segment_bytes: u64) -> PartitionSpec {
    PartitionSpec { topic_id: TOPIC_ID, leader_epoch: LEADER_EPOCH, config: topic_config(segment_bytes) }
}

/// Produces 30 batches of about 700 bytes through a shard store with `cache_bytes` of cache.
async fn fill_store(data_dir: PathBuf, cache_bytes: usize) -> (ShardStore, Rc<Partition>, Model) {
    let store = ShardStore::new(0, ShardTable::new(1), data_dir, settings(), cache_bytes);
    let partition = store.get_or_open(TOPIC, PARTITION, &spec(10_000)).await.expect("partition opens");
    let mut model = Model::default();
    for seed in 0..30u64 {
        let produced = BatchSpec::simple(4, 150, seed, BASE_TIMESTAMP_MS + seed as i64).encode();
        append_checked(&partition, &mut model, produced, Acks::Written).await;
    }
    (store, partition, model)
}

#[test]
fn tiny_cache_budget_serves_older_batches_from_the_files_correctly() {
    run(|| async {
        let data_dir = temp_dir();
        let budget = 2_500;
        let (store, partition, model) = fill_store(data_dir.path().to_path_buf(), budget).await;
        assert!(
            store.cache_used_bytes() <= budget,
            "cache holds {} bytes over its {budget} budget once all is written",
            store.cache_used_bytes()
        );
        assert!(
            segment_files(&partition_dir(data_dir.path(), TOPIC, PARTITION)).len() >= 2,
            "test precondition: several segments"
        );
        for batch in &model.batches[..model.batches.len() - 4] {
            let result = partition.read(batch.base_offset, 1 << 20, Isolation::ReadUncommitted).expect("read");
            assert!(
                result.chunks.iter().all(|chunk| matches!(chunk, Chunk::File(_))),
                "read at {} of an evicted batch comes from the file, got {:?}",
                batch.base_offset,
                chunk_kinds(&result)
            );
        }
        let newest = model.batches.last().unwrap();
        let result = partition.read(newest.base_offset, 1 << 20, Isolation::ReadUncommitted).expect("read");
        assert_eq!(chunk_kinds(&result), ["memory"], "the newest batch is still cached");
        must(check_whole_log(&partition, &model));
        must(check_reads_at_every_batch(&partition, &model));
        for max_bytes in [1, 700, 5_000] {
            for offset in 0..model.end_offset() {
                must(check_read(&partition, &model, offset, max_bytes));
            }
        }
        store.close_all().await;
        assert_eq!(store.cache_used_bytes(), 0, "closing releases the cache budget");
    });
}

#[test]
fn zero_cache_budget_serves_every_written_batch_from_the_files() {
    run(|| async {
        let data_dir = temp_dir();
        let (store, partition, model) = fill_store(data_dir.path().to_path_buf(), 0).await;
        assert_eq!(store.cache_used_bytes(), 0, "written batches are evicted at once");
        for batch in &model.batches {
            let result = partition.read(batch.base_offset, 1, Isolation::ReadUncommitted).expect("read");
            assert_eq!(chunk_kinds(&result), ["file"], "read at {}", batch.base_offset);
        }
        must(check_whole_log(&partition, &model));
        must(check_reads_at_every_batch(&partition, &model));
        store.close_all().await;
    });
}

#[test]
fn recent_batches_are_served_from_the_cache_not_the_disk() {
    // DESIGN.md: O_DIRECT data is not in the page cache, so the tail must come from memory.
    run(|| async {
        let data_dir = temp_dir();
        let (store, partition, model) = fill_store(data_dir.path().to_path_buf(), 8 << 20).await;
        for batch in &model.batches {
            let result = partition.read(batch.base_offset, 1 << 20, Isolation::ReadUncommitted).expect("read");
            assert!(
                result.chunks.iter().all(|chunk| matches!(chunk, Chunk::Memory(_))),
                "read at {}: {:?}",
                batch.base_offset,
                chunk_kinds(&result)
            );
        }
        must(check_whole_log(&partition, &model));
        store.close_all().await;
        assert_eq!(store.cache_used_bytes(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Validation of produced batches

/// A partition holding three valid batches, and its model.
async fn partition_with_three_batches(dir: &std::path::Path, max_message_bytes: u32) -> (Rc<Partition>, Model) {
    let mut config = topic_config(1 << 30);
    config.max_message_bytes = max_message_bytes;
    let batches = (0..3).map(|seed| BatchSpec::simple(3, 100, seed, BASE_TIMESTAMP_MS));
    open_and_append(dir, config, batches, Acks::Synced).await
}

async fn expect_refused(partition: &Partition, model: &Model, records: Vec<u8>, kafka_error_code: i16, what: &str) {
    match partition.append(Bytes::from(records), Acks::Synced).await {
        Ok(ticket) => panic!("{what}: accepted at offset {}", ticket.base_offset),
        Err(error) => assert_eq!(error.kafka_error_code(), kafka_error_code, "{what}: {error}"),
    }
    assert_eq!(partition.log_end_offset(), model.end_offset(), "{what}: nothing stored");
    assert_eq!(partition.high_watermark(), model.end_offset(), "{what}: high watermark unchanged");
}

/// After refusals the log still holds exactly the model, takes the next append at the old end,
/// and keeps it all across a reopen.
async fn check_unchanged_after_refusals(dir: &std::path::Path, partition: Rc<Partition>, mut model: Model) {
    let produced = BatchSpec::simple(2, 10, 99, BASE_TIMESTAMP_MS).encode();
    let base_offset = model.append(&produced);
    assert_eq!(append_and_wait(&partition, produced, Acks::Synced).await, base_offset, "next append starts at the old end");
    must(check_whole_log(&partition, &model));
    let config = partition.config();
    reopen_uncached_and_check(dir, partition, config, &model).await;
}

#[test]
fn append_refuses_a_batch_with_a_bad_crc_as_corrupt_message_and_stores_nothing() {
    run(|| async {
        let dir = temp_dir();
        let (partition, model) = partition_with_three_batches(dir.path(), 1_048_588).await;
        let valid = BatchSpec::simple(3, 100, 50, BASE_TIMESTAMP_MS).encode();
        let mut corrupt = BatchSpec::simple(3, 100, 51, BASE_TIMESTAMP_MS).encode();
        let in_value = corrupt.len() - 10;
        corrupt[in_value] ^= 0x01;
        expect_refused(&partition, &model, corrupt.clone(), 2, "flipped byte in a record").await;

        let mut bad_crc = valid.clone();
        bad_crc[17] ^= 0x80;
        expect_refused(&partition, &model, bad_crc, 2, "flipped CRC").await;

        let mut valid_then_corrupt = valid.clone();
        valid_then_corrupt.extend(&corrupt);
        expect_refused(&partition, &model, valid_then_corrupt, 2, "valid batch followed by a corrupt one in one request").await;

        let truncated = valid[..valid.len() - 5].to_vec();
        expect_refused(&partition, &model, truncated, 2, "batch cut short").await;
        check_unchanged_after_refusals(dir.path(), partition, model).await;
    });
}

#[test]
fn append_refuses_a_batch_over_max_message_bytes_as_message_too_large_and_stores_nothing() {
    run(|| async {
        let dir = temp_dir();
        let max_message_bytes = 1_000;
        let (partition, mut model) = partition_with_three_batches(dir.path(), max_message_bytes).await;
        let too_large = BatchSpec::simple(1, 1_000, 60, BASE_TIMESTAMP_MS).encode();
        assert!(too_large.len() > max_message_bytes as usize);
        expect_refused(&partition, &model, too_large.clone(), 10, "batch over max.message.bytes").await;

        let mut small_then_large = BatchSpec::simple(1, 10, 61, BASE_TIMESTAMP_MS).encode();
        small_then_large.extend(&too_large);
        expect_refused(&partition, &model, small_then_large, 10, "small batch followed by a too large one").await;

        // A batch of exactly max.message.bytes is accepted (Kafka refuses only larger ones).
        let header_and_overhead = BatchSpec::simple(1, 0, 62, BASE_TIMESTAMP_MS).encode().len();
        let mut exact = BatchSpec::simple(1, max_message_bytes as usize - header_and_overhead, 62, BASE_TIMESTAMP_MS).encode();
        while exact.len() > max_message_bytes as usize {
            exact = BatchSpec::simple(
                1,
                max_message_bytes as usize - header_and_overhead - (exact.len() - max_message_bytes as usize),
                62,
                BASE_TIMESTAMP_MS,
            )
            .encode();
        }
        assert_eq!(exact.len(), max_message_bytes as usize, "test precondition: batch of exactly the limit");
        let base_offset = model.append(&exact);
        assert_eq!(append_and_wait(&partition, exact, Acks::Synced).await, base_offset);
        check_unchanged_after_refusals(dir.path(), partition, model).await;
    });
}

// ---------------------------------------------------------------------------------------------
// Truncation (KIP-101: a follower truncates its log to the leader's epoch end offset)

/// Appends `count` batches of five records (acks=all) to an empty log; returns its model.
async fn five_record_batches(partition: &Partition, count: u64) -> Model {
    let mut model = Model::default();
    for seed in 0..count {
        let produced = BatchSpec::simple(5, 200, seed, BASE_TIMESTAMP_MS + seed as i64).encode();
        append_checked(partition, &mut model, produced, Acks::Synced).await;
    }
    model
}

/// A partition with `segment_bytes` segments in a new temporary directory, holding `count`
/// batches of five records (see [`five_record_batches`]).
async fn five_record_batch_log(segment_bytes: u64, count: u64) -> (TempDir, Rc<Partition>, Model) {
    let (dir, partition) = open_in_temp_dir(topic_config(segment_bytes), CacheBudget::new(1 << 20)).await;
    let model = five_record_batches(&partition, count).await;
    (dir, partition, model)
}

#[test]
fn truncate_inside_a_batch_removes_that_whole_batch() {
    // Kafka's Log.truncateTo(target): "ends with the greatest offset < target". A log that kept
    // the batch holding `target` would still hold offsets >= target, which the leader may have
    // replaced (KIP-101), and the follower would fetch on from past them.
    run(|| async {
        let (dir, partition, mut model) = five_record_batch_log(1 << 30, 6).await;
        partition.truncate_to(12).await.expect("truncate");
        model.truncate_to(12);
        assert_eq!(model.end_offset(), 10);
        assert_eq!(partition.log_end_offset(), 10, "no offset >= 12 may remain; the batch 10..=14 goes whole");
        must(check_whole_log(&partition, &model));
        let produced = BatchSpec::simple(5, 200, 77, BASE_TIMESTAMP_MS).encode();
        append_checked(&partition, &mut model, produced, Acks::Synced).await;
        must(check_whole_log(&partition, &model));
        reopen_uncached_and_check(dir.path(), partition, topic_config(1 << 30), &model).await;
    });
}

#[test]
fn truncate_to_a_batch_boundary_keeps_everything_before_it() {
    run(|| async {
        let segment_bytes = 4_000;
        let (dir, partition, mut model) = five_record_batch_log(segment_bytes, 20).await;
        for target in [85, 60, 35, 35, 0] {
            partition.truncate_to(target).await.expect("truncate");
            model.truncate_to(target);
            must(check_whole_log(&partition, &model));
        }
        assert_eq!(segment_files(dir.path()).len(), 1, "truncation to 0 leaves one empty segment");
        let model = five_record_batches(&partition, 3).await;
        must(check_whole_log(&partition, &model));
        reopen_uncached_and_check(dir.path(), partition, topic_config(segment_bytes), &model).await;
    });
}

#[test]
fn truncate_to_a_segment_boundary_after_reopen_then_append_keeps_every_batch() {
    // After a reopen the sealed segments come from their stored indexes. Truncating to the base
    // of the active segment makes the previous, sealed one active again; appends to it must
    // continue exactly at its end.
    run(|| async {
        let segment_bytes = 4_000;
        let (dir, partition, mut model) = five_record_batch_log(segment_bytes, 12).await;
        partition.close().await.expect("clean close");
        let segments = segment_files(dir.path());
        assert!(segments.len() >= 3, "test precondition: several segments");
        let (last_base, _) = segments.last().unwrap().clone();
        let previous = &segments[segments.len() - 2].1;
        assert_ne!(file_len(previous) % 4096, 0, "test precondition: the sealed segment ends inside a block");

        let partition = open_partition(dir.path(), topic_config(segment_bytes), CacheBudget::new(1 << 20)).await;
        partition.truncate_to(last_base).await.expect("truncate");
        model.truncate_to(last_base);
        must(check_whole_log(&partition, &model));
        // Small enough to fit in the re-activated segment, so no roll happens first.
        let produced = BatchSpec::simple(1, 10, 555, BASE_TIMESTAMP_MS).encode();
        assert!(file_len(previous) + produced.len() as u64 <= segment_bytes, "test precondition: the append fits");
        let base_offset = model.append(&produced);
        let ticket = partition.append(Bytes::from(produced), Acks::Synced).await.expect("append accepted");
        assert_eq!(ticket.base_offset, base_offset);
        assert_eq!(ticket.wait().await, Ok(()), "append to the re-activated segment is written");
        assert!(!partition.is_poisoned());
        must(check_whole_log(&partition, &model));
        reopen_uncached_and_check(dir.path(), partition, topic_config(segment_bytes), &model).await;
    });
}

#[test]
fn truncate_waits_for_a_group_commit_already_in_flight() {
    // Partition::truncate_to promises to wait for queued writes. A group the flusher has already
    // taken is no longer queued but is still being written; truncating under it must not let
    // that write land after the cut (nor leave the high watermark past the log end).
    run(|| async {
        let (dir, partition, mut model) = five_record_batch_log(1 << 30, 6).await;
        let written_end = model.end_offset();
        // A large write (800 KB) keeps the group in flight for a while.
        let produced = BatchSpec::simple(8, 100_000, 66, BASE_TIMESTAMP_MS).encode();
        model.append(&produced);
        let ticket = partition.append(Bytes::from(produced), Acks::Synced).await.expect("append accepted");
        // Let the flusher take the group and start its write.
        glommio::executor().yield_now().await;
        // The race happened: the flusher had taken the group and its write was under way when the
        // truncation started (the high watermark moves only once it has completed).
        assert!(partition.is_writing() && partition.queued_appends() == 0, "the group was not in flight at the truncation");
        assert_eq!(
            partition.high_watermark(),
            written_end,
            "the 800 KB write completed before the truncation started: the race did not happen"
        );
        partition.truncate_to(15).await.expect("truncate");
        // Truncation waited for the write: its outcome was in when truncate_to returned, and it is a
        // success (the write landed before the cut, then the cut removed it), never a poisoned log.
        let outcome = ticket.wait().now_or_never();
        assert_eq!(outcome, Some(Ok(())), "truncate_to returned before the in-flight append was done");
        assert!(!partition.is_poisoned(), "the truncation racing the write poisoned the partition");
        model.truncate_to(15);
        assert!(
            partition.high_watermark() <= partition.log_end_offset(),
            "high watermark {} past the log end {}",
            partition.high_watermark(),
            partition.log_end_offset()
        );
        must(check_whole_log(&partition, &model));
        reopen_uncached_and_check(dir.path(), partition, topic_config(1 << 30), &model).await;
    });
}

#[test]
fn read_outside_the_log_is_offset_out_of_range() {
    run(|| async {
        let (_dir, partition, model) = five_record_batch_log(1 << 30, 2).await;
        for offset in [-1, 11, 1_000] {
            match partition.read(offset, 1024, Isolation::ReadUncommitted) {
                Err(error @ LogError::OffsetOutOfRange { .. }) => assert_eq!(error.kafka_error_code(), 1),
                other => panic!("read at {offset}: expected OFFSET_OUT_OF_RANGE, got {other:?}"),
            }
        }
        let at_end = partition.read(10, 1024, Isolation::ReadUncommitted).expect("read at the log end");
        assert_eq!(at_end.bytes(), 0, "a read at the high watermark is empty (a long poll waits)");
        must(check_whole_log(&partition, &model));
        partition.close().await.expect("clean close");
    });
}

#[test]
fn truncate_during_a_periodic_flush_deletes_the_truncated_segment() {
    // With log.flush.interval.ms short, the flusher fsyncs acks=1 data on its own, holding the
    // active segment meanwhile. A truncation that lands then must still delete the segments it
    // removes, or they come back at the next open.
    run(|| async {
        let dir = temp_dir();
        let segment_bytes = 2_500;
        let flush_often = PartitionSettings { flush_interval_ms: 1 };
        let partition =
            open_partition_with(dir.path(), topic_config(segment_bytes), flush_often, CacheBudget::new(1 << 20)).await;
        let mut model = Model::default();
        for round in 0..30u64 {
            for index in 0..3 {
                let produced = BatchSpec::simple(2, 400, round * 10 + index, BASE_TIMESTAMP_MS).encode();
                append_checked(&partition, &mut model, produced, Acks::Written).await;
            }
            let (last_base, _) = segment_files(dir.path()).last().unwrap().clone();
            if last_base == 0 {
                continue;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            partition.truncate_to(last_base).await.expect("truncate");
            model.truncate_to(last_base);
            let left: Vec<i64> = segment_files(dir.path()).into_iter().map(|(base, _)| base).collect();
            assert!(
                !left.contains(&last_base),
                "round {round}: truncate_to({last_base}) left its segment file on disk: {left:?}"
            );
            must(check_whole_log(&partition, &model));
        }
        reopen_uncached_and_check(dir.path(), partition, topic_config(segment_bytes), &model).await;
    });
}

#[test]
fn log_append_time_topic_stamps_each_batch_with_the_broker_clock() {
    // message.timestamp.type=LogAppendTime: the broker sets the timestamp-type attribute and
    // maxTimestamp to its clock and recomputes the CRC (which covers both); records keep theirs.
    run(|| async {
        let dir = temp_dir();
        let mut config = topic_config(1 << 30);
        config.message_timestamp_type = fjord_engine::topic_config::TimestampType::LogAppendTime;
        let partition = open_partition(dir.path(), config.clone(), CacheBudget::new(1 << 20)).await;
        let mut model = Model::default();
        for seed in 0..4u64 {
            let produced = BatchSpec::simple(3, 50, seed, 1_000).encode();
            let before_ms = fjord_engine::partition::now_ms();
            let ticket = partition.append(Bytes::from(produced.clone()), Acks::Synced).await.expect("append accepted");
            let append_time_ms = ticket.log_append_time_ms;
            assert!(
                append_time_ms >= before_ms && append_time_ms <= fjord_engine::partition::now_ms(),
                "append time is the broker clock"
            );
            let base_offset = ticket.base_offset;
            assert_eq!(ticket.wait().await, Ok(()));
            let mut expected = stored(&produced, base_offset, LEADER_EPOCH);
            let attributes = i16::from_be_bytes(expected[21..23].try_into().unwrap()) | 0x08;
            expected[21..23].copy_from_slice(&attributes.to_be_bytes());
            expected[35..43].copy_from_slice(&append_time_ms.to_be_bytes());
            let crc = crc32c::crc32c(&expected[21..]);
            expected[17..21].copy_from_slice(&crc.to_be_bytes());
            let batch = ModelBatch::new(base_offset, expected);
            assert_eq!(batch.record_timestamps_ms, vec![append_time_ms; 3], "every record reads as appended then");
            model.batches.push(batch);
        }
        must(check_whole_log(&partition, &model));
        let first = &model.batches[0];
        assert_eq!(partition.offset_for_timestamp(first.max_timestamp_ms).unwrap(), Some((0, first.max_timestamp_ms)));
        check_listoffsets(&partition, &model);
        reopen_uncached_and_check(dir.path(), partition, config, &model).await;
    });
}

#[test]
fn segment_older_than_segment_ms_rolls_on_the_next_append() {
    run(|| async {
        let dir = temp_dir();
        let mut config = topic_config(1 << 30);
        config.segment_ms = 5;
        let partition = open_partition(dir.path(), config.clone(), CacheBudget::new(1 << 20)).await;
        let mut model = Model::default();
        for seed in 0..3u64 {
            let produced = BatchSpec::simple(2, 50, seed, BASE_TIMESTAMP_MS).encode();
            append_checked(&partition, &mut model, produced, Acks::Written).await;
            // Sleeping past segment.ms only makes the segment old enough; nothing is timed.
            glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        }
        let bases: Vec<i64> = segment_files(dir.path()).into_iter().map(|(base, _)| base).collect();
        assert_eq!(bases, vec![0, 2, 4], "each append after segment.ms starts a new segment");
        must(check_whole_log(&partition, &model));
        partition.close().await.expect("clean close");
    });
}

// ---------------------------------------------------------------------------------------------
// read_batches (coordinator replay)

/// Replays the whole log the way a coordinator does (from the log start, `max_bytes` at a time,
/// each read starting at the previous one's `next_offset`) and returns the batches read.
async fn replay_with_read_batches(partition: &Partition, max_bytes: usize) -> Vec<Vec<u8>> {
    let mut batches = Vec::new();
    let mut offset = partition.log_start_offset();
    while offset < partition.high_watermark() {
        let read = partition.read_batches(offset, max_bytes).await.expect("read_batches");
        assert!(!read.batches.is_empty(), "nothing read at {offset} below the high watermark");
        assert!(read.next_offset > offset, "no progress at {offset}");
        batches.extend(read.batches.iter().map(|batch| batch.to_vec()));
        offset = read.next_offset;
    }
    batches
}

#[test]
fn read_batches_replays_every_committed_batch_from_cache_and_from_disk_without_file_handles() {
    run(|| async {
        let dir = temp_dir();
        let segment_bytes = 4_000;
        let batches = (0..40u64)
            .map(|index| BatchSpec::simple(1 + (index % 3) as usize, 80 + (index % 5) as usize * 40, index, BASE_TIMESTAMP_MS));
        let (partition, model) = open_and_append(dir.path(), topic_config(segment_bytes), batches, Acks::Synced).await;
        let expected: Vec<Vec<u8>> = model.batches.iter().map(|batch| batch.bytes.clone()).collect();
        // The tail comes from the cache; small reads still return one whole batch each.
        for max_bytes in [1, 700, 1 << 20] {
            assert_eq!(replay_with_read_batches(&partition, max_bytes).await, expected, "cached, max_bytes {max_bytes}");
        }
        // A read inside a batch returns that batch whole; at the high watermark, nothing.
        let second = &model.batches[1];
        if second.last_offset() > second.base_offset {
            let read = partition.read_batches(second.base_offset + 1, 1).await.expect("read inside a batch");
            assert_eq!(read.batches[0].to_vec(), second.bytes);
            assert_eq!(read.next_offset, second.next_offset());
        }
        let at_end = partition.read_batches(partition.high_watermark(), 1 << 20).await.expect("read at the end");
        assert!(at_end.batches.is_empty());
        assert_eq!(at_end.next_offset, partition.high_watermark());
        assert!(matches!(
            partition.read_batches(partition.log_end_offset() + 1, 1).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        partition.close().await.expect("clean close");
        // Reopened without a cache: every batch comes from the segment files.
        let partition = open_partition(dir.path(), topic_config(segment_bytes), CacheBudget::new(0)).await;
        assert!(segment_files(dir.path()).len() >= 3, "test precondition: several segments");
        for max_bytes in [1, 700, 1 << 20] {
            assert_eq!(replay_with_read_batches(&partition, max_bytes).await, expected, "from disk, max_bytes {max_bytes}");
        }
        partition.close().await.expect("clean close");
    });
}

/// Opens the test partition in `dir` as led in `leader_epoch`.
async fn open_in_epoch(dir: &std::path::Path, leader_epoch: i32) -> Rc<Partition> {
    Partition::open(
        dir.to_path_buf(),
        Rc::from(TOPIC),
        PARTITION,
        TOPIC_ID,
        leader_epoch,
        topic_config(1 << 20),
        settings(),
        CacheBudget::new(1 << 20),
    )
    .await
    .expect("partition opens")
}

/// Appends `count` one-record batches, synced.
async fn append_synced(partition: &Partition, count: u64) {
    for seed in 0..count {
        append_and_wait(partition, BatchSpec::simple(1, 10, seed, 1_700_000_000_000).encode(), Acks::Synced).await;
    }
}

/// The leader epoch history survives restarts in `leader-epoch-checkpoint` (Kafka's format), a
/// new epoch starts at the log end, and OffsetForLeaderEpoch's answer (Kafka `endOffsetFor`)
/// follows truncation at either end of the log.
#[test]
fn leader_epochs_are_checkpointed_and_follow_the_log() {
    run(|| async {
        let dir = temp_dir();
        let partition = open_in_epoch(dir.path(), 3).await;
        let checkpoint = dir.path().join("leader-epoch-checkpoint");
        assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n1\n3 0\n", "a new partition's checkpoint");
        append_synced(&partition, 4).await;
        assert_eq!(partition.end_offset_for_epoch(3), Some((3, 4)));
        partition.close().await.unwrap();

        let partition = open_in_epoch(dir.path(), 5).await;
        assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n2\n3 0\n5 4\n", "epoch 5 starts at the log end");
        append_synced(&partition, 3).await;
        assert_eq!(partition.end_offset_for_epoch(3), Some((3, 4)));
        assert_eq!(partition.end_offset_for_epoch(4), Some((3, 4)), "an unknown epoch ends with the one below it");
        assert_eq!(partition.end_offset_for_epoch(5), Some((5, 7)), "the current epoch ends at the log end");
        assert_eq!(partition.end_offset_for_epoch(6), None);
        assert_eq!(partition.end_offset_for_epoch(-1), None);

        // Truncating into epoch 3 drops epoch 5's start; the current epoch starts again at the cut.
        partition.truncate_to(2).await.unwrap();
        assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n2\n3 0\n5 2\n");
        assert_eq!(partition.end_offset_for_epoch(3), Some((3, 2)));
        append_synced(&partition, 3).await;
        // The log start passing epoch 5's start leaves only epoch 5, starting at the log start.
        partition.delete_records(4).await.unwrap();
        assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n1\n5 4\n");
        assert_eq!(partition.end_offset_for_epoch(3), Some((3, 4)), "older than all known: the log start");
        partition.check_invariants();
        partition.close().await.unwrap();

        // A damaged checkpoint (emptied or torn) and a missing one (a
        // directory from before epochs were kept) say every record is of the current epoch.
        let damages: [Option<&[u8]>; 4] = [Some(b""), Some(b"0\n2\n3 0\n"), Some(b"0\n1\n\xff\xfe 4\n"), None];
        for damaged in damages {
            match damaged {
                Some(bytes) => std::fs::write(&checkpoint, bytes).unwrap(),
                None => std::fs::remove_file(&checkpoint).unwrap(),
            }
            let partition = open_in_epoch(dir.path(), 5).await;
            assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n1\n5 4\n", "{damaged:?}");
            assert_eq!(partition.end_offset_for_epoch(5), Some((5, 5)));
            assert_eq!(partition.end_offset_for_epoch(2), Some((2, 4)));
            partition.close().await.unwrap();
        }
    });
}
