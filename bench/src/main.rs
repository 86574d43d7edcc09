//! The `fjord-bench` command line: `run` a workload against a broker, or `plot` saved reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use fjord_bench::error::{BenchError, Result};
use fjord_bench::report::Report;
use fjord_bench::run::{run, summary_lines, RunOptions};
use fjord_bench::wire::Timeouts;
use fjord_bench::workload::{Acks, CompressionCodec, KeyDistribution, Mode, Workload};

#[derive(Parser)]
#[command(
    name = "fjord-bench",
    version,
    about = "Kafka-protocol load generator: throughput and latency of any Kafka-compatible broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workload against a broker.
    Run(Box<RunArgs>),
    /// Draw one SVG from one or more JSON reports (one line per report, named by its label).
    Plot {
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        #[arg(long)]
        svg: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Workload file (TOML); flags below override its values.
    #[arg(long, short = 'w')]
    workload: Option<PathBuf>,
    /// Any broker of the cluster.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// The broker's name in the report and in comparison plots.
    #[arg(long, default_value = "broker")]
    label: String,
    /// Write the JSON report here instead of stdout.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write an SVG picture of latency and throughput.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Sample this process's CPU time and memory from /proc (the broker, on this host).
    #[arg(long)]
    broker_pid: Option<u32>,
    /// host:port of the broker's Prometheus endpoint (`fjord start --metrics-listen`): the report
    /// adds the broker-side request times of the measured part (its fjord_request_duration_seconds).
    #[arg(long)]
    broker_metrics: Option<String>,
    /// Pin worker threads to cores (off by default: client and broker often share cores).
    #[arg(long)]
    pin_cores: bool,
    /// Socket connect/read/write timeout; a broker silent this long ends the run.
    #[arg(long, default_value_t = 10_000)]
    io_timeout_ms: u64,
    /// Upper bound on producing the data a consume workload reads (prefill_bytes).
    #[arg(long, default_value_t = 1800)]
    prefill_timeout_seconds: u64,
    /// No progress line on stderr.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Args)]
struct Overrides {
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    #[arg(long)]
    topic: Option<String>,
    #[arg(long)]
    partitions: Option<u32>,
    #[arg(long)]
    replication_factor: Option<i16>,
    #[arg(long)]
    producers: Option<u32>,
    #[arg(long)]
    consumers: Option<u32>,
    /// Bytes per record value.
    #[arg(long)]
    record_size: Option<usize>,
    #[arg(long, value_enum)]
    key_distribution: Option<KeyDistribution>,
    #[arg(long, value_enum)]
    acks: Option<Acks>,
    #[arg(long, value_enum)]
    compression: Option<CompressionCodec>,
    /// Records per batch (0 = from --batch-bytes).
    #[arg(long)]
    batch_records: Option<u32>,
    /// Payload bytes per batch.
    #[arg(long)]
    batch_bytes: Option<usize>,
    #[arg(long)]
    linger_ms: Option<u64>,
    /// Records per second over all producers; 0 = as fast as possible (closed loop).
    #[arg(long)]
    rate: Option<u64>,
    #[arg(long)]
    warmup: Option<u64>,
    #[arg(long)]
    duration: Option<u64>,
    #[arg(long)]
    max_inflight: Option<u32>,
    #[arg(long)]
    prefill_bytes: Option<u64>,
}

impl Overrides {
    fn apply(&self, w: &mut Workload) {
        macro_rules! set {
            ($flag:ident => $field:ident) => {
                if let Some(value) = self.$flag.clone() {
                    w.$field = value;
                }
            };
        }
        set!(mode => mode);
        set!(topic => topic);
        set!(partitions => partitions);
        set!(replication_factor => replication_factor);
        set!(producers => producers);
        set!(consumers => consumers);
        set!(record_size => record_size_bytes);
        set!(key_distribution => key_distribution);
        set!(acks => acks);
        set!(compression => compression);
        set!(batch_records => batch_records);
        set!(batch_bytes => batch_size_bytes);
        set!(linger_ms => linger_ms);
        set!(rate => target_rate_records_per_second);
        set!(warmup => warmup_seconds);
        set!(duration => duration_seconds);
        set!(max_inflight => max_inflight);
        set!(prefill_bytes => prefill_bytes);
    }
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| BenchError::io(format!("writing {}", path.display()), e))
}

fn run_command(args: &RunArgs) -> Result<()> {
    let mut workload = match &args.workload {
        Some(path) => Workload::load(path)?,
        None => Workload::default(),
    };
    args.overrides.apply(&mut workload);
    let options = RunOptions {
        bootstrap: args.bootstrap.clone(),
        label: args.label.clone(),
        pin_cores: args.pin_cores,
        broker_pid: args.broker_pid,
        broker_metrics: args.broker_metrics.clone(),
        timeouts: Timeouts { connect: Duration::from_millis(args.io_timeout_ms), io: Duration::from_millis(args.io_timeout_ms) },
        prefill_timeout: Duration::from_secs(args.prefill_timeout_seconds),
        progress: !args.quiet,
    };
    let report = run(&workload, &options)?;
    for line in summary_lines(&report) {
        eprintln!("{line}");
    }
    let json = report.to_json()?;
    match &args.json {
        Some(path) => write_file(path, &json)?,
        None => println!("{json}"),
    }
    if let Some(path) = &args.svg {
        write_file(path, &fjord_bench::svg::render(std::slice::from_ref(&report)))?;
    }
    Ok(())
}

fn plot_command(paths: &[PathBuf], svg: &Path) -> Result<()> {
    let reports = paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).map_err(|e| BenchError::io(format!("reading {}", path.display()), e))?;
            Report::from_json(&text).map_err(|e| BenchError::Report(format!("{}: {e}", path.display())))
        })
        .collect::<Result<Vec<_>>>()?;
    write_file(svg, &fjord_bench::svg::render(&reports))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Run(args) => run_command(args),
        Command::Plot { reports, svg } => plot_command(reports, svg),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fjord-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}
