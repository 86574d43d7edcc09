"""confluent-kafka AdminClient against Fjord: topics, configs, partitions, list_offsets, errors."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

import fjordtest

TIMEOUT_S = 30


def _error_code(future) -> int:
    with pytest.raises(KafkaException) as info:
        future.result(timeout=TIMEOUT_S)
    return info.value.args[0].code()


def _topic_names(client) -> set[str]:
    return set(client.list_topics(timeout=10).topics)


def _describe(client, restype, name: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(restype, name)
    return client.describe_configs([resource], request_timeout=TIMEOUT_S)[resource].result(timeout=TIMEOUT_S)


def _source(entry: ConfigEntry) -> ConfigSource:
    # The C layer hands sources over as ints; the constructor default is the enum.
    return ConfigSource(getattr(entry.source, "value", entry.source))


def test_create_topics_with_configs_then_list_and_describe(broker, topic):
    client = fjordtest.admin(broker.bootstrap)
    futures = client.create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1,
                  config={"retention.ms": "3600000", "cleanup.policy": "delete"})],
        request_timeout=TIMEOUT_S,
    )
    futures[topic].result(timeout=TIMEOUT_S)
    fjordtest.wait_for_topic(broker.bootstrap, topic, 3)
    metadata = client.list_topics(topic, timeout=10).topics[topic]
    assert sorted(metadata.partitions) == [0, 1, 2]
    node_ids = set(client.list_topics(timeout=10).brokers)
    for partition in metadata.partitions.values():
        assert partition.leader in node_ids
        assert partition.replicas == [partition.leader]
        assert partition.isrs == [partition.leader]

    configs = _describe(client, ResourceType.TOPIC, topic)
    assert configs["retention.ms"].value == "3600000"
    assert _source(configs["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert configs["cleanup.policy"].value == "delete"
    # A config the topic did not set falls back to a broker-level or default source.
    assert "max.message.bytes" in configs
    assert _source(configs["max.message.bytes"]) in (
        ConfigSource.DEFAULT_CONFIG, ConfigSource.STATIC_BROKER_CONFIG,
        ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG,
    )
    assert int(configs["max.message.bytes"].value) > 0


def test_create_topics_validate_only_creates_nothing(broker, topic):
    client = fjordtest.admin(broker.bootstrap)
    futures = client.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)],
                                   validate_only=True, request_timeout=TIMEOUT_S)
    futures[topic].result(timeout=TIMEOUT_S)
    time.sleep(0.5)
    assert topic not in _topic_names(client)


def test_describe_broker_configs_reports_values_and_sources(broker_factory):
    broker = broker_factory.start(["--log-segment-bytes", "16777216", "--num-partitions", "2"])
    client = fjordtest.admin(broker.bootstrap)
    node_id = next(iter(client.list_topics(timeout=10).brokers))
    configs = _describe(client, ResourceType.BROKER, str(node_id))
    # Set on the command line: static broker config.
    assert configs["log.segment.bytes"].value == "16777216"
    assert _source(configs["log.segment.bytes"]) == ConfigSource.STATIC_BROKER_CONFIG
    assert configs["num.partitions"].value == "2"
    assert _source(configs["num.partitions"]) == ConfigSource.STATIC_BROKER_CONFIG
    # Not set: Kafka's default.
    assert configs["auto.create.topics.enable"].value == "true"
    assert _source(configs["auto.create.topics.enable"]) == ConfigSource.DEFAULT_CONFIG
    assert "message.max.bytes" in configs


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_alter_configs_replaces_topic_config(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1, config={"retention.ms": "1000000"})
    client = fjordtest.admin(broker.bootstrap)
    resource = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.bytes": "123456789"})
    client.alter_configs([resource], request_timeout=TIMEOUT_S)[resource].result(timeout=TIMEOUT_S)
    configs = _describe(client, ResourceType.TOPIC, topic)
    assert configs["retention.bytes"].value == "123456789"
    assert _source(configs["retention.bytes"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    # AlterConfigs (non-incremental) replaces the whole set: retention.ms is back to its default.
    assert _source(configs["retention.ms"]) != ConfigSource.DYNAMIC_TOPIC_CONFIG


def test_incremental_alter_configs_set_and_delete(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1, config={"retention.ms": "1000000"})
    client = fjordtest.admin(broker.bootstrap)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("segment.ms", "600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    client.incremental_alter_configs([resource], request_timeout=TIMEOUT_S)[resource].result(timeout=TIMEOUT_S)
    configs = _describe(client, ResourceType.TOPIC, topic)
    assert configs["segment.ms"].value == "600000"
    assert _source(configs["segment.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert _source(configs["retention.ms"]) != ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert configs["retention.ms"].value != "1000000"


def test_create_partitions_grows_topic_and_new_partition_accepts_records(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    client = fjordtest.admin(broker.bootstrap)
    client.create_partitions([NewPartitions(topic, 3)], request_timeout=TIMEOUT_S)[topic].result(timeout=TIMEOUT_S)
    fjordtest.wait_for_topic(broker.bootstrap, topic, 3)
    fjordtest.produce(broker.bootstrap, topic, [{"value": b"p2", "partition": 2}, {"value": b"p0", "partition": 0}])
    records = fjordtest.consume(broker.bootstrap, topic, partitions=[0, 1, 2], expected=2)
    assert sorted((r.partition, r.value) for r in records) == [(0, b"p0"), (2, b"p2")]
    # Shrinking is refused (Kafka: INVALID_PARTITIONS).
    code = _error_code(client.create_partitions([NewPartitions(topic, 2)], request_timeout=TIMEOUT_S)[topic])
    assert code == KafkaError.INVALID_PARTITIONS


def _delete_topic(client, topic: str) -> None:
    """Deletes `topic` and waits until metadata no longer lists it."""
    client.delete_topics([topic], request_timeout=TIMEOUT_S)[topic].result(timeout=TIMEOUT_S)
    fjordtest.wait_until(lambda: topic not in _topic_names(client), f"{topic} to disappear from metadata", TIMEOUT_S)


def test_delete_topics_removes_topic(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=2)
    fjordtest.produce(broker.bootstrap, topic, [{"value": b"doomed"}])
    client = fjordtest.admin(broker.bootstrap)
    _delete_topic(client, topic)
    code = _error_code(client.delete_topics([topic], request_timeout=TIMEOUT_S)[topic])
    assert code == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_recreated_topic_starts_empty(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    fjordtest.produce(broker.bootstrap, topic, [{"value": b"old"}])
    client = fjordtest.admin(broker.bootstrap)
    _delete_topic(client, topic)
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    fjordtest.produce(broker.bootstrap, topic, [{"value": b"new"}])
    records = fjordtest.consume(broker.bootstrap, topic, expected=1)
    assert [(r.offset, r.value) for r in records] == [(0, b"new")]


def test_create_existing_topic_fails_with_topic_already_exists(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    client = fjordtest.admin(broker.bootstrap)
    futures = client.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                                   request_timeout=TIMEOUT_S)
    assert _error_code(futures[topic]) == KafkaError.TOPIC_ALREADY_EXISTS


@pytest.mark.parametrize("bad_name", ["has/slash", "..", "x" * 250, "spaces are bad"])
def test_invalid_topic_name_fails_with_invalid_topic_exception(broker, bad_name):
    client = fjordtest.admin(broker.bootstrap)
    futures = client.create_topics([NewTopic(bad_name, num_partitions=1, replication_factor=1)],
                                   request_timeout=TIMEOUT_S)
    # INVALID_TOPIC_EXCEPTION is error 17 (librdkafka calls it TOPIC_EXCEPTION).
    assert _error_code(futures[bad_name]) == KafkaError.TOPIC_EXCEPTION == 17


def test_unknown_topic_config_fails_with_invalid_config(broker, topic):
    client = fjordtest.admin(broker.bootstrap)
    futures = client.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1, config={"no.such.config": "1"})],
        request_timeout=TIMEOUT_S,
    )
    assert _error_code(futures[topic]) == KafkaError.INVALID_CONFIG
    assert topic not in _topic_names(client)


def test_replication_factor_above_broker_count_fails_with_invalid_replication_factor(broker, topic):
    client = fjordtest.admin(broker.bootstrap)
    futures = client.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)],
                                   request_timeout=TIMEOUT_S)
    assert _error_code(futures[topic]) == KafkaError.INVALID_REPLICATION_FACTOR
    assert topic not in _topic_names(client)


def test_list_offsets_earliest_latest_max_timestamp_and_by_timestamp(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    t0 = int(time.time() * 1000) - 600_000
    timestamps = [t0, t0 + 5_000, t0 + 3_000, t0 + 1_000]  # max timestamp at offset 1
    fjordtest.produce(broker.bootstrap, topic, [{"value": f"v{i}".encode(), "timestamp": ts}
                                                for i, ts in enumerate(timestamps)])
    client = fjordtest.admin(broker.bootstrap)
    tp = TopicPartition(topic, 0)

    def offset_for(spec):
        return client.list_offsets({tp: spec}, request_timeout=TIMEOUT_S)[tp].result(timeout=TIMEOUT_S)

    assert offset_for(OffsetSpec.earliest()).offset == 0
    assert offset_for(OffsetSpec.latest()).offset == len(timestamps)
    max_ts = offset_for(OffsetSpec.max_timestamp())  # ListOffsets timestamp -3 (KIP-734)
    assert (max_ts.offset, max_ts.timestamp) == (1, t0 + 5_000)
    # The first offset whose timestamp is >= the target.
    by_time = offset_for(OffsetSpec.for_timestamp(t0 + 2_000))
    assert (by_time.offset, by_time.timestamp) == (1, t0 + 5_000)
    assert offset_for(OffsetSpec.for_timestamp(t0)).offset == 0
    # Past every record: no offset (-1).
    assert offset_for(OffsetSpec.for_timestamp(t0 + 60_000)).offset == -1
