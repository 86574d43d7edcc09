#!/usr/bin/env bash
# Fjord's whole test suite, the one command the README names: `scripts/test.sh`.
#
#   1. scripts/setup.sh            Debian packages + .venv (idempotent)
#   2. cargo fmt / cargo clippy    formatting and lints, warnings denied
#   2. cargo build --release       the `fjord` binary every end-to-end test runs
#   3. cargo test --release        unit tests + Rust end-to-end tests (rdkafka, tests/tests/)
#   4. fuzz targets                built and run FJORD_FUZZ_SECONDS each (default 20)
#   5. pytest tests/e2e            Python clients: kcat, confluent-kafka, kafka-python, raw sockets
#
# Exits non-zero on the first failure. Budget: CI gives 90 minutes on 2 cores, librdkafka's cmake
# build included; keep every step bounded.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

fuzz_seconds="${FJORD_FUZZ_SECONDS:-20}"
fuzz_targets=(request_decode segment_recovery producer_snapshot txn_state group_records txn_index segment_index record_batch epoch_checkpoint)

step() { printf '\n==> %s\n' "$*" >&2; }

# Unmounts what an interrupted e2e run may have left mounted under target/e2e (the full-disk test's
# loop filesystem, the read-only bind mount), then removes the old scratch directories.
clean_e2e_scratch() {
    local scratch="$repo_root/target/e2e"
    [ -d "$scratch" ] || return 0
    if command -v findmnt >/dev/null 2>&1; then
        findmnt -rn -o TARGET | { grep -F "$scratch/" || true; } | sort -r | while read -r mount_point; do
            umount "$mount_point" 2>/dev/null || umount -l "$mount_point" 2>/dev/null || true
        done
    fi
    rm -rf "$scratch"
}

# Fuzz targets on the stable toolchain, without cargo-fuzz: cargo-fuzz only adds these flags to a
# plain `cargo build`. `-Cpasses=sancov-module` plus the sanitizer-coverage llvm-args give libFuzzer
# its coverage feedback (all stable `-C` flags); `-Zsanitizer=address` is the one unstable flag, and
# RUSTC_BOOTSTRAP=1 lets the stable compiler accept it (the stable toolchain ships the ASan runtime,
# librustc-stable_rt.asan.a). `--target` keeps the flags off build scripts and proc macros.
# libfuzzer-sys compiles libFuzzer itself with the system C++ compiler (build-essential).
# The cargo-fuzz equivalent for local work: `RUSTC_BOOTSTRAP=1 cargo fuzz run request_decode`.
run_fuzz_targets() {
    local host
    host="$(rustc -vV | sed -n 's/^host: //p')"
    local rustflags=(
        -Cpasses=sancov-module
        -Cllvm-args=-sanitizer-coverage-level=4
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
        -Cllvm-args=-sanitizer-coverage-pc-table
        -Cllvm-args=-sanitizer-coverage-trace-compares
        --cfg fuzzing
        -Cdebug-assertions
        -Coverflow-checks
        -Zsanitizer=address
    )
    step "fuzz: build ${fuzz_targets[*]} (stable toolchain, ASan + sanitizer coverage)"
    RUSTC_BOOTSTRAP=1 RUSTFLAGS="${rustflags[*]}" \
        cargo build --release --manifest-path fuzz/Cargo.toml --target "$host" --bins

    if [ "$fuzz_seconds" -le 0 ]; then
        step "fuzz: FJORD_FUZZ_SECONDS=$fuzz_seconds, targets built but not run"
        return 0
    fi
    local target
    for target in "${fuzz_targets[@]}"; do
        local corpus="fuzz/corpus/$target"
        local artifacts="fuzz/artifacts/$target/"
        mkdir -p "$corpus" "$artifacts"
        .venv/bin/python fuzz/make_seeds.py "$target" "$corpus"
        step "fuzz: run $target for ${fuzz_seconds}s"
        "fuzz/target/$host/release/$target" \
            -max_total_time="$fuzz_seconds" \
            -max_len=16384 \
            -timeout=10 \
            -rss_limit_mb=2048 \
            -print_final_stats=1 \
            -artifact_prefix="$artifacts" \
            "$corpus" 2>"fuzz/artifacts/$target.log" || {
            echo "fuzz target $target failed; input saved under $artifacts; log tail:" >&2
            tail -n 60 "fuzz/artifacts/$target.log" >&2
            return 1
        }
        grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "fuzz/artifacts/$target.log" >&2 || true
    done
}

step "setup"
bash scripts/setup.sh

step "rustfmt and clippy (warnings denied)"
# rustfmt and clippy are rustup components; a toolchain without them (nothing can be fetched at
# run time) skips this step loudly rather than failing the suite.
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --all --check
else
    echo "warning: rustfmt is not installed; formatting not checked" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --release --workspace --all-targets --no-deps -- -D warnings
else
    echo "warning: clippy is not installed; lints not checked" >&2
fi

step "cargo build --release --workspace --bins"
cargo build --release --workspace --bins
export FJORD_BIN="$repo_root/target/release/fjord"
test -x "$FJORD_BIN" || { echo "no fjord binary at $FJORD_BIN after the build" >&2; exit 1; }

clean_e2e_scratch

step "cargo test --release --workspace"
cargo test --release --workspace
# fjord-bench against a real broker (ignored in plain `cargo test`: it needs the binary above).
cargo test --release -p fjord-bench --test smoke -- --ignored

run_fuzz_targets

step "pytest tests/e2e"
clean_e2e_scratch
.venv/bin/pytest -x -q tests/e2e --timeout 300
