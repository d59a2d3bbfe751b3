// Small helpers the runtime benchmarks share: exit on an error status,
// medians, one timed round, seeded uniform inputs.
#ifndef SQUEEZE_BENCH_BENCH_UTIL_H_
#define SQUEEZE_BENCH_BENCH_UTIL_H_

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/eval/latency.h"
#include "core/graph/tensor.h"

namespace squeeze::bench {

// The value, or prints the error and exits 1.
template <typename T>
T Check(absl::StatusOr<T> value) {
  if (!value.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(value.status().message()).c_str());
    std::exit(1);
  }
  return *std::move(value);
}

inline double MedianOf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// One round: the median latency of `fn` in milliseconds over at least 10
// calls and `min_seconds` (after 2 warm-up calls).
inline double RoundMs(const std::function<void()>& fn, double min_seconds) {
  return core::eval::MeasureLatency(fn, /*warmup=*/2, /*min_iterations=*/10, min_seconds).p50 * 1e3;
}

// Seeded uniform [0, 1) floats (image-like inputs; latency does not depend on them).
inline core::graph::Tensor UniformTensor(const std::vector<int64_t>& shape, uint32_t seed) {
  core::graph::Tensor t(core::graph::DataType::kFloat32, shape);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = uniform(rng);
  return t;
}

}  // namespace squeeze::bench

#endif  // SQUEEZE_BENCH_BENCH_UTIL_H_
