// Losses for training, with their gradients. Each returns the mean loss over
// the examples and the gradient of that mean with respect to the logits.
#ifndef SQUEEZE_CORE_TRAIN_LOSSES_H_
#define SQUEEZE_CORE_TRAIN_LOSSES_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/tensor.h"

namespace squeeze::core::train {

struct LossAndGradient {
  double loss = 0;
  graph::Tensor gradient;  // Same shape as the logits.
};

// Softmax cross-entropy: logits [..., C] float32, one int64 label per row
// (labels.size() == number of rows). Rows whose label is `ignore_label` add
// nothing and are not counted. INVALID_ARGUMENT naming the row for a label
// outside [0, C).
absl::StatusOr<LossAndGradient> SoftmaxCrossEntropy(const graph::Tensor& logits,
                                                    const std::vector<int64_t>& labels,
                                                    int64_t ignore_label = -100);

// Distillation: KL(softmax(teacher / T) || softmax(student / T)) * T^2, mean
// over rows, gradient with respect to the student logits. Shapes must match.
absl::StatusOr<LossAndGradient> SoftenedKlDivergence(const graph::Tensor& student_logits,
                                                     const graph::Tensor& teacher_logits,
                                                     double temperature);

// Mean squared error between `prediction` and `target` (same shape).
absl::StatusOr<LossAndGradient> MeanSquaredError(const graph::Tensor& prediction,
                                                 const graph::Tensor& target);

}  // namespace squeeze::core::train

#endif  // SQUEEZE_CORE_TRAIN_LOSSES_H_
