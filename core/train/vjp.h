// Internal to core/train: the vector-Jacobian products of the operators
// GradientProgram differentiates.
#ifndef SQUEEZE_CORE_TRAIN_VJP_H_
#define SQUEEZE_CORE_TRAIN_VJP_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"

namespace squeeze::core::train {

// One node's backward step. inputs/outputs are the forward values (null for
// omitted optional ones); output_gradients[i] is null when no gradient flows
// into output i; wanted[i] says whether input i needs a gradient.
struct VjpCall {
  const graph::Node& node;
  int64_t opset_version;
  std::vector<const graph::Tensor*> inputs;
  std::vector<const graph::Tensor*> outputs;
  std::vector<const graph::Tensor*> output_gradients;
  std::vector<bool> wanted;
};

// One gradient per input; nullopt for inputs not wanted or not differentiable.
using VjpResult = absl::StatusOr<std::vector<std::optional<graph::Tensor>>>;
using VjpFunction = std::function<VjpResult(const VjpCall&)>;

// Operator type -> its VJP.
const std::map<std::string, VjpFunction>& VjpRegistry();

}  // namespace squeeze::core::train

#endif  // SQUEEZE_CORE_TRAIN_VJP_H_
