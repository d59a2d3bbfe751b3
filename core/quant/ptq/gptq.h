// GPTQ (Frantar et al., 2022): quantizes a linear layer's weight column by
// column, spreading each column's rounding error over the columns not yet
// quantized through the inverse Hessian of the layer's calibration inputs,
// H = 2 X'X / rows. The result is in the packed formats of rtn.h /
// packed_formats.h, so it dequantizes, exports and runs as RTN output does.
//
// The algorithm, as in the paper's reference implementation:
//   columns whose H diagonal is 0 (inputs always zero) get H_ii = 1 and
//     weight 0;
//   act-order: columns are processed by decreasing H_ii;
//   H += dampening * mean(diag H) * I; U = upper Cholesky factor of H^-1;
//   per block of block_size columns: quantize each column, err = (w - q) / U_ii,
//     update the rest of the block with err * U_i,rest at once; the columns
//     after the block get the block's errors in one matrix product (lazy
//     batch update).
// Groups: the packed layout needs groups of consecutive columns, so a
// group's scale (and zero point) is computed when its first column is
// reached in processing order, from the group's current (error-updated)
// weights with QuantizeRtn's formula. Per channel (group_size 0), the
// scales come from the whole original row. When H + damping is not
// positive definite, the damping is multiplied by 10 (up to 4 times) and
// the retry is reported in `notes`.
#ifndef SQUEEZE_CORE_QUANT_PTQ_GPTQ_H_
#define SQUEEZE_CORE_QUANT_PTQ_GPTQ_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/quant/rtn.h"

namespace squeeze::core::quant::ptq {

struct GptqOptions {
  double dampening = 0.01;   // fraction of the mean Hessian diagonal added to it
  int64_t block_size = 128;  // columns per lazy batch update
  bool act_order = true;     // process columns by decreasing Hessian diagonal
};

struct GptqResult {
  QuantizedLinear quantized;
  int64_t dead_columns = 0;       // columns with H_ii = 0 (set to weight 0)
  std::vector<std::string> notes;  // damping retries
};

// Quantizes the [out, in] row-major `weight` of layer `name` given its
// [in, in] `hessian`. INVALID_ARGUMENT naming the layer for options that do
// not fit the shape (format.Validate), sizes that do not match, a
// non-positive block size or negative dampening, non-finite weights or
// Hessian entries, and a Hessian that stays indefinite after the retries.
absl::StatusOr<GptqResult> QuantizeGptq(const std::string& name, const std::vector<float>& weight, int64_t out,
                                        int64_t in, const std::vector<double>& hessian, const RtnOptions& format,
                                        const GptqOptions& options);

// Packs q values ([out, in] row-major, in the ranges of packed_formats.h:
// [-qmax, qmax] symmetric, [0, qmax] asymmetric) with their per-group scales
// and zero points ([out, groups]; zero points empty when symmetric).
QuantizedLinear PackQuantizedLinear(const std::string& name, int64_t out, int64_t in, const RtnOptions& format,
                                    const std::vector<int>& q, std::vector<float> scales,
                                    std::vector<uint8_t> zero_points);

}  // namespace squeeze::core::quant::ptq

#endif  // SQUEEZE_CORE_QUANT_PTQ_GPTQ_H_
