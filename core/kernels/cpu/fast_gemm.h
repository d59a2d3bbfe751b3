// Float32 GEMM for the CPU kernels (issue 3): AVX-512 or AVX2+FMA
// register-tiled micro-kernels, chosen at run time, that read A and B in place (no packing,
// so nothing is copied per call and small batches stay cheap). Callers keep
// their Eigen code as the fallback for CPUs without AVX2/FMA and for layouts
// these kernels do not take. Single-threaded: callers split rows or columns
// of C over their own threads.
#ifndef SQUEEZE_CORE_KERNELS_CPU_FAST_GEMM_H_
#define SQUEEZE_CORE_KERNELS_CPU_FAST_GEMM_H_

#include <cstdint>

namespace squeeze::core::kernels::cpu {

// Whether FastGemm may be called: the CPU has AVX2 and FMA, and the
// environment variable SQUEEZE_CPU_GEMM is not "eigen" (which forces the
// Eigen fallback, for comparisons). Decided once per process.
bool FastGemmAvailable();

// The kernels FastGemm runs: "avx512" (CPUs with AVX-512F), "avx2" (AVX2 and
// FMA, or SQUEEZE_CPU_GEMM=avx2), or "eigen" when FastGemmAvailable() is false.
const char* FastGemmKernelName();

// What FastGemm applies to each result before storing it: + row_bias[i]
// (row i of C; null for none), then max(0, .) with `relu`. The same float
// operations as adding and clipping after the GEMM, so the bits match.
struct GemmEpilogue {
  const float* row_bias = nullptr;
  bool relu = false;
};

// c[i * ldc + j] = alpha * sum_k a[i * lda + k] * B(k, j) for i < m, j < n,
// where B(k, j) = b[k * ldb + j], or b[j * ldb + k] when `trans_b` (B stored
// as [n, k], the usual layout of a Gemm weight with transB = 1). Overwrites
// c. Each element is summed in the same order whatever m, n and the split of
// C between threads, so results do not depend on the thread count.
// `epilogue` then adds a bias per row and/or applies Relu (in the AVX-512
// [k, n] kernel's stores; in a pass over C otherwise).
// Precondition: FastGemmAvailable(); m, n, k >= 0.
void FastGemm(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
              int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
              const GemmEpilogue& epilogue = {});

namespace internal {
// Whether this build has and this CPU runs each kernel set (ignores
// SQUEEZE_CPU_GEMM); for tests.
bool CpuRunsAvx2();
bool CpuRunsAvx512();
// The kernels behind FastGemm (fast_gemm_avx2.cc, fast_gemm_avx512.cc); same
// contract, each only where its Cpu... function is true.
void FastGemmAvx2(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc);
void FastGemmAvx512(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                    int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc);
// The same with an epilogue, which the AVX-512 [k, n] kernel applies in its
// stores; the other layout leaves C without it (FastGemm then adds it in a
// pass over C).
void FastGemmAvx512WithEpilogue(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                                const float* a, int64_t lda, const float* b, int64_t ldb,
                                float* c, int64_t ldc, const GemmEpilogue& epilogue);
// Whether FastGemmAvx512WithEpilogue applies `epilogue` itself.
inline bool Avx512AppliesEpilogue(bool trans_b, int64_t m, int64_t n, int64_t k) {
  return !trans_b && m > 0 && n > 0 && k > 0;
}
}  // namespace internal

}  // namespace squeeze::core::kernels::cpu

#endif  // SQUEEZE_CORE_KERNELS_CPU_FAST_GEMM_H_
