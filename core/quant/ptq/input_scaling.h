// Per-input-channel scaling that moves quantization difficulty between a
// layer's activations and its weights without changing the float function:
// x W' = (x / s) (W s)' for any positive s per input channel. The layer
// input is multiplied by 1/s in an explicit Mul node (not folded into the
// previous operator: the graph rewrite stays local, at the cost of one
// elementwise op per scaled input), and the weight columns by s.
//
//   AWQ (Lin et al., 2023), weight-only: s = mean|x|^alpha, normalised so
//     that max(s) * min(s) = 1, alpha searched over [0, 1] in steps of
//     `alpha_step`, minimising the squared output error of the quantized
//     layers on the kept calibration rows; alpha = 0 (s = 1, plain RTN) is
//     a candidate, so the search is never worse than RTN on those rows.
//   SmoothQuant (Xiao et al., 2022), W8A8: s = max|x|^alpha / max|w|^(1-alpha)
//     per input channel (alpha 0.5), s = 1 where either maximum is 0.
// Layers sharing one input (q/k/v, gate/up) share one s, chosen for all of
// them together.
#ifndef SQUEEZE_CORE_QUANT_PTQ_INPUT_SCALING_H_
#define SQUEEZE_CORE_QUANT_PTQ_INPUT_SCALING_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/quant/rtn.h"

namespace squeeze::core::quant::ptq {

// One layer of a group sharing an input, as the searches see it.
struct ScaledLayerView {
  std::string name;
  int64_t out = 0;
  int64_t in = 0;           // columns of the weight matrix
  int64_t kernel_size = 1;  // columns per input channel (Conv: kh * kw)
  const std::vector<float>* weight = nullptr;     // [out, in]
  const std::vector<float>* kept_rows = nullptr;  // [kept, in] calibration rows
  int64_t kept = 0;
};

struct AwqSearchResult {
  double alpha = 0.0;
  std::vector<float> channel_scales;  // s per input channel
  double error = 0.0;                 // summed squared output error at alpha
  double error_at_zero = 0.0;         // the same at alpha = 0 (RTN)
};

// Searches AWQ's alpha for `layers` (all with the same input channels)
// given that input's mean |x| per channel. INVALID_ARGUMENT naming the
// first layer for an empty group, a step outside (0, 1], mismatched sizes
// or formats that do not fit (RtnOptions::Validate).
absl::StatusOr<AwqSearchResult> SearchAwqScales(const std::vector<ScaledLayerView>& layers,
                                                const std::vector<double>& channel_abs_mean,
                                                const RtnOptions& format, double alpha_step = 0.05);

// SmoothQuant's s per input channel for `layers` given the input's max |x|
// per channel. INVALID_ARGUMENT for alpha outside [0, 1] or mismatched sizes.
absl::StatusOr<std::vector<float>> SmoothQuantScales(const std::vector<ScaledLayerView>& layers,
                                                     const std::vector<double>& channel_abs_max, double alpha);

// weight [out, in] with column j multiplied by scales[j / kernel_size].
std::vector<float> ScaleColumns(const std::vector<float>& weight, int64_t out, int64_t in, int64_t kernel_size,
                                const std::vector<float>& scales);

}  // namespace squeeze::core::quant::ptq

#endif  // SQUEEZE_CORE_QUANT_PTQ_INPUT_SCALING_H_
