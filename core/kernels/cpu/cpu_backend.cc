#include "core/kernels/cpu/cpu_backend.h"

#include <algorithm>
#include <thread>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/kernel_util.h"

namespace squeeze::core::kernels::cpu {
namespace {

const KernelRegistry& Registry() {
  static const KernelRegistry* registry = [] {
    auto* kernels = new KernelRegistry;
    RegisterElementwiseKernels(kernels);
    RegisterNeuralNetKernels(kernels);
    RegisterTensorKernels(kernels);
    RegisterQuantizationKernels(kernels);
    return kernels;
  }();
  return *registry;
}

class CpuBackend : public runtime::KernelBackend {
 public:
  explicit CpuBackend(int num_threads) : num_threads_(num_threads) {}

  std::string name() const override { return "cpu"; }

  bool Supports(absl::string_view op_type) const override {
    return Registry().count(std::string(op_type)) > 0;
  }

  absl::StatusOr<std::vector<Tensor>> Run(
      const runtime::KernelCall& call) const override {
    auto it = Registry().find(call.node.op_type);
    if (it == Registry().end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported operator '", call.node.op_type,
                       "' in node '", call.node.name, "'"));
    }
    return it->second(call, num_threads_);
  }

  // Conv, Gemm and MatMul apply a fused Relu to their output tile while it
  // is in cache (core/kernels/cpu/neural_net.cc).
  bool FusesActivation(const graph::Node& node, absl::string_view activation) const override {
    return activation == "Relu" &&
           (node.op_type == "Conv" || node.op_type == "Gemm" || node.op_type == "MatMul");
  }

  // Conv pools each image from cache (2-D float32; otherwise it runs the
  // MaxPool kernel on its output).
  bool FusesMaxPool(const graph::Node& node, const graph::Node& pool) const override {
    return node.op_type == "Conv" && pool.op_type == "MaxPool";
  }

 private:
  int num_threads_;
};

}  // namespace

std::shared_ptr<const runtime::KernelBackend> CreateCpuBackend(int num_threads) {
#if defined(__GLIBC__)
  // Activations of a few MiB are allocated and freed on every node. glibc
  // serves them with mmap/munmap by default, so each run page-faults its
  // tensors in again; keep blocks up to 32 MiB (the largest threshold glibc
  // accepts) in the heap and do not trim the heap until 512 MiB are free.
  static const bool tuned = [] {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    return true;
  }();
  (void)tuned;
#endif
  if (num_threads <= 0) {
    num_threads = std::max(1u, std::thread::hardware_concurrency());
  }
  return std::make_shared<CpuBackend>(num_threads);
}

std::vector<std::string> CpuSupportedOperators() {
  std::vector<std::string> names;
  for (const auto& [name, kernel] : Registry()) names.push_back(name);
  return names;
}

}  // namespace squeeze::core::kernels::cpu
