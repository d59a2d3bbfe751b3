#include "client/command_line.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

const std::vector<FlagSpec> kFlags = {
    {"addr", true}, {"json", false}, {"label", true}, {"bits", true}};

TEST(CommandLineTest, SplitsFlagsAndPositionals) {
  const auto parsed = CommandLine::Parse(
      {"model.st", "--addr", "h:1", "--json", "--bits=4", "extra"}, kFlags);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->positionals(), ElementsAre("model.st", "extra"));
  EXPECT_EQ(parsed->Value("addr"), "h:1");
  EXPECT_TRUE(parsed->Has("json"));
  EXPECT_EQ(parsed->Value("bits"), "4");
  EXPECT_FALSE(parsed->Has("label"));
  EXPECT_EQ(parsed->Value("label"), std::nullopt);
}

TEST(CommandLineTest, RepeatedFlagsKeepOrderAndLastWins) {
  const auto parsed = CommandLine::Parse({"--addr", "a", "--addr=b"}, kFlags);
  ASSERT_TRUE(parsed.ok());
  EXPECT_THAT(parsed->Values("addr"), ElementsAre("a", "b"));
  EXPECT_EQ(parsed->Value("addr"), "b");
}

TEST(CommandLineTest, DoubleDashEndsFlags) {
  const auto parsed = CommandLine::Parse({"--", "--json"}, kFlags);
  ASSERT_TRUE(parsed.ok());
  EXPECT_THAT(parsed->positionals(), ElementsAre("--json"));
  EXPECT_FALSE(parsed->Has("json"));
}

TEST(CommandLineTest, RejectsBadFlags) {
  EXPECT_THAT(CommandLine::Parse({"--nope"}, kFlags).status().message(),
              HasSubstr("unknown flag --nope"));
  EXPECT_THAT(CommandLine::Parse({"--json=1"}, kFlags).status().message(),
              HasSubstr("--json takes no value"));
  EXPECT_THAT(CommandLine::Parse({"--addr"}, kFlags).status().message(),
              HasSubstr("--addr needs a value"));
}

TEST(CommandLineTest, IntValueChecksRange) {
  const auto parsed = CommandLine::Parse({"--bits", "12"}, kFlags);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed->IntValue("bits", 8, 1, 16), 12);
  EXPECT_EQ(*parsed->IntValue("addr", 7, 1, 16), 7);
  const auto out_of_range = parsed->IntValue("bits", 8, 1, 8);
  EXPECT_EQ(out_of_range.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(out_of_range.status().message(), HasSubstr("--bits must be an integer in [1, 8]"));
  const auto not_a_number = CommandLine::Parse({"--bits", "four"}, kFlags);
  EXPECT_FALSE(not_a_number->IntValue("bits", 8, 1, 8).ok());
}

TEST(CommandLineTest, KeyValuesParsesLabels) {
  const auto parsed = CommandLine::Parse({"--label", "a=1", "--label", "b=x=y"}, kFlags);
  ASSERT_TRUE(parsed.ok());
  const auto labels = parsed->KeyValues("label");
  ASSERT_TRUE(labels.ok());
  EXPECT_THAT(*labels, ElementsAre(Pair("a", "1"), Pair("b", "x=y")));
  EXPECT_FALSE(CommandLine::Parse({"--label", "novalue"}, kFlags)->KeyValues("label").ok());
  EXPECT_FALSE(CommandLine::Parse({"--label", "=v"}, kFlags)->KeyValues("label").ok());
}

}  // namespace
}  // namespace squeeze::client
