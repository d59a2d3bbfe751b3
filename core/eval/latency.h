// Wall-clock latency of a callable, by repetition.
#ifndef SQUEEZE_CORE_EVAL_LATENCY_H_
#define SQUEEZE_CORE_EVAL_LATENCY_H_

#include <functional>
#include <vector>

namespace squeeze::core::eval {

// Times are in seconds.
struct LatencyStats {
  double p50 = 0.0;
  double p95 = 0.0;
  double p99 = 0.0;
  double mean = 0.0;
  int iterations = 0;
};

// Iterations are capped so that a very fast `fn` cannot exhaust memory.
inline constexpr int kMaxLatencyIterations = 1000000;

// Calls `fn` `warmup` times untimed, then times single calls with
// std::chrono::steady_clock until at least `min_iterations` calls and
// `min_seconds` of timed calls have passed (or kMaxLatencyIterations).
// Percentiles use the nearest-rank method.
LatencyStats MeasureLatency(const std::function<void()>& fn, int warmup,
                            int min_iterations, double min_seconds);

// Summary of `samples` (seconds), nearest-rank percentiles; all zero when
// empty. Exposed for testing the statistics apart from the clock.
LatencyStats SummarizeLatencies(std::vector<double> samples);

// Whether a variant counts as faster than its baseline: its p50 is at least
// 5% below (two runs of the same model differ by a few percent on a shared
// machine; a same-speed variant must not be called faster by noise).
inline bool FasterThanBaseline(double variant_seconds, double baseline_seconds) {
  return variant_seconds < 0.95 * baseline_seconds;
}

}  // namespace squeeze::core::eval

#endif  // SQUEEZE_CORE_EVAL_LATENCY_H_
