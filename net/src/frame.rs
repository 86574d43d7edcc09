//! Kafka framing: a 4-byte big-endian size, then the request. Requests are read whole into one
//! buffer and decoded zero-copy (record bytes stay slices of it).
//!
//! A connection reads the size ([`read_frame_size`]), reserves that much of the shard's request
//! memory budget, and only then allocates and reads the body ([`read_frame_body`]); the buffer
//! carries the reservation and returns it when its last slice is dropped.

use bytes::Bytes;
use futures::io::{AsyncRead, AsyncReadExt};

use crate::budget::Reservation;

/// Why a connection stops reading.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("peer closed the connection")]
    Closed,
    #[error("frame of {size} bytes exceeds socket.request.max.bytes {max}")]
    TooLarge { size: i64, max: usize },
    #[error("frame size {0} is too small for a request header")]
    TooSmall(i32),
    #[error("connection closed in the middle of a {expected}-byte frame")]
    Truncated { expected: usize },
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// Smallest request: api key, version, correlation id, client id length.
pub const REQUEST_HEADER_BYTES_MIN: i32 = 10;

/// Reads one frame's payload, refusing sizes outside `[REQUEST_HEADER_BYTES_MIN, max_bytes]`.
/// Accounts its memory nowhere: for tools and fuzzing; connections use the two steps below.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, max_bytes: usize) -> Result<Bytes, FrameError> {
    let size = read_frame_size(reader, max_bytes).await?;
    let buffer = read_body(reader, size).await?;
    Ok(Bytes::from(buffer))
}

/// Reads a frame's size prefix, refusing sizes outside `[REQUEST_HEADER_BYTES_MIN, max_bytes]`.
pub async fn read_frame_size<R: AsyncRead + Unpin>(reader: &mut R, max_bytes: usize) -> Result<usize, FrameError> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(error) => return Err(FrameError::Io(error)),
    }
    let size = i32::from_be_bytes(size);
    if size < REQUEST_HEADER_BYTES_MIN {
        return Err(FrameError::TooSmall(size));
    }
    if size as usize > max_bytes {
        return Err(FrameError::TooLarge { size: size as i64, max: max_bytes });
    }
    Ok(size as usize)
}

/// Reads a `size`-byte body (after [`read_frame_size`]) into a buffer allocated only now, which
/// holds `memory` until its last slice is dropped.
pub async fn read_frame_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    size: usize,
    memory: Reservation,
) -> Result<Bytes, FrameError> {
    assert!(memory.size_bytes() >= size, "a {size}-byte frame read on a reservation of {memory:?}");
    let bytes = read_body(reader, size).await?;
    Ok(Bytes::from_owner(FrameBuffer { bytes, _memory: memory }))
}

async fn read_body<R: AsyncRead + Unpin>(reader: &mut R, size: usize) -> Result<Vec<u8>, FrameError> {
    let mut buffer = vec![0u8; size];
    match reader.read_exact(&mut buffer).await {
        Ok(()) => Ok(buffer),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated { expected: size }),
        Err(error) => Err(FrameError::Io(error)),
    }
}

/// A frame's bytes and the budget they are reserved from: dropped with the frame's last slice.
struct FrameBuffer {
    bytes: Vec<u8>,
    _memory: Reservation,
}

impl AsRef<[u8]> for FrameBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fjord_engine::metrics::Metrics;
    use futures::executor::block_on;

    use super::*;
    use crate::budget::RequestBudget;

    #[test]
    fn a_frame_holds_its_reservation_until_its_last_slice_is_dropped() {
        let budget = Arc::new(RequestBudget::new(1024, Arc::new(Metrics::new(1)), 0));
        let mut wire: &[u8] = &[0, 0, 0, 12, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        let size = block_on(read_frame_size(&mut wire, 1024)).unwrap();
        assert_eq!(size, 12);
        let memory = block_on(budget.reserve(size).unwrap());
        let frame = block_on(read_frame_body(&mut wire, size, memory)).unwrap();
        assert_eq!(&frame[..], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        let slice = frame.slice(4..6);
        drop(frame);
        assert_eq!(budget.in_flight_bytes(), 12, "a slice still holds the buffer");
        drop(slice);
        assert_eq!(budget.in_flight_bytes(), 0);
    }

    #[test]
    fn a_torn_body_releases_its_reservation() {
        let budget = Arc::new(RequestBudget::new(1024, Arc::new(Metrics::new(1)), 0));
        let mut wire: &[u8] = &[0, 0, 0, 100, 1, 2, 3];
        let size = block_on(read_frame_size(&mut wire, 1024)).unwrap();
        let memory = block_on(budget.reserve(size).unwrap());
        let torn = block_on(read_frame_body(&mut wire, size, memory));
        assert!(matches!(torn, Err(FrameError::Truncated { expected: 100 })), "{torn:?}");
        assert_eq!(budget.in_flight_bytes(), 0);
    }

    #[test]
    fn sizes_outside_the_bounds_are_refused_on_the_prefix() {
        let mut large: &[u8] = &[0, 0, 4, 1];
        assert!(matches!(block_on(read_frame_size(&mut large, 1024)), Err(FrameError::TooLarge { size: 1025, max: 1024 })));
        let mut small: &[u8] = &[0, 0, 0, 9];
        assert!(matches!(block_on(read_frame_size(&mut small, 1024)), Err(FrameError::TooSmall(9))));
        let mut empty: &[u8] = &[0, 0];
        assert!(matches!(block_on(read_frame_size(&mut empty, 1024)), Err(FrameError::Closed)));
    }
}
