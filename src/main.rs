//! `fjord`: the broker (`fjord start`) and the command line for people (topics, produce, consume,
//! cluster info), which speaks the Kafka protocol to any broker.

mod broker;
mod cli;
mod config;
mod metrics_http;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "fjord", version, about = "Fjord: a Kafka-compatible, thread-per-core event streaming broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a broker (single node; embedded defaults: ./fjord-data, port 9092)
    Start(Box<config::StartArgs>),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Start(args) => broker::start(*args),
        Command::Client(command) => cli::run(command),
    };
    std::process::exit(code);
}
