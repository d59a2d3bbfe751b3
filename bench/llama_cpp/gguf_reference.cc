// squeeze-gguf-reference: what our side says about the reference LM, for
// bench/llama_cpp/check_gguf.mjs to compare with llama.cpp (scripts/check-gguf.sh).
// Writes one JSON file:
//   {"sentences": [{"text": T, "ids": [our BPE ids of T]}, ...],
//    "windows": [[context + 1 held-out token ids], ...], "prompt_tokens": P,
//    "runs": [{"name": N, "argmax": [[per position]], "target_logprob": [[...]],
//              "generated": [[greedy ids], ...]}, ...]}
// Run "fp32" is the checkpoint in our runtime; each --gguf file adds a run
// named after it: the file parsed back with ParseGguf, every tensor
// dequantized (DequantizeGgufTensor), q/k rows un-permuted, and run in our
// runtime, i.e. our simulation of exactly the weights llama.cpp loads.
// argmax[w][p] is the predicted id after window w's tokens 0..p;
// target_logprob[w][p] the natural log-probability of token p + 1.
// generated[g] continues the first --prompt_tokens tokens of window g
// greedily for --generate_tokens tokens (each step reruns the whole prefix:
// our runtime has no KV cache, so this also checks llama.cpp's incremental
// decoding).
//
//   squeeze-gguf-reference --model=deploy/models/lm --gguf=a.gguf,b.gguf --out=ref.json
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/graph/graph.h"
#include "core/hf/hf_checkpoint.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/model/file_io.h"
#include "core/quant/export/gguf.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"
#include "core/text/bpe_tokenizer.h"
#include "deploy/models/lm_corpus.h"

ABSL_FLAG(std::string, model, "deploy/models/lm", "LLaMA checkpoint directory (with vocab.json, merges.txt).");
ABSL_FLAG(std::string, lm_data_dir, "third_party/npm/node_modules/@stdlib", "The LM corpus (see train_lm).");
ABSL_FLAG(std::string, gguf, "", "Comma-separated GGUF files to simulate in our runtime.");
ABSL_FLAG(int64_t, windows, 16, "Held-out token windows, evenly spaced.");
ABSL_FLAG(int64_t, context, 128, "Tokens per window (the LM was trained at 128).");
ABSL_FLAG(int64_t, prompts, 4, "Greedy generations, from the first windows' starts.");
ABSL_FLAG(int64_t, prompt_tokens, 16, "Prompt length of each generation.");
ABSL_FLAG(int64_t, generate_tokens, 24, "Tokens generated greedily per prompt.");
ABSL_FLAG(int64_t, sentences, 24, "Held-out paragraphs whose tokenization is compared.");
ABSL_FLAG(std::string, out, "", "JSON file to write.");

namespace squeeze {
namespace {

using core::graph::DataType;
using core::graph::Tensor;
namespace qe = core::quant_export;

// Texts that exercise the pre-tokenizer's edge cases (contractions, digits,
// runs of spaces, newlines, tabs, non-ASCII letters and punctuation).
const char* const kEdgeCases[] = {
    "It's 1,234.56 dollars -- don't you think? We'll see; they'd've said 2024.",
    "  two  spaces,   three   spaces\n\nnew paragraph\n\ttabbed line \n",
    "Caf\xc3\xa9 na\xc3\xafve \xe2\x80\x94 \xe2\x80\x9cquoted\xe2\x80\x9d \xc3\x9c" "ber $100 & 50% (maybe).",
    "Mr. O'Neil's 'quoted' WORDS: CALL ME ISHMAEL!!! ...and then?",
};

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (const unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      out += absl::StrFormat("\\u%04x", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

template <typename T>
std::string JsonArray(const std::vector<T>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    absl::StrAppend(&out, i ? "," : "", values[i]);
  }
  return out + "]";
}

// Up to `count` held-out paragraphs, evenly spaced over the texts, each the
// first paragraph of at least 40 bytes, cut to at most 400 bytes at a space.
std::vector<std::string> HeldOutSentences(const std::vector<std::string>& held_out, int64_t count) {
  std::vector<std::string> out;
  const int64_t n = static_cast<int64_t>(held_out.size());
  for (int64_t i = 0; i < std::min(count, n); ++i) {
    const std::string& text = held_out[i * n / std::min(count, n)];
    for (absl::string_view para : absl::StrSplit(text, "\n\n")) {
      std::string p(para);
      if (p.size() < 40) continue;
      if (p.size() > 400) p = p.substr(0, p.rfind(' ', 400));
      out.push_back(p);
      break;
    }
  }
  for (const char* text : kEdgeCases) out.push_back(text);
  return out;
}

// Replaces the checkpoint's weights in `graph` by the dequantized tensors of
// the GGUF file at `path`.
absl::Status LoadGgufWeights(const std::string& path, const core::hf::HfConfig& c, core::graph::Graph* graph) {
  SQ_ASSIGN_OR_RETURN(std::string bytes, core::model::ReadFile(path));
  SQ_ASSIGN_OR_RETURN(qe::GgufFile file, qe::ParseGguf(bytes));
  std::vector<std::pair<std::string, std::string>> names = {
      {"token_embd.weight", "model.embed_tokens.weight"}, {"output_norm.weight", "model.norm.weight"}};
  if (!c.tie_word_embeddings) names.emplace_back("output.weight", "lm_head.weight");
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string b = absl::StrCat("blk.", i, "."), l = absl::StrCat("model.layers.", i, ".");
    for (const auto& [gguf, hf] : std::vector<std::pair<std::string, std::string>>{
             {"attn_norm", "input_layernorm"}, {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"},
             {"attn_v", "self_attn.v_proj"}, {"attn_output", "self_attn.o_proj"},
             {"ffn_norm", "post_attention_layernorm"}, {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"},
             {"ffn_down", "mlp.down_proj"}}) {
      names.emplace_back(b + gguf + ".weight", l + hf + ".weight");
    }
  }
  for (const auto& [gguf_name, hf_name] : names) {
    const qe::GgufTensor* t = file.FindTensor(gguf_name);
    auto it = graph->initializers.find(hf_name);
    if (t == nullptr || it == graph->initializers.end()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": no tensor ", gguf_name, " for ", hf_name));
    }
    SQ_ASSIGN_OR_RETURN(std::vector<float> w, qe::DequantizeGgufTensor(*t));
    if (static_cast<int64_t>(w.size()) != it->second.num_elements()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", gguf_name, " has ", w.size(), " values, want ",
                                                     it->second.num_elements()));
    }
    const int64_t rows = t->ne.size() == 2 ? t->ne[1] : 1, cols = t->ne[0];
    if (gguf_name.ends_with("attn_q.weight")) w = qe::UnpermuteFromGgufRope(w, rows, cols, c.num_heads);
    if (gguf_name.ends_with("attn_k.weight")) w = qe::UnpermuteFromGgufRope(w, rows, cols, c.num_kv_heads);
    it->second = Tensor::FromVector(DataType::kFloat32, it->second.shape(), w);
  }
  return absl::OkStatus();
}

// Argmax and target log-probability at every position of every window.
absl::Status Score(const core::graph::Graph& graph, const std::vector<std::vector<int64_t>>& windows,
                   std::vector<std::vector<int64_t>>* argmax, std::vector<std::vector<double>>* target_logprob) {
  SQ_ASSIGN_OR_RETURN(auto executor, core::runtime::Executor::Create(graph, core::kernels::cpu::CreateCpuBackend()));
  for (const std::vector<int64_t>& window : windows) {
    const int64_t context = static_cast<int64_t>(window.size()) - 1;
    Tensor inputs(DataType::kInt64, {1, context});
    std::copy_n(window.begin(), context, inputs.data<int64_t>());
    SQ_ASSIGN_OR_RETURN(auto outputs, executor.Run({{"input_ids", inputs}}));
    const Tensor& logits = outputs[0];
    const int64_t vocab = logits.shape().back();
    const float* l = logits.data<float>();
    std::vector<int64_t> best(context);
    std::vector<double> lp(context);
    for (int64_t p = 0; p < context; ++p) {
      const float* row = l + p * vocab;
      best[p] = std::max_element(row, row + vocab) - row;
      double sum = 0;
      for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - row[best[p]]);
      lp[p] = row[window[p + 1]] - row[best[p]] - std::log(sum);
    }
    argmax->push_back(std::move(best));
    target_logprob->push_back(std::move(lp));
  }
  return absl::OkStatus();
}

// Greedy continuations of the first `prompt_tokens` tokens of the first
// `prompts` windows.
absl::Status Generate(const core::graph::Graph& graph, const std::vector<std::vector<int64_t>>& windows,
                      int64_t prompts, int64_t prompt_tokens, int64_t generate_tokens,
                      std::vector<std::vector<int64_t>>* generated) {
  SQ_ASSIGN_OR_RETURN(auto executor, core::runtime::Executor::Create(graph, core::kernels::cpu::CreateCpuBackend()));
  for (int64_t g = 0; g < std::min<int64_t>(prompts, windows.size()); ++g) {
    std::vector<int64_t> ids(windows[g].begin(), windows[g].begin() + prompt_tokens);
    std::vector<int64_t> out;
    for (int64_t step = 0; step < generate_tokens; ++step) {
      const int64_t n = static_cast<int64_t>(ids.size());
      SQ_ASSIGN_OR_RETURN(auto outputs,
                          executor.Run({{"input_ids", Tensor::FromVector(DataType::kInt64, {1, n}, ids)}}));
      const int64_t vocab = outputs[0].shape().back();
      const float* last = outputs[0].data<float>() + (n - 1) * vocab;
      out.push_back(std::max_element(last, last + vocab) - last);
      ids.push_back(out.back());
    }
    generated->push_back(std::move(out));
  }
  return absl::OkStatus();
}

absl::Status Run() {
  const std::string dir = absl::GetFlag(FLAGS_model), out_path = absl::GetFlag(FLAGS_out);
  const int64_t context = absl::GetFlag(FLAGS_context), window_count = absl::GetFlag(FLAGS_windows);
  if (out_path.empty()) return absl::InvalidArgumentError("--out is required");
  const int64_t prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens),
                generate_tokens = absl::GetFlag(FLAGS_generate_tokens);
  if (context < 1 || window_count < 1) {
    return absl::InvalidArgumentError(absl::StrCat("--context and --windows must be positive, got ", context,
                                                   " and ", window_count));
  }

  SQ_ASSIGN_OR_RETURN(core::hf::HfCheckpoint checkpoint, core::hf::LoadHfCheckpoint(dir));
  if (prompt_tokens < 1 || prompt_tokens > context || generate_tokens < 0 ||
      prompt_tokens + generate_tokens > checkpoint.config.max_positions) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--prompt_tokens must be in [1, --context] and --prompt_tokens + --generate_tokens at most ",
        checkpoint.config.max_positions, ", got ", prompt_tokens, " and ", generate_tokens));
  }
  SQ_ASSIGN_OR_RETURN(auto tokenizer,
                      core::text::BpeTokenizer::FromVocabAndMerges(dir + "/vocab.json", dir + "/merges.txt"));
  SQ_ASSIGN_OR_RETURN(deploy::Corpus corpus, deploy::ReadCorpus(absl::GetFlag(FLAGS_lm_data_dir)));

  std::string json = "{\"sentences\": [";
  const std::vector<std::string> sentences = HeldOutSentences(corpus.held_out, absl::GetFlag(FLAGS_sentences));
  for (size_t i = 0; i < sentences.size(); ++i) {
    absl::StrAppend(&json, i ? ",\n" : "\n", "{\"text\": ", JsonString(sentences[i]),
                    ", \"ids\": ", JsonArray(tokenizer.Encode(sentences[i])), "}");
  }
  const std::vector<int64_t> tokens = deploy::Tokenize(corpus.held_out, tokenizer);
  const int64_t available = (static_cast<int64_t>(tokens.size()) - 1) / context;
  const int64_t count = std::min(available, window_count);
  std::vector<std::vector<int64_t>> windows;
  json += "],\n\"windows\": [";
  for (int64_t i = 0; i < count; ++i) {
    const int64_t start = i * available / count * context;
    windows.emplace_back(tokens.begin() + start, tokens.begin() + start + context + 1);
    absl::StrAppend(&json, i ? ",\n" : "\n", JsonArray(windows.back()));
  }
  absl::StrAppend(&json, "],\n\"prompt_tokens\": ", prompt_tokens, ",\n\"runs\": [");
  std::vector<std::string> runs = {"fp32"};
  for (absl::string_view path : absl::StrSplit(absl::GetFlag(FLAGS_gguf), ',', absl::SkipEmpty())) {
    runs.emplace_back(path);
  }
  for (size_t r = 0; r < runs.size(); ++r) {
    core::graph::Graph graph = checkpoint.graph;
    if (r > 0) SQ_RETURN_IF_ERROR(LoadGgufWeights(runs[r], checkpoint.config, &graph));
    std::vector<std::vector<int64_t>> argmax;
    std::vector<std::vector<double>> target_logprob;
    SQ_RETURN_IF_ERROR(Score(graph, windows, &argmax, &target_logprob));
    std::vector<std::vector<int64_t>> generated;
    SQ_RETURN_IF_ERROR(Generate(graph, windows, absl::GetFlag(FLAGS_prompts), prompt_tokens, generate_tokens,
                                &generated));
    absl::StrAppend(&json, r ? ",\n" : "\n", "{\"name\": ", JsonString(runs[r]), ", \"argmax\": [");
    for (size_t w = 0; w < argmax.size(); ++w) absl::StrAppend(&json, w ? "," : "", JsonArray(argmax[w]));
    json += "], \"target_logprob\": [";
    for (size_t w = 0; w < target_logprob.size(); ++w) {
      json += w ? ",[" : "[";
      for (size_t p = 0; p < target_logprob[w].size(); ++p) {
        absl::StrAppend(&json, p ? "," : "", absl::StrFormat("%.6f", target_logprob[w][p]));
      }
      json += "]";
    }
    json += "], \"generated\": [";
    for (size_t g = 0; g < generated.size(); ++g) absl::StrAppend(&json, g ? "," : "", JsonArray(generated[g]));
    json += "]}";
  }
  json += "\n]}\n";
  return core::model::WriteFileAtomically(out_path, json);
}

}  // namespace
}  // namespace squeeze

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = squeeze::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "squeeze-gguf-reference: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
