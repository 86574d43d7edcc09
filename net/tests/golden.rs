//! Golden-file tests of Fjord's Kafka wire encoding: one test per API the broker serves, each
//! covering at least the lowest and the highest version Fjord advertises.
//!
//! Each test starts the real `fjord` binary (fresh data directory, free port), sends fixed
//! requests over a plain TCP socket — size-prefixed frames encoded with kafka-protocol at a fixed
//! version and correlation id — and compares every response frame, byte for byte (size prefix
//! included), with `net/tests/golden/<case>.hex`.
//!
//! Fields that legitimately differ between runs are masked first. The response is decoded with
//! kafka-protocol and re-encoded unchanged, which must give back the broker's exact bytes (so the
//! decoder saw every byte and a mask cannot hide a malformed encoding); the varying fields are
//! then checked for what they must be and replaced by fixed values before encoding again:
//!
//! - cluster id: must be `cluster.id` of the data dir's meta.properties; becomes `MASKED-CLUSTER-ID`;
//! - topic id: must be the id CreateTopics v7 returned; becomes the topic name, `_`-padded to 16 bytes;
//! - broker port: must be the port the test picked; becomes 9092;
//! - fetch session id: must not be 0; becomes 1;
//! - log_append_time_ms of LogAppendTime topics: must be after the records' timestamps; becomes 1.
//!
//! Everything else (throttle time 0, offsets, record bytes, error codes and messages, config
//! values) is compared as sent. A golden file's `#` lines say what the case sends; a line starting
//! `KNOWN DISCREPANCY` records where Fjord's answer still differs from Apache Kafka's, so fixing
//! it means re-blessing that file.
//!
//! Re-bless after an intended wire change (and review the diff of `net/tests/golden/`):
//!
//! ```text
//! FJORD_BLESS=1 cargo test -p fjord-net --test golden
//! ```
//!
//! The broker binary is `$FJORD_BIN`, else `target/release/fjord`, else `target/debug/fjord` of
//! this workspace; build it first (`cargo build --bin fjord`), the test does not.

mod support;

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request as incremental;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AlterConfigsRequest, ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreatePartitionsRequest, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, FetchRequest, FetchResponse,
    IncrementalAlterConfigsRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use support::{decode_frame, encode_request, request_header, Broker, Client};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Fixed inputs

/// What every masked cluster id becomes.
const MASKED_CLUSTER_ID: &str = "MASKED-CLUSTER-ID";
/// What every masked broker port becomes.
const MASKED_PORT: i32 = 9092;
const MASKED_SESSION_ID: i32 = 1;
const MASKED_LOG_APPEND_TIME_MS: i64 = 1;
/// Creation time of the first record of the fixed batch; the others follow a second apart.
const BATCH_TIMESTAMP_FIRST_MS: i64 = 1_700_000_000_000;
/// Records in the fixed batch.
const BATCH_RECORD_COUNT: i64 = 3;
/// A topic id no broker has: requests that name it must get UNKNOWN_TOPIC_ID.
const UNKNOWN_TOPIC_ID: Uuid = Uuid::from_u128(0x0bad_0bad_0bad_0bad_0bad_0bad_0bad_0bad);

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Every case gets its own correlation id, fixed so the golden bytes are stable, and distinct
/// per API and version so a response meant for another request cannot pass.
fn correlation_id(api_key: i16, version: i16) -> i32 {
    0x0f00_0000 | i32::from(api_key) << 8 | i32::from(version)
}

// ---------------------------------------------------------------------------------------------
// The broker under test (tests/support) and the golden client

trait Golden {
    fn masks(&self) -> Masks;
}

impl Golden for Broker {
    fn masks(&self) -> Masks {
        Masks { port: self.port, cluster_id: self.cluster_id.clone(), topics: Vec::new() }
    }
}

/// One response: the whole frame as received and its decoded body.
struct Reply<T> {
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    frame: Vec<u8>,
    body: T,
}

trait GoldenCall {
    fn call<R: Request>(&mut self, version: i16, request: &R) -> Reply<R::Response>;
}

impl GoldenCall for Client {
    /// Sends one request at `version` and reads its response, checking the frame's framing, the
    /// correlation id, and that kafka-protocol re-encodes the decoded response to the same bytes.
    fn call<R: Request>(&mut self, version: i16, request: &R) -> Reply<R::Response> {
        let api_key = ApiKey::try_from(R::KEY).expect("known API key");
        let correlation_id = correlation_id(R::KEY, version);
        let payload = encode_request(version, correlation_id, request);
        let frame = self.exchange(&payload);
        let body = decode_frame::<R::Response>(&frame, R::Response::header_version(version), version, correlation_id);
        let reply = Reply { api_key, version, correlation_id, frame, body };
        assert_eq!(
            hex_dump(&reply.encode_with(&reply.body)),
            hex_dump(&reply.frame),
            "{api_key:?} v{version}: the response does not re-encode to the bytes the broker sent"
        );
        reply
    }
}

impl<T: Encodable> Reply<T> {
    /// The frame for `body`, with this reply's header: what the broker would have sent.
    fn encode_with(&self, body: &T) -> Vec<u8> {
        let mut buffer = BytesMut::new();
        buffer.extend_from_slice(&[0; 4]);
        ResponseHeader::default()
            .with_correlation_id(self.correlation_id)
            .encode(&mut buffer, self.api_key.response_header_version(self.version))
            .expect("encode response header");
        body.encode(&mut buffer, self.version).expect("encode response body");
        let size = (buffer.len() - 4) as i32;
        buffer[..4].copy_from_slice(&size.to_be_bytes());
        buffer.to_vec()
    }
}

impl<T: Encodable + Clone> Reply<T> {
    /// The frame with the varying fields replaced by `mask`.
    fn masked(&self, mask: impl FnOnce(&mut T)) -> Vec<u8> {
        let mut body = self.body.clone();
        mask(&mut body);
        self.encode_with(&body)
    }
}

// ---------------------------------------------------------------------------------------------
// Masks

/// What the varying fields must be in this broker's responses, and their fixed replacements.
struct Masks {
    port: u16,
    cluster_id: String,
    /// Topic ids the test learned from CreateTopics, with their topic names.
    topics: Vec<(Uuid, String)>,
}

impl Masks {
    fn learn_topic(&mut self, id: Uuid, name: &str) {
        assert!(!id.is_nil(), "topic {name} has a nil id");
        self.topics.push((id, name.to_string()));
    }

    fn topic_id_of(&self, name: &str) -> Uuid {
        self.topics
            .iter()
            .find(|(_, known)| known == name)
            .map(|(id, _)| *id)
            .unwrap_or_else(|| panic!("no id learned for {name}"))
    }

    /// Nil and the fixed unknown id stay; a learned id becomes its topic name; anything else is
    /// an id the broker made up, which fails the test.
    fn topic_id(&self, id: Uuid) -> Uuid {
        if id.is_nil() || id == UNKNOWN_TOPIC_ID {
            return id;
        }
        let (_, name) = self
            .topics
            .iter()
            .find(|(known, _)| *known == id)
            .unwrap_or_else(|| panic!("topic id {id} was never returned by CreateTopics"));
        let mut bytes = [b'_'; 16];
        let name = name.as_bytes();
        let length = name.len().min(16);
        bytes[..length].copy_from_slice(&name[..length]);
        Uuid::from_bytes(bytes)
    }

    fn port(&self, port: i32) -> i32 {
        assert_eq!(port, i32::from(self.port), "advertised port");
        MASKED_PORT
    }

    fn cluster_id(&self, cluster_id: &StrBytes) -> StrBytes {
        assert_eq!(cluster_id.as_str(), self.cluster_id, "cluster id must be the one in meta.properties");
        StrBytes::from_static_str(MASKED_CLUSTER_ID)
    }
}

// ---------------------------------------------------------------------------------------------
// Golden files

fn golden_path(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{case}.hex"))
}

fn blessing() -> bool {
    std::env::var("FJORD_BLESS").is_ok_and(|value| value == "1")
}

/// 16 bytes a line in groups of 4, each line led by its offset.
fn hex_dump(bytes: &[u8]) -> String {
    let mut text = String::new();
    for (line, chunk) in bytes.chunks(16).enumerate() {
        text.push_str(&format!("{:06x}:", line * 16));
        for group in chunk.chunks(4) {
            text.push(' ');
            for byte in group {
                text.push_str(&format!("{byte:02x}"));
            }
        }
        text.push('\n');
    }
    text
}

/// Reads a golden file: `#` lines are comments, `offset:` prefixes are skipped, the rest is hex.
fn parse_golden(text: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let data = line.split_once(':').map_or(line, |(_, data)| data);
        let digits: Vec<u8> = data.bytes().filter(|byte| !byte.is_ascii_whitespace()).collect();
        let pairs = digits.chunks_exact(2);
        assert!(pairs.remainder().is_empty(), "odd number of hex digits in golden line {line:?}");
        for pair in pairs {
            let text = std::str::from_utf8(pair).expect("ascii");
            bytes.push(u8::from_str_radix(text, 16).unwrap_or_else(|_| panic!("bad hex {text:?} in golden line {line:?}")));
        }
    }
    bytes
}

/// Compares `frame` with the golden file of `case`, or writes it under FJORD_BLESS=1.
fn assert_golden(case: &str, description: &str, frame: &[u8]) {
    let path = golden_path(case);
    if blessing() {
        let mut text = String::new();
        for line in description.lines() {
            text.push_str(&format!("# {line}\n"));
        }
        text.push_str(&hex_dump(frame));
        std::fs::create_dir_all(path.parent().expect("golden dir")).expect("create golden dir");
        std::fs::write(&path, text).expect("write golden file");
        return;
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read golden file {} ({error}); create it with FJORD_BLESS=1", path.display()));
    let expected = parse_golden(&text);
    if expected != frame {
        let first_difference = expected.iter().zip(frame).position(|(a, b)| a != b).unwrap_or(expected.len().min(frame.len()));
        panic!(
            "{case}: response differs from {} at byte {first_difference:#x} (expected {} bytes, got {})\n--- expected\n{}--- got\n{}\
             If the change is intended, re-bless with FJORD_BLESS=1 and review the diff.",
            path.display(),
            expected.len(),
            frame.len(),
            hex_dump(&expected),
            hex_dump(frame)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Request building blocks

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn topic_name(name: &str) -> TopicName {
    TopicName(text(name))
}

/// The fixed batch: three uncompressed records, magic 2, creation timestamps a second apart,
/// no producer id; record 1 has a header and record 2 a null key.
fn fixed_batch() -> Bytes {
    batch_with_timestamps(&[BATCH_TIMESTAMP_FIRST_MS, BATCH_TIMESTAMP_FIRST_MS + 1000, BATCH_TIMESTAMP_FIRST_MS + 2000])
}

/// One record per timestamp, shaped as [`fixed_batch`] describes.
fn batch_with_timestamps(timestamps: &[i64]) -> Bytes {
    let records: Vec<Record> = timestamps
        .iter()
        .enumerate()
        .map(|(index, timestamp)| {
            let index = index as i64;
            let mut headers = IndexMap::new();
            if index == 1 {
                headers.insert(text("trace"), Some(Bytes::from_static(b"golden")));
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: index,
                // The encoder keeps records in one batch while offset - sequence is constant;
                // this gives base sequence -1 (no idempotence) for the batch.
                sequence: index as i32 - 1,
                timestamp: *timestamp,
                key: (index != 2).then(|| Bytes::from(format!("key-{index}"))),
                value: Some(Bytes::from(format!("value-{index}"))),
                headers,
            }
        })
        .collect();
    let mut buffer = BytesMut::new();
    RecordBatchEncoder::encode(&mut buffer, records.iter(), &RecordEncodeOptions { version: 2, compression: Compression::None })
        .expect("encode a batch");
    let batch = buffer.freeze();
    assert_eq!(batch_field_i32(&batch, 57), timestamps.len() as i32, "one batch holds every record");
    assert_eq!(batch_field_i32(&batch, 53), -1, "base sequence");
    batch
}

fn batch_field_i32(batch: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(batch[at..at + 4].try_into().expect("4 bytes"))
}

fn batch_field_i64(batch: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(batch[at..at + 8].try_into().expect("8 bytes"))
}

/// A fetched batch must be the produced one, byte for byte, except the two fields the broker
/// assigns: base offset (bytes 0..8) and partition leader epoch (12..16). The CRC (17..21) covers
/// neither, so it must come back unchanged too.
fn assert_fetched_batch(fetched: &[u8], produced: &[u8], base_offset: i64) {
    assert_eq!(fetched.len(), produced.len(), "fetched batch length");
    assert_eq!(batch_field_i64(fetched, 0), base_offset, "fetched base offset");
    assert_eq!(fetched[8..12], produced[8..12], "batch length field");
    assert!(batch_field_i32(fetched, 12) >= 0, "the broker assigns a partition leader epoch");
    assert_eq!(hex_dump(&fetched[16..]), hex_dump(&produced[16..]), "batch bytes from magic on");
}

fn creatable_topic(name: &str, partitions: i32, replication_factor: i16, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(replication_factor)
        .with_configs(
            configs
                .iter()
                .map(|(key, value)| CreatableTopicConfig::default().with_name(text(key)).with_value(Some(text(value))))
                .collect(),
        )
}

/// Setup, not under test: creates a topic with CreateTopics v7 and learns its id.
fn create_topic(client: &mut Client, masks: &mut Masks, name: &str, partitions: i32, configs: &[(&str, &str)]) -> Uuid {
    let request =
        CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![creatable_topic(name, partitions, 1, configs)]);
    let reply = client.call(7, &request);
    let result = &reply.body.topics[0];
    assert_eq!(result.error_code, 0, "create {name}: {:?}", result.error_message);
    masks.learn_topic(result.topic_id, name);
    result.topic_id
}

fn produce_request(acks: i16, topics: &[(&str, &[i32])], batch: &Bytes) -> ProduceRequest {
    ProduceRequest::default().with_acks(acks).with_timeout_ms(30_000).with_topic_data(
        topics
            .iter()
            .map(|(name, partitions)| {
                TopicProduceData::default().with_name(topic_name(name)).with_partition_data(
                    partitions
                        .iter()
                        .map(|index| PartitionProduceData::default().with_index(*index).with_records(Some(batch.clone())))
                        .collect(),
                )
            })
            .collect(),
    )
}

/// Setup, not under test: produces the batch with acks=all and returns its base offset.
fn produce(client: &mut Client, name: &str, partition: i32, batch: &Bytes) -> i64 {
    let reply: Reply<ProduceResponse> = client.call(9, &produce_request(-1, &[(name, &[partition])], batch));
    let result = &reply.body.responses[0].partition_responses[0];
    assert_eq!(result.error_code, 0, "produce to {name}-{partition}");
    result.base_offset
}

fn mask_metadata(masks: &Masks, response: &mut MetadataResponse) {
    for broker in &mut response.brokers {
        broker.port = masks.port(broker.port);
    }
    if let Some(cluster_id) = &response.cluster_id {
        response.cluster_id = Some(masks.cluster_id(cluster_id));
    }
    for topic in &mut response.topics {
        topic.topic_id = masks.topic_id(topic.topic_id);
    }
}

// ---------------------------------------------------------------------------------------------
// ApiVersions (key 18), v0–4

/// Walks a v3+ ApiVersions response frame and fails on any tagged field: Debian's librdkafka
/// 2.0.2 (kcat) breaks on them (KIP-511 made the response flexible; KIP-584 added the tags).
fn assert_api_versions_has_no_tagged_fields(frame: &[u8]) {
    // size, correlation id (header v0 even for flexible versions), error code
    let mut at = 4 + 4 + 2;
    let read_unsigned_varint = |at: &mut usize| {
        let mut value = 0u32;
        for shift in (0..35).step_by(7) {
            let byte = frame[*at];
            *at += 1;
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
        }
        panic!("varint too long");
    };
    let count = read_unsigned_varint(&mut at).checked_sub(1).expect("api_keys is not null");
    for index in 0..count {
        at += 6; // api key, min version, max version
        assert_eq!(frame[at], 0, "tagged fields on api_keys[{index}]");
        at += 1;
    }
    at += 4; // throttle time
    assert_eq!(frame[at], 0, "top-level tagged fields (supported/finalized features, zk_migration_ready)");
    assert_eq!(at + 1, frame.len(), "bytes after the last field");
}

#[test]
fn api_versions_responses_match_golden_and_carry_no_tagged_fields() {
    let broker = Broker::start();
    let mut client = broker.connect();
    let advertised = |body: &ApiVersionsResponse| {
        body.api_keys.iter().map(|key| (key.api_key, key.min_version, key.max_version)).collect::<Vec<_>>()
    };

    let v0 = client.call(0, &ApiVersionsRequest::default());
    assert_eq!(v0.body.error_code, 0);
    assert!(advertised(&v0.body).contains(&(ApiKey::ApiVersions as i16, 0, 4)));
    assert_golden("api_versions_v0", "ApiVersions v0 response: every API Fjord serves with its version range.", &v0.frame);

    let software = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("fjord-golden"))
        .with_client_software_version(StrBytes::from_static_str("1.0.0"));
    for version in [3, 4] {
        let reply = client.call(version, &software);
        assert_eq!(reply.body.error_code, 0);
        assert_eq!(advertised(&reply.body), advertised(&v0.body), "v{version} advertises what v0 does");
        assert_api_versions_has_no_tagged_fields(&reply.frame);
        assert_golden(
            &format!("api_versions_v{version}"),
            &format!("ApiVersions v{version} response (flexible body, header v0), no tagged fields anywhere."),
            &reply.frame,
        );
    }

    // A version from the future (KIP-511): UNSUPPORTED_VERSION and our ranges, in a v0 body with
    // header v0, whatever the request's own encoding. The request is what a newer client would
    // send: header v2 and a flexible body.
    let future_version = 99;
    let correlation_id = correlation_id(ApiKey::ApiVersions as i16, future_version);
    let mut payload = BytesMut::new();
    request_header(ApiKey::ApiVersions as i16, future_version, correlation_id).encode(&mut payload, 2).expect("header v2");
    software.encode(&mut payload, 4).expect("flexible body");
    let frame = client.exchange(&payload);
    let body: ApiVersionsResponse = decode_frame(&frame, 0, 0, correlation_id);
    assert_eq!(body.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(advertised(&body).contains(&(ApiKey::ApiVersions as i16, 0, 4)), "KIP-511: the ApiVersions range, for the retry");
    assert_golden(
        "api_versions_v99_unsupported",
        "ApiVersions v99 request (header v2, flexible body): UNSUPPORTED_VERSION (35) in a v0 response.\n\
         Fjord lists every API; Kafka lists only ApiVersions itself (either satisfies KIP-511).",
        &frame,
    );

    // KIP-511: v3+ client software names and versions must match [a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?
    let invalid = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("bad name!"))
        .with_client_software_version(StrBytes::from_static_str("1.0.0"));
    let reply = client.call(3, &invalid);
    assert_api_versions_has_no_tagged_fields(&reply.frame);
    assert_golden("api_versions_v3_invalid_software_name", "ApiVersions v3, client_software_name \"bad name!\".", &reply.frame);
}

// ---------------------------------------------------------------------------------------------
// Metadata (key 3), v0–12

#[test]
fn metadata_responses_match_golden() {
    let broker = Broker::start();
    let mut client = broker.connect();
    let mut masks = broker.masks();
    create_topic(&mut client, &mut masks, "golden-meta", 2, &[]);
    let named = |names: &[&str]| {
        Some(names.iter().map(|name| MetadataRequestTopic::default().with_name(Some(topic_name(name)))).collect::<Vec<_>>())
    };

    let v0 = client.call(0, &MetadataRequest::default().with_topics(named(&["golden-meta"])));
    assert_golden(
        "metadata_v0",
        "Metadata v0, topics [golden-meta]; masked: broker port.",
        &v0.masked(|body| mask_metadata(&masks, body)),
    );

    let v1 = client.call(1, &MetadataRequest::default().with_topics(None));
    assert_golden(
        "metadata_v1_all_topics",
        "Metadata v1, topics null (all topics); masked: broker port.",
        &v1.masked(|body| mask_metadata(&masks, body)),
    );

    // v4 is the first version that can refuse auto-creation; this one allows it.
    let v4 =
        client.call(4, &MetadataRequest::default().with_topics(named(&["golden-auto"])).with_allow_auto_topic_creation(true));
    assert_eq!(v4.body.topics[0].error_code, 0, "golden-auto is created (auto.create.topics.enable defaults to true)");
    assert_golden(
        "metadata_v4_auto_create",
        "Metadata v4, topics [golden-auto], allow_auto_topic_creation=true: created with num.partitions=1;\nmasked: cluster id, broker port.",
        &v4.masked(|body| mask_metadata(&masks, body)),
    );

    // v8–10 can ask for the cluster's authorized operations (KIP-430); without an authorizer
    // that is every operation that applies to the resource.
    let v10 = client.call(
        10,
        &MetadataRequest::default()
            .with_topics(named(&["golden-meta"]))
            .with_include_cluster_authorized_operations(true)
            .with_include_topic_authorized_operations(true),
    );
    assert_eq!(v10.body.topics[0].topic_id, masks.topic_id_of("golden-meta"));
    assert_golden(
        "metadata_v10_authorized_operations",
        "Metadata v10, topics [golden-meta], include cluster and topic authorized operations;\n\
         masked: cluster id, topic id, broker port.",
        &v10.masked(|body| mask_metadata(&masks, body)),
    );

    let v12 = client.call(
        12,
        &MetadataRequest::default()
            .with_topics(named(&["golden-meta", "golden-missing"]))
            .with_allow_auto_topic_creation(false)
            .with_include_topic_authorized_operations(true),
    );
    assert_eq!(v12.body.topics[0].topic_id, masks.topic_id_of("golden-meta"));
    assert_eq!(v12.body.topics[1].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION without auto-creation");
    assert_golden(
        "metadata_v12",
        "Metadata v12, topics [golden-meta, golden-missing], allow_auto_topic_creation=false,\n\
         include topic authorized operations; masked: cluster id, topic id, broker port.",
        &v12.masked(|body| mask_metadata(&masks, body)),
    );
}

// ---------------------------------------------------------------------------------------------
// Produce (key 0), v3–12

#[test]
fn produce_responses_match_golden() {
    let broker = Broker::start();
    let mut client = broker.connect();
    let mut masks = broker.masks();
    create_topic(&mut client, &mut masks, "golden-produce", 1, &[]);
    create_topic(&mut client, &mut masks, "golden-append-time", 1, &[("message.timestamp.type", "LogAppendTime")]);
    let batch = fixed_batch();

    let v3 = client.call(3, &produce_request(-1, &[("golden-produce", &[0, 5])], &batch));
    assert_golden(
        "produce_v3",
        "Produce v3 acks=-1: the fixed batch to golden-produce partitions 0 (base offset 0) and 5 (UNKNOWN_TOPIC_OR_PARTITION).",
        &v3.frame,
    );

    let v9 = client.call(9, &produce_request(1, &[("golden-produce", &[0])], &batch));
    assert_golden(
        "produce_v9",
        "Produce v9 (first flexible) acks=1: the fixed batch to golden-produce-0 (base offset 3).",
        &v9.frame,
    );

    let v12 = client.call(12, &produce_request(-1, &[("golden-produce", &[0]), ("golden-append-time", &[0])], &batch));
    let appended = &v12.body.responses[1].partition_responses[0];
    assert_eq!(appended.error_code, 0);
    assert!(
        appended.log_append_time_ms > BATCH_TIMESTAMP_FIRST_MS,
        "LogAppendTime topics report the append time, got {}",
        appended.log_append_time_ms
    );
    assert_eq!(v12.body.responses[0].partition_responses[0].log_append_time_ms, -1, "CreateTime topics report -1");
    assert_golden(
        "produce_v12",
        "Produce v12 acks=-1: the fixed batch to golden-produce-0 (base offset 6) and golden-append-time-0\n(message.timestamp.type=LogAppendTime); masked: log_append_time_ms of golden-append-time.",
        &v12.masked(|body| body.responses[1].partition_responses[0].log_append_time_ms = MASKED_LOG_APPEND_TIME_MS),
    );
}

// ---------------------------------------------------------------------------------------------
// Fetch (key 1), v4–17

fn fetch_request(topic: &str, topic_id: Uuid, partitions: &[(i32, i64)]) -> FetchRequest {
    FetchRequest::default().with_max_wait_ms(0).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![FetchTopic::default()
        .with_topic(topic_name(topic))
        .with_topic_id(topic_id)
        .with_partitions(
            partitions
                .iter()
                .map(|(partition, offset)| {
                    FetchPartition::default()
                        .with_partition(*partition)
                        .with_fetch_offset(*offset)
                        .with_partition_max_bytes(1 << 20)
                })
                .collect(),
        )])
}

fn mask_fetch(masks: &Masks, response: &mut FetchResponse) {
    for topic in &mut response.responses {
        topic.topic_id = masks.topic_id(topic.topic_id);
    }
}

#[test]
fn fetch_responses_match_golden_and_return_the_produced_batch() {
    let broker = Broker::start();
    let mut client = broker.connect();
    let mut masks = broker.masks();
    let topic_id = create_topic(&mut client, &mut masks, "golden-fetch", 2, &[]);
    let batch = fixed_batch();
    let base_offset = produce(&mut client, "golden-fetch", 0, &batch);
    assert_eq!(base_offset, 0);
    let records_of = |response: &FetchResponse, partition: usize| {
        response.responses[0].partitions[partition].records.clone().expect("records")
    };

    // v4: by topic name, no sessions, READ_UNCOMMITTED (aborted_transactions null).
    let v4 = client.call(4, &fetch_request("golden-fetch", Uuid::nil(), &[(0, 0), (1, 0)]));
    assert_fetched_batch(&records_of(&v4.body, 0), &batch, base_offset);
    assert!(records_of(&v4.body, 1).is_empty());
    assert_golden("fetch_v4", "Fetch v4, golden-fetch partitions 0 (the fixed batch) and 1 (empty) from offset 0.", &v4.frame);

    // v12: the first flexible version; session id 0 and epoch 0 open a session (KIP-227).
    let v12 =
        client.call(12, &fetch_request("golden-fetch", Uuid::nil(), &[(0, 0), (1, 0)]).with_session_id(0).with_session_epoch(0));
    assert_ne!(v12.body.session_id, 0, "a new fetch session");
    assert_fetched_batch(&records_of(&v12.body, 0), &batch, base_offset);
    assert_golden(
        "fetch_v12_new_session",
        "Fetch v12, session 0 epoch 0 (creates a session), golden-fetch partitions 0 and 1 from offset 0;\nmasked: session id.",
        &v12.masked(|body| body.session_id = MASKED_SESSION_ID),
    );

    // v16: by topic id (v13+), sessionless (epoch -1), READ_COMMITTED (aborted_transactions []).
    let v16 = client.call(16, &fetch_request("", topic_id, &[(0, 0), (1, 0)]).with_session_epoch(-1).with_isolation_level(1));
    assert_eq!(v16.body.session_id, 0, "sessionless");
    assert_eq!(v16.body.responses[0].topic_id, topic_id);
    assert_fetched_batch(&records_of(&v16.body, 0), &batch, base_offset);
    assert_golden(
        "fetch_v16",
        "Fetch v16 read_committed, sessionless, golden-fetch (by id) partitions 0 and 1 from offset 0;\nmasked: topic id.",
        &v16.masked(|body| mask_fetch(&masks, body)),
    );

    // v17: the batch from the middle of it, an offset past the end, and an unknown topic id.
    let mut v17_request = fetch_request("", topic_id, &[(0, 1), (1, 5)]).with_session_epoch(-1);
    v17_request.topics.push(
        FetchTopic::default().with_topic_id(UNKNOWN_TOPIC_ID).with_partitions(vec![FetchPartition::default().with_partition(0)]),
    );
    let v17 = client.call(17, &v17_request);
    assert_fetched_batch(&records_of(&v17.body, 0), &batch, base_offset);
    assert_eq!(v17.body.responses[0].partitions[1].error_code, 1, "OFFSET_OUT_OF_RANGE");
    assert_eq!(v17.body.responses[1].partitions[0].error_code, 100, "UNKNOWN_TOPIC_ID");
    assert_golden(
        "fetch_v17",
        "Fetch v17 sessionless: golden-fetch (by id) partition 0 from offset 1 (the whole batch, from base offset 0),\npartition 1 from offset 5 (OFFSET_OUT_OF_RANGE), and partition 0 of an unknown topic id (UNKNOWN_TOPIC_ID);\n\
         masked: topic id of golden-fetch.",
        &v17.masked(|body| mask_fetch(&masks, body)),
    );
}

// ---------------------------------------------------------------------------------------------
// ListOffsets (key 2), v1–9

fn list_offsets_request(topic: &str, partitions: &[(i32, i64)]) -> ListOffsetsRequest {
    ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
        .with_name(topic_name(topic))
        .with_partitions(
            partitions
                .iter()
                .map(|(partition, timestamp)| {
                    ListOffsetsPartition::default().with_partition_index(*partition).with_timestamp(*timestamp)
                })
                .collect(),
        )])
}

#[test]
fn list_offsets_responses_match_golden() {
    let broker = Broker::start();
    let mut client = broker.connect();
    let mut masks = broker.masks();
    create_topic(&mut client, &mut masks, "golden-offsets", 4, &[]);
    produce(&mut client, "golden-offsets", 0, &fixed_batch());
    // Partition 3: the largest timestamp sits in the middle record of the batch.
    let t = BATCH_TIMESTAMP_FIRST_MS;
    produce(&mut client, "golden-offsets", 3, &batch_with_timestamps(&[t + 5000, t + 9000, t + 7000]));

    let v1 = client.call(1, &list_offsets_request("golden-offsets", &[(0, -1), (1, -2), (7, -1)]));
    assert_eq!(v1.body.topics[0].partitions[0].offset, BATCH_RECORD_COUNT, "latest = high watermark");
    assert_golden(
        "list_offsets_v1",
        "ListOffsets v1, golden-offsets (the fixed batch in partition 0): partition 0 latest (-1),\npartition 1 earliest (-2), partition 7 (UNKNOWN_TOPIC_OR_PARTITION).",
        &v1.frame,
    );

    // KIP-734: max timestamp (-3) from v7: the record holding it, not its batch (KAFKA-16310).
    let v7 = client.call(7, &list_offsets_request("golden-offsets", &[(0, -3), (1, t), (3, -3)]));
    let partitions = &v7.body.topics[0].partitions;
    assert_eq!((partitions[0].offset, partitions[0].timestamp), (BATCH_RECORD_COUNT - 1, t + 2000));
    assert_eq!((partitions[2].offset, partitions[2].timestamp), (1, t + 9000), "the middle record holds the max timestamp");
    assert_golden(
        "list_offsets_v7",
        "ListOffsets v7, golden-offsets: partition 0 max timestamp (-3), partition 1 (empty) by timestamp,\n\
         partition 3 max timestamp (-3) where the batch's timestamps are [t+5000, t+9000, t+7000].",
        &v7.frame,
    );

    // v8 adds earliest local (-4, KIP-405), v9 latest tiered (-5, KIP-1005).
    let v9 = client.call(9, &list_offsets_request("golden-offsets", &[(0, t + 500), (1, -4), (2, -5)]));
    let partitions = &v9.body.topics[0].partitions;
    assert_eq!((partitions[0].offset, partitions[0].timestamp), (1, t + 1000), "the first record at or after the timestamp");
    assert_golden(
        "list_offsets_v9",
        "ListOffsets v9, golden-offsets: partition 0 by timestamp t+500 (between records 0 and 1),\n\
         partition 1 earliest local (-4), partition 2 latest tiered (-5).",
        &v9.frame,
    );
}

// ---------------------------------------------------------------------------------------------
// CreateTopics (key 19), v2–7

#[test]
fn create_topics_responses_match_golden() {
    let broker = Broker::start();
    let mut client = broker.connect();
    let mut masks = broker.masks();

    let v2 = client.call(
        2,
        &CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![
            creatable_topic("golden-ct-a", 3, 1, &[]),
            creatable_topic("golden-ct-zero", 0, 1, &[]),
            creatable_topic("golden-ct-rf3", 1, 3, &[]),
            creatable_topic("golden-ct-bad-config", 1, 1, &[("retention.ms", "soon")]),
        ]),
    );
    assert_golden(
        "create_topics_v2",
        "CreateTopics v2: golden-ct-a (3 partitions, created), golden-ct-zero (0 partitions), golden-ct-rf3\n\
         (replication factor 3 on one broker), golden-ct-bad-config (retention.ms=soon).",
        &v2.frame,
    );

    // v5 reports partitions, replication factor and the resulting configs (KIP-525).
    let v5 = client.call(
        5,
        &CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![
            creatable_topic("golden-ct-b", -1, -1, &[("retention.ms", "3600000")]),
            creatable_topic("golden-ct-a", 1, 1, &[]),
        ]),
    );
    assert_golden(
        "create_topics_v5",
        "CreateTopics v5: golden-ct-b (default partitions and replication factor, retention.ms=3600000),\n\
         golden-ct-a again (TOPIC_ALREADY_EXISTS).",
        &v5.frame,
    );

    let v5_validate = client.call(
        5,
        &CreateTopicsRequest::default().with_validate_only(true).with_timeout_ms(30_000).with_topics(vec![creatable_topic(
            "golden-ct-dry",
            4,
            1,
            &[],
        )]),
    );
    assert_golden(
        "create_topics_v5_validate_only",
        "CreateTopics v5 validate_only: golden-ct-dry (4 partitions), not created.",
        &v5_validate.frame,
    );

    // v7 returns the topic id (KIP-516).
    let v7 = client.call(
        7,
        &CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![creatable_topic("golden-ct-c", 2, 1, &[])]),
    );
    masks.learn_topic(v7.body.topics[0].topic_id, "golden-ct-c");
    let metadata = client.call(
        12,
        &MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name("golden-ct-c")))])),
    );
    assert_eq!(metadata.body.topics[0].topic_id, v7.body.topics[0].topic_id, "Metadata reports the id CreateTopics returned");
    assert_golden(
        "create_topics_v7",
        "CreateTopics v7: golden-ct-c (2 partitions); masked: topic id.",
        &v7.masked(|body: &mut CreateTopicsResponse| {
            for topic in &mut body.topics {
                topic.topic_id = masks.topic_id(topic.topic_id);
            }
        }),
    );
}

// ---------------------------------------------------------------------------------------------
// DeleteTopics (key 20), v1–6

#[test]
fn delete_topics_responses_match_golden() {
    let broker = Broker::start();
    let mut client = broker.connect();
    let mut masks = broker.masks();
    for name in ["golden-del-a", "golden-del-b", "golden-del-c"] {
        create_topic(&mut client, &mut masks, name, 1, &[]);
    }

    let v1 = client.call(
        1,
        &DeleteTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topic_names(vec![topic_name("golden-del-a"), topic_name("golden-del-none")]),
    );
    assert_golden(
        "delete_topics_v1",
        "DeleteTopics v1: golden-del-a (deleted), golden-del-none (UNKNOWN_TOPIC_OR_PARTITION).",
        &v1.frame,
    );

    // v6 deletes by name or by topic id (KIP-516).
    let by_id = masks.topic_id_of("golden-del-c");
    let v6 = client.call(
        6,
        &DeleteTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![
            DeleteTopicState::default().with_name(Some(topic_name("golden-del-b"))),
            DeleteTopicState::default().with_topic_id(by_id),
            DeleteTopicState::default().with_topic_id(UNKNOWN_TOPIC_ID),
        ]),
    );
    assert_eq!(v6.body.responses[0].topic_id, masks.topic_id_of("golden-del-b"), "deleting by name reports the id");
    assert_eq!(v6.body.responses[1].topic_id, by_id);
    assert_golden(
        "delete_topics_v6",
        "DeleteTopics v6: golden-del-b by name, golden-del-c by id (both deleted), an unknown id (UNKNOWN_TOPIC_ID);\nmasked: topic ids.",
        &v6.masked(|body| {
            for topic in &mut body.responses {
                topic.topic_id = masks.topic_id(topic.topic_id);
            }
        }),
    );
}

// ---------------------------------------------------------------------------------------------
// DescribeConfigs (key 32), v1–4

fn describe_resource(resource_type: i8, name: &str, keys: &[&str]) -> DescribeConfigsResource {
    DescribeConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(text(name))
        .with_configuration_keys(Some(keys.iter().map(|key| text(key)).collect()))
}

#[test]
fn describe_configs_responses_match_golden() {
    let broker = Broker::start();
    let mut client = broker.connect();
    let mut masks = broker.masks();
    create_topic(&mut client, &mut masks, "golden-dc", 1, &[("retention.ms", "86400000"), ("cleanup.policy", "compact")]);
    let topic_keys = ["cleanup.policy", "retention.ms", "max.message.bytes", "segment.bytes"];
    let broker_keys = ["num.partitions", "log.retention.hours", "auto.create.topics.enable"];

    let v1 = client.call(
        1,
        &DescribeConfigsRequest::default().with_resources(vec![
            describe_resource(RESOURCE_TOPIC, "golden-dc", &topic_keys),
            describe_resource(RESOURCE_BROKER, "1", &broker_keys),
        ]),
    );
    assert_golden(
        "describe_configs_v1",
        &format!("DescribeConfigs v1 without synonyms: topic golden-dc keys {topic_keys:?} (retention.ms and cleanup.policy overridden),\nbroker 1 keys {broker_keys:?}."),
        &v1.frame,
    );

    let v4 = client.call(
        4,
        &DescribeConfigsRequest::default().with_include_synonyms(true).with_include_documentation(true).with_resources(vec![
            describe_resource(RESOURCE_TOPIC, "golden-dc", &["retention.ms", "segment.bytes"]),
            describe_resource(RESOURCE_BROKER, "1", &["num.partitions"]),
            describe_resource(RESOURCE_TOPIC, "golden-dc-none", &["retention.ms"]),
            describe_resource(RESOURCE_BROKER, "7", &["num.partitions"]),
        ]),
    );
    assert_golden(
        "describe_configs_v4",
        "DescribeConfigs v4 with synonyms and documentation: topic golden-dc [retention.ms, segment.bytes],\n\
         broker 1 [num.partitions], topic golden-dc-none (UNKNOWN_TOPIC_OR_PARTITION), broker 7 (INVALID_REQUEST).",
        &v4.frame,
    );
}

// ---------------------------------------------------------------------------------------------
// AlterConfigs (key 33), v0–2

fn alter_resource(resource_type: i8, name: &str, configs: &[(&str, &str)]) -> AlterConfigsResource {
    AlterConfigsResource::default().with_resource_type(resource_type).with_resource_name(text(name)).with_configs(
        configs
            .iter()
            .map(|(key, value)| AlterableConfig::default().with_name(text(key)).with_value(Some(text(value))))
            .collect(),
    )
}

#[test]
fn alter_configs_responses_match_golden() {
    let broker = Broker::start();
    let mut client = broker.connect();
    let mut masks = broker.masks();
    create_topic(&mut client, &mut masks, "golden-ac", 1, &[]);
    create_topic(&mut client, &mut masks, "golden-ac-b", 1, &[]);

    let v0 = client.call(
        0,
        &AlterConfigsRequest::default().with_resources(vec![
            alter_resource(RESOURCE_TOPIC, "golden-ac", &[("retention.ms", "7200000"), ("max.message.bytes", "2000000")]),
            alter_resource(RESOURCE_TOPIC, "golden-ac-none", &[("retention.ms", "1")]),
            alter_resource(RESOURCE_TOPIC, "golden-ac-b", &[("retention.ms", "soon")]),
        ]),
    );
    assert_golden(
        "alter_configs_v0",
        "AlterConfigs v0: golden-ac set, golden-ac-none (UNKNOWN_TOPIC_OR_PARTITION), golden-ac-b retention.ms=soon (INVALID_CONFIG).",
        &v0.frame,
    );

    let v2 = client.call(
        2,
        &AlterConfigsRequest::default().with_validate_only(true).with_resources(vec![
            alter_resource(RESOURCE_TOPIC, "golden-ac", &[("cleanup.policy", "compact")]),
            alter_resource(RESOURCE_BROKER, "7", &[("num.partitions", "2")]),
        ]),
    );
    assert_golden(
        "alter_configs_v2",
        "AlterConfigs v2 (flexible) validate_only: golden-ac cleanup.policy=compact, broker 7 (INVALID_REQUEST).",
        &v2.frame,
    );
}

// ---------------------------------------------------------------------------------------------
// IncrementalAlterConfigs (key 44), v0–1

fn incremental_resource(
    resource_type: i8,
    name: &str,
    configs: &[(&str, i8, Option<&str>)],
) -> incremental::AlterConfigsResource {
    incremental::AlterConfigsResource::default().with_resource_type(resource_type).with_resource_name(text(name)).with_configs(
        configs
            .iter()
            .map(|(key, operation, value)| {
                incremental::AlterableConfig::default()
                    .with_name(text(key))
                    .with_config_operation(*operation)
                    .with_value(value.map(text))
            })
            .collect(),
    )
}

#[test]
fn incremental_alter_configs_responses_match_golden() {
    const SET: i8 = 0;
    const DELETE: i8 = 1;
    const APPEND: i8 = 2;
    const SUBTRACT: i8 = 3;
    let broker = Broker::start();
    let mut client = broker.connect();
    let mut masks = broker.masks();
    create_topic(&mut client, &mut masks, "golden-iac", 1, &[("segment.ms", "3600000")]);
    create_topic(&mut client, &mut masks, "golden-iac-b", 1, &[]);
    create_topic(&mut client, &mut masks, "golden-iac-c", 1, &[]);

    let v0 = client.call(
        0,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_resource(
                RESOURCE_TOPIC,
                "golden-iac",
                &[("retention.ms", SET, Some("7200000")), ("cleanup.policy", APPEND, Some("compact"))],
            ),
            incremental_resource(RESOURCE_TOPIC, "golden-iac-none", &[("retention.ms", SET, Some("1"))]),
        ]),
    );
    assert_golden(
        "incremental_alter_configs_v0",
        "IncrementalAlterConfigs v0: golden-iac SET retention.ms and APPEND cleanup.policy, golden-iac-none (UNKNOWN_TOPIC_OR_PARTITION).",
        &v0.frame,
    );

    let v1 = client.call(
        1,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_resource(
                RESOURCE_TOPIC,
                "golden-iac",
                &[("segment.ms", DELETE, None), ("cleanup.policy", SUBTRACT, Some("compact"))],
            ),
            incremental_resource(RESOURCE_TOPIC, "golden-iac-b", &[("retention.ms", 9, Some("1"))]),
            incremental_resource(RESOURCE_TOPIC, "golden-iac-c", &[("retention.ms", SET, None)]),
        ]),
    );
    assert_golden(
        "incremental_alter_configs_v1",
        "IncrementalAlterConfigs v1 (flexible): golden-iac DELETE segment.ms and SUBTRACT cleanup.policy,\n\
         golden-iac-b operation 9 (INVALID_REQUEST), golden-iac-c SET with a null value (INVALID_REQUEST).",
        &v1.frame,
    );
}

// ---------------------------------------------------------------------------------------------
// CreatePartitions (key 37), v0–3

fn grow(name: &str, count: i32, assignments: Option<&[&[i32]]>) -> CreatePartitionsTopic {
    CreatePartitionsTopic::default().with_name(topic_name(name)).with_count(count).with_assignments(assignments.map(
        |assignments| {
            assignments
                .iter()
                .map(|brokers| {
                    CreatePartitionsAssignment::default().with_broker_ids(brokers.iter().map(|id| BrokerId(*id)).collect())
                })
                .collect()
        },
    ))
}

#[test]
fn create_partitions_responses_match_golden() {
    let broker = Broker::start();
    let mut client = broker.connect();
    let mut masks = broker.masks();
    create_topic(&mut client, &mut masks, "golden-cp", 1, &[]);

    let v0 = client.call(
        0,
        &CreatePartitionsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![grow("golden-cp", 3, None), grow("golden-cp-none", 2, None)]),
    );
    assert_golden(
        "create_partitions_v0",
        "CreatePartitions v0: golden-cp 1 -> 3, golden-cp-none (UNKNOWN_TOPIC_OR_PARTITION).",
        &v0.frame,
    );

    let shrink =
        client.call(0, &CreatePartitionsRequest::default().with_timeout_ms(30_000).with_topics(vec![grow("golden-cp", 2, None)]));
    assert_golden("create_partitions_v0_shrink", "CreatePartitions v0: golden-cp 3 -> 2 (INVALID_PARTITIONS).", &shrink.frame);

    let v3 = client.call(
        3,
        &CreatePartitionsRequest::default().with_timeout_ms(30_000).with_validate_only(true).with_topics(vec![grow(
            "golden-cp",
            5,
            Some(&[&[1], &[1]]),
        )]),
    );
    assert_golden(
        "create_partitions_v3",
        "CreatePartitions v3 (flexible) validate_only: golden-cp 3 -> 5 with assignments [[1], [1]].",
        &v3.frame,
    );
}

// ---------------------------------------------------------------------------------------------
// DescribeCluster (key 60), v0–1

#[test]
fn describe_cluster_responses_match_golden() {
    let broker = Broker::start();
    let mut client = broker.connect();
    let masks = broker.masks();
    let mask = |body: &mut kafka_protocol::messages::DescribeClusterResponse| {
        if body.error_code == 0 {
            body.cluster_id = masks.cluster_id(&body.cluster_id);
        }
        for entry in &mut body.brokers {
            entry.port = masks.port(entry.port);
        }
    };

    let v0 = client.call(0, &DescribeClusterRequest::default());
    assert_golden("describe_cluster_v0", "DescribeCluster v0; masked: cluster id, broker port.", &v0.masked(mask));

    // KIP-919: v1 asks for broker (1) or controller (2) endpoints.
    let v1 =
        client.call(1, &DescribeClusterRequest::default().with_endpoint_type(1).with_include_cluster_authorized_operations(true));
    assert_golden(
        "describe_cluster_v1",
        "DescribeCluster v1, endpoint_type=1 (brokers), include cluster authorized operations;\nmasked: cluster id, broker port.",
        &v1.masked(mask),
    );

    let controllers = client.call(1, &DescribeClusterRequest::default().with_endpoint_type(2));
    assert_golden(
        "describe_cluster_v1_controllers",
        "DescribeCluster v1, endpoint_type=2 (controllers) sent to a broker.",
        &controllers.masked(mask),
    );
}
