// Trains a byte-level BPE tokenizer in GPT-2's scheme (Gpt2PreTokenize
// pieces, bytes as GPT-2's stand-in characters), for models whose vocabulary
// must stay small. The result loads with text::BpeTokenizer.
#ifndef SQUEEZE_CORE_HF_BPE_TRAINER_H_
#define SQUEEZE_CORE_HF_BPE_TRAINER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/text/bpe_tokenizer.h"

namespace squeeze::core::hf {

struct BpeTrainerOptions {
  // Merges to learn; fewer when no pair occurs min_pair_count times.
  int64_t num_merges = 4000;
  int64_t min_pair_count = 2;
};

// Ids 0..255 are the bytes 0..255; id 256 + r is the symbol merge r makes
// (a merge whose symbol already exists reuses its id, so ids may end early).
struct TrainedBpe {
  std::vector<std::string> symbols;  // by id, in stand-in characters
  std::vector<text::BpeMerge> merges;  // in rank order

  // Hugging Face vocab.json ({symbol: id}) and merges.txt ("#version: 0.2"
  // then "left right" per line) contents.
  std::string VocabJson() const;
  std::string MergesTxt() const;
};

// Learns merges from `texts`, most frequent adjacent pair first (ties: the
// pair whose symbols compare lowest). Deterministic. INVALID_ARGUMENT when
// num_merges is negative or min_pair_count < 1.
absl::StatusOr<TrainedBpe> TrainByteLevelBpe(const std::vector<std::string_view>& texts,
                                             const BpeTrainerOptions& options);

}  // namespace squeeze::core::hf

#endif  // SQUEEZE_CORE_HF_BPE_TRAINER_H_
