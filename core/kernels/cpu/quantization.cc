// QuantizeLinear, DequantizeLinear and MatMulInteger with ONNX semantics:
// round half to even, saturate to the zero point's type, per-tensor or
// per-axis scales.
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/kernel_util.h"
#include "core/status_macros.h"

namespace squeeze::core::kernels::cpu {
namespace {

using runtime::KernelCall;

// For each element of x, its value of a per-tensor (one element) or per-axis
// (one element per x.shape()[axis]) parameter; 0 for an absent parameter.
absl::StatusOr<std::vector<double>> PerElement(const KernelCall& call, const Tensor& x,
                                               const Tensor* parameter) {
  std::vector<double> out(static_cast<size_t>(x.num_elements()), 0.0);
  if (parameter == nullptr) return out;
  const std::vector<double> values = parameter->ToDoubles();
  if (parameter->num_elements() == 1) {
    std::fill(out.begin(), out.end(), values[0]);
    return out;
  }
  SQ_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(call.node.IntAttribute("axis", 1), x.rank()));
  if (parameter->rank() != 1 || parameter->num_elements() != x.shape()[axis]) {
    return absl::InvalidArgumentError(absl::StrCat(
        "scale/zero point of shape ", graph::ShapeToString(parameter->shape()),
        " fits neither per-tensor nor axis ", axis, " of ", graph::ShapeToString(x.shape())));
  }
  int64_t inner = 1;
  for (int64_t d = axis + 1; d < x.rank(); ++d) inner *= x.shape()[d];
  for (size_t i = 0; i < out.size(); ++i) out[i] = values[(i / inner) % x.shape()[axis]];
  return out;
}

KernelResult QuantizeLinear(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  SQ_ASSIGN_OR_RETURN(const Tensor* scale, RequiredInput(call, 1));
  const Tensor* zero_point = call.input(2);
  const DataType out_dtype = zero_point ? zero_point->dtype() : DataType::kUInt8;
  double low, high;
  switch (out_dtype) {
    case DataType::kUInt8: low = 0; high = 255; break;
    case DataType::kInt8: low = -128; high = 127; break;
    case DataType::kInt4: low = -8; high = 7; break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "QuantizeLinear cannot produce ", graph::DataTypeName(out_dtype)));
  }
  SQ_ASSIGN_OR_RETURN(std::vector<double> scales, PerElement(call, *x, scale));
  SQ_ASSIGN_OR_RETURN(std::vector<double> zero_points, PerElement(call, *x, zero_point));
  const std::vector<double> values = x->ToDoubles();
  std::vector<double> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    // x / scale in float32 as the reference does, then round half to even.
    const float scaled = static_cast<float>(values[i]) / static_cast<float>(scales[i]);
    const double rounded = std::nearbyint(scaled) + zero_points[i];
    out[i] = std::min(high, std::max(low, rounded));
  }
  return OneOutput(graph::TensorFromDoubles(out_dtype, x->shape(), out));
}

KernelResult DequantizeLinear(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  SQ_ASSIGN_OR_RETURN(const Tensor* scale, RequiredInput(call, 1));
  const Tensor* zero_point = call.input(2);
  SQ_ASSIGN_OR_RETURN(std::vector<double> scales, PerElement(call, *x, scale));
  SQ_ASSIGN_OR_RETURN(std::vector<double> zero_points, PerElement(call, *x, zero_point));
  const std::vector<double> values = x->ToDoubles();
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    out[i] = static_cast<float>(values[i] - zero_points[i]) * static_cast<float>(scales[i]);
  }
  return OneOutput(FloatTensorAs(scale->dtype(), x->shape(), out));
}

KernelResult MatMulInteger(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* a, RequiredInput(call, 0));
  SQ_ASSIGN_OR_RETURN(const Tensor* b, RequiredInput(call, 1));
  if (a->rank() < 2 || b->rank() < 2) {
    return absl::UnimplementedError("MatMulInteger supports inputs of rank >= 2");
  }
  const int64_t rows = a->shape()[a->rank() - 2], inner = a->shape().back();
  const int64_t cols = b->shape().back();
  if (b->shape()[b->rank() - 2] != inner) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MatMulInteger shapes ", graph::ShapeToString(a->shape()), " and ",
        graph::ShapeToString(b->shape()), " do not match"));
  }
  const std::vector<int64_t> a_batch(a->shape().begin(), a->shape().end() - 2);
  const std::vector<int64_t> b_batch(b->shape().begin(), b->shape().end() - 2);
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> batch, BroadcastShapes(a_batch, b_batch));
  const std::vector<int64_t> ia = BroadcastIndex(a_batch, batch);
  const std::vector<int64_t> ib = BroadcastIndex(b_batch, batch);
  const std::vector<int64_t> av = a->ToInt64s(), bv = b->ToInt64s();
  // a's zero point is per tensor or per row, b's per tensor or per column.
  std::vector<int64_t> a_zero(rows, 0), b_zero(cols, 0);
  if (const Tensor* zp = call.input(2)) {
    const std::vector<int64_t> values = zp->ToInt64s();
    for (int64_t r = 0; r < rows; ++r) a_zero[r] = values[values.size() == 1 ? 0 : r % values.size()];
  }
  if (const Tensor* zp = call.input(3)) {
    const std::vector<int64_t> values = zp->ToInt64s();
    for (int64_t c = 0; c < cols; ++c) b_zero[c] = values[values.size() == 1 ? 0 : c % values.size()];
  }
  std::vector<int32_t> out(ia.size() * rows * cols, 0);
  for (size_t i = 0; i < ia.size(); ++i) {
    const int64_t* ap = av.data() + ia[i] * rows * inner;
    const int64_t* bp = bv.data() + ib[i] * inner * cols;
    int32_t* op = out.data() + i * rows * cols;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = 0; k < inner; ++k) {
        const int64_t left = ap[r * inner + k] - a_zero[r];
        for (int64_t c = 0; c < cols; ++c) {
          op[r * cols + c] += static_cast<int32_t>(left * (bp[k * cols + c] - b_zero[c]));
        }
      }
    }
  }
  std::vector<int64_t> shape = batch;
  shape.push_back(rows);
  shape.push_back(cols);
  return OneOutput(Tensor::FromVector(DataType::kInt32, shape, out));
}

}  // namespace

void RegisterQuantizationKernels(KernelRegistry* registry) {
  (*registry)["QuantizeLinear"] = [](const KernelCall& c, int) { return QuantizeLinear(c); };
  (*registry)["DequantizeLinear"] = [](const KernelCall& c, int) { return DequantizeLinear(c); };
  (*registry)["MatMulInteger"] = [](const KernelCall& c, int) { return MatMulInteger(c); };
}

}  // namespace squeeze::core::kernels::cpu
