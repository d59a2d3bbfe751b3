// Round-to-nearest (RTN) weight quantization of linear layers to int8,
// int4, int3 or int2, symmetric or asymmetric, per output channel or per group of inputs.
// Packed layouts are defined in packed_formats.h.
//
// For each group (a run of group_size inputs of one output row, or the whole
// row when per-channel):
//   symmetric:  scale = max|w| / qmax, q = clamp(round(w / scale), -qmax, qmax)
//   asymmetric: lo = min(min w, 0), hi = max(max w, 0),
//               scale = (hi - lo) / qmax, zero = round(-lo / scale),
//               q = clamp(round(w / scale + zero), 0, qmax)
// Scales are rounded to float32; the quotients are taken in double. Every
// element then satisfies |w - dequantized| <= scale / 2 (up to float
// rounding). A group of zeros gets scale 0 and dequantizes to exactly 0.
#ifndef SQUEEZE_CORE_QUANT_RTN_H_
#define SQUEEZE_CORE_QUANT_RTN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/model/linear_chain.h"

namespace squeeze::core::quant {

struct RtnOptions {
  int bits = 8;         // 2, 3, 4 or 8 (2 and 3 stored in nibbles, packed_formats.h)
  int group_size = 0;   // 0: per output channel; else a power of two in
                        // [8, 4096] that divides the layer's input width
  bool asymmetric = false;

  // INVALID_ARGUMENT naming the bad value and `layer`, e.g.
  // "quantize: bits must be one of 2, 3, 4, 8, got 12 (layer fc1)".
  absl::Status Validate(int64_t in, const std::string& layer) const;

  // Short name used in reports and artifact metadata: "int4-g128-sym",
  // "int8-pc-asym" ("pc" = per channel).
  std::string TechniqueName() const;
};

struct QuantizedLinear {
  std::string name;
  int64_t in = 0;
  int64_t out = 0;
  int bits = 8;
  int group_size = 0;  // 0: per channel
  bool asymmetric = false;
  std::string packed;                // out * PackedRowBytes(bits, in) bytes
  std::vector<float> scales;         // [out, Groups()]
  std::vector<uint8_t> zero_points;  // [out, Groups()] when asymmetric, else empty
  std::vector<float> bias;           // [out], or empty

  // Groups per row: in / group_size, or 1 when per channel.
  int64_t Groups() const;
  // Bytes of packed weights, scales, zero points and bias.
  int64_t StorageBytes() const;
};

// The scalar reference quantizer: the oracle every faster path is tested
// against, bit for bit. INVALID_ARGUMENT for bad options (see Validate), a
// weight or bias whose size does not match the layer's shape, and any
// non-finite weight or bias, naming the layer, row and column.
absl::StatusOr<QuantizedLinear> QuantizeRtnRef(const model::LinearLayer& layer,
                                               const RtnOptions& options);

// The quantizer production code calls. Equal to QuantizeRtnRef bit for bit,
// errors included (tested): the same arithmetic as branch-free loops the
// compiler vectorizes, rows split over hardware_concurrency threads for
// layers of 2M weights or more.
absl::StatusOr<QuantizedLinear> QuantizeRtn(const model::LinearLayer& layer,
                                            const RtnOptions& options);

// Writes the out * in dequantized weights ([out, in], row-major) to `out`.
// INVALID_ARGUMENT naming the layer when `q` is inconsistent: bits or group
// size invalid, or packed/scales/zero_points/bias sizes not as documented.
absl::Status DequantizeRtn(const QuantizedLinear& q, float* out);

// Float formats a weight can be cast to (rounded to the nearest value of
// the format, ties to even).
enum class FloatFormat {
  kFloat16,   // IEEE binary16: 1-5-10, max 65504
  kBFloat16,  // bfloat16: 1-8-7, max 3.3895e38
  kFp8E4M3,   // OCP FP8 E4M3 ("e4m3fn"): 1-4-3, bias 7, max 448, no inf, NaN = S.1111.111
  kFp8E5M2,   // OCP FP8 E5M2: 1-5-2, bias 15, max 57344, inf = S.11111.00, NaN = S.11111.1x / .01
};

// "fp16", "bf16", "fp8-e4m3", "fp8-e5m2".
std::string FloatFormatName(FloatFormat format);
// Storage bits of one value: 16 or 8.
int FloatFormatBits(FloatFormat format);

// The encoding of `value` in `format`, saturating (OCP FP8 "saturation
// mode", applied to all four): finite values beyond the largest finite
// magnitude become +-max;
// +-inf becomes +-max in the FP8 formats and stays +-inf in fp16/bf16;
// NaN becomes a NaN of the format (0x7f / 0xff for FP8, sign kept). Rounding
// happens before saturation, ties to even, subnormals included; -0 stays -0.
uint16_t EncodeFloat(float value, FloatFormat format);
// The value of an encoding (exact in float32).
float DecodeFloat(uint16_t bits, FloatFormat format);

// Casts every value of `values` through `format` and back, in place
// (fake-quantization to a float format). Never fails.
void CastQuantize(FloatFormat format, std::vector<float>* values);

}  // namespace squeeze::core::quant

#endif  // SQUEEZE_CORE_QUANT_RTN_H_
