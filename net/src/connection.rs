//! One client connection: a reader that decodes requests and runs their ordered half, and a
//! writer that sends responses strictly in request order, at most `IN_FLIGHT_REQUESTS_MAX` apart.
//! Garbage, oversized frames, truncated requests and unknown APIs close this connection only.

use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use fjord_engine::partition::Chunk;
use fjord_engine::rt::{self, TcpStream};
use futures::channel::mpsc;
use futures::future::{select, Either};
use futures::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures::{SinkExt, StreamExt};

use crate::api::{self, Dispatched};
use crate::context::ShardContext;
use crate::frame::{self, FrameError};
use crate::response::OutFrame;

/// Requests read ahead of the response being written (Kafka clients pipeline up to 5 produce
/// requests per connection by default).
pub const IN_FLIGHT_REQUESTS_MAX: usize = 64;

/// Receive buffer per connection: frame headers and small requests are read without a syscall each.
const RECEIVE_BUFFER_BYTES: usize = 64 * 1024;

/// Memory parts below this size are coalesced into one write.
const COALESCE_BYTES_MAX: usize = 64 * 1024;

enum Pending {
    Ready(Option<OutFrame>),
    Task(rt::Task<Result<Option<OutFrame>, api::RequestError>>),
}

/// A request in the writer's queue: its answer, and what its request-time sample needs.
struct Queued {
    pending: Pending,
    api_key: i16,
    read_at: Instant,
}

pub async fn serve(ctx: Rc<ShardContext>, stream: TcpStream) {
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
    let (mut reader, writer) = stream.split();
    let (mut queue, responses) = mpsc::channel::<Queued>(IN_FLIGHT_REQUESTS_MAX);
    let writer_task = rt::spawn(write_responses(ctx.clone(), writer, fd, responses, peer.clone()));
    let max_bytes = ctx.settings.socket_request_max_bytes;
    loop {
        let shutdown = ctx.shutdown.notified();
        if ctx.shutting_down.get() {
            break;
        }
        let next = match select(Box::pin(frame::read_frame(&mut reader, max_bytes)), Box::pin(shutdown)).await {
            Either::Left((next, _)) => next,
            Either::Right(_) => break,
        };
        let frame = match next {
            Ok(frame) => frame,
            Err(FrameError::Closed) => break,
            Err(error) => {
                tracing::warn!(%peer, %error, "closing connection");
                break;
            }
        };
        let read_at = Instant::now();
        // read_frame returns only frames with a whole request header, which starts with the key.
        let api_key = i16::from_be_bytes([frame[0], frame[1]]);
        let pending = match api::dispatch(&ctx, frame, &client_host).await {
            Ok(Dispatched::Ready(frame)) => Pending::Ready(frame),
            Ok(Dispatched::Deferred(future)) => Pending::Task(rt::spawn(future)),
            Err(error) => {
                tracing::warn!(%peer, %error, "closing connection");
                break;
            }
        };
        if queue.send(Queued { pending, api_key, read_at }).await.is_err() {
            break; // the writer stopped: the socket is gone
        }
    }
    drop(queue);
    writer_task.await;
}

async fn write_responses<W: AsyncWrite + Unpin>(
    ctx: Rc<ShardContext>,
    mut writer: W,
    fd: RawFd,
    mut responses: mpsc::Receiver<Queued>,
    peer: String,
) {
    while let Some(Queued { pending, api_key, read_at }) = responses.next().await {
        let frame = match pending {
            Pending::Ready(frame) => frame,
            Pending::Task(task) => match task.await {
                Ok(frame) => frame,
                Err(error) => {
                    tracing::error!(%peer, %error, "closing connection");
                    responses.close();
                    while responses.next().await.is_some() {}
                    return;
                }
            },
        };
        if let Some(frame) = frame {
            if let Err(error) = write_frame(&mut writer, fd, frame).await {
                tracing::debug!(%peer, %error, "write failed; dropping connection");
                // Drain so the reader's sends do not block, then stop.
                responses.close();
                while responses.next().await.is_some() {}
                return;
            }
        }
        // Requests without a response (acks=0) count once handled, as in Kafka.
        ctx.metrics().request_time.api(api_key).observe(read_at.elapsed());
    }
    let _ = writer.close().await;
}

async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, fd: RawFd, frame: OutFrame) -> std::io::Result<()> {
    let mut staged = BytesMut::new();
    for part in frame.parts {
        match part {
            Chunk::Memory(bytes) if bytes.len() < COALESCE_BYTES_MAX => staged.extend_from_slice(&bytes),
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
