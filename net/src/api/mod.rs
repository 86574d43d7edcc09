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
pub mod handler;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod per_partition;
pub mod produce;
pub mod transactions;

use std::future::Future;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

use crate::message::ShardRequest;
use crate::shard::Shard;

use fjord_engine::metrics::API_KEYS_TIMED;
pub use handler::{respond, Answer, Deferred, Dispatched, Framed, RequestError, Versions};

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
    (ApiKey::OffsetForLeaderEpoch, offset_for_leader_epoch::VERSIONS),
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
    OffsetForLeaderEpoch(offset_for_leader_epoch::VERSIONS) => OffsetForLeaderEpochRequest,
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
pub async fn dispatch(shard: &Rc<Shard>, frame: Bytes, client_host: &Rc<str>) -> Result<Dispatched, RequestError> {
    let (header, body) = match decode_request(frame)? {
        DecodedRequest::ApiVersions { frame, version } => {
            return api_versions::handle(frame, version, SUPPORTED).map(|frame| Dispatched::Ready(Some(frame)));
        }
        DecodedRequest::Request { header, body } => (header, body),
    };
    let ctx = shard.ctx.clone();
    let shard = shard.clone();
    let host = client_host.clone();
    match body {
        RequestBody::Produce(request) => produce::handle(shard, header, request).await,
        RequestBody::Fetch(request) => deferred(fetch::handle(ctx, header, request)),
        RequestBody::ListOffsets(request) => deferred(list_offsets::handle(ctx, header, request)),
        RequestBody::DeleteRecords(request) => deferred(delete_records::handle(ctx, header, request)),
        RequestBody::FindCoordinator(request) => ready(groups::find_coordinator(&shard, &header, request).await),
        RequestBody::JoinGroup(request) => deferred(groups::single_group(shard, header, request, host)),
        RequestBody::Heartbeat(request) => deferred(groups::single_group(shard, header, request, host)),
        RequestBody::LeaveGroup(request) => deferred(groups::single_group(shard, header, request, host)),
        RequestBody::SyncGroup(request) => deferred(groups::single_group(shard, header, request, host)),
        RequestBody::DescribeGroups(request) => deferred(groups::describe_groups(shard, header, request, host)),
        RequestBody::ListGroups(request) => deferred(groups::list_groups(shard, header, request, host)),
        RequestBody::OffsetCommit(request) => deferred(groups::offset_commit(shard, header, request, host)),
        RequestBody::OffsetFetch(request) => deferred(groups::offset_fetch(shard, header, request, host)),
        RequestBody::DeleteGroups(request) => deferred(groups::delete_groups(shard, header, request, host)),
        RequestBody::OffsetDelete(request) => deferred(groups::offset_delete(shard, header, request, host)),
        RequestBody::ConsumerGroupHeartbeat(request) => deferred(consumer_groups::heartbeat(shard, header, request, host)),
        RequestBody::ConsumerGroupDescribe(request) => deferred(consumer_groups::describe(shard, header, request, host)),
        RequestBody::Metadata(request) => Ok(Dispatched::Ready(metadata::handle(&ctx, &header, request).await?)),
        RequestBody::CreateTopics(request) => ready(create_topics::handle(&ctx, &header, request).await),
        RequestBody::DeleteTopics(request) => ready(delete_topics::handle(&shard, &header, request).await),
        RequestBody::CreatePartitions(request) => ready(create_partitions::handle(&ctx, &header, request).await),
        RequestBody::DescribeConfigs(request) => ready(configs::describe(&ctx, &header, request)),
        RequestBody::AlterConfigs(request) => ready(configs::alter(&ctx, &header, request).await),
        RequestBody::IncrementalAlterConfigs(request) => ready(configs::incremental_alter(&ctx, &header, request).await),
        RequestBody::InitProducerId(request) => deferred(init_producer_id::handle(shard, header, request)),
        RequestBody::AddPartitionsToTxn(request) => deferred(transactions::add_partitions(shard, header, request)),
        RequestBody::AddOffsetsToTxn(request) => deferred(transactions::add_offsets(shard, header, request)),
        RequestBody::EndTxn(request) => deferred(transactions::end_txn(shard, header, request)),
        RequestBody::WriteTxnMarkers(request) => deferred(transactions::write_txn_markers(shard, header, request)),
        RequestBody::TxnOffsetCommit(request) => deferred(transactions::txn_offset_commit(shard, header, request, host)),
        RequestBody::DescribeTransactions(request) => deferred(transactions::describe_transactions(shard, header, request)),
        RequestBody::ListTransactions(request) => deferred(transactions::list_transactions(shard, header, request)),
        RequestBody::DescribeProducers(request) => deferred(describe_producers::handle(ctx, header, request)),
        RequestBody::OffsetForLeaderEpoch(request) => deferred(offset_for_leader_epoch::handle(ctx, header, request)),
        RequestBody::DescribeCluster(request) => ready(describe_cluster::handle(&ctx, &header, request)),
    }
}

fn deferred(answer: impl Future<Output = Answer> + 'static) -> Result<Dispatched, RequestError> {
    Ok(Dispatched::Deferred(Box::pin(answer)))
}

fn ready(frame: Framed) -> Result<Dispatched, RequestError> {
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

/// Serves a message from another shard (or this one) with its API's owner half. Awaited in
/// arrival order per sending shard: an owner half does its ordered work (appends, offsets)
/// before its first await, and spawns what waits (durability, long polls).
pub async fn serve_owner(shard: Rc<Shard>, request: ShardRequest) {
    let ctx = &shard.ctx;
    match request {
        ShardRequest::Produce { parts, acks, reply } => produce::on_owner(ctx, parts, acks, reply).await,
        ShardRequest::Fetch { parts, reply } => {
            let _ = reply.send(fetch::read_on_owner(ctx, parts).await);
        }
        ShardRequest::Watch { parts, isolation, reply } => {
            let ctx = ctx.clone();
            fjord_engine::rt::spawn_detached(async move { fetch::watch_on_owner(&ctx, parts, isolation, reply).await });
        }
        ShardRequest::ListOffsets { parts, reply } => {
            let _ = reply.send(list_offsets::on_owner(ctx, parts).await);
        }
        ShardRequest::DeleteRecords { parts, reply } => {
            let _ = reply.send(delete_records::on_owner(ctx, parts).await);
        }
        ShardRequest::DescribeProducers { parts, reply } => {
            let _ = reply.send(describe_producers::on_owner(ctx, parts).await);
        }
        ShardRequest::OffsetForLeaderEpoch { parts, reply } => {
            let _ = reply.send(offset_for_leader_epoch::on_owner(ctx, parts).await);
        }
        ShardRequest::DropTopic { topic, partitions, reply } => {
            crate::admin::drop_topic_on_owner(ctx, &topic, partitions).await;
            let _ = reply.send(());
        }
        ShardRequest::Group(message) => shard.groups.handle(message).await,
        ShardRequest::Txn(message) => shard.transactions.handle(message).await,
        ShardRequest::WriteMarkers { parts, marker, reply } => {
            transactions::write_markers_on_owner(&shard, parts, marker, reply).await
        }
    }
}
