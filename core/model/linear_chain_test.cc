#include "core/model/linear_chain.h"

#include <cmath>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::model {
namespace {

using ::testing::HasSubstr;

LinearLayer RandomLayer(const std::string& name, int64_t in, int64_t out,
                        bool bias, std::mt19937* rng) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  LinearLayer layer{name, in, out, {}, {}};
  for (int64_t i = 0; i < in * out; ++i) layer.weight.push_back(uniform(*rng));
  if (bias) {
    for (int64_t i = 0; i < out; ++i) layer.bias.push_back(uniform(*rng));
  }
  return layer;
}

LinearChain SampleChain() {
  std::mt19937 rng(7);
  LinearChain chain;
  chain.layers.push_back(RandomLayer("fc1", 5, 4, true, &rng));
  chain.layers.push_back(RandomLayer("fc2", 4, 3, false, &rng));
  chain.layers.push_back(RandomLayer("fc3", 3, 2, true, &rng));
  return chain;
}

// Scalar oracle for Forward.
std::vector<float> ReferenceForward(const LinearChain& chain,
                                    std::vector<float> x, int64_t rows) {
  for (size_t l = 0; l < chain.layers.size(); ++l) {
    const LinearLayer& layer = chain.layers[l];
    std::vector<float> y(rows * layer.out);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t o = 0; o < layer.out; ++o) {
        double sum = layer.bias.empty() ? 0.0 : layer.bias[o];
        for (int64_t i = 0; i < layer.in; ++i) {
          sum += double{x[r * layer.in + i]} * layer.weight[o * layer.in + i];
        }
        if (l + 1 < chain.layers.size()) sum = std::max(sum, 0.0);
        y[r * layer.out + o] = static_cast<float>(sum);
      }
    }
    x = std::move(y);
  }
  return x;
}

absl::Status LoadStatus(const SafetensorsFile& file) {
  const absl::Status full = LinearChainFromSafetensors(file).status();
  absl::StatusOr<SafetensorsHeader> header =
      ParseSafetensorsHeader(SerializeSafetensors(file), SerializeSafetensors(file).size());
  EXPECT_TRUE(header.ok()) << header.status();
  // The header-only check must agree with the full load.
  EXPECT_EQ(ValidateLinearChainHeader(*header), full);
  return full;
}

TEST(LinearChainTest, SafetensorsRoundTrip) {
  const LinearChain chain = SampleChain();
  const SafetensorsFile file = LinearChainToSafetensors(chain);
  EXPECT_EQ(file.metadata.at(kLayersMetadataKey), "fc1,fc2,fc3");
  EXPECT_TRUE(LoadStatus(file).ok());
  absl::StatusOr<LinearChain> loaded = LinearChainFromSafetensors(file);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->layers.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(loaded->layers[i].name, chain.layers[i].name);
    EXPECT_EQ(loaded->layers[i].weight, chain.layers[i].weight);
    EXPECT_EQ(loaded->layers[i].bias, chain.layers[i].bias);
  }
  EXPECT_EQ(loaded->InputWidth(), 5);
  EXPECT_EQ(loaded->OutputWidth(), 2);
  EXPECT_EQ(loaded->Parameters(), 20 + 4 + 12 + 6 + 2);
  EXPECT_EQ(loaded->MacsPerRow(), 20 + 12 + 6);
}

TEST(LinearChainTest, OrderFromMetadataOrSortedNames) {
  std::mt19937 rng(1);
  LinearChain chain;
  chain.layers.push_back(RandomLayer("z", 3, 2, false, &rng));
  chain.layers.push_back(RandomLayer("a", 2, 6, false, &rng));
  SafetensorsFile file = LinearChainToSafetensors(chain);
  absl::StatusOr<LinearChain> loaded = LinearChainFromSafetensors(file);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->layers[0].name, "z");

  // Without metadata, sorted names: "a" [6, 2] then "z" [2, 3] do not chain.
  file.metadata.clear();
  EXPECT_THAT(LoadStatus(file).message(),
              HasSubstr("layers do not chain: \"z.weight\" [2, 3] takes 3 "
                        "inputs but \"a.weight\" [6, 2] gives 6"));
  file.metadata[kLayersMetadataKey] = " z , a ";
  EXPECT_TRUE(LoadStatus(file).ok());
}

TEST(LinearChainTest, SortsLayerNamesNotTensorNames) {
  std::mt19937 rng(1);
  LinearChain chain;
  chain.layers.push_back(RandomLayer("a", 3, 2, false, &rng));
  chain.layers.push_back(RandomLayer("a-b", 2, 4, false, &rng));
  SafetensorsFile file = LinearChainToSafetensors(chain);
  file.metadata.clear();
  absl::StatusOr<LinearChain> loaded = LinearChainFromSafetensors(file);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->layers[0].name, "a");
}

struct BadChain {
  std::function<void(SafetensorsFile*)> mutate;
  std::string message;
};

TEST(LinearChainTest, RejectsMalformedChainsNamingTensors) {
  const BadChain cases[] = {
      {[](SafetensorsFile* f) { f->tensors.erase("fc2.weight"); },
       "layer \"fc2\" has no tensor \"fc2.weight\""},
      {[](SafetensorsFile* f) {
         f->tensors["fc2.weight"].shape = {12};
       },
       "tensor \"fc2.weight\" has shape [12]; expected [out, in]"},
      {[](SafetensorsFile* f) { f->tensors["fc1.bias"].shape = {2, 2}; },
       "tensor \"fc1.bias\" has shape [2, 2]; expected [4]"},
      {[](SafetensorsFile* f) {
         f->tensors["fc1.weight"].dtype = DType::kI32;
       },
       "tensor \"fc1.weight\" has dtype I32"},
      {[](SafetensorsFile* f) {
         f->tensors["norm.scale"] = Tensor::FromFloats({1}, {1.0f});
       },
       "tensor \"norm.scale\" belongs to no layer (layers: fc1, fc2, fc3)"},
      {[](SafetensorsFile* f) { f->metadata[kLayersMetadataKey] = "fc1,fc1"; },
       "layer \"fc1\" appears twice"},
      {[](SafetensorsFile* f) { f->metadata[kLayersMetadataKey] = "fc1,,fc2"; },
       "empty layer name"},
      {[](SafetensorsFile* f) {
         f->tensors.clear();
         f->metadata.clear();
       },
       "no layers"},
      {[](SafetensorsFile* f) {
         f->tensors["fc1.weight"] = Tensor::FromFloats({4, 0}, {});
       },
       "expected [out, in] with both > 0"},
  };
  for (const BadChain& c : cases) {
    SafetensorsFile file = LinearChainToSafetensors(SampleChain());
    c.mutate(&file);
    const absl::Status status = LoadStatus(file);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(status.message(), HasSubstr(c.message));
  }
}

TEST(LinearChainTest, LoadsHalfPrecisionWeights) {
  SafetensorsFile file;
  // [[1, -2]] as F16.
  file.tensors["only.weight"] =
      Tensor{DType::kF16, {1, 2}, std::string("\x00\x3c\x00\xc0", 4)};
  absl::StatusOr<LinearChain> chain = LinearChainFromSafetensors(file);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(chain->layers[0].weight, (std::vector<float>{1.0f, -2.0f}));
}

TEST(LinearChainTest, ForwardMatchesScalarReference) {
  const LinearChain chain = SampleChain();
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  const int64_t rows = 7;
  std::vector<float> x(rows * chain.InputWidth());
  for (float& v : x) v = normal(rng);
  std::vector<float> out;
  std::vector<std::vector<float>> inputs;
  Forward(chain, x.data(), rows, &out, &inputs);
  const std::vector<float> expected = ReferenceForward(chain, x, rows);
  ASSERT_EQ(out.size(), expected.size());
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_NEAR(out[i], expected[i], 1e-5f) << i;
  }
  ASSERT_EQ(inputs.size(), 3u);
  EXPECT_EQ(inputs[0], x);
  EXPECT_EQ(inputs[1].size(), static_cast<size_t>(rows * 4));
  // Inputs to later layers passed through ReLU.
  for (float v : inputs[1]) EXPECT_GE(v, 0.0f);
  for (float v : inputs[2]) EXPECT_GE(v, 0.0f);
  // The last layer has no ReLU: with random weights some output is negative.
  EXPECT_LT(*std::min_element(out.begin(), out.end()), 0.0f);
}

TEST(LinearChainTest, EstimateMemoryBytes) {
  const std::string bytes =
      SerializeSafetensors(LinearChainToSafetensors(SampleChain()));
  absl::StatusOr<SafetensorsHeader> header =
      ParseSafetensorsHeader(bytes, bytes.size());
  ASSERT_TRUE(header.ok());
  const int64_t elements = 44;
  EXPECT_EQ(EstimateMemoryBytes(*header), elements * 4 + 3 * 4 * elements);
}

}  // namespace
}  // namespace squeeze::core::model
