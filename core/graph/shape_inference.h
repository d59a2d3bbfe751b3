// Shape and type inference over the graph IR (issue 3), without ONNX: graphs
// built by code (Hugging Face importers, reference-model trainers) and
// graphs rewritten by passes (structured pruning, low-rank factorization)
// get their intermediate types and shapes from here.
//
// Values are visited in topological order. Each node's output dtypes and
// shapes follow the operator's ONNX semantics at the graph's opset; symbolic
// dimensions ("batch", "seq") are carried through when an operator keeps
// them. Small integer tensors that describe shapes (initializers, Constant,
// Shape, and Gather/Concat/Slice/Unsqueeze/Squeeze/Cast/arithmetic over
// them) are propagated by value, so Reshape/Expand/ConstantOfShape outputs
// get shapes when their target shape is computed in the graph, as in
// exported transformers.
#ifndef SQUEEZE_CORE_GRAPH_SHAPE_INFERENCE_H_
#define SQUEEZE_CORE_GRAPH_SHAPE_INFERENCE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/graph/graph.h"

namespace squeeze::core::graph {

struct ShapeInferenceStats {
  int64_t values = 0;           // Node outputs visited.
  int64_t rank_known = 0;       // ... whose rank was inferred.
  int64_t fully_known = 0;      // ... whose every dimension has a value.
  // Operator types the inference has no rule for (their outputs stay
  // unknown, and so does whatever depends only on them).
  std::vector<std::string> unknown_ops;
};

// Infers every node output's dtype and shape from the graph inputs'
// declared shapes and the initializers, and replaces graph->value_infos
// with the result (values of unknown type are left out). Graph outputs
// whose declaration lacks a shape or dims get the inferred ones.
//
// INVALID_ARGUMENT naming the node, its operator and the dimensions when
// shapes contradict each other: a Gemm/MatMul inner dimension that differs,
// shapes that do not broadcast, a Reshape whose element count differs,
// a Concat whose other dimensions differ, a Conv whose weight does not fit
// the input channels, an axis out of range, a window larger than its padded
// input; also when an inferred output contradicts a graph output's
// declared dimension or dtype, and when the graph is not sortable.
absl::StatusOr<ShapeInferenceStats> InferShapes(Graph* graph);

// The shape of `value` as inferred (or declared) in `graph`: graph inputs,
// initializers, value_infos and outputs; nullopt when unknown.
std::optional<std::vector<Dim>> KnownShape(const Graph& graph,
                                           const std::string& value);

// "[batch, 128, 64]"; "?" for an unknown dimension.
std::string DimsToString(const std::vector<Dim>& dims);

}  // namespace squeeze::core::graph

#endif  // SQUEEZE_CORE_GRAPH_SHAPE_INFERENCE_H_
