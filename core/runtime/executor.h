// Runs a Graph on a KernelBackend, node by node in topological order,
// releasing each intermediate after its last use. Nodes computed from
// initializers alone (that no feed overrides) run once, in Create, and their
// outputs are kept as constants. A node followed by an activation and/or a
// MaxPool that the backend fuses (KernelBackend::FusesActivation,
// FusesMaxPool), each intermediate having no other use and not being a graph
// output, runs as one call.
#ifndef SQUEEZE_CORE_RUNTIME_EXECUTOR_H_
#define SQUEEZE_CORE_RUNTIME_EXECUTOR_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"
#include "core/runtime/kernel_backend.h"

namespace squeeze::core::runtime {

class Executor {
 public:
  // Sorts `graph` topologically and checks that `backend` supports every
  // node: INVALID_ARGUMENT naming the operator type and the node otherwise
  // (and for a non-default domain). Shares ownership of the backend.
  static absl::StatusOr<Executor> Create(
      graph::Graph graph, std::shared_ptr<const KernelBackend> backend);

  // Runs the graph on `feeds` (one tensor per graph input that is not also
  // an initializer; a feed for an initializer overrides it) and returns the
  // graph outputs in declaration order. INVALID_ARGUMENT naming the input
  // when one is missing or its dtype or rank differs from the declaration;
  // kernel errors come back prefixed with the node name and operator type;
  // RESOURCE_EXHAUSTED when a node's outputs cannot be allocated.
  // Const and thread-safe: one Executor may serve concurrent batches.
  absl::StatusOr<std::vector<graph::Tensor>> Run(
      const std::map<std::string, graph::Tensor>& feeds) const;

  const graph::Graph& graph() const { return graph_; }

 private:
  // How node i runs: `activation` is fused into it (then its results are
  // named by node `outputs_of`'s outputs), or it is `skipped` because it was
  // folded into a constant or fused into an earlier node.
  struct Step {
    std::string activation;
    int64_t pool = -1;  // index of the MaxPool node fused after it, or -1
    size_t outputs_of = 0;
    bool skipped = false;
  };

  Executor(graph::Graph graph, std::shared_ptr<const KernelBackend> backend,
           std::vector<std::vector<std::string>> release_after, std::vector<Step> steps,
           std::map<std::string, graph::Tensor> constants)
      : graph_(std::move(graph)),
        backend_(std::move(backend)),
        release_after_(std::move(release_after)),
        steps_(std::move(steps)),
        constants_(std::move(constants)) {}

  graph::Graph graph_;
  std::shared_ptr<const KernelBackend> backend_;
  // release_after_[i]: intermediates whose last consumer is node i.
  std::vector<std::vector<std::string>> release_after_;
  std::vector<Step> steps_;  // one per node
  // Outputs of the folded nodes.
  std::map<std::string, graph::Tensor> constants_;
};

}  // namespace squeeze::core::runtime

#endif  // SQUEEZE_CORE_RUNTIME_EXECUTOR_H_
