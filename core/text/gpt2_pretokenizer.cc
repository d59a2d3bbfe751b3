#include "core/text/gpt2_pretokenizer.h"

#include <algorithm>
#include <array>

namespace squeeze::core::text {
namespace {

constexpr uint32_t kInvalidCodePoint = 0xFFFFFFFF;

struct Range {
  uint32_t first;
  uint32_t last;  // inclusive
};

// Sorted, non-overlapping. A practical subset of \p{L}; see the header.
constexpr std::array kLetterRanges = {
    Range{'A', 'Z'},         Range{'a', 'z'},         Range{0xAA, 0xAA},
    Range{0xB5, 0xB5},       Range{0xBA, 0xBA},       Range{0xC0, 0xD6},
    Range{0xD8, 0xF6},       Range{0xF8, 0x2C1},      Range{0x2C6, 0x2D1},
    Range{0x2E0, 0x2E4},     Range{0x2EC, 0x2EC},     Range{0x2EE, 0x2EE},
    Range{0x370, 0x374},     Range{0x376, 0x377},     Range{0x37A, 0x37D},
    Range{0x37F, 0x37F},     Range{0x386, 0x386},     Range{0x388, 0x38A},
    Range{0x38C, 0x38C},     Range{0x38E, 0x3A1},     Range{0x3A3, 0x3F5},
    Range{0x3F7, 0x481},     Range{0x48A, 0x52F},     Range{0x531, 0x556},
    Range{0x559, 0x559},     Range{0x560, 0x588},     Range{0x5D0, 0x5EA},
    Range{0x5EF, 0x5F2},     Range{0x620, 0x64A},     Range{0x66E, 0x66F},
    Range{0x671, 0x6D3},     Range{0x6D5, 0x6D5},     Range{0x904, 0x939},
    Range{0x93D, 0x93D},     Range{0x950, 0x950},     Range{0x958, 0x961},
    Range{0x971, 0x980},     Range{0x1E00, 0x1F15},   Range{0x1F18, 0x1F1D},
    Range{0x1F20, 0x1F45},   Range{0x1F48, 0x1F4D},   Range{0x1F50, 0x1F57},
    Range{0x1F59, 0x1F59},   Range{0x1F5B, 0x1F5B},   Range{0x1F5D, 0x1F5D},
    Range{0x1F5F, 0x1F7D},   Range{0x1F80, 0x1FB4},   Range{0x1FB6, 0x1FBC},
    Range{0x1FBE, 0x1FBE},   Range{0x1FC2, 0x1FC4},   Range{0x1FC6, 0x1FCC},
    Range{0x1FD0, 0x1FD3},   Range{0x1FD6, 0x1FDB},   Range{0x1FE0, 0x1FEC},
    Range{0x1FF2, 0x1FF4},   Range{0x1FF6, 0x1FFC},   Range{0x3041, 0x3096},
    Range{0x309D, 0x309F},   Range{0x30A1, 0x30FA},   Range{0x30FC, 0x30FF},
    Range{0x3400, 0x4DBF},   Range{0x4E00, 0x9FFF},   Range{0xAC00, 0xD7A3},
    Range{0xFF21, 0xFF3A},   Range{0xFF41, 0xFF5A},
};

// A practical subset of \p{N} (Nd, Nl and No); see the header.
constexpr std::array kNumberRanges = {
    Range{'0', '9'},       Range{0xB2, 0xB3},     Range{0xB9, 0xB9},
    Range{0xBC, 0xBE},     Range{0x660, 0x669},   Range{0x6F0, 0x6F9},
    Range{0x966, 0x96F},   Range{0x2070, 0x2070}, Range{0x2074, 0x2079},
    Range{0x2080, 0x2089}, Range{0x2150, 0x2182}, Range{0x2185, 0x2189},
    Range{0x2460, 0x249B}, Range{0x24EA, 0x24FF}, Range{0xFF10, 0xFF19},
};

template <size_t N>
bool InRanges(const std::array<Range, N>& ranges, uint32_t code_point) {
  const auto it = std::upper_bound(
      ranges.begin(), ranges.end(), code_point,
      [](uint32_t value, const Range& range) { return value < range.first; });
  return it != ranges.begin() && code_point <= std::prev(it)->last;
}

bool IsJavaScriptSpace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

struct Char {
  CharClass char_class;
  size_t length;
};

Char CharAt(std::string_view text, size_t pos) {
  size_t length = 1;
  const uint32_t code_point = DecodeUtf8(text, pos, &length);
  return {ClassifyCodePoint(code_point), length};
}

// End of the run of characters of class `wanted` starting at `pos`.
size_t RunEnd(std::string_view text, size_t pos, CharClass wanted) {
  while (pos < text.size()) {
    const Char c = CharAt(text, pos);
    if (c.char_class != wanted) break;
    pos += c.length;
  }
  return pos;
}

// Length of the contraction ('s 't 're 've 'm 'll 'd) at `pos`, or 0.
size_t ContractionLength(std::string_view text, size_t pos) {
  if (text[pos] != '\'') return 0;
  const std::string_view rest = text.substr(pos + 1);
  for (std::string_view suffix : {"s", "t", "re", "ve", "m", "ll", "d"}) {
    if (rest.substr(0, suffix.size()) == suffix) return 1 + suffix.size();
  }
  return 0;
}

// The length of the piece starting at `pos`, following the alternatives of
// the regular expression in order.
size_t PieceLength(std::string_view text, size_t pos) {
  if (const size_t n = ContractionLength(text, pos); n > 0) return n;
  // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional U+0020, then a
  // run of one class.
  const size_t start = text[pos] == ' ' ? pos + 1 : pos;
  if (start < text.size()) {
    const CharClass first = CharAt(text, start).char_class;
    if (first != CharClass::kSpace) return RunEnd(text, start, first) - pos;
  }
  // `\s+(?!\S)` then `\s+`: a whitespace run, less its last character when a
  // non-space follows and the run is longer than one character.
  const size_t run_end = RunEnd(text, pos, CharClass::kSpace);
  if (run_end == text.size()) return run_end - pos;
  size_t last_start = pos;
  for (size_t p = pos; p < run_end; p += CharAt(text, p).length) last_start = p;
  return last_start > pos ? last_start - pos : run_end - pos;
}

}  // namespace

CharClass ClassifyCodePoint(uint32_t code_point) {
  if (code_point == kInvalidCodePoint) return CharClass::kOther;
  if (IsJavaScriptSpace(code_point)) return CharClass::kSpace;
  if (InRanges(kLetterRanges, code_point)) return CharClass::kLetter;
  if (InRanges(kNumberRanges, code_point)) return CharClass::kNumber;
  return CharClass::kOther;
}

uint32_t DecodeUtf8(std::string_view text, size_t pos, size_t* length) {
  const auto byte = [&](size_t i) {
    return static_cast<uint8_t>(text[pos + i]);
  };
  *length = 1;
  const uint8_t lead = byte(0);
  if (lead < 0x80) return lead;
  size_t count;
  uint32_t code_point;
  uint32_t minimum;
  if ((lead & 0xE0) == 0xC0) {
    count = 2, code_point = lead & 0x1F, minimum = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    count = 3, code_point = lead & 0x0F, minimum = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    count = 4, code_point = lead & 0x07, minimum = 0x10000;
  } else {
    return kInvalidCodePoint;
  }
  if (text.size() - pos < count) return kInvalidCodePoint;
  for (size_t i = 1; i < count; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return kInvalidCodePoint;
    code_point = (code_point << 6) | (byte(i) & 0x3F);
  }
  if (code_point < minimum || code_point > 0x10FFFF ||
      (code_point >= 0xD800 && code_point <= 0xDFFF)) {
    return kInvalidCodePoint;
  }
  *length = count;
  return code_point;
}

std::vector<std::string_view> Gpt2PreTokenize(std::string_view text) {
  std::vector<std::string_view> pieces;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t length = PieceLength(text, pos);
    pieces.push_back(text.substr(pos, length));
    pos += length;
  }
  return pieces;
}

}  // namespace squeeze::core::text
