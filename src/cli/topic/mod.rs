//! `fjord topic …`: topic administration (CreateTopics, Metadata, DescribeConfigs, DeleteTopics,
//! IncrementalAlterConfigs, CreatePartitions).

mod alter;
mod configs;
mod create;
mod delete;
mod describe;
mod list;
mod partitions;

use super::args::ConnectArgs;
use super::error::CliError;
use super::metadata;
use super::pool::BrokerPool;
use fjord_client::Connection;

pub use alter::AlterConfigArgs;
pub use create::CreateArgs;
pub use delete::DeleteArgs;
pub use describe::DescribeArgs;
pub use list::ListArgs;
pub use partitions::AddPartitionsArgs;

/// Topic subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topic names.
    List(ListArgs),
    /// Show partitions, leaders, replicas, in-sync replicas and non-default configs.
    Describe(DescribeArgs),
    /// Delete topics.
    Delete(DeleteArgs),
    /// Set or remove topic configs.
    AlterConfig(AlterConfigArgs),
    /// Raise a topic's partition count.
    AddPartitions(AddPartitionsArgs),
}

/// Runs a topic subcommand.
pub fn run(cmd: TopicCommand) -> Result<(), CliError> {
    match cmd {
        TopicCommand::Create(args) => create::run(args),
        TopicCommand::List(args) => list::run(args),
        TopicCommand::Describe(args) => describe::run(args),
        TopicCommand::Delete(args) => delete::run(args),
        TopicCommand::AlterConfig(args) => alter::run(args),
        TopicCommand::AddPartitions(args) => partitions::run(args),
    }
}

/// Connects and returns the connection admin requests should go to: the controller named in
/// metadata when it is known (ZooKeeper-mode Kafka requires it; KRaft brokers forward), else the
/// bootstrap broker.
fn admin_connection(pool: &mut BrokerPool) -> Result<&mut Connection, CliError> {
    let cluster = metadata::fetch(pool.bootstrap(), Some(&[]), false)?;
    pool.learn_brokers(cluster.broker_addresses());
    if cluster.brokers.contains_key(&cluster.controller_id) {
        return pool.broker(cluster.controller_id);
    }
    Ok(pool.bootstrap())
}

/// Connects to the bootstrap broker named in `connect`.
fn connect(connect: &ConnectArgs) -> Result<BrokerPool, CliError> {
    BrokerPool::connect(&connect.bootstrap_server)
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::super::ClientCommand;
    use super::*;

    fn topic(args: &[&str]) -> TopicCommand {
        let mut full = vec!["topic"];
        full.extend_from_slice(args);
        match parse(&full) {
            Ok(ClientCommand::Topic { cmd }) => cmd,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn create_defaults_to_broker_defaults_and_collects_configs() {
        let TopicCommand::Create(c) = topic(&["create", "events"]) else { panic!() };
        assert_eq!((c.name.as_str(), c.partitions, c.replication_factor), ("events", -1, -1));
        assert!(!c.if_not_exists && !c.validate_only && c.configs.is_empty());

        let TopicCommand::Create(c) = topic(&[
            "create",
            "events",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "cleanup.policy=compact",
            "--config",
            "retention.ms=1000",
            "--if-not-exists",
            "--validate-only",
        ]) else {
            panic!()
        };
        assert_eq!((c.partitions, c.replication_factor), (3, 1));
        assert_eq!(c.configs[1], ("retention.ms".to_string(), "1000".to_string()));
        assert!(c.if_not_exists && c.validate_only);
    }

    #[test]
    fn create_rejects_config_without_equals() {
        assert!(parse(&["topic", "create", "t", "--config", "oops"]).is_err());
    }

    #[test]
    fn describe_and_delete_take_several_names() {
        let TopicCommand::Describe(d) = topic(&["describe", "a", "b"]) else { panic!() };
        assert_eq!(d.names, vec!["a", "b"]);
        let TopicCommand::Delete(d) = topic(&["delete", "a", "b", "--if-exists"]) else { panic!() };
        assert_eq!(d.names, vec!["a", "b"]);
        assert!(d.if_exists);
        assert!(parse(&["topic", "delete"]).is_err());
    }

    #[test]
    fn list_hides_internal_topics_unless_asked() {
        let TopicCommand::List(l) = topic(&["list"]) else { panic!() };
        assert!(!l.internal);
        let TopicCommand::List(l) = topic(&["list", "--internal", "-b", "h:1"]) else { panic!() };
        assert!(l.internal);
        assert_eq!(l.connect.bootstrap_server, "h:1");
    }

    #[test]
    fn alter_config_needs_a_change_and_add_partitions_needs_total() {
        let TopicCommand::AlterConfig(a) = topic(&["alter-config", "t", "--set", "retention.ms=5", "--delete", "cleanup.policy"])
        else {
            panic!()
        };
        assert_eq!(a.set, vec![("retention.ms".to_string(), "5".to_string())]);
        assert_eq!(a.delete, vec!["cleanup.policy"]);
        assert!(parse(&["topic", "alter-config", "t"]).is_err());
        let TopicCommand::AddPartitions(p) = topic(&["add-partitions", "t", "--total", "6"]) else { panic!() };
        assert_eq!(p.total, 6);
        assert!(parse(&["topic", "add-partitions", "t"]).is_err());
    }
}
