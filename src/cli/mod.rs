//! The client half of the `fjord` command line: the Kafka quickstart's getting-started path.
//!
//! `fjord topic …`, `fjord produce`, `fjord consume` and `fjord cluster info` speak the Kafka
//! protocol over a blocking `std::net::TcpStream` to any Kafka-compatible broker (Fjord or Apache
//! Kafka). Every codec comes from `kafka-protocol`; each request uses the highest version that
//! both the client and the broker support (see [`versions`]).
//!
//! ```text
//!  command ──▶ BrokerPool ──▶ Connection (bootstrap) ── ApiVersions, Metadata, admin requests
//!                   └───────▶ Connection (leader n)  ── Produce / ListOffsets / Fetch
//! ```
//! Exit codes: 0 success, 1 Kafka error or bad input, 2 connection failure.

mod args;
mod cluster;
mod consume;
mod error;
#[cfg(test)]
mod fake_broker;
#[cfg(test)]
mod flow_tests;
mod limits;
mod metadata;
mod output;
mod pool;
mod produce;
mod topic;

pub use cluster::ClusterCommand;
pub use consume::ConsumeArgs;
pub use produce::ProduceArgs;
pub use topic::TopicCommand;

// The client commands, flattened into the `fjord` binary's subcommands. (A `///` doc comment
// here would become the about text of the binary that flattens this enum.)
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Create, list, describe, reconfigure and delete topics.
    Topic {
        #[command(subcommand)]
        cmd: TopicCommand,
    },
    /// Send lines from standard input to a topic, one record per line.
    Produce(ProduceArgs),
    /// Print a topic's records to standard output.
    Consume(ConsumeArgs),
    /// Inspect the cluster.
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCommand,
    },
}

/// Runs a client command; returns the process exit code after reporting any error on stderr.
pub fn run(cmd: ClientCommand) -> i32 {
    let result = match cmd {
        ClientCommand::Topic { cmd } => topic::run(cmd),
        ClientCommand::Produce(args) => produce::run(args),
        ClientCommand::Consume(args) => consume::run(args),
        ClientCommand::Cluster { cmd } => cluster::run(cmd),
    };
    match result {
        Ok(()) => 0,
        Err(error) => {
            for line in error.report_lines() {
                eprintln!("{line}");
            }
            error.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Stands in for the `fjord` binary's parser in tests.
    #[derive(Parser, Debug)]
    struct TestCli {
        #[command(subcommand)]
        command: ClientCommand,
    }

    pub(crate) fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        TestCli::try_parse_from(std::iter::once("fjord").chain(args.iter().copied())).map(|c| c.command)
    }

    #[test]
    fn command_tree_passes_clap_debug_assertions() {
        use clap::CommandFactory;
        TestCli::command().debug_assert();
    }

    #[test]
    fn bootstrap_server_defaults_to_localhost_and_takes_short_flag() {
        let Ok(ClientCommand::Cluster { cmd: ClusterCommand::Info(info) }) = parse(&["cluster", "info"]) else {
            panic!("cluster info did not parse");
        };
        // The default applies unless FJORD_BOOTSTRAP_SERVER is set in the test environment.
        if std::env::var_os("FJORD_BOOTSTRAP_SERVER").is_none() {
            assert_eq!(info.connect.bootstrap_server, "localhost:9092");
        }
        let Ok(ClientCommand::Cluster { cmd: ClusterCommand::Info(info) }) = parse(&["cluster", "info", "-b", "kafka:19092"])
        else {
            panic!("cluster info -b did not parse");
        };
        assert_eq!(info.connect.bootstrap_server, "kafka:19092");
    }

    #[test]
    fn unknown_subcommand_is_rejected() {
        assert!(parse(&["topics", "list"]).is_err());
    }
}
