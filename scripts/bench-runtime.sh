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
# The language model (a Hugging Face checkpoint directory) is first written as
# ONNX with squeeze-export-hf-onnx; both runtimes then time that file on the
# same int64 token ids (uniform over the vocabulary) at the full window.
#
# Usage: scripts/bench-runtime.sh [--runs N] [--seconds S] [--lm DIR | --no-lm] [MODEL.onnx ...]
#   default models: deploy/models/fashion_mnist_{mlp,cnn}.onnx (those present)
#   and the LM deploy/models/lm (when present; --no-lm skips it)
# Env: SQUEEZE_BENCH_BUILD_DIR (default build-bench), BATCHES (default 1,8,64),
#      THREADS (default 1,0; 0 = each runtime's default), LM_BATCHES (default
#      1,4), LM_SEQ (default 128 tokens).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3
seconds=1
models=()
lm_dir=deploy/models/lm
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --lm) lm_dir="$2"; shift 2 ;;
    --no-lm) lm_dir=""; shift ;;
    -*) echo "bench-runtime.sh: unknown flag $1" >&2; exit 2 ;;
    *) models+=("$1"); shift ;;
  esac
done
if [ ${#models[@]} -eq 0 ]; then
  for m in deploy/models/fashion_mnist_mlp.onnx deploy/models/fashion_mnist_cnn.onnx; do
    if [ -f "$m" ]; then models+=("$m"); else echo "bench-runtime.sh: skipping missing $m" >&2; fi
  done
fi
if [ -n "$lm_dir" ] && [ ! -f "$lm_dir/config.json" ]; then
  echo "bench-runtime.sh: skipping missing LM $lm_dir" >&2
  lm_dir=""
fi
[ ${#models[@]} -gt 0 ] || [ -n "$lm_dir" ] || { echo "bench-runtime.sh: no model to time" >&2; exit 2; }

build_dir="${SQUEEZE_BENCH_BUILD_DIR:-build-bench}"
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" >/dev/null
fi
cmake --build "$build_dir" --target squeeze-bench-runtime squeeze-export-hf-onnx \
  -j "${BUILD_JOBS:-$(nproc)}" >/dev/null

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
# Per model: the flags squeeze-bench-runtime needs besides --model.
model_flags=()
for model in "${models[@]}"; do model_flags+=("--batches=${BATCHES:-1,8,64}"); done
if [ -n "$lm_dir" ]; then
  lm_onnx="$work/$(basename "$lm_dir").onnx"
  "$build_dir/bin/squeeze-export-hf-onnx" --checkpoint="$lm_dir" --out="$lm_onnx"
  vocab=$(node -p "JSON.parse(require('fs').readFileSync('$lm_dir/config.json', 'utf8')).vocab_size")
  models+=("$lm_onnx")
  model_flags+=("--batches=${LM_BATCHES:-1,4} --seq_len=${LM_SEQ:-128} --int_high=$vocab")
fi

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs" >&2
reports=()
for run in $(seq "$runs"); do
  for i in "${!models[@]}"; do
    model="${models[$i]}"
    name=$(basename "$model" .onnx)
    dir="$work/$run-$name"
    mkdir -p "$dir"
    # shellcheck disable=SC2086  # model_flags entries are word lists
    "$build_dir/bin/squeeze-bench-runtime" --model="$model" ${model_flags[$i]} \
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
