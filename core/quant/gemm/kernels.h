// Internal to core/quant/gemm: the inner kernels every GEMM in this folder is
// built from, one implementation per path behind one table. Each instruction
// set's versions live alone in their file, compiled with only its flags
// (avx2_kernels.cc: -mavx2 -mfma; avxvnni_kernels.cc: + -mavxvnni;
// avx512vnni_kernels.cc: -mavx512f -mavx512vnni); this header therefore
// includes nothing but <cstdint>.
#ifndef SQUEEZE_CORE_QUANT_GEMM_KERNELS_H_
#define SQUEEZE_CORE_QUANT_GEMM_KERNELS_H_

#include <cstdint>

namespace squeeze::core::quant::gemm::internal {

// Columns of a decoded weight panel: panel[kk * kPanelWidth + c] holds the
// weight of output column c at depth kk.
inline constexpr int kPanelWidth = 16;

// acc[r * ldacc + c] = sum_{kk < depth} x[r * ldx + kk] * w[c * ldw + kk],
// exactly in int32, for r < rows, c < cols. The caller bounds depth so that
// no sum overflows (255 * 127 * depth < 2^31).
using Int8TileFn = void (*)(const uint8_t* x, int64_t ldx, const int8_t* w,
                            int64_t ldw, int64_t rows, int64_t cols,
                            int64_t depth, int32_t* acc, int64_t ldacc);

// y[r * ldy + c] = sum_{kk < depth} x[r * ldx + kk] * panel[kk * kPanelWidth + c]
// in float32 (any summation order), for r < rows, c < cols <= kPanelWidth.
// Panel columns >= cols must hold finite values; they are not written out.
using PanelGemmFn = void (*)(const float* x, int64_t ldx, int64_t rows,
                             const float* panel, int64_t depth, float* y,
                             int64_t ldy, int64_t cols);

// The int8 weight panels of int8_gemm.h (PackInt8Panels): a panel holds
// kInt8PanelWidth output columns, as ceil(depth / 4) groups of
// [kInt8PanelWidth columns][kInt8PanelDepth depths] int8, zero past the last
// column and depth, which is the operand layout of vpdpbusd.
inline constexpr int kInt8PanelWidth = 16;
inline constexpr int kInt8PanelDepth = 4;
inline constexpr int64_t Int8PanelBytes(int64_t depth) {
  return (depth + kInt8PanelDepth - 1) / kInt8PanelDepth * kInt8PanelWidth * kInt8PanelDepth;
}

// As Int8TileFn, with the weights of columns [0, cols) as consecutive panels
// starting at `panels` (Int8PanelBytes(depth) bytes each). Reads exactly the
// x bytes of rows < rows and depths < depth.
using Int8PanelTileFn = void (*)(const uint8_t* x, int64_t ldx, const int8_t* panels,
                                 int64_t rows, int64_t cols, int64_t depth, int32_t* acc,
                                 int64_t ldacc);

// Activation quantization of int8_gemm.cc. MinMax: *lo = min(0, min x),
// *hi = max(0, max x) with std::min/std::max's results; returns whether every
// x is finite (lo/hi are then meaningless otherwise). QuantizeRow:
// q[i] = clamp(round_half_even(clamp(v, -512, 512)) + zero, 0, 255) with
// v = x[i] / factor when `divide`, else x[i] * factor; NaN v counts as -512.
// Every path gives the scalar kernels' bytes.
using MinMaxFn = bool (*)(const float* x, int64_t n, float* lo, float* hi);
using QuantizeRowFn = void (*)(const float* x, int64_t n, float factor, bool divide,
                               float zero, uint8_t* q);

// The float epilogue of every int8 GEMM, per output channel o:
//   v = (x_scale * w_scales[o]) * float(int32(uint32(sum) - uint32(x_zero * w_row_sums[o])))
//   (+ bias[o] when bias is not null), then max(0, v) when relu,
// each operation rounded once (no FMA), so every path gives the same bits.
struct Int8Rescale {
  float x_scale = 0.0f;
  int32_t x_zero = 0;
  const float* w_scales = nullptr;
  const int32_t* w_row_sums = nullptr;
  const float* bias = nullptr;
  bool relu = false;
};

// Output transposed, for convolutions: y[o * ldy + r] = rescale(sum_k x[r, k]
// * w[o * depth + k]) for o < out, r < rows, with x (uint8) as panels of 16
// rows in the int8 weight-panel layout (rows in place of columns) and w the
// [out, depth] int8 weights read in place.
using Int8TransposedGemmFn = void (*)(const uint8_t* x_panels, int64_t rows, const int8_t* w,
                                      int64_t out, int64_t depth, const Int8Rescale& rescale,
                                      float* y, int64_t ldy);

// Int4 / 4-bit codebook GEMV for a few activation rows: for output rows
// n < rows and activation rows r < x_rows (at most kGemvBlockRows),
//   y[r * ldy + n] = sum_g s(n, g) * sum_{kk in group g} x_r[kk] * w(n, kk)  (+ bias[n])
// with, when codebook is null, w = q[n, kk] - zero, zero = zero_points[n *
// groups + g] or 8 (the symmetric offset) when zero_points is null, s =
// scales[n * groups + g]; when codebook is not null, w =
// codebook[n * codebook_stride + q[n, kk]] (16 entries; stride 16 per row or
// 0 per layer) and s = 1 (scales and zero_points unused). The nibbles are
// decoded in registers from `packed` (row_bytes a row, low nibble = even kk),
// once for all x_rows rows; x_r given de-interleaved as x_even[r * ldx + k]
// = x_r[2k], x_odd[r * ldx + k] = x_r[2k + 1]. Every group is group_bytes
// bytes (even depth and group sizes only). Float results within the
// reassociation bound of Int4GemmRef / LutGemmRef.
inline constexpr int kGemvBlockRows = 8;
struct Int4GemvArgs {
  const float* x_even;
  const float* x_odd;
  int64_t ldx;
  int64_t x_rows;
  const uint8_t* packed;
  int64_t row_bytes;
  int64_t rows;
  int64_t group_bytes;
  int64_t groups;
  const float* scales;
  const uint8_t* zero_points;
  const float* codebook;
  int64_t codebook_stride;
  const float* bias;
  float* y;
  int64_t ldy;
};
using Int4GemvFn = void (*)(const Int4GemvArgs& args);

// For the ISA files' micro-kernel loops: calls block.template
// operator()<kMax>(r) for r = 0, kMax, ... while kMax rows remain, then
// block.template operator()<left>(r) once for the 1..kMax-1 rows left, so
// that every tile height is a compile-time constant. (Each caller passes its
// own lambda, so no instantiation is shared between files built with
// different instruction sets.)
template <int kRows, typename Block>
void CallForRemainder(int64_t left, int64_t r, Block& block) {
  if constexpr (kRows > 0) {
    if (left == kRows) {
      block.template operator()<kRows>(r);
    } else {
      CallForRemainder<kRows - 1>(left, r, block);
    }
  }
}

template <int kMax, typename Block>
void ForRowBlocks(int64_t rows, Block&& block) {
  int64_t r = 0;
  for (; r + kMax <= rows; r += kMax) block.template operator()<kMax>(r);
  CallForRemainder<kMax - 1>(rows - r, r, block);
}

// Int8Gemm's epilogue over a tile: y[r * ldy + c] = (x_scales[r] *
// w_scales[c]) * float(int32(uint32(acc[r * ldacc + c]) - uint32(x_zeros[r] *
// w_row_sums[c]))) (+ bias[c] when bias is not null), for r < rows, c < cols;
// the pointers are already offset to the tile. Same bits as the scalar loop.
using Int8EpilogueFn = void (*)(const int32_t* acc, int64_t ldacc, int64_t rows, int64_t cols,
                                const float* x_scales, const int32_t* x_zeros,
                                const float* w_scales, const int32_t* w_row_sums,
                                const float* bias, float* y, int64_t ldy);

struct GemmKernels {
  Int8TileFn int8_tile;
  PanelGemmFn panel_gemm;
  Int8PanelTileFn int8_panel_tile;  // null on paths without VNNI
  MinMaxFn min_max;
  QuantizeRowFn quantize_row;
  Int8TransposedGemmFn int8_transposed_gemm;
  Int4GemvFn int4_gemv;  // null where the panel GEMM serves every batch
  Int8EpilogueFn int8_epilogue;  // null: int8_gemm.cc's scalar loop
};

// The portable kernels (scalar_kernels.cc); Int8TileScalar is also the
// oracle of the int8 reference.
void Int8TileScalar(const uint8_t* x, int64_t ldx, const int8_t* w, int64_t ldw,
                    int64_t rows, int64_t cols, int64_t depth, int32_t* acc,
                    int64_t ldacc);
void PanelGemmScalar(const float* x, int64_t ldx, int64_t rows,
                     const float* panel, int64_t depth, float* y, int64_t ldy,
                     int64_t cols);
bool MinMaxScalar(const float* x, int64_t n, float* lo, float* hi);
void Int8TransposedGemmScalar(const uint8_t* x_panels, int64_t rows, const int8_t* w,
                              int64_t out, int64_t depth, const Int8Rescale& rescale, float* y,
                              int64_t ldy);
void QuantizeRowScalar(const float* x, int64_t n, float factor, bool divide, float zero,
                       uint8_t* q);

// The AVX2 + FMA kernels (avx2_kernels.cc). Call only where CpuHasAvx2Fma().
void Int8TileAvx2(const uint8_t* x, int64_t ldx, const int8_t* w, int64_t ldw,
                  int64_t rows, int64_t cols, int64_t depth, int32_t* acc,
                  int64_t ldacc);
void PanelGemmAvx2(const float* x, int64_t ldx, int64_t rows,
                   const float* panel, int64_t depth, float* y, int64_t ldy,
                   int64_t cols);
bool MinMaxAvx2(const float* x, int64_t n, float* lo, float* hi);
void QuantizeRowAvx2(const float* x, int64_t n, float factor, bool divide, float zero,
                     uint8_t* q);

// The AVX-VNNI kernels (avxvnni_kernels.cc). Call only where
// CpuRunsGemmPath(GemmPath::kAvxVnni).
void Int8PanelTileAvxVnni(const uint8_t* x, int64_t ldx, const int8_t* panels, int64_t rows,
                          int64_t cols, int64_t depth, int32_t* acc, int64_t ldacc);
void Int8TransposedGemmAvxVnni(const uint8_t* x_panels, int64_t rows, const int8_t* w,
                               int64_t out, int64_t depth, const Int8Rescale& rescale, float* y,
                               int64_t ldy);

// The AVX-512 kernels (avx512vnni_kernels.cc). Call only where
// CpuRunsGemmPath(GemmPath::kAvx512Vnni).
void Int8PanelTileAvx512Vnni(const uint8_t* x, int64_t ldx, const int8_t* panels,
                             int64_t rows, int64_t cols, int64_t depth, int32_t* acc,
                             int64_t ldacc);
void PanelGemmAvx512(const float* x, int64_t ldx, int64_t rows, const float* panel,
                     int64_t depth, float* y, int64_t ldy, int64_t cols);
bool MinMaxAvx512(const float* x, int64_t n, float* lo, float* hi);
void Int8EpilogueAvx512(const int32_t* acc, int64_t ldacc, int64_t rows, int64_t cols,
                        const float* x_scales, const int32_t* x_zeros, const float* w_scales,
                        const int32_t* w_row_sums, const float* bias, float* y, int64_t ldy);
void Int8TransposedGemmAvx512Vnni(const uint8_t* x_panels, int64_t rows, const int8_t* w,
                                  int64_t out, int64_t depth, const Int8Rescale& rescale,
                                  float* y, int64_t ldy);
void QuantizeRowAvx512(const float* x, int64_t n, float factor, bool divide, float zero,
                       uint8_t* q);
void Int4GemvAvx512(const Int4GemvArgs& args);

}  // namespace squeeze::core::quant::gemm::internal

#endif  // SQUEEZE_CORE_QUANT_GEMM_KERNELS_H_
