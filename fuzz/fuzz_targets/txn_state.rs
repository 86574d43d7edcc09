//! Fuzz target: the transaction state read back from disk and from `__transaction_state`: a
//! TransactionLog key/value pair (as the coordinator replays it) and `.txnindex` entries (as a
//! partition reopens them).
//!
//! The input is split at its first byte: key length, then key, then value (empty: tombstone).
//! Either decoder must reject garbage with an error, never panic or allocate without bound, and a
//! decoded value must encode (v1) and decode back to itself. A decoded record is then replayed
//! into a loading coordinator, loading is finished and its timers fire, as after a coordinator
//! load: nothing stored may make that panic, and the records it writes round-trip too.
//! (engine/src/txn_index.rs's files as a partition reopens them: the txn_index target.)
#![no_main]

use fjord_engine::txn_index::AbortedTxn;
use fjord_group::txn::{Transactions, TxnConfig, TxnRecord, TxnValue};
use libfuzzer_sys::fuzz_target;

const NOW_MS: i64 = 1_700_000_000_000;

fn replay(record: &TxnRecord) {
    let mut state = Transactions::new_loading(TxnConfig::default(), 3);
    state.replay(record);
    let loaded = state.finish_loading(NOW_MS);
    for later_ms in [0, 60_000, 3_600_000, 8 * 86_400_000] {
        let outcome = state.tick(NOW_MS + later_ms);
        let _ = state.next_deadline();
        for written in loaded.records.iter().chain(&outcome.records) {
            let (key, value) = written.encode();
            assert_eq!(TxnRecord::decode(&key, value.as_deref()).as_ref(), Ok(written), "a written record round-trips");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some((&key_length, rest)) = data.split_first() {
        let (key, value) = rest.split_at((key_length as usize).min(rest.len()));
        let value = (!value.is_empty()).then_some(value);
        if let Ok(record) = TxnRecord::decode(key, value) {
            let (key, value) = record.encode();
            assert_eq!(TxnRecord::decode(&key, value.as_deref()).ok().as_ref(), Some(&record));
            replay(&record);
        }
        if let Ok(decoded) = TxnValue::decode(rest) {
            assert_eq!(TxnValue::decode(&decoded.encode(1)).ok(), Some(decoded));
        }
    }
    for entry in data.chunks(34) {
        if let Some(aborted) = AbortedTxn::decode(entry) {
            assert_eq!(AbortedTxn::decode(&aborted.encode()), Some(aborted));
        }
    }
});
