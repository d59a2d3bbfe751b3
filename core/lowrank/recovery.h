// A short recovery fine-tune of a compressed graph against its original:
// output distillation, loss = (1 - hard_label_weight) *
// SoftenedKlDivergence(student, teacher, T) + hard_label_weight *
// SoftmaxCrossEntropy(student, labels), minimized with AdamW over the
// student's trainable initializers (see RecoveryOptions::trainable; e.g.
// only the rank scales of core/lowrank). Both graphs' first outputs are the
// logits [..., classes].
#ifndef SQUEEZE_CORE_LOWRANK_RECOVERY_H_
#define SQUEEZE_CORE_LOWRANK_RECOVERY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"

namespace squeeze::core::lowrank {

struct RecoveryOptions {
  int64_t steps = 200;        // >= 1
  int64_t batch_size = 64;    // passed to the batch source; >= 1
  double learning_rate = 1e-3;  // AdamW, > 0; cosine-decayed to 0 over `steps`
  double weight_decay = 0;
  double temperature = 2.0;   // > 0
  double hard_label_weight = 0;  // in [0, 1]; > 0 needs labels in every batch
  double clip_norm = 1.0;     // global gradient norm clip (<= 0: none)
  int num_threads = 1;        // CPU kernel threads (0: all cores)
  // Empty: every float32 initializer with more than one element (scalars
  // are constants such as a norm's epsilon, which must not move). Graphs
  // with constant tables (RoPE sin/cos) should pass their parameters, e.g.
  // core/hf CheckpointTensorNames.
  std::set<std::string> trainable;
};

struct RecoveryBatch {
  std::map<std::string, graph::Tensor> feeds;
  std::vector<int64_t> labels;  // one per logits row; may be empty when hard_label_weight == 0
};

// Returns the batch for step `step` (0-based) of `batch_size` examples.
using RecoveryBatchFn = std::function<absl::StatusOr<RecoveryBatch>(int64_t step, int64_t batch_size)>;

// Called after each step with the step's loss; returning false stops early
// (the graph keeps the updates made so far).
using RecoveryProgressFn = std::function<bool(int64_t step, int64_t steps, double loss)>;

struct RecoveryReport {
  int64_t steps = 0;
  double first_loss = 0, last_loss = 0;  // means over the first / last 10% of steps
  double seconds = 0;
};

// INVALID_ARGUMENT naming the option and the bad value.
absl::Status ValidateRecoveryOptions(const RecoveryOptions& options);

// Fine-tunes `student` in place against `teacher`. INVALID_ARGUMENT when the
// teacher's logits do not have the student's shape (naming both shapes), or
// when labels are needed and missing.
absl::StatusOr<RecoveryReport> RecoverByDistillation(const graph::Graph& teacher, graph::Graph* student,
                                                     const RecoveryOptions& options, const RecoveryBatchFn& batches,
                                                     const RecoveryProgressFn& progress = {});

}  // namespace squeeze::core::lowrank

#endif  // SQUEEZE_CORE_LOWRANK_RECOVERY_H_
