//! Controller tests: Kafka's validation rules and codes, durability across reopen, and a
//! property test of the whole metadata path against a simple model.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use super::*;

const NODE: i32 = 1;

fn open_at(dir: &Path) -> (Controller, Arc<MetadataTable>) {
    Controller::open(dir, NODE, "localhost", 9092).unwrap()
}

fn open_with(dir: &Path, log: LogOptions) -> Controller {
    let options = ControllerOptions { rack: None, log };
    Controller::open_with_options(dir, NODE, "localhost", 9092, options).unwrap().0
}

fn no_configs() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn create(controller: &mut Controller, name: &str, partitions: i32) -> Result<Arc<TopicImage>, ControllerError> {
    controller.create_topic(name, partitions, -1, None, &no_configs(), false, 1)
}

fn code<T: std::fmt::Debug>(result: Result<T, ControllerError>) -> (i16, String) {
    let error = result.unwrap_err();
    (error.kafka_error_code(), error.message())
}

#[test]
fn open_registers_this_broker_once() {
    let dir = tempfile::tempdir().unwrap();
    let (controller, table) = open_at(dir.path());
    let image = table.current();
    assert_eq!(image.brokers[&NODE].port, 9092);
    assert_eq!(image.offset, 0);
    assert_eq!(image.cluster_id.len(), 22);
    let cluster_id = image.cluster_id.clone();
    let epoch = controller.epoch();
    drop(controller);

    let (controller, table) = open_at(dir.path());
    assert_eq!(table.current().offset, 0, "same address: no new registration");
    assert_eq!(table.current().cluster_id, cluster_id);
    assert_eq!(controller.epoch(), epoch + 1, "each start is a new term");
    drop(controller);

    let (_, table) = Controller::open(dir.path(), NODE, "localhost", 9093).unwrap();
    assert_eq!(table.current().offset, 1);
    assert_eq!(table.current().brokers[&NODE].port, 9093);
}

#[test]
fn created_topic_is_led_by_this_node_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, table) = open_at(dir.path());
    let topic = controller.create_topic("orders", -1, -1, None, &configs(&[("retention.ms", "1000")]), false, 3).unwrap();
    assert_eq!(topic.partitions.len(), 3, "-1 takes the broker default");
    for (index, partition) in topic.partitions.iter().enumerate() {
        assert_eq!(partition.partition, index as i32);
        assert_eq!((partition.leader, partition.leader_epoch), (NODE, 0));
        assert_eq!((partition.replicas.clone(), partition.isr.clone()), (vec![NODE], vec![NODE]));
    }
    assert_eq!(table.current().topics["orders"], topic);
    assert_eq!(controller.topic_config("orders").unwrap().retention_ms, 1000);
    let before = table.current();
    drop(controller);
    let (_, table) = open_at(dir.path());
    assert_eq!(*table.current(), *before);
}

#[test]
fn existing_topic_is_refused_with_code_36() {
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, _) = open_at(dir.path());
    create(&mut controller, "t", 1).unwrap();
    assert_eq!(code(create(&mut controller, "t", 1)), (36, "Topic 't' already exists.".to_string()));
}

#[test]
fn invalid_topic_names_are_refused_with_code_17() {
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, _) = open_at(dir.path());
    let long = "x".repeat(250);
    for name in ["", ".", "..", long.as_str(), "a b", "ü"] {
        assert_eq!(code(create(&mut controller, name, 1)).0, 17, "{name:?}");
    }
    assert_eq!(
        code(create(&mut controller, "a b", 1)).1,
        "Topic name \"a b\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
    );
    assert!(create(&mut controller, &"y".repeat(249), 1).is_ok());
    create(&mut controller, "metrics.cpu", 1).unwrap();
    assert_eq!(
        code(create(&mut controller, "metrics_cpu", 1)),
        (17, "Topic 'metrics_cpu' collides with existing topic: metrics.cpu".to_string())
    );
}

#[test]
fn partition_and_replication_counts_follow_kafkas_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, _) = open_at(dir.path());
    let none = no_configs();
    assert_eq!(code(controller.create_topic("t", 0, -1, None, &none, false, 1)).0, 37);
    assert_eq!(code(controller.create_topic("t", -2, -1, None, &none, false, 1)).0, 37);
    assert_eq!(code(controller.create_topic("t", 1, 0, None, &none, false, 1)).0, 38);
    assert_eq!(
        code(controller.create_topic("t", 1, 3, None, &none, false, 1)),
        (
            38,
            "Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot \
             be reached because only 1 broker(s) are registered."
                .to_string()
        )
    );
    let too_many = PARTITIONS_PER_TOPIC_MAX + 1;
    assert_eq!(code(controller.create_topic("t", too_many, -1, None, &none, false, 1)).0, 44);
}

#[test]
fn manual_assignments_are_checked_like_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, _) = open_at(dir.path());
    let none = no_configs();
    let mut assign = |assignments: Vec<(i32, Vec<i32>)>, partitions: i32, rf: i16| {
        code(controller.create_topic("t", partitions, rf, Some(assignments), &none, false, 1))
    };
    assert_eq!(assign(vec![(0, vec![NODE])], 1, -1).0, 42);
    assert_eq!(assign(vec![(0, vec![NODE])], -1, 1).0, 42);
    assert_eq!(
        assign(vec![(0, vec![7])], -1, -1),
        (39, "The manual partition assignment includes broker 7, but no such broker is registered.".into())
    );
    assert_eq!(
        assign(vec![(0, vec![NODE, NODE])], -1, -1),
        (39, "The manual partition assignment includes the broker 1 more than once.".into())
    );
    assert_eq!(assign(vec![(0, vec![])], -1, -1).0, 39);
    assert_eq!(assign(vec![(0, vec![NODE]), (0, vec![NODE])], -1, -1).0, 39);
    assert_eq!(assign(vec![(1, vec![NODE])], -1, -1).0, 39);
    let topic = controller.create_topic("t", -1, -1, Some(vec![(1, vec![NODE]), (0, vec![NODE])]), &none, false, 1).unwrap();
    assert_eq!(topic.partitions.len(), 2);
}

#[test]
fn invalid_configs_are_refused_with_code_40() {
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, _) = open_at(dir.path());
    let bad = configs(&[("retention.ms", "abc")]);
    assert_eq!(
        code(controller.create_topic("t", 1, -1, None, &bad, false, 1)),
        (40, "Invalid value abc for configuration retention.ms: Not a number of type LONG".into())
    );
    let unknown = configs(&[("foo", "1")]);
    assert_eq!(
        code(controller.create_topic("t", 1, -1, None, &unknown, false, 1)),
        (40, "Unknown topic config name: foo".into())
    );
    assert!(controller.image().topics.is_empty());
}

#[test]
fn validate_only_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, table) = open_at(dir.path());
    let offset = table.version();
    let topic = controller.create_topic("t", 4, -1, None, &no_configs(), true, 1).unwrap();
    assert_eq!(topic.partitions.len(), 4);
    assert_eq!(table.version(), offset);
    assert!(table.current().topics.is_empty());
    create(&mut controller, "t", 1).unwrap();
    controller.create_partitions("t", 3, None, true).unwrap();
    let ops = [("retention.ms".to_string(), AlterOp::Set("5".into()))];
    controller.alter_topic_configs("t", &ops, true).unwrap();
    let topic = &table.current().topics["t"];
    assert_eq!(topic.partitions.len(), 1);
    assert!(topic.configs.is_empty());
}

#[test]
fn deleted_then_recreated_topic_gets_a_new_id() {
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, table) = open_at(dir.path());
    let first = create(&mut controller, "t", 2).unwrap().id;
    assert_eq!(controller.delete_topic_by_name("t").unwrap(), first);
    assert!(table.current().topic_ids.is_empty());
    let second = create(&mut controller, "t", 1).unwrap().id;
    assert_ne!(first, second);
    assert_eq!(controller.delete_topic_by_id(second).unwrap(), "t");
    assert_eq!(code(controller.delete_topic_by_name("t")).0, 3);
    assert_eq!(code(controller.delete_topic_by_id(second)).0, 100);
    assert_eq!(code(controller.delete_topic_by_id([0; 16])).0, 42);
}

#[test]
fn create_partitions_only_grows() {
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, _) = open_at(dir.path());
    create(&mut controller, "t", 2).unwrap();
    let topic = controller.create_partitions("t", 4, None, false).unwrap();
    assert_eq!(topic.partitions.len(), 4);
    assert_eq!(topic.partitions[3].leader, NODE);
    assert_eq!(code(controller.create_partitions("t", 4, None, false)), (37, "Topic already has 4 partition(s).".into()));
    assert_eq!(
        code(controller.create_partitions("t", 3, None, false)),
        (37, "The topic t currently has 4 partition(s); 3 would not be an increase.".into())
    );
    assert_eq!(
        code(controller.create_partitions("t", 6, Some(vec![vec![NODE]]), false)),
        (39, "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified.".into())
    );
    assert_eq!(code(controller.create_partitions("nope", 6, None, false)).0, 3);
    let topic = controller.create_partitions("t", 5, Some(vec![vec![NODE]]), false).unwrap();
    assert_eq!(topic.partitions.len(), 5);
}

#[test]
fn incremental_alter_sets_deletes_appends_and_subtracts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, table) = open_at(dir.path());
    create(&mut controller, "t", 1).unwrap();
    let ops = vec![
        ("retention.ms".to_string(), AlterOp::Set("5000".into())),
        ("cleanup.policy".to_string(), AlterOp::Append("compact".into())),
    ];
    controller.alter_topic_configs("t", &ops, false).unwrap();
    let topic = table.current().topics["t"].clone();
    assert_eq!(topic.configs["retention.ms"], "5000");
    assert_eq!(topic.configs["cleanup.policy"], "delete,compact");

    let ops =
        vec![("retention.ms".to_string(), AlterOp::Delete), ("cleanup.policy".to_string(), AlterOp::Subtract("delete".into()))];
    controller.alter_topic_configs("t", &ops, false).unwrap();
    let topic = table.current().topics["t"].clone();
    assert_eq!(topic.configs, configs(&[("cleanup.policy", "compact")]));

    let append_long = [("retention.ms".to_string(), AlterOp::Append("1".into()))];
    assert_eq!(
        code(controller.alter_topic_configs("t", &append_long, false)),
        (40, "Config value append is not allowed for config key: retention.ms".into())
    );
    let duplicate = [("retention.ms".to_string(), AlterOp::Set("1".into())), ("retention.ms".to_string(), AlterOp::Delete)];
    assert_eq!(code(controller.alter_topic_configs("t", &duplicate, false)).0, 42);
    let emptied = [("cleanup.policy".to_string(), AlterOp::Subtract("compact".into()))];
    assert_eq!(code(controller.alter_topic_configs("t", &emptied, false)).0, 40);
    let unknown = [("foo".to_string(), AlterOp::Set("1".into()))];
    assert_eq!(code(controller.alter_topic_configs("t", &unknown, false)).0, 40);
    assert_eq!(code(controller.alter_topic_configs("nope", &[], false)).0, 3);
    let crossed = [
        ("min.compaction.lag.ms".to_string(), AlterOp::Set("10".into())),
        ("max.compaction.lag.ms".to_string(), AlterOp::Set("5".into())),
    ];
    assert_eq!(code(controller.alter_topic_configs("t", &crossed, false)).0, 40);
}

#[test]
fn legacy_alter_replaces_every_override() {
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, table) = open_at(dir.path());
    controller.create_topic("t", 1, -1, None, &configs(&[("retention.ms", "1"), ("segment.ms", "2")]), false, 1).unwrap();
    controller.replace_topic_configs("t", &configs(&[("segment.ms", "3")]), false).unwrap();
    assert_eq!(table.current().topics["t"].configs, configs(&[("segment.ms", "3")]));
    let offset = table.version();
    controller.replace_topic_configs("t", &configs(&[("segment.ms", "3")]), false).unwrap();
    assert_eq!(table.version(), offset, "no change, no record");
}

#[test]
fn broker_configs_change_topic_defaults_and_refuse_static_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, table) = open_at(dir.path());
    create(&mut controller, "t", 1).unwrap();
    let ops = [("log.retention.ms".to_string(), AlterOp::Set("777".into()))];
    controller.alter_broker_configs(&ops, false).unwrap();
    assert_eq!(table.current().broker_config["log.retention.ms"], "777");
    assert_eq!(controller.topic_config("t").unwrap().retention_ms, 777);
    let from_table = table.current().topic_config("t", &BTreeMap::new()).unwrap();
    assert_eq!(from_table.retention_ms, 777);

    let read_only = [("listeners".to_string(), AlterOp::Set("PLAINTEXT://:1".into()))];
    assert_eq!(
        code(controller.alter_broker_configs(&read_only, false)),
        (42, "Cannot update these configs dynamically: Set(listeners)".into())
    );
    let invalid = [("log.segment.bytes".to_string(), AlterOp::Set("10".into()))];
    assert_eq!(code(controller.alter_broker_configs(&invalid, false)).0, 40);
    let append = [("log.cleanup.policy".to_string(), AlterOp::Append("compact".into()))];
    controller.alter_broker_configs(&append, false).unwrap();
    assert_eq!(table.current().broker_config["log.cleanup.policy"], "delete,compact");
    let remove = [("log.retention.ms".to_string(), AlterOp::Delete)];
    controller.alter_broker_configs(&remove, false).unwrap();
    assert!(!table.current().broker_config.contains_key("log.retention.ms"));
}

#[test]
fn error_codes_map_to_kafkas() {
    let storage = ControllerError::Storage(MetadataError::Poisoned);
    assert_eq!(storage.kafka_error_code(), 56);
    assert_eq!(storage.message(), "Disk error when trying to access log file on the disk.");
    assert_eq!(ControllerError::UnknownTopicOrPartition.kafka_error_code(), 3);
    assert_eq!(ControllerError::InvalidConfig(String::new()).kafka_error_code(), 40);
}

#[test]
fn snapshots_are_taken_and_used_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions { snapshot_interval_records: 4, delete_covered_segments: true };
    let mut controller = open_with(dir.path(), options.clone());
    for index in 0..6 {
        create(&mut controller, &format!("t{index}"), 2).unwrap();
    }
    let before = controller.image();
    drop(controller);
    let log_dir = dir.path().join(METADATA_LOG_DIR_NAME);
    let snapshots = std::fs::read_dir(&log_dir)
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().starts_with("snapshot-"))
        .count();
    assert_eq!(snapshots, 2);
    let controller = open_with(dir.path(), options);
    assert_eq!(*controller.image(), *before);
}

// ------------------------------------------------------------------------------------------
// Property test: any sequence of admin operations leaves the image equal to a simple model,
// the image survives reopen, and replay from a snapshot equals replay of the whole log.
// ------------------------------------------------------------------------------------------

const NAMES: [&str; 5] = ["a", "b", "c.d", "c_d", "e"];

#[derive(Clone, Debug)]
enum Op {
    Create { name: usize, partitions: i32 },
    Delete { name: usize },
    AddPartitions { name: usize, extra: i32 },
    SetRetention { name: usize, retention_ms: u32 },
    DeleteRetention { name: usize },
    SetBrokerRetention { retention_ms: u32 },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    prop_oneof![
        (name.clone(), 1..4i32).prop_map(|(name, partitions)| Op::Create { name, partitions }),
        name.clone().prop_map(|name| Op::Delete { name }),
        (name.clone(), 1..3i32).prop_map(|(name, extra)| Op::AddPartitions { name, extra }),
        (name.clone(), any::<u32>()).prop_map(|(name, retention_ms)| Op::SetRetention { name, retention_ms }),
        name.prop_map(|name| Op::DeleteRetention { name }),
        any::<u32>().prop_map(|retention_ms| Op::SetBrokerRetention { retention_ms }),
    ]
}

#[derive(Default, Debug)]
struct Model {
    topics: BTreeMap<String, (usize, BTreeMap<String, String>)>,
    broker_config: BTreeMap<String, String>,
}

impl Model {
    fn collides(&self, name: &str) -> bool {
        self.topics.keys().any(|existing| existing != name && existing.replace('.', "_") == name.replace('.', "_"))
    }
}

/// Runs `op` on both; checks that they agree on success.
fn run(controller: &mut Controller, model: &mut Model, op: &Op) {
    match op {
        Op::Create { name, partitions } => {
            let name = NAMES[*name];
            let ok = !model.topics.contains_key(name) && !model.collides(name);
            let result = create(controller, name, *partitions);
            assert_eq!(result.is_ok(), ok, "{op:?}: {result:?}");
            if ok {
                model.topics.insert(name.to_string(), (*partitions as usize, BTreeMap::new()));
            }
        }
        Op::Delete { name } => {
            let name = NAMES[*name];
            let result = controller.delete_topic_by_name(name);
            assert_eq!(result.is_ok(), model.topics.remove(name).is_some(), "{op:?}");
        }
        Op::AddPartitions { name, extra } => {
            let name = NAMES[*name];
            let Some((count, _)) = model.topics.get_mut(name) else {
                assert_eq!(code(controller.create_partitions(name, 5, None, false)).0, 3);
                return;
            };
            let total = *count as i32 + extra;
            controller.create_partitions(name, total, None, false).unwrap();
            *count = total as usize;
        }
        Op::SetRetention { name, retention_ms } => {
            let name = NAMES[*name];
            let ops = [("retention.ms".to_string(), AlterOp::Set(retention_ms.to_string()))];
            let result = controller.alter_topic_configs(name, &ops, false);
            match model.topics.get_mut(name) {
                Some((_, configs)) => {
                    result.unwrap();
                    configs.insert("retention.ms".into(), retention_ms.to_string());
                }
                None => assert_eq!(code(result).0, 3),
            }
        }
        Op::DeleteRetention { name } => {
            let name = NAMES[*name];
            let ops = [("retention.ms".to_string(), AlterOp::Delete)];
            let result = controller.alter_topic_configs(name, &ops, false);
            match model.topics.get_mut(name) {
                Some((_, configs)) => {
                    result.unwrap();
                    configs.remove("retention.ms");
                }
                None => assert_eq!(code(result).0, 3),
            }
        }
        Op::SetBrokerRetention { retention_ms } => {
            let ops = [("log.retention.ms".to_string(), AlterOp::Set(retention_ms.to_string()))];
            controller.alter_broker_configs(&ops, false).unwrap();
            model.broker_config.insert("log.retention.ms".into(), retention_ms.to_string());
        }
    }
}

fn assert_matches_model(image: &MetadataImage, model: &Model) {
    let topics: BTreeMap<String, (usize, BTreeMap<String, String>)> =
        image.topics.iter().map(|(name, topic)| (name.clone(), (topic.partitions.len(), topic.configs.clone()))).collect();
    assert_eq!(topics, model.topics);
    assert_eq!(image.broker_config, model.broker_config);
    assert_eq!(image.topic_ids.len(), image.topics.len());
    for (id, name) in &image.topic_ids {
        assert_eq!(image.topics[name].id, *id);
    }
}

fn remove_snapshots(log_dir: &Path) {
    for entry in std::fs::read_dir(log_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("snapshot-") {
            std::fs::remove_file(path).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_operation_sequence_matches_the_model_and_replays_identically(
        ops in proptest::collection::vec(op_strategy(), 1..25),
        interval in 1u64..6,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let options = LogOptions { snapshot_interval_records: interval, delete_covered_segments: false };
        let mut controller = open_with(dir.path(), options.clone());
        let mut model = Model::default();
        for op in &ops {
            run(&mut controller, &mut model, op);
        }
        let image = controller.image();
        assert_matches_model(&image, &model);
        drop(controller);

        let from_snapshot = open_with(dir.path(), options.clone()).image();
        prop_assert_eq!(&*from_snapshot, &*image);

        remove_snapshots(&dir.path().join(METADATA_LOG_DIR_NAME));
        let from_full_log = open_with(dir.path(), options).image();
        prop_assert_eq!(&*from_full_log, &*image);
    }
}
