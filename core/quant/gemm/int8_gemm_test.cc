#include "core/quant/gemm/int8_gemm.h"

#include <algorithm>
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

// Random uint8 activations [m, k] and int8 weights [n, k] in [-127, 127],
// with extreme values: an all-255 first row against a first weight row of
// +-127 reaches the largest sums (and would saturate vpmaddubsw's int16
// pairs).
void RandomOperands(int64_t m, int64_t n, int64_t k, uint32_t seed, std::vector<uint8_t>* x,
                    std::vector<int8_t>* w) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u8(0, 255), s8(-127, 127);
  x->resize(m * k);
  w->resize(n * k);
  for (auto& v : *x) v = static_cast<uint8_t>(u8(rng));
  for (auto& v : *w) v = static_cast<int8_t>(s8(rng));
  for (int64_t c = 0; c < k; ++c) {
    (*x)[c] = 255;
    (*w)[c] = static_cast<int8_t>(c % 3 == 0 ? -127 : 127);
  }
}

TEST(Int8MatMulInt32Test, EqualsReferenceExactlyIncludingExtremes) {
  for (GemmPath path : AvailablePaths()) {
    for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                           {1, 4096, 192}, {5, 3, 17}, {67, 129, 33},
                           {64, 64, 16}, {3, 70, 1000}, {130, 2, 31}}) {
      SCOPED_TRACE(testing::Message() << GemmPathName(path) << " " << m << "x" << n
                                      << "x" << k);
      std::vector<uint8_t> x;
      std::vector<int8_t> w;
      RandomOperands(m, n, k, m * 131 + n * 7 + k, &x, &w);
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

// The packed VNNI kernels against the reference at shapes that are not
// multiples of their tiles (8 or 6 rows, 16 / 32 columns, 4 depths): depth
// below 4, the CNN's 9, odd and large depths, one column, one row, with the
// extreme values in the first row and column; both with panels packed once
// (Int8MatMulInt32Prepacked) and per call (Int8MatMulInt32), every path.
TEST(Int8MatMulInt32Test, PackedKernelsEqualReferenceAtOddShapes) {
  const std::tuple<int64_t, int64_t, int64_t> shapes[] = {
      {1, 1, 1},   {1, 1, 2},    {3, 5, 3},    {9, 17, 4},  {7, 16, 5},   {8, 32, 9},
      {17, 33, 9}, {13, 47, 13}, {1, 250, 63}, {25, 3, 64}, {6, 49, 255}, {16, 64, 785},
      {70, 130, 96}, {2, 18, 3001}};
  for (auto [m, n, k] : shapes) {
    std::vector<uint8_t> x;
    std::vector<int8_t> w;
    RandomOperands(m, n, k, m * 1009 + n * 31 + k, &x, &w);
    for (int64_t r = 0; r < m; ++r) x[r * k + k - 1] = 255;  // the last depth of every row
    std::vector<int32_t> ref(m * n);
    ASSERT_TRUE(Int8MatMulInt32Ref(x.data(), w.data(), m, n, k, ref.data()).ok());
    const std::vector<int8_t> panels = PackInt8Panels(w.data(), n, k);
    for (GemmPath path : AvailablePaths()) {
      SCOPED_TRACE(testing::Message() << GemmPathName(path) << " " << m << "x" << n << "x" << k);
      for (int threads : {1, 2}) {
        std::vector<int32_t> packed(m * n, -1), per_call(m * n, -1);
        ASSERT_TRUE(Int8MatMulInt32Prepacked(x.data(), w.data(), panels.data(), m, n, k,
                                             packed.data(), GemmOptions{threads, path})
                        .ok());
        ASSERT_TRUE(Int8MatMulInt32(x.data(), w.data(), m, n, k, per_call.data(),
                                    GemmOptions{threads, path})
                        .ok());
        EXPECT_EQ(packed, ref);
        EXPECT_EQ(per_call, ref);
      }
    }
  }
}

// Int8GemmTransposedPanels (the int8 Conv's kernel: rows in the vector
// lanes, epilogue and Relu fused) against Int8MatMulInt32Ref's sums put
// through the same float expressions, bit for bit, at odd shapes.
TEST(Int8GemmTransposedPanelsTest, EqualsReferenceBitForBit) {
  const std::tuple<int64_t, int64_t, int64_t> shapes[] = {
      {1, 1, 1}, {16, 8, 9}, {17, 9, 3}, {33, 7, 13}, {196, 64, 288}, {784, 32, 9}, {5, 17, 1001}};
  for (auto [rows, out, depth] : shapes) {
    std::vector<uint8_t> x;
    std::vector<int8_t> w;
    RandomOperands(rows, out, depth, rows + out + depth, &x, &w);
    std::vector<int32_t> sums(rows * out);
    ASSERT_TRUE(Int8MatMulInt32Ref(x.data(), w.data(), rows, out, depth, sums.data()).ok());
    const std::vector<int8_t> x_panels =
        PackInt8Panels(reinterpret_cast<const int8_t*>(x.data()), rows, depth);
    const std::vector<float> scales = RandomFloats(out, 3, 0.01f), bias = RandomFloats(out, 4);
    std::vector<int32_t> row_sums(out, 0);
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t kk = 0; kk < depth; ++kk) row_sums[o] += w[o * depth + kk];
    }
    for (const bool relu : {false, true}) {
      for (const bool with_bias : {false, true}) {
        Int8OutputRescale rescale;
        rescale.x_scale = 0.037f;
        rescale.x_zero_point = 119;
        rescale.w_scales = scales.data();
        rescale.w_row_sums = row_sums.data();
        rescale.bias = with_bias ? bias.data() : nullptr;
        rescale.relu = relu;
        const int64_t ldy = rows + 3;
        std::vector<float> expected(out * ldy, -7.0f);
        for (int64_t o = 0; o < out; ++o) {
          for (int64_t r = 0; r < rows; ++r) {
            const int32_t centred = static_cast<int32_t>(
                static_cast<uint32_t>(sums[r * out + o]) -
                static_cast<uint32_t>(rescale.x_zero_point * row_sums[o]));
            float v = (rescale.x_scale * scales[o]) * static_cast<float>(centred);
            if (with_bias) v += bias[o];
            if (relu) v = std::max(0.0f, v);
            expected[o * ldy + r] = v;
          }
        }
        for (GemmPath path : AvailablePaths()) {
          std::vector<float> y(out * ldy, -7.0f);  // the gaps past `rows` stay untouched
          ASSERT_TRUE(Int8GemmTransposedPanels(reinterpret_cast<const uint8_t*>(x_panels.data()),
                                               rows, depth, w.data(), out, rescale, y.data(), ldy,
                                               GemmOptions{1, path})
                          .ok());
          EXPECT_EQ(0, std::memcmp(y.data(), expected.data(), y.size() * sizeof(float)))
              << GemmPathName(path) << " " << rows << "x" << out << "x" << depth << " relu "
              << relu << " bias " << with_bias;
        }
      }
    }
  }
}

TEST(Int8MatMulInt32Test, PanelLayoutIsSixteenColumnsByFourDepthsZeroPadded) {
  const int64_t out = 17, in = 6;  // 2 panels of 2 groups
  std::vector<int8_t> q(out * in);
  for (int64_t i = 0; i < out * in; ++i) q[i] = static_cast<int8_t>(i % 100 + 1);
  const std::vector<int8_t> panels = PackInt8Panels(q.data(), out, in);
  ASSERT_EQ(static_cast<int64_t>(panels.size()), Int8PanelsSize(out, in));
  ASSERT_EQ(panels.size(), 2u * 2u * 16u * 4u);
  auto at = [&](int64_t p, int64_t g, int64_t c, int64_t d) {
    return panels[((p * 2 + g) * 16 + c) * 4 + d];
  };
  EXPECT_EQ(at(0, 0, 0, 0), q[0]);
  EXPECT_EQ(at(0, 0, 3, 2), q[3 * in + 2]);
  EXPECT_EQ(at(0, 1, 15, 1), q[15 * in + 5]);
  EXPECT_EQ(at(0, 1, 15, 2), 0);  // depth 6, 7: padding
  EXPECT_EQ(at(1, 0, 0, 3), q[16 * in + 3]);
  EXPECT_EQ(at(1, 0, 1, 0), 0);  // column 17: padding
  int64_t nonzero = 0;
  for (int8_t v : panels) nonzero += v != 0;
  EXPECT_EQ(nonzero, out * in);
}

// The original per-row quantizer, written out with libm's rounding (half to
// even in the default mode): every path's vector loops must give its bytes.
uint8_t QuantizeOne(float x, float inverse, int32_t zero) {
  const float v = std::clamp(x * inverse, -512.0f, 512.0f);
  return static_cast<uint8_t>(
      std::clamp(std::nearbyint(v) + static_cast<float>(zero), 0.0f, 255.0f));
}

TEST(QuantizeActivationsTest, EveryPathGivesTheScalarBytes) {
  for (int64_t depth : {1, 3, 15, 16, 17, 100, 785}) {
    const int64_t rows = 5;
    std::vector<float> x = RandomFloats(rows * depth, depth, 2.0f);
    // Exact ties (k + 0.5 after scaling by 1 / 0.5 = 2 are integers; use the
    // per-tensor scale 2 so x * 0.5 lands on .5), negatives only, zeros.
    for (int64_t c = 0; c < depth; ++c) {
      x[c] = static_cast<float>(c % 9) - 3.0f;          // row 0: x * 0.5 has .5 ties
      x[depth + c] = -std::fabs(x[depth + c]) - 0.1f;   // row 1: all negative
      x[2 * depth + c] = 0.0f;                          // row 2: zero row
    }
    for (const bool per_row : {true, false}) {
      std::vector<Int8Activations> results;
      for (GemmPath path : AvailablePaths()) {
        absl::StatusOr<Int8Activations> a =
            per_row ? QuantizeActivationsPerRow(x.data(), rows, depth, GemmOptions{1, path})
                    : QuantizeActivationsPerTensor(x.data(), rows, depth, 2.0f, 128,
                                                   GemmOptions{1, path});
        ASSERT_TRUE(a.ok()) << a.status();
        results.push_back(*std::move(a));
      }
      const Int8Activations& a = results[0];
      for (int64_t r = 0; r < rows; ++r) {
        const float inverse = a.scales[r] == 0.0f ? 0.0f : 1.0f / a.scales[r];
        for (int64_t c = 0; c < depth; ++c) {
          ASSERT_EQ(a.q[r * depth + c], QuantizeOne(x[r * depth + c], inverse, a.zero_points[r]))
              << "row " << r << " column " << c << " depth " << depth << " per_row " << per_row;
        }
      }
      for (size_t p = 1; p < results.size(); ++p) {
        EXPECT_EQ(results[p].q, a.q) << GemmPathName(AvailablePaths()[p]) << " depth " << depth;
        EXPECT_EQ(results[p].scales, a.scales);
        EXPECT_EQ(results[p].zero_points, a.zero_points);
      }
    }
  }
}

TEST(QuantizeActivationsTest, NonFiniteIsReportedOnEveryPath) {
  std::vector<float> x(40, 1.0f);
  x[37] = INFINITY;
  for (GemmPath path : AvailablePaths()) {
    EXPECT_THAT(QuantizeActivationsPerRow(x.data(), 2, 20, GemmOptions{1, path}).status().message(),
                HasSubstr("row 1, column 17"))
        << GemmPathName(path);
  }
}

TEST(QuantizeLinearToUint8Test, EveryPathMatchesTheQuantizeLinearFormula) {
  std::vector<float> x = RandomFloats(203, 4, 30.0f);
  const float specials[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 0.0f, -0.0f,
                            0.125f, 0.375f, -0.125f, -0.375f, 63.875f, 1e-30f};
  std::copy(std::begin(specials), std::end(specials), x.begin());
  const float scale = 0.25f;  // x / 0.25 = 0.5, 1.5, ...: ties
  for (int32_t zero : {0, 7, 128, 255}) {
    std::vector<uint8_t> expected(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      float v = x[i] / scale;
      v = std::isnan(v) ? -512.0f : std::clamp(v, -512.0f, 512.0f);
      expected[i] = static_cast<uint8_t>(
          std::clamp(std::nearbyint(v) + static_cast<float>(zero), 0.0f, 255.0f));
    }
    for (GemmPath path : AvailablePaths()) {
      for (size_t n : {size_t{1}, size_t{13}, size_t{16}, x.size()}) {
        std::vector<uint8_t> q(n, 0xAA);
        ASSERT_TRUE(QuantizeLinearToUint8(x.data(), n, scale, zero, q.data(),
                                          GemmOptions{1, path})
                        .ok());
        EXPECT_TRUE(std::equal(q.begin(), q.end(), expected.begin()))
            << GemmPathName(path) << " zero " << zero << " n " << n;
      }
    }
  }
}

TEST(Int8GemmTest, BitIdenticalToReferenceOnEveryPath) {
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                         {1, 300, 192}, {33, 65, 47}, {128, 17, 512}, {9, 20, 9},
                         {70, 100, 3}}) {
    for (const bool bias : {true, false}) {
      const Int8Weights w = RandomWeights(n, k, 7, bias);
      const std::vector<float> xf = RandomFloats(m * k, 11);
      absl::StatusOr<Int8Activations> x = QuantizeActivationsPerRow(xf.data(), m, k);
      ASSERT_TRUE(x.ok()) << x.status();
      std::vector<float> ref(m * n);
      ASSERT_TRUE(Int8GemmRef(*x, w, ref.data()).ok());
      for (GemmPath path : AvailablePaths()) {
        std::vector<float> got(m * n, NAN);
        ASSERT_TRUE(Int8Gemm(*x, w, got.data(), GemmOptions{2, path}).ok());
        EXPECT_EQ(0, std::memcmp(got.data(), ref.data(), ref.size() * sizeof(float)))
            << GemmPathName(path) << " " << m << "x" << n << "x" << k << " bias " << bias;
      }
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
