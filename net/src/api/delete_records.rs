//! DeleteRecords (key 21), v0–2: moves each partition's log start offset up to the given offset
//! (-1: the high watermark) and removes the segments entirely below it. Offsets past the high
//! watermark get OFFSET_OUT_OF_RANGE; a topic whose cleanup.policy does not include delete gets
//! POLICY_VIOLATION, as in Kafka. The answer carries each partition's new low watermark.

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, RequestHeader};

use super::{codes, respond, RequestError, Versions};
use crate::context::ShardContext;
use crate::response::OutFrame;
use crate::router::{self, DeleteRecordsPart, ShardRequest};

pub const VERSIONS: Versions = Versions { min: 0, max: 2 };

pub async fn handle(
    ctx: Rc<ShardContext>,
    header: RequestHeader,
    request: DeleteRecordsRequest,
) -> Result<Option<OutFrame>, RequestError> {
    let mut shape = Vec::new();
    let mut routed = Vec::new();
    let mut results = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let info = ctx.topic(&name);
        for partition in &topic.partitions {
            let position = shape.len();
            shape.push((topic.name.clone(), partition.partition_index));
            results.push((codes::UNKNOWN_TOPIC_OR_PARTITION, -1));
            match &info {
                Some(info) if partition.partition_index >= 0 && partition.partition_index < info.partition_count => {
                    if !info.config.cleanup_policy.deletes() {
                        results[position] = (codes::POLICY_VIOLATION, -1);
                        continue;
                    }
                    routed.push((
                        position,
                        DeleteRecordsPart {
                            topic: name.clone(),
                            partition: partition.partition_index,
                            spec: info.spec(partition.partition_index),
                            offset: partition.offset,
                        },
                    ));
                }
                _ => {}
            }
        }
    }
    let (orders, by_shard) = router::split_by_owner(routed, |part| ctx.table.owner(&part.topic, part.partition));
    let receivers = router::fan_out(&ctx, by_shard, |parts, reply| ShardRequest::DeleteRecords { parts, reply }).await;
    for (receiver, order) in receivers.into_iter().zip(orders) {
        if let Ok(replies) = receiver.await {
            for (position, reply) in order.into_iter().zip(replies) {
                results[position] = reply;
            }
        }
    }
    let mut response = DeleteRecordsResponse::default();
    for ((name, partition_index), (error_code, low_watermark)) in shape.into_iter().zip(results) {
        if response.topics.last().is_none_or(|last: &DeleteRecordsTopicResult| last.name != name) {
            let mut topic = DeleteRecordsTopicResult::default();
            topic.name = name;
            response.topics.push(topic);
        }
        let mut partition = DeleteRecordsPartitionResult::default();
        partition.partition_index = partition_index;
        partition.error_code = error_code;
        partition.low_watermark = low_watermark;
        response.topics.last_mut().expect("pushed").partitions.push(partition);
    }
    respond(&header, &response).map(Some)
}
