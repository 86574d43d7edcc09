//! Kafka framing: a 4-byte big-endian size, then the request. Requests are read whole into one
//! buffer and decoded zero-copy (record bytes stay slices of it).

use bytes::{Bytes, BytesMut};
use futures::io::{AsyncRead, AsyncReadExt};

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
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, max_bytes: usize) -> Result<Bytes, FrameError> {
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
    let mut buffer = BytesMut::zeroed(size as usize);
    match reader.read_exact(&mut buffer).await {
        Ok(()) => Ok(buffer.freeze()),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated { expected: size as usize }),
        Err(error) => Err(FrameError::Io(error)),
    }
}
