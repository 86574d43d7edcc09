"""Idempotent producers (KIP-98, KIP-360, KIP-588): real clients with enable.idempotence across a
SIGTERM restart and a SIGKILL of the broker (every record exactly once, in order per
partition); acks lost after the write, by a proxy that cuts the broker's responses (the
client's retries are answered with the original offsets, nothing is stored twice); injected
retries, gaps and stale epochs over a raw socket (the retry gets the original offset and is
stored once; OUT_OF_ORDER_SEQUENCE_NUMBER and INVALID_PRODUCER_EPOCH store nothing), also after
a SIGKILL, also one that restarts from the producer-state snapshot written at a segment roll;
kafka-python with enable_idempotence; DescribeProducers (raw: confluent-kafka's
AdminClient has no describe_producers)."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time

from confluent_kafka import Producer
from kafka import KafkaProducer

import fjordtest
import kafka_wire
from kafka_wire import Writer

INIT_PRODUCER_ID = 22
DESCRIBE_PRODUCERS = 61
INVALID_REQUEST = 42
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
WAIT_MAX_S = 120.0


# -- raw helpers -------------------------------------------------------------------------------

def idempotent_batch(values: list[bytes], producer_id: int, epoch: int, base_sequence: int) -> bytes:
    """A RecordBatch v2 of `values` from producer `producer_id` at `base_sequence`."""
    batch = bytearray(kafka_wire.build_record_batch(values))
    batch[43:51] = struct.pack(">q", producer_id)
    batch[51:53] = struct.pack(">h", epoch)
    batch[53:57] = struct.pack(">i", base_sequence)
    batch[17:21] = struct.pack(">I", kafka_wire.crc32c(bytes(batch[21:])))
    return bytes(batch)


def init_producer_id(conn: kafka_wire.KafkaConnection, transactional_id: str | None = None,
                     producer_id: int = -1, epoch: int = -1) -> tuple[int, int, int]:
    """InitProducerId v3 (flexible): (error code, producer id, epoch)."""
    body = Writer(flexible=True).string(transactional_id).int32(60_000).int64(producer_id).int16(epoch)
    r = conn.roundtrip(INIT_PRODUCER_ID, 3, body.tagged_fields().getvalue(), flexible=True)
    r.int32()  # throttle
    return r.int16(), r.int64(), r.int16()


def describe_producers(conn: kafka_wire.KafkaConnection, topic: str, partitions: list[int]) -> dict[int, tuple]:
    """DescribeProducers v0: {partition: (error code, [(id, epoch, last seq, last ts, coord epoch,
    txn start)])}."""
    w = Writer(flexible=True).array_len(1).string(topic).array_len(len(partitions))
    for partition in partitions:
        w.int32(partition)
    body = w.tagged_fields().tagged_fields().getvalue()
    r = conn.roundtrip(DESCRIBE_PRODUCERS, 0, body, flexible=True)
    r.int32()  # throttle
    result = {}
    for _ in range(r.array_len()):
        r.string()
        for _ in range(r.array_len()):
            index, error_code = r.int32(), r.int16()
            r.string()  # error message
            producers = []
            for _ in range(r.array_len()):
                producers.append((r.int64(), r.int32(), r.int32(), r.int64(), r.int32(), r.int64()))
                r.tagged_fields()
            r.tagged_fields()
            result[index] = (error_code, producers)
        r.tagged_fields()
    return result


def record_count(conn: kafka_wire.KafkaConnection, topic: str) -> tuple[int, int]:
    """(high watermark, records stored) of partition 0, read from offset 0."""
    fetched = conn.fetch(topic, 0, 0)
    assert fetched.error_code == 0, fetched
    batches = kafka_wire.parse_batches(fetched.records)
    return fetched.high_watermark, sum(len(batch.records) for batch in batches)


# -- (a) a real idempotent producer across restart and SIGKILL ------------------------------------

def _produce_through_broker_restarts(broker, topic: str, total: int, partitions: int) -> list:
    errors: list = []
    delivered: list = []

    def on_delivery(err, msg):
        (errors if err is not None else delivered).append(err if err is not None else msg)

    producer = Producer({
        "bootstrap.servers": broker.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "batch.num.messages": 50,
        "message.timeout.ms": 120_000,
        "retry.backoff.ms": 100,
        "reconnect.backoff.max.ms": 500,
    })
    deadline = time.monotonic() + WAIT_MAX_S
    for index in range(total):
        if index == total // 3:
            producer.poll(0)
            broker.stop()  # SIGTERM: a clean restart with records in flight
            broker.start()
        if index == 2 * total // 3:
            producer.poll(0)
            broker.kill()  # SIGKILL: state rebuilt from snapshots and batch headers
            broker.start()
        while True:
            assert time.monotonic() < deadline, "producer queue stayed full"
            try:
                producer.produce(topic, value=f"{index}".encode(), key=f"k{index}".encode(),
                                 partition=index % partitions, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(WAIT_MAX_S)
    assert remaining == 0, f"{remaining} records undelivered"
    producer.poll(0)  # the last delivery callbacks
    assert not errors, f"delivery errors: {errors[:5]}"
    return delivered


def test_idempotent_producer_across_sigterm_and_sigkill_writes_each_record_once_in_order(broker_factory, topic):
    partitions = 3
    total = 3_000
    broker = broker_factory.start()
    fjordtest.create_topic(broker.bootstrap, topic, partitions=partitions)
    delivered = _produce_through_broker_restarts(broker, topic, total, partitions)
    assert len(delivered) == total

    records = fjordtest.consume(broker.bootstrap, topic, expected=total)
    values = [int(record.value) for record in records]
    assert sorted(values) == list(range(total)), (
        f"{len(values)} records read for {total} produced; duplicates: "
        f"{sorted({v for v in values if values.count(v) > 1})[:10]}"
    )
    for partition in range(partitions):
        in_partition = [int(r.value) for r in sorted(records, key=lambda r: r.offset) if r.partition == partition]
        assert in_partition == sorted(in_partition), f"partition {partition} out of order"
        assert all(v % partitions == partition for v in in_partition)
    # The delivery reports carried the offsets the records are stored at.
    stored = {(r.partition, r.offset): int(r.value) for r in records}
    for msg in delivered:
        assert stored[(msg.partition(), msg.offset())] == int(msg.value()), "delivery report offset mismatch"


# -- (a') responses lost after the write: the client's own retries must be deduplicated ----------

class ResponseCuttingProxy:
    """A loopback TCP proxy in front of the broker. While armed, the next bytes the broker sends
    back on any connection are dropped and both ends closed: the requests were processed (and
    their batches written) but the client never hears so, and retries them on a new connection
    with the same sequence numbers. Every thread and socket is bounded by `close()`."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.cuts = 0
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            for source, target, cut in ((client, upstream, False), (upstream, client, True)):
                thread = threading.Thread(target=self._pump, args=(source, target, cut), daemon=True)
                thread.start()
                self.threads.append(thread)

    def _pump(self, source: socket.socket, target: socket.socket, cut: bool) -> None:
        try:
            source.settimeout(0.5)
        except OSError:
            return  # the other direction already closed both ends
        while not self.closed.is_set():
            try:
                data = source.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            if cut and self.armed.is_set():
                self.armed.clear()
                self.cuts += 1
                break
            try:
                target.sendall(data)
            except OSError:
                break
        for end in (source, target):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        with self.lock:
            for end in self.sockets:
                try:
                    end.close()
                except OSError:
                    pass
        for thread in self.threads:
            thread.join(timeout=5)


def test_retries_of_batches_whose_acks_were_lost_are_stored_once(broker_factory, topic):
    broker = broker_factory.create(["--log", "info,fjord_engine::partition=debug"])
    proxy = ResponseCuttingProxy(broker.port)
    # Clients learn the proxy's address from Metadata, so every connection goes through it.
    command = broker.command()
    command[command.index("--advertise") + 1] = f"127.0.0.1:{proxy.port}"
    broker.command = lambda: command  # type: ignore[method-assign]
    try:
        broker.start()
        fjordtest.create_topic(broker.bootstrap, topic, partitions=2)
        total = 2_000
        errors: list = []
        delivered: list = []
        producer = Producer({
            "bootstrap.servers": f"127.0.0.1:{proxy.port}",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 1,
            "batch.num.messages": 20,
            "message.timeout.ms": 120_000,
            "retry.backoff.ms": 50,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 200,
        })

        def on_delivery(err, msg):
            (errors if err is not None else delivered).append(err if err is not None else msg)

        deadline = time.monotonic() + WAIT_MAX_S
        for index in range(total):
            if index % 400 == 200:
                proxy.armed.set()  # the next response from the broker is lost
            while True:
                assert time.monotonic() < deadline, "producer queue stayed full"
                try:
                    producer.produce(topic, value=f"{index}".encode(), partition=index % 2, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
            if index % 50 == 0:
                producer.flush(30)  # keep requests in flight when the cut comes
        assert producer.flush(WAIT_MAX_S) == 0
        assert not errors, f"delivery errors: {errors[:5]}"
        assert proxy.cuts >= 1, "precondition: a response was cut"

        records = fjordtest.consume(broker.bootstrap, topic, expected=total)
        values = [int(r.value) for r in records]
        assert len(values) == len(set(values)), f"{len(values) - len(set(values))} records stored twice"
        assert sorted(values) == list(range(total))
        for partition in range(2):
            in_partition = [int(r.value) for r in sorted(records, key=lambda r: r.offset) if r.partition == partition]
            assert in_partition == sorted(in_partition), f"partition {partition} out of order"
        # Each cut comes right before a flush, so it loses the acks of written batches and the
        # client retries them (the broker logs each duplicate it answers at debug level).
        assert broker.stderr().count("duplicate batch") >= 1, "precondition: a retry reached the broker"
    finally:
        proxy.close()


# -- (b) injected retries, gaps and stale epochs --------------------------------------------------

def test_raw_retry_gets_the_original_offset_gap_and_stale_epoch_store_nothing(broker_factory, topic):
    broker = broker_factory.start()
    fjordtest.create_topic(broker.bootstrap, topic)
    with broker.connect() as conn:
        error, producer_id, epoch = init_producer_id(conn)
        assert (error, epoch) == (0, 0) and producer_id >= 0
        first = conn.produce(topic, 0, idempotent_batch([b"a", b"b", b"c"], producer_id, 0, 0))
        assert (first.error_code, first.base_offset) == (0, 0)
        second = conn.produce(topic, 0, idempotent_batch([b"d"], producer_id, 0, 3))
        assert (second.error_code, second.base_offset) == (0, 3)

        retry = conn.produce(topic, 0, idempotent_batch([b"a", b"b", b"c"], producer_id, 0, 0))
        assert (retry.error_code, retry.base_offset) == (0, 0), "a retry gets NONE with the original offset"
        assert record_count(conn, topic) == (4, 4), "the retry was stored again"

        gap = conn.produce(topic, 0, idempotent_batch([b"x"], producer_id, 0, 7))
        assert gap.error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert record_count(conn, topic) == (4, 4), "a batch out of sequence was stored"

        bumped = conn.produce(topic, 0, idempotent_batch([b"e"], producer_id, 1, 0))
        assert (bumped.error_code, bumped.base_offset) == (0, 4), "an epoch bump starts at sequence 0"
        bad_bump = conn.produce(topic, 0, idempotent_batch([b"y"], producer_id, 2, 5))
        assert bad_bump.error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
        stale = conn.produce(topic, 0, idempotent_batch([b"z"], producer_id, 0, 4))
        assert stale.error_code == INVALID_PRODUCER_EPOCH
        assert record_count(conn, topic) == (5, 5)

        # KIP-360: a producer the partition has no state for is accepted at any sequence.
        _, other, _ = init_producer_id(conn)
        assert other != producer_id
        late = conn.produce(topic, 0, idempotent_batch([b"late"], other, 0, 999))
        assert (late.error_code, late.base_offset) == (0, 5)

    broker.kill()
    broker.start()
    with broker.connect() as conn:
        retry = conn.produce(topic, 0, idempotent_batch([b"e"], producer_id, 1, 0))
        assert (retry.error_code, retry.base_offset) == (0, 4), "retry after SIGKILL still recognized"
        nxt = conn.produce(topic, 0, idempotent_batch([b"f"], producer_id, 1, 1))
        assert (nxt.error_code, nxt.base_offset) == (0, 6)
        error, after_restart, _ = init_producer_id(conn)
        assert error == 0 and after_restart > max(producer_id, other), "producer ids are never reused"
        assert record_count(conn, topic) == (7, 7)


ROLL_SEGMENT_BYTES = 1024 * 1024  # Kafka's minimum segment.bytes
ROLL_BATCH_RECORDS = 4
ROLL_RECORD_BYTES = 25_000
ROLL_BATCHES_MAX = 40


def _snapshots(partition_dir) -> list[int]:
    """Offsets of the producer-state snapshot files (`<20-digit offset>.snapshot`)."""
    return sorted(int(path.name.split(".")[0]) for path in partition_dir.glob("*.snapshot"))


def _producer_state_recovered(stderr_since_start: str, partition_dir) -> dict[str, str]:
    """The fields of the broker's debug line about the producer state it recovered for a
    partition (the snapshot it loaded and the batch headers it replayed after it)."""
    lines = [line for line in stderr_since_start.splitlines()
             if "producer state recovered" in line and f"dir={partition_dir} " in line]
    assert len(lines) == 1, f"expected one recovery line for {partition_dir}, got {lines}"
    return dict(re.findall(r"(\w+)=(\S+)", lines[0]))


def test_sigkill_after_a_segment_roll_restarts_from_the_roll_snapshot_and_recognises_retries(broker_factory, topic):
    """An idempotent producer's batches roll a 1 MiB segment, which writes a producer-state
    snapshot; one more batch follows; then SIGKILL (no snapshot on close). After the restart the
    broker loads that snapshot and replays only the batch after it, and recognises a retry of a
    batch known only from the snapshot, and one known from the replay, as duplicates (original
    offsets, nothing written); the producer's next sequence is accepted."""
    broker = broker_factory.start(["--log", "info,fjord_engine::partition=debug"])
    fjordtest.create_topic(broker.bootstrap, topic, config={"segment.bytes": str(ROLL_SEGMENT_BYTES)})
    partition_dir = broker.data_dir / f"{topic}-0"
    sent: list[tuple[bytes, int]] = []  # (batch as sent, its base offset)
    with broker.connect() as conn:
        _, producer_id, _ = init_producer_id(conn)
        end = 0

        def send(sequence: int) -> None:
            nonlocal end
            values = [f"{sequence + i}:".encode().ljust(ROLL_RECORD_BYTES, b".") for i in range(ROLL_BATCH_RECORDS)]
            batch = idempotent_batch(values, producer_id, 0, sequence)
            result = conn.produce(topic, 0, batch)
            assert (result.error_code, result.base_offset) == (0, end), result
            sent.append((batch, end))
            end += ROLL_BATCH_RECORDS

        while not _snapshots(partition_dir):
            assert len(sent) < ROLL_BATCHES_MAX, (
                f"no segment roll after {len(sent)} batches: {sorted(partition_dir.iterdir())}")
            send(len(sent) * ROLL_BATCH_RECORDS)
        # The roll came with the last batch: the new segment starts at it, and the snapshot holds
        # the state up to its end.
        roll_snapshot = end
        assert _snapshots(partition_dir) == [roll_snapshot], (_snapshots(partition_dir), end)
        segments = sorted(int(path.name.split(".")[0]) for path in partition_dir.glob("*.log"))
        assert segments == [0, sent[-1][1]], segments
        send(len(sent) * ROLL_BATCH_RECORDS)  # replayed from its header after the snapshot

    assert _snapshots(partition_dir) == [roll_snapshot], "a snapshot was written after the roll"
    broker.kill()
    log_before_restart = len(broker.stderr())
    broker.start()
    # Metadata can be answered by one shard while another still recovers its partitions: wait
    # (bounded) for the whole broker's ready line of this start before reading the log.
    deadline = time.monotonic() + 30
    while "Fjord broker ready" not in broker.stderr()[log_before_restart:]:
        assert time.monotonic() < deadline, "no ready line after the restart"
        time.sleep(0.05)
    recovered = _producer_state_recovered(broker.stderr()[log_before_restart:], partition_dir)
    assert (recovered["snapshot_offset"], recovered["scanned"], recovered["producers"]) == (
        str(roll_snapshot), "1", "1"), recovered

    with broker.connect() as conn:
        for batch, base_offset in (sent[-2], sent[-1]):  # from the snapshot, from the replay
            retry = conn.produce(topic, 0, batch)
            assert (retry.error_code, retry.base_offset) == (0, base_offset), (
                f"retry of the batch at {base_offset} after SIGKILL: {retry}")
        assert record_count(conn, topic)[0] == end, "a retry was written again"
        nxt = conn.produce(topic, 0, idempotent_batch([b"next"], producer_id, 0, len(sent) * ROLL_BATCH_RECORDS))
        assert (nxt.error_code, nxt.base_offset) == (0, end), nxt
        gap = conn.produce(topic, 0, idempotent_batch([b"gap"], producer_id, 0, len(sent) * ROLL_BATCH_RECORDS + 5))
        assert gap.error_code == OUT_OF_ORDER_SEQUENCE_NUMBER, "the restarted broker forgot the producer's sequence"


def test_init_producer_id_answers_kafkas_errors_and_gives_transactional_ids_epochs(broker):
    with broker.connect() as conn:
        # A transactional id goes to its coordinator: epoch 0, then a bump per InitProducerId.
        error, transactional_producer, epoch = init_producer_id(conn, "my-transactional-id")
        assert (error, epoch) == (0, 0) and transactional_producer >= 0
        assert init_producer_id(conn, "my-transactional-id") == (0, transactional_producer, 1)
        assert init_producer_id(conn, "")[0] == INVALID_REQUEST
        assert init_producer_id(conn, None, producer_id=5, epoch=-1)[0] == INVALID_REQUEST
        # KIP-360 request with the current id and epoch: Kafka hands an idempotent producer a new id.
        error, first, _ = init_producer_id(conn)
        error2, second, epoch = init_producer_id(conn, None, producer_id=first, epoch=0)
        assert (error, error2, epoch) == (0, 0, 0) and second != first


# -- (c) kafka-python ---------------------------------------------------------------------------

def test_kafka_python_with_enable_idempotence_produces(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True, acks="all",
                             request_timeout_ms=30_000, linger_ms=5)
    try:
        futures = [producer.send(topic, value=f"{i}".encode(), partition=i % 2) for i in range(200)]
        producer.flush(timeout=60)
        metadata = [future.get(timeout=60) for future in futures]
    finally:
        producer.close(timeout=10)
    assert len({(m.partition, m.offset) for m in metadata}) == 200
    records = fjordtest.consume(broker.bootstrap, topic, expected=200)
    assert sorted(int(r.value) for r in records) == list(range(200))


# -- (d) DescribeProducers ----------------------------------------------------------------------

def test_describe_producers_lists_active_producers(broker, topic):
    fjordtest.create_topic(broker.bootstrap, topic, partitions=2)
    with broker.connect() as conn:
        _, producer_id, _ = init_producer_id(conn)
        for sequence in range(3):
            result = conn.produce(topic, 1, idempotent_batch([b"v", b"w"], producer_id, 0, sequence * 2))
            assert result.error_code == 0
        described = describe_producers(conn, topic, [0, 1, 7])
    assert described[0] == (0, [])
    error, producers = described[1]
    assert error == 0 and len(producers) == 1
    pid, epoch, last_sequence, last_timestamp, coordinator_epoch, txn_start = producers[0]
    assert (pid, epoch, last_sequence, coordinator_epoch, txn_start) == (producer_id, 0, 5, -1, -1)
    assert abs(last_timestamp - time.time() * 1000) < 600_000
    assert described[7][0] == kafka_wire.UNKNOWN_TOPIC_OR_PARTITION


def test_idle_producers_expire_with_producer_id_expiration_ms(broker_factory, topic):
    broker = broker_factory.start(["--producer-id-expiration-ms", "1000",
                                   "--producer-id-expiration-check-interval-ms", "200"])
    fjordtest.create_topic(broker.bootstrap, topic)
    with broker.connect() as conn:
        _, producer_id, _ = init_producer_id(conn)
        assert conn.produce(topic, 0, idempotent_batch([b"a"], producer_id, 0, 0)).error_code == 0
        assert conn.produce(topic, 0, idempotent_batch([b"b"], producer_id, 0, 5)).error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
        deadline = time.monotonic() + 30
        described = describe_producers(conn, topic, [0])[0]
        while described[1] and time.monotonic() < deadline:
            time.sleep(0.2)
            described = describe_producers(conn, topic, [0])[0]
        assert described == (0, []), "the idle producer was not expired"
        # Forgotten: its next batch is accepted at any sequence (KIP-360).
        assert conn.produce(topic, 0, idempotent_batch([b"b"], producer_id, 0, 5)).error_code == 0
