//! `fjord consume TOPIC`: print records with ListOffsets + Fetch, without a consumer group.
//!
//! Partitions are fetched leader by leader; each fetch waits up to `FETCH_WAIT_MS_MAX` for data.
//! Records are printed through a template (see [`format`]) and stdout is flushed after each
//! fetch, so a tailing reader sees records as they arrive.

mod format;
mod offsets;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use fjord_client::batch::{visible_records, CorruptBatch};
use fjord_client::requests::{fetch_request, FetchPosition};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, FetchResponse};
use kafka_protocol::records::Record;

use super::args::ConnectArgs;
use super::error::{CliError, KafkaError};
use super::limits::{
    FETCH_SIZE_BYTES_MAX, FETCH_WAIT_MS_MAX, METADATA_ATTEMPT_COUNT_MAX, METADATA_RETRY_BACKOFF_MS, PARTITION_FETCH_SIZE_BYTES,
    PARTITION_FETCH_SIZE_BYTES_MAX,
};
use super::metadata::{self, TopicInfo};
use super::output::quiet_broken_pipe;
use super::pool::BrokerPool;
use format::{RecordView, Template};
use offsets::StartFrom;

/// Kafka error codes the reader handles itself.
const OFFSET_OUT_OF_RANGE: i16 = 1;
const LEADER_NOT_AVAILABLE: i16 = 5;
/// Errors after which fresh metadata (new leader, new topic id) lets reading go on.
const REFRESH_METADATA_CODES: [i16; 8] = [3, 5, 6, 9, 74, 75, 100, 103];

/// Arguments of `fjord consume`.
#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The topic to read.
    pub topic: String,
    /// Read only this partition (default: all).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,
    /// Where to start: beginning, end, or an offset.
    #[arg(long, default_value = "end", value_name = "beginning|end|OFFSET")]
    pub from: StartFrom,
    /// Exit after printing this many records.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
    /// Exit (successfully) after this long without new records (default: wait forever).
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Output template: %k key, %v value, %p partition, %o offset, %t topic, %T timestamp,
    /// %h headers, %% percent, \n \t \r \\ (default: '%v\n').
    #[arg(long, value_name = "FMT", conflicts_with = "print_key")]
    pub format: Option<Template>,
    /// Print key, tab, value (the same as --format '%k\t%v\n').
    #[arg(long)]
    pub print_key: bool,
}

/// Reads the topic until `--max-messages`, `--timeout-ms`, a closed stdout or an error.
pub fn run(args: ConsumeArgs) -> Result<(), CliError> {
    consume_into(args, std::io::stdout()).map(drop)
}

/// Consumes into `out` (stdout, or a test's buffer) and hands it back.
pub(super) fn consume_into<W: Write>(args: ConsumeArgs, out: W) -> Result<W, CliError> {
    let idle_timeout = args.timeout_ms.map(Duration::from_millis);
    let mut reader = Reader::start(args, out)?;
    reader.run(idle_timeout)?;
    Ok(reader.out)
}

/// The partitions to read: the one asked for (which must exist) or all.
fn chosen_partitions(topic: &TopicInfo, partition: Option<i32>) -> Result<Vec<i32>, CliError> {
    match partition {
        None => Ok(topic.partitions.iter().map(|p| p.index).collect()),
        Some(p) if topic.partition(p).is_some() => Ok(vec![p]),
        Some(p) => {
            Err(CliError::input(format!("topic '{}' has no partition {p} (it has {})", topic.name, topic.partitions.len())))
        }
    }
}

/// The state of one `fjord consume` run, printing to `out`.
struct Reader<W: Write> {
    out: W,
    pool: BrokerPool,
    topic: TopicInfo,
    positions: Vec<FetchPosition>,
    template: Template,
    wait_ms: i32,
    /// Records still to print when `--max-messages` was given.
    remaining: Option<u64>,
    /// Metadata refreshes in a row without a successful fetch.
    refresh_count: u32,
    stdout_closed: bool,
}

impl<W: Write> Reader<W> {
    /// Connects, finds the partitions and resolves where each starts.
    fn start(args: ConsumeArgs, out: W) -> Result<Self, CliError> {
        let mut pool = BrokerPool::connect(&args.connect.bootstrap_server)?;
        let topic = metadata::wait_for_leaders(&mut pool, &args.topic, false)?;
        let partitions = chosen_partitions(&topic, args.partition)?;
        let starts = offsets::resolve(&mut pool, &topic, &partitions, args.from)?;
        let template = match (args.format, args.print_key) {
            (Some(t), _) => t,
            (None, true) => Template::key_value_line(),
            (None, false) => Template::value_line(),
        };
        let positions = starts
            .into_iter()
            .map(|(partition, offset)| FetchPosition { partition, offset, size_bytes: PARTITION_FETCH_SIZE_BYTES })
            .collect();
        let wait_ms = args.timeout_ms.map_or(FETCH_WAIT_MS_MAX, |t| t.min(FETCH_WAIT_MS_MAX as u64) as i32);
        Ok(Reader {
            out,
            pool,
            topic,
            positions,
            template,
            wait_ms,
            remaining: args.max_messages,
            refresh_count: 0,
            stdout_closed: false,
        })
    }

    fn run(&mut self, idle_timeout: Option<Duration>) -> Result<(), CliError> {
        let mut idle_since = Instant::now();
        while !self.done() {
            if self.poll()? > 0 {
                idle_since = Instant::now();
            } else if idle_timeout.is_some_and(|t| idle_since.elapsed() >= t) {
                break;
            }
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.stdout_closed || self.remaining == Some(0)
    }

    /// One fetch from each leader; returns how many records were printed.
    fn poll(&mut self) -> Result<usize, CliError> {
        let mut by_leader: BTreeMap<i32, Vec<FetchPosition>> = BTreeMap::new();
        for p in &self.positions {
            let leader = self.topic.partition(p.partition).map_or(-1, |info| info.leader_id);
            by_leader.entry(leader).or_default().push(*p);
        }
        let mut printed = 0;
        for (leader, group) in by_leader {
            if leader < 0 {
                let text = format!("no leader for a partition of topic '{}'", self.topic.name);
                self.refresh(KafkaError { code: LEADER_NOT_AVAILABLE, text })?;
                return Ok(printed);
            }
            let request = fetch_request(&self.topic.name, self.topic.topic_id, &group, self.wait_ms, FETCH_SIZE_BYTES_MAX);
            let connection = self.pool.broker(leader)?;
            let version = connection.version_of(ApiKey::Fetch)?;
            let response = connection.call_at(&request, version)?;
            printed += self.handle(response)?;
            if self.done() {
                break;
            }
        }
        Ok(printed)
    }

    fn handle(&mut self, response: FetchResponse) -> Result<usize, CliError> {
        KafkaError::check(response.error_code, None, || format!("cannot fetch from topic '{}'", self.topic.name))?;
        let mut out = Vec::new();
        let mut printed = 0;
        let mut stale = None;
        for data in response.responses.into_iter().flat_map(|t| t.partitions) {
            let partition = data.partition_index;
            match self.partition_records(data)? {
                Ok(records) => printed += self.render(partition, &records, &mut out),
                Err(error) => stale = Some(error),
            }
        }
        self.write(&out)?;
        match stale {
            Some(error) => self.refresh(error)?,
            None => self.refresh_count = 0,
        }
        Ok(printed)
    }

    /// The visible records of one partition (advancing its position), or the error that says
    /// the partition needs fresh metadata first.
    fn partition_records(&mut self, data: PartitionData) -> Result<Result<Vec<Record>, KafkaError>, CliError> {
        let name = self.topic.name.clone();
        let Some(position) = self.positions.iter_mut().find(|p| p.partition == data.partition_index) else {
            return Ok(Ok(Vec::new()));
        };
        match data.error_code {
            0 => {}
            OFFSET_OUT_OF_RANGE => {
                let text = format!(
                    "offset {} is out of range for {name}-{} (log start offset {}, high watermark {})",
                    position.offset, position.partition, data.log_start_offset, data.high_watermark
                );
                return Err(KafkaError { code: OFFSET_OUT_OF_RANGE, text }.into());
            }
            code if REFRESH_METADATA_CODES.contains(&code) => {
                let text = format!("cannot fetch {name}-{}", position.partition);
                return Ok(Err(KafkaError { code, text }));
            }
            code => {
                KafkaError::check(code, None, || format!("cannot fetch {name}-{}", position.partition))?;
            }
        }
        let Some(bytes) = data.records.filter(|r| !r.is_empty()) else {
            return Ok(Ok(Vec::new()));
        };
        let records_error = |e: CorruptBatch| CliError::Records {
            topic: name.clone(),
            partition: position.partition,
            offset: e.base_offset,
            detail: e.error.to_string(),
        };
        let Some((records, next_offset)) = visible_records(bytes, position.offset).map_err(records_error)? else {
            grow_fetch_size(position, &name)?;
            return Ok(Ok(Vec::new()));
        };
        position.offset = next_offset;
        Ok(Ok(records))
    }

    /// Renders up to the remaining `--max-messages`; returns how many were rendered.
    fn render(&mut self, partition: i32, records: &[Record], out: &mut Vec<u8>) -> usize {
        let take = self.remaining.map_or(records.len(), |r| records.len().min(r as usize));
        for record in &records[..take] {
            let headers: Vec<(&str, Option<&bytes::Bytes>)> =
                record.headers.iter().map(|(k, v)| (k.as_str(), v.as_ref())).collect();
            let view = RecordView {
                topic: &self.topic.name,
                partition,
                offset: record.offset,
                timestamp_ms: record.timestamp,
                key: record.key.as_ref(),
                value: record.value.as_ref(),
                headers: &headers,
            };
            self.template.render(&view, out);
        }
        if let Some(r) = self.remaining.as_mut() {
            *r -= take as u64;
        }
        take
    }

    fn write(&mut self, out: &[u8]) -> Result<(), CliError> {
        if out.is_empty() {
            return Ok(());
        }
        let result = self.out.write_all(out).and_then(|()| self.out.flush());
        self.stdout_closed = result.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe);
        quiet_broken_pipe(result)
    }

    /// Fresh leaders and topic id after `cause`; gives up with `cause` after
    /// `METADATA_ATTEMPT_COUNT_MAX` refreshes in a row.
    fn refresh(&mut self, cause: KafkaError) -> Result<(), CliError> {
        self.refresh_count += 1;
        if self.refresh_count > METADATA_ATTEMPT_COUNT_MAX {
            return Err(cause.into());
        }
        std::thread::sleep(Duration::from_millis(METADATA_RETRY_BACKOFF_MS));
        self.topic = metadata::wait_for_leaders(&mut self.pool, &self.topic.name, false)?;
        Ok(())
    }
}

/// Doubles the partition's fetch size when not even one batch fitted.
fn grow_fetch_size(position: &mut FetchPosition, topic: &str) -> Result<(), CliError> {
    if position.size_bytes >= PARTITION_FETCH_SIZE_BYTES_MAX {
        return Err(CliError::Records {
            topic: topic.to_string(),
            partition: position.partition,
            offset: position.offset,
            detail: format!("a record batch is larger than {PARTITION_FETCH_SIZE_BYTES_MAX} bytes"),
        });
    }
    position.size_bytes = position.size_bytes.saturating_mul(2).min(PARTITION_FETCH_SIZE_BYTES_MAX);
    Ok(())
}
