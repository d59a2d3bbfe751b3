#include "core/eval/latency.h"

#include "gtest/gtest.h"

namespace squeeze::core::eval {
namespace {

TEST(LatencyTest, NearestRankPercentiles) {
  std::vector<double> samples;
  for (int i = 100; i >= 1; --i) samples.push_back(i);
  const LatencyStats stats = SummarizeLatencies(samples);
  EXPECT_EQ(stats.p50, 50);
  EXPECT_EQ(stats.p95, 95);
  EXPECT_EQ(stats.p99, 99);
  EXPECT_DOUBLE_EQ(stats.mean, 50.5);
  EXPECT_EQ(stats.iterations, 100);
}

TEST(LatencyTest, SmallSamples) {
  const LatencyStats one = SummarizeLatencies({0.25});
  EXPECT_EQ(one.p50, 0.25);
  EXPECT_EQ(one.p99, 0.25);
  const LatencyStats three = SummarizeLatencies({3, 1, 2});
  EXPECT_EQ(three.p50, 2);  // rank ceil(1.5) = 2
  EXPECT_EQ(three.p95, 3);
  EXPECT_EQ(SummarizeLatencies({}).iterations, 0);
}

TEST(LatencyTest, RunsWarmupAndAtLeastMinIterations) {
  int calls = 0;
  const LatencyStats stats =
      MeasureLatency([&calls] { ++calls; }, 3, 20, 0.0);
  EXPECT_EQ(stats.iterations, 20);
  EXPECT_EQ(calls, 23);
  EXPECT_LE(stats.p50, stats.p95);
  EXPECT_LE(stats.p95, stats.p99);
}

TEST(LatencyTest, RunsForMinSeconds) {
  const LatencyStats stats = MeasureLatency([] {}, 0, 1, 0.01);
  EXPECT_GT(stats.iterations, 1);
  EXPECT_GE(stats.mean * stats.iterations, 0.0);
}

}  // namespace
}  // namespace squeeze::core::eval
