#include "core/kernels/backends.h"

#include "gtest/gtest.h"

namespace squeeze::core::kernels {
namespace {

TEST(BackendsTest, NamesAndAvailability) {
  auto cpu = CreateBackend("cpu");
  ASSERT_TRUE(cpu.ok());
  EXPECT_EQ((*cpu)->name(), "cpu");
  EXPECT_EQ(CreateBackend("tpu").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateBackend("cuda:x").status().code(), absl::StatusCode::kInvalidArgument);
  // No machine has 99 GPUs; a CPU-only build says CUDA is unavailable too.
  EXPECT_EQ(CreateBackend("cuda:99").status().code(), absl::StatusCode::kUnavailable);
  if (!BuiltWithCuda()) {
    EXPECT_EQ(CreateBackend("cuda").status().code(), absl::StatusCode::kUnavailable);
  }
}

}  // namespace
}  // namespace squeeze::core::kernels
