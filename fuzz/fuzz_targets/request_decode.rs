//! Fuzz target: everything a connection's bytes reach before a request handler runs.
//!
//! The input is a byte stream as a client sends it: size-prefixed frames, back to back. The
//! broker's own code reads it: `frame::read_frame` (size prefix, the request-size limit, torn
//! frames), then `api::decode_request`, which `api::dispatch` calls first (API key, the version
//! range served, request header, body); ApiVersions frames go to `api_versions::handle`, which
//! needs no broker state. Every step may refuse hostile bytes with an error, which ends the
//! connection, but must never panic, loop or allocate without bound.
//!
//! Checked besides: frames respect the size bounds and the stream is consumed frame by frame; a
//! decoded request names the API and version of its first four bytes, inside the range served;
//! ApiVersions answers every frame whose header decodes, echoing the correlation id. Produce record
//! bytes also go through the broker's batch validation. (No encode round trip: the broker never
//! encodes a request, and kafka-protocol's does not round-trip unknown tagged fields whose tag
//! exceeds i32::MAX: they are counted but not written.)
#![no_main]

use bytes::{Buf, Bytes};
use fjord_net::api::{self, DecodedRequest, RequestBody, RequestError};
use fjord_net::frame::{self, FrameError, REQUEST_HEADER_BYTES_MIN};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::Decodable;
use libfuzzer_sys::fuzz_target;

/// socket.request.max.bytes for the run: small, so that the limit is reached without allocating
/// 100 MiB per input (the check is the same for any value).
const REQUEST_BYTES_MAX: usize = 64 * 1024;

fn check_frame(frame: Bytes) {
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    match api::decode_request(frame.clone()) {
        Ok(DecodedRequest::ApiVersions { frame: whole, version: read_version }) => {
            assert_eq!((api_key_raw, read_version), (ApiKey::ApiVersions as i16, version));
            assert_eq!(whole, frame);
            check_api_versions(frame, version);
        }
        Ok(DecodedRequest::Request { header, body }) => {
            let api = ApiKey::try_from(api_key_raw).expect("a decoded request has a known API key");
            assert_eq!((header.request_api_key, header.request_api_version), (api_key_raw, version));
            let served = api::supported_versions(api).expect("a decoded request is of an API served");
            assert!((served.min..=served.max).contains(&version), "{api:?} v{version} decoded outside the range served");
            if let RequestBody::Produce(produce) = &body {
                for topic in &produce.topic_data {
                    for partition in &topic.partition_data {
                        if let Some(records) = &partition.records {
                            let _ = fjord_engine::batch::validate_produced(records, REQUEST_BYTES_MAX);
                        }
                    }
                }
            }
        }
        Err(RequestError::TooShort(_)) => panic!("read_frame returned a frame shorter than a request header"),
        Err(RequestError::UnknownApiKey(key)) => assert!(key == api_key_raw && ApiKey::try_from(key).is_err()),
        Err(RequestError::UnsupportedVersion { api, version: refused }) => {
            assert_eq!((api as i16, refused), (api_key_raw, version));
            if let Some(served) = api::supported_versions(api) {
                assert!(!(served.min..=served.max).contains(&version), "{api:?} v{version} refused inside the range served");
            }
        }
        Err(RequestError::Decode { api, version: refused, .. }) => assert_eq!((api as i16, refused), (api_key_raw, version)),
        Err(RequestError::Encode(error)) => panic!("decoding a request failed to encode: {error}"),
    }
}

/// ApiVersions answers any version (KIP-511); it fails only on a header it cannot read.
fn check_api_versions(frame: Bytes, version: i16) {
    let served = api::supported_versions(ApiKey::ApiVersions).expect("ApiVersions is served");
    let header_version =
        if (served.min..=served.max).contains(&version) { ApiKey::ApiVersions.request_header_version(version) } else { 1 };
    let header = RequestHeader::decode(&mut frame.clone(), header_version);
    match (api::api_versions::handle(frame, version, api::SUPPORTED), header) {
        (Ok(response), Ok(header)) => {
            let mut bytes: Vec<u8> = Vec::new();
            for part in response.parts {
                match part {
                    fjord_engine::partition::Chunk::Memory(chunk) => bytes.extend_from_slice(&chunk),
                    _ => panic!("an ApiVersions response is all in memory"),
                }
            }
            let mut response = Bytes::from(bytes);
            let size = response.get_i32();
            assert_eq!(size as usize, response.len(), "the response's size prefix");
            let response_header = ResponseHeader::decode(&mut response, 0).expect("the response header decodes");
            assert_eq!(response_header.correlation_id, header.correlation_id);
        }
        (Err(RequestError::Decode { .. }), Err(_)) => {}
        (answer, header) => panic!("ApiVersions v{version}: header {header:?}, answer {:?}", answer.map(|_| ())),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut stream = futures::io::Cursor::new(data);
    let mut consumed = 0usize;
    loop {
        let next = futures::executor::block_on(frame::read_frame(&mut stream, REQUEST_BYTES_MAX));
        let rest = data.len() - consumed;
        match next {
            Ok(frame) => {
                assert!((REQUEST_HEADER_BYTES_MIN as usize..=REQUEST_BYTES_MAX).contains(&frame.len()));
                assert_eq!(&frame[..], &data[consumed + 4..consumed + 4 + frame.len()]);
                consumed += 4 + frame.len();
                check_frame(frame);
            }
            Err(FrameError::Closed) => {
                assert!(rest < 4, "closed with {rest} bytes left");
                break;
            }
            Err(FrameError::TooSmall(size)) => {
                assert!(size < REQUEST_HEADER_BYTES_MIN);
                break;
            }
            Err(FrameError::TooLarge { size, max }) => {
                assert!(size > max as i64 && max == REQUEST_BYTES_MAX);
                break;
            }
            Err(FrameError::Truncated { expected }) => {
                assert!(rest >= 4 && expected > rest - 4, "a {expected}-byte frame reported torn with {rest} bytes left");
                break;
            }
            Err(FrameError::Io(error)) => panic!("reading from memory failed: {error}"),
        }
    }
});
