// The CUDA implementation of runtime::KernelBackend, for the hot operators:
// MatMul and Gemm through cuBLAS, elementwise arithmetic and activations,
// Softmax/LogSoftmax and LayerNormalization as CUDA kernels, all float32.
// Every other operator the CPU backend runs is delegated to it, so any graph
// the CPU runs, this backend runs too. Tensors stay host-side between
// nodes: each CUDA node copies its inputs to the device and its outputs
// back. That keeps the interface identical to the CPU's; a device-resident
// executor is the next step once GPU machines run the parity tests.
//
// Built only when nvcc exists (see CMakeLists.txt); create it through
// runtime::CreateBackend, never directly, so that CPU-only builds keep the
// same code paths.
#ifndef SQUEEZE_CORE_KERNELS_CUDA_CUDA_BACKEND_H_
#define SQUEEZE_CORE_KERNELS_CUDA_CUDA_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "core/runtime/kernel_backend.h"

namespace squeeze::core::kernels::cuda {

// Number of CUDA devices the driver reports; 0 when there is no driver or
// no device.
int CudaDeviceCount();

// A backend on CUDA device `device`. UNAVAILABLE when the device does not
// exist or cuBLAS cannot start.
absl::StatusOr<std::shared_ptr<const runtime::KernelBackend>> CreateCudaBackend(int device);

}  // namespace squeeze::core::kernels::cuda

#endif  // SQUEEZE_CORE_KERNELS_CUDA_CUDA_BACKEND_H_
