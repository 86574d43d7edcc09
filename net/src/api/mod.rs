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
use fjord_engine::partition::Chunk;

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

/// Every advertised range must lie inside what the codec decodes: a version advertised but not
/// decodable closes the client's connection (OffsetCommit v0–1 and OffsetFetch v0 were, until
/// Kafka 4.0's ranges were adopted). Checked at compile time; net/tests/every_version.rs checks
/// the running broker answers each one.
macro_rules! decodable {
    ($($versions:expr => $request:ty),* $(,)?) => {
        $(const _: () = {
            let codec = <$request as kafka_protocol::protocol::Message>::VERSIONS;
            assert!($versions.min >= codec.min && $versions.max <= codec.max && $versions.min <= $versions.max);
        };)*
    };
}

decodable! {
    produce::VERSIONS => kafka_protocol::messages::ProduceRequest,
    fetch::VERSIONS => kafka_protocol::messages::FetchRequest,
    list_offsets::VERSIONS => kafka_protocol::messages::ListOffsetsRequest,
    metadata::VERSIONS => kafka_protocol::messages::MetadataRequest,
    api_versions::VERSIONS => kafka_protocol::messages::ApiVersionsRequest,
    create_topics::VERSIONS => kafka_protocol::messages::CreateTopicsRequest,
    delete_topics::VERSIONS => kafka_protocol::messages::DeleteTopicsRequest,
    configs::DESCRIBE_VERSIONS => kafka_protocol::messages::DescribeConfigsRequest,
    configs::ALTER_VERSIONS => kafka_protocol::messages::AlterConfigsRequest,
    create_partitions::VERSIONS => kafka_protocol::messages::CreatePartitionsRequest,
    configs::INCREMENTAL_ALTER_VERSIONS => kafka_protocol::messages::IncrementalAlterConfigsRequest,
    describe_cluster::VERSIONS => kafka_protocol::messages::DescribeClusterRequest,
    delete_records::VERSIONS => kafka_protocol::messages::DeleteRecordsRequest,
    groups::FIND_COORDINATOR_VERSIONS => kafka_protocol::messages::FindCoordinatorRequest,
    groups::JOIN_GROUP_VERSIONS => kafka_protocol::messages::JoinGroupRequest,
    groups::HEARTBEAT_VERSIONS => kafka_protocol::messages::HeartbeatRequest,
    groups::LEAVE_GROUP_VERSIONS => kafka_protocol::messages::LeaveGroupRequest,
    groups::SYNC_GROUP_VERSIONS => kafka_protocol::messages::SyncGroupRequest,
    groups::DESCRIBE_GROUPS_VERSIONS => kafka_protocol::messages::DescribeGroupsRequest,
    groups::LIST_GROUPS_VERSIONS => kafka_protocol::messages::ListGroupsRequest,
    groups::OFFSET_COMMIT_VERSIONS => kafka_protocol::messages::OffsetCommitRequest,
    groups::OFFSET_FETCH_VERSIONS => kafka_protocol::messages::OffsetFetchRequest,
    groups::DELETE_GROUPS_VERSIONS => kafka_protocol::messages::DeleteGroupsRequest,
    groups::OFFSET_DELETE_VERSIONS => kafka_protocol::messages::OffsetDeleteRequest,
    consumer_groups::HEARTBEAT_VERSIONS => kafka_protocol::messages::ConsumerGroupHeartbeatRequest,
    consumer_groups::DESCRIBE_VERSIONS => kafka_protocol::messages::ConsumerGroupDescribeRequest,
    init_producer_id::VERSIONS => kafka_protocol::messages::InitProducerIdRequest,
    describe_producers::VERSIONS => kafka_protocol::messages::DescribeProducersRequest,
    transactions::ADD_PARTITIONS_VERSIONS => kafka_protocol::messages::AddPartitionsToTxnRequest,
    transactions::ADD_OFFSETS_VERSIONS => kafka_protocol::messages::AddOffsetsToTxnRequest,
    transactions::END_TXN_VERSIONS => kafka_protocol::messages::EndTxnRequest,
    transactions::WRITE_TXN_MARKERS_VERSIONS => kafka_protocol::messages::WriteTxnMarkersRequest,
    transactions::TXN_OFFSET_COMMIT_VERSIONS => kafka_protocol::messages::TxnOffsetCommitRequest,
    transactions::DESCRIBE_TRANSACTIONS_VERSIONS => kafka_protocol::messages::DescribeTransactionsRequest,
    transactions::LIST_TRANSACTIONS_VERSIONS => kafka_protocol::messages::ListTransactionsRequest,
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

/// Decodes and handles one request frame.
/// `client_host` is the peer's address as Kafka shows it to group admins (`/127.0.0.1`).
pub async fn dispatch(ctx: &Rc<ShardContext>, frame: Bytes, client_host: &Rc<str>) -> Result<Dispatched, RequestError> {
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api = ApiKey::try_from(api_key_raw).map_err(|_| RequestError::UnknownApiKey(api_key_raw))?;
    if api == ApiKey::ApiVersions {
        return api_versions::handle(frame, version).map(|frame| Dispatched::Ready(Some(frame)));
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
    let ctx = ctx.clone();
    match api {
        ApiKey::Produce => produce::handle(ctx, header, decode(api, version, body)?).await,
        ApiKey::Fetch => Ok(Dispatched::Deferred(Box::pin(fetch::handle(ctx, header, decode(api, version, body)?)))),
        ApiKey::ListOffsets => Ok(Dispatched::Deferred(Box::pin(list_offsets::handle(ctx, header, decode(api, version, body)?)))),
        ApiKey::DeleteRecords => {
            Ok(Dispatched::Deferred(Box::pin(delete_records::handle(ctx, header, decode(api, version, body)?))))
        }
        ApiKey::FindCoordinator => ready(groups::find_coordinator(&ctx, &header, decode(api, version, body)?).await),
        ApiKey::JoinGroup => {
            Ok(Dispatched::Deferred(Box::pin(groups::join_group(ctx, header, decode(api, version, body)?, client_host.clone()))))
        }
        ApiKey::Heartbeat => {
            Ok(Dispatched::Deferred(Box::pin(groups::heartbeat(ctx, header, decode(api, version, body)?, client_host.clone()))))
        }
        ApiKey::LeaveGroup => {
            Ok(Dispatched::Deferred(Box::pin(groups::leave_group(ctx, header, decode(api, version, body)?, client_host.clone()))))
        }
        ApiKey::SyncGroup => {
            Ok(Dispatched::Deferred(Box::pin(groups::sync_group(ctx, header, decode(api, version, body)?, client_host.clone()))))
        }
        ApiKey::DescribeGroups => Ok(Dispatched::Deferred(Box::pin(groups::describe_groups(
            ctx,
            header,
            decode(api, version, body)?,
            client_host.clone(),
        )))),
        ApiKey::ListGroups => {
            Ok(Dispatched::Deferred(Box::pin(groups::list_groups(ctx, header, decode(api, version, body)?, client_host.clone()))))
        }
        ApiKey::OffsetCommit => Ok(Dispatched::Deferred(Box::pin(groups::offset_commit(
            ctx,
            header,
            decode(api, version, body)?,
            client_host.clone(),
        )))),
        ApiKey::OffsetFetch => Ok(Dispatched::Deferred(Box::pin(groups::offset_fetch(
            ctx,
            header,
            decode(api, version, body)?,
            client_host.clone(),
        )))),
        ApiKey::DeleteGroups => Ok(Dispatched::Deferred(Box::pin(groups::delete_groups(
            ctx,
            header,
            decode(api, version, body)?,
            client_host.clone(),
        )))),
        ApiKey::OffsetDelete => Ok(Dispatched::Deferred(Box::pin(groups::offset_delete(
            ctx,
            header,
            decode(api, version, body)?,
            client_host.clone(),
        )))),
        ApiKey::ConsumerGroupHeartbeat => Ok(Dispatched::Deferred(Box::pin(consumer_groups::heartbeat(
            ctx,
            header,
            decode(api, version, body)?,
            client_host.clone(),
        )))),
        ApiKey::ConsumerGroupDescribe => Ok(Dispatched::Deferred(Box::pin(consumer_groups::describe(
            ctx,
            header,
            decode(api, version, body)?,
            client_host.clone(),
        )))),
        ApiKey::Metadata => Ok(Dispatched::Ready(metadata::handle(&ctx, &header, decode(api, version, body)?).await?)),
        ApiKey::CreateTopics => ready(create_topics::handle(&ctx, &header, decode(api, version, body)?).await),
        ApiKey::DeleteTopics => ready(delete_topics::handle(&ctx, &header, decode(api, version, body)?).await),
        ApiKey::CreatePartitions => ready(create_partitions::handle(&ctx, &header, decode(api, version, body)?).await),
        ApiKey::DescribeConfigs => ready(configs::describe(&ctx, &header, decode(api, version, body)?)),
        ApiKey::AlterConfigs => ready(configs::alter(&ctx, &header, decode(api, version, body)?).await),
        ApiKey::IncrementalAlterConfigs => ready(configs::incremental_alter(&ctx, &header, decode(api, version, body)?).await),
        ApiKey::InitProducerId => {
            Ok(Dispatched::Deferred(Box::pin(init_producer_id::handle(ctx, header, decode(api, version, body)?))))
        }
        ApiKey::AddPartitionsToTxn => {
            Ok(Dispatched::Deferred(Box::pin(transactions::add_partitions(ctx, header, decode(api, version, body)?))))
        }
        ApiKey::AddOffsetsToTxn => {
            Ok(Dispatched::Deferred(Box::pin(transactions::add_offsets(ctx, header, decode(api, version, body)?))))
        }
        ApiKey::EndTxn => Ok(Dispatched::Deferred(Box::pin(transactions::end_txn(ctx, header, decode(api, version, body)?)))),
        ApiKey::WriteTxnMarkers => {
            Ok(Dispatched::Deferred(Box::pin(transactions::write_txn_markers(ctx, header, decode(api, version, body)?))))
        }
        ApiKey::TxnOffsetCommit => Ok(Dispatched::Deferred(Box::pin(transactions::txn_offset_commit(
            ctx,
            header,
            decode(api, version, body)?,
            client_host.clone(),
        )))),
        ApiKey::DescribeTransactions => {
            Ok(Dispatched::Deferred(Box::pin(transactions::describe_transactions(ctx, header, decode(api, version, body)?))))
        }
        ApiKey::ListTransactions => {
            Ok(Dispatched::Deferred(Box::pin(transactions::list_transactions(ctx, header, decode(api, version, body)?))))
        }
        ApiKey::DescribeProducers => {
            Ok(Dispatched::Deferred(Box::pin(describe_producers::handle(ctx, header, decode(api, version, body)?))))
        }
        ApiKey::DescribeCluster => ready(describe_cluster::handle(&ctx, &header, decode(api, version, body)?)),
        _ => Err(RequestError::UnsupportedVersion { api, version }),
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
    Ok(OutFrame { parts: vec![Chunk::Memory(bytes)] })
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
