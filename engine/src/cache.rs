//! The batch cache: recent batches of a partition, as zero-copy `Bytes`, for tailing consumers.
//!
//! ```text
//!  partition cache (oldest → newest)          shard budget (shared by all partitions of a shard)
//!  [b0][b1][b2] ... [bn]   ← append            used_bytes ≤ max_bytes; eviction takes the oldest
//!   ^ evicted first, but never past the written end (unwritten batches are only here)
//! ```
//! Data written with O_DIRECT is not in the page cache (DESIGN.md), so the tail must be served
//! from here, not the disk.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

/// The byte budget of all batch caches on one shard. Lives on one shard.
#[derive(Debug)]
pub struct CacheBudget {
    used_bytes: Cell<usize>,
    max_bytes: usize,
}

impl CacheBudget {
    pub fn new(max_bytes: usize) -> Rc<CacheBudget> {
        Rc::new(CacheBudget { used_bytes: Cell::new(0), max_bytes })
    }
    pub fn used_bytes(&self) -> usize {
        self.used_bytes.get()
    }
    fn over(&self) -> bool {
        self.used_bytes.get() > self.max_bytes
    }
}

#[derive(Debug, Clone)]
pub struct CachedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub bytes: Bytes,
}

/// Recent batches of one partition. Lives on the partition's shard.
#[derive(Debug)]
pub struct BatchCache {
    batches: VecDeque<CachedBatch>,
    budget: Rc<CacheBudget>,
    bytes: usize,
}

impl BatchCache {
    pub fn new(budget: Rc<CacheBudget>) -> BatchCache {
        BatchCache { batches: VecDeque::new(), budget, bytes: 0 }
    }

    /// Adds a batch; then evicts the oldest batches below `written_end` while over budget.
    pub fn push(&mut self, batch: CachedBatch, written_end: i64) {
        debug_assert!(self.batches.back().is_none_or(|last| last.last_offset < batch.base_offset));
        self.bytes += batch.bytes.len();
        self.budget.used_bytes.set(self.budget.used_bytes.get() + batch.bytes.len());
        self.batches.push_back(batch);
        self.evict(written_end);
    }

    pub fn evict(&mut self, written_end: i64) {
        while self.budget.over() {
            match self.batches.front() {
                Some(oldest) if oldest.last_offset < written_end => {
                    let oldest = self.batches.pop_front().expect("front exists");
                    self.forget(oldest.bytes.len());
                }
                _ => break,
            }
        }
    }

    fn forget(&mut self, length: usize) {
        self.bytes -= length;
        self.budget.used_bytes.set(self.budget.used_bytes.get() - length);
    }

    /// First offset the cache can serve from.
    pub fn first_offset(&self) -> Option<i64> {
        self.batches.front().map(|batch| batch.base_offset)
    }

    /// Batches from the one containing `offset`, up to `max_bytes` (at least one batch), only
    /// those ending before `end_offset`. `None` if the cache does not reach back to `offset`.
    pub fn read(&self, offset: i64, max_bytes: usize, end_offset: i64) -> Option<Vec<Bytes>> {
        let first = self.batches.front()?;
        if offset < first.base_offset {
            return None;
        }
        let start = self.batches.partition_point(|batch| batch.last_offset < offset);
        let mut out = Vec::new();
        let mut total = 0usize;
        for batch in self.batches.range(start..) {
            if batch.last_offset >= end_offset || (!out.is_empty() && total + batch.bytes.len() > max_bytes) {
                break;
            }
            total += batch.bytes.len();
            out.push(batch.bytes.clone());
        }
        Some(out)
    }

    /// Drops batches that end below `offset` (their segments were replaced by the cleaner).
    /// Batches there are all written (closed segments), and the rest stays contiguous.
    pub fn remove_below(&mut self, offset: i64) {
        while let Some(first) = self.batches.front() {
            if first.last_offset >= offset {
                break;
            }
            let first = self.batches.pop_front().expect("front exists");
            self.forget(first.bytes.len());
        }
    }

    /// Drops batches at or after `offset` (truncation).
    pub fn truncate_to(&mut self, offset: i64) {
        while let Some(last) = self.batches.back() {
            if last.last_offset < offset {
                break;
            }
            let last = self.batches.pop_back().expect("back exists");
            self.forget(last.bytes.len());
        }
    }

    /// Drops everything (partition closed or deleted).
    pub fn clear(&mut self) {
        while let Some(batch) = self.batches.pop_front() {
            self.forget(batch.bytes.len());
        }
    }
}

impl Drop for BatchCache {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: i64, count: i64, size: usize) -> CachedBatch {
        CachedBatch { base_offset: base, last_offset: base + count - 1, bytes: Bytes::from(vec![0u8; size]) }
    }

    #[test]
    fn read_starts_at_batch_containing_offset_and_honours_limits() {
        let budget = CacheBudget::new(1 << 20);
        let mut cache = BatchCache::new(budget);
        cache.push(batch(0, 10, 100), 100);
        cache.push(batch(10, 10, 100), 100);
        cache.push(batch(20, 10, 100), 100);
        assert_eq!(cache.read(15, 1000, 100).unwrap().len(), 2);
        assert_eq!(cache.read(15, 150, 100).unwrap().len(), 1);
        assert_eq!(cache.read(15, 1, 100).unwrap().len(), 1, "first batch always whole");
        assert_eq!(cache.read(0, 1000, 20).unwrap().len(), 2, "stops at end offset");
    }

    #[test]
    fn eviction_keeps_unwritten_batches() {
        let budget = CacheBudget::new(250);
        let mut cache = BatchCache::new(budget.clone());
        cache.push(batch(0, 1, 100), 0);
        cache.push(batch(1, 1, 100), 0);
        cache.push(batch(2, 1, 100), 0);
        assert_eq!(budget.used_bytes(), 300, "nothing written yet: nothing evictable");
        cache.evict(2);
        assert_eq!(budget.used_bytes(), 200);
        assert_eq!(cache.first_offset(), Some(1));
        cache.truncate_to(2);
        assert_eq!(budget.used_bytes(), 100);
        drop(cache);
        assert_eq!(budget.used_bytes(), 0);
    }
}
