#include "core/graph/passes.h"

#include <cmath>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace squeeze::core::graph {
namespace {

// How many nodes read each value, plus one for each graph output.
std::map<std::string, int> CountUses(const Graph& graph) {
  std::map<std::string, int> uses;
  for (const Node& node : graph.nodes) {
    for (const std::string& input : node.inputs) {
      if (!input.empty()) ++uses[input];
    }
  }
  for (const ValueInfo& output : graph.outputs) ++uses[output.name];
  return uses;
}

const Tensor* FloatInitializer(const Graph& graph, const std::string& name) {
  auto it = graph.initializers.find(name);
  if (it == graph.initializers.end() || it->second.dtype() != DataType::kFloat32) {
    return nullptr;
  }
  return &it->second;
}

}  // namespace

absl::Status FoldConstants(Graph* graph, const runtime::KernelBackend& backend) {
  SQ_RETURN_IF_ERROR(SortTopologically(graph));
  std::set<std::string> graph_inputs;
  for (const ValueInfo& input : graph->inputs) graph_inputs.insert(input.name);
  std::map<std::string, Tensor> initializers = graph->initializers;
  std::vector<Node> kept;
  for (const Node& node : graph->nodes) {
    bool constant = backend.Supports(node.op_type) && node.domain.empty();
    std::vector<const Tensor*> inputs;
    for (const std::string& input : node.inputs) {
      if (input.empty()) {
        inputs.push_back(nullptr);
        continue;
      }
      auto it = initializers.find(input);
      // A graph input that shadows an initializer can be fed at run time.
      constant = constant && it != initializers.end() && !graph_inputs.count(input);
      inputs.push_back(constant ? &it->second : nullptr);
    }
    if (!constant) {
      kept.push_back(node);
      continue;
    }
    absl::StatusOr<std::vector<Tensor>> outputs =
        backend.Run(runtime::KernelCall{node, graph->opset_version, inputs});
    if (!outputs.ok()) {
      return absl::Status(outputs.status().code(),
                          absl::StrCat("constant folding node '", node.name, "' (",
                                       node.op_type, "): ", outputs.status().message()));
    }
    for (size_t i = 0; i < node.outputs.size() && i < outputs->size(); ++i) {
      if (!node.outputs[i].empty()) {
        initializers.insert_or_assign(node.outputs[i], std::move((*outputs)[i]));
      }
    }
  }
  // Keep only the initializers something still reads.
  std::map<std::string, int> uses;
  for (const Node& node : kept) {
    for (const std::string& input : node.inputs) ++uses[input];
  }
  for (const ValueInfo& value : graph->outputs) ++uses[value.name];
  for (const ValueInfo& value : graph->inputs) ++uses[value.name];
  graph->initializers.clear();
  for (auto& [name, tensor] : initializers) {
    if (uses.count(name)) graph->initializers.emplace(name, std::move(tensor));
  }
  graph->nodes = std::move(kept);
  return absl::OkStatus();
}

absl::StatusOr<int> FoldBatchNormalization(Graph* graph) {
  SQ_RETURN_IF_ERROR(SortTopologically(graph));
  std::map<std::string, int> uses = CountUses(*graph);
  std::map<std::string, size_t> producer;
  for (size_t i = 0; i < graph->nodes.size(); ++i) {
    for (const std::string& output : graph->nodes[i].outputs) producer[output] = i;
  }
  std::set<size_t> removed;
  std::set<std::string> maybe_unused;  // the removed nodes' parameters
  for (size_t b = 0; b < graph->nodes.size(); ++b) {
    const Node& bn = graph->nodes[b];
    if (bn.op_type != "BatchNormalization" || bn.IntAttribute("training_mode", 0) != 0 ||
        bn.inputs.size() != 5 || bn.outputs.empty()) {
      continue;
    }
    bool extra_outputs = false;
    for (size_t k = 1; k < bn.outputs.size(); ++k) extra_outputs |= !bn.outputs[k].empty();
    auto source = producer.find(bn.inputs[0]);
    if (extra_outputs || source == producer.end() || uses[bn.inputs[0]] != 1) continue;
    Node& layer = graph->nodes[source->second];
    const bool is_conv = layer.op_type == "Conv";
    if ((!is_conv && layer.op_type != "Gemm") || layer.inputs.size() < 2) continue;
    const Tensor* weight = FloatInitializer(*graph, layer.inputs[1]);
    std::vector<const Tensor*> params;
    for (size_t k = 1; k <= 4; ++k) params.push_back(FloatInitializer(*graph, bn.inputs[k]));
    if (weight == nullptr || uses[layer.inputs[1]] != 1 ||
        std::find(params.begin(), params.end(), nullptr) != params.end()) {
      continue;
    }
    const bool trans_b = layer.IntAttribute("transB", 0) != 0;
    const int64_t channels = is_conv ? weight->shape()[0]
                                     : weight->shape()[trans_b ? 0 : 1];
    bool shapes_ok = weight->rank() >= 2;
    for (const Tensor* param : params) shapes_ok &= param->num_elements() == channels;
    const Tensor* old_bias = nullptr;
    if (layer.inputs.size() > 2 && !layer.inputs[2].empty()) {
      old_bias = FloatInitializer(*graph, layer.inputs[2]);
      shapes_ok &= old_bias != nullptr && uses[layer.inputs[2]] == 1 &&
                   (old_bias->num_elements() == channels || old_bias->num_elements() == 1);
    }
    if (!shapes_ok) continue;
    // BN(y) = y * s + (bias - mean * s) with s = scale / sqrt(var + eps).
    const float epsilon = bn.FloatAttribute("epsilon", 1e-5f);
    const float* scale = params[0]->data<float>();
    const float* shift = params[1]->data<float>();
    const float* mean = params[2]->data<float>();
    const float* var = params[3]->data<float>();
    std::vector<float> s(channels);
    for (int64_t c = 0; c < channels; ++c) s[c] = scale[c] / std::sqrt(var[c] + epsilon);
    Tensor new_weight = *weight;
    float* w = new_weight.data<float>();
    if (is_conv || trans_b) {  // channel is the leading dim
      const int64_t per_channel = weight->num_elements() / channels;
      for (int64_t i = 0; i < weight->num_elements(); ++i) w[i] *= s[i / per_channel];
    } else {  // Gemm with B = [K, N]: channel is the column
      for (int64_t i = 0; i < weight->num_elements(); ++i) w[i] *= s[i % channels];
    }
    const float alpha_beta = is_conv ? 1.0f : layer.FloatAttribute("beta", 1.0f);
    std::vector<float> bias(channels);
    for (int64_t c = 0; c < channels; ++c) {
      const float b0 = old_bias == nullptr ? 0.0f
                                           : old_bias->data<float>()[old_bias->num_elements() == 1 ? 0 : c];
      bias[c] = (alpha_beta * b0 - mean[c]) * s[c] + shift[c];
    }
    const std::string bias_name = absl::StrCat(bn.name, "_folded_bias");
    graph->initializers[layer.inputs[1]] = std::move(new_weight);
    graph->initializers[bias_name] =
        Tensor::FromVector(DataType::kFloat32, {channels}, bias);
    if (old_bias != nullptr) graph->initializers.erase(layer.inputs[2]);
    layer.inputs.resize(3);
    layer.inputs[2] = bias_name;
    if (!is_conv) layer.attributes["beta"] = 1.0f;
    layer.outputs[0] = bn.outputs[0];
    maybe_unused.insert(bn.inputs.begin() + 1, bn.inputs.end());
    removed.insert(b);
  }
  std::vector<Node> kept;
  for (size_t i = 0; i < graph->nodes.size(); ++i) {
    if (!removed.count(i)) kept.push_back(std::move(graph->nodes[i]));
  }
  graph->nodes = std::move(kept);
  uses = CountUses(*graph);
  for (const ValueInfo& input : graph->inputs) ++uses[input.name];
  for (const std::string& name : maybe_unused) {
    if (!uses.count(name)) graph->initializers.erase(name);
  }
  return static_cast<int>(removed.size());
}

}  // namespace squeeze::core::graph
