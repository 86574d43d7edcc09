//! One client connection: a reader that decodes requests and runs their ordered half, and a
//! writer that sends responses strictly in request order, at most `IN_FLIGHT_REQUESTS_MAX` apart.
//! Garbage, oversized frames, truncated requests and unknown APIs close this connection only.
//!
//! What a connection may hold, and for how long (issue 22: memory must not follow what hostile
//! clients send):
//!
//! ```text
//!   socket ─▶ size ──▶ reserve ──▶ body ──▶ dispatch ─▶ queue ─▶ writer ─▶ socket
//!             │        │           │                              │
//!             idle     waits while read within                    a write stalled for
//!             bound    the shard's request.read.timeout           RESPONSE_WRITE_STALL_MAX
//!                      budget is spent                            closes the connection
//! ```
//!
//! - A frame's body is allocated and read only once its size is reserved from the shard's
//!   [`RequestBudget`]; while the budget is spent the reader waits and the socket is not read.
//!   The reservation is returned when the frame's memory is freed (its last slice dropped) or its
//!   response is produced, whichever comes first.
//! - The body must arrive within `request_read_timeout` of the reservation; a connection with
//!   nothing in flight and no request for `connections_max_idle` is closed. Both release what
//!   the connection held.
//! - Responses are charged to the same budget until written (see [`Response`]); a response write
//!   that makes no progress for [`RESPONSE_WRITE_STALL_MAX`] closes the connection, so a client
//!   that stops reading cannot hold memory or budget for longer.
//! - Closes are counted per reason on /metrics; their warnings are rate limited per shard and
//!   reason (`log_limit`), so hundreds of hostile connections make a few lines, with counts.

use std::cell::Cell;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fjord_engine::metrics::CloseReason;
use fjord_engine::partition::Chunk;
use fjord_engine::rt::{self, Notify, TcpStream};
use futures::channel::mpsc;
use futures::future::{select, Either};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures::{SinkExt, StreamExt};

use crate::api::{self, Dispatched};
use crate::budget::{OverBudget, RequestBudget, Reservation};
use crate::context::ShardContext;
use crate::frame::{self, FrameError};
use crate::log_limit::Admit;
use crate::response::OutFrame;
use crate::shard::Shard;

/// Requests read ahead of the response being written (Kafka clients pipeline up to 5 produce
/// requests per connection by default).
pub const IN_FLIGHT_REQUESTS_MAX: usize = 64;

/// Receive buffer per connection: frame headers and small requests are read without a syscall each.
const RECEIVE_BUFFER_BYTES: usize = 64 * 1024;

/// Memory parts below this size are coalesced into one write; the copy this makes is at most
/// twice this per connection (it is written out once it reaches this size).
const COALESCE_BYTES_MAX: usize = 64 * 1024;

/// A response write that makes no progress for this long closes the connection (glommio's write
/// timeout restarts at every byte written). The same bound as a sendfile(2) part's wait for the
/// socket (`rt::sendfile_all`).
pub const RESPONSE_WRITE_STALL_MAX: Duration = Duration::from_secs(30);

enum Pending {
    Ready(Option<Response>),
    Task(rt::Task<Result<Option<Response>, api::RequestError>>),
}

/// A request in the writer's queue: its answer, what its request-time sample needs, and the
/// request's memory (released here at the latest, once the answer is produced).
struct Queued {
    pending: Pending,
    api_key: i16,
    read_at: Instant,
    request_memory: Reservation,
}

/// A response ready to write, and what it holds against the shard's budget until written.
///
/// What a response adds to the broker's memory: its file parts go out by sendfile(2) and cost
/// nothing; its cached record batches are slices shared with the batch cache (bounded by
/// `--batch-cache-bytes`), and one the cache evicts while a response holds it lives only until
/// that response is written, which the write stall bound and `IN_FLIGHT_REQUESTS_MAX` limit; the
/// coalescing copy in [`write_frame`] is at most `2 × COALESCE_BYTES_MAX` per connection. What it
/// allocates is its encoded fields, which grow with the partitions a request names, and that is
/// what is charged ([`OutFrame::allocated_bytes`]). Charging the shared slices too would count a
/// tail batch once per consumer fetching it, and let slow consumers hold back every producer on
/// the shard. The charge never waits (the response is built; waiting for budget here could
/// deadlock with the reads it holds back): it may take the shard past its budget, and then no new
/// request is read until enough is written.
struct Response {
    frame: OutFrame,
    _memory: Reservation,
}

impl Response {
    fn charge(budget: &Arc<RequestBudget>, frame: OutFrame) -> Response {
        let memory = budget.charge(frame.allocated_bytes());
        Response { frame, _memory: memory }
    }
}

/// Bounds on reading one request.
#[derive(Debug, Clone, Copy)]
struct ReadLimits {
    request_bytes_max: usize,
    idle_max: Duration,
    body_timeout: Duration,
}

/// What the reader and the writer of one connection share.
struct Activity {
    /// When a request was last read or a response last written.
    last_at: Cell<Instant>,
    /// Requests read whose responses are not written yet (a connection waiting for answers is
    /// not idle).
    requests_in_flight: Cell<usize>,
    /// The writer stopped (the socket failed or stalled): the reader stops too.
    writer_stopped: Cell<bool>,
    writer_stop: Rc<Notify>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            last_at: Cell::new(Instant::now()),
            requests_in_flight: Cell::new(0),
            writer_stopped: Cell::new(false),
            writer_stop: Rc::new(Notify::default()),
        }
    }
}

/// Why a connection's reader stops.
#[derive(Debug)]
enum Stop {
    PeerClosed,
    Shutdown,
    WriterStopped,
    Idle,
    ReadTimeout { size_bytes: usize },
    OverBudget(OverBudget),
    Frame(FrameError),
    Request(api::RequestError),
}

pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let ctx = shard.ctx.clone();
    let peer_address = stream.peer_addr().ok();
    let peer = peer_address.map(|address| address.to_string()).unwrap_or_else(|| "unknown".into());
    // The client's host as Kafka shows it in DescribeGroups (Java's InetAddress.toString()).
    let client_host: Rc<str> = match peer_address {
        Some(address) => format!("/{}", address.ip().to_canonical()).into(),
        None => "/unknown".into(),
    };
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let stream = rt::buffered(stream, RECEIVE_BUFFER_BYTES);
    let _ = stream.set_write_timeout(Some(RESPONSE_WRITE_STALL_MAX));
    let (mut reader, writer) = stream.split();
    let (mut queue, responses) = mpsc::channel::<Queued>(IN_FLIGHT_REQUESTS_MAX);
    let activity = Rc::new(Activity::new());
    let writer_task = rt::spawn(write_responses(ctx.clone(), writer, fd, responses, peer.clone(), activity.clone()));
    let limits = ReadLimits {
        request_bytes_max: ctx.settings.socket_request_max_bytes,
        idle_max: ctx.settings.connections_max_idle,
        body_timeout: ctx.settings.request_read_timeout,
    };
    let stop = loop {
        let shutdown = ctx.shutdown.notified();
        let writer_stop = activity.writer_stop.notified();
        if ctx.shutting_down.get() {
            break Stop::Shutdown;
        }
        if activity.writer_stopped.get() {
            break Stop::WriterStopped;
        }
        let read = read_request(&mut reader, &ctx.request_budget, limits, &activity);
        let (frame, request_memory) = match select(pin!(read), select(shutdown, writer_stop)).await {
            Either::Left((Ok(read), _)) => read,
            Either::Left((Err(stop), _)) => break stop,
            Either::Right(_) => continue, // the checks above say which
        };
        activity.requests_in_flight.set(activity.requests_in_flight.get() + 1);
        activity.last_at.set(Instant::now());
        let read_at = Instant::now();
        // read_frame_size admits only frames with a whole request header, which starts with the key.
        let api_key = i16::from_be_bytes([frame[0], frame[1]]);
        let pending = match api::dispatch(&shard, frame, &client_host).await {
            Ok(Dispatched::Ready(frame)) => Pending::Ready(frame.map(|frame| Response::charge(&ctx.request_budget, frame))),
            Ok(Dispatched::Deferred(future)) => {
                let budget = ctx.request_budget.clone();
                Pending::Task(rt::spawn(async move {
                    let frame = future.await?;
                    Ok(frame.map(|frame| Response::charge(&budget, frame)))
                }))
            }
            Err(error) => break Stop::Request(error),
        };
        if queue.send(Queued { pending, api_key, read_at, request_memory }).await.is_err() {
            break Stop::WriterStopped;
        }
    };
    if let Some((reason, error)) = close_reason(&stop) {
        report_close(&ctx, &peer, reason, error);
    }
    drop(queue);
    writer_task.await;
}

/// Reads the next request: waits for its size (at most the idle bound while nothing is in
/// flight), reserves its memory (waiting while the shard's budget is spent), then reads its body
/// within the read timeout. Returns the frame and the connection's handle on its memory.
async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    budget: &Arc<RequestBudget>,
    limits: ReadLimits,
    activity: &Activity,
) -> Result<(Bytes, Reservation), Stop> {
    let size_bytes = read_size(reader, limits, activity).await?;
    let memory = budget.reserve(size_bytes).map_err(Stop::OverBudget)?.await;
    match rt::timeout(limits.body_timeout, frame::read_frame_body(reader, size_bytes, memory.share())).await {
        Some(Ok(frame)) => Ok((frame, memory)),
        Some(Err(error)) => Err(Stop::Frame(error)),
        None => Err(Stop::ReadTimeout { size_bytes }),
    }
}

/// Waits for a frame's size prefix. The same read is polled across the idle checks (a prefix
/// may arrive in pieces); the idle clock runs from the last request read or response written,
/// and not while requests are in flight.
async fn read_size<R: AsyncRead + Unpin>(reader: &mut R, limits: ReadLimits, activity: &Activity) -> Result<usize, Stop> {
    let mut size = pin!(frame::read_frame_size(reader, limits.request_bytes_max));
    loop {
        let wait = match activity.requests_in_flight.get() {
            0 => (activity.last_at.get() + limits.idle_max).saturating_duration_since(Instant::now()),
            _ => limits.idle_max,
        };
        match rt::timeout(wait, size.as_mut()).await {
            Some(Ok(size_bytes)) => return Ok(size_bytes),
            Some(Err(FrameError::Closed)) => return Err(Stop::PeerClosed),
            Some(Err(error)) => return Err(Stop::Frame(error)),
            None if activity.requests_in_flight.get() == 0 && activity.last_at.get().elapsed() >= limits.idle_max => {
                return Err(Stop::Idle);
            }
            None => {} // a response went out meanwhile, or requests are in flight: wait again
        }
    }
}

/// The reason a broker-side close is counted and logged under, and what to log; None for a
/// client that closed between requests, for shutdown, and for the writer's own stops (the writer
/// reports those).
fn close_reason(stop: &Stop) -> Option<(CloseReason, String)> {
    let reason = match stop {
        Stop::PeerClosed | Stop::Shutdown | Stop::WriterStopped => return None,
        Stop::Idle => CloseReason::Idle,
        Stop::ReadTimeout { .. } => CloseReason::RequestReadTimeout,
        Stop::OverBudget(_) | Stop::Request(_) => CloseReason::InvalidRequest,
        Stop::Frame(FrameError::TooLarge { .. } | FrameError::TooSmall(_)) => CloseReason::InvalidRequest,
        Stop::Frame(FrameError::Truncated { .. } | FrameError::Io(_) | FrameError::Closed) => CloseReason::AbortedRequest,
    };
    let error = match stop {
        Stop::Idle => "no request for connections.max.idle.ms".to_string(),
        Stop::ReadTimeout { size_bytes } => {
            format!("the body of a {size_bytes}-byte request did not arrive within the request read timeout")
        }
        Stop::OverBudget(error) => error.to_string(),
        Stop::Frame(error) => error.to_string(),
        Stop::Request(error) => error.to_string(),
        Stop::PeerClosed | Stop::Shutdown | Stop::WriterStopped => unreachable!("returned above"),
    };
    Some((reason, error))
}

/// Counts a close and logs it: idle closes at debug level (routine, as in Kafka), the rest as
/// warnings, rate limited per shard and reason with a count of the lines left out.
fn report_close(ctx: &Rc<ShardContext>, peer: &str, reason: CloseReason, error: String) {
    ctx.metrics().connections_closed[reason as usize].add(1);
    if reason == CloseReason::Idle {
        tracing::debug!(%peer, reason = reason.label(), %error, "closing connection");
        return;
    }
    let now = Instant::now();
    match ctx.close_warnings.admit(reason as usize, now, || format!("{peer}: {error}")) {
        Admit::Log { suppressed } => {
            tracing::warn!(%peer, reason = reason.label(), %error, suppressed, "closing connection");
        }
        Admit::Counted { summary_at: None } => {}
        Admit::Counted { summary_at: Some(at) } => {
            let ctx = ctx.clone();
            rt::spawn_detached(async move {
                rt::sleep(at.saturating_duration_since(Instant::now())).await;
                if let Some(summary) = ctx.close_warnings.summary(reason as usize, Instant::now()) {
                    tracing::warn!(
                        reason = reason.label(),
                        suppressed = summary.suppressed,
                        last = %summary.last,
                        "closing connections: {} more for the same reason, not logged one by one",
                        summary.suppressed
                    );
                }
            });
        }
    }
}

async fn write_responses<W: AsyncWrite + Unpin>(
    ctx: Rc<ShardContext>,
    mut writer: W,
    fd: RawFd,
    mut responses: mpsc::Receiver<Queued>,
    peer: String,
    activity: Rc<Activity>,
) {
    while let Some(Queued { pending, api_key, read_at, request_memory }) = responses.next().await {
        let response = match pending {
            Pending::Ready(response) => response,
            Pending::Task(task) => match task.await {
                Ok(response) => response,
                Err(error) => {
                    tracing::error!(%peer, %error, "closing connection");
                    stop_writer(&activity, &mut responses).await;
                    return;
                }
            },
        };
        // Answered: the request's memory no longer counts, even if a handler keeps a slice of it.
        drop(request_memory);
        if let Some(response) = response {
            if let Err(error) = write_frame(&mut writer, fd, response.frame).await {
                if error.kind() == std::io::ErrorKind::TimedOut {
                    report_close(&ctx, &peer, CloseReason::ResponseWriteTimeout, format!("response write stalled: {error}"));
                } else {
                    tracing::debug!(%peer, %error, "write failed; dropping connection");
                }
                stop_writer(&activity, &mut responses).await;
                return;
            }
        }
        activity.requests_in_flight.set(activity.requests_in_flight.get() - 1);
        activity.last_at.set(Instant::now());
        // Requests without a response (acks=0) count once handled, as in Kafka.
        ctx.metrics().request_time.api(api_key).observe(read_at.elapsed());
    }
    let _ = writer.close().await;
}

/// Tells the reader to stop, then drops what is queued (and the memory it holds) so that the
/// reader's sends do not block.
async fn stop_writer(activity: &Activity, responses: &mut mpsc::Receiver<Queued>) {
    activity.writer_stopped.set(true);
    activity.writer_stop.notify_all();
    responses.close();
    while responses.next().await.is_some() {}
}

async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, fd: RawFd, frame: OutFrame) -> std::io::Result<()> {
    let mut staged = BytesMut::new();
    for part in frame.parts {
        match part {
            Chunk::Memory(bytes) if bytes.len() < COALESCE_BYTES_MAX => {
                staged.extend_from_slice(&bytes);
                if staged.len() >= COALESCE_BYTES_MAX {
                    flush_staged(writer, &mut staged).await?;
                }
            }
            Chunk::Memory(bytes) => {
                flush_staged(writer, &mut staged).await?;
                write_bytes(writer, bytes).await?;
            }
            Chunk::File(slice) => {
                flush_staged(writer, &mut staged).await?;
                writer.flush().await?;
                rt::spawn_blocking(move || rt::sendfile_all(fd, slice.file.as_raw_fd(), slice.position, slice.length)).await?;
            }
        }
    }
    flush_staged(writer, &mut staged).await?;
    writer.flush().await
}

async fn flush_staged<W: AsyncWrite + Unpin>(writer: &mut W, staged: &mut BytesMut) -> std::io::Result<()> {
    if staged.is_empty() {
        return Ok(());
    }
    let bytes = staged.split().freeze();
    write_bytes(writer, bytes).await
}

async fn write_bytes<W: AsyncWrite + Unpin>(writer: &mut W, bytes: Bytes) -> std::io::Result<()> {
    writer.write_all(&bytes).await
}

#[cfg(test)]
mod tests {
    //! The reader's bounds on a real shard executor (glommio timers), over in-memory sockets.

    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use fjord_engine::metrics::Metrics;

    use super::*;

    /// A socket that delivers `data` and then nothing more, never closing: a stalled client.
    struct StalledSocket {
        data: Vec<u8>,
        position: usize,
    }

    impl StalledSocket {
        fn new(data: Vec<u8>) -> StalledSocket {
            StalledSocket { data, position: 0 }
        }
    }

    impl AsyncRead for StalledSocket {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buffer: &mut [u8]) -> Poll<std::io::Result<usize>> {
            let available = &self.data[self.position..];
            if available.is_empty() {
                return Poll::Pending; // only a timer wakes this task again
            }
            let count = available.len().min(buffer.len());
            buffer[..count].copy_from_slice(&available[..count]);
            self.position += count;
            Poll::Ready(Ok(count))
        }
    }

    /// A frame prefix of `size` followed by `sent` bytes of its body.
    fn partial_frame(size: usize, sent: usize) -> Vec<u8> {
        let mut data = (size as i32).to_be_bytes().to_vec();
        data.extend(std::iter::repeat_n(7u8, sent));
        data
    }

    const LIMITS: ReadLimits =
        ReadLimits { request_bytes_max: 1 << 20, idle_max: Duration::from_millis(200), body_timeout: Duration::from_millis(50) };

    fn budget(limit_bytes: usize) -> Arc<RequestBudget> {
        Arc::new(RequestBudget::new(limit_bytes, Arc::new(Metrics::new(1)), 0))
    }

    fn run_on_shard<Fut: Future<Output = ()> + 'static>(body: impl FnOnce() -> Fut + Send + 'static) {
        let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(body)
            .expect("glommio executor starts (is RLIMIT_MEMLOCK at least 1 MiB?)");
        match handle.join() {
            Ok(()) => {}
            Err(glommio::GlommioError::BuilderError(glommio::BuilderErrorKind::ThreadPanic(payload))) => {
                std::panic::resume_unwind(payload)
            }
            Err(error) => panic!("executor failed: {error}"),
        }
    }

    #[test]
    fn a_body_that_stalls_past_the_read_timeout_closes_and_releases_its_memory() {
        run_on_shard(|| async {
            let budget = budget(1 << 20);
            let mut socket = StalledSocket::new(partial_frame(100_000, 5_000));
            let activity = Activity::new();
            let stop = read_request(&mut socket, &budget, LIMITS, &activity).await.expect_err("the body never completes");
            assert!(matches!(stop, Stop::ReadTimeout { size_bytes: 100_000 }), "{stop:?}");
            assert_eq!(close_reason(&stop).map(|(reason, _)| reason), Some(CloseReason::RequestReadTimeout));
            assert_eq!(budget.in_flight_bytes(), 0, "the timed-out frame's memory is released");
        });
    }

    #[test]
    fn a_connection_is_idle_only_with_nothing_in_flight() {
        run_on_shard(|| async {
            let budget = budget(1 << 20);
            let mut socket = StalledSocket::new(Vec::new());
            let activity = Activity::new();
            activity.requests_in_flight.set(1);
            let waited = rt::timeout(LIMITS.idle_max * 2, read_request(&mut socket, &budget, LIMITS, &activity)).await;
            assert!(waited.is_none(), "a connection waiting for a response is not idle");
            activity.requests_in_flight.set(0);
            let stop = read_request(&mut socket, &budget, LIMITS, &activity).await.expect_err("nothing arrives");
            assert!(matches!(stop, Stop::Idle), "{stop:?}");
            assert_eq!(close_reason(&stop).map(|(reason, _)| reason), Some(CloseReason::Idle));
        });
    }

    #[test]
    fn a_size_prefix_that_arrives_in_pieces_is_not_lost_to_the_idle_checks() {
        run_on_shard(|| async {
            let budget = budget(1 << 20);
            // Half a prefix; with a request in flight the size read waits in rounds of idle_max.
            let arriving = Rc::new(std::cell::RefCell::new(vec![0u8, 0]));
            let socket_data = arriving.clone();
            let reader_budget = budget.clone();
            let reader = rt::spawn(async move {
                let mut socket = GrowingSocket { data: socket_data, position: 0 };
                let activity = Activity::new();
                activity.requests_in_flight.set(1);
                read_request(&mut socket, &reader_budget, LIMITS, &activity).await
            });
            rt::sleep(LIMITS.idle_max + LIMITS.idle_max / 2).await;
            arriving.borrow_mut().extend(partial_frame(12, 12)[2..].iter());
            let (frame, memory) = reader.await.expect("the prefix's first half was kept across the rounds");
            assert_eq!((frame.len(), memory.size_bytes()), (12, 12));
        });
    }

    /// A socket whose data the test appends to; the reader finds it at its next poll (a timer's).
    struct GrowingSocket {
        data: Rc<std::cell::RefCell<Vec<u8>>>,
        position: usize,
    }

    impl AsyncRead for GrowingSocket {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buffer: &mut [u8]) -> Poll<std::io::Result<usize>> {
            let data = self.data.clone();
            let data = data.borrow();
            let available = &data[self.position..];
            if available.is_empty() {
                return Poll::Pending;
            }
            let count = available.len().min(buffer.len());
            buffer[..count].copy_from_slice(&available[..count]);
            self.position += count;
            Poll::Ready(Ok(count))
        }
    }

    #[test]
    fn a_reader_waits_for_memory_and_reads_once_it_is_released() {
        run_on_shard(|| async {
            let budget = budget(100);
            let held = budget.charge(100);
            let reader_budget = budget.clone();
            let reader = rt::spawn(async move {
                let mut socket = StalledSocket::new(partial_frame(60, 60));
                let activity = Activity::new();
                read_request(&mut socket, &reader_budget, LIMITS, &activity).await
            });
            rt::sleep(Duration::from_millis(20)).await;
            assert_eq!(budget.waiting(), 1, "the reader waits for memory, not for its body's deadline");
            rt::sleep(LIMITS.body_timeout * 2).await;
            assert_eq!(budget.waiting(), 1, "waiting for memory is not timed out");
            drop(held);
            let (frame, memory) = reader.await.expect("read once memory is released");
            assert_eq!((frame.len(), budget.in_flight_bytes()), (60, 60));
            drop(frame);
            assert_eq!(budget.in_flight_bytes(), 0, "the frame's memory is freed: released before the answer");
            drop(memory);
            assert_eq!(budget.in_flight_bytes(), 0);
        });
    }

    #[test]
    fn a_frame_larger_than_the_shard_budget_is_refused() {
        run_on_shard(|| async {
            let budget = budget(1000);
            let mut socket = StalledSocket::new(partial_frame(5000, 10));
            let stop = read_request(&mut socket, &budget, LIMITS, &Activity::new()).await.expect_err("refused");
            assert!(matches!(stop, Stop::OverBudget(_)), "{stop:?}");
            let (reason, error) = close_reason(&stop).expect("counted");
            assert_eq!(reason, CloseReason::InvalidRequest);
            assert!(error.contains("request memory budget"), "{error}");
        });
    }
}
