#include "core/quant/ptq/observers.h"

#include <cmath>
#include <utility>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant::ptq {
namespace {

std::vector<float> AbsGaussianWithOutlier(int n, float outlier) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> v(n);
  for (float& x : v) x = std::fabs(normal(rng));
  v[0] = outlier;
  return v;
}

TEST(ObserversTest, MinMaxIsTheExactMaximum) {
  auto range = ObserveRange("x", {0.5f, 1.0f}, 3.0, true, Observer::kMinMax);
  ASSERT_TRUE(range.ok());
  EXPECT_FLOAT_EQ(range->threshold, 3.0f);
  EXPECT_FALSE(range->is_unsigned);
  EXPECT_FLOAT_EQ(range->Scale(), 3.0f / 127);
}

TEST(ObserversTest, PercentileOfUniform) {
  std::vector<float> v(100000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i + 1) / v.size();
  auto range = ObserveRange("x", v, 1.0, false, Observer::kPercentile, 99.0);
  ASSERT_TRUE(range.ok());
  EXPECT_NEAR(range->threshold, 0.99, 1e-4);
  EXPECT_TRUE(range->is_unsigned);
  EXPECT_FLOAT_EQ(range->Scale(), range->threshold / 255);
}

TEST(ObserversTest, MseAndEntropyClipAGaussianOutlier) {
  const std::vector<float> v = AbsGaussianWithOutlier(200000, 50.0f);
  for (Observer observer : {Observer::kMse, Observer::kEntropy, Observer::kPercentile}) {
    auto range = ObserveRange("x", v, 50.0, true, observer);
    ASSERT_TRUE(range.ok());
    // Percentile and KL clip near 3-5 sigma; MSE still pays for the one
    // outlier's clipping error, so it clips less, but it does clip.
    EXPECT_GT(range->threshold, 2.0f) << ObserverName(observer);
    EXPECT_LT(range->threshold, observer == Observer::kMse ? 40.0f : 10.0f) << ObserverName(observer);
  }
}

// Exponential quantiles -ln(1 - (i + 0.5) / n): a long, light tail.
std::vector<float> ExponentialQuantiles(int n) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = static_cast<float>(-std::log1p(-(i + 0.5) / n));
  return v;
}

// The bins TensorRT's procedure picks on the same values
// (tests/fixtures/observers/entropy_reference.py prints "unsigned threshold
// 11.1094... bins 1864" and "signed threshold 10.2631... bins 1722"); ours
// reports the middle of the chosen bin.
TEST(ObserversTest, EntropyMatchesTheReferenceProcedure) {
  const std::vector<float> v = ExponentialQuantiles(100000);
  const double max = v.back();
  const double width = max / 2048;
  for (auto [is_unsigned, bins] : {std::pair{true, 1864}, std::pair{false, 1722}}) {
    auto range = ObserveRange("x", v, max, !is_unsigned, Observer::kEntropy);
    ASSERT_TRUE(range.ok());
    EXPECT_NEAR(range->threshold, (bins + 0.5) * width, 1e-4) << (is_unsigned ? "unsigned" : "signed");
  }
}

TEST(ObserversTest, UniformNeedsNoClipping) {
  std::vector<float> v(100000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) / v.size();
  auto mse = ObserveRange("x", v, 1.0, true, Observer::kMse);
  ASSERT_TRUE(mse.ok());
  EXPECT_GT(mse->threshold, 0.97f);
}

TEST(ObserversTest, AllZeroAndBadInput) {
  auto zero = ObserveRange("x", {0.0f, 0.0f}, 0.0, false, Observer::kEntropy);
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(zero->threshold, 0.0f);
  EXPECT_EQ(zero->Scale(), 1.0f);
  EXPECT_THAT(ObserveRange("fc1 input", {}, 1.0, false, Observer::kMinMax).status().message(),
              ::testing::HasSubstr("no calibration values for fc1 input"));
  EXPECT_FALSE(ObserveRange("x", {1.0f}, 1.0, false, Observer::kPercentile, 0.0).ok());
}

}  // namespace
}  // namespace squeeze::core::quant::ptq
