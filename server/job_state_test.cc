#include "server/job_state.h"

#include "gtest/gtest.h"

namespace squeeze::server {
namespace {

TEST(JobStateTest, FinalStatesHaveNoWayOut) {
  for (JobState final_state : {v1::SUCCEEDED, v1::FAILED, v1::CANCELLED}) {
    EXPECT_TRUE(IsFinal(final_state));
    for (int to = v1::QUEUED; to <= v1::CANCELLED; ++to) {
      EXPECT_FALSE(IsAllowedTransition(final_state, static_cast<JobState>(to)))
          << JobStateName(final_state) << " -> " << to;
    }
  }
}

TEST(JobStateTest, RetryAndCancelPathsExist) {
  EXPECT_TRUE(IsAllowedTransition(v1::QUEUED, v1::RUNNING));
  EXPECT_TRUE(IsAllowedTransition(v1::RUNNING, v1::QUEUED));
  EXPECT_TRUE(IsAllowedTransition(v1::RUNNING, v1::CANCELLED));
  EXPECT_FALSE(IsAllowedTransition(v1::QUEUED, v1::SUCCEEDED));
  EXPECT_FALSE(IsAllowedTransition(v1::QUEUED, v1::QUEUED));
}

}  // namespace
}  // namespace squeeze::server
