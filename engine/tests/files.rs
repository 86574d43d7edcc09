//! The shard's descriptor budget (engine/src/files.rs): segment files are opened on demand and
//! closed least recently used first, so partitions are bounded by disk, not by RLIMIT_NOFILE.
//!
//! Each test runs more partitions than the budget holds descriptors for, with a batch cache too
//! small to hold anything (every read goes to the files), and checks what the budget promises:
//! the shard never holds more descriptors than its budget plus those in use; a descriptor in use
//! (a file slice on its way to a socket) is never closed under its reader; a partition whose
//! files were closed writes, syncs and reads the same bytes through reopened ones, before and
//! after a restart; a fetch that finds the budget held by descriptors in use gets no data for
//! that partition (not an error) and gets it once they are released.

mod common;

use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use common::*;
use fjord_engine::cache::CacheBudget;
use fjord_engine::files;
use fjord_engine::partition::{Acks, Chunk, Isolation, Partition};
use proptest::prelude::*;

/// The smallest budget a shard accepts; every test opens several times as many files.
const BUDGET: usize = files::SHARD_FILES_MIN;

/// Runs `body` on a fresh executor, handing it a new temporary directory to open the partitions
/// under; the directory is removed once the run is over.
fn run_in_temp_root<T, Fut>(body: impl FnOnce(PathBuf) -> Fut + Send + 'static) -> T
where
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let dir = temp_dir();
    let root = dir.path().to_path_buf();
    run(move || body(root))
}

async fn open_all(root: &Path, count: usize) -> Vec<Rc<Partition>> {
    let mut partitions = Vec::new();
    for index in 0..count {
        // A cache of 0 bytes: every read is a file read.
        partitions.push(open_partition(&root.join(index.to_string()), topic_config(1 << 30), CacheBudget::new(0)).await);
    }
    partitions
}

/// Sets the shard's descriptor budget to [`BUDGET`] and opens `count` partitions under `root`,
/// each with an empty model.
async fn open_all_with_budget(root: &Path, count: usize) -> (Vec<Rc<Partition>>, Vec<Model>) {
    files::set_budget(BUDGET);
    let partitions = open_all(root, count).await;
    (partitions, (0..count).map(|_| Model::default()).collect())
}

async fn close_all(partitions: Vec<Rc<Partition>>) {
    for partition in partitions {
        partition.close().await.expect("clean close");
    }
}

/// Whole-log reads of every partition, checked against its model.
fn check_all(partitions: &[Rc<Partition>], models: &[Model]) {
    for (index, (partition, model)) in partitions.iter().zip(models).enumerate() {
        if let Err(error) = check_whole_log(partition, model) {
            panic!("partition {index}: {error}");
        }
    }
}

fn assert_within_budget(held: usize) {
    let stats = files::stats();
    assert!(stats.open <= BUDGET + held, "{} descriptors open, budget {BUDGET}, {held} held: {stats:?}", stats.open);
}

#[test]
fn partitions_past_the_budget_write_sync_and_read_through_reopened_descriptors() {
    run_in_temp_root(|root| async move {
        let count = BUDGET * 3;
        let (partitions, mut models) = open_all_with_budget(&root, count).await;
        // Rounds over every partition: each append finds its writer closed by the others'.
        for round in 0..3u64 {
            for (index, partition) in partitions.iter().enumerate() {
                let seed = round * 1000 + index as u64;
                let produced = BatchSpec::simple(2, 300, seed, 1_700_000_000_000 + seed as i64).encode();
                let expected = models[index].append(&produced);
                let acks = if index % 2 == 0 { Acks::Synced } else { Acks::Written };
                assert_eq!(append_and_wait(partition, produced, acks).await, expected);
                assert_within_budget(0);
            }
        }
        check_all(&partitions, &models);
        assert_within_budget(0);
        let stats = files::stats();
        assert!(stats.evictions > 0 && stats.opens > count as u64, "the budget closed and reopened files: {stats:?}");
        close_all(partitions).await;
        assert_eq!(files::stats().open, 0, "closed partitions hold no descriptors");

        let partitions = open_all(&root, count).await;
        assert_within_budget(0);
        check_all(&partitions, &models);
        close_all(partitions).await;
    });
}

#[test]
fn eviction_never_closes_a_file_slice_in_flight_and_fetches_wait_for_the_budget() {
    run_in_temp_root(|root| async move {
        let count = BUDGET * 2;
        let (partitions, mut models) = open_all_with_budget(&root, count).await;
        for (index, partition) in partitions.iter().enumerate() {
            let produced = BatchSpec::simple(3, 200, index as u64, 1_700_000_000_000).encode();
            models[index].append(&produced);
            append_and_wait(partition, produced, Acks::Synced).await;
        }
        // Hold one file slice per partition of the first half, as a fetch response on its way
        // to a socket does: that is the whole budget.
        let mut held = Vec::new();
        for partition in &partitions[..BUDGET] {
            let result = partition.read(0, 1 << 20, Isolation::ReadUncommitted).expect("read");
            match result.chunks.as_slice() {
                [Chunk::File(slice)] => held.push(slice.clone()),
                other => panic!("expected one file slice, got {} chunks", other.len()),
            }
        }
        assert_within_budget(0);
        // Every other partition's read now finds no descriptor to close: no data, no error.
        let deferrals_before = files::stats().fetch_deferrals;
        for partition in &partitions[BUDGET..] {
            let result = partition.read(0, 1 << 20, Isolation::ReadUncommitted).expect("a deferred read is not an error");
            assert!(result.chunks.is_empty(), "a read past the budget returned data");
            assert_eq!(result.high_watermark, 3, "three records written");
        }
        assert_eq!(files::stats().fetch_deferrals - deferrals_before, (count - BUDGET) as u64);
        // Writes, syncs and recovery-style lookups may pass the budget (few at a time); the held
        // slices still read their own bytes afterwards.
        for (index, partition) in partitions[BUDGET..].iter().enumerate() {
            let produced = BatchSpec::simple(1, 50, 500 + index as u64, 1_700_000_000_000).encode();
            models[BUDGET + index].append(&produced);
            append_and_wait(partition, produced, Acks::Synced).await;
        }
        for (index, slice) in held.iter().enumerate() {
            let mut bytes = vec![0u8; slice.length];
            slice.file.read_exact_at(&mut bytes, slice.position).expect("a held slice stays readable");
            assert_eq!(bytes, models[index].batches[0].bytes, "partition {index}: a held slice reads its own batch");
        }
        // Released, the budget serves the other partitions again.
        drop(held);
        check_all(&partitions, &models);
        assert_within_budget(0);
        close_all(partitions).await;
    });
}

#[derive(Debug, Clone)]
enum Op {
    Append { partition: usize, records: usize, synced: bool },
    Hold { partition: usize },
    Release { index: usize },
    Read { partition: usize },
    Reopen,
}

fn op(partitions: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..partitions, 1..4usize, any::<bool>()).prop_map(|(partition, records, synced)| Op::Append { partition, records, synced }),
        2 => (0..partitions).prop_map(|partition| Op::Hold { partition }),
        2 => (0..8usize).prop_map(|index| Op::Release { index }),
        2 => (0..partitions).prop_map(|partition| Op::Read { partition }),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Any mix of appends, held slices, reads and restarts over more partitions than the budget:
    /// the budget holds (plus held slices), held slices read their bytes, and every partition's
    /// log equals its model.
    #[test]
    fn the_budget_holds_and_reads_match_the_model(ops in prop::collection::vec(op(BUDGET + 8), 1..60)) {
        run_in_temp_root(|root| async move {
            let count = BUDGET + 8;
            let (mut partitions, mut models) = open_all_with_budget(&root, count).await;
            let mut held: Vec<(usize, fjord_engine::segment::FileSlice)> = Vec::new();
            for (step, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Append { partition, records, synced } => {
                        let produced = BatchSpec::simple(records, 64, step as u64, 1_700_000_000_000).encode();
                        let expected = models[partition].append(&produced);
                        let acks = if synced { Acks::Synced } else { Acks::Written };
                        assert_eq!(append_and_wait(&partitions[partition], produced, acks).await, expected);
                    }
                    Op::Hold { partition } => {
                        let result = partitions[partition].read(0, 1 << 20, Isolation::ReadUncommitted).expect("read");
                        if let [Chunk::File(slice)] = result.chunks.as_slice() {
                            held.push((partition, slice.clone()));
                        }
                    }
                    Op::Release { index } => {
                        if index < held.len() {
                            held.remove(index);
                        }
                    }
                    Op::Read { partition } => {
                        let result = partitions[partition].read(0, 1 << 20, Isolation::ReadUncommitted).expect("read");
                        let bytes = result_bytes(&result);
                        let expected: Vec<u8> = models[partition].batches.iter().flat_map(|batch| batch.bytes.clone()).collect();
                        // Empty when deferred for the budget; otherwise a prefix of whole batches.
                        assert!(expected.starts_with(&bytes), "step {step}: partition {partition} read other bytes");
                    }
                    Op::Reopen => {
                        held.clear();
                        close_all(std::mem::take(&mut partitions)).await;
                        assert_eq!(files::stats().open, 0);
                        partitions = open_all(&root, count).await;
                    }
                }
                let distinct_held: std::collections::BTreeSet<usize> = held.iter().map(|(partition, _)| *partition).collect();
                assert_within_budget(distinct_held.len());
                for (partition, slice) in &held {
                    let mut bytes = vec![0u8; slice.length];
                    slice.file.read_exact_at(&mut bytes, slice.position).expect("held slice readable");
                    let expected: Vec<u8> = models[*partition].batches.iter().flat_map(|batch| batch.bytes.clone()).collect();
                    assert!(expected.starts_with(&bytes), "step {step}: a held slice of partition {partition} changed");
                }
            }
            held.clear();
            check_all(&partitions, &models);
            close_all(partitions).await;
        });
    }
}
