// The reference language model's data and held-out metric, shared by
// train_lm (which trains it) and squeeze-quality-report (which measures
// quantized versions of it on the same held-out split).
//
// Data: every State of the Union address (<data_dir>/datasets-sotu/data/*.txt,
// chronological) and Moby-Dick (<data_dir>/datasets-moby-dick/data/data.txt);
// the last 5% of each text, cut at a space or newline, is held out.
#ifndef SQUEEZE_DEPLOY_MODELS_LM_CORPUS_H_
#define SQUEEZE_DEPLOY_MODELS_LM_CORPUS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/eval/metrics.h"
#include "core/graph/graph.h"
#include "core/text/bpe_tokenizer.h"

namespace squeeze::deploy {

struct Corpus {
  std::vector<std::string> train;
  std::vector<std::string> held_out;
};

// NOT_FOUND (naming the directory) when the addresses are missing.
absl::StatusOr<Corpus> ReadCorpus(const std::string& data_dir);

// The texts' tokens, each text followed by the tokens of "\n\n".
std::vector<int64_t> Tokenize(const std::vector<std::string>& texts, const core::text::BpeTokenizer& tokenizer);

// Windows of `context` tokens starting at `starts`: inputs int64 [N, context]
// and the next token at each position.
std::pair<core::graph::Tensor, std::vector<int64_t>> Windows(const std::vector<int64_t>& tokens,
                                                             const std::vector<int64_t>& starts, int64_t context);

// Perplexity of `graph` (input_ids -> logits) over `max_windows` evenly
// spaced non-overlapping windows of `tokens` (0: all), `batch` at a time.
absl::StatusOr<core::eval::PerplexityReport> HeldOutPerplexity(const core::graph::Graph& graph,
                                                               const std::vector<int64_t>& tokens, int64_t context,
                                                               int64_t max_windows, int64_t batch);

}  // namespace squeeze::deploy

#endif  // SQUEEZE_DEPLOY_MODELS_LM_CORPUS_H_
