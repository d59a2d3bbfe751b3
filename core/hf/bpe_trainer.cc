#include "core/hf/bpe_trainer.h"

#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/model/json.h"
#include "core/text/gpt2_pretokenizer.h"

namespace squeeze::core::hf {
namespace {

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(left) << 32) | static_cast<uint32_t>(right);
}

}  // namespace

std::string TrainedBpe::VocabJson() const {
  std::string out = "{";
  for (size_t id = 0; id < symbols.size(); ++id) {
    absl::StrAppend(&out, id == 0 ? "" : ", ", model::JsonQuote(symbols[id]), ": ", id);
  }
  return out + "}\n";
}

std::string TrainedBpe::MergesTxt() const {
  std::string out = "#version: 0.2\n";
  for (const text::BpeMerge& merge : merges) absl::StrAppend(&out, merge.left, " ", merge.right, "\n");
  return out;
}

absl::StatusOr<TrainedBpe> TrainByteLevelBpe(const std::vector<std::string_view>& texts,
                                             const BpeTrainerOptions& options) {
  if (options.num_merges < 0 || options.min_pair_count < 1) {
    return absl::InvalidArgumentError(absl::StrCat("TrainByteLevelBpe: num_merges (", options.num_merges,
                                                   ") must be >= 0 and min_pair_count (", options.min_pair_count,
                                                   ") >= 1"));
  }
  // Distinct pieces with their counts, as sequences of symbol ids.
  absl::flat_hash_map<std::string_view, int64_t> piece_counts;
  for (std::string_view text : texts) {
    for (std::string_view piece : text::Gpt2PreTokenize(text)) ++piece_counts[piece];
  }
  std::vector<std::pair<std::string_view, int64_t>> pieces(piece_counts.begin(), piece_counts.end());
  std::sort(pieces.begin(), pieces.end());  // determinism beyond hash order
  std::vector<std::vector<int32_t>> words;
  std::vector<int64_t> counts;
  for (const auto& [piece, count] : pieces) {
    std::vector<int32_t> word;
    for (unsigned char byte : piece) word.push_back(byte);
    words.push_back(std::move(word));
    counts.push_back(count);
  }

  TrainedBpe result;
  absl::flat_hash_map<std::string, int32_t> ids;
  for (int byte = 0; byte < 256; ++byte) {
    result.symbols.push_back(text::ByteToSymbol(static_cast<uint8_t>(byte)));
    ids.emplace(result.symbols.back(), byte);
  }
  absl::flat_hash_map<uint64_t, int64_t> pair_counts;
  absl::flat_hash_map<uint64_t, std::vector<int32_t>> pair_words;  // may hold stale entries
  auto count_word = [&](int32_t w, int64_t sign) {
    const std::vector<int32_t>& word = words[w];
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      const uint64_t key = PairKey(word[i], word[i + 1]);
      auto it = pair_counts.try_emplace(key, 0).first;
      it->second += sign * counts[w];
      if (it->second == 0) pair_counts.erase(it);
      if (sign > 0) pair_words[key].push_back(w);
    }
  };
  for (int32_t w = 0; w < static_cast<int32_t>(words.size()); ++w) count_word(w, 1);

  std::vector<int64_t> last_touched(words.size(), -1);
  for (int64_t rank = 0; rank < options.num_merges; ++rank) {
    uint64_t best = 0;
    int64_t best_count = 0;
    for (const auto& [key, count] : pair_counts) {
      if (count > best_count) {
        best = key, best_count = count;
      } else if (count == best_count) {
        const auto symbols_of = [&](uint64_t k) {
          return std::make_pair(std::string_view(result.symbols[k >> 32]),
                                std::string_view(result.symbols[k & 0xffffffffu]));
        };
        if (symbols_of(key) < symbols_of(best)) best = key;
      }
    }
    if (best_count < options.min_pair_count) break;
    const int32_t left = static_cast<int32_t>(best >> 32), right = static_cast<int32_t>(best & 0xffffffffu);
    const std::string merged = result.symbols[left] + result.symbols[right];
    auto [it, inserted] = ids.emplace(merged, static_cast<int32_t>(result.symbols.size()));
    if (inserted) result.symbols.push_back(merged);
    const int32_t merged_id = it->second;
    result.merges.push_back({result.symbols[left], result.symbols[right], ""});
    std::vector<int32_t> affected = std::move(pair_words[best]);
    pair_words.erase(best);
    for (int32_t w : affected) {
      if (last_touched[w] == rank) continue;
      last_touched[w] = rank;
      std::vector<int32_t>& word = words[w];
      bool present = false;
      for (size_t i = 0; i + 1 < word.size() && !present; ++i) present = word[i] == left && word[i + 1] == right;
      if (!present) continue;
      count_word(w, -1);
      std::vector<int32_t> next;
      for (size_t i = 0; i < word.size(); ++i) {
        if (i + 1 < word.size() && word[i] == left && word[i + 1] == right) {
          next.push_back(merged_id);
          ++i;
        } else {
          next.push_back(word[i]);
        }
      }
      word = std::move(next);
      count_word(w, 1);
    }
  }
  return result;
}

}  // namespace squeeze::core::hf
