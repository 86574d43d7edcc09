//! DescribeProducers (key 61), v0 (KIP-664): the active idempotent producers of each partition,
//! read from the owner shard's producer state: epoch, last sequence, last timestamp, and the first
//! offset of an open transaction (-1 without one). The coordinator epoch is reported as -1.

use std::rc::Rc;

use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId, RequestHeader};

use super::handler::{respond, RequestError, Versions};
use crate::codes;
use crate::context::ShardContext;
use crate::message::{DescribeProducersPart, ProducerSummary, ShardRequest};
use crate::response::OutFrame;
use crate::router;

pub const VERSIONS: Versions = Versions { min: 0, max: 0 };

pub async fn handle(
    ctx: Rc<ShardContext>,
    header: RequestHeader,
    request: DescribeProducersRequest,
) -> Result<Option<OutFrame>, RequestError> {
    let mut shape = Vec::new();
    let mut routed = Vec::new();
    let mut results: Vec<Result<Vec<ProducerSummary>, i16>> = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let info = ctx.topic(&name);
        for partition in &topic.partition_indexes {
            let position = shape.len();
            shape.push((topic.name.clone(), *partition));
            results.push(Err(codes::UNKNOWN_TOPIC_OR_PARTITION));
            if let Some(info) = info.as_ref().filter(|info| *partition >= 0 && *partition < info.partition_count) {
                let part = DescribeProducersPart { topic: name.clone(), partition: *partition, spec: info.spec(*partition) };
                routed.push((position, part));
            }
        }
    }
    let split = router::split_by_owner(routed, |part| ctx.table.owner(&part.topic, part.partition));
    for (position, answer) in router::call(&ctx, split, |parts, reply| ShardRequest::DescribeProducers { parts, reply }).await {
        if let Some(answer) = answer {
            results[position] = answer;
        }
    }
    let mut response = DescribeProducersResponse::default();
    for ((name, partition_index), result) in shape.into_iter().zip(results) {
        if response.topics.last().is_none_or(|last: &TopicResponse| last.name != name) {
            let mut topic = TopicResponse::default();
            topic.name = name;
            response.topics.push(topic);
        }
        let mut partition = PartitionResponse::default();
        partition.partition_index = partition_index;
        match result {
            Ok(producers) => {
                partition.active_producers = producers
                    .into_iter()
                    .map(|summary| {
                        let mut state = ProducerState::default();
                        state.producer_id = ProducerId(summary.producer_id);
                        state.producer_epoch = summary.epoch as i32;
                        state.last_sequence = summary.last_sequence;
                        state.last_timestamp = summary.last_timestamp_ms;
                        state.coordinator_epoch = -1;
                        state.current_txn_start_offset = summary.current_txn_start_offset;
                        state
                    })
                    .collect();
            }
            Err(code) => partition.error_code = code,
        }
        response.topics.last_mut().expect("pushed").partitions.push(partition);
    }
    respond(&header, &response).map(Some)
}

/// The owner half: each partition's idempotent producers, with their open transaction's
/// first offset.
pub async fn on_owner(ctx: &ShardContext, parts: Vec<DescribeProducersPart>) -> Vec<Result<Vec<ProducerSummary>, i16>> {
    let mut results = Vec::with_capacity(parts.len());
    for part in parts {
        results.push(match ctx.store.get_or_open(&part.topic, part.partition, &part.spec).await {
            Ok(partition) => {
                let open = partition.ongoing_txns();
                Ok(partition
                    .producers()
                    .into_iter()
                    .map(|(producer_id, entry)| ProducerSummary {
                        producer_id,
                        epoch: entry.epoch,
                        last_sequence: entry.last_sequence(),
                        last_timestamp_ms: entry.last_timestamp_ms,
                        current_txn_start_offset: open
                            .iter()
                            .find(|(id, _, _)| *id == producer_id)
                            .map_or(-1, |(_, _, first_offset)| *first_offset),
                    })
                    .collect())
            }
            Err(error) => Err(error.kafka_error_code()),
        });
    }
    results
}
