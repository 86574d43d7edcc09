#!/usr/bin/env bash
# Compaction figures, in one run on this machine:
#   1. compaction throughput: MB/s of log the cleaner reads (from its log line per partition pass;
#      the read pace is log.cleaner.io.max.bytes.per.second: CLEANER_IO=<bytes/s> overrides the
#      broker's default, CLEANER_IO=0 runs it unpaced);
#   2. produce-ack latency at a fixed 50 MB/s with acks=all (bench/workloads/1kb-8p-acksall-50mbps)
#      with the cleaner idle, then with the cleaner compacting a large dirty log at the same time.
#
#   scripts/bench-compaction.sh [--no-build] [--fill-seconds N] [--duration N]
#
# Writes bench/results/compaction-<time>/{summary.md,idle.json,compacting.json,broker-*.log}.
# Uses a scratch directory under /var/tmp (ext4: the engine needs O_DIRECT) and ports 19400/19401.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
export PATH="$HOME/.cargo/bin:$PATH"

build=1
fill_seconds=40
duration=30
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=0 ;;
        --fill-seconds) fill_seconds="$2"; shift ;;
        --duration) duration="$2"; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

[ "$build" = 1 ] && cargo build --release --bins
fjord="$repo_root/target/release/fjord"
bench="$repo_root/target/release/fjord-bench"
port=19400
metrics_port=19401
scratch="$(mktemp -d /var/tmp/fjord-compaction.XXXXXX)"
out="bench/results/compaction-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
broker_pid=""

cleanup() {
    if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
        kill -TERM "$broker_pid"
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT

start_broker() { # $1: cleaner backoff ms, $2: log name
    "$fjord" start --data-dir "$scratch/data" --listen "127.0.0.1:$port" --advertise "127.0.0.1:$port" \
        --metrics-listen "127.0.0.1:$metrics_port" --log-cleaner-backoff-ms "$1" ${CLEANER_IO:+--log-cleaner-io-max-bytes-per-second "$CLEANER_IO"} >"$out/broker-$2.log" 2>&1 &
    broker_pid=$!
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "broker did not start; see $out/broker-$2.log" >&2
    exit 1
}

stop_broker() {
    kill -TERM "$broker_pid"
    wait "$broker_pid" || true
    broker_pid=""
}

counter() { # sum of one /metrics series over shards
    curl -fsS "http://127.0.0.1:$metrics_port/metrics" | awk -v name="$1" 'index($0, name "{") == 1 { sum += $2 } END { printf "%.0f\n", sum }'
}

# 1. A compacted topic full of superseded values (64 keys per batch, rewritten over and over),
#    with the cleaner held off.
start_broker 3600000 fill
"$fjord" topic create cmp -b "127.0.0.1:$port" --partitions 2 --config cleanup.policy=compact \
    --config segment.bytes=67108864 --config min.cleanable.dirty.ratio=0.01
"$bench" run --bootstrap "127.0.0.1:$port" --label fill --quiet --mode produce --topic cmp --partitions 2 \
    --producers 2 --record-size 1024 --key-distribution round-robin --acks 1 --rate 0 --warmup 0 \
    --duration "$fill_seconds" --json "$scratch/fill.json"
dirty_bytes=$(du -sb "$scratch/data"/cmp-* | awk '{ sum += $1 } END { printf "%.0f\n", sum }')

# 2. Baseline: the latency workload with the cleaner idle, on a freshly restarted broker like the
#    compacting run below.
stop_broker
start_broker 3600000 idle
"$bench" run --bootstrap "127.0.0.1:$port" --label "cleaner idle" --quiet -w bench/workloads/1kb-8p-acksall-50mbps.toml \
    --warmup 5 --duration "$duration" --broker-pid "$broker_pid" --json "$out/idle.json"
stop_broker

# 3. The same workload while the cleaner compacts the dirty log (it starts within a second).
start_broker 1000 compacting
"$bench" run --bootstrap "127.0.0.1:$port" --label "cleaner compacting" --quiet -w bench/workloads/1kb-8p-acksall-50mbps.toml \
    --warmup 5 --duration "$duration" --broker-pid "$broker_pid" --json "$out/compacting.json"
workload_end=$(date +%s.%N)
# Let the cleaner finish (bounded) so its throughput covers the whole dirty log.
for _ in $(seq 1 600); do
    before=$(counter fjord_compaction_bytes_read_total)
    sleep 1
    [ "$(counter fjord_compaction_bytes_read_total)" = "$before" ] && [ "$before" != 0 ] && break
done
stop_broker

python3 - "$out" "$dirty_bytes" "$workload_end" <<'EOF'
import json, re, sys
out, dirty_bytes = sys.argv[1], int(float(sys.argv[2]))
# The cleaner's log lines (one per cleaned partition; shards clean in parallel): MB read, seconds.
passes = []
for line in open(f"{out}/broker-compacting.log"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    if "log cleaner compacted partition" in line:
        duration = int(re.search(r"duration_ms=(\d+)", line).group(1)) / 1000
        rate = float(re.search(r'mb_per_s="([0-9.]+)"', line).group(1))
        passes.append((duration, rate * duration))
total = sum(mb for _, mb in passes)
longest = max((d for d, _ in passes), default=0.0)
rate = total / longest if longest else 0.0
with open(f"{out}/summary.md", "w") as summary:
    summary.write(f"dirty compacted log: {dirty_bytes / 2**20:.0f} MiB on disk; the cleaner read {total:.0f} MB in "
                  f"{len(passes)} partition passes, {rate:.0f} MB/s over the shards (paced by "
                  f"log.cleaner.io.max.bytes.per.second); the passes began with the latency run\n\n")
    summary.write("| cleaner | produce p50 ms | p99 ms | p99.9 ms | MB/s | broker CPU-s/GB |\n|---|---|---|---|---|---|\n")
    for name in ["idle", "compacting"]:
        report = json.load(open(f"{out}/{name}.json"))
        latency = report["produce"]["latency"]
        summary.write(f"| {name} | {latency['p50_ms']:.2f} | {latency['p99_ms']:.2f} | {latency['p99_9_ms']:.2f} | "
                      f"{report['produce']['mb_per_second']:.1f} | {report['broker']['cpu_seconds_per_gb_produced']:.2f} |\n")
print(open(f"{out}/summary.md").read())
EOF
