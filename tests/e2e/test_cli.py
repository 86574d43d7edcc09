"""The `fjord` client commands (topic, produce, consume, cluster) against a running broker."""

from __future__ import annotations

import fjordtest
from confluent_kafka.admin import ConfigResource, ResourceType


def _listed_topics(broker) -> list[str]:
    return broker.cli("topic", "list").stdout.split()


def test_topic_create_list_describe_delete(broker, topic):
    broker.cli("topic", "create", topic, "--partitions", "3")
    assert topic in _listed_topics(broker)
    # The broker agrees with the CLI.
    fjordtest.wait_for_topic(broker.bootstrap, topic, 3)

    described = broker.cli("topic", "describe", topic).stdout
    assert topic in described
    for partition in range(3):
        assert str(partition) in described

    duplicate = broker.cli("topic", "create", topic, "--partitions", "3", check=False)
    assert duplicate.returncode != 0
    assert "exist" in (duplicate.stderr + duplicate.stdout).lower()

    broker.cli("topic", "delete", topic)
    assert topic not in _listed_topics(broker)
    missing = broker.cli("topic", "describe", topic, check=False)
    assert missing.returncode != 0


def test_topic_create_with_config_and_alter_config(broker, topic):
    broker.cli("topic", "create", topic, "--partitions", "1", "--config", "retention.ms=123456")
    client = fjordtest.admin(broker.bootstrap)
    resource = ConfigResource(ResourceType.TOPIC, topic)

    def retention_ms() -> str:
        return client.describe_configs([resource])[resource].result(timeout=30)["retention.ms"].value

    assert retention_ms() == "123456"
    broker.cli("topic", "alter-config", topic, "--set", "retention.ms=654321")
    assert retention_ms() == "654321"


def test_produce_with_key_separator_then_consume_with_format(broker, topic):
    broker.cli("topic", "create", topic, "--partitions", "1")
    lines = [f"key-{i}:value-{i}" for i in range(20)] + ["k:v:with:colons"]
    broker.cli("produce", topic, "--key-separator", ":", "--acks", "all", input="\n".join(lines) + "\n")
    consumed = broker.cli(
        "consume", topic, "--from", "beginning", "--max-messages", str(len(lines)), "--timeout-ms", "20000",
        "--format", r"%k:%v\n",
    )
    assert consumed.stdout.splitlines() == lines
    # Keys went to the broker as keys, not as part of the value.
    records = fjordtest.consume(broker.bootstrap, topic, expected=len(lines))
    assert [(r.key, r.value) for r in records][0] == (b"key-0", b"value-0")
    assert [(r.key, r.value) for r in records][-1] == (b"k", b"v:with:colons")


def test_produce_without_key_separator_sends_whole_lines_as_values(broker, topic):
    broker.cli("topic", "create", topic, "--partitions", "1")
    lines = [f"plain line {i}" for i in range(10)]
    broker.cli("produce", topic, input="\n".join(lines) + "\n")
    records = fjordtest.consume(broker.bootstrap, topic, expected=len(lines))
    assert [(r.key, r.value) for r in records] == [(None, line.encode()) for line in lines]


def test_consume_stops_at_timeout_with_fewer_messages(broker, topic):
    broker.cli("topic", "create", topic, "--partitions", "1")
    broker.cli("produce", topic, input="only-one\n")
    # Fewer messages than --max-messages: the command ends at the timeout and succeeds.
    consumed = broker.cli("consume", topic, "--from", "beginning", "--max-messages", "5", "--timeout-ms", "2000",
                          "--format", r"%v\n", timeout_s=30)
    assert consumed.stdout.splitlines() == ["only-one"]


def test_cluster_info_names_the_broker(broker):
    info = broker.cli("cluster", "info").stdout
    assert str(broker.port) in info
    assert "127.0.0.1" in info
