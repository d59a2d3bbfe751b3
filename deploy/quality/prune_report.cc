// squeeze-prune-report: unstructured and N:M pruning (core/prune) of the
// reference models, every method against the dense model on the same data,
// printed as markdown (also written to --out). docs/quality.md, section
// "Unstructured and N:M pruning (issue 5)", holds the latest run.
//
//   squeeze-prune-report --out=/tmp/prune.md
//
// LM: held-out perplexity on --eval_windows evenly spaced 128-token windows
// of the held-out split (the windows squeeze-quality-report scores);
// calibration on --lm_calibration_windows random training windows drawn
// with --seed. Fashion-MNIST CNN and MLP: test accuracy on all 10000 test
// images; calibration on --calibration_images training images. The tied
// embedding / LM head is a weight shared with a Gather, which
// FindQuantizableLayers skips: it stays dense in every row.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <cstdio>
#include <random>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/data/idx.h"
#include "core/hf/hf_checkpoint.h"
#include "core/model/file_io.h"
#include "core/onnx/onnx_model.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/prune/nm_sparse.h"
#include "core/prune/unstructured.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"
#include "core/train/autograd.h"
#include "core/train/losses.h"
#include "core/train/optimizers.h"
#include "deploy/models/fashion_mnist_data.h"
#include "deploy/models/lm_corpus.h"

ABSL_FLAG(std::string, models_dir, "deploy/models", "The reference models.");
ABSL_FLAG(std::string, fashion_dir, "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX files.");
ABSL_FLAG(std::string, lm_data_dir, "third_party/npm/node_modules/@stdlib", "The LM corpus (see train_lm).");
ABSL_FLAG(int64_t, calibration_images, 512, "Fashion-MNIST calibration images (training split).");
ABSL_FLAG(int64_t, lm_calibration_windows, 32, "LM calibration windows of 128 tokens (training split).");
ABSL_FLAG(int64_t, eval_windows, 256, "Held-out LM windows scored (0: all).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the calibration draws.");
ABSL_FLAG(double, sparsity, 0.5, "Unstructured sparsity of every pruned layer (global: of all of them).");
ABSL_FLAG(std::string, only, "", "cnn, mlp or lm: measure one model only.");
ABSL_FLAG(bool, four_eight, false, "Also measure 4:8 with each method.");
ABSL_FLAG(bool, sequential, true,
          "Also measure Wanda and SparseGPT calibrated layer by layer through the pruned layers (50% and 2:4).");
ABSL_FLAG(int64_t, gradual_steps, 1000,
          "Fine-tuning steps (batch 128) of the MLP's gradual-pruning rows (0: skip them).");
ABSL_FLAG(int, threads, 1, "Calibration threads (the metric runs use the models' own default).");
ABSL_FLAG(std::string, out, "", "Also write the markdown here.");

namespace squeeze::deploy {
namespace {

namespace ptq = core::quant::ptq;
namespace prune = core::prune;
using core::graph::Graph;

constexpr int64_t kContext = 128;

struct Row {
  std::string model, method, metric;
  double value = 0, baseline = 0;
  double sparsity = 0;        // zeros / params over the pruned layers
  double model_sparsity = 0;  // zeros of the pruned layers / all float weights
  double mean_error = 0;      // mean relative output error over layers
  double seconds = 0;         // pruning time (calibration included)
  bool higher_is_better = true;
};

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

int64_t FloatWeights(const Graph& graph) {
  int64_t count = 0;
  for (const auto& [name, tensor] : graph.initializers) {
    if (tensor.dtype() == core::graph::DataType::kFloat32) count += tensor.num_elements();
  }
  return count;
}

struct Method {
  std::string name;
  prune::PruneOptions options;
};

// The methods of the section: 50% unstructured (magnitude per layer and
// global, Wanda, SparseGPT) and 2:4 (optionally 4:8) with each method;
// N:M skips layers whose input width M does not divide.
std::vector<Method> Methods(const Graph& graph, std::vector<std::string>* notes, const std::string& model) {
  const double sparsity = absl::GetFlag(FLAGS_sparsity);
  const int threads = absl::GetFlag(FLAGS_threads);
  std::vector<Method> methods;
  auto add = [&](const std::string& name, prune::PruneMethod method, prune::PruneScope scope, int n, int m,
                 std::vector<std::string> skip, bool sequential = false) {
    prune::PruneOptions options;
    options.sequential = sequential;
    options.method = method;
    options.scope = scope;
    options.sparsity = sparsity;
    options.nm_n = n;
    options.nm_m = m;
    options.skip_layers = std::move(skip);
    options.calibration.num_threads = threads;
    methods.push_back({name, options});
  };
  const std::string percent = absl::StrFormat("%.0f%%", 100 * sparsity);
  add(absl::StrCat("magnitude per-layer ", percent), prune::PruneMethod::kMagnitude, prune::PruneScope::kPerLayer, 0,
      0, {});
  add(absl::StrCat("magnitude global ", percent), prune::PruneMethod::kMagnitude, prune::PruneScope::kGlobal, 0, 0,
      {});
  add(absl::StrCat("wanda ", percent), prune::PruneMethod::kWanda, prune::PruneScope::kPerLayer, 0, 0, {});
  add(absl::StrCat("sparsegpt ", percent), prune::PruneMethod::kSparseGpt, prune::PruneScope::kPerLayer, 0, 0, {});
  const bool sequential = absl::GetFlag(FLAGS_sequential);
  if (sequential) {
    add(absl::StrCat("wanda ", percent, " sequential"), prune::PruneMethod::kWanda, prune::PruneScope::kPerLayer, 0,
        0, {}, true);
    add(absl::StrCat("sparsegpt ", percent, " sequential"), prune::PruneMethod::kSparseGpt,
        prune::PruneScope::kPerLayer, 0, 0, {}, true);
  }
  auto scan = ptq::FindQuantizableLayers(graph);
  std::vector<std::pair<int, int>> patterns = {{2, 4}};
  if (absl::GetFlag(FLAGS_four_eight)) patterns.push_back({4, 8});
  for (auto [n, m] : patterns) {
    std::vector<std::string> skip;
    for (const auto& layer : scan->layers) {
      if (layer.in % m != 0) skip.push_back(layer.name);
    }
    if (!skip.empty()) {
      notes->push_back(absl::StrCat(model, ": ", n, ":", m, " leaves ", absl::StrJoin(skip, ", "),
                                    " dense (input width not a multiple of ", m, ")"));
    }
    for (auto method : {prune::PruneMethod::kMagnitude, prune::PruneMethod::kWanda, prune::PruneMethod::kSparseGpt}) {
      add(absl::StrCat(n, ":", m, " ", prune::PruneMethodName(method)), method, prune::PruneScope::kPerLayer, n, m,
          skip);
    }
    if (sequential && m == 4) {
      for (auto method : {prune::PruneMethod::kWanda, prune::PruneMethod::kSparseGpt}) {
        add(absl::StrCat(n, ":", m, " ", prune::PruneMethodName(method), " sequential"), method,
            prune::PruneScope::kPerLayer, n, m, skip, true);
      }
    }
  }
  return methods;
}

// The runtime path of an N:M result: rewrites the pruned graph with
// UseNmSparseKernels and runs calibration batch 0 through it on the N:M
// backend and through the masked dense graph on the plain CPU backend.
// Returns "k layers compressed, max |output diff| d".
absl::StatusOr<std::string> CheckCompressedRuntime(const Graph& pruned, int n, int m,
                                                   const ptq::CalibrationBatch& batch) {
  Graph compressed = pruned;
  SQ_ASSIGN_OR_RETURN(std::vector<std::string> rewritten, prune::UseNmSparseKernels(&compressed, n, m));
  auto cpu = core::kernels::cpu::CreateCpuBackend(1);
  SQ_ASSIGN_OR_RETURN(auto dense_executor, core::runtime::Executor::Create(pruned, cpu));
  SQ_ASSIGN_OR_RETURN(auto sparse_executor,
                      core::runtime::Executor::Create(compressed, prune::CreateNmSparseBackend(cpu)));
  SQ_ASSIGN_OR_RETURN(auto dense_out, dense_executor.Run(batch));
  SQ_ASSIGN_OR_RETURN(auto sparse_out, sparse_executor.Run(batch));
  double difference = 0, scale = 0;
  const std::vector<float> a = dense_out[0].ToFloats(), b = sparse_out[0].ToFloats();
  for (size_t i = 0; i < a.size(); ++i) {
    difference = std::max<double>(difference, std::fabs(a[i] - b[i]));
    scale = std::max<double>(scale, std::fabs(a[i]));
  }
  return absl::StrFormat("%zu layers run compressed, max |output diff| %.1e (max |output| %.1f)", rewritten.size(),
                         difference, scale);
}

template <typename Metric>
absl::Status Measure(const std::string& model, const Graph& graph, const std::vector<ptq::CalibrationBatch>& batches,
                     const std::string& metric_name, bool higher_is_better, Metric metric, std::vector<Row>* rows,
                     std::vector<std::string>* notes) {
  auto start = std::chrono::steady_clock::now();
  SQ_ASSIGN_OR_RETURN(double baseline, metric(graph));
  rows->push_back({model, "dense", metric_name, baseline, baseline, 0, 0, 0, Seconds(start), higher_is_better});
  std::printf("%s dense: %s %.4f\n", model.c_str(), metric_name.c_str(), baseline);
  std::fflush(stdout);
  const int64_t all_weights = FloatWeights(graph);
  bool noted_skips = false;
  for (const Method& method : Methods(graph, notes, model)) {
    start = std::chrono::steady_clock::now();
    SQ_ASSIGN_OR_RETURN(prune::PruneResult result,
                        prune::PruneGraph(graph, batches, method.options, [&](int i, int n) {
                          std::fprintf(stderr, "\r%s %s: layer %d of %d", model.c_str(), method.name.c_str(), i + 1,
                                       n);
                          return true;
                        }));
    const double seconds = Seconds(start);
    std::fprintf(stderr, "\n");
    SQ_ASSIGN_OR_RETURN(double value, metric(result.graph));
    double error = 0;
    for (const auto& layer : result.layers) error += layer.relative_output_error;
    error /= static_cast<double>(result.layers.size());
    rows->push_back({model, method.name, metric_name, value, baseline,
                     static_cast<double>(result.zeros) / static_cast<double>(result.params),
                     static_cast<double>(result.zeros) / static_cast<double>(all_weights), error, seconds,
                     higher_is_better});
    std::printf("%s %s: %s %.4f (pruned in %.1f s, %zu layers, sparsity %.4f, mean rel. output error %.4f)\n",
                model.c_str(), method.name.c_str(), metric_name.c_str(), value, seconds, result.layers.size(),
                rows->back().sparsity, error);
    for (const auto& layer : result.layers) {
      std::printf("  %s [%lld x %lld] sparsity %.4f rel. output error %.4f input norm spread %.1f\n",
                  layer.name.c_str(), static_cast<long long>(layer.out), static_cast<long long>(layer.in),
                  layer.sparsity, layer.relative_output_error, layer.input_norm_spread);
    }
    if (method.options.method == prune::PruneMethod::kWanda && method.options.nm_m == 0 &&
        !method.options.sequential) {
      // Wanda's |W| * ||X|| departs from |W| only where input features differ
      // in norm: report how much they do here.
      std::vector<double> spreads;
      for (const auto& layer : result.layers) spreads.push_back(layer.input_norm_spread);
      std::sort(spreads.begin(), spreads.end());
      notes->push_back(absl::StrFormat(
          "%s: input feature norms (max / median ||X_j|| per pruned layer, the spread Wanda's score adds to |W|): "
          "median over layers %.1f, smallest %.1f, largest %.1f",
          model, spreads[spreads.size() / 2], spreads.front(), spreads.back()));
    }
    if (method.options.nm_m > 0 && method.options.method == prune::PruneMethod::kSparseGpt &&
        !method.options.sequential) {
      SQ_ASSIGN_OR_RETURN(std::string check, CheckCompressedRuntime(result.graph, method.options.nm_n,
                                                                    method.options.nm_m, batches[0]));
      notes->push_back(absl::StrCat(model, " ", method.name, " in the runtime's compressed form: ", check));
    }
    if (!noted_skips) {
      noted_skips = true;
      // Activation x activation MatMuls (attention) have no weight to prune.
      std::vector<std::string> skipped;
      int64_t computed = 0;
      for (const auto& node : result.skipped) {
        if (node.reason == "weight is computed, not an initializer") {
          ++computed;
        } else {
          skipped.push_back(absl::StrCat(node.name, " (", node.reason, ")"));
        }
      }
      notes->push_back(absl::StrCat(model, ": ", result.layers.size(), " pruned layers, ",
                                    absl::StrFormat("%.1f%%", 100.0 * result.params / all_weights),
                                    " of the float weights; left dense: ",
                                    skipped.empty() ? std::string("none") : absl::StrJoin(skipped, "; "),
                                    computed > 0 ? absl::StrCat(" (", computed, " MatMuls of two activations have "
                                                                "no weight)")
                                                 : std::string()));
    }
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

// Fine-tunes `graph` for `steps` AdamW steps (cosine learning rate) on
// shuffled training batches of 128, calling the pruner (may be null) after
// every step; returns the trained graph.
absl::StatusOr<Graph> FineTune(const Graph& graph, const core::data::Dataset& train, int64_t steps,
                               prune::GradualPruner* pruner) {
  namespace train_ns = core::train;
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> labels, core::data::LabelsAsInt64(train));
  const std::vector<int64_t> order = core::data::ShuffledIndices(train.NumExamples(), absl::GetFlag(FLAGS_seed) + 1);
  SQ_ASSIGN_OR_RETURN(train_ns::GradientProgram program,
                      train_ns::GradientProgram::Create(graph, core::kernels::cpu::CreateCpuBackend(1)));
  constexpr double kLearningRate = 2e-4;
  train_ns::AdamW optimizer({kLearningRate, 0.9, 0.999, 1e-8, 0.0});
  const std::string output = graph.outputs.at(0).name;
  for (int64_t step = 0; step < steps; ++step) {
    optimizer.set_learning_rate(kLearningRate * 0.5 * (1 + std::cos(M_PI * step / static_cast<double>(steps))));
    std::vector<int64_t> indices, batch_labels;
    for (int64_t i = 0; i < 128; ++i) {
      const int64_t index = order[(step * 128 + i) % order.size()];
      indices.push_back(index);
      batch_labels.push_back(labels[index]);
    }
    SQ_ASSIGN_OR_RETURN(train_ns::Tape tape, program.Forward({{"image", ImagesToTensor(train.inputs, indices)}}));
    SQ_ASSIGN_OR_RETURN(const core::graph::Tensor* logits, program.Output(tape, output));
    SQ_ASSIGN_OR_RETURN(train_ns::LossAndGradient loss, train_ns::SoftmaxCrossEntropy(*logits, batch_labels));
    SQ_ASSIGN_OR_RETURN(train_ns::TensorMap gradients, program.Backward(tape, {{output, loss.gradient}}));
    SQ_RETURN_IF_ERROR(optimizer.Step(&program.mutable_parameters(), gradients));
    if (pruner != nullptr) SQ_RETURN_IF_ERROR(pruner->Apply(step, &program.mutable_parameters()));
  }
  return program.graph();
}

// Pruning during fine-tuning on the MLP: a dense control, one-shot
// magnitude then fine-tuning under the fixed mask, and the cubic schedule
// from 0 to --sparsity over the first two thirds of the steps.
absl::Status MeasureGradual(const std::string& model, const Graph& graph, const core::data::Dataset& train,
                            const core::data::Dataset& test, double baseline, std::vector<Row>* rows,
                            std::vector<std::string>* notes) {
  const int64_t steps = absl::GetFlag(FLAGS_gradual_steps);
  const double sparsity = absl::GetFlag(FLAGS_sparsity);
  const int64_t all_weights = FloatWeights(graph);
  struct Variant {
    std::string name;
    std::optional<prune::GradualSchedule> schedule;
  };
  const std::string percent = absl::StrFormat("%.0f%%", 100 * sparsity);
  const std::vector<Variant> variants = {
      {absl::StrCat("dense + ", steps, " fine-tuning steps (control)"), std::nullopt},
      {absl::StrCat("magnitude ", percent, " one-shot + ", steps, " steps, mask fixed"),
       prune::GradualSchedule{sparsity, sparsity, 0, 1, 1}},
      {absl::StrCat("gradual magnitude 0 -> ", percent, " (cubic, steps 0-", 2 * steps / 3, ", every 10) of ", steps),
       prune::GradualSchedule{0.0, sparsity, 0, 2 * steps / 3, 10}},
  };
  for (const Variant& variant : variants) {
    const auto start = std::chrono::steady_clock::now();
    std::optional<prune::GradualPruner> pruner;
    if (variant.schedule) {
      SQ_ASSIGN_OR_RETURN(pruner, prune::GradualPruner::Create(graph, *variant.schedule));
    }
    SQ_ASSIGN_OR_RETURN(Graph tuned, FineTune(graph, train, steps, pruner ? &*pruner : nullptr));
    const double seconds = Seconds(start);
    SQ_ASSIGN_OR_RETURN(double accuracy, Accuracy(tuned, test));
    int64_t params = 0, zeros = 0;
    SQ_ASSIGN_OR_RETURN(ptq::LayerScan scan, ptq::FindQuantizableLayers(tuned));
    for (const auto& layer : scan.layers) {
      const std::vector<float> w = ptq::WeightMatrix(tuned, layer);
      params += static_cast<int64_t>(w.size());
      zeros += std::count(w.begin(), w.end(), 0.0f);
    }
    rows->push_back({model, variant.name, "test accuracy %", 100 * accuracy, baseline,
                     static_cast<double>(zeros) / static_cast<double>(params),
                     static_cast<double>(zeros) / static_cast<double>(all_weights), -1, seconds, true});
    std::printf("%s %s: test accuracy %% %.4f (%.1f s, sparsity %.4f)\n", model.c_str(), variant.name.c_str(),
                100 * accuracy, seconds, rows->back().sparsity);
    std::fflush(stdout);
  }
  notes->push_back(absl::StrCat(model, ": fine-tuning rows: AdamW (lr 2e-4, cosine, no weight decay), batches of 128 "
                                "training images (seed ", absl::GetFlag(FLAGS_seed) + 1,
                                "), one thread; masks by magnitude per layer, re-applied after every step"));
  return absl::OkStatus();
}

absl::Status MeasureFashion(const std::string& kind, std::vector<Row>* rows, std::vector<std::string>* notes) {
  const std::string dir = absl::GetFlag(FLAGS_fashion_dir);
  SQ_ASSIGN_OR_RETURN(core::data::Dataset train, core::data::ReadIdxDataset(dir + "/train-images-idx3-ubyte.gz",
                                                                            dir + "/train-labels-idx1-ubyte.gz"));
  SQ_ASSIGN_OR_RETURN(core::data::Dataset test, core::data::ReadIdxDataset(dir + "/t10k-images-idx3-ubyte.gz",
                                                                           dir + "/t10k-labels-idx1-ubyte.gz"));
  SQ_ASSIGN_OR_RETURN(Graph graph, core::onnx::LoadOnnxModel(absl::GetFlag(FLAGS_models_dir) + "/fashion_mnist_" +
                                                             kind + ".onnx"));
  const std::vector<int64_t> order = core::data::ShuffledIndices(train.NumExamples(), absl::GetFlag(FLAGS_seed));
  const int64_t count = std::min<int64_t>(absl::GetFlag(FLAGS_calibration_images), train.NumExamples());
  std::vector<ptq::CalibrationBatch> batches;
  for (int64_t begin = 0; begin < count; begin += 128) {
    std::vector<int64_t> indices(order.begin() + begin, order.begin() + std::min(count, begin + 128));
    batches.push_back({{"image", ImagesToTensor(train.inputs, indices)}});
  }
  const std::string model = absl::StrCat("Fashion-MNIST ", kind == "cnn" ? "CNN" : "MLP");
  SQ_RETURN_IF_ERROR(Measure(model, graph, batches, "test accuracy %", true,
                             [&test](const Graph& g) -> absl::StatusOr<double> {
                               SQ_ASSIGN_OR_RETURN(double accuracy, Accuracy(g, test));
                               return 100 * accuracy;
                             },
                             rows, notes));
  if (kind != "mlp" || absl::GetFlag(FLAGS_gradual_steps) <= 0) return absl::OkStatus();
  const double baseline = rows->back().baseline;
  return MeasureGradual(model, graph, train, test, baseline, rows, notes);
}

absl::Status MeasureLm(std::vector<Row>* rows, std::vector<std::string>* notes) {
  const std::string dir = absl::GetFlag(FLAGS_models_dir) + "/lm";
  SQ_ASSIGN_OR_RETURN(core::hf::HfCheckpoint checkpoint, core::hf::LoadHfCheckpoint(dir));
  SQ_ASSIGN_OR_RETURN(core::text::BpeTokenizer tokenizer,
                      core::text::BpeTokenizer::FromVocabAndMerges(dir + "/vocab.json", dir + "/merges.txt"));
  SQ_ASSIGN_OR_RETURN(Corpus corpus, ReadCorpus(absl::GetFlag(FLAGS_lm_data_dir)));
  const std::vector<int64_t> train_tokens = Tokenize(corpus.train, tokenizer);
  const std::vector<int64_t> held_out = Tokenize(corpus.held_out, tokenizer);
  // The same draws as squeeze-quality-report's LoadLm.
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  std::uniform_int_distribution<int64_t> window_start(0, static_cast<int64_t>(train_tokens.size()) - kContext - 2);
  std::vector<ptq::CalibrationBatch> batches;
  for (int64_t i = 0; i < absl::GetFlag(FLAGS_lm_calibration_windows); i += 8) {
    std::vector<int64_t> starts;
    for (int64_t j = 0; j < 8; ++j) starts.push_back(window_start(rng));
    auto [inputs, targets] = Windows(train_tokens, starts, kContext);
    batches.push_back({{"input_ids", inputs}});
  }
  const int64_t eval_windows = absl::GetFlag(FLAGS_eval_windows);
  notes->push_back(absl::StrCat("LLaMA LM: perplexity over ",
                                eval_windows == 0 ? std::string("all") : absl::StrCat(eval_windows),
                                " evenly spaced 128-token held-out windows (squeeze-quality-report's); calibration on ",
                                absl::GetFlag(FLAGS_lm_calibration_windows), " training windows"));
  return Measure("LLaMA LM", checkpoint.graph, batches, "held-out perplexity", false,
                 [&](const Graph& g) -> absl::StatusOr<double> {
                   SQ_ASSIGN_OR_RETURN(auto report, HeldOutPerplexity(g, held_out, kContext, eval_windows, 8));
                   return report.perplexity;
                 },
                 rows, notes);
}

std::string Markdown(const std::vector<Row>& rows, const std::vector<std::string>& notes) {
  std::string md =
      "| model | method | metric | value | change vs dense | sparsity of pruned layers | of all weights | "
      "mean rel. output error | prune s |\n|---|---|---|---|---|---|---|---|---|\n";
  for (const Row& row : rows) {
    const bool dense = row.method == "dense";
    std::string change = "—";
    if (!dense) {
      change = row.higher_is_better ? absl::StrFormat("%+.2f points", row.value - row.baseline)
                                    : absl::StrFormat("%+.2f%%", 100 * (row.value / row.baseline - 1));
    }
    absl::StrAppend(&md, "| ", row.model, " | ", row.method, " | ", row.metric, " | ",
                    absl::StrFormat(row.higher_is_better ? "%.2f" : "%.1f", row.value), " | ", change, " | ",
                    dense ? std::string("—") : absl::StrFormat("%.1f%%", 100 * row.sparsity), " | ",
                    dense ? std::string("—") : absl::StrFormat("%.1f%%", 100 * row.model_sparsity), " | ",
                    dense || row.mean_error < 0 ? std::string("—") : absl::StrFormat("%.3f", row.mean_error), " | ",
                    dense ? std::string("—") : absl::StrFormat("%.1f", row.seconds), " |\n");
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
  if (only.empty() || only == "lm") SQ_RETURN_IF_ERROR(MeasureLm(&rows, &notes));
  for (const std::string kind : {"mlp", "cnn"}) {
    if (only.empty() || only == kind) SQ_RETURN_IF_ERROR(MeasureFashion(kind, &rows, &notes));
  }
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
    std::fprintf(stderr, "squeeze-prune-report: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
