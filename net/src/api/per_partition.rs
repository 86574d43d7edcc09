//! Per-partition answers. The APIs that ask each partition's owner shard one question answer per
//! partition in request order (ListOffsets, DeleteRecords, DescribeProducers, OffsetForLeaderEpoch):
//!
//! ```text
//!  request partitions ─▶ known topic and index? ─yes─▶ part ─▶ router::call ─▶ owner's answer
//!   (in order)             └─ no: `unknown`                     (lost owner: `unknown`)
//!  answers by position ─▶ grouped into topic results, a new one each time the topic name changes
//! ```
//!
//! [`all_failed`] is the answer of a partitioned request that failed as a whole (AddPartitionsToTxn,
//! TxnOffsetCommit, OffsetCommit, OffsetDelete).

use std::rc::Rc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse as DescribeProducersPartition, TopicResponse as DescribeProducersTopic,
};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::TopicName;

use fjord_engine::partition::Partition;

use crate::context::{ShardContext, TopicInfo};
use crate::message::PartitionPart;
use crate::router;

/// One partition a request names, with its answer.
pub struct Answered<A> {
    pub topic: TopicName,
    pub partition_index: i32,
    pub answer: A,
}

/// Asks the owner shard of each partition in `named` (topic, index, what the request says of it)
/// with the part `part` builds (in the message [`PartitionPart::request`] makes), or answers it locally with the `Err` `part` returns. A partition of
/// an unknown topic, an index out of range, or one whose owner stopped, gets `unknown`.
pub async fn ask_owners<'r, R, P, A>(
    ctx: &Rc<ShardContext>,
    named: impl IntoIterator<Item = (&'r TopicName, i32, R)>,
    unknown: A,
    mut part: impl FnMut(&TopicInfo, i32, R) -> Result<P, A>,
) -> Vec<Answered<A>>
where
    P: PartitionPart<Answer = A>,
    A: Clone,
{
    let mut answers = Vec::new();
    let mut routed = Vec::new();
    let mut last: Option<(&TopicName, Option<Rc<TopicInfo>>)> = None;
    for (topic, partition_index, said) in named {
        if last.as_ref().is_none_or(|(name, _)| *name != topic) {
            last = Some((topic, ctx.topic(&topic.0)));
        }
        let info = last.as_ref().and_then(|(_, info)| info.as_ref());
        let position = answers.len();
        answers.push(Answered { topic: topic.clone(), partition_index, answer: unknown.clone() });
        if let Some(info) = info.filter(|info| partition_index >= 0 && partition_index < info.partition_count) {
            match part(info, partition_index, said) {
                Ok(part) => routed.push((position, part)),
                Err(answer) => answers[position].answer = answer,
            }
        }
    }
    let split = router::split_by_owner(routed, |part| {
        let (topic, partition) = part.partition();
        ctx.table.owner(topic, partition)
    });
    for (position, answer) in router::call(ctx, split, P::request).await {
        if let Some(answer) = answer {
            answers[position].answer = answer;
        }
    }
    answers
}

/// The owner half's loop: each part's partition (opened on first use) given to `answer`, in
/// order; a partition that cannot be opened is answered `failed` with its Kafka error code.
pub async fn on_each_partition<P: PartitionPart>(
    ctx: &ShardContext,
    parts: Vec<P>,
    failed: impl Fn(i16) -> P::Answer,
    mut answer: impl AsyncFnMut(P, Rc<Partition>) -> P::Answer,
) -> Vec<P::Answer> {
    let mut answers = Vec::with_capacity(parts.len());
    for part in parts {
        let (topic, index) = part.partition();
        let opened = ctx.store.get_or_open(topic, index, part.spec()).await;
        answers.push(match opened {
            Ok(partition) => answer(part, partition).await,
            Err(error) => failed(error.kafka_error_code()),
        });
    }
    answers
}

/// A topic's entry in a per-partition response: made from the topic's name, holding its
/// partitions' results.
pub trait TopicResult {
    type Partition: PartitionResult;
    fn named(name: TopicName) -> Self;
    fn partitions(&mut self) -> &mut Vec<Self::Partition>;
}

/// A partition's entry in a per-partition response, as answered with only an error code.
pub trait PartitionResult {
    fn failed(partition_index: i32, error_code: i16) -> Self;
}

/// `Topic => Partition { topic name field, partitions field, partition index field, error code
/// field };`
macro_rules! topic_results {
    ($($topic:ty => $partition:ty { $name:ident, $partitions:ident, $index:ident, $error_code:ident };)*) => {$(
        impl TopicResult for $topic {
            type Partition = $partition;
            fn named(name: TopicName) -> Self {
                let mut topic = <$topic>::default();
                topic.$name = name;
                topic
            }
            fn partitions(&mut self) -> &mut Vec<$partition> {
                &mut self.$partitions
            }
        }

        impl PartitionResult for $partition {
            fn failed(partition_index: i32, error_code: i16) -> Self {
                let mut partition = <$partition>::default();
                partition.$index = partition_index;
                partition.$error_code = error_code;
                partition
            }
        }
    )*};
}

topic_results! {
    ListOffsetsTopicResponse => ListOffsetsPartitionResponse { name, partitions, partition_index, error_code };
    DeleteRecordsTopicResult => DeleteRecordsPartitionResult { name, partitions, partition_index, error_code };
    DescribeProducersTopic => DescribeProducersPartition { name, partitions, partition_index, error_code };
    AddPartitionsToTxnTopicResult => AddPartitionsToTxnPartitionResult {
        name, results_by_partition, partition_index, partition_error_code
    };
    TxnOffsetCommitResponseTopic => TxnOffsetCommitResponsePartition { name, partitions, partition_index, error_code };
    OffsetCommitResponseTopic => OffsetCommitResponsePartition { name, partitions, partition_index, error_code };
    OffsetDeleteResponseTopic => OffsetDeleteResponsePartition { name, partitions, partition_index, error_code };
    OffsetForLeaderTopicResult => EpochEndOffset { topic, partitions, partition, error_code };
}

/// Every partition a request names (per topic: its name and partition indexes) answered with
/// `error_code`, in request order: the answer when the request as a whole could not be served.
pub fn all_failed<'r, T: TopicResult>(
    topics: impl IntoIterator<Item = (&'r TopicName, impl IntoIterator<Item = i32>)>,
    error_code: i16,
) -> Vec<T> {
    topics
        .into_iter()
        .map(|(name, indexes)| {
            let mut topic = T::named(name.clone());
            topic.partitions().extend(indexes.into_iter().map(|index| T::Partition::failed(index, error_code)));
            topic
        })
        .collect()
}

/// Groups `answers` into topic results in request order, a new one each time the topic changes;
/// `partition` makes a partition's result from its index and answer.
pub fn by_topic<T: TopicResult, A>(answers: Vec<Answered<A>>, partition: impl Fn(i32, A) -> T::Partition) -> Vec<T> {
    let mut topics: Vec<(TopicName, T)> = Vec::new();
    for answered in answers {
        if topics.last().is_none_or(|(name, _)| *name != answered.topic) {
            topics.push((answered.topic.clone(), T::named(answered.topic)));
        }
        let (_, last) = topics.last_mut().expect("pushed");
        last.partitions().push(partition(answered.partition_index, answered.answer));
    }
    topics.into_iter().map(|(_, topic)| topic).collect()
}
