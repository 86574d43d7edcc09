#!/usr/bin/env python3
"""Scale figures for one node (issue 22): what many partitions cost, and what they cost the hot ones.

Run through scripts/bench-scale.sh, which builds the binaries and uses the repository's .venv
(confluent-kafka). In one run, on this machine:

  1. baseline: a fresh broker holding only the hot topics; fjord-bench on 8 hot partitions:
     produce acks=1 max (MB/s, p99), end to end at 50 MB/s acks=all (produce p99, fetch p99 =
     end-to-end), catch-up fetch (MB/s);
  2. scale: a fresh broker; a topic of --partitions partitions created (time until acknowledged,
     and until Metadata lists every partition with a leader); one record written to each by
     idempotent acks=all producers (time, descriptors at most); RSS (VmRSS) and descriptors
     (/proc/PID/fd) idle; the same fjord-bench runs on 8 hot partitions while they all exist;
     SIGKILL then start (time to the ready line; every partition written since the last start, so
     all are recovered), SIGTERM (time to exit) then start, SIGTERM of that idle broker; RSS and
     descriptors idle after each restart.

Writes summary.md (two markdown tables), figures.json and fjord-bench's reports to --out; broker
logs and data go to --scratch (data removed at the end unless --keep). Every wait is bounded; only
brokers started here are signalled, by PID. A phase that fails ends the run with the figures so far
in the summary and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
READY_LINE = "Fjord broker ready"
READY_WAIT_MAX_S = 900.0
STOP_WAIT_MAX_S = 900.0
CREATE_WAIT_MAX_S = 600.0
WRITE_WAIT_MAX_S = 3600.0
BENCH_SLACK_S = 180.0  # fjord-bench's own setup and shutdown beyond warm-up + duration
SAMPLE_INTERVAL_S = 0.1
IDLE_SETTLE_S = 5.0
HOT_PARTITIONS = 8  # the workload files' partition count
SEGMENT_FILES_FLAG = "--open-segment-files-max"  # issue 22's budget flag (passed when the build has it)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Sampler:
    """The broker's descriptor count every SAMPLE_INTERVAL_S (bounded in time); keeps the maximum."""

    def __init__(self, pid: int, duration_max_s: float) -> None:
        self.pid, self.maximum, self._stop = pid, 0, threading.Event()
        self._deadline = time.monotonic() + duration_max_s
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                self.maximum = max(self.maximum, descriptors(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return
            self._stop.wait(SAMPLE_INTERVAL_S)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.maximum


class Broker:
    """One `fjord start` with its own data directory, port, metrics port and log."""

    def __init__(self, fjord: Path, data_dir: Path, log_path: Path, open_files_limit: int | None,
                 extra_args: list[str]) -> None:
        self.fjord, self.data_dir, self.log_path = fjord, data_dir, log_path
        self.open_files_limit, self.extra_args = open_files_limit, extra_args
        self.port, self.metrics_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> float:
        """Starts and waits for this start's ready line; returns seconds from exec to ready."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        command = [str(self.fjord), "start", "--data-dir", str(self.data_dir), "--listen", self.bootstrap,
                   "--advertise", self.bootstrap, "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
                   *self.extra_args]
        prefix = []
        if shutil.which("setpriv"):  # the kernel kills the broker if this script dies
            prefix += ["setpriv", "--pdeathsig", "KILL", "--"]
        if self.open_files_limit:
            prefix += ["prlimit", f"--nofile={self.open_files_limit}:{self.open_files_limit}", "--"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FJORD_")}
        env["NO_COLOR"] = "1"
        log_from = len(self.log_text())
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(prefix + command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=env, start_new_session=True)
        while READY_LINE not in self.log_text()[log_from:]:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode} before ready; see {self.log_path}")
            if time.monotonic() - started > READY_WAIT_MAX_S:
                raise RuntimeError(f"broker not ready within {READY_WAIT_MAX_S}s; see {self.log_path}")
            time.sleep(0.05)
        return time.monotonic() - started

    def stop(self) -> float:
        """SIGTERM; returns seconds until it exited (0 expected)."""
        assert self.proc is not None and self.proc.poll() is None
        started = time.monotonic()
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=STOP_WAIT_MAX_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"broker ignored SIGTERM for {STOP_WAIT_MAX_S}s") from None
        if rc != 0:
            raise RuntimeError(f"broker exited {rc} after SIGTERM; see {self.log_path}")
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)


def create_topic(bootstrap: str, topic: str, partitions: int) -> tuple[float, float]:
    """(seconds until CreateTopics answered, seconds until Metadata lists every partition led)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    client = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 60_000})
    started = time.monotonic()
    futures = client.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                                   request_timeout=CREATE_WAIT_MAX_S)
    futures[topic].result(timeout=CREATE_WAIT_MAX_S)
    acknowledged = time.monotonic() - started
    while True:
        found = client.list_topics(topic, timeout=60).topics.get(topic)
        if found is not None and found.error is None and len(found.partitions) == partitions and all(
                p.leader >= 0 for p in found.partitions.values()):
            return acknowledged, time.monotonic() - started
        if time.monotonic() - started > CREATE_WAIT_MAX_S:
            raise RuntimeError(f"topic {topic} not in Metadata with {partitions} partitions within {CREATE_WAIT_MAX_S}s")
        time.sleep(0.2)


def write_one_to_each(broker: Broker, topic: str, partitions: int, producer_count: int) -> dict:
    """One record to each partition (idempotent, acks=all) from `producer_count` producers, each
    writing every n-th partition (librdkafka sends one partition per request, at most 5 in flight
    per idempotent producer); all must be acknowledged."""
    from confluent_kafka import Producer

    failed: list = []
    acknowledged = 0

    def on_delivery(err, msg):
        nonlocal acknowledged
        if err is None:
            acknowledged += 1
        else:
            failed.append((msg.partition(), str(err)))

    producers = [Producer({
        "bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 20,
        "message.timeout.ms": int(WRITE_WAIT_MAX_S * 1000), "queue.buffering.max.messages": max(100_000, partitions),
    }) for _ in range(producer_count)]
    sampler = Sampler(broker.pid, WRITE_WAIT_MAX_S + 60)
    started = time.monotonic()
    deadline = started + WRITE_WAIT_MAX_S
    run_id = uuid.uuid4().hex[:8]
    try:
        for partition in range(partitions):
            producer = producers[partition % producer_count]
            while True:
                if time.monotonic() > deadline:
                    raise RuntimeError("producer queue stayed full")
                try:
                    producer.produce(topic, value=f"{run_id}-p{partition}".encode(), partition=partition,
                                     on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        while sum(len(producer) for producer in producers) > 0 and not failed and time.monotonic() < deadline:
            for producer in producers:
                producer.flush(1.0 / producer_count)
            if broker.proc.poll() is not None:
                raise RuntimeError(f"broker exited during the writes; see {broker.log_path}")
        for producer in producers:
            producer.poll(0)
    finally:
        descriptors_max = sampler.stop()
        for producer in producers:
            producer.purge()  # nothing left to retry once the phase is over (or failed)
    seconds = time.monotonic() - started
    if failed or acknowledged != partitions:
        raise RuntimeError(f"{acknowledged} of {partitions} acknowledged after {seconds:.0f}s; "
                           f"{len(failed)} failed, first: {failed[:3]}")
    return {"seconds": seconds, "records_per_second": partitions / seconds, "descriptors_max": descriptors_max}


def opened_partitions(log: str) -> str:
    """The shards' start-up summaries ("opened partitions" lines): partitions opened, how many
    were recovered after an unclean stop, and the slowest shard's time."""
    opened = recovered = elapsed_ms = 0
    for line in log.splitlines():
        if "opened partitions" in line:
            fields = dict(re.findall(r"(\w+)=(\d+)", line))
            opened += int(fields.get("partitions", 0))
            recovered += int(fields.get("recovered_after_unclean_stop", 0))
            elapsed_ms = max(elapsed_ms, int(fields.get("elapsed_ms", 0)))
    return f"{opened:,} opened, {recovered:,} recovered after an unclean stop, slowest shard {elapsed_ms / 1000:.1f} s"


def idle_figures(broker: Broker) -> dict:
    time.sleep(IDLE_SETTLE_S)
    return {"rss_mib": rss_mib(broker.pid), "descriptors": descriptors(broker.pid)}


def fjord_bench(bench: Path, broker: Broker, workload: str, out: Path, label: str, extra: list[str],
                timeout_s: float) -> dict:
    """One fjord-bench run; returns its JSON report."""
    report = out / f"{label}-{workload}.json"
    command = [str(bench), "run", "-w", str(REPO / "bench" / "workloads" / f"{workload}.toml"),
               "--bootstrap", broker.bootstrap, "--label", label, "--quiet", "--broker-pid", str(broker.pid),
               "--broker-metrics", f"127.0.0.1:{broker.metrics_port}", "--json", str(report), *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        raise RuntimeError(f"fjord-bench {workload} exited {result.returncode}: {result.stderr[-2000:]}")
    return json.loads(report.read_text())


def hot_figures(bench: Path, broker: Broker, out: Path, label: str, args: argparse.Namespace) -> dict:
    timing = ["--warmup", str(args.warmup), "--duration", str(args.duration)]
    timeout_s = args.warmup + args.duration + BENCH_SLACK_S
    produce = fjord_bench(bench, broker, "1kb-8p-acks1-max", out, label, timing, timeout_s)
    e2e = fjord_bench(bench, broker, "1kb-8p-e2e-50mbps", out, label, timing, timeout_s)
    # The read is bounded by its duration; filling it (unmeasured) at no less than 20 MB/s.
    read_max_s = max(args.duration, 60)
    catchup = fjord_bench(bench, broker, "catchup-4gib", out, label,
                          ["--prefill-bytes", str(args.prefill_bytes), "--duration", str(read_max_s)],
                          read_max_s + args.prefill_bytes / 20e6 + BENCH_SLACK_S)
    return {
        "produce_mb_per_second": produce["produce"]["mb_per_second"],
        "produce_p99_ms": produce["produce"]["latency"]["p99_ms"],
        "produce_cpu_seconds_per_gb": produce["broker"]["cpu_seconds_per_gb_produced"],
        "e2e_produce_p99_ms": e2e["produce"]["latency"]["p99_ms"],
        "e2e_fetch_p99_ms": e2e["consume"]["latency"]["p99_ms"],
        "e2e_mb_per_second": e2e["consume"]["mb_per_second"],
        "catchup_mb_per_second": catchup["consume"]["mb_per_second"],
        "rss_mib_after": rss_mib(broker.pid),
        "descriptors_after": descriptors(broker.pid),
    }


def segment_file_series(broker: Broker) -> list[str]:
    """What /metrics says about descriptors: every sample line whose name mentions files or
    descriptors (the descriptor cache's fjord_segment_file* series)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{broker.metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError as error:
        return [f"(metrics unavailable: {error})"]
    return [line for line in text.splitlines() if re.match(r"fjord_\w*(file|descriptor)\w*[{ ]", line)]


def write_summary(out: Path, figures: dict, args: argparse.Namespace) -> str:
    def fmt(value, unit="", digits=1):
        return "n/a" if value is None else f"{value:,.{digits}f}{unit}"

    scale = figures.get("scale", {})
    base, hot = figures.get("baseline", {}).get("hot", {}), scale.get("hot", {})
    n = f"{args.partitions:,}"

    def idle(key: str) -> str:
        found = scale.get(key, {})
        return f"{fmt(found.get('rss_mib'), ' MiB')} / {found.get('descriptors', 'n/a')}"

    write = scale.get("write", {})
    lines = [
        f"# Fjord at {n} partitions on one node ({figures['when']}, {os.cpu_count()} cores)",
        "",
        f"binary {figures['fjord']}; broker RLIMIT_NOFILE {figures['open_files_limit']}; "
        f"{SEGMENT_FILES_FLAG}: {figures['segment_files_arg'] or 'not passed (not in this build, or not asked)'}; "
        f"budget stated at start: {figures.get('stated_budget') or 'none (no descriptor budget line)'}",
        "",
        "| figure | value |",
        "|---|---|",
        f"| broker just started: RSS / descriptors | {idle('start')} |",
        f"| create {n} partitions: acknowledged / all in Metadata | "
        f"{fmt(scale.get('create_acknowledged_s'), ' s', 2)} / {fmt(scale.get('create_visible_s'), ' s', 2)} |",
        f"| write one record to each ({args.producers} idempotent producers, acks=all) | "
        f"{fmt(write.get('seconds'), ' s')} ({fmt(write.get('records_per_second'), ' partitions/s', 0)}), "
        f"descriptors at most {write.get('descriptors_max', 'n/a')} |",
        f"| idle after the writes: RSS / descriptors | {idle('idle_after_write')} |",
        f"| SIGKILL, then start to ready | {fmt(scale.get('sigkill_ready_s'), ' s')} ({scale.get('sigkill_opened', 'n/a')}) |",
        f"| idle after that restart: RSS / descriptors | {idle('idle_after_sigkill')} |",
        f"| SIGTERM: time to exit, then start to ready | {fmt(scale.get('sigterm_stop_s'), ' s')}, "
        f"{fmt(scale.get('sigterm_ready_s'), ' s')} ({scale.get('sigterm_opened', 'n/a')}) |",
        f"| idle after that restart: RSS / descriptors | {idle('idle_after_sigterm')} |",
        f"| SIGTERM of that idle broker: time to exit | {fmt(scale.get('final_stop_s'), ' s')} |",
        "",
        f"8 hot partitions, {args.duration} s measured after {args.warmup} s warm-up (catch-up: "
        f"{args.prefill_bytes / 2**30:.1f} GiB), on a broker holding only them and on one holding {n} more:",
        "",
        f"| hot partitions | only 8 | with {n} | ratio |",
        "|---|---|---|---|",
    ]
    rows = [
        ("produce acks=1 max, MB/s", "produce_mb_per_second", 1),
        ("produce acks=1 max, p99 ms", "produce_p99_ms", 2),
        ("produce acks=1 max, broker CPU-s/GB", "produce_cpu_seconds_per_gb", 2),
        ("50 MB/s acks=all: produce p99 ms", "e2e_produce_p99_ms", 2),
        ("50 MB/s acks=all: fetch (end-to-end) p99 ms", "e2e_fetch_p99_ms", 2),
        ("catch-up fetch, MB/s", "catchup_mb_per_second", 1),
        ("broker RSS after the runs, MiB", "rss_mib_after", 1),
        ("broker descriptors after the runs", "descriptors_after", 0),
    ]
    for name, key, digits in rows:
        a, b = base.get(key), hot.get(key)
        ratio = f"{b / a:.2f}×" if a and b is not None else "n/a"
        lines.append(f"| {name} | {fmt(a, '', digits)} | {fmt(b, '', digits)} | {ratio} |")
    if figures.get("metrics"):
        lines += ["", "/metrics descriptor series at the end:", "", "```", *figures["metrics"][:40], "```"]
    if figures.get("error"):
        lines += ["", f"**Run ended early:** {figures['error']}"]
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    (out / "figures.json").write_text(json.dumps(figures, indent=2))
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", type=int, default=100_000)
    parser.add_argument("--producers", type=int, default=4, help="idempotent producers sharing the writes")
    parser.add_argument("--duration", type=int, default=15, help="seconds measured per fjord-bench run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--prefill-bytes", type=int, default=1 << 30, help="size of the catch-up read")
    parser.add_argument("--open-files-limit", type=int, default=0,
                        help="the broker's RLIMIT_NOFILE, soft and hard (0: inherit this shell's)")
    parser.add_argument("--segment-files-max", type=int, default=0,
                        help=f"pass {SEGMENT_FILES_FLAG} N when the build has it (0: the broker's default)")
    parser.add_argument("--shards", type=int, default=0, help="0: the broker's default (one per core)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scratch", type=Path, required=True, help="data and logs (ext4: O_DIRECT)")
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    parser.add_argument("--fjord", type=Path, default=REPO / "target" / "release" / "fjord")
    parser.add_argument("--fjord-bench", type=Path, default=REPO / "target" / "release" / "fjord-bench")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    args.scratch.mkdir(parents=True, exist_ok=True)
    help_text = subprocess.run([str(args.fjord), "start", "--help"], capture_output=True, text=True, timeout=30).stdout
    extra_args = ["--shards", str(args.shards)] if args.shards else []
    segment_files_arg = ""
    if args.segment_files_max and SEGMENT_FILES_FLAG in help_text:
        segment_files_arg = f"{SEGMENT_FILES_FLAG} {args.segment_files_max}"
        extra_args += [SEGMENT_FILES_FLAG, str(args.segment_files_max)]
    inherited = resource.getrlimit(resource.RLIMIT_NOFILE)
    figures: dict = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fjord": str(args.fjord),
        "open_files_limit": args.open_files_limit or f"{inherited[0]} soft / {inherited[1]} hard (inherited)",
        "segment_files_arg": segment_files_arg,
        "partitions": args.partitions,
    }
    brokers: list[Broker] = []

    def new_broker(name: str) -> Broker:
        broker = Broker(args.fjord, args.scratch / f"data-{name}", args.scratch / f"{name}.log",
                        args.open_files_limit or None, extra_args)
        brokers.append(broker)
        return broker

    def phase(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    status = 0
    try:
        if not args.skip_baseline:
            phase("baseline: a broker with only the 8 hot partitions")
            base = new_broker("baseline")
            base.start()
            figures["baseline"] = {"start": idle_figures(base)}
            figures["baseline"]["hot"] = hot_figures(args.fjord_bench, base, args.out, "only-8", args)
            base.stop()

        phase(f"scale: creating {args.partitions:,} partitions")
        broker = new_broker("scale")
        broker.start()
        scale: dict = {"start": idle_figures(broker)}
        figures["scale"] = scale
        scale["create_acknowledged_s"], scale["create_visible_s"] = create_topic(broker.bootstrap, "scale", args.partitions)
        phase(f"scale: created in {scale['create_visible_s']:.1f}s; writing one record to each partition")
        scale["write"] = write_one_to_each(broker, "scale", args.partitions, args.producers)
        phase(f"scale: written in {scale['write']['seconds']:.1f}s; idle figures, then the hot runs")
        scale["idle_after_write"] = idle_figures(broker)
        scale["hot"] = hot_figures(args.fjord_bench, broker, args.out, f"with-{args.partitions}", args)
        stated = [line for line in broker.log_text().splitlines() if "descriptor budget" in line]
        figures["stated_budget"] = " ".join(re.findall(r"\w+=\d+", stated[0])) if stated else ""
        # SIGKILL first: every partition was written in this life, so the start recovers them all
        # (after a clean stop with no write since, a SIGKILL leaves nothing to recover).
        phase("scale: SIGKILL and start")
        broker.kill()
        log_from = len(broker.log_text())
        scale["sigkill_ready_s"] = broker.start()
        scale["sigkill_opened"] = opened_partitions(broker.log_text()[log_from:])
        scale["idle_after_sigkill"] = idle_figures(broker)
        phase(f"scale: ready in {scale['sigkill_ready_s']:.1f}s; SIGTERM and start")
        scale["sigterm_stop_s"] = broker.stop()
        log_from = len(broker.log_text())
        scale["sigterm_ready_s"] = broker.start()
        scale["sigterm_opened"] = opened_partitions(broker.log_text()[log_from:])
        scale["idle_after_sigterm"] = idle_figures(broker)
        figures["metrics"] = segment_file_series(broker)
        phase(f"scale: ready in {scale['sigterm_ready_s']:.1f}s; stopping")
        scale["final_stop_s"] = broker.stop()
    except (RuntimeError, subprocess.TimeoutExpired, OSError, KeyError, ValueError) as error:
        figures["error"] = f"{type(error).__name__}: {error}"
        status = 1
    finally:
        for broker in brokers:
            broker.kill()
        if not args.keep:
            for broker in brokers:
                shutil.rmtree(broker.data_dir, ignore_errors=True)
    print(write_summary(args.out, figures, args))
    print(f"results in {args.out}; broker logs in {args.scratch}")
    return status


if __name__ == "__main__":
    sys.exit(main())
