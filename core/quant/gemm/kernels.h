// Internal to core/quant/gemm: the inner kernels every GEMM in this folder is
// built from, one implementation per path behind one table. The AVX2 versions
// live alone in avx2_kernels.cc (compiled with -mavx2 -mfma); this header
// therefore includes nothing but <cstdint>.
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

struct GemmKernels {
  Int8TileFn int8_tile;
  PanelGemmFn panel_gemm;
};

// The portable kernels (scalar_kernels.cc); Int8TileScalar is also the
// oracle of the int8 reference.
void Int8TileScalar(const uint8_t* x, int64_t ldx, const int8_t* w, int64_t ldw,
                    int64_t rows, int64_t cols, int64_t depth, int32_t* acc,
                    int64_t ldacc);
void PanelGemmScalar(const float* x, int64_t ldx, int64_t rows,
                     const float* panel, int64_t depth, float* y, int64_t ldy,
                     int64_t cols);

// The AVX2 + FMA kernels (avx2_kernels.cc). Call only where CpuHasAvx2Fma().
void Int8TileAvx2(const uint8_t* x, int64_t ldx, const int8_t* w, int64_t ldw,
                  int64_t rows, int64_t cols, int64_t depth, int32_t* acc,
                  int64_t ldacc);
void PanelGemmAvx2(const float* x, int64_t ldx, int64_t rows,
                   const float* panel, int64_t depth, float* y, int64_t ldy,
                   int64_t cols);

}  // namespace squeeze::core::quant::gemm::internal

#endif  // SQUEEZE_CORE_QUANT_GEMM_KERNELS_H_
