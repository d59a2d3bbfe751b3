// The AVX-VNNI int8 kernel: the int8 GEMM on packed weight panels with the
// VEX-encoded vpdpbusd on ymm registers (8 lanes x 4 u8*s8 products, 32 MACs
// per instruction), for CPUs with AVX-VNNI but without AVX-512 (and as a
// second tested path where both exist). This file alone is compiled with
// -mavx2 -mfma -mavxvnni (core/quant/gemm/CMakeLists.txt), so it holds
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

}  // namespace

void Int8PanelTileAvxVnni(const uint8_t* x, int64_t ldx, const int8_t* panels, int64_t rows,
                          int64_t cols, int64_t depth, int32_t* acc, int64_t ldacc) {
  // 6 rows x 2 ymm accumulators + 2 weight registers + 1 broadcast fit the
  // 16 ymm registers.
  constexpr int kRows = 6;
  int64_t r = 0;
  for (; r + kRows <= rows; r += kRows) {
    RowStrip<kRows>(x + r * ldx, ldx, panels, cols, depth, acc + r * ldacc, ldacc);
  }
  const uint8_t* xr = x + r * ldx;
  int32_t* ar = acc + r * ldacc;
  switch (rows - r) {
    case 5: RowStrip<5>(xr, ldx, panels, cols, depth, ar, ldacc); break;
    case 4: RowStrip<4>(xr, ldx, panels, cols, depth, ar, ldacc); break;
    case 3: RowStrip<3>(xr, ldx, panels, cols, depth, ar, ldacc); break;
    case 2: RowStrip<2>(xr, ldx, panels, cols, depth, ar, ldacc); break;
    case 1: RowStrip<1>(xr, ldx, panels, cols, depth, ar, ldacc); break;
    default: break;
  }
}

}  // namespace squeeze::core::quant::gemm::internal
