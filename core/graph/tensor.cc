#include "core/graph/tensor.h"

#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace squeeze::core::graph {
namespace {

int64_t ElementBytes(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat64:
    case DataType::kInt64:
    case DataType::kUInt64:
      return 8;
    case DataType::kFloat32:
    case DataType::kInt32:
    case DataType::kUInt32:
      return 4;
    case DataType::kFloat16:
    case DataType::kBFloat16:
    case DataType::kInt16:
    case DataType::kUInt16:
      return 2;
    case DataType::kInt8:
    case DataType::kUInt8:
    case DataType::kBool:
    case DataType::kInt4:
      return 1;
  }
  return 1;
}

int Int4At(const uint8_t* packed, int64_t i) {
  const int nibble = (packed[i / 2] >> ((i % 2) * 4)) & 0xF;
  return nibble >= 8 ? nibble - 16 : nibble;
}

template <typename T>
T SaturatingFromDouble(double value) {
  if (std::isnan(value)) return T{0};
  const double truncated = std::trunc(value);
  // Out-of-range float-to-int conversion is undefined behaviour in C++;
  // saturate instead (ONNX leaves the result unspecified).
  if (truncated <= static_cast<double>(std::numeric_limits<T>::lowest())) {
    return std::numeric_limits<T>::lowest();
  }
  if (truncated >= static_cast<double>(std::numeric_limits<T>::max())) {
    return std::numeric_limits<T>::max();
  }
  return static_cast<T>(truncated);
}

}  // namespace

std::string DataTypeName(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat32: return "float32";
    case DataType::kFloat16: return "float16";
    case DataType::kBFloat16: return "bfloat16";
    case DataType::kFloat64: return "float64";
    case DataType::kInt8: return "int8";
    case DataType::kUInt8: return "uint8";
    case DataType::kInt16: return "int16";
    case DataType::kUInt16: return "uint16";
    case DataType::kInt32: return "int32";
    case DataType::kUInt32: return "uint32";
    case DataType::kInt64: return "int64";
    case DataType::kUInt64: return "uint64";
    case DataType::kBool: return "bool";
    case DataType::kInt4: return "int4";
  }
  return "unknown";
}

bool IsFloat(DataType dtype) {
  return dtype == DataType::kFloat32 || dtype == DataType::kFloat16 ||
         dtype == DataType::kBFloat16 || dtype == DataType::kFloat64;
}

int64_t StorageBytes(DataType dtype, int64_t num_elements) {
  if (dtype == DataType::kInt4) return (num_elements + 1) / 2;
  return num_elements * ElementBytes(dtype);
}

absl::StatusOr<int64_t> CountElements(const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t dim : shape) {
    if (dim < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("negative dimension ", dim, " in shape ",
                       ShapeToString(shape)));
    }
    // 2^62 elements is beyond any real tensor and leaves room for the
    // byte-count multiplication that follows.
    if (dim != 0 && count > (int64_t{1} << 62) / dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shape ", ShapeToString(shape), " has too many elements"));
    }
    count *= dim;
  }
  return count;
}

absl::StatusOr<DataType> DataTypeFromOnnxCode(int64_t code) {
  switch (code) {
    case 1: return DataType::kFloat32;
    case 2: return DataType::kUInt8;
    case 3: return DataType::kInt8;
    case 4: return DataType::kUInt16;
    case 5: return DataType::kInt16;
    case 6: return DataType::kInt32;
    case 7: return DataType::kInt64;
    case 9: return DataType::kBool;
    case 10: return DataType::kFloat16;
    case 11: return DataType::kFloat64;
    case 12: return DataType::kUInt32;
    case 13: return DataType::kUInt64;
    case 16: return DataType::kBFloat16;
    case 22: return DataType::kInt4;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("ONNX element type ", code,
                       " is not supported (string, complex and float8 are not)"));
  }
}

int OnnxCode(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat32: return 1;
    case DataType::kUInt8: return 2;
    case DataType::kInt8: return 3;
    case DataType::kUInt16: return 4;
    case DataType::kInt16: return 5;
    case DataType::kInt32: return 6;
    case DataType::kInt64: return 7;
    case DataType::kBool: return 9;
    case DataType::kFloat16: return 10;
    case DataType::kFloat64: return 11;
    case DataType::kUInt32: return 12;
    case DataType::kUInt64: return 13;
    case DataType::kBFloat16: return 16;
    case DataType::kInt4: return 22;
  }
  return 0;
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

Tensor::Tensor(DataType dtype, std::vector<int64_t> shape)
    : dtype_(dtype), shape_(std::move(shape)) {
  num_elements_ = 1;
  for (int64_t dim : shape_) num_elements_ *= dim;
  byte_size_ = StorageBytes(dtype_, num_elements_);
  words_.assign(static_cast<size_t>((byte_size_ + 7) / 8), 0);
}

absl::StatusOr<Tensor> Tensor::FromBytes(DataType dtype,
                                         std::vector<int64_t> shape,
                                         absl::string_view bytes) {
  absl::StatusOr<int64_t> count = CountElements(shape);
  if (!count.ok()) return count.status();
  const int64_t expected = StorageBytes(dtype, *count);
  if (static_cast<int64_t>(bytes.size()) != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        DataTypeName(dtype), " tensor of shape ", ShapeToString(shape),
        " needs ", expected, " bytes, got ", bytes.size()));
  }
  Tensor tensor(dtype, std::move(shape));
  if (!bytes.empty()) std::memcpy(tensor.raw_data(), bytes.data(), bytes.size());
  return tensor;
}

absl::Status Tensor::Reshape(std::vector<int64_t> shape) {
  absl::StatusOr<int64_t> count = CountElements(shape);
  if (!count.ok()) return count.status();
  if (*count != num_elements_) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot reshape ", ShapeToString(shape_), " (",
                     num_elements_, " elements) to ", ShapeToString(shape)));
  }
  shape_ = std::move(shape);
  return absl::OkStatus();
}

std::vector<double> Tensor::ToDoubles() const {
  std::vector<double> out(static_cast<size_t>(num_elements_));
  const int64_t n = num_elements_;
  auto copy = [&](const auto* src) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<double>(src[i]);
  };
  switch (dtype_) {
    case DataType::kFloat32: copy(data<float>()); break;
    case DataType::kFloat64: copy(data<double>()); break;
    case DataType::kInt8: copy(data<int8_t>()); break;
    case DataType::kUInt8: copy(data<uint8_t>()); break;
    case DataType::kInt16: copy(data<int16_t>()); break;
    case DataType::kUInt16: copy(data<uint16_t>()); break;
    case DataType::kInt32: copy(data<int32_t>()); break;
    case DataType::kUInt32: copy(data<uint32_t>()); break;
    case DataType::kInt64: copy(data<int64_t>()); break;
    case DataType::kUInt64: copy(data<uint64_t>()); break;
    case DataType::kBool: copy(data<uint8_t>()); break;
    case DataType::kFloat16:
      for (int64_t i = 0; i < n; ++i) out[i] = model::HalfToFloat(data<uint16_t>()[i]);
      break;
    case DataType::kBFloat16:
      for (int64_t i = 0; i < n; ++i) out[i] = model::BFloat16ToFloat(data<uint16_t>()[i]);
      break;
    case DataType::kInt4:
      for (int64_t i = 0; i < n; ++i) out[i] = Int4At(data<uint8_t>(), i);
      break;
  }
  return out;
}

std::vector<float> Tensor::ToFloats() const {
  if (dtype_ == DataType::kFloat32) {
    return std::vector<float>(data<float>(), data<float>() + num_elements_);
  }
  std::vector<double> doubles = ToDoubles();
  return std::vector<float>(doubles.begin(), doubles.end());
}

std::vector<int64_t> Tensor::ToInt64s() const {
  if (dtype_ == DataType::kInt64) {
    return std::vector<int64_t>(data<int64_t>(), data<int64_t>() + num_elements_);
  }
  std::vector<double> doubles = ToDoubles();
  std::vector<int64_t> out(doubles.size());
  for (size_t i = 0; i < doubles.size(); ++i) {
    out[i] = SaturatingFromDouble<int64_t>(doubles[i]);
  }
  return out;
}

uint16_t FloatToHalf(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  const uint32_t sign = (bits >> 16) & 0x8000;
  const uint32_t abs = bits & 0x7FFFFFFF;
  if (abs >= 0x7F800000) {  // inf or NaN
    return static_cast<uint16_t>(sign | 0x7C00 | (abs > 0x7F800000 ? 0x200 : 0));
  }
  if (abs >= 0x477FF000) return static_cast<uint16_t>(sign | 0x7C00);  // overflow
  if (abs < 0x38800000) {  // subnormal half (or zero)
    // Scale into the subnormal range with float arithmetic, which rounds to
    // nearest even for us.
    float magnitude;
    std::memcpy(&magnitude, &abs, 4);
    const float scaled = magnitude * 16777216.0f;  // 2^24: one half ulp = 1
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(scaled)));
  }
  uint32_t half = ((abs >> 13) - ((127 - 15) << 10));
  const uint32_t remainder = abs & 0x1FFF;
  if (remainder > 0x1000 || (remainder == 0x1000 && (half & 1))) ++half;
  return static_cast<uint16_t>(sign | half);
}

uint16_t FloatToBFloat16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7FFFFFFF) > 0x7F800000) return static_cast<uint16_t>((bits >> 16) | 0x40);
  const uint32_t rounding = 0x7FFF + ((bits >> 16) & 1);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

Tensor TensorFromDoubles(DataType dtype, std::vector<int64_t> shape,
                         const std::vector<double>& values) {
  Tensor out(dtype, std::move(shape));
  const int64_t n = out.num_elements();
  auto fill_int = [&](auto* dst) {
    using T = std::remove_pointer_t<decltype(dst)>;
    for (int64_t i = 0; i < n; ++i) dst[i] = SaturatingFromDouble<T>(values[i]);
  };
  switch (dtype) {
    case DataType::kFloat32:
      for (int64_t i = 0; i < n; ++i) out.data<float>()[i] = static_cast<float>(values[i]);
      break;
    case DataType::kFloat64:
      for (int64_t i = 0; i < n; ++i) out.data<double>()[i] = values[i];
      break;
    case DataType::kFloat16:
      for (int64_t i = 0; i < n; ++i) {
        out.data<uint16_t>()[i] = FloatToHalf(static_cast<float>(values[i]));
      }
      break;
    case DataType::kBFloat16:
      for (int64_t i = 0; i < n; ++i) {
        out.data<uint16_t>()[i] = FloatToBFloat16(static_cast<float>(values[i]));
      }
      break;
    case DataType::kInt8: fill_int(out.data<int8_t>()); break;
    case DataType::kUInt8: fill_int(out.data<uint8_t>()); break;
    case DataType::kInt16: fill_int(out.data<int16_t>()); break;
    case DataType::kUInt16: fill_int(out.data<uint16_t>()); break;
    case DataType::kInt32: fill_int(out.data<int32_t>()); break;
    case DataType::kUInt32: fill_int(out.data<uint32_t>()); break;
    case DataType::kInt64: fill_int(out.data<int64_t>()); break;
    case DataType::kUInt64: fill_int(out.data<uint64_t>()); break;
    case DataType::kBool:
      for (int64_t i = 0; i < n; ++i) out.data<uint8_t>()[i] = values[i] != 0.0 ? 1 : 0;
      break;
    case DataType::kInt4: {
      uint8_t* packed = out.data<uint8_t>();
      for (int64_t i = 0; i < n; ++i) {
        const double clamped = std::min(7.0, std::max(-8.0, std::trunc(values[i])));
        const uint8_t nibble = static_cast<uint8_t>(static_cast<int>(clamped) & 0xF);
        packed[i / 2] |= static_cast<uint8_t>(nibble << ((i % 2) * 4));
      }
      break;
    }
  }
  return out;
}

Tensor CastTensor(const Tensor& tensor, DataType dtype) {
  if (tensor.dtype() == dtype) return tensor;
  if (tensor.dtype() == DataType::kInt64 && !IsFloat(dtype)) {
    // Integer to integer keeps every int64 bit that fits (no double detour).
    Tensor out(dtype, tensor.shape());
    const int64_t* src = tensor.data<int64_t>();
    auto narrow = [&](auto* dst) {
      using T = std::remove_pointer_t<decltype(dst)>;
      for (int64_t i = 0; i < tensor.num_elements(); ++i) dst[i] = static_cast<T>(src[i]);
    };
    switch (dtype) {
      case DataType::kInt8: narrow(out.data<int8_t>()); return out;
      case DataType::kUInt8: narrow(out.data<uint8_t>()); return out;
      case DataType::kInt16: narrow(out.data<int16_t>()); return out;
      case DataType::kUInt16: narrow(out.data<uint16_t>()); return out;
      case DataType::kInt32: narrow(out.data<int32_t>()); return out;
      case DataType::kUInt32: narrow(out.data<uint32_t>()); return out;
      case DataType::kUInt64: narrow(out.data<uint64_t>()); return out;
      default: break;
    }
  }
  return TensorFromDoubles(dtype, tensor.shape(), tensor.ToDoubles());
}

absl::StatusOr<Tensor> FromModelTensor(const model::Tensor& tensor) {
  DataType dtype = DataType::kFloat32;
  switch (tensor.dtype) {
    case model::DType::kF32: dtype = DataType::kFloat32; break;
    case model::DType::kF16: dtype = DataType::kFloat16; break;
    case model::DType::kBF16: dtype = DataType::kBFloat16; break;
    case model::DType::kI8: dtype = DataType::kInt8; break;
    case model::DType::kU8: dtype = DataType::kUInt8; break;
    case model::DType::kI32: dtype = DataType::kInt32; break;
    case model::DType::kI64: dtype = DataType::kInt64; break;
    case model::DType::kBool: dtype = DataType::kBool; break;
  }
  return Tensor::FromBytes(dtype, tensor.shape, tensor.data);
}

absl::StatusOr<model::Tensor> ToModelTensor(const Tensor& tensor) {
  model::Tensor out;
  switch (tensor.dtype()) {
    case DataType::kFloat32: out.dtype = model::DType::kF32; break;
    case DataType::kFloat16: out.dtype = model::DType::kF16; break;
    case DataType::kBFloat16: out.dtype = model::DType::kBF16; break;
    case DataType::kInt8: out.dtype = model::DType::kI8; break;
    case DataType::kUInt8: out.dtype = model::DType::kU8; break;
    case DataType::kInt32: out.dtype = model::DType::kI32; break;
    case DataType::kInt64: out.dtype = model::DType::kI64; break;
    case DataType::kBool: out.dtype = model::DType::kBool; break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("ToModelTensor: safetensors has no ",
                       DataTypeName(tensor.dtype()), " dtype"));
  }
  out.shape = tensor.shape();
  out.data = std::string(tensor.bytes());
  return out;
}

}  // namespace squeeze::core::graph
