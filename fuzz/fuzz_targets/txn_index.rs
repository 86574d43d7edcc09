//! Fuzz target: a partition's aborted-transaction index read back from its `.txnindex` files
//! (`AbortedIndex::load`, engine/src/txn_index.rs), the way a partition reopens it, over real
//! files in a scratch directory.
//!
//! Input: `[log start u16][end offset u16][first segment base u16][second bucket u16]
//! [first file length u16][first file][second file]`: the two files are the `.txnindex` files of
//! bucket 0 and of the second bucket (any bytes: torn entries, unknown versions, offsets that do
//! not nest). Checked against a model of the documented rule: entries are read up to the first
//! invalid one; files of buckets below the first segment or at or past the end go; entries whose
//! marker lies outside `[bucket, end)` are dropped from the file, which is rewritten, and those
//! below the log start are not kept in memory. A second load finds the same and rewrites nothing;
//! reads (`collect`) return only what their bounds ask for; truncation leaves files that load
//! back to the truncated index.
//!
//! Scratch files live under `fuzz/target/scratch/txn_index/<pid>` (parent: FJORD_FUZZ_SCRATCH).
#![no_main]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fjord_engine::limits::ABORTED_TXNS_PER_READ_MAX;
use fjord_engine::txn_index::{list_txn_indexes, txn_index_path, AbortedIndex, AbortedTxn, TXN_INDEX_ENTRY_BYTES};
use libfuzzer_sys::fuzz_target;

mod scratch;
use scratch::scratch_dir;

thread_local! {
    static SCRATCH: PathBuf = scratch_dir("txn_index");
}

/// The entries of one file up to the first invalid one.
fn valid_prefix(bytes: &[u8]) -> Vec<AbortedTxn> {
    bytes.chunks(TXN_INDEX_ENTRY_BYTES).map_while(AbortedTxn::decode).collect()
}

fn encoded(entries: &[AbortedTxn]) -> Vec<u8> {
    entries.iter().flat_map(AbortedTxn::encode).collect()
}

/// Every file of the directory and its bytes.
fn files(dir: &Path) -> BTreeMap<i64, Vec<u8>> {
    list_txn_indexes(dir).into_iter().map(|bucket| (bucket, std::fs::read(txn_index_path(dir, bucket)).unwrap())).collect()
}

fn check(data: &[u8], dir: &Path) {
    if data.len() < 10 {
        return;
    }
    let u16_at = |at: usize| i64::from(u16::from_be_bytes([data[at], data[at + 1]]));
    let (log_start, end, first_base, second_bucket) = (u16_at(0), u16_at(2), u16_at(4), u16_at(6));
    let first_length = (u16_at(8) as usize).min(data.len() - 10);
    let (first, second) = data[10..].split_at(first_length);

    for entry in std::fs::read_dir(dir).expect("scratch directory").flatten() {
        std::fs::remove_file(entry.path()).expect("scratch file removed");
    }
    let mut written = BTreeMap::new();
    written.insert(0, first);
    if second_bucket != 0 {
        written.insert(second_bucket, second);
    }
    for (bucket, bytes) in &written {
        std::fs::write(txn_index_path(dir, *bucket), bytes).expect("txnindex file written");
    }

    // The model: files in bucket order, entries in file order; a later marker offset replaces.
    let mut expected_files = BTreeMap::new();
    let mut expected = BTreeMap::new();
    for (&bucket, bytes) in &written {
        if bucket < first_base || bucket >= end {
            continue;
        }
        let entries = valid_prefix(bytes);
        let kept: Vec<AbortedTxn> =
            entries.iter().copied().filter(|txn| bucket <= txn.last_offset && txn.last_offset < end).collect();
        let complete = bytes.len() % TXN_INDEX_ENTRY_BYTES == 0 && entries.len() == bytes.len() / TXN_INDEX_ENTRY_BYTES;
        if complete && kept.len() == entries.len() {
            expected_files.insert(bucket, bytes.to_vec());
        } else if !kept.is_empty() {
            expected_files.insert(bucket, encoded(&kept));
        }
        for txn in kept.into_iter().filter(|txn| txn.last_offset >= log_start) {
            expected.insert(txn.last_offset, txn);
        }
    }

    let index = AbortedIndex::load(dir, log_start, first_base, end).expect("the index loads");
    assert_eq!(index.all(), expected.values().copied().collect::<Vec<_>>(), "loaded entries");
    assert_eq!(files(dir), expected_files, "files after the load");
    for txn in index.all() {
        assert!(index.contains(txn.last_offset));
    }

    let again = AbortedIndex::load(dir, log_start, first_base, end).expect("the index loads again");
    assert_eq!(again, index, "a second load finds the same");
    assert_eq!(files(dir), expected_files, "a second load rewrites nothing");

    let bounds = [0, log_start, end, first_base, second_bucket, i64::MAX];
    for fetch_offset in bounds {
        for upper_bound in bounds {
            let found = index.collect(fetch_offset, upper_bound);
            assert!(found.len() <= ABORTED_TXNS_PER_READ_MAX);
            assert!(found.iter().all(|txn| txn.last_offset >= fetch_offset && txn.first_offset < upper_bound));
            assert!(found.windows(2).all(|pair| pair[0].last_offset < pair[1].last_offset), "oldest marker first");
        }
    }

    let truncate_at = end / 2;
    let mut truncated = index.clone();
    truncated.truncate_to(dir, truncate_at).expect("the index truncates");
    assert!(truncated.all().iter().all(|txn| txn.last_offset < truncate_at));
    let reloaded = AbortedIndex::load(dir, log_start, first_base, truncate_at).expect("the index reloads");
    assert_eq!(reloaded, truncated, "the files after truncation load back to the truncated index");
}

fuzz_target!(|data: &[u8]| {
    SCRATCH.with(|dir| check(data, dir));
});
