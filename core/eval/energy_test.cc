#include "core/eval/energy.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::eval {
namespace {

using ::testing::HasSubstr;

TEST(EnergyTest, DefaultModelFigures) {
  const EnergyModel model = DefaultCpuEnergyModel();
  EXPECT_DOUBLE_EQ(model.pj_per_mac.at("fp32"), 4.6);
  EXPECT_DOUBLE_EQ(model.pj_per_mac.at("fp16"), 1.5);
  EXPECT_DOUBLE_EQ(model.pj_per_mac.at("int8"), 0.23);
  EXPECT_DOUBLE_EQ(model.pj_per_byte, 20.0);
  EXPECT_THAT(model.Describe(), HasSubstr("fp32 4.6 pJ/MAC"));
  EXPECT_THAT(model.Describe(), HasSubstr("DRAM 20 pJ/byte"));
  EXPECT_THAT(model.Describe(), HasSubstr("Horowitz"));
}

TEST(EnergyTest, EstimateAddsComputeAndMemory) {
  const EnergyModel model = DefaultCpuEnergyModel();
  const EnergyEstimate estimate =
      EstimateJoules(1000000, FormatForBits(8), 1000, model);
  EXPECT_EQ(estimate.format, "int8");
  EXPECT_NEAR(estimate.joules, (1e6 * 0.23 + 1e3 * 20) * 1e-12, 1e-18);
  EXPECT_EQ(estimate.Describe(),
            "1000000 MACs x 0.23 pJ (int8) + 1000 bytes x 20 pJ = 2.5e-07 J");
}

TEST(EnergyTest, MissingFormatFallsBackToFp32) {
  EnergyModel model{{{"fp32", 2.0}}, 1.0, ""};
  const EnergyEstimate estimate = EstimateJoules(10, "int3", 0, model);
  EXPECT_EQ(estimate.format, "fp32");
  EXPECT_DOUBLE_EQ(estimate.joules, 20e-12);
  EnergyModel empty;
  EXPECT_EQ(EstimateJoules(10, "int3", 5, empty).joules, 0.0);
  EXPECT_EQ(FormatForBits(32), "fp32");
  EXPECT_EQ(FormatForBits(4), "int4");
}

}  // namespace
}  // namespace squeeze::core::eval
