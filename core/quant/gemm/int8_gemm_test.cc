#include "core/quant/gemm/int8_gemm.h"

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

Int8Weights RandomWeights(int64_t out, int64_t in, uint32_t seed, bool bias = true) {
  model::LinearLayer layer{"fc", in, out, RandomFloats(out * in, seed, 0.2f), {}};
  if (bias) layer.bias = RandomFloats(out, seed + 1);
  absl::StatusOr<QuantizedLinear> q = QuantizeRtnRef(layer, RtnOptions{8, 0, false});
  EXPECT_TRUE(q.ok()) << q.status();
  absl::StatusOr<Int8Weights> w = Int8Weights::FromQuantized(*q);
  EXPECT_TRUE(w.ok()) << w.status();
  return *w;
}

// Extreme values: all-255 activations against all +-127 weights reach the
// largest sums (and would saturate vpmaddubsw's int16 pairs).
TEST(Int8MatMulInt32Test, EqualsReferenceExactlyIncludingExtremes) {
  for (GemmPath path : AvailablePaths()) {
    for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                           {1, 4096, 192}, {5, 3, 17}, {67, 129, 33},
                           {64, 64, 16}, {3, 70, 1000}, {130, 2, 31}}) {
      SCOPED_TRACE(testing::Message() << GemmPathName(path) << " " << m << "x" << n
                                      << "x" << k);
      std::mt19937 rng(m * 131 + n * 7 + k);
      std::uniform_int_distribution<int> u8(0, 255), s8(-127, 127);
      std::vector<uint8_t> x(m * k);
      std::vector<int8_t> w(n * k);
      for (auto& v : x) v = static_cast<uint8_t>(u8(rng));
      for (auto& v : w) v = static_cast<int8_t>(s8(rng));
      // Saturating corners in the first row / column.
      for (int64_t c = 0; c < k; ++c) {
        x[c] = 255;
        w[c] = static_cast<int8_t>(c % 3 == 0 ? -127 : 127);
      }
      std::vector<int32_t> ref(m * n), got(m * n, -1);
      ASSERT_TRUE(Int8MatMulInt32Ref(x.data(), w.data(), m, n, k, ref.data()).ok());
      ASSERT_TRUE(Int8MatMulInt32(x.data(), w.data(), m, n, k, got.data(),
                                  GemmOptions{2, path}).ok());
      EXPECT_EQ(got, ref);
    }
  }
}

TEST(Int8MatMulInt32Test, LargestDepthDoesNotOverflow) {
  const int64_t k = kMaxInt8GemmDepth;
  std::vector<uint8_t> x(k, 255);
  std::vector<int8_t> w(k, 127);
  for (GemmPath path : AvailablePaths()) {
    int32_t acc = 0;
    ASSERT_TRUE(Int8MatMulInt32(x.data(), w.data(), 1, 1, k, &acc, GemmOptions{1, path}).ok());
    EXPECT_EQ(acc, 255 * 127 * k);
  }
  int32_t acc = 0;
  EXPECT_THAT(Int8MatMulInt32(x.data(), w.data(), 1, 1, k + 1, &acc).message(),
              HasSubstr("depth <= 65536"));
}

TEST(Int8GemmTest, BitIdenticalToReferenceOnEveryPath) {
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                         {1, 300, 192}, {33, 65, 47}, {128, 17, 512}}) {
    const Int8Weights w = RandomWeights(n, k, 7);
    const std::vector<float> xf = RandomFloats(m * k, 11);
    absl::StatusOr<Int8Activations> x = QuantizeActivationsPerRow(xf.data(), m, k);
    ASSERT_TRUE(x.ok()) << x.status();
    std::vector<float> ref(m * n);
    ASSERT_TRUE(Int8GemmRef(*x, w, ref.data()).ok());
    for (GemmPath path : AvailablePaths()) {
      std::vector<float> got(m * n, NAN);
      ASSERT_TRUE(Int8Gemm(*x, w, got.data(), GemmOptions{2, path}).ok());
      EXPECT_EQ(0, std::memcmp(got.data(), ref.data(), ref.size() * sizeof(float)))
          << GemmPathName(path) << " " << m << "x" << n << "x" << k;
    }
  }
}

// The quantized product tracks the float product within the quantization
// error: per element, |x - x_hat| <= sx / 2 and |w - w_hat| <= sw / 2.
TEST(Int8GemmTest, ApproximatesTheFloatProduct) {
  const int64_t m = 9, n = 13, k = 64;
  model::LinearLayer layer{"fc", k, n, RandomFloats(n * k, 3, 0.2f), RandomFloats(n, 4)};
  absl::StatusOr<QuantizedLinear> q = QuantizeRtnRef(layer, RtnOptions{8, 0, false});
  ASSERT_TRUE(q.ok());
  absl::StatusOr<Int8Weights> w = Int8Weights::FromQuantized(*q);
  ASSERT_TRUE(w.ok());
  const std::vector<float> x = RandomFloats(m * k, 5);
  std::vector<float> y(m * n);
  ASSERT_TRUE(Int8GemmDynamic(x.data(), m, *w, y.data()).ok());
  absl::StatusOr<Int8Activations> xq = QuantizeActivationsPerRow(x.data(), m, k);
  ASSERT_TRUE(xq.ok());
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double exact = layer.bias[c], bound = 1e-4;
      for (int64_t kk = 0; kk < k; ++kk) {
        const double xv = x[r * k + kk], wv = layer.weight[c * k + kk];
        exact += xv * wv;
        bound += std::fabs(xv) * w->scales[c] / 2 + std::fabs(wv) * xq->scales[r] / 2 +
                 w->scales[c] * xq->scales[r] / 4;
      }
      EXPECT_NEAR(y[r * n + c], exact, bound);
    }
  }
}

TEST(Int8GemmTest, ZeroRowsAndStaticZeroPoints) {
  const int64_t m = 3, n = 5, k = 21;
  const Int8Weights w = RandomWeights(n, k, 9);
  std::vector<float> x = RandomFloats(m * k, 10);
  std::fill(x.begin() + k, x.begin() + 2 * k, 0.0f);  // row 1 all zero
  absl::StatusOr<Int8Activations> per_row = QuantizeActivationsPerRow(x.data(), m, k);
  ASSERT_TRUE(per_row.ok());
  EXPECT_EQ(per_row->scales[1], 0.0f);
  EXPECT_EQ(per_row->zero_points[1], 0);
  absl::StatusOr<Int8Activations> per_tensor =
      QuantizeActivationsPerTensor(x.data(), m, k, 0.05f, 131);
  ASSERT_TRUE(per_tensor.ok());
  for (const Int8Activations* a : {&*per_row, &*per_tensor}) {
    std::vector<float> ref(m * n), got(m * n);
    ASSERT_TRUE(Int8GemmRef(*a, w, ref.data()).ok());
    for (GemmPath path : AvailablePaths()) {
      ASSERT_TRUE(Int8Gemm(*a, w, got.data(), GemmOptions{1, path}).ok());
      EXPECT_EQ(got, ref);
    }
  }
  std::vector<float> y(m * n);
  ASSERT_TRUE(Int8GemmRef(*per_row, w, y.data()).ok());
  for (int64_t c = 0; c < n; ++c) EXPECT_EQ(y[n + c], w.bias[c]);  // zero row: bias only
}

TEST(Int8GemmTest, RejectsBadInputNamingIt) {
  model::LinearLayer layer{"fc7", 16, 2, RandomFloats(32, 1), {}};
  absl::StatusOr<QuantizedLinear> int4 = QuantizeRtnRef(layer, RtnOptions{4, 8, false});
  ASSERT_TRUE(int4.ok());
  EXPECT_THAT(Int8Weights::FromQuantized(*int4).status().message(),
              HasSubstr("layer fc7 is int4-g8-sym"));
  absl::StatusOr<QuantizedLinear> int8 = QuantizeRtnRef(layer, RtnOptions{8, 0, false});
  ASSERT_TRUE(int8.ok());
  int8->packed[3] = static_cast<char>(-128);
  EXPECT_THAT(Int8Weights::FromQuantized(*int8).status().message(),
              HasSubstr("stores -128 at row 0, column 3"));
  std::vector<float> x = {1.0f, NAN};
  EXPECT_THAT(QuantizeActivationsPerRow(x.data(), 1, 2).status().message(),
              HasSubstr("row 0, column 1"));
  EXPECT_FALSE(QuantizeActivationsPerTensor(x.data(), 1, 1, 0.0f, 0).ok());
  const Int8Weights w = RandomWeights(4, 8, 2);
  absl::StatusOr<Int8Activations> a = QuantizeActivationsPerRow(x.data(), 1, 1);
  ASSERT_TRUE(a.ok());
  std::vector<float> y(4);
  EXPECT_THAT(Int8Gemm(*a, w, y.data()).message(), HasSubstr("do not fit layer fc"));
}

}  // namespace
}  // namespace squeeze::core::quant::gemm
