// Device kernels of the CUDA backend, as plain launch functions (no Abseil,
// so that nvcc compiles only CUDA and the standard library). All pointers
// are device pointers; every function launches on the default stream and
// returns the launch error (execution errors surface at the next
// synchronising call).
#ifndef SQUEEZE_CORE_KERNELS_CUDA_CUDA_KERNELS_H_
#define SQUEEZE_CORE_KERNELS_CUDA_CUDA_KERNELS_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace squeeze::core::kernels::cuda {

enum class BinaryOp { kAdd, kSub, kMul, kDiv, kPow };
enum class UnaryOp { kRelu, kLeakyRelu, kSigmoid, kTanh, kExp, kLog, kSqrt, kErf, kNeg };

// y[i] = a[a_index[i]] op b[b_index[i]] for i < n. A null index means the
// identity (the input has the output's shape).
cudaError_t LaunchBinary(BinaryOp op, const float* a, const int64_t* a_index, const float* b,
                         const int64_t* b_index, float* y, int64_t n);

// y[i] = f(x[i]); `alpha` is LeakyRelu's slope.
cudaError_t LaunchUnary(UnaryOp op, const float* x, float* y, int64_t n, float alpha);

// y[i] = scale * x[index[i]] for i < n (materialises a broadcast).
cudaError_t LaunchGather(const float* x, const int64_t* index, float* y, int64_t n, float scale);

// Softmax (or log-softmax) over the middle axis of an [outer, length, inner]
// layout.
cudaError_t LaunchSoftmax(const float* x, float* y, int64_t outer, int64_t length, int64_t inner,
                          bool log);

// Layer normalisation of `rows` rows of `cols` values: y = (x - mean) /
// sqrt(var + epsilon) * scale[c] + bias[c] (bias may be null).
cudaError_t LaunchLayerNorm(const float* x, const float* scale, const float* bias, float* y,
                            int64_t rows, int64_t cols, float epsilon);

}  // namespace squeeze::core::kernels::cuda

#endif  // SQUEEZE_CORE_KERNELS_CUDA_CUDA_KERNELS_H_
