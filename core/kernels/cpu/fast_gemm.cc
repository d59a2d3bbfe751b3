#include "core/kernels/cpu/fast_gemm.h"

#include <cstdlib>
#include <cstring>

namespace squeeze::core::kernels::cpu {

bool FastGemmAvailable() {
  static const bool available = [] {
    const char* env = std::getenv("SQUEEZE_CPU_GEMM");
    if (env != nullptr && std::strcmp(env, "eigen") == 0) return false;
#if defined(SQUEEZE_FAST_GEMM_AVX2) && (defined(__x86_64__) || defined(__i386__))
    // Same test as core/quant/gemm's CpuHasAvx2Fma(), which this library
    // cannot link (squeeze_quant_gemm depends on it).
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
  }();
  return available;
}

void FastGemm(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
              int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc) {
#if defined(SQUEEZE_FAST_GEMM_AVX2)
  internal::FastGemmAvx2(trans_b, m, n, k, alpha, a, lda, b, ldb, c, ldc);
#else
  (void)trans_b, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b,
      (void)ldb, (void)c, (void)ldc;
  std::abort();  // FastGemmAvailable() is false in this build.
#endif
}

}  // namespace squeeze::core::kernels::cpu
