// libFuzzer target for the tokenizer loaders and for Encode/Decode.
// The first byte picks the mode:
//   0: the rest is a tokenizer.json
//   1: the rest is vocab.json, a NUL byte, then merges.txt
//   2: the rest is text; Decode(Encode(text)) must give it back
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/text/bpe_tokenizer.h"

namespace {

using squeeze::core::text::BpeTokenizer;

const BpeTokenizer& SmallTokenizer() {
  static const BpeTokenizer* tokenizer = [] {
    absl::flat_hash_map<std::string, squeeze::core::text::TokenId> vocab;
    for (int b = 0; b < 256; ++b) {
      vocab[squeeze::core::text::ByteToSymbol(b)] = b;
    }
    vocab["th"] = 256;
    vocab["Ġth"] = 257;
    vocab["the"] = 258;
    auto created = BpeTokenizer::Create(
        vocab, {{"t", "h", ""}, {"Ġ", "th", ""}, {"th", "e", ""}});
    if (!created.ok()) std::abort();
    return new BpeTokenizer(*std::move(created));
  }();
  return *tokenizer;
}

void CheckRoundTrip(const BpeTokenizer& tokenizer, std::string_view text) {
  absl::StatusOr<std::string> decoded = tokenizer.Decode(tokenizer.Encode(text));
  if (!decoded.ok() || *decoded != text) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto tokenizer = BpeTokenizer::FromHuggingFaceJsonText(rest, "fuzz.json");
      if (tokenizer.ok()) CheckRoundTrip(*tokenizer, "the text, théâtre 123");
      break;
    }
    case 1: {
      const size_t nul = rest.find('\0');
      const std::string_view vocab = rest.substr(0, nul);
      const std::string_view merges =
          nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
      auto tokenizer = BpeTokenizer::FromVocabAndMergesText(
          vocab, merges, "vocab.json", "merges.txt");
      if (tokenizer.ok()) CheckRoundTrip(*tokenizer, "the text, théâtre 123");
      break;
    }
    case 2:
      CheckRoundTrip(SmallTokenizer(), rest);
      break;
  }
  return 0;
}
