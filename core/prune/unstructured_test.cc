#include "core/prune/unstructured.h"

#include <cmath>
#include <random>

#include "core/graph/builder.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/prune/nm_sparse.h"
#include "core/train/autograd.h"
#include "core/train/losses.h"
#include "core/train/optimizers.h"
#include "gmock/gmock.h"
#include "core/quant/ptq/test_models.h"
#include "gtest/gtest.h"

namespace squeeze::core::prune {
namespace {

namespace ptq = quant::ptq;
using graph::DataType;
using graph::Graph;
using graph::Tensor;
using ::testing::HasSubstr;

using quant::ptq::Random;
using quant::ptq::SmallModel;  // with the tied table, which is never pruned

std::vector<ptq::CalibrationBatch> Batches(int count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<ptq::CalibrationBatch> batches;
  for (int i = 0; i < count; ++i) batches.push_back({{"image", Random({8, 2, 6, 6}, &rng)}});
  return batches;
}

int64_t Zeros(const std::vector<float>& w) { return std::count(w.begin(), w.end(), 0.0f); }

TEST(PruneMatrixTest, MagnitudeUsesOneThresholdPerMatrix) {
  const std::vector<float> w = {0.1f, -5, 3, 0.2f,  //
                                4, -0.3f, 6, 7};
  auto pruned = PruneMagnitude("fc", w, 2, 4, {0.5});
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  // The four smallest |w| anywhere: 0.1, 0.2, 0.3, 3.
  EXPECT_EQ(*pruned, (std::vector<float>{0, -5, 0, 0, 4, 0, 6, 7}));
  auto nm = PruneMagnitude("fc", w, 2, 4, {0, 2, 4});
  ASSERT_TRUE(nm.ok());
  EXPECT_EQ(*nm, (std::vector<float>{0, -5, 3, 0, 0, 0, 6, 7}));
}

TEST(PruneMatrixTest, WandaWeighsByInputNormPerRow) {
  // Column 0's inputs are 100x larger: its small weights survive.
  const std::vector<float> w = {0.1f, 1, 2, 3,  //
                                0.2f, 3, 2, 1};
  const std::vector<double> norms = {1e4, 1, 1, 1};
  auto pruned = PruneWanda("fc", w, 2, 4, norms, {0.5});
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, (std::vector<float>{0.1f, 0, 0, 3, 0.2f, 3, 0, 0}));
  // Row-wise: each row loses exactly half even when one row is all larger.
  auto rows = PruneWanda("fc", {1, 2, 3, 4, 10, 20, 30, 40}, 2, 4, {1, 1, 1, 1}, {0.5});
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(*rows, (std::vector<float>{0, 0, 3, 4, 0, 0, 30, 40}));
  EXPECT_FALSE(PruneWanda("fc", w, 2, 4, {1, 1}, {0.5}).ok());
}

TEST(PruneMatrixTest, SparseGptIsTheObsUpdateOnTwoInputs) {
  // One row, two correlated inputs. Pruning w0 (the lower w^2 / [H^-1]_00)
  // moves w1 by -w0 [H^-1]_10 / [H^-1]_00: the optimal brain surgeon step.
  const std::vector<double> h = {2.0, 1.2, 1.2, 1.0};
  const std::vector<float> w = {0.3f, 1.0f};
  auto pruned = PruneSparseGpt("fc", w, 1, 2, h, {0.5}, /*dampening=*/0, 128, nullptr);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  const double det = 2.0 * 1.0 - 1.2 * 1.2;
  const double inv00 = 1.0 / det, inv10 = -1.2 / det;
  EXPECT_EQ((*pruned)[0], 0.0f);
  EXPECT_NEAR((*pruned)[1], 1.0 - 0.3 * inv10 / inv00, 1e-6);
}

// X with correlated columns; H = 2 X'X / rows.
struct Calibration {
  std::vector<float> x;
  std::vector<double> hessian, column_sq;
  int64_t rows = 256;
};

Calibration Correlated(int64_t in, std::mt19937* rng) {
  Calibration c;
  std::normal_distribution<float> normal(0, 1);
  c.x.resize(c.rows * in);
  for (int64_t r = 0; r < c.rows; ++r) {
    const float shared = normal(*rng);
    for (int64_t j = 0; j < in; ++j) c.x[r * in + j] = (j % 3 == 0 ? 4.0f : 1.0f) * normal(*rng) + 0.8f * shared;
  }
  c.hessian.assign(in * in, 0.0);
  c.column_sq.assign(in, 0.0);
  for (int64_t r = 0; r < c.rows; ++r) {
    for (int64_t i = 0; i < in; ++i) {
      c.column_sq[i] += double{c.x[r * in + i]} * c.x[r * in + i];
      for (int64_t j = 0; j < in; ++j) c.hessian[i * in + j] += 2.0 * c.x[r * in + i] * c.x[r * in + j] / c.rows;
    }
  }
  return c;
}

double OutputError(const Calibration& c, const std::vector<float>& w, const std::vector<float>& p, int64_t out,
                   int64_t in) {
  double error = 0;
  for (int64_t r = 0; r < c.rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double d = 0;
      for (int64_t j = 0; j < in; ++j) d += double{c.x[r * in + j]} * (w[o * in + j] - p[o * in + j]);
      error += d * d;
    }
  }
  return std::sqrt(error);
}

TEST(PruneMatrixTest, SparseGptAndWandaReconstructBetterThanMagnitude) {
  std::mt19937 rng(11);
  const int64_t out = 16, in = 48;
  const Calibration c = Correlated(in, &rng);
  const std::vector<float> w = Random({out, in}, &rng).ToFloats();
  for (SparsityTarget target : {SparsityTarget{0.5}, SparsityTarget{0, 2, 4}, SparsityTarget{0, 4, 8}}) {
    auto magnitude = PruneMagnitude("fc", w, out, in, target);
    auto wanda = PruneWanda("fc", w, out, in, c.column_sq, target);
    auto sparsegpt = PruneSparseGpt("fc", w, out, in, c.hessian, target, 0.01, 16, nullptr);
    ASSERT_TRUE(magnitude.ok() && wanda.ok() && sparsegpt.ok()) << sparsegpt.status();
    for (const auto* p : {&*magnitude, &*wanda, &*sparsegpt}) {
      EXPECT_EQ(Zeros(*p), out * in / 2);
      if (target.m > 0) {
        EXPECT_TRUE(HasNmPattern(*p, out, in, target.n, target.m));
      }
    }
    const double e_magnitude = OutputError(c, w, *magnitude, out, in);
    const double e_wanda = OutputError(c, w, *wanda, out, in);
    const double e_sparsegpt = OutputError(c, w, *sparsegpt, out, in);
    EXPECT_LT(e_wanda, e_magnitude) << target.m;
    EXPECT_LT(e_sparsegpt, e_wanda) << target.m;
  }
}

TEST(PruneMatrixTest, ZeroSparsityKeepsEverything) {
  std::mt19937 rng(2);
  const Calibration c = Correlated(8, &rng);
  const std::vector<float> w = Random({4, 8}, &rng).ToFloats();
  auto sparsegpt = PruneSparseGpt("fc", w, 4, 8, c.hessian, {0.0}, 0.01, 128, nullptr);
  ASSERT_TRUE(sparsegpt.ok());
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR((*sparsegpt)[i], w[i], 1e-6);
  EXPECT_EQ(*PruneMagnitude("fc", w, 4, 8, {0.0}), w);
}

TEST(PruneGraphTest, PrunesEveryLinearLayerAndReports) {
  const Graph graph = SmallModel(1);
  const auto batches = Batches(2, 7);
  for (PruneMethod method : {PruneMethod::kMagnitude, PruneMethod::kWanda, PruneMethod::kSparseGpt}) {
    PruneOptions options;
    options.method = method;
    options.sparsity = 0.5;
    int calls = 0;
    auto result = PruneGraph(graph, batches, options, [&](int i, int n) {
      EXPECT_EQ(i, calls++);
      EXPECT_EQ(n, 3);
      return true;
    });
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(calls, 3);
    ASSERT_EQ(result->layers.size(), 3u);  // conv, fc1, fc2; the tied table is skipped
    EXPECT_FALSE(result->skipped.empty());
    EXPECT_EQ(result->graph.initializers.at("table").ToFloats(), graph.initializers.at("table").ToFloats());
    for (const PruneLayerReport& layer : result->layers) {
      EXPECT_EQ(layer.zeros, layer.params / 2) << layer.name;
      EXPECT_DOUBLE_EQ(layer.sparsity, 0.5);
      EXPECT_GT(layer.relative_output_error, 0.0);
      EXPECT_LT(layer.relative_output_error, 1.0);
    }
  }
}

TEST(PruneGraphTest, SequentialCalibratesThroughThePrunedLayers) {
  const Graph graph = SmallModel(1);
  const auto batches = Batches(2, 7);
  PruneOptions options;
  options.method = PruneMethod::kSparseGpt;
  auto once = PruneGraph(graph, batches, options);
  options.sequential = true;
  auto sequential = PruneGraph(graph, batches, options);
  ASSERT_TRUE(once.ok() && sequential.ok()) << sequential.status();
  // The first layer sees the graph input either way; fc1 sees a pruned conv.
  EXPECT_EQ(sequential->graph.initializers.at("conv.weight").ToFloats(),
            once->graph.initializers.at("conv.weight").ToFloats());
  EXPECT_NE(sequential->graph.initializers.at("fc1.weight").ToFloats(),
            once->graph.initializers.at("fc1.weight").ToFloats());
  for (const PruneLayerReport& layer : sequential->layers) EXPECT_EQ(layer.zeros, layer.params / 2) << layer.name;
}

TEST(PruneGraphTest, GlobalMagnitudeUsesOneThreshold) {
  const Graph graph = SmallModel(1);
  PruneOptions options;
  options.scope = PruneScope::kGlobal;
  options.sparsity = 0.6;
  auto result = PruneGraph(graph, {}, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->zeros, static_cast<int64_t>(0.6 * result->params));
  // Layers differ: fc1 (stddev 0.1) loses more than the conv (stddev 0.5).
  EXPECT_GT(result->layers[1].sparsity, result->layers[0].sparsity);
  EXPECT_EQ(result->layers[0].relative_output_error, -1);  // no batches
}

TEST(PruneGraphTest, NmSkipsListedLayersAndKeepsThePattern) {
  const Graph graph = SmallModel(1);
  PruneOptions options;
  options.method = PruneMethod::kSparseGpt;
  options.nm_n = 2;
  options.nm_m = 4;
  // The conv has in = 2 * 3 * 3 = 18: 2:4 does not fit it.
  auto bad = PruneGraph(graph, Batches(1, 3), options);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("has in = 18, not a multiple of M = 4"));
  options.skip_layers = {"conv.weight"};
  auto result = PruneGraph(graph, Batches(1, 3), options);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->layers.size(), 2u);
  EXPECT_EQ(result->graph.initializers.at("conv.weight").ToFloats(), graph.initializers.at("conv.weight").ToFloats());
  auto scan = ptq::FindQuantizableLayers(result->graph);
  for (const auto& layer : scan->layers) {
    if (layer.weight == "conv.weight") continue;
    EXPECT_TRUE(HasNmPattern(ptq::WeightMatrix(result->graph, layer), layer.out, layer.in, 2, 4)) << layer.name;
  }
}

TEST(PruneGraphTest, RejectsBadOptions) {
  const Graph graph = SmallModel(1);
  auto message = [&](PruneOptions options) {
    auto result = PruneGraph(graph, Batches(1, 3), options);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(result.status().message());
  };
  PruneOptions options;
  options.sparsity = 1.0;
  EXPECT_THAT(message(options), HasSubstr("sparsity must be in [0, 1), got 1"));
  options.sparsity = -0.25;
  EXPECT_THAT(message(options), HasSubstr("got -0.25"));
  options.sparsity = std::nan("");
  EXPECT_THAT(message(options), HasSubstr("sparsity must be in [0, 1), got nan"));
  options = {};
  options.nm_n = 4;
  options.nm_m = 4;
  EXPECT_THAT(message(options), HasSubstr("1 <= N < M <= 16, got 4:4"));
  options.nm_n = 0;
  EXPECT_THAT(message(options), HasSubstr("got 0:4"));
  options = {};
  options.skip_layers = {"nope"};
  EXPECT_THAT(message(options), HasSubstr("skip_layers names 'nope'"));
  options = {};
  options.method = PruneMethod::kWanda;
  options.scope = PruneScope::kGlobal;
  EXPECT_THAT(message(options), HasSubstr("scope global is for unstructured magnitude pruning only, got wanda"));
  options.scope = PruneScope::kPerLayer;
  EXPECT_THAT(PruneGraph(graph, {}, options).status().message(), HasSubstr("wanda needs calibration batches"));
  auto cancelled = PruneGraph(graph, {}, PruneOptions{}, [](int, int) { return false; });
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled);
}

TEST(GradualTest, CubicSchedule) {
  GradualSchedule s{0.1, 0.7, 10, 30, 5};
  EXPECT_DOUBLE_EQ(CubicSparsity(s, 0), 0.1);
  EXPECT_DOUBLE_EQ(CubicSparsity(s, 10), 0.1);
  EXPECT_NEAR(CubicSparsity(s, 20), 0.7 + (0.1 - 0.7) * 0.125, 1e-12);
  EXPECT_DOUBLE_EQ(CubicSparsity(s, 30), 0.7);
  EXPECT_DOUBLE_EQ(CubicSparsity(s, 99), 0.7);
  auto bad = GradualPruner::Create(SmallModel(1), {0, 1.2, 0, 10, 1});
  EXPECT_THAT(bad.status().message(), HasSubstr("final_sparsity must be in [0, 1), got 1.2"));
  EXPECT_FALSE(GradualPruner::Create(SmallModel(1), {0, 0.5, 10, 10, 1}).ok());
}

// Regression y = x A' with a 2-layer linear net trained with SGD while the
// pruner ramps sparsity from 0 to 0.5: masks only grow, the final sparsity
// is exact, and the loss still falls well below where it started.
TEST(GradualTest, PrunesDuringFineTuning) {
  std::mt19937 rng(4);
  graph::GraphBuilder b("mlp");
  std::string h = b.Add("Gemm", {"x", b.Initializer("w1", Random({16, 8}, &rng, 0.3f))}, {{"transB", int64_t{1}}});
  b.Add("Gemm", {b.Add("Relu", {h}), b.Initializer("w2", Random({4, 16}, &rng, 0.3f))}, {{"transB", int64_t{1}}},
        "y");
  b.AddInput({"x", DataType::kFloat32, std::nullopt});
  b.AddOutput({"y", DataType::kFloat32, std::nullopt});
  const Graph graph = b.Finish();
  auto program = train::GradientProgram::Create(graph, kernels::cpu::CreateCpuBackend(1));
  ASSERT_TRUE(program.ok()) << program.status();
  auto pruner = GradualPruner::Create(graph, {0.0, 0.5, 0, 60, 10});
  ASSERT_TRUE(pruner.ok()) << pruner.status();
  const Tensor teacher = Random({4, 8}, &rng);
  train::Sgd sgd({0.05, 0.9, 0.0});
  std::vector<float> previous_w1 = graph.initializers.at("w1").ToFloats();
  double first_loss = -1, last_loss = 0;
  for (int64_t step = 0; step < 120; ++step) {
    const Tensor x = Random({32, 8}, &rng);
    Tensor target(DataType::kFloat32, {32, 4});
    for (int64_t r = 0; r < 32; ++r) {
      for (int64_t o = 0; o < 4; ++o) {
        float sum = 0;
        for (int64_t j = 0; j < 8; ++j) sum += x.data<float>()[r * 8 + j] * teacher.data<float>()[o * 8 + j];
        target.data<float>()[r * 4 + o] = sum;
      }
    }
    auto tape = program->Forward({{"x", x}});
    ASSERT_TRUE(tape.ok()) << tape.status();
    auto y = program->Output(*tape, "y");
    ASSERT_TRUE(y.ok()) << y.status();
    auto loss = train::MeanSquaredError(**y, target);
    ASSERT_TRUE(loss.ok()) << loss.status();
    if (first_loss < 0) first_loss = loss->loss;
    last_loss = loss->loss;
    auto gradients = program->Backward(*tape, {{"y", loss->gradient}});
    ASSERT_TRUE(gradients.ok()) << gradients.status();
    ASSERT_TRUE(sgd.Step(&program->mutable_parameters(), *gradients).ok());
    ASSERT_TRUE(pruner->Apply(step, &program->mutable_parameters()).ok());
    const std::vector<float> w1 = program->graph().initializers.at("w1").ToFloats();
    const int64_t expected = static_cast<int64_t>(CubicSparsity({0.0, 0.5, 0, 60, 10}, step - step % 10) * 128);
    if (step <= 60) {
      EXPECT_EQ(Zeros(w1), expected) << step;
    }
    for (size_t i = 0; i < w1.size(); ++i) {
      if (previous_w1[i] == 0.0f) {
        ASSERT_EQ(w1[i], 0.0f) << "weight " << i << " revived at step " << step;
      }
    }
    previous_w1 = w1;
  }
  EXPECT_DOUBLE_EQ(pruner->current_sparsity(), 0.5);
  EXPECT_EQ(Zeros(program->graph().initializers.at("w1").ToFloats()), 64);
  EXPECT_EQ(Zeros(program->graph().initializers.at("w2").ToFloats()), 32);
  EXPECT_LT(last_loss, 0.5 * first_loss);
}

}  // namespace
}  // namespace squeeze::core::prune
