//! Committed offsets of one group: `(topic, partition) -> OffsetAndMetadata`, applied from
//! OffsetCommit records (and their tombstones) in log order.
//!
//! Lives inside its group, on the shard that owns the group's `__consumer_offsets` partition.

use std::collections::BTreeMap;

use crate::records::OffsetCommitValue;

/// Kafka `offset.metadata.max.bytes` default. Kafka compares it with the Java string length
/// (UTF-16 code units), not the UTF-8 byte count; [`metadata_too_large`] does the same.
pub const OFFSET_METADATA_CHARS_MAX: usize = 4096;

/// Which API commits: the checks differ (Kafka's `validateOffsetCommit(..., isTransactional)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitKind {
    /// OffsetCommit: a group with members takes commits only from a member of its generation.
    Plain,
    /// TxnOffsetCommit: member id and generation are checked only when the request carries them
    /// (KIP-447 fencing); v0–2 cannot carry them, and producers using the group-id-only
    /// `sendOffsetsToTransaction` leave them empty on later versions (KAFKA-18060).
    Transactional,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    pub committed_offset: i64,
    /// `None` when the committer sent -1.
    pub leader_epoch: Option<i32>,
    /// Kafka's record field is a non-nullable string: a null commit metadata is stored as "".
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    pub expire_timestamp_ms: Option<i64>,
}

impl OffsetAndMetadata {
    pub fn from_value(value: &OffsetCommitValue) -> Self {
        OffsetAndMetadata {
            committed_offset: value.offset,
            leader_epoch: (value.leader_epoch >= 0).then_some(value.leader_epoch),
            metadata: value.metadata.clone(),
            commit_timestamp_ms: value.commit_timestamp_ms,
            expire_timestamp_ms: value.expire_timestamp_ms,
        }
    }

    pub fn to_value(&self) -> OffsetCommitValue {
        OffsetCommitValue {
            offset: self.committed_offset,
            leader_epoch: self.leader_epoch.unwrap_or(-1),
            metadata: self.metadata.clone(),
            commit_timestamp_ms: self.commit_timestamp_ms,
            expire_timestamp_ms: self.expire_timestamp_ms,
        }
    }
}

/// Whether commit metadata exceeds `chars_max` as Kafka counts it (`String.length()`).
pub fn metadata_too_large(metadata: &str, chars_max: usize) -> bool {
    // UTF-16 length is at least the char count and at most the byte count: skip the count when
    // the byte length already settles it.
    metadata.len() > chars_max && metadata.encode_utf16().count() > chars_max
}

/// The committed offsets of one group, ordered by topic then partition so that "fetch all"
/// answers in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupOffsets {
    topics: BTreeMap<String, BTreeMap<i32, OffsetAndMetadata>>,
}

impl GroupOffsets {
    pub fn get(&self, topic: &str, partition: i32) -> Option<&OffsetAndMetadata> {
        self.topics.get(topic)?.get(&partition)
    }

    pub fn commit(&mut self, topic: &str, partition: i32, offset: OffsetAndMetadata) {
        self.topics.entry(topic.to_owned()).or_default().insert(partition, offset);
    }

    /// Removes one partition's offset; returns whether there was one.
    pub fn remove(&mut self, topic: &str, partition: i32) -> bool {
        let Some(partitions) = self.topics.get_mut(topic) else { return false };
        let removed = partitions.remove(&partition).is_some();
        if partitions.is_empty() {
            self.topics.remove(topic);
        }
        removed
    }

    /// Applies one OffsetCommit record (`None` = tombstone).
    pub fn replay(&mut self, topic: &str, partition: i32, value: Option<&OffsetCommitValue>) {
        match value {
            Some(value) => self.commit(topic, partition, OffsetAndMetadata::from_value(value)),
            None => {
                self.remove(topic, partition);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    pub fn len(&self) -> usize {
        self.topics.values().map(BTreeMap::len).sum()
    }

    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.keys().map(String::as_str)
    }

    pub fn partitions(&self, topic: &str) -> impl Iterator<Item = (i32, &OffsetAndMetadata)> {
        self.topics.get(topic).into_iter().flat_map(|partitions| partitions.iter().map(|(p, o)| (*p, o)))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, i32, &OffsetAndMetadata)> {
        self.topics.iter().flat_map(|(topic, partitions)| partitions.iter().map(move |(p, o)| (topic.as_str(), *p, o)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(committed_offset: i64) -> OffsetAndMetadata {
        OffsetAndMetadata {
            committed_offset,
            leader_epoch: None,
            metadata: "m".into(),
            commit_timestamp_ms: 1,
            expire_timestamp_ms: None,
        }
    }

    #[test]
    fn commit_replace_and_remove() {
        let mut offsets = GroupOffsets::default();
        offsets.commit("t", 0, offset(1));
        offsets.commit("t", 0, offset(2));
        offsets.commit("u", 3, offset(3));
        assert_eq!(offsets.get("t", 0).map(|o| o.committed_offset), Some(2));
        assert_eq!(offsets.len(), 2);
        assert!(offsets.remove("t", 0));
        assert!(!offsets.remove("t", 0));
        assert_eq!(offsets.topics().collect::<Vec<_>>(), ["u"]);
    }

    #[test]
    fn replay_applies_values_and_tombstones_in_order() {
        let mut offsets = GroupOffsets::default();
        offsets.replay("t", 1, Some(&offset(7).to_value()));
        assert_eq!(offsets.get("t", 1), Some(&offset(7)));
        offsets.replay("t", 1, None);
        assert!(offsets.is_empty());
    }

    #[test]
    fn metadata_limit_counts_utf16_units_like_java() {
        assert!(!metadata_too_large(&"a".repeat(4096), OFFSET_METADATA_CHARS_MAX));
        assert!(metadata_too_large(&"a".repeat(4097), OFFSET_METADATA_CHARS_MAX));
        // 'é' is 2 UTF-8 bytes but 1 UTF-16 unit: 4096 of them are within Kafka's limit.
        assert!(!metadata_too_large(&"é".repeat(4096), OFFSET_METADATA_CHARS_MAX));
    }
}
