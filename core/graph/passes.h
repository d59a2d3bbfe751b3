// Graph-to-graph rewrites. Each pass keeps the graph's outputs numerically
// the same (BatchNorm folding up to float rounding) and leaves it sorted.
#ifndef SQUEEZE_CORE_GRAPH_PASSES_H_
#define SQUEEZE_CORE_GRAPH_PASSES_H_

#include "absl/status/status.h"
#include "core/graph/graph.h"
#include "core/runtime/kernel_backend.h"

namespace squeeze::core::graph {

// Evaluates every node whose inputs are all initializers (Constant nodes
// included) on `backend` and replaces it by initializers holding its
// outputs. Returns the backend's error, prefixed with the node, when a
// constant node fails to evaluate; the graph is unchanged then.
absl::Status FoldConstants(Graph* graph, const runtime::KernelBackend& backend);

// Folds each inference-mode BatchNormalization whose input is produced by a
// Conv or Gemm (float32 initializer weights, output used by nothing else)
// into that node's weights and bias, and removes it. Patterns that do not
// match are left alone; returns the number of BatchNormalization nodes
// removed.
absl::StatusOr<int> FoldBatchNormalization(Graph* graph);

}  // namespace squeeze::core::graph

#endif  // SQUEEZE_CORE_GRAPH_PASSES_H_
