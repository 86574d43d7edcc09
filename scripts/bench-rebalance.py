#!/usr/bin/env python3
"""Rebalance time for 3 members, classic protocol (cooperative-sticky) against KIP-848
(group.protocol=consumer), 5 runs each, medians: join (3 new members subscribe until the 6
partitions are split among them) and leave (one member closes until the other two cover all 6).

    .venv/bin/python scripts/bench-rebalance.py 127.0.0.1:9092

against a broker started with --group-initial-rebalance-delay-ms 0 and
--group-consumer-heartbeat-interval-ms 500 (the classic members heartbeat every 500 ms too), so
the figures compare the protocols, not their default timers."""
import sys, time, statistics
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic
b = sys.argv[1]
a = AdminClient({"bootstrap.servers": b})
def run(protocol, i):
    topic = f"rb-{protocol}-{i}-{time.time_ns()}"
    a.create_topics([NewTopic(topic, 6, 1)])[topic].result()
    group = "g-" + topic
    conf = {"bootstrap.servers": b, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    if protocol == "consumer":
        conf["group.protocol"] = "consumer"
    else:
        conf.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                     "partition.assignment.strategy": "cooperative-sticky"})
    cs = [Consumer(conf) for _ in range(3)]
    t0 = time.monotonic()
    for c in cs: c.subscribe([topic])
    def split(live):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for c in live: c.poll(0.01)
            parts = [{tp.partition for tp in c.assignment()} for c in live]
            if all(parts) and sum(map(len, parts)) == 6 and set().union(*parts) == set(range(6)):
                return time.monotonic()
        raise SystemExit("no split")
    join = split(cs) - t0
    t1 = time.monotonic()
    cs[2].close()
    leave = split(cs[:2]) - t1
    for c in cs[:2]: c.close()
    return join, leave
for protocol in ["classic", "consumer"]:
    results = [run(protocol, i) for i in range(5)]
    j = statistics.median(r[0] for r in results); l = statistics.median(r[1] for r in results)
    print(f"{protocol}: join of 3 members p50 {j*1000:.0f} ms, one leaves p50 {l*1000:.0f} ms  (runs: {[(round(x*1000), round(y*1000)) for x, y in results]})")
