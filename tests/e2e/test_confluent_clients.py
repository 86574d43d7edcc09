"""confluent-kafka (librdkafka) producer and consumer against Fjord.

Consumers use assign() from the beginning with auto-commit off: Fjord has no consumer groups yet.
"""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    TopicPartition,
)

import fjordtest
import kafka_wire


def test_same_key_always_lands_in_same_partition(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=4)
    keys = [f"key-{k}".encode() for k in range(12)]
    messages = [{"key": keys[i % len(keys)], "value": f"v{i}".encode()} for i in range(360)]
    delivered = fjordtest.produce(broker.bootstrap, topic, messages)

    partition_of_key: dict[bytes, set[int]] = defaultdict(set)
    for msg in delivered:
        partition_of_key[msg.key()].add(msg.partition())
    assert all(len(parts) == 1 for parts in partition_of_key.values()), dict(partition_of_key)
    assert len({next(iter(p)) for p in partition_of_key.values()}) > 1, "12 keys all hashed to one partition"

    records = fjordtest.consume(broker.bootstrap, topic, expected=len(messages))
    assert len(records) == len(messages)
    for record in records:
        assert {record.partition} == partition_of_key[record.key]
    # Per key, consumption order is production order.
    by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_key[record.key].append(record.value)
    for key in keys:
        assert by_key[key] == [m["value"] for m in messages if m["key"] == key]
    # Delivery reports and consumed offsets agree.
    assert sorted((m.partition(), m.offset(), m.value()) for m in delivered) == sorted(
        (r.partition, r.offset, r.value) for r in records
    )


def test_headers_round_trip_including_duplicates_and_null_values(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    headers = [("trace-id", b"abc123"), ("empty", b""), ("null", None), ("dup", b"1"), ("dup", b"2"),
               ("binary", bytes(range(256)))]
    fjordtest.produce(broker.bootstrap, topic, [
        {"key": b"k", "value": b"with-headers", "headers": headers},
        {"key": b"k", "value": b"no-headers"},
    ])
    records = fjordtest.consume(broker.bootstrap, topic, expected=2)
    assert [r.value for r in records] == [b"with-headers", b"no-headers"]
    assert records[0].headers == headers
    assert not records[1].headers


def test_explicit_create_time_timestamps_round_trip(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    base_ms = int(time.time() * 1000) - 3_600_000
    timestamps = [base_ms + 7 * i for i in range(50)] + [base_ms - 1000]  # the last one goes back in time
    fjordtest.produce(broker.bootstrap, topic, [
        {"value": f"v{i}".encode(), "timestamp": ts} for i, ts in enumerate(timestamps)
    ])
    records = fjordtest.consume(broker.bootstrap, topic, expected=len(timestamps))
    assert [(r.timestamp_type, r.timestamp) for r in records] == [(TIMESTAMP_CREATE_TIME, ts) for ts in timestamps]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_round_trip_exactly(broker, topic, codec):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=2)
    # Compressible and incompressible payloads, several batches per partition.
    values = [(f"{codec}-{i}-" + "abc" * (i % 200)).encode() + bytes((i * 7 + j) % 256 for j in range(i % 64))
              for i in range(2000)]
    messages = [{"key": f"k{i % 10}".encode(), "value": v} for i, v in enumerate(values)]
    fjordtest.produce(broker.bootstrap, topic, messages, config={"compression.type": codec, "linger.ms": 20,
                                                                  "batch.num.messages": 300})
    records = fjordtest.consume(broker.bootstrap, topic, expected=len(values))
    assert sorted(r.value for r in records) == sorted(values)
    assert len(records) == len(values)
    # Offsets are dense per partition: every record of a compressed batch got its own offset.
    for partition in (0, 1):
        offsets = sorted(r.offset for r in records if r.partition == partition)
        assert offsets == list(range(len(offsets)))


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_every_acks_setting_delivers_all_records_in_order(broker, topic, acks):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    values = [f"acks-{acks}-{i}".encode() for i in range(500)]
    delivered = fjordtest.produce(broker.bootstrap, topic, [{"value": v} for v in values], config={"acks": acks})
    if acks != "0":
        # With acks the broker returns base offsets: the delivery reports carry real offsets.
        assert [m.offset() for m in delivered] == list(range(len(values)))
    records = fjordtest.consume(broker.bootstrap, topic, expected=len(values))
    assert [r.value for r in records] == values
    assert [r.offset for r in records] == list(range(len(values)))


def test_log_append_time_topic_returns_broker_timestamps(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1,
                           config={"message.timestamp.type": "LogAppendTime"})
    old_ms = int(time.time() * 1000) - 86_400_000
    before_ms = int(time.time() * 1000)
    delivered = fjordtest.produce(broker.bootstrap, topic, [{"value": f"v{i}".encode(), "timestamp": old_ms}
                                                            for i in range(20)])
    after_ms = int(time.time() * 1000)
    slack_ms = 5_000
    for msg in delivered:
        ts_type, ts = msg.timestamp()
        assert ts_type == TIMESTAMP_LOG_APPEND_TIME, msg.timestamp()
        assert before_ms - slack_ms <= ts <= after_ms + slack_ms
    records = fjordtest.consume(broker.bootstrap, topic, expected=20)
    assert len(records) == 20
    for record in records:
        assert record.timestamp_type == TIMESTAMP_LOG_APPEND_TIME == 2
        assert record.timestamp != old_ms
        assert before_ms - slack_ms <= record.timestamp <= after_ms + slack_ms


# ---------------------------------------------------------------------------------------------
# Fetch semantics


def _produce_one_batch(broker, topic: str, count: int) -> list[bytes]:
    values = [f"batch-value-{i}".encode() for i in range(count)]
    with broker.connect() as conn:
        result = conn.produce(topic, 0, kafka_wire.build_record_batch(values, keys=[b"k"] * count))
    assert result.error_code == kafka_wire.NONE, result
    assert result.base_offset == 0
    return values


def test_fetch_from_middle_of_batch_returns_whole_batch_and_client_skips_to_offset(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    values = _produce_one_batch(broker, topic, 10)

    with broker.connect() as conn:
        fetched = conn.fetch(topic, 0, offset=5)
    assert fetched.error_code == kafka_wire.NONE
    assert fetched.high_watermark == 10
    batches = kafka_wire.parse_batches(fetched.records)
    assert batches, "fetch at offset 5 returned no batch"
    # Kafka returns the batch that contains the offset, starting at its base offset (0).
    assert batches[0].base_offset == 0 and batches[0].last_offset_delta == 9
    assert batches[0].crc_ok
    assert [r.value for r in batches[0].records] == values

    records = fjordtest.consume(broker.bootstrap, topic, start_offset=5, expected=5)
    assert [(r.offset, r.value) for r in records] == [(i, values[i]) for i in range(5, 10)]


def test_fetch_at_log_end_is_empty_and_past_it_is_offset_out_of_range(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    _produce_one_batch(broker, topic, 10)
    with broker.connect() as conn:
        at_end = conn.fetch(topic, 0, offset=10)
        past_end = conn.fetch(topic, 0, offset=1000)
    assert at_end.error_code == kafka_wire.NONE and at_end.high_watermark == 10
    assert kafka_wire.parse_batches(at_end.records) == []
    assert past_end.error_code == kafka_wire.OFFSET_OUT_OF_RANGE


def _poll_first(consumer: Consumer, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None:
            return msg
    return None


def _first_poll_past_the_end(broker, topic: str, offset_reset: str):
    """What a consumer assigned partition 0 at offset 1000 (past the end) with
    auto.offset.reset=`offset_reset` first polls within 30 s, or None."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "fjord-e2e-unused",
                         "enable.auto.commit": False, "auto.offset.reset": offset_reset})
    try:
        consumer.assign([TopicPartition(topic, 0, 1000)])
        return _poll_first(consumer, 30)
    finally:
        consumer.close()


def test_out_of_range_offset_with_reset_error_reports_error(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    _produce_one_batch(broker, topic, 10)
    msg = _first_poll_past_the_end(broker, topic, "error")
    assert msg is not None, "no error event within 30s"
    assert msg.error() is not None, f"got a record at offset {msg.offset()} instead of an error"
    assert msg.error().code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE), msg.error()


def test_out_of_range_offset_with_reset_earliest_restarts_from_zero(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    values = _produce_one_batch(broker, topic, 10)
    msg = _first_poll_past_the_end(broker, topic, "earliest")
    assert msg is not None and msg.error() is None, msg and msg.error()
    assert (msg.offset(), msg.value()) == (0, values[0])


def test_assign_offset_beginning_reads_from_offset_zero(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    values = _produce_one_batch(broker, topic, 3)
    records = fjordtest.consume(broker.bootstrap, topic, start_offset=OFFSET_BEGINNING, expected=3)
    assert [r.value for r in records] == values
