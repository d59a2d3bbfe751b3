// Quality metrics over model outputs. Logits are F32-convertible tensors
// (F32, F16 or BF16) whose last dimension holds the classes; every other
// dimension is flattened into rows, so [batch, classes] and
// [batch, sequence, vocab] both work. Sums are taken in double and softmax
// uses the max-subtracted (stable) form.
#ifndef SQUEEZE_CORE_EVAL_METRICS_H_
#define SQUEEZE_CORE_EVAL_METRICS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model/tensor.h"

namespace squeeze::core::eval {

struct AccuracyReport {
  double top1 = 0.0;  // fraction of rows whose label has the highest logit
  double top5 = 0.0;  // fraction whose label is among the five highest
  int64_t rows = 0;
};

// Accuracy of `logits` [..., classes] against one label per row. A label
// ranks by how many logits in its row are strictly greater, so ties favour
// the label. INVALID_ARGUMENT when labels.size() differs from the number of
// rows, a label is outside [0, classes), there are no rows, or the logits
// are not floating point.
absl::StatusOr<AccuracyReport> ComputeAccuracy(
    const model::Tensor& logits, const std::vector<int64_t>& labels);

struct PerplexityReport {
  double mean_negative_log_likelihood = 0.0;  // nats per token
  double perplexity = 0.0;  // exp(mean_negative_log_likelihood)
  int64_t tokens = 0;
};

// Perplexity of next-token `logits` [..., vocab] against one target per row
// (e.g. the labels of core/data's token windows). Errors as for
// ComputeAccuracy.
absl::StatusOr<PerplexityReport> ComputePerplexity(
    const model::Tensor& logits, const std::vector<int64_t>& targets);

// How closely a model's outputs follow a reference model's, without labels.
struct OutputAgreement {
  // Mean over rows of KL(softmax(reference) || softmax(actual)), in nats;
  // 0 for identical logits.
  double mean_kl_divergence = 0.0;
  // Fraction of rows whose argmax is the same (first maximum on ties).
  double top1_agreement = 0.0;
  // Cosine similarity of the two outputs as flat vectors; 1 when both are
  // all zero.
  double cosine_similarity = 0.0;
  // SQNR of the whole output in dB, from CompareOutputs (fidelity.h).
  double sqnr_db = 0.0;
  int64_t rows = 0;
};

// Compares one output of the model under test with the same output of the
// reference model. INVALID_ARGUMENT when the shapes differ, either tensor
// is not floating point, or the output has no elements.
absl::StatusOr<OutputAgreement> CompareToReference(
    const model::Tensor& reference_logits, const model::Tensor& actual_logits);

// CompareToReference for each output of a multi-output model, in order;
// INVALID_ARGUMENT naming the output index on the first error, or when the
// output counts differ.
absl::StatusOr<std::vector<OutputAgreement>> CompareOutputsToReference(
    const std::vector<model::Tensor>& reference_outputs,
    const std::vector<model::Tensor>& actual_outputs);

}  // namespace squeeze::core::eval

#endif  // SQUEEZE_CORE_EVAL_METRICS_H_
