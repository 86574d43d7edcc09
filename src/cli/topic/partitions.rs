//! `fjord topic add-partitions`: CreatePartitions.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::CreatePartitionsRequest;

use super::super::args::ConnectArgs;
use super::super::error::{CliError, KafkaError};
use super::super::limits::REQUEST_TIMEOUT_MS;
use super::super::metadata::topic_name;
use super::super::output::emit;

/// Arguments of `fjord topic add-partitions`.
#[derive(clap::Args, Debug)]
pub struct AddPartitionsArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The topic to grow.
    pub name: String,
    /// The partition count after the change (must exceed the current count).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub total: i32,
}

/// Raises the partition count; the broker places the new partitions.
pub fn run(args: AddPartitionsArgs) -> Result<(), CliError> {
    let mut pool = super::connect(&args.connect)?;
    let connection = super::admin_connection(&mut pool)?;
    let response = connection.call(&partitions_request(&args.name, args.total))?;
    for result in &response.results {
        KafkaError::check(result.error_code, result.error_message.as_deref(), || {
            format!("cannot add partitions to topic '{}'", args.name)
        })?;
    }
    emit(&format!("Topic {} now has {} partitions.\n", args.name, args.total))
}

fn partitions_request(name: &str, total: i32) -> CreatePartitionsRequest {
    let topic = CreatePartitionsTopic::default().with_name(topic_name(name)).with_count(total).with_assignments(None);
    CreatePartitionsRequest::default().with_topics(vec![topic]).with_timeout_ms(REQUEST_TIMEOUT_MS)
}

#[cfg(test)]
mod tests {
    use super::super::super::pool::assert_encodes_at_every_client_version;
    use super::*;
    use kafka_protocol::messages::ApiKey;

    #[test]
    fn partitions_request_asks_for_the_total_and_lets_the_broker_place_replicas() {
        let request = partitions_request("t", 6);
        assert_eq!(request.topics[0].count, 6);
        assert!(request.topics[0].assignments.is_none());
        assert_encodes_at_every_client_version(ApiKey::CreatePartitions, &request);
    }
}
