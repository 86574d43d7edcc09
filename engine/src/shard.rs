//! The shard table (which shard owns which partition) and the store of partitions a shard owns.
//!
//! ```text
//!  ShardTable (every shard holds a copy; pure function of topic name, partition, shard count)
//!    owner(topic, p) = (crc32c(topic) + p) mod shards   → partitions of a topic spread round-robin
//!
//!  ShardStore (one per shard, never shared)
//!    (topic, partition) ─▶ Rc<Partition>       opened lazily on first use, closed on shutdown
//! ```

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ahash::AHashMap;

use crate::cache::CacheBudget;
use crate::compaction::{CleanReport, CleanerStats};
use crate::error::{LogError, LogResult};
use crate::partition::{Partition, PartitionSettings};
use crate::rt::Notify;
use crate::topic_config::TopicConfig;

/// Maps partitions to shards. Every shard holds an identical copy.
#[derive(Debug, Clone, Copy)]
pub struct ShardTable {
    shard_count: usize,
}

impl ShardTable {
    pub fn new(shard_count: usize) -> ShardTable {
        assert!((1..=crate::limits::SHARDS_MAX).contains(&shard_count));
        ShardTable { shard_count }
    }
    pub fn shard_count(&self) -> usize {
        self.shard_count
    }
    pub fn owner(&self, topic: &str, partition: i32) -> usize {
        let hash = crc32c::crc32c(topic.as_bytes()) as u64;
        ((hash + partition as u64) % self.shard_count as u64) as usize
    }
}

/// Directory of a partition's log: `<data_dir>/<topic>-<partition>`, as Kafka names it.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// What the owner needs to open a partition (from the metadata image).
#[derive(Debug, Clone)]
pub struct PartitionSpec {
    pub topic_id: [u8; 16],
    pub leader_epoch: i32,
    pub config: TopicConfig,
}

type Key = (Rc<str>, i32);

/// The partitions one shard owns. Lives on that shard only.
pub struct ShardStore {
    pub shard_id: usize,
    pub table: ShardTable,
    data_dir: PathBuf,
    settings: PartitionSettings,
    budget: Rc<CacheBudget>,
    partitions: RefCell<AHashMap<Key, Rc<Partition>>>,
    opening: RefCell<AHashMap<Key, Rc<Notify>>>,
    cleaner_stats: Cell<CleanerStats>,
}

impl ShardStore {
    pub fn new(
        shard_id: usize,
        table: ShardTable,
        data_dir: PathBuf,
        settings: PartitionSettings,
        cache_bytes: usize,
    ) -> ShardStore {
        ShardStore {
            shard_id,
            table,
            data_dir,
            settings,
            budget: CacheBudget::new(cache_bytes),
            partitions: RefCell::new(AHashMap::new()),
            opening: RefCell::new(AHashMap::new()),
            cleaner_stats: Cell::new(CleanerStats::default()),
        }
    }

    /// The shard's log-cleaner totals since start.
    pub fn cleaner_stats(&self) -> CleanerStats {
        self.cleaner_stats.get()
    }

    /// Adds one cleaning pass to the shard's totals; returns the new totals.
    pub fn note_cleaning(&self, report: &CleanReport) -> CleanerStats {
        let mut stats = self.cleaner_stats.get();
        stats.add(report);
        self.cleaner_stats.set(stats);
        stats
    }

    pub fn cache_used_bytes(&self) -> usize {
        self.budget.used_bytes()
    }

    /// The partition if it is open on this shard.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        let key: Key = (Rc::from(topic), partition);
        self.partitions.borrow().get(&key).cloned()
    }

    /// The partition, opening (and recovering) it first if needed. Opens of one partition are
    /// never concurrent: later callers wait for the first.
    pub async fn get_or_open(&self, topic: &str, partition: i32, spec: &PartitionSpec) -> LogResult<Rc<Partition>> {
        assert_eq!(self.table.owner(topic, partition), self.shard_id, "partition routed to the wrong shard");
        loop {
            if let Some(found) = self.get(topic, partition) {
                if found.topic_id == spec.topic_id {
                    return Ok(found);
                }
                // A stale partition of a deleted topic with the same name.
                self.remove(topic, partition).await?;
                continue;
            }
            let key: Key = (Rc::from(topic), partition);
            let waiting = self.opening.borrow().get(&key).cloned();
            if let Some(notify) = waiting {
                notify.notified().await;
                continue;
            }
            let notify = Rc::new(Notify::default());
            self.opening.borrow_mut().insert(key.clone(), notify.clone());
            let dir = partition_dir(&self.data_dir, topic, partition);
            let opened = Partition::open(
                dir,
                key.0.clone(),
                partition,
                spec.topic_id,
                spec.leader_epoch,
                spec.config.clone(),
                self.settings.clone(),
                self.budget.clone(),
            )
            .await;
            self.opening.borrow_mut().remove(&key);
            notify.notify_all();
            let opened = opened?;
            tracing::debug!(
                partition = opened.name(),
                shard = self.shard_id,
                end_offset = opened.log_end_offset(),
                "opened partition"
            );
            self.partitions.borrow_mut().insert(key, opened.clone());
            return Ok(opened);
        }
    }

    /// Closes and deletes a partition's data (topic deleted).
    pub async fn remove(&self, topic: &str, partition: i32) -> LogResult<()> {
        let key: Key = (Rc::from(topic), partition);
        let removed = self.partitions.borrow_mut().remove(&key);
        match removed {
            Some(partition) => partition.delete().await,
            None => {
                let dir = partition_dir(&self.data_dir, topic, partition);
                match crate::fs::remove_dir_all(&dir) {
                    Ok(()) => Ok(()),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(error) => Err(LogError::io(dir, error)),
                }
            }
        }
    }

    /// Every open partition of this shard.
    pub fn partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Flushes, syncs and closes every partition (clean shutdown).
    pub async fn close_all(&self) {
        let partitions: Vec<Rc<Partition>> = self.partitions.borrow_mut().drain().map(|(_, partition)| partition).collect();
        for partition in partitions {
            if let Err(error) = partition.close().await {
                tracing::error!(partition = partition.name(), %error, "close failed");
            }
        }
    }
}
