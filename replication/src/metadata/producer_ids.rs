//! Producer ids for idempotent producers (InitProducerId), unique across restarts of this node.
//!
//! Kafka hands brokers blocks of 1000 ids through the controller (KIP-730, a `ProducerIdsRecord`
//! in the metadata log) and a broker skips the rest of its block when it restarts. Here the
//! quorum is this one node, so the block is reserved in a small file written durably (temporary
//! file, fsync, rename, directory fsync) *before* any id of the block is handed out:
//!
//! ```text
//!  <data_dir>/producer-id-block      "2000\n": ids below 2000 may have been given out
//! ```
//! After a restart allocation starts at the stored value, so no id is ever given twice. With a
//! Raft controller the reservation becomes a metadata record; the allocator's interface stays.

use std::path::{Path, PathBuf};

use fjord_engine::log::write_durably;

use super::MetadataError;

/// Ids reserved per durable write (Kafka's `ProducerIdsBlock` size).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

const PRODUCER_ID_BLOCK_FILE: &str = "producer-id-block";

/// Allocates producer ids. Lives inside the controller (one per broker process, behind its lock).
#[derive(Debug)]
pub struct ProducerIdManager {
    path: PathBuf,
    next: i64,
    /// Ids below this are reserved on disk.
    block_end: i64,
}

impl ProducerIdManager {
    /// Reads the reservation of `data_dir`; the first id handed out is the stored end.
    pub fn open(data_dir: &Path) -> Result<ProducerIdManager, MetadataError> {
        let path = data_dir.join(PRODUCER_ID_BLOCK_FILE);
        let stored = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<i64>().map_err(|_| MetadataError::MetaProperties {
                path: path.clone(),
                problem: "producer id block is not a number",
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(error) => return Err(MetadataError::io("read", &path, error)),
        };
        if stored < 0 {
            return Err(MetadataError::MetaProperties { path, problem: "producer id block is negative" });
        }
        Ok(ProducerIdManager { path, next: stored, block_end: stored })
    }

    /// The next unused producer id; reserves a new block durably first when the current one is
    /// used up.
    pub fn next_producer_id(&mut self) -> Result<i64, MetadataError> {
        if self.next >= self.block_end {
            let end = self
                .next
                .checked_add(PRODUCER_ID_BLOCK_SIZE)
                .ok_or(MetadataError::MetaProperties { path: self.path.clone(), problem: "producer ids exhausted" })?;
            write_durably(&self.path, format!("{end}\n").as_bytes())
                .map_err(|error| MetadataError::io("write", &self.path, error))?;
            tracing::debug!(from = self.next, to = end, "reserved a block of producer ids");
            self.block_end = end;
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_reopens_and_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let mut manager = ProducerIdManager::open(dir.path()).unwrap();
            for _ in 0..(PRODUCER_ID_BLOCK_SIZE + 5) {
                assert!(seen.insert(manager.next_producer_id().unwrap()), "an id was handed out twice");
            }
        }
        assert_eq!(*seen.iter().next().unwrap(), 0);
        // Every reopen skips the rest of its block, as Kafka does.
        let mut manager = ProducerIdManager::open(dir.path()).unwrap();
        assert_eq!(manager.next_producer_id().unwrap() % PRODUCER_ID_BLOCK_SIZE, 0);
    }

    #[test]
    fn unreadable_reservation_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PRODUCER_ID_BLOCK_FILE), "garbage").unwrap();
        assert!(ProducerIdManager::open(dir.path()).is_err());
    }
}
