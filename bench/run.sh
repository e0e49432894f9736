#!/usr/bin/env bash
# The benchmark harness: builds nightjar in release mode, runs every scenario with its
# baseline measured in the same run, prints one table. Non-zero exit if a scenario failed.
#   sudo bench/run.sh                 # everything (~8 minutes on 2 cores; a first release build adds ~8)
#   BENCH_RUNS=5 bench/run.sh         # more runs per figure
#   BENCH_ONLY=2 bench/run.sh         # one scenario (by its number)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh
cargo build --release --locked -p nightjar -p nightjar-bench
exec python3 bench/harness.py
