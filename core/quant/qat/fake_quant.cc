#include "core/quant/qat/fake_quant.h"

#include <algorithm>
#include <cmath>

namespace squeeze::core::quant::qat {

QuantGrid SignedGrid(int bits) {
  const float half = static_cast<float>(int64_t{1} << (bits - 1));
  return QuantGrid{-half, half - 1, 0};
}

float QuantizeCode(float x, float scale, const QuantGrid& grid) {
  const float code = std::nearbyint(x / scale) + grid.zero;
  return std::clamp(code, grid.qmin, grid.qmax);
}

float FakeQuantize(float x, float scale, const QuantGrid& grid) {
  return (QuantizeCode(x, scale, grid) - grid.zero) * scale;
}

LsqGradient LsqBackward(float x, float scale, const QuantGrid& grid, float dy) {
  const float scaled = x / scale;
  const float code = std::nearbyint(scaled) + grid.zero;
  if (code < grid.qmin) return {0, dy * (grid.qmin - grid.zero)};
  if (code > grid.qmax) return {0, dy * (grid.qmax - grid.zero)};
  return {dy, dy * (std::nearbyint(scaled) - scaled)};
}

float LsqGradientScale(int64_t elements, float qmax) {
  return 1.0f / std::sqrt(static_cast<float>(elements) * qmax);
}

}  // namespace squeeze::core::quant::qat
