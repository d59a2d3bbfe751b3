#!/usr/bin/env bash
# Service benchmark: starts squeezed with no workers on loopback in a
# temporary data directory, uploads the demo model, runs squeeze-loadgen
# (32 clients, bounded by time and count) and stops the daemon.
# Usage: bench/run_service_bench.sh [extra squeeze-loadgen flags]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${SQUEEZE_BUILD_DIR:-build}/bin"
data=$(mktemp -d /tmp/squeeze-bench-XXXXXX)
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$data"' EXIT
token=bench-token-0123456789
printf 'tenant bench %s\n' "$token" > "$data/tokens"
"$bin/squeezed" --data_dir="$data" --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 \
  --cpu_workers=0 --gpu_workers=0 --port_file="$data/ports" >"$data/log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -f "$data/ports" ] && break; sleep 0.1; done
addr=$(sed -n 's/^grpc=//p' "$data/ports")
# `squeeze submit` uploads the model (and queues one job); the load uses its digest.
sha=$(sha256sum deploy/demo/mlp.safetensors | cut -d' ' -f1)
"$bin/squeeze" --addr "$addr" --token "$token" submit deploy/demo/mlp.safetensors >/dev/null
"$bin/squeeze-loadgen" --addr "$addr" --token "$token" --model "$sha" --clients 32 "$@"
