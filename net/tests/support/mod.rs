//! What the wire-level tests of this directory share: the real `fjord` binary started on its own
//! data directory and port, and a raw client that sends size-prefixed frames encoded with
//! kafka-protocol and reads whole response frames.
//!
//! The broker binary is `$FJORD_BIN`, else `target/release/fjord`, else `target/debug/fjord` of
//! this workspace; build it first (`cargo build --bin fjord`), the tests do not.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

pub const CLIENT_ID: &str = "fjord-golden";

/// Upper bounds on waiting for the broker; reaching one fails the test instead of hanging it.
pub const BROKER_START_WAIT_S_MAX: u64 = 30;
pub const RESPONSE_WAIT_S_MAX: u64 = 30;
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// A `fjord start` child process on its own data directory and port; SIGKILLed on drop.
pub struct Broker {
    pub child: Child,
    pub port: u16,
    pub cluster_id: String,
    pub log: Arc<Mutex<Vec<String>>>,
    pub data_dir: tempfile::TempDir,
}

pub fn fjord_binary() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Some(path) = std::env::var_os("FJORD_BIN") {
        // Tests run in the crate directory; a relative path may also be meant from the workspace.
        let path = PathBuf::from(path);
        let found = [path.clone(), workspace.join(&path)].into_iter().find(|candidate| candidate.is_file());
        return found.unwrap_or_else(|| panic!("FJORD_BIN={} is not a file", path.display()));
    }
    let target = workspace.join("target");
    for profile in ["release", "debug"] {
        let path = target.join(profile).join("fjord");
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "no fjord binary: looked at $FJORD_BIN, {0}/release/fjord and {0}/debug/fjord; build it with `cargo build --bin fjord` or set FJORD_BIN",
        target.display()
    );
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

impl Broker {
    /// A broker with two shards and default settings.
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// A broker with two shards and `args` added to `fjord start`.
    pub fn start_with(args: &[&str]) -> Broker {
        // Under target/ (cargo's CARGO_TARGET_TMPDIR): a real disk, never tmpfs.
        let data_dir = tempfile::Builder::new().prefix("wire-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp data dir");
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let binary = fjord_binary();
        // Shown with a failing test's output: a stale binary is the usual cause of a mismatch.
        eprintln!("wire test: broker {} on port {port}", binary.display());
        let mut child = Command::new(&binary)
            .arg("start")
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--listen", &address, "--advertise", &address, "--shards", "2", "--metrics-listen", "off"])
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fjord");
        // A thread drains stderr for the broker's whole life (a full pipe would stall it), keeps
        // the lines for failure messages, and reports the ready line.
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_sender, ready) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("Fjord broker ready") {
                    let _ = ready_sender.send(());
                }
                lines.lock().expect("log lock").push(line);
            }
        });
        let mut broker = Broker { child, port, cluster_id: String::new(), log, data_dir };
        if ready.recv_timeout(Duration::from_secs(BROKER_START_WAIT_S_MAX)).is_err() {
            panic!("fjord did not report ready; its log:\n{}", broker.log_text());
        }
        let properties = std::fs::read_to_string(broker.data_dir.path().join("meta.properties")).expect("meta.properties");
        broker.cluster_id = properties
            .lines()
            .find_map(|line| line.strip_prefix("cluster.id="))
            .expect("cluster.id in meta.properties")
            .to_string();
        broker
    }

    pub fn connect(&self) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to fjord");
        stream.set_read_timeout(Some(Duration::from_secs(RESPONSE_WAIT_S_MAX))).expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client { stream, next_correlation_id: 1 }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // SIGKILL: only this test's own child, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain TCP connection speaking size-prefixed Kafka frames.
pub struct Client {
    pub stream: TcpStream,
    next_correlation_id: i32,
}

impl Client {
    /// Sends one request at `version` and returns its decoded response; panics (naming the API
    /// and version) if the broker closes the connection or answers with bytes that do not decode.
    pub fn send<R: Request>(&mut self, version: i16, request: &R) -> R::Response {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let payload = encode_request(version, correlation_id, request);
        let frame = self.exchange(&payload);
        decode_frame::<R::Response>(&frame, R::Response::header_version(version), version, correlation_id)
    }

    /// Writes one size-prefixed request and returns the whole response frame, size included.
    pub fn exchange(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut request = Vec::with_capacity(payload.len() + 4);
        request.extend_from_slice(&(payload.len() as i32).to_be_bytes());
        request.extend_from_slice(payload);
        self.stream.write_all(&request).expect("send request");
        self.read_frame().unwrap_or_else(|error| panic!("no response frame: {error}"))
    }

    /// Reads one whole response frame, size prefix included.
    pub fn read_frame(&mut self) -> std::io::Result<Vec<u8>> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let size = i32::from_be_bytes(size);
        assert!(size >= 4 && (size as usize) <= RESPONSE_BYTES_MAX, "response size prefix {size} out of range");
        let mut frame = vec![0u8; 4 + size as usize];
        frame[..4].copy_from_slice(&size.to_be_bytes());
        self.stream.read_exact(&mut frame[4..])?;
        Ok(frame)
    }
}

/// Header and body of one request, without the size prefix.
pub fn encode_request<R: Request>(version: i16, correlation_id: i32, request: &R) -> BytesMut {
    let mut payload = BytesMut::new();
    request_header(R::KEY, version, correlation_id)
        .encode(&mut payload, R::header_version(version))
        .expect("encode request header");
    request.encode(&mut payload, version).expect("encode request body");
    payload
}

pub fn request_header(api_key: i16, version: i16, correlation_id: i32) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(api_key)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)))
}

/// Decodes a frame read by [`Client::exchange`]: the size prefix must be the frame's length and
/// the body must end exactly where the frame does.
pub fn decode_frame<T: Decodable>(frame: &[u8], header_version: i16, version: i16, correlation_id: i32) -> T {
    let size = i32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
    assert_eq!(size as usize, frame.len() - 4, "size prefix must equal the frame length");
    let mut buffer = Bytes::copy_from_slice(&frame[4..]);
    let header = ResponseHeader::decode(&mut buffer, header_version).expect("decode response header");
    assert_eq!(header.correlation_id, correlation_id, "response correlation id");
    let body = T::decode(&mut buffer, version).unwrap_or_else(|error| panic!("decode v{version} response body: {error}"));
    assert!(buffer.is_empty(), "{} bytes after the v{version} response body", buffer.len());
    body
}

/// The API key of a request type.
pub fn api_key<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).expect("known API key")
}
