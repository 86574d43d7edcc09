//! Crash and fault tests on the simulated disk (engine/src/sim_disk.rs): a crash keeps only what
//! was synced — file data as of its last fdatasync, names as of their directory's last fsync —
//! and drops or tears the rest, so these tests fail if a sync the durability contract relies on
//! is missing (a SIGKILL keeps the page cache and the device's written data, and could not).
//!
//! Each crash stops the partition without a clean close: its shard's executor ends with the
//! partition leaked, so nothing is flushed on the way out, and only then is the disk "powered
//! off" (`SimDisk::crash`) and the partition reopened.

mod common;

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use common::*;
use fjord_engine::cache::CacheBudget;
use fjord_engine::partition::{Acks, Partition, PartitionSettings};
use fjord_engine::sim_disk::{CrashMode, Fault, Op, SimDisk};
use fjord_engine::topic_config::TopicConfig;

const SEGMENT_BYTES: u64 = 6_000;
/// Larger than everything one test appends.
const UNROLLED_SEGMENT_BYTES: u64 = 64 << 20;
/// Upper bound on waiting for the periodic acks=1 flush.
const FLUSH_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(20);

async fn open_with(dir: &Path, config: TopicConfig, flush_interval_ms: u64) -> Rc<Partition> {
    open_partition_with(dir, config, PartitionSettings { flush_interval_ms }, CacheBudget::new(1 << 20)).await
}

/// A partition directory watched by a simulated disk from its creation.
fn watched_dir() -> (tempfile::TempDir, std::path::PathBuf, Arc<SimDisk>) {
    let root = temp_dir();
    let dir = root.path().join("topic-0");
    let disk = SimDisk::attach(root.path()).expect("simulated disk attaches");
    (root, dir, disk)
}

/// After a crash the log must be a prefix of what was appended that holds at least every
/// acknowledged-as-synced batch, and read back exactly so.
fn check_prefix(partition: &Partition, model: &Model, synced_end: i64) -> Result<(), String> {
    let end = partition.log_end_offset();
    if end < synced_end {
        return Err(format!("log ends at {end} after the crash, but everything below {synced_end} was acknowledged as synced"));
    }
    let mut kept = model.clone();
    kept.truncate_to(end);
    check_whole_log(partition, &kept)
}

/// acks=all (DESIGN.md, README "Durability contract"): an acknowledgement is given only for data
/// a crash cannot drop. acks=1 appends in between stay unsynced (the flush interval is long), so
/// each crash drops or tears real unsynced writes, and the acks=all ones must survive anyway.
/// One segment holds every round (no roll, whose seal would sync the data on its own), so only
/// the flush's own fdatasync can make an acknowledged batch durable.
#[test]
fn acks_all_acknowledgements_survive_crashes_that_drop_or_tear_every_unsynced_write() {
    let (_root, dir, disk) = watched_dir();
    let mut model = Model::default();
    let mut synced_end = 0;
    for round in 0..6u64 {
        let (partition_dir, batches_before) = (dir.clone(), model.batches.len());
        let appended = run(move || async move {
            let partition = open_with(&partition_dir, topic_config(UNROLLED_SEGMENT_BYTES), FLUSH_INTERVAL_MS).await;
            let mut appended = Vec::new();
            for index in 0..12u64 {
                let seed = round * 100 + index;
                let produced = BatchSpec::simple(1 + (seed % 4) as usize, 150, seed, 1_700_000_000_000 + seed as i64).encode();
                let acks = if index % 3 == 2 { Acks::Written } else { Acks::Synced };
                let base_offset = append_and_wait(&partition, produced.clone(), acks).await;
                appended.push((base_offset, produced, acks));
            }
            // One more acks=1 append, acknowledged and unsynced when the power goes.
            let produced = BatchSpec::simple(3, 150, round * 100 + 99, 1_700_000_000_000).encode();
            let base_offset = append_and_wait(&partition, produced.clone(), Acks::Written).await;
            appended.push((base_offset, produced, Acks::Written));
            std::mem::forget(partition); // no clean close
            appended
        });
        assert!(disk.has_unsynced_writes(), "round {round}: the crash must find unsynced writes to drop");
        let seed = round + 1;
        disk.crash(if round % 2 == 0 { CrashMode::DropUnsynced } else { CrashMode::TearUnsynced { seed } }).expect("crash");
        // The model of what was appended this round continues from what survived the last.
        for (base_offset, produced, acks) in appended {
            assert_eq!(model.append(&produced), base_offset, "round {round}: offsets continue from the recovered end");
            if acks == Acks::Synced {
                synced_end = model.end_offset();
            }
        }
        assert!(model.batches.len() > batches_before);
        let (partition_dir, check_model) = (dir.clone(), model.clone());
        let end = run(move || async move {
            let partition = open_with(&partition_dir, topic_config(UNROLLED_SEGMENT_BYTES), FLUSH_INTERVAL_MS).await;
            assert_eq!(segment_files(&partition_dir).len(), 1, "test precondition: no roll");
            must(check_prefix(&partition, &check_model, synced_end));
            let end = partition.log_end_offset();
            std::mem::forget(partition);
            end
        });
        model.truncate_to(end);
        synced_end = end;
    }
    assert!(synced_end > 0);
    disk.detach();
}

/// acks=1 (README "Durability contract"): data older than `log.flush.interval.ms` survives a
/// power loss, because the periodic flush synced it.
#[test]
fn acks_1_data_older_than_the_flush_interval_survives_a_crash() {
    let (_root, dir, disk) = watched_dir();
    let partition_dir = dir.clone();
    let probe = disk.clone();
    let model = run(move || async move {
        let partition = open_with(&partition_dir, topic_config(SEGMENT_BYTES), 50).await;
        let mut model = Model::default();
        for seed in 0..20u64 {
            let produced = BatchSpec::simple(2, 200, seed, 1_700_000_000_000 + seed as i64).encode();
            assert_eq!(append_and_wait(&partition, produced.clone(), Acks::Written).await, model.append(&produced));
        }
        // The flush interval passes: everything written must become synced.
        let deadline = std::time::Instant::now() + FLUSH_WAIT_MAX;
        while probe.has_unsynced_writes() {
            assert!(std::time::Instant::now() < deadline, "acks=1 data still unsynced {FLUSH_WAIT_MAX:?} after it was written");
            fjord_engine::rt::sleep(std::time::Duration::from_millis(20)).await;
        }
        std::mem::forget(partition);
        model
    });
    disk.crash(CrashMode::DropUnsynced).expect("crash");
    run(move || async move {
        let partition = open_with(&dir, topic_config(SEGMENT_BYTES), 50).await;
        must(check_whole_log(&partition, &model));
        std::mem::forget(partition);
    });
    disk.detach();
}

/// A failed write or fsync poisons the partition (DESIGN.md: fsync errors are not retried
/// blindly): the append that hit it fails, and so does every later one, with
/// KAFKA_STORAGE_ERROR, whatever its acks.
#[test]
fn a_failed_write_or_fsync_fails_that_append_and_every_later_one_with_kafka_storage_error() {
    for (op, errno) in [(Op::Sync, libc::EIO), (Op::Write, libc::ENOSPC), (Op::Write, libc::EIO)] {
        let (_root, dir, disk) = watched_dir();
        let probe = disk.clone();
        run(move || async move {
            let partition = open_with(&dir, topic_config(SEGMENT_BYTES), FLUSH_INTERVAL_MS).await;
            for seed in 0..3u64 {
                let produced = BatchSpec::simple(2, 100, seed, 1_700_000_000_000).encode();
                append_and_wait(&partition, produced, Acks::Synced).await;
            }
            probe.inject(Fault { op, name_contains: ".log".into(), errno, skip: 0, count: 1 });
            let produced = BatchSpec::simple(2, 100, 50, 1_700_000_000_000).encode();
            let failed = match partition.append(bytes::Bytes::from(produced), Acks::Synced).await {
                Ok(ticket) => ticket.wait().await.expect_err("the append whose write or fsync failed is not acknowledged"),
                Err(error) => error.kafka_error_code(),
            };
            assert_eq!(failed, 56, "{op:?} {errno}: the failed append's error code");
            assert_eq!(probe.failed(), 1, "the fault was injected once");
            for (seed, acks) in [(51, Acks::Synced), (52, Acks::Written), (53, Acks::Synced), (54, Acks::Written)] {
                let produced = BatchSpec::simple(1, 100, seed, 1_700_000_000_000).encode();
                let error = match partition.append(bytes::Bytes::from(produced), acks).await {
                    Ok(ticket) => ticket.wait().await.expect_err("a poisoned partition acknowledges nothing"),
                    Err(error) => error.kafka_error_code(),
                };
                assert_eq!(error, 56, "{op:?} {errno}, append {seed} after the failure");
            }
            assert_eq!(probe.failed(), 1, "later appends fail without touching the disk");
            std::mem::forget(partition);
        });
        disk.detach();
    }
}

/// Runs `scenario` on a partition prepared by `setup` once per crash point: the disk freezes
/// after n operations of the scenario (every later write, sync or rename fails and changes
/// nothing), the power goes, and `check` sees the reopened partition with what the scenario
/// reported before the freeze. n runs from 0 to the scenario's whole operation count.
fn at_every_crash_point<M, S, C>(
    name: &str,
    config: fn() -> TopicConfig,
    setup: fn(&Path, TopicConfig) -> M,
    scenario: S,
    check: C,
) where
    M: Clone + Send + 'static,
    S: Fn(Rc<Partition>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<i64>>>> + Send + Sync + Copy + 'static,
    C: Fn(&Partition, &M, Option<i64>) -> Result<(), String> + Send + Sync + Copy + 'static,
{
    let mut total = None;
    let mut point = 0usize;
    loop {
        let (_root, dir, disk) = watched_dir();
        let model = setup(&dir, config());
        let before = disk.operations();
        if total.is_some() {
            disk.freeze_after(point);
        }
        let partition_dir = dir.clone();
        let reported = run(move || async move {
            let partition = open_with(&partition_dir, config(), FLUSH_INTERVAL_MS).await;
            let reported = scenario(partition.clone()).await;
            std::mem::forget(partition);
            reported
        });
        let operations = disk.operations() - before;
        disk.crash(CrashMode::DropUnsynced).expect("crash");
        let outcome = run(move || async move {
            let partition = open_with(&dir, config(), FLUSH_INTERVAL_MS).await;
            let outcome = check(&partition, &model, reported);
            std::mem::forget(partition);
            outcome
        });
        disk.detach();
        if let Err(message) = outcome {
            panic!("{name}: crash after {point} of {total:?} operations: {message}");
        }
        match total {
            None => total = Some(operations),
            Some(total) if point >= total => break,
            Some(_) => point += 1,
        }
    }
    assert!(total.is_some_and(|total| total > 2), "{name}: the scenario made {total:?} operations");
}

fn small_segments() -> TopicConfig {
    topic_config(SEGMENT_BYTES)
}

/// Opens the partition in `dir`, runs `write` on it and closes it cleanly (everything synced);
/// returns what `write` returned. Used to write the log a scenario starts from.
fn write_and_close<T, Fut>(dir: &Path, config: TopicConfig, write: impl FnOnce(Rc<Partition>) -> Fut + Send + 'static) -> T
where
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    let dir = dir.to_path_buf();
    run(move || async move {
        let partition = open_with(&dir, config, FLUSH_INTERVAL_MS).await;
        let written = write(partition.clone()).await;
        partition.close().await.expect("clean close");
        written
    })
}

/// A log of several segments, all synced, written before the disk is frozen.
fn synced_log(dir: &Path, config: TopicConfig) -> Model {
    write_and_close(dir, config, |partition| async move {
        let mut model = Model::default();
        for seed in 0..40u64 {
            let produced = BatchSpec::simple(2 + (seed % 3) as usize, 180, seed, 1_700_000_000_000 + seed as i64).encode();
            assert_eq!(append_and_wait(&partition, produced.clone(), Acks::Synced).await, model.append(&produced));
        }
        model
    })
}

/// DeleteRecords / retention's log start offset (KIP-107): once acknowledged it survives a crash
/// at any point; before, the log start is the old or the new one; either way the log above it
/// reads back exactly.
#[test]
fn the_log_start_offset_survives_a_crash_at_every_step_of_delete_records() {
    at_every_crash_point(
        "delete_records",
        small_segments,
        synced_log,
        |partition| {
            Box::pin(async move {
                let target = partition.high_watermark() * 2 / 3;
                partition.delete_records(target).await.ok().map(|(start, _)| start)
            })
        },
        |partition, model, acknowledged| {
            let start = partition.log_start_offset();
            if let Some(acknowledged) = acknowledged {
                if start < acknowledged {
                    return Err(format!("log start {start} after the crash, but {acknowledged} was acknowledged"));
                }
            }
            let mut above = model.clone();
            above.batches.retain(|batch| batch.last_offset() >= start);
            for batch in &above.batches {
                check_read(partition, &above, batch.base_offset.max(start), 1 << 20)?;
            }
            if partition.log_end_offset() != model.end_offset() {
                return Err(format!("log end {} but {} was synced", partition.log_end_offset(), model.end_offset()));
            }
            Ok(())
        },
    );
}

/// The segment roll (with the producer-state snapshot written at it, KIP-98) at every crash
/// point: acknowledged appends survive, and the partition reopens and appends again.
#[test]
fn appends_that_roll_segments_survive_a_crash_at_every_step() {
    at_every_crash_point(
        "roll",
        small_segments,
        synced_log,
        |partition| {
            Box::pin(async move {
                let mut acknowledged = None;
                for seed in 100..106u64 {
                    let produced = BatchSpec::simple(4, 400, seed, 1_700_000_000_000).encode();
                    match partition.append(bytes::Bytes::from(produced), Acks::Synced).await {
                        Ok(ticket) => match ticket.wait().await {
                            Ok(_) => acknowledged = Some(partition.high_watermark()),
                            Err(_) => break,
                        },
                        Err(_) => break,
                    }
                }
                acknowledged
            })
        },
        |partition, model, acknowledged| {
            let end = partition.log_end_offset();
            let needed = acknowledged.unwrap_or(model.end_offset());
            if end < needed {
                return Err(format!("log ends at {end}, but {needed} was acknowledged"));
            }
            for batch in &model.batches {
                check_read(partition, model, batch.base_offset, 1)?;
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Compaction

/// (offset, key, value) of every record appended, in offset order.
type Records = Vec<(i64, Vec<u8>, Vec<u8>)>;

fn compacted() -> TopicConfig {
    let mut config = topic_config(SEGMENT_BYTES);
    config.cleanup_policy = fjord_engine::topic_config::CleanupPolicy::Compact;
    config
}

/// Keyed batches over twenty keys, all synced, in several segments.
fn keyed_log(dir: &Path, config: TopicConfig) -> Records {
    write_and_close(dir, config, |partition| async move {
        let mut records = Vec::new();
        for seed in 0..40u64 {
            let specs: Vec<RecordSpec> = (0..3u64)
                .map(|index| RecordSpec {
                    // Keys 10..19 stop early: their latest records live in segments the
                    // cleaner rewrites, so a rewrite a crash loses loses them.
                    key: Some(format!("key-{}", (seed * 3 + index) % if seed < 20 { 20 } else { 10 }).into_bytes()),
                    value: pattern(seed * 10 + index, 120),
                    timestamp_delta_ms: index as i64,
                })
                .collect();
            let produced = BatchSpec { base_timestamp_ms: 1_700_000_000_000, records: specs.clone() }.encode();
            let base_offset = append_and_wait(&partition, produced, Acks::Synced).await;
            for (index, spec) in specs.into_iter().enumerate() {
                records.push((base_offset + index as i64, spec.key.unwrap_or_default(), spec.value));
            }
        }
        records
    })
}

/// Every record the partition returns, in order.
fn read_records(partition: &Partition) -> Result<Records, String> {
    let mut out = Vec::new();
    let mut offset = partition.log_start_offset();
    while offset < partition.high_watermark() {
        let read =
            partition.read(offset, 1 << 20, fjord_engine::partition::Isolation::ReadUncommitted).map_err(|e| e.to_string())?;
        let (batches, _) = whole_batches(&result_bytes(&read));
        let Some(last) = batches.last() else { return Err(format!("no whole batch at {offset}")) };
        let next = last.last_offset + 1;
        for found in batches {
            let decoded = fjord_engine::batch::decode_records(&bytes::Bytes::from(found.bytes)).map_err(|e| e.to_string())?;
            for record in decoded.records {
                let key = record.key.map(|key| key.to_vec()).unwrap_or_default();
                let value = record.value.map(|value| value.to_vec()).unwrap_or_default();
                out.push((record.offset, key, value));
            }
        }
        offset = next;
    }
    Ok(out)
}

/// Log compaction's swap (the `.cleaned`, `.swap` renames and the removal of the old segments,
/// Kafka's LogCleaner protocol) at every crash point: the reopened log holds records only as
/// they were appended, at their offsets, in order, and the latest record of every key.
#[test]
fn compaction_keeps_every_key_latest_record_whatever_step_a_crash_interrupts() {
    at_every_crash_point(
        "compaction",
        compacted,
        keyed_log,
        |partition| {
            Box::pin(async move {
                let options = fjord_engine::compaction::CompactOptions { force: true, ..Default::default() };
                let report = partition.compact(fjord_engine::partition::now_ms(), &options).await.ok().flatten();
                report.map(|report| report.records_after as i64)
            })
        },
        |partition, appended, reported| {
            let found = read_records(partition)?;
            if reported.is_some() && found.len() >= appended.len() {
                return Err(format!(
                    "the pass completed ({reported:?} records kept) but all {} records are still there",
                    found.len()
                ));
            }
            let by_offset: std::collections::HashMap<i64, (&Vec<u8>, &Vec<u8>)> =
                appended.iter().map(|(offset, key, value)| (*offset, (key, value))).collect();
            let mut last = -1;
            for (offset, key, value) in &found {
                if *offset <= last {
                    return Err(format!("offset {offset} after {last}"));
                }
                last = *offset;
                if by_offset.get(offset) != Some(&(key, value)) {
                    return Err(format!("record at {offset} is not the one appended there"));
                }
            }
            let mut latest: std::collections::HashMap<&Vec<u8>, i64> = std::collections::HashMap::new();
            for (offset, key, _) in appended {
                latest.insert(key, *offset);
            }
            for (key, offset) in latest {
                if !found.iter().any(|(found_offset, _, _)| *found_offset == offset) {
                    return Err(format!("the latest record of {:?} (offset {offset}) is gone", String::from_utf8_lossy(key)));
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Transactions: the aborted-transaction index and the producer-state snapshot written at a roll

/// Sets the producer fields and the transactional bit of a produced batch; recomputes the CRC.
fn transactional(mut batch: Vec<u8>, producer_id: i64, sequence: i32) -> Vec<u8> {
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&0i16.to_be_bytes());
    batch[53..57].copy_from_slice(&sequence.to_be_bytes());
    let attributes = i16::from_be_bytes([batch[21], batch[22]]) | 0x10;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = fjord_engine::batch::compute_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// Producer 1's transaction of two batches is aborted, producer 2's is committed, and more data
/// rolls segments after the markers (each roll writes a producer-state snapshot). Returns the
/// abort marker's offset once it is acknowledged.
async fn two_transactions(partition: Rc<Partition>) -> Option<i64> {
    use fjord_engine::batch::ControlType;
    let mut abort_marker = None;
    let steps: Vec<(i64, i32)> = vec![(1, 0), (2, 0), (1, 3)];
    for (producer_id, sequence) in steps {
        let produced =
            transactional(BatchSpec::simple(3, 400, 500 + sequence as u64, 1_700_000_000_000).encode(), producer_id, sequence);
        let ticket = partition.append(bytes::Bytes::from(produced), Acks::Synced).await.ok()?;
        ticket.wait().await.ok()?;
    }
    for (producer_id, control) in [(1, ControlType::Abort), (2, ControlType::Commit)] {
        let ticket = partition.append_marker(producer_id, 0, 5, control).await.ok()?;
        let offset = ticket.base_offset;
        ticket.wait().await.ok()?;
        if producer_id == 1 {
            abort_marker = Some(offset);
        }
    }
    // Enough after the markers to roll: the snapshot written then covers them, so recovery no
    // longer rebuilds a lost index entry from the marker; only the entry's own sync keeps it.
    for seed in 600..606u64 {
        let produced = BatchSpec::simple(3, 400, seed, 1_700_000_000_000).encode();
        let Ok(ticket) = partition.append(bytes::Bytes::from(produced), Acks::Synced).await else { break };
        if ticket.wait().await.is_err() {
            break;
        }
    }
    abort_marker
}

/// KIP-98's aborted-transaction index and producer state at every crash point of two
/// transactions: an abort marker in the log (acknowledged or not) always has its index entry,
/// an acknowledged one survives, and a transaction whose data survived without its marker is
/// still open, holding the last stable offset below its first batch.
#[test]
fn transaction_markers_and_their_index_survive_a_crash_at_every_step() {
    at_every_crash_point(
        "transactions",
        small_segments,
        synced_log,
        |partition| Box::pin(two_transactions(partition)),
        |partition, model, acknowledged| {
            let end = partition.log_end_offset();
            if let Some(marker) = acknowledged {
                if end <= marker {
                    return Err(format!("the abort marker at {marker} was acknowledged, the log ends at {end}"));
                }
            }
            let aborted = partition.aborted_txns();
            let ongoing = partition.ongoing_txns();
            // What survived of the two transactions, read back from the log.
            let mut batches = Vec::new();
            let mut offset = model.end_offset();
            while offset < partition.high_watermark() {
                let read = partition
                    .read(offset, 1 << 20, fjord_engine::partition::Isolation::ReadUncommitted)
                    .map_err(|error| error.to_string())?;
                let (found, _) = whole_batches(&result_bytes(&read));
                let Some(last) = found.last() else { return Err(format!("no whole batch at {offset}")) };
                offset = last.last_offset + 1;
                batches.extend(found);
            }
            for batch in &batches {
                let producer_id = i64::from_be_bytes(batch.bytes[43..51].try_into().unwrap());
                let attributes = i16::from_be_bytes([batch.bytes[21], batch.bytes[22]]);
                let is_marker = attributes & 0x20 != 0;
                let has_marker = batches.iter().any(|other| {
                    i16::from_be_bytes([other.bytes[21], other.bytes[22]]) & 0x20 != 0
                        && i64::from_be_bytes(other.bytes[43..51].try_into().unwrap()) == producer_id
                });
                if is_marker
                    && producer_id == 1
                    && !aborted.iter().any(|txn| txn.producer_id == 1 && txn.last_offset == batch.base_offset)
                {
                    return Err(format!(
                        "abort marker at {} is in the log but not in the aborted index {aborted:?}",
                        batch.base_offset
                    ));
                }
                let is_transactional = attributes & 0x10 != 0;
                if is_transactional && !is_marker && !has_marker {
                    if !ongoing.iter().any(|(id, _, _)| *id == producer_id) {
                        return Err(format!(
                            "producer {producer_id}'s batch at {} has no marker yet its transaction is not open",
                            batch.base_offset
                        ));
                    }
                    if partition.last_stable_offset() > batch.base_offset {
                        return Err(format!(
                            "LSO {} past the open transaction's batch at {}",
                            partition.last_stable_offset(),
                            batch.base_offset
                        ));
                    }
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Random runs

/// One step of a random run.
#[derive(Debug, Clone)]
enum Step {
    /// A produce of one batch, acknowledged as synced or as written.
    Append { records: usize, value_bytes: usize, synced: bool },
    /// DeleteRecords at this fraction (per mille) of the high watermark.
    DeleteRecords { per_mille: i64 },
    /// A power cut, dropping or tearing what was not synced, then reopen.
    Crash { tear_seed: Option<u64> },
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (1usize..5, 50usize..900, any::<bool>()).prop_map(|(records, value_bytes, synced)| Step::Append { records, value_bytes, synced }),
        1 => (0i64..1000).prop_map(|per_mille| Step::DeleteRecords { per_mille }),
        2 => proptest::option::of(1u64..u64::MAX).prop_map(|tear_seed| Step::Crash { tear_seed }),
    ]
}

/// The log model's promise under power cuts: after every crash the log is a prefix of what was
/// appended (from the durable log start) that holds every batch acknowledged as synced and every
/// acks=1 batch a later synced acknowledgement covered, and reads back exactly; the log start is
/// never below an acknowledged DeleteRecords.
fn run_steps(steps: Vec<Step>) -> Result<(), String> {
    let (_root, dir, disk) = watched_dir();
    let mut model = Model::default();
    let mut synced_end = 0i64;
    let mut start_acknowledged = 0i64;
    let mut pending: Vec<Step> = Vec::new();
    let mut seed = 0u64;
    for step in steps.into_iter().chain([Step::Crash { tear_seed: None }]) {
        let Step::Crash { tear_seed } = step else {
            pending.push(step);
            continue;
        };
        // Run the steps since the last crash on one open partition, then cut the power.
        let (partition_dir, batch_steps) = (dir.clone(), std::mem::take(&mut pending));
        let first_seed = seed;
        seed += batch_steps.len() as u64;
        let outcome = run(move || async move {
            let partition = open_with(&partition_dir, topic_config(SEGMENT_BYTES), FLUSH_INTERVAL_MS).await;
            let mut done: Vec<(Vec<u8>, i64, bool)> = Vec::new();
            let mut starts = Vec::new();
            for (index, step) in batch_steps.into_iter().enumerate() {
                match step {
                    Step::Append { records, value_bytes, synced } => {
                        let produced =
                            BatchSpec::simple(records, value_bytes, first_seed + index as u64, 1_700_000_000_000).encode();
                        let acks = if synced { Acks::Synced } else { Acks::Written };
                        let base_offset = append_and_wait(&partition, produced.clone(), acks).await;
                        done.push((produced, base_offset, synced));
                    }
                    Step::DeleteRecords { per_mille } => {
                        let target = partition.high_watermark() * per_mille / 1000;
                        let (start, _) = partition.delete_records(target).await.expect("delete records");
                        starts.push(start);
                    }
                    Step::Crash { .. } => unreachable!(),
                }
            }
            std::mem::forget(partition);
            (done, starts)
        });
        let (done, starts) = outcome;
        for (produced, base_offset, synced) in done {
            if model.append(&produced) != base_offset {
                return Err(format!("append got {base_offset}, the model says {}", model.end_offset() - 1));
            }
            if synced {
                synced_end = model.end_offset();
            }
        }
        start_acknowledged = starts.into_iter().fold(start_acknowledged, i64::max);
        let mode = match tear_seed {
            Some(seed) => CrashMode::TearUnsynced { seed },
            None => CrashMode::DropUnsynced,
        };
        disk.crash(mode).map_err(|error| error.to_string())?;
        let (partition_dir, check_model) = (dir.clone(), model.clone());
        let (end, start, checked) = run(move || async move {
            let partition = open_with(&partition_dir, topic_config(SEGMENT_BYTES), FLUSH_INTERVAL_MS).await;
            let start = partition.log_start_offset();
            let mut kept = check_model.clone();
            kept.truncate_to(partition.log_end_offset());
            let end = partition.log_end_offset();
            let mut checked = if end < synced_end {
                Err(format!("log ends at {end}, but {synced_end} was acknowledged as synced"))
            } else {
                Ok(())
            };
            for batch in kept.batches.iter().filter(|batch| batch.last_offset() >= start) {
                if checked.is_ok() {
                    checked = check_read(&partition, &kept, batch.base_offset.max(start), 1);
                }
            }
            std::mem::forget(partition);
            (end, start, checked)
        });
        checked?;
        if start < start_acknowledged {
            return Err(format!("log start {start} after the crash, but {start_acknowledged} was acknowledged"));
        }
        model.truncate_to(end);
        if model.end_offset() < end {
            // Everything left lay below an acknowledged log start: the log started over there.
            model.batches.clear();
            model.empty_end_offset = end;
        }
        synced_end = end;
        start_acknowledged = start;
    }
    disk.detach();
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, max_shrink_iters: 50, ..Default::default() })]

    /// Random appends (acks=1 and acks=all), DeleteRecords and power cuts that drop or tear
    /// what was not synced, against the log model (see `run_steps`).
    #[test]
    fn random_runs_with_power_cuts_keep_every_synced_acknowledgement(steps in proptest::collection::vec(step(), 1..40)) {
        if let Err(message) = run_steps(steps) {
            proptest::prop_assert!(false, "{}", message);
        }
    }
}
