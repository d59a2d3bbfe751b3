#include "core/quant/gemm/int4_gemm.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/kernel_util.h"
#include "core/quant/gemm/gemm_driver.h"
#include "core/quant/packed_formats.h"
#include "core/status_macros.h"

namespace squeeze::core::quant::gemm {
namespace {

absl::Status CheckLayer(int64_t m, const QuantizedLinear& layer) {
  if (layer.bits != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "int4 gemm: layer ", layer.name, " has ", layer.bits, "-bit weights, not 4"));
  }
  if (m < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "int4 gemm: activation rows must be >= 1, got ", m, " (layer ", layer.name, ")"));
  }
  // DequantizeRtn's consistency checks, without dequantizing: a one-element
  // probe would need the whole output, so check the sizes here.
  const RtnOptions options{layer.bits, layer.group_size, layer.asymmetric};
  SQ_RETURN_IF_ERROR(options.Validate(layer.in, layer.name));
  const int64_t groups = layer.out * layer.Groups();
  if (layer.out <= 0 ||
      static_cast<int64_t>(layer.packed.size()) != layer.out * PackedRowBytes(4, layer.in) ||
      static_cast<int64_t>(layer.scales.size()) != groups ||
      static_cast<int64_t>(layer.zero_points.size()) != (layer.asymmetric ? groups : 0) ||
      (!layer.bias.empty() && static_cast<int64_t>(layer.bias.size()) != layer.out)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "int4 gemm: layer ", layer.name, " [", layer.out, " x ", layer.in, "] has ",
        layer.packed.size(), " packed bytes, ", layer.scales.size(), " scales, ",
        layer.zero_points.size(), " zero points and ", layer.bias.size(), " biases"));
  }
  return absl::OkStatus();
}

// Activation rows up to which Int4Gemm runs the register-decoding GEMV, and
// the output rows a GEMV thread takes at least.
constexpr int64_t kGemvMaxRows = 4;
constexpr int64_t kMinGemvRowsPerThread = 256;

// The stored q of a nibble minus its zero point (symmetric: the +8 offset).
int Centred(uint8_t nibble, int zero) { return static_cast<int>(nibble) - zero; }

// Writes W[n, kk] for kk < in to out[kk * stride] (the DequantizeRtn formula).
void DecodeRow(const QuantizedLinear& layer, int64_t n, float* out, int64_t stride) {
  const int64_t groups = layer.Groups();
  const int64_t width = layer.in / groups;
  const uint8_t* row = reinterpret_cast<const uint8_t*>(layer.packed.data()) +
                       n * PackedRowBytes(4, layer.in);
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

absl::Status Int4Gemm(const float* x, int64_t m, const QuantizedLinear& layer,
                      float* y, const GemmOptions& options) {
  SQ_RETURN_IF_ERROR(CheckLayer(m, layer));
  SQ_ASSIGN_OR_RETURN(const internal::ResolvedGemm gemm, internal::Resolve(options));
  if (m <= kGemvMaxRows && gemm.kernels.int4_gemv != nullptr && layer.in % 2 == 0 &&
      layer.group_size % 2 == 0) {
    // A few rows: decode the nibbles in registers, row by row of W, instead
    // of decoding float panels that only these rows would use.
    const int64_t half = layer.in / 2, groups = layer.Groups();
    std::vector<float> split(m * layer.in);  // per row: x[0], x[2], ..., then x[1], x[3], ...
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t k = 0; k < half; ++k) {
        split[r * layer.in + k] = x[r * layer.in + 2 * k];
        split[r * layer.in + half + k] = x[r * layer.in + 2 * k + 1];
      }
    }
    const uint8_t* packed = reinterpret_cast<const uint8_t*>(layer.packed.data());
    kernels::cpu::ParallelFor(
        layer.out, kMinGemvRowsPerThread, gemm.threads, [&](int64_t begin, int64_t end) {
          for (int64_t r = 0; r < m; ++r) {
            gemm.kernels.int4_gemv(
                split.data() + r * layer.in, split.data() + r * layer.in + half,
                packed + begin * half, half, end - begin, half / groups, groups,
                layer.scales.data() + begin * groups,
                layer.asymmetric ? layer.zero_points.data() + begin * groups : nullptr,
                layer.bias.empty() ? nullptr : layer.bias.data() + begin,
                y + r * layer.out + begin);
          }
        });
    return absl::OkStatus();
  }
  internal::DecodedPanelGemm(
      x, m, layer.in, layer.out,
      [&layer](int64_t n, float* out, int64_t stride) { DecodeRow(layer, n, out, stride); },
      layer.bias.empty() ? nullptr : layer.bias.data(), y, gemm);
  return absl::OkStatus();
}

absl::Status Int4GemmRef(const float* x, int64_t m,
                         const QuantizedLinear& layer, float* y) {
  SQ_RETURN_IF_ERROR(CheckLayer(m, layer));
  std::vector<float> w(layer.in);
  for (int64_t n = 0; n < layer.out; ++n) {
    DecodeRow(layer, n, w.data(), 1);
    for (int64_t r = 0; r < m; ++r) {
      float sum = 0.0f;
      for (int64_t kk = 0; kk < layer.in; ++kk) sum += x[r * layer.in + kk] * w[kk];
      y[r * layer.out + n] = layer.bias.empty() ? sum : sum + layer.bias[n];
    }
  }
  return absl::OkStatus();
}

}  // namespace squeeze::core::quant::gemm
