// The JSON subset a safetensors header uses: objects, arrays, strings (with
// all escapes, \uXXXX surrogate pairs included) and integers. true, false,
// null and non-integer numbers are rejected, so a header using them fails
// loudly instead of being half-understood.
#ifndef SQUEEZE_CORE_MODEL_JSON_H_
#define SQUEEZE_CORE_MODEL_JSON_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace squeeze::core::model {

struct JsonValue {
  enum class Kind { kObject, kArray, kString, kInteger };

  Kind kind = Kind::kObject;
  // Byte offset of the value's first character in the parsed text, for error
  // messages.
  size_t offset = 0;
  std::string string_value;  // kString
  int64_t integer_value = 0;  // kInteger
  std::vector<JsonValue> array;  // kArray
  // kObject members in document order; keys are unique.
  std::vector<std::pair<std::string, JsonValue>> object;
};

// Parses `text`, which must hold exactly one value (surrounding whitespace
// allowed). INVALID_ARGUMENT naming the problem and its byte offset for
// malformed input, duplicate object keys, integers outside int64, nesting
// deeper than 64, and anything outside the subset above.
absl::StatusOr<JsonValue> ParseJson(std::string_view text);

// `text` as a quoted JSON string: ", \ and control characters escaped, other
// bytes (UTF-8 included) copied as they are.
std::string JsonQuote(std::string_view text);

}  // namespace squeeze::core::model

#endif  // SQUEEZE_CORE_MODEL_JSON_H_
