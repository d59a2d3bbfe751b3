#include "core/quant/gemm/int4_gemm.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/kernel_util.h"
#include "core/quant/gemm/gemm_driver.h"
#include "core/quant/packed_formats.h"
#include "core/status_macros.h"

namespace squeeze::core::quant::gemm {
namespace {

int64_t Groups(const Int4WeightsView& layer) {
  return layer.group_size == 0 ? 1 : layer.in / layer.group_size;
}


// The stored q of a nibble minus its zero point (symmetric: the +8 offset).
int Centred(uint8_t nibble, int zero) { return static_cast<int>(nibble) - zero; }

// Writes W[n, kk] for kk < in to out[kk * stride] (the DequantizeRtn formula).
void DecodeRow(const Int4WeightsView& layer, int64_t n, float* out, int64_t stride) {
  const int64_t groups = Groups(layer);
  const int64_t width = layer.in / groups;
  const uint8_t* row = layer.packed + n * PackedRowBytes(4, layer.in);
  for (int64_t g = 0; g < groups; ++g) {
    const float scale = layer.scales[n * groups + g];
    const int zero = layer.asymmetric ? layer.zero_points[n * groups + g]
                                      : kInt4SymmetricOffset;
    for (int64_t kk = g * width; kk < (g + 1) * width; ++kk) {
      const PackedInt4Pair pair{row[kk / 2]};
      const uint8_t nibble = kk % 2 == 0 ? pair.Low() : pair.High();
      out[kk * stride] = static_cast<float>(Centred(nibble, zero)) * scale;
    }
  }
}

}  // namespace

absl::Status CheckInt4Layer(int64_t m, const Int4WeightsView& layer) {
  if (!IsNibbleBits(layer.bits)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "int4 gemm: layer ", layer.name, " has ", layer.bits, "-bit weights, not 2, 3 or 4"));
  }
  if (m < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "int4 gemm: activation rows must be >= 1, got ", m, " (layer ", layer.name, ")"));
  }
  // DequantizeRtn's consistency checks, without dequantizing: a one-element
  // probe would need the whole output, so check the sizes here.
  const RtnOptions options{layer.bits, layer.group_size, layer.asymmetric};
  SQ_RETURN_IF_ERROR(options.Validate(layer.in, std::string(layer.name)));
  const int64_t groups = layer.out * Groups(layer);
  if (layer.out <= 0 || layer.packed_bytes != layer.out * PackedRowBytes(4, layer.in) ||
      layer.num_scales != groups || layer.num_zero_points != (layer.asymmetric ? groups : 0) ||
      (layer.bias != nullptr && layer.num_bias != layer.out)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "int4 gemm: layer ", layer.name, " [", layer.out, " x ", layer.in, "] has ",
        layer.packed_bytes, " packed bytes, ", layer.num_scales, " scales, ",
        layer.num_zero_points, " zero points and ", layer.bias ? layer.num_bias : 0, " biases"));
  }
  return absl::OkStatus();
}

Int4WeightsView Int4WeightsView::Of(const QuantizedLinear& layer) {
  Int4WeightsView view;
  view.name = layer.name;
  view.in = layer.in;
  view.out = layer.out;
  view.bits = layer.bits;
  view.group_size = layer.group_size;
  view.asymmetric = layer.asymmetric;
  view.packed = reinterpret_cast<const uint8_t*>(layer.packed.data());
  view.packed_bytes = static_cast<int64_t>(layer.packed.size());
  view.scales = layer.scales.data();
  view.num_scales = static_cast<int64_t>(layer.scales.size());
  view.zero_points = layer.zero_points.empty() ? nullptr : layer.zero_points.data();
  view.num_zero_points = static_cast<int64_t>(layer.zero_points.size());
  view.bias = layer.bias.empty() ? nullptr : layer.bias.data();
  view.num_bias = static_cast<int64_t>(layer.bias.size());
  return view;
}

absl::Status Int4Gemm(const float* x, int64_t m, const QuantizedLinear& layer,
                      float* y, const GemmOptions& options) {
  return Int4Gemm(x, m, Int4WeightsView::Of(layer), y, options);
}

absl::Status Int4Gemm(const float* x, int64_t m, const Int4WeightsView& layer,
                      float* y, const GemmOptions& options) {
  SQ_RETURN_IF_ERROR(CheckInt4Layer(m, layer));
  SQ_ASSIGN_OR_RETURN(const internal::ResolvedGemm gemm, internal::Resolve(options));
  if (m <= internal::kGemvMaxRows && gemm.kernels.int4_gemv != nullptr && layer.in % 2 == 0 &&
      layer.group_size % 2 == 0) {
    // A few rows: decode the nibbles in registers, row by row of W, once for
    // every kGemvBlockRows rows of X, instead of decoding float panels.
    internal::Int4GemvArgs weights{};
    weights.packed = layer.packed;
    weights.row_bytes = layer.in / 2;
    weights.groups = Groups(layer);
    weights.group_bytes = weights.row_bytes / weights.groups;
    weights.scales = layer.scales;
    weights.zero_points = layer.asymmetric ? layer.zero_points : nullptr;
    weights.bias = layer.bias;
    internal::DecodedGemv(x, m, layer.in, layer.out, weights, y, gemm);
    return absl::OkStatus();
  }
  internal::DecodedPanelGemm(
      x, m, layer.in, layer.out,
      [&layer](int64_t n, float* out, int64_t stride) { DecodeRow(layer, n, out, stride); },
      layer.bias, y, gemm);
  return absl::OkStatus();
}

absl::Status Int4GemmRef(const float* x, int64_t m,
                         const QuantizedLinear& quantized, float* y) {
  const Int4WeightsView layer = Int4WeightsView::Of(quantized);
  SQ_RETURN_IF_ERROR(CheckInt4Layer(m, layer));
  std::vector<float> w(layer.in);
  for (int64_t n = 0; n < layer.out; ++n) {
    DecodeRow(layer, n, w.data(), 1);
    for (int64_t r = 0; r < m; ++r) {
      float sum = 0.0f;
      for (int64_t kk = 0; kk < layer.in; ++kk) sum += x[r * layer.in + kk] * w[kk];
      y[r * layer.out + n] = layer.bias == nullptr ? sum : sum + layer.bias[n];
    }
  }
  return absl::OkStatus();
}

}  // namespace squeeze::core::quant::gemm
