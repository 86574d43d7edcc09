//! Criterion micro-benchmarks of the engine's hot path: produce validation + offset assignment,
//! offset-index lookup, segment appends through the O_DIRECT path, and cross-shard forwarding
//! over the shard mesh (the path of every request part whose partition another shard owns).
//!
//! `cargo bench -p fjord-engine --bench hot_path` (throughput in bytes/s or ns per operation).

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fjord_engine::batch;
use fjord_engine::index::SegmentIndex;
use fjord_engine::rt;
use fjord_engine::segment::Segment;

/// An uncompressed RecordBatch v2 of `count` records of `value_bytes` each, CRC valid.
fn make_batch(count: i32, value_bytes: usize) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, value: i64) {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        while zigzag >= 0x80 {
            out.push((zigzag as u8 & 0x7f) | 0x80);
            zigzag >>= 7;
        }
        out.push(zigzag as u8);
    }
    let mut records = Vec::new();
    for index in 0..count {
        let mut body = vec![0u8];
        varint(&mut body, 0);
        varint(&mut body, index as i64);
        varint(&mut body, -1);
        varint(&mut body, value_bytes as i64);
        body.extend(std::iter::repeat_n(b'v', value_bytes));
        varint(&mut body, 0);
        varint(&mut records, body.len() as i64);
        records.extend(body);
    }
    let mut out = Vec::new();
    out.extend(0i64.to_be_bytes());
    out.extend(((61 - 12 + records.len()) as i32).to_be_bytes());
    out.extend(0i32.to_be_bytes());
    out.push(2);
    out.extend(0u32.to_be_bytes());
    out.extend(0i16.to_be_bytes());
    out.extend((count - 1).to_be_bytes());
    out.extend(1_700_000_000_000i64.to_be_bytes());
    out.extend(1_700_000_000_000i64.to_be_bytes());
    out.extend((-1i64).to_be_bytes());
    out.extend((-1i16).to_be_bytes());
    out.extend((-1i32).to_be_bytes());
    out.extend(count.to_be_bytes());
    out.extend(records);
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

fn validate_and_assign(c: &mut Criterion) {
    let produced = make_batch(16, 1024);
    let mut group = c.benchmark_group("produce_batch_16x1KiB");
    group.throughput(Throughput::Bytes(produced.len() as u64));
    group.bench_function("validate", |b| b.iter(|| batch::validate_produced(&produced, 1 << 20).expect("valid")));
    // What a CreateTime produce pays since the max timestamp comes from the records (Kafka's
    // LogValidator): one walk over the records' varint headers; the CRC is recomputed only when
    // the header was wrong, which this batch's is not.
    group.bench_function("validate_summarize", |b| {
        b.iter(|| {
            let headers = batch::validate_produced(&produced, 1 << 20).expect("valid");
            batch::summarize_records(&produced, &headers[0]).expect("records readable")
        })
    });
    group.bench_function("validate_copy_patch", |b| {
        b.iter_batched(
            || produced.clone(),
            |mut copy| {
                batch::validate_produced(&copy, 1 << 20).expect("valid");
                batch::patch_offset_and_epoch(&mut copy, 42, 0);
                copy
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn index_lookup(c: &mut Criterion) {
    let mut index = SegmentIndex::default();
    for entry in 0..100_000u32 {
        index.push_offset(entry * 16, entry * 16_400);
    }
    let mut probe = 0u32;
    c.bench_function("offset_index_lookup_100k_entries", |b| {
        b.iter(|| {
            probe = probe.wrapping_add(7_919) % 1_600_000;
            index.position_floor(probe)
        })
    });
}

/// Appends of 64 KiB (16 batches of ~4 KiB) through the DMA path, without fdatasync.
/// Bounded: criterion's default 5 s measurement at 10 samples.
fn segment_append(c: &mut Criterion) {
    let batch = Bytes::from(make_batch(4, 1000));
    let batches: Vec<Bytes> = (0..16).map(|_| batch.clone()).collect();
    let bytes_per_append: usize = batches.iter().map(Bytes::len).sum();
    let mut group = c.benchmark_group("segment_append_dma");
    group.throughput(Throughput::Bytes(bytes_per_append as u64));
    group.sample_size(10);
    group.bench_function("64KiB", |b| {
        b.iter_custom(|iterations| {
            let batches = batches.clone();
            glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .io_memory(1 << 20)
                .spawn(move || async move {
                    let dir = tempfile::Builder::new()
                        .prefix("fjord-bench-")
                        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                        .expect("temp dir");
                    let segment = Segment::create(dir.path(), 0, 0).await.expect("segment");
                    // The same bytes each time (offsets repeat): this measures the copy into the
                    // aligned buffer and the O_DIRECT write, not offset assignment.
                    let started = Instant::now();
                    for _ in 0..iterations {
                        segment.append(&batches).await.expect("append");
                    }
                    let elapsed = started.elapsed();
                    segment.close().await.expect("close");
                    elapsed
                })
                .expect("executor")
                .join()
                .unwrap_or(Duration::ZERO)
        })
    });
    group.finish();
}

/// A request part forwarded to the owner shard, answered through a oneshot as net/'s router does.
struct Forwarded {
    reply: futures::channel::oneshot::Sender<u64>,
    value: u64,
    /// The sender is done after this one: the serving shard may stop.
    last: bool,
}

/// Two shards on the real mesh: shard 0 forwards `iterations` messages to shard 1 and awaits the
/// replies, either one at a time (round trip: what an unpipelined produce to a foreign partition
/// pays) or `window` in flight (pipelined connections).
fn forward(iterations: u64, window: u64) -> Duration {
    if iterations == 0 {
        return Duration::ZERO;
    }
    let elapsed = std::sync::Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let result = elapsed.clone();
    let config = rt::ShardRuntimeConfig { io_memory_bytes: 1 << 20, spin_before_park: None, pin_to_cores: true };
    rt::run_shards(2, config, move |shard_id, mesh: rt::Mesh<Forwarded>| {
        let elapsed = elapsed.clone();
        async move {
            if shard_id == 1 {
                let (stop, stopped) = futures::channel::oneshot::channel::<()>();
                let stop = std::rc::Rc::new(std::cell::RefCell::new(Some(stop)));
                mesh.serve(move |message: Forwarded| {
                    let stop = stop.clone();
                    async move {
                        let _ = message.reply.send(message.value + 1);
                        if message.last {
                            stop.borrow_mut().take().map(|stop| stop.send(()));
                        }
                    }
                });
                let _ = stopped.await;
                return;
            }
            let started = Instant::now();
            let mut sent = 0;
            while sent < iterations {
                let batch = window.min(iterations - sent);
                let mut replies = Vec::with_capacity(batch as usize);
                for value in sent..sent + batch {
                    let (reply, answer) = futures::channel::oneshot::channel();
                    mesh.send(1, Forwarded { reply, value, last: value + 1 == iterations }).await.expect("shard 1 is running");
                    replies.push(answer);
                }
                for (value, answer) in (sent..).zip(replies) {
                    assert_eq!(answer.await.expect("reply"), value + 1);
                }
                sent += batch;
            }
            *elapsed.lock().expect("lock") = started.elapsed();
        }
    })
    .expect("shards");
    let elapsed = *result.lock().expect("lock");
    elapsed
}

fn cross_shard_forwarding(c: &mut Criterion) {
    let mut group = c.benchmark_group("cross_shard_forward");
    group.sample_size(10);
    group.bench_function("round_trip", |b| b.iter_custom(|iterations| forward(iterations, 1)));
    group.throughput(Throughput::Elements(1));
    group.bench_function("pipelined_64", |b| b.iter_custom(|iterations| forward(iterations, 64)));
    group.finish();
}

criterion_group!(benches, validate_and_assign, index_lookup, segment_append, cross_shard_forwarding);
criterion_main!(benches);
