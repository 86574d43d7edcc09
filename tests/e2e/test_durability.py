"""Durability: clean restarts, SIGKILL under acks=all and acks=1 load, SIGKILL right after a
DeleteRecords acknowledgement, and recovery from a torn or corrupt tail.

Storage layout relied on (the broker's contract): `<data-dir>/<topic>-<partition>/<20-digit base
offset>.log` segment files holding RecordBatch v2 entries back to back (an O_DIRECT tail may be
zero-padded). On start the broker truncates the last segment at the first torn or corrupt batch.
"""

from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path

from confluent_kafka import Producer

import fjordtest
import kafka_wire

KILL_AFTER_ACKED = 10_000
KILL_CYCLES = 3
PRODUCE_MAX = 200_000
PRODUCE_TIME_MAX_S = 90.0


def test_sigterm_restart_keeps_every_record(broker_factory, topic):
    broker = broker_factory.start()
    fjordtest.create_topic(broker.bootstrap, topic, partitions=3)
    messages = [{"key": f"k{i}".encode(), "value": f"value-{i}".encode()} for i in range(5_000)]
    fjordtest.produce(broker.bootstrap, topic, messages)
    broker.restart()
    records = fjordtest.consume(broker.bootstrap, topic, expected=len(messages))
    assert sorted((r.key, r.value) for r in records) == sorted((m["key"], m["value"]) for m in messages)
    # The partitions' offsets survived as well: dense from 0.
    for partition in range(3):
        offsets = sorted(r.offset for r in records if r.partition == partition)
        assert offsets == list(range(len(offsets)))
    # And the log continues where it stopped.
    delivered = fjordtest.produce(broker.bootstrap, topic, [{"value": b"after-restart", "partition": 0}])
    assert delivered[0].offset() == len([r for r in records if r.partition == 0])


def _value(key: bytes, size: int) -> bytes:
    return (b"value-" + key).ljust(size, b".")


def _produce_until_killed(broker, topic: str, acked: set[bytes], first_key_index: int, acks: str = "all", value_size: int = 0) -> int:
    """Produces with `acks` until KILL_AFTER_ACKED more records are acknowledged, then SIGKILLs
    the broker mid-stream (requests in flight). Returns the next unused key index."""
    failed = 0

    def on_delivery(err, msg):
        nonlocal failed
        if err is None:
            acked.add(msg.key())
        else:
            failed += 1

    producer = Producer({
        "bootstrap.servers": broker.bootstrap,
        "acks": acks,
        "enable.idempotence": False,
        "linger.ms": 2,
        "message.timeout.ms": 10_000,
        "queue.buffering.max.messages": 20_000,
    })
    target = len(acked) + KILL_AFTER_ACKED
    index = first_key_index
    deadline = time.monotonic() + PRODUCE_TIME_MAX_S
    while index < first_key_index + PRODUCE_MAX and time.monotonic() < deadline:
        key = f"key-{index:07d}".encode()
        try:
            producer.produce(topic, key=key, value=_value(key, value_size), on_delivery=on_delivery)
            index += 1
        except BufferError:
            producer.poll(0.05)
            continue
        producer.poll(0)
        if len(acked) >= target:
            broker.kill()  # SIGKILL by PID
            break
    assert broker.proc is not None and broker.proc.returncode is not None, (
        f"broker acknowledged only {len(acked)} records in {PRODUCE_TIME_MAX_S}s (failed: {failed})"
    )
    # Drain callbacks for acks that arrived before the kill, then drop whatever is still queued.
    producer.poll(1.0)
    producer.purge(in_queue=True, in_flight=True, blocking=False)
    producer.flush(5)
    del producer
    return index


def _check_every_acked_record_survived(broker, topic: str, acked: set[bytes], value_size: int) -> None:
    """At-least-once: every acknowledged key is there with its own value (unacknowledged ones may
    or may not be, retries may duplicate), and offsets stay dense per partition through every
    recovery."""
    records = fjordtest.consume(broker.bootstrap, topic, expected=len(acked))
    read: set[bytes] = set()
    for record in records:
        assert record.value == _value(record.key, value_size), f"record {record.key} has a foreign value"
        read.add(record.key)
    missing = acked - read
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged records lost, e.g. {sorted(missing)[:5]}"
    for partition in (0, 1):
        offsets = sorted(r.offset for r in records if r.partition == partition)
        assert offsets == list(range(len(offsets)))


def test_sigkill_during_acks_all_produce_loses_no_acknowledged_record(broker_factory, topic):
    """Three SIGKILL/restart cycles under acks=all load; every acknowledged record survives all
    of them."""
    broker = broker_factory.start()
    fjordtest.create_topic(broker.bootstrap, topic, partitions=2)
    acked: set[bytes] = set()
    next_key = 0
    for _cycle in range(KILL_CYCLES):
        next_key = _produce_until_killed(broker, topic, acked, next_key)
        broker.start()

    _check_every_acked_record_survived(broker, topic, acked, value_size=0)


def test_sigkill_during_acks_1_produce_loses_no_acknowledged_record(broker_factory, topic):
    """acks=1 promises survival of a process crash. With 1 KiB records each partition passes the
    1 MiB after which its active segment reserves space ahead of its data (fallocate, read as
    zeros), so the kills land while appends go into reserved space; the test checks that they
    did, then that every acknowledged record survives three SIGKILL/restart cycles."""
    broker = broker_factory.start()
    fjordtest.create_topic(broker.bootstrap, topic, partitions=2)
    acked: set[bytes] = set()
    next_key = 0
    reserved_seen = 0
    for _cycle in range(KILL_CYCLES):
        next_key = _produce_until_killed(broker, topic, acked, next_key, acks="1", value_size=1024)
        for partition in (0, 1):
            segment = sorted((broker.data_dir / f"{topic}-{partition}").glob("*.log"))[-1]
            content = segment.read_bytes()
            if len(content) - len(content.rstrip(b"\0")) >= 1 << 20:
                reserved_seen += 1
        broker.start()
    assert reserved_seen > 0, "no kill found an active segment with space reserved past its data"

    _check_every_acked_record_survived(broker, topic, acked, value_size=1024)


# ---------------------------------------------------------------------------------------------
# DeleteRecords


DELETE_ROUNDS = 3
RECORDS_PER_ROUND = 400


def _log_start_offset(broker, topic: str, end_offset: int) -> int:
    """The partition's log start offset as Fetch (v5+, at the log end) and ListOffsets(earliest)
    report it; the two must agree."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    with broker.connect() as conn:
        [fetched] = kafka_wire.fetch_multi(conn, topic, [(0, end_offset)], max_bytes=1024,
                                           partition_max_bytes=1024).partitions
    assert (fetched.error_code, fetched.high_watermark) == (kafka_wire.NONE, end_offset), fetched
    client = fjordtest.admin(broker.bootstrap)  # alive until the future resolves
    tp = TopicPartition(topic, 0)
    earliest = client.list_offsets({tp: OffsetSpec.earliest()}, request_timeout=15)[tp].result(timeout=30).offset
    assert fetched.log_start_offset == earliest, (fetched, earliest)
    return earliest


def test_sigkill_right_after_delete_records_keeps_the_acknowledged_log_start_offset(broker_factory, topic):
    """DeleteRecords is acknowledged only once the new log start offset is durable: a SIGKILL right
    after the acknowledgement never brings deleted records back, and deletes nothing more."""
    from confluent_kafka import TopicPartition

    broker = broker_factory.start()
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    values: list[bytes] = []
    acknowledged = 0
    for round_ in range(DELETE_ROUNDS):
        with broker.connect() as conn:
            for start in range(0, RECORDS_PER_ROUND, 100):
                batch = [f"round-{round_}-{i}".encode() for i in range(start, start + 100)]
                result = conn.produce(topic, 0, kafka_wire.build_record_batch(batch))
                assert (result.error_code, result.base_offset) == (kafka_wire.NONE, len(values)), result
                values += batch
        target = len(values) - RECORDS_PER_ROUND // 2 - round_  # inside the last batch for round 1
        client = fjordtest.admin(broker.bootstrap)
        [(_, future)] = client.delete_records([TopicPartition(topic, 0, target)], request_timeout=15).items()
        acknowledged = future.result(timeout=30).low_watermark
        broker.kill()  # SIGKILL as soon as the acknowledgement is in
        assert acknowledged == target, (acknowledged, target)

        broker.start()
        start_offset = _log_start_offset(broker, topic, len(values))
        assert start_offset >= acknowledged, (
            f"round {round_}: DeleteRecords acknowledged log start offset {acknowledged}, "
            f"after SIGKILL and restart it is {start_offset}")
        with broker.connect() as conn:
            below = conn.fetch(topic, 0, acknowledged - 1)
        assert below.error_code == kafka_wire.OFFSET_OUT_OF_RANGE, f"round {round_}: offset {acknowledged - 1} served"
        # Nothing at or above the acknowledged offset went: the log starts exactly there.
        records = fjordtest.consume(broker.bootstrap, topic, partitions=[0], expected=len(values) - acknowledged,
                                    timeout_s=30)
        assert [(r.offset, r.value) for r in records] == list(enumerate(values))[acknowledged:], f"round {round_}"


# ---------------------------------------------------------------------------------------------
# Corrupted tail


BATCH_COUNT = 20
RECORDS_PER_BATCH = 5


def _produce_batches(broker, topic: str) -> list[list[bytes]]:
    """BATCH_COUNT batches of RECORDS_PER_BATCH records, one Produce request each."""
    batches = []
    with broker.connect() as conn:
        for b in range(BATCH_COUNT):
            values = [f"batch-{b:02d}-record-{r}".encode() for r in range(RECORDS_PER_BATCH)]
            result = conn.produce(topic, 0, kafka_wire.build_record_batch(values))
            assert result.error_code == kafka_wire.NONE, result
            assert result.base_offset == b * RECORDS_PER_BATCH
            batches.append(values)
    return batches


def _last_segment(data_dir: Path, topic: str) -> tuple[Path, list[kafka_wire.Batch]]:
    """The newest segment that holds at least one batch, and its parsed batches."""
    partition_dir = data_dir / f"{topic}-0"
    segments = sorted(partition_dir.glob("*.log"), reverse=True)
    assert segments, f"no segment files in {partition_dir}: {list(partition_dir.iterdir()) if partition_dir.exists() else 'missing'}"
    for segment in segments:
        assert re.fullmatch(r"\d{20}\.log", segment.name), f"unexpected segment name {segment.name}"
        batches = kafka_wire.parse_batches(segment.read_bytes(), decode_records=False)
        if batches:
            return segment, batches
    raise AssertionError(f"no segment in {partition_dir} holds a whole batch")


def _all_values(broker, topic: str, expected: int) -> list[tuple[int, bytes]]:
    records = fjordtest.consume(broker.bootstrap, topic, partitions=[0], expected=expected, timeout_s=30)
    return [(r.offset, r.value) for r in records]


def _stopped_after_batches(broker_factory, topic: str):
    """A broker stopped after BATCH_COUNT batches went to partition 0 of `topic`: the broker, the
    batches' values, and the newest segment with its parsed batches (to damage)."""
    broker = broker_factory.start()
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    batches = _produce_batches(broker, topic)
    broker.stop()
    segment, parsed = _last_segment(broker.data_dir, topic)
    return broker, batches, segment, parsed


def _restart_and_check_served(broker, topic: str, survivors: list[list[bytes]]) -> list[tuple[int, bytes]]:
    """Restarts the broker and checks that it serves exactly the records of the `survivors`
    batches at their original offsets; returns those (offset, value) pairs."""
    broker.start()
    expected = [(b * RECORDS_PER_BATCH + r, v) for b, values in enumerate(survivors) for r, v in enumerate(values)]
    assert _all_values(broker, topic, len(expected)) == expected
    return expected


def _truncation_logged(broker, topic: str) -> bool:
    lines = broker.stderr().splitlines()
    return any("truncat" in line.lower() and topic in line for line in lines)


def test_garbage_after_last_batch_is_truncated_and_every_batch_is_served(broker_factory, topic):
    broker, batches, segment, parsed = _stopped_after_batches(broker_factory, topic)
    assert parsed[-1].base_offset == (BATCH_COUNT - 1) * RECORDS_PER_BATCH
    assert all(b.crc_ok for b in parsed)
    # Garbage right after the last whole batch (over any zero padding), as a torn append leaves.
    garbage = random.Random(7).randbytes(4096)
    with open(segment, "r+b") as f:
        f.seek(parsed[-1].end)
        f.write(garbage)
        f.flush()
        os.fsync(f.fileno())

    expected = _restart_and_check_served(broker, topic, batches)
    assert _truncation_logged(broker, topic), "broker log does not say what it truncated"
    # The log goes on from the last good batch.
    with broker.connect() as conn:
        result = conn.produce(topic, 0, kafka_wire.build_record_batch([b"after-recovery"]))
    assert (result.error_code, result.base_offset) == (kafka_wire.NONE, BATCH_COUNT * RECORDS_PER_BATCH)


def test_flipped_byte_in_last_batch_truncates_it_and_serves_every_batch_before(broker_factory, topic):
    broker, batches, segment, parsed = _stopped_after_batches(broker_factory, topic)
    last = parsed[-1]
    assert last.base_offset == (BATCH_COUNT - 1) * RECORDS_PER_BATCH
    with open(segment, "r+b") as f:
        f.seek(last.end - 1)  # the last byte of the last record: covered by the batch CRC
        byte = f.read(1)
        f.seek(last.end - 1)
        f.write(bytes([byte[0] ^ 0xFF]))
        f.flush()
        os.fsync(f.fileno())

    expected = _restart_and_check_served(broker, topic, batches[:-1])
    assert _truncation_logged(broker, topic), "broker log does not say what it truncated"
    with broker.connect() as conn:
        result = conn.produce(topic, 0, kafka_wire.build_record_batch([b"after-recovery"]))
        assert (result.error_code, result.base_offset) == (kafka_wire.NONE, len(expected))
        # The corrupt batch is never served: a fetch at its old offsets sees only the new record.
        fetched = conn.fetch(topic, 0, offset=len(expected))
    served = kafka_wire.parse_batches(fetched.records)
    assert [r.value for b in served for r in b.records] == [b"after-recovery"]


def test_partial_batch_header_at_tail_is_truncated(broker_factory, topic):
    broker, batches, segment, parsed = _stopped_after_batches(broker_factory, topic)
    last = parsed[-1]
    # Keep only the first 30 bytes of the last batch: a torn write that lost most of it.
    with open(segment, "r+b") as f:
        f.truncate(last.start + 30)
        f.flush()
        os.fsync(f.fileno())

    expected = _restart_and_check_served(broker, topic, batches[:-1])
