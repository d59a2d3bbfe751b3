#!/usr/bin/env bash
# GPU parity and timings of the CUDA kernels (core/kernels/cuda) in one call:
# builds the ctest tests labelled "gpu" (cuda_backend_test,
# cuda_lowbit_gemm_test) and squeeze-cuda-lowbit-bench, runs the tests
# (which must run on the device, not skip), then times the low-bit and 2:4
# kernels against cuBLAS float32 at 1024x1024x1024 and the LM's shapes and
# prints a markdown table. Not yet timed on a GPU machine: it builds only
# these three targets' dependencies (here, 2 cores, warm ccache: under a
# minute), and the tests and timings take seconds.
#
#   scripts/gpu-parity.sh
#       On a GPU machine that has the project's build dependencies
#       (scripts/install-deps.sh) and nvcc: configure, build, ctest -L gpu,
#       bench.
#   scripts/gpu-parity.sh --bundle [DIR]
#       On a machine with the dependencies and nvcc but no GPU (the
#       development machines): build for SQUEEZE_CUDA_ARCHITECTURES (default
#       90, the H200 the device tool lends) and copy the gpu test binaries and
#       the bench, with their shared libraries other than CUDA's and the C
#       library's loader, into DIR (default build-gpu-bundle, git-ignored).
#   scripts/gpu-parity.sh --run-bundle [DIR]
#       On the lent GPU machine (CUDA 13 but none of the Debian packages):
#       run what --bundle made. With the device tool:
#         run(command="scripts/gpu-parity.sh --run-bundle", carry=["build-gpu-bundle"], timeout_s=300)
#
# Environment: BUILD_DIR (default build-gpu), JOBS (default nproc),
# SQUEEZE_CUDA_ARCHITECTURES, REPS (timed launches per kernel, default 20).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=build
case "${1:-}" in
  --bundle) mode=bundle ;;
  --run-bundle) mode=run-bundle ;;
  "") ;;
  *) echo "usage: $0 [--bundle [DIR] | --run-bundle [DIR]]" >&2; exit 2 ;;
esac
bundle="${2:-build-gpu-bundle}"
build_dir="${BUILD_DIR:-build-gpu}"
jobs="${JOBS:-$(nproc)}"
reps="${REPS:-20}"
targets=(cuda_backend_test cuda_lowbit_gemm_test squeeze-cuda-lowbit-bench)

# The compute capability of GPU 0 as CMake spells it (9.0 -> 90), or "".
device_arch() {
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .'
}

configure_and_build() {
  local arch="$1"
  if [[ ! -f /usr/local/cuda/bin/nvcc ]]; then
    echo "gpu-parity: no nvcc at /usr/local/cuda/bin/nvcc: CMake configures no CUDA targets" >&2
    exit 1
  fi
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSQUEEZE_CUDA_ARCHITECTURES="$arch" >/dev/null
  ninja -C "$build_dir" -j "$jobs" "${targets[@]}"
}

# Fails when a device test skipped itself (a GPU run must not pass by
# skipping); reads the gtest output on stdin.
no_device_skips() {
  if grep -q 'no CUDA device'; then
    echo "gpu-parity: device tests skipped themselves: the CUDA runtime saw no device" >&2
    return 1
  fi
}

if [[ "$mode" == build ]]; then
  arch="${SQUEEZE_CUDA_ARCHITECTURES:-$(device_arch)}"
  arch="${arch:-80;86;87;89;90}"
  echo "== build (CUDA architectures $arch)"
  configure_and_build "$arch"
  echo "== ctest -L gpu"
  log="$build_dir/gpu-tests.log"
  rc=0
  ctest --test-dir "$build_dir" -L gpu --output-on-failure -V >"$log" 2>&1 || rc=$?
  grep -E '\[  (PASSED|FAILED|SKIPPED) |tests passed' "$log" || true
  if [[ $rc -ne 0 ]]; then
    tail -n 60 "$log"
    echo "gpu-parity: ctest -L gpu FAILED (full log: $log)" >&2
    exit 1
  fi
  no_device_skips <"$log"
  echo "== timings"
  "$build_dir/bin/squeeze-cuda-lowbit-bench" --reps "$reps"
  exit 0
fi

if [[ "$mode" == bundle ]]; then
  arch="${SQUEEZE_CUDA_ARCHITECTURES:-90}"
  echo "== build (CUDA architectures $arch) into $build_dir, bundle in $bundle"
  configure_and_build "$arch"
  rm -rf "$bundle"
  mkdir -p "$bundle/bin" "$bundle/lib" "$bundle/libc"
  for t in "${targets[@]}"; do cp "$build_dir/bin/$t" "$bundle/bin/"; done
  # Shared libraries, except CUDA's (the GPU machine has its own, and the
  # driver's must match it); the C library apart, for the loader fallback.
  for t in "${targets[@]}"; do ldd "$build_dir/bin/$t"; done | awk '$3 ~ /^\// {print $3}' | sort -u |
    while read -r lib; do
      case "$(basename "$lib")" in
        libcuda.so* | libcudart.so* | libcublas* | libnv*) ;;
        libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so*) cp -L "$lib" "$bundle/libc/" ;;
        *) cp -L "$lib" "$bundle/lib/" ;;
      esac
    done
  cp -L /lib64/ld-linux-x86-64.so.2 "$bundle/libc/"
  du -sh "$bundle"
  exit 0
fi

# --run-bundle
[[ -d "$bundle/bin" ]] || { echo "gpu-parity: no bundle in $bundle (run --bundle first)" >&2; exit 1; }
cuda_libs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64 \
         $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, "cu13", "lib") for p in nvidia.__path__))' 2>/dev/null); do
  [[ -d "$d" ]] && cuda_libs="$cuda_libs:$d"
done
libs="$(cd "$bundle/lib" && pwd)$cuda_libs"
loader="$(cd "$bundle/libc" && pwd)/ld-linux-x86-64.so.2"
run() {  # the machine's own C library when the binaries accept it, else the bundled one
  if LD_LIBRARY_PATH="$libs" "$bundle/bin/cuda_backend_test" --gtest_list_tests >/dev/null 2>&1; then
    LD_LIBRARY_PATH="$libs" "$@"
  else
    "$loader" --library-path "$libs:$(dirname "$loader")" "$@"
  fi
}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader
status=0
for t in cuda_backend_test cuda_lowbit_gemm_test; do
  echo "== $t"
  if run "$bundle/bin/$t" 2>&1 | tee "/tmp/$t.log" | grep -E '^\[  (FAILED|PASSED|SKIPPED) |Failure|error' ; then :; fi
  if ! grep -q '^\[  PASSED  \]' "/tmp/$t.log" || grep -q '^\[  FAILED  \]' "/tmp/$t.log"; then
    echo "gpu-parity: $t FAILED (full log: /tmp/$t.log)"; tail -n 40 "/tmp/$t.log"; status=1
  fi
  no_device_skips <"/tmp/$t.log" || status=1
done
echo "== timings"
run "$bundle/bin/squeeze-cuda-lowbit-bench" --reps "$reps" || status=1
exit "$status"
