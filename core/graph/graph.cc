#include "core/graph/graph.h"

#include <algorithm>
#include <deque>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace squeeze::core::graph {
namespace {

template <typename T>
const T* Find(const std::map<std::string, Attribute>& attributes,
              const std::string& name) {
  auto it = attributes.find(name);
  if (it == attributes.end()) return nullptr;
  return std::get_if<T>(&it->second);
}

}  // namespace

int64_t Node::IntAttribute(const std::string& name, int64_t fallback) const {
  const int64_t* value = Find<int64_t>(attributes, name);
  return value ? *value : fallback;
}

float Node::FloatAttribute(const std::string& name, float fallback) const {
  const float* value = Find<float>(attributes, name);
  return value ? *value : fallback;
}

std::string Node::StringAttribute(const std::string& name,
                                  const std::string& fallback) const {
  const std::string* value = Find<std::string>(attributes, name);
  return value ? *value : fallback;
}

std::vector<int64_t> Node::IntsAttribute(const std::string& name) const {
  const auto* value = Find<std::vector<int64_t>>(attributes, name);
  return value ? *value : std::vector<int64_t>{};
}

std::vector<float> Node::FloatsAttribute(const std::string& name) const {
  const auto* value = Find<std::vector<float>>(attributes, name);
  return value ? *value : std::vector<float>{};
}

const Tensor* Node::TensorAttribute(const std::string& name) const {
  return Find<Tensor>(attributes, name);
}

absl::Status SortTopologically(Graph* graph) {
  std::set<std::string> available;
  for (const ValueInfo& input : graph->inputs) available.insert(input.name);
  for (const auto& [name, tensor] : graph->initializers) available.insert(name);

  std::map<std::string, size_t> producer;
  for (size_t i = 0; i < graph->nodes.size(); ++i) {
    for (const std::string& output : graph->nodes[i].outputs) {
      if (output.empty()) continue;
      if (!producer.emplace(output, i).second) {
        return absl::InvalidArgumentError(absl::StrCat(
            "graph: value '", output, "' is produced by both node '",
            graph->nodes[producer[output]].name, "' and node '",
            graph->nodes[i].name, "'"));
      }
    }
  }
  // Kahn's algorithm; pending[i] counts node i's inputs not yet available.
  std::vector<int> pending(graph->nodes.size(), 0);
  std::map<std::string, std::vector<size_t>> consumers;
  for (size_t i = 0; i < graph->nodes.size(); ++i) {
    const Node& node = graph->nodes[i];
    for (const std::string& input : node.inputs) {
      if (input.empty() || available.count(input)) continue;
      if (!producer.count(input)) {
        return absl::InvalidArgumentError(
            absl::StrCat("graph: input '", input, "' of node '", node.name,
                         "' (", node.op_type,
                         ") is not a graph input, initializer or node output"));
      }
      ++pending[i];
      consumers[input].push_back(i);
    }
  }
  std::deque<size_t> ready;
  for (size_t i = 0; i < pending.size(); ++i) {
    if (pending[i] == 0) ready.push_back(i);
  }
  std::vector<Node> sorted;
  sorted.reserve(graph->nodes.size());
  while (!ready.empty()) {
    const size_t i = ready.front();
    ready.pop_front();
    sorted.push_back(graph->nodes[i]);
    for (const std::string& output : graph->nodes[i].outputs) {
      auto it = consumers.find(output);
      if (it == consumers.end()) continue;
      for (size_t consumer : it->second) {
        if (--pending[consumer] == 0) ready.push_back(consumer);
      }
    }
  }
  if (sorted.size() != graph->nodes.size()) {
    for (size_t i = 0; i < pending.size(); ++i) {
      if (pending[i] > 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("graph: node '", graph->nodes[i].name, "' (",
                         graph->nodes[i].op_type, ") is part of a cycle"));
      }
    }
  }
  graph->nodes = std::move(sorted);
  return absl::OkStatus();
}

std::string UniqueValueName(const Graph& graph, const std::string& base) {
  std::set<std::string> used;
  for (const auto& [name, tensor] : graph.initializers) used.insert(name);
  for (const Node& node : graph.nodes) used.insert(node.outputs.begin(), node.outputs.end());
  for (const auto& input : graph.inputs) used.insert(input.name);
  std::string name = base;
  for (int i = 1; used.count(name); ++i) name = absl::StrCat(base, "_", i);
  return name;
}

int64_t CountUses(const Graph& graph, const std::string& value) {
  int64_t uses = 0;
  for (const Node& node : graph.nodes) uses += std::count(node.inputs.begin(), node.inputs.end(), value);
  for (const auto& output : graph.outputs) uses += output.name == value;
  return uses;
}

int64_t CountFloatParameters(const Graph& graph) {
  int64_t count = 0;
  for (const auto& [name, tensor] : graph.initializers) {
    if (tensor.dtype() == DataType::kFloat32) count += tensor.num_elements();
  }
  return count;
}

}  // namespace squeeze::core::graph
