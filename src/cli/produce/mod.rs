//! `fjord produce TOPIC`: one record per stdin line, batched per partition and sent to the
//! partition leaders. Prints nothing on success; each failed batch is reported on stderr and
//! the exit code is non-zero if any failed.

mod batch;
mod input;
mod partitioner;
mod send;

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fjord_client::records::CompressionCodec;

use super::args::{parse_key_value, ConnectArgs};
use super::error::CliError;
use super::limits::LINGER_MS;
use super::metadata;
use super::pool::BrokerPool;
use batch::{Accumulator, PartitionBatch, PendingRecord};
pub(super) use input::Line;
#[cfg(test)]
pub(super) use partitioner::partition_for_key;
use partitioner::Partitioner;
use send::{Sender, Settings};

/// Arguments of `fjord produce`.
#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The topic to write to (created if the broker auto-creates topics).
    pub topic: String,
    /// Split each line at the first SEP into key and value; lines without SEP have no key.
    #[arg(long, value_name = "SEP", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub key_separator: Option<String>,
    /// Send every record to this partition instead of choosing by key.
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,
    /// Acknowledgements to wait for: 0 (none), 1 (leader) or all (in-sync replicas).
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: i16,
    /// Compression codec of the record batches.
    #[arg(long, value_enum, default_value_t = CompressionCodec::None)]
    pub compression: CompressionCodec,
    /// A header added to every record, e.g. `source=cli` (repeatable; a repeated key keeps the last value).
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub headers: Vec<(String, String)>,
}

/// `0`, `1`, `all` (or `-1`) → the acks field of a Produce request.
fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        other => Err(format!("expected 0, 1 or all, got '{other}'")),
    }
}

/// Produces stdin to the topic.
pub fn run(args: ProduceArgs) -> Result<(), CliError> {
    produce_from(args, input::spawn_stdin_reader())
}

/// Produces the lines arriving on `lines` (stdin's reader thread, or a test's channel).
pub(super) fn produce_from(args: ProduceArgs, lines: Receiver<Line>) -> Result<(), CliError> {
    Producer::start(args)?.pump(lines)
}

/// What the input side produced next.
enum Next {
    Line(Vec<u8>),
    LingerExpired,
    End,
    Failed(std::io::Error),
}

/// Lines in, batches out.
struct Producer {
    partitioner: Partitioner,
    accumulator: Accumulator,
    sender: Sender,
    key_separator: Option<Vec<u8>>,
    /// When the oldest record still waiting in an open batch arrived.
    oldest_pending: Option<Instant>,
}

impl Producer {
    /// Connects, waits for the topic's leaders (auto-creating it if the broker does) and
    /// checks the partition asked for.
    fn start(args: ProduceArgs) -> Result<Self, CliError> {
        let mut pool = BrokerPool::connect(&args.connect.bootstrap_server)?;
        let topic = metadata::wait_for_leaders(&mut pool, &args.topic, true)?;
        let partition_count = topic.partitions.len() as i32;
        if let Some(p) = args.partition.filter(|p| topic.partition(*p).is_none()) {
            return Err(CliError::input(format!("topic '{}' has no partition {p} (it has {partition_count})", args.topic)));
        }
        let settings = Settings {
            acks: args.acks,
            compression: args.compression.into(),
            headers: args.headers.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect(),
        };
        Ok(Producer {
            partitioner: Partitioner::new(partition_count, args.partition, sticky_seed()),
            accumulator: Accumulator::default(),
            sender: Sender::new(pool, topic, settings),
            key_separator: args.key_separator.map(String::into_bytes),
            oldest_pending: None,
        })
    }

    fn pump(mut self, lines: Receiver<Line>) -> Result<(), CliError> {
        loop {
            match self.next(&lines) {
                Next::Line(line) => self.add(line)?,
                Next::LingerExpired => self.flush()?,
                Next::End => break,
                Next::Failed(e) => {
                    self.flush()?;
                    self.sender.finish()?;
                    return Err(CliError::Stdin(e));
                }
            }
            if self.oldest_pending.is_some_and(|t| t.elapsed() >= linger()) {
                self.flush()?;
            }
        }
        self.flush()?;
        self.sender.finish()
    }

    /// Waits for a line, but no longer than the oldest waiting record may linger.
    fn next(&self, lines: &Receiver<Line>) -> Next {
        let received = match self.oldest_pending {
            None => lines.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(since) => lines.recv_timeout(linger().saturating_sub(since.elapsed())),
        };
        match received {
            Ok(Ok(line)) => Next::Line(line),
            Ok(Err(e)) => Next::Failed(e),
            Err(RecvTimeoutError::Timeout) => Next::LingerExpired,
            Err(RecvTimeoutError::Disconnected) => Next::End,
        }
    }

    fn add(&mut self, line: Vec<u8>) -> Result<(), CliError> {
        let (key, value) = input::split_line(line, self.key_separator.as_deref());
        let partition = self.partitioner.partition(key.as_deref());
        let record = PendingRecord { key, value, timestamp_ms: now_ms() };
        self.oldest_pending.get_or_insert_with(Instant::now);
        if let Some(full) = self.accumulator.add(partition, record) {
            self.send(vec![full])?;
            if self.accumulator.is_empty() {
                self.oldest_pending = None;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), CliError> {
        self.oldest_pending = None;
        let batches = self.accumulator.drain();
        if batches.is_empty() {
            return Ok(());
        }
        self.send(batches)
    }

    fn send(&mut self, batches: Vec<PartitionBatch>) -> Result<(), CliError> {
        for b in &batches {
            self.partitioner.batch_sent(b.partition);
        }
        self.sender.send(batches)
    }
}

fn linger() -> Duration {
    Duration::from_millis(LINGER_MS)
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Varies the first keyless partition between runs so several producers spread out.
fn sticky_seed() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::super::ClientCommand;
    use super::*;
    use kafka_protocol::records::Compression;

    fn produce(args: &[&str]) -> Result<ProduceArgs, clap::Error> {
        let mut full = vec!["produce"];
        full.extend_from_slice(args);
        parse(&full).map(|c| match c {
            ClientCommand::Produce(p) => p,
            other => panic!("parsed as {other:?}"),
        })
    }

    #[test]
    fn produce_defaults_to_acks_all_no_compression_no_key() {
        let p = produce(&["events"]).unwrap();
        assert_eq!(p.topic, "events");
        assert_eq!(p.acks, -1);
        assert_eq!(p.compression, CompressionCodec::None);
        assert_eq!((p.key_separator, p.partition), (None, None));
        assert!(p.headers.is_empty());
    }

    #[test]
    fn produce_accepts_every_documented_option() {
        let p = produce(&[
            "events",
            "--key-separator",
            ":",
            "--partition",
            "2",
            "--acks",
            "1",
            "--compression",
            "zstd",
            "--header",
            "a=1",
            "--header",
            "b=2",
            "-b",
            "broker:9093",
        ])
        .unwrap();
        assert_eq!(p.key_separator.as_deref(), Some(":"));
        assert_eq!((p.partition, p.acks), (Some(2), 1));
        assert_eq!(Compression::from(p.compression), Compression::Zstd);
        assert_eq!(p.headers.len(), 2);
        assert_eq!(p.connect.bootstrap_server, "broker:9093");
        assert_eq!(produce(&["t", "--acks", "0"]).unwrap().acks, 0);
    }

    #[test]
    fn produce_rejects_bad_acks_codec_partition_and_empty_separator() {
        assert!(produce(&["t", "--acks", "2"]).is_err());
        assert!(produce(&["t", "--compression", "brotli"]).is_err());
        assert!(produce(&["t", "--partition", "-1"]).is_err());
        assert!(produce(&["t", "--key-separator", ""]).is_err());
        assert!(produce(&[]).is_err());
    }
}
