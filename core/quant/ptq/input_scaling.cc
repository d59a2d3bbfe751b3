#include "core/quant/ptq/input_scaling.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace squeeze::core::quant::ptq {
namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

absl::Status CheckGroup(const std::vector<ScaledLayerView>& layers, size_t channels) {
  if (layers.empty()) return absl::InvalidArgumentError("input scaling: no layers in the group");
  for (const ScaledLayerView& l : layers) {
    if (l.weight == nullptr || static_cast<int64_t>(l.weight->size()) != l.out * l.in || l.kernel_size <= 0 ||
        l.in != static_cast<int64_t>(channels) * l.kernel_size) {
      return absl::InvalidArgumentError(absl::StrCat("input scaling: layer ", l.name, " is [", l.out, ", ", l.in,
                                                     "] with ", channels, " input channels of ", l.kernel_size,
                                                     " columns; sizes do not match"));
    }
  }
  return absl::OkStatus();
}

// Squared output error of RTN-quantizing the layer at scales s: rows times
// (dequant(Q(W s)) / s - W)'.
absl::StatusOr<double> ScaledError(const ScaledLayerView& l, const std::vector<float>& s, const RtnOptions& format) {
  model::LinearLayer scaled;
  scaled.name = l.name;
  scaled.out = l.out;
  scaled.in = l.in;
  scaled.weight = ScaleColumns(*l.weight, l.out, l.in, l.kernel_size, s);
  SQ_ASSIGN_OR_RETURN(QuantizedLinear q, QuantizeRtn(scaled, format));
  std::vector<float> delta(l.out * l.in);
  SQ_RETURN_IF_ERROR(DequantizeRtn(q, delta.data()));
  for (int64_t r = 0; r < l.out; ++r) {
    for (int64_t c = 0; c < l.in; ++c) {
      float& d = delta[r * l.in + c];
      d = d / s[c / l.kernel_size] - (*l.weight)[r * l.in + c];
    }
  }
  if (l.kept == 0) return 0.0;
  Eigen::Map<const RowMatrix> x(l.kept_rows->data(), l.kept, l.in);
  Eigen::Map<const RowMatrix> dw(delta.data(), l.out, l.in);
  return static_cast<double>((x * dw.transpose()).squaredNorm());
}

}  // namespace

std::vector<float> ScaleColumns(const std::vector<float>& weight, int64_t out, int64_t in, int64_t kernel_size,
                                const std::vector<float>& scales) {
  std::vector<float> scaled(weight.size());
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t c = 0; c < in; ++c) scaled[r * in + c] = weight[r * in + c] * scales[c / kernel_size];
  }
  return scaled;
}

absl::StatusOr<AwqSearchResult> SearchAwqScales(const std::vector<ScaledLayerView>& layers,
                                                const std::vector<double>& channel_abs_mean,
                                                const RtnOptions& format, double alpha_step) {
  SQ_RETURN_IF_ERROR(CheckGroup(layers, channel_abs_mean.size()));
  if (!(alpha_step > 0 && alpha_step <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("awq: alpha step must be in (0, 1], got ", alpha_step, " (layer ", layers[0].name, ")"));
  }
  for (const ScaledLayerView& l : layers) {
    SQ_RETURN_IF_ERROR(format.Validate(l.in, l.name));
    if (l.kept > 0 && (l.kept_rows == nullptr || static_cast<int64_t>(l.kept_rows->size()) != l.kept * l.in)) {
      return absl::InvalidArgumentError(absl::StrCat("awq: calibration rows of layer ", l.name, " do not match"));
    }
  }
  const double max_mean = *std::max_element(channel_abs_mean.begin(), channel_abs_mean.end());
  AwqSearchResult best;
  best.error = -1;
  const int steps = static_cast<int>(std::floor(1.0 / alpha_step + 1e-9));
  for (int k = 0; k <= steps; ++k) {
    const double alpha = k * alpha_step;
    std::vector<float> s(channel_abs_mean.size(), 1.0f);
    if (k > 0 && max_mean > 0) {
      // A channel that is always zero gets the smallest scale in use rather than 0.
      double lo = std::numeric_limits<double>::infinity(), hi = 0;
      std::vector<double> raw(s.size());
      for (size_t c = 0; c < s.size(); ++c) {
        raw[c] = std::pow(std::max(channel_abs_mean[c], 1e-4 * max_mean), alpha);
        lo = std::min(lo, raw[c]);
        hi = std::max(hi, raw[c]);
      }
      const double norm = std::sqrt(lo * hi);
      for (size_t c = 0; c < s.size(); ++c) s[c] = static_cast<float>(raw[c] / norm);
    }
    double error = 0;
    for (const ScaledLayerView& l : layers) {
      SQ_ASSIGN_OR_RETURN(double e, ScaledError(l, s, format));
      error += e;
    }
    if (k == 0) best.error_at_zero = error;
    if (best.error < 0 || error < best.error) {
      best.error = error;
      best.alpha = alpha;
      best.channel_scales = s;
    }
  }
  return best;
}

absl::StatusOr<std::vector<float>> SmoothQuantScales(const std::vector<ScaledLayerView>& layers,
                                                     const std::vector<double>& channel_abs_max, double alpha) {
  SQ_RETURN_IF_ERROR(CheckGroup(layers, channel_abs_max.size()));
  if (!(alpha >= 0 && alpha <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("smoothquant: alpha must be in [0, 1], got ", alpha, " (layer ", layers[0].name, ")"));
  }
  std::vector<double> weight_max(channel_abs_max.size(), 0.0);
  for (const ScaledLayerView& l : layers) {
    for (int64_t r = 0; r < l.out; ++r) {
      for (int64_t c = 0; c < l.in; ++c) {
        double& m = weight_max[c / l.kernel_size];
        m = std::max<double>(m, std::fabs((*l.weight)[r * l.in + c]));
      }
    }
  }
  std::vector<float> s(channel_abs_max.size(), 1.0f);
  for (size_t c = 0; c < s.size(); ++c) {
    if (channel_abs_max[c] > 0 && weight_max[c] > 0) {
      s[c] = static_cast<float>(std::pow(channel_abs_max[c], alpha) / std::pow(weight_max[c], 1 - alpha));
    }
  }
  return s;
}

}  // namespace squeeze::core::quant::ptq
