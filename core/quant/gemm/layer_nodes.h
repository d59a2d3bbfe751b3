// Internal to core/quant/gemm's runtime passes (qdq_runtime.h,
// weight_only_runtime.h): finding the node of a quantizable layer, checking
// that a runtime-only node can take its place, and removing a producer left
// without consumers.
#ifndef SQUEEZE_CORE_QUANT_GEMM_LAYER_NODES_H_
#define SQUEEZE_CORE_QUANT_GEMM_LAYER_NODES_H_

#include <string>

#include "core/graph/graph.h"
#include "core/quant/ptq/layers.h"

namespace squeeze::core::quant::gemm::internal {

// The node of `layer` (its op type, reading layer.input and
// layer.weight_input; the last one when several do), or null.
graph::Node* FindLayerNode(graph::Graph* graph, const ptq::QuantizableLayer& layer);

// Why a node computing X * W^T + B cannot replace `node` ("" when it can):
// a Gemm with transA, alpha or beta, or a Gemm/Conv bias that is not [out].
std::string UnsupportedLayerForm(const graph::Graph& graph, const ptq::QuantizableLayer& layer,
                                 const graph::Node& node);

// Erases the node whose single output is `value`.
void EraseProducer(graph::Graph* graph, const std::string& value);

}  // namespace squeeze::core::quant::gemm::internal

#endif  // SQUEEZE_CORE_QUANT_GEMM_LAYER_NODES_H_
