#include "core/model/tensor.h"

#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace squeeze::core::model {
namespace {

// Tensor bytes are little-endian on disk and copied as-is into memory.
static_assert(std::endian::native == std::endian::little,
              "squeeze::core::model assumes a little-endian host");

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  int64_t size;
};

constexpr std::array<DTypeInfo, 8> kDTypes = {{
    {DType::kF32, "F32", 4},
    {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2},
    {DType::kI8, "I8", 1},
    {DType::kU8, "U8", 1},
    {DType::kI32, "I32", 4},
    {DType::kI64, "I64", 8},
    {DType::kBool, "BOOL", 1},
}};

const DTypeInfo& Info(DType dtype) {
  return kDTypes[static_cast<size_t>(dtype)];
}

}  // namespace

std::string DTypeName(DType dtype) { return std::string(Info(dtype).name); }

int64_t DTypeSize(DType dtype) { return Info(dtype).size; }

absl::StatusOr<DType> ParseDType(std::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.name == name) return info.dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown dtype \"", std::string(name),
      "\" (expected F32, F16, BF16, I8, U8, I32, I64 or BOOL)"));
}

bool IsFloatingPoint(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

absl::StatusOr<int64_t> CheckedNumElements(const std::vector<int64_t>& shape,
                                           int64_t element_size) {
  int64_t product = element_size;
  for (int64_t dim : shape) {
    if (dim < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("negative dimension ", dim, " in shape [",
                       absl::StrJoin(shape, ", "), "]"));
    }
    if (dim != 0 && product > std::numeric_limits<int64_t>::max() / dim) {
      return absl::InvalidArgumentError(
          absl::StrCat("shape [", absl::StrJoin(shape, ", "),
                       "] is too large: its byte size overflows int64"));
    }
    product *= dim;
  }
  return product / element_size;
}

int64_t Tensor::NumElements() const {
  int64_t product = 1;
  for (int64_t dim : shape) product *= dim;
  return product;
}

float HalfToFloat(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  uint32_t out;
  if (exponent == 0x1f) {
    out = sign | 0x7f800000u | (mantissa << 13);  // inf or NaN
  } else if (exponent != 0) {
    out = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    out = sign;  // signed zero
  } else {
    // Subnormal half: normalise the mantissa into a float32 normal.
    int32_t e = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    mantissa &= 0x3ffu;
    out = sign | (static_cast<uint32_t>(e) << 23) | (mantissa << 13);
  }
  return std::bit_cast<float>(out);
}

float BFloat16ToFloat(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

absl::StatusOr<std::vector<float>> Tensor::ToFloats() const {
  if (!IsFloatingPoint(dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor of dtype ", DTypeName(dtype), " is not floating point"));
  }
  const int64_t n = NumElements();
  if (static_cast<int64_t>(data.size()) != n * DTypeSize(dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor data has ", data.size(), " bytes, expected ",
        n * DTypeSize(dtype), " for ", n, " ", DTypeName(dtype),
        " elements"));
  }
  std::vector<float> out(n);
  if (dtype == DType::kF32) {
    std::memcpy(out.data(), data.data(), data.size());
    return out;
  }
  for (int64_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, data.data() + 2 * i, 2);
    out[i] = dtype == DType::kF16 ? HalfToFloat(bits) : BFloat16ToFloat(bits);
  }
  return out;
}

Tensor Tensor::FromFloats(std::vector<int64_t> shape,
                          const std::vector<float>& values) {
  Tensor t;
  t.dtype = DType::kF32;
  t.shape = std::move(shape);
  t.data.assign(reinterpret_cast<const char*>(values.data()),
                values.size() * sizeof(float));
  return t;
}

}  // namespace squeeze::core::model
