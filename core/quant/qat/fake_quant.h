// Scalar reference of LSQ fake quantization (Esser et al. 2020, "Learned
// Step Size Quantization"): the oracle that the QuantizeLinear ->
// DequantizeLinear gradients of core/train/vjp.cc are tested against, and
// the function that bakes trained weights.
//
//   forward   q(x; s) = clamp(round_half_even(x / s) + z, qmin, qmax) - z, times s
//   backward  dL/dx = dL/dq where qmin <= round(x/s) + z <= qmax (straight-
//             through estimator), 0 outside;
//             dL/ds = dL/dq * (round(x/s) - x/s) inside, * (qmin - z) below,
//             * (qmax - z) above.
// The LSQ gradient scale g = 1 / sqrt(N * qmax) (N: elements sharing the
// scale) is applied by the trainer, not here: these are exact derivatives.
#ifndef SQUEEZE_CORE_QUANT_QAT_FAKE_QUANT_H_
#define SQUEEZE_CORE_QUANT_QAT_FAKE_QUANT_H_

#include <cstdint>

namespace squeeze::core::quant::qat {

// An integer grid: qmin <= q <= qmax, real value (q - zero) * scale.
struct QuantGrid {
  float qmin = -8;
  float qmax = 7;
  float zero = 0;
};

// Signed symmetric `bits`-bit grid as ONNX stores it: [-2^(b-1), 2^(b-1)-1].
QuantGrid SignedGrid(int bits);

// round_half_even(x / scale) + zero clamped to the grid (x / scale in
// float32, as the CPU QuantizeLinear kernel computes it). scale > 0.
float QuantizeCode(float x, float scale, const QuantGrid& grid);

// (QuantizeCode(x) - zero) * scale.
float FakeQuantize(float x, float scale, const QuantGrid& grid);

struct LsqGradient {
  float dx = 0;  // straight-through
  float ds = 0;  // step size
};

// The gradients of FakeQuantize at x given dL/dy = `dy`.
LsqGradient LsqBackward(float x, float scale, const QuantGrid& grid, float dy);

// LSQ's gradient scale 1 / sqrt(elements * qmax) for a scale shared by
// `elements` values.
float LsqGradientScale(int64_t elements, float qmax);

}  // namespace squeeze::core::quant::qat

#endif  // SQUEEZE_CORE_QUANT_QAT_FAKE_QUANT_H_
