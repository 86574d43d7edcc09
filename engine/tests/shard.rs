//! The shard table (which shard owns a partition) and the shard store (the partitions one shard
//! owns, opened lazily, closed together).

mod common;

use std::path::Path;
use std::rc::Rc;

use common::*;
use fjord_engine::partition::{Acks, Partition};
use fjord_engine::shard::{partition_dir, PartitionSpec, ShardStore, ShardTable};

fn spec(topic_id: [u8; 16]) -> PartitionSpec {
    PartitionSpec { topic_id, leader_epoch: LEADER_EPOCH, config: topic_config(1 << 20) }
}

/// The store of shard 0 of a one-shard table over `data_dir`, with 1 MiB of cache.
fn store_in(data_dir: &Path) -> ShardStore {
    ShardStore::new(0, ShardTable::new(1), data_dir.to_path_buf(), settings(), 1 << 20)
}

/// A store over `data_dir` (see [`store_in`]) and the test partition opened through it.
async fn store_with_partition(data_dir: &Path) -> (ShardStore, Rc<Partition>) {
    let store = store_in(data_dir);
    let partition = store.get_or_open(TOPIC, PARTITION, &spec(TOPIC_ID)).await.expect("opens");
    (store, partition)
}

#[test]
fn partitions_of_a_topic_spread_round_robin_over_the_shards() {
    for shard_count in [1, 2, 3, 8] {
        let table = ShardTable::new(shard_count);
        for topic in ["orders", "payments", "a", ""] {
            let first = table.owner(topic, 0);
            assert!(first < shard_count);
            for partition in 0..20 {
                assert_eq!(
                    table.owner(topic, partition),
                    (first + partition as usize) % shard_count,
                    "{topic}-{partition} on {shard_count} shards"
                );
            }
        }
    }
}

#[test]
fn concurrent_opens_of_one_partition_share_a_single_instance() {
    run(|| async {
        let data_dir = temp_dir();
        let store = Rc::new(store_in(data_dir.path()));
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                glommio::spawn_local(async move { store.get_or_open(TOPIC, PARTITION, &spec(TOPIC_ID)).await.expect("opens") })
            })
            .collect();
        let mut opened = Vec::new();
        for open in opens {
            opened.push(open.await);
        }
        for partition in &opened[1..] {
            assert!(Rc::ptr_eq(&opened[0], partition), "one partition instance per shard");
        }
        assert_eq!(store.partitions().len(), 1);
        store.close_all().await;
    });
}

#[test]
fn recreated_topic_with_a_new_id_does_not_adopt_the_old_data() {
    run(|| async {
        let data_dir = temp_dir();
        let (store, partition) = store_with_partition(data_dir.path()).await;
        for seed in 0..3 {
            append_and_wait(&partition, BatchSpec::simple(2, 10, seed, 0).encode(), Acks::Synced).await;
        }
        assert_eq!(partition.log_end_offset(), 6);
        store.close_all().await;

        // Same name, new topic id: the directory left by the deleted topic must not be adopted,
        // whether the old partition is still open on the shard or only on disk.
        let new_id = *b"fjord-new-topic!";
        let store = store_in(data_dir.path());
        let recreated = store.get_or_open(TOPIC, PARTITION, &spec(new_id)).await.expect("opens");
        assert_eq!(recreated.log_end_offset(), 0, "a recreated topic starts empty");
        append_and_wait(&recreated, BatchSpec::simple(1, 10, 9, 0).encode(), Acks::Synced).await;
        let newest = store.get_or_open(TOPIC, PARTITION, &spec(*b"fjord-3rd-topic!")).await.expect("opens");
        assert!(!Rc::ptr_eq(&recreated, &newest));
        assert_eq!(newest.log_end_offset(), 0, "the open partition of the deleted topic is replaced, not reused");
        store.close_all().await;
        assert!(partition_dir(data_dir.path(), TOPIC, PARTITION).exists());
    });
}

#[test]
fn removing_a_partition_deletes_its_directory_and_releases_its_cache() {
    run(|| async {
        let data_dir = temp_dir();
        let (store, partition) = store_with_partition(data_dir.path()).await;
        append_and_wait(&partition, BatchSpec::simple(2, 100, 1, 0).encode(), Acks::Written).await;
        assert!(store.cache_used_bytes() > 0, "test precondition: the batch is cached");
        store.remove(TOPIC, PARTITION).await.expect("removed");
        assert_eq!(store.cache_used_bytes(), 0);
        assert!(!partition_dir(data_dir.path(), TOPIC, PARTITION).exists());
        assert!(store.get(TOPIC, PARTITION).is_none());
    });
}
