//! ListOffsets (key 2), v1–9: earliest (-2), latest (-1, the high watermark; the last stable offset
//! under read_committed), max timestamp (-3, KIP-734), earliest local (-4), and the first offset
//! whose timestamp is at or after a given time (-1 and no timestamp when past the end).

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, RequestHeader};

use fjord_engine::partition::Isolation;

use super::handler::{respond, Answer, Versions};
use super::per_partition;
use crate::codes;
use crate::context::ShardContext;
use crate::message::{ListOffsetsPart, ListOffsetsResult};

pub const VERSIONS: Versions = Versions { min: 1, max: 9 };

pub async fn handle(ctx: Rc<ShardContext>, header: RequestHeader, request: ListOffsetsRequest) -> Answer {
    let isolation = if request.isolation_level == 1 { Isolation::ReadCommitted } else { Isolation::ReadUncommitted };
    let named = request.topics.iter().flat_map(|topic| {
        topic.partitions.iter().map(move |partition| (&topic.name, partition.partition_index, partition.timestamp))
    });
    let unknown = ListOffsetsResult::failed(codes::UNKNOWN_TOPIC_OR_PARTITION);
    let answers = per_partition::ask_owners(&ctx, named, unknown, |info, partition, timestamp| {
        Ok(ListOffsetsPart { topic: info.name.clone(), partition, spec: info.spec(partition), timestamp, isolation })
    })
    .await;
    let mut response = ListOffsetsResponse::default();
    response.topics = per_partition::by_topic(answers, |partition_index, result| {
        ListOffsetsPartitionResponse::default()
            .with_partition_index(partition_index)
            .with_error_code(result.error_code)
            .with_offset(result.offset)
            .with_timestamp(result.timestamp)
            .with_leader_epoch(if header.request_api_version >= 4 { result.leader_epoch } else { -1 })
    });
    respond(&header, &response).map(Some)
}

/// The owner half: each part's offset for its target timestamp (-2 earliest, -4 earliest
/// local, -5 latest tiered, -1 latest (the last stable offset for read_committed), -3 max
/// timestamp, else the first offset at or after the timestamp), all below the high watermark.
pub async fn on_owner(ctx: &ShardContext, parts: Vec<ListOffsetsPart>) -> Vec<ListOffsetsResult> {
    per_partition::on_each_partition(ctx, parts, ListOffsetsResult::failed, async |part, partition| {
        let epoch = partition.leader_epoch();
        let found = match part.timestamp {
            -2 | -4 => Ok(Some((partition.log_start_offset(), -1))),
            // Latest tiered offset (KIP-1005): nothing is tiered.
            -5 => Ok(None),
            -1 if part.isolation == Isolation::ReadCommitted => Ok(Some((partition.last_stable_offset(), -1))),
            -1 => Ok(Some((partition.high_watermark(), -1))),
            -3 => partition.max_timestamp().map(|found| found.filter(|(offset, _)| *offset < partition.high_watermark())),
            timestamp => partition.offset_for_timestamp(timestamp).map(|found| {
                found
                    .filter(|(offset, _)| *offset < partition.high_watermark())
                    .map(|(offset, timestamp)| (offset.max(partition.log_start_offset()), timestamp))
            }),
        };
        match found {
            Ok(Some((offset, timestamp))) => ListOffsetsResult { error_code: 0, offset, timestamp, leader_epoch: epoch },
            Ok(None) => ListOffsetsResult::failed(0),
            Err(error) => ListOffsetsResult::failed(error.kafka_error_code()),
        }
    })
    .await
}
