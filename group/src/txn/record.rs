//! Keys and values of `__transaction_state` records, byte for byte as Kafka writes them.
//!
//! Schemas: apache/kafka `transaction-coordinator/src/main/resources/common/message/
//! {TransactionLogKey,TransactionLogValue}.json`; read and written by Kafka's `TransactionLog`.
//!
//! ```text
//!   key      = version:i16 (0) | transactional_id:string(i16 length)
//!   value v0 = version:i16 | producer_id:i64 | producer_epoch:i16 | timeout_ms:i32 | status:i8
//!            | partitions:nullable [topic:string(i16) | [partition:i32](i32 count)](i32 count, -1 = null)
//!            | last_update_ms:i64 | start_ms:i64
//!   value v1 = the same fields, flexible: compact strings and arrays (uvarint length + 1, 0 = null),
//!              an empty tag section after each partitions entry, and a tag section at the end:
//!              tag 0 PreviousProducerId:i64, tag 1 NextProducerId:i64 (default -1),
//!              tag 2 ClientTransactionVersion:i16 (default 0), each written only when not default.
//!   value absent = tombstone (transactional id expired)
//! ```
//!
//! Kafka writes the partitions of a transaction as null in state Empty and ignores them when it
//! reads an Empty value; both are done here too. Partitions are written sorted (topic, then
//! partition) where Kafka writes them in hash order: readers do not care about the order.

use bytes::{BufMut, Bytes, BytesMut};

/// The crate's record decoding error, under the name this module has always given it.
pub use crate::codec::RecordError as TxnRecordError;
use crate::codec::{
    put_array_length, put_compact_length, put_compact_null, put_compact_string, put_empty_tags, put_string, put_tags, Reader,
};

/// TransactionLogKey version, and the record type Kafka's newer `CoordinatorRecordType` puts first.
pub const KEY_VERSION: i16 = 0;
/// TransactionLogValue v0: non-flexible, written by Kafka with transaction.version 0.
pub const VALUE_VERSION_V0: i16 = 0;
/// TransactionLogValue v1: flexible with tagged fields, written by Kafka with transaction.version >= 1.
pub const VALUE_VERSION_V1: i16 = 1;

/// The longest transactional id a key can hold (int16 length).
pub const TRANSACTIONAL_ID_BYTES_MAX: usize = crate::codec::STRING_BYTES_MAX;

const TAG_PREVIOUS_PRODUCER_ID: u64 = 0;
const TAG_NEXT_PRODUCER_ID: u64 = 1;
const TAG_CLIENT_TRANSACTION_VERSION: u64 = 2;

/// Kafka `TransactionState` (TransactionMetadata.scala); the discriminant is the `TransactionStatus`
/// byte of the record and the name is what DescribeTransactions and ListTransactions show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn id(self) -> i8 {
        self as i8
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|state| state.id() == id)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|state| state.as_str() == name)
    }
}

/// One `__transaction_state` record, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    pub transactional_id: String,
    /// `None` is a tombstone: the transactional id expired.
    pub value: Option<TxnValue>,
}

/// TransactionLogValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnValue {
    pub producer_id: i64,
    /// The producer id before the last producer id rotation (epoch exhaustion), -1 if none.
    pub previous_producer_id: i64,
    /// Only used by transaction version 2 (KIP-890 part 2), which this coordinator does not run: -1.
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub transaction_timeout_ms: i32,
    pub state: TxnState,
    /// Topic -> partitions, sorted. Empty (and written as null) in state Empty.
    pub partitions: Vec<(String, Vec<i32>)>,
    pub last_update_ms: i64,
    /// -1 when no transaction has started.
    pub start_ms: i64,
    pub client_transaction_version: i16,
}

impl TxnRecord {
    /// Key and value bytes; the value is written as v1 (see [`TxnValue::encode`]).
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        (encode_key(&self.transactional_id), self.value.as_ref().map(|value| value.encode(VALUE_VERSION_V1)))
    }

    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<TxnRecord, TxnRecordError> {
        let mut reader = Reader::new(key);
        reader.version("TransactionLogKey", KEY_VERSION..=KEY_VERSION)?;
        let transactional_id = reader.string()?;
        reader.finish()?;
        let value = value.map(TxnValue::decode).transpose()?;
        Ok(TxnRecord { transactional_id, value })
    }
}

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + transactional_id.len());
    out.put_i16(KEY_VERSION);
    put_string(&mut out, transactional_id);
    out.freeze()
}

impl TxnValue {
    /// Encodes as `version` (0 or 1). Fjord writes v1 so that a producer id rotation keeps its
    /// previous producer id across a reload (KIP-360 retries); v0 cannot carry the tagged fields and
    /// drops them, as Kafka's generated serializer does for fields absent from a version.
    pub fn encode(&self, version: i16) -> Bytes {
        assert!(version == VALUE_VERSION_V0 || version == VALUE_VERSION_V1, "TransactionLogValue version {version}");
        let flexible = version >= VALUE_VERSION_V1;
        let mut out = BytesMut::with_capacity(64);
        out.put_i16(version);
        out.put_i64(self.producer_id);
        out.put_i16(self.producer_epoch);
        out.put_i32(self.transaction_timeout_ms);
        out.put_i8(self.state.id());
        if self.state == TxnState::Empty {
            debug_assert!(self.partitions.is_empty(), "an Empty transaction has no partitions");
            if flexible {
                put_compact_null(&mut out);
            } else {
                out.put_i32(-1);
            }
        } else {
            put_length(&mut out, self.partitions.len(), flexible);
            for (topic, partitions) in &self.partitions {
                if flexible {
                    put_compact_string(&mut out, topic);
                } else {
                    put_string(&mut out, topic);
                }
                put_length(&mut out, partitions.len(), flexible);
                partitions.iter().for_each(|partition| out.put_i32(*partition));
                if flexible {
                    put_empty_tags(&mut out);
                }
            }
        }
        out.put_i64(self.last_update_ms);
        out.put_i64(self.start_ms);
        if flexible {
            let previous_producer_id = self.previous_producer_id.to_be_bytes();
            let next_producer_id = self.next_producer_id.to_be_bytes();
            let client_transaction_version = self.client_transaction_version.to_be_bytes();
            let tags: Vec<(u64, &[u8])> = [
                (self.previous_producer_id != -1).then_some((TAG_PREVIOUS_PRODUCER_ID, &previous_producer_id[..])),
                (self.next_producer_id != -1).then_some((TAG_NEXT_PRODUCER_ID, &next_producer_id[..])),
                (self.client_transaction_version != 0)
                    .then_some((TAG_CLIENT_TRANSACTION_VERSION, &client_transaction_version[..])),
            ]
            .into_iter()
            .flatten()
            .collect();
            put_tags(&mut out, &tags);
        }
        out.freeze()
    }

    pub fn decode(bytes: &[u8]) -> Result<TxnValue, TxnRecordError> {
        let mut reader = Reader::new(bytes);
        let version = reader.version("TransactionLogValue", VALUE_VERSION_V0..=VALUE_VERSION_V1)?;
        let flexible = version >= VALUE_VERSION_V1;
        let producer_id = reader.i64()?;
        let producer_epoch = reader.i16()?;
        let transaction_timeout_ms = reader.i32()?;
        let status = reader.i8()?;
        let state = TxnState::from_id(status).ok_or(TxnRecordError::UnknownCode { what: "transaction state", code: status })?;
        let mut partitions = Vec::new();
        if let Some(count) = get_length(&mut reader, flexible)? {
            for _ in 0..count {
                let topic = if flexible { reader.compact_string()? } else { reader.string()? };
                let partition_count = get_length(&mut reader, flexible)?.ok_or(TxnRecordError::UnexpectedNull)?;
                let mut ids = Vec::with_capacity(partition_count.min(1024));
                for _ in 0..partition_count {
                    ids.push(reader.i32()?);
                }
                if flexible {
                    reader.skip_tags()?;
                }
                partitions.push((topic, ids));
            }
        }
        let last_update_ms = reader.i64()?;
        let start_ms = reader.i64()?;
        let mut value = TxnValue {
            producer_id,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch,
            transaction_timeout_ms,
            state,
            partitions,
            last_update_ms,
            start_ms,
            client_transaction_version: 0,
        };
        if flexible {
            reader.tags(|tag, mut data| {
                match tag {
                    TAG_PREVIOUS_PRODUCER_ID => value.previous_producer_id = data.i64()?,
                    TAG_NEXT_PRODUCER_ID => value.next_producer_id = data.i64()?,
                    TAG_CLIENT_TRANSACTION_VERSION => value.client_transaction_version = data.i16()?,
                    // Tags added by later Kafka versions: skipped, as Kafka's reader does.
                    _ => return Ok(()),
                }
                data.finish()
            })?;
        }
        reader.finish()?;
        // Kafka's TransactionLog reader ignores the partitions of an Empty transaction.
        if value.state == TxnState::Empty {
            value.partitions.clear();
        }
        Ok(value)
    }
}

/// An array count: int32 (-1 = null) in v0, compact in v1.
fn put_length(out: &mut BytesMut, length: usize, flexible: bool) {
    if flexible {
        put_compact_length(out, length);
    } else {
        put_array_length(out, length);
    }
}

/// `None` for a null array.
fn get_length(reader: &mut Reader<'_>, flexible: bool) -> Result<Option<usize>, TxnRecordError> {
    if flexible {
        reader.compact_length()
    } else {
        reader.array_length()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ongoing_value() -> TxnValue {
        TxnValue {
            producer_id: 5,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 2,
            transaction_timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: vec![("t".into(), vec![0, 3])],
            last_update_ms: 1_000,
            start_ms: 900,
            client_transaction_version: 0,
        }
    }

    #[test]
    fn key_golden_bytes_match_transaction_log_key_v0() {
        // TransactionLogKey.json v0: version int16 0, then TransactionalId as an int16-length string.
        let key = encode_key("tx");
        assert_eq!(&key[..], [0, 0, 0, 2, b't', b'x']);
        assert_eq!(
            TxnRecord::decode(&key, None),
            Ok(TxnRecord { transactional_id: "tx".into(), value: None }),
            "an absent value is a tombstone"
        );
    }

    /// Both value versions of one ongoing transaction, byte for byte as TransactionLogValue.json
    /// lays them out: v0 fixed-width, v1 compact with tagged fields.
    #[test]
    fn value_golden_bytes_match_transaction_log_value_json() {
        #[rustfmt::skip]
        let v0: Vec<u8> = [
            &[0, 0][..],                         // version 0
            &[0, 0, 0, 0, 0, 0, 0, 5],           // ProducerId
            &[0, 2],                             // ProducerEpoch
            &[0, 0, 0xea, 0x60],                 // TransactionTimeoutMs 60000
            &[1],                                // TransactionStatus Ongoing
            &[0, 0, 0, 1],                       // TransactionPartitions: 1 entry
            &[0, 1, b't'],                       //   Topic
            &[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3], //   PartitionIds [0, 3]
            &[0, 0, 0, 0, 0, 0, 0x03, 0xe8],     // TransactionLastUpdateTimestampMs 1000
            &[0, 0, 0, 0, 0, 0, 0x03, 0x84],     // TransactionStartTimestampMs 900
        ]
        .concat();
        #[rustfmt::skip]
        let v1: Vec<u8> = [
            &[0, 1][..],                         // version 1
            &[0, 0, 0, 0, 0, 0, 0, 5],           // ProducerId
            &[0, 2],                             // ProducerEpoch
            &[0, 0, 0xea, 0x60],                 // TransactionTimeoutMs
            &[1],                                // TransactionStatus Ongoing
            &[2],                                // compact array: 1 entry
            &[2, b't'],                          //   compact string "t"
            &[3, 0, 0, 0, 0, 0, 0, 0, 3],        //   compact [0, 3]
            &[0],                                //   entry tagged fields: none
            &[0, 0, 0, 0, 0, 0, 0x03, 0xe8],     // TransactionLastUpdateTimestampMs
            &[0, 0, 0, 0, 0, 0, 0x03, 0x84],     // TransactionStartTimestampMs
            &[0],                                // tagged fields: all default
        ]
        .concat();
        for (version, expected) in [(VALUE_VERSION_V0, v0), (VALUE_VERSION_V1, v1)] {
            let value = ongoing_value();
            assert_eq!(&value.encode(version)[..], &expected[..], "value version {version}");
            assert_eq!(TxnValue::decode(&expected), Ok(value), "value version {version}");
        }
    }

    #[test]
    fn value_v1_writes_non_default_tags_in_tag_order() {
        let value = TxnValue {
            previous_producer_id: 4,
            next_producer_id: 6,
            client_transaction_version: 2,
            state: TxnState::Empty,
            partitions: vec![],
            start_ms: -1,
            ..ongoing_value()
        };
        let bytes = value.encode(VALUE_VERSION_V1);
        // Empty state: partitions are a null compact array (0).
        assert_eq!(bytes[2 + 8 + 2 + 4 + 1], 0);
        #[rustfmt::skip]
        let tags: &[u8] = &[
            3,                                   // three tagged fields
            0, 8, 0, 0, 0, 0, 0, 0, 0, 4,        // tag 0 PreviousProducerId
            1, 8, 0, 0, 0, 0, 0, 0, 0, 6,        // tag 1 NextProducerId
            2, 2, 0, 2,                          // tag 2 ClientTransactionVersion
        ];
        assert!(bytes.ends_with(tags));
        assert_eq!(TxnValue::decode(&bytes), Ok(value));
    }

    #[test]
    fn empty_state_writes_null_partitions_in_v0_and_decode_ignores_partitions() {
        let value = TxnValue { state: TxnState::Empty, partitions: vec![], start_ms: -1, ..ongoing_value() };
        let bytes = value.encode(VALUE_VERSION_V0);
        assert_eq!(&bytes[17..21], [0xff, 0xff, 0xff, 0xff]);
        assert_eq!(TxnValue::decode(&bytes), Ok(value.clone()));
        // A v0 Empty value that still lists partitions (Kafka never writes one) decodes without them.
        let mut with_partitions = ongoing_value().encode(VALUE_VERSION_V0).to_vec();
        with_partitions[16] = TxnState::Empty.id() as u8;
        assert!(TxnValue::decode(&with_partitions).unwrap().partitions.is_empty());
    }

    #[test]
    fn unknown_tags_are_skipped() {
        let mut bytes = ongoing_value().encode(VALUE_VERSION_V1).to_vec();
        let last = bytes.len() - 1;
        bytes[last] = 1; // one tagged field
        bytes.extend_from_slice(&[9, 1, 0xaa]); // tag 9, one byte
        assert_eq!(TxnValue::decode(&bytes), Ok(ongoing_value()));
    }

    #[test]
    fn truncated_or_trailing_input_is_an_error_not_a_panic() {
        for version in [VALUE_VERSION_V0, VALUE_VERSION_V1] {
            let bytes = ongoing_value().encode(version);
            for cut in 0..bytes.len() {
                assert!(TxnValue::decode(&bytes[..cut]).is_err(), "v{version} cut at {cut}");
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            assert!(TxnValue::decode(&longer).is_err());
        }
        let key = encode_key("tx");
        for cut in 0..key.len() {
            assert!(TxnRecord::decode(&key[..cut], None).is_err());
        }
        assert_eq!(
            TxnValue::decode(&[0, 7]),
            Err(TxnRecordError::UnsupportedVersion { what: "TransactionLogValue", version: 7 })
        );
    }

    #[test]
    fn state_ids_and_names_follow_kafka_transaction_state() {
        let names: Vec<(i8, &str)> = TxnState::ALL.iter().map(|state| (state.id(), state.as_str())).collect();
        assert_eq!(
            names,
            [
                (0, "Empty"),
                (1, "Ongoing"),
                (2, "PrepareCommit"),
                (3, "PrepareAbort"),
                (4, "CompleteCommit"),
                (5, "CompleteAbort"),
                (6, "Dead"),
                (7, "PrepareEpochFence")
            ]
        );
        assert_eq!(TxnState::from_id(8), None);
        assert_eq!(TxnState::from_name("Ongoing"), Some(TxnState::Ongoing));
    }
}
