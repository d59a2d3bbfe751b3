#include "server/device_profiles.h"

#include <cstdlib>

#include "core/model/file_io.h"
#include "gtest/gtest.h"
#include "tests/test_util/temp_dir.h"

namespace squeeze::server {
namespace {

TEST(DeviceProfilesTest, LoadsTheShippedProfiles) {
  const char* source = std::getenv("SQUEEZE_SOURCE_DIR");
  ASSERT_NE(source, nullptr);
  auto profiles = DeviceProfiles::LoadDirectory(std::string(source) + "/deploy/devices");
  ASSERT_TRUE(profiles.ok()) << profiles.status();
  EXPECT_GE(profiles->all().size(), 7u);
  const v1::DeviceProfile* cpu = profiles->Find("x86-avx2-server");
  ASSERT_NE(cpu, nullptr);
  EXPECT_GT(cpu->pj_per_mac().at("fp32"), 0);
  EXPECT_EQ(profiles->Find("no-such-device"), nullptr);
}

TEST(DeviceProfilesTest, BadFileIsNamed) {
  testing::TempDir dir;
  ASSERT_TRUE(core::model::WriteFileAtomically(dir.Join("bad.textproto"), "name: 12 {").ok());
  auto profiles = DeviceProfiles::LoadDirectory(dir.path());
  EXPECT_EQ(profiles.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(profiles.status().message().find("bad.textproto"), std::string::npos);
}

}  // namespace
}  // namespace squeeze::server
