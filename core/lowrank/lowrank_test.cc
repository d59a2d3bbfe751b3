#include "core/lowrank/lowrank.h"

#include <cmath>
#include <random>
#include <string>

#include "core/distill/distill.h"
#include "core/graph/builder.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/onnx/onnx_model.h"
#include "core/quant/ptq/layers.h"
#include "core/runtime/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::lowrank {
namespace {

using graph::DataType;
using graph::Graph;
using graph::Tensor;
using ::testing::HasSubstr;

Tensor Random(std::vector<int64_t> shape, std::mt19937* rng, float stddev = 1.0f) {
  Tensor t(DataType::kFloat32, std::move(shape));
  std::normal_distribution<float> normal(0, stddev);
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = normal(*rng);
  return t;
}

// [rows, cols] = A [rows, rank] B [rank, cols] with Gaussian A and B.
Tensor LowRank(int64_t rows, int64_t cols, int64_t rank, std::mt19937* rng) {
  Tensor a = Random({rows, rank}, rng), b = Random({rank, cols}, rng);
  Tensor m(DataType::kFloat32, {rows, cols});
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      double sum = 0;
      for (int64_t k = 0; k < rank; ++k) sum += a.data<float>()[i * rank + k] * b.data<float>()[k * cols + j];
      m.data<float>()[i * cols + j] = static_cast<float>(sum / std::sqrt(rank * cols));
    }
  }
  return m;
}

// W [out, c, kh, kw] = G x0 A x1 B with core G [r2, r1, kh, kw].
Tensor TuckerWeight(int64_t out, int64_t c, int64_t k, int64_t r2, int64_t r1, std::mt19937* rng) {
  Tensor g = Random({r2, r1, k, k}, rng), a = Random({out, r2}, rng), b = Random({c, r1}, rng);
  Tensor w(DataType::kFloat32, {out, c, k, k});
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t ch = 0; ch < c; ++ch) {
      for (int64_t j = 0; j < k * k; ++j) {
        double sum = 0;
        for (int64_t p = 0; p < r2; ++p) {
          for (int64_t q = 0; q < r1; ++q) {
            sum += a.data<float>()[o * r2 + p] * g.data<float>()[(p * r1 + q) * k * k + j] * b.data<float>()[ch * r1 + q];
          }
        }
        w.data<float>()[(o * c + ch) * k * k + j] = static_cast<float>(sum / (r1 * r2 * 3));
      }
    }
  }
  return w;
}

// image [N, 4, 6, 6] -> Conv 3x3 (8 filters, given weight) -> Relu -> Flatten
// -> Gemm (transB, given weight [32, 288]) -> Relu -> MatMul(Transpose(W
// [16, 32])) -> logits.
Graph SmallModel(Tensor conv_weight, Tensor fc1, Tensor fc2, uint32_t seed) {
  std::mt19937 rng(seed);
  graph::GraphBuilder b("small");
  std::string x = b.Add("Conv", {"image", b.Initializer("conv.weight", std::move(conv_weight)),
                                 b.Initializer("conv.bias", Random({8}, &rng, 0.1f))},
                        {{"pads", std::vector<int64_t>{1, 1, 1, 1}},
                         {"kernel_shape", std::vector<int64_t>{3, 3}},
                         {"strides", std::vector<int64_t>{2, 2}}});
  x = b.Add("Flatten", {b.Add("Relu", {x})});
  x = b.Add("Relu", {b.Add("Gemm", {x, b.Initializer("fc1.weight", std::move(fc1)),
                                    b.Initializer("fc1.bias", Random({32}, &rng, 0.1f))},
                           {{"transB", int64_t{1}}})});
  b.Add("MatMul", {x, b.Add("Transpose", {b.Initializer("fc2.weight", std::move(fc2))},
                            {{"perm", std::vector<int64_t>{1, 0}}})},
        {}, "logits");
  b.AddInput({"image", DataType::kFloat32, std::vector<graph::Dim>{{std::nullopt, "batch"}, {4, ""}, {6, ""}, {6, ""}}});
  b.AddOutput({"logits", DataType::kFloat32, std::vector<graph::Dim>{{std::nullopt, "batch"}, {16, ""}}});
  return b.Finish();
}

Graph LowRankModel(uint32_t seed) {
  std::mt19937 rng(seed);
  Tensor conv = Random({8, 4, 3, 3}, &rng, 0.3f);
  Tensor fc1 = LowRank(32, 72, 3, &rng);
  Tensor fc2 = LowRank(16, 32, 2, &rng);
  return SmallModel(std::move(conv), std::move(fc1), std::move(fc2), seed);
}

CalibrationBatch Batch(uint32_t seed) {
  std::mt19937 rng(seed);
  return {{"image", Random({5, 4, 6, 6}, &rng)}};
}

std::vector<float> RunGraph(const Graph& graph, const CalibrationBatch& batch) {
  auto executor = runtime::Executor::Create(graph, kernels::cpu::CreateCpuBackend(1));
  EXPECT_TRUE(executor.ok()) << executor.status();
  auto outputs = executor->Run(batch);
  EXPECT_TRUE(outputs.ok()) << outputs.status();
  return outputs->at(0).ToFloats();
}

double MaxDifference(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) worst = std::max(worst, std::abs(double{a[i]} - b[i]));
  return worst;
}

std::map<std::string, std::string> LayerNames(const Graph& graph) {
  auto scan = quant::ptq::FindQuantizableLayers(graph);
  std::map<std::string, std::string> names;  // op type -> layer name
  for (const auto& layer : scan->layers) names[layer.op_type] = layer.name;
  return names;
}

int CountOps(const Graph& graph, const std::string& op) {
  int count = 0;
  for (const auto& node : graph.nodes) count += node.op_type == op;
  return count;
}

TEST(LowRankTest, ExactRankReproducesTheLinearLayersAndDropsTheTranspose) {
  const Graph graph = LowRankModel(1);
  auto names = LayerNames(graph);
  LowRankOptions options;
  options.mode = RankMode::kExplicit;
  options.ranks = {{names["Gemm"], 3}, {names["MatMul"], 2}};
  auto result = FactorizeGraph(graph, options);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->layers.size(), 2u);
  for (const LayerReport& layer : result->layers) {
    EXPECT_TRUE(layer.factorized) << layer.name;
    EXPECT_EQ(layer.form, "svd");
    EXPECT_LT(layer.relative_error, 1e-5);
    EXPECT_NEAR(layer.retained_energy, 1.0, 1e-9);
  }
  EXPECT_EQ(result->layers[0].params_before, 32 * 72);
  EXPECT_EQ(result->layers[0].params_after, 3 * (32 + 72 + 1));
  EXPECT_EQ(result->layers[1].params_after, 2 * (16 + 32 + 1));
  EXPECT_EQ(result->scales.size(), 2u);
  EXPECT_EQ(CountOps(result->graph, "Transpose"), 0);
  EXPECT_EQ(CountOps(result->graph, "Gemm"), 2);
  EXPECT_EQ(CountOps(result->graph, "MatMul"), 2);
  EXPECT_EQ(CountOps(result->graph, "Mul"), 2);
  EXPECT_FALSE(result->graph.initializers.count("fc1.weight"));
  EXPECT_FALSE(result->graph.initializers.count("fc2.weight"));
  EXPECT_EQ(graph::CountFloatParameters(graph) - graph::CountFloatParameters(result->graph),
            result->params_before - result->params_after);
  const CalibrationBatch batch = Batch(7);
  EXPECT_LT(MaxDifference(RunGraph(graph, batch), RunGraph(result->graph, batch)), 1e-4);
}

TEST(LowRankTest, InOutLayoutsOfMatMulAndGemmAreFactorizedExactly) {
  std::mt19937 rng(17);
  graph::GraphBuilder b("in_out");
  // x [N, 3, 20] -> MatMul [20, 24] -> Reshape [-1, 24] -> Gemm (W [24, 12], transB = 0, alpha, beta).
  std::string x = b.Add("MatMul", {"x", b.Initializer("w1", LowRank(20, 24, 3, &rng))});
  x = b.Add("Reshape", {x, b.Int64s("shape", {-1, 24})});
  b.Add("Gemm", {x, b.Initializer("w2", LowRank(24, 12, 2, &rng)), b.Initializer("b2", Random({12}, &rng))},
        {{"alpha", 0.5f}, {"beta", 2.0f}}, "logits");
  b.AddInput({"x", DataType::kFloat32, std::nullopt});
  b.AddOutput({"logits", DataType::kFloat32, std::nullopt});
  const Graph graph = b.Finish();
  auto names = LayerNames(graph);
  LowRankOptions options;
  options.mode = RankMode::kExplicit;
  options.ranks = {{names["MatMul"], 3}, {names["Gemm"], 2}};
  auto result = FactorizeGraph(graph, options);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->layers.size(), 2u);
  EXPECT_EQ(result->layers[0].out, 24);  // MatMul [in, out] = [20, 24]
  EXPECT_EQ(result->layers[0].in, 20);
  EXPECT_EQ(result->layers[1].out, 12);  // Gemm transB = 0: [in, out] = [24, 12]
  EXPECT_TRUE(result->layers[0].factorized && result->layers[1].factorized);
  EXPECT_EQ(result->graph.initializers.at("w1/lowrank_a").shape(), (std::vector<int64_t>{20, 3}));
  EXPECT_EQ(result->graph.initializers.at("w2/lowrank_a").shape(), (std::vector<int64_t>{2, 24}));
  std::mt19937 input_rng(18);
  const CalibrationBatch batch = {{"x", Random({4, 3, 20}, &input_rng)}};
  EXPECT_LT(MaxDifference(RunGraph(graph, batch), RunGraph(result->graph, batch)), 1e-4);
}

TEST(LowRankTest, FoldingScalesKeepsOutputsAndRemovesMulNodes) {
  const Graph graph = LowRankModel(2);
  LowRankOptions options;
  options.target_ratio = 0.3;
  options.conv = ConvMode::kSvd;
  auto result = FactorizeGraph(graph, options);
  ASSERT_TRUE(result.ok()) << result.status();
  const CalibrationBatch batch = Batch(8);
  const std::vector<float> before = RunGraph(result->graph, batch);
  Graph folded = result->graph;
  ASSERT_TRUE(FoldRankScales(result->scales, &folded).ok());
  EXPECT_EQ(CountOps(folded, "Mul"), 0);
  EXPECT_LT(MaxDifference(before, RunGraph(folded, batch)), 1e-4);
  // The same as asking for folded factors up front.
  options.trainable_scale = false;
  auto direct = FactorizeGraph(graph, options);
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_TRUE(direct->scales.empty());
  EXPECT_LT(MaxDifference(before, RunGraph(direct->graph, batch)), 1e-4);
}

TEST(LowRankTest, TargetRatioPicksTheLargestRankWithinTheRatio) {
  std::mt19937 rng(3);
  const Graph graph = SmallModel(Random({8, 4, 3, 3}, &rng), Random({32, 72}, &rng), Random({16, 32}, &rng), 3);
  LowRankOptions options;
  options.target_ratio = 0.25;
  auto result = FactorizeGraph(graph, options);
  ASSERT_TRUE(result.ok()) << result.status();
  for (const LayerReport& layer : result->layers) {
    ASSERT_TRUE(layer.factorized) << layer.name << ": " << layer.note;
    EXPECT_LE(layer.params_after, 0.25 * layer.params_before) << layer.name;
    EXPECT_GT((layer.rank + 1) * (layer.out + layer.in + 1), 0.25 * layer.params_before) << layer.name;
    // The truncation error of an SVD: squared error = discarded energy.
    EXPECT_NEAR(layer.relative_error * layer.relative_error, 1 - layer.retained_energy, 1e-9);
  }
}

TEST(LowRankTest, EnergyModeKeepsTheEnergyAndLeavesNonSavingLayersAlone) {
  std::mt19937 rng(4);
  const Graph graph = SmallModel(Random({8, 4, 3, 3}, &rng), LowRank(32, 72, 3, &rng), Random({16, 32}, &rng), 4);
  LowRankOptions options;
  options.mode = RankMode::kEnergy;
  options.energy = 0.999;
  auto result = FactorizeGraph(graph, options);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->layers.size(), 2u);
  EXPECT_TRUE(result->layers[0].factorized);
  EXPECT_EQ(result->layers[0].rank, 3);
  EXPECT_GE(result->layers[0].retained_energy, 0.999);
  // A full-rank random [16, 32] needs nearly all 16 ranks: no saving.
  EXPECT_FALSE(result->layers[1].factorized);
  EXPECT_THAT(result->layers[1].note, HasSubstr("would not save parameters"));
  EXPECT_EQ(result->layers[1].params_after, result->layers[1].params_before);
  EXPECT_TRUE(result->graph.initializers.count("fc2.weight"));
}

TEST(LowRankTest, ConvSvdAtExactRankReproducesTheConvolution) {
  std::mt19937 rng(5);
  // Reshaped [8, 36] of rank 2.
  Tensor conv = LowRank(8, 36, 2, &rng);
  ASSERT_TRUE(conv.Reshape({8, 4, 3, 3}).ok());
  const Graph graph = SmallModel(std::move(conv), Random({32, 72}, &rng), Random({16, 32}, &rng), 5);
  LowRankOptions options;
  options.mode = RankMode::kExplicit;
  options.conv = ConvMode::kSvd;
  options.ranks = {{LayerNames(graph)["Conv"], 2}};
  auto result = FactorizeGraph(graph, options);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->layers.size(), 1u);
  EXPECT_EQ(result->layers[0].form, "conv-svd");
  EXPECT_EQ(result->layers[0].params_after, 2 * (36 + 8 + 1));
  EXPECT_EQ(CountOps(result->graph, "Conv"), 2);
  EXPECT_EQ(result->graph.initializers.at("conv.weight/lowrank_a").shape(), (std::vector<int64_t>{2, 4, 3, 3}));
  const CalibrationBatch batch = Batch(9);
  EXPECT_LT(MaxDifference(RunGraph(graph, batch), RunGraph(result->graph, batch)), 1e-4);
}

TEST(LowRankTest, Tucker2AtExactRanksReproducesTheConvolution) {
  std::mt19937 rng(6);
  const Graph graph =
      SmallModel(TuckerWeight(8, 4, 3, 3, 2, &rng), Random({32, 72}, &rng), Random({16, 32}, &rng), 6);
  LowRankOptions options;
  options.mode = RankMode::kEnergy;
  options.energy = 0.99999;
  options.linear = false;
  options.conv = ConvMode::kTucker2;
  auto result = FactorizeGraph(graph, options);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->layers.size(), 1u);
  const LayerReport& layer = result->layers[0];
  EXPECT_EQ(layer.form, "tucker2");
  EXPECT_EQ(layer.rank, 3);
  EXPECT_EQ(layer.rank_in, 2);
  EXPECT_EQ(layer.params_after, 2 * 4 + 3 * 2 * 9 + 8 * 3);
  EXPECT_LT(layer.relative_error, 1e-5);
  EXPECT_EQ(CountOps(result->graph, "Conv"), 3);
  const CalibrationBatch batch = Batch(10);
  EXPECT_LT(MaxDifference(RunGraph(graph, batch), RunGraph(result->graph, batch)), 1e-4);
}

TEST(LowRankTest, Tucker2ErrorMatchesTheRewrittenGraph) {
  std::mt19937 rng(11);
  const Graph graph = SmallModel(Random({8, 4, 3, 3}, &rng), Random({32, 72}, &rng), Random({16, 32}, &rng), 11);
  LowRankOptions options;
  options.mode = RankMode::kExplicit;
  options.linear = false;
  options.conv = ConvMode::kTucker2;
  const std::string conv = LayerNames(graph)["Conv"];
  options.ranks = {{conv, 2}};
  auto result = FactorizeGraph(graph, options);
  ASSERT_TRUE(result.ok()) << result.status();
  const LayerReport& layer = result->layers[0];
  ASSERT_TRUE(layer.factorized);
  // Rebuild W from the three factors and compare with the reported error.
  const auto& inits = result->graph.initializers;
  const float* in = inits.at("conv.weight/lowrank_in").data<float>();      // [r1, c]
  const float* core = inits.at("conv.weight/lowrank_core").data<float>();  // [r2, r1, 9]
  const float* out = inits.at("conv.weight/lowrank_out").data<float>();    // [8, r2]
  const float* w = graph.initializers.at("conv.weight").data<float>();
  double error = 0, norm = 0;
  for (int o = 0; o < 8; ++o) {
    for (int c = 0; c < 4; ++c) {
      for (int j = 0; j < 9; ++j) {
        double sum = 0;
        for (int a = 0; a < 2; ++a) {
          for (int b = 0; b < 2; ++b) sum += out[o * 2 + a] * core[(a * 2 + b) * 9 + j] * in[b * 4 + c];
        }
        const double x = w[(o * 4 + c) * 9 + j];
        error += (sum - x) * (sum - x);
        norm += x * x;
      }
    }
  }
  EXPECT_NEAR(layer.relative_error, std::sqrt(error / norm), 1e-5);
  EXPECT_GT(layer.relative_error, 0.1);
}

TEST(LowRankTest, SensitivityStaysWithinTheGlobalBudget) {
  std::mt19937 rng(12);
  const Graph graph = SmallModel(Random({8, 4, 3, 3}, &rng), Random({32, 72}, &rng), LowRank(16, 32, 2, &rng), 12);
  LowRankOptions options;
  options.mode = RankMode::kSensitivity;
  options.target_ratio = 0.3;
  auto missing = FactorizeGraph(graph, options);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<CalibrationBatch> batches = {Batch(20), Batch(21)};
  int calls = 0;
  auto result = FactorizeGraph(graph, options, batches, [&calls](int i, int n) {
    EXPECT_EQ(i, calls++);
    EXPECT_EQ(n, 2);
    return true;
  });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(calls, 2);
  EXPECT_LE(result->params_after, 0.3 * result->params_before);
  // The rank-2 layer costs nothing to cut to rank 2; it should get cut at
  // least that far.
  EXPECT_TRUE(result->layers[1].factorized);
  EXPECT_LE(result->layers[1].rank, 2);
}

TEST(LowRankTest, OnnxExportOfTheFactorizedGraphIsSmallerAndRunsTheSame) {
  const Graph graph = LowRankModel(13);
  LowRankOptions options;
  options.target_ratio = 0.2;
  auto result = FactorizeGraph(graph, options);
  ASSERT_TRUE(result.ok()) << result.status();
  const std::string dir = ::testing::TempDir();
  const absl::Status saved = onnx::SaveOnnxModel(graph, dir + "/dense.onnx");
  ASSERT_TRUE(saved.ok()) << saved;
  ASSERT_TRUE(onnx::SaveOnnxModel(result->graph, dir + "/lowrank.onnx").ok());
  auto reloaded = onnx::LoadOnnxModel(dir + "/lowrank.onnx");
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_LT(graph::CountFloatParameters(*reloaded), graph::CountFloatParameters(graph));
  const CalibrationBatch batch = Batch(14);
  EXPECT_LT(MaxDifference(RunGraph(result->graph, batch), RunGraph(*reloaded, batch)), 1e-6);
}

TEST(LowRankTest, BadOptionsNameTheOptionOrLayer) {
  const Graph graph = LowRankModel(15);
  const std::string gemm = LayerNames(graph)["Gemm"];
  LowRankOptions options;
  options.mode = RankMode::kExplicit;
  options.ranks = {{gemm, 33}};
  auto status = FactorizeGraph(graph, options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(gemm));
  EXPECT_THAT(status.message(), HasSubstr("33"));
  options.ranks = {{"no_such_layer", 2}};
  EXPECT_THAT(FactorizeGraph(graph, options).status().message(), HasSubstr("no_such_layer"));
  options = LowRankOptions();
  options.energy = 0;
  EXPECT_THAT(ValidateLowRankOptions(options).message(), HasSubstr("energy"));
  options.energy = 1.5;
  EXPECT_THAT(ValidateLowRankOptions(options).message(), HasSubstr("1.5"));
  options = LowRankOptions();
  options.target_ratio = 1;
  EXPECT_THAT(ValidateLowRankOptions(options).message(), HasSubstr("target_ratio"));
  options = LowRankOptions();
  options.sensitivity_ratios = {0.5, 1.2};
  EXPECT_THAT(ValidateLowRankOptions(options).message(), HasSubstr("1.2"));
}

TEST(LowRankTest, SkipListAndCancellation) {
  const Graph graph = LowRankModel(16);
  LowRankOptions options;
  options.skip = {LayerNames(graph)["Gemm"]};
  auto result = FactorizeGraph(graph, options);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->layers.size(), 1u);
  EXPECT_EQ(result->layers[0].op_type, "MatMul");
  ASSERT_EQ(result->skipped.size(), 2u);  // in node order: the Conv (conv = kSkip), the Gemm (skip list)
  EXPECT_EQ(result->skipped[0].reason, "convolutions not asked for");
  EXPECT_EQ(result->skipped[1].reason, "in the skip list");
  auto cancelled = FactorizeGraph(graph, options, {}, [](int, int) { return false; });
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled);
}

// Recovery of a factorized model goes through core/distill; training only
// the rank scales changes nothing else, and the scales still fold.
TEST(LowRankTest, DistillTrainsOnlyTheRankScalesWhenAsked) {
  const Graph teacher = LowRankModel(5);
  LowRankOptions options;
  options.target_ratio = 0.3;
  options.conv = ConvMode::kSvd;
  auto factorized = FactorizeGraph(teacher, options);
  ASSERT_TRUE(factorized.ok()) << factorized.status();
  distill::DistillOptions recovery;
  recovery.output = {10, 1e-2};
  recovery.hard_label_weight = 0;
  recovery.backend = kernels::cpu::CreateCpuBackend(1);
  for (const RankScale& scale : factorized->scales) recovery.trainable.insert(scale.scale);
  ASSERT_FALSE(recovery.trainable.empty());
  auto result = distill::Distill(
      teacher, factorized->graph,
      [](int64_t step) -> absl::StatusOr<distill::DistillBatch> {
        return distill::DistillBatch{Batch(static_cast<uint32_t>(20 + step % 4)), {}};
      },
      recovery);
  ASSERT_TRUE(result.ok()) << result.status();
  for (const auto& [name, tensor] : result->student.initializers) {
    const bool changed = tensor.ToFloats() != factorized->graph.initializers.at(name).ToFloats();
    EXPECT_EQ(changed, recovery.trainable.count(name) > 0) << name;
  }
  Graph folded = result->student;
  ASSERT_TRUE(FoldRankScales(factorized->scales, &folded).ok());
  EXPECT_LT(MaxDifference(RunGraph(result->student, Batch(9)), RunGraph(folded, Batch(9))), 1e-4);
}

}  // namespace
}  // namespace squeeze::core::lowrank
