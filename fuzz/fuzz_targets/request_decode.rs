//! Fuzz target: decode one Kafka request frame body (header + body) for any API key and version.
//!
//! The input is what follows the 4-byte size prefix on the wire. The broker's framing layer reads
//! the api key and version from the first four bytes, picks the header version from them and then
//! decodes header and body; every step may return an error on hostile input but must never panic,
//! loop forever or allocate without bound. Produce requests are also opened down to their record
//! batch headers (no decompression), as the broker's validation does.
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::records::RecordBatchDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let api_key_raw = i16::from_be_bytes([data[0], data[1]]);
    let api_version = i16::from_be_bytes([data[2], data[3]]);
    let Ok(api_key) = ApiKey::try_from(api_key_raw) else {
        return;
    };
    // Any version, in range or not: decoders must reject unknown versions with an error.
    let header_version = api_key.request_header_version(api_version);
    let mut buf = Bytes::copy_from_slice(data);
    let Ok(header) = RequestHeader::decode(&mut buf, header_version) else {
        return;
    };
    assert_eq!(header.request_api_key, api_key_raw);
    assert_eq!(header.request_api_version, api_version);
    let remaining_before = buf.len();
    let Ok(request) = RequestKind::decode(api_key, &mut buf, api_version) else {
        return;
    };
    // Decoding consumes, never invents, bytes.
    assert!(buf.len() <= remaining_before);
    if let RequestKind::Produce(produce) = request {
        for topic in &produce.topic_data {
            for partition in &topic.partition_data {
                if let Some(records) = &partition.records {
                    let mut records = records.clone();
                    let _ = RecordBatchDecoder::decode_batch_info(&mut records);
                }
            }
        }
    }
});
