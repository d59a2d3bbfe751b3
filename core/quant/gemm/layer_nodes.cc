#include "core/quant/gemm/layer_nodes.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace squeeze::core::quant::gemm::internal {

graph::Node* FindLayerNode(graph::Graph* graph, const ptq::QuantizableLayer& layer) {
  graph::Node* node = nullptr;
  for (graph::Node& candidate : graph->nodes) {
    if (candidate.op_type == layer.op_type && candidate.inputs.size() >= 2 && candidate.inputs[0] == layer.input &&
        candidate.inputs[1] == layer.weight_input) {
      node = &candidate;
    }
  }
  return node;
}

std::string UnsupportedLayerForm(const graph::Graph& graph, const ptq::QuantizableLayer& layer,
                                 const graph::Node& node) {
  if (layer.op_type == "Gemm" && (node.IntAttribute("transA", 0) != 0 || node.FloatAttribute("alpha", 1) != 1 ||
                                  (node.inputs.size() > 2 && node.FloatAttribute("beta", 1) != 1))) {
    return "Gemm with transA, alpha or beta";
  }
  if (layer.op_type != "MatMul" && !layer.bias.empty() &&
      graph.initializers.at(layer.bias).num_elements() != layer.out) {
    return absl::StrCat(layer.op_type, " bias is not [out]");
  }
  return "";
}

void EraseProducer(graph::Graph* graph, const std::string& value) {
  graph->nodes.erase(std::remove_if(graph->nodes.begin(), graph->nodes.end(),
                                    [&](const graph::Node& node) {
                                      return node.outputs.size() == 1 && node.outputs[0] == value;
                                    }),
                     graph->nodes.end());
}

}  // namespace squeeze::core::quant::gemm::internal
