// Byte-level BPE as GPT-2 defines it. Encoding: the text is cut into pieces by
// Gpt2PreTokenize; each piece's UTF-8 bytes are mapped to GPT-2's printable
// stand-in characters (bytes_to_unicode: printable Latin-1 bytes stand for
// themselves, the other 68 bytes for U+0100..U+0143); the merges are applied
// by rank (lowest first, every occurrence left to right) until none applies;
// each resulting symbol is looked up in the vocabulary. Decoding reverses the
// mapping, so Decode(Encode(x)) == x for every byte string x, UTF-8 or not.
//
// Special tokens (e.g. "<|endoftext|>") are ordinary text to Encode, as in
// GPT-2's own encoder; Decode turns their ids back into their text.
//
// A BpeTokenizer is immutable after creation except for its cache of
// encoded pieces, which is guarded by a mutex: Encode and Decode may be
// called from several threads at once.
#ifndef SQUEEZE_CORE_TEXT_BPE_TOKENIZER_H_
#define SQUEEZE_CORE_TEXT_BPE_TOKENIZER_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace squeeze::core::text {

using TokenId = int32_t;

// One merge rule: the symbols `left` and `right` (in GPT-2's stand-in
// characters) become `left + right`. A merge's rank is its index in the list.
struct BpeMerge {
  std::string left;
  std::string right;
  // Where the merge was read from, for error messages (e.g. "merges.txt
  // line 7"); when empty, errors say "merge #<rank>".
  std::string source;
};

class BpeTokenizer {
 public:
  // From a vocabulary (symbol -> id) and merges in rank order.
  // INVALID_ARGUMENT when an id is negative or repeated, when one of the 256
  // byte symbols is missing from the vocabulary, or when a merge names a
  // symbol, or produces one, that the vocabulary lacks (naming the merge's
  // index and symbols).
  static absl::StatusOr<BpeTokenizer> Create(
      absl::flat_hash_map<std::string, TokenId> vocab,
      const std::vector<BpeMerge>& merges);

  // A Hugging Face tokenizer.json whose "model" is {"type": "BPE", "vocab":
  // {symbol: id}, "merges": ["a b", ...] or [["a", "b"], ...]}. The ids of
  // "added_tokens" join the vocabulary for Decode. The pre-tokenizer and
  // normalizer sections are not read: GPT-2's byte-level scheme is assumed.
  // NOT_FOUND etc. from reading; INVALID_ARGUMENT naming the file and the
  // byte offset or merge for malformed JSON, missing keys, wrong kinds and
  // the Create errors above.
  static absl::StatusOr<BpeTokenizer> FromHuggingFaceJson(
      const std::string& path);

  // A vocab.json ({symbol: id}) and a merges.txt (an optional "#version"
  // first line, then one "left right" merge per line; empty lines ignored).
  // GPT-2's own encoder.json and vocab.bpe are these two files under other
  // names. INVALID_ARGUMENT naming the file and byte offset (JSON) or line
  // (merges) of the problem.
  static absl::StatusOr<BpeTokenizer> FromVocabAndMerges(
      const std::string& vocab_path, const std::string& merges_path);

  // The same, from file contents held in memory; `vocab_name` and
  // `merges_name` are used in error messages only.
  static absl::StatusOr<BpeTokenizer> FromVocabAndMergesText(
      std::string_view vocab_json, std::string_view merges_txt,
      const std::string& vocab_name, const std::string& merges_name);

  // The same for tokenizer.json contents.
  static absl::StatusOr<BpeTokenizer> FromHuggingFaceJsonText(
      std::string_view json, const std::string& name);

  BpeTokenizer(BpeTokenizer&&);
  BpeTokenizer& operator=(BpeTokenizer&&);
  ~BpeTokenizer();

  // The ids of `text` (any bytes). Never fails: every byte has a symbol.
  std::vector<TokenId> Encode(std::string_view text) const;

  // The bytes the ids stand for. INVALID_ARGUMENT naming the id and its
  // position when an id is not in the vocabulary.
  absl::StatusOr<std::string> Decode(const std::vector<TokenId>& ids) const;

  // One more than the largest id (ids need not be dense).
  int64_t VocabSize() const { return vocab_size_; }

  // The id of `symbol` (in stand-in characters), if any.
  std::optional<TokenId> FindId(std::string_view symbol) const;

 private:
  struct PairHash {
    size_t operator()(std::pair<TokenId, TokenId> p) const {
      return std::hash<uint64_t>()((static_cast<uint64_t>(p.first) << 32) |
                                   static_cast<uint32_t>(p.second));
    }
  };
  struct MergeResult {
    int32_t rank;
    TokenId merged;
  };
  struct Cache;

  BpeTokenizer() = default;

  // Applies the merges to one piece's byte ids.
  std::vector<TokenId> MergePiece(std::string_view piece) const;

  absl::flat_hash_map<std::string, TokenId> vocab_;
  std::array<TokenId, 256> byte_ids_{};
  absl::flat_hash_map<std::pair<TokenId, TokenId>, MergeResult, PairHash>
      merges_;
  // Raw bytes of each id. A map, not a vector: a vocabulary file may name
  // an id near 2^31 and must not make us allocate for every smaller one.
  absl::flat_hash_map<TokenId, std::string> id_to_bytes_;
  int64_t vocab_size_ = 0;
  std::unique_ptr<Cache> cache_;
};

// GPT-2's stand-in character for `byte`, UTF-8 encoded (bytes_to_unicode).
std::string ByteToSymbol(uint8_t byte);

}  // namespace squeeze::core::text

#endif  // SQUEEZE_CORE_TEXT_BPE_TOKENIZER_H_
