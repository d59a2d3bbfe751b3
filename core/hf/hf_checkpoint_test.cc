#include "core/hf/hf_checkpoint.h"

#include <cmath>
#include <filesystem>
#include <random>

#include "core/kernels/cpu/cpu_backend.h"
#include "core/model/file_io.h"
#include "core/model/safetensors.h"
#include "core/runtime/executor.h"
#include "core/train/autograd.h"
#include "core/train/losses.h"
#include "core/train/optimizers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::hf {
namespace {

using graph::DataType;
using graph::Tensor;
using Weights = std::map<std::string, Tensor>;
using Matrix = std::vector<std::vector<double>>;  // [position][feature]

constexpr double kRelativeTolerance = 1e-4;

// ---- The oracle: both architectures written out as plain loops in double.

const float* W(const Weights& w, const std::string& name) { return w.at(name).data<float>(); }

// y = x W^T for W stored [out, in] (transposed = false), or x W for W stored
// [in, out] (GPT-2's Conv1D, transposed = true); plus an optional bias.
Matrix Linear(const Matrix& x, const float* weight, int64_t in, int64_t out, bool transposed,
              const float* bias = nullptr) {
  Matrix y(x.size(), std::vector<double>(out, 0.0));
  for (size_t s = 0; s < x.size(); ++s) {
    for (int64_t o = 0; o < out; ++o) {
      double sum = bias ? bias[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) sum += x[s][i] * (transposed ? weight[i * out + o] : weight[o * in + i]);
      y[s][o] = sum;
    }
  }
  return y;
}

Matrix Norm(const Matrix& x, const float* weight, const float* bias, double eps) {
  Matrix y = x;
  for (auto& row : y) {
    const double n = static_cast<double>(row.size());
    double mean = 0, square = 0;
    for (double v : row) mean += v / n;
    if (bias == nullptr) mean = 0;  // RMSNorm
    for (double v : row) square += (v - mean) * (v - mean) / n;
    for (size_t i = 0; i < row.size(); ++i) {
      row[i] = (row[i] - mean) / std::sqrt(square + eps) * weight[i] + (bias ? bias[i] : 0.0);
    }
  }
  return y;
}

// Causal attention; q [S][H*hd], k and v [S][KV*hd].
Matrix Attend(const Matrix& q, const Matrix& k, const Matrix& v, int64_t heads, int64_t kv_heads, int64_t hd) {
  const size_t s_len = q.size();
  Matrix out(s_len, std::vector<double>(heads * hd, 0.0));
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t g = h / (heads / kv_heads);
    for (size_t s = 0; s < s_len; ++s) {
      std::vector<double> p(s + 1);
      double max = -1e300, total = 0;
      for (size_t t = 0; t <= s; ++t) {
        double dot = 0;
        for (int64_t i = 0; i < hd; ++i) dot += q[s][h * hd + i] * k[t][g * hd + i];
        p[t] = dot / std::sqrt(static_cast<double>(hd));
        max = std::max(max, p[t]);
      }
      for (double& x : p) total += (x = std::exp(x - max));
      for (size_t t = 0; t <= s; ++t) {
        for (int64_t i = 0; i < hd; ++i) out[s][h * hd + i] += p[t] / total * v[t][g * hd + i];
      }
    }
  }
  return out;
}

void AddInto(Matrix* x, const Matrix& y) {
  for (size_t s = 0; s < x->size(); ++s) {
    for (size_t i = 0; i < y[s].size(); ++i) (*x)[s][i] += y[s][i];
  }
}

Matrix Embed(const float* table, const std::vector<int64_t>& ids, int64_t d) {
  Matrix x;
  for (int64_t id : ids) x.emplace_back(table + id * d, table + (id + 1) * d);
  return x;
}

Matrix ReferenceLlama(const HfConfig& c, const Weights& w, const std::vector<int64_t>& ids) {
  const int64_t d = c.hidden_size, f = c.intermediate_size, hd = c.head_dim;
  const int64_t qd = c.num_heads * hd, kvd = c.num_kv_heads * hd;
  Matrix x = Embed(W(w, "model.embed_tokens.weight"), ids, d);
  auto rope = [&](Matrix* m, int64_t heads) {
    for (size_t s = 0; s < m->size(); ++s) {
      for (int64_t h = 0; h < heads; ++h) {
        for (int64_t i = 0; i < hd / 2; ++i) {
          const double angle = static_cast<double>(s) * std::pow(c.rope_theta, -2.0 * i / hd);
          double& a = (*m)[s][h * hd + i];
          double& b = (*m)[s][h * hd + i + hd / 2];
          const double x1 = a, x2 = b;
          a = x1 * std::cos(angle) - x2 * std::sin(angle);
          b = x2 * std::cos(angle) + x1 * std::sin(angle);
        }
      }
    }
  };
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Matrix h = Norm(x, W(w, p + "input_layernorm.weight"), nullptr, c.norm_epsilon);
    Matrix q = Linear(h, W(w, p + "self_attn.q_proj.weight"), d, qd, false);
    Matrix k = Linear(h, W(w, p + "self_attn.k_proj.weight"), d, kvd, false);
    Matrix v = Linear(h, W(w, p + "self_attn.v_proj.weight"), d, kvd, false);
    rope(&q, c.num_heads);
    rope(&k, c.num_kv_heads);
    AddInto(&x, Linear(Attend(q, k, v, c.num_heads, c.num_kv_heads, hd), W(w, p + "self_attn.o_proj.weight"), qd, d,
                       false));
    h = Norm(x, W(w, p + "post_attention_layernorm.weight"), nullptr, c.norm_epsilon);
    Matrix gate = Linear(h, W(w, p + "mlp.gate_proj.weight"), d, f, false);
    const Matrix up = Linear(h, W(w, p + "mlp.up_proj.weight"), d, f, false);
    for (size_t s = 0; s < gate.size(); ++s) {
      for (int64_t i = 0; i < f; ++i) gate[s][i] = gate[s][i] / (1 + std::exp(-gate[s][i])) * up[s][i];
    }
    AddInto(&x, Linear(gate, W(w, p + "mlp.down_proj.weight"), f, d, false));
  }
  x = Norm(x, W(w, "model.norm.weight"), nullptr, c.norm_epsilon);
  return Linear(x, W(w, c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight"), d, c.vocab_size,
                false);
}

Matrix ReferenceGpt2(const HfConfig& c, const Weights& w, const std::vector<int64_t>& ids) {
  const int64_t d = c.hidden_size, f = c.intermediate_size;
  const std::string& pre = c.tensor_prefix;
  Matrix x = Embed(W(w, pre + "wte.weight"), ids, d);
  for (size_t s = 0; s < x.size(); ++s) {
    for (int64_t i = 0; i < d; ++i) x[s][i] += W(w, pre + "wpe.weight")[s * d + i];
  }
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = pre + "h." + std::to_string(l) + ".";
    Matrix h = Norm(x, W(w, p + "ln_1.weight"), W(w, p + "ln_1.bias"), c.norm_epsilon);
    const Matrix qkv = Linear(h, W(w, p + "attn.c_attn.weight"), d, 3 * d, true, W(w, p + "attn.c_attn.bias"));
    Matrix q, k, v;
    for (const auto& row : qkv) {
      q.emplace_back(row.begin(), row.begin() + d);
      k.emplace_back(row.begin() + d, row.begin() + 2 * d);
      v.emplace_back(row.begin() + 2 * d, row.end());
    }
    AddInto(&x, Linear(Attend(q, k, v, c.num_heads, c.num_heads, c.head_dim), W(w, p + "attn.c_proj.weight"), d, d,
                       true, W(w, p + "attn.c_proj.bias")));
    h = Norm(x, W(w, p + "ln_2.weight"), W(w, p + "ln_2.bias"), c.norm_epsilon);
    Matrix m = Linear(h, W(w, p + "mlp.c_fc.weight"), d, f, true, W(w, p + "mlp.c_fc.bias"));
    for (auto& row : m) {
      for (double& a : row) a = 0.5 * a * (1 + std::tanh(std::sqrt(2 / M_PI) * (a + 0.044715 * a * a * a)));
    }
    AddInto(&x, Linear(m, W(w, p + "mlp.c_proj.weight"), f, d, true, W(w, p + "mlp.c_proj.bias")));
  }
  x = Norm(x, W(w, pre + "ln_f.weight"), W(w, pre + "ln_f.bias"), c.norm_epsilon);
  return Linear(x, W(w, c.tie_word_embeddings ? pre + "wte.weight" : "lm_head.weight"), d, c.vocab_size, false);
}

// ---- Fixtures.

HfConfig TinyLlama() {
  HfConfig c;
  c.family = ModelFamily::kLlama;
  c.vocab_size = 37, c.hidden_size = 16, c.intermediate_size = 24, c.num_layers = 2;
  c.num_heads = 4, c.num_kv_heads = 2, c.head_dim = 4, c.max_positions = 16;
  c.norm_epsilon = 1e-5, c.rope_theta = 10000, c.tie_word_embeddings = false;
  return c;
}

HfConfig TinyGpt2() {
  HfConfig c;
  c.family = ModelFamily::kGpt2;
  c.vocab_size = 41, c.hidden_size = 12, c.intermediate_size = 48, c.num_layers = 2;
  c.num_heads = 3, c.num_kv_heads = 3, c.head_dim = 4, c.max_positions = 16;
  c.norm_epsilon = 1e-5, c.tie_word_embeddings = true;
  return c;
}

// Weights large enough that every part of the model moves the logits, with
// norm weights and biases away from 1 and 0.
Weights RandomWeights(const HfConfig& c, uint64_t seed) {
  Weights w = InitializeWeights(c, seed, 0.3f);
  std::mt19937 rng(seed + 1);
  std::normal_distribution<float> noise(0.0f, 0.2f);
  for (auto& [name, t] : w) {
    if (t.rank() == 1) {
      for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] += noise(rng);
    }
  }
  return w;
}

std::string FreshDir(const std::string& name) {
  const std::string dir = testing::TempDir() + "/hf_checkpoint_test_" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

const std::vector<std::vector<int64_t>> kSequences = {{3, 1, 4, 1, 5, 9, 2}, {6, 5, 3, 5, 8, 9, 7}};

// Largest |ours - reference| over the largest |reference|.
double RelativeError(const HfCheckpoint& loaded, const Weights& weights) {
  auto executor = runtime::Executor::Create(loaded.graph, kernels::cpu::CreateCpuBackend(1));
  EXPECT_TRUE(executor.ok()) << executor.status();
  std::vector<int64_t> flat;
  for (const auto& s : kSequences) flat.insert(flat.end(), s.begin(), s.end());
  const int64_t seq = static_cast<int64_t>(kSequences[0].size());
  auto outputs = executor->Run({{"input_ids", Tensor::FromVector(DataType::kInt64, {2, seq}, flat)}});
  EXPECT_TRUE(outputs.ok()) << outputs.status();
  const Tensor& logits = (*outputs)[0];
  EXPECT_EQ(logits.shape(), (std::vector<int64_t>{2, seq, loaded.config.vocab_size}));
  double max_diff = 0, max_ref = 0;
  for (size_t b = 0; b < kSequences.size(); ++b) {
    const Matrix ref = loaded.config.family == ModelFamily::kLlama ? ReferenceLlama(loaded.config, weights, kSequences[b])
                                                                   : ReferenceGpt2(loaded.config, weights, kSequences[b]);
    for (int64_t s = 0; s < seq; ++s) {
      for (int64_t v = 0; v < loaded.config.vocab_size; ++v) {
        const double ours = logits.data<float>()[(b * seq + s) * loaded.config.vocab_size + v];
        max_diff = std::max(max_diff, std::abs(ours - ref[s][v]));
        max_ref = std::max(max_ref, std::abs(ref[s][v]));
      }
    }
  }
  EXPECT_GT(max_ref, 0.1);
  return max_diff / max_ref;
}

HfCheckpoint SaveAndLoad(const HfConfig& c, const Weights& w, const std::string& dir, HfSaveOptions options = {}) {
  auto graph = BuildCausalLmGraph(c, w);
  EXPECT_TRUE(graph.ok()) << graph.status();
  EXPECT_TRUE(SaveHfCheckpoint(c, *graph, dir, options).ok());
  auto loaded = LoadHfCheckpoint(dir);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return *std::move(loaded);
}

TEST(HfCheckpointTest, LlamaMatchesPlainLoopReference) {
  const HfConfig c = TinyLlama();
  const Weights w = RandomWeights(c, 7);
  const HfCheckpoint loaded = SaveAndLoad(c, w, FreshDir("llama"));
  const double error = RelativeError(loaded, w);
  EXPECT_LT(error, kRelativeTolerance);
  std::printf("LLaMA logits vs reference: max relative error %.3g\n", error);
}

TEST(HfCheckpointTest, TiedLlamaWithoutGroupingMatchesReference) {
  HfConfig c = TinyLlama();
  c.num_kv_heads = 4, c.tie_word_embeddings = true, c.rope_theta = 500000;
  const Weights w = RandomWeights(c, 8);
  EXPECT_EQ(w.count("lm_head.weight"), 0u);
  EXPECT_LT(RelativeError(SaveAndLoad(c, w, FreshDir("llama_tied")), w), kRelativeTolerance);
}

TEST(HfCheckpointTest, Gpt2MatchesPlainLoopReference) {
  const HfConfig c = TinyGpt2();
  const Weights w = RandomWeights(c, 9);
  const double error = RelativeError(SaveAndLoad(c, w, FreshDir("gpt2")), w);
  EXPECT_LT(error, kRelativeTolerance);
  std::printf("GPT-2 logits vs reference: max relative error %.3g\n", error);
}

TEST(HfCheckpointTest, Gpt2WithTransformerPrefixAndBuffersLoads) {
  // As GPT2LMHeadModel.save_pretrained writes it: "transformer." names, the
  // causal-mask buffers and a tied lm_head.weight copy, in float16.
  HfConfig c = TinyGpt2();
  Weights w = RandomWeights(c, 10);
  model::SafetensorsFile file;
  for (auto& [name, t] : w) {
    t = graph::CastTensor(graph::CastTensor(t, DataType::kFloat16), DataType::kFloat32);  // the values f16 holds
    file.tensors["transformer." + name] = *graph::ToModelTensor(graph::CastTensor(t, DataType::kFloat16));
  }
  file.tensors["lm_head.weight"] = file.tensors["transformer.wte.weight"];
  file.tensors["transformer.h.0.attn.bias"] = *graph::ToModelTensor(Tensor(DataType::kFloat32, {1, 1, 16, 16}));
  const std::string dir = FreshDir("gpt2_prefix");
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(model::WriteFileAtomically(dir + "/config.json", HfConfigToJson(c)).ok());
  ASSERT_TRUE(model::WriteFileAtomically(dir + "/model.safetensors", model::SerializeSafetensors(file)).ok());
  auto loaded = LoadHfCheckpoint(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config.tensor_prefix, "transformer.");
  Weights prefixed;
  for (auto& [name, t] : w) prefixed.emplace("transformer." + name, t);
  EXPECT_LT(RelativeError(*loaded, prefixed), kRelativeTolerance);
  EXPECT_EQ(loaded->graph.initializers.count("lm_head.weight"), 0u);
}

TEST(HfCheckpointTest, ShardedExportRoundTripsExactly) {
  const HfConfig c = TinyLlama();
  const Weights w = RandomWeights(c, 11);
  const std::string dir = FreshDir("sharded");
  const HfCheckpoint loaded = SaveAndLoad(c, w, dir, {4096});
  EXPECT_TRUE(std::filesystem::exists(dir + "/model.safetensors.index.json"));
  // About 14 KiB of weights in shards of at most 4 KiB.
  EXPECT_TRUE(std::filesystem::exists(dir + "/model-00007-of-00007.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/model.safetensors"));
  EXPECT_EQ(CheckpointTensorNames(loaded.graph).size(), w.size());
  for (const auto& [name, t] : w) {
    const Tensor& back = loaded.graph.initializers.at(name);
    EXPECT_EQ(back.shape(), t.shape()) << name;
    EXPECT_EQ(back.bytes(), t.bytes()) << name;
  }
  // Exporting what was imported gives the same files.
  const std::string again = FreshDir("sharded_again");
  ASSERT_TRUE(SaveHfCheckpoint(loaded.config, loaded.graph, again, {4096}).ok());
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string file = entry.path().filename();
    EXPECT_EQ(*model::ReadFile(dir + "/" + file), *model::ReadFile(again + "/" + file)) << file;
  }
  // Re-exporting unsharded replaces the index.
  ASSERT_TRUE(SaveHfCheckpoint(loaded.config, loaded.graph, again).ok());
  EXPECT_FALSE(std::filesystem::exists(again + "/model.safetensors.index.json"));
  EXPECT_TRUE(LoadHfCheckpoint(again).ok());
}

TEST(HfCheckpointTest, ConfigRoundTripsAndBadConfigsAreClearErrors) {
  for (const HfConfig& c : {TinyLlama(), TinyGpt2()}) {
    auto parsed = ParseHfConfig(HfConfigToJson(c), "config.json");
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(HfConfigToJson(*parsed), HfConfigToJson(c));
  }
  auto error = [](const std::string& json) { return std::string(ParseHfConfig(json, "config.json").status().message()); };
  EXPECT_THAT(error(R"({"model_type": "bert"})"), testing::HasSubstr("\"bert\" is not supported"));
  EXPECT_THAT(error(R"({"model_type": "llama", "intermediate_size": 8})"),
              testing::HasSubstr("config.json: \"hidden_size\" is missing"));
  EXPECT_THAT(error(R"({"model_type": "gpt2", "n_embd": "big"})"), testing::HasSubstr("\"n_embd\" must be an integer"));
  std::string json = HfConfigToJson(TinyLlama());
  json.replace(json.find("\"num_key_value_heads\": 2"), 24, "\"num_key_value_heads\": 3");
  EXPECT_THAT(error(json), testing::HasSubstr("does not divide"));
}

TEST(HfCheckpointTest, MissingAndMisshapenTensorsAreClearErrors) {
  const HfConfig c = TinyLlama();
  Weights w = RandomWeights(c, 12);
  Weights missing = w;
  missing.erase("model.layers.1.mlp.up_proj.weight");
  EXPECT_THAT(std::string(BuildCausalLmGraph(c, missing).status().message()),
              testing::HasSubstr("missing tensor 'model.layers.1.mlp.up_proj.weight'"));
  Weights misshapen = w;
  misshapen["model.norm.weight"] = Tensor(DataType::kFloat32, {15});
  EXPECT_THAT(std::string(BuildCausalLmGraph(c, misshapen).status().message()),
              testing::HasSubstr("'model.norm.weight' has shape [15], expected [16]"));
  Weights extra = w;
  extra["model.layers.0.self_attn.q_proj.bias"] = Tensor(DataType::kFloat32, {16});
  EXPECT_FALSE(BuildCausalLmGraph(c, extra).ok());
  EXPECT_EQ(LoadHfCheckpoint(FreshDir("absent")).status().code(), absl::StatusCode::kNotFound);
  // A checkpoint directory whose weights lack a tensor names the directory.
  const std::string dir = FreshDir("missing_tensor");
  std::filesystem::create_directories(dir);
  model::SafetensorsFile file;
  for (const auto& [name, t] : missing) file.tensors[name] = *graph::ToModelTensor(t);
  ASSERT_TRUE(model::WriteFileAtomically(dir + "/config.json", HfConfigToJson(c)).ok());
  ASSERT_TRUE(model::WriteFileAtomically(dir + "/model.safetensors", model::SerializeSafetensors(file)).ok());
  EXPECT_THAT(std::string(LoadHfCheckpoint(dir).status().message()), testing::HasSubstr(dir + ": missing tensor"));
}

TEST(HfCheckpointTest, GraphsTrainWithAutograd) {
  for (const HfConfig& c : {TinyLlama(), TinyGpt2()}) {
    auto graph = BuildCausalLmGraph(c, InitializeWeights(c, 13));
    ASSERT_TRUE(graph.ok());
    const std::set<std::string> trainable = CheckpointTensorNames(*graph);
    auto program = train::GradientProgram::Create(*graph, kernels::cpu::CreateCpuBackend(1), trainable);
    ASSERT_TRUE(program.ok()) << program.status();
    train::AdamW optimizer({1e-2, 0.9, 0.999, 1e-8, 0.0});
    const Tensor ids = Tensor::FromVector(DataType::kInt64, {1, 6}, std::vector<int64_t>{1, 2, 3, 4, 5, 6});
    const std::vector<int64_t> labels = {2, 3, 4, 5, 6, 7};
    double first = 0, last = 0;
    for (int step = 0; step < 8; ++step) {
      auto tape = program->Forward({{"input_ids", ids}});
      ASSERT_TRUE(tape.ok()) << tape.status();
      auto loss = train::SoftmaxCrossEntropy(**program->Output(*tape, "logits"), labels);
      ASSERT_TRUE(loss.ok());
      auto gradients = program->Backward(*tape, {{"logits", loss->gradient}});
      ASSERT_TRUE(gradients.ok()) << gradients.status();
      EXPECT_EQ(gradients->size(), trainable.size());
      ASSERT_TRUE(optimizer.Step(&program->mutable_parameters(), *gradients).ok());
      (step == 0 ? first : last) = loss->loss;
    }
    EXPECT_LT(last, first - 0.5) << "family " << static_cast<int>(c.family);
  }
}

}  // namespace
}  // namespace squeeze::core::hf
