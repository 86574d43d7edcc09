//! Kafka request/response framing, free of I/O so it can be tested on byte buffers.
//!
//! ```text
//! request:  [size: i32][RequestHeader (v1 or v2 by api/version)][request body]
//! response: [size: i32][ResponseHeader (v0 or v1 by api/version)][response body]
//! ```
//! The size prefix counts the bytes after itself. Every codec comes from `kafka-protocol`.

use std::io::Read;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::error::ClientError;

/// Bytes of the size prefix in front of every frame.
pub const SIZE_PREFIX_BYTES: usize = 4;
/// Where the correlation id sits in a request frame (after the size, api key and version), so
/// a pre-built frame can be re-sent under a new id.
pub const REQUEST_CORRELATION_ID_AT: usize = 8;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("frame size {size_bytes} is out of range")]
    Size { size_bytes: i64 },
}

/// Encodes a complete request frame (size prefix, header, body) for `api` at `version`.
pub fn encode_request<R: Encodable>(
    client_id: &'static str,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &R,
) -> Result<Bytes, ClientError> {
    let codec = |detail: String| ClientError::Codec { api, version, detail };
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(client_id)));
    let mut frame = BytesMut::with_capacity(256);
    frame.put_i32(0); // size placeholder, patched below
    header
        .encode(&mut frame, api.request_header_version(version))
        .map_err(|e| codec(format!("cannot encode request header: {e}")))?;
    request.encode(&mut frame, version).map_err(|e| codec(format!("cannot encode request: {e}")))?;
    let size_bytes = i32::try_from(frame.len() - SIZE_PREFIX_BYTES)
        .map_err(|_| codec(format!("request of {} bytes is too large", frame.len())))?;
    frame[..SIZE_PREFIX_BYTES].copy_from_slice(&size_bytes.to_be_bytes());
    Ok(frame.freeze())
}

/// Reads one size-prefixed frame, refusing sizes above `frame_bytes_max`.
pub fn read_frame(reader: &mut impl Read, frame_bytes_max: usize) -> Result<Bytes, FrameError> {
    let mut size_prefix = [0u8; SIZE_PREFIX_BYTES];
    reader.read_exact(&mut size_prefix)?;
    let size_bytes = i32::from_be_bytes(size_prefix);
    if size_bytes < 0 || size_bytes as usize > frame_bytes_max {
        return Err(FrameError::Size { size_bytes: i64::from(size_bytes) });
    }
    let mut payload = vec![0u8; size_bytes as usize];
    reader.read_exact(&mut payload)?;
    Ok(Bytes::from(payload))
}

/// Splits a response payload (frame without size prefix) into its correlation id and body.
pub fn split_response(api: ApiKey, version: i16, mut payload: Bytes) -> Result<(i32, Bytes), ClientError> {
    let header = ResponseHeader::decode(&mut payload, api.response_header_version(version)).map_err(|e| ClientError::Codec {
        api,
        version,
        detail: format!("cannot decode response header: {e}"),
    })?;
    Ok((header.correlation_id, payload))
}

/// Decodes a response body of `api` at `version`. Bytes left over mean the two sides disagree
/// on the layout, except in ApiVersions, whose later versions a broker may answer with more
/// than a client knows.
pub fn decode_body<T: Decodable>(api: ApiKey, version: i16, mut body: Bytes) -> Result<T, ClientError> {
    let codec = |detail: String| ClientError::Codec { api, version, detail };
    let response = T::decode(&mut body, version).map_err(|e| codec(format!("cannot decode response: {e}")))?;
    if body.has_remaining() && api != ApiKey::ApiVersions {
        return Err(codec(format!("{} bytes left after the response", body.remaining())));
    }
    Ok(response)
}

/// The error code that opens a response body (ApiVersions puts it first in every version).
pub fn leading_error_code(body: &Bytes) -> Option<i16> {
    (body.len() >= 2).then(|| (&body[..2]).get_i16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

    const CLIENT_ID: &str = "fjord-test";

    fn framed(api: ApiKey, version: i16, correlation_id: i32, response: &impl Encodable) -> BytesMut {
        let mut payload = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut payload, api.response_header_version(version))
            .unwrap();
        response.encode(&mut payload, version).unwrap();
        let mut framed = BytesMut::new();
        framed.put_i32(payload.len() as i32);
        framed.extend_from_slice(&payload);
        framed
    }

    #[test]
    fn request_frame_size_prefix_counts_the_rest_and_header_round_trips() {
        let frame = encode_request(CLIENT_ID, ApiKey::Metadata, 12, 7, &MetadataRequest::default()).unwrap();
        let mut rest = frame.clone();
        let size_bytes = rest.get_i32();
        assert_eq!(size_bytes as usize, rest.len());
        let header = RequestHeader::decode(&mut rest, ApiKey::Metadata.request_header_version(12)).unwrap();
        assert_eq!(header.correlation_id, 7);
        assert_eq!(header.request_api_key, ApiKey::Metadata as i16);
        assert_eq!(header.request_api_version, 12);
        assert_eq!(header.client_id.as_deref(), Some(CLIENT_ID));
        MetadataRequest::decode(&mut rest, 12).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn the_correlation_id_sits_where_a_prebuilt_frame_patches_it() {
        for version in [0, 3, 9] {
            let frame = encode_request(CLIENT_ID, ApiKey::Produce, version, 0x0102_0304, &MetadataRequest::default());
            let at = REQUEST_CORRELATION_ID_AT;
            assert_eq!(frame.unwrap()[at..at + 4], 0x0102_0304i32.to_be_bytes());
        }
    }

    #[test]
    fn response_frame_is_read_split_and_decoded() {
        let version = 12;
        let framed = framed(ApiKey::Metadata, version, 42, &MetadataResponse::default().with_controller_id(3.into()));
        let read = read_frame(&mut &framed[..], 1 << 20).unwrap();
        let (correlation_id, body) = split_response(ApiKey::Metadata, version, read).unwrap();
        assert_eq!(correlation_id, 42);
        let decoded: MetadataResponse = decode_body(ApiKey::Metadata, version, body).unwrap();
        assert_eq!(decoded.controller_id, 3);
    }

    #[test]
    fn bytes_left_after_a_response_are_refused_except_in_api_versions() {
        let mut body = BytesMut::new();
        MetadataResponse::default().encode(&mut body, 12).unwrap();
        body.put_u8(0);
        let result: Result<MetadataResponse, _> = decode_body(ApiKey::Metadata, 12, body.clone().freeze());
        assert!(matches!(result, Err(ClientError::Codec { .. })));
        let mut body = BytesMut::new();
        kafka_protocol::messages::ApiVersionsResponse::default().encode(&mut body, 0).unwrap();
        body.put_u8(0);
        let result: Result<kafka_protocol::messages::ApiVersionsResponse, _> = decode_body(ApiKey::ApiVersions, 0, body.freeze());
        assert!(result.is_ok());
    }

    #[test]
    fn read_frame_refuses_sizes_over_the_limit_and_negative_sizes() {
        let too_big = 1025i32.to_be_bytes();
        assert!(matches!(read_frame(&mut &too_big[..], 1024), Err(FrameError::Size { size_bytes: 1025 })));
        let negative = (-1i32).to_be_bytes();
        assert!(matches!(read_frame(&mut &negative[..], 1024), Err(FrameError::Size { .. })));
    }

    #[test]
    fn read_frame_reports_a_truncated_stream_as_io_error() {
        let mut short = 10i32.to_be_bytes().to_vec();
        short.extend_from_slice(b"abc");
        assert!(matches!(read_frame(&mut &short[..], 1024), Err(FrameError::Io(_))));
    }
}
