#include "core/quant/quantized_model.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/quant/packed_formats.h"
#include "core/status_macros.h"

namespace squeeze::core::quant {
namespace {

using model::DType;
using model::SafetensorsFile;
using model::Tensor;

constexpr char kSymmetric[] = "sym";
constexpr char kAsymmetric[] = "asym";

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("quantized artifact: ", what));
}

std::string LayerKey(const std::string& layer, const char* field) {
  return absl::StrCat("squeeze.layer.", layer, ".", field);
}

absl::StatusOr<std::string> Metadata(const SafetensorsFile& file,
                                     const std::string& key) {
  const auto it = file.metadata.find(key);
  if (it == file.metadata.end()) {
    return Invalid(absl::StrCat("missing metadata \"", key, "\""));
  }
  return it->second;
}

absl::StatusOr<int64_t> IntegerMetadata(const SafetensorsFile& file,
                                        const std::string& key) {
  SQ_ASSIGN_OR_RETURN(const std::string text, Metadata(file, key));
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value)) {
    return Invalid(absl::StrCat("metadata \"", key, "\" = \"", text,
                                "\" is not an integer"));
  }
  return value;
}

// The tensor `name`, checked to have `dtype` and `shape`.
absl::StatusOr<const Tensor*> Expect(const SafetensorsFile& file,
                                     const std::string& name, DType dtype,
                                     const std::vector<int64_t>& shape) {
  const auto it = file.tensors.find(name);
  if (it == file.tensors.end()) {
    return Invalid(absl::StrCat("missing tensor \"", name, "\""));
  }
  const Tensor& tensor = it->second;
  if (tensor.dtype != dtype || tensor.shape != shape) {
    return Invalid(absl::StrCat(
        "tensor \"", name, "\" is ", model::DTypeName(tensor.dtype), " [",
        absl::StrJoin(tensor.shape, ", "), "], expected ",
        model::DTypeName(dtype), " [", absl::StrJoin(shape, ", "), "]"));
  }
  return &tensor;
}

std::vector<float> Floats(const Tensor& tensor) {
  // Expect() has checked dtype F32 and the shape; the size follows.
  return *tensor.ToFloats();
}

absl::StatusOr<QuantizedLinear> LayerFromSafetensors(
    const SafetensorsFile& file, const std::string& name,
    std::set<std::string>* used) {
  QuantizedLinear q;
  q.name = name;
  SQ_ASSIGN_OR_RETURN(const int64_t bits,
                      IntegerMetadata(file, LayerKey(name, "bits")));
  SQ_ASSIGN_OR_RETURN(const int64_t group_size,
                      IntegerMetadata(file, LayerKey(name, "group_size")));
  SQ_ASSIGN_OR_RETURN(q.in, IntegerMetadata(file, LayerKey(name, "in_features")));
  SQ_ASSIGN_OR_RETURN(const std::string scheme,
                      Metadata(file, LayerKey(name, "scheme")));
  if (scheme != kSymmetric && scheme != kAsymmetric) {
    return Invalid(absl::StrCat("metadata \"", LayerKey(name, "scheme"),
                                "\" = \"", scheme,
                                "\", expected \"sym\" or \"asym\""));
  }
  if ((bits != 4 && bits != 8) || group_size < 0 || group_size > 1 << 20) {
    return Invalid(absl::StrCat("layer ", name, ": bits ", bits,
                                ", group_size ", group_size, " out of range"));
  }
  q.bits = static_cast<int>(bits);
  q.group_size = static_cast<int>(group_size);
  q.asymmetric = scheme == kAsymmetric;
  SQ_RETURN_IF_ERROR(
      (RtnOptions{q.bits, q.group_size, q.asymmetric}).Validate(q.in, name));

  const std::string qweight_name = name + ".qweight";
  const auto qweight_it = file.tensors.find(qweight_name);
  if (qweight_it == file.tensors.end() || qweight_it->second.shape.size() != 2) {
    return Invalid(absl::StrCat("missing 2-D tensor \"", qweight_name, "\""));
  }
  q.out = qweight_it->second.shape[0];
  const DType packed_dtype =
      q.bits == 8 && !q.asymmetric ? DType::kI8 : DType::kU8;
  SQ_ASSIGN_OR_RETURN(const Tensor* qweight,
                      Expect(file, qweight_name, packed_dtype,
                             {q.out, PackedRowBytes(q.bits, q.in)}));
  q.packed = qweight->data;
  const std::vector<int64_t> group_shape = {q.out, q.Groups()};
  SQ_ASSIGN_OR_RETURN(const Tensor* scales,
                      Expect(file, name + ".scales", DType::kF32, group_shape));
  q.scales = Floats(*scales);
  used->insert({qweight_name, name + ".scales"});
  if (q.asymmetric) {
    SQ_ASSIGN_OR_RETURN(const Tensor* zeros,
                        Expect(file, name + ".zeros", DType::kU8, group_shape));
    q.zero_points.assign(zeros->data.begin(), zeros->data.end());
    used->insert(name + ".zeros");
  }
  if (file.tensors.contains(name + ".bias")) {
    SQ_ASSIGN_OR_RETURN(const Tensor* bias,
                        Expect(file, name + ".bias", DType::kF32, {q.out}));
    q.bias = Floats(*bias);
    used->insert(name + ".bias");
  }
  return q;
}

}  // namespace

int64_t QuantizedChain::StorageBytes() const {
  int64_t total = 0;
  for (const QuantizedLinear& layer : layers) total += layer.StorageBytes();
  return total;
}

absl::StatusOr<QuantizedChain> QuantizeChain(const model::LinearChain& chain,
                                             const RtnOptions& options,
                                             const LayerProgressFn& progress) {
  for (const model::LinearLayer& layer : chain.layers) {
    SQ_RETURN_IF_ERROR(options.Validate(layer.in, layer.name));
  }
  QuantizedChain quantized;
  const int layers = static_cast<int>(chain.layers.size());
  for (int i = 0; i < layers; ++i) {
    SQ_ASSIGN_OR_RETURN(QuantizedLinear layer,
                        QuantizeRtn(chain.layers[i], options));
    quantized.layers.push_back(std::move(layer));
    if (progress && !progress(i, layers)) {
      return absl::CancelledError(absl::StrCat(
          "quantize: cancelled after layer ", i + 1, " of ", layers));
    }
  }
  return quantized;
}

SafetensorsFile QuantizedChainToSafetensors(const QuantizedChain& chain) {
  SafetensorsFile file;
  std::vector<std::string> names;
  for (const QuantizedLinear& q : chain.layers) {
    names.push_back(q.name);
    const DType packed_dtype =
        q.bits == 8 && !q.asymmetric ? DType::kI8 : DType::kU8;
    file.tensors[q.name + ".qweight"] =
        Tensor{packed_dtype, {q.out, PackedRowBytes(q.bits, q.in)}, q.packed};
    file.tensors[q.name + ".scales"] =
        Tensor::FromFloats({q.out, q.Groups()}, q.scales);
    if (q.asymmetric) {
      file.tensors[q.name + ".zeros"] =
          Tensor{DType::kU8, {q.out, q.Groups()},
                 std::string(q.zero_points.begin(), q.zero_points.end())};
    }
    if (!q.bias.empty()) {
      file.tensors[q.name + ".bias"] = Tensor::FromFloats({q.out}, q.bias);
    }
    file.metadata[LayerKey(q.name, "bits")] = absl::StrCat(q.bits);
    file.metadata[LayerKey(q.name, "group_size")] = absl::StrCat(q.group_size);
    file.metadata[LayerKey(q.name, "in_features")] = absl::StrCat(q.in);
    file.metadata[LayerKey(q.name, "scheme")] =
        q.asymmetric ? kAsymmetric : kSymmetric;
  }
  file.metadata[kFormatMetadataKey] = kRtnFormat;
  file.metadata[model::kLayersMetadataKey] = absl::StrJoin(names, ",");
  return file;
}

absl::StatusOr<QuantizedChain> QuantizedChainFromSafetensors(
    const SafetensorsFile& file) {
  SQ_ASSIGN_OR_RETURN(const std::string format,
                      Metadata(file, kFormatMetadataKey));
  if (format != kRtnFormat) {
    return Invalid(absl::StrCat("format \"", format, "\" is not \"",
                                kRtnFormat, "\""));
  }
  SQ_ASSIGN_OR_RETURN(const std::string layer_list,
                      Metadata(file, model::kLayersMetadataKey));
  QuantizedChain chain;
  std::set<std::string> used;
  for (absl::string_view name : absl::StrSplit(layer_list, ',')) {
    SQ_ASSIGN_OR_RETURN(QuantizedLinear layer,
                        LayerFromSafetensors(file, std::string(name), &used));
    if (!chain.layers.empty() && chain.layers.back().out != layer.in) {
      return Invalid(absl::StrCat("layers do not chain: ", layer.name,
                                  " takes ", layer.in, " inputs but ",
                                  chain.layers.back().name, " gives ",
                                  chain.layers.back().out));
    }
    chain.layers.push_back(std::move(layer));
  }
  for (const auto& [name, tensor] : file.tensors) {
    if (!used.contains(name)) {
      return Invalid(absl::StrCat("tensor \"", name, "\" belongs to no layer"));
    }
  }
  return chain;
}

absl::StatusOr<model::LinearChain> DequantizeChain(const QuantizedChain& chain) {
  model::LinearChain out;
  for (const QuantizedLinear& q : chain.layers) {
    model::LinearLayer layer{q.name, q.in, q.out, {}, q.bias};
    layer.weight.resize(q.in * q.out);
    SQ_RETURN_IF_ERROR(DequantizeRtn(q, layer.weight.data()));
    out.layers.push_back(std::move(layer));
  }
  return out;
}

absl::StatusOr<model::LinearChain> DequantizeChainFromSafetensors(
    const SafetensorsFile& file) {
  SQ_ASSIGN_OR_RETURN(const QuantizedChain chain,
                      QuantizedChainFromSafetensors(file));
  return DequantizeChain(chain);
}

absl::Status QuantizedForward(const QuantizedChain& chain, const float* x,
                              int64_t rows, std::vector<float>* out) {
  std::vector<float> weight;
  std::vector<float> current(
      x, x + rows * (chain.layers.empty() ? 0 : chain.layers.front().in));
  std::vector<float> next;
  for (size_t i = 0; i < chain.layers.size(); ++i) {
    const QuantizedLinear& q = chain.layers[i];
    if (static_cast<int64_t>(current.size()) != rows * q.in) {
      return absl::InvalidArgumentError(absl::StrCat(
          "quantized forward: layer ", q.name, " takes ", q.in,
          " inputs but receives rows of ", current.size() / std::max<int64_t>(rows, 1)));
    }
    weight.resize(q.in * q.out);
    SQ_RETURN_IF_ERROR(DequantizeRtn(q, weight.data()));
    next.resize(rows * q.out);
    model::LinearForward(current.data(), rows, q.in, q.out, weight.data(),
                         q.bias.empty() ? nullptr : q.bias.data(),
                         /*relu=*/i + 1 < chain.layers.size(), next.data());
    current.swap(next);
  }
  *out = std::move(current);
  return absl::OkStatus();
}

}  // namespace squeeze::core::quant
