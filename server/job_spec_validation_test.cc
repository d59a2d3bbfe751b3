#include "server/job_spec_validation.h"

#include <cstdlib>

#include "gtest/gtest.h"

namespace squeeze::server {
namespace {

class ValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    devices_ = *DeviceProfiles::LoadDirectory(std::string(std::getenv("SQUEEZE_SOURCE_DIR")) +
                                              "/deploy/devices");
    request_.mutable_spec()->mutable_model()->set_sha256(std::string(64, 'a'));
    request_.mutable_spec()->mutable_recipe()->add_passes()->mutable_quantize()->set_bits(4);
  }

  absl::Status Check() { return ValidateSubmitRequest(request_, devices_); }

  DeviceProfiles devices_;
  v1::SubmitJobRequest request_;
};

TEST_F(ValidationTest, AcceptsAMinimalRequest) { EXPECT_TRUE(Check().ok()) << Check(); }

TEST_F(ValidationTest, NamesTheBadField) {
  request_.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize()->set_bits(12);
  absl::Status status = Check();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "spec.recipe.passes[0].quantize.bits must be 2, 3, 4 or 8, got 12");
  for (int bits : {2, 3, 4, 8}) {
    request_.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize()->set_bits(bits);
    EXPECT_TRUE(Check().ok()) << bits << ": " << Check();
  }
  request_.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize()->set_bits(5);
  EXPECT_EQ(Check().message(), "spec.recipe.passes[0].quantize.bits must be 2, 3, 4 or 8, got 5");
}

TEST_F(ValidationTest, RejectsBadReferencesAndRanges) {
  request_.mutable_spec()->mutable_model()->set_sha256("../etc/passwd");
  EXPECT_NE(Check().message().find("spec.model.sha256"), std::string::npos);
  request_.mutable_spec()->mutable_model()->set_sha256(std::string(64, 'a'));
  request_.mutable_spec()->set_priority(42);
  EXPECT_NE(Check().message().find("got 42"), std::string::npos);
  request_.mutable_spec()->set_priority(0);
  request_.mutable_spec()->add_target_devices("toaster");
  EXPECT_NE(Check().message().find("'toaster'"), std::string::npos);
  request_.mutable_spec()->clear_target_devices();
  (*request_.mutable_spec()->mutable_labels())["Bad Key"] = "x";
  EXPECT_NE(Check().message().find("'Bad Key'"), std::string::npos);
}

TEST_F(ValidationTest, GroupSizeMustBeAPowerOfTwo) {
  auto* q = request_.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize();
  q->set_granularity(v1::QuantizePass::PER_GROUP);
  q->set_group_size(100);
  EXPECT_NE(Check().message().find("group_size must be a power of two"), std::string::npos);
}

TEST_F(ValidationTest, UnknownAndUnimplementedTechniques) {
  request_.mutable_spec()->mutable_recipe()->add_passes();  // No technique set.
  EXPECT_NE(Check().message().find("passes[1] names no technique"), std::string::npos);
  request_.mutable_spec()->mutable_recipe()->mutable_passes(1)->mutable_qat()->set_steps(5);
  EXPECT_EQ(Check().message(), "spec.recipe.passes[0]: quantize must be the last pass (1 passes follow it)");
}

TEST_F(ValidationTest, PerTensorGranularity) {
  auto* q = request_.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize();
  q->set_granularity(v1::QuantizePass::PER_TENSOR);
  q->set_bits(2);
  EXPECT_TRUE(Check().ok()) << Check();
  q->set_method(v1::QuantizePass::GPTQ);
  EXPECT_EQ(Check().message(),
            "spec.recipe.passes[0].quantize.granularity PER_TENSOR needs method RTN or KMEANS, got GPTQ");
  q->set_method(v1::QuantizePass::RTN);
  q->set_bias_correction(true);
  EXPECT_NE(Check().message().find("PER_TENSOR does not combine with bias_correction"), std::string::npos) << Check();
  q->set_granularity(static_cast<v1::QuantizePass::Granularity>(7));
  EXPECT_NE(Check().message().find("granularity is unknown: 7"), std::string::npos) << Check();
}

TEST_F(ValidationTest, KmeansOptions) {
  auto* q = request_.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize();
  q->set_method(v1::QuantizePass::KMEANS);
  q->set_bits(8);
  EXPECT_EQ(Check().message(),
            "spec.recipe.passes[0].quantize.bits must be 2, 3 or 4 for method KMEANS (2^bits centroids), got 8");
  q->set_bits(3);
  EXPECT_TRUE(Check().ok()) << Check();
  q->set_granularity(v1::QuantizePass::PER_TENSOR);
  q->set_kmeans_iterations(50);
  EXPECT_TRUE(Check().ok()) << Check();
  q->set_kmeans_iterations(5000);
  EXPECT_EQ(Check().message(),
            "spec.recipe.passes[0].quantize.kmeans_iterations must be in [1, 1000] (0: default 100), got 5000");
  q->set_kmeans_iterations(0);
  q->set_activation_bits(8);
  EXPECT_NE(Check().message().find("method KMEANS is weight-only"), std::string::npos) << Check();
  q->set_activation_bits(0);
  q->set_method(v1::QuantizePass::RTN);
  q->set_kmeans_iterations(10);
  EXPECT_NE(Check().message().find("kmeans_iterations applies to method KMEANS only"), std::string::npos) << Check();
}

TEST_F(ValidationTest, FloatFormatCastTakesNoIntegerOption) {
  auto* q = request_.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize();
  q->set_float_format(v1::QuantizePass::FP8_E4M3);
  EXPECT_EQ(Check().message(),
            "spec.recipe.passes[0].quantize.float_format FP8_E4M3 is a weight-only cast and takes no "
            "integer-quantization option; got bits 4");
  q->set_bits(0);
  EXPECT_TRUE(Check().ok()) << Check();
  const auto expect_named = [&](const std::string& got) {
    EXPECT_NE(Check().message().find("float_format FP8_E4M3 is a weight-only cast"), std::string::npos) << Check();
    EXPECT_NE(Check().message().find("; got " + got), std::string::npos) << Check();
    q->Clear();
    q->set_float_format(v1::QuantizePass::FP8_E4M3);
    EXPECT_TRUE(Check().ok()) << Check();
  };
  q->set_granularity(v1::QuantizePass::PER_TENSOR);
  expect_named("granularity PER_TENSOR");
  q->set_group_size(64);
  expect_named("group_size 64");
  q->set_method(v1::QuantizePass::KMEANS);
  expect_named("method KMEANS");
  q->set_asymmetric(true);
  expect_named("asymmetric true");
  q->set_activation_bits(8);
  expect_named("activation_bits 8");
  q->set_kmeans_iterations(10);
  expect_named("kmeans_iterations 10");
  q->mutable_mixed_precision()->set_average_bits(4);
  expect_named("mixed_precision");
  q->set_per_device(true);
  expect_named("per_device true");
  for (auto format : {v1::QuantizePass::FP16, v1::QuantizePass::BF16, v1::QuantizePass::FP8_E5M2}) {
    q->set_float_format(format);
    EXPECT_TRUE(Check().ok()) << Check();
  }
  q->set_float_format(static_cast<v1::QuantizePass::FloatFormat>(9));
  EXPECT_EQ(Check().message(), "spec.recipe.passes[0].quantize.float_format is unknown: 9");
}

TEST_F(ValidationTest, MixedPrecisionOptions) {
  auto* q = request_.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize();
  q->set_bits(0);
  v1::MixedPrecision* m = q->mutable_mixed_precision();
  EXPECT_NE(Check().message().find("needs exactly one of average_bits and max_bytes, got average_bits 0 and "
                                   "max_bytes 0"),
            std::string::npos)
      << Check();
  m->set_average_bits(3);
  EXPECT_TRUE(Check().ok()) << Check();
  m->set_max_bytes(1000);
  EXPECT_NE(Check().message().find("exactly one of"), std::string::npos) << Check();
  m->set_max_bytes(0);
  m->set_average_bits(1.5);
  EXPECT_EQ(Check().message(), "spec.recipe.passes[0].quantize.mixed_precision.average_bits must be in [2, 16], got 1.5");
  m->set_average_bits(3);
  m->add_candidate_bits(2);
  m->add_candidate_bits(5);
  EXPECT_EQ(Check().message(),
            "spec.recipe.passes[0].quantize.mixed_precision.candidate_bits must each be 2, 3, 4, 8 or 16, got 5");
  m->set_candidate_bits(1, 2);
  EXPECT_EQ(Check().message(), "spec.recipe.passes[0].quantize.mixed_precision.candidate_bits names 2 twice");
  m->set_candidate_bits(1, 16);
  m->set_probes(100);
  EXPECT_NE(Check().message().find("probes must be in [1, 64] (0: default 4), got 100"), std::string::npos) << Check();
  m->set_probes(0);
  EXPECT_TRUE(Check().ok()) << Check();
  q->set_bits(4);
  EXPECT_NE(Check().message().find("bits must stay 0 (got 4)"), std::string::npos) << Check();
  q->set_bits(0);
  q->set_method(v1::QuantizePass::GPTQ);
  EXPECT_NE(Check().message().find("method RTN (got GPTQ)"), std::string::npos) << Check();
  q->set_method(v1::QuantizePass::RTN);
  // Asymmetric candidates and the measured loss increase are accepted; the
  // width stays the plan's.
  q->set_asymmetric(true);
  m->set_sensitivity(v1::MixedPrecision::MEASURED);
  EXPECT_TRUE(Check().ok()) << Check();
  q->set_bits(3);
  EXPECT_EQ(Check().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(Check().message().find("spec.recipe.passes[0].quantize.mixed_precision chooses per-channel RTN widths per "
                                   "layer, weight-only: bits must stay 0 (got 3)"),
            std::string::npos)
      << Check();
  q->set_bits(0);
  q->set_granularity(v1::QuantizePass::PER_GROUP);
  EXPECT_NE(Check().message().find("granularity PER_CHANNEL"), std::string::npos) << Check();
  q->set_granularity(v1::QuantizePass::PER_CHANNEL);
  m->set_sensitivity(static_cast<v1::MixedPrecision::Sensitivity>(4));
  EXPECT_EQ(Check().message(), "spec.recipe.passes[0].quantize.mixed_precision.sensitivity is unknown: 4");
}

TEST_F(ValidationTest, QatOptions) {
  auto* recipe = request_.mutable_spec()->mutable_recipe();
  recipe->clear_passes();
  v1::QatPass* qat = recipe->add_passes()->mutable_qat();
  EXPECT_EQ(Check().message(), "spec.recipe.passes[0].qat.steps must be in [3, 100000], got 0");
  qat->set_steps(30);
  EXPECT_TRUE(Check().ok()) << Check();
  qat->set_weight_bits(3);
  EXPECT_EQ(Check().message(), "spec.recipe.passes[0].qat.weight_bits must be 4 or 8 (0: default 4), got 3");
  qat->set_weight_bits(8);
  qat->set_learning_rate(2);
  EXPECT_NE(Check().message().find("qat.learning_rate must be in (0, 1]"), std::string::npos) << Check();
  qat->set_learning_rate(0);
  qat->set_distill_temperature(2);
  EXPECT_EQ(Check().message(),
            "spec.recipe.passes[0].qat.distill_temperature and .distill_weight need distill_from_float");
  qat->set_distill_from_float(true);
  EXPECT_TRUE(Check().ok()) << Check();
  qat->set_distill_weight(1.5);
  EXPECT_NE(Check().message().find("qat.distill_weight must be in [0, 1]"), std::string::npos) << Check();
  qat->set_distill_weight(0);
  recipe->add_passes()->mutable_distill()->set_steps(5);
  EXPECT_NE(Check().message().find("passes[0]: qat must be the last pass (1 passes follow it)"), std::string::npos)
      << Check();
  recipe->mutable_passes()->SwapElements(0, 1);
  EXPECT_TRUE(Check().ok()) << Check();
  *recipe->mutable_passes(0)->mutable_prune() = v1::PrunePass();
  recipe->mutable_passes(0)->mutable_prune()->set_sparsity(0.5);
  EXPECT_NE(Check().message().find("passes[1].qat after unstructured or N:M pruning"), std::string::npos) << Check();
}

TEST_F(ValidationTest, PruneLowRankDistillAndSearchOptions) {
  auto* recipe = request_.mutable_spec()->mutable_recipe();
  const v1::QuantizePass quantize = recipe->passes(0).quantize();
  recipe->clear_passes();
  v1::PrunePass* prune = recipe->add_passes()->mutable_prune();
  prune->set_sparsity(1.0);
  EXPECT_NE(Check().message().find("passes[0].prune.sparsity must be in [0, 1), got 1"), std::string::npos);
  prune->set_sparsity(0.5);
  EXPECT_TRUE(Check().ok()) << Check();
  prune->set_structure(v1::PrunePass::N_M);
  prune->set_n(4);
  prune->set_m(4);
  EXPECT_NE(Check().message().find("1 <= n < m <= 64, got 4:4"), std::string::npos) << Check();
  prune->set_n(2);
  prune->set_sparsity(0.25);
  EXPECT_NE(Check().message().find("disagrees with 2:4"), std::string::npos) << Check();
  prune->set_sparsity(0);
  EXPECT_TRUE(Check().ok()) << Check();

  v1::LowRankPass* low_rank = recipe->add_passes()->mutable_low_rank();
  low_rank->set_energy(1.5);
  EXPECT_NE(Check().message().find("passes[1].low_rank.energy must be in (0, 1]"), std::string::npos);
  low_rank->set_energy(0.9);
  recipe->add_passes()->mutable_distill()->set_steps(0);
  EXPECT_NE(Check().message().find("passes[2].distill.steps must be in [1, 100000], got 0"), std::string::npos);
  recipe->mutable_passes(2)->mutable_distill()->set_steps(10);
  *recipe->add_passes()->mutable_quantize() = quantize;
  EXPECT_TRUE(Check().ok()) << Check();
  // Quantization comes last; GPTQ may not follow unstructured/N:M pruning.
  recipe->add_passes()->mutable_distill()->set_steps(10);
  EXPECT_NE(Check().message().find("passes[3]: quantize must be the last pass"), std::string::npos) << Check();
  recipe->mutable_passes()->RemoveLast();
  recipe->mutable_passes(3)->mutable_quantize()->set_method(v1::QuantizePass::GPTQ);
  EXPECT_NE(Check().message().find("GPTQ after unstructured or N:M pruning"), std::string::npos) << Check();
  recipe->mutable_passes(3)->mutable_quantize()->set_method(v1::QuantizePass::RTN);

  recipe->add_passes()->mutable_search()->set_max_trials(5);
  EXPECT_NE(Check().message().find("a search pass must be the only pass"), std::string::npos) << Check();
  v1::Recipe alone;
  alone.add_passes()->mutable_search()->set_max_accuracy_drop(2);
  *recipe = alone;
  EXPECT_NE(Check().message().find("max_accuracy_drop must be in [0, 1], got 2"), std::string::npos) << Check();
  recipe->mutable_passes(0)->mutable_search()->set_max_accuracy_drop(0.01);
  EXPECT_TRUE(Check().ok()) << Check();
}

TEST_F(ValidationTest, UnknownFieldsAreRejected) {
  // Field 99 of QuantizePass does not exist: as from a newer client.
  std::string bytes;
  request_.SerializeToString(&bytes);
  v1::QuantizePass pass;
  pass.GetReflection()->MutableUnknownFields(&pass)->AddVarint(99, 1);
  v1::SubmitJobRequest with_unknown = request_;
  *with_unknown.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize() = pass;
  absl::Status status = ValidateSubmitRequest(with_unknown, devices_);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("request.spec.recipe.passes[0].quantize has unknown field "
                                  "number 99"),
            std::string::npos)
      << status;
}

TEST(RtnOptionsFromPassTest, AppliesDefaults) {
  v1::QuantizePass pass;
  EXPECT_EQ(RtnOptionsFromPass(pass).bits, 8);
  EXPECT_EQ(RtnOptionsFromPass(pass).group_size, 0);
  pass.set_granularity(v1::QuantizePass::PER_GROUP);
  EXPECT_EQ(RtnOptionsFromPass(pass).group_size, 128);
}

TEST_F(ValidationTest, PtqOptionsAreCheckedWithTheirValues) {
  auto* q = request_.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize();
  q->set_activation_bits(4);
  EXPECT_EQ(Check().message(),
            "spec.recipe.passes[0].quantize.activation_bits must be 0 (weight-only) or 8, got 4");
  q->set_activation_bits(0);
  q->set_smoothquant_alpha(0.5);
  EXPECT_NE(Check().message().find("needs activation_bits = 8"), std::string::npos) << Check();
  q->set_activation_bits(8);
  EXPECT_TRUE(Check().ok()) << Check();
  q->set_smoothquant_alpha(1.5);
  EXPECT_NE(Check().message().find("smoothquant_alpha must be 0 (off) or in (0, 1], got 1.5"),
            std::string::npos)
      << Check();
  q->set_smoothquant_alpha(0);
  q->set_calibration_batches(1000);
  EXPECT_NE(Check().message().find("calibration_batches must be in [1, 256]"), std::string::npos) << Check();
  q->set_calibration_batches(0);
  q->set_calibration_batch_size(-1);
  EXPECT_NE(Check().message().find("calibration_batch_size"), std::string::npos) << Check();
  q->set_calibration_batch_size(0);
  q->set_method(static_cast<v1::QuantizePass::Method>(9));
  EXPECT_NE(Check().message().find("quantize.method is unknown: 9"), std::string::npos) << Check();
}

TEST(PtqOptionsFromPassTest, MapsEveryOption) {
  v1::QuantizePass pass;
  core::quant::ptq::PtqOptions options = PtqOptionsFromPass(pass);
  ASSERT_TRUE(options.weights.has_value());
  EXPECT_EQ(options.weights->method, core::quant::ptq::WeightMethod::kRtn);
  EXPECT_EQ(options.weights->format.bits, 8);
  EXPECT_FALSE(options.activations.has_value());
  EXPECT_FALSE(options.smoothquant);

  pass.set_bits(4);
  pass.set_method(v1::QuantizePass::GPTQ);
  pass.set_activation_bits(8);
  pass.set_observer(v1::QuantizePass::ENTROPY);
  pass.set_smoothquant_alpha(0.75);
  pass.set_bias_correction(true);
  options = PtqOptionsFromPass(pass);
  EXPECT_EQ(options.weights->method, core::quant::ptq::WeightMethod::kGptq);
  EXPECT_TRUE(options.calibration.hessian);
  EXPECT_EQ(options.weights->format.bits, 4);
  EXPECT_TRUE(options.weights->bias_correction);
  ASSERT_TRUE(options.activations.has_value());
  EXPECT_EQ(options.activations->observer, core::quant::ptq::Observer::kEntropy);
  EXPECT_TRUE(options.smoothquant);
  EXPECT_DOUBLE_EQ(options.smoothquant_alpha, 0.75);
}

TEST(ValidateRecipeForModelTest, PtqOnlyOptionsAreRejectedForSafetensors) {
  core::model::SafetensorsHeader header;
  header.tensors["fc1.weight"] = {core::model::DType::kF32, {16, 8}, 0, 512};
  v1::Recipe recipe;
  recipe.add_passes()->mutable_quantize()->set_method(v1::QuantizePass::AWQ);
  absl::Status status = ValidateRecipeForModel(recipe, header);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("method AWQ"), std::string::npos) << status;
  EXPECT_NE(status.message().find("ONNX models only"), std::string::npos) << status;
}

TEST(ValidateDatasetHeaderTest, NamesTheDatasetAndTheShapes) {
  core::graph::ValueInfo input;
  input.name = "image";
  input.shape = std::vector<core::graph::Dim>{{std::nullopt, "N"}, {1, ""}, {28, ""}, {28, ""}};
  core::model::SafetensorsHeader header;
  header.tensors["inputs"] = {core::model::DType::kF32, {10, 1, 28, 27}, 0, 0};
  absl::Status status = ValidateDatasetHeader(header, input, false, "spec.calibration_dataset");
  EXPECT_EQ(status.message(),
            "spec.calibration_dataset: \"inputs\" has shape [10, 1, 28, 27] but the model input 'image' is "
            "[N, 1, 28, 28]");
  header.tensors["inputs"].shape = {10, 1, 28, 28};
  EXPECT_TRUE(ValidateDatasetHeader(header, input, false, "spec.calibration_dataset").ok());
  status = ValidateDatasetHeader(header, input, true, "spec.evaluation_dataset");
  EXPECT_NE(status.message().find("spec.evaluation_dataset has no tensor \"labels\""), std::string::npos)
      << status;
}

}  // namespace
}  // namespace squeeze::server

namespace squeeze::server {
namespace {

TEST(ValidateRecipeForGraphTest, NmPruningNamesTheLayerItDoesNotFit) {
  core::quant::ptq::LayerScan scan;
  scan.layers.resize(2);
  scan.layers[0].name = "conv1";
  scan.layers[0].in = 9;  // a 3x3 conv on one channel
  scan.layers[1].name = "fc";
  scan.layers[1].in = 128;
  v1::Recipe recipe;
  v1::PrunePass* prune = recipe.add_passes()->mutable_prune();
  prune->set_structure(v1::PrunePass::N_M);
  absl::Status status = ValidateRecipeForGraph(recipe, scan);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("passes[0].prune: 2:4 needs every layer's input width to be a multiple of 4; "
                                  "layer conv1 has 9"),
            std::string::npos)
      << status;
  // Fleet form: layers 2:4 does not fit stay dense instead.
  prune->set_per_device(true);
  EXPECT_TRUE(ValidateRecipeForGraph(recipe, scan).ok());
}

TEST(ValidateRecipeForGraphTest, GroupSizeAndMixedBudgetNameTheLayerAndValue) {
  core::quant::ptq::LayerScan scan;
  scan.layers.resize(2);
  scan.layers[0].name = "conv1";
  scan.layers[0].out = 8;
  scan.layers[0].in = 72;
  scan.layers[1].name = "fc";
  scan.layers[1].out = 10;
  scan.layers[1].in = 128;
  v1::Recipe recipe;
  v1::QuantizePass* q = recipe.add_passes()->mutable_quantize();
  q->set_bits(4);
  q->set_granularity(v1::QuantizePass::PER_GROUP);
  q->set_group_size(16);
  absl::Status status = ValidateRecipeForGraph(recipe, scan);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("passes[0]: "), std::string::npos) << status;
  EXPECT_NE(status.message().find("group_size 16 does not divide the input width 72"), std::string::npos) << status;
  EXPECT_NE(status.message().find("conv1"), std::string::npos) << status;
  q->set_group_size(8);
  EXPECT_TRUE(ValidateRecipeForGraph(recipe, scan).ok());

  // 1856 weights, 18 output channels: at 2 bits the smallest plan takes
  // 1856 * 2 + 18 * 32 = 4288 bits, more than 2 bits per weight.
  q->Clear();
  q->mutable_mixed_precision()->set_average_bits(2);
  status = ValidateRecipeForGraph(recipe, scan);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("the budget of 3712 bits (2 per weight over 1856 weights) is below the smallest "
                                  "plan, every layer at 2 bits: 4288 bits"),
            std::string::npos)
      << status;
  q->mutable_mixed_precision()->set_average_bits(2.5);
  EXPECT_TRUE(ValidateRecipeForGraph(recipe, scan).ok());
  q->mutable_mixed_precision()->set_average_bits(0);
  q->mutable_mixed_precision()->set_max_bytes(400);  // 3200 bits
  EXPECT_NE(ValidateRecipeForGraph(recipe, scan).message().find("the budget of 3200 bits"), std::string::npos);
  // Asymmetric: 8 more bits of zero point per channel, 1856 * 2 + 18 * 40 =
  // 4432 bits; 2.35 bits per weight (4361 bits) fits only the symmetric plan.
  q->mutable_mixed_precision()->set_max_bytes(0);
  q->mutable_mixed_precision()->set_average_bits(2.35);
  EXPECT_TRUE(ValidateRecipeForGraph(recipe, scan).ok());
  q->set_asymmetric(true);
  status = ValidateRecipeForGraph(recipe, scan);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("the budget of 4361 bits (2.34968 per weight over 1856 weights) is below the "
                                  "smallest plan, every layer at 2 bits: 4432 bits (2.38793 per weight, per-channel "
                                  "scales and zero points included)"),
            std::string::npos)
      << status;
}

TEST(ValidateRecipeForModelTest, OnnxOnlyQuantizeOptionsAreRejectedForSafetensors) {
  core::model::SafetensorsHeader header;
  header.tensors["fc1.weight"] = {core::model::DType::kF32, {16, 8}, 0, 512};
  v1::Recipe recipe;
  recipe.add_passes()->mutable_quantize()->set_granularity(v1::QuantizePass::PER_TENSOR);
  EXPECT_NE(ValidateRecipeForModel(recipe, header).message().find("PER_TENSOR and mixed_precision need an ONNX model"),
            std::string::npos);
  recipe.mutable_passes(0)->mutable_quantize()->set_granularity(v1::QuantizePass::PER_CHANNEL);
  recipe.mutable_passes(0)->mutable_quantize()->set_method(v1::QuantizePass::KMEANS);
  EXPECT_NE(ValidateRecipeForModel(recipe, header).message().find("method KMEANS"), std::string::npos);
  recipe.mutable_passes(0)->mutable_quantize()->set_method(v1::QuantizePass::RTN);
  recipe.mutable_passes(0)->mutable_quantize()->set_bits(3);
  EXPECT_EQ(ValidateRecipeForModel(recipe, header).message(),
            "spec.recipe.passes[0].quantize.bits 3 needs an ONNX model; a safetensors linear-chain model takes 4 or 8");
  recipe.mutable_passes(0)->mutable_quantize()->set_bits(4);
  EXPECT_TRUE(ValidateRecipeForModel(recipe, header).ok());
  recipe.mutable_passes(0)->mutable_quantize()->Clear();
  recipe.mutable_passes(0)->mutable_quantize()->set_float_format(v1::QuantizePass::FP16);
  EXPECT_EQ(ValidateRecipeForModel(recipe, header).message(),
            "spec.recipe.passes[0].quantize.float_format FP16 needs an ONNX model; a safetensors linear-chain model "
            "takes integer bits 4 or 8");
}

}  // namespace
}  // namespace squeeze::server
