#include "deploy/models/lm_corpus.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/model/file_io.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"

namespace squeeze::deploy {
namespace {

using core::graph::DataType;
using core::graph::Tensor;

// The last 5% of `text`, starting after a space or newline so that no
// UTF-8 sequence is cut, is held out.
void SplitText(const std::string& text, Corpus* corpus) {
  size_t cut = text.size() - text.size() / 20;
  while (cut < text.size() && text[cut] != ' ' && text[cut] != '\n') ++cut;
  corpus->train.push_back(text.substr(0, cut));
  corpus->held_out.push_back(text.substr(cut));
}

}  // namespace

absl::StatusOr<Corpus> ReadCorpus(const std::string& data_dir) {
  const std::string sotu = data_dir + "/datasets-sotu/data";
  std::vector<std::string> files;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(sotu, error)) {
    if (entry.path().extension() == ".txt") files.push_back(entry.path().string());
  }
  if (error || files.empty()) {
    return absl::NotFoundError(absl::StrCat("no .txt addresses in ", sotu, " (run scripts/fetch-npm-data.sh)"));
  }
  std::sort(files.begin(), files.end());  // chronological: names start with the year
  files.push_back(data_dir + "/datasets-moby-dick/data/data.txt");
  Corpus corpus;
  for (const std::string& file : files) {
    SQ_ASSIGN_OR_RETURN(std::string text, core::model::ReadFile(file));
    SplitText(text, &corpus);
  }
  return corpus;
}

std::vector<int64_t> Tokenize(const std::vector<std::string>& texts, const core::text::BpeTokenizer& tokenizer) {
  std::vector<int64_t> tokens;
  const std::vector<core::text::TokenId> separator = tokenizer.Encode("\n\n");
  for (const std::string& text : texts) {
    for (core::text::TokenId id : tokenizer.Encode(text)) tokens.push_back(id);
    tokens.insert(tokens.end(), separator.begin(), separator.end());
  }
  return tokens;
}

// Windows of `context` tokens starting at `starts`: inputs [N, context] and
// the next token at each position.
std::pair<Tensor, std::vector<int64_t>> Windows(const std::vector<int64_t>& tokens, const std::vector<int64_t>& starts,
                                                int64_t context) {
  const int64_t n = static_cast<int64_t>(starts.size());
  Tensor inputs(DataType::kInt64, {n, context});
  std::vector<int64_t> targets;
  for (int64_t i = 0; i < n; ++i) {
    std::copy_n(tokens.begin() + starts[i], context, inputs.data<int64_t>() + i * context);
    targets.insert(targets.end(), tokens.begin() + starts[i] + 1, tokens.begin() + starts[i] + context + 1);
  }
  return {std::move(inputs), std::move(targets)};
}

// Perplexity over evenly spaced non-overlapping held-out windows.
absl::StatusOr<core::eval::PerplexityReport> HeldOutPerplexity(const core::graph::Graph& graph,
                                                               const std::vector<int64_t>& tokens, int64_t context,
                                                               int64_t max_windows, int64_t batch) {
  SQ_ASSIGN_OR_RETURN(auto executor, core::runtime::Executor::Create(graph, core::kernels::cpu::CreateCpuBackend()));
  const int64_t available = (static_cast<int64_t>(tokens.size()) - 1) / context;
  const int64_t count = max_windows > 0 ? std::min(available, max_windows) : available;
  std::vector<int64_t> starts;
  for (int64_t i = 0; i < count; ++i) starts.push_back(i * available / count * context);
  double nll = 0;
  int64_t scored = 0;
  for (size_t begin = 0; begin < starts.size(); begin += batch) {
    const std::vector<int64_t> part(starts.begin() + begin,
                                    starts.begin() + std::min(starts.size(), begin + batch));
    auto [inputs, targets] = Windows(tokens, part, context);
    SQ_ASSIGN_OR_RETURN(auto outputs, executor.Run({{"input_ids", inputs}}));
    SQ_ASSIGN_OR_RETURN(core::model::Tensor logits, core::graph::ToModelTensor(outputs[0]));
    SQ_ASSIGN_OR_RETURN(auto report, core::eval::ComputePerplexity(logits, targets));
    nll += report.mean_negative_log_likelihood * report.tokens;
    scored += report.tokens;
  }
  core::eval::PerplexityReport report;
  report.tokens = scored;
  report.mean_negative_log_likelihood = nll / scored;
  report.perplexity = std::exp(report.mean_negative_log_likelihood);
  return report;
}

}  // namespace squeeze::deploy
