//! The zero-copy response writer.
//!
//! A response is a list of parts: encoded bytes, cached batches (`Bytes`, shared with the batch
//! cache), and file ranges that go out with sendfile(2). A FetchResponse is encoded by the codec
//! with a 16-byte placeholder in each partition's `records`; the placeholders are then found and
//! replaced by the partition's real parts, fixing the length prefix in front of each:
//!
//! ```text
//!  encoded:  [size][header][... partition ... len=16 | PLACEHOLDER#3 | ... ]
//!  sent:     [size][header][... partition ... len=N  ] [chunk][chunk] [ ... ]
//!                                                       ^ cache Bytes or sendfile range
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use fjord_engine::partition::Chunk;
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::Encodable;

/// One response, ready to write.
#[derive(Debug, Default)]
pub struct OutFrame {
    pub parts: Vec<Chunk>,
    /// Bytes of the memory parts that are record batches shared with the batch cache, not
    /// allocated for this response.
    pub shared_bytes: usize,
}

impl OutFrame {
    /// A response encoded whole into one buffer.
    pub fn encoded(bytes: Bytes) -> OutFrame {
        OutFrame { parts: vec![Chunk::Memory(bytes)], shared_bytes: 0 }
    }

    pub fn total_bytes(&self) -> usize {
        self.parts.iter().map(Chunk::len).sum()
    }

    /// Memory this response allocated: its memory parts but the shared record batches (file
    /// parts go out by sendfile(2) and hold none).
    pub fn allocated_bytes(&self) -> usize {
        let memory: usize = self.parts.iter().map(|part| if let Chunk::Memory(bytes) = part { bytes.len() } else { 0 }).sum();
        assert!(memory >= self.shared_bytes, "{} shared bytes in {memory} bytes of memory parts", self.shared_bytes);
        memory - self.shared_bytes
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot encode response: {0}")]
pub struct EncodeError(pub String);

/// Encodes a whole response (size prefix, header, body) into one buffer.
pub fn encode<R: Encodable>(api_key: ApiKey, version: i16, correlation_id: i32, body: &R) -> Result<Bytes, EncodeError> {
    let header_version = api_key.response_header_version(version);
    encode_with_header_version(header_version, version, correlation_id, body)
}

pub fn encode_with_header_version<R: Encodable>(
    header_version: i16,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<Bytes, EncodeError> {
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let mut buffer = BytesMut::with_capacity(64);
    buffer.put_i32(0);
    header.encode(&mut buffer, header_version).map_err(|error| EncodeError(error.to_string()))?;
    body.encode(&mut buffer, version).map_err(|error| EncodeError(error.to_string()))?;
    let size = (buffer.len() - 4) as i32;
    buffer[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(buffer.freeze())
}

const PLACEHOLDER_PREFIX: &[u8; 8] = b"\xf7\x1fFJORD\x00";
pub const PLACEHOLDER_BYTES: usize = 16;

/// The placeholder standing for the records of partition `index` of a response.
pub fn placeholder(index: u64) -> Bytes {
    let mut bytes = BytesMut::with_capacity(PLACEHOLDER_BYTES);
    bytes.put_slice(PLACEHOLDER_PREFIX);
    bytes.put_u64(index);
    bytes.freeze()
}

/// Replaces the placeholders in an encoded response (from [`encode`]) by the real record parts.
/// `records[i]` belongs to `placeholder(i)`. `compact` says whether the length prefixes are
/// unsigned varints of length+1 (flexible versions) or i32 lengths. A placeholder left in the
/// response (the client would read 16 bytes of ours as records) or a size prefix that does not
/// count what goes out is a bug, and fatal.
pub fn splice_records(encoded: Bytes, records: Vec<Vec<Chunk>>, compact: bool) -> OutFrame {
    let mut parts = Vec::with_capacity(records.len() * 3 + 1);
    let mut cursor = 0usize;
    let mut extra: i64 = 0;
    let mut records: Vec<Option<Vec<Chunk>>> = records.into_iter().map(Some).collect();
    let mut search_from = 4usize;
    let mut shared_bytes = 0usize;
    while let Some(found) = find(&encoded[search_from..], PLACEHOLDER_PREFIX) {
        let at = search_from + found;
        let index = u64::from_be_bytes(encoded[at + 8..at + 16].try_into().expect("8 bytes")) as usize;
        let prefix_len = if compact { 1 } else { 4 };
        let expected_prefix: &[u8] = if compact { &[(PLACEHOLDER_BYTES + 1) as u8] } else { &[0, 0, 0, PLACEHOLDER_BYTES as u8] };
        let Some(chunks) = records.get_mut(index).and_then(Option::take) else {
            search_from = at + 1;
            continue;
        };
        if at < prefix_len || &encoded[at - prefix_len..at] != expected_prefix {
            search_from = at + 1;
            records[index] = Some(chunks);
            continue;
        }
        let length: usize = chunks.iter().map(Chunk::len).sum();
        shared_bytes += chunks.iter().map(|chunk| if let Chunk::Memory(bytes) = chunk { bytes.len() } else { 0 }).sum::<usize>();
        parts.push(Chunk::Memory(encoded.slice(cursor..at - prefix_len)));
        let mut prefix = BytesMut::with_capacity(5);
        if compact {
            put_unsigned_varint(&mut prefix, length as u32 + 1);
        } else {
            prefix.put_i32(length as i32);
        }
        extra += prefix.len() as i64 - prefix_len as i64 + length as i64 - PLACEHOLDER_BYTES as i64;
        parts.push(Chunk::Memory(prefix.freeze()));
        parts.extend(chunks);
        cursor = at + PLACEHOLDER_BYTES;
        search_from = cursor;
    }
    parts.push(Chunk::Memory(encoded.slice(cursor..)));
    // Fix the frame size prefix.
    let size = i32::from_be_bytes(encoded[0..4].try_into().expect("4 bytes")) as i64 + extra;
    if let Some(Chunk::Memory(first)) = parts.first_mut() {
        let mut fixed = BytesMut::from(&first[..]);
        fixed[0..4].copy_from_slice(&(size as i32).to_be_bytes());
        *first = fixed.freeze();
    }
    assert!(
        records.iter().all(Option::is_none),
        "a spliced response kept {} of its {} placeholders",
        records.iter().filter(|left| left.is_some()).count(),
        records.len()
    );
    let frame = OutFrame { parts, shared_bytes };
    assert_eq!(frame.total_bytes() as i64, size + 4, "a spliced response's size prefix must count its bytes");
    frame
}

fn put_unsigned_varint(buffer: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        buffer.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buffer.put_u8(value as u8);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flatten(frame: &OutFrame) -> Vec<u8> {
        let mut out = Vec::new();
        for part in &frame.parts {
            match part {
                Chunk::Memory(bytes) => out.extend_from_slice(bytes),
                Chunk::File(_) => panic!("no files here"),
            }
        }
        out
    }

    #[test]
    fn splice_replaces_placeholder_and_fixes_lengths() {
        for compact in [false, true] {
            let mut encoded = BytesMut::new();
            encoded.put_i32(0);
            encoded.put_slice(b"head");
            if compact {
                encoded.put_u8(17);
            } else {
                encoded.put_i32(16);
            }
            encoded.put_slice(&placeholder(0));
            encoded.put_slice(b"tail");
            let size = encoded.len() as i32 - 4;
            encoded[0..4].copy_from_slice(&size.to_be_bytes());
            let data = vec![Chunk::Memory(Bytes::from(vec![7u8; 200])), Chunk::Memory(Bytes::from_static(b"xy"))];
            let frame = splice_records(encoded.freeze(), vec![data], compact);
            let flat = flatten(&frame);
            let declared = i32::from_be_bytes(flat[0..4].try_into().unwrap()) as usize;
            assert_eq!(declared, flat.len() - 4);
            assert_eq!(&flat[4..8], b"head");
            let body_at = if compact {
                assert_eq!(&flat[8..10], &[0xcb, 0x01], "varint of 203");
                10
            } else {
                assert_eq!(i32::from_be_bytes(flat[8..12].try_into().unwrap()), 202);
                12
            };
            assert_eq!(&flat[body_at..body_at + 200], &[7u8; 200][..]);
            assert_eq!(&flat[flat.len() - 6..], b"xytail");
            assert_eq!(frame.shared_bytes, 202, "the spliced records are the cache's, not the response's");
            assert_eq!(frame.allocated_bytes(), flat.len() - 202);
        }
    }

    #[test]
    #[should_panic(expected = "kept 1 of its 1 placeholders")]
    fn records_whose_placeholder_is_missing_are_fatal() {
        let mut encoded = BytesMut::new();
        encoded.put_i32(8);
        encoded.put_slice(b"no-slots");
        splice_records(encoded.freeze(), vec![vec![Chunk::Memory(Bytes::from_static(b"lost"))]], false);
    }
}
