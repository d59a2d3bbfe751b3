// Data-movement operators. Each one computes, for every output element, the
// flat index of the input element it copies (or -1 for a fill value), then
// one byte-generic copy moves the data, so every dtype but int4 works alike.
#include <cmath>
#include <cstring>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/kernel_util.h"
#include "core/status_macros.h"

namespace squeeze::core::kernels::cpu {
namespace {

using runtime::KernelCall;

absl::Status RequireByteAddressable(const Tensor& tensor) {
  if (tensor.dtype() == DataType::kInt4) {
    return absl::UnimplementedError("int4 tensors must be dequantized before data movement");
  }
  return absl::OkStatus();
}

// out[i] = in[source[i]], or `fill` (one element of in's dtype, zero when
// null) where source[i] < 0.
Tensor CopyBySource(const Tensor& in, std::vector<int64_t> out_shape,
                    const std::vector<int64_t>& source, const Tensor* fill = nullptr) {
  Tensor out(in.dtype(), std::move(out_shape));
  const int64_t size = graph::StorageBytes(in.dtype(), 1);
  const char* src = static_cast<const char*>(in.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  for (int64_t i = 0; i < out.num_elements(); ++i) {
    if (source[i] >= 0) {
      std::memcpy(dst + i * size, src + source[i] * size, size);
    } else if (fill != nullptr) {
      std::memcpy(dst + i * size, fill->raw_data(), size);
    }
  }
  return out;
}

// A tensor of `out_shape` whose element at row-major multi-index i is in's
// element at `base` + sum(i[d] * in_strides[d]) (strides in elements, 0 to
// repeat): Transpose, Slice, Split and Expand without an index per element.
// Runs along the merged innermost dim are one memcpy when contiguous.
Tensor StridedCopy(const Tensor& in, std::vector<int64_t> out_shape, int64_t base,
                   const std::vector<int64_t>& in_strides) {
  Tensor out(in.dtype(), std::move(out_shape));
  if (out.num_elements() == 0) return out;
  const int64_t size = graph::StorageBytes(in.dtype(), 1);
  const char* src = static_cast<const char*>(in.raw_data()) + base * size;
  char* dst = static_cast<char*>(out.raw_data());
  const StridedWalk<2> walk = CoalesceWalk<2>(out.shape(), {Strides(out.shape()), in_strides});
  const int64_t step = walk.strides[1].back();
  ForEachRun(walk, [&](const std::array<int64_t, 2>& at, int64_t n) {
    char* d = dst + at[0] * size;
    const char* s = src + at[1] * size;
    if (step == 1) {
      std::memcpy(d, s, static_cast<size_t>(n * size));
    } else if (size == 4) {
      for (int64_t i = 0; i < n; ++i) std::memcpy(d + 4 * i, s + 4 * i * step, 4);
    } else if (size == 8) {
      for (int64_t i = 0; i < n; ++i) std::memcpy(d + 8 * i, s + 8 * i * step, 8);
    } else {
      for (int64_t i = 0; i < n; ++i) std::memcpy(d + i * size, s + i * step * size, size);
    }
  });
  return out;
}

// Visits every multi-index of `shape` in row-major order.
template <typename Fn>
void ForEachIndex(const std::vector<int64_t>& shape, Fn fn) {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  std::vector<int64_t> index(shape.size(), 0);
  for (int64_t flat = 0; flat < count; ++flat) {
    fn(flat, index);
    for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
      if (++index[d] < shape[d]) break;
      index[d] = 0;
    }
  }
}

// Integer list from attribute `name` before opset `input_since`, from input
// `input` after (absent input: empty list).
std::vector<int64_t> IntsFromAttributeOrInput(const KernelCall& call, const char* name,
                                              int64_t input_since, size_t input) {
  if (call.opset_version < input_since || call.node.HasAttribute(name)) {
    return call.node.IntsAttribute(name);
  }
  return call.input(input) ? call.input(input)->ToInt64s() : std::vector<int64_t>{};
}

KernelResult Reshaped(const Tensor& x, std::vector<int64_t> shape) {
  Tensor out = x;
  SQ_RETURN_IF_ERROR(out.Reshape(std::move(shape)));
  return OneOutput(std::move(out));
}

KernelResult Reshape(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  std::vector<int64_t> shape = IntsFromAttributeOrInput(call, "shape", 5, 1);
  const bool allow_zero = call.node.IntAttribute("allowzero", 0) != 0;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0 && !allow_zero) {
      if (i >= x->shape().size()) return absl::InvalidArgumentError("Reshape: 0 beyond input rank");
      shape[i] = x->shape()[i];
    }
    if (shape[i] == -1) {
      if (infer >= 0) return absl::InvalidArgumentError("Reshape: more than one -1");
      infer = static_cast<int64_t>(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || x->num_elements() % known != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Reshape: cannot infer -1 for ", x->num_elements(), " elements"));
    }
    shape[infer] = x->num_elements() / known;
  }
  return Reshaped(*x, shape);
}

KernelResult Flatten(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  int64_t axis = call.node.IntAttribute("axis", 1);
  if (axis < 0) axis += x->rank();
  if (axis < 0 || axis > x->rank()) {
    return absl::InvalidArgumentError(absl::StrCat("Flatten: axis ", axis, " out of range"));
  }
  int64_t outer = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x->shape()[d];
  return Reshaped(*x, {outer, outer == 0 ? 0 : x->num_elements() / outer});
}

KernelResult Transpose(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  SQ_RETURN_IF_ERROR(RequireByteAddressable(*x));
  std::vector<int64_t> perm = call.node.IntsAttribute("perm");
  if (perm.empty()) {
    perm.resize(x->rank());
    std::iota(perm.rbegin(), perm.rend(), 0);
  }
  if (static_cast<int64_t>(perm.size()) != x->rank()) {
    return absl::InvalidArgumentError("Transpose: perm length differs from rank");
  }
  std::vector<int64_t> out_shape(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) {
    SQ_ASSIGN_OR_RETURN(perm[i], NormalizeAxis(perm[i], x->rank()));
    out_shape[i] = x->shape()[perm[i]];
  }
  const std::vector<int64_t> strides = Strides(x->shape());
  std::vector<int64_t> in_strides(perm.size());
  for (size_t d = 0; d < perm.size(); ++d) in_strides[d] = strides[perm[d]];
  return OneOutput(StridedCopy(*x, out_shape, 0, in_strides));
}

KernelResult Concat(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* first, RequiredInput(call, 0));
  SQ_RETURN_IF_ERROR(RequireByteAddressable(*first));
  SQ_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(call.node.IntAttribute("axis", 0), first->rank()));
  std::vector<int64_t> out_shape = first->shape();
  out_shape[axis] = 0;
  for (const Tensor* input : call.inputs) {
    if (input == nullptr) continue;
    if (input->rank() != first->rank() || input->dtype() != first->dtype()) {
      return absl::InvalidArgumentError("Concat inputs differ in rank or dtype");
    }
    for (int64_t d = 0; d < first->rank(); ++d) {
      if (d != axis && input->shape()[d] != first->shape()[d]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "Concat: shapes ", graph::ShapeToString(first->shape()), " and ",
            graph::ShapeToString(input->shape()), " differ off axis ", axis));
      }
    }
    out_shape[axis] += input->shape()[axis];
  }
  Tensor out(first->dtype(), out_shape);
  int64_t outer = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= out_shape[d];
  const int64_t size = graph::StorageBytes(first->dtype(), 1);
  const int64_t out_row = out.num_elements() / std::max<int64_t>(1, outer) * size;
  char* dst = static_cast<char*>(out.raw_data());
  int64_t column = 0;
  for (const Tensor* input : call.inputs) {
    if (input == nullptr || input->num_elements() == 0) continue;
    const int64_t row = input->num_elements() / outer * size;
    for (int64_t o = 0; o < outer; ++o) {
      std::memcpy(dst + o * out_row + column,
                  static_cast<const char*>(input->raw_data()) + o * row, row);
    }
    column += row;
  }
  return OneOutput(std::move(out));
}

// The elements of x with index `begin + k * step` (k < count) along `axis`.
Tensor SliceAxis(const Tensor& x, int64_t axis, int64_t begin, int64_t count, int64_t step) {
  std::vector<int64_t> shape = x.shape();
  shape[axis] = count;
  std::vector<int64_t> strides = Strides(x.shape());
  const int64_t base = begin * strides[axis];
  strides[axis] *= step;
  return StridedCopy(x, shape, base, strides);
}

KernelResult Split(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  SQ_RETURN_IF_ERROR(RequireByteAddressable(*x));
  SQ_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(call.node.IntAttribute("axis", 0), x->rank()));
  std::vector<int64_t> sizes = IntsFromAttributeOrInput(call, "split", 13, 1);
  const int64_t outputs = static_cast<int64_t>(call.node.outputs.size());
  const int64_t extent = x->shape()[axis];
  if (sizes.empty()) {
    const int64_t chunk = (extent + outputs - 1) / outputs;
    for (int64_t i = 0; i < outputs; ++i) {
      sizes.push_back(std::max<int64_t>(0, std::min(chunk, extent - i * chunk)));
    }
  }
  if (std::accumulate(sizes.begin(), sizes.end(), int64_t{0}) != extent) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Split sizes do not add up to dim ", extent, " of axis ", axis));
  }
  std::vector<Tensor> results;
  int64_t begin = 0;
  for (int64_t size : sizes) {
    results.push_back(SliceAxis(*x, axis, begin, size, 1));
    begin += size;
  }
  return results;
}

KernelResult Slice(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  SQ_RETURN_IF_ERROR(RequireByteAddressable(*x));
  const bool legacy = call.opset_version < 10;
  std::vector<int64_t> starts = legacy ? call.node.IntsAttribute("starts")
                                       : IntsFromAttributeOrInput(call, "starts", 10, 1);
  std::vector<int64_t> ends = legacy ? call.node.IntsAttribute("ends")
                                     : IntsFromAttributeOrInput(call, "ends", 10, 2);
  std::vector<int64_t> axes = legacy ? call.node.IntsAttribute("axes")
                                     : IntsFromAttributeOrInput(call, "axes", 10, 3);
  std::vector<int64_t> steps = legacy ? std::vector<int64_t>{}
                                      : IntsFromAttributeOrInput(call, "steps", 10, 4);
  if (axes.empty()) {
    axes.resize(starts.size());
    std::iota(axes.begin(), axes.end(), 0);
  }
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() ||
      steps.size() != starts.size()) {
    return absl::InvalidArgumentError("Slice: starts, ends, axes and steps differ in length");
  }
  const int64_t rank = x->rank();
  std::vector<int64_t> begin(rank, 0), step(rank, 1), shape = x->shape();
  for (size_t i = 0; i < starts.size(); ++i) {
    SQ_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(axes[i], rank));
    const int64_t dim = x->shape()[axis];
    if (steps[i] == 0) return absl::InvalidArgumentError("Slice: step 0");
    auto clamp = [&](int64_t value, int64_t low, int64_t high) {
      if (value < 0) value += dim;
      return std::min(high, std::max(low, value));
    };
    int64_t start, end;
    if (steps[i] > 0) {
      start = clamp(std::max<int64_t>(starts[i], -dim - 1), 0, dim);
      end = clamp(std::max<int64_t>(ends[i], -dim - 1), 0, dim);
      shape[axis] = std::max<int64_t>(0, (end - start + steps[i] - 1) / steps[i]);
    } else {
      start = clamp(std::max<int64_t>(starts[i], -dim - 1), 0, dim - 1);
      end = clamp(std::max<int64_t>(ends[i], -dim - 1), -1, dim - 1);
      if (ends[i] < -dim) end = -1;
      shape[axis] = std::max<int64_t>(0, (start - end - steps[i] - 1) / -steps[i]);
    }
    begin[axis] = start;
    step[axis] = steps[i];
  }
  std::vector<int64_t> strides = Strides(x->shape());
  int64_t base = 0;
  for (int64_t d = 0; d < rank; ++d) {
    base += begin[d] * strides[d];
    strides[d] *= step[d];
  }
  return OneOutput(StridedCopy(*x, shape, base, strides));
}

KernelResult Squeeze(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  const std::vector<int64_t> axes = IntsFromAttributeOrInput(call, "axes", 13, 1);
  std::vector<bool> drop(x->rank(), false);
  for (int64_t axis : axes) {
    SQ_ASSIGN_OR_RETURN(int64_t normalized, NormalizeAxis(axis, x->rank()));
    if (x->shape()[normalized] != 1) {
      return absl::InvalidArgumentError(absl::StrCat("Squeeze: dim ", axis, " is not 1"));
    }
    drop[normalized] = true;
  }
  std::vector<int64_t> shape;
  for (int64_t d = 0; d < x->rank(); ++d) {
    const bool dropped = axes.empty() ? x->shape()[d] == 1 : drop[d];
    if (!dropped) shape.push_back(x->shape()[d]);
  }
  return Reshaped(*x, shape);
}

KernelResult Unsqueeze(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  const std::vector<int64_t> axes = IntsFromAttributeOrInput(call, "axes", 13, 1);
  const int64_t rank = x->rank() + static_cast<int64_t>(axes.size());
  std::vector<bool> inserted(rank, false);
  for (int64_t axis : axes) {
    SQ_ASSIGN_OR_RETURN(int64_t normalized, NormalizeAxis(axis, rank));
    if (inserted[normalized]) return absl::InvalidArgumentError("Unsqueeze: repeated axis");
    inserted[normalized] = true;
  }
  std::vector<int64_t> shape;
  size_t next = 0;
  for (int64_t d = 0; d < rank; ++d) shape.push_back(inserted[d] ? 1 : x->shape()[next++]);
  return Reshaped(*x, shape);
}

KernelResult Gather(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  SQ_ASSIGN_OR_RETURN(const Tensor* indices_tensor, RequiredInput(call, 1));
  SQ_RETURN_IF_ERROR(RequireByteAddressable(*x));
  SQ_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(call.node.IntAttribute("axis", 0), x->rank()));
  const std::vector<int64_t> indices = indices_tensor->ToInt64s();
  const int64_t dim = x->shape()[axis];
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x->shape()[d];
  for (int64_t d = axis + 1; d < x->rank(); ++d) inner *= x->shape()[d];
  std::vector<int64_t> shape(x->shape().begin(), x->shape().begin() + axis);
  shape.insert(shape.end(), indices_tensor->shape().begin(), indices_tensor->shape().end());
  shape.insert(shape.end(), x->shape().begin() + axis + 1, x->shape().end());
  std::vector<int64_t> source;
  source.reserve(outer * indices.size() * inner);
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t index : indices) {
      if (index < -dim || index >= dim) {
        return absl::InvalidArgumentError(absl::StrCat(
            "Gather: index ", index, " out of range for dim ", dim));
      }
      if (index < 0) index += dim;
      for (int64_t i = 0; i < inner; ++i) source.push_back((o * dim + index) * inner + i);
    }
  }
  return OneOutput(CopyBySource(*x, shape, source));
}

KernelResult Expand(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  SQ_ASSIGN_OR_RETURN(const Tensor* shape_tensor, RequiredInput(call, 1));
  SQ_RETURN_IF_ERROR(RequireByteAddressable(*x));
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> shape,
                      BroadcastShapes(x->shape(), shape_tensor->ToInt64s()));
  SQ_RETURN_IF_ERROR(CheckDataShapedSize(x->dtype(), shape));
  return OneOutput(StridedCopy(*x, shape, 0, BroadcastStrides(x->shape(), shape)));
}

KernelResult Pad(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  SQ_RETURN_IF_ERROR(RequireByteAddressable(*x));
  const int64_t rank = x->rank();
  std::vector<int64_t> pads = IntsFromAttributeOrInput(call, "pads", 11, 1);
  Tensor fill(x->dtype(), {});
  if (call.opset_version < 11) {
    fill = graph::TensorFromDoubles(x->dtype(), {}, {call.node.FloatAttribute("value", 0)});
  } else if (call.input(2) && call.input(2)->num_elements() > 0) {
    fill = graph::CastTensor(*call.input(2), x->dtype());
  }
  if (call.input(3)) {  // opset 18 axes: expand pads to every axis
    std::vector<int64_t> axes = call.input(3)->ToInt64s(), full(2 * rank, 0);
    for (size_t i = 0; i < axes.size(); ++i) {
      SQ_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(axes[i], rank));
      full[axis] = pads[i];
      full[axis + rank] = pads[i + axes.size()];
    }
    pads = full;
  }
  if (static_cast<int64_t>(pads.size()) != 2 * rank) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Pad: pads has ", pads.size(), " values, rank ", rank, " needs ", 2 * rank));
  }
  const std::string mode = call.node.StringAttribute("mode", "constant");
  if (mode != "constant" && mode != "reflect" && mode != "edge") {
    return absl::InvalidArgumentError(absl::StrCat("Pad: unknown mode '", mode, "'"));
  }
  std::vector<int64_t> shape(rank);
  for (int64_t d = 0; d < rank; ++d) {
    shape[d] = x->shape()[d] + pads[d] + pads[d + rank];
    if (shape[d] < 0) return absl::InvalidArgumentError("Pad: negative output dim");
  }
  SQ_RETURN_IF_ERROR(CheckDataShapedSize(x->dtype(), shape));
  const std::vector<int64_t> strides = Strides(x->shape());
  std::vector<int64_t> source;
  ForEachIndex(shape, [&](int64_t, const std::vector<int64_t>& index) {
    int64_t offset = 0;
    for (int64_t d = 0; d < rank && offset >= 0; ++d) {
      int64_t i = index[d] - pads[d];
      const int64_t dim = x->shape()[d];
      if (i < 0 || i >= dim) {
        if (mode == "constant" || dim == 0) {
          offset = -1;
          break;
        }
        if (mode == "edge") {
          i = std::min(dim - 1, std::max<int64_t>(0, i));
        } else {
          const int64_t period = std::max<int64_t>(1, 2 * (dim - 1));
          i = ((i % period) + period) % period;
          if (i >= dim) i = period - i;
        }
      }
      offset += i * strides[d];
    }
    source.push_back(offset);
  });
  return OneOutput(CopyBySource(*x, shape, source, &fill));
}

// Resize's map from an output coordinate to an input coordinate along one axis.
// `out` is the resized length before rounding (in * scale when scales are
// given), as ONNX's reference computes it.
double OriginalCoordinate(const std::string& mode, double x, double scale, int64_t in,
                          double out, double roi_start, double roi_end) {
  if (mode == "half_pixel") return (x + 0.5) / scale - 0.5;
  if (mode == "pytorch_half_pixel") return out > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
  if (mode == "align_corners") {
    return out == 1 ? 0.0 : x * static_cast<double>(in - 1) / (out - 1);
  }
  if (mode == "tf_half_pixel_for_nn") return (x + 0.5) / scale;
  if (mode == "tf_crop_and_resize") {
    return out > 1 ? roi_start * (in - 1) +
                         x * (roi_end - roi_start) * (in - 1) / (out - 1)
                   : 0.5 * (roi_start + roi_end) * (in - 1);
  }
  return x / scale;  // asymmetric
}

KernelResult Resize(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  const graph::Node& node = call.node;
  const int64_t rank = x->rank();
  const std::string mode = node.StringAttribute("mode", "nearest");
  if (mode != "nearest" && mode != "linear" && mode != "cubic") {
    return absl::UnimplementedError(absl::StrCat("Resize mode '", mode, "' is not supported"));
  }
  const bool opset10 = call.opset_version < 11;
  const std::string transform = node.StringAttribute(
      "coordinate_transformation_mode", opset10 ? "asymmetric" : "half_pixel");
  const std::string nearest_mode = node.StringAttribute("nearest_mode", "round_prefer_floor");
  const double extrapolation = node.FloatAttribute("extrapolation_value", 0.0f);
  std::vector<double> roi;
  std::vector<float> scales;
  std::vector<int64_t> sizes;
  if (opset10) {
    if (call.input(1)) scales = call.input(1)->ToFloats();
  } else {
    if (call.input(1) && call.input(1)->num_elements() > 0) roi = call.input(1)->ToDoubles();
    if (call.input(2) && call.input(2)->num_elements() > 0) scales = call.input(2)->ToFloats();
    if (call.input(3) && call.input(3)->num_elements() > 0) sizes = call.input(3)->ToInt64s();
  }
  std::vector<int64_t> shape(rank);
  std::vector<double> scale(rank), resized_length(rank);
  for (int64_t d = 0; d < rank; ++d) {
    if (!sizes.empty()) {
      if (static_cast<int64_t>(sizes.size()) != rank) {
        return absl::InvalidArgumentError("Resize: sizes length differs from rank");
      }
      shape[d] = sizes[d];
      scale[d] = x->shape()[d] == 0 ? 1.0 : static_cast<double>(sizes[d]) / x->shape()[d];
      resized_length[d] = static_cast<double>(sizes[d]);
    } else {
      if (static_cast<int64_t>(scales.size()) != rank || scales[d] <= 0) {
        return absl::InvalidArgumentError("Resize needs positive scales, one per dim");
      }
      scale[d] = scales[d];
      resized_length[d] = x->shape()[d] * static_cast<double>(scales[d]);
      shape[d] = static_cast<int64_t>(std::floor(resized_length[d]));
    }
  }
  SQ_RETURN_IF_ERROR(CheckDataShapedSize(x->dtype(), shape));
  if (roi.empty()) {
    roi.assign(rank, 0.0);
    roi.resize(2 * rank, 1.0);
  }
  // Per axis and output index: the input coordinate.
  std::vector<std::vector<double>> coordinate(rank);
  for (int64_t d = 0; d < rank; ++d) {
    for (int64_t o = 0; o < shape[d]; ++o) {
      coordinate[d].push_back(OriginalCoordinate(transform, o, scale[d], x->shape()[d],
                                                 resized_length[d], roi[d], roi[d + rank]));
    }
  }
  auto outside = [&](int64_t d, double c) {
    return transform == "tf_crop_and_resize" && (c < 0 || c > x->shape()[d] - 1);
  };
  const std::vector<int64_t> strides = Strides(x->shape());
  if (mode == "nearest") {
    Tensor fill = graph::TensorFromDoubles(x->dtype(), {}, {extrapolation});
    std::vector<int64_t> source;
    ForEachIndex(shape, [&](int64_t, const std::vector<int64_t>& index) {
      int64_t offset = 0;
      for (int64_t d = 0; d < rank && offset >= 0; ++d) {
        const double c = coordinate[d][index[d]];
        if (outside(d, c)) {
          offset = -1;
          break;
        }
        int64_t i;
        if (nearest_mode == "floor") {
          i = static_cast<int64_t>(std::floor(c));
        } else if (nearest_mode == "ceil") {
          i = static_cast<int64_t>(std::ceil(c));
        } else if (nearest_mode == "round_prefer_ceil") {
          i = static_cast<int64_t>(std::floor(c + 0.5));
        } else {
          i = static_cast<int64_t>(std::ceil(c - 0.5));
        }
        offset += std::min(x->shape()[d] - 1, std::max<int64_t>(0, i)) * strides[d];
      }
      source.push_back(offset);
    });
    return OneOutput(CopyBySource(*x, shape, source, &fill));
  }
  SQ_RETURN_IF_ERROR(RequireFloat(call, *x));
  // Per axis and output index: the input indices the value mixes and their
  // weights (2 taps for linear, 4 for cubic; the result is separable).
  const bool cubic = mode == "cubic";
  const double a = node.FloatAttribute("cubic_coeff_a", -0.75f);
  const bool exclude_outside = node.IntAttribute("exclude_outside", 0) != 0;
  struct Taps {
    std::vector<int64_t> index;
    std::vector<double> weight;
  };
  std::vector<std::vector<Taps>> taps(rank);
  for (int64_t d = 0; d < rank; ++d) {
    const int64_t dim = x->shape()[d];
    for (double c : coordinate[d]) {
      Taps t;
      if (!cubic) {
        const double clamped = std::min<double>(dim - 1, std::max(0.0, c));
        const int64_t low = static_cast<int64_t>(std::floor(clamped));
        t.index = {low, std::min(dim - 1, low + 1)};
        t.weight = {1 - (clamped - low), clamped - low};
      } else {
        // Keys' cubic convolution as ONNX's reference computes it: taps at
        // base - 1 .. base + 2 with base = ceil(c) - 1, so ratio is in (0, 1].
        const int64_t base = static_cast<int64_t>(std::ceil(c)) - 1;
        const double r = c - static_cast<double>(base);
        const double s = 1 - r;
        t.weight = {((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                    ((a + 2) * r - (a + 3)) * r * r + 1,
                    ((a + 2) * s - (a + 3)) * s * s + 1,
                    ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a};
        double total = 0;
        for (int k = 0; k < 4; ++k) {
          const int64_t i = base - 1 + k;
          if (exclude_outside && (i < 0 || i >= dim)) t.weight[k] = 0;
          total += t.weight[k];
          t.index.push_back(std::min(dim - 1, std::max<int64_t>(0, i)));
        }
        if (exclude_outside && total != 0) {
          for (double& w : t.weight) w /= total;
        }
      }
      taps[d].push_back(std::move(t));
    }
  }
  const int64_t per_axis = cubic ? 4 : 2;
  int64_t combinations = 1;
  for (int64_t d = 0; d < rank; ++d) combinations *= per_axis;
  const std::vector<double> values = x->ToDoubles();
  std::vector<double> out;
  ForEachIndex(shape, [&](int64_t, const std::vector<int64_t>& index) {
    bool extrapolated = false;
    for (int64_t d = 0; d < rank; ++d) extrapolated |= outside(d, coordinate[d][index[d]]);
    double sum = 0;
    for (int64_t combination = 0; combination < combinations && !extrapolated; ++combination) {
      double weight = 1;
      int64_t offset = 0, rest = combination;
      for (int64_t d = 0; d < rank && weight != 0; ++d) {
        const Taps& t = taps[d][index[d]];
        const int64_t k = rest % per_axis;
        rest /= per_axis;
        weight *= t.weight[k];
        offset += t.index[k] * strides[d];
      }
      if (weight != 0) sum += weight * values[offset];
    }
    out.push_back(extrapolated ? extrapolation : sum);
  });
  return OneOutput(graph::TensorFromDoubles(x->dtype(), shape, out));
}

}  // namespace

void RegisterTensorKernels(KernelRegistry* registry) {
  auto add = [registry](const char* name, KernelResult (*kernel)(const KernelCall&)) {
    (*registry)[name] = [kernel](const KernelCall& call, int) { return kernel(call); };
  };
  add("Reshape", Reshape);
  add("Flatten", Flatten);
  add("Transpose", Transpose);
  add("Concat", Concat);
  add("Split", Split);
  add("Slice", Slice);
  add("Squeeze", Squeeze);
  add("Unsqueeze", Unsqueeze);
  add("Gather", Gather);
  add("Expand", Expand);
  add("Pad", Pad);
  add("Resize", Resize);
}

}  // namespace squeeze::core::kernels::cpu
