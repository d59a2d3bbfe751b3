#include "core/graph/builder.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace squeeze::core::graph {

GraphBuilder::GraphBuilder(std::string graph_name, int64_t opset_version) {
  graph_.name = std::move(graph_name);
  graph_.opset_version = opset_version;
}

std::string GraphBuilder::Add(const std::string& op, std::vector<std::string> inputs,
                              std::map<std::string, Attribute> attributes,
                              const std::string& output) {
  Node node;
  node.name = absl::StrCat(op, "_", graph_.nodes.size());
  node.op_type = op;
  node.inputs = std::move(inputs);
  node.outputs = {output.empty() ? node.name + "_out" : output};
  node.attributes = std::move(attributes);
  graph_.nodes.push_back(std::move(node));
  return graph_.nodes.back().outputs[0];
}

std::string GraphBuilder::Initializer(const std::string& name, Tensor tensor) {
  graph_.initializers.insert_or_assign(name, std::move(tensor));
  return name;
}

std::string GraphBuilder::FloatScalar(const std::string& name, float value) {
  return Initializer(name, Tensor::FromVector(DataType::kFloat32, {}, std::vector<float>{value}));
}

std::string GraphBuilder::Int64s(const std::string& name, const std::vector<int64_t>& values) {
  return Initializer(name, Tensor::FromVector(DataType::kInt64,
                                              {static_cast<int64_t>(values.size())}, values));
}

Graph GraphBuilder::Finish() {
  Graph result = std::move(graph_);
  graph_ = Graph();
  graph_.name = result.name;
  graph_.opset_version = result.opset_version;
  return result;
}

}  // namespace squeeze::core::graph
