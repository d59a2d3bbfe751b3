// Which implementation the low-bit GEMMs of core/quant/gemm run, chosen at
// run time. The scalar path is portable C++ and always available; the AVX2
// path needs a CPU with AVX2 and FMA. Callers pass GemmOptions and never test
// the CPU or a macro themselves.
#ifndef SQUEEZE_CORE_QUANT_GEMM_GEMM_DISPATCH_H_
#define SQUEEZE_CORE_QUANT_GEMM_GEMM_DISPATCH_H_

#include "absl/status/statusor.h"

namespace squeeze::core::quant::gemm {

enum class GemmPath {
  // The environment variable SQUEEZE_GEMM_PATH ("scalar" or "avx2") when set,
  // else AVX2 where the CPU has it, else scalar.
  kAuto,
  kScalar,
  kAvx2,
};

struct GemmOptions {
  // Threads the GEMM may use; 0: std::thread::hardware_concurrency().
  int num_threads = 0;
  GemmPath path = GemmPath::kAuto;
};

// Whether this CPU runs the AVX2 path (it needs both AVX2 and FMA).
bool CpuHasAvx2Fma();

// The concrete path (kScalar or kAvx2) for `requested`. FAILED_PRECONDITION
// when kAvx2 is asked for (directly or through SQUEEZE_GEMM_PATH) on a CPU
// without it; INVALID_ARGUMENT for an unknown SQUEEZE_GEMM_PATH value.
absl::StatusOr<GemmPath> ResolveGemmPath(GemmPath requested);

// "scalar" or "avx2" ("auto" for kAuto), for reports.
const char* GemmPathName(GemmPath path);

}  // namespace squeeze::core::quant::gemm

#endif  // SQUEEZE_CORE_QUANT_GEMM_GEMM_DISPATCH_H_
