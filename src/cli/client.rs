//! One blocking connection to one broker: connect, negotiate ApiVersions, exchange requests.
//!
//! Requests on a connection are strictly sequential (send, then read the one response), so a
//! correlation id that does not match means the stream is out of step and is reported as such.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Request, StrBytes};

use super::error::{CliError, KafkaError};
use super::limits::{CONNECT_TIMEOUT_MS, RESPONSE_SIZE_BYTES_MAX, SOCKET_TIMEOUT_MS};
use super::versions::ApiVersionTable;
use super::wire::{self, FrameError, CLIENT_ID};

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// A negotiated connection to one broker.
pub struct Connection {
    stream: TcpStream,
    address: String,
    peer: SocketAddr,
    correlation_id: i32,
    versions: ApiVersionTable,
}

impl Connection {
    /// Connects to `address` (HOST:PORT) and learns which API versions the broker supports.
    pub fn open(address: &str) -> Result<Self, CliError> {
        let stream = connect(address)?;
        let transport = |source| CliError::Transport { address: address.to_string(), source };
        let peer = stream.peer_addr().map_err(transport)?;
        let timeout = Some(Duration::from_millis(SOCKET_TIMEOUT_MS));
        stream.set_read_timeout(timeout).map_err(transport)?;
        stream.set_write_timeout(timeout).map_err(transport)?;
        stream.set_nodelay(true).map_err(transport)?;
        let mut connection =
            Connection { stream, address: address.to_string(), peer, correlation_id: 0, versions: ApiVersionTable::default() };
        connection.versions = connection.negotiate()?;
        Ok(connection)
    }

    /// The HOST:PORT this connection was opened with.
    pub fn address(&self) -> &str {
        &self.address
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
    pub fn version_of(&self, api: ApiKey) -> Result<i16, CliError> {
        self.versions.choose(api).map_err(|e| CliError::UnsupportedApi {
            address: self.address.clone(),
            api,
            detail: e.to_string(),
        })
    }

    /// Sends `request` at the negotiated version and returns the decoded response.
    pub fn call<R: Request>(&mut self, request: &R) -> Result<R::Response, CliError> {
        let api = api_key::<R>()?;
        let version = self.version_of(api)?;
        self.call_at(request, version)
    }

    /// Sends `request` at `version` (from [`Connection::version_of`]) and decodes the response.
    pub fn call_at<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, CliError> {
        let api = api_key::<R>()?;
        let body = self.exchange(api, version, request)?;
        wire::decode_body(api, version, body)
    }

    /// Sends a request the broker will not answer (a produce with acks=0).
    pub fn send_only<R: Request>(&mut self, request: &R, version: i16) -> Result<(), CliError> {
        let api = api_key::<R>()?;
        self.send(api, version, request).map(|_| ())
    }

    fn exchange<R: Request>(&mut self, api: ApiKey, version: i16, request: &R) -> Result<Bytes, CliError> {
        let correlation_id = self.send(api, version, request)?;
        let payload = wire::read_frame(&mut self.stream, RESPONSE_SIZE_BYTES_MAX).map_err(|e| self.frame_error(e))?;
        let (actual, body) = wire::split_response(api, version, payload)?;
        if actual != correlation_id {
            return Err(CliError::CorrelationMismatch { address: self.address.clone(), expected: correlation_id, actual });
        }
        Ok(body)
    }

    fn send<R: Request>(&mut self, api: ApiKey, version: i16, request: &R) -> Result<i32, CliError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let frame = wire::encode_request(api, version, self.correlation_id, request)?;
        self.stream.write_all(&frame).map_err(|source| CliError::Transport { address: self.address.clone(), source })?;
        Ok(self.correlation_id)
    }

    /// Asks for ApiVersions at the newest version; a broker that does not know it answers
    /// UNSUPPORTED_VERSION with a v0 body holding its own range, and we ask again at its max.
    fn negotiate(&mut self) -> Result<ApiVersionTable, CliError> {
        let api = ApiKey::ApiVersions;
        let mut version = api.valid_versions().max;
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        loop {
            let body = self.exchange(api, version, &request)?;
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

    fn frame_error(&self, error: FrameError) -> CliError {
        match error {
            FrameError::Io(source) => CliError::Transport { address: self.address.clone(), source },
            FrameError::Size { size_bytes } => {
                CliError::FrameSize { address: self.address.clone(), size_bytes, size_bytes_max: RESPONSE_SIZE_BYTES_MAX }
            }
        }
    }
}

/// The API key of a request type.
fn api_key<R: Request>() -> Result<ApiKey, CliError> {
    ApiKey::try_from(R::KEY).map_err(|()| CliError::input(format!("unknown API key {}", R::KEY)))
}

/// Opens a TCP connection to the first address `address` resolves to that accepts.
fn connect(address: &str) -> Result<TcpStream, CliError> {
    let connect_error = |source| CliError::Connect { address: address.to_string(), source };
    let candidates = address.to_socket_addrs().map_err(connect_error)?;
    let timeout = Duration::from_millis(CONNECT_TIMEOUT_MS);
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

    #[test]
    fn connecting_to_a_closed_port_is_a_connection_error_with_exit_code_2() {
        // Bind then drop a listener so the port is very likely closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = Connection::open(&format!("127.0.0.1:{port}")).err().unwrap();
        assert!(matches!(err, CliError::Connect { .. }), "{err}");
        assert_eq!(err.exit_code(), super::super::error::EXIT_CONNECTION);
    }

    #[test]
    fn an_address_without_port_is_a_connection_error() {
        let err = Connection::open("no-port-here").err().unwrap();
        assert!(matches!(err, CliError::Connect { .. }));
    }
}
