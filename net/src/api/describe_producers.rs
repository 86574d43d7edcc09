//! DescribeProducers (key 61), v0 (KIP-664): the active idempotent producers of each partition,
//! read from the owner shard's producer state: epoch, last sequence, last timestamp, and the first
//! offset of an open transaction (-1 without one). The coordinator epoch is reported as -1.

use std::rc::Rc;

use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId, RequestHeader};

use super::handler::{respond, Answer, Versions};
use super::per_partition;
use crate::codes;
use crate::context::ShardContext;
use crate::message::{DescribeProducersPart, ProducerSummary};

pub const VERSIONS: Versions = Versions { min: 0, max: 0 };

pub async fn handle(ctx: Rc<ShardContext>, header: RequestHeader, request: DescribeProducersRequest) -> Answer {
    let named =
        request.topics.iter().flat_map(|topic| topic.partition_indexes.iter().map(move |index| (&topic.name, *index, ())));
    let unknown: Result<Vec<ProducerSummary>, i16> = Err(codes::UNKNOWN_TOPIC_OR_PARTITION);
    let answers = per_partition::ask_owners(&ctx, named, unknown, |info, partition, ()| {
        Ok(DescribeProducersPart { topic: info.name.clone(), partition, spec: info.spec(partition) })
    })
    .await;
    let mut response = DescribeProducersResponse::default();
    response.topics = per_partition::by_topic(answers, |partition_index, result| {
        let mut partition = PartitionResponse::default().with_partition_index(partition_index);
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
        partition
    });
    respond(&header, &response).map(Some)
}

/// The owner half: each partition's idempotent producers, with their open transaction's
/// first offset.
pub async fn on_owner(ctx: &ShardContext, parts: Vec<DescribeProducersPart>) -> Vec<Result<Vec<ProducerSummary>, i16>> {
    per_partition::on_each_partition(ctx, parts, Err, async |_, partition| {
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
    })
    .await
}
