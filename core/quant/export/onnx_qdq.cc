#include "core/quant/export/onnx_qdq.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/model/linear_chain.h"
#include "core/quant/packed_formats.h"
#include "core/status_macros.h"

namespace squeeze::core::quant_export {
namespace {

using graph::DataType;
using graph::Tensor;

absl::StatusOr<WeightView> ViewOf(const graph::Node& node, const Tensor& weight) {
  const std::vector<int64_t>& shape = weight.shape();
  WeightView view{shape, 0, 0, false};
  if (node.op_type == "Conv") {
    if (weight.rank() < 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          "qdq: Conv weight of node ", node.name, " has rank ", weight.rank()));
    }
    view.out = shape[0];
    view.in = weight.num_elements() / std::max<int64_t>(shape[0], 1);
    return view;
  }
  if (weight.rank() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "qdq: ", node.op_type, " weight of node ", node.name, " has rank ",
        weight.rank(), ", want 2"));
  }
  if (node.op_type == "Gemm" && node.IntAttribute("transA", 0) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("qdq: Gemm node ", node.name, " has transA=1"));
  }
  view.transposed = !(node.op_type == "Gemm" && node.IntAttribute("transB", 0) != 0);
  view.out = view.transposed ? shape[1] : shape[0];
  view.in = view.transposed ? shape[0] : shape[1];
  return view;
}

// The q values of row r of `q`, in [-8, 7] / [-127, 127] (symmetric) or
// [0, 15] / [0, 255] (asymmetric), as stored in the 8-bit container.
void UnpackRow(const quant::QuantizedLinear& q, int64_t r, std::vector<int>* values) {
  const int64_t row_bytes = quant::PackedRowBytes(q.bits, q.in);
  const auto* row = reinterpret_cast<const uint8_t*>(q.packed.data() + r * row_bytes);
  values->resize(static_cast<size_t>(q.in));
  for (int64_t c = 0; c < q.in; ++c) {
    int value;
    if (q.bits == 8) {
      value = q.asymmetric ? row[c] : static_cast<int8_t>(row[c]);
    } else {
      const quant::PackedInt4Pair pair{row[c / 2]};
      value = c % 2 == 0 ? pair.Low() : pair.High();
      if (!q.asymmetric) value -= quant::kInt4SymmetricOffset;
    }
    (*values)[c] = value;
  }
}

absl::Status CheckLayer(const std::string& name, const WeightView& view,
                        const quant::QuantizedLinear& q) {
  if (q.out != view.out || q.in != view.in) {
    return absl::InvalidArgumentError(absl::StrCat(
        "qdq: quantized weight ", name, " is [", q.out, ", ", q.in, "], its initializer ",
        graph::ShapeToString(view.shape), " is [", view.out, ", ", view.in,
        "] as out x in"));
  }
  // DequantizeRtn checks packed/scales/zero_points sizes and bits.
  std::vector<float> scratch(static_cast<size_t>(q.out * q.in));
  absl::Status status = quant::DequantizeRtn(q, scratch.data());
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("qdq: weight ", name, ": ", status.message()));
  }
  return absl::OkStatus();
}

void AddWeightQdq(const std::string& name, const WeightView& view,
                  const quant::QuantizedLinear& q, graph::Graph* g) {
  const DataType container = q.asymmetric ? DataType::kUInt8 : DataType::kInt8;
  const int64_t groups = q.Groups();
  const bool grouped = q.group_size != 0 && groups > 1;
  const int64_t width = q.in / groups;
  // Quantized values in [out, in] order, or [in, out] for a per-channel
  // transposed weight (stored in the consumer's layout, axis 1).
  std::vector<double> values(static_cast<size_t>(q.out * q.in));
  std::vector<int> row;
  for (int64_t r = 0; r < q.out; ++r) {
    UnpackRow(q, r, &row);
    for (int64_t c = 0; c < q.in; ++c) {
      const size_t at = static_cast<size_t>(
          view.transposed && !grouped ? c * q.out + r : r * q.in + c);
      values[at] = row[c];
    }
  }
  std::vector<double> zeros(q.scales.size(), 0.0);
  if (q.asymmetric) {
    for (size_t i = 0; i < zeros.size(); ++i) zeros[i] = q.zero_points[i];
  }
  const int64_t n_scales = static_cast<int64_t>(q.scales.size());
  std::vector<int64_t> stored_shape = view.shape;
  int64_t axis = 0;
  if (grouped) {
    stored_shape = {q.out * groups, width};
  } else if (view.transposed) {
    axis = 1;
  }
  const std::string quantized = name + ".quantized", scale = name + ".scale",
                    zero_point = name + ".zero_point";
  g->initializers.erase(name);
  g->initializers[quantized] = graph::TensorFromDoubles(container, stored_shape, values);
  g->initializers[scale] = Tensor::FromVector<float>(DataType::kFloat32, {n_scales}, q.scales);
  g->initializers[zero_point] = graph::TensorFromDoubles(container, {n_scales}, zeros);
  const std::string dequantized = grouped ? name + ".dequantized" : name;
  g->nodes.push_back({name + ".dequantize", "DequantizeLinear", "", {quantized, scale, zero_point},
                      {dequantized}, {{"axis", axis}}});
  if (!grouped) return;
  const std::vector<int64_t> out_in = view.transposed ? std::vector<int64_t>{q.out, q.in}
                                                      : view.shape;
  const std::string shape_name = name + ".shape";
  g->initializers[shape_name] = Tensor::FromVector<int64_t>(
      DataType::kInt64, {static_cast<int64_t>(out_in.size())}, out_in);
  const std::string reshaped = view.transposed ? name + ".out_in" : name;
  g->nodes.push_back({name + ".reshape", "Reshape", "", {dequantized, shape_name}, {reshaped}, {}});
  if (view.transposed) {
    g->nodes.push_back({name + ".transpose", "Transpose", "", {reshaped}, {name},
                        {{"perm", std::vector<int64_t>{1, 0}}}});
  }
}

absl::Status AddActivationQdq(const std::string& value, const ActivationRange& range,
                              bool signed_activations, graph::Graph* g) {
  if (!std::isfinite(range.min) || !std::isfinite(range.max) || range.min > range.max) {
    return absl::InvalidArgumentError(absl::StrCat(
        "qdq: activation range of ", value, " is [", range.min, ", ", range.max,
        "], want finite min <= max"));
  }
  const double lo = std::min<double>(range.min, 0), hi = std::max<double>(range.max, 0);
  float scale;
  double zero = 0;
  if (signed_activations) {
    scale = static_cast<float>(std::max(-lo, hi) / 127.0);
  } else {
    scale = static_cast<float>((hi - lo) / 255.0);
  }
  // An all-zero activation: any positive scale represents it exactly.
  if (!(scale > 0)) scale = 1;
  if (!signed_activations) zero = std::clamp(std::round(-lo / scale), 0.0, 255.0);
  const DataType container = signed_activations ? DataType::kInt8 : DataType::kUInt8;
  const std::string scale_name = value + ".act_scale", zero_name = value + ".act_zero_point";
  g->initializers[scale_name] = Tensor::FromVector<float>(DataType::kFloat32, {}, {scale});
  g->initializers[zero_name] = graph::TensorFromDoubles(container, {}, {zero});
  g->nodes.push_back({value + ".quantize", "QuantizeLinear", "",
                      {value, scale_name, zero_name}, {value + ".act_quantized"}, {}});
  g->nodes.push_back({value + ".act_dequantize", "DequantizeLinear", "",
                      {value + ".act_quantized", scale_name, zero_name},
                      {value + ".act_dequantized"}, {}});
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::map<std::string, WeightView>> FindQuantizableWeights(
    const graph::Graph& graph) {
  std::map<std::string, WeightView> views;
  // MatMul(x, Transpose(W [out, in])), the form core/hf writes for
  // torch.nn.Linear: W is stored [out, in], as Gemm's transB = 1 is.
  std::map<std::string, std::string> transposed_initializer;  // Transpose output -> W
  for (const graph::Node& node : graph.nodes) {
    if (node.op_type != "Transpose" || node.inputs.size() != 1 || node.outputs.size() != 1) continue;
    const auto it = graph.initializers.find(node.inputs[0]);
    const std::vector<int64_t> perm = node.IntsAttribute("perm");
    if (it != graph.initializers.end() && it->second.rank() == 2 &&
        (perm.empty() || perm == std::vector<int64_t>{1, 0})) {
      transposed_initializer[node.outputs[0]] = node.inputs[0];
    }
  }
  for (const graph::Node& node : graph.nodes) {
    if (node.op_type != "Conv" && node.op_type != "Gemm" && node.op_type != "MatMul") continue;
    if (node.inputs.size() < 2) continue;
    if (node.op_type == "MatMul" && transposed_initializer.count(node.inputs[1]) > 0) {
      const std::string& name = transposed_initializer.at(node.inputs[1]);
      const Tensor& weight = graph.initializers.at(name);
      if (weight.dtype() != DataType::kFloat32) continue;
      WeightView view{weight.shape(), weight.shape()[0], weight.shape()[1], false};
      views.emplace(name, view);
      continue;
    }
    const auto it = graph.initializers.find(node.inputs[1]);
    if (it == graph.initializers.end() || it->second.dtype() != DataType::kFloat32) continue;
    SQ_ASSIGN_OR_RETURN(WeightView view, ViewOf(node, it->second));
    const auto [existing, inserted] = views.emplace(it->first, view);
    if (!inserted && (existing->second.transposed != view.transposed ||
                      existing->second.out != view.out)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "qdq: weight ", it->first, " is used with different layouts (node ", node.name, ")"));
    }
  }
  return views;
}

absl::StatusOr<std::map<std::string, quant::QuantizedLinear>> QuantizeGraphWeights(
    const graph::Graph& graph, const quant::RtnOptions& options) {
  SQ_ASSIGN_OR_RETURN(auto views, FindQuantizableWeights(graph));
  std::map<std::string, quant::QuantizedLinear> out;
  for (const auto& [name, view] : views) {
    if (options.group_size != 0 && view.in % options.group_size != 0) continue;
    model::LinearLayer layer{name, view.in, view.out, {}, {}};
    const std::vector<float> w = graph.initializers.at(name).ToFloats();
    if (view.transposed) {
      layer.weight.resize(w.size());
      for (int64_t k = 0; k < view.in; ++k) {
        for (int64_t n = 0; n < view.out; ++n) layer.weight[n * view.in + k] = w[k * view.out + n];
      }
    } else {
      layer.weight = w;
    }
    SQ_ASSIGN_OR_RETURN(out[name], quant::QuantizeRtn(layer, options));
  }
  return out;
}

absl::StatusOr<graph::Graph> ExportQdqGraph(
    const graph::Graph& graph, const std::map<std::string, quant::QuantizedLinear>& weights,
    const QdqOptions& options) {
  SQ_ASSIGN_OR_RETURN(auto views, FindQuantizableWeights(graph));
  graph::Graph out = graph;
  out.opset_version = std::max<int64_t>(out.opset_version, 13);
  for (const auto& [name, q] : weights) {
    const auto view = views.find(name);
    if (view == views.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("qdq: ", name, " is not a quantizable weight of graph ", graph.name));
    }
    SQ_RETURN_IF_ERROR(CheckLayer(name, view->second, q));
    // An initializer listed as a graph input (older exporters) becomes a
    // node output.
    std::erase_if(out.inputs, [&](const graph::ValueInfo& v) { return v.name == name; });
    AddWeightQdq(name, view->second, q, &out);
  }
  std::set<std::string> data_inputs;
  for (const graph::Node& node : graph.nodes) {
    if ((node.op_type == "Conv" || node.op_type == "Gemm" || node.op_type == "MatMul") &&
        node.inputs.size() >= 2 && weights.count(node.inputs[1])) {
      data_inputs.insert(node.inputs[0]);
    }
  }
  for (const auto& [value, range] : options.activation_ranges) {
    if (!data_inputs.count(value)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "qdq: activation ", value, " is the data input of no quantized node"));
    }
    SQ_RETURN_IF_ERROR(AddActivationQdq(value, range, options.signed_activations, &out));
    for (graph::Node& node : out.nodes) {
      if ((node.op_type == "Conv" || node.op_type == "Gemm" || node.op_type == "MatMul") &&
          node.inputs.size() >= 2 && weights.count(node.inputs[1]) && node.inputs[0] == value) {
        node.inputs[0] = value + ".act_dequantized";
      }
    }
  }
  SQ_RETURN_IF_ERROR(graph::SortTopologically(&out));
  return out;
}

}  // namespace squeeze::core::quant_export
