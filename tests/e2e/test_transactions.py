"""Kafka transactions end to end (KIP-98 exactly-once, KIP-447 group fencing in
send_offsets_to_transaction, KIP-588 PRODUCER_FENCED, KIP-664 ListTransactions and
DescribeTransactions, KIP-890 partition verification), single node:

- consume-transform-produce with confluent-kafka in a worker process SIGKILLed inside a transaction
  and restarted with the same transactional.id: a read_committed reader of the output sees every
  input exactly once, a read_uncommitted reader also sees the killed transaction's records;
- aborted transactions are invisible to read_committed and visible to read_uncommitted; an open
  transaction holds the last stable offset (LSO), so later records wait for it too;
- a second producer with the same transactional.id fences the first (fatal error);
- a transaction older than transaction.timeout.ms is aborted by the broker and its producer fenced;
- offsets sent to a transaction are visible only after it commits, never after it aborts;
- committed data and the transactional id survive a SIGKILL of the broker; a transaction open at the
  kill never becomes visible to read_committed; a SIGKILL between the EndTxn acknowledgement and the
  markers (a debug hook of the broker parks it there) ends with the markers written by recovery;
- bad coordinator requests over a raw socket get Kafka's error codes and write nothing;
- ListTransactions / DescribeTransactions over a raw socket (confluent-kafka 2.16's AdminClient has
  neither);
- kafka-python 2.3 (transactional_id is supported since kafka-python 2.1) commits and aborts.

Kafka's rules cited in the tests come from TransactionCoordinator.scala, KafkaApis.scala and the
request JSON schemas (clients/src/main/resources/common/message/*.json).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, Producer, TopicPartition

import fjordtest
import kafka_wire
from kafka_wire import Reader, Writer

# -- broker flags the tests assume (one place to change them) -----------------------------------
# transaction.abort.timed.out.transaction.cleanup.interval.ms (Kafka default 10000): how often the
# coordinator looks for transactions older than their timeout.
TXN_ABORT_INTERVAL_FLAG = "--transaction-abort-timed-out-transaction-cleanup-interval-ms"
TXN_ABORT_INTERVAL_MS = 500
# Group flags as test_groups.py uses them: a restarted static member takes over without waiting.
GROUP_ARGS = [
    "--group-initial-rebalance-delay-ms", "0",
    "--group-min-session-timeout-ms", "1000",
]

WAIT_MAX_S = 60.0
POLL_INTERVAL_S = 0.2

# Kafka error codes (org.apache.kafka.common.protocol.Errors).
NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
COORDINATOR_LOAD_IN_PROGRESS = 14
INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
INVALID_PRODUCER_ID_MAPPING = 49
CONCURRENT_TRANSACTIONS = 51
OPERATION_NOT_ATTEMPTED = 55
PRODUCER_FENCED = 90
TRANSACTIONAL_ID_NOT_FOUND = 105

# API keys.
FIND_COORDINATOR = 10
INIT_PRODUCER_ID = 22
ADD_PARTITIONS_TO_TXN = 24
END_TXN = 26
DESCRIBE_TRANSACTIONS = 65
LIST_TRANSACTIONS = 66
API_NAMES = {
    FIND_COORDINATOR: "FindCoordinator", INIT_PRODUCER_ID: "InitProducerId",
    ADD_PARTITIONS_TO_TXN: "AddPartitionsToTxn", END_TXN: "EndTxn",
    DESCRIBE_TRANSACTIONS: "DescribeTransactions", LIST_TRANSACTIONS: "ListTransactions",
}
COORDINATOR_KEY_TYPE_TRANSACTION = 1
TRANSACTIONAL_BATCH_ATTRIBUTE = 0x10  # RecordBatch attributes bit 4
CONTROL_BATCH_ATTRIBUTE = 0x20  # bit 5


# ---------------------------------------------------------------------------------------------
# client helpers


def _txn_producer(bootstrap: str, transactional_id: str, **extra) -> Producer:
    return Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "linger.ms": 5,
        **extra,
    })


def _produce_values(producer: Producer, topic: str, values: list[str], partition: int | None = None) -> None:
    """Produces `values` and flushes; every delivery must succeed."""
    errors: list = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)

    for value in values:
        kwargs = {"partition": partition} if partition is not None else {}
        producer.produce(topic, value=value.encode(), on_delivery=on_delivery, **kwargs)
    assert producer.flush(WAIT_MAX_S) == 0, "transactional records not delivered"
    assert not errors, f"delivery errors: {errors[:5]}"


def _read(bootstrap: str, topic: str, isolation: str, expected: int | None = None) -> list[str]:
    """Values in (partition, offset) order, read from the beginning until EOF on every partition
    (EOF is the LSO for read_committed, the high watermark for read_uncommitted)."""
    records = fjordtest.consume(bootstrap, topic, expected=expected, timeout_s=WAIT_MAX_S,
                                config={"isolation.level": isolation})
    return [r.value.decode() for r in sorted(records, key=lambda r: (r.partition, r.offset))]


def _read_until(bootstrap: str, topic: str, isolation: str, last: str) -> list[str]:
    """Reads again (bounded) until value `last` is seen; returns everything read in that pass."""
    deadline = time.monotonic() + WAIT_MAX_S
    values: list[str] = []
    while time.monotonic() < deadline:
        values = _read(bootstrap, topic, isolation)
        if last in values:
            return values
        time.sleep(POLL_INTERVAL_S)
    raise AssertionError(f"{isolation} never saw {last!r} within {WAIT_MAX_S}s; last read {values[-10:]}")




# ---------------------------------------------------------------------------------------------
# raw-socket helpers (kafka_wire.py has no encoder for the transaction APIs)


def _require_api(conn: kafka_wire.KafkaConnection, api_key: int, version: int) -> None:
    low, high = conn.api_versions().get(api_key, (None, None))
    assert low is not None, f"broker does not list {API_NAMES[api_key]} (key {api_key}) in ApiVersions"
    assert low <= version <= high, f"broker lists {API_NAMES[api_key]} v{low}..v{high}, test needs v{version}"


def find_transaction_coordinator(conn: kafka_wire.KafkaConnection, transactional_id: str) -> tuple[int, str, int]:
    """FindCoordinator v3 (key type 1 = transaction): (error code, host, port)."""
    _require_api(conn, FIND_COORDINATOR, 3)
    body = Writer(flexible=True).string(transactional_id).int8(COORDINATOR_KEY_TYPE_TRANSACTION).tagged_fields()
    r = conn.roundtrip(FIND_COORDINATOR, 3, body.getvalue(), flexible=True)
    r.int32()  # throttle
    error_code = r.int16()
    r.string()  # error message
    r.int32()  # node id
    host = r.string()
    port = r.int32()
    return error_code, host or "", port


def init_producer_id(conn: kafka_wire.KafkaConnection, transactional_id: str | None,
                     transaction_timeout_ms: int = 60_000) -> tuple[int, int, int]:
    """InitProducerId v3: (error code, producer id, epoch). Retries CONCURRENT_TRANSACTIONS and
    COORDINATOR_LOAD_IN_PROGRESS (bounded), as clients do."""
    _require_api(conn, INIT_PRODUCER_ID, 3)
    deadline = time.monotonic() + WAIT_MAX_S
    while True:
        body = Writer(flexible=True).string(transactional_id).int32(transaction_timeout_ms).int64(-1).int16(-1)
        r = conn.roundtrip(INIT_PRODUCER_ID, 3, body.tagged_fields().getvalue(), flexible=True)
        r.int32()  # throttle
        result = r.int16(), r.int64(), r.int16()
        if result[0] not in (CONCURRENT_TRANSACTIONS, COORDINATOR_LOAD_IN_PROGRESS) or time.monotonic() >= deadline:
            return result
        time.sleep(POLL_INTERVAL_S)


def add_partitions_to_txn(conn: kafka_wire.KafkaConnection, version: int, transactional_id: str, producer_id: int,
                          epoch: int, topics: dict[str, list[int]]) -> dict[tuple[str, int], int]:
    """AddPartitionsToTxn v0-v3 (the client versions; v4+ are broker to broker):
    {(topic, partition): error code}."""
    assert 0 <= version <= 3
    _require_api(conn, ADD_PARTITIONS_TO_TXN, version)
    flexible = version >= 3
    w = Writer(flexible).string(transactional_id).int64(producer_id).int16(epoch).array_len(len(topics))
    for name, partitions in topics.items():
        w.string(name).array_len(len(partitions))
        for partition in partitions:
            w.int32(partition)
        w.tagged_fields()
    r = conn.roundtrip(ADD_PARTITIONS_TO_TXN, version, w.tagged_fields().getvalue(), flexible)
    r.int32()  # throttle
    out = {}
    for _ in range(r.array_len()):
        name = r.string()
        for _ in range(r.array_len()):
            partition, error_code = r.int32(), r.int16()
            r.tagged_fields()
            out[(name, partition)] = error_code
        r.tagged_fields()
    return out


def end_txn(conn: kafka_wire.KafkaConnection, version: int, transactional_id: str, producer_id: int, epoch: int,
            commit: bool) -> int:
    """EndTxn v0-v3: the error code."""
    assert 0 <= version <= 3
    _require_api(conn, END_TXN, version)
    flexible = version >= 3
    w = Writer(flexible).string(transactional_id).int64(producer_id).int16(epoch).boolean(commit).tagged_fields()
    r = conn.roundtrip(END_TXN, version, w.getvalue(), flexible)
    r.int32()  # throttle
    return r.int16()


def list_transactions(conn: kafka_wire.KafkaConnection, state_filters: list[str] = (),
                      producer_id_filters: list[int] = ()) -> tuple[int, list[str], list[tuple[str, int, str]]]:
    """ListTransactions v0 (KIP-664): (error code, unknown state filters, [(id, producer id, state)])."""
    _require_api(conn, LIST_TRANSACTIONS, 0)
    w = Writer(flexible=True).array_len(len(state_filters))
    for state in state_filters:
        w.string(state)
    w.array_len(len(producer_id_filters))
    for producer_id in producer_id_filters:
        w.int64(producer_id)
    r = conn.roundtrip(LIST_TRANSACTIONS, 0, w.tagged_fields().getvalue(), flexible=True)
    r.int32()  # throttle
    error_code = r.int16()
    unknown = [r.string() for _ in range(r.array_len())]
    states = []
    for _ in range(r.array_len()):
        states.append((r.string(), r.int64(), r.string()))
        r.tagged_fields()
    return error_code, unknown, states


def describe_transactions(conn: kafka_wire.KafkaConnection, transactional_ids: list[str]) -> dict[str, dict]:
    """DescribeTransactions v0 (KIP-664): {id: {error, state, timeout_ms, start_ms, producer_id,
    epoch, partitions: {topic: sorted partitions}}}."""
    _require_api(conn, DESCRIBE_TRANSACTIONS, 0)
    w = Writer(flexible=True).array_len(len(transactional_ids))
    for transactional_id in transactional_ids:
        w.string(transactional_id)
    r = conn.roundtrip(DESCRIBE_TRANSACTIONS, 0, w.tagged_fields().getvalue(), flexible=True)
    r.int32()  # throttle
    out = {}
    for _ in range(r.array_len()):
        error_code = r.int16()
        transactional_id = r.string()
        state = r.string()
        timeout_ms = r.int32()
        start_ms = r.int64()
        producer_id = r.int64()
        epoch = r.int16()  # int16 in the released schema (an early draft had int32)
        partitions = {}
        for _ in range(r.array_len()):
            name = r.string()
            partitions[name] = sorted(r.int32() for _ in range(r.array_len()))
            r.tagged_fields()
        r.tagged_fields()
        out[transactional_id] = {"error": error_code, "state": state, "timeout_ms": timeout_ms, "start_ms": start_ms,
                                 "producer_id": producer_id, "epoch": epoch, "partitions": partitions}
    return out


def transactional_batch(values: list[bytes], producer_id: int, epoch: int, base_sequence: int) -> bytes:
    """A RecordBatch v2 of `values` with the transactional attribute set, CRC recomputed."""
    batch = bytearray(kafka_wire.build_record_batch(values))
    attributes = struct.unpack_from(">h", batch, 21)[0] | TRANSACTIONAL_BATCH_ATTRIBUTE
    batch[21:23] = struct.pack(">h", attributes)
    batch[43:51] = struct.pack(">q", producer_id)
    batch[51:53] = struct.pack(">h", epoch)
    batch[53:57] = struct.pack(">i", base_sequence)
    batch[17:21] = struct.pack(">I", kafka_wire.crc32c(bytes(batch[21:])))
    return bytes(batch)


def transactional_produce(conn: kafka_wire.KafkaConnection, transactional_id: str, topic: str, partition: int,
                          records: bytes) -> int:
    """A one-partition Produce with a transactional id, at most v11: v12 (KIP-890 part 2) lets the
    leader add the partition to the transaction implicitly, v11 and below must not. Returns the
    partition's error code."""
    low, high = conn.api_versions()[kafka_wire.PRODUCE]
    version = min(11, high)
    assert version >= max(3, low), f"broker Produce v{low}..v{high}"
    flexible = version >= kafka_wire.FLEXIBLE_FROM[kafka_wire.PRODUCE]
    w = Writer(flexible).string(transactional_id).int16(-1).int32(10_000)
    w.array_len(1).string(topic)
    w.array_len(1).int32(partition).bytes_(records).tagged_fields()
    w.tagged_fields()
    w.tagged_fields()
    r = conn.roundtrip(kafka_wire.PRODUCE, version, w.getvalue(), flexible)
    assert r.array_len() == 1
    r.string()
    assert r.array_len() == 1
    r.int32()
    return r.int16()


def _stored_records(conn: kafka_wire.KafkaConnection, topic: str, partition: int) -> tuple[int, int]:
    """(high watermark, records stored) of one partition, read uncommitted from offset 0."""
    fetched = conn.fetch(topic, partition, 0)
    assert fetched.error_code == NONE, fetched
    batches = kafka_wire.parse_batches(fetched.records)
    return fetched.high_watermark, sum(len(batch.records) for batch in batches)


def _wait_for_state(conn: kafka_wire.KafkaConnection, transactional_id: str, states: set[str]) -> dict:
    deadline = time.monotonic() + WAIT_MAX_S
    described = {}
    while time.monotonic() < deadline:
        described = describe_transactions(conn, [transactional_id])[transactional_id]
        if described["state"] in states:
            return described
        time.sleep(POLL_INTERVAL_S)
    raise AssertionError(f"{transactional_id} never reached {states} within {WAIT_MAX_S}s: {described}")


# ---------------------------------------------------------------------------------------------
# 1. consume-transform-produce, worker SIGKILLed inside a transaction

# The worker: reads the input as a static member of a group (read_committed, no auto commit), and
# for each batch of up to BATCH records runs one transaction that writes "out-<v>" for every input
# value v and sends the consumed offsets to the transaction (KIP-447). With
# FJORD_TXN_WORKER_SLEEP_AFTER_TXNS=K it produces and flushes the batch of transaction K+1, reports
# "sleeping" and sleeps, to be SIGKILLed there. Exits 0 ("done") once the group's committed offsets
# reach the input's end, 3 on a client error (the test restarts it), and by itself after RUN_MAX_S.
_WORKER = r"""
import json, os, sys, time
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
args = json.loads(sys.argv[1])
RUN_MAX_S = args["run_max_s"]
out = open(args["events"], "a", buffering=1)
def emit(**kw):
    kw["pid"] = os.getpid()
    out.write(json.dumps(kw) + "\n")
sleep_after = int(os.environ.get("FJORD_TXN_WORKER_SLEEP_AFTER_TXNS", "-1"))
producer = Producer({"bootstrap.servers": args["bootstrap"], "transactional.id": args["transactional_id"],
                     "linger.ms": 5, "transaction.timeout.ms": 60000})
consumer = None
try:
    producer.init_transactions(60)
    emit(event="initialized")
    consumer = Consumer({"bootstrap.servers": args["bootstrap"], "group.id": args["group"],
                         "group.instance.id": "worker", "session.timeout.ms": 6000,
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100})
    consumer.subscribe([args["input"]])
    ends = {p: consumer.get_watermark_offsets(TopicPartition(args["input"], p), timeout=15)[1]
            for p in range(args["partitions"])}
    committed_txns = 0
    deadline = time.monotonic() + RUN_MAX_S
    while time.monotonic() < deadline:
        msgs = consumer.consume(num_messages=args["batch"], timeout=0.5)
        for m in msgs:
            if m.error():
                raise KafkaException(m.error())
        if not msgs:
            if len(consumer.assignment()) == args["partitions"]:
                committed = consumer.committed(consumer.assignment(), timeout=15)
                if all(tp.offset >= ends[tp.partition] for tp in committed):
                    emit(event="done", committed_txns=committed_txns)
                    break
            continue
        producer.begin_transaction()
        next_offsets = {}
        for m in msgs:
            producer.produce(args["output"], key=m.value(), value=b"out-" + m.value(), partition=m.partition())
            next_offsets[m.partition()] = m.offset() + 1
        if committed_txns == sleep_after:
            producer.flush(30)
            emit(event="sleeping", produced=len(msgs))
            time.sleep(RUN_MAX_S)
            sys.exit(4)
        offsets = [TopicPartition(args["input"], p, o) for p, o in next_offsets.items()]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        committed_txns += 1
        emit(event="committed", count=len(msgs))
    else:
        emit(event="run_max_reached")
        sys.exit(5)
except KafkaException as e:
    emit(event="error", error=str(e.args[0]))
    sys.exit(3)
finally:
    if consumer is not None:
        consumer.close()
"""
WORKER_RUNS_MAX = 6
WORKER_RUN_MAX_S = 90


class Worker:
    def __init__(self, args: dict, events: Path, sleep_after_txns: int | None) -> None:
        env = dict(os.environ)
        env.pop("FJORD_TXN_WORKER_SLEEP_AFTER_TXNS", None)
        if sleep_after_txns is not None:
            env["FJORD_TXN_WORKER_SLEEP_AFTER_TXNS"] = str(sleep_after_txns)
        self.stderr_path = events.with_suffix(f".{time.monotonic_ns()}.stderr")
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                fjordtest._die_with_parent_prefix() + [sys.executable, "-c", _WORKER, json.dumps(args)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env,
            )

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stderr(self) -> str:
        return fjordtest.tail(self.stderr_path.read_text(errors="replace"), 30)


def _events(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by SIGKILL
            pass
    return out


def test_consume_transform_produce_killed_inside_a_transaction_outputs_each_record_exactly_once(
        broker_factory, topic, tmp_path):
    partitions, total, batch, committed_before_kill = 3, 2_000, 50, 5
    broker = broker_factory.start(GROUP_ARGS)
    input_topic, output_topic = f"{topic}-in", f"{topic}-out"
    fjordtest.create_topic(broker.bootstrap, input_topic, partitions=partitions)
    fjordtest.create_topic(broker.bootstrap, output_topic, partitions=partitions)
    fjordtest.produce(broker.bootstrap, input_topic,
                      [{"value": str(v).encode(), "partition": v % partitions} for v in range(total)])
    events = tmp_path / "worker.jsonl"
    events.touch()
    group = kafka_wire.unique_name("eos-group")
    args = {"bootstrap": broker.bootstrap, "input": input_topic, "output": output_topic, "group": group,
            "transactional_id": kafka_wire.unique_name("eos-worker"), "partitions": partitions, "batch": batch,
            "events": str(events), "run_max_s": WORKER_RUN_MAX_S}

    # Run 1: killed while its sixth transaction is open with its records written.
    first = Worker(args, events, sleep_after_txns=committed_before_kill)
    try:
        deadline = time.monotonic() + WAIT_MAX_S
        while not any(e["event"] == "sleeping" for e in _events(events)):
            assert first.proc.poll() is None, f"worker exited {first.proc.returncode}: {_events(events)[-3:]}\n{first.stderr()}"
            assert time.monotonic() < deadline, f"worker never opened transaction 6: {_events(events)[-3:]}"
            time.sleep(POLL_INTERVAL_S)
    finally:
        first.kill()
    before_kill = _events(events)
    assert sum(e["event"] == "committed" for e in before_kill) == committed_before_kill
    killed_records = next(e["produced"] for e in before_kill if e["event"] == "sleeping")
    assert killed_records > 0

    # Restarts with the same transactional.id: InitProducerId aborts the open transaction.
    for _ in range(WORKER_RUNS_MAX):
        worker = Worker(args, events, sleep_after_txns=None)
        try:
            rc = worker.proc.wait(timeout=WORKER_RUN_MAX_S + 30)
        finally:
            worker.kill()
        run_events = [e for e in _events(events) if e["pid"] == worker.proc.pid]
        if rc == 0 and run_events and run_events[-1]["event"] == "done":
            break
        assert rc == 3, f"worker exited {rc}: {run_events[-3:]}\n{worker.stderr()}"
    else:
        raise AssertionError(f"input not consumed after {WORKER_RUNS_MAX} runs: {_events(events)[-5:]}")

    expected = {f"out-{v}" for v in range(total)}
    committed = _read(broker.bootstrap, output_topic, "read_committed", expected=total)
    duplicates = sorted({v for v in committed if committed.count(v) > 1})
    assert not duplicates, f"{len(duplicates)} outputs seen twice by read_committed, e.g. {duplicates[:10]}"
    assert set(committed) == expected, f"missing outputs: {sorted(expected - set(committed))[:10]}"
    assert len(committed) == total

    # The killed transaction's flushed records are in the log, marked aborted.
    uncommitted = _read(broker.bootstrap, output_topic, "read_uncommitted", expected=total + killed_records)
    assert set(uncommitted) == expected
    assert len(uncommitted) >= total + killed_records > len(committed)

    input_ends = {(input_topic, p): total // partitions + (1 if p < total % partitions else 0)
                  for p in range(partitions)}
    assert fjordtest.committed_offsets(broker.bootstrap, group) == input_ends


# ---------------------------------------------------------------------------------------------
# 2. isolation: aborted and open transactions


def test_aborted_transaction_is_invisible_to_read_committed_and_an_open_one_holds_the_lso(broker_factory, topic):
    broker = broker_factory.start()
    fjordtest.create_topic(broker.bootstrap, topic)
    producer = _txn_producer(broker.bootstrap, kafka_wire.unique_name("isolation"))
    producer.init_transactions(WAIT_MAX_S)

    producer.begin_transaction()
    _produce_values(producer, topic, [f"aborted-{i}" for i in range(10)])
    producer.abort_transaction(WAIT_MAX_S)
    producer.begin_transaction()
    _produce_values(producer, topic, [f"committed-{i}" for i in range(10)])
    producer.commit_transaction(WAIT_MAX_S)

    committed_values = [f"committed-{i}" for i in range(10)]
    assert _read(broker.bootstrap, topic, "read_committed", expected=10) == committed_values
    everything = _read(broker.bootstrap, topic, "read_uncommitted", expected=20)
    assert everything == [f"aborted-{i}" for i in range(10)] + committed_values

    # An open transaction's records, and a later plain record of another producer, stay below the
    # LSO until the transaction ends (KIP-98: read_committed reads up to the first open transaction).
    producer.begin_transaction()
    _produce_values(producer, topic, [f"open-{i}" for i in range(5)])
    fjordtest.produce(broker.bootstrap, topic, [{"value": b"plain-after-open"}])
    assert _read(broker.bootstrap, topic, "read_uncommitted", expected=26)[-6:] == \
        [f"open-{i}" for i in range(5)] + ["plain-after-open"]
    assert _read(broker.bootstrap, topic, "read_committed") == committed_values, "read past the LSO"

    producer.commit_transaction(WAIT_MAX_S)
    after = _read_until(broker.bootstrap, topic, "read_committed", "plain-after-open")
    assert after == committed_values + [f"open-{i}" for i in range(5)] + ["plain-after-open"]


# ---------------------------------------------------------------------------------------------
# 3. fencing


def test_second_producer_with_the_same_transactional_id_fences_the_first(broker_factory, topic):
    broker = broker_factory.start()
    fjordtest.create_topic(broker.bootstrap, topic)
    transactional_id = kafka_wire.unique_name("fenced")
    first = _txn_producer(broker.bootstrap, transactional_id)
    first.init_transactions(WAIT_MAX_S)
    first.begin_transaction()
    _produce_values(first, topic, ["from-first"])

    # InitProducerId for an id with an Ongoing transaction aborts it and bumps the epoch.
    second = _txn_producer(broker.bootstrap, transactional_id)
    second.init_transactions(WAIT_MAX_S)

    with pytest.raises(KafkaException) as raised:
        first.commit_transaction(WAIT_MAX_S)
    error = raised.value.args[0]
    assert error.fatal(), f"fencing must be fatal: {error}"
    assert error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH), error

    second.begin_transaction()
    _produce_values(second, topic, ["from-second"])
    second.commit_transaction(WAIT_MAX_S)
    assert _read(broker.bootstrap, topic, "read_committed", expected=1) == ["from-second"]
    assert _read(broker.bootstrap, topic, "read_uncommitted", expected=2) == ["from-first", "from-second"]


# ---------------------------------------------------------------------------------------------
# 4. transaction timeout


def test_transaction_older_than_its_timeout_is_aborted_and_its_producer_fenced(broker_factory, topic):
    broker = broker_factory.start([TXN_ABORT_INTERVAL_FLAG, str(TXN_ABORT_INTERVAL_MS)])
    fjordtest.create_topic(broker.bootstrap, topic)
    transactional_id = kafka_wire.unique_name("timeout")
    producer = _txn_producer(broker.bootstrap, transactional_id, **{"transaction.timeout.ms": 2_000,
                                                                    "message.timeout.ms": 2_000})
    producer.init_transactions(WAIT_MAX_S)
    producer.begin_transaction()
    _produce_values(producer, topic, [f"timed-out-{i}" for i in range(5)])
    # A plain record behind the open transaction: read_committed reaches it only once the broker
    # has written the abort marker and moved the LSO.
    fjordtest.produce(broker.bootstrap, topic, [{"value": b"plain-after"}])

    assert _read_until(broker.bootstrap, topic, "read_committed", "plain-after") == ["plain-after"]
    assert _read(broker.bootstrap, topic, "read_uncommitted", expected=6) == \
        [f"timed-out-{i}" for i in range(5)] + ["plain-after"]
    with broker.connect() as conn:
        described = _wait_for_state(conn, transactional_id, {"CompleteAbort"})
        # The coordinator aborts with a bumped epoch, which fences the timed-out producer.
        assert described["epoch"] >= 1, described

    with pytest.raises(KafkaException):
        producer.commit_transaction(WAIT_MAX_S)


# ---------------------------------------------------------------------------------------------
# 5. offsets in a transaction


def test_offsets_sent_to_a_transaction_are_visible_only_after_commit_also_after_sigkill(broker_factory, topic):
    broker = broker_factory.start(GROUP_ARGS)
    fjordtest.create_topic(broker.bootstrap, topic, partitions=2)
    fjordtest.produce(broker.bootstrap, topic, [{"value": f"{i}".encode(), "partition": i % 2} for i in range(20)])
    output = f"{topic}-out"
    fjordtest.create_topic(broker.bootstrap, output)
    group = kafka_wire.unique_name("txn-offsets")
    # A consumer that never joins: its group metadata is generation -1 and no member id, which
    # TxnOffsetCommit accepts for a group without members (the "simple consumer" case).
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        metadata = consumer.consumer_group_metadata()
        producer = _txn_producer(broker.bootstrap, kafka_wire.unique_name("offsets"))
        producer.init_transactions(WAIT_MAX_S)

        producer.begin_transaction()
        _produce_values(producer, output, ["with-offsets"])
        producer.send_offsets_to_transaction([TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 7)],
                                             metadata, WAIT_MAX_S)
        assert fjordtest.committed_offsets(broker.bootstrap, group) == {}, "offsets visible before the commit"
        producer.commit_transaction(WAIT_MAX_S)
        committed = {(topic, 0): 5, (topic, 1): 7}
        assert fjordtest.committed_offsets(broker.bootstrap, group) == committed

        producer.begin_transaction()
        _produce_values(producer, output, ["aborted-with-offsets"])
        producer.send_offsets_to_transaction([TopicPartition(topic, 0, 9)], metadata, WAIT_MAX_S)
        assert fjordtest.committed_offsets(broker.bootstrap, group) == committed
        producer.abort_transaction(WAIT_MAX_S)
        assert fjordtest.committed_offsets(broker.bootstrap, group) == committed, "an aborted transaction's offsets applied"
        # The require_stable path (KIP-447) returns the same once nothing is pending.
        stable = consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=30)
        assert {(tp.topic, tp.partition): tp.offset for tp in stable} == committed
    finally:
        consumer.close()
    # Replayed from __consumer_offsets after a SIGKILL: the committed transaction's offsets are
    # there (its commit marker applies them), the aborted one's are not (its marker drops them).
    broker.kill()
    broker.start()
    assert fjordtest.committed_offsets(broker.bootstrap, group) == committed, "transactional offsets after SIGKILL and replay"


# ---------------------------------------------------------------------------------------------
# 6. durability across SIGKILL


def test_committed_transaction_survives_sigkill_and_an_open_one_never_becomes_visible(broker_factory, topic):
    broker = broker_factory.start()
    fjordtest.create_topic(broker.bootstrap, topic, partitions=2)
    transactional_id = kafka_wire.unique_name("durable")
    producer = _txn_producer(broker.bootstrap, transactional_id)
    producer.init_transactions(WAIT_MAX_S)
    producer.begin_transaction()
    committed_values = [f"committed-{i}" for i in range(10)]
    for i, value in enumerate(committed_values):
        producer.produce(topic, value=value.encode(), partition=i % 2)
    producer.commit_transaction(WAIT_MAX_S)
    producer.begin_transaction()
    _produce_values(producer, topic, [f"open-{i}" for i in range(5)], partition=0)

    broker.kill()
    broker.start()
    # The producer of the open transaction is gone with the broker's connections; it is never
    # used again (a real application would have crashed too).
    del producer

    def committed_read() -> list[str]:
        return sorted(_read(broker.bootstrap, topic, "read_committed", expected=10))

    assert committed_read() == sorted(committed_values)
    # Open or aborted after the restart, the transaction's records never reach read_committed.
    assert _read(broker.bootstrap, topic, "read_uncommitted", expected=15).count("open-0") == 1

    again = _txn_producer(broker.bootstrap, transactional_id)
    again.init_transactions(WAIT_MAX_S)  # aborts the transaction left open, if any
    again.begin_transaction()
    _produce_values(again, topic, ["after-restart"], partition=1)
    again.commit_transaction(WAIT_MAX_S)
    after = _read_until(broker.bootstrap, topic, "read_committed", "after-restart")
    assert sorted(after) == sorted(committed_values + ["after-restart"])
    with broker.connect() as conn:
        described = describe_transactions(conn, [transactional_id])[transactional_id]
    assert described["error"] == NONE and described["state"] == "CompleteCommit", described


STOP_AFTER_END_TXN_ACK = "FJORD_DEBUG_STOP_AFTER_END_TXN_ACK"


def test_sigkill_between_the_end_txn_acknowledgement_and_the_markers_completes_the_commit_on_restart(
        broker_factory, topic):
    """The broker's debug hook (net/src/coordinator/transactions.rs) acknowledges EndTxn and then writes no
    markers: the kill lands exactly after the PrepareCommit record is durable and before any
    marker. After the restart the coordinator reloads PrepareCommit and writes the markers, and a
    read_committed consumer sees the transaction."""
    broker = broker_factory.start(env={STOP_AFTER_END_TXN_ACK: "1"})
    fjordtest.create_topic(broker.bootstrap, topic, partitions=2)
    transactional_id = kafka_wire.unique_name("end-txn-ack")
    values = [f"committed-{i}" for i in range(10)]
    producer = _txn_producer(broker.bootstrap, transactional_id)
    producer.init_transactions(WAIT_MAX_S)
    producer.begin_transaction()
    for i, value in enumerate(values):
        producer.produce(topic, value=value.encode(), partition=i % 2)
    producer.commit_transaction(WAIT_MAX_S)  # returns once EndTxn is acknowledged

    # The acknowledged transaction has no marker: PrepareCommit, nothing visible to read_committed,
    # the high watermarks at the data (a marker would take an offset).
    assert "EndTxn acknowledged, markers never written" in broker.stderr()
    with broker.connect() as conn:
        described = describe_transactions(conn, [transactional_id])[transactional_id]
        assert (described["error"], described["state"]) == (NONE, "PrepareCommit"), described
        assert [_stored_records(conn, topic, p) for p in (0, 1)] == [(5, 5), (5, 5)]
    assert _read(broker.bootstrap, topic, "read_committed") == []
    assert sorted(_read(broker.bootstrap, topic, "read_uncommitted", expected=10)) == sorted(values)

    broker.kill()
    del producer
    broker.env = None  # the restarted broker runs without the hook
    broker.start()
    with broker.connect() as conn:
        described = _wait_for_state(conn, transactional_id, {"CompleteCommit"})
        assert described["error"] == NONE, described
        # One commit marker per partition (a control batch of one record), after its five records.
        for partition in (0, 1):
            fetched = conn.fetch(topic, partition, 0)
            batches = kafka_wire.parse_batches(fetched.records)
            assert fetched.high_watermark == 6 and batches[-1].base_offset == 5, (partition, batches)
            assert not any(b.attributes & CONTROL_BATCH_ATTRIBUTE for b in batches[:-1]), (partition, batches)
            assert batches[-1].attributes & (CONTROL_BATCH_ATTRIBUTE | TRANSACTIONAL_BATCH_ATTRIBUTE) == \
                CONTROL_BATCH_ATTRIBUTE | TRANSACTIONAL_BATCH_ATTRIBUTE, batches[-1]
    assert sorted(_read(broker.bootstrap, topic, "read_committed", expected=10)) == sorted(values)


# ---------------------------------------------------------------------------------------------
# 7. bad input over a raw socket


def test_raw_coordinator_requests_get_kafkas_errors_and_write_nothing(broker_factory, topic):
    broker = broker_factory.start()
    fjordtest.create_topic(broker.bootstrap, topic, partitions=2)
    missing = kafka_wire.unique_name("never-created")
    transactional_id = kafka_wire.unique_name("raw")
    with broker.connect() as conn:
        error, host, port = find_transaction_coordinator(conn, transactional_id)
        assert (error, host, port) == (NONE, broker.host, broker.port)

        # No InitProducerId for this id: the coordinator has no mapping for it.
        for version in (1, 3):
            assert end_txn(conn, version, kafka_wire.unique_name("unknown"), 123_456, 0, True) == \
                INVALID_PRODUCER_ID_MAPPING

        error, producer_id, epoch = init_producer_id(conn, transactional_id)
        assert error == NONE and producer_id >= 0 and epoch >= 0
        # State Empty: nothing to commit or abort (TransactionCoordinator.endTransaction).
        assert end_txn(conn, 3, transactional_id, producer_id, epoch, True) == INVALID_TXN_STATE
        assert end_txn(conn, 3, transactional_id, producer_id + 1_000, epoch, True) == INVALID_PRODUCER_ID_MAPPING

        # A topic that does not exist: UNKNOWN_TOPIC_OR_PARTITION, the other partitions of the
        # request OPERATION_NOT_ATTEMPTED (KafkaApis.handleAddPartitionsToTxnRequest), no topic
        # created and nothing added.
        result = add_partitions_to_txn(conn, 3, transactional_id, producer_id, epoch, {missing: [0], topic: [0]})
        assert result == {(missing, 0): UNKNOWN_TOPIC_OR_PARTITION, (topic, 0): OPERATION_NOT_ATTEMPTED}
        assert conn.metadata([missing]).topics[missing].error_code == UNKNOWN_TOPIC_OR_PARTITION
        assert describe_transactions(conn, [transactional_id])[transactional_id]["state"] == "Empty"

        # A second InitProducerId bumps the epoch; the old one is fenced. KIP-588: PRODUCER_FENCED
        # from AddPartitionsToTxn v2, INVALID_PRODUCER_EPOCH for v0-v1 clients.
        error, bumped_id, bumped_epoch = init_producer_id(conn, transactional_id)
        assert error == NONE and (bumped_id, bumped_epoch) != (producer_id, epoch)
        assert add_partitions_to_txn(conn, 1, transactional_id, producer_id, epoch, {topic: [0]}) == \
            {(topic, 0): INVALID_PRODUCER_EPOCH if bumped_id == producer_id else INVALID_PRODUCER_ID_MAPPING}
        assert add_partitions_to_txn(conn, 3, transactional_id, producer_id, epoch, {topic: [0]}) == \
            {(topic, 0): PRODUCER_FENCED if bumped_id == producer_id else INVALID_PRODUCER_ID_MAPPING}
        producer_id, epoch = bumped_id, bumped_epoch

        # Partition 0 added; a transactional batch to partition 1, never added, is refused by the
        # leader (KIP-890 part 1 verification) and not stored.
        assert add_partitions_to_txn(conn, 3, transactional_id, producer_id, epoch, {topic: [0]}) == {(topic, 0): NONE}
        assert transactional_produce(conn, transactional_id, topic, 0,
                                     transactional_batch([b"in-txn"], producer_id, epoch, 0)) == NONE
        assert transactional_produce(conn, transactional_id, topic, 1,
                                     transactional_batch([b"not-added"], producer_id, epoch, 0)) == INVALID_TXN_STATE
        assert _stored_records(conn, topic, 1) == (0, 0), "a batch for a partition outside the transaction was stored"
        assert _stored_records(conn, topic, 0) == (1, 1)
        assert end_txn(conn, 3, transactional_id, producer_id, epoch, False) == NONE
        # Abort marker written: the control batch takes an offset, its record is not a data record.
        deadline = time.monotonic() + WAIT_MAX_S
        while _stored_records(conn, topic, 0)[0] < 2:
            assert time.monotonic() < deadline, "no abort marker on partition 0"
            time.sleep(POLL_INTERVAL_S)


# ---------------------------------------------------------------------------------------------
# 8. ListTransactions / DescribeTransactions


def test_list_and_describe_transactions_show_an_open_transaction_and_its_partitions(broker_factory, topic):
    broker = broker_factory.start()
    fjordtest.create_topic(broker.bootstrap, topic, partitions=3)
    transactional_id = kafka_wire.unique_name("described")
    producer = _txn_producer(broker.bootstrap, transactional_id, **{"transaction.timeout.ms": 45_000})
    producer.init_transactions(WAIT_MAX_S)
    producer.begin_transaction()
    _produce_values(producer, topic, ["p0"], partition=0)
    _produce_values(producer, topic, ["p2"], partition=2)

    with broker.connect() as conn:
        error, unknown, states = list_transactions(conn)
        assert (error, unknown) == (NONE, [])
        listed = {t[0]: t for t in states}
        assert transactional_id in listed, states
        _, producer_id, state = listed[transactional_id]
        assert state == "Ongoing"
        error, unknown, states = list_transactions(conn, ["Ongoing", "NoSuchState"], [producer_id])
        assert (error, unknown) == (NONE, ["NoSuchState"])
        assert [t[0] for t in states] == [transactional_id]
        assert transactional_id not in {t[0] for t in list_transactions(conn, ["CompleteCommit"])[2]}

        unknown_id = kafka_wire.unique_name("nobody")
        described = describe_transactions(conn, [transactional_id, unknown_id])
        assert described[unknown_id]["error"] == TRANSACTIONAL_ID_NOT_FOUND
        ongoing = described[transactional_id]
        assert ongoing["error"] == NONE and ongoing["state"] == "Ongoing"
        assert (ongoing["producer_id"], ongoing["timeout_ms"]) == (producer_id, 45_000)
        assert ongoing["partitions"] == {topic: [0, 2]}
        assert ongoing["start_ms"] > 0

        producer.commit_transaction(WAIT_MAX_S)
        done = _wait_for_state(conn, transactional_id, {"CompleteCommit"})
        assert done["partitions"] == {}, done
        # The coordinator's log is an internal topic that Metadata shows.
        internal = conn.metadata(["__transaction_state"]).topics["__transaction_state"]
        assert internal.error_code == NONE and internal.partitions, internal


# ---------------------------------------------------------------------------------------------
# 9. kafka-python


def test_kafka_python_transactional_producer_commits_and_aborts(broker_factory, topic):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KafkaPythonTopicPartition

    broker = broker_factory.start()
    fjordtest.create_topic(broker.bootstrap, topic)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=kafka_wire.unique_name("kafka-python"),
                             request_timeout_ms=30_000)
    try:
        producer.init_transactions()
        producer.begin_transaction()
        for i in range(5):
            producer.send(topic, value=f"aborted-{i}".encode(), partition=0)
        producer.flush(timeout=WAIT_MAX_S)
        producer.abort_transaction()
        producer.begin_transaction()
        for i in range(5):
            producer.send(topic, value=f"committed-{i}".encode(), partition=0)
        producer.commit_transaction()
    finally:
        producer.close(timeout=10)
    fjordtest.produce(broker.bootstrap, topic, [{"value": b"end", "partition": 0}])

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level="read_committed",
                             enable_auto_commit=False, auto_offset_reset="earliest", request_timeout_ms=30_000)
    seen: list[str] = []
    try:
        consumer.assign([KafkaPythonTopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + WAIT_MAX_S
        while "end" not in seen and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                seen += [r.value.decode() for r in records]
    finally:
        consumer.close()
    assert seen == [f"committed-{i}" for i in range(5)] + ["end"]
    assert _read(broker.bootstrap, topic, "read_uncommitted", expected=11) == \
        [f"aborted-{i}" for i in range(5)] + [f"committed-{i}" for i in range(5)] + ["end"]
