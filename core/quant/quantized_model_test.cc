#include "core/quant/quantized_model.h"

#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant {
namespace {

using ::testing::HasSubstr;

model::LinearChain SampleChain() {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  model::LinearChain chain;
  const int64_t widths[] = {32, 16, 8};
  for (int l = 0; l < 2; ++l) {
    model::LinearLayer layer{absl::StrCat("fc", l + 1), widths[l],
                             widths[l + 1], {}, {}};
    for (int64_t i = 0; i < layer.in * layer.out; ++i) {
      layer.weight.push_back(normal(rng));
    }
    if (l == 0) {
      for (int64_t i = 0; i < layer.out; ++i) layer.bias.push_back(normal(rng));
    }
    chain.layers.push_back(std::move(layer));
  }
  return chain;
}

std::vector<RtnOptions> Formats() {
  return {{8, 0, false}, {8, 8, true}, {4, 16, false}, {4, 0, true}};
}

TEST(QuantizedModelTest, ArtifactRoundTripsThroughBytes) {
  const model::LinearChain chain = SampleChain();
  for (const RtnOptions& options : Formats()) {
    absl::StatusOr<QuantizedChain> q = QuantizeChain(chain, options, nullptr);
    ASSERT_TRUE(q.ok()) << q.status();
    const model::SafetensorsFile file = QuantizedChainToSafetensors(*q);
    EXPECT_EQ(file.metadata.at("squeeze.format"), "rtn-v1");
    EXPECT_EQ(file.metadata.at("squeeze.layers"), "fc1,fc2");
    EXPECT_EQ(file.metadata.at("squeeze.layer.fc1.bits"),
              absl::StrCat(options.bits));
    EXPECT_EQ(file.tensors.at("fc1.qweight").dtype,
              options.bits == 8 && !options.asymmetric ? model::DType::kI8
                                                       : model::DType::kU8);
    EXPECT_EQ(file.tensors.contains("fc1.zeros"), options.asymmetric);
    EXPECT_FALSE(file.tensors.contains("fc2.bias"));

    absl::StatusOr<model::SafetensorsFile> parsed =
        model::ParseSafetensors(model::SerializeSafetensors(file));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    absl::StatusOr<model::LinearChain> from_file =
        DequantizeChainFromSafetensors(*parsed);
    absl::StatusOr<model::LinearChain> direct = DequantizeChain(*q);
    ASSERT_TRUE(from_file.ok()) << from_file.status();
    ASSERT_TRUE(direct.ok());
    ASSERT_EQ(from_file->layers.size(), 2u);
    for (size_t l = 0; l < 2; ++l) {
      EXPECT_EQ(from_file->layers[l].weight, direct->layers[l].weight);
      EXPECT_EQ(from_file->layers[l].bias, chain.layers[l].bias);
    }
  }
}

TEST(QuantizedModelTest, QuantizedForwardEqualsForwardOfDequantizedChain) {
  const model::LinearChain chain = SampleChain();
  absl::StatusOr<QuantizedChain> q = QuantizeChain(chain, {4, 16, true}, nullptr);
  ASSERT_TRUE(q.ok());
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  std::vector<float> x(3 * 32);
  for (float& v : x) v = normal(rng);
  std::vector<float> quantized_out;
  ASSERT_TRUE(QuantizedForward(*q, x.data(), 3, &quantized_out).ok());
  std::vector<float> reference_out;
  model::Forward(*DequantizeChain(*q), x.data(), 3, &reference_out, nullptr);
  EXPECT_EQ(quantized_out, reference_out);
}

TEST(QuantizedModelTest, ProgressReportsEachLayerAndCancels) {
  std::vector<std::pair<int, int>> calls;
  absl::StatusOr<QuantizedChain> q =
      QuantizeChain(SampleChain(), {}, [&calls](int i, int n) {
        calls.emplace_back(i, n);
        return true;
      });
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(calls, (std::vector<std::pair<int, int>>{{0, 2}, {1, 2}}));
  absl::StatusOr<QuantizedChain> cancelled =
      QuantizeChain(SampleChain(), {}, [](int, int) { return false; });
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled);
}

TEST(QuantizedModelTest, OptionsAreValidatedForEveryLayerFirst) {
  int calls = 0;
  // 32 and 16 are divisible by 16, but not by 32 for fc2.
  absl::StatusOr<QuantizedChain> q =
      QuantizeChain(SampleChain(), {4, 32, false}, [&calls](int, int) {
        ++calls;
        return true;
      });
  EXPECT_THAT(q.status().message(),
              HasSubstr("group_size 32 does not divide the input width 16 "
                        "(layer fc2)"));
  EXPECT_EQ(calls, 0);
}

TEST(QuantizedModelTest, RejectsBrokenArtifacts) {
  absl::StatusOr<QuantizedChain> q =
      QuantizeChain(SampleChain(), {4, 8, true}, nullptr);
  ASSERT_TRUE(q.ok());
  const model::SafetensorsFile good = QuantizedChainToSafetensors(*q);
  struct Case {
    std::function<void(model::SafetensorsFile*)> mutate;
    std::string message;
  };
  const Case cases[] = {
      {[](auto* f) { f->metadata["squeeze.format"] = "gptq"; },
       "format \"gptq\" is not \"rtn-v1\""},
      {[](auto* f) { f->metadata.erase("squeeze.layer.fc2.bits"); },
       "missing metadata \"squeeze.layer.fc2.bits\""},
      {[](auto* f) { f->metadata["squeeze.layer.fc1.group_size"] = "x"; },
       "\"squeeze.layer.fc1.group_size\" = \"x\" is not an integer"},
      {[](auto* f) { f->metadata["squeeze.layer.fc1.scheme"] = "odd"; },
       "expected \"sym\" or \"asym\""},
      {[](auto* f) { f->tensors.erase("fc1.zeros"); },
       "missing tensor \"fc1.zeros\""},
      {[](auto* f) { f->tensors["fc1.scales"].dtype = model::DType::kI32; },
       "tensor \"fc1.scales\" is I32 [16, 4], expected F32 [16, 4]"},
      {[](auto* f) { f->tensors["extra"] = model::Tensor::FromFloats({1}, {1}); },
       "tensor \"extra\" belongs to no layer"},
      {[](auto* f) { f->metadata["squeeze.layer.fc2.in_features"] = "24"; },
       "fc2.qweight\" is U8 [8, 8], expected U8 [8, 12]"},
  };
  for (const Case& c : cases) {
    model::SafetensorsFile file = good;
    c.mutate(&file);
    absl::StatusOr<model::LinearChain> chain =
        DequantizeChainFromSafetensors(file);
    EXPECT_EQ(chain.status().code(), absl::StatusCode::kInvalidArgument)
        << c.message;
    EXPECT_THAT(chain.status().message(), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace squeeze::core::quant
