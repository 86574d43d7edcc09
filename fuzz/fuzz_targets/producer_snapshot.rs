//! Fuzz target: decoding a producer state snapshot (`<offset>.snapshot`) read back from disk.
//!
//! A snapshot may be torn or bit-rotted; the decoder must reject it (`None`) or return a table
//! that encodes and decodes back to itself, never panic or allocate without bound. The decoded
//! table then takes a few appends derived from the input, as a reopened partition would: the
//! producer-state checks must not panic on any stored values.
#![no_main]

use fjord_engine::producer_state::{ProducerBatch, ProducerStateTable, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((offset, mut table)) = ProducerStateTable::decode(data) else {
        return;
    };
    let reencoded = table.encode(offset);
    assert_eq!(ProducerStateTable::decode(&reencoded), Some((offset, table.clone())));
    for (index, chunk) in data.chunks_exact(8).take(16).enumerate() {
        let batch = ProducerBatch {
            producer_id: (chunk[0] % 4) as i64,
            epoch: i16::from_be_bytes([0, chunk[1] % 4]),
            first_sequence: i32::from_be_bytes([chunk[2] & 0x7f, chunk[3], chunk[4], chunk[5]]),
            last_offset_delta: (chunk[6] % 8) as i32,
            first_offset: index as i64,
            timestamp_ms: chunk[7] as i64,
        };
        if let Ok(Verdict::Append(staged)) = table.check(&[batch]) {
            table.commit(staged);
        }
    }
});
