// The AVX2 + FMA kernels (also the activation quantization of the AVX2 and
// AVX-VNNI paths). This file alone is compiled with -mavx2 -mfma
// -ffp-contract=off (core/quant/gemm/CMakeLists.txt; FMA only where written
// as an intrinsic, so the quantization loops keep the scalar bits), so it holds intrinsics only: no library
// headers whose inline functions could be merged with baseline copies, and
// every helper in an anonymous namespace; the entry points are declared in
// kernels.h and called only after CpuHasAvx2Fma().
#include <immintrin.h>

#include "core/quant/gemm/kernels.h"

namespace squeeze::core::quant::gemm::internal {
namespace {

int32_t HorizontalSum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// MR rows x NR columns of int8 dot products. uint8 activations and int8
// weights are widened to int16 and multiplied with vpmaddwd, whose pair sums
// (at most 2 * 255 * 127) cannot saturate, unlike vpmaddubsw's int16 sums.
template <int MR, int NR>
void Int8MicroTile(const uint8_t* x, int64_t ldx, const int8_t* w, int64_t ldw,
                   int64_t depth, int32_t* acc, int64_t ldacc) {
  __m256i sum[MR][NR];
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) sum[i][j] = _mm256_setzero_si256();
  }
  int64_t kk = 0;
  for (; kk + 16 <= depth; kk += 16) {
    __m256i wv[NR];
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) {
      wv[j] = _mm256_cvtepi8_epi16(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + j * ldw + kk)));
    }
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const __m256i xv = _mm256_cvtepu8_epi16(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i * ldx + kk)));
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) {
        sum[i][j] = _mm256_add_epi32(sum[i][j], _mm256_madd_epi16(xv, wv[j]));
      }
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) {
      int32_t total = HorizontalSum(sum[i][j]);
      for (int64_t t = kk; t < depth; ++t) {
        total += int32_t{x[i * ldx + t]} * int32_t{w[j * ldw + t]};
      }
      acc[i * ldacc + j] = total;
    }
  }
}

template <int MR>
void Int8RowStrip(const uint8_t* x, int64_t ldx, const int8_t* w, int64_t ldw,
                  int64_t cols, int64_t depth, int32_t* acc, int64_t ldacc) {
  int64_t c = 0;
  for (; c + 2 <= cols; c += 2) {
    Int8MicroTile<MR, 2>(x, ldx, w + c * ldw, ldw, depth, acc + c, ldacc);
  }
  if (c < cols) Int8MicroTile<MR, 1>(x, ldx, w + c * ldw, ldw, depth, acc + c, ldacc);
}

// MR rows of a 16-column panel; the accumulators stay in 2 * MR registers.
template <int MR>
void PanelMicroTile(const float* x, int64_t ldx, const float* panel,
                    int64_t depth, float* y, int64_t ldy, int64_t cols) {
  __m256 sum[MR][2];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    sum[i][0] = _mm256_setzero_ps();
    sum[i][1] = _mm256_setzero_ps();
  }
  for (int64_t kk = 0; kk < depth; ++kk) {
    const __m256 b0 = _mm256_loadu_ps(panel + kk * kPanelWidth);
    const __m256 b1 = _mm256_loadu_ps(panel + kk * kPanelWidth + 8);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 a = _mm256_broadcast_ss(x + i * ldx + kk);
      sum[i][0] = _mm256_fmadd_ps(a, b0, sum[i][0]);
      sum[i][1] = _mm256_fmadd_ps(a, b1, sum[i][1]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    if (cols == kPanelWidth) {
      _mm256_storeu_ps(y + i * ldy, sum[i][0]);
      _mm256_storeu_ps(y + i * ldy + 8, sum[i][1]);
    } else {
      alignas(32) float row[kPanelWidth];
      _mm256_store_ps(row, sum[i][0]);
      _mm256_store_ps(row + 8, sum[i][1]);
      for (int64_t c = 0; c < cols; ++c) y[i * ldy + c] = row[c];
    }
  }
}

// The scalar kernel's rounding (scalar_kernels.cc), operation for operation.
inline __m256 RoundHalfEvenClamped(__m256 v, __m256 zero) {
  const __m256 rounder = _mm256_set1_ps(12582912.0f);
  v = _mm256_max_ps(v, _mm256_set1_ps(-512.0f));  // NaN -> -512, as v >= -512 ? v : -512
  v = _mm256_min_ps(v, _mm256_set1_ps(512.0f));
  v = _mm256_add_ps(_mm256_sub_ps(_mm256_add_ps(v, rounder), rounder), zero);
  v = _mm256_max_ps(v, _mm256_setzero_ps());
  return _mm256_min_ps(v, _mm256_set1_ps(255.0f));
}

}  // namespace

bool MinMaxAvx2(const float* x, int64_t n, float* lo, float* hi) {
  // As MinMaxAvx512: lanes start at 0 and take x only when strictly below
  // (above), so combining them gives std::min/std::max's result.
  __m256 l = _mm256_setzero_ps(), h = _mm256_setzero_ps();
  const __m256 largest = _mm256_set1_ps(3.40282347e38f);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    finite = _mm256_and_ps(finite, _mm256_cmp_ps(_mm256_and_ps(v, abs_mask), largest, _CMP_LE_OQ));
    l = _mm256_min_ps(v, l);  // v < l ? v : l
    h = _mm256_max_ps(v, h);  // v > h ? v : h
  }
  alignas(32) float ls[8], hs[8];
  _mm256_store_ps(ls, l);
  _mm256_store_ps(hs, h);
  bool all_finite = _mm256_movemask_ps(finite) == 0xFF;
  float lmin = 0.0f, hmax = 0.0f;
  for (int k = 0; k < 8; ++k) {
    lmin = ls[k] < lmin ? ls[k] : lmin;
    hmax = hmax < hs[k] ? hs[k] : hmax;
  }
  for (; i < n; ++i) {
    all_finite &= x[i] - x[i] == 0.0f;  // false for inf and NaN
    lmin = x[i] < lmin ? x[i] : lmin;
    hmax = hmax < x[i] ? x[i] : hmax;
  }
  *lo = lmin;
  *hi = hmax;
  return all_finite;
}

void QuantizeRowAvx2(const float* x, int64_t n, float factor, bool divide, float zero,
                     uint8_t* q) {
  const __m256 f = _mm256_set1_ps(factor);
  const __m256 z = _mm256_set1_ps(zero);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256i r = _mm256_cvttps_epi32(
        RoundHalfEvenClamped(divide ? _mm256_div_ps(v, f) : _mm256_mul_ps(v, f), z));
    // 8 int32 in [0, 255] -> 8 bytes.
    const __m128i packed16 = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_packus_epi16(packed16, packed16));
  }
  if (i < n) {
    alignas(32) float rest[8] = {};
    alignas(32) int32_t out[8];
    for (int64_t k = 0; k < n - i; ++k) rest[k] = x[i + k];
    const __m256 v = _mm256_load_ps(rest);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out),
                       _mm256_cvttps_epi32(RoundHalfEvenClamped(
                           divide ? _mm256_div_ps(v, f) : _mm256_mul_ps(v, f), z)));
    for (int64_t k = 0; k < n - i; ++k) q[i + k] = static_cast<uint8_t>(out[k]);
  }
}

void Int8TileAvx2(const uint8_t* x, int64_t ldx, const int8_t* w, int64_t ldw,
                  int64_t rows, int64_t cols, int64_t depth, int32_t* acc,
                  int64_t ldacc) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    Int8RowStrip<4>(x + r * ldx, ldx, w, ldw, cols, depth, acc + r * ldacc, ldacc);
  }
  for (; r < rows; ++r) {
    Int8RowStrip<1>(x + r * ldx, ldx, w, ldw, cols, depth, acc + r * ldacc, ldacc);
  }
}

void PanelGemmAvx2(const float* x, int64_t ldx, int64_t rows,
                   const float* panel, int64_t depth, float* y, int64_t ldy,
                   int64_t cols) {
  constexpr int kRows = 6;
  int64_t r = 0;
  for (; r + kRows <= rows; r += kRows) {
    PanelMicroTile<kRows>(x + r * ldx, ldx, panel, depth, y + r * ldy, ldy, cols);
  }
  switch (rows - r) {
    case 5: PanelMicroTile<5>(x + r * ldx, ldx, panel, depth, y + r * ldy, ldy, cols); break;
    case 4: PanelMicroTile<4>(x + r * ldx, ldx, panel, depth, y + r * ldy, ldy, cols); break;
    case 3: PanelMicroTile<3>(x + r * ldx, ldx, panel, depth, y + r * ldy, ldy, cols); break;
    case 2: PanelMicroTile<2>(x + r * ldx, ldx, panel, depth, y + r * ldy, ldy, cols); break;
    case 1: PanelMicroTile<1>(x + r * ldx, ldx, panel, depth, y + r * ldy, ldy, cols); break;
    default: break;
  }
}

}  // namespace squeeze::core::quant::gemm::internal
