#include "core/quant/export/gguf.h"

#include <cmath>
#include <cstdlib>
#include <random>

#include "core/graph/tensor.h"
#include "core/model/file_io.h"
#include "core/model/tensor.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant_export {
namespace {

std::vector<float> RandomValues(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

TEST(GgmlBlocksTest, Q4_0MatchesTheReferenceSemanticsAndNibbleOrder) {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16);
  BlockQ4_0 block;
  QuantizeQ4_0Ref(x.data(), &block, 32);
  // max = -16 (largest magnitude, signed) -> d = -16 / -8 = 2.
  EXPECT_EQ(model::HalfToFloat(block.d), 2.0f);
  for (int j = 0; j < 16; ++j) {
    // q = min(15, trunc((j - 16) / 2 + 8.5)) = min(15, (j + 1) / 2).
    const int low = std::min(15, (j + 1) / 2), high = std::min(15, (j + 16 + 1) / 2);
    EXPECT_EQ(block.qs[j] & 0x0f, low) << j;
    EXPECT_EQ(block.qs[j] >> 4, high) << j;
  }
  EXPECT_EQ(block.qs[0], 0x80);   // element 0 low, element 16 high
  EXPECT_EQ(block.qs[15], 0xf8);  // element 15 low, element 31 (clamped) high
  std::vector<float> y(32);
  DequantizeQ4_0(&block, y.data(), 32);
  EXPECT_EQ(y[0], -16.0f);  // the extreme value is exact
  EXPECT_EQ(y[31], 14.0f);  // its mirror image is clamped: off by |d|/2 here
}

TEST(GgmlBlocksTest, Q4_0TakesTheFirstValueOfLargestMagnitude) {
  std::vector<float> x(32, 0.0f);
  x[0] = -3.0f;
  x[1] = 3.0f;
  BlockQ4_0 block;
  QuantizeQ4_0Ref(x.data(), &block, 32);
  EXPECT_EQ(model::HalfToFloat(block.d), 0.375f);  // -3 / -8
  EXPECT_EQ(block.qs[0] & 0x0f, 0);   // -3 / 0.375 + 8.5 = 0.5 -> 0
  EXPECT_EQ(block.qs[1] & 0x0f, 15);  // 3 / 0.375 + 8.5 = 16.5 -> 16 -> 15
  EXPECT_EQ(block.qs[2] & 0x0f, 8);   // zero
}

TEST(GgmlBlocksTest, Q8_0RoundsHalfAwayFromZero) {
  std::vector<float> x(32, 0.0f);
  const float values[] = {127.0f, 2.5f, -2.5f, 0.5f, -0.5f, 1.5f, -127.0f};
  std::copy(std::begin(values), std::end(values), x.begin());
  BlockQ8_0 block;
  QuantizeQ8_0Ref(x.data(), &block, 32);
  EXPECT_EQ(model::HalfToFloat(block.d), 1.0f);  // 127 / 127
  const int expected[] = {127, 3, -3, 1, -1, 2, -127};
  for (int j = 0; j < 7; ++j) EXPECT_EQ(block.qs[j], expected[j]) << j;
}

TEST(GgmlBlocksTest, ZeroBlocksHaveZeroScaleAndDequantizeToZero) {
  std::vector<float> x(64, 0.0f), y(64, 1.0f);
  BlockQ8_0 q8[2];
  BlockQ4_0 q4[2];
  QuantizeQ8_0Ref(x.data(), q8, 64);
  QuantizeQ4_0Ref(x.data(), q4, 64);
  DequantizeQ8_0(q8, y.data(), 64);
  for (float v : y) EXPECT_EQ(v, 0.0f);
  DequantizeQ4_0(q4, y.data(), 64);
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

// Error bounds of the formats, per block: Q8_0 |d| / 2, Q4_0 |d| (the
// clamped end), plus the binary16 rounding of d (relative 2^-11) times the
// largest |q| (127 or 8).
TEST(GgmlBlocksTest, RoundTripsWithinTheFormatsErrorBounds) {
  const int64_t k = 32 * 64;
  const std::vector<float> x = RandomValues(k, 7);
  std::vector<BlockQ8_0> q8(k / 32);
  std::vector<BlockQ4_0> q4(k / 32);
  std::vector<float> y8(k), y4(k);
  QuantizeQ8_0Ref(x.data(), q8.data(), k);
  QuantizeQ4_0Ref(x.data(), q4.data(), k);
  DequantizeQ8_0(q8.data(), y8.data(), k);
  DequantizeQ4_0(q4.data(), y4.data(), k);
  for (int64_t b = 0; b < k / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float tol8 = amax / 127 / 2 + amax * 0x1p-11f * 1.01f;
    const float tol4 = amax / 8 + amax * 0x1p-11f * 1.01f;
    for (int j = 0; j < 32; ++j) {
      ASSERT_LE(std::fabs(y8[b * 32 + j] - x[b * 32 + j]), tol8) << b << "," << j;
      ASSERT_LE(std::fabs(y4[b * 32 + j] - x[b * 32 + j]), tol4) << b << "," << j;
    }
  }
}

TEST(GgufTest, SerializesTheHeaderAndParsesBack) {
  GgufFile f;
  f.metadata.emplace_back("general.architecture", GgufValue::String("llama"));
  f.metadata.emplace_back("llama.block_count", GgufValue::UInt32(2));
  f.metadata.emplace_back("llama.rope.freq_base", GgufValue::Float32(10000.0f));
  f.metadata.emplace_back("tokenizer.ggml.tokens", GgufValue::StringArray({"a", "bc", ""}));
  f.metadata.emplace_back("tokenizer.ggml.token_type", GgufValue::Int32Array({1, 1, 3}));
  const std::vector<float> w = RandomValues(64 * 3, 1);
  GgufTensor t8{"w8", {64, 3}, GgmlType::kQ8_0, std::string(3 * 2 * 34, '\0')};
  QuantizeQ8_0Ref(w.data(), reinterpret_cast<BlockQ8_0*>(t8.data.data()), 64 * 3);
  GgufTensor tf{"norm", {5}, GgmlType::kF32, std::string(20, '\x01')};
  f.tensors = {tf, t8};
  const std::string bytes = SerializeGguf(f);
  EXPECT_EQ(bytes.substr(0, 4), "GGUF");
  EXPECT_EQ(bytes[4], 3);
  auto parsed = ParseGguf(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->metadata.size(), 5u);
  EXPECT_EQ(parsed->Find("general.architecture")->strings[0], "llama");
  EXPECT_EQ(parsed->Find("llama.block_count")->ints[0], 2);
  EXPECT_EQ(parsed->Find("llama.rope.freq_base")->floats[0], 10000.0);
  EXPECT_EQ(parsed->Find("tokenizer.ggml.tokens")->strings,
            (std::vector<std::string>{"a", "bc", ""}));
  EXPECT_EQ(parsed->Find("tokenizer.ggml.token_type")->ints, (std::vector<int64_t>{1, 1, 3}));
  ASSERT_EQ(parsed->tensors.size(), 2u);
  EXPECT_EQ(parsed->tensors[1].ne, (std::vector<int64_t>{64, 3}));
  EXPECT_EQ(parsed->tensors[1].data, t8.data);
  EXPECT_EQ(parsed->tensors[0].data, tf.data);
  // The data section starts aligned: norm (20 bytes, padded to 32), then the
  // 204 bytes of w8 padded to 224.
  EXPECT_EQ(bytes.size() % 32, 0u);
  EXPECT_EQ(bytes.substr(bytes.size() - 224, 204), t8.data);
  EXPECT_EQ(bytes.substr(bytes.size() - 256, 20), tf.data);

  EXPECT_FALSE(ParseGguf("GGUX" + bytes.substr(4)).ok());
  EXPECT_FALSE(ParseGguf(bytes.substr(0, bytes.size() - 40)).ok());
  EXPECT_FALSE(ParseGguf(bytes.substr(0, 30)).ok());
}

TEST(GgufTest, RopePermutationMatchesLlamaCppInterleavedRotation) {
  // Hugging Face rotates (q[i], q[i + hd/2]); llama.cpp's LLaMA rope rotates
  // (q[2i], q[2i+1]) with the same angle. Permuting W's rows as
  // convert_hf_to_gguf.py does must make the two agree, and leave q . k
  // (the attention scores) unchanged.
  const int64_t heads = 2, hd = 8, d = 6, rows = heads * hd;
  const std::vector<float> wq = RandomValues(rows * d, 3), wk = RandomValues(rows * d, 4);
  const std::vector<float> x = RandomValues(d, 5), x2 = RandomValues(d, 6);
  auto matvec = [&](const std::vector<float>& w, const std::vector<float>& v) {
    std::vector<double> out(rows, 0);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < d; ++c) out[r] += double{w[r * d + c]} * v[c];
    }
    return out;
  };
  auto rope = [&](std::vector<double> q, int pos, bool interleaved) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < hd / 2; ++i) {
        const double angle = pos * std::pow(10000.0, -2.0 * i / hd);
        const int64_t a = h * hd + (interleaved ? 2 * i : i);
        const int64_t b = h * hd + (interleaved ? 2 * i + 1 : i + hd / 2);
        const double qa = q[a], qb = q[b];
        q[a] = qa * std::cos(angle) - qb * std::sin(angle);
        q[b] = qa * std::sin(angle) + qb * std::cos(angle);
      }
    }
    return q;
  };
  const std::vector<double> hf_q = rope(matvec(wq, x), 5, false);
  const std::vector<double> hf_k = rope(matvec(wk, x2), 2, false);
  const std::vector<double> gg_q = rope(matvec(PermuteForGgufRope(wq, rows, d, heads), x), 5, true);
  const std::vector<double> gg_k = rope(matvec(PermuteForGgufRope(wk, rows, d, heads), x2), 2, true);
  for (int64_t h = 0; h < heads; ++h) {
    double hf_dot = 0, gg_dot = 0;
    for (int64_t i = 0; i < hd / 2; ++i) {
      for (int64_t j = 0; j < 2; ++j) {
        // Row h*hd + 2i + j of the permuted layout is row h*hd + j*hd/2 + i.
        EXPECT_NEAR(gg_q[h * hd + 2 * i + j], hf_q[h * hd + j * hd / 2 + i], 1e-9);
      }
    }
    for (int64_t r = 0; r < hd; ++r) {
      hf_dot += hf_q[h * hd + r] * hf_k[h * hd + r];
      gg_dot += gg_q[h * hd + r] * gg_k[h * hd + r];
    }
    EXPECT_NEAR(hf_dot, gg_dot, 1e-9);
  }
  // The inverse restores Hugging Face's order exactly, and is not the identity.
  EXPECT_EQ(UnpermuteFromGgufRope(PermuteForGgufRope(wq, rows, d, heads), rows, d, heads), wq);
  EXPECT_NE(UnpermuteFromGgufRope(wq, rows, d, heads), wq);
}

hf::HfConfig SmallLlama(bool tied) {
  hf::HfConfig c;
  c.vocab_size = 40;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.max_positions = 32;
  c.tie_word_embeddings = tied;
  return c;
}

TEST(GgufTest, LlamaExportUsesLlamaCppNamesAndLayout) {
  for (const GgmlType type : {GgmlType::kQ8_0, GgmlType::kQ4_0}) {
    const hf::HfConfig c = SmallLlama(false);
    auto graph = hf::BuildCausalLmGraph(c, hf::InitializeWeights(c, 1, 0.5f));
    ASSERT_TRUE(graph.ok()) << graph.status();
    std::vector<std::string> tokens;
    for (int i = 0; i < 40; ++i) tokens.push_back("t" + std::to_string(i));
    GgufExportOptions options;
    options.weight_type = type;
    auto gguf = LlamaToGguf(c, *graph, tokens, {"t t1"}, options);
    ASSERT_TRUE(gguf.ok()) << gguf.status();
    auto parsed = ParseGguf(SerializeGguf(*gguf));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->tensors.size(), 1 + 2 * 9 + 2u);  // embd, blocks, output_norm, output
    EXPECT_EQ(parsed->Find("general.architecture")->strings[0], "llama");
    EXPECT_EQ(parsed->Find("llama.attention.head_count_kv")->ints[0], 2);
    EXPECT_EQ(parsed->Find("tokenizer.ggml.model")->strings[0], "gpt2");
    // llama.cpp's "default" BPE pre-tokenizer is not GPT-2's: it cut
    // " 1921" into " " + "19" + "2" + "1" where GPT-2's gives " 19" + "2" +
    // "1", and 10 of 28 held-out texts tokenized differently
    // (scripts/check-gguf.sh).
    EXPECT_EQ(parsed->Find("tokenizer.ggml.pre")->strings[0], "gpt-2");
    EXPECT_EQ(parsed->Find("tokenizer.ggml.tokens")->strings.size(), 40u);
    ASSERT_NE(parsed->FindTensor("output.weight"), nullptr);
    const GgufTensor* norm = parsed->FindTensor("blk.1.ffn_norm.weight");
    ASSERT_NE(norm, nullptr);
    EXPECT_EQ(norm->type, GgmlType::kF32);
    const GgufTensor* k = parsed->FindTensor("blk.0.attn_k.weight");
    ASSERT_NE(k, nullptr);
    EXPECT_EQ(k->type, type);
    EXPECT_EQ(k->ne, (std::vector<int64_t>{64, 32}));  // [in, out] as ne
    // attn_k dequantized equals the permuted HF weight within the format's bound.
    const std::vector<float> hf_k =
        graph->initializers.at("model.layers.0.self_attn.k_proj.weight").ToFloats();
    const std::vector<float> expected = PermuteForGgufRope(hf_k, 32, 64, 2);
    auto got = DequantizeGgufTensor(*k);
    ASSERT_TRUE(got.ok());
    float amax = 0;
    for (float v : hf_k) amax = std::max(amax, std::fabs(v));
    const float bound = (type == GgmlType::kQ8_0 ? amax / 254 : amax / 8) * 1.01f;
    for (size_t i = 0; i < expected.size(); ++i) ASSERT_NEAR((*got)[i], expected[i], bound) << i;
  }
  const hf::HfConfig tied = SmallLlama(true);
  auto graph = hf::BuildCausalLmGraph(tied, hf::InitializeWeights(tied, 1));
  ASSERT_TRUE(graph.ok());
  auto gguf = LlamaToGguf(tied, *graph, std::vector<std::string>(40, "x"), {}, {});
  ASSERT_TRUE(gguf.ok());
  EXPECT_EQ(gguf->FindTensor("output.weight"), nullptr);
  EXPECT_FALSE(LlamaToGguf(tied, *graph, std::vector<std::string>(39, "x"), {}, {}).ok());
}

TEST(GgufTest, ExportsTheReferenceLanguageModel) {
  const char* source = std::getenv("SQUEEZE_SOURCE_DIR");
  if (source == nullptr) GTEST_SKIP() << "SQUEEZE_SOURCE_DIR is not set";
  const std::string out = ::testing::TempDir() + "/lm_q4_0.gguf";
  GgufExportOptions options;
  options.weight_type = GgmlType::kQ4_0;
  ASSERT_TRUE(ExportLlamaGguf(std::string(source) + "/deploy/models/lm", out, options).ok());
  auto bytes = model::ReadFile(out);
  ASSERT_TRUE(bytes.ok());
  auto parsed = ParseGguf(*bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->tensors.size(), 1 + 4 * 9 + 1u);  // tied: no output.weight
  EXPECT_EQ(parsed->Find("tokenizer.ggml.tokens")->strings.size(), 4096u);
  EXPECT_EQ(parsed->Find("tokenizer.ggml.merges")->strings[0], "Ġ t");
  EXPECT_EQ(parsed->Find("general.file_type")->ints[0], 2);
}

}  // namespace
}  // namespace squeeze::core::quant_export
