#!/usr/bin/env bash
# Issue 14's hook-cost figures on kernels with kprobes: runs sensor/tests/hookcost.rs in the
# VMs of scripts/vm-test.sh (Debian 6.1 and 6.12 under QEMU TCG: emulated, so the figures
# are far above a real CPU's and only comparable with each other) and prints its
# `hook-cost:` lines: ns per call of a uprobe, a syscall tracepoint and a generic kprobe
# whose selectors do not match, from the kernel's BPF stats (run_time_ns / run_cnt).
#   sudo bench/vm-hook-cost.sh        # NIGHTJAR_HOOK_COST_CALLS is not passed into the guest
set -euo pipefail
cd "$(dirname "$0")/.."
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
NIGHTJAR_VM_TEST_ARGS="hook_cost --nocapture" scripts/vm-test.sh 2>&1 | tee "$log" >&2
echo
echo "hook cost per call, selector not matching (BPF stats, QEMU TCG, $(date -u '+%Y-%m-%d %H:%M') UTC)"
grep -o 'hook-cost: .*' "$log" | sed 's/^hook-cost: /- /'
grep -q 'hook-cost: .* kprobe ' "$log" || { echo "no kprobe figure: see the output above" >&2; exit 1; }
