"""Classic consumer groups end to end (Kafka's group coordinator protocol, KIP-62/KIP-345/KIP-394
among others): real confluent-kafka and kafka-python consumers join, share and hand over
partitions, commit offsets that survive SIGTERM and SIGKILL of the broker, static members rejoin
without a rebalance, the admin APIs list, describe and delete groups and offsets, and malformed or
stale group requests are answered as Kafka answers them.

The rule the hand-over tests hold every consumer to: the first record a consumer sees on a
partition it was just assigned is at the group's committed offset for that partition (the log
start when nothing was committed), read in the assignment callback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import (OFFSET_INVALID, Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions,
                             ConsumerGroupType, KafkaError,
                             KafkaException, TopicPartition)

import fjordtest
import kafka_wire
from kafka_wire import Reader, Writer

SESSION_TIMEOUT_MS = 3_000
GROUP_ARGS = [
    "--group-initial-rebalance-delay-ms", "0",
    "--group-min-session-timeout-ms", "1000",
    "--offsets-topic-num-partitions", "4",
    # KIP-848 groups: the session timeout is the broker's (clients may not set it).
    "--group-consumer-session-timeout-ms", str(SESSION_TIMEOUT_MS),
    "--group-consumer-heartbeat-interval-ms", "500",
]
# Both rebalance protocols a Kafka 4 client can pick: classic (JoinGroup/SyncGroup, the client
# assigns) and consumer (KIP-848 ConsumerGroupHeartbeat, the broker assigns).
PROTOCOLS = ["classic", "consumer"]
WAIT_MAX_S = 60.0
DESCRIBE_INTERVAL_S = 0.3

# Kafka error codes (org.apache.kafka.common.protocol.Errors).
ILLEGAL_GENERATION = 22
INVALID_GROUP_ID = 24
UNKNOWN_MEMBER_ID = 25
NON_EMPTY_GROUP = 68
GROUP_SUBSCRIBED_TO_TOPIC = 86

JOIN_GROUP = 11
SYNC_GROUP = 14
LEAVE_GROUP = 13
DESCRIBE_GROUPS = 15
OFFSET_COMMIT = 8
OFFSET_DELETE = 47


@pytest.fixture(scope="module")
def group_broker(module_broker_factory) -> fjordtest.Broker:
    return module_broker_factory.start(GROUP_ARGS)


def _group_name(prefix: str) -> str:
    return kafka_wire.unique_name(f"group-{prefix}")


def _consumer_config(bootstrap: str, group: str, protocol: str = "classic", **extra) -> dict:
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
    }
    if protocol == "classic":
        config.update({"session.timeout.ms": SESSION_TIMEOUT_MS, "heartbeat.interval.ms": 500})
    else:
        config["group.protocol"] = protocol
    config.update(extra)
    return config


def _expected_start(committed: int) -> int:
    # Nothing committed: auto.offset.reset=earliest starts at the log start (0, nothing deleted here).
    return committed if committed >= 0 else 0


def _produce_spread(bootstrap: str, topic: str, partitions: int, count: int, tag: str) -> set[tuple[int, int]]:
    messages = [{"key": f"{tag}-{i}".encode(), "value": f"{tag}-value-{i}".encode(), "partition": i % partitions}
                for i in range(count)]
    return {(m.partition(), m.offset()) for m in fjordtest.produce(bootstrap, topic, messages)}





def _member_assignments(description) -> dict[str, set[tuple[str, int]]]:
    return {m.member_id: {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions}
            for m in description.members}


def _high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "fjord-e2e-watermarks"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        consumer.close()


class TrackedConsumer:
    """A subscribed confluent consumer polled from the test's thread. Commits synchronously what
    each consume() returned; records every (partition, offset) it processed and, per assignment,
    the committed offset at assignment time next to the first offset it then read."""

    def __init__(self, bootstrap: str, group: str, topic: str, protocol: str = "classic", **extra) -> None:
        self.topic = topic
        self.consumer = Consumer(_consumer_config(bootstrap, group, protocol, **extra))
        self.consumed: list[tuple[int, int]] = []
        self.takeovers: list[tuple[int, int, int]] = []  # (partition, committed at assignment, first offset read)
        self.pending_first: dict[int, int] = {}
        self.assign_count = 0
        self.revoke_count = 0
        self.commit_failures: list[KafkaError] = []
        self.closed = False
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, consumer, partitions) -> None:
        self.assign_count += 1
        if not partitions:
            return
        for tp in consumer.committed(partitions, timeout=15):
            assert tp.error is None, f"committed() error for {tp}: {tp.error}"
            self.pending_first[tp.partition] = tp.offset

    def _on_revoke(self, consumer, partitions) -> None:
        self.revoke_count += 1
        for tp in partitions:
            self.pending_first.pop(tp.partition, None)

    def step(self) -> None:
        if self.closed:
            return
        next_offsets: dict[int, int] = {}
        for msg in self.consumer.consume(num_messages=200, timeout=0.05):
            if msg.error():
                raise AssertionError(f"consumer error: {msg.error()}")
            partition, offset = msg.partition(), msg.offset()
            if partition in self.pending_first:
                self.takeovers.append((partition, self.pending_first.pop(partition), offset))
            self.consumed.append((partition, offset))
            next_offsets[partition] = offset + 1
        if next_offsets:
            try:
                self.consumer.commit(offsets=[TopicPartition(self.topic, p, o) for p, o in next_offsets.items()],
                                     asynchronous=False)
            except KafkaException as e:  # a rebalance in progress: the next owner reads these again
                self.commit_failures.append(e.args[0])

    def assignment(self) -> set[tuple[str, int]]:
        return {(tp.topic, tp.partition) for tp in self.consumer.assignment()}

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.consumer.close()


# The consumer that gets SIGKILLed: same rules as TrackedConsumer, reporting to a JSON-lines file
# (consumed offsets are written before they are committed, so the file holds at least what the
# group committed for it). It exits by itself after RUN_MAX_S in case nobody kills it.
_KILLED_CONSUMER = r"""
import json, sys, time
from confluent_kafka import Consumer, KafkaException, TopicPartition
config, topic, out_path = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
RUN_MAX_S = 120
out = open(out_path, "a", buffering=1)
pending = {}
def emit(**kw):
    out.write(json.dumps(kw) + "\n")
def on_assign(consumer, partitions):
    committed = consumer.committed(partitions, timeout=15) if partitions else []
    for tp in committed:
        pending[tp.partition] = tp.offset
    emit(assign=[tp.partition for tp in partitions], member=consumer.memberid())
def on_revoke(consumer, partitions):
    for tp in partitions:
        pending.pop(tp.partition, None)
    emit(revoke=[tp.partition for tp in partitions])
consumer = Consumer(config)
consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
deadline = time.monotonic() + RUN_MAX_S
while time.monotonic() < deadline:
    nxt = {}
    consumed = []
    for msg in consumer.consume(num_messages=200, timeout=0.1):
        if msg.error():
            emit(error=str(msg.error()))
            continue
        p, o = msg.partition(), msg.offset()
        if p in pending:
            emit(takeover=[p, pending.pop(p), o])
        consumed.append([p, o])
        nxt[p] = o + 1
    if consumed:
        emit(consumed=consumed)
        try:
            consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in nxt.items()], asynchronous=False)
        except KafkaException as e:
            emit(commit_failed=str(e))
consumer.close()
"""


class KilledConsumer:
    def __init__(self, config: dict, topic: str, out_path: Path) -> None:
        self.out_path = out_path
        out_path.touch()
        with open(out_path.with_suffix(".stderr"), "wb") as stderr:
            self.proc = subprocess.Popen(
                fjordtest._die_with_parent_prefix() + [sys.executable, "-c", _KILLED_CONSUMER, json.dumps(config),
                                                       topic, str(out_path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            )

    def events(self) -> list[dict]:
        lines = self.out_path.read_text().splitlines()
        # The last line may be half written when the process is killed.
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return out

    def member_id(self) -> str | None:
        members = [e["member"] for e in self.events() if "member" in e]
        return members[-1] if members else None

    def consumed(self) -> list[tuple[int, int]]:
        return [(p, o) for e in self.events() if "consumed" in e for p, o in e["consumed"]]

    def takeovers(self) -> list[tuple[int, int, int]]:
        return [tuple(e["takeover"]) for e in self.events() if "takeover" in e]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def _wait_for_split(bootstrap: str, group: str, topic: str, partitions: int, live: list[TrackedConsumer],
                    members: int, killed: KilledConsumer | None = None) -> dict[str, set[tuple[str, int]]]:
    """Polls `live` until the group is Stable with `members` members whose assignments are
    non-empty, disjoint and cover every partition, and each live consumer's own assignment() is
    what the coordinator gave its member id. Returns member id -> assignment."""
    everything = {(topic, p) for p in range(partitions)}
    deadline = time.monotonic() + WAIT_MAX_S
    next_describe = 0.0
    seen = None
    while time.monotonic() < deadline:
        for consumer in live:
            consumer.step()
        if time.monotonic() < next_describe:
            continue
        next_describe = time.monotonic() + DESCRIBE_INTERVAL_S
        description = fjordtest.describe_group(bootstrap, group)
        assignments = _member_assignments(description)
        seen = (description.state, assignments, [c.assignment() for c in live])
        if description.state != ConsumerGroupState.STABLE or len(assignments) != members:
            continue
        parts = list(assignments.values())
        if any(not a for a in parts) or set().union(*parts) != everything or sum(map(len, parts)) != partitions:
            continue
        if any(assignments.get(c.consumer.memberid()) != c.assignment() for c in live):
            continue
        if killed is not None and killed.member_id() not in assignments:
            continue
        return assignments
    raise AssertionError(f"group {group} did not settle on {members} members within {WAIT_MAX_S}s; last seen {seen}")


def _wait_caught_up(bootstrap: str, group: str, topic: str, partitions: int, live: list[TrackedConsumer],
                    produced: set[tuple[int, int]], killed: KilledConsumer | None = None) -> None:
    """Polls `live` until every produced record was consumed by someone and the group's committed
    offsets reached the high watermark of every partition."""
    deadline = time.monotonic() + WAIT_MAX_S
    next_check = 0.0
    missing: set = set()
    committed: dict = {}
    high = _high_watermarks(bootstrap, topic, partitions)
    while time.monotonic() < deadline:
        for consumer in live:
            consumer.step()
        if time.monotonic() < next_check:
            continue
        next_check = time.monotonic() + DESCRIBE_INTERVAL_S
        consumed = {rec for c in live for rec in c.consumed}
        if killed is not None:
            consumed |= set(killed.consumed())
        missing = produced - consumed
        committed = fjordtest.committed_offsets(bootstrap, group)
        if not missing and all(committed.get((topic, p)) == high[p] for p in range(partitions)):
            return
    raise AssertionError(f"not caught up within {WAIT_MAX_S}s: {len(missing)} records never consumed "
                         f"(e.g. {sorted(missing)[:5]}), committed {committed}, high watermarks {high}")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_three_consumers_share_partitions_and_hand_over_at_committed_offsets(group_broker, topic, tmp_path, protocol):
    bootstrap, partitions = group_broker.bootstrap, 6
    group = _group_name(f"handover-{protocol}")
    fjordtest.create_topic(bootstrap, topic, partitions=partitions)
    produced = _produce_spread(bootstrap, topic, partitions, 600, "first")

    killed = KilledConsumer(_consumer_config(bootstrap, group, protocol, **{"client.id": "killed"}), topic,
                            tmp_path / "killed.jsonl")
    a = TrackedConsumer(bootstrap, group, topic, protocol, **{"client.id": "a"})
    b = TrackedConsumer(bootstrap, group, topic, protocol, **{"client.id": "b"})
    try:
        # 1. Three members, each partition assigned exactly once.
        _wait_for_split(bootstrap, group, topic, partitions, [a, b], members=3, killed=killed)
        admin = fjordtest.admin(bootstrap)  # alive until the future resolves
        listing = admin.list_consumer_groups(request_timeout=15).result(timeout=30)
        assert not listing.errors, listing.errors
        listed = {g.group_id: g for g in listing.valid}
        expected_type = ConsumerGroupType.CONSUMER if protocol == "consumer" else ConsumerGroupType.CLASSIC
        assert listed[group].type == expected_type and listed[group].state == ConsumerGroupState.STABLE, listed[group]
        produced |= _produce_spread(bootstrap, topic, partitions, 300, "three")
        _wait_caught_up(bootstrap, group, topic, partitions, [a, b], produced, killed)

        # 2. b leaves (LeaveGroup on close): the other two cover all six.
        b.close()
        _wait_for_split(bootstrap, group, topic, partitions, [a], members=2, killed=killed)
        produced |= _produce_spread(bootstrap, topic, partitions, 300, "two")
        _wait_caught_up(bootstrap, group, topic, partitions, [a, b], produced, killed)

        # 3. The subprocess dies without leaving: after its session timeout a owns everything.
        killed.kill()
        assignments = _wait_for_split(bootstrap, group, topic, partitions, [a], members=1)
        assert assignments == {a.consumer.memberid(): {(topic, p) for p in range(partitions)}}
        produced |= _produce_spread(bootstrap, topic, partitions, 300, "one")
        _wait_caught_up(bootstrap, group, topic, partitions, [a, b], produced, killed)
    finally:
        killed.kill()
        a.close()
        b.close()

    takeovers = a.takeovers + b.takeovers + killed.takeovers()
    wrong = [(p, committed, first) for p, committed, first in takeovers if first != _expected_start(committed)]
    assert not wrong, f"(partition, committed offset at assignment, first offset read) off the committed offset: {wrong}"
    # Every partition was read from the start once, and a took over every partition that b and the
    # killed consumer had owned, so there were more hand-overs than partitions.
    assert len(takeovers) > partitions, takeovers
    assert {p for p, _, _ in a.takeovers} == set(range(partitions))
    consumed = set(a.consumed) | set(b.consumed) | set(killed.consumed())
    assert produced <= consumed, sorted(produced - consumed)[:10]
    assert fjordtest.committed_offsets(bootstrap, group) == {(topic, p): o for p, o in
                                            _high_watermarks(bootstrap, topic, partitions).items()}


def _commit_explicit(bootstrap: str, group: str, topic: str, offsets: dict[int, int], protocol: str = "classic") -> None:
    """A subscribed member commits `offsets` (generation or member epoch, and member id, checked by
    the coordinator)."""
    consumer = Consumer(_consumer_config(bootstrap, group, protocol))
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + WAIT_MAX_S
        while len(consumer.assignment()) < len(offsets) and time.monotonic() < deadline:
            consumer.poll(0.1)
        assert len(consumer.assignment()) == len(offsets), consumer.assignment()
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


def _first_offsets(bootstrap: str, group: str, topic: str, partitions: int, protocol: str = "classic") -> dict[int, int]:
    """A new member of `group` reads until it saw a record on every partition; returns the first
    offset per partition. Commits nothing."""
    consumer = Consumer(_consumer_config(bootstrap, group, protocol))
    first: dict[int, int] = {}
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + WAIT_MAX_S
        while len(first) < partitions and time.monotonic() < deadline:
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            assert not msg.error(), msg.error()
            first.setdefault(msg.partition(), msg.offset())
    finally:
        consumer.close()
    return first


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_committed_offsets_survive_sigterm_restart_and_sigkill(broker_factory, topic, protocol):
    broker = broker_factory.start(GROUP_ARGS)
    group = _group_name(f"durable-{protocol}")
    fjordtest.create_topic(broker.bootstrap, topic, partitions=3)
    _produce_spread(broker.bootstrap, topic, 3, 90, "a")  # 30 per partition

    offsets = {0: 7, 1: 15, 2: 29}
    _commit_explicit(broker.bootstrap, group, topic, offsets, protocol)
    expected = {(topic, p): o for p, o in offsets.items()}
    assert fjordtest.committed_offsets(broker.bootstrap, group) == expected

    broker.restart()
    assert fjordtest.committed_offsets(broker.bootstrap, group) == expected
    assert _first_offsets(broker.bootstrap, group, topic, 3, protocol) == offsets

    # Acknowledged commit, then SIGKILL right away: acks=all on __consumer_offsets before the reply.
    offsets = {0: 20, 1: 25, 2: 30}
    _commit_explicit(broker.bootstrap, group, topic, offsets, protocol)
    broker.kill()
    broker.start()
    expected = {(topic, p): o for p, o in offsets.items()}
    assert fjordtest.committed_offsets(broker.bootstrap, group) == expected
    _produce_spread(broker.bootstrap, topic, 3, 3, "b")  # offset 30 on every partition
    assert _first_offsets(broker.bootstrap, group, topic, 3, protocol) == offsets


def test_kafka_python_consumer_commits_and_a_second_one_resumes(group_broker, topic):
    from kafka import KafkaConsumer

    bootstrap = group_broker.bootstrap
    group = _group_name("kafka-python")
    fjordtest.create_topic(bootstrap, topic, partitions=3)
    first = _produce_spread(bootstrap, topic, 3, 150, "first")

    def new_consumer() -> KafkaConsumer:
        return KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=100, session_timeout_ms=10_000,
                             heartbeat_interval_ms=1_000, request_timeout_ms=35_000, client_id="fjord-e2e-kp")

    def read(consumer: KafkaConsumer, expected: set[tuple[int, int]]) -> list[tuple[int, int]]:
        got: list[tuple[int, int]] = []
        deadline = time.monotonic() + WAIT_MAX_S
        while not expected <= set(got) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                got.extend((r.partition, r.offset) for r in records)
        return got

    consumer = new_consumer()
    try:
        got = read(consumer, first)
        assert set(got) == first and len(got) == len(first)
        consumer.commit()
    finally:
        consumer.close()
    assert fjordtest.committed_offsets(bootstrap, group) == {(topic, p): 50 for p in range(3)}

    second = _produce_spread(bootstrap, topic, 3, 60, "second")
    consumer = new_consumer()
    try:
        got = read(consumer, second)
    finally:
        consumer.close()
    assert sorted(got) == sorted(second), "the second consumer did not resume exactly at the committed offsets"
    assert min(o for _, o in got) == 50


def _wait_assignment(consumers: list[TrackedConsumer], predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_MAX_S
    while time.monotonic() < deadline:
        for consumer in consumers:
            consumer.step()
        if predicate():
            return
    raise AssertionError(f"timed out after {WAIT_MAX_S}s waiting for {what}: {[c.assignment() for c in consumers]}")


def test_static_member_rejoins_without_a_rebalance(group_broker, topic):
    """KIP-345: a static member (group.instance.id) that comes back within its session timeout
    takes its old assignment back and the other members see no rebalance. librdkafka sends no
    LeaveGroup when a static member closes, so close() is enough to simulate a restart."""
    bootstrap, partitions = group_broker.bootstrap, 4
    group = _group_name("static")
    fjordtest.create_topic(bootstrap, topic, partitions=partitions)
    _produce_spread(bootstrap, topic, partitions, 40, "static")
    static_config = {"group.instance.id": "static-1", "session.timeout.ms": 10_000, "client.id": "static"}

    static = TrackedConsumer(bootstrap, group, topic, **static_config)
    dynamic = TrackedConsumer(bootstrap, group, topic, **{"client.id": "dynamic"})
    rejoined = None
    try:
        before = _wait_for_split(bootstrap, group, topic, partitions, [static, dynamic], members=2)
        static_member, static_assignment = static.consumer.memberid(), static.assignment()
        dynamic_assigns, dynamic_revokes = dynamic.assign_count, dynamic.revoke_count
        static.close()

        rejoined = TrackedConsumer(bootstrap, group, topic, **static_config)
        _wait_assignment([dynamic, rejoined], lambda: bool(rejoined.assignment()), "the static member's assignment")
        after = _wait_for_split(bootstrap, group, topic, partitions, [dynamic, rejoined], members=2)

        assert rejoined.assignment() == static_assignment
        assert dynamic.assign_count == dynamic_assigns and dynamic.revoke_count == dynamic_revokes, (
            "the dynamic member went through a rebalance when the static member rejoined")
        # Kafka gives the returning static member a new member id (fencing the old one); the rest stays.
        assert rejoined.consumer.memberid() != static_member
        assert after[dynamic.consumer.memberid()] == before[dynamic.consumer.memberid()]
        description = fjordtest.describe_group(bootstrap, group)
        instances = {m.member_id: m.group_instance_id for m in description.members}
        assert instances[rejoined.consumer.memberid()] == "static-1"
        assert instances[dynamic.consumer.memberid()] is None
    finally:
        static.close()
        dynamic.close()
        if rejoined is not None:
            rejoined.close()


def _offset_delete_v0(conn: kafka_wire.KafkaConnection, group: str, topic: str) -> tuple[int, int]:
    """OffsetDelete of partition 0 of `topic`; returns (top-level error, partition error)."""
    body = Writer().string(group).array_len(1).string(topic).array_len(1).int32(0).getvalue()
    r = conn.roundtrip(OFFSET_DELETE, 0, body, flexible=False)
    error_code = r.int16()
    r.int32()  # throttle
    assert r.array_len() == 1 and r.string() == topic and r.array_len() == 1 and r.int32() == 0
    return error_code, r.int16()


def _list_groups(client, **kwargs):
    """ListGroups, retried (bounded) while the broker answers COORDINATOR_LOAD_IN_PROGRESS: Kafka
    clients retry it, librdkafka's admin does not. Why Fjord answers it at all on an idle broker:
    see test_list_groups_right_after_the_offsets_topic_was_created."""
    deadline = time.monotonic() + WAIT_MAX_S
    while True:
        listed = client.list_consumer_groups(request_timeout=15, **kwargs).result(timeout=30)
        loading = [e for e in listed.errors if e.code() == KafkaError.COORDINATOR_LOAD_IN_PROGRESS]
        if not loading or time.monotonic() >= deadline:
            assert not listed.errors, listed.errors
            return listed
        time.sleep(0.2)


# Regression: partitions of a __consumer_offsets created at runtime used to load lazily, so the
# first ListGroups answered COORDINATOR_LOAD_IN_PROGRESS; a request now waits for its partition's load.
def test_list_groups_right_after_the_offsets_topic_was_created(broker_factory, topic):
    broker = broker_factory.start(GROUP_ARGS)
    group = _group_name("first-list")
    fjordtest.create_topic(broker.bootstrap, topic, partitions=1)
    member = TrackedConsumer(broker.bootstrap, group, topic)
    try:
        _wait_for_split(broker.bootstrap, group, topic, 1, [member], members=1)
        admin = fjordtest.admin(broker.bootstrap)  # alive until the future resolves
        listed = admin.list_consumer_groups(request_timeout=15).result(timeout=30)
        assert not listed.errors, listed.errors
        assert {g.group_id: g.state for g in listed.valid} == {group: ConsumerGroupState.STABLE}
    finally:
        member.close()


def test_admin_lists_describes_and_deletes_groups_and_offsets(group_broker, topic):
    bootstrap = group_broker.bootstrap
    group = _group_name("admin")
    other_topic = topic + "-other"
    fjordtest.create_topic(bootstrap, topic, partitions=2)
    fjordtest.create_topic(bootstrap, other_topic, partitions=1)
    _produce_spread(bootstrap, topic, 2, 10, "admin")
    client = fjordtest.admin(bootstrap)

    member = TrackedConsumer(bootstrap, group, topic, **{"client.id": "admin-member"})
    try:
        _wait_for_split(bootstrap, group, topic, 2, [member], members=1)
        # Overrides what the member committed while it was polled; no polling from here on.
        member.consumer.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 4),
                                        TopicPartition(other_topic, 0, 1)],
                               asynchronous=False)

        listed = _list_groups(client)
        states = {g.group_id: g.state for g in listed.valid}
        assert states.get(group) == ConsumerGroupState.STABLE, states
        stable = _list_groups(client, states={ConsumerGroupState.STABLE})
        assert group in {g.group_id for g in stable.valid}
        empty = _list_groups(client, states={ConsumerGroupState.EMPTY})
        assert group not in {g.group_id for g in empty.valid}

        description = fjordtest.describe_group(bootstrap, group)
        assert description.state == ConsumerGroupState.STABLE and not description.is_simple_consumer_group
        assert description.partition_assignor in ("range", "roundrobin")
        [described] = description.members
        assert described.member_id == member.consumer.memberid() and described.client_id == "admin-member"
        assert described.host == "/127.0.0.1", described.host  # the peer address, as Kafka shows it
        assert {(tp.topic, tp.partition) for tp in described.assignment.topic_partitions} == {(topic, 0), (topic, 1)}

        with pytest.raises(KafkaException) as refused:
            client.delete_consumer_groups([group], request_timeout=15)[group].result(timeout=30)
        assert refused.value.args[0].code() == KafkaError.NON_EMPTY_GROUP

        # OffsetDelete (neither client has it: raw v0): allowed for a topic the group does not
        # subscribe to, refused per partition with GROUP_SUBSCRIBED_TO_TOPIC for one it does.
        with group_broker.connect() as conn:
            assert _offset_delete_v0(conn, group, other_topic) == (kafka_wire.NONE, kafka_wire.NONE)
            assert _offset_delete_v0(conn, group, topic) == (kafka_wire.NONE, GROUP_SUBSCRIBED_TO_TOPIC)
        assert fjordtest.committed_offsets(bootstrap, group) == {(topic, 0): 3, (topic, 1): 4}
    finally:
        member.close()

    description = fjordtest.describe_group(bootstrap, group)
    assert description.state == ConsumerGroupState.EMPTY and not description.members
    client.delete_consumer_groups([group], request_timeout=15)[group].result(timeout=30)
    listed = _list_groups(client)
    assert group not in {g.group_id for g in listed.valid}
    assert fjordtest.committed_offsets(bootstrap, group) == {}


# ---------------------------------------------------------------------------------------------
# Raw protocol: what the clients never send.


def _join_v0(conn: kafka_wire.KafkaConnection, group: str, metadata: bytes) -> tuple[int, int, str, str, list]:
    body = (Writer().string(group).int32(10_000).string("").string("consumer")
            .array_len(1).string("range").bytes_(metadata).getvalue())
    r = conn.roundtrip(JOIN_GROUP, 0, body, flexible=False)
    error_code, generation, _protocol, leader, member_id = r.int16(), r.int32(), r.string(), r.string(), r.string()
    members = [(r.string(), r.bytes_()) for _ in range(max(0, r.array_len()))]
    return error_code, generation, leader, member_id, members


def _offset_commit_v2(conn: kafka_wire.KafkaConnection, group: str, generation: int, member_id: str,
                      topic: str) -> int:
    body = (Writer().string(group).int32(generation).string(member_id).int64(-1)
            .array_len(1).string(topic).array_len(1).int32(0).int64(1).string("").getvalue())
    r = conn.roundtrip(OFFSET_COMMIT, 2, body, flexible=False)
    assert r.array_len() == 1 and r.string() == topic and r.array_len() == 1
    assert r.int32() == 0
    return r.int16()


def _assert_healthy(broker: fjordtest.Broker, topic: str) -> None:
    assert broker.is_running(), f"broker died; {broker.describe()}"
    with broker.connect() as conn:
        result = conn.produce(topic, 0, kafka_wire.build_record_batch([b"still-here"]))
    assert result.error_code == kafka_wire.NONE, result


def test_garbage_metadata_and_stale_generation_commits_are_answered(group_broker, topic):
    bootstrap = group_broker.bootstrap
    group = _group_name("raw")
    fjordtest.create_topic(bootstrap, topic, partitions=1)
    garbage_metadata, garbage_assignment = b"\xff\xfe not a subscription \x00", b"\x7f not an assignment"

    with group_broker.connect(timeout_s=20) as conn:
        # The coordinator stores member metadata and assignments verbatim: it never parses them
        # to run a JoinGroup/SyncGroup round.
        error_code, generation, leader, member_id, members = _join_v0(conn, group, garbage_metadata)
        assert error_code == kafka_wire.NONE
        assert leader == member_id and members == [(member_id, garbage_metadata)]
        body = (Writer().string(group).int32(generation).string(member_id)
                .array_len(1).string(member_id).bytes_(garbage_assignment).getvalue())
        r = conn.roundtrip(SYNC_GROUP, 0, body, flexible=False)
        assert (r.int16(), r.bytes_()) == (kafka_wire.NONE, garbage_assignment)

        r = conn.roundtrip(DESCRIBE_GROUPS, 0, Writer().array_len(1).string(group).getvalue(), flexible=False)
        assert r.array_len() == 1
        assert (r.int16(), r.string(), r.string(), r.string(), r.string()) == (
            kafka_wire.NONE, group, "Stable", "consumer", "range")
        assert r.array_len() == 1
        described = (r.string(), r.string(), r.string(), r.bytes_(), r.bytes_())
        assert described[0] == member_id and described[3:] == (garbage_metadata, garbage_assignment)

        # OffsetCommit v2 checks the member and its generation (Kafka's ClassicGroup.validateOffsetCommit).
        assert _offset_commit_v2(conn, group, generation, member_id, topic) == kafka_wire.NONE
        assert _offset_commit_v2(conn, group, generation + 1, member_id, topic) == ILLEGAL_GENERATION
        assert _offset_commit_v2(conn, group, generation - 1, member_id, topic) == ILLEGAL_GENERATION
        assert _offset_commit_v2(conn, group, generation, "made-up-member", topic) == UNKNOWN_MEMBER_ID
        # A group that does not exist, with a generation: ILLEGAL_GENERATION below v9 (Kafka keeps
        # GROUP_ID_NOT_FOUND for v9+).
        assert _offset_commit_v2(conn, _group_name("nobody"), 5, "made-up-member", topic) == ILLEGAL_GENERATION

        # A group id longer than any int16-length string (only a flexible version can carry it):
        # Fjord refuses it with INVALID_GROUP_ID because its __consumer_offsets key could not hold it.
        w = Writer(flexible=True)
        w.string("g" * 40_000).int32(-1).string("").string(None)
        w.array_len(1).string(topic).array_len(1).int32(0).int64(1).int32(-1).string("")
        w.tagged_fields().tagged_fields().tagged_fields()
        r = conn.roundtrip(OFFSET_COMMIT, 8, w.getvalue(), flexible=True)
        r.int32()  # throttle
        assert r.array_len() == 1 and r.string() == topic and r.array_len() == 1
        assert (r.int32(), r.int16()) == (0, INVALID_GROUP_ID)

        body = Writer().string(group).string(member_id).getvalue()
        r = conn.roundtrip(LEAVE_GROUP, 0, body, flexible=False)
        assert r.int16() == kafka_wire.NONE

    assert fjordtest.committed_offsets(bootstrap, group) == {(topic, 0): 1}
    _assert_healthy(group_broker, topic)


CONSUMER_GROUP_HEARTBEAT = 68
COORDINATOR_LOAD_IN_PROGRESS = 14
STALE_MEMBER_EPOCH = 113


def _consumer_heartbeat_v0(conn: kafka_wire.KafkaConnection, group: str, member_id: str, epoch: int,
                           topic: str) -> tuple[int, str | None, int]:
    """ConsumerGroupHeartbeat v0 (KIP-848) subscribing to `topic`; returns (error, member id, epoch)."""
    body = (Writer(flexible=True).string(group).string(member_id).int32(epoch).string(None).string(None)
            .int32(30_000).array_len(1).string(topic).string(None).array_len(0).tagged_fields().getvalue())
    r = conn.roundtrip(CONSUMER_GROUP_HEARTBEAT, 0, body, flexible=True)
    r.int32()  # throttle
    error = r.int16()
    r.string()  # error message
    return error, r.string(), r.int32()


def _offset_commit_v9(conn: kafka_wire.KafkaConnection, group: str, epoch: int, member_id: str, topic: str) -> int:
    body = (Writer(flexible=True).string(group).int32(epoch).string(member_id).string(None)
            .array_len(1).string(topic).array_len(1).int32(0).int64(1).int32(-1).string("")
            .tagged_fields().tagged_fields().tagged_fields().getvalue())
    r = conn.roundtrip(OFFSET_COMMIT, 9, body, flexible=True)
    r.int32()  # throttle
    assert r.array_len() == 1 and r.string() == topic and r.array_len() == 1
    assert r.int32() == 0
    return r.int16()


def test_kip848_commits_are_fenced_by_member_epoch(group_broker, topic):
    """OffsetCommit v9 into a KIP-848 group carries the member epoch: a stale epoch gets
    STALE_MEMBER_EPOCH, an unknown member UNKNOWN_MEMBER_ID, and neither changes the offsets."""
    bootstrap = group_broker.bootstrap
    group = _group_name("kip848-raw")
    fjordtest.create_topic(bootstrap, topic, partitions=1)
    with group_broker.connect(timeout_s=20) as conn:
        deadline = time.monotonic() + WAIT_MAX_S
        while True:
            error, member_id, epoch = _consumer_heartbeat_v0(conn, group, "", 0, topic)
            if error != COORDINATOR_LOAD_IN_PROGRESS or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        assert error == kafka_wire.NONE and member_id and epoch >= 1, (error, member_id, epoch)
        assert _offset_commit_v9(conn, group, epoch + 1, member_id, topic) == STALE_MEMBER_EPOCH
        assert _offset_commit_v9(conn, group, epoch, "made-up-member", topic) == UNKNOWN_MEMBER_ID
        assert fjordtest.committed_offsets(bootstrap, group) == {}
        assert _offset_commit_v9(conn, group, epoch, member_id, topic) == kafka_wire.NONE
        assert fjordtest.committed_offsets(bootstrap, group) == {(topic, 0): 1}
        # Leaving (epoch -1) empties the group; an admin-style commit (epoch -1, no member) is
        # then accepted, as Kafka accepts it for an empty consumer group.
        error, _, left_epoch = _consumer_heartbeat_v0(conn, group, member_id, -1, topic)
        assert (error, left_epoch) == (kafka_wire.NONE, -1)
        assert _offset_commit_v9(conn, group, -1, "", topic) == kafka_wire.NONE
    _assert_healthy(group_broker, topic)
