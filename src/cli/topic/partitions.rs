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
    let topic = CreatePartitionsTopic::default()
        .with_name(topic_name(&args.name))
        .with_count(args.total)
        .with_assignments(None);
    let request = CreatePartitionsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(REQUEST_TIMEOUT_MS);
    let response = connection.call(&request)?;
    for result in &response.results {
        KafkaError::check(result.error_code, result.error_message.as_deref(), || {
            format!("cannot add partitions to topic '{}'", args.name)
        })?;
    }
    emit(&format!(
        "Topic {} now has {} partitions.\n",
        args.name, args.total
    ))
}
