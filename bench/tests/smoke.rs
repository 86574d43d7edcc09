//! End-to-end smoke test: a real Fjord broker (the release binary) and a 2-second end-to-end run.
//! Ignored by default because it needs `target/release/fjord` (or `FJORD_BIN`):
//! `cargo build --release -p fjord && cargo test -p fjord-bench --test smoke -- --ignored`.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_bench::admin::{ensure_topic, list_offsets, TopicLayout, OFFSET_LATEST};
use fjord_bench::broker_metrics::{parse_buckets, scrape};
use fjord_bench::consumer::{run_consumer, ConsumerPlan};
use fjord_bench::producer::{run_producer, ProducerPlan};
use fjord_bench::run::{run, RunOptions};
use fjord_bench::shared::{spawn_worker, Shared};
use fjord_bench::wire::{self, Timeouts};
use fjord_bench::workload::{Acks, Mode, Workload};

const BROKER_READY_WAIT_MAX: Duration = Duration::from_secs(20);
/// Bound on every wait for the broker or the workers to catch up (never a timing threshold).
const CATCH_UP_WAIT_MAX: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);
const TIMEOUTS: Timeouts = Timeouts { connect: Duration::from_secs(5), io: Duration::from_secs(5) };

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

/// The sum over shards of a counter's samples in a /metrics page.
fn sample_sum(page: &str, name: &str) -> f64 {
    let prefix = format!("{name}{{");
    page.lines()
        .filter(|line| line.starts_with(&prefix))
        .map(|line| line.rsplit_once(' ').and_then(|(_, value)| value.parse::<f64>().ok()).expect("a sample value"))
        .sum()
}

/// Every request-time histogram series in the page (each shard and API): cumulative bucket
/// counts never decrease with the bound, and the `+Inf` bucket equals `_count`.
fn check_histogram_series(page: &str) {
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for line in page.lines() {
        let (series, value) = line.rsplit_once(' ').unwrap_or(("", ""));
        if let Some(labels) = series.strip_prefix("fjord_request_duration_seconds_bucket{").and_then(|l| l.strip_suffix('}')) {
            let (key, le) = labels.rsplit_once(",le=").expect("le is the last label");
            let le = le.trim_matches('"');
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().expect("a bucket bound") };
            buckets.entry(key.to_string()).or_default().push((bound, value.parse().expect("a bucket count")));
        } else if let Some(labels) =
            series.strip_prefix("fjord_request_duration_seconds_count{").and_then(|l| l.strip_suffix('}'))
        {
            counts.insert(labels.to_string(), value.parse().expect("a count"));
        }
    }
    assert!(!buckets.is_empty(), "no request-time histogram in the page");
    assert_eq!(buckets.keys().collect::<Vec<_>>(), counts.keys().collect::<Vec<_>>());
    for (key, series) in &buckets {
        assert!(series.windows(2).all(|pair| pair[0].0 < pair[1].0), "{key}: bounds out of order: {series:?}");
        assert!(series.windows(2).all(|pair| pair[0].1 <= pair[1].1), "{key}: bucket counts decrease: {series:?}");
        assert_eq!(series.last().map(|&(bound, count)| (bound, count)), Some((f64::INFINITY, counts[key])), "{key}");
    }
}

/// A /metrics page in which every Produce request the broker received has been timed (a request
/// is observed once its response is written, a moment after the client may have read it).
fn settled_metrics(metrics_address: &str) -> String {
    let deadline = Instant::now() + CATCH_UP_WAIT_MAX;
    loop {
        let page = scrape(metrics_address).expect("metrics scrape");
        let received = sample_sum(&page, "fjord_produce_requests_total");
        if parse_buckets(&page, "Produce").count() == received {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "{received} produce requests received, not all timed: {:?}",
            parse_buckets(&page, "Produce")
        );
        std::thread::sleep(POLL);
    }
}

fn total(offsets: &BTreeMap<i32, i64>) -> i64 {
    offsets.values().sum()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + CATCH_UP_WAIT_MAX;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {CATCH_UP_WAIT_MAX:?}");
        std::thread::sleep(POLL);
    }
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
        bootstrap: address.clone(),
        label: "fjord".to_string(),
        pin_cores: false,
        broker_pid: Some(broker.child.id()),
        broker_metrics: Some(metrics_address.clone()),
        timeouts: TIMEOUTS,
        prefill_timeout: Duration::from_secs(60),
        progress: false,
    };
    let report = run(&workload, &options).expect("the run succeeds");
    // What the run reports is counted over its measuring window (acknowledgements in flight at its
    // end fall outside, the consumers drain after it), so its sides are not compared here; the
    // exact accounting follows below with the same workers outside `run`.
    let produce = report.produce.as_ref().unwrap();
    let consume = report.consume.as_ref().unwrap();
    assert!(produce.records > 0 && consume.records > 0, "{produce:?} {consume:?}");
    assert_eq!((produce.errors, consume.errors), (0, 0));
    assert_eq!(report.broker_errors, Vec::<(i16, u64)>::new());
    assert!(consume.latency.as_ref().is_some_and(|latency| latency.count > 0), "no end-to-end latency recorded");
    assert_eq!(report.broker.as_ref().map(|figures| figures.pid), Some(broker.child.id()), "broker figures of another process");
    let times: Vec<&str> = report.broker_request_times.iter().map(|t| t.api.as_str()).collect();
    assert_eq!(times, ["Produce", "Fetch"]);
    assert!(report.broker_request_times.iter().all(|t| t.requests > 0), "{:?}", report.broker_request_times);
    let svg = fjord_bench::svg::render(std::slice::from_ref(&report));
    assert_eq!(svg.matches("<polyline").count(), 4);

    exact_accounting_with_the_bench_workers(&address, &metrics_address, &workload);
    drop(broker);
}

/// The bench's own producer and consumer workers, on a fresh topic, for one second: records
/// consumed equal records acknowledged equal records the log gained, and the broker timed exactly
/// as many Produce requests as were acknowledged.
fn exact_accounting_with_the_bench_workers(address: &str, metrics_address: &str, base: &Workload) {
    let workload = Workload { topic: "smoke-exact".to_string(), partitions: 2, ..base.clone() };
    let mut connection = wire::open(address, TIMEOUTS).expect("connects");
    let layout: TopicLayout = ensure_topic(&mut connection, &workload.topic, workload.partitions, 1, true).expect("topic");
    let before = list_offsets(&layout, &workload.topic, OFFSET_LATEST, TIMEOUTS).expect("offsets");
    let page_before = settled_metrics(metrics_address);

    let shared = Arc::new(Shared::new());
    let partitions: Vec<i32> = layout.leaders.keys().copied().collect();
    let rate = 4000.0;
    let start = Instant::now() + Duration::from_millis(300);
    let end = start + Duration::from_secs(1);
    let consumer = ConsumerPlan {
        name: "smoke-consumer".to_string(),
        address: layout.address_of(partitions[0]).unwrap().to_string(),
        topic: workload.topic.clone(),
        partitions: partitions.iter().map(|p| (*p, before[p], None)).collect(),
        workload: workload.clone(),
        timeouts: TIMEOUTS,
        measure_e2e: true,
        start,
    };
    let producer = ProducerPlan {
        name: "smoke-producer".to_string(),
        address: layout.address_of(partitions[0]).unwrap().to_string(),
        topic: workload.topic.clone(),
        partitions: partitions.clone(),
        rate_records_per_second: rate,
        batch_records: workload.batch_records_for_rate(rate),
        workload: workload.clone(),
        timeouts: TIMEOUTS,
        start,
        end,
        seed: 7,
    };
    let for_consumer = Arc::clone(&shared);
    spawn_worker(&shared, consumer.name.clone(), None, move || run_consumer(consumer, for_consumer)).unwrap();
    let for_producer = Arc::clone(&shared);
    spawn_worker(&shared, producer.name.clone(), None, move || run_producer(producer, for_producer)).unwrap();

    // The producer returns once every request it sent is answered.
    wait_until("the producer finished", || shared.workers_running.load(Ordering::SeqCst) == 1 || shared.is_fatal());
    assert_eq!(shared.failures(), Vec::<String>::new());
    let produced = shared.produced.snapshot();
    assert!(produced.records > 0 && produced.requests > 0, "{produced:?}");
    assert_eq!(produced.errors, 0, "{:?}", shared.broker_errors());
    let after = list_offsets(&layout, &workload.topic, OFFSET_LATEST, TIMEOUTS).expect("offsets");
    assert_eq!(total(&after) - total(&before), produced.records as i64, "the log gained other than what was acknowledged");

    wait_until("the consumer read what was acknowledged", || {
        shared.consumed.snapshot().records >= produced.records || shared.is_fatal()
    });
    shared.stop_consumers.store(true, Ordering::SeqCst);
    assert!(shared.wait_workers(Instant::now() + CATCH_UP_WAIT_MAX), "the consumer did not stop");
    assert_eq!(shared.failures(), Vec::<String>::new());
    let consumed = shared.consumed.snapshot();
    assert_eq!((consumed.records, consumed.errors), (produced.records, 0), "consumed vs acknowledged");

    // Every acknowledged request is one observation in the broker's Produce histogram.
    let produce_timed = |page: &str| parse_buckets(page, "Produce").count() as u64;
    let expected = produce_timed(&page_before) + produced.requests;
    let deadline = Instant::now() + CATCH_UP_WAIT_MAX;
    let mut page = scrape(metrics_address).expect("metrics scrape");
    while produce_timed(&page) < expected && Instant::now() < deadline {
        std::thread::sleep(POLL);
        page = scrape(metrics_address).expect("metrics scrape");
    }
    assert_eq!(produce_timed(&page), expected, "Produce requests timed vs acknowledged ({produced:?})");
    assert_eq!(
        sample_sum(&page, "fjord_produce_requests_total") - sample_sum(&page_before, "fjord_produce_requests_total"),
        produced.requests as f64
    );
    check_histogram_series(&page);
}
