// LoRA adapters: the graph rewrite, merging and PEFT export (lora.h).
#include "core/lora/lora.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <regex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace squeeze::core::lora {
namespace {

using graph::DataType;
using graph::Graph;
using graph::Node;
using graph::Tensor;

// The weight's name without a trailing ".weight", the stem of every name the
// adapter adds.
std::string Stem(const std::string& weight) {
  return absl::EndsWith(weight, ".weight") ? weight.substr(0, weight.size() - 7) : weight;
}

// The node computing `layer` (the one that takes its weight input).
Node* FindLayerNode(Graph* graph, const quant::ptq::QuantizableLayer& layer) {
  for (Node& node : graph->nodes) {
    if (node.op_type == layer.op_type && node.inputs.size() > 1 && node.inputs[1] == layer.weight_input) return &node;
  }
  return nullptr;
}

// Removes the adapter's nodes and initializers and gives the layer node its
// output back.
absl::Status RemoveAdapter(Graph* graph, const LoraAdapter& adapter) {
  const std::set<std::string> nodes(adapter.nodes.begin(), adapter.nodes.end());
  graph->nodes.erase(std::remove_if(graph->nodes.begin(), graph->nodes.end(),
                                    [&](const Node& node) { return nodes.count(node.name) > 0; }),
                     graph->nodes.end());
  for (const std::string& name : adapter.initializers) graph->initializers.erase(name);
  for (Node& node : graph->nodes) {
    for (std::string& out : node.outputs) {
      if (out == adapter.base_output) {
        out = adapter.output;
        return absl::OkStatus();
      }
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("lora: adapter of layer '", adapter.layer.name, "': no node produces '", adapter.base_output, "'"));
}

absl::StatusOr<const Tensor*> AdapterTensor(const Graph& graph, const LoraAdapter& adapter, const std::string& name,
                                            const std::vector<int64_t>& shape) {
  auto it = graph.initializers.find(name);
  if (it == graph.initializers.end() || it->second.dtype() != DataType::kFloat32 || it->second.shape() != shape) {
    return absl::InvalidArgumentError(absl::StrCat("lora: adapter of layer '", adapter.layer.name, "': '", name,
                                                   "' must be a float32 initializer of shape ",
                                                   graph::ShapeToString(shape)));
  }
  return &it->second;
}

}  // namespace

absl::StatusOr<LoraGraph> AddLoraAdapters(const Graph& graph, const LoraOptions& options) {
  if (!(options.alpha > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("lora: alpha must be > 0, got ", options.alpha));
  }
  std::regex pattern;
  try {
    pattern = std::regex(options.name_pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora: name_pattern '", options.name_pattern, "' is not a valid regular expression"));
  }
  SQ_ASSIGN_OR_RETURN(quant::ptq::LayerScan scan, quant::ptq::FindQuantizableLayers(graph));
  LoraGraph result{graph, {}, {}, 0};
  std::mt19937_64 rng(options.seed);
  for (const quant::ptq::QuantizableLayer& layer : scan.layers) {
    if (layer.op_type != "Gemm" && layer.op_type != "MatMul") continue;
    if (!options.name_pattern.empty() && !std::regex_search(layer.name, pattern) &&
        !std::regex_search(layer.weight, pattern)) {
      continue;
    }
    const int64_t r = options.rank;
    if (r < 1 || r > std::min(layer.in, layer.out)) {
      return absl::InvalidArgumentError(absl::StrCat("lora: rank ", r, " for layer '", layer.name, "' (weight [out ",
                                                     layer.out, ", in ", layer.in, "]) must be in [1, ",
                                                     std::min(layer.in, layer.out), "]"));
    }
    Node* node = FindLayerNode(&result.graph, layer);
    if (node == nullptr || node->outputs.empty()) {
      return absl::InternalError(absl::StrCat("lora: layer '", layer.name, "' has no node"));
    }
    const std::string stem = Stem(layer.weight);
    LoraAdapter adapter;
    adapter.layer = layer;
    adapter.rank = r;
    adapter.scale = options.alpha / static_cast<double>(r);
    adapter.a = stem + ".lora_A.weight";
    adapter.b = stem + ".lora_B.weight";
    adapter.scale_value = stem + ".lora_scale";
    adapter.output = node->outputs[0];
    adapter.base_output = adapter.output + ".lora_base";
    node->outputs[0] = adapter.base_output;
    for (const std::string& name : {adapter.a, adapter.b, adapter.scale_value}) {
      if (result.graph.initializers.count(name) > 0) {
        return absl::InvalidArgumentError(absl::StrCat("lora: layer '", layer.name, "' already has '", name, "'"));
      }
    }

    Tensor a(DataType::kFloat32, {r, layer.in});
    std::normal_distribution<float> normal(0.0f, static_cast<float>(1.0 / std::sqrt(static_cast<double>(layer.in))));
    for (int64_t i = 0; i < a.num_elements(); ++i) a.data<float>()[i] = normal(rng);
    result.graph.initializers[adapter.a] = std::move(a);
    result.graph.initializers[adapter.b] = Tensor(DataType::kFloat32, {layer.out, r});
    Tensor scale(DataType::kFloat32, {});
    scale.data<float>()[0] = static_cast<float>(adapter.scale);
    result.graph.initializers[adapter.scale_value] = std::move(scale);
    adapter.initializers = {adapter.a, adapter.b, adapter.scale_value};

    // h = x A', d = h B', y = base + scale * d.
    const std::vector<int64_t> swap = {1, 0};
    auto add_node = [&](const std::string& suffix, const std::string& op, std::vector<std::string> inputs,
                        std::map<std::string, graph::Attribute> attributes, const std::string& output) {
      Node n;
      n.name = absl::StrCat(stem, ".lora_", suffix);
      n.op_type = op;
      n.inputs = std::move(inputs);
      n.outputs = {output.empty() ? n.name + "_out" : output};
      n.attributes = std::move(attributes);
      adapter.nodes.push_back(n.name);
      result.graph.nodes.push_back(std::move(n));
      return result.graph.nodes.back().outputs[0];
    };
    const std::string a_t = add_node("A_t", "Transpose", {adapter.a}, {{"perm", swap}}, "");
    const std::string b_t = add_node("B_t", "Transpose", {adapter.b}, {{"perm", swap}}, "");
    const std::string h = add_node("down", "MatMul", {layer.input, a_t}, {}, "");
    const std::string d = add_node("up", "MatMul", {h, b_t}, {}, "");
    const std::string scaled = add_node("scaled", "Mul", {d, adapter.scale_value}, {}, "");
    add_node("add", "Add", {adapter.base_output, scaled}, {}, adapter.output);

    result.trainable.insert(adapter.a);
    result.trainable.insert(adapter.b);
    result.trainable_parameters += r * (layer.in + layer.out);
    result.adapters.push_back(std::move(adapter));
  }
  if (result.adapters.empty()) {
    return absl::NotFoundError(
        absl::StrCat("lora: name_pattern '", options.name_pattern, "' selects no Gemm/MatMul layer"));
  }
  SQ_RETURN_IF_ERROR(graph::SortTopologically(&result.graph));
  return result;
}

absl::StatusOr<Graph> StripLoraAdapters(const Graph& adapted, const std::vector<LoraAdapter>& adapters) {
  Graph graph = adapted;
  for (const LoraAdapter& adapter : adapters) SQ_RETURN_IF_ERROR(RemoveAdapter(&graph, adapter));
  SQ_RETURN_IF_ERROR(graph::SortTopologically(&graph));
  return graph;
}

absl::StatusOr<Graph> MergeLoraAdapters(const Graph& adapted, const std::vector<LoraAdapter>& adapters,
                                        const MergeOptions& options) {
  SQ_ASSIGN_OR_RETURN(Graph graph, StripLoraAdapters(adapted, adapters));
  for (const LoraAdapter& adapter : adapters) {
    const quant::ptq::QuantizableLayer& layer = adapter.layer;
    SQ_ASSIGN_OR_RETURN(const Tensor* a, AdapterTensor(adapted, adapter, adapter.a, {adapter.rank, layer.in}));
    SQ_ASSIGN_OR_RETURN(const Tensor* b, AdapterTensor(adapted, adapter, adapter.b, {layer.out, adapter.rank}));
    SQ_ASSIGN_OR_RETURN(const Tensor* s, AdapterTensor(adapted, adapter, adapter.scale_value, {}));
    if (graph.initializers.count(layer.weight) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("lora: layer '", layer.name, "': weight '", layer.weight, "' is missing"));
    }
    // A Gemm computes alpha * x W', so its stored W takes delta / alpha.
    double scale = s->data<float>()[0];
    if (Node* node = FindLayerNode(&graph, layer); node != nullptr && node->op_type == "Gemm") {
      scale /= node->FloatAttribute("alpha", 1.0f);
    }
    std::vector<float> w = quant::ptq::WeightMatrix(graph, layer);
    const float* pa = a->data<float>();
    const float* pb = b->data<float>();
    for (int64_t o = 0; o < layer.out; ++o) {
      for (int64_t i = 0; i < layer.in; ++i) {
        float& weight = w[o * layer.in + i];
        if (options.keep_zeros && weight == 0.0f) continue;
        double delta = 0;
        for (int64_t k = 0; k < adapter.rank; ++k) {
          delta += static_cast<double>(pb[o * adapter.rank + k]) * pa[k * layer.in + i];
        }
        weight += static_cast<float>(scale * delta);
      }
    }
    quant::ptq::SetWeightMatrix(&graph, layer, w);
  }
  return graph;
}

absl::StatusOr<model::SafetensorsFile> LoraAdaptersToSafetensors(const Graph& adapted,
                                                                 const std::vector<LoraAdapter>& adapters,
                                                                 double alpha) {
  model::SafetensorsFile file;
  std::vector<std::string> modules;
  int64_t rank = 0;
  for (const LoraAdapter& adapter : adapters) {
    const quant::ptq::QuantizableLayer& layer = adapter.layer;
    SQ_ASSIGN_OR_RETURN(const Tensor* a, AdapterTensor(adapted, adapter, adapter.a, {adapter.rank, layer.in}));
    SQ_ASSIGN_OR_RETURN(const Tensor* b, AdapterTensor(adapted, adapter, adapter.b, {layer.out, adapter.rank}));
    const std::string stem = absl::StrCat("base_model.model.", Stem(layer.weight));
    SQ_ASSIGN_OR_RETURN(file.tensors[stem + ".lora_A.weight"], graph::ToModelTensor(*a));
    SQ_ASSIGN_OR_RETURN(file.tensors[stem + ".lora_B.weight"], graph::ToModelTensor(*b));
    modules.push_back(Stem(layer.weight));
    rank = adapter.rank;
  }
  file.metadata["format"] = "pt";
  file.metadata["r"] = absl::StrCat(rank);
  file.metadata["lora_alpha"] = absl::StrCat(alpha);
  file.metadata["target_modules"] = absl::StrJoin(modules, ",");
  return file;
}

}  // namespace squeeze::core::lora
