// Kernel checks beyond the ONNX conformance suite: thread-count invariance
// of the parallel kernels and error messages for bad inputs.
#include "core/kernels/cpu/cpu_backend.h"

#include "gtest/gtest.h"

namespace squeeze::core::kernels::cpu {
namespace {

using graph::DataType;
using graph::Tensor;

absl::StatusOr<std::vector<Tensor>> RunNode(const graph::Node& node,
                                            const std::vector<const Tensor*>& inputs,
                                            int threads) {
  return CreateCpuBackend(threads)->Run(runtime::KernelCall{node, 17, inputs});
}

Tensor Ramp(std::vector<int64_t> shape) {
  Tensor t(DataType::kFloat32, shape);
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = 0.01f * (i % 97) - 0.3f;
  return t;
}

TEST(CpuKernelsTest, ConvIsIndependentOfThreadCount) {
  graph::Node conv{"conv", "Conv", "", {"x", "w"}, {"y"}, {}};
  conv.attributes["pads"] = std::vector<int64_t>{1, 1, 1, 1};
  Tensor x = Ramp({4, 3, 8, 8}), w = Ramp({5, 3, 3, 3});
  auto one = RunNode(conv, {&x, &w}, 1);
  auto four = RunNode(conv, {&x, &w}, 4);
  ASSERT_TRUE(one.ok() && four.ok());
  EXPECT_EQ((*one)[0].shape(), (std::vector<int64_t>{4, 5, 8, 8}));
  EXPECT_EQ((*one)[0].ToFloats(), (*four)[0].ToFloats());
}

TEST(CpuKernelsTest, MatMulIsIndependentOfThreadCount) {
  graph::Node matmul{"mm", "MatMul", "", {"a", "b"}, {"y"}, {}};
  Tensor a = Ramp({300, 64}), b = Ramp({64, 40});
  auto one = RunNode(matmul, {&a, &b}, 1);
  auto four = RunNode(matmul, {&a, &b}, 4);
  ASSERT_TRUE(one.ok() && four.ok());
  EXPECT_EQ((*one)[0].ToFloats(), (*four)[0].ToFloats());
}

TEST(CpuKernelsTest, BadShapesAreErrorsNotCrashes) {
  graph::Node add{"add", "Add", "", {"a", "b"}, {"y"}, {}};
  Tensor a = Ramp({2, 3}), b = Ramp({4});
  EXPECT_EQ(RunNode(add, {&a, &b}, 1).status().code(), absl::StatusCode::kInvalidArgument);
  graph::Node gather{"g", "Gather", "", {"x", "i"}, {"y"}, {}};
  Tensor index = Tensor::FromVector<int64_t>(DataType::kInt64, {1}, {7});
  EXPECT_EQ(RunNode(gather, {&a, &index}, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  graph::Node reshape{"r", "Reshape", "", {"x", "s"}, {"y"}, {}};
  Tensor shape = Tensor::FromVector<int64_t>(DataType::kInt64, {1}, {5});
  EXPECT_EQ(RunNode(reshape, {&a, &shape}, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace squeeze::core::kernels::cpu
