// Recipes of several steps through a GraphSession on the reference MLP.
#include "core/compress/recipe.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/compress/graph_variant_builder.h"
#include "core/compress/test_util/mlp_session.h"
#include "core/kernels/backends.h"
#include "core/onnx/onnx_model.h"
#include "core/quant/ptq/layers.h"
#include "core/runtime/executor.h"
#include "gtest/gtest.h"

namespace squeeze::core::compress {
namespace {

const std::string kMlp = std::string(SQUEEZE_SOURCE_DIR) + "/deploy/models/fashion_mnist_mlp.onnx";

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()))).string();
}

double ArtifactAccuracy();

class RecipeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dataset_ = new std::string(TempPath("recipe-data.safetensors"));
    auto session = test_util::OpenMlpSession(kMlp, *dataset_);
    ASSERT_TRUE(session.ok()) << session.status();
    session_ = session->release();
  }
  static void TearDownTestSuite() {
    delete session_;
    delete dataset_;
  }

  absl::StatusOr<GraphVariantReport> Build(const Recipe& recipe, const ProgressFn& progress = {}) {
    return session_->Build(recipe, TargetDevice{}, TempPath("recipe-variant.onnx"), progress);
  }

  static std::string* dataset_;
  static GraphSession* session_;
  friend double ArtifactAccuracy();
};
std::string* RecipeTest::dataset_ = nullptr;
GraphSession* RecipeTest::session_ = nullptr;

QuantizeStep W8A8() {
  QuantizeStep step;
  step.ptq.weights.emplace();
  step.ptq.weights->format = {8, 0, false};
  step.ptq.activations.emplace();
  return step;
}

TEST_F(RecipeTest, TwoFourSparsityThenW8A8RunsTheSparseKernelAndKeepsZeros) {
  PruneStep prune;
  prune.unstructured.method = prune::PruneMethod::kWanda;
  prune.unstructured.nm_n = 2;
  prune.unstructured.nm_m = 4;
  Recipe recipe{{prune, W8A8()}};
  auto report = Build(recipe);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->technique, "wanda 2:4 + rtn int8-pc-sym + a8 minmax");
  EXPECT_EQ(report->artifact_format, "onnx-qdq");
  bool sparse_runtime_note = false;
  for (const std::string& note : report->notes) sparse_runtime_note |= note.find("2:4 sparse kernel") != std::string::npos;
  EXPECT_TRUE(sparse_runtime_note);
  EXPECT_GT(report->metric_value, report->baseline_metric - 0.10);  // 400 images: a coarse bound
  // The artifact holds the pattern: half of every quantized weight is 0.
  auto artifact = onnx::LoadOnnxModel(TempPath("recipe-variant.onnx"));
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  int64_t zeros = 0, total = 0;
  for (const auto& [name, tensor] : artifact->initializers) {
    if (name.size() < 10 || name.substr(name.size() - 10) != ".quantized") continue;
    const int8_t* q = tensor.data<int8_t>();
    for (int64_t i = 0; i < tensor.num_elements(); ++i) zeros += q[i] == 0;
    total += tensor.num_elements();
  }
  ASSERT_GT(total, 0);
  EXPECT_GE(static_cast<double>(zeros) / total, 0.5);
}

TEST_F(RecipeTest, ChannelPruningWithRecoveryRemovesParameters) {
  PruneStep prune;
  prune.channels = true;
  prune.structured.target = 0.3;
  prune.structured.allocation = prune::RatioAllocation::kUniform;
  prune.recovery.steps = 20;
  prune.recovery.learning_rate = 1e-3;
  auto report = Build(Recipe{{prune}});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->artifact_format, "onnx");
  EXPECT_LT(report->parameters, report->baseline_parameters * 0.75);
  EXPECT_LT(report->artifact_bytes, report->baseline_bytes);
  ASSERT_EQ(report->notes.size(), 2u);
  EXPECT_NE(report->notes[1].find("20 steps of output distillation"), std::string::npos) << report->notes[1];
}

TEST_F(RecipeTest, LowRankHalvesTheLinearLayers) {
  LowRankStep low_rank;
  low_rank.options.target_ratio = 0.5;
  low_rank.recovery.steps = 5;
  auto report = Build(Recipe{{low_rank}});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_LT(report->parameters, report->baseline_parameters * 0.6);
  EXPECT_EQ(report->technique, "low-rank 2x");
  // The rank scales were folded: no Mul node is left for them.
  auto artifact = onnx::LoadOnnxModel(TempPath("recipe-variant.onnx"));
  ASSERT_TRUE(artifact.ok());
  for (const auto& node : artifact->nodes) EXPECT_NE(node.op_type, "Mul") << node.name;
}

TEST_F(RecipeTest, LoraRecoveryAfterTwoFourKeepsThePattern) {
  PruneStep prune;
  prune.unstructured.method = prune::PruneMethod::kMagnitude;
  prune.unstructured.nm_n = 2;
  prune.unstructured.nm_m = 4;
  DistillStep distill;
  distill.recovery.steps = 10;
  distill.recovery.learning_rate = 1e-3;
  distill.recovery.lora_rank = 4;
  auto report = Build(Recipe{{prune, distill}});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->technique, "magnitude 2:4 + distill 10 steps (LoRA r4)");
  bool merged = false;
  for (const std::string& note : report->notes) merged |= note.find("LoRA rank 4 on 3 layers") != std::string::npos;
  EXPECT_TRUE(merged);
  // In memory the 2:4 layers hold half their values plus 2-bit indices.
  EXPECT_LT(report->memory_bytes, report->baseline_memory_bytes * 0.6);
  EXPECT_GT(report->memory_bytes, report->baseline_memory_bytes * 0.5);
  // The merged weights still hold the 2:4 pattern (the runtime rewrites them).
  auto artifact = onnx::LoadOnnxModel(TempPath("recipe-variant.onnx"));
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  for (const auto& [name, tensor] : artifact->initializers) {
    if (tensor.rank() != 2 || tensor.shape()[1] % 4 != 0 || tensor.shape()[0] < 10) continue;
    const float* w = tensor.data<float>();
    for (int64_t g = 0; g < tensor.num_elements() / 4; ++g) {
      int nonzero = 0;
      for (int k = 0; k < 4; ++k) nonzero += w[g * 4 + k] != 0.0f;
      ASSERT_LE(nonzero, 2) << name << " group " << g;
    }
  }
}

// The quantize progress of a Build: (step, total) of every "quantize" report.
struct QuantizeProgress {
  std::vector<std::pair<int64_t, int64_t>> layers;
  std::vector<std::string> stages;
  ProgressFn Fn() {
    return [this](const std::string& stage, int64_t step, int64_t total) {
      stages.push_back(stage);
      if (stage == "quantize") layers.push_back({step, total});
      return true;
    };
  }
};

TEST_F(RecipeTest, PerTensorRtnUsesOneScalePerWeightTensor) {
  QuantizeStep step;
  step.ptq.weights.emplace();
  step.ptq.weights->format = {3, 0, false};
  step.per_tensor = true;
  QuantizeProgress progress;
  auto report = Build(Recipe{{step}}, progress.Fn());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->technique, "rtn int3-pt-sym");
  EXPECT_EQ(report->artifact_format, "onnx-qdq");
  const auto& layers = session_->scan().layers;
  ASSERT_EQ(report->layers.size(), layers.size());
  // Layer i of N, in order.
  ASSERT_EQ(progress.layers.size(), layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    EXPECT_EQ(progress.layers[i], std::make_pair(static_cast<int64_t>(i + 1), static_cast<int64_t>(layers.size())));
  }
  // The artifact dequantizes every weight of a layer with the one scale
  // max|W| / 3, and each weight lands on round(w / scale) * scale.
  auto artifact = onnx::LoadOnnxModel(TempPath("recipe-variant.onnx"));
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  for (const auto& layer : layers) {
    const std::vector<float> w = quant::ptq::WeightMatrix(session_->graph(), layer);
    float max_abs = 0;
    for (float v : w) max_abs = std::max(max_abs, std::fabs(v));
    const float scale = static_cast<float>(static_cast<double>(max_abs) / 3);
    auto scales = artifact->initializers.find(layer.weight + ".scale");
    ASSERT_NE(scales, artifact->initializers.end()) << layer.weight;
    for (float s : scales->second.ToFloats()) EXPECT_EQ(s, scale) << layer.name;
    EXPECT_EQ(report->layers[&layer - &layers[0]].weight_bits, 3);
  }
}

// Top-1 accuracy of the last artifact written, run by our CPU runtime on the
// session's examples (also its evaluation set).
double ArtifactAccuracy() {
  auto artifact = onnx::LoadOnnxModel(TempPath("recipe-variant.onnx"));
  EXPECT_TRUE(artifact.ok()) << artifact.status();
  auto data = ReadDatasetFile(*RecipeTest::dataset_);
  auto backend = kernels::CreateBackend("cpu");
  if (!artifact.ok() || !data.ok() || !backend.ok()) return -1;
  auto executor = runtime::Executor::Create(*artifact, *backend);
  EXPECT_TRUE(executor.ok()) << executor.status();
  auto feed = graph::FromModelTensor(data->inputs);
  if (!executor.ok() || !feed.ok()) return -1;
  auto outputs = executor->Run({{artifact->inputs.front().name, *feed}});
  EXPECT_TRUE(outputs.ok()) << outputs.status();
  auto labels = data::LabelsAsInt64(*data);
  if (!outputs.ok() || !labels.ok()) return -1;
  const graph::Tensor& logits = outputs->at(0);
  const int64_t classes = logits.shape().back();
  int64_t correct = 0;
  for (size_t r = 0; r < labels->size(); ++r) {
    const float* row = logits.data<float>() + r * classes;
    correct += (std::max_element(row, row + classes) - row) == (*labels)[r];
  }
  return static_cast<double>(correct) / static_cast<double>(labels->size());
}

TEST_F(RecipeTest, KmeansCodebooksHoldTwoToTheBitsValuesPerLayer) {
  QuantizeStep step;
  step.ptq.weights.emplace();
  step.ptq.weights->format = {4, 0, false};
  step.kmeans.emplace();
  step.kmeans->bits = 4;
  step.kmeans->per_row_codebook = false;
  step.kmeans->max_iterations = 20;
  QuantizeProgress progress;
  auto report = Build(Recipe{{step}}, progress.Fn());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->technique, "kmeans4-layer");
  EXPECT_EQ(report->artifact_format, "onnx-codebook");
  EXPECT_LT(report->artifact_bytes, report->baseline_bytes / 3);  // one byte per weight
  EXPECT_EQ(progress.layers.size(), session_->scan().layers.size());
  EXPECT_GT(report->metric_value, report->baseline_metric - 0.05);  // 400 images: a coarse bound
  EXPECT_LT(report->memory_bytes, report->baseline_memory_bytes / 7);
  auto artifact = onnx::LoadOnnxModel(TempPath("recipe-variant.onnx"));
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  ASSERT_EQ(report->layers.size(), session_->scan().layers.size());
  for (const auto& layer : session_->scan().layers) {
    EXPECT_EQ(artifact->initializers.count(layer.weight), 0u) << layer.weight;
    ASSERT_EQ(artifact->initializers.count(layer.weight + ".codebook"), 1u) << layer.weight;
    EXPECT_EQ(artifact->initializers.at(layer.weight + ".codebook").num_elements(), 16) << layer.weight;
  }
  // The artifact runs in our runtime (Cast, Gather) and scores exactly the
  // accuracy the report measured on the simulated graph.
  EXPECT_DOUBLE_EQ(ArtifactAccuracy(), report->metric_value);
  for (const auto& layer : report->layers) {
    EXPECT_EQ(layer.weight_bits, 4);
    EXPECT_GT(layer.weight_relative_error, 0);
    EXPECT_LT(layer.weight_relative_error, 0.2) << layer.name;
  }
}

TEST_F(RecipeTest, KmeansPerChannelCodebooksExportWithRowOffsets) {
  QuantizeStep step;
  step.ptq.weights.emplace();
  step.kmeans.emplace();
  step.kmeans->bits = 3;
  step.kmeans->per_row_codebook = true;
  step.kmeans->max_iterations = 10;
  auto report = Build(Recipe{{step}});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->technique, "kmeans3-row");
  for (const auto& layer : report->layers) EXPECT_EQ(layer.weight_bits, 3);
  EXPECT_DOUBLE_EQ(ArtifactAccuracy(), report->metric_value);
}

TEST_F(RecipeTest, FloatCastsShipSmallerArtifactsThatScoreTheReportedMetric) {
  struct Case {
    quant::FloatFormat format;
    std::string technique, artifact_format;
    int bits;
    double max_relative_error;
  };
  const std::vector<Case> cases = {
      {quant::FloatFormat::kFloat16, "cast fp16", "onnx-fp16", 16, 1e-3},
      {quant::FloatFormat::kBFloat16, "cast bf16", "onnx-bf16", 16, 4e-3},
      {quant::FloatFormat::kFp8E4M3, "cast fp8-e4m3", "onnx-fp8-lut", 8, 0.04},
      {quant::FloatFormat::kFp8E5M2, "cast fp8-e5m2", "onnx-fp8-lut", 8, 0.08},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.technique);
    QuantizeStep step;
    step.ptq.weights.emplace();
    step.cast = c.format;
    QuantizeProgress progress;
    auto report = Build(Recipe{{step}}, progress.Fn());
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->technique, c.technique);
    EXPECT_EQ(report->artifact_format, c.artifact_format);
    EXPECT_EQ(progress.layers.size(), session_->scan().layers.size());
    // 2x (16-bit) or 4x (fp8) smaller than the float32 file, within 5%
    // (biases, the graph and the 1 KiB fp8 table stay).
    const double ratio = static_cast<double>(report->baseline_bytes) / static_cast<double>(report->artifact_bytes);
    EXPECT_GT(ratio, 0.95 * 32 / c.bits);
    EXPECT_LT(ratio, 32.0 / c.bits);
    const double memory_ratio =
        static_cast<double>(report->baseline_memory_bytes) / static_cast<double>(report->memory_bytes);
    EXPECT_GT(memory_ratio, 0.95 * 32 / c.bits);
    EXPECT_LT(memory_ratio, 32.0 / c.bits);
    ASSERT_EQ(report->layers.size(), session_->scan().layers.size());
    for (const auto& layer : report->layers) {
      EXPECT_EQ(layer.weight_bits, c.bits);
      EXPECT_GT(layer.weight_relative_error, 0) << layer.name;
      EXPECT_LT(layer.weight_relative_error, c.max_relative_error) << layer.name;
    }
    auto artifact = onnx::LoadOnnxModel(TempPath("recipe-variant.onnx"));
    ASSERT_TRUE(artifact.ok()) << artifact.status();
    for (const auto& layer : session_->scan().layers) {
      EXPECT_EQ(artifact->initializers.count(layer.weight), 0u) << layer.weight;
      const std::string stored = layer.weight + (c.bits == 16 ? ".stored" : ".codes");
      ASSERT_EQ(artifact->initializers.count(stored), 1u) << stored;
      const graph::DataType expected = c.bits == 8 ? graph::DataType::kUInt8
                                       : c.format == quant::FloatFormat::kFloat16 ? graph::DataType::kFloat16
                                                                                  : graph::DataType::kBFloat16;
      EXPECT_EQ(artifact->initializers.at(stored).dtype(), expected) << stored;
      EXPECT_EQ(artifact->initializers.at(stored).num_elements(), layer.out * layer.in) << stored;
    }
    // The artifact runs in our runtime (Cast, or Cast -> Gather) and scores
    // exactly the accuracy the report measured on the decoded weights.
    EXPECT_DOUBLE_EQ(ArtifactAccuracy(), report->metric_value);
  }
  QuantizeStep mixed_cast;
  mixed_cast.ptq.weights.emplace();
  mixed_cast.cast = quant::FloatFormat::kFp8E4M3;
  mixed_cast.per_tensor = true;
  EXPECT_EQ(ValidateRecipe(Recipe{{mixed_cast}}).message(),
            "step 0 (quantize): a fp8-e4m3 cast is weight-only and excludes kmeans, mixed precision, per-tensor "
            "scales and activation quantization");
}

// A mixed-precision step at 3 bits per weight from the widths {2, 4, 8}.
QuantizeStep MixedAtThreeBits(quant::mixed::CurvatureEstimator estimator, bool asymmetric) {
  QuantizeStep step;
  step.ptq.weights.emplace();
  step.mixed.emplace();
  step.mixed->average_bits = 3;
  step.mixed->sensitivity.estimator = estimator;
  step.mixed->sensitivity.asymmetric = asymmetric;
  step.mixed->sensitivity.candidate_bits = {2, 4, 8};
  return step;
}

// Every layer of `report` is per-channel RTN at 2, 4 or 8 bits, symmetric or
// asymmetric as asked, and the plan's nominal size, with 32 bits of scale
// (and 8 of zero point when asymmetric) per output channel, is at most 3
// bits per weight and mixes widths.
void ExpectMixedWithinThreeBits(const GraphVariantReport& report, const std::vector<quant::ptq::QuantizableLayer>& scan,
                                bool asymmetric) {
  ASSERT_EQ(report.layers.size(), scan.size());
  int64_t params = 0, bits = 0;
  std::set<int> widths;
  for (const auto& layer : report.layers) {
    widths.insert(layer.weight_bits);
    EXPECT_TRUE(layer.weight_bits == 2 || layer.weight_bits == 4 || layer.weight_bits == 8) << layer.weight_bits;
    EXPECT_EQ(layer.technique, absl::StrCat("mixed rtn int", layer.weight_bits, "-pc-", asymmetric ? "asym" : "sym"))
        << layer.name;
    params += layer.out * layer.in;
    bits += layer.out * layer.in * layer.weight_bits + layer.out * (asymmetric ? 40 : 32);
  }
  EXPECT_LE(bits, 3 * params);
  EXPECT_GT(widths.size(), 1u);  // 3 bits on average from {2, 4, 8}: a real mix
}

TEST_F(RecipeTest, MixedPrecisionPlanFitsTheBudget) {
  QuantizeProgress progress;
  auto report = Build(Recipe{{MixedAtThreeBits(quant::mixed::CurvatureEstimator::kFisher, false)}}, progress.Fn());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->technique, "mixed 3 bits fisher");
  ExpectMixedWithinThreeBits(*report, session_->scan().layers, false);
  bool plan_stage = false;
  for (const std::string& stage : progress.stages) plan_stage |= stage.rfind("quantize plan: ", 0) == 0;
  EXPECT_TRUE(plan_stage);
  ASSERT_FALSE(report->notes.empty());
  EXPECT_NE(report->notes[0].find("mixed-precision plan"), std::string::npos) << report->notes[0];
  EXPECT_GT(report->metric_value, 0.5);
}

// The measured loss increase (each layer alone quantized at each width,
// forward passes only) with asymmetric candidates: every layer is stored
// asymmetric, uint8 codes and zero points in the artifact.
TEST_F(RecipeTest, MixedPrecisionMeasuredAsymmetricPlanFitsTheBudget) {
  auto report = Build(Recipe{{MixedAtThreeBits(quant::mixed::CurvatureEstimator::kMeasuredLoss, true)}});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->technique, "mixed 3 bits measured asym");
  ExpectMixedWithinThreeBits(*report, session_->scan().layers, true);
  ASSERT_FALSE(report->notes.empty());
  EXPECT_NE(report->notes[0].find("asymmetric (uint8 zero point per channel)"), std::string::npos) << report->notes[0];
  EXPECT_NE(report->notes[0].find("measured loss increase per layer at its width"), std::string::npos)
      << report->notes[0];
  EXPECT_EQ(report->notes[0].find("trace"), std::string::npos) << report->notes[0];
  EXPECT_GT(report->metric_value, 0.5);

  auto artifact = onnx::LoadOnnxModel(TempPath("recipe-variant.onnx"));
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  for (const auto& layer : session_->scan().layers) {
    ASSERT_EQ(artifact->initializers.count(layer.weight + ".zero_point"), 1u) << layer.weight;
    const graph::Tensor& zeros = artifact->initializers.at(layer.weight + ".zero_point");
    EXPECT_EQ(zeros.dtype(), graph::DataType::kUInt8) << layer.weight;
    EXPECT_EQ(zeros.num_elements(), layer.out) << layer.weight;
    EXPECT_EQ(artifact->initializers.at(layer.weight + ".quantized").dtype(), graph::DataType::kUInt8);
  }
}

TEST_F(RecipeTest, QatTrainsW4A8AndNeedsLabels) {
  QatStep step;
  step.options.steps = 6;
  step.batch_size = 16;
  auto report = Build(Recipe{{step}});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->technique, "qat w4a8 lsq 6 steps");
  EXPECT_EQ(report->artifact_format, "onnx-qdq");
  ASSERT_EQ(report->layers.size(), session_->scan().layers.size());
  for (const auto& layer : report->layers) EXPECT_EQ(layer.weight_bits, 4);
  EXPECT_GT(report->metric_value, report->baseline_metric - 0.10);

  auto unlabelled = ReadDatasetFile(*dataset_);
  ASSERT_TRUE(unlabelled.ok()) << unlabelled.status();
  unlabelled->labels.reset();
  RecipeInputs inputs;
  inputs.batches = &session_->calibration();
  inputs.examples = &*unlabelled;
  inputs.input_name = session_->graph().inputs.front().name;
  auto result = ApplyRecipe(session_->graph(), Recipe{{step}}, inputs, {});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("step 0 (qat): the calibration dataset has no \"labels\""),
            std::string::npos)
      << result.status();
  QuantizeStep quantize = W8A8();
  EXPECT_NE(ValidateRecipe(Recipe{{step, quantize}}).message().find("step 0 (qat) must be the last step"),
            std::string::npos);
  EXPECT_NE(ValidateRecipe(Recipe{{PruneStep{}, step}}).message().find("step 1 (qat): training after"),
            std::string::npos);
}

TEST_F(RecipeTest, RulesNameTheStep) {
  PruneStep prune;
  QuantizeStep gptq = W8A8();
  gptq.ptq.weights->method = quant::ptq::WeightMethod::kGptq;
  EXPECT_NE(ValidateRecipe(Recipe{{prune, gptq}}).message().find("step 1 (quantize): GPTQ after"), std::string::npos);
  EXPECT_NE(ValidateRecipe(Recipe{{W8A8(), prune}}).message().find("step 0 (quantize) must be the last step"),
            std::string::npos);
  prune.unstructured.sparsity = 1.5;
  auto report = Build(Recipe{{prune}});
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(report.status().message().find("step 0 (prune): "), std::string::npos) << report.status();
  EXPECT_NE(report.status().message().find("1.5"), std::string::npos) << report.status();
}

}  // namespace
}  // namespace squeeze::core::compress
