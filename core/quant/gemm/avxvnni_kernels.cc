// The AVX-VNNI int8 kernels: the int8 GEMM on packed weight panels and the
// int8 Conv's transposed GEMM (Int8TransposedGemmFn) with the
// VEX-encoded vpdpbusd on ymm registers (8 lanes x 4 u8*s8 products, 32 MACs
// per instruction), for CPUs with AVX-VNNI but without AVX-512 (and as a
// second tested path where both exist). This file alone is compiled with
// -mavx2 -mfma -mavxvnni -ffp-contract=off (core/quant/gemm/CMakeLists.txt;
// no contraction keeps the Conv epilogue bit-identical), so it holds
// intrinsics only and helpers in an anonymous namespace; the entry point is
// declared in kernels.h and called only after
// CpuRunsGemmPath(GemmPath::kAvxVnni). Exact for the same reason as the
// AVX-512 kernel (avx512vnni_kernels.cc): no saturation, int32 wraparound,
// depth bounded by the caller.
#include <immintrin.h>

#include "core/quant/gemm/kernels.h"

namespace squeeze::core::quant::gemm::internal {
namespace {

inline __m256i BroadcastGroup(const uint8_t* x) {
  return _mm256_broadcastd_epi32(_mm_loadu_si32(x));
}

inline __m256i BroadcastPartialGroup(const uint8_t* x, int64_t count) {
  uint32_t v = 0;
  for (int64_t i = 0; i < count; ++i) v |= uint32_t{x[i]} << (8 * i);
  return _mm256_set1_epi32(static_cast<int>(v));
}

// MR rows x one 16-column panel (two ymm halves), `cols` of them stored.
template <int MR>
void MicroTile(const uint8_t* x, int64_t ldx, const int8_t* panel, int64_t depth,
               int64_t cols, int32_t* acc, int64_t ldacc) {
  __m256i sum[MR][2];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    sum[i][0] = _mm256_setzero_si256();
    sum[i][1] = _mm256_setzero_si256();
  }
  const int64_t full_groups = depth / kInt8PanelDepth;
  const int8_t* w = panel;
  for (int64_t g = 0; g < full_groups; ++g, w += kInt8PanelWidth * kInt8PanelDepth) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32));
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256i xv = BroadcastGroup(x + i * ldx + g * kInt8PanelDepth);
      sum[i][0] = _mm256_dpbusd_avx_epi32(sum[i][0], xv, w0);
      sum[i][1] = _mm256_dpbusd_avx_epi32(sum[i][1], xv, w1);
    }
  }
  const int64_t rest = depth - full_groups * kInt8PanelDepth;
  if (rest > 0) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32));
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256i xv = BroadcastPartialGroup(x + i * ldx + full_groups * kInt8PanelDepth, rest);
      sum[i][0] = _mm256_dpbusd_avx_epi32(sum[i][0], xv, w0);
      sum[i][1] = _mm256_dpbusd_avx_epi32(sum[i][1], xv, w1);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    int32_t* out = acc + i * ldacc;
    if (cols >= kInt8PanelWidth) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), sum[i][0]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8), sum[i][1]);
    } else {
      alignas(32) int32_t row[kInt8PanelWidth];
      _mm256_store_si256(reinterpret_cast<__m256i*>(row), sum[i][0]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(row + 8), sum[i][1]);
      for (int64_t c = 0; c < cols; ++c) out[c] = row[c];
    }
  }
}

template <int MR>
void RowStrip(const uint8_t* x, int64_t ldx, const int8_t* panels, int64_t cols,
              int64_t depth, int32_t* acc, int64_t ldacc) {
  const int64_t panel_bytes = Int8PanelBytes(depth);
  for (int64_t c = 0; c < cols; c += kInt8PanelWidth) {
    MicroTile<MR>(x, ldx, panels + (c / kInt8PanelWidth) * panel_bytes, depth, cols - c,
                  acc + c, ldacc);
  }
}

inline __m256i BroadcastPartialWeights(const int8_t* w, int64_t count) {
  uint32_t v = 0;
  for (int64_t i = 0; i < count; ++i) v |= uint32_t{static_cast<uint8_t>(w[i])} << (8 * i);
  return _mm256_set1_epi32(static_cast<int>(v));
}

// MR output channels x one activation panel (16 rows as two ymm halves, of
// which `rows_left` are stored), rescaled into y[o * ldy + r]: the AVX-512
// kernel's epilogue on 8 lanes (same expressions, no FMA contraction).
template <int MR>
void TransposedMicroTile(const uint8_t* panel, const int8_t* w, int64_t depth, int64_t o0,
                         int64_t rows_left, const Int8Rescale& rescale, float* y, int64_t ldy) {
  __m256i sum[MR][2];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    sum[i][0] = _mm256_setzero_si256();
    sum[i][1] = _mm256_setzero_si256();
  }
  const int64_t groups = (depth + kInt8PanelDepth - 1) / kInt8PanelDepth;
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* xg = panel + g * kInt8PanelWidth * kInt8PanelDepth;
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xg));
    const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xg + 32));
    const int64_t count = depth - g * kInt8PanelDepth;
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const int8_t* wg = w + (o0 + i) * depth + g * kInt8PanelDepth;
      const __m256i wv = count >= kInt8PanelDepth ? _mm256_broadcastd_epi32(_mm_loadu_si32(wg))
                                                  : BroadcastPartialWeights(wg, count);
      sum[i][0] = _mm256_dpbusd_avx_epi32(sum[i][0], x0, wv);
      sum[i][1] = _mm256_dpbusd_avx_epi32(sum[i][1], x1, wv);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    const int64_t o = o0 + i;
    const __m256i zero_sum = _mm256_set1_epi32(static_cast<int>(
        static_cast<uint32_t>(rescale.x_zero) * static_cast<uint32_t>(rescale.w_row_sums[o])));
    const __m256 scale = _mm256_set1_ps(rescale.x_scale * rescale.w_scales[o]);
    alignas(32) float row[kInt8PanelWidth];
    for (int h = 0; h < 2; ++h) {
      __m256 v = _mm256_mul_ps(scale, _mm256_cvtepi32_ps(_mm256_sub_epi32(sum[i][h], zero_sum)));
      if (rescale.bias != nullptr) v = _mm256_add_ps(v, _mm256_set1_ps(rescale.bias[o]));
      if (rescale.relu) v = _mm256_max_ps(v, _mm256_setzero_ps());  // v > 0 ? v : 0
      _mm256_store_ps(row + 8 * h, v);
    }
    float* out = y + o * ldy;
    const int64_t n = rows_left < kInt8PanelWidth ? rows_left : kInt8PanelWidth;
    for (int64_t r = 0; r < n; ++r) out[r] = row[r];
  }
}

template <int MR>
void TransposedChannelStrip(const uint8_t* x_panels, int64_t rows, const int8_t* w,
                            int64_t depth, int64_t o0, const Int8Rescale& rescale, float* y,
                            int64_t ldy) {
  const int64_t panel_bytes = Int8PanelBytes(depth);
  for (int64_t r = 0; r < rows; r += kInt8PanelWidth) {
    TransposedMicroTile<MR>(x_panels + (r / kInt8PanelWidth) * panel_bytes, w, depth, o0,
                            rows - r, rescale, y + r, ldy);
  }
}

}  // namespace

void Int8TransposedGemmAvxVnni(const uint8_t* x_panels, int64_t rows, const int8_t* w,
                               int64_t out, int64_t depth, const Int8Rescale& rescale, float* y,
                               int64_t ldy) {
  ForRowBlocks<6>(out, [&]<int MR>(int64_t o) {
    TransposedChannelStrip<MR>(x_panels, rows, w, depth, o, rescale, y, ldy);
  });
}

void Int8PanelTileAvxVnni(const uint8_t* x, int64_t ldx, const int8_t* panels, int64_t rows,
                          int64_t cols, int64_t depth, int32_t* acc, int64_t ldacc) {
  // 6 rows x 2 ymm accumulators + 2 weight registers + 1 broadcast fit the
  // 16 ymm registers.
  ForRowBlocks<6>(rows, [&]<int MR>(int64_t r) {
    RowStrip<MR>(x + r * ldx, ldx, panels, cols, depth, acc + r * ldacc, ldacc);
  });
}

}  // namespace squeeze::core::quant::gemm::internal
