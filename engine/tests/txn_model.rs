//! Property test of the partition's transaction state against a simple model (KIP-98): random
//! interleavings of transactional appends of three producers, plain appends, commits and aborts,
//! flushes and restarts. After every step the last stable offset must equal the model's
//! min(first offset of every undecided transaction, high watermark) — a transaction is undecided
//! while open, and while its marker is queued but not written — and a read_committed fetch at a
//! random offset must return only data below it, with an aborted list that holds every aborted
//! transaction overlapping the returned data and nothing outside [fetch offset, LSO).

mod common;

use std::rc::Rc;

use bytes::Bytes;
use common::*;
use fjord_engine::cache::CacheBudget;
use fjord_engine::partition::{Acks, AppendTicket, Isolation, Partition};
use fjord_engine::producer_state::{AbortedTxn, ControlType};
use proptest::prelude::*;

const PRODUCERS: i64 = 3;

#[derive(Debug, Clone)]
enum Op {
    /// A transactional batch of `count` records from producer `producer`.
    Txn {
        producer: i64,
        count: usize,
    },
    Plain {
        count: usize,
    },
    End {
        producer: i64,
        commit: bool,
    },
    /// Wait for every queued append (the high watermark reaches the log end).
    Flush,
    /// A read_committed fetch at this fraction (per mille) of the high watermark.
    Read {
        per_mille: u16,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..PRODUCERS, 1usize..4).prop_map(|(producer, count)| Op::Txn { producer, count }),
        2 => (1usize..4).prop_map(|count| Op::Plain { count }),
        3 => (0..PRODUCERS, any::<bool>()).prop_map(|(producer, commit)| Op::End { producer, commit }),
        2 => Just(Op::Flush),
        3 => (0u16..=1000).prop_map(|per_mille| Op::Read { per_mille }),
        1 => Just(Op::Restart),
    ]
}

#[derive(Default)]
struct Model {
    next_offset: i64,
    /// Per producer: first offset of its open transaction, next sequence.
    open: [Option<i64>; PRODUCERS as usize],
    sequence: [i32; PRODUCERS as usize],
    /// Decided transactions: (first offset, marker offset).
    decided: Vec<(i64, i64)>,
    aborted: Vec<AbortedTxn>,
}

impl Model {
    fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        let open = self.open.iter().flatten().copied();
        let queued = self.decided.iter().filter(|(_, marker)| *marker >= high_watermark).map(|(first, _)| *first);
        open.chain(queued).chain([high_watermark]).min().expect("the high watermark")
    }
}

fn txn_batch(producer_id: i64, sequence: i32, count: usize, seed: u64) -> Vec<u8> {
    let mut batch = BatchSpec::simple(count, 20, seed, 1_700_000_000_000).encode();
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&0i16.to_be_bytes());
    batch[53..57].copy_from_slice(&sequence.to_be_bytes());
    batch[21..23].copy_from_slice(&0x10i16.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

async fn check(partition: &Partition, model: &Model, read_at: Option<u16>) -> Result<(), String> {
    let high_watermark = partition.high_watermark();
    let expected = model.last_stable_offset(high_watermark);
    let lso = partition.last_stable_offset();
    if lso != expected {
        return Err(format!("LSO {lso}, model {expected} (high watermark {high_watermark})"));
    }
    // An abort enters the index when its marker is written, before the high watermark passes it:
    // every abort below the high watermark is there, and one whose marker is being written may be.
    let written: Vec<AbortedTxn> = model.aborted.iter().copied().filter(|txn| txn.last_offset < high_watermark).collect();
    let index = partition.aborted_txns();
    if written.iter().any(|txn| !index.contains(txn)) || index.iter().any(|txn| !model.aborted.contains(txn)) {
        return Err(format!("aborted index {index:?}, model {written:?} below the high watermark"));
    }
    let Some(per_mille) = read_at else { return Ok(()) };
    let fetch_offset = high_watermark * per_mille as i64 / 1000;
    let result = partition.read(fetch_offset, 1 << 20, Isolation::ReadCommitted).map_err(|error| error.to_string())?;
    if result.last_stable_offset != lso {
        return Err(format!("read's LSO {} != {lso}", result.last_stable_offset));
    }
    let batches = whole_batches(&result_bytes(&result)).0;
    let upper = batches.last().map_or(fetch_offset, |batch| batch.last_offset + 1);
    // A read may end early (at a segment's end), never past the LSO, and is empty only at it.
    if fetch_offset < lso && batches.is_empty() || batches.iter().any(|batch| batch.last_offset >= lso) {
        return Err(format!("read at {fetch_offset} returned up to {upper}, LSO {lso}"));
    }
    let required: Vec<AbortedTxn> = if batches.is_empty() {
        Vec::new()
    } else {
        model.aborted.iter().copied().filter(|txn| txn.last_offset >= fetch_offset && txn.first_offset < upper).collect()
    };
    let allowed = |txn: &AbortedTxn| txn.last_offset >= fetch_offset && txn.first_offset < lso && model.aborted.contains(txn);
    if required.iter().any(|txn| !result.aborted.contains(txn)) || !result.aborted.iter().all(allowed) {
        return Err(format!("read at {fetch_offset} (to {upper}): aborted {:?}, required {required:?}", result.aborted));
    }
    if !result.aborted.windows(2).all(|pair| pair[0].last_offset < pair[1].last_offset) {
        return Err("aborted list not oldest first".into());
    }
    Ok(())
}

async fn run_ops(ops: Vec<Op>) -> Result<(), String> {
    let dir = temp_dir();
    let open = || async { open_partition(dir.path(), topic_config(2000), CacheBudget::new(1 << 20)).await };
    let mut partition: Rc<Partition> = open().await;
    let mut model = Model::default();
    let mut tickets: Vec<AppendTicket> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        let mut read_at = None;
        match op {
            Op::Txn { producer, count } => {
                let index = producer as usize;
                let batch = txn_batch(producer, model.sequence[index], count, step as u64);
                let ticket = partition.append(Bytes::from(batch), Acks::Written).await.map_err(|error| error.to_string())?;
                if ticket.base_offset != model.next_offset {
                    return Err(format!("step {step}: appended at {}, model {}", ticket.base_offset, model.next_offset));
                }
                model.open[index].get_or_insert(model.next_offset);
                model.sequence[index] += count as i32;
                model.next_offset += count as i64;
                tickets.push(ticket);
            }
            Op::Plain { count } => {
                let batch = BatchSpec::simple(count, 20, step as u64, 1_700_000_000_000).encode();
                tickets.push(partition.append(Bytes::from(batch), Acks::Written).await.map_err(|error| error.to_string())?);
                model.next_offset += count as i64;
            }
            Op::End { producer, commit } => {
                let control = if commit { ControlType::Commit } else { ControlType::Abort };
                let ticket = partition.append_marker(producer, 0, 0, control).await.map_err(|error| error.to_string())?;
                let marker = model.next_offset;
                model.next_offset += 1;
                let first = model.open[producer as usize].take().unwrap_or(marker);
                model.decided.push((first, marker));
                if !commit {
                    let others = model.open.iter().flatten().copied().min();
                    model.aborted.push(AbortedTxn {
                        producer_id: producer,
                        first_offset: first,
                        last_offset: marker,
                        last_stable_offset: others.unwrap_or(marker + 1),
                    });
                }
                tickets.push(ticket);
            }
            Op::Flush => {
                for ticket in tickets.drain(..) {
                    ticket.wait().await.map_err(|code| format!("append failed: {code}"))?;
                }
                if partition.high_watermark() != model.next_offset {
                    return Err(format!("step {step}: high watermark {} after a flush", partition.high_watermark()));
                }
            }
            Op::Read { per_mille } => read_at = Some(per_mille),
            Op::Restart => {
                tickets.clear();
                partition.close().await.map_err(|error| error.to_string())?;
                partition = open().await;
            }
        }
        check(&partition, &model, read_at).await.map_err(|error| format!("step {step}: {error}"))?;
    }
    partition.close().await.map_err(|error| error.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn lso_and_aborted_list_match_the_model_kip_98(ops in prop::collection::vec(op(), 1..60)) {
        let outcome = run(move || async move { run_ops(ops).await });
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}
