// GraphBuilder: appends nodes and initializers to a graph::Graph one call at
// a time, naming each node's output, so that models can be written as code
// (the reference-model trainers, the Hugging Face importers).
#ifndef SQUEEZE_CORE_GRAPH_BUILDER_H_
#define SQUEEZE_CORE_GRAPH_BUILDER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/graph/graph.h"

namespace squeeze::core::graph {

class GraphBuilder {
 public:
  explicit GraphBuilder(std::string graph_name, int64_t opset_version = 17);

  // Appends a node of type `op` and returns the name of its one output:
  // `output` when given, "<op>_<node index>_out" otherwise.
  std::string Add(const std::string& op, std::vector<std::string> inputs,
                  std::map<std::string, Attribute> attributes = {},
                  const std::string& output = "");

  // Adds (or replaces) initializer `name` and returns `name`.
  std::string Initializer(const std::string& name, Tensor tensor);
  // A float32 scalar / an int64 vector initializer; returns `name`.
  std::string FloatScalar(const std::string& name, float value);
  std::string Int64s(const std::string& name, const std::vector<int64_t>& values);

  void AddInput(ValueInfo input) { graph_.inputs.push_back(std::move(input)); }
  void AddOutput(ValueInfo output) { graph_.outputs.push_back(std::move(output)); }

  const Graph& graph() const { return graph_; }
  // The graph built so far; the builder is left empty.
  Graph Finish();

 private:
  Graph graph_;
};

}  // namespace squeeze::core::graph

#endif  // SQUEEZE_CORE_GRAPH_BUILDER_H_
