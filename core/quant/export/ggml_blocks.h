// llama.cpp / ggml's Q8_0 and Q4_0 block layouts and their scalar reference
// quantizers, written from the semantics of ggml's quantize_row_q8_0_ref and
// quantize_row_q4_0_ref (ggml/src/ggml-quants.c) so that GGUF files we write
// hold the bytes llama.cpp's own converter would. These functions are the
// oracle for any faster path.
//
// A row of k values (k a multiple of 32) is k / 32 consecutive blocks.
//   Q8_0: d = amax / 127 (amax = largest |x|), q[j] = roundf(x[j] / d)
//         (half away from zero), x ~ q * d.
//   Q4_0: m = the value of largest magnitude, signed (the first one on
//         ties), d = m / -8, q[j] = min(15, trunc(x[j] / d + 8.5)) stored in
//         a nibble, x ~ (q - 8) * d. Element j (0 <= j < 16) is the low
//         nibble of qs[j], element j + 16 the high nibble of qs[j]. The value
//         -m maps to 16 and is clamped to 15, so one end of the range is
//         off by up to |d|: the format's error bound is |d|, not |d| / 2.
// d is stored as IEEE binary16 (round to nearest even); the quotients use
// the float32 reciprocal 1 / d as ggml does (0 when d is 0).
#ifndef SQUEEZE_CORE_QUANT_EXPORT_GGML_BLOCKS_H_
#define SQUEEZE_CORE_QUANT_EXPORT_GGML_BLOCKS_H_

#include <cstdint>

namespace squeeze::core::quant_export {

inline constexpr int kGgmlBlockSize = 32;  // QK8_0 == QK4_0

struct BlockQ8_0 {
  uint16_t d;                  // binary16 scale
  int8_t qs[kGgmlBlockSize];   // quants
};
static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 is 34 bytes in ggml");

struct BlockQ4_0 {
  uint16_t d;                      // binary16 scale
  uint8_t qs[kGgmlBlockSize / 2];  // nibbles, see above
};
static_assert(sizeof(BlockQ4_0) == 18, "block_q4_0 is 18 bytes in ggml");

// ggml_type codes as GGUF stores them.
enum class GgmlType : uint32_t { kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ8_0 = 8 };

// Precondition for all four: k % kGgmlBlockSize == 0; y / x hold k / 32
// blocks / k floats.
void QuantizeQ8_0Ref(const float* x, BlockQ8_0* y, int64_t k);
void QuantizeQ4_0Ref(const float* x, BlockQ4_0* y, int64_t k);
void DequantizeQ8_0(const BlockQ8_0* x, float* y, int64_t k);
void DequantizeQ4_0(const BlockQ4_0* x, float* y, int64_t k);

}  // namespace squeeze::core::quant_export

#endif  // SQUEEZE_CORE_QUANT_EXPORT_GGML_BLOCKS_H_
