#!/usr/bin/env python3
"""Medians of a scripts/bench-ab.sh results directory, as a Markdown table:

    python3 scripts/bench-ab-summary.py bench/results/ab-<time>
"""
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

runs = defaultdict(list)
for path in sorted(Path(sys.argv[1]).glob("*.json")):
    report = json.load(open(path))
    runs[(report["workload"]["name"], report["label"])].append(report)
print("| workload | binary | runs | MB/s | p50 ms | p99 ms | p99.9 ms | broker CPU-s/GB (produce) or CPU-s (catch-up) |")
print("|---|---|---|---|---|---|---|---|")


def side(report):
    """The produce figures, or the consume figures of a consume-only (catch-up) workload."""
    return report["produce"] or report["consume"]


def cpu(report):
    per_gb = report["broker"]["cpu_seconds_per_gb_produced"]
    return per_gb if report["produce"] and per_gb is not None else report["broker"]["cpu_seconds"]


def latency(report, key):
    """A latency percentile; a catch-up read measures none."""
    measured = side(report).get("latency")
    return measured[key] if measured else None


for (workload, label), reports in sorted(runs.items()):
    def median(pick, digits=2):
        values = [value for value in (pick(report) for report in reports) if value is not None]
        return f"{statistics.median(values):.{digits}f}" if values else "-"
    print(f"| {workload} | {label} | {len(reports)} | {median(lambda r: side(r)['mb_per_second'], 1)} | "
          f"{median(lambda r: latency(r, 'p50_ms'))} | {median(lambda r: latency(r, 'p99_ms'))} | "
          f"{median(lambda r: latency(r, 'p99_9_ms'))} | {median(cpu)} |")
