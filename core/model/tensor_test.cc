#include "core/model/tensor.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::model {
namespace {

using ::testing::HasSubstr;

TEST(DTypeTest, NamesRoundTrip) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16, DType::kI8,
                      DType::kU8, DType::kI32, DType::kI64, DType::kBool}) {
    absl::StatusOr<DType> parsed = ParseDType(DTypeName(dtype));
    ASSERT_TRUE(parsed.ok()) << DTypeName(dtype);
    EXPECT_EQ(*parsed, dtype);
  }
  EXPECT_EQ(DTypeName(DType::kBF16), "BF16");
  EXPECT_EQ(DTypeSize(DType::kI64), 8);
  EXPECT_EQ(DTypeSize(DType::kF16), 2);
  EXPECT_EQ(DTypeSize(DType::kBool), 1);
}

TEST(DTypeTest, UnknownNameIsInvalidArgumentNamingIt) {
  absl::StatusOr<DType> parsed = ParseDType("f32");
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(parsed.status().message(), HasSubstr("\"f32\""));
}

TEST(CheckedNumElementsTest, RejectsNegativeAndOverflow) {
  EXPECT_EQ(*CheckedNumElements({}), 1);
  EXPECT_EQ(*CheckedNumElements({3, 0, 5}), 0);
  EXPECT_EQ(*CheckedNumElements({3, 4}, 4), 12);
  EXPECT_THAT(CheckedNumElements({3, -1}).status().message(),
              HasSubstr("negative dimension -1"));
  EXPECT_EQ(CheckedNumElements({1ll << 31, 1ll << 31}).status().code(),
            absl::StatusCode::kOk);
  EXPECT_THAT(CheckedNumElements({1ll << 31, 1ll << 31}, 4).status().message(),
              HasSubstr("overflows"));
  EXPECT_FALSE(CheckedNumElements({1ll << 40, 1ll << 40}).ok());
}

TEST(TensorTest, FromFloatsToFloatsRoundTrips) {
  const std::vector<float> values = {1.5f, -2.0f, 0.0f, 3.25f, 1e-30f, -7.0f};
  const Tensor t = Tensor::FromFloats({2, 3}, values);
  EXPECT_EQ(t.dtype, DType::kF32);
  EXPECT_EQ(t.NumElements(), 6);
  EXPECT_EQ(t.data.size(), 24u);
  EXPECT_EQ(*t.ToFloats(), values);
}

TEST(TensorTest, HalfConversionCoversSpecialValues) {
  EXPECT_EQ(HalfToFloat(0x3c00), 1.0f);
  EXPECT_EQ(HalfToFloat(0xc000), -2.0f);
  EXPECT_EQ(HalfToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(HalfToFloat(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(HalfToFloat(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_EQ(HalfToFloat(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7e00)));
  EXPECT_TRUE(std::signbit(HalfToFloat(0x8000)));
}

TEST(TensorTest, BFloat16ConversionIsTheHighHalfOfFloat32) {
  EXPECT_EQ(BFloat16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(BFloat16ToFloat(0xc040), -3.0f);
}

TEST(TensorTest, ToFloatsConvertsHalfAndBFloat16) {
  Tensor half{DType::kF16, {2}, std::string("\x00\x3c\x00\xc0", 4)};
  EXPECT_EQ(*half.ToFloats(), (std::vector<float>{1.0f, -2.0f}));
  Tensor bf16{DType::kBF16, {2}, std::string("\x80\x3f\x40\xc0", 4)};
  EXPECT_EQ(*bf16.ToFloats(), (std::vector<float>{1.0f, -3.0f}));
}

TEST(TensorTest, ToFloatsRejectsIntegersAndWrongSizes) {
  Tensor ints{DType::kI32, {1}, std::string(4, '\0')};
  EXPECT_THAT(ints.ToFloats().status().message(),
              HasSubstr("I32 is not floating point"));
  Tensor short_data{DType::kF32, {2}, std::string(7, '\0')};
  EXPECT_THAT(short_data.ToFloats().status().message(),
              HasSubstr("7 bytes, expected 8"));
}

}  // namespace
}  // namespace squeeze::core::model
