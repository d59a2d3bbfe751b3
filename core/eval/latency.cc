#include "core/eval/latency.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

namespace squeeze::core::eval {
namespace {

// Nearest rank: the smallest sample with at least p% of samples <= it.
double NearestRank(const std::vector<double>& sorted, double percent) {
  const size_t rank = static_cast<size_t>(
      std::ceil(percent / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

}  // namespace

LatencyStats SummarizeLatencies(std::vector<double> samples) {
  LatencyStats stats;
  if (samples.empty()) return stats;
  std::sort(samples.begin(), samples.end());
  stats.p50 = NearestRank(samples, 50);
  stats.p95 = NearestRank(samples, 95);
  stats.p99 = NearestRank(samples, 99);
  stats.mean = std::accumulate(samples.begin(), samples.end(), 0.0) /
               static_cast<double>(samples.size());
  stats.iterations = static_cast<int>(samples.size());
  return stats;
}

LatencyStats MeasureLatency(const std::function<void()>& fn, int warmup,
                            int min_iterations, double min_seconds) {
  using Clock = std::chrono::steady_clock;
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> samples;
  double total = 0.0;
  while (static_cast<int>(samples.size()) < kMaxLatencyIterations &&
         (static_cast<int>(samples.size()) < min_iterations ||
          total < min_seconds)) {
    const Clock::time_point start = Clock::now();
    fn();
    const double seconds =
        std::chrono::duration<double>(Clock::now() - start).count();
    samples.push_back(seconds);
    total += seconds;
  }
  return SummarizeLatencies(std::move(samples));
}

}  // namespace squeeze::core::eval
