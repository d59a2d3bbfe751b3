#include "core/model/json.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <unordered_set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status_macros.h"

namespace squeeze::core::model {

JsonValue::JsonValue() = default;
JsonValue::JsonValue(const JsonValue&) = default;
JsonValue::JsonValue(JsonValue&&) noexcept = default;
JsonValue& JsonValue::operator=(const JsonValue&) = default;
JsonValue& JsonValue::operator=(JsonValue&&) noexcept = default;
JsonValue::~JsonValue() = default;

namespace {

constexpr int kMaxDepth = 64;

class JsonParser {
 public:
  explicit JsonParser(std::string_view text) : text_(text) {}

  absl::StatusOr<JsonValue> ParseDocument() {
    SQ_ASSIGN_OR_RETURN(JsonValue value, ParseValue(0));
    SkipWhitespace();
    if (pos_ != text_.size()) return Error("unexpected data after the value");
    return value;
  }

 private:
  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON: ", what, " at byte ", pos_));
  }

  void SkipWhitespace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  absl::StatusOr<JsonValue> ParseValue(int depth) {
    if (depth > kMaxDepth) return Error("nesting deeper than 64");
    SkipWhitespace();
    if (pos_ >= text_.size()) return Error("unexpected end of input");
    const char c = text_[pos_];
    if (c == '{') return ParseObject(depth);
    if (c == '[') return ParseArray(depth);
    if (c == '"') {
      JsonValue value;
      value.kind = JsonValue::Kind::kString;
      value.offset = pos_;
      SQ_ASSIGN_OR_RETURN(value.string_value, ParseString());
      return value;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber();
    if (c == 't') return ParseLiteral("true", JsonValue::Kind::kBool, true);
    if (c == 'f') return ParseLiteral("false", JsonValue::Kind::kBool, false);
    if (c == 'n') return ParseLiteral("null", JsonValue::Kind::kNull, false);
    return Error(absl::StrFormat("unexpected character '%c'", c));
  }

  absl::StatusOr<JsonValue> ParseLiteral(std::string_view word,
                                         JsonValue::Kind kind, bool truth) {
    if (text_.substr(pos_, word.size()) != word) {
      return Error(absl::StrCat("expected '", std::string(word), "'"));
    }
    JsonValue value;
    value.kind = kind;
    value.offset = pos_;
    value.bool_value = truth;
    pos_ += word.size();
    return value;
  }

  absl::StatusOr<JsonValue> ParseObject(int depth) {
    JsonValue value;
    value.kind = JsonValue::Kind::kObject;
    value.offset = pos_++;
    std::unordered_set<std::string> keys;
    SkipWhitespace();
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      return value;
    }
    while (true) {
      SkipWhitespace();
      if (pos_ >= text_.size() || text_[pos_] != '"') {
        return Error("expected a string key");
      }
      const size_t key_offset = pos_;
      SQ_ASSIGN_OR_RETURN(std::string key, ParseString());
      if (!keys.insert(key).second) {
        pos_ = key_offset;
        return Error(absl::StrCat("duplicate key ", JsonQuote(key)));
      }
      SkipWhitespace();
      if (pos_ >= text_.size() || text_[pos_] != ':') {
        return Error("expected ':' after key");
      }
      ++pos_;
      SQ_ASSIGN_OR_RETURN(JsonValue member, ParseValue(depth + 1));
      value.object.emplace_back(std::move(key), std::move(member));
      SkipWhitespace();
      if (pos_ >= text_.size()) return Error("unterminated object");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == '}') {
        ++pos_;
        return value;
      }
      return Error("expected ',' or '}' in object");
    }
  }

  absl::StatusOr<JsonValue> ParseArray(int depth) {
    JsonValue value;
    value.kind = JsonValue::Kind::kArray;
    value.offset = pos_++;
    SkipWhitespace();
    if (pos_ < text_.size() && text_[pos_] == ']') {
      ++pos_;
      return value;
    }
    while (true) {
      SQ_ASSIGN_OR_RETURN(JsonValue element, ParseValue(depth + 1));
      value.array.push_back(std::move(element));
      SkipWhitespace();
      if (pos_ >= text_.size()) return Error("unterminated array");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == ']') {
        ++pos_;
        return value;
      }
      return Error("expected ',' or ']' in array");
    }
  }

  static bool IsDigit(char c) { return c >= '0' && c <= '9'; }

  // Advances past one or more digits; false when there is none.
  bool SkipDigits() {
    const size_t start = pos_;
    while (pos_ < text_.size() && IsDigit(text_[pos_])) ++pos_;
    return pos_ > start;
  }

  // RFC 8259 number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
  absl::StatusOr<JsonValue> ParseNumber() {
    JsonValue value;
    value.offset = pos_;
    const size_t start = pos_;
    if (text_[pos_] == '-') ++pos_;
    if (pos_ >= text_.size() || !IsDigit(text_[pos_])) {
      return Error("expected a digit");
    }
    if (text_[pos_] == '0' && pos_ + 1 < text_.size() &&
        IsDigit(text_[pos_ + 1])) {
      return Error("leading zero in number");
    }
    SkipDigits();
    bool integral = true;
    if (pos_ < text_.size() && text_[pos_] == '.') {
      ++pos_;
      integral = false;
      if (!SkipDigits()) return Error("expected a digit after '.'");
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      integral = false;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) {
        ++pos_;
      }
      if (!SkipDigits()) return Error("expected a digit in the exponent");
    }
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    if (integral) {
      int64_t integer = 0;
      const auto [end, error] = std::from_chars(first, last, integer);
      if (error == std::errc() && end == last) {
        value.kind = JsonValue::Kind::kInteger;
        value.integer_value = integer;
        value.number_value = static_cast<double>(integer);
        return value;
      }
    }
    double number = 0.0;
    const auto [end, error] = std::from_chars(first, last, number);
    if (error != std::errc() || end != last || !std::isfinite(number)) {
      pos_ = start;
      return Error(absl::StrCat("number ",
                                std::string(text_.substr(start, last - first)),
                                " is outside the range of double"));
    }
    value.kind = JsonValue::Kind::kNumber;
    value.number_value = number;
    return value;
  }

  absl::StatusOr<uint32_t> ParseHex4() {
    if (text_.size() - pos_ < 4) return Error("truncated \\u escape");
    uint32_t code = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = text_[pos_++];
      code <<= 4;
      if (h >= '0' && h <= '9') {
        code |= h - '0';
      } else if (h >= 'a' && h <= 'f') {
        code |= h - 'a' + 10;
      } else if (h >= 'A' && h <= 'F') {
        code |= h - 'A' + 10;
      } else {
        --pos_;
        return Error("bad hex digit in \\u escape");
      }
    }
    return code;
  }

  static void AppendUtf8(uint32_t code, std::string* out) {
    if (code < 0x80) {
      out->push_back(static_cast<char>(code));
    } else if (code < 0x800) {
      out->push_back(static_cast<char>(0xc0 | (code >> 6)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
    } else if (code < 0x10000) {
      out->push_back(static_cast<char>(0xe0 | (code >> 12)));
      out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
    } else {
      out->push_back(static_cast<char>(0xf0 | (code >> 18)));
      out->push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
    }
  }

  // Precondition: text_[pos_] == '"'.
  absl::StatusOr<std::string> ParseString() {
    ++pos_;
    std::string out;
    while (true) {
      if (pos_ >= text_.size()) return Error("unterminated string");
      const char c = text_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) {
        return Error("control character in string");
      }
      if (c != '\\') {
        out.push_back(c);
        ++pos_;
        continue;
      }
      ++pos_;
      if (pos_ >= text_.size()) return Error("unterminated escape");
      const char e = text_[pos_++];
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          SQ_ASSIGN_OR_RETURN(uint32_t code, ParseHex4());
          if (code >= 0xdc00 && code <= 0xdfff) {
            return Error("unpaired low surrogate in \\u escape");
          }
          if (code >= 0xd800 && code <= 0xdbff) {
            if (text_.substr(pos_, 2) != "\\u") {
              return Error("high surrogate not followed by \\u escape");
            }
            pos_ += 2;
            SQ_ASSIGN_OR_RETURN(uint32_t low, ParseHex4());
            if (low < 0xdc00 || low > 0xdfff) {
              return Error("high surrogate not followed by a low surrogate");
            }
            code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
          }
          AppendUtf8(code, &out);
          break;
        }
        default:
          --pos_;
          return Error(absl::StrFormat("bad escape '\\%c'", e));
      }
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<JsonValue> ParseJson(std::string_view text) {
  return JsonParser(text).ParseDocument();
}

std::string JsonQuote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", static_cast<unsigned char>(c));
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
  return out;
}

const JsonValue* FindJsonMember(const JsonValue& value, std::string_view key) {
  if (value.kind != JsonValue::Kind::kObject) return nullptr;
  for (const auto& [name, member] : value.object) {
    if (name == key) return &member;
  }
  return nullptr;
}

std::string JsonKindName(JsonValue::Kind kind) {
  switch (kind) {
    case JsonValue::Kind::kObject: return "object";
    case JsonValue::Kind::kArray: return "array";
    case JsonValue::Kind::kString: return "string";
    case JsonValue::Kind::kInteger: return "integer";
    case JsonValue::Kind::kNumber: return "number";
    case JsonValue::Kind::kBool: return "bool";
    case JsonValue::Kind::kNull: return "null";
  }
  return "unknown";
}

}  // namespace squeeze::core::model
