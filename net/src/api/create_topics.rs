//! CreateTopics (key 19), v2–7: partitions, replication factor, manual assignments, configs and
//! validate-only, with Kafka's error codes per topic.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::handler::{respond, Framed, Versions};
use crate::admin::{self, NewTopic};
use crate::codes;
use crate::context::ShardContext;
use fjord_engine::topic_config::describe_topic_configs;

pub const VERSIONS: Versions = Versions { min: 2, max: 7 };

pub async fn handle(ctx: &Rc<ShardContext>, header: &RequestHeader, request: CreateTopicsRequest) -> Framed {
    let mut response = CreateTopicsResponse::default();
    let mut counts = std::collections::HashMap::new();
    for topic in &request.topics {
        *counts.entry(topic.name.0.to_string()).or_insert(0usize) += 1;
    }
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        result.num_partitions = -1;
        result.replication_factor = -1;
        result.error_message = None;
        if counts.get(&name).copied().unwrap_or(0) > 1 {
            // As Kafka: a name given twice creates neither.
            result.error_code = codes::INVALID_REQUEST;
            result.error_message = Some(StrBytes::from_static_str("Duplicate topic name."));
            response.topics.push(result);
            continue;
        }
        let mut configs = BTreeMap::new();
        let mut null_config = None;
        for config in topic.configs {
            match config.value {
                Some(value) => {
                    configs.insert(config.name.to_string(), value.to_string());
                }
                None => null_config = Some(config.name.to_string()),
            }
        }
        if let Some(key) = null_config {
            result.error_code = codes::INVALID_CONFIG;
            result.error_message = Some(StrBytes::from_string(format!("Null value not supported for topic configs: {key}")));
            response.topics.push(result);
            continue;
        }
        let assignments = if topic.assignments.is_empty() {
            None
        } else {
            Some(
                topic
                    .assignments
                    .iter()
                    .map(|assignment| (assignment.partition_index, assignment.broker_ids.iter().map(|id| id.0).collect()))
                    .collect(),
            )
        };
        let new_topic = NewTopic {
            name: name.clone(),
            num_partitions: topic.num_partitions,
            replication_factor: topic.replication_factor,
            assignments,
            configs: configs.clone(),
            validate_only: request.validate_only,
        };
        match admin::create_topic(ctx, new_topic).await {
            Ok(created) => {
                result.topic_id = Uuid::from_bytes(created.id);
                result.num_partitions = created.partitions.len() as i32;
                result.replication_factor =
                    created.partitions.first().map(|partition| partition.replicas.len() as i16).unwrap_or(1);
                let image = ctx.image();
                let broker = ctx.broker_configs(&image);
                result.configs = Some(
                    describe_topic_configs(&broker, &configs, None)
                        .into_iter()
                        .map(|entry| {
                            let mut config = CreatableTopicConfigs::default();
                            config.name = StrBytes::from_string(entry.name);
                            config.value = entry.value.map(StrBytes::from_string);
                            config.read_only = entry.read_only;
                            config.config_source = entry.source.code();
                            config.is_sensitive = entry.sensitive;
                            config
                        })
                        .collect(),
                );
            }
            Err(error) => {
                result.error_code = error.code;
                result.error_message = Some(StrBytes::from_string(error.message));
            }
        }
        if header.request_api_version < 5 {
            result.num_partitions = -1;
            result.replication_factor = -1;
            result.configs = Some(Vec::new());
        }
        if header.request_api_version < 7 {
            result.topic_id = Uuid::nil();
        }
        response.topics.push(result);
    }
    respond(header, &response)
}
