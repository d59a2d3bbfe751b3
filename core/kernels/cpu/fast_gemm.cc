#include "core/kernels/cpu/fast_gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace squeeze::core::kernels::cpu {
namespace internal {

// Same test as core/quant/gemm's CpuHasAvx2Fma(), which this library cannot
// link (squeeze_quant_gemm depends on it).
bool CpuRunsAvx2() {
#if defined(SQUEEZE_FAST_GEMM_AVX2)
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

bool CpuRunsAvx512() {
#if defined(SQUEEZE_FAST_GEMM_AVX512)
  static const bool has = CpuRunsAvx2() && __builtin_cpu_supports("avx512f");
  return has;
#else
  return false;
#endif
}

}  // namespace internal
namespace {

enum class Kernels { kEigen, kAvx2, kAvx512 };

Kernels ChosenKernels() {
  static const Kernels chosen = [] {
    const char* env = std::getenv("SQUEEZE_CPU_GEMM");
    if (env != nullptr && std::strcmp(env, "eigen") == 0) return Kernels::kEigen;
    if (!internal::CpuRunsAvx2()) return Kernels::kEigen;
    if (env != nullptr && std::strcmp(env, "avx2") == 0) return Kernels::kAvx2;
    return internal::CpuRunsAvx512() ? Kernels::kAvx512 : Kernels::kAvx2;
  }();
  return chosen;
}

}  // namespace

bool FastGemmAvailable() { return ChosenKernels() != Kernels::kEigen; }

const char* FastGemmKernelName() {
  switch (ChosenKernels()) {
    case Kernels::kAvx512: return "avx512";
    case Kernels::kAvx2: return "avx2";
    case Kernels::kEigen: break;
  }
  return "eigen";
}

namespace {

// `epilogue` over C, for the kernels that do not apply it in their stores.
void ApplyEpilogue(int64_t m, int64_t n, float* c, int64_t ldc, const GemmEpilogue& epilogue) {
  if (epilogue.row_bias == nullptr && !epilogue.relu) return;
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    if (epilogue.row_bias != nullptr) {
      const float bias = epilogue.row_bias[i];
      for (int64_t j = 0; j < n; ++j) row[j] += bias;
    }
    if (epilogue.relu) {
      for (int64_t j = 0; j < n; ++j) row[j] = std::max(0.0f, row[j]);
    }
  }
}

}  // namespace

void FastGemm(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
              int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
              const GemmEpilogue& epilogue) {
  switch (ChosenKernels()) {
    case Kernels::kAvx512:
      internal::FastGemmAvx512WithEpilogue(trans_b, m, n, k, alpha, a, lda, b, ldb, c, ldc,
                                           epilogue);
      if (!internal::Avx512AppliesEpilogue(trans_b, m, n, k)) ApplyEpilogue(m, n, c, ldc, epilogue);
      return;
    case Kernels::kAvx2:
      internal::FastGemmAvx2(trans_b, m, n, k, alpha, a, lda, b, ldb, c, ldc);
      ApplyEpilogue(m, n, c, ldc, epilogue);
      return;
    case Kernels::kEigen:
      break;
  }
  std::abort();  // Precondition: FastGemmAvailable().
}

#if !defined(SQUEEZE_FAST_GEMM_AVX2)
namespace internal {
void FastGemmAvx2(bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                  int64_t, float*, int64_t) {
  std::abort();
}
}  // namespace internal
#endif
#if !defined(SQUEEZE_FAST_GEMM_AVX512)
namespace internal {
void FastGemmAvx512(bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                    int64_t, float*, int64_t) {
  std::abort();
}
void FastGemmAvx512WithEpilogue(bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                                const float*, int64_t, float*, int64_t, const GemmEpilogue&) {
  std::abort();
}
}  // namespace internal
#endif

}  // namespace squeeze::core::kernels::cpu
