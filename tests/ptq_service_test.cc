// End to end through the real daemon and worker: calibrated PTQ of an ONNX
// model (the Fashion-MNIST MLP in deploy/models), evaluated against labels,
// shipped as QDQ ONNX.
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/compress/test_util/fashion_mnist_samples.h"
#include "core/graph/builder.h"
#include "core/kernels/backends.h"
#include "core/model/file_io.h"
#include "core/model/safetensors.h"
#include "core/onnx/onnx_model.h"
#include "core/runtime/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util/daemon_process.h"

namespace squeeze::testing {
namespace {

using ::testing::HasSubstr;

const std::string kMlp = DaemonProcess::SourcePath("deploy/models/fashion_mnist_mlp.onnx");
constexpr int64_t kExamples = 500;

// kExamples labelled Fashion-MNIST test images (or noise; see test_util).
std::string WriteDataset(const TempDir& dir, bool with_labels) {
  const std::string path = dir.Join(with_labels ? "labelled.safetensors" : "unlabelled.safetensors");
  EXPECT_TRUE(core::compress::test_util::WriteFashionMnistSamples(path, kExamples, with_labels).ok());
  return path;
}

// An ONNX MLP of `layers` square Gemm + Relu layers, big enough that GPTQ
// takes seconds, so that the worker's once-a-second heartbeat lands in the
// quantize stage; and an unlabelled dataset for it.
std::string WriteDeepMlp(const TempDir& dir, int width, int layers) {
  core::graph::GraphBuilder builder("deep_mlp");
  builder.AddInput({"x", core::graph::DataType::kFloat32,
                    std::vector<core::graph::Dim>{{std::nullopt, "N"}, {width, ""}}});
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0, 1.0f / std::sqrt(static_cast<float>(width)));
  std::string value = "x";
  for (int l = 0; l < layers; ++l) {
    std::vector<float> weight(static_cast<size_t>(width) * width);
    for (float& w : weight) w = normal(rng);
    const std::string w = builder.Initializer(
        "w" + std::to_string(l),
        core::graph::Tensor::FromVector<float>(core::graph::DataType::kFloat32, {width, width}, weight));
    value = builder.Add("Gemm", {value, w}, {{"transB", int64_t{1}}});
    if (l + 1 < layers) value = builder.Add("Relu", {value});
  }
  builder.AddOutput({value, core::graph::DataType::kFloat32,
                     std::vector<core::graph::Dim>{{std::nullopt, "N"}, {width, ""}}});
  const std::string path = dir.Join("deep_mlp.onnx");
  absl::Status saved = core::onnx::SaveOnnxModel(builder.Finish(), path);
  EXPECT_TRUE(saved.ok()) << saved;
  return path;
}

std::string WriteNoise(const TempDir& dir, int width, int rows) {
  std::vector<float> inputs(static_cast<size_t>(width) * rows);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0, 1);
  for (float& x : inputs) x = normal(rng);
  core::model::SafetensorsFile file;
  file.tensors["inputs"] = core::model::Tensor::FromFloats({rows, width}, inputs);
  const std::string path = dir.Join("noise.safetensors");
  EXPECT_TRUE(core::model::WriteFileAtomically(path, core::model::SerializeSafetensors(file)).ok());
  return path;
}

class PtqServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<DaemonProcess>(std::vector<std::string>{});
    ASSERT_TRUE(daemon_->Start());
    alice_ = daemon_->Client(kAliceToken);
  }

  std::string Upload(const std::string& path, v1::BlobKind kind) {
    auto uploaded = alice_->UploadFile(path, kind);
    EXPECT_TRUE(uploaded.ok()) << uploaded.status();
    return uploaded.ok() ? uploaded->blob().sha256() : "";
  }

  v1::SubmitJobRequest GptqW4Request(const std::string& model, const std::string& dataset) {
    v1::SubmitJobRequest request;
    v1::JobSpec* spec = request.mutable_spec();
    spec->mutable_model()->set_sha256(model);
    spec->mutable_calibration_dataset()->set_sha256(dataset);
    spec->set_eval_task(v1::TOP1_ACCURACY);
    v1::QuantizePass* quantize = spec->mutable_recipe()->add_passes()->mutable_quantize();
    quantize->set_bits(4);
    quantize->set_granularity(v1::QuantizePass::PER_CHANNEL);
    quantize->set_method(v1::QuantizePass::GPTQ);
    quantize->set_calibration_batches(4);
    quantize->set_calibration_batch_size(64);
    return request;
  }

  // Submits `request` and watches the job to its end, collecting every
  // progress event of the quantize stage.
  absl::StatusOr<v1::Job> SubmitAndWatch(const v1::SubmitJobRequest& request,
                                         std::vector<v1::Progress>* quantize_progress) {
    auto submitted = alice_->SubmitJob(request);
    if (!submitted.ok()) return submitted.status();
    return alice_->WatchJob(submitted->job().id(), [&](const v1::Job& seen) {
      if (seen.progress().stage() == "quantize") quantize_progress->push_back(seen.progress());
    });
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<client::SqueezeClient> alice_;
  TempDir scratch_;
};

TEST_F(PtqServiceTest, GptqW4OnOnnxSucceedsWithHonestAxesAndARunnableQdqArtifact) {
  const std::string model = Upload(kMlp, v1::BLOB_KIND_MODEL);
  const std::string dataset = Upload(WriteDataset(scratch_, true), v1::BLOB_KIND_DATASET);
  std::vector<v1::Progress> quantize_progress;
  absl::StatusOr<v1::Job> job = SubmitAndWatch(GptqW4Request(model, dataset), &quantize_progress);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->state(), v1::SUCCEEDED) << job->DebugString();
  ASSERT_EQ(job->variants_size(), 1);
  const v1::Variant& variant = job->variants(0);
  EXPECT_EQ(variant.artifact_format(), "onnx-qdq");
  EXPECT_THAT(variant.technique(), HasSubstr("gptq int4"));

  const v1::AccuracyAxis& accuracy = variant.accuracy();
  EXPECT_THAT(accuracy.metric(), HasSubstr("top1_accuracy"));
  EXPECT_THAT(accuracy.metric(), HasSubstr("500 examples"));
  EXPECT_GT(accuracy.baseline(), 0.0);
  EXPECT_LE(accuracy.baseline(), 1.0);
  EXPECT_DOUBLE_EQ(accuracy.delta(), accuracy.value() - accuracy.baseline());
  EXPECT_NEAR(accuracy.value(), accuracy.baseline(), 0.05);  // W4 per-channel GPTQ on an MLP
  EXPECT_GT(accuracy.output_sqnr_db(), 5);
  ASSERT_GT(accuracy.layers_size(), 0);
  for (const v1::LayerReport& layer : accuracy.layers()) EXPECT_EQ(layer.bits(), 4) << layer.name();

  // Progress, when a heartbeat landed in the quantize stage, counts layers.
  for (const v1::Progress& progress : quantize_progress) {
    EXPECT_EQ(progress.total(), accuracy.layers_size());
    EXPECT_LE(progress.step(), progress.total());
  }

  EXPECT_EQ(variant.latency().provenance(), v1::MEASURED);
  EXPECT_EQ(variant.latency().batch_size(), 1);
  EXPECT_GT(variant.latency().p50_seconds(), 0);
  EXPECT_EQ(variant.latency().faster_than_baseline(),
            variant.latency().p50_seconds() < 0.95 * variant.latency().baseline_p50_seconds());
  EXPECT_THAT(variant.latency().runtime(), HasSubstr("dequantized"));
  EXPECT_EQ(variant.energy().provenance(), v1::ESTIMATED);
  EXPECT_LT(variant.energy().joules_per_inference(), variant.energy().baseline_joules_per_inference());
  EXPECT_GT(variant.size().ratio_vs_original(), 3.0);
  EXPECT_EQ(variant.size().baseline_bytes(), static_cast<int64_t>(*core::model::FileSize(kMlp)));

  // The artifact is a QDQ ONNX model that loads and runs.
  const std::string out = scratch_.Join("variant.onnx");
  auto downloaded = alice_->DownloadBlob(variant.artifact().sha256(), out);
  ASSERT_TRUE(downloaded.ok()) << downloaded.status();
  EXPECT_EQ(*downloaded, variant.size().bytes());
  auto graph = core::onnx::LoadOnnxModel(out);
  ASSERT_TRUE(graph.ok()) << graph.status();
  int dequantize = 0;
  for (const auto& node : graph->nodes) dequantize += node.op_type == "DequantizeLinear";
  EXPECT_EQ(dequantize, accuracy.layers_size());
  auto backend = core::kernels::CreateBackend("cpu");
  ASSERT_TRUE(backend.ok());
  auto executor = core::runtime::Executor::Create(*graph, *backend);
  ASSERT_TRUE(executor.ok()) << executor.status();
  core::graph::Tensor image(core::graph::DataType::kFloat32, {2, 1, 28, 28});
  auto outputs = executor->Run({{graph->inputs[0].name, image}});
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  EXPECT_EQ((*outputs)[0].shape(), (std::vector<int64_t>{2, 10}));
}

TEST_F(PtqServiceTest, BadOnnxJobsAreRejectedNamingTheProblem) {
  const std::string model = Upload(kMlp, v1::BLOB_KIND_MODEL);
  const std::string labelled = Upload(WriteDataset(scratch_, true), v1::BLOB_KIND_DATASET);
  const std::string unlabelled = Upload(WriteDataset(scratch_, false), v1::BLOB_KIND_DATASET);

  // A group size the first layer's 784 inputs cannot be split into.
  v1::SubmitJobRequest bad_group = GptqW4Request(model, labelled);
  auto* quantize = bad_group.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize();
  quantize->set_granularity(v1::QuantizePass::PER_GROUP);
  quantize->set_group_size(512);
  auto rejected = alice_->SubmitJob(bad_group);
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(rejected.status().message()), HasSubstr("passes[0]"));
  EXPECT_THAT(std::string(rejected.status().message()), HasSubstr("layer"));

  v1::SubmitJobRequest bad_bits = GptqW4Request(model, labelled);
  bad_bits.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize()->set_bits(12);
  rejected = alice_->SubmitJob(bad_bits);
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(rejected.status().message()), HasSubstr("bits"));
  EXPECT_THAT(std::string(rejected.status().message()), HasSubstr("12"));

  rejected = alice_->SubmitJob(GptqW4Request(model, unlabelled));
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(rejected.status().message()), HasSubstr("spec.calibration_dataset"));
  EXPECT_THAT(std::string(rejected.status().message()), HasSubstr("labels"));

  v1::SubmitJobRequest no_dataset = GptqW4Request(model, labelled);
  no_dataset.mutable_spec()->clear_calibration_dataset();
  rejected = alice_->SubmitJob(no_dataset);
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(rejected.status().message()), HasSubstr("calibration_dataset"));
}

TEST_F(PtqServiceTest, ProgressCountsLayersDuringQuantize) {
  constexpr int kLayers = 24;
  const std::string model = Upload(WriteDeepMlp(scratch_, 768, kLayers), v1::BLOB_KIND_MODEL);
  const std::string dataset = Upload(WriteNoise(scratch_, 768, 256), v1::BLOB_KIND_DATASET);
  v1::SubmitJobRequest request = GptqW4Request(model, dataset);
  request.mutable_spec()->set_eval_task(v1::FIDELITY);
  std::vector<v1::Progress> quantize_progress;
  absl::StatusOr<v1::Job> job = SubmitAndWatch(request, &quantize_progress);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->state(), v1::SUCCEEDED) << job->DebugString();
  ASSERT_FALSE(quantize_progress.empty()) << "no heartbeat landed in the quantize stage";
  for (const v1::Progress& progress : quantize_progress) {
    EXPECT_EQ(progress.total(), kLayers);
    EXPECT_GE(progress.step(), 0);
    EXPECT_LE(progress.step(), kLayers);
  }
  const v1::AccuracyAxis& accuracy = job->variants(0).accuracy();
  EXPECT_THAT(accuracy.metric(), HasSubstr("top1_agreement"));
  EXPECT_DOUBLE_EQ(accuracy.baseline(), 1.0);
  EXPECT_EQ(accuracy.layers_size(), kLayers);
}

}  // namespace
}  // namespace squeeze::testing
