// Activation observers for static int8 activation quantization. Every
// observer picks a clipping threshold T on |x| from calibration values; the
// activation is then quantized per tensor with zero point 0:
//   unsigned (no negative value seen, e.g. after ReLU): uint8, scale = T / 255
//   signed:                                             int8,  scale = T / 127
// Observers:
//   kMinMax      T = max |x| (exact, over every calibration value)
//   kPercentile  T = the `percentile` quantile of |x| (default 99.99%)
//   kMse         T minimising the mean squared quantization error of the
//                sample, over a grid of 100 fractions of max |x|
//   kEntropy     TensorRT's calibration: a 2048-bin histogram of |x| over
//                [0, max |x|]; for each candidate bin count i >= levels, P =
//                the first i bins with the outliers folded into the last, Q =
//                P merged into `levels` (128 signed, 256 unsigned) equal runs
//                spread back over the nonzero bins; T = the end of the bin
//                count with the smallest KL(P || Q)
#ifndef SQUEEZE_CORE_QUANT_PTQ_OBSERVERS_H_
#define SQUEEZE_CORE_QUANT_PTQ_OBSERVERS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace squeeze::core::quant::ptq {

enum class Observer { kMinMax, kPercentile, kMse, kEntropy };

// "minmax", "percentile", "mse", "entropy".
std::string ObserverName(Observer observer);

struct ActivationRange {
  float threshold = 0.0f;  // T; 0 for an all-zero activation
  bool is_unsigned = false;

  // T / 255 or T / 127; 1 when T is 0 (anything works: every value is 0).
  float Scale() const;
};

// The range `observer` picks from `abs_sample` (|x| values, any order),
// `abs_max` (the exact max |x|, which the sample may miss) and whether a
// negative value was seen. INVALID_ARGUMENT naming `name` when the sample
// is empty or holds a negative or non-finite value, or the percentile is
// outside (0, 100].
absl::StatusOr<ActivationRange> ObserveRange(const std::string& name, std::vector<float> abs_sample, double abs_max,
                                             bool has_negative, Observer observer, double percentile = 99.99);

}  // namespace squeeze::core::quant::ptq

#endif  // SQUEEZE_CORE_QUANT_PTQ_OBSERVERS_H_
