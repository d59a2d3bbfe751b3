#include "core/quant/export/hf_quantized.h"

#include <filesystem>

#include "core/model/safetensors.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant_export {
namespace {

hf::HfConfig SmallLlama() {
  hf::HfConfig c;
  c.vocab_size = 40;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.max_positions = 32;
  c.tie_word_embeddings = false;
  return c;
}

class HfQuantizedTest : public ::testing::TestWithParam<quant::RtnOptions> {};

TEST_P(HfQuantizedTest, RoundTripEqualsDequantizedRtn) {
  const quant::RtnOptions options = GetParam();
  const hf::HfConfig c = SmallLlama();
  auto graph = hf::BuildCausalLmGraph(c, hf::InitializeWeights(c, 3, 0.3f));
  ASSERT_TRUE(graph.ok()) << graph.status();
  const std::string dir = ::testing::TempDir() + "/hfq_" + options.TechniqueName();
  ASSERT_TRUE(SaveHfQuantized(c, *graph, options, dir).ok());
  auto file = model::ReadSafetensorsFile(dir + "/model.safetensors");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->tensors.count("model.layers.0.self_attn.q_proj.weight"), 0u);
  EXPECT_EQ(file->tensors.at("lm_head.qweight").shape,
            (std::vector<int64_t>{40, options.bits == 4 ? 32 : 64}));
  EXPECT_EQ(file->tensors.count("lm_head.qzeros"), options.asymmetric ? 1u : 0u);

  auto loaded = LoadHfQuantized(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  for (const auto& [name, tensor] : graph->initializers) {
    if (name.rfind(hf::kDerivedPrefix, 0) == 0) continue;
    const std::vector<float> original = tensor.ToFloats();
    const std::vector<float> back = loaded->graph.initializers.at(name).ToFloats();
    ASSERT_EQ(original.size(), back.size()) << name;
    if (name.find("_proj.weight") == std::string::npos && name != "lm_head.weight") {
      EXPECT_EQ(original, back) << name;
      continue;
    }
    // Exactly DequantizeRtn of QuantizeRtn of the original.
    const auto& shape = tensor.shape();
    auto q = quant::QuantizeRtn(model::LinearLayer{name, shape[1], shape[0], original, {}}, options);
    ASSERT_TRUE(q.ok());
    std::vector<float> expected(original.size());
    ASSERT_TRUE(quant::DequantizeRtn(*q, expected.data()).ok());
    EXPECT_EQ(back, expected) << name;
  }
}

quant::RtnOptions Options(int bits, int group, bool asym) {
  quant::RtnOptions o;
  o.bits = bits;
  o.group_size = group;
  o.asymmetric = asym;
  return o;
}

INSTANTIATE_TEST_SUITE_P(Formats, HfQuantizedTest,
                         ::testing::Values(Options(4, 32, false), Options(4, 16, true),
                                           Options(8, 0, false), Options(8, 0, true)));

TEST(HfQuantizedLoadTest, RejectsPlainCheckpoints) {
  const hf::HfConfig c = SmallLlama();
  auto graph = hf::BuildCausalLmGraph(c, hf::InitializeWeights(c, 3));
  ASSERT_TRUE(graph.ok());
  const std::string dir = ::testing::TempDir() + "/hfq_plain";
  ASSERT_TRUE(hf::SaveHfCheckpoint(c, *graph, dir).ok());
  EXPECT_EQ(LoadHfQuantized(dir).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace squeeze::core::quant_export
