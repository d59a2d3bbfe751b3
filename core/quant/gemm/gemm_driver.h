// Internal to core/quant/gemm: the resolved kernels and thread count of one
// call, and the tiled driver shared by the GEMMs whose weights decode to
// float (int4, codebooks).
#ifndef SQUEEZE_CORE_QUANT_GEMM_GEMM_DRIVER_H_
#define SQUEEZE_CORE_QUANT_GEMM_GEMM_DRIVER_H_

#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "core/quant/gemm/gemm_dispatch.h"
#include "core/quant/gemm/kernels.h"

namespace squeeze::core::quant::gemm::internal {

struct ResolvedGemm {
  GemmPath path = GemmPath::kScalar;
  GemmKernels kernels;
  int threads = 1;
};

// The kernel table and thread count for `options` (see ResolveGemmPath).
absl::StatusOr<ResolvedGemm> Resolve(const GemmOptions& options);

// Writes out[kk * stride] = W[n, kk] for kk < depth: the float weights of
// output column n.
using RowDecoder = std::function<void(int64_t n, float* out, int64_t stride)>;

// y[m, n] = sum_kk x[m, kk] * W[n, kk] (+ bias[n] when bias is not null),
// decoding W kPanelWidth columns at a time into per-thread scratch of
// depth * kPanelWidth floats, never the whole matrix. Threads split the
// columns; rows are processed in blocks so that a panel is decoded once per
// block of rows.
void DecodedPanelGemm(const float* x, int64_t m, int64_t depth, int64_t n,
                      const RowDecoder& decode, const float* bias, float* y,
                      const ResolvedGemm& gemm);

// Activation rows up to which the int4 and 4-bit codebook GEMMs run the
// register-decoding GEMV (kernels.int4_gemv over blocks of kGemvBlockRows
// rows) instead of DecodedPanelGemm, where the path has one (measured on the
// MLP/CNN/LM layers, 1 thread, docs/benchmarks.md: the GEMV is faster up to
// 32 rows, the panel GEMM at 128); and the output rows a GEMV thread takes
// at least.
inline constexpr int64_t kGemvMaxRows = 32;
inline constexpr int64_t kMinGemvRowsPerThread = 256;

// y = x [m, depth] * W^T (+ bias) with gemm.kernels.int4_gemv (not null),
// depth even: de-interleaves x once, splits the n output rows over threads.
// `weights` holds the weight fields of Int4GemvArgs (packed, row_bytes,
// group_bytes, groups, scales, zero_points, codebook, codebook_stride, bias)
// for all n rows; its x, y, rows and ld fields are ignored.
void DecodedGemv(const float* x, int64_t m, int64_t depth, int64_t n, const Int4GemvArgs& weights, float* y,
                 const ResolvedGemm& gemm);

}  // namespace squeeze::core::quant::gemm::internal

#endif  // SQUEEZE_CORE_QUANT_GEMM_GEMM_DRIVER_H_
