// Reverse-mode differentiation of a graph::Graph, for training.
//
// A GradientProgram runs the graph forward on a KernelBackend keeping every
// intermediate value (the tape), then walks the nodes in reverse and applies
// each operator's vector-Jacobian product to turn gradients of the outputs
// into gradients of the trainable initializers. Only float32 values carry
// gradients. The operators it can differentiate are listed by
// DifferentiableOperators(); the others may appear where no gradient flows
// through them (shape arithmetic, constants, masks).
//
// Parameters are the graph's float32 initializers (all of them, or the set
// given to Create). They live in the program's graph and are updated in
// place by an optimizer through mutable_parameters().
#ifndef SQUEEZE_CORE_TRAIN_AUTOGRAD_H_
#define SQUEEZE_CORE_TRAIN_AUTOGRAD_H_

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"
#include "core/runtime/kernel_backend.h"

namespace squeeze::core::train {

using graph::Tensor;
using TensorMap = std::map<std::string, Tensor>;

// Every value of one forward run, by name (inputs, initializers, outputs).
struct Tape {
  TensorMap values;
};

class GradientProgram {
 public:
  // Sorts `graph` and checks, for every node that a gradient flows through,
  // that its operator is differentiable (INVALID_ARGUMENT naming the node
  // otherwise). `trainable`: the initializers to differentiate; empty means
  // every float32 initializer except BatchNormalization running statistics.
  // NOT_FOUND for a name that is no initializer.
  static absl::StatusOr<GradientProgram> Create(graph::Graph graph,
                                                std::shared_ptr<const runtime::KernelBackend> backend,
                                                std::set<std::string> trainable = {});

  // Runs the graph on `feeds` and records every value.
  absl::StatusOr<Tape> Forward(const TensorMap& feeds) const;

  // The graph output `name` from a tape. NOT_FOUND when absent.
  absl::StatusOr<const Tensor*> Output(const Tape& tape, const std::string& name) const;

  // Gradients of a scalar loss with respect to every trainable initializer,
  // given the loss's gradients with respect to some graph outputs (same
  // shapes as those outputs). Initializers that the loss does not depend on
  // get zeros.
  absl::StatusOr<TensorMap> Backward(const Tape& tape, const TensorMap& output_gradients) const;

  const std::set<std::string>& trainable() const { return trainable_; }
  const graph::Graph& graph() const { return graph_; }
  // The trainable initializers, to update in place.
  TensorMap& mutable_parameters() { return graph_.initializers; }

 private:
  GradientProgram(graph::Graph graph, std::shared_ptr<const runtime::KernelBackend> backend,
                  std::set<std::string> trainable, std::set<std::string> needs_gradient)
      : graph_(std::move(graph)), backend_(std::move(backend)),
        trainable_(std::move(trainable)), needs_gradient_(std::move(needs_gradient)) {}

  graph::Graph graph_;
  std::shared_ptr<const runtime::KernelBackend> backend_;
  std::set<std::string> trainable_;
  // Values that depend on a trainable initializer: only these get gradients.
  std::set<std::string> needs_gradient_;
};

// The ONNX operator types whose gradients GradientProgram computes, sorted.
std::vector<std::string> DifferentiableOperators();

}  // namespace squeeze::core::train

#endif  // SQUEEZE_CORE_TRAIN_AUTOGRAD_H_
