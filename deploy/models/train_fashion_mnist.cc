// train_fashion_mnist: trains the reference Fashion-MNIST classifiers with
// Squeeze's own engine (graph IR, CPU kernels, autograd, AdamW) and saves
// them as ONNX. The one command that retrains them is
// scripts/train-reference-models.sh; docs/models.md records the results.
//
//   train_fashion_mnist --model=cnn --epochs=4 --out=deploy/models/fashion_mnist_cnn.onnx
//
// The graphs take images as float32 [N, 1, 28, 28] pixels in [0, 1] (the
// normalisation is part of the graph) and return logits [N, 10].
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "core/data/dataset.h"
#include "core/data/idx.h"
#include "core/graph/builder.h"
#include "core/graph/graph.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/onnx/onnx_model.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"
#include "core/train/autograd.h"
#include "core/train/losses.h"
#include "core/train/optimizers.h"
#include "deploy/models/fashion_mnist_data.h"

ABSL_FLAG(std::string, model, "cnn", "cnn or mlp");
ABSL_FLAG(int, epochs, 4, "Passes over the training set.");
ABSL_FLAG(int, batch, 64, "Examples per optimizer step.");
ABSL_FLAG(double, learning_rate, 1e-3, "AdamW learning rate (cosine-decayed to 5%).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the initialisation and the shuffles.");
ABSL_FLAG(std::string, data_dir, "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX files.");
ABSL_FLAG(std::string, out, "", "Where to write the ONNX model.");
ABSL_FLAG(int, limit, 0, "Use only this many training examples (0: all), for quick checks.");

namespace squeeze::deploy {
namespace {

using core::graph::DataType;
using core::graph::Graph;
using core::graph::Node;
using core::graph::Tensor;

// Fashion-MNIST training-set pixel mean and standard deviation (of x/255).
constexpr float kPixelMean = 0.2860f;
constexpr float kPixelStd = 0.3530f;

// The shared GraphBuilder plus the initialised layers these models use.
class ModelBuilder {
 public:
  explicit ModelBuilder(uint64_t seed) : rng_(seed) {}

  std::string Add(const std::string& op, std::vector<std::string> inputs,
                  std::map<std::string, core::graph::Attribute> attributes = {}) {
    return builder_.Add(op, std::move(inputs), std::move(attributes));
  }

  // He-normal weights (fan_in) and zero biases.
  std::string Weight(const std::string& name, std::vector<int64_t> shape, int64_t fan_in) {
    std::normal_distribution<float> normal(0, std::sqrt(2.0f / static_cast<float>(fan_in)));
    Tensor t(DataType::kFloat32, std::move(shape));
    for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = normal(rng_);
    trainable_.insert(name);
    return builder_.Initializer(name, std::move(t));
  }
  std::string Bias(const std::string& name, int64_t size) {
    trainable_.insert(name);
    return builder_.Initializer(name, Tensor(DataType::kFloat32, {size}));
  }
  std::string Constant(const std::string& name, float value) { return builder_.FloatScalar(name, value); }

  std::string Dense(const std::string& x, const std::string& name, int64_t in, int64_t out) {
    return Add("Gemm", {x, Weight(name + ".weight", {out, in}, in), Bias(name + ".bias", out)},
               {{"transB", int64_t{1}}});
  }
  std::string Conv3x3(const std::string& x, const std::string& name, int64_t in, int64_t out) {
    return Add("Conv", {x, Weight(name + ".weight", {out, in, 3, 3}, in * 9), Bias(name + ".bias", out)},
               {{"pads", std::vector<int64_t>{1, 1, 1, 1}}, {"kernel_shape", std::vector<int64_t>{3, 3}}});
  }
  std::string MaxPool2x2(const std::string& x) {
    return Add("MaxPool", {x}, {{"kernel_shape", std::vector<int64_t>{2, 2}},
                                {"strides", std::vector<int64_t>{2, 2}}});
  }

  // Renames the output of the last node (the one producing `logits`).
  Graph Finish(const std::string& logits) {
    builder_.AddInput({"image", DataType::kFloat32,
                       std::vector<core::graph::Dim>{{std::nullopt, "batch"}, {1, ""}, {28, ""}, {28, ""}}});
    builder_.AddOutput({"logits", DataType::kFloat32,
                        std::vector<core::graph::Dim>{{std::nullopt, "batch"}, {10, ""}}});
    Graph graph = builder_.Finish();
    graph.nodes.back().outputs[0] = "logits";
    (void)logits;
    return graph;
  }
  const std::set<std::string>& trainable() const { return trainable_; }

 private:
  core::graph::GraphBuilder builder_{"fashion_mnist"};
  std::set<std::string> trainable_;
  std::mt19937 rng_;
};

std::pair<Graph, std::set<std::string>> BuildModel(const std::string& kind, uint64_t seed) {
  ModelBuilder b(seed);
  std::string x = b.Add("Sub", {"image", b.Constant("pixel_mean", kPixelMean)});
  x = b.Add("Div", {x, b.Constant("pixel_std", kPixelStd)});
  if (kind == "cnn") {
    x = b.MaxPool2x2(b.Add("Relu", {b.Conv3x3(x, "conv1", 1, 32)}));
    x = b.MaxPool2x2(b.Add("Relu", {b.Conv3x3(x, "conv2", 32, 64)}));
    x = b.Add("Flatten", {x});
    x = b.Add("Relu", {b.Dense(x, "fc1", 64 * 7 * 7, 128)});
    x = b.Dense(x, "fc2", 128, 10);
  } else {
    x = b.Add("Flatten", {x});
    x = b.Add("Relu", {b.Dense(x, "fc1", 784, 256)});
    x = b.Add("Relu", {b.Dense(x, "fc2", 256, 128)});
    x = b.Dense(x, "fc3", 128, 10);
  }
  Graph graph = b.Finish(x);
  return {graph, b.trainable()};
}

absl::Status Main() {
  const std::string kind = absl::GetFlag(FLAGS_model);
  if (kind != "cnn" && kind != "mlp") return absl::InvalidArgumentError("--model must be cnn or mlp");
  const std::string dir = absl::GetFlag(FLAGS_data_dir);
  SQ_ASSIGN_OR_RETURN(core::data::Dataset train,
                      core::data::ReadIdxDataset(dir + "/train-images-idx3-ubyte.gz",
                                                 dir + "/train-labels-idx1-ubyte.gz"));
  SQ_ASSIGN_OR_RETURN(core::data::Dataset test,
                      core::data::ReadIdxDataset(dir + "/t10k-images-idx3-ubyte.gz",
                                                 dir + "/t10k-labels-idx1-ubyte.gz"));
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> train_labels, core::data::LabelsAsInt64(train));
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  auto [graph, trainable] = BuildModel(kind, seed);
  SQ_ASSIGN_OR_RETURN(core::train::GradientProgram program,
                      core::train::GradientProgram::Create(graph, core::kernels::cpu::CreateCpuBackend(), trainable));
  core::train::AdamW optimizer({absl::GetFlag(FLAGS_learning_rate), 0.9, 0.999, 1e-8, 1e-4});

  int64_t examples = train.NumExamples();
  if (absl::GetFlag(FLAGS_limit) > 0) examples = std::min<int64_t>(examples, absl::GetFlag(FLAGS_limit));
  const int batch = absl::GetFlag(FLAGS_batch);
  const int epochs = absl::GetFlag(FLAGS_epochs);
  const int64_t steps_per_epoch = examples / batch;
  const int64_t total_steps = steps_per_epoch * epochs;
  const double base_rate = absl::GetFlag(FLAGS_learning_rate);
  int64_t step = 0;
  double train_seconds = 0;
  for (int epoch = 0; epoch < epochs; ++epoch) {
    std::vector<int64_t> order = core::data::ShuffledIndices(examples, seed * 1000 + epoch);
    double loss_sum = 0;
    const auto start = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < steps_per_epoch; ++s, ++step) {
      // Cosine decay from the base rate to 5% of it.
      const double progress = static_cast<double>(step) / total_steps;
      optimizer.set_learning_rate(base_rate * (0.05 + 0.95 * 0.5 * (1 + std::cos(M_PI * progress))));
      std::vector<int64_t> indices(order.begin() + s * batch, order.begin() + (s + 1) * batch);
      std::vector<int64_t> labels;
      for (int64_t i : indices) labels.push_back(train_labels[i]);
      SQ_ASSIGN_OR_RETURN(core::train::Tape tape, program.Forward({{"image", ImagesToTensor(train.inputs, indices)}}));
      SQ_ASSIGN_OR_RETURN(const Tensor* logits, program.Output(tape, "logits"));
      SQ_ASSIGN_OR_RETURN(core::train::LossAndGradient loss, core::train::SoftmaxCrossEntropy(*logits, labels));
      SQ_ASSIGN_OR_RETURN(core::train::TensorMap gradients, program.Backward(tape, {{"logits", loss.gradient}}));
      core::train::ClipGradientNorm(&gradients, 5.0);
      SQ_RETURN_IF_ERROR(optimizer.Step(&program.mutable_parameters(), gradients));
      loss_sum += loss.loss;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    train_seconds += seconds;
    SQ_ASSIGN_OR_RETURN(double accuracy, Accuracy(program.graph(), test));
    std::printf("epoch %d: loss %.4f, test accuracy %.2f%%, %.0f samples/s\n", epoch + 1,
                loss_sum / steps_per_epoch, 100 * accuracy, steps_per_epoch * batch / seconds);
    std::fflush(stdout);
  }
  const std::string out = absl::GetFlag(FLAGS_out);
  if (!out.empty()) {
    SQ_RETURN_IF_ERROR(core::onnx::SaveOnnxModel(program.graph(), out));
    // Read the file back and measure what was saved, not what is in memory.
    SQ_ASSIGN_OR_RETURN(Graph saved, core::onnx::LoadOnnxModel(out));
    SQ_ASSIGN_OR_RETURN(double accuracy, Accuracy(saved, test));
    std::printf("saved %s: test accuracy %.2f%% (%lld test images), trained %d epochs in %.0f s "
                "(%.0f samples/s)\n",
                out.c_str(), 100 * accuracy, static_cast<long long>(test.NumExamples()), epochs,
                train_seconds, step * batch / train_seconds);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace squeeze::deploy

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::Status status = squeeze::deploy::Main();
  if (!status.ok()) {
    std::fprintf(stderr, "train_fashion_mnist: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
