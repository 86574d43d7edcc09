"""The `fjord` client commands (topic, produce, consume, cluster) against a running broker."""

from __future__ import annotations

import re

import fjordtest
from confluent_kafka.admin import ConfigResource, ResourceType


def _listed_topics(broker) -> list[str]:
    return broker.cli("topic", "list").stdout.split()


def _fields(line: str) -> dict[str, str]:
    """`Key: value` pairs of one tab-separated `topic describe` line (kafka-topics.sh layout)."""
    pairs = [field.split(": ", 1) for field in line.strip("\t").split("\t")]
    assert all(len(pair) == 2 for pair in pairs), f"not a describe row: {line!r}"
    return dict(pairs)


def test_topic_create_list_describe_delete(broker, topic):
    broker.cli("topic", "create", topic, "--partitions", "3")
    assert topic in _listed_topics(broker)
    # The broker agrees with the CLI.
    fjordtest.wait_for_topic(broker.bootstrap, topic, 3)

    described = broker.cli("topic", "describe", topic).stdout.splitlines()
    with broker.connect() as conn:
        metadata = conn.metadata([topic])
    [(node_id, _, _)] = metadata.brokers
    leaders = {p.index: p.leader_id for p in metadata.topics[topic].partitions}
    assert leaders == {0: node_id, 1: node_id, 2: node_id}, leaders
    header, *rows = described
    header = _fields(header)
    assert {k: header[k] for k in ("Topic", "PartitionCount", "ReplicationFactor")} == {
        "Topic": topic, "PartitionCount": "3", "ReplicationFactor": "1"}, header
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", header["TopicId"]) and header["TopicId"] != "A" * 22, header
    assert [_fields(row) for row in rows] == [
        {"Topic": topic, "Partition": str(partition), "Leader": str(node_id), "LeaderEpoch": "0",
         "Replicas": str(node_id), "Isr": str(node_id)}
        for partition in range(3)
    ], rows

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
    lines = broker.cli("cluster", "info").stdout.splitlines()
    with broker.connect() as conn:
        [(node_id, host, port)] = conn.metadata().brokers
        api_versions = conn.api_versions()
    cluster_id = fjordtest.admin(broker.bootstrap).list_topics(timeout=10).cluster_id
    assert (host, port) == (broker.host, broker.port)
    assert lines[:5] == [
        f"Cluster ID: {cluster_id}",
        f"Controller: {node_id}",
        "Brokers:",
        "  ID      ADDRESS                         RACK",
        f"  {node_id:<8}{broker.bootstrap:<32}-",
    ], lines[:5]
    # Then the broker's ApiVersions table: one row per API key with the broker's own range.
    assert lines[5] == f"API versions of {broker.bootstrap}:", lines[5]
    assert lines[6].split() == ["API", "KEY", "MIN", "MAX", "USED"], lines[6]
    table = {}
    for row in lines[7:]:
        name, key, low, high, _used = row.split()
        table[int(key)] = (int(low), int(high))
    assert table == api_versions, (table, api_versions)
