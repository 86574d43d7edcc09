//! Property test of the producer state against a simple model of Kafka's idempotence rules
//! (KIP-98, KIP-360, `ProducerAppendInfo` / `ProducerStateEntry`), written differently from the
//! implementation: the model keeps every accepted batch of every producer in a list and derives
//! the answers from the list; the table keeps a window of five batches.
//!
//! Rules (per producer, in this order):
//! - a batch with the producer's current epoch and exactly the sequence range of one of its last
//!   five accepted batches of that epoch is a duplicate, answered with that batch's offsets;
//! - an epoch below the current one is INVALID_PRODUCER_EPOCH;
//! - a higher epoch must start at sequence 0, unless the producer is unknown (any sequence);
//! - the same epoch must continue at last sequence + 1, wrapping from i32::MAX to 0.
//!
//! Random runs mix next-in-sequence appends, retries of recent and older batches, gaps, epoch
//! bumps (right and wrong), stale epochs and sequences near i32::MAX, and a snapshot round trip
//! (encode, decode) in the middle, which must change nothing.

use fjord_engine::producer_state::{increment_sequence, ProducerBatch, ProducerStateTable, Verdict};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Sequence {
    Next,
    /// Retry of the accepted batch `n` back (0 = the last one).
    Retry(usize),
    Gap(i32),
    Zero,
    NearMax(i32),
}

#[derive(Debug, Clone)]
enum Epoch {
    Same,
    Bump,
    Stale,
}

#[derive(Debug, Clone)]
enum Op {
    Append { producer: i64, epoch: Epoch, sequence: Sequence, count: i32 },
    SnapshotRoundTrip,
}

fn op() -> impl Strategy<Value = Op> {
    let sequence = prop_oneof![
        6 => Just(Sequence::Next),
        3 => (0usize..8).prop_map(Sequence::Retry),
        1 => (2i32..5).prop_map(Sequence::Gap),
        1 => Just(Sequence::Zero),
        1 => (0i32..4).prop_map(Sequence::NearMax),
    ];
    let epoch = prop_oneof![8 => Just(Epoch::Same), 1 => Just(Epoch::Bump), 1 => Just(Epoch::Stale)];
    prop_oneof![
        20 => (0i64..3, epoch, sequence, 1i32..4).prop_map(|(producer, epoch, sequence, count)| Op::Append { producer, epoch, sequence, count }),
        1 => Just(Op::SnapshotRoundTrip),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Accepted {
    epoch: i16,
    first_sequence: i32,
    last_sequence: i32,
    first_offset: i64,
}

#[derive(Debug, Default)]
struct ModelProducer {
    epoch: i16,
    accepted: Vec<Accepted>,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Appended(i64),
    Duplicate(i64),
    Error(i16),
}

fn model_append(producers: &mut [Option<ModelProducer>], batch: &ProducerBatch) -> Outcome {
    let last_sequence = increment_sequence(batch.first_sequence, batch.last_offset_delta);
    let slot = &mut producers[batch.producer_id as usize];
    if let Some(producer) = slot.as_ref() {
        let window: Vec<&Accepted> = producer.accepted.iter().filter(|a| a.epoch == producer.epoch).rev().take(5).collect();
        if batch.epoch == producer.epoch {
            if let Some(found) =
                window.iter().find(|a| a.first_sequence == batch.first_sequence && a.last_sequence == last_sequence)
            {
                return Outcome::Duplicate(found.first_offset);
            }
        }
        if batch.epoch < producer.epoch {
            return Outcome::Error(47);
        }
        if batch.epoch > producer.epoch && batch.first_sequence != 0 {
            return Outcome::Error(45);
        }
        if batch.epoch == producer.epoch {
            let last = window.first().map(|a| a.last_sequence).expect("a known epoch has a batch");
            let follows = batch.first_sequence as i64 == last as i64 + 1 || (last == i32::MAX && batch.first_sequence == 0);
            if !follows {
                return Outcome::Error(45);
            }
        }
    }
    let producer = slot.get_or_insert_with(ModelProducer::default);
    producer.epoch = batch.epoch;
    producer.accepted.push(Accepted {
        epoch: batch.epoch,
        first_sequence: batch.first_sequence,
        last_sequence,
        first_offset: batch.first_offset,
    });
    Outcome::Appended(batch.first_offset)
}

fn table_append(table: &mut ProducerStateTable, batch: &ProducerBatch) -> Outcome {
    match table.check(std::slice::from_ref(batch)) {
        Ok(Verdict::Append(staged)) => {
            table.commit(staged);
            Outcome::Appended(batch.first_offset)
        }
        Ok(Verdict::Duplicate(original)) => Outcome::Duplicate(original.first_offset),
        Err(error) => Outcome::Error(error.kafka_error_code()),
    }
}

/// Turns an op's intent into a concrete batch, looking at the model for "next" and "retry".
fn make_batch(producers: &[Option<ModelProducer>], op: &Op, next_offset: i64) -> Option<ProducerBatch> {
    let Op::Append { producer, epoch, sequence, count } = op else { return None };
    let known = producers[*producer as usize].as_ref();
    let current_epoch = known.map_or(0, |p| p.epoch);
    let last = known.and_then(|p| p.accepted.last());
    let (mut first_sequence, mut count) = match sequence {
        Sequence::Next => (last.map_or(0, |a| increment_sequence(a.last_sequence, 1)), *count),
        Sequence::Retry(back) => match known.and_then(|p| p.accepted.iter().rev().nth(*back)) {
            Some(a) => (a.first_sequence, (a.last_sequence as i64 - a.first_sequence as i64).rem_euclid(1 << 31) as i32 + 1),
            None => (0, *count),
        },
        Sequence::Gap(gap) => (last.map_or(*gap, |a| increment_sequence(a.last_sequence, *gap)), *count),
        Sequence::Zero => (0, *count),
        Sequence::NearMax(below) => (i32::MAX - below, *count),
    };
    let epoch = match epoch {
        // A retry repeats the epoch it was first sent with.
        Epoch::Same => match sequence {
            Sequence::Retry(back) => known.and_then(|p| p.accepted.iter().rev().nth(*back)).map_or(current_epoch, |a| a.epoch),
            _ => current_epoch,
        },
        Epoch::Bump => current_epoch + 1,
        // Producer epochs are never negative (-1 means none).
        Epoch::Stale => (current_epoch - 1).max(0),
    };
    if count < 1 {
        count = 1;
    }
    if first_sequence < 0 {
        first_sequence = 0;
    }
    Some(ProducerBatch {
        producer_id: *producer,
        epoch,
        first_sequence,
        last_offset_delta: count - 1,
        first_offset: next_offset,
        timestamp_ms: next_offset,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn producer_state_follows_kafkas_idempotence_rules(ops in prop::collection::vec(op(), 1..120)) {
        let mut table = ProducerStateTable::default();
        let mut model: Vec<Option<ModelProducer>> = (0..3).map(|_| None).collect();
        let mut next_offset = 0i64;
        for op in &ops {
            if let Op::SnapshotRoundTrip = op {
                let (offset, decoded) = ProducerStateTable::decode(&table.encode(next_offset)).expect("own snapshot decodes");
                prop_assert_eq!(offset, next_offset);
                prop_assert_eq!(&decoded, &table);
                table = decoded;
                continue;
            }
            let batch = make_batch(&model, op, next_offset).expect("an append");
            let expected = model_append(&mut model, &batch);
            let got = table_append(&mut table, &batch);
            prop_assert_eq!(&got, &expected, "batch {:?}", batch);
            if let Outcome::Appended(_) = got {
                next_offset += batch.last_offset_delta as i64 + 1;
            }
        }
        for (id, producer) in model.iter().enumerate() {
            let entry = table.get(id as i64);
            prop_assert_eq!(entry.map(|e| e.epoch), producer.as_ref().map(|p| p.epoch));
            if let (Some(entry), Some(producer)) = (entry, producer) {
                let last = producer.accepted.last().expect("known producers have batches");
                prop_assert_eq!(entry.last_sequence(), last.last_sequence);
                prop_assert_eq!(entry.last_offset(), last.first_offset + (entry.batches().last().unwrap().last_offset - entry.batches().last().unwrap().first_offset));
            }
        }
    }
}
