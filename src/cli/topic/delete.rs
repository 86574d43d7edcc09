//! `fjord topic delete`: DeleteTopics.

use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest};

use super::super::args::ConnectArgs;
use super::super::error::{CliError, KafkaError};
use super::super::limits::REQUEST_TIMEOUT_MS;
use super::super::metadata::topic_name;
use super::super::output::emit;

/// Kafka's UNKNOWN_TOPIC_OR_PARTITION error code.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// Arguments of `fjord topic delete`.
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Topics to delete.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// Succeed quietly for topics that do not exist.
    #[arg(long)]
    pub if_exists: bool,
}

/// Deletes the topics; each failure is reported and the others still deleted.
pub fn run(args: DeleteArgs) -> Result<(), CliError> {
    let mut pool = super::connect(&args.connect)?;
    let connection = super::admin_connection(&mut pool)?;
    let version = connection.version_of(ApiKey::DeleteTopics)?;
    let response = connection.call_at(&delete_request(&args.names, version), version)?;
    let mut text = String::new();
    let mut failures = Vec::new();
    for name in &args.names {
        let result = response.responses.iter().find(|r| r.name.as_ref().is_some_and(|n| n.0.as_str() == name));
        let Some(result) = result else {
            failures.push(CliError::input(format!("broker returned no result for topic '{name}'")));
            continue;
        };
        if result.error_code == UNKNOWN_TOPIC_OR_PARTITION && args.if_exists {
            continue;
        }
        match KafkaError::check(result.error_code, result.error_message.as_deref(), || format!("cannot delete topic '{name}'")) {
            Ok(()) => text.push_str(&format!("Deleted topic {name}.\n")),
            Err(e) => failures.push(e.into()),
        }
    }
    emit(&text)?;
    CliError::from_failures(failures)
}

/// Names travel in `topic_names` up to v5 and in `topics` from v6.
fn delete_request(names: &[String], version: i16) -> DeleteTopicsRequest {
    let request = DeleteTopicsRequest::default().with_timeout_ms(REQUEST_TIMEOUT_MS);
    if version >= 6 {
        let topics = names.iter().map(|n| DeleteTopicState::default().with_name(Some(topic_name(n)))).collect();
        request.with_topics(topics)
    } else {
        request.with_topic_names(names.iter().map(|n| topic_name(n)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn delete_request_uses_the_field_of_its_version_and_encodes() {
        let names = vec!["a".to_string(), "b".to_string()];
        for version in ApiKey::DeleteTopics.valid_versions().min..=ApiKey::DeleteTopics.valid_versions().max {
            let request = delete_request(&names, version);
            let mut buf = bytes::BytesMut::new();
            request.encode(&mut buf, version).unwrap();
            let count = if version >= 6 { request.topics.len() } else { request.topic_names.len() };
            assert_eq!(count, 2, "v{version}");
        }
    }
}
