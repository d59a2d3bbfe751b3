// Elementwise operators with ONNX broadcasting, plus the value-producing
// operators (Constant, ConstantOfShape, Shape, Cast, Identity). float32 runs
// in float; every other dtype is computed in double and converted back, which
// is exact for every integer below 2^53.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/kernel_util.h"
#include "core/kernels/cpu/vector_math.h"
#include "core/status_macros.h"

namespace squeeze::core::kernels::cpu {
namespace {

using runtime::KernelCall;

// out[i] = fn(a[ia[i]], b[ib[i]]) computed in Compute (float or double).
template <typename Compute, typename Fn>
std::vector<Compute> BroadcastApply(const std::vector<Compute>& a,
                                    const std::vector<int64_t>& a_shape,
                                    const std::vector<Compute>& b,
                                    const std::vector<int64_t>& b_shape,
                                    const std::vector<int64_t>& out_shape,
                                    Fn fn) {
  int64_t count = 1;
  for (int64_t dim : out_shape) count *= dim;
  std::vector<Compute> out(static_cast<size_t>(count));
  if (a_shape == out_shape && b_shape == out_shape) {
    for (int64_t i = 0; i < count; ++i) out[i] = fn(a[i], b[i]);
  } else if (a_shape == out_shape && b.size() == 1) {
    for (int64_t i = 0; i < count; ++i) out[i] = fn(a[i], b[0]);
  } else {
    const std::vector<int64_t> ia = BroadcastIndex(a_shape, out_shape);
    const std::vector<int64_t> ib = BroadcastIndex(b_shape, out_shape);
    for (int64_t i = 0; i < count; ++i) out[i] = fn(a[ia[i]], b[ib[i]]);
  }
  return out;
}

// A binary operator; `fn` is a generic lambda called with float or double.
// The result has dtype `result_dtype`, or a's dtype when that is nullopt.
template <typename Fn>
KernelResult Binary(const KernelCall& call, Fn fn,
                    std::optional<DataType> result_dtype = std::nullopt) {
  SQ_ASSIGN_OR_RETURN(const Tensor* a, RequiredInput(call, 0));
  SQ_ASSIGN_OR_RETURN(const Tensor* b, RequiredInput(call, 1));
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> shape,
                      BroadcastShapes(a->shape(), b->shape()));
  const DataType out_dtype = result_dtype.value_or(a->dtype());
  if (a->dtype() == DataType::kFloat32 && b->dtype() == DataType::kFloat32 &&
      out_dtype == DataType::kFloat32) {
    // Same shape or a scalar operand: straight loops the compiler vectorizes.
    Tensor out(DataType::kFloat32, shape);
    const float* x = a->data<float>();
    const float* y = b->data<float>();
    float* dst = out.data<float>();
    const int64_t count = out.num_elements();
    auto apply = [&](float u, float v) { return static_cast<float>(fn(u, v)); };
    if (a->shape() == shape && b->shape() == shape) {
      for (int64_t i = 0; i < count; ++i) dst[i] = apply(x[i], y[i]);
    } else if (a->shape() == shape && b->num_elements() == 1) {
      const float v = y[0];
      for (int64_t i = 0; i < count; ++i) dst[i] = apply(x[i], v);
    } else if (b->shape() == shape && a->num_elements() == 1) {
      const float u = x[0];
      for (int64_t i = 0; i < count; ++i) dst[i] = apply(u, y[i]);
    } else {
      // Broadcasting: runs along the merged innermost dim, where each
      // operand steps by 1 or stays put (0), so the common cases vectorize.
      const StridedWalk<3> walk = CoalesceWalk<3>(
          shape, {Strides(shape), BroadcastStrides(a->shape(), shape),
                  BroadcastStrides(b->shape(), shape)});
      const int64_t sa = walk.strides[1].back(), sb = walk.strides[2].back();
      ForEachRun(walk, [&](const std::array<int64_t, 3>& at, int64_t n) {
        float* d = dst + at[0];
        const float* u = x + at[1];
        const float* v = y + at[2];
        if (sa == 1 && sb == 1) {
          for (int64_t i = 0; i < n; ++i) d[i] = apply(u[i], v[i]);
        } else if (sa == 1 && sb == 0) {
          const float v0 = v[0];
          for (int64_t i = 0; i < n; ++i) d[i] = apply(u[i], v0);
        } else if (sa == 0 && sb == 1) {
          const float u0 = u[0];
          for (int64_t i = 0; i < n; ++i) d[i] = apply(u0, v[i]);
        } else {
          for (int64_t i = 0; i < n; ++i) d[i] = apply(u[i * sa], v[i * sb]);
        }
      });
    }
    return OneOutput(std::move(out));
  }
  if (a->dtype() == DataType::kFloat32 && b->dtype() == DataType::kFloat32) {
    std::vector<float> out = BroadcastApply<float>(
        a->ToFloats(), a->shape(), b->ToFloats(), b->shape(), shape,
        [&](float x, float y) { return static_cast<float>(fn(x, y)); });
    return std::vector<Tensor>{graph::TensorFromDoubles(
        out_dtype, shape, std::vector<double>(out.begin(), out.end()))};
  }
  std::vector<double> out = BroadcastApply<double>(
      a->ToDoubles(), a->shape(), b->ToDoubles(), b->shape(), shape,
      [&](double x, double y) { return static_cast<double>(fn(x, y)); });
  return OneOutput(graph::TensorFromDoubles(out_dtype, shape, out));
}

// A unary operator; `fn` is a generic lambda called with float or double.
template <typename Fn>
KernelResult Unary(const KernelCall& call, Fn fn) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  if (x->dtype() == DataType::kFloat32) {
    Tensor out(DataType::kFloat32, x->shape());
    const float* in = x->data<float>();
    float* dst = out.data<float>();
    for (int64_t i = 0; i < x->num_elements(); ++i) dst[i] = fn(in[i]);
    return OneOutput(std::move(out));
  }
  std::vector<double> values = x->ToDoubles();
  for (double& value : values) value = fn(value);
  return OneOutput(graph::TensorFromDoubles(x->dtype(), x->shape(), values));
}

template <typename T>
T SigmoidOf(T x) {
  return x >= 0 ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x));
}

KernelResult Where(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* condition, RequiredInput(call, 0));
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 1));
  SQ_ASSIGN_OR_RETURN(const Tensor* y, RequiredInput(call, 2));
  if (condition->dtype() != DataType::kBool || x->dtype() != y->dtype() ||
      x->dtype() == DataType::kInt4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Where needs a bool condition and equal value dtypes, got ",
        graph::DataTypeName(condition->dtype()), ", ",
        graph::DataTypeName(x->dtype()), ", ", graph::DataTypeName(y->dtype())));
  }
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> xy, BroadcastShapes(x->shape(), y->shape()));
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> shape,
                      BroadcastShapes(condition->shape(), xy));
  Tensor out(x->dtype(), shape);
  const std::vector<int64_t> ic = BroadcastIndex(condition->shape(), shape);
  const std::vector<int64_t> ix = BroadcastIndex(x->shape(), shape);
  const std::vector<int64_t> iy = BroadcastIndex(y->shape(), shape);
  const int64_t size = graph::StorageBytes(x->dtype(), 1);
  const char* xb = static_cast<const char*>(x->raw_data());
  const char* yb = static_cast<const char*>(y->raw_data());
  const uint8_t* cb = condition->data<uint8_t>();
  char* dst = static_cast<char*>(out.raw_data());
  for (int64_t i = 0; i < out.num_elements(); ++i) {
    const char* src = cb[ic[i]] ? xb + ix[i] * size : yb + iy[i] * size;
    std::memcpy(dst + i * size, src, size);
  }
  return OneOutput(std::move(out));
}

KernelResult Clip(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  double low = -INFINITY, high = INFINITY;
  if (call.opset_version < 11) {
    low = call.node.FloatAttribute("min", -INFINITY);
    high = call.node.FloatAttribute("max", INFINITY);
  } else {
    if (call.input(1)) low = call.input(1)->ToDoubles().at(0);
    if (call.input(2)) high = call.input(2)->ToDoubles().at(0);
  }
  std::vector<double> values = x->ToDoubles();
  for (double& value : values) value = std::min(high, std::max(low, value));
  return OneOutput(graph::TensorFromDoubles(x->dtype(), x->shape(), values));
}

KernelResult Cast(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  SQ_ASSIGN_OR_RETURN(DataType to,
                      graph::DataTypeFromOnnxCode(call.node.IntAttribute("to", 0)));
  return OneOutput(graph::CastTensor(*x, to));
}

KernelResult Constant(const KernelCall& call) {
  const graph::Node& node = call.node;
  if (const Tensor* value = node.TensorAttribute("value")) {
    return OneOutput(*value);
  }
  if (node.HasAttribute("value_float")) {
    return std::vector<Tensor>{Tensor::FromVector<float>(
        DataType::kFloat32, {}, {node.FloatAttribute("value_float", 0)})};
  }
  if (node.HasAttribute("value_floats")) {
    std::vector<float> values = node.FloatsAttribute("value_floats");
    const int64_t n = static_cast<int64_t>(values.size());
    return OneOutput(Tensor::FromVector(DataType::kFloat32, {n}, values));
  }
  if (node.HasAttribute("value_int")) {
    return std::vector<Tensor>{Tensor::FromVector<int64_t>(
        DataType::kInt64, {}, {node.IntAttribute("value_int", 0)})};
  }
  if (node.HasAttribute("value_ints")) {
    std::vector<int64_t> values = node.IntsAttribute("value_ints");
    const int64_t n = static_cast<int64_t>(values.size());
    return OneOutput(Tensor::FromVector(DataType::kInt64, {n}, values));
  }
  return absl::UnimplementedError(
      "Constant needs one of value, value_float(s), value_int(s)");
}

KernelResult ConstantOfShape(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* shape_tensor, RequiredInput(call, 0));
  std::vector<int64_t> shape = shape_tensor->ToInt64s();
  const Tensor* value = call.node.TensorAttribute("value");
  SQ_RETURN_IF_ERROR(
      CheckDataShapedSize(value ? value->dtype() : DataType::kFloat32, shape));
  if (value == nullptr) return OneOutput(Tensor(DataType::kFloat32, shape));
  if (value->num_elements() != 1) {
    return absl::InvalidArgumentError("ConstantOfShape value must have one element");
  }
  Tensor out(value->dtype(), shape);
  const int64_t size = graph::StorageBytes(value->dtype(), 1);
  char* dst = static_cast<char*>(out.raw_data());
  for (int64_t i = 0; i < out.num_elements(); ++i) {
    std::memcpy(dst + i * size, value->raw_data(), size);
  }
  return OneOutput(std::move(out));
}

KernelResult Shape(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  const int64_t rank = x->rank();
  auto clamp = [rank](int64_t axis) {
    if (axis < 0) axis += rank;
    return std::min(rank, std::max<int64_t>(0, axis));
  };
  const int64_t start = clamp(call.node.IntAttribute("start", 0));
  const int64_t end = clamp(call.node.IntAttribute("end", rank));
  std::vector<int64_t> dims;
  for (int64_t i = start; i < end; ++i) dims.push_back(x->shape()[i]);
  const int64_t n = static_cast<int64_t>(dims.size());
  return OneOutput(Tensor::FromVector(DataType::kInt64, {n}, dims));
}

KernelResult Size(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  return std::vector<Tensor>{
      Tensor::FromVector<int64_t>(DataType::kInt64, {}, {x->num_elements()})};
}

}  // namespace

void RegisterElementwiseKernels(KernelRegistry* registry) {
  auto add = [registry](const char* name, auto kernel) {
    (*registry)[name] = [kernel](const KernelCall& call, int) { return kernel(call); };
  };
  add("Add", [](const KernelCall& c) { return Binary(c, [](auto x, auto y) { return x + y; }); });
  add("Sub", [](const KernelCall& c) { return Binary(c, [](auto x, auto y) { return x - y; }); });
  add("Mul", [](const KernelCall& c) { return Binary(c, [](auto x, auto y) { return x * y; }); });
  add("Div", [](const KernelCall& c) {
    if (!graph::IsFloat(c.input(0) ? c.input(0)->dtype() : DataType::kFloat32)) {
      // Integer division truncates; a zero divisor gives 0 instead of a trap.
      return Binary(c, [](auto x, auto y) { return y == 0 ? x * 0 : std::trunc(x / y); });
    }
    return Binary(c, [](auto x, auto y) { return x / y; });
  });
  add("Pow", [](const KernelCall& c) {
    const Tensor* y = c.input(1);
    if (y != nullptr && y->dtype() == DataType::kFloat32 && y->num_elements() == 1 &&
        y->data<float>()[0] == 2.0f && y->rank() == 0) {
      // x^2 (RMSNorm's square) as x * x: pow(x, 2) is a slow call.
      return Unary(c, [](auto x) { return x * x; });
    }
    return Binary(c, [](auto x, auto y) { return std::pow(x, y); });
  });
  add("Equal", [](const KernelCall& c) {
    return Binary(c, [](auto x, auto y) { return x == y ? 1 : 0; }, DataType::kBool);
  });
  add("Less", [](const KernelCall& c) {
    return Binary(c, [](auto x, auto y) { return x < y ? 1 : 0; }, DataType::kBool);
  });
  add("Greater", [](const KernelCall& c) {
    return Binary(c, [](auto x, auto y) { return x > y ? 1 : 0; }, DataType::kBool);
  });
  add("Sqrt", [](const KernelCall& c) { return Unary(c, [](auto x) { return std::sqrt(x); }); });
  add("Exp", [](const KernelCall& c) { return Unary(c, [](auto x) { return std::exp(x); }); });
  add("Log", [](const KernelCall& c) { return Unary(c, [](auto x) { return std::log(x); }); });
  add("Erf", [](const KernelCall& c) { return Unary(c, [](auto x) { return std::erf(x); }); });
  add("Tanh", [](const KernelCall& c) { return Unary(c, [](auto x) { return std::tanh(x); }); });
  add("Neg", [](const KernelCall& c) { return Unary(c, [](auto x) { return -x; }); });
  add("Abs", [](const KernelCall& c) { return Unary(c, [](auto x) { return std::abs(x); }); });
  add("Reciprocal", [](const KernelCall& c) {
    return Unary(c, [](auto x) { return decltype(x)(1) / x; });
  });
  add("Relu", [](const KernelCall& c) {
    // max, not a sign branch, so the loop vectorizes; NaN still gives 0.
    return Unary(c, [](auto x) { return std::max(decltype(x)(0), x); });
  });
  add("Sigmoid", [](const KernelCall& c) -> KernelResult {
    const Tensor* x = c.input(0);
    if (x != nullptr && x->dtype() == DataType::kFloat32) {
      Tensor out(DataType::kFloat32, x->shape());
      SigmoidArray(x->data<float>(), out.data<float>(), x->num_elements());
      return OneOutput(std::move(out));
    }
    return Unary(c, [](auto x) { return SigmoidOf(x); });
  });
  add("LeakyRelu", [](const KernelCall& c) {
    const float alpha = c.node.FloatAttribute("alpha", 0.01f);
    return Unary(c, [alpha](auto x) { return x >= 0 ? x : x * alpha; });
  });
  add("HardSigmoid", [](const KernelCall& c) {
    const float alpha = c.node.FloatAttribute("alpha", 0.2f);
    const float beta = c.node.FloatAttribute("beta", 0.5f);
    return Unary(c, [alpha, beta](auto x) {
      using T = decltype(x);
      return std::max(T(0), std::min(T(1), T(alpha) * x + T(beta)));
    });
  });
  add("HardSwish", [](const KernelCall& c) {
    return Unary(c, [](auto x) {
      using T = decltype(x);
      return x * std::max(T(0), std::min(T(1), x / T(6) + T(0.5)));
    });
  });
  add("Identity", [](const KernelCall& c) -> KernelResult {
    SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(c, 0));
    return OneOutput(*x);
  });
  add("Where", Where);
  add("Clip", Clip);
  add("Cast", Cast);
  add("Constant", Constant);
  add("ConstantOfShape", ConstantOfShape);
  add("Shape", Shape);
  add("Size", Size);
}

}  // namespace squeeze::core::kernels::cpu
