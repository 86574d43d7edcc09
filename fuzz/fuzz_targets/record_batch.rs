//! Fuzz target: the broker's own RecordBatch v2 readers (engine/src/batch.rs), over bytes read
//! from a segment file or sent by a producer or a replication peer.
//!
//! The input is one batch. It is checked as it is, and once more with its length field and CRC
//! made to fit (`fixed`), so that the fuzzer reaches the records behind the checksum. On each:
//! `validate_stored` / `validate_produced` (the checks recovery and produce make),
//! `summarize_records` (produce and recovery: record count, timestamps), `decode_records` and
//! `record_timestamps` (ListOffsets by time, the cleaner), `end_txn_marker` (producer state
//! rebuilt from the log). None may panic or allocate without bound; where two readers both accept
//! a batch they agree (record count, offsets, max timestamp).
//!
//! Round trips, where an encoder exists: a decoded batch rebuilt by the cleaner (`rebuild`: all
//! records, then every other one) and recompressed (`recompress`, the topic's compression.type)
//! validates and decodes back to the records it was given; an end-transaction marker built from
//! the input's values (`build_end_txn_marker`) reads back as the same marker.
//!
#![no_main]

use bytes::Bytes;
use fjord_engine::batch::{self, BatchHeader, ControlType, EndTxnMarker};
use fjord_engine::limits::{BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES};
use libfuzzer_sys::fuzz_target;


fn check(batch: &[u8], codec: i16) {
    let bytes = Bytes::copy_from_slice(batch);
    let stored = batch::validate_stored(batch);
    if let Ok(header) = &stored {
        assert_eq!(header.size_bytes, batch.len());
        assert_eq!(batch::compute_crc(batch), header.crc);
    }
    if let Ok(headers) = batch::validate_produced(batch, usize::MAX) {
        assert_eq!(headers.iter().map(|header| header.size_bytes).sum::<usize>(), batch.len());
        assert!(headers.iter().all(|header| header.records_count > 0 && header.last_offset_delta == header.records_count - 1));
    }
    let summary = BatchHeader::parse(batch)
        .ok()
        .filter(|header| header.size_bytes <= batch.len())
        .map(|header| (header, batch::summarize_records(&batch[..header.size_bytes], &header)));
    if let Some((_, Ok(summary))) = &summary {
        assert!(summary.min_timestamp == i64::MAX || summary.min_timestamp <= summary.max_timestamp);
    }
    if let Some(marker) = batch::end_txn_marker(batch) {
        let header = BatchHeader::parse(batch).expect("a marker has a header");
        assert!(header.is_control() && header.records_count >= 1);
        let _ = marker;
    }
    let timestamps = batch::record_timestamps(batch);
    let Ok(decoded) = batch::decode_records(&bytes) else { return };
    let header = stored.expect("decode_records validates the batch");
    assert_eq!(decoded.header, header);
    assert_eq!(decoded.records.len(), decoded.raw.len());
    if let Ok(timestamps) = &timestamps {
        let offsets: Vec<i64> = decoded.records.iter().map(|record| record.offset).collect();
        assert_eq!(timestamps.iter().map(|(offset, _)| *offset).collect::<Vec<_>>(), offsets);
    }
    if let Some((_, Ok(summary))) = &summary {
        assert_eq!(decoded.records.len(), header.records_count as usize, "summarize and decode disagree on the count");
        if let Some(max) = decoded.records.iter().map(|record| record.timestamp).max() {
            assert_eq!(max, summary.max_timestamp, "summarize and decode disagree on the max timestamp");
        }
    }

    // The cleaner's rebuild: every record, then every other one.
    let every_other: Vec<usize> = (0..decoded.raw.len()).step_by(2).collect();
    for kept in [(0..decoded.raw.len()).collect::<Vec<_>>(), every_other] {
        let raw: Vec<Bytes> = kept.iter().map(|&index| decoded.raw[index].clone()).collect();
        let max_timestamp = kept.iter().map(|&index| decoded.records[index].timestamp).max().unwrap_or(header.max_timestamp);
        let rebuilt = batch::rebuild(batch, &header, &raw, max_timestamp).expect("a decoded batch rebuilds");
        let again = batch::decode_records(&rebuilt).expect("a rebuilt batch decodes");
        assert_eq!(again.raw, raw, "the rebuilt batch holds the records it was given");
        let records: Vec<_> = kept.iter().map(|&index| decoded.records[index].clone()).collect();
        assert_eq!(again.records, records);
    }
    // compression.type recompression (the produce path, on a validated batch).
    let recompressed = batch::recompress(&bytes, &header, codec).expect("a decoded batch recompresses");
    let again = batch::decode_records(&recompressed).expect("a recompressed batch decodes");
    assert_eq!(again.header.compression(), codec);
    assert_eq!(again.raw, decoded.raw);
    assert_eq!(again.records, decoded.records);
}

/// The input with its length field and CRC made to fit: one batch of the input's size.
fn fixed(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < BATCH_HEADER_BYTES || data.len() - BATCH_LOG_OVERHEAD_BYTES > i32::MAX as usize {
        return None;
    }
    let mut batch = data.to_vec();
    batch[8..12].copy_from_slice(&((data.len() - BATCH_LOG_OVERHEAD_BYTES) as i32).to_be_bytes());
    let crc = batch::compute_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    Some(batch)
}

fn i64_at(data: &[u8], at: usize) -> i64 {
    let mut word = [0u8; 8];
    for (index, byte) in data.iter().skip(at).take(8).enumerate() {
        word[index] = *byte;
    }
    i64::from_be_bytes(word)
}

fuzz_target!(|data: &[u8]| {
    let codec = data.last().map_or(0, |byte| i16::from(byte % 5));
    check(data, codec);
    if let Some(batch) = fixed(data) {
        check(&batch, codec);
    }
    // An end-transaction marker built from the input's values reads back as itself.
    let control = if data.first().is_some_and(|byte| byte & 1 == 1) { ControlType::Commit } else { ControlType::Abort };
    let (producer_id, epoch, coordinator_epoch, timestamp) =
        (i64_at(data, 43), i64_at(data, 51) as i16, i64_at(data, 12) as i32, i64_at(data, 27));
    let marker = batch::build_end_txn_marker(producer_id, epoch, coordinator_epoch, control, timestamp);
    assert_eq!(batch::end_txn_marker(&marker), Some(EndTxnMarker { control, coordinator_epoch }));
    let header = batch::validate_stored(&marker).expect("a built marker validates");
    assert_eq!((header.producer_id, header.producer_epoch, header.max_timestamp), (producer_id, epoch, timestamp));
    let decoded = batch::decode_records(&Bytes::from(marker)).expect("a built marker decodes");
    assert_eq!(decoded.records.len(), 1);
    assert!(decoded.records[0].control);
});
