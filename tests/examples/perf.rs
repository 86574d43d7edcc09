//! A stop-gap load tool for the single-node figures (the real instrument, fjord-bench, comes with
//! the benchmark issue): librdkafka producers measure produce MB/s and ack latency, a consumer
//! measures catch-up fetch MB/s. Works against any Kafka-compatible broker.
//!
//! cargo run --release -p fjord-tests --example perf -- BOOTSTRAP TOPIC ACKS RECORDS RECORD_BYTES [RATE]
//!
//! With RATE (records/s) sends follow a fixed schedule and latency counts from the scheduled send
//! time (open loop, no coordinated omission); without it the producer runs flat out and the
//! latency mostly measures its own queue.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

struct Latency {
    histogram: Arc<Mutex<Histogram<u64>>>,
    errors: Arc<Mutex<u64>>,
}

impl ClientContext for Latency {}

impl ProducerContext for Latency {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, result: &DeliveryResult<'_>, sent_at: Box<Instant>) {
        match result {
            Ok(_) => {
                let micros = sent_at.elapsed().as_micros() as u64;
                let _ = self.histogram.lock().expect("histogram").record(micros.max(1));
            }
            Err(_) => *self.errors.lock().expect("errors") += 1,
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 && args.len() != 7 {
        eprintln!("usage: perf BOOTSTRAP TOPIC ACKS RECORDS RECORD_BYTES [RATE]");
        std::process::exit(2);
    }
    let (bootstrap, topic, acks) = (&args[1], &args[2], &args[3]);
    let records: usize = args[4].parse().expect("RECORDS");
    let record_bytes: usize = args[5].parse().expect("RECORD_BYTES");
    let rate: Option<f64> = args.get(6).map(|rate| rate.parse().expect("RATE"));
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram")));
    let errors = Arc::new(Mutex::new(0u64));
    let producer: BaseProducer<Latency> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set("linger.ms", std::env::var("PERF_LINGER_MS").unwrap_or_else(|_| "5".into()))
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "262144")
        .set("enable.idempotence", "false")
        .create_with_context(Latency { histogram: histogram.clone(), errors: errors.clone() })
        .expect("producer");
    let payload = vec![b'x'; record_bytes];
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    for index in 0..records {
        let key = (index % 1024).to_string();
        let scheduled = match rate {
            Some(rate) => {
                let at = started + Duration::from_secs_f64(index as f64 / rate);
                // Sleep (do not spin: client and broker share this machine's cores) until the
                // scheduled time; the latency still counts from the schedule.
                loop {
                    let now = Instant::now();
                    if now >= at {
                        break;
                    }
                    producer.poll(Duration::ZERO);
                    std::thread::sleep((at - now).min(Duration::from_millis(1)));
                }
                at
            }
            None => Instant::now(),
        };
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(scheduled)).payload(&payload).key(&key);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    record = returned;
                    producer.poll(Duration::from_millis(1));
                }
            }
            if Instant::now() > deadline {
                eprintln!("gave up: time bound reached");
                std::process::exit(1);
            }
        }
        if index % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    let elapsed = started.elapsed().as_secs_f64();
    let histogram = histogram.lock().expect("histogram");
    let megabytes = (records * record_bytes) as f64 / 1e6;
    println!(
        "produce acks={acks}: {records} x {record_bytes} B in {elapsed:.2} s = {:.1} MB/s, {:.0} rec/s; ack latency p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms max {:.2} ms; errors {}",
        megabytes / elapsed,
        records as f64 / elapsed,
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.value_at_quantile(0.999) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0,
        errors.lock().expect("errors"),
    );
    if rate.is_none() {
        catch_up(bootstrap, topic);
    }
}

/// Reads the whole topic from offset 0 and reports MB/s.
fn catch_up(bootstrap: &str, topic: &str) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "perf")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .expect("consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut assignment = TopicPartitionList::new();
    let mut total_records = 0i64;
    for partition in 0..partitions {
        let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)).expect("watermarks");
        total_records += high;
        assignment.add_partition_offset(topic, partition, Offset::Beginning).expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let started = Instant::now();
    let (mut count, mut bytes) = (0i64, 0usize);
    while count < total_records && started.elapsed() < Duration::from_secs(120) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) {
            count += 1;
            bytes += message.payload().map(|payload| payload.len()).unwrap_or(0);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "catch-up fetch: {count} records, {:.1} MB in {elapsed:.2} s = {:.1} MB/s",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / elapsed
    );
}
