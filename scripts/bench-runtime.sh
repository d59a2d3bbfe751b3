#!/usr/bin/env bash
# FP32 latency of Squeeze's CPU runtime against ONNX Runtime (CPU) on the same
# ONNX files and the same inputs, side by side in one run (issue 3, "Speed").
# Builds squeeze-bench-runtime, installs the pinned onnxruntime-node into
# bench/ort/node_modules (once; no download besides the npm registry: the
# package ships the linux-x64 CPU library and ONNXRUNTIME_NODE_INSTALL=skip
# keeps its install script from fetching GPU add-ons), then per run and per
# model times ours (1 thread, default threads) and ORT (same settings) and
# prints a table of medians over the runs.
#
# Usage: scripts/bench-runtime.sh [--runs N] [--seconds S] [MODEL.onnx ...]
#   default models: deploy/models/fashion_mnist_{mlp,cnn}.onnx (those present)
# Env: SQUEEZE_BENCH_BUILD_DIR (default build-bench), BATCHES (default 1,8,64),
#      THREADS (default 1,0; 0 = each runtime's default).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3
seconds=1
models=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    -*) echo "bench-runtime.sh: unknown flag $1" >&2; exit 2 ;;
    *) models+=("$1"); shift ;;
  esac
done
if [ ${#models[@]} -eq 0 ]; then
  for m in deploy/models/fashion_mnist_mlp.onnx deploy/models/fashion_mnist_cnn.onnx; do
    if [ -f "$m" ]; then models+=("$m"); else echo "bench-runtime.sh: skipping missing $m" >&2; fi
  done
fi
[ ${#models[@]} -gt 0 ] || { echo "bench-runtime.sh: no model to time" >&2; exit 2; }

build_dir="${SQUEEZE_BENCH_BUILD_DIR:-build-bench}"
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" >/dev/null
fi
cmake --build "$build_dir" --target squeeze-bench-runtime -j "${BUILD_JOBS:-$(nproc)}" >/dev/null

ort_version=$(node -p "require('./bench/ort/package.json').dependencies['onnxruntime-node']")
if [ "$(node -p "try { require('./bench/ort/node_modules/onnxruntime-node/package.json').version } catch { '' }")" \
     != "$ort_version" ]; then
  ONNXRUNTIME_NODE_INSTALL=skip npm install --no-save --no-audit --no-fund --prefix bench/ort \
    "onnxruntime-node@$ort_version" >&2
fi
if [ ! -f "bench/ort/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1" ]; then
  echo "bench-runtime.sh: onnxruntime-node@$ort_version has no linux-x64 CPU library" >&2
  exit 1
fi

work=$(mktemp -d /tmp/squeeze-bench-runtime-XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs" >&2
reports=()
for run in $(seq "$runs"); do
  for model in "${models[@]}"; do
    name=$(basename "$model" .onnx)
    dir="$work/$run-$name"
    mkdir -p "$dir"
    "$build_dir/bin/squeeze-bench-runtime" --model="$model" --batches="${BATCHES:-1,8,64}" \
      --threads="${THREADS:-1,0}" --seconds="$seconds" --parity_dir="$dir" >"$dir/ours.json"
    node bench/ort/time_ort.js --ours="$dir/ours.json" --parity_dir="$dir" \
      --seconds="$seconds" >"$dir/ort.json"
    reports+=("$dir/ort.json")
    echo "run $run $name: done" >&2
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "onnxruntime-node $ort_version, $build_dir ($(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build_dir/CMakeCache.txt"))"
node bench/ort/report.js "${reports[@]}"
