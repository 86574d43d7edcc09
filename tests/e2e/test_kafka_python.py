"""kafka-python (pure Python, its own protocol code) against Fjord.

kafka-python 2.x speaks only non-flexible request versions for several APIs (DescribeConfigs <= v2,
CreateTopics <= v3), so these tests also pin that Fjord keeps Kafka's older versions.
"""

from __future__ import annotations

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

import fjordtest

TIMEOUT_MS = 30_000


def _admin(broker) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="fjord-e2e-kafka-python",
                            request_timeout_ms=TIMEOUT_MS)


def _consumer(broker) -> KafkaConsumer:
    return KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                         request_timeout_ms=TIMEOUT_MS + 5_000, fetch_max_wait_ms=100,
                         consumer_timeout_ms=1_000)


def test_admin_create_describe_delete_topic(broker, topic):
    admin = _admin(broker)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1,
                                      topic_configs={"retention.ms": "7200000"})], timeout_ms=TIMEOUT_MS)
        fjordtest.wait_until(lambda: topic in admin.list_topics(), f"{topic} in list_topics", 30.0)
        described = admin.describe_topics([topic])
        assert len(described) == 1 and described[0]["topic"] == topic
        assert sorted(p["partition"] for p in described[0]["partitions"]) == [0, 1]

        responses = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        entries = {}
        for response in responses:
            for resource in response.resources:
                error_code, _message, _type, name, config_entries = resource[:5]
                assert error_code == 0 and name == topic
                entries.update({entry[0]: entry[1] for entry in config_entries})
        assert entries["retention.ms"] == "7200000"
        assert "cleanup.policy" in entries

        admin.delete_topics([topic], timeout_ms=TIMEOUT_MS)
        fjordtest.wait_until(lambda: topic not in admin.list_topics(), f"{topic} gone from list_topics", 30.0)
    finally:
        admin.close()


def test_producer_then_consumer_assign_seek_to_beginning_reads_everything(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, key=f"k{i}".encode(), value=f"value-{i}".encode()) for i in range(300)]
        producer.flush(timeout=30)
        metadata = [f.get(timeout=30) for f in futures]
    finally:
        producer.close(timeout=10)
    assert [m.offset for m in metadata] == list(range(300))

    consumer = _consumer(broker)
    tp = TopicPartition(topic, 0)
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        records = []
        deadline = time.monotonic() + 60
        while len(records) < 300 and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    assert [(r.offset, r.key, r.value) for r in records] == [
        (i, f"k{i}".encode(), f"value-{i}".encode()) for i in range(300)
    ]


def test_beginning_end_offsets_and_offsets_for_times(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    t0 = int(time.time() * 1000) - 600_000
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    try:
        for i in range(5):
            producer.send(topic, value=f"v{i}".encode(), timestamp_ms=t0 + 1000 * i).get(timeout=30)
    finally:
        producer.close(timeout=10)

    consumer = _consumer(broker)
    tp = TopicPartition(topic, 0)
    try:
        assert consumer.beginning_offsets([tp]) == {tp: 0}
        assert consumer.end_offsets([tp]) == {tp: 5}
        found = consumer.offsets_for_times({tp: t0 + 1500})[tp]
        assert (found.offset, found.timestamp) == (2, t0 + 2000)
        exact = consumer.offsets_for_times({tp: t0})[tp]
        assert (exact.offset, exact.timestamp) == (0, t0)
        # A timestamp past every record has no offset.
        assert consumer.offsets_for_times({tp: t0 + 60_000})[tp] is None
    finally:
        consumer.close()
