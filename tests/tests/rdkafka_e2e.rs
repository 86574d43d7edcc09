//! End-to-end tests of the release `fjord` binary with librdkafka (the `rdkafka` crate).
//!
//! The binary is found through `FJORD_BIN`, else `<workspace>/target/release/fjord`
//! (`cargo build --release --workspace --bins` builds it; scripts/test.sh does so before
//! `cargo test`). A missing binary fails these tests: it never lets them pass silently.
//!
//! Each test starts its own broker on a free loopback port with a fresh data directory under
//! `target/` (a real filesystem: the broker writes with O_DIRECT), and stops it with SIGTERM.
//! Consumers use `assign` from the beginning: the broker has no consumer groups yet.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits inside the workspace").to_path_buf()
}

fn fjord_binary() -> PathBuf {
    let path = std::env::var_os("FJORD_BIN").map(PathBuf::from).unwrap_or_else(|| workspace_dir().join("target/release/fjord"));
    assert!(
        path.is_file(),
        "fjord binary not found at {}: build it with `cargo build --release --workspace --bins` \
         or set FJORD_BIN",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// A running `fjord start`; killed (SIGKILL, by its own PID) if a test panics before `stop`.
struct Broker {
    child: Option<Child>,
    port: u16,
    stderr_path: PathBuf,
    _data_dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Broker {
        let binary = fjord_binary();
        let e2e_root = workspace_dir().join("target/e2e");
        std::fs::create_dir_all(&e2e_root).expect("create target/e2e");
        let data_dir = tempfile::Builder::new().prefix("rdkafka-").tempdir_in(&e2e_root).expect("create data dir");
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let stderr_path = data_dir.path().join("stderr.log");
        let stderr = File::create(&stderr_path).expect("create stderr log");
        let child = Command::new(&binary)
            .arg("start")
            .arg("--data-dir")
            .arg(data_dir.path().join("data"))
            .args(["--listen", &address, "--advertise", &address, "--shards", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let mut broker = Broker { child: Some(child), port, stderr_path, _data_dir: data_dir };
        broker.wait_ready();
        broker
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut last_error = String::from("never tried");
        while Instant::now() < deadline {
            let child = self.child.as_mut().expect("broker running");
            if let Some(status) = child.try_wait().expect("poll broker") {
                panic!("broker exited with {status} before it was ready; stderr:\n{}", self.stderr_tail());
            }
            match TcpStream::connect_timeout(&address, Duration::from_millis(500)) {
                Ok(_) => match metadata_broker_count(&self.bootstrap()) {
                    Ok(count) if count > 0 => return,
                    Ok(_) => last_error = "metadata lists no broker".into(),
                    Err(e) => last_error = e.to_string(),
                },
                Err(e) => last_error = e.to_string(),
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("broker not ready within {READY_TIMEOUT:?} ({last_error}); stderr:\n{}", self.stderr_tail());
    }

    /// SIGTERM and a bounded wait for the exit status.
    fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("broker running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on the PID of a child this test spawned and has not reaped.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "kill(SIGTERM) failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("poll broker") {
                return status;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("broker ignored SIGTERM for {STOP_TIMEOUT:?}; stderr:\n{}", self.stderr_tail());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if thread::panicking() {
                eprintln!("fjord stderr tail:\n{}", self.stderr_tail());
            }
        }
    }
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("socket.timeout.ms", "10000");
    config
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    client_config(bootstrap)
        // Needed by librdkafka for a consumer handle; never used to join a group (assign only).
        .set("group.id", "fjord-e2e-rdkafka")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("create consumer")
}

fn metadata_broker_count(bootstrap: &str) -> Result<usize, KafkaError> {
    let metadata = consumer(bootstrap).fetch_metadata(None, Duration::from_secs(2))?;
    Ok(metadata.brokers().len())
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap).create().expect("create admin client")
}

fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> Result<String, (String, RDKafkaErrorCode)> {
    let options = AdminOptions::new().operation_timeout(Some(CLIENT_TIMEOUT));
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let mut results =
        futures::executor::block_on(admin(bootstrap).create_topics([&topic], &options)).expect("CreateTopics request");
    assert_eq!(results.len(), 1);
    results.remove(0)
}

fn partition_count(bootstrap: &str, topic: &str) -> usize {
    let metadata = consumer(bootstrap).fetch_metadata(Some(topic), CLIENT_TIMEOUT).expect("metadata");
    let entry = metadata.topics().iter().find(|t| t.name() == topic).unwrap_or_else(|| panic!("{topic} missing from metadata"));
    assert!(entry.error().is_none(), "metadata error for {topic}: {:?}", entry.error());
    entry.partitions().len()
}

#[test]
fn acks_all_produce_then_assign_from_beginning_reads_every_record_in_order() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = "rdkafka-acks-all";
    create_topic(&bootstrap, topic, 1).expect("create topic");

    let producer: FutureProducer =
        client_config(&bootstrap).set("acks", "all").set("linger.ms", "5").create().expect("create producer");
    let record_count = 1_000usize;
    let mut deliveries = Vec::with_capacity(record_count);
    for index in 0..record_count {
        let key = format!("key-{index}");
        let value = format!("value-{index}");
        let headers = OwnedHeaders::new().insert(Header { key: "index", value: Some(index.to_string().as_bytes()) });
        let record = FutureRecord::to(topic).key(&key).payload(&value).headers(headers);
        let delivery = producer.send_result(record).unwrap_or_else(|(e, _)| panic!("enqueue record {index}: {e}"));
        deliveries.push(delivery);
    }
    for (index, delivery) in deliveries.into_iter().enumerate() {
        let (partition, offset) = futures::executor::block_on(delivery)
            .expect("delivery future not cancelled")
            .unwrap_or_else(|(e, _)| panic!("record {index} not acknowledged: {e}"));
        assert_eq!((partition, offset), (0, index as i64), "acknowledged offset of record {index}");
    }

    let consumer = consumer(&bootstrap);
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning).expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let mut read = Vec::with_capacity(record_count);
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    while read.len() < record_count && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(e)) => panic!("consumer error after {} records: {e}", read.len()),
            Some(Ok(message)) => {
                let header = message.headers().map(|h| h.get(0)).map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)));
                read.push((message.offset(), message.key().map(<[u8]>::to_vec), message.payload().map(<[u8]>::to_vec), header));
            }
        }
    }
    assert_eq!(read.len(), record_count, "records read within {CONSUME_TIMEOUT:?}");
    for (index, (offset, key, value, header)) in read.into_iter().enumerate() {
        assert_eq!(offset, index as i64);
        assert_eq!(key.as_deref(), Some(format!("key-{index}").as_bytes()));
        assert_eq!(value.as_deref(), Some(format!("value-{index}").as_bytes()));
        assert_eq!(header, Some(("index".to_string(), Some(index.to_string().into_bytes()))));
    }

    drop(consumer);
    drop(producer);
    let status = broker.stop();
    assert!(status.success(), "broker exit status after SIGTERM: {status}");
}

#[test]
fn admin_client_creates_topic_with_requested_partitions_and_refuses_duplicates() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = "rdkafka-admin-created";

    let created = create_topic(&bootstrap, topic, 3);
    assert_eq!(created, Ok(topic.to_string()));
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    while partition_count(&bootstrap, topic) != 3 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(partition_count(&bootstrap, topic), 3);

    let duplicate = create_topic(&bootstrap, topic, 3);
    assert_eq!(duplicate, Err((topic.to_string(), RDKafkaErrorCode::TopicAlreadyExists)));

    let status = broker.stop();
    assert!(status.success(), "broker exit status after SIGTERM: {status}");
}
