#include "core/kernels/cuda/cuda_kernels.h"

#include <cmath>

namespace squeeze::core::kernels::cuda {
namespace {

constexpr int kThreads = 256;

int Blocks(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

__global__ void BinaryKernel(BinaryOp op, const float* a, const int64_t* a_index, const float* b,
                             const int64_t* b_index, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float x = a[a_index ? a_index[i] : i];
    const float z = b[b_index ? b_index[i] : i];
    switch (op) {
      case BinaryOp::kAdd: y[i] = x + z; break;
      case BinaryOp::kSub: y[i] = x - z; break;
      case BinaryOp::kMul: y[i] = x * z; break;
      case BinaryOp::kDiv: y[i] = x / z; break;
      case BinaryOp::kPow: y[i] = powf(x, z); break;
    }
  }
}

__global__ void UnaryKernel(UnaryOp op, const float* x, float* y, int64_t n, float alpha) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = x[i];
    switch (op) {
      case UnaryOp::kRelu: y[i] = v > 0.0f ? v : 0.0f; break;
      case UnaryOp::kLeakyRelu: y[i] = v > 0.0f ? v : alpha * v; break;
      case UnaryOp::kSigmoid: y[i] = 1.0f / (1.0f + expf(-v)); break;
      case UnaryOp::kTanh: y[i] = tanhf(v); break;
      case UnaryOp::kExp: y[i] = expf(v); break;
      case UnaryOp::kLog: y[i] = logf(v); break;
      case UnaryOp::kSqrt: y[i] = sqrtf(v); break;
      case UnaryOp::kErf: y[i] = erff(v); break;
      case UnaryOp::kNeg: y[i] = -v; break;
    }
  }
}

__global__ void GatherKernel(const float* x, const int64_t* index, float* y, int64_t n,
                             float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = scale * x[index[i]];
  }
}

// One thread per (outer, inner) row; rows are independent.
__global__ void SoftmaxKernel(const float* x, float* y, int64_t outer, int64_t length,
                              int64_t inner, bool log) {
  const int64_t rows = outer * inner;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = r / inner, in = r % inner;
    const float* row = x + o * length * inner + in;
    float* out = y + o * length * inner + in;
    float max = -INFINITY;
    for (int64_t a = 0; a < length; ++a) max = fmaxf(max, row[a * inner]);
    float sum = 0.0f;
    for (int64_t a = 0; a < length; ++a) sum += expf(row[a * inner] - max);
    const float log_sum = logf(sum);
    for (int64_t a = 0; a < length; ++a) {
      const float shifted = row[a * inner] - max;
      out[a * inner] = log ? shifted - log_sum : expf(shifted) / sum;
    }
  }
}

// One block per row: a shared-memory reduction of sum and sum of squares.
__global__ void LayerNormKernel(const float* x, const float* scale, const float* bias, float* y,
                                int64_t cols, float epsilon) {
  __shared__ float sums[kThreads];
  __shared__ float squares[kThreads];
  const float* row = x + blockIdx.x * cols;
  float* out = y + blockIdx.x * cols;
  float sum = 0.0f, square = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    sum += row[c];
    square += row[c] * row[c];
  }
  sums[threadIdx.x] = sum;
  squares[threadIdx.x] = square;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      sums[threadIdx.x] += sums[threadIdx.x + stride];
      squares[threadIdx.x] += squares[threadIdx.x + stride];
    }
    __syncthreads();
  }
  const float mean = sums[0] / cols;
  const float variance = fmaxf(squares[0] / cols - mean * mean, 0.0f);
  const float inverse = rsqrtf(variance + epsilon);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    out[c] = (row[c] - mean) * inverse * scale[c] + (bias ? bias[c] : 0.0f);
  }
}

}  // namespace

cudaError_t LaunchBinary(BinaryOp op, const float* a, const int64_t* a_index, const float* b,
                         const int64_t* b_index, float* y, int64_t n) {
  BinaryKernel<<<Blocks(n), kThreads>>>(op, a, a_index, b, b_index, y, n);
  return cudaGetLastError();
}

cudaError_t LaunchUnary(UnaryOp op, const float* x, float* y, int64_t n, float alpha) {
  UnaryKernel<<<Blocks(n), kThreads>>>(op, x, y, n, alpha);
  return cudaGetLastError();
}

cudaError_t LaunchGather(const float* x, const int64_t* index, float* y, int64_t n, float scale) {
  GatherKernel<<<Blocks(n), kThreads>>>(x, index, y, n, scale);
  return cudaGetLastError();
}

cudaError_t LaunchSoftmax(const float* x, float* y, int64_t outer, int64_t length, int64_t inner,
                          bool log) {
  SoftmaxKernel<<<Blocks(outer * inner), kThreads>>>(x, y, outer, length, inner, log);
  return cudaGetLastError();
}

cudaError_t LaunchLayerNorm(const float* x, const float* scale, const float* bias, float* y,
                            int64_t rows, int64_t cols, float epsilon) {
  if (rows == 0) return cudaSuccess;
  LayerNormKernel<<<static_cast<unsigned>(rows), kThreads>>>(x, scale, bias, y, cols, epsilon);
  return cudaGetLastError();
}

}  // namespace squeeze::core::kernels::cuda
