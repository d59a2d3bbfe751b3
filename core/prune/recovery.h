// Recovery of a pruned graph by output distillation from its original: a
// short fine-tune minimizing
//   alpha * SoftenedKlDivergence(student, teacher, T)
//     + (1 - alpha) * SoftmaxCrossEntropy(student, labels)
// with AdamW (cosine-decayed learning rate) over every float32 initializer
// of the student (BatchNormalization running statistics excluded). Both
// graphs' first outputs are the logits [..., classes]. The teacher runs in
// the CPU runtime; the student through core/train's GradientProgram.
#ifndef SQUEEZE_CORE_PRUNE_RECOVERY_H_
#define SQUEEZE_CORE_PRUNE_RECOVERY_H_

#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"
#include "core/prune/structured.h"

namespace squeeze::core::prune {

struct DistillRecoveryOptions {
  int64_t steps = 500;          // >= 1
  int64_t batch_size = 64;      // passed to the batch source, >= 1
  double learning_rate = 1e-3;  // peak AdamW rate, > 0
  double weight_decay = 0;      // >= 0
  double temperature = 4.0;     // > 0
  double alpha = 0.5;           // weight of the KL term, [0, 1]
  double clip_norm = 5.0;       // global gradient norm clip (<= 0: none)
  int num_threads = 1;          // CPU kernel threads (0: all cores)
};

// Batch for step `step` (0-based) with `batch_size` examples; labels are
// needed when alpha < 1.
using RecoveryBatches = std::function<absl::StatusOr<LabeledBatch>(int64_t step, int64_t batch_size)>;

struct RecoveryStep {
  int64_t step = 0, steps = 0;
  double loss = 0, kl = 0, hard = 0;
};
// Called after every step; returning false stops (the updates so far stay).
using RecoveryProgress = std::function<bool(const RecoveryStep&)>;

struct DistillRecoveryReport {
  int64_t steps = 0;
  double first_loss = 0, last_loss = 0;  // means over the first / last 10% of steps
  double seconds = 0;
};

// INVALID_ARGUMENT naming the option and the value.
absl::Status ValidateDistillRecoveryOptions(const DistillRecoveryOptions& options);

// Fine-tunes `student` in place. INVALID_ARGUMENT when the teacher's logits
// do not have the student's shape (naming both), or labels are missing.
absl::StatusOr<DistillRecoveryReport> RecoverPrunedModel(const graph::Graph& teacher, graph::Graph* student,
                                                        const DistillRecoveryOptions& options,
                                                        const RecoveryBatches& batches,
                                                        const RecoveryProgress& progress = nullptr);

}  // namespace squeeze::core::prune

#endif  // SQUEEZE_CORE_PRUNE_RECOVERY_H_
