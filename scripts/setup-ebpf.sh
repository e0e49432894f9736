#!/usr/bin/env bash
# One-time, idempotent setup of what the eBPF build needs on a fresh Debian 12 machine:
#   - rust-src for the nightly toolchain (aya-ebpf builds core for bpfel-unknown-none)
#   - bpf-linker built against the nightly toolchain's own libLLVM
# Takes seconds when everything is already present.
set -euo pipefail

NIGHTLY="${NIGHTJAR_NIGHTLY:-nightly}"
# Pinned: a new bpf-linker release must not change the programs a clean clone builds.
BPF_LINKER_VERSION="0.13.0"
log() { printf '[setup-ebpf] %s\n' "$*" >&2; }

if ! rustup toolchain list | grep -q "^${NIGHTLY}"; then
  log "installing toolchain ${NIGHTLY}"
  rustup toolchain install "${NIGHTLY}" --profile minimal
fi
if ! rustup component list --toolchain "${NIGHTLY}" --installed | grep -q '^rust-src'; then
  log "adding rust-src to ${NIGHTLY}"
  rustup component add rust-src --toolchain "${NIGHTLY}"
fi

sysroot="$(rustc +"${NIGHTLY}" --print sysroot)"
llvm_so="$(ls "${sysroot}"/lib/libLLVM.so.*-rust-*-nightly 2>/dev/null | head -n1 || true)"
if [ -z "${llvm_so}" ]; then
  echo "setup-ebpf: no libLLVM.so.*-rust-*-nightly in ${sysroot}/lib; install the nightly toolchain with rustup first" >&2
  exit 1
fi
prefix="${NIGHTJAR_LLVM_PREFIX:-${HOME}/.cache/nightjar/llvm}"
mkdir -p "${prefix}/lib"
ln -sfn "${llvm_so}" "${prefix}/lib/libLLVM.so"
ln -sfn "${llvm_so}" "${prefix}/lib/$(basename "${llvm_so}")"

have="$(bpf-linker --version 2>/dev/null || true)"
if [ "${have}" = "bpf-linker ${BPF_LINKER_VERSION}" ]; then
  log "bpf-linker present: ${have}"
else
  log "building bpf-linker ${BPF_LINKER_VERSION} against ${llvm_so} (a few minutes, once; found: ${have:-none})"
  LLVM_PREFIX="${prefix}" LD_LIBRARY_PATH="${prefix}/lib${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}" \
    cargo +"${NIGHTLY}" install bpf-linker --version "${BPF_LINKER_VERSION}" --locked --force \
    --no-default-features --features llvm-22
fi
log "ok"
