#!/usr/bin/env bash
# Coverage-guided fuzzing: the harnesses of fuzz/harness/ under libFuzzer (cargo-fuzz, on
# the nightly toolchain), all targets at once for a bounded time each. Fails on a panic
# or abort (an allocation the system refuses aborts), an input that takes over 10 s (a
# hang), or RSS beyond 2 GiB. Without a sanitizer: the code under test is safe Rust, and
# AddressSanitizer would double the build and halve the inputs tried.
# Not part of scripts/test.sh (its build alone takes minutes): the test command replays
# the same harnesses on the stable toolchain instead (src/fuzz_replay.rs). Run this for
# a deeper search; it installs cargo-fuzz on first use.
#   NIGHTJAR_FUZZ_SECS=30     seconds per target
#   NIGHTJAR_FUZZ_ONLY="a b"  only these targets
# The corpus each run finds is kept in fuzz/corpus/<target> (not in git) and seeds the
# next run; a failing input is written to fuzz/artifacts/<target>/ (rerun it with
# `cargo +nightly fuzz run --fuzz-dir fuzz --sanitizer none <target> <file>`). Add it to
# fuzz/seeds/<target>/ with the fix: the test command replays every seed.
#
# To add a target: fuzz/harness/<name>.rs, fuzz/fuzz_targets/<name>.rs, a [[bin]] in
# fuzz/Cargo.toml, a line in src/fuzz_replay.rs, and a line below:
# name|seed files or directories (read only)|longest input in bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

fuzz_pin="0.13.2"
if ! cargo fuzz --version 2>/dev/null | grep -qF "$fuzz_pin"; then
  echo "[fuzz] cargo install cargo-fuzz $fuzz_pin"
  cargo install -q --locked cargo-fuzz --version "$fuzz_pin"
fi

TARGETS=(
  "config|config/default.yaml config/docker fuzz/seeds/config|65536"
  "policy|config/policies fuzz/seeds/policy|65536"
  "control_protocol|fuzz/seeds/control_protocol|8192"
  "tail_lines|tests/corpus/tetragon fuzz/seeds/tail_lines|8192"
)

secs="${NIGHTJAR_FUZZ_SECS:-30}"
only="${NIGHTJAR_FUZZ_ONLY:-}"
logs="target/fuzz-logs"
mkdir -p "$logs"

echo "[fuzz] building the targets (cargo +nightly fuzz build)"
cargo +nightly fuzz build --fuzz-dir fuzz --sanitizer none

pids=()
names=()
for t in "${TARGETS[@]}"; do
  IFS='|' read -r name seeds max_len <<<"$t"
  if [ -n "$only" ] && [[ " $only " != *" $name "* ]]; then
    continue
  fi
  mkdir -p "fuzz/corpus/$name" "fuzz/artifacts/$name"
  # libFuzzer reads directories: a seed file joins the corpus.
  seed_dirs=()
  for s in $seeds; do
    if [ -f "$s" ]; then cp "$s" "fuzz/corpus/$name/"; else seed_dirs+=("$s"); fi
  done
  cargo +nightly fuzz run --fuzz-dir fuzz --sanitizer none "$name" "fuzz/corpus/$name" "${seed_dirs[@]}" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -max_len="$max_len" -print_final_stats=1 >"$logs/$name.log" 2>&1 &
  pids+=("$!")
  names+=("$name")
done

failed=0
for i in "${!pids[@]}"; do
  name="${names[$i]}"
  if wait "${pids[$i]}"; then
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$name.log" | grep -o '[0-9]*$' || echo '?')"
    echo "[fuzz] $name: ok, $runs inputs in ${secs} s"
  else
    failed=1
    echo "[fuzz] $name: FAILED (log: $logs/$name.log, input in fuzz/artifacts/$name/)"
    tail -n 40 "$logs/$name.log"
  fi
done
exit "$failed"
