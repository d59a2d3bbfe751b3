// Where the low-bit kernels run (lowbit_kernels.h, lowbit_gemm.h): on the
// current CUDA device, or emulated on the host for tests on machines
// without a GPU. Plain C++ so that both nvcc and host-only code include it.
#ifndef SQUEEZE_CORE_KERNELS_CUDA_TARGET_H_
#define SQUEEZE_CORE_KERNELS_CUDA_TARGET_H_

namespace squeeze::core::kernels::cuda {

enum class Target { kDevice, kHostEmulation };

}  // namespace squeeze::core::kernels::cuda

#endif  // SQUEEZE_CORE_KERNELS_CUDA_TARGET_H_
