#include "core/quant/ptq/observers.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace squeeze::core::quant::ptq {
namespace {

constexpr int kHistogramBins = 2048;
constexpr int kMseGridPoints = 100;

double Levels(bool is_unsigned) { return is_unsigned ? 255.0 : 127.0; }

// Mean squared error of quantizing |x| values with threshold t (the
// negative half of a signed range mirrors the positive one).
double QuantizationMse(const std::vector<float>& values, double t, bool is_unsigned) {
  const double levels = Levels(is_unsigned), scale = t / levels;
  double sum = 0;
  for (float v : values) {
    const double q = std::min(levels, std::nearbyint(v / scale)) * scale;
    sum += (v - q) * (v - q);
  }
  return sum / static_cast<double>(values.size());
}

double EntropyThreshold(const std::vector<float>& values, double abs_max, bool is_unsigned) {
  const int levels = is_unsigned ? 256 : 128;
  std::vector<double> hist(kHistogramBins, 0.0);
  const double width = abs_max / kHistogramBins;
  for (float v : values) hist[std::min<int>(kHistogramBins - 1, static_cast<int>(v / width))] += 1;
  double best_kl = std::numeric_limits<double>::infinity();
  int best_bins = kHistogramBins;
  for (int bins = levels; bins <= kHistogramBins; ++bins) {
    std::vector<double> p(hist.begin(), hist.begin() + bins);
    for (int b = bins; b < kHistogramBins; ++b) p[bins - 1] += hist[b];
    std::vector<double> q(bins, 0.0);
    for (int level = 0; level < levels; ++level) {
      const int begin = level * bins / levels, end = (level + 1) * bins / levels;
      double total = 0;
      int nonzero = 0;
      for (int b = begin; b < end; ++b) {
        total += hist[b];
        nonzero += p[b] > 0;
      }
      for (int b = begin; b < end; ++b) q[b] = p[b] > 0 ? total / nonzero : 0.0;
    }
    double p_sum = 0, q_sum = 0;
    for (int b = 0; b < bins; ++b) p_sum += p[b], q_sum += q[b];
    if (p_sum == 0 || q_sum == 0) continue;
    double kl = 0;
    for (int b = 0; b < bins; ++b) {
      if (p[b] == 0) continue;
      const double pb = p[b] / p_sum;
      // A bin P has and Q lacks (the folded outliers) gets a small mass.
      const double qb = std::max(q[b] / q_sum, 1e-12);
      kl += pb * std::log(pb / qb);
    }
    if (kl < best_kl) best_kl = kl, best_bins = bins;
  }
  return (best_bins + 0.5) * width;
}

}  // namespace

std::string ObserverName(Observer observer) {
  switch (observer) {
    case Observer::kMinMax: return "minmax";
    case Observer::kPercentile: return "percentile";
    case Observer::kMse: return "mse";
    case Observer::kEntropy: return "entropy";
  }
  return "unknown";
}

float ActivationRange::Scale() const {
  if (threshold == 0.0f) return 1.0f;
  return static_cast<float>(threshold / Levels(is_unsigned));
}

absl::StatusOr<ActivationRange> ObserveRange(const std::string& name, std::vector<float> abs_sample, double abs_max,
                                             bool has_negative, Observer observer, double percentile) {
  if (abs_sample.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("observe: no calibration values for ", name));
  }
  for (float v : abs_sample) {
    if (!(v >= 0) || !std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat("observe: |x| sample of ", name, " holds ", v));
    }
  }
  if (!(percentile > 0 && percentile <= 100)) {
    return absl::InvalidArgumentError(
        absl::StrCat("observe: percentile must be in (0, 100], got ", percentile, " (", name, ")"));
  }
  ActivationRange range;
  range.is_unsigned = !has_negative;
  abs_max = std::max<double>(abs_max, *std::max_element(abs_sample.begin(), abs_sample.end()));
  if (abs_max == 0) return range;
  double t = abs_max;
  switch (observer) {
    case Observer::kMinMax:
      break;
    case Observer::kPercentile: {
      const size_t k = std::min(abs_sample.size() - 1,
                                static_cast<size_t>(std::ceil(percentile / 100.0 * abs_sample.size())) - 1);
      std::nth_element(abs_sample.begin(), abs_sample.begin() + k, abs_sample.end());
      t = abs_sample[k];
      if (t == 0) t = abs_max;  // a mostly-zero tensor: keep its few values
      break;
    }
    case Observer::kMse: {
      double best = std::numeric_limits<double>::infinity();
      for (int k = kMseGridPoints; k >= 1; --k) {
        const double candidate = abs_max * k / kMseGridPoints;
        const double mse = QuantizationMse(abs_sample, candidate, range.is_unsigned);
        if (mse < best) best = mse, t = candidate;
      }
      break;
    }
    case Observer::kEntropy:
      t = EntropyThreshold(abs_sample, abs_max, range.is_unsigned);
      break;
  }
  range.threshold = static_cast<float>(t);
  return range;
}

}  // namespace squeeze::core::quant::ptq
