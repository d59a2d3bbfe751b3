// Which implementation the low-bit GEMMs of core/quant/gemm run, chosen at
// run time. The scalar path is portable C++ and always available; the AVX2
// path needs a CPU with AVX2 and FMA; the two VNNI paths add the int8
// dot-product instruction vpdpbusd (u8 x s8 -> s32, 4 products per 32-bit
// lane) for the int8 GEMM on packed weight panels: AVX-VNNI on ymm registers
// (AVX2 + FMA + AVX-VNNI) and AVX-512 VNNI on zmm (AVX-512F + AVX512_VNNI,
// plus AVX2 + FMA for the float kernels, which they share with the AVX2
// path). Callers pass GemmOptions and never test the CPU or a macro
// themselves.
#ifndef SQUEEZE_CORE_QUANT_GEMM_GEMM_DISPATCH_H_
#define SQUEEZE_CORE_QUANT_GEMM_GEMM_DISPATCH_H_

#include "absl/status/statusor.h"

namespace squeeze::core::quant::gemm {

enum class GemmPath {
  // The environment variable SQUEEZE_GEMM_PATH ("scalar", "avx2", "avxvnni"
  // or "avx512vnni") when set, else the first of avx512vnni, avxvnni, avx2,
  // scalar that the CPU runs.
  kAuto,
  kScalar,
  kAvx2,
  kAvxVnni,
  kAvx512Vnni,
};

struct GemmOptions {
  // Threads the GEMM may use; 0: std::thread::hardware_concurrency().
  int num_threads = 0;
  GemmPath path = GemmPath::kAuto;
};

// Whether this CPU runs the AVX2 path (it needs both AVX2 and FMA).
bool CpuHasAvx2Fma();

// Whether this CPU runs `path` (kAuto and kScalar: always).
bool CpuRunsGemmPath(GemmPath path);

// The concrete path (not kAuto) for `requested`. FAILED_PRECONDITION when a
// path is asked for (directly or through SQUEEZE_GEMM_PATH) on a CPU without
// it; INVALID_ARGUMENT for an unknown SQUEEZE_GEMM_PATH value.
absl::StatusOr<GemmPath> ResolveGemmPath(GemmPath requested);

// "scalar", "avx2", "avxvnni" or "avx512vnni" ("auto" for kAuto), for reports.
const char* GemmPathName(GemmPath path);

}  // namespace squeeze::core::quant::gemm

#endif  // SQUEEZE_CORE_QUANT_GEMM_GEMM_DISPATCH_H_
