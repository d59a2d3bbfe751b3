#include "core/graph/passes.h"

#include <cmath>

#include "core/kernels/cpu/cpu_backend.h"
#include "core/runtime/executor.h"
#include "gtest/gtest.h"

namespace squeeze::core::graph {
namespace {

Tensor Ramp(std::vector<int64_t> shape, float step, float offset) {
  Tensor t(DataType::kFloat32, shape);
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    t.data<float>()[i] = offset + step * static_cast<float>((i * 7) % 11);
  }
  return t;
}

void AddBatchNorm(Graph* g, const std::string& input, int64_t channels) {
  g->initializers["scale"] = Ramp({channels}, 0.1f, 0.5f);
  g->initializers["shift"] = Ramp({channels}, -0.2f, 0.3f);
  g->initializers["mean"] = Ramp({channels}, 0.05f, -0.1f);
  g->initializers["var"] = Ramp({channels}, 0.3f, 0.2f);
  Node bn{"bn", "BatchNormalization", "", {input, "scale", "shift", "mean", "var"}, {"y"}, {}};
  g->nodes.push_back(bn);
  g->outputs.push_back({"y", DataType::kFloat32, std::nullopt});
}

std::vector<float> RunGraph(const Graph& g, const Tensor& x) {
  auto executor = runtime::Executor::Create(g, kernels::cpu::CreateCpuBackend(1));
  EXPECT_TRUE(executor.ok()) << executor.status();
  auto outputs = executor->Run({{"x", x}});
  EXPECT_TRUE(outputs.ok()) << outputs.status();
  return (*outputs)[0].ToFloats();
}

void ExpectNear(const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4f * (1 + std::abs(b[i])));
}

TEST(FoldBatchNormalizationTest, FoldsIntoConv) {
  Graph g;
  g.inputs.push_back({"x", DataType::kFloat32, std::nullopt});
  g.initializers["w"] = Ramp({4, 3, 3, 3}, 0.1f, -0.4f);
  g.initializers["b"] = Ramp({4}, 0.2f, -0.1f);
  Node conv{"conv", "Conv", "", {"x", "w", "b"}, {"c"}, {}};
  conv.attributes["pads"] = std::vector<int64_t>{1, 1, 1, 1};
  g.nodes.push_back(conv);
  AddBatchNorm(&g, "c", 4);
  const Tensor x = Ramp({2, 3, 5, 5}, 0.3f, -1.0f);
  const std::vector<float> before = RunGraph(g, x);
  absl::StatusOr<int> folded = FoldBatchNormalization(&g);
  ASSERT_TRUE(folded.ok());
  EXPECT_EQ(*folded, 1);
  ASSERT_EQ(g.nodes.size(), 1u);
  EXPECT_EQ(g.initializers.count("mean"), 0u);
  ExpectNear(RunGraph(g, x), before);
}

TEST(FoldBatchNormalizationTest, FoldsIntoGemmWithEitherWeightLayout) {
  for (int64_t trans_b : {0, 1}) {
    Graph g;
    g.inputs.push_back({"x", DataType::kFloat32, std::nullopt});
    g.initializers["w"] = trans_b ? Ramp({5, 6}, 0.1f, -0.3f) : Ramp({6, 5}, 0.1f, -0.3f);
    Node gemm{"fc", "Gemm", "", {"x", "w"}, {"h"}, {}};
    gemm.attributes["transB"] = trans_b;
    gemm.attributes["alpha"] = 0.5f;
    g.nodes.push_back(gemm);
    AddBatchNorm(&g, "h", 5);
    const Tensor x = Ramp({3, 6}, 0.2f, -0.5f);
    const std::vector<float> before = RunGraph(g, x);
    ASSERT_EQ(*FoldBatchNormalization(&g), 1);
    ExpectNear(RunGraph(g, x), before);
  }
}

TEST(FoldConstantsTest, ReplacesConstantSubgraphsByInitializers) {
  Graph g;
  g.inputs.push_back({"x", DataType::kFloat32, std::nullopt});
  g.outputs.push_back({"y", DataType::kFloat32, std::nullopt});
  g.initializers["a"] = Ramp({3}, 1.0f, 0.0f);
  Node constant{"two", "Constant", "", {}, {"two"}, {}};
  constant.attributes["value_float"] = 2.0f;
  g.nodes = {Node{"scaled", "Mul", "", {"a", "two"}, {"a2"}, {}},
             Node{"add", "Add", "", {"x", "a2"}, {"y"}, {}}, constant};
  const Tensor x = Ramp({3}, 0.5f, 0.0f);
  const std::vector<float> before = RunGraph(g, x);
  ASSERT_TRUE(FoldConstants(&g, *kernels::cpu::CreateCpuBackend(1)).ok());
  ASSERT_EQ(g.nodes.size(), 1u);
  EXPECT_EQ(g.nodes[0].op_type, "Add");
  EXPECT_EQ(g.initializers.count("a"), 0u);
  EXPECT_EQ(g.initializers.count("a2"), 1u);
  EXPECT_EQ(RunGraph(g, x), before);
}

}  // namespace
}  // namespace squeeze::core::graph
