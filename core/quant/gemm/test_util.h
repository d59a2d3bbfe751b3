// Test helpers for core/quant/gemm: every path this CPU can run (so that each
// test covers the scalar path everywhere and AVX2 / AVX-VNNI / AVX-512 VNNI
// where they exist), random
// inputs and the float reassociation tolerance.
#ifndef SQUEEZE_CORE_QUANT_GEMM_TEST_UTIL_H_
#define SQUEEZE_CORE_QUANT_GEMM_TEST_UTIL_H_

#include <cstdint>
#include <random>
#include <vector>

#include "core/quant/gemm/gemm_dispatch.h"

namespace squeeze::core::quant::gemm {

inline std::vector<float> RandomFloats(int64_t count, uint32_t seed,
                                       float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(count);
  for (float& x : v) x = normal(rng);
  return v;
}

inline std::vector<GemmPath> AvailablePaths() {
  std::vector<GemmPath> paths;
  for (GemmPath path : {GemmPath::kScalar, GemmPath::kAvx2, GemmPath::kAvxVnni,
                        GemmPath::kAvx512Vnni}) {
    if (CpuRunsGemmPath(path)) paths.push_back(path);
  }
  return paths;
}

// Float32 unit roundoff; two summation orders of `depth` products differ by
// at most 2 * depth * kUnitRoundoff * sum |x * w| (the classic gamma_n bound).
inline constexpr double kUnitRoundoff = 0x1p-24;

inline double ReassociationTolerance(int64_t depth, double sum_abs_products,
                                     double result) {
  return 2.0 * depth * kUnitRoundoff * sum_abs_products +
         2.0 * kUnitRoundoff * (result < 0 ? -result : result);
}

}  // namespace squeeze::core::quant::gemm

#endif  // SQUEEZE_CORE_QUANT_GEMM_TEST_UTIL_H_
