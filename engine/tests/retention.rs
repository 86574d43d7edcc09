//! Retention and DeleteRecords: closed segments removed by retention.ms and retention.bytes with
//! Kafka's rules, the log start offset moving with them (reads below it are out of range, reads
//! from it see exactly the kept batches), an expired active segment rolled and then removed, a
//! compacted topic left alone, and the start offset surviving a restart.

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::*;
use fjord_engine::cache::CacheBudget;
use fjord_engine::error::LogError;
use fjord_engine::log::RemovalCause;
use fjord_engine::partition::{Acks, Isolation, Partition};
use fjord_engine::topic_config::{CleanupPolicy, TopicConfig};
use tempfile::TempDir;

const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;
const SEGMENT_BYTES: u64 = 6_000;

/// A partition in a new temporary directory holding 60 batches, batch `i` stamped BASE + i
/// seconds, rolling about every 6 KB.
async fn filled(config: TopicConfig) -> (TempDir, Rc<Partition>, Model) {
    let dir = temp_dir();
    let batches = (0..60u64).map(|index| BatchSpec::simple(3, 200, index, BASE_TIMESTAMP_MS + index as i64 * 1000));
    let (partition, model) = open_and_append(dir.path(), config, batches, Acks::Synced).await;
    assert!(segment_files(dir.path()).len() >= 5, "test precondition: several segments");
    (dir, partition, model)
}

/// A read at `offset`, below the log start, is OFFSET_OUT_OF_RANGE.
fn check_out_of_range(partition: &Partition, offset: i64) {
    match partition.read(offset, 1 << 20, Isolation::ReadUncommitted) {
        Err(LogError::OffsetOutOfRange { .. }) => {}
        other => panic!("read at {offset}, below the log start offset {}: {other:?}", partition.log_start_offset()),
    }
}

/// A read at the log end is in range and returns nothing.
fn check_empty_at_the_end(partition: &Partition, model: &Model) {
    let at_end = partition.read(model.end_offset(), 1 << 20, Isolation::ReadUncommitted).expect("read at the end");
    assert!(at_end.chunks.is_empty(), "a read at the log end {} returned data", model.end_offset());
}

/// Reads below `start` are out of range; every batch from `start` on reads back exactly.
fn check_readable_from(partition: &Partition, model: &Model, start: i64) {
    assert_eq!(partition.log_start_offset(), start, "log start offset");
    if start > 0 {
        check_out_of_range(partition, start - 1);
    }
    for batch in model.batches.iter().filter(|batch| batch.base_offset >= start) {
        must(check_read(partition, model, batch.base_offset, 1));
    }
}

/// Size of each segment file by base offset, oldest first (the active one last).
fn segment_sizes(dir: &std::path::Path) -> Vec<(i64, u64)> {
    segment_files(dir).into_iter().map(|(base, path)| (base, file_len(&path))).collect()
}

#[test]
fn retention_bytes_removes_the_oldest_segments_while_the_rest_stays_at_least_the_limit() {
    run(|| async {
        let config = TopicConfig { retention_bytes: 20_000, ..topic_config(SEGMENT_BYTES) };
        let (dir, partition, model) = filled(config.clone()).await;
        let before = segment_sizes(dir.path());
        // Kafka's rule: drop the oldest segment while the log without it is still >= the limit.
        // Logical sizes: the active file carries O_DIRECT padding past its end; sealed ones are exact.
        let mut total = partition.size_bytes() as i64;
        let mut expected_kept = before.clone();
        while expected_kept.len() > 1 && total - expected_kept[0].1 as i64 >= config.retention_bytes {
            total -= expected_kept[0].1 as i64;
            expected_kept.remove(0);
        }
        assert!(expected_kept.len() < before.len(), "test precondition: something to remove");

        let reports = partition.enforce_retention(BASE_TIMESTAMP_MS + 60_000).await.expect("retention");
        let removed: usize = reports.iter().map(|(_, report)| report.segments).sum();
        assert_eq!(removed, before.len() - expected_kept.len());
        assert!(reports.iter().all(|(cause, _)| *cause == RemovalCause::Size), "{reports:?}");
        assert_eq!(segment_sizes(dir.path()), expected_kept);
        check_readable_from(&partition, &model, expected_kept[0].0);

        // A second pass removes nothing more; a restart keeps the start offset.
        assert!(partition.enforce_retention(BASE_TIMESTAMP_MS + 60_000).await.expect("retention").is_empty());
        partition.close().await.expect("close");
        let partition = open_partition(dir.path(), config, CacheBudget::new(0)).await;
        check_readable_from(&partition, &model, expected_kept[0].0);
        partition.close().await.expect("close");
    });
}

#[test]
fn retention_ms_removes_segments_whose_newest_record_is_older_and_rolls_an_expired_active_segment() {
    run(|| async {
        let config = TopicConfig { retention_ms: 25_500, ..topic_config(SEGMENT_BYTES) };
        let (dir, partition, model) = filled(config.clone()).await;
        let now = BASE_TIMESTAMP_MS + 60_000;
        // A closed segment goes when its newest batch is older than now - retention.ms.
        let files = segment_files(dir.path());
        let newest_in = |index: usize| -> i64 {
            let end = files.get(index + 1).map_or(i64::MAX, |(base, _)| *base);
            model.batches.iter().filter(|batch| batch.base_offset < end).map(|batch| batch.max_timestamp_ms).max().unwrap()
        };
        let expected_removed = (0..files.len() - 1).take_while(|&index| now - newest_in(index) > config.retention_ms).count();
        assert!(expected_removed > 0 && expected_removed < files.len() - 1, "test precondition: {expected_removed}");

        let reports = partition.enforce_retention(now).await.expect("retention");
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!((reports[0].0, reports[0].1.segments), (RemovalCause::Time, expected_removed));
        check_readable_from(&partition, &model, files[expected_removed].0);

        // Much later every record is expired, the active segment included: it is rolled, then
        // removed, and the log starts (empty) at its end; producing continues there.
        let later = BASE_TIMESTAMP_MS + 3_600_000;
        // The flusher rolls in the background: passes repeat until the rolled segment is gone.
        // One file alone can't tell: right after the first pass removed the closed segments, the
        // not-yet-rolled active segment is the only file; the start offset tells.
        for _ in 0..5_000 {
            partition.enforce_retention(later).await.expect("retention");
            if partition.log_start_offset() == model.end_offset() && segment_files(dir.path()).len() == 1 {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(segment_files(dir.path()).len(), 1, "only the fresh active segment is left");
        assert_eq!(partition.log_start_offset(), model.end_offset());
        check_empty_at_the_end(&partition, &model);
        let produced = BatchSpec::simple(2, 50, 99, later).encode();
        assert_eq!(append_and_wait(&partition, produced, Acks::Synced).await, model.end_offset());
        partition.close().await.expect("close");
    });
}

#[test]
fn a_compacted_topic_keeps_its_segments_whatever_the_retention_settings() {
    run(|| async {
        // Filled while the policy deletes: the filler batches have records without a key, which a
        // compacted topic refuses at produce time.
        let (dir, partition, model) = filled(topic_config(SEGMENT_BYTES)).await;
        let mut config = topic_config(SEGMENT_BYTES);
        config.cleanup_policy = CleanupPolicy::Compact;
        config.retention_ms = 1;
        config.retention_bytes = 1;
        partition.set_config(config);
        let before = segment_files(dir.path()).len();
        assert!(partition.enforce_retention(BASE_TIMESTAMP_MS + 3_600_000).await.expect("retention").is_empty());
        assert_eq!(segment_files(dir.path()).len(), before);
        check_readable_from(&partition, &model, 0);
        partition.close().await.expect("close");
    });
}

#[test]
fn delete_records_moves_the_start_offset_inside_a_segment_and_removes_the_segments_below() {
    run(|| async {
        let config = topic_config(SEGMENT_BYTES);
        let (dir, partition, model) = filled(config.clone()).await;
        let files = segment_files(dir.path());
        let target = files[2].0 + 4; // inside the third segment
        let (start, removed) = partition.delete_records(target).await.expect("delete records");
        assert_eq!(start, target);
        assert!(removed.segments > 0 && removed.bytes > 0, "{removed:?}");
        assert_eq!(segment_files(dir.path())[0].0, files[2].0, "the two segments below are gone");
        assert_eq!(partition.log_start_offset(), target);
        check_out_of_range(&partition, target - 1);
        must(check_read(&partition, &model, target, 1));

        // Never backwards; past the high watermark is out of range; -1 means the high watermark.
        assert_eq!(partition.delete_records(1).await.expect("lower offset is a no-op").0, target);
        assert!(matches!(partition.delete_records(model.end_offset() + 1).await, Err(LogError::OffsetOutOfRange { .. })));
        partition.close().await.expect("close");
        let partition = open_partition(dir.path(), config, CacheBudget::new(0)).await;
        assert_eq!(partition.log_start_offset(), target, "the start offset survives a restart");
        assert_eq!(partition.delete_records(-1).await.expect("to the high watermark").0, model.end_offset());
        check_empty_at_the_end(&partition, &model);
        partition.close().await.expect("close");
    });
}

/// Kafka's `deletableSegments`: retention never removes a segment that holds a record at or
/// above the high watermark (written but not yet acknowledged: removing it and then acknowledging
/// would acknowledge what is gone), however far past its limits the log is.
#[test]
fn retention_keeps_every_segment_at_or_above_the_high_watermark() {
    run(|| async {
        let (dir, partition, _model) = filled(topic_config(SEGMENT_BYTES)).await;
        partition.close().await.expect("close");
        let bases: Vec<i64> = segment_files(dir.path()).into_iter().map(|(base, _)| base).collect();
        let (log, _) = fjord_engine::log::Log::open(dir.path(), BASE_TIMESTAMP_MS).await.expect("reopen the log");
        // Every record expired and no bytes allowed; the high watermark inside the third segment.
        let high_watermark = bases[2] + 1;
        let far_future_ms = BASE_TIMESTAMP_MS + 1_000_000_000;
        let reports = log.apply_retention(far_future_ms, 0, 0, high_watermark).await.expect("retention pass");
        let removed: usize = reports.iter().map(|(_, report)| report.segments).sum();
        assert_eq!(removed, 2, "only the two segments wholly below the high watermark go");
        assert_eq!(log.log_start_offset(), bases[2]);
        let kept: Vec<i64> = segment_files(dir.path()).into_iter().map(|(base, _)| base).collect();
        assert_eq!(kept, bases[2..].to_vec(), "the segment holding the high watermark and all after it stay");
        // With the high watermark at the log end, the same pass removes every closed segment.
        let end = log.end_offset();
        log.apply_retention(far_future_ms, 0, 0, end).await.expect("retention pass");
        assert_eq!(segment_files(dir.path()).len(), 1, "only the active segment stays");
    })
}
