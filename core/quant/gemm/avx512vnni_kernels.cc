// The AVX-512 kernels: the float panel GEMM of the int4 and codebook GEMMs,
// the int8 GEMM on packed weight panels with vpdpbusd
// (AVX512_VNNI: 16 lanes x 4 u8*s8 products summed into int32, 64 MACs per
// instruction) and the activation quantization loops. This file alone is
// compiled with -mavx512f -mavx512vnni -ffp-contract=off
// (core/quant/gemm/CMakeLists.txt), so it holds intrinsics only: no library
// headers whose inline functions could be merged with baseline copies, and
// every helper in an anonymous namespace; the entry points are declared in
// kernels.h and called only after CpuRunsGemmPath(GemmPath::kAvx512Vnni).
//
// Exactness: vpdpbusd adds its four products (each |p| <= 255 * 127) to the
// int32 lane without saturation, wrapping modulo 2^32, so the lane ends at
// the exact sum whenever that fits in int32, which the callers' depth bound
// (255 * 127 * depth < 2^31) ensures. Zero weight padding past `depth` adds 0.
//
// GCC 12's avx512fintrin.h (_mm512_undefined in its set and convert
// intrinsics) trips -Wmaybe-uninitialized where they are inlined (GCC bug
// 105593, fixed in GCC 13), so the warning is off for this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "core/quant/gemm/kernels.h"

namespace squeeze::core::quant::gemm::internal {
namespace {

// Four consecutive activation bytes in every 32-bit lane.
inline __m512i BroadcastGroup(const uint8_t* x) {
  return _mm512_broadcastd_epi32(_mm_loadu_si32(x));
}

// The last, partial group: `count` (1-3) bytes, zeros after them (they meet
// zero weights anyway, but must not be read past the row).
inline __m512i BroadcastPartialGroup(const uint8_t* x, int64_t count) {
  uint32_t v = 0;
  for (int64_t i = 0; i < count; ++i) v |= uint32_t{x[i]} << (8 * i);
  return _mm512_set1_epi32(static_cast<int>(v));
}

// MR rows x NP panels (16 * NP columns, of which `cols` are stored).
template <int MR, int NP>
void MicroTile(const uint8_t* x, int64_t ldx, const int8_t* panels, int64_t panel_bytes,
               int64_t depth, int64_t cols, int32_t* acc, int64_t ldacc) {
  __m512i sum[MR][NP];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) sum[i][j] = _mm512_setzero_si512();
  }
  const int64_t full_groups = depth / kInt8PanelDepth;
  const int8_t* w = panels;
  for (int64_t g = 0; g < full_groups; ++g, w += kInt8PanelWidth * kInt8PanelDepth) {
    __m512i wv[NP];
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) wv[j] = _mm512_loadu_si512(w + j * panel_bytes);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512i xv = BroadcastGroup(x + i * ldx + g * kInt8PanelDepth);
#pragma GCC unroll 4
      for (int j = 0; j < NP; ++j) sum[i][j] = _mm512_dpbusd_epi32(sum[i][j], xv, wv[j]);
    }
  }
  const int64_t rest = depth - full_groups * kInt8PanelDepth;
  if (rest > 0) {
    __m512i wv[NP];
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) wv[j] = _mm512_loadu_si512(w + j * panel_bytes);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512i xv =
          BroadcastPartialGroup(x + i * ldx + full_groups * kInt8PanelDepth, rest);
#pragma GCC unroll 4
      for (int j = 0; j < NP; ++j) sum[i][j] = _mm512_dpbusd_epi32(sum[i][j], xv, wv[j]);
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < NP; ++j) {
    const int64_t left = cols - j * kInt8PanelWidth;
    if (left <= 0) break;
    const __mmask16 mask =
        left >= kInt8PanelWidth ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << left) - 1);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      _mm512_mask_storeu_epi32(acc + i * ldacc + j * kInt8PanelWidth, mask, sum[i][j]);
    }
  }
}

// MR rows across every column: two panels at a time, one for an odd last.
template <int MR>
void RowStrip(const uint8_t* x, int64_t ldx, const int8_t* panels, int64_t cols,
              int64_t depth, int32_t* acc, int64_t ldacc) {
  const int64_t panel_bytes = Int8PanelBytes(depth);
  int64_t c = 0;
  for (; c + kInt8PanelWidth < cols; c += 2 * kInt8PanelWidth) {
    MicroTile<MR, 2>(x, ldx, panels + (c / kInt8PanelWidth) * panel_bytes, panel_bytes, depth,
                     cols - c, acc + c, ldacc);
  }
  if (c < cols) {
    MicroTile<MR, 1>(x, ldx, panels + (c / kInt8PanelWidth) * panel_bytes, panel_bytes, depth,
                     cols - c, acc + c, ldacc);
  }
}

// The last `count` (1-3) int8 weights of a row in every lane, padded with
// zeros, which also cancel whatever the activation panel holds there.
inline __m512i BroadcastPartialWeights(const int8_t* w, int64_t count) {
  uint32_t v = 0;
  for (int64_t i = 0; i < count; ++i) v |= uint32_t{static_cast<uint8_t>(w[i])} << (8 * i);
  return _mm512_set1_epi32(static_cast<int>(v));
}

// MR output channels x NP activation panels (16 * NP rows of which
// `rows_left` are stored), rescaled into y[o * ldy + r].
template <int MR, int NP>
void TransposedMicroTile(const uint8_t* x_panels, int64_t panel_bytes, const int8_t* w,
                         int64_t depth, int64_t o0, int64_t rows_left,
                         const Int8Rescale& rescale, float* y, int64_t ldy) {
  __m512i sum[MR][NP];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) sum[i][j] = _mm512_setzero_si512();
  }
  const int64_t groups = (depth + kInt8PanelDepth - 1) / kInt8PanelDepth;
  for (int64_t g = 0; g < groups; ++g) {
    __m512i xv[NP];
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) {
      xv[j] = _mm512_loadu_si512(x_panels + j * panel_bytes + g * kInt8PanelWidth * kInt8PanelDepth);
    }
    const int64_t count = depth - g * kInt8PanelDepth;
    if (count >= kInt8PanelDepth) {
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m512i wv =
            _mm512_broadcastd_epi32(_mm_loadu_si32(w + (o0 + i) * depth + g * kInt8PanelDepth));
#pragma GCC unroll 4
        for (int j = 0; j < NP; ++j) sum[i][j] = _mm512_dpbusd_epi32(sum[i][j], xv[j], wv);
      }
    } else {
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m512i wv = BroadcastPartialWeights(w + (o0 + i) * depth + g * kInt8PanelDepth, count);
#pragma GCC unroll 4
        for (int j = 0; j < NP; ++j) sum[i][j] = _mm512_dpbusd_epi32(sum[i][j], xv[j], wv);
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    const int64_t o = o0 + i;
    const __m512i zero_sum = _mm512_set1_epi32(static_cast<int>(
        static_cast<uint32_t>(rescale.x_zero) * static_cast<uint32_t>(rescale.w_row_sums[o])));
    const __m512 scale = _mm512_set1_ps(rescale.x_scale * rescale.w_scales[o]);
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) {
      const int64_t left = rows_left - j * kInt8PanelWidth;
      if (left <= 0) break;
      __m512 v = _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_sub_epi32(sum[i][j], zero_sum)));
      if (rescale.bias != nullptr) v = _mm512_add_ps(v, _mm512_set1_ps(rescale.bias[o]));
      if (rescale.relu) v = _mm512_max_ps(v, _mm512_setzero_ps());  // v > 0 ? v : 0
      const __mmask16 mask =
          left >= kInt8PanelWidth ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << left) - 1);
      _mm512_mask_storeu_ps(y + o * ldy + j * kInt8PanelWidth, mask, v);
    }
  }
}

template <int MR>
void TransposedChannelStrip(const uint8_t* x_panels, int64_t rows, const int8_t* w,
                            int64_t depth, int64_t o0, const Int8Rescale& rescale, float* y,
                            int64_t ldy) {
  const int64_t panel_bytes = Int8PanelBytes(depth);
  int64_t r = 0;
  for (; r + kInt8PanelWidth < rows; r += 2 * kInt8PanelWidth) {
    TransposedMicroTile<MR, 2>(x_panels + (r / kInt8PanelWidth) * panel_bytes, panel_bytes, w,
                               depth, o0, rows - r, rescale, y + r, ldy);
  }
  if (r < rows) {
    TransposedMicroTile<MR, 1>(x_panels + (r / kInt8PanelWidth) * panel_bytes, panel_bytes, w,
                               depth, o0, rows - r, rescale, y + r, ldy);
  }
}

// MR rows of a 16-column float panel: one zmm accumulator a row.
template <int MR>
void PanelMicroTile(const float* x, int64_t ldx, const float* panel, int64_t depth, float* y,
                    int64_t ldy, int64_t cols) {
  __m512 sum[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) sum[i] = _mm512_setzero_ps();
  for (int64_t kk = 0; kk < depth; ++kk) {
    const __m512 b = _mm512_loadu_ps(panel + kk * kPanelWidth);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) sum[i] = _mm512_fmadd_ps(_mm512_set1_ps(x[i * ldx + kk]), b, sum[i]);
  }
  const __mmask16 mask =
      cols >= kPanelWidth ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << cols) - 1);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) _mm512_mask_storeu_ps(y + i * ldy, mask, sum[i]);
}

inline __m512 RoundHalfEvenClamped(__m512 v, __m512 zero) {
  // The scalar kernel's 1.5 * 2^23 rounding, operation for operation.
  const __m512 rounder = _mm512_set1_ps(12582912.0f);
  v = _mm512_max_ps(v, _mm512_set1_ps(-512.0f));  // NaN -> -512, as v >= -512 ? v : -512
  v = _mm512_min_ps(v, _mm512_set1_ps(512.0f));
  v = _mm512_add_ps(_mm512_sub_ps(_mm512_add_ps(v, rounder), rounder), zero);
  v = _mm512_max_ps(v, _mm512_setzero_ps());
  return _mm512_min_ps(v, _mm512_set1_ps(255.0f));
}

}  // namespace

void Int8PanelTileAvx512Vnni(const uint8_t* x, int64_t ldx, const int8_t* panels,
                             int64_t rows, int64_t cols, int64_t depth, int32_t* acc,
                             int64_t ldacc) {
  ForRowBlocks<8>(rows, [&]<int MR>(int64_t r) {
    RowStrip<MR>(x + r * ldx, ldx, panels, cols, depth, acc + r * ldacc, ldacc);
  });
}

void Int8TransposedGemmAvx512Vnni(const uint8_t* x_panels, int64_t rows, const int8_t* w,
                                  int64_t out, int64_t depth, const Int8Rescale& rescale,
                                  float* y, int64_t ldy) {
  ForRowBlocks<8>(out, [&]<int MR>(int64_t o) {
    TransposedChannelStrip<MR>(x_panels, rows, w, depth, o, rescale, y, ldy);
  });
}

void PanelGemmAvx512(const float* x, int64_t ldx, int64_t rows, const float* panel,
                     int64_t depth, float* y, int64_t ldy, int64_t cols) {
  // 12 accumulators hide the FMA latency; one panel load feeds 12 FMAs.
  ForRowBlocks<12>(rows, [&]<int MR>(int64_t r) {
    PanelMicroTile<MR>(x + r * ldx, ldx, panel, depth, y + r * ldy, ldy, cols);
  });
}

void Int8EpilogueAvx512(const int32_t* acc, int64_t ldacc, int64_t rows, int64_t cols,
                        const float* x_scales, const int32_t* x_zeros, const float* w_scales,
                        const int32_t* w_row_sums, const float* bias, float* y, int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r) {
    const __m512 sx = _mm512_set1_ps(x_scales[r]);
    const __m512i zx = _mm512_set1_epi32(x_zeros[r]);
    for (int64_t c = 0; c < cols; c += 16) {
      const __mmask16 mask =
          cols - c >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << (cols - c)) - 1);
      // The low 32 bits of zx * row_sum, as the scalar uint32 product.
      const __m512i zero_sum = _mm512_mullo_epi32(zx, _mm512_maskz_loadu_epi32(mask, w_row_sums + c));
      const __m512i centred =
          _mm512_sub_epi32(_mm512_maskz_loadu_epi32(mask, acc + r * ldacc + c), zero_sum);
      const __m512 scale = _mm512_mul_ps(sx, _mm512_maskz_loadu_ps(mask, w_scales + c));
      __m512 v = _mm512_mul_ps(scale, _mm512_cvtepi32_ps(centred));
      if (bias != nullptr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, bias + c));
      _mm512_mask_storeu_ps(y + r * ldy + c, mask, v);
    }
  }
}

bool MinMaxAvx512(const float* x, int64_t n, float* lo, float* hi) {
  // Lanes start at 0 and take x only when strictly below (above), as
  // std::min(lo, x) / std::max(hi, x) do, so no lane ever holds -0.0 and
  // combining the lanes gives the scalar loop's result.
  __m512 l = _mm512_setzero_ps(), h = _mm512_setzero_ps();
  const __m512 largest = _mm512_set1_ps(3.40282347e38f);
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  __mmask16 finite = 0xFFFF;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    const __m512 a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), abs_mask));
    finite &= _mm512_cmp_ps_mask(a, largest, _CMP_LE_OQ);
    l = _mm512_min_ps(v, l);  // v < l ? v : l
    h = _mm512_max_ps(v, h);  // v > h ? v : h
  }
  if (i < n) {
    const __mmask16 tail = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(tail, x + i);  // zeros past n change nothing
    const __m512 a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), abs_mask));
    finite &= _mm512_cmp_ps_mask(a, largest, _CMP_LE_OQ);
    l = _mm512_min_ps(v, l);
    h = _mm512_max_ps(v, h);
  }
  alignas(64) float ls[16], hs[16];
  _mm512_store_ps(ls, l);
  _mm512_store_ps(hs, h);
  float lmin = 0.0f, hmax = 0.0f;
  for (int k = 0; k < 16; ++k) {
    lmin = ls[k] < lmin ? ls[k] : lmin;
    hmax = hmax < hs[k] ? hs[k] : hmax;
  }
  *lo = lmin;
  *hi = hmax;
  return finite == 0xFFFF;
}

void QuantizeRowAvx512(const float* x, int64_t n, float factor, bool divide, float zero,
                       uint8_t* q) {
  const __m512 f = _mm512_set1_ps(factor);
  const __m512 z = _mm512_set1_ps(zero);
  int64_t i = 0;
  auto one = [&](__m512 v) {
    v = divide ? _mm512_div_ps(v, f) : _mm512_mul_ps(v, f);
    return _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(RoundHalfEvenClamped(v, z)));
  };
  for (; i + 16 <= n; i += 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), one(_mm512_loadu_ps(x + i)));
  }
  if (i < n) {
    const __mmask16 tail = static_cast<__mmask16>((1u << (n - i)) - 1);
    alignas(16) uint8_t bytes[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(bytes), one(_mm512_maskz_loadu_ps(tail, x + i)));
    for (int64_t k = 0; k < n - i; ++k) q[i + k] = bytes[k];
  }
}

namespace {

// The 16 (or, in a row's tail, count < 16) bytes of a row at `bytes`,
// zero-extended, as 32-bit lanes.
inline __m512i LoadNibbleBytes(const uint8_t* bytes, int64_t count) {
  __m128i v;
  if (count == 16) {
    v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes));
  } else if (count == 8) {
    v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes));
  } else {
    alignas(16) uint8_t tail[16] = {};
    for (int64_t i = 0; i < count; ++i) tail[i] = bytes[i];
    v = _mm_load_si128(reinterpret_cast<const __m128i*>(tail));
  }
  return _mm512_cvtepu8_epi32(v);
}

// Int4GemvAvx512 for exactly kRows activation rows, groups of >= 16 bytes
// or a codebook: one sum per group, scaled once.
template <int kRows>
void Int4GemvRows(const Int4GemvArgs& a) {
  const __m512i low_nibble = _mm512_set1_epi32(0xF);
  for (int64_t n = 0; n < a.rows; ++n) {
    const uint8_t* row = a.packed + n * a.row_bytes;
    const __m512 codebook =
        a.codebook == nullptr ? _mm512_setzero_ps() : _mm512_loadu_ps(a.codebook + n * a.codebook_stride);
    __m512 total[kRows];
    for (int r = 0; r < kRows; ++r) total[r] = _mm512_setzero_ps();
    for (int64_t g = 0; g < a.groups; ++g) {
      const __m512i zero =
          _mm512_set1_epi32(a.zero_points == nullptr ? 8 : a.zero_points[n * a.groups + g]);
      __m512 even[kRows], odd[kRows];
      for (int r = 0; r < kRows; ++r) even[r] = odd[r] = _mm512_setzero_ps();
      const int64_t end = (g + 1) * a.group_bytes;
      for (int64_t b = g * a.group_bytes; b < end; b += 16) {
        const int64_t count = end - b < 16 ? end - b : 16;
        const __mmask16 mask = static_cast<__mmask16>((1u << count) - 1);
        const __m512i wide = LoadNibbleBytes(row + b, count);
        const __m512i q_even = _mm512_and_si512(wide, low_nibble);
        const __m512i q_odd = _mm512_srli_epi32(wide, 4);
        __m512 w_even, w_odd;
        if (a.codebook != nullptr) {
          w_even = _mm512_permutexvar_ps(q_even, codebook);
          w_odd = _mm512_permutexvar_ps(q_odd, codebook);
        } else {
          w_even = _mm512_cvtepi32_ps(_mm512_sub_epi32(q_even, zero));
          w_odd = _mm512_cvtepi32_ps(_mm512_sub_epi32(q_odd, zero));
        }
        for (int r = 0; r < kRows; ++r) {
          even[r] = _mm512_fmadd_ps(w_even, _mm512_maskz_loadu_ps(mask, a.x_even + r * a.ldx + b), even[r]);
          // Two chains where few rows give little parallelism; one (fewer
          // registers) otherwise.
          __m512& second = kRows <= 2 ? odd[r] : even[r];
          second = _mm512_fmadd_ps(w_odd, _mm512_maskz_loadu_ps(mask, a.x_odd + r * a.ldx + b), second);
        }
      }
      if (a.codebook != nullptr) {
        for (int r = 0; r < kRows; ++r) total[r] = _mm512_add_ps(total[r], _mm512_add_ps(even[r], odd[r]));
      } else {
        const __m512 scale = _mm512_set1_ps(a.scales[n * a.groups + g]);
        for (int r = 0; r < kRows; ++r) {
          total[r] = _mm512_fmadd_ps(scale, _mm512_add_ps(even[r], odd[r]), total[r]);
        }
      }
    }
    for (int r = 0; r < kRows; ++r) {
      const float dot = _mm512_reduce_add_ps(total[r]);
      a.y[r * a.ldy + n] = a.bias == nullptr ? dot : dot + a.bias[n];
    }
  }
}

// Int4GemvAvx512 for exactly kRows activation rows and groups of 4 or 8
// bytes (group sizes 8 and 16), several to a 16-byte step: every lane gets
// its group's scale and zero point, and the weights are scaled before the
// multiply-add (the reference's float(q - zero) * scale).
template <int kRows>
void Int4GemvSmallGroupRows(const Int4GemvArgs& a) {
  const __m512i low_nibble = _mm512_set1_epi32(0xF);
  alignas(64) int32_t lane_group[16];
  for (int i = 0; i < 16; ++i) lane_group[i] = static_cast<int32_t>(i / a.group_bytes);
  const __m512i lane_to_group = _mm512_load_si512(lane_group);
  const int shift = a.group_bytes == 8 ? 3 : 2;  // group sizes 16 and 8 (powers of two, >= 8)
  for (int64_t n = 0; n < a.rows; ++n) {
    const uint8_t* row = a.packed + n * a.row_bytes;
    const float* scales = a.scales + n * a.groups;
    const uint8_t* zeros = a.zero_points == nullptr ? nullptr : a.zero_points + n * a.groups;
    __m512 even[kRows], odd[kRows];
    for (int r = 0; r < kRows; ++r) even[r] = odd[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < a.row_bytes; b += 16) {
      const int64_t count = a.row_bytes - b < 16 ? a.row_bytes - b : 16;
      const __mmask16 mask = static_cast<__mmask16>((1u << count) - 1);
      const int64_t first = b >> shift, in_step = (count + a.group_bytes - 1) >> shift;
      const __mmask16 group_mask = static_cast<__mmask16>((1u << in_step) - 1);
      const __m512 scale = _mm512_permutexvar_ps(lane_to_group, _mm512_maskz_loadu_ps(group_mask, scales + first));
      const __m512i zero = zeros == nullptr ? _mm512_set1_epi32(8)
                                            : _mm512_permutexvar_epi32(lane_to_group,
                                                                       LoadNibbleBytes(zeros + first, in_step));
      const __m512i wide = LoadNibbleBytes(row + b, count);
      const __m512 w_even =
          _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(wide, low_nibble), zero)), scale);
      const __m512 w_odd = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(wide, 4), zero)), scale);
      for (int r = 0; r < kRows; ++r) {
        even[r] = _mm512_fmadd_ps(w_even, _mm512_maskz_loadu_ps(mask, a.x_even + r * a.ldx + b), even[r]);
        __m512& second = kRows <= 2 ? odd[r] : even[r];  // as in Int4GemvRows
        second = _mm512_fmadd_ps(w_odd, _mm512_maskz_loadu_ps(mask, a.x_odd + r * a.ldx + b), second);
      }
    }
    for (int r = 0; r < kRows; ++r) {
      const float dot = _mm512_reduce_add_ps(_mm512_add_ps(even[r], odd[r]));
      a.y[r * a.ldy + n] = a.bias == nullptr ? dot : dot + a.bias[n];
    }
  }
}

}  // namespace

void Int4GemvAvx512(const Int4GemvArgs& args) {
  ForRowBlocks<kGemvBlockRows>(args.x_rows, [&]<int kRows>(int64_t r) {
    Int4GemvArgs block = args;
    block.x_even += r * args.ldx;
    block.x_odd += r * args.ldx;
    block.y += r * args.ldy;
    if (args.codebook == nullptr && args.group_bytes < 16) {
      Int4GemvSmallGroupRows<kRows>(block);
    } else {
      Int4GemvRows<kRows>(block);
    }
  });
}

}  // namespace squeeze::core::quant::gemm::internal
