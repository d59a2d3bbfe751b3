#include "core/kernels/backends.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/cpu_backend.h"
#ifdef SQUEEZE_HAVE_CUDA
#include "core/kernels/cuda/cuda_backend.h"
#endif

namespace squeeze::core::kernels {

bool BuiltWithCuda() {
#ifdef SQUEEZE_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

absl::StatusOr<std::shared_ptr<const runtime::KernelBackend>> CreateBackend(const std::string& name) {
  if (name == "cpu") return cpu::CreateCpuBackend();
  if (name.rfind("cuda", 0) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("unknown backend '", name, "'; use cpu or cuda[:N]"));
  }
  int device = 0;
  if (name.size() > 4 && (name[4] != ':' || !absl::SimpleAtoi(name.substr(5), &device))) {
    return absl::InvalidArgumentError(absl::StrCat("backend '", name, "': expected cuda or cuda:N"));
  }
#ifdef SQUEEZE_HAVE_CUDA
  return cuda::CreateCudaBackend(device);
#else
  return absl::UnavailableError("this build has no CUDA backend (nvcc was not found at configure time)");
#endif
}

}  // namespace squeeze::core::kernels
