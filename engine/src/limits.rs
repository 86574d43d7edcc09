//! Every queue, buffer and loop in the engine has a limit; the limits live here, together, with
//! compile-time checks of how they relate.

/// Alignment of every O_DIRECT write: a whole logical block, whatever the device's sector size.
pub const DMA_ALIGNMENT_BYTES: u64 = 4096;

/// Largest single DMA write the appender issues; bigger appends are split. DESIGN.md: DMA appends
/// reach the disk's limit with 1 MiB buffers.
pub const DMA_WRITE_BYTES_MAX: usize = 1024 * 1024;
/// A busy active segment (at least `SEGMENT_FILL_FROM_BYTES` of data) keeps this much written
/// (zeros) ahead of its data, one chunk at a time from a background task: see
/// `Segment::fill_ahead`.
pub const SEGMENT_FILL_AHEAD_BYTES: u64 = 4 * 1024 * 1024;
pub const SEGMENT_FILL_CHUNK_BYTES: usize = DMA_WRITE_BYTES_MAX;
pub const SEGMENT_FILL_FROM_BYTES: u64 = 1024 * 1024;
/// An acks=1 segment reserves this much past its data at a time: see `Segment::reserve_ahead`.
pub const SEGMENT_RESERVE_CHUNK_BYTES: u64 = 8 * 1024 * 1024;

/// Registered io_uring memory per shard. RLIMIT_MEMLOCK on our hosts is 8 MiB and glommio refuses to
/// start below 512 KiB; buffers beyond this come from the heap (still aligned).
pub const IO_MEMORY_BYTES_PER_SHARD: usize = 1024 * 1024;

/// Size of a RecordBatch v2 header (baseOffset .. recordsCount).
pub const BATCH_HEADER_BYTES: usize = 61;

/// Bytes in front of every batch that its `batchLength` field does not count.
pub const BATCH_LOG_OVERHEAD_BYTES: usize = 12;

/// A batch may never be larger than this, whatever max.message.bytes says.
pub const BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Records of one compressed batch, decompressed: a batch claiming more is refused (INVALID_RECORD)
/// instead of being inflated (a 109-byte snappy batch can claim gigabytes).
pub const BATCH_DECOMPRESSED_BYTES_MAX: usize = 128 * 1024 * 1024;

/// One offset-index entry every this many bytes of log (Kafka's index.interval.bytes default).
pub const INDEX_INTERVAL_BYTES: u64 = 4096;

/// Offset-index entries per segment before the segment is rolled regardless of its size.
pub const INDEX_ENTRIES_MAX: usize = 1024 * 1024;

/// Segments per partition before the log refuses to roll further (retention must delete first).
pub const SEGMENTS_PER_PARTITION_MAX: usize = 100_000;

/// Pending (not yet written) bytes per partition before producers wait for the flusher.
pub const PENDING_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Capacity of each shard-to-shard channel, in messages (each message carries a whole request part).
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

/// Largest number of shards a broker runs.
pub const SHARDS_MAX: usize = 256;

/// Named tasks one shard's registry holds at once (`tasks::TaskRegistry`): the maintenance loops
/// and a few one-shot jobs, never one per partition or connection.
pub const TASKS_PER_SHARD_MAX: usize = 64;

/// Largest segment file; positions are stored as u32 in the offset index.
pub const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64;

/// Memory for one pass's offset map (key → latest offset of the dirty part) per shard; Kafka's
/// log.cleaner.dedupe.buffer.size is 128 MiB for all cleaner threads. A pass whose map fills up
/// cleans up to the segment where it filled (the limit is checked per segment, so one segment's
/// keys may go past it).
pub const CLEANER_OFFSET_MAP_BYTES_MAX: usize = 64 * 1024 * 1024;

/// What one offset-map entry costs besides its key bytes (hash table slot, `Bytes`, offset).
pub const CLEANER_OFFSET_MAP_ENTRY_BYTES: usize = 64;

/// The cleaner reads closed segments in chunks of this size (a larger batch is read whole).
pub const CLEANER_READ_BYTES: usize = 1024 * 1024;

/// The cleaner writes a cleaned segment in appends of about this size.
pub const CLEANER_WRITE_BYTES: usize = DMA_WRITE_BYTES_MAX;

const _: () = assert!(CLEANER_READ_BYTES >= BATCH_HEADER_BYTES);
const _: () = assert!(CLEANER_OFFSET_MAP_BYTES_MAX >= 1024 * CLEANER_OFFSET_MAP_ENTRY_BYTES);
/// Batches remembered per idempotent producer for duplicate detection (Kafka's
/// `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`; clients keep at most 5 requests in flight).
pub const PRODUCER_BATCHES_RETAINED: usize = 5;

/// Producers remembered per partition; past it the least recently active one is forgotten (it
/// is then accepted at any sequence, KIP-360). Expiry normally keeps the count far below.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 200_000;

/// Producer state snapshots (`<offset>.snapshot`) kept per partition.
pub const PRODUCER_SNAPSHOTS_RETAINED: usize = 2;

/// Aborted transactions returned with one read_committed read. A read overlaps at most one per
/// abort marker inside it (each marker takes 78 bytes of the read) plus one per producer with a
/// transaction open across the whole read; past this a warning is logged and the list is cut
/// (a client could then see records of the transactions left out).
pub const ABORTED_TXNS_PER_READ_MAX: usize = 256 * 1024;

const _: () = assert!((DMA_WRITE_BYTES_MAX as u64).is_multiple_of(DMA_ALIGNMENT_BYTES));
const _: () = assert!((SEGMENT_FILL_CHUNK_BYTES as u64).is_multiple_of(DMA_ALIGNMENT_BYTES));
const _: () = assert!(SEGMENT_FILL_AHEAD_BYTES >= 2 * SEGMENT_FILL_CHUNK_BYTES as u64);
const _: () = assert!(BATCH_BYTES_MAX <= DMA_WRITE_BYTES_MAX * 64);
const _: () = assert!(BATCH_HEADER_BYTES > BATCH_LOG_OVERHEAD_BYTES);
const _: () = assert!(IO_MEMORY_BYTES_PER_SHARD >= 512 * 1024);
const _: () = assert!(PENDING_BYTES_MAX >= BATCH_BYTES_MAX / 2);
const _: () = assert!(PRODUCER_BATCHES_RETAINED >= 1 && PRODUCER_BATCHES_RETAINED <= u8::MAX as usize);
const _: () = assert!(PRODUCER_SNAPSHOTS_RETAINED >= 1);
const _: () = assert!(PRODUCERS_PER_PARTITION_MAX <= u32::MAX as usize);
const _: () = assert!(ABORTED_TXNS_PER_READ_MAX >= PRODUCERS_PER_PARTITION_MAX + DMA_WRITE_BYTES_MAX / 78);
