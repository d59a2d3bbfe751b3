// The portable kernels: plain loops the compiler may vectorize for the
// baseline ISA. Int8TileScalar is the int8 oracle, so it stays obvious.
#include "core/quant/gemm/kernels.h"

namespace squeeze::core::quant::gemm::internal {

void Int8TileScalar(const uint8_t* x, int64_t ldx, const int8_t* w, int64_t ldw,
                    int64_t rows, int64_t cols, int64_t depth, int32_t* acc,
                    int64_t ldacc) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      int32_t sum = 0;
      for (int64_t kk = 0; kk < depth; ++kk) {
        sum += int32_t{x[r * ldx + kk]} * int32_t{w[c * ldw + kk]};
      }
      acc[r * ldacc + c] = sum;
    }
  }
}

void PanelGemmScalar(const float* x, int64_t ldx, int64_t rows,
                     const float* panel, int64_t depth, float* y, int64_t ldy,
                     int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    float sum[kPanelWidth] = {};
    for (int64_t kk = 0; kk < depth; ++kk) {
      const float xv = x[r * ldx + kk];
      const float* p = panel + kk * kPanelWidth;
      for (int c = 0; c < kPanelWidth; ++c) sum[c] += xv * p[c];
    }
    for (int64_t c = 0; c < cols; ++c) y[r * ldy + c] = sum[c];
  }
}

}  // namespace squeeze::core::quant::gemm::internal
