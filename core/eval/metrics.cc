#include "core/eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/eval/fidelity.h"
#include "core/status_macros.h"

namespace squeeze::core::eval {
namespace {

// Logits as float rows of `classes` values each.
struct Rows {
  std::vector<float> values;
  int64_t rows = 0;
  int64_t classes = 0;

  const float* Row(int64_t r) const { return values.data() + r * classes; }
};

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<Rows> ToRows(const model::Tensor& logits,
                            const std::string& what) {
  if (logits.shape.empty() || logits.shape.back() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": logits of shape ", ShapeString(logits.shape),
        " need a last (classes) dimension of at least 1"));
  }
  absl::StatusOr<std::vector<float>> values = logits.ToFloats();
  if (!values.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", values.status().message()));
  }
  Rows rows;
  rows.classes = logits.shape.back();
  rows.rows = static_cast<int64_t>(values->size()) / rows.classes;
  rows.values = *std::move(values);
  if (rows.rows == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": logits of shape ", ShapeString(logits.shape), " have no rows"));
  }
  return rows;
}

absl::StatusOr<Rows> ToRowsWithLabels(const model::Tensor& logits,
                                      const std::vector<int64_t>& labels,
                                      const std::string& what) {
  SQ_ASSIGN_OR_RETURN(Rows rows, ToRows(logits, what));
  if (static_cast<int64_t>(labels.size()) != rows.rows) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": logits of shape ", ShapeString(logits.shape), " have ",
        rows.rows, " rows but there are ", labels.size(), " labels"));
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= rows.classes) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": label ", labels[i], " at row ", i,
                       " is outside [0, ", rows.classes, ")"));
    }
  }
  return rows;
}

// log(sum(exp(row))), stably.
double LogSumExp(const float* row, int64_t n) {
  const float max = *std::max_element(row, row + n);
  if (std::isinf(max)) return max;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(row[i]) - max);
  return max + std::log(sum);
}

int64_t ArgMax(const float* row, int64_t n) {
  return std::max_element(row, row + n) - row;
}

}  // namespace

absl::StatusOr<AccuracyReport> ComputeAccuracy(
    const model::Tensor& logits, const std::vector<int64_t>& labels) {
  SQ_ASSIGN_OR_RETURN(const Rows rows,
                      ToRowsWithLabels(logits, labels, "accuracy"));
  int64_t top1 = 0, top5 = 0;
  for (int64_t r = 0; r < rows.rows; ++r) {
    const float* row = rows.Row(r);
    const float target = row[labels[r]];
    const int64_t greater =
        std::count_if(row, row + rows.classes, [&](float v) { return v > target; });
    top1 += greater < 1;
    top5 += greater < 5;
  }
  const double n = static_cast<double>(rows.rows);
  return AccuracyReport{top1 / n, top5 / n, rows.rows};
}

absl::StatusOr<PerplexityReport> ComputePerplexity(
    const model::Tensor& logits, const std::vector<int64_t>& targets) {
  SQ_ASSIGN_OR_RETURN(const Rows rows,
                      ToRowsWithLabels(logits, targets, "perplexity"));
  double total = 0.0;
  for (int64_t r = 0; r < rows.rows; ++r) {
    const float* row = rows.Row(r);
    total += LogSumExp(row, rows.classes) - row[targets[r]];
  }
  const double mean = total / static_cast<double>(rows.rows);
  return PerplexityReport{mean, std::exp(mean), rows.rows};
}

absl::StatusOr<OutputAgreement> CompareToReference(
    const model::Tensor& reference_logits, const model::Tensor& actual_logits) {
  if (reference_logits.shape != actual_logits.shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        "compare to reference: shapes differ, reference ",
        ShapeString(reference_logits.shape), " vs actual ",
        ShapeString(actual_logits.shape)));
  }
  SQ_ASSIGN_OR_RETURN(const Rows reference,
                      ToRows(reference_logits, "compare to reference"));
  SQ_ASSIGN_OR_RETURN(const Rows actual,
                      ToRows(actual_logits, "compare to reference"));
  OutputAgreement agreement;
  agreement.rows = reference.rows;
  double kl_total = 0.0;
  int64_t agree = 0;
  for (int64_t r = 0; r < reference.rows; ++r) {
    const float* p = reference.Row(r);
    const float* q = actual.Row(r);
    const double log_zp = LogSumExp(p, reference.classes);
    const double log_zq = LogSumExp(q, reference.classes);
    double kl = 0.0;
    for (int64_t c = 0; c < reference.classes; ++c) {
      const double log_p = p[c] - log_zp;
      const double log_q = q[c] - log_zq;
      const double prob = std::exp(log_p);
      if (prob > 0.0) kl += prob * (log_p - log_q);
    }
    kl_total += kl;
    agree += ArgMax(p, reference.classes) == ArgMax(q, reference.classes);
  }
  agreement.mean_kl_divergence = kl_total / reference.rows;
  agreement.top1_agreement = static_cast<double>(agree) / reference.rows;

  double dot = 0.0, norm_reference = 0.0, norm_actual = 0.0;
  for (size_t i = 0; i < reference.values.size(); ++i) {
    dot += static_cast<double>(reference.values[i]) * actual.values[i];
    norm_reference += static_cast<double>(reference.values[i]) * reference.values[i];
    norm_actual += static_cast<double>(actual.values[i]) * actual.values[i];
  }
  if (norm_reference == 0.0 && norm_actual == 0.0) {
    agreement.cosine_similarity = 1.0;
  } else if (norm_reference == 0.0 || norm_actual == 0.0) {
    agreement.cosine_similarity = 0.0;
  } else {
    agreement.cosine_similarity = dot / std::sqrt(norm_reference * norm_actual);
  }
  agreement.sqnr_db = CompareOutputs(reference.values.data(),
                                     actual.values.data(),
                                     reference.values.size())
                          .sqnr_db;
  return agreement;
}

absl::StatusOr<std::vector<OutputAgreement>> CompareOutputsToReference(
    const std::vector<model::Tensor>& reference_outputs,
    const std::vector<model::Tensor>& actual_outputs) {
  if (reference_outputs.size() != actual_outputs.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "compare to reference: the reference has ", reference_outputs.size(),
        " outputs, the model ", actual_outputs.size()));
  }
  std::vector<OutputAgreement> agreements;
  for (size_t i = 0; i < reference_outputs.size(); ++i) {
    absl::StatusOr<OutputAgreement> agreement =
        CompareToReference(reference_outputs[i], actual_outputs[i]);
    if (!agreement.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "output ", i, ": ", agreement.status().message()));
    }
    agreements.push_back(*agreement);
  }
  return agreements;
}

}  // namespace squeeze::core::eval
