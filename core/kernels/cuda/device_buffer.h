// Host-side helpers shared by the CUDA host code (cuda_backend.cc,
// lowbit_gemm.cc): a macro that turns a CUDA runtime error into an
// absl::Status naming the call, and DeviceBuffer, one owned device
// allocation with synchronous upload and download. Not for .cu files (they
// stay free of Abseil).
#ifndef SQUEEZE_CORE_KERNELS_CUDA_DEVICE_BUFFER_H_
#define SQUEEZE_CORE_KERNELS_CUDA_DEVICE_BUFFER_H_

#include <cuda_runtime.h>

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

#define SQ_CUDA_RETURN_IF_ERROR(expr)                                               \
  do {                                                                              \
    const cudaError_t sq_cuda_error_ = (expr);                                      \
    if (sq_cuda_error_ != cudaSuccess) {                                            \
      return absl::InternalError(                                                   \
          absl::StrCat("cuda: ", #expr, ": ", cudaGetErrorString(sq_cuda_error_))); \
    }                                                                               \
  } while (0)

namespace squeeze::core::kernels::cuda {

// Owns one device allocation (freed in the destructor). Download copies the
// whole allocation back.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() {
    if (data_ != nullptr) cudaFree(data_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  absl::Status Allocate(size_t bytes) {
    SQ_CUDA_RETURN_IF_ERROR(cudaMalloc(&data_, bytes > 0 ? bytes : 1));
    bytes_ = bytes;
    return absl::OkStatus();
  }
  absl::Status Upload(const void* host, size_t bytes) {
    SQ_RETURN_IF_ERROR(Allocate(bytes));
    if (bytes > 0) SQ_CUDA_RETURN_IF_ERROR(cudaMemcpy(data_, host, bytes, cudaMemcpyHostToDevice));
    return absl::OkStatus();
  }
  absl::Status Download(void* host) const {
    if (bytes_ > 0) SQ_CUDA_RETURN_IF_ERROR(cudaMemcpy(host, data_, bytes_, cudaMemcpyDeviceToHost));
    return absl::OkStatus();
  }
  template <typename T>
  T* get() const {
    return static_cast<T*>(data_);
  }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace squeeze::core::kernels::cuda

#endif  // SQUEEZE_CORE_KERNELS_CUDA_DEVICE_BUFFER_H_
