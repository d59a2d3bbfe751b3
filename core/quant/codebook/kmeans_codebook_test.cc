#include "core/quant/codebook/kmeans_codebook.h"

#include <cmath>

#include "core/quant/gemm/lut_gemm.h"
#include "core/quant/gemm/test_util.h"
#include "core/quant/rtn.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant::codebook {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(KmeansCodebookTest, FindsSeparatedClustersExactly) {
  // Four well-separated values, each repeated: 2-bit k-means must recover them.
  std::vector<float> w;
  for (float v : {-1.0f, 0.0f, 5.0f, 9.0f}) w.insert(w.end(), 6, v);
  KmeansOptions options;
  options.bits = 2;
  auto q = QuantizeKmeans("fc", w, 4, 6, {}, {}, options);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_THAT(q->linear.codebook, ElementsAre(-1.0f, 0.0f, 5.0f, 9.0f));
  EXPECT_EQ(q->dequantized, w);
  EXPECT_EQ(q->weighted_error, 0.0);
}

TEST(KmeansCodebookTest, DeterministicForASeedAndExecutedByLutGemm) {
  const int64_t out = 12, in = 40;
  const std::vector<float> w = gemm::RandomFloats(out * in, 3);
  for (bool per_row : {false, true}) {
    for (int bits : {2, 3, 4}) {
      KmeansOptions options;
      options.bits = bits;
      options.per_row_codebook = per_row;
      options.seed = 7;
      auto a = QuantizeKmeans("fc", w, out, in, {}, {}, options);
      auto b = QuantizeKmeans("fc", w, out, in, {}, {}, options);
      ASSERT_TRUE(a.ok() && b.ok());
      EXPECT_EQ(a->linear.packed, b->linear.packed);
      EXPECT_EQ(a->linear.codebook, b->linear.codebook);
      EXPECT_EQ(a->linear.codebook.size(), static_cast<size_t>((per_row ? out : 1) << bits));
      // LutGemm on the identity recovers the dequantized weights exactly.
      std::vector<float> identity(in * in, 0.0f), y(in * out);
      for (int64_t i = 0; i < in; ++i) identity[i * in + i] = 1.0f;
      ASSERT_TRUE(gemm::LutGemmRef(identity.data(), in, a->linear, y.data()).ok());
      for (int64_t r = 0; r < out; ++r) {
        for (int64_t c = 0; c < in; ++c) ASSERT_EQ(y[c * out + r], a->dequantized[r * in + c]);
      }
      EXPECT_EQ(CodebookStorageBytes(a->linear),
                out * ((in * bits + 7) / 8) + 4 * static_cast<int64_t>(a->linear.codebook.size()));
    }
  }
}

TEST(KmeansCodebookTest, PerRowFourBitBeatsUniformPerChannelFourBit) {
  const int64_t out = 16, in = 64;
  const std::vector<float> w = gemm::RandomFloats(out * in, 5);
  KmeansOptions options;
  options.per_row_codebook = true;
  auto q = QuantizeKmeans("fc", w, out, in, {}, {}, options);
  ASSERT_TRUE(q.ok());
  model::LinearLayer layer;
  layer.name = "fc";
  layer.in = in;
  layer.out = out;
  layer.weight = w;
  auto rtn = QuantizeRtnRef(layer, RtnOptions{4, 0, false});
  ASSERT_TRUE(rtn.ok()) << rtn.status();
  std::vector<float> uniform(out * in);
  ASSERT_TRUE(DequantizeRtn(*rtn, uniform.data()).ok());
  double rtn_error = 0;
  for (int64_t i = 0; i < out * in; ++i) rtn_error += (w[i] - uniform[i]) * (w[i] - uniform[i]);
  EXPECT_LT(q->weighted_error, 0.8 * rtn_error);
}

TEST(KmeansCodebookTest, ImportanceWeightingLowersTheWeightedError) {
  const int64_t out = 8, in = 32;
  const std::vector<float> w = gemm::RandomFloats(out * in, 9);
  std::vector<double> importance(in, 0.01);
  for (int64_t c = 0; c < 4; ++c) importance[c] = 100.0;
  KmeansOptions options;
  options.bits = 2;
  auto weighted = QuantizeKmeans("fc", w, out, in, importance, {}, options);
  auto plain = QuantizeKmeans("fc", w, out, in, {}, {}, options);
  ASSERT_TRUE(weighted.ok() && plain.ok());
  double plain_weighted_error = 0;
  for (int64_t i = 0; i < out * in; ++i) {
    const double d = w[i] - plain->dequantized[i];
    plain_weighted_error += (importance[i % in] + 1e-6 * (100.0 * 4 + 0.01 * 28) / in) * d * d;
  }
  EXPECT_LT(weighted->weighted_error, plain_weighted_error);
}

TEST(KmeansCodebookTest, ErrorsNameTheLayerAndNonFiniteWeightsAreZeroed) {
  KmeansOptions options;
  options.bits = 5;
  auto bad_bits = QuantizeKmeans("fc1", std::vector<float>(4, 1.0f), 2, 2, {}, {}, options);
  EXPECT_THAT(bad_bits.status().message(), HasSubstr("bits must be 2, 3 or 4, got 5 (layer fc1)"));
  options.bits = 2;
  auto bad_size = QuantizeKmeans("fc2", std::vector<float>(3, 1.0f), 2, 2, {}, {}, options);
  EXPECT_THAT(bad_size.status().message(), HasSubstr("(layer fc2)"));
  auto bad_importance = QuantizeKmeans("fc3", std::vector<float>(4, 1.0f), 2, 2, {1.0, -1.0}, {}, options);
  EXPECT_THAT(bad_importance.status().message(), HasSubstr("importance of column 1 is -1 (layer fc3)"));
  auto nan = QuantizeKmeans("fc4", {1.0f, NAN, INFINITY, -1.0f}, 2, 2, {}, {}, options);
  ASSERT_TRUE(nan.ok()) << nan.status();
  EXPECT_EQ(nan->nonfinite_weights, 2);
  EXPECT_EQ(nan->dequantized[1], 0.0f);
}

}  // namespace
}  // namespace squeeze::core::quant::codebook
