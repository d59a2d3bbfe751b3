#include "core/eval/fidelity.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace squeeze::core::eval {
namespace {

TEST(FidelityTest, KnownValues) {
  const std::vector<float> reference = {3.0f, 4.0f};    // norm 5
  const std::vector<float> actual = {3.0f, 4.5f};       // error norm 0.5
  const FidelityReport report =
      CompareOutputs(reference.data(), actual.data(), 2);
  EXPECT_DOUBLE_EQ(report.relative_error, 0.1);
  EXPECT_NEAR(report.sqnr_db, 20.0, 1e-9);
}

TEST(FidelityTest, IdenticalIsCappedAt200Db) {
  const std::vector<float> x = {1.0f, -2.0f};
  const FidelityReport report = CompareOutputs(x.data(), x.data(), 2);
  EXPECT_EQ(report.relative_error, 0.0);
  EXPECT_EQ(report.sqnr_db, 200.0);
  EXPECT_EQ(CompareOutputs(nullptr, nullptr, 0).sqnr_db, 200.0);
}

TEST(FidelityTest, AllZeroReference) {
  const std::vector<float> zeros = {0.0f, 0.0f};
  const std::vector<float> ones = {1.0f, 0.0f};
  EXPECT_EQ(CompareOutputs(zeros.data(), zeros.data(), 2).relative_error, 0.0);
  const FidelityReport report = CompareOutputs(zeros.data(), ones.data(), 2);
  EXPECT_EQ(report.relative_error, std::numeric_limits<double>::infinity());
  EXPECT_EQ(report.sqnr_db, -200.0);
}

TEST(FidelityTest, NanPropagates) {
  const std::vector<float> reference = {1.0f, 2.0f};
  const std::vector<float> actual = {1.0f, std::nanf("")};
  const FidelityReport report =
      CompareOutputs(reference.data(), actual.data(), 2);
  EXPECT_TRUE(std::isnan(report.relative_error));
  EXPECT_TRUE(std::isnan(report.sqnr_db));
}

}  // namespace
}  // namespace squeeze::core::eval
