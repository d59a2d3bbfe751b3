#include "core/quant/ptq/gptq.h"

#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant::ptq {
namespace {

using ::testing::HasSubstr;

std::vector<float> RandomWeights(int64_t out, int64_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> w(out * in);
  for (float& v : w) v = normal(rng);
  return w;
}

// Rows with strongly correlated columns: x = z A with a random mixing A.
std::vector<float> CorrelatedInputs(int64_t rows, int64_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  const int64_t latent = in / 4;
  std::vector<float> a(latent * in), z(rows * latent), x(rows * in, 0.0f);
  for (float& v : a) v = normal(rng);
  for (float& v : z) v = normal(rng);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < latent; ++k) {
      for (int64_t c = 0; c < in; ++c) x[r * in + c] += z[r * latent + k] * a[k * in + c];
    }
    for (int64_t c = 0; c < in; ++c) x[r * in + c] += 0.05f * normal(rng);
  }
  return x;
}

std::vector<double> Hessian(const std::vector<float>& x, int64_t rows, int64_t in) {
  std::vector<double> h(in * in, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < in; ++i) {
      for (int64_t j = 0; j < in; ++j) h[i * in + j] += 2.0 * x[r * in + i] * x[r * in + j] / rows;
    }
  }
  return h;
}

double OutputError(const std::vector<float>& x, int64_t rows, int64_t in, int64_t out, const std::vector<float>& w,
                   const QuantizedLinear& q) {
  std::vector<float> wq(out * in);
  EXPECT_TRUE(DequantizeRtn(q, wq.data()).ok());
  double error = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double d = 0;
      for (int64_t c = 0; c < in; ++c) d += x[r * in + c] * (double{wq[o * in + c]} - w[o * in + c]);
      error += d * d;
    }
  }
  return error;
}

TEST(GptqTest, LowerOutputErrorThanRtnOnCorrelatedInputs) {
  const int64_t out = 32, in = 64, rows = 512;
  const std::vector<float> w = RandomWeights(out, in, 1);
  const std::vector<float> x = CorrelatedInputs(rows, in, 2);
  const std::vector<double> h = Hessian(x, rows, in);
  for (int group : {0, 16}) {
    for (bool act_order : {false, true}) {
      const RtnOptions format{4, group, false};
      auto gptq = QuantizeGptq("fc", w, out, in, h, format, {0.01, 16, act_order});
      ASSERT_TRUE(gptq.ok()) << gptq.status();
      auto rtn = QuantizeRtn({"fc", in, out, w, {}}, format);
      ASSERT_TRUE(rtn.ok());
      const double gptq_error = OutputError(x, rows, in, out, w, gptq->quantized);
      const double rtn_error = OutputError(x, rows, in, out, w, *rtn);
      EXPECT_LT(gptq_error, 0.7 * rtn_error) << "group " << group << " act_order " << act_order;
    }
  }
}

TEST(GptqTest, IdentityHessianEqualsRtnBitForBit) {
  const int64_t out = 8, in = 64;
  const std::vector<float> w = RandomWeights(out, in, 3);
  std::vector<double> identity(in * in, 0.0);
  for (int64_t i = 0; i < in; ++i) identity[i * in + i] = 2.0;
  for (const RtnOptions& format : {RtnOptions{4, 0, false}, RtnOptions{4, 16, false}, RtnOptions{8, 32, true},
                                   RtnOptions{4, 8, true}}) {
    auto gptq = QuantizeGptq("fc", w, out, in, identity, format, {0.01, 16, true});
    ASSERT_TRUE(gptq.ok()) << gptq.status();
    auto rtn = QuantizeRtnRef({"fc", in, out, w, {}}, format);
    ASSERT_TRUE(rtn.ok());
    EXPECT_EQ(gptq->quantized.packed, rtn->packed) << format.TechniqueName();
    EXPECT_EQ(gptq->quantized.scales, rtn->scales);
    EXPECT_EQ(gptq->quantized.zero_points, rtn->zero_points);
  }
}

TEST(GptqTest, DeadColumnsAndZeroRowsAreDeterministic) {
  const int64_t out = 4, in = 16;
  std::vector<float> w = RandomWeights(out, in, 4);
  for (int64_t c = 0; c < in; ++c) w[2 * in + c] = 0.0f;  // an all-zero output channel
  std::vector<double> h(in * in, 0.0);
  for (int64_t i = 1; i < in; ++i) h[i * in + i] = 1.0;  // column 0 never seen
  auto first = QuantizeGptq("fc", w, out, in, h, {4, 8, false}, {});
  auto second = QuantizeGptq("fc", w, out, in, h, {4, 8, false}, {});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->dead_columns, 1);
  EXPECT_EQ(first->quantized.packed, second->quantized.packed);
  std::vector<float> wq(out * in);
  ASSERT_TRUE(DequantizeRtn(first->quantized, wq.data()).ok());
  for (int64_t c = 0; c < in; ++c) EXPECT_EQ(wq[2 * in + c], 0.0f);
  for (int64_t r = 0; r < out; ++r) EXPECT_EQ(wq[r * in], 0.0f);
}

TEST(GptqTest, ErrorsNameTheLayer) {
  const std::vector<float> w(4 * 24, 1.0f);
  std::vector<double> h(24 * 24, 0.0);
  EXPECT_THAT(QuantizeGptq("blocks.0.fc", w, 4, 24, h, {4, 16, false}, {}).status().message(),
              HasSubstr("group_size 16 does not divide the input width 24 (layer blocks.0.fc)"));
  EXPECT_THAT(QuantizeGptq("fc", w, 4, 24, std::vector<double>(3), {4, 0, false}, {}).status().message(),
              HasSubstr("layer fc is [4, 24]"));
  std::vector<float> bad = w;
  bad[30] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT(QuantizeGptq("fc", bad, 4, 24, h, {4, 0, false}, {}).status().message(),
              HasSubstr("row 1, column 6 is nan (layer fc)"));
}

}  // namespace
}  // namespace squeeze::core::quant::ptq
