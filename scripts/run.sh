#!/usr/bin/env bash
# Sets up the machine, builds nightjar in release mode and runs the agent on the
# built-in default config (sensor -> compact stdout + /var/log/nightjar/nightjar.log,
# metrics on :2112). Extra arguments go to `nightjar run` (e.g. --set key=value).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh
cargo build --release --locked
if [ "$(id -u)" != 0 ]; then
  echo "nightjar loads eBPF programs: re-running as root with sudo" >&2
  exec sudo ./target/release/nightjar run "$@"
fi
exec ./target/release/nightjar run "$@"
