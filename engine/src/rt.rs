//! The runtime boundary: the only module that names glommio.
//!
//! glommio 0.9 is barely maintained (DESIGN.md), so everything the rest of Fjord needs from a
//! thread-per-core io_uring runtime goes through here: starting pinned shards, spawning tasks,
//! timers, DMA files, TCP, the shard-to-shard channel mesh, and sendfile(2) on a blocking thread.
//! Moving to another runtime should mean rewriting this file, not the engine.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::limits::{DMA_ALIGNMENT_BYTES, IO_MEMORY_BYTES_PER_SHARD, MESH_CHANNEL_CAPACITY, SEGMENT_FILL_CHUNK_BYTES};

pub use glommio::net::{TcpListener, TcpStream};

/// A TCP stream with a receive buffer: small reads (frame sizes, headers) come from memory
/// instead of one syscall each.
pub type BufferedTcpStream = glommio::net::TcpStream<glommio::net::Preallocated>;

/// Wraps an accepted stream with a receive buffer of `size_bytes`.
pub fn buffered(stream: TcpStream, size_bytes: usize) -> BufferedTcpStream {
    stream.buffered_with(glommio::net::Preallocated::new(size_bytes))
}
pub use glommio::Task;

/// Binds a listener with SO_REUSEPORT (one per shard; the kernel spreads connections).
pub fn bind_listener(address: std::net::SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(address).map_err(io::Error::from)
}

/// Spawns a task on the current shard.
pub fn spawn<T: 'static>(future: impl Future<Output = T> + 'static) -> Task<T> {
    glommio::spawn_local(future)
}

/// Spawns a task on the current shard and lets it run to completion on its own.
pub fn spawn_detached(future: impl Future<Output = ()> + 'static) {
    glommio::spawn_local(future).detach();
}

/// Shares of the background task queue (retention, compaction) against the 1000 of the queue
/// produce and fetch run in: under load the background gets about a tenth of the core.
pub const BACKGROUND_SHARES: usize = 100;

thread_local! {
    /// The shard's shared buffer of zeros (see [`DmaFile::write_zeros_at`]); a shard's thread runs
    /// one executor for its whole life, so the buffer never outlives its ring.
    static ZEROS: RefCell<Option<Rc<glommio::io::DmaBuffer>>> = const { RefCell::new(None) };
    /// (executor id, queue) of the background queue on this thread's executor, made on first use.
    static BACKGROUND_QUEUE: Cell<Option<(usize, glommio::TaskQueueHandle)>> = const { Cell::new(None) };
}

/// Spawns a detached task in the shard's low-share background queue (DESIGN.md: background work
/// yields to produce and fetch). Its long loops still call [`yield_if_needed`].
pub fn spawn_background(future: impl Future<Output = ()> + 'static) {
    let executor = glommio::executor();
    let queue = BACKGROUND_QUEUE.with(|slot| match slot.get() {
        Some((id, queue)) if id == executor.id() => queue,
        _ => {
            let queue = executor.create_task_queue(
                glommio::Shares::Static(BACKGROUND_SHARES),
                glommio::Latency::NotImportant,
                "fjord-background",
            );
            slot.set(Some((executor.id(), queue)));
            queue
        }
    });
    match glommio::spawn_local_into(future, queue) {
        Ok(task) => {
            task.detach();
        }
        Err(error) => tracing::error!(%error, "cannot spawn into the background queue"),
    }
}

/// Runs `body` on a fresh unpinned executor on its own thread and returns its output; a panic in
/// `body` resumes on the caller. For tests of shard-local code, and tools.
pub fn run_local<T, Fut>(body: impl FnOnce() -> Fut + Send + 'static) -> T
where
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(IO_MEMORY_BYTES_PER_SHARD)
        .spawn(body)
        .expect("glommio executor starts (is RLIMIT_MEMLOCK at least 1 MiB?)");
    match handle.join() {
        Ok(value) => value,
        Err(glommio::GlommioError::BuilderError(glommio::BuilderErrorKind::ThreadPanic(payload))) => {
            std::panic::resume_unwind(payload)
        }
        Err(error) => panic!("executor failed: {error}"),
    }
}

/// Runs blocking work (sendfile, buffered reads, metadata fsync) on the shard's blocking pool.
pub async fn spawn_blocking<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    glommio::executor().spawn_blocking(work).await
}

pub async fn sleep(duration: Duration) {
    glommio::timer::sleep(duration).await
}

/// Yields to other tasks if this one has run for its share; long loops call it.
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await
}

/// How often the mesh's connect futures are polled without being woken (see `Mesh::connect`).
const CONNECT_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Polls `future` at least every `period`, woken or not, until it completes.
async fn poll_every<F: Future>(period: Duration, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    loop {
        if let Some(output) = timeout(period, future.as_mut()).await {
            return output;
        }
    }
}

/// Races `future` against a timer. `None` when the timer fired first.
pub async fn timeout<T>(duration: Duration, future: impl Future<Output = T>) -> Option<T> {
    use futures::future::{select, Either};
    let timer = std::pin::pin!(sleep(duration));
    let future = std::pin::pin!(future);
    match select(future, timer).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(_) => None,
    }
}

/// glommio 0.9 sometimes leaves a parked executor asleep after a wake from another thread (a
/// cross-shard reply) until its next timer. Every shard keeps a timer at most this far away, which
/// bounds that delay. Measured with librdkafka at linger.ms=0: a 50 ms timer gave ~50 ms produce
/// acks, 5–10 ms single-digit ms. The real fix (wake delivery here) belongs to the performance pass.
pub const WAKE_BOUND: Duration = Duration::from_millis(10);

/// Longest a task queue runs before glommio lets another queue in (its preempt timer; glommio's
/// default is 100 ms). Background work (compaction, retention) runs in a low-share queue and
/// calls [`yield_if_needed`] per chunk, but yielding only happens once this timer fires: with
/// 100 ms, every I/O wait of a produce request let the cleaner take up to 100 ms, and produce
/// acks at 50 MB/s went from p50 1.3 ms to 500 ms while a large log was compacted
/// (scripts/bench-compaction.sh). Scylla's task quota is 0.5 ms.
pub const TASK_QUOTA: Duration = Duration::from_millis(2);

/// How each shard's executor is built.
#[derive(Debug, Clone)]
pub struct ShardRuntimeConfig {
    pub io_memory_bytes: usize,
    pub spin_before_park: Option<Duration>,
    pub pin_to_cores: bool,
}

/// Starts `count` shards, each a pinned single-threaded executor running `body(shard_id, mesh)`,
/// and blocks until every shard's body returns.
pub fn run_shards<M, F, Fut>(count: usize, config: ShardRuntimeConfig, body: F) -> io::Result<()>
where
    M: Send + 'static,
    F: Fn(usize, Mesh<M>) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut wiring = MeshWiring::<M>::new(count);
    let mut handles = Vec::with_capacity(count);
    for shard_id in 0..count {
        let (senders, receivers) = wiring.take(shard_id);
        let body = body.clone();
        let placement =
            if config.pin_to_cores { glommio::Placement::Fixed(shard_id % cores) } else { glommio::Placement::Unbound };
        let mut builder = glommio::LocalExecutorBuilder::new(placement)
            .name(&format!("fjord-shard-{shard_id}"))
            .io_memory(config.io_memory_bytes)
            .preempt_timer(TASK_QUOTA);
        if let Some(spin) = config.spin_before_park {
            builder = builder.spin_before_park(spin);
        }
        let handle = builder
            .spawn(move || async move {
                // Ends with the executor when `body` returns.
                spawn_detached(async {
                    loop {
                        sleep(WAKE_BOUND).await;
                    }
                });
                let mesh = Mesh::connect(shard_id, senders, receivers).await;
                body(shard_id, mesh).await;
            })
            .map_err(|error| io::Error::other(format!("cannot start shard {shard_id}: {error}")))?;
        handles.push(handle);
    }
    for handle in handles {
        handle.join().map_err(|error| io::Error::other(format!("shard failed: {error}")))?;
    }
    Ok(())
}

type Sender<M> = glommio::channels::shared_channel::SharedSender<M>;
type Receiver<M> = glommio::channels::shared_channel::SharedReceiver<M>;

/// One shard's unconnected channel ends: senders to every shard, receivers from every shard.
type ShardEnds<M> = (Vec<Option<Sender<M>>>, Vec<Option<Receiver<M>>>);

/// The channels of a full mesh before the shards connect to them.
struct MeshWiring<M: Send> {
    senders: Vec<Vec<Option<Sender<M>>>>,
    receivers: Vec<Vec<Option<Receiver<M>>>>,
}

impl<M: Send + 'static> MeshWiring<M> {
    fn new(count: usize) -> Self {
        let mut senders: Vec<Vec<Option<Sender<M>>>> = (0..count).map(|_| (0..count).map(|_| None).collect()).collect();
        let mut receivers: Vec<Vec<Option<Receiver<M>>>> = (0..count).map(|_| (0..count).map(|_| None).collect()).collect();
        for from in 0..count {
            for to in 0..count {
                if from != to {
                    let (sender, receiver) = glommio::channels::shared_channel::new_bounded(MESH_CHANNEL_CAPACITY);
                    senders[from][to] = Some(sender);
                    receivers[to][from] = Some(receiver);
                }
            }
        }
        MeshWiring { senders, receivers }
    }

    fn take(&mut self, shard_id: usize) -> ShardEnds<M> {
        (std::mem::take(&mut self.senders[shard_id]), std::mem::take(&mut self.receivers[shard_id]))
    }
}

/// This shard's end of the shard-to-shard channel mesh: one bounded lock-free channel to every
/// other shard. Messages carry whole request parts, never single records. Lives on one shard.
pub struct Mesh<M: Send + 'static> {
    shard_id: usize,
    senders: Vec<Option<glommio::channels::shared_channel::ConnectedSender<M>>>,
    receivers: RefCell<Vec<glommio::channels::shared_channel::ConnectedReceiver<M>>>,
}

impl<M: Send + 'static> Mesh<M> {
    async fn connect(shard_id: usize, senders: Vec<Option<Sender<M>>>, receivers: Vec<Option<Receiver<M>>>) -> Self {
        // Both ends of a channel wait for each other: connect everything at once, or two shards
        // connecting their senders first would wait on each other forever.
        let senders = futures::future::join_all(senders.into_iter().map(|sender| async move {
            match sender {
                Some(sender) => Some(sender.connect().await),
                None => None,
            }
        }));
        let receivers = futures::future::join_all(receivers.into_iter().flatten().map(|receiver| receiver.connect()));
        // glommio 0.9 can miss the wake of a shared-channel connect when both ends connect at the
        // same moment (seen as a broker that never got ready, both shards parked, about once in
        // 25 golden-test runs under CPU load). Its connect future checks the peer on every poll,
        // so polling it on a timer as well ends the wait.
        let (connected_senders, connected_receivers) =
            poll_every(CONNECT_POLL_INTERVAL, futures::future::join(senders, receivers)).await;
        Mesh { shard_id, senders: connected_senders, receivers: RefCell::new(connected_receivers) }
    }

    pub fn shard_id(&self) -> usize {
        self.shard_id
    }

    pub fn shard_count(&self) -> usize {
        self.senders.len()
    }

    /// Sends to another shard, waiting while its channel is full (backpressure). Fails only if
    /// that shard has stopped; the message is then dropped (its reply channels report canceled).
    pub async fn send(&self, to: usize, message: M) -> Result<(), MeshClosed> {
        assert_ne!(to, self.shard_id, "a shard handles its own work directly");
        match self.senders.get(to).and_then(Option::as_ref) {
            Some(sender) => sender.send(message).await.map_err(|_| MeshClosed),
            None => Err(MeshClosed),
        }
    }

    /// Spawns one task per inbound channel that hands each message, in order, to `handler`.
    /// The handler's future is awaited before the next message of that channel is taken, so
    /// whatever it does before its first await happens in send order.
    pub fn serve<H, Fut>(&self, handler: H)
    where
        H: Fn(M) -> Fut + Clone + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        for receiver in self.receivers.borrow_mut().drain(..) {
            let handler = handler.clone();
            spawn_detached(async move {
                while let Some(message) = receiver.recv().await {
                    handler(message).await;
                }
            });
        }
    }
}

/// The receiving shard has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeshClosed;

/// A single-shard wake-up signal: many waiters, `notify_all` wakes them. Not Send; lives on the
/// shard that owns the state it signals about.
///
/// Each waiting [`Notified`] owns one slot; a re-poll replaces its waker and a drop frees its slot,
/// so waiters that give up (a read that won, a timed-out wait) leave nothing behind.
#[derive(Default)]
pub struct Notify {
    generation: Cell<u64>,
    slots: RefCell<Slots>,
}

#[derive(Default)]
struct Slots {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Notify {
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        let wakers = {
            let mut slots = self.slots.borrow_mut();
            slots.free.clear();
            std::mem::take(&mut slots.wakers)
        };
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }

    /// Completes at the next `notify_all` after this call.
    pub fn notified(self: &Rc<Self>) -> Notified {
        Notified { notify: self.clone(), generation: self.generation.get(), slot: None }
    }

    /// Waiters currently registered (for tests and metrics).
    pub fn waiters(&self) -> usize {
        self.slots.borrow().wakers.iter().filter(|slot| slot.is_some()).count()
    }
}

pub struct Notified {
    notify: Rc<Notify>,
    generation: u64,
    slot: Option<usize>,
}

impl Future for Notified {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            self.slot = None;
            return Poll::Ready(());
        }
        let notify = self.notify.clone();
        let mut slots = notify.slots.borrow_mut();
        match self.slot {
            Some(index) => slots.wakers[index] = Some(cx.waker().clone()),
            None => {
                let index = match slots.free.pop() {
                    Some(index) => {
                        slots.wakers[index] = Some(cx.waker().clone());
                        index
                    }
                    None => {
                        slots.wakers.push(Some(cx.waker().clone()));
                        slots.wakers.len() - 1
                    }
                };
                self.slot = Some(index);
            }
        }
        Poll::Pending
    }
}

impl Drop for Notified {
    fn drop(&mut self) {
        // A slot belongs to the generation it was taken in; notify_all already emptied older ones.
        if let (Some(index), true) = (self.slot, self.notify.generation.get() == self.generation) {
            let mut slots = self.notify.slots.borrow_mut();
            if let Some(waker) = slots.wakers.get_mut(index) {
                *waker = None;
                slots.free.push(index);
            }
        }
    }
}

/// An O_DIRECT file for appends. Every write is aligned to [`DMA_ALIGNMENT_BYTES`]. Clones share
/// the descriptor (a segment's background write-ahead holds one while it runs).
#[derive(Clone)]
pub struct DmaFile {
    file: Rc<glommio::io::DmaFile>,
    /// The path, kept only while a simulated disk watches it (crash and fault tests).
    watched: Option<Rc<Path>>,
}

/// An aligned buffer for [`DmaFile::write_at`].
pub struct DmaBuffer(glommio::io::DmaBuffer);

impl DmaBuffer {
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.0.as_bytes_mut()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
}

impl DmaFile {
    /// Opens (creating if needed) for reading and writing with O_DIRECT.
    pub async fn open_rw(path: &Path) -> io::Result<DmaFile> {
        let watched = crate::sim_disk::watching(path).map(|_| Rc::from(path));
        if watched.is_some() && !path.exists() {
            crate::sim_disk::before(path, crate::sim_disk::Op::Name)?;
        }
        let file =
            glommio::io::OpenOptions::new().read(true).write(true).create(true).dma_open(path).await.map_err(io::Error::from)?;
        crate::sim_disk::opened(path);
        Ok(DmaFile { file: Rc::new(file), watched })
    }

    /// The simulated disk's check before an operation (a no-op unless one watches this file).
    fn admit(&self, op: crate::sim_disk::Op) -> io::Result<()> {
        match &self.watched {
            Some(path) => crate::sim_disk::before(path, op),
            None => Ok(()),
        }
    }

    pub fn alloc_buffer(&self, size_bytes: usize) -> DmaBuffer {
        debug_assert_eq!(size_bytes as u64 % DMA_ALIGNMENT_BYTES, 0);
        DmaBuffer(self.file.alloc_dma_buffer(size_bytes))
    }

    pub async fn write_at(&self, buffer: DmaBuffer, position: u64) -> io::Result<usize> {
        debug_assert_eq!(position % DMA_ALIGNMENT_BYTES, 0);
        self.admit(crate::sim_disk::Op::Write)?;
        let length = buffer.len() as u64;
        let written = self.file.write_at(buffer.0, position).await.map_err(io::Error::from)?;
        if let Some(path) = &self.watched {
            crate::sim_disk::wrote(path, position, length);
        }
        Ok(written)
    }

    /// Writes [`SEGMENT_FILL_CHUNK_BYTES`] of zeros at `position` from one buffer of zeros that
    /// every such write of this shard shares (filled once, never written to), so writing ahead
    /// costs no allocation, no page faults and no fill. The buffer is asked for larger than the
    /// registered I/O memory, so it comes from the heap and leaves that memory to the appends.
    pub async fn write_zeros_at(&self, position: u64) -> io::Result<usize> {
        debug_assert_eq!(position % DMA_ALIGNMENT_BYTES, 0);
        let zeros = ZEROS.with(|cell| {
            Rc::clone(cell.borrow_mut().get_or_insert_with(|| {
                let outside_registered = IO_MEMORY_BYTES_PER_SHARD + DMA_ALIGNMENT_BYTES as usize;
                let mut buffer = self.file.alloc_dma_buffer(SEGMENT_FILL_CHUNK_BYTES.max(outside_registered));
                buffer.trim_to_size(SEGMENT_FILL_CHUNK_BYTES);
                buffer.as_bytes_mut().fill(0);
                Rc::new(buffer)
            }))
        });
        self.admit(crate::sim_disk::Op::Write)?;
        let written = self.file.write_rc_at(zeros, position).await.map_err(io::Error::from)?;
        if let Some(path) = &self.watched {
            crate::sim_disk::wrote(path, position, SEGMENT_FILL_CHUNK_BYTES as u64);
        }
        Ok(written)
    }

    pub async fn fdatasync(&self) -> io::Result<()> {
        self.admit(crate::sim_disk::Op::Sync)?;
        self.file.fdatasync().await.map_err(io::Error::from)?;
        if let Some(path) = &self.watched {
            crate::sim_disk::synced(path);
        }
        Ok(())
    }

    pub async fn truncate(&self, size_bytes: u64) -> io::Result<()> {
        self.admit(crate::sim_disk::Op::Write)?;
        self.file.truncate(size_bytes).await.map_err(io::Error::from)
    }

    /// fallocate(2) up to `size_bytes`, growing the file to it: new blocks are unwritten extents
    /// (read as zeros), data already written is untouched.
    pub async fn reserve(&self, size_bytes: u64) -> io::Result<()> {
        self.admit(crate::sim_disk::Op::Write)?;
        self.file.pre_allocate(size_bytes, false).await.map_err(io::Error::from)
    }

    /// Whether a clone of this descriptor lives elsewhere (an I/O in flight holds one).
    pub fn is_shared(&self) -> bool {
        Rc::strong_count(&self.file) > 1
    }

    /// Closes the descriptor now, on this thread, unless a clone is held elsewhere (then the last
    /// clone dropped closes it). Dropping a file leaves its close to the reactor's next turn.
    pub fn close_now(self) -> io::Result<()> {
        match Rc::try_unwrap(self.file) {
            Ok(file) => file.close_now(),
            Err(_) => Ok(()),
        }
    }

    /// Closes the descriptor; a clone still held elsewhere keeps it open until dropped.
    pub async fn close(self) -> io::Result<()> {
        self.file.close_rc().await.map(drop).map_err(io::Error::from)
    }
}

/// sendfile(2) of `length` bytes at `offset` of `file_fd` to `socket_fd`, on the calling (blocking)
/// thread. Copes with a non-blocking socket by polling for writability. Record bytes never enter
/// user space.
pub fn sendfile_all(socket_fd: RawFd, file_fd: RawFd, mut offset: u64, mut length: usize) -> io::Result<()> {
    while length > 0 {
        let mut file_offset = offset as libc::off_t;
        // SAFETY: both descriptors are open for the duration of the call (the caller holds them).
        let sent = unsafe { libc::sendfile(socket_fd, file_fd, &mut file_offset, length) };
        if sent < 0 {
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock => {
                    wait_writable(socket_fd)?;
                    continue;
                }
                io::ErrorKind::Interrupted => continue,
                _ => return Err(error),
            }
        }
        if sent == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than the slice sent"));
        }
        offset += sent as u64;
        length -= sent as usize;
    }
    Ok(())
}

fn wait_writable(socket_fd: RawFd) -> io::Result<()> {
    let mut poll_fd = libc::pollfd { fd: socket_fd, events: libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd; a 30 s bound so a dead peer cannot hold the thread forever.
    let ready = unsafe { libc::poll(&mut poll_fd, 1, 30_000) };
    match ready {
        r if r < 0 => Err(io::Error::last_os_error()),
        0 => Err(io::Error::new(io::ErrorKind::TimedOut, "socket not writable for 30 s")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct CountingWaker(std::sync::atomic::AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn abandoned_and_repolled_waiters_leave_no_slots_behind() {
        let notify = Rc::new(Notify::default());
        let counter = std::sync::Arc::new(CountingWaker(std::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..1000 {
            let mut waiting = Box::pin(notify.notified());
            assert!(waiting.as_mut().poll(&mut cx).is_pending());
            assert!(waiting.as_mut().poll(&mut cx).is_pending(), "a re-poll reuses its slot");
        }
        assert_eq!(notify.waiters(), 0, "dropped waiters free their slots");
        assert!(notify.slots.borrow().wakers.len() <= 1);
        let mut waiting = Box::pin(notify.notified());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        notify.notify_all();
        assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(waiting.as_mut().poll(&mut cx).is_ready());
    }
}
