#include "core/graph/builder.h"

#include "gtest/gtest.h"

namespace squeeze::core::graph {
namespace {

TEST(GraphBuilderTest, NamesOutputsAndKeepsInitializers) {
  GraphBuilder builder("g");
  builder.AddInput({"x", DataType::kFloat32, std::nullopt});
  const std::string two = builder.FloatScalar("two", 2.0f);
  const std::string y = builder.Add("Mul", {"x", two});
  EXPECT_EQ(y, "Mul_0_out");
  const std::string z = builder.Add("Relu", {y}, {}, "z");
  EXPECT_EQ(z, "z");
  builder.Int64s("axes", {0, -1});
  builder.AddOutput({"z", DataType::kFloat32, std::nullopt});
  Graph graph = builder.Finish();
  EXPECT_EQ(graph.name, "g");
  ASSERT_EQ(graph.nodes.size(), 2u);
  EXPECT_EQ(graph.nodes[1].inputs[0], "Mul_0_out");
  EXPECT_EQ(graph.initializers.at("axes").ToInt64s(), (std::vector<int64_t>{0, -1}));
  EXPECT_EQ(graph.initializers.at("two").ToFloats()[0], 2.0f);
  EXPECT_TRUE(SortTopologically(&graph).ok());
  EXPECT_TRUE(builder.graph().nodes.empty());
}

}  // namespace
}  // namespace squeeze::core::graph
