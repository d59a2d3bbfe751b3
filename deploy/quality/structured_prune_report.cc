// squeeze-structured-prune-report: structured pruning (core/prune) of the
// reference models, measured in one run on the same data, printed as
// markdown (also written to --out). docs/quality.md holds the latest run.
//
//   squeeze-structured-prune-report --out=/tmp/structured.md
//
// Fashion-MNIST CNN: each of --targets (fraction of the parameters
// removed) by each score (L1, L2, Taylor, combined 0.7 Taylor + 0.3
// activation variance) with sensitivity-allocated per-layer ratios, plus
// the combined score with uniform ratios and with --conv_ratios fixed;
// calibrated on --calibration_images training images drawn with --seed.
// The --recover_scores variants (and the two extra ones) are then recovered
// by output distillation from the dense model (--recovery_steps batches of
// --batch shuffled training images), saved as ONNX (--onnx_out prefix),
// reloaded and measured on all 10000 test images. Latency of every variant
// against the dense model: CPU runtime with --latency_threads threads,
// batch 1 and 64, median of interleaved runs in the same process.
//
// LM: 25% of the FFN neurons of every layer, separately 1 of 4 attention
// heads of every layer, and 1 of the 4 transformer blocks, removed by L1,
// Taylor and combined scores (no recovery); held-out perplexity over
// --eval_windows 128-token windows.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/data/dataset.h"
#include "core/data/idx.h"
#include "core/distill/distill.h"
#include "core/hf/hf_checkpoint.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/model/file_io.h"
#include "core/onnx/onnx_model.h"
#include "core/prune/structured.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"
#include "core/text/bpe_tokenizer.h"
#include "deploy/models/fashion_mnist_data.h"
#include "deploy/models/lm_corpus.h"

ABSL_FLAG(std::string, models_dir, "deploy/models", "The reference models.");
ABSL_FLAG(std::string, fashion_dir, "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX files.");
ABSL_FLAG(std::string, lm_data_dir, "third_party/npm/node_modules/@stdlib", "The LM corpus (see train_lm).");
ABSL_FLAG(std::string, only, "", "cnn or lm: measure one model only.");
ABSL_FLAG(int64_t, calibration_images, 512, "CNN calibration images (training split).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the calibration and training draws.");
ABSL_FLAG(std::string, targets, "0.5,0.75", "Fractions of the CNN's parameters removed.");
ABSL_FLAG(bool, uniform, true, "CNN variant: combined score, uniform ratios, the first target.");
ABSL_FLAG(std::string, mac_targets, "0.5", "CNN variants: combined score, sensitivity ratios, these fractions of "
          "the layer MACs removed.");
ABSL_FLAG(std::string, conv_ratios, "conv1.weight=0.25,conv2.weight=0.5",
          "An extra CNN variant: these fixed ratios plus sensitivity ratios for the rest ('' : none).");
ABSL_FLAG(std::string, scores, "l1,l2,taylor,combined", "CNN scores compared.");
ABSL_FLAG(std::string, recover_scores, "l1,taylor,combined", "CNN scores that also get recovery.");
ABSL_FLAG(int64_t, recovery_steps, 940, "Distillation steps per recovery (940 x 64 ~ one epoch).");
ABSL_FLAG(int64_t, batch, 64, "Recovery batch size.");
ABSL_FLAG(double, learning_rate, 1e-3, "Recovery peak AdamW learning rate.");
ABSL_FLAG(double, temperature, 4.0, "Distillation temperature.");
ABSL_FLAG(double, alpha, 0.7, "Weight of the KL term (1 - alpha on the hard labels).");
ABSL_FLAG(int, threads, 1, "CPU threads for recovery.");
ABSL_FLAG(int, latency_threads, 1, "CPU threads for the latency runs.");
ABSL_FLAG(int, latency_repeats, 101, "Latency repeats (batch 1; batch 64 uses a fifth).");
ABSL_FLAG(std::string, onnx_out, "/tmp/fashion_mnist_cnn_pruned", "Prefix of the recovered CNNs' ONNX files.");
ABSL_FLAG(int64_t, lm_calibration_windows, 16, "LM calibration windows of 128 tokens (training split).");
ABSL_FLAG(int64_t, eval_windows, 256, "Held-out LM windows scored (0: all).");
ABSL_FLAG(std::string, out, "", "Also write the markdown here.");

namespace squeeze::deploy {
namespace {

namespace distill = core::distill;
namespace prune = core::prune;
using core::graph::Graph;
using core::graph::Tensor;

constexpr int64_t kContext = 128;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

std::string LayerSummary(const prune::StructuredResult& result) {
  std::string text;
  for (const auto& layer : result.layers) {
    if (layer.units_after == layer.units_before) continue;
    absl::StrAppend(&text, text.empty() ? "" : ", ", layer.name, " ", layer.units_before, "->", layer.units_after);
    if (layer.kind != prune::GroupKind::kChannels) {
      absl::StrAppend(&text, " (removed ", absl::StrJoin(layer.removed_units, ","), ")");
    }
  }
  return text.empty() ? "none" : text;
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Median milliseconds of a and b at `batch`, runs interleaved.
absl::StatusOr<std::pair<double, double>> Latency(const Graph& a, const Graph& b, const Tensor& images, int repeats) {
  auto backend = core::kernels::cpu::CreateCpuBackend(absl::GetFlag(FLAGS_latency_threads));
  SQ_ASSIGN_OR_RETURN(auto run_a, core::runtime::Executor::Create(a, backend));
  SQ_ASSIGN_OR_RETURN(auto run_b, core::runtime::Executor::Create(b, backend));
  const std::map<std::string, Tensor> feeds{{"image", images}};
  std::vector<double> ta, tb;
  for (int r = 0; r < repeats + 3; ++r) {
    auto start = std::chrono::steady_clock::now();
    SQ_RETURN_IF_ERROR(run_a.Run(feeds).status());
    const double da = 1000 * Seconds(start);
    start = std::chrono::steady_clock::now();
    SQ_RETURN_IF_ERROR(run_b.Run(feeds).status());
    const double db = 1000 * Seconds(start);
    if (r >= 3) {  // warm-up
      ta.push_back(da);
      tb.push_back(db);
    }
  }
  return std::make_pair(Median(ta), Median(tb));
}

std::vector<std::string> Split(const std::string& list) {
  std::vector<std::string> parts;
  std::string part;
  for (char c : list + ",") {
    if (c == ',') {
      if (!part.empty()) parts.push_back(part);
      part.clear();
    } else {
      part += c;
    }
  }
  return parts;
}

absl::Status MeasureCnn(std::string* md) {
  const std::string dir = absl::GetFlag(FLAGS_fashion_dir);
  SQ_ASSIGN_OR_RETURN(core::data::Dataset train, core::data::ReadIdxDataset(dir + "/train-images-idx3-ubyte.gz",
                                                                           dir + "/train-labels-idx1-ubyte.gz"));
  SQ_ASSIGN_OR_RETURN(core::data::Dataset test, core::data::ReadIdxDataset(dir + "/t10k-images-idx3-ubyte.gz",
                                                                          dir + "/t10k-labels-idx1-ubyte.gz"));
  const std::string model_path = absl::GetFlag(FLAGS_models_dir) + "/fashion_mnist_cnn.onnx";
  SQ_ASSIGN_OR_RETURN(Graph dense, core::onnx::LoadOnnxModel(model_path));
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> labels, core::data::LabelsAsInt64(train));
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const std::vector<int64_t> order = core::data::ShuffledIndices(train.NumExamples(), seed);
  const int64_t count = std::min<int64_t>(absl::GetFlag(FLAGS_calibration_images), train.NumExamples());
  std::vector<prune::LabeledBatch> calibration;
  for (int64_t begin = 0; begin < count; begin += 128) {
    std::vector<int64_t> indices(order.begin() + begin, order.begin() + std::min(count, begin + 128));
    prune::LabeledBatch batch;
    batch.feeds["image"] = ImagesToTensor(train.inputs, indices);
    for (int64_t i : indices) batch.labels.push_back(labels[i]);
    calibration.push_back(std::move(batch));
  }
  // Recovery draws from a second seeded order of the whole training split.
  const std::vector<int64_t> train_order = core::data::ShuffledIndices(train.NumExamples(), seed + 1000);
  const int64_t recovery_batch = absl::GetFlag(FLAGS_batch);
  auto recovery_batches = [&](int64_t step) -> absl::StatusOr<distill::DistillBatch> {
    distill::DistillBatch batch;
    std::vector<int64_t> indices;
    for (int64_t i = 0; i < recovery_batch; ++i) {
      const int64_t k = train_order[(step * recovery_batch + i) % train_order.size()];
      indices.push_back(k);
      batch.labels.push_back(labels[k]);
    }
    batch.feeds["image"] = ImagesToTensor(train.inputs, indices);
    return batch;
  };

  SQ_ASSIGN_OR_RETURN(double dense_accuracy, Accuracy(dense, test));
  dense_accuracy *= 100;
  const int64_t dense_params = prune::CountParameters(dense);
  std::printf("CNN dense: %.2f%%, %lld parameters\n", dense_accuracy, static_cast<long long>(dense_params));
  std::fflush(stdout);

  struct Variant {
    std::string label, score;
    double target = 0.5;
    prune::RatioAllocation allocation = prune::RatioAllocation::kSensitivity;
    std::map<std::string, double> fixed;
    bool recover = false;
    prune::PruneCost cost = prune::PruneCost::kParameters;
  };
  std::vector<Variant> variants;
  const std::vector<std::string> recover = Split(absl::GetFlag(FLAGS_recover_scores));
  for (const std::string& target_text : Split(absl::GetFlag(FLAGS_targets))) {
    double target = 0;
    if (!absl::SimpleAtod(target_text, &target)) return absl::InvalidArgumentError("--targets: " + target_text);
    for (const std::string& score : Split(absl::GetFlag(FLAGS_scores))) {
      const bool rec = std::find(recover.begin(), recover.end(), score) != recover.end();
      variants.push_back({absl::StrCat(score, ", sensitivity ratios"), score, target,
                          prune::RatioAllocation::kSensitivity, {}, rec});
    }
  }
  const double first_target = variants.empty() ? 0.5 : variants.front().target;
  if (absl::GetFlag(FLAGS_uniform)) {
    variants.push_back({"combined, uniform ratios", "combined", first_target, prune::RatioAllocation::kUniform, {},
                        true});
  }
  for (const std::string& target_text : Split(absl::GetFlag(FLAGS_mac_targets))) {
    double target = 0;
    if (!absl::SimpleAtod(target_text, &target)) return absl::InvalidArgumentError("--mac_targets: " + target_text);
    variants.push_back({absl::StrFormat("combined, sensitivity ratios, %.0f%% of the MACs", 100 * target), "combined",
                        target, prune::RatioAllocation::kSensitivity, {}, true, prune::PruneCost::kMacs});
  }
  if (!absl::GetFlag(FLAGS_conv_ratios).empty()) {
    Variant v{"", "combined", first_target, prune::RatioAllocation::kSensitivity, {}, true};
    for (const std::string& item : Split(absl::GetFlag(FLAGS_conv_ratios))) {
      const size_t eq = item.find('=');
      double ratio = 0;
      if (eq == std::string::npos || !absl::SimpleAtod(item.substr(eq + 1), &ratio)) {
        return absl::InvalidArgumentError("--conv_ratios: " + item);
      }
      v.fixed[item.substr(0, eq)] = ratio;
    }
    v.label = absl::StrCat("combined, fixed ", absl::GetFlag(FLAGS_conv_ratios), " + sensitivity ratios");
    variants.push_back(v);
  }

  struct Row {
    std::string method;
    double target = 0;
    int64_t params = 0;
    double pruned = 0, recovered = -1;
    double prune_seconds = 0, recovery_seconds = 0;
    std::string layers;
    double speedup1 = 0, speedup64 = 0;
    int64_t onnx_bytes = 0;
  };
  std::vector<Row> rows;
  // Recovery: output distillation through core/distill (output stage only)
  // with the flags' loss alpha KL(T) + (1 - alpha) CE. core/distill
  // minimizes KL + w CE, so w = (1 - alpha) / alpha; the losses printed are
  // scaled back by alpha, and the gradient clip (5 on the flags' loss) by
  // 1 / alpha.
  const double alpha = absl::GetFlag(FLAGS_alpha);
  if (!(alpha > 0 && alpha <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("--alpha must be in (0, 1], got ", alpha));
  }
  if (absl::GetFlag(FLAGS_recovery_steps) < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--recovery_steps must be >= 1, got ", absl::GetFlag(FLAGS_recovery_steps)));
  }
  distill::DistillOptions recovery;
  recovery.output.steps = absl::GetFlag(FLAGS_recovery_steps);
  recovery.output.learning_rate = absl::GetFlag(FLAGS_learning_rate);
  recovery.temperature = absl::GetFlag(FLAGS_temperature);
  recovery.hard_label_weight = (1 - alpha) / alpha;
  recovery.clip_norm = 5.0 / alpha;
  recovery.backend = core::kernels::cpu::CreateCpuBackend(absl::GetFlag(FLAGS_threads));
  const int repeats = absl::GetFlag(FLAGS_latency_repeats);
  std::map<int64_t, Tensor> latency_images;
  for (int64_t batch : {1, 64}) {
    std::vector<int64_t> indices;
    for (int64_t i = 0; i < batch; ++i) indices.push_back(i);
    latency_images[batch] = ImagesToTensor(test.inputs, indices);
  }
  std::string skipped, latency_notes, onnx_notes;
  const auto dense_bytes = static_cast<int64_t>(std::filesystem::file_size(model_path));
  for (size_t vi = 0; vi < variants.size(); ++vi) {
    const Variant& variant = variants[vi];
    SQ_ASSIGN_OR_RETURN(prune::StructuredScore score, prune::ParseStructuredScore(variant.score));
    prune::StructuredOptions options;
    options.target = variant.target;
    options.score = score;
    options.allocation = variant.allocation;
    options.layer_ratios = variant.fixed;
    options.cost = variant.cost;
    auto start = std::chrono::steady_clock::now();
    SQ_ASSIGN_OR_RETURN(prune::StructuredResult result, prune::PruneStructured(dense, calibration, options));
    Row row;
    row.method = variant.label;
    row.target = variant.target;
    row.prune_seconds = Seconds(start);
    row.params = result.params_after;
    row.layers = LayerSummary(result);
    SQ_ASSIGN_OR_RETURN(row.pruned, Accuracy(result.graph, test));
    row.pruned *= 100;
    if (skipped.empty()) {
      for (const auto& [name, reason] : result.skipped) absl::StrAppend(&skipped, "`", name, "` (", reason, ") ");
    }
    std::printf("CNN target %.2f %s: %lld params (%.1f%% removed), layers %s, pruned %.2f%% (%.1f s)\n",
                variant.target, row.method.c_str(), static_cast<long long>(row.params),
                100.0 * (1 - static_cast<double>(row.params) / dense_params), row.layers.c_str(), row.pruned,
                row.prune_seconds);
    std::fflush(stdout);
    if (variant.recover) {
      start = std::chrono::steady_clock::now();
      SQ_ASSIGN_OR_RETURN(distill::DistillResult recovered,
                          distill::Distill(dense, result.graph, recovery_batches, recovery,
                                           [&](const distill::DistillProgress& p) {
                                             if ((p.step - 1) % 100 == 0) {
                                               std::fprintf(stderr, "\r%s step %lld/%lld loss %.4f",
                                                            variant.label.c_str(), static_cast<long long>(p.step - 1),
                                                            static_cast<long long>(p.total), alpha * p.loss);
                                             }
                                             return true;
                                           }));
      std::fprintf(stderr, "\n");
      result.graph = std::move(recovered.student);
      // Mean loss over the first and last 10% of the steps.
      const std::vector<double>& losses = recovered.curves.back().losses;
      const auto n = static_cast<int64_t>(losses.size());
      const int64_t window = std::max<int64_t>(1, n / 10);
      double first_loss = 0, last_loss = 0;
      for (int64_t i = 0; i < window; ++i) {
        first_loss += alpha * losses[i] / static_cast<double>(window);
        last_loss += alpha * losses[n - 1 - i] / static_cast<double>(window);
      }
      row.recovery_seconds = Seconds(start);
      SQ_ASSIGN_OR_RETURN(row.recovered, Accuracy(result.graph, test));
      row.recovered *= 100;
      std::printf("  recovered: %.2f%% (loss %.4f -> %.4f, %.0f s)\n", row.recovered, first_loss, last_loss,
                  row.recovery_seconds);
      // The recovered graph as ONNX, reloaded and scored again.
      const std::string path = absl::StrCat(absl::GetFlag(FLAGS_onnx_out), "_", vi, ".onnx");
      SQ_RETURN_IF_ERROR(core::onnx::SaveOnnxModel(result.graph, path));
      row.onnx_bytes = static_cast<int64_t>(std::filesystem::file_size(path));
      SQ_ASSIGN_OR_RETURN(Graph reloaded, core::onnx::LoadOnnxModel(path));
      SQ_ASSIGN_OR_RETURN(double reloaded_accuracy, Accuracy(reloaded, test));
      absl::StrAppend(&onnx_notes, absl::StrFormat("  - %s (target %.2f): `%s` %d bytes (%.1f%% of the dense file); "
                                                   "reloaded from the file: %.2f%%\n",
                                                   row.method, variant.target, path, row.onnx_bytes,
                                                   100.0 * row.onnx_bytes / dense_bytes, 100 * reloaded_accuracy));
    }
    for (int64_t batch : {1, 64}) {
      const int n = batch == 1 ? repeats : std::max(5, repeats / 5);
      SQ_ASSIGN_OR_RETURN(auto ms, Latency(dense, result.graph, latency_images[batch], n));
      (batch == 1 ? row.speedup1 : row.speedup64) = ms.first / ms.second;
      absl::StrAppend(&latency_notes,
                      absl::StrFormat("  - %s (target %.2f), batch %d: dense %.3f ms, pruned %.3f ms (median of %d)\n",
                                      row.method, variant.target, batch, ms.first, ms.second, n));
    }
    std::printf("  latency speed-up: batch 1 %.2fx, batch 64 %.2fx\n", row.speedup1, row.speedup64);
    std::fflush(stdout);
    rows.push_back(row);
  }

  auto speed = [](double s) { return absl::StrFormat("%.2fx%s", s, s > 1.0 ? "" : " (NOT faster)"); };
  absl::StrAppend(md, "### Fashion-MNIST CNN\n\n");
  absl::StrAppend(md, absl::StrFormat("Dense: %.2f%% test accuracy (all 10000 test images), %d parameters, ONNX file "
                                      "%d bytes.\n\n",
                                      dense_accuracy, dense_params, dense_bytes));
  absl::StrAppend(md, "| target | score, ratios | params | removed | kept (changed layers) | pruned acc % | change | "
                      "recovered acc % | change | speed-up b1 | speed-up b64 |\n"
                      "|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    absl::StrAppend(md, absl::StrFormat("| %.2f | %s | %d | %.1f%% | %s | %.2f | %+.2f | %s | %s | %s | %s |\n",
                                        r.target, r.method, r.params,
                                        100.0 * (1 - static_cast<double>(r.params) / dense_params), r.layers, r.pruned,
                                        r.pruned - dense_accuracy,
                                        r.recovered < 0 ? "-" : absl::StrFormat("%.2f", r.recovered),
                                        r.recovered < 0 ? "-" : absl::StrFormat("%+.2f", r.recovered - dense_accuracy),
                                        speed(r.speedup1), speed(r.speedup64)));
  }
  absl::StrAppend(md, absl::StrFormat(
                          "\n- Left dense: %s\n- Recovery (core/distill, output stage): %d steps of %d training "
                          "images (%.2f epochs), AdamW lr %g cosine-decayed to 10%%, loss %.2f x KL(T=%g) + %.2f x "
                          "cross-entropy, %d thread(s).\n",
                          skipped, recovery.output.steps, recovery_batch,
                          static_cast<double>(recovery.output.steps * recovery_batch) / train.NumExamples(),
                          recovery.output.learning_rate, alpha, recovery.temperature, 1 - alpha,
                          absl::GetFlag(FLAGS_threads)));
  absl::StrAppend(md, absl::StrFormat("- Latency: CPU runtime (core/runtime Executor), %d thread(s), dense and pruned "
                                      "runs interleaved in this process, median:\n%s",
                                      absl::GetFlag(FLAGS_latency_threads), latency_notes));
  absl::StrAppend(md, "- ONNX files of the recovered models (core/onnx writer):\n", onnx_notes);
  return absl::OkStatus();
}

absl::Status MeasureLm(std::string* md) {
  const std::string dir = absl::GetFlag(FLAGS_models_dir) + "/lm";
  SQ_ASSIGN_OR_RETURN(core::hf::HfCheckpoint checkpoint, core::hf::LoadHfCheckpoint(dir));
  SQ_ASSIGN_OR_RETURN(core::text::BpeTokenizer tokenizer,
                      core::text::BpeTokenizer::FromVocabAndMerges(dir + "/vocab.json", dir + "/merges.txt"));
  SQ_ASSIGN_OR_RETURN(Corpus corpus, ReadCorpus(absl::GetFlag(FLAGS_lm_data_dir)));
  const std::vector<int64_t> train_tokens = Tokenize(corpus.train, tokenizer);
  const std::vector<int64_t> held_out = Tokenize(corpus.held_out, tokenizer);
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  std::uniform_int_distribution<int64_t> window_start(0, static_cast<int64_t>(train_tokens.size()) - kContext - 2);
  std::vector<prune::LabeledBatch> calibration;
  for (int64_t i = 0; i < absl::GetFlag(FLAGS_lm_calibration_windows); i += 8) {
    std::vector<int64_t> starts;
    for (int64_t j = 0; j < 8; ++j) starts.push_back(window_start(rng));
    auto [inputs, targets] = Windows(train_tokens, starts, kContext);
    calibration.push_back({{{"input_ids", inputs}}, std::move(targets)});
  }
  const int64_t eval_windows = absl::GetFlag(FLAGS_eval_windows);
  auto perplexity = [&](const Graph& g) -> absl::StatusOr<double> {
    SQ_ASSIGN_OR_RETURN(auto report, HeldOutPerplexity(g, held_out, kContext, eval_windows, 8));
    return report.perplexity;
  };
  const Graph& dense = checkpoint.graph;
  SQ_ASSIGN_OR_RETURN(double base, perplexity(dense));
  const int64_t dense_params = prune::CountParameters(dense);
  std::printf("LM dense: ppl %.2f, %lld parameters\n", base, static_cast<long long>(dense_params));
  std::fflush(stdout);
  absl::StrAppend(md, absl::StrFormat("\n### LLaMA LM (deploy/models/lm)\n\nDense: held-out perplexity %.2f over %s "
                                      "128-token windows, %d parameters. No recovery.\n\n"
                                      "| removed | score | params | ppl | change | units removed |\n"
                                      "|---|---|---|---|---|---|\n",
                                      base, eval_windows == 0 ? std::string("all") : absl::StrCat(eval_windows),
                                      dense_params));
  SQ_ASSIGN_OR_RETURN(std::vector<prune::PruneGroup> groups, prune::FindPruneGroups(dense));
  for (const std::string kind : {"25% FFN neurons per layer", "1 of 4 heads per layer", "1 of 4 blocks"}) {
    prune::StructuredOptions options;
    options.target = 0;
    for (const auto& g : groups) {
      const bool ffn = absl::StrContains(g.name, "mlp.gate_proj");
      const bool heads = g.kind == prune::GroupKind::kHeads;
      const bool blocks = g.kind == prune::GroupKind::kBlocks;
      if (g.prunable && (kind[0] == '2' ? ffn : kind[7] == 'h' ? heads : blocks)) options.layer_ratios[g.name] = 0.25;
    }
    for (const std::string score_name : {"l1", "taylor", "combined"}) {
      SQ_ASSIGN_OR_RETURN(options.score, prune::ParseStructuredScore(score_name));
      SQ_ASSIGN_OR_RETURN(prune::StructuredResult result, prune::PruneStructured(dense, calibration, options));
      SQ_ASSIGN_OR_RETURN(double ppl, perplexity(result.graph));
      std::printf("LM %s, %s: ppl %.2f, %lld params (%s)\n", kind.c_str(), score_name.c_str(), ppl,
                  static_cast<long long>(result.params_after), LayerSummary(result).c_str());
      std::fflush(stdout);
      std::string removed_text;
      for (const auto& layer : result.layers) {
        if (layer.kind == prune::GroupKind::kChannels || layer.removed_units.empty()) continue;
        absl::StrAppend(&removed_text, removed_text.empty() ? "" : "; ",
                        layer.name, " ", absl::StrJoin(layer.removed_units, ","));
      }
      absl::StrAppend(md, absl::StrFormat("| %s | %s | %d | %.2f | %+.1f%% | %s |\n", kind, score_name,
                                          result.params_after, ppl, 100 * (ppl / base - 1),
                                          removed_text.empty() ? "-" : removed_text));
    }
  }
  return absl::OkStatus();
}

absl::Status Main() {
  std::string md = "## Structured pruning (issue 5)\n\n";
  const std::string only = absl::GetFlag(FLAGS_only);
  if (only.empty() || only == "cnn") SQ_RETURN_IF_ERROR(MeasureCnn(&md));
  if (only.empty() || only == "lm") SQ_RETURN_IF_ERROR(MeasureLm(&md));
  std::printf("\n%s", md.c_str());
  if (!absl::GetFlag(FLAGS_out).empty()) {
    SQ_RETURN_IF_ERROR(core::model::WriteFileAtomically(absl::GetFlag(FLAGS_out), md));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace squeeze::deploy

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::Status status = squeeze::deploy::Main();
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
