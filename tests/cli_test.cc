// The `squeeze` command line against the real daemon: what a user types.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util/daemon_process.h"
#include "tests/test_util/subprocess.h"

namespace squeeze::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(daemon_.Start()); }

  CommandResult Squeeze(const std::string& args, const std::string& token = kAliceToken) {
    return RunCommand(DaemonProcess::BinaryPath("squeeze") + " --addr " + daemon_.address() +
                      (token.empty() ? "" : " --token " + token) + " " + args);
  }

  DaemonProcess daemon_;
  TempDir scratch_;
};

TEST_F(CliTest, SubmitWatchStatusListDownload) {
  CommandResult submit = Squeeze(
      "submit " + DaemonProcess::SourcePath("deploy/demo/mlp.safetensors") + " --calibration " +
      DaemonProcess::SourcePath("deploy/demo/calibration.safetensors") + " --spec " +
      DaemonProcess::SourcePath("deploy/demo/int4-fleet.textproto") + " --label ci=yes");
  ASSERT_EQ(submit.exit_code, 0) << submit.output;
  // Upload notes go to stderr (merged here); the job id is the last line.
  std::string output = submit.output;
  while (!output.empty() && output.back() == '\n') output.pop_back();
  const std::string id = output.substr(output.rfind('\n') + 1);
  ASSERT_THAT(id, MatchesRegex("j-[0-9a-f]{16}"));

  CommandResult watch = Squeeze("watch " + id);
  EXPECT_EQ(watch.exit_code, 0) << watch.output;
  EXPECT_THAT(watch.output, HasSubstr("SUCCEEDED"));
  EXPECT_THAT(watch.output, HasSubstr("jetson-agx-orin"));

  CommandResult status = Squeeze("status " + id + " --json");
  EXPECT_EQ(status.exit_code, 0);
  EXPECT_THAT(status.output, HasSubstr("\"state\":\"SUCCEEDED\""));
  EXPECT_THAT(status.output, HasSubstr("\"provenance\":\"ESTIMATED\""));

  CommandResult list = Squeeze("list --state SUCCEEDED --label ci=yes");
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_THAT(list.output, HasSubstr(id));
  EXPECT_THAT(Squeeze("list --label ci=no").output, Not(HasSubstr(id)));

  CommandResult download = Squeeze("download " + id + " --out " + scratch_.path());
  EXPECT_EQ(download.exit_code, 0) << download.output;
  EXPECT_THAT(download.output, HasSubstr("a100-80g"));

  CommandResult devices = Squeeze("devices");
  EXPECT_EQ(devices.exit_code, 0);
  EXPECT_THAT(devices.output, HasSubstr("graviton3"));
}

TEST_F(CliTest, ErrorsAreOneLineWithNonZeroExit) {
  CommandResult unknown = Squeeze("status j-0000000000000000");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.output, MatchesRegex("squeeze: status: NOT_FOUND: .*\n"));

  CommandResult no_token = Squeeze("list", "");
  EXPECT_EQ(no_token.exit_code, 1);
  EXPECT_THAT(no_token.output, HasSubstr("UNAUTHENTICATED"));

  CommandResult bad_bits = Squeeze(
      "submit " + DaemonProcess::SourcePath("deploy/demo/mlp.safetensors") + " --bits 5");
  EXPECT_EQ(bad_bits.exit_code, 1);
  EXPECT_THAT(bad_bits.output, HasSubstr("bits must be 2, 3, 4 or 8, got 5"));
  // 3 bits is valid, but not for a safetensors linear-chain model.
  bad_bits = Squeeze("submit " + DaemonProcess::SourcePath("deploy/demo/mlp.safetensors") + " --bits 3");
  EXPECT_EQ(bad_bits.exit_code, 1);
  EXPECT_THAT(bad_bits.output, HasSubstr("bits 3 needs an ONNX model"));

  CommandResult usage = Squeeze("frobnicate");
  EXPECT_EQ(usage.exit_code, 2);
}

}  // namespace
}  // namespace squeeze::testing
