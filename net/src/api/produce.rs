//! Produce (key 0), v3–12. Parts are routed to their owner shards in request order; the owner
//! validates each batch (CRC32C, header, max.message.bytes), assigns offsets and queues it for
//! group commit. acks=1 is answered once written, acks=all once fdatasync'ed, acks=0 never.
//! Transactional batches are first verified with the producer's transaction coordinator (KIP-890).

use std::rc::Rc;

use fjord_engine::batch::BatchHeader;
use fjord_engine::error::LogError;
use fjord_engine::partition::{Acks, AppendTicket};
use fjord_engine::rt;
use futures::channel::oneshot;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;

use super::handler::{respond, Dispatched, RequestError, Versions};
use crate::admin;
use crate::codes;
use crate::context::{ShardContext, TopicInfo};
use crate::message::{ProducePart, ProduceResult, ShardRequest};
use crate::router;
use crate::shard::Shard;

pub const VERSIONS: Versions = Versions { min: 3, max: 12 };

/// Where each partition of the request stands before routing.
enum Slot {
    Routed,
    Failed(i16, Option<String>),
}

pub async fn handle(shard: Rc<Shard>, header: RequestHeader, request: ProduceRequest) -> Result<Dispatched, RequestError> {
    let ctx = shard.ctx.clone();
    let acks = match request.acks {
        0 | 1 => Acks::Written,
        -1 => Acks::Synced,
        _ => return reply_all(&header, &request, codes::INVALID_REQUIRED_ACKS),
    };
    ctx.metrics().produce_requests.add(1);
    let unverified = match verify_transactional(&shard, &request).await {
        Ok(unverified) => unverified,
        Err(code) => return reply_all(&header, &request, code),
    };
    let mut shape: Vec<(String, Vec<(i32, Slot)>)> = Vec::with_capacity(request.topic_data.len());
    let mut routed: Vec<(usize, ProducePart)> = Vec::new();
    let mut position = 0usize;
    for topic_data in request.topic_data {
        let name = topic_data.name.0.to_string();
        let topic = resolve_topic(&ctx, &name).await;
        let mut slots = Vec::with_capacity(topic_data.partition_data.len());
        for partition_data in topic_data.partition_data {
            let index = partition_data.index;
            let refused =
                unverified.iter().find(|(topic, partition, _)| *topic == name && *partition == index).map(|found| found.2);
            let slot = match (&topic, partition_data.records, refused) {
                (Err(code), _, _) => Slot::Failed(*code, None),
                (Ok(topic), _, _) if index < 0 || index >= topic.partition_count => {
                    Slot::Failed(codes::UNKNOWN_TOPIC_OR_PARTITION, None)
                }
                (Ok(_), None, _) => Slot::Failed(codes::CORRUPT_MESSAGE, Some("produce request without records".into())),
                (Ok(_), Some(_), Some(code)) => {
                    Slot::Failed(code, Some("the partition is not part of the producer's open transaction".into()))
                }
                (Ok(topic), Some(records), None) => {
                    ctx.metrics().produce_bytes.add(records.len() as u64);
                    routed.push((
                        position,
                        ProducePart { topic: name.clone(), partition: index, spec: topic.spec(index), records },
                    ));
                    position += 1;
                    Slot::Routed
                }
            };
            slots.push((index, slot));
        }
        shape.push((name, slots));
    }
    let split = router::split_by_owner(routed, |part| ctx.table.owner(&part.topic, part.partition));
    let receivers = router::fan_out(&ctx, split.by_shard, |parts, reply| ShardRequest::Produce { parts, acks, reply }).await;
    let total = position;
    let no_response = request.acks == 0;
    Ok(Dispatched::Deferred(Box::pin(async move {
        // An owner that stopped before answering: its parts' fate is unknown to the client.
        let mut results = vec![ProduceResult { error_code: codes::KAFKA_STORAGE_ERROR, ..Default::default() }; total];
        for (position, result) in router::gather(split.positions, receivers).await {
            if let Some(result) = result {
                results[position] = result;
            }
        }
        if no_response {
            return Ok(None);
        }
        let response = build_response(shape, results, header.request_api_version);
        respond(&header, &response).map(Some)
    })))
}

/// KIP-890: transactional batches go only to partitions the producer's open transaction holds,
/// as its coordinator says; the partitions it refuses, with their codes. A whole-request error
/// for transactional batches without a transactional id (Kafka answers
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
async fn verify_transactional(shard: &Shard, request: &ProduceRequest) -> Result<Vec<(String, i32, i16)>, i16> {
    let mut producer = None;
    let mut partitions = Vec::new();
    for topic_data in &request.topic_data {
        for partition_data in &topic_data.partition_data {
            let Some(records) = &partition_data.records else { continue };
            let Ok(header) = BatchHeader::parse(records) else { continue };
            if header.is_transactional() {
                producer = Some((header.producer_id, header.producer_epoch));
                partitions.push((topic_data.name.0.to_string(), partition_data.index));
            }
        }
    }
    let Some((producer_id, producer_epoch)) = producer else { return Ok(Vec::new()) };
    let Some(transactional_id) = request.transactional_id.as_ref().map(|id| id.0.to_string()) else {
        return Err(codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    };
    let verdicts = super::transactions::verify(shard, &transactional_id, producer_id, producer_epoch, partitions.clone()).await;
    Ok(partitions
        .into_iter()
        .zip(verdicts)
        .filter(|(_, code)| *code != codes::NONE)
        .map(|((topic, partition), code)| {
            let code = match code {
                // KIP-588: a produce reports a fenced epoch as INVALID_PRODUCER_EPOCH.
                codes::PRODUCER_FENCED => codes::INVALID_PRODUCER_EPOCH,
                // A transaction being decided: a retriable error for produce (as Kafka, KIP-890).
                codes::CONCURRENT_TRANSACTIONS => codes::NOT_ENOUGH_REPLICAS,
                code => code,
            };
            (topic, partition, code)
        })
        .collect())
}

async fn resolve_topic(ctx: &ShardContext, name: &str) -> Result<Rc<TopicInfo>, i16> {
    if let Some(topic) = ctx.topic(name) {
        return Ok(topic);
    }
    if !ctx.settings.auto_create_topics_enable {
        return Err(codes::UNKNOWN_TOPIC_OR_PARTITION);
    }
    admin::auto_create(ctx, name).await.map_err(|error| {
        if error.code == codes::INVALID_TOPIC_EXCEPTION {
            error.code
        } else {
            codes::UNKNOWN_TOPIC_OR_PARTITION
        }
    })
}

fn build_response(shape: Vec<(String, Vec<(i32, Slot)>)>, results: Vec<ProduceResult>, version: i16) -> ProduceResponse {
    let mut results = results.into_iter();
    let mut response = ProduceResponse::default();
    for (name, slots) in shape {
        let mut topic = TopicProduceResponse::default();
        topic.name = kafka_protocol::messages::TopicName(StrBytes::from_string(name));
        for (index, slot) in slots {
            let mut partition = PartitionProduceResponse::default();
            partition.index = index;
            partition.log_append_time_ms = -1;
            match slot {
                Slot::Routed => {
                    let result = results.next().unwrap_or_default();
                    partition.error_code = result.error_code;
                    partition.base_offset = result.base_offset;
                    partition.log_append_time_ms = result.log_append_time_ms;
                    partition.log_start_offset = result.log_start_offset;
                    partition.error_message = result.error_message.map(StrBytes::from_string);
                }
                Slot::Failed(code, message) => {
                    partition.error_code = code;
                    partition.base_offset = -1;
                    partition.log_start_offset = -1;
                    partition.error_message = message.map(StrBytes::from_string);
                }
            }
            if version < 5 {
                partition.log_start_offset = -1;
            }
            if version < 8 {
                partition.error_message = None;
            }
            topic.partition_responses.push(partition);
        }
        response.responses.push(topic);
    }
    response
}

fn reply_all(header: &RequestHeader, request: &ProduceRequest, code: i16) -> Result<Dispatched, RequestError> {
    let mut response = ProduceResponse::default();
    for topic_data in &request.topic_data {
        let mut topic = TopicProduceResponse::default();
        topic.name = topic_data.name.clone();
        for partition_data in &topic_data.partition_data {
            let mut partition = PartitionProduceResponse::default();
            partition.index = partition_data.index;
            partition.error_code = code;
            partition.base_offset = -1;
            partition.log_append_time_ms = -1;
            topic.partition_responses.push(partition);
        }
        response.responses.push(topic);
    }
    respond(header, &response).map(|frame| Dispatched::Ready(Some(frame)))
}

/// The owner half: appends each part in message order (validation, offsets, queued for group
/// commit) before returning, so the sender's next message sees them; then, spawned, waits for
/// each to be written (acks=1) or synced (acks=all) and replies one result per part.
pub async fn on_owner(ctx: &ShardContext, parts: Vec<ProducePart>, acks: Acks, reply: oneshot::Sender<Vec<ProduceResult>>) {
    let mut pending = Vec::with_capacity(parts.len());
    for part in parts {
        pending.push(append(ctx, part, acks).await);
    }
    rt::spawn_detached(async move {
        let mut results = Vec::with_capacity(pending.len());
        for appended in pending {
            results.push(match appended {
                Ok((ticket, log_start_offset)) => durable(ticket, log_start_offset).await,
                Err(result) => result,
            });
        }
        let _ = reply.send(results);
    });
}

/// Validates and appends one part: its ticket and the log start offset, or its error result.
async fn append(ctx: &ShardContext, part: ProducePart, acks: Acks) -> Result<(AppendTicket, i64), ProduceResult> {
    let appended = match ctx.store.get_or_open(&part.topic, part.partition, &part.spec).await {
        Ok(partition) => {
            if !partition.config_is(&part.spec.config) {
                partition.set_config(part.spec.config.clone());
            }
            let log_start = partition.log_start_offset();
            partition.append(part.records, acks).await.map(|ticket| (ticket, log_start))
        }
        Err(error) => Err(error),
    };
    appended.map_err(|error| append_error(&part.topic, part.partition, &error))
}

fn append_error(topic: &str, partition: i32, error: &LogError) -> ProduceResult {
    if !matches!(error, LogError::Batch(_) | LogError::Producer(_)) {
        tracing::warn!(topic, partition, %error, "produce failed");
    }
    ProduceResult {
        error_code: error.kafka_error_code(),
        error_message: Some(error.to_string()),
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
    }
}

/// Waits until an append is written (or synced).
async fn durable(ticket: AppendTicket, log_start_offset: i64) -> ProduceResult {
    let base_offset = ticket.base_offset;
    let log_append_time_ms = ticket.log_append_time_ms;
    match ticket.wait().await {
        Ok(()) => {
            ProduceResult { error_code: codes::NONE, error_message: None, base_offset, log_append_time_ms, log_start_offset }
        }
        Err(code) => ProduceResult {
            error_code: code,
            error_message: Some("the write to the log failed; the partition no longer accepts writes".into()),
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
        },
    }
}
