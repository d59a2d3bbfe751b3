// The portable kernels: plain loops the compiler may vectorize for the
// baseline ISA. Int8TileScalar is the int8 oracle, so it stays obvious.
#include <cmath>

#include "core/quant/gemm/kernels.h"

namespace squeeze::core::quant::gemm::internal {

void Int8TileScalar(const uint8_t* x, int64_t ldx, const int8_t* w, int64_t ldw,
                    int64_t rows, int64_t cols, int64_t depth, int32_t* acc,
                    int64_t ldacc) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      int32_t sum = 0;
      for (int64_t kk = 0; kk < depth; ++kk) {
        sum += int32_t{x[r * ldx + kk]} * int32_t{w[c * ldw + kk]};
      }
      acc[r * ldacc + c] = sum;
    }
  }
}

void PanelGemmScalar(const float* x, int64_t ldx, int64_t rows,
                     const float* panel, int64_t depth, float* y, int64_t ldy,
                     int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    float sum[kPanelWidth] = {};
    for (int64_t kk = 0; kk < depth; ++kk) {
      const float xv = x[r * ldx + kk];
      const float* p = panel + kk * kPanelWidth;
      for (int c = 0; c < kPanelWidth; ++c) sum[c] += xv * p[c];
    }
    for (int64_t c = 0; c < cols; ++c) y[r * ldy + c] = sum[c];
  }
}

bool MinMaxScalar(const float* x, int64_t n, float* lo, float* hi) {
  float l = 0.0f, h = 0.0f;
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    finite &= std::isfinite(x[i]);
    l = x[i] < l ? x[i] : l;  // std::min(l, x[i])
    h = h < x[i] ? x[i] : h;  // std::max(h, x[i])
  }
  *lo = l;
  *hi = h;
  return finite;
}

namespace {

// Round half to even by the 1.5 * 2^23 trick (exact for |v| < 2^22, which
// the clamp to +-512 ensures) instead of a libm call, so that it vectorizes.
template <bool kDivide>
void QuantizeRowLoop(const float* x, int64_t n, float factor, float zero, uint8_t* q) {
  constexpr float kRounder = 12582912.0f;
  for (int64_t i = 0; i < n; ++i) {
    float v = kDivide ? x[i] / factor : x[i] * factor;
    v = v >= -512.0f ? v : -512.0f;  // also NaN
    v = v <= 512.0f ? v : 512.0f;
    v = (v + kRounder) - kRounder + zero;
    v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
    q[i] = static_cast<uint8_t>(v);
  }
}

}  // namespace

void QuantizeRowScalar(const float* x, int64_t n, float factor, bool divide, float zero,
                       uint8_t* q) {
  if (divide) {
    QuantizeRowLoop<true>(x, n, factor, zero, q);
  } else {
    QuantizeRowLoop<false>(x, n, factor, zero, q);
  }
}

void Int8TransposedGemmScalar(const uint8_t* x_panels, int64_t rows, const int8_t* w,
                              int64_t out, int64_t depth, const Int8Rescale& rescale, float* y,
                              int64_t ldy) {
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* panel = x_panels + (r / kInt8PanelWidth) * Int8PanelBytes(depth);
      int32_t sum = 0;
      for (int64_t kk = 0; kk < depth; ++kk) {
        const int64_t at = ((kk / kInt8PanelDepth) * kInt8PanelWidth + r % kInt8PanelWidth) *
                               kInt8PanelDepth + kk % kInt8PanelDepth;
        sum += int32_t{panel[at]} * int32_t{w[o * depth + kk]};
      }
      const int32_t centred = static_cast<int32_t>(
          static_cast<uint32_t>(sum) -
          static_cast<uint32_t>(rescale.x_zero * rescale.w_row_sums[o]));
      float v = (rescale.x_scale * rescale.w_scales[o]) * static_cast<float>(centred);
      if (rescale.bias != nullptr) v += rescale.bias[o];
      if (rescale.relu) v = v > 0.0f ? v : 0.0f;  // std::max(0.0f, v), the Relu kernel's
      y[o * ldy + r] = v;
    }
  }
}

}  // namespace squeeze::core::quant::gemm::internal
