#include "core/quant/qat/qat.h"

#include <random>

#include "core/kernels/cpu/cpu_backend.h"
#include "core/runtime/executor.h"
#include "core/quant/ptq/layers.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant::qat {
namespace {

using graph::DataType;
using graph::Graph;
using graph::Tensor;

constexpr int64_t kFeatures = 8, kHidden = 16, kClasses = 3, kRows = 32;

// x [N, 8] -> Gemm(16) -> Relu -> Gemm(3) logits, random weights.
Graph TinyClassifier() {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  auto random = [&](std::vector<int64_t> shape) {
    Tensor t(DataType::kFloat32, shape);
    for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = normal(rng);
    return t;
  };
  Graph g;
  g.opset_version = 17;
  g.inputs.push_back({"x", DataType::kFloat32, std::nullopt});
  g.outputs.push_back({"logits", DataType::kFloat32, std::nullopt});
  g.initializers["w1"] = random({kHidden, kFeatures});
  g.initializers["b1"] = random({kHidden});
  g.initializers["w2"] = random({kClasses, kHidden});
  g.initializers["b2"] = random({kClasses});
  graph::Node fc1{"fc1", "Gemm", "", {"x", "w1", "b1"}, {"h"}, {}};
  fc1.attributes["transB"] = int64_t{1};
  graph::Node relu{"relu", "Relu", "", {"h"}, {"a"}, {}};
  graph::Node fc2{"fc2", "Gemm", "", {"a", "w2", "b2"}, {"logits"}, {}};
  fc2.attributes["transB"] = int64_t{1};
  g.nodes = {fc1, relu, fc2};
  return g;
}

// Labels from a fixed linear rule of the inputs: learnable by the model.
QatBatch MakeBatch(uint64_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  QatBatch batch;
  Tensor x(DataType::kFloat32, {kRows, kFeatures});
  for (int64_t r = 0; r < kRows; ++r) {
    float score[kClasses] = {0, 0, 0};
    for (int64_t c = 0; c < kFeatures; ++c) {
      const float v = normal(rng);
      x.data<float>()[r * kFeatures + c] = v;
      score[c % kClasses] += v;
    }
    batch.labels.push_back(std::max_element(score, score + kClasses) - score);
  }
  batch.feeds["x"] = std::move(x);
  return batch;
}

TEST(QatTest, LossDecreasesAndTheResultIsTheBakedW4A8Model) {
  const Graph model = TinyClassifier();
  const std::vector<ptq::CalibrationBatch> calibration = {MakeBatch(100).feeds};
  QatOptions options;
  options.steps = 60;
  options.learning_rate = 1e-2;
  options.scale_learning_rate = 1e-3;
  options.distillation = Distillation{2.0, 0.3};
  int64_t calls = 0;
  auto result = TrainQuantizationAware(
      model, calibration, [](int64_t step) -> absl::StatusOr<QatBatch> { return MakeBatch(step % 4); }, options,
      [&calls](const QatStep&) { return ++calls > 0; });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(calls, 60);
  ASSERT_EQ(result->history.size(), 60u);
  EXPECT_EQ(result->history.front().phase, "ramp");
  EXPECT_EQ(result->history[30].phase, "learn");
  EXPECT_EQ(result->history.back().phase, "frozen");
  EXPECT_EQ(result->history[19].lambda, 1.0);
  double first = 0, last = 0;
  for (int i = 0; i < 8; ++i) first += result->history[i].loss, last += result->history[52 + i].loss;
  EXPECT_LT(last, 0.8 * first);

  // Scales moved while learning; the graph holds the packed weights exactly.
  ASSERT_EQ(result->layers.size(), 2u);
  EXPECT_NE(result->layers[0].scales, result->layers[0].initial_scales);
  auto scan = ptq::FindQuantizableLayers(result->graph);
  ASSERT_TRUE(scan.ok());
  for (const ptq::QuantizableLayer& layer : scan->layers) {
    const QuantizedLinear& packed = result->packed.at(layer.weight);
    std::vector<float> expected(packed.out * packed.in);
    ASSERT_TRUE(DequantizeRtn(packed, expected.data()).ok());
    EXPECT_EQ(ptq::WeightMatrix(result->graph, layer), expected) << layer.weight;
  }
  ASSERT_EQ(result->activations.size(), 2u);
  for (const auto& a : result->activations) {
    EXPECT_GT(a.scale, 0);
    EXPECT_LT(a.min, a.max);
  }
  auto executor = runtime::Executor::Create(result->graph, kernels::cpu::CreateCpuBackend(1));
  ASSERT_TRUE(executor.ok()) << executor.status();
  EXPECT_TRUE(executor->Run(MakeBatch(9).feeds).ok());
}

TEST(QatTest, RejectsBadOptions) {
  QatOptions options;
  options.weight_bits = 3;
  auto source = [](int64_t) -> absl::StatusOr<QatBatch> { return MakeBatch(0); };
  EXPECT_EQ(TrainQuantizationAware(TinyClassifier(), {MakeBatch(1).feeds}, source, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = {};
  options.ramp_fraction = 0.8;
  options.frozen_fraction = 0.5;
  EXPECT_EQ(TrainQuantizationAware(TinyClassifier(), {MakeBatch(1).feeds}, source, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = {};
  EXPECT_EQ(TrainQuantizationAware(TinyClassifier(), {}, source, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace squeeze::core::quant::qat
