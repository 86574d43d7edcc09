//! One module per Kafka API, each declaring the version range it serves, and the dispatcher.
//!
//! A handler runs in two halves: the part that must happen in request order (routing produce
//! parts to their owners, which assigns offsets) is awaited by the connection before it reads the
//! next request; the rest (waiting for durability or data) runs as its own task, and responses
//! are written in request order.

pub mod api_versions;
pub mod configs;
pub mod consumer_groups;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_producers;
pub mod fetch;
pub mod groups;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod transactions;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::context::ShardContext;
use crate::response::{self, OutFrame};
use fjord_engine::metrics::API_KEYS_TIMED;

/// A version range an API module serves.
#[derive(Debug, Clone, Copy)]
pub struct Versions {
    pub min: i16,
    pub max: i16,
}

/// Every API Fjord serves, with the versions it advertises (Kafka 4.0's ranges).
pub const SUPPORTED: &[(ApiKey, Versions)] = &[
    (ApiKey::Produce, produce::VERSIONS),
    (ApiKey::Fetch, fetch::VERSIONS),
    (ApiKey::ListOffsets, list_offsets::VERSIONS),
    (ApiKey::Metadata, metadata::VERSIONS),
    (ApiKey::ApiVersions, api_versions::VERSIONS),
    (ApiKey::CreateTopics, create_topics::VERSIONS),
    (ApiKey::DeleteTopics, delete_topics::VERSIONS),
    (ApiKey::DescribeConfigs, configs::DESCRIBE_VERSIONS),
    (ApiKey::AlterConfigs, configs::ALTER_VERSIONS),
    (ApiKey::CreatePartitions, create_partitions::VERSIONS),
    (ApiKey::IncrementalAlterConfigs, configs::INCREMENTAL_ALTER_VERSIONS),
    (ApiKey::DescribeCluster, describe_cluster::VERSIONS),
    (ApiKey::DeleteRecords, delete_records::VERSIONS),
    (ApiKey::FindCoordinator, groups::FIND_COORDINATOR_VERSIONS),
    (ApiKey::JoinGroup, groups::JOIN_GROUP_VERSIONS),
    (ApiKey::Heartbeat, groups::HEARTBEAT_VERSIONS),
    (ApiKey::LeaveGroup, groups::LEAVE_GROUP_VERSIONS),
    (ApiKey::SyncGroup, groups::SYNC_GROUP_VERSIONS),
    (ApiKey::DescribeGroups, groups::DESCRIBE_GROUPS_VERSIONS),
    (ApiKey::ListGroups, groups::LIST_GROUPS_VERSIONS),
    (ApiKey::OffsetCommit, groups::OFFSET_COMMIT_VERSIONS),
    (ApiKey::OffsetFetch, groups::OFFSET_FETCH_VERSIONS),
    (ApiKey::DeleteGroups, groups::DELETE_GROUPS_VERSIONS),
    (ApiKey::OffsetDelete, groups::OFFSET_DELETE_VERSIONS),
    (ApiKey::ConsumerGroupHeartbeat, consumer_groups::HEARTBEAT_VERSIONS),
    (ApiKey::ConsumerGroupDescribe, consumer_groups::DESCRIBE_VERSIONS),
    (ApiKey::InitProducerId, init_producer_id::VERSIONS),
    (ApiKey::DescribeProducers, describe_producers::VERSIONS),
    (ApiKey::AddPartitionsToTxn, transactions::ADD_PARTITIONS_VERSIONS),
    (ApiKey::AddOffsetsToTxn, transactions::ADD_OFFSETS_VERSIONS),
    (ApiKey::EndTxn, transactions::END_TXN_VERSIONS),
    (ApiKey::WriteTxnMarkers, transactions::WRITE_TXN_MARKERS_VERSIONS),
    (ApiKey::TxnOffsetCommit, transactions::TXN_OFFSET_COMMIT_VERSIONS),
    (ApiKey::DescribeTransactions, transactions::DESCRIBE_TRANSACTIONS_VERSIONS),
    (ApiKey::ListTransactions, transactions::LIST_TRANSACTIONS_VERSIONS),
];

/// The request body each API in [`SUPPORTED`] decodes (all but ApiVersions, which its module
/// reads itself, whatever the version), with the versions it serves. Generates [`RequestBody`] and
/// its decoder, and checks at compile time that every advertised range lies inside what the codec
/// decodes: a version advertised but not decodable closes the client's connection (OffsetCommit
/// v0–1 and OffsetFetch v0 were, until Kafka 4.0's ranges were adopted), and that this list and
/// [`SUPPORTED`] name the same APIs. net/tests/every_version.rs checks the running broker answers
/// each version.
macro_rules! requests {
    ($($api:ident($versions:expr) => $request:ident),* $(,)?) => {
        $(const _: () = {
            let codec = <kafka_protocol::messages::$request as kafka_protocol::protocol::Message>::VERSIONS;
            assert!($versions.min >= codec.min && $versions.max <= codec.max && $versions.min <= $versions.max);
            assert!(is_supported(ApiKey::$api), "a request body for an API that SUPPORTED does not list");
        };)*

        /// A decoded request body: one variant per API in [`SUPPORTED`] but ApiVersions.
        #[derive(Debug)]
        #[allow(clippy::large_enum_variant)] // moved once, from the decoder to its handler
        pub enum RequestBody {
            $($api(kafka_protocol::messages::$request),)*
        }

        fn decode_body(api: ApiKey, version: i16, body: Bytes) -> Result<RequestBody, RequestError> {
            match api {
                $(ApiKey::$api => decode(api, version, body).map(RequestBody::$api),)*
                _ => Err(RequestError::UnsupportedVersion { api, version }),
            }
        }

        const fn has_body(api: ApiKey) -> bool {
            matches!(api, $(ApiKey::$api)|*)
        }
    };
}

requests! {
    Produce(produce::VERSIONS) => ProduceRequest,
    Fetch(fetch::VERSIONS) => FetchRequest,
    ListOffsets(list_offsets::VERSIONS) => ListOffsetsRequest,
    Metadata(metadata::VERSIONS) => MetadataRequest,
    CreateTopics(create_topics::VERSIONS) => CreateTopicsRequest,
    DeleteTopics(delete_topics::VERSIONS) => DeleteTopicsRequest,
    DescribeConfigs(configs::DESCRIBE_VERSIONS) => DescribeConfigsRequest,
    AlterConfigs(configs::ALTER_VERSIONS) => AlterConfigsRequest,
    CreatePartitions(create_partitions::VERSIONS) => CreatePartitionsRequest,
    IncrementalAlterConfigs(configs::INCREMENTAL_ALTER_VERSIONS) => IncrementalAlterConfigsRequest,
    DescribeCluster(describe_cluster::VERSIONS) => DescribeClusterRequest,
    DeleteRecords(delete_records::VERSIONS) => DeleteRecordsRequest,
    FindCoordinator(groups::FIND_COORDINATOR_VERSIONS) => FindCoordinatorRequest,
    JoinGroup(groups::JOIN_GROUP_VERSIONS) => JoinGroupRequest,
    Heartbeat(groups::HEARTBEAT_VERSIONS) => HeartbeatRequest,
    LeaveGroup(groups::LEAVE_GROUP_VERSIONS) => LeaveGroupRequest,
    SyncGroup(groups::SYNC_GROUP_VERSIONS) => SyncGroupRequest,
    DescribeGroups(groups::DESCRIBE_GROUPS_VERSIONS) => DescribeGroupsRequest,
    ListGroups(groups::LIST_GROUPS_VERSIONS) => ListGroupsRequest,
    OffsetCommit(groups::OFFSET_COMMIT_VERSIONS) => OffsetCommitRequest,
    OffsetFetch(groups::OFFSET_FETCH_VERSIONS) => OffsetFetchRequest,
    DeleteGroups(groups::DELETE_GROUPS_VERSIONS) => DeleteGroupsRequest,
    OffsetDelete(groups::OFFSET_DELETE_VERSIONS) => OffsetDeleteRequest,
    ConsumerGroupHeartbeat(consumer_groups::HEARTBEAT_VERSIONS) => ConsumerGroupHeartbeatRequest,
    ConsumerGroupDescribe(consumer_groups::DESCRIBE_VERSIONS) => ConsumerGroupDescribeRequest,
    InitProducerId(init_producer_id::VERSIONS) => InitProducerIdRequest,
    DescribeProducers(describe_producers::VERSIONS) => DescribeProducersRequest,
    AddPartitionsToTxn(transactions::ADD_PARTITIONS_VERSIONS) => AddPartitionsToTxnRequest,
    AddOffsetsToTxn(transactions::ADD_OFFSETS_VERSIONS) => AddOffsetsToTxnRequest,
    EndTxn(transactions::END_TXN_VERSIONS) => EndTxnRequest,
    WriteTxnMarkers(transactions::WRITE_TXN_MARKERS_VERSIONS) => WriteTxnMarkersRequest,
    TxnOffsetCommit(transactions::TXN_OFFSET_COMMIT_VERSIONS) => TxnOffsetCommitRequest,
    DescribeTransactions(transactions::DESCRIBE_TRANSACTIONS_VERSIONS) => DescribeTransactionsRequest,
    ListTransactions(transactions::LIST_TRANSACTIONS_VERSIONS) => ListTransactionsRequest,
}

// ApiVersions's module reads its body, but its range is checked against the codec the same way.
const _: () = {
    let codec = <kafka_protocol::messages::ApiVersionsRequest as kafka_protocol::protocol::Message>::VERSIONS;
    assert!(api_versions::VERSIONS.min >= codec.min && api_versions::VERSIONS.max <= codec.max);
};

// Every API in SUPPORTED but ApiVersions has its body above.
const _: () = {
    let mut index = 0;
    while index < SUPPORTED.len() {
        let api = SUPPORTED[index].0;
        assert!(matches!(api, ApiKey::ApiVersions) || has_body(api), "an API in SUPPORTED without a request body");
        index += 1;
    }
};

const fn is_supported(api: ApiKey) -> bool {
    let mut index = 0;
    while index < SUPPORTED.len() {
        if SUPPORTED[index].0 as i16 == api as i16 {
            return true;
        }
        index += 1;
    }
    false
}

pub fn supported_versions(api_key: ApiKey) -> Option<Versions> {
    SUPPORTED.iter().find(|(key, _)| *key == api_key).map(|(_, versions)| *versions)
}

/// The response half still to come.
pub type Deferred = Pin<Box<dyn Future<Output = Result<Option<OutFrame>, RequestError>>>>;

pub enum Dispatched {
    /// Response ready (or none, for acks=0).
    Ready(Option<OutFrame>),
    /// Response computed by a future that may wait (durability, long poll).
    Deferred(Deferred),
}

/// Why a request ends its connection instead of getting a response.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("request of {0} bytes is too short for its API key and version")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} version {version} is not supported")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("cannot decode {api:?} v{version} request: {reason}")]
    Decode { api: ApiKey, version: i16, reason: String },
    #[error(transparent)]
    Encode(#[from] response::EncodeError),
}

/// Kafka's name of each API key below [`API_KEYS_TIMED`] (`Produce`, `Fetch`, ...), the key itself
/// where the protocol has none: the `api` label of the request-time metrics.
pub fn api_names() -> Vec<String> {
    (0..API_KEYS_TIMED)
        .map(|key| match i16::try_from(key).ok().and_then(|key| ApiKey::try_from(key).ok()) {
            Some(api) => format!("{api:?}"),
            None => key.to_string(),
        })
        .collect()
}

/// A request frame decoded up to its handler.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // moved once, from the decoder to its handler
pub enum DecodedRequest {
    /// ApiVersions is answered from the frame itself, whatever its version (KIP-511): see
    /// [`api_versions::handle`].
    ApiVersions {
        frame: Bytes,
        version: i16,
    },
    Request {
        header: RequestHeader,
        body: RequestBody,
    },
}

/// Everything a request's bytes go through before its handler: API key, the version range served,
/// header and body. `frame` is what [`crate::frame::read_frame`] returns (the request without its
/// size prefix). Hostile bytes give an error, never a panic (fuzz/fuzz_targets/request_decode.rs).
pub fn decode_request(frame: Bytes) -> Result<DecodedRequest, RequestError> {
    let &[key_high, key_low, version_high, version_low, ..] = &frame[..] else {
        return Err(RequestError::TooShort(frame.len()));
    };
    let api_key_raw = i16::from_be_bytes([key_high, key_low]);
    let version = i16::from_be_bytes([version_high, version_low]);
    let api = ApiKey::try_from(api_key_raw).map_err(|_| RequestError::UnknownApiKey(api_key_raw))?;
    if api == ApiKey::ApiVersions {
        return Ok(DecodedRequest::ApiVersions { frame, version });
    }
    let Some(versions) = supported_versions(api) else {
        return Err(RequestError::UnsupportedVersion { api, version });
    };
    if version < versions.min || version > versions.max {
        return Err(RequestError::UnsupportedVersion { api, version });
    }
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, api.request_header_version(version)).map_err(|error| RequestError::Decode {
        api,
        version,
        reason: error.to_string(),
    })?;
    let body = decode_body(api, version, body)?;
    Ok(DecodedRequest::Request { header, body })
}

/// Decodes and handles one request frame.
/// `client_host` is the peer's address as Kafka shows it to group admins (`/127.0.0.1`).
pub async fn dispatch(ctx: &Rc<ShardContext>, frame: Bytes, client_host: &Rc<str>) -> Result<Dispatched, RequestError> {
    let (header, body) = match decode_request(frame)? {
        DecodedRequest::ApiVersions { frame, version } => {
            return api_versions::handle(frame, version).map(|frame| Dispatched::Ready(Some(frame)));
        }
        DecodedRequest::Request { header, body } => (header, body),
    };
    let ctx = ctx.clone();
    match body {
        RequestBody::Produce(request) => produce::handle(ctx, header, request).await,
        RequestBody::Fetch(request) => Ok(Dispatched::Deferred(Box::pin(fetch::handle(ctx, header, request)))),
        RequestBody::ListOffsets(request) => Ok(Dispatched::Deferred(Box::pin(list_offsets::handle(ctx, header, request)))),
        RequestBody::DeleteRecords(request) => Ok(Dispatched::Deferred(Box::pin(delete_records::handle(ctx, header, request)))),
        RequestBody::FindCoordinator(request) => ready(groups::find_coordinator(&ctx, &header, request).await),
        RequestBody::JoinGroup(request) => {
            Ok(Dispatched::Deferred(Box::pin(groups::join_group(ctx, header, request, client_host.clone()))))
        }
        RequestBody::Heartbeat(request) => {
            Ok(Dispatched::Deferred(Box::pin(groups::heartbeat(ctx, header, request, client_host.clone()))))
        }
        RequestBody::LeaveGroup(request) => {
            Ok(Dispatched::Deferred(Box::pin(groups::leave_group(ctx, header, request, client_host.clone()))))
        }
        RequestBody::SyncGroup(request) => {
            Ok(Dispatched::Deferred(Box::pin(groups::sync_group(ctx, header, request, client_host.clone()))))
        }
        RequestBody::DescribeGroups(request) => {
            Ok(Dispatched::Deferred(Box::pin(groups::describe_groups(ctx, header, request, client_host.clone()))))
        }
        RequestBody::ListGroups(request) => {
            Ok(Dispatched::Deferred(Box::pin(groups::list_groups(ctx, header, request, client_host.clone()))))
        }
        RequestBody::OffsetCommit(request) => {
            Ok(Dispatched::Deferred(Box::pin(groups::offset_commit(ctx, header, request, client_host.clone()))))
        }
        RequestBody::OffsetFetch(request) => {
            Ok(Dispatched::Deferred(Box::pin(groups::offset_fetch(ctx, header, request, client_host.clone()))))
        }
        RequestBody::DeleteGroups(request) => {
            Ok(Dispatched::Deferred(Box::pin(groups::delete_groups(ctx, header, request, client_host.clone()))))
        }
        RequestBody::OffsetDelete(request) => {
            Ok(Dispatched::Deferred(Box::pin(groups::offset_delete(ctx, header, request, client_host.clone()))))
        }
        RequestBody::ConsumerGroupHeartbeat(request) => {
            Ok(Dispatched::Deferred(Box::pin(consumer_groups::heartbeat(ctx, header, request, client_host.clone()))))
        }
        RequestBody::ConsumerGroupDescribe(request) => {
            Ok(Dispatched::Deferred(Box::pin(consumer_groups::describe(ctx, header, request, client_host.clone()))))
        }
        RequestBody::Metadata(request) => Ok(Dispatched::Ready(metadata::handle(&ctx, &header, request).await?)),
        RequestBody::CreateTopics(request) => ready(create_topics::handle(&ctx, &header, request).await),
        RequestBody::DeleteTopics(request) => ready(delete_topics::handle(&ctx, &header, request).await),
        RequestBody::CreatePartitions(request) => ready(create_partitions::handle(&ctx, &header, request).await),
        RequestBody::DescribeConfigs(request) => ready(configs::describe(&ctx, &header, request)),
        RequestBody::AlterConfigs(request) => ready(configs::alter(&ctx, &header, request).await),
        RequestBody::IncrementalAlterConfigs(request) => ready(configs::incremental_alter(&ctx, &header, request).await),
        RequestBody::InitProducerId(request) => {
            Ok(Dispatched::Deferred(Box::pin(init_producer_id::handle(ctx, header, request))))
        }
        RequestBody::AddPartitionsToTxn(request) => {
            Ok(Dispatched::Deferred(Box::pin(transactions::add_partitions(ctx, header, request))))
        }
        RequestBody::AddOffsetsToTxn(request) => {
            Ok(Dispatched::Deferred(Box::pin(transactions::add_offsets(ctx, header, request))))
        }
        RequestBody::EndTxn(request) => Ok(Dispatched::Deferred(Box::pin(transactions::end_txn(ctx, header, request)))),
        RequestBody::WriteTxnMarkers(request) => {
            Ok(Dispatched::Deferred(Box::pin(transactions::write_txn_markers(ctx, header, request))))
        }
        RequestBody::TxnOffsetCommit(request) => {
            Ok(Dispatched::Deferred(Box::pin(transactions::txn_offset_commit(ctx, header, request, client_host.clone()))))
        }
        RequestBody::DescribeTransactions(request) => {
            Ok(Dispatched::Deferred(Box::pin(transactions::describe_transactions(ctx, header, request))))
        }
        RequestBody::ListTransactions(request) => {
            Ok(Dispatched::Deferred(Box::pin(transactions::list_transactions(ctx, header, request))))
        }
        RequestBody::DescribeProducers(request) => {
            Ok(Dispatched::Deferred(Box::pin(describe_producers::handle(ctx, header, request))))
        }
        RequestBody::DescribeCluster(request) => ready(describe_cluster::handle(&ctx, &header, request)),
    }
}

fn ready(frame: Result<OutFrame, RequestError>) -> Result<Dispatched, RequestError> {
    frame.map(|frame| Dispatched::Ready(Some(frame)))
}

fn decode<T: Decodable>(api: ApiKey, version: i16, mut body: Bytes) -> Result<T, RequestError> {
    // The codec is not ours: a panic inside it on hostile input must cost only this connection.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| T::decode(&mut body, version)));
    match decoded {
        Ok(Ok(request)) => Ok(request),
        Ok(Err(error)) => Err(RequestError::Decode { api, version, reason: error.to_string() }),
        Err(_) => Err(RequestError::Decode { api, version, reason: "the decoder panicked".into() }),
    }
}

/// Encodes a plain response for `header`'s API and version.
pub fn respond<R: Encodable>(header: &RequestHeader, body: &R) -> Result<OutFrame, RequestError> {
    let api = ApiKey::try_from(header.request_api_key).map_err(|_| RequestError::UnknownApiKey(header.request_api_key))?;
    let bytes = response::encode(api, header.request_api_version, header.correlation_id, body)?;
    Ok(OutFrame::encoded(bytes))
}

/// Kafka error codes used across handlers.
pub mod codes {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const INVALID_REQUEST: i16 = 42;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const INVALID_CONFIG: i16 = 40;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const POLICY_VIOLATION: i16 = 44;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INVALID_TXN_STATE: i16 = 48;
    pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
    pub const TRANSACTION_COORDINATOR_FENCED: i16 = 52;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
    pub const PRODUCER_FENCED: i16 = 90;
    pub const STALE_MEMBER_EPOCH: i16 = 113;
    pub const CONCURRENT_TRANSACTIONS: i16 = 51;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
}
