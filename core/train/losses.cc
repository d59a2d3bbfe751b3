#include "core/train/losses.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace squeeze::core::train {
namespace {

absl::Status CheckLogits(const graph::Tensor& logits, const char* what) {
  if (logits.dtype() != graph::DataType::kFloat32 || logits.rank() < 1 ||
      logits.shape().back() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be float32 with a non-empty last dimension"));
  }
  return absl::OkStatus();
}

// log-softmax of one row, computed stably.
void LogSoftmaxRow(const float* logits, int64_t classes, double scale, std::vector<double>* out) {
  double max = -INFINITY;
  for (int64_t c = 0; c < classes; ++c) max = std::max(max, logits[c] * scale);
  double sum = 0;
  for (int64_t c = 0; c < classes; ++c) sum += std::exp(logits[c] * scale - max);
  const double log_sum = max + std::log(sum);
  out->resize(classes);
  for (int64_t c = 0; c < classes; ++c) (*out)[c] = logits[c] * scale - log_sum;
}

}  // namespace

absl::StatusOr<LossAndGradient> SoftmaxCrossEntropy(const graph::Tensor& logits,
                                                    const std::vector<int64_t>& labels,
                                                    int64_t ignore_label) {
  if (absl::Status status = CheckLogits(logits, "logits"); !status.ok()) return status;
  const int64_t classes = logits.shape().back();
  const int64_t rows = logits.num_elements() / classes;
  if (static_cast<int64_t>(labels.size()) != rows) {
    return absl::InvalidArgumentError(absl::StrCat("cross-entropy: ", labels.size(),
                                                   " labels for ", rows, " rows of logits"));
  }
  LossAndGradient result{0, graph::Tensor(graph::DataType::kFloat32, logits.shape())};
  int64_t counted = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (labels[r] == ignore_label) continue;
    if (labels[r] < 0 || labels[r] >= classes) {
      return absl::InvalidArgumentError(absl::StrCat("cross-entropy: label ", labels[r],
                                                     " of row ", r, " is outside [0, ", classes, ")"));
    }
    ++counted;
  }
  if (counted == 0) return result;
  std::vector<double> log_probs;
  const float* x = logits.data<float>();
  float* g = result.gradient.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    if (labels[r] == ignore_label) continue;
    LogSoftmaxRow(x + r * classes, classes, 1.0, &log_probs);
    result.loss -= log_probs[labels[r]];
    for (int64_t c = 0; c < classes; ++c) {
      g[r * classes + c] = static_cast<float>(
          (std::exp(log_probs[c]) - (c == labels[r] ? 1.0 : 0.0)) / counted);
    }
  }
  result.loss /= counted;
  return result;
}

absl::StatusOr<LossAndGradient> SoftenedKlDivergence(const graph::Tensor& student_logits,
                                                     const graph::Tensor& teacher_logits,
                                                     double temperature) {
  if (absl::Status s = CheckLogits(student_logits, "student logits"); !s.ok()) return s;
  if (absl::Status s = CheckLogits(teacher_logits, "teacher logits"); !s.ok()) return s;
  if (student_logits.shape() != teacher_logits.shape()) {
    return absl::InvalidArgumentError("distillation: student and teacher logits differ in shape");
  }
  if (!(temperature > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("distillation: temperature must be > 0, got ", temperature));
  }
  const int64_t classes = student_logits.shape().back();
  const int64_t rows = student_logits.num_elements() / classes;
  LossAndGradient result{0, graph::Tensor(graph::DataType::kFloat32, student_logits.shape())};
  std::vector<double> log_p, log_q;
  const double inverse = 1.0 / temperature;
  for (int64_t r = 0; r < rows; ++r) {
    LogSoftmaxRow(teacher_logits.data<float>() + r * classes, classes, inverse, &log_p);
    LogSoftmaxRow(student_logits.data<float>() + r * classes, classes, inverse, &log_q);
    for (int64_t c = 0; c < classes; ++c) {
      const double p = std::exp(log_p[c]);
      result.loss += p * (log_p[c] - log_q[c]);
      // d/ds of T^2 KL = T (q - p); divided by rows for the mean.
      result.gradient.data<float>()[r * classes + c] =
          static_cast<float>(temperature * (std::exp(log_q[c]) - p) / rows);
    }
  }
  result.loss = result.loss * temperature * temperature / rows;
  return result;
}

absl::StatusOr<LossAndGradient> MeanSquaredError(const graph::Tensor& prediction,
                                                 const graph::Tensor& target) {
  if (prediction.shape() != target.shape() || prediction.dtype() != graph::DataType::kFloat32 ||
      target.dtype() != graph::DataType::kFloat32 || prediction.num_elements() == 0) {
    return absl::InvalidArgumentError("mse: prediction and target must be float32 of one shape");
  }
  LossAndGradient result{0, graph::Tensor(graph::DataType::kFloat32, prediction.shape())};
  const int64_t n = prediction.num_elements();
  for (int64_t i = 0; i < n; ++i) {
    const double d = prediction.data<float>()[i] - target.data<float>()[i];
    result.loss += d * d;
    result.gradient.data<float>()[i] = static_cast<float>(2 * d / n);
  }
  result.loss /= n;
  return result;
}

}  // namespace squeeze::core::train
