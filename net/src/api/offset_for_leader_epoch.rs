//! OffsetForLeaderEpoch (key 23), v2–4 as in Kafka 4 (KIP-101, KIP-279, KIP-320): for each
//! partition, the largest leader epoch at or below the one asked for that its log knows, and the
//! offset where that epoch ends (the log end offset for the current epoch). A consumer asks it
//! after a leader change to check that its position is still on the log (librdkafka and the Java
//! client validate fetch positions so); a follower asks it to find where to truncate.
//!
//! `current_leader_epoch` (-1: not checked) older than the partition's gets FENCED_LEADER_EPOCH,
//! newer UNKNOWN_LEADER_EPOCH. An epoch the log does not know answers epoch -1 and offset -1.

use std::rc::Rc;

use kafka_protocol::messages::offset_for_leader_epoch_response::EpochEndOffset;
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, RequestHeader};

use super::handler::{respond, Answer, Versions};
use super::per_partition;
use crate::codes;
use crate::context::ShardContext;
use crate::message::{EpochEnd, OffsetForLeaderEpochPart};

pub const VERSIONS: Versions = Versions { min: 2, max: 4 };

pub async fn handle(ctx: Rc<ShardContext>, header: RequestHeader, request: OffsetForLeaderEpochRequest) -> Answer {
    let named = request.topics.iter().flat_map(|topic| {
        topic
            .partitions
            .iter()
            .map(move |partition| (&topic.topic, partition.partition, (partition.current_leader_epoch, partition.leader_epoch)))
    });
    let unknown = EpochEnd::failed(codes::UNKNOWN_TOPIC_OR_PARTITION);
    let answers = per_partition::ask_owners(&ctx, named, unknown, |info, partition, (current_leader_epoch, leader_epoch)| {
        let spec = info.spec(partition);
        Ok(OffsetForLeaderEpochPart { topic: info.name.clone(), partition, spec, current_leader_epoch, leader_epoch })
    })
    .await;
    let topics = per_partition::by_topic(answers, |partition, answer: EpochEnd| {
        EpochEndOffset::default()
            .with_partition(partition)
            .with_error_code(answer.error_code)
            .with_leader_epoch(answer.leader_epoch)
            .with_end_offset(answer.end_offset)
    });
    respond(&header, &OffsetForLeaderEpochResponse::default().with_topics(topics)).map(Some)
}

/// The owner half: each partition's end offset for its requested epoch (Kafka
/// `Partition.lastOffsetForLeaderEpoch`).
pub async fn on_owner(ctx: &ShardContext, parts: Vec<OffsetForLeaderEpochPart>) -> Vec<EpochEnd> {
    per_partition::on_each_partition(ctx, parts, EpochEnd::failed, async |part, partition| {
        let epoch = partition.leader_epoch();
        if part.current_leader_epoch >= 0 && part.current_leader_epoch < epoch {
            return EpochEnd::failed(codes::FENCED_LEADER_EPOCH);
        }
        if part.current_leader_epoch > epoch {
            return EpochEnd::failed(codes::UNKNOWN_LEADER_EPOCH);
        }
        match partition.end_offset_for_epoch(part.leader_epoch) {
            Some((leader_epoch, end_offset)) => EpochEnd { error_code: codes::NONE, leader_epoch, end_offset },
            None => EpochEnd::failed(codes::NONE),
        }
    })
    .await
}
