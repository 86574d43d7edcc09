//! Fuzz target: a sealed segment's stored index (`<offset>.index`) read back from disk
//! (`SegmentIndex::decode`, engine/src/index.rs), which a reopened partition trusts instead of
//! walking the segment.
//!
//! The input is the index file's bytes. It is decoded for the segment size it says it covers (and
//! for another size, which must be refused), and once more with its CRC recomputed, so that the
//! fuzzer explores the entries behind the checksum as a file written by another build would hold
//! them. A decoded index encodes back to the very same bytes; lookups on it (offset and time
//! floors, truncation) return positions and offsets the index holds, never panic.
#![no_main]

use fjord_engine::index::SegmentIndex;
use libfuzzer_sys::fuzz_target;

const HEADER_BYTES: usize = 20;

fn check(bytes: &[u8], probes: &[u8]) {
    let Some(covered) = bytes.get(4..12).map(|covered| u64::from_be_bytes(covered.try_into().unwrap())) else {
        assert_eq!(SegmentIndex::decode(bytes, 0), None);
        return;
    };
    assert_eq!(SegmentIndex::decode(bytes, covered.wrapping_add(1)), None, "an index covering another size is stale");
    let Some(index) = SegmentIndex::decode(bytes, covered) else { return };
    assert_eq!(index.encode(covered), bytes, "a decoded index encodes to the bytes it came from");
    for probe in probes.chunks(8) {
        let mut word = [0u8; 8];
        word[..probe.len()].copy_from_slice(probe);
        let value = u64::from_be_bytes(word);
        let position = index.position_floor(value as u32);
        assert!(position == 0 || index.offsets.iter().any(|entry| entry.position == position));
        let relative = index.time_floor(value as i64);
        assert!(relative == 0 || index.times.iter().any(|entry| entry.relative_offset == relative));
        let mut truncated = index.clone();
        truncated.truncate_to_position(value as u32, (value >> 32) as u32);
        assert!(truncated.offsets.len() <= index.offsets.len() && truncated.times.len() <= index.times.len());
        let reencoded = truncated.encode(covered);
        assert_eq!(SegmentIndex::decode(&reencoded, covered), Some(truncated));
    }
}

fuzz_target!(|data: &[u8]| {
    // The first 32 bytes after the header also probe the lookups.
    let probes = data.get(HEADER_BYTES..).map_or(&[][..], |body| &body[..body.len().min(32)]);
    check(data, probes);
    if data.len() >= HEADER_BYTES {
        let mut fixed = data.to_vec();
        let crc = crc32c::crc32c(&fixed[HEADER_BYTES..]);
        fixed[16..20].copy_from_slice(&crc.to_be_bytes());
        check(&fixed, probes);
    }
});
