//! Golden-file tests of Fjord's Kafka wire encoding: one test per API the broker serves (one per
//! scenario for the group and transaction APIs, which need each other), each API covered at
//! least at the lowest and the highest version Fjord advertises. `schema.rs` walks the golden
//! files of the group and transaction APIs with Apache Kafka's own message definitions.
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
//! - log_append_time_ms of LogAppendTime topics: must be after the records' timestamps; becomes 1;
//! - member ids the group coordinator generates: must be `fjord-golden-<uuid>` (classic groups,
//!   client id + uuid) or a bare hyphenated uuid (KIP-848 groups, ConsumerGroupHeartbeat v0);
//!   the uuid becomes `00000000-0000-0000-0000-00000000000n` for the n-th distinct id;
//! - a transaction's start time (DescribeTransactions): must be a time during the test; becomes 1.
//!
//! Producer ids are not masked: a fresh data directory hands them out from 0, in request order.
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

use std::cell::RefCell;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_producers_request::TopicRequest as DescribeProducersTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request as incremental;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic};
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, AlterConfigsRequest, ApiKey,
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, CreatePartitionsRequest, CreateTopicsRequest,
    CreateTopicsResponse, DeleteGroupsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    DescribeGroupsRequest, DescribeGroupsResponse, DescribeProducersRequest, DescribeTransactionsRequest, EndTxnRequest,
    FetchRequest, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest,
    IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    ListGroupsRequest, ListOffsetsRequest, ListTransactionsRequest, MetadataRequest, MetadataResponse, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, OffsetFetchResponse, ProduceRequest, ProduceResponse, ProducerId, ResponseHeader,
    SyncGroupRequest, TxnOffsetCommitRequest, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::{Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use support::{
    correlation_id, decode_frame, encode_request, golden_path, group_id, join_group_request, parse_golden, request_header, text,
    topic_name, transactional_id, Broker, Client, CLIENT_ID, KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION, REBALANCE_TIMEOUT_MS,
    RETRIABLE, TRANSACTION_TIMEOUT_MS,
};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Fixed inputs

/// What every masked cluster id becomes.
const MASKED_CLUSTER_ID: &str = "MASKED-CLUSTER-ID";
/// What every masked broker port becomes.
const MASKED_PORT: i32 = 9092;
const MASKED_SESSION_ID: i32 = 1;
const MASKED_LOG_APPEND_TIME_MS: i64 = 1;
const MASKED_WALL_CLOCK_MS: i64 = 1;
/// Creation time of the first record of the fixed batch; the others follow a second apart.
const BATCH_TIMESTAMP_FIRST_MS: i64 = 1_700_000_000_000;
/// Records in the fixed batch.
const BATCH_RECORD_COUNT: i64 = 3;
/// A topic id no broker has: requests that name it must get UNKNOWN_TOPIC_ID.
const UNKNOWN_TOPIC_ID: Uuid = Uuid::from_u128(0x0bad_0bad_0bad_0bad_0bad_0bad_0bad_0bad);

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

// ---------------------------------------------------------------------------------------------
// The broker under test (tests/support) and the golden client

trait Golden {
    fn masks(&self) -> Masks;
}

impl Golden for Broker {
    fn masks(&self) -> Masks {
        Masks {
            port: self.port,
            cluster_id: self.cluster_id.clone(),
            topics: Vec::new(),
            members: RefCell::new(Vec::new()),
            started_ms: now_ms(),
        }
    }
}

/// A broker started with `args` added to `fjord start`, a connection to it, and its masks. Keep
/// the broker: dropping it stops the process.
fn golden_broker(args: &[&str]) -> (Broker, Client, Masks) {
    let broker = Broker::start_with(args);
    let client = broker.connect();
    let masks = broker.masks();
    (broker, client, masks)
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

    /// [`GoldenCall::call`], repeated while `code` of the answer is one a client retries before
    /// anything happened (the coordinator's internal topic is being created or loaded, or the
    /// transactional id's previous transaction is completing), at most [`RETRY_WAIT_MAX`].
    fn call_retrying<R: Request>(&mut self, version: i16, request: &R, code: impl Fn(&R::Response) -> i16) -> Reply<R::Response> {
        let deadline = Instant::now() + RETRY_WAIT_MAX;
        loop {
            let reply = self.call(version, request);
            if !RETRIABLE.contains(&code(&reply.body)) || Instant::now() >= deadline {
                return reply;
            }
            std::thread::sleep(RETRY_INTERVAL);
        }
    }
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
    /// Member ids the coordinator generated, in the order the test first saw them.
    members: RefCell<Vec<String>>,
    /// Wall-clock time when the masks were made (after the broker started).
    started_ms: i64,
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

    /// [`Masks::topic_id`] of every id in `ids`, in place.
    fn topic_ids<'a>(&self, ids: impl Iterator<Item = &'a mut Uuid>) {
        for id in ids {
            *id = self.topic_id(*id);
        }
    }

    fn port(&self, port: i32) -> i32 {
        assert_eq!(port, i32::from(self.port), "advertised port");
        MASKED_PORT
    }

    fn cluster_id(&self, cluster_id: &StrBytes) -> StrBytes {
        assert_eq!(cluster_id.as_str(), self.cluster_id, "cluster id must be the one in meta.properties");
        StrBytes::from_static_str(MASKED_CLUSTER_ID)
    }

    /// A member id the coordinator generated: `<client id>-<uuid>` in classic groups (Kafka's
    /// `ClassicGroup.generateMemberId`), a bare uuid in KIP-848 consumer groups joining with
    /// ConsumerGroupHeartbeat v0. Keeps its shape and length, the uuid becoming the n-th
    /// distinct id the test saw (`00000000-0000-0000-0000-00000000000n`); "" stays.
    fn member_id(&self, id: &str) -> StrBytes {
        if id.is_empty() {
            return StrBytes::default();
        }
        let prefix = format!("{CLIENT_ID}-");
        let (prefix, uuid) = match id.strip_prefix(&prefix) {
            Some(uuid) => (prefix.as_str(), uuid),
            None => ("", id),
        };
        assert!(uuid.len() == 36 && Uuid::parse_str(uuid).is_ok(), "member id {id:?} is not [<client id>-]<hyphenated uuid>");
        let mut members = self.members.borrow_mut();
        let n = match members.iter().position(|known| known == id) {
            Some(index) => index + 1,
            None => {
                members.push(id.to_string());
                members.len()
            }
        };
        StrBytes::from_string(format!("{prefix}{}", Uuid::from_u128(n as u128).hyphenated()))
    }

    /// A wall-clock time the broker took during the test (a transaction's start): becomes 1.
    fn wall_clock_ms(&self, ms: i64) -> i64 {
        assert!((self.started_ms..=now_ms()).contains(&ms), "{ms} is not a time during the test (from {})", self.started_ms);
        MASKED_WALL_CLOCK_MS
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

// ---------------------------------------------------------------------------------------------
// Golden files

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
            let mut record = plain_record(index as i64, *timestamp);
            if index == 1 {
                record.headers.insert(text("trace"), Some(Bytes::from_static(b"golden")));
            }
            if index == 2 {
                record.key = None;
            }
            record
        })
        .collect();
    encode_batch(&records, -1)
}

/// Record `index` of a batch: key `key-<index>`, value `value-<index>`, created at `timestamp`,
/// no headers, no producer.
fn plain_record(index: i64, timestamp: i64) -> Record {
    Record {
        offset: index,
        // The encoder keeps records in one batch while offset - sequence is constant;
        // this gives base sequence -1 (no idempotence) for the batch.
        sequence: index as i32 - 1,
        timestamp,
        timestamp_type: TimestampType::Creation,
        key: Some(Bytes::from(format!("key-{index}"))),
        value: Some(Bytes::from(format!("value-{index}"))),
        headers: IndexMap::new(),
        producer_id: -1,
        producer_epoch: -1,
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
    }
}

/// `records` as one uncompressed batch, magic 2; fails unless the encoder kept every record in
/// the one batch, with base sequence `base_sequence`.
fn encode_batch(records: &[Record], base_sequence: i32) -> Bytes {
    let mut buffer = BytesMut::new();
    RecordBatchEncoder::encode(&mut buffer, records.iter(), &RecordEncodeOptions { version: 2, compression: Compression::None })
        .expect("encode a batch");
    let batch = buffer.freeze();
    assert_eq!(batch_field_i32(&batch, 57), records.len() as i32, "one batch holds every record");
    assert_eq!(batch_field_i32(&batch, 53), base_sequence, "base sequence");
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
    masks.topic_ids(response.topics.iter_mut().map(|topic| &mut topic.topic_id));
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
    let (_broker, mut client, mut masks) = golden_broker(&[]);
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
    let (_broker, mut client, mut masks) = golden_broker(&[]);
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
    masks.topic_ids(response.responses.iter_mut().map(|topic| &mut topic.topic_id));
}

#[test]
fn fetch_responses_match_golden_and_return_the_produced_batch() {
    let (_broker, mut client, mut masks) = golden_broker(&[]);
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
    let partition = |&(partition, timestamp): &(i32, i64)| {
        ListOffsetsPartition::default().with_partition_index(partition).with_timestamp(timestamp)
    };
    let topic =
        ListOffsetsTopic::default().with_name(topic_name(topic)).with_partitions(partitions.iter().map(partition).collect());
    ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![topic])
}

#[test]
fn list_offsets_responses_match_golden() {
    let (_broker, mut client, mut masks) = golden_broker(&[]);
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
    let (_broker, mut client, mut masks) = golden_broker(&[]);

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
        &v7.masked(|body: &mut CreateTopicsResponse| masks.topic_ids(body.topics.iter_mut().map(|topic| &mut topic.topic_id))),
    );
}

// ---------------------------------------------------------------------------------------------
// DeleteTopics (key 20), v1–6

#[test]
fn delete_topics_responses_match_golden() {
    let (_broker, mut client, mut masks) = golden_broker(&[]);
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
        &v6.masked(|body| masks.topic_ids(body.responses.iter_mut().map(|topic| &mut topic.topic_id))),
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
    let (_broker, mut client, mut masks) = golden_broker(&[]);
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
    let (_broker, mut client, mut masks) = golden_broker(&[]);
    create_topic(&mut client, &mut masks, "golden-ac", 1, &[]);
    create_topic(&mut client, &mut masks, "golden-ac-b", 1, &[]);

    let resources = vec![
        alter_resource(RESOURCE_TOPIC, "golden-ac", &[("retention.ms", "7200000"), ("max.message.bytes", "2000000")]),
        alter_resource(RESOURCE_TOPIC, "golden-ac-none", &[("retention.ms", "1")]),
        alter_resource(RESOURCE_TOPIC, "golden-ac-b", &[("retention.ms", "soon")]),
    ];
    let v0 = client.call(0, &AlterConfigsRequest::default().with_resources(resources));
    assert_golden(
        "alter_configs_v0",
        "AlterConfigs v0: golden-ac set, golden-ac-none (UNKNOWN_TOPIC_OR_PARTITION), golden-ac-b retention.ms=soon (INVALID_CONFIG).",
        &v0.frame,
    );

    let resources = vec![
        alter_resource(RESOURCE_TOPIC, "golden-ac", &[("cleanup.policy", "compact")]),
        alter_resource(RESOURCE_BROKER, "7", &[("num.partitions", "2")]),
    ];
    let v2 = client.call(2, &AlterConfigsRequest::default().with_validate_only(true).with_resources(resources));
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
    let (_broker, mut client, mut masks) = golden_broker(&[]);
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
    let (_broker, mut client, mut masks) = golden_broker(&[]);
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
    let (_broker, mut client, masks) = golden_broker(&[]);
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

// ---------------------------------------------------------------------------------------------
// Group and transaction APIs: shared pieces

/// How long [`GoldenCall::call_retrying`] retries ([`RETRIABLE`] codes), and how often.
const RETRY_WAIT_MAX: Duration = Duration::from_secs(10);
const RETRY_INTERVAL: Duration = Duration::from_millis(50);

/// Groups form as soon as their members have joined.
const GROUP_BROKER_ARGS: [&str; 2] = ["--group-initial-rebalance-delay-ms", "0"];

/// Setup, not under test: FindCoordinator v4 for `key`, retried until the coordinator's internal
/// topic exists and is loaded, so the calls under test get their first answer.
fn await_coordinator(client: &mut Client, key: &str, key_type: i8) {
    let request = FindCoordinatorRequest::default().with_key_type(key_type).with_coordinator_keys(vec![text(key)]);
    let reply = client.call_retrying(4, &request, |body| body.coordinators[0].error_code);
    assert_eq!(reply.body.coordinators[0].error_code, 0, "FindCoordinator {key}");
}

/// A ConsumerProtocolSubscription v0 (KIP-429 layout, version 0): what a Java consumer sends as
/// its JoinGroup protocol metadata for `topics`.
fn consumer_subscription(topics: &[&str]) -> Bytes {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&0i16.to_be_bytes());
    bytes.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for topic in topics {
        bytes.extend_from_slice(&(topic.len() as i16).to_be_bytes());
        bytes.extend_from_slice(topic.as_bytes());
    }
    bytes.extend_from_slice(&(-1i32).to_be_bytes()); // user data: null
    Bytes::from(bytes)
}

/// A ConsumerProtocolAssignment v0 of `partitions` of `topic`.
fn consumer_assignment(topic: &str, partitions: &[i32]) -> Bytes {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&0i16.to_be_bytes());
    bytes.extend_from_slice(&1i32.to_be_bytes());
    bytes.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    bytes.extend_from_slice(topic.as_bytes());
    bytes.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
    for partition in partitions {
        bytes.extend_from_slice(&partition.to_be_bytes());
    }
    bytes.extend_from_slice(&(-1i32).to_be_bytes()); // user data: null
    Bytes::from(bytes)
}

/// JoinGroup of `group` by a Java consumer subscribed to `topics`, protocol range.
fn consumer_join(group: &str, member_id: &str, topics: &[&str]) -> JoinGroupRequest {
    join_group_request(group, member_id, consumer_subscription(topics))
}

fn mask_join_group(masks: &Masks, body: &mut JoinGroupResponse) {
    body.leader = masks.member_id(&body.leader);
    body.member_id = masks.member_id(&body.member_id);
    for member in &mut body.members {
        member.member_id = masks.member_id(&member.member_id);
    }
}

fn mask_describe_groups(masks: &Masks, body: &mut DescribeGroupsResponse) {
    for group in &mut body.groups {
        for member in &mut group.members {
            member.member_id = masks.member_id(&member.member_id);
        }
    }
}

fn offset_commit_topic(name: &str, offsets: &[(i32, i64, Option<&str>)]) -> OffsetCommitRequestTopic {
    let partition = |&(partition, offset, metadata): &(i32, i64, Option<&str>)| {
        OffsetCommitRequestPartition::default()
            .with_partition_index(partition)
            .with_committed_offset(offset)
            .with_committed_metadata(metadata.map(text))
    };
    OffsetCommitRequestTopic::default().with_name(topic_name(name)).with_partitions(offsets.iter().map(partition).collect())
}

/// OffsetCommit of `topics` to `group` by `member_id` of `generation` (-1 and "": no member).
fn offset_commit_request(
    group: &str,
    generation: i32,
    member_id: &str,
    topics: Vec<OffsetCommitRequestTopic>,
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(text(member_id))
        .with_topics(topics)
}

/// SyncGroup of generation 1 from `member_id`, the leader and only member of `group`, assigning
/// itself every partition of [`GROUP_TOPIC`].
fn self_assigning_sync(group: &str, member_id: &str) -> SyncGroupRequest {
    let assignment = SyncGroupRequestAssignment::default()
        .with_member_id(text(member_id))
        .with_assignment(consumer_assignment(GROUP_TOPIC, &[0, 1, 2]));
    SyncGroupRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id(1)
        .with_member_id(text(member_id))
        .with_assignments(vec![assignment])
}

/// Heartbeat of `member_id` of `group`, generation 1.
fn heartbeat_request(group: &str, member_id: &str) -> HeartbeatRequest {
    HeartbeatRequest::default().with_group_id(group_id(group)).with_generation_id(1).with_member_id(text(member_id))
}

/// DeleteGroups v`version` of `group`, Empty after its member left, and golden-missing:
/// compared with `delete_groups_v<version>`.
fn assert_delete_groups_golden(client: &mut Client, version: i16, group: &str) {
    let delete = client
        .call(version, &DeleteGroupsRequest::default().with_groups_names(vec![group_id(group), group_id("golden-missing")]));
    assert_golden(
        &format!("delete_groups_v{version}"),
        &format!("DeleteGroups v{version}, [{group} (Empty after the leave), golden-missing (GROUP_ID_NOT_FOUND)]."),
        &delete.frame,
    );
}

/// What the golden files say of the authorized operations of a group.
const AUTHORIZED_OPERATIONS_DISCREPANCY: &str =
    "KNOWN DISCREPANCY: without an authorizer Kafka reports the operations that apply to a group\n\
     (AuthHelper.authorizedOperations: READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS = 3400);\n\
     Fjord sends -2147483648 (not requested).";

/// A broker for the group and transaction tests: `topic` created with `partitions`, and the
/// coordinator of each (key, key type) loaded.
fn group_broker(topic: &str, partitions: i32, coordinators: &[(&str, i8)]) -> (Broker, Client, Masks) {
    let (broker, mut client, mut masks) = golden_broker(&GROUP_BROKER_ARGS);
    create_topic(&mut client, &mut masks, topic, partitions, &[]);
    for (key, key_type) in coordinators {
        await_coordinator(&mut client, key, *key_type);
    }
    (broker, client, masks)
}

// ---------------------------------------------------------------------------------------------
// FindCoordinator (key 10), v0–6

#[test]
fn find_coordinator_responses_match_golden() {
    let (_broker, mut client, masks) = golden_broker(&[]);
    await_coordinator(&mut client, "golden-fc-group", KEY_TYPE_GROUP);
    await_coordinator(&mut client, "golden-fc-txn", KEY_TYPE_TRANSACTION);

    // v0: one group key, the coordinator at the top level.
    let v0 = client.call(0, &FindCoordinatorRequest::default().with_key(text("golden-fc-group")));
    assert_eq!((v0.body.error_code, v0.body.node_id), (0, BrokerId(1)));
    assert_golden(
        "find_coordinator_v0",
        "FindCoordinator v0, group golden-fc-group; masked: port.",
        &v0.masked(|body| body.port = masks.port(body.port)),
    );

    // v4+: batched keys (KIP-699), one coordinator per key.
    let v6 = client.call(
        6,
        &FindCoordinatorRequest::default()
            .with_key_type(KEY_TYPE_GROUP)
            .with_coordinator_keys(vec![text("golden-fc-group"), text("golden-fc-group-2")]),
    );
    let mask_v6 = |body: &mut FindCoordinatorResponse| {
        for coordinator in &mut body.coordinators {
            coordinator.port = masks.port(coordinator.port);
        }
    };
    assert_golden(
        "find_coordinator_v6",
        "FindCoordinator v6, key type 0 (group), keys [golden-fc-group, golden-fc-group-2]; masked: ports.",
        &v6.masked(mask_v6),
    );

    let v6_txn = client.call(
        6,
        &FindCoordinatorRequest::default().with_key_type(KEY_TYPE_TRANSACTION).with_coordinator_keys(vec![text("golden-fc-txn")]),
    );
    assert_eq!(v6_txn.body.coordinators[0].error_code, 0);
    assert_golden(
        "find_coordinator_v6_transaction",
        "FindCoordinator v6, key type 1 (transaction), keys [golden-fc-txn]; masked: port.",
        &v6_txn.masked(mask_v6),
    );
}

// ---------------------------------------------------------------------------------------------
// The classic group protocol at its lowest versions: JoinGroup v0, SyncGroup v0, Heartbeat v0,
// OffsetCommit v2, OffsetFetch v1, DescribeGroups v0, ListGroups v0, LeaveGroup v0,
// DeleteGroups v0, OffsetDelete v0 (its only version)

const GROUP_TOPIC: &str = "golden-grp";

#[test]
fn classic_group_responses_at_the_lowest_versions_match_golden() {
    const GROUP: &str = "golden-classic-low";
    let (_broker, mut client, masks) = group_broker(GROUP_TOPIC, 3, &[(GROUP, KEY_TYPE_GROUP)]);

    // v0: no MEMBER_ID_REQUIRED round (KIP-394 is v4+): the join completes at once.
    let join = client.call_retrying(0, &consumer_join(GROUP, "", &[GROUP_TOPIC]), |body| body.error_code);
    assert_eq!(join.body.error_code, 0);
    assert_eq!(join.body.generation_id, 1);
    assert_eq!(join.body.leader, join.body.member_id, "the only member leads");
    let member_id = join.body.member_id.to_string();
    assert_golden(
        "join_group_v0",
        "JoinGroup v0, group golden-classic-low, member id \"\", protocol type consumer, protocol range with a\n\
         ConsumerProtocolSubscription v0 of [golden-grp]; broker started with group.initial.rebalance.delay.ms=0;\n\
         masked: member ids.",
        &join.masked(|body| mask_join_group(&masks, body)),
    );

    let sync = client.call(0, &self_assigning_sync(GROUP, &member_id));
    assert_eq!(sync.body.error_code, 0);
    assert_eq!(sync.body.assignment, consumer_assignment(GROUP_TOPIC, &[0, 1, 2]), "the leader's assignment comes back");
    assert_golden(
        "sync_group_v0",
        "SyncGroup v0 from the leader of golden-classic-low, generation 1, assigning golden-grp [0, 1, 2] to itself.",
        &sync.frame,
    );

    let heartbeat = client.call(0, &heartbeat_request(GROUP, &member_id));
    assert_eq!(heartbeat.body.error_code, 0, "the group is Stable");
    assert_golden("heartbeat_v0", "Heartbeat v0 of the member of golden-classic-low, generation 1 (Stable).", &heartbeat.frame);

    let topics = vec![
        offset_commit_topic(GROUP_TOPIC, &[(0, 5, Some("golden")), (1, 7, None)]),
        offset_commit_topic("golden-grp-none", &[(0, 1, None)]),
    ];
    let commit = client.call(2, &offset_commit_request(GROUP, 1, &member_id, topics).with_retention_time_ms(-1));
    assert_golden(
        "offset_commit_v2",
        "OffsetCommit v2 by the member of golden-classic-low, generation 1, retention -1: golden-grp 0 -> 5 (metadata\n\
         \"golden\"), 1 -> 7 (null metadata), golden-grp-none 0 (UNKNOWN_TOPIC_OR_PARTITION).",
        &commit.frame,
    );

    let fetch = client.call(
        1,
        &OffsetFetchRequest::default().with_group_id(group_id(GROUP)).with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic_name(GROUP_TOPIC))
            .with_partition_indexes(vec![0, 1, 2])])),
    );
    let offsets: Vec<i64> = fetch.body.topics[0].partitions.iter().map(|partition| partition.committed_offset).collect();
    assert_eq!(offsets, [5, 7, -1]);
    assert_golden(
        "offset_fetch_v1",
        "OffsetFetch v1, golden-classic-low, golden-grp [0, 1, 2]: 5 (\"golden\"), 7, none (-1).",
        &fetch.frame,
    );

    let describe =
        client.call(0, &DescribeGroupsRequest::default().with_groups(vec![group_id(GROUP), group_id("golden-missing")]));
    assert_eq!(describe.body.groups[0].group_state.as_str(), "Stable");
    assert_golden(
        "describe_groups_v0",
        "DescribeGroups v0, [golden-classic-low (Stable, one member), golden-missing (Dead)]; masked: member id.",
        &describe.masked(|body| mask_describe_groups(&masks, body)),
    );

    let list = client.call(0, &ListGroupsRequest::default());
    assert_golden("list_groups_v0", "ListGroups v0: every group (golden-classic-low).", &list.frame);

    let leave = client.call(0, &LeaveGroupRequest::default().with_group_id(group_id(GROUP)).with_member_id(text(&member_id)));
    assert_eq!(leave.body.error_code, 0);
    assert_golden("leave_group_v0", "LeaveGroup v0, the member of golden-classic-low.", &leave.frame);

    // A group with offsets and no members (generation -1, member ""), for OffsetDelete.
    const SIMPLE: &str = "golden-simple";
    let simple_commit = client
        .call(9, &offset_commit_request(SIMPLE, -1, "", vec![offset_commit_topic(GROUP_TOPIC, &[(0, 3, None), (1, 4, None)])]));
    assert!(simple_commit.body.topics[0].partitions.iter().all(|partition| partition.error_code == 0));
    let offset_delete = client.call(
        0,
        &OffsetDeleteRequest::default().with_group_id(group_id(SIMPLE)).with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(topic_name(GROUP_TOPIC))
            .with_partitions(vec![
                OffsetDeleteRequestPartition::default().with_partition_index(0),
                OffsetDeleteRequestPartition::default().with_partition_index(5),
            ])]),
    );
    assert_eq!(offset_delete.body.error_code, 0);
    assert_golden(
        "offset_delete_v0",
        "OffsetDelete v0, golden-simple (Empty, offsets for golden-grp 0 and 1): golden-grp 0 (deleted),\n\
         5 (UNKNOWN_TOPIC_OR_PARTITION).",
        &offset_delete.frame,
    );

    assert_delete_groups_golden(&mut client, 0, GROUP);
}

// ---------------------------------------------------------------------------------------------
// The classic group protocol at its highest versions: JoinGroup v9, SyncGroup v5, Heartbeat v4,
// OffsetCommit v9, OffsetFetch v9, DescribeGroups v5, ListGroups v5, LeaveGroup v5,
// DeleteGroups v2

#[test]
fn classic_group_responses_at_the_highest_versions_match_golden() {
    const GROUP: &str = "golden-classic-high";
    let (_broker, mut client, masks) = group_broker(GROUP_TOPIC, 3, &[(GROUP, KEY_TYPE_GROUP)]);

    // KIP-394: a v4+ join without a member id is answered MEMBER_ID_REQUIRED with the id to use.
    let first = client.call_retrying(9, &consumer_join(GROUP, "", &[GROUP_TOPIC]), |body| body.error_code);
    assert_eq!(first.body.error_code, 79, "MEMBER_ID_REQUIRED");
    let member_id = first.body.member_id.to_string();
    assert_golden(
        "join_group_v9_member_id_required",
        "JoinGroup v9, group golden-classic-high, member id \"\": MEMBER_ID_REQUIRED with the member id (KIP-394);\n\
         masked: member id.",
        &first.masked(|body| mask_join_group(&masks, body)),
    );

    let join = client.call(9, &consumer_join(GROUP, &member_id, &[GROUP_TOPIC]).with_reason(Some(text("golden join"))));
    assert_eq!((join.body.error_code, join.body.generation_id), (0, 1));
    assert_eq!(join.body.member_id.as_str(), member_id);
    assert_golden(
        "join_group_v9",
        "JoinGroup v9, golden-classic-high, with the member id MEMBER_ID_REQUIRED gave, reason \"golden join\";\n\
         protocol type consumer, protocol range ([golden-grp]); masked: member ids.",
        &join.masked(|body| mask_join_group(&masks, body)),
    );

    let sync = client.call(
        5,
        &self_assigning_sync(GROUP, &member_id)
            .with_protocol_type(Some(text("consumer")))
            .with_protocol_name(Some(text("range"))),
    );
    assert_eq!(sync.body.error_code, 0);
    assert_golden(
        "sync_group_v5",
        "SyncGroup v5 from the leader of golden-classic-high, generation 1, protocol consumer/range,\n\
         assigning golden-grp [0, 1, 2] to itself.",
        &sync.frame,
    );

    let heartbeat = client.call(4, &heartbeat_request(GROUP, &member_id));
    assert_eq!(heartbeat.body.error_code, 0);
    assert_golden("heartbeat_v4", "Heartbeat v4 of the member of golden-classic-high, generation 1 (Stable).", &heartbeat.frame);

    let topics = vec![
        offset_commit_topic(GROUP_TOPIC, &[(0, 11, Some("golden")), (9, 1, None)]),
        offset_commit_topic("golden-grp-none", &[(0, 1, None)]),
    ];
    let commit = client.call(9, &offset_commit_request(GROUP, 1, &member_id, topics));
    assert_golden(
        "offset_commit_v9",
        "OffsetCommit v9 by the member of golden-classic-high, generation 1: golden-grp 0 -> 11 (\"golden\"),\n\
         golden-grp 9 and golden-grp-none 0 (UNKNOWN_TOPIC_OR_PARTITION).",
        &commit.frame,
    );

    // v8+: several groups (KIP-709); require_stable (KIP-447).
    let fetch = client.call(
        9,
        &OffsetFetchRequest::default().with_require_stable(true).with_groups(vec![
            OffsetFetchRequestGroup::default().with_group_id(group_id(GROUP)).with_topics(None),
            OffsetFetchRequestGroup::default().with_group_id(group_id("golden-missing")).with_topics(Some(vec![
                OffsetFetchRequestTopics::default().with_name(topic_name(GROUP_TOPIC)).with_partition_indexes(vec![0]),
            ])),
        ]),
    );
    assert_eq!(fetch.body.groups[0].topics[0].partitions[0].committed_offset, 11);
    assert_golden(
        "offset_fetch_v9",
        "OffsetFetch v9 require_stable: golden-classic-high all topics (golden-grp 0: 11 \"golden\"),\n\
         golden-missing golden-grp [0] (none, -1).",
        &fetch.frame,
    );

    let describe = client
        .call(5, &DescribeGroupsRequest::default().with_include_authorized_operations(true).with_groups(vec![group_id(GROUP)]));
    assert_golden(
        "describe_groups_v5",
        &format!(
            "DescribeGroups v5, [golden-classic-high], include authorized operations; masked: member id.\n\
             {AUTHORIZED_OPERATIONS_DISCREPANCY}"
        ),
        &describe.masked(|body| mask_describe_groups(&masks, body)),
    );

    // A second, Empty group, which the Stable filter leaves out.
    let simple_commit =
        client.call(9, &offset_commit_request("golden-simple", -1, "", vec![offset_commit_topic(GROUP_TOPIC, &[(0, 3, None)])]));
    assert_eq!(simple_commit.body.topics[0].partitions[0].error_code, 0);
    let list_all = client.call(5, &ListGroupsRequest::default());
    assert_eq!(list_all.body.groups.len(), 2, "golden-classic-high and golden-simple");
    let list = client
        .call(5, &ListGroupsRequest::default().with_states_filter(vec![text("Stable")]).with_types_filter(vec![text("classic")]));
    assert_golden(
        "list_groups_v5",
        "ListGroups v5, states filter [Stable], types filter [classic] (KIP-518, KIP-848): golden-classic-high,\n\
         not golden-simple (Empty).",
        &list.frame,
    );

    // v3+: several members by id (KIP-345), each with its own code.
    let leave = client.call(
        5,
        &LeaveGroupRequest::default().with_group_id(group_id(GROUP)).with_members(vec![
            MemberIdentity::default().with_member_id(text(&member_id)).with_reason(Some(text("golden leave"))),
            MemberIdentity::default().with_member_id(text("fjord-golden-unknown")),
        ]),
    );
    assert_eq!(leave.body.members[0].error_code, 0);
    assert_eq!(leave.body.members[1].error_code, 25, "UNKNOWN_MEMBER_ID");
    assert_golden(
        "leave_group_v5",
        "LeaveGroup v5, golden-classic-high, members [the member (reason \"golden leave\"), fjord-golden-unknown\n\
         (UNKNOWN_MEMBER_ID)]; masked: member id.",
        &leave.masked(|body| {
            for member in &mut body.members {
                if member.member_id.as_str() != "fjord-golden-unknown" {
                    member.member_id = masks.member_id(&member.member_id);
                }
            }
        }),
    );

    assert_delete_groups_golden(&mut client, 2, GROUP);
}

// ---------------------------------------------------------------------------------------------
// KIP-848 consumer groups: ConsumerGroupHeartbeat (key 68) v0–1, ConsumerGroupDescribe (69) v0–1

/// A member id as a Kafka 4 client makes one for ConsumerGroupHeartbeat v1 (KIP-1082):
/// `Uuid.randomUuid().toString()`, 22 characters of URL-safe base64.
const CLIENT_MEMBER_ID: &str = "R29sZGVuTWVtYmVySWQwMQ";

fn consumer_heartbeat(group: &str, member_id: &str, topics: &[&str]) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(group_id(group))
        .with_member_id(text(member_id))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
        .with_subscribed_topic_names(Some(topics.iter().map(|topic| topic_name(topic)).collect()))
        .with_topic_partitions(Some(Vec::new()))
}

#[test]
fn consumer_group_responses_match_golden() {
    const TOPIC: &str = "golden-cg-topic";
    let (_broker, mut client, masks) = group_broker(TOPIC, 2, &[("golden-cg", KEY_TYPE_GROUP)]);
    let mask_heartbeat = |body: &mut ConsumerGroupHeartbeatResponse| {
        if let Some(member_id) = &body.member_id {
            if member_id.as_str() != CLIENT_MEMBER_ID {
                body.member_id = Some(masks.member_id(member_id));
            }
        }
        let assigned = body.assignment.iter_mut().flat_map(|assignment| assignment.topic_partitions.iter_mut());
        masks.topic_ids(assigned.map(|assigned| &mut assigned.topic_id));
    };

    // v0: the coordinator makes the member id.
    let v0 = client.call_retrying(0, &consumer_heartbeat("golden-cg", "", &[TOPIC]), |body| body.error_code);
    assert_eq!(v0.body.error_code, 0);
    assert_eq!(v0.body.member_epoch, 1);
    assert_golden(
        "consumer_group_heartbeat_v0",
        "ConsumerGroupHeartbeat v0, group golden-cg, member id \"\", epoch 0 (join), subscribed [golden-cg-topic]\n\
         (2 partitions); masked: member id, topic id.\n\
         KNOWN DISCREPANCY: Kafka makes the member id with Uuid.randomUuid().toString() (22 characters of\n\
         URL-safe base64); Fjord's is a 36-character hyphenated uuid.",
        &v0.masked(mask_heartbeat),
    );

    // v1 (KIP-1082): the client makes the member id, and must send one.
    let v1 = client.call_retrying(1, &consumer_heartbeat("golden-cg-v1", CLIENT_MEMBER_ID, &[TOPIC]), |body| body.error_code);
    assert_eq!(v1.body.error_code, 0);
    assert_eq!(v1.body.member_id.as_ref().map(|id| id.as_str()), Some(CLIENT_MEMBER_ID));
    assert_golden(
        "consumer_group_heartbeat_v1",
        &format!(
            "ConsumerGroupHeartbeat v1, group golden-cg-v1, member id {CLIENT_MEMBER_ID} (client-made, KIP-1082), epoch 0,\n\
             subscribed [golden-cg-topic]; masked: topic id."
        ),
        &v1.masked(mask_heartbeat),
    );
    let v1_empty = client.call(1, &consumer_heartbeat("golden-cg-v1", "", &[TOPIC]));
    assert_eq!(v1_empty.body.error_code, 42, "INVALID_REQUEST");
    assert_golden(
        "consumer_group_heartbeat_v1_empty_member_id",
        "ConsumerGroupHeartbeat v1, group golden-cg-v1, member id \"\": INVALID_REQUEST (KIP-1082).",
        &v1_empty.frame,
    );

    let mask_describe = |body: &mut ConsumerGroupDescribeResponse| {
        for member in body.groups.iter_mut().flat_map(|group| group.members.iter_mut()) {
            if member.member_id.as_str() != CLIENT_MEMBER_ID {
                member.member_id = masks.member_id(&member.member_id);
            }
            let assigned =
                member.assignment.topic_partitions.iter_mut().chain(member.target_assignment.topic_partitions.iter_mut());
            masks.topic_ids(assigned.map(|assigned| &mut assigned.topic_id));
        }
    };
    let describe_v0 = client.call(
        0,
        &ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id("golden-cg"), group_id("golden-cg-none")]),
    );
    assert_golden(
        "consumer_group_describe_v0",
        "ConsumerGroupDescribe v0, [golden-cg (one member), golden-cg-none (GROUP_ID_NOT_FOUND)];\n\
         masked: member id, topic ids.\n\
         KNOWN DISCREPANCY: Kafka's GroupMetadataManager.consumerGroupDescribe (apache/kafka 1eb7644) answers a\n\
         group not found with only the group id and the code (ErrorMessage null, GroupState \"\"); Fjord adds\n\
         ErrorMessage \"Group not found.\" and GroupState \"Dead\".",
        &describe_v0.masked(mask_describe),
    );
    let describe_v1 = client.call(
        1,
        &ConsumerGroupDescribeRequest::default()
            .with_include_authorized_operations(true)
            .with_group_ids(vec![group_id("golden-cg-v1")]),
    );
    assert_golden(
        "consumer_group_describe_v1",
        &format!(
            "ConsumerGroupDescribe v1, [golden-cg-v1], include authorized operations; masked: topic ids.\n\
             {AUTHORIZED_OPERATIONS_DISCREPANCY}"
        ),
        &describe_v1.masked(mask_describe),
    );
}

// ---------------------------------------------------------------------------------------------
// Transactions: InitProducerId (22) v0–5, AddPartitionsToTxn (24) v0–5, AddOffsetsToTxn (25)
// v0–4, TxnOffsetCommit (28) v0–4, DescribeTransactions (65) v0, ListTransactions (66) v0–1,
// DescribeProducers (61) v0, EndTxn (26) v0–4

/// Three records of one producer: idempotent (`transactional` false) or transactional, base
/// sequence `base_sequence`, creation timestamps a second apart from [`BATCH_TIMESTAMP_FIRST_MS`].
fn producer_batch(producer_id: i64, producer_epoch: i16, base_sequence: i32, transactional: bool) -> Bytes {
    let records: Vec<Record> = (0..BATCH_RECORD_COUNT)
        .map(|index| Record {
            sequence: base_sequence + index as i32,
            producer_id,
            producer_epoch,
            transactional,
            ..plain_record(index, BATCH_TIMESTAMP_FIRST_MS + 1000 * index)
        })
        .collect();
    encode_batch(&records, base_sequence)
}

/// Setup, not under test: produces `batch` to `topic`-`partition` (Produce v9, acks=all) for
/// `transactional` (None: an idempotent producer); returns the base offset.
fn produce_as(client: &mut Client, transactional: Option<&str>, topic: &str, partition: i32, batch: &Bytes) -> i64 {
    let request = produce_request(-1, &[(topic, &[partition])], batch).with_transactional_id(transactional.map(transactional_id));
    let reply = client.call(9, &request);
    let result = &reply.body.responses[0].partition_responses[0];
    assert_eq!(result.error_code, 0, "produce to {topic}-{partition} as {transactional:?}: {:?}", result.error_message);
    result.base_offset
}

/// Setup, not under test: InitProducerId v4 for `transactional`, retried while its coordinator
/// loads. (producer id, epoch).
fn init_transactional(client: &mut Client, transactional: &str) -> (ProducerId, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(transactional_id(transactional)))
        .with_transaction_timeout_ms(TRANSACTION_TIMEOUT_MS);
    let reply = client.call_retrying(4, &request, |body| body.error_code);
    assert_eq!(reply.body.error_code, 0, "InitProducerId {transactional}");
    (reply.body.producer_id, reply.body.producer_epoch)
}

/// Setup, not under test: AddPartitionsToTxn v3 of `partitions` of `topic`, retried while the
/// previous transaction completes.
fn add_partitions(client: &mut Client, transactional: &str, producer: (ProducerId, i16), topic: &str, partitions: &[i32]) {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(transactional_id(transactional))
        .with_v3_and_below_producer_id(producer.0)
        .with_v3_and_below_producer_epoch(producer.1)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(partitions.to_vec())]);
    let code =
        |body: &AddPartitionsToTxnResponse| body.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code;
    let reply = client.call_retrying(3, &request, code);
    assert_eq!(code(&reply.body), 0, "AddPartitionsToTxn {transactional} {topic} {partitions:?}");
}

fn txn_offset_commit_request(transactional: &str, producer: (ProducerId, i16), group: &str) -> TxnOffsetCommitRequest {
    TxnOffsetCommitRequest::default()
        .with_transactional_id(transactional_id(transactional))
        .with_group_id(group_id(group))
        .with_producer_id(producer.0)
        .with_producer_epoch(producer.1)
}

fn txn_offset_commit_topic(name: &str, offsets: &[(i32, i64)]) -> TxnOffsetCommitRequestTopic {
    let partition = |&(partition, offset): &(i32, i64)| {
        TxnOffsetCommitRequestPartition::default().with_partition_index(partition).with_committed_offset(offset)
    };
    TxnOffsetCommitRequestTopic::default().with_name(topic_name(name)).with_partitions(offsets.iter().map(partition).collect())
}

#[test]
fn transaction_responses_match_golden() {
    const TOPIC: &str = "golden-txn";
    const TXN: &str = "golden-txn-a";
    const GROUP: &str = "golden-txn-group";
    let (_broker, mut client, masks) = group_broker(TOPIC, 2, &[(TXN, KEY_TYPE_TRANSACTION), (GROUP, KEY_TYPE_GROUP)]);

    // Idempotent (no transactional id): the first producer id of a fresh data directory.
    let idempotent = client.call(
        0,
        &InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(TRANSACTION_TIMEOUT_MS),
    );
    assert_eq!((idempotent.body.error_code, idempotent.body.producer_id, idempotent.body.producer_epoch), (0, ProducerId(0), 0));
    assert_golden(
        "init_producer_id_v0",
        "InitProducerId v0, no transactional id (idempotent producer): producer id 0 (the first on a fresh data dir), epoch 0.",
        &idempotent.frame,
    );

    let init = client.call_retrying(
        5,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(transactional_id(TXN)))
            .with_transaction_timeout_ms(TRANSACTION_TIMEOUT_MS),
        |body| body.error_code,
    );
    assert_eq!((init.body.error_code, init.body.producer_id, init.body.producer_epoch), (0, ProducerId(1), 0));
    let producer = (init.body.producer_id, init.body.producer_epoch);
    assert_golden(
        "init_producer_id_v5",
        "InitProducerId v5, transactional id golden-txn-a, timeout 60000 ms, producer id/epoch -1: producer id 1, epoch 0.",
        &init.frame,
    );

    let add_request = |partitions: Vec<i32>| {
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(transactional_id(TXN))
            .with_v3_and_below_producer_id(producer.0)
            .with_v3_and_below_producer_epoch(producer.1)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(topic_name(TOPIC))
                .with_partitions(partitions)])
    };
    let add_unknown = client.call(0, &add_request(vec![0, 7]));
    assert_golden(
        "add_partitions_to_txn_v0_unknown_partition",
        "AddPartitionsToTxn v0, golden-txn-a, golden-txn [0, 7]: 7 does not exist (UNKNOWN_TOPIC_OR_PARTITION),\n\
         so 0 is not added (OPERATION_NOT_ATTEMPTED).",
        &add_unknown.frame,
    );
    let add = client.call(0, &add_request(vec![0]));
    assert_eq!(add.body.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code, 0);
    assert_golden("add_partitions_to_txn_v0", "AddPartitionsToTxn v0, golden-txn-a, golden-txn [0].", &add.frame);

    // Data in the transaction, and an idempotent producer's batch beside it, for DescribeProducers.
    assert_eq!(produce_as(&mut client, Some(TXN), TOPIC, 0, &producer_batch(1, 0, 0, true)), 0);
    assert_eq!(produce_as(&mut client, None, TOPIC, 1, &producer_batch(0, 0, 0, false)), 0);

    // v4+: batched, the verify-only form partition leaders send (KIP-890).
    let verify = client.call(
        5,
        &AddPartitionsToTxnRequest::default().with_transactions(vec![AddPartitionsToTxnTransaction::default()
            .with_transactional_id(transactional_id(TXN))
            .with_producer_id(producer.0)
            .with_producer_epoch(producer.1)
            .with_verify_only(true)
            .with_topics(vec![AddPartitionsToTxnTopic::default().with_name(topic_name(TOPIC)).with_partitions(vec![0])])]),
    );
    assert_golden(
        "add_partitions_to_txn_v5",
        "AddPartitionsToTxn v5, one transaction golden-txn-a, verify_only, golden-txn [0] (in the transaction).",
        &verify.frame,
    );

    let add_offsets = |version: i16, client: &mut Client| {
        client.call(
            version,
            &AddOffsetsToTxnRequest::default()
                .with_transactional_id(transactional_id(TXN))
                .with_producer_id(producer.0)
                .with_producer_epoch(producer.1)
                .with_group_id(group_id(GROUP)),
        )
    };
    let add_offsets_v0 = add_offsets(0, &mut client);
    assert_eq!(add_offsets_v0.body.error_code, 0);
    assert_golden("add_offsets_to_txn_v0", "AddOffsetsToTxn v0, golden-txn-a, group golden-txn-group.", &add_offsets_v0.frame);
    let add_offsets_v4 = add_offsets(4, &mut client);
    assert_eq!(add_offsets_v4.body.error_code, 0);
    assert_golden(
        "add_offsets_to_txn_v4",
        "AddOffsetsToTxn v4, golden-txn-a, group golden-txn-group again (already in the transaction).",
        &add_offsets_v4.frame,
    );

    let commit_v0 = client.call(
        0,
        &txn_offset_commit_request(TXN, producer, GROUP).with_topics(vec![txn_offset_commit_topic(TOPIC, &[(0, 3), (7, 1)])]),
    );
    assert_golden(
        "txn_offset_commit_v0",
        "TxnOffsetCommit v0, golden-txn-a, group golden-txn-group: golden-txn 0 -> 3, 7 (UNKNOWN_TOPIC_OR_PARTITION).",
        &commit_v0.frame,
    );
    let commit_v4 = client.call(
        4,
        &txn_offset_commit_request(TXN, producer, GROUP)
            .with_generation_id(-1)
            .with_member_id(text(""))
            .with_topics(vec![txn_offset_commit_topic(TOPIC, &[(1, 3)])]),
    );
    assert_eq!(commit_v4.body.topics[0].partitions[0].error_code, 0);
    assert_golden(
        "txn_offset_commit_v4",
        "TxnOffsetCommit v4, golden-txn-a, group golden-txn-group (no member: generation -1, member \"\"): golden-txn 1 -> 3.",
        &commit_v4.frame,
    );

    let describe = client.call(
        0,
        &DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![transactional_id(TXN), transactional_id("golden-txn-none")]),
    );
    assert_eq!(describe.body.transaction_states[0].transaction_state.as_str(), "Ongoing");
    assert_golden(
        "describe_transactions_v0",
        "DescribeTransactions v0, [golden-txn-a (Ongoing: golden-txn 0 and the group's __consumer_offsets partition),\n\
         golden-txn-none (TRANSACTIONAL_ID_NOT_FOUND)]; masked: transaction start time.",
        &describe.masked(|body| {
            for state in &mut body.transaction_states {
                if state.error_code == 0 {
                    state.transaction_start_time_ms = masks.wall_clock_ms(state.transaction_start_time_ms);
                }
            }
        }),
    );

    let list_v0 = client.call(0, &ListTransactionsRequest::default());
    assert_golden("list_transactions_v0", "ListTransactions v0, no filters: golden-txn-a (Ongoing).", &list_v0.frame);
    let list_v1 = client.call(
        1,
        &ListTransactionsRequest::default()
            .with_state_filters(vec![text("Ongoing"), text("NoSuchState")])
            .with_producer_id_filters(vec![ProducerId(1), ProducerId(99)])
            .with_duration_filter(-1),
    );
    assert_golden(
        "list_transactions_v1",
        "ListTransactions v1, state filters [Ongoing, NoSuchState], producer id filters [1, 99], duration filter -1:\n\
         golden-txn-a; NoSuchState comes back as an unknown state filter.",
        &list_v1.frame,
    );

    let producers = client.call(
        0,
        &DescribeProducersRequest::default().with_topics(vec![DescribeProducersTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partition_indexes(vec![0, 1, 7])]),
    );
    assert_golden(
        "describe_producers_v0",
        "DescribeProducers v0, golden-txn [0 (producer 1, open transaction from offset 0), 1 (idempotent producer 0),\n\
         7 (UNKNOWN_TOPIC_OR_PARTITION)].",
        &producers.frame,
    );

    let end_v0 = client.call(
        0,
        &EndTxnRequest::default()
            .with_transactional_id(transactional_id(TXN))
            .with_producer_id(producer.0)
            .with_producer_epoch(producer.1)
            .with_committed(true),
    );
    assert_eq!(end_v0.body.error_code, 0);
    assert_golden("end_txn_v0", "EndTxn v0, golden-txn-a, commit.", &end_v0.frame);

    // A second transactional id, aborted at the highest version.
    let second = init_transactional(&mut client, "golden-txn-b");
    assert_eq!(second, (ProducerId(2), 0));
    add_partitions(&mut client, "golden-txn-b", second, TOPIC, &[1]);
    let end_v4 = client.call(
        4,
        &EndTxnRequest::default()
            .with_transactional_id(transactional_id("golden-txn-b"))
            .with_producer_id(second.0)
            .with_producer_epoch(second.1)
            .with_committed(false),
    );
    assert_eq!(end_v4.body.error_code, 0);
    assert_golden("end_txn_v4", "EndTxn v4, golden-txn-b (producer 2, golden-txn [1], no data), abort.", &end_v4.frame);

    // The commit took effect: the transaction's offsets become the group's.
    let deadline = Instant::now() + RETRY_WAIT_MAX;
    loop {
        let fetched: OffsetFetchResponse = client.send(
            1,
            &OffsetFetchRequest::default().with_group_id(group_id(GROUP)).with_topics(Some(vec![
                OffsetFetchRequestTopic::default().with_name(topic_name(TOPIC)).with_partition_indexes(vec![0, 1]),
            ])),
        );
        let offsets: Vec<i64> = fetched.topics[0].partitions.iter().map(|partition| partition.committed_offset).collect();
        if offsets == [3, 3] {
            break;
        }
        assert!(Instant::now() < deadline, "the committed transaction's offsets never appeared: {offsets:?}");
        std::thread::sleep(RETRY_INTERVAL);
    }
}

// ---------------------------------------------------------------------------------------------
// WriteTxnMarkers (key 27), v1 (its only version)

/// Fetch v12 read_committed, sessionless, of partitions 0 and 1 of `topic` from offset 0.
fn fetch_committed(client: &mut Client, topic: &str) -> FetchResponse {
    client.send(12, &fetch_request(topic, Uuid::nil(), &[(0, 0), (1, 0)]).with_session_epoch(-1).with_isolation_level(1))
}

/// The records of a fetched partition: (offset, transactional, control, key). A control
/// record's key is its version (0) and type (0 ABORT, 1 COMMIT), two int16s.
fn fetched_records(records: Option<&Bytes>) -> Vec<(i64, bool, bool, Vec<u8>)> {
    let mut bytes = records.cloned().unwrap_or_default();
    RecordBatchDecoder::decode_all(&mut bytes)
        .expect("fetched batches decode")
        .into_iter()
        .flat_map(|set| set.records)
        .map(|record| {
            (record.offset, record.transactional, record.control, record.key.map(|key| key.to_vec()).unwrap_or_default())
        })
        .collect()
}

/// What partition of a transaction's three records followed by its marker must fetch as.
fn transaction_then_marker(commit: bool) -> Vec<(i64, bool, bool, Vec<u8>)> {
    let mut records: Vec<_> =
        (0..BATCH_RECORD_COUNT).map(|index| (index, true, false, format!("key-{index}").into_bytes())).collect();
    records.push((BATCH_RECORD_COUNT, true, true, vec![0, 0, 0, u8::from(commit)]));
    records
}

#[test]
fn write_txn_markers_commits_and_aborts_open_transactions() {
    const TOPIC: &str = "golden-wtm";
    let (_broker, mut client, mut masks) = golden_broker(&[]);
    create_topic(&mut client, &mut masks, TOPIC, 2, &[]);
    await_coordinator(&mut client, "golden-wtm-commit", KEY_TYPE_TRANSACTION);

    // Two open transactions: one on each partition, three records each.
    let committing = init_transactional(&mut client, "golden-wtm-commit");
    let aborting = init_transactional(&mut client, "golden-wtm-abort");
    assert_eq!((committing, aborting), ((ProducerId(0), 0), (ProducerId(1), 0)), "the first producer ids of a fresh data dir");
    add_partitions(&mut client, "golden-wtm-commit", committing, TOPIC, &[0]);
    add_partitions(&mut client, "golden-wtm-abort", aborting, TOPIC, &[1]);
    produce_as(&mut client, Some("golden-wtm-commit"), TOPIC, 0, &producer_batch(committing.0 .0, committing.1, 0, true));
    produce_as(&mut client, Some("golden-wtm-abort"), TOPIC, 1, &producer_batch(aborting.0 .0, aborting.1, 0, true));

    // Open transactions: read_committed sees nothing yet (the last stable offset is their start).
    let before = fetch_committed(&mut client, TOPIC);
    for partition in &before.responses[0].partitions {
        assert_eq!((partition.error_code, partition.high_watermark, partition.last_stable_offset), (0, 3, 0));
        assert!(partition.records.as_ref().is_none_or(|records| records.is_empty()), "no data above the last stable offset");
    }

    let marker = |producer: (ProducerId, i16), commit: bool, partitions: Vec<i32>| {
        WritableTxnMarker::default()
            .with_producer_id(producer.0)
            .with_producer_epoch(producer.1)
            .with_transaction_result(commit)
            .with_coordinator_epoch(0)
            .with_topics(vec![WritableTxnMarkerTopic::default().with_name(topic_name(TOPIC)).with_partition_indexes(partitions)])
    };
    let written = client.call(
        1,
        &WriteTxnMarkersRequest::default()
            .with_markers(vec![marker(committing, true, vec![0]), marker(aborting, false, vec![1, 9])]),
    );
    let codes: Vec<Vec<i16>> = written
        .body
        .markers
        .iter()
        .map(|result| result.topics[0].partitions.iter().map(|partition| partition.error_code).collect())
        .collect();
    assert_eq!(codes, [vec![0], vec![0, 3]]);
    assert_golden(
        "write_txn_markers_v1",
        "WriteTxnMarkers v1: COMMIT for producer 0 (golden-wtm-commit) on golden-wtm [0], ABORT for producer 1\n\
         (golden-wtm-abort) on golden-wtm [1, 9] (9: UNKNOWN_TOPIC_OR_PARTITION), coordinator epoch 0.",
        &written.frame,
    );

    // The markers end both transactions: the committed data becomes visible to read_committed;
    // the aborted data is listed as aborted from its first offset, which a read_committed
    // consumer drops (Kafka's brokers return the batches, the consumer filters them).
    let after = fetch_committed(&mut client, TOPIC);
    let partitions = &after.responses[0].partitions;
    for partition in partitions {
        assert_eq!((partition.error_code, partition.high_watermark, partition.last_stable_offset), (0, 4, 4));
    }
    assert_eq!(fetched_records(partitions[0].records.as_ref()), transaction_then_marker(true), "the data, then a COMMIT marker");
    assert_eq!(partitions[0].aborted_transactions.as_ref().map(Vec::len), Some(0), "nothing aborted on partition 0");
    assert_eq!(fetched_records(partitions[1].records.as_ref()), transaction_then_marker(false), "the data, then an ABORT marker");
    let aborted: Vec<(i64, i64)> = partitions[1]
        .aborted_transactions
        .as_ref()
        .expect("read_committed lists aborted transactions")
        .iter()
        .map(|transaction| (transaction.producer_id.0, transaction.first_offset))
        .collect();
    assert_eq!(aborted, [(aborting.0 .0, 0)], "the aborted transaction, from its first offset");
}
