#include "core/runtime/executor.h"

#include <map>
#include <new>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace squeeze::core::runtime {
namespace {

// Operators whose outputs are not a function of their inputs.
bool IsRandom(const std::string& op_type) {
  static const std::set<std::string>* const kRandom = new std::set<std::string>{
      "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
      "Multinomial",  "Bernoulli",        "Dropout"};
  return kRandom->count(op_type) > 0;
}

// Runs `call` on `backend`, turning allocation failures into errors.
absl::StatusOr<std::vector<graph::Tensor>> RunCall(const KernelBackend& backend,
                                                   const KernelCall& call) {
  try {
    return backend.Run(call);
  } catch (const std::bad_alloc&) {
    // Absurd shapes (ConstantOfShape, Expand, Resize sizes) can ask for
    // more memory than exists: an error for the caller, not a crash.
    return absl::ResourceExhaustedError("out of memory allocating the outputs");
  } catch (const std::length_error&) {
    return absl::ResourceExhaustedError("output larger than a vector can hold");
  }
}

}  // namespace

absl::StatusOr<Executor> Executor::Create(
    graph::Graph graph, std::shared_ptr<const KernelBackend> backend) {
  SQ_RETURN_IF_ERROR(graph::SortTopologically(&graph));
  for (const graph::Node& node : graph.nodes) {
    if ((!node.domain.empty() && node.domain != "ai.onnx") ||
        !backend->Supports(node.op_type)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unsupported operator '",
          node.domain.empty() ? "" : absl::StrCat(node.domain, "."),
          node.op_type, "' in node '", node.name, "' (backend ",
          backend->name(), ")"));
    }
  }
  std::set<std::string> kept;  // graph outputs and initializers stay
  for (const graph::ValueInfo& output : graph.outputs) kept.insert(output.name);
  for (const auto& [name, tensor] : graph.initializers) kept.insert(name);
  std::map<std::string, size_t> last_use;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    for (const std::string& input : graph.nodes[i].inputs) {
      if (!input.empty() && !kept.count(input)) last_use[input] = i;
    }
  }
  std::vector<std::vector<std::string>> release_after(graph.nodes.size());
  for (const auto& [name, index] : last_use) release_after[index].push_back(name);
  std::vector<Step> steps(graph.nodes.size());

  // Constant folding: a node whose inputs are all initializers that no feed
  // can override (or values folded before it) runs once here, and its
  // outputs are kept as constants (a model's weight Transposes, rotary-table
  // Slices). A node that fails is left to fail in Run with the usual message.
  std::set<std::string> fed;
  for (const graph::ValueInfo& input : graph.inputs) fed.insert(input.name);
  std::map<std::string, graph::Tensor> constants;
  auto constant = [&](const std::string& name) -> const graph::Tensor* {
    auto folded = constants.find(name);
    if (folded != constants.end()) return &folded->second;
    auto init = graph.initializers.find(name);
    return init == graph.initializers.end() || fed.count(name) ? nullptr : &init->second;
  };
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const graph::Node& node = graph.nodes[i];
    if (node.inputs.empty() || IsRandom(node.op_type)) continue;
    KernelCall call{node, graph.opset_version, {}};
    bool all_constant = true;
    for (const std::string& input : node.inputs) {
      const graph::Tensor* tensor = input.empty() ? nullptr : constant(input);
      if (!input.empty() && tensor == nullptr) all_constant = false;
      call.inputs.push_back(tensor);
    }
    if (!all_constant) continue;
    absl::StatusOr<std::vector<graph::Tensor>> outputs = RunCall(*backend, call);
    if (!outputs.ok() || outputs->size() < node.outputs.size()) continue;
    for (size_t k = 0; k < node.outputs.size(); ++k) {
      if (!node.outputs[k].empty()) {
        constants.insert_or_assign(node.outputs[k], std::move((*outputs)[k]));
      }
    }
    steps[i].skipped = true;
  }
  // What only folded nodes read is dropped, initializers included: the LM
  // would otherwise hold every weight twice (stored, and transposed).
  std::set<std::string> read;
  for (const graph::ValueInfo& output : graph.outputs) read.insert(output.name);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (!steps[i].skipped) read.insert(graph.nodes[i].inputs.begin(), graph.nodes[i].inputs.end());
  }
  for (auto it = graph.initializers.begin(); it != graph.initializers.end();) {
    it = read.count(it->first) || fed.count(it->first) ? std::next(it) : graph.initializers.erase(it);
  }
  for (auto it = constants.begin(); it != constants.end();) {
    it = read.count(it->first) ? std::next(it) : constants.erase(it);
  }

  // Fusion: node i's only output X feeds only node j, a Relu the backend
  // fuses into node i, and/or (then from j's output) a MaxPool it fuses
  // after that. The fused nodes run as part of node i (earlier than their
  // sorted place, which is safe: they read nothing but X) and their
  // intermediates are never stored.
  std::map<std::string, int> uses;
  std::map<std::string, size_t> consumer;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (steps[i].skipped) continue;
    for (const std::string& input : graph.nodes[i].inputs) {
      if (input.empty()) continue;
      ++uses[input];
      consumer[input] = i;
    }
  }
  std::set<std::string> graph_outputs;
  for (const graph::ValueInfo& output : graph.outputs) graph_outputs.insert(output.name);
  // The node after `producer` that alone reads `value`, when that node is
  // `op_type` (default domain) with that one input and one named output.
  auto sole_consumer = [&](const std::string& value, size_t producer,
                           const char* op_type) -> const graph::Node* {
    if (uses[value] != 1 || graph_outputs.count(value) || graph.initializers.count(value)) {
      return nullptr;
    }
    const size_t j = consumer[value];
    const graph::Node& next = graph.nodes[j];
    const bool one_output = !next.outputs.empty() && !next.outputs[0].empty() &&
                            (next.outputs.size() == 1 || next.outputs[1].empty());
    if (j <= producer || steps[j].skipped || next.op_type != op_type ||
        (!next.domain.empty() && next.domain != "ai.onnx") || next.inputs.size() != 1 ||
        !one_output) {
      return nullptr;
    }
    return &next;
  };
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    steps[i].outputs_of = i;
    const graph::Node& node = graph.nodes[i];
    if (steps[i].skipped || node.outputs.size() != 1 || node.outputs[0].empty()) continue;
    size_t last = i;
    const graph::Node* relu = sole_consumer(node.outputs[0], i, "Relu");
    if (relu != nullptr && backend->FusesActivation(node, relu->op_type)) {
      steps[i].activation = relu->op_type;
      last = static_cast<size_t>(relu - graph.nodes.data());
    }
    const graph::Node* pool = sole_consumer(graph.nodes[last].outputs[0], last, "MaxPool");
    if (pool != nullptr && backend->FusesMaxPool(node, *pool)) {
      last = static_cast<size_t>(pool - graph.nodes.data());
      steps[i].pool = static_cast<int64_t>(last);
    }
    if (last == i) continue;
    steps[i].outputs_of = last;
    for (size_t j : {consumer[node.outputs[0]], last}) {
      if (j != i) steps[j].skipped = true;
    }
  }
  return Executor(std::move(graph), std::move(backend), std::move(release_after),
                  std::move(steps), std::move(constants));
}

absl::StatusOr<std::vector<graph::Tensor>> Executor::Run(
    const std::map<std::string, graph::Tensor>& feeds) const {
  std::map<std::string, graph::Tensor> values;
  for (const graph::ValueInfo& input : graph_.inputs) {
    auto it = feeds.find(input.name);
    if (it == feeds.end()) {
      if (graph_.initializers.count(input.name)) continue;
      return absl::InvalidArgumentError(
          absl::StrCat("run: missing graph input '", input.name, "'"));
    }
    const graph::Tensor& fed = it->second;
    if (fed.dtype() != input.dtype) {
      return absl::InvalidArgumentError(absl::StrCat(
          "run: input '", input.name, "' must be ",
          graph::DataTypeName(input.dtype), ", got ",
          graph::DataTypeName(fed.dtype())));
    }
    if (input.shape && input.shape->size() != fed.shape().size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "run: input '", input.name, "' must have rank ", input.shape->size(),
          ", got shape ", graph::ShapeToString(fed.shape())));
    }
    values.emplace(input.name, fed);
  }
  auto lookup = [&](const std::string& name) -> const graph::Tensor* {
    auto it = values.find(name);
    if (it != values.end()) return &it->second;
    auto folded = constants_.find(name);
    if (folded != constants_.end()) return &folded->second;
    auto init = graph_.initializers.find(name);
    return init == graph_.initializers.end() ? nullptr : &init->second;
  };
  for (size_t i = 0; i < graph_.nodes.size(); ++i) {
    const graph::Node& node = graph_.nodes[i];
    const Step& step = steps_[i];
    if (step.skipped) continue;  // folded or fused: nothing of it is stored
    KernelCall call{node, graph_.opset_version, {}, step.activation,
                    step.pool >= 0 ? &graph_.nodes[step.pool] : nullptr};
    for (const std::string& input : node.inputs) {
      if (input.empty()) {
        call.inputs.push_back(nullptr);
        continue;
      }
      const graph::Tensor* tensor = lookup(input);
      if (tensor == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "run: value '", input, "' needed by node '", node.name,
            "' was not computed"));
      }
      call.inputs.push_back(tensor);
    }
    absl::StatusOr<std::vector<graph::Tensor>> outputs = RunCall(*backend_, call);
    if (!outputs.ok()) {
      return absl::Status(outputs.status().code(),
                          absl::StrCat("node '", node.name, "' (", node.op_type,
                                       "): ", outputs.status().message()));
    }
    const std::vector<std::string>& names = graph_.nodes[step.outputs_of].outputs;
    for (size_t k = 0; k < names.size() && k < outputs->size(); ++k) {
      if (!names[k].empty()) values.insert_or_assign(names[k], std::move((*outputs)[k]));
    }
    for (const std::string& name : release_after_[i]) values.erase(name);
  }
  std::vector<graph::Tensor> results;
  for (const graph::ValueInfo& output : graph_.outputs) {
    const graph::Tensor* tensor = lookup(output.name);
    if (tensor == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("run: graph output '", output.name, "' was not computed"));
    }
    results.push_back(*tensor);
  }
  return results;
}

}  // namespace squeeze::core::runtime
