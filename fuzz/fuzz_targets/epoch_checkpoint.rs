//! Fuzz target: a partition's `leader-epoch-checkpoint` read back when it reopens
//! (`EpochHistory::decode`, engine/src/epochs.rs), then fitted to a recovered log as
//! `Partition::open` does (`fit_to_log`).
//!
//! Input: `[log start u16][log end u16][leader epoch u8][checkpoint text]` (the log bounds are
//! ordered if they come reversed). Anything may be in the text: decoding refuses it with an
//! error or returns a history strictly ascending in epoch and start offset that encodes and
//! decodes back to itself. Fitted to the log, the history still ascends, starts no epoch past
//! the log end, holds the leader epoch as its latest if it was newer, and `end_offset_for`
//! answers every epoch with one at or below it and an offset no later than the log end.
#![no_main]

use fjord_engine::epochs::{EpochHistory, UNDEFINED_EPOCH};
use libfuzzer_sys::fuzz_target;

fn check_ascending(history: &EpochHistory) {
    for pair in history.entries().windows(2) {
        assert!(pair[0].epoch < pair[1].epoch && pair[0].start_offset < pair[1].start_offset, "{history:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let first = i64::from(u16::from_be_bytes([data[0], data[1]]));
    let second = i64::from(u16::from_be_bytes([data[2], data[3]]));
    let (log_start, log_end) = (first.min(second), first.max(second));
    let leader_epoch = i32::from(data[4]);
    let Ok(text) = std::str::from_utf8(&data[5..]) else { return };
    let Ok(mut history) = EpochHistory::decode(text) else { return };
    check_ascending(&history);
    assert_eq!(EpochHistory::decode(&history.encode()).as_ref(), Ok(&history), "checkpoint round trip");
    let newer = history.latest().is_none_or(|latest| latest.epoch < leader_epoch);
    history.fit_to_log(log_start, log_end, leader_epoch);
    check_ascending(&history);
    if let Some(latest) = history.latest() {
        assert!(latest.start_offset <= log_end, "an epoch starts past the log end: {history:?}");
        if newer {
            assert_eq!((latest.epoch, latest.start_offset), (leader_epoch, log_end), "the newer epoch starts at the log end");
        }
    }
    for requested in [UNDEFINED_EPOCH, 0, leader_epoch, leader_epoch + 1, i32::MAX] {
        let (epoch, end_offset) = history.end_offset_for(requested, log_end);
        if epoch != UNDEFINED_EPOCH {
            assert!(epoch <= requested && end_offset <= log_end, "end_offset_for({requested}) = ({epoch}, {end_offset})");
        }
    }
});
