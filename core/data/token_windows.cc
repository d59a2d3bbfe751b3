#include "core/data/token_windows.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace squeeze::core::data {

absl::StatusOr<Dataset> MakeTokenWindows(
    const std::vector<text::TokenId>& tokens, int64_t window, int64_t stride) {
  if (window < 1 || stride < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token windows: window and stride must be >= 1, got window ", window,
        " and stride ", stride));
  }
  const int64_t count = static_cast<int64_t>(tokens.size());
  if (count < window + 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token windows: ", count, " tokens do not fill one window of ", window,
        " plus its next-token label"));
  }
  const int64_t examples = (count - window - 1) / stride + 1;
  model::Tensor inputs{model::DType::kI64, {examples, window}, {}};
  model::Tensor labels{model::DType::kI64, {examples, window}, {}};
  inputs.data.resize(examples * window * sizeof(int64_t));
  labels.data.resize(examples * window * sizeof(int64_t));
  for (int64_t e = 0; e < examples; ++e) {
    for (int64_t t = 0; t < window; ++t) {
      const int64_t at = e * stride + t;
      const int64_t input = tokens[at];
      const int64_t label = tokens[at + 1];
      std::memcpy(&inputs.data[(e * window + t) * 8], &input, 8);
      std::memcpy(&labels.data[(e * window + t) * 8], &label, 8);
    }
  }
  return Dataset{std::move(inputs), std::move(labels)};
}

absl::StatusOr<Dataset> TextToTokenWindows(const std::string& text,
                                           const text::BpeTokenizer& tokenizer,
                                           int64_t window, int64_t stride) {
  return MakeTokenWindows(tokenizer.Encode(text), window, stride);
}

}  // namespace squeeze::core::data
