// Distillation recovery of a pruned graph (see recovery.h).
#include "core/prune/recovery.h"

#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"
#include "core/train/autograd.h"
#include "core/train/losses.h"
#include "core/train/optimizers.h"

namespace squeeze::core::prune {
namespace {

absl::Status OptionError(const std::string& option, double value, const std::string& range) {
  return absl::InvalidArgumentError(absl::StrCat("recovery: ", option, " must be ", range, ", got ", value));
}

}  // namespace

absl::Status ValidateDistillRecoveryOptions(const DistillRecoveryOptions& o) {
  if (o.steps < 1) return OptionError("steps", static_cast<double>(o.steps), ">= 1");
  if (o.batch_size < 1) return OptionError("batch_size", static_cast<double>(o.batch_size), ">= 1");
  if (!(o.learning_rate > 0)) return OptionError("learning_rate", o.learning_rate, "> 0");
  if (!(o.weight_decay >= 0)) return OptionError("weight_decay", o.weight_decay, ">= 0");
  if (!(o.temperature > 0)) return OptionError("temperature", o.temperature, "> 0");
  if (!(o.alpha >= 0 && o.alpha <= 1)) return OptionError("alpha", o.alpha, "in [0, 1]");
  if (o.num_threads < 0) return OptionError("num_threads", o.num_threads, ">= 0");
  return absl::OkStatus();
}

absl::StatusOr<DistillRecoveryReport> RecoverPrunedModel(const graph::Graph& teacher, graph::Graph* student,
                                                        const DistillRecoveryOptions& options,
                                                        const RecoveryBatches& batches,
                                                        const RecoveryProgress& progress) {
  SQ_RETURN_IF_ERROR(ValidateDistillRecoveryOptions(options));
  const auto start = std::chrono::steady_clock::now();
  auto backend = kernels::cpu::CreateCpuBackend(options.num_threads);
  SQ_ASSIGN_OR_RETURN(runtime::Executor teacher_run, runtime::Executor::Create(teacher, backend));
  SQ_ASSIGN_OR_RETURN(train::GradientProgram program, train::GradientProgram::Create(*student, backend));
  const std::string output = student->outputs.at(0).name;
  train::AdamW optimizer({options.learning_rate, 0.9, 0.999, 1e-8, options.weight_decay});
  DistillRecoveryReport report;
  const int64_t window = std::max<int64_t>(1, options.steps / 10);
  double first_sum = 0, last_sum = 0;
  for (int64_t step = 0; step < options.steps; ++step) {
    const double pi = 3.14159265358979323846;
    optimizer.set_learning_rate(options.learning_rate * 0.5 *
                                (1 + std::cos(pi * static_cast<double>(step) / static_cast<double>(options.steps))));
    SQ_ASSIGN_OR_RETURN(LabeledBatch batch, batches(step, options.batch_size));
    SQ_ASSIGN_OR_RETURN(std::vector<graph::Tensor> teacher_out, teacher_run.Run(batch.feeds));
    SQ_ASSIGN_OR_RETURN(train::Tape tape, program.Forward(batch.feeds));
    SQ_ASSIGN_OR_RETURN(const graph::Tensor* logits, program.Output(tape, output));
    if (teacher_out[0].shape() != logits->shape()) {
      return absl::InvalidArgumentError(absl::StrCat("recovery: teacher logits ", graph::ShapeToString(teacher_out[0].shape()),
                                                     " do not match the student's ", graph::ShapeToString(logits->shape())));
    }
    RecoveryStep info{step, options.steps, 0, 0, 0};
    graph::Tensor gradient(graph::DataType::kFloat32, logits->shape());
    float* g = gradient.data<float>();
    if (options.alpha > 0) {
      SQ_ASSIGN_OR_RETURN(train::LossAndGradient kl,
                          train::SoftenedKlDivergence(*logits, teacher_out[0], options.temperature));
      info.kl = kl.loss;
      for (int64_t i = 0; i < gradient.num_elements(); ++i) {
        g[i] += static_cast<float>(options.alpha) * kl.gradient.data<float>()[i];
      }
    }
    if (options.alpha < 1) {
      if (batch.labels.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("recovery: alpha ", options.alpha,
                                                       " < 1 needs labels, batch ", step, " has none"));
      }
      SQ_ASSIGN_OR_RETURN(train::LossAndGradient hard, train::SoftmaxCrossEntropy(*logits, batch.labels));
      info.hard = hard.loss;
      for (int64_t i = 0; i < gradient.num_elements(); ++i) {
        g[i] += static_cast<float>(1 - options.alpha) * hard.gradient.data<float>()[i];
      }
    }
    info.loss = options.alpha * info.kl + (1 - options.alpha) * info.hard;
    SQ_ASSIGN_OR_RETURN(train::TensorMap gradients, program.Backward(tape, {{output, gradient}}));
    train::ClipGradientNorm(&gradients, options.clip_norm);
    SQ_RETURN_IF_ERROR(optimizer.Step(&program.mutable_parameters(), gradients));
    if (step < window) first_sum += info.loss;
    if (step >= options.steps - window) last_sum += info.loss;
    report.steps = step + 1;
    if (progress && !progress(info)) break;
  }
  report.first_loss = first_sum / static_cast<double>(std::min(window, report.steps));
  report.last_loss = last_sum / static_cast<double>(window);
  for (const auto& name : program.trainable()) {
    student->initializers[name] = program.graph().initializers.at(name);
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace squeeze::core::prune
