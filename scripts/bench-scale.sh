#!/usr/bin/env bash
# Scale figures for one node (issue 22), in one run on this machine (a benchmark, not a test):
#   - with N partitions (100,000 by default): time to create them, time to write one record to each
#     (idempotent, acks=all), RSS (VmRSS) and descriptors (/proc/PID/fd) idle, SIGKILL then start
#     (recovering every partition) and SIGTERM then start (time to the ready line), RSS and
#     descriptors after each;
#   - produce and fetch throughput and p99 on 8 hot partitions (fjord-bench: acks=1 max, end to end
#     at 50 MB/s acks=all, catch-up read) on a broker holding only them and on the one holding the
#     N partitions as well.
#
#   scripts/bench-scale.sh [--no-build] [--partitions N] [--producers P] [--duration S] [--warmup S]
#                          [--prefill-bytes B] [--open-files-limit L] [--segment-files-max M]
#                          [--skip-baseline] [--keep]
#
# FJORD_BIN / FJORD_BENCH_BIN name other binaries (nothing is built when FJORD_BIN is set).
# --open-files-limit runs the broker under that RLIMIT_NOFILE (soft and hard; default: this shell's).
# --segment-files-max passes issue 22's descriptor budget (--open-segment-files-max) when the build
# has it. bench/scale.py does the work (its docstring lists each phase); it needs the repository's
# .venv (scripts/setup.sh). Writes bench/results/scale-<time>/{summary.md,figures.json,*.json};
# data and broker logs go to target/bench-scale/<time>/ (ext4: the broker writes with O_DIRECT),
# data removed at the end unless --keep. Bounded: every phase has a deadline, the whole run
# RUN_TIMEOUT_S (default 3 hours); only brokers it started are signalled, by PID.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
export PATH="$HOME/.cargo/bin:$PATH"

build=1
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=0 ;;
        --skip-baseline|--keep) args+=("$1") ;;
        --partitions|--producers|--duration|--warmup|--prefill-bytes|--open-files-limit|--segment-files-max|--shards)
            args+=("$1" "${2:?$1 needs a value}"); shift ;;
        *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
    esac
    shift
done

[ -x .venv/bin/python ] || { echo "no .venv: run scripts/setup.sh first" >&2; exit 2; }
if [ -n "${FJORD_BIN:-}" ]; then build=0; fi
if [ "$build" = 1 ]; then cargo build --release --bins; fi
fjord="${FJORD_BIN:-target/release/fjord}"
fjord_bench="${FJORD_BENCH_BIN:-target/release/fjord-bench}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="bench/results/scale-$stamp"
scratch="target/bench-scale/$stamp"
mkdir -p "$out" "$scratch"

exec timeout --signal=TERM --kill-after=60 "${RUN_TIMEOUT_S:-10800}" .venv/bin/python bench/scale.py \
    --out "$out" --scratch "$scratch" \
    --fjord "$fjord" --fjord-bench "$fjord_bench" "${args[@]}"
