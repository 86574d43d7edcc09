//! Fuzz target: the segment recovery scan over arbitrary segment-file bytes.
//!
//! Recovery reads the tail of the last segment after a crash and returns the length of the valid
//! prefix (whole RecordBatch v2 entries whose header and CRC32C check out); everything after it is
//! truncated. Whatever the bytes, the scan must not panic and must return a prefix length that
//! lies inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // LEAD: adjust this call if recovery's entry point moves. Contract assumed here (and what
    // engine/src/log.rs provides today): `fjord_engine::log::recover_scan(bytes: &[u8]) -> usize`,
    // the byte length of the valid prefix of a segment file's contents.
    let valid_prefix_size_bytes = fjord_engine::log::recover_scan(data);
    assert!(valid_prefix_size_bytes <= data.len());
    // The valid prefix is a fixed point: scanning it again keeps all of it.
    let rescanned_size_bytes = fjord_engine::log::recover_scan(&data[..valid_prefix_size_bytes]);
    assert_eq!(rescanned_size_bytes, valid_prefix_size_bytes);
});
