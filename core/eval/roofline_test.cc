#include "core/eval/roofline.h"

#include "gtest/gtest.h"

namespace squeeze::core::eval {
namespace {

DeviceRoofline Gpu() {
  DeviceRoofline gpu;
  gpu.name = "test-gpu";
  gpu.kind = "gpu";
  gpu.peak_ops_per_second = {{"fp32", 1e12}, {"fp16", 4e12}, {"int8", 8e12}};
  gpu.memory_bandwidth_bytes_per_second = 1e11;
  gpu.idle_power_watts = 10;
  gpu.sparse_2_4 = true;
  gpu.pj_per_mac = {{"fp32", 20}, {"fp16", 5}, {"int8", 2}};
  gpu.pj_per_byte = 30;
  return gpu;
}

TEST(RooflineTest, ComputeFormatFollowsTheDevice) {
  LayerCost w8a8{"l", 1, 1, 1, 8, 8, false};
  LayerCost w4{"l", 1, 1, 1, 4, 32, false};
  LayerCost fp32{"l", 1, 1, 1, 32, 32, false};
  EXPECT_EQ(ComputeFormat(w8a8, Gpu()), "int8");
  EXPECT_EQ(ComputeFormat(w4, Gpu()), "fp16");
  EXPECT_EQ(ComputeFormat(fp32, Gpu()), "fp32");
  DeviceRoofline cpu = Gpu();
  cpu.peak_ops_per_second = {{"fp32", 1e11}};
  EXPECT_EQ(ComputeFormat(w8a8, cpu), "fp32");  // No int8 units: runs in fp32.
  EXPECT_EQ(ComputeFormat(w4, cpu), "fp32");
}

TEST(RooflineTest, ComputeAndMemoryBoundLayersByHand) {
  // Compute-bound: 1e9 MACs in fp32 = 2e9 ops / 1e12 = 2 ms; bytes 1e6 / 1e11 = 10 us.
  LayerCost big{"big", 1'000'000'000, 1'000'000, 0, 32, 32, false};
  // Memory-bound: 1e3 MACs; 1e8 weight bytes / 1e11 = 1 ms.
  LayerCost wide{"wide", 1000, 100'000'000, 0, 32, 32, false};
  RooflinePrediction p = PredictRoofline({big, wide}, Gpu(), 1);
  EXPECT_EQ(p.compute_bound_layers, 1);
  EXPECT_EQ(p.memory_bound_layers, 1);
  EXPECT_NEAR(p.seconds, 2e-3 + 1e-3 + 2 * 5e-6, 1e-12);
  const double dynamic = (1e9 + 1e3) * 20e-12 + (1e6 + 1e8) * 30e-12;
  EXPECT_NEAR(p.joules, dynamic + 10 * p.seconds, 1e-12);
  EXPECT_NE(p.description.find("test-gpu"), std::string::npos);
}

TEST(RooflineTest, SparsityHalvesComputeOnlyWhereTheDeviceHasIt) {
  LayerCost dense{"d", 1'000'000'000, 0, 0, 8, 8, false};
  LayerCost sparse = dense;
  sparse.sparse_2_4 = true;
  const double t_dense = PredictRoofline({dense}, Gpu(), 4).seconds;
  const double t_sparse = PredictRoofline({sparse}, Gpu(), 4).seconds;
  EXPECT_NEAR(t_sparse - 5e-6, (t_dense - 5e-6) / 2, 1e-12);
  DeviceRoofline no_sparse = Gpu();
  no_sparse.sparse_2_4 = false;
  EXPECT_DOUBLE_EQ(PredictRoofline({sparse}, no_sparse, 4).seconds, t_dense);
}

TEST(RooflineTest, BatchScalesActivationsNotWeights) {
  LayerCost layer{"l", 10, 1'000'000, 1'000, 32, 32, false};
  const double one = PredictRoofline({layer}, Gpu(), 1).seconds - 5e-6;
  const double many = PredictRoofline({layer}, Gpu(), 100).seconds - 5e-6;
  EXPECT_NEAR(one, 1'001'000 / 1e11, 1e-15);
  EXPECT_NEAR(many, 1'100'000 / 1e11, 1e-15);
}

}  // namespace
}  // namespace squeeze::core::eval
