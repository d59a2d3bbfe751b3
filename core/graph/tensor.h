// The runtime tensor of the graph IR: an element type, a shape and owned,
// 8-byte-aligned storage. Unlike model::Tensor (the safetensors storage type)
// it covers every element type the ONNX operators need, packed int4 included,
// and gives kernels typed pointers.
#ifndef SQUEEZE_CORE_GRAPH_TENSOR_H_
#define SQUEEZE_CORE_GRAPH_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/model/tensor.h"

namespace squeeze::core::graph {

// kInt4 packs two signed 4-bit values per byte, the element with the even
// index in the low nibble (the ONNX and ggml order); every other type is one
// element per sizeof(element) bytes, little-endian.
enum class DataType {
  kFloat32,
  kFloat16,
  kBFloat16,
  kFloat64,
  kInt8,
  kUInt8,
  kInt16,
  kUInt16,
  kInt32,
  kUInt32,
  kInt64,
  kUInt64,
  kBool,
  kInt4,
};

// Lower-case name for messages: "float32", "int4", ...
std::string DataTypeName(DataType dtype);

// True for float32, float16, bfloat16 and float64.
bool IsFloat(DataType dtype);

// Bytes needed for `num_elements` elements of `dtype` ((n + 1) / 2 for int4).
int64_t StorageBytes(DataType dtype, int64_t num_elements);

// Product of `shape`, 1 for a scalar. INVALID_ARGUMENT when a dimension is
// negative or the product overflows int64.
absl::StatusOr<int64_t> CountElements(const std::vector<int64_t>& shape);

class Tensor {
 public:
  // An empty float32 tensor of shape [0].
  Tensor() : Tensor(DataType::kFloat32, {0}) {}
  // A zero-filled tensor. Precondition: `shape` passed CountElements.
  Tensor(DataType dtype, std::vector<int64_t> shape);

  // A tensor holding a copy of `bytes`. INVALID_ARGUMENT when the shape is
  // invalid or bytes.size() is not StorageBytes(dtype, elements).
  static absl::StatusOr<Tensor> FromBytes(DataType dtype,
                                          std::vector<int64_t> shape,
                                          absl::string_view bytes);

  // A tensor of C++ element type T (T must match dtype's size).
  // Precondition: values.size() equals the product of shape.
  template <typename T>
  static Tensor FromVector(DataType dtype, std::vector<int64_t> shape,
                           const std::vector<T>& values) {
    Tensor tensor(dtype, std::move(shape));
    std::memcpy(tensor.raw_data(), values.data(), values.size() * sizeof(T));
    return tensor;
  }

  DataType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t num_elements() const { return num_elements_; }
  int64_t byte_size() const { return byte_size_; }

  // Typed element access; T must be the C++ type of dtype() (uint8_t for
  // bool, int8_t pairs for int4 are not addressable: use raw_data()).
  template <typename T>
  T* data() { return reinterpret_cast<T*>(words_.data()); }
  template <typename T>
  const T* data() const { return reinterpret_cast<const T*>(words_.data()); }
  void* raw_data() { return words_.data(); }
  const void* raw_data() const { return words_.data(); }
  absl::string_view bytes() const {
    return absl::string_view(reinterpret_cast<const char*>(words_.data()),
                             static_cast<size_t>(byte_size_));
  }

  // Same data, new shape. INVALID_ARGUMENT when the element counts differ.
  absl::Status Reshape(std::vector<int64_t> shape);

  // The elements converted to double, for any dtype (int4 unpacked).
  std::vector<double> ToDoubles() const;
  // The elements as float32 values (a view for float32, converted otherwise).
  std::vector<float> ToFloats() const;
  // The elements as int64 (truncating floats), for indices, shapes and axes.
  std::vector<int64_t> ToInt64s() const;

 private:
  DataType dtype_;
  std::vector<int64_t> shape_;
  int64_t num_elements_ = 0;
  int64_t byte_size_ = 0;
  std::vector<uint64_t> words_;  // 8-byte alignment for every element type
};

// `tensor` converted to `dtype` with ONNX Cast semantics: float to integer
// truncates toward zero (saturating to the int4 range for int4), float to
// float16/bfloat16 rounds to nearest even, anything to bool is `!= 0`.
Tensor CastTensor(const Tensor& tensor, DataType dtype);

// A tensor holding `values` converted to `dtype` (as CastTensor would).
// Precondition: values.size() equals the product of shape.
Tensor TensorFromDoubles(DataType dtype, std::vector<int64_t> shape,
                         const std::vector<double>& values);

// IEEE binary16 and bfloat16 encodings of `value`, rounding to nearest even.
uint16_t FloatToHalf(float value);
uint16_t FloatToBFloat16(float value);

// Conversions to and from the safetensors storage type. INVALID_ARGUMENT
// naming the dtype when model::DType has no equivalent (float64, int16,
// uint16, uint32, uint64, int4) or the bytes are malformed.
absl::StatusOr<Tensor> FromModelTensor(const model::Tensor& tensor);
absl::StatusOr<model::Tensor> ToModelTensor(const Tensor& tensor);

// ONNX TensorProto.DataType codes (FLOAT = 1, ..., BFLOAT16 = 16; int4 uses
// 22, its code in later ONNX releases). INVALID_ARGUMENT naming the code for
// types the IR does not hold (string, complex, float8).
absl::StatusOr<DataType> DataTypeFromOnnxCode(int64_t code);
int OnnxCode(DataType dtype);

// "[2, 3, 4]" for messages.
std::string ShapeToString(const std::vector<int64_t>& shape);

}  // namespace squeeze::core::graph

#endif  // SQUEEZE_CORE_GRAPH_TENSOR_H_
