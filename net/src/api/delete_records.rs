//! DeleteRecords (key 21), v0–2: moves each partition's log start offset up to the given offset
//! (-1: the high watermark) and removes the segments entirely below it. Offsets past the high
//! watermark get OFFSET_OUT_OF_RANGE; a topic whose cleanup.policy does not include delete gets
//! POLICY_VIOLATION, as in Kafka. The answer carries each partition's new low watermark.

use std::rc::Rc;

use fjord_engine::metrics::RetentionCause;
use kafka_protocol::messages::delete_records_response::DeleteRecordsPartitionResult;
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, RequestHeader};

use super::handler::{respond, Answer, Versions};
use super::per_partition;
use crate::codes;
use crate::context::ShardContext;
use crate::message::DeleteRecordsPart;

pub const VERSIONS: Versions = Versions { min: 0, max: 2 };

pub async fn handle(ctx: Rc<ShardContext>, header: RequestHeader, request: DeleteRecordsRequest) -> Answer {
    let named = request.topics.iter().flat_map(|topic| {
        topic.partitions.iter().map(move |partition| (&topic.name, partition.partition_index, partition.offset))
    });
    let unknown = (codes::UNKNOWN_TOPIC_OR_PARTITION, -1);
    let answers = per_partition::ask_owners(&ctx, named, unknown, |info, partition, offset| {
        if !info.config.cleanup_policy.deletes() {
            return Err((codes::POLICY_VIOLATION, -1));
        }
        Ok(DeleteRecordsPart { topic: info.name.clone(), partition, spec: info.spec(partition), offset })
    })
    .await;
    let mut response = DeleteRecordsResponse::default();
    response.topics = per_partition::by_topic(answers, |partition_index, (error_code, low_watermark)| {
        DeleteRecordsPartitionResult::default()
            .with_partition_index(partition_index)
            .with_error_code(error_code)
            .with_low_watermark(low_watermark)
    });
    respond(&header, &response).map(Some)
}

/// The owner half: moves each partition's log start offset; (error code, new low watermark)
/// per part.
pub async fn on_owner(ctx: &ShardContext, parts: Vec<DeleteRecordsPart>) -> Vec<(i16, i64)> {
    per_partition::on_each_partition(
        ctx,
        parts,
        |code| (code, -1),
        async |part, partition| match partition.delete_records(part.offset).await {
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
        },
    )
    .await
}
