#include "core/text/bpe_tokenizer.h"

#include <limits>
#include <mutex>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/model/file_io.h"
#include "core/model/json.h"
#include "core/status_macros.h"
#include "core/text/gpt2_pretokenizer.h"

namespace squeeze::core::text {
namespace {

using model::JsonValue;

// Pieces cached before the cache is emptied and starts again; bounds memory
// on long, varied inputs.
constexpr size_t kMaxCachedPieces = 1 << 16;

// GPT-2's bytes_to_unicode as code points: printable Latin-1 bytes map to
// themselves, the rest to 256, 257, ... in byte order.
std::array<uint32_t, 256> ByteCodePoints() {
  std::array<uint32_t, 256> code_points{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
                           (b >= 0xAE && b <= 0xFF);
    code_points[b] = printable ? b : next++;
  }
  return code_points;
}

std::string EncodeUtf8(uint32_t code_point) {
  std::string out;
  if (code_point < 0x80) {
    out.push_back(static_cast<char>(code_point));
  } else {  // All stand-ins are below U+0800.
    out.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
  return out;
}

// The raw bytes `symbol` stands for, or nullopt when it holds a character
// that is not a stand-in (e.g. in a vocabulary not made for byte-level BPE).
std::optional<std::string> SymbolToBytes(std::string_view symbol) {
  static const auto* const kCodePointToByte = [] {
    auto* table = new absl::flat_hash_map<uint32_t, uint8_t>();
    const std::array<uint32_t, 256> code_points = ByteCodePoints();
    for (int b = 0; b < 256; ++b) (*table)[code_points[b]] = b;
    return table;
  }();
  std::string bytes;
  size_t pos = 0;
  while (pos < symbol.size()) {
    size_t length = 1;
    const uint32_t code_point = DecodeUtf8(symbol, pos, &length);
    const auto it = kCodePointToByte->find(code_point);
    if (it == kCodePointToByte->end()) return std::nullopt;
    bytes.push_back(static_cast<char>(it->second));
    pos += length;
  }
  return bytes;
}

absl::Status Invalid(const std::string& where, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

// Prefixes `name` to a JSON parse error ("JSON: ... at byte N").
absl::StatusOr<JsonValue> ParseJsonFile(std::string_view text,
                                        const std::string& name) {
  absl::StatusOr<JsonValue> json = model::ParseJson(text);
  if (!json.ok()) return Invalid(name, std::string(json.status().message()));
  return json;
}

absl::StatusOr<absl::flat_hash_map<std::string, TokenId>> VocabFromJson(
    const JsonValue& json, const std::string& where) {
  if (json.kind != JsonValue::Kind::kObject) {
    return Invalid(where, absl::StrCat("vocabulary at byte ", json.offset,
                                       " is a ",
                                       model::JsonKindName(json.kind),
                                       ", not an object"));
  }
  absl::flat_hash_map<std::string, TokenId> vocab;
  for (const auto& [symbol, id] : json.object) {
    if (id.kind != JsonValue::Kind::kInteger || id.integer_value < 0 ||
        id.integer_value > std::numeric_limits<TokenId>::max()) {
      return Invalid(where, absl::StrCat("id of ", model::JsonQuote(symbol),
                                         " at byte ", id.offset,
                                         " is not an integer in [0, 2^31)"));
    }
    vocab[symbol] = static_cast<TokenId>(id.integer_value);
  }
  return vocab;
}

// Splits "left right" at its single space.
absl::StatusOr<BpeMerge> SplitMergeLine(std::string_view line,
                                        const std::string& where) {
  const size_t space = line.find(' ');
  if (space == std::string_view::npos || space == 0 ||
      space + 1 == line.size() ||
      line.find(' ', space + 1) != std::string_view::npos) {
    return Invalid(where, absl::StrCat("merge ", model::JsonQuote(line),
                                       " is not two symbols separated by "
                                       "one space"));
  }
  return BpeMerge{std::string(line.substr(0, space)),
                  std::string(line.substr(space + 1)), where};
}

// Create, with vocabulary errors prefixed by the file they came from (merge
// errors already name theirs).
absl::StatusOr<BpeTokenizer> CreateNaming(
    absl::flat_hash_map<std::string, TokenId> vocab,
    const std::vector<BpeMerge>& merges, const std::string& vocab_name) {
  absl::StatusOr<BpeTokenizer> tokenizer =
      BpeTokenizer::Create(std::move(vocab), merges);
  if (tokenizer.ok() ||
      tokenizer.status().message().rfind("vocabulary", 0) != 0) {
    return tokenizer;
  }
  return Invalid(vocab_name, std::string(tokenizer.status().message()));
}

}  // namespace

struct BpeTokenizer::Cache {
  std::mutex mutex;
  absl::flat_hash_map<std::string, std::vector<TokenId>> pieces;
};

BpeTokenizer::BpeTokenizer(BpeTokenizer&&) = default;
BpeTokenizer& BpeTokenizer::operator=(BpeTokenizer&&) = default;
BpeTokenizer::~BpeTokenizer() = default;

std::string ByteToSymbol(uint8_t byte) {
  static const std::array<uint32_t, 256> kCodePoints = ByteCodePoints();
  return EncodeUtf8(kCodePoints[byte]);
}

absl::StatusOr<BpeTokenizer> BpeTokenizer::Create(
    absl::flat_hash_map<std::string, TokenId> vocab,
    const std::vector<BpeMerge>& merges) {
  BpeTokenizer tokenizer;
  for (const auto& [symbol, id] : vocab) {
    if (id < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "vocabulary: id ", id, " of ", model::JsonQuote(symbol),
          " is negative"));
    }
    // Symbols that are not byte-level (special tokens such as
    // "<|endoftext|>" written in plain text) decode to themselves.
    if (!tokenizer.id_to_bytes_
             .try_emplace(id, SymbolToBytes(symbol).value_or(symbol))
             .second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "vocabulary: id ", id, " is used twice (", model::JsonQuote(symbol),
          " and another symbol)"));
    }
    tokenizer.vocab_size_ =
        std::max<int64_t>(tokenizer.vocab_size_, int64_t{id} + 1);
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = vocab.find(ByteToSymbol(b));
    if (it == vocab.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "vocabulary: the symbol ", model::JsonQuote(ByteToSymbol(b)),
          " for byte ", b, " is missing (not a byte-level BPE vocabulary)"));
    }
    tokenizer.byte_ids_[b] = it->second;
  }
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const BpeMerge& merge = merges[rank];
    const auto left = vocab.find(merge.left);
    const auto right = vocab.find(merge.right);
    const auto merged = vocab.find(merge.left + merge.right);
    for (const auto& [it, symbol] :
         {std::pair{left, merge.left}, std::pair{right, merge.right},
          std::pair{merged, merge.left + merge.right}}) {
      if (it == vocab.end()) {
        const std::string source =
            merge.source.empty() ? absl::StrCat("merge #", rank) : merge.source;
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": merge (", model::JsonQuote(merge.left), " ",
            model::JsonQuote(merge.right), ") uses ", model::JsonQuote(symbol),
            ", which is not in the vocabulary"));
      }
    }
    // A repeated merge keeps its first (lowest) rank, as in GPT-2.
    tokenizer.merges_.try_emplace(
        std::pair{left->second, right->second},
        MergeResult{static_cast<int32_t>(rank), merged->second});
  }
  tokenizer.vocab_ = std::move(vocab);
  tokenizer.cache_ = std::make_unique<Cache>();
  return tokenizer;
}

absl::StatusOr<BpeTokenizer> BpeTokenizer::FromVocabAndMergesText(
    std::string_view vocab_json, std::string_view merges_txt,
    const std::string& vocab_name, const std::string& merges_name) {
  SQ_ASSIGN_OR_RETURN(JsonValue json, ParseJsonFile(vocab_json, vocab_name));
  SQ_ASSIGN_OR_RETURN(auto vocab, VocabFromJson(json, vocab_name));
  std::vector<BpeMerge> merges;
  size_t line_number = 0;
  size_t pos = 0;
  while (pos < merges_txt.size()) {
    size_t end = merges_txt.find('\n', pos);
    if (end == std::string_view::npos) end = merges_txt.size();
    std::string_view line = merges_txt.substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_number == 1 && line.rfind("#version", 0) == 0)) {
      continue;
    }
    SQ_ASSIGN_OR_RETURN(
        BpeMerge merge,
        SplitMergeLine(line, absl::StrCat(merges_name, " line ", line_number)));
    merges.push_back(std::move(merge));
  }
  return CreateNaming(std::move(vocab), merges, vocab_name);
}

absl::StatusOr<BpeTokenizer> BpeTokenizer::FromVocabAndMerges(
    const std::string& vocab_path, const std::string& merges_path) {
  SQ_ASSIGN_OR_RETURN(std::string vocab_json, model::ReadFile(vocab_path));
  SQ_ASSIGN_OR_RETURN(std::string merges_txt, model::ReadFile(merges_path));
  return FromVocabAndMergesText(vocab_json, merges_txt, vocab_path,
                                merges_path);
}

absl::StatusOr<BpeTokenizer> BpeTokenizer::FromHuggingFaceJsonText(
    std::string_view text, const std::string& name) {
  SQ_ASSIGN_OR_RETURN(JsonValue json, ParseJsonFile(text, name));
  const JsonValue* model = model::FindJsonMember(json, "model");
  if (model == nullptr || model->kind != JsonValue::Kind::kObject) {
    return Invalid(name, "needs a \"model\" object");
  }
  const JsonValue* type = model::FindJsonMember(*model, "type");
  if (type == nullptr || type->kind != JsonValue::Kind::kString ||
      type->string_value != "BPE") {
    return Invalid(name, absl::StrCat("\"model\" at byte ", model->offset,
                                      " needs \"type\": \"BPE\""));
  }
  const JsonValue* vocab_json = model::FindJsonMember(*model, "vocab");
  const JsonValue* merges_json = model::FindJsonMember(*model, "merges");
  if (vocab_json == nullptr || merges_json == nullptr ||
      merges_json->kind != JsonValue::Kind::kArray) {
    return Invalid(name, absl::StrCat("\"model\" at byte ", model->offset,
                                      " needs a \"vocab\" object and a "
                                      "\"merges\" array"));
  }
  SQ_ASSIGN_OR_RETURN(auto vocab, VocabFromJson(*vocab_json, name));
  if (const JsonValue* added = model::FindJsonMember(json, "added_tokens");
      added != nullptr && added->kind == JsonValue::Kind::kArray) {
    for (const JsonValue& token : added->array) {
      const JsonValue* id = model::FindJsonMember(token, "id");
      const JsonValue* content = model::FindJsonMember(token, "content");
      if (id == nullptr || content == nullptr ||
          id->kind != JsonValue::Kind::kInteger ||
          content->kind != JsonValue::Kind::kString || id->integer_value < 0 ||
          id->integer_value > std::numeric_limits<TokenId>::max()) {
        return Invalid(name, absl::StrCat("added token at byte ", token.offset,
                                          " needs an integer \"id\" in "
                                          "[0, 2^31) and a string "
                                          "\"content\""));
      }
      const auto [it, inserted] = vocab.try_emplace(
          content->string_value, static_cast<TokenId>(id->integer_value));
      if (!inserted && it->second != id->integer_value) {
        return Invalid(name, absl::StrCat("added token at byte ", token.offset,
                                          " gives ",
                                          model::JsonQuote(it->first),
                                          " a second id"));
      }
    }
  }
  std::vector<BpeMerge> merges;
  for (const JsonValue& entry : merges_json->array) {
    std::string where = absl::StrCat(name, " merge at byte ", entry.offset);
    if (entry.kind == JsonValue::Kind::kString) {
      SQ_ASSIGN_OR_RETURN(BpeMerge merge,
                          SplitMergeLine(entry.string_value, where));
      merges.push_back(std::move(merge));
    } else if (entry.kind == JsonValue::Kind::kArray &&
               entry.array.size() == 2 &&
               entry.array[0].kind == JsonValue::Kind::kString &&
               entry.array[1].kind == JsonValue::Kind::kString) {
      merges.push_back({entry.array[0].string_value,
                        entry.array[1].string_value, where});
    } else {
      return Invalid(where, "is neither \"left right\" nor [\"left\", "
                            "\"right\"]");
    }
  }
  return CreateNaming(std::move(vocab), merges, name);
}

absl::StatusOr<BpeTokenizer> BpeTokenizer::FromHuggingFaceJson(
    const std::string& path) {
  SQ_ASSIGN_OR_RETURN(std::string text, model::ReadFile(path));
  return FromHuggingFaceJsonText(text, path);
}

std::vector<TokenId> BpeTokenizer::MergePiece(std::string_view piece) const {
  std::vector<TokenId> word;
  word.reserve(piece.size());
  for (char c : piece) word.push_back(byte_ids_[static_cast<uint8_t>(c)]);
  while (word.size() > 1) {
    const MergeResult* best = nullptr;
    std::pair<TokenId, TokenId> best_pair;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      const auto it = merges_.find(std::pair{word[i], word[i + 1]});
      if (it != merges_.end() && (best == nullptr || it->second.rank < best->rank)) {
        best = &it->second;
        best_pair = it->first;
      }
    }
    if (best == nullptr) break;
    std::vector<TokenId> merged;
    merged.reserve(word.size());
    for (size_t i = 0; i < word.size(); ++i) {
      if (i + 1 < word.size() && word[i] == best_pair.first &&
          word[i + 1] == best_pair.second) {
        merged.push_back(best->merged);
        ++i;
      } else {
        merged.push_back(word[i]);
      }
    }
    word = std::move(merged);
  }
  return word;
}

std::vector<TokenId> BpeTokenizer::Encode(std::string_view text) const {
  std::vector<TokenId> ids;
  for (std::string_view piece : Gpt2PreTokenize(text)) {
    {
      std::lock_guard<std::mutex> lock(cache_->mutex);
      const auto it =
          cache_->pieces.find(absl::string_view(piece.data(), piece.size()));
      if (it != cache_->pieces.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        continue;
      }
    }
    std::vector<TokenId> piece_ids = MergePiece(piece);
    ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    std::lock_guard<std::mutex> lock(cache_->mutex);
    if (cache_->pieces.size() >= kMaxCachedPieces) cache_->pieces.clear();
    cache_->pieces.emplace(std::string(piece), std::move(piece_ids));
  }
  return ids;
}

absl::StatusOr<std::string> BpeTokenizer::Decode(
    const std::vector<TokenId>& ids) const {
  std::string text;
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto it = id_to_bytes_.find(ids[i]);
    if (it == id_to_bytes_.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Decode: id ", ids[i], " at position ", i,
          " is not in the vocabulary"));
    }
    text += it->second;
  }
  return text;
}

std::optional<TokenId> BpeTokenizer::FindId(std::string_view symbol) const {
  const auto it = vocab_.find(absl::string_view(symbol.data(), symbol.size()));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

}  // namespace squeeze::core::text
