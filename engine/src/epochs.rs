//! A partition's leader epoch history (Kafka's `LeaderEpochFileCache` and its
//! `leader-epoch-checkpoint` file): for every leader epoch that wrote to the log, the offset of its
//! first record. Replication needs it twice: a follower's fetch names the epoch of the last
//! batch it holds, and the leader answers with where that epoch ends in its own log (KIP-101,
//! KIP-279), so the follower truncates what it wrote under a stale leader; OffsetForLeaderEpoch
//! (API 23) answers the same question for consumers that check their position after a leader
//! change (KIP-320).
//!
//! ```text
//!   epochs:  (0, 0)   (2, 140)   (5, 300)        log end offset 420
//!   end_offset_for(0)  = (0, 140)    epoch 0 ends where the next known epoch starts
//!   end_offset_for(1)  = (0, 140)    unknown epoch: the one below it, ending at the next start
//!   end_offset_for(5)  = (5, 420)    the latest epoch ends at the log end
//!   end_offset_for(9)  = (-1, -1)    newer than anything known
//! ```
//!
//! The structure is pure: the partition starts a newer epoch at its log end when it opens under
//! it, truncates the history with the log, and writes the checkpoint through `fs` (`encode` /
//! `decode` are the file's text format: a version line `0`, a count line, then `epoch
//! start-offset` lines).

/// Kafka's `UNDEFINED_EPOCH` and `UNDEFINED_EPOCH_OFFSET`.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// The checkpoint file's name in a partition directory, as Kafka names it.
pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

const CHECKPOINT_VERSION: &str = "0";

/// One leader epoch and the offset of the first record it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The epoch history, ascending in both epoch and start offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochHistory {
    entries: Vec<EpochEntry>,
}

/// Why a checkpoint file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("unsupported leader-epoch-checkpoint version {0:?}")]
    Version(String),
    #[error("leader-epoch-checkpoint line {line}: {problem}")]
    Malformed { line: usize, problem: &'static str },
}

impl EpochHistory {
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Kafka `assign`: `epoch` starts at `start_offset`. A repeat of the latest epoch at the same
    /// or a later offset changes nothing; otherwise every entry with an epoch or start offset at
    /// or above the new one is dropped first (a new leader's history overrides what it replaces).
    /// Returns whether the history changed. Panics on a negative epoch or offset (a caller bug).
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        assert!(epoch >= 0 && start_offset >= 0, "leader epoch {epoch} at offset {start_offset}");
        if self.latest().is_some_and(|latest| latest.epoch == epoch && latest.start_offset <= start_offset) {
            return false;
        }
        self.entries.retain(|entry| entry.epoch < epoch && entry.start_offset < start_offset);
        self.entries.push(EpochEntry { epoch, start_offset });
        true
    }

    /// Kafka `endOffsetFor`: the largest known epoch at or below `requested` and the offset where
    /// it ends (the start of the next known epoch, or `log_end_offset` for the latest one).
    /// `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)` for an undefined or a too-new epoch; an epoch
    /// older than every known one answers itself with the first known start offset (the data
    /// below it is gone, the follower replicates from there).
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        const UNDEFINED: (i32, i64) = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        if requested == UNDEFINED_EPOCH {
            return UNDEFINED;
        }
        if self.latest().is_some_and(|latest| latest.epoch == requested) {
            return (requested, log_end_offset);
        }
        let higher = self.entries.iter().position(|entry| entry.epoch > requested);
        match higher {
            None => UNDEFINED,
            Some(0) => (requested, self.entries[0].start_offset),
            Some(index) => (self.entries[index - 1].epoch, self.entries[index].start_offset),
        }
    }

    /// The epoch of the record at `offset`: the latest entry starting at or before it.
    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        self.entries.iter().rev().find(|entry| entry.start_offset <= offset).map(|entry| entry.epoch)
    }

    /// Kafka `truncateFromEnd`: the log now ends at `end_offset`; epochs starting at or past it
    /// are forgotten. Returns whether the history changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.start_offset < end_offset);
        self.entries.len() != before
    }

    /// Kafka `truncateFromStart`: the log now starts at `start_offset`; of the epochs starting at
    /// or before it only the last stays, moved up to start there. Returns whether the history
    /// changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covered = self.entries.iter().take_while(|entry| entry.start_offset <= start_offset).count();
        if covered == 0 || (covered == 1 && self.entries[0].start_offset == start_offset) {
            return false;
        }
        let kept = EpochEntry { epoch: self.entries[covered - 1].epoch, start_offset };
        self.entries.splice(..covered, [kept]);
        true
    }

    /// The history of a log whose every record was written in `leader_epoch`, from the log start
    /// (a new partition's, and what a partition without a readable checkpoint assumes).
    pub fn single(leader_epoch: i32, log_start: i64) -> EpochHistory {
        let mut history = EpochHistory::default();
        if leader_epoch >= 0 {
            history.assign(leader_epoch, log_start.max(0));
        }
        history
    }

    /// Fits the history to a log holding `[log_start, log_end)` written under epochs up to
    /// `leader_epoch`, which starts at the log end if it is newer than any known (Kafka trims its
    /// cache to the log at load and assigns a new leader's epoch at its log end). Returns
    /// whether the history changed.
    pub fn fit_to_log(&mut self, log_start: i64, log_end: i64, leader_epoch: i32) -> bool {
        let mut changed = self.truncate_from_end(log_end);
        changed |= self.truncate_from_start(log_start);
        if leader_epoch >= 0 && self.latest().is_none_or(|latest| latest.epoch < leader_epoch) {
            changed |= self.assign(leader_epoch, log_end);
        }
        changed
    }

    /// The checkpoint file's contents.
    pub fn encode(&self) -> String {
        let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", self.entries.len());
        for entry in &self.entries {
            text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        text
    }

    /// Reads a checkpoint file. Entries must ascend in epoch and offset, as `encode` writes them.
    pub fn decode(text: &str) -> Result<EpochHistory, CheckpointError> {
        let malformed = |line: usize, problem: &'static str| CheckpointError::Malformed { line, problem };
        let mut lines = text.lines();
        let version = lines.next().ok_or(malformed(1, "empty file"))?;
        if version.trim() != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version(version.to_string()));
        }
        let count: usize = lines.next().and_then(|line| line.trim().parse().ok()).ok_or(malformed(2, "bad entry count"))?;
        let mut history = EpochHistory::default();
        for index in 0..count {
            let line = index + 3;
            let text = lines.next().ok_or(malformed(line, "fewer entries than the count"))?;
            let mut fields = text.split_whitespace();
            let epoch: i32 = fields.next().and_then(|field| field.parse().ok()).ok_or(malformed(line, "bad epoch"))?;
            let start_offset: i64 =
                fields.next().and_then(|field| field.parse().ok()).ok_or(malformed(line, "bad start offset"))?;
            if fields.next().is_some() || epoch < 0 || start_offset < 0 {
                return Err(malformed(line, "not `epoch start-offset`"));
            }
            if history.latest().is_some_and(|latest| latest.epoch >= epoch || latest.start_offset >= start_offset) {
                return Err(malformed(line, "entries out of order"));
            }
            history.entries.push(EpochEntry { epoch, start_offset });
        }
        if lines.any(|line| !line.trim().is_empty()) {
            return Err(malformed(count + 3, "more entries than the count"));
        }
        Ok(history)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn history(entries: &[(i32, i64)]) -> EpochHistory {
        let mut history = EpochHistory::default();
        for &(epoch, start_offset) in entries {
            history.assign(epoch, start_offset);
        }
        history
    }

    fn pairs(history: &EpochHistory) -> Vec<(i32, i64)> {
        history.entries().iter().map(|entry| (entry.epoch, entry.start_offset)).collect()
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        let history = history(&[(0, 0), (2, 140), (5, 300)]);
        assert_eq!(history.end_offset_for(0, 420), (0, 140));
        assert_eq!(history.end_offset_for(1, 420), (0, 140), "an unknown epoch ends with the one below it");
        assert_eq!(history.end_offset_for(2, 420), (2, 300));
        assert_eq!(history.end_offset_for(4, 420), (2, 300));
        assert_eq!(history.end_offset_for(5, 420), (5, 420), "the latest epoch ends at the log end");
        assert_eq!(history.end_offset_for(9, 420), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
        assert_eq!(history.end_offset_for(UNDEFINED_EPOCH, 420), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
        let trimmed = self::history(&[(3, 50), (5, 300)]);
        assert_eq!(trimmed.end_offset_for(1, 420), (1, 50), "older than all known: the first start offset");
        assert_eq!(EpochHistory::default().end_offset_for(0, 10), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
    }

    #[test]
    fn assign_overrides_what_a_new_leader_replaces() {
        let mut history = history(&[(0, 0), (2, 140), (5, 300)]);
        assert!(!history.assign(5, 310), "the latest epoch again, later: nothing to do");
        assert!(history.assign(5, 250), "the latest epoch, earlier: it moves down");
        assert_eq!(pairs(&history), [(0, 0), (2, 140), (5, 250)]);
        assert!(history.assign(4, 200), "an older epoch drops every entry at or above it");
        assert_eq!(pairs(&history), [(0, 0), (2, 140), (4, 200)]);
        assert!(history.assign(7, 100), "a start offset below later entries drops them too");
        assert_eq!(pairs(&history), [(0, 0), (7, 100)]);
    }

    #[test]
    fn truncation_from_either_end() {
        let mut history = history(&[(0, 0), (2, 140), (5, 300)]);
        assert!(!history.truncate_from_end(301));
        assert!(history.truncate_from_end(300));
        assert_eq!(pairs(&history), [(0, 0), (2, 140)]);
        assert!(history.truncate_from_start(150));
        assert_eq!(pairs(&history), [(2, 150)]);
        assert!(!history.truncate_from_start(150));
        assert!(!history.truncate_from_start(100), "below the first entry: nothing covered");
        assert_eq!(history.epoch_at(149), None);
        assert_eq!(history.epoch_at(150), Some(2));
    }

    #[test]
    fn checkpoint_text_round_trips_and_bad_files_are_refused() {
        let history = history(&[(0, 0), (2, 140), (5, 300)]);
        assert_eq!(history.encode(), "0\n3\n0 0\n2 140\n5 300\n");
        assert_eq!(EpochHistory::decode(&history.encode()), Ok(history));
        assert_eq!(EpochHistory::decode("0\n0\n"), Ok(EpochHistory::default()));
        assert!(matches!(EpochHistory::decode("1\n0\n"), Err(CheckpointError::Version(_))));
        for bad in ["", "0\n", "0\nx\n", "0\n2\n0 0\n", "0\n1\n0 0\n1 5\n", "0\n2\n3 10\n2 20\n", "0\n1\n0\n", "0\n1\n-1 0\n"] {
            assert!(matches!(EpochHistory::decode(bad), Err(CheckpointError::Malformed { .. })), "{bad:?}");
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Assign(i32, i64),
        TruncateEnd(i64),
        TruncateStart(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..20i32, 0..500i64).prop_map(|(epoch, offset)| Op::Assign(epoch, offset)),
            (0..500i64).prop_map(Op::TruncateEnd),
            (0..500i64).prop_map(Op::TruncateStart),
        ]
    }

    proptest! {
        /// Any sequence of operations keeps the history strictly ascending in epoch and offset,
        /// survives its checkpoint, and answers `end_offset_for` with an epoch at or below the
        /// request and an offset no later than the log end.
        #[test]
        fn history_stays_ordered_and_answers_consistently(ops in prop::collection::vec(op(), 0..40)) {
            let mut history = EpochHistory::default();
            for op in ops {
                match op {
                    Op::Assign(epoch, offset) => { history.assign(epoch, offset); }
                    Op::TruncateEnd(offset) => { history.truncate_from_end(offset); }
                    Op::TruncateStart(offset) => { history.truncate_from_start(offset); }
                }
                for pair in history.entries().windows(2) {
                    prop_assert!(pair[0].epoch < pair[1].epoch && pair[0].start_offset < pair[1].start_offset, "{history:?}");
                }
                prop_assert_eq!(EpochHistory::decode(&history.encode()), Ok(history.clone()));
            }
            let log_end = history.latest().map_or(0, |latest| latest.start_offset + 10);
            for requested in 0..25 {
                let (epoch, end) = history.end_offset_for(requested, log_end);
                if epoch != UNDEFINED_EPOCH {
                    prop_assert!(epoch <= requested);
                    prop_assert!(end <= log_end);
                    prop_assert!(history.entries().iter().any(|entry| entry.epoch == epoch) || epoch == requested);
                }
            }
        }
    }
}
