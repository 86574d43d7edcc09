//! The shard's descriptor budget: segment files are opened on demand and closed least recently
//! used first, so the number of partitions is bounded by the disk, not by RLIMIT_NOFILE.
//!
//! ```text
//!  Segment ── Rc<SegmentFiles> ── reader: Option<Arc<File>>  buffered: header walks, sendfile
//!                              └─ writer: Option<DmaFile>    O_DIRECT appends, fdatasync
//!
//!  FileCache (one per shard thread): descriptors open, budget, and a queue of
//!    (tick of last use, Weak<SegmentFiles>), about oldest first. A use only stamps the handle;
//!    the eviction scan re-queues a handle whose stamp moved on (second chance), so a use costs
//!    no queue work and eviction is least recently used first, nearly.
//!    A descriptor is in use while a clone of it lives outside its handle (a write or fdatasync in
//!    flight, a FileSlice on its way to a socket): eviction never closes it.
//! ```
//!
//! Closing a segment's O_DIRECT descriptor loses nothing: its completed writes are the inode's,
//! and an fdatasync through the descriptor opened next commits them (Linux syncs per inode; the
//! simulated disk keeps the same rule per file name). The segment's group-commit state, tail block
//! and write-ahead bookkeeping live in the segment, not in the descriptor.
//!
//! Opening past the budget when every descriptor is in use is allowed for writers, recovery and
//! lookups (they are few at a time), and refused for fetch reads ([`SegmentFiles::reader_for_fetch`]),
//! which could otherwise hold one descriptor per partition of a large response: such a partition
//! returns no data this time and is served by a later fetch. An open that fails with EMFILE or
//! ENFILE closes every idle descriptor and tries again; a writer then waits for a descriptor
//! instead of failing (a failed append would poison the partition, and running out of descriptors
//! is not a storage fault).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::rt::{self, DmaFile};

/// Budget of a shard when none is configured (tests, tools).
pub const SHARD_FILES_MAX_DEFAULT: usize = 4096;

/// The least budget a shard accepts: the active segments of a few busy partitions.
pub const SHARD_FILES_MIN: usize = 16;

/// How long a writer waits between attempts to open while the process is out of descriptors.
const WRITER_RETRY_INTERVAL: Duration = Duration::from_millis(20);

/// Descriptors in use an open passes over before it gives up making room (unless the process ran
/// out of descriptors): with the budget held by descriptors in use, each deferred fetch would
/// otherwise walk the whole queue. Those passed over move to the back, so the next open looks at
/// others.
const EVICTION_BUSY_SCAN_MAX: usize = 256;

/// At most one warning about running out of descriptors per shard in this interval.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// What the cache has done so far on this shard (for /metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Descriptors held open by segment handles now.
    pub open: usize,
    /// The shard's budget.
    pub budget: usize,
    /// Uses that found the descriptor open.
    pub hits: u64,
    /// Descriptors opened (first use, or reopened after eviction).
    pub opens: u64,
    /// Descriptors closed to make room.
    pub evictions: u64,
    /// Fetch reads that found the budget spent by descriptors in use and returned no data.
    pub fetch_deferrals: u64,
    /// Opens that failed for want of descriptors in the process or the system (EMFILE/ENFILE).
    pub exhausted: u64,
}

struct FileCache {
    budget: Cell<usize>,
    open: Cell<usize>,
    tick: Cell<u64>,
    queue: RefCell<VecDeque<(u64, Weak<SegmentFiles>)>>,
    stats: Cell<FileStats>,
    warned_at: Cell<Option<Instant>>,
    suppressed_warnings: Cell<u64>,
}

thread_local! {
    /// One cache per shard thread (a shard's thread runs one executor for its whole life).
    static CACHE: FileCache = FileCache {
        budget: Cell::new(SHARD_FILES_MAX_DEFAULT),
        open: Cell::new(0),
        tick: Cell::new(0),
        queue: RefCell::new(VecDeque::new()),
        stats: Cell::new(FileStats::default()),
        warned_at: Cell::new(None),
        suppressed_warnings: Cell::new(0),
    };
}

/// Sets this shard's budget of segment descriptors (at shard start).
pub fn set_budget(files_max: usize) {
    CACHE.with(|cache| cache.budget.set(files_max.max(SHARD_FILES_MIN)));
}

/// This shard's counters.
pub fn stats() -> FileStats {
    CACHE.with(|cache| FileStats { open: cache.open.get(), budget: cache.budget.get(), ..cache.stats.get() })
}

fn count(update: impl FnOnce(&mut FileStats)) {
    CACHE.with(|cache| {
        let mut stats = cache.stats.get();
        update(&mut stats);
        cache.stats.set(stats);
    });
}

/// Whether an open failed because the process or the system has no descriptor left.
pub fn is_exhausted(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Warns (at most once per [`WARNING_INTERVAL`] per shard, with how many were held back) that
/// descriptors ran out, naming the limits to raise.
fn warn_exhausted(path: &Path, error: &io::Error) {
    CACHE.with(|cache| {
        let now = Instant::now();
        if cache.warned_at.get().is_some_and(|at| now.duration_since(at) < WARNING_INTERVAL) {
            cache.suppressed_warnings.set(cache.suppressed_warnings.get() + 1);
            return;
        }
        cache.warned_at.set(Some(now));
        let suppressed = cache.suppressed_warnings.replace(0);
        tracing::warn!(
            file = %path.display(),
            %error,
            budget = cache.budget.get(),
            open = cache.open.get(),
            suppressed,
            "out of file descriptors: raise the open-file limit (ulimit -n, LimitNOFILE) or lower \
             --open-segment-files-max; idle segment files are being closed"
        );
    });
}

/// The descriptors of one segment's file, opened on demand. Lives on the shard that owns the
/// segment.
pub struct SegmentFiles {
    path: RefCell<PathBuf>,
    reader: RefCell<Option<Arc<File>>>,
    writer: RefCell<Option<DmaFile>>,
    last_use: Cell<u64>,
    queued: Cell<bool>,
}

impl SegmentFiles {
    pub fn new(path: PathBuf) -> Rc<SegmentFiles> {
        Rc::new(SegmentFiles {
            path: RefCell::new(path),
            reader: RefCell::new(None),
            writer: RefCell::new(None),
            last_use: Cell::new(0),
            queued: Cell::new(false),
        })
    }

    /// The file was renamed: later opens use the new name (open descriptors follow the inode).
    pub fn set_path(&self, path: PathBuf) {
        *self.path.borrow_mut() = path;
    }

    pub fn path(&self) -> PathBuf {
        self.path.borrow().clone()
    }

    /// The buffered descriptor, opened if needed (past the budget if every descriptor is in use).
    pub fn reader(self: &Rc<Self>) -> io::Result<Arc<File>> {
        self.open_reader(false).map(|reader| reader.expect("opened past the budget when needed"))
    }

    /// The buffered descriptor for a fetch: `None` when it is closed and the budget is spent by
    /// descriptors in use (the fetch returns no data for this partition this time).
    pub fn reader_for_fetch(self: &Rc<Self>) -> io::Result<Option<Arc<File>>> {
        self.open_reader(true)
    }

    fn open_reader(self: &Rc<Self>, within_budget: bool) -> io::Result<Option<Arc<File>>> {
        self.touch();
        if let Some(reader) = self.reader.borrow().as_ref() {
            count(|stats| stats.hits += 1);
            return Ok(Some(reader.clone()));
        }
        if !make_room(1) && within_budget {
            count(|stats| stats.fetch_deferrals += 1);
            return Ok(None);
        }
        let path = self.path();
        let file = match File::open(&path) {
            Err(error) if is_exhausted(&error) => {
                count(|stats| stats.exhausted += 1);
                warn_exhausted(&path, &error);
                close_idle(usize::MAX);
                File::open(&path)?
            }
            opened => opened?,
        };
        let reader = Arc::new(file);
        *self.reader.borrow_mut() = Some(reader.clone());
        self.note_opened();
        Ok(Some(reader))
    }

    /// The O_DIRECT descriptor, opened (created if missing) if needed. Out of descriptors, it
    /// waits for one rather than fail.
    pub async fn writer(self: &Rc<Self>) -> io::Result<DmaFile> {
        self.touch();
        if let Some(writer) = self.writer.borrow().as_ref() {
            count(|stats| stats.hits += 1);
            return Ok(writer.clone());
        }
        make_room(1);
        let path = self.path();
        let writer = loop {
            match DmaFile::open_rw(&path).await {
                Err(error) if is_exhausted(&error) => {
                    count(|stats| stats.exhausted += 1);
                    warn_exhausted(&path, &error);
                    close_idle(usize::MAX);
                    rt::sleep(WRITER_RETRY_INTERVAL).await;
                }
                opened => break opened?,
            }
            // Another task may have opened it meanwhile.
            if let Some(writer) = self.writer.borrow().as_ref() {
                return Ok(writer.clone());
            }
        };
        if let Some(existing) = self.writer.borrow().as_ref() {
            return Ok(existing.clone()); // opened concurrently: ours closes on drop
        }
        *self.writer.borrow_mut() = Some(writer.clone());
        self.note_opened();
        Ok(writer)
    }

    /// Takes the O_DIRECT descriptor out of the cache (to close it), if open.
    pub fn take_writer(&self) -> Option<DmaFile> {
        let writer = self.writer.borrow_mut().take();
        if writer.is_some() {
            note_closed(1);
        }
        writer
    }

    /// Closes both descriptors (the files are being deleted or the segment closed). Clones held
    /// elsewhere keep theirs open until they are dropped.
    pub fn release(&self) {
        let reader = self.reader.borrow_mut().take();
        let writer = self.writer.borrow_mut().take();
        note_closed(usize::from(reader.is_some()) + usize::from(writer.is_some()));
        close_writer(writer);
    }

    /// Descriptors this handle holds open.
    pub fn open_count(&self) -> usize {
        usize::from(self.reader.borrow().is_some()) + usize::from(self.writer.borrow().is_some())
    }

    fn touch(&self) {
        let tick = CACHE.with(|cache| {
            let tick = cache.tick.get() + 1;
            cache.tick.set(tick);
            tick
        });
        self.last_use.set(tick);
    }

    fn note_opened(self: &Rc<Self>) {
        count(|stats| stats.opens += 1);
        CACHE.with(|cache| {
            cache.open.set(cache.open.get() + 1);
            if !self.queued.replace(true) {
                cache.queue.borrow_mut().push_back((self.last_use.get(), Rc::downgrade(self)));
            }
        });
    }

    /// Closes what is idle; returns how many descriptors it closed.
    fn close_idle_descriptors(&self) -> usize {
        let mut closed = 0;
        let reader_idle = self.reader.borrow().as_ref().is_some_and(|reader| Arc::strong_count(reader) == 1);
        if reader_idle {
            self.reader.borrow_mut().take();
            closed += 1;
        }
        let writer_idle = self.writer.borrow().as_ref().is_some_and(|writer| !writer.is_shared());
        if writer_idle {
            close_writer(self.writer.borrow_mut().take());
            closed += 1;
        }
        closed
    }
}

impl Drop for SegmentFiles {
    fn drop(&mut self) {
        let open = self.open_count();
        if open > 0 {
            note_closed(open);
        }
        close_writer(self.writer.get_mut().take());
    }
}

/// Closes an O_DIRECT descriptor now (dropped, it would stay open until the reactor's next turn,
/// past the budget while a loop closes many); a clone in use closes it when dropped.
fn close_writer(writer: Option<DmaFile>) {
    if let Some(writer) = writer {
        if let Err(error) = writer.close_now() {
            tracing::debug!(%error, "closing a segment file failed");
        }
    }
}

fn note_closed(descriptors: usize) {
    CACHE.with(|cache| cache.open.set(cache.open.get().saturating_sub(descriptors)));
}

/// Closes every idle descriptor of this shard (an open elsewhere found the process out of them).
pub fn close_all_idle() {
    close_idle(usize::MAX);
}

/// Makes room in this shard's budget for `count` descriptors that work on its blocking pool is
/// about to open and close again (`fs::off_shard`): that thread cannot close the shard's idle
/// descriptors itself when the process runs out of them.
pub(crate) fn make_room_for_transient(count: usize) {
    make_room(count);
}

/// Closes idle descriptors, least recently used first, until `needed` more fit in the budget.
/// Returns whether they fit.
fn make_room(needed: usize) -> bool {
    let (open, budget) = CACHE.with(|cache| (cache.open.get(), cache.budget.get()));
    if open + needed <= budget {
        return true;
    }
    close_idle(open + needed - budget) >= open + needed - budget
}

/// Closes up to `wanted` idle descriptors, least recently used first; returns how many it closed.
/// Two passes over the queue at most (the first may only re-queue handles used since they were
/// queued), giving up after [`EVICTION_BUSY_SCAN_MAX`] descriptors in use unless `wanted` is
/// everything.
fn close_idle(wanted: usize) -> usize {
    CACHE.with(|cache| {
        let mut closed = 0;
        let mut queue = cache.queue.borrow_mut();
        let mut scans = 2 * queue.len() + 1;
        let mut busy_left = if wanted == usize::MAX { usize::MAX } else { EVICTION_BUSY_SCAN_MAX };
        while closed < wanted && scans > 0 && busy_left > 0 {
            scans -= 1;
            let Some((tick, handle)) = queue.pop_front() else { break };
            let Some(handle) = handle.upgrade() else { continue };
            if handle.last_use.get() != tick {
                queue.push_back((handle.last_use.get(), Rc::downgrade(&handle)));
                continue;
            }
            let now = handle.close_idle_descriptors();
            closed += now;
            cache.open.set(cache.open.get().saturating_sub(now));
            if handle.open_count() > 0 {
                // In use: treated as just used.
                busy_left -= 1;
                let tick = cache.tick.get() + 1;
                cache.tick.set(tick);
                handle.last_use.set(tick);
                queue.push_back((tick, Rc::downgrade(&handle)));
            } else {
                handle.queued.set(false);
            }
        }
        if closed > 0 {
            let mut stats = cache.stats.get();
            stats.evictions += closed as u64;
            cache.stats.set(stats);
        }
        closed
    })
}
