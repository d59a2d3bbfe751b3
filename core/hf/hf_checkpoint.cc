#include "core/hf/hf_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/graph/builder.h"
#include "core/graph/shape_inference.h"
#include "core/model/file_io.h"
#include "core/model/json.h"
#include "core/model/safetensors.h"
#include "core/status_macros.h"

namespace squeeze::core::hf {
namespace {

using graph::DataType;
using graph::Tensor;
using model::JsonValue;

// config.json readers. Each names the file and the key in its errors.
class ConfigReader {
 public:
  ConfigReader(const JsonValue& root, const std::string& name) : root_(root), name_(name) {}

  const JsonValue* Find(const std::string& key) const {
    const JsonValue* value = model::FindJsonMember(root_, key);
    return value != nullptr && value->kind != JsonValue::Kind::kNull ? value : nullptr;
  }
  absl::StatusOr<int64_t> Int(const std::string& key, std::optional<int64_t> fallback = {}) const {
    const JsonValue* value = Find(key);
    if (value == nullptr) {
      if (fallback) return *fallback;
      return Error(key, "is missing");
    }
    if (value->kind != JsonValue::Kind::kInteger) {
      return Error(key, absl::StrCat("must be an integer, got ", model::JsonKindName(value->kind)));
    }
    if (value->integer_value <= 0) {
      return Error(key, absl::StrCat("must be positive, got ", value->integer_value));
    }
    return value->integer_value;
  }
  absl::StatusOr<double> Number(const std::string& key, std::optional<double> fallback = {}) const {
    const JsonValue* value = Find(key);
    if (value == nullptr) {
      if (fallback) return *fallback;
      return Error(key, "is missing");
    }
    if (value->kind != JsonValue::Kind::kInteger && value->kind != JsonValue::Kind::kNumber) {
      return Error(key, absl::StrCat("must be a number, got ", model::JsonKindName(value->kind)));
    }
    if (!(value->number_value > 0)) {
      return Error(key, absl::StrCat("must be positive, got ", value->number_value));
    }
    return value->number_value;
  }
  absl::StatusOr<bool> Bool(const std::string& key, bool fallback) const {
    const JsonValue* value = Find(key);
    if (value == nullptr) return fallback;
    if (value->kind != JsonValue::Kind::kBool) {
      return Error(key, absl::StrCat("must be true or false, got ", model::JsonKindName(value->kind)));
    }
    return value->bool_value;
  }
  absl::StatusOr<std::string> String(const std::string& key, const std::string& fallback) const {
    const JsonValue* value = Find(key);
    if (value == nullptr) return fallback;
    if (value->kind != JsonValue::Kind::kString) {
      return Error(key, absl::StrCat("must be a string, got ", model::JsonKindName(value->kind)));
    }
    return value->string_value;
  }
  absl::Status Error(const std::string& key, const std::string& problem) const {
    return absl::InvalidArgumentError(absl::StrCat(name_, ": \"", key, "\" ", problem));
  }

 private:
  const JsonValue& root_;
  const std::string& name_;
};

std::string Layer(int64_t i) { return absl::StrCat("model.layers.", i, "."); }
std::string Block(const HfConfig& c, int64_t i) { return absl::StrCat(c.tensor_prefix, "h.", i, "."); }

// The graph under construction with the helpers both families share.
class CausalLmBuilder {
 public:
  explicit CausalLmBuilder(const HfConfig& config) : c_(config), b_(config.family == ModelFamily::kLlama ? "llama" : "gpt2") {
    b_.AddInput({"input_ids", DataType::kInt64,
                 std::vector<graph::Dim>{{std::nullopt, "batch"}, {std::nullopt, "sequence"}}});
    b_.AddOutput({"logits", DataType::kFloat32,
                  std::vector<graph::Dim>{{std::nullopt, "batch"}, {std::nullopt, "sequence"}, {c_.vocab_size, ""}}});
    seq_ = b_.Add("Shape", {"input_ids"}, {{"start", int64_t{1}}, {"end", int64_t{2}}});
    // Additive causal mask [P, P] sliced to [S, S]: -1e9 above the diagonal
    // (not -inf, so that masked rows stay finite through Softmax's gradient).
    const int64_t p = c_.max_positions;
    Tensor mask(DataType::kFloat32, {p, p});
    for (int64_t i = 0; i < p; ++i) {
      for (int64_t j = i + 1; j < p; ++j) mask.data<float>()[i * p + j] = -1e9f;
    }
    b_.Initializer(Derived("causal_mask"), std::move(mask));
    mask_ = b_.Add("Slice", {Derived("causal_mask"), Int64s("zeros2", {0, 0}),
                             b_.Add("Concat", {seq_, seq_}, {{"axis", int64_t{0}}}), Int64s("axes01", {0, 1})});
    const int64_t hd = c_.head_dim;
    scale_ = b_.FloatScalar(Derived("attention_scale"), static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd))));
  }

  std::string Derived(const std::string& name) const { return absl::StrCat(kDerivedPrefix, name); }
  std::string Int64s(const std::string& name, const std::vector<int64_t>& values) {
    return b_.Int64s(Derived(name), values);
  }
  std::string Scalar(const std::string& name, float value) { return b_.FloatScalar(Derived(name), value); }
  std::string Op(const std::string& op, std::vector<std::string> inputs,
                 std::map<std::string, graph::Attribute> attributes = {}, const std::string& output = "") {
    return b_.Add(op, std::move(inputs), std::move(attributes), output);
  }
  // x [.., in] times W where W is stored [out, in] (torch.nn.Linear).
  std::string Linear(const std::string& x, const std::string& weight) {
    return Op("MatMul", {x, Op("Transpose", {weight}, {{"perm", std::vector<int64_t>{1, 0}}})});
  }
  // [B, S, heads * hd] -> [B, heads, S, hd].
  std::string SplitHeads(const std::string& x, int64_t heads) {
    const std::string shape = Int64s(absl::StrCat("heads_shape_", heads), {0, 0, heads, c_.head_dim});
    return Op("Transpose", {Op("Reshape", {x, shape})}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}});
  }
  // Causal attention of q [B, H, S, hd] over k, v [B, KV, S, hd]; returns
  // [B, S, H * hd].
  std::string Attention(const std::string& q, std::string k, std::string v) {
    const int64_t rep = c_.num_heads / c_.num_kv_heads;
    if (rep > 1) {
      // [B, KV, S, hd] -> [B, KV, 1, S, hd] -> [B, KV, rep, S, hd] -> [B, H, S, hd]
      const std::string grouped = Int64s("kv_grouped_shape", {0, c_.num_kv_heads, 1, -1, c_.head_dim});
      const std::string expand = Int64s("kv_expand_shape", {1, 1, rep, 1, 1});
      const std::string merged = Int64s("kv_merged_shape", {0, c_.num_heads, -1, c_.head_dim});
      auto repeat = [&](const std::string& x) {
        return Op("Reshape", {Op("Expand", {Op("Reshape", {x, grouped}), expand}), merged});
      };
      k = repeat(k);
      v = repeat(v);
    }
    std::string scores = Op("MatMul", {q, Op("Transpose", {k}, {{"perm", std::vector<int64_t>{0, 1, 3, 2}}})});
    scores = Op("Add", {Op("Mul", {scores, scale_}), mask_});
    const std::string probs = Op("Softmax", {scores}, {{"axis", int64_t{-1}}});
    const std::string context = Op("Transpose", {Op("MatMul", {probs, v})}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}});
    return Op("Reshape", {context, Int64s("merge_heads_shape", {0, 0, c_.num_heads * c_.head_dim})});
  }

  const std::string& seq() const { return seq_; }
  graph::GraphBuilder& builder() { return b_; }

 private:
  const HfConfig& c_;
  graph::GraphBuilder b_;
  std::string seq_, mask_, scale_;
};

std::string RmsNorm(CausalLmBuilder& g, const std::string& x, const std::string& weight, double eps) {
  const std::string mean_square = g.Op("ReduceMean", {g.Op("Pow", {x, g.Scalar("two", 2.0f)})},
                                       {{"axes", std::vector<int64_t>{-1}}, {"keepdims", int64_t{1}}});
  const std::string rms = g.Op("Sqrt", {g.Op("Add", {mean_square, g.Scalar("rms_norm_eps", static_cast<float>(eps))})});
  return g.Op("Mul", {g.Op("Div", {x, rms}), weight});
}

// HF's rotate_half convention: x * cos + concat(-x2, x1) * sin.
std::string Rotary(CausalLmBuilder& g, const std::string& x, const std::string& cos, const std::string& sin,
                   int64_t head_dim) {
  const std::string axis = g.Int64s("axis3", {3});
  const std::string x1 = g.Op("Slice", {x, g.Int64s("zero1", {0}), g.Int64s("half_head", {head_dim / 2}), axis});
  const std::string x2 = g.Op("Slice", {x, g.Int64s("half_head", {head_dim / 2}), g.Int64s("full_head", {head_dim}), axis});
  const std::string rotated = g.Op("Concat", {g.Op("Neg", {x2}), x1}, {{"axis", int64_t{-1}}});
  return g.Op("Add", {g.Op("Mul", {x, cos}), g.Op("Mul", {rotated, sin})});
}

graph::Graph BuildLlama(const HfConfig& c, std::map<std::string, Tensor> weights) {
  CausalLmBuilder g(c);
  for (auto& [name, tensor] : weights) g.builder().Initializer(name, std::move(tensor));
  const int64_t hd = c.head_dim, p = c.max_positions;
  Tensor cos(DataType::kFloat32, {p, hd}), sin(DataType::kFloat32, {p, hd});
  for (int64_t pos = 0; pos < p; ++pos) {
    for (int64_t i = 0; i < hd / 2; ++i) {
      const double inv_freq = std::pow(c.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(hd));
      const double angle = static_cast<double>(pos) * inv_freq;
      for (int64_t j : {i, i + hd / 2}) {
        cos.data<float>()[pos * hd + j] = static_cast<float>(std::cos(angle));
        sin.data<float>()[pos * hd + j] = static_cast<float>(std::sin(angle));
      }
    }
  }
  g.builder().Initializer(g.Derived("rope_cos"), std::move(cos));
  g.builder().Initializer(g.Derived("rope_sin"), std::move(sin));
  const std::string zero = g.Int64s("zero1", {0}), axis0 = g.Int64s("axis0", {0});
  const std::string cos_s = g.Op("Slice", {g.Derived("rope_cos"), zero, g.seq(), axis0});
  const std::string sin_s = g.Op("Slice", {g.Derived("rope_sin"), zero, g.seq(), axis0});

  std::string x = g.Op("Gather", {"model.embed_tokens.weight", "input_ids"});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string l = Layer(i);
    const std::string h = RmsNorm(g, x, l + "input_layernorm.weight", c.norm_epsilon);
    const std::string q = Rotary(g, g.SplitHeads(g.Linear(h, l + "self_attn.q_proj.weight"), c.num_heads), cos_s, sin_s, hd);
    const std::string k = Rotary(g, g.SplitHeads(g.Linear(h, l + "self_attn.k_proj.weight"), c.num_kv_heads), cos_s, sin_s, hd);
    const std::string v = g.SplitHeads(g.Linear(h, l + "self_attn.v_proj.weight"), c.num_kv_heads);
    x = g.Op("Add", {x, g.Linear(g.Attention(q, k, v), l + "self_attn.o_proj.weight")});
    const std::string h2 = RmsNorm(g, x, l + "post_attention_layernorm.weight", c.norm_epsilon);
    const std::string gate = g.Linear(h2, l + "mlp.gate_proj.weight");
    const std::string silu = g.Op("Mul", {gate, g.Op("Sigmoid", {gate})});
    const std::string up = g.Linear(h2, l + "mlp.up_proj.weight");
    x = g.Op("Add", {x, g.Linear(g.Op("Mul", {silu, up}), l + "mlp.down_proj.weight")});
  }
  x = RmsNorm(g, x, "model.norm.weight", c.norm_epsilon);
  const std::string head = c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  g.Op("MatMul", {x, g.Op("Transpose", {head}, {{"perm", std::vector<int64_t>{1, 0}}})}, {}, "logits");
  return g.builder().Finish();
}

std::string LayerNorm(CausalLmBuilder& g, const std::string& x, const std::string& prefix, double eps) {
  return g.Op("LayerNormalization", {x, prefix + "weight", prefix + "bias"},
              {{"axis", int64_t{-1}}, {"epsilon", static_cast<float>(eps)}});
}

// GPT-2's Conv1D: x times W stored [in, out], plus bias.
std::string Conv1D(CausalLmBuilder& g, const std::string& x, const std::string& prefix) {
  return g.Op("Add", {g.Op("MatMul", {x, prefix + "weight"}), prefix + "bias"});
}

graph::Graph BuildGpt2(const HfConfig& c, std::map<std::string, Tensor> weights) {
  CausalLmBuilder g(c);
  for (auto& [name, tensor] : weights) g.builder().Initializer(name, std::move(tensor));
  std::vector<int64_t> positions(static_cast<size_t>(c.max_positions));
  for (size_t i = 0; i < positions.size(); ++i) positions[i] = static_cast<int64_t>(i);
  const std::string pos = g.Op("Slice", {g.Int64s("positions", positions), g.Int64s("zero1", {0}), g.seq(),
                                         g.Int64s("axis0", {0})});
  const std::string& pre = c.tensor_prefix;
  std::string x = g.Op("Add", {g.Op("Gather", {pre + "wte.weight", "input_ids"}), g.Op("Gather", {pre + "wpe.weight", pos})});
  const int64_t d = c.hidden_size;
  const std::string axis2 = g.Int64s("axis2", {2});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string l = Block(c, i);
    const std::string qkv = Conv1D(g, LayerNorm(g, x, l + "ln_1.", c.norm_epsilon), l + "attn.c_attn.");
    auto part = [&](int64_t k) {
      return g.SplitHeads(g.Op("Slice", {qkv, g.Int64s(absl::StrCat("qkv_begin_", k), {k * d}),
                                         g.Int64s(absl::StrCat("qkv_begin_", k + 1), {(k + 1) * d}), axis2}),
                          c.num_heads);
    };
    x = g.Op("Add", {x, Conv1D(g, g.Attention(part(0), part(1), part(2)), l + "attn.c_proj.")});
    const std::string h = Conv1D(g, LayerNorm(g, x, l + "ln_2.", c.norm_epsilon), l + "mlp.c_fc.");
    // gelu_new: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
    const std::string cubic = g.Op("Mul", {g.Op("Pow", {h, g.Scalar("three", 3.0f)}), g.Scalar("gelu_coefficient", 0.044715f)});
    const std::string inner = g.Op("Mul", {g.Op("Add", {h, cubic}), g.Scalar("sqrt_2_over_pi", static_cast<float>(std::sqrt(2.0 / M_PI)))});
    const std::string gelu = g.Op("Mul", {g.Op("Mul", {h, g.Scalar("half", 0.5f)}),
                                          g.Op("Add", {g.Op("Tanh", {inner}), g.Scalar("one", 1.0f)})});
    x = g.Op("Add", {x, Conv1D(g, gelu, l + "mlp.c_proj.")});
  }
  x = LayerNorm(g, x, pre + "ln_f.", c.norm_epsilon);
  const std::string head = c.tie_word_embeddings ? pre + "wte.weight" : "lm_head.weight";
  g.Op("MatMul", {x, g.Op("Transpose", {head}, {{"perm", std::vector<int64_t>{1, 0}}})}, {}, "logits");
  return g.builder().Finish();
}

// Tensors some exports carry that the graph recomputes.
bool IsRecomputedBuffer(const std::string& name) {
  auto ends_with = [&](std::string_view suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends_with(".attn.bias") || ends_with(".attn.masked_bias") || ends_with("rotary_emb.inv_freq");
}

std::string NumberToJson(double value) { return absl::StrFormat("%.17g", value); }

}  // namespace

absl::StatusOr<HfConfig> ParseHfConfig(std::string_view json, const std::string& name) {
  SQ_ASSIGN_OR_RETURN(JsonValue root, model::ParseJson(json));
  if (root.kind != JsonValue::Kind::kObject) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not a JSON object"));
  }
  ConfigReader r(root, name);
  SQ_ASSIGN_OR_RETURN(std::string model_type, r.String("model_type", ""));
  HfConfig c;
  if (model_type == "llama") {
    c.family = ModelFamily::kLlama;
    SQ_ASSIGN_OR_RETURN(c.hidden_size, r.Int("hidden_size"));
    SQ_ASSIGN_OR_RETURN(c.intermediate_size, r.Int("intermediate_size"));
    SQ_ASSIGN_OR_RETURN(c.num_layers, r.Int("num_hidden_layers"));
    SQ_ASSIGN_OR_RETURN(c.num_heads, r.Int("num_attention_heads"));
    SQ_ASSIGN_OR_RETURN(c.num_kv_heads, r.Int("num_key_value_heads", c.num_heads));
    if (c.hidden_size % c.num_heads != 0 && r.Find("head_dim") == nullptr) {
      return r.Error("hidden_size", absl::StrCat("(", c.hidden_size, ") is not a multiple of num_attention_heads (",
                                                 c.num_heads, ")"));
    }
    SQ_ASSIGN_OR_RETURN(c.head_dim, r.Int("head_dim", c.hidden_size / c.num_heads));
    SQ_ASSIGN_OR_RETURN(c.norm_epsilon, r.Number("rms_norm_eps"));
    SQ_ASSIGN_OR_RETURN(c.rope_theta, r.Number("rope_theta", 10000.0));
    SQ_ASSIGN_OR_RETURN(c.vocab_size, r.Int("vocab_size"));
    SQ_ASSIGN_OR_RETURN(c.max_positions, r.Int("max_position_embeddings"));
    SQ_ASSIGN_OR_RETURN(c.tie_word_embeddings, r.Bool("tie_word_embeddings", false));
    if (c.num_heads % c.num_kv_heads != 0) {
      return r.Error("num_key_value_heads", absl::StrCat("(", c.num_kv_heads, ") does not divide num_attention_heads (",
                                                         c.num_heads, ")"));
    }
    if (c.head_dim % 2 != 0) return r.Error("head_dim", absl::StrCat("must be even for rotary embeddings, got ", c.head_dim));
    if (r.Find("rope_scaling") != nullptr) return r.Error("rope_scaling", "is not supported");
    for (const char* key : {"attention_bias", "mlp_bias"}) {
      SQ_ASSIGN_OR_RETURN(bool bias, r.Bool(key, false));
      if (bias) return r.Error(key, "true is not supported");
    }
    SQ_ASSIGN_OR_RETURN(std::string act, r.String("hidden_act", "silu"));
    if (act != "silu") return r.Error("hidden_act", absl::StrCat("\"", act, "\" is not supported (only silu)"));
  } else if (model_type == "gpt2") {
    c.family = ModelFamily::kGpt2;
    SQ_ASSIGN_OR_RETURN(c.hidden_size, r.Int("n_embd"));
    SQ_ASSIGN_OR_RETURN(c.intermediate_size, r.Int("n_inner", 4 * c.hidden_size));
    SQ_ASSIGN_OR_RETURN(c.num_layers, r.Int("n_layer"));
    SQ_ASSIGN_OR_RETURN(c.num_heads, r.Int("n_head"));
    c.num_kv_heads = c.num_heads;
    if (c.hidden_size % c.num_heads != 0) {
      return r.Error("n_embd", absl::StrCat("(", c.hidden_size, ") is not a multiple of n_head (", c.num_heads, ")"));
    }
    c.head_dim = c.hidden_size / c.num_heads;
    SQ_ASSIGN_OR_RETURN(c.norm_epsilon, r.Number("layer_norm_epsilon"));
    SQ_ASSIGN_OR_RETURN(c.vocab_size, r.Int("vocab_size"));
    SQ_ASSIGN_OR_RETURN(c.max_positions, r.Int("n_positions"));
    SQ_ASSIGN_OR_RETURN(c.tie_word_embeddings, r.Bool("tie_word_embeddings", true));
    SQ_ASSIGN_OR_RETURN(std::string act, r.String("activation_function", "gelu_new"));
    if (act != "gelu_new" && act != "gelu_pytorch_tanh") {
      return r.Error("activation_function", absl::StrCat("\"", act, "\" is not supported (only gelu_new)"));
    }
  } else {
    return r.Error("model_type", absl::StrCat("\"", model_type, "\" is not supported (llama or gpt2)"));
  }
  if (c.max_positions > 8192) {
    // The graph holds a [P, P] causal mask.
    return r.Error(c.family == ModelFamily::kLlama ? "max_position_embeddings" : "n_positions",
                   absl::StrCat("must be at most 8192 for full-sequence evaluation, got ", c.max_positions));
  }
  return c;
}

std::string HfConfigToJson(const HfConfig& c) {
  std::string out = "{\n";
  auto add = [&](const std::string& key, const std::string& value) {
    absl::StrAppend(&out, out.size() > 2 ? ",\n" : "", "  ", model::JsonQuote(key), ": ", value);
  };
  auto integer = [](int64_t v) { return absl::StrCat(v); };
  if (c.family == ModelFamily::kLlama) {
    add("architectures", "[\"LlamaForCausalLM\"]");
    add("model_type", "\"llama\"");
    add("hidden_size", integer(c.hidden_size));
    add("intermediate_size", integer(c.intermediate_size));
    add("num_hidden_layers", integer(c.num_layers));
    add("num_attention_heads", integer(c.num_heads));
    add("num_key_value_heads", integer(c.num_kv_heads));
    add("head_dim", integer(c.head_dim));
    add("rms_norm_eps", NumberToJson(c.norm_epsilon));
    add("rope_theta", NumberToJson(c.rope_theta));
    add("vocab_size", integer(c.vocab_size));
    add("max_position_embeddings", integer(c.max_positions));
    add("hidden_act", "\"silu\"");
  } else {
    add("architectures", "[\"GPT2LMHeadModel\"]");
    add("model_type", "\"gpt2\"");
    add("n_embd", integer(c.hidden_size));
    add("n_inner", integer(c.intermediate_size));
    add("n_layer", integer(c.num_layers));
    add("n_head", integer(c.num_heads));
    add("n_positions", integer(c.max_positions));
    add("layer_norm_epsilon", NumberToJson(c.norm_epsilon));
    add("vocab_size", integer(c.vocab_size));
    add("activation_function", "\"gelu_new\"");
  }
  add("tie_word_embeddings", c.tie_word_embeddings ? "true" : "false");
  add("torch_dtype", "\"float32\"");
  out += "\n}\n";
  return out;
}

std::map<std::string, std::vector<int64_t>> CheckpointTensorShapes(const HfConfig& c) {
  std::map<std::string, std::vector<int64_t>> shapes;
  const int64_t d = c.hidden_size, f = c.intermediate_size, v = c.vocab_size;
  if (c.family == ModelFamily::kLlama) {
    const int64_t q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
    shapes["model.embed_tokens.weight"] = {v, d};
    for (int64_t i = 0; i < c.num_layers; ++i) {
      const std::string l = Layer(i);
      shapes[l + "input_layernorm.weight"] = {d};
      shapes[l + "self_attn.q_proj.weight"] = {q, d};
      shapes[l + "self_attn.k_proj.weight"] = {kv, d};
      shapes[l + "self_attn.v_proj.weight"] = {kv, d};
      shapes[l + "self_attn.o_proj.weight"] = {d, q};
      shapes[l + "post_attention_layernorm.weight"] = {d};
      shapes[l + "mlp.gate_proj.weight"] = {f, d};
      shapes[l + "mlp.up_proj.weight"] = {f, d};
      shapes[l + "mlp.down_proj.weight"] = {d, f};
    }
    shapes["model.norm.weight"] = {d};
  } else {
    const std::string& pre = c.tensor_prefix;
    shapes[pre + "wte.weight"] = {v, d};
    shapes[pre + "wpe.weight"] = {c.max_positions, d};
    for (int64_t i = 0; i < c.num_layers; ++i) {
      const std::string l = Block(c, i);
      for (const char* norm : {"ln_1.", "ln_2."}) {
        shapes[l + norm + "weight"] = {d};
        shapes[l + norm + "bias"] = {d};
      }
      shapes[l + "attn.c_attn.weight"] = {d, 3 * d};
      shapes[l + "attn.c_attn.bias"] = {3 * d};
      shapes[l + "attn.c_proj.weight"] = {d, d};
      shapes[l + "attn.c_proj.bias"] = {d};
      shapes[l + "mlp.c_fc.weight"] = {d, f};
      shapes[l + "mlp.c_fc.bias"] = {f};
      shapes[l + "mlp.c_proj.weight"] = {f, d};
      shapes[l + "mlp.c_proj.bias"] = {d};
    }
    shapes[pre + "ln_f.weight"] = {d};
    shapes[pre + "ln_f.bias"] = {d};
  }
  if (!c.tie_word_embeddings) shapes["lm_head.weight"] = {v, d};
  return shapes;
}

std::map<std::string, Tensor> InitializeWeights(const HfConfig& config, uint64_t seed, float stddev) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::map<std::string, Tensor> weights;
  for (const auto& [name, shape] : CheckpointTensorShapes(config)) {
    Tensor t(DataType::kFloat32, shape);
    float* data = t.data<float>();
    const bool is_bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    const bool is_norm = shape.size() == 1 && !is_bias;
    for (int64_t i = 0; i < t.num_elements(); ++i) data[i] = is_norm ? 1.0f : is_bias ? 0.0f : normal(rng);
    weights.emplace(name, std::move(t));
  }
  return weights;
}

absl::StatusOr<graph::Graph> BuildCausalLmGraph(const HfConfig& config, std::map<std::string, Tensor> weights) {
  const auto shapes = CheckpointTensorShapes(config);
  for (const auto& [name, shape] : shapes) {
    auto it = weights.find(name);
    if (it == weights.end()) return absl::InvalidArgumentError(absl::StrCat("missing tensor '", name, "'"));
    if (it->second.dtype() != DataType::kFloat32) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' is ", graph::DataTypeName(it->second.dtype()),
                                                     ", expected float32"));
    }
    if (it->second.shape() != shape) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has shape ",
                                                     graph::ShapeToString(it->second.shape()), ", expected ",
                                                     graph::ShapeToString(shape)));
    }
  }
  for (const auto& [name, tensor] : weights) {
    if (shapes.count(name) == 0) return absl::InvalidArgumentError(absl::StrCat("unexpected tensor '", name, "'"));
  }
  graph::Graph graph = config.family == ModelFamily::kLlama ? BuildLlama(config, std::move(weights))
                                                            : BuildGpt2(config, std::move(weights));
  // Gives exports their intermediate shapes and checks the wiring above.
  SQ_RETURN_IF_ERROR(graph::InferShapes(&graph).status());
  return graph;
}

absl::StatusOr<HfCheckpoint> LoadHfCheckpoint(const std::string& dir) {
  const std::string config_path = dir + "/config.json";
  SQ_ASSIGN_OR_RETURN(std::string config_text, model::ReadFile(config_path));
  SQ_ASSIGN_OR_RETURN(HfConfig config, ParseHfConfig(config_text, config_path));

  // The shard files to read: the index's weight_map values, or the one file.
  std::vector<std::string> files;
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (std::filesystem::exists(index_path)) {
    SQ_ASSIGN_OR_RETURN(std::string index_text, model::ReadFile(index_path));
    auto index = model::ParseJson(index_text);
    if (!index.ok()) return absl::InvalidArgumentError(absl::StrCat(index_path, ": ", index.status().message()));
    const JsonValue* map = model::FindJsonMember(*index, "weight_map");
    if (map == nullptr || map->kind != JsonValue::Kind::kObject) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": \"weight_map\" is missing or not an object"));
    }
    for (const auto& [tensor, file] : map->object) {
      if (file.kind != JsonValue::Kind::kString || file.string_value.empty() ||
          file.string_value.find('/') != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map[\"", tensor,
                                                       "\"] must be a file name in the same directory"));
      }
      if (std::find(files.begin(), files.end(), file.string_value) == files.end()) files.push_back(file.string_value);
    }
  } else {
    files.push_back("model.safetensors");
  }

  std::map<std::string, Tensor> weights;
  for (const std::string& file : files) {
    const std::string path = dir + "/" + file;
    SQ_ASSIGN_OR_RETURN(model::SafetensorsFile contents, model::ReadSafetensorsFile(path));
    for (auto& [name, stored] : contents.tensors) {
      if (IsRecomputedBuffer(name)) continue;
      auto tensor = graph::FromModelTensor(stored);
      if (!tensor.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", name, "': ", tensor.status().message()));
      if (!graph::IsFloat(tensor->dtype())) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", name, "' is ",
                                                       graph::DataTypeName(tensor->dtype()), ", expected a float type"));
      }
      if (!weights.emplace(name, graph::CastTensor(*tensor, DataType::kFloat32)).second) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", name, "' also appears in another shard"));
      }
    }
  }
  if (config.family == ModelFamily::kGpt2 && weights.count("transformer.wte.weight") > 0) {
    config.tensor_prefix = "transformer.";
  }
  if (config.tie_word_embeddings) weights.erase("lm_head.weight");
  auto graph = BuildCausalLmGraph(config, std::move(weights));
  if (!graph.ok()) return absl::InvalidArgumentError(absl::StrCat(dir, ": ", graph.status().message()));
  return HfCheckpoint{config, *std::move(graph)};
}

std::set<std::string> CheckpointTensorNames(const graph::Graph& graph) {
  std::set<std::string> names;
  for (const auto& [name, tensor] : graph.initializers) {
    if (name.rfind(kDerivedPrefix, 0) != 0) names.insert(name);
  }
  return names;
}

absl::Status SaveHfCheckpoint(const HfConfig& config, const graph::Graph& graph, const std::string& dir,
                              const HfSaveOptions& options) {
  for (const auto& [name, shape] : CheckpointTensorShapes(config)) {
    if (graph.initializers.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("SaveHfCheckpoint: the graph has no initializer '", name, "'"));
    }
  }
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", error.message()));

  // Shards in name order, each up to max_shard_bytes.
  std::vector<model::SafetensorsFile> shards(1);
  int64_t shard_bytes = 0, total_bytes = 0;
  for (const std::string& name : CheckpointTensorNames(graph)) {
    SQ_ASSIGN_OR_RETURN(model::Tensor stored,
                        graph::ToModelTensor(graph::CastTensor(graph.initializers.at(name), DataType::kFloat32)));
    const int64_t bytes = static_cast<int64_t>(stored.data.size());
    if (shard_bytes > 0 && shard_bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shard_bytes += bytes;
    total_bytes += bytes;
    shards.back().tensors.emplace(name, std::move(stored));
  }
  for (auto& shard : shards) shard.metadata["format"] = "pt";
  SQ_RETURN_IF_ERROR(model::WriteFileAtomically(dir + "/config.json", HfConfigToJson(config)));
  if (shards.size() == 1) {
    // A stale index would take precedence over the new file when loading.
    std::filesystem::remove(dir + "/model.safetensors.index.json", error);
    return model::WriteFileAtomically(dir + "/model.safetensors", model::SerializeSafetensors(shards[0]));
  }
  std::string weight_map;
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string file = absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, shards.size());
    SQ_RETURN_IF_ERROR(model::WriteFileAtomically(dir + "/" + file, model::SerializeSafetensors(shards[i])));
    for (const auto& [name, tensor] : shards[i].tensors) {
      absl::StrAppend(&weight_map, weight_map.empty() ? "" : ",\n", "    ", model::JsonQuote(name), ": ",
                      model::JsonQuote(file));
    }
  }
  return model::WriteFileAtomically(
      dir + "/model.safetensors.index.json",
      absl::StrCat("{\n  \"metadata\": {\"total_size\": ", total_bytes, "},\n  \"weight_map\": {\n", weight_map,
                   "\n  }\n}\n"));
}

}  // namespace squeeze::core::hf
