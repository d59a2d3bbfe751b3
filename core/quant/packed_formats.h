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
//   int3 symmetric  [-3, 3]     q + 8 in a nibble, in [5, 11]   ceil(in / 2)
//   int3 asymm.     [0, 7]      q in a nibble                   ceil(in / 2)
//   int2 symmetric  [-1, 1]     q + 8 in a nibble, in [7, 9]    ceil(in / 2)
//   int2 asymm.     [0, 3]      q in a nibble                   ceil(in / 2)
//
// int3 and int2 reuse the int4 nibble container (correctness first: every
// int4 consumer -- dequantizers, the int4 GEMM's unpacking, QDQ export --
// reads them unchanged, since a 3- or 2-bit q is a valid int4 q). Their
// storage is therefore 4 bits per value; a dense 3-/2-bit bit stream like
// codebook_layout.h's is the next step and would change only
// PackedRowBytes and the (un)packers. Reports that compare formats by size
// count the nominal bits (PackedBits) and say so.
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
inline constexpr int kInt3SymmetricMax = 3;
inline constexpr int kInt3AsymmetricMax = 7;
inline constexpr int kInt2SymmetricMax = 1;
inline constexpr int kInt2AsymmetricMax = 3;

// True for the bit widths the uniform formats support: 2, 3, 4, 8.
constexpr bool IsUniformBits(int bits) { return bits == 2 || bits == 3 || bits == 4 || bits == 8; }
// True for the widths stored one value per nibble (2, 3 and 4).
constexpr bool IsNibbleBits(int bits) { return bits == 2 || bits == 3 || bits == 4; }

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

// Bytes one packed row of `in` elements takes at `bits` (2, 3, 4 or 8).
constexpr int64_t PackedRowBytes(int bits, int64_t in) {
  return IsNibbleBits(bits) ? (in + 1) / 2 : in;
}
static_assert(PackedRowBytes(4, 7) == 4 && PackedRowBytes(8, 7) == 7);
static_assert(PackedRowBytes(3, 7) == 4 && PackedRowBytes(2, 8) == 4, "int3/int2 use nibbles");

// Largest stored q for `bits` and symmetry, as in the table above.
constexpr int QuantMax(int bits, bool asymmetric) {
  if (bits == 2) return asymmetric ? kInt2AsymmetricMax : kInt2SymmetricMax;
  if (bits == 3) return asymmetric ? kInt3AsymmetricMax : kInt3SymmetricMax;
  if (bits == 4) return asymmetric ? kInt4AsymmetricMax : kInt4SymmetricMax;
  return asymmetric ? kInt8AsymmetricMax : kInt8SymmetricMax;
}

static_assert(QuantMax(3, false) == 3 && QuantMax(3, true) == 7 && QuantMax(2, false) == 1 &&
              QuantMax(2, true) == 3);
// Every stored int3/int2 nibble is a valid int4 nibble with the same meaning.
static_assert(kInt3SymmetricMax + kInt4SymmetricOffset <= 15 && kInt4SymmetricOffset - kInt3SymmetricMax >= 1);

}  // namespace squeeze::core::quant

#endif  // SQUEEZE_CORE_QUANT_PACKED_FORMATS_H_
