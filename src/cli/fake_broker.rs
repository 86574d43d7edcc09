//! A tiny in-process Kafka broker for tests: one node, one topic `t`, logs in memory.
//!
//! It answers ApiVersions, Metadata, Produce, ListOffsets, Fetch, CreateTopics and DeleteTopics
//! with the `kafka-protocol`
//! codecs, assigns offsets by patching each produced batch's base offset (the CRC does not
//! cover it), and can misbehave the ways real brokers do: refuse the newest ApiVersions, or cut
//! the last batch of a fetch response short.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};
use uuid::Uuid;

/// The one topic the fake broker hosts.
pub const TOPIC: &str = "t";
/// Its id.
pub const TOPIC_ID: Uuid = Uuid::from_u128(0x1234);

/// How the fake broker behaves.
#[derive(Debug, Clone, Copy)]
pub struct FakeConfig {
    pub partition_count: i32,
    /// Highest ApiVersions version it accepts; newer requests get UNSUPPORTED_VERSION.
    pub api_versions_max: i16,
    /// Cut the last of several batches in a fetch response in half.
    pub truncate_last_batch: bool,
}

/// One partition's log: (base offset, last offset, batch bytes).
type Log = Vec<(i64, i64, Bytes)>;

struct State {
    config: FakeConfig,
    port: u16,
    logs: Vec<Log>,
}

/// Starts the broker on a loopback port; returns HOST:PORT.
pub fn start(config: FakeConfig) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    let logs = (0..config.partition_count).map(|_| Vec::new()).collect();
    let state = Arc::new(Mutex::new(State { config, port, logs }));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let state = Arc::clone(&state);
            std::thread::spawn(move || serve(stream, &state));
        }
    });
    format!("127.0.0.1:{port}")
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    while let Ok(frame) = fjord_client::wire::read_frame(&mut stream, 1 << 30) {
        let response = handle(frame, &mut state.lock().expect("state lock"));
        if let Some(bytes) = response {
            if stream.write_all(&bytes).is_err() {
                return;
            }
        }
    }
}

fn handle(mut payload: Bytes, state: &mut State) -> Option<Bytes> {
    let header = decode_request_header_from_buffer(&mut payload).expect("request header");
    let api = ApiKey::try_from(header.request_api_key).expect("known api");
    let version = header.request_api_version;
    let id = header.correlation_id;
    let frame = match api {
        ApiKey::ApiVersions => api_versions(state, id, version),
        ApiKey::Metadata => {
            let response = metadata(state, decode(&mut payload, version));
            respond(api, version, id, &response)
        }
        ApiKey::Produce => {
            let request: ProduceRequest = decode(&mut payload, version);
            if request.acks == 0 {
                produce(state, request);
                return None;
            }
            respond(api, version, id, &produce(state, request))
        }
        ApiKey::ListOffsets => {
            let response = list_offsets(state, decode(&mut payload, version));
            respond(api, version, id, &response)
        }
        ApiKey::Fetch => respond(api, version, id, &fetch(state, decode(&mut payload, version))),
        ApiKey::CreateTopics => respond(api, version, id, &create_topics(decode(&mut payload, version))),
        ApiKey::DeleteTopics => respond(api, version, id, &delete_topics(decode(&mut payload, version))),
        other => panic!("fake broker does not handle {other:?}"),
    };
    Some(frame)
}

fn decode<T: Decodable>(payload: &mut Bytes, version: i16) -> T {
    T::decode(payload, version).expect("request body")
}

fn respond<T: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &T) -> Bytes {
    let mut payload = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut payload, api.response_header_version(version))
        .expect("response header");
    body.encode(&mut payload, version).expect("response body");
    let mut frame = BytesMut::new();
    frame.put_i32(payload.len() as i32);
    frame.extend_from_slice(&payload);
    frame.freeze()
}

fn api_versions(state: &State, id: i32, version: i16) -> Bytes {
    let max = state.config.api_versions_max;
    let entry = |api: ApiKey, max: i16| {
        let range = api.valid_versions();
        ApiVersion::default().with_api_key(api as i16).with_min_version(range.min).with_max_version(max)
    };
    if version > max {
        let response = ApiVersionsResponse::default().with_error_code(35).with_api_keys(vec![entry(ApiKey::ApiVersions, max)]);
        return respond(ApiKey::ApiVersions, 0, id, &response);
    }
    let apis =
        [ApiKey::Produce, ApiKey::Fetch, ApiKey::ListOffsets, ApiKey::Metadata, ApiKey::CreateTopics, ApiKey::DeleteTopics];
    let mut keys: Vec<ApiVersion> = apis.iter().map(|a| entry(*a, a.valid_versions().max)).collect();
    keys.push(entry(ApiKey::ApiVersions, max));
    respond(ApiKey::ApiVersions, version, id, &ApiVersionsResponse::default().with_api_keys(keys))
}

fn metadata(state: &State, request: MetadataRequest) -> MetadataResponse {
    let broker = MetadataResponseBroker::default()
        .with_node_id(1.into())
        .with_host(StrBytes::from_static_str("127.0.0.1"))
        .with_port(i32::from(state.port));
    let names: Vec<String> = match request.topics {
        None => vec![TOPIC.to_string()],
        Some(topics) => topics.into_iter().filter_map(|t| t.name.map(|n| n.0.to_string())).collect(),
    };
    let topics = names.into_iter().map(|name| topic_metadata(state, name)).collect();
    MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id(Some(StrBytes::from_static_str("fake-cluster")))
        .with_controller_id(1.into())
        .with_topics(topics)
}

fn topic_metadata(state: &State, name: String) -> MetadataResponseTopic {
    let topic = MetadataResponseTopic::default().with_name(Some(TopicName(StrBytes::from_string(name.clone()))));
    if name != TOPIC {
        return topic.with_error_code(3);
    }
    let partitions = (0..state.config.partition_count)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(1.into())
                .with_replica_nodes(vec![1.into()])
                .with_isr_nodes(vec![1.into()])
        })
        .collect();
    topic.with_topic_id(TOPIC_ID).with_partitions(partitions)
}

fn produce(state: &mut State, request: ProduceRequest) -> ProduceResponse {
    let mut responses = Vec::new();
    for partition in request.topic_data.into_iter().flat_map(|t| t.partition_data) {
        let log = &mut state.logs[partition.index as usize];
        let base_offset = log.last().map_or(0, |(_, last, _)| last + 1);
        let mut batch = partition.records.expect("records").to_vec();
        let record_count = (&batch[57..61]).get_i32();
        batch[..8].copy_from_slice(&base_offset.to_be_bytes());
        log.push((base_offset, base_offset + i64::from(record_count) - 1, Bytes::from(batch)));
        responses.push(PartitionProduceResponse::default().with_index(partition.index).with_base_offset(base_offset));
    }
    let topic = TopicProduceResponse::default()
        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
        .with_topic_id(TOPIC_ID)
        .with_partition_responses(responses);
    ProduceResponse::default().with_responses(vec![topic])
}

fn log_end(log: &Log) -> i64 {
    log.last().map_or(0, |(_, last, _)| last + 1)
}

fn list_offsets(state: &State, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let partitions = request
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .map(|p| {
            let end = log_end(&state.logs[p.partition_index as usize]);
            let offset = if p.timestamp == -2 { 0 } else { end };
            ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index).with_offset(offset)
        })
        .collect();
    let topic =
        ListOffsetsTopicResponse::default().with_name(TopicName(StrBytes::from_static_str(TOPIC))).with_partitions(partitions);
    ListOffsetsResponse::default().with_topics(vec![topic])
}

fn fetch(state: &State, request: FetchRequest) -> FetchResponse {
    let partitions = request
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .map(|p| fetch_partition(state, p.partition, p.fetch_offset))
        .collect();
    let topic = FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
        .with_topic_id(TOPIC_ID)
        .with_partitions(partitions);
    FetchResponse::default().with_responses(vec![topic])
}

fn fetch_partition(state: &State, partition: i32, fetch_offset: i64) -> PartitionData {
    let log = &state.logs[partition as usize];
    let end = log_end(log);
    let data = PartitionData::default().with_partition_index(partition).with_high_watermark(end).with_log_start_offset(0);
    if fetch_offset > end {
        return data.with_error_code(1).with_records(None);
    }
    let batches: Vec<&Bytes> = log.iter().filter(|(_, last, _)| *last >= fetch_offset).map(|(_, _, b)| b).collect();
    let mut records = BytesMut::new();
    for (index, batch) in batches.iter().enumerate() {
        let cut = state.config.truncate_last_batch && batches.len() > 1 && index == batches.len() - 1;
        let len = if cut { batch.len() / 2 } else { batch.len() };
        records.extend_from_slice(&batch[..len]);
    }
    data.with_records(Some(records.freeze()))
}

/// Topic `t` already exists; any other name is created (nothing is stored).
fn create_topics(request: CreateTopicsRequest) -> CreateTopicsResponse {
    let results = request
        .topics
        .into_iter()
        .map(|t| {
            let result = CreatableTopicResult::default().with_name(t.name.clone());
            if t.name.0.as_str() == TOPIC {
                let message = format!("Topic '{TOPIC}' already exists.");
                return result.with_error_code(36).with_error_message(Some(StrBytes::from_string(message)));
            }
            result
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

/// Topic `t` is "deleted" (nothing changes); any other name is unknown.
fn delete_topics(request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let names = request.topic_names.into_iter().chain(request.topics.into_iter().filter_map(|t| t.name));
    let results = names
        .map(|name| {
            let code = if name.0.as_str() == TOPIC { 0 } else { 3 };
            DeletableTopicResult::default().with_name(Some(name)).with_error_code(code)
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(results)
}
