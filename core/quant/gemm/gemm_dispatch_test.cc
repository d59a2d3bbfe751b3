#include "core/quant/gemm/gemm_dispatch.h"

#include <cstdio>
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
  const GemmPath best = CpuRunsGemmPath(GemmPath::kAvx512Vnni) ? GemmPath::kAvx512Vnni
                        : CpuRunsGemmPath(GemmPath::kAvxVnni)  ? GemmPath::kAvxVnni
                        : CpuHasAvx2Fma()                       ? GemmPath::kAvx2
                                                                : GemmPath::kScalar;
  EXPECT_EQ(*ResolveGemmPath(GemmPath::kAuto), best);
  setenv("SQUEEZE_GEMM_PATH", "scalar", 1);
  EXPECT_EQ(*ResolveGemmPath(GemmPath::kAuto), GemmPath::kScalar);
  for (GemmPath path : {GemmPath::kAvx2, GemmPath::kAvxVnni, GemmPath::kAvx512Vnni}) {
    setenv("SQUEEZE_GEMM_PATH", GemmPathName(path), 1);
    absl::StatusOr<GemmPath> resolved = ResolveGemmPath(GemmPath::kAuto);
    if (CpuRunsGemmPath(path)) {
      EXPECT_EQ(*resolved, path);
    } else {
      EXPECT_EQ(resolved.status().code(), absl::StatusCode::kFailedPrecondition);
    }
  }
  setenv("SQUEEZE_GEMM_PATH", "sse9", 1);
  EXPECT_THAT(ResolveGemmPath(GemmPath::kAuto).status().message(),
              HasSubstr("got \"sse9\""));
}

TEST_F(GemmDispatchTest, VnniPathsNeedAvx2Too) {
  std::printf("this CPU runs:");
  for (GemmPath path : {GemmPath::kAvx2, GemmPath::kAvxVnni, GemmPath::kAvx512Vnni}) {
    if (CpuRunsGemmPath(path)) std::printf(" %s", GemmPathName(path));
  }
  std::printf("\n");
  for (GemmPath path : {GemmPath::kAvxVnni, GemmPath::kAvx512Vnni}) {
    if (CpuRunsGemmPath(path)) {
      EXPECT_TRUE(CpuHasAvx2Fma()) << GemmPathName(path);
    }
    EXPECT_EQ(ResolveGemmPath(path).ok(), CpuRunsGemmPath(path)) << GemmPathName(path);
  }
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
