#include "core/hf/bpe_trainer.h"

#include "gtest/gtest.h"

namespace squeeze::core::hf {
namespace {

TEST(BpeTrainerTest, LearnsFrequentPairsAndRoundTripsThroughTheTokenizer) {
  const std::string text = "the whale, the whale! the sea and the ship; thee then there. é ü";
  auto trained = TrainByteLevelBpe({text, text}, {20, 2});
  ASSERT_TRUE(trained.ok()) << trained.status();
  ASSERT_FALSE(trained->merges.empty());
  // "he" and "th" both occur 14 times, more than any other pair; the tie
  // goes to the lower symbols; then "t" + "he" occurs 14 times.
  EXPECT_EQ(trained->merges[0].left + trained->merges[0].right, "he");
  EXPECT_EQ(trained->merges[1].left, "t");
  EXPECT_EQ(trained->merges[1].right, "he");
  auto tokenizer = text::BpeTokenizer::FromVocabAndMergesText(trained->VocabJson(), trained->MergesTxt(),
                                                              "vocab.json", "merges.txt");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_LE(tokenizer->VocabSize(), 256 + 20);
  const std::vector<text::TokenId> ids = tokenizer->Encode(text);
  EXPECT_LT(ids.size(), text.size());
  EXPECT_EQ(*tokenizer->Decode(ids), text);
  const std::vector<text::TokenId> whale = tokenizer->Encode(" whale");
  EXPECT_EQ(whale.size(), 1u) << "a piece seen as often as \" whale\" should become one token";
}

TEST(BpeTrainerTest, StopsWhenNoPairRepeats) {
  auto trained = TrainByteLevelBpe({"abcdef"}, {100, 2});
  ASSERT_TRUE(trained.ok());
  EXPECT_TRUE(trained->merges.empty());
  EXPECT_EQ(trained->symbols.size(), 256u);
  EXPECT_FALSE(TrainByteLevelBpe({"x"}, {-1, 2}).ok());
}

}  // namespace
}  // namespace squeeze::core::hf
