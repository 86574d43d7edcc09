//! The shard runtime's reactor on this machine's disk: which io_uring ring segment writes go to
//! (third_party/glommio/FJORD-PATCH.md, patch 1).

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;
use fjord_engine::limits::DMA_ALIGNMENT_BYTES;
use fjord_engine::rt::DmaFile;

/// `io_poll` of the queue behind `path`'s file system: `Some(false)` when the device has no poll
/// queues, `None` when there is no block queue to ask (a memory file system).
fn device_polls(path: &std::path::Path) -> Option<bool> {
    let dev = std::fs::metadata(path).expect("stat").dev();
    let major = libc::major(dev);
    let queue = format!("/sys/dev/block/{major}:0/queue/io_poll");
    std::fs::read_to_string(queue).ok().map(|value| value.trim() != "0")
}

#[test]
fn segment_writes_on_a_disk_without_poll_queues_complete_by_interrupt_not_on_the_poll_ring() {
    let dir = temp_dir();
    let polls = device_polls(dir.path());
    let path = dir.path().join("segment");
    let (poll_ring_writes, main_ring_writes) = run(move || async move {
        let file = DmaFile::open_rw(&path).await.expect("open");
        // io_stats() hands over the counts since its last call: this call starts the count.
        let _ = glommio::executor().io_stats();
        for block in 0..8u64 {
            let mut buffer = file.alloc_buffer(DMA_ALIGNMENT_BYTES as usize);
            buffer.as_bytes_mut().fill(block as u8);
            file.write_at(buffer, block * DMA_ALIGNMENT_BYTES).await.expect("write");
        }
        let stats = glommio::executor().io_stats();
        file.close().await.expect("close");
        (stats.poll_ring.file_writes().0, stats.main_ring.file_writes().0)
    });
    match polls {
        Some(false) => {
            assert_eq!(poll_ring_writes, 0, "a queue with io_poll 0 must not get the busy-reaped poll ring");
            assert_eq!(main_ring_writes, 8, "the writes go to the main ring");
        }
        // A device with poll queues keeps the poll ring; a memory file system has no block queue.
        Some(true) | None => assert_eq!(poll_ring_writes + main_ring_writes, 8),
    }
}
