//! Limits of the command-line client, kept together so they can be read and checked at once.
//!
//! Every buffer, queue, loop and wait of the client is bounded by one of these.

/// Largest response frame accepted from a broker; a larger size prefix means a broken stream.
pub const RESPONSE_SIZE_BYTES_MAX: usize = 128 * 1024 * 1024;

/// How long to wait for a TCP connection to a broker.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// Broker-side timeout sent with admin and produce requests.
pub const REQUEST_TIMEOUT_MS: i32 = 30_000;

/// Socket read/write timeout: the broker-side timeout plus slack for the network.
pub const SOCKET_TIMEOUT_MS: u64 = REQUEST_TIMEOUT_MS as u64 + 15_000;

/// Connections the client keeps open at once (bootstrap excluded).
pub const BROKER_CONNECTION_COUNT_MAX: usize = 64;

/// Metadata requests made while waiting for a topic's leaders to be elected.
pub const METADATA_ATTEMPT_COUNT_MAX: u32 = 20;

/// Pause between two such metadata requests.
pub const METADATA_RETRY_BACKOFF_MS: u64 = 250;

/// Attempts to produce one batch when the broker answers with a retriable error.
pub const PRODUCE_ATTEMPT_COUNT_MAX: u32 = 5;

/// A batch is sent once its records reach this many bytes (Kafka's `batch.size` default).
pub const BATCH_SIZE_BYTES_MAX: usize = 16 * 1024;

/// A batch is sent once it holds this many records.
pub const BATCH_RECORD_COUNT_MAX: usize = 1000;

/// Longest input line the producer accepts, terminator excluded.
pub const LINE_SIZE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Lines read from stdin but not yet batched (bounds the reader thread's queue).
pub const PENDING_LINE_COUNT_MAX: usize = 4 * BATCH_RECORD_COUNT_MAX;

/// How long the producer waits for more input before sending what it has.
pub const LINGER_MS: u64 = 5;

/// Longest time the broker may hold a fetch waiting for data.
pub const FETCH_WAIT_MS_MAX: i32 = 500;

/// Fetch response size asked of the broker (Kafka's `fetch.max.bytes` default).
pub const FETCH_SIZE_BYTES_MAX: i32 = 50 * 1024 * 1024;

/// Per-partition fetch size to start with (Kafka's `max.partition.fetch.bytes` default).
pub const PARTITION_FETCH_SIZE_BYTES: i32 = 1024 * 1024;

/// Per-partition fetch size grown to when a single batch does not fit.
pub const PARTITION_FETCH_SIZE_BYTES_MAX: i32 = FETCH_SIZE_BYTES_MAX;

const _: () = assert!(PARTITION_FETCH_SIZE_BYTES <= PARTITION_FETCH_SIZE_BYTES_MAX);
const _: () = assert!(PARTITION_FETCH_SIZE_BYTES_MAX <= FETCH_SIZE_BYTES_MAX);
// A full fetch response, with its per-partition framing, must fit in one accepted frame.
const _: () = assert!(2 * (FETCH_SIZE_BYTES_MAX as usize) <= RESPONSE_SIZE_BYTES_MAX);
const _: () = assert!(LINE_SIZE_BYTES_MAX < RESPONSE_SIZE_BYTES_MAX);
const _: () = assert!(SOCKET_TIMEOUT_MS > REQUEST_TIMEOUT_MS as u64);
const _: () = assert!(SOCKET_TIMEOUT_MS > FETCH_WAIT_MS_MAX as u64);
