#include "core/compress/graph_variant_builder.h"

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "core/compress/test_util/fashion_mnist_samples.h"
#include "core/onnx/onnx_model.h"
#include "gtest/gtest.h"

namespace squeeze::core::compress {
namespace {

const std::string kMlp = std::string(SQUEEZE_SOURCE_DIR) + "/deploy/models/fashion_mnist_mlp.onnx";
constexpr int64_t kExamples = 600;

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          (name + "-" + std::to_string(::getpid()))).string();
}

// kExamples labelled Fashion-MNIST test images (or noise; see test_util).
std::string WriteDataset(bool with_labels) {
  const std::string path = TempPath(with_labels ? "labelled.safetensors" : "unlabelled.safetensors");
  EXPECT_TRUE(test_util::WriteFashionMnistSamples(path, kExamples, with_labels).ok());
  return path;
}

GraphVariantRequest Request(const std::string& dataset, int bits, quant::ptq::WeightMethod method) {
  GraphVariantRequest request;
  request.session.model_path = kMlp;
  request.session.calibration_path = dataset;
  request.ptq.weights.emplace();
  request.ptq.weights->method = method;
  request.ptq.weights->format = {bits, 0, false};
  request.ptq.calibration.hessian = method == quant::ptq::WeightMethod::kGptq;
  request.session.metric = EvalMetric::kTop1Accuracy;
  request.session.latency_batch_sizes = {1, 8};
  request.session.calibration_batches = 4;
  request.session.calibration_batch_size = 32;
  request.artifact_path = TempPath("variant.onnx");
  return request;
}

TEST(GraphVariantBuilderTest, RooflinePredictsForTheTargetDevice) {
  const std::string dataset = WriteDataset(true);
  GraphVariantRequest request = Request(dataset, 8, quant::ptq::WeightMethod::kRtn);
  request.ptq.activations.emplace();  // W8A8: runs in int8 where the device has it.
  request.session.latency_batch_sizes = {1};
  request.device.name = "gpu-like";
  request.device.present = false;
  request.device.roofline.name = "gpu-like";
  request.device.roofline.kind = "gpu";
  request.device.roofline.peak_ops_per_second = {{"fp32", 1e13}, {"int8", 1e14}};
  request.device.roofline.memory_bandwidth_bytes_per_second = 1e12;
  request.device.roofline.pj_per_mac = {{"fp32", 10}, {"int8", 1}};
  absl::StatusOr<GraphVariantReport> report = BuildGraphVariant(request, {});
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(report->predicted.has_value());
  ASSERT_TRUE(report->predicted_baseline.has_value());
  EXPECT_EQ(report->device_formats, std::vector<std::string>{"int8"});
  EXPECT_EQ(report->predicted_baseline->formats, std::vector<std::string>{"fp32"});
  // int8 weights move a quarter of the bytes and multiply 10x faster.
  EXPECT_LT(report->predicted->seconds, report->predicted_baseline->seconds);
  EXPECT_LT(report->predicted->joules, report->predicted_baseline->joules);
}

TEST(GraphVariantBuilderTest, DetectsFormats) {
  EXPECT_EQ(*DetectModelFormat(kMlp), ModelFormat::kOnnx);
  const std::string dataset = WriteDataset(false);
  EXPECT_EQ(*DetectModelFormat(dataset), ModelFormat::kSafetensors);
}

TEST(GraphVariantBuilderTest, Int8RtnKeepsAccuracyWithinOnePoint) {
  const std::string dataset = WriteDataset(true);
  GraphVariantRequest request = Request(dataset, 8, quant::ptq::WeightMethod::kRtn);
  std::vector<std::string> stages;
  int64_t quantize_steps = 0, quantize_total = 0;
  absl::StatusOr<GraphVariantReport> report =
      BuildGraphVariant(request, [&](const std::string& stage, int64_t step, int64_t total) {
        if (stages.empty() || stages.back() != stage) stages.push_back(stage);
        if (stage == "quantize") quantize_steps = step, quantize_total = total;
        return true;
      });
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->metric, "top1_accuracy");
  EXPECT_EQ(report->evaluation_examples, kExamples);
  EXPECT_GT(report->baseline_metric, 0.05);
  EXPECT_NEAR(report->metric_value, report->baseline_metric, 0.01);
  EXPECT_GT(report->output_sqnr_db, 20);
  EXPECT_EQ(stages,
            (std::vector<std::string>{"load", "calibrate", "baseline", "quantize", "evaluate", "measure"}));
  ASSERT_EQ(report->points.size(), 2u);  // batch 1 and 8
  EXPECT_EQ(report->points[1].batch_size, 8);
  EXPECT_GT(report->points[1].variant.p50, 0);
  EXPECT_GT(report->points[1].baseline.p50, 0);
  EXPECT_EQ(report->artifact_format, "onnx-qdq");
  EXPECT_FALSE(report->predicted.has_value());  // The default device has no roofline figures.
  EXPECT_GT(quantize_total, 0);
  EXPECT_EQ(quantize_steps, quantize_total);
  EXPECT_EQ(report->layers.size(), static_cast<size_t>(quantize_total));
  EXPECT_GT(report->baseline_latency.p50, 0);
  EXPECT_GT(report->latency.p50, 0);
  EXPECT_LT(report->joules, report->baseline_joules);
  EXPECT_GT(report->artifact_bytes, 0);
  EXPECT_LT(report->artifact_bytes, report->baseline_bytes);
  // The artifact is a QDQ ONNX model our loader reads back.
  absl::StatusOr<graph::Graph> artifact = onnx::LoadOnnxModel(request.artifact_path);
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  int dequantize = 0;
  for (const auto& node : artifact->nodes) dequantize += node.op_type == "DequantizeLinear";
  EXPECT_EQ(dequantize, quantize_total);
}

TEST(GraphVariantBuilderTest, CancelsWithoutArtifact) {
  const std::string dataset = WriteDataset(true);
  GraphVariantRequest request = Request(dataset, 4, quant::ptq::WeightMethod::kRtn);
  request.artifact_path = TempPath("cancelled.onnx");
  absl::StatusOr<GraphVariantReport> report = BuildGraphVariant(
      request, [](const std::string& stage, int64_t step, int64_t) { return !(stage == "quantize" && step > 0); });
  EXPECT_EQ(report.status().code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(std::filesystem::exists(request.artifact_path));
}

TEST(GraphVariantBuilderTest, RejectsUnlabelledDatasetForAccuracy) {
  const std::string dataset = WriteDataset(false);
  absl::StatusOr<GraphVariantReport> report =
      BuildGraphVariant(Request(dataset, 8, quant::ptq::WeightMethod::kRtn), {});
  ASSERT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(report.status().message().find("labels"), std::string::npos) << report.status();
  EXPECT_NE(report.status().message().find("calibration dataset"), std::string::npos) << report.status();
}

TEST(GraphVariantBuilderTest, RejectsGroupThatDoesNotFitNamingTheLayer) {
  const std::string dataset = WriteDataset(true);
  GraphVariantRequest request = Request(dataset, 4, quant::ptq::WeightMethod::kRtn);
  request.ptq.weights->format.group_size = 512;  // the first layer has 784 inputs
  absl::StatusOr<GraphVariantReport> report = BuildGraphVariant(request, {});
  ASSERT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(report.status().message().find("layer"), std::string::npos) << report.status();
}

}  // namespace
}  // namespace squeeze::core::compress
