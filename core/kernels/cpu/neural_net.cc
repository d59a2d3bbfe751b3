// Convolution, pooling, GEMM, normalization, softmax and reductions. Float
// inputs of any width are computed in float32 and converted back; GEMMs go
// through Eigen, convolution through im2col + Eigen GEMM.
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/fast_gemm.h"
#include "core/kernels/cpu/kernel_util.h"
#include "core/kernels/cpu/vector_math.h"
#include "core/status_macros.h"

namespace squeeze::core::kernels::cpu {
namespace {

using runtime::KernelCall;
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<RowMatrix>;
using ConstMatrixMap = Eigen::Map<const RowMatrix>;
using StridedMatrixMap = Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>>;
using ConstStridedMatrixMap = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;

// Work below this many multiply-adds per thread is not worth a thread.
constexpr int64_t kMinMultiplyAddsPerThread = 1 << 16;
// The same through FastGemm, which does them several times faster: below
// this, waking a second thread cost more than it saved on the 2-vCPU bench
// machine (docs/benchmarks.md, issue 3).
constexpr int64_t kMinFastMultiplyAddsPerThread = 1 << 19;

int64_t Product(const std::vector<int64_t>& dims, size_t begin = 0,
                size_t end = std::string::npos) {
  int64_t product = 1;
  for (size_t i = begin; i < std::min(end, dims.size()); ++i) product *= dims[i];
  return product;
}

// Spatial geometry shared by Conv, ConvTranspose and the pools.
struct Window {
  std::vector<int64_t> kernel, strides, dilations, pad_begin, pad_end;
};

absl::StatusOr<Window> ReadWindow(const graph::Node& node,
                                  std::vector<int64_t> kernel) {
  const size_t k = kernel.size();
  Window window;
  window.kernel = std::move(kernel);
  window.strides = node.IntsAttribute("strides");
  window.dilations = node.IntsAttribute("dilations");
  std::vector<int64_t> pads = node.IntsAttribute("pads");
  if (window.strides.empty()) window.strides.assign(k, 1);
  if (window.dilations.empty()) window.dilations.assign(k, 1);
  if (pads.empty()) pads.assign(2 * k, 0);
  if (window.strides.size() != k || window.dilations.size() != k ||
      pads.size() != 2 * k) {
    return absl::InvalidArgumentError(absl::StrCat(
        "strides, dilations and pads must match the ", k, " spatial dims"));
  }
  for (size_t i = 0; i < k; ++i) {
    if (window.strides[i] <= 0 || window.dilations[i] <= 0 || window.kernel[i] <= 0) {
      return absl::InvalidArgumentError("kernel, strides and dilations must be positive");
    }
  }
  window.pad_begin.assign(pads.begin(), pads.begin() + k);
  window.pad_end.assign(pads.begin() + k, pads.end());
  return window;
}

// Output spatial sizes for Conv and the pools; applies auto_pad to `window`.
absl::StatusOr<std::vector<int64_t>> OutputSpatial(const graph::Node& node,
                                                   const std::vector<int64_t>& in,
                                                   Window* window) {
  const std::string auto_pad = node.StringAttribute("auto_pad", "NOTSET");
  const bool ceil_mode = node.IntAttribute("ceil_mode", 0) != 0;
  std::vector<int64_t> out(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const int64_t extent = (window->kernel[i] - 1) * window->dilations[i] + 1;
    const int64_t stride = window->strides[i];
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      out[i] = (in[i] + stride - 1) / stride;
      const int64_t total = std::max<int64_t>(0, (out[i] - 1) * stride + extent - in[i]);
      const int64_t small = total / 2;
      window->pad_begin[i] = auto_pad == "SAME_UPPER" ? small : total - small;
      window->pad_end[i] = total - window->pad_begin[i];
      continue;
    }
    if (auto_pad == "VALID") window->pad_begin[i] = window->pad_end[i] = 0;
    const int64_t span = in[i] + window->pad_begin[i] + window->pad_end[i] - extent;
    if (span < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "window of extent ", extent, " does not fit input dim ", in[i]));
    }
    out[i] = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
    // A ceil-mode window must start inside the input or its leading pad.
    if (ceil_mode && (out[i] - 1) * stride >= in[i] + window->pad_begin[i]) --out[i];
  }
  return out;
}

// [batch, channels, spatial...], the shape of a convolution or pool output.
std::vector<int64_t> BatchChannelShape(int64_t batch, int64_t channels,
                                       const std::vector<int64_t>& spatial) {
  std::vector<int64_t> shape = {batch, channels};
  shape.insert(shape.end(), spatial.begin(), spatial.end());
  return shape;
}

// Whether the executor fused a Relu into this Conv, Gemm or MatMul call
// (CpuBackend::FusesActivation); INVALID_ARGUMENT for another activation.
absl::StatusOr<bool> FusedRelu(const KernelCall& call) {
  if (call.fused_activation.empty()) return false;
  if (call.fused_activation == "Relu") return true;
  return absl::InvalidArgumentError(absl::StrCat(call.node.op_type, " cannot fuse activation '",
                                                 call.fused_activation, "'"));
}

// rows x width floats at `data` (row stride `stride`) become
// max(0, x + bias[row]) with `relu`, x + bias[row] without; bias may be null.
// The same expressions as the Add and Relu kernels, so fusing changes no bit.
void BiasRelu(float* data, int64_t rows, int64_t width, int64_t stride, const float* bias,
              bool relu) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = data + r * stride;
    const float b = bias == nullptr ? 0.0f : bias[r];
    if (bias != nullptr && relu) {
      for (int64_t i = 0; i < width; ++i) row[i] = std::max(0.0f, row[i] + b);
    } else if (bias != nullptr) {
      for (int64_t i = 0; i < width; ++i) row[i] += b;
    } else if (relu) {
      for (int64_t i = 0; i < width; ++i) row[i] = std::max(0.0f, row[i]);
    }
  }
}

// The float32 elements of an optional input (empty when omitted).
std::vector<float> OptionalFloats(const Tensor* tensor) {
  return tensor == nullptr ? std::vector<float>{} : tensor->ToFloats();
}

// Splits flat index `flat` of a row-major `dims` box into `index`.
void Unflatten(int64_t flat, const std::vector<int64_t>& dims,
               std::vector<int64_t>* index) {
  for (int64_t d = static_cast<int64_t>(dims.size()) - 1; d >= 0; --d) {
    (*index)[d] = flat % dims[d];
    flat /= dims[d];
  }
}

// For kernel position k and window position p (both flat), the flat offset
// in a `bounds` box of element p * strides - pad_begin + k * dilations, or
// -1 where that falls outside (in the padding). Conv reads its input through
// this table (positions = output, bounds = input); ConvTranspose scatters
// into its output through it (positions = input, bounds = output).
std::vector<int64_t> WindowOffsets(const Window& window,
                                   const std::vector<int64_t>& positions,
                                   const std::vector<int64_t>& bounds) {
  const size_t dims = positions.size();
  const int64_t kernel_size = Product(window.kernel), position_count = Product(positions);
  std::vector<int64_t> table(static_cast<size_t>(kernel_size * position_count));
  std::vector<int64_t> k_index(dims), p_index(dims);
  for (int64_t k = 0; k < kernel_size; ++k) {
    Unflatten(k, window.kernel, &k_index);
    for (int64_t p = 0; p < position_count; ++p) {
      Unflatten(p, positions, &p_index);
      int64_t offset = 0;
      for (size_t d = 0; d < dims && offset >= 0; ++d) {
        const int64_t pos = p_index[d] * window.strides[d] - window.pad_begin[d] +
                            k_index[d] * window.dilations[d];
        offset = pos >= 0 && pos < bounds[d] ? offset * bounds[d] + pos : -1;
      }
      table[k * position_count + p] = offset;
    }
  }
  return table;
}

// Per-thread scratch kept across calls: at least `count` floats, contents
// unspecified, valid until the calling thread's next ThreadScratch.
float* ThreadScratch(size_t count) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < count) buffer.resize(count);
  return buffer.data();
}

// im2col for one image group of a 2-D convolution, columns [first, first +
// width) of the output positions: col[r * width + j] is the input under
// kernel row r = (channel, kh, kw) at output position first + j, 0 in the
// padding.
void Im2Col2d(const float* in, int64_t channels, const std::vector<int64_t>& in_spatial,
              const std::vector<int64_t>& out_spatial, const Window& window, int64_t first,
              int64_t width, float* col) {
  const int64_t in_h = in_spatial[0], in_w = in_spatial[1], out_w = out_spatial[1];
  const int64_t kernel_h = window.kernel[0], kernel_w = window.kernel[1];
  const int64_t stride_h = window.strides[0], stride_w = window.strides[1];
  if (stride_h == 1 && stride_w == 1 && window.dilations[0] == 1 && window.dilations[1] == 1 &&
      out_w == in_w) {
    // Same-width stride-1 windows: output position p of kernel row (kh, kw)
    // reads input p + shift, so each kernel row is one long copy; positions
    // whose input lies in the padding are then set to 0 (a row above or
    // below the input, or a column that would wrap into the next row).
    const int64_t out_h = out_spatial[0], in_size = in_h * in_w;
    for (int64_t c = 0; c < channels; ++c) {
      const float* plane = in + c * in_size;
      for (int64_t kh = 0; kh < kernel_h; ++kh) {
        const int64_t dh = kh - window.pad_begin[0];
        const int64_t row_begin = std::clamp<int64_t>(-dh, 0, out_h);
        const int64_t row_end = std::clamp<int64_t>(in_h - dh, row_begin, out_h);
        for (int64_t kw = 0; kw < kernel_w; ++kw, col += width) {
          const int64_t dw = kw - window.pad_begin[1], shift = dh * in_w + dw;
          const int64_t lo = std::clamp(std::max(row_begin * out_w, -shift), first, first + width);
          const int64_t hi = std::clamp(std::min(row_end * out_w, in_size - shift), lo, first + width);
          std::fill(col, col + (lo - first), 0.0f);
          std::copy(plane + lo + shift, plane + hi + shift, col + (lo - first));
          std::fill(col + (hi - first), col + width, 0.0f);
          if (dw == 0 || lo == hi) continue;
          // Columns ow < -dw (dw < 0) or ow >= in_w - dw (dw > 0) are padding.
          const int64_t edge_begin = dw < 0 ? 0 : std::max<int64_t>(0, in_w - dw);
          const int64_t edge_end = dw < 0 ? std::min(in_w, -dw) : in_w;
          for (int64_t row_start = lo - lo % out_w; row_start < hi; row_start += out_w) {
            for (int64_t ow = edge_begin; ow < edge_end; ++ow) {
              const int64_t p = row_start + ow;
              if (p >= lo && p < hi) col[p - first] = 0.0f;
            }
          }
        }
      }
    }
    return;
  }
  for (int64_t c = 0; c < channels; ++c) {
    const float* plane = in + c * in_h * in_w;
    for (int64_t kh = 0; kh < kernel_h; ++kh) {
      for (int64_t kw = 0; kw < kernel_w; ++kw, col += width) {
        int64_t oh = first / out_w, ow = first % out_w;
        for (int64_t j = 0; j < width; j += out_w - ow, ow = 0, ++oh) {
          const int64_t run = std::min(width - j, out_w - ow);
          float* dst = col + j;
          const int64_t ih = oh * stride_h - window.pad_begin[0] + kh * window.dilations[0];
          if (ih < 0 || ih >= in_h) {
            std::fill(dst, dst + run, 0.0f);
            continue;
          }
          const float* src = plane + ih * in_w;
          const int64_t iw0 = ow * stride_w - window.pad_begin[1] + kw * window.dilations[1];
          if (stride_w == 1) {
            const int64_t valid_begin = std::clamp<int64_t>(-iw0, 0, run);
            const int64_t valid_end = std::clamp<int64_t>(in_w - iw0, valid_begin, run);
            std::fill(dst, dst + valid_begin, 0.0f);
            std::copy(src + iw0 + valid_begin, src + iw0 + valid_end, dst + valid_begin);
            std::fill(dst + valid_end, dst + run, 0.0f);
          } else {
            for (int64_t t = 0; t < run; ++t) {
              const int64_t iw = iw0 + t * stride_w;
              dst[t] = iw >= 0 && iw < in_w ? src[iw] : 0.0f;
            }
          }
        }
      }
    }
  }
}

void MaxPool2d(const float* input, int64_t planes, const std::vector<int64_t>& in_spatial,
               const std::vector<int64_t>& out_spatial, const Window& window,
               float* output, int threads);
KernelResult Pool(const KernelCall& call, int threads, bool is_max);

KernelResult Conv(const KernelCall& call, int threads) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  SQ_ASSIGN_OR_RETURN(const Tensor* w, RequiredInput(call, 1));
  SQ_RETURN_IF_ERROR(RequireFloat(call, *x));
  SQ_ASSIGN_OR_RETURN(const bool relu, FusedRelu(call));
  if (x->rank() < 3 || w->rank() != x->rank()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Conv needs X and W of equal rank >= 3, got ", graph::ShapeToString(x->shape()),
        " and ", graph::ShapeToString(w->shape())));
  }
  const int64_t group = call.node.IntAttribute("group", 1);
  const int64_t batch = x->shape()[0], channels = x->shape()[1];
  const int64_t out_channels = w->shape()[0];
  if (group <= 0 || channels % group != 0 || out_channels % group != 0 ||
      w->shape()[1] != channels / group) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Conv: W ", graph::ShapeToString(w->shape()), " does not fit ", channels,
        " input channels in ", group, " groups"));
  }
  const std::vector<int64_t> in_spatial(x->shape().begin() + 2, x->shape().end());
  const std::vector<int64_t> kernel(w->shape().begin() + 2, w->shape().end());
  SQ_ASSIGN_OR_RETURN(Window window, ReadWindow(call.node, kernel));
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> out_spatial,
                      OutputSpatial(call.node, in_spatial, &window));
  const int64_t group_in = channels / group, group_out = out_channels / group;
  const int64_t kernel_size = Product(kernel), in_size = Product(in_spatial);
  const int64_t out_size = Product(out_spatial);
  const int64_t col_rows = group_in * kernel_size;

  const FloatInput input(*x), weights(*w);
  std::optional<FloatInput> bias;
  if (const Tensor* b = call.input(2)) {
    if (b->num_elements() != out_channels) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Conv: B has ", b->num_elements(), " elements for ", out_channels, " output channels"));
    }
    bias.emplace(*b);
  }
  const bool two_d = kernel.size() == 2;

  // A MaxPool fused after the Conv (and Relu) by the executor: a 2-D float32
  // Conv computes each image into scratch and pools it from there, so the
  // full-size Conv output is never written; any other Conv computes its
  // output and runs the MaxPool kernel on it. So does a Conv with fewer
  // images than threads: pooling from scratch needs whole images per work
  // item, which would leave the other threads idle (batch 1).
  std::optional<Window> pool_window;
  std::vector<int64_t> pooled_spatial;
  if (call.fused_pool != nullptr) {
    const graph::Node& pool = *call.fused_pool;
    const std::vector<int64_t> pool_kernel = pool.IntsAttribute("kernel_shape");
    if (two_d && x->dtype() == DataType::kFloat32 && pool_kernel.size() == 2 &&
        batch * group >= threads) {
      SQ_ASSIGN_OR_RETURN(Window window_2d, ReadWindow(pool, pool_kernel));
      if (window_2d.dilations[0] == 1 && window_2d.dilations[1] == 1) {
        SQ_ASSIGN_OR_RETURN(pooled_spatial, OutputSpatial(pool, out_spatial, &window_2d));
        pool_window = std::move(window_2d);
      }
    }
    if (!pool_window) {
      KernelCall conv_call{call.node, call.opset_version, call.inputs, call.fused_activation};
      SQ_ASSIGN_OR_RETURN(std::vector<Tensor> conv_out, Conv(conv_call, threads));
      return Pool(KernelCall{pool, call.opset_version, {&conv_out[0]}}, threads, true);
    }
  }
  const int64_t pooled_size = pool_window ? Product(pooled_spatial) : 0;
  FloatOutput output(x->dtype(), BatchChannelShape(batch, out_channels,
                                                   pool_window ? pooled_spatial : out_spatial));

  const bool pointwise = kernel_size == 1 &&
      std::all_of(window.strides.begin(), window.strides.end(), [](int64_t s) { return s == 1; }) &&
      std::all_of(window.pad_begin.begin(), window.pad_begin.end(), [](int64_t p) { return p == 0; }) &&
      out_size == in_size;
  const std::vector<int64_t> offsets =
      two_d || pointwise ? std::vector<int64_t>{} : WindowOffsets(window, out_spatial, in_spatial);
  // Work items are (image, group, column tile): the tile keeps the im2col
  // buffer cache-sized and, for small batches, gives every thread work.
  const int64_t images = batch * group;
  int64_t tile = std::min(out_size, std::max<int64_t>(64, (int64_t{1} << 17) / col_rows));
  if (images < threads) {
    const int64_t per_image = (threads + images - 1) / images;
    tile = std::min(tile, std::max<int64_t>(16, (out_size + per_image - 1) / per_image));
  }
  tile = std::max<int64_t>(1, tile);
  if (pool_window) tile = out_size;  // pooling needs whole images
  const int64_t tiles = (out_size + tile - 1) / tile;
  const bool fast = FastGemmAvailable();
  const int64_t min_items = std::max<int64_t>(
      1, (fast ? kMinFastMultiplyAddsPerThread : kMinMultiplyAddsPerThread) /
             std::max<int64_t>(1, group_out * col_rows * tile));
  ParallelFor(images * tiles, min_items, threads, [&](int64_t begin, int64_t end) {
    // Scratch: the im2col columns, then (pooling) the group's Conv output.
    const int64_t col_floats = pointwise ? 0 : col_rows * tile;
    float* scratch = ThreadScratch(
        static_cast<size_t>(col_floats + (pool_window ? group_out * out_size : 0)));
    float* col = pointwise ? nullptr : scratch;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / (group * tiles), g = (item / tiles) % group;
      const int64_t first = (item % tiles) * tile, width = std::min(tile, out_size - first);
      const float* in = input.data() + (n * channels + g * group_in) * in_size;
      float* conv_out = pool_window
                            ? scratch + col_floats
                            : output.data() + (n * out_channels + g * group_out) * out_size + first;
      StridedMatrixMap out(conv_out, group_out, width, Eigen::OuterStride<>(out_size));
      ConstMatrixMap w_g(weights.data() + g * group_out * col_rows, group_out, col_rows);
      // FastGemm adds the bias and applies the Relu as it stores each tile.
      GemmEpilogue epilogue;
      epilogue.row_bias = bias ? bias->data() + g * group_out : nullptr;
      epilogue.relu = relu;
      if (pointwise && fast) {
        FastGemm(false, group_out, width, col_rows, 1.0f, w_g.data(), col_rows, in + first,
                 in_size, out.data(), out_size, epilogue);
      } else if (pointwise) {
        out.noalias() = w_g * ConstStridedMatrixMap(in + first, col_rows, width,
                                                    Eigen::OuterStride<>(in_size));
      } else {
        if (two_d) {
          Im2Col2d(in, group_in, in_spatial, out_spatial, window, first, width, col);
        } else {
          for (int64_t row = 0; row < col_rows; ++row) {
            const float* plane = in + (row / kernel_size) * in_size;
            const int64_t* offset = offsets.data() + (row % kernel_size) * out_size + first;
            float* dst = col + row * width;
            for (int64_t o = 0; o < width; ++o) dst[o] = offset[o] >= 0 ? plane[offset[o]] : 0.0f;
          }
        }
        if (fast) {
          FastGemm(false, group_out, width, col_rows, 1.0f, w_g.data(), col_rows, col, width,
                   out.data(), out_size, epilogue);
        } else {
          out.noalias() = w_g * ConstMatrixMap(col, col_rows, width);
        }
      }
      if (!fast) BiasRelu(out.data(), group_out, width, out_size, epilogue.row_bias, relu);
      if (pool_window) {
        MaxPool2d(conv_out, group_out, out_spatial, pooled_spatial, *pool_window,
                  output.data() + (n * out_channels + g * group_out) * pooled_size, 1);
      }
    }
  });
  return OneOutput(output.Finish());
}

KernelResult ConvTranspose(const KernelCall& call, int threads) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  SQ_ASSIGN_OR_RETURN(const Tensor* w, RequiredInput(call, 1));
  SQ_RETURN_IF_ERROR(RequireFloat(call, *x));
  if (x->rank() < 3 || w->rank() != x->rank()) {
    return absl::InvalidArgumentError("ConvTranspose needs X and W of equal rank >= 3");
  }
  const graph::Node& node = call.node;
  const int64_t group = node.IntAttribute("group", 1);
  const int64_t batch = x->shape()[0], channels = x->shape()[1];
  if (group <= 0 || channels % group != 0 || w->shape()[0] != channels) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ConvTranspose: W ", graph::ShapeToString(w->shape()), " does not fit ",
        channels, " input channels"));
  }
  const int64_t group_in = channels / group, group_out = w->shape()[1];
  const int64_t out_channels = group_out * group;
  const std::vector<int64_t> in_spatial(x->shape().begin() + 2, x->shape().end());
  const std::vector<int64_t> kernel(w->shape().begin() + 2, w->shape().end());
  const size_t dims = kernel.size();
  SQ_ASSIGN_OR_RETURN(Window window, ReadWindow(node, kernel));
  std::vector<int64_t> output_padding = node.IntsAttribute("output_padding");
  if (output_padding.empty()) output_padding.assign(dims, 0);
  std::vector<int64_t> output_shape = node.IntsAttribute("output_shape");
  if (output_shape.size() > dims) {
    output_shape.erase(output_shape.begin(), output_shape.end() - dims);
  }
  const std::string auto_pad = node.StringAttribute("auto_pad", "NOTSET");
  std::vector<int64_t> out_spatial(dims);
  for (size_t d = 0; d < dims; ++d) {
    const int64_t full = window.strides[d] * (in_spatial[d] - 1) + output_padding[d] +
                         (kernel[d] - 1) * window.dilations[d] + 1;
    if (!output_shape.empty() || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      out_spatial[d] = output_shape.empty() ? in_spatial[d] * window.strides[d]
                                            : output_shape[d];
      const int64_t total = std::max<int64_t>(0, full - out_spatial[d]);
      if (auto_pad == "SAME_UPPER") {
        window.pad_begin[d] = total / 2;
      } else {
        window.pad_begin[d] = total - total / 2;
      }
      window.pad_end[d] = total - window.pad_begin[d];
    } else {
      if (auto_pad == "VALID") window.pad_begin[d] = window.pad_end[d] = 0;
      out_spatial[d] = full - window.pad_begin[d] - window.pad_end[d];
    }
    if (out_spatial[d] <= 0) {
      return absl::InvalidArgumentError("ConvTranspose output would be empty");
    }
  }
  const int64_t kernel_size = Product(kernel), in_size = Product(in_spatial);
  const int64_t out_size = Product(out_spatial);
  const int64_t col_rows = group_out * kernel_size;
  const std::vector<float> input = x->ToFloats();
  const std::vector<float> weights = w->ToFloats();
  const std::vector<float> bias = OptionalFloats(call.input(2));
  const std::vector<int64_t> out_shape = BatchChannelShape(batch, out_channels, out_spatial);
  std::vector<float> output(static_cast<size_t>(Product(out_shape)), 0.0f);

  const std::vector<int64_t> offsets = WindowOffsets(window, in_spatial, out_spatial);
  ParallelFor(batch * group, 1, threads, [&](int64_t begin, int64_t end) {
    RowMatrix col(col_rows, in_size);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / group, g = item % group;
      ConstMatrixMap w_g(weights.data() + g * group_in * col_rows, group_in, col_rows);
      ConstMatrixMap x_g(input.data() + (n * channels + g * group_in) * in_size,
                         group_in, in_size);
      col.noalias() = w_g.transpose() * x_g;
      float* out = output.data() + (n * out_channels + g * group_out) * out_size;
      for (int64_t row = 0; row < col_rows; ++row) {
        float* plane = out + (row / kernel_size) * out_size;
        const int64_t* offset = offsets.data() + (row % kernel_size) * in_size;
        for (int64_t i = 0; i < in_size; ++i) {
          if (offset[i] >= 0) plane[offset[i]] += col(row, i);
        }
      }
      if (!bias.empty()) {
        for (int64_t m = 0; m < group_out; ++m) {
          for (int64_t o = 0; o < out_size; ++o) out[m * out_size + o] += bias[g * group_out + m];
        }
      }
    }
  });
  return OneOutput(FloatTensorAs(x->dtype(), out_shape, output));
}

// MaxPool over `planes` float32 2-D planes without dilation: each output
// reads its clipped window directly (padding never wins a max).
void MaxPool2d(const float* input, int64_t planes, const std::vector<int64_t>& in_spatial,
               const std::vector<int64_t>& out_spatial, const Window& window,
               float* output, int threads) {
  const int64_t in_h = in_spatial[0], in_w = in_spatial[1];
  const int64_t out_h = out_spatial[0], out_w = out_spatial[1];
  const int64_t kernel_h = window.kernel[0], kernel_w = window.kernel[1];
  const int64_t stride_h = window.strides[0], stride_w = window.strides[1];
  const int64_t pad_h = window.pad_begin[0], pad_w = window.pad_begin[1];
  // The common 2x2 window with stride 2 inside the input: a fixed four-way
  // max in the same order as the general loop below.
  const bool two_by_two = kernel_h == 2 && kernel_w == 2 && stride_h == 2 && stride_w == 2 &&
                          pad_h == 0 && pad_w == 0 && 2 * out_h <= in_h && 2 * out_w <= in_w;
  ParallelFor(planes, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, out_h * out_w)),
              threads, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const float* in = input + plane * in_h * in_w;
      float* out = output + plane * out_h * out_w;
      if (two_by_two) {
        for (int64_t oh = 0; oh < out_h; ++oh) {
          const float* top = in + 2 * oh * in_w;
          const float* bottom = top + in_w;
          float* dst = out + oh * out_w;
          for (int64_t ow = 0; ow < out_w; ++ow) {
            float best = std::max(-std::numeric_limits<float>::infinity(), top[2 * ow]);
            best = std::max(best, top[2 * ow + 1]);
            best = std::max(best, bottom[2 * ow]);
            dst[ow] = std::max(best, bottom[2 * ow + 1]);
          }
        }
        continue;
      }
      for (int64_t oh = 0; oh < out_h; ++oh) {
        const int64_t h0 = oh * stride_h - pad_h;
        const int64_t h_begin = std::max<int64_t>(0, h0);
        const int64_t h_end = std::min(in_h, h0 + kernel_h);
        for (int64_t ow = 0; ow < out_w; ++ow) {
          const int64_t w0 = ow * stride_w - pad_w;
          const int64_t w_begin = std::max<int64_t>(0, w0);
          const int64_t w_end = std::min(in_w, w0 + kernel_w);
          float best = -std::numeric_limits<float>::infinity();
          for (int64_t h = h_begin; h < h_end; ++h) {
            const float* row = in + h * in_w;
            for (int64_t w = w_begin; w < w_end; ++w) best = std::max(best, row[w]);
          }
          out[oh * out_w + ow] = best;
        }
      }
    }
  });
}

KernelResult Pool(const KernelCall& call, int threads, bool is_max) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  // MaxPool also takes 8-bit integers, which float32 holds exactly.
  if (!is_max) SQ_RETURN_IF_ERROR(RequireFloat(call, *x));
  if (x->rank() < 3) return absl::InvalidArgumentError("pooling needs rank >= 3");
  const std::vector<int64_t> in_spatial(x->shape().begin() + 2, x->shape().end());
  const std::vector<int64_t> kernel = call.node.IntsAttribute("kernel_shape");
  if (kernel.size() != in_spatial.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kernel_shape has ", kernel.size(), " dims, input has ", in_spatial.size(),
        " spatial dims"));
  }
  SQ_ASSIGN_OR_RETURN(Window window, ReadWindow(call.node, kernel));
  if (!is_max) window.dilations.assign(kernel.size(), 1);
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> out_spatial,
                      OutputSpatial(call.node, in_spatial, &window));
  const bool count_include_pad = call.node.IntAttribute("count_include_pad", 0) != 0;
  // MaxPool's Indices are row-major offsets, or column-major over the
  // spatial dims when storage_order is 1.
  const bool column_major = call.node.IntAttribute("storage_order", 0) != 0;
  const size_t dims = kernel.size();
  std::vector<int64_t> index_strides = Strides(in_spatial);
  if (column_major) {
    int64_t stride = 1;
    for (size_t d = 0; d < dims; ++d) {
      index_strides[d] = stride;
      stride *= in_spatial[d];
    }
  }
  const int64_t planes = x->shape()[0] * x->shape()[1];
  const int64_t in_size = Product(in_spatial), out_size = Product(out_spatial);
  const int64_t kernel_size = Product(kernel);
  const std::vector<int64_t> out_shape =
      BatchChannelShape(x->shape()[0], x->shape()[1], out_spatial);
  const bool wants_indices =
      is_max && call.node.outputs.size() > 1 && !call.node.outputs[1].empty();
  if (is_max && !wants_indices && x->dtype() == DataType::kFloat32 && dims == 2 &&
      window.dilations[0] == 1 && window.dilations[1] == 1) {
    Tensor out(DataType::kFloat32, out_shape);
    MaxPool2d(x->data<float>(), planes, in_spatial, out_spatial, window,
              out.data<float>(), threads);
    return OneOutput(std::move(out));
  }
  const std::vector<float> input = x->ToFloats();
  std::vector<float> output(static_cast<size_t>(planes * out_size));
  std::vector<int64_t> indices(wants_indices ? output.size() : 0);

  ParallelFor(planes, 4, threads, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> o_index(dims), k_index(dims);
    for (int64_t plane = begin; plane < end; ++plane) {
      const float* in = input.data() + plane * in_size;
      for (int64_t o = 0; o < out_size; ++o) {
        Unflatten(o, out_spatial, &o_index);
        float best = -std::numeric_limits<float>::infinity();
        int64_t best_index = 0;
        double sum = 0;
        int64_t valid = 0, padded = 0;
        for (int64_t k = 0; k < kernel_size; ++k) {
          Unflatten(k, kernel, &k_index);
          int64_t offset = 0, index_offset = 0;
          bool inside = true, in_padded = true;
          for (size_t d = 0; d < dims; ++d) {
            const int64_t pos = o_index[d] * window.strides[d] - window.pad_begin[d] +
                                k_index[d] * window.dilations[d];
            inside = inside && pos >= 0 && pos < in_spatial[d];
            in_padded = in_padded && pos < in_spatial[d] + window.pad_end[d];
            offset = offset * in_spatial[d] + pos;
            index_offset += pos * index_strides[d];
          }
          if (in_padded) ++padded;
          if (!inside) continue;
          ++valid;
          const float value = in[offset];
          if (is_max) {
            if (value > best) {
              best = value;
              best_index = plane * in_size + index_offset;
            }
          } else {
            sum += value;
          }
        }
        if (is_max) {
          output[plane * out_size + o] = best;
          if (wants_indices) indices[plane * out_size + o] = best_index;
        } else {
          const int64_t count = count_include_pad ? padded : valid;
          output[plane * out_size + o] = count > 0 ? static_cast<float>(sum / count) : 0.0f;
        }
      }
    }
  });
  std::vector<Tensor> results = {FloatTensorAs(x->dtype(), out_shape, output)};
  if (wants_indices) {
    results.push_back(Tensor::FromVector(DataType::kInt64, out_shape, indices));
  }
  return results;
}

KernelResult GlobalAveragePool(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  SQ_RETURN_IF_ERROR(RequireFloat(call, *x));
  if (x->rank() < 2) return absl::InvalidArgumentError("GlobalAveragePool needs rank >= 2");
  const int64_t planes = x->shape()[0] * x->shape()[1];
  const int64_t size = Product(x->shape(), 2);
  const std::vector<float> input = x->ToFloats();
  std::vector<float> output(static_cast<size_t>(planes));
  for (int64_t p = 0; p < planes; ++p) {
    double sum = 0;
    for (int64_t i = 0; i < size; ++i) sum += input[p * size + i];
    output[p] = static_cast<float>(sum / std::max<int64_t>(1, size));
  }
  std::vector<int64_t> shape(x->shape().size(), 1);
  shape[0] = x->shape()[0];
  shape[1] = x->shape()[1];
  return OneOutput(FloatTensorAs(x->dtype(), shape, output));
}

// out[rows x cols] = alpha * a * op(b) through FastGemm (a is [rows, inner]
// with row stride lda; op(b) is b [inner, cols], or b^T for b [cols, inner]
// when trans_b), split across threads along the larger of rows and columns
// (columns in tiles of 16) so a batch of a few rows still uses every thread.
void ParallelFastGemm(bool trans_b, int64_t rows, int64_t cols, int64_t inner, float alpha,
                      const float* a, int64_t lda, const float* b, int64_t ldb, float* out,
                      int threads) {
  if (cols > rows) {
    constexpr int64_t kTile = 16;
    const int64_t tiles = (cols + kTile - 1) / kTile;
    ParallelFor(tiles,
                std::max<int64_t>(1, kMinFastMultiplyAddsPerThread /
                                         std::max<int64_t>(1, rows * inner * kTile)),
                threads, [&](int64_t begin, int64_t end) {
                  const int64_t first = begin * kTile, last = std::min(cols, end * kTile);
                  FastGemm(trans_b, rows, last - first, inner, alpha, a, lda,
                           trans_b ? b + first * ldb : b + first, ldb, out + first, cols);
                });
  } else {
    ParallelFor(rows,
                std::max<int64_t>(1, kMinFastMultiplyAddsPerThread /
                                         std::max<int64_t>(1, inner * cols)),
                threads, [&](int64_t begin, int64_t end) {
                  FastGemm(trans_b, end - begin, cols, inner, alpha, a + begin * lda, lda, b, ldb,
                           out + begin * cols, cols);
                });
  }
}

// out[rows x cols] = a * b, rows split across threads.
void ParallelMatMul(const float* a, const float* b, float* out, int64_t rows,
                    int64_t inner, int64_t cols, int threads) {
  if (FastGemmAvailable()) {
    ParallelFastGemm(false, rows, cols, inner, 1.0f, a, inner, b, cols, out, threads);
    return;
  }
  ParallelFor(rows,
              std::max<int64_t>(1, kMinMultiplyAddsPerThread / std::max<int64_t>(1, inner * cols)),
              threads, [&](int64_t begin, int64_t end) {
                ConstMatrixMap a_map(a + begin * inner, end - begin, inner);
                ConstMatrixMap b_map(b, inner, cols);
                MatrixMap out_map(out + begin * cols, end - begin, cols);
                out_map.noalias() = a_map * b_map;
              });
}

KernelResult MatMul(const KernelCall& call, int threads) {
  SQ_ASSIGN_OR_RETURN(const Tensor* a, RequiredInput(call, 0));
  SQ_ASSIGN_OR_RETURN(const Tensor* b, RequiredInput(call, 1));
  SQ_RETURN_IF_ERROR(RequireFloat(call, *a));
  SQ_ASSIGN_OR_RETURN(const bool relu, FusedRelu(call));
  std::vector<int64_t> a_shape = a->shape(), b_shape = b->shape();
  if (a_shape.empty() || b_shape.empty()) {
    return absl::InvalidArgumentError("MatMul inputs must have rank >= 1");
  }
  const bool a_vector = a_shape.size() == 1, b_vector = b_shape.size() == 1;
  if (a_vector) a_shape.insert(a_shape.begin(), 1);
  if (b_vector) b_shape.push_back(1);
  const int64_t rows = a_shape[a_shape.size() - 2], inner = a_shape.back();
  const int64_t cols = b_shape.back();
  if (b_shape[b_shape.size() - 2] != inner) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MatMul shapes ", graph::ShapeToString(a->shape()), " and ",
        graph::ShapeToString(b->shape()), " do not match"));
  }
  const std::vector<int64_t> a_batch(a_shape.begin(), a_shape.end() - 2);
  const std::vector<int64_t> b_batch(b_shape.begin(), b_shape.end() - 2);
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> batch, BroadcastShapes(a_batch, b_batch));
  const std::vector<int64_t> ia = BroadcastIndex(a_batch, batch);
  const std::vector<int64_t> ib = BroadcastIndex(b_batch, batch);
  const FloatInput av(*a), bv(*b);
  std::vector<int64_t> out_shape = batch;
  if (!a_vector) out_shape.push_back(rows);
  if (!b_vector) out_shape.push_back(cols);
  FloatOutput output(a->dtype(), out_shape);
  if (b_batch.empty()) {
    // One B for every batch of A (a weight): one GEMM over all of A's rows,
    // so each panel of B is loaded once, not once per batch. Same sums.
    const int64_t all_rows = static_cast<int64_t>(ia.size()) * rows;
    ParallelMatMul(av.data(), bv.data(), output.data(), all_rows, inner, cols, threads);
  } else {
    for (size_t i = 0; i < ia.size(); ++i) {
      ParallelMatMul(av.data() + ia[i] * rows * inner, bv.data() + ib[i] * inner * cols,
                     output.data() + i * rows * cols, rows, inner, cols, threads);
    }
  }
  if (relu) {
    BiasRelu(output.data(), 1, static_cast<int64_t>(ia.size()) * rows * cols, 0, nullptr, true);
  }
  return OneOutput(output.Finish());
}

KernelResult Gemm(const KernelCall& call, int threads) {
  SQ_ASSIGN_OR_RETURN(const Tensor* a, RequiredInput(call, 0));
  SQ_ASSIGN_OR_RETURN(const Tensor* b, RequiredInput(call, 1));
  SQ_RETURN_IF_ERROR(RequireFloat(call, *a));
  SQ_ASSIGN_OR_RETURN(const bool relu, FusedRelu(call));
  if (a->rank() != 2 || b->rank() != 2) {
    return absl::InvalidArgumentError("Gemm needs 2-D A and B");
  }
  const bool trans_a = call.node.IntAttribute("transA", 0) != 0;
  const bool trans_b = call.node.IntAttribute("transB", 0) != 0;
  const float alpha = call.node.FloatAttribute("alpha", 1.0f);
  const float beta = call.node.FloatAttribute("beta", 1.0f);
  const int64_t rows = a->shape()[trans_a ? 1 : 0], inner = a->shape()[trans_a ? 0 : 1];
  const int64_t cols = b->shape()[trans_b ? 0 : 1];
  if (b->shape()[trans_b ? 1 : 0] != inner) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Gemm: A ", graph::ShapeToString(a->shape()), " and B ",
        graph::ShapeToString(b->shape()), " do not multiply"));
  }
  const std::vector<int64_t> shape = {rows, cols};
  // C broadcasts onto [rows, cols] as a scalar, a row, a column or a matrix.
  const Tensor* c = beta != 0.0f ? call.input(2) : nullptr;
  int64_t c_rows = 1, c_cols = 1;
  if (c != nullptr) {
    SQ_ASSIGN_OR_RETURN(std::vector<int64_t> c_shape, BroadcastShapes(c->shape(), shape));
    if (c->rank() > 2 || c_shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Gemm: C ", graph::ShapeToString(c->shape()), " does not broadcast to ",
          graph::ShapeToString(shape)));
    }
    if (c->rank() == 2) c_rows = c->shape()[0];
    if (c->rank() >= 1) c_cols = c->shape().back();
  }
  const FloatInput av(*a), bv(*b);
  std::optional<FloatInput> cv;
  if (c != nullptr) cv.emplace(*c);
  FloatOutput output(a->dtype(), shape);
  const ConstMatrixMap a_map(av.data(), a->shape()[0], a->shape()[1]);
  const ConstMatrixMap b_map(bv.data(), b->shape()[0], b->shape()[1]);
  // Adds beta * C to rows [begin, end) of the output, then the fused Relu.
  auto add_c = [&](int64_t begin, int64_t end) {
    float* rows_begin = output.data() + begin * cols;
    if (c == nullptr) {
      if (relu) BiasRelu(rows_begin, 1, (end - begin) * cols, 0, nullptr, true);
      return;
    }
    const float* cd = cv->data();
    if (c_rows == 1 && beta == 1.0f) {
      // The usual bias row: one pass for bias and Relu.
      for (int64_t r = begin; r < end; ++r) {
        float* row = output.data() + r * cols;
        if (c_cols == 1) {
          BiasRelu(row, 1, cols, 0, cd, relu);
        } else if (relu) {
          for (int64_t j = 0; j < cols; ++j) row[j] = std::max(0.0f, row[j] + cd[j]);
        } else {
          for (int64_t j = 0; j < cols; ++j) row[j] += cd[j];
        }
      }
      return;
    }
    MatrixMap out(rows_begin, end - begin, cols);
    if (c_rows == 1 && c_cols == 1) {
      out.array() += beta * cd[0];
    } else if (c_rows == 1) {
      out.rowwise() += beta * Eigen::Map<const Eigen::RowVectorXf>(cd, cols);
    } else if (c_cols == 1) {
      out.colwise() += beta * Eigen::Map<const Eigen::VectorXf>(cd + begin, end - begin);
    } else {
      out += beta * ConstMatrixMap(cd + begin * cols, end - begin, cols);
    }
    if (relu) BiasRelu(rows_begin, 1, (end - begin) * cols, 0, nullptr, true);
  };
  if (FastGemmAvailable()) {
    // The kernels read A as [rows, inner]: a transposed A is copied once.
    std::vector<float> a_transposed;
    if (trans_a) {
      a_transposed.resize(static_cast<size_t>(rows * inner));
      MatrixMap(a_transposed.data(), rows, inner) = a_map.transpose();
    }
    ParallelFastGemm(trans_b, rows, cols, inner, alpha,
                     trans_a ? a_transposed.data() : av.data(), inner, bv.data(),
                     b->shape()[1], output.data(), threads);
    add_c(0, rows);
    return OneOutput(output.Finish());
  }
  const int64_t min_rows = std::max<int64_t>(1, kMinMultiplyAddsPerThread /
                                                    std::max<int64_t>(1, inner * cols));
  ParallelFor(rows, min_rows, threads, [&](int64_t begin, int64_t end) {
    MatrixMap out(output.data() + begin * cols, end - begin, cols);
    // Transposes are expressions: Eigen's GEMM packs either layout directly.
    auto multiply = [&](const auto& a_op, const auto& b_op) {
      if (alpha == 1.0f) {
        out.noalias() = a_op.middleRows(begin, end - begin) * b_op;
      } else {
        out.noalias() = (alpha * a_op.middleRows(begin, end - begin)) * b_op;
      }
    };
    if (trans_a && trans_b) {
      multiply(a_map.transpose(), b_map.transpose());
    } else if (trans_a) {
      multiply(a_map.transpose(), b_map);
    } else if (trans_b) {
      multiply(a_map, b_map.transpose());
    } else {
      multiply(a_map, b_map);
    }
    add_c(begin, end);
  });
  return OneOutput(output.Finish());
}

KernelResult Softmax(const KernelCall& call, bool log) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  SQ_RETURN_IF_ERROR(RequireFloat(call, *x));
  const bool legacy = call.opset_version < 13;
  SQ_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(call.node.IntAttribute("axis", legacy ? 1 : -1),
                                                  x->rank()));
  // Legacy opsets flatten to [outer, inner] at axis; 13+ reduce one axis.
  const int64_t outer = Product(x->shape(), 0, axis);
  const int64_t extent = legacy ? Product(x->shape(), axis) : x->shape()[axis];
  const int64_t inner = legacy ? 1 : Product(x->shape(), axis + 1);
  if (!log && inner == 1 && x->dtype() == DataType::kFloat32) {
    Tensor out(DataType::kFloat32, x->shape());
    SoftmaxRows(x->data<float>(), out.data<float>(), outer, extent);
    return OneOutput(std::move(out));
  }
  std::vector<float> values = x->ToFloats();
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      float* base = values.data() + o * extent * inner + i;
      float max = -std::numeric_limits<float>::infinity();
      for (int64_t k = 0; k < extent; ++k) max = std::max(max, base[k * inner]);
      double sum = 0;
      for (int64_t k = 0; k < extent; ++k) sum += std::exp(base[k * inner] - max);
      for (int64_t k = 0; k < extent; ++k) {
        const float shifted = base[k * inner] - max;
        base[k * inner] = log ? shifted - static_cast<float>(std::log(sum))
                              : static_cast<float>(std::exp(shifted) / sum);
      }
    }
  }
  return OneOutput(FloatTensorAs(x->dtype(), x->shape(), values));
}

KernelResult LayerNormalization(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  SQ_ASSIGN_OR_RETURN(const Tensor* scale, RequiredInput(call, 1));
  SQ_RETURN_IF_ERROR(RequireFloat(call, *x));
  SQ_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(call.node.IntAttribute("axis", -1), x->rank()));
  const float epsilon = call.node.FloatAttribute("epsilon", 1e-5f);
  const int64_t outer = Product(x->shape(), 0, axis), inner = Product(x->shape(), axis);
  const std::vector<int64_t> norm_shape(x->shape().begin() + axis, x->shape().end());
  SQ_RETURN_IF_ERROR(BroadcastShapes(scale->shape(), norm_shape).status());
  const std::vector<int64_t> is = BroadcastIndex(scale->shape(), norm_shape);
  const std::vector<float> sv = scale->ToFloats();
  std::vector<float> bv;
  std::vector<int64_t> ib;
  if (const Tensor* bias = call.input(2)) {
    SQ_RETURN_IF_ERROR(BroadcastShapes(bias->shape(), norm_shape).status());
    bv = bias->ToFloats();
    ib = BroadcastIndex(bias->shape(), norm_shape);
  }
  std::vector<float> values = x->ToFloats();
  std::vector<float> means(outer), inv_std(outer);
  for (int64_t o = 0; o < outer; ++o) {
    float* row = values.data() + o * inner;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < inner; ++i) mean += row[i];
    mean /= inner;
    for (int64_t i = 0; i < inner; ++i) var += (row[i] - mean) * (row[i] - mean);
    var /= inner;
    const double inv = 1.0 / std::sqrt(var + epsilon);
    means[o] = static_cast<float>(mean);
    inv_std[o] = static_cast<float>(inv);
    for (int64_t i = 0; i < inner; ++i) {
      row[i] = static_cast<float>((row[i] - mean) * inv) * sv[is[i]] + (bv.empty() ? 0 : bv[ib[i]]);
    }
  }
  std::vector<int64_t> stat_shape = x->shape();
  for (size_t d = axis; d < stat_shape.size(); ++d) stat_shape[d] = 1;
  return std::vector<Tensor>{FloatTensorAs(x->dtype(), x->shape(), values),
                             Tensor::FromVector(DataType::kFloat32, stat_shape, means),
                             Tensor::FromVector(DataType::kFloat32, stat_shape, inv_std)};
}

KernelResult BatchNormalization(const KernelCall& call) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  std::vector<std::vector<float>> params;
  for (size_t i = 1; i <= 4; ++i) {
    SQ_ASSIGN_OR_RETURN(const Tensor* param, RequiredInput(call, i));
    params.push_back(param->ToFloats());
  }
  SQ_RETURN_IF_ERROR(RequireFloat(call, *x));
  if (x->rank() < 2) return absl::InvalidArgumentError("BatchNormalization needs rank >= 2");
  const int64_t batch = x->shape()[0], channels = x->shape()[1];
  for (const auto& param : params) {
    if (static_cast<int64_t>(param.size()) != channels) {
      return absl::InvalidArgumentError(absl::StrCat(
          "BatchNormalization parameters need ", channels, " elements, got ", param.size()));
    }
  }
  const float epsilon = call.node.FloatAttribute("epsilon", 1e-5f);
  const float momentum = call.node.FloatAttribute("momentum", 0.9f);
  const bool training = call.node.IntAttribute("training_mode", 0) != 0;
  const int64_t size = Product(x->shape(), 2);
  std::vector<float> values = x->ToFloats();
  std::vector<float> mean = params[2], var = params[3];
  if (training) {
    for (int64_t c = 0; c < channels; ++c) {
      double sum = 0, sum_sq = 0;
      for (int64_t n = 0; n < batch; ++n) {
        for (int64_t i = 0; i < size; ++i) {
          const double v = values[(n * channels + c) * size + i];
          sum += v;
          sum_sq += v * v;
        }
      }
      const double count = static_cast<double>(batch * size);
      mean[c] = static_cast<float>(sum / count);
      var[c] = static_cast<float>(sum_sq / count - (sum / count) * (sum / count));
    }
  }
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      const float inv = 1.0f / std::sqrt(var[c] + epsilon);
      float* plane = values.data() + (n * channels + c) * size;
      for (int64_t i = 0; i < size; ++i) {
        plane[i] = (plane[i] - mean[c]) * inv * params[0][c] + params[1][c];
      }
    }
  }
  std::vector<Tensor> results = {FloatTensorAs(x->dtype(), x->shape(), values)};
  if (training) {
    std::vector<float> running_mean(channels), running_var(channels);
    for (int64_t c = 0; c < channels; ++c) {
      running_mean[c] = params[2][c] * momentum + mean[c] * (1 - momentum);
      running_var[c] = params[3][c] * momentum + var[c] * (1 - momentum);
    }
    results.push_back(FloatTensorAs(call.input(3)->dtype(), {channels}, running_mean));
    results.push_back(FloatTensorAs(call.input(4)->dtype(), {channels}, running_var));
  }
  return results;
}

enum class Reduction { kSum, kMean, kMax };

KernelResult Reduce(const KernelCall& call, Reduction reduction) {
  SQ_ASSIGN_OR_RETURN(const Tensor* x, RequiredInput(call, 0));
  std::vector<int64_t> axes = call.node.IntsAttribute("axes");
  if (call.input(1)) axes = call.input(1)->ToInt64s();
  const bool keepdims = call.node.IntAttribute("keepdims", 1) != 0;
  const bool noop_empty = call.node.IntAttribute("noop_with_empty_axes", 0) != 0;
  if (axes.empty() && noop_empty) return OneOutput(*x);
  std::vector<bool> reduced(x->rank(), axes.empty());
  for (int64_t axis : axes) {
    SQ_ASSIGN_OR_RETURN(int64_t normalized, NormalizeAxis(axis, x->rank()));
    reduced[normalized] = true;
  }
  std::vector<int64_t> kept_shape = x->shape(), out_shape;
  for (int64_t d = 0; d < x->rank(); ++d) {
    if (reduced[d]) kept_shape[d] = 1;
    if (!reduced[d] || keepdims) out_shape.push_back(kept_shape[d]);
  }
  const int64_t out_count = Product(kept_shape);
  // float32 reduced over trailing axes: contiguous rows, summed in double.
  int64_t first_reduced = x->rank();
  while (first_reduced > 0 && reduced[first_reduced - 1]) --first_reduced;
  const bool trailing = std::find(reduced.begin(), reduced.begin() + first_reduced, true) ==
                        reduced.begin() + first_reduced;
  if (x->dtype() == DataType::kFloat32 && trailing && reduction != Reduction::kMax &&
      out_count > 0) {
    const int64_t row = x->num_elements() / out_count;
    Tensor out(DataType::kFloat32, out_shape);
    const float* in = x->data<float>();
    float* dst = out.data<float>();
    for (int64_t o = 0; o < out_count; ++o) {
      double sum = 0;
      for (int64_t i = 0; i < row; ++i) sum += in[o * row + i];
      dst[o] = static_cast<float>(reduction == Reduction::kMean && row > 0 ? sum / row : sum);
    }
    return OneOutput(std::move(out));
  }
  const std::vector<int64_t> target = BroadcastIndex(kept_shape, x->shape());
  const std::vector<double> values = x->ToDoubles();
  const double init = reduction == Reduction::kMax ? -std::numeric_limits<double>::infinity() : 0.0;
  std::vector<double> out(static_cast<size_t>(out_count), init);
  for (size_t i = 0; i < values.size(); ++i) {
    double& slot = out[target[i]];
    slot = reduction == Reduction::kMax ? std::max(slot, values[i]) : slot + values[i];
  }
  if (reduction == Reduction::kMean && out_count > 0) {
    const double count = static_cast<double>(values.size()) / static_cast<double>(out_count);
    for (double& value : out) value /= count;
  }
  return OneOutput(graph::TensorFromDoubles(x->dtype(), out_shape, out));
}

}  // namespace

void RegisterNeuralNetKernels(KernelRegistry* registry) {
  (*registry)["Conv"] = Conv;
  (*registry)["ConvTranspose"] = ConvTranspose;
  (*registry)["MatMul"] = MatMul;
  (*registry)["Gemm"] = Gemm;
  (*registry)["MaxPool"] = [](const KernelCall& c, int t) { return Pool(c, t, true); };
  (*registry)["AveragePool"] = [](const KernelCall& c, int t) { return Pool(c, t, false); };
  (*registry)["GlobalAveragePool"] = [](const KernelCall& c, int) { return GlobalAveragePool(c); };
  (*registry)["Softmax"] = [](const KernelCall& c, int) { return Softmax(c, false); };
  (*registry)["LogSoftmax"] = [](const KernelCall& c, int) { return Softmax(c, true); };
  (*registry)["LayerNormalization"] = [](const KernelCall& c, int) { return LayerNormalization(c); };
  (*registry)["BatchNormalization"] = [](const KernelCall& c, int) { return BatchNormalization(c); };
  (*registry)["ReduceSum"] = [](const KernelCall& c, int) { return Reduce(c, Reduction::kSum); };
  (*registry)["ReduceMean"] = [](const KernelCall& c, int) { return Reduce(c, Reduction::kMean); };
  (*registry)["ReduceMax"] = [](const KernelCall& c, int) { return Reduce(c, Reduction::kMax); };
}

}  // namespace squeeze::core::kernels::cpu
