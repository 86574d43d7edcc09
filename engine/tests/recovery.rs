//! Recovery (DESIGN.md, "Recovery is bounded"): on open the last segment's tail is scanned,
//! CRC-checked and cut at the first torn or corrupt batch; sealed segments trust a stored index
//! only if it covers them exactly, otherwise it is rebuilt. Nothing acknowledged is lost, nothing
//! torn is served.
//!
//! Each test writes a log through a real partition, closes it (or copies its directory while it
//! is open, which is what a crash leaves behind), damages the files the way a crash or a bad disk
//! would, reopens, and checks the partition against the model of what must survive: reads at
//! every batch's base, middle and last offset, the whole log, the file cut back, and an append
//! at the cut point that survives another reopen.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use common::*;
use fjord_engine::cache::CacheBudget;
use fjord_engine::partition::{Acks, Partition};
use fjord_engine::segment::Segment;

const ONE_SEGMENT_BYTES: u64 = 1 << 30;
const DMA_BLOCK_BYTES: u64 = 4096;
const SECTOR_BYTES: u64 = 512;
/// Small enough that the multi-segment log rolls several times.
const MULTI_SEGMENT_BYTES: u64 = 12_000;

/// Produces `shapes` (record count, value bytes) one batch per produce, acks=all, then closes.
async fn write_log(dir: &Path, segment_bytes: u64, shapes: &[(usize, usize)], first_seed: u64) -> Model {
    let batches = shapes.iter().zip(first_seed..).map(|(&(record_count, value_bytes), seed)| {
        BatchSpec::simple(record_count, value_bytes, seed, 1_700_000_000_000 + seed as i64 * 1000)
    });
    let (partition, model) = open_and_append(dir, topic_config(segment_bytes), batches, Acks::Synced).await;
    must(check_whole_log(&partition, &model));
    partition.close().await.expect("clean close");
    model
}

/// Twelve batches of about 600 bytes in one segment: 7 KiB, so the last batch ends inside a
/// partly filled 4 KiB block (the case where the recovery point still CRC-checks it).
fn twelve_batches() -> Vec<(usize, usize)> {
    (0..12).map(|index| (3 + index % 4, 150)).collect()
}

/// [`twelve_batches`] written and closed in a new temporary directory.
async fn twelve_batch_log() -> (tempfile::TempDir, Model) {
    let dir = temp_dir();
    let model = write_log(dir.path(), ONE_SEGMENT_BYTES, &twelve_batches(), 1).await;
    (dir, model)
}

fn last_segment(dir: &Path) -> PathBuf {
    segment_files(dir).last().expect("a segment file").1.clone()
}

fn bytes_of_first(model: &Model, count: usize) -> u64 {
    model.batches[..count].iter().map(|batch| batch.bytes.len() as u64).sum()
}

/// Opens the damaged log and checks that it holds exactly `expected`, that the last segment file
/// was cut to `expected_last_segment_bytes`, and that the log takes appends at the cut point
/// that survive another reopen.
async fn reopen_and_check(dir: &Path, segment_bytes: u64, mut expected: Model, expected_last_segment_bytes: Option<u64>) {
    let partition = open_partition(dir, topic_config(segment_bytes), CacheBudget::new(1 << 20)).await;
    must(check_whole_log(&partition, &expected));
    must(check_reads_at_every_batch(&partition, &expected));
    if let Some(bytes) = expected_last_segment_bytes {
        assert_eq!(file_len(&last_segment(dir)), bytes, "recovery cuts the last segment file back to its valid batches");
    }
    let produced = BatchSpec::simple(4, 90, 9_999, 1_760_000_000_000).encode();
    let base_offset = expected.append(&produced);
    assert_eq!(append_and_wait(&partition, produced, Acks::Synced).await, base_offset, "appends continue at the cut point");
    must(check_whole_log(&partition, &expected));
    partition.close().await.expect("clean close");
    let partition = open_partition(dir, topic_config(segment_bytes), CacheBudget::new(1 << 20)).await;
    must(check_whole_log(&partition, &expected));
    must(check_reads_at_every_batch(&partition, &expected));
    partition.close().await.expect("clean close");
}

/// [`reopen_and_check`] of a one-segment log that must hold exactly `expected`, its file cut back
/// to the exact size of its batches.
async fn reopen_and_check_exact(dir: &Path, expected: Model) {
    let logical_bytes = expected.total_bytes() as u64;
    reopen_and_check(dir, ONE_SEGMENT_BYTES, expected, Some(logical_bytes)).await;
}

/// [`reopen_and_check`] of a one-segment log whose last batch was damaged: every batch before it
/// survives, and the file is cut back to where the last batch started.
async fn reopen_and_check_without_the_last_batch(dir: &Path, mut model: Model) {
    let last_start = bytes_of_first(&model, model.batches.len() - 1);
    model.batches.pop();
    reopen_and_check(dir, ONE_SEGMENT_BYTES, model, Some(last_start)).await;
}

fn write_at(path: &Path, position: u64, bytes: &[u8]) {
    OpenOptions::new().write(true).open(path).expect("segment file").write_all_at(bytes, position).expect("damage written");
}

fn set_len(path: &Path, length: u64) {
    OpenOptions::new().write(true).open(path).expect("segment file").set_len(length).expect("file cut");
}

fn read_byte(path: &Path, position: u64) -> u8 {
    let mut byte = [0u8];
    std::fs::File::open(path).expect("segment file").read_exact_at(&mut byte, position).expect("byte read");
    byte[0]
}

#[test]
fn clean_close_then_reopen_keeps_every_batch_in_an_exact_file() {
    run(|| async {
        let (dir, model) = twelve_batch_log().await;
        let logical_bytes = model.total_bytes() as u64;
        assert_ne!(logical_bytes % DMA_BLOCK_BYTES, 0, "test precondition: the log ends inside a block");
        assert!(file_len(&last_segment(dir.path())) >= logical_bytes);
        reopen_and_check_exact(dir.path(), model).await;
    });
}

/// `bytes(model)` written into the last segment file at `position(file, model)`, past the last
/// batch: a reopen cuts them and keeps every batch.
async fn bytes_past_the_end_case(position: impl Fn(&Path, &Model) -> u64, bytes: impl Fn(&Model) -> Vec<u8>) {
    let (dir, model) = twelve_batch_log().await;
    let segment = last_segment(dir.path());
    write_at(&segment, position(&segment, &model), &bytes(&model));
    reopen_and_check_exact(dir.path(), model).await;
}

#[test]
fn garbage_appended_after_the_last_batch_is_cut_on_reopen() {
    run(|| async {
        bytes_past_the_end_case(|segment, _| file_len(segment), |_| pattern(77, 3000)).await;
    });
}

#[test]
fn garbage_written_right_at_the_logical_end_is_cut_on_reopen() {
    run(|| async {
        bytes_past_the_end_case(
            |_, model| model.total_bytes() as u64,
            |_| {
                let mut garbage = pattern(78, 5000);
                garbage[16] = 2; // magic byte of a would-be header: only the length and CRC can refuse it
                garbage
            },
        )
        .await;
    });
}

#[test]
fn stale_valid_batch_with_a_lower_offset_after_the_end_is_cut_on_reopen() {
    // A batch left over from an earlier life of the file: its CRC is fine, but offsets must grow.
    run(|| async {
        bytes_past_the_end_case(|_, model| model.total_bytes() as u64, |model| model.batches[3].bytes.clone()).await;
    });
}

#[test]
fn flipped_byte_inside_the_last_batch_drops_only_that_batch() {
    run(|| async {
        let (dir, model) = twelve_batch_log().await;
        let segment = last_segment(dir.path());
        let last_start = bytes_of_first(&model, model.batches.len() - 1);
        let flip_at = last_start + model.batches.last().unwrap().bytes.len() as u64 - 20; // inside a record value
        write_at(&segment, flip_at, &[read_byte(&segment, flip_at) ^ 0x40]);
        reopen_and_check_without_the_last_batch(dir.path(), model).await;
    });
}

#[test]
fn after_a_crash_a_flipped_byte_in_a_middle_batch_drops_it_and_everything_after() {
    // Without a recovery point (a crash: open removes it, only a clean close writes it) the
    // whole last segment is CRC-checked.
    run(|| async {
        let (dir, mut model) = twelve_batch_log().await;
        std::fs::remove_file(dir.path().join("recovery-point")).expect("clean close wrote a recovery point");
        let segment = last_segment(dir.path());
        let kept = 5;
        let flip_at = bytes_of_first(&model, kept) + 70; // in the first record of batch 5
        write_at(&segment, flip_at, &[read_byte(&segment, flip_at) ^ 0x01]);
        model.batches.truncate(kept);
        reopen_and_check_exact(dir.path(), model).await;
    });
}

/// The last segment file cut inside its last batch, `kept(size of that batch)` bytes into it: a
/// reopen drops only that batch.
async fn file_cut_inside_the_last_batch_case(kept: impl Fn(u64) -> u64) {
    let (dir, model) = twelve_batch_log().await;
    let last_start = bytes_of_first(&model, model.batches.len() - 1);
    let last_bytes = model.batches.last().unwrap().bytes.len() as u64;
    set_len(&last_segment(dir.path()), last_start + kept(last_bytes));
    reopen_and_check_without_the_last_batch(dir.path(), model).await;
}

#[test]
fn file_cut_inside_the_last_batch_drops_only_that_batch() {
    run(|| async {
        file_cut_inside_the_last_batch_case(|last_bytes| last_bytes / 2).await;
    });
}

#[test]
fn file_cut_inside_the_last_batch_header_drops_only_that_batch() {
    run(|| async {
        file_cut_inside_the_last_batch_case(|_| 30).await;
    });
}

/// A torn O_DIRECT write of the last block: the sectors from `zero_from` to the end of the file
/// never reached the disk and read back as zeros. Keeps the batches that end at or before it.
async fn zeroed_tail_case(zero_from: impl Fn(&Model) -> u64, expected_kept: impl Fn(&Model, u64) -> usize) {
    let (dir, mut model) = twelve_batch_log().await;
    let segment = last_segment(dir.path());
    let from = zero_from(&model);
    // To the end of the block at least: a clean close leaves an exact file, a crash leaves the
    // zero padding of the last aligned write.
    let end = file_len(&segment).max(from.div_ceil(DMA_BLOCK_BYTES).max(1) * DMA_BLOCK_BYTES);
    write_at(&segment, from, &vec![0u8; (end - from) as usize]);
    let kept = expected_kept(&model, from);
    model.batches.truncate(kept);
    reopen_and_check_exact(dir.path(), model).await;
}

/// Positions the offset index of a segment starting at byte 0 of `model` and `segment_bytes`
/// long records: the first batch, then the first batch start at least 4 KiB past the last entry.
fn offset_index_positions(model: &Model, segment_bytes: u64) -> Vec<u64> {
    let mut entries = vec![0u64];
    let mut position = 0u64;
    for batch in &model.batches {
        if position >= segment_bytes {
            break;
        }
        if position >= entries.last().unwrap() + DMA_BLOCK_BYTES {
            entries.push(position);
        }
        position += batch.bytes.len() as u64;
    }
    entries
}

fn batches_ending_by(model: &Model, position: u64) -> usize {
    (0..=model.batches.len()).take_while(|&count| bytes_of_first(model, count) <= position).last().unwrap()
}

#[test]
fn zeroed_padding_after_the_last_batch_keeps_every_batch() {
    run(|| async {
        zeroed_tail_case(|model| model.total_bytes() as u64, |model, _| model.batches.len()).await;
    });
}

#[test]
fn zeroed_sectors_inside_the_last_batch_drop_only_that_batch() {
    run(|| async {
        zeroed_tail_case(
            |model| {
                let last_start = bytes_of_first(model, model.batches.len() - 1);
                (last_start / SECTOR_BYTES + 1) * SECTOR_BYTES // the first sector boundary inside it
            },
            |model, from| {
                assert!(from < model.total_bytes() as u64, "test precondition: the last batch spans a sector boundary");
                model.batches.len() - 1
            },
        )
        .await;
    });
}

#[test]
fn zeroed_last_block_drops_every_batch_it_touched() {
    run(|| async {
        zeroed_tail_case(
            |model| (model.total_bytes() as u64 - 1) / DMA_BLOCK_BYTES * DMA_BLOCK_BYTES,
            |model, from| {
                let kept = batches_ending_by(model, from);
                assert!(kept < model.batches.len() - 1, "test precondition: the block holds parts of several batches");
                kept
            },
        )
        .await;
    });
}

#[test]
fn synced_appends_survive_a_crash_of_the_open_partition() {
    // Copying the directory of an open partition gives what a process crash leaves: the active
    // segment with its block padding, no recovery point, sealed segments with their indexes.
    run(|| async {
        let dir = temp_dir();
        let segment_bytes = 5000;
        let partition = open_partition(dir.path(), topic_config(segment_bytes), CacheBudget::new(1 << 20)).await;
        let mut model = Model::default();
        for seed in 0..25u64 {
            let produced = BatchSpec::simple(2 + seed as usize % 5, 120, seed, 1_700_000_000_000 + seed as i64).encode();
            let base_offset = model.append(&produced);
            let acks = if seed % 3 == 0 { Acks::Written } else { Acks::Synced };
            assert_eq!(append_and_wait(&partition, produced, acks).await, base_offset);
        }
        assert!(segment_files(dir.path()).len() >= 3, "test precondition: segments rolled");
        let crashed = crash_copy(dir.path());
        partition.close().await.expect("clean close");
        assert!(!crashed.path().join("recovery-point").exists(), "an open partition has no recovery point");
        reopen_and_check(crashed.path(), segment_bytes, model, None).await;
    });
}

/// A log of several sealed segments of [`MULTI_SEGMENT_BYTES`], each with more than one
/// offset-index entry (4 KiB apart), written and closed in a new temporary directory.
async fn multi_segment_log() -> (tempfile::TempDir, Model) {
    let dir = temp_dir();
    let shapes: Vec<(usize, usize)> = (0..80).map(|index| (2 + index % 6, 110)).collect();
    let model = write_log(dir.path(), MULTI_SEGMENT_BYTES, &shapes, 100).await;
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 4, "test precondition: several segments, got {}", segments.len());
    for (_, path) in &segments[..segments.len() - 1] {
        assert!(index_path(path).exists(), "sealed segment {} has a stored index", path.display());
        assert!(file_len(path) > 2 * DMA_BLOCK_BYTES, "test precondition: several index entries per segment");
    }
    (dir, model)
}

/// ListOffsets just before, in the middle of and at the end of every batch's timestamps.
fn check_timestamp_lookups(partition: &Partition, model: &Model) {
    let targets = model.batches.iter().flat_map(|batch| {
        let timestamps = &batch.record_timestamps_ms;
        [timestamps[0] - 1, timestamps[timestamps.len() / 2], batch.max_timestamp_ms]
    });
    check_timestamp_lookups_at(partition, model, targets);
}

/// Opens the log in `dir` with no cache (lookups go through the time and offset indexes), checks
/// its timestamp lookups against `model`, and closes it.
async fn check_timestamp_lookups_uncached(dir: &Path, segment_bytes: u64, model: &Model) {
    let partition = open_partition(dir, topic_config(segment_bytes), CacheBudget::new(0)).await;
    check_timestamp_lookups(&partition, model);
    partition.close().await.expect("clean close");
}

#[test]
fn deleted_indexes_of_sealed_segments_are_rebuilt_and_lookups_still_work() {
    run(|| async {
        let (dir, model) = multi_segment_log().await;
        for (_, path) in segment_files(dir.path()) {
            let _ = std::fs::remove_file(index_path(&path));
        }
        check_timestamp_lookups_uncached(dir.path(), MULTI_SEGMENT_BYTES, &model).await;
        reopen_and_check(dir.path(), MULTI_SEGMENT_BYTES, model, None).await;
    });
}

/// Batches stored by an older Fjord kept the max timestamp the producer sent (-1 from older
/// clients) and its indexes were built from it. Reopened now, the stored "FJIX" indexes are
/// stale, the time index is rebuilt from the records, and lookups by time and the log's max
/// timestamp find what the records say (Kafka's LogValidator would have stored it so).
#[test]
fn batches_stored_with_a_max_timestamp_of_minus_one_are_indexed_by_their_records() {
    run(|| async {
        let (dir, model) = multi_segment_log().await;
        for (_, path) in segment_files(dir.path()) {
            let mut bytes = std::fs::read(&path).expect("segment readable");
            let mut position = 0usize;
            while position + 61 <= bytes.len() {
                let length = i32::from_be_bytes(bytes[position + 8..position + 12].try_into().unwrap());
                if length <= 0 {
                    break;
                }
                let end = position + 12 + length as usize;
                let batch = &mut bytes[position..end];
                batch[35..43].copy_from_slice(&(-1i64).to_be_bytes());
                let crc = fjord_engine::batch::compute_crc(batch);
                batch[17..21].copy_from_slice(&crc.to_be_bytes());
                position = end;
            }
            std::fs::write(&path, &bytes).expect("segment rewritten");
            let index = index_path(&path);
            if let Ok(mut stored) = std::fs::read(&index) {
                stored[0..4].copy_from_slice(b"FJIX");
                std::fs::write(&index, stored).expect("index rewritten");
            }
        }
        for _ in 0..2 {
            check_timestamp_lookups_uncached(dir.path(), MULTI_SEGMENT_BYTES, &model).await;
        }
    });
}

#[test]
fn stale_index_of_a_differently_shaped_older_segment_is_not_trusted() {
    // The index of an older segment 0 whose batches had other sizes: its entries point into the
    // middle of the current segment's batches. It covers fewer bytes, so it must be rebuilt.
    run(|| async {
        let (dir, model) = multi_segment_log().await;
        let older = temp_dir();
        let older_shapes: Vec<(usize, usize)> = (0..20).map(|_| (1, 977)).collect();
        let older_model = write_log(older.path(), 9_000, &older_shapes, 500).await;
        let older_segment = &segment_files(older.path())[0].1;
        let boundaries: Vec<u64> = (1..model.batches.len()).map(|count| bytes_of_first(&model, count)).collect();
        let older_entries = offset_index_positions(&older_model, file_len(older_segment));
        assert!(
            older_entries.iter().any(|position| !boundaries.contains(position)),
            "test precondition: the older index has an entry ({older_entries:?}) that is not a batch boundary now"
        );
        let target = index_path(&segment_files(dir.path())[0].1);
        std::fs::copy(index_path(older_segment), &target).expect("older index copied over");
        check_timestamp_lookups_uncached(dir.path(), MULTI_SEGMENT_BYTES, &model).await;
        reopen_and_check(dir.path(), MULTI_SEGMENT_BYTES, model, None).await;
    });
}

#[test]
fn stale_index_of_a_shorter_prefix_of_the_same_segment_is_not_trusted() {
    // The index stored when segment 0 held only its first batches (same bytes, so every entry
    // still points at a batch start) misses the later ones, whose timestamp is the log's largest.
    run(|| async {
        let batches: Vec<BatchSpec> = (0..40u64)
            .map(|seed| {
                // Batch 20, in segment 0 but past the shorter prefix, has the largest timestamp.
                let timestamp = if seed == 20 { 1_760_000_000_000 } else { 1_700_000_000_000 + seed as i64 * 1000 };
                BatchSpec::simple(3, 200, seed, timestamp)
            })
            .collect();
        let dir = temp_dir();
        let segment_bytes = 20_000;
        let (partition, model) = open_and_append(dir.path(), topic_config(segment_bytes), batches.clone(), Acks::Synced).await;
        partition.close().await.expect("clean close");
        let segments = segment_files(dir.path());
        assert!(
            segments.len() >= 2 && segments[1].0 > model.batches[20].base_offset,
            "test precondition: batch 20 is in segment 0"
        );

        let older = temp_dir();
        let (partition, _) = open_and_append(older.path(), topic_config(8_000), batches[..16].to_vec(), Acks::Synced).await;
        partition.close().await.expect("clean close");
        let older_segments = segment_files(older.path());
        assert!(
            older_segments.len() >= 2 && older_segments[1].0 <= model.batches[20].base_offset,
            "test precondition: the older segment 0 is a shorter prefix"
        );
        std::fs::copy(index_path(&older_segments[0].1), index_path(&segments[0].1)).expect("older index copied over");

        let partition = open_partition(dir.path(), topic_config(segment_bytes), CacheBudget::new(0)).await;
        check_timestamp_lookups(&partition, &model);
        must(check_reads_at_every_batch(&partition, &model));
        partition.close().await.expect("clean close");
    });
}

#[test]
fn corrupt_batch_written_by_a_client_is_never_stored_even_across_reopen() {
    // The other half of "check the CRC before it is written and after it is read back": what
    // append refused is not on disk after a reopen either.
    run(|| async {
        let (dir, mut model) = twelve_batch_log().await;
        let partition = open_partition(dir.path(), topic_config(ONE_SEGMENT_BYTES), CacheBudget::new(1 << 20)).await;
        let mut corrupt = BatchSpec::simple(2, 50, 4242, 1_700_000_000_000).encode();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(partition.append(Bytes::from(corrupt), Acks::Synced).await.is_err());
        let produced = BatchSpec::simple(2, 50, 4343, 1_700_000_000_000).encode();
        append_checked(&partition, &mut model, produced, Acks::Synced).await;
        partition.close().await.expect("clean close");
        reopen_and_check_exact(dir.path(), model).await;
    });
}

#[test]
fn torn_first_batch_of_the_last_segment_leaves_it_empty_and_appends_continue_at_its_base() {
    run(|| async {
        let (dir, mut model) = multi_segment_log().await;
        let (last_base, last_path) = segment_files(dir.path()).last().unwrap().clone();
        std::fs::remove_file(dir.path().join("recovery-point")).expect("clean close wrote a recovery point");
        set_len(&last_path, 40); // not even a whole header survived
        model.truncate_to(last_base);
        assert_eq!(model.end_offset(), last_base);
        reopen_and_check(dir.path(), MULTI_SEGMENT_BYTES, model, Some(0)).await;
    });
}

/// A partition whose active segment is busy (see [`busy_segment`]), still open.
struct BusySegment {
    dir: tempfile::TempDir,
    partition: Rc<Partition>,
    model: Model,
    /// The active segment's file.
    active: PathBuf,
    /// The size of the data appended to it.
    data_bytes: u64,
}

/// A busy active segment in a new temporary directory: 48 batches of about 64 KB appended one by
/// one with `acks`, more than the 1 MiB after which a segment writes zeros (acks=all) or reserves
/// space (acks=1) ahead of its data.
async fn busy_segment(acks: Acks) -> BusySegment {
    let dir = temp_dir();
    let partition = open_partition(dir.path(), topic_config(ONE_SEGMENT_BYTES), CacheBudget::new(8 << 20)).await;
    let mut model = Model::default();
    for seed in 0..48u64 {
        let produced = BatchSpec::simple(16, 4000, seed, 1_700_000_000_000 + seed as i64).encode();
        append_checked(&partition, &mut model, produced, acks).await;
    }
    let (_, active) = segment_files(dir.path()).pop().expect("a segment");
    let data_bytes: u64 = model.batches.iter().map(|batch| batch.bytes.len() as u64).sum();
    assert!(data_bytes > 2 << 20, "test precondition: more than the 1 MiB a segment needs before it looks ahead");
    BusySegment { dir, partition, model, active, data_bytes }
}

/// What lies past the data reads as zeros; a copy of the open partition's files (what a crash
/// leaves behind) reopens with every batch and nothing more; a clean close cuts the padding.
async fn padding_is_zeros_survives_a_crash_and_is_cut_at_close(busy: BusySegment) {
    let BusySegment { dir, partition, model, active, data_bytes } = busy;
    let file = std::fs::read(&active).unwrap();
    let ahead = &file[data_bytes as usize..];
    assert!(
        ahead.iter().all(|&byte| byte == 0),
        "{} non-zero bytes past the data",
        ahead.iter().filter(|&&byte| byte != 0).count()
    );
    let crashed = crash_copy(dir.path());
    partition.close().await.expect("clean close");
    assert_eq!(file_len(&active), data_bytes, "a clean close cuts what lies past the data");
    reopen_and_check(crashed.path(), ONE_SEGMENT_BYTES, model, None).await;
}

#[test]
fn zeros_written_ahead_of_a_busy_segment_are_padding_after_a_crash_and_cut_at_close() {
    // A busy acks=all segment keeps 4 MiB of zeros written past its data (Segment::fill_ahead),
    // every chunk from one shared buffer of zeros: a crash leaves them in the file, recovery must
    // read them as padding (no acknowledged batch lost, nothing extra served), and a clean close
    // must cut them.
    run(|| async {
        let busy = busy_segment(Acks::Synced).await;
        assert!(file_len(&busy.active) >= busy.data_bytes + (1 << 20), "zeros were written ahead of the data");
        padding_is_zeros_survives_a_crash_and_is_cut_at_close(busy).await;
    });
}

#[test]
fn space_reserved_ahead_of_a_busy_acks1_segment_is_padding_after_a_crash_and_cut_at_close() {
    // A busy acks=1 segment reserves space past its data (Segment::reserve_ahead: fallocate, read
    // as zeros), with the same promises as zeros written ahead.
    run(|| async {
        let busy = busy_segment(Acks::Written).await;
        let reserved = || file_len(&busy.active) >= busy.data_bytes + (4 << 20);
        // The reservation runs in the background: wait for it (bounded).
        for _ in 0..200 {
            if reserved() {
                break;
            }
            fjord_engine::rt::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(reserved(), "space was reserved ahead of the data");
        padding_is_zeros_survives_a_crash_and_is_cut_at_close(busy).await;
    });
}

#[test]
fn an_append_into_zeros_still_being_written_ahead_keeps_its_data() {
    // Segment::fill_ahead writes its chunk from a background task, and an append issued right
    // after it reaches into that chunk: the zeros must never land on the appended data. (On this
    // kernel io_uring hands both writes to its workers in submission order, which hides a missing
    // wait; the test still catches zeros written at the wrong place.)
    run(|| async {
        let dir = temp_dir();
        let segment = Segment::create(dir.path(), 0, 1_700_000_000_000).await.expect("segment");
        let mut model = Model::default();
        for seed in 0..104u64 {
            model.append(&BatchSpec::simple(4, 5000, seed, 1_700_000_000_000 + seed as i64).encode());
        }
        let batches: Vec<Bytes> = model.batches.iter().map(|batch| Bytes::from(batch.bytes.clone())).collect();
        let (first, second) = batches.split_at(100);
        segment.append(first).await.expect("first append");
        assert!(segment.size_bytes() > 1 << 20, "test precondition: enough data for the segment to write ahead");
        segment.fill_ahead();
        segment.append(second).await.expect("append into the chunk being written ahead");
        segment.close().await.expect("clean close");
        reopen_and_check(dir.path(), ONE_SEGMENT_BYTES, model, None).await;
    });
}

#[test]
fn appends_queued_while_zeros_are_written_ahead_are_all_kept() {
    // The zeros ahead are written by a background task while the flusher goes on writing groups:
    // 8 MiB queued at once makes 1 MiB groups, each reaching into the chunk started after the
    // group before it, with acks=all and acks=1 appends mixed; every batch must survive a reopen.
    run(|| async {
        let dir = temp_dir();
        let partition = open_partition(dir.path(), topic_config(ONE_SEGMENT_BYTES), CacheBudget::new(64 << 20)).await;
        let mut model = Model::default();
        let mut tickets = Vec::new();
        for seed in 0..400u64 {
            let produced = BatchSpec::simple(4, 5000, seed, 1_700_000_000_000 + seed as i64).encode();
            let base_offset = model.append(&produced);
            let acks = if seed % 3 == 0 { Acks::Synced } else { Acks::Written };
            let ticket = partition.append(Bytes::from(produced), acks).await.expect("append queued");
            assert_eq!(ticket.base_offset, base_offset);
            tickets.push(ticket);
        }
        for ticket in tickets {
            assert_eq!(ticket.wait().await, Ok(()));
        }
        must(check_whole_log(&partition, &model));
        partition.close().await.expect("clean close");
        reopen_and_check(dir.path(), ONE_SEGMENT_BYTES, model, None).await;
    });
}
