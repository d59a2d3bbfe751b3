// squeeze-qat-report: quantization-aware training of the Fashion-MNIST CNN
// to W4A8 (core/quant/qat) against W4A8 post-training quantization
// (core/quant/ptq), measured in one run on the same data: all 10000 test
// images. Prints a markdown table (also written to --out) and whether QAT
// recovers at least half of the PTQ accuracy loss (issue 4's goal).
//
//   squeeze-qat-report --steps=300 --batch=64 --out=/tmp/qat.md
//
// PTQ baselines: 4-bit per-channel symmetric weights (RTN and GPTQ), 8-bit
// static activations from the min-max observer, calibrated on
// --calibration_images training images drawn with --seed. QAT starts from
// the float model with the same calibration, trains on training images
// shuffled with --seed, and is exported through ExportQdqGraph with its
// learned scales; the exported graph's accuracy is reported too. A control
// row trains the float model on the same batches without quantization.
#include <chrono>
#include <cmath>
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/data/dataset.h"
#include "core/data/idx.h"
#include "core/model/file_io.h"
#include "core/onnx/onnx_model.h"
#include "core/quant/export/onnx_qdq.h"
#include "core/quant/ptq/ptq.h"
#include "core/quant/qat/qat.h"
#include "core/status_macros.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/train/autograd.h"
#include "core/train/losses.h"
#include "core/train/optimizers.h"
#include "deploy/models/fashion_mnist_data.h"

ABSL_FLAG(std::string, models_dir, "deploy/models", "The reference models.");
ABSL_FLAG(std::string, fashion_dir, "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX files.");
ABSL_FLAG(int64_t, calibration_images, 512, "Calibration images (training split).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the calibration and training draws.");
ABSL_FLAG(int64_t, steps, 300, "QAT optimizer steps per run.");
ABSL_FLAG(int64_t, batch, 64, "QAT batch size.");
ABSL_FLAG(double, learning_rate, 1e-4, "QAT peak learning rate (weights).");
ABSL_FLAG(double, scale_learning_rate, 1e-4, "QAT peak learning rate (scales).");
ABSL_FLAG(bool, distillation, true, "Also run QAT with distillation from the float model.");
ABSL_FLAG(std::string, out, "", "Also write the markdown here.");

namespace squeeze::deploy {
namespace {

namespace ptq = core::quant::ptq;
namespace qat = core::quant::qat;
using core::graph::Graph;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

struct Row {
  std::string method;
  double accuracy = 0;
  double seconds = 0;
};

ptq::PtqOptions W4A8(ptq::WeightMethod method) {
  ptq::PtqOptions options;
  options.weights.emplace();
  options.weights->method = method;
  options.weights->format = {4, 0, false};
  options.activations = ptq::ActivationQuantization{ptq::Observer::kMinMax, 99.99};
  return options;
}

// The QAT model through ExportQdqGraph: int8-container weights with the
// learned scales, activation QDQ from the learned scales and zero points.
// Every activation goes out as uint8: an int8 one (zero 0, scale s) is the
// same grid as uint8 with zero 128 and scale s, which is what
// ExportQdqGraph's asymmetric mode computes from [-128 s, 127 s].
absl::StatusOr<Graph> Export(const Graph& float_graph, const qat::QatResult& result) {
  core::quant_export::QdqOptions options;
  for (const auto& a : result.activations) options.activation_ranges[a.value] = {a.min, a.max};
  return core::quant_export::ExportQdqGraph(float_graph, result.packed, options);
}

// The control: the float model trained on the same batches with the same
// optimizer and learning-rate curve but no quantization, to tell what QAT
// gains from training at all from what it recovers.
absl::StatusOr<Graph> FineTuneFloat(const Graph& graph, const qat::QatBatchSource& source, int64_t steps,
                                    double learning_rate) {
  namespace train = core::train;
  SQ_ASSIGN_OR_RETURN(train::GradientProgram program,
                      train::GradientProgram::Create(graph, core::kernels::cpu::CreateCpuBackend()));
  train::AdamW optimizer({learning_rate, 0.9, 0.999, 1e-8, 0.0});
  const std::string output = graph.outputs.at(0).name;
  for (int64_t step = 0; step < steps; ++step) {
    optimizer.set_learning_rate(learning_rate * 0.5 * (1 + std::cos(M_PI * step / static_cast<double>(steps))));
    SQ_ASSIGN_OR_RETURN(qat::QatBatch batch, source(step));
    SQ_ASSIGN_OR_RETURN(train::Tape tape, program.Forward(batch.feeds));
    SQ_ASSIGN_OR_RETURN(const core::graph::Tensor* logits, program.Output(tape, output));
    SQ_ASSIGN_OR_RETURN(train::LossAndGradient loss, train::SoftmaxCrossEntropy(*logits, batch.labels));
    SQ_ASSIGN_OR_RETURN(train::TensorMap gradients, program.Backward(tape, {{output, loss.gradient}}));
    SQ_RETURN_IF_ERROR(optimizer.Step(&program.mutable_parameters(), gradients));
  }
  return program.graph();
}

absl::Status Main() {
  const auto start = std::chrono::steady_clock::now();
  const std::string dir = absl::GetFlag(FLAGS_fashion_dir);
  SQ_ASSIGN_OR_RETURN(core::data::Dataset train, core::data::ReadIdxDataset(dir + "/train-images-idx3-ubyte.gz",
                                                                           dir + "/train-labels-idx1-ubyte.gz"));
  SQ_ASSIGN_OR_RETURN(core::data::Dataset test, core::data::ReadIdxDataset(dir + "/t10k-images-idx3-ubyte.gz",
                                                                          dir + "/t10k-labels-idx1-ubyte.gz"));
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> train_labels, core::data::LabelsAsInt64(train));
  SQ_ASSIGN_OR_RETURN(Graph graph, core::onnx::LoadOnnxModel(absl::GetFlag(FLAGS_models_dir) + "/fashion_mnist_cnn.onnx"));
  const std::vector<int64_t> order = core::data::ShuffledIndices(train.NumExamples(), absl::GetFlag(FLAGS_seed));
  const int64_t count = std::min<int64_t>(absl::GetFlag(FLAGS_calibration_images), train.NumExamples());
  std::vector<ptq::CalibrationBatch> calibration;
  for (int64_t begin = 0; begin < count; begin += 128) {
    std::vector<int64_t> indices(order.begin() + begin, order.begin() + std::min(count, begin + 128));
    calibration.push_back({{"image", ImagesToTensor(train.inputs, indices)}});
  }

  std::vector<Row> rows;
  auto t = std::chrono::steady_clock::now();
  SQ_ASSIGN_OR_RETURN(double fp32, Accuracy(graph, test));
  rows.push_back({"fp32", fp32, 0});
  std::printf("fp32: %.4f\n", fp32);
  for (auto method : {ptq::WeightMethod::kRtn, ptq::WeightMethod::kGptq}) {
    t = std::chrono::steady_clock::now();
    SQ_ASSIGN_OR_RETURN(ptq::PtqResult result, ptq::QuantizeGraph(graph, calibration, W4A8(method)));
    const double seconds = Seconds(t);
    SQ_ASSIGN_OR_RETURN(double accuracy, Accuracy(result.graph, test));
    rows.push_back({absl::StrCat("PTQ W4A8 (", ptq::WeightMethodName(method), " per-channel, a8 minmax)"), accuracy,
                    seconds});
    std::printf("%s: %.4f (%.1f s)\n", rows.back().method.c_str(), accuracy, seconds);
    std::fflush(stdout);
  }

  const int64_t batch_size = absl::GetFlag(FLAGS_batch);
  const int64_t steps = absl::GetFlag(FLAGS_steps);
  // Training images in a second seeded order (not the calibration draw's).
  const std::vector<int64_t> train_order =
      core::data::ShuffledIndices(train.NumExamples(), absl::GetFlag(FLAGS_seed) + 1);
  auto source = [&](int64_t step) -> absl::StatusOr<qat::QatBatch> {
    qat::QatBatch batch;
    std::vector<int64_t> indices;
    for (int64_t i = 0; i < batch_size; ++i) {
      const int64_t index = train_order[(step * batch_size + i) % train.NumExamples()];
      indices.push_back(index);
      batch.labels.push_back(train_labels[index]);
    }
    batch.feeds["image"] = ImagesToTensor(train.inputs, indices);
    return batch;
  };
  t = std::chrono::steady_clock::now();
  SQ_ASSIGN_OR_RETURN(Graph tuned, FineTuneFloat(graph, source, steps, absl::GetFlag(FLAGS_learning_rate)));
  const double tune_seconds = Seconds(t);
  SQ_ASSIGN_OR_RETURN(double tuned_accuracy, Accuracy(tuned, test));
  std::printf("control fp32 fine-tuned: %.4f\n", tuned_accuracy);
  std::vector<std::optional<qat::Distillation>> variants = {std::nullopt};
  if (absl::GetFlag(FLAGS_distillation)) variants.push_back(qat::Distillation{4.0, 0.5});
  std::vector<std::string> notes;
  for (const auto& distillation : variants) {
    qat::QatOptions options;
    options.steps = steps;
    options.learning_rate = absl::GetFlag(FLAGS_learning_rate);
    options.scale_learning_rate = absl::GetFlag(FLAGS_scale_learning_rate);
    options.distillation = distillation;
    const std::string name = distillation ? absl::StrFormat("QAT W4A8 + distillation (T=%.0f, KL weight %.1f)",
                                                            distillation->temperature, distillation->weight)
                                          : std::string("QAT W4A8 (cross-entropy)");
    t = std::chrono::steady_clock::now();
    SQ_ASSIGN_OR_RETURN(qat::QatResult result,
                        qat::TrainQuantizationAware(graph, calibration, source, options, [&](const qat::QatStep& s) {
                          if (s.step % 25 == 0 || s.step + 1 == steps) {
                            std::fprintf(stderr, "%s step %lld/%lld %s lambda %.2f loss %.4f (%.1f s)\n",
                                         name.c_str(), static_cast<long long>(s.step + 1),
                                         static_cast<long long>(steps), s.phase.c_str(), s.lambda, s.loss,
                                         Seconds(t));
                          }
                          return true;
                        }));
    const double seconds = Seconds(t);
    SQ_ASSIGN_OR_RETURN(double accuracy, Accuracy(result.graph, test));
    rows.push_back({name, accuracy, seconds});
    std::printf("%s: %.4f (%.1f s, %.1f images/s)\n", name.c_str(), accuracy, seconds,
                steps * batch_size / seconds);
    absl::StatusOr<Graph> exported = Export(graph, result);
    if (exported.ok()) {
      SQ_ASSIGN_OR_RETURN(double exported_accuracy, Accuracy(*exported, test));
      notes.push_back(absl::StrFormat("%s exported by ExportQdqGraph with the learned scales: %.2f%%", name,
                                      100 * exported_accuracy));
    } else {
      notes.push_back(absl::StrCat(name, " not exported: ", exported.status().message()));
    }
    std::fflush(stdout);
  }

  const size_t qat_rows_end = rows.size();
  rows.push_back({"control: fp32 fine-tuned, same batches and schedule, no quantization", tuned_accuracy,
                  tune_seconds});
  std::string md = "| model | method | test accuracy % | change vs fp32 | seconds |\n|---|---|---|---|---|\n";
  for (const Row& row : rows) {
    absl::StrAppend(&md, "| CNN | ", row.method, " | ", absl::StrFormat("%.2f", 100 * row.accuracy), " | ",
                    row.method == "fp32" ? std::string("—") : absl::StrFormat("%+.2f points", 100 * (row.accuracy - fp32)),
                    " | ", row.method == "fp32" ? std::string("—") : absl::StrFormat("%.0f", row.seconds), " |\n");
  }
  md += "\n";
  for (size_t q = 3; q < qat_rows_end; ++q) {
    for (size_t p = 1; p <= 2; ++p) {
      const double loss = fp32 - rows[p].accuracy;
      const std::string recovered =
          loss > 0 ? absl::StrFormat("recovered %.0f%% of the PTQ loss", 100 * (rows[q].accuracy - rows[p].accuracy) / loss)
                   : std::string("PTQ lost nothing to recover");
      const bool met = loss <= 0 || rows[q].accuracy - rows[p].accuracy >= 0.5 * loss;
      absl::StrAppend(&md, "- ", rows[q].method, " vs ", rows[p].method, ": ", recovered, " (goal >= 50%: ",
                      met ? "met" : "not met", ")\n");
    }
  }
  for (const std::string& note : notes) absl::StrAppend(&md, "- ", note, "\n");
  absl::StrAppend(&md, absl::StrFormat("- QAT: %lld steps of %lld images (%.2f epochs), AdamW lr %g (scales %g), "
                                       "ramp/learn/frozen thirds; whole report %.0f s\n",
                                       static_cast<long long>(steps), static_cast<long long>(batch_size),
                                       static_cast<double>(steps * batch_size) / train.NumExamples(),
                                       absl::GetFlag(FLAGS_learning_rate), absl::GetFlag(FLAGS_scale_learning_rate),
                                       Seconds(start)));
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
    std::fprintf(stderr, "squeeze-qat-report: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
