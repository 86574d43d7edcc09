//! `fjord topic create`: CreateTopics.

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::CreateTopicsRequest;
use kafka_protocol::protocol::StrBytes;

use super::super::args::{parse_key_value, ConnectArgs};
use super::super::error::{CliError, KafkaError};
use super::super::limits::REQUEST_TIMEOUT_MS;
use super::super::metadata::topic_name;
use super::super::output::emit;

/// Kafka's TOPIC_ALREADY_EXISTS error code.
const TOPIC_ALREADY_EXISTS: i16 = 36;

/// Arguments of `fjord topic create`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Name of the topic to create.
    pub name: String,
    /// Number of partitions (-1: the broker's default).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub partitions: i32,
    /// Number of replicas of each partition (-1: the broker's default).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub replication_factor: i16,
    /// A topic config, e.g. `cleanup.policy=compact` (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub configs: Vec<(String, String)>,
    /// Succeed quietly if the topic already exists.
    #[arg(long)]
    pub if_not_exists: bool,
    /// Ask the broker to validate the request without creating the topic.
    #[arg(long)]
    pub validate_only: bool,
}

/// Creates the topic.
pub fn run(args: CreateArgs) -> Result<(), CliError> {
    let mut pool = super::connect(&args.connect)?;
    let connection = super::admin_connection(&mut pool)?;
    let response = connection.call(&create_request(&args))?;
    let result = response
        .topics
        .into_iter()
        .find(|t| t.name.0.as_str() == args.name)
        .ok_or_else(|| CliError::input(format!("broker returned no result for topic '{}'", args.name)))?;
    if result.error_code == TOPIC_ALREADY_EXISTS && args.if_not_exists {
        return Ok(());
    }
    KafkaError::check(result.error_code, result.error_message.as_deref(), || format!("cannot create topic '{}'", args.name))?;
    if args.validate_only {
        emit(&format!("Topic '{}' is valid (not created: --validate-only).\n", args.name))
    } else {
        emit(&format!("Created topic {}.\n", args.name))
    }
}

fn create_request(args: &CreateArgs) -> CreateTopicsRequest {
    let configs = args
        .configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_value(Some(StrBytes::from_string(v.clone())))
        })
        .collect();
    let topic = CreatableTopic::default()
        .with_name(topic_name(&args.name))
        .with_num_partitions(args.partitions)
        .with_replication_factor(args.replication_factor)
        .with_configs(configs);
    CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(REQUEST_TIMEOUT_MS)
        .with_validate_only(args.validate_only)
}

#[cfg(test)]
mod tests {
    use super::super::super::pool::assert_encodes_at_every_client_version;
    use super::*;
    use kafka_protocol::messages::ApiKey;

    #[test]
    fn create_request_carries_counts_configs_and_validate_flag() {
        let args = CreateArgs {
            connect: ConnectArgs { bootstrap_server: "h:1".into() },
            name: "t".into(),
            partitions: -1,
            replication_factor: 3,
            configs: vec![("retention.ms".into(), "100".into())],
            if_not_exists: false,
            validate_only: true,
        };
        let request = create_request(&args);
        let topic = &request.topics[0];
        assert_eq!(topic.name.0.as_str(), "t");
        assert_eq!((topic.num_partitions, topic.replication_factor), (-1, 3));
        assert_eq!(topic.configs[0].name.as_str(), "retention.ms");
        assert_eq!(topic.configs[0].value.as_deref(), Some("100"));
        assert!(request.validate_only);
    }

    #[test]
    fn create_request_encodes_at_every_client_version() {
        let args = CreateArgs {
            connect: ConnectArgs { bootstrap_server: "h:1".into() },
            name: "t".into(),
            partitions: 3,
            replication_factor: 1,
            configs: vec![("a".into(), "b".into())],
            if_not_exists: false,
            validate_only: false,
        };
        assert_encodes_at_every_client_version(ApiKey::CreateTopics, &create_request(&args));
    }
}
