// UseWeightOnlyKernels + the int8/low-bit backend against the simulated
// graphs of core/quant/ptq (weight-only RTN/GPTQ int4, int3, int2) and of
// k-means codebooks: the same outputs up to float summation order, the float
// weights gone from the runtime graph, layers that do not match left fp32
// with the reason.
#include "core/quant/gemm/weight_only_runtime.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "core/graph/builder.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/quant/codebook/kmeans_codebook.h"
#include "core/quant/gemm/qdq_runtime.h"
#include "core/quant/gemm/runtime_test_util.h"
#include "core/quant/ptq/ptq.h"
#include "core/runtime/executor.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant::gemm {
namespace {

using graph::DataType;
using graph::Graph;
using graph::Tensor;
using ptq::CalibrationBatch;

// x [N, 64] -> Gemm (transB, bias) -> Relu -> MatMul(Transpose(W [32, 48]))
// -> Relu -> MatMul(W [32, 10], no transpose) -> y: every Gemm/MatMul form
// the rewrite takes. With `conv`, x [N, 1, 8, 8] first goes through a 1 ->
// 1 channel Conv (left fp32) and a Flatten.
Graph Mlp(uint32_t seed, bool conv = false) {
  std::mt19937 rng(seed);
  graph::GraphBuilder b("mlp");
  std::string x = "x";
  if (conv) {
    x = b.Add("Conv", {x, b.Initializer("conv.weight", Random({1, 1, 3, 3}, &rng, 0.5f))},
              {{"pads", std::vector<int64_t>{1, 1, 1, 1}}, {"kernel_shape", std::vector<int64_t>{3, 3}}});
    x = b.Add("Flatten", {x});
  }
  x = b.Add("Relu", {b.Add("Gemm", {x, b.Initializer("fc1.weight", Random({48, 64}, &rng, 0.2f)),
                                    b.Initializer("fc1.bias", Random({48}, &rng, 0.1f))},
                           {{"transB", int64_t{1}}})});
  x = b.Add("Relu", {b.Add("MatMul", {x, b.Add("Transpose", {b.Initializer("fc2.weight", Random({32, 48}, &rng, 0.2f))},
                                                 {{"perm", std::vector<int64_t>{1, 0}}})})});
  b.Add("MatMul", {x, b.Initializer("fc3.weight", Random({32, 10}, &rng, 0.3f))}, {}, "y");
  b.AddInput({"x", DataType::kFloat32, std::nullopt});
  b.AddOutput({"y", DataType::kFloat32, std::nullopt});
  return b.Finish();
}

std::vector<CalibrationBatch> Batches(std::vector<int64_t> shape, int count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<CalibrationBatch> batches;
  for (int i = 0; i < count; ++i) batches.push_back({{"x", Random(shape, &rng)}});
  return batches;
}

// Layer-name keyed results -> weight-initializer keyed, as RecipeResult holds them.
std::map<std::string, std::string> WeightOf(const Graph& original) {
  auto scan = ptq::FindQuantizableLayers(original);
  EXPECT_TRUE(scan.ok());
  std::map<std::string, std::string> weight_of;
  for (const auto& layer : scan->layers) weight_of[layer.name] = layer.weight;
  return weight_of;
}

// Max over outputs of |a - b| / (1 + |b|): float reassociation of depth-64
// sums over three layers stays far below 1e-5.
double MaxDifference(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    diff = std::max(diff, std::fabs(double{a[i]} - b[i]) / (1 + std::fabs(double{b[i]})));
  }
  return diff;
}

struct Format {
  ptq::WeightMethod method;
  RtnOptions rtn;
  bool activations;  // W4A8: the int4 layers keep their activation QDQ pair's float output
};

class WeightOnlyRuntimeTest : public ::testing::TestWithParam<Format> {};

TEST_P(WeightOnlyRuntimeTest, MatchesSimulatedGraphAndDropsFloatWeights) {
  const Format format = GetParam();
  const Graph original = Mlp(5);
  ptq::PtqOptions options;
  options.weights.emplace();
  options.weights->method = format.method;
  options.weights->format = format.rtn;
  if (format.activations) options.activations.emplace();
  auto quantized = ptq::QuantizeGraph(original, Batches({16, 64}, 2, 6), options);
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  const auto weight_of = WeightOf(original);
  std::map<std::string, QuantizedLinear> packed;
  for (const QuantizedLinear& linear : quantized->packed) packed[weight_of.at(linear.name)] = linear;

  Graph runtime_graph = quantized->graph;
  auto int8 = UseInt8Kernels(&runtime_graph, packed);  // takes nothing: no int8 weights
  ASSERT_TRUE(int8.ok()) << int8.status();
  EXPECT_TRUE(int8->int8_layers.empty());
  auto rewrite = UseWeightOnlyKernels(&runtime_graph, packed, {});
  ASSERT_TRUE(rewrite.ok()) << rewrite.status();
  EXPECT_EQ(rewrite->low_bit_layers.size(), 3u) << DescribeWeightOnlyRewrite(*rewrite);
  EXPECT_TRUE(rewrite->skipped.empty()) << DescribeWeightOnlyRewrite(*rewrite);
  EXPECT_EQ(CountOps(runtime_graph, kLowBitMatMulOp), 3);
  EXPECT_EQ(CountOps(runtime_graph, "Gemm") + CountOps(runtime_graph, "MatMul") + CountOps(runtime_graph, "Transpose"),
            0);
  for (const char* weight : {"fc1.weight", "fc2.weight", "fc3.weight"}) {
    EXPECT_EQ(runtime_graph.initializers.count(weight), 0u) << weight;
  }
  // Nibbles (4 bits a weight whatever the width) + scales: under a third of fp32.
  EXPECT_LT(InitializerBytes(runtime_graph) * 3, InitializerBytes(quantized->graph));

  auto cpu = kernels::cpu::CreateCpuBackend(1);
  auto backend = CreateInt8QdqBackend(cpu, 1);
  for (int64_t batch : {1, 3, 17}) {  // the GEMV (<= 4 rows) and the panel GEMM
    const CalibrationBatch test = Batches({batch, 64}, 1, 40 + static_cast<uint32_t>(batch))[0];
    const std::vector<float> simulated = RunGraph(quantized->graph, cpu, test);
    const std::vector<float> low_bit = RunGraph(runtime_graph, backend, test);
    ASSERT_EQ(simulated.size(), static_cast<size_t>(batch * 10));
    EXPECT_LT(MaxDifference(low_bit, simulated), 1e-5) << "batch " << batch;
  }
  // Without the low-bit backend the runtime-only node is rejected.
  EXPECT_FALSE(runtime::Executor::Create(runtime_graph, cpu).ok());
}

INSTANTIATE_TEST_SUITE_P(
    Formats, WeightOnlyRuntimeTest,
    ::testing::Values(Format{ptq::WeightMethod::kRtn, {4, 0, false}, false},   // int4 per channel
                      Format{ptq::WeightMethod::kRtn, {4, 16, true}, false},   // int4 g16 asymmetric
                      Format{ptq::WeightMethod::kGptq, {4, 8, false}, false},  // GPTQ int4 g8
                      Format{ptq::WeightMethod::kRtn, {3, 16, false}, false},  // int3
                      Format{ptq::WeightMethod::kRtn, {2, 0, true}, false},    // int2
                      Format{ptq::WeightMethod::kRtn, {4, 16, false}, true}));  // W4A8: float after the QDQ pair

TEST(WeightOnlyRuntimeCodebookTest, MatchesSimulatedGraphPerLayerAndPerRow) {
  const Graph original = Mlp(9);
  const auto weight_of = WeightOf(original);
  for (int bits : {2, 3, 4}) {
    for (bool per_row : {false, true}) {
      codebook::KmeansOptions options;
      options.bits = bits;
      options.per_row_codebook = per_row;
      options.activation_weighted = false;
      options.max_iterations = 10;
      auto quantized = codebook::QuantizeGraphKmeans(original, {}, options);
      ASSERT_TRUE(quantized.ok()) << quantized.status();
      std::map<std::string, CodebookLinear> codebooks;
      for (const CodebookLinear& linear : quantized->layers) codebooks[weight_of.at(linear.name)] = linear;
      Graph runtime_graph = quantized->graph;
      auto rewrite = UseWeightOnlyKernels(&runtime_graph, {}, codebooks);
      ASSERT_TRUE(rewrite.ok()) << rewrite.status();
      EXPECT_EQ(rewrite->lut_layers.size(), 3u) << DescribeWeightOnlyRewrite(*rewrite);
      EXPECT_EQ(CountOps(runtime_graph, kLutMatMulOp), 3);
      // Exactly: the float weights out, the packed indices and codebooks in.
      int64_t expected = InitializerBytes(quantized->graph);
      for (const CodebookLinear& linear : quantized->layers) {
        expected +=
            static_cast<int64_t>(linear.packed.size() + 4 * linear.codebook.size()) - 4 * linear.out * linear.in;
      }
      EXPECT_EQ(InitializerBytes(runtime_graph), expected);
      auto cpu = kernels::cpu::CreateCpuBackend(1);
      for (int64_t batch : {1, 9}) {
        const CalibrationBatch test = Batches({batch, 64}, 1, 70 + static_cast<uint32_t>(batch))[0];
        EXPECT_LT(MaxDifference(RunGraph(runtime_graph, CreateInt8QdqBackend(cpu, 1), test),
                                RunGraph(quantized->graph, cpu, test)),
                  1e-5)
            << bits << " bits, per row " << per_row << ", batch " << batch;
      }
    }
  }
}

// A Conv layer, a weight changed after quantization and a weight with an
// unusable packed form stay fp32 with the reason; the rest is rewritten and
// the graph still computes the simulated graph's outputs.
TEST(WeightOnlyRuntimeTest, SkipsLayersItCannotTakeWithTheReason) {
  const Graph original = Mlp(11, /*conv=*/true);
  ptq::PtqOptions options;
  options.weights.emplace();
  options.weights->format = {4, 0, false};
  auto quantized = ptq::QuantizeGraph(original, Batches({4, 1, 8, 8}, 2, 12), options);
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  const auto weight_of = WeightOf(original);
  std::map<std::string, QuantizedLinear> packed;
  for (const QuantizedLinear& linear : quantized->packed) packed[weight_of.at(linear.name)] = linear;
  Graph simulated = quantized->graph;
  simulated.initializers.at("fc2.weight").data<float>()[5] += 0.25f;  // changed after quantization
  packed.at("fc3.weight").scales.pop_back();                          // inconsistent packed form
  Graph runtime_graph = simulated;
  auto rewrite = UseWeightOnlyKernels(&runtime_graph, packed, {});
  ASSERT_TRUE(rewrite.ok()) << rewrite.status();
  EXPECT_EQ(rewrite->low_bit_layers.size(), 1u);
  std::map<std::string, std::string> reasons;
  for (const auto& skipped : rewrite->skipped) reasons[weight_of.at(skipped.name)] = skipped.reason;
  ASSERT_EQ(reasons.size(), 3u) << DescribeWeightOnlyRewrite(*rewrite);
  EXPECT_NE(reasons["conv.weight"].find("Conv"), std::string::npos);
  EXPECT_NE(reasons["fc2.weight"].find("does not dequantize"), std::string::npos);
  EXPECT_NE(reasons["fc3.weight"].find("does not dequantize"), std::string::npos);
  EXPECT_EQ(runtime_graph.initializers.count("fc1.weight"), 0u);
  EXPECT_EQ(runtime_graph.initializers.count("fc2.weight"), 1u);
  EXPECT_NE(DescribeWeightOnlyRewrite(*rewrite).find("fp32: "), std::string::npos);
  auto cpu = kernels::cpu::CreateCpuBackend(1);
  const CalibrationBatch test = Batches({5, 1, 8, 8}, 1, 13)[0];
  EXPECT_LT(MaxDifference(RunGraph(runtime_graph, CreateInt8QdqBackend(cpu, 1), test), RunGraph(simulated, cpu, test)),
            1e-5);
}

// Bad inputs to the runtime-only node are INVALID_ARGUMENT naming the node.
TEST(WeightOnlyRuntimeTest, RejectsInputsThatDoNotMatchTheNode) {
  graph::Node node;
  node.name = "fc9";
  node.op_type = kLowBitMatMulOp;
  node.attributes = {{"in", int64_t{8}}, {"out", int64_t{2}}, {"bits", int64_t{4}}, {"group_size", int64_t{0}},
                     {"asymmetric", int64_t{0}}};
  Tensor x(DataType::kFloat32, {1, 8}), packed(DataType::kUInt8, {8}), scales(DataType::kFloat32, {3});
  runtime::KernelCall call{node, 17, {&x, &packed, &scales, nullptr, nullptr}};
  auto result = RunWeightOnlyNode(call, 1);
  ASSERT_TRUE(result.has_value());
  ASSERT_FALSE(result->ok());
  EXPECT_NE(result->status().message().find("fc9"), std::string::npos) << result->status();
  Tensor wrong_x(DataType::kFloat32, {1, 7});
  call.inputs[0] = &wrong_x;
  call.inputs[2] = &scales;
  EXPECT_FALSE(RunWeightOnlyNode(call, 1)->ok());
  // A fused Relu is applied (the backend offers it); other activations are refused.
  EXPECT_TRUE(CreateInt8QdqBackend(kernels::cpu::CreateCpuBackend(1), 1)->FusesActivation(node, "Relu"));
  EXPECT_FALSE(CreateInt8QdqBackend(kernels::cpu::CreateCpuBackend(1), 1)->FusesActivation(node, "Sigmoid"));
  std::vector<uint8_t> nibbles(8, 0x9f);  // q = 7 and 1 (symmetric offset 8): w = 1.75 and 0.25 (scale 0.25)
  Tensor w(DataType::kUInt8, {8}), one_scale(DataType::kFloat32, {2}), input(DataType::kFloat32, {1, 8});
  std::copy(nibbles.begin(), nibbles.end(), w.data<uint8_t>());
  for (int i = 0; i < 2; ++i) one_scale.data<float>()[i] = i == 0 ? 0.25f : -0.25f;
  for (int i = 0; i < 8; ++i) input.data<float>()[i] = 1.0f;
  runtime::KernelCall relu_call{node, 17, {&input, &w, &one_scale, nullptr, nullptr}, "Relu"};
  auto relu = RunWeightOnlyNode(relu_call, 1);
  ASSERT_TRUE(relu.has_value() && relu->ok()) << (relu ? relu->status() : absl::OkStatus());
  // Row 0: 4 * (1.75 + 0.25) * 1 = 8; row 1 the same times -1, then Relu: 0.
  EXPECT_EQ((*relu)->at(0).data<float>()[0], 8.0f);
  EXPECT_EQ((*relu)->at(0).data<float>()[1], 0.0f);
  relu_call.fused_activation = "Sigmoid";
  EXPECT_FALSE(RunWeightOnlyNode(relu_call, 1)->ok());
  node.attributes["out"] = int64_t{0};
  auto no_out = RunWeightOnlyNode(call, 1);
  ASSERT_TRUE(no_out.has_value());
  EXPECT_NE(no_out->status().message().find("in and out > 0"), std::string::npos) << no_out->status();
  node.op_type = kLutMatMulOp;
  EXPECT_FALSE(RunWeightOnlyNode(call, 1)->ok());
  node.op_type = "Gemm";
  EXPECT_FALSE(RunWeightOnlyNode(call, 1).has_value());
}

}  // namespace
}  // namespace squeeze::core::quant::gemm
