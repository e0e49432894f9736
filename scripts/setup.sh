#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for building, running and testing nightjar.
# Idempotent: takes seconds when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[setup] %s\n' "$*" >&2; }

# Debian packages the build and the tests use (prometheus: promtool and a real server
# for the metrics integration test).
need_pkgs=()
for p in build-essential pkg-config linux-libc-dev bpftool prometheus; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "apt-get install ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# The eBPF toolchain (nightly rust-src + bpf-linker on the nightly's libLLVM).
scripts/setup-ebpf.sh

# The sensor needs tracefs; mount it if the machine has not.
if [ ! -d /sys/kernel/tracing/events ] && [ "$(id -u)" = 0 ]; then
  log "mounting tracefs at /sys/kernel/tracing"
  mount -t tracefs nodev /sys/kernel/tracing || log "could not mount tracefs (the sensor will say why)"
fi
log "ok"
