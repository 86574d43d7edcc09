//! One benchmark run: set up the topic, start consumers and producers, report once a second,
//! stop on time, and assemble the report. Every phase is bounded: setup by socket timeouts and
//! the topic-ready wait, the run by warm-up + duration, shutdown by a fixed grace period.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::admin::{ensure_topic, list_offsets, TopicLayout, OFFSET_EARLIEST, OFFSET_LATEST};
use crate::batch::realtime_ns;
use crate::broker_metrics;
use crate::broker_probe::{self, BrokerFigures, ProcSample};
use crate::consumer::{run_consumer, ConsumerPlan};
use crate::error::{BenchError, Result};
use crate::producer::{run_producer, ProducerPlan};
use crate::report::{Report, SecondSample, Side, REPORT_FORMAT_VERSION};
use crate::schedule::sleep_until;
use crate::shared::{spawn_worker, Shared};
use crate::stats::{p99_ms, summarize, CounterSnapshot};
use crate::wire::{self, Timeouts};
use crate::workload::{Mode, Workload};

/// Time the workers get to connect before the schedule starts.
const STARTUP_GRACE: Duration = Duration::from_millis(300);
/// How long consumers may take to read what producers wrote before an end-to-end run ends.
const E2E_DRAIN_MAX: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_secs(1);
const POLL_SLICE: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub bootstrap: String,
    pub label: String,
    pub pin_cores: bool,
    pub broker_pid: Option<u32>,
    /// host:port of the broker's Prometheus endpoint, for broker-side request times.
    pub broker_metrics: Option<String>,
    pub timeouts: Timeouts,
    pub prefill_timeout: Duration,
    pub progress: bool,
}

/// Partitions of worker `index` of `count`, grouped by the broker leading them: one connection
/// (and thread) per group.
fn assign(layout: &TopicLayout, index: usize, count: usize) -> Result<BTreeMap<String, Vec<i32>>> {
    let mut groups: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (position, &partition) in layout.leaders.keys().enumerate() {
        if position % count == index {
            groups.entry(layout.address_of(partition)?.to_string()).or_default().push(partition);
        }
    }
    Ok(groups)
}

fn core_for(cores: &[core_affinity::CoreId], worker: usize) -> Option<core_affinity::CoreId> {
    (!cores.is_empty()).then(|| cores[worker % cores.len()])
}

struct ProducerFleet {
    workers: usize,
    batch_records: u32,
}

#[allow(clippy::too_many_arguments)]
fn spawn_producers(
    workload: &Workload,
    layout: &TopicLayout,
    options: &RunOptions,
    shared: &Arc<Shared>,
    start: Instant,
    end: Instant,
    rate_records_per_second: f64,
    cores: &[core_affinity::CoreId],
) -> Result<ProducerFleet> {
    let total_partitions = layout.partition_count() as f64;
    let mut fleet = ProducerFleet { workers: 0, batch_records: workload.batch_records_nominal() };
    for producer in 0..workload.producers as usize {
        for (address, partitions) in assign(layout, producer, workload.producers as usize)? {
            let rate = rate_records_per_second * partitions.len() as f64 / total_partitions;
            let batch_records = workload.batch_records_for_rate(rate);
            fleet.batch_records = batch_records;
            let plan = ProducerPlan {
                name: format!("producer-{producer}-{}", fleet.workers),
                address,
                topic: workload.topic.clone(),
                partitions,
                rate_records_per_second: rate,
                batch_records,
                workload: workload.clone(),
                timeouts: options.timeouts,
                start,
                end,
                seed: 0x5eed_0000 + fleet.workers as u64,
            };
            let shared_for_worker = Arc::clone(shared);
            spawn_worker(shared, plan.name.clone(), core_for(cores, fleet.workers), move || {
                run_producer(plan, shared_for_worker)
            })?;
            fleet.workers += 1;
        }
    }
    Ok(fleet)
}

#[allow(clippy::too_many_arguments)]
fn spawn_consumers(
    workload: &Workload,
    layout: &TopicLayout,
    options: &RunOptions,
    shared: &Arc<Shared>,
    offsets: &BTreeMap<i32, (i64, Option<i64>)>,
    cores: &[core_affinity::CoreId],
    core_offset: usize,
    start: Instant,
) -> Result<usize> {
    let mut workers = 0;
    for consumer in 0..workload.consumers as usize {
        for (address, partitions) in assign(layout, consumer, workload.consumers as usize)? {
            let partitions = partitions.iter().map(|p| (*p, offsets[p].0, offsets[p].1)).collect();
            let plan = ConsumerPlan {
                name: format!("consumer-{consumer}-{workers}"),
                address,
                topic: workload.topic.clone(),
                partitions,
                workload: workload.clone(),
                timeouts: options.timeouts,
                measure_e2e: workload.mode == Mode::E2e,
                start,
            };
            let shared_for_worker = Arc::clone(shared);
            let core = core_for(cores, core_offset + workers);
            spawn_worker(shared, plan.name.clone(), core, move || run_consumer(plan, shared_for_worker))?;
            workers += 1;
        }
    }
    Ok(workers)
}

/// Waits for all workers within the shutdown grace period.
fn join_workers(shared: &Shared, timeouts: Timeouts) -> Result<()> {
    let deadline = Instant::now() + timeouts.io * 2 + Duration::from_secs(5);
    if shared.wait_workers(deadline) {
        Ok(())
    } else {
        Err(BenchError::Timeout(format!(
            "{} worker(s) did not stop within the shutdown grace period",
            shared.workers_running.load(Ordering::SeqCst)
        )))
    }
}

fn failures_to_error(shared: &Shared) -> Result<()> {
    let failures = shared.failures();
    if failures.is_empty() {
        return Ok(());
    }
    Err(BenchError::Failed(failures))
}

/// Consume mode: make sure the topic holds about `prefill_bytes` of payload, producing (closed
/// loop, unmeasured) what is missing.
fn prefill(workload: &Workload, layout: &TopicLayout, options: &RunOptions, cores: &[core_affinity::CoreId]) -> Result<()> {
    let earliest = list_offsets(layout, &workload.topic, OFFSET_EARLIEST, options.timeouts)?;
    let latest = list_offsets(layout, &workload.topic, OFFSET_LATEST, options.timeouts)?;
    let existing_records: i64 = latest.iter().map(|(p, end)| end - earliest[p]).sum();
    let wanted_records = workload.prefill_bytes / workload.record_size_bytes as u64;
    if existing_records.max(0) as u64 >= wanted_records {
        return Ok(());
    }
    let missing = wanted_records - existing_records.max(0) as u64;
    eprintln!(
        "prefill: producing {missing} records ({:.1} MB) into {} first",
        missing as f64 * workload.record_size_bytes as f64 / 1e6,
        workload.topic
    );
    let shared = Arc::new(Shared::new());
    let start = Instant::now() + STARTUP_GRACE;
    let deadline = start + options.prefill_timeout;
    spawn_producers(workload, layout, options, &shared, start, deadline, 0.0, cores)?;
    let mut next_report = Instant::now() + TICK;
    loop {
        let produced = shared.produced.snapshot().records;
        if produced >= missing || shared.is_fatal() {
            break;
        }
        if Instant::now() >= deadline {
            shared.stop_producers.store(true, Ordering::SeqCst);
            return Err(BenchError::Timeout(format!(
                "prefill wrote {produced} of {missing} records in {:?}",
                options.prefill_timeout
            )));
        }
        if options.progress && Instant::now() >= next_report {
            eprintln!("prefill: {produced}/{missing} records");
            next_report += TICK;
        }
        std::thread::sleep(POLL_SLICE);
    }
    shared.stop_producers.store(true, Ordering::SeqCst);
    join_workers(&shared, options.timeouts)?;
    failures_to_error(&shared)
}

struct Tracker {
    last_produced: CounterSnapshot,
    last_consumed: CounterSnapshot,
    last_at: Instant,
    samples: Vec<SecondSample>,
}

impl Tracker {
    fn sample(&mut self, shared: &Shared, second: u64, warmup: bool, now: Instant) -> &SecondSample {
        let produced = shared.produced.snapshot();
        let consumed = shared.consumed.snapshot();
        let seconds = now.saturating_duration_since(self.last_at).as_secs_f64().max(1e-3);
        let p = produced.since(&self.last_produced);
        let c = consumed.since(&self.last_consumed);
        self.samples.push(SecondSample {
            second,
            warmup,
            produce_records_per_second: p.records as f64 / seconds,
            produce_mb_per_second: p.batch_bytes as f64 / seconds / 1e6,
            consume_records_per_second: c.records as f64 / seconds,
            consume_mb_per_second: c.batch_bytes as f64 / seconds / 1e6,
            produce_p99_ms: p99_ms(&shared.produce_latency.take_interval()),
            e2e_p99_ms: p99_ms(&shared.e2e_latency.take_interval()),
        });
        self.last_produced = produced;
        self.last_consumed = consumed;
        self.last_at = now;
        self.samples.last().expect("just pushed")
    }
}

fn progress_line(sample: &SecondSample, mode: Mode) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} ms"));
    let mut line = format!("[{:>5}s]", sample.second);
    if mode != Mode::Consume {
        line += &format!(
            " produce {:>8.1} MB/s {:>9.0} rec/s p99 {}",
            sample.produce_mb_per_second,
            sample.produce_records_per_second,
            ms(sample.produce_p99_ms)
        );
    }
    if mode != Mode::Produce {
        line +=
            &format!(" | consume {:>8.1} MB/s {:>9.0} rec/s", sample.consume_mb_per_second, sample.consume_records_per_second);
        if mode == Mode::E2e {
            line += &format!(" e2e p99 {}", ms(sample.e2e_p99_ms));
        }
    }
    if sample.warmup {
        line += " (warm-up)";
    }
    line
}

pub fn run(workload: &Workload, options: &RunOptions) -> Result<Report> {
    workload.validate()?;
    let started_at_unix_ms = realtime_ns() / 1_000_000;
    let mut bootstrap = wire::open(&options.bootstrap, options.timeouts)?;
    let creates = workload.mode != Mode::Consume || workload.prefill_bytes > 0;
    let layout = ensure_topic(&mut bootstrap, &workload.topic, workload.partitions, workload.replication_factor, creates)?;
    drop(bootstrap);
    if layout.partition_count() != workload.partitions {
        eprintln!(
            "note: topic {} has {} partitions (workload says {}); using the topic's",
            workload.topic,
            layout.partition_count(),
            workload.partitions
        );
    }
    let cores = if options.pin_cores { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };
    if workload.mode == Mode::Consume && workload.prefill_bytes > 0 {
        prefill(workload, &layout, options, &cores)?;
    }

    let shared = Arc::new(Shared::new());
    let warmup = Duration::from_secs(if workload.mode == Mode::Consume { 0 } else { workload.warmup_seconds });
    let duration = Duration::from_secs(workload.duration_seconds);

    let start = Instant::now() + STARTUP_GRACE;
    let measure_start = start + warmup;
    let end = measure_start + duration;
    let mut consumer_workers = 0;
    if workload.mode != Mode::Produce {
        let offsets: BTreeMap<i32, (i64, Option<i64>)> = if workload.mode == Mode::Consume {
            let earliest = list_offsets(&layout, &workload.topic, OFFSET_EARLIEST, options.timeouts)?;
            let latest = list_offsets(&layout, &workload.topic, OFFSET_LATEST, options.timeouts)?;
            earliest.iter().map(|(p, start)| (*p, (*start, Some(latest[p])))).collect()
        } else {
            let latest = list_offsets(&layout, &workload.topic, OFFSET_LATEST, options.timeouts)?;
            latest.iter().map(|(p, end)| (*p, (*end, None))).collect()
        };
        let producer_count = if workload.mode == Mode::E2e { workload.producers as usize } else { 0 };
        consumer_workers = spawn_consumers(workload, &layout, options, &shared, &offsets, &cores, producer_count, start)?;
    }
    let mut batch_records = workload.batch_records_nominal();
    if workload.mode != Mode::Consume {
        let rate = workload.target_rate_records_per_second as f64;
        batch_records = spawn_producers(workload, &layout, options, &shared, start, end, rate, &cores)?.batch_records;
    }

    let probe_pid = options.broker_pid;
    let mut broker_start: Option<ProcSample> = None;
    let mut rss_peak_bytes = 0u64;
    let mut metrics_start: Option<String> = None;
    let mut baseline = (CounterSnapshot::default(), CounterSnapshot::default());
    let mut measuring = false;
    sleep_until(start, &shared.fatal);
    let mut tracker = Tracker {
        last_produced: shared.produced.snapshot(),
        last_consumed: shared.consumed.snapshot(),
        last_at: start,
        samples: Vec::new(),
    };
    let mut next_tick = start + TICK;
    let mut second = 0u64;
    let measure_end = loop {
        let now = Instant::now();
        if !measuring && now >= measure_start {
            measuring = true;
            shared.produce_latency.reset_total();
            shared.e2e_latency.reset_total();
            baseline = (shared.produced.snapshot(), shared.consumed.snapshot());
            if let Some(pid) = probe_pid {
                broker_start = Some(broker_probe::sample(pid)?);
            }
            if let Some(address) = &options.broker_metrics {
                metrics_start = Some(broker_metrics::scrape(address)?);
            }
        }
        let caught_up = workload.mode == Mode::Consume && shared.consumers_caught_up.load(Ordering::SeqCst) >= consumer_workers;
        if now >= next_tick && !caught_up && !shared.is_fatal() {
            second += 1;
            let sample = tracker.sample(&shared, second, next_tick <= measure_start, now);
            if options.progress {
                eprintln!("{}", progress_line(sample, workload.mode));
            }
            if let Some(pid) = probe_pid {
                rss_peak_bytes = rss_peak_bytes.max(broker_probe::sample(pid)?.rss_bytes);
            }
            next_tick += TICK;
            continue;
        }
        if shared.is_fatal() || caught_up || now >= end {
            break if caught_up { shared.caught_up_at().unwrap_or(now).min(end) } else { now.min(end) };
        }
        std::thread::sleep(next_tick.min(end).saturating_duration_since(now).min(POLL_SLICE));
    };
    let final_produced = shared.produced.snapshot();
    let final_consumed = shared.consumed.snapshot();
    let broker_end = probe_pid.map(broker_probe::sample).transpose()?;
    let metrics_end = options.broker_metrics.as_deref().map(broker_metrics::scrape).transpose()?;

    shared.stop_producers.store(true, Ordering::SeqCst);
    if workload.mode == Mode::E2e {
        let drain_deadline = Instant::now() + E2E_DRAIN_MAX;
        while Instant::now() < drain_deadline
            && !shared.is_fatal()
            && shared.consumed.snapshot().records < shared.produced.snapshot().records
        {
            std::thread::sleep(POLL_SLICE);
        }
    }
    shared.stop_consumers.store(true, Ordering::SeqCst);
    join_workers(&shared, options.timeouts)?;
    failures_to_error(&shared)?;

    let measured_seconds = measure_end.saturating_duration_since(measure_start.min(measure_end)).as_secs_f64();
    let produced = final_produced.since(&baseline.0);
    let consumed = final_consumed.since(&baseline.1);
    if workload.mode != Mode::Consume && produced.records == 0 {
        return Err(BenchError::Workload(format!(
            "no record was acknowledged in the measured {measured_seconds:.1} s (broker errors: {:?})",
            shared.broker_errors()
        )));
    }
    let broker: Option<BrokerFigures> = match (probe_pid, broker_start, broker_end) {
        (Some(pid), Some(start), Some(end)) => Some(broker_probe::figures(pid, start, end, rss_peak_bytes, produced.batch_bytes)),
        _ => None,
    };
    let apis: &[&str] = match workload.mode {
        Mode::Produce => &["Produce"],
        Mode::Consume => &["Fetch"],
        Mode::E2e => &["Produce", "Fetch"],
    };
    let broker_request_times = match (&metrics_start, &metrics_end) {
        (Some(start), Some(end)) => apis
            .iter()
            .map(|api| broker_metrics::parse_buckets(end, api).since(&broker_metrics::parse_buckets(start, api)).times(api))
            .collect(),
        _ => Vec::new(),
    };
    let mut recorded = workload.clone();
    recorded.warmup_seconds = warmup.as_secs();
    Ok(Report {
        format_version: REPORT_FORMAT_VERSION,
        tool: "fjord-bench".to_string(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        label: options.label.clone(),
        bootstrap: options.bootstrap.clone(),
        started_at_unix_ms,
        workload: recorded,
        topic_partitions: layout.partition_count(),
        batch_records,
        pinned_cores: !cores.is_empty(),
        measured_seconds,
        produce: (workload.mode != Mode::Consume)
            .then(|| Side::new(produced, measured_seconds, summarize(&shared.produce_latency.total()))),
        consume: (workload.mode != Mode::Produce)
            .then(|| Side::new(consumed, measured_seconds, summarize(&shared.e2e_latency.total()))),
        broker,
        broker_request_times,
        broker_errors: shared.broker_errors(),
        time_series: tracker.samples,
    })
}

/// One line per side for the end of a run.
pub fn summary_lines(report: &Report) -> Vec<String> {
    let mut lines = Vec::new();
    let latency = |side: &Side| {
        side.latency.as_ref().map_or(String::new(), |l| {
            format!(
                " | latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} p99.99 {:.2} max {:.2}",
                l.p50_ms, l.p90_ms, l.p99_ms, l.p99_9_ms, l.p99_99_ms, l.max_ms
            )
        })
    };
    for (name, side) in [("produce", &report.produce), ("consume", &report.consume)] {
        if let Some(side) = side {
            lines.push(format!(
                "{name}: {} records, {:.1} MB/s, {:.0} records/s, {} errors{}",
                side.records,
                side.mb_per_second,
                side.records_per_second,
                side.errors,
                latency(side)
            ));
        }
    }
    if let Some(broker) = &report.broker {
        lines.push(format!(
            "broker pid {}: {:.2} CPU s ({} per GB produced), RSS peak {:.1} MB",
            broker.pid,
            broker.cpu_seconds,
            broker.cpu_seconds_per_gb_produced.map_or("-".to_string(), |v| format!("{v:.2} s")),
            broker.rss_peak_sampled_bytes as f64 / 1e6
        ));
    }
    let ms = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.2}"));
    for times in &report.broker_request_times {
        lines.push(format!(
            "broker-side {} time: {} requests, ms p50 {} p99 {} p99.9 {} (bucket estimates)",
            times.api,
            times.requests,
            ms(times.p50_ms),
            ms(times.p99_ms),
            ms(times.p99_9_ms)
        ));
    }
    lines
}
