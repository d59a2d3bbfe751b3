#include "core/quant/gemm/gemm_dispatch.h"

#include <cstdlib>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant::gemm {
namespace {

using ::testing::HasSubstr;

class GemmDispatchTest : public ::testing::Test {
 protected:
  void TearDown() override { unsetenv("SQUEEZE_GEMM_PATH"); }
};

TEST_F(GemmDispatchTest, ExplicitScalarAlwaysResolves) {
  setenv("SQUEEZE_GEMM_PATH", "avx2", 1);  // an explicit path wins over the variable
  EXPECT_EQ(*ResolveGemmPath(GemmPath::kScalar), GemmPath::kScalar);
}

TEST_F(GemmDispatchTest, AutoFollowsTheCpuAndTheEnvironment) {
  unsetenv("SQUEEZE_GEMM_PATH");
  EXPECT_EQ(*ResolveGemmPath(GemmPath::kAuto),
            CpuHasAvx2Fma() ? GemmPath::kAvx2 : GemmPath::kScalar);
  setenv("SQUEEZE_GEMM_PATH", "scalar", 1);
  EXPECT_EQ(*ResolveGemmPath(GemmPath::kAuto), GemmPath::kScalar);
  setenv("SQUEEZE_GEMM_PATH", "sse9", 1);
  EXPECT_THAT(ResolveGemmPath(GemmPath::kAuto).status().message(),
              HasSubstr("got \"sse9\""));
}

TEST_F(GemmDispatchTest, Avx2OnlyWhereTheCpuHasIt) {
  absl::StatusOr<GemmPath> path = ResolveGemmPath(GemmPath::kAvx2);
  if (CpuHasAvx2Fma()) {
    EXPECT_EQ(*path, GemmPath::kAvx2);
  } else {
    EXPECT_EQ(path.status().code(), absl::StatusCode::kFailedPrecondition);
  }
}

}  // namespace
}  // namespace squeeze::core::quant::gemm
