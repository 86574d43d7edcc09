//! Criterion micro-benchmarks of request decode and response encode on the hot path:
//! a ProduceRequest with one 16 KiB partition (zero-copy decode), and a FetchResponse of eight
//! partitions encoded around placeholders and spliced with the record chunks.
//!
//! `cargo bench -p fjord-net --bench codec`

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fjord_engine::partition::Chunk;
use fjord_net::response;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, FetchResponse, ProduceRequest, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

fn produce_request_bytes(version: i16, records: Bytes) -> Bytes {
    let mut partition = PartitionProduceData::default();
    partition.index = 3;
    partition.records = Some(records);
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str("bench-topic"));
    topic.partition_data.push(partition);
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 30_000;
    request.topic_data.push(topic);
    let mut buffer = BytesMut::new();
    request.encode(&mut buffer, version).expect("encode");
    buffer.freeze()
}

fn decode_produce(c: &mut Criterion) {
    let records = Bytes::from(vec![7u8; 16 * 1024]);
    let mut group = c.benchmark_group("decode_produce_16KiB");
    for version in [9i16, 12] {
        let bytes = produce_request_bytes(version, records.clone());
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("v{version}"), |b| {
            b.iter(|| {
                let mut body = bytes.clone();
                ProduceRequest::decode(&mut body, version).expect("decode")
            })
        });
    }
    group.finish();
}

fn encode_fetch(c: &mut Criterion) {
    let chunk = Chunk::Memory(Bytes::from(vec![1u8; 64 * 1024]));
    let mut group = c.benchmark_group("encode_fetch_8x64KiB");
    group.throughput(Throughput::Bytes(8 * 64 * 1024));
    for version in [11i16, 16] {
        group.bench_function(format!("v{version}"), |b| {
            b.iter(|| {
                let mut topic = FetchableTopicResponse::default();
                topic.topic = TopicName(StrBytes::from_static_str("bench-topic"));
                for partition_index in 0..8 {
                    let mut partition = PartitionData::default();
                    partition.partition_index = partition_index;
                    partition.high_watermark = 1_000_000;
                    partition.last_stable_offset = 1_000_000;
                    partition.log_start_offset = 0;
                    partition.records = Some(response::placeholder(partition_index as u64));
                    topic.partitions.push(partition);
                }
                let mut fetch = FetchResponse::default();
                fetch.responses.push(topic);
                let encoded = response::encode(ApiKey::Fetch, version, 1, &fetch).expect("encode");
                let records = (0..8).map(|_| vec![chunk.clone()]).collect();
                response::splice_records(encoded, records, version >= 12)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode_produce, encode_fetch);
criterion_main!(benches);
