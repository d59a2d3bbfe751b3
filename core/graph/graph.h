// The graph IR: named initializers, nodes with typed attributes, graph inputs
// and outputs with (possibly symbolic) shapes. Operator semantics are ONNX's,
// at the graph's opset version; a Graph is a plain value with no behaviour
// beyond lookups, and passes are free functions over it.
#ifndef SQUEEZE_CORE_GRAPH_GRAPH_H_
#define SQUEEZE_CORE_GRAPH_GRAPH_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/tensor.h"

namespace squeeze::core::graph {

// One dimension of a declared shape: a known size, or a symbol such as
// "batch" (an empty symbol with no value is an unknown dimension).
struct Dim {
  std::optional<int64_t> value;
  std::string symbol;
};

// A graph input, output or intermediate with its declared type. `shape` is
// absent when the rank is unknown.
struct ValueInfo {
  std::string name;
  DataType dtype = DataType::kFloat32;
  std::optional<std::vector<Dim>> shape;
};

using Attribute = std::variant<int64_t, float, std::string, std::vector<int64_t>,
                               std::vector<float>, Tensor,
                               std::vector<std::string>>;

struct Node {
  std::string name;
  std::string op_type;
  // "" for the default ONNX domain; other domains are rejected by importers.
  std::string domain;
  // An empty string marks an omitted optional input or output.
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::map<std::string, Attribute> attributes;

  bool HasAttribute(const std::string& name) const {
    return attributes.count(name) > 0;
  }
  // Attribute `name` when present with that type; `fallback` otherwise (an
  // importer only produces attributes of the type ONNX declares).
  int64_t IntAttribute(const std::string& name, int64_t fallback) const;
  float FloatAttribute(const std::string& name, float fallback) const;
  std::string StringAttribute(const std::string& name,
                              const std::string& fallback) const;
  std::vector<int64_t> IntsAttribute(const std::string& name) const;
  std::vector<float> FloatsAttribute(const std::string& name) const;
  // Null when absent.
  const Tensor* TensorAttribute(const std::string& name) const;
};

struct Graph {
  std::string name;
  // Version of the default ONNX operator set the nodes follow.
  int64_t opset_version = 17;
  std::vector<ValueInfo> inputs;
  std::vector<ValueInfo> outputs;
  // Types of intermediate values, when known (e.g. from shape inference).
  std::vector<ValueInfo> value_infos;
  std::map<std::string, Tensor> initializers;
  // In topological order once SortTopologically has succeeded.
  std::vector<Node> nodes;
};

// Reorders graph->nodes so that every node comes after the producers of its
// inputs (stable: already-ordered graphs keep their order). INVALID_ARGUMENT
// naming the node and the value when an input is produced by no node, graph
// input or initializer, when two nodes produce the same value, or when the
// nodes form a cycle.
absl::Status SortTopologically(Graph* graph);

// `base`, or `base_1`, `base_2`, ... : the first name that is no
// initializer, node output or graph input of `graph` (for values and
// initializers a pass adds).
std::string UniqueValueName(const Graph& graph, const std::string& base);

// How many node inputs and graph outputs read `value`.
int64_t CountUses(const Graph& graph, const std::string& value);

// Elements of every float32 initializer.
int64_t CountFloatParameters(const Graph& graph);

}  // namespace squeeze::core::graph

#endif  // SQUEEZE_CORE_GRAPH_GRAPH_H_
