#!/usr/bin/env bash
# The quick-start demo from a fresh Debian 12 machine: installs what is
# missing, builds, starts squeezed on its embedded defaults (SQLite under
# ./squeeze-data, local CPU workers), submits a real compression job on the
# demo model for three device profiles, streams its progress and prints each
# variant's three-axis report. Idempotent: a daemon this script started
# earlier is reused. Stop it with: kill "$(cat squeeze-data/squeezed.pid)"
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
bin="${SQUEEZE_BUILD_DIR:-build}/bin"
data=squeeze-data
mkdir -p "$data"

# A tenant token for the demo, made once.
if [ ! -f "$data/tokens" ]; then
  token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  umask 077
  printf '# kind name token\ntenant demo %s\n' "$token" > "$data/tokens"
  printf '%s\n' "$token" > "$data/demo.token"
fi

if [ -f "$data/squeezed.pid" ] && kill -0 "$(cat "$data/squeezed.pid")" 2>/dev/null; then
  echo "demo: reusing squeezed (pid $(cat "$data/squeezed.pid"))"
else
  rm -f "$data/ports"
  "$bin/squeezed" --data_dir="$data" --port_file="$data/ports" >"$data/squeezed.log" 2>&1 &
  echo $! > "$data/squeezed.pid"
  for _ in $(seq 100); do [ -f "$data/ports" ] && break; sleep 0.1; done
  if [ ! -f "$data/ports" ]; then
    echo "demo: squeezed did not start; its log:" >&2
    cat "$data/squeezed.log" >&2
    exit 1
  fi
  echo "demo: started squeezed (pid $(cat "$data/squeezed.pid")); log in $data/squeezed.log"
fi
addr=$(sed -n 's/^grpc=//p' "$data/ports")
metrics=$(sed -n 's/^metrics=//p' "$data/ports")
squeeze=("$bin/squeeze" --addr "$addr" --token_file "$data/demo.token")

"${squeeze[@]}" devices
job=$("${squeeze[@]}" submit deploy/demo/mlp.safetensors \
        --calibration deploy/demo/calibration.safetensors \
        --spec deploy/demo/int4-fleet.textproto)
echo "demo: submitted $job"
"${squeeze[@]}" watch "$job"
"${squeeze[@]}" download "$job" --out "$data/artifacts"
echo "demo: metrics at http://$metrics/metrics ; stop the daemon with: kill \$(cat $data/squeezed.pid)"
