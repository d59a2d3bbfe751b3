# Sourced by the end-to-end measurement scripts (bench/run_fleet_and_search.sh,
# deploy/demo/run_quant_passes.sh): `start_private_daemon OUT BIN` starts
# BIN/squeezed on free loopback ports with its data under OUT/data and a fresh
# tenant token, stops it when the script exits, and sets `squeeze` to the CLI
# command for that tenant (an array: "${squeeze[@]}" submit ...).
start_private_daemon() {
  local out="$1" bin="$2" token addr
  mkdir -p "$out/data"
  token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf 'tenant bench %s\n' "$token" > "$out/data/tokens"
  "$bin/squeezed" --data_dir="$out/data" --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 \
    --port_file="$out/ports" >"$out/squeezed.log" 2>&1 &
  private_daemon_pid=$!
  trap 'kill $private_daemon_pid 2>/dev/null || true' EXIT
  for _ in $(seq 100); do [ -f "$out/ports" ] && break; sleep 0.1; done
  addr=$(sed -n 's/^grpc=//p' "$out/ports")
  squeeze=("$bin/squeeze" --addr "$addr" --token "$token")
}
