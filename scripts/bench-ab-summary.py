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
print("| workload | binary | runs | MB/s | p50 ms | p99 ms | p99.9 ms | broker CPU-s/GB |")
print("|---|---|---|---|---|---|---|---|")
for (workload, label), reports in sorted(runs.items()):
    def median(pick):
        return statistics.median(pick(report) for report in reports)
    print(f"| {workload} | {label} | {len(reports)} | {median(lambda r: r['produce']['mb_per_second']):.1f} | "
          f"{median(lambda r: r['produce']['latency']['p50_ms']):.2f} | {median(lambda r: r['produce']['latency']['p99_ms']):.2f} | "
          f"{median(lambda r: r['produce']['latency']['p99_9_ms']):.2f} | "
          f"{median(lambda r: r['broker']['cpu_seconds_per_gb_produced']):.2f} |")
