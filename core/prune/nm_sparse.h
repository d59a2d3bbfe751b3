// Semi-structured N:M sparsity: a compressed weight format, the CPU kernel
// that multiplies by it, and the runtime pass and backend that let the
// Executor run N:M-sparse linear layers from the compressed form.
//
// Layout (NmSparseMatrix), for an [out, in] weight where every group of M
// consecutive input weights of a row holds at most N non-zeros:
//   values   [out, in / M * N] float32: the kept weights of each group, in
//            increasing column order (a group with fewer than N non-zeros
//            keeps explicit zeros at unused positions);
//   indices  the position (0 .. M-1) of each kept value inside its group,
//            NmIndexBits(M) bits each (2 for M = 4, 3 for M = 8), packed
//            LSB-first into a bit stream per row; every row starts on a byte
//            boundary (row_index_bytes bytes per row).
// For 2:4 this is the information NVIDIA's sparse tensor cores (Ampere and
// later, mma.sp / cuSPARSELt) take: a [out, in/2] value matrix plus a 2-bit
// index per kept value, one byte per two groups of four. The CUDA build
// multiplies by this form directly (core/kernels/cuda/lowbit_gemm.h): on
// CUDA cores for any N:M, and for 2:4 on sparse tensor cores with
// mma.sp::ordered_metadata, whose metadata bit order these indices already
// have (no cuSPARSELt-style reordering). Not yet run on a GPU.
#ifndef SQUEEZE_CORE_PRUNE_NM_SPARSE_H_
#define SQUEEZE_CORE_PRUNE_NM_SPARSE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"
#include "core/runtime/kernel_backend.h"

namespace squeeze::core::prune {

struct NmSparseMatrix {
  int64_t out = 0;
  int64_t in = 0;
  int n = 0;  // kept per group
  int m = 0;  // group size
  int64_t row_index_bytes = 0;
  std::vector<float> values;     // [out, in / m * n]
  std::vector<uint8_t> indices;  // [out, row_index_bytes]

  int64_t kept_per_row() const { return in / m * n; }
};

// A borrowed view of a compressed matrix (the kernels' argument, so that the
// runtime multiplies straight from its initializers without a copy).
struct NmSparseView {
  int64_t out = 0, in = 0;
  int n = 0, m = 0;
  int64_t row_index_bytes = 0;
  const float* values = nullptr;
  const uint8_t* indices = nullptr;

  int64_t kept_per_row() const { return in / m * n; }
};

inline NmSparseView ViewOf(const NmSparseMatrix& w) {
  return {w.out, w.in, w.n, w.m, w.row_index_bytes, w.values.data(), w.indices.data()};
}

// Bits of one index for groups of `m`: ceil(log2(m)), at least 1.
int NmIndexBits(int m);

// INVALID_ARGUMENT unless 1 <= n < m <= 16 and m divides `in`; the message
// names `layer` and the pattern ("prune: layer fc1 has in = 10, not a
// multiple of M = 4 (2:4)").
absl::Status ValidateNmPattern(int n, int m, int64_t in, const std::string& layer);

// Whether every group of m consecutive weights in each row of the [out, in]
// row-major `dense` has at most n non-zeros (false when m does not divide in).
bool HasNmPattern(const std::vector<float>& dense, int64_t out, int64_t in, int n, int m);

// Compresses an N:M-patterned [out, in] row-major matrix. INVALID_ARGUMENT
// naming `layer` for a bad pattern (ValidateNmPattern), a size mismatch, or
// a group with more than n non-zeros (row and group given).
absl::StatusOr<NmSparseMatrix> CompressNm(const std::vector<float>& dense, int64_t out, int64_t in, int n, int m,
                                          const std::string& layer);

// The dense [out, in] row-major matrix back.
std::vector<float> DecompressNm(const NmSparseMatrix& w);

// y [rows, out] = x [rows, in] * W^T (+ bias [out] when not null), all
// row-major; the scalar reference (the oracle of the tests).
void NmSparseMatMulRef(const float* x, int64_t rows, const NmSparseView& w, const float* bias, float* y);

// The same product, faster. Batches of 4 rows or more go through x
// transposed in tiles of 16 rows, so that each kept weight scales one
// contiguous vector (two output rows at a time, accumulators in vector
// registers); fewer rows gather x per kept weight. 2:4 reads the packed
// indices directly, other patterns decode them first. Single-threaded.
// Measured in docs/benchmarks.md: ~1.8x faster than the dense Gemm at batch
// 32, ~3x slower at batch 1.
void NmSparseMatMul(const float* x, int64_t rows, const NmSparseView& w, const float* bias, float* y);

// The runtime form. A node of type kNmSparseMatMulOp (default domain: the
// Executor accepts no other) computes Y [..., out] = X [..., in] * W^T + B
// from inputs (X, values [out, in/M*N] float32, indices [out,
// row_index_bytes] uint8, optional B [out]) and int attributes n, m, in,
// out. It is NOT an ONNX operator: graphs holding it are runtime-only and
// are never exported (export the pruned graph from before the rewrite; its
// dense weights carry the same zeros).
inline constexpr char kNmSparseMatMulOp[] = "SqueezeNmSparseMatMul";

// Rewrites every Gemm (transA = 0, alpha = beta = 1) and MatMul layer of
// ptq::FindQuantizableLayers whose weight has the n:m pattern (and whose
// `in` m divides) into a kNmSparseMatMulOp node over the compressed weight;
// the dense initializer (and a Transpose feeding only that node) is
// removed. Returns the names of the rewritten layers. Conv layers and other
// weights are left alone. INVALID_ARGUMENT for a bad n:m.
absl::StatusOr<std::vector<std::string>> UseNmSparseKernels(graph::Graph* graph, int n, int m);

// A backend that runs kNmSparseMatMulOp nodes with NmSparseMatMul and hands
// every other node to `base`.
std::shared_ptr<const runtime::KernelBackend> CreateNmSparseBackend(std::shared_ptr<const runtime::KernelBackend> base);

}  // namespace squeeze::core::prune

#endif  // SQUEEZE_CORE_PRUNE_NM_SPARSE_H_
