#include "core/quant/ptq/layers.h"

#include <map>

#include "absl/strings/str_cat.h"

namespace squeeze::core::quant::ptq {
namespace {

using graph::Graph;
using graph::Node;
using graph::Tensor;

std::string NodeName(const Node& node, size_t index) {
  return node.name.empty() ? absl::StrCat(node.op_type, "_", index) : node.name;
}

// How many node inputs (across the whole graph) use each value.
std::map<std::string, int> CountUses(const Graph& graph) {
  std::map<std::string, int> uses;
  for (const Node& node : graph.nodes) {
    for (const std::string& input : node.inputs) {
      if (!input.empty()) ++uses[input];
    }
  }
  for (const auto& output : graph.outputs) ++uses[output.name];
  return uses;
}

}  // namespace

absl::StatusOr<LayerScan> FindQuantizableLayers(const Graph& graph) {
  LayerScan scan;
  const std::map<std::string, int> uses = CountUses(graph);
  std::map<std::string, const Node*> producer;
  for (const Node& node : graph.nodes) {
    for (const std::string& output : node.outputs) producer[output] = &node;
  }
  auto skip = [&scan](const std::string& name, std::string reason) {
    scan.skipped.push_back({name, std::move(reason)});
  };
  auto only_use = [&uses](const std::string& value) {
    auto it = uses.find(value);
    return it != uses.end() && it->second == 1;
  };
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& node = graph.nodes[i];
    if (node.op_type != "Gemm" && node.op_type != "MatMul" && node.op_type != "Conv") continue;
    const std::string name = NodeName(node, i);
    if (node.inputs.size() < 2) {
      skip(name, "fewer than two inputs");
      continue;
    }
    QuantizableLayer layer;
    layer.name = name;
    layer.op_type = node.op_type;
    layer.input = node.inputs[0];
    std::string weight = node.inputs[1];
    layer.weight_input = weight;
    if (node.op_type == "MatMul" && !graph.initializers.count(weight)) {
      auto it = producer.find(weight);
      if (it == producer.end() || it->second->op_type != "Transpose" ||
          it->second->IntsAttribute("perm") != std::vector<int64_t>{1, 0} || !only_use(weight)) {
        skip(name, "weight is computed, not an initializer");
        continue;
      }
      weight = it->second->inputs[0];
      layer.layout = WeightLayout::kOutIn;
    } else {
      layer.layout = node.op_type == "Conv"   ? WeightLayout::kConvOihw
                     : node.op_type == "Gemm" ? (node.IntAttribute("transB", 0) ? WeightLayout::kOutIn
                                                                                 : WeightLayout::kInOut)
                                              : WeightLayout::kInOut;
    }
    auto init = graph.initializers.find(weight);
    if (init == graph.initializers.end()) {
      skip(name, "weight is computed, not an initializer");
      continue;
    }
    if (!only_use(weight)) {
      skip(name, absl::StrCat("weight ", weight, " is also used by another node (e.g. a tied embedding)"));
      continue;
    }
    const Tensor& w = init->second;
    if (w.dtype() != graph::DataType::kFloat32) {
      skip(name, absl::StrCat("weight ", weight, " is ", graph::DataTypeName(w.dtype()), ", not float32"));
      continue;
    }
    layer.weight = weight;
    const std::vector<int64_t>& shape = w.shape();
    if (node.op_type == "Conv") {
      if (shape.size() != 4) {
        skip(name, absl::StrCat("only 2-D convolutions are quantized; weight is ", graph::ShapeToString(shape)));
        continue;
      }
      if (node.IntAttribute("group", 1) != 1) {
        skip(name, "grouped convolution");
        continue;
      }
      const std::string auto_pad = node.StringAttribute("auto_pad", "NOTSET");
      if (auto_pad != "NOTSET") {
        skip(name, absl::StrCat("auto_pad ", auto_pad));
        continue;
      }
      ConvGeometry& g = layer.conv;
      g.kernel_h = shape[2];
      g.kernel_w = shape[3];
      const std::vector<int64_t> strides = node.IntsAttribute("strides");
      const std::vector<int64_t> dilations = node.IntsAttribute("dilations");
      const std::vector<int64_t> pads = node.IntsAttribute("pads");
      if (strides.size() == 2) g.stride_h = strides[0], g.stride_w = strides[1];
      if (dilations.size() == 2) g.dilation_h = dilations[0], g.dilation_w = dilations[1];
      if (pads.size() == 4) g.pad_top = pads[0], g.pad_left = pads[1], g.pad_bottom = pads[2], g.pad_right = pads[3];
      layer.out = shape[0];
      layer.in_channels = shape[1];
      layer.kernel_size = shape[2] * shape[3];
      layer.in = layer.in_channels * layer.kernel_size;
    } else {
      if (shape.size() != 2) {
        if (node.op_type == "Gemm") {
          return absl::InvalidArgumentError(absl::StrCat("quantize: Gemm weight ", weight, " has shape ",
                                                         graph::ShapeToString(shape), ", expected 2-D (layer ",
                                                         name, ")"));
        }
        skip(name, absl::StrCat("weight ", weight, " is not 2-D"));
        continue;
      }
      if (node.op_type == "Gemm" && node.IntAttribute("transA", 0) != 0) {
        skip(name, "Gemm with transA");
        continue;
      }
      const bool out_in = layer.layout == WeightLayout::kOutIn;
      layer.out = out_in ? shape[0] : shape[1];
      layer.in = out_in ? shape[1] : shape[0];
      layer.in_channels = layer.in;
    }
    if (node.op_type != "MatMul" && node.inputs.size() > 2 && !node.inputs[2].empty()) {
      if (!graph.initializers.count(node.inputs[2]) || !only_use(node.inputs[2]) ||
          graph.initializers.at(node.inputs[2]).num_elements() != layer.out) {
        skip(name, "bias is not a per-output initializer of its own");
        continue;
      }
      layer.bias = node.inputs[2];
    }
    scan.layers.push_back(std::move(layer));
  }
  return scan;
}

std::vector<float> WeightMatrix(const Graph& graph, const QuantizableLayer& layer) {
  const Tensor& w = graph.initializers.at(layer.weight);
  const float* data = w.data<float>();
  if (layer.layout != WeightLayout::kInOut) return std::vector<float>(data, data + w.num_elements());
  std::vector<float> matrix(static_cast<size_t>(layer.out * layer.in));
  for (int64_t r = 0; r < layer.out; ++r) {
    for (int64_t c = 0; c < layer.in; ++c) matrix[r * layer.in + c] = data[c * layer.out + r];
  }
  return matrix;
}

void SetWeightMatrix(Graph* graph, const QuantizableLayer& layer, const std::vector<float>& matrix) {
  Tensor& w = graph->initializers.at(layer.weight);
  float* data = w.data<float>();
  if (layer.layout != WeightLayout::kInOut) {
    std::copy(matrix.begin(), matrix.end(), data);
    return;
  }
  for (int64_t r = 0; r < layer.out; ++r) {
    for (int64_t c = 0; c < layer.in; ++c) data[c * layer.out + r] = matrix[r * layer.in + c];
  }
}

int64_t ChannelAxis(const QuantizableLayer& layer, int64_t rank) {
  return layer.op_type == "Conv" ? 1 : rank - 1;
}

absl::StatusOr<std::vector<float>> LayerInputRows(const QuantizableLayer& layer, const Tensor& input,
                                                  int64_t* rows) {
  if (input.dtype() != graph::DataType::kFloat32) {
    return absl::InvalidArgumentError(absl::StrCat("calibrate: input ", layer.input, " of layer ", layer.name,
                                                   " is ", graph::DataTypeName(input.dtype()), ", not float32"));
  }
  const std::vector<int64_t>& shape = input.shape();
  const float* x = input.data<float>();
  if (layer.op_type != "Conv") {
    if (shape.empty() || shape.back() != layer.in) {
      return absl::InvalidArgumentError(absl::StrCat("calibrate: input ", layer.input, " of layer ", layer.name,
                                                     " has shape ", graph::ShapeToString(shape),
                                                     ", expected last dimension ", layer.in));
    }
    *rows = input.num_elements() / layer.in;
    return std::vector<float>(x, x + input.num_elements());
  }
  if (shape.size() != 4 || shape[1] != layer.in_channels) {
    return absl::InvalidArgumentError(absl::StrCat("calibrate: input ", layer.input, " of layer ", layer.name,
                                                   " has shape ", graph::ShapeToString(shape), ", expected [N, ",
                                                   layer.in_channels, ", H, W]"));
  }
  const ConvGeometry& g = layer.conv;
  const int64_t n = shape[0], c = shape[1], h = shape[2], w = shape[3];
  const int64_t oh = (h + g.pad_top + g.pad_bottom - g.dilation_h * (g.kernel_h - 1) - 1) / g.stride_h + 1;
  const int64_t ow = (w + g.pad_left + g.pad_right - g.dilation_w * (g.kernel_w - 1) - 1) / g.stride_w + 1;
  *rows = n * oh * ow;
  std::vector<float> patches(static_cast<size_t>(*rows * layer.in), 0.0f);
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t y = 0; y < oh; ++y) {
      for (int64_t xo = 0; xo < ow; ++xo) {
        float* row = patches.data() + ((b * oh + y) * ow + xo) * layer.in;
        for (int64_t ch = 0; ch < c; ++ch) {
          const float* plane = x + (b * c + ch) * h * w;
          for (int64_t i = 0; i < g.kernel_h; ++i) {
            const int64_t iy = y * g.stride_h - g.pad_top + i * g.dilation_h;
            if (iy < 0 || iy >= h) continue;
            for (int64_t j = 0; j < g.kernel_w; ++j) {
              const int64_t ix = xo * g.stride_w - g.pad_left + j * g.dilation_w;
              if (ix < 0 || ix >= w) continue;
              row[(ch * g.kernel_h + i) * g.kernel_w + j] = plane[iy * w + ix];
            }
          }
        }
      }
    }
  }
  return patches;
}

}  // namespace squeeze::core::quant::ptq
