// The AVX-512 kernels of FastGemm (fast_gemm.h): the kernels of
// fast_gemm_avx2.cc with 16-lane vectors (8 rows by 32 columns in 16
// accumulators for B as [k, n], 8 rows by 16 columns for a last tile of at
// most 16 columns; 4 rows by 6 columns of 16-lane dot products,
// 24 accumulators, for B as [n, k]) and mask registers for the edges. Built
// with -mavx512f (as is vector_math_avx512.cc); used only when
// FastGemmAvailable() found AVX-512F on the CPU.
#include <cstdint>

#include "core/kernels/cpu/avx512_intrinsics.h"
#include "core/kernels/cpu/fast_gemm.h"

namespace squeeze::core::kernels::cpu::internal {
namespace {

// Only internal-linkage helpers here, no standard algorithm templates: an
// inline template instantiated in this file would carry this file's
// instruction set, and the linker may keep that copy for the whole program.
int64_t Min(int64_t a, int64_t b) { return a < b ? a : b; }
int64_t Max(int64_t a, int64_t b) { return a > b ? a : b; }

constexpr int64_t kKBlock = 384;     // most k per block, B as [k, n]
constexpr int64_t kNBlock = 128;     // columns per block, B as [k, n]
constexpr int64_t kNtBytes = 128 << 10;  // B rows per block, B as [n, k]
constexpr int64_t kRowTile = 8;      // rows of C per tile, B as [k, n]

// Lanes [0, count) set.
inline __mmask16 Mask(int count) {
  return count >= 16 ? __mmask16(0xffff) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}

// Stores alpha * value (+ C when accumulating), then + *bias (when not
// null) and max(0, .) (when relu): GemmEpilogue on the last k block.
inline void Store(float* c, __m512 value, __mmask16 mask, bool full, float alpha, bool accumulate,
                  const float* bias = nullptr, bool relu = false) {
  if (alpha != 1.0f) value = _mm512_mul_ps(_mm512_set1_ps(alpha), value);
  if (accumulate) {
    value = _mm512_add_ps(value, full ? _mm512_loadu_ps(c) : _mm512_maskz_loadu_ps(mask, c));
  }
  if (bias != nullptr) value = _mm512_add_ps(value, _mm512_set1_ps(*bias));
  // max(x, 0) gives 0 for NaN and -0, as std::max(0.0f, x) does.
  if (relu) value = _mm512_max_ps(value, _mm512_setzero_ps());
  if (full) {
    _mm512_storeu_ps(c, value);
  } else {
    _mm512_mask_storeu_ps(c, mask, value);
  }
}

// C[MR x nr] (=|+=) alpha * A[MR x kc] * B[kc x nr], nr <= 16 * NV: one
// vector of B per k for a tile of up to 16 columns, two for up to 32.
// `bias` (rows' biases, or null) and `relu` are the epilogue, given on the
// last k block only.
template <int MR, int NV>
void KernelNN(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
              int64_t ldc, int nr, float alpha, bool accumulate, const float* bias, bool relu) {
  __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
  const __mmask16 mask0 = Mask(nr), mask1 = Mask(nr - 16);
  if (nr == 16 * NV) {
    for (int64_t p = 0; p < kc; ++p, b += ldb) {
      const __m512 b0 = _mm512_loadu_ps(b);
      const __m512 b1 = NV == 2 ? _mm512_loadu_ps(b + 16) : b0;
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m512 ai = _mm512_set1_ps(a[i * lda + p]);
        acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
        if (NV == 2) acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
      }
    }
  } else {
    for (int64_t p = 0; p < kc; ++p, b += ldb) {
      const __m512 b0 = _mm512_maskz_loadu_ps(mask0, b);
      const __m512 b1 = NV == 2 ? _mm512_maskz_loadu_ps(mask1, b + 16) : b0;
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m512 ai = _mm512_set1_ps(a[i * lda + p]);
        acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
        if (NV == 2) acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    const float* bias_i = bias == nullptr ? nullptr : bias + i;
    Store(c + i * ldc, acc0[i], mask0, nr >= 16, alpha, accumulate, bias_i, relu);
    if (NV == 2 && nr > 16) {
      Store(c + i * ldc + 16, acc1[i], mask1, nr == 32, alpha, accumulate, bias_i, relu);
    }
  }
}

template <int NV>
void KernelNNRows(int64_t mr, int64_t kc, const float* a, int64_t lda, const float* b,
                  int64_t ldb, float* c, int64_t ldc, int nr, float alpha, bool accumulate,
                  const float* bias, bool relu) {
  switch (mr) {
    case 8: KernelNN<8, NV>(kc, a, lda, b, ldb, c, ldc, nr, alpha, accumulate, bias, relu); break;
    case 7: KernelNN<7, NV>(kc, a, lda, b, ldb, c, ldc, nr, alpha, accumulate, bias, relu); break;
    case 6: KernelNN<6, NV>(kc, a, lda, b, ldb, c, ldc, nr, alpha, accumulate, bias, relu); break;
    case 5: KernelNN<5, NV>(kc, a, lda, b, ldb, c, ldc, nr, alpha, accumulate, bias, relu); break;
    case 4: KernelNN<4, NV>(kc, a, lda, b, ldb, c, ldc, nr, alpha, accumulate, bias, relu); break;
    case 3: KernelNN<3, NV>(kc, a, lda, b, ldb, c, ldc, nr, alpha, accumulate, bias, relu); break;
    case 2: KernelNN<2, NV>(kc, a, lda, b, ldb, c, ldc, nr, alpha, accumulate, bias, relu); break;
    default: KernelNN<1, NV>(kc, a, lda, b, ldb, c, ldc, nr, alpha, accumulate, bias, relu); break;
  }
}

// Column tiles outside, row tiles inside: the kc x 32 panel of B a column
// tile reads (48 KiB at most) stays in L1 while every row tile uses it; A's
// kc-column block comes from L2. (Rows outside made each row tile stream
// B's whole block from L2: 120 against 215 GFLOP/s on the CNN's 64 x 196 x
// 288 conv GEMM.)
void GemmNN(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
            const float* b, int64_t ldb, float* c, int64_t ldc, const GemmEpilogue& epilogue) {
  // Equal k blocks of at most kKBlock: a conv's k = 288 is one block, not
  // 256 and a short 32 that reloads and stores all of C again.
  const int64_t k_blocks = (k + kKBlock - 1) / kKBlock;
  const int64_t k_step = (k + k_blocks - 1) / k_blocks;
  for (int64_t jc = 0; jc < n; jc += kNBlock) {
    const int64_t nc = Min(kNBlock, n - jc);
    for (int64_t pc = 0; pc < k; pc += k_step) {
      const int64_t kc = Min(k_step, k - pc);
      const bool accumulate = pc > 0, last = pc + kc >= k;
      const bool relu = last && epilogue.relu;
      for (int64_t jr = 0; jr < nc; jr += 32) {
        const int nr = static_cast<int>(Min(32, nc - jr));
        const float* b_tile = b + pc * ldb + jc + jr;
        for (int64_t ic = 0; ic < m; ic += kRowTile) {
          const int64_t mr = Min(kRowTile, m - ic);
          const float* a_tile = a + ic * lda + pc;
          float* c_tile = c + ic * ldc + jc + jr;
          const float* bias =
              last && epilogue.row_bias != nullptr ? epilogue.row_bias + ic : nullptr;
          if (nr > 16) {
            KernelNNRows<2>(mr, kc, a_tile, lda, b_tile, ldb, c_tile, ldc, nr, alpha, accumulate,
                            bias, relu);
          } else {
            KernelNNRows<1>(mr, kc, a_tile, lda, b_tile, ldb, c_tile, ldc, nr, alpha, accumulate,
                            bias, relu);
          }
        }
      }
    }
  }
}

inline float HorizontalSum(__m512 v) {
  // Lanes 8..15 onto 0..7 (vpermps), then as in the AVX2 kernels.
  const __m512i upper = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m256 half = _mm512_castps512_ps256(_mm512_add_ps(v, _mm512_permutexvar_ps(upper, v)));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// C[MR x NR] = alpha * A[MR x k] * B[NR x k]^T.
template <int MR, int NR>
void KernelNT(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
              int64_t ldc, float alpha) {
  __m512 acc[MR][NR];
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 6
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  }
  int64_t p = 0;
  for (; p + 16 <= k; p += 16) {
    __m512 bj[NR];
#pragma GCC unroll 6
    for (int j = 0; j < NR; ++j) bj[j] = _mm512_loadu_ps(b + j * ldb + p);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const __m512 ai = _mm512_loadu_ps(a + i * lda + p);
#pragma GCC unroll 6
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(ai, bj[j], acc[i][j]);
    }
  }
  if (p < k) {
    const __mmask16 mask = Mask(static_cast<int>(k - p));
    __m512 bj[NR];
#pragma GCC unroll 6
    for (int j = 0; j < NR; ++j) bj[j] = _mm512_maskz_loadu_ps(mask, b + j * ldb + p);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const __m512 ai = _mm512_maskz_loadu_ps(mask, a + i * lda + p);
#pragma GCC unroll 6
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(ai, bj[j], acc[i][j]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 6
    for (int j = 0; j < NR; ++j) c[i * ldc + j] = alpha * HorizontalSum(acc[i][j]);
  }
}

template <int MR>
void KernelNTRows(int nr, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                  float* c, int64_t ldc, float alpha) {
  switch (nr) {
    case 6: KernelNT<MR, 6>(k, a, lda, b, ldb, c, ldc, alpha); break;
    case 5: KernelNT<MR, 5>(k, a, lda, b, ldb, c, ldc, alpha); break;
    case 4: KernelNT<MR, 4>(k, a, lda, b, ldb, c, ldc, alpha); break;
    case 3: KernelNT<MR, 3>(k, a, lda, b, ldb, c, ldc, alpha); break;
    case 2: KernelNT<MR, 2>(k, a, lda, b, ldb, c, ldc, alpha); break;
    default: KernelNT<MR, 1>(k, a, lda, b, ldb, c, ldc, alpha); break;
  }
}

void GemmNT(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
            const float* b, int64_t ldb, float* c, int64_t ldc) {
  const int64_t rows_per_block =
      Max(6, kNtBytes / static_cast<int64_t>(sizeof(float)) / Max(1, k)) / 6 * 6;
  for (int64_t jc = 0; jc < n; jc += rows_per_block) {
    const int64_t nc = Min(rows_per_block, n - jc);
    for (int64_t ic = 0; ic < m; ic += 4) {
      const int64_t mr = Min(4, m - ic);
      for (int64_t jr = jc; jr < jc + nc; jr += 6) {
        const int nr = static_cast<int>(Min(6, jc + nc - jr));
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

void FastGemmAvx512(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                    int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc) {
  FastGemmAvx512WithEpilogue(trans_b, m, n, k, alpha, a, lda, b, ldb, c, ldc, GemmEpilogue());
}

void FastGemmAvx512WithEpilogue(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                                const float* a, int64_t lda, const float* b, int64_t ldb,
                                float* c, int64_t ldc, const GemmEpilogue& epilogue) {
  if (m <= 0 || n <= 0 || k <= 0) {
    FastGemmAvx2(trans_b, m, n, k, alpha, a, lda, b, ldb, c, ldc);
    return;
  }
  if (trans_b) {
    GemmNT(m, n, k, alpha, a, lda, b, ldb, c, ldc);
  } else {
    GemmNN(m, n, k, alpha, a, lda, b, ldb, c, ldc, epilogue);
  }
}

}  // namespace squeeze::core::kernels::cpu::internal
