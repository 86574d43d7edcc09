"""Scale on one node (issue 22): far more partitions than the broker may hold descriptors.

The broker runs with RLIMIT_NOFILE lowered to OPEN_FILES_LIMIT (soft and hard, through
`prlimit`, so it cannot raise it), and serves a topic of PARTITIONS partitions (50,000 by default,
`FJORD_SCALE_PARTITIONS` overrides). Partitions are opened lazily, as today, so the topic costs
nothing until each is written: idempotent producers (acks=all; PRODUCERS of them, each writing
its share) then write one distinct record to every partition, the broker is SIGKILLed and
restarted under the same limit (acks=all records must survive a crash, the stronger form of the
issue's "a restart"), and a consumer reads every record back, checking the exact partition ->
value mapping and that nothing was stored twice; last, a clean stop (SIGTERM, exit 0).

Throughout, a sampler thread counts `/proc/<pid>/fd`: the broker must never come near the limit
and must stay within its segment descriptor budget (SEGMENT_FILES_MAX, passed with
SEGMENT_FILES_FLAG and stated in its start-up log line), plus the few opens per shard the cache
allows past it, plus DESCRIPTORS_OTHER_MAX for everything else it holds open (DESCRIPTORS_MAX in
all). The same thread scrapes the descriptor cache's gauges on /metrics: no shard over its
budget beyond those few, no open that met EMFILE, and in the first life evictions (50,000
partitions went through 1,000 descriptors). The broker's log must show no EMFILE ("Too many open
files", os error 24), no poisoned partition and no partition it could not open; each check runs
during every long wait, so such a broker fails the test at once.

Before the descriptor cache each segment kept two descriptors open, so this fails at about
OPEN_FILES_LIMIT / 2 partitions (on 25e167f: EMFILE on produce after 2,038 of 50,000 records).
Timings of each phase are printed (run with -s to see them).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest

import fjordtest

PARTITIONS = int(os.environ.get("FJORD_SCALE_PARTITIONS", "50000"))
# Idempotent producers writing the partitions between them. librdkafka sends one partition per
# ProduceRequest, at most 5 in flight per idempotent producer, and each partition's first write
# creates its directory and segment and waits for several fsyncs: one producer alone took about
# twice as long as four (FJORD_SCALE_PRODUCERS overrides).
PRODUCERS = int(os.environ.get("FJORD_SCALE_PRODUCERS", "4"))
# The broker's RLIMIT_NOFILE, soft and hard (FJORD_SCALE_OPEN_FILES_LIMIT overrides, for measuring).
OPEN_FILES_LIMIT = int(os.environ.get("FJORD_SCALE_OPEN_FILES_LIMIT", "4096"))

# Issue 22's descriptor budget, in one place: segment descriptors over all shards (src/config.rs).
# The test passes the flag only when `fjord start --help` lists it, so that a build without the
# cache still runs and fails on the scale itself; it requires the flag at the end.
SEGMENT_FILES_FLAG = "--open-segment-files-max"
SEGMENT_FILES_MAX = 1000
# The broker's start-up line stating the budget (fields: open_file_limit, segment_files_per_shard,
# shards); the budget it states is the one checked, SEGMENT_FILES_MAX when the line is missing.
BUDGET_LOG_LINE = "descriptor budget"
# Everything else the broker holds open: an idle two-shard broker holds 16 to 18 (stdio, the lock,
# the metadata log, 6 io_uring rings, 2 eventfds, a pipe, listener and metrics sockets); then
# client connections (up to 2 per client), the __consumer_offsets partitions the consumer's group
# id creates, and files opened for a moment (directory fsyncs, snapshots, index rewrites). At
# most 27 were seen at 50,000 partitions.
DESCRIPTORS_OTHER_MAX = 64
# Per shard, how many segment descriptors may be open past the budget: writers, recovery and
# lookups may open past a budget whose descriptors are all in use, "a few at a time"
# (engine/src/files.rs). Applies to the gauges and to /proc alike.
SEGMENT_FILES_OVERSHOOT_MAX = 32
SHARDS = 2  # fjordtest.Broker starts every broker with --shards 2
DESCRIPTORS_MAX = SEGMENT_FILES_MAX + SHARDS * SEGMENT_FILES_OVERSHOOT_MAX + DESCRIPTORS_OTHER_MAX
assert DESCRIPTORS_MAX < OPEN_FILES_LIMIT

# ISSUE-22 METRICS: the series of the descriptor cache (engine/src/metrics.rs as of 57d30a6, one
# sample per shard, refreshed every METRICS_REFRESH_S). Required when the build has
# SEGMENT_FILES_FLAG.
METRIC_OPEN = "fjord_segment_files_open"
METRIC_BUDGET = "fjord_segment_files_budget"
METRIC_EVICTIONS = "fjord_segment_file_evictions_total"
METRIC_EXHAUSTED = "fjord_segment_file_exhausted_total"  # opens that met EMFILE/ENFILE
METRICS_REFRESH_S = 6.0  # the shards copy their gauges every 5 s (net/src/server.rs GAUGE_INTERVAL)

# Every wait is bounded, at two to three times what 50,000 partitions took on the 2-core VM at
# 57d30a6 and ecd9a1e (three runs, other builds and tests running beside them): create 0.5-0.7 s;
# writes 166-252 s (each new partition costs about 5 ms of blocking mkdir/open/fsync on its
# shard's thread); ready after the SIGKILL 16-38 s; read-back 27-41 s; clean stop 27-101 s.
CREATE_WAIT_MAX_S = 120.0
PRODUCE_WAIT_MAX_S = 600.0
READY_WAIT_MAX_S = 120.0
CONSUME_WAIT_MAX_S = 180.0
# fjordtest's teardown allows a clean stop 30 s; 50,000 partitions recovered after a SIGKILL
# take longer: the test stops the broker itself.
STOP_WAIT_MAX_S = 300.0
# An overshoot can last a few hundred milliseconds: at 57d30a6 the first fetch of thousands of
# partitions after a restart evicted the recovered O_DIRECT writers, which stayed open until
# their asynchronous close ran, while it opened buffered readers (+250 to +500 over a budget of
# 1,000, unseen by the gauges; fixed in ecd9a1e). A listdir of /proc/PID/fd costs about 0.3 ms.
SAMPLE_INTERVAL_S = 0.01
TEST_TIMEOUT_S = CREATE_WAIT_MAX_S + PRODUCE_WAIT_MAX_S + READY_WAIT_MAX_S + CONSUME_WAIT_MAX_S + STOP_WAIT_MAX_S + 60

# What the broker's log must never say.
LOG_FORBIDDEN = re.compile(r"Too many open files|EMFILE|os error 24|poison|cannot open partition", re.IGNORECASE)


class LimitedBroker(fjordtest.Broker):
    """A broker of `factory` (torn down and reported like its own) exec'd through `prlimit`,
    which lowers RLIMIT_NOFILE and execs the broker in place: same PID, so the parent-death
    signal and every signal still reach it (preexec_fn would run Python in a fork of a process
    full of librdkafka threads). Serves /metrics on its own port."""

    def __init__(self, factory: fjordtest.BrokerFactory, args: list[str]) -> None:
        self.metrics_address = f"127.0.0.1:{fjordtest.free_port()}"
        super().__init__(factory.new_data_dir(), factory.log_dir, args=["--metrics-listen", self.metrics_address, *args],
                         name=f"broker{len(factory.brokers)}")
        factory.brokers.append(self)

    def command(self) -> list[str]:
        return ["prlimit", f"--nofile={OPEN_FILES_LIMIT}:{OPEN_FILES_LIMIT}", "--", *super().command()]


def _scrape(metrics_address: str) -> dict[str, list[float]]:
    """The descriptor cache's series on /metrics (every `fjord_segment_file*`): {name: [one value
    per shard]}; the ones the test checks are there, empty, when the broker has none."""
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10) as response:
        text = response.read().decode()
    series: dict[str, list[float]] = {name: [] for name in (METRIC_OPEN, METRIC_BUDGET, METRIC_EVICTIONS, METRIC_EXHAUSTED)}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name.startswith("fjord_segment_file"):
            series.setdefault(name, []).append(float(line.rsplit(" ", 1)[1]))
    return series


def _descriptor_kinds(pid: int) -> dict[str, int]:
    """What a process's descriptors are: files by suffix (segment files split into O_DIRECT
    writers and buffered readers), directories, sockets, rings, ..."""
    kinds: dict[str, int] = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
            if target.startswith("/"):
                base = os.path.basename(target)
                kind = "file *." + base.rsplit(".", 1)[1] if "." in base else f"file {base}"
                if os.path.isdir(target):
                    kind = "directory"
                elif kind == "file *.log":
                    with open(f"/proc/{pid}/fdinfo/{name}") as info:
                        flags = int(info.read().split("flags:", 1)[1].split()[0], 8)
                    kind += " O_DIRECT" if flags & os.O_DIRECT else " buffered"
            else:
                kind = target.split(":", 1)[0] + (":" + target.split(":", 1)[1] if target.startswith("anon_inode") else "")
        except (OSError, IndexError, ValueError):
            continue  # closed meanwhile
        kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items(), key=lambda item: -item[1]))


class DescriptorSampler:
    """From a thread, for at most `duration_max_s`: counts the broker's open descriptors in
    /proc every SAMPLE_INTERVAL_S (keeping the maximum and how many samples came within 8 of
    OPEN_FILES_LIMIT, and what the descriptors were at the maximum: `kinds`), and every second
    scrapes the descriptor cache's gauges (keeping the largest `open` and any shard seen over its
    budget by more than SEGMENT_FILES_OVERSHOOT_MAX)."""

    def __init__(self, pid: int, metrics_address: str, duration_max_s: float) -> None:
        self.pid = pid
        self.metrics_address = metrics_address
        self.duration_max_s = duration_max_s
        self.maximum = 0
        self.kinds: dict[str, int] = {}
        self.maximum_classified = 0
        self.samples = 0
        self.near_limit = 0
        self.open_max = 0.0  # largest sum over shards of METRIC_OPEN
        self.over_budget: list[tuple[float, float]] = []  # (open, budget) of a shard, per scrape
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fd-sampler-{pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.duration_max_s
        next_scrape = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                count = len(os.listdir(f"/proc/{self.pid}/fd"))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                return  # the broker is gone (killed, or it exited)
            self.samples += 1
            if count > self.maximum:
                self.maximum = count
                if count > self.maximum_classified + 16:  # at most OPEN_FILES_LIMIT / 16 classifications
                    self.kinds = _descriptor_kinds(self.pid)
                    self.maximum_classified = count
            if count >= OPEN_FILES_LIMIT - 8:
                self.near_limit += 1
            if time.monotonic() >= next_scrape:
                next_scrape = time.monotonic() + 1.0
                self._scrape()
            self._stop.wait(SAMPLE_INTERVAL_S)

    def _scrape(self) -> None:
        try:
            series = _scrape(self.metrics_address)
        except OSError:
            return  # not serving yet, or gone; /proc is the check that counts
        opened, budgets = series[METRIC_OPEN], series[METRIC_BUDGET]
        if not opened or len(opened) != len(budgets):
            return
        self.scrapes += 1
        self.open_max = max(self.open_max, sum(opened))
        self.over_budget += [(o, b) for o, b in zip(opened, budgets) if o > b + SEGMENT_FILES_OVERSHOOT_MAX]

    def stop(self) -> "DescriptorSampler":
        self._stop.set()
        self._thread.join(timeout=15)
        assert not self._thread.is_alive(), "descriptor sampler did not stop"
        return self


def _segment_files_flag_supported() -> bool:
    result = subprocess.run([str(fjordtest.fjord_binary()), "start", "--help"], capture_output=True, text=True,
                            timeout=30, env=fjordtest.child_env())
    return SEGMENT_FILES_FLAG in result.stdout


def _open_files_limits(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError(f"no open-files limit in /proc/{pid}/limits")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _forbidden_log_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if LOG_FORBIDDEN.search(line)]


def _check_broker_healthy(broker: fjordtest.Broker, phase: str) -> None:
    """Fails at once (not at the end of a long wait) when the broker died or logged EMFILE."""
    bad = _forbidden_log_lines(broker.stderr())
    assert not bad, (f"{phase}: the broker ran out of descriptors or failed ({len(bad)} log lines), first:\n"
                     + "\n".join(line[:400] for line in bad[:3]))
    assert broker.is_running(), f"{phase}: broker exited; {broker.describe()}"


def _stated_budget(log: str) -> tuple[int, int] | None:
    """(open-file limit, segment descriptors over all shards) from this start's budget line."""
    for line in log.splitlines():
        if BUDGET_LOG_LINE in line:
            fields = dict(re.findall(r"(\w+)=(\d+)", line))
            return int(fields["open_file_limit"]), int(fields["segment_files_per_shard"]) * int(fields["shards"])
    return None


def _wait_ready_line(broker: fjordtest.Broker, log_from: int, timeout_s: float) -> float:
    """Waits (bounded) for this start's "Fjord broker ready" line: Metadata can be answered by
    one shard while another still opens its partitions. Returns the seconds waited."""
    started = time.monotonic()
    while "Fjord broker ready" not in broker.stderr()[log_from:]:
        _check_broker_healthy(broker, "start-up")
        assert time.monotonic() - started < timeout_s, f"not ready within {timeout_s}s; {broker.describe()}"
        time.sleep(0.1)
    return time.monotonic() - started


def _create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import NewTopic

    client = fjordtest.admin(bootstrap)
    futures = client.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
                                   request_timeout=CREATE_WAIT_MAX_S)
    futures[topic].result(timeout=CREATE_WAIT_MAX_S)
    fjordtest.wait_for_topic(bootstrap, topic, PARTITIONS, timeout_s=CREATE_WAIT_MAX_S)


def _produce_one_to_each(broker: fjordtest.Broker, topic: str, values: list[bytes]) -> dict[int, int]:
    """One record to each partition from PRODUCERS idempotent acks=all producers (producer i
    writes the partitions p with p % PRODUCERS == i); returns {partition: offset} from the
    delivery reports, every one of which must succeed."""
    from confluent_kafka import Producer

    delivered: dict[int, int] = {}
    failed: list = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append((msg.partition(), err))
        else:
            assert msg.partition() not in delivered, f"two delivery reports for partition {msg.partition()}"
            delivered[msg.partition()] = msg.offset()

    producers = [Producer({
        "bootstrap.servers": broker.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "message.timeout.ms": int(PRODUCE_WAIT_MAX_S * 1000),
        "queue.buffering.max.messages": max(100_000, PARTITIONS),
        "socket.timeout.ms": 30_000,
    }) for _ in range(PRODUCERS)]
    deadline = time.monotonic() + PRODUCE_WAIT_MAX_S
    try:
        for partition, value in enumerate(values):
            producer = producers[partition % PRODUCERS]
            while True:
                assert time.monotonic() < deadline, "producer queue stayed full"
                try:
                    producer.produce(topic, value=value, partition=partition, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        # Flush in slices so that a broker out of descriptors fails the test now, not at the deadline.
        while sum(len(producer) for producer in producers) > 0 and not failed and time.monotonic() < deadline:
            for producer in producers:
                producer.flush(1.0 / PRODUCERS)
            _check_broker_healthy(broker, f"produce ({len(delivered)} of {PARTITIONS} delivered)")
    except BaseException:
        for producer in producers:
            producer.purge()  # no retries against a broker being torn down (nor their log noise)
            producer.poll(0)
        producers.clear()  # the last references: the clients are destroyed now, not after teardown
        producer = None
        raise
    for producer in producers:
        producer.poll(0)
    undelivered = sum(len(producer) for producer in producers)
    assert not failed, f"{len(failed)} records failed, first: {failed[:5]}"
    assert undelivered == 0, f"{undelivered} records undelivered after {PRODUCE_WAIT_MAX_S}s"
    assert len(delivered) == PARTITIONS, f"{len(delivered)} delivery reports for {PARTITIONS} records"
    return delivered


def _consume_every_partition(broker: fjordtest.Broker, topic: str) -> dict[int, tuple[int, bytes]]:
    """Reads every partition from offset 0 until each has returned its records and reported its
    end (EOF): {partition: (offset, value)} of the first record of each. A second record in any
    partition fails the test (it would be a duplicate)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": f"fjord-e2e-{uuid.uuid4().hex[:8]}",  # required; never joined (assign only)
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 100,
        "socket.timeout.ms": 30_000,
    })
    # Offset 0 rather than OFFSET_BEGINNING: every log starts at 0, and it spares one ListOffsets
    # per partition.
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    records: dict[int, tuple[int, bytes]] = {}
    at_end: set[int] = set()
    deadline = time.monotonic() + CONSUME_WAIT_MAX_S
    next_check = time.monotonic() + 1.0
    try:
        while len(at_end) < PARTITIONS and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                if msg.error():
                    assert msg.error().code() == KafkaError._PARTITION_EOF, f"consumer error: {msg.error()}"
                    if msg.partition() in records:
                        at_end.add(msg.partition())
                    continue
                assert msg.partition() not in records, (
                    f"partition {msg.partition()} holds a second record at offset {msg.offset()}: "
                    f"{msg.value()!r} after {records[msg.partition()]}")
                records[msg.partition()] = (msg.offset(), msg.value())
            if time.monotonic() >= next_check:
                _check_broker_healthy(broker, f"consume ({len(records)} of {PARTITIONS} read)")
                next_check = time.monotonic() + 1.0
    finally:
        consumer.close()
    return records


def _check_life(broker: LimitedBroker, sampler: DescriptorSampler, budget: int, life: str,
                metrics_required: bool) -> dict[str, list[float]]:
    """The descriptor checks of one broker life, after its sampler stopped: /proc never near the
    limit and within budget + overshoot + DESCRIPTORS_OTHER_MAX; the cache's gauges within the
    budget and no open that met EMFILE. Returns the last scrape (taken after the gauges' refresh)."""
    print(f"scale: {life}: descriptors at most {sampler.maximum} ({sampler.samples} samples from /proc): "
          f"{sampler.kinds}; segment descriptors at most {sampler.open_max:.0f} ({sampler.scrapes} scrapes)")
    assert sampler.samples > 0, f"{life}: no descriptor sample taken"
    assert sampler.near_limit == 0, (
        f"{life}: the broker reached its open-file limit {OPEN_FILES_LIMIT} in {sampler.near_limit} samples")
    bound = budget + SHARDS * SEGMENT_FILES_OVERSHOOT_MAX + DESCRIPTORS_OTHER_MAX
    assert sampler.maximum <= bound, (
        f"{life}: the broker held {sampler.maximum} descriptors, over its segment budget {budget} "
        f"+ {SHARDS} x {SEGMENT_FILES_OVERSHOOT_MAX} past it + {DESCRIPTORS_OTHER_MAX} others; near the maximum "
        f"they were {sampler.kinds}")
    time.sleep(METRICS_REFRESH_S)
    series = _scrape(broker.metrics_address)
    # ISSUE-22 METRICS: the cache's own account of the same life.
    if not series[METRIC_OPEN] or not series[METRIC_BUDGET]:
        assert not metrics_required, f"{life}: {METRIC_OPEN} / {METRIC_BUDGET} not on /metrics"
        print(f"scale: {life}: {METRIC_OPEN} / {METRIC_BUDGET} not on /metrics (this build has no cache)")
        return series
    print(f"scale: {life}: /metrics: " + ", ".join(f"{name.removeprefix('fjord_')} {sum(values):.0f}"
                                                    for name, values in series.items()))
    assert sampler.scrapes > 0, f"{life}: /metrics never scraped while it ran"
    assert sum(series[METRIC_BUDGET]) == budget, f"{life}: /metrics budget {series[METRIC_BUDGET]}, stated {budget}"
    assert not sampler.over_budget, (
        f"{life}: a shard held more segment descriptors than its budget + {SEGMENT_FILES_OVERSHOOT_MAX} "
        f"(open, budget): {sampler.over_budget[:5]}")
    assert sum(series[METRIC_EXHAUSTED]) == 0, f"{life}: {series[METRIC_EXHAUSTED]} opens met EMFILE/ENFILE"
    return series


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_idempotent_write_to_every_partition_survives_sigkill_within_the_descriptor_budget(broker_factory):
    flag_supported = _segment_files_flag_supported()
    broker = LimitedBroker(broker_factory, [SEGMENT_FILES_FLAG, str(SEGMENT_FILES_MAX)] if flag_supported else [])
    try:
        _run_at_scale(broker, flag_supported)
    except BaseException:
        broker.kill()  # a clean stop at this scale outlasts the teardown's bound (the test makes its own)
        raise


def _run_at_scale(broker: LimitedBroker, flag_supported: bool) -> None:
    topic = fjordtest.kafka_wire.unique_name("scale")  # short: it is in 50,000 directory names
    broker.start(wait=False)
    _wait_ready_line(broker, 0, READY_WAIT_MAX_S)
    assert _open_files_limits(broker.pid) == (OPEN_FILES_LIMIT, OPEN_FILES_LIMIT)
    stated = _stated_budget(broker.stderr())
    if stated is not None:
        assert stated[0] == OPEN_FILES_LIMIT, f"the broker states an open-file limit of {stated[0]}"
    budget = stated[1] if stated is not None else SEGMENT_FILES_MAX
    if flag_supported:
        assert stated is not None, f"no '{BUDGET_LOG_LINE}' line at start-up; {broker.describe()}"
        assert budget == SEGMENT_FILES_MAX, f"{SEGMENT_FILES_FLAG} {SEGMENT_FILES_MAX} but the broker states {budget}"
    print(f"\nscale: {PARTITIONS} partitions, RLIMIT_NOFILE {OPEN_FILES_LIMIT}, segment descriptor budget "
          f"{budget}{'' if flag_supported else ' (assumed: this build has no ' + SEGMENT_FILES_FLAG + ')'}")

    phase_started = time.monotonic()
    _create_topic(broker.bootstrap, topic)
    print(f"scale: created {PARTITIONS} partitions in {time.monotonic() - phase_started:.1f}s")

    # Distinct per partition and per run, so that a record read back can only be this one.
    run_id = uuid.uuid4().hex[:8]
    values = [f"{run_id}-p{p}".encode() for p in range(PARTITIONS)]
    sampler = DescriptorSampler(broker.pid, broker.metrics_address, PRODUCE_WAIT_MAX_S + 30)
    phase_started, cpu_started = time.monotonic(), _cpu_seconds(broker.pid)
    try:
        delivered = _produce_one_to_each(broker, topic, values)
    finally:
        sampler.stop()
    print(f"scale: wrote one record to each partition in {time.monotonic() - phase_started:.1f}s "
          f"(broker CPU {_cpu_seconds(broker.pid) - cpu_started:.1f}s)")
    assert all(offset == 0 for offset in delivered.values()), "a first record not at offset 0"
    series = _check_life(broker, sampler, budget, "first life", flag_supported)
    if flag_supported and PARTITIONS > 2 * SEGMENT_FILES_MAX:
        assert sum(series[METRIC_EVICTIONS]) > 0, "no descriptor was ever closed to make room: the cache was not used"
    _check_broker_healthy(broker, "before the SIGKILL")

    broker.kill()  # SIGKILL: the acks=all records must survive a crash, not only a clean stop
    log_from = len(broker.stderr())
    broker.start(wait=False)
    restart_sampler = DescriptorSampler(broker.pid, broker.metrics_address, READY_WAIT_MAX_S + CONSUME_WAIT_MAX_S + 30)
    try:
        ready_s = _wait_ready_line(broker, log_from, READY_WAIT_MAX_S)
        print(f"scale: restarted after SIGKILL, ready in {ready_s:.1f}s")
        assert _open_files_limits(broker.pid) == (OPEN_FILES_LIMIT, OPEN_FILES_LIMIT)
        phase_started, cpu_started = time.monotonic(), _cpu_seconds(broker.pid)
        records = _consume_every_partition(broker, topic)
        print(f"scale: read {len(records)} records in {time.monotonic() - phase_started:.1f}s "
              f"(broker CPU {_cpu_seconds(broker.pid) - cpu_started:.1f}s)")
    finally:
        restart_sampler.stop()

    # Every record written is read back, exactly, from its own partition, once.
    missing = [p for p in range(PARTITIONS) if p not in records]
    assert not missing, f"{len(missing)} partitions returned no record, e.g. {missing[:10]}"
    wrong = [(p, records[p]) for p in range(PARTITIONS) if records[p] != (0, values[p])]
    assert not wrong, f"{len(wrong)} partitions returned another record, e.g. {wrong[:5]}"

    _check_life(broker, restart_sampler, budget, "after the restart", flag_supported)
    _check_broker_healthy(broker, "end")

    # A clean stop at this scale: SIGTERM, bounded, exit 0, still no EMFILE.
    phase_started = time.monotonic()
    os.kill(broker.pid, signal.SIGTERM)
    try:
        rc = broker.proc.wait(timeout=STOP_WAIT_MAX_S)
    except subprocess.TimeoutExpired:
        broker.kill()
        raise AssertionError(f"no clean stop within {STOP_WAIT_MAX_S}s; {broker.describe()}") from None
    print(f"scale: stopped cleanly (SIGTERM) in {time.monotonic() - phase_started:.1f}s")
    assert rc == 0, f"broker exited {rc} after SIGTERM; {broker.describe()}"
    bad = _forbidden_log_lines(broker.stderr())
    assert not bad, f"the broker logged {len(bad)} failures while stopping, first: {bad[:3]}"
    assert flag_supported, f"`fjord start --help` does not list {SEGMENT_FILES_FLAG} (the descriptor budget)"
