// Issue 4 end to end through the real daemon and worker on the Fashion-MNIST
// CNN (deploy/models): the example specs deploy/demo/cnn-{kmeans,fp8,mixed,
// qat}.textproto (a k-means codebook job, an fp8 cast, a mixed-precision
// job, also with asymmetric candidates and the MEASURED sensitivity, a short
// QAT job) each return one variant whose reported bits (and plan) match the
// request and whose accuracy is measured against the float
// model on the same labelled images; QAT without labels is refused at
// submit.
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "core/model/file_io.h"
#include "core/compress/test_util/fashion_mnist_samples.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "tests/test_util/daemon_process.h"

namespace squeeze::testing {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kExamples = 300;

class QuantServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    daemon_ = new DaemonProcess(std::vector<std::string>{});
    ASSERT_TRUE(daemon_->Start());
    alice_ = daemon_->Client(kAliceToken).release();
    scratch_ = new TempDir();
    model_ = new std::string(Upload(DaemonProcess::SourcePath("deploy/models/fashion_mnist_cnn.onnx"),
                                    v1::BLOB_KIND_MODEL));
    for (bool labels : {true, false}) {
      const std::string path = scratch_->Join(labels ? "labelled.safetensors" : "unlabelled.safetensors");
      ASSERT_TRUE(core::compress::test_util::WriteFashionMnistSamples(path, kExamples, labels, &real_data_).ok());
      (labels ? labelled_ : unlabelled_) = new std::string(Upload(path, v1::BLOB_KIND_DATASET));
    }
  }
  static void TearDownTestSuite() {
    delete alice_;
    delete daemon_;
    delete scratch_;
    delete model_;
    delete labelled_;
    delete unlabelled_;
  }

  static std::string Upload(const std::string& path, v1::BlobKind kind) {
    auto uploaded = alice_->UploadFile(path, kind);
    EXPECT_TRUE(uploaded.ok()) << uploaded.status();
    return uploaded.ok() ? uploaded->blob().sha256() : "";
  }

  // The example spec deploy/demo/`name` on the CNN with `dataset`.
  static v1::SubmitJobRequest Request(const std::string& name, const std::string& dataset) {
    v1::SubmitJobRequest request;
    auto text = core::model::ReadFile(DaemonProcess::SourcePath("deploy/demo/" + name));
    EXPECT_TRUE(text.ok()) << text.status();
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text.ok() ? *text : "", request.mutable_spec())) << name;
    v1::JobSpec* spec = request.mutable_spec();
    spec->mutable_model()->set_sha256(*model_);
    spec->mutable_calibration_dataset()->set_sha256(dataset);
    return request;
  }

  // Submits, watches to the end and returns the finished job.
  static absl::StatusOr<v1::Job> Run(const v1::SubmitJobRequest& request) {
    auto submitted = alice_->SubmitJob(request);
    if (!submitted.ok()) return submitted.status();
    auto watched = alice_->WatchJob(submitted->job().id(), [](const v1::Job&) {});
    if (!watched.ok()) return watched.status();
    return alice_->GetJob(submitted->job().id());
  }

  // The one variant of the job running deploy/demo/`name` on the labelled
  // images, its technique and artifact format checked (empty on failure).
  static v1::Variant OnlyVariant(const std::string& name, const std::string& technique, const std::string& format) {
    absl::StatusOr<v1::Job> job = Run(Request(name, *labelled_));
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return {};
    EXPECT_EQ(job->state(), v1::SUCCEEDED) << job->DebugString();
    EXPECT_EQ(job->variants_size(), 1) << job->DebugString();
    if (job->variants_size() != 1) return {};
    EXPECT_EQ(job->variants(0).technique(), technique);
    EXPECT_EQ(job->variants(0).artifact_format(), format);
    return job->variants(0);
  }

  // Every layer of `variant` is reported at `bits`.
  static void ExpectLayersAt(const v1::Variant& variant, int bits) {
    ASSERT_GT(variant.accuracy().layers_size(), 0);
    for (const v1::LayerReport& layer : variant.accuracy().layers()) EXPECT_EQ(layer.bits(), bits) << layer.name();
  }

  // The accuracy axis is top-1 against the same labelled images for the
  // float CNN and the variant.
  static void ExpectHonestAccuracy(const v1::Variant& variant, double max_drop) {
    const v1::AccuracyAxis& accuracy = variant.accuracy();
    EXPECT_THAT(accuracy.metric(), HasSubstr("top1_accuracy (300 examples"));
    EXPECT_GT(accuracy.baseline(), 0.0);
    EXPECT_DOUBLE_EQ(accuracy.delta(), accuracy.value() - accuracy.baseline());
    EXPECT_GT(accuracy.value(), accuracy.baseline() - max_drop) << variant.technique();
    EXPECT_GT(variant.size().baseline_memory_bytes(), variant.size().memory_bytes());
    EXPECT_GT(variant.latency().p50_seconds(), 0);
    EXPECT_GT(variant.energy().joules_per_inference(), 0);
    std::cout << variant.technique() << ": top-1 " << accuracy.value() << " vs baseline " << accuracy.baseline()
              << ", memory " << variant.size().memory_bytes() << " vs " << variant.size().baseline_memory_bytes()
              << " bytes\n";
  }

  static DaemonProcess* daemon_;
  static client::SqueezeClient* alice_;
  static TempDir* scratch_;
  static std::string* model_;
  static std::string* labelled_;
  static std::string* unlabelled_;
  static bool real_data_;  // Fashion-MNIST images, not the noise stand-in
};
DaemonProcess* QuantServiceTest::daemon_ = nullptr;
client::SqueezeClient* QuantServiceTest::alice_ = nullptr;
TempDir* QuantServiceTest::scratch_ = nullptr;
std::string* QuantServiceTest::model_ = nullptr;
std::string* QuantServiceTest::labelled_ = nullptr;
std::string* QuantServiceTest::unlabelled_ = nullptr;
bool QuantServiceTest::real_data_ = false;

TEST_F(QuantServiceTest, KmeansCodebooksPerLayer) {
  const v1::Variant variant = OnlyVariant("cnn-kmeans.textproto", "kmeans4-layer", "onnx-codebook");
  EXPECT_LT(variant.size().bytes(), variant.size().baseline_bytes() / 3);
  ExpectLayersAt(variant, 4);
  ExpectHonestAccuracy(variant, 0.05);
  EXPECT_EQ(variant.manifest().spec().recipe().passes(0).quantize().method(), v1::QuantizePass::KMEANS);
}

TEST_F(QuantServiceTest, Fp8E4M3CastShipsAFourTimesSmallerLookupArtifact) {
  const v1::Variant variant = OnlyVariant("cnn-fp8.textproto", "cast fp8-e4m3", "onnx-fp8-lut");
  EXPECT_LT(variant.size().bytes(), variant.size().baseline_bytes() / 3.8);
  EXPECT_LT(variant.size().memory_bytes(), variant.size().baseline_memory_bytes() / 3.8);
  ExpectLayersAt(variant, 8);
  ExpectHonestAccuracy(variant, 0.02);
  EXPECT_EQ(variant.manifest().spec().recipe().passes(0).quantize().float_format(), v1::QuantizePass::FP8_E4M3);
}

TEST_F(QuantServiceTest, MixedPrecisionReportsItsPlanAndBeatsUniformThreeBits) {
  // 3.1 bits per weight: uniform 3-bit with its per-channel scales takes a
  // little over 3.
  v1::SubmitJobRequest request = Request("cnn-mixed.textproto", *labelled_);
  absl::StatusOr<v1::Job> job = Run(request);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->state(), v1::SUCCEEDED) << job->DebugString();
  const v1::Variant& variant = job->variants(0);
  EXPECT_THAT(variant.technique(), ::testing::StartsWith("mixed 3.1 bits "));
  EXPECT_EQ(variant.artifact_format(), "onnx-qdq");
  int64_t params = 0, bits = 0;
  std::set<int> widths;
  for (const v1::LayerReport& layer : variant.accuracy().layers()) {
    widths.insert(layer.bits());
    params += layer.parameters();
    bits += layer.parameters() * layer.bits();
  }
  EXPECT_LE(bits, 3.1 * params);
  EXPECT_GT(widths.size(), 1u) << variant.DebugString();
  bool plan_note = false;
  for (const std::string& note : variant.notes()) {
    plan_note |= absl::StrContains(note, "mixed-precision plan");
    std::cout << note << "\n";
  }
  EXPECT_TRUE(plan_note) << variant.DebugString();
  ExpectHonestAccuracy(variant, 0.03);

  // Uniform per-channel 3-bit RTN on the same data, for comparison.
  v1::QuantizePass* quantize = request.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize();
  quantize->clear_mixed_precision();
  quantize->set_bits(3);
  absl::StatusOr<v1::Job> uniform = Run(request);
  ASSERT_TRUE(uniform.ok()) << uniform.status();
  ASSERT_EQ(uniform->state(), v1::SUCCEEDED) << uniform->DebugString();
  ExpectHonestAccuracy(uniform->variants(0), 0.10);
  if (real_data_) {  // on noise both are near chance and the order means nothing
    EXPECT_GE(variant.accuracy().value(), uniform->variants(0).accuracy().value());
  }
}

TEST_F(QuantServiceTest, MeasuredAsymmetricMixedPrecisionFitsUniformAsymmetricInt3) {
  // The CNN's output channels per layer (421,408 weights, 234 channels):
  // uniform asymmetric int3 takes 421,408 * 3 / 8 + 234 * (4 + 1) = 159,198
  // bytes with its float32 scales and uint8 zero points.
  const std::map<std::string, int64_t> channels = {{"Conv_2", 32}, {"Conv_5", 64}, {"Gemm_9", 128}, {"Gemm_11", 10}};
  constexpr int64_t kUniformAsymmetricInt3Bytes = 159198;
  v1::SubmitJobRequest request = Request("cnn-mixed.textproto", *labelled_);
  v1::QuantizePass* quantize = request.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize();
  quantize->set_asymmetric(true);
  v1::MixedPrecision* mixed = quantize->mutable_mixed_precision();
  mixed->set_average_bits(0);
  mixed->set_max_bytes(kUniformAsymmetricInt3Bytes);
  mixed->clear_sensitivity();  // unset means MEASURED
  mixed->clear_probes();
  absl::StatusOr<v1::Job> job = Run(request);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->state(), v1::SUCCEEDED) << job->DebugString();
  const v1::Variant& variant = job->variants(0);
  EXPECT_EQ(variant.technique(), "mixed 159198 bytes measured asym");
  EXPECT_EQ(variant.artifact_format(), "onnx-qdq");
  int64_t bits = 0;
  for (const v1::LayerReport& layer : variant.accuracy().layers()) {
    auto out = channels.find(layer.name());
    ASSERT_NE(out, channels.end()) << layer.name();
    bits += layer.parameters() * layer.bits() + (layer.bits() < 16 ? out->second * 40 : 0);
  }
  EXPECT_EQ(variant.accuracy().layers_size(), 4);
  EXPECT_LE(bits, kUniformAsymmetricInt3Bytes * 8);
  bool asymmetric_note = false, measured_note = false;
  for (const std::string& note : variant.notes()) {
    asymmetric_note |= absl::StrContains(note, "asymmetric (uint8 zero point per channel)");
    measured_note |= absl::StrContains(note, "measured loss increase per layer at its width");
    std::cout << note << "\n";
  }
  EXPECT_TRUE(asymmetric_note) << variant.DebugString();
  EXPECT_TRUE(measured_note) << variant.DebugString();
  ExpectHonestAccuracy(variant, 0.10);

  // A fixed width, or a budget below every layer at 2 bits with its scales
  // and zero points (106,522 bytes), is refused at submit.
  quantize->set_bits(3);
  auto refused = alice_->SubmitJob(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("spec.recipe.passes[0].quantize.mixed_precision chooses per-channel RTN widths per layer, "
                        "weight-only: bits must stay 0 (got 3)"));
  quantize->set_bits(0);
  mixed->set_max_bytes(106400);
  refused = alice_->SubmitJob(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("spec.recipe.passes[0].quantize.mixed_precision: the budget of 851200 bits"));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("852176 bits"));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("per-channel scales and zero points included"));
}

TEST_F(QuantServiceTest, ShortQatNeedsLabels) {
  v1::SubmitJobRequest unlabelled = Request("cnn-qat.textproto", *unlabelled_);
  unlabelled.mutable_spec()->mutable_evaluation_dataset()->set_sha256(*labelled_);  // evaluation has labels
  auto refused = alice_->SubmitJob(unlabelled);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("spec.calibration_dataset has no tensor \"labels\"; spec.recipe.passes[0].qat"));

  absl::StatusOr<v1::Job> job = Run(Request("cnn-qat.textproto", *labelled_));
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->state(), v1::SUCCEEDED) << job->DebugString();
  const v1::Variant& variant = job->variants(0);
  EXPECT_EQ(variant.technique(), "qat w4a8 lsq 9 steps + distill");
  EXPECT_EQ(variant.artifact_format(), "onnx-qdq");
  ExpectLayersAt(variant, 4);
  ExpectHonestAccuracy(variant, 0.10);
}

}  // namespace
}  // namespace squeeze::testing
