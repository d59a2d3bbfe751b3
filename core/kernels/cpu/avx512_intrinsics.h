// <immintrin.h> for the files built with -mavx512f (fast_gemm_avx512.cc,
// vector_math_avx512.cc). GCC 12's avx512fintrin.h (_mm512_undefined in its
// cast and permute intrinsics) trips -Wuninitialized (GCC bug 105593, fixed
// in GCC 13), so those warnings are off while it is read.
#ifndef SQUEEZE_CORE_KERNELS_CPU_AVX512_INTRINSICS_H_
#define SQUEEZE_CORE_KERNELS_CPU_AVX512_INTRINSICS_H_

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // SQUEEZE_CORE_KERNELS_CPU_AVX512_INTRINSICS_H_
