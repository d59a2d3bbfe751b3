#include "core/kernels/cpu/vector_math.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/kernels/cpu/fast_gemm.h"

namespace squeeze::core::kernels::cpu {
namespace {

// Cephes' expf: x = n ln 2 + r with |r| <= ln 2 / 2, a degree-6 polynomial
// for exp(r), times 2^n built in the exponent bits. For x <= 0 only, so that
// n stays in [-126, 0] and 2^n is a normal float.
inline float Exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kMin = -87.3365447f;  // log of the smallest normal float
  const float clamped = x < kMin ? kMin : x;
  // n = round(clamped * log2(e)) by adding and removing 1.5 * 2^23.
  constexpr float kRound = 12582912.0f;
  const float n = (clamped * kLog2e + kRound) - kRound;
  const float r = (clamped - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x < kMin ? 0.0f : p * scale;
}

bool UseAvx512() {
  static const bool use = std::strcmp(FastGemmKernelName(), "avx512") == 0;
  return use;
}

}  // namespace

namespace internal {

float ExpNonPositive(float x) { return Exp(x); }

void SoftmaxRowsPortable(const float* in, float* out, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = in + r * n;
    float* y = out + r * n;
    float max = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) max = std::max(max, x[i]);
    for (int64_t i = 0; i < n; ++i) y[i] = Exp(x[i] - max);
    // Four partial sums: a single double chain would not pipeline.
    double sums[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
      for (int k = 0; k < 4; ++k) sums[k] += y[i + k];
    }
    for (; i < n; ++i) sums[0] += y[i];
    const float inverse = static_cast<float>(1.0 / ((sums[0] + sums[1]) + (sums[2] + sums[3])));
    for (int64_t k = 0; k < n; ++k) y[k] *= inverse;
  }
}

void SigmoidArrayPortable(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = in[i];
    const float e = Exp(x < 0 ? x : -x);
    const float one_over = 1.0f / (1.0f + e);
    out[i] = x >= 0 ? one_over : e * one_over;
  }
}

#if !defined(SQUEEZE_FAST_GEMM_AVX512)
void SoftmaxRowsAvx512(const float*, float*, int64_t, int64_t) { std::abort(); }
void SigmoidArrayAvx512(const float*, float*, int64_t) { std::abort(); }
#endif

}  // namespace internal

void SoftmaxRows(const float* in, float* out, int64_t rows, int64_t n) {
  if (UseAvx512()) {
    internal::SoftmaxRowsAvx512(in, out, rows, n);
  } else {
    internal::SoftmaxRowsPortable(in, out, rows, n);
  }
}

void SigmoidArray(const float* in, float* out, int64_t n) {
  if (UseAvx512()) {
    internal::SigmoidArrayAvx512(in, out, n);
  } else {
    internal::SigmoidArrayPortable(in, out, n);
  }
}

}  // namespace squeeze::core::kernels::cpu
