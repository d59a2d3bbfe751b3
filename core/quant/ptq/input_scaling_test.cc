#include "core/quant/ptq/input_scaling.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"

namespace squeeze::core::quant::ptq {
namespace {

TEST(InputScalingTest, AwqIsNeverWorseThanAlphaZero) {
  const int64_t out = 16, in = 64, rows = 256;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0, 1);
  for (int trial = 0; trial < 5; ++trial) {
    std::vector<float> w(out * in), x(rows * in);
    for (float& v : w) v = normal(rng);
    std::vector<double> mean(in, 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < in; ++c) {
        // A few salient channels with large activations, as AWQ assumes.
        x[r * in + c] = normal(rng) * (c % 13 == 0 ? 20.0f : 1.0f) * (trial == 0 ? 0.0f : 1.0f);
        mean[c] += std::fabs(x[r * in + c]) / rows;
      }
    }
    ScaledLayerView view{"fc", out, in, 1, &w, &x, rows};
    auto search = SearchAwqScales({view}, mean, {4, 16, false});
    ASSERT_TRUE(search.ok()) << search.status();
    EXPECT_LE(search->error, search->error_at_zero);
    if (trial > 0) {
      EXPECT_GT(search->alpha, 0.0);
    }
  }
}

TEST(InputScalingTest, SmoothQuantScalingPreservesTheFloatOutput) {
  const int64_t out = 8, channels = 6, kernel = 4, in = channels * kernel;
  std::mt19937 rng(6);
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> w(out * in), x(in);
  for (float& v : w) v = normal(rng);
  for (float& v : x) v = normal(rng) * 10;
  std::vector<double> act_max(channels);
  for (int64_t c = 0; c < in; ++c) act_max[c / kernel] = std::max<double>(act_max[c / kernel], std::fabs(x[c]));
  ScaledLayerView view{"conv", out, in, kernel, &w, nullptr, 0};
  auto s = SmoothQuantScales({view}, act_max, 0.5);
  ASSERT_TRUE(s.ok());
  const std::vector<float> ws = ScaleColumns(w, out, in, kernel, *s);
  for (int64_t o = 0; o < out; ++o) {
    double y = 0, ys = 0;
    for (int64_t c = 0; c < in; ++c) {
      y += double{x[c]} * w[o * in + c];
      ys += double{x[c] * (1.0f / (*s)[c / kernel])} * ws[o * in + c];
    }
    EXPECT_NEAR(ys, y, 1e-4 * (1 + std::fabs(y)));
  }
  // max|x/s| and max|W s| are equalised per channel at alpha 0.5.
  for (int64_t ch = 0; ch < channels; ++ch) {
    double wmax = 0;
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t k = 0; k < kernel; ++k) wmax = std::max<double>(wmax, std::fabs(ws[o * in + ch * kernel + k]));
    }
    EXPECT_NEAR(act_max[ch] / (*s)[ch], wmax, 1e-3 * wmax);
  }
  EXPECT_FALSE(SmoothQuantScales({view}, act_max, 1.5).ok());
}

}  // namespace
}  // namespace squeeze::core::quant::ptq
