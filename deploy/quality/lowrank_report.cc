// squeeze-lowrank-report: low-rank factorization (core/lowrank) of the
// reference models' linear layers at a parameter budget, with ranks chosen
// by target ratio, by sensitivity and by retained energy, measured before
// and after a short distillation recovery, plus the latency of each
// factorized graph against the dense one in our runtime. Prints markdown
// (also written to --out); docs/quality.md and docs/benchmarks.md hold the
// latest run.
//
//   squeeze-lowrank-report --threads=1 --out=/tmp/lowrank.md
//
// Fashion-MNIST: test accuracy on all 10000 test images; recovery on
// shuffled training images (--seed). LM: held-out perplexity on
// --eval_windows evenly spaced 128-token windows (quality_report's).
// Latency: medians of --latency_reps runs per model, the models of one
// table interleaved run by run so that they see the same machine load.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <set>
#include <string>

#include <unistd.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/data/idx.h"
#include "core/distill/distill.h"
#include "core/hf/hf_checkpoint.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/lowrank/lowrank.h"
#include "core/model/file_io.h"
#include "core/onnx/onnx_model.h"
#include "core/quant/ptq/layers.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"
#include "deploy/models/fashion_mnist_data.h"
#include "deploy/models/lm_corpus.h"

ABSL_FLAG(std::string, models_dir, "deploy/models", "The reference models.");
ABSL_FLAG(std::string, fashion_dir, "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX files.");
ABSL_FLAG(std::string, lm_data_dir, "third_party/npm/node_modules/@stdlib", "The LM corpus (see train_lm).");
ABSL_FLAG(std::string, only, "", "mlp, cnn or lm: measure one model only.");
ABSL_FLAG(double, target_ratio, 0.25, "Linear parameters after / before.");
ABSL_FLAG(int64_t, mlp_recovery_steps, 1500, "Recovery steps for the MLP variants.");
ABSL_FLAG(int64_t, cnn_recovery_steps, 300, "Recovery steps for the CNN variants.");
ABSL_FLAG(int64_t, lm_recovery_steps, 0, "Recovery steps for the LM variants (0: none).");
ABSL_FLAG(int64_t, recovery_batch, 64, "Recovery batch (images; LM: windows / 8).");
ABSL_FLAG(double, recovery_lr, 5e-4, "Recovery AdamW learning rate (cosine-decayed).");
ABSL_FLAG(double, temperature, 2.0, "Distillation temperature.");
ABSL_FLAG(double, hard_label_weight, 0.3, "Weight of the hard-label cross-entropy in the recovery loss.");
ABSL_FLAG(int64_t, calibration_images, 256, "Training images the sensitivity damage is measured on.");
ABSL_FLAG(int64_t, eval_windows, 256, "Held-out LM windows scored (0: all).");
ABSL_FLAG(int, threads, 1, "CPU kernel threads for recovery and latency.");
ABSL_FLAG(int, latency_reps, 50, "Timed runs per model and batch size.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the calibration and recovery draws.");
ABSL_FLAG(std::string, out, "", "Also write the markdown here.");

namespace squeeze::deploy {
namespace {

namespace distill = core::distill;
namespace lowrank = core::lowrank;
using core::graph::Graph;
using core::graph::Tensor;

constexpr int64_t kContext = 128;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

struct Variant {
  std::string model, name;
  lowrank::LowRankResult result;
  Graph deployed;  // scales folded, after recovery when there was one
  double before = 0, after = -1;  // metric before / after recovery (after < 0: no recovery)
  double recovery_seconds = 0;
  int64_t recovery_steps = 0;
};

// "fc1 36, fc2 50, fc3 dense"; LLaMA projections grouped by kind, one rank
// per decoder layer: "q_proj 71/11/11/17; ...". Tucker-2 ranks are r1/r2.
std::string Ranks(const lowrank::LowRankResult& result) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<std::string>> grouped;
  for (const auto& layer : result.layers) {
    std::string name = layer.weight;
    if (absl::EndsWith(name, ".weight")) name.resize(name.size() - 7);
    const size_t dot = name.rfind('.');
    const bool decoder = absl::StrContains(name, "layers.") && dot != std::string::npos;
    if (decoder) name = name.substr(dot + 1);
    std::string rank = !layer.factorized          ? "dense"
                       : layer.form == "tucker2" ? absl::StrCat(layer.rank_in, "/", layer.rank)
                                                 : absl::StrCat(layer.rank);
    if (!grouped.count(name)) order.push_back(name);
    grouped[name].push_back(std::move(rank));
  }
  std::vector<std::string> parts;
  for (const std::string& name : order) {
    parts.push_back(absl::StrCat(name, " ", absl::StrJoin(grouped[name], ",")));
  }
  return absl::StrJoin(parts, "; ");
}

double Ratio(const lowrank::LowRankResult& result) {
  return static_cast<double>(result.params_after) / static_cast<double>(result.params_before);
}

// The largest energy threshold whose factorization keeps at most
// `target_ratio` of the layers' parameters (bisection; the ratio grows with
// the threshold).
absl::StatusOr<std::pair<double, lowrank::LowRankResult>> EnergyAtRatio(const Graph& graph,
                                                                        lowrank::LowRankOptions options,
                                                                        double target_ratio) {
  options.mode = lowrank::RankMode::kEnergy;
  double lo = 0.01, hi = 1.0;
  options.energy = lo;
  SQ_ASSIGN_OR_RETURN(lowrank::LowRankResult best, lowrank::FactorizeGraph(graph, options));
  double best_energy = lo;
  for (int i = 0; i < 14; ++i) {
    options.energy = 0.5 * (lo + hi);
    SQ_ASSIGN_OR_RETURN(lowrank::LowRankResult result, lowrank::FactorizeGraph(graph, options));
    if (Ratio(result) <= target_ratio) {
      lo = options.energy;
      best = std::move(result);
      best_energy = options.energy;
    } else {
      hi = options.energy;
    }
  }
  return std::make_pair(best_energy, std::move(best));
}

// Medians (ms) of `reps` runs of each graph on `feeds`, interleaved.
absl::StatusOr<std::vector<double>> MedianLatencies(const std::vector<const Graph*>& graphs,
                                                    const std::map<std::string, Tensor>& feeds, int reps,
                                                    int threads) {
  auto backend = core::kernels::cpu::CreateCpuBackend(threads);
  std::vector<core::runtime::Executor> executors;
  for (const Graph* graph : graphs) {
    SQ_ASSIGN_OR_RETURN(core::runtime::Executor executor, core::runtime::Executor::Create(*graph, backend));
    executors.push_back(std::move(executor));
  }
  std::vector<std::vector<double>> times(graphs.size());
  for (int rep = -3; rep < reps; ++rep) {
    for (size_t g = 0; g < executors.size(); ++g) {
      const auto start = std::chrono::steady_clock::now();
      SQ_RETURN_IF_ERROR(executors[g].Run(feeds).status());
      if (rep >= 0) times[g].push_back(1000 * Seconds(start));
    }
  }
  std::vector<double> medians;
  for (auto& t : times) {
    std::sort(t.begin(), t.end());
    medians.push_back(t[t.size() / 2]);
  }
  return medians;
}

bool PrintStep(int64_t step, int64_t steps, double loss) {
  if (step % 10 == 0 || step + 1 == steps) {
    std::fprintf(stderr, "\r  recovery step %lld/%lld loss %.4f", static_cast<long long>(step + 1),
                 static_cast<long long>(steps), loss);
  }
  return true;
}

struct Report {
  std::vector<std::string> quality_rows, latency_rows, size_rows;
};

// Recovery by output distillation from `teacher` (core/distill, output stage
// only) with the flags' loss (1 - h) KL(T) + h CE, h = --hard_label_weight.
// core/distill minimizes KL + w CE, so w = h / (1 - h); the losses printed
// are scaled back by (1 - h), and the gradient clip (1.0 on the flags' loss)
// by 1 / (1 - h). `trainable` empty: core/distill's default set. Prints the
// mean loss over the first and last 10% of the steps; returns the steps run.
absl::StatusOr<int64_t> Recover(const Graph& teacher, Graph* student, int64_t steps, double temperature,
                                std::set<std::string> trainable, const distill::DistillBatchSource& batches) {
  const double h = absl::GetFlag(FLAGS_hard_label_weight);
  if (!(h >= 0 && h < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("--hard_label_weight must be in [0, 1), got ", h));
  }
  const auto start = std::chrono::steady_clock::now();
  distill::DistillOptions options;
  options.output.steps = steps;
  options.output.learning_rate = absl::GetFlag(FLAGS_recovery_lr);
  options.temperature = temperature;
  options.hard_label_weight = h / (1 - h);
  options.clip_norm = 1.0 / (1 - h);
  options.trainable = std::move(trainable);
  options.backend = core::kernels::cpu::CreateCpuBackend(absl::GetFlag(FLAGS_threads));
  SQ_ASSIGN_OR_RETURN(distill::DistillResult result,
                      distill::Distill(teacher, *student, batches, options, [h](const distill::DistillProgress& p) {
                        return PrintStep(p.step - 1, p.total, (1 - h) * p.loss);
                      }));
  *student = std::move(result.student);
  const std::vector<double>& losses = result.curves.back().losses;
  const auto n = static_cast<int64_t>(losses.size());
  const int64_t window = std::max<int64_t>(1, n / 10);
  double first = 0, last = 0;
  for (int64_t i = 0; i < window; ++i) {
    first += (1 - h) * losses[i] / static_cast<double>(window);
    last += (1 - h) * losses[n - 1 - i] / static_cast<double>(window);
  }
  std::fprintf(stderr, "\n  loss %.4f -> %.4f (%.0f s)\n", first, last, Seconds(start));
  return n;
}

// Bytes of the ONNX file core/onnx writes for `graph`.
absl::StatusOr<int64_t> OnnxBytes(const Graph& graph) {
  const std::string path =
      (std::filesystem::temp_directory_path() / absl::StrCat("squeeze_lowrank_", getpid(), ".onnx")).string();
  SQ_RETURN_IF_ERROR(core::onnx::SaveOnnxModel(graph, path));
  std::error_code error;
  const auto bytes = std::filesystem::file_size(path, error);
  std::filesystem::remove(path, error);
  if (bytes == static_cast<std::uintmax_t>(-1)) return absl::InternalError(absl::StrCat("cannot stat ", path));
  return static_cast<int64_t>(bytes);
}

std::string ParamsText(const lowrank::LowRankResult& r) {
  return absl::StrFormat("%d -> %d (%.3f)", r.params_before, r.params_after, Ratio(r));
}

// Factorizes `graph` in every way `variants` lists, recovers each with
// `recover` (steps 0: none) and measures `metric` before and after.
template <typename Metric, typename Recover>
absl::Status MeasureVariants(const std::string& model, const Graph& graph, std::vector<Variant>* variants,
                             bool higher_is_better, Metric metric, Recover recover, Report* report) {
  auto start = std::chrono::steady_clock::now();
  SQ_ASSIGN_OR_RETURN(double baseline, metric(graph));
  std::printf("%s dense: %.4f (%.0f s)\n", model.c_str(), baseline, Seconds(start));
  report->quality_rows.push_back(absl::StrFormat("| %s | dense | - | - | %.2f | - | - |", model, baseline));
  for (Variant& v : *variants) {
    SQ_ASSIGN_OR_RETURN(v.before, metric(v.result.graph));
    Graph student = v.result.graph;
    start = std::chrono::steady_clock::now();
    SQ_ASSIGN_OR_RETURN(v.recovery_steps, recover(graph, &student));
    v.recovery_seconds = Seconds(start);
    SQ_RETURN_IF_ERROR(lowrank::FoldRankScales(v.result.scales, &student));
    v.deployed = std::move(student);
    if (v.recovery_steps > 0) {
      SQ_ASSIGN_OR_RETURN(v.after, metric(v.deployed));
    }
    const double final_value = v.after >= 0 ? v.after : v.before;
    const std::string kept = higher_is_better ? absl::StrFormat("%.1f%%", 100 * final_value / baseline)
                                              : absl::StrFormat("%+.1f%%", 100 * (final_value / baseline - 1));
    std::printf("%s %s: params %s, before %.4f, after %.4f (%lld steps, %.0f s), ranks %s\n", model.c_str(),
                v.name.c_str(), ParamsText(v.result).c_str(), v.before, v.after,
                static_cast<long long>(v.recovery_steps), v.recovery_seconds, Ranks(v.result).c_str());
    std::fflush(stdout);
    report->quality_rows.push_back(absl::StrFormat(
        "| %s | %s | %s | %s | %.2f | %s | %s |", model, v.name, Ranks(v.result), ParamsText(v.result), v.before,
        v.after >= 0 ? absl::StrFormat("%.2f (%d steps, %.0f s)", v.after, v.recovery_steps, v.recovery_seconds)
                     : std::string("-"),
        kept));
  }
  return absl::OkStatus();
}

// The three rank choices at --target_ratio for the layers `base` selects.
absl::StatusOr<std::vector<Variant>> RankChoices(const std::string& model, const Graph& graph,
                                                 const lowrank::LowRankOptions& base,
                                                 const std::vector<lowrank::CalibrationBatch>& calibration,
                                                 const std::string& what) {
  const double ratio = absl::GetFlag(FLAGS_target_ratio);
  std::vector<Variant> variants;
  auto progress = [&model](int i, int n) {
    std::fprintf(stderr, "\r%s: layer %d of %d", model.c_str(), i + 1, n);
    return true;
  };
  lowrank::LowRankOptions options = base;
  options.mode = lowrank::RankMode::kTargetRatio;
  options.target_ratio = ratio;
  SQ_ASSIGN_OR_RETURN(lowrank::LowRankResult by_ratio, lowrank::FactorizeGraph(graph, options, {}, progress));
  variants.push_back({model, absl::StrCat(what, ", rank by target ratio"), std::move(by_ratio)});
  options.mode = lowrank::RankMode::kSensitivity;
  auto start = std::chrono::steady_clock::now();
  SQ_ASSIGN_OR_RETURN(lowrank::LowRankResult by_sensitivity,
                      lowrank::FactorizeGraph(graph, options, calibration, progress));
  std::fprintf(stderr, "\n%s: sensitivity allocation took %.0f s\n", model.c_str(), Seconds(start));
  variants.push_back({model, absl::StrCat(what, ", rank by sensitivity"), std::move(by_sensitivity)});
  SQ_ASSIGN_OR_RETURN(auto by_energy, EnergyAtRatio(graph, base, ratio));
  variants.push_back({model, absl::StrFormat("%s, rank by energy (e = %.3f)", what, by_energy.first),
                      std::move(by_energy.second)});
  return variants;
}

absl::Status LatencyRows(const std::string& model, const Graph& dense, const std::vector<Variant>& variants,
                         const std::vector<std::pair<int64_t, std::map<std::string, Tensor>>>& batches,
                         Report* report) {
  std::vector<const Graph*> graphs = {&dense};
  for (const Variant& v : variants) graphs.push_back(&v.deployed);
  std::vector<std::vector<double>> medians;
  for (const auto& [size, feeds] : batches) {
    SQ_ASSIGN_OR_RETURN(std::vector<double> m,
                        MedianLatencies(graphs, feeds, absl::GetFlag(FLAGS_latency_reps), absl::GetFlag(FLAGS_threads)));
    medians.push_back(std::move(m));
  }
  SQ_ASSIGN_OR_RETURN(const int64_t dense_bytes, OnnxBytes(dense));
  for (size_t g = 0; g < graphs.size(); ++g) {
    SQ_ASSIGN_OR_RETURN(const int64_t bytes, OnnxBytes(*graphs[g]));
    report->size_rows.push_back(absl::StrFormat("| %s | %s | %d | %.3f |", model,
                                                g == 0 ? std::string("dense") : variants[g - 1].name, bytes,
                                                static_cast<double>(bytes) / dense_bytes));
    std::string row = absl::StrCat("| ", model, " | ", g == 0 ? std::string("dense") : variants[g - 1].name, " | ",
                                   absl::StrFormat("%.3f", g == 0 ? 1.0 : Ratio(variants[g - 1].result)));
    for (size_t b = 0; b < batches.size(); ++b) {
      const double speedup = medians[b][0] / medians[b][g];
      absl::StrAppend(&row, absl::StrFormat(" | %.3f ms (%.2fx%s)", medians[b][g], speedup,
                                            g > 0 && speedup < 1.0 ? ", NOT faster" : ""));
    }
    report->latency_rows.push_back(row + " |");
    std::printf("%s\n", report->latency_rows.back().c_str());
  }
  return absl::OkStatus();
}

absl::Status MeasureFashion(const std::string& kind, Report* report) {
  const std::string dir = absl::GetFlag(FLAGS_fashion_dir);
  SQ_ASSIGN_OR_RETURN(core::data::Dataset train, core::data::ReadIdxDataset(dir + "/train-images-idx3-ubyte.gz",
                                                                            dir + "/train-labels-idx1-ubyte.gz"));
  SQ_ASSIGN_OR_RETURN(core::data::Dataset test, core::data::ReadIdxDataset(dir + "/t10k-images-idx3-ubyte.gz",
                                                                           dir + "/t10k-labels-idx1-ubyte.gz"));
  SQ_ASSIGN_OR_RETURN(Graph graph,
                      core::onnx::LoadOnnxModel(absl::GetFlag(FLAGS_models_dir) + "/fashion_mnist_" + kind + ".onnx"));
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> labels, core::data::LabelsAsInt64(train));
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const std::vector<int64_t> order = core::data::ShuffledIndices(train.NumExamples(), seed);
  std::vector<lowrank::CalibrationBatch> calibration;
  const int64_t count = std::min<int64_t>(absl::GetFlag(FLAGS_calibration_images), train.NumExamples());
  for (int64_t begin = 0; begin < count; begin += 128) {
    std::vector<int64_t> indices(order.begin() + begin, order.begin() + std::min(count, begin + 128));
    calibration.push_back({{"image", ImagesToTensor(train.inputs, indices)}});
  }
  const std::string model = kind == "cnn" ? "Fashion-MNIST CNN" : "Fashion-MNIST MLP";
  lowrank::LowRankOptions linear;
  linear.sensitivity_batches = static_cast<int64_t>(calibration.size());
  linear.sensitivity_ratios.clear();
  for (int k = 1; k < 24; ++k) linear.sensitivity_ratios.push_back(k / 32.0);
  SQ_ASSIGN_OR_RETURN(std::vector<Variant> variants, RankChoices(model, graph, linear, calibration, "linear"));
  if (kind == "cnn") {
    lowrank::LowRankOptions tucker;
    tucker.linear = false;
    tucker.conv = lowrank::ConvMode::kTucker2;
    tucker.target_ratio = absl::GetFlag(FLAGS_target_ratio);
    SQ_ASSIGN_OR_RETURN(lowrank::LowRankResult convs, lowrank::FactorizeGraph(graph, tucker));
    variants.push_back({model, "convs, Tucker-2 by target ratio", std::move(convs)});
    // conv1 has one input channel: its Tucker-2 input projection is 1 -> 1.
    SQ_ASSIGN_OR_RETURN(core::quant::ptq::LayerScan scan, core::quant::ptq::FindQuantizableLayers(graph));
    for (const auto& layer : scan.layers) {
      if (layer.op_type == "Conv" && layer.in_channels == 1) tucker.skip.insert(layer.name);
    }
    SQ_ASSIGN_OR_RETURN(lowrank::LowRankResult conv2, lowrank::FactorizeGraph(graph, tucker));
    variants.push_back({model, "convs with > 1 input channel, Tucker-2 by target ratio", std::move(conv2)});
  }
  const int64_t steps = kind == "cnn" ? absl::GetFlag(FLAGS_cnn_recovery_steps) : absl::GetFlag(FLAGS_mlp_recovery_steps);
  const int64_t batch_size = absl::GetFlag(FLAGS_recovery_batch);
  auto recover = [&](const Graph& teacher, Graph* student) -> absl::StatusOr<int64_t> {
    if (steps == 0) return 0;
    // Every float32 initializer with more than one element (scalars are
    // constants), as before the move to core/distill.
    std::set<std::string> trainable;
    for (const auto& [name, tensor] : student->initializers) {
      if (tensor.dtype() == core::graph::DataType::kFloat32 && tensor.num_elements() > 1) trainable.insert(name);
    }
    const std::vector<int64_t> shuffled = core::data::ShuffledIndices(train.NumExamples(), seed + 1);
    auto batches = [&](int64_t step) -> absl::StatusOr<distill::DistillBatch> {
      distill::DistillBatch batch;
      std::vector<int64_t> indices;
      for (int64_t i = 0; i < batch_size; ++i) {
        const int64_t index = shuffled[(step * batch_size + i) % shuffled.size()];
        indices.push_back(index);
        batch.labels.push_back(labels[index]);
      }
      batch.feeds["image"] = ImagesToTensor(train.inputs, indices);
      return batch;
    };
    return Recover(teacher, student, steps, absl::GetFlag(FLAGS_temperature), std::move(trainable), batches);
  };
  SQ_RETURN_IF_ERROR(MeasureVariants(model, graph, &variants, true,
                                     [&test](const Graph& g) -> absl::StatusOr<double> {
                                       SQ_ASSIGN_OR_RETURN(double accuracy, Accuracy(g, test));
                                       return 100 * accuracy;
                                     },
                                     recover, report));
  std::vector<std::pair<int64_t, std::map<std::string, Tensor>>> latency_batches;
  for (int64_t size : {1, 64}) {
    std::vector<int64_t> indices(static_cast<size_t>(size));
    for (int64_t i = 0; i < size; ++i) indices[i] = i;
    latency_batches.push_back({size, {{"image", ImagesToTensor(test.inputs, indices)}}});
  }
  return LatencyRows(model, graph, variants, latency_batches, report);
}

absl::Status MeasureLm(Report* report) {
  const std::string dir = absl::GetFlag(FLAGS_models_dir) + "/lm";
  SQ_ASSIGN_OR_RETURN(core::hf::HfCheckpoint checkpoint, core::hf::LoadHfCheckpoint(dir));
  SQ_ASSIGN_OR_RETURN(core::text::BpeTokenizer tokenizer,
                      core::text::BpeTokenizer::FromVocabAndMerges(dir + "/vocab.json", dir + "/merges.txt"));
  SQ_ASSIGN_OR_RETURN(Corpus corpus, ReadCorpus(absl::GetFlag(FLAGS_lm_data_dir)));
  const std::vector<int64_t> train_tokens = Tokenize(corpus.train, tokenizer);
  const std::vector<int64_t> held_out = Tokenize(corpus.held_out, tokenizer);
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  std::uniform_int_distribution<int64_t> window_start(0, static_cast<int64_t>(train_tokens.size()) - kContext - 2);
  std::vector<lowrank::CalibrationBatch> calibration;
  {
    std::vector<int64_t> starts;
    for (int j = 0; j < 8; ++j) starts.push_back(window_start(rng));
    calibration.push_back({{"input_ids", Windows(train_tokens, starts, kContext).first}});
  }
  const Graph& graph = checkpoint.graph;
  const std::string model = "LLaMA LM";
  lowrank::LowRankOptions linear;
  linear.sensitivity_batches = 1;
  linear.sensitivity_ratios = {1.0 / 16, 1.0 / 8, 3.0 / 16, 1.0 / 4, 3.0 / 8, 1.0 / 2, 3.0 / 4};
  SQ_ASSIGN_OR_RETURN(std::vector<Variant> variants,
                      RankChoices(model, graph, linear, calibration, "q/k/v/o/gate/up/down"));
  const int64_t eval_windows = absl::GetFlag(FLAGS_eval_windows);
  const int64_t steps = absl::GetFlag(FLAGS_lm_recovery_steps);
  auto recover = [&](const Graph& teacher, Graph* student) -> absl::StatusOr<int64_t> {
    if (steps == 0) return 0;
    const int64_t batch_size = std::max<int64_t>(1, absl::GetFlag(FLAGS_recovery_batch) / 8);
    std::mt19937_64 draws(absl::GetFlag(FLAGS_seed) + 1);
    // core/distill asks for each step's batch once, in order.
    auto batches = [&](int64_t) -> absl::StatusOr<distill::DistillBatch> {
      std::vector<int64_t> starts;
      for (int64_t j = 0; j < batch_size; ++j) starts.push_back(window_start(draws));
      auto [inputs, targets] = Windows(train_tokens, starts, kContext);
      distill::DistillBatch batch;
      batch.feeds["input_ids"] = std::move(inputs);
      batch.labels = std::move(targets);
      return batch;
    };
    // The checkpoint's tensors (factors included), not the derived RoPE
    // tables and constants (training RMSNorm's epsilon diverges).
    return Recover(teacher, student, steps, 1.0, core::hf::CheckpointTensorNames(*student), batches);
  };
  SQ_RETURN_IF_ERROR(MeasureVariants(model, graph, &variants, false,
                                     [&](const Graph& g) -> absl::StatusOr<double> {
                                       SQ_ASSIGN_OR_RETURN(auto ppl,
                                                           HeldOutPerplexity(g, held_out, kContext, eval_windows, 8));
                                       return ppl.perplexity;
                                     },
                                     recover, report));
  std::vector<std::pair<int64_t, std::map<std::string, Tensor>>> latency_batches;
  for (int64_t size : {1, 8}) {
    std::vector<int64_t> starts;
    for (int64_t j = 0; j < size; ++j) starts.push_back(j * kContext);
    latency_batches.push_back({size, {{"input_ids", Windows(held_out, starts, kContext).first}}});
  }
  return LatencyRows(model, graph, variants, latency_batches, report);
}

absl::Status Main() {
  const std::string only = absl::GetFlag(FLAGS_only);
  Report report;
  for (const std::string kind : {"mlp", "cnn"}) {
    if (only.empty() || only == kind) SQ_RETURN_IF_ERROR(MeasureFashion(kind, &report));
  }
  if (only.empty() || only == "lm") SQ_RETURN_IF_ERROR(MeasureLm(&report));
  std::string md = absl::StrCat(
      "| model | variant | ranks | factorized-layer params (ratio) | metric before recovery | after recovery | "
      "kept vs dense |\n| --- | --- | --- | --- | --- | --- | --- |\n",
      absl::StrJoin(report.quality_rows, "\n"),
      "\n\nLatency (CPU backend, ", absl::GetFlag(FLAGS_threads), " thread(s), median of ",
      absl::GetFlag(FLAGS_latency_reps),
      " interleaved runs; LM rows: 1 and 8 windows of 128 tokens):\n\n"
      "| model | variant | param ratio | batch 1 | batch 64 (LM: 8) |\n| --- | --- | --- | --- | --- |\n",
      absl::StrJoin(report.latency_rows, "\n"),
      "\n\nONNX files written by core/onnx (scales folded):\n\n| model | variant | bytes | vs dense |\n"
      "| --- | --- | --- | --- |\n",
      absl::StrJoin(report.size_rows, "\n"), "\n");
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
    std::fprintf(stderr, "squeeze-lowrank-report: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
