//! ListOffsets (key 2), v1–9: earliest (-2), latest (-1, the high watermark; the last stable offset
//! under read_committed), max timestamp (-3, KIP-734), earliest local (-4), and the first offset
//! whose timestamp is at or after a given time (-1 and no timestamp when past the end).

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, RequestHeader};

use fjord_engine::partition::Isolation;

use super::{codes, respond, RequestError, Versions};
use crate::context::ShardContext;
use crate::response::OutFrame;
use crate::router::{self, ListOffsetsPart, ListOffsetsResult, ShardRequest};

pub const VERSIONS: Versions = Versions { min: 1, max: 9 };

pub async fn handle(
    ctx: Rc<ShardContext>,
    header: RequestHeader,
    request: ListOffsetsRequest,
) -> Result<Option<OutFrame>, RequestError> {
    let mut shape = Vec::new();
    let mut routed = Vec::new();
    let mut errors = Vec::new();
    let isolation = if request.isolation_level == 1 { Isolation::ReadCommitted } else { Isolation::ReadUncommitted };
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let info = ctx.topic(&name);
        for partition in &topic.partitions {
            let position = shape.len();
            shape.push((topic.name.clone(), partition.partition_index));
            match &info {
                Some(info) if partition.partition_index >= 0 && partition.partition_index < info.partition_count => {
                    routed.push((
                        position,
                        ListOffsetsPart {
                            topic: name.clone(),
                            partition: partition.partition_index,
                            spec: info.spec(partition.partition_index),
                            timestamp: partition.timestamp,
                            isolation,
                        },
                    ));
                }
                _ => errors.push(position),
            }
        }
    }
    let mut results =
        vec![
            ListOffsetsResult { error_code: codes::UNKNOWN_TOPIC_OR_PARTITION, offset: -1, timestamp: -1, leader_epoch: -1 };
            shape.len()
        ];
    let (orders, by_shard) = router::split_by_owner(routed, |part| ctx.table.owner(&part.topic, part.partition));
    let receivers = router::fan_out(&ctx, by_shard, |parts, reply| ShardRequest::ListOffsets { parts, reply }).await;
    for (receiver, order) in receivers.into_iter().zip(orders) {
        if let Ok(replies) = receiver.await {
            for (position, reply) in order.into_iter().zip(replies) {
                results[position] = reply;
            }
        }
    }
    let mut response = ListOffsetsResponse::default();
    for ((name, partition_index), result) in shape.into_iter().zip(results) {
        if response.topics.last().is_none_or(|last: &ListOffsetsTopicResponse| last.name != name) {
            let mut topic = ListOffsetsTopicResponse::default();
            topic.name = name;
            response.topics.push(topic);
        }
        let mut partition = ListOffsetsPartitionResponse::default();
        partition.partition_index = partition_index;
        partition.error_code = result.error_code;
        partition.offset = result.offset;
        partition.timestamp = result.timestamp;
        partition.leader_epoch = if header.request_api_version >= 4 { result.leader_epoch } else { -1 };
        response.topics.last_mut().expect("pushed").partitions.push(partition);
    }
    respond(&header, &response).map(Some)
}
