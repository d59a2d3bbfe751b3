// How close a compressed model's outputs are to the original's.
#ifndef SQUEEZE_CORE_EVAL_FIDELITY_H_
#define SQUEEZE_CORE_EVAL_FIDELITY_H_

#include <cstddef>

namespace squeeze::core::eval {

// SQNR values are clamped to [-kMaxSqnrDb, kMaxSqnrDb] so that identical
// outputs (infinite SQNR) still give a finite, comparable number.
inline constexpr double kMaxSqnrDb = 200.0;

struct FidelityReport {
  // ||actual - reference|| / ||reference|| (L2 norms over all n values).
  double relative_error = 0.0;
  // 10 log10(||reference||^2 / ||actual - reference||^2), clamped as above.
  double sqnr_db = kMaxSqnrDb;
};

// Compares n values. Sums are taken in double. Edge cases: identical inputs
// (including n == 0 and two all-zero arrays) give relative_error 0 and
// sqnr_db 200; an all-zero reference with a nonzero actual gives
// relative_error +infinity and sqnr_db -200. NaN in either input gives NaN.
FidelityReport CompareOutputs(const float* reference, const float* actual,
                              size_t n);

}  // namespace squeeze::core::eval

#endif  // SQUEEZE_CORE_EVAL_FIDELITY_H_
