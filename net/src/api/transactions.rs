//! The transaction APIs (KIP-98, KIP-664, KIP-890): InitProducerId with a transactional id (22,
//! routed from [`super::init_producer_id`]), AddPartitionsToTxn (24, v0–5: the batched,
//! verify-only form from v4), AddOffsetsToTxn (25, v0–4), EndTxn (26, v0–4), WriteTxnMarkers (27,
//! v1), TxnOffsetCommit (28, v0–4), DescribeTransactions (65, v0), ListTransactions (66, v0–1).
//!
//! Each transactional id is coordinated by the shard owning its `__transaction_state` partition
//! (see [`crate::coordinator::transactions`]); TxnOffsetCommit goes to the group coordinator, after the
//! transaction coordinator has verified that the producer's open transaction holds the group.
//! EndTxn v5 (transaction version 2, KIP-890 part 2) is not served: clients then use v4.

use std::rc::Rc;

use fjord_engine::partition::AppendTicket;
use fjord_engine::rt;

use fjord_group::records;
use fjord_group::txn::TxnReply;
use kafka_protocol::messages::add_partitions_to_txn_response::{AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult};
use kafka_protocol::messages::describe_transactions_response::TransactionState as DescribedTxn;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId, RequestHeader, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};

use futures::channel::oneshot;

use super::groups::{answered_code, partition_exists};
use super::handler::{respond, Answer, Versions};
use super::per_partition;
use crate::codes;
use crate::coordinator::groups::OFFSETS_TOPIC;
use crate::coordinator::transactions::TXN_TOPIC;
use crate::message::{GroupCall, GroupReply, Marker, MarkerPart, TxnAnswer, TxnCall};
use crate::shard::Shard;

pub const ADD_PARTITIONS_VERSIONS: Versions = Versions { min: 0, max: 5 };
pub const ADD_OFFSETS_VERSIONS: Versions = Versions { min: 0, max: 4 };
pub const END_TXN_VERSIONS: Versions = Versions { min: 0, max: 4 };
pub const WRITE_TXN_MARKERS_VERSIONS: Versions = Versions { min: 1, max: 1 };
pub const TXN_OFFSET_COMMIT_VERSIONS: Versions = Versions { min: 0, max: 4 };
pub const DESCRIBE_TRANSACTIONS_VERSIONS: Versions = Versions { min: 0, max: 0 };
pub const LIST_TRANSACTIONS_VERSIONS: Versions = Versions { min: 0, max: 1 };

/// A response one [`TxnReply`] variant carries.
trait TxnResponse: Sized {
    fn pick(reply: TxnReply) -> Option<Self>;
}

macro_rules! txn_responses {
    ($($variant:ident => $response:ty;)*) => {$(
        impl TxnResponse for $response {
            fn pick(reply: TxnReply) -> Option<Self> {
                match reply {
                    TxnReply::$variant(response) => Some(response),
                    _ => None,
                }
            }
        }
    )*};
}

txn_responses! {
    InitProducerId => InitProducerIdResponse;
    AddPartitions => AddPartitionsToTxnResponse;
    AddOffsets => AddOffsetsToTxnResponse;
    EndTxn => EndTxnResponse;
}

/// The state machine's reply of the expected kind, or COORDINATOR_NOT_AVAILABLE.
fn expect_reply<T: TxnResponse>(answer: Result<TxnAnswer, i16>) -> Result<T, i16> {
    match answer? {
        TxnAnswer::Reply(reply) => T::pick(reply).ok_or(codes::COORDINATOR_NOT_AVAILABLE),
        _ => Err(codes::COORDINATOR_NOT_AVAILABLE),
    }
}

/// InitProducerId for a transactional producer: the coordinator of its id answers.
pub async fn init_producer_id(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let transactional_id = request.transactional_id.as_ref().map(|id| id.0.to_string()).unwrap_or_default();
    let answer = shard.transactions.route(&transactional_id, TxnCall::InitProducerId(request), header.request_api_version).await;
    expect_reply(answer).unwrap_or_else(|code| {
        let mut response = InitProducerIdResponse::default();
        response.error_code = code;
        response.producer_id = ProducerId(-1);
        response.producer_epoch = -1;
        response
    })
}

pub async fn add_partitions(shard: Rc<Shard>, header: RequestHeader, request: AddPartitionsToTxnRequest) -> Answer {
    let version = header.request_api_version;
    if version <= 3 {
        let transactional_id = request.v3_and_below_transactional_id.0.to_string();
        let topics = request.v3_and_below_topics.clone();
        let answer = shard.transactions.route(&transactional_id, TxnCall::AddPartitions(request), version).await;
        let response = expect_reply::<AddPartitionsToTxnResponse>(answer).unwrap_or_else(|code| {
            let mut response = AddPartitionsToTxnResponse::default();
            response.results_by_topic_v3_and_below = topic_results(&topics, code);
            response
        });
        return respond(&header, &response).map(Some);
    }
    // v4+: a batch of transactions whose ids hash to different coordinators; one call each.
    let mut response = AddPartitionsToTxnResponse::default();
    for transaction in request.transactions {
        let transactional_id = transaction.transactional_id.0.to_string();
        let topics = transaction.topics.clone();
        let single = AddPartitionsToTxnRequest::default().with_transactions(vec![transaction]);
        let answer = shard.transactions.route(&transactional_id, TxnCall::AddPartitions(single), version).await;
        match expect_reply::<AddPartitionsToTxnResponse>(answer) {
            Ok(answered) if answered.error_code != codes::NONE => {
                response.error_code = answered.error_code;
                break;
            }
            Ok(answered) => response.results_by_transaction.extend(answered.results_by_transaction),
            Err(code) => {
                let mut result = AddPartitionsToTxnResult::default();
                result.transactional_id = kafka_protocol::messages::TransactionalId(transactional_id.into());
                result.topic_results = topic_results(&topics, code);
                response.results_by_transaction.push(result);
            }
        }
    }
    respond(&header, &response).map(Some)
}

/// Every partition of `topics` answered with `code`.
fn topic_results(
    topics: &[kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic],
    code: i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    per_partition::all_failed(topics.iter().map(|topic| (&topic.name, topic.partitions.iter().copied())), code)
}

pub async fn add_offsets(shard: Rc<Shard>, header: RequestHeader, request: AddOffsetsToTxnRequest) -> Answer {
    let transactional_id = request.transactional_id.0.to_string();
    let answer = match shard.groups.ensure_topic().await {
        Ok(info) => {
            let offsets_partition = records::partition_for(&request.group_id, info.partition_count);
            let call = TxnCall::AddOffsets { request, offsets_partition };
            shard.transactions.route(&transactional_id, call, header.request_api_version).await
        }
        Err(code) => Err(code),
    };
    let response = expect_reply(answer).unwrap_or_else(|code| AddOffsetsToTxnResponse::default().with_error_code(code));
    respond(&header, &response).map(Some)
}

pub async fn end_txn(shard: Rc<Shard>, header: RequestHeader, request: EndTxnRequest) -> Answer {
    let transactional_id = request.transactional_id.0.to_string();
    let answer = shard.transactions.route(&transactional_id, TxnCall::EndTxn(request), header.request_api_version).await;
    let response = expect_reply(answer).unwrap_or_else(|code| {
        let mut response = EndTxnResponse::default().with_error_code(code);
        response.producer_id = ProducerId(-1);
        response.producer_epoch = -1;
        response
    });
    respond(&header, &response).map(Some)
}

/// Asks the transaction coordinator whether the producer's open transaction holds `partitions`
/// (KIP-890). Per partition: 0 or a Kafka error code.
pub async fn verify(
    shard: &Shard,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<(String, i32)>,
) -> Vec<i16> {
    let count = partitions.len();
    let call = TxnCall::Verify { transactional_id: transactional_id.to_string(), producer_id, producer_epoch, partitions };
    match shard.transactions.route(transactional_id, call, 0).await {
        Ok(TxnAnswer::Verified(codes)) if codes.len() == count => codes,
        Ok(_) => vec![codes::COORDINATOR_NOT_AVAILABLE; count],
        Err(code) => vec![code; count],
    }
}

pub async fn txn_offset_commit(
    shard: Rc<Shard>,
    header: RequestHeader,
    request: TxnOffsetCommitRequest,
    client_host: Rc<str>,
) -> Answer {
    let group_id = request.group_id.0.to_string();
    let verified = match shard.groups.ensure_topic().await {
        Ok(info) => {
            let partition = records::partition_for(&group_id, info.partition_count);
            let transactional_id = request.transactional_id.0.to_string();
            let partitions = vec![(OFFSETS_TOPIC.to_string(), partition)];
            let code = verify(&shard, &transactional_id, request.producer_id.0, request.producer_epoch, partitions).await[0];
            // KIP-890: a group never added (AddOffsetsToTxn) to this open transaction.
            if code == codes::NONE {
                Ok(())
            } else {
                Err(code)
            }
        }
        Err(code) => Err(code),
    };
    // Only partitions that exist reach the coordinator (KafkaApis does the same).
    let mut known = request.clone();
    for topic in &mut known.topics {
        let name = topic.name.0.to_string();
        topic.partitions.retain(|partition| partition_exists(&shard.ctx, &name, partition.partition_index));
    }
    known.topics.retain(|topic| !topic.partitions.is_empty());
    let answer = match verified {
        Ok(()) if known.topics.is_empty() => Ok(GroupReply::TxnOffsetCommit(TxnOffsetCommitResponse::default())),
        Ok(()) => {
            let client_id = header.client_id.as_ref().map(|id| id.to_string()).unwrap_or_default();
            let call = GroupCall::TxnOffsetCommit(known.clone());
            shard.groups.route(&group_id, call, header.request_api_version, &client_id, &client_host).await
        }
        Err(code) => Err(code),
    };
    let answered = match answer {
        Ok(GroupReply::TxnOffsetCommit(response)) => response,
        Ok(_) => txn_offset_commit_error(&known, codes::COORDINATOR_NOT_AVAILABLE),
        Err(code) => txn_offset_commit_error(&known, code),
    };
    let mut response = txn_offset_commit_error(&request, codes::NONE);
    response.throttle_time_ms = answered.throttle_time_ms;
    for topic in &mut response.topics {
        for partition in &mut topic.partitions {
            partition.error_code = answered_code(
                answered
                    .topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(move |p| (&*t.name.0, p.partition_index, p.error_code))),
                &topic.name.0,
                partition.partition_index,
            );
        }
    }
    respond(&header, &response).map(Some)
}

/// A response naming every partition of `request`, each with `code`.
fn txn_offset_commit_error(request: &TxnOffsetCommitRequest, code: i16) -> TxnOffsetCommitResponse {
    let topics =
        request.topics.iter().map(|topic| (&topic.name, topic.partitions.iter().map(|partition| partition.partition_index)));
    TxnOffsetCommitResponse::default().with_topics(per_partition::all_failed(topics, code))
}

/// WriteTxnMarkers: what coordinators send partition leaders. Served for tools and tests; this
/// node's own coordinator writes its markers directly.
pub async fn write_txn_markers(shard: Rc<Shard>, header: RequestHeader, request: WriteTxnMarkersRequest) -> Answer {
    let mut response = WriteTxnMarkersResponse::default();
    for wanted in &request.markers {
        let partitions: Vec<(String, i32)> = wanted
            .topics
            .iter()
            .flat_map(|topic| topic.partition_indexes.iter().map(|index| (topic.name.to_string(), *index)))
            .collect();
        let marker = Marker {
            producer_id: wanted.producer_id.0,
            producer_epoch: wanted.producer_epoch,
            coordinator_epoch: wanted.coordinator_epoch,
            commit: wanted.transaction_result,
        };
        let mut written = crate::coordinator::transactions::write_markers(&shard.ctx, &partitions, marker).await.into_iter();
        let mut result = WritableTxnMarkerResult::default();
        result.producer_id = wanted.producer_id;
        for topic in &wanted.topics {
            let mut answered = WritableTxnMarkerTopicResult::default();
            answered.name = topic.name.clone();
            for index in &topic.partition_indexes {
                let mut partition = WritableTxnMarkerPartitionResult::default();
                partition.partition_index = *index;
                partition.error_code = written.next().unwrap_or(codes::UNKNOWN_SERVER_ERROR);
                answered.partitions.push(partition);
            }
            result.topics.push(answered);
        }
        response.markers.push(result);
    }
    respond(&header, &response).map(Some)
}

/// On the owner shard: appends the marker to each part in order, then (spawned) waits for them
/// to be durable and replies. `__consumer_offsets` parts go through the group coordinator, which
/// applies or drops the transaction's offsets.
pub async fn write_markers_on_owner(shard: &Rc<Shard>, parts: Vec<MarkerPart>, marker: Marker, reply: oneshot::Sender<Vec<i16>>) {
    enum Waiting {
        Done(i16),
        Data(AppendTicket),
        Offsets(oneshot::Receiver<GroupReply>),
    }
    let mut waiting = Vec::with_capacity(parts.len());
    for part in parts {
        if part.topic == OFFSETS_TOPIC {
            waiting.push(Waiting::Offsets(shard.groups.start_txn_marker(part.partition, marker).await));
            continue;
        }
        let appended = match shard.ctx.store.get_or_open(&part.topic, part.partition, &part.spec).await {
            Ok(partition) => {
                partition
                    .append_marker(marker.producer_id, marker.producer_epoch, marker.coordinator_epoch, marker.control())
                    .await
            }
            Err(error) => Err(error),
        };
        waiting.push(match appended {
            Ok(ticket) => Waiting::Data(ticket),
            Err(error) => Waiting::Done(error.kafka_error_code()),
        });
    }
    rt::spawn_detached(async move {
        let mut codes = Vec::with_capacity(waiting.len());
        for item in waiting {
            codes.push(match item {
                Waiting::Done(code) => code,
                Waiting::Data(ticket) => ticket.wait().await.err().unwrap_or(0),
                Waiting::Offsets(receiver) => match receiver.await {
                    Ok(GroupReply::Marker(code)) => code,
                    _ => codes::COORDINATOR_NOT_AVAILABLE,
                },
            });
        }
        let _ = reply.send(codes);
    });
}

pub async fn describe_transactions(shard: Rc<Shard>, header: RequestHeader, request: DescribeTransactionsRequest) -> Answer {
    let mut response = DescribeTransactionsResponse::default();
    for transactional_id in request.transactional_ids {
        let id = transactional_id.0.to_string();
        let answer = shard.transactions.route(&id, TxnCall::Describe(id.clone()), header.request_api_version).await;
        let described = match answer {
            Ok(TxnAnswer::Described(described)) => described,
            other => {
                let mut failed = DescribedTxn::default();
                failed.transactional_id = transactional_id;
                failed.error_code = match other {
                    Err(code) => code,
                    Ok(_) => codes::COORDINATOR_NOT_AVAILABLE,
                };
                failed.producer_id = ProducerId(-1);
                failed.producer_epoch = -1;
                failed.transaction_start_time_ms = -1;
                failed
            }
        };
        response.transaction_states.push(described);
    }
    respond(&header, &response).map(Some)
}

/// ListTransactions: every `__transaction_state` partition's transactions, with KIP-664's state
/// and producer filters, v1's duration filter (KIP-994); unknown state names are echoed back.
pub async fn list_transactions(shard: Rc<Shard>, header: RequestHeader, request: ListTransactionsRequest) -> Answer {
    let mut response = ListTransactionsResponse::default();
    response.unknown_state_filters = fjord_group::txn::unknown_state_filters(&request);
    if let Some(info) = shard.ctx.topic(TXN_TOPIC) {
        for partition in 0..info.partition_count {
            let call = TxnCall::List(request.clone());
            match shard.transactions.call_partition(partition, call, header.request_api_version).await {
                Ok(TxnAnswer::Listed(Ok(listed))) => response.transaction_states.extend(listed),
                Ok(TxnAnswer::Listed(Err(code))) => response.error_code = code,
                Ok(_) => response.error_code = codes::COORDINATOR_NOT_AVAILABLE,
                Err(code) => response.error_code = code,
            }
        }
    }
    respond(&header, &response).map(Some)
}
