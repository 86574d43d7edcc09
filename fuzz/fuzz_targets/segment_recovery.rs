//! Fuzz target: segment recovery as the broker runs it, `Segment::open` over a real file.
//!
//! The input is the whole content of a segment file, as a crash may leave it: whole batches, a
//! torn or corrupt tail, zero padding, garbage. It is written to a scratch directory on a real
//! disk (segments use O_DIRECT, which tmpfs refuses) and opened on one glommio executor kept for
//! the whole run, the way `Log::open` opens its segments:
//!
//! 1. as a sealed segment without a stored index (headers walked, CRCs not checked);
//! 2. as the last segment (every batch CRC-checked, the file cut at the first bad one);
//! 3. as the last segment again: a second recovery finds nothing more to cut;
//! 4. sealed (index stored), then as a sealed segment that trusts its stored index.
//!
//! Recovery's invariants are checked after each open: the kept size is a batch boundary and the
//! file's size on disk; every kept batch of the last segment validates (header, length, CRC);
//! base offsets increase; a batch recovery would keep is never cut; reopening finds the same.
//! The segment's base offset is the first batch's base offset (as `Log` names its files), or 0.
//!
//! Scratch files live under `fuzz/target/scratch/segment_recovery/<pid>` (override the parent
//! with FJORD_FUZZ_SCRATCH; it must not be tmpfs).
#![no_main]

use std::path::{Path, PathBuf};

use fjord_engine::batch::{self, BatchHeader};
use fjord_engine::limits::{BATCH_BYTES_MAX, BATCH_HEADER_BYTES};
use fjord_engine::segment::{self, RecoveryReport, Segment};
use libfuzzer_sys::fuzz_target;

mod scratch;
use scratch::scratch_dir;

thread_local! {
    /// One executor for the whole run: starting one per input would dominate the run time.
    static EXECUTOR: glommio::LocalExecutor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("glommio executor starts (is RLIMIT_MEMLOCK at least 1 MiB?)");
    static SCRATCH: PathBuf = scratch_dir("segment_recovery");
}

/// What an open segment says about itself, for comparing two opens.
#[derive(Debug, PartialEq, Eq)]
struct State {
    size_bytes: u64,
    next_offset: i64,
    max_timestamp_ms: i64,
}

fn state(segment: &Segment) -> State {
    State { size_bytes: segment.size_bytes(), next_offset: segment.next_offset(), max_timestamp_ms: segment.max_timestamp_ms() }
}

/// Walks the kept bytes batch by batch; returns the headers. Panics unless the walk ends exactly
/// at the end of `kept` with every header plausible and base offsets increasing (and, for
/// `verified`, every batch valid).
fn walk_kept(kept: &[u8], verified: bool) -> Vec<BatchHeader> {
    let mut headers: Vec<BatchHeader> = Vec::new();
    let mut position = 0usize;
    while position < kept.len() {
        let header = BatchHeader::parse(&kept[position..]).expect("a kept batch has a plausible header");
        assert!(header.size_bytes <= BATCH_BYTES_MAX);
        assert!(position + header.size_bytes <= kept.len(), "the kept size cuts a batch");
        if verified {
            batch::validate_stored(&kept[position..position + header.size_bytes]).expect("a kept batch validates");
        }
        if let Some(previous) = headers.last() {
            assert!(header.base_offset >= previous.next_offset(), "kept base offsets go backwards");
        }
        headers.push(header);
        position += header.size_bytes;
    }
    headers
}

/// Whether recovery could have kept the batch at the start of `rest` after `previous`, in a
/// segment starting at `segment_base` (its offsets must fit the segment's u32 relative offsets).
fn keepable(rest: &[u8], previous: Option<&BatchHeader>, verified: bool, segment_base: i64) -> bool {
    let Ok(header) = BatchHeader::parse(rest) else { return false };
    let relative_end = header.last_offset().checked_sub(segment_base);
    header.base_offset >= segment_base
        && relative_end.is_some_and(|end| end < i64::from(u32::MAX))
        && header.size_bytes <= BATCH_BYTES_MAX
        && header.size_bytes <= rest.len()
        && previous.is_none_or(|previous| header.base_offset >= previous.next_offset())
        && (!verified || batch::validate_stored(&rest[..header.size_bytes]).is_ok())
}

fn check_recovery(data: &[u8], dir: &Path, base_offset: i64, report: &RecoveryReport, segment: &Segment, verified: bool) {
    assert_eq!(report.valid_bytes + report.truncated_bytes, data.len() as u64);
    assert_eq!(segment.size_bytes(), report.valid_bytes);
    let on_disk = std::fs::metadata(dir.join(segment::file_name(base_offset, segment::LOG_SUFFIX))).expect("segment file").len();
    assert_eq!(on_disk, report.valid_bytes, "the file is cut at the kept size");
    let kept = &data[..report.valid_bytes as usize];
    let headers = walk_kept(kept, verified);
    assert_eq!(headers.len(), report.batches);
    assert_eq!(segment.next_offset(), headers.last().map_or(base_offset, BatchHeader::next_offset));
    // Recovery cuts at the first batch it cannot keep, never at one it could.
    let rest = &data[kept.len()..];
    if rest.len() >= BATCH_HEADER_BYTES {
        assert!(!keepable(rest, headers.last(), verified, base_offset), "recovery cut a batch it could keep");
    }
}

async fn recover(data: &[u8], dir: &Path) {
    let base_offset = data.get(..8).map_or(0, |bytes| i64::from_be_bytes(bytes.try_into().unwrap()).max(0));
    let log_path = dir.join(segment::file_name(base_offset, segment::LOG_SUFFIX));
    let index_path = dir.join(segment::file_name(base_offset, segment::INDEX_SUFFIX));
    let reset = || {
        // A fresh inode each time: nothing of the previous input's file survives.
        for entry in std::fs::read_dir(dir).expect("scratch directory").flatten() {
            std::fs::remove_file(entry.path()).expect("scratch file removed");
        }
        std::fs::write(&log_path, data).expect("segment file written");
    };

    // 1. A sealed segment whose index is missing: headers walked, CRCs not checked.
    reset();
    let (segment, unverified) = Segment::open(dir, base_offset, false, 0).await.expect("a sealed segment opens");
    check_recovery(data, dir, base_offset, &unverified, &segment, false);
    drop(segment);

    // 2. The last segment: every batch verified, the file cut after the last valid one.
    reset();
    let (segment, report) = Segment::open(dir, base_offset, true, 0).await.expect("the last segment opens");
    check_recovery(data, dir, base_offset, &report, &segment, true);
    assert!(report.valid_bytes <= unverified.valid_bytes, "a CRC check kept more than a header walk");
    let recovered = state(&segment);
    drop(segment);

    // 3. Recovering again finds the same and cuts nothing.
    let (segment, again) = Segment::open(dir, base_offset, true, 0).await.expect("the recovered segment opens");
    assert_eq!(again, RecoveryReport { truncated_bytes: 0, ..report.clone() });
    assert_eq!(state(&segment), recovered, "a second recovery finds the same segment");

    // 4. Sealed with its index, then opened trusting the stored index.
    segment.seal().await.expect("the segment seals");
    drop(segment);
    assert!(index_path.exists(), "sealing stores the index");
    let (segment, sealed) = Segment::open(dir, base_offset, false, 0).await.expect("the sealed segment opens");
    assert_eq!((sealed.valid_bytes, sealed.truncated_bytes), (report.valid_bytes, 0));
    assert_eq!(state(&segment), recovered, "the stored index gives the segment recovery found");
    drop(segment);
}

fuzz_target!(|data: &[u8]| {
    SCRATCH.with(|dir| EXECUTOR.with(|executor| executor.run(recover(data, dir))));
});
