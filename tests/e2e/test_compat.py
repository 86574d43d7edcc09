"""Kafka compatibility rules that unchanged clients depend on, end to end:

- KIP-74 (Fetch max_bytes): a Fetch response stays within the request's max_bytes, whatever each
  partition's partition_max_bytes says; only the first batch of the first non-empty partition may
  exceed it (so a consumer always makes progress). librdkafka refuses any response larger than
  receive.message.max.bytes ("Invalid response size"), so a broker that sends more stalls it.
- Kafka's LogValidator sets a CreateTime batch's header maxTimestamp from its records (compressed
  or not) whatever the producer wrote there; the time index (ListOffsets by timestamp, KIP-79),
  ListOffsets MAX_TIMESTAMP (-3, KIP-734) and time retention (retention.ms on each segment's
  largest timestamp, KIP-32/KIP-33) all read that value.
- KIP-447 / KIP-98: TxnOffsetCommit to a Stable classic group succeeds with the member's id and
  generation (confluent-kafka) and also without them (kafka-python sends neither): Kafka's
  ClassicGroup.validateOffsetCommit refuses a member-less commit only when it is not
  transactional.

Every wait is bounded in time (and so in count).
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import (OFFSET_BEGINNING, Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions,
                             KafkaError, KafkaException, Producer, TopicPartition)
from confluent_kafka.admin import OffsetSpec

import fjordtest
import kafka_wire

WAIT_MAX_S = 60.0
POLL_INTERVAL_S = 0.2
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
YEAR_2100_MS = 4_102_444_800_000
# Group flags as test_groups.py / test_transactions.py use them.
KAFKA_PYTHON_CALL_MAX_S = 30.0
GROUP_ARGS = ["--group-initial-rebalance-delay-ms", "0", "--group-min-session-timeout-ms", "1000"]


# ---------------------------------------------------------------------------------------------
# helpers


def _now_ms() -> int:
    return int(time.time() * 1000)





def _bounded(call, timeout_s: float, what: str):
    """Runs a blocking client call (kafka-python's transactional calls wait without a timeout) in
    a daemon thread; fails the test if it does not return within `timeout_s`."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as e:  # re-raised in the test thread
            outcome["error"] = e

    thread = threading.Thread(target=run, name=f"bounded-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"{what} did not return within {timeout_s}s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _offsets_for_time(bootstrap: str, topic: str, partition: int, timestamp_ms: int) -> int:
    """ListOffsets by timestamp (KIP-79) through Consumer.offsets_for_times: the earliest offset
    whose record timestamp is >= `timestamp_ms`, -1 if none."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"fjord-e2e-oft-{uuid.uuid4().hex[:8]}"})
    try:
        [answer] = consumer.offsets_for_times([TopicPartition(topic, partition, timestamp_ms)], timeout=30)
        assert answer.error is None, f"offsets_for_times error: {answer.error}"
        return answer.offset
    finally:
        consumer.close()


def _max_timestamp_offset(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    """ListOffsets with timestamp -3 (MAX_TIMESTAMP, KIP-734): (offset, timestamp)."""
    client = fjordtest.admin(bootstrap)
    tp = TopicPartition(topic, partition)
    info = client.list_offsets({tp: OffsetSpec.max_timestamp()}, request_timeout=30)[tp].result(timeout=30)
    return info.offset, info.timestamp


def _watermarks(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "fjord-e2e-watermarks"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        consumer.close()


# ---------------------------------------------------------------------------------------------
# 1. KIP-74: fetch.max.bytes below max.partition.fetch.bytes

BIG_RECORD_BYTES = 900_000
BIG_RECORDS_PER_PARTITION = 4
BIG_PARTITIONS = 3
FETCH_MAX_BYTES = 1_000_000
PARTITION_FETCH_MAX_BYTES = 20_000_000


def _big_value(partition: int, index: int) -> bytes:
    prefix = f"p{partition}-r{index}:".encode()
    return prefix + bytes([65 + (partition * 7 + index) % 26]) * (BIG_RECORD_BYTES - len(prefix))


def test_consumer_with_fetch_max_bytes_below_partition_max_bytes_gets_bounded_responses(broker, topic):
    """KIP-74: a Fetch response holds at most the request's max_bytes (fetch.max.bytes), in
    partition order, however large partition_max_bytes (max.partition.fetch.bytes) is; only the
    first batch of the first non-empty partition may go over it, and then alone. A consumer with
    fetch.max.bytes=1000000 and receive.message.max.bytes=1000512 must read every 900 kB record
    of 3 partitions without "Invalid response size" errors. Raw: a 3-partition Fetch with
    max_bytes=1000000 is within max(1000000, first batch), and with max_bytes=1 it carries
    exactly the first partition's first batch."""
    fjordtest.create_topic(broker.bootstrap, topic, partitions=BIG_PARTITIONS)
    messages = [{"value": _big_value(p, i), "partition": p}
                for i in range(BIG_RECORDS_PER_PARTITION) for p in range(BIG_PARTITIONS)]
    # batch.size below two records: each record is its own batch.
    fjordtest.produce(broker.bootstrap, topic, messages, timeout_s=WAIT_MAX_S, config={
        "acks": "all", "linger.ms": 0, "message.max.bytes": 2_000_000, "batch.size": BIG_RECORD_BYTES + 10_000})
    expected = {(p, i): _big_value(p, i) for p in range(BIG_PARTITIONS) for i in range(BIG_RECORDS_PER_PARTITION)}

    # -- confluent-kafka consumer ------------------------------------------------------------
    error_events: list[str] = []
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": f"fjord-e2e-kip74-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": FETCH_MAX_BYTES,
        "max.partition.fetch.bytes": PARTITION_FETCH_MAX_BYTES,
        "receive.message.max.bytes": FETCH_MAX_BYTES + 512,
        "fetch.wait.max.ms": 100,
        "error_cb": lambda err: error_events.append(str(err)),
    })
    seen: dict[tuple[int, int], int] = {}
    duplicates: list[tuple[int, int]] = []
    wrong: list[tuple[int, int, int]] = []
    message_errors: list[str] = []
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(BIG_PARTITIONS)])
        deadline = time.monotonic() + WAIT_MAX_S
        while len(seen) < len(expected) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if any("Invalid response size" in e or "receive.message.max.bytes" in e for e in error_events):
                break  # the consumer is stuck re-fetching the oversized response: fail now
            if msg is None:
                continue
            if msg.error():
                message_errors.append(str(msg.error()))
                continue
            key = (msg.partition(), msg.offset())
            if key in seen:
                duplicates.append(key)
            seen[key] = len(msg.value())
            if msg.value() != expected.get(key):
                wrong.append((key[0], key[1], len(msg.value())))
    finally:
        consumer.close()
    # Each part is checked and reported on its own: one broken rule must not hide the others.
    problems: list[str] = []
    oversized = [e for e in error_events if "Invalid response size" in e or "receive.message.max.bytes" in e]
    if oversized:
        problems.append(
            f"consumer: broker sent Fetch responses above fetch.max.bytes={FETCH_MAX_BYTES} (KIP-74); librdkafka "
            f"errors: {oversized[:2]}; consumed {len(seen)} of {len(expected)} records")
    if message_errors:
        problems.append(f"consumer: message errors {message_errors[:5]}")
    if sorted(seen) != sorted(expected):
        problems.append(f"consumer: consumed {sorted(seen)} within {WAIT_MAX_S}s, expected all {len(expected)}")
    if duplicates:
        problems.append(f"consumer: records delivered twice: {duplicates}")
    if wrong:
        problems.append(f"consumer: records with wrong values (partition, offset, length): {wrong}")

    all_partitions = [(p, 0) for p in range(BIG_PARTITIONS)]
    with broker.connect(timeout_s=30) as conn:
        # -- raw Fetch: max_bytes=1000000, partition_max_bytes=20000000 -----------------------
        answer = kafka_wire.fetch_multi(conn, topic, all_partitions, max_bytes=FETCH_MAX_BYTES,
                                        partition_max_bytes=PARTITION_FETCH_MAX_BYTES)
        assert answer.top_error_code == kafka_wire.NONE
        assert [p.partition for p in answer.partitions] == list(range(BIG_PARTITIONS))
        assert all(p.error_code == kafka_wire.NONE for p in answer.partitions), answer.partitions
        assert all(p.high_watermark == BIG_RECORDS_PER_PARTITION for p in answer.partitions), answer.partitions
        sizes = [len(p.records) for p in answer.partitions]
        first = next((p for p in answer.partitions if p.records), None)
        assert first is not None, "no records for any partition"
        assert first.partition == 0, f"first non-empty partition is {first.partition}, not the first requested"
        batches = kafka_wire.parse_batches(first.records, decode_records=False)
        assert batches and batches[0].start == 0 and batches[0].crc_ok and batches[0].base_offset == 0, (
            "the first partition's data does not start with a whole batch")
        first_batch_bytes = batches[0].end
        if sum(sizes) > max(FETCH_MAX_BYTES, first_batch_bytes):
            problems.append(
                f"raw Fetch max_bytes={FETCH_MAX_BYTES}, partition_max_bytes={PARTITION_FETCH_MAX_BYTES}: "
                f"{sum(sizes)} record bytes (per partition {sizes}; first batch {first_batch_bytes} bytes; "
                f"frame {answer.frame_bytes} bytes), more than max(max_bytes, first batch)")

        # -- raw Fetch: max_bytes=1, smaller than any batch -------------------------------------
        answer = kafka_wire.fetch_multi(conn, topic, all_partitions, max_bytes=1,
                                        partition_max_bytes=PARTITION_FETCH_MAX_BYTES)
        assert answer.top_error_code == kafka_wire.NONE
        assert [p.partition for p in answer.partitions] == list(range(BIG_PARTITIONS))
        assert all(p.error_code == kafka_wire.NONE for p in answer.partitions), answer.partitions
        sizes = [len(p.records) for p in answer.partitions]
        batches = kafka_wire.parse_batches(answer.partitions[0].records, decode_records=False)
        if not ([b.base_offset for b in batches] == [0] and batches[0].crc_ok and batches[0].end == sizes[0]
                and sizes[1:] == [0] * (BIG_PARTITIONS - 1)):
            problems.append(
                f"raw Fetch max_bytes=1: expected exactly partition 0's first batch ({first_batch_bytes} bytes) and "
                f"nothing else; got partition 0 batches {[b.base_offset for b in batches]}, bytes per partition {sizes}")
    assert not problems, "KIP-74 violations:\n" + "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# 2. The batch header's maxTimestamp comes from its records (LogValidator)


def _wrong_header_batches(now: int, compression: int) -> list[dict]:
    """Three 5-record batches, records now-3h / now-2h / now-1h (+0..4 s), their header
    maxTimestamp wrong: -1, ten days too low, year 2100."""
    specs = [
        (now - 3 * HOUR_MS, [0, 1_000, 2_000, 3_000, 4_000], -1),
        # Not monotonic: the max is the 4th record, not the last.
        (now - 2 * HOUR_MS, [0, 3_000, 1_000, 4_000, 2_000], now - 2 * HOUR_MS - 10 * DAY_MS),
        (now - 1 * HOUR_MS, [0, 1_000, 2_000, 3_000, 4_000], YEAR_2100_MS),
    ]
    out = []
    for index, (base, deltas, header_max) in enumerate(specs):
        values = [f"b{index}-r{i}".encode() for i in range(len(deltas))]
        out.append({
            "base": base, "deltas": deltas, "header_max": header_max,
            "timestamps": [base + d for d in deltas],
            "bytes": kafka_wire.build_record_batch_with_header_max_timestamp(
                values, base, deltas, header_max, compression=compression),
        })
    return out


def _produce_raw(broker, topic: str, batches: list[bytes]) -> list[int]:
    offsets = []
    with broker.connect(timeout_s=30) as conn:
        for raw in batches:
            result = conn.produce(topic, 0, raw)
            assert result.error_code == kafka_wire.NONE, (
                f"produce refused ({result.error_code}: {result.error_message}); Kafka accepts a batch whose "
                "header maxTimestamp is off (it rewrites it)")
            offsets.append(result.base_offset)
    return offsets


def _check_stored_max_timestamps_and_time_lookups(broker, topic: str, specs: list[dict], decoded: bool) -> None:
    """(a) stored headers, (b) ListOffsets by timestamp, (c) ListOffsets MAX_TIMESTAMP; each
    checked and reported on its own."""
    problems: list[str] = []
    with broker.connect(timeout_s=30) as conn:
        fetched = conn.fetch(topic, 0, 0, max_bytes=1 << 20)
    assert fetched.error_code == kafka_wire.NONE
    stored = kafka_wire.parse_batches(fetched.records)
    assert [b.base_offset for b in stored] == [0, 5, 10], stored
    for spec, batch in zip(specs, stored):
        assert batch.crc_ok, f"stored batch at {batch.base_offset} has a bad CRC"
        if decoded:
            assert [r.timestamp for r in batch.records] == spec["timestamps"], "record timestamps changed"
        if batch.max_timestamp != max(spec["timestamps"]):
            problems.append(
                f"(a) batch at offset {batch.base_offset}: stored header maxTimestamp {batch.max_timestamp} "
                f"(producer wrote {spec['header_max']}), its records' max is {max(spec['timestamps'])}")

    # (b) ListOffsets by timestamp: the first offset whose record timestamp is >= the target.
    first, second, third = specs
    lookups = {
        first["base"] + 1_500: 2,   # inside batch 0 (header was -1)
        second["base"] + 1_500: 6,  # inside batch 1 (header ten days too low): record 1 (base+3000)
        third["base"] + 2_500: 13,  # inside batch 2 (header in 2100)
    }
    got = {target: _offsets_for_time(broker.bootstrap, topic, 0, target) for target in lookups}
    if got != lookups:
        problems.append(f"(b) offsets_for_times (target -> offset): got {got}, expected {lookups}")

    # (c) ListOffsets MAX_TIMESTAMP (-3, KIP-734): the record with the largest timestamp.
    max_ts = _max_timestamp_offset(broker.bootstrap, topic, 0)
    if max_ts != (14, max(third["timestamps"])):
        problems.append(f"(c) ListOffsets MAX_TIMESTAMP: got {max_ts}, expected {(14, max(third['timestamps']))}")
    assert not problems, "batch maxTimestamp not taken from the records:\n" + "\n".join(problems)


def test_batch_max_timestamp_is_set_from_its_records(broker, topic):
    """Kafka's LogValidator (assignOffsetsNonCompressed) sets a CreateTime batch's header
    maxTimestamp to the largest record timestamp, whatever the producer wrote (-1, too low, too
    high). Stored batches must carry it, ListOffsets by timestamp (KIP-79) must find the first
    record >= the target, and ListOffsets MAX_TIMESTAMP (KIP-734) the record with the largest
    timestamp."""
    fjordtest.create_topic(broker.bootstrap, topic)
    specs = _wrong_header_batches(_now_ms(), kafka_wire.COMPRESSION_NONE)
    assert _produce_raw(broker, topic, [s["bytes"] for s in specs]) == [0, 5, 10]
    _check_stored_max_timestamps_and_time_lookups(broker, topic, specs, decoded=True)


def test_compressed_batch_max_timestamp_is_set_from_its_records(broker, topic):
    """The same LogValidator rule for compressed batches (validateMessagesAndAssignOffsetsCompressed,
    in-place assignment: batch.setMaxTimestamp from the decompressed records): gzip batches whose
    header maxTimestamp is -1, too low or too high are stored with the records' max, and the
    KIP-79 / KIP-734 lookups use it."""
    fjordtest.create_topic(broker.bootstrap, topic)
    specs = _wrong_header_batches(_now_ms(), kafka_wire.COMPRESSION_GZIP)
    assert _produce_raw(broker, topic, [s["bytes"] for s in specs]) == [0, 5, 10]
    _check_stored_max_timestamps_and_time_lookups(broker, topic, specs, decoded=False)


def test_lz4_batch_with_explicit_timestamps_is_found_by_offsets_for_times(broker, topic):
    """KIP-79 ListOffsets by timestamp over an lz4 batch produced by librdkafka with explicit,
    non-monotonic CreateTime timestamps: the first offset whose timestamp is >= the target."""
    fjordtest.create_topic(broker.bootstrap, topic)
    t0 = _now_ms() - 30 * 60_000
    deltas = [0, 5_000, 1_000, 7_000, 3_000, 9_000, 2_000, 8_000]
    delivered = fjordtest.produce(
        broker.bootstrap, topic,
        [{"value": f"v{i}".encode() * 50, "timestamp": t0 + d, "partition": 0} for i, d in enumerate(deltas)],
        config={"compression.type": "lz4", "linger.ms": 200, "batch.num.messages": 100})
    assert [m.offset() for m in delivered] == list(range(len(deltas)))
    with broker.connect(timeout_s=30) as conn:
        stored = kafka_wire.parse_batches(conn.fetch(topic, 0, 0).records, decode_records=False)
    assert stored and all(b.attributes & 0x07 == 3 for b in stored), "not stored as lz4 batches"
    assert max(b.max_timestamp for b in stored) == t0 + max(deltas)
    for target_delta in (0, 500, 4_000, 6_000, 8_500):
        expected = next(i for i, d in enumerate(deltas) if d >= target_delta)
        assert _offsets_for_time(broker.bootstrap, topic, 0, t0 + target_delta) == expected, target_delta
    assert _offsets_for_time(broker.bootstrap, topic, 0, t0 + 60_000) == -1
    assert _max_timestamp_offset(broker.bootstrap, topic, 0) == (5, t0 + 9_000)


def test_topic_compression_type_recompresses_what_producers_send(broker, topic):
    """Kafka's LogValidator recompresses a batch whose codec differs from the topic's
    `compression.type` (anything but `producer`): uncompressed and gzip batches sent to an lz4
    topic are stored, and fetched, as lz4, with every record, offset and timestamp kept."""
    fjordtest.create_topic(broker.bootstrap, topic, config={"compression.type": "lz4"})
    now = _now_ms()
    values = [f"value-{i}".encode() * 20 for i in range(5)]
    plain = kafka_wire.build_record_batch_with_header_max_timestamp(
        values, base_timestamp=now - 5_000, timestamp_deltas=[0, 1, 2, 3, 4], header_max_timestamp=-1)
    gzipped = kafka_wire.build_record_batch_with_header_max_timestamp(
        values, base_timestamp=now - 4_000, timestamp_deltas=[0, 1, 2, 3, 4], header_max_timestamp=now - 4_000 + 4,
        compression=kafka_wire.COMPRESSION_GZIP)
    assert _produce_raw(broker, topic, [plain, gzipped]) == [0, 5]
    with broker.connect(timeout_s=30) as conn:
        stored = kafka_wire.parse_batches(conn.fetch(topic, 0, 0).records, decode_records=False)
    assert [(b.base_offset, b.attributes & 0x07, b.max_timestamp) for b in stored] == [
        (0, 3, now - 5_000 + 4), (5, 3, now - 4_000 + 4)], "stored batches are not lz4 with the records' max timestamp"
    consumed = fjordtest.consume(broker.bootstrap, topic, expected=10)
    assert [m.value for m in consumed] == values + values
    assert [m.timestamp for m in consumed] == [now - 5_000 + i for i in range(5)] + [now - 4_000 + i for i in range(5)]


def test_record_timestamps_outside_the_topic_bounds_get_invalid_timestamp(broker, topic):
    """Kafka's LogValidator.validateTimestamp for CreateTime topics: a record timestamp later than
    now + message.timestamp.after.max.ms (Kafka 4's default: one hour, KIP-1030) or earlier than
    now - message.timestamp.before.max.ms gets INVALID_TIMESTAMP (32) and nothing is stored;
    -1 (no timestamp) is always accepted."""
    fjordtest.create_topic(broker.bootstrap, topic, config={"message.timestamp.before.max.ms": "86400000"})
    now = _now_ms()
    cases = [
        ("two hours ahead", now + 2 * 3_600_000, 32),
        ("two days behind", now - 2 * 86_400_000, 32),
        ("one minute ahead", now + 60_000, kafka_wire.NONE),
        ("no timestamp", -1, kafka_wire.NONE),
    ]
    answers = []
    with broker.connect(timeout_s=30) as conn:
        for name, timestamp, _ in cases:
            raw = kafka_wire.build_record_batch_with_header_max_timestamp(
                [b"v"], base_timestamp=timestamp, timestamp_deltas=[0], header_max_timestamp=timestamp)
            answers.append((name, conn.produce(topic, 0, raw).error_code))
    assert answers == [(name, code) for name, _, code in cases]
    assert _watermarks(broker.bootstrap, topic) == (0, 2), "refused batches must not be stored"


RETENTION_CHECK_MS = 500
SEGMENT_BYTES = 1024 * 1024  # the smallest segment.bytes Kafka 4 accepts (KIP-1030)


def test_time_retention_removes_segments_whose_header_max_timestamp_was_wrong(broker_factory, topic):
    """Time retention (retention.ms) removes a closed segment when its largest record timestamp
    is older than retention.ms; Kafka takes that timestamp from the batch headers it rewrote from
    the records (LogValidator), so batches produced with header maxTimestamp -1 but 2-hour-old
    records (allowed: message.timestamp.before.max.ms is unbounded) expire like any other."""
    broker = broker_factory.start(["--log-retention-check-interval-ms", str(RETENTION_CHECK_MS)])
    fjordtest.create_topic(broker.bootstrap, topic, config={
        "retention.ms": "60000", "segment.bytes": str(SEGMENT_BYTES)})
    old = _now_ms() - 2 * HOUR_MS
    records_per_batch, value_bytes, batches = 10, 10_000, 40  # ~4 MB: three or more segments
    raw = []
    for b in range(batches):
        values = [f"b{b}-r{i}:".encode().ljust(value_bytes, b"x") for i in range(records_per_batch)]
        deltas = [i * 10 for i in range(records_per_batch)]
        raw.append(kafka_wire.build_record_batch_with_header_max_timestamp(values, old + b * 1_000, deltas, -1))
    offsets = _produce_raw(broker, topic, raw)
    assert offsets == [b * records_per_batch for b in range(batches)]
    segments = sorted((Path(broker.data_dir) / f"{topic}-0").glob("*.log"))
    assert len(segments) >= 3, f"expected the 1 MiB segments to roll at least twice: {segments}"

    deadline = time.monotonic() + 30.0
    low, high = _watermarks(broker.bootstrap, topic)
    while low == 0 and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
        low, high = _watermarks(broker.bootstrap, topic)
    assert high == batches * records_per_batch
    assert low > 0, (
        f"retention.ms=60000 removed nothing within 30 s (retention check every {RETENTION_CHECK_MS} ms) although "
        f"every record is 2 h old: low watermark {low}, {len(segments)} segments")


# ---------------------------------------------------------------------------------------------
# 3. KIP-447: TxnOffsetCommit while the classic group is Stable


def test_send_offsets_to_transaction_while_the_consumer_group_is_stable(broker_factory, topic, monkeypatch):
    """KIP-447 / KIP-98 consume-transform-produce: with a consumer a Stable member of group G,
    a transactional producer's send_offsets_to_transaction must succeed and its offsets be
    committed with the transaction — from confluent-kafka (TxnOffsetCommit v3 with the member id
    and generation) and from kafka-python (TxnOffsetCommit v2: no member id, generation -1),
    which Kafka's ClassicGroup.validateOffsetCommit accepts because the commit is transactional
    (only a non-transactional member-less commit to a non-Empty group is UNKNOWN_MEMBER_ID)."""
    from kafka import KafkaProducer
    from kafka import TopicPartition as KTopicPartition
    from kafka.producer import transaction_manager as kafka_python_txn
    from kafka.structs import OffsetAndMetadata

    # kafka-python 2.3.3's TxnOffsetCommitHandler.handle_response raises AttributeError on any
    # error code other than NONE (`errors.CoordinatorNotAvailableError` on a dict), so its
    # send_offsets_to_transaction then never returns. Record the broker's answers so a failure
    # says which error code the broker sent.
    txn_offset_commit_answers: list[tuple[str, int, int]] = []
    original_handle_response = kafka_python_txn.TxnOffsetCommitHandler.handle_response

    def recording_handle_response(self, response):
        txn_offset_commit_answers.extend(
            (t, p, code) for t, partitions in response.topics for p, code in partitions)
        return original_handle_response(self, response)

    monkeypatch.setattr(kafka_python_txn.TxnOffsetCommitHandler, "handle_response", recording_handle_response)

    broker = broker_factory.start(GROUP_ARGS)
    input_topic, output_topic = topic, f"{topic}-out"
    fjordtest.create_topic(broker.bootstrap, input_topic, partitions=2)
    fjordtest.create_topic(broker.bootstrap, output_topic)
    fjordtest.produce(broker.bootstrap, input_topic,
                      [{"value": f"in-{i}".encode(), "partition": i % 2} for i in range(20)])
    group = kafka_wire.unique_name("kip447")
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap, "group.id": group, "session.timeout.ms": 6000,
        "enable.auto.commit": False, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100,
        "isolation.level": "read_committed",
    })

    def consume_until(total: int) -> int:
        got = 0
        deadline = time.monotonic() + WAIT_MAX_S
        while (got < total or len(consumer.assignment()) < 2) and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            assert not msg.error(), f"consumer error: {msg.error()}"
            got += 1
        assert len(consumer.assignment()) == 2, f"assignment {consumer.assignment()} within {WAIT_MAX_S}s"
        assert got == total, f"consumed {got} of {total} input records within {WAIT_MAX_S}s"
        return got

    def assert_stable_with_one_member():
        description = fjordtest.describe_group(broker.bootstrap, group)
        assert description.state == ConsumerGroupState.STABLE and len(description.members) == 1, (
            f"precondition: group {group} should be Stable with the consumer as member: "
            f"{description.state}, {len(description.members)} members")

    kp = None
    try:
        consumer.subscribe([input_topic])
        consume_until(20)
        assert_stable_with_one_member()

        # -- confluent-kafka: TxnOffsetCommit with member id and generation -------------------
        positions = consumer.position(consumer.assignment())
        sent = {(tp.topic, tp.partition): tp.offset for tp in positions}
        assert sent == {(input_topic, 0): 10, (input_topic, 1): 10}
        producer = Producer({"bootstrap.servers": broker.bootstrap,
                             "transactional.id": kafka_wire.unique_name("kip447-confluent"), "linger.ms": 5})
        producer.init_transactions(WAIT_MAX_S)
        producer.begin_transaction()
        producer.produce(output_topic, value=b"out-confluent")
        assert producer.flush(WAIT_MAX_S) == 0
        try:
            producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
        except KafkaException as e:
            raise AssertionError(
                f"confluent-kafka send_offsets_to_transaction/commit to Stable group {group} failed: {e.args[0]}") from e
        assert fjordtest.committed_offsets(broker.bootstrap, group) == sent

        # -- kafka-python: TxnOffsetCommit without member id / generation ---------------------
        fjordtest.produce(broker.bootstrap, input_topic,
                          [{"value": f"in2-{i}".encode(), "partition": i % 2} for i in range(10)])
        consume_until(10)
        assert_stable_with_one_member()
        positions = consumer.position(consumer.assignment())
        sent = {(tp.topic, tp.partition): tp.offset for tp in positions}
        assert sent == {(input_topic, 0): 15, (input_topic, 1): 15}
        kp = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=kafka_wire.unique_name("kip447-kp"),
                           request_timeout_ms=30_000, max_block_ms=30_000)
        _bounded(kp.init_transactions, WAIT_MAX_S, "kafka-python init_transactions")
        kp.begin_transaction()
        kp.send(output_topic, value=b"out-kafka-python")
        kp.flush(timeout=WAIT_MAX_S)
        offsets = {KTopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in sent.items()}
        try:
            _bounded(lambda: kp.send_offsets_to_transaction(offsets, group), KAFKA_PYTHON_CALL_MAX_S,
                     "kafka-python send_offsets_to_transaction")
            _bounded(kp.commit_transaction, KAFKA_PYTHON_CALL_MAX_S, "kafka-python commit_transaction")
        except Exception as e:  # kafka-python's errors are not KafkaException; a hang is an AssertionError
            raise AssertionError(
                f"kafka-python send_offsets_to_transaction/commit (TxnOffsetCommit without member id, generation -1) "
                f"to Stable group {group} failed: {e!r}; the broker's TxnOffsetCommit answers (topic, partition, "
                f"error code): {txn_offset_commit_answers} (Kafka answers 0; 25 is UNKNOWN_MEMBER_ID)") from e
        assert all(code == 0 for _, _, code in txn_offset_commit_answers), txn_offset_commit_answers
        assert fjordtest.committed_offsets(broker.bootstrap, group) == sent
    finally:
        if kp is not None:
            kp.close(timeout=10)
        consumer.close()


# ---------------------------------------------------------------------------------------------
# KIP-320: OffsetForLeaderEpoch (API 23) and the consumer's position check

OFFSET_FOR_LEADER_EPOCH = 23
UNKNOWN_LEADER_EPOCH = 75
# Polls of 0.2 s during which a consumer assigned past the end of an epoch must read nothing.
EPOCH_CHECK_POLLS = 15


def _offset_for_leader_epoch(conn: kafka_wire.KafkaConnection, version: int, topic: str,
                             asks: list[tuple[int, int, int]]) -> list[tuple[int, int, int, int]]:
    """OffsetForLeaderEpoch v`version` for (partition, current leader epoch, leader epoch) of
    `topic`: (partition, error code, leader epoch, end offset) per partition, in order."""
    flexible = version >= 4
    w = kafka_wire.Writer(flexible)
    if version >= 3:
        w.int32(-1)  # replica id: a consumer
    w.array_len(1).string(topic).array_len(len(asks))
    for partition, current_leader_epoch, leader_epoch in asks:
        w.int32(partition).int32(current_leader_epoch).int32(leader_epoch)
        if flexible:
            w.tagged_fields()
    if flexible:
        w.tagged_fields().tagged_fields()
    r = conn.roundtrip(OFFSET_FOR_LEADER_EPOCH, version, w.getvalue(), flexible)
    r.int32()  # throttle
    answers = []
    for _ in range(r.array_len()):
        assert r.string() == topic
        for _ in range(r.array_len()):
            error_code, partition, leader_epoch, end_offset = r.int16(), r.int32(), r.int32(), r.int64()
            answers.append((partition, error_code, leader_epoch, end_offset))
            if flexible:
                r.tagged_fields()
        if flexible:
            r.tagged_fields()
    return answers


def test_offset_for_leader_epoch_answers_where_each_epoch_ends(broker, topic):
    """A single node leads every partition in epoch 0 from its first record: epoch 0 ends at the
    log end offset, a newer epoch is unknown (-1, -1), a newer current_leader_epoch gets
    UNKNOWN_LEADER_EPOCH, a partition that does not exist UNKNOWN_TOPIC_OR_PARTITION; at every
    advertised version (Kafka 4's 2-4)."""
    fjordtest.create_topic(broker.bootstrap, topic, partitions=2)
    with broker.connect() as conn:
        assert conn.api_versions()[OFFSET_FOR_LEADER_EPOCH] == (2, 4)
        for _ in range(5):
            assert conn.produce(topic, 0, kafka_wire.build_record_batch([b"v"])).error_code == kafka_wire.NONE
        for version in (2, 3, 4):
            answers = _offset_for_leader_epoch(conn, version, topic, [(0, -1, 0), (0, 0, 0), (1, -1, 0), (0, -1, 3),
                                                                       (0, 1, 0), (9, -1, 0)])
            assert answers == [
                (0, kafka_wire.NONE, 0, 5),
                (0, kafka_wire.NONE, 0, 5),
                (1, kafka_wire.NONE, 0, 0),
                (0, kafka_wire.NONE, -1, -1),
                (0, UNKNOWN_LEADER_EPOCH, -1, -1),
                (9, kafka_wire.UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
            ], f"v{version}"


def _poll_values(consumer: Consumer, count: int) -> list[tuple[int, bytes, int]]:
    """(offset, value, leader epoch) of the next `count` messages, polled for at most WAIT_MAX_S."""
    read = []
    deadline = time.monotonic() + WAIT_MAX_S
    while len(read) < count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        assert message.error() is None, message.error()
        read.append((message.offset(), message.value(), message.leader_epoch()))
    return read


def test_consumer_positions_with_a_leader_epoch_are_validated_by_offset_for_leader_epoch(broker, topic):
    """librdkafka checks a position that carries a leader epoch with OffsetForLeaderEpoch before
    fetching from it (KIP-320). Assigned at offset 3 of epoch 0, it reads offsets 3 and 4. Assigned
    at offset 40 of epoch 0, which ends at 5 here, it moves to 5 (the end of what that epoch
    wrote) and reads what comes next; without the check it would fetch at 40, get
    OFFSET_OUT_OF_RANGE and reset to the earliest offset (auto.offset.reset), reading 0 again."""
    fjordtest.create_topic(broker.bootstrap, topic)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for index in range(5):
        producer.produce(topic, value=f"v{index}".encode(), partition=0)
    assert producer.flush(30) == 0

    def consumer() -> Consumer:
        return Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"fjord-e2e-ofle-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})

    inside = consumer()
    try:
        inside.assign([TopicPartition(topic, 0, 3, leader_epoch=0)])
        assert _poll_values(inside, 2) == [(3, b"v3", 0), (4, b"v4", 0)]
    finally:
        inside.close()

    beyond = consumer()
    try:
        beyond.assign([TopicPartition(topic, 0, 40, leader_epoch=0)])
        # librdkafka checks the position as it starts fetching; a reset to the earliest offset
        # would deliver offset 0 within these polls.
        for _ in range(EPOCH_CHECK_POLLS):
            message = beyond.poll(0.2)
            assert message is None, f"read offset {message.offset()}: the position was not moved to the end of epoch 0"
        for index in (5, 6):
            producer.produce(topic, value=f"v{index}".encode(), partition=0)
        assert producer.flush(30) == 0
        assert _poll_values(beyond, 2) == [(5, b"v5", 0), (6, b"v6", 0)]
    finally:
        beyond.close()
