//! The metadata table: the read view of the latest image, shared by every shard.
//!
//! Lives on every shard (one `Arc` shared across threads). Readers take the current image with
//! one lock and one reference-count increment and then read it without locks for as long as
//! they like; the controller swaps in a new image after each committed batch. `version()` is a
//! lock-free check for "has anything changed since offset N".

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use super::image::MetadataImage;

/// The latest published metadata image.
#[derive(Debug)]
pub struct MetadataTable {
    current: RwLock<Arc<MetadataImage>>,
    version: AtomicI64,
}

impl MetadataTable {
    pub(crate) fn new(image: Arc<MetadataImage>) -> Self {
        let version = image.offset;
        MetadataTable { current: RwLock::new(image), version: AtomicI64::new(version) }
    }

    /// The latest image. Cheap: the image itself is shared, not copied.
    pub fn current(&self) -> Arc<MetadataImage> {
        // The lock guards a single pointer swap that cannot panic halfway, so a poisoned lock
        // still holds a whole image.
        let guard = self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&guard)
    }

    /// Offset of the latest image, without taking the lock.
    pub fn version(&self) -> i64 {
        self.version.load(Ordering::Acquire)
    }

    /// Makes `image` the current one. Images only move forward.
    pub(crate) fn publish(&self, image: Arc<MetadataImage>) {
        let mut guard = self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        assert!(image.offset >= guard.offset, "metadata image went back from offset {} to {}", guard.offset, image.offset);
        let offset = image.offset;
        *guard = image;
        self.version.store(offset, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_replaces_the_current_image_and_version() {
        let table = MetadataTable::new(Arc::new(MetadataImage::empty("c")));
        assert_eq!(table.version(), -1);
        let held = table.current();
        let mut next = MetadataImage::empty("c");
        next.offset = 7;
        table.publish(Arc::new(next));
        assert_eq!(table.version(), 7);
        assert_eq!(table.current().offset, 7);
        // A reader keeps the image it took.
        assert_eq!(held.offset, -1);
    }
}
