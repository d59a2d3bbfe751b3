#include "core/prune/structured.h"

#include <cmath>
#include <random>

#include "absl/strings/match.h"
#include "core/distill/distill.h"
#include "core/graph/builder.h"
#include "core/hf/hf_checkpoint.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/runtime/executor.h"
#include "core/train/autograd.h"
#include "core/train/losses.h"
#include "gtest/gtest.h"

namespace squeeze::core::prune {
namespace {

using graph::DataType;
using graph::Graph;
using graph::GraphBuilder;
using graph::Tensor;

Tensor Random(std::vector<int64_t> shape, std::mt19937* rng, float scale = 0.5f) {
  Tensor t(DataType::kFloat32, std::move(shape));
  std::normal_distribution<float> normal(0, scale);
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = normal(*rng);
  return t;
}

Tensor Positive(std::vector<int64_t> shape, std::mt19937* rng) {
  Tensor t = Random(std::move(shape), rng);
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = 0.5f + std::fabs(t.data<float>()[i]);
  return t;
}

// image [N, 2, 6, 6] -> conv1 (2 -> 4) -> BN -> Relu -> MaxPool 2 ->
// depthwise conv (4) -> conv2 (4 -> 3) -> Relu -> Flatten -> fc1 (27 -> 5)
// -> Relu -> fc2 (5 -> 3) = logits.
Graph SmallCnn(uint64_t seed = 1) {
  std::mt19937 rng(seed);
  GraphBuilder b("small_cnn");
  auto conv = [&](const std::string& x, const std::string& name, int64_t in, int64_t out, int64_t group) {
    b.Initializer(name + ".weight", Random({out, in / group, 3, 3}, &rng));
    b.Initializer(name + ".bias", Random({out}, &rng));
    return b.Add("Conv", {x, name + ".weight", name + ".bias"},
                 {{"pads", std::vector<int64_t>{1, 1, 1, 1}}, {"kernel_shape", std::vector<int64_t>{3, 3}},
                  {"group", group}});
  };
  std::string x = conv("image", "conv1", 2, 4, 1);
  b.Initializer("bn.scale", Positive({4}, &rng));
  b.Initializer("bn.bias", Random({4}, &rng));
  b.Initializer("bn.mean", Random({4}, &rng));
  b.Initializer("bn.var", Positive({4}, &rng));
  x = b.Add("BatchNormalization", {x, "bn.scale", "bn.bias", "bn.mean", "bn.var"});
  x = b.Add("Relu", {x});
  x = b.Add("MaxPool", {x}, {{"kernel_shape", std::vector<int64_t>{2, 2}}, {"strides", std::vector<int64_t>{2, 2}}});
  x = conv(x, "dw", 4, 4, 4);
  x = b.Add("Relu", {conv(x, "conv2", 4, 3, 1)});
  x = b.Add("Flatten", {x});
  b.Initializer("fc1.weight", Random({5, 27}, &rng));
  b.Initializer("fc1.bias", Random({5}, &rng));
  x = b.Add("Relu", {b.Add("Gemm", {x, "fc1.weight", "fc1.bias"}, {{"transB", int64_t{1}}})});
  b.Initializer("fc2.weight", Random({5, 3}, &rng));
  b.Add("MatMul", {x, "fc2.weight"}, {}, "logits");
  b.AddInput({"image", DataType::kFloat32, std::vector<graph::Dim>{{std::nullopt, "batch"}, {2, ""}, {6, ""}, {6, ""}}});
  b.AddOutput({"logits", DataType::kFloat32, std::vector<graph::Dim>{{std::nullopt, "batch"}, {3, ""}}});
  return b.Finish();
}

std::vector<LabeledBatch> CnnBatches(int count, uint64_t seed = 7) {
  std::mt19937 rng(seed);
  std::vector<LabeledBatch> batches;
  for (int i = 0; i < count; ++i) {
    LabeledBatch batch;
    batch.feeds["image"] = Random({8, 2, 6, 6}, &rng, 1.0f);
    for (int j = 0; j < 8; ++j) batch.labels.push_back((i + j) % 3);
    batches.push_back(std::move(batch));
  }
  return batches;
}

std::vector<float> RunGraph(const Graph& graph, const std::map<std::string, Tensor>& feeds) {
  auto executor = runtime::Executor::Create(graph, kernels::cpu::CreateCpuBackend(1));
  EXPECT_TRUE(executor.ok()) << executor.status();
  auto out = executor->Run(feeds);
  EXPECT_TRUE(out.ok()) << out.status();
  return (*out)[0].ToFloats();
}

void ExpectNear(const std::vector<float>& a, const std::vector<float>& b, float tolerance = 1e-4f) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], tolerance) << "at " << i;
}

// Zeroes the inputs the next layer reads from unit `unit` of `group`: the
// pruned graph must compute exactly what this graph computes.
void SilenceUnit(Graph* graph, const PruneGroup& group, int64_t unit, const std::set<std::string>& consumers) {
  for (const UnitSlice& s : group.slices) {
    if (consumers.count(s.initializer) == 0) continue;
    Tensor& t = graph->initializers.at(s.initializer);
    int64_t inner = 1;
    for (int64_t a = s.axis + 1; a < t.rank(); ++a) inner *= t.shape()[a];
    const int64_t dim = t.shape()[s.axis];
    for (int64_t i = 0; i < t.num_elements(); ++i) {
      const int64_t position = (i / inner) % dim;
      if (position >= s.offset && (position - s.offset) / s.block == unit) t.data<float>()[i] = 0;
    }
  }
}

const PruneGroup& Group(const std::vector<PruneGroup>& groups, const std::string& name) {
  for (const auto& g : groups) {
    if (g.name == name) return g;
  }
  ADD_FAILURE() << "no group " << name;
  return groups.front();
}

TEST(FindPruneGroupsTest, TracesChannelsThroughBatchNormPoolingDepthwiseAndFlatten) {
  const Graph graph = SmallCnn();
  auto groups = FindPruneGroups(graph);
  ASSERT_TRUE(groups.ok()) << groups.status();
  ASSERT_EQ(groups->size(), 4u);
  const PruneGroup& conv1 = Group(*groups, "conv1.weight");
  EXPECT_TRUE(conv1.prunable) << conv1.reason;
  EXPECT_EQ(conv1.units, 4);
  ASSERT_EQ(conv1.depthwise_outputs.size(), 1u);
  const PruneGroup& conv2 = Group(*groups, "conv2.weight");
  EXPECT_TRUE(conv2.prunable) << conv2.reason;
  bool flatten_block = false;
  for (const auto& s : conv2.slices) flatten_block = flatten_block || (s.initializer == "fc1.weight" && s.block == 9);
  EXPECT_TRUE(flatten_block);
  EXPECT_TRUE(Group(*groups, "fc1.weight").prunable);
  const PruneGroup& fc2 = Group(*groups, "fc2.weight");
  EXPECT_FALSE(fc2.prunable);
  EXPECT_TRUE(absl::StrContains(fc2.reason, "graph output 'logits'")) << fc2.reason;
}

TEST(RemoveUnitsTest, MatchesTheDenseGraphWithTheUnitSilenced) {
  const Graph graph = SmallCnn();
  auto groups = FindPruneGroups(graph);
  ASSERT_TRUE(groups.ok());
  const auto feeds = CnnBatches(1)[0].feeds;
  // conv1's channel 2 is read by the depthwise conv, whose channel 2 is read
  // by conv2: silencing conv2's input column 2 removes its whole path.
  struct Case {
    std::string group;
    int64_t unit;
    std::set<std::string> consumers;
  };
  for (const Case& c : {Case{"conv1.weight", 2, {"conv2.weight"}}, Case{"conv2.weight", 1, {"fc1.weight"}},
                        Case{"fc1.weight", 3, {"fc2.weight"}}}) {
    SCOPED_TRACE(c.group);
    Graph silenced = graph;
    SilenceUnit(&silenced, Group(*groups, c.group), c.unit, c.consumers);
    auto pruned = RemoveUnits(graph, *groups, {{c.group, {c.unit}}});
    ASSERT_TRUE(pruned.ok()) << pruned.status();
    EXPECT_LT(CountParameters(*pruned), CountParameters(graph));
    ExpectNear(RunGraph(*pruned, feeds), RunGraph(silenced, feeds));
  }
  auto pruned = RemoveUnits(graph, *groups, {{"conv1.weight", {0, 3}}, {"conv2.weight", {2}}});
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(pruned->initializers.at("conv1.weight").shape(), (std::vector<int64_t>{2, 2, 3, 3}));
  EXPECT_EQ(pruned->initializers.at("bn.var").shape(), (std::vector<int64_t>{2}));
  EXPECT_EQ(pruned->initializers.at("dw.weight").shape(), (std::vector<int64_t>{2, 1, 3, 3}));
  EXPECT_EQ(pruned->initializers.at("conv2.weight").shape(), (std::vector<int64_t>{2, 2, 3, 3}));
  EXPECT_EQ(pruned->initializers.at("fc1.weight").shape(), (std::vector<int64_t>{5, 18}));
  EXPECT_EQ(RunGraph(*pruned, feeds).size(), 8u * 3u);
}

TEST(RemoveUnitsTest, RejectsBadRequests) {
  const Graph graph = SmallCnn();
  auto groups = FindPruneGroups(graph);
  ASSERT_TRUE(groups.ok());
  auto unknown = RemoveUnits(graph, *groups, {{"conv9.weight", {0}}});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(unknown.status().message(), "conv9.weight"));
  auto all = RemoveUnits(graph, *groups, {{"conv2.weight", {0, 1, 2}}});
  EXPECT_EQ(all.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(all.status().message(), "removing all 3 units")) << all.status();
  auto output = RemoveUnits(graph, *groups, {{"fc2.weight", {0}}});
  EXPECT_EQ(output.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(output.status().message(), "graph output")) << output.status();
  auto range = RemoveUnits(graph, *groups, {{"fc1.weight", {5}}});
  EXPECT_EQ(range.status().code(), absl::StatusCode::kInvalidArgument);
}

// x [N, 6] -> a = x W_a, b = x W_b; Add(a, b) -> Relu -> W_c -> logits;
// and a residual Add(x W_d, x) that cannot be pruned.
Graph ResidualMlp(bool residual_from_input) {
  std::mt19937 rng(3);
  GraphBuilder b("residual");
  for (const char* name : {"wa", "wb", "wd"}) b.Initializer(name, Random({6, 6}, &rng));
  b.Initializer("wc", Random({6, 2}, &rng));
  std::string h = b.Add("Add", {b.Add("MatMul", {"x", "wa"}), b.Add("MatMul", {"x", "wb"})});
  if (residual_from_input) h = b.Add("Add", {b.Add("MatMul", {h, "wd"}), "x"});
  b.Add("MatMul", {b.Add("Relu", {h}), "wc"}, {}, "logits");
  b.AddInput({"x", DataType::kFloat32, std::vector<graph::Dim>{{std::nullopt, "batch"}, {6, ""}}});
  b.AddOutput({"logits", DataType::kFloat32, std::vector<graph::Dim>{{std::nullopt, "batch"}, {2, ""}}});
  return b.Finish();
}

TEST(FindPruneGroupsTest, ResidualAddJoinsProducersAndRefusesInputResiduals) {
  const Graph joined = ResidualMlp(false);
  auto groups = FindPruneGroups(joined);
  ASSERT_TRUE(groups.ok());
  const PruneGroup& g = Group(*groups, "wa");
  EXPECT_TRUE(g.prunable) << g.reason;
  EXPECT_EQ(g.aliases, (std::vector<std::string>{"wa", "wb"}));
  std::mt19937 rng(5);
  std::map<std::string, Tensor> feeds{{"x", Random({4, 6}, &rng)}};
  Graph silenced = joined;
  SilenceUnit(&silenced, g, 4, {"wc"});
  auto pruned = RemoveUnits(joined, *groups, {{"wb", {4}}});  // by alias
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(pruned->initializers.at("wa").shape(), (std::vector<int64_t>{6, 5}));
  EXPECT_EQ(pruned->initializers.at("wb").shape(), (std::vector<int64_t>{6, 5}));
  ExpectNear(RunGraph(*pruned, feeds), RunGraph(silenced, feeds));

  auto refused = FindPruneGroups(ResidualMlp(true));
  ASSERT_TRUE(refused.ok());
  EXPECT_TRUE(Group(*refused, "wa").prunable);  // ends at wd's input columns
  EXPECT_FALSE(Group(*refused, "wd").prunable);
  EXPECT_TRUE(absl::StrContains(Group(*refused, "wd").reason, "'x'")) << Group(*refused, "wd").reason;
}

// x [N, 6] -> x W_a [N, 4] and x W_b [N, 4] -> Concat(axis) -> W_c.
Graph ConcatMlp(int64_t axis) {
  std::mt19937 rng(4);
  GraphBuilder b("concat");
  b.Initializer("wa", Random({6, 4}, &rng));
  b.Initializer("wb", Random({6, 4}, &rng));
  b.Initializer("wc", Random({axis == 1 ? 8 : 4, 2}, &rng));
  const std::string joined =
      b.Add("Concat", {b.Add("MatMul", {"x", "wa"}), b.Add("MatMul", {"x", "wb"})}, {{"axis", axis}});
  b.Add("MatMul", {joined, "wc"}, {}, "logits");
  b.AddInput({"x", DataType::kFloat32, std::vector<graph::Dim>{{3, ""}, {6, ""}}});
  b.AddOutput({"logits", DataType::kFloat32, std::nullopt});
  return b.Finish();
}

TEST(FindPruneGroupsTest, EachInputOfAChannelConcatIsItsOwnGroup) {
  const Graph graph = ConcatMlp(1);
  auto groups = FindPruneGroups(graph);
  ASSERT_TRUE(groups.ok()) << groups.status();
  for (const char* name : {"wa", "wb"}) EXPECT_TRUE(Group(*groups, name).prunable) << Group(*groups, name).reason;
  int64_t wb_offset = -1;
  for (const auto& s : Group(*groups, "wb").slices) {
    if (s.initializer == "wc") wb_offset = s.offset;
  }
  EXPECT_EQ(wb_offset, 4);  // wb's columns follow wa's 4 in the concat.

  std::mt19937 rng(9);
  const std::map<std::string, Tensor> feeds = {{"x", Random({3, 6}, &rng, 1.0f)}};
  Graph silenced = graph;
  SilenceUnit(&silenced, Group(*groups, "wa"), 1, {"wc"});
  SilenceUnit(&silenced, Group(*groups, "wb"), 2, {"wc"});
  auto pruned = RemoveUnits(graph, *groups, {{"wa", {1}}, {"wb", {2}}});
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(pruned->initializers.at("wc").shape(), (std::vector<int64_t>{6, 2}));
  ExpectNear(RunGraph(*pruned, feeds), RunGraph(silenced, feeds));
}

TEST(FindPruneGroupsTest, RefusesAConcatAlongAnotherAxisWithAReason) {
  auto groups = FindPruneGroups(ConcatMlp(0));
  ASSERT_TRUE(groups.ok()) << groups.status();
  for (const char* name : {"wa", "wb"}) {
    EXPECT_FALSE(Group(*groups, name).prunable);
    EXPECT_TRUE(absl::StrContains(Group(*groups, name).reason, "another axis")) << Group(*groups, name).reason;
  }
}

TEST(RemoveUnitsTest, ConvChannelsThroughConcatBatchNormAndFlatten) {
  // image [N, 2, 4, 4] -> convA (3 ch), convB (2 ch) -> Concat [N, 5, 4, 4]
  // -> BN (5) -> Relu -> Flatten [N, 80] -> fc (80 -> 3) = logits.
  std::mt19937 rng(5);
  GraphBuilder b("concat_cnn");
  auto conv = [&](const std::string& name, int64_t out) {
    b.Initializer(name + ".weight", Random({out, 2, 3, 3}, &rng));
    b.Initializer(name + ".bias", Random({out}, &rng));
    return b.Add("Conv", {"image", name + ".weight", name + ".bias"},
                 {{"pads", std::vector<int64_t>{1, 1, 1, 1}}, {"kernel_shape", std::vector<int64_t>{3, 3}}});
  };
  std::string x = b.Add("Concat", {conv("convA", 3), conv("convB", 2)}, {{"axis", int64_t{1}}});
  b.Initializer("bn.scale", Positive({5}, &rng));
  b.Initializer("bn.bias", Random({5}, &rng));
  b.Initializer("bn.mean", Random({5}, &rng));
  b.Initializer("bn.var", Positive({5}, &rng));
  x = b.Add("Relu", {b.Add("BatchNormalization", {x, "bn.scale", "bn.bias", "bn.mean", "bn.var"})});
  b.Initializer("fc.weight", Random({3, 80}, &rng));
  b.Add("Gemm", {b.Add("Flatten", {x}), "fc.weight"}, {{"transB", int64_t{1}}}, "logits");
  b.AddInput({"image", DataType::kFloat32, std::vector<graph::Dim>{{std::nullopt, "batch"}, {2, ""}, {4, ""}, {4, ""}}});
  b.AddOutput({"logits", DataType::kFloat32, std::vector<graph::Dim>{{std::nullopt, "batch"}, {3, ""}}});
  const Graph graph = b.Finish();

  auto groups = FindPruneGroups(graph);
  ASSERT_TRUE(groups.ok()) << groups.status();
  for (const char* name : {"convA.weight", "convB.weight"}) {
    EXPECT_TRUE(Group(*groups, name).prunable) << Group(*groups, name).reason;
  }
  bool fc_block = false;
  for (const auto& s : Group(*groups, "convB.weight").slices) {
    fc_block = fc_block || (s.initializer == "fc.weight" && s.block == 16 && s.offset == 48);
  }
  EXPECT_TRUE(fc_block);

  std::mt19937 data(11);
  const std::map<std::string, Tensor> feeds = {{"image", Random({2, 2, 4, 4}, &data, 1.0f)}};
  Graph silenced = graph;
  SilenceUnit(&silenced, Group(*groups, "convA.weight"), 0, {"fc.weight"});
  SilenceUnit(&silenced, Group(*groups, "convB.weight"), 1, {"fc.weight"});
  auto pruned = RemoveUnits(graph, *groups, {{"convA.weight", {0}}, {"convB.weight", {1}}});
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(pruned->initializers.at("bn.var").shape(), (std::vector<int64_t>{3}));
  EXPECT_EQ(pruned->initializers.at("fc.weight").shape(), (std::vector<int64_t>{3, 48}));
  ExpectNear(RunGraph(*pruned, feeds), RunGraph(silenced, feeds));

  // Scores see only each group's own channels of the shared consumer.
  auto l1 = ScoreUnits(graph, *groups, {}, StructuredScore::kL1);
  ASSERT_TRUE(l1.ok()) << l1.status();
}

TEST(ScoreUnitsTest, MagnitudeScoresSumEveryWeightOfTheUnit) {
  GraphBuilder b("mlp");
  b.Initializer("w1", Tensor::FromVector<float>(DataType::kFloat32, {2, 3}, {1, -2, 3, -4, 5, 6}));
  b.Initializer("w2", Tensor::FromVector<float>(DataType::kFloat32, {3, 1}, {1, 2, -2}));
  b.Add("MatMul", {b.Add("Relu", {b.Add("MatMul", {"x", "w1"})}), "w2"}, {}, "y");
  b.AddInput({"x", DataType::kFloat32, std::vector<graph::Dim>{{std::nullopt, ""}, {2, ""}}});
  b.AddOutput({"y", DataType::kFloat32, std::vector<graph::Dim>{{std::nullopt, ""}, {1, ""}}});
  const Graph graph = b.Finish();
  auto groups = FindPruneGroups(graph);
  ASSERT_TRUE(groups.ok());
  auto l1 = ScoreUnits(graph, *groups, {}, StructuredScore::kL1);
  ASSERT_TRUE(l1.ok()) << l1.status();
  const size_t w1 = groups->front().name == "w1" ? 0 : 1;
  EXPECT_EQ((*l1)[w1], (std::vector<double>{1 + 4 + 1, 2 + 5 + 2, 3 + 6 + 2}));
  auto l2 = ScoreUnits(graph, *groups, {}, StructuredScore::kL2);
  ASSERT_TRUE(l2.ok());
  EXPECT_NEAR((*l2)[w1][0], std::sqrt(1.0 + 16 + 1), 1e-9);
  EXPECT_EQ(ScoreUnits(graph, *groups, {}, StructuredScore::kTaylor).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// Loss of `graph` on `batch` with unit `unit` of `group` scaled by 1 + eps.
// BatchNorm running statistics are constants, not scaled.
double ScaledLoss(Graph graph, const PruneGroup& group, int64_t unit, double eps, const LabeledBatch& batch) {
  for (const UnitSlice& s : group.slices) {
    if (s.initializer == "bn.mean" || s.initializer == "bn.var") continue;
    Tensor& t = graph.initializers.at(s.initializer);
    int64_t inner = 1;
    for (int64_t a = s.axis + 1; a < t.rank(); ++a) inner *= t.shape()[a];
    for (int64_t i = 0; i < t.num_elements(); ++i) {
      if ((i / inner) % t.shape()[s.axis] / s.block == unit) t.data<float>()[i] *= static_cast<float>(1 + eps);
    }
  }
  auto loss = CalibrationLoss(graph, {batch});
  EXPECT_TRUE(loss.ok());
  return *loss;
}

TEST(ScoreUnitsTest, TaylorIsTheDerivativeOfScalingTheUnit) {
  const Graph graph = SmallCnn();
  auto groups = FindPruneGroups(graph);
  ASSERT_TRUE(groups.ok());
  const auto batches = CnnBatches(1);
  auto taylor = ScoreUnits(graph, *groups, batches, StructuredScore::kTaylor);
  ASSERT_TRUE(taylor.ok()) << taylor.status();
  for (size_t gi = 0; gi < groups->size(); ++gi) {
    const PruneGroup& g = (*groups)[gi];
    if (!g.prunable) {
      EXPECT_TRUE((*taylor)[gi].empty());
      continue;
    }
    for (int64_t u = 0; u < g.units; ++u) {
      const double eps = 1e-3;
      const double derivative =
          (ScaledLoss(graph, g, u, eps, batches[0]) - ScaledLoss(graph, g, u, -eps, batches[0])) / (2 * eps);
      EXPECT_NEAR((*taylor)[gi][u], std::fabs(derivative), 2e-3 + 0.02 * std::fabs(derivative))
          << g.name << " unit " << u;
    }
  }
  auto combined = ScoreUnits(graph, *groups, batches, StructuredScore::kCombined);
  ASSERT_TRUE(combined.ok());
  for (size_t gi = 0; gi < groups->size(); ++gi) {
    for (double s : (*combined)[gi]) {
      EXPECT_GE(s, 0);
      EXPECT_LE(s, 1 + 1e-9);
    }
  }
}

TEST(PruneStructuredTest, ReachesTheTargetAndReportsEveryLayer) {
  const Graph graph = SmallCnn();
  const auto batches = CnnBatches(2);
  for (auto allocation : {RatioAllocation::kUniform, RatioAllocation::kSensitivity}) {
    StructuredOptions options;
    options.target = 0.3;
    options.allocation = allocation;
    auto result = PruneStructured(graph, batches, options);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->params_before, CountParameters(graph));
    EXPECT_EQ(result->params_after, CountParameters(result->graph));
    EXPECT_LE(result->params_after, 0.7 * result->params_before);
    EXPECT_EQ(result->layers.size(), 3u);
    for (const auto& layer : result->layers) {
      EXPECT_GE(layer.units_after, 1);
      EXPECT_LE(layer.params_after, layer.params_before);
      if (allocation == RatioAllocation::kSensitivity) EXPECT_GE(layer.probe_loss_increase, -1.0);
    }
    ASSERT_EQ(result->skipped.size(), 1u);
    EXPECT_EQ(result->skipped[0].first, "fc2.weight");
    EXPECT_EQ(RunGraph(result->graph, batches[0].feeds).size(), 8u * 3u);
  }
}

TEST(PruneStructuredTest, MacTargetCountsWeightsTimesOutputPositions) {
  StructuredOptions options;
  options.cost = PruneCost::kMacs;
  options.target = 0.3;
  auto result = PruneStructured(SmallCnn(), CnnBatches(2), options);
  ASSERT_TRUE(result.ok()) << result.status();
  // conv1 72 weights x 36 positions, depthwise 36 x 9, conv2 108 x 9, fc1 135, fc2 15.
  EXPECT_DOUBLE_EQ(result->macs_before, 72 * 36 + 36 * 9 + 108 * 9 + 135 + 15);
  EXPECT_LE(result->macs_after, 0.7 * result->macs_before);
  EXPECT_GT(result->macs_after, 0);
}

TEST(PruneStructuredTest, FixedRatiosAloneWithAZeroTarget) {
  const Graph graph = SmallCnn();
  StructuredOptions options;
  options.target = 0;
  options.layer_ratios["fc1.weight"] = 0.4;
  auto result = PruneStructured(graph, CnnBatches(1), options);
  ASSERT_TRUE(result.ok()) << result.status();
  for (const auto& layer : result->layers) {
    EXPECT_EQ(layer.units_after, layer.name == "fc1.weight" ? 3 : layer.units_before) << layer.name;
  }
}

TEST(PruneStructuredTest, ValidatesOptions) {
  const Graph graph = SmallCnn();
  const auto batches = CnnBatches(1);
  auto expect_error = [&](const StructuredOptions& options, const std::string& text) {
    auto result = PruneStructured(graph, batches, options);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_TRUE(absl::StrContains(result.status().message(), text)) << result.status();
  };
  StructuredOptions o;
  o.target = 1.0;
  expect_error(o, "target");
  o = {};
  o.target = -0.1;
  expect_error(o, "target");
  o = {};
  o.layer_ratios["conv2.weight"] = 1.5;
  expect_error(o, "layer_ratios['conv2.weight']");
  o = {};
  o.layer_ratios["nope"] = 0.5;
  expect_error(o, "unknown layer 'nope'");
  o = {};
  o.layer_ratios["fc2.weight"] = 0.5;
  expect_error(o, "cannot be pruned");
  o = {};
  o.exclude = {"missing"};
  expect_error(o, "missing");
  o = {};
  o.max_layer_ratio = 1;
  expect_error(o, "max_layer_ratio");
  o = {};
  o.target = 0.95;
  o.max_layer_ratio = 0.5;
  EXPECT_EQ(PruneStructured(graph, batches, o).status().code(), absl::StatusCode::kFailedPrecondition);
  o = {};
  EXPECT_EQ(PruneStructured(graph, {}, o).status().code(), absl::StatusCode::kFailedPrecondition);
}

hf::HfConfig TinyLlama() {
  hf::HfConfig c;
  c.vocab_size = 32;
  c.hidden_size = 16;
  c.intermediate_size = 12;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.max_positions = 16;
  c.tie_word_embeddings = true;
  return c;
}

TEST(StructuredLlamaTest, HeadsAndFfnNeuronsMatchTheSilencedModel) {
  auto weights = hf::InitializeWeights(TinyLlama(), 11, 0.2f);
  auto graph = hf::BuildCausalLmGraph(TinyLlama(), weights);
  ASSERT_TRUE(graph.ok()) << graph.status();
  auto groups = FindPruneGroups(*graph);
  ASSERT_TRUE(groups.ok()) << groups.status();
  const PruneGroup& ffn = Group(*groups, "model.layers.0.mlp.gate_proj.weight");
  EXPECT_TRUE(ffn.prunable) << ffn.reason;
  EXPECT_EQ(ffn.units, 12);
  const PruneGroup& heads = Group(*groups, "model.layers.1.self_attn");
  EXPECT_TRUE(heads.prunable) << heads.reason;
  EXPECT_EQ(heads.units, 4);
  EXPECT_EQ(heads.kv_heads, 2);
  EXPECT_FALSE(Group(*groups, "model.layers.0.self_attn.o_proj.weight").prunable);

  Tensor ids(DataType::kInt64, {2, 6});
  for (int64_t i = 0; i < 12; ++i) ids.data<int64_t>()[i] = (i * 7 + 3) % 32;
  const std::map<std::string, Tensor> feeds{{"input_ids", ids}};
  // FFN neurons 1 and 5 of layer 0: silence their down_proj columns.
  {
    Graph silenced = *graph;
    for (int64_t u : {1, 5}) SilenceUnit(&silenced, ffn, u, {"model.layers.0.mlp.down_proj.weight"});
    auto pruned = RemoveUnits(*graph, *groups, {{"model.layers.0.mlp.up_proj.weight", {1, 5}}});
    ASSERT_TRUE(pruned.ok()) << pruned.status();
    EXPECT_EQ(pruned->initializers.at("model.layers.0.mlp.gate_proj.weight").shape(), (std::vector<int64_t>{10, 16}));
    ExpectNear(RunGraph(*pruned, feeds), RunGraph(silenced, feeds));
  }
  // Head 1 alone (its KV head stays for head 0), then heads 2 and 3 (their KV
  // head goes too).
  for (const std::vector<int64_t>& removed : {std::vector<int64_t>{1}, std::vector<int64_t>{2, 3}}) {
    Graph silenced = *graph;
    for (int64_t u : removed) SilenceUnit(&silenced, heads, u, {"model.layers.1.self_attn.o_proj.weight"});
    auto pruned = RemoveUnits(*graph, *groups, {{"model.layers.1.self_attn", removed}});
    ASSERT_TRUE(pruned.ok()) << pruned.status();
    EXPECT_EQ(pruned->initializers.at("model.layers.1.self_attn.q_proj.weight").shape()[0],
              4 * (4 - static_cast<int64_t>(removed.size())));
    EXPECT_EQ(pruned->initializers.at("model.layers.1.self_attn.k_proj.weight").shape()[0], removed.size() == 2 ? 4 : 8);
    EXPECT_EQ(pruned->initializers.at("model.layers.1.self_attn.o_proj.weight").shape()[1],
              4 * (4 - static_cast<int64_t>(removed.size())));
    // Layer 0 keeps the shared shape constants.
    EXPECT_EQ(pruned->initializers.at("model.layers.0.self_attn.q_proj.weight").shape()[0], 16);
    ExpectNear(RunGraph(*pruned, feeds), RunGraph(silenced, feeds));
  }
  // Block 0: with its o_proj and down_proj zeroed it is the identity.
  const PruneGroup& blocks = Group(*groups, "model.layers");
  EXPECT_TRUE(blocks.prunable);
  EXPECT_EQ(blocks.units, 2);
  {
    Graph silenced = *graph;
    for (const char* name : {"model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.down_proj.weight"}) {
      Tensor& t = silenced.initializers.at(name);
      for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = 0;
    }
    auto pruned = RemoveUnits(*graph, *groups, {{"model.layers", {0}}});
    ASSERT_TRUE(pruned.ok()) << pruned.status();
    EXPECT_EQ(pruned->initializers.count("model.layers.0.mlp.up_proj.weight"), 0u);
    EXPECT_EQ(pruned->initializers.count("model.layers.1.mlp.up_proj.weight"), 1u);
    EXPECT_LT(pruned->nodes.size(), graph->nodes.size());
    EXPECT_EQ(CountParameters(*pruned), CountParameters(*graph) - 16 * 16 * 2 - 8 * 16 * 2 - 12 * 16 * 3 - 2 * 16);
    ExpectNear(RunGraph(*pruned, feeds), RunGraph(silenced, feeds));
    auto scores = ScoreUnits(*graph, *groups, {{{{"input_ids", ids}}, std::vector<int64_t>(12, 1)}},
                             StructuredScore::kCombined);
    ASSERT_TRUE(scores.ok()) << scores.status();
  }
  EXPECT_FALSE(RemoveUnits(*graph, *groups, {{"model.layers", {0, 1}}}).ok());
}

TEST(StructuredGpt2Test, FusedAttentionHeadsMatchTheSilencedModel) {
  hf::HfConfig c;
  c.family = hf::ModelFamily::kGpt2;
  c.vocab_size = 32;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 4;
  c.head_dim = 4;
  c.max_positions = 16;
  c.tie_word_embeddings = true;
  c.tensor_prefix = "transformer.";
  auto graph = hf::BuildCausalLmGraph(c, hf::InitializeWeights(c, 12, 0.2f));
  ASSERT_TRUE(graph.ok()) << graph.status();
  auto groups = FindPruneGroups(*graph);
  ASSERT_TRUE(groups.ok()) << groups.status();
  const PruneGroup& heads = Group(*groups, "transformer.h.1.attn");
  ASSERT_TRUE(heads.prunable) << heads.reason;
  EXPECT_EQ(heads.units, 4);
  EXPECT_EQ(heads.head_dim, 4);
  EXPECT_EQ(heads.fused_slices.size(), 3u);

  Tensor ids(DataType::kInt64, {2, 6});
  for (int64_t i = 0; i < 12; ++i) ids.data<int64_t>()[i] = (i * 5 + 1) % 32;
  const std::map<std::string, Tensor> feeds{{"input_ids", ids}};
  for (const std::vector<int64_t>& removed : {std::vector<int64_t>{1}, std::vector<int64_t>{0, 3}}) {
    SCOPED_TRACE(removed.size());
    Graph silenced = *graph;
    for (int64_t u : removed) SilenceUnit(&silenced, heads, u, {"transformer.h.1.attn.c_proj.weight"});
    auto pruned = RemoveUnits(*graph, *groups, {{"transformer.h.1.attn", removed}});
    ASSERT_TRUE(pruned.ok()) << pruned.status();
    const int64_t width = 4 * (4 - static_cast<int64_t>(removed.size()));
    EXPECT_EQ(pruned->initializers.at("transformer.h.1.attn.c_attn.weight").shape(),
              (std::vector<int64_t>{16, 3 * width}));
    EXPECT_EQ(pruned->initializers.at("transformer.h.1.attn.c_attn.bias").shape(), (std::vector<int64_t>{3 * width}));
    EXPECT_EQ(pruned->initializers.at("transformer.h.1.attn.c_proj.weight").shape(),
              (std::vector<int64_t>{width, 16}));
    // Layer 0 keeps its heads and the shared slice constants.
    EXPECT_EQ(pruned->initializers.at("transformer.h.0.attn.c_attn.weight").shape(),
              (std::vector<int64_t>{16, 48}));
    ExpectNear(RunGraph(*pruned, feeds), RunGraph(silenced, feeds));
  }
  auto scores = ScoreUnits(*graph, *groups, {{{{"input_ids", ids}}, std::vector<int64_t>(12, 1)}},
                           StructuredScore::kCombined);
  ASSERT_TRUE(scores.ok()) << scores.status();
}

// A pruned model is recovered with core/distill's output stage (the teacher
// is the dense model): the loss falls, the pruned shapes and the
// BatchNormalization statistics stay.
TEST(RecoveryTest, DistillOutputStageRecoversAPrunedStudent) {
  const Graph teacher = SmallCnn(1);
  auto groups = FindPruneGroups(teacher);
  ASSERT_TRUE(groups.ok());
  auto student = RemoveUnits(teacher, *groups, {{"fc1.weight", {0, 1}}, {"conv2.weight", {0}}});
  ASSERT_TRUE(student.ok());
  const auto batches = CnnBatches(4);
  distill::DistillOptions options;
  options.output.steps = 40;
  options.output.learning_rate = 1e-2;
  options.hard_label_weight = 0.3 / 0.7;
  options.backend = kernels::cpu::CreateCpuBackend(1);
  auto result = distill::Distill(teacher, *student, [&](int64_t step) -> absl::StatusOr<distill::DistillBatch> {
    const LabeledBatch& batch = batches[step % batches.size()];
    return distill::DistillBatch{batch.feeds, batch.labels};
  }, options);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->curves.size(), 1u);
  const std::vector<double>& losses = result->curves[0].losses;
  ASSERT_EQ(losses.size(), 40u);
  EXPECT_LT(losses[36] + losses[37] + losses[38] + losses[39], losses[0] + losses[1] + losses[2] + losses[3]);
  for (const auto& [name, tensor] : student->initializers) {
    EXPECT_EQ(result->student.initializers.at(name).shape(), tensor.shape()) << name;
  }
  for (const std::string name : {"bn.mean", "bn.var"}) {
    EXPECT_EQ(result->student.initializers.at(name).ToFloats(), student->initializers.at(name).ToFloats()) << name;
  }
  EXPECT_NE(result->student.initializers.at("fc1.weight").ToFloats(), student->initializers.at("fc1.weight").ToFloats());
}

}  // namespace
}  // namespace squeeze::core::prune
