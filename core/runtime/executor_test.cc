#include "core/runtime/executor.h"

#include "core/kernels/cpu/cpu_backend.h"
#include "gtest/gtest.h"

namespace squeeze::core::runtime {
namespace {

using graph::DataType;
using graph::Tensor;

// y = Relu(x @ w + b) as MatMul -> Add -> Relu, nodes listed out of order.
graph::Graph SmallMlp() {
  graph::Graph g;
  g.inputs.push_back({"x", DataType::kFloat32, std::vector<graph::Dim>{{{}, "batch"}, {2, ""}}});
  g.outputs.push_back({"y", DataType::kFloat32, std::nullopt});
  g.initializers["w"] = Tensor::FromVector<float>(DataType::kFloat32, {2, 2}, {1, -1, 2, 1});
  g.initializers["b"] = Tensor::FromVector<float>(DataType::kFloat32, {2}, {0.5f, -10});
  graph::Node relu{"relu", "Relu", "", {"h"}, {"y"}, {}};
  graph::Node add{"add", "Add", "", {"m", "b"}, {"h"}, {}};
  graph::Node matmul{"matmul", "MatMul", "", {"x", "w"}, {"m"}, {}};
  g.nodes = {relu, add, matmul};
  return g;
}

TEST(ExecutorTest, RunsBatchedGraph) {
  auto executor = Executor::Create(SmallMlp(), kernels::cpu::CreateCpuBackend(2));
  ASSERT_TRUE(executor.ok()) << executor.status();
  Tensor x = Tensor::FromVector<float>(DataType::kFloat32, {2, 2}, {1, 2, 3, 4});
  auto outputs = executor->Run({{"x", x}});
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  EXPECT_EQ((*outputs)[0].shape(), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ((*outputs)[0].ToFloats(), (std::vector<float>{5.5f, 0, 11.5f, 0}));
}

TEST(ExecutorTest, UnsupportedOperatorNamesOpAndNode) {
  graph::Graph g = SmallMlp();
  g.nodes[0].op_type = "NonMaxSuppression";
  auto executor = Executor::Create(g, kernels::cpu::CreateCpuBackend());
  ASSERT_EQ(executor.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(executor.status().message().find("NonMaxSuppression"), std::string::npos);
  EXPECT_NE(executor.status().message().find("'relu'"), std::string::npos);
}

TEST(ExecutorTest, RejectsMissingAndMistypedInputs) {
  auto executor = Executor::Create(SmallMlp(), kernels::cpu::CreateCpuBackend());
  ASSERT_TRUE(executor.ok());
  EXPECT_EQ(executor->Run({}).status().code(), absl::StatusCode::kInvalidArgument);
  Tensor wrong(DataType::kInt32, {1, 2});
  EXPECT_NE(executor->Run({{"x", wrong}}).status().message().find("int32"), std::string::npos);
}

}  // namespace
}  // namespace squeeze::core::runtime

namespace squeeze::core::runtime {
namespace {

TEST(ExecutorTest, AbsurdShapeIsAnErrorNotACrash) {
  graph::Graph g;
  g.inputs.push_back({"shape", graph::DataType::kInt64, std::nullopt});
  g.outputs.push_back({"y", graph::DataType::kFloat32, std::nullopt});
  g.nodes.push_back(graph::Node{"fill", "ConstantOfShape", "", {"shape"}, {"y"}, {}});
  auto executor = Executor::Create(g, kernels::cpu::CreateCpuBackend(1));
  ASSERT_TRUE(executor.ok());
  graph::Tensor shape = graph::Tensor::FromVector<int64_t>(
      graph::DataType::kInt64, {3}, {int64_t{1} << 20, int64_t{1} << 20, 16});
  auto outputs = executor->Run({{"shape", shape}});
  EXPECT_EQ(outputs.status().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace squeeze::core::runtime
