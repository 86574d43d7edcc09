//! The protocol layer's door to the controller: metadata changes run on a blocking thread (they
//! fsync the metadata log), then every shard is told what it must drop.

use std::collections::BTreeMap;
use std::rc::Rc;

use fjord_engine::rt;
use fjord_replication::metadata::{AlterOp, ControllerError, TopicImage};

use crate::codes;
use crate::context::{ShardContext, TopicInfo};
use crate::message::ShardRequest;

/// A controller failure as a Kafka error code and message.
#[derive(Debug, Clone)]
pub struct AdminError {
    pub code: i16,
    pub message: String,
}

impl From<ControllerError> for AdminError {
    fn from(error: ControllerError) -> Self {
        AdminError { code: error.kafka_error_code(), message: error.message() }
    }
}

fn lost_controller() -> AdminError {
    AdminError { code: -1, message: "the controller failed while handling this request".into() }
}

/// Runs `work` against the controller on a blocking thread.
pub async fn with_controller<R: Send + 'static>(
    ctx: &ShardContext,
    work: impl FnOnce(&mut fjord_replication::metadata::Controller) -> Result<R, ControllerError> + Send + 'static,
) -> Result<R, AdminError> {
    let controller = ctx.controller.clone();
    rt::spawn_blocking(move || {
        let mut guard = controller.lock().map_err(|_| lost_controller())?;
        work(&mut guard).map_err(AdminError::from)
    })
    .await
}

/// Reserves a producer id. On a blocking thread: the controller fsyncs its reservation every
/// 1000 ids, and a shard thread never waits on the controller's lock. Error: a Kafka error code.
pub async fn next_producer_id(ctx: &ShardContext) -> Result<i64, i16> {
    let controller = ctx.controller.clone();
    rt::spawn_blocking(move || {
        let mut controller = controller.lock().map_err(|_| codes::COORDINATOR_NOT_AVAILABLE)?;
        controller.next_producer_id().map_err(|error| {
            tracing::error!(%error, "cannot reserve producer ids");
            codes::UNKNOWN_SERVER_ERROR
        })
    })
    .await
}

pub struct NewTopic {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    pub assignments: Option<Vec<(i32, Vec<i32>)>>,
    pub configs: BTreeMap<String, String>,
    pub validate_only: bool,
}

pub async fn create_topic(ctx: &ShardContext, topic: NewTopic) -> Result<TopicImage, AdminError> {
    let default_partitions = ctx.settings.num_partitions;
    with_controller(ctx, move |controller| {
        controller
            .create_topic(
                &topic.name,
                topic.num_partitions,
                topic.replication_factor,
                topic.assignments,
                &topic.configs,
                topic.validate_only,
                default_partitions,
            )
            .map(|image| (*image).clone())
    })
    .await
}

/// Auto-creation on Metadata and Produce (auto.create.topics.enable), with num.partitions.
pub async fn auto_create(ctx: &ShardContext, name: &str) -> Result<Rc<TopicInfo>, AdminError> {
    let topic = NewTopic {
        name: name.to_string(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: None,
        configs: BTreeMap::new(),
        validate_only: false,
    };
    match create_topic(ctx, topic).await {
        Ok(_) => {}
        Err(error) if error.code == codes::TOPIC_ALREADY_EXISTS => {}
        Err(error) => return Err(error),
    }
    ctx.topic(name).ok_or_else(lost_controller)
}

/// Deletes a topic and waits until every shard has dropped its partitions.
pub async fn delete_topic(ctx: &Rc<ShardContext>, name: String) -> Result<TopicImage, AdminError> {
    let deleted = with_controller(ctx, move |controller| {
        let topic = controller.image().topics.get(&name).cloned();
        controller.delete_topic_by_name(&name)?;
        topic.map(|topic| (*topic).clone()).ok_or(ControllerError::UnknownTopicOrPartition)
    })
    .await?;
    let partitions = deleted.partitions.len() as i32;
    let shards: Vec<(usize, Vec<()>)> = (0..ctx.table.shard_count()).map(|shard| (shard, vec![()])).collect();
    let topic = deleted.name.clone();
    let receivers =
        crate::router::fan_out(ctx, shards, |_, reply| ShardRequest::DropTopic { topic: topic.clone(), partitions, reply }).await;
    for receiver in receivers {
        let _ = receiver.await;
    }
    Ok(deleted)
}

/// The owner half of a topic deletion: removes the data of the topic's partitions this shard owns.
pub async fn drop_topic_on_owner(ctx: &ShardContext, topic: &str, partitions: i32) {
    for partition in 0..partitions {
        if ctx.table.owner(topic, partition) != ctx.shard_id {
            continue;
        }
        if let Err(error) = ctx.store.remove(topic, partition).await {
            tracing::error!(topic, partition, %error, "could not remove partition data");
        }
    }
}

pub async fn alter_topic_configs(
    ctx: &ShardContext,
    name: String,
    ops: Vec<(String, AlterOp)>,
    validate_only: bool,
) -> Result<(), AdminError> {
    with_controller(ctx, move |controller| controller.alter_topic_configs(&name, &ops, validate_only).map(|_| ())).await
}

pub async fn replace_topic_configs(
    ctx: &ShardContext,
    name: String,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), AdminError> {
    with_controller(ctx, move |controller| controller.replace_topic_configs(&name, &configs, validate_only).map(|_| ())).await
}

pub async fn alter_broker_configs(
    ctx: &ShardContext,
    ops: Vec<(String, AlterOp)>,
    validate_only: bool,
) -> Result<(), AdminError> {
    with_controller(ctx, move |controller| controller.alter_broker_configs(&ops, validate_only).map(|_| ())).await
}

pub async fn create_partitions(
    ctx: &ShardContext,
    name: String,
    total: i32,
    assignments: Option<Vec<Vec<i32>>>,
    validate_only: bool,
) -> Result<(), AdminError> {
    with_controller(ctx, move |controller| controller.create_partitions(&name, total, assignments, validate_only).map(|_| ()))
        .await
}
