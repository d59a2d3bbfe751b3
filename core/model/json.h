// JSON (RFC 8259): objects, arrays, strings (with all escapes, \uXXXX
// surrogate pairs included), numbers, true, false and null. Integers that fit
// in int64 are kInteger so that sizes and offsets stay exact; every other
// number (a fraction, an exponent, or an integer outside int64) is kNumber,
// a double. Readers check the kind they expect, so a safetensors header that
// holds 1.5 where an offset belongs still fails loudly.
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
  enum class Kind { kObject, kArray, kString, kInteger, kNumber, kBool, kNull };

  Kind kind = Kind::kObject;
  // Byte offset of the value's first character in the parsed text, for error
  // messages.
  size_t offset = 0;
  std::string string_value;  // kString
  int64_t integer_value = 0;  // kInteger
  double number_value = 0.0;  // kNumber, and kInteger's value as a double
  bool bool_value = false;    // kBool
  std::vector<JsonValue> array;  // kArray
  // kObject members in document order; keys are unique.
  std::vector<std::pair<std::string, JsonValue>> object;

  // Declared here and defaulted in json.cc, where JsonValue is complete:
  // clang with libstdc++ rejects the implicit ones, which instantiate
  // std::pair<std::string, JsonValue> while JsonValue is still incomplete.
  JsonValue();
  JsonValue(const JsonValue&);
  JsonValue(JsonValue&&) noexcept;
  JsonValue& operator=(const JsonValue&);
  JsonValue& operator=(JsonValue&&) noexcept;
  ~JsonValue();
};

// Parses `text`, which must hold exactly one value (surrounding whitespace
// allowed). INVALID_ARGUMENT naming the problem and its byte offset for
// malformed input, duplicate object keys, numbers outside double's range,
// and nesting deeper than 64.
absl::StatusOr<JsonValue> ParseJson(std::string_view text);

// `text` as a quoted JSON string: ", \ and control characters escaped, other
// bytes (UTF-8 included) copied as they are.
std::string JsonQuote(std::string_view text);

// The member of object `value` named `key`, or nullptr when `value` is not an
// object or has no such member.
const JsonValue* FindJsonMember(const JsonValue& value, std::string_view key);

// "object", "array", "string", "integer", "number", "bool" or "null".
std::string JsonKindName(JsonValue::Kind kind);

}  // namespace squeeze::core::model

#endif  // SQUEEZE_CORE_MODEL_JSON_H_
