//! A shard's maintenance as the broker starts it: named tasks in the shard's registry that pick
//! up a topic's changed configuration, enforce retention and count it, and stop at shutdown.

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::*;
use fjord_engine::maintenance::{self, MaintenanceHost, MaintenanceSettings, TopicConfigs};
use fjord_engine::metrics::{RetentionCause, ShardMetrics};
use fjord_engine::partition::{now_ms, Acks, Partition};
use fjord_engine::shard::{PartitionSpec, ShardStore, ShardTable};
use fjord_engine::tasks::TaskRegistry;
use fjord_engine::topic_config::TopicConfig;

const SEGMENT_BYTES: u64 = 6_000;
const RETENTION_BYTES: i64 = 20_000;
const PASS_INTERVAL: Duration = Duration::from_millis(10);
const WAIT_MAX: Duration = Duration::from_secs(10);

/// One shard's store and counters, with the topic's configuration as the metadata has it now.
struct Host {
    store: ShardStore,
    metrics: ShardMetrics,
    config: TopicConfig,
}

impl TopicConfigs for Host {
    fn config(&self, topic: &str) -> Option<TopicConfig> {
        (topic == TOPIC).then(|| self.config.clone())
    }
    fn compacted_partitions(&self) -> Vec<Rc<Partition>> {
        Vec::new()
    }
}

impl MaintenanceHost for Host {
    fn store(&self) -> &ShardStore {
        &self.store
    }
    fn metrics(&self) -> &ShardMetrics {
        &self.metrics
    }
}

#[test]
fn retention_task_applies_the_changed_topic_config_removes_segments_and_stops_at_shutdown() {
    run(|| async {
        let dir = temp_dir();
        let opened_with = topic_config(SEGMENT_BYTES);
        let mut changed = opened_with.clone();
        changed.retention_bytes = RETENTION_BYTES;
        let store = ShardStore::new(0, ShardTable::new(1), dir.path().to_path_buf(), settings(), 1 << 20);
        let spec = PartitionSpec { topic_id: TOPIC_ID, leader_epoch: LEADER_EPOCH, config: opened_with };
        let partition = store.get_or_open(TOPIC, PARTITION, &spec).await.expect("partition opens");
        for index in 0..60u64 {
            let produced = BatchSpec::simple(3, 200, index, now_ms()).encode();
            append_and_wait(&partition, produced, Acks::Synced).await;
        }
        let host = Rc::new(Host { store, metrics: ShardMetrics::default(), config: changed.clone() });
        let registry = TaskRegistry::new(0);
        let settings = MaintenanceSettings {
            retention_check_interval: PASS_INTERVAL,
            cleaner_backoff: PASS_INTERVAL,
            cleaner_io_bytes_per_second: 0,
            producer_id_expiration_ms: i64::MAX,
            producer_id_expiration_check_interval: PASS_INTERVAL,
        };
        maintenance::start(&registry, host.clone(), &settings);
        assert_eq!(registry.names(), vec!["retention", "log-cleaner", "producer-expiry", "gauges"]);
        assert_eq!(host.metrics.partitions.get(), 1, "the gauges are set at start");

        // Stamped now: retention.bytes, not retention.ms, is what removes segments.
        let size = RetentionCause::Size as usize;
        let waited = std::time::Instant::now();
        while host.metrics.retention_segments_removed[size].get() == 0 && waited.elapsed() < WAIT_MAX {
            fjord_engine::rt::sleep(PASS_INTERVAL).await;
        }
        assert!(partition.config_is(&changed), "the pass applied the topic's new configuration");
        assert!(host.metrics.retention_segments_removed[size].get() > 0, "retention.bytes removed segments");
        assert!(partition.log_start_offset() > 0);

        assert!(registry.shutdown(WAIT_MAX).await.is_empty(), "every maintenance task stopped");
        assert!(registry.running().is_empty());
        host.store.close_all().await;
    });
}
