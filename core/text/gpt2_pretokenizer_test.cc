#include "core/text/gpt2_pretokenizer.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::text {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Pieces(std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view piece : Gpt2PreTokenize(text)) out.emplace_back(piece);
  return out;
}

TEST(Gpt2PreTokenizeTest, WordsNumbersAndPunctuationTakeOneLeadingSpace) {
  EXPECT_THAT(Pieces("Hello, world! 42 cats..."),
              ElementsAre("Hello", ",", " world", "!", " 42", " cats", "..."));
}

TEST(Gpt2PreTokenizeTest, ContractionsSplitOffLowercaseOnly) {
  EXPECT_THAT(Pieces("I'm they'll DON'T"),
              ElementsAre("I", "'m", " they", "'ll", " DON", "'", "T"));
}

TEST(Gpt2PreTokenizeTest, SpaceRunsLeaveTheLastSpaceToTheNextWord) {
  EXPECT_THAT(Pieces("a   b"), ElementsAre("a", "  ", " b"));
  EXPECT_THAT(Pieces("a\n\nb"), ElementsAre("a", "\n", "\n", "b"));
  EXPECT_THAT(Pieces("a \n b"), ElementsAre("a", " \n", " b"));
  EXPECT_THAT(Pieces("end   "), ElementsAre("end", "   "));
  EXPECT_THAT(Pieces(" "), ElementsAre(" "));
  EXPECT_TRUE(Pieces("").empty());
}

TEST(Gpt2PreTokenizeTest, LatinLettersAndNumberSymbols) {
  EXPECT_THAT(Pieces("café Łódź x² ½"),
              ElementsAre("café", " Łódź", " x", "²", " ½"));
  // U+0301 COMBINING ACUTE ACCENT is a mark, not a letter.
  EXPECT_THAT(Pieces("e\xcc\x81x"), ElementsAre("e", "\xcc\x81", "x"));
}

TEST(Gpt2PreTokenizeTest, InvalidUtf8IsKeptByteForByte) {
  const std::string text = "ab\xff\xfe cd\xe2\x82";
  std::string joined;
  for (const std::string& piece : Pieces(text)) joined += piece;
  EXPECT_EQ(joined, text);
  EXPECT_THAT(Pieces(text), ElementsAre("ab", "\xff\xfe", " cd", "\xe2\x82"));
}

TEST(Gpt2PreTokenizeTest, ClassifiesCodePoints) {
  EXPECT_EQ(ClassifyCodePoint('a'), CharClass::kLetter);
  EXPECT_EQ(ClassifyCodePoint(0x4E2D), CharClass::kLetter);  // 中
  EXPECT_EQ(ClassifyCodePoint('7'), CharClass::kNumber);
  EXPECT_EQ(ClassifyCodePoint(0x3000), CharClass::kSpace);
  EXPECT_EQ(ClassifyCodePoint(0x1F600), CharClass::kOther);  // emoji
  EXPECT_EQ(ClassifyCodePoint(0xD7), CharClass::kOther);     // ×
}

TEST(Gpt2PreTokenizeTest, DecodesUtf8AndRejectsOverlongForms) {
  size_t length = 0;
  EXPECT_EQ(DecodeUtf8("\xf0\x9f\x98\x80", 0, &length), 0x1F600u);
  EXPECT_EQ(length, 4u);
  EXPECT_EQ(DecodeUtf8("\xc0\xaf", 0, &length), 0xFFFFFFFFu);
  EXPECT_EQ(length, 1u);
  EXPECT_EQ(DecodeUtf8("\xed\xa0\x80", 0, &length), 0xFFFFFFFFu);  // surrogate
}

}  // namespace
}  // namespace squeeze::core::text
