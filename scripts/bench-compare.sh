#!/usr/bin/env bash
# Fjord against a peer broker (Tansu, the Kafka-compatible broker in Rust, memory engine) and
# against the machine's own limits, in one run on this machine:
#
#   1. limits   fio: O_DIRECT sequential write and read, 1 MiB blocks, and a buffered read with a
#               cold page cache (MB/s); 4 KiB append + fdatasync (latency); iperf3: loopback TCP,
#               1 and 2 streams (MB/s)
#   2. runs     every workload of bench/workloads/ against Fjord and Tansu, alternating brokers
#               run by run (F T, T F, F T, ...), each run on a freshly started broker
#   3. summary  medians over runs, ratios Fjord/Tansu and Fjord/limit, one picture per workload:
#               bench/results/<UTC time>/summary.md, copied to bench/results/latest.md
#
# Usage: scripts/bench-compare.sh [--quick] [--runs N] [--duration S] [--warmup S]
#            [--workloads a,b] [--prefill-bytes B] [--shards N] [--no-build] [--no-peer]
#            [--out DIR] [--scratch DIR]
#
# Every load is bounded: fio and iperf3 by their runtime, each fjord-bench call by its workload's
# duration (catch-up: by the prefill timeout plus the workload's read bound) under `timeout`, each
# broker start and stop by a deadline. Only loopback is used. Brokers this script started are
# stopped by PID on exit, also on Ctrl-C.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
export PATH="$HOME/.cargo/bin:$PATH"

command_line="scripts/bench-compare.sh$(printf ' %q' "$@")"

# ---- options -------------------------------------------------------------------------------------

runs=3
duration_seconds=10
warmup_seconds=3
workloads_csv=""
prefill_bytes=""
shards=2
build=1
peer=1
quick=0
out_dir=""
scratch_dir="$repo_root/target/bench-compare"
cache_dir="${FJORD_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fjord}"
limit_seconds=10
loopback_seconds=5
prefill_timeout_seconds=900
# A default run of this catch-up workload reads its 4 GiB topic; --quick reads 512 MiB, still four
# times the broker's 128 MiB batch cache.
quick_prefill_bytes=$((512 * 1024 * 1024))
broker_start_seconds_max=60
broker_stop_seconds_max=30
# fjord-bench's own bound on a silent broker is 10 s, its shutdown at most 25 s more.
bench_margin_seconds=60

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --runs N            runs per broker and workload (default 3)
  --duration S        measured seconds per run, overriding the workload files (default 10)
  --warmup S          warm-up seconds per run, overriding the workload files (default 3)
                      (the catch-up workload keeps its own bound: it reads until caught up)
  --workloads a,b     workload names from bench/workloads/ (default: all)
  --prefill-bytes B   size of the catch-up topic (default: the workload's, 4 GiB)
  --shards N          Fjord shards (default 2)
  --quick             1 run, 5 s measured, 2 s warm-up, 512 MiB catch-up, 5 s limits
  --no-build          use target/release/{fjord,fjord-bench} as they are
  --no-peer           Fjord only (no Tansu install or runs)
  --out DIR           results directory (default bench/results/<UTC date-time>)
  --scratch DIR       broker data and fio files (default target/bench-compare; not tmpfs)
EOF
}

die() { printf 'bench-compare: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'bench-compare: %s\n' "$*" >&2; }

positive_integer() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, got '$2'"; }

# --quick sets defaults that any other flag overrides, wherever it stands.
for arg in "$@"; do
    if [ "$arg" = "--quick" ]; then
        quick=1 runs=1 duration_seconds=5 warmup_seconds=2 limit_seconds=5 prefill_timeout_seconds=300
    fi
done

while [ $# -gt 0 ]; do
    case "$1" in
        --runs) positive_integer "$1" "${2:-}"; runs="$2"; shift 2 ;;
        --duration) positive_integer "$1" "${2:-}"; duration_seconds="$2"; shift 2 ;;
        --warmup) [[ "${2:-}" =~ ^[0-9]+$ ]] || die "--warmup needs an integer"; warmup_seconds="$2"; shift 2 ;;
        --workloads) [ -n "${2:-}" ] || die "--workloads needs a list"; workloads_csv="$2"; shift 2 ;;
        --prefill-bytes) positive_integer "$1" "${2:-}"; prefill_bytes="$2"; shift 2 ;;
        --shards) positive_integer "$1" "${2:-}"; shards="$2"; shift 2 ;;
        --quick) shift ;; # applied before this loop
        --no-build) build=0; shift ;;
        --no-peer) peer=0; shift ;;
        --out) [ -n "${2:-}" ] || die "--out needs a directory"; out_dir="$2"; shift 2 ;;
        --scratch) [ -n "${2:-}" ] || die "--scratch needs a directory"; scratch_dir="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
if [ "$quick" -eq 1 ] && [ -z "$prefill_bytes" ]; then
    prefill_bytes="$quick_prefill_bytes"
fi

run_id="$(date -u +%Y%m%dT%H%M%SZ)"
out_dir="${out_dir:-bench/results/$run_id}"
mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"
work_dir="$scratch_dir/$run_id"
bin_dir="$work_dir/bin"
mkdir -p "$bin_dir"

workloads=()
if [ -n "$workloads_csv" ]; then
    IFS=',' read -r -a workloads <<<"$workloads_csv"
else
    for file in bench/workloads/*.toml; do
        workloads+=("$(basename "$file" .toml)")
    done
fi
for workload in "${workloads[@]}"; do
    [ -f "bench/workloads/$workload.toml" ] || die "no workload bench/workloads/$workload.toml"
done

# ---- processes this script started (stopped by PID on exit) -------------------------------------

started_pids=()

stop_pid() {
    local pid="$1"
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + broker_stop_seconds_max))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "PID $pid did not stop within ${broker_stop_seconds_max}s of SIGTERM; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${started_pids[@]}"; do
        stop_pid "$pid"
    done
    started_pids=()
    rm -rf "$work_dir/data" "$work_dir/fio"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
    local pid="$1" kept=() p
    for p in "${started_pids[@]}"; do
        [ "$p" = "$pid" ] || kept+=("$p")
    done
    started_pids=("${kept[@]}")
}

# A port nobody listens on now (the kernel's pick for a bind to port 0).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits until `pid` accepts connections on `port`; fails if it exits or the deadline passes.
wait_for_port() {
    local pid="$1" port="$2"
    local deadline=$((SECONDS + broker_start_seconds_max))
    while [ "$SECONDS" -lt "$deadline" ]; do
        kill -0 "$pid" 2>/dev/null || return 1
        port_answers "$port" && return 0
        sleep 0.2
    done
    return 1
}

# ---- tools ---------------------------------------------------------------------------------------

install_debian_packages() {
    local missing=() tool
    for tool in fio iperf3 jq; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "install by hand: ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    log "installing ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

tansu_bin="$cache_dir/tansu/bin/tansu"

# Tansu from crates.io, built once into the cache (a first build takes 20-40 minutes on 2 cores).
install_tansu() {
    if [ -x "$tansu_bin" ]; then
        return 0
    fi
    log "installing Tansu into $cache_dir/tansu (cargo install, cached for later runs)"
    mkdir -p "$cache_dir"
    cargo install tansu --locked --features dynostore,libsql --root "$cache_dir/tansu"
    [ -x "$tansu_bin" ] || die "cargo install tansu did not produce $tansu_bin"
}

# Copies the binaries so that a concurrent rebuild cannot swap them in the middle of the runs.
prepare_binaries() {
    if [ "$build" -eq 1 ]; then
        log "cargo build --release -p fjord -p fjord-bench"
        cargo build --release -p fjord -p fjord-bench
    fi
    local binary
    for binary in fjord fjord-bench; do
        [ -x "target/release/$binary" ] || die "target/release/$binary is missing (drop --no-build)"
        cp "target/release/$binary" "$bin_dir/$binary"
    done
    if [ "$peer" -eq 1 ]; then
        cp "$tansu_bin" "$bin_dir/tansu"
    fi
}

# ---- machine limits ------------------------------------------------------------------------------

measure_disk() {
    local fio_dir="$work_dir/fio"
    mkdir -p "$fio_dir"
    local filesystem
    filesystem="$(stat -f -c %T "$fio_dir")"
    if [ "$filesystem" = "tmpfs" ]; then
        die "$fio_dir is on tmpfs (no O_DIRECT, not a disk); give --scratch on the data disk"
    fi
    log "fio: O_DIRECT sequential write, 1 MiB blocks, ${limit_seconds}s"
    fio --name=seqwrite --directory="$fio_dir" --filename=fio-seqwrite --rw=write --bs=1M \
        --size=2G --direct=1 --ioengine=libaio --iodepth=8 --time_based --runtime="$limit_seconds" \
        --end_fsync=1 --output-format=json >"$out_dir/raw/fio-seqwrite.json"
    # Reads of the file just written: O_DIRECT (the device), then buffered with its page cache
    # dropped first (fio's invalidate), which is how sendfile meets data no reader has touched.
    log "fio: O_DIRECT sequential read, 1 MiB blocks, ${limit_seconds}s"
    fio --name=seqread --directory="$fio_dir" --filename=fio-seqwrite --rw=read --bs=1M \
        --size=2G --direct=1 --ioengine=libaio --iodepth=8 --time_based --runtime="$limit_seconds" \
        --output-format=json >"$out_dir/raw/fio-seqread.json"
    log "fio: buffered sequential read, cold page cache, 1 MiB blocks, ${limit_seconds}s"
    fio --name=seqread-buffered --directory="$fio_dir" --filename=fio-seqwrite --rw=read --bs=1M \
        --size=2G --direct=0 --invalidate=1 --ioengine=psync --runtime="$limit_seconds" \
        --output-format=json >"$out_dir/raw/fio-seqread-buffered.json"
    rm -f "$fio_dir/fio-seqwrite"
    log "fio: 4 KiB appends, fdatasync after each, ${limit_seconds}s"
    # fallocate=none: each write extends the file, as a log append does.
    fio --name=append --directory="$fio_dir" --filename=fio-append --rw=write --bs=4k --size=1G \
        --fdatasync=1 --ioengine=sync --fallocate=none --runtime="$limit_seconds" \
        --output-format=json >"$out_dir/raw/fio-append-fdatasync.json"
    rm -rf "$fio_dir"
}

measure_loopback() {
    local port pid streams
    port="$(free_port)"
    iperf3 --server --bind 127.0.0.1 --port "$port" >"$work_dir/iperf3-server.log" 2>&1 &
    pid=$!
    started_pids+=("$pid")
    local deadline=$((SECONDS + 10))
    # ss, not a probe connection: the server would take a probe for a test client.
    until ss -ltn "sport = :$port" | grep -q LISTEN; do
        if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$pid" 2>/dev/null; then
            die "iperf3 server did not start"
        fi
        sleep 0.1
    done
    for streams in 1 2; do
        log "iperf3: loopback TCP, $streams stream(s), ${loopback_seconds}s"
        timeout $((loopback_seconds + 20)) iperf3 --client 127.0.0.1 --port "$port" --time "$loopback_seconds" \
            --parallel "$streams" --json >"$out_dir/raw/iperf3-${streams}stream.json"
    done
    stop_pid "$pid"
    forget_pid "$pid"
}

write_limits() {
    jq -n \
        --slurpfile seq "$out_dir/raw/fio-seqwrite.json" \
        --slurpfile append "$out_dir/raw/fio-append-fdatasync.json" \
        --slurpfile read "$out_dir/raw/fio-seqread.json" \
        --slurpfile readbuf "$out_dir/raw/fio-seqread-buffered.json" \
        --slurpfile net1 "$out_dir/raw/iperf3-1stream.json" \
        --slurpfile net2 "$out_dir/raw/iperf3-2stream.json" \
        '{
            disk_write_mb_per_second: ($seq[0].jobs[0].write.bw_bytes / 1e6),
            disk_read_mb_per_second: ($read[0].jobs[0].read.bw_bytes / 1e6),
            disk_read_buffered_mb_per_second: ($readbuf[0].jobs[0].read.bw_bytes / 1e6),
            append_fdatasync_per_second: $append[0].jobs[0].write.iops,
            append_write_p50_us: ($append[0].jobs[0].write.clat_ns.percentile["50.000000"] / 1e3),
            fdatasync_p50_us: ($append[0].jobs[0].sync.lat_ns.percentile["50.000000"] / 1e3),
            fdatasync_p99_us: ($append[0].jobs[0].sync.lat_ns.percentile["99.000000"] / 1e3),
            fdatasync_p99_9_us: ($append[0].jobs[0].sync.lat_ns.percentile["99.900000"] / 1e3),
            loopback_1stream_mb_per_second: ($net1[0].end.sum_received.bits_per_second / 8e6),
            loopback_2stream_mb_per_second: ($net2[0].end.sum_received.bits_per_second / 8e6)
        }' >"$out_dir/limits.json"
}

# ---- one run: fresh broker, one fjord-bench call, broker stopped ---------------------------------

broker_pid=""
broker_port=""
# Fjord's Prometheus endpoint for the run: fjord-bench reads the broker-side request times there.
broker_metrics_port=""

# start_broker NAME DATA_DIR LOG [PORT]: starts Fjord or Tansu on PORT or a free loopback port.
start_broker() {
    local name="$1" data="$2" broker_log="$3"
    broker_port="${4:-$(free_port)}"
    case "$name" in
        fjord)
            mkdir -p "$data"
            broker_metrics_port="$(free_port)"
            "$bin_dir/fjord" start --data-dir "$data" --listen "127.0.0.1:$broker_port" \
                --advertise "127.0.0.1:$broker_port" --shards "$shards" \
                --metrics-listen "127.0.0.1:$broker_metrics_port" >>"$broker_log" 2>&1 &
            ;;
        tansu)
            # Memory engine: an in-memory object store (DynoStore over object_store's InMemory), so
            # no disk and nothing survives a restart.
            RUST_LOG="${RUST_LOG:-warn}" "$bin_dir/tansu" broker --cluster-id fjord-bench \
                --listener-url "tcp://127.0.0.1:$broker_port" \
                --advertised-listener-url "tcp://127.0.0.1:$broker_port" \
                --storage-engine memory://tansu/ >>"$broker_log" 2>&1 &
            ;;
        *) die "unknown broker $name" ;;
    esac
    broker_pid=$!
    started_pids+=("$broker_pid")
    if ! wait_for_port "$broker_pid" "$broker_port"; then
        stop_pid "$broker_pid"
        forget_pid "$broker_pid"
        return 1
    fi
}

stop_broker() {
    stop_pid "$broker_pid"
    forget_pid "$broker_pid"
    broker_pid=""
}

workload_mode() {
    sed -n 's/^mode *= *"\([a-z0-9]*\)".*/\1/p' "bench/workloads/$1.toml"
}

# The reason a run failed, for the table: fjord-bench's error with the first of the indented lines
# that follow it (one per failed worker), else the fallback.
failure_reason() {
    local bench_log="$1" fallback="$2" line
    line="$(awk '
        /^fjord-bench: error: / { sub(/^fjord-bench: error: /, ""); text = $0; found = 1; next }
        found && /^[[:space:]]/ { workers++; if (workers == 1) { sub(/^[[:space:]]+/, ""); text = text " " $0 } next }
        found { exit }
        END { if (found) { if (workers > 1) text = text " (and " workers - 1 " more)"; print text } }
    ' "$bench_log" 2>/dev/null || true)"
    [ -n "$line" ] || line="$fallback"
    printf '%s\n' "$line" | cut -c1-300
}

# Tansu's memory engine holds the whole topic in RAM: refuse a catch-up topic it cannot hold with
# room to spare (twice its size plus 1 GiB), rather than pushing the machine into swap or the OOM
# killer.
memory_for_topic() {
    local topic_bytes="$1" available_kib
    available_kib="$(awk '/^MemAvailable/ { print $2 }' /proc/meminfo)"
    [ $((available_kib * 1024)) -gt $((topic_bytes * 2 + 1024 * 1024 * 1024)) ]
}

# run_one WORKLOAD BROKER INDEX
run_one() {
    local workload="$1" name="$2" index="$3"
    local dir="$out_dir/runs/$workload"
    local stem="$dir/$name-$index"
    local data="$work_dir/data/$name-$workload-$index"
    local bench_log="$stem.log" broker_log="$work_dir/$name-$workload-$index.broker.log"
    local mode file="bench/workloads/$workload.toml"
    mkdir -p "$dir"
    rm -f "$stem.json" "$stem.svg" "$stem.failed"
    : >"$bench_log"
    mode="$(workload_mode "$workload")"

    local overrides=() bound_seconds
    if [ "$mode" = "consume" ]; then
        [ -z "$prefill_bytes" ] || overrides+=(--prefill-bytes "$prefill_bytes")
        local read_bound
        read_bound="$(sed -n 's/^duration_seconds *= *\([0-9]*\).*/\1/p' "$file")"
        bound_seconds=$((${read_bound:-60} + bench_margin_seconds))
    else
        overrides+=(--duration "$duration_seconds" --warmup "$warmup_seconds")
        bound_seconds=$((duration_seconds + warmup_seconds + bench_margin_seconds))
    fi

    log "$workload: $name run $index"
    # A broker that speaks the protocol differently fails every run the same way: record the first
    # run's reason for the rest instead of repeating a long prefill.
    local earlier
    for earlier in "$dir/$name"-*.failed; do
        if [ -f "$earlier" ] && grep -q 'cannot encode or decode' "$earlier"; then
            cp "$earlier" "$stem.failed"
            log "$workload: $name run $index skipped (protocol error in an earlier run)"
            return 0
        fi
    done
    if [ "$mode" = "consume" ] && [ "$name" = "tansu" ]; then
        local topic_bytes="$prefill_bytes"
        [ -n "$topic_bytes" ] || topic_bytes="$(sed -n 's/^prefill_bytes *= *\([0-9]*\).*/\1/p' "$file")"
        if ! memory_for_topic "${topic_bytes:-0}"; then
            printf 'not enough free memory for the memory engine to hold a %s-byte topic\n' "$topic_bytes" >"$stem.failed"
            return 0
        fi
    fi
    if ! start_broker "$name" "$data" "$broker_log"; then
        failure_reason "$bench_log" "$name did not start listening within ${broker_start_seconds_max}s: $(tail -n1 "$broker_log")" >"$stem.failed"
        cp "$broker_log" "$stem.broker.log"
        rm -rf "$data"
        return 0
    fi

    if [ "$mode" = "consume" ]; then
        # Fill the topic first (with a 1 s read that is thrown away), so that the measured run
        # finds it full and only reads. Fjord restarts in between: the read starts with an empty
        # batch cache and every byte comes from the segment files. Tansu's memory engine would
        # lose the topic in a restart, so Tansu keeps running.
        local filled=0
        if timeout $((prefill_timeout_seconds + bench_margin_seconds)) \
            "$bin_dir/fjord-bench" run -w "$file" --bootstrap "127.0.0.1:$broker_port" --label "$name" \
            --prefill-timeout-seconds "$prefill_timeout_seconds" "${overrides[@]}" --duration 1 \
            --quiet --json "$stem.prefill.json" >>"$bench_log" 2>&1; then
            filled=1
        fi
        rm -f "$stem.prefill.json"
        if [ "$filled" -eq 1 ] && [ "$name" = "fjord" ]; then
            stop_broker
            # The same port: the topic's leader is advertised at it.
            if ! start_broker "$name" "$data" "$broker_log" "$broker_port"; then
                filled=0
                printf 'fjord-bench: error: fjord did not restart after the prefill\n' >>"$bench_log"
            fi
        fi
        if [ "$filled" -eq 0 ]; then
            failure_reason "$bench_log" "prefill failed" >"$stem.failed"
            log "$workload: $name run $index failed: $(cat "$stem.failed")"
            [ -z "$broker_pid" ] || stop_broker
            cp "$broker_log" "$stem.broker.log"
            rm -rf "$data"
            return 0
        fi
    fi

    local status=0
    local metrics_args=()
    [ "$name" != "fjord" ] || metrics_args=(--broker-metrics "127.0.0.1:$broker_metrics_port")
    timeout "$bound_seconds" "$bin_dir/fjord-bench" run -w "$file" --bootstrap "127.0.0.1:$broker_port" \
        --label "$name" --prefill-timeout-seconds "$prefill_timeout_seconds" "${overrides[@]}" \
        --broker-pid "$broker_pid" "${metrics_args[@]}" --json "$stem.json" --svg "$stem.svg" >>"$bench_log" 2>&1 || status=$?
    local broker_alive=1
    kill -0 "$broker_pid" 2>/dev/null || broker_alive=0
    stop_broker
    if [ "$status" -ne 0 ] || [ ! -s "$stem.json" ]; then
        local fallback="fjord-bench exited with status $status"
        [ "$status" -ne 124 ] || fallback="fjord-bench did not finish within ${bound_seconds}s"
        [ "$broker_alive" -eq 1 ] || fallback="$fallback; $name exited during the run"
        failure_reason "$bench_log" "$fallback" >"$stem.failed"
        rm -f "$stem.json"
        cp "$broker_log" "$stem.broker.log"
        log "$workload: $name run $index failed: $(cat "$stem.failed")"
    fi
    rm -rf "$data"
}

# ---- main ----------------------------------------------------------------------------------------

install_debian_packages
command -v python3 >/dev/null 2>&1 || die "python3 is needed for the summary"
if [ "$peer" -eq 1 ]; then
    install_tansu
fi
prepare_binaries
brokers=(fjord)
[ "$peer" -eq 0 ] || brokers+=(tansu)

mkdir -p "$out_dir/raw"
measure_disk
measure_loopback
write_limits
log "limits: $(jq -c . "$out_dir/limits.json")"

tansu_version=""
if [ "$peer" -eq 1 ]; then
    tansu_version="$("$bin_dir/tansu" --version 2>/dev/null | head -n1 || true)"
fi
jq -n \
    --arg date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" \
    --arg commit "$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
    --arg dirty "$(git status --porcelain --untracked-files=no 2>/dev/null | head -c1)" \
    --arg kernel "$(uname -srm)" \
    --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" \
    --arg cores "$(nproc)" \
    --arg memory "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)" \
    --arg filesystem "$(df -T "$scratch_dir" | awk 'NR == 2 { print $2 " (" $1 ")" }')" \
    --arg command "$command_line" \
    --arg tansu "$tansu_version" \
    --arg shards "$shards" \
    --argjson runs "$runs" --argjson duration "$duration_seconds" --argjson warmup "$warmup_seconds" \
    --arg prefill_bytes "$prefill_bytes" \
    --argjson workloads "$(printf '%s\n' "${workloads[@]}" | jq -R . | jq -s .)" \
    --argjson brokers "$(printf '%s\n' "${brokers[@]}" | jq -R . | jq -s .)" \
    '{date: $date, commit: ($commit + (if $dirty == "" then "" else " (with uncommitted changes)" end)),
      kernel: $kernel, cpu: $cpu, cores: $cores, memory: $memory, filesystem: $filesystem,
      command: $command, tansu_version: $tansu, fjord_shards: $shards, runs: $runs,
      duration_seconds: $duration, warmup_seconds: $warmup, prefill_bytes: $prefill_bytes,
      workloads: $workloads, brokers: $brokers}' >"$out_dir/meta.json"

for workload in "${workloads[@]}"; do
    for ((index = 1; index <= runs; index++)); do
        # F T, T F, F T, ...: neither broker always runs first after the other's load.
        order=("${brokers[@]}")
        if [ "${#brokers[@]}" -eq 2 ] && [ $((index % 2)) -eq 0 ]; then
            order=("${brokers[1]}" "${brokers[0]}")
        fi
        for name in "${order[@]}"; do
            run_one "$workload" "$name" "$index"
        done
    done
done

python3 bench/compare/summarize.py --out "$out_dir" --fjord-bench "$bin_dir/fjord-bench"
if [ "$(dirname "$out_dir")" = "$repo_root/bench/results" ]; then
    # latest.md sits one level up: point its picture links into the run's directory.
    sed "s#](\\([^)/]*\\.svg\\))#]($(basename "$out_dir")/\\1)#g" "$out_dir/summary.md" >bench/results/latest.md
    log "table: $out_dir/summary.md (also bench/results/latest.md)"
else
    log "table: $out_dir/summary.md"
fi
rm -rf "$work_dir"
