//! Kafka framing over a blocking `TcpStream`: a 4-byte size, a request header, a body. One
//! connection per worker thread; every read and write has a timeout so a dead broker ends the run
//! with an error instead of a hang. Versions are negotiated with ApiVersions on connect.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use crate::error::{BenchError, Result};

/// No response we expect is larger than this (fetch responses are bounded by fetch_max_bytes).
pub const FRAME_BYTES_MAX: usize = 512 << 20;
pub const CLIENT_ID: &str = "fjord-bench";
const UNSUPPORTED_VERSION: i16 = 35;

/// The version range this client speaks per API. Capped below the versions that address topics by
/// id (Produce 13, Fetch 13) so the client needs only names.
pub fn client_versions(api: ApiKey) -> (i16, i16) {
    match api {
        ApiKey::Produce => (3, 9),
        // v11, the last non-flexible version: Tansu 0.6 puts a v16-only tagged field (tag 0) into
        // its v12 responses, which a strict decoder refuses; every broker is read the same way.
        ApiKey::Fetch => (4, 11),
        ApiKey::ListOffsets => (1, 7),
        ApiKey::Metadata => (1, 12),
        ApiKey::CreateTopics => (2, 7),
        ApiKey::ApiVersions => (0, 3),
        _ => (0, -1),
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub io: Duration,
}

/// Encodes one request frame (size prefix included).
pub fn encode_frame<R: Encodable + HeaderVersion>(api: ApiKey, version: i16, correlation_id: i32, body: &R) -> Result<BytesMut> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut frame = BytesMut::with_capacity(256);
    frame.put_i32(0);
    header.encode(&mut frame, R::header_version(version)).map_err(|e| BenchError::codec(format!("{api:?} header"), e))?;
    body.encode(&mut frame, version).map_err(|e| BenchError::codec(format!("{api:?} v{version} request"), e))?;
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame)
}

fn read_error(address: &str, error: std::io::Error) -> BenchError {
    let context = match error.kind() {
        std::io::ErrorKind::UnexpectedEof => format!("reading a response from {address}: the broker closed the connection"),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("reading a response from {address}: no answer within the I/O timeout")
        }
        _ => format!("reading a response from {address}"),
    };
    BenchError::io(context, error)
}

/// Reads one response frame (without its size prefix).
pub fn read_frame(stream: &mut TcpStream, address: &str) -> Result<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).map_err(|e| read_error(address, e))?;
    let size = i32::from_be_bytes(size);
    if size < 4 || size as usize > FRAME_BYTES_MAX {
        return Err(BenchError::Protocol { address: address.to_string(), detail: format!("response frame of {size} bytes") });
    }
    let mut frame = vec![0u8; size as usize];
    stream.read_exact(&mut frame).map_err(|e| read_error(address, e))?;
    Ok(Bytes::from(frame))
}

/// Splits a response frame into its correlation id and body, decoding the header at `header_version`.
pub fn split_response(mut frame: Bytes, header_version: i16, address: &str) -> Result<(i32, Bytes)> {
    let header = ResponseHeader::decode(&mut frame, header_version)
        .map_err(|e| BenchError::codec(format!("response header from {address}"), e))?;
    Ok((header.correlation_id, frame))
}

/// One connection to one broker, with the versions agreed for it.
pub struct Connection {
    pub stream: TcpStream,
    pub address: String,
    correlation_id_next: i32,
    broker_versions: HashMap<i16, (i16, i16)>,
}

impl Connection {
    pub fn open(address: &str, timeouts: Timeouts) -> Result<Connection> {
        let addrs: Vec<_> = address.to_socket_addrs().map_err(|e| BenchError::io(format!("resolving {address}"), e))?.collect();
        let mut last_error = None;
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeouts.connect) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let stream = match stream {
            Some(s) => s,
            None => {
                let error = last_error.unwrap_or_else(|| std::io::Error::other("no address"));
                return Err(BenchError::io(format!("connecting to {address}"), error));
            }
        };
        let set = |r: std::io::Result<()>| r.map_err(|e| BenchError::io(format!("configuring the socket to {address}"), e));
        set(stream.set_nodelay(true))?;
        set(stream.set_read_timeout(Some(timeouts.io)))?;
        set(stream.set_write_timeout(Some(timeouts.io)))?;
        let mut connection =
            Connection { stream, address: address.to_string(), correlation_id_next: 1, broker_versions: HashMap::new() };
        connection.negotiate()?;
        Ok(connection)
    }

    /// ApiVersions at our highest version; a broker that does not know it answers v0 with
    /// UNSUPPORTED_VERSION (KIP-511), and we ask again at v0.
    fn negotiate(&mut self) -> Result<()> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let (_, ours_max) = client_versions(ApiKey::ApiVersions);
        let response = match self.call_at(ApiKey::ApiVersions, ours_max, &request) {
            // The v0 answer to a version it does not know may not even decode at ours.
            Ok(response) if response.error_code == UNSUPPORTED_VERSION => self.call_at(ApiKey::ApiVersions, 0, &request)?,
            Err(BenchError::Codec { .. }) => self.call_at(ApiKey::ApiVersions, 0, &request)?,
            outcome => outcome?,
        };
        if response.error_code != 0 {
            return Err(BenchError::Broker { api: "ApiVersions", code: response.error_code, detail: String::new() });
        }
        self.broker_versions = response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(())
    }

    /// The highest version both sides speak.
    pub fn version(&self, api: ApiKey) -> Result<i16> {
        let (ours_min, ours_max) = client_versions(api);
        let offered = self.broker_versions.get(&(api as i16)).copied();
        match offered {
            Some((min, max)) if min <= ours_max && max >= ours_min => Ok(max.min(ours_max)),
            _ => Err(BenchError::Version {
                address: self.address.clone(),
                api: api_name(api),
                min: ours_min,
                max: ours_max,
                offered: offered.map_or("nothing".to_string(), |(a, b)| format!("{a}..={b}")),
            }),
        }
    }

    pub fn next_correlation_id(&mut self) -> i32 {
        let id = self.correlation_id_next;
        self.correlation_id_next = self.correlation_id_next.wrapping_add(1).max(1);
        id
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).map_err(|e| BenchError::io(format!("sending a request to {}", self.address), e))
    }

    /// One request, one response, at the negotiated version.
    pub fn call<R: Request>(&mut self, api: ApiKey, request: &R) -> Result<R::Response> {
        let version = self.version(api)?;
        self.call_at(api, version, request)
    }

    fn call_at<R: Request>(&mut self, api: ApiKey, version: i16, request: &R) -> Result<R::Response> {
        let correlation_id = self.next_correlation_id();
        let frame = encode_frame(api, version, correlation_id, request)?;
        self.write_all(&frame)?;
        let frame = read_frame(&mut self.stream, &self.address)?;
        let (answered, mut body) = split_response(frame, R::Response::header_version(version), &self.address)?;
        if answered != correlation_id {
            return Err(BenchError::Protocol {
                address: self.address.clone(),
                detail: format!("{api:?} response has correlation id {answered}, expected {correlation_id}"),
            });
        }
        let response = R::Response::decode(&mut body, version)
            .map_err(|e| BenchError::codec(format!("{api:?} v{version} response from {}", self.address), e))?;
        if body.has_remaining() && api != ApiKey::ApiVersions {
            return Err(BenchError::Protocol {
                address: self.address.clone(),
                detail: format!("{} bytes left after a {api:?} v{version} response", body.remaining()),
            });
        }
        Ok(response)
    }

    pub fn try_clone_stream(&self) -> Result<TcpStream> {
        self.stream.try_clone().map_err(|e| BenchError::io(format!("cloning the socket to {}", self.address), e))
    }
}

pub fn api_name(api: ApiKey) -> &'static str {
    match api {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::ApiVersions => "ApiVersions",
        _ => "other",
    }
}
