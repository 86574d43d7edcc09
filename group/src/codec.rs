//! The wire primitives every coordinator record is built from, written once: `__consumer_offsets`
//! records (records.rs, consumer/record.rs) and `__transaction_state` records (txn/record.rs).
//!
//! ```text
//!   non-flexible:  string       = length:i16 | utf-8       (-1 = null)
//!                  bytes        = length:i32 | bytes
//!                  array        = count:i32  | elements    (-1 = null)
//!   flexible:      compact len  = uvarint(length + 1)      (0 = null)   strings and arrays
//!                  tag section  = uvarint(count) | (uvarint(tag) | uvarint(size) | data)*
//!   uvarint        = 7 bits a byte, low groups first, high bit set on all but the last (at most 5)
//! ```
//!
//! Decoding reads untrusted log contents at load, so [`Reader`] checks every length against what
//! is left before it reads or allocates, and caps counts at [`DECODE_COUNT_MAX`]: truncated or
//! hostile input is a [`RecordError`], never a panic. Encoding panics only on a string too long
//! for its length prefix, which the coordinators refuse before they change any state.
//!
//! Coordinator records are framed into RecordBatch v2 by net/ (`coordinator::encode_batch`, with
//! kafka-protocol's encoder); the batch header size lives in `fjord_engine::limits`.

use bytes::BufMut;
use uuid::Uuid;

/// Most elements in one decoded array, and the longest compact string or array: a corrupt length
/// must not loop or allocate without bound. No record Kafka or Fjord writes comes near it.
pub const DECODE_COUNT_MAX: usize = 1 << 20;
/// The longest string an int16 length can hold.
pub const STRING_BYTES_MAX: usize = i16::MAX as usize;
/// Longest unsigned varint: 5 bytes carry the 32 bits Kafka's `ByteUtils.readUnsignedVarint` reads.
const UNSIGNED_VARINT_BYTES_MAX: usize = 5;

const _: () = assert!(DECODE_COUNT_MAX <= i32::MAX as usize);
const _: () = assert!(STRING_BYTES_MAX < DECODE_COUNT_MAX);

/// Why a coordinator record did not decode. One type for every record module of the crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record truncated: needed {needed} more bytes")]
    Truncated { needed: usize },
    #[error("{trailing} trailing bytes after the record")]
    Trailing { trailing: usize },
    #[error("invalid length {0}")]
    InvalidLength(i64),
    #[error("length {length} over the decoding limit {max}")]
    LengthOverLimit { length: u64, max: usize },
    #[error("unsigned varint longer than {UNSIGNED_VARINT_BYTES_MAX} bytes")]
    InvalidVarint,
    #[error("string is not UTF-8")]
    InvalidUtf8,
    #[error("null where the schema forbids it")]
    UnexpectedNull,
    #[error("key version {0} is not a consumer group record")]
    UnknownKeyVersion(i16),
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion { what: &'static str, version: i16 },
    #[error("unknown {what} {code}")]
    UnknownCode { what: &'static str, code: i8 },
}

pub fn put_string(out: &mut impl BufMut, value: &str) {
    let length = i16::try_from(value.len()).expect("strings are checked to fit an int16 length before they are recorded");
    out.put_i16(length);
    out.put_slice(value.as_bytes());
}

pub fn put_nullable_string(out: &mut impl BufMut, value: Option<&str>) {
    match value {
        Some(value) => put_string(out, value),
        None => out.put_i16(-1),
    }
}

pub fn put_bytes(out: &mut impl BufMut, value: &[u8]) {
    out.put_i32(i32::try_from(value.len()).expect("bytes longer than i32::MAX"));
    out.put_slice(value);
}

/// The int32 count of a non-flexible array.
pub fn put_array_length(out: &mut impl BufMut, length: usize) {
    out.put_i32(i32::try_from(length).expect("array length fits i32"));
}

pub fn put_unsigned_varint(out: &mut impl BufMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// The length of a compact string or array (length + 1; [`put_compact_null`] writes a null).
pub fn put_compact_length(out: &mut impl BufMut, length: usize) {
    put_unsigned_varint(out, length as u64 + 1);
}

/// A null compact string or array.
pub fn put_compact_null(out: &mut impl BufMut) {
    put_unsigned_varint(out, 0);
}

pub fn put_compact_string(out: &mut impl BufMut, value: &str) {
    put_compact_length(out, value.len());
    out.put_slice(value.as_bytes());
}

pub fn put_compact_nullable_string(out: &mut impl BufMut, value: Option<&str>) {
    match value {
        Some(value) => put_compact_string(out, value),
        None => put_compact_null(out),
    }
}

/// A tag section with no tagged fields.
pub fn put_empty_tags(out: &mut impl BufMut) {
    put_unsigned_varint(out, 0);
}

/// A tag section; `fields` must be in ascending tag order, as Kafka writes them.
pub fn put_tags(out: &mut impl BufMut, fields: &[(u64, &[u8])]) {
    debug_assert!(fields.windows(2).all(|pair| pair[0].0 < pair[1].0), "tags in ascending order");
    put_unsigned_varint(out, fields.len() as u64);
    for (tag, data) in fields {
        put_unsigned_varint(out, *tag);
        put_unsigned_varint(out, data.len() as u64);
        out.put_slice(data);
    }
}

/// A bounds-checked cursor over one key or value.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    fn need(&self, count: usize) -> Result<(), RecordError> {
        if self.bytes.len() < count {
            return Err(RecordError::Truncated { needed: count - self.bytes.len() });
        }
        Ok(())
    }

    /// The next `count` bytes.
    pub fn take(&mut self, count: usize) -> Result<&'a [u8], RecordError> {
        self.need(count)?;
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Ok(head)
    }

    /// The next `N` bytes, by value: the fixed-size fields.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        Ok(self.take(N)?.try_into().expect("take(N) returns N bytes"))
    }

    pub fn i8(&mut self) -> Result<i8, RecordError> {
        self.array().map(i8::from_be_bytes)
    }

    /// A record's leading version, which must lie in `supported`.
    pub fn version(&mut self, what: &'static str, supported: std::ops::RangeInclusive<i16>) -> Result<i16, RecordError> {
        let version = self.i16()?;
        if !supported.contains(&version) {
            return Err(RecordError::UnsupportedVersion { what, version });
        }
        Ok(version)
    }

    pub fn i16(&mut self) -> Result<i16, RecordError> {
        self.array().map(i16::from_be_bytes)
    }

    pub fn i32(&mut self) -> Result<i32, RecordError> {
        self.array().map(i32::from_be_bytes)
    }

    pub fn i64(&mut self) -> Result<i64, RecordError> {
        self.array().map(i64::from_be_bytes)
    }

    pub fn uuid(&mut self) -> Result<Uuid, RecordError> {
        self.array().map(Uuid::from_bytes)
    }

    fn utf8(&mut self, length: usize) -> Result<String, RecordError> {
        let bytes = self.take(length)?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| RecordError::InvalidUtf8)
    }

    /// An int16-length string; `None` for null (-1).
    pub fn nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        match self.i16()? {
            -1 => Ok(None),
            length => {
                let length = usize::try_from(length).map_err(|_| RecordError::InvalidLength(i64::from(length)))?;
                self.utf8(length).map(Some)
            }
        }
    }

    /// An int16-length string that the schema does not let be null.
    pub fn string(&mut self) -> Result<String, RecordError> {
        self.nullable_string()?.ok_or(RecordError::UnexpectedNull)
    }

    /// Int32-length bytes, bounded only by what is left (a member's assignment may be large).
    pub fn bytes(&mut self) -> Result<bytes::Bytes, RecordError> {
        let length = self.i32()?;
        let length = usize::try_from(length).map_err(|_| RecordError::InvalidLength(i64::from(length)))?;
        self.take(length).map(bytes::Bytes::copy_from_slice)
    }

    /// The int32 count of a non-flexible array; `None` for null (-1).
    pub fn array_length(&mut self) -> Result<Option<usize>, RecordError> {
        match self.i32()? {
            -1 => Ok(None),
            length => {
                let length = u64::try_from(length).map_err(|_| RecordError::InvalidLength(i64::from(length)))?;
                bounded(length).map(Some)
            }
        }
    }

    pub fn unsigned_varint(&mut self) -> Result<u64, RecordError> {
        let mut value = 0u64;
        for index in 0..UNSIGNED_VARINT_BYTES_MAX {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::InvalidVarint)
    }

    /// The length of a compact string or array; `None` for null (0).
    pub fn compact_length(&mut self) -> Result<Option<usize>, RecordError> {
        match self.unsigned_varint()? {
            0 => Ok(None),
            raw => bounded(raw - 1).map(Some),
        }
    }

    pub fn compact_nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        match self.compact_length()? {
            Some(length) => self.utf8(length).map(Some),
            None => Ok(None),
        }
    }

    /// A compact string that the schema does not let be null.
    pub fn compact_string(&mut self) -> Result<String, RecordError> {
        self.compact_nullable_string()?.ok_or(RecordError::UnexpectedNull)
    }

    /// The length of a compact array that the schema does not let be null.
    pub fn compact_array_length(&mut self) -> Result<usize, RecordError> {
        self.compact_length()?.ok_or(RecordError::UnexpectedNull)
    }

    /// Reads a tag section, giving each field's tag and data to `visit` (which decides what an
    /// unknown tag means; Kafka's readers skip them).
    pub fn tags(&mut self, mut visit: impl FnMut(u64, Reader<'a>) -> Result<(), RecordError>) -> Result<(), RecordError> {
        let count = self.unsigned_varint()?;
        for _ in 0..count {
            let tag = self.unsigned_varint()?;
            let size = usize::try_from(self.unsigned_varint()?).map_err(|_| RecordError::InvalidLength(-1))?;
            visit(tag, Reader::new(self.take(size)?))?;
        }
        Ok(())
    }

    /// Skips a tag section: the fields Fjord writes empty and fields added by later versions.
    pub fn skip_tags(&mut self) -> Result<(), RecordError> {
        self.tags(|_, _| Ok(()))
    }

    /// Errors unless everything was read.
    pub fn finish(&self) -> Result<(), RecordError> {
        match self.bytes.len() {
            0 => Ok(()),
            trailing => Err(RecordError::Trailing { trailing }),
        }
    }
}

fn bounded(length: u64) -> Result<usize, RecordError> {
    match usize::try_from(length) {
        Ok(length) if length <= DECODE_COUNT_MAX => Ok(length),
        _ => Err(RecordError::LengthOverLimit { length, max: DECODE_COUNT_MAX }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_varint_matches_kafka_byte_utils() {
        // ByteUtils.writeUnsignedVarint: 0 -> [0], 127 -> [0x7f], 128 -> [0x80, 1], 300 -> [0xac, 2].
        for (value, expected) in [(0u64, &[0u8][..]), (127, &[0x7f]), (128, &[0x80, 1]), (300, &[0xac, 2])] {
            let mut out = Vec::new();
            put_unsigned_varint(&mut out, value);
            assert_eq!(out, expected);
            let mut reader = Reader::new(&out);
            assert_eq!(reader.unsigned_varint(), Ok(value));
            assert_eq!(reader.finish(), Ok(()));
        }
        let mut out = Vec::new();
        put_unsigned_varint(&mut out, u64::from(u32::MAX));
        assert_eq!(out, [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(Reader::new(&out).unsigned_varint(), Ok(u64::from(u32::MAX)));
    }

    #[test]
    fn a_varint_of_more_than_five_bytes_is_an_error() {
        assert_eq!(Reader::new(&[0x80; 6]).unsigned_varint(), Err(RecordError::InvalidVarint));
        assert_eq!(Reader::new(&[0x80, 0x80]).unsigned_varint(), Err(RecordError::Truncated { needed: 1 }));
    }

    #[test]
    fn strings_round_trip_with_nulls() {
        let mut out = Vec::new();
        put_string(&mut out, "ab");
        put_nullable_string(&mut out, None);
        put_compact_string(&mut out, "c");
        put_compact_nullable_string(&mut out, None);
        assert_eq!(out, [0, 2, b'a', b'b', 0xff, 0xff, 2, b'c', 0]);
        let mut reader = Reader::new(&out);
        assert_eq!(reader.string(), Ok("ab".into()));
        assert_eq!(reader.string(), Err(RecordError::UnexpectedNull));
        assert_eq!(reader.compact_nullable_string(), Ok(Some("c".into())));
        assert_eq!(reader.compact_nullable_string(), Ok(None));
        assert_eq!(reader.finish(), Ok(()));
    }

    #[test]
    fn hostile_lengths_are_errors_before_any_allocation() {
        // An int32 array count of i32::MAX, and a compact length of u32::MAX - 1.
        assert!(matches!(Reader::new(&[0x7f, 0xff, 0xff, 0xff]).array_length(), Err(RecordError::LengthOverLimit { .. })));
        assert!(matches!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x0f]).compact_length(),
            Err(RecordError::LengthOverLimit { .. })
        ));
        // Bytes longer than what is left, and negative lengths other than null.
        assert_eq!(Reader::new(&[0, 0, 0, 9, 1]).bytes(), Err(RecordError::Truncated { needed: 8 }));
        assert_eq!(Reader::new(&[0xff, 0xfe]).nullable_string(), Err(RecordError::InvalidLength(-2)));
        assert_eq!(Reader::new(&[0xff, 0xff, 0xff, 0xfe]).array_length(), Err(RecordError::InvalidLength(-2)));
        assert_eq!(Reader::new(&[2, 0xff]).compact_string(), Err(RecordError::InvalidUtf8));
    }

    #[test]
    fn tags_are_visited_in_order_and_truncated_tags_are_errors() {
        let mut out = Vec::new();
        put_tags(&mut out, &[(0, &[1]), (5, &[2, 3])]);
        assert_eq!(out, [2, 0, 1, 1, 5, 2, 2, 3]);
        let mut seen = Vec::new();
        let mut reader = Reader::new(&out);
        reader
            .tags(|tag, mut data| {
                seen.push((tag, data.take(data.bytes.len())?.to_vec()));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, [(0, vec![1]), (5, vec![2, 3])]);
        for cut in 0..out.len() {
            assert!(Reader::new(&out[..cut]).skip_tags().is_err(), "cut at {cut}");
        }
    }
}
