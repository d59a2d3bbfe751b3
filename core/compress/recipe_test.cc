// Recipes of several steps through a GraphSession on the reference MLP.
#include "core/compress/recipe.h"

#include <filesystem>
#include <string>
#include <unistd.h>

#include "core/compress/graph_variant_builder.h"
#include "core/compress/test_util/fashion_mnist_samples.h"
#include "core/onnx/onnx_model.h"
#include "gtest/gtest.h"

namespace squeeze::core::compress {
namespace {

const std::string kMlp = std::string(SQUEEZE_SOURCE_DIR) + "/deploy/models/fashion_mnist_mlp.onnx";

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()))).string();
}

class RecipeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dataset_ = new std::string(TempPath("recipe-data.safetensors"));
    ASSERT_TRUE(test_util::WriteFashionMnistSamples(*dataset_, 400, /*with_labels=*/true).ok());
    SessionOptions options;
    options.model_path = kMlp;
    options.calibration_path = *dataset_;
    options.calibration_batches = 4;
    options.calibration_batch_size = 32;
    options.metric = EvalMetric::kTop1Accuracy;
    options.latency_batch_sizes = {1};
    options.measure_energy = false;
    auto session = GraphSession::Open(options, {});
    ASSERT_TRUE(session.ok()) << session.status();
    session_ = session->release();
  }
  static void TearDownTestSuite() {
    delete session_;
    delete dataset_;
  }

  absl::StatusOr<GraphVariantReport> Build(const Recipe& recipe) {
    return session_->Build(recipe, TargetDevice{}, TempPath("recipe-variant.onnx"), {});
  }

  static std::string* dataset_;
  static GraphSession* session_;
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
