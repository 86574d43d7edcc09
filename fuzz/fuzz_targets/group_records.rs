//! Fuzz target: the `__consumer_offsets` records a group coordinator reads back when it loads a
//! partition: classic group and offset records (`records::decode`, key versions 0..=2) and the
//! KIP-848 consumer group records (`ConsumerRecord::decode`, key versions 3..=8), routed between
//! the two the way the coordinator's replay does (net/src/coordinator/groups.rs, `GroupState::replay`).
//!
//! The input is a sequence of records, each `[key length u8][value length u16, 0xFFFF = null]
//! [key][value]` (null: a tombstone); a torn last record is dropped. A decoder must reject garbage
//! with an error, never panic or allocate without bound; a decoded record encodes and decodes back
//! to itself, and encoding is a fixed point. The decoded records are then replayed in order into
//! fresh classic and consumer group state, loading is finished and the timers fire, as a
//! coordinator does after a load: none of it may panic on anything the log held.
#![no_main]

use fjord_group::classic::{ClassicConfig, Groups};
use fjord_group::consumer::{ConsumerGroupConfig, ConsumerGroups, ConsumerRecord};
use fjord_group::records::{self, Record};
use libfuzzer_sys::fuzz_target;

const NOW_MS: i64 = 1_700_000_000_000;

/// Splits the input into (key, value) pairs; `None` values are tombstones.
fn split_records(mut data: &[u8]) -> Vec<(&[u8], Option<&[u8]>)> {
    let mut out = Vec::new();
    while data.len() >= 3 {
        let key_length = data[0] as usize;
        let value_length = u16::from_be_bytes([data[1], data[2]]);
        let value_bytes = if value_length == u16::MAX { 0 } else { value_length as usize };
        let rest = &data[3..];
        if rest.len() < key_length + value_bytes {
            break;
        }
        let (key, rest) = rest.split_at(key_length);
        let (value, rest) = rest.split_at(value_bytes);
        out.push((key, (value_length != u16::MAX).then_some(value)));
        data = rest;
    }
    out
}

fn check_classic(record: &Record) {
    let key = records::encode_key(record);
    let value = records::encode_value(record);
    let decoded = records::decode(&key, value.as_deref()).expect("an encoded group record decodes");
    assert_eq!(&decoded, record, "group record round trip");
    assert_eq!(records::encode_key(&decoded), key, "group record key encoding is a fixed point");
    assert_eq!(records::encode_value(&decoded), value, "group record value encoding is a fixed point");
}

fn check_consumer(record: &ConsumerRecord) {
    let (key, value) = record.encode();
    let decoded = ConsumerRecord::decode(&key, value.as_deref()).expect("an encoded consumer group record decodes");
    assert_eq!(&decoded, record, "consumer group record round trip");
    assert_eq!(decoded.encode(), (key, value), "consumer group record encoding is a fixed point");
    assert_eq!(ConsumerRecord::key_version_of(&record.encode().0), Some(record.key_version()));
}

fuzz_target!(|data: &[u8]| {
    let mut classic = Groups::new_loading(ClassicConfig::default(), 7);
    let mut consumer = ConsumerGroups::new(ConsumerGroupConfig::default());
    for (key, value) in split_records(data) {
        match records::decode(key, value) {
            Ok(Record::Unknown { key_version }) => {
                assert_eq!(ConsumerRecord::key_version_of(key), Some(key_version));
                if ConsumerRecord::is_consumer_key_version(key_version) {
                    if let Ok(record) = ConsumerRecord::decode(key, value) {
                        check_consumer(&record);
                        consumer.replay(&record);
                    }
                } else {
                    assert!(ConsumerRecord::decode(key, value).is_err(), "key version {key_version} decoded by both modules");
                }
            }
            Ok(record) => {
                assert!(ConsumerRecord::decode(key, value).is_err(), "a classic record decoded as a consumer group record");
                check_classic(&record);
                classic.replay(&record);
            }
            Err(_) => {}
        }
    }
    let _ = classic.finish_loading(NOW_MS);
    consumer.arm_loaded_timers(NOW_MS);
    for later_ms in [0, 10_000, 3_600_000, 8 * 86_400_000] {
        let _ = classic.tick(NOW_MS + later_ms);
        let _ = classic.next_deadline();
        let _ = consumer.tick(NOW_MS + later_ms);
        let _ = consumer.next_deadline();
    }
});
