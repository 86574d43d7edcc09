//! Property test of a partition's log against a simple model (STYLE.md: "property tests of the log
//! against a simple model"): a random run of appends (acks=1 and acks=all, several batches per
//! produce, waited on at once or later), reads at random offsets with random max_bytes,
//! ListOffsets lookups, close-and-reopen, and truncation, with a small segment size so that
//! segments roll and a cache budget that is either zero (every read from the files), small or large.
//!
//! After every step the partition must agree with a `Vec` of batches:
//! - offsets are assigned contiguously, starting where the log ends;
//! - reads return whole batches starting with the one that holds the requested offset, byte for
//!   byte what was produced with the base offset and leader epoch assigned;
//! - once a produce's ticket completes, the high watermark has reached its end;
//! - ListOffsets finds the first record whose timestamp reaches the target, and the first record
//!   holding the largest timestamp;
//! - everything survives close and reopen;
//! - truncation removes exactly the batches holding offsets at or past the truncation point
//!   (Kafka's `Log.truncateTo`, KIP-101), nothing more.

mod common;

use std::rc::Rc;

use bytes::Bytes;
use common::*;
use fjord_engine::cache::CacheBudget;
use fjord_engine::partition::{Acks, AppendTicket, Partition};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct BatchShape {
    record_count: usize,
    value_bytes: usize,
    /// Added to a timestamp that otherwise grows 1 s a batch: clients' clocks are not in order.
    timestamp_skew_ms: i64,
}

#[derive(Debug, Clone)]
enum Op {
    /// One produce request with one or more batches; `wait` awaits every outstanding ticket.
    Append { batches: Vec<BatchShape>, acks: Acks, wait: bool },
    /// Read at `offset_pick % (end + 3)` (so also at and past the end).
    Read { offset_pick: u32, max_bytes: usize },
    /// ListOffsets: `offset_for_timestamp` near a batch's max timestamp (picked by `batch_pick`,
    /// moved by `delta_ms`), and `max_timestamp`.
    ListOffsets { batch_pick: u32, delta_ms: i64 },
    /// Close (which must flush what is queued) and open again.
    Reopen,
    /// Truncate to an offset picked by `target`.
    Truncate { target: TruncateTarget },
}

/// Where to truncate: anywhere (mostly inside a batch), at a batch boundary, or at the base of a
/// segment (which makes the previous, sealed segment the active one again).
#[derive(Debug, Clone)]
enum TruncateTarget {
    Anywhere(u32),
    BatchBase(u32),
    SegmentBase(u32),
}

#[derive(Debug, Clone)]
struct Scenario {
    segment_bytes: u64,
    cache_bytes: usize,
    ops: Vec<Op>,
}

fn batch_shape() -> impl Strategy<Value = BatchShape> {
    (1usize..=12, prop_oneof![0usize..=64, 0usize..=700], prop_oneof![Just(0i64), -5_000i64..=5_000])
        .prop_map(|(record_count, value_bytes, timestamp_skew_ms)| BatchShape { record_count, value_bytes, timestamp_skew_ms })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec(batch_shape(), 1..=3), any::<bool>(), any::<bool>()).prop_map(|(batches, synced, wait)| {
            Op::Append { batches, acks: if synced { Acks::Synced } else { Acks::Written }, wait }
        }),
        4 => (any::<u32>(), prop_oneof![1usize..=64, 64usize..=40_000]).prop_map(|(offset_pick, max_bytes)| Op::Read { offset_pick, max_bytes }),
        2 => (any::<u32>(), -2i64..=2).prop_map(|(batch_pick, delta_ms)| Op::ListOffsets { batch_pick, delta_ms }),
        2 => Just(Op::Reopen),
        2 => prop_oneof![
            any::<u32>().prop_map(TruncateTarget::Anywhere),
            any::<u32>().prop_map(TruncateTarget::BatchBase),
            any::<u32>().prop_map(TruncateTarget::SegmentBase),
        ]
        .prop_map(|target| Op::Truncate { target }),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (2048u64..=24_576, prop_oneof![Just(0usize), Just(16 * 1024), Just(8 << 20)], prop::collection::vec(op(), 1..=40))
        .prop_map(|(segment_bytes, cache_bytes, ops)| Scenario { segment_bytes, cache_bytes, ops })
}

/// The partition under test, the model it must match, and the produce tickets not yet awaited.
struct Harness {
    dir: tempfile::TempDir,
    scenario: Scenario,
    budget: Rc<CacheBudget>,
    partition: Rc<Partition>,
    model: Model,
    outstanding: Vec<(AppendTicket, i64)>,
    seed: u64,
}

impl Harness {
    async fn new(scenario: Scenario) -> Harness {
        let dir = temp_dir();
        let budget = CacheBudget::new(scenario.cache_bytes);
        let partition = open_partition(dir.path(), topic_config(scenario.segment_bytes), budget.clone()).await;
        Harness { dir, scenario, budget, partition, model: Model::default(), outstanding: Vec::new(), seed: 0 }
    }

    fn pick(&self, offset_pick: u32) -> i64 {
        offset_pick as i64 % (self.model.end_offset() + 3)
    }

    /// Awaits every outstanding ticket in order; each must succeed and leave the high watermark
    /// at or past its end. Afterwards the high watermark is the log end.
    async fn settle(&mut self, partition: &Partition) -> Result<(), String> {
        for (ticket, end) in std::mem::take(&mut self.outstanding) {
            ticket.wait().await.map_err(|code| format!("append ending at {end} failed with Kafka error {code}"))?;
            if partition.high_watermark() < end {
                return Err(format!(
                    "ticket for an append ending at {end} completed with high watermark {}",
                    partition.high_watermark()
                ));
            }
        }
        if partition.high_watermark() != self.model.end_offset() || partition.log_end_offset() != self.model.end_offset() {
            return Err(format!(
                "after every ticket completed: high watermark {}, log end {}, model end {}",
                partition.high_watermark(),
                partition.log_end_offset(),
                self.model.end_offset()
            ));
        }
        Ok(())
    }

    async fn apply(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Append { batches, acks, wait } => {
                let mut produced = Vec::new();
                for shape in batches {
                    self.seed += 1;
                    let timestamp = 1_700_000_000_000 + self.seed as i64 * 1_000 + shape.timestamp_skew_ms;
                    produced.extend(BatchSpec::simple(shape.record_count, shape.value_bytes, self.seed, timestamp).encode());
                }
                let expected_base = self.model.append(&produced);
                let ticket = self
                    .partition
                    .append(Bytes::from(produced), *acks)
                    .await
                    .map_err(|error| format!("valid append refused: {error}"))?;
                if ticket.base_offset != expected_base {
                    return Err(format!("append got base offset {}, expected {expected_base}", ticket.base_offset));
                }
                if self.partition.log_end_offset() != self.model.end_offset() {
                    return Err(format!(
                        "log end {} after append, expected {}",
                        self.partition.log_end_offset(),
                        self.model.end_offset()
                    ));
                }
                self.outstanding.push((ticket, self.model.end_offset()));
                if *wait {
                    let partition = self.partition.clone();
                    self.settle(&partition).await?;
                }
            }
            Op::Read { offset_pick, max_bytes } => {
                let partition = self.partition.clone();
                self.settle(&partition).await?;
                check_read(&self.partition, &self.model, self.pick(*offset_pick), *max_bytes)?;
            }
            Op::ListOffsets { batch_pick, delta_ms } => {
                let partition = self.partition.clone();
                self.settle(&partition).await?;
                self.check_list_offsets(*batch_pick, *delta_ms)?;
            }
            Op::Reopen => {
                let old = self.partition.clone();
                old.close().await.map_err(|error| format!("close failed: {error}"))?;
                self.settle(&old).await?;
                self.partition =
                    open_partition(self.dir.path(), topic_config(self.scenario.segment_bytes), self.budget.clone()).await;
                check_whole_log(&self.partition, &self.model).map_err(|error| format!("after reopen: {error}"))?;
            }
            Op::Truncate { target } => {
                let partition = self.partition.clone();
                self.settle(&partition).await?;
                let offset = match *target {
                    TruncateTarget::Anywhere(pick) => self.pick(pick),
                    TruncateTarget::BatchBase(pick) => match self.model.batches.len() {
                        0 => 0,
                        count => self.model.batches[pick as usize % count].base_offset,
                    },
                    TruncateTarget::SegmentBase(pick) => {
                        // Mostly the active segment's base: the sealed segment before it becomes
                        // active again, the interesting case.
                        let bases = segment_files(self.dir.path());
                        let from_last = if pick % 2 == 0 { 0 } else { pick as usize % bases.len() };
                        bases[bases.len() - 1 - from_last].0
                    }
                };
                self.partition.truncate_to(offset).await.map_err(|error| format!("truncate_to({offset}) failed: {error}"))?;
                self.model.truncate_to(offset);
                if self.partition.log_end_offset() != self.model.end_offset() {
                    return Err(format!(
                        "truncate_to({offset}) left log end {}; the model (no offset >= {offset} kept) ends at {}",
                        self.partition.log_end_offset(),
                        self.model.end_offset()
                    ));
                }
                check_whole_log(&self.partition, &self.model).map_err(|error| format!("after truncate_to({offset}): {error}"))?;
            }
        }
        Ok(())
    }

    /// ListOffsets against the model: the first record whose timestamp reaches a target near one
    /// of a batch's record timestamps, and the first record holding the largest timestamp.
    fn check_list_offsets(&self, batch_pick: u32, delta_ms: i64) -> Result<(), String> {
        let batches = &self.model.batches;
        let target = match batches.len() {
            0 => 1_700_000_000_000 + delta_ms,
            count => {
                let timestamps = &batches[batch_pick as usize % count].record_timestamps_ms;
                timestamps[(batch_pick as usize / count) % timestamps.len()] + delta_ms
            }
        };
        let expected = self.model.offset_for_timestamp(target);
        let found = self.partition.offset_for_timestamp(target).map_err(|error| format!("offset_for_timestamp: {error}"))?;
        if found != expected {
            return Err(format!("offset_for_timestamp({target}) = {found:?}, the model says {expected:?}"));
        }
        let found = self.partition.max_timestamp().map_err(|error| format!("max_timestamp: {error}"))?;
        if found != self.model.max_timestamp() {
            return Err(format!("max_timestamp() = {found:?}, the model says {:?}", self.model.max_timestamp()));
        }
        Ok(())
    }

    async fn run(mut self) -> Result<(), String> {
        let ops = self.scenario.ops.clone();
        for (step, op) in ops.iter().enumerate() {
            self.apply(op).await.map_err(|error| format!("step {step} {op:?}: {error}"))?;
        }
        let partition = self.partition.clone();
        self.settle(&partition).await?;
        check_whole_log(&self.partition, &self.model).map_err(|error| format!("at the end: {error}"))?;
        self.apply(&Op::Reopen).await.map_err(|error| format!("final reopen: {error}"))?;
        check_reads_at_every_batch(&self.partition, &self.model).map_err(|error| format!("after final reopen: {error}"))?;
        for batch_pick in 0..self.model.batches.len().min(20) as u32 {
            self.check_list_offsets(batch_pick, 0).map_err(|error| format!("after final reopen: {error}"))?;
        }
        self.partition.close().await.map_err(|error| format!("final close: {error}"))?;
        if self.budget.used_bytes() != 0 {
            return Err(format!("closed partition still holds {} bytes of cache budget", self.budget.used_bytes()));
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn partition_matches_model_across_appends_reads_reopens_and_truncations(scenario in scenario()) {
        let outcome = run(move || async move { Harness::new(scenario).await.run().await });
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}
