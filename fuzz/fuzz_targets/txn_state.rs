//! Fuzz target: the transaction state read back from disk and from `__transaction_state`: a
//! TransactionLog key/value pair (as the coordinator replays it) and `.txnindex` entries (as a
//! partition reopens them).
//!
//! The input is split at its first byte: key length, then key, then value (empty: tombstone).
//! Either decoder must reject garbage with an error, never panic or allocate without bound, and a
//! decoded value must encode (v1) and decode back to itself.
#![no_main]

use fjord_engine::txn_index::AbortedTxn;
use fjord_group::txn::{TxnRecord, TxnValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&key_length, rest)) = data.split_first() {
        let (key, value) = rest.split_at((key_length as usize).min(rest.len()));
        let value = (!value.is_empty()).then_some(value);
        if let Ok(record) = TxnRecord::decode(key, value) {
            let (key, value) = record.encode();
            assert_eq!(TxnRecord::decode(&key, value.as_deref()).ok(), Some(record));
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
