#include "core/quant/ptq/ptq.h"

#include <cmath>
#include <random>

#include "core/graph/builder.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/quant/ptq/test_models.h"
#include "core/runtime/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant::ptq {
namespace {

using graph::DataType;
using graph::Graph;
using graph::Tensor;
using ::testing::HasSubstr;


std::vector<CalibrationBatch> Batches(int count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<CalibrationBatch> batches;
  for (int i = 0; i < count; ++i) batches.push_back({{"image", Random({8, 2, 6, 6}, &rng)}});
  return batches;
}

std::vector<float> RunModel(const Graph& graph, const CalibrationBatch& batch) {
  auto executor = runtime::Executor::Create(graph, kernels::cpu::CreateCpuBackend(1));
  EXPECT_TRUE(executor.ok()) << executor.status();
  auto outputs = executor->Run(batch);
  EXPECT_TRUE(outputs.ok()) << outputs.status();
  return outputs->at(0).ToFloats();
}

WeightQuantization Weights(WeightMethod method, RtnOptions format) {
  WeightQuantization weights;
  weights.method = method;
  weights.format = format;
  return weights;
}

PtqOptions WeightOnly() {
  PtqOptions options;
  options.weights = Weights(WeightMethod::kRtn, {8, 0, false});
  return options;
}

double RelativeDifference(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) d += (a[i] - b[i]) * (a[i] - b[i]), n += a[i] * a[i];
  return std::sqrt(d / n);
}

TEST(PtqTest, FindsLayersAndSkipsTiedWeights) {
  auto scan = FindQuantizableLayers(SmallModel(1));
  ASSERT_TRUE(scan.ok());
  ASSERT_EQ(scan->layers.size(), 3u);
  EXPECT_EQ(scan->layers[0].op_type, "Conv");
  EXPECT_EQ(scan->layers[0].in, 18);
  EXPECT_EQ(scan->layers[0].kernel_size, 9);
  EXPECT_EQ(scan->layers[1].layout, WeightLayout::kOutIn);
  EXPECT_EQ(scan->layers[2].weight, "fc2.weight");
  EXPECT_EQ(scan->layers[2].out, 16);
  ASSERT_EQ(scan->skipped.size(), 1u);
  EXPECT_THAT(scan->skipped[0].reason, HasSubstr("also used by another node"));
}

TEST(PtqTest, WeightMethodsWriteTheirDequantizedWeightsAndReportProgress) {
  const Graph model = SmallModel(2);
  const std::vector<CalibrationBatch> batches = Batches(4, 3);
  const std::vector<float> reference = RunModel(model, batches[0]);
  std::map<WeightMethod, double> error;
  for (WeightMethod method : {WeightMethod::kRtn, WeightMethod::kGptq, WeightMethod::kAwq}) {
    PtqOptions options;
    options.weights = Weights(method, {4, 0, false});
    std::vector<int> seen;
    auto result = QuantizeGraph(model, batches, options, [&seen](int i, int n) {
      seen.push_back(i);
      EXPECT_EQ(n, 3);
      return true;
    });
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(seen, (std::vector<int>{0, 1, 2}));
    ASSERT_EQ(result->packed.size(), 3u);
    // The simulated graph holds exactly the packed weights, dequantized
    // (for RTN and GPTQ, whose layers are not rescaled).
    if (method != WeightMethod::kAwq) {
      auto scan = FindQuantizableLayers(result->graph);
      ASSERT_TRUE(scan.ok());
      for (size_t i = 0; i < 3; ++i) {
        std::vector<float> expected(result->packed[i].out * result->packed[i].in);
        ASSERT_TRUE(DequantizeRtn(result->packed[i], expected.data()).ok());
        EXPECT_EQ(WeightMatrix(result->graph, scan->layers[i]), expected);
      }
    }
    EXPECT_EQ(result->packed[1].bias.size(), 32u);
    error[method] = RelativeDifference(reference, RunModel(result->graph, batches[0]));
    EXPECT_LT(error[method], 0.3) << WeightMethodName(method);
  }
  EXPECT_LT(error[WeightMethod::kGptq], error[WeightMethod::kRtn]);
}

TEST(PtqTest, StaticActivationQuantizationWithEveryObserverAndSmoothQuant) {
  const Graph model = SmallModel(4);
  const std::vector<CalibrationBatch> batches = Batches(4, 5);
  const std::vector<float> reference = RunModel(model, batches[0]);
  for (Observer observer : {Observer::kMinMax, Observer::kPercentile, Observer::kMse, Observer::kEntropy}) {
    for (bool smooth : {false, true}) {
      PtqOptions options;
      options.weights = Weights(WeightMethod::kRtn, {8, 0, false});
      options.activations = ActivationQuantization{observer, 99.99};
      options.smoothquant = smooth;
      auto result = QuantizeGraph(model, batches, options);
      ASSERT_TRUE(result.ok()) << result.status();
      int qdq = 0;
      for (const auto& node : result->graph.nodes) qdq += node.op_type == "QuantizeLinear";
      EXPECT_EQ(qdq, 3);
      // KL calibration on this tiny sample (a few thousand values) clips hard.
      EXPECT_LT(RelativeDifference(reference, RunModel(result->graph, batches[0])),
                observer == Observer::kEntropy ? 0.6 : 0.05)
          << ObserverName(observer) << " smooth " << smooth;
      EXPECT_THAT(result->layers[1].technique, HasSubstr("a8u"));  // after ReLU
    }
  }
}

TEST(PtqTest, BiasCorrectionRemovesTheMeanOutputShift) {
  const Graph model = SmallModel(6);
  const std::vector<CalibrationBatch> batches = Batches(4, 7);
  PtqOptions options;
  options.weights = Weights(WeightMethod::kRtn, {4, 0, false});
  options.weights->bias_correction = true;
  auto result = QuantizeGraph(model, batches, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->layers[2].notes, testing::Contains(HasSubstr("MatMul has no bias")));
  EXPECT_THAT(result->layers[1].technique, HasSubstr("bias correction"));
}

TEST(PtqTest, NonFiniteWeightsAreZeroedAndReported) {
  Graph model = SmallModel(8);
  model.initializers.at("fc1.weight").data<float>()[5] = std::numeric_limits<float>::infinity();
  PtqOptions options;
  options.weights = Weights(WeightMethod::kGptq, {8, 0, false});
  auto result = QuantizeGraph(model, Batches(2, 9), options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->layers[1].nonfinite_weights, 1);
  EXPECT_THAT(result->layers[1].notes[0], HasSubstr("non-finite weight inf at row 0, column 5 set to 0"));
}

TEST(PtqTest, ErrorsNameTheLayerOrBatch) {
  const Graph model = SmallModel(10);
  PtqOptions options;
  options.weights = Weights(WeightMethod::kGptq, {4, 16, false});
  EXPECT_THAT(QuantizeGraph(model, Batches(1, 1), options).status().message(),
              HasSubstr("group_size 16 does not divide the input width 18 (layer Conv_0)"));
  options.weights->format.group_size = 0;
  EXPECT_THAT(QuantizeGraph(model, {}, options).status().message(), HasSubstr("calibration set is empty"));
  std::vector<CalibrationBatch> wrong = Batches(2, 1);
  wrong[1] = {{"pixels", wrong[1].at("image")}};
  EXPECT_THAT(QuantizeGraph(model, wrong, options).status().message(),
              HasSubstr("calibration batch 1: no feed for graph input image"));
  std::vector<CalibrationBatch> misshaped = {{{"image", Tensor(DataType::kFloat32, {2, 3, 6, 6})}}};
  EXPECT_THAT(QuantizeGraph(model, misshaped, options).status().message(), HasSubstr("calibration batch 0"));
  PtqOptions smooth;
  smooth.smoothquant = true;
  smooth.weights = Weights(WeightMethod::kRtn, {8, 0, false});
  EXPECT_THAT(QuantizeGraph(model, Batches(1, 1), smooth).status().message(),
              HasSubstr("smoothquant needs activation quantization"));
  options.weights->format.bits = 5;
  EXPECT_THAT(QuantizeGraph(model, Batches(1, 1), options).status().message(),
              HasSubstr("bits must be one of 2, 3, 4, 8, got 5 (layer Conv_0)"));
  auto cancelled = QuantizeGraph(model, Batches(1, 1), WeightOnly(), [](int, int) { return false; });
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace squeeze::core::quant::ptq
