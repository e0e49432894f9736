#!/usr/bin/env bash
# Sets up the machine and runs the whole test suite: format, lints, unit and
# integration tests (the sensor tests load real eBPF programs: run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh
# The Python with pyarrow and duckdb that setup.sh installed (Parquet read-back tests).
export NIGHTJAR_PYTHON="${NIGHTJAR_PYTHON:-$HOME/.cache/nightjar/venv/bin/python}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
rustfmt --edition 2021 --check sensor-bpf/src/*.rs sensor-bpf/common/src/lib.rs

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked

# Issue 18's outages at the rate it asks, 5,000 events/s, each alone: inside the suite on
# 2 shared cores the debug-build agent is starved at that rate, so the suite runs them at
# 1,000/s (tests/integration/delivery.rs outage_rate). About 3.5 and 1.5 minutes here.
for s in es_outage sigkill_during_outage; do
  echo "== delivery: $s at 5,000 events/s"
  NIGHTJAR_DELIVERY_RATE=5000 NIGHTJAR_DELIVERY_ONLY="$s" \
    cargo test --locked -p nightjar --test integration delivery::outages_cost_only_delay -- --exact
done

# The sensor tests again, in a VM on Debian's stock 6.1 kernel (kprobes, fentry and
# BPF-LSM there, whatever this host offers): QEMU TCG, about a minute and a half.
echo "== sensor tests in a VM (scripts/vm-test.sh)"
scripts/vm-test.sh
