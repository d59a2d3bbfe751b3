#include "core/eval/seeded_normal.h"

#include <cmath>

#include "gtest/gtest.h"

namespace squeeze::core::eval {
namespace {

TEST(SeededNormalTest, SameSeedSameSamples) {
  EXPECT_EQ(NormalFloats(42, 100), NormalFloats(42, 100));
  EXPECT_NE(NormalFloats(42, 100), NormalFloats(43, 100));
}

TEST(SeededNormalTest, MomentsAreStandardNormal) {
  const std::vector<float> samples = NormalFloats(7, 200000);
  double sum = 0.0;
  double sum_squares = 0.0;
  for (float v : samples) {
    ASSERT_TRUE(std::isfinite(v));
    sum += v;
    sum_squares += double{v} * v;
  }
  const double mean = sum / samples.size();
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(sum_squares / samples.size() - mean * mean, 1.0, 0.02);
}

TEST(SeededNormalTest, UniformInUnitInterval) {
  SeededNormal rng(1);
  for (int i = 0; i < 10000; ++i) {
    const double u = rng.NextUniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

}  // namespace
}  // namespace squeeze::core::eval
