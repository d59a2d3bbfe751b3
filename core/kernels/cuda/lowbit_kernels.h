// Device kernels for the packed low-bit and N:M sparse weight formats
// (issues 4 and 5), as plain launch functions like cuda_kernels.h: no
// Abseil, all pointers are device pointers, each function launches on the
// default stream and returns the launch error (execution errors surface at
// the next synchronising call). lowbit_gemm.h is the checked host API.
//
// The weight views mirror the CPU formats byte for byte, so the same
// buffers the CPU kernels read are uploaded unchanged:
//   int8        core/quant/gemm/int8_gemm.h (uint8 activations x int8
//               weights [n, k], int32 sums)
//   int4/3/2    core/quant/packed_formats.h nibbles, per-channel or
//               per-group float scales, optional uint8 zero points
//   codebook    core/quant/gemm/codebook_layout.h b-bit index stream
//   N:M sparse  core/prune/nm_sparse.h values + packed position indices
// Every kernel computes Y[m, n] = sum_k X[m, k] * W[n, k] (+ bias[n]) with W
// decoded inside the GEMM, tile by tile into shared memory; the float
// weight matrix is never materialised in global memory.
//
// Target::kHostEmulation runs the kernels' block code on the host instead
// (block after block, thread after thread, the phases between two
// __syncthreads in lockstep), on host pointers, and returns cudaSuccess. It
// checks tiling, bounds, decoding and arithmetic where no GPU exists; it
// cannot check the launch, the device's memory model or the dp4a
// instruction itself (emulated by its definition). It is slow: tests only.
#ifndef SQUEEZE_CORE_KERNELS_CUDA_LOWBIT_KERNELS_H_
#define SQUEEZE_CORE_KERNELS_CUDA_LOWBIT_KERNELS_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "core/kernels/cuda/target.h"

namespace squeeze::core::kernels::cuda {

// acc[m, n] = sum_k xq[m, k] * wq[n, k] in int32, exact (dp4a, u8 x s8).
// Sizes >= 1; k <= 65536 keeps the sums inside int32 (the caller checks).
cudaError_t LaunchInt8MatMulInt32(const uint8_t* xq, const int8_t* wq, int64_t m, int64_t n,
                                  int64_t k, int32_t* acc, Target target = Target::kDevice);

// Nibble-packed uniform weights (int4, and int3/int2 in the same
// container): W[r, c] = float(nibble(r, c) - zero(r, g)) * scale(r, g),
// g = c / group_width, zero = zero_points[r * groups + g] when asymmetric,
// else 8 (kInt4SymmetricOffset). Exactly DequantizeRtn's weights.
struct DeviceNibbleWeights {
  int64_t out = 0, in = 0;
  int64_t groups = 1;          // per row; 1 when per channel
  int64_t group_width = 0;     // in / groups
  bool asymmetric = false;
  const uint8_t* packed = nullptr;       // [out, ceil(in / 2)]
  const float* scales = nullptr;         // [out, groups]
  const uint8_t* zero_points = nullptr;  // [out, groups] when asymmetric
  const float* bias = nullptr;           // [out] or null
};
cudaError_t LaunchNibbleGemm(const float* x, int64_t m, const DeviceNibbleWeights& w, float* y,
                             Target target = Target::kDevice);

// Codebook weights: W[r, c] = codebook[(per_row ? r : 0) * 2^bits +
// index(r, c)], indices `bits` wide, LSB-first, each row on a byte boundary.
struct DeviceCodebookWeights {
  int64_t out = 0, in = 0;
  int bits = 4;  // 2, 3 or 4
  bool per_row_codebook = false;
  const uint8_t* packed = nullptr;   // [out, ceil(in * bits / 8)]
  const float* codebook = nullptr;   // [2^bits] or [out, 2^bits]
  const float* bias = nullptr;       // [out] or null
};
cudaError_t LaunchLutGemm(const float* x, int64_t m, const DeviceCodebookWeights& w, float* y,
                          Target target = Target::kDevice);

// N:M compressed weights: kept value s of row r (s < in / m * n) sits at
// column (s / n) * m + index(r, s), index `index_bits` wide, LSB-first.
// Needs 1 <= n < m <= 16 and m dividing `in` (the caller checks).
struct DeviceNmWeights {
  int64_t out = 0, in = 0;
  int n = 2, m = 4;
  int index_bits = 2;
  int64_t row_index_bytes = 0;
  const float* values = nullptr;     // [out, in / m * n]
  const uint8_t* indices = nullptr;  // [out, row_index_bytes]
  const float* bias = nullptr;       // [out] or null
};
cudaError_t LaunchNmSparseGemm(const float* x, int64_t m, const DeviceNmWeights& w, float* y,
                               Target target = Target::kDevice);

// The same product for 2:4 on the sparse tensor cores (mma.sp m16n8k32,
// sm_80 and later), straight from the compressed form: X and the kept
// values are rounded to f16, products accumulate in float32. Needs n = 2,
// m = 4, in % 32 == 0 (else cudaErrorInvalidValue), a device of compute
// capability 8.0 or more (the kernel traps elsewhere) and, in every group,
// the two indices strictly increasing (mma.sp::ordered_metadata), as
// CompressNm writes them.
cudaError_t LaunchNmSparseGemmTensorCores(const float* x, int64_t m, const DeviceNmWeights& w, float* y,
                                          Target target = Target::kDevice);

}  // namespace squeeze::core::kernels::cuda

#endif  // SQUEEZE_CORE_KERNELS_CUDA_LOWBIT_KERNELS_H_
