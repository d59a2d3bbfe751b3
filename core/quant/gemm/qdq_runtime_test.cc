// UseInt8Kernels + CreateInt8QdqBackend against the simulated graphs of
// core/quant/ptq: same outputs up to float summation order (and the odd
// activation that then rounds to the neighbouring int8 step), non-matching
// layers left alone.
#include "core/quant/gemm/qdq_runtime.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <cstdlib>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/graph/builder.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/onnx/onnx_model.h"
#include "core/quant/gemm/gemm_dispatch.h"
#include "core/quant/gemm/runtime_test_util.h"
#include "core/quant/ptq/ptq.h"
#include "core/quant/ptq/test_models.h"
#include "core/runtime/executor.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant::gemm {
namespace {

using graph::DataType;
using graph::Graph;
using graph::Tensor;
using ptq::CalibrationBatch;

// ptq's small model without the tied head: Conv -> Relu -> Flatten -> Gemm
// -> Relu -> MatMul(Transpose(W)) = logits.
Graph ConvModel(uint32_t seed) { return ptq::SmallModel(seed, /*tied_head=*/false); }

// image [N, c, 9, 8] -> Conv 3x2 to `mid` channels (stride 2x1, dilation
// 1x2, pads 1,0,2,1) -> Relu -> Conv 1x1 -> y: strides, dilations, uneven
// padding, and padding with the int8 zero point (signed input). Channels
// that are multiples of 4 take the int8 Conv's channel-group im2col.
Graph ConvGeometryModel(uint32_t seed, int64_t c = 3, int64_t mid = 5) {
  std::mt19937 rng(seed);
  graph::GraphBuilder b("conv_geometry");
  std::string x = b.Add("Conv", {"image", b.Initializer("c1.weight", Random({mid, c, 3, 2}, &rng, 0.4f)),
                                 b.Initializer("c1.bias", Random({mid}, &rng, 0.1f))},
                        {{"pads", std::vector<int64_t>{1, 0, 2, 1}}, {"kernel_shape", std::vector<int64_t>{3, 2}},
                         {"strides", std::vector<int64_t>{2, 1}}, {"dilations", std::vector<int64_t>{1, 2}}});
  b.Add("Conv", {b.Add("Relu", {x}), b.Initializer("c2.weight", Random({4, mid, 1, 1}, &rng, 0.4f))},
        {{"kernel_shape", std::vector<int64_t>{1, 1}}}, "y");
  b.AddInput({"image", DataType::kFloat32, std::nullopt});
  b.AddOutput({"y", DataType::kFloat32, std::nullopt});
  return b.Finish();
}

// x [N, 24] (signed: int8 activations) -> Gemm [10, 24] without bias -> y.
Graph SignedInputModel(uint32_t seed) {
  std::mt19937 rng(seed);
  graph::GraphBuilder b("signed");
  b.Add("Gemm", {"x", b.Initializer("fc.weight", Random({10, 24}, &rng, 0.2f))}, {{"transB", int64_t{1}}}, "y");
  b.AddInput({"x", DataType::kFloat32, std::nullopt});
  b.AddOutput({"y", DataType::kFloat32, std::nullopt});
  return b.Finish();
}

std::vector<CalibrationBatch> Batches(const std::string& input, std::vector<int64_t> shape, int count,
                                      uint32_t seed, bool nonnegative) {
  std::mt19937 rng(seed);
  std::vector<CalibrationBatch> batches;
  for (int i = 0; i < count; ++i) {
    Tensor t = Random(shape, &rng);
    if (nonnegative) {
      for (int64_t j = 0; j < t.num_elements(); ++j) t.data<float>()[j] = std::fabs(t.data<float>()[j]) * 0.5f;
    }
    batches.push_back({{input, std::move(t)}});
  }
  return batches;
}

std::map<std::string, QuantizedLinear> PackedByWeight(const Graph& original, const ptq::PtqResult& result) {
  auto scan = ptq::FindQuantizableLayers(original);
  EXPECT_TRUE(scan.ok());
  std::map<std::string, std::string> weight_of;
  for (const auto& layer : scan->layers) weight_of[layer.name] = layer.weight;
  std::map<std::string, QuantizedLinear> packed;
  for (const QuantizedLinear& linear : result.packed) packed[weight_of.at(linear.name)] = linear;
  return packed;
}

ptq::PtqOptions W8A8() {
  ptq::PtqOptions options;
  options.weights.emplace();
  options.weights->format = {8, 0, false};
  options.activations.emplace();
  return options;
}

// max |a - b| / max |b|.
double MaxRelativeDifference(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    diff = std::max(diff, std::fabs(double{a[i]} - b[i]));
    scale = std::max(scale, std::fabs(double{b[i]}));
  }
  return scale > 0 ? diff / scale : diff;
}

TEST(QdqRuntimeTest, RewritesGemmMatMulAndConvAndMatchesSimulatedGraph) {
  const Graph original = ConvModel(3);
  const auto batches = Batches("image", {8, 2, 6, 6}, 3, 4, /*nonnegative=*/false);
  auto quantized = ptq::QuantizeGraph(original, batches, W8A8());
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  Graph runtime_graph = quantized->graph;
  auto rewrite = UseInt8Kernels(&runtime_graph, PackedByWeight(original, *quantized), {/*conv=*/true});
  ASSERT_TRUE(rewrite.ok()) << rewrite.status();
  EXPECT_EQ(rewrite->int8_layers.size(), 3u);
  EXPECT_TRUE(rewrite->skipped.empty()) << DescribeInt8Rewrite(*rewrite);
  // With conv = false the Conv stays fp32 (with its QDQ pair); that is the
  // default except on the avx512vnni path.
  if (*ResolveGemmPath(GemmPath::kAuto) == GemmPath::kAvx512Vnni) {
    EXPECT_TRUE(Int8RewriteOptions{}.conv);
  }
  for (const char* path : {"scalar", "avx2"}) {
    setenv("SQUEEZE_GEMM_PATH", path, 1);
    if (ResolveGemmPath(GemmPath::kAuto).ok()) {
      EXPECT_FALSE(Int8RewriteOptions{}.conv) << path;
    }
  }
  unsetenv("SQUEEZE_GEMM_PATH");
  Graph default_graph = quantized->graph;
  auto default_rewrite = UseInt8Kernels(&default_graph, PackedByWeight(original, *quantized), {/*conv=*/false});
  ASSERT_TRUE(default_rewrite.ok());
  EXPECT_EQ(default_rewrite->int8_layers.size(), 2u);
  ASSERT_EQ(default_rewrite->skipped.size(), 1u);
  EXPECT_NE(default_rewrite->skipped[0].reason.find("Conv kept on the fp32 kernel"), std::string::npos);
  EXPECT_EQ(CountOps(default_graph, "Conv"), 1);
  EXPECT_EQ(CountOps(default_graph, "QuantizeLinear"), 1);
  EXPECT_EQ(CountOps(runtime_graph, kInt8QdqMatMulOp), 2);
  EXPECT_EQ(CountOps(runtime_graph, kInt8QdqConvOp), 1);
  EXPECT_EQ(CountOps(runtime_graph, "Conv"), 0);
  EXPECT_EQ(CountOps(runtime_graph, "Transpose"), 0);  // fc2's Transpose fed only the layer
  EXPECT_EQ(runtime_graph.initializers.count("fc1.weight"), 0u);
  EXPECT_EQ(runtime_graph.initializers.count("fc2.weight"), 0u);
  // Every QDQ pair goes (QuantizeLinear fused into the int8 nodes).
  EXPECT_EQ(CountOps(runtime_graph, "QuantizeLinear"), 0);
  EXPECT_EQ(CountOps(runtime_graph, "DequantizeLinear"), 0);
  EXPECT_NE(DescribeInt8Rewrite(*rewrite).find("int8 kernels (W8A8, int32 accumulate): "),
            std::string::npos);

  auto cpu = kernels::cpu::CreateCpuBackend(1);
  const auto test = Batches("image", {16, 2, 6, 6}, 1, 99, false)[0];
  const std::vector<float> simulated = RunGraph(quantized->graph, cpu, test);
  const std::vector<float> int8 = RunGraph(runtime_graph, CreateInt8QdqBackend(cpu, 1), test);
  EXPECT_LT(MaxRelativeDifference(int8, simulated), 1e-2);
  // Most outputs agree to float rounding.
  int close = 0;
  for (size_t i = 0; i < int8.size(); ++i) close += std::fabs(int8[i] - simulated[i]) <= 1e-4f * (1 + std::fabs(simulated[i]));
  EXPECT_GE(close, static_cast<int>(int8.size() * 9 / 10));
  // Without the wrapper the runtime-only node is rejected.
  EXPECT_FALSE(runtime::Executor::Create(runtime_graph, cpu).ok());
}

TEST(QdqRuntimeTest, ConvGeometryMatchesSimulatedGraph) {
  const Graph original = ConvGeometryModel(21);
  const auto batches = Batches("image", {4, 3, 9, 8}, 2, 22, /*nonnegative=*/false);
  auto quantized = ptq::QuantizeGraph(original, batches, W8A8());
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  Graph runtime_graph = quantized->graph;
  auto rewrite = UseInt8Kernels(&runtime_graph, PackedByWeight(original, *quantized), {/*conv=*/true});
  ASSERT_TRUE(rewrite.ok()) << rewrite.status();
  EXPECT_EQ(CountOps(runtime_graph, kInt8QdqConvOp), 2) << DescribeInt8Rewrite(*rewrite);
  auto cpu = kernels::cpu::CreateCpuBackend(1);
  const auto test = Batches("image", {3, 3, 9, 8}, 1, 23, false)[0];
  const std::vector<float> simulated = RunGraph(quantized->graph, cpu, test);
  const std::vector<float> int8 = RunGraph(runtime_graph, CreateInt8QdqBackend(cpu, 1), test);
  ASSERT_EQ(simulated.size(), int8.size());
  EXPECT_LT(MaxRelativeDifference(int8, simulated), 1e-2);
  int close = 0;
  for (size_t i = 0; i < int8.size(); ++i) close += std::fabs(int8[i] - simulated[i]) <= 1e-4f * (1 + std::fabs(simulated[i]));
  EXPECT_GE(close, static_cast<int>(int8.size() * 9 / 10));
}

// The int8 Conv runs im2col panels + the transposed VNNI kernel on the
// avx512vnni path and im2col rows + Int8MatMulInt32 + a scalar epilogue
// elsewhere: the same int32 sums and float expressions, so every path gives
// the same bits, with the Relu the executor fuses into the int8 nodes.
TEST(QdqRuntimeTest, Int8ConvGivesTheSameBitsOnEveryPath) {
  for (uint32_t seed : {21u, 22u, 23u}) {
    const Graph original = seed == 21   ? ConvGeometryModel(seed)
                           : seed == 22 ? ConvModel(seed)
                                        : ConvGeometryModel(seed, /*c=*/4, /*mid=*/8);
    const std::vector<int64_t> shape = seed == 21   ? std::vector<int64_t>{3, 3, 9, 8}
                                       : seed == 22 ? std::vector<int64_t>{5, 2, 6, 6}
                                                    : std::vector<int64_t>{3, 4, 9, 8};
    const auto batches = Batches("image", shape, 2, seed + 1, /*nonnegative=*/false);
    auto quantized = ptq::QuantizeGraph(original, batches, W8A8());
    ASSERT_TRUE(quantized.ok()) << quantized.status();
    Graph runtime_graph = quantized->graph;
    ASSERT_TRUE(UseInt8Kernels(&runtime_graph, PackedByWeight(original, *quantized), {/*conv=*/true}).ok());
    EXPECT_EQ(CountOps(runtime_graph, "Conv"), 0);
    int hwc_weights = 0;
    for (const auto& [name, tensor] : runtime_graph.initializers) hwc_weights += absl::EndsWith(name, ".int8_hwc");
    EXPECT_EQ(hwc_weights, seed == 23 ? 2 : 0);
    auto cpu = kernels::cpu::CreateCpuBackend(1);
    const auto test = Batches("image", shape, 1, seed + 2, false)[0];
    // And close to the simulated graph, as the other int8 tests.
    EXPECT_LT(MaxRelativeDifference(RunGraph(runtime_graph, CreateInt8QdqBackend(cpu, 1), test),
                                    RunGraph(quantized->graph, cpu, test)),
              1e-2);
    std::vector<std::vector<float>> outputs;
    std::vector<std::string> names;
    for (const char* path : {"scalar", "avx2", "avxvnni", "avx512vnni"}) {
      setenv("SQUEEZE_GEMM_PATH", path, 1);
      if (!ResolveGemmPath(GemmPath::kAuto).ok()) continue;
      for (int threads : {1, 2}) {
        outputs.push_back(RunGraph(runtime_graph, CreateInt8QdqBackend(cpu, threads), test));
        names.push_back(absl::StrCat(path, " ", threads, " threads"));
      }
    }
    unsetenv("SQUEEZE_GEMM_PATH");
    ASSERT_GE(outputs.size(), 2u);
    for (size_t i = 1; i < outputs.size(); ++i) {
      EXPECT_EQ(outputs[i], outputs[0]) << names[i] << " vs " << names[0] << ", seed " << seed;
    }
  }
}

TEST(QdqRuntimeTest, SignedActivationsUseTheInt8ZeroPoint) {
  const Graph original = SignedInputModel(5);
  const auto batches = Batches("x", {16, 24}, 2, 6, /*nonnegative=*/false);
  auto quantized = ptq::QuantizeGraph(original, batches, W8A8());
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  Graph runtime_graph = quantized->graph;
  auto rewrite = UseInt8Kernels(&runtime_graph, PackedByWeight(original, *quantized));
  ASSERT_TRUE(rewrite.ok()) << rewrite.status();
  ASSERT_EQ(rewrite->int8_layers.size(), 1u);
  const graph::Node* int8 = nullptr;
  for (const auto& node : runtime_graph.nodes) {
    if (node.op_type == kInt8QdqMatMulOp) int8 = &node;
  }
  ASSERT_NE(int8, nullptr);
  EXPECT_EQ(runtime_graph.initializers.at(int8->inputs[2]).dtype(), DataType::kInt8);
  EXPECT_EQ(CountOps(runtime_graph, "QuantizeLinear"), 0);  // fused into the int8 node
  EXPECT_EQ(runtime_graph.initializers.at(int8->inputs[1]).num_elements(), 1);
  auto cpu = kernels::cpu::CreateCpuBackend(1);
  auto test = Batches("x", {5, 24}, 1, 7, false)[0];
  // Ties (x / scale = k + 0.5, both signs) and values far outside the range:
  // the fused quantization must round and clamp exactly as QuantizeLinear.
  const float scale = *runtime_graph.initializers.at(int8->inputs[1]).data<float>();
  float* x = test.at("x").data<float>();
  for (int i = 0; i < 24; ++i) x[i] = (static_cast<float>(i - 12) + 0.5f) * scale;
  x[24] = 1e6f;
  x[25] = -1e6f;
  // One layer: the integer activations are identical, only summation order differs.
  EXPECT_LT(MaxRelativeDifference(RunGraph(runtime_graph, CreateInt8QdqBackend(cpu, 1), test),
                                  RunGraph(quantized->graph, cpu, test)),
            1e-5);
}

// x -> QuantizeLinear -> DequantizeLinear -> y, per tensor, both zero point types.
TEST(QdqRuntimeTest, PerTensorQdqMatchesTheCpuKernelsBitForBit) {
  for (DataType type : {DataType::kUInt8, DataType::kInt8}) {
    graph::GraphBuilder b("qdq");
    const float scale = 0.037f;
    b.Initializer("s", Tensor::FromVector<float>(DataType::kFloat32, {}, {scale}));
    Tensor zero(type, {});
    zero.data<uint8_t>()[0] = type == DataType::kInt8 ? static_cast<uint8_t>(-5) : 17;
    b.Initializer("z", zero);
    const std::string q = b.Add("QuantizeLinear", {"x", "s", "z"}, {}, "q");
    b.Add("DequantizeLinear", {q, "s", "z"}, {}, "y");
    b.AddInput({"x", DataType::kFloat32, std::nullopt});
    b.AddOutput({"q", type, std::nullopt});
    b.AddOutput({"y", DataType::kFloat32, std::nullopt});
    const Graph graph = b.Finish();
    std::mt19937 rng(1);
    CalibrationBatch feed = {{"x", Random({3, 100}, &rng, 3.0f)}};
    float* x = feed.at("x").data<float>();
    for (int i = 0; i < 60; ++i) x[i] = (static_cast<float>(i - 30) + 0.5f) * scale;  // ties
    x[60] = 1e9f;
    x[61] = -1e9f;
    x[62] = std::nanf("");
    auto cpu = kernels::cpu::CreateCpuBackend(1);
    auto reference = runtime::Executor::Create(graph, cpu)->Run(feed);
    auto fast = runtime::Executor::Create(graph, CreateInt8QdqBackend(cpu, 1))->Run(feed);
    ASSERT_TRUE(reference.ok() && fast.ok());
    for (int output = 0; output < 2; ++output) {
      ASSERT_EQ(reference->at(output).dtype(), fast->at(output).dtype());
      const auto a = reference->at(output).ToDoubles(), c = fast->at(output).ToDoubles();
      for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], c[i]) << "output " << output << " element " << i;
    }
  }
}

TEST(QdqRuntimeTest, LeavesWeightOnlyAndInt4LayersAlone) {
  const Graph original = SignedInputModel(8);
  const auto batches = Batches("x", {16, 24}, 2, 9, false);
  ptq::PtqOptions weight_only;
  weight_only.weights.emplace();
  weight_only.weights->format = {8, 0, false};
  ptq::PtqOptions w4a8 = W8A8();
  w4a8.weights->format = {4, 0, false};
  for (const auto& [options, reason] : std::vector<std::pair<ptq::PtqOptions, std::string>>{
           {weight_only, "no activation QDQ pair"}, {w4a8, "int8-pc-sym"}}) {
    auto quantized = ptq::QuantizeGraph(original, batches, options);
    ASSERT_TRUE(quantized.ok()) << quantized.status();
    Graph runtime_graph = quantized->graph;
    auto rewrite = UseInt8Kernels(&runtime_graph, PackedByWeight(original, *quantized));
    ASSERT_TRUE(rewrite.ok()) << rewrite.status();
    EXPECT_TRUE(rewrite->int8_layers.empty());
    ASSERT_EQ(rewrite->skipped.size(), 1u);
    EXPECT_NE(rewrite->skipped[0].reason.find(reason), std::string::npos) << rewrite->skipped[0].reason;
    EXPECT_EQ(runtime_graph.nodes.size(), quantized->graph.nodes.size());
  }
  // No packed weights at all: nothing changes.
  Graph untouched = original;
  auto rewrite = UseInt8Kernels(&untouched, {});
  ASSERT_TRUE(rewrite.ok());
  EXPECT_TRUE(rewrite->int8_layers.empty());
  EXPECT_EQ(CountOps(untouched, "Gemm"), 1);
}

TEST(QdqRuntimeTest, PackedWeightThatDiffersFromTheGraphIsSkipped) {
  const Graph original = SignedInputModel(10);
  const auto batches = Batches("x", {16, 24}, 2, 11, false);
  auto quantized = ptq::QuantizeGraph(original, batches, W8A8());
  ASSERT_TRUE(quantized.ok());
  Graph runtime_graph = quantized->graph;
  runtime_graph.initializers.at("fc.weight").data<float>()[3] += 1.0f;
  auto rewrite = UseInt8Kernels(&runtime_graph, PackedByWeight(original, *quantized));
  ASSERT_TRUE(rewrite.ok());
  EXPECT_TRUE(rewrite->int8_layers.empty());
  ASSERT_EQ(rewrite->skipped.size(), 1u);
  EXPECT_NE(rewrite->skipped[0].reason.find("does not dequantize"), std::string::npos);
}

TEST(QdqRuntimeTest, FashionMnistMlpW8A8MatchesSimulatedGraph) {
  auto original = onnx::LoadOnnxModel(std::string(SQUEEZE_SOURCE_DIR) + "/deploy/models/fashion_mnist_mlp.onnx");
  ASSERT_TRUE(original.ok()) << original.status();
  ASSERT_EQ(original->inputs.size(), 1u);
  const auto& input = original->inputs[0];
  ASSERT_TRUE(input.shape.has_value());
  auto shape_for = [&](int64_t batch) {
    std::vector<int64_t> shape;
    for (const graph::Dim& dim : *input.shape) shape.push_back(dim.value.value_or(batch));
    return shape;
  };
  // Pixel-like inputs in [0, 1).
  const auto batches = Batches(input.name, shape_for(32), 4, 12, /*nonnegative=*/true);
  auto quantized = ptq::QuantizeGraph(*original, batches, W8A8());
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  Graph runtime_graph = quantized->graph;
  auto rewrite = UseInt8Kernels(&runtime_graph, PackedByWeight(*original, *quantized));
  ASSERT_TRUE(rewrite.ok()) << rewrite.status();
  EXPECT_EQ(rewrite->int8_layers.size(), quantized->layers.size()) << DescribeInt8Rewrite(*rewrite);
  EXPECT_TRUE(rewrite->skipped.empty()) << DescribeInt8Rewrite(*rewrite);
  auto cpu = kernels::cpu::CreateCpuBackend(1);
  auto int8_backend = CreateInt8QdqBackend(cpu, 1);
  for (int64_t batch : {1, 8, 32}) {
    const auto test = Batches(input.name, shape_for(batch), 1, 100 + static_cast<uint32_t>(batch), true)[0];
    const std::vector<float> simulated = RunGraph(quantized->graph, cpu, test);
    const std::vector<float> int8 = RunGraph(runtime_graph, int8_backend, test);
    EXPECT_LT(MaxRelativeDifference(int8, simulated), 1e-2) << "batch " << batch;
    // The predicted class agrees on (nearly) every example.
    const int64_t classes = static_cast<int64_t>(simulated.size()) / batch;
    int64_t agree = 0;
    for (int64_t r = 0; r < batch; ++r) {
      const auto s = simulated.begin() + r * classes, q = int8.begin() + r * classes;
      agree += std::max_element(s, s + classes) - s == std::max_element(q, q + classes) - q;
    }
    EXPECT_GE(agree, batch - std::max<int64_t>(1, batch / 16)) << "batch " << batch;
  }
}

}  // namespace
}  // namespace squeeze::core::quant::gemm
