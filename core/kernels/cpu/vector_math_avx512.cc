// The AVX-512 loops of vector_math.h: the same exp polynomial and the same
// operations, 16 lanes at a time with masked tails (the Softmax sum is
// accumulated in double in another order, so its last bit may differ from
// the portable loop). The only file besides fast_gemm_avx512.cc built with
// -mavx512f; vector_math.cc calls it only when FastGemm chose its AVX-512
// kernels (so SQUEEZE_CPU_GEMM=avx2|eigen selects the portable loops).
// No standard templates here: see fast_gemm_avx512.cc.
#include <cstdint>

#include "core/kernels/cpu/avx512_intrinsics.h"
#include "core/kernels/cpu/vector_math.h"

namespace squeeze::core::kernels::cpu::internal {
namespace {

inline __mmask16 TailMask(int64_t count) {
  return count >= 16 ? __mmask16(0xffff) : __mmask16((1u << count) - 1);
}

// vector_math.cc's Exp, lane by lane (plain multiplies and adds, no FMA, so
// that each lane computes what the portable loop computes).
inline __m512 Exp(__m512 x) {
  const __m512 min = _mm512_set1_ps(-87.3365447f);
  const __mmask16 under = _mm512_cmp_ps_mask(x, min, _CMP_LT_OQ);
  const __m512 clamped = _mm512_max_ps(min, x);  // NaN stays NaN
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(clamped, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_sub_ps(_mm512_sub_ps(clamped, _mm512_mul_ps(n, _mm512_set1_ps(0.693359375f))),
                                 _mm512_mul_ps(n, _mm512_set1_ps(-2.12194440e-4f)));
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r), _mm512_set1_ps(1.0f));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~under), _mm512_scalef_ps(p, n));
}

}  // namespace

void SoftmaxRowsAvx512(const float* in, float* out, int64_t rows, int64_t n) {
  const __m512 minus_infinity = _mm512_set1_ps(-__builtin_inff());
  for (int64_t row = 0; row < rows; ++row) {
    const float* x = in + row * n;
    float* y = out + row * n;
    __m512 max = minus_infinity;
    for (int64_t i = 0; i < n; i += 16) {
      max = _mm512_max_ps(max, _mm512_mask_loadu_ps(minus_infinity, TailMask(n - i), x + i));
    }
    const __m512 shift = _mm512_set1_ps(_mm512_reduce_max_ps(max));
    __m512d sum_low = _mm512_setzero_pd(), sum_high = _mm512_setzero_pd();
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 mask = TailMask(n - i);
      const __m512 e = Exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + i), shift));
      const __m512 kept = _mm512_maskz_mov_ps(mask, e);
      _mm512_mask_storeu_ps(y + i, mask, kept);
      sum_low = _mm512_add_pd(sum_low, _mm512_cvtps_pd(_mm512_castps512_ps256(kept)));
      sum_high = _mm512_add_pd(
          sum_high, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(kept), 1))));
    }
    const double sum = _mm512_reduce_add_pd(_mm512_add_pd(sum_low, sum_high));
    const __m512 inverse = _mm512_set1_ps(static_cast<float>(1.0 / sum));
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 mask = TailMask(n - i);
      _mm512_mask_storeu_ps(y + i, mask, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, y + i), inverse));
    }
  }
}

void SigmoidArrayAvx512(const float* in, float* out, int64_t n) {
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 mask = TailMask(n - i);
    const __m512 x = _mm512_maskz_loadu_ps(mask, in + i);
    const __m512 e = Exp(_mm512_min_ps(x, _mm512_sub_ps(zero, x)));  // exp(-|x|)
    const __m512 one_over = _mm512_div_ps(one, _mm512_add_ps(one, e));
    const __mmask16 non_negative = _mm512_cmp_ps_mask(x, zero, _CMP_GE_OQ);
    _mm512_mask_storeu_ps(out + i, mask,
                          _mm512_mask_blend_ps(non_negative, _mm512_mul_ps(e, one_over), one_over));
  }
}

}  // namespace squeeze::core::kernels::cpu::internal
