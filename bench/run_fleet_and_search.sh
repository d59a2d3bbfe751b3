#!/usr/bin/env bash
# Issue 6 end to end on this machine, through the real daemon, worker and
# CLI: a fleet job on the Fashion-MNIST CNN for four device profiles
# (deploy/demo/cnn-fleet.textproto) and a constraint search on the reference
# LM (deploy/demo/lm-search.textproto). Prints each job's variants with
# `squeeze pareto` (table, then CSV) and the JSON of every variant to
# $out/*.json. The local worker is started with --device_profile
# x86-avx2-server (the daemon's --local_device), so x86-avx2-server variants
# are MEASURED and carry the roofline's prediction error; the others are
# PREDICTED.
#
# Usage: bench/run_fleet_and_search.sh [--out DIR] [--images N]
set -euo pipefail
cd "$(dirname "$0")/.."
out=/tmp/squeeze-fleet-search
images=2000
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --images) images="$2"; shift 2 ;;
    *) echo "run_fleet_and_search.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
bin="${SQUEEZE_BUILD_DIR:-build}/bin"
ninja -C "${SQUEEZE_BUILD_DIR:-build}" squeezed squeeze-worker squeeze make_lm_job_files make_fashion_mnist_dataset >/dev/null
rm -rf "$out" && mkdir -p "$out/data"
. bench/private_daemon.sh
start_private_daemon "$out" "$bin"

"$bin/make_fashion_mnist_dataset" --out="$out/fashion.safetensors" --count="$images"
"$bin/make_lm_job_files" --out="$out/lm" --context=64 --calibration_windows=64 --evaluation_windows=64

fleet=$("${squeeze[@]}" submit deploy/models/fashion_mnist_cnn.onnx --calibration "$out/fashion.safetensors" \
          --spec deploy/demo/cnn-fleet.textproto)
start=$(date +%s)
"${squeeze[@]}" watch "$fleet" >/dev/null
echo "== fleet job $fleet ($(( $(date +%s) - start )) s): CNN, $images test images"
"${squeeze[@]}" pareto "$fleet"
"${squeeze[@]}" pareto "$fleet" --csv > "$out/fleet.csv"
"${squeeze[@]}" --json pareto "$fleet" > "$out/fleet.json"

search=$("${squeeze[@]}" submit "$out/lm/lm.onnx" --calibration "$out/lm/lm_calibration.safetensors" \
           --evaluation "$out/lm/lm_evaluation.safetensors" --spec deploy/demo/lm-search.textproto)
start=$(date +%s)
"${squeeze[@]}" watch "$search" >/dev/null
echo "== search job $search ($(( $(date +%s) - start )) s): LM, 64 held-out windows of 64 tokens"
"${squeeze[@]}" pareto "$search"
"${squeeze[@]}" pareto "$search" --csv > "$out/search.csv"
"${squeeze[@]}" --json pareto "$search" > "$out/search.json"
"${squeeze[@]}" --json status "$search" > "$out/search-job.json"
echo "CSV and JSON in $out"
