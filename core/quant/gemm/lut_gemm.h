// Lookup-table GEMM for codebook weights (issue 4): float32 activations times
// weights stored as packed b-bit indices into a float codebook
// (core/quant/gemm/codebook_layout.h):
//
//   Y[m, n] = sum_k X[m, k] * codebook[cb(n) * 2^bits + index[n, k]] + bias[n]
//
// The fast path looks indices up 16 output columns at a time into a
// per-thread panel and FMAs it against X, never materialising the float
// weights; 4-bit layers with an even depth take, for up to 32 rows of X on
// the avx512vnni path, int4_gemm.h's GEMV (the 16 entries in one register). Looked-up weights are exact, so results differ from LutGemmRef
// only by the order of float additions, with the bound of int4_gemm.h:
// |Y - Y_ref| <= 2 * depth * 2^-24 * sum_k |X[m,k] * W[n,k]| plus the bias add.
#ifndef SQUEEZE_CORE_QUANT_GEMM_LUT_GEMM_H_
#define SQUEEZE_CORE_QUANT_GEMM_LUT_GEMM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/quant/gemm/codebook_layout.h"
#include "core/quant/gemm/gemm_dispatch.h"

namespace squeeze::core::quant::gemm {

struct CodebookLinear {
  std::string name;
  int64_t in = 0;
  int64_t out = 0;
  int bits = 4;                // 2, 3 or 4
  bool per_row_codebook = false;
  std::string packed;          // out * CodebookRowBytes(bits, in) bytes
  std::vector<float> codebook; // [2^bits], or [out, 2^bits] when per row
  std::vector<float> bias;     // [out], or empty

  // INVALID_ARGUMENT naming the layer when bits or any size is inconsistent
  // or a codebook entry is not finite.
  absl::Status Validate() const;
};

// The fields of a CodebookLinear as pointers into storage the caller owns
// and keeps alive during the call (the runtime's graph tensors hold them,
// weight_only_runtime.h), with the element counts its vectors would have.
struct CodebookWeightsView {
  absl::string_view name;
  int64_t in = 0;
  int64_t out = 0;
  int bits = 4;
  bool per_row_codebook = false;
  const uint8_t* packed = nullptr;
  int64_t packed_bytes = 0;
  const float* codebook = nullptr;
  int64_t codebook_size = 0;
  const float* bias = nullptr;  // null: no bias
  int64_t num_bias = 0;

  static CodebookWeightsView Of(const CodebookLinear& layer);
  // CodebookLinear::Validate's checks and messages.
  absl::Status Validate() const;
};

// Packs `indices` ([out, in], each < 2^bits) into the codebook layout.
// INVALID_ARGUMENT for bad bits, sizes or an index out of range.
absl::StatusOr<std::string> PackCodebookIndices(const std::vector<uint8_t>& indices,
                                                int bits, int64_t out, int64_t in);

// Y = X [m, layer.in] * W^T, y [m, layer.out] overwritten. INVALID_ARGUMENT
// from Validate or for m < 1; the path errors of ResolveGemmPath.
absl::Status LutGemm(const float* x, int64_t m, const CodebookLinear& layer,
                     float* y, const GemmOptions& options = {});
absl::Status LutGemm(const float* x, int64_t m, const CodebookWeightsView& layer,
                     float* y, const GemmOptions& options = {});

// The scalar oracle: index-by-index lookups, k order, one thread.
absl::Status LutGemmRef(const float* x, int64_t m, const CodebookLinear& layer,
                        float* y);

}  // namespace squeeze::core::quant::gemm

#endif  // SQUEEZE_CORE_QUANT_GEMM_LUT_GEMM_H_
