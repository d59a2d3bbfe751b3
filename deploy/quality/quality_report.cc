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
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/data/idx.h"
#include "core/hf/hf_checkpoint.h"
#include "core/model/file_io.h"
#include "core/onnx/onnx_model.h"
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

namespace squeeze::deploy {
namespace {

namespace ptq = core::quant::ptq;
using core::graph::Graph;

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
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

absl::Status MeasureFashion(const std::string& kind, std::vector<Row>* rows, std::vector<std::string>* notes) {
  const std::string dir = absl::GetFlag(FLAGS_fashion_dir);
  SQ_ASSIGN_OR_RETURN(core::data::Dataset train, core::data::ReadIdxDataset(dir + "/train-images-idx3-ubyte.gz",
                                                                           dir + "/train-labels-idx1-ubyte.gz"));
  SQ_ASSIGN_OR_RETURN(core::data::Dataset test, core::data::ReadIdxDataset(dir + "/t10k-images-idx3-ubyte.gz",
                                                                          dir + "/t10k-labels-idx1-ubyte.gz"));
  SQ_ASSIGN_OR_RETURN(Graph graph,
                      core::onnx::LoadOnnxModel(absl::GetFlag(FLAGS_models_dir) + "/fashion_mnist_" + kind + ".onnx"));
  const std::vector<int64_t> order = core::data::ShuffledIndices(train.NumExamples(), absl::GetFlag(FLAGS_seed));
  const int64_t count = std::min<int64_t>(absl::GetFlag(FLAGS_calibration_images), train.NumExamples());
  std::vector<ptq::CalibrationBatch> batches;
  for (int64_t begin = 0; begin < count; begin += 128) {
    std::vector<int64_t> indices(order.begin() + begin, order.begin() + std::min(count, begin + 128));
    batches.push_back({{"image", ImagesToTensor(train.inputs, indices)}});
  }
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

absl::Status MeasureLm(std::vector<Row>* rows, std::vector<std::string>* notes) {
  const std::string dir = absl::GetFlag(FLAGS_models_dir) + "/lm";
  SQ_ASSIGN_OR_RETURN(core::hf::HfCheckpoint checkpoint, core::hf::LoadHfCheckpoint(dir));
  SQ_ASSIGN_OR_RETURN(core::text::BpeTokenizer tokenizer,
                      core::text::BpeTokenizer::FromVocabAndMerges(dir + "/vocab.json", dir + "/merges.txt"));
  SQ_ASSIGN_OR_RETURN(Corpus corpus, ReadCorpus(absl::GetFlag(FLAGS_lm_data_dir)));
  const std::vector<int64_t> train_tokens = Tokenize(corpus.train, tokenizer);
  const std::vector<int64_t> held_out = Tokenize(corpus.held_out, tokenizer);
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  std::uniform_int_distribution<int64_t> window_start(0, static_cast<int64_t>(train_tokens.size()) - kContext - 2);
  std::vector<ptq::CalibrationBatch> batches;
  for (int64_t i = 0; i < absl::GetFlag(FLAGS_lm_calibration_windows); i += 8) {
    std::vector<int64_t> starts;
    for (int64_t j = 0; j < 8; ++j) starts.push_back(window_start(rng));
    batches.push_back({{"input_ids", Windows(train_tokens, starts, kContext).first}});
  }
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
  const std::string only = absl::GetFlag(FLAGS_only);
  const auto start = std::chrono::steady_clock::now();
  if (only.empty() || only == "cnn") SQ_RETURN_IF_ERROR(MeasureFashion("cnn", &rows, &notes));
  if (only.empty() || only == "mlp") SQ_RETURN_IF_ERROR(MeasureFashion("mlp", &rows, &notes));
  if (only.empty() || only == "lm") SQ_RETURN_IF_ERROR(MeasureLm(&rows, &notes));
  notes.push_back(absl::StrFormat("whole report: %.0f s", Seconds(start)));
  const std::string md = Markdown(rows, notes);
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
