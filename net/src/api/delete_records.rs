//! DeleteRecords (key 21), v0–2: moves each partition's log start offset up to the given offset
//! (-1: the high watermark) and removes the segments entirely below it. Offsets past the high
//! watermark get OFFSET_OUT_OF_RANGE; a topic whose cleanup.policy does not include delete gets
//! POLICY_VIOLATION, as in Kafka. The answer carries each partition's new low watermark.

use std::rc::Rc;

use fjord_engine::metrics::RetentionCause;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, RequestHeader};

use super::handler::{respond, RequestError, Versions};
use crate::codes;
use crate::context::ShardContext;
use crate::message::{DeleteRecordsPart, ShardRequest};
use crate::response::OutFrame;
use crate::router;

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
    let split = router::split_by_owner(routed, |part| ctx.table.owner(&part.topic, part.partition));
    for (position, answer) in router::call(&ctx, split, |parts, reply| ShardRequest::DeleteRecords { parts, reply }).await {
        if let Some(answer) = answer {
            results[position] = answer;
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

/// The owner half: moves each partition's log start offset; (error code, new low watermark)
/// per part.
pub async fn on_owner(ctx: &ShardContext, parts: Vec<DeleteRecordsPart>) -> Vec<(i16, i64)> {
    let mut results = Vec::with_capacity(parts.len());
    for part in parts {
        let outcome = match ctx.store.get_or_open(&part.topic, part.partition, &part.spec).await {
            Ok(partition) => partition.delete_records(part.offset).await,
            Err(error) => Err(error),
        };
        results.push(match outcome {
            Ok((low_watermark, removed)) => {
                ctx.metrics().retention_removed(RetentionCause::StartOffset, removed.segments as u64, removed.bytes);
                tracing::info!(
                    topic = %part.topic,
                    partition = part.partition,
                    low_watermark,
                    removed_segments = removed.segments,
                    removed_bytes = removed.bytes,
                    "DeleteRecords moved the log start offset"
                );
                (0, low_watermark)
            }
            Err(error) => (error.kafka_error_code(), -1),
        });
    }
    results
}
