#include "core/eval/fidelity.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace squeeze::core::eval {

FidelityReport CompareOutputs(const float* reference, const float* actual,
                              size_t n) {
  double signal = 0.0;
  double noise = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double r = reference[i];
    const double d = double{actual[i]} - r;
    signal += r * r;
    noise += d * d;
  }
  FidelityReport report;
  if (std::isnan(signal) || std::isnan(noise)) {
    report.relative_error = std::numeric_limits<double>::quiet_NaN();
    report.sqnr_db = std::numeric_limits<double>::quiet_NaN();
    return report;
  }
  if (noise == 0.0) return report;  // identical: 0 error, kMaxSqnrDb
  if (signal == 0.0) {
    report.relative_error = std::numeric_limits<double>::infinity();
    report.sqnr_db = -kMaxSqnrDb;
    return report;
  }
  report.relative_error = std::sqrt(noise / signal);
  report.sqnr_db =
      std::clamp(10.0 * std::log10(signal / noise), -kMaxSqnrDb, kMaxSqnrDb);
  return report;
}

}  // namespace squeeze::core::eval
