// Tensors as safetensors stores them: a dtype, a shape and raw little-endian
// bytes. Nothing here interprets the bytes except ToFloats/FromFloats.
#ifndef SQUEEZE_CORE_MODEL_TENSOR_H_
#define SQUEEZE_CORE_MODEL_TENSOR_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace squeeze::core::model {

// Element types, spelled in files as "F32", "F16", "BF16", "I8", "U8", "I32",
// "I64", "BOOL" (the safetensors names).
enum class DType { kF32, kF16, kBF16, kI8, kU8, kI32, kI64, kBool };

// The safetensors name of `dtype`, e.g. "BF16".
std::string DTypeName(DType dtype);

// Inverse of DTypeName. INVALID_ARGUMENT naming `name` when it is not one of
// the eight names above (case-sensitive, as in the format).
absl::StatusOr<DType> ParseDType(std::string_view name);

// Bytes per element: 4, 2, 2, 1, 1, 4, 8, 1.
int64_t DTypeSize(DType dtype);

// True for F32, F16 and BF16.
bool IsFloatingPoint(DType dtype);

// Product of `shape` (1 for a scalar, 0 if any dimension is 0).
// INVALID_ARGUMENT when a dimension is negative or the product of the
// dimensions times `element_size` (>= 1) does not fit in int64.
absl::StatusOr<int64_t> CheckedNumElements(const std::vector<int64_t>& shape,
                                           int64_t element_size = 1);

struct Tensor {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  // Raw little-endian element bytes, row-major; size is
  // NumElements() * DTypeSize(dtype) for a well-formed tensor.
  std::string data;

  // Product of shape. Precondition: shape has no negative dimension and does
  // not overflow (true for every tensor produced by this library).
  int64_t NumElements() const;

  // The elements as float32, converting F16 and BF16 exactly. INVALID_ARGUMENT
  // when dtype is not floating point or data has the wrong size.
  absl::StatusOr<std::vector<float>> ToFloats() const;

  // An F32 tensor holding `values`. Precondition: values.size() equals the
  // product of `shape`.
  static Tensor FromFloats(std::vector<int64_t> shape,
                           const std::vector<float>& values);
};

// Converts one IEEE binary16 value (as its bit pattern) to float, exactly:
// subnormals, infinities and NaN included.
float HalfToFloat(uint16_t bits);

// Converts one bfloat16 value (as its bit pattern) to float, exactly.
float BFloat16ToFloat(uint16_t bits);

}  // namespace squeeze::core::model

#endif  // SQUEEZE_CORE_MODEL_TENSOR_H_
