#!/usr/bin/env bash
# A/B of two fjord binaries on the same workloads, alternating, for a change on the hot path:
#
#   scripts/bench-ab.sh BASE_BIN CANDIDATE_BIN [ROUNDS] [DURATION_SECONDS]
#
# Each round runs every workload below against a fresh broker of each binary (BASE first, then
# CANDIDATE, then the order flips the next round), with fjord-bench sampling the broker's CPU. It
# prints one line per run and a Markdown table of medians: MB/s, produce p50/p99/p99.9 and broker
# CPU-seconds per GB. Results (JSON per run) go to bench/results/ab-<UTC time>/. WORKLOADS (names
# under bench/workloads/, space-separated) replaces the default three produce workloads.
# FJORD_BENCH_BIN names the load generator (default target/release/fjord-bench).
# Bounded: every run has a timeout; only brokers this script started are stopped, by PID.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
base_bin="${1:?base fjord binary}"
candidate_bin="${2:?candidate fjord binary}"
rounds="${3:-2}"
duration="${4:-15}"
bench_bin="${FJORD_BENCH_BIN:-$repo_root/target/release/fjord-bench}"
workloads=(${WORKLOADS:-1kb-8p-acks1-max 1kb-8p-acksall-max 1kb-8p-acksall-50mbps})
out="$repo_root/bench/results/ab-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
port=19392
metrics_port=19393
broker_pid=""

stop_broker() {
    if [ -n "$broker_pid" ]; then
        kill -TERM "$broker_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$broker_pid" 2>/dev/null || true
        broker_pid=""
    fi
}
trap stop_broker EXIT

run_one() {
    local label="$1" bin="$2" workload="$3" round="$4"
    local data
    data="$(mktemp -d "$repo_root/target/bench-ab-data.XXXXXX")"
    "$bin" start --data-dir "$data" --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics_port" --log warn \
        >"$out/$label-$workload-$round.broker.log" 2>&1 &
    broker_pid=$!
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    timeout $((duration + 120)) "$bench_bin" run -w "$repo_root/bench/workloads/$workload.toml" \
        --bootstrap "127.0.0.1:$port" --label "$label" --warmup 3 --duration "$duration" \
        --broker-pid "$broker_pid" --broker-metrics "127.0.0.1:$metrics_port" --quiet --json "$out/$label-$workload-$round.json" >/dev/null 2>&1 || true
    stop_broker
    rm -rf "$data"
    python3 - "$out/$label-$workload-$round.json" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print(f"{sys.argv[1]}: no report")
    sys.exit(0)
# A consume-only workload (catch-up) reports its reads where a produce workload has its writes.
p, b = r["produce"] or r["consume"], r["broker"]
api = "Produce" if r["produce"] else "Fetch"
inside = next((t for t in r.get("broker_request_times", []) if t["api"] == api), None)
inside = f"  broker-side p50 {inside['p50_ms']:.2f} p99 {inside['p99_ms']:.2f} ms" if inside and inside["p99_ms"] is not None else ""
cpu = b["cpu_seconds_per_gb_produced"]
cpu = f"{cpu:5.2f} CPU-s/GB" if cpu is not None and r["produce"] else f"{b['cpu_seconds']:5.2f} CPU-s"
latency = p.get("latency") or {}
percentiles = "  ".join(f"{name} {latency[key]:6.2f}" for name, key in (("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p99_9_ms"))
                        if latency.get(key) is not None)
print(f"{r['workload']['name']:24} {r['label']:9} {p['mb_per_second']:8.1f} MB/s  {percentiles} ms  {cpu}{inside}")
EOF
}

for round in $(seq 1 "$rounds"); do
    for workload in "${workloads[@]}"; do
        if [ $((round % 2)) -eq 1 ]; then
            run_one base "$base_bin" "$workload" "$round"
            run_one candidate "$candidate_bin" "$workload" "$round"
        else
            run_one candidate "$candidate_bin" "$workload" "$round"
            run_one base "$base_bin" "$workload" "$round"
        fi
    done
done
python3 "$repo_root/scripts/bench-ab-summary.py" "$out" | tee "$out/summary.md"
echo "results in $out"
