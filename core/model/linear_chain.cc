#include "core/model/linear_chain.h"

#include <Eigen/Core>
#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/status_macros.h"

namespace squeeze::core::model {
namespace {

using RowMatrix =
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr char kWeightSuffix[] = ".weight";
constexpr char kBiasSuffix[] = ".bias";

// What the layout rules need to know about a tensor; the same for a loaded
// file and for a header read on its own.
struct TensorShape {
  DType dtype;
  std::vector<int64_t> shape;
};

struct LayerLayout {
  std::string name;
  int64_t in = 0;
  int64_t out = 0;
  bool has_bias = false;
};

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("linear chain: ", what));
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

bool EndsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

absl::StatusOr<std::vector<std::string>> LayerNames(
    const std::map<std::string, std::string>& metadata,
    const std::map<std::string, TensorShape>& tensors) {
  std::vector<std::string> names;
  const auto listed = metadata.find(kLayersMetadataKey);
  if (listed == metadata.end()) {
    for (const auto& [tensor, unused] : tensors) {
      if (EndsWith(tensor, kWeightSuffix)) {
        names.push_back(
            tensor.substr(0, tensor.size() - std::string(kWeightSuffix).size()));
      }
    }
    std::sort(names.begin(), names.end());
  } else {
    std::set<std::string> seen;
    for (absl::string_view part : absl::StrSplit(listed->second, ',')) {
      std::string name(absl::StripAsciiWhitespace(part));
      if (name.empty()) {
        return Invalid(absl::StrCat("empty layer name in metadata \"",
                                    kLayersMetadataKey, "\" = \"",
                                    listed->second, "\""));
      }
      if (!seen.insert(name).second) {
        return Invalid(absl::StrCat("layer \"", name, "\" appears twice in \"",
                                    kLayersMetadataKey, "\""));
      }
      names.push_back(std::move(name));
    }
  }
  if (names.empty()) {
    return Invalid("no layers: expected tensors named <layer>.weight");
  }
  return names;
}

absl::Status CheckFloat(const std::string& tensor, const TensorShape& info) {
  if (!IsFloatingPoint(info.dtype)) {
    return Invalid(absl::StrCat("tensor \"", tensor, "\" has dtype ",
                                DTypeName(info.dtype),
                                "; expected F32, F16 or BF16"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<LayerLayout>> ResolveLayers(
    const std::map<std::string, std::string>& metadata,
    const std::map<std::string, TensorShape>& tensors) {
  SQ_ASSIGN_OR_RETURN(const std::vector<std::string> names,
                      LayerNames(metadata, tensors));
  std::set<std::string> expected_tensors;
  std::vector<LayerLayout> layers;
  for (const std::string& name : names) {
    const std::string weight_name = name + kWeightSuffix;
    const std::string bias_name = name + kBiasSuffix;
    expected_tensors.insert(weight_name);
    expected_tensors.insert(bias_name);
    const auto weight = tensors.find(weight_name);
    if (weight == tensors.end()) {
      return Invalid(absl::StrCat("layer \"", name, "\" has no tensor \"",
                                  weight_name, "\""));
    }
    SQ_RETURN_IF_ERROR(CheckFloat(weight_name, weight->second));
    const std::vector<int64_t>& shape = weight->second.shape;
    if (shape.size() != 2 || shape[0] <= 0 || shape[1] <= 0) {
      return Invalid(absl::StrCat("tensor \"", weight_name, "\" has shape ",
                                  ShapeText(shape),
                                  "; expected [out, in] with both > 0"));
    }
    LayerLayout layer{name, shape[1], shape[0], false};
    const auto bias = tensors.find(bias_name);
    if (bias != tensors.end()) {
      SQ_RETURN_IF_ERROR(CheckFloat(bias_name, bias->second));
      if (bias->second.shape != std::vector<int64_t>{layer.out}) {
        return Invalid(absl::StrCat("tensor \"", bias_name, "\" has shape ",
                                    ShapeText(bias->second.shape),
                                    "; expected [", layer.out, "] to match \"",
                                    weight_name, "\" ", ShapeText(shape)));
      }
      layer.has_bias = true;
    }
    if (!layers.empty() && layers.back().out != layer.in) {
      const LayerLayout& previous = layers.back();
      return Invalid(absl::StrCat(
          "layers do not chain: \"", weight_name, "\" ", ShapeText(shape),
          " takes ", layer.in, " inputs but \"", previous.name, kWeightSuffix,
          "\" [", previous.out, ", ", previous.in, "] gives ", previous.out));
    }
    layers.push_back(std::move(layer));
  }
  for (const auto& [tensor, unused] : tensors) {
    if (!expected_tensors.contains(tensor)) {
      return Invalid(absl::StrCat("tensor \"", tensor,
                                  "\" belongs to no layer (layers: ",
                                  absl::StrJoin(names, ", "), ")"));
    }
  }
  return layers;
}

absl::StatusOr<std::vector<float>> FloatsOf(const SafetensorsFile& file,
                                            const std::string& name) {
  absl::StatusOr<std::vector<float>> values = file.tensors.at(name).ToFloats();
  if (!values.ok()) {
    return Invalid(absl::StrCat("tensor \"", name,
                                "\": ", values.status().message()));
  }
  return values;
}

}  // namespace

int64_t LinearLayer::Parameters() const {
  return static_cast<int64_t>(weight.size() + bias.size());
}

int64_t LinearChain::InputWidth() const {
  return layers.empty() ? 0 : layers.front().in;
}

int64_t LinearChain::OutputWidth() const {
  return layers.empty() ? 0 : layers.back().out;
}

int64_t LinearChain::Parameters() const {
  int64_t total = 0;
  for (const LinearLayer& layer : layers) total += layer.Parameters();
  return total;
}

int64_t LinearChain::MacsPerRow() const {
  int64_t total = 0;
  for (const LinearLayer& layer : layers) total += layer.in * layer.out;
  return total;
}

absl::StatusOr<LinearChain> LinearChainFromSafetensors(
    const SafetensorsFile& file) {
  std::map<std::string, TensorShape> shapes;
  for (const auto& [name, tensor] : file.tensors) {
    shapes[name] = TensorShape{tensor.dtype, tensor.shape};
  }
  SQ_ASSIGN_OR_RETURN(const std::vector<LayerLayout> layouts,
                      ResolveLayers(file.metadata, shapes));
  LinearChain chain;
  for (const LayerLayout& layout : layouts) {
    LinearLayer layer;
    layer.name = layout.name;
    layer.in = layout.in;
    layer.out = layout.out;
    SQ_ASSIGN_OR_RETURN(layer.weight,
                        FloatsOf(file, layout.name + kWeightSuffix));
    if (layout.has_bias) {
      SQ_ASSIGN_OR_RETURN(layer.bias, FloatsOf(file, layout.name + kBiasSuffix));
    }
    chain.layers.push_back(std::move(layer));
  }
  return chain;
}

absl::Status ValidateLinearChainHeader(const SafetensorsHeader& header) {
  std::map<std::string, TensorShape> shapes;
  for (const auto& [name, info] : header.tensors) {
    shapes[name] = TensorShape{info.dtype, info.shape};
  }
  return ResolveLayers(header.metadata, shapes).status();
}

int64_t EstimateMemoryBytes(const SafetensorsHeader& header) {
  int64_t elements = 0;
  for (const auto& [name, info] : header.tensors) {
    int64_t count = 1;
    for (int64_t dim : info.shape) count *= dim;
    elements += count;
  }
  return static_cast<int64_t>(header.data_bytes) +
         3 * static_cast<int64_t>(sizeof(float)) * elements;
}

SafetensorsFile LinearChainToSafetensors(const LinearChain& chain) {
  SafetensorsFile file;
  std::vector<std::string> names;
  for (const LinearLayer& layer : chain.layers) {
    names.push_back(layer.name);
    file.tensors[layer.name + kWeightSuffix] =
        Tensor::FromFloats({layer.out, layer.in}, layer.weight);
    if (!layer.bias.empty()) {
      file.tensors[layer.name + kBiasSuffix] =
          Tensor::FromFloats({layer.out}, layer.bias);
    }
  }
  file.metadata[kLayersMetadataKey] = absl::StrJoin(names, ",");
  return file;
}

void LinearForward(const float* x, int64_t rows, int64_t in, int64_t out,
                   const float* weight, const float* bias, bool relu,
                   float* y) {
  Eigen::Map<const RowMatrix> input(x, rows, in);
  Eigen::Map<const RowMatrix> w(weight, out, in);
  Eigen::Map<RowMatrix> output(y, rows, out);
  output.noalias() = input * w.transpose();
  if (bias != nullptr) {
    output.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias, out);
  }
  if (relu) output = output.cwiseMax(0.0f);
}

void Forward(const LinearChain& chain, const float* x, int64_t rows,
             std::vector<float>* out,
             std::vector<std::vector<float>>* layer_inputs) {
  if (layer_inputs != nullptr) layer_inputs->assign(chain.layers.size(), {});
  std::vector<float> current(x, x + rows * chain.InputWidth());
  std::vector<float> next;
  for (size_t i = 0; i < chain.layers.size(); ++i) {
    const LinearLayer& layer = chain.layers[i];
    if (layer_inputs != nullptr) (*layer_inputs)[i] = current;
    next.resize(rows * layer.out);
    LinearForward(current.data(), rows, layer.in, layer.out,
                  layer.weight.data(),
                  layer.bias.empty() ? nullptr : layer.bias.data(),
                  /*relu=*/i + 1 < chain.layers.size(), next.data());
    current.swap(next);
  }
  *out = std::move(current);
}

}  // namespace squeeze::core::model
