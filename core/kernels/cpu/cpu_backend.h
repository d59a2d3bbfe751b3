// The CPU implementation of runtime::KernelBackend: ONNX operators on Eigen
// and plain loops, float32 fast paths, other dtypes through float64.
#ifndef SQUEEZE_CORE_KERNELS_CPU_CPU_BACKEND_H_
#define SQUEEZE_CORE_KERNELS_CPU_CPU_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

#include "core/runtime/kernel_backend.h"

namespace squeeze::core::kernels::cpu {

// A backend whose large kernels (GEMM, convolution, pooling) split their
// work over up to `num_threads` threads (0: std::thread::hardware_concurrency).
std::shared_ptr<const runtime::KernelBackend> CreateCpuBackend(int num_threads = 0);

// The ONNX operator types the CPU backend runs, sorted.
std::vector<std::string> CpuSupportedOperators();

}  // namespace squeeze::core::kernels::cpu

#endif  // SQUEEZE_CORE_KERNELS_CPU_CPU_BACKEND_H_
