#include "core/quant/gemm/int8_gemm.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/kernel_util.h"
#include "core/quant/gemm/gemm_driver.h"
#include "core/quant/packed_formats.h"
#include "core/status_macros.h"

namespace squeeze::core::quant::gemm {
namespace {

// An int8 tile's int32 sums (64 x 64 x 4 bytes) stay in L1 for the epilogue;
// its 64 rows of X and 64 rows of W stay in L2 at the language model's depths.
constexpr int64_t kTileRows = 64;
constexpr int64_t kTileCols = 64;
constexpr int64_t kMinMultiplyAddsPerThread = int64_t{1} << 18;

absl::Status CheckShape(int64_t m, int64_t n, int64_t k) {
  if (m <= 0 || n <= 0 || k <= 0 || k > kMaxInt8GemmDepth) {
    return absl::InvalidArgumentError(absl::StrCat(
        "int8 gemm: shape [", m, " x ", k, "] * [", n, " x ", k,
        "]^T needs positive sizes and depth <= ", kMaxInt8GemmDepth));
  }
  return absl::OkStatus();
}

absl::Status CheckActivations(const Int8Activations& x, const Int8Weights& w) {
  SQ_RETURN_IF_ERROR(CheckShape(x.rows, w.out, x.depth));
  if (x.depth != w.in || static_cast<int64_t>(x.q.size()) != x.rows * x.depth ||
      static_cast<int64_t>(x.scales.size()) != x.rows ||
      static_cast<int64_t>(x.zero_points.size()) != x.rows) {
    return absl::InvalidArgumentError(absl::StrCat(
        "int8 gemm: activations [", x.rows, " x ", x.depth, "] with ", x.q.size(),
        " values, ", x.scales.size(), " scales and ", x.zero_points.size(),
        " zero points do not fit layer ", w.name, " [", w.out, " x ", w.in, "]"));
  }
  return absl::OkStatus();
}

// Rows [r0, r0 + rows) and columns [c0, c0 + cols) of Y from their int32
// sums: the reference epilogue, run by every path without an int8_epilogue
// kernel (the AVX-512 one repeats its operations, so Y is bit-identical).
void Epilogue(const Int8Activations& x, const Int8Weights& w, int64_t r0,
              int64_t rows, int64_t c0, int64_t cols, const int32_t* acc,
              int64_t ldacc, float* y) {
  const bool has_bias = !w.bias.empty();
  for (int64_t r = 0; r < rows; ++r) {
    const float sx = x.scales[r0 + r];
    const int32_t zx = x.zero_points[r0 + r];
    float* out = y + (r0 + r) * w.out + c0;
    for (int64_t c = 0; c < cols; ++c) {
      // Both terms are bounded by 255 * 127 * depth < 2^31 and so is their
      // difference (the exact centred sum); unsigned arithmetic avoids UB.
      const int32_t centred = static_cast<int32_t>(
          static_cast<uint32_t>(acc[r * ldacc + c]) -
          static_cast<uint32_t>(zx * w.row_sums[c0 + c]));
      float v = (sx * w.scales[c0 + c]) * static_cast<float>(centred);
      if (has_bias) v += w.bias[c0 + c];
      out[c] = v;
    }
  }
}

// Calls body(r0, rows, c0, cols, scratch) for every tile of an [m, n] output
// on up to `threads` threads; scratch holds kTileRows * kTileCols int32s of
// the calling thread.
void ForEachTile(int64_t m, int64_t n, int64_t k, int threads,
                 const std::function<void(int64_t, int64_t, int64_t, int64_t,
                                          int32_t*)>& body) {
  const int64_t tiles_m = (m + kTileRows - 1) / kTileRows;
  const int64_t tiles_n = (n + kTileCols - 1) / kTileCols;
  kernels::cpu::ParallelFor(
      tiles_m * tiles_n,
      std::max<int64_t>(1, kMinMultiplyAddsPerThread / (kTileRows * kTileCols * k)),
      threads, [&](int64_t begin, int64_t end) {
        int32_t scratch[kTileRows * kTileCols];
        for (int64_t t = begin; t < end; ++t) {
          const int64_t r0 = (t / tiles_n) * kTileRows, c0 = (t % tiles_n) * kTileCols;
          body(r0, std::min(kTileRows, m - r0), c0, std::min(kTileCols, n - c0), scratch);
        }
      });
}

// The int32 sums of rows [r0, r0 + rows) x columns [c0, c0 + cols) into
// out[r * ldout + c]: the packed kernel where the path has one (packing `wq`
// on the fly into `scratch_panels` when `panels` is null), else the plain one.
void TileSums(const internal::ResolvedGemm& gemm, const uint8_t* xq, const int8_t* wq,
              const int8_t* panels, int64_t k, int64_t r0, int64_t rows, int64_t c0,
              int64_t cols, int32_t* out, int64_t ldout) {
  if (gemm.kernels.int8_panel_tile != nullptr && panels != nullptr) {
    gemm.kernels.int8_panel_tile(xq + r0 * k, k,
                                 panels + (c0 / internal::kInt8PanelWidth) *
                                              internal::Int8PanelBytes(k),
                                 rows, cols, k, out, ldout);
    return;
  }
  gemm.kernels.int8_tile(xq + r0 * k, k, wq + c0 * k, k, rows, cols, k, out, ldout);
}

absl::StatusOr<Int8Activations> Quantize(const float* x, int64_t rows,
                                         int64_t depth, bool per_row,
                                         float scale, int32_t zero_point,
                                         const GemmOptions& options) {
  SQ_RETURN_IF_ERROR(CheckShape(rows, 1, depth));
  SQ_ASSIGN_OR_RETURN(const internal::ResolvedGemm gemm, internal::Resolve(options));
  Int8Activations a;
  a.rows = rows;
  a.depth = depth;
  a.q.resize(rows * depth);
  a.scales.resize(rows);
  a.zero_points.resize(rows);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * depth;
    float lo = 0.0f, hi = 0.0f;
    if (!gemm.kernels.min_max(row, depth, &lo, &hi)) {
      for (int64_t c = 0; c < depth; ++c) {
        if (!std::isfinite(row[c])) {
          return absl::InvalidArgumentError(absl::StrCat(
              "int8 gemm: activation at row ", r, ", column ", c, " is ", row[c]));
        }
      }
    }
    float s = scale;
    int32_t z = zero_point;
    if (per_row) {
      s = (hi - lo) / kActivationQuantMax;
      z = s == 0.0f ? 0
                    : static_cast<int32_t>(std::clamp(
                          std::nearbyint(-lo / s), 0.0f, float{kActivationQuantMax}));
    }
    a.scales[r] = s;
    a.zero_points[r] = z;
    uint8_t* q = &a.q[r * depth];
    if (s == 0.0f) {
      std::fill(q, q + depth, static_cast<uint8_t>(z));
      continue;
    }
    gemm.kernels.quantize_row(row, depth, 1.0f / s, /*divide=*/false, static_cast<float>(z), q);
  }
  return a;
}

}  // namespace

absl::StatusOr<Int8Activations> QuantizeActivationsPerRow(const float* x,
                                                          int64_t rows,
                                                          int64_t depth,
                                                          const GemmOptions& options) {
  return Quantize(x, rows, depth, /*per_row=*/true, 0.0f, 0, options);
}

absl::StatusOr<Int8Activations> QuantizeActivationsPerTensor(
    const float* x, int64_t rows, int64_t depth, float scale,
    int32_t zero_point, const GemmOptions& options) {
  if (!(scale > 0.0f) || !std::isfinite(scale) || zero_point < 0 ||
      zero_point > kActivationQuantMax) {
    return absl::InvalidArgumentError(absl::StrCat(
        "int8 gemm: activation scale must be finite and > 0 and the zero point "
        "in [0, 255], got scale ", scale, ", zero point ", zero_point));
  }
  return Quantize(x, rows, depth, /*per_row=*/false, scale, zero_point, options);
}

absl::Status QuantizeLinearToUint8(const float* x, int64_t n, float scale,
                                   int32_t zero_point, uint8_t* q,
                                   const GemmOptions& options) {
  SQ_ASSIGN_OR_RETURN(const internal::ResolvedGemm gemm, internal::Resolve(options));
  gemm.kernels.quantize_row(x, n, scale, /*divide=*/true, static_cast<float>(zero_point), q);
  return absl::OkStatus();
}

int64_t Int8PanelsSize(int64_t out, int64_t in) {
  return (out + internal::kInt8PanelWidth - 1) / internal::kInt8PanelWidth *
         internal::Int8PanelBytes(in);
}

std::vector<int8_t> PackInt8Panels(const int8_t* q, int64_t out, int64_t in) {
  constexpr int64_t kWidth = internal::kInt8PanelWidth, kDepth = internal::kInt8PanelDepth;
  const int64_t groups = (in + kDepth - 1) / kDepth;
  std::vector<int8_t> panels(Int8PanelsSize(out, in), 0);
  for (int64_t n = 0; n < out; ++n) {
    const int64_t p = n / kWidth, c = n % kWidth;
    for (int64_t kk = 0; kk < in; ++kk) {
      panels[((p * groups + kk / kDepth) * kWidth + c) * kDepth + kk % kDepth] = q[n * in + kk];
    }
  }
  return panels;
}

absl::StatusOr<Int8Weights> Int8Weights::FromQuantized(
    const QuantizedLinear& layer) {
  if (layer.bits != 8 || layer.asymmetric || layer.group_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "int8 gemm: layer ", layer.name, " is ",
        RtnOptions{layer.bits, layer.group_size, layer.asymmetric}.TechniqueName(),
        "; Int8Gemm needs int8-pc-sym weights"));
  }
  SQ_RETURN_IF_ERROR(CheckShape(1, layer.out, layer.in));
  if (static_cast<int64_t>(layer.packed.size()) != layer.out * layer.in ||
      static_cast<int64_t>(layer.scales.size()) != layer.out ||
      (!layer.bias.empty() && static_cast<int64_t>(layer.bias.size()) != layer.out)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "int8 gemm: layer ", layer.name, " [", layer.out, " x ", layer.in, "] has ",
        layer.packed.size(), " packed bytes, ", layer.scales.size(), " scales and ",
        layer.bias.size(), " biases"));
  }
  Int8Weights w;
  w.name = layer.name;
  w.out = layer.out;
  w.in = layer.in;
  w.q.resize(layer.packed.size());
  w.scales = layer.scales;
  w.bias = layer.bias;
  w.row_sums.assign(w.out, 0);
  for (int64_t r = 0; r < w.out; ++r) {
    for (int64_t c = 0; c < w.in; ++c) {
      const int8_t q = static_cast<int8_t>(layer.packed[r * w.in + c]);
      if (q < -kInt8SymmetricMax) {
        return absl::InvalidArgumentError(absl::StrCat(
            "int8 gemm: layer ", layer.name, " stores -128 at row ", r, ", column ",
            c, " (symmetric int8 is [-127, 127])"));
      }
      w.q[r * w.in + c] = q;
      w.row_sums[r] += q;
    }
  }
  w.panels = PackInt8Panels(w.q.data(), w.out, w.in);
  return w;
}

absl::Status Int8MatMulInt32(const uint8_t* xq, const int8_t* wq, int64_t m,
                             int64_t n, int64_t k, int32_t* acc,
                             const GemmOptions& options) {
  return Int8MatMulInt32Prepacked(xq, wq, nullptr, m, n, k, acc, options);
}

absl::Status Int8MatMulInt32Prepacked(const uint8_t* xq, const int8_t* wq,
                                      const int8_t* panels, int64_t m, int64_t n,
                                      int64_t k, int32_t* acc,
                                      const GemmOptions& options) {
  SQ_RETURN_IF_ERROR(CheckShape(m, n, k));
  SQ_ASSIGN_OR_RETURN(const internal::ResolvedGemm gemm, internal::Resolve(options));
  std::vector<int8_t> packed_here;
  if (gemm.kernels.int8_panel_tile != nullptr && panels == nullptr) {
    packed_here = PackInt8Panels(wq, n, k);
    panels = packed_here.data();
  }
  ForEachTile(m, n, k, gemm.threads,
              [&](int64_t r0, int64_t rows, int64_t c0, int64_t cols, int32_t*) {
                TileSums(gemm, xq, wq, panels, k, r0, rows, c0, cols, acc + r0 * n + c0, n);
              });
  return absl::OkStatus();
}

absl::Status Int8GemmTransposedPanels(const uint8_t* x_panels, int64_t rows,
                                      int64_t depth, const int8_t* wq, int64_t out,
                                      const Int8OutputRescale& rescale, float* y,
                                      int64_t ldy, const GemmOptions& options) {
  SQ_RETURN_IF_ERROR(CheckShape(rows, out, depth));
  if (ldy < rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("int8 gemm: transposed output stride ", ldy, " < rows ", rows));
  }
  SQ_ASSIGN_OR_RETURN(const internal::ResolvedGemm gemm, internal::Resolve(options));
  internal::Int8Rescale r;
  r.x_scale = rescale.x_scale;
  r.x_zero = rescale.x_zero_point;
  r.w_scales = rescale.w_scales;
  r.w_row_sums = rescale.w_row_sums;
  r.bias = rescale.bias;
  r.relu = rescale.relu;
  gemm.kernels.int8_transposed_gemm(x_panels, rows, wq, out, depth, r, y, ldy);
  return absl::OkStatus();
}

absl::Status Int8MatMulInt32Ref(const uint8_t* xq, const int8_t* wq, int64_t m,
                                int64_t n, int64_t k, int32_t* acc) {
  SQ_RETURN_IF_ERROR(CheckShape(m, n, k));
  internal::Int8TileScalar(xq, k, wq, k, m, n, k, acc, n);
  return absl::OkStatus();
}

absl::Status Int8Gemm(const Int8Activations& x, const Int8Weights& w, float* y,
                      const GemmOptions& options) {
  SQ_RETURN_IF_ERROR(CheckActivations(x, w));
  SQ_ASSIGN_OR_RETURN(const internal::ResolvedGemm gemm, internal::Resolve(options));
  const int64_t k = w.in;
  const int8_t* panels = w.panels.empty() ? nullptr : w.panels.data();
  std::vector<int8_t> packed_here;
  if (gemm.kernels.int8_panel_tile != nullptr && panels == nullptr) {
    packed_here = PackInt8Panels(w.q.data(), w.out, k);
    panels = packed_here.data();
  }
  ForEachTile(x.rows, w.out, k, gemm.threads,
              [&](int64_t r0, int64_t rows, int64_t c0, int64_t cols, int32_t* acc) {
                TileSums(gemm, x.q.data(), w.q.data(), panels, k, r0, rows, c0, cols, acc,
                         kTileCols);
                if (gemm.kernels.int8_epilogue != nullptr) {
                  gemm.kernels.int8_epilogue(acc, kTileCols, rows, cols, x.scales.data() + r0,
                                             x.zero_points.data() + r0, w.scales.data() + c0,
                                             w.row_sums.data() + c0,
                                             w.bias.empty() ? nullptr : w.bias.data() + c0,
                                             y + r0 * w.out + c0, w.out);
                } else {
                  Epilogue(x, w, r0, rows, c0, cols, acc, kTileCols, y);
                }
              });
  return absl::OkStatus();
}

absl::Status Int8GemmRef(const Int8Activations& x, const Int8Weights& w,
                         float* y) {
  SQ_RETURN_IF_ERROR(CheckActivations(x, w));
  std::vector<int32_t> acc(x.rows * w.out);
  SQ_RETURN_IF_ERROR(
      Int8MatMulInt32Ref(x.q.data(), w.q.data(), x.rows, w.out, w.in, acc.data()));
  Epilogue(x, w, 0, x.rows, 0, w.out, acc.data(), w.out, y);
  return absl::OkStatus();
}

absl::Status Int8GemmDynamic(const float* x, int64_t m, const Int8Weights& w,
                             float* y, const GemmOptions& options) {
  SQ_ASSIGN_OR_RETURN(const Int8Activations a, QuantizeActivationsPerRow(x, m, w.in, options));
  return Int8Gemm(a, w, y, options);
}

}  // namespace squeeze::core::quant::gemm
