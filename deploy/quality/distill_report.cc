// squeeze-distill-report: knowledge distillation and LoRA recovery (issue 5)
// on the reference models, measured on the full test sets. Prints markdown
// (also written to --out) for docs/quality.md.
//
//   squeeze-distill-report --threads=1 --out=/tmp/distill.md
//
// Part 1 (--cnn): a small CNN student (conv 8 -> conv 16 -> gemm 32 -> 10,
// built here) trained, per seed in --seeds, from the same initialisation on
// the same batches for the same steps three ways: hard labels only; core/
// distill's output stage only; and the three-stage schedule (feature
// alignment on the two pooled conv outputs and the hidden layer through
// learned projections, relative MSE with --normalize_features, then softened
// logits + hard labels; a CNN has no attention, so that stage runs no
// steps). Part 2 (--lora): the Fashion-MNIST MLP magnitude-pruned per weight
// matrix (done inline here), recovered by a LoRA fine-tune whose loss is
// core/distill's output stage against the unpruned MLP; merged vs adapted
// outputs compared on every test image. Part 3 (--lm): a 2-layer LLaMA
// student of the reference LM, hard labels only vs all three stages.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/data/dataset.h"
#include "core/data/idx.h"
#include "core/distill/distill.h"
#include "core/graph/builder.h"
#include "core/hf/hf_checkpoint.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/lora/lora.h"
#include "core/model/file_io.h"
#include "core/onnx/onnx_model.h"
#include "core/quant/ptq/layers.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"
#include "core/train/autograd.h"
#include "core/train/losses.h"
#include "core/train/optimizers.h"
#include "core/text/bpe_tokenizer.h"
#include "deploy/models/fashion_mnist_data.h"
#include "deploy/models/lm_corpus.h"

ABSL_FLAG(std::string, models_dir, "deploy/models", "The reference models.");
ABSL_FLAG(std::string, fashion_dir, "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX files.");
ABSL_FLAG(int, threads, 1, "CPU kernel threads for training.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the student initialisation, the projections, the adapters and the batches.");
ABSL_FLAG(int64_t, batch, 64, "Training batch size.");
ABSL_FLAG(bool, cnn, true, "Run part 1: CNN student with vs without distillation.");
ABSL_FLAG(std::string, seeds, "1,2,3", "Part 1 runs once per seed (initialisation, projections and batch order).");
ABSL_FLAG(int64_t, student_steps, 940, "Total student optimizer steps (940 x 64 = 1 epoch).");
ABSL_FLAG(int64_t, feature_steps, 200, "Of those, steps of the feature-alignment stage.");
ABSL_FLAG(double, learning_rate, 2e-3, "Student AdamW peak learning rate (cosine to 10% per stage).");
ABSL_FLAG(bool, normalize_features, true, "DistillOptions::normalize_features for the CNN student (the LM run uses plain MSE).");
ABSL_FLAG(double, temperature, 4.0, "Distillation temperature.");
ABSL_FLAG(double, hard_label_weight, 0.5, "alpha: weight of the hard-label cross-entropy in the output stage.");
ABSL_FLAG(bool, lora, true, "Run part 2: LoRA recovery of the pruned MLP.");
ABSL_FLAG(std::string, sparsities, "0.5,0.8", "Magnitude-pruning sparsities of the MLP weight matrices.");
ABSL_FLAG(int64_t, lora_rank, 8, "LoRA rank.");
ABSL_FLAG(double, lora_alpha, 16, "LoRA alpha (scale = alpha / rank).");
ABSL_FLAG(int64_t, lora_steps, 300, "LoRA fine-tune steps.");
ABSL_FLAG(double, lora_learning_rate, 5e-3, "LoRA AdamW peak learning rate.");
ABSL_FLAG(bool, lm, true, "Run part 3: a 2-layer LM student with vs without all three stages.");
ABSL_FLAG(std::string, lm_data_dir, "third_party/npm/node_modules/@stdlib", "The LM corpus (see train_lm).");
ABSL_FLAG(int64_t, lm_steps, 200, "LM student steps (each run).");
ABSL_FLAG(int64_t, lm_feature_steps, 40, "Of those, feature-alignment steps.");
ABSL_FLAG(int64_t, lm_attention_steps, 40, "Of those, attention-alignment steps.");
ABSL_FLAG(int64_t, lm_batch, 8, "LM windows of 128 tokens per step.");
ABSL_FLAG(double, lm_learning_rate, 2e-3, "LM student AdamW peak learning rate.");
ABSL_FLAG(int64_t, lm_eval_windows, 256, "Held-out 128-token windows for perplexity (train_lm's).");
ABSL_FLAG(std::string, out, "", "Also write the markdown here.");

namespace squeeze::deploy {
namespace {

namespace distill = core::distill;
namespace lora = core::lora;
namespace train = core::train;
using core::graph::DataType;
using core::graph::Graph;
using core::graph::Tensor;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// The student CNN, built the way train_fashion_mnist builds the reference
// CNN (He-normal weights, zero biases, normalisation in the graph) at a
// quarter of its widths and with a 32-wide hidden layer.
std::pair<Graph, std::set<std::string>> BuildStudentCnn(uint64_t seed) {
  core::graph::GraphBuilder b("student_cnn");
  std::mt19937 rng(seed);
  std::set<std::string> trainable;
  auto weight = [&](const std::string& name, std::vector<int64_t> shape, int64_t fan_in) {
    std::normal_distribution<float> normal(0, std::sqrt(2.0f / static_cast<float>(fan_in)));
    Tensor t(DataType::kFloat32, std::move(shape));
    for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = normal(rng);
    trainable.insert(name);
    return b.Initializer(name, std::move(t));
  };
  auto bias = [&](const std::string& name, int64_t size) {
    trainable.insert(name);
    return b.Initializer(name, Tensor(DataType::kFloat32, {size}));
  };
  auto conv = [&](const std::string& x, const std::string& name, int64_t in, int64_t out) {
    return b.Add("Conv", {x, weight(name + ".weight", {out, in, 3, 3}, in * 9), bias(name + ".bias", out)},
                 {{"pads", std::vector<int64_t>{1, 1, 1, 1}}, {"kernel_shape", std::vector<int64_t>{3, 3}}});
  };
  auto pool = [&](const std::string& x, const std::string& output) {
    return b.Add("MaxPool", {x}, {{"kernel_shape", std::vector<int64_t>{2, 2}}, {"strides", std::vector<int64_t>{2, 2}}},
                 output);
  };
  auto dense = [&](const std::string& x, const std::string& name, int64_t in, int64_t out, const std::string& output) {
    return b.Add("Gemm", {x, weight(name + ".weight", {out, in}, in), bias(name + ".bias", out)},
                 {{"transB", int64_t{1}}}, output);
  };
  std::string x = b.Add("Sub", {"image", b.FloatScalar("pixel_mean", 0.2860f)});
  x = b.Add("Div", {x, b.FloatScalar("pixel_std", 0.3530f)});
  x = pool(b.Add("Relu", {conv(x, "conv1", 1, 8)}), "student.pool1");
  x = pool(b.Add("Relu", {conv(x, "conv2", 8, 16)}), "student.pool2");
  x = b.Add("Relu", {dense(b.Add("Flatten", {x}), "fc1", 16 * 7 * 7, 32, "")}, {}, "student.hidden");
  dense(x, "fc2", 32, 10, "logits");
  b.AddInput({"image", DataType::kFloat32,
              std::vector<core::graph::Dim>{{std::nullopt, "batch"}, {1, ""}, {28, ""}, {28, ""}}});
  b.AddOutput({"logits", DataType::kFloat32, std::vector<core::graph::Dim>{{std::nullopt, "batch"}, {10, ""}}});
  return {b.Finish(), trainable};
}

// The teacher CNN's value for `op_type`'s `occurrence`-th node output (the
// reference graph names values "<op>_<index>_out").
absl::StatusOr<std::string> NthOutput(const Graph& graph, const std::string& op_type, int occurrence) {
  int seen = 0;
  for (const auto& node : graph.nodes) {
    if (node.op_type == op_type && seen++ == occurrence) return node.outputs.at(0);
  }
  return absl::NotFoundError(absl::StrCat("teacher has no ", op_type, " #", occurrence));
}

int64_t ParameterCount(const Graph& graph, const std::set<std::string>& names) {
  int64_t count = 0;
  for (const std::string& name : names) count += graph.initializers.at(name).num_elements();
  return count;
}

// Zeroes the `sparsity` fraction of smallest-magnitude weights of every
// Gemm/MatMul/Conv weight matrix (per matrix).
absl::StatusOr<Graph> MagnitudePrune(const Graph& graph, double sparsity) {
  Graph pruned = graph;
  SQ_ASSIGN_OR_RETURN(core::quant::ptq::LayerScan scan, core::quant::ptq::FindQuantizableLayers(graph));
  for (const auto& layer : scan.layers) {
    std::vector<float> w = core::quant::ptq::WeightMatrix(pruned, layer);
    std::vector<size_t> order(w.size());
    for (size_t i = 0; i < w.size(); ++i) order[i] = i;
    const size_t zeroed = static_cast<size_t>(sparsity * static_cast<double>(w.size()));
    std::nth_element(order.begin(), order.begin() + zeroed, order.end(),
                     [&](size_t a, size_t b) { return std::abs(w[a]) < std::abs(w[b]) || (std::abs(w[a]) == std::abs(w[b]) && a < b); });
    for (size_t i = 0; i < zeroed; ++i) w[order[i]] = 0;
    core::quant::ptq::SetWeightMatrix(&pruned, layer, w);
  }
  return pruned;
}

// Largest |a - b| over the logits of every test image.
absl::StatusOr<double> LargestLogitDifference(const Graph& a, const Graph& b, const core::data::Dataset& data) {
  SQ_ASSIGN_OR_RETURN(auto ea, core::runtime::Executor::Create(a, core::kernels::cpu::CreateCpuBackend()));
  SQ_ASSIGN_OR_RETURN(auto eb, core::runtime::Executor::Create(b, core::kernels::cpu::CreateCpuBackend()));
  double largest = 0;
  for (int64_t begin = 0; begin < data.NumExamples(); begin += 500) {
    std::vector<int64_t> indices;
    for (int64_t i = begin; i < std::min(data.NumExamples(), begin + 500); ++i) indices.push_back(i);
    const Tensor images = ImagesToTensor(data.inputs, indices);
    SQ_ASSIGN_OR_RETURN(auto oa, ea.Run({{"image", images}}));
    SQ_ASSIGN_OR_RETURN(auto ob, eb.Run({{"image", images}}));
    for (int64_t i = 0; i < oa[0].num_elements(); ++i) {
      largest = std::max(largest, static_cast<double>(std::abs(oa[0].data<float>()[i] - ob[0].data<float>()[i])));
    }
  }
  return largest;
}

// The residual stream after decoder layer `layer` of a core/hf LLaMA graph:
// the Add that consumes the MLP's down projection.
absl::StatusOr<std::string> LlamaLayerOutput(const Graph& graph, int64_t layer) {
  const std::string weight = absl::StrCat("model.layers.", layer, ".mlp.down_proj.weight");
  std::string transposed, product;
  for (const auto& node : graph.nodes) {
    if (node.op_type == "Transpose" && node.inputs.at(0) == weight) transposed = node.outputs.at(0);
    if (!transposed.empty() && node.op_type == "MatMul" && node.inputs.at(1) == transposed) product = node.outputs.at(0);
    if (!product.empty() && node.op_type == "Add" &&
        (node.inputs.at(0) == product || node.inputs.at(1) == product)) {
      return node.outputs.at(0);
    }
  }
  return absl::NotFoundError(absl::StrCat("no output of decoder layer ", layer));
}

// Batch `step` of a seeded shuffle of the training set, with labels.
distill::DistillBatchSource FashionBatches(const core::data::Dataset& train_set, const std::vector<int64_t>& labels,
                                           int64_t batch_size, uint64_t seed) {
  const std::vector<int64_t> order = core::data::ShuffledIndices(train_set.NumExamples(), seed + 1);
  return [&train_set, &labels, order, batch_size](int64_t step) -> absl::StatusOr<distill::DistillBatch> {
    distill::DistillBatch batch;
    std::vector<int64_t> indices;
    for (int64_t i = 0; i < batch_size; ++i) {
      const int64_t index = order[(step * batch_size + i) % train_set.NumExamples()];
      indices.push_back(index);
      batch.labels.push_back(labels[index]);
    }
    batch.feeds["image"] = ImagesToTensor(train_set.inputs, indices);
    return batch;
  };
}

struct PlainRun {
  Graph student;
  std::vector<double> losses;
  double seconds = 0;
};

// The control: `student` trained on the same batches with hard labels only,
// with the optimizer, learning-rate curve and clipping Distill uses.
absl::StatusOr<PlainRun> TrainWithoutDistillation(const Graph& student, const std::set<std::string>& trainable,
                                                  const distill::DistillBatchSource& batches, int64_t steps,
                                                  double rate, std::shared_ptr<const core::runtime::KernelBackend> backend) {
  const auto start = std::chrono::steady_clock::now();
  SQ_ASSIGN_OR_RETURN(train::GradientProgram program, train::GradientProgram::Create(student, backend, trainable));
  train::AdamW optimizer({rate, 0.9, 0.999, 1e-8, 0.0});
  PlainRun run;
  for (int64_t step = 0; step < steps; ++step) {
    optimizer.set_learning_rate(rate * (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * step / static_cast<double>(steps)))));
    SQ_ASSIGN_OR_RETURN(distill::DistillBatch batch, batches(step));
    SQ_ASSIGN_OR_RETURN(train::Tape tape, program.Forward(batch.feeds));
    SQ_ASSIGN_OR_RETURN(const Tensor* logits, program.Output(tape, "logits"));
    SQ_ASSIGN_OR_RETURN(train::LossAndGradient loss, train::SoftmaxCrossEntropy(*logits, batch.labels));
    SQ_ASSIGN_OR_RETURN(train::TensorMap gradients, program.Backward(tape, {{"logits", loss.gradient}}));
    train::ClipGradientNorm(&gradients, 5.0);
    SQ_RETURN_IF_ERROR(optimizer.Step(&program.mutable_parameters(), gradients));
    run.losses.push_back(loss.loss);
    if ((step + 1) % 20 == 0) {
      std::fprintf(stderr, "plain step %lld loss %.4f (%.0f s)\n", static_cast<long long>(step + 1), loss.loss,
                   Seconds(start));
    }
  }
  run.seconds = Seconds(start);
  run.student = program.graph();
  return run;
}

std::string CurveSummary(const std::vector<double>& losses) {
  const size_t window = std::max<size_t>(1, std::min<size_t>(50, losses.size() / 2));
  double first = 0, last = 0;
  for (size_t i = 0; i < window; ++i) {
    first += losses[i] / window;
    last += losses[losses.size() - 1 - i] / window;
  }
  return absl::StrFormat("%.4f -> %.4f (mean of the first / last %d steps)", first, last, window);
}

absl::Status Main() {
  const auto start = std::chrono::steady_clock::now();
  const std::string dir = absl::GetFlag(FLAGS_fashion_dir);
  SQ_ASSIGN_OR_RETURN(core::data::Dataset train_set, core::data::ReadIdxDataset(dir + "/train-images-idx3-ubyte.gz",
                                                                               dir + "/train-labels-idx1-ubyte.gz"));
  SQ_ASSIGN_OR_RETURN(core::data::Dataset test, core::data::ReadIdxDataset(dir + "/t10k-images-idx3-ubyte.gz",
                                                                          dir + "/t10k-labels-idx1-ubyte.gz"));
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> train_labels, core::data::LabelsAsInt64(train_set));
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const int64_t batch_size = absl::GetFlag(FLAGS_batch);
  const distill::DistillBatchSource batches = FashionBatches(train_set, train_labels, batch_size, seed);
  auto backend = core::kernels::cpu::CreateCpuBackend(absl::GetFlag(FLAGS_threads));
  const double temperature = absl::GetFlag(FLAGS_temperature);
  const double alpha = absl::GetFlag(FLAGS_hard_label_weight);
  std::string md;

  if (absl::GetFlag(FLAGS_cnn)) {
    SQ_ASSIGN_OR_RETURN(Graph teacher, core::onnx::LoadOnnxModel(absl::GetFlag(FLAGS_models_dir) + "/fashion_mnist_cnn.onnx"));
    SQ_ASSIGN_OR_RETURN(double teacher_accuracy, Accuracy(teacher, test));
    std::printf("teacher CNN: %.4f\n", teacher_accuracy);
    const int64_t steps = absl::GetFlag(FLAGS_student_steps);
    const int64_t feature_steps = absl::GetFlag(FLAGS_feature_steps);
    const double rate = absl::GetFlag(FLAGS_learning_rate);
    SQ_ASSIGN_OR_RETURN(std::string t_pool1, NthOutput(teacher, "MaxPool", 0));
    SQ_ASSIGN_OR_RETURN(std::string t_pool2, NthOutput(teacher, "MaxPool", 1));
    SQ_ASSIGN_OR_RETURN(std::string t_hidden, NthOutput(teacher, "Relu", 2));
    int64_t teacher_params = 0, student_params = 0;
    for (const auto& [name, tensor] : teacher.initializers) teacher_params += tensor.num_elements();
    absl::StrAppend(&md, "### Student CNN with vs without distillation\n\n",
                    absl::StrFormat("Teacher: deploy/models/fashion_mnist_cnn.onnx, %d parameters, %.2f%% test accuracy. "
                                    "Every run: %d steps of %d training images (%.2f epochs), AdamW lr %g cosine to 10%% "
                                    "(per stage), clip 5; per seed the same initialisation and the same batches for all three. "
                                    "Test accuracy %% on all %d test images.\n\n",
                                    teacher_params, 100 * teacher_accuracy, steps, batch_size,
                                    static_cast<double>(steps * batch_size) / train_set.NumExamples(), rate,
                                    test.NumExamples()),
                    absl::StrFormat("| seed | no distillation (hard labels) | output stage only (T=%g, alpha=%g) | "
                                    "three stages: %d features + 0 attention + %d output | three stages vs none |\n"
                                    "|---|---|---|---|---|\n",
                                    temperature, alpha, feature_steps, steps - feature_steps));
    std::vector<std::string> seed_texts = absl::StrSplit(absl::GetFlag(FLAGS_seeds), ',');
    double sums[3] = {0, 0, 0};
    int wins = 0;
    std::string curves;
    for (const std::string& text : seed_texts) {
      uint64_t run_seed = 0;
      if (!absl::SimpleAtoi(text, &run_seed)) {
        return absl::InvalidArgumentError(absl::StrCat("--seeds: '", text, "' is not a seed"));
      }
      auto [student, trainable] = BuildStudentCnn(run_seed);
      student_params = ParameterCount(student, trainable);
      const distill::DistillBatchSource run_batches = FashionBatches(train_set, train_labels, batch_size, run_seed);
      SQ_ASSIGN_OR_RETURN(PlainRun plain, TrainWithoutDistillation(student, trainable, run_batches, steps, rate, backend));
      SQ_ASSIGN_OR_RETURN(double plain_accuracy, Accuracy(plain.student, test));
      double accuracies[3] = {plain_accuracy, 0, 0};
      for (int variant = 1; variant <= 2; ++variant) {
        distill::DistillOptions options;
        options.feature_pairs = {{t_pool1, "student.pool1"}, {t_pool2, "student.pool2"}, {t_hidden, "student.hidden"}};
        const int64_t features = variant == 1 ? 0 : feature_steps;
        options.features = {features, rate};
        options.normalize_features = absl::GetFlag(FLAGS_normalize_features);
        options.output = {steps - features, rate};
        options.temperature = temperature;
        options.hard_label_weight = alpha;
        options.trainable = trainable;
        options.seed = run_seed;
        options.backend = backend;
        const auto t = std::chrono::steady_clock::now();
        SQ_ASSIGN_OR_RETURN(distill::DistillResult result,
                            distill::Distill(teacher, student, run_batches, options, [&](const distill::DistillProgress& p) {
                              if (p.step % 100 == 0) {
                                std::fprintf(stderr, "seed %d distill %s step %lld/%lld loss %.4f (%.0f s)\n",
                                             static_cast<int>(run_seed), distill::StageName(p.stage).c_str(),
                                             static_cast<long long>(p.step), static_cast<long long>(p.total), p.loss,
                                             Seconds(t));
                              }
                              return true;
                            }));
        SQ_ASSIGN_OR_RETURN(accuracies[variant], Accuracy(result.student, test));
        if (variant == 2 && curves.empty()) {
          curves = absl::StrCat("- loss curves (seed ", run_seed, "): no distillation ", CurveSummary(plain.losses));
          for (const auto& curve : result.curves) {
            absl::StrAppend(&curves, "; ", distill::StageName(curve.stage), " stage ", CurveSummary(curve.losses));
          }
          absl::StrAppend(&curves, "\n");
        }
      }
      for (int i = 0; i < 3; ++i) sums[i] += accuracies[i];
      wins += accuracies[2] > accuracies[0];
      const std::string row = absl::StrFormat("| %d | %.2f | %.2f | %.2f | %+.2f points |\n", run_seed,
                                              100 * accuracies[0], 100 * accuracies[1], 100 * accuracies[2],
                                              100 * (accuracies[2] - accuracies[0]));
      std::printf("%s", row.c_str());
      std::fflush(stdout);
      absl::StrAppend(&md, row);
    }
    const double n = static_cast<double>(seed_texts.size());
    absl::StrAppend(&md, absl::StrFormat("| mean | %.2f | %.2f | %.2f | %+.2f points |\n\n", 100 * sums[0] / n,
                                         100 * sums[1] / n, 100 * sums[2] / n, 100 * (sums[2] - sums[0]) / n));
    absl::StrAppend(&md, absl::StrFormat("- the three-stage student (%d parameters, %.1f%% of the teacher's) %s the student "
                                         "trained without distillation in %d of %d seeds; mean %+.2f points\n",
                                         student_params, 100.0 * student_params / teacher_params,
                                         sums[2] > sums[0] ? "beats" : "does NOT beat", wins, seed_texts.size(),
                                         100 * (sums[2] - sums[0]) / n));
    absl::StrAppend(&md, "- feature pairs (teacher -> student): ", t_pool1, " [32,14,14] <- student.pool1 [8,14,14] (1x1 conv projection), ",
                    t_pool2, " [64,7,7] <- student.pool2 [16,7,7] (1x1 conv projection), ", t_hidden,
                    " [128] <- student.hidden [32] (linear projection); the projections are dropped after the stage\n");
    absl::StrAppend(&md, "- the attention stage does not apply to a CNN (no attention probabilities): 0 steps\n", curves, "\n");
    std::printf("%s", md.c_str());
    std::fflush(stdout);
  }

  if (absl::GetFlag(FLAGS_lora)) {
    SQ_ASSIGN_OR_RETURN(Graph mlp, core::onnx::LoadOnnxModel(absl::GetFlag(FLAGS_models_dir) + "/fashion_mnist_mlp.onnx"));
    SQ_ASSIGN_OR_RETURN(double mlp_accuracy, Accuracy(mlp, test));
    std::printf("MLP: %.4f\n", mlp_accuracy);
    const int64_t rank = absl::GetFlag(FLAGS_lora_rank);
    const double lora_alpha = absl::GetFlag(FLAGS_lora_alpha);
    const int64_t steps = absl::GetFlag(FLAGS_lora_steps);
    std::string section = absl::StrFormat(
        "### LoRA recovery of the magnitude-pruned MLP\n\n"
        "MLP baseline (deploy/models/fashion_mnist_mlp.onnx): %.2f%%. Each weight matrix pruned to the sparsity "
        "by magnitude; LoRA rank %d, alpha %g on all 3 Gemm layers; %d steps of %d images, AdamW lr %g; loss = "
        "core/distill output stage from the unpruned MLP (T=%g) + %g x hard-label cross-entropy.\n\n"
        "| sparsity | pruned %% | LoRA adapted %% | merged (dense) %% | merged, zeros kept %% | trainable / total params | max abs logit diff merged vs adapted | seconds |\n"
        "|---|---|---|---|---|---|---|---|\n",
        100 * mlp_accuracy, rank, lora_alpha, steps, batch_size, absl::GetFlag(FLAGS_lora_learning_rate),
        temperature, alpha);
    for (absl::string_view text : absl::StrSplit(absl::GetFlag(FLAGS_sparsities), ',')) {
      double sparsity = 0;
      if (!absl::SimpleAtod(text, &sparsity) || sparsity < 0 || sparsity >= 1) {
        return absl::InvalidArgumentError(absl::StrCat("--sparsities: '", std::string(text), "' is not in [0, 1)"));
      }
      SQ_ASSIGN_OR_RETURN(Graph pruned, MagnitudePrune(mlp, sparsity));
      SQ_ASSIGN_OR_RETURN(double pruned_accuracy, Accuracy(pruned, test));
      SQ_ASSIGN_OR_RETURN(lora::LoraGraph adapted, lora::AddLoraAdapters(pruned, {rank, lora_alpha, "", seed}));
      distill::DistillOptions options;
      options.output = {steps, absl::GetFlag(FLAGS_lora_learning_rate)};
      options.temperature = temperature;
      options.hard_label_weight = alpha;
      options.trainable = adapted.trainable;
      options.backend = backend;
      const auto t = std::chrono::steady_clock::now();
      SQ_ASSIGN_OR_RETURN(distill::DistillResult result, distill::Distill(mlp, adapted.graph, batches, options));
      const double seconds = Seconds(t);
      SQ_ASSIGN_OR_RETURN(double adapted_accuracy, Accuracy(result.student, test));
      SQ_ASSIGN_OR_RETURN(Graph merged, lora::MergeLoraAdapters(result.student, adapted.adapters));
      SQ_ASSIGN_OR_RETURN(double merged_accuracy, Accuracy(merged, test));
      SQ_ASSIGN_OR_RETURN(Graph sparse, lora::MergeLoraAdapters(result.student, adapted.adapters, {true}));
      SQ_ASSIGN_OR_RETURN(double sparse_accuracy, Accuracy(sparse, test));
      SQ_ASSIGN_OR_RETURN(double difference, LargestLogitDifference(result.student, merged, test));
      int64_t total = 0;
      for (const auto& [name, tensor] : pruned.initializers) total += tensor.num_elements();
      absl::StrAppend(&section, absl::StrFormat("| %.0f%% | %.2f | %.2f | %.2f | %.2f | %d / %d | %.2g | %.0f |\n",
                                                100 * sparsity, 100 * pruned_accuracy, 100 * adapted_accuracy,
                                                100 * merged_accuracy, 100 * sparse_accuracy,
                                                adapted.trainable_parameters, total, difference, seconds));
      std::printf("sparsity %.2f: pruned %.4f, adapted %.4f, merged %.4f, merged keeping zeros %.4f, diff %.3g\n",
                  sparsity, pruned_accuracy, adapted_accuracy, merged_accuracy, sparse_accuracy, difference);
      std::fflush(stdout);
    }
    absl::StrAppend(&section, "\n- \"merged (dense)\" folds W += scale B A into every weight and equals the adapted graph (last-but-one column); "
                              "it fills the pruned zeros. \"zeros kept\" (MergeOptions::keep_zeros) leaves pruned weights at zero, "
                              "so the model stays as sparse as it was pruned, at the cost shown.\n\n");
    absl::StrAppend(&md, section);
    std::printf("%s", section.c_str());
  }
  if (absl::GetFlag(FLAGS_lm)) {
    constexpr int64_t kContext = 128;
    const std::string dir = absl::GetFlag(FLAGS_models_dir) + "/lm";
    SQ_ASSIGN_OR_RETURN(core::hf::HfCheckpoint teacher, core::hf::LoadHfCheckpoint(dir));
    SQ_ASSIGN_OR_RETURN(core::text::BpeTokenizer tokenizer,
                        core::text::BpeTokenizer::FromVocabAndMerges(dir + "/vocab.json", dir + "/merges.txt"));
    SQ_ASSIGN_OR_RETURN(Corpus corpus, ReadCorpus(absl::GetFlag(FLAGS_lm_data_dir)));
    const std::vector<int64_t> train_tokens = Tokenize(corpus.train, tokenizer);
    const std::vector<int64_t> held_out = Tokenize(corpus.held_out, tokenizer);
    const int64_t eval_windows = absl::GetFlag(FLAGS_lm_eval_windows);
    auto perplexity = [&](const Graph& g) -> absl::StatusOr<double> {
      SQ_ASSIGN_OR_RETURN(auto report, HeldOutPerplexity(g, held_out, kContext, eval_windows, 8));
      return report.perplexity;
    };
    SQ_ASSIGN_OR_RETURN(double teacher_ppl, perplexity(teacher.graph));
    std::printf("LM teacher: perplexity %.2f\n", teacher_ppl);
    // The student: the teacher's config with 2 layers and 2 query heads
    // sharing 1 key/value head (head_dim 48 kept), from the HF initialiser.
    core::hf::HfConfig config = teacher.config;
    config.num_layers = 2;
    config.num_heads = 2;
    config.num_kv_heads = 1;
    SQ_ASSIGN_OR_RETURN(Graph student, core::hf::BuildCausalLmGraph(config, core::hf::InitializeWeights(config, seed)));
    const std::set<std::string> trainable = core::hf::CheckpointTensorNames(student);
    const int64_t lm_batch = absl::GetFlag(FLAGS_lm_batch);
    std::mt19937_64 rng(seed + 2);
    std::uniform_int_distribution<int64_t> window_start(0, static_cast<int64_t>(train_tokens.size()) - kContext - 2);
    std::vector<std::vector<int64_t>> starts;
    const int64_t steps = absl::GetFlag(FLAGS_lm_steps);
    for (int64_t step = 0; step < steps; ++step) {
      starts.emplace_back();
      for (int64_t i = 0; i < lm_batch; ++i) starts.back().push_back(window_start(rng));
    }
    auto lm_batches = [&](int64_t step) -> absl::StatusOr<distill::DistillBatch> {
      auto [inputs, targets] = Windows(train_tokens, starts.at(step), kContext);
      distill::DistillBatch batch;
      batch.feeds["input_ids"] = std::move(inputs);
      batch.labels = std::move(targets);
      return batch;
    };
    const double rate = absl::GetFlag(FLAGS_lm_learning_rate);

    SQ_ASSIGN_OR_RETURN(PlainRun plain, TrainWithoutDistillation(student, trainable, lm_batches, steps, rate, backend));
    const std::vector<double>& plain_losses = plain.losses;
    const double plain_seconds = plain.seconds;
    SQ_ASSIGN_OR_RETURN(double plain_ppl, perplexity(plain.student));
    std::printf("LM student without distillation: perplexity %.2f (%.0f s)\n", plain_ppl, plain_seconds);

    distill::DistillOptions options;
    const std::vector<std::string> teacher_attention = distill::AttentionProbabilityValues(teacher.graph);
    const std::vector<std::string> student_attention = distill::AttentionProbabilityValues(student);
    if (teacher_attention.size() != 4 || student_attention.size() != 2) {
      return absl::InternalError("LM: expected 4 teacher and 2 student attention Softmax nodes");
    }
    // Student layer j learns from teacher layer 2 j + 1.
    for (int64_t j = 0; j < 2; ++j) {
      SQ_ASSIGN_OR_RETURN(std::string t_layer, LlamaLayerOutput(teacher.graph, 2 * j + 1));
      SQ_ASSIGN_OR_RETURN(std::string s_layer, LlamaLayerOutput(student, j));
      options.feature_pairs.push_back({t_layer, s_layer});
      options.attention_pairs.push_back({teacher_attention[2 * j + 1], student_attention[j]});
    }
    const int64_t feature_steps = absl::GetFlag(FLAGS_lm_feature_steps);
    const int64_t attention_steps = absl::GetFlag(FLAGS_lm_attention_steps);
    options.features = {feature_steps, rate};
    options.attention = {attention_steps, rate};
    options.output = {steps - feature_steps - attention_steps, rate};
    options.heads = distill::HeadMatching::kGroups;
    options.temperature = temperature;
    options.hard_label_weight = alpha;
    options.trainable = trainable;
    options.seed = seed;
    options.backend = backend;
    auto t = std::chrono::steady_clock::now();
    SQ_ASSIGN_OR_RETURN(distill::DistillResult result,
                        distill::Distill(teacher.graph, student, lm_batches, options, [&](const distill::DistillProgress& p) {
                          if (p.step % 20 == 0) {
                            std::fprintf(stderr, "LM distill %s step %lld/%lld loss %.4f (%.0f s)\n",
                                         distill::StageName(p.stage).c_str(), static_cast<long long>(p.step),
                                         static_cast<long long>(p.total), p.loss, Seconds(t));
                          }
                          return true;
                        }));
    const double distill_seconds = Seconds(t);
    SQ_ASSIGN_OR_RETURN(double distill_ppl, perplexity(result.student));
    std::printf("LM student with distillation: perplexity %.2f (%.0f s)\n", distill_ppl, distill_seconds);
    std::string section = absl::StrFormat(
        "### 2-layer LM student with vs without the three stages\n\n"
        "| model | parameters | training | held-out perplexity (%d windows of 128) | seconds |\n|---|---|---|---|---|\n"
        "| teacher LM (deploy/models/lm, 4 layers, 4 heads / 2 kv) | %d | — | %.2f | — |\n"
        "| student (2 layers, 2 heads / 1 kv), no distillation | %d | %d steps next-token cross-entropy | %.2f | %.0f |\n"
        "| student, three-stage distillation | %d | %d features + %d attention + %d output (T=%g, alpha=%g) | %.2f | %.0f |\n\n",
        eval_windows, ParameterCount(teacher.graph, core::hf::CheckpointTensorNames(teacher.graph)), teacher_ppl,
        ParameterCount(student, trainable), steps, plain_ppl, plain_seconds, ParameterCount(student, trainable),
        feature_steps, attention_steps, steps - feature_steps - attention_steps, temperature, alpha, distill_ppl,
        distill_seconds);
    absl::StrAppend(&section, absl::StrFormat(
        "- distillation %s the student without it (%s perplexity by %.1f%%); %d steps of %d windows each, same windows, "
        "same initialisation, AdamW lr %g cosine to 10%% per stage, clip 5\n",
        distill_ppl < plain_ppl ? "beats" : "does NOT beat", distill_ppl < plain_ppl ? "lower" : "higher",
        100 * std::abs(distill_ppl / plain_ppl - 1), steps, lm_batch, rate));
    absl::StrAppend(&section, "- features: residual stream after teacher layers 1 and 3 -> student layers 0 and 1 (width 192 on both sides, no projection); "
                              "attention: the Softmax outputs of the same layers, 4 teacher heads in 2 groups per student head (HeadMatching::kGroups)\n");
    absl::StrAppend(&section, "- loss curves: no distillation ", CurveSummary(plain_losses));
    for (const auto& curve : result.curves) {
      absl::StrAppend(&section, "; ", distill::StageName(curve.stage), " stage ", CurveSummary(curve.losses));
    }
    absl::StrAppend(&section, "\n\n");
    std::printf("%s", section.c_str());
    absl::StrAppend(&md, section);
  }
  absl::StrAppend(&md, absl::StrFormat("Whole report: %.0f s with --threads=%d.\n", Seconds(start), absl::GetFlag(FLAGS_threads)));
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
    std::fprintf(stderr, "squeeze-distill-report: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
