// squeeze-quality-report: measures the reference models (deploy/models)
// before and after each post-training quantization method of
// core/quant/ptq, on the same data, and prints a markdown table (also
// written to --out). docs/quality.md holds the latest run.
//
//   squeeze-quality-report --out=/tmp/quality.md
//
// Fashion-MNIST CNN and MLP: test accuracy on all 10000 test images;
// calibration on --calibration_images training images drawn with --seed.
// LM: held-out perplexity on --eval_windows evenly spaced 128-token windows
// of the held-out split (the same windows for every method); calibration
// on --lm_calibration_windows random training windows drawn with --seed.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/data/idx.h"
#include "core/hf/hf_checkpoint.h"
#include "core/model/file_io.h"
#include "core/onnx/onnx_model.h"
#include "core/quant/codebook/kmeans_codebook.h"
#include "core/quant/mixed/mixed_precision.h"
#include "core/quant/ptq/ptq.h"
#include "core/status_macros.h"
#include "deploy/models/fashion_mnist_data.h"
#include "deploy/models/lm_corpus.h"

ABSL_FLAG(std::string, models_dir, "deploy/models", "The reference models.");
ABSL_FLAG(std::string, fashion_dir, "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX files.");
ABSL_FLAG(std::string, lm_data_dir, "third_party/npm/node_modules/@stdlib", "The LM corpus (see train_lm).");
ABSL_FLAG(int64_t, calibration_images, 512, "Fashion-MNIST calibration images (training split).");
ABSL_FLAG(int64_t, lm_calibration_windows, 32, "LM calibration windows of 128 tokens (training split).");
ABSL_FLAG(int64_t, eval_windows, 256, "Held-out LM windows scored (0: all).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the calibration draws.");
ABSL_FLAG(std::string, only, "", "cnn, mlp or lm: measure one model only.");
ABSL_FLAG(std::string, out, "", "Also write the markdown here.");
ABSL_FLAG(bool, storage_sections, true, "Also measure k-means codebooks and mixed precision at equal storage.");
ABSL_FLAG(int64_t, sensitivity_batches, 2, "Calibration batches the Hessian traces are estimated on.");
ABSL_FLAG(int, kmeans_seeds, 5, "k-means++ seeds the per-layer codebook is also drawn with (the spread).");
ABSL_FLAG(int, hutchinson_probes, 4, "Rademacher probes of the Hutchinson trace estimator.");

namespace squeeze::deploy {
namespace {

namespace ptq = core::quant::ptq;
namespace mixed = core::quant::mixed;
using core::graph::Graph;
using core::quant::CastQuantize;
using core::quant::FloatFormat;
using core::quant::FloatFormatName;

constexpr int64_t kContext = 128;

struct Row {
  std::string model, method, metric;
  double value = 0, baseline = 0;
  double seconds = 0;
  bool higher_is_better = true;
};

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// The largest power of two in [8, cap] dividing every layer's input width;
// 0 (per channel) when none does.
int LargestGroup(const Graph& graph, int cap) {
  auto scan = ptq::FindQuantizableLayers(graph);
  if (!scan.ok()) return 0;
  for (int g = cap; g >= 8; g /= 2) {
    bool fits = true;
    for (const auto& layer : scan->layers) fits = fits && layer.in % g == 0;
    if (fits) return g;
  }
  return 0;
}

ptq::PtqOptions WeightOnly(ptq::WeightMethod method, int bits, int group) {
  ptq::PtqOptions options;
  options.weights.emplace();
  options.weights->method = method;
  options.weights->format = {bits, group, false};
  return options;
}

ptq::PtqOptions W8A8(ptq::Observer observer, bool smooth) {
  ptq::PtqOptions options = WeightOnly(ptq::WeightMethod::kRtn, 8, 0);
  options.activations = ptq::ActivationQuantization{observer, 99.99};
  options.smoothquant = smooth;
  return options;
}

std::string GroupName(int group) { return group == 0 ? "per-channel" : absl::StrCat("g", group); }

struct Method {
  std::string name;
  ptq::PtqOptions options;
};

// Quantizes `graph` with each method and measures `metric` on the result.
template <typename Metric>
absl::Status Measure(const std::string& model, const Graph& graph, const std::vector<ptq::CalibrationBatch>& batches,
                     const std::vector<Method>& methods, const std::string& metric_name, bool higher_is_better,
                     Metric metric, std::vector<Row>* rows) {
  auto start = std::chrono::steady_clock::now();
  SQ_ASSIGN_OR_RETURN(double baseline, metric(graph));
  rows->push_back({model, "fp32", metric_name, baseline, baseline, Seconds(start), higher_is_better});
  std::printf("%s fp32: %s %.4f\n", model.c_str(), metric_name.c_str(), baseline);
  std::fflush(stdout);
  for (const Method& method : methods) {
    start = std::chrono::steady_clock::now();
    SQ_ASSIGN_OR_RETURN(ptq::PtqResult result,
                        ptq::QuantizeGraph(graph, batches, method.options, [&](int i, int n) {
                          std::fprintf(stderr, "\r%s %s: layer %d of %d", model.c_str(), method.name.c_str(), i + 1,
                                       n);
                          return true;
                        }));
    const double quantize_seconds = Seconds(start);
    SQ_ASSIGN_OR_RETURN(double value, metric(result.graph));
    rows->push_back({model, method.name, metric_name, value, baseline, quantize_seconds, higher_is_better});
    std::string alphas;
    for (const auto& layer : result.layers) {
      if (layer.awq_alpha >= 0) absl::StrAppend(&alphas, alphas.empty() ? "" : ",", absl::StrFormat("%.2f", layer.awq_alpha));
    }
    std::fprintf(stderr, "\n");
    std::printf("%s %s: %s %.4f (quantized in %.1f s, %zu layers, %zu left in float)%s\n", model.c_str(),
                method.name.c_str(), metric_name.c_str(), value, quantize_seconds, result.layers.size(),
                result.skipped.size(), alphas.empty() ? "" : absl::StrCat(" awq alphas ", alphas).c_str());
    // Activation ranges per layer: how far each observer clips.
    for (const auto& layer : result.layers) {
      if (layer.activation_scale <= 0) continue;
      const bool is_unsigned = absl::StrContains(layer.technique, "a8u");
      std::printf("  %s: %s, activation threshold %.4g\n", layer.name.c_str(), layer.technique.c_str(),
                  layer.activation_scale * (is_unsigned ? 255.0 : 127.0));
    }
    std::fflush(stdout);
  }
  // Weight casts to the float formats (fake-quantized: every quantizable
  // layer's weight rounded to the format and back, activations float).
  SQ_ASSIGN_OR_RETURN(ptq::LayerScan scan, ptq::FindQuantizableLayers(graph));
  for (FloatFormat format : {FloatFormat::kFloat16, FloatFormat::kBFloat16, FloatFormat::kFp8E4M3,
                             FloatFormat::kFp8E5M2}) {
    const auto cast_start = std::chrono::steady_clock::now();
    Graph cast = graph;
    for (const ptq::QuantizableLayer& layer : scan.layers) {
      std::vector<float> w = ptq::WeightMatrix(cast, layer);
      CastQuantize(format, &w);
      ptq::SetWeightMatrix(&cast, layer, w);
    }
    const double cast_seconds = Seconds(cast_start);
    SQ_ASSIGN_OR_RETURN(double value, metric(cast));
    const std::string name = absl::StrCat("W ", FloatFormatName(format), " cast");
    rows->push_back({model, name, metric_name, value, baseline, cast_seconds, higher_is_better});
    std::printf("%s %s: %s %.4f\n", model.c_str(), name.c_str(), metric_name.c_str(), value);
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

struct FashionInputs {
  core::data::Dataset train, test;
  Graph graph;
  std::vector<ptq::CalibrationBatch> batches;
  std::vector<std::vector<int64_t>> batch_labels;  // the training labels of each batch
};

absl::StatusOr<FashionInputs> LoadFashion(const std::string& kind) {
  const std::string dir = absl::GetFlag(FLAGS_fashion_dir);
  FashionInputs in;
  SQ_ASSIGN_OR_RETURN(in.train, core::data::ReadIdxDataset(dir + "/train-images-idx3-ubyte.gz",
                                                          dir + "/train-labels-idx1-ubyte.gz"));
  SQ_ASSIGN_OR_RETURN(in.test, core::data::ReadIdxDataset(dir + "/t10k-images-idx3-ubyte.gz",
                                                         dir + "/t10k-labels-idx1-ubyte.gz"));
  SQ_ASSIGN_OR_RETURN(in.graph,
                      core::onnx::LoadOnnxModel(absl::GetFlag(FLAGS_models_dir) + "/fashion_mnist_" + kind + ".onnx"));
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> labels, core::data::LabelsAsInt64(in.train));
  const std::vector<int64_t> order = core::data::ShuffledIndices(in.train.NumExamples(), absl::GetFlag(FLAGS_seed));
  const int64_t count = std::min<int64_t>(absl::GetFlag(FLAGS_calibration_images), in.train.NumExamples());
  for (int64_t begin = 0; begin < count; begin += 128) {
    std::vector<int64_t> indices(order.begin() + begin, order.begin() + std::min(count, begin + 128));
    in.batches.push_back({{"image", ImagesToTensor(in.train.inputs, indices)}});
    in.batch_labels.emplace_back();
    for (int64_t i : indices) in.batch_labels.back().push_back(labels[i]);
  }
  return in;
}

absl::Status MeasureFashion(const std::string& kind, const FashionInputs& in, std::vector<Row>* rows,
                            std::vector<std::string>* notes) {
  const Graph& graph = in.graph;
  const core::data::Dataset& test = in.test;
  const std::vector<ptq::CalibrationBatch>& batches = in.batches;
  const int group = LargestGroup(graph, 128);
  notes->push_back(absl::StrCat(kind, ": 4-bit group size ", GroupName(group),
                                " (the largest power of two >= 8 dividing every layer's input width)"));
  std::vector<Method> methods;
  for (auto observer : {ptq::Observer::kMinMax, ptq::Observer::kPercentile, ptq::Observer::kMse,
                        ptq::Observer::kEntropy}) {
    methods.push_back({absl::StrCat("W8A8 static, ", ptq::ObserverName(observer)), W8A8(observer, false)});
  }
  methods.push_back({"W8A8 SmoothQuant a=0.5, minmax", W8A8(ptq::Observer::kMinMax, true)});
  for (auto method : {ptq::WeightMethod::kRtn, ptq::WeightMethod::kGptq, ptq::WeightMethod::kAwq}) {
    methods.push_back({absl::StrCat("W4 ", ptq::WeightMethodName(method), " ", GroupName(group)),
                       WeightOnly(method, 4, group)});
  }
  const std::string model = absl::StrCat("Fashion-MNIST ", kind == "cnn" ? "CNN" : "MLP");
  return Measure(model, graph, batches, methods, "test accuracy %", true,
                 [&test](const Graph& g) -> absl::StatusOr<double> {
                   SQ_ASSIGN_OR_RETURN(double accuracy, Accuracy(g, test));
                   return 100 * accuracy;
                 },
                 rows);
}

struct LmInputs {
  core::hf::HfCheckpoint checkpoint;
  std::vector<int64_t> held_out;
  std::vector<ptq::CalibrationBatch> batches;
  std::vector<std::vector<int64_t>> batch_targets;  // next tokens of each batch
};

absl::StatusOr<LmInputs> LoadLm() {
  const std::string dir = absl::GetFlag(FLAGS_models_dir) + "/lm";
  LmInputs in;
  SQ_ASSIGN_OR_RETURN(in.checkpoint, core::hf::LoadHfCheckpoint(dir));
  SQ_ASSIGN_OR_RETURN(core::text::BpeTokenizer tokenizer,
                      core::text::BpeTokenizer::FromVocabAndMerges(dir + "/vocab.json", dir + "/merges.txt"));
  SQ_ASSIGN_OR_RETURN(Corpus corpus, ReadCorpus(absl::GetFlag(FLAGS_lm_data_dir)));
  const std::vector<int64_t> train_tokens = Tokenize(corpus.train, tokenizer);
  in.held_out = Tokenize(corpus.held_out, tokenizer);
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  std::uniform_int_distribution<int64_t> window_start(0, static_cast<int64_t>(train_tokens.size()) - kContext - 2);
  for (int64_t i = 0; i < absl::GetFlag(FLAGS_lm_calibration_windows); i += 8) {
    std::vector<int64_t> starts;
    for (int64_t j = 0; j < 8; ++j) starts.push_back(window_start(rng));
    auto [inputs, targets] = Windows(train_tokens, starts, kContext);
    in.batches.push_back({{"input_ids", inputs}});
    in.batch_targets.push_back(std::move(targets));
  }
  return in;
}

absl::Status MeasureLm(const LmInputs& in, std::vector<Row>* rows, std::vector<std::string>* notes) {
  const core::hf::HfCheckpoint& checkpoint = in.checkpoint;
  const std::vector<int64_t>& held_out = in.held_out;
  const std::vector<ptq::CalibrationBatch>& batches = in.batches;
  const int group = LargestGroup(checkpoint.graph, 128);
  const int64_t eval_windows = absl::GetFlag(FLAGS_eval_windows);
  notes->push_back(absl::StrCat("LM: 4-bit group size ", GroupName(group), "; perplexity over ",
                                eval_windows == 0 ? std::string("all") : absl::StrCat(eval_windows),
                                " evenly spaced 128-token held-out windows (train_lm's split and windows); "
                                "the tied embedding / LM head stays float"));
  std::vector<Method> methods;
  for (auto method : {ptq::WeightMethod::kRtn, ptq::WeightMethod::kGptq, ptq::WeightMethod::kAwq}) {
    methods.push_back({absl::StrCat("W4 ", ptq::WeightMethodName(method), " ", GroupName(group)),
                       WeightOnly(method, 4, group)});
  }
  methods.push_back({"W8 rtn per-channel", WeightOnly(ptq::WeightMethod::kRtn, 8, 0)});
  return Measure("LLaMA LM", checkpoint.graph, batches, methods, "held-out perplexity", false,
                 [&](const Graph& g) -> absl::StatusOr<double> {
                   SQ_ASSIGN_OR_RETURN(auto report, HeldOutPerplexity(g, held_out, kContext, eval_windows, 8));
                   return report.perplexity;
                 },
                 rows);
}

// The equal-storage section: k-means codebooks against uniform per-channel
// RTN at the same index bits, and mixed precision against uniform widths at
// the same size. Sizes are of the quantized layers' weights only (indices
// plus scales or codebooks, nominal bits; biases and unquantized tensors
// excluded), so "avg bits" is bits per quantized weight.
//
// A classifier's score also keeps its logits and per-image correctness:
// the fidelity to the fp32 model (top-1 agreement, mean KL(p_fp32 || p_q))
// and McNemar's exact test between two variants do not depend on the few
// test images whose label flips by chance, which decide accuracy gaps of
// 0.1-0.2 points at 4 bits.
struct Score {
  double value = 0;
  std::vector<float> logits;  // [images, classes]; empty for the LM
  std::vector<bool> correct;  // per image; empty for the LM
};

struct SizedRow {
  std::string model, method, metric;
  double value = 0, baseline = 0;
  int64_t bytes = 0;
  double average_bits = 0;
  double seconds = 0;
  bool higher_is_better = true;
  double agreement = NAN;  // % of images with the fp32 model's top-1
  double kl = NAN;         // mean KL(p_fp32 || p_variant), nats
  std::vector<bool> correct;
};

bool Better(const SizedRow& a, const SizedRow& b) {
  return a.higher_is_better ? a.value > b.value : a.value < b.value;
}

std::string Change(const SizedRow& row) {
  return row.higher_is_better ? absl::StrFormat("%+.2f points", row.value - row.baseline)
                              : absl::StrFormat("%+.2f%%", 100 * (row.value / row.baseline - 1));
}

// Two-sided exact McNemar p-value for b images only the first variant gets
// right and c only the second: 2 P(X <= min(b, c)), X ~ Binomial(b + c, 1/2).
double McNemarP(int64_t b, int64_t c) {
  const int64_t n = b + c;
  if (n == 0) return 1.0;
  double tail = 0;
  for (int64_t k = 0; k <= std::min(b, c); ++k) {
    tail += std::exp(std::lgamma(n + 1.0) - std::lgamma(k + 1.0) - std::lgamma(n - k + 1.0) - n * std::log(2.0));
  }
  return std::min(1.0, 2 * tail);
}

// "met (91.86 vs 91.45, ...)" or "not met ...", with the paired test and
// the fidelity of both rows when they are classifiers.
std::string Verdict(const SizedRow& row, const SizedRow& reference) {
  std::string text = absl::StrFormat("%s (%.2f vs %.2f, %lld vs %lld bytes", Better(row, reference) ? "met" : "not met",
                                     row.value, reference.value, static_cast<long long>(row.bytes),
                                     static_cast<long long>(reference.bytes));
  if (!row.correct.empty() && row.correct.size() == reference.correct.size()) {
    int64_t only_row = 0, only_reference = 0;
    for (size_t i = 0; i < row.correct.size(); ++i) {
      only_row += row.correct[i] && !reference.correct[i];
      only_reference += !row.correct[i] && reference.correct[i];
    }
    absl::StrAppend(&text, absl::StrFormat("; %lld vs %lld images right only here/there, McNemar p = %.2g; agreement "
                                           "with fp32 %.2f%% vs %.2f%%, KL %.4f vs %.4f",
                                           static_cast<long long>(only_row), static_cast<long long>(only_reference),
                                           McNemarP(only_row, only_reference), row.agreement, reference.agreement,
                                           row.kl, reference.kl));
  }
  return text + ")";
}

std::string PlanText(const mixed::MixedPlan& plan) {
  std::string text;
  for (const auto& layer : plan.layers) {
    absl::StrAppend(&text, text.empty() ? "" : ", ", layer.name, " ", layer.bits, "b (", layer.params, " w, pred ",
                    absl::StrFormat("%.2g", layer.predicted), ")");
  }
  return text;
}

int64_t Float32Bytes(const Graph& graph) {
  int64_t bytes = 0;
  for (const auto& [name, tensor] : graph.initializers) {
    if (tensor.dtype() == core::graph::DataType::kFloat32) bytes += 4 * tensor.num_elements();
  }
  return bytes;
}

// Every plan of one candidate per layer within `budget` bits, in
// lexicographic order of candidate indices (the oracle enumeration of small
// models).
void FeasiblePlans(const std::vector<mixed::LayerSensitivity>& layers, int64_t budget, size_t layer, int64_t size,
                   std::vector<int>* bits, std::vector<std::vector<int>>* plans) {
  if (size > budget) return;
  if (layer == layers.size()) {
    plans->push_back(*bits);
    return;
  }
  for (size_t c = 0; c < layers[layer].bits.size(); ++c) {
    bits->push_back(layers[layer].bits[c]);
    FeasiblePlans(layers, budget, layer + 1, size + layers[layer].size_bits[c], bits, plans);
    bits->pop_back();
  }
}

constexpr size_t kMaxOracleLayers = 4;

template <typename Metric>
absl::Status MeasureStorage(const std::string& model, const Graph& graph,
                            const std::vector<ptq::CalibrationBatch>& batches,
                            const std::vector<std::vector<int64_t>>& labels, const std::string& metric_name,
                            bool higher_is_better, bool lm, Metric metric, std::vector<SizedRow>* rows,
                            std::vector<std::string>* notes) {
  SQ_ASSIGN_OR_RETURN(const Score baseline, metric(graph));
  const int64_t classes = baseline.correct.empty() ? 0 : baseline.logits.size() / baseline.correct.size();
  auto add = [&](const std::string& method, const Score& score, int64_t bytes, int64_t params, double seconds) {
    SizedRow row{model, method, metric_name, score.value, baseline.value, bytes,
                 params == 0 ? 32.0 : 8.0 * bytes / params, seconds, higher_is_better, NAN, NAN, {}};
    if (classes > 0) {
      int64_t same = 0;
      double kl = 0;
      const int64_t images = static_cast<int64_t>(baseline.correct.size());
      for (int64_t i = 0; i < images; ++i) {
        const float* p = baseline.logits.data() + i * classes;
        const float* q = score.logits.data() + i * classes;
        same += std::max_element(p, p + classes) - p == std::max_element(q, q + classes) - q;
        const double p_max = *std::max_element(p, p + classes), q_max = *std::max_element(q, q + classes);
        double p_sum = 0, q_sum = 0;
        for (int64_t k = 0; k < classes; ++k) {
          p_sum += std::exp(p[k] - p_max);
          q_sum += std::exp(q[k] - q_max);
        }
        for (int64_t k = 0; k < classes; ++k) {
          const double log_p = p[k] - p_max - std::log(p_sum), log_q = q[k] - q_max - std::log(q_sum);
          kl += std::exp(log_p) * (log_p - log_q);
        }
      }
      row.agreement = 100.0 * same / images;
      row.kl = kl / images;
      row.correct = score.correct;
    }
    rows->push_back(row);
    std::printf("%s %s: %s %.4f, %lld bytes\n", model.c_str(), method.c_str(), metric_name.c_str(), score.value,
                static_cast<long long>(bytes));
    std::fflush(stdout);
    return rows->back();
  };

  // Curvature on the first --sensitivity_batches calibration batches.
  auto start = std::chrono::steady_clock::now();
  std::vector<mixed::LossBatch> loss_batches;
  for (size_t b = 0; b < batches.size() && static_cast<int64_t>(b) < absl::GetFlag(FLAGS_sensitivity_batches); ++b) {
    loss_batches.push_back({batches[b], labels[b]});
  }
  mixed::SensitivityOptions sensitivity_options;
  sensitivity_options.probes = absl::GetFlag(FLAGS_hutchinson_probes);
  SQ_ASSIGN_OR_RETURN(std::vector<mixed::LayerSensitivity> sensitivity,
                      mixed::MeasureSensitivity(graph, loss_batches, sensitivity_options));
  const double sensitivity_seconds = Seconds(start);
  int64_t params = 0;
  for (const auto& s : sensitivity) params += s.params;
  add("fp32", baseline, 4 * params, 0, 0);

  // Quantizes as `plan` says with the quantizers `table` was measured with.
  auto run_plan_with = [&](const std::vector<mixed::LayerSensitivity>& table, const std::string& method,
                           const mixed::MixedPlan& plan, double seconds) -> absl::StatusOr<SizedRow> {
    SQ_ASSIGN_OR_RETURN(Graph quantized, mixed::ApplyPlan(graph, table, plan));
    SQ_ASSIGN_OR_RETURN(Score score, metric(quantized));
    return add(method, score, (plan.size_bits + 7) / 8, plan.params, seconds);
  };
  auto run_plan = [&](const std::string& method, const mixed::MixedPlan& plan, double seconds) {
    return run_plan_with(sensitivity, method, plan, seconds);
  };

  // (a) k-means 4-bit against uniform per-channel 4-bit: the same 4 index bits.
  SQ_ASSIGN_OR_RETURN(mixed::MixedPlan uniform4, mixed::UniformPlan(sensitivity, 4));
  SQ_ASSIGN_OR_RETURN(SizedRow uniform4_row, run_plan("W4 rtn per-channel (uniform)", uniform4, 0));
  std::vector<std::string> kmeans_verdicts;
  double per_layer_value = 0;  // the per-layer activation-weighted codebook's
  for (auto [per_row, weighted] : {std::pair{false, true}, std::pair{true, true}, std::pair{false, false}}) {
    core::quant::codebook::KmeansOptions options;
    options.bits = 4;
    options.per_row_codebook = per_row;
    options.activation_weighted = weighted;
    options.seed = absl::GetFlag(FLAGS_seed);
    start = std::chrono::steady_clock::now();
    SQ_ASSIGN_OR_RETURN(core::quant::codebook::CodebookGraphResult result,
                        core::quant::codebook::QuantizeGraphKmeans(graph, batches, options));
    const double seconds = Seconds(start);
    int64_t bytes = 0;
    for (const auto& layer : result.layers) bytes += layer.packed.size() + 4 * layer.codebook.size();
    SQ_ASSIGN_OR_RETURN(Score score, metric(result.graph));
    const std::string kind = absl::StrCat(per_row ? "per row" : "per layer",
                                          weighted ? ", activation-weighted" : ", unweighted");
    const SizedRow row = add(absl::StrCat("W4 k-means, codebook ", kind), score, bytes, params, seconds);
    if (!per_row && weighted) per_layer_value = row.value;
    kmeans_verdicts.push_back(absl::StrCat("codebook ", kind, ": ", Verdict(row, uniform4_row)));
  }
  // The spread of the k-means++ draws: the per-layer codebook with the next
  // --kmeans_seeds seeds (a ranking within this spread is no ranking).
  {
    std::vector<std::string> values;
    double sum = per_layer_value;
    values.push_back(absl::StrFormat("%.2f", sum));
    const int seeds = absl::GetFlag(FLAGS_kmeans_seeds);
    for (int extra = 1; extra < seeds; ++extra) {
      core::quant::codebook::KmeansOptions options;
      options.bits = 4;
      options.seed = absl::GetFlag(FLAGS_seed) + extra;
      SQ_ASSIGN_OR_RETURN(core::quant::codebook::CodebookGraphResult result,
                          core::quant::codebook::QuantizeGraphKmeans(graph, batches, options));
      SQ_ASSIGN_OR_RETURN(Score score, metric(result.graph));
      sum += score.value;
      values.push_back(absl::StrFormat("%.2f", score.value));
    }
    kmeans_verdicts.push_back(absl::StrFormat("per-layer activation-weighted codebook over seeds %d-%d: %s (mean %.2f; "
                                              "uniform %.2f)",
                                              absl::GetFlag(FLAGS_seed), absl::GetFlag(FLAGS_seed) + seeds - 1,
                                              absl::StrJoin(values, ", "), sum / seeds, uniform4_row.value));
  }
  notes->push_back(absl::StrCat(model, ": k-means 4-bit loses less than uniform per-channel 4-bit at equal index bits: ",
                                absl::StrJoin(kmeans_verdicts, "; ")));

  // (b) mixed precision at the size of uniform 3-bit.
  SQ_ASSIGN_OR_RETURN(mixed::MixedPlan uniform3, mixed::UniformPlan(sensitivity, 3));
  SQ_ASSIGN_OR_RETURN(SizedRow uniform3_row, run_plan("W3 rtn per-channel (uniform)", uniform3, 0));
  SQ_ASSIGN_OR_RETURN(mixed::MixedPlan mix3, mixed::PlanMixedPrecision(sensitivity, uniform3.size_bits));
  SQ_ASSIGN_OR_RETURN(SizedRow mix3_row,
                      run_plan("mixed {2,3,4,8,16} at <= uniform-3 size (Hutchinson)", mix3, sensitivity_seconds));
  notes->push_back(absl::StrFormat(
      "%s: mixed precision at the size of uniform 3-bit (%.3f avg bits, %s) beats uniform 3-bit: %s; "
      "plan: %s. Hutchinson: %d probes on %zu calibration batches, %.1f s",
      model, mix3.AverageBits(), mix3.exact ? "exact DP" : "DP on rounded-up sizes", Verdict(mix3_row, uniform3_row),
      PlanText(mix3), sensitivity_options.probes, loss_batches.size(), sensitivity_seconds));
  // Mixed against uniform 3-bit again with another sensitivity or quantizer:
  // the cheaper Fisher; on the small models the measured quadratic form
  // dW' H dW per layer and width (2 gradient evaluations each: too slow for
  // the LM's 28 layers here); the measured loss increase (forward passes
  // only); asymmetric candidates (2-bit gets 4 levels), against uniform
  // asymmetric 3-bit.
  SizedRow asymmetric3_row;
  auto alternative = [&](const mixed::SensitivityOptions& options,
                         const std::string& label) -> absl::StatusOr<std::vector<mixed::LayerSensitivity>> {
    start = std::chrono::steady_clock::now();
    SQ_ASSIGN_OR_RETURN(std::vector<mixed::LayerSensitivity> other,
                        mixed::MeasureSensitivity(graph, loss_batches, options));
    const double seconds = Seconds(start);
    SQ_ASSIGN_OR_RETURN(mixed::MixedPlan baseline, mixed::UniformPlan(other, 3));
    if (options.asymmetric && asymmetric3_row.method.empty()) {
      SQ_ASSIGN_OR_RETURN(asymmetric3_row,
                          run_plan_with(other, "W3 rtn per-channel asymmetric (uniform)", baseline, 0));
    }
    const SizedRow& baseline_row = options.asymmetric ? asymmetric3_row : uniform3_row;
    SQ_ASSIGN_OR_RETURN(mixed::MixedPlan plan, mixed::PlanMixedPrecision(other, baseline.size_bits));
    SQ_ASSIGN_OR_RETURN(SizedRow row, run_plan_with(other, absl::StrCat("mixed at <= uniform-3 size (", label, ")"),
                                                    plan, seconds));
    notes->push_back(absl::StrFormat("%s: with %s: %s; plan: %s", model, label, Verdict(row, baseline_row),
                                     PlanText(plan)));
    return other;
  };
  mixed::SensitivityOptions fisher = sensitivity_options, form = sensitivity_options,
                            asymmetric = sensitivity_options, measured = sensitivity_options;
  fisher.estimator = mixed::CurvatureEstimator::kFisher;
  form.estimator = mixed::CurvatureEstimator::kQuadraticForm;
  measured.estimator = mixed::CurvatureEstimator::kMeasuredLoss;
  asymmetric.asymmetric = true;
  mixed::SensitivityOptions measured_asymmetric = measured;
  measured_asymmetric.asymmetric = true;
  SQ_RETURN_IF_ERROR(alternative(fisher, "Fisher").status());
  if (!lm) SQ_RETURN_IF_ERROR(alternative(form, "dW'HdW").status());
  SQ_RETURN_IF_ERROR(alternative(measured, "measured loss").status());
  SQ_RETURN_IF_ERROR(alternative(asymmetric, "Hutchinson, asymmetric candidates").status());
  SQ_ASSIGN_OR_RETURN(std::vector<mixed::LayerSensitivity> measured_asymmetric_table,
                      alternative(measured_asymmetric, "measured loss, asymmetric candidates"));

  // The ceiling of per-layer mixed precision on a small model: every plan
  // within the uniform-3 size scored on the test metric itself (an oracle
  // that peeks at the test set; it says whether any plan can beat uniform).
  if (sensitivity.size() <= kMaxOracleLayers) {
    for (const auto* table : {&sensitivity, &measured_asymmetric_table}) {
      const bool asym = table->front().asymmetric;
      SQ_ASSIGN_OR_RETURN(mixed::MixedPlan uniform, mixed::UniformPlan(*table, 3));
      std::vector<std::vector<int>> plans;
      std::vector<int> bits;
      FeasiblePlans(*table, uniform.size_bits, 0, 0, &bits, &plans);
      std::vector<int> best_bits;
      Score best;
      for (const std::vector<int>& candidate : plans) {
        SQ_ASSIGN_OR_RETURN(mixed::MixedPlan plan, mixed::PlanWithBits(*table, candidate));
        SQ_ASSIGN_OR_RETURN(Graph quantized, mixed::ApplyPlan(graph, *table, plan));
        SQ_ASSIGN_OR_RETURN(Score score, metric(quantized));
        if (best_bits.empty() || (higher_is_better ? score.value > best.value : score.value < best.value)) {
          best = std::move(score);
          best_bits = candidate;
        }
      }
      notes->push_back(absl::StrFormat(
          "%s: oracle over all %zu per-layer plans {2,3,4,8,16}%s within the uniform-3 size, scored on the test "
          "set: the best is %s at %.2f (uniform 3-bit %s)",
          model, plans.size(), asym ? " asymmetric" : "", absl::StrJoin(best_bits, "/"), best.value,
          best_bits == std::vector<int>(table->size(), 3) ? "itself: no per-layer plan beats it"
                                                         : "is beaten by this plan"));
    }
  }

  if (lm) {
    // (c) a 2/4-bit mix at <= 2.5 average bits (scales included in the budget).
    const auto budget = static_cast<int64_t>(2.5 * params);
    SQ_ASSIGN_OR_RETURN(mixed::MixedPlan mix24, mixed::PlanMixedPrecision(sensitivity, budget, {2, 4}));
    SQ_ASSIGN_OR_RETURN(SizedRow mix24_row, run_plan("mixed {2,4} at <= 2.5 avg bits (Hutchinson)", mix24, 0));
    // The same budget with the measured loss and asymmetric candidates
    // (zero points count against the budget).
    SQ_ASSIGN_OR_RETURN(mixed::MixedPlan mix24_measured,
                        mixed::PlanMixedPrecision(measured_asymmetric_table, budget, {2, 4}));
    SQ_ASSIGN_OR_RETURN(SizedRow mix24_measured_row,
                        run_plan_with(measured_asymmetric_table,
                                      "mixed {2,4} at <= 2.5 avg bits (measured loss, asymmetric)", mix24_measured, 0));
    notes->push_back(absl::StrFormat("%s: 2/4-bit mix with the measured loss and asymmetric candidates at %.3f avg bits: "
                                     "perplexity %+.2f%% (plan: %s)",
                                     model, mix24_measured.AverageBits(), 100 * (mix24_measured_row.value / baseline.value - 1),
                                     PlanText(mix24_measured)));
    const int64_t fp32_bytes = Float32Bytes(graph);
    const int64_t quantized_model_bytes = fp32_bytes - 4 * params + (mix24.size_bits + 7) / 8;
    const double whole = static_cast<double>(fp32_bytes) / quantized_model_bytes;
    const double layers_only = 32.0 * params / mix24.size_bits;
    const double change = 100 * (mix24_row.value / baseline.value - 1);
    notes->push_back(absl::StrFormat(
        "%s: 2/4-bit mix at %.3f avg bits (plan: %s). Against the claim \"16x smaller than fp32 with perplexity "
        "+8%%\": the quantized layers are %.1fx smaller than fp32, the whole model (the %lld-byte fp32 tied "
        "embedding/LM head and norms stay fp32) %.2fx (%lld -> %lld bytes); perplexity %+.1f%%. Size: %s; "
        "perplexity: %s",
        model, mix24.AverageBits(), PlanText(mix24), layers_only, static_cast<long long>(fp32_bytes - 4 * params),
        whole, static_cast<long long>(fp32_bytes), static_cast<long long>(quantized_model_bytes), change,
        whole >= 16 ? "met" : (layers_only >= 16 ? "not met for the whole model (met for the quantized layers)"
                                                 : "not met"),
        change <= 8 ? "met" : "not met"));
  }
  return absl::OkStatus();
}

std::string StorageMarkdown(const std::vector<SizedRow>& rows, const std::vector<std::string>& notes) {
  std::string md =
      "| model | method | metric | value | change vs fp32 | top-1 agreement with fp32 % | KL vs fp32 | weight bytes | "
      "avg bits | quantize s |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n";
  for (const SizedRow& row : rows) {
    const bool fp32 = row.method == "fp32";
    absl::StrAppend(&md, "| ", row.model, " | ", row.method, " | ", row.metric, " | ",
                    absl::StrFormat(row.higher_is_better ? "%.2f" : "%.1f", row.value), " | ",
                    fp32 ? std::string("—") : Change(row), " | ",
                    fp32 || std::isnan(row.agreement) ? std::string("—") : absl::StrFormat("%.2f", row.agreement),
                    " | ", fp32 || std::isnan(row.kl) ? std::string("—") : absl::StrFormat("%.4f", row.kl), " | ",
                    row.bytes, " | ", absl::StrFormat("%.3f", row.average_bits), " | ",
                    fp32 ? std::string("—") : absl::StrFormat("%.1f", row.seconds), " |\n");
  }
  md += "\n";
  for (const std::string& note : notes) absl::StrAppend(&md, "- ", note, "\n");
  return md;
}

std::string Markdown(const std::vector<Row>& rows, const std::vector<std::string>& notes) {
  std::string md = "| model | method | metric | value | change vs fp32 | quantize s |\n|---|---|---|---|---|---|\n";
  for (const Row& row : rows) {
    std::string change = "—";
    if (row.method != "fp32") {
      change = row.higher_is_better ? absl::StrFormat("%+.2f points", row.value - row.baseline)
                                    : absl::StrFormat("%+.2f%%", 100 * (row.value / row.baseline - 1));
    }
    absl::StrAppend(&md, "| ", row.model, " | ", row.method, " | ", row.metric, " | ",
                    absl::StrFormat(row.higher_is_better ? "%.2f" : "%.1f", row.value), " | ", change, " | ",
                    row.method == "fp32" ? std::string("—") : absl::StrFormat("%.1f", row.seconds), " |\n");
  }
  md += "\n";
  for (const std::string& note : notes) absl::StrAppend(&md, "- ", note, "\n");
  return md;
}

absl::Status Main() {
  std::vector<Row> rows;
  std::vector<std::string> notes;
  std::vector<SizedRow> sized_rows;
  std::vector<std::string> sized_notes;
  const bool storage = absl::GetFlag(FLAGS_storage_sections);
  const std::string only = absl::GetFlag(FLAGS_only);
  const auto start = std::chrono::steady_clock::now();
  double storage_seconds = 0;
  for (const std::string kind : {"cnn", "mlp"}) {
    if (!only.empty() && only != kind) continue;
    SQ_ASSIGN_OR_RETURN(FashionInputs in, LoadFashion(kind));
    SQ_RETURN_IF_ERROR(MeasureFashion(kind, in, &rows, &notes));
    if (!storage) continue;
    const auto storage_start = std::chrono::steady_clock::now();
    SQ_ASSIGN_OR_RETURN(const std::vector<int64_t> test_labels, core::data::LabelsAsInt64(in.test));
    SQ_RETURN_IF_ERROR(MeasureStorage(absl::StrCat("Fashion-MNIST ", kind == "cnn" ? "CNN" : "MLP"), in.graph,
                                      in.batches, in.batch_labels, "test accuracy %", true, false,
                                      [&in, &test_labels](const Graph& g) -> absl::StatusOr<Score> {
                                        Score score;
                                        SQ_ASSIGN_OR_RETURN(score.logits, Logits(g, in.test));
                                        score.correct = TopOneCorrect(score.logits, test_labels);
                                        score.value = 100.0 *
                                                      std::count(score.correct.begin(), score.correct.end(), true) /
                                                      test_labels.size();
                                        return score;
                                      },
                                      &sized_rows, &sized_notes));
    storage_seconds += Seconds(storage_start);
  }
  if (only.empty() || only == "lm") {
    SQ_ASSIGN_OR_RETURN(LmInputs in, LoadLm());
    SQ_RETURN_IF_ERROR(MeasureLm(in, &rows, &notes));
    if (storage) {
      const auto storage_start = std::chrono::steady_clock::now();
      const int64_t eval_windows = absl::GetFlag(FLAGS_eval_windows);
      SQ_RETURN_IF_ERROR(MeasureStorage("LLaMA LM", in.checkpoint.graph, in.batches, in.batch_targets,
                                        "held-out perplexity", false, true,
                                        [&](const Graph& g) -> absl::StatusOr<Score> {
                                          SQ_ASSIGN_OR_RETURN(auto report, HeldOutPerplexity(g, in.held_out, kContext,
                                                                                             eval_windows, 8));
                                          return Score{report.perplexity, {}, {}};
                                        },
                                        &sized_rows, &sized_notes));
      storage_seconds += Seconds(storage_start);
    }
  }
  notes.push_back(absl::StrFormat("whole report: %.0f s (of which the equal-storage section %.0f s)", Seconds(start),
                                  storage_seconds));
  std::string md = Markdown(rows, notes);
  if (storage) {
    absl::StrAppend(&md, "\n## Non-uniform and mixed precision at equal storage\n\n",
                    StorageMarkdown(sized_rows, sized_notes));
  }
  std::printf("\n%s", md.c_str());
  const std::string out = absl::GetFlag(FLAGS_out);
  if (!out.empty()) SQ_RETURN_IF_ERROR(core::model::WriteFileAtomically(out, md));
  return absl::OkStatus();
}

}  // namespace
}  // namespace squeeze::deploy

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::Status status = squeeze::deploy::Main();
  if (!status.ok()) {
    std::fprintf(stderr, "squeeze-quality-report: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
