// Times the low-bit and N:M CUDA kernels (lowbit_kernels.h) against cuBLAS
// float32 SGEMM on the same Y[m, n] = X[m, k] * W[n, k]^T, operands already
// on the device (no copies timed). Prints a markdown table: the median of
// --reps timed launches each, after warm-ups, measured with CUDA events.
//
//   squeeze-cuda-lowbit-bench [--reps 20]
//
// Weights are random bytes in each format (every byte is a valid packed
// value; the 2:4 indices keep positions 0 and 1), so the numbers say
// nothing about accuracy, only speed.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "core/kernels/cuda/lowbit_kernels.h"

namespace squeeze::core::kernels::cuda {
namespace {

void Check(cudaError_t error, const char* what) {
  if (error != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(error));
    std::exit(1);
  }
}

// A device copy of `count` random bytes (or floats in [-1, 1]).
template <typename T>
T* DeviceRandom(int64_t count, std::mt19937* rng) {
  std::vector<T> host(count);
  if constexpr (std::is_same_v<T, float>) {
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (T& v : host) v = uniform(*rng);
  } else {
    for (T& v : host) v = static_cast<T>((*rng)() & 0xff);
  }
  T* device = nullptr;
  Check(cudaMalloc(&device, std::max<int64_t>(count, 1) * sizeof(T)), "cudaMalloc");
  Check(cudaMemcpy(device, host.data(), count * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
  return device;
}

// Median milliseconds of `reps` launches of `launch`, after 3 warm-ups.
double MedianMs(const std::function<void()>& launch, int reps) {
  cudaEvent_t start, stop;
  Check(cudaEventCreate(&start), "cudaEventCreate");
  Check(cudaEventCreate(&stop), "cudaEventCreate");
  for (int i = 0; i < 3; ++i) launch();
  Check(cudaDeviceSynchronize(), "warm-up");
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    Check(cudaEventRecord(start), "cudaEventRecord");
    launch();
    Check(cudaEventRecord(stop), "cudaEventRecord");
    Check(cudaEventSynchronize(stop), "kernel");
    float ms = 0.0f;
    Check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

struct Shape {
  int64_t m, n, k;
};

int Main(int argc, char** argv) {
  int reps = 20;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::max(1, std::atoi(argv[i + 1]));
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "squeeze-cuda-lowbit-bench: no CUDA device\n");
    return 2;
  }
  cudaDeviceProp prop;
  Check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  cublasHandle_t cublas;
  if (cublasCreate(&cublas) != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "cublasCreate failed\n");
    return 1;
  }
  std::printf("device: %s (sm_%d%d), median of %d launches, operands on the device\n\n", prop.name,
              prop.major, prop.minor, reps);
  std::printf(
      "| m x n x k | cuBLAS fp32 ms | int8 dp4a ms | int4 g64 ms | LUT 4-bit ms | 2:4 CUDA cores ms | 2:4 mma.sp f16 ms |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  std::mt19937 rng(7);
  for (const Shape& s : {Shape{1024, 1024, 1024}, Shape{2048, 192, 512}, Shape{2048, 512, 192}}) {
    float* x = DeviceRandom<float>(s.m * s.k, &rng);
    float* w = DeviceRandom<float>(s.n * s.k, &rng);
    float* y = DeviceRandom<float>(s.m * s.n, &rng);
    uint8_t* xq = DeviceRandom<uint8_t>(s.m * s.k, &rng);
    int8_t* wq = DeviceRandom<int8_t>(s.n * s.k, &rng);
    int32_t* acc = nullptr;
    Check(cudaMalloc(&acc, s.m * s.n * sizeof(int32_t)), "cudaMalloc");
    const float one = 1.0f, zero = 0.0f;
    // Row-major Y = X W^T is column-major Y^T = W X^T.
    const double cublas_ms = MedianMs([&] {
      cublasSgemm(cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(s.n), static_cast<int>(s.m),
                  static_cast<int>(s.k), &one, w, static_cast<int>(s.k), x, static_cast<int>(s.k), &zero, y,
                  static_cast<int>(s.n));
    }, reps);
    const double int8_ms =
        MedianMs([&] { Check(LaunchInt8MatMulInt32(xq, wq, s.m, s.n, s.k, acc), "int8"); }, reps);

    DeviceNibbleWeights nibble;
    nibble.out = s.n;
    nibble.in = s.k;
    nibble.groups = s.k / 64;
    nibble.group_width = 64;
    nibble.packed = DeviceRandom<uint8_t>(s.n * ((s.k + 1) / 2), &rng);
    nibble.scales = DeviceRandom<float>(s.n * nibble.groups, &rng);
    const double int4_ms = MedianMs([&] { Check(LaunchNibbleGemm(x, s.m, nibble, y), "int4"); }, reps);

    DeviceCodebookWeights lut;
    lut.out = s.n;
    lut.in = s.k;
    lut.bits = 4;
    lut.packed = DeviceRandom<uint8_t>(s.n * ((s.k * 4 + 7) / 8), &rng);
    lut.codebook = DeviceRandom<float>(16, &rng);
    const double lut_ms = MedianMs([&] { Check(LaunchLutGemm(x, s.m, lut, y), "lut"); }, reps);

    DeviceNmWeights nm;
    nm.out = s.n;
    nm.in = s.k;
    nm.n = 2;
    nm.m = 4;
    nm.index_bits = 2;
    nm.row_index_bytes = s.k / 2 * 2 / 8;
    nm.values = DeviceRandom<float>(s.n * s.k / 2, &rng);
    // 0x44 keeps positions 0 and 1 of every group (increasing, as mma.sp::ordered_metadata needs).
    std::vector<uint8_t> indices(s.n * nm.row_index_bytes, 0x44);
    uint8_t* device_indices = nullptr;
    Check(cudaMalloc(&device_indices, indices.size()), "cudaMalloc");
    Check(cudaMemcpy(device_indices, indices.data(), indices.size(), cudaMemcpyHostToDevice), "cudaMemcpy");
    nm.indices = device_indices;
    const double nm_ms = MedianMs([&] { Check(LaunchNmSparseGemm(x, s.m, nm, y), "nm"); }, reps);
    const double tc_ms =
        prop.major >= 8 ? MedianMs([&] { Check(LaunchNmSparseGemmTensorCores(x, s.m, nm, y), "mma.sp"); }, reps) : 0.0;

    std::printf(
        "| %lldx%lldx%lld | %.4f | %.4f (%.2fx) | %.4f (%.2fx) | %.4f (%.2fx) | %.4f (%.2fx) | %.4f (%.2fx) |\n",
        static_cast<long long>(s.m), static_cast<long long>(s.n), static_cast<long long>(s.k), cublas_ms, int8_ms,
        cublas_ms / int8_ms, int4_ms, cublas_ms / int4_ms, lut_ms, cublas_ms / lut_ms, nm_ms, cublas_ms / nm_ms,
        tc_ms, tc_ms > 0 ? cublas_ms / tc_ms : 0.0);
    for (const void* p : {static_cast<const void*>(x), static_cast<const void*>(w), static_cast<const void*>(y),
                          static_cast<const void*>(xq), static_cast<const void*>(wq), static_cast<const void*>(acc),
                          static_cast<const void*>(nibble.packed), static_cast<const void*>(nibble.scales),
                          static_cast<const void*>(lut.packed), static_cast<const void*>(lut.codebook),
                          static_cast<const void*>(nm.values), static_cast<const void*>(nm.indices)}) {
      cudaFree(const_cast<void*>(p));
    }
  }
  std::printf("\n(x) = cuBLAS time / kernel time: above 1 is faster than cuBLAS fp32.\n");
  cublasDestroy(cublas);
  return 0;
}

}  // namespace
}  // namespace squeeze::core::kernels::cuda

int main(int argc, char** argv) { return squeeze::core::kernels::cuda::Main(argc, argv); }
