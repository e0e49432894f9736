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

# The sensor tests again, in a VM on Debian's stock 6.1 kernel (kprobes, fentry and
# BPF-LSM there, whatever this host offers): QEMU TCG, about a minute and a half.
echo "== sensor tests in a VM (scripts/vm-test.sh)"
scripts/vm-test.sh
