#include "core/model/json.h"

#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::model {
namespace {

using ::testing::HasSubstr;

TEST(JsonTest, ParsesNestedSubset) {
  absl::StatusOr<JsonValue> v =
      ParseJson(R"( {"a": [1, -2, 0], "b": {"c": "x\"y"}, "e": []}  )");
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(v->kind, JsonValue::Kind::kObject);
  ASSERT_EQ(v->object.size(), 3u);
  EXPECT_EQ(v->object[0].first, "a");
  ASSERT_EQ(v->object[0].second.array.size(), 3u);
  EXPECT_EQ(v->object[0].second.array[1].integer_value, -2);
  EXPECT_EQ(v->object[1].second.object[0].second.string_value, "x\"y");
  EXPECT_EQ(v->object[1].second.offset, 24u);
  EXPECT_TRUE(v->object[2].second.array.empty());
}

TEST(JsonTest, DecodesEscapesIncludingSurrogatePairs) {
  absl::StatusOr<JsonValue> v =
      ParseJson(R"("\\ \/ \b\f\n\r\t \u00e9 \ud83d\ude00")");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->string_value, "\\ / \b\f\n\r\t \xc3\xa9 \xf0\x9f\x98\x80");
}

TEST(JsonTest, IntegerLimits) {
  EXPECT_EQ(ParseJson("9223372036854775807")->integer_value,
            std::numeric_limits<int64_t>::max());
  EXPECT_EQ(ParseJson("-9223372036854775808")->integer_value,
            std::numeric_limits<int64_t>::min());
  // Integers outside int64 are still numbers, as doubles.
  absl::StatusOr<JsonValue> big = ParseJson("9223372036854775808");
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(big->kind, JsonValue::Kind::kNumber);
  EXPECT_DOUBLE_EQ(big->number_value, 9223372036854775808.0);
  EXPECT_EQ(ParseJson("-9223372036854775809")->kind, JsonValue::Kind::kNumber);
}

TEST(JsonTest, ParsesFractionsExponentsAndLiterals) {
  absl::StatusOr<JsonValue> v = ParseJson(
      R"({"f": -1.5, "e": 2.5e-3, "E": 1E+2, "t": true, "n": null, "no": false})");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(FindJsonMember(*v, "f")->kind, JsonValue::Kind::kNumber);
  EXPECT_DOUBLE_EQ(FindJsonMember(*v, "f")->number_value, -1.5);
  EXPECT_DOUBLE_EQ(FindJsonMember(*v, "e")->number_value, 2.5e-3);
  EXPECT_DOUBLE_EQ(FindJsonMember(*v, "E")->number_value, 100.0);
  EXPECT_EQ(FindJsonMember(*v, "t")->kind, JsonValue::Kind::kBool);
  EXPECT_TRUE(FindJsonMember(*v, "t")->bool_value);
  EXPECT_FALSE(FindJsonMember(*v, "no")->bool_value);
  EXPECT_EQ(FindJsonMember(*v, "n")->kind, JsonValue::Kind::kNull);
  EXPECT_EQ(FindJsonMember(*v, "missing"), nullptr);
  EXPECT_EQ(ParseJson("7")->number_value, 7.0);
  EXPECT_EQ(JsonKindName(JsonValue::Kind::kNull), "null");
}

TEST(JsonTest, QuoteRoundTrips) {
  const std::string text = std::string("a\"b\\c\nd\x01\x1f\xc3\xa9", 10);
  absl::StatusOr<JsonValue> v = ParseJson(JsonQuote(text));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->string_value, text);
}

struct BadJson {
  const char* text;
  const char* message;
};

TEST(JsonTest, RejectsMalformedInputWithOffset) {
  const BadJson cases[] = {
      {"", "unexpected end of input at byte 0"},
      {"{", "expected a string key at byte 1"},
      {R"({"a" 1})", "expected ':' after key at byte 5"},
      {R"({"a":1,"a":2})", "duplicate key \"a\" at byte 7"},
      {"[1,]", "unexpected character ']'"},
      {"[1 2]", "expected ',' or ']' in array at byte 3"},
      {"1.", "expected a digit after '.' at byte 2"},
      {"1e", "expected a digit in the exponent"},
      {"1e999", "outside the range of double at byte 0"},
      {"01", "leading zero"},
      {"-", "expected a digit"},
      {"tru", "expected 'true'"},
      {"nul", "expected 'null'"},
      {"x", "unexpected character 'x'"},
      {"\"abc", "unterminated string"},
      {"\"a\nb\"", "control character in string at byte 2"},
      {R"("\x")", "bad escape '\\x'"},
      {R"("\u12")", "truncated \\u escape"},
      {R"("\u12g4")", "bad hex digit"},
      {R"("\udc00")", "unpaired low surrogate"},
      {R"("\ud800x")", "high surrogate not followed"},
      {"{} {}", "unexpected data after the value at byte 3"},
  };
  for (const BadJson& c : cases) {
    absl::StatusOr<JsonValue> v = ParseJson(c.text);
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(v.status().message(), HasSubstr(c.message)) << c.text;
  }
}

TEST(JsonTest, DeepNestingIsAnErrorNotACrash) {
  const std::string deep(100000, '[');
  EXPECT_THAT(ParseJson(deep).status().message(),
              HasSubstr("nesting deeper than 64"));
  std::string ok_depth = std::string(60, '[') + std::string(60, ']');
  EXPECT_TRUE(ParseJson(ok_depth).ok());
}

}  // namespace
}  // namespace squeeze::core::model
