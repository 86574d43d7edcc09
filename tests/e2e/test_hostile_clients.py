"""Hostile clients cannot grow the broker's memory past its request memory budget (issue 22).

One broker (two shards) with a small budget: --queued-max-request-bytes BUDGET_BYTES (a shard's
share holds FRAMES_PER_SHARD frames of --socket-request-max-bytes FRAME_MAX_BYTES) and a short
--request-read-timeout-ms. IDLE_CONNECTIONS connections are opened and left idle; then the RSS
baseline is taken. STALLED_CONNECTIONS connections then each declare a FRAME_MAX_BYTES frame, send
BODY_SENT_BYTES of it and stall, while a normal client (confluent-kafka) keeps producing and
reading back records in rounds. Checked:

- the broker's RSS (VmRSS) never goes past baseline + BUDGET_BYTES + CONNECTION_BYTES_MAX per
  stalled connection + SLACK_BYTES (before the budget, every stalled connection's body stayed in
  memory: STALLED_CONNECTIONS × BODY_SENT_BYTES = 300 MiB here);
- every stalled connection is closed by the read deadline, the reads waited for the budget, the
  budget is released afterwards (`fjord_request_memory_bytes` back to 0), and
  `fjord_connections_closed_total{reason="request_read_timeout"}` counts each one;
- the closes are logged rate limited: far fewer lines than connections, every close accounted
  for by a line or a `suppressed` count;
- every round of the normal client succeeds, and rounds complete while stalled frames hold the
  budget; the idle connections are still open.

Every wait is bounded; the only processes signalled are the broker this test started.
"""

from __future__ import annotations

import dataclasses
import re
import resource
import selectors
import socket
import struct
import threading
import time
import urllib.request
import uuid

import fjordtest

MiB = 1024 * 1024
SHARDS = 2  # fjordtest.Broker starts every broker with --shards 2
BUDGET_BYTES = 64 * MiB
FRAME_MAX_BYTES = 2 * MiB
FRAMES_PER_SHARD = BUDGET_BYTES // SHARDS // FRAME_MAX_BYTES
READ_TIMEOUT_MS = 1500
CACHE_BYTES = 8 * MiB

STALLED_CONNECTIONS = 300
BODY_SENT_BYTES = 1 * MiB
IDLE_CONNECTIONS = 2000

# What a connection costs besides the frames it reads: its 64 KiB receive buffer (filled by a
# stalled body) and its tasks.
CONNECTION_BYTES_MAX = 96 * 1024
# The normal client's requests, responses and records (the batch cache is CACHE_BYTES), and what
# the allocator keeps of memory freed in between.
SLACK_BYTES = 32 * MiB
RSS_BOUND_OVER_BASELINE = BUDGET_BYTES + STALLED_CONNECTIONS * CONNECTION_BYTES_MAX + SLACK_BYTES
assert STALLED_CONNECTIONS * BODY_SENT_BYTES > 2 * RSS_BOUND_OVER_BASELINE, "the attack must be able to break the bound"

ATTACK_WAIT_MAX_S = 240.0
SEND_CHUNK_BYTES = 64 * 1024
RECORDS_PER_ROUND = 20
ROUNDS_MIN = 3
ROUNDS_MAX = 20000
ROUND_WAIT_MAX_S = 120.0
METRICS_WAIT_MAX_S = 30.0
LOG_WAIT_MAX_S = 30.0
OPEN_FILES_NEEDED = IDLE_CONNECTIONS + STALLED_CONNECTIONS + 200


def _raise_open_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_NEEDED if hard == resource.RLIM_INFINITY else min(hard, max(soft, OPEN_FILES_NEEDED))
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= OPEN_FILES_NEEDED, "cannot open enough sockets"


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def _scrape(metrics_url: str) -> str:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        return response.read().decode()


def _samples(page: str, name: str, **labels: str) -> list[float]:
    out = []
    for line in page.splitlines():
        if not line.startswith(name + "{"):
            continue
        label_text, value = line[len(name) + 1:].rsplit("} ", 1)
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if all(found.get(key) == wanted for key, wanted in labels.items()):
            out.append(float(value))
    return out


@dataclasses.dataclass
class Round:
    started: float
    finished: float
    error: str | None


class NormalClient:
    """A producer (acks=all) and a reader, in rounds: RECORDS_PER_ROUND records produced, then read
    back by offset, until stopped (at least ROUNDS_MIN rounds, at most ROUNDS_MAX)."""

    def __init__(self, bootstrap: str, topic: str, first_offset: int = 0) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.next_offset = first_offset
        self.rounds: list[Round] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="normal-client", daemon=True)

    def start(self) -> "NormalClient":
        self.thread.start()
        return self

    def run_here(self) -> list[Round]:
        """ROUNDS_MIN rounds on the calling thread."""
        self.stop.set()
        self._run()
        return self.rounds

    def finish(self) -> list[Round]:
        self.stop.set()
        self.thread.join(timeout=ROUND_WAIT_MAX_S * 2 + 30)
        assert not self.thread.is_alive(), "the normal client did not finish its round"
        return self.rounds

    def _run(self) -> None:
        from confluent_kafka import Consumer, Producer, TopicPartition

        producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 5,
                             "message.timeout.ms": int(ROUND_WAIT_MAX_S * 1000)})
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"fjord-e2e-{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 100})
        try:
            while len(self.rounds) < ROUNDS_MAX and not (self.stop.is_set() and len(self.rounds) >= ROUNDS_MIN):
                started = time.monotonic()
                try:
                    self.next_offset = self._round(producer, consumer, TopicPartition, len(self.rounds), self.next_offset)
                    error = None
                except Exception as exc:  # recorded: the test fails on it with the reason
                    error = repr(exc)
                self.rounds.append(Round(started, time.monotonic(), error))
                if error is not None:
                    return
        finally:
            consumer.close()

    def _round(self, producer, consumer, TopicPartition, index: int, offset: int) -> int:
        values = [f"round-{offset}-{index}-{i}".encode() for i in range(RECORDS_PER_ROUND)]
        errors: list = []
        for value in values:
            producer.produce(self.topic, value=value, partition=0,
                             on_delivery=lambda err, msg: errors.append(err) if err is not None else None)
        left = producer.flush(ROUND_WAIT_MAX_S)
        assert left == 0 and not errors, f"round {index}: {left} undelivered, errors {errors}"
        consumer.assign([TopicPartition(self.topic, 0, offset)])
        read: list[bytes] = []
        deadline = time.monotonic() + ROUND_WAIT_MAX_S
        while len(read) < len(values) and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            assert message.error() is None, f"round {index}: consumer error {message.error()}"
            read.append(message.value())
        assert read == values, f"round {index}: read back {read}"
        return offset + len(values)


@dataclasses.dataclass
class Stalled:
    sock: socket.socket
    payload: bytes
    sent: int = 0
    stalled_at: float | None = None
    closed_at: float | None = None


class Attack:
    """STALLED_CONNECTIONS non-blocking sockets, each sending a frame's size prefix and
    BODY_SENT_BYTES of its body (as fast as the broker lets it), then nothing."""

    def __init__(self, broker: fjordtest.Broker) -> None:
        prefix = struct.pack(">i", FRAME_MAX_BYTES)
        payload = prefix + b"\x00" * BODY_SENT_BYTES
        self.selector = selectors.DefaultSelector()
        self.connections: list[Stalled] = []
        for _ in range(STALLED_CONNECTIONS):
            sock = socket.create_connection((broker.host, broker.port), timeout=10)
            sock.setblocking(False)
            stalled = Stalled(sock, payload)
            self.connections.append(stalled)
            self.selector.register(sock, selectors.EVENT_WRITE, stalled)
        self.started = time.monotonic()
        self.finished: float | None = None

    def open_count(self) -> int:
        return sum(1 for connection in self.connections if connection.closed_at is None)

    def step(self, timeout_s: float) -> None:
        for key, events in self.selector.select(timeout_s):
            connection: Stalled = key.data
            try:
                if events & selectors.EVENT_WRITE:
                    end = min(connection.sent + SEND_CHUNK_BYTES, len(connection.payload))
                    connection.sent += connection.sock.send(connection.payload[connection.sent:end])
                    if connection.sent == len(connection.payload):
                        connection.stalled_at = time.monotonic()
                        self.selector.modify(connection.sock, selectors.EVENT_READ, connection)
                elif events & selectors.EVENT_READ and not connection.sock.recv(4096):
                    self._closed(connection)
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                self._closed(connection)
        if self.finished is None and self.open_count() == 0:
            self.finished = time.monotonic()

    def _closed(self, connection: Stalled) -> None:
        connection.closed_at = time.monotonic()
        self.selector.unregister(connection.sock)
        connection.sock.close()

    def close(self) -> None:
        for connection in self.connections:
            if connection.closed_at is None:
                self._closed(connection)
        self.selector.close()


def _closing_lines(log: str, reason: str) -> tuple[int, int, int]:
    """(lines for single closes, summary lines, closes the lines account for) of `reason`."""
    single = summaries = accounted = 0
    for line in log.splitlines():
        if "closing connection" not in line or reason not in line:
            continue
        suppressed = re.search(r"suppressed=(\d+)", line)
        count = int(suppressed.group(1)) if suppressed else 0
        if "closing connections:" in line:
            summaries += 1
            accounted += count
        else:
            single += 1
            accounted += 1 + count
    return single, summaries, accounted


def test_stalled_large_frames_stay_within_the_request_memory_budget(broker_factory, topic):
    _raise_open_file_limit()
    metrics_port = fjordtest.free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    broker = broker_factory.start([
        "--queued-max-request-bytes", str(BUDGET_BYTES),
        "--socket-request-max-bytes", str(FRAME_MAX_BYTES),
        "--request-read-timeout-ms", str(READ_TIMEOUT_MS),
        "--batch-cache-bytes", str(CACHE_BYTES),
        "--metrics-listen", f"127.0.0.1:{metrics_port}",
    ])
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    page = _scrape(metrics_url)
    assert _samples(page, "fjord_request_memory_budget_bytes") == [BUDGET_BYTES // SHARDS] * SHARDS, page

    idle = [socket.create_connection((broker.host, broker.port), timeout=10) for _ in range(IDLE_CONNECTIONS)]
    attack: Attack | None = None
    try:
        # Warm up (topic, client, connections), then the baseline: the broker with its idle
        # connections and one round of normal traffic behind it.
        warm = NormalClient(broker.bootstrap, topic)
        assert [r.error for r in warm.run_here()] == [None] * ROUNDS_MIN, warm.rounds
        baseline = _rss_bytes(broker.pid)
        bound = baseline + RSS_BOUND_OVER_BASELINE

        client = NormalClient(broker.bootstrap, topic, first_offset=warm.next_offset).start()
        attack = Attack(broker)
        rss_max = baseline
        deadline = time.monotonic() + ATTACK_WAIT_MAX_S
        while attack.finished is None and time.monotonic() < deadline and broker.is_running():
            attack.step(0.05)
            rss_max = max(rss_max, _rss_bytes(broker.pid))
        rounds = client.finish()
        open_left = attack.open_count()
        assert broker.is_running(), f"broker died under the attack; {broker.describe()}"
        lasted = "unfinished" if attack.finished is None else f"{attack.finished - attack.started:.1f} s"
        print(f"\nhostile: baseline RSS {baseline / MiB:.1f} MiB, max {rss_max / MiB:.1f} MiB "
              f"(bound {bound / MiB:.1f} MiB); attack {lasted}; {len(rounds)} client rounds")

        assert rss_max <= bound, (
            f"RSS reached {rss_max / MiB:.1f} MiB, past baseline {baseline / MiB:.1f} MiB + budget "
            f"{BUDGET_BYTES / MiB:.0f} MiB + connections and slack ({bound / MiB:.1f} MiB)")
        assert open_left == 0, f"{open_left} of {STALLED_CONNECTIONS} stalled connections still open"
        unstalled = [c for c in attack.connections if c.stalled_at is None]
        assert not unstalled, f"{len(unstalled)} connections closed before they had sent {BODY_SENT_BYTES} bytes"

        errors = [r for r in rounds if r.error is not None]
        assert not errors, f"the normal client failed: {errors}"
        during = [r for r in rounds if r.started >= attack.started and r.finished <= attack.finished]
        assert during, f"no round of the normal client ran while frames were stalled: {rounds}"

        # The budget is released and every close counted under its reason.
        deadline = time.monotonic() + METRICS_WAIT_MAX_S
        while True:
            page = _scrape(metrics_url)
            in_flight = sum(_samples(page, "fjord_request_memory_bytes"))
            if in_flight == 0 or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        assert in_flight == 0, f"{in_flight} bytes still held after the attack:\n{page}"
        timeouts = sum(_samples(page, "fjord_connections_closed_total", reason="request_read_timeout"))
        assert timeouts == STALLED_CONNECTIONS, page
        assert sum(_samples(page, "fjord_connections_closed_total", reason="idle")) == 0, page
        assert sum(_samples(page, "fjord_request_reads_throttled_total")) > 0, "no read ever waited for the budget"

        # The last summary line comes at the end of its window (a few seconds).
        deadline = time.monotonic() + LOG_WAIT_MAX_S
        while True:
            single, summaries, accounted = _closing_lines(broker.stderr(), "request_read_timeout")
            if accounted >= STALLED_CONNECTIONS or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        assert accounted == STALLED_CONNECTIONS, (single, summaries, accounted)
        assert summaries >= 1 and single + summaries <= STALLED_CONNECTIONS // 5, (
            f"{single} single and {summaries} summary lines for {STALLED_CONNECTIONS} closes")

        # The idle connections were left alone (connections.max.idle.ms is 10 minutes).
        readable = selectors.DefaultSelector()
        for sock in idle:
            readable.register(sock, selectors.EVENT_READ)
        closed = readable.select(0)
        readable.close()
        assert not closed, f"{len(closed)} idle connections were closed or written to"
        with broker.connect() as conn:
            assert conn.metadata().brokers
    finally:
        if attack is not None:
            attack.close()
        for sock in idle:
            sock.close()


IDLE_MS = 2000
BUSY_GAP_MS = 100


def test_idle_connections_are_closed_after_connections_max_idle_ms(broker_factory):
    metrics_port = fjordtest.free_port()
    broker = broker_factory.start(["--connections-max-idle-ms", str(IDLE_MS), "--metrics-listen", f"127.0.0.1:{metrics_port}"])
    connections = [socket.create_connection((broker.host, broker.port), timeout=10) for _ in range(20)]
    try:
        for index, sock in enumerate(connections):
            sock.settimeout(30)
            assert sock.recv(1) == b"", f"connection {index} got data instead of being closed"
        page = _scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        assert sum(_samples(page, "fjord_connections_closed_total", reason="idle")) == len(connections), page
        # A connection that keeps sending requests is not idle, however long it lives.
        with broker.connect() as conn:
            for _ in range(3 * IDLE_MS // BUSY_GAP_MS):
                conn.metadata()
                time.sleep(BUSY_GAP_MS / 1000)
            assert conn.metadata().brokers
    finally:
        for sock in connections:
            sock.close()
