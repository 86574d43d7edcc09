//! Metadata (key 3), v0–12: brokers, cluster id, controller, topics with partitions, leaders,
//! leader epochs and replicas. Unknown topics are created when both the request (v4+) and the
//! broker (auto.create.topics.enable) allow it.

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::handler::{respond, Answer, Versions};
use crate::admin;
use crate::codes;
use crate::context::ShardContext;
use fjord_replication::metadata::TopicImage;

pub const VERSIONS: Versions = Versions { min: 0, max: 12 };

const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Without an authorizer every operation is allowed; as Kafka, report the bit set of the
/// operations that apply to the resource (AclOperation codes).
pub const TOPIC_OPERATIONS_ALL: i32 = bits(&[3, 4, 5, 6, 7, 8, 10, 11]);
pub const CLUSTER_OPERATIONS_ALL: i32 = bits(&[5, 7, 8, 9, 10, 11, 12]);

const fn bits(operations: &[i32]) -> i32 {
    let mut value = 0;
    let mut index = 0;
    while index < operations.len() {
        value |= 1 << operations[index];
        index += 1;
    }
    value
}

pub async fn handle(ctx: &Rc<ShardContext>, header: &RequestHeader, request: MetadataRequest) -> Answer {
    let version = header.request_api_version;
    let allow_auto_create = (version < 4 || request.allow_auto_topic_creation) && ctx.settings.auto_create_topics_enable;
    let mut topics = Vec::new();
    let image = ctx.image();
    match request.topics.clone() {
        // v0: an empty list means all topics; v1+: null means all topics.
        None => topics.extend(image.topics.values().map(|topic| topic_entry(ctx, topic))),
        Some(ref requested) if requested.is_empty() && version == 0 => {
            topics.extend(image.topics.values().map(|topic| topic_entry(ctx, topic)))
        }
        Some(requested) => {
            for wanted in requested {
                topics.push(
                    requested_topic(ctx, wanted.name.as_ref().map(|name| name.0.to_string()), wanted.topic_id, allow_auto_create)
                        .await,
                );
            }
        }
    }
    let image = ctx.image();
    let mut response = MetadataResponse::default();
    response.brokers = image
        .brokers
        .values()
        .map(|broker| {
            let mut entry = MetadataResponseBroker::default();
            entry.node_id = BrokerId(broker.node_id);
            entry.host = StrBytes::from_string(broker.host.clone());
            entry.port = broker.port as i32;
            entry.rack = broker.rack.clone().map(StrBytes::from_string);
            entry
        })
        .collect();
    if version >= 2 {
        response.cluster_id = Some(StrBytes::from_string(image.cluster_id.clone()));
    }
    response.controller_id = BrokerId(ctx.settings.node_id);
    for topic in &mut topics {
        if version < 10 {
            topic.topic_id = Uuid::nil();
        }
        if version < 1 {
            topic.is_internal = false;
        }
        for partition in &mut topic.partitions {
            if version < 7 {
                partition.leader_epoch = -1;
            }
        }
    }
    response.topics = topics;
    response.cluster_authorized_operations = if request.include_cluster_authorized_operations && (8..=10).contains(&version) {
        CLUSTER_OPERATIONS_ALL
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    if request.include_topic_authorized_operations && version >= 8 {
        for topic in &mut response.topics {
            if topic.error_code == 0 {
                topic.topic_authorized_operations = TOPIC_OPERATIONS_ALL;
            }
        }
    }
    respond(header, &response).map(Some)
}

async fn requested_topic(
    ctx: &Rc<ShardContext>,
    name: Option<String>,
    id: Uuid,
    allow_auto_create: bool,
) -> MetadataResponseTopic {
    let image = ctx.image();
    let found = match &name {
        Some(name) => image.topics.get(name).cloned(),
        None => image.topic_ids.get(id.as_bytes()).and_then(|name| image.topics.get(name)).cloned(),
    };
    if let Some(topic) = found {
        return topic_entry(ctx, &topic);
    }
    let mut entry = MetadataResponseTopic::default();
    entry.name = name.clone().map(|name| TopicName(StrBytes::from_string(name)));
    entry.topic_id = id;
    entry.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    let Some(name) = name else {
        entry.error_code = codes::UNKNOWN_TOPIC_ID;
        return entry;
    };
    if !allow_auto_create {
        entry.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
        return entry;
    }
    match admin::auto_create(ctx, &name).await {
        Ok(_) => match ctx.image().topics.get(&name) {
            Some(topic) => topic_entry(ctx, topic),
            None => {
                entry.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
                entry
            }
        },
        Err(error) => {
            entry.error_code =
                if error.code == codes::INVALID_TOPIC_EXCEPTION { error.code } else { codes::UNKNOWN_TOPIC_OR_PARTITION };
            entry
        }
    }
}

fn topic_entry(_ctx: &ShardContext, topic: &TopicImage) -> MetadataResponseTopic {
    let mut entry = MetadataResponseTopic::default();
    entry.name = Some(TopicName(StrBytes::from_string(topic.name.clone())));
    entry.topic_id = Uuid::from_bytes(topic.id);
    entry.is_internal = topic.name.starts_with("__");
    entry.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    entry.partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            let mut item = MetadataResponsePartition::default();
            item.partition_index = partition.partition;
            item.leader_id = BrokerId(partition.leader);
            item.leader_epoch = partition.leader_epoch;
            item.replica_nodes = partition.replicas.iter().map(|id| BrokerId(*id)).collect();
            item.isr_nodes = partition.isr.iter().map(|id| BrokerId(*id)).collect();
            item
        })
        .collect();
    entry
}
