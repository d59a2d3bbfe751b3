// The one place that creates kernel backends. Code that runs graphs asks
// for a backend by name here and never checks for CUDA itself; whether the
// CUDA backend exists is decided by CMake (nvcc present at configure time).
#ifndef SQUEEZE_CORE_KERNELS_BACKENDS_H_
#define SQUEEZE_CORE_KERNELS_BACKENDS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/runtime/kernel_backend.h"

namespace squeeze::core::kernels {

// "cpu", or "cuda" / "cuda:N" for CUDA device N (default 0). UNAVAILABLE for
// CUDA in a build without it or on a machine without a device;
// INVALID_ARGUMENT for any other name.
absl::StatusOr<std::shared_ptr<const runtime::KernelBackend>> CreateBackend(const std::string& name);

// Whether this build contains the CUDA backend.
bool BuiltWithCuda();

}  // namespace squeeze::core::kernels

#endif  // SQUEEZE_CORE_KERNELS_BACKENDS_H_
