// Low-bit and N:M sparse GEMMs on a CUDA device (issues 4 and 5), from the
// same packed structs the CPU kernels take, with host pointers in and out
// like the CUDA backend: each call uploads its operands, launches
// (lowbit_kernels.h), waits and downloads the result. Runs on the calling
// thread's current device.
//
//   CudaInt8MatMulInt32   == Int8MatMulInt32Ref bit for bit (dp4a, exact int32)
//   CudaNibbleGemm        int4 (and int3/int2 nibble) weights dequantized
//                         inside the GEMM; == Int4Gemm within the float
//                         reassociation bound of int4_gemm.h
//   CudaLutGemm           codebook weights looked up inside the GEMM; ==
//                         LutGemm within the same bound
//   CudaNmSparseMatMul    Y = X * W^T from NmSparseMatrix's compressed form;
//                         == NmSparseMatMulRef within the same bound
//   CudaNmSparseMatMulTensorCores
//                         the same for 2:4 on the sparse tensor cores
//                         (mma.sp, f16 operands, float32 sums)
//
// Errors: INVALID_ARGUMENT (checked first, on the host, naming the layer and
// the bad value) for what the CPU kernels reject; UNAVAILABLE when there is
// no CUDA device; INTERNAL for a CUDA error. Outputs are overwritten.
// Target::kHostEmulation runs the same checks and the kernels' block code on
// the host, on the caller's memory (lowbit_kernels.h; tests only).
//
// The float kernels run on CUDA cores in float32 (FMA, k order per output).
// N:M weights are decoded into dense tiles there, so they save weight memory
// traffic, not multiplications; CudaNmSparseMatMulTensorCores skips the
// pruned half on the tensor cores, at f16 operand precision.
#ifndef SQUEEZE_CORE_KERNELS_CUDA_LOWBIT_GEMM_H_
#define SQUEEZE_CORE_KERNELS_CUDA_LOWBIT_GEMM_H_

#include <cstdint>

#include "absl/status/status.h"
#include "core/prune/nm_sparse.h"
#include "core/quant/gemm/lut_gemm.h"
#include "core/kernels/cuda/target.h"
#include "core/quant/rtn.h"

namespace squeeze::core::kernels::cuda {

// acc [m, n] = xq [m, k] (uint8) * wq [n, k]^T (int8), int32. INVALID_ARGUMENT
// for non-positive sizes or k > quant::gemm::kMaxInt8GemmDepth.
absl::Status CudaInt8MatMulInt32(const uint8_t* xq, const int8_t* wq, int64_t m, int64_t n,
                                 int64_t k, int32_t* acc, Target target = Target::kDevice);

// y [m, layer.out] = x [m, layer.in] * W^T + bias with W as DequantizeRtn
// gives it. Takes bits 2, 3 and 4 (the nibble formats of packed_formats.h);
// INVALID_ARGUMENT for 8-bit layers, inconsistent sizes or m < 1.
absl::Status CudaNibbleGemm(const float* x, int64_t m, const quant::QuantizedLinear& layer,
                            float* y, Target target = Target::kDevice);

// y [m, layer.out] = x * W^T + bias with W looked up in the codebook.
// INVALID_ARGUMENT from layer.Validate() or for m < 1.
absl::Status CudaLutGemm(const float* x, int64_t m, const quant::gemm::CodebookLinear& layer,
                         float* y, Target target = Target::kDevice);

// y [rows, w.out] = x [rows, w.in] * W^T (+ bias [w.out] when not null).
// INVALID_ARGUMENT for a bad pattern (prune::ValidateNmPattern), rows < 1 or
// a row_index_bytes that does not match the pattern.
absl::Status CudaNmSparseMatMul(const float* x, int64_t rows, const prune::NmSparseView& w,
                                const float* bias, float* y, Target target = Target::kDevice);

// 2:4 only, on sparse tensor cores (LaunchNmSparseGemmTensorCores): X and
// the kept values are rounded to f16 (|x| beyond 65504 overflows), products
// summed in float32, so |Y - Y_ref| <~ 2^-10 * sum_k |X[m,k] * W[n,k]|.
// INVALID_ARGUMENT as above and unless n:m is 2:4, in % 32 == 0 and both
// kept positions of every group increase (CompressNm's order);
// UNAVAILABLE without a device of compute capability 8.0 or more.
absl::Status CudaNmSparseMatMulTensorCores(const float* x, int64_t rows, const prune::NmSparseView& w,
                                           const float* bias, float* y, Target target = Target::kDevice);

}  // namespace squeeze::core::kernels::cuda

#endif  // SQUEEZE_CORE_KERNELS_CUDA_LOWBIT_GEMM_H_
