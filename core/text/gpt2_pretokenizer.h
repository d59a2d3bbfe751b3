// GPT-2's pre-tokenization: the text is cut into pieces before byte-level
// BPE runs on each piece. GPT-2 uses the regular expression
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// and this is that expression written by hand, alternative by alternative.
//
// Character classes (the limits of this implementation):
//  - \s is exactly JavaScript's whitespace set (the gpt-3-encoder package is
//    the oracle in tests): \t \n \v \f \r, U+0020, U+00A0, U+1680,
//    U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000, U+FEFF. Python's
//    `regex` (GPT-2's original) also counts U+001C..U+001F and U+0085.
//  - \p{L} (letters) covers ASCII, Latin-1, Latin Extended-A/B, IPA,
//    spacing modifiers, Greek, Cyrillic, Armenian, Hebrew, Arabic letters,
//    Devanagari letters, Latin Extended Additional, Greek Extended, Hiragana,
//    Katakana, CJK Unified Ideographs (with Extension A), Hangul syllables and
//    fullwidth Latin. Letters of other scripts are treated as "other"
//    (the ` ?[^\s\p{L}\p{N}]+` class), which changes how they are cut into
//    pieces but never loses bytes.
//  - \p{N} covers ASCII digits, superscripts and vulgar fractions of
//    Latin-1, Arabic-Indic, Devanagari and fullwidth digits, super- and
//    subscript digits, Roman numerals and circled numbers.
//  - Combining marks (e.g. U+0301) are not letters, as in Unicode.
//  - A byte that is not part of valid UTF-8 is one "other" character.
#ifndef SQUEEZE_CORE_TEXT_GPT2_PRETOKENIZER_H_
#define SQUEEZE_CORE_TEXT_GPT2_PRETOKENIZER_H_

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace squeeze::core::text {

enum class CharClass { kLetter, kNumber, kSpace, kOther };

// The class of one Unicode code point, as described above.
CharClass ClassifyCodePoint(uint32_t code_point);

// Decodes the UTF-8 character starting at text[pos] (pos < text.size()).
// Returns its code point and sets *length to its byte count (1..4). Invalid
// or truncated sequences, overlong forms and surrogates decode as one byte
// with the code point 0xFFFFFFFF, which ClassifyCodePoint calls kOther.
uint32_t DecodeUtf8(std::string_view text, size_t pos, size_t* length);

// Cuts `text` into GPT-2's pieces. The pieces are consecutive views into
// `text` whose concatenation is `text` itself; an empty text gives none.
std::vector<std::string_view> Gpt2PreTokenize(std::string_view text);

}  // namespace squeeze::core::text

#endif  // SQUEEZE_CORE_TEXT_GPT2_PRETOKENIZER_H_
