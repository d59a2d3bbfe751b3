#include "core/compress/variant_builder.h"

#include <stdlib.h>
#include <unistd.h>

#include <cmath>

#include "core/eval/seeded_normal.h"
#include "core/model/file_io.h"
#include "core/model/linear_chain.h"
#include "core/model/safetensors.h"
#include "core/quant/quantized_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::compress {
namespace {

using ::testing::HasSubstr;

class VariantBuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/variant_builder.XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    model::LinearChain chain;
    const int64_t widths[] = {32, 24, 8};
    for (int l = 0; l < 2; ++l) {
      model::LinearLayer layer{absl::StrCat("fc", l + 1), widths[l],
                               widths[l + 1], {}, {}};
      layer.weight = eval::NormalFloats(l + 1, layer.in * layer.out);
      for (float& w : layer.weight) w *= 0.25f;
      layer.bias = eval::NormalFloats(l + 10, layer.out);
      chain.layers.push_back(std::move(layer));
    }
    ASSERT_TRUE(WriteFile("model.safetensors",
                          model::LinearChainToSafetensors(chain)));
    ASSERT_TRUE(WriteInputs("calibration.safetensors", 16, 32));
    request_.model_path = dir_ + "/model.safetensors";
    request_.calibration_path = dir_ + "/calibration.safetensors";
    request_.artifact_path = dir_ + "/artifact.safetensors";
    request_.seed = 3;
  }

  void TearDown() override {
    for (const char* name : {"model.safetensors", "calibration.safetensors",
                             "artifact.safetensors", "other.safetensors"}) {
      unlink((dir_ + "/" + name).c_str());
    }
    rmdir(dir_.c_str());
  }

  bool WriteFile(const std::string& name, const model::SafetensorsFile& file) {
    return model::WriteFileAtomically(dir_ + "/" + name,
                                      model::SerializeSafetensors(file))
        .ok();
  }

  bool WriteInputs(const std::string& name, int64_t rows, int64_t width) {
    model::SafetensorsFile file;
    file.tensors["inputs"] = model::Tensor::FromFloats(
        {rows, width}, eval::NormalFloats(99, rows * width));
    return WriteFile(name, file);
  }

  bool ArtifactExists() const {
    return access(request_.artifact_path.c_str(), F_OK) == 0;
  }

  std::string dir_;
  VariantRequest request_;
};

TEST_F(VariantBuilderTest, Int8ReportAndArtifact) {
  std::vector<std::string> stages;
  absl::StatusOr<VariantReport> report = BuildQuantizedVariant(
      request_, [&stages](const std::string& stage, int64_t step, int64_t) {
        if (step == 0) stages.push_back(stage);
        return true;
      });
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(stages, (std::vector<std::string>{"load", "calibrate", "quantize",
                                              "evaluate", "measure"}));
  EXPECT_EQ(report->technique, "int8-pc-sym");
  ASSERT_EQ(report->layers.size(), 2u);
  EXPECT_EQ(report->layers[0].name, "fc1");
  EXPECT_EQ(report->layers[0].bits, 8);
  EXPECT_EQ(report->layers[0].parameters, 32 * 24 + 24);
  for (const LayerFidelity& layer : report->layers) {
    EXPECT_GT(layer.relative_error, 0.0);
    EXPECT_LT(layer.relative_error, 0.02) << layer.name;
    EXPECT_GT(layer.sqnr_db, 30.0) << layer.name;
  }
  EXPECT_EQ(report->baseline_metric, 0.0);
  EXPECT_GT(report->metric, 0.0);
  EXPECT_LT(report->metric, 0.02);
  EXPECT_GT(report->output_sqnr_db, 30.0);
  EXPECT_EQ(report->batch_size, 1);
  EXPECT_GE(report->latency.iterations, 10);
  EXPECT_GT(report->baseline_latency.p50, 0.0);
  EXPECT_LT(report->joules, report->baseline_joules);
  EXPECT_THAT(report->energy_model_description, HasSubstr("(int8)"));
  EXPECT_EQ(report->fp32_weight_bytes, (32 * 24 + 24 + 24 * 8 + 8) * 4);
  EXPECT_EQ(report->baseline_bytes,
            static_cast<int64_t>(*model::FileSize(request_.model_path)));
  EXPECT_EQ(report->artifact_bytes,
            static_cast<int64_t>(*model::FileSize(request_.artifact_path)));
  EXPECT_LT(report->artifact_bytes, report->baseline_bytes);
  EXPECT_FALSE(report->hardware.empty());

  absl::StatusOr<model::SafetensorsFile> artifact =
      model::ReadSafetensorsFile(request_.artifact_path);
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  EXPECT_TRUE(quant::DequantizeChainFromSafetensors(*artifact).ok());
}

TEST_F(VariantBuilderTest, Int4IsSmallerAndLessAccurate) {
  absl::StatusOr<VariantReport> int8 = BuildQuantizedVariant(request_, {});
  request_.rtn = {4, 8, false};
  absl::StatusOr<VariantReport> int4 = BuildQuantizedVariant(request_, {});
  ASSERT_TRUE(int8.ok() && int4.ok());
  EXPECT_EQ(int4->technique, "int4-g8-sym");
  EXPECT_GT(int4->metric, int8->metric);
  EXPECT_LT(int4->artifact_bytes, int8->artifact_bytes);
  EXPECT_THAT(int4->energy_model_description, HasSubstr("(int4)"));
}

TEST_F(VariantBuilderTest, GeneratedCalibrationIsDeterministic) {
  request_.calibration_path.clear();
  absl::StatusOr<VariantReport> first = BuildQuantizedVariant(request_, {});
  absl::StatusOr<VariantReport> second = BuildQuantizedVariant(request_, {});
  ASSERT_TRUE(first.ok() && second.ok()) << first.status();
  EXPECT_EQ(first->metric, second->metric);
  EXPECT_EQ(first->layers[1].relative_error, second->layers[1].relative_error);
}

TEST_F(VariantBuilderTest, SeparateEvaluationSetChangesTheMetricOnly) {
  absl::StatusOr<VariantReport> same = BuildQuantizedVariant(request_, {});
  model::SafetensorsFile other;
  other.tensors["inputs"] =
      model::Tensor::FromFloats({5, 32}, eval::NormalFloats(1234, 5 * 32));
  ASSERT_TRUE(WriteFile("other.safetensors", other));
  request_.evaluation_path = dir_ + "/other.safetensors";
  absl::StatusOr<VariantReport> separate = BuildQuantizedVariant(request_, {});
  ASSERT_TRUE(same.ok() && separate.ok()) << separate.status();
  EXPECT_EQ(same->layers[0].relative_error, separate->layers[0].relative_error);
  EXPECT_NE(same->metric, separate->metric);
}

TEST_F(VariantBuilderTest, BadInputsAreInvalidArgument) {
  ASSERT_TRUE(WriteInputs("other.safetensors", 4, 31));
  request_.calibration_path = dir_ + "/other.safetensors";
  absl::StatusOr<VariantReport> report = BuildQuantizedVariant(request_, {});
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(report.status().message(),
              HasSubstr("inputs width 31 does not match the model input "
                        "width 32"));

  model::SafetensorsFile no_inputs;
  no_inputs.tensors["x"] = model::Tensor::FromFloats({1}, {1});
  ASSERT_TRUE(WriteFile("other.safetensors", no_inputs));
  EXPECT_THAT(BuildQuantizedVariant(request_, {}).status().message(),
              HasSubstr("no tensor \"inputs\" (tensors: x)"));

  model::SafetensorsFile nan_inputs;
  nan_inputs.tensors["inputs"] = model::Tensor::FromFloats(
      {1, 32}, std::vector<float>(32, std::nanf("")));
  ASSERT_TRUE(WriteFile("other.safetensors", nan_inputs));
  EXPECT_THAT(BuildQuantizedVariant(request_, {}).status().message(),
              HasSubstr("inputs[0, 0] is nan"));

  request_.calibration_path.clear();
  request_.rtn.bits = 5;
  EXPECT_THAT(BuildQuantizedVariant(request_, {}).status().message(),
              HasSubstr("bits must be one of 2, 3, 4, 8, got 5 (layer fc1)"));
  request_.rtn.bits = 8;
  request_.model_path = request_.calibration_path + "missing";
  EXPECT_EQ(BuildQuantizedVariant(request_, {}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(ArtifactExists());
}

TEST_F(VariantBuilderTest, CancelInAnyStageWritesNothing) {
  for (const std::string cancel_at :
       {"load", "calibrate", "quantize", "evaluate", "measure"}) {
    absl::StatusOr<VariantReport> report = BuildQuantizedVariant(
        request_, [&cancel_at](const std::string& stage, int64_t step,
                               int64_t total) {
          return !(stage == cancel_at && step == total);
        });
    EXPECT_EQ(report.status().code(), absl::StatusCode::kCancelled)
        << cancel_at;
    EXPECT_FALSE(ArtifactExists()) << cancel_at;
  }
}

}  // namespace
}  // namespace squeeze::core::compress
