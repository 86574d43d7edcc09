//! Reading a topic's non-default configs with DescribeConfigs.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use kafka_protocol::messages::DescribeConfigsRequest;
use kafka_protocol::protocol::StrBytes;

use super::super::error::{CliError, KafkaError};
use fjord_client::Connection;

/// ConfigResource type of a topic.
pub const RESOURCE_TYPE_TOPIC: i8 = 2;

/// DescribeConfigs config source of a value set on the topic itself (DYNAMIC_TOPIC_CONFIG).
const SOURCE_DYNAMIC_TOPIC_CONFIG: i8 = 1;

/// Each topic's configs set on the topic itself, as (name, shown value), sorted by name.
pub type TopicConfigs = BTreeMap<String, Result<Vec<(String, String)>, KafkaError>>;

/// Describes the configs of `topics` and keeps only those set on the topic itself.
pub fn describe(connection: &mut Connection, topics: &[String]) -> Result<TopicConfigs, CliError> {
    let response = connection.call(&describe_request(topics))?;
    let mut out = TopicConfigs::new();
    for result in response.results {
        let name = result.resource_name.to_string();
        let checked = KafkaError::check(result.error_code, result.error_message.as_deref(), || {
            format!("cannot describe configs of topic '{name}'")
        })
        .map(|()| topic_overrides(&result.configs));
        out.insert(name, checked);
    }
    Ok(out)
}

/// DescribeConfigs for every config of each topic, without synonyms or documentation.
fn describe_request(topics: &[String]) -> DescribeConfigsRequest {
    let resources = topics
        .iter()
        .map(|t| {
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TYPE_TOPIC)
                .with_resource_name(StrBytes::from_string(t.clone()))
                .with_configuration_keys(None)
        })
        .collect();
    DescribeConfigsRequest::default().with_resources(resources)
}

/// The configs whose source is the topic itself; sensitive values are masked.
fn topic_overrides(configs: &[DescribeConfigsResourceResult]) -> Vec<(String, String)> {
    let mut overrides: Vec<(String, String)> = configs
        .iter()
        .filter(|c| c.config_source == SOURCE_DYNAMIC_TOPIC_CONFIG)
        .map(|c| {
            let value = match (&c.value, c.is_sensitive) {
                (_, true) => "(sensitive)".to_string(),
                (Some(v), false) => v.to_string(),
                (None, false) => "null".to_string(),
            };
            (c.name.to_string(), value)
        })
        .collect();
    overrides.sort();
    overrides
}

#[cfg(test)]
mod tests {
    use super::super::super::pool::assert_encodes_at_every_client_version;
    use super::*;
    use kafka_protocol::messages::ApiKey;

    fn entry(name: &str, value: &str, source: i8, sensitive: bool) -> DescribeConfigsResourceResult {
        DescribeConfigsResourceResult::default()
            .with_name(StrBytes::from_string(name.into()))
            .with_value(Some(StrBytes::from_string(value.into())))
            .with_config_source(source)
            .with_is_sensitive(sensitive)
    }

    #[test]
    fn only_topic_level_configs_are_kept_sorted_and_secrets_masked() {
        let configs = [
            entry("segment.bytes", "1073741824", 5, false),
            entry("retention.ms", "1000", SOURCE_DYNAMIC_TOPIC_CONFIG, false),
            entry("cleanup.policy", "compact", SOURCE_DYNAMIC_TOPIC_CONFIG, false),
            entry("sasl.secret", "x", SOURCE_DYNAMIC_TOPIC_CONFIG, true),
            entry("min.insync.replicas", "2", 4, false),
        ];
        assert_eq!(
            topic_overrides(&configs),
            vec![
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("retention.ms".to_string(), "1000".to_string()),
                ("sasl.secret".to_string(), "(sensitive)".to_string()),
            ]
        );
    }

    #[test]
    fn describe_request_encodes_at_every_client_version() {
        let request = describe_request(&["a".to_string(), "b".to_string()]);
        assert_eq!(request.resources.len(), 2);
        assert_encodes_at_every_client_version(ApiKey::DescribeConfigs, &request);
    }
}
