#!/usr/bin/env bash
# Installs everything Fjord's build and test suite need on a fresh Debian 12 machine.
# Idempotent: a second run installs nothing and finishes in seconds.
#
#   Debian packages: C toolchain + cmake for librdkafka (rdkafka's cmake-build), kcat for the
#                    e2e suite, fio and iperf3 for the benchmarks, e2fsprogs for the full-disk test.
#   .venv:           Python test clients from tests/e2e/requirements.txt.
#
# Fuzz targets need no extra tool: scripts/test.sh builds them with plain cargo on the stable
# toolchain (see run_fuzz_targets there), so cargo-fuzz is not installed.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

apt_packages=(
    build-essential cmake pkg-config
    libcurl4-openssl-dev libssl-dev zlib1g-dev
    kcat
    python3-venv
    e2fsprogs util-linux
    fio iperf3
    prometheus
)

log() { printf 'setup: %s\n' "$*" >&2; }

install_apt_packages() {
    if ! command -v apt-get >/dev/null 2>&1; then
        log "no apt-get: install these by hand: ${apt_packages[*]}"
        return 0
    fi
    local missing=()
    local package
    for package in "${apt_packages[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$'; then
            missing+=("$package")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "Debian packages already installed"
        return 0
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    log "installing Debian packages: ${missing[*]}"
    # A fresh machine's package lists may be stale or empty (libcurl4-openssl-dev then does not
    # resolve): always update first.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
}

install_python_venv() {
    local requirements="tests/e2e/requirements.txt"
    local stamp=".venv/.requirements.sha256"
    local wanted
    wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
        log ".venv already up to date"
        return 0
    fi
    if [ ! -x .venv/bin/python ]; then
        log "creating .venv"
        python3 -m venv .venv
    fi
    log "installing $requirements into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
    printf '%s\n' "$wanted" >"$stamp"
}

install_apt_packages
install_python_venv
log "done"
