#!/usr/bin/env python3
"""Summary of one scripts/bench-compare.sh run (Python standard library only).

Reads, under the run's directory:
  meta.json                   date, commit, machine, command, workloads, brokers
  limits.json                 fio and iperf3 figures
  runs/<workload>/<broker>-<n>.json     fjord-bench reports (bench/src/report.rs)
  runs/<workload>/<broker>-<n>.failed   the reason a run gave no report
and writes:
  summary.md                  medians over runs, Fjord/peer and Fjord/limit ratios, pictures
  runs.csv                    every run's figures, for checking the medians
  <workload>.svg              `fjord-bench plot` of each broker's median run
"""

import argparse
import csv
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

FJORD = "fjord"
MIB = 1024 * 1024
BROKER_TITLES = {"fjord": "Fjord", "tansu": "Tansu"}


# Failures with a known cause, explained in the table (substring of the reason → explanation).
KNOWN_FAILURES = {
    "Tag 0 is not valid for version 12": (
        "Tansu 0.6 puts Fetch's NodeEndpoints tagged field (tag 0, defined from Fetch v16) into its "
        "v12 responses, and fjord-bench's decoder (kafka-protocol 0.18) rejects it: no consumer "
        "workload can run against it"
    ),
}


def explain(reason):
    for needle, explanation in KNOWN_FAILURES.items():
        if needle in reason:
            return f"{reason} — {explanation}"
    return reason


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def workload_mode(workload, reports):
    for report in reports:
        return report["workload"]["mode"]
    text = Path("bench/workloads", workload + ".toml").read_text(encoding="utf-8")
    match = re.search(r'^mode\s*=\s*"(\w+)"', text, re.MULTILINE)
    return match.group(1) if match else "produce"


def latency(side, key):
    if side and side.get("latency"):
        return side["latency"].get(key)
    return None


def figures(report):
    """The figures of one run, by metric name (None where the run has no such figure)."""
    mode = report["workload"]["mode"]
    produce, consume, broker = report.get("produce"), report.get("consume"), report.get("broker")
    main_side = consume if mode == "consume" else produce
    values = {
        "throughput_mb_per_second": main_side["mb_per_second"] if main_side else None,
        "produce_p50_ms": latency(produce, "p50_ms"),
        "produce_p99_ms": latency(produce, "p99_ms"),
        "produce_p99_9_ms": latency(produce, "p99_9_ms"),
        "e2e_p50_ms": latency(consume, "p50_ms") if mode == "e2e" else None,
        "e2e_p99_ms": latency(consume, "p99_ms") if mode == "e2e" else None,
        "e2e_p99_9_ms": latency(consume, "p99_9_ms") if mode == "e2e" else None,
        "cpu_seconds_per_gb": None,
        "peak_rss_mib": None,
        "broker_produce_p50_ms": None,
        "broker_produce_p99_ms": None,
    }
    if broker:
        if mode == "consume":
            gigabytes = consume["batch_bytes"] / 1e9 if consume else 0
            values["cpu_seconds_per_gb"] = broker["cpu_seconds"] / gigabytes if gigabytes > 0 else None
        else:
            values["cpu_seconds_per_gb"] = broker.get("cpu_seconds_per_gb_produced")
        # Every run has a fresh broker, so VmHWM is the peak of this run (prefill included).
        values["peak_rss_mib"] = max(broker["vm_hwm_bytes"], broker["rss_peak_sampled_bytes"]) / MIB
    # The broker's own time per produce request (fjord-bench --broker-metrics; Fjord only).
    for times in report.get("broker_request_times", []):
        if times.get("api") == "Produce":
            values["broker_produce_p50_ms"] = times.get("p50_ms")
            values["broker_produce_p99_ms"] = times.get("p99_ms")
    errors = sum(side["errors"] for side in (produce, consume) if side)
    errors += sum(count for _, count in report.get("broker_errors", []))
    values["errors"] = errors
    return values


def median(values):
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def number(value, unit=""):
    if value is None:
        return "n/a"
    if value >= 100:
        text = f"{value:.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return text + unit


def ratio(a, b):
    if a is None or b is None or b == 0:
        return ""
    return f"{a / b:.2f}×"


class Cell:
    """One broker's runs of one workload."""

    def __init__(self, directory, broker, runs):
        self.reports, self.paths, self.failures = [], [], []
        for index in range(1, runs + 1):
            stem = directory / f"{broker}-{index}"
            if stem.with_suffix(".json").exists():
                self.paths.append(stem.with_suffix(".json"))
                self.reports.append(load_json(stem.with_suffix(".json")))
            elif stem.with_suffix(".failed").exists():
                self.failures.append(stem.with_suffix(".failed").read_text(encoding="utf-8").strip())
            else:
                self.failures.append("not run")
        self.figures = [figures(report) for report in self.reports]

    def median(self, metric):
        return median([f[metric] for f in self.figures])

    def median_run(self, metric):
        """The report whose `metric` is nearest the median (the run shown in the picture)."""
        middle = self.median(metric)
        if middle is None:
            return self.paths[0] if self.paths else None
        pairs = [(abs(f[metric] - middle), p) for f, p in zip(self.figures, self.paths) if f[metric] is not None]
        return min(pairs)[1] if pairs else None


def rows_for(mode, workload_meta, limits):
    """(label, metric, unit, limit value, limit name) for each row of a workload's table."""
    acks_all = workload_meta.get("acks") == "all"
    fixed_rate = workload_meta.get("target_rate_records_per_second", 0) > 0
    disk, loopback = limits["disk_write_mb_per_second"], limits["loopback_1stream_mb_per_second"]
    rows = []
    if mode == "consume":
        # Catch-up reads come from the disk through the page cache (sendfile); older limits.json
        # files have no read figures.
        reads = [(limits[key], name) for key, name in
                 [("disk_read_mb_per_second", "disk read"), ("disk_read_buffered_mb_per_second", "cold buffered read")]
                 if limits.get(key)]
        rows.append(("read throughput (MB/s)", "throughput_mb_per_second", reads + [(loopback, "loopback")]))
    else:
        if fixed_rate:
            rows.append(("produce throughput (MB/s, fixed rate)", "throughput_mb_per_second", []))
        else:
            limits_mb = [(disk, "disk write"), (loopback, "loopback")]
            rows.append(("produce throughput (MB/s)", "throughput_mb_per_second", limits_mb))
        fdatasync = lambda key: [(limits[key] / 1e3, "fdatasync")] if acks_all else []
        rows.append(("produce ack p50 (ms)", "produce_p50_ms", fdatasync("fdatasync_p50_us")))
        rows.append(("produce ack p99 (ms)", "produce_p99_ms", fdatasync("fdatasync_p99_us")))
        rows.append(("produce ack p99.9 (ms)", "produce_p99_9_ms", fdatasync("fdatasync_p99_9_us")))
        # The same requests timed inside the broker (read off its socket to response written);
        # the rest of the client's latency is the client and the kernel on these shared cores.
        rows.append(("broker-side produce time p50 (ms)", "broker_produce_p50_ms", fdatasync("fdatasync_p50_us")))
        rows.append(("broker-side produce time p99 (ms)", "broker_produce_p99_ms", fdatasync("fdatasync_p99_us")))
    if mode == "e2e":
        rows.append(("end-to-end p50 (ms)", "e2e_p50_ms", []))
        rows.append(("end-to-end p99 (ms)", "e2e_p99_ms", []))
        rows.append(("end-to-end p99.9 (ms)", "e2e_p99_9_ms", []))
    per = "read" if mode == "consume" else "produced"
    rows.append((f"broker CPU-s per GB {per}", "cpu_seconds_per_gb", []))
    rows.append(("broker peak RSS (MiB)", "peak_rss_mib", []))
    return rows


def plot(fjord_bench, reports, svg):
    if not fjord_bench or not reports:
        return False
    try:
        result = subprocess.run(
            [fjord_bench, "plot", "--svg", str(svg), *map(str, reports)],
            capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        print(f"summarize: plot {svg.name} failed: {error}", file=sys.stderr)
        return False
    if result.returncode != 0:
        print(f"summarize: plot {svg.name} failed: {result.stderr.strip()}", file=sys.stderr)
    return result.returncode == 0


def header(meta, limits):
    lines = [
        "# Fjord vs Tansu vs this machine's limits" if len(meta["brokers"]) > 1 else "# Fjord vs this machine's limits",
        "",
        f"- date: {meta['date']}; commit `{meta['commit']}`",
        f"- machine: {meta['cpu']}, {meta['cores']} cores, {meta['memory']}, kernel {meta['kernel']}, "
        f"data on {meta['filesystem']}",
        f"- command: `{meta['command']}`",
        f"- {meta['runs']} run(s) per broker and workload, brokers alternating run by run, each run on a "
        f"freshly started broker; {meta['warmup_seconds']} s warm-up + {meta['duration_seconds']} s measured "
        "(catch-up: until caught up); figures are medians over runs",
        f"- Fjord: `fjord start --shards {meta['fjord_shards']}` on a fresh data directory",
    ]
    if "tansu" in meta["brokers"]:
        version = meta.get("tansu_version") or "tansu"
        lines.append(f"- Tansu: {version}, `tansu broker --storage-engine memory://tansu/` (memory engine: "
                     "no disk, no fsync; acks=all costs it nothing)")
    lines.append("- load generator `fjord-bench` on the same host and cores as the broker")
    lines += [
        "",
        "Machine limits (fio, iperf3):",
        "",
        "| limit | value |",
        "|---|---|",
        f"| O_DIRECT sequential write, 1 MiB blocks | {number(limits['disk_write_mb_per_second'])} MB/s |",
        *([f"| O_DIRECT sequential read, 1 MiB blocks | {number(limits['disk_read_mb_per_second'])} MB/s |",
           f"| buffered sequential read, cold page cache | {number(limits['disk_read_buffered_mb_per_second'])} MB/s |"]
          if limits.get("disk_read_mb_per_second") else []),
        f"| 4 KiB append + fdatasync | {number(limits['append_fdatasync_per_second'])} per second; "
        f"fdatasync p50 {number(limits['fdatasync_p50_us'])} µs, p99 {number(limits['fdatasync_p99_us'])} µs, "
        f"p99.9 {number(limits['fdatasync_p99_9_us'])} µs (the write itself p50 {number(limits['append_write_p50_us'])} µs) |",
        f"| loopback TCP, 1 stream | {number(limits['loopback_1stream_mb_per_second'])} MB/s |",
        f"| loopback TCP, 2 streams | {number(limits['loopback_2stream_mb_per_second'])} MB/s |",
        "",
        "Ratios are Fjord ÷ peer and Fjord ÷ limit: for throughput above 1 is better for Fjord, for "
        "latency, CPU and memory below 1 is. MB = 10^6 bytes of record batches.",
        "",
    ]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--fjord-bench", help="binary for the pictures (fjord-bench plot)")
    args = parser.parse_args()
    out = args.out
    meta, limits = load_json(out / "meta.json"), load_json(out / "limits.json")
    brokers = meta["brokers"]
    peers = [b for b in brokers if b != FJORD]

    lines = header(meta, limits)
    csv_rows = []
    for workload in meta["workloads"]:
        directory = out / "runs" / workload
        cells = {b: Cell(directory, b, meta["runs"]) for b in brokers}
        all_reports = [r for c in cells.values() for r in c.reports]
        mode = workload_mode(workload, all_reports)
        workload_meta = all_reports[0]["workload"] if all_reports else {}

        lines += [f"## {workload}", ""]
        titles = [BROKER_TITLES.get(b, b) for b in brokers]
        columns = ["metric", *titles, *[f"Fjord/{BROKER_TITLES.get(p, p)}" for p in peers], "Fjord/limit"]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for label, metric, limit in rows_for(mode, workload_meta, limits):
            medians = {b: cells[b].median(metric) for b in brokers}
            row = [label, *[number(medians[b]) for b in brokers]]
            row += [ratio(medians[FJORD], medians[p]) for p in peers]
            row.append(", ".join(f"{ratio(medians[FJORD], value)} {name}" for value, name in limit
                                 if ratio(medians[FJORD], value)))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")

        notes = []
        for b in brokers:
            cell, title = cells[b], BROKER_TITLES.get(b, b)
            if cell.failures:
                # Ports differ from run to run; without them, equal failures read as one.
                reasons = "; ".join(sorted({explain(re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1", f))
                                            for f in cell.failures}))
                if cell.reports:
                    notes.append(f"{title}: {len(cell.failures)} of {meta['runs']} runs gave no report "
                                 f"(medians over the rest): {reasons}")
                else:
                    notes.append(f"{title}: n/a — {reasons}")
            errors = sum(f["errors"] for f in cell.figures)
            if errors:
                notes.append(f"{title}: {errors} error responses over its runs (see runs.csv and the JSON reports)")
            for index, f in enumerate(cell.figures):
                csv_rows.append({"workload": workload, "broker": b, "report": cell.paths[index].name, **f})
        lines += [f"- {note}" for note in notes]
        if mode == "consume":
            lines.append("- Fjord is restarted between filling the topic and reading it, so the read starts "
                         "with an empty batch cache (128 MiB) and comes from segment files — though mostly "
                         "from the page cache, which is not dropped. Tansu's memory engine cannot restart "
                         "without losing the topic, so it reads from memory.")
        if notes or mode == "consume":
            lines.append("")

        main_metric = "throughput_mb_per_second"
        if workload_meta.get("target_rate_records_per_second", 0) > 0:
            main_metric = "e2e_p99_ms" if mode == "e2e" else "produce_p99_ms"
        chosen = [p for p in (cells[b].median_run(main_metric) for b in brokers) if p]
        svg = out / f"{workload}.svg"
        if plot(args.fjord_bench, chosen, svg):
            lines += [f"![{workload}: latency spectrum and throughput over time, median run per broker]({svg.name})", ""]

    (out / "summary.md").write_text("\n".join(lines), encoding="utf-8")
    if csv_rows:
        with open(out / "runs.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(csv_rows[0].keys()))
            writer.writeheader()
            writer.writerows(csv_rows)
    print(out / "summary.md")


if __name__ == "__main__":
    main()
