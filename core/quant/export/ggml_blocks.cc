#include "core/quant/export/ggml_blocks.h"

#include <algorithm>
#include <cmath>

#include "core/graph/tensor.h"
#include "core/model/tensor.h"

namespace squeeze::core::quant_export {

void QuantizeQ8_0Ref(const float* x, BlockQ8_0* y, int64_t k) {
  for (int64_t b = 0; b < k / kGgmlBlockSize; ++b) {
    const float* v = x + b * kGgmlBlockSize;
    float amax = 0.0f;
    for (int j = 0; j < kGgmlBlockSize; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = graph::FloatToHalf(d);
    for (int j = 0; j < kGgmlBlockSize; ++j) {
      y[b].qs[j] = static_cast<int8_t>(std::round(v[j] * id));
    }
  }
}

void QuantizeQ4_0Ref(const float* x, BlockQ4_0* y, int64_t k) {
  constexpr int kHalf = kGgmlBlockSize / 2;
  for (int64_t b = 0; b < k / kGgmlBlockSize; ++b) {
    const float* v = x + b * kGgmlBlockSize;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kGgmlBlockSize; ++j) {
      if (amax < std::fabs(v[j])) {
        amax = std::fabs(v[j]);
        max = v[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = graph::FloatToHalf(d);
    for (int j = 0; j < kHalf; ++j) {
      // The float-to-int8 conversion truncates toward zero, as ggml's cast.
      const auto low = static_cast<uint8_t>(
          std::min(15, static_cast<int>(static_cast<int8_t>(v[j] * id + 8.5f))));
      const auto high = static_cast<uint8_t>(
          std::min(15, static_cast<int>(static_cast<int8_t>(v[j + kHalf] * id + 8.5f))));
      y[b].qs[j] = static_cast<uint8_t>(low | (high << 4));
    }
  }
}

void DequantizeQ8_0(const BlockQ8_0* x, float* y, int64_t k) {
  for (int64_t b = 0; b < k / kGgmlBlockSize; ++b) {
    const float d = model::HalfToFloat(x[b].d);
    for (int j = 0; j < kGgmlBlockSize; ++j) y[b * kGgmlBlockSize + j] = x[b].qs[j] * d;
  }
}

void DequantizeQ4_0(const BlockQ4_0* x, float* y, int64_t k) {
  constexpr int kHalf = kGgmlBlockSize / 2;
  for (int64_t b = 0; b < k / kGgmlBlockSize; ++b) {
    const float d = model::HalfToFloat(x[b].d);
    float* out = y + b * kGgmlBlockSize;
    for (int j = 0; j < kHalf; ++j) {
      out[j] = static_cast<float>((x[b].qs[j] & 0x0f) - 8) * d;
      out[j + kHalf] = static_cast<float>((x[b].qs[j] >> 4) - 8) * d;
    }
  }
}

}  // namespace squeeze::core::quant_export
