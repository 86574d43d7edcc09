//! The `/metrics` endpoint: a plain HTTP/1.1 listener on its own thread (never a shard's) that
//! answers `GET /metrics` with every shard's counters in the Prometheus text format. One request
//! per connection; anything else gets 404 or 400. Bounded: 8 KiB of request head, 2 s to send it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use fjord_engine::metrics::Metrics;

const REQUEST_HEAD_MAX_BYTES: usize = 8 * 1024;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds `listen` and serves from a background thread. Returns the bound address.
pub fn spawn(listen: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(listen)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("fjord-metrics".into()).spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    if let Err(error) = answer(stream, &metrics) {
                        tracing::debug!(%error, "metrics request failed");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics accept failed");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    })?;
    Ok(bound)
}

fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        if head.len() >= REQUEST_HEAD_MAX_BYTES {
            return respond(&mut stream, "431 Request Header Fields Too Large", "text/plain", "request head too large\n");
        }
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let request_line = head.split(|byte| *byte == b'\r').next().unwrap_or_default();
    let mut parts = std::str::from_utf8(request_line).unwrap_or_default().split(' ');
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(path)) if path == "/metrics" || path.starts_with("/metrics?") => {
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4; charset=utf-8", &metrics.render())
        }
        (Some("GET"), Some(_)) => respond(&mut stream, "404 Not Found", "text/plain", "only /metrics is served here\n"),
        _ => respond(&mut stream, "400 Bad Request", "text/plain", "expected GET /metrics\n"),
    }
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
