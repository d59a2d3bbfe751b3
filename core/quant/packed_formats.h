// The packed weight layouts, shared by every quantizer and dequantizer (and
// by any future CUDA kernel). One header so that a layout is defined once.
//
// A quantized [out, in] weight is stored row by row; every row starts on a
// byte boundary. Each row is split into groups of `group_size` consecutive
// inputs (one group per row when per-channel); each group has one float32
// scale and, when asymmetric, one uint8 zero point. The element at column c
// of row r dequantizes as
//   symmetric:  w = q * scale[r][c / group]
//   asymmetric: w = (q - zero[r][c / group]) * scale[r][c / group]
//
//   format          q range     stored as                       bytes per row
//   int8 symmetric  [-127, 127] int8 (two's complement)         in
//   int8 asymm.     [0, 255]    uint8                           in
//   int4 symmetric  [-7, 7]     q + 8 in a nibble, in [1, 15]   ceil(in / 2)
//   int4 asymm.     [0, 15]     q in a nibble                   ceil(in / 2)
//
// int4: element 2k of a row is the low nibble of byte k, element 2k+1 the
// high nibble; an odd row leaves the last high nibble 0. Symmetric ranges
// are symmetric around zero (scale = max|w| / 127 or / 7) so that +max and
// -max are both exact; a stored int4 nibble 0 (q = -8) is never produced.
#ifndef SQUEEZE_CORE_QUANT_PACKED_FORMATS_H_
#define SQUEEZE_CORE_QUANT_PACKED_FORMATS_H_

#include <cstdint>

namespace squeeze::core::quant {

// Largest |q| of the symmetric formats and largest q of the asymmetric ones.
inline constexpr int kInt8SymmetricMax = 127;
inline constexpr int kInt8AsymmetricMax = 255;
inline constexpr int kInt4SymmetricMax = 7;
inline constexpr int kInt4AsymmetricMax = 15;
// Added to a symmetric int4 q to store it as an unsigned nibble.
inline constexpr int kInt4SymmetricOffset = 8;

// One byte of int4 data: two elements.
struct PackedInt4Pair {
  uint8_t bits;  // low nibble: element 2k; high nibble: element 2k+1

  static constexpr PackedInt4Pair Pack(uint8_t low, uint8_t high) {
    return PackedInt4Pair{static_cast<uint8_t>((low & 0x0f) | (high << 4))};
  }
  constexpr uint8_t Low() const { return bits & 0x0f; }
  constexpr uint8_t High() const { return bits >> 4; }
};
static_assert(sizeof(PackedInt4Pair) == 1, "int4 pairs are one byte");
static_assert(PackedInt4Pair::Pack(0x3, 0xa).bits == 0xa3);
static_assert(PackedInt4Pair{0xa3}.Low() == 0x3 && PackedInt4Pair{0xa3}.High() == 0xa);

// Per-group parameters as stored in the artifact (scales and zero points are
// separate tensors there; this is their element type).
using GroupScale = float;
using GroupZeroPoint = uint8_t;
static_assert(sizeof(GroupScale) == 4 && sizeof(GroupZeroPoint) == 1);

// Bytes one packed row of `in` elements takes at `bits` (4 or 8).
constexpr int64_t PackedRowBytes(int bits, int64_t in) {
  return bits == 4 ? (in + 1) / 2 : in;
}
static_assert(PackedRowBytes(4, 7) == 4 && PackedRowBytes(8, 7) == 7);

// Largest stored q for `bits` and symmetry, as in the table above.
constexpr int QuantMax(int bits, bool asymmetric) {
  if (bits == 4) return asymmetric ? kInt4AsymmetricMax : kInt4SymmetricMax;
  return asymmetric ? kInt8AsymmetricMax : kInt8SymmetricMax;
}

}  // namespace squeeze::core::quant

#endif  // SQUEEZE_CORE_QUANT_PACKED_FORMATS_H_
