// Hugging Face causal-LM checkpoints in and out: a directory holding
// config.json and model.safetensors (or model-0000i-of-0000N.safetensors
// shards listed by model.safetensors.index.json), for the LLaMA family
// (RMSNorm, rotary embeddings, SwiGLU MLP, grouped-query attention) and the
// GPT-2 family (LayerNorm, learned positions, GELU(tanh) MLP, Conv1D weights
// stored [in, out]).
//
// The graph a checkpoint becomes takes "input_ids" int64 [batch, seq] and
// returns "logits" float32 [batch, seq, vocab]: full-sequence causal
// attention without a KV cache, seq <= max positions. It uses only operators
// that the CPU backend runs and that train::GradientProgram differentiates,
// so the same graph evaluates and trains. Its initializers are the
// checkpoint's tensors under their Hugging Face names (converted to
// float32), plus derived constants (rotary tables, the causal mask, shapes)
// whose names start with kDerivedPrefix; export writes back every
// initializer that is not derived, under the name it has.
#ifndef SQUEEZE_CORE_HF_HF_CHECKPOINT_H_
#define SQUEEZE_CORE_HF_HF_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"

namespace squeeze::core::hf {

inline constexpr char kDerivedPrefix[] = "squeeze.";

enum class ModelFamily { kLlama, kGpt2 };

// The architecture, from config.json. LLaMA keys: hidden_size,
// intermediate_size, num_hidden_layers, num_attention_heads,
// num_key_value_heads (default: num_attention_heads), head_dim (default:
// hidden_size / num_attention_heads), rms_norm_eps, rope_theta (default
// 10000), vocab_size, max_position_embeddings, tie_word_embeddings (default
// false). GPT-2 keys: n_embd, n_inner (null or absent: 4 * n_embd), n_layer,
// n_head, n_positions, layer_norm_epsilon, vocab_size, tie_word_embeddings
// (default true).
struct HfConfig {
  ModelFamily family = ModelFamily::kLlama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;  // == num_heads for GPT-2
  int64_t head_dim = 0;
  int64_t max_positions = 0;
  double norm_epsilon = 1e-5;
  double rope_theta = 10000.0;  // LLaMA only
  bool tie_word_embeddings = false;
  // Prefix of every tensor name: "" or "transformer." for GPT-2 (both occur
  // on the Hub), always "" for LLaMA (whose names carry "model.").
  std::string tensor_prefix;
};

// Parses config.json text. INVALID_ARGUMENT naming `name` and the key for a
// missing or mistyped key, a non-positive size, heads that do not divide
// evenly, an unsupported model_type (anything but "llama" and "gpt2") and
// features the graph does not implement (rope_scaling, attention_bias,
// mlp_bias, a hidden_act other than silu, an activation_function other than
// gelu_new / gelu_pytorch_tanh).
absl::StatusOr<HfConfig> ParseHfConfig(std::string_view json, const std::string& name);

// config.json text for `config` (model_type, architectures and the keys
// above), which ParseHfConfig reads back to an equal HfConfig.
std::string HfConfigToJson(const HfConfig& config);

// The tensors a checkpoint of `config` holds, name -> shape.
std::map<std::string, std::vector<int64_t>> CheckpointTensorShapes(const HfConfig& config);

// Random weights for `config` as the Hugging Face initialisers make them:
// normal(0, stddev) matrices and embeddings, norm weights 1, biases 0.
// Deterministic for a seed.
std::map<std::string, graph::Tensor> InitializeWeights(const HfConfig& config, uint64_t seed,
                                                       float stddev = 0.02f);

// The graph described above over `weights` (float32, as named by
// CheckpointTensorShapes). INVALID_ARGUMENT naming the tensor when one is
// missing, has another shape or is not float32; unknown extra tensors are
// an error too.
absl::StatusOr<graph::Graph> BuildCausalLmGraph(const HfConfig& config,
                                                std::map<std::string, graph::Tensor> weights);

struct HfCheckpoint {
  HfConfig config;
  graph::Graph graph;
};

// Reads the checkpoint directory `dir`. Tensors may be F32, F16 or BF16
// (converted to float32). Buffers that some exports include and the graph
// recomputes (GPT-2's attn.bias / attn.masked_bias, rotary inv_freq) are
// skipped, as is lm_head.weight when the embeddings are tied. NOT_FOUND when
// config.json or the weights are missing; INVALID_ARGUMENT, prefixed with
// the file, for malformed files and the BuildCausalLmGraph errors.
absl::StatusOr<HfCheckpoint> LoadHfCheckpoint(const std::string& dir);

struct HfSaveOptions {
  // Above this many tensor bytes the weights are split into shards of at
  // most this size (a single tensor larger than it gets a shard of its own)
  // with model.safetensors.index.json; otherwise one model.safetensors.
  int64_t max_shard_bytes = int64_t{5} << 30;
};

// Writes config.json and the weights of `graph` (every initializer whose
// name does not start with kDerivedPrefix, as float32) into `dir`, creating
// it if needed. Each file is written atomically. INVALID_ARGUMENT when an
// initializer of CheckpointTensorShapes(config) is missing.
absl::Status SaveHfCheckpoint(const HfConfig& config, const graph::Graph& graph,
                              const std::string& dir, const HfSaveOptions& options = {});

// The names of the checkpoint tensors among the graph's initializers (the
// trainable parameters).
std::set<std::string> CheckpointTensorNames(const graph::Graph& graph);

}  // namespace squeeze::core::hf

#endif  // SQUEEZE_CORE_HF_HF_CHECKPOINT_H_
