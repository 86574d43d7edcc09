//! What the wire-level tests of this directory share: the real `fjord` binary started on its own
//! data directory and port, a raw client that sends size-prefixed frames encoded with
//! kafka-protocol and reads whole response frames, Kafka's error codes and the request building
//! blocks the group and transaction tests have in common, and the golden files' format.
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
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::{ApiKey, GroupId, JoinGroupRequest, RequestHeader, ResponseHeader, TopicName, TransactionalId};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

pub const CLIENT_ID: &str = "fjord-golden";

// Kafka's error codes (org.apache.kafka.common.protocol.Errors)
pub const NONE: i16 = 0;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const INVALID_REQUEST: i16 = 42;
pub const CONCURRENT_TRANSACTIONS: i16 = 51;
pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const MEMBER_ID_REQUIRED: i16 = 79;
pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;

/// What a client retries before anything happened: the coordinator's internal topic is being
/// created or loaded, or the transactional id's previous transaction is still completing.
pub const RETRIABLE: [i16; 3] = [COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, CONCURRENT_TRANSACTIONS];

/// FindCoordinator key types (KIP-98).
pub const KEY_TYPE_GROUP: i8 = 0;
pub const KEY_TYPE_TRANSACTION: i8 = 1;

/// Timeouts the group and transaction requests of these tests carry.
pub const SESSION_TIMEOUT_MS: i32 = 10_000;
pub const REBALANCE_TIMEOUT_MS: i32 = 10_000;
pub const TRANSACTION_TIMEOUT_MS: i32 = 60_000;

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
        self.stream.write_all(&size_prefixed(payload)).expect("send request");
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

/// A whole frame: `payload` led by its int32 size.
pub fn size_prefixed(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 4);
    frame.extend_from_slice(&(payload.len() as i32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
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

/// `value` as a Kafka string.
pub fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// `name` as a topic name.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(text(name))
}

/// `name` as a group id.
pub fn group_id(name: &str) -> GroupId {
    GroupId(text(name))
}

/// `name` as a transactional id.
pub fn transactional_id(name: &str) -> TransactionalId {
    TransactionalId(text(name))
}

/// JoinGroup of `group` as a consumer would send it: [`SESSION_TIMEOUT_MS`],
/// [`REBALANCE_TIMEOUT_MS`], protocol type consumer, one protocol, range, with `metadata`.
pub fn join_group_request(group: &str, member_id: &str, metadata: Bytes) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(group_id(group))
        .with_session_timeout_ms(SESSION_TIMEOUT_MS)
        .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
        .with_member_id(text(member_id))
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(text("range")).with_metadata(metadata)])
}

// ---------------------------------------------------------------------------------------------
// Golden files (`net/tests/golden/`, written by golden.rs, walked by schema.rs)

/// Every case gets its own correlation id, fixed so the golden bytes are stable, and distinct
/// per API and version so a response meant for another request cannot pass.
pub fn correlation_id(api_key: i16, version: i16) -> i32 {
    0x0f00_0000 | i32::from(api_key) << 8 | i32::from(version)
}

/// `net/tests/golden/<case>.hex`.
pub fn golden_path(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{case}.hex"))
}

/// Reads a golden file: `#` lines are comments, `offset:` prefixes are skipped, the rest is hex.
pub fn parse_golden(text: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let data = line.split_once(':').map_or(line, |(_, data)| data);
        let digits: Vec<u8> = data.bytes().filter(|byte| !byte.is_ascii_whitespace()).collect();
        let pairs = digits.chunks_exact(2);
        assert!(pairs.remainder().is_empty(), "odd number of hex digits in golden line {line:?}");
        for pair in pairs {
            let text = std::str::from_utf8(pair).expect("ascii");
            bytes.push(u8::from_str_radix(text, 16).unwrap_or_else(|_| panic!("bad hex {text:?} in golden line {line:?}")));
        }
    }
    bytes
}
