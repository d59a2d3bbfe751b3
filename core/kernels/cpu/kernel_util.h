// Internal to the CPU kernels: the kernel function type, the registry each
// kernel file fills, and the helpers the kernels share (axis handling,
// broadcasting, parallel loops).
#ifndef SQUEEZE_CORE_KERNELS_CPU_KERNEL_UTIL_H_
#define SQUEEZE_CORE_KERNELS_CPU_KERNEL_UTIL_H_

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
