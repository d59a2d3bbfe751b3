#include "core/kernels/cpu/vector_math.h"

#include <cmath>
#include <limits>
#include <vector>

#include "core/kernels/cpu/fast_gemm.h"
#include "gtest/gtest.h"

namespace squeeze::core::kernels::cpu {
namespace {

// Distance in float steps between a float and a double reference.
double Ulps(float value, double reference) {
  const float nearest = static_cast<float>(reference);
  const double step = std::nextafter(nearest, std::numeric_limits<float>::infinity()) - nearest;
  return std::fabs(value - reference) / step;
}

TEST(VectorMathTest, ExpIsWithinTwoUlpOfExpOverItsRange) {
  double worst = 0;
  for (float x = 0.0f; x > -87.3f; x -= 0.00137f) {
    worst = std::max(worst, Ulps(internal::ExpNonPositive(x), std::exp(static_cast<double>(x))));
  }
  EXPECT_LT(worst, 2.0);
  EXPECT_EQ(internal::ExpNonPositive(0.0f), 1.0f);
  EXPECT_EQ(internal::ExpNonPositive(-100.0f), 0.0f);
  EXPECT_EQ(internal::ExpNonPositive(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_TRUE(std::isnan(internal::ExpNonPositive(std::nanf(""))));
}

TEST(VectorMathTest, SoftmaxRowsMatchesDoubleReference) {
  for (int64_t n : {1, 3, 16, 17, 128, 257}) {
    const int64_t rows = 3;
    std::vector<float> x(rows * n), y(rows * n);
    for (int64_t i = 0; i < rows * n; ++i) x[i] = static_cast<float>((i * 37) % 101) / 7.0f - 6.0f;
    x[0] = -200.0f;  // underflows to 0 after the shift
    SoftmaxRows(x.data(), y.data(), rows, n);
    for (int64_t r = 0; r < rows; ++r) {
      double max = -1e300, sum = 0;
      for (int64_t i = 0; i < n; ++i) max = std::max(max, static_cast<double>(x[r * n + i]));
      for (int64_t i = 0; i < n; ++i) sum += std::exp(x[r * n + i] - max);
      for (int64_t i = 0; i < n; ++i) {
        const double expected = std::exp(x[r * n + i] - max) / sum;
        EXPECT_NEAR(y[r * n + i], expected, 1e-6 * expected + 1e-30) << "n " << n << " row " << r;
      }
    }
    // In place gives the same.
    std::vector<float> z = x;
    SoftmaxRows(z.data(), z.data(), rows, n);
    EXPECT_EQ(z, y);
  }
}

TEST(VectorMathTest, SigmoidMatchesReferenceWithoutOverflow) {
  std::vector<float> x = {-1000.0f, -88.0f, -20.0f, -1.5f, -0.0f, 0.0f, 0.25f, 3.0f, 40.0f, 1000.0f};
  for (int i = 0; i < 40; ++i) x.push_back(static_cast<float>(i) * 0.7f - 14.0f);
  std::vector<float> y(x.size());
  SigmoidArray(x.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const double expected = 1.0 / (1.0 + std::exp(-static_cast<double>(x[i])));
    EXPECT_NEAR(y[i], expected, 2e-7 * expected + 1e-37) << "x " << x[i];
  }
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[9], 1.0f);
}

TEST(VectorMathTest, Avx512LoopsMatchThePortableOnes) {
  if (!internal::CpuRunsAvx512()) GTEST_SKIP() << "no AVX-512 here";
  std::vector<float> x;
  for (int i = 0; i < 1000; ++i) x.push_back(static_cast<float>((i * 7919) % 2003) / 10.0f - 100.0f);
  x.push_back(std::nanf(""));
  x.push_back(-0.0f);
  for (int64_t n : {int64_t{1}, int64_t{15}, int64_t{16}, int64_t{33}, int64_t{1002}}) {
    std::vector<float> portable(n), avx512(n);
    internal::SigmoidArrayPortable(x.data(), portable.data(), n);
    internal::SigmoidArrayAvx512(x.data(), avx512.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      if (std::isnan(portable[i])) {
        EXPECT_TRUE(std::isnan(avx512[i]));
      } else {
        EXPECT_EQ(portable[i], avx512[i]) << "sigmoid n " << n << " i " << i;  // same lanes
      }
    }
  }
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{16}, int64_t{40}, int64_t{128}}) {
    const int64_t rows = 1000 / n;
    std::vector<float> portable(rows * n), avx512(rows * n);
    internal::SoftmaxRowsPortable(x.data(), portable.data(), rows, n);
    internal::SoftmaxRowsAvx512(x.data(), avx512.data(), rows, n);
    for (int64_t i = 0; i < rows * n; ++i) {
      // Only the sum's order differs.
      EXPECT_NEAR(portable[i], avx512[i], 2e-7 * portable[i]) << "softmax n " << n << " i " << i;
    }
  }
}

}  // namespace
}  // namespace squeeze::core::kernels::cpu
