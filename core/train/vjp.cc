// Vector-Jacobian products of the differentiable operators, on float32.
// Each function receives the forward inputs and outputs and the gradients of
// the outputs, and returns the gradients of the inputs it was asked for.
// Broadcasting is undone by summing (Unbroadcast); convolution and matrix
// products go through Eigen.
#include "core/train/vjp.h"

#include <Eigen/Dense>
#include <cmath>
#include <mutex>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/kernel_util.h"
#include "core/status_macros.h"

namespace squeeze::core::train {
namespace {

using graph::DataType;
using graph::Tensor;
using kernels::cpu::BroadcastIndex;
using kernels::cpu::ParallelFor;
using kernels::cpu::Strides;
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<RowMatrix>;
using ConstMatrixMap = Eigen::Map<const RowMatrix>;
using Gradients = std::vector<std::optional<Tensor>>;

constexpr int kThreads = 2;

Tensor Zeros(const std::vector<int64_t>& shape) { return Tensor(DataType::kFloat32, shape); }

int64_t Product(const std::vector<int64_t>& dims, size_t begin, size_t end) {
  int64_t product = 1;
  for (size_t i = begin; i < end && i < dims.size(); ++i) product *= dims[i];
  return product;
}

absl::Status RequireFloat32(const VjpCall& call, const Tensor* tensor, const char* what) {
  if (tensor == nullptr) return absl::InvalidArgumentError(absl::StrCat(what, " is missing"));
  if (tensor->dtype() != DataType::kFloat32) {
    return absl::UnimplementedError(absl::StrCat(what, " is ", graph::DataTypeName(tensor->dtype()),
                                                 "; gradients are float32 only"));
  }
  return absl::OkStatus();
}

// Sums `gradient` (of a broadcast result) back onto `shape`.
Tensor Unbroadcast(const Tensor& gradient, const std::vector<int64_t>& shape) {
  if (gradient.shape() == shape) return gradient;
  Tensor result = Zeros(shape);
  const std::vector<int64_t> index = BroadcastIndex(shape, gradient.shape());
  const float* g = gradient.data<float>();
  float* r = result.data<float>();
  for (size_t i = 0; i < index.size(); ++i) r[index[i]] += g[i];
  return result;
}

// The output gradient (the only output for single-output operators).
const Tensor& OutputGradient(const VjpCall& call) { return *call.output_gradients[0]; }

Gradients Sized(const VjpCall& call) { return Gradients(call.inputs.size()); }

// Unary elementwise: dx = dy * f(x, y).
VjpResult Unary(const VjpCall& call, const std::function<float(float x, float y)>& local) {
  SQ_RETURN_IF_ERROR(RequireFloat32(call, call.inputs[0], "input"));
  const Tensor& dy = OutputGradient(call);
  Tensor dx = Zeros(call.inputs[0]->shape());
  const float* x = call.inputs[0]->data<float>();
  const float* y = call.outputs[0]->data<float>();
  const float* g = dy.data<float>();
  float* out = dx.data<float>();
  for (int64_t i = 0; i < dx.num_elements(); ++i) out[i] = g[i] * local(x[i], y[i]);
  Gradients result = Sized(call);
  result[0] = std::move(dx);
  return result;
}

// Binary elementwise with broadcasting: da = dy * fa(a, b, y), db = dy * fb(...).
VjpResult Binary(const VjpCall& call, const std::function<float(float, float, float)>& da_local,
                 const std::function<float(float, float, float)>& db_local) {
  const Tensor* a = call.inputs[0];
  const Tensor* b = call.inputs[1];
  SQ_RETURN_IF_ERROR(RequireFloat32(call, a, "input A"));
  SQ_RETURN_IF_ERROR(RequireFloat32(call, b, "input B"));
  const Tensor& dy = OutputGradient(call);
  const std::vector<int64_t> a_index = BroadcastIndex(a->shape(), dy.shape());
  const std::vector<int64_t> b_index = BroadcastIndex(b->shape(), dy.shape());
  const float* av = a->data<float>();
  const float* bv = b->data<float>();
  const float* yv = call.outputs[0]->data<float>();
  const float* g = dy.data<float>();
  Gradients result = Sized(call);
  if (call.wanted[0]) {
    Tensor da = Zeros(a->shape());
    float* out = da.data<float>();
    for (size_t i = 0; i < a_index.size(); ++i) {
      out[a_index[i]] += g[i] * da_local(av[a_index[i]], bv[b_index[i]], yv[i]);
    }
    result[0] = std::move(da);
  }
  if (call.wanted[1]) {
    Tensor db = Zeros(b->shape());
    float* out = db.data<float>();
    for (size_t i = 0; i < b_index.size(); ++i) {
      out[b_index[i]] += g[i] * db_local(av[a_index[i]], bv[b_index[i]], yv[i]);
    }
    result[1] = std::move(db);
  }
  return result;
}

// Gradient that only reshapes: Reshape, Flatten, Squeeze, Unsqueeze, Identity, Cast.
VjpResult SameElements(const VjpCall& call) {
  Tensor dx = OutputGradient(call);
  SQ_RETURN_IF_ERROR(dx.Reshape(call.inputs[0]->shape()));
  Gradients result = Sized(call);
  result[0] = std::move(dx);
  return result;
}

VjpResult Expand(const VjpCall& call) {
  Gradients result = Sized(call);
  result[0] = Unbroadcast(OutputGradient(call), call.inputs[0]->shape());
  return result;
}

// ---- Matrix products ----

// y = A B with numpy broadcasting of batch dims and 1-D promotion.
VjpResult MatMul(const VjpCall& call) {
  const Tensor* a = call.inputs[0];
  const Tensor* b = call.inputs[1];
  SQ_RETURN_IF_ERROR(RequireFloat32(call, a, "input A"));
  SQ_RETURN_IF_ERROR(RequireFloat32(call, b, "input B"));
  std::vector<int64_t> as = a->shape(), bs = b->shape();
  if (as.size() == 1) as.insert(as.begin(), 1);
  if (bs.size() == 1) bs.push_back(1);
  const int64_t m = as[as.size() - 2], k = as.back(), n = bs.back();
  std::vector<int64_t> a_batch(as.begin(), as.end() - 2), b_batch(bs.begin(), bs.end() - 2);
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> batch, kernels::cpu::BroadcastShapes(a_batch, b_batch));
  const int64_t batches = Product(batch, 0, batch.size());
  const std::vector<int64_t> a_of = BroadcastIndex(a_batch, batch);
  const std::vector<int64_t> b_of = BroadcastIndex(b_batch, batch);
  const float* dy = OutputGradient(call).data<float>();
  Gradients result = Sized(call);
  Tensor da = Zeros(a->shape()), db = Zeros(b->shape());
  for (int64_t i = 0; i < batches; ++i) {
    ConstMatrixMap g(dy + i * m * n, m, n);
    ConstMatrixMap am(a->data<float>() + a_of[i] * m * k, m, k);
    ConstMatrixMap bm(b->data<float>() + b_of[i] * k * n, k, n);
    if (call.wanted[0]) MatrixMap(da.data<float>() + a_of[i] * m * k, m, k).noalias() += g * bm.transpose();
    if (call.wanted[1]) MatrixMap(db.data<float>() + b_of[i] * k * n, k, n).noalias() += am.transpose() * g;
  }
  if (call.wanted[0]) result[0] = std::move(da);
  if (call.wanted[1]) result[1] = std::move(db);
  return result;
}

// y = alpha * A' B' + beta * C, A' = transA ? A^T : A, B' likewise.
VjpResult Gemm(const VjpCall& call) {
  const Tensor* a = call.inputs[0];
  const Tensor* b = call.inputs[1];
  SQ_RETURN_IF_ERROR(RequireFloat32(call, a, "input A"));
  SQ_RETURN_IF_ERROR(RequireFloat32(call, b, "input B"));
  const bool trans_a = call.node.IntAttribute("transA", 0) != 0;
  const bool trans_b = call.node.IntAttribute("transB", 0) != 0;
  const float alpha = call.node.FloatAttribute("alpha", 1.0f);
  const float beta = call.node.FloatAttribute("beta", 1.0f);
  const Tensor& dy = OutputGradient(call);
  const int64_t m = dy.shape()[0], n = dy.shape()[1];
  const int64_t k = trans_a ? a->shape()[0] : a->shape()[1];
  ConstMatrixMap g(dy.data<float>(), m, n);
  Gradients result = Sized(call);
  if (call.wanted[0]) {
    Tensor da = Zeros(a->shape());
    ConstMatrixMap bm(b->data<float>(), b->shape()[0], b->shape()[1]);
    RowMatrix d = alpha * (trans_b ? RowMatrix(g * bm) : RowMatrix(g * bm.transpose()));  // m x k
    if (trans_a) {
      MatrixMap(da.data<float>(), k, m) = d.transpose();
    } else {
      MatrixMap(da.data<float>(), m, k) = d;
    }
    result[0] = std::move(da);
  }
  if (call.wanted[1]) {
    Tensor db = Zeros(b->shape());
    ConstMatrixMap am(a->data<float>(), a->shape()[0], a->shape()[1]);
    RowMatrix d = alpha * (trans_a ? RowMatrix(am * g) : RowMatrix(am.transpose() * g));  // k x n
    if (trans_b) {
      MatrixMap(db.data<float>(), n, k) = d.transpose();
    } else {
      MatrixMap(db.data<float>(), k, n) = d;
    }
    result[1] = std::move(db);
  }
  if (call.inputs.size() > 2 && call.inputs[2] != nullptr && call.wanted[2]) {
    Tensor dc = Unbroadcast(dy, call.inputs[2]->shape());
    float* c = dc.data<float>();
    for (int64_t i = 0; i < dc.num_elements(); ++i) c[i] *= beta;
    result[2] = std::move(dc);
  }
  return result;
}

// ---- Convolution and pooling (2-D, explicit or VALID padding) ----

struct Window2d {
  int64_t kh, kw, sh, sw, dh, dw, pt, pl;
};

absl::StatusOr<Window2d> ReadWindow2d(const VjpCall& call, int64_t kh, int64_t kw) {
  const std::string auto_pad = call.node.StringAttribute("auto_pad", "NOTSET");
  if (auto_pad != "NOTSET" && auto_pad != "VALID") {
    return absl::UnimplementedError(absl::StrCat("auto_pad ", auto_pad, " has no gradient yet"));
  }
  std::vector<int64_t> strides = call.node.IntsAttribute("strides");
  std::vector<int64_t> dilations = call.node.IntsAttribute("dilations");
  std::vector<int64_t> pads = call.node.IntsAttribute("pads");
  if (strides.empty()) strides = {1, 1};
  if (dilations.empty()) dilations = {1, 1};
  if (pads.empty() || auto_pad == "VALID") pads = {0, 0, 0, 0};
  if (strides.size() != 2 || dilations.size() != 2 || pads.size() != 4) {
    return absl::UnimplementedError("gradients exist for 2-D windows only");
  }
  return Window2d{kh, kw, strides[0], strides[1], dilations[0], dilations[1], pads[0], pads[1]};
}

VjpResult Conv(const VjpCall& call) {
  const Tensor* x = call.inputs[0];
  const Tensor* w = call.inputs[1];
  SQ_RETURN_IF_ERROR(RequireFloat32(call, x, "input X"));
  SQ_RETURN_IF_ERROR(RequireFloat32(call, w, "input W"));
  if (x->rank() != 4) return absl::UnimplementedError("Conv gradients exist for 2-D convolutions only");
  const Tensor& dy = OutputGradient(call);
  const int64_t batch = x->shape()[0], channels = x->shape()[1], height = x->shape()[2],
                width = x->shape()[3];
  const int64_t filters = w->shape()[0], group_channels = w->shape()[1];
  const int64_t groups = call.node.IntAttribute("group", 1);
  const int64_t out_h = dy.shape()[2], out_w = dy.shape()[3];
  SQ_ASSIGN_OR_RETURN(Window2d win, ReadWindow2d(call, w->shape()[2], w->shape()[3]));
  const int64_t group_filters = filters / groups;
  const int64_t patch = group_channels * win.kh * win.kw;
  const int64_t positions = out_h * out_w;

  Tensor dx = Zeros(x->shape()), dw = Zeros(w->shape());
  std::mutex dw_mu;
  const float* xv = x->data<float>();
  const float* wv = w->data<float>();
  const float* gv = dy.data<float>();
  float* dxv = dx.data<float>();
  ParallelFor(batch, 1, kThreads, [&](int64_t begin, int64_t end) {
    RowMatrix local_dw = RowMatrix::Zero(filters, patch);
    RowMatrix cols(patch, positions), dcols(patch, positions);
    for (int64_t n = begin; n < end; ++n) {
      for (int64_t g = 0; g < groups; ++g) {
        // im2col of this image and group.
        for (int64_t c = 0; c < group_channels; ++c) {
          const float* plane = xv + ((n * channels) + g * group_channels + c) * height * width;
          for (int64_t i = 0; i < win.kh; ++i) {
            for (int64_t j = 0; j < win.kw; ++j) {
              float* row = cols.data() + ((c * win.kh + i) * win.kw + j) * positions;
              for (int64_t oh = 0; oh < out_h; ++oh) {
                const int64_t ih = oh * win.sh - win.pt + i * win.dh;
                for (int64_t ow = 0; ow < out_w; ++ow) {
                  const int64_t iw = ow * win.sw - win.pl + j * win.dw;
                  row[oh * out_w + ow] = (ih >= 0 && ih < height && iw >= 0 && iw < width)
                                             ? plane[ih * width + iw]
                                             : 0.0f;
                }
              }
            }
          }
        }
        ConstMatrixMap g_out(gv + (n * filters + g * group_filters) * positions, group_filters,
                             positions);
        if (call.wanted[1]) local_dw.middleRows(g * group_filters, group_filters).noalias() += g_out * cols.transpose();
        if (!call.wanted[0]) continue;
        ConstMatrixMap wg(wv + g * group_filters * patch, group_filters, patch);
        dcols.noalias() = wg.transpose() * g_out;
        // col2im: scatter-add the patch gradients back onto the image.
        for (int64_t c = 0; c < group_channels; ++c) {
          float* plane = dxv + ((n * channels) + g * group_channels + c) * height * width;
          for (int64_t i = 0; i < win.kh; ++i) {
            for (int64_t j = 0; j < win.kw; ++j) {
              const float* row = dcols.data() + ((c * win.kh + i) * win.kw + j) * positions;
              for (int64_t oh = 0; oh < out_h; ++oh) {
                const int64_t ih = oh * win.sh - win.pt + i * win.dh;
                if (ih < 0 || ih >= height) continue;
                for (int64_t ow = 0; ow < out_w; ++ow) {
                  const int64_t iw = ow * win.sw - win.pl + j * win.dw;
                  if (iw >= 0 && iw < width) plane[ih * width + iw] += row[oh * out_w + ow];
                }
              }
            }
          }
        }
      }
    }
    if (call.wanted[1]) {
      std::lock_guard<std::mutex> lock(dw_mu);
      MatrixMap(dw.data<float>(), filters, patch) += local_dw;
    }
  });
  Gradients result = Sized(call);
  if (call.wanted[0]) result[0] = std::move(dx);
  if (call.wanted[1]) result[1] = std::move(dw);
  if (call.inputs.size() > 2 && call.inputs[2] != nullptr && call.wanted[2]) {
    Tensor db = Zeros(call.inputs[2]->shape());
    for (int64_t n = 0; n < batch; ++n) {
      for (int64_t f = 0; f < filters; ++f) {
        const float* plane = gv + (n * filters + f) * positions;
        db.data<float>()[f] += std::accumulate(plane, plane + positions, 0.0f);
      }
    }
    result[2] = std::move(db);
  }
  return result;
}

VjpResult Pool(const VjpCall& call, bool max) {
  const Tensor* x = call.inputs[0];
  SQ_RETURN_IF_ERROR(RequireFloat32(call, x, "input X"));
  if (x->rank() != 4) return absl::UnimplementedError("pooling gradients exist for 2-D pools only");
  const std::vector<int64_t> kernel = call.node.IntsAttribute("kernel_shape");
  if (kernel.size() != 2) return absl::InvalidArgumentError("kernel_shape must have 2 entries");
  SQ_ASSIGN_OR_RETURN(Window2d win, ReadWindow2d(call, kernel[0], kernel[1]));
  const bool include_pad = call.node.IntAttribute("count_include_pad", 0) != 0;
  const Tensor& dy = OutputGradient(call);
  const int64_t planes = x->shape()[0] * x->shape()[1];
  const int64_t height = x->shape()[2], width = x->shape()[3];
  const int64_t out_h = dy.shape()[2], out_w = dy.shape()[3];
  Tensor dx = Zeros(x->shape());
  const float* xv = x->data<float>();
  const float* gv = dy.data<float>();
  float* dxv = dx.data<float>();
  ParallelFor(planes, 8, kThreads, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const float* plane = xv + p * height * width;
      float* dplane = dxv + p * height * width;
      for (int64_t oh = 0; oh < out_h; ++oh) {
        for (int64_t ow = 0; ow < out_w; ++ow) {
          const float g = gv[(p * out_h + oh) * out_w + ow];
          int64_t best = -1;
          float best_value = -std::numeric_limits<float>::infinity();
          int64_t count = 0;
          for (int64_t i = 0; i < win.kh; ++i) {
            const int64_t ih = oh * win.sh - win.pt + i * win.dh;
            if (ih < 0 || ih >= height) continue;
            for (int64_t j = 0; j < win.kw; ++j) {
              const int64_t iw = ow * win.sw - win.pl + j * win.dw;
              if (iw < 0 || iw >= width) continue;
              ++count;
              if (max && (best < 0 || plane[ih * width + iw] > best_value)) {
                best = ih * width + iw;
                best_value = plane[best];
              }
            }
          }
          if (max) {
            if (best >= 0) dplane[best] += g;
            continue;
          }
          const float share = g / static_cast<float>(include_pad ? win.kh * win.kw : std::max<int64_t>(count, 1));
          for (int64_t i = 0; i < win.kh; ++i) {
            const int64_t ih = oh * win.sh - win.pt + i * win.dh;
            if (ih < 0 || ih >= height) continue;
            for (int64_t j = 0; j < win.kw; ++j) {
              const int64_t iw = ow * win.sw - win.pl + j * win.dw;
              if (iw >= 0 && iw < width) dplane[ih * width + iw] += share;
            }
          }
        }
      }
    }
  });
  Gradients result = Sized(call);
  result[0] = std::move(dx);
  return result;
}

VjpResult GlobalAveragePool(const VjpCall& call) {
  const Tensor* x = call.inputs[0];
  SQ_RETURN_IF_ERROR(RequireFloat32(call, x, "input X"));
  const int64_t planes = x->shape()[0] * x->shape()[1];
  const int64_t area = Product(x->shape(), 2, x->shape().size());
  Tensor dx = Zeros(x->shape());
  const float* g = OutputGradient(call).data<float>();
  for (int64_t p = 0; p < planes; ++p) {
    std::fill(dx.data<float>() + p * area, dx.data<float>() + (p + 1) * area,
              g[p] / static_cast<float>(area));
  }
  Gradients result = Sized(call);
  result[0] = std::move(dx);
  return result;
}

// ---- Normalisations and softmax ----

// outer x axis_len x inner view of a softmax axis, by the opset's rules.
absl::StatusOr<std::array<int64_t, 3>> SoftmaxLayout(const VjpCall& call, const Tensor& x) {
  const int64_t rank = x.rank();
  const bool modern = call.opset_version >= 13;
  SQ_ASSIGN_OR_RETURN(int64_t axis,
                      kernels::cpu::NormalizeAxis(call.node.IntAttribute("axis", modern ? -1 : 1), rank));
  if (modern) {
    return std::array<int64_t, 3>{Product(x.shape(), 0, axis), x.shape()[axis],
                                  Product(x.shape(), axis + 1, rank)};
  }
  return std::array<int64_t, 3>{Product(x.shape(), 0, axis), Product(x.shape(), axis, rank), 1};
}

VjpResult Softmax(const VjpCall& call, bool log) {
  SQ_RETURN_IF_ERROR(RequireFloat32(call, call.inputs[0], "input"));
  SQ_ASSIGN_OR_RETURN(auto layout, SoftmaxLayout(call, *call.inputs[0]));
  const auto [outer, length, inner] = layout;
  const float* y = call.outputs[0]->data<float>();
  const float* g = OutputGradient(call).data<float>();
  Tensor dx = Zeros(call.inputs[0]->shape());
  float* d = dx.data<float>();
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t base = o * length * inner + i;
      double sum = 0;
      for (int64_t a = 0; a < length; ++a) {
        const int64_t at = base + a * inner;
        sum += log ? g[at] : g[at] * y[at];
      }
      for (int64_t a = 0; a < length; ++a) {
        const int64_t at = base + a * inner;
        d[at] = log ? g[at] - std::exp(y[at]) * static_cast<float>(sum)
                    : y[at] * (g[at] - static_cast<float>(sum));
      }
    }
  }
  Gradients result = Sized(call);
  result[0] = std::move(dx);
  return result;
}

VjpResult LayerNormalization(const VjpCall& call) {
  const Tensor* x = call.inputs[0];
  const Tensor* scale = call.inputs[1];
  SQ_RETURN_IF_ERROR(RequireFloat32(call, x, "input X"));
  SQ_RETURN_IF_ERROR(RequireFloat32(call, scale, "input Scale"));
  SQ_ASSIGN_OR_RETURN(int64_t axis, kernels::cpu::NormalizeAxis(call.node.IntAttribute("axis", -1), x->rank()));
  const float epsilon = call.node.FloatAttribute("epsilon", 1e-5f);
  const int64_t rows = Product(x->shape(), 0, axis);
  const int64_t cols = Product(x->shape(), axis, x->rank());
  const std::vector<int64_t> normalized(x->shape().begin() + axis, x->shape().end());
  const std::vector<int64_t> scale_of = BroadcastIndex(scale->shape(), normalized);
  const float* xv = x->data<float>();
  const float* sv = scale->data<float>();
  const float* g = OutputGradient(call).data<float>();
  Tensor dx = Zeros(x->shape());
  std::vector<float> dscale(cols, 0.0f), dbias(cols, 0.0f);
  std::vector<float> xhat(cols), dxhat(cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = xv + r * cols;
    const float* grow = g + r * cols;
    double mean = 0, var = 0;
    for (int64_t c = 0; c < cols; ++c) mean += row[c];
    mean /= cols;
    for (int64_t c = 0; c < cols; ++c) var += (row[c] - mean) * (row[c] - mean);
    var /= cols;
    const float inv = 1.0f / std::sqrt(static_cast<float>(var) + epsilon);
    double sum_dxhat = 0, sum_dxhat_xhat = 0;
    for (int64_t c = 0; c < cols; ++c) {
      xhat[c] = (row[c] - static_cast<float>(mean)) * inv;
      dxhat[c] = grow[c] * sv[scale_of[c]];
      sum_dxhat += dxhat[c];
      sum_dxhat_xhat += dxhat[c] * xhat[c];
      dscale[c] += grow[c] * xhat[c];
      dbias[c] += grow[c];
    }
    float* drow = dx.data<float>() + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      drow[c] = inv / cols *
                (cols * dxhat[c] - static_cast<float>(sum_dxhat) - xhat[c] * static_cast<float>(sum_dxhat_xhat));
    }
  }
  Gradients result = Sized(call);
  if (call.wanted[0]) result[0] = std::move(dx);
  if (call.wanted[1]) {
    result[1] = Unbroadcast(Tensor::FromVector(DataType::kFloat32, normalized, dscale), scale->shape());
  }
  if (call.inputs.size() > 2 && call.inputs[2] != nullptr && call.wanted[2]) {
    result[2] = Unbroadcast(Tensor::FromVector(DataType::kFloat32, normalized, dbias),
                            call.inputs[2]->shape());
  }
  return result;
}

// Inference-mode BatchNormalization (running statistics): a per-channel
// affine map. Mean and variance get no gradient.
VjpResult BatchNormalization(const VjpCall& call) {
  if (call.node.IntAttribute("training_mode", 0) != 0) {
    return absl::UnimplementedError("training_mode BatchNormalization has no gradient yet");
  }
  const Tensor* x = call.inputs[0];
  for (size_t i = 0; i < 5; ++i) SQ_RETURN_IF_ERROR(RequireFloat32(call, call.inputs[i], "input"));
  const float epsilon = call.node.FloatAttribute("epsilon", 1e-5f);
  const int64_t batch = x->shape()[0], channels = x->shape()[1];
  const int64_t area = Product(x->shape(), 2, x->shape().size());
  const float* xv = x->data<float>();
  const float* scale = call.inputs[1]->data<float>();
  const float* mean = call.inputs[3]->data<float>();
  const float* var = call.inputs[4]->data<float>();
  const float* g = OutputGradient(call).data<float>();
  Tensor dx = Zeros(x->shape()), dscale = Zeros({channels}), dbias = Zeros({channels});
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      const float inv = 1.0f / std::sqrt(var[c] + epsilon);
      const int64_t base = (n * channels + c) * area;
      for (int64_t i = 0; i < area; ++i) {
        dx.data<float>()[base + i] = g[base + i] * scale[c] * inv;
        dscale.data<float>()[c] += g[base + i] * (xv[base + i] - mean[c]) * inv;
        dbias.data<float>()[c] += g[base + i];
      }
    }
  }
  Gradients result = Sized(call);
  if (call.wanted[0]) result[0] = std::move(dx);
  if (call.wanted[1]) result[1] = std::move(dscale);
  if (call.wanted[2]) result[2] = std::move(dbias);
  return result;
}

// ---- Reductions ----

VjpResult Reduce(const VjpCall& call, bool mean, bool max) {
  const Tensor* x = call.inputs[0];
  SQ_RETURN_IF_ERROR(RequireFloat32(call, x, "input"));
  std::vector<int64_t> axes = call.node.IntsAttribute("axes");
  if (call.inputs.size() > 1 && call.inputs[1] != nullptr) axes = call.inputs[1]->ToInt64s();
  const bool noop_empty = call.node.IntAttribute("noop_with_empty_axes", 0) != 0;
  if (axes.empty() && noop_empty) return SameElements(call);
  std::vector<bool> reduced(x->rank(), axes.empty());
  for (int64_t axis : axes) {
    SQ_ASSIGN_OR_RETURN(int64_t a, kernels::cpu::NormalizeAxis(axis, x->rank()));
    reduced[a] = true;
  }
  std::vector<int64_t> kept = x->shape();
  int64_t count = 1;
  for (int64_t a = 0; a < x->rank(); ++a) {
    if (reduced[a]) {
      count *= kept[a];
      kept[a] = 1;
    }
  }
  const std::vector<int64_t> from = BroadcastIndex(kept, x->shape());
  const float* g = OutputGradient(call).data<float>();
  const float* xv = x->data<float>();
  const float* y = call.outputs[0]->data<float>();
  Tensor dx = Zeros(x->shape());
  float* d = dx.data<float>();
  for (size_t i = 0; i < from.size(); ++i) {
    if (max) {
      d[i] = xv[i] == y[from[i]] ? g[from[i]] : 0.0f;  // Ties all receive the gradient.
    } else {
      d[i] = mean ? g[from[i]] / static_cast<float>(count) : g[from[i]];
    }
  }
  Gradients result = Sized(call);
  result[0] = std::move(dx);
  return result;
}

// ---- Data movement ----

VjpResult Transpose(const VjpCall& call) {
  const Tensor& dy = OutputGradient(call);
  const int64_t rank = dy.rank();
  std::vector<int64_t> perm = call.node.IntsAttribute("perm");
  if (perm.empty()) {
    for (int64_t i = rank - 1; i >= 0; --i) perm.push_back(i);
  }
  const std::vector<int64_t>& x_shape = call.inputs[0]->shape();
  const std::vector<int64_t> x_strides = Strides(x_shape);
  Tensor dx = Zeros(x_shape);
  // Output element (i_0..i_r) came from input element with index[perm[k]] = i_k.
  std::vector<int64_t> index(rank, 0);
  const float* g = dy.data<float>();
  for (int64_t flat = 0; flat < dy.num_elements(); ++flat) {
    int64_t source = 0;
    for (int64_t k = 0; k < rank; ++k) source += index[k] * x_strides[perm[k]];
    dx.data<float>()[source] = g[flat];
    for (int64_t k = rank - 1; k >= 0; --k) {
      if (++index[k] < dy.shape()[k]) break;
      index[k] = 0;
    }
  }
  Gradients result = Sized(call);
  result[0] = std::move(dx);
  return result;
}

VjpResult Concat(const VjpCall& call) {
  const Tensor& dy = OutputGradient(call);
  SQ_ASSIGN_OR_RETURN(int64_t axis, kernels::cpu::NormalizeAxis(call.node.IntAttribute("axis", 0), dy.rank()));
  const int64_t outer = Product(dy.shape(), 0, axis);
  const int64_t inner = Product(dy.shape(), axis + 1, dy.rank());
  const int64_t total = dy.shape()[axis];
  Gradients result = Sized(call);
  int64_t offset = 0;
  for (size_t i = 0; i < call.inputs.size(); ++i) {
    const int64_t length = call.inputs[i]->shape()[axis];
    if (call.wanted[i]) {
      Tensor dx = Zeros(call.inputs[i]->shape());
      for (int64_t o = 0; o < outer; ++o) {
        std::copy_n(dy.data<float>() + (o * total + offset) * inner, length * inner,
                    dx.data<float>() + o * length * inner);
      }
      result[i] = std::move(dx);
    }
    offset += length;
  }
  return result;
}

VjpResult Split(const VjpCall& call) {
  const Tensor* x = call.inputs[0];
  SQ_ASSIGN_OR_RETURN(int64_t axis, kernels::cpu::NormalizeAxis(call.node.IntAttribute("axis", 0), x->rank()));
  const int64_t outer = Product(x->shape(), 0, axis);
  const int64_t inner = Product(x->shape(), axis + 1, x->rank());
  const int64_t total = x->shape()[axis];
  Tensor dx = Zeros(x->shape());
  int64_t offset = 0;
  for (size_t i = 0; i < call.outputs.size(); ++i) {
    if (call.outputs[i] == nullptr) continue;
    const int64_t length = call.outputs[i]->shape()[axis];
    if (call.output_gradients[i] != nullptr) {
      for (int64_t o = 0; o < outer; ++o) {
        std::copy_n(call.output_gradients[i]->data<float>() + o * length * inner, length * inner,
                    dx.data<float>() + (o * total + offset) * inner);
      }
    }
    offset += length;
  }
  Gradients result = Sized(call);
  result[0] = std::move(dx);
  return result;
}

VjpResult Slice(const VjpCall& call) {
  const Tensor* x = call.inputs[0];
  const int64_t rank = x->rank();
  std::vector<int64_t> starts, ends, axes, steps;
  if (call.opset_version >= 10) {
    starts = call.inputs[1]->ToInt64s();
    ends = call.inputs[2]->ToInt64s();
    if (call.inputs.size() > 3 && call.inputs[3] != nullptr) axes = call.inputs[3]->ToInt64s();
    if (call.inputs.size() > 4 && call.inputs[4] != nullptr) steps = call.inputs[4]->ToInt64s();
  } else {
    starts = call.node.IntsAttribute("starts");
    ends = call.node.IntsAttribute("ends");
    axes = call.node.IntsAttribute("axes");
  }
  if (axes.empty()) {
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  }
  if (steps.empty()) steps.assign(starts.size(), 1);
  std::vector<int64_t> first(rank, 0), step(rank, 1);
  for (size_t i = 0; i < axes.size(); ++i) {
    SQ_ASSIGN_OR_RETURN(int64_t a, kernels::cpu::NormalizeAxis(axes[i], rank));
    const int64_t dim = x->shape()[a];
    int64_t s = starts[i] < 0 ? starts[i] + dim : starts[i];
    s = steps[i] > 0 ? std::clamp<int64_t>(s, 0, dim) : std::clamp<int64_t>(s, 0, dim - 1);
    first[a] = s;
    step[a] = steps[i];
  }
  const Tensor& dy = OutputGradient(call);
  const std::vector<int64_t> x_strides = Strides(x->shape());
  Tensor dx = Zeros(x->shape());
  std::vector<int64_t> index(rank, 0);
  for (int64_t flat = 0; flat < dy.num_elements(); ++flat) {
    int64_t source = 0;
    for (int64_t k = 0; k < rank; ++k) source += (first[k] + index[k] * step[k]) * x_strides[k];
    dx.data<float>()[source] += dy.data<float>()[flat];
    for (int64_t k = rank - 1; k >= 0; --k) {
      if (++index[k] < dy.shape()[k]) break;
      index[k] = 0;
    }
  }
  Gradients result = Sized(call);
  result[0] = std::move(dx);
  return result;
}

VjpResult Gather(const VjpCall& call) {
  const Tensor* data = call.inputs[0];
  const Tensor* indices = call.inputs[1];
  SQ_ASSIGN_OR_RETURN(int64_t axis, kernels::cpu::NormalizeAxis(call.node.IntAttribute("axis", 0), data->rank()));
  const int64_t outer = Product(data->shape(), 0, axis);
  const int64_t dim = data->shape()[axis];
  const int64_t inner = Product(data->shape(), axis + 1, data->rank());
  const std::vector<int64_t> index = indices->ToInt64s();
  const int64_t count = static_cast<int64_t>(index.size());
  const float* g = OutputGradient(call).data<float>();
  Tensor dx = Zeros(data->shape());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < count; ++i) {
      const int64_t row = index[i] < 0 ? index[i] + dim : index[i];
      if (row < 0 || row >= dim) return absl::InvalidArgumentError("Gather index out of range");
      float* target = dx.data<float>() + (o * dim + row) * inner;
      const float* source = g + (o * count + i) * inner;
      for (int64_t j = 0; j < inner; ++j) target[j] += source[j];
    }
  }
  Gradients result = Sized(call);
  result[0] = std::move(dx);
  return result;
}

VjpResult Where(const VjpCall& call) {
  const Tensor* condition = call.inputs[0];
  const Tensor& dy = OutputGradient(call);
  const std::vector<int64_t> c_index = BroadcastIndex(condition->shape(), dy.shape());
  const uint8_t* c = condition->data<uint8_t>();
  Gradients result = Sized(call);
  for (int side = 1; side <= 2; ++side) {
    if (!call.wanted[side]) continue;
    Tensor masked = Zeros(dy.shape());
    for (size_t i = 0; i < c_index.size(); ++i) {
      const bool take = (c[c_index[i]] != 0) == (side == 1);
      masked.data<float>()[i] = take ? dy.data<float>()[i] : 0.0f;
    }
    result[side] = Unbroadcast(masked, call.inputs[side]->shape());
  }
  return result;
}

VjpResult Clip(const VjpCall& call) {
  float low = -std::numeric_limits<float>::infinity();
  float high = std::numeric_limits<float>::infinity();
  if (call.opset_version < 11) {
    low = call.node.FloatAttribute("min", low);
    high = call.node.FloatAttribute("max", high);
  } else {
    if (call.inputs.size() > 1 && call.inputs[1] != nullptr) low = call.inputs[1]->ToFloats()[0];
    if (call.inputs.size() > 2 && call.inputs[2] != nullptr) high = call.inputs[2]->ToFloats()[0];
  }
  return Unary(call, [=](float x, float) { return x >= low && x <= high ? 1.0f : 0.0f; });
}

// Per-element scale and zero point of a QuantizeLinear/DequantizeLinear
// (per tensor, or per `axis` with a 1-D parameter), and the channel of each
// element, so that scale gradients can be summed per channel.
struct QuantParameters {
  std::vector<float> scale, zero;
  std::vector<int64_t> channel;
};

absl::StatusOr<QuantParameters> PerElementQuantParameters(const VjpCall& call, const Tensor& x) {
  const Tensor* scale = call.inputs[1];
  const Tensor* zero = call.inputs.size() > 2 ? call.inputs[2] : nullptr;
  SQ_RETURN_IF_ERROR(RequireFloat32(call, scale, "scale"));
  if (call.node.IntAttribute("block_size", 0) != 0) {
    return absl::UnimplementedError("blocked quantization has no gradient yet");
  }
  const int64_t n = x.num_elements();
  QuantParameters p{std::vector<float>(n), std::vector<float>(n, 0.0f), std::vector<int64_t>(n, 0)};
  const std::vector<float> s = scale->ToFloats();
  const std::vector<float> z = zero != nullptr ? zero->ToFloats() : std::vector<float>(s.size(), 0.0f);
  int64_t inner = n, dim = 1;
  if (scale->num_elements() != 1) {
    SQ_ASSIGN_OR_RETURN(int64_t axis, kernels::cpu::NormalizeAxis(call.node.IntAttribute("axis", 1), x.rank()));
    dim = x.shape()[axis];
    if (scale->num_elements() != dim) return absl::InvalidArgumentError("scale fits no axis of the input");
    inner = Product(x.shape(), axis + 1, x.shape().size());
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = (i / inner) % dim;
    p.scale[i] = s[c];
    p.zero[i] = z.size() == 1 ? z[0] : z[c];
    p.channel[i] = c;
  }
  return p;
}

// QuantizeLinear as a straight-through estimator (Bengio et al. 2013) with
// the LSQ step-size gradient (Esser et al. 2020) split over the pair:
// q = clamp(round(x/s) + z) gives dq/dx = 1/s and dq/ds = -x/s^2 where the
// unclamped value is inside the output type's range, 0 outside. Chained with
// DequantizeLinear's dy/ds = q - z this is exactly LSQ: round(x/s) - x/s
// inside, qmin - z or qmax - z outside. The output gradient is float32 even
// though q is an integer tensor. No gradient for the zero point.
VjpResult QuantizeLinear(const VjpCall& call) {
  const Tensor* x = call.inputs[0];
  SQ_RETURN_IF_ERROR(RequireFloat32(call, x, "input x"));
  SQ_ASSIGN_OR_RETURN(QuantParameters p, PerElementQuantParameters(call, *x));
  const DataType out = call.outputs[0]->dtype();
  float low = 0, high = 255;
  if (out == DataType::kInt8) low = -128, high = 127;
  if (out == DataType::kInt4) low = -8, high = 7;
  const float* xv = x->data<float>();
  const float* dy = OutputGradient(call).data<float>();
  Tensor dx = Zeros(x->shape());
  std::vector<double> ds(call.inputs[1]->num_elements(), 0.0);
  for (int64_t i = 0; i < x->num_elements(); ++i) {
    const float v = std::nearbyint(xv[i] / p.scale[i]) + p.zero[i];
    if (v < low || v > high) continue;
    dx.data<float>()[i] = dy[i] / p.scale[i];
    ds[p.channel[i]] -= double{dy[i]} * xv[i] / (double{p.scale[i]} * p.scale[i]);
  }
  Gradients result = Sized(call);
  if (call.wanted[0]) result[0] = std::move(dx);
  if (call.wanted[1]) {
    std::vector<float> dsf(ds.begin(), ds.end());
    result[1] = Tensor::FromVector(DataType::kFloat32, call.inputs[1]->shape(), dsf);
  }
  return result;
}

// y = (q - z) * s: dq = dy * s (float32 for the integer q), ds = sum dy (q - z).
VjpResult DequantizeLinear(const VjpCall& call) {
  const Tensor* q = call.inputs[0];
  SQ_ASSIGN_OR_RETURN(QuantParameters p, PerElementQuantParameters(call, *q));
  const std::vector<float> qv = q->ToFloats();
  const float* dy = OutputGradient(call).data<float>();
  Tensor dq = Zeros(q->shape());
  std::vector<double> ds(call.inputs[1]->num_elements(), 0.0);
  for (int64_t i = 0; i < q->num_elements(); ++i) {
    dq.data<float>()[i] = dy[i] * p.scale[i];
    ds[p.channel[i]] += double{dy[i]} * (qv[i] - p.zero[i]);
  }
  Gradients result = Sized(call);
  if (call.wanted[0]) result[0] = std::move(dq);
  if (call.wanted[1]) {
    std::vector<float> dsf(ds.begin(), ds.end());
    result[1] = Tensor::FromVector(DataType::kFloat32, call.inputs[1]->shape(), dsf);
  }
  return result;
}

const std::map<std::string, VjpFunction>* BuildRegistry() {
  auto* r = new std::map<std::string, VjpFunction>();
  (*r)["Add"] = [](const VjpCall& c) {
    return Binary(c, [](float, float, float) { return 1.0f; }, [](float, float, float) { return 1.0f; });
  };
  (*r)["Sub"] = [](const VjpCall& c) {
    return Binary(c, [](float, float, float) { return 1.0f; }, [](float, float, float) { return -1.0f; });
  };
  (*r)["Mul"] = [](const VjpCall& c) {
    return Binary(c, [](float, float b, float) { return b; }, [](float a, float, float) { return a; });
  };
  (*r)["Div"] = [](const VjpCall& c) {
    return Binary(c, [](float, float b, float) { return 1.0f / b; },
                  [](float, float b, float y) { return -y / b; });
  };
  (*r)["Pow"] = [](const VjpCall& c) {
    return Binary(c, [](float a, float b, float) { return b * std::pow(a, b - 1.0f); },
                  [](float a, float, float y) { return a > 0 ? y * std::log(a) : 0.0f; });
  };
  (*r)["Neg"] = [](const VjpCall& c) { return Unary(c, [](float, float) { return -1.0f; }); };
  (*r)["Relu"] = [](const VjpCall& c) { return Unary(c, [](float x, float) { return x > 0 ? 1.0f : 0.0f; }); };
  (*r)["LeakyRelu"] = [](const VjpCall& c) {
    const float alpha = c.node.FloatAttribute("alpha", 0.01f);
    return Unary(c, [=](float x, float) { return x > 0 ? 1.0f : alpha; });
  };
  (*r)["Sigmoid"] = [](const VjpCall& c) { return Unary(c, [](float, float y) { return y * (1 - y); }); };
  (*r)["Tanh"] = [](const VjpCall& c) { return Unary(c, [](float, float y) { return 1 - y * y; }); };
  (*r)["Exp"] = [](const VjpCall& c) { return Unary(c, [](float, float y) { return y; }); };
  (*r)["Log"] = [](const VjpCall& c) { return Unary(c, [](float x, float) { return 1.0f / x; }); };
  (*r)["Sqrt"] = [](const VjpCall& c) { return Unary(c, [](float, float y) { return 0.5f / y; }); };
  (*r)["Erf"] = [](const VjpCall& c) {
    return Unary(c, [](float x, float) { return 1.1283791670955126f * std::exp(-x * x); });
  };
  (*r)["HardSigmoid"] = [](const VjpCall& c) {
    const float alpha = c.node.FloatAttribute("alpha", 0.2f), beta = c.node.FloatAttribute("beta", 0.5f);
    return Unary(c, [=](float x, float) {
      const float t = alpha * x + beta;
      return t > 0 && t < 1 ? alpha : 0.0f;
    });
  };
  (*r)["HardSwish"] = [](const VjpCall& c) {
    return Unary(c, [](float x, float) {
      if (x <= -3) return 0.0f;
      if (x >= 3) return 1.0f;
      return x / 3.0f + 0.5f;
    });
  };
  (*r)["Clip"] = Clip;
  for (const char* op : {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast"}) {
    (*r)[op] = SameElements;
  }
  (*r)["Expand"] = Expand;
  (*r)["MatMul"] = MatMul;
  (*r)["Gemm"] = Gemm;
  (*r)["Conv"] = Conv;
  (*r)["MaxPool"] = [](const VjpCall& c) { return Pool(c, true); };
  (*r)["AveragePool"] = [](const VjpCall& c) { return Pool(c, false); };
  (*r)["GlobalAveragePool"] = GlobalAveragePool;
  (*r)["Softmax"] = [](const VjpCall& c) { return Softmax(c, false); };
  (*r)["LogSoftmax"] = [](const VjpCall& c) { return Softmax(c, true); };
  (*r)["LayerNormalization"] = LayerNormalization;
  (*r)["BatchNormalization"] = BatchNormalization;
  (*r)["ReduceSum"] = [](const VjpCall& c) { return Reduce(c, false, false); };
  (*r)["ReduceMean"] = [](const VjpCall& c) { return Reduce(c, true, false); };
  (*r)["ReduceMax"] = [](const VjpCall& c) { return Reduce(c, false, true); };
  (*r)["Transpose"] = Transpose;
  (*r)["Concat"] = Concat;
  (*r)["Split"] = Split;
  (*r)["Slice"] = Slice;
  (*r)["Gather"] = Gather;
  (*r)["Where"] = Where;
  (*r)["QuantizeLinear"] = QuantizeLinear;
  (*r)["DequantizeLinear"] = DequantizeLinear;
  return r;
}

}  // namespace

const std::map<std::string, VjpFunction>& VjpRegistry() {
  static const std::map<std::string, VjpFunction>* registry = BuildRegistry();
  return *registry;
}

}  // namespace squeeze::core::train
