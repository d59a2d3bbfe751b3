// Internal to the CPU kernels: the kernel function type, the registry each
// kernel file fills, and the helpers the kernels share (axis handling,
// broadcasting, parallel loops).
#ifndef SQUEEZE_CORE_KERNELS_CPU_KERNEL_UTIL_H_
#define SQUEEZE_CORE_KERNELS_CPU_KERNEL_UTIL_H_

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/tensor.h"
#include "core/runtime/kernel_backend.h"

namespace squeeze::core::kernels::cpu {

using graph::DataType;
using graph::Tensor;
using KernelResult = absl::StatusOr<std::vector<Tensor>>;
// `num_threads` is the backend's thread budget for this call.
using CpuKernel = std::function<KernelResult(const runtime::KernelCall&, int num_threads)>;
using KernelRegistry = std::map<std::string, CpuKernel, std::less<>>;

void RegisterElementwiseKernels(KernelRegistry* registry);
void RegisterNeuralNetKernels(KernelRegistry* registry);
void RegisterTensorKernels(KernelRegistry* registry);
void RegisterQuantizationKernels(KernelRegistry* registry);

// A kernel's one output, moved into the result (std::vector<Tensor>{t}
// copies t's elements, since an initializer list holds const elements).
inline std::vector<Tensor> OneOutput(Tensor tensor) {
  std::vector<Tensor> outputs;
  outputs.push_back(std::move(tensor));
  return outputs;
}

// INVALID_ARGUMENT unless input `index` is present.
absl::StatusOr<const Tensor*> RequiredInput(const runtime::KernelCall& call,
                                            size_t index);

// `axis` in [-rank, rank) mapped to [0, rank); INVALID_ARGUMENT otherwise.
absl::StatusOr<int64_t> NormalizeAxis(int64_t axis, int64_t rank);

// Largest tensor a kernel creates from a shape that comes from data
// (ConstantOfShape, Expand, Pad, Resize): 16 GiB.
inline constexpr int64_t kMaxDataShapedBytes = int64_t{1} << 34;

// RESOURCE_EXHAUSTED naming the shape when a `dtype` tensor of `shape` would
// exceed kMaxDataShapedBytes; INVALID_ARGUMENT for a malformed shape.
absl::Status CheckDataShapedSize(DataType dtype, const std::vector<int64_t>& shape);

// The ONNX (numpy) broadcast of two shapes; INVALID_ARGUMENT naming both
// when they are incompatible.
absl::StatusOr<std::vector<int64_t>> BroadcastShapes(
    const std::vector<int64_t>& a, const std::vector<int64_t>& b);

// For each element of a tensor of shape `out_shape`, the flat index of the
// element of a tensor of shape `in_shape` that broadcasts onto it.
// Precondition: in_shape broadcasts to out_shape.
std::vector<int64_t> BroadcastIndex(const std::vector<int64_t>& in_shape,
                                    const std::vector<int64_t>& out_shape);

// Row-major strides of `shape`.
std::vector<int64_t> Strides(const std::vector<int64_t>& shape);

// The element strides of a row-major `in_shape` tensor read as `out_shape`
// under ONNX broadcasting: one per output dim, 0 where the input broadcasts.
// Precondition: in_shape broadcasts to out_shape.
std::vector<int64_t> BroadcastStrides(const std::vector<int64_t>& in_shape,
                                      const std::vector<int64_t>& out_shape);

// A row-major walk over an output box in which each of N operands is read
// at sum(index[d] * strides[d]): dims of size 1 dropped and neighbours
// merged wherever every operand (and the output) steps evenly across them,
// so that the innermost dim, the run, is as long as it can be. Never empty:
// a scalar box is one run of one element.
template <size_t N>
struct StridedWalk {
  std::vector<int64_t> shape;
  std::array<std::vector<int64_t>, N> strides;
};

template <size_t N>
StridedWalk<N> CoalesceWalk(const std::vector<int64_t>& out_shape,
                            const std::array<std::vector<int64_t>, N>& strides) {
  StridedWalk<N> walk;
  for (size_t d = 0; d < out_shape.size(); ++d) {
    if (out_shape[d] == 1) continue;
    bool merge = !walk.shape.empty();
    for (size_t k = 0; k < N && merge; ++k) {
      merge = walk.strides[k].back() == strides[k][d] * out_shape[d];
    }
    if (merge) {
      walk.shape.back() *= out_shape[d];
      for (size_t k = 0; k < N; ++k) walk.strides[k].back() = strides[k][d];
      continue;
    }
    walk.shape.push_back(out_shape[d]);
    for (size_t k = 0; k < N; ++k) walk.strides[k].push_back(strides[k][d]);
  }
  if (walk.shape.empty()) {
    walk.shape.push_back(1);
    for (size_t k = 0; k < N; ++k) walk.strides[k].push_back(0);
  }
  return walk;
}

// Calls run(offsets, count) for each innermost run of `walk` in row-major
// order: offsets[k] is operand k's offset of the run's first element, and
// the run's elements follow at walk.strides[k].back(). (Pass the output's
// row-major Strides as an operand to get its offsets.) Nothing when the box
// is empty.
template <size_t N, typename Fn>
void ForEachRun(const StridedWalk<N>& walk, Fn run) {
  const size_t outer = walk.shape.size() - 1;
  for (int64_t dim : walk.shape) {
    if (dim == 0) return;
  }
  std::vector<int64_t> counter(outer, 0);
  std::array<int64_t, N> offsets{};
  while (true) {
    run(offsets, walk.shape.back());
    size_t d = outer;
    while (d > 0) {
      --d;
      if (++counter[d] < walk.shape[d]) {
        for (size_t k = 0; k < N; ++k) offsets[k] += walk.strides[k][d];
        break;
      }
      for (size_t k = 0; k < N; ++k) offsets[k] -= walk.strides[k][d] * (walk.shape[d] - 1);
      counter[d] = 0;
      if (d == 0) return;
    }
    if (outer == 0) return;
  }
}

// Calls body(begin, end) over disjoint ranges covering [0, n), on up to
// num_threads threads; ranges hold at least `min_per_thread` items so small
// work stays on the calling thread.
void ParallelFor(int64_t n, int64_t min_per_thread, int num_threads,
                 const std::function<void(int64_t, int64_t)>& body);

// A tensor of `dtype` (a float type) holding float32 `values`.
Tensor FloatTensorAs(DataType dtype, std::vector<int64_t> shape,
                     const std::vector<float>& values);

// The elements of a float tensor as float32 without a copy when it already is
// float32 (then valid while the tensor lives), converted into owned storage
// otherwise.
class FloatInput {
 public:
  explicit FloatInput(const Tensor& tensor);
  FloatInput(const FloatInput&) = delete;
  FloatInput& operator=(const FloatInput&) = delete;
  const float* data() const { return data_; }

 private:
  std::vector<float> converted_;
  const float* data_;
};

// Where a float kernel writes its result: straight into the result tensor
// when `dtype` is float32, into float32 scratch converted to `dtype` by
// Finish() otherwise (float16, bfloat16, float64 are computed in float32).
class FloatOutput {
 public:
  FloatOutput(DataType dtype, std::vector<int64_t> shape);
  float* data() { return data_; }
  // The result; call once, after the last write through data().
  Tensor Finish();

 private:
  DataType dtype_;
  std::vector<int64_t> shape_;
  Tensor tensor_;  // the float32 result
  std::vector<float> scratch_;
  float* data_;
};

// INVALID_ARGUMENT naming the node unless `tensor` has a float dtype.
absl::Status RequireFloat(const runtime::KernelCall& call, const Tensor& tensor);

}  // namespace squeeze::core::kernels::cpu

#endif  // SQUEEZE_CORE_KERNELS_CPU_KERNEL_UTIL_H_
