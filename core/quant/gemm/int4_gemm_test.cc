#include "core/quant/gemm/int4_gemm.h"

#include <cmath>
#include <cstring>
#include <random>
#include <tuple>

#include "core/quant/gemm/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant::gemm {
namespace {

using ::testing::HasSubstr;

QuantizedLinear Quantized(int64_t out, int64_t in, const RtnOptions& options,
                          uint32_t seed, bool zero_group = false) {
  model::LinearLayer layer{"fc", in, out, RandomFloats(out * in, seed, 0.3f),
                           RandomFloats(out, seed + 1)};
  // Make every group skewed so asymmetric zero points are far from 8.
  for (float& w : layer.weight) w = std::fabs(w) * (seed % 2 == 0 ? 1.0f : -0.5f) + 0.01f;
  if (zero_group) std::fill(layer.weight.begin(), layer.weight.begin() + in, 0.0f);
  absl::StatusOr<QuantizedLinear> q = QuantizeRtnRef(layer, options);
  EXPECT_TRUE(q.ok()) << q.status();
  return *q;
}

// The reference is the plain product with DequantizeRtn's weights, bit for bit.
TEST(Int4GemmRefTest, EqualsProductOfDequantizedWeights) {
  const QuantizedLinear q = Quantized(7, 48, RtnOptions{4, 16, true}, 3);
  const int64_t m = 3;
  const std::vector<float> x = RandomFloats(m * q.in, 4);
  std::vector<float> w(q.out * q.in), ref(m * q.out);
  ASSERT_TRUE(DequantizeRtn(q, w.data()).ok());
  ASSERT_TRUE(Int4GemmRef(x.data(), m, q, ref.data()).ok());
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t n = 0; n < q.out; ++n) {
      float sum = 0.0f;
      for (int64_t k = 0; k < q.in; ++k) sum += x[r * q.in + k] * w[n * q.in + k];
      EXPECT_EQ(ref[r * q.out + n], sum + q.bias[n]);
    }
  }
}

TEST(Int4GemmTest, MatchesReferenceWithinReassociationBound) {
  for (auto [m, n, k, group] : {std::tuple<int64_t, int64_t, int64_t, int>{1, 1, 8, 8},
                                {1, 4096, 192, 64}, {2048 / 64, 65, 128, 0},
                                {7, 33, 37, 0}, {13, 17, 96, 32}, {300, 5, 64, 16},
                                // The GEMV (m <= 4): 16-byte tails, groups of 4 bytes,
                                // odd depth (not taken), 600 output rows over 2 threads.
                                {1, 19, 36, 0}, {3, 20, 40, 8}, {4, 600, 64, 8}, {2, 9, 37, 0},
                                {1, 8, 96, 32},
                                // Blocks of up to 8 activation rows over one decode (m <= 32).
                                {8, 40, 784, 0}, {6, 17, 64, 16}, {5, 300, 128, 8}, {32, 19, 64, 16}, {27, 8, 64, 0}}) {
    for (bool asymmetric : {false, true}) {
      for (bool zero_group : {false, true}) {
        const QuantizedLinear q = Quantized(n, k, RtnOptions{4, group, asymmetric},
                                            static_cast<uint32_t>(n + k + asymmetric),
                                            zero_group);
        const std::vector<float> x = RandomFloats(m * k, 5);
        std::vector<float> w(n * k), ref(m * n);
        ASSERT_TRUE(DequantizeRtn(q, w.data()).ok());
        ASSERT_TRUE(Int4GemmRef(x.data(), m, q, ref.data()).ok());
        for (GemmPath path : AvailablePaths()) {
          SCOPED_TRACE(testing::Message() << GemmPathName(path) << " " << m << "x" << n
                                          << "x" << k << " g" << group
                                          << (asymmetric ? " asym" : " sym"));
          std::vector<float> got(m * n, NAN);
          ASSERT_TRUE(Int4Gemm(x.data(), m, q, got.data(), GemmOptions{2, path}).ok());
          for (int64_t r = 0; r < m; ++r) {
            for (int64_t c = 0; c < n; ++c) {
              double sum_abs = 0.0;
              for (int64_t kk = 0; kk < k; ++kk) {
                sum_abs += std::fabs(double{x[r * k + kk]} * w[c * k + kk]);
              }
              const float want = ref[r * n + c];
              ASSERT_NEAR(got[r * n + c], want, ReassociationTolerance(k, sum_abs, want))
                  << "row " << r << " col " << c;
            }
          }
          if (zero_group) {  // row 0 of W is zero: output column 0 is the bias
            for (int64_t r = 0; r < m; ++r) EXPECT_EQ(got[r * n], q.bias[0]);
          }
        }
      }
    }
  }
}

// int3 and int2 weights share the nibble container: the same kernels, the
// GEMV (m <= 4) and the panel GEMM, against the dequantized product.
TEST(Int4GemmTest, RunsInt3AndInt2Weights) {
  for (int bits : {2, 3}) {
    for (auto [m, group, asymmetric] : {std::tuple<int64_t, int, bool>{1, 0, false}, {3, 16, true}, {9, 8, false},
                                        {20, 0, true}}) {
      const QuantizedLinear q = Quantized(21, 64, RtnOptions{bits, group, asymmetric}, 7 + bits);
      const std::vector<float> x = RandomFloats(m * q.in, 8);
      std::vector<float> w(q.out * q.in), ref(m * q.out);
      ASSERT_TRUE(DequantizeRtn(q, w.data()).ok());
      ASSERT_TRUE(Int4GemmRef(x.data(), m, q, ref.data()).ok());
      for (GemmPath path : AvailablePaths()) {
        SCOPED_TRACE(testing::Message() << GemmPathName(path) << " int" << bits << " m " << m << " g" << group);
        std::vector<float> got(m * q.out, NAN);
        ASSERT_TRUE(Int4Gemm(x.data(), m, q, got.data(), GemmOptions{1, path}).ok());
        for (int64_t r = 0; r < m; ++r) {
          for (int64_t c = 0; c < q.out; ++c) {
            double sum_abs = 0.0;
            for (int64_t kk = 0; kk < q.in; ++kk) sum_abs += std::fabs(double{x[r * q.in + kk]} * w[c * q.in + kk]);
            const float want = ref[r * q.out + c];
            ASSERT_NEAR(got[r * q.out + c], want, ReassociationTolerance(q.in, sum_abs, want)) << r << ", " << c;
          }
        }
      }
    }
  }
}

TEST(Int4GemmTest, RejectsBadInputNamingTheLayer) {
  QuantizedLinear q = Quantized(2, 16, RtnOptions{8, 0, false}, 1);
  q.name = "fc3";
  std::vector<float> x(16), y(2);
  EXPECT_THAT(Int4Gemm(x.data(), 1, q, y.data()).message(),
              HasSubstr("layer fc3 has 8-bit weights"));
  q = Quantized(2, 16, RtnOptions{4, 8, true}, 1);
  q.name = "fc3";
  q.zero_points.pop_back();
  EXPECT_THAT(Int4Gemm(x.data(), 1, q, y.data()).message(), HasSubstr("layer fc3"));
  EXPECT_FALSE(Int4Gemm(x.data(), 0, Quantized(2, 16, RtnOptions{4, 8, true}, 1),
                        y.data()).ok());
}

}  // namespace
}  // namespace squeeze::core::quant::gemm
