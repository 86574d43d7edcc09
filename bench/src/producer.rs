//! A producer: one connection, a set of partitions, pre-built requests, and up to `max_inflight`
//! requests in flight. The sending thread keeps the schedule; a reader thread on a clone of the
//! socket takes the responses (Kafka answers in request order on a connection) and records
//! latency from each request's due time.
//!
//! ```text
//!  sender:  wait for due time ─▶ take an in-flight slot ─▶ stamp + CRC ─▶ write
//!                                     │ (bounded channel, max_inflight − 1 + the one being read)
//!  reader:  take the oldest slot ─▶ read its response ─▶ count, record latency, free the slot
//! ```

use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::{ApiKey, ProduceResponse};

use crate::batch::{BatchSpec, ProduceTemplate};
use crate::error::{BenchError, Result};
use crate::rng::Rng;
use crate::schedule::{latency_ns, sleep_until, Schedule};
use crate::shared::Shared;
use crate::wire::{self, ResponseReader, Timeouts};
use crate::workload::{KeyDistribution, Workload};

#[derive(Debug, Clone)]
pub struct ProducerPlan {
    pub name: String,
    pub address: String,
    pub topic: String,
    pub partitions: Vec<i32>,
    /// 0 = closed loop.
    pub rate_records_per_second: f64,
    pub batch_records: u32,
    pub workload: Workload,
    pub timeouts: Timeouts,
    pub start: Instant,
    /// No batch due at or after this is sent.
    pub end: Instant,
    pub seed: u64,
}

struct InFlight {
    correlation_id: i32,
    due: Instant,
    records: u64,
    batch_bytes: u64,
    payload_bytes: u64,
}

pub fn run_producer(plan: ProducerPlan, shared: Arc<Shared>) -> Result<()> {
    let mut connection = wire::open(&plan.address, plan.timeouts)?;
    let version = connection.version_of(ApiKey::Produce)?;
    let mut rng = Rng::new(plan.seed);
    let mut templates = plan
        .partitions
        .iter()
        .map(|&partition| {
            let spec = BatchSpec {
                topic: plan.topic.clone(),
                partition,
                records: plan.batch_records,
                record_size_bytes: plan.workload.record_size_bytes,
                key_distribution: plan.workload.key_distribution,
                compression: plan.workload.compression.into(),
                acks: plan.workload.acks.wire(),
                timeout_ms: plan.timeouts.request_timeout_ms(),
                produce_version: version,
            };
            ProduceTemplate::build(spec, &mut rng)
        })
        .collect::<Result<Vec<_>>>()?;
    if templates.is_empty() {
        return Ok(());
    }
    let schedule = if plan.rate_records_per_second > 0.0 {
        Schedule::open_loop(plan.start, plan.rate_records_per_second, plan.batch_records)
    } else {
        Schedule::closed_loop(plan.start)
    };
    let acks_none = plan.workload.acks.wire() == 0;
    let (sender, reader) = if acks_none {
        (None, None)
    } else {
        let (sender, receiver) = sync_channel::<InFlight>(plan.workload.max_inflight as usize - 1);
        let responses = connection.response_reader()?;
        let shared = Arc::clone(&shared);
        let reader = std::thread::Builder::new()
            .name(format!("{}-acks", plan.name))
            .spawn(move || read_acks(responses, version, receiver, &shared))
            .map_err(|e| BenchError::io("spawning an ack reader", e))?;
        (Some(sender), Some(reader))
    };

    let mut sent: u64 = 0;
    let mut cursor: usize = 0;
    let outcome = loop {
        if shared.stop_producers.load(Ordering::Relaxed) {
            break Ok(());
        }
        let due = match schedule.due_at(sent) {
            Some(due) if due >= plan.end => break Ok(()),
            Some(due) => {
                if !sleep_until(due, &shared.stop_producers) {
                    break Ok(());
                }
                due
            }
            None => {
                let now = Instant::now();
                if now >= plan.end {
                    break Ok(());
                }
                now
            }
        };
        let index = match plan.workload.key_distribution {
            KeyDistribution::Random => rng.below(templates.len() as u64) as usize,
            KeyDistribution::None | KeyDistribution::RoundRobin => {
                cursor = (cursor + 1) % templates.len();
                cursor
            }
        };
        let template = &mut templates[index];
        let correlation_id = connection.next_correlation_id();
        let records = template.records() as u64;
        let payload_bytes = template.payload_bytes();
        let (frame, batch_bytes) = template.prepare(correlation_id, shared.realtime_ns_at(due))?;
        let batch_bytes = batch_bytes as u64;
        if let Some(sender) = &sender {
            // Blocks while max_inflight requests are outstanding; fails once the reader is gone.
            let slot = InFlight { correlation_id, due, records, batch_bytes, payload_bytes };
            if sender.send(slot).is_err() {
                break Ok(());
            }
        }
        if let Err(e) = connection.send_frame(frame) {
            break Err(e.into());
        }
        if acks_none {
            shared.produced.add(records, batch_bytes, payload_bytes);
        }
        sent += 1;
    };
    drop(sender);
    if let Some(reader) = reader {
        match reader.join() {
            Ok(result) => result?,
            Err(_) => return Err(BenchError::Protocol { address: plan.address, detail: "ack reader panicked".to_string() }),
        }
    }
    outcome
}

fn read_acks(mut responses: ResponseReader, version: i16, slots: Receiver<InFlight>, shared: &Shared) -> Result<()> {
    while let Ok(slot) = slots.recv() {
        let response: ProduceResponse = responses.read(ApiKey::Produce, version, slot.correlation_id)?;
        let completed = Instant::now();
        let error = response.responses.iter().flat_map(|t| t.partition_responses.iter()).map(|p| p.error_code).find(|&c| c != 0);
        match error {
            Some(code) => {
                shared.produced.add_error();
                shared.note_broker_error(code);
            }
            None => {
                shared.produced.add(slot.records, slot.batch_bytes, slot.payload_bytes);
                shared.produce_latency.record(latency_ns(slot.due, completed));
            }
        }
    }
    Ok(())
}
