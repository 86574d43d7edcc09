"""Test support for Fjord's end-to-end suite: the broker process, the CLI, client helpers.

`Broker` runs the real release binary on a free loopback port with its own data directory and
stderr log. Only processes started here are ever signalled, always by their own PID.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import kafka_wire

REPO_ROOT = Path(__file__).resolve().parents[2]
# Data directories live under target/ (the repository's disk): the broker writes with O_DIRECT,
# which needs a real filesystem, not whatever /tmp happens to be.
E2E_ROOT = REPO_ROOT / "target" / "e2e"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 30.0
CLI_TIMEOUT_S = 60.0


def fjord_binary() -> Path:
    """The release binary; a missing binary is a failure, never a silent skip."""
    path = Path(os.environ.get("FJORD_BIN", REPO_ROOT / "target" / "release" / "fjord"))
    if not path.is_file() or not os.access(path, os.X_OK):
        raise AssertionError(
            f"fjord binary not found at {path}: build it with `cargo build --release --workspace --bins` "
            "or point FJORD_BIN at it"
        )
    return path


def free_port() -> int:
    """A loopback port nobody listens on right now (bind port 0, read it back, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_work_dir(prefix: str) -> Path:
    E2E_ROOT.mkdir(parents=True, exist_ok=True)
    path = E2E_ROOT / f"{prefix}-{uuid.uuid4().hex[:10]}"
    path.mkdir()
    return path


def _die_with_parent_prefix() -> list[str]:
    """`setpriv --pdeathsig KILL` (util-linux) execs the broker in place (same PID) with a parent
    death signal: if the test process dies, even by SIGKILL or a crash in a client library, the
    kernel kills the broker, so none outlives its test. (preexec_fn would run Python in a forked
    child of a process full of librdkafka threads: not safe.)"""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def child_env() -> dict[str, str]:
    """Environment for fjord processes. Hermetic: a developer's FJORD_* settings (every flag has
    one) must not change the broker or CLI under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FJORD_")}
    env.setdefault("RUST_BACKTRACE", "1")
    env.setdefault("NO_COLOR", "1")  # plain stderr logs: tests grep them
    return env


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


class Broker:
    """One `fjord start` process. `start()` waits (bounded) until Metadata is answered."""

    def __init__(self, data_dir: Path, log_dir: Path, args: list[str] | None = None, port: int | None = None,
                 env: dict[str, str] | None = None, name: str = "broker") -> None:
        self.data_dir = data_dir
        self.port = port if port is not None else free_port()
        self.args = list(args or [])
        self.env = env
        self.name = name
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.start_count = 0
        self.stderr_path = log_dir / f"{name}.stderr.log"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "broker not started"
        return self.proc.pid

    def command(self) -> list[str]:
        return [
            str(fjord_binary()), "start",
            "--data-dir", str(self.data_dir),
            "--listen", self.bootstrap,
            "--advertise", self.bootstrap,
            "--shards", "2",
            *self.args,
        ]

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait: bool = True) -> "Broker":
        assert not self.is_running(), "broker already running"
        self.start_count += 1
        env = child_env()
        if self.env:
            env.update(self.env)
        with open(self.stderr_path, "ab") as log:
            log.write(f"\n===== fjord start #{self.start_count}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                _die_with_parent_prefix() + self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True,  # a Ctrl-C in the terminal must not reach it twice
            )
        if wait:
            self.wait_ready()
        return self

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self) -> str:
        return f"{self.name} at {self.bootstrap} (data {self.data_dir}); stderr tail:\n{tail(self.stderr())}"

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> kafka_wire.Metadata:
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"broker exited with {rc} before it was ready; {self.describe()}")
            try:
                return kafka_wire.wait_for_metadata(self.host, self.port, timeout_s=min(2.0, deadline - time.monotonic()))
            except (TimeoutError, OSError) as e:
                last_error = e
        raise AssertionError(f"broker not ready within {timeout_s}s ({last_error!r}); {self.describe()}")

    def wait_exit(self, timeout_s: float = EXIT_TIMEOUT_S) -> int:
        """Waits for the process to exit by itself; fails (after killing it) if it does not."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"broker still running after {timeout_s}s; {self.describe()}") from None

    def stop(self, expect_clean: bool = True) -> int:
        """SIGTERM, bounded wait; a clean shutdown exits 0."""
        assert self.proc is not None and self.is_running(), f"broker not running; {self.describe()}"
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"broker ignored SIGTERM for {STOP_TIMEOUT_S}s; {self.describe()}") from None
        if expect_clean:
            assert rc == 0, f"broker exited with {rc} after SIGTERM; {self.describe()}"
        return rc

    def kill(self) -> None:
        """SIGKILL this broker's own PID (never by name) and reap it."""
        if self.is_running():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def restart(self) -> "Broker":
        self.stop()
        return self.start()

    def cli(self, *args: str, input: str | None = None, check: bool = True,
            timeout_s: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
        return run_cli(*args, "-b", self.bootstrap, input=input, check=check, timeout_s=timeout_s)

    def connect(self, timeout_s: float = 10.0) -> kafka_wire.KafkaConnection:
        return kafka_wire.KafkaConnection(self.host, self.port, timeout_s=timeout_s)

    def close(self) -> None:
        """Teardown: kill if still running. Never raises for an already stopped broker."""
        try:
            self.kill()
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def run_cli(*args: str, input: str | None = None, check: bool = True,
            timeout_s: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
    cmd = [str(fjord_binary()), *args]
    result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout_s, env=child_env())
    if check:
        assert result.returncode == 0, (
            f"`{' '.join(cmd)}` exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


class BrokerFactory:
    """Creates brokers for one test (or module) and tears all of them down afterwards."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.brokers: list[Broker] = []
        self.dirs: list[Path] = []
        self.log_dir = new_work_dir(f"logs-{label}")
        self.dirs.append(self.log_dir)

    def new_data_dir(self) -> Path:
        path = new_work_dir(f"data-{self.label}")
        self.dirs.append(path)
        return path

    def create(self, args: list[str] | None = None, data_dir: Path | None = None, port: int | None = None,
               env: dict[str, str] | None = None) -> Broker:
        broker = Broker(
            data_dir if data_dir is not None else self.new_data_dir(),
            self.log_dir, args=args, port=port, env=env, name=f"broker{len(self.brokers)}",
        )
        self.brokers.append(broker)
        return broker

    def start(self, args: list[str] | None = None, **kwargs: object) -> Broker:
        return self.create(args, **kwargs).start()  # type: ignore[arg-type]

    def close(self, check_clean_stop: bool) -> None:
        errors = []
        for broker in self.brokers:
            if broker.is_running():
                if check_clean_stop:
                    try:
                        broker.stop()
                    except AssertionError as e:
                        errors.append(str(e))
                broker.close()
        for path in self.dirs:
            shutil.rmtree(path, ignore_errors=True)
        if errors:
            raise AssertionError("\n".join(errors))


# ---------------------------------------------------------------------------------------------
# confluent-kafka helpers


@dataclasses.dataclass
class Consumed:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] | None
    timestamp_type: int
    timestamp: int


def admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10_000})


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict[str, str] | None = None) -> None:
    from confluent_kafka.admin import NewTopic

    client = admin(bootstrap)  # keep the handle alive until the future resolves
    futures = client.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        request_timeout=30,
    )
    futures[name].result(timeout=30)
    wait_for_topic(bootstrap, name, partitions)


def wait_for_topic(bootstrap: str, name: str, partitions: int, timeout_s: float = 30.0) -> None:
    """Metadata shows the topic with every partition led by a broker (bounded poll)."""
    client = admin(bootstrap)
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        topic = client.list_topics(name, timeout=10).topics.get(name)
        if topic is not None and topic.error is None and len(topic.partitions) == partitions and all(
            p.leader >= 0 for p in topic.partitions.values()
        ):
            return
        seen = topic
        time.sleep(0.1)
    raise AssertionError(f"topic {name} not ready with {partitions} partitions within {timeout_s}s: {seen}")


def produce(bootstrap: str, topic: str, messages: list[dict], config: dict | None = None,
            timeout_s: float = 60.0) -> list:
    """Produces `messages` (kwargs of Producer.produce) and returns the delivered Message objects
    in delivery-report order. Any delivery error fails the test."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, **(config or {})})
    delivered: list = []
    errors: list = []

    def on_delivery(err, msg):
        (errors if err is not None else delivered).append(err if err is not None else msg)

    deadline = time.monotonic() + timeout_s
    for message in messages:
        while True:
            assert time.monotonic() < deadline, "producer queue stayed full"
            try:
                producer.produce(topic, on_delivery=on_delivery, **message)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(max(1.0, deadline - time.monotonic()))
    assert remaining == 0, f"{remaining} messages undelivered after {timeout_s}s"
    assert not errors, f"delivery errors: {errors[:5]}"
    assert len(delivered) == len(messages)
    return delivered


def consume(bootstrap: str, topic: str, partitions: list[int] | None = None, expected: int | None = None,
            timeout_s: float = 60.0, start_offset: int | None = None, config: dict | None = None) -> list[Consumed]:
    """Reads partitions from `start_offset` (default: beginning) with assign() — the broker has no
    consumer groups yet, so never subscribe(). Returns once every partition reported EOF and at
    least `expected` records arrived, or at the deadline with what arrived."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    if partitions is None:
        meta = admin(bootstrap).list_topics(topic, timeout=10).topics[topic]
        assert meta.error is None, f"metadata error for {topic}: {meta.error}"
        partitions = sorted(meta.partitions)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        # Required by the Python client; never used to join a group (assign() only, no commits).
        "group.id": f"fjord-e2e-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
        **(config or {}),
    })
    start = OFFSET_BEGINNING if start_offset is None else start_offset
    consumer.assign([TopicPartition(topic, p, start) for p in partitions])
    records: list[Consumed] = []
    at_eof: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(msg.partition())
                    if at_eof == set(partitions) and (expected is None or len(records) >= expected):
                        break
                    continue
                raise AssertionError(f"consumer error: {msg.error()}")
            at_eof.discard(msg.partition())
            ts_type, ts = msg.timestamp()
            records.append(Consumed(msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers(), ts_type, ts))
    finally:
        consumer.close()
    return records


# ---------------------------------------------------------------------------------------------
# Group coordinator helpers (confluent-kafka's admin client)

COORDINATOR_LOAD_WAIT_MAX_S = 30.0


def wait_until(condition, what: str, timeout_s: float):
    """Polls `condition` every 0.1 s until it returns something true, and returns that; fails the
    test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def retry_loading(call):
    """Retries `call` (bounded) while the coordinator answers COORDINATOR_LOAD_IN_PROGRESS, which
    Kafka also answers while it replays __consumer_offsets (after a restart here) and Java
    clients retry; librdkafka's admin calls hand it to the caller."""
    from confluent_kafka import KafkaError, KafkaException

    deadline = time.monotonic() + COORDINATOR_LOAD_WAIT_MAX_S
    while True:
        try:
            return call()
        except KafkaException as e:
            if e.args[0].code() != KafkaError.COORDINATOR_LOAD_IN_PROGRESS or time.monotonic() >= deadline:
                raise
        time.sleep(0.2)


def committed_offsets(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets as OffsetFetch answers without require_stable (pending
    transactional offsets are not waited for: the last committed value is returned)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    client = admin(bootstrap)  # alive until the future resolves
    result = retry_loading(lambda: client.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=15)[group].result(timeout=30))
    out = {}
    for tp in result.topic_partitions:
        assert tp.error is None, f"offset fetch error for {tp}: {tp.error}"
        if tp.offset >= 0:
            out[(tp.topic, tp.partition)] = tp.offset
    return out


def describe_group(bootstrap: str, group: str):
    client = admin(bootstrap)
    return retry_loading(lambda: client.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=30))
