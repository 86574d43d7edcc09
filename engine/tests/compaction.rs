//! Log compaction (Kafka's log cleaner) against a model.
//!
//! The model of one pass that cleans below `end` (the active segment's base, or the first segment
//! younger than min.compaction.lag.ms): a record below `end` stays iff it is the latest record of
//! its key below `end`, except a tombstone that lay below the previous pass's clean point and is
//! older than now − delete.retention.ms; everything at or past `end` stays untouched. Survivors
//! keep their offsets, reads see strictly increasing offsets, a read inside a gap returns the next
//! surviving batch, and a crash at any step of the swap leaves a log that recovery turns into
//! either the old or the new segments (never a lost latest value, never a duplicate).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use common::*;
use fjord_engine::cache::CacheBudget;
use fjord_engine::compaction::{clean_offset, CleanReport, CompactOptions, CrashPoint};
use fjord_engine::error::LogError;
use fjord_engine::partition::{now_ms, Acks, Isolation, Partition};
use fjord_engine::topic_config::{CleanupPolicy, TopicConfig};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use proptest::prelude::*;

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

type Produced = (Option<Vec<u8>>, Option<Vec<u8>>);

fn codec(code: u8) -> Compression {
    match code % 5 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        _ => Compression::Zstd,
    }
}

/// A batch as a producer sends it (kafka-protocol's encoder: one batch, offsets from 0).
fn encode_batch(records: &[Produced], compression: Compression, timestamp_ms: i64) -> Bytes {
    let wire: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(index, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // offset − sequence must be the same for every record of one batch
            sequence: index as i32 - 1,
            timestamp: timestamp_ms + index as i64,
            key: key.clone().map(Bytes::from),
            value: value.clone().map(Bytes::from),
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(&mut out, &wire, &RecordEncodeOptions { version: 2, compression }).expect("encodes");
    out.freeze()
}

/// Produces one batch (acks=1) and returns the records as stored.
async fn produce(partition: &Partition, records: &[Produced], compression: Compression, timestamp_ms: i64) -> Vec<Rec> {
    let ticket =
        partition.append(encode_batch(records, compression, timestamp_ms), Acks::Written).await.expect("append accepted");
    let base = ticket.base_offset;
    ticket.wait().await.expect("append written");
    records
        .iter()
        .enumerate()
        .map(|(index, (key, value))| Rec { offset: base + index as i64, key: key.clone(), value: value.clone() })
        .collect()
}

fn compacted_config(segment_bytes: u64) -> TopicConfig {
    let mut config = topic_config(segment_bytes);
    config.cleanup_policy = CleanupPolicy::Compact;
    config.delete_retention_ms = DAY_MS;
    config
}

fn forced() -> CompactOptions {
    CompactOptions { force: true, ..CompactOptions::default() }
}

/// Decodes whole batches; returns their records and the offset after the last batch.
fn decode(bytes: &[u8]) -> Result<(Vec<Rec>, Option<i64>), String> {
    let (batches, _) = whole_batches(bytes);
    let mut records = Vec::new();
    let mut next = None;
    for batch in batches {
        let mut buffer = Bytes::from(batch.bytes.clone());
        let set = RecordBatchDecoder::decode(&mut buffer)
            .map_err(|error| format!("batch at {} undecodable: {error}", batch.base_offset))?;
        for record in set.records {
            if record.offset < batch.base_offset || record.offset > batch.last_offset {
                return Err(format!(
                    "record offset {} outside its batch {}..={}",
                    record.offset, batch.base_offset, batch.last_offset
                ));
            }
            records.push(Rec {
                offset: record.offset,
                key: record.key.map(|key| key.to_vec()),
                value: record.value.map(|value| value.to_vec()),
            });
        }
        next = Some(batch.last_offset + 1);
    }
    Ok((records, next))
}

/// Every record from the log start to the high watermark, checking offsets strictly increase.
fn read_all(partition: &Partition) -> Result<Vec<Rec>, String> {
    let mut offset = partition.log_start_offset();
    let end = partition.high_watermark();
    let mut out: Vec<Rec> = Vec::new();
    for _ in 0..100_000 {
        if offset >= end {
            break;
        }
        let result =
            partition.read(offset, 1 << 20, Isolation::ReadUncommitted).map_err(|error| format!("read at {offset}: {error}"))?;
        let (records, next) = decode(&result_bytes(&result))?;
        let Some(next) = next else { break };
        for record in records {
            if record.offset < offset {
                continue; // a batch starting before the requested offset: clients skip these
            }
            if out.last().is_some_and(|last| last.offset >= record.offset) {
                return Err(format!(
                    "offset {} after {}: offsets must strictly increase",
                    record.offset,
                    out.last().unwrap().offset
                ));
            }
            out.push(record);
        }
        if next <= offset {
            return Err(format!("read at {offset} made no progress"));
        }
        offset = next;
    }
    Ok(out)
}

/// A consumer fetching from `offset`: the first record at or after it that it is handed. A
/// rebuilt batch keeps its last offset delta, so the batch holding `offset` may have only records
/// before it; the consumer then continues after that batch, as Kafka clients do.
fn next_record_from(partition: &Partition, mut offset: i64) -> Result<Option<i64>, String> {
    for _ in 0..10_000 {
        let result =
            partition.read(offset, 1, Isolation::ReadUncommitted).map_err(|error| format!("read at {offset}: {error}"))?;
        let (records, next) = decode(&result_bytes(&result))?;
        if let Some(record) = records.iter().find(|record| record.offset >= offset) {
            return Ok(Some(record.offset));
        }
        match next {
            Some(next) if next > offset => offset = next,
            _ => return Ok(None),
        }
    }
    Err(format!("no progress reading from {offset}"))
}

/// Every offset of the log, read alone, leads to the next surviving record.
fn check_reads_inside_gaps(partition: &Partition, expected: &[Rec]) -> Result<(), String> {
    for offset in partition.log_start_offset()..partition.high_watermark() {
        let found = next_record_from(partition, offset)?;
        let next = expected.iter().find(|record| record.offset >= offset).map(|record| record.offset);
        if found != next {
            return Err(format!("a read at {offset} leads to {found:?}, the next survivor is {next:?}"));
        }
    }
    Ok(())
}

/// The model of one pass (see the module comment).
fn model_pass(records: &[Rec], end: i64, previous_clean: i64, tombstones_expired: bool) -> Vec<Rec> {
    let mut latest: HashMap<&[u8], i64> = HashMap::new();
    for record in records.iter().filter(|record| record.offset < end) {
        if let Some(key) = &record.key {
            latest.insert(key, record.offset);
        }
    }
    records
        .iter()
        .filter(|record| {
            if record.offset >= end {
                return true;
            }
            let Some(key) = &record.key else { return false };
            let is_latest = latest.get(key.as_slice()) == Some(&record.offset);
            let dropped_tombstone = record.value.is_none() && tombstones_expired && record.offset < previous_clean;
            is_latest && !dropped_tombstone
        })
        .cloned()
        .collect()
}

fn segment_logs(dir: &Path) -> Vec<(i64, PathBuf)> {
    segment_files(dir)
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
        .filter(|name| name.ends_with(suffix))
        .collect();
    found.sort();
    found
}

/// The active segment as bytes on disk (it must come out of a pass untouched).
fn active_snapshot(dir: &Path) -> (i64, Vec<u8>) {
    let (base, path) = segment_logs(dir).pop().expect("an active segment");
    (base, std::fs::read(path).expect("active segment readable"))
}

async fn compact(partition: &Partition, options: &CompactOptions) -> Option<CleanReport> {
    partition.compact(now_ms(), options).await.expect("pass succeeds")
}

// ---------------------------------------------------------------------------------------------
// The model test

#[derive(Debug, Clone)]
struct BatchPlan {
    /// (key index, tombstone)
    records: Vec<(u8, bool)>,
    codec: u8,
}

#[derive(Debug, Clone)]
struct Scenario {
    batches: Vec<BatchPlan>,
    segment_bytes: u64,
    cache_bytes: usize,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let batch = (prop::collection::vec((0u8..6, prop::bool::weighted(0.2)), 1..=5), 0u8..5)
        .prop_map(|(records, codec)| BatchPlan { records, codec });
    (
        prop::collection::vec(batch, 1..=40),
        prop_oneof![Just(300u64), Just(700), Just(2_000)],
        prop_oneof![Just(0usize), Just(1 << 20)],
    )
        .prop_map(|(batches, segment_bytes, cache_bytes)| Scenario { batches, segment_bytes, cache_bytes })
}

async fn check_scenario(scenario: Scenario) -> Result<(), String> {
    let dir = temp_dir();
    let budget = CacheBudget::new(scenario.cache_bytes);
    let mut config = compacted_config(scenario.segment_bytes);
    let partition = open_partition(dir.path(), config.clone(), budget.clone()).await;
    let old_ms = now_ms() - 600_000;
    let mut model: Vec<Rec> = Vec::new();
    for (index, batch) in scenario.batches.iter().enumerate() {
        let records: Vec<Produced> = batch
            .records
            .iter()
            .enumerate()
            .map(|(at, (key, tombstone))| {
                let value = (!tombstone).then(|| format!("value-{index}-{at}").into_bytes());
                (Some(format!("key-{key}").into_bytes()), value)
            })
            .collect();
        model.extend(produce(&partition, &records, codec(batch.codec), old_ms + index as i64).await);
    }
    if read_all(&partition)? != model {
        return Err("the log does not hold what was produced".into());
    }
    let segments_before = segment_logs(dir.path()).len();
    let active = active_snapshot(dir.path());

    // Pass 1: tombstones retained (delete.retention.ms of a day).
    let first = compact(&partition, &forced()).await;
    let end = active.0;
    let expected = match &first {
        None if segments_before == 1 => model.clone(),
        None => return Err(format!("no pass over {segments_before} segments")),
        Some(report) => {
            if report.end_offset != end || !report.completed {
                return Err(format!("pass 1 {report:?}: must end at the active segment {end}"));
            }
            if clean_offset(dir.path()) != Some(end) {
                return Err(format!("checkpoint {:?}, expected {end}", clean_offset(dir.path())));
            }
            model_pass(&model, end, -1, false)
        }
    };
    let found = read_all(&partition)?;
    if found != expected {
        return Err(format!("after pass 1:\n found    {found:?}\n expected {expected:?}"));
    }
    if active_snapshot(dir.path()) != active {
        return Err("pass 1 changed the active segment".into());
    }

    // Pass 2: delete.retention.ms = 0, so tombstones cleaned once go.
    config.delete_retention_ms = 0;
    partition.set_config(config.clone());
    let second = compact(&partition, &forced()).await;
    let expected = match (&first, &second) {
        (Some(_), Some(report)) => {
            if report.end_offset != end {
                return Err(format!("pass 2 {report:?}: must end at {end}"));
            }
            model_pass(&expected, end, end, true)
        }
        (None, None) => expected,
        other => return Err(format!("passes {other:?}")),
    };
    let found = read_all(&partition)?;
    if found != expected {
        return Err(format!("after pass 2:\n found    {found:?}\n expected {expected:?}"));
    }
    if active_snapshot(dir.path()) != active {
        return Err("pass 2 changed the active segment".into());
    }
    if segment_logs(dir.path()).len() > segments_before {
        return Err("compaction added segments".into());
    }

    check_reads_inside_gaps(&partition, &expected)?;

    // Everything survives a restart.
    partition.close().await.map_err(|error| error.to_string())?;
    let partition = open_partition(dir.path(), config, budget).await;
    let found = read_all(&partition)?;
    partition.close().await.map_err(|error| error.to_string())?;
    if found != expected {
        return Err(format!("after reopen:\n found    {found:?}\n expected {expected:?}"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 100, ..ProptestConfig::default() })]

    #[test]
    fn compaction_keeps_the_latest_record_of_each_key_at_its_offset(scenario in scenario()) {
        let outcome = run(move || check_scenario(scenario));
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed scenarios

/// 30 batches over 5 keys, every 4th record a tombstone, codecs in turn; 400-byte segments.
async fn fill(partition: &Partition, timestamp_ms: i64) -> Vec<Rec> {
    let mut model = Vec::new();
    for index in 0..30u32 {
        let records: Vec<Produced> = (0..3u32)
            .map(|at| {
                let n = index * 3 + at;
                let value = (n % 4 != 3).then(|| format!("v{n}").into_bytes());
                (Some(format!("k{}", n % 5).into_bytes()), value)
            })
            .collect();
        model.extend(produce(partition, &records, codec(index as u8), timestamp_ms).await);
    }
    model
}

#[test]
fn crash_at_each_step_of_the_swap_recovers_old_or_new_segments() {
    for point in [CrashPoint::CleanedWritten, CrashPoint::SwapRenamed, CrashPoint::OldDeleted] {
        run(move || async move {
            let config = compacted_config(400);
            let (dir, partition) = open_in_temp_dir(config.clone(), CacheBudget::new(0)).await;
            let original = fill(&partition, now_ms() - 60_000).await;
            let end = active_snapshot(dir.path()).0;
            let options = CompactOptions { force: true, stop_after: Some(point), ..CompactOptions::default() };
            let report = compact(&partition, &options).await.expect("a pass ran");
            assert!(!report.completed, "{point:?}: a stopped pass is not complete");
            assert_eq!(clean_offset(dir.path()), None, "{point:?}: the checkpoint moves only after a complete pass");
            match point {
                CrashPoint::CleanedWritten => assert_eq!(files_ending(dir.path(), ".cleaned").len(), 2, "log and index"),
                CrashPoint::SwapRenamed | CrashPoint::OldDeleted => {
                    assert_eq!(files_ending(dir.path(), ".log.swap").len(), 1, "{point:?}");
                    assert_eq!(files_ending(dir.path(), ".index.swap").len(), 1, "{point:?}");
                }
            }
            // The crash: a copy of the directory while the partition is open (what a killed
            // process leaves: no clean close, no recovery point); the original is closed only
            // after the copy and never opened again.
            let crashed = crash_copy(dir.path());
            assert!(!crashed.path().join("recovery-point").exists(), "{point:?}: an open partition has no recovery point");
            assert_eq!(files_ending(crashed.path(), ".cleaned"), files_ending(dir.path(), ".cleaned"), "{point:?}");
            assert_eq!(files_ending(crashed.path(), ".swap"), files_ending(dir.path(), ".swap"), "{point:?}");
            partition.close().await.expect("close");
            drop(partition);
            let dir = crashed;

            let partition = open_partition(dir.path(), config.clone(), CacheBudget::new(0)).await;
            assert!(
                files_ending(dir.path(), ".cleaned").is_empty() && files_ending(dir.path(), ".swap").is_empty(),
                "{point:?}: recovery leaves no temporary files"
            );
            let recovered = read_all(&partition).unwrap_or_else(|error| panic!("{point:?}: {error}"));
            let fully_compacted = model_pass(&original, end, -1, false);
            // Nothing invented or duplicated: the recovered log is the original minus some records.
            let mut originals = original.iter();
            for record in &recovered {
                assert!(
                    originals.any(|candidate| candidate == record),
                    "{point:?}: {record:?} is not an original record (or out of order)"
                );
            }
            // No latest value lost: everything a full pass keeps is there.
            for record in &fully_compacted {
                assert!(recovered.contains(record), "{point:?}: lost {record:?}");
            }
            match point {
                CrashPoint::CleanedWritten => assert_eq!(recovered, original, "not committed: the old segments stay"),
                _ => assert!(recovered.len() < original.len(), "{point:?}: committed, so recovery completes the swap"),
            }
            // And the next pass finishes the job.
            compact(&partition, &forced()).await.expect("a pass ran");
            assert_eq!(read_all(&partition).unwrap(), fully_compacted, "{point:?}");
            partition.close().await.expect("close");
        });
    }
}

/// The shard's cleaner at shutdown: a pass whose stop signal rises stops at the next batch, moves
/// no checkpoint and leaves a log holding every latest value; the next pass finishes the job.
/// The stop rises at the `stop_at`-th poll; the last case never stops the pass.
#[test]
fn a_pass_stopped_between_batches_keeps_every_latest_value_and_the_next_pass_completes() {
    for stop_at in [1u32, 2, 3, 5, 8, 13, u32::MAX] {
        run(move || async move {
            let (dir, partition) = open_in_temp_dir(compacted_config(400), CacheBudget::new(0)).await;
            let original = fill(&partition, now_ms() - 60_000).await;
            let end = active_snapshot(dir.path()).0;
            let polls = std::cell::Cell::new(0u32);
            let stop = || {
                polls.set(polls.get() + 1);
                polls.get() >= stop_at
            };
            let report = partition.compact_until(now_ms(), &forced(), &stop).await.expect("pass runs");
            let fully_compacted = model_pass(&original, end, -1, false);
            if stop_at == u32::MAX {
                assert!(report.expect("a pass ran").completed, "a pass never stopped completes");
                assert!(polls.get() > 13, "the pass polls its stop signal between batches ({} polls)", polls.get());
                assert_eq!(read_all(&partition).unwrap(), fully_compacted);
            } else {
                assert_eq!(polls.get(), stop_at, "the pass ends at the first poll that says stop");
                assert!(report.is_none_or(|report| !report.completed), "stop at poll {stop_at}: the pass is not complete");
                assert_eq!(clean_offset(dir.path()), None, "stop at poll {stop_at}: the checkpoint did not move");
                assert!(files_ending(dir.path(), ".cleaned").is_empty(), "stop at poll {stop_at}: no temporary files left");
                let kept = read_all(&partition).unwrap();
                let mut originals = original.iter();
                for record in &kept {
                    assert!(originals.any(|candidate| candidate == record), "stop at poll {stop_at}: {record:?} invented");
                }
                for record in &fully_compacted {
                    assert!(kept.contains(record), "stop at poll {stop_at}: lost {record:?}");
                }
                compact(&partition, &forced()).await.expect("a pass ran");
                assert_eq!(read_all(&partition).unwrap(), fully_compacted, "stop at poll {stop_at}: the next pass completes");
            }
            partition.close().await.expect("close");
        });
    }
}

#[test]
fn reading_inside_a_gap_returns_the_next_surviving_batch_even_across_emptied_segments() {
    run(|| async {
        let (dir, partition) = open_in_temp_dir(compacted_config(200), CacheBudget::new(1 << 20)).await;
        let ts = now_ms() - 60_000;
        let mut model = Vec::new();
        for index in 0..12 {
            let value = format!("a{index}").into_bytes();
            model.extend(produce(&partition, &[(Some(b"a".to_vec()), Some(value))], Compression::None, ts).await);
        }
        model.extend(produce(&partition, &[(Some(b"b".to_vec()), Some(b"b".to_vec()))], Compression::None, ts).await);
        let segments_before = segment_logs(dir.path()).len();
        assert!(segments_before >= 4, "the test needs several segments, got {segments_before}");
        let report = compact(&partition, &forced()).await.expect("a pass ran");
        let expected = model_pass(&model, report.end_offset, -1, false);
        assert_eq!(read_all(&partition).unwrap(), expected);
        must(check_reads_inside_gaps(&partition, &expected));
        // Groups are sized by the segments' sizes before cleaning (Kafka's groupSegmentsBySize),
        // so the small cleaned segments merge on the next pass.
        compact(&partition, &forced()).await.expect("a pass ran");
        assert!(segment_logs(dir.path()).len() < segments_before / 2, "cleaned segments are grouped");
        assert_eq!(read_all(&partition).unwrap(), expected);
        must(check_reads_inside_gaps(&partition, &expected));
        partition.close().await.unwrap();
        let partition = open_partition(dir.path(), compacted_config(200), CacheBudget::new(0)).await;
        assert_eq!(read_all(&partition).unwrap(), expected);
        must(check_reads_inside_gaps(&partition, &expected));
        partition.close().await.unwrap();
    });
}

#[test]
fn min_compaction_lag_keeps_young_segments_out_of_the_pass() {
    run(|| async {
        let mut config = compacted_config(400);
        config.min_compaction_lag_ms = 3_600_000;
        let (dir, partition) = open_in_temp_dir(config, CacheBudget::new(0)).await;
        let mut model = fill(&partition, now_ms() - 2 * 3_600_000).await;
        let young = fill(&partition, now_ms()).await;
        let first_young = young[0].offset;
        model.extend(young);
        let expected_end =
            segment_logs(dir.path()).iter().map(|(base, _)| *base).filter(|base| *base <= first_young).max().unwrap();
        let report = compact(&partition, &forced()).await.expect("a pass ran");
        assert_eq!(report.end_offset, expected_end, "the pass ends before the first segment holding a young batch");
        assert!(expected_end > 0 && expected_end < active_snapshot(dir.path()).0);
        let found = read_all(&partition).unwrap();
        assert_eq!(found, model_pass(&model, expected_end, -1, false));
        let untouched: Vec<&Rec> = model.iter().filter(|record| record.offset >= expected_end).collect();
        assert_eq!(found.iter().filter(|record| record.offset >= expected_end).collect::<Vec<_>>(), untouched);
        partition.close().await.unwrap();
    });
}

/// Unique keys: nothing is removed, so the clean part stays as large as it was.
async fn fill_unique(partition: &Partition, from: u32, batches: u32, timestamp_ms: i64) {
    for index in from..from + batches {
        let records: Vec<Produced> =
            (0..4).map(|at| (Some(format!("u{index}-{at}").into_bytes()), Some(vec![b'x'; 40]))).collect();
        produce(partition, &records, Compression::None, timestamp_ms).await;
    }
}

#[test]
fn dirty_ratio_and_max_compaction_lag_decide_when_a_log_is_cleaned() {
    run(|| async {
        let mut config = compacted_config(1_000);
        config.min_cleanable_dirty_ratio = 0.5;
        let (dir, partition) = open_in_temp_dir(config.clone(), CacheBudget::new(0)).await;
        let old = now_ms() - 600_000;
        fill_unique(&partition, 0, 40, old).await;
        let first = compact(&partition, &CompactOptions::default()).await.expect("everything dirty: ratio 1 > 0.5");
        assert_eq!(first.dirty_ratio, 1.0);
        assert_eq!(first.records_before, first.records_after, "unique keys: nothing to remove");
        assert_eq!(clean_offset(dir.path()), Some(first.end_offset));
        assert!(compact(&partition, &CompactOptions::default()).await.is_none(), "nothing dirty");

        // A little more (one or two segments against about eight clean ones): below the ratio.
        fill_unique(&partition, 40, 10, old).await;
        assert!(compact(&partition, &CompactOptions::default()).await.is_none(), "dirty ratio below 0.5");

        // The same dirty part, older than max.compaction.lag.ms: cleaned anyway.
        config.max_compaction_lag_ms = 60_000;
        partition.set_config(config.clone());
        let overdue = compact(&partition, &CompactOptions::default()).await.expect("max.compaction.lag.ms forces a pass");
        assert!(overdue.dirty_ratio < 0.5, "{overdue:?}");
        assert_eq!(clean_offset(dir.path()), Some(overdue.end_offset));

        // Enough new data to cross the ratio again (max lag off).
        config.max_compaction_lag_ms = i64::MAX;
        partition.set_config(config.clone());
        fill_unique(&partition, 50, 80, now_ms()).await;
        let third = compact(&partition, &CompactOptions::default()).await.expect("dirty ratio above 0.5");
        assert!(third.dirty_ratio > 0.5, "{third:?}");

        // The checkpoint survives a restart.
        partition.close().await.unwrap();
        let partition = open_partition(dir.path(), config, CacheBudget::new(0)).await;
        assert_eq!(clean_offset(dir.path()), Some(third.end_offset));
        assert!(compact(&partition, &CompactOptions::default()).await.is_none(), "clean after restart");
        partition.close().await.unwrap();
    });
}

#[test]
fn an_expired_tombstone_triggers_a_pass_and_goes_only_once_cleaned_before() {
    run(|| async {
        let mut config = compacted_config(300);
        let (_dir, partition) = open_in_temp_dir(config.clone(), CacheBudget::new(0)).await;
        let old = now_ms() - 600_000;
        let mut model = Vec::new();
        for index in 0..10 {
            model.extend(
                produce(&partition, &[(Some(format!("k{index}").into_bytes()), Some(vec![b'v'; 50]))], Compression::None, old)
                    .await,
            );
        }
        model.extend(produce(&partition, &[(Some(b"k0".to_vec()), None)], Compression::None, old).await);
        for index in 10..16 {
            model.extend(
                produce(&partition, &[(Some(format!("k{index}").into_bytes()), Some(vec![b'v'; 50]))], Compression::None, old)
                    .await,
            );
        }
        config.delete_retention_ms = 0;
        partition.set_config(config);
        let first = compact(&partition, &CompactOptions::default()).await.expect("dirty");
        assert_eq!(first.tombstones_removed, 0, "the tombstone was not cleaned before");
        let after_first = read_all(&partition).unwrap();
        assert!(after_first.iter().any(|record| record.key.as_deref() == Some(b"k0") && record.value.is_none()));
        assert!(
            !after_first.iter().any(|record| record.key.as_deref() == Some(b"k0") && record.value.is_some()),
            "the tombstone removed the older value"
        );
        // Nothing dirty now, but the kept tombstone has expired: a pass runs and drops it.
        let second = compact(&partition, &CompactOptions::default()).await.expect("an expired tombstone is reason enough");
        assert_eq!(second.tombstones_removed, 1);
        let after_second = read_all(&partition).unwrap();
        assert!(!after_second.iter().any(|record| record.key.as_deref() == Some(b"k0")));
        assert!(compact(&partition, &CompactOptions::default()).await.is_none(), "no tombstone left to expire");
        partition.close().await.unwrap();
    });
}

#[test]
fn compacted_topics_refuse_records_without_a_key_with_invalid_record() {
    run(|| async {
        for (policy, refused) in
            [(CleanupPolicy::Compact, true), (CleanupPolicy::CompactDelete, true), (CleanupPolicy::Delete, false)]
        {
            let mut config = topic_config(1 << 20);
            config.cleanup_policy = policy;
            let (_dir, partition) = open_in_temp_dir(config, CacheBudget::new(0)).await;
            for compression in [Compression::None, Compression::Zstd] {
                let batch = encode_batch(
                    &[(Some(b"k".to_vec()), Some(b"v".to_vec())), (None, Some(b"v".to_vec()))],
                    compression,
                    now_ms(),
                );
                match partition.append(batch, Acks::Written).await {
                    Err(error @ LogError::Batch(_)) if refused => assert_eq!(error.kafka_error_code(), 87, "INVALID_RECORD"),
                    Ok(ticket) if !refused => ticket.wait().await.expect("written"),
                    Err(error) => panic!("{policy:?}: {error}"),
                    Ok(_) => panic!("{policy:?}: a record without a key was accepted"),
                }
            }
            partition.close().await.unwrap();
        }
    });
}

#[test]
fn every_codec_is_rewritten_with_its_own_codec() {
    run(|| async {
        for code in 0..5u8 {
            let (_dir, partition) = open_in_temp_dir(compacted_config(300), CacheBudget::new(0)).await;
            let old = now_ms() - 60_000;
            let records: Vec<Produced> =
                (0..6).map(|at| (Some(format!("k{}", at % 3).into_bytes()), Some(format!("v{at}").into_bytes()))).collect();
            let mut model = produce(&partition, &records, codec(code), old).await;
            for index in 0..6 {
                model.extend(
                    produce(
                        &partition,
                        &[(Some(format!("filler{index}").into_bytes()), Some(vec![b'f'; 80]))],
                        Compression::None,
                        old,
                    )
                    .await,
                );
            }
            let report = compact(&partition, &forced()).await.expect("a pass ran");
            assert_eq!(read_all(&partition).unwrap(), model_pass(&model, report.end_offset, -1, false));
            let result = partition.read(0, 1, Isolation::ReadUncommitted).unwrap();
            let bytes = result_bytes(&result);
            assert_eq!(i16::from_be_bytes([bytes[21], bytes[22]]) & 7, code as i16, "codec kept");
            assert_eq!(i32::from_be_bytes(bytes[23..27].try_into().unwrap()), 5, "last offset delta kept");
            assert_eq!(record_count(&bytes), 3, "the three latest records");
            partition.close().await.unwrap();
        }
    });
}
