"""Log compaction through real clients (Kafka's log cleaner semantics): the broker's per-shard
cleaner (every --log-cleaner-backoff-ms) keeps the latest record per key in closed segments, at its
original offset; tombstones stay for delete.retention.ms and then go; a consumer seeking into a gap
gets the next surviving record; SIGKILL while the cleaner rewrites segments loses and duplicates
nothing; a record without a key is refused with INVALID_RECORD; the group coordinator rebuilds its
state from a compacted __consumer_offsets."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

import fjordtest

BACKOFF_MS = 100
SEGMENT_BYTES = 1024 * 1024
WAIT_MAX_S = 60.0
CLEANED_LINE = "log cleaner compacted partition"


def _cleaner_broker(broker_factory, *extra: str):
    return broker_factory.start(["--log-cleaner-backoff-ms", str(BACKOFF_MS), *extra])


def _set_topic_config(bootstrap: str, topic: str, **configs: str) -> None:
    admin = fjordtest.admin(bootstrap)  # alive until the future resolves
    entries = [ConfigEntry(name.replace("_", "."), value, incremental_operation=AlterConfigOpType.SET)
               for name, value in configs.items()]
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=entries)
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)


def _cleaner_lines(broker, topic: str) -> list[str]:
    return [line for line in broker.stderr().splitlines() if CLEANED_LINE in line and f"{topic}-0" in line]


def _read_all(bootstrap: str, topic: str, start_offset: int | None = None, expected: int | None = None):
    return fjordtest.consume(bootstrap, topic, partitions=[0], start_offset=start_offset, expected=expected)


def _check_offsets_strictly_increase(records) -> None:
    offsets = [r.offset for r in records]
    assert offsets == sorted(set(offsets)), "offsets must strictly increase (no duplicates)"


def _report(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+(?: -> \S+)?)", line))


def test_compaction_keeps_the_latest_value_per_key_at_its_offset_and_then_drops_tombstones(broker_factory, topic):
    broker = _cleaner_broker(broker_factory)
    # segment.bytes has Kafka's minimum of 1 MiB: about 3 MB of updates, then 1.2 MB of filler.
    fjordtest.create_topic(broker.bootstrap, topic, config={
        "cleanup.policy": "compact", "segment.bytes": str(SEGMENT_BYTES), "min.cleanable.dirty.ratio": "0.01"})
    keys = [f"key-{k:03d}".encode() for k in range(60)]
    deleted = set(keys[::7])
    latest: dict[bytes, bytes | None] = {}
    messages = []
    for round_ in range(12):
        for key in keys:
            value = None if (round_ == 11 and key in deleted) else f"{key.decode()}-{round_}-".encode() + os.urandom(4000)
            latest[key] = value
            messages.append({"key": key, "value": value, "partition": 0})
    produced = fjordtest.produce(broker.bootstrap, topic, messages[: len(messages) // 2], config={"compression.type": "lz4"})
    produced += fjordtest.produce(broker.bootstrap, topic, messages[len(messages) // 2:], config={"compression.type": "none"})
    at_offset = {m.offset(): (m.key(), m.value()) for m in produced}
    # Filler with keys of its own, so every real key's records end up in closed segments.
    fillers = [{"key": f"filler-{i}".encode(), "value": os.urandom(4000), "partition": 0} for i in range(300)]
    produced_fillers = fjordtest.produce(broker.bootstrap, topic, fillers)
    high = produced_fillers[-1].offset() + 1

    # The cleaner ran: only the latest record of each key remains (tombstones retained a day).
    def compacted():
        records = _read_all(broker.bootstrap, topic)
        real = [r for r in records if not r.key.startswith(b"filler-")]
        return records if len(real) == len(keys) else None

    records = fjordtest.wait_until(compacted, "compaction to leave one record per key", WAIT_MAX_S)
    _check_offsets_strictly_increase(records)
    real = [r for r in records if not r.key.startswith(b"filler-")]
    assert {r.key: r.value for r in real} == latest
    for r in real:
        assert at_offset[r.offset] == (r.key, r.value), f"offset {r.offset} moved or changed"
    assert len(records) < high, "gaps: fewer records than offsets"
    line = _cleaner_lines(broker, topic)[-1]
    fields = _report(line)
    for name in ("records", "bytes", "tombstones_removed", "duration_ms", "mb_per_s", "shard_passes_total",
                 "shard_bytes_read_total", "shard_records_removed_total"):
        assert name in fields, f"{name} missing from the cleaner's log line: {line}"
    print(f"\ncleaner: {line}")

    # A consumer positioned on a removed offset gets the next surviving record.
    surviving = [r.offset for r in records]
    gone = sorted(set(range(surviving[-1])) - set(surviving))
    assert gone, "compaction left no gap"
    removed = gone[len(gone) // 2]
    after = next(o for o in surviving if o > removed)
    seek = _read_all(broker.bootstrap, topic, start_offset=removed, expected=1)
    assert seek and seek[0].offset == after, (removed, after, seek[:1])

    # delete.retention.ms=0: tombstones, already cleaned once, go on the next pass.
    _set_topic_config(broker.bootstrap, topic, delete_retention_ms="0")

    def tombstones_gone():
        records = _read_all(broker.bootstrap, topic)
        real = [r for r in records if not r.key.startswith(b"filler-")]
        return real if all(r.value is not None for r in real) else None

    real = fjordtest.wait_until(tombstones_gone, "expired tombstones to be removed", WAIT_MAX_S)
    assert {r.key: r.value for r in real} == {k: v for k, v in latest.items() if v is not None}
    assert any(int(_report(line).get("tombstones_removed", "0")) > 0 for line in _cleaner_lines(broker, topic))

    # All of it survives a restart (recovery finds no leftovers of the cleaner).
    broker.restart()
    records = _read_all(broker.bootstrap, topic)
    _check_offsets_strictly_increase(records)
    assert {r.key: r.value for r in records if not r.key.startswith(b"filler-")} == {
        k: v for k, v in latest.items() if v is not None}
    partition_dir = Path(broker.data_dir) / f"{topic}-0"
    assert not list(partition_dir.glob("*.cleaned")) and not list(partition_dir.glob("*.swap"))


KILL_DELAYS_S = [0.0, 0.01, 0.03, 0.08, 0.15, 0.3]
KILL_ATTEMPTS_MAX = 8


def _cleaner_files(partition_dir: Path) -> list[str]:
    """The cleaner's temporary files: `.cleaned` (a group rewritten, not committed) and `.swap`
    (committed, not yet renamed into place)."""
    return sorted(path.name for pattern in ("*.cleaned", "*.swap") for path in partition_dir.glob(pattern))


def _check_log(broker, topic: str, at_offset: dict, latest: dict, what: str) -> None:
    """Every record read is what was produced at its offset, offsets strictly increase, and every
    key's latest value is there."""
    records = _read_all(broker.bootstrap, topic)
    _check_offsets_strictly_increase(records)
    last_seen: dict[bytes, bytes] = {}
    for r in records:
        assert at_offset.get(r.offset) == (r.key, r.value), f"{what}: offset {r.offset} is not what was produced there"
        last_seen[r.key] = r.value
    assert last_seen == latest, f"{what}: a key lost its latest value"


def _wait_cleaner_files(partition_dir: Path, timeout_s: float) -> bool:
    """Polls (bounded) until the cleaner has a `.cleaned` or `.swap` file: it is rewriting."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(partition_dir.glob("*.cleaned")) or any(partition_dir.glob("*.swap")):
            return True
        time.sleep(0.002)
    return False


def test_sigkill_while_the_cleaner_rewrites_loses_and_duplicates_nothing(broker_factory, topic):
    broker = _cleaner_broker(broker_factory)
    fjordtest.create_topic(broker.bootstrap, topic, config={
        "cleanup.policy": "compact", "segment.bytes": str(SEGMENT_BYTES), "min.cleanable.dirty.ratio": "0.01"})
    partition_dir = Path(broker.data_dir) / f"{topic}-0"
    keys = [f"k{k:04d}".encode() for k in range(400)]
    latest: dict[bytes, bytes] = {}
    at_offset: dict[int, tuple[bytes, bytes]] = {}

    def produce_rounds(first: int, rounds: int, codec: str) -> None:
        messages = []
        for round_ in range(first, first + rounds):
            for key in keys:
                value = key + b"|" + str(round_).encode() + b"|" + os.urandom(600)
                latest[key] = value
                messages.append({"key": key, "value": value, "partition": 0})
        for m in fjordtest.produce(broker.bootstrap, topic, messages, config={"compression.type": codec, "batch.size": 65536}):
            at_offset[m.offset()] = (m.key(), m.value())

    produce_rounds(0, 40, "none")  # ~16 MB in 1 MiB segments: a pass takes a while
    codecs = ["lz4", "zstd", "gzip", "snappy", "none"]
    rounds_produced = 40
    landed: list[tuple[int, int, float, list[str]]] = []
    for iteration, delay_s in enumerate(KILL_DELAYS_S):
        if iteration > 0:
            produce_rounds(rounds_produced, 6, codecs[iteration % 5])
            rounds_produced += 6
        # Kill while the cleaner is rewriting; a kill that came too late (the pass done, nothing of
        # it left on disk) is retried with fresh dirty data and no delay, a bounded number of times.
        for attempt in range(KILL_ATTEMPTS_MAX):
            started = _wait_cleaner_files(partition_dir, timeout_s=15.0)
            assert started, f"iteration {iteration}: the cleaner never started a rewrite"
            time.sleep(delay_s if attempt == 0 else 0.0)
            broker.kill()
            leftovers = _cleaner_files(partition_dir)  # what the kill left on disk
            broker.start()
            _check_log(broker, topic, at_offset, latest, f"iteration {iteration}, attempt {attempt}")
            if leftovers:
                landed.append((iteration, attempt, delay_s, leftovers))
                break
            produce_rounds(rounds_produced, 6, codecs[attempt % 5])
            rounds_produced += 6
        else:
            raise AssertionError(
                f"iteration {iteration}: no SIGKILL landed mid-rewrite in {KILL_ATTEMPTS_MAX} attempts")
    assert len(landed) == len(KILL_DELAYS_S)
    print("\nkills during a rewrite (iteration/attempt, delay: kinds of files left): " + "; ".join(
        f"{i}/{a}, {d}s: {sorted({'.'.join(name.split('.')[-2:]) for name in files})}" for i, a, d, files in landed))
    lines = _cleaner_lines(broker, topic)
    if lines:
        biggest = max(lines, key=lambda line: int(_report(line).get("duration_ms", "0")))
        print(f"longest cleaner pass: {biggest}")


def test_a_record_without_a_key_is_refused_on_compacted_topics(broker_factory, topic):
    broker = _cleaner_broker(broker_factory)
    fjordtest.create_topic(broker.bootstrap, topic, config={"cleanup.policy": "compact,delete"})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0, "retries": 0})
    reports = []
    # Separate batches: Kafka refuses a whole batch when one of its records has no key.
    producer.produce(topic, value=b"no key", partition=0, on_delivery=lambda err, msg: reports.append(err))
    assert producer.flush(30) == 0
    producer.produce(topic, key=b"k", value=b"with key", partition=0, on_delivery=lambda err, msg: reports.append(err))
    assert producer.flush(30) == 0
    assert reports[0] is not None and reports[0].code() == KafkaError.INVALID_RECORD, reports
    assert reports[1] is None, reports
    assert [(r.key, r.value) for r in _read_all(broker.bootstrap, topic)] == [(b"k", b"with key")]


def test_group_offsets_reload_from_a_compacted_offsets_topic(broker_factory, topic):
    broker = _cleaner_broker(broker_factory, "--offsets-topic-num-partitions", "1")
    fjordtest.create_topic(broker.bootstrap, topic)
    fjordtest.produce(broker.bootstrap, topic, [{"value": b"x", "partition": 0} for _ in range(100)])
    group = f"compacted-{topic}"
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    # 4000 bytes of commit metadata (offset.metadata.max.bytes is 4096): 1 MiB segments fill fast.
    metadata = "m" * 4000
    try:
        # Creates __consumer_offsets; then 1 MiB segments so the commits below roll and compact.
        consumer.commit(offsets=[TopicPartition(topic, 0, 0, metadata=metadata)], asynchronous=False)
        _set_topic_config(broker.bootstrap, "__consumer_offsets", segment_bytes=str(SEGMENT_BYTES),
                          min_cleanable_dirty_ratio="0.01")
        for commit in range(1, 700):
            consumer.commit(offsets=[TopicPartition(topic, 0, commit % 100 + 1, metadata=metadata)], asynchronous=False)
    finally:
        consumer.close()
    fjordtest.wait_until(
        lambda: _cleaner_lines(broker, "__consumer_offsets"), "the cleaner to compact __consumer_offsets", WAIT_MAX_S
    )
    broker.restart()
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = fjordtest.wait_until(
            lambda: [tp for tp in consumer.committed([TopicPartition(topic, 0)], timeout=10) if tp.offset >= 0],
            "the committed offset after a restart", WAIT_MAX_S)
        assert (committed[0].offset, committed[0].metadata) == (699 % 100 + 1, metadata)
    finally:
        consumer.close()


if __name__ == "__main__":
    pytest.main([__file__, "-v", "-s"])
