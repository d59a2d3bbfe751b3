#include "core/kernels/cuda/lowbit_gemm.h"

#include <cuda_runtime.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "core/kernels/cuda/cuda_backend.h"
#include "core/kernels/cuda/device_buffer.h"
#include "core/kernels/cuda/lowbit_kernels.h"
#include "core/quant/gemm/int4_gemm.h"
#include "core/quant/gemm/int8_gemm.h"
#include "core/quant/packed_formats.h"
#include "core/status_macros.h"

namespace squeeze::core::kernels::cuda {
namespace {

// An operand or output of one call: a device copy, or the host memory itself
// when the kernels are emulated on the host.
class Operand {
 public:
  explicit Operand(Target target) : target_(target) {}

  absl::Status In(const void* host, size_t bytes) {
    if (target_ == Target::kHostEmulation) {
      data_ = const_cast<void*>(host);
      return absl::OkStatus();
    }
    SQ_RETURN_IF_ERROR(buffer_.Upload(host, bytes));
    data_ = buffer_.get<void>();
    return absl::OkStatus();
  }
  template <typename T>
  absl::Status In(const std::vector<T>& v) {
    return In(v.data(), v.size() * sizeof(T));
  }
  absl::Status Out(void* host, size_t bytes) {
    host_ = host;
    if (target_ == Target::kHostEmulation) {
      data_ = host;
      return absl::OkStatus();
    }
    SQ_RETURN_IF_ERROR(buffer_.Allocate(bytes));
    data_ = buffer_.get<void>();
    return absl::OkStatus();
  }
  // Checks the launch, waits for the kernel (so that execution errors are
  // reported here) and copies this output back.
  absl::Status Finish(cudaError_t launch) {
    SQ_CUDA_RETURN_IF_ERROR(launch);
    if (target_ == Target::kHostEmulation) return absl::OkStatus();
    SQ_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    return buffer_.Download(host_);
  }
  template <typename T>
  T* get() const {
    return static_cast<T*>(data_);
  }

 private:
  const Target target_;
  DeviceBuffer buffer_;
  void* data_ = nullptr;
  void* host_ = nullptr;
};

absl::Status RequireDevice(Target target, absl::string_view what) {
  if (target == Target::kDevice && CudaDeviceCount() == 0) {
    return absl::UnavailableError(absl::StrCat(what, ": no CUDA device"));
  }
  return absl::OkStatus();
}


absl::Status CheckNmView(int64_t rows, const prune::NmSparseView& w) {
  SQ_RETURN_IF_ERROR(prune::ValidateNmPattern(w.n, w.m, w.in, "cuda"));
  const int64_t index_bytes = (w.kept_per_row() * prune::NmIndexBits(w.m) + 7) / 8;
  if (rows < 1 || w.out < 1 || w.in < 1 || w.row_index_bytes != index_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cuda nm sparse: rows, out and in must be >= 1 with ", index_bytes, " index bytes per row for ",
        w.n, ":", w.m, ", got rows ", rows, ", out ", w.out, ", in ", w.in, ", ", w.row_index_bytes,
        " index bytes"));
  }
  return absl::OkStatus();
}

// Uploads a checked N:M operand set and runs the CUDA-core or the 2:4
// tensor-core kernel.
absl::Status RunNm(const float* x, int64_t rows, const prune::NmSparseView& w, const float* bias, float* y,
                   Target target, bool tensor_cores) {
  SQ_RETURN_IF_ERROR(RequireDevice(target, "cuda nm sparse"));
  Operand dx(target), dvalues(target), dindices(target), dbias(target), dy(target);
  SQ_RETURN_IF_ERROR(dx.In(x, static_cast<size_t>(rows * w.in) * sizeof(float)));
  SQ_RETURN_IF_ERROR(dvalues.In(w.values, static_cast<size_t>(w.out * w.kept_per_row()) * sizeof(float)));
  SQ_RETURN_IF_ERROR(dindices.In(w.indices, static_cast<size_t>(w.out * w.row_index_bytes)));
  if (bias != nullptr) SQ_RETURN_IF_ERROR(dbias.In(bias, static_cast<size_t>(w.out) * sizeof(float)));
  SQ_RETURN_IF_ERROR(dy.Out(y, static_cast<size_t>(rows * w.out) * sizeof(float)));
  DeviceNmWeights dw;
  dw.out = w.out;
  dw.in = w.in;
  dw.n = w.n;
  dw.m = w.m;
  dw.index_bits = prune::NmIndexBits(w.m);
  dw.row_index_bytes = w.row_index_bytes;
  dw.values = dvalues.get<float>();
  dw.indices = dindices.get<uint8_t>();
  dw.bias = dbias.get<float>();
  return dy.Finish(tensor_cores ? LaunchNmSparseGemmTensorCores(dx.get<float>(), rows, dw, dy.get<float>(), target)
                                : LaunchNmSparseGemm(dx.get<float>(), rows, dw, dy.get<float>(), target));
}

}  // namespace

absl::Status CudaInt8MatMulInt32(const uint8_t* xq, const int8_t* wq, int64_t m, int64_t n,
                                 int64_t k, int32_t* acc, Target target) {
  if (m < 1 || n < 1 || k < 1 || k > quant::gemm::kMaxInt8GemmDepth) {
    return absl::InvalidArgumentError(absl::StrCat("cuda int8 gemm: sizes must be >= 1 with k <= ",
                                                   quant::gemm::kMaxInt8GemmDepth, ", got m ", m,
                                                   ", n ", n, ", k ", k));
  }
  SQ_RETURN_IF_ERROR(RequireDevice(target, "cuda int8 gemm"));
  Operand dx(target), dw(target), dacc(target);
  SQ_RETURN_IF_ERROR(dx.In(xq, static_cast<size_t>(m * k)));
  SQ_RETURN_IF_ERROR(dw.In(wq, static_cast<size_t>(n * k)));
  SQ_RETURN_IF_ERROR(dacc.Out(acc, static_cast<size_t>(m * n) * sizeof(int32_t)));
  return dacc.Finish(
      LaunchInt8MatMulInt32(dx.get<uint8_t>(), dw.get<int8_t>(), m, n, k, dacc.get<int32_t>(), target));
}

absl::Status CudaNibbleGemm(const float* x, int64_t m, const quant::QuantizedLinear& layer,
                            float* y, Target target) {
  SQ_RETURN_IF_ERROR(quant::gemm::CheckInt4Layer(m, quant::gemm::Int4WeightsView::Of(layer)));
  SQ_RETURN_IF_ERROR(RequireDevice(target, "cuda nibble gemm"));
  Operand dx(target), dpacked(target), dscales(target), dzeros(target), dbias(target), dy(target);
  SQ_RETURN_IF_ERROR(dx.In(x, static_cast<size_t>(m * layer.in) * sizeof(float)));
  SQ_RETURN_IF_ERROR(dpacked.In(layer.packed.data(), layer.packed.size()));
  SQ_RETURN_IF_ERROR(dscales.In(layer.scales));
  SQ_RETURN_IF_ERROR(dzeros.In(layer.zero_points));
  SQ_RETURN_IF_ERROR(dbias.In(layer.bias));
  SQ_RETURN_IF_ERROR(dy.Out(y, static_cast<size_t>(m * layer.out) * sizeof(float)));
  DeviceNibbleWeights w;
  w.out = layer.out;
  w.in = layer.in;
  w.groups = layer.Groups();
  w.group_width = layer.in / w.groups;
  w.asymmetric = layer.asymmetric;
  w.packed = dpacked.get<uint8_t>();
  w.scales = dscales.get<float>();
  w.zero_points = layer.asymmetric ? dzeros.get<uint8_t>() : nullptr;
  w.bias = layer.bias.empty() ? nullptr : dbias.get<float>();
  return dy.Finish(LaunchNibbleGemm(dx.get<float>(), m, w, dy.get<float>(), target));
}

absl::Status CudaLutGemm(const float* x, int64_t m, const quant::gemm::CodebookLinear& layer,
                         float* y, Target target) {
  SQ_RETURN_IF_ERROR(layer.Validate());
  if (m < 1) {
    return absl::InvalidArgumentError(absl::StrCat("cuda lut gemm: activation rows must be >= 1, got ",
                                                   m, " (layer ", layer.name, ")"));
  }
  SQ_RETURN_IF_ERROR(RequireDevice(target, "cuda lut gemm"));
  Operand dx(target), dpacked(target), dcodebook(target), dbias(target), dy(target);
  SQ_RETURN_IF_ERROR(dx.In(x, static_cast<size_t>(m * layer.in) * sizeof(float)));
  SQ_RETURN_IF_ERROR(dpacked.In(layer.packed.data(), layer.packed.size()));
  SQ_RETURN_IF_ERROR(dcodebook.In(layer.codebook));
  SQ_RETURN_IF_ERROR(dbias.In(layer.bias));
  SQ_RETURN_IF_ERROR(dy.Out(y, static_cast<size_t>(m * layer.out) * sizeof(float)));
  DeviceCodebookWeights w;
  w.out = layer.out;
  w.in = layer.in;
  w.bits = layer.bits;
  w.per_row_codebook = layer.per_row_codebook;
  w.packed = dpacked.get<uint8_t>();
  w.codebook = dcodebook.get<float>();
  w.bias = layer.bias.empty() ? nullptr : dbias.get<float>();
  return dy.Finish(LaunchLutGemm(dx.get<float>(), m, w, dy.get<float>(), target));
}

absl::Status CudaNmSparseMatMul(const float* x, int64_t rows, const prune::NmSparseView& w,
                                const float* bias, float* y, Target target) {
  SQ_RETURN_IF_ERROR(CheckNmView(rows, w));
  return RunNm(x, rows, w, bias, y, target, /*tensor_cores=*/false);
}

absl::Status CudaNmSparseMatMulTensorCores(const float* x, int64_t rows, const prune::NmSparseView& w,
                                           const float* bias, float* y, Target target) {
  SQ_RETURN_IF_ERROR(CheckNmView(rows, w));
  if (w.n != 2 || w.m != 4 || w.in % 32 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("cuda 2:4 tensor cores: need 2:4 and in % 32 == 0, got ", w.n,
                                                   ":", w.m, " and in = ", w.in));
  }
  // mma.sp::ordered_metadata: the two kept positions of a group increase.
  for (int64_t o = 0; o < w.out; ++o) {
    for (int64_t b = 0; b < w.row_index_bytes; ++b) {
      const unsigned byte = w.indices[o * w.row_index_bytes + b];
      for (int group = 0; group < 2; ++group) {
        const unsigned first = (byte >> (4 * group)) & 3, second = (byte >> (4 * group + 2)) & 3;
        if (first >= second) {
          return absl::InvalidArgumentError(absl::StrCat("cuda 2:4 tensor cores: row ", o, " group ",
                                                         2 * b + group, " keeps positions ", first, " and ", second,
                                                         ", not increasing"));
        }
      }
    }
  }
  if (target == Target::kDevice) {
    SQ_RETURN_IF_ERROR(RequireDevice(target, "cuda 2:4 tensor cores"));
    int device = 0, major = 0, minor = 0;
    SQ_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
    SQ_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    SQ_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    if (major < 8) {
      return absl::UnavailableError(absl::StrCat("cuda 2:4 tensor cores: need compute capability 8.0 or more, device ",
                                                 device, " has ", major, ".", minor));
    }
  }
  return RunNm(x, rows, w, bias, y, target, /*tensor_cores=*/true);
}

}  // namespace squeeze::core::kernels::cuda
