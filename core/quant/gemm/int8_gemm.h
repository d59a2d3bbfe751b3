// int8 GEMM with int32 accumulation (issue 4): float32 activations quantized
// to uint8 times int8 weights, exact integer dot products, then one float
// rescale per output.
//
//   Y[m, n] = (sx[m] * sw[n]) * float(sum_k (xq[m, k] - zx[m]) * wq[n, k]) + bias[n]
//
// Activations: uint8, asymmetric, one scale sx and zero point zx per row
// (dynamic per-row quantization, QuantizeActivationsPerRow) or the same pair
// for every row (static per-tensor, QuantizeActivationsPerTensor).
// Weights: int8 symmetric per output channel, the "int8 symmetric" layout of
// core/quant/packed_formats.h as QuantizeRtn writes it (bits 8, group_size 0,
// symmetric), q in [-127, 127], one float scale sw per row.
//
// The integer sum is computed as sum xq * wq - zx * sum wq, exactly, in int32:
// that is why the depth is limited to kMaxInt8GemmDepth (255 * 127 * 65536
// < 2^31). Every path gives the same int32 sums as the scalar reference and,
// because the float epilogue is shared code, bit-identical Y.
//
// Paths (gemm_dispatch.h): scalar and AVX2 (vpmaddwd on int16-widened
// operands) read the [out, in] weights; the VNNI paths (vpdpbusd, u8 x s8 ->
// s32, 64 MACs per AVX-512 instruction) read weight panels packed once per
// layer (PackInt8Panels, Int8Weights::panels).
//
// All matrices are row-major and dense; outputs are overwritten, never read.
#ifndef SQUEEZE_CORE_QUANT_GEMM_INT8_GEMM_H_
#define SQUEEZE_CORE_QUANT_GEMM_INT8_GEMM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/quant/gemm/gemm_dispatch.h"
#include "core/quant/rtn.h"

namespace squeeze::core::quant::gemm {

inline constexpr int64_t kMaxInt8GemmDepth = 65536;
inline constexpr int kActivationQuantMax = 255;

struct Int8Activations {
  int64_t rows = 0;
  int64_t depth = 0;
  std::vector<uint8_t> q;            // [rows, depth]
  std::vector<float> scales;         // [rows]
  std::vector<int32_t> zero_points;  // [rows], each in [0, 255]
};

// Dynamic per-row quantization: lo = min(min x, 0), hi = max(max x, 0),
// scale = (hi - lo) / 255, zero = round(-lo / scale),
// q = clamp(round_half_even(x * (1 / scale)) + zero, 0, 255); a row of zeros gets
// scale 0 and zero point 0. INVALID_ARGUMENT for rows or depth outside
// [1, ...] (depth <= kMaxInt8GemmDepth) or a non-finite x (naming row and
// column). options.path picks the loops (AVX-512 on the avx512vnni path), all
// with the same bytes; threads are not used.
absl::StatusOr<Int8Activations> QuantizeActivationsPerRow(const float* x,
                                                          int64_t rows,
                                                          int64_t depth,
                                                          const GemmOptions& options = {});

// Static per-tensor quantization with a calibrated scale (> 0, finite) and
// zero point in [0, 255]: q = clamp(round_half_even(x * (1 / scale)) + zero, 0, 255).
// INVALID_ARGUMENT as above and for a bad scale or zero point.
absl::StatusOr<Int8Activations> QuantizeActivationsPerTensor(
    const float* x, int64_t rows, int64_t depth, float scale,
    int32_t zero_point, const GemmOptions& options = {});

// QuantizeLinear's arithmetic (the CPU backend's kernel, bit for bit) into
// the uint8 domain: q[i] = clamp(round_half_even(clamp(x[i] / scale, -512,
// 512)) + zero_point, 0, 255), NaN as -512. For an int8 QuantizeLinear pass
// its zero point + 128 and flip the sign bit of q afterwards. `scale` is not
// checked (the callers did). Errors: those of ResolveGemmPath.
absl::Status QuantizeLinearToUint8(const float* x, int64_t n, float scale,
                                   int32_t zero_point, uint8_t* q,
                                   const GemmOptions& options = {});

// The weight layout of the VNNI paths: ceil(out / 16) panels of 16 output
// columns, each ceil(in / 4) groups of [16 columns][4 depths], zero past the
// last column and depth: panels[((p * groups + g) * 16 + c) * 4 + d] =
// q[(16 p + c) * in + 4 g + d]. `q` is [out, in] int8.
int64_t Int8PanelsSize(int64_t out, int64_t in);
std::vector<int8_t> PackInt8Panels(const int8_t* q, int64_t out, int64_t in);

// Weights prepared for Int8Gemm: a copy of the int8 values plus their row
// sums (for the activation zero point). Build once per layer.
struct Int8Weights {
  std::string name;
  int64_t out = 0;               // n
  int64_t in = 0;                // k
  std::vector<int8_t> q;         // [out, in], in [-127, 127]
  std::vector<float> scales;     // [out]
  std::vector<int32_t> row_sums; // [out]: sum over k of q[n, k]
  std::vector<float> bias;       // [out], or empty
  // PackInt8Panels(q): what the VNNI paths read (the other paths read q).
  // Empty in a hand-built Int8Weights: the VNNI paths then pack per call.
  std::vector<int8_t> panels;

  // INVALID_ARGUMENT naming the layer unless `layer` is int8, symmetric, per
  // channel, with consistent sizes, in <= kMaxInt8GemmDepth, and no stored
  // value -128.
  static absl::StatusOr<Int8Weights> FromQuantized(const QuantizedLinear& layer);
};

// acc[m, n] = sum_k xq[m, k] * wq[n, k] in int32 (no zero points), for
// `xq` [m, k] and `wq` [n, k]. INVALID_ARGUMENT for non-positive sizes or
// k > kMaxInt8GemmDepth; the path errors of ResolveGemmPath.
absl::Status Int8MatMulInt32(const uint8_t* xq, const int8_t* wq, int64_t m,
                             int64_t n, int64_t k, int32_t* acc,
                             const GemmOptions& options = {});

// Int8MatMulInt32 with the weights also as PackInt8Panels(wq, n, k), which
// the VNNI paths read instead of packing per call (`panels` may be null:
// then they pack per call, as Int8MatMulInt32 does).
absl::Status Int8MatMulInt32Prepacked(const uint8_t* xq, const int8_t* wq,
                                      const int8_t* panels, int64_t m, int64_t n,
                                      int64_t k, int32_t* acc,
                                      const GemmOptions& options = {});

// The float epilogue of an int8 product, per output channel o:
//   y = (x_scale * w_scales[o]) * float(sum - x_zero_point * w_row_sums[o])
//       (+ bias[o]), then max(0, y) when `relu` (a fused Relu),
// the same expressions as Int8Gemm's and qdq_runtime's epilogues.
struct Int8OutputRescale {
  float x_scale = 0.0f;
  int32_t x_zero_point = 0;
  const float* w_scales = nullptr;    // [out]
  const int32_t* w_row_sums = nullptr;  // [out]
  const float* bias = nullptr;        // [out] or null
  bool relu = false;
};

// For convolutions (im2col rows, NCHW output): y[o * ldy + r] =
// rescale(sum_k x[r, k] * wq[o, k]) for o < out, r < rows, with the uint8
// activations given as PackInt8Panels's layout with rows in place of output
// columns (Int8PanelsSize(rows, depth) bytes: 16 rows x 4 depths a group)
// and wq [out, depth] read in place. The VNNI paths run a vpdpbusd kernel
// with the rows in the vector lanes; the others a scalar loop.
// One thread. INVALID_ARGUMENT for bad sizes or ldy < rows.
absl::Status Int8GemmTransposedPanels(const uint8_t* x_panels, int64_t rows,
                                      int64_t depth, const int8_t* wq, int64_t out,
                                      const Int8OutputRescale& rescale, float* y,
                                      int64_t ldy, const GemmOptions& options = {});

// The scalar oracle of Int8MatMulInt32: plain loops, one thread.
absl::Status Int8MatMulInt32Ref(const uint8_t* xq, const int8_t* wq, int64_t m,
                                int64_t n, int64_t k, int32_t* acc);

// Y [x.rows, w.out] as in the file comment. INVALID_ARGUMENT naming the
// layer when x.depth != w.in or x's vectors do not match its shape.
absl::Status Int8Gemm(const Int8Activations& x, const Int8Weights& w, float* y,
                      const GemmOptions& options = {});

// The scalar oracle of Int8Gemm (same epilogue, Int8MatMulInt32Ref sums).
absl::Status Int8GemmRef(const Int8Activations& x, const Int8Weights& w,
                         float* y);

// QuantizeActivationsPerRow(x, m, w.in, options) followed by Int8Gemm.
absl::Status Int8GemmDynamic(const float* x, int64_t m, const Int8Weights& w,
                             float* y, const GemmOptions& options = {});

}  // namespace squeeze::core::quant::gemm

#endif  // SQUEEZE_CORE_QUANT_GEMM_INT8_GEMM_H_
