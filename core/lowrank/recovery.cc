#include "core/lowrank/recovery.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"
#include "core/train/autograd.h"
#include "core/train/losses.h"
#include "core/train/optimizers.h"

namespace squeeze::core::lowrank {

absl::Status ValidateRecoveryOptions(const RecoveryOptions& options) {
  if (options.steps < 1) {
    return absl::InvalidArgumentError(absl::StrCat("recovery: steps must be >= 1, got ", options.steps));
  }
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("recovery: batch_size must be >= 1, got ", options.batch_size));
  }
  if (!(options.learning_rate > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("recovery: learning_rate must be > 0, got ", options.learning_rate));
  }
  if (!(options.temperature > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("recovery: temperature must be > 0, got ", options.temperature));
  }
  if (!(options.hard_label_weight >= 0 && options.hard_label_weight <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("recovery: hard_label_weight must be in [0, 1], got ", options.hard_label_weight));
  }
  return absl::OkStatus();
}

absl::StatusOr<RecoveryReport> RecoverByDistillation(const graph::Graph& teacher, graph::Graph* student,
                                                     const RecoveryOptions& options, const RecoveryBatchFn& batches,
                                                     const RecoveryProgressFn& progress) {
  SQ_RETURN_IF_ERROR(ValidateRecoveryOptions(options));
  if (teacher.outputs.empty() || student->outputs.empty()) {
    return absl::InvalidArgumentError("recovery: teacher and student need a logits output");
  }
  const auto start = std::chrono::steady_clock::now();
  auto backend = kernels::cpu::CreateCpuBackend(options.num_threads);
  SQ_ASSIGN_OR_RETURN(runtime::Executor teacher_run, runtime::Executor::Create(teacher, backend));
  std::set<std::string> trainable = options.trainable;
  if (trainable.empty()) {
    for (const auto& [name, tensor] : student->initializers) {
      if (tensor.dtype() == graph::DataType::kFloat32 && tensor.num_elements() > 1) trainable.insert(name);
    }
  }
  SQ_ASSIGN_OR_RETURN(train::GradientProgram program, train::GradientProgram::Create(*student, backend, trainable));
  const std::string logits_name = student->outputs[0].name;
  train::AdamW optimizer({options.learning_rate, 0.9, 0.999, 1e-8, options.weight_decay});
  RecoveryReport report;
  const int64_t window = std::max<int64_t>(1, options.steps / 10);
  std::vector<double> losses;
  for (int64_t step = 0; step < options.steps; ++step) {
    optimizer.set_learning_rate(options.learning_rate * 0.5 *
                                (1 + std::cos(M_PI * static_cast<double>(step) / options.steps)));
    SQ_ASSIGN_OR_RETURN(RecoveryBatch batch, batches(step, options.batch_size));
    SQ_ASSIGN_OR_RETURN(std::vector<graph::Tensor> teacher_out, teacher_run.Run(batch.feeds));
    SQ_ASSIGN_OR_RETURN(train::Tape tape, program.Forward(batch.feeds));
    SQ_ASSIGN_OR_RETURN(const graph::Tensor* logits, program.Output(tape, logits_name));
    if (teacher_out[0].shape() != logits->shape()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "recovery: teacher logits ", graph::ShapeToString(teacher_out[0].shape()), " do not match student logits ",
          graph::ShapeToString(logits->shape())));
    }
    SQ_ASSIGN_OR_RETURN(train::LossAndGradient kl,
                        train::SoftenedKlDivergence(*logits, teacher_out[0], options.temperature));
    double loss = kl.loss;
    graph::Tensor gradient = kl.gradient;
    if (options.hard_label_weight > 0) {
      SQ_ASSIGN_OR_RETURN(train::LossAndGradient ce, train::SoftmaxCrossEntropy(*logits, batch.labels));
      const double h = options.hard_label_weight;
      loss = (1 - h) * kl.loss + h * ce.loss;
      float* g = gradient.data<float>();
      const float* g_ce = ce.gradient.data<float>();
      for (int64_t i = 0; i < gradient.num_elements(); ++i) g[i] = static_cast<float>((1 - h) * g[i] + h * g_ce[i]);
    }
    SQ_ASSIGN_OR_RETURN(train::TensorMap gradients, program.Backward(tape, {{logits_name, gradient}}));
    train::ClipGradientNorm(&gradients, options.clip_norm);
    SQ_RETURN_IF_ERROR(optimizer.Step(&program.mutable_parameters(), gradients));
    losses.push_back(loss);
    report.steps = step + 1;
    if (progress && !progress(step, options.steps, loss)) break;
  }
  auto mean = [](std::vector<double>::const_iterator begin, std::vector<double>::const_iterator end) {
    double sum = 0;
    for (auto it = begin; it != end; ++it) sum += *it;
    return end == begin ? 0.0 : sum / static_cast<double>(end - begin);
  };
  const int64_t w = std::min<int64_t>(window, static_cast<int64_t>(losses.size()));
  report.first_loss = mean(losses.begin(), losses.begin() + w);
  report.last_loss = mean(losses.end() - w, losses.end());
  for (const auto& [name, tensor] : program.graph().initializers) student->initializers[name] = tensor;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace squeeze::core::lowrank
