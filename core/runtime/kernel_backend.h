// The one kernel interface. The executor hands each node to a backend; the
// CPU backend (core/kernels/cpu) implements it today and a CUDA backend is
// meant to implement the same signatures.
#ifndef SQUEEZE_CORE_RUNTIME_KERNEL_BACKEND_H_
#define SQUEEZE_CORE_RUNTIME_KERNEL_BACKEND_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/graph/graph.h"
#include "core/graph/tensor.h"

namespace squeeze::core::runtime {

// What a kernel sees of one node execution. `inputs[i]` is null for an
// omitted optional input; the pointers are valid for the call only.
struct KernelCall {
  const graph::Node& node;
  int64_t opset_version;
  std::vector<const graph::Tensor*> inputs;
  // Empty, or an elementwise activation ("Relu") that the executor fused
  // into this node: the kernel returns activation(result) as its single
  // output. Set only when the backend's FusesActivation(node, ...) is true.
  absl::string_view fused_activation = {};
  // Null, or a MaxPool node (one output) that the executor fused after this
  // node (and its fused_activation): the kernel returns the pooled result.
  // Set only when the backend's FusesMaxPool(node, *fused_pool) is true.
  const graph::Node* fused_pool = nullptr;

  // Number of inputs the node names, omitted ones included.
  size_t num_inputs() const { return inputs.size(); }
  // Input i, or null when it is omitted or beyond the node's inputs.
  const graph::Tensor* input(size_t i) const {
    return i < inputs.size() ? inputs[i] : nullptr;
  }
};

class KernelBackend {
 public:
  virtual ~KernelBackend() = default;

  // "cpu", "cuda", ...
  virtual std::string name() const = 0;

  // Whether Run accepts nodes of this ONNX operator type (default domain).
  virtual bool Supports(absl::string_view op_type) const = 0;

  // Executes one node and returns one tensor per node output (omitted
  // trailing outputs may be left out). INVALID_ARGUMENT naming the node when
  // its inputs or attributes are invalid for the operator; UNIMPLEMENTED
  // when an attribute value or dtype the operator allows is not supported.
  // Thread-safe: the executor may call it concurrently.
  virtual absl::StatusOr<std::vector<graph::Tensor>> Run(
      const KernelCall& call) const = 0;

  // Whether Run applies `activation` (an ONNX operator type of one input and
  // one output, e.g. "Relu") to the single output of `node` when a call
  // names it in fused_activation. The executor then runs a node followed by
  // that activation, whose input has no other use, as one call. Backends
  // that wrap another must forward this only if they pass such calls on.
  virtual bool FusesActivation(const graph::Node& node,
                               absl::string_view activation) const {
    return false;
  }

  // Whether Run applies MaxPool node `pool` to the single output of `node`
  // (after its fused activation, if any) when a call names it in
  // fused_pool; the same contract as FusesActivation otherwise.
  virtual bool FusesMaxPool(const graph::Node& node, const graph::Node& pool) const {
    return false;
  }
};

}  // namespace squeeze::core::runtime

#endif  // SQUEEZE_CORE_RUNTIME_KERNEL_BACKEND_H_
