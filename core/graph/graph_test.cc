#include "core/graph/graph.h"

#include "gtest/gtest.h"

namespace squeeze::core::graph {
namespace {

Node MakeNode(std::string name, std::vector<std::string> inputs,
              std::vector<std::string> outputs) {
  Node node;
  node.name = name;
  node.op_type = "Relu";
  node.inputs = std::move(inputs);
  node.outputs = std::move(outputs);
  return node;
}

TEST(TensorTest, CastRoundsHalfAndTruncatesIntegers) {
  Tensor x = Tensor::FromVector<float>(DataType::kFloat32, {3}, {1.5f, -2.7f, 65504.0f});
  Tensor as_int = CastTensor(x, DataType::kInt32);
  EXPECT_EQ(as_int.ToInt64s(), (std::vector<int64_t>{1, -2, 65504}));
  Tensor half = CastTensor(x, DataType::kFloat16);
  EXPECT_EQ(half.ToFloats(), (std::vector<float>{1.5f, -2.69921875f, 65504.0f}));
}

TEST(TensorTest, Int4PacksTwoPerByteAndSaturates) {
  Tensor packed = TensorFromDoubles(DataType::kInt4, {3}, {-8, 7, 100});
  EXPECT_EQ(packed.byte_size(), 2);
  EXPECT_EQ(packed.ToDoubles(), (std::vector<double>{-8, 7, 7}));
}

TEST(TensorTest, FromBytesRejectsWrongSize) {
  absl::StatusOr<Tensor> tensor = Tensor::FromBytes(DataType::kFloat32, {2}, "abc");
  EXPECT_EQ(tensor.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TensorTest, ModelTensorRoundTrip) {
  Tensor x = Tensor::FromVector<int32_t>(DataType::kInt32, {2}, {3, -4});
  absl::StatusOr<model::Tensor> stored = ToModelTensor(x);
  ASSERT_TRUE(stored.ok());
  absl::StatusOr<Tensor> back = FromModelTensor(*stored);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->ToInt64s(), (std::vector<int64_t>{3, -4}));
  EXPECT_FALSE(ToModelTensor(Tensor(DataType::kFloat64, {1})).ok());
}

TEST(SortTopologicallyTest, OrdersProducersFirst) {
  Graph graph;
  graph.inputs.push_back({"x", DataType::kFloat32, std::nullopt});
  graph.nodes = {MakeNode("b", {"y"}, {"z"}), MakeNode("a", {"x"}, {"y"})};
  ASSERT_TRUE(SortTopologically(&graph).ok());
  EXPECT_EQ(graph.nodes[0].name, "a");
  EXPECT_EQ(graph.nodes[1].name, "b");
}

TEST(SortTopologicallyTest, RejectsUndefinedInputAndCycles) {
  Graph undefined;
  undefined.nodes = {MakeNode("a", {"missing"}, {"y"})};
  absl::Status status = SortTopologically(&undefined);
  EXPECT_NE(status.message().find("missing"), std::string::npos);

  Graph cycle;
  cycle.nodes = {MakeNode("a", {"z"}, {"y"}), MakeNode("b", {"y"}, {"z"})};
  EXPECT_NE(SortTopologically(&cycle).message().find("cycle"), std::string::npos);
}

}  // namespace
}  // namespace squeeze::core::graph
