#include "core/train/autograd.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/train/vjp.h"

namespace squeeze::core::train {
namespace {

// Operators whose outputs never carry a gradient, whatever their inputs.
// QuantizeLinear is differentiable (straight-through, vjp.cc): its integer
// output carries a float32 gradient to DequantizeLinear.
const std::set<std::string>& NonDifferentiableOperators() {
  static const auto* ops = new std::set<std::string>{
      "Shape", "Equal", "Constant", "ConstantOfShape", "Greater", "Less", "ArgMax", "Not",
      "MatMulInteger"};
  return *ops;
}

bool CastKeepsFloat32(const graph::Node& node) {
  return node.IntAttribute("to", 0) == 1;  // ONNX TensorProto.FLOAT
}

void Accumulate(TensorMap* gradients, const std::string& name, Tensor gradient) {
  auto it = gradients->find(name);
  if (it == gradients->end()) {
    gradients->emplace(name, std::move(gradient));
    return;
  }
  float* sum = it->second.data<float>();
  const float* add = gradient.data<float>();
  for (int64_t i = 0; i < gradient.num_elements(); ++i) sum[i] += add[i];
}

}  // namespace

absl::StatusOr<GradientProgram> GradientProgram::Create(
    graph::Graph graph, std::shared_ptr<const runtime::KernelBackend> backend,
    std::set<std::string> trainable) {
  SQ_RETURN_IF_ERROR(graph::SortTopologically(&graph));
  if (trainable.empty()) {
    // Running statistics are state, not parameters.
    std::set<std::string> statistics;
    for (const graph::Node& node : graph.nodes) {
      if (node.op_type != "BatchNormalization") continue;
      for (size_t i = 3; i < node.inputs.size() && i < 5; ++i) statistics.insert(node.inputs[i]);
    }
    for (const auto& [name, tensor] : graph.initializers) {
      if (tensor.dtype() == graph::DataType::kFloat32 && statistics.count(name) == 0) {
        trainable.insert(name);
      }
    }
  }
  for (const std::string& name : trainable) {
    auto it = graph.initializers.find(name);
    if (it == graph.initializers.end()) {
      return absl::NotFoundError(absl::StrCat("trainable '", name, "' is not an initializer"));
    }
    if (it->second.dtype() != graph::DataType::kFloat32) {
      return absl::InvalidArgumentError(absl::StrCat(
          "trainable '", name, "' is ", graph::DataTypeName(it->second.dtype()),
          "; only float32 initializers can be trained"));
    }
  }
  std::set<std::string> needs = trainable;
  const auto& registry = VjpRegistry();
  for (const graph::Node& node : graph.nodes) {
    const bool any_input = std::any_of(node.inputs.begin(), node.inputs.end(),
                                       [&](const std::string& in) { return needs.count(in) > 0; });
    if (!any_input || NonDifferentiableOperators().count(node.op_type) > 0) continue;
    if (node.op_type == "Cast" && !CastKeepsFloat32(node)) continue;
    if (registry.count(node.op_type) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "node '", node.name, "' (", node.op_type,
          "): a gradient would flow through this operator, which autograd cannot differentiate"));
    }
    for (const std::string& out : node.outputs) {
      if (!out.empty()) needs.insert(out);
    }
  }
  return GradientProgram(std::move(graph), std::move(backend), std::move(trainable),
                         std::move(needs));
}

absl::StatusOr<Tape> GradientProgram::Forward(const TensorMap& feeds) const {
  Tape tape;
  for (const auto& [name, tensor] : graph_.initializers) tape.values.emplace(name, tensor);
  for (const graph::ValueInfo& input : graph_.inputs) {
    auto it = feeds.find(input.name);
    if (it != feeds.end()) {
      tape.values.insert_or_assign(input.name, it->second);
    } else if (tape.values.count(input.name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("no feed for graph input '", input.name, "'"));
    }
  }
  for (const graph::Node& node : graph_.nodes) {
    runtime::KernelCall call{node, graph_.opset_version, {}};
    for (const std::string& in : node.inputs) {
      if (in.empty()) {
        call.inputs.push_back(nullptr);
        continue;
      }
      auto it = tape.values.find(in);
      if (it == tape.values.end()) {
        return absl::InternalError(absl::StrCat("node '", node.name, "': value '", in, "' missing"));
      }
      call.inputs.push_back(&it->second);
    }
    absl::StatusOr<std::vector<Tensor>> outputs = backend_->Run(call);
    if (!outputs.ok()) {
      return absl::Status(outputs.status().code(),
                          absl::StrCat("node '", node.name, "' (", node.op_type,
                                       "): ", outputs.status().message()));
    }
    for (size_t i = 0; i < outputs->size() && i < node.outputs.size(); ++i) {
      if (!node.outputs[i].empty()) tape.values.insert_or_assign(node.outputs[i], std::move((*outputs)[i]));
    }
  }
  return tape;
}

absl::StatusOr<const Tensor*> GradientProgram::Output(const Tape& tape,
                                                      const std::string& name) const {
  auto it = tape.values.find(name);
  if (it == tape.values.end()) return absl::NotFoundError(absl::StrCat("no value '", name, "'"));
  return &it->second;
}

absl::StatusOr<TensorMap> GradientProgram::Backward(const Tape& tape,
                                                    const TensorMap& output_gradients) const {
  TensorMap gradients;
  for (const auto& [name, gradient] : output_gradients) {
    auto value = tape.values.find(name);
    if (value == tape.values.end()) {
      return absl::NotFoundError(absl::StrCat("gradient given for unknown value '", name, "'"));
    }
    if (value->second.shape() != gradient.shape() ||
        gradient.dtype() != graph::DataType::kFloat32) {
      return absl::InvalidArgumentError(
          absl::StrCat("gradient for '", name, "' must be float32 of the value's shape"));
    }
    if (needs_gradient_.count(name) > 0) Accumulate(&gradients, name, gradient);
  }
  const auto& registry = VjpRegistry();
  for (auto node_it = graph_.nodes.rbegin(); node_it != graph_.nodes.rend(); ++node_it) {
    const graph::Node& node = *node_it;
    VjpCall call{node, graph_.opset_version, {}, {}, {}, {}};
    bool any_gradient = false;
    for (const std::string& out : node.outputs) {
      auto it = out.empty() ? gradients.end() : gradients.find(out);
      call.output_gradients.push_back(it == gradients.end() ? nullptr : &it->second);
      any_gradient |= it != gradients.end();
      auto value = out.empty() ? tape.values.end() : tape.values.find(out);
      call.outputs.push_back(value == tape.values.end() ? nullptr : &value->second);
    }
    if (!any_gradient) continue;
    bool any_wanted = false;
    for (const std::string& in : node.inputs) {
      auto value = in.empty() ? tape.values.end() : tape.values.find(in);
      call.inputs.push_back(value == tape.values.end() ? nullptr : &value->second);
      const bool wanted = !in.empty() && needs_gradient_.count(in) > 0;
      call.wanted.push_back(wanted);
      any_wanted |= wanted;
    }
    if (!any_wanted) continue;
    auto vjp = registry.find(node.op_type);
    if (vjp == registry.end()) {
      return absl::InternalError(absl::StrCat("node '", node.name, "': no VJP for ", node.op_type));
    }
    absl::StatusOr<std::vector<std::optional<Tensor>>> input_gradients = vjp->second(call);
    if (!input_gradients.ok()) {
      return absl::Status(input_gradients.status().code(),
                          absl::StrCat("backward of node '", node.name, "' (", node.op_type,
                                       "): ", input_gradients.status().message()));
    }
    for (size_t i = 0; i < input_gradients->size() && i < node.inputs.size(); ++i) {
      if (!call.wanted[i] || !(*input_gradients)[i].has_value()) continue;
      Accumulate(&gradients, node.inputs[i], std::move(*(*input_gradients)[i]));
    }
  }
  TensorMap result;
  for (const std::string& name : trainable_) {
    auto it = gradients.find(name);
    if (it != gradients.end()) {
      result.emplace(name, std::move(it->second));
    } else {
      result.emplace(name, Tensor(graph::DataType::kFloat32, graph_.initializers.at(name).shape()));
    }
  }
  return result;
}

std::vector<std::string> DifferentiableOperators() {
  std::vector<std::string> ops;
  for (const auto& [op, vjp] : VjpRegistry()) ops.push_back(op);
  return ops;
}

}  // namespace squeeze::core::train
