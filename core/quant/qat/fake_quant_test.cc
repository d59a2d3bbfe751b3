#include "core/quant/qat/fake_quant.h"

#include <cmath>
#include <random>

#include "core/kernels/cpu/cpu_backend.h"
#include "core/train/autograd.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant::qat {
namespace {

using graph::DataType;
using graph::Tensor;

TEST(FakeQuantTest, ForwardRoundsHalfToEvenAndClampsToTheGrid) {
  const QuantGrid grid = SignedGrid(4);
  EXPECT_EQ(grid.qmin, -8);
  EXPECT_EQ(grid.qmax, 7);
  EXPECT_FLOAT_EQ(FakeQuantize(0.26f, 0.1f, grid), 0.3f);
  EXPECT_FLOAT_EQ(FakeQuantize(0.5f, 0.2f, grid), 0.4f);   // 2.5 -> 2
  EXPECT_FLOAT_EQ(FakeQuantize(0.7f, 0.2f, grid), 0.8f);   // 3.5 -> 4
  EXPECT_FLOAT_EQ(FakeQuantize(1.0f, 0.1f, grid), 0.7f);   // 10 -> 7
  EXPECT_FLOAT_EQ(FakeQuantize(-1.0f, 0.1f, grid), -0.8f); // -10 -> -8
  const QuantGrid unsigned8{0, 255, 10};
  EXPECT_FLOAT_EQ(FakeQuantize(-2.0f, 0.1f, unsigned8), -1.0f);  // code 0
  EXPECT_EQ(QuantizeCode(0.26f, 0.1f, unsigned8), 13);
}

TEST(FakeQuantTest, LsqBackwardMatchesThePaper) {
  const QuantGrid grid = SignedGrid(4);
  LsqGradient inside = LsqBackward(0.26f, 0.1f, grid, 2.0f);
  EXPECT_EQ(inside.dx, 2.0f);
  EXPECT_NEAR(inside.ds, 2.0f * (3.0f - 2.6f), 1e-5);
  LsqGradient above = LsqBackward(1.0f, 0.1f, grid, 2.0f);
  EXPECT_EQ(above.dx, 0.0f);
  EXPECT_EQ(above.ds, 14.0f);
  LsqGradient below = LsqBackward(-1.0f, 0.1f, grid, 2.0f);
  EXPECT_EQ(below.dx, 0.0f);
  EXPECT_EQ(below.ds, -16.0f);
  // The grid edges are inside: x / s = 7 exactly passes the gradient.
  EXPECT_EQ(LsqBackward(0.7f, 0.1f, grid, 1.0f).dx, 1.0f);
  EXPECT_FLOAT_EQ(LsqGradientScale(16, 7), 1.0f / std::sqrt(112.0f));
}

// Autograd through QuantizeLinear -> DequantizeLinear (per-axis, int4) is
// LSQ: the VJPs of core/train/vjp.cc against the scalar oracle.
TEST(FakeQuantTest, AutogradThroughQdqIsLsq) {
  const int64_t rows = 3, cols = 5;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(-1.5f, 1.5f);
  std::vector<float> x(rows * cols), dy(rows * cols);
  for (float& v : x) v = uniform(rng);
  for (float& v : dy) v = uniform(rng);
  const std::vector<float> scales = {0.1f, 0.25f, 0.05f};  // row 2 saturates often
  graph::Graph g;
  g.opset_version = 21;
  g.initializers["x"] = Tensor::FromVector<float>(DataType::kFloat32, {rows, cols}, x);
  g.initializers["s"] = Tensor::FromVector<float>(DataType::kFloat32, {rows}, scales);
  g.initializers["z"] = Tensor(DataType::kInt4, {rows});
  graph::Node q{"q", "QuantizeLinear", "", {"x", "s", "z"}, {"xq"}, {}};
  graph::Node dq{"dq", "DequantizeLinear", "", {"xq", "s", "z"}, {"y"}, {}};
  q.attributes["axis"] = int64_t{0};
  dq.attributes["axis"] = int64_t{0};
  g.nodes = {q, dq};
  g.outputs.push_back({"y", DataType::kFloat32, std::nullopt});
  auto program = train::GradientProgram::Create(g, kernels::cpu::CreateCpuBackend(1), {"x", "s"});
  ASSERT_TRUE(program.ok()) << program.status();
  auto tape = program->Forward({});
  ASSERT_TRUE(tape.ok()) << tape.status();
  auto gradients = program->Backward(*tape, {{"y", Tensor::FromVector<float>(DataType::kFloat32, {rows, cols}, dy)}});
  ASSERT_TRUE(gradients.ok()) << gradients.status();
  const std::vector<float> y = (*program->Output(*tape, "y"))->ToFloats();
  const std::vector<float> dx = gradients->at("x").ToFloats();
  const std::vector<float> ds = gradients->at("s").ToFloats();
  const QuantGrid grid = SignedGrid(4);
  int saturated = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double expected_ds = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      EXPECT_EQ(y[i], FakeQuantize(x[i], scales[r], grid)) << i;
      const LsqGradient lsq = LsqBackward(x[i], scales[r], grid, dy[i]);
      EXPECT_FLOAT_EQ(dx[i], lsq.dx) << i;
      saturated += lsq.dx == 0;
      expected_ds += lsq.ds;
    }
    EXPECT_NEAR(ds[r], expected_ds, 1e-4) << r;
  }
  EXPECT_GT(saturated, 0);
}

}  // namespace
}  // namespace squeeze::core::quant::qat
