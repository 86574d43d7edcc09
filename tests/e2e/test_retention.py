"""Retention and DeleteRecords through real clients: segments removed by retention.bytes and
retention.ms in the broker's background task, the low watermark moving with them, reads below it
answered as Kafka does (auto.offset.reset=earliest jumps to the new start, =error reports
OFFSET_OUT_OF_RANGE), DeleteRecords through confluent-kafka's and kafka-python's admin clients,
and a compacted topic refusing DeleteRecords with POLICY_VIOLATION."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

import fjordtest

SEGMENT_BYTES = 1024 * 1024
RETENTION_CHECK_MS = 200
WAIT_MAX_S = 30.0


def _retention_broker(broker_factory):
    return broker_factory.start(["--log-retention-check-interval-ms", str(RETENTION_CHECK_MS)])


def _fill(bootstrap: str, topic: str, records: int, value_bytes: int = 1000) -> None:
    messages = [{"value": bytes([65 + i % 26]) * value_bytes, "key": f"k{i}".encode(), "partition": 0}
                for i in range(records)]
    fjordtest.produce(bootstrap, topic, messages, config={"linger.ms": 5, "batch.size": 65536})


def _watermarks(bootstrap: str, topic: str) -> tuple[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "fjord-e2e-watermarks"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        consumer.close()


def _wait_low_watermark(bootstrap: str, topic: str, done) -> tuple[int, int]:
    """The watermarks once `done` holds and they have stayed put for five retention checks: a
    pass that ran while the topic was still filling can satisfy `done` on its own, and the next
    pass then removes more (seen in CI: low 2048 read, 3072 a pass later)."""
    deadline = time.monotonic() + WAIT_MAX_S
    settled_for = 5 * RETENTION_CHECK_MS / 1000
    marks = _watermarks(bootstrap, topic)
    since = time.monotonic()
    while time.monotonic() < deadline:
        if done(*marks) and time.monotonic() - since >= settled_for:
            break
        time.sleep(0.2)
        latest = _watermarks(bootstrap, topic)
        if latest != marks:
            marks, since = latest, time.monotonic()
    return marks


def _segments(broker, topic: str) -> list[Path]:
    return sorted((Path(broker.data_dir) / f"{topic}-0").glob("*.log"))


def test_retention_bytes_removes_old_segments_and_readers_start_at_the_new_low_watermark(broker_factory, topic):
    broker = _retention_broker(broker_factory)
    fjordtest.create_topic(broker.bootstrap, topic, config={
        "segment.bytes": str(SEGMENT_BYTES), "retention.bytes": str(2 * SEGMENT_BYTES)})
    _fill(broker.bootstrap, topic, 6_000)
    # A pass removes segments one after another and the low watermark moves with the first, so
    # wait for the pass to get down to the files retention.bytes allows.
    low, high = _wait_low_watermark(
        broker.bootstrap, topic, lambda low, high: low > 0 and len(_segments(broker, topic)) <= 4)
    assert high == 6_000
    assert low > 0, "retention.bytes removed nothing"
    # Kafka's rule keeps at least retention.bytes: about two 1 MiB segments of ~1 KiB records.
    assert high - low >= 2 * SEGMENT_BYTES // 1100, (low, high)
    assert len(_segments(broker, topic)) <= 4

    # A reader at offset 0 with auto.offset.reset=earliest starts at the low watermark.
    records = fjordtest.consume(broker.bootstrap, topic, partitions=[0], start_offset=0, expected=high - low)
    assert [r.offset for r in records] == list(range(low, high))

    # With auto.offset.reset=error the client reports the out-of-range offset.
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "fjord-e2e-reset-error",
                         "auto.offset.reset": "error", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + WAIT_MAX_S
        error = None
        while error is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error():
                error = msg.error()
            elif msg is not None:
                pytest.fail(f"read offset {msg.offset()} below the low watermark {low}")
        assert error is not None and error.code() == KafkaError._AUTO_OFFSET_RESET, error
    finally:
        consumer.close()

    # Restart: the start offset stays.
    broker.restart()
    assert _watermarks(broker.bootstrap, topic) == (low, high)


def test_retention_ms_removes_everything_older_including_the_active_segment(broker_factory, topic):
    broker = _retention_broker(broker_factory)
    fjordtest.create_topic(broker.bootstrap, topic, config={"segment.bytes": str(SEGMENT_BYTES)})
    _fill(broker.bootstrap, topic, 3_000)
    time.sleep(1.5)
    admin = fjordtest.admin(broker.bootstrap)
    from confluent_kafka.admin import ConfigResource, ConfigEntry, AlterConfigOpType

    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)
    low, high = _wait_low_watermark(broker.bootstrap, topic, lambda low, high: low == high)
    assert (low, high) == (3_000, 3_000)
    # New records are kept (newer than retention.ms) and continue the offsets.
    delivered = fjordtest.produce(broker.bootstrap, topic, [{"value": b"fresh", "partition": 0}])
    assert delivered[0].offset() == 3_000
    records = fjordtest.consume(broker.bootstrap, topic, partitions=[0], expected=1)
    assert [(r.offset, r.value) for r in records] == [(3_000, b"fresh")]


def test_delete_records_with_confluent_and_kafka_python_admins(broker_factory, topic):
    broker = broker_factory.start()
    fjordtest.create_topic(broker.bootstrap, topic, config={"segment.bytes": str(SEGMENT_BYTES)})
    _fill(broker.bootstrap, topic, 3_000)

    admin = fjordtest.admin(broker.bootstrap)
    futures = admin.delete_records([TopicPartition(topic, 0, 1_234)])
    result = futures[TopicPartition(topic, 0)].result(timeout=30)
    assert result.low_watermark == 1_234
    assert _watermarks(broker.bootstrap, topic) == (1_234, 3_000)
    records = fjordtest.consume(broker.bootstrap, topic, partitions=[0], expected=3_000 - 1_234)
    assert records[0].offset == 1_234 and len(records) == 3_000 - 1_234
    # At least the first full segment is gone from disk.
    assert int(_segments(broker, topic)[0].stem) > 0

    # Past the high watermark: OFFSET_OUT_OF_RANGE.
    futures = admin.delete_records([TopicPartition(topic, 0, 5_000)])
    with pytest.raises(KafkaException) as raised:
        futures[TopicPartition(topic, 0)].result(timeout=30)
    assert raised.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE

    # kafka-python: -1 means "up to the high watermark".
    from kafka import KafkaAdminClient
    from kafka.structs import TopicPartition as KafkaPythonPartition

    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30_000)
    try:
        answer = client.delete_records({KafkaPythonPartition(topic, 0): -1})
        assert answer[KafkaPythonPartition(topic, 0)]["low_watermark"] == 3_000
    finally:
        client.close()
    assert _watermarks(broker.bootstrap, topic) == (3_000, 3_000)
    broker.restart()
    assert _watermarks(broker.bootstrap, topic) == (3_000, 3_000)


def test_delete_records_on_a_compacted_topic_is_a_policy_violation(broker_factory, topic):
    broker = broker_factory.start()
    fjordtest.create_topic(broker.bootstrap, topic, config={"cleanup.policy": "compact"})
    _fill(broker.bootstrap, topic, 10)
    admin = fjordtest.admin(broker.bootstrap)  # alive until the future resolves
    futures = admin.delete_records([TopicPartition(topic, 0, 5)])
    with pytest.raises(KafkaException) as raised:
        futures[TopicPartition(topic, 0)].result(timeout=30)
    assert raised.value.args[0].code() == KafkaError.POLICY_VIOLATION
    assert _watermarks(broker.bootstrap, topic) == (0, 10)
