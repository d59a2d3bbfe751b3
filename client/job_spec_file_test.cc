#include "client/job_spec_file.h"

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::client {
namespace {

using ::testing::HasSubstr;
namespace v1 = ::squeeze::v1;

class JobSpecFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& contents) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << contents;
    return path;
  }

  std::filesystem::path dir_;
};

TEST_F(JobSpecFileTest, ReadsJson) {
  const auto spec = LoadJobSpecFile(Write("spec.json", R"({
    "recipe": {"passes": [{"quantize": {"bits": 4, "granularity": "PER_GROUP", "groupSize": 64}}]},
    "targetDevices": ["a100-80g", "local"],
    "priority": 5,
    "labels": {"team": "nlp"},
    "seed": "42"
  })"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->recipe().passes_size(), 1);
  EXPECT_EQ(spec->recipe().passes(0).quantize().bits(), 4);
  EXPECT_EQ(spec->recipe().passes(0).quantize().granularity(), v1::QuantizePass::PER_GROUP);
  EXPECT_EQ(spec->recipe().passes(0).quantize().group_size(), 64);
  EXPECT_EQ(spec->target_devices_size(), 2);
  EXPECT_EQ(spec->priority(), 5);
  EXPECT_EQ(spec->labels().at("team"), "nlp");
  EXPECT_EQ(spec->seed(), 42u);
}

TEST_F(JobSpecFileTest, ReadsEveryTextFormatExtension) {
  for (const std::string name : {"spec.textproto", "spec.txtpb", "spec.pbtxt"}) {
    const auto spec = LoadJobSpecFile(Write(name, R"pb(
      # Comments are allowed in text format.
      recipe { passes { quantize { bits: 8 asymmetric: true } } }
      target_devices: "local"
    )pb"));
    ASSERT_TRUE(spec.ok()) << name << ": " << spec.status();
    EXPECT_TRUE(spec->recipe().passes(0).quantize().asymmetric()) << name;
    EXPECT_EQ(spec->target_devices(0), "local") << name;
  }
}

TEST_F(JobSpecFileTest, RejectsUnknownJsonFieldsNamingTheFile) {
  const std::string path = Write("typo.json", R"({"recipe": {}, "priorty": 3})");
  const auto spec = LoadJobSpecFile(path);
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr(path));
  EXPECT_THAT(spec.status().message(), HasSubstr("priorty"));
}

TEST_F(JobSpecFileTest, RejectsUnknownTextFieldsWithLineAndColumn) {
  const std::string path = Write("typo.textproto", "priority: 1\nrecipe { pases {} }\n");
  const auto spec = LoadJobSpecFile(path);
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr(path));
  EXPECT_THAT(spec.status().message(), HasSubstr("2:"));
  EXPECT_THAT(spec.status().message(), HasSubstr("pases"));
}

TEST_F(JobSpecFileTest, RejectsMalformedJson) {
  const auto spec = LoadJobSpecFile(Write("broken.json", "{\"recipe\": "));
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(JobSpecFileTest, RejectsBlobsInTheFile) {
  const auto spec = LoadJobSpecFile(Write("model.json", R"({"model": {"sha256": "ab"}})"));
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr("come from the command line"));
}

TEST_F(JobSpecFileTest, RejectsUnknownExtension) {
  const auto spec = LoadJobSpecFile(Write("spec.yaml", "recipe: {}"));
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr(".textproto"));
}

TEST_F(JobSpecFileTest, MissingFileIsNotFound) {
  const auto spec = LoadJobSpecFile((dir_ / "absent.json").string());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(spec.status().message(), HasSubstr("absent.json"));
}

}  // namespace
}  // namespace squeeze::client
