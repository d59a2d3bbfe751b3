// int4 dequantize-inside-GEMM (issue 4): float32 activations times int4
// weights as QuantizeRtn packs them (core/quant/packed_formats.h: symmetric
// or asymmetric, per channel or per group; int3 and int2 weights too, which
// share the nibble container and its meaning):
//
//   Y[m, n] = sum_k X[m, k] * W[n, k] + bias[n],
//   W[n, k] = float(q[n, k] - zero[n, g]) * scale[n, g],  g = k / group_size
//
// exactly the weights DequantizeRtn produces. The fast path decodes 16
// output columns at a time into a per-thread panel (depth * 64 bytes) and
// FMAs it against X; the float weight matrix is never materialised. For up
// to 32 rows of X on the avx512vnni path (even depth) a GEMV decodes the
// nibbles in registers instead, once per 8 rows of X, and applies each
// group's scale to its partial sum (groups of 16 bytes or more) or to the
// decoded weights (group sizes 8 and 16). Results
// differ from Int4GemmRef only by the order of the float additions (and FMA
// contraction): |Y - Y_ref| <= 2 * depth * 2^-24 * sum_k |X[m,k] * W[n,k]|
// plus one rounding of the bias add.
//
// All matrices are row-major and dense; y ([m, layer.out]) is overwritten.
#ifndef SQUEEZE_CORE_QUANT_GEMM_INT4_GEMM_H_
#define SQUEEZE_CORE_QUANT_GEMM_INT4_GEMM_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/quant/gemm/gemm_dispatch.h"
#include "core/quant/rtn.h"

namespace squeeze::core::quant::gemm {

// The fields of a QuantizedLinear as pointers into storage the caller owns
// and keeps alive during the call (the runtime's graph tensors hold them,
// weight_only_runtime.h), with the element counts its vectors would have.
struct Int4WeightsView {
  absl::string_view name;
  int64_t in = 0;
  int64_t out = 0;
  int bits = 4;  // 2, 3 or 4 (all stored in nibbles)
  int group_size = 0;
  bool asymmetric = false;
  const uint8_t* packed = nullptr;
  int64_t packed_bytes = 0;
  const float* scales = nullptr;
  int64_t num_scales = 0;
  const uint8_t* zero_points = nullptr;  // null when symmetric
  int64_t num_zero_points = 0;
  const float* bias = nullptr;  // null: no bias
  int64_t num_bias = 0;

  static Int4WeightsView Of(const QuantizedLinear& layer);
};

// OK when `layer` can be multiplied by m rows: int4/int3/int2 with sizes
// consistent as DequantizeRtn checks them, m >= 1. INVALID_ARGUMENT naming
// the layer otherwise. Shared by every backend of these formats (CUDA too).
absl::Status CheckInt4Layer(int64_t m, const Int4WeightsView& layer);

// Y = X [m, layer.in] * W^T. INVALID_ARGUMENT as CheckInt4Layer says; the
// path errors of ResolveGemmPath.
absl::Status Int4Gemm(const float* x, int64_t m, const QuantizedLinear& layer,
                      float* y, const GemmOptions& options = {});
absl::Status Int4Gemm(const float* x, int64_t m, const Int4WeightsView& layer,
                      float* y, const GemmOptions& options = {});

// The scalar oracle: plain loops in k order, one thread.
absl::Status Int4GemmRef(const float* x, int64_t m,
                         const QuantizedLinear& layer, float* y);

}  // namespace squeeze::core::quant::gemm

#endif  // SQUEEZE_CORE_QUANT_GEMM_INT4_GEMM_H_
