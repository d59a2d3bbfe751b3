// Progressive teacher -> student knowledge distillation (issue 5).
//
// Distill trains a student graph against a frozen teacher graph in three
// stages, run in order, each with its own step count and a fresh AdamW:
//   1. features:  MSE between pairs of intermediate values (teacher value,
//      student value). When their channel widths differ (axis 1 of a rank-4
//      NCHW value, the last axis otherwise), the student value goes through
//      a learned projection to the teacher's width first: a 1x1 Conv
//      [Ct, Cs, 1, 1] for rank 4, a MatMul [Cs, Ct] otherwise. The
//      projection is a trainable initializer added to the student graph for
//      this stage only and is dropped afterwards.
//   2. attention: KL(teacher || student) per row between pairs of attention
//      probability values [B, H, S, S] (the Softmax outputs inside attention;
//      AttentionProbabilityValues lists them). When the head counts differ,
//      the heads are averaged on both sides (HeadMatching::kAverage) or each
//      student head is matched with the mean of its group of Ht / Hs teacher
//      heads (kGroups).
//   3. output:    KL on temperature-softened logits (train::SoftenedKlDivergence,
//      already scaled by T^2) plus hard_label_weight * cross-entropy when the
//      batch has labels.
// The values a stage aligns are made graph outputs of the student program,
// and their loss gradients are seeded on them in GradientProgram::Backward
// (which adds them to the gradients flowing back from later consumers).
//
// The same call recovers a compressed model from its original (teacher = the
// original, student = the compressed graph, pairs with equal names) and
// trains a smaller architecture from a larger one.
#ifndef SQUEEZE_CORE_DISTILL_DISTILL_H_
#define SQUEEZE_CORE_DISTILL_DISTILL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"
#include "core/runtime/kernel_backend.h"
#include "core/train/autograd.h"
#include "core/train/losses.h"

namespace squeeze::core::distill {

// A teacher value aligned with a student value, by name.
struct ValuePair {
  std::string teacher;
  std::string student;
};

enum class HeadMatching {
  kAverage,  // average the distributions over heads on both sides
  kGroups,   // student head h <- mean of teacher heads [h g, (h + 1) g), g = Ht / Hs
};

enum class Stage { kFeatures, kAttention, kOutput };
// "features", "attention", "output".
std::string StageName(Stage stage);

struct StageOptions {
  int64_t steps = 0;            // 0 skips the stage
  double learning_rate = 1e-3;  // AdamW peak, cosine-decayed to 10% over the stage
};

struct DistillOptions {
  std::vector<ValuePair> feature_pairs;    // stage 1
  std::vector<ValuePair> attention_pairs;  // stage 2
  // The logits compared in stage 3; "" means the graph's first output.
  std::string teacher_output;
  std::string student_output;
  StageOptions features;
  StageOptions attention;
  StageOptions output;
  double temperature = 4.0;        // > 0
  double hard_label_weight = 0.5;  // alpha, >= 0; used only when a batch has labels
  HeadMatching heads = HeadMatching::kAverage;
  // Divide each feature pair's MSE by the mean square of its teacher value
  // (per batch), so that pairs of different magnitudes weigh alike and the
  // stage-1 loss reads as a relative error.
  bool normalize_features = false;
  double weight_decay = 0;         // AdamW decoupled decay
  double clip_norm = 5.0;          // global gradient norm; <= 0 disables
  uint64_t seed = 1;               // initialisation of the projections
  // Student initializers to train (for LoRA: LoraGraph::trainable); empty
  // means every float32 initializer except BatchNormalization statistics and
  // those named "squeeze.*" (the constants core/hf derives: rotary tables,
  // the causal mask).
  std::set<std::string> trainable;
  // Runs both graphs; null means core/kernels/cpu with its default threads.
  std::shared_ptr<const runtime::KernelBackend> backend;
};

// One training batch: `feeds` go to both graphs (each takes the inputs it
// declares); `labels` (one per row of the student output, possibly empty)
// add the hard-label loss in the output stage.
struct DistillBatch {
  train::TensorMap feeds;
  std::vector<int64_t> labels;
};
// The batch for a step counted across all stages (0, 1, ..., total - 1), so
// that stages see consecutive data. Must be deterministic for a
// deterministic run.
using DistillBatchSource = std::function<absl::StatusOr<DistillBatch>(int64_t step)>;

struct DistillProgress {
  Stage stage;
  int64_t step = 0;   // 1-based within the stage
  int64_t total = 0;  // the stage's steps
  double loss = 0;    // this step's loss
};
// Called after every step; returning false cancels the run (CANCELLED).
using DistillProgressCallback = std::function<bool(const DistillProgress&)>;

struct StageCurve {
  Stage stage;
  std::vector<double> losses;  // one per step
};

struct DistillResult {
  // The trained student: the input graph's nodes and outputs, with its
  // initializers updated; no projection, no extra outputs.
  graph::Graph student;
  std::vector<StageCurve> curves;  // the stages that ran, in order
};

// Trains `student` from `teacher`. Before the first step it runs both graphs
// on batch 0 and checks everything it will align; INVALID_ARGUMENT for:
// a value name that is not a value of its graph (naming the pair and the
// graph), a feature value that is not float32, feature values whose shapes
// differ other than in the channel width, attention values whose shapes do
// not match (rank 4 with equal batch and sequence dims, or equal shapes), a
// head count that kGroups cannot divide, teacher and student outputs whose
// shapes differ (naming both values and both shapes), a stage with steps
// but no pairs, or bad numeric options. Deterministic for a deterministic
// backend and batch source.
absl::StatusOr<DistillResult> Distill(const graph::Graph& teacher, const graph::Graph& student,
                                      const DistillBatchSource& batches, const DistillOptions& options,
                                      const DistillProgressCallback& progress = nullptr);

// The outputs of a graph's Softmax nodes over the last axis, in node order.
// In a core/hf causal LM these are exactly the attention probabilities
// [B, H, S, S], one per layer: pair element i of the teacher's list with
// element j of the student's.
std::vector<std::string> AttentionProbabilityValues(const graph::Graph& graph);

// The stage-2 loss for one pair: mean over rows of KL(teacher || student)
// between probability tensors [B, H, S, K] (or any equal shapes, rows along
// the last axis), and its gradient with respect to the student tensor.
// INVALID_ARGUMENT when the shapes do not match as described above.
absl::StatusOr<train::LossAndGradient> AttentionKlDivergence(const graph::Tensor& student,
                                                             const graph::Tensor& teacher, HeadMatching heads);

}  // namespace squeeze::core::distill

#endif  // SQUEEZE_CORE_DISTILL_DISTILL_H_
