#include "core/kernels/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/kernel_util.h"
#include "core/kernels/cuda/cuda_kernels.h"
#include "core/kernels/cuda/device_buffer.h"
#include "core/status_macros.h"

#define SQ_CUBLAS_RETURN_IF_ERROR(expr)                                                       \
  do {                                                                                        \
    const cublasStatus_t sq_cublas_status_ = (expr);                                          \
    if (sq_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                                         \
      return absl::InternalError(absl::StrCat("cublas: ", #expr, ": status ",                \
                                              static_cast<int>(sq_cublas_status_)));          \
    }                                                                                         \
  } while (0)

namespace squeeze::core::kernels::cuda {
namespace {

using graph::DataType;
using graph::Tensor;
using runtime::KernelCall;

absl::Status UploadTensor(const Tensor& tensor, DeviceBuffer* buffer) {
  return buffer->Upload(tensor.raw_data(), static_cast<size_t>(tensor.byte_size()));
}

absl::Status UploadIndex(const std::vector<int64_t>& index, DeviceBuffer* buffer) {
  return buffer->Upload(index.data(), index.size() * sizeof(int64_t));
}

int64_t Product(const std::vector<int64_t>& dims, size_t begin, size_t end) {
  int64_t product = 1;
  for (size_t i = begin; i < end && i < dims.size(); ++i) product *= dims[i];
  return product;
}

const std::map<std::string, BinaryOp>& BinaryOps() {
  static const auto* ops = new std::map<std::string, BinaryOp>{
      {"Add", BinaryOp::kAdd}, {"Sub", BinaryOp::kSub}, {"Mul", BinaryOp::kMul},
      {"Div", BinaryOp::kDiv}, {"Pow", BinaryOp::kPow}};
  return *ops;
}

const std::map<std::string, UnaryOp>& UnaryOps() {
  static const auto* ops = new std::map<std::string, UnaryOp>{
      {"Relu", UnaryOp::kRelu}, {"LeakyRelu", UnaryOp::kLeakyRelu}, {"Sigmoid", UnaryOp::kSigmoid},
      {"Tanh", UnaryOp::kTanh}, {"Exp", UnaryOp::kExp},             {"Log", UnaryOp::kLog},
      {"Sqrt", UnaryOp::kSqrt}, {"Erf", UnaryOp::kErf},             {"Neg", UnaryOp::kNeg}};
  return *ops;
}

class CudaBackend final : public runtime::KernelBackend {
 public:
  CudaBackend(int device, cublasHandle_t cublas)
      : device_(device), cublas_(cublas), cpu_(cpu::CreateCpuBackend()) {}
  ~CudaBackend() override { cublasDestroy(cublas_); }

  std::string name() const override { return "cuda"; }
  bool Supports(absl::string_view op_type) const override { return cpu_->Supports(op_type); }

  absl::StatusOr<std::vector<Tensor>> Run(const KernelCall& call) const override {
    if (!RunsOnDevice(call)) return cpu_->Run(call);
    std::lock_guard<std::mutex> lock(mu_);  // One cuBLAS handle, one stream.
    SQ_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    const std::string& op = call.node.op_type;
    if (op == "MatMul") return MatMul(call);
    if (op == "Gemm") return Gemm(call);
    if (op == "Softmax" || op == "LogSoftmax") return Softmax(call, op == "LogSoftmax");
    if (op == "LayerNormalization") return LayerNorm(call);
    if (auto it = BinaryOps().find(op); it != BinaryOps().end()) return Binary(call, it->second);
    return Unary(call, UnaryOps().at(op));
  }

 private:
  // float32 inputs of a CUDA operator with the outputs it computes.
  static bool RunsOnDevice(const KernelCall& call) {
    const std::string& op = call.node.op_type;
    const bool known = op == "MatMul" || op == "Gemm" || op == "Softmax" || op == "LogSoftmax" ||
                       BinaryOps().count(op) > 0 || UnaryOps().count(op) > 0 ||
                       (op == "LayerNormalization" && call.node.outputs.size() == 1);
    if (!known) return false;
    for (const Tensor* input : call.inputs) {
      if (input != nullptr && input->dtype() != DataType::kFloat32) return false;
    }
    return call.num_inputs() > 0 && call.input(0) != nullptr;
  }

  absl::StatusOr<std::vector<Tensor>> Binary(const KernelCall& call, BinaryOp op) const {
    const Tensor& a = *call.input(0);
    const Tensor& b = *call.input(1);
    SQ_ASSIGN_OR_RETURN(std::vector<int64_t> shape, cpu::BroadcastShapes(a.shape(), b.shape()));
    Tensor y(DataType::kFloat32, shape);
    DeviceBuffer da, db, dy, a_index, b_index;
    SQ_RETURN_IF_ERROR(UploadTensor(a, &da));
    SQ_RETURN_IF_ERROR(UploadTensor(b, &db));
    SQ_RETURN_IF_ERROR(dy.Allocate(static_cast<size_t>(y.byte_size())));
    if (a.shape() != shape) SQ_RETURN_IF_ERROR(UploadIndex(cpu::BroadcastIndex(a.shape(), shape), &a_index));
    if (b.shape() != shape) SQ_RETURN_IF_ERROR(UploadIndex(cpu::BroadcastIndex(b.shape(), shape), &b_index));
    SQ_CUDA_RETURN_IF_ERROR(LaunchBinary(op, da.get<float>(), a_index.get<int64_t>(), db.get<float>(),
                                         b_index.get<int64_t>(), dy.get<float>(), y.num_elements()));
    SQ_RETURN_IF_ERROR(dy.Download(y.raw_data()));
    return std::vector<Tensor>{std::move(y)};
  }

  absl::StatusOr<std::vector<Tensor>> Unary(const KernelCall& call, UnaryOp op) const {
    const Tensor& x = *call.input(0);
    Tensor y(DataType::kFloat32, x.shape());
    DeviceBuffer dx, dy;
    SQ_RETURN_IF_ERROR(UploadTensor(x, &dx));
    SQ_RETURN_IF_ERROR(dy.Allocate(static_cast<size_t>(y.byte_size())));
    SQ_CUDA_RETURN_IF_ERROR(LaunchUnary(op, dx.get<float>(), dy.get<float>(), x.num_elements(),
                                        call.node.FloatAttribute("alpha", 0.01f)));
    SQ_RETURN_IF_ERROR(dy.Download(y.raw_data()));
    return std::vector<Tensor>{std::move(y)};
  }

  // Row-major C (m x n) = op(A) (m x k) * op(B) (k x n), as the column-major
  // product C^T = op(B)^T op(A)^T that cuBLAS computes.
  absl::Status RowMajorGemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                            const float* a, const float* b, float beta, float* c) const {
    const int lda = static_cast<int>(trans_a ? m : k);
    const int ldb = static_cast<int>(trans_b ? k : n);
    SQ_CUBLAS_RETURN_IF_ERROR(cublasSgemm(cublas_, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                          trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(n),
                                          static_cast<int>(m), static_cast<int>(k), &alpha, b, ldb,
                                          a, lda, &beta, c, static_cast<int>(n)));
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<Tensor>> MatMul(const KernelCall& call) const {
    const Tensor& a = *call.input(0);
    const Tensor& b = *call.input(1);
    std::vector<int64_t> as = a.shape(), bs = b.shape();
    if (as.empty() || bs.empty()) return cpu_->Run(call);
    const bool a_vector = as.size() == 1, b_vector = bs.size() == 1;
    if (a_vector) as.insert(as.begin(), 1);
    if (b_vector) bs.push_back(1);
    const int64_t m = as[as.size() - 2], k = as.back(), n = bs.back();
    if (bs[bs.size() - 2] != k) {
      return absl::InvalidArgumentError(absl::StrCat("MatMul: inner dimensions ", k, " and ",
                                                     bs[bs.size() - 2], " differ"));
    }
    std::vector<int64_t> a_batch(as.begin(), as.end() - 2), b_batch(bs.begin(), bs.end() - 2);
    SQ_ASSIGN_OR_RETURN(std::vector<int64_t> batch, cpu::BroadcastShapes(a_batch, b_batch));
    const std::vector<int64_t> a_of = cpu::BroadcastIndex(a_batch, batch);
    const std::vector<int64_t> b_of = cpu::BroadcastIndex(b_batch, batch);
    std::vector<int64_t> shape = batch;
    if (!a_vector) shape.push_back(m);
    if (!b_vector) shape.push_back(n);
    Tensor y(DataType::kFloat32, shape);
    DeviceBuffer da, db, dy;
    SQ_RETURN_IF_ERROR(UploadTensor(a, &da));
    SQ_RETURN_IF_ERROR(UploadTensor(b, &db));
    SQ_RETURN_IF_ERROR(dy.Allocate(static_cast<size_t>(y.byte_size())));
    for (size_t i = 0; i < a_of.size(); ++i) {
      SQ_RETURN_IF_ERROR(RowMajorGemm(false, false, m, n, k, 1.0f, da.get<float>() + a_of[i] * m * k,
                                      db.get<float>() + b_of[i] * k * n, 0.0f,
                                      dy.get<float>() + static_cast<int64_t>(i) * m * n));
    }
    SQ_RETURN_IF_ERROR(dy.Download(y.raw_data()));
    return std::vector<Tensor>{std::move(y)};
  }

  absl::StatusOr<std::vector<Tensor>> Gemm(const KernelCall& call) const {
    const Tensor& a = *call.input(0);
    const Tensor& b = *call.input(1);
    if (a.rank() != 2 || b.rank() != 2) return absl::InvalidArgumentError("Gemm: A and B must be 2-D");
    const bool trans_a = call.node.IntAttribute("transA", 0) != 0;
    const bool trans_b = call.node.IntAttribute("transB", 0) != 0;
    const int64_t m = trans_a ? a.shape()[1] : a.shape()[0];
    const int64_t k = trans_a ? a.shape()[0] : a.shape()[1];
    const int64_t n = trans_b ? b.shape()[0] : b.shape()[1];
    if ((trans_b ? b.shape()[1] : b.shape()[0]) != k) {
      return absl::InvalidArgumentError("Gemm: inner dimensions of A and B differ");
    }
    Tensor y(DataType::kFloat32, {m, n});
    DeviceBuffer da, db, dy;
    SQ_RETURN_IF_ERROR(UploadTensor(a, &da));
    SQ_RETURN_IF_ERROR(UploadTensor(b, &db));
    SQ_RETURN_IF_ERROR(dy.Allocate(static_cast<size_t>(y.byte_size())));
    float beta = 0.0f;
    const Tensor* c = call.input(2);
    DeviceBuffer dc, c_index;
    if (c != nullptr) {
      // Broadcast C into Y first, then let cuBLAS accumulate beta * Y.
      SQ_RETURN_IF_ERROR(UploadTensor(*c, &dc));
      SQ_RETURN_IF_ERROR(UploadIndex(cpu::BroadcastIndex(c->shape(), {m, n}), &c_index));
      SQ_CUDA_RETURN_IF_ERROR(LaunchGather(dc.get<float>(), c_index.get<int64_t>(), dy.get<float>(), m * n, 1.0f));
      beta = call.node.FloatAttribute("beta", 1.0f);
    }
    SQ_RETURN_IF_ERROR(RowMajorGemm(trans_a, trans_b, m, n, k, call.node.FloatAttribute("alpha", 1.0f),
                                    da.get<float>(), db.get<float>(), beta, dy.get<float>()));
    SQ_RETURN_IF_ERROR(dy.Download(y.raw_data()));
    return std::vector<Tensor>{std::move(y)};
  }

  absl::StatusOr<std::vector<Tensor>> Softmax(const KernelCall& call, bool log) const {
    const Tensor& x = *call.input(0);
    const bool modern = call.opset_version >= 13;
    SQ_ASSIGN_OR_RETURN(int64_t axis, cpu::NormalizeAxis(call.node.IntAttribute("axis", modern ? -1 : 1), x.rank()));
    const int64_t outer = Product(x.shape(), 0, axis);
    const int64_t length = modern ? x.shape()[axis] : Product(x.shape(), axis, x.shape().size());
    const int64_t inner = modern ? Product(x.shape(), axis + 1, x.shape().size()) : 1;
    Tensor y(DataType::kFloat32, x.shape());
    DeviceBuffer dx, dy;
    SQ_RETURN_IF_ERROR(UploadTensor(x, &dx));
    SQ_RETURN_IF_ERROR(dy.Allocate(static_cast<size_t>(y.byte_size())));
    SQ_CUDA_RETURN_IF_ERROR(LaunchSoftmax(dx.get<float>(), dy.get<float>(), outer, length, inner, log));
    SQ_RETURN_IF_ERROR(dy.Download(y.raw_data()));
    return std::vector<Tensor>{std::move(y)};
  }

  absl::StatusOr<std::vector<Tensor>> LayerNorm(const KernelCall& call) const {
    const Tensor& x = *call.input(0);
    SQ_ASSIGN_OR_RETURN(int64_t axis, cpu::NormalizeAxis(call.node.IntAttribute("axis", -1), x.rank()));
    const int64_t rows = Product(x.shape(), 0, axis);
    const int64_t cols = Product(x.shape(), axis, x.shape().size());
    const std::vector<int64_t> normalized(x.shape().begin() + axis, x.shape().end());
    if (call.input(1) == nullptr) return absl::InvalidArgumentError("LayerNormalization: Scale is required");
    Tensor y(DataType::kFloat32, x.shape());
    DeviceBuffer dx, dscale, dbias, dy, scale_full, bias_full, index;
    SQ_RETURN_IF_ERROR(UploadTensor(x, &dx));
    SQ_RETURN_IF_ERROR(dy.Allocate(static_cast<size_t>(y.byte_size())));
    // Scale and bias broadcast onto the normalised shape, materialised.
    SQ_RETURN_IF_ERROR(UploadTensor(*call.input(1), &dscale));
    SQ_RETURN_IF_ERROR(UploadIndex(cpu::BroadcastIndex(call.input(1)->shape(), normalized), &index));
    SQ_RETURN_IF_ERROR(scale_full.Allocate(cols * sizeof(float)));
    SQ_CUDA_RETURN_IF_ERROR(LaunchGather(dscale.get<float>(), index.get<int64_t>(), scale_full.get<float>(), cols, 1.0f));
    const float* bias = nullptr;
    DeviceBuffer bias_index;
    if (call.input(2) != nullptr) {
      SQ_RETURN_IF_ERROR(UploadTensor(*call.input(2), &dbias));
      SQ_RETURN_IF_ERROR(UploadIndex(cpu::BroadcastIndex(call.input(2)->shape(), normalized), &bias_index));
      SQ_RETURN_IF_ERROR(bias_full.Allocate(cols * sizeof(float)));
      SQ_CUDA_RETURN_IF_ERROR(LaunchGather(dbias.get<float>(), bias_index.get<int64_t>(), bias_full.get<float>(), cols, 1.0f));
      bias = bias_full.get<float>();
    }
    SQ_CUDA_RETURN_IF_ERROR(LaunchLayerNorm(dx.get<float>(), scale_full.get<float>(), bias, dy.get<float>(),
                                            rows, cols, call.node.FloatAttribute("epsilon", 1e-5f)));
    SQ_RETURN_IF_ERROR(dy.Download(y.raw_data()));
    return std::vector<Tensor>{std::move(y)};
  }

  const int device_;
  const cublasHandle_t cublas_;
  const std::shared_ptr<const runtime::KernelBackend> cpu_;
  mutable std::mutex mu_;
};

}  // namespace

int CudaDeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) return 0;
  return count;
}

absl::StatusOr<std::shared_ptr<const runtime::KernelBackend>> CreateCudaBackend(int device) {
  const int count = CudaDeviceCount();
  if (device < 0 || device >= count) {
    return absl::UnavailableError(absl::StrCat("cuda: device ", device, " requested, ", count,
                                               " present"));
  }
  if (cudaSetDevice(device) != cudaSuccess) {
    return absl::UnavailableError(absl::StrCat("cuda: cannot use device ", device));
  }
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    return absl::UnavailableError("cuda: cublasCreate failed");
  }
  return std::shared_ptr<const runtime::KernelBackend>(new CudaBackend(device, handle));
}

}  // namespace squeeze::core::kernels::cuda
