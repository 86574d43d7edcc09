//! DescribeConfigs (key 32, v1–4), AlterConfigs (key 33, v0–2) and IncrementalAlterConfigs
//! (key 44, v0–1) for topic and broker resources. Values are stored in the metadata log; the
//! protocol layer only translates.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;

use super::handler::{respond, Framed, Versions};
use crate::admin::{self, AdminError};
use crate::codes;
use crate::context::ShardContext;
use fjord_engine::topic_config::{describe_broker_configs, describe_topic_configs, ConfigEntry};
use fjord_replication::metadata::AlterOp;

pub const DESCRIBE_VERSIONS: Versions = Versions { min: 1, max: 4 };
pub const ALTER_VERSIONS: Versions = Versions { min: 0, max: 2 };
pub const INCREMENTAL_ALTER_VERSIONS: Versions = Versions { min: 0, max: 1 };

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const INVALID_REQUEST_MESSAGE_UNKNOWN_BROKER: &str =
    "Unexpected broker id; this broker's node id or the empty name (cluster default) is expected.";

/// What a config request's resource names: a topic, or this broker (its node id, or the empty
/// name for the cluster default). Any other broker or resource type is answered INVALID_REQUEST.
enum Resource {
    Topic(String),
    Broker,
}

fn resolve_resource(ctx: &ShardContext, resource_type: i8, name: String) -> Result<Resource, AdminError> {
    match resource_type {
        RESOURCE_TOPIC => Ok(Resource::Topic(name)),
        RESOURCE_BROKER if name.is_empty() || name.parse::<i32>().ok() == Some(ctx.settings.node_id) => Ok(Resource::Broker),
        RESOURCE_BROKER => {
            Err(AdminError { code: codes::INVALID_REQUEST, message: INVALID_REQUEST_MESSAGE_UNKNOWN_BROKER.into() })
        }
        other => Err(AdminError { code: codes::INVALID_REQUEST, message: format!("Unsupported resource type {other}.") }),
    }
}

/// One resource's answer to AlterConfigs or IncrementalAlterConfigs: two response types with the
/// same fields.
macro_rules! alter_result {
    ($result:ty, $resource:expr, $outcome:expr) => {{
        let mut result = <$result>::default();
        result.resource_type = $resource.resource_type;
        result.resource_name = $resource.resource_name;
        result.error_message = None;
        if let Err(error) = $outcome {
            result.error_code = error.code;
            result.error_message = Some(StrBytes::from_string(error.message));
        }
        result
    }};
}

pub fn describe(ctx: &Rc<ShardContext>, header: &RequestHeader, request: DescribeConfigsRequest) -> Framed {
    let image = ctx.image();
    let broker = ctx.broker_configs(&image);
    let mut response = DescribeConfigsResponse::default();
    for resource in request.resources {
        let mut result = DescribeConfigsResult::default();
        result.error_message = None;
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let keys: Option<Vec<String>> = resource.configuration_keys.map(|keys| keys.iter().map(|key| key.to_string()).collect());
        let entries = match resolve_resource(ctx, resource.resource_type, resource.resource_name.to_string()) {
            Ok(Resource::Topic(name)) => match image.topics.get(&name) {
                Some(topic) => Ok(describe_topic_configs(&broker, &topic.configs, keys.as_deref())),
                None => Err(AdminError {
                    code: codes::UNKNOWN_TOPIC_OR_PARTITION,
                    message: format!("Topic '{name}' does not exist."),
                }),
            },
            Ok(Resource::Broker) => Ok(describe_broker_configs(&broker, keys.as_deref())),
            Err(error) => Err(error),
        };
        match entries {
            Ok(entries) => {
                result.configs = entries
                    .into_iter()
                    .map(|entry| {
                        describe_entry(entry, request.include_synonyms, request.include_documentation, header.request_api_version)
                    })
                    .collect()
            }
            Err(error) => {
                result.error_code = error.code;
                result.error_message = Some(StrBytes::from_string(error.message));
            }
        }
        response.results.push(result);
    }
    respond(header, &response)
}

fn describe_entry(
    entry: ConfigEntry,
    include_synonyms: bool,
    include_documentation: bool,
    version: i16,
) -> DescribeConfigsResourceResult {
    let mut result = DescribeConfigsResourceResult::default();
    result.name = StrBytes::from_string(entry.name);
    result.value = entry.value.map(StrBytes::from_string);
    result.read_only = entry.read_only;
    result.config_source = entry.source.code();
    result.is_sensitive = entry.sensitive;
    if version >= 3 {
        result.config_type = entry.config_type.code();
    }
    if include_documentation && version >= 3 {
        result.documentation = Some(StrBytes::from_static_str(entry.documentation));
    }
    if include_synonyms {
        result.synonyms = entry
            .synonyms
            .into_iter()
            .map(|(name, value, source)| {
                let mut synonym = DescribeConfigsSynonym::default();
                synonym.name = StrBytes::from_string(name);
                synonym.value = Some(StrBytes::from_string(value));
                synonym.source = source.code();
                synonym
            })
            .collect();
    }
    result
}

/// Legacy AlterConfigs: the given set replaces every override of the resource.
pub async fn alter(ctx: &Rc<ShardContext>, header: &RequestHeader, request: AlterConfigsRequest) -> Framed {
    let mut response = AlterConfigsResponse::default();
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let mut configs = BTreeMap::new();
        for config in &resource.configs {
            if let Some(value) = &config.value {
                configs.insert(config.name.to_string(), value.to_string());
            }
        }
        let outcome = match resolve_resource(ctx, resource.resource_type, name) {
            Ok(Resource::Topic(name)) => admin::replace_topic_configs(ctx, name, configs, request.validate_only).await,
            Ok(Resource::Broker) => {
                let ops = configs.into_iter().map(|(key, value)| (key, AlterOp::Set(value))).collect();
                admin::alter_broker_configs(ctx, ops, request.validate_only).await
            }
            Err(error) => Err(error),
        };
        let result =
            alter_result!(kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse, resource, outcome);
        response.responses.push(result);
    }
    respond(header, &response)
}

/// IncrementalAlterConfigs (KIP-339): SET, DELETE, APPEND, SUBTRACT per key.
pub async fn incremental_alter(
    ctx: &Rc<ShardContext>,
    header: &RequestHeader,
    request: IncrementalAlterConfigsRequest,
) -> Framed {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let mut ops = Vec::new();
        let mut bad = None;
        for config in &resource.configs {
            let value = config.value.as_ref().map(|value| value.to_string());
            let op = match (config.config_operation, value) {
                (0, Some(value)) => AlterOp::Set(value),
                (1, _) => AlterOp::Delete,
                (2, Some(value)) => AlterOp::Append(value),
                (3, Some(value)) => AlterOp::Subtract(value),
                (operation @ 0..=3, None) => {
                    bad = Some(AdminError {
                        code: codes::INVALID_REQUEST,
                        message: format!("Null value not supported for operation {operation} on {}", config.name),
                    });
                    break;
                }
                (operation, _) => {
                    bad = Some(AdminError {
                        code: codes::INVALID_REQUEST,
                        message: format!("Unknown config operation {operation}"),
                    });
                    break;
                }
            };
            ops.push((config.name.to_string(), op));
        }
        let outcome = match bad.map_or_else(|| resolve_resource(ctx, resource.resource_type, name), Err) {
            Ok(Resource::Topic(name)) => admin::alter_topic_configs(ctx, name, ops, request.validate_only).await,
            Ok(Resource::Broker) => admin::alter_broker_configs(ctx, ops, request.validate_only).await,
            Err(error) => Err(error),
        };
        let result = alter_result!(
            kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse,
            resource,
            outcome
        );
        response.responses.push(result);
    }
    respond(header, &response)
}
