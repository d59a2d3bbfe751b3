// The AVX2+FMA kernels of FastGemm (fast_gemm.h). The only file of
// squeeze_kernels_cpu built with -mavx2 -mfma; nothing here runs unless
// FastGemmAvailable() said the CPU has both.
//
// Two register-tiled kernels, both reading A and B where they lie:
// - B as [k, n] (MatMul, Conv's im2col, Gemm with transB = 0): 6 rows of C by
//   16 columns in 12 accumulators; per k, two loads of B and six broadcasts
//   of A. Blocks of 256 k by 128 columns keep B's block in L2 while the row
//   tiles sweep it; the A tile (6 x 256) stays in L1.
// - B as [n, k] (Gemm with transB = 1): 4 rows of C by 3 columns, each an
//   8-lane partial dot product along k, summed across lanes at the end. B's
//   rows are read contiguously, so no transpose is made.
// Edges (fewer rows or columns than a tile, k not a multiple of 8) use the
// same kernels with masked loads and stores, so every element is summed in
// the same order wherever it sits in a tile.
#include <immintrin.h>

#include <cstdint>

#include "core/kernels/cpu/fast_gemm.h"

namespace squeeze::core::kernels::cpu::internal {
namespace {

// Only internal-linkage helpers here, no standard algorithm templates: an
// inline template instantiated in this file would carry this file's
// instruction set, and the linker may keep that copy for the whole program.
int64_t Min(int64_t a, int64_t b) { return a < b ? a : b; }
int64_t Max(int64_t a, int64_t b) { return a > b ? a : b; }

constexpr int64_t kKBlock = 256;     // k per block, B as [k, n]
constexpr int64_t kNBlock = 128;     // columns per block, B as [k, n]
constexpr int64_t kNtBytes = 128 << 10;  // B rows per block, B as [n, k]

// Lanes [0, count) set.
inline __m256i Mask(int count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline void Store(float* c, __m256 value, __m256i mask, bool full, float alpha, bool accumulate) {
  if (alpha != 1.0f) value = _mm256_mul_ps(_mm256_set1_ps(alpha), value);
  if (full) {
    if (accumulate) value = _mm256_add_ps(value, _mm256_loadu_ps(c));
    _mm256_storeu_ps(c, value);
  } else {
    if (accumulate) value = _mm256_add_ps(value, _mm256_maskload_ps(c, mask));
    _mm256_maskstore_ps(c, mask, value);
  }
}

// C[MR x nr] (=|+=) alpha * A[MR x kc] * B[kc x nr], nr <= 16.
template <int MR>
void KernelNN(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
              int64_t ldc, int nr, float alpha, bool accumulate) {
  __m256 acc0[MR], acc1[MR];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm256_setzero_ps();
  const __m256i mask0 = Mask(nr), mask1 = Mask(nr - 8);
  if (nr == 16) {
    for (int64_t p = 0; p < kc; ++p, b += ldb) {
      const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
      for (int i = 0; i < MR; ++i) {
        const __m256 ai = _mm256_broadcast_ss(a + i * lda + p);
        acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
      }
    }
  } else {
    for (int64_t p = 0; p < kc; ++p, b += ldb) {
      const __m256 b0 = _mm256_maskload_ps(b, mask0), b1 = _mm256_maskload_ps(b + 8, mask1);
#pragma GCC unroll 6
      for (int i = 0; i < MR; ++i) {
        const __m256 ai = _mm256_broadcast_ss(a + i * lda + p);
        acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
      }
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    Store(c + i * ldc, acc0[i], mask0, nr >= 8, alpha, accumulate);
    if (nr > 8) Store(c + i * ldc + 8, acc1[i], mask1, nr == 16, alpha, accumulate);
  }
}

void GemmNN(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
            const float* b, int64_t ldb, float* c, int64_t ldc) {
  for (int64_t jc = 0; jc < n; jc += kNBlock) {
    const int64_t nc = Min(kNBlock, n - jc);
    for (int64_t pc = 0; pc < k; pc += kKBlock) {
      const int64_t kc = Min(kKBlock, k - pc);
      const bool accumulate = pc > 0;
      for (int64_t ic = 0; ic < m; ic += 6) {
        const int64_t mr = Min(6, m - ic);
        const float* a_tile = a + ic * lda + pc;
        for (int64_t jr = 0; jr < nc; jr += 16) {
          const int nr = static_cast<int>(Min(16, nc - jr));
          const float* b_tile = b + pc * ldb + jc + jr;
          float* c_tile = c + ic * ldc + jc + jr;
          switch (mr) {
            case 6: KernelNN<6>(kc, a_tile, lda, b_tile, ldb, c_tile, ldc, nr, alpha, accumulate); break;
            case 5: KernelNN<5>(kc, a_tile, lda, b_tile, ldb, c_tile, ldc, nr, alpha, accumulate); break;
            case 4: KernelNN<4>(kc, a_tile, lda, b_tile, ldb, c_tile, ldc, nr, alpha, accumulate); break;
            case 3: KernelNN<3>(kc, a_tile, lda, b_tile, ldb, c_tile, ldc, nr, alpha, accumulate); break;
            case 2: KernelNN<2>(kc, a_tile, lda, b_tile, ldb, c_tile, ldc, nr, alpha, accumulate); break;
            default: KernelNN<1>(kc, a_tile, lda, b_tile, ldb, c_tile, ldc, nr, alpha, accumulate); break;
          }
        }
      }
    }
  }
}

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// C[MR x NR] = alpha * A[MR x k] * B[NR x k]^T.
template <int MR, int NR>
void KernelNT(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
              int64_t ldc, float alpha) {
  __m256 acc[MR][NR];
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 3
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  int64_t p = 0;
  for (; p + 8 <= k; p += 8) {
    __m256 bj[NR];
#pragma GCC unroll 3
    for (int j = 0; j < NR; ++j) bj[j] = _mm256_loadu_ps(b + j * ldb + p);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const __m256 ai = _mm256_loadu_ps(a + i * lda + p);
#pragma GCC unroll 3
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(ai, bj[j], acc[i][j]);
    }
  }
  if (p < k) {
    const __m256i mask = Mask(static_cast<int>(k - p));
    __m256 bj[NR];
#pragma GCC unroll 3
    for (int j = 0; j < NR; ++j) bj[j] = _mm256_maskload_ps(b + j * ldb + p, mask);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const __m256 ai = _mm256_maskload_ps(a + i * lda + p, mask);
#pragma GCC unroll 3
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(ai, bj[j], acc[i][j]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 3
    for (int j = 0; j < NR; ++j) c[i * ldc + j] = alpha * HorizontalSum(acc[i][j]);
  }
}

template <int MR>
void KernelNTRows(int nr, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                  float* c, int64_t ldc, float alpha) {
  switch (nr) {
    case 3: KernelNT<MR, 3>(k, a, lda, b, ldb, c, ldc, alpha); break;
    case 2: KernelNT<MR, 2>(k, a, lda, b, ldb, c, ldc, alpha); break;
    default: KernelNT<MR, 1>(k, a, lda, b, ldb, c, ldc, alpha); break;
  }
}

void GemmNT(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
            const float* b, int64_t ldb, float* c, int64_t ldc) {
  const int64_t rows_per_block =
      Max(3, kNtBytes / static_cast<int64_t>(sizeof(float)) / Max(1, k)) / 3 * 3;
  for (int64_t jc = 0; jc < n; jc += rows_per_block) {
    const int64_t nc = Min(rows_per_block, n - jc);
    for (int64_t ic = 0; ic < m; ic += 4) {
      const int64_t mr = Min(4, m - ic);
      for (int64_t jr = jc; jr < jc + nc; jr += 3) {
        const int nr = static_cast<int>(Min(3, jc + nc - jr));
        const float* a_tile = a + ic * lda;
        const float* b_tile = b + jr * ldb;
        float* c_tile = c + ic * ldc + jr;
        switch (mr) {
          case 4: KernelNTRows<4>(nr, k, a_tile, lda, b_tile, ldb, c_tile, ldc, alpha); break;
          case 3: KernelNTRows<3>(nr, k, a_tile, lda, b_tile, ldb, c_tile, ldc, alpha); break;
          case 2: KernelNTRows<2>(nr, k, a_tile, lda, b_tile, ldb, c_tile, ldc, alpha); break;
          default: KernelNTRows<1>(nr, k, a_tile, lda, b_tile, ldb, c_tile, ldc, alpha); break;
        }
      }
    }
  }
}

}  // namespace

void FastGemmAvx2(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = 0.0f;
    }
    return;
  }
  if (trans_b) {
    GemmNT(m, n, k, alpha, a, lda, b, ldb, c, ldc);
  } else {
    GemmNN(m, n, k, alpha, a, lda, b, ldb, c, ldc);
  }
}

}  // namespace squeeze::core::kernels::cpu::internal
