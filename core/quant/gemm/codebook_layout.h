// The packed layout of codebook (k-means, non-uniform) weights: b-bit
// indices into a float codebook of 2^b centroids, b in {2, 3, 4}.
//
// A quantized [out, in] weight is stored row by row; every row starts on a
// byte boundary and takes CodebookRowBytes(bits, in) = ceil(in * bits / 8)
// bytes. Within a row the indices form a little-endian bit stream: index c
// occupies bits [c * bits, (c + 1) * bits) counting from bit 0 (the least
// significant) of byte 0, so a 3-bit index may straddle two bytes. Unused
// high bits of a row's last byte are 0. Every 8 indices fill exactly `bits`
// bytes, which is what the decoders exploit.
//
// The codebook is per layer ([2^bits] floats) or per output row
// ([out, 2^bits] floats); W[r, c] = codebook[(per_row ? r : 0) * 2^bits + index].
//
// This belongs with core/quant/packed_formats.h (the one home of packed
// layouts) and should move there when that header's owner takes it.
#ifndef SQUEEZE_CORE_QUANT_GEMM_CODEBOOK_LAYOUT_H_
#define SQUEEZE_CORE_QUANT_GEMM_CODEBOOK_LAYOUT_H_

#include <cstdint>

namespace squeeze::core::quant {

inline constexpr int kMinCodebookBits = 2;
inline constexpr int kMaxCodebookBits = 4;

constexpr int CodebookEntries(int bits) { return 1 << bits; }

constexpr int64_t CodebookRowBytes(int bits, int64_t in) {
  return (in * bits + 7) / 8;
}
static_assert(CodebookRowBytes(2, 7) == 2 && CodebookRowBytes(3, 7) == 3 &&
              CodebookRowBytes(4, 7) == 4 && CodebookRowBytes(3, 8) == 3);
static_assert(CodebookEntries(kMaxCodebookBits) <= 256, "indices fit a byte");

// Index c of a packed row. Reads only bytes of the row.
constexpr uint32_t ReadCodebookIndex(const uint8_t* row, int64_t c, int bits) {
  const int64_t bit = c * bits;
  const int shift = static_cast<int>(bit % 8);
  uint32_t word = row[bit / 8];
  if (shift + bits > 8) word |= uint32_t{row[bit / 8 + 1]} << 8;
  return (word >> shift) & ((1u << bits) - 1);
}

// Sets index c of a packed row (whose bits for c must still be 0).
constexpr void WriteCodebookIndex(uint8_t* row, int64_t c, int bits,
                                  uint32_t index) {
  const int64_t bit = c * bits;
  const int shift = static_cast<int>(bit % 8);
  const uint32_t word = index << shift;
  row[bit / 8] = static_cast<uint8_t>(row[bit / 8] | (word & 0xff));
  if (shift + bits > 8) {
    row[bit / 8 + 1] = static_cast<uint8_t>(row[bit / 8 + 1] | (word >> 8));
  }
}

namespace codebook_layout_check {
constexpr bool RoundTrips3Bit() {
  uint8_t row[3] = {};
  for (int c = 0; c < 8; ++c) WriteCodebookIndex(row, c, 3, static_cast<uint32_t>(7 - c));
  for (int c = 0; c < 8; ++c) {
    if (ReadCodebookIndex(row, c, 3) != static_cast<uint32_t>(7 - c)) return false;
  }
  // Index 0 = 7 in bits 0-2, index 1 = 6 in bits 3-5, index 2 = 5 straddles.
  return row[0] == (7 | (6 << 3) | ((5 & 3) << 6));
}
static_assert(RoundTrips3Bit(), "3-bit indices straddle bytes LSB first");
}  // namespace codebook_layout_check

}  // namespace squeeze::core::quant

#endif  // SQUEEZE_CORE_QUANT_GEMM_CODEBOOK_LAYOUT_H_
