// UseWeightOnlyKernels + the int8/low-bit backend against the simulated
// graphs of core/quant/ptq (weight-only RTN/GPTQ int4, int3, int2) and of
// k-means codebooks, for Gemm/MatMul and 2-D Conv layers: the same outputs
// up to float summation order, the float weights gone from the runtime
// graph, layers that do not match left fp32 with the reason.
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
#include "core/quant/rtn.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"
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
// 1 channel Conv and a Flatten.
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

// x [N, 4, 9, 9] -> Conv 2x2 [8] (stride 2, pads 1, bias) -> Relu -> Conv
// 2x2 [16] (dilation 2, strides (1, 2), pads top 0 left 1 bottom 1 right 0,
// no bias) -> Relu -> Conv 3x3 [4] (pads 1, bias) -> y [N, 4, 4, 2]. Every
// layer's in (16, 32, 144) is a multiple of 16, for the grouped formats.
// With `grouped`, a group-2 Conv 1x1 [4] (not quantizable) follows.
Graph ConvNet(uint32_t seed, bool grouped = false) {
  std::mt19937 rng(seed);
  graph::GraphBuilder b("convnet");
  std::string x = b.Add("Conv", {"x", b.Initializer("conv1.weight", Random({8, 4, 2, 2}, &rng, 0.4f)),
                                 b.Initializer("conv1.bias", Random({8}, &rng, 0.1f))},
                        {{"strides", std::vector<int64_t>{2, 2}}, {"pads", std::vector<int64_t>{1, 1, 1, 1}},
                         {"kernel_shape", std::vector<int64_t>{2, 2}}});
  x = b.Add("Conv", {b.Add("Relu", {x}), b.Initializer("conv2.weight", Random({16, 8, 2, 2}, &rng, 0.3f))},
            {{"strides", std::vector<int64_t>{1, 2}}, {"dilations", std::vector<int64_t>{2, 2}},
             {"pads", std::vector<int64_t>{0, 1, 1, 0}}, {"kernel_shape", std::vector<int64_t>{2, 2}}});
  x = b.Add("Conv", {b.Add("Relu", {x}), b.Initializer("conv3.weight", Random({4, 16, 3, 3}, &rng, 0.2f)),
                     b.Initializer("conv3.bias", Random({4}, &rng, 0.1f))},
            {{"pads", std::vector<int64_t>{1, 1, 1, 1}}, {"kernel_shape", std::vector<int64_t>{3, 3}}},
            grouped ? "" : "y");
  if (grouped) {
    b.Add("Conv", {x, b.Initializer("grouped.weight", Random({4, 2, 1, 1}, &rng, 0.5f))},
          {{"group", int64_t{2}}, {"kernel_shape", std::vector<int64_t>{1, 1}}}, "y");
  }
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

// `original` quantized by core/quant/ptq with `format`, calibrated on
// `calibration`, and its packed weights keyed by weight initializer.
struct Quantized {
  ptq::PtqResult ptq;
  std::map<std::string, QuantizedLinear> packed;
};
absl::StatusOr<Quantized> QuantizeWeights(const Graph& original, const Format& format,
                                          const std::vector<CalibrationBatch>& calibration) {
  ptq::PtqOptions options;
  options.weights.emplace();
  options.weights->method = format.method;
  options.weights->format = format.rtn;
  if (format.activations) options.activations.emplace();
  SQ_ASSIGN_OR_RETURN(ptq::PtqResult result, ptq::QuantizeGraph(original, calibration, options));
  const auto weight_of = WeightOf(original);
  Quantized quantized{std::move(result), {}};
  for (const QuantizedLinear& linear : quantized.ptq.packed) quantized.packed[weight_of.at(linear.name)] = linear;
  return quantized;
}

// `original` quantized with `format` (calibrated on inputs [16, sample...]),
// then UseInt8Kernels (which takes nothing: no int8 weights) and
// UseWeightOnlyKernels: all three layers become `op` nodes, no Gemm,
// MatMul, Conv or Transpose and no float weight is left, the weights take
// under a third of the bytes, and the outputs ([batch, outputs] elements)
// equal the simulated graph's for inputs [batch, sample...] with each of
// `batches`.
void CheckRtnRewrite(const Graph& original, const Format& format, const char* op, const std::vector<int64_t>& sample,
                     int64_t outputs, const std::vector<int64_t>& batches, uint32_t seed) {
  auto with_batch = [&sample](int64_t batch) {
    std::vector<int64_t> shape = {batch};
    shape.insert(shape.end(), sample.begin(), sample.end());
    return shape;
  };
  auto quantized = QuantizeWeights(original, format, Batches(with_batch(16), 2, seed));
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  const std::map<std::string, QuantizedLinear>& packed = quantized->packed;
  ASSERT_EQ(packed.size(), 3u);
  const Graph& simulated = quantized->ptq.graph;

  Graph runtime_graph = simulated;
  auto int8 = UseInt8Kernels(&runtime_graph, packed);
  ASSERT_TRUE(int8.ok()) << int8.status();
  EXPECT_TRUE(int8->int8_layers.empty());
  auto rewrite = UseWeightOnlyKernels(&runtime_graph, packed, {});
  ASSERT_TRUE(rewrite.ok()) << rewrite.status();
  EXPECT_EQ(rewrite->low_bit_layers.size(), 3u) << DescribeWeightOnlyRewrite(*rewrite);
  EXPECT_TRUE(rewrite->skipped.empty()) << DescribeWeightOnlyRewrite(*rewrite);
  EXPECT_EQ(CountOps(runtime_graph, op), 3);
  for (const char* layer_op : {"Gemm", "MatMul", "Conv", "Transpose"}) EXPECT_EQ(CountOps(runtime_graph, layer_op), 0);
  for (const auto& [weight, linear] : packed) EXPECT_EQ(runtime_graph.initializers.count(weight), 0u) << weight;
  // Nibbles (4 bits a weight whatever the width) + scales: under a third of fp32.
  EXPECT_LT(InitializerBytes(runtime_graph) * 3, InitializerBytes(simulated));

  auto cpu = kernels::cpu::CreateCpuBackend(1);
  auto backend = CreateInt8QdqBackend(cpu, 1);
  for (int64_t batch : batches) {
    const CalibrationBatch test = Batches(with_batch(batch), 1, seed + 30 + static_cast<uint32_t>(batch))[0];
    const std::vector<float> expected = RunGraph(simulated, cpu, test);
    ASSERT_EQ(expected.size(), static_cast<size_t>(batch * outputs));
    EXPECT_LT(MaxDifference(RunGraph(runtime_graph, backend, test), expected), 1e-5) << "batch " << batch;
  }
  // Without the low-bit backend the runtime-only node is rejected.
  EXPECT_FALSE(runtime::Executor::Create(runtime_graph, cpu).ok());
}

class WeightOnlyRuntimeTest : public ::testing::TestWithParam<Format> {};

TEST_P(WeightOnlyRuntimeTest, MatchesSimulatedGraphAndDropsFloatWeights) {
  // Batch 1 and 3: the GEMV; 17: the panel GEMM.
  CheckRtnRewrite(Mlp(5), GetParam(), kLowBitMatMulOp, {64}, 10, {1, 3, 17}, 6);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, WeightOnlyRuntimeTest,
    ::testing::Values(Format{ptq::WeightMethod::kRtn, {4, 0, false}, false},   // int4 per channel
                      Format{ptq::WeightMethod::kRtn, {4, 16, true}, false},   // int4 g16 asymmetric
                      Format{ptq::WeightMethod::kGptq, {4, 8, false}, false},  // GPTQ int4 g8
                      Format{ptq::WeightMethod::kRtn, {3, 16, false}, false},  // int3
                      Format{ptq::WeightMethod::kRtn, {2, 0, true}, false},    // int2
                      Format{ptq::WeightMethod::kRtn, {4, 16, false}, true}));  // W4A8: float after the QDQ pair

// k-means codebooks at 2, 3 and 4 bits, per layer and per row, for the three
// layers of `original`: all become `op` nodes, the float weights leave the
// graph (its bytes change by exactly the weights out and the indices and
// codebooks in), and the outputs equal the simulated graph's for inputs
// [batch, sample...] with each of `batches`.
void CheckCodebookRewrite(const Graph& original, const char* op, const std::vector<int64_t>& sample,
                          const std::vector<int64_t>& batches, uint32_t seed) {
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
      ASSERT_EQ(codebooks.size(), 3u);
      Graph runtime_graph = quantized->graph;
      auto rewrite = UseWeightOnlyKernels(&runtime_graph, {}, codebooks);
      ASSERT_TRUE(rewrite.ok()) << rewrite.status();
      EXPECT_EQ(rewrite->lut_layers.size(), 3u) << DescribeWeightOnlyRewrite(*rewrite);
      EXPECT_EQ(CountOps(runtime_graph, op), 3);
      for (const auto& [weight, linear] : codebooks) EXPECT_EQ(runtime_graph.initializers.count(weight), 0u) << weight;
      // Exactly: the float weights out, the packed indices and codebooks in.
      int64_t expected = InitializerBytes(quantized->graph);
      for (const CodebookLinear& linear : quantized->layers) {
        expected +=
            static_cast<int64_t>(linear.packed.size() + 4 * linear.codebook.size()) - 4 * linear.out * linear.in;
      }
      EXPECT_EQ(InitializerBytes(runtime_graph), expected);
      auto cpu = kernels::cpu::CreateCpuBackend(1);
      for (int64_t batch : batches) {
        std::vector<int64_t> shape = {batch};
        shape.insert(shape.end(), sample.begin(), sample.end());
        const CalibrationBatch test = Batches(shape, 1, seed + static_cast<uint32_t>(batch))[0];
        EXPECT_LT(MaxDifference(RunGraph(runtime_graph, CreateInt8QdqBackend(cpu, 1), test),
                                RunGraph(quantized->graph, cpu, test)),
                  1e-5)
            << bits << " bits, per row " << per_row << ", batch " << batch;
      }
    }
  }
}

TEST(WeightOnlyRuntimeCodebookTest, MatchesSimulatedGraphPerLayerAndPerRow) {
  CheckCodebookRewrite(Mlp(9), kLutMatMulOp, {64}, {1, 9}, 70);
}

// The 2-D Conv formats: RTN int4/int3/int2, symmetric and asymmetric, per
// channel and g16, plus GPTQ int4 g16 and W4A8 (float after the QDQ pair).
std::vector<Format> ConvFormats() {
  std::vector<Format> formats;
  for (int bits : {4, 3, 2}) {
    for (bool asymmetric : {false, true}) {
      for (int group : {0, 16}) formats.push_back({ptq::WeightMethod::kRtn, {bits, group, asymmetric}, false});
    }
  }
  formats.push_back({ptq::WeightMethod::kGptq, {4, 16, false}, false});
  formats.push_back({ptq::WeightMethod::kRtn, {4, 0, false}, true});
  return formats;
}

class WeightOnlyConvRuntimeTest : public ::testing::TestWithParam<Format> {};

TEST_P(WeightOnlyConvRuntimeTest, MatchesSimulatedGraphAndDropsFloatConvWeights) {
  CheckRtnRewrite(ConvNet(21), GetParam(), kLowBitConvOp, {4, 9, 9}, 4 * 4 * 2, {1, 3}, 22);
}

INSTANTIATE_TEST_SUITE_P(Formats, WeightOnlyConvRuntimeTest, ::testing::ValuesIn(ConvFormats()));

TEST(WeightOnlyConvRuntimeTest, CodebookConvsMatchSimulatedGraphPerLayerAndPerRow) {
  CheckCodebookRewrite(ConvNet(23), kLutConvOp, {4, 9, 9}, {1, 3}, 80);
}

// A grouped Conv is no quantizable layer: even with a packed weight it stays
// fp32 with the scan's reason, and the other Convs are rewritten around it
// (unless conv = false).
TEST(WeightOnlyConvRuntimeTest, GroupedConvStaysFp32WithTheReason) {
  const Graph original = ConvNet(25, /*grouped=*/true);
  auto quantized = QuantizeWeights(original, {ptq::WeightMethod::kRtn, {4, 0, false}, false},
                                   Batches({4, 4, 9, 9}, 2, 26));
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  std::map<std::string, QuantizedLinear> packed = quantized->packed;
  ASSERT_EQ(packed.size(), 3u);
  const std::vector<float> grouped = original.initializers.at("grouped.weight").ToFloats();  // [4, 2, 1, 1]
  auto grouped_q = QuantizeRtn(model::LinearLayer{"grouped", 2, 4, grouped, {}}, {4, 0, false});
  ASSERT_TRUE(grouped_q.ok()) << grouped_q.status();
  packed["grouped.weight"] = *grouped_q;
  Graph runtime_graph = quantized->ptq.graph;
  auto rewrite = UseWeightOnlyKernels(&runtime_graph, packed, {});
  ASSERT_TRUE(rewrite.ok()) << rewrite.status();
  EXPECT_EQ(rewrite->low_bit_layers.size(), 3u) << DescribeWeightOnlyRewrite(*rewrite);
  ASSERT_EQ(rewrite->skipped.size(), 1u) << DescribeWeightOnlyRewrite(*rewrite);
  EXPECT_EQ(rewrite->skipped[0].reason, "grouped convolution");
  EXPECT_NE(DescribeWeightOnlyRewrite(*rewrite).find("fp32: Conv_"), std::string::npos)
      << DescribeWeightOnlyRewrite(*rewrite);
  EXPECT_EQ(CountOps(runtime_graph, "Conv"), 1);
  EXPECT_EQ(runtime_graph.initializers.count("grouped.weight"), 1u);
  auto cpu = kernels::cpu::CreateCpuBackend(1);
  const CalibrationBatch test = Batches({3, 4, 9, 9}, 1, 27)[0];
  EXPECT_LT(MaxDifference(RunGraph(runtime_graph, CreateInt8QdqBackend(cpu, 1), test),
                          RunGraph(quantized->ptq.graph, cpu, test)),
            1e-5);
  // conv = false: every Conv stays fp32, the three quantizable ones with that reason.
  WeightOnlyRewriteOptions fp32_convs;
  fp32_convs.conv = false;
  Graph kept_graph = quantized->ptq.graph;
  auto kept = UseWeightOnlyKernels(&kept_graph, packed, {}, fp32_convs);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_TRUE(kept->low_bit_layers.empty());
  ASSERT_EQ(kept->skipped.size(), 4u) << DescribeWeightOnlyRewrite(*kept);
  EXPECT_EQ(kept->skipped[3].reason, "Conv kept on the fp32 kernel (conv = false)");
  EXPECT_EQ(CountOps(kept_graph, "Conv"), 4);
  EXPECT_EQ(InitializerBytes(kept_graph), InitializerBytes(quantized->ptq.graph));
}

// A hand-checked Conv node: X all ones [1, 2, 3, 3], a 2x2 kernel whose
// weights alternate 1.75, 0.25 (row 0) and their negatives (row 1), pad_top
// 1: the first output row sees only the kernel's second row (sum 4), the
// others all of it (sum 8). Inputs that do not fit the geometry are
// INVALID_ARGUMENT naming the node.
TEST(WeightOnlyConvRuntimeTest, ConvNodeComputesByHandAndRejectsMismatchedInputs) {
  auto cpu = kernels::cpu::CreateCpuBackend(1);
  graph::Node node;
  node.name = "conv9";
  node.op_type = kLowBitConvOp;
  node.attributes = {{"in", int64_t{8}},       {"out", int64_t{2}},      {"bits", int64_t{4}},
                     {"group_size", int64_t{0}}, {"asymmetric", int64_t{0}}, {"c", int64_t{2}},
                     {"kernel_h", int64_t{2}}, {"kernel_w", int64_t{2}}, {"pad_top", int64_t{1}}};
  Tensor packed(DataType::kUInt8, {8}), scales(DataType::kFloat32, {2}), x(DataType::kFloat32, {1, 2, 3, 3});
  std::fill(packed.data<uint8_t>(), packed.data<uint8_t>() + 8, uint8_t{0x9f});  // q = 7 and 1: 1.75 and 0.25
  scales.data<float>()[0] = 0.25f;
  scales.data<float>()[1] = -0.25f;
  std::fill(x.data<float>(), x.data<float>() + x.num_elements(), 1.0f);
  runtime::KernelCall call{node, 17, {&x, &packed, &scales, nullptr, nullptr}};
  auto result = RunWeightOnlyNode(call, 1, *cpu);
  ASSERT_TRUE(result.has_value() && result->ok()) << (result ? result->status() : absl::OkStatus());
  const Tensor& y = (*result)->at(0);
  ASSERT_EQ(y.shape(), (std::vector<int64_t>{1, 2, 3, 2}));  // OH = (3 + 1 - 2) + 1, OW = 3 - 2 + 1
  const std::vector<float> expected = {4, 4, 8, 8, 8, 8, -4, -4, -8, -8, -8, -8};
  EXPECT_EQ(y.ToFloats(), expected);
  Tensor three_channels(DataType::kFloat32, {1, 3, 3, 3}), flat(DataType::kFloat32, {2, 8});
  for (const Tensor* bad : {&three_channels, &flat}) {
    call.inputs[0] = bad;
    auto rejected = RunWeightOnlyNode(call, 1, *cpu);
    ASSERT_TRUE(rejected.has_value());
    ASSERT_FALSE(rejected->ok());
    EXPECT_EQ(rejected->status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(rejected->status().message().find("conv9"), std::string::npos) << rejected->status();
  }
  call.inputs[0] = &x;
  node.attributes["stride_w"] = int64_t{0};
  EXPECT_FALSE(RunWeightOnlyNode(call, 1, *cpu)->ok());
}

// A weight changed after quantization and a weight with an unusable packed
// form stay fp32 with the reason; the rest (the Conv included) is rewritten
// and the graph still computes the simulated graph's outputs.
TEST(WeightOnlyRuntimeTest, SkipsLayersItCannotTakeWithTheReason) {
  const Graph original = Mlp(11, /*conv=*/true);
  auto quantized = QuantizeWeights(original, {ptq::WeightMethod::kRtn, {4, 0, false}, false},
                                   Batches({4, 1, 8, 8}, 2, 12));
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  const auto weight_of = WeightOf(original);
  std::map<std::string, QuantizedLinear> packed = quantized->packed;
  Graph simulated = quantized->ptq.graph;
  simulated.initializers.at("fc2.weight").data<float>()[5] += 0.25f;  // changed after quantization
  packed.at("fc3.weight").scales.pop_back();                          // inconsistent packed form
  Graph runtime_graph = simulated;
  auto rewrite = UseWeightOnlyKernels(&runtime_graph, packed, {});
  ASSERT_TRUE(rewrite.ok()) << rewrite.status();
  EXPECT_EQ(rewrite->low_bit_layers.size(), 2u);
  std::map<std::string, std::string> reasons;
  for (const auto& skipped : rewrite->skipped) reasons[weight_of.at(skipped.name)] = skipped.reason;
  ASSERT_EQ(reasons.size(), 2u) << DescribeWeightOnlyRewrite(*rewrite);
  EXPECT_EQ(CountOps(runtime_graph, kLowBitConvOp), 1);
  EXPECT_EQ(runtime_graph.initializers.count("conv.weight"), 0u);
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
  auto cpu = kernels::cpu::CreateCpuBackend(1);
  graph::Node node;
  node.name = "fc9";
  node.op_type = kLowBitMatMulOp;
  node.attributes = {{"in", int64_t{8}}, {"out", int64_t{2}}, {"bits", int64_t{4}}, {"group_size", int64_t{0}},
                     {"asymmetric", int64_t{0}}};
  Tensor x(DataType::kFloat32, {1, 8}), packed(DataType::kUInt8, {8}), scales(DataType::kFloat32, {3});
  runtime::KernelCall call{node, 17, {&x, &packed, &scales, nullptr, nullptr}};
  auto result = RunWeightOnlyNode(call, 1, *cpu);
  ASSERT_TRUE(result.has_value());
  ASSERT_FALSE(result->ok());
  EXPECT_NE(result->status().message().find("fc9"), std::string::npos) << result->status();
  Tensor wrong_x(DataType::kFloat32, {1, 7});
  call.inputs[0] = &wrong_x;
  call.inputs[2] = &scales;
  EXPECT_FALSE(RunWeightOnlyNode(call, 1, *cpu)->ok());
  // A fused Relu is applied (the backend offers it); other activations are refused.
  EXPECT_TRUE(CreateInt8QdqBackend(kernels::cpu::CreateCpuBackend(1), 1)->FusesActivation(node, "Relu"));
  EXPECT_FALSE(CreateInt8QdqBackend(kernels::cpu::CreateCpuBackend(1), 1)->FusesActivation(node, "Sigmoid"));
  std::vector<uint8_t> nibbles(8, 0x9f);  // q = 7 and 1 (symmetric offset 8): w = 1.75 and 0.25 (scale 0.25)
  Tensor w(DataType::kUInt8, {8}), one_scale(DataType::kFloat32, {2}), input(DataType::kFloat32, {1, 8});
  std::copy(nibbles.begin(), nibbles.end(), w.data<uint8_t>());
  for (int i = 0; i < 2; ++i) one_scale.data<float>()[i] = i == 0 ? 0.25f : -0.25f;
  for (int i = 0; i < 8; ++i) input.data<float>()[i] = 1.0f;
  runtime::KernelCall relu_call{node, 17, {&input, &w, &one_scale, nullptr, nullptr}, "Relu"};
  auto relu = RunWeightOnlyNode(relu_call, 1, *cpu);
  ASSERT_TRUE(relu.has_value() && relu->ok()) << (relu ? relu->status() : absl::OkStatus());
  // Row 0: 4 * (1.75 + 0.25) * 1 = 8; row 1 the same times -1, then Relu: 0.
  EXPECT_EQ((*relu)->at(0).data<float>()[0], 8.0f);
  EXPECT_EQ((*relu)->at(0).data<float>()[1], 0.0f);
  relu_call.fused_activation = "Sigmoid";
  EXPECT_FALSE(RunWeightOnlyNode(relu_call, 1, *cpu)->ok());
  node.attributes["out"] = int64_t{0};
  auto no_out = RunWeightOnlyNode(call, 1, *cpu);
  ASSERT_TRUE(no_out.has_value());
  EXPECT_NE(no_out->status().message().find("in and out > 0"), std::string::npos) << no_out->status();
  node.op_type = kLutMatMulOp;
  EXPECT_FALSE(RunWeightOnlyNode(call, 1, *cpu)->ok());
  node.op_type = "Gemm";
  EXPECT_FALSE(RunWeightOnlyNode(call, 1, *cpu).has_value());
}

}  // namespace
}  // namespace squeeze::core::quant::gemm
