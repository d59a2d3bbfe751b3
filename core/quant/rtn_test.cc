#include "core/quant/rtn.h"

#include <bit>
#include <cmath>
#include <limits>
#include <random>

#include "core/model/tensor.h"
#include "core/quant/packed_formats.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant {
namespace {

using ::testing::HasSubstr;

// Slack on the scale / 2 bound: the scale is rounded to float32 and the
// dequantized product is a float32 multiply.
constexpr double kBoundRelativeSlack = 1e-5;

model::LinearLayer RandomLayer(int64_t in, int64_t out, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  model::LinearLayer layer{"fc", in, out, {}, {}};
  for (int64_t i = 0; i < in * out; ++i) layer.weight.push_back(normal(rng));
  for (int64_t i = 0; i < out; ++i) layer.bias.push_back(normal(rng));
  return layer;
}

std::vector<RtnOptions> AllFormats(int group_size) {
  std::vector<RtnOptions> formats;
  for (int bits : {2, 3, 4, 8}) {
    for (bool asymmetric : {false, true}) {
      formats.push_back(RtnOptions{bits, group_size, asymmetric});
    }
  }
  return formats;
}

std::vector<float> Dequantized(const QuantizedLinear& q) {
  std::vector<float> out(q.in * q.out);
  EXPECT_TRUE(DequantizeRtn(q, out.data()).ok());
  return out;
}

TEST(RtnOptionsTest, ValidateNamesValueAndLayer) {
  EXPECT_TRUE((RtnOptions{8, 0, false}).Validate(784, "fc1").ok());
  EXPECT_TRUE((RtnOptions{4, 16, true}).Validate(784, "fc1").ok());
  EXPECT_EQ((RtnOptions{12, 0, false}).Validate(784, "fc1").message(),
            "quantize: bits must be one of 2, 3, 4, 8, got 12 (layer fc1)");
  EXPECT_THAT((RtnOptions{4, 100, false}).Validate(800, "fc2").message(),
              HasSubstr("power of two in [8, 4096], got 100 (layer fc2)"));
  EXPECT_THAT((RtnOptions{4, 4, false}).Validate(800, "fc2").message(),
              HasSubstr("got 4"));
  EXPECT_THAT((RtnOptions{4, 8192, false}).Validate(8192, "fc2").message(),
              HasSubstr("got 8192"));
  EXPECT_EQ((RtnOptions{4, 128, false}).Validate(784, "fc1").message(),
            "quantize: group_size 128 does not divide the input width 784 "
            "(layer fc1)");
}

TEST(RtnOptionsTest, TechniqueNames) {
  EXPECT_EQ((RtnOptions{4, 128, false}).TechniqueName(), "int4-g128-sym");
  EXPECT_EQ((RtnOptions{8, 0, false}).TechniqueName(), "int8-pc-sym");
  EXPECT_EQ((RtnOptions{8, 0, true}).TechniqueName(), "int8-pc-asym");
}

TEST(RtnTest, ErrorWithinHalfAScaleForEveryFormat) {
  const model::LinearLayer layer = RandomLayer(64, 9, 11);
  for (int group_size : {0, 8, 32}) {
    for (const RtnOptions& options : AllFormats(group_size)) {
      absl::StatusOr<QuantizedLinear> q = QuantizeRtnRef(layer, options);
      ASSERT_TRUE(q.ok()) << q.status();
      const std::vector<float> dq = Dequantized(*q);
      const int64_t groups = q->Groups();
      for (int64_t r = 0; r < layer.out; ++r) {
        for (int64_t c = 0; c < layer.in; ++c) {
          const double scale = q->scales[r * groups + c / (layer.in / groups)];
          EXPECT_LE(std::fabs(double{layer.weight[r * layer.in + c]} -
                              dq[r * layer.in + c]),
                    scale / 2 * (1 + kBoundRelativeSlack))
              << options.TechniqueName() << " row " << r << " col " << c;
        }
      }
      EXPECT_EQ(q->bias, layer.bias);
    }
  }
}

TEST(RtnTest, SymmetricExtremesAreExact) {
  model::LinearLayer layer{"fc", 4, 1, {-2.0f, 0.5f, 2.0f, 0.0f}, {}};
  for (int bits : {2, 3, 4, 8}) {
    absl::StatusOr<QuantizedLinear> q = QuantizeRtnRef(layer, {bits, 0, false});
    ASSERT_TRUE(q.ok());
    const std::vector<float> dq = Dequantized(*q);
    EXPECT_EQ(dq[0], -2.0f);
    EXPECT_EQ(dq[2], 2.0f);
    EXPECT_EQ(dq[3], 0.0f);
  }
}

TEST(RtnTest, AsymmetricKeepsZeroExact) {
  model::LinearLayer layer{"fc", 4, 1, {0.3f, 0.0f, 1.7f, 0.9f}, {}};
  for (int bits : {2, 3, 4, 8}) {
    absl::StatusOr<QuantizedLinear> q = QuantizeRtnRef(layer, {bits, 0, true});
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(Dequantized(*q)[1], 0.0f);
    EXPECT_EQ(q->zero_points[0], 0);  // all weights >= 0
  }
}

TEST(RtnTest, Int4PackingOfOddRows) {
  // in = 3: each row takes 2 bytes, the last high nibble is padding.
  model::LinearLayer layer{"fc", 3, 2, {7, -7, 1, 0, 0, 0}, {}};
  absl::StatusOr<QuantizedLinear> q = QuantizeRtnRef(layer, {4, 0, false});
  ASSERT_TRUE(q.ok());
  ASSERT_EQ(q->packed.size(), 4u);
  EXPECT_FLOAT_EQ(q->scales[0], 1.0f);
  // Row 0: q = 7, -7, 1 stored as 15, 1, 9; byte 0 = 15 | 1 << 4.
  EXPECT_EQ(static_cast<uint8_t>(q->packed[0]), 0x1f);
  EXPECT_EQ(static_cast<uint8_t>(q->packed[1]), 0x09);
  // Row 1 is all zero: scale 0, q = 0 stored as 8.
  EXPECT_EQ(q->scales[1], 0.0f);
  EXPECT_EQ(static_cast<uint8_t>(q->packed[2]), 0x88);
  EXPECT_EQ(static_cast<uint8_t>(q->packed[3]), 0x08);
  EXPECT_EQ(Dequantized(*q), layer.weight);
}

// int3 and int2 live in int4 nibbles (packed_formats.h): symmetric q + 8.
TEST(RtnTest, Int3AndInt2UseTheNibbleContainer) {
  model::LinearLayer layer{"fc", 3, 1, {-3.0f, 1.0f, 3.0f}, {}};
  absl::StatusOr<QuantizedLinear> q3 = QuantizeRtnRef(layer, {3, 0, false});
  ASSERT_TRUE(q3.ok());
  EXPECT_EQ(q3->scales[0], 1.0f);
  // q = -3, 1, 3 -> nibbles 5, 9, 11; the odd row's last high nibble is 0.
  EXPECT_EQ(q3->packed, std::string({static_cast<char>(0x95), static_cast<char>(0x0b)}));
  absl::StatusOr<QuantizedLinear> q2 = QuantizeRtnRef(layer, {2, 0, false});
  ASSERT_TRUE(q2.ok());
  EXPECT_EQ(q2->scales[0], 3.0f);
  EXPECT_EQ(Dequantized(*q2), (std::vector<float>{-3.0f, 0.0f, 3.0f}));
  EXPECT_EQ(q2->StorageBytes(), 2 + 4);
}

TEST(RtnTest, Int8SymmetricStoresTwosComplement) {
  model::LinearLayer layer{"fc", 2, 1, {-1.0f, 1.0f}, {}};
  absl::StatusOr<QuantizedLinear> q = QuantizeRtnRef(layer, {8, 0, false});
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(static_cast<int8_t>(q->packed[0]), -127);
  EXPECT_EQ(static_cast<int8_t>(q->packed[1]), 127);
}

TEST(RtnTest, AllZeroGroupsDequantizeToExactZero) {
  model::LinearLayer layer = RandomLayer(16, 2, 5);
  for (int c = 0; c < 8; ++c) layer.weight[c] = 0.0f;  // row 0, group 0
  for (const RtnOptions& options : AllFormats(8)) {
    absl::StatusOr<QuantizedLinear> q = QuantizeRtnRef(layer, options);
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(q->scales[0], 0.0f) << options.TechniqueName();
    const std::vector<float> dq = Dequantized(*q);
    for (int c = 0; c < 8; ++c) {
      EXPECT_EQ(dq[c], 0.0f) << options.TechniqueName();
      EXPECT_FALSE(std::signbit(dq[c]));
    }
  }
}

TEST(RtnTest, TinyWeightsKeepANonzeroScale) {
  const float tiny = std::numeric_limits<float>::denorm_min();
  model::LinearLayer layer{"fc", 2, 1, {tiny, -tiny}, {}};
  absl::StatusOr<QuantizedLinear> q = QuantizeRtnRef(layer, {8, 0, false});
  ASSERT_TRUE(q.ok());
  EXPECT_GT(q->scales[0], 0.0f);
  const std::vector<float> dq = Dequantized(*q);
  EXPECT_LE(std::fabs(dq[0] - tiny), q->scales[0] / 2);
}

TEST(RtnTest, NonFiniteWeightsNameLayerAndRow) {
  model::LinearLayer layer = RandomLayer(8, 3, 1);
  layer.name = "fc2";
  layer.weight[2 * 8 + 5] = std::numeric_limits<float>::quiet_NaN();
  absl::StatusOr<QuantizedLinear> q = QuantizeRtnRef(layer, {});
  EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(q.status().message(),
              HasSubstr("weight at row 2, column 5 is nan (layer fc2)"));
  layer.weight[2 * 8 + 5] = 0.0f;
  layer.bias[1] = std::numeric_limits<float>::infinity();
  EXPECT_THAT(QuantizeRtnRef(layer, {}).status().message(),
              HasSubstr("bias at row 1 is inf (layer fc2)"));
}

TEST(RtnTest, MismatchedLayerSizesAreRejected) {
  model::LinearLayer layer = RandomLayer(8, 3, 1);
  layer.weight.pop_back();
  EXPECT_THAT(QuantizeRtnRef(layer, {}).status().message(),
              HasSubstr("is [3, 8] but has 23 weights"));
}

TEST(RtnTest, ProductionQuantizerEqualsReferenceBitForBit) {
  const model::LinearLayer layer = RandomLayer(128, 17, 23);
  for (int group_size : {0, 16, 128}) {
    for (const RtnOptions& options : AllFormats(group_size)) {
      absl::StatusOr<QuantizedLinear> ref = QuantizeRtnRef(layer, options);
      absl::StatusOr<QuantizedLinear> fast = QuantizeRtn(layer, options);
      ASSERT_TRUE(ref.ok() && fast.ok());
      EXPECT_EQ(fast->packed, ref->packed) << options.TechniqueName();
      EXPECT_EQ(fast->zero_points, ref->zero_points);
      ASSERT_EQ(fast->scales.size(), ref->scales.size());
      for (size_t i = 0; i < ref->scales.size(); ++i) {
        EXPECT_EQ(std::bit_cast<uint32_t>(fast->scales[i]),
                  std::bit_cast<uint32_t>(ref->scales[i]));
      }
    }
  }
}

// The fast path against the oracle where rounding is delicate: exact ties
// (w / scale = k + 1/2), odd widths, all-zero groups, subnormal ranges, a
// layer large enough to be split over threads, and identical errors.
TEST(RtnTest, ProductionQuantizerEqualsReferenceOnEdgeCases) {
  std::vector<model::LinearLayer> layers;
  model::LinearLayer ties{"ties", 64, 3, {}, {}};
  for (int i = 0; i < 64 * 3; ++i) ties.weight.push_back(0.5f * static_cast<float>(i % 29 - 14));
  layers.push_back(ties);
  model::LinearLayer zeros = RandomLayer(48, 5, 7);
  std::fill(zeros.weight.begin(), zeros.weight.begin() + 16, 0.0f);
  std::fill(zeros.weight.begin() + 48, zeros.weight.begin() + 96, 0.0f);
  layers.push_back(zeros);
  model::LinearLayer tiny = RandomLayer(16, 2, 8);
  for (float& w : tiny.weight) w *= 1e-42f;
  layers.push_back(tiny);
  layers.push_back(RandomLayer(13, 3, 9));           // odd width: per channel only
  layers.push_back(RandomLayer(1024, 2100, 10));     // >= 2M weights: threads
  for (const model::LinearLayer& layer : layers) {
    for (int group_size : {0, 16}) {
      if (group_size != 0 && layer.in % group_size != 0) continue;
      for (const RtnOptions& options : AllFormats(group_size)) {
        absl::StatusOr<QuantizedLinear> ref = QuantizeRtnRef(layer, options);
        absl::StatusOr<QuantizedLinear> fast = QuantizeRtn(layer, options);
        ASSERT_TRUE(ref.ok() && fast.ok()) << layer.name;
        EXPECT_EQ(fast->packed, ref->packed) << layer.in << " " << options.TechniqueName();
        EXPECT_EQ(fast->zero_points, ref->zero_points);
        ASSERT_EQ(fast->scales.size(), ref->scales.size());
        for (size_t i = 0; i < ref->scales.size(); ++i) {
          ASSERT_EQ(std::bit_cast<uint32_t>(fast->scales[i]),
                    std::bit_cast<uint32_t>(ref->scales[i]));
        }
      }
    }
  }
  model::LinearLayer bad = RandomLayer(8, 2, 11);
  bad.weight[13] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(QuantizeRtn(bad, {}).status(), QuantizeRtnRef(bad, {}).status());
}

TEST(RtnTest, StorageBytes) {
  const model::LinearLayer layer = RandomLayer(64, 4, 2);
  absl::StatusOr<QuantizedLinear> q = QuantizeRtn(layer, {4, 32, true});
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->StorageBytes(), 4 * 32 + 4 * 2 * 4 + 4 * 2 + 4 * 4);
}

TEST(RtnTest, DequantizeRejectsInconsistentInput) {
  absl::StatusOr<QuantizedLinear> q =
      QuantizeRtn(RandomLayer(16, 2, 3), {4, 8, true});
  ASSERT_TRUE(q.ok());
  std::vector<float> out(32);
  QuantizedLinear bad = *q;
  bad.packed.pop_back();
  EXPECT_THAT(DequantizeRtn(bad, out.data()).message(),
              HasSubstr("packed weight has 15 entries, expected 16 (layer fc)"));
  bad = *q;
  bad.zero_points.clear();
  EXPECT_THAT(DequantizeRtn(bad, out.data()).message(),
              HasSubstr("zero_points has 0 entries, expected 4"));
  bad = *q;
  bad.group_size = 24;
  EXPECT_THAT(DequantizeRtn(bad, out.data()).message(),
              HasSubstr("got 24"));
}

// Hand-computed encodings (OCP FP8 spec tables; IEEE binary16; bfloat16).
TEST(CastQuantizeTest, EncodesHandComputedValues) {
  struct Case {
    FloatFormat format;
    float value;
    uint16_t bits;
  };
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<Case> cases = {
      {FloatFormat::kFp8E4M3, 1.0f, 0x38},        // exponent 7 (bias 7), mantissa 0
      {FloatFormat::kFp8E4M3, -2.5f, 0xc2},       // 1.25 * 2^1: 1.0001.010
      {FloatFormat::kFp8E4M3, 448.0f, 0x7e},      // max: 1.75 * 2^8
      {FloatFormat::kFp8E4M3, 464.0f, 0x7e},      // halfway to 480: rounds up past max, saturates
      {FloatFormat::kFp8E4M3, 1e6f, 0x7e},        // saturates
      {FloatFormat::kFp8E4M3, -inf, 0xfe},        // saturation mode: -inf -> -max
      {FloatFormat::kFp8E4M3, 0x1p-9f, 0x01},     // smallest subnormal
      {FloatFormat::kFp8E4M3, 0x1p-10f, 0x00},    // half of it: tie to even (0)
      {FloatFormat::kFp8E4M3, 0x3p-10f, 0x02},    // 1.5 * 2^-9: tie to even (2)
      {FloatFormat::kFp8E4M3, 1.0625f, 0x38},     // 1 + 1/16: tie between 1 and 1.125 -> even (1)
      {FloatFormat::kFp8E4M3, 1.1875f, 0x3a},     // 1 + 3/16: tie between 1.125 and 1.25 -> even (1.25)
      {FloatFormat::kFp8E4M3, 0x1.ep-7f, 0x08},   // 0.9375 * 2^-6 + rounding carries into the min normal
      {FloatFormat::kFp8E4M3, -0.0f, 0x80},
      {FloatFormat::kFp8E5M2, 1.0f, 0x3c},
      {FloatFormat::kFp8E5M2, 57344.0f, 0x7b},    // max: 1.75 * 2^15
      {FloatFormat::kFp8E5M2, 61440.0f, 0x7b},    // halfway to inf's slot: saturates
      {FloatFormat::kFp8E5M2, inf, 0x7b},         // saturation mode
      {FloatFormat::kFp8E5M2, 0x1p-16f, 0x01},    // smallest subnormal
      {FloatFormat::kFp8E5M2, 3.0f, 0x42},        // 1.5 * 2^1
      {FloatFormat::kFloat16, 1.0f, 0x3c00},
      {FloatFormat::kFloat16, 65504.0f, 0x7bff},
      {FloatFormat::kFloat16, 70000.0f, 0x7bff},  // finite overflow saturates
      {FloatFormat::kFloat16, inf, 0x7c00},       // inf stays inf in fp16
      {FloatFormat::kFloat16, 0x1p-24f, 0x0001},
      {FloatFormat::kFloat16, 1.0f + 0x1p-11f, 0x3c00},  // tie to even
      {FloatFormat::kBFloat16, 1.0f, 0x3f80},
      {FloatFormat::kBFloat16, 1.0f + 0x1p-8f, 0x3f80},  // tie to even
      {FloatFormat::kBFloat16, 1.0f + 0x3p-8f, 0x3f82},  // tie to even (up)
      {FloatFormat::kBFloat16, -inf, 0xff80},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(EncodeFloat(c.value, c.format), c.bits) << FloatFormatName(c.format) << " " << c.value;
  }
  EXPECT_EQ(EncodeFloat(std::nanf(""), FloatFormat::kFp8E4M3), 0x7f);
  EXPECT_EQ(EncodeFloat(-std::nanf(""), FloatFormat::kFp8E5M2), 0xff);
  EXPECT_TRUE(std::isnan(DecodeFloat(0x7f, FloatFormat::kFp8E4M3)));
  EXPECT_TRUE(std::isnan(DecodeFloat(0x7d, FloatFormat::kFp8E5M2)));
  EXPECT_TRUE(std::isinf(DecodeFloat(0x7c, FloatFormat::kFp8E5M2)));
  EXPECT_EQ(DecodeFloat(0x7e, FloatFormat::kFp8E4M3), 448.0f);
  EXPECT_EQ(DecodeFloat(0x01, FloatFormat::kFp8E4M3), 0x1p-9f);
  EXPECT_EQ(FloatFormatBits(FloatFormat::kFp8E5M2), 8);
}

// Every FP8 encoding decodes and re-encodes to itself (NaNs to the
// canonical NaN), and fp16 agrees with the model's half conversion.
TEST(CastQuantizeTest, RoundTripsEveryFp8EncodingAndCastsInPlace) {
  for (FloatFormat format : {FloatFormat::kFp8E4M3, FloatFormat::kFp8E5M2}) {
    for (uint16_t bits = 0; bits < 256; ++bits) {
      const float value = DecodeFloat(bits, format);
      if (std::isnan(value)) continue;
      if (std::isinf(value)) {
        EXPECT_EQ(EncodeFloat(value, format), (bits & 0x80) | 0x7b);
        continue;
      }
      EXPECT_EQ(EncodeFloat(value, format), bits) << FloatFormatName(format) << " " << value;
    }
  }
  std::vector<float> values = {0.1f, -3.3f, 500.0f};
  CastQuantize(FloatFormat::kFp8E4M3, &values);
  EXPECT_EQ(values, (std::vector<float>{0.1015625f, -3.25f, 448.0f}));
  values = {0.1f};
  CastQuantize(FloatFormat::kFloat16, &values);
  EXPECT_EQ(values[0], model::HalfToFloat(0x2e66));
}

}  // namespace
}  // namespace squeeze::core::quant
