#!/usr/bin/env python3
"""Transaction figures for Fjord, one process, bounded in time and count:

  (a) transactional throughput: one confluent-kafka producer runs transactions of TXN_RECORDS
      records of RECORD_SIZE bytes (begin, produce, commit) for --txn-seconds; reports
      transactions/s, MB/s and commit_transaction() latency percentiles;
  (b) produce-ack latency of the idempotent producer against plain acks=all: the same producer
      settings except enable.idempotence, a fixed rate (--rate records/s of RECORD_SIZE bytes)
      for --latency-seconds per run after a warm-up, runs alternating plain / idempotent
      (--runs of each); latency is produce() to the delivery callback; reports the median over
      runs of p50 / p99 / p99.9 and the idempotent/plain ratio. librdkafka caps an idempotent
      producer at 5 requests in flight per connection (plain: max.in.flight 1000000), so the
      ratio compares the two client set-ups as applications get them, not only the broker's
      sequence checks.

    .venv/bin/python scripts/bench-txn.py              # starts its own broker (about 2.5 minutes)
    .venv/bin/python scripts/bench-txn.py --quick      # 5 s + 2 x 5 s runs: a smoke test
    .venv/bin/python scripts/bench-txn.py --bootstrap 127.0.0.1:9092   # an already running broker

Without --bootstrap it starts `fjord start` (FJORD_BIN or target/release/fjord) on a free loopback
port with a fresh data directory under target/e2e (the e2e harness's Broker class: O_DIRECT needs a
real filesystem), stops it with SIGTERM at the end and keeps its stderr log next to the results.
Prints a Markdown table and writes bench/results/txn-<UTC time>/{results.json,summary.md}.
Exits 1 when a part failed (its error is in the JSON and the table shows n/a).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))

import fjordtest  # noqa: E402  (the e2e harness: Broker, create_topic)
from confluent_kafka import KafkaException, Producer  # noqa: E402

RECORD_SIZE_BYTES = 1024
TXN_RECORDS = 100
# Hard caps whatever the options say: every loop below is bounded by count and by time.
TXN_COUNT_MAX = 1_000_000
RUN_SECONDS_MAX = 120.0
RUNS_MAX = 10
RATE_MAX = 100_000
FLUSH_TIMEOUT_S = 60.0
LATENCY_TICK_S = 0.001  # the paced producer wakes every millisecond (and serves callbacks then)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    assert sorted_values, "no samples"
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def summarize_ms(samples_s: list[float]) -> dict:
    values = sorted(s * 1000.0 for s in samples_s)
    return {
        "count": len(values),
        "p50_ms": percentile(values, 0.50),
        "p99_ms": percentile(values, 0.99),
        "p99_9_ms": percentile(values, 0.999),
        "max_ms": values[-1],
        "mean_ms": statistics.fmean(values),
    }


# -- (a) transactional throughput ---------------------------------------------------------------

def bench_transactions(bootstrap: str, topic: str, seconds: float, linger_ms: int) -> dict:
    payload = os.urandom(RECORD_SIZE_BYTES)
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": f"bench-txn-{uuid.uuid4().hex[:8]}",
        "linger.ms": linger_ms,
    })
    errors: list = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(str(err))

    producer.init_transactions(FLUSH_TIMEOUT_S)
    commit_latencies: list[float] = []
    transactions = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline and transactions < TXN_COUNT_MAX:
        producer.begin_transaction()
        for _ in range(TXN_RECORDS):
            while True:
                try:
                    producer.produce(topic, value=payload, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.01)
                    if time.perf_counter() > deadline + FLUSH_TIMEOUT_S:
                        raise RuntimeError("producer queue stayed full")
        commit_started = time.perf_counter()
        producer.commit_transaction(FLUSH_TIMEOUT_S)  # flushes the transaction's records first
        commit_latencies.append(time.perf_counter() - commit_started)
        transactions += 1
        if errors:
            raise RuntimeError(f"delivery errors: {errors[:3]}")
    elapsed = time.perf_counter() - started
    payload_bytes = transactions * TXN_RECORDS * RECORD_SIZE_BYTES
    return {
        "transactions": transactions,
        "records_per_transaction": TXN_RECORDS,
        "record_size_bytes": RECORD_SIZE_BYTES,
        "seconds": elapsed,
        "transactions_per_second": transactions / elapsed,
        "payload_mb_per_second": payload_bytes / elapsed / 1e6,
        "commit_latency": summarize_ms(commit_latencies),
    }


# -- (b) produce latency, idempotent vs plain acks=all ---------------------------------------------

def bench_latency_run(bootstrap: str, topic: str, idempotent: bool, rate: int, seconds: float, warmup_s: float,
                      linger_ms: int) -> dict:
    payload = os.urandom(RECORD_SIZE_BYTES)
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": linger_ms,
        "enable.idempotence": idempotent,
        # librdkafka caps an idempotent producer at 5 in flight; the plain one gets the same cap
        # so that the ratio is the broker's cost of idempotence, not a client setting.
        "max.in.flight.requests.per.connection": 5,
    })
    latencies: list[float] = []
    errors: list[str] = []
    measuring = [False]

    def make_callback(sent: float):
        def on_delivery(err, _msg):
            if err is not None:
                errors.append(str(err))
            elif measuring[0]:
                latencies.append(time.perf_counter() - sent)
        return on_delivery

    started = time.perf_counter()
    measure_from = started + warmup_s
    end = measure_from + seconds
    produced = 0
    dropped_ticks = 0  # BufferError: the client queue was full (the broker fell behind the rate)
    count_max = int(rate * (warmup_s + seconds)) + 1
    while produced < count_max:
        now = time.perf_counter()
        if now >= end:
            break
        measuring[0] = now >= measure_from
        due = min(count_max, int((now - started) * rate))
        while produced < due:
            try:
                producer.produce(topic, value=payload, on_delivery=make_callback(time.perf_counter()))
            except BufferError:
                dropped_ticks += 1
                break
            produced += 1
        producer.poll(max(0.0, LATENCY_TICK_S - (time.perf_counter() - now)))
    measuring[0] = True  # records produced in the window are still measured when acked later
    remaining = producer.flush(FLUSH_TIMEOUT_S)
    if remaining:
        raise RuntimeError(f"{remaining} records undelivered after {FLUSH_TIMEOUT_S}s")
    if errors:
        raise RuntimeError(f"delivery errors: {errors[:3]}")
    summary = summarize_ms(latencies)
    summary.update({"idempotent": idempotent, "records_produced": produced, "rate_target": rate,
                    "queue_full_ticks": dropped_ticks})
    return summary


def bench_latency(bootstrap: str, topic: str, runs: int, rate: int, seconds: float, warmup_s: float,
                  linger_ms: int) -> dict:
    all_runs = []
    for index in range(runs):
        for idempotent in (False, True):  # alternating: plain, idempotent, plain, ...
            result = bench_latency_run(bootstrap, topic, idempotent, rate, seconds, warmup_s, linger_ms)
            result["run"] = index + 1
            all_runs.append(result)
            print(f"  latency run {index + 1} {'idempotent' if idempotent else 'plain'}: "
                  f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
                  f"p99.9 {result['p99_9_ms']:.2f} ms ({result['count']} records)", file=sys.stderr)
    medians = {}
    for mode, idempotent in (("plain", False), ("idempotent", True)):
        mine = [r for r in all_runs if r["idempotent"] == idempotent]
        medians[mode] = {key: statistics.median(r[key] for r in mine) for key in ("p50_ms", "p99_ms", "p99_9_ms")}
    ratios = {key: medians["idempotent"][key] / medians["plain"][key] if medians["plain"][key] > 0 else None
              for key in ("p50_ms", "p99_ms", "p99_9_ms")}
    return {"runs": all_runs, "medians": medians, "idempotent_over_plain": ratios}


# -- output ---------------------------------------------------------------------------------------

def fmt(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(results: dict) -> str:
    lines = [f"# Fjord transaction figures, {results['meta']['date_utc']}", ""]
    meta = results["meta"]
    lines.append(f"commit `{meta['commit']}`, {meta['cpu_count']} CPUs, kernel {meta['kernel']}, "
                 f"broker {meta['broker']}; command `{meta['command']}`")
    lines += ["", "## Transactional throughput (one producer)", "",
              "| records/txn | record size | seconds | transactions | txn/s | MB/s | commit p50 | commit p99 |",
              "|---|---|---|---|---|---|---|---|"]
    txn = results.get("transactions")
    if txn and "error" not in txn:
        lines.append(f"| {txn['records_per_transaction']} | {txn['record_size_bytes']} B | {txn['seconds']:.1f} | "
                     f"{txn['transactions']} | {txn['transactions_per_second']:.1f} | "
                     f"{txn['payload_mb_per_second']:.2f} | {txn['commit_latency']['p50_ms']:.2f} ms | "
                     f"{txn['commit_latency']['p99_ms']:.2f} ms |")
    else:
        lines.append(f"| {TXN_RECORDS} | {RECORD_SIZE_BYTES} B | n/a | n/a | n/a | n/a | n/a | n/a |")
        lines.append("")
        lines.append(f"failed: {(txn or {}).get('error', 'not run')}")
    lines += ["", f"## Produce-ack latency, acks=all, {meta['options']['rate']} records/s of {RECORD_SIZE_BYTES} B "
              f"(median of {meta['options']['runs']} runs of {meta['options']['latency_seconds']} s each)", "",
              "| producer | p50 | p99 | p99.9 |", "|---|---|---|---|"]
    latency = results.get("latency")
    if latency and "error" not in latency:
        for mode in ("plain", "idempotent"):
            m = latency["medians"][mode]
            lines.append(f"| {mode} | {m['p50_ms']:.2f} ms | {m['p99_ms']:.2f} ms | {m['p99_9_ms']:.2f} ms |")
        r = latency["idempotent_over_plain"]
        lines.append(f"| idempotent / plain | {fmt(r['p50_ms'])}x | {fmt(r['p99_ms'])}x | {fmt(r['p99_9_ms'])}x |")
    else:
        lines.append("| n/a | n/a | n/a | n/a |")
        lines.append("")
        lines.append(f"failed: {(latency or {}).get('error', 'not run')}")
    return "\n".join(lines) + "\n"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="use this running broker instead of starting one")
    parser.add_argument("--txn-seconds", type=float, default=20.0)
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3, help="latency runs of each producer kind")
    parser.add_argument("--rate", type=int, default=5_000, help="records/s in the latency runs")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--linger-ms", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="5 s throughput, 1 run of 5 s each for latency")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results/txn-<UTC time>)")
    args = parser.parse_args()
    if args.quick:
        args.txn_seconds, args.latency_seconds, args.runs, args.warmup_seconds = 5.0, 5.0, 1, 1.0
    args.txn_seconds = min(args.txn_seconds, RUN_SECONDS_MAX)
    args.latency_seconds = min(args.latency_seconds, RUN_SECONDS_MAX)
    args.warmup_seconds = min(args.warmup_seconds, RUN_SECONDS_MAX)
    args.runs = max(1, min(args.runs, RUNS_MAX))
    args.rate = max(1, min(args.rate, RATE_MAX))

    now = datetime.now(timezone.utc)
    out_dir = args.out or REPO_ROOT / "bench" / "results" / f"txn-{now.strftime('%Y%m%dT%H%M%SZ')}"
    out_dir.mkdir(parents=True, exist_ok=True)

    factory = None
    broker_desc = args.bootstrap or "started here"
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        factory = fjordtest.BrokerFactory("bench-txn")
        broker = factory.start()
        bootstrap = broker.bootstrap
        broker_desc = f"{fjordtest.fjord_binary()} --shards 2 on {bootstrap}"

    results: dict = {"meta": {
        "date_utc": now.isoformat(timespec="seconds"),
        "commit": git_commit(),
        "kernel": platform.release(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "broker": broker_desc,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }}
    failed = False
    try:
        txn_topic = f"bench-txn-{uuid.uuid4().hex[:8]}"
        latency_topic = f"bench-latency-{uuid.uuid4().hex[:8]}"
        fjordtest.create_topic(bootstrap, txn_topic, partitions=args.partitions)
        fjordtest.create_topic(bootstrap, latency_topic, partitions=args.partitions)
        print(f"(a) transactions of {TXN_RECORDS} x {RECORD_SIZE_BYTES} B for {args.txn_seconds:.0f} s", file=sys.stderr)
        try:
            results["transactions"] = bench_transactions(bootstrap, txn_topic, args.txn_seconds, args.linger_ms)
        except (KafkaException, RuntimeError) as e:
            results["transactions"] = {"error": str(e)}
            failed = True
        print(f"(b) produce latency, {args.runs} x (plain, idempotent) at {args.rate} records/s", file=sys.stderr)
        try:
            results["latency"] = bench_latency(bootstrap, latency_topic, args.runs, args.rate, args.latency_seconds,
                                               args.warmup_seconds, args.linger_ms)
        except (KafkaException, RuntimeError) as e:
            results["latency"] = {"error": str(e)}
            failed = True
    finally:
        if factory is not None:
            for broker in factory.brokers:
                shutil.copyfile(broker.stderr_path, out_dir / "broker.log")
            try:
                factory.close(check_clean_stop=True)
            except AssertionError as e:
                results["broker_stop_error"] = str(e)
                failed = True

    table = markdown(results)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "summary.md").write_text(table)
    print(table)
    print(f"written to {out_dir}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
