//! End-to-end smoke test: a real Fjord broker (the release binary) and a 2-second end-to-end run.
//! Ignored by default because it needs `target/release/fjord` (or `FJORD_BIN`):
//! `cargo build --release -p fjord && cargo test -p fjord-bench --test smoke -- --ignored`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fjord_bench::run::{run, RunOptions};
use fjord_bench::wire::Timeouts;
use fjord_bench::workload::{Acks, Mode, Workload};

const BROKER_READY_WAIT_MAX: Duration = Duration::from_secs(20);

struct Broker {
    child: Child,
    data_dir: PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn fjord_binary() -> PathBuf {
    let path = match std::env::var_os("FJORD_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/fjord"),
    };
    assert!(
        path.is_file(),
        "no broker binary at {}: build it with `cargo build --release -p fjord` or set FJORD_BIN",
        path.display()
    );
    path
}

fn free_address() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("127.0.0.1:{port}")
}

/// Starts a broker; returns it, its Kafka address and its metrics address.
fn start_broker() -> (Broker, String, String) {
    let address = free_address();
    let metrics_address = free_address();
    // On disk under target/, never tmpfs: Fjord writes with O_DIRECT.
    let data_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/bench-smoke-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir).unwrap();
    let child = Command::new(fjord_binary())
        .args(["start", "--data-dir"])
        .arg(&data_dir)
        .args(["--listen", &address, "--advertise", &address, "--shards", "2", "--metrics-listen", &metrics_address])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the broker");
    let broker = Broker { child, data_dir };
    let deadline = Instant::now() + BROKER_READY_WAIT_MAX;
    while TcpStream::connect(&address).is_err() {
        assert!(Instant::now() < deadline, "broker did not listen on {address} within {BROKER_READY_WAIT_MAX:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    (broker, address, metrics_address)
}

#[test]
#[ignore = "needs the release broker binary (target/release/fjord or FJORD_BIN)"]
fn two_second_end_to_end_run_against_fjord_measures_both_sides() {
    let (broker, address, metrics_address) = start_broker();
    let workload = Workload {
        name: "smoke".to_string(),
        mode: Mode::E2e,
        topic: "smoke".to_string(),
        partitions: 4,
        producers: 1,
        consumers: 1,
        acks: Acks::All,
        target_rate_records_per_second: 5000,
        warmup_seconds: 0,
        duration_seconds: 2,
        fetch_max_wait_ms: 100,
        ..Workload::default()
    };
    let options = RunOptions {
        bootstrap: address,
        label: "fjord".to_string(),
        pin_cores: false,
        broker_pid: Some(broker.child.id()),
        broker_metrics: Some(metrics_address),
        timeouts: Timeouts { connect: Duration::from_secs(5), io: Duration::from_secs(5) },
        prefill_timeout: Duration::from_secs(60),
        progress: false,
    };
    let report = run(&workload, &options).expect("the run succeeds");
    let produce = report.produce.as_ref().unwrap();
    let consume = report.consume.as_ref().unwrap();
    // 5000 records/s for 2 s, open loop.
    assert!(produce.records >= 9000, "produced {}", produce.records);
    assert_eq!(produce.errors, 0);
    assert!(consume.records >= produce.records * 9 / 10, "consumed {} of {}", consume.records, produce.records);
    assert!(produce.latency.as_ref().unwrap().p99_ms > 0.0);
    assert!(consume.latency.as_ref().unwrap().count > 0);
    assert!(report.broker.as_ref().unwrap().cpu_seconds >= 0.0);
    // The broker's own request times for the measured part, from its /metrics: every
    // acknowledged batch went in a produce request the broker timed, and fetches ran throughout.
    let times: Vec<&str> = report.broker_request_times.iter().map(|t| t.api.as_str()).collect();
    assert_eq!(times, ["Produce", "Fetch"]);
    let produce_times = &report.broker_request_times[0];
    // The two count over slightly different windows (scrape vs acknowledgement), never by 2x.
    let (broker_count, client_count) = (produce_times.requests as f64, produce.requests as f64);
    assert!(broker_count > 0.5 * client_count && broker_count < 1.5 * client_count + 10.0, "{produce_times:?} vs {client_count}");
    assert!(produce_times.p99_ms.unwrap() > 0.0, "{produce_times:?}");
    assert!(report.broker_request_times[1].requests > 0, "{:?}", report.broker_request_times[1]);
    let svg = fjord_bench::svg::render(std::slice::from_ref(&report));
    assert_eq!(svg.matches("<polyline").count(), 4);
    drop(broker);
}
