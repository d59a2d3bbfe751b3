#include "core/quant/gemm/lut_gemm.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/quant/gemm/gemm_driver.h"
#include "core/status_macros.h"

namespace squeeze::core::quant::gemm {
namespace {

const float* RowCodebook(const CodebookWeightsView& layer, int64_t n) {
  return layer.codebook +
         (layer.per_row_codebook ? n * CodebookEntries(layer.bits) : 0);
}

// Writes W[n, kk] to out[kk * stride]: 8 indices (exactly kBits bytes) per
// step, then index by index for the tail.
template <int kBits>
void DecodeRow(const uint8_t* row, int64_t in, const float* codebook, float* out,
               int64_t stride) {
  constexpr uint32_t kMask = (1u << kBits) - 1;
  int64_t kk = 0;
  for (; kk + 8 <= in; kk += 8) {
    uint32_t word = 0;
    std::memcpy(&word, row + kk / 8 * kBits, kBits);  // little-endian x86
    for (int i = 0; i < 8; ++i) {
      out[(kk + i) * stride] = codebook[(word >> (i * kBits)) & kMask];
    }
  }
  for (; kk < in; ++kk) out[kk * stride] = codebook[ReadCodebookIndex(row, kk, kBits)];
}

void DecodeRow(const CodebookWeightsView& layer, int64_t n, float* out, int64_t stride) {
  const uint8_t* row = layer.packed + n * CodebookRowBytes(layer.bits, layer.in);
  const float* codebook = RowCodebook(layer, n);
  switch (layer.bits) {
    case 2: DecodeRow<2>(row, layer.in, codebook, out, stride); break;
    case 3: DecodeRow<3>(row, layer.in, codebook, out, stride); break;
    default: DecodeRow<4>(row, layer.in, codebook, out, stride); break;
  }
}

}  // namespace

absl::Status CodebookLinear::Validate() const { return CodebookWeightsView::Of(*this).Validate(); }

CodebookWeightsView CodebookWeightsView::Of(const CodebookLinear& layer) {
  CodebookWeightsView view;
  view.name = layer.name;
  view.in = layer.in;
  view.out = layer.out;
  view.bits = layer.bits;
  view.per_row_codebook = layer.per_row_codebook;
  view.packed = reinterpret_cast<const uint8_t*>(layer.packed.data());
  view.packed_bytes = static_cast<int64_t>(layer.packed.size());
  view.codebook = layer.codebook.data();
  view.codebook_size = static_cast<int64_t>(layer.codebook.size());
  view.bias = layer.bias.empty() ? nullptr : layer.bias.data();
  view.num_bias = static_cast<int64_t>(layer.bias.size());
  return view;
}

absl::Status CodebookWeightsView::Validate() const {
  if (bits < kMinCodebookBits || bits > kMaxCodebookBits) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lut gemm: bits must be in [2, 4], got ", bits, " (layer ", name, ")"));
  }
  const int64_t entries = CodebookEntries(bits) * (per_row_codebook ? out : 1);
  if (in <= 0 || out <= 0 || packed_bytes != out * CodebookRowBytes(bits, in) ||
      codebook_size != entries || (bias != nullptr && num_bias != out)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lut gemm: layer ", name, " [", out, " x ", in, "] at ", bits, " bits has ",
        packed_bytes, " packed bytes, ", codebook_size, " codebook entries (want ",
        entries, ") and ", bias ? num_bias : 0, " biases"));
  }
  for (int64_t i = 0; i < codebook_size; ++i) {
    if (!std::isfinite(codebook[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "lut gemm: codebook entry ", i, " is ", codebook[i], " (layer ", name, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> PackCodebookIndices(const std::vector<uint8_t>& indices,
                                                int bits, int64_t out, int64_t in) {
  if (bits < kMinCodebookBits || bits > kMaxCodebookBits || out <= 0 || in <= 0 ||
      static_cast<int64_t>(indices.size()) != out * in) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lut gemm: cannot pack ", indices.size(), " indices as [", out, " x ", in,
        "] at ", bits, " bits"));
  }
  const int64_t row_bytes = CodebookRowBytes(bits, in);
  std::string packed(out * row_bytes, '\0');
  for (int64_t r = 0; r < out; ++r) {
    uint8_t* row = reinterpret_cast<uint8_t*>(packed.data()) + r * row_bytes;
    for (int64_t c = 0; c < in; ++c) {
      const uint8_t index = indices[r * in + c];
      if (index >= CodebookEntries(bits)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "lut gemm: index ", int{index}, " at row ", r, ", column ", c,
            " does not fit ", bits, " bits"));
      }
      WriteCodebookIndex(row, c, bits, index);
    }
  }
  return packed;
}

absl::Status LutGemm(const float* x, int64_t m, const CodebookLinear& layer,
                     float* y, const GemmOptions& options) {
  return LutGemm(x, m, CodebookWeightsView::Of(layer), y, options);
}

absl::Status LutGemm(const float* x, int64_t m, const CodebookWeightsView& layer,
                     float* y, const GemmOptions& options) {
  SQ_RETURN_IF_ERROR(layer.Validate());
  if (m < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lut gemm: activation rows must be >= 1, got ", m, " (layer ", layer.name, ")"));
  }
  SQ_ASSIGN_OR_RETURN(const internal::ResolvedGemm gemm, internal::Resolve(options));
  if (m <= internal::kGemvMaxRows && gemm.kernels.int4_gemv != nullptr && layer.bits == 4 && layer.in % 2 == 0) {
    // A few rows: 4-bit indices are int4 nibbles; the GEMV looks them up in
    // registers (16 codebook entries are one vector).
    static_assert(CodebookRowBytes(4, 8) == 4 && CodebookEntries(4) == 16);
    internal::Int4GemvArgs weights{};
    weights.packed = layer.packed;
    weights.row_bytes = layer.in / 2;
    weights.groups = 1;
    weights.group_bytes = weights.row_bytes;
    weights.codebook = layer.codebook;
    weights.codebook_stride = layer.per_row_codebook ? CodebookEntries(4) : 0;
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

absl::Status LutGemmRef(const float* x, int64_t m, const CodebookLinear& linear,
                        float* y) {
  const CodebookWeightsView layer = CodebookWeightsView::Of(linear);
  SQ_RETURN_IF_ERROR(layer.Validate());
  if (m < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lut gemm: activation rows must be >= 1, got ", m, " (layer ", layer.name, ")"));
  }
  const int64_t row_bytes = CodebookRowBytes(layer.bits, layer.in);
  for (int64_t n = 0; n < layer.out; ++n) {
    const uint8_t* row = layer.packed + n * row_bytes;
    const float* codebook = RowCodebook(layer, n);
    for (int64_t r = 0; r < m; ++r) {
      float sum = 0.0f;
      for (int64_t kk = 0; kk < layer.in; ++kk) {
        sum += x[r * layer.in + kk] * codebook[ReadCodebookIndex(row, kk, layer.bits)];
      }
      y[r * layer.out + n] = layer.bias == nullptr ? sum : sum + layer.bias[n];
    }
  }
  return absl::OkStatus();
}

}  // namespace squeeze::core::quant::gemm
