//! `fjord topic alter-config`: IncrementalAlterConfigs on one topic.

use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::IncrementalAlterConfigsRequest;
use kafka_protocol::protocol::StrBytes;

use super::super::args::{parse_key_value, ConnectArgs};
use super::super::error::{CliError, KafkaError};
use super::super::output::emit;
use super::configs::RESOURCE_TYPE_TOPIC;

/// IncrementalAlterConfigs operation codes.
const OPERATION_SET: i8 = 0;
const OPERATION_DELETE: i8 = 1;

/// Arguments of `fjord topic alter-config`.
#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("change").required(true).multiple(true).args(["set", "delete"]))]
pub struct AlterConfigArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The topic to change.
    pub name: String,
    /// Set a config, e.g. `retention.ms=86400000` (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,
    /// Remove a config so the broker default applies again (repeatable).
    #[arg(long, value_name = "KEY")]
    pub delete: Vec<String>,
}

/// Applies the changes.
pub fn run(args: AlterConfigArgs) -> Result<(), CliError> {
    let mut pool = super::connect(&args.connect)?;
    let connection = super::admin_connection(&mut pool)?;
    let response = connection.call(&alter_request(&args))?;
    for result in &response.responses {
        KafkaError::check(result.error_code, result.error_message.as_deref(), || {
            format!("cannot alter configs of topic '{}'", args.name)
        })?;
    }
    emit(&format!("Updated config for topic {}.\n", args.name))
}

fn alter_request(args: &AlterConfigArgs) -> IncrementalAlterConfigsRequest {
    let config = |name: &str, operation, value: Option<&str>| {
        AlterableConfig::default()
            .with_name(StrBytes::from_string(name.to_string()))
            .with_config_operation(operation)
            .with_value(value.map(|v| StrBytes::from_string(v.to_string())))
    };
    let sets = args.set.iter().map(|(k, v)| config(k, OPERATION_SET, Some(v)));
    let deletes = args.delete.iter().map(|k| config(k, OPERATION_DELETE, None));
    let resource = AlterConfigsResource::default()
        .with_resource_type(RESOURCE_TYPE_TOPIC)
        .with_resource_name(StrBytes::from_string(args.name.clone()))
        .with_configs(sets.chain(deletes).collect());
    IncrementalAlterConfigsRequest::default().with_resources(vec![resource])
}

#[cfg(test)]
mod tests {
    use super::super::super::pool::assert_encodes_at_every_client_version;
    use super::*;
    use kafka_protocol::messages::ApiKey;

    /// `fjord topic alter-config t` with these `--set` and `--delete` options.
    fn args(set: (&str, &str), delete: &str) -> AlterConfigArgs {
        AlterConfigArgs {
            connect: ConnectArgs { bootstrap_server: "h:1".into() },
            name: "t".into(),
            set: vec![(set.0.into(), set.1.into())],
            delete: vec![delete.into()],
        }
    }

    #[test]
    fn alter_request_sets_then_deletes_on_the_topic_resource() {
        let request = alter_request(&args(("retention.ms", "5"), "cleanup.policy"));
        let resource = &request.resources[0];
        assert_eq!(resource.resource_type, RESOURCE_TYPE_TOPIC);
        assert_eq!(resource.resource_name.as_str(), "t");
        let ops: Vec<(&str, i8, Option<&str>)> =
            resource.configs.iter().map(|c| (c.name.as_str(), c.config_operation, c.value.as_deref())).collect();
        assert_eq!(ops, vec![("retention.ms", OPERATION_SET, Some("5")), ("cleanup.policy", OPERATION_DELETE, None)]);
    }

    #[test]
    fn alter_request_encodes_at_every_client_version() {
        assert_encodes_at_every_client_version(ApiKey::IncrementalAlterConfigs, &alter_request(&args(("a", "1"), "b")));
    }
}
