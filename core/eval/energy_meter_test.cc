#include "core/eval/energy_meter.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace squeeze::core::eval {
namespace {

// A powercap tree with the same layout as the kernel's, written by the test
// (this machine, like most VMs, has no RAPL of its own).
class RaplTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::path(::testing::TempDir()) / "powercap";
    std::filesystem::remove_all(root_);
    Domain("intel-rapl:0", "package-0", 1000);
    Domain("intel-rapl:1", "package-1", 5000);
    Domain("intel-rapl:0:0", "core", 7);  // A subdomain: not counted.
    Domain("intel-rapl:2", "psys", 9);    // Not a package: not counted.
  }
  void Domain(const std::string& dir, const std::string& name, int64_t energy_uj) {
    std::filesystem::create_directories(root_ / dir);
    std::ofstream(root_ / dir / "name") << name << "\n";
    std::ofstream(root_ / dir / "max_energy_range_uj") << 262143328850 << "\n";
    std::ofstream(root_ / dir / "energy_uj") << energy_uj << "\n";
  }
  void Set(const std::string& dir, int64_t energy_uj) {
    std::ofstream(root_ / dir / "energy_uj", std::ios::trunc) << energy_uj << "\n";
  }
  std::filesystem::path root_;
};

TEST_F(RaplTest, SumsPackageDomainsAndHandlesWraparound) {
  auto counter = OpenRaplCounter(root_.string());
  ASSERT_TRUE(counter.ok()) << counter.status();
  EXPECT_NE((*counter)->Source().find("package-0+package-1"), std::string::npos);
  Set("intel-rapl:0", 3000);   // +2000 uJ
  Set("intel-rapl:1", 6000);   // +1000 uJ
  Set("intel-rapl:0:0", 1e9);  // Ignored.
  auto joules = (*counter)->ReadJoules();
  ASSERT_TRUE(joules.ok());
  EXPECT_NEAR(*joules, 3000e-6, 1e-12);
  Set("intel-rapl:0", 500);  // Wrapped: +262143328850 - 3000 + 500.
  joules = (*counter)->ReadJoules();
  ASSERT_TRUE(joules.ok());
  EXPECT_NEAR(*joules, (3000 + 262143328850.0 - 2500) * 1e-6, 1e-6);
}

TEST_F(RaplTest, MeasuresJoulesPerCall) {
  auto counter = OpenRaplCounter(root_.string());
  ASSERT_TRUE(counter.ok());
  int64_t energy = 1000;
  // Each call "uses" 250 uJ on package 0.
  auto measurement = MeasureJoulesPerCall(**counter, [&] { Set("intel-rapl:0", energy += 250); }, 0.0, 8);
  ASSERT_TRUE(measurement.ok()) << measurement.status();
  EXPECT_EQ(measurement->calls, 8);
  EXPECT_NEAR(measurement->joules_per_call, 250e-6, 1e-12);
  EXPECT_NE(measurement->description.find("includes idle"), std::string::npos);
}

TEST(RaplMissingTest, NotFoundWithoutPackages) {
  EXPECT_EQ(OpenRaplCounter("/nonexistent/powercap").status().code(), absl::StatusCode::kNotFound);
  const auto empty = std::filesystem::path(::testing::TempDir()) / "empty-powercap";
  std::filesystem::create_directories(empty);
  EXPECT_EQ(OpenRaplCounter(empty.string()).status().code(), absl::StatusCode::kNotFound);
}

TEST(NvmlTest, AbsentLibraryOrGpuIsAPlainError) {
  // On a machine with an NVIDIA driver this opens GPU 0; elsewhere it must
  // fail cleanly (NOT_FOUND or UNAVAILABLE), never crash.
  auto counter = OpenNvmlCounter(0);
  if (counter.ok()) {
    auto joules = (*counter)->ReadJoules();
    ASSERT_TRUE(joules.ok()) << joules.status();
    EXPECT_GE(*joules, 0);
  } else {
    EXPECT_TRUE(counter.status().code() == absl::StatusCode::kNotFound ||
                counter.status().code() == absl::StatusCode::kUnavailable)
        << counter.status();
  }
}

}  // namespace
}  // namespace squeeze::core::eval
