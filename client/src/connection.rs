//! One blocking connection to one broker: connect, negotiate ApiVersions, exchange requests.
//!
//! The transport is a `std::net::TcpStream` with a timeout on connect and on every read and
//! write, so a dead broker ends a command (or a bench run) with an error instead of a hang.
//! Requests are either strictly sequential ([`Connection::call`]: send, then read the one
//! response) or pipelined: frames sent with [`Connection::send_frame`] and their responses read in
//! order, possibly on another thread, by a [`ResponseReader`] on a clone of the socket. Kafka
//! answers in request order on a connection, so a correlation id that does not match means the
//! stream is out of step and is reported as such.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Decodable, Request, StrBytes};

use crate::error::{ClientError, KafkaError};
use crate::versions::{ApiVersionTable, ClientVersions};
use crate::wire::{self, FrameError};

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// Who a client is and the limits it keeps; one per tool.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionConfig {
    /// Sent in every request header and as the ApiVersions software name.
    pub client_id: &'static str,
    /// The versions the client speaks per API.
    pub versions: ClientVersions,
    pub connect_timeout: Duration,
    /// Socket read and write timeout.
    pub io_timeout: Duration,
    /// Largest response frame accepted; a larger size prefix means a broken stream.
    pub frame_bytes_max: usize,
}

/// Reads responses, in order, off one connection to one broker.
pub struct ResponseReader {
    stream: TcpStream,
    address: String,
    frame_bytes_max: usize,
}

impl ResponseReader {
    /// Reads the next response, which must answer `correlation_id`, and decodes it.
    pub fn read<T: Decodable>(&mut self, api: ApiKey, version: i16, correlation_id: i32) -> Result<T, ClientError> {
        let body = self.read_body(api, version, correlation_id)?;
        wire::decode_body(api, version, body)
    }

    fn read_body(&mut self, api: ApiKey, version: i16, correlation_id: i32) -> Result<Bytes, ClientError> {
        let payload = wire::read_frame(&mut self.stream, self.frame_bytes_max).map_err(|e| self.frame_error(e))?;
        let (actual, body) = wire::split_response(api, version, payload)?;
        if actual != correlation_id {
            return Err(ClientError::CorrelationMismatch { address: self.address.clone(), expected: correlation_id, actual });
        }
        Ok(body)
    }

    fn frame_error(&self, error: FrameError) -> ClientError {
        match error {
            FrameError::Io(source) => ClientError::Transport { address: self.address.clone(), source },
            FrameError::Size { size_bytes } => {
                ClientError::FrameSize { address: self.address.clone(), size_bytes, frame_bytes_max: self.frame_bytes_max }
            }
        }
    }
}

/// A negotiated connection to one broker.
pub struct Connection {
    reader: ResponseReader,
    peer: SocketAddr,
    config: ConnectionConfig,
    correlation_id_last: i32,
    versions: ApiVersionTable,
}

impl Connection {
    /// Connects to `address` (HOST:PORT) and learns which API versions the broker supports.
    pub fn open(address: &str, config: ConnectionConfig) -> Result<Self, ClientError> {
        let stream = connect(address, config.connect_timeout)?;
        let transport = |source| ClientError::Transport { address: address.to_string(), source };
        let peer = stream.peer_addr().map_err(transport)?;
        stream.set_read_timeout(Some(config.io_timeout)).map_err(transport)?;
        stream.set_write_timeout(Some(config.io_timeout)).map_err(transport)?;
        stream.set_nodelay(true).map_err(transport)?;
        let reader = ResponseReader { stream, address: address.to_string(), frame_bytes_max: config.frame_bytes_max };
        let mut connection = Connection { reader, peer, config, correlation_id_last: 0, versions: ApiVersionTable::default() };
        connection.versions = connection.negotiate()?;
        Ok(connection)
    }

    /// The HOST:PORT this connection was opened with.
    pub fn address(&self) -> &str {
        &self.reader.address
    }

    /// The socket address actually connected to.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The broker's advertised API versions.
    pub fn versions(&self) -> &ApiVersionTable {
        &self.versions
    }

    /// The version this client will use for `api` with this broker.
    pub fn version_of(&self, api: ApiKey) -> Result<i16, ClientError> {
        self.versions.choose(api, self.config.versions).map_err(|e| ClientError::UnsupportedApi {
            address: self.address().to_string(),
            api,
            detail: e.to_string(),
        })
    }

    /// Sends `request` at the negotiated version and returns the decoded response.
    pub fn call<R: Request>(&mut self, request: &R) -> Result<R::Response, ClientError> {
        let version = self.version_of(api_key::<R>()?)?;
        self.call_at(request, version)
    }

    /// Sends `request` at `version` (from [`Connection::version_of`]) and decodes the response.
    pub fn call_at<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, ClientError> {
        let api = api_key::<R>()?;
        let correlation_id = self.send(api, version, request)?;
        self.reader.read(api, version, correlation_id)
    }

    /// Sends a request the broker will not answer (a produce with acks=0).
    pub fn send_only<R: Request>(&mut self, request: &R, version: i16) -> Result<(), ClientError> {
        self.send(api_key::<R>()?, version, request).map(drop)
    }

    /// The correlation id for the next request; never zero or negative.
    pub fn next_correlation_id(&mut self) -> i32 {
        self.correlation_id_last = self.correlation_id_last.wrapping_add(1).max(1);
        self.correlation_id_last
    }

    /// Writes a frame encoded by the caller (see [`wire::encode_request`]).
    pub fn send_frame(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        let transport = |source| ClientError::Transport { address: self.reader.address.clone(), source };
        self.reader.stream.write_all(frame).map_err(transport)
    }

    /// A reader of this connection's responses on a clone of its socket, for another thread.
    pub fn response_reader(&self) -> Result<ResponseReader, ClientError> {
        let stream = self
            .reader
            .stream
            .try_clone()
            .map_err(|source| ClientError::Transport { address: self.reader.address.clone(), source })?;
        Ok(ResponseReader { stream, address: self.reader.address.clone(), frame_bytes_max: self.reader.frame_bytes_max })
    }

    fn send<R: Request>(&mut self, api: ApiKey, version: i16, request: &R) -> Result<i32, ClientError> {
        let correlation_id = self.next_correlation_id();
        let frame = wire::encode_request(self.config.client_id, api, version, correlation_id, request)?;
        self.send_frame(&frame)?;
        Ok(correlation_id)
    }

    /// Asks for ApiVersions at the newest version the client speaks; a broker that does not know
    /// it answers UNSUPPORTED_VERSION with a v0 body holding its own range (KIP-511), and we ask
    /// again at its max. The error code is read before decoding: that v0 body need not decode at
    /// the version asked.
    fn negotiate(&mut self) -> Result<ApiVersionTable, ClientError> {
        let api = ApiKey::ApiVersions;
        let mut version = (self.config.versions)(api).max;
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(self.config.client_id))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        loop {
            let correlation_id = self.send(api, version, &request)?;
            let body = self.reader.read_body(api, version, correlation_id)?;
            if wire::leading_error_code(&body) == Some(UNSUPPORTED_VERSION) && version > 0 {
                let v0: ApiVersionsResponse = wire::decode_body(api, 0, body)?;
                let broker_max = ApiVersionTable::from_response(&v0).broker_range(api as i16).map(|r| r.max);
                // Only ever step down, so this loop ends.
                version = broker_max.filter(|max| *max < version).unwrap_or(0);
                continue;
            }
            let response: ApiVersionsResponse = wire::decode_body(api, version, body)?;
            KafkaError::check(response.error_code, None, || format!("ApiVersions v{version}"))?;
            return Ok(ApiVersionTable::from_response(&response));
        }
    }
}

/// The API key of a request type.
fn api_key<R: Request>() -> Result<ApiKey, ClientError> {
    ApiKey::try_from(R::KEY).map_err(|()| ClientError::UnknownApiKey { api_key: R::KEY })
}

/// Opens a TCP connection to the first address `address` resolves to that accepts.
fn connect(address: &str, timeout: Duration) -> Result<TcpStream, ClientError> {
    let connect_error = |source| ClientError::Connect { address: address.to_string(), source };
    let candidates = address.to_socket_addrs().map_err(connect_error)?;
    let mut last_error = std::io::Error::new(std::io::ErrorKind::NotFound, "address resolved to nothing");
    for candidate in candidates {
        match TcpStream::connect_timeout(&candidate, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = e,
        }
    }
    Err(connect_error(last_error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versions::codec_versions;

    const CONFIG: ConnectionConfig = ConnectionConfig {
        client_id: "fjord-test",
        versions: codec_versions,
        connect_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(5),
        frame_bytes_max: 1 << 20,
    };

    /// A broker on a loopback port that speaks ApiVersions v0..=3 and Metadata v1..=12 and answers
    /// each Metadata with the request's correlation id as controller id; returns HOST:PORT.
    fn echo_broker() -> String {
        use bytes::{BufMut, BytesMut};
        use kafka_protocol::messages::api_versions_response::ApiVersion;
        use kafka_protocol::messages::{MetadataResponse, ResponseHeader};
        use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            while let Ok(mut request) = wire::read_frame(&mut stream, 1 << 20) {
                let header = decode_request_header_from_buffer(&mut request).unwrap();
                let (api, version) = (ApiKey::try_from(header.request_api_key).unwrap(), header.request_api_version);
                let mut payload = BytesMut::new();
                let response_header = ResponseHeader::default().with_correlation_id(header.correlation_id);
                response_header.encode(&mut payload, api.response_header_version(version)).unwrap();
                if api == ApiKey::ApiVersions {
                    let range = |api: ApiKey, min, max| {
                        ApiVersion::default().with_api_key(api as i16).with_min_version(min).with_max_version(max)
                    };
                    let keys = vec![range(ApiKey::ApiVersions, 0, 3), range(ApiKey::Metadata, 1, 12)];
                    ApiVersionsResponse::default().with_api_keys(keys).encode(&mut payload, version).unwrap();
                } else {
                    let controller = header.correlation_id.into();
                    MetadataResponse::default().with_controller_id(controller).encode(&mut payload, version).unwrap();
                }
                let mut frame = BytesMut::new();
                frame.put_i32(payload.len() as i32);
                frame.extend_from_slice(&payload);
                stream.write_all(&frame).unwrap();
            }
        });
        address
    }

    #[test]
    fn pipelined_requests_are_answered_in_order_on_the_reader() {
        use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
        let mut connection = Connection::open(&echo_broker(), CONFIG).unwrap();
        let version = connection.version_of(ApiKey::Metadata).unwrap();
        assert_eq!(version, 12);
        assert!(matches!(connection.version_of(ApiKey::Fetch), Err(ClientError::UnsupportedApi { .. })));
        let mut reader = connection.response_reader().unwrap();
        let ids: Vec<i32> = (0..3).map(|_| connection.next_correlation_id()).collect();
        for id in &ids {
            let frame = wire::encode_request(CONFIG.client_id, ApiKey::Metadata, version, *id, &MetadataRequest::default());
            connection.send_frame(&frame.unwrap()).unwrap();
        }
        let first: MetadataResponse = reader.read(ApiKey::Metadata, version, ids[0]).unwrap();
        assert_eq!(first.controller_id, ids[0]);
        let out_of_step = reader.read::<MetadataResponse>(ApiKey::Metadata, version, ids[2]);
        assert!(
            matches!(out_of_step, Err(ClientError::CorrelationMismatch { expected, actual, .. }) if (expected, actual) == (ids[2], ids[1]))
        );
        let last = connection.call(&MetadataRequest::default());
        assert!(matches!(last, Err(ClientError::CorrelationMismatch { .. })), "the third answer is still unread");
    }

    #[test]
    fn connecting_to_a_closed_port_is_a_connection_error() {
        // Bind then drop a listener so the port is very likely closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = Connection::open(&format!("127.0.0.1:{port}"), CONFIG).err().unwrap();
        assert!(matches!(err, ClientError::Connect { .. }), "{err}");
        assert!(err.is_connection());
    }

    #[test]
    fn an_address_without_port_is_a_connection_error() {
        let err = Connection::open("no-port-here", CONFIG).err().unwrap();
        assert!(matches!(err, ClientError::Connect { .. }));
    }
}
