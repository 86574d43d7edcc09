//! One segment: a file of RecordBatch v2 bytes exactly as produced (after offset assignment),
//! appended through aligned O_DIRECT writes, read back through a buffered descriptor (header walks,
//! sendfile), with its sparse offset and time indexes. Both descriptors are opened on demand within
//! the shard's budget and closed when idle ones must make room (`files`).
//!
//! ```text
//!            aligned block      aligned block      aligned block
//!  file:  |==================|==================|=======.........|
//!         batch | batch | batch | batch ...     | batch |  zero padding (until sealed)
//!                                               ^ tail: the partial last block, kept in memory
//!                                                 and rewritten in front of the next append
//! ```
//! `size_bytes` is the logical end. The padding past it exists only in the active segment, which
//! a busy acks=all partition also fills with zeros ahead of its appends, from a background task
//! (`WriteAhead`, see [`Segment::fill_ahead`]), and a busy acks=1 partition reserves
//! (fallocate, read as zeros; [`Segment::reserve_ahead`]); sealing truncates the file to its
//! logical size, and recovery cuts at the first torn or corrupt batch (zeros past the data are
//! padding).
//!
//! ```text
//!  file:  |== data ==|pad|0000 written ahead 0000|0000 task in flight 0000|
//!                    ^ size_bytes                ^ in_flight_from         ^ allocated when done
//!  an append whose aligned end passes in_flight_from waits for the task first
//! ```

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{self, BatchHeader};
use crate::error::{LogError, LogResult};
use crate::files::SegmentFiles;
use crate::index::SegmentIndex;
use crate::limits::{
    BATCH_BYTES_MAX, BATCH_HEADER_BYTES, DMA_ALIGNMENT_BYTES, INDEX_INTERVAL_BYTES, SEGMENT_FILL_AHEAD_BYTES,
    SEGMENT_FILL_CHUNK_BYTES, SEGMENT_FILL_FROM_BYTES, SEGMENT_RESERVE_CHUNK_BYTES,
};
use crate::rt::{self, DmaFile, Notify};

pub const LOG_SUFFIX: &str = "log";
pub const INDEX_SUFFIX: &str = "index";

/// File name of the segment starting at `base_offset`: 20 digits, as Kafka names them.
pub fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}

/// The offsets of the files in `dir` named `<offset>.<suffix>`, ascending (none if `dir` cannot
/// be read).
pub fn list_offsets(dir: &std::path::Path, suffix: &str) -> Vec<i64> {
    let suffix = format!(".{suffix}");
    let mut offsets: Vec<i64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.strip_suffix(&suffix)?.parse::<i64>().ok())
        .collect();
    offsets.sort_unstable();
    offsets
}

/// A byte range of a segment file to be sent with sendfile(2). Send: it travels to the shard that
/// holds the connection, and keeps the file open even if the segment is deleted meanwhile.
#[derive(Debug, Clone)]
pub struct FileSlice {
    pub file: Arc<File>,
    pub position: u64,
    pub length: usize,
    /// Length of the whole batch the slice starts with: a response budget may shorten the slice
    /// (KIP-74), never below this unless it drops the slice.
    pub first_batch_bytes: usize,
}

/// What recovery found in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub valid_bytes: u64,
    pub truncated_bytes: u64,
    pub batches: usize,
}

/// What lies past the data of the active segment (zeros written ahead, or space reserved),
/// shared with the background task writing or reserving it.
#[derive(Default)]
struct WriteAhead {
    /// The file's size on disk: at least the aligned end of the data, more once written ahead.
    allocated_bytes: Cell<u64>,
    /// The file's size once space past `allocated_bytes` is reserved (unwritten extents, read as
    /// zeros; see [`Segment::reserve_ahead`]); at most `allocated_bytes` otherwise.
    reserved_bytes: Cell<u64>,
    /// Where the task's write starts while it runs: no append may reach past it meanwhile
    /// (`u64::MAX` while a reservation runs: no append waits for one).
    in_flight_from: Cell<Option<u64>>,
    done: Rc<Notify>,
}

impl WriteAhead {
    /// The file was cut (or found) at `size_bytes`: nothing is written or reserved past it.
    fn set_file_size(&self, size_bytes: u64) {
        self.allocated_bytes.set(size_bytes);
        self.reserved_bytes.set(size_bytes);
    }
}

/// A segment of one partition's log. Lives on the shard that owns the partition.
pub struct Segment {
    pub base_offset: i64,
    path: PathBuf,
    index_path: PathBuf,
    files: Rc<SegmentFiles>,
    size_bytes: Cell<u64>,
    /// Whether appends or a cut happened since the last fdatasync.
    unsynced: Cell<bool>,
    ahead: Rc<WriteAhead>,
    /// The partial last block (see the diagram), read on the first append after opening:
    /// sealed and idle segments hold none.
    tail: RefCell<Option<Vec<u8>>>,
    index: RefCell<SegmentIndex>,
    bytes_since_index: Cell<u64>,
    /// Offset after the last batch in this segment (base_offset when empty).
    next_offset: Cell<i64>,
    max_timestamp_ms: Cell<i64>,
    pub created_at_ms: i64,
}

impl Segment {
    /// Creates an empty segment file.
    pub async fn create(dir: &Path, base_offset: i64, now_ms: i64) -> LogResult<Segment> {
        let path = dir.join(file_name(base_offset, LOG_SUFFIX));
        if path.exists() {
            crate::fs::remove_file(&path).map_err(|error| LogError::io(&path, error))?;
        }
        let index_path = dir.join(file_name(base_offset, INDEX_SUFFIX));
        let segment = Segment::open_files(path, index_path, base_offset, now_ms);
        // Creates the file. Its name must be durable before any append to it is acknowledged as
        // synced: a file's fdatasync does not cover its directory entry (POSIX; the simulated disk
        // keeps exactly that).
        segment.writer().await?;
        let synced = dir.to_path_buf();
        crate::fs::off_shard(move || crate::fs::sync_dir(&synced)).await.map_err(|error| LogError::io(dir, error))?;
        Ok(segment)
    }

    /// Creates an empty segment for offsets from `base_offset` under other file names (the
    /// cleaner writes `.cleaned` files, renamed later: see [`Segment::set_paths`]).
    pub async fn create_at(log_path: PathBuf, index_path: PathBuf, base_offset: i64, now_ms: i64) -> LogResult<Segment> {
        for path in [&log_path, &index_path] {
            match crate::fs::remove_file(path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(LogError::io(path, error)),
                _ => {}
            }
        }
        let segment = Segment::open_files(log_path, index_path, base_offset, now_ms);
        segment.writer().await?; // creates the file
        Ok(segment)
    }

    /// Records that the segment's files were renamed (open descriptors follow the inode).
    pub fn set_paths(&mut self, log_path: PathBuf, index_path: PathBuf) {
        self.files.set_path(log_path.clone());
        self.path = log_path;
        self.index_path = index_path;
    }

    /// The segment of the file at `path`, its descriptors not opened yet.
    fn open_files(path: PathBuf, index_path: PathBuf, base_offset: i64, created_at_ms: i64) -> Segment {
        Segment {
            base_offset,
            index_path,
            files: SegmentFiles::new(path.clone()),
            path,
            size_bytes: Cell::new(0),
            unsynced: Cell::new(false),
            ahead: Rc::new(WriteAhead::default()),
            tail: RefCell::new(Some(Vec::new())),
            index: RefCell::new(SegmentIndex::default()),
            bytes_since_index: Cell::new(u64::MAX),
            next_offset: Cell::new(base_offset),
            max_timestamp_ms: Cell::new(-1),
            created_at_ms,
        }
    }

    /// The buffered descriptor (opened if the budget closed it).
    fn reader_file(&self) -> LogResult<Arc<File>> {
        self.files.reader().map_err(|error| LogError::io(&self.path, error))
    }

    /// The O_DIRECT descriptor (opened, or created, if needed).
    async fn writer(&self) -> LogResult<DmaFile> {
        self.files.writer().await.map_err(|error| LogError::io(&self.path, error))
    }

    /// Opens an existing segment. Sealed segments trust a stored index that covers them exactly;
    /// the last segment is CRC-checked from `verify_from_position` and cut at the first bad batch.
    pub async fn open(
        dir: &Path,
        base_offset: i64,
        is_last: bool,
        verify_from_position: u64,
    ) -> LogResult<(Segment, RecoveryReport)> {
        let path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let metadata = std::fs::metadata(&path).map_err(|error| LogError::io(&path, error))?;
        let modified_ms = metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|duration| duration.as_millis() as i64)
            .unwrap_or(0);
        let file_bytes = metadata.len();
        let index_path = dir.join(file_name(base_offset, INDEX_SUFFIX));
        let segment = Segment::open_files(path.clone(), index_path, base_offset, modified_ms);
        if !is_last {
            if let Some(index) = SegmentIndex::load(&segment.index_path, file_bytes) {
                segment.adopt_stored_index(index, file_bytes)?;
                segment.ahead.set_file_size(file_bytes);
                segment.forget_tail();
                let report = RecoveryReport { valid_bytes: file_bytes, truncated_bytes: 0, batches: 0 };
                return Ok((segment, report));
            }
        }
        let verify_from = if is_last { verify_from_position } else { file_bytes };
        let report = segment.rebuild(file_bytes, verify_from)?;
        if report.truncated_bytes > 0 {
            if segment.is_zero_padding(report.valid_bytes, file_bytes) {
                tracing::debug!(segment = %path.display(), bytes = report.truncated_bytes, "cut the zero padding of an unclean stop");
            } else {
                tracing::warn!(
                    segment = %path.display(),
                    valid_bytes = report.valid_bytes,
                    truncated_bytes = report.truncated_bytes,
                    "recovery cut a torn or corrupt tail"
                );
            }
            let writer = segment.writer().await?;
            writer.truncate(report.valid_bytes).await.map_err(|error| LogError::io(&path, error))?;
            writer.fdatasync().await.map_err(|error| LogError::io(&path, error))?;
        }
        segment.ahead.set_file_size(segment.size_bytes.get());
        segment.forget_tail();
        Ok((segment, report))
    }

    fn adopt_stored_index(&self, index: SegmentIndex, file_bytes: u64) -> LogResult<()> {
        self.size_bytes.set(file_bytes);
        // The next offset is the end of the last batch: walk from the last index entry.
        let mut position = index.offsets.last().map(|entry| entry.position as u64).unwrap_or(0);
        let mut next_offset = self.base_offset;
        while position < file_bytes {
            let header = self
                .read_header(position)?
                .ok_or_else(|| LogError::io(&self.path, std::io::Error::other("stored index points past a valid batch")))?;
            next_offset = header.next_offset();
            self.max_timestamp_ms.set(self.max_timestamp_ms.get().max(header.max_timestamp));
            position += header.size_bytes as u64;
        }
        if let Some(last) = index.times.last() {
            self.max_timestamp_ms.set(self.max_timestamp_ms.get().max(last.timestamp_ms));
        }
        self.next_offset.set(next_offset);
        *self.index.borrow_mut() = index;
        Ok(())
    }

    /// Walks every batch header, rebuilding the indexes; verifies CRCs from `verify_from`.
    fn rebuild(&self, file_bytes: u64, verify_from: u64) -> LogResult<RecoveryReport> {
        let mut position = 0u64;
        let mut batches = 0usize;
        let mut buffer = Vec::new();
        while position + BATCH_HEADER_BYTES as u64 <= file_bytes {
            let Some(mut header) = self.read_header(position)? else { break };
            if header.size_bytes > BATCH_BYTES_MAX || position + header.size_bytes as u64 > file_bytes {
                break;
            }
            if header.base_offset < self.next_offset.get() && batches > 0 {
                break; // offsets must increase; anything else is garbage
            }
            // Offsets outside what this segment can index (relative offsets are u32) are garbage
            // too: the base offset is not covered by the CRC.
            let relative_end = header.last_offset().checked_sub(self.base_offset);
            if header.base_offset < self.base_offset || relative_end.is_none_or(|end| end >= i64::from(u32::MAX)) {
                break;
            }
            let verified = position + header.size_bytes as u64 > verify_from;
            // A max timestamp below the base timestamp cannot be what the records say: an older
            // Fjord stored what the producer sent (-1 from older clients). The index is built
            // from what the records say; batches read anyway are checked the same way.
            let suspect = header.max_timestamp < header.base_timestamp;
            if verified || suspect {
                buffer.resize(header.size_bytes, 0);
                self.reader_file()?.read_exact_at(&mut buffer, position).map_err(|error| LogError::io(&self.path, error))?;
                if verified && batch::validate_stored(&buffer).is_err() {
                    break;
                }
                if !header.is_log_append_time() && !header.is_control() {
                    if let Ok(summary) = batch::summarize_records(&buffer, &header) {
                        header.max_timestamp = summary.max_timestamp;
                    }
                }
            }
            self.note_batch(&header, position);
            position += header.size_bytes as u64;
            batches += 1;
        }
        self.size_bytes.set(position);
        Ok(RecoveryReport { valid_bytes: position, truncated_bytes: file_bytes - position, batches })
    }

    /// Whether `[from, to)` holds only zeros: the padding of the last aligned write, then the
    /// preallocated space. Only the first write's length is read: data writes go one at a time, so a
    /// torn one lies within that much of the data's end, and preallocated space reads as zeros.
    fn is_zero_padding(&self, from: u64, to: u64) -> bool {
        let to = to.min(from + crate::limits::DMA_WRITE_BYTES_MAX as u64);
        let mut bytes = vec![0u8; (to - from) as usize];
        self.reader_file().is_ok_and(|reader| reader.read_exact_at(&mut bytes, from).is_ok())
            && bytes.iter().all(|byte| *byte == 0)
    }

    /// The size changed under the tail (open, truncation): the next append reads it again.
    fn forget_tail(&self) {
        *self.tail.borrow_mut() = None;
    }

    fn load_tail(&self) -> LogResult<()> {
        let size = self.size_bytes.get();
        let aligned = size - size % DMA_ALIGNMENT_BYTES;
        let mut tail = vec![0u8; (size - aligned) as usize];
        if !tail.is_empty() {
            self.reader_file()?.read_exact_at(&mut tail, aligned).map_err(|error| LogError::io(&self.path, error))?;
        }
        *self.tail.borrow_mut() = Some(tail);
        Ok(())
    }

    /// Reads the header of the batch at `position`; `None` if it is not a plausible v2 header.
    pub fn read_header(&self, position: u64) -> LogResult<Option<BatchHeader>> {
        self.read_header_from(&*self.reader_file()?, position)
    }

    fn read_header_from(&self, reader: &File, position: u64) -> LogResult<Option<BatchHeader>> {
        let mut header = [0u8; BATCH_HEADER_BYTES];
        match reader.read_exact_at(&mut header, position) {
            Ok(()) => Ok(BatchHeader::parse(&header).ok()),
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(error) => Err(LogError::io(&self.path, error)),
        }
    }

    /// Reads `length` bytes at `position` (a whole batch whose header was read).
    pub fn read_bytes(&self, position: u64, length: usize) -> LogResult<Vec<u8>> {
        let mut bytes = vec![0u8; length];
        self.reader_file()?.read_exact_at(&mut bytes, position).map_err(|error| LogError::io(&self.path, error))?;
        Ok(bytes)
    }

    fn note_batch(&self, header: &BatchHeader, position: u64) {
        let relative_offset = (header.base_offset - self.base_offset) as u32;
        let since = self.bytes_since_index.get();
        if since >= INDEX_INTERVAL_BYTES {
            self.index.borrow_mut().push_offset(relative_offset, position as u32);
            self.bytes_since_index.set(0);
        }
        self.bytes_since_index.set(self.bytes_since_index.get().saturating_add(header.size_bytes as u64));
        self.index.borrow_mut().push_time(header.max_timestamp, (header.last_offset() - self.base_offset) as u32);
        self.next_offset.set(header.next_offset());
        self.max_timestamp_ms.set(self.max_timestamp_ms.get().max(header.max_timestamp));
    }

    /// Appends whole, validated, offset-assigned batches with one aligned O_DIRECT write.
    /// Not durable until [`Segment::sync`].
    pub async fn append(&self, batches: &[Bytes]) -> LogResult<()> {
        let total: usize = batches.iter().map(Bytes::len).sum();
        if total == 0 {
            return Ok(());
        }
        let start = self.size_bytes.get();
        if self.tail.borrow().is_none() {
            self.load_tail()?;
        }
        let tail_len = self.tail.borrow().as_ref().map_or(0, Vec::len);
        let aligned_start = start - tail_len as u64;
        let buffer_len = round_up(tail_len + total, DMA_ALIGNMENT_BYTES as usize);
        if self.ahead.in_flight_from.get().is_some_and(|from| aligned_start + buffer_len as u64 > from) {
            self.wait_write_ahead().await;
        }
        let writer = self.writer().await?;
        let mut buffer = writer.alloc_buffer(buffer_len);
        {
            let bytes = buffer.as_bytes_mut();
            let mut tail = self.tail.borrow_mut();
            let tail = tail.get_or_insert_with(Vec::new);
            bytes[..tail_len].copy_from_slice(tail);
            let mut at = tail_len;
            for batch in batches {
                bytes[at..at + batch.len()].copy_from_slice(batch);
                at += batch.len();
            }
            bytes[at..].fill(0);
            let new_tail_start = (tail_len + total) - (tail_len + total) % DMA_ALIGNMENT_BYTES as usize;
            tail.clear();
            tail.extend_from_slice(&bytes[new_tail_start..tail_len + total]);
        }
        self.unsynced.set(true);
        let written = writer.write_at(buffer, aligned_start).await.map_err(|error| LogError::io(&self.path, error))?;
        self.ahead.allocated_bytes.set(self.ahead.allocated_bytes.get().max(aligned_start + buffer_len as u64));
        if written < buffer_len {
            return Err(LogError::io(&self.path, std::io::Error::new(std::io::ErrorKind::WriteZero, "short DMA write")));
        }
        let mut position = start;
        for batch in batches {
            let header = BatchHeader::parse(batch).expect("appended batches were validated");
            self.note_batch(&header, position);
            position += batch.len() as u64;
        }
        self.size_bytes.set(position);
        Ok(())
    }

    /// Starts writing one chunk of zeros past the data when a busy segment has less than
    /// [`SEGMENT_FILL_AHEAD_BYTES`] written ahead of its end, so that later appends overwrite
    /// written blocks: such a write is issued inline by io_uring and its fdatasync has no
    /// allocation to commit, where a write that extends the file goes to a kernel worker thread
    /// and its fdatasync commits the new size and extents. (fallocate is no help for acks=all: it
    /// leaves unwritten extents that each write converts and each fdatasync commits; measured
    /// slower. acks=1 reserves that way: [`Segment::reserve_ahead`].)
    /// A background task writes the chunk, so the appends queued behind it do not wait for it;
    /// an append that would reach the chunk in flight waits for the task. The new size is
    /// committed by the next acks=all fdatasync (a task writing 4 MiB at a time and committing it
    /// with its own fdatasync was measured worse). A failed write (a full disk) only costs speed:
    /// appends then extend the file and report the real error.
    pub fn fill_ahead(&self) {
        let size = self.size_bytes.get();
        let allocated = self.ahead.allocated_bytes.get();
        if !self.wants_more_ahead(allocated) {
            return;
        }
        let from = allocated.max(size.div_ceil(DMA_ALIGNMENT_BYTES) * DMA_ALIGNMENT_BYTES);
        let to = from + SEGMENT_FILL_CHUNK_BYTES as u64;
        self.ahead.in_flight_from.set(Some(from));
        rt::spawn_detached(write_ahead(Rc::clone(&self.files), Rc::clone(&self.ahead), self.path.clone(), from, to));
    }

    /// Starts reserving space past the data (fallocate: unwritten extents, the file's size set past
    /// them) when a busy segment has less than [`SEGMENT_FILL_AHEAD_BYTES`] reserved or written
    /// ahead of its end. An append into reserved space does not extend the file, so ext4 neither
    /// journals a new size for it nor makes the io_uring worker that issues it wait for the device.
    /// For acks=1, which has no fdatasync to pay for converting the unwritten extents (acks=all
    /// writes zeros instead, see [`Segment::fill_ahead`]). A failure (a full disk) only costs speed.
    pub fn reserve_ahead(&self) {
        if !self.wants_more_ahead(self.ahead.reserved_bytes.get().max(self.ahead.allocated_bytes.get())) {
            return;
        }
        let to = (self.size_bytes.get() + SEGMENT_RESERVE_CHUNK_BYTES).div_ceil(DMA_ALIGNMENT_BYTES) * DMA_ALIGNMENT_BYTES;
        // No append waits for a reservation (fallocate never changes written data); closing does.
        self.ahead.in_flight_from.set(Some(u64::MAX));
        rt::spawn_detached(reserve_ahead(Rc::clone(&self.files), Rc::clone(&self.ahead), self.path.clone(), to));
    }

    /// Whether a busy segment (at least [`SEGMENT_FILL_FROM_BYTES`] of data) whose file is ready
    /// up to `ahead_end` should start another write-ahead or reservation: none runs, and less than
    /// [`SEGMENT_FILL_AHEAD_BYTES`] lies ready past the data.
    fn wants_more_ahead(&self, ahead_end: u64) -> bool {
        let size = self.size_bytes.get();
        self.ahead.in_flight_from.get().is_none()
            && size >= SEGMENT_FILL_FROM_BYTES
            && ahead_end < size + SEGMENT_FILL_AHEAD_BYTES
    }

    /// Waits until no write-ahead task runs (it holds the file and writes past the data).
    async fn wait_write_ahead(&self) {
        while self.ahead.in_flight_from.get().is_some() {
            self.ahead.done.notified().await;
        }
    }

    pub async fn sync(&self) -> LogResult<()> {
        // Cleared first: an append completing during the fdatasync sets it again.
        let was_unsynced = self.unsynced.replace(false);
        let synced = self.writer().await?.fdatasync().await.map_err(|error| LogError::io(&self.path, error));
        if synced.is_err() {
            self.unsynced.set(was_unsynced);
        }
        synced
    }

    /// Makes a segment that will take no more appends exact on disk: data synced, padding cut,
    /// index stored.
    pub async fn seal(&self) -> LogResult<()> {
        self.wait_write_ahead().await;
        self.sync().await?;
        let size = self.size_bytes.get();
        self.writer().await?.truncate(size).await.map_err(|error| LogError::io(&self.path, error))?;
        self.ahead.set_file_size(size);
        self.store_index(size).await
    }

    /// Writes the index covering `size` bytes durably, off the shard.
    async fn store_index(&self, size: u64) -> LogResult<()> {
        let encoded = self.index.borrow().encode(size);
        let path = self.index_path.clone();
        crate::fs::off_shard(move || crate::fs::write_durably(&path, &encoded))
            .await
            .map_err(|error| LogError::io(&self.index_path, error))
    }

    /// Cuts the segment so it ends before the batch containing `offset` (truncation for
    /// replication). Returns the new next offset.
    pub async fn truncate_to_offset(&self, offset: i64) -> LogResult<i64> {
        let position = self.position_of_batch_starting_at_or_after(offset)?;
        let relative = (offset.max(self.base_offset) - self.base_offset) as u32;
        self.wait_write_ahead().await;
        let writer = self.writer().await?;
        writer.truncate(position).await.map_err(|error| LogError::io(&self.path, error))?;
        writer.fdatasync().await.map_err(|error| LogError::io(&self.path, error))?;
        self.size_bytes.set(position);
        self.ahead.set_file_size(position);
        self.index.borrow_mut().truncate_to_position(position as u32, relative);
        self.max_timestamp_ms.set(self.index.borrow().times.last().map_or(-1, |entry| entry.timestamp_ms));
        self.bytes_since_index.set(u64::MAX);
        // Recompute next offset by walking from the last index entry.
        let mut walk = self.index.borrow().offsets.last().map(|entry| entry.position as u64).unwrap_or(0);
        let mut next_offset = self.base_offset;
        while walk < position {
            let Some(header) = self.read_header(walk)? else { break };
            next_offset = header.next_offset();
            walk += header.size_bytes as u64;
        }
        self.next_offset.set(next_offset);
        self.forget_tail();
        let _ = crate::fs::remove_file(&self.index_path);
        Ok(next_offset)
    }

    /// Byte position where the batches below `offset` end: reads stop there (the high watermark).
    pub fn end_position_before(&self, offset: i64) -> LogResult<u64> {
        if self.next_offset.get() <= offset {
            return Ok(self.size_bytes.get());
        }
        self.position_of_batch_starting_at_or_after(offset)
    }

    /// Byte position of the batch holding `offset` (or the first after it), or the end.
    pub(crate) fn position_of_batch_starting_at_or_after(&self, offset: i64) -> LogResult<u64> {
        let size = self.size_bytes.get();
        let relative = (offset.max(self.base_offset) - self.base_offset) as u32;
        let mut position = self.index.borrow().position_floor(relative) as u64;
        while position < size {
            let Some(header) = self.read_header(position)? else { break };
            if header.last_offset() >= offset {
                return Ok(position);
            }
            position += header.size_bytes as u64;
        }
        Ok(size)
    }

    /// Finds the batch containing `offset` and returns a slice from its start of at most
    /// `max_bytes` (but always the whole first batch, as Kafka does), ending before `end_position`.
    pub fn read_from(&self, offset: i64, max_bytes: usize, end_position: u64) -> LogResult<Option<FileSlice>> {
        let relative = (offset.max(self.base_offset) - self.base_offset) as u32;
        let mut position = self.index.borrow().position_floor(relative) as u64;
        if position >= end_position {
            return Ok(None);
        }
        // Within the budget only: a large response would otherwise hold one descriptor per
        // partition until it is sent.
        let Some(file) = self.files.reader_for_fetch().map_err(|error| LogError::io(&self.path, error))? else {
            return Err(LogError::DescriptorsBusy);
        };
        while position < end_position {
            let Some(header) = self.read_header_from(&file, position)? else { return Ok(None) };
            if header.last_offset() >= offset {
                let available = (end_position - position) as usize;
                let length = available.min(max_bytes.max(header.size_bytes));
                let first_batch_bytes = header.size_bytes.min(length);
                return Ok(Some(FileSlice { file, position, length, first_batch_bytes }));
            }
            position += header.size_bytes as u64;
        }
        Ok(None)
    }

    /// Offset and timestamp of the first record whose timestamp is >= `timestamp_ms`.
    pub fn find_by_timestamp(&self, timestamp_ms: i64) -> LogResult<Option<(i64, i64)>> {
        if self.max_timestamp_ms.get() < timestamp_ms {
            return Ok(None);
        }
        let relative = self.index.borrow().time_floor(timestamp_ms);
        let mut position = self.index.borrow().position_floor(relative) as u64;
        let size = self.size_bytes.get();
        while position < size {
            let Some(header) = self.read_header(position)? else { break };
            // A header whose max timestamp is below its base one was stored by an older Fjord
            // as the producer sent it: its records decide.
            if header.max_timestamp >= timestamp_ms || header.max_timestamp < header.base_timestamp {
                let records = self.record_timestamps_at(position, &header)?;
                if let Some(found) = records.into_iter().find(|(_, timestamp)| *timestamp >= timestamp_ms) {
                    return Ok(Some(found));
                }
            }
            position += header.size_bytes as u64;
        }
        Ok(None)
    }

    /// The record holding the largest timestamp of the segment (the first such record).
    pub fn max_timestamp(&self) -> LogResult<Option<(i64, i64)>> {
        let Some(entry) = self.index.borrow().times.last().copied() else { return Ok(None) };
        let target = self.base_offset + entry.relative_offset as i64;
        let mut position = self.index.borrow().position_floor(entry.relative_offset) as u64;
        let size = self.size_bytes.get();
        while position < size {
            let Some(header) = self.read_header(position)? else { break };
            if header.last_offset() >= target {
                let records = self.record_timestamps_at(position, &header)?;
                let best = records.iter().map(|(_, timestamp)| *timestamp).max();
                return Ok(best.and_then(|best| records.into_iter().find(|(_, timestamp)| *timestamp == best)));
            }
            position += header.size_bytes as u64;
        }
        Ok(None)
    }

    fn record_timestamps_at(&self, position: u64, header: &BatchHeader) -> LogResult<Vec<(i64, i64)>> {
        Ok(batch::record_timestamps(&self.read_bytes(position, header.size_bytes)?)?)
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.get()
    }
    pub fn next_offset(&self) -> i64 {
        self.next_offset.get()
    }
    pub fn max_timestamp_ms(&self) -> i64 {
        self.max_timestamp_ms.get()
    }
    pub fn index_entries(&self) -> usize {
        self.index.borrow().offsets.len()
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn index_path(&self) -> &Path {
        &self.index_path
    }
    /// The buffered read descriptor (blocking reads off the shard: `rt::spawn_blocking`), open
    /// while the returned handle lives.
    pub fn reader(&self) -> LogResult<Arc<File>> {
        self.reader_file()
    }

    /// Max timestamp of the first batch (max.compaction.lag.ms measures from it, as Kafka does).
    pub fn first_batch_max_timestamp_ms(&self) -> LogResult<Option<i64>> {
        if self.size_bytes.get() == 0 {
            return Ok(None);
        }
        Ok(self.read_header(0)?.map(|header| header.max_timestamp))
    }

    /// Removes the segment's files (retention, truncation, topic deletion).
    pub async fn delete(self) -> LogResult<()> {
        self.wait_write_ahead().await;
        let Segment { files, path, index_path, .. } = self;
        if let Some(writer) = files.take_writer() {
            let _ = writer.close().await;
        }
        files.release();
        crate::fs::remove_file(&path).map_err(|error| LogError::io(&path, error))?;
        let _ = crate::fs::remove_file(&index_path);
        Ok(())
    }

    /// Closes the segment, cutting the padding past its logical end so a clean restart finds an
    /// exact file.
    pub async fn close(self) -> LogResult<()> {
        self.wait_write_ahead().await;
        let size = self.size_bytes.get();
        let exact = self.ahead.allocated_bytes.get() <= size && self.ahead.reserved_bytes.get() <= size;
        if exact && !self.unsynced.get() {
            // Nothing to cut or sync (an idle segment whose descriptor may be closed already).
            self.files.release();
            return Ok(());
        }
        let writer = self.writer().await?;
        writer.truncate(size).await.map_err(|error| LogError::io(&self.path, error))?;
        writer.fdatasync().await.map_err(|error| LogError::io(&self.path, error))?;
        self.files.take_writer();
        self.files.release();
        writer.close().await.map_err(|error| LogError::io(&self.path, error))
    }
}

/// The write-ahead task (see [`Segment::fill_ahead`]): zeros from `from` until at least `to`.
/// Any failure ends it early. It holds the descriptor while it runs, so the budget keeps it open.
async fn write_ahead(files: Rc<SegmentFiles>, ahead: Rc<WriteAhead>, path: PathBuf, from: u64, to: u64) {
    match files.writer().await {
        Ok(dma) => {
            let mut position = from;
            while position < to {
                match dma.write_zeros_at(position).await {
                    Ok(0) => break,
                    Ok(written) => {
                        position += written as u64;
                        ahead.allocated_bytes.set(ahead.allocated_bytes.get().max(position));
                    }
                    Err(error) => {
                        tracing::debug!(segment = %path.display(), %error, "cannot write ahead; appends extend the file");
                        break;
                    }
                }
            }
        }
        Err(error) => tracing::debug!(segment = %path.display(), %error, "cannot write ahead; appends extend the file"),
    }
    ahead.in_flight_from.set(None);
    ahead.done.notify_all();
}

/// The reservation task (see [`Segment::reserve_ahead`]).
async fn reserve_ahead(files: Rc<SegmentFiles>, ahead: Rc<WriteAhead>, path: PathBuf, to: u64) {
    let reserved = match files.writer().await {
        Ok(dma) => dma.reserve(to).await,
        Err(error) => Err(error),
    };
    match reserved {
        Ok(()) => ahead.reserved_bytes.set(ahead.reserved_bytes.get().max(to)),
        Err(error) => tracing::debug!(segment = %path.display(), %error, "cannot reserve ahead; appends extend the file"),
    }
    ahead.in_flight_from.set(None);
    ahead.done.notify_all();
}

fn round_up(value: usize, alignment: usize) -> usize {
    value.div_ceil(alignment) * alignment
}
