#include "core/eval/seeded_normal.h"

#include <cmath>
#include <numbers>

namespace squeeze::core::eval {

double SeededNormal::NextUniform() {
  // 53 random bits -> a double in [0, 1).
  return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
}

double SeededNormal::Next() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  // 1 - u lies in (0, 1], so the log is finite.
  const double radius = std::sqrt(-2.0 * std::log(1.0 - NextUniform()));
  const double angle = 2.0 * std::numbers::pi * NextUniform();
  spare_ = radius * std::sin(angle);
  has_spare_ = true;
  return radius * std::cos(angle);
}

std::vector<float> NormalFloats(uint64_t seed, int64_t count) {
  SeededNormal normal(seed);
  std::vector<float> out(count);
  for (float& v : out) v = static_cast<float>(normal.Next());
  return out;
}

}  // namespace squeeze::core::eval
