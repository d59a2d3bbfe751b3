// GraphSession::Build runs W8A8 variants on the int8 kernels of
// core/quant/gemm/qdq_runtime.h and says so in GraphVariantReport::runtime;
// with N:M sparsity on the same layers the sparse kernel is kept.
#include <filesystem>
#include <string>
#include <unistd.h>

#include "core/compress/graph_variant_builder.h"
#include "core/compress/recipe.h"
#include "core/compress/test_util/mlp_session.h"
#include "gtest/gtest.h"

namespace squeeze::core::compress {
namespace {

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()))).string();
}

class Int8RuntimeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dataset_ = new std::string(TempPath("int8-runtime-data.safetensors"));
    auto session = test_util::OpenMlpSession(
        std::string(SQUEEZE_SOURCE_DIR) + "/deploy/models/fashion_mnist_mlp.onnx", *dataset_);
    ASSERT_TRUE(session.ok()) << session.status();
    session_ = session->release();
  }
  static void TearDownTestSuite() {
    delete session_;
    delete dataset_;
  }

  absl::StatusOr<GraphVariantReport> Build(const Recipe& recipe) {
    return session_->Build(recipe, TargetDevice{}, TempPath("int8-runtime-variant.onnx"), {});
  }

  static std::string* dataset_;
  static GraphSession* session_;
};
std::string* Int8RuntimeTest::dataset_ = nullptr;
GraphSession* Int8RuntimeTest::session_ = nullptr;

QuantizeStep Quantize(bool activations) {
  QuantizeStep step;
  step.ptq.weights.emplace();
  step.ptq.weights->format = {8, 0, false};
  if (activations) step.ptq.activations.emplace();
  return step;
}

TEST_F(Int8RuntimeTest, W8A8RunsEveryLayerOnTheInt8Kernel) {
  auto report = Build(Recipe{{Quantize(true)}});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_NE(report->runtime.find("int8 kernels (W8A8, int32 accumulate): "), std::string::npos) << report->runtime;
  EXPECT_EQ(report->runtime.find("fp32:"), std::string::npos) << report->runtime;
  EXPECT_GT(report->metric_value, report->baseline_metric - 0.05);  // 400 images: a coarse bound
  EXPECT_GT(report->top1_agreement, 0.9);
}

TEST_F(Int8RuntimeTest, WeightOnlyStaysSimulatedAndSaysSo) {
  auto report = Build(Recipe{{Quantize(false)}});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_NE(report->runtime.find("no layer on int8 kernels"), std::string::npos) << report->runtime;
  EXPECT_NE(report->runtime.find("simulated"), std::string::npos) << report->runtime;
}

TEST_F(Int8RuntimeTest, TwoFourThenW8A8KeepsTheSparseKernel) {
  PruneStep prune;
  prune.unstructured.method = prune::PruneMethod::kMagnitude;
  prune.unstructured.nm_n = 2;
  prune.unstructured.nm_m = 4;
  auto report = Build(Recipe{{prune, Quantize(true)}});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_NE(report->runtime.find("N:M layers on the sparse fp32 kernel"), std::string::npos) << report->runtime;
  EXPECT_GT(report->metric_value, report->baseline_metric - 0.15);
}

}  // namespace
}  // namespace squeeze::core::compress
