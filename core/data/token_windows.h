// Language-model training data: a token stream cut into fixed-length
// windows. Example i holds tokens [s, s + window) as inputs and
// [s + 1, s + window + 1) as labels (the next token at every position),
// where s = i * stride. Both tensors are I64 of shape [examples, window];
// tokens that do not fill a whole window (plus its one label) are dropped.
#ifndef SQUEEZE_CORE_DATA_TOKEN_WINDOWS_H_
#define SQUEEZE_CORE_DATA_TOKEN_WINDOWS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/data/dataset.h"
#include "core/text/bpe_tokenizer.h"

namespace squeeze::core::data {

// INVALID_ARGUMENT unless window >= 1 and stride >= 1, or when the tokens
// do not fill one window (tokens.size() < window + 1).
absl::StatusOr<Dataset> MakeTokenWindows(
    const std::vector<text::TokenId>& tokens, int64_t window, int64_t stride);

// Encodes `text` with `tokenizer`, then MakeTokenWindows.
absl::StatusOr<Dataset> TextToTokenWindows(const std::string& text,
                                           const text::BpeTokenizer& tokenizer,
                                           int64_t window, int64_t stride);

}  // namespace squeeze::core::data

#endif  // SQUEEZE_CORE_DATA_TOKEN_WINDOWS_H_
