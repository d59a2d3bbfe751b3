// Float32 loops of Softmax and Sigmoid around one exp polynomial that the
// compiler vectorizes (std::exp is a scalar call): within about 2 ulp of
// std::exp, results below float's smallest normal (exp(x), x < -87.34)
// flushed to 0. Built with -fno-trapping-math so that its selects vectorize;
// where FastGemm runs its AVX-512 kernels, vector_math_avx512.cc runs the
// same loops 16 lanes wide.
#ifndef SQUEEZE_CORE_KERNELS_CPU_VECTOR_MATH_H_
#define SQUEEZE_CORE_KERNELS_CPU_VECTOR_MATH_H_

#include <cstdint>

namespace squeeze::core::kernels::cpu {

// out[r * n + i] = softmax of in's row r (rows of n contiguous floats):
// exp(x - max) / sum, the sum accumulated in double. in and out may be the
// same array.
void SoftmaxRows(const float* in, float* out, int64_t rows, int64_t n);

// out[i] = 1 / (1 + exp(-in[i])), as 1 / (1 + e) or e / (1 + e) with
// e = exp(-|x|), so nothing overflows. in and out may be the same array.
void SigmoidArray(const float* in, float* out, int64_t n);

namespace internal {
// exp(x) for x <= 0 (NaN gives NaN); exposed for tests.
float ExpNonPositive(float x);
// The portable loops and the AVX-512 ones (vector_math_avx512.cc; only
// where CpuRunsAvx512()), whatever the dispatch picks; for tests.
void SoftmaxRowsPortable(const float* in, float* out, int64_t rows, int64_t n);
void SigmoidArrayPortable(const float* in, float* out, int64_t n);
void SoftmaxRowsAvx512(const float* in, float* out, int64_t rows, int64_t n);
void SigmoidArrayAvx512(const float* in, float* out, int64_t n);
}  // namespace internal

}  // namespace squeeze::core::kernels::cpu

#endif  // SQUEEZE_CORE_KERNELS_CPU_VECTOR_MATH_H_
