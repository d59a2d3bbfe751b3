#include "core/quant/gemm/qdq_runtime.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/kernels/cpu/fast_gemm.h"
#include "core/kernels/cpu/kernel_util.h"
#include "core/quant/gemm/conv_im2col.h"
#include "core/quant/gemm/int8_gemm.h"
#include "core/quant/gemm/layer_nodes.h"
#include "core/quant/gemm/weight_only_runtime.h"
#include "core/status_macros.h"

namespace squeeze::core::quant::gemm {
namespace {

using graph::DataType;
using graph::Graph;
using graph::Node;
using graph::Tensor;
using internal::ConvGeometry;
using internal::EraseProducer;
using internal::ForEachTapSegment;
using internal::ValidColumns;

const Node* Producer(const Graph& graph, const std::string& value) {
  for (const Node& node : graph.nodes) {
    if (std::find(node.outputs.begin(), node.outputs.end(), value) != node.outputs.end()) return &node;
  }
  return nullptr;
}

// The activation QDQ pair in front of a layer: the integer value and its
// per-tensor scale and zero point initializers.
struct ActivationQdq {
  std::string dequantize_output;
  std::string q, scale, zero;
};

// Why `layer` cannot take its input from an int8 QDQ pair ("" when it can).
std::string FindActivationQdq(const Graph& graph, const ptq::QuantizableLayer& layer, ActivationQdq* qdq) {
  const Node* dq = Producer(graph, layer.input);
  if (dq == nullptr || dq->op_type != "DequantizeLinear" || dq->inputs.size() < 3) {
    return "no activation QDQ pair (weight-only quantization)";
  }
  const auto scale = graph.initializers.find(dq->inputs[1]);
  const auto zero = graph.initializers.find(dq->inputs[2]);
  if (scale == graph.initializers.end() || zero == graph.initializers.end() ||
      scale->second.dtype() != DataType::kFloat32 || scale->second.num_elements() != 1 ||
      zero->second.num_elements() != 1 ||
      (zero->second.dtype() != DataType::kUInt8 && zero->second.dtype() != DataType::kInt8)) {
    return "activation QDQ pair is not per-tensor uint8/int8 with constant scale and zero point";
  }
  const float s = *scale->second.data<float>();
  if (!(s > 0.0f) || !std::isfinite(s)) return absl::StrCat("activation scale ", s, " is not finite and > 0");
  qdq->dequantize_output = layer.input;
  qdq->q = dq->inputs[0];
  qdq->scale = dq->inputs[1];
  qdq->zero = dq->inputs[2];
  return "";
}

// Whether the packed weight dequantizes to the graph's float weight.
bool MatchesGraphWeight(const std::vector<float>& dense, const Int8Weights& w) {
  if (static_cast<int64_t>(dense.size()) != w.out * w.in) return false;
  for (int64_t r = 0; r < w.out; ++r) {
    for (int64_t c = 0; c < w.in; ++c) {
      const float dequantized = static_cast<float>(w.q[r * w.in + c]) * w.scales[r];
      const float tolerance = 1e-5f * (std::fabs(dense[r * w.in + c]) + w.scales[r]);
      if (!(std::fabs(dequantized - dense[r * w.in + c]) <= tolerance)) return false;
    }
  }
  return true;
}

absl::Status CheckCall(const runtime::KernelCall& call, int64_t* in, int64_t* out) {
  const Node& node = call.node;
  *in = node.IntAttribute("in", 0);
  *out = node.IntAttribute("out", 0);
  const Tensor* x = call.input(0);
  const Tensor* x_scale = call.input(1);
  const Tensor* x_zero = call.input(2);
  const Tensor* wq = call.input(3);
  const Tensor* w_scales = call.input(4);
  const Tensor* row_sums = call.input(5);
  const Tensor* bias = call.input(6);
  if (x == nullptr || x_scale == nullptr || x_zero == nullptr || wq == nullptr || w_scales == nullptr ||
      row_sums == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(node.name, ": ", kInt8QdqMatMulOp, " needs Xq, x_scale, x_zero_point, Wq, w_scales, w_row_sums"));
  }
  if (*in <= 0 || *out <= 0 || *in > kMaxInt8GemmDepth) {
    return absl::InvalidArgumentError(absl::StrCat(node.name, ": bad in/out attributes ", *in, ", ", *out));
  }
  const bool zero_ok = x->dtype() == DataType::kFloat32
                           ? (x_zero->dtype() == DataType::kUInt8 || x_zero->dtype() == DataType::kInt8)
                           : x_zero->dtype() == x->dtype();
  if ((x->dtype() != DataType::kUInt8 && x->dtype() != DataType::kInt8 && x->dtype() != DataType::kFloat32) ||
      x->rank() < 1 || (node.op_type != kInt8QdqConvOp && x->shape().back() != *in) || !zero_ok ||
      x_zero->num_elements() != 1 ||
      x_scale->dtype() != DataType::kFloat32 || x_scale->num_elements() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(node.name, ": Xq must be uint8/int8 (or float32 X) [..., ", *in,
                                                   "] with a scalar scale and zero point of its type, got ",
                                                   graph::ShapeToString(x->shape())));
  }
  if (wq->dtype() != DataType::kInt8 || wq->num_elements() != *out * *in || w_scales->dtype() != DataType::kFloat32 ||
      w_scales->num_elements() != *out || row_sums->dtype() != DataType::kInt32 ||
      row_sums->num_elements() != *out ||
      (bias != nullptr && (bias->dtype() != DataType::kFloat32 || bias->num_elements() != *out))) {
    return absl::InvalidArgumentError(
        absl::StrCat(node.name, ": int8 weight, scales, row sums or bias do not match [", *out, ", ", *in, "]"));
  }
  const Tensor* panels = call.input(7);
  if (panels != nullptr && (panels->dtype() != DataType::kInt8 || panels->num_elements() != Int8PanelsSize(*out, *in))) {
    return absl::InvalidArgumentError(absl::StrCat(node.name, ": Wq_panels must be int8 [", Int8PanelsSize(*out, *in),
                                                   "] (PackInt8Panels of [", *out, ", ", *in, "]), got ",
                                                   panels->num_elements(), " values"));
  }
  const Tensor* hwc = call.input(8);
  if (hwc != nullptr && (node.op_type != kInt8QdqConvOp || hwc->dtype() != DataType::kInt8 ||
                         hwc->num_elements() != *out * *in || node.IntAttribute("c", 0) % 4 != 0)) {
    return absl::InvalidArgumentError(absl::StrCat(node.name, ": Wq_hwc must be the int8 [", *out, ", ", *in,
                                                   "] weight of a Conv whose channels are a multiple of 4"));
  }
  return absl::OkStatus();
}

// The QDQ pairs left in front of fp32 layers (Conv, weight-only ones), per
// tensor, in plain loops with the results of the CPU backend's generic
// kernels bit for bit (tested); nullopt for anything else (per-axis, other
// types), which goes to the base backend.
std::optional<Tensor> RunQdqPerTensor(const runtime::KernelCall& call) {
  const Tensor* x = call.input(0);
  const Tensor* scale = call.input(1);
  const Tensor* zero = call.input(2);
  if (x == nullptr || scale == nullptr || zero == nullptr || scale->dtype() != DataType::kFloat32 ||
      scale->num_elements() != 1 || zero->num_elements() != 1 ||
      (zero->dtype() != DataType::kUInt8 && zero->dtype() != DataType::kInt8)) {
    return std::nullopt;
  }
  const float s = *scale->data<float>();
  const bool signed_q = zero->dtype() == DataType::kInt8;
  const int32_t z = signed_q ? int32_t{*zero->data<int8_t>()} : int32_t{*zero->data<uint8_t>()};
  if (call.node.op_type == "QuantizeLinear") {
    if (x->dtype() != DataType::kFloat32) return std::nullopt;
    Tensor q(zero->dtype(), x->shape());
    uint8_t* out = q.data<uint8_t>();
    // int8 q with zero z is uint8 q + 128 with zero z + 128 (flip the sign bit).
    if (!QuantizeLinearToUint8(x->data<float>(), x->num_elements(), s, signed_q ? z + 128 : z, out).ok()) {
      return std::nullopt;  // a bad SQUEEZE_GEMM_PATH: the base backend's kernel
    }
    if (signed_q) {
      for (int64_t i = 0; i < x->num_elements(); ++i) out[i] ^= 0x80u;
    }
    return q;
  }
  if (x->dtype() != zero->dtype()) return std::nullopt;
  Tensor y(DataType::kFloat32, x->shape());
  float* out = y.data<float>();
  if (signed_q) {
    const int8_t* q = x->data<int8_t>();
    for (int64_t i = 0; i < x->num_elements(); ++i) out[i] = static_cast<float>(int32_t{q[i]} - z) * s;
  } else {
    const uint8_t* q = x->data<uint8_t>();
    for (int64_t i = 0; i < x->num_elements(); ++i) out[i] = static_cast<float>(int32_t{q[i]} - z) * s;
  }
  return y;
}

// X as uint8 with its zero point: the integer input itself, int8 shifted by
// 128, or float32 quantized as QuantizeLinear would (the fused case).
absl::StatusOr<const uint8_t*> UnsignedInput(const runtime::KernelCall& call, int32_t* zx,
                                             std::vector<uint8_t>* storage) {
  const Tensor& x = *call.input(0);
  const Tensor& zero = *call.input(2);
  *zx = zero.dtype() == DataType::kInt8 ? int32_t{*zero.data<int8_t>()} + 128 : int32_t{*zero.data<uint8_t>()};
  if (x.dtype() == DataType::kUInt8) return x.data<uint8_t>();
  storage->resize(x.num_elements());
  if (x.dtype() == DataType::kFloat32) {
    SQ_RETURN_IF_ERROR(QuantizeLinearToUint8(x.data<float>(), x.num_elements(), *call.input(1)->data<float>(), *zx,
                                             storage->data()));
  } else {
    // int8 q with zero z is uint8 q + 128 with zero z + 128 (flip the sign bit).
    const uint8_t* q = x.data<uint8_t>();
    for (size_t i = 0; i < storage->size(); ++i) (*storage)[i] = static_cast<uint8_t>(q[i] ^ 0x80u);
  }
  return storage->data();
}

// The epilogue of an int8 node's call (inputs 4-6) for activations with
// scale sx and uint8 zero point zx.
Int8OutputRescale RescaleOf(const runtime::KernelCall& call, float sx, int32_t zx, bool relu) {
  const Tensor* bias = call.input(6);
  Int8OutputRescale rescale;
  rescale.x_scale = sx;
  rescale.x_zero_point = zx;
  rescale.w_scales = call.input(4)->data<float>();
  rescale.w_row_sums = call.input(5)->data<int32_t>();
  rescale.bias = bias ? bias->data<float>() : nullptr;
  rescale.relu = relu;
  return rescale;
}

// Int8OutputRescale's expressions for one int32 sum of output channel o.
float Rescale(const Int8OutputRescale& r, int64_t o, int32_t sum) {
  // Exact in int32 (bounded by 255 * 127 * in); unsigned avoids UB.
  const int32_t centred =
      static_cast<int32_t>(static_cast<uint32_t>(sum) - static_cast<uint32_t>(r.x_zero_point * r.w_row_sums[o]));
  float v = (r.x_scale * r.w_scales[o]) * static_cast<float>(centred);
  if (r.bias != nullptr) v += r.bias[o];
  if (r.relu) v = std::max(0.0f, v);  // the Relu kernel's expression
  return v;
}

// im2col of one image straight into the activation panels of
// Int8GemmTransposedPanels: pixel p, depth kk at ((p / 16) * groups + kk / 4)
// * 64 + (p % 16) * 4 + kk % 4.
void Im2ColPanels(const uint8_t* image, const ConvGeometry& g, uint8_t zx, uint8_t* panels,
                  int64_t panel_bytes) {
  std::memset(panels, zx, panel_bytes);
  const int64_t panel_stride = panel_bytes / ((g.oh * g.ow + 15) / 16);
  ForEachTapSegment(image, g, [&](int64_t kk, int64_t yo, int64_t lo, int64_t hi, const uint8_t* src) {
    // Pixel p sits at lane p % 16 of panel p / 16: 4 bytes to the next
    // lane, a panel's size from lane 15 to the next panel's lane 0.
    const int64_t p = yo * g.ow + lo;
    int64_t lane = p % 16;
    uint8_t* dst = panels + (kk / 4) * 64 + kk % 4 + (p / 16) * panel_stride + lane * 4;
    for (int64_t xo = lo; xo < hi; ++xo) {
      *dst = src[xo * g.sw];
      dst += 4;
      if (++lane == 16) {
        lane = 0;
        dst += panel_stride - 64;
      }
    }
  });
}

// The same panels with the depth in (i, j, c) order, for c a multiple of 4:
// each group of 4 depths is 4 channels of one tap, copied as one 4-byte word
// from the image transposed to [h, w, c] (in `hwc`, h * w * c bytes).
void Im2ColPanelsHwc(const uint8_t* image, const ConvGeometry& g, uint8_t zx, uint8_t* hwc, uint8_t* panels,
                     int64_t panel_bytes) {
  const int64_t pixels = g.h * g.w, channel_groups = g.c / 4;
  for (int64_t ch = 0; ch < g.c; ++ch) {
    for (int64_t pos = 0; pos < pixels; ++pos) hwc[pos * g.c + ch] = image[ch * pixels + pos];
  }
  std::memset(panels, zx, panel_bytes);
  const int64_t panel_stride = panel_bytes / ((g.oh * g.ow + 15) / 16);
  for (int64_t i = 0; i < g.kh; ++i) {
    for (int64_t j = 0; j < g.kw; ++j) {
      int64_t lo = 0, hi = 0;
      ValidColumns(g, j, &lo, &hi);
      uint8_t* tap = panels + (i * g.kw + j) * channel_groups * 64;
      for (int64_t yo = 0; yo < g.oh; ++yo) {
        const int64_t iy = yo * g.sh - g.pt + i * g.dh;
        if (iy < 0 || iy >= g.h) continue;
        const uint8_t* src = hwc + (iy * g.w - g.pl + j * g.dw) * g.c;
        const int64_t p = yo * g.ow + lo;
        int64_t lane = p % 16;
        uint8_t* dst = tap + (p / 16) * panel_stride + lane * 4;
        for (int64_t xo = lo; xo < hi; ++xo) {
          const uint8_t* from = src + xo * g.sw * g.c;
          for (int64_t cg = 0; cg < channel_groups; ++cg) std::memcpy(dst + cg * 64, from + cg * 4, 4);
          dst += 4;
          if (++lane == 16) {
            lane = 0;
            dst += panel_stride - 64;
          }
        }
      }
    }
  }
}

// kInt8QdqConvOp. On the VNNI paths: per image, im2col into activation
// panels and Int8GemmTransposedPanels, which writes [out, OH * OW] directly
// with the epilogue (and a fused Relu) applied; images split over threads.
// Elsewhere: im2col rows, one Int8MatMulInt32Prepacked, then the epilogue
// into [N, out, OH, OW] (the same int32 sums and float expressions, so both
// give the same bits).
absl::StatusOr<std::vector<Tensor>> RunConv(const runtime::KernelCall& call, const uint8_t* xq, int32_t zx, float sx,
                                            int64_t in, int64_t out, int num_threads, bool relu) {
  const Node& node = call.node;
  const Tensor& x = *call.input(0);
  SQ_ASSIGN_OR_RETURN(const ConvGeometry g, internal::ConvGeometryOf(node, x, in));
  const int64_t n = x.shape()[0];
  Tensor y(DataType::kFloat32, {n, out, g.oh, g.ow});
  if (n == 0) return std::vector<Tensor>{std::move(y)};
  const int64_t plane = g.oh * g.ow;
  const Int8OutputRescale rescale = RescaleOf(call, sx, zx, relu);
  const int8_t* wq = call.input(3)->data<int8_t>();
  float* yp = y.data<float>();
  SQ_ASSIGN_OR_RETURN(const GemmPath path, ResolveGemmPath(GemmPath::kAuto));
  if (path == GemmPath::kAvx512Vnni || path == GemmPath::kAvxVnni) {
    const int64_t panel_bytes = Int8PanelsSize(plane, in);
    static const int hardware_threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    std::vector<absl::Status> status(n);
    const Tensor* hwc_weights = call.input(8);
    kernels::cpu::ParallelFor(n, 1, num_threads > 0 ? num_threads : hardware_threads, [&](int64_t begin, int64_t end) {
      std::vector<uint8_t> panels(panel_bytes), hwc(hwc_weights ? g.c * g.h * g.w : 0);
      for (int64_t b = begin; b < end; ++b) {
        const uint8_t* image = xq + b * g.c * g.h * g.w;
        if (hwc_weights != nullptr) {
          Im2ColPanelsHwc(image, g, static_cast<uint8_t>(zx), hwc.data(), panels.data(), panel_bytes);
        } else {
          Im2ColPanels(image, g, static_cast<uint8_t>(zx), panels.data(), panel_bytes);
        }
        status[b] = Int8GemmTransposedPanels(panels.data(), plane, in,
                                             hwc_weights ? hwc_weights->data<int8_t>() : wq, out, rescale,
                                             yp + b * out * plane, plane, GemmOptions{1, path});
      }
    });
    for (const absl::Status& s : status) SQ_RETURN_IF_ERROR(s);
    return std::vector<Tensor>{std::move(y)};
  }
  const int64_t rows = n * plane;
  // Padding: the zero point, which is what the float 0 padding of the simulated graph quantizes to.
  std::vector<uint8_t> patches(rows * in, static_cast<uint8_t>(zx));
  for (int64_t b = 0; b < n; ++b) internal::Im2ColRows(xq + b * g.c * g.h * g.w, g, patches.data() + b * plane * in);
  std::vector<int32_t> acc(rows * out);
  GemmOptions options;
  options.num_threads = num_threads;
  options.path = path;
  const Tensor* panels = call.input(7);
  SQ_RETURN_IF_ERROR(Int8MatMulInt32Prepacked(patches.data(), wq, panels ? panels->data<int8_t>() : nullptr, rows,
                                              out, in, acc.data(), options));
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t p = 0; p < plane; ++p) {
      const int32_t* a = acc.data() + (b * plane + p) * out;
      for (int64_t o = 0; o < out; ++o) yp[(b * out + o) * plane + p] = Rescale(rescale, o, a[o]);
    }
  }
  return std::vector<Tensor>{std::move(y)};
}

class Int8QdqBackend : public runtime::KernelBackend {
 public:
  Int8QdqBackend(std::shared_ptr<const runtime::KernelBackend> base, int num_threads)
      : base_(std::move(base)), num_threads_(num_threads) {}

  std::string name() const override { return absl::StrCat(base_->name(), "+int8"); }

  bool Supports(absl::string_view op_type) const override {
    return op_type == kInt8QdqMatMulOp || op_type == kInt8QdqConvOp || IsWeightOnlyOp(op_type) ||
           base_->Supports(op_type);
  }

  // The int8 and weight-only nodes apply a Relu to their output; QDQ nodes
  // fuse nothing;
  // everything else goes to `base` with the call as it is.
  bool FusesActivation(const graph::Node& node, absl::string_view activation) const override {
    if (IsWeightOnlyConvOp(node.op_type)) {
      return activation == "Relu" && base_->FusesActivation(internal::EquivalentConv(node), activation);
    }
    if (node.op_type == kInt8QdqMatMulOp || node.op_type == kInt8QdqConvOp || IsWeightOnlyOp(node.op_type)) {
      return activation == "Relu";
    }
    if (node.op_type == "QuantizeLinear" || node.op_type == "DequantizeLinear") return false;
    return base_->FusesActivation(node, activation);
  }

  bool FusesMaxPool(const graph::Node& node, const graph::Node& pool) const override {
    // A weight-only Conv runs as the base Conv (RunWeightOnlyNode).
    if (IsWeightOnlyConvOp(node.op_type)) {
      return base_->FusesMaxPool(internal::EquivalentConv(node), pool);
    }
    if (node.op_type == kInt8QdqMatMulOp || node.op_type == kInt8QdqConvOp || node.op_type == "QuantizeLinear" ||
        node.op_type == "DequantizeLinear" || IsWeightOnlyOp(node.op_type)) {
      return false;
    }
    return base_->FusesMaxPool(node, pool);
  }

  absl::StatusOr<std::vector<Tensor>> Run(const runtime::KernelCall& call) const override {
    if (call.node.op_type == "QuantizeLinear" || call.node.op_type == "DequantizeLinear") {
      std::optional<Tensor> fast = RunQdqPerTensor(call);
      if (fast) return std::vector<Tensor>{*std::move(fast)};
    }
    if (auto weight_only = RunWeightOnlyNode(call, num_threads_, *base_)) return *std::move(weight_only);
    if (call.node.op_type != kInt8QdqMatMulOp && call.node.op_type != kInt8QdqConvOp) return base_->Run(call);
    int64_t in = 0, out = 0;
    SQ_RETURN_IF_ERROR(CheckCall(call, &in, &out));
    if (!call.fused_activation.empty() && call.fused_activation != "Relu") {
      return absl::InvalidArgumentError(absl::StrCat(call.node.name, ": ", call.node.op_type,
                                                     " cannot fuse activation '", call.fused_activation, "'"));
    }
    const bool relu = call.fused_activation == "Relu";
    const Tensor& x = *call.input(0);
    const float sx = *call.input(1)->data<float>();
    int32_t zx = 0;
    std::vector<uint8_t> shifted;
    SQ_ASSIGN_OR_RETURN(const uint8_t* xq, UnsignedInput(call, &zx, &shifted));
    if (call.node.op_type == kInt8QdqConvOp) return RunConv(call, xq, zx, sx, in, out, num_threads_, relu);
    const int64_t rows = x.num_elements() / in;
    std::vector<int64_t> shape = x.shape();
    shape.back() = out;
    Tensor y(DataType::kFloat32, shape);
    if (rows == 0) return std::vector<Tensor>{std::move(y)};
    std::vector<int32_t> acc(rows * out);
    GemmOptions options;
    options.num_threads = num_threads_;
    const Tensor* panels = call.input(7);
    SQ_RETURN_IF_ERROR(Int8MatMulInt32Prepacked(xq, call.input(3)->data<int8_t>(),
                                                panels ? panels->data<int8_t>() : nullptr, rows, out, in, acc.data(),
                                                options));
    const Int8OutputRescale rescale = RescaleOf(call, sx, zx, relu);
    float* yp = y.data<float>();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < out; ++c) yp[r * out + c] = Rescale(rescale, c, acc[r * out + c]);
    }
    return std::vector<Tensor>{std::move(y)};
  }

 private:
  std::shared_ptr<const runtime::KernelBackend> base_;
  int num_threads_;
};

}  // namespace

bool Int8ConvFasterThanFp32() {
  const absl::StatusOr<GemmPath> path = ResolveGemmPath(GemmPath::kAuto);
  if (!path.ok()) return false;
  // ymm VNNI against the AVX-512 fp32 Conv measured slower; against the AVX2
  // one faster (docs/benchmarks.md).
  return *path == GemmPath::kAvx512Vnni ||
         (*path == GemmPath::kAvxVnni && std::strcmp(kernels::cpu::FastGemmKernelName(), "avx512") != 0);
}

absl::StatusOr<Int8Rewrite> UseInt8Kernels(Graph* graph, const std::map<std::string, QuantizedLinear>& packed,
                                           const Int8RewriteOptions& options) {
  SQ_ASSIGN_OR_RETURN(ptq::LayerScan scan, ptq::FindQuantizableLayers(*graph));
  Int8Rewrite rewrite;
  auto skip = [&](const ptq::QuantizableLayer& layer, std::string reason) {
    rewrite.skipped.push_back({layer.name, std::move(reason)});
  };
  for (const ptq::QuantizableLayer& layer : scan.layers) {
    if (layer.op_type == "Conv" && !options.conv) {
      skip(layer, "Conv kept on the fp32 kernel (conv = false; the default without AVX-512 VNNI, where the int8 "
                  "Conv is slower)");
      continue;
    }
    const auto quantized = packed.find(layer.weight);
    if (quantized == packed.end()) {
      skip(layer, "weight not quantized");
      continue;
    }
    absl::StatusOr<Int8Weights> weights = Int8Weights::FromQuantized(quantized->second);
    if (!weights.ok()) {
      skip(layer, absl::StrCat("weight is ",
                               RtnOptions{quantized->second.bits, quantized->second.group_size,
                                          quantized->second.asymmetric}
                                   .TechniqueName(),
                               ", the int8 kernel needs int8-pc-sym"));
      continue;
    }
    if (weights->out != layer.out || weights->in != layer.in) {
      skip(layer, "packed weight shape differs from the graph's");
      continue;
    }
    ActivationQdq qdq;
    const std::string why = FindActivationQdq(*graph, layer, &qdq);
    if (!why.empty()) {
      skip(layer, why);
      continue;
    }
    Node* node = internal::FindLayerNode(graph, layer);
    if (node == nullptr) {
      skip(layer, "node not found");
      continue;
    }
    if (const std::string form = internal::UnsupportedLayerForm(*graph, layer, *node); !form.empty()) {
      skip(layer, form);
      continue;
    }
    if (!MatchesGraphWeight(ptq::WeightMatrix(*graph, layer), *weights)) {
      skip(layer, "packed weight does not dequantize to the graph's weight");
      continue;
    }
    const std::string wq = graph::UniqueValueName(*graph, absl::StrCat(layer.weight, ".int8_q"));
    Tensor q_tensor(DataType::kInt8, {weights->out, weights->in});
    std::memcpy(q_tensor.data<int8_t>(), weights->q.data(), weights->q.size());
    graph->initializers[wq] = std::move(q_tensor);
    const std::string scales = graph::UniqueValueName(*graph, absl::StrCat(layer.weight, ".int8_scales"));
    graph->initializers[scales] = Tensor::FromVector<float>(DataType::kFloat32, {weights->out}, weights->scales);
    const std::string sums = graph::UniqueValueName(*graph, absl::StrCat(layer.weight, ".int8_row_sums"));
    graph->initializers[sums] = Tensor::FromVector<int32_t>(DataType::kInt32, {weights->out}, weights->row_sums);
    const std::string panels = graph::UniqueValueName(*graph, absl::StrCat(layer.weight, ".int8_panels"));
    Tensor panels_tensor(DataType::kInt8, {static_cast<int64_t>(weights->panels.size())});
    std::memcpy(panels_tensor.data<int8_t>(), weights->panels.data(), weights->panels.size());
    graph->initializers[panels] = std::move(panels_tensor);

    Node int8;
    int8.name = node->name;
    int8.op_type = layer.op_type == "Conv" ? kInt8QdqConvOp : kInt8QdqMatMulOp;
    int8.inputs = {qdq.q, qdq.scale, qdq.zero, wq, scales, sums,
                   layer.op_type != "MatMul" && !layer.bias.empty() ? layer.bias : std::string(), panels};
    if (layer.op_type == "Conv" && layer.in_channels % 4 == 0) {
      // The depth in (kh, kw, c) order, for RunConv's channel-group im2col.
      const int64_t c = layer.in_channels, taps = layer.kernel_size;
      const std::string hwc = graph::UniqueValueName(*graph, absl::StrCat(layer.weight, ".int8_hwc"));
      Tensor hwc_tensor(DataType::kInt8, {weights->out, weights->in});
      int8_t* dst = hwc_tensor.data<int8_t>();
      for (int64_t o = 0; o < weights->out; ++o) {
        for (int64_t ch = 0; ch < c; ++ch) {
          for (int64_t t = 0; t < taps; ++t) dst[o * weights->in + t * c + ch] = weights->q[o * weights->in + ch * taps + t];
        }
      }
      graph->initializers[hwc] = std::move(hwc_tensor);
      int8.inputs.push_back(hwc);
    }
    int8.outputs = node->outputs;
    int8.attributes = {{"in", layer.in}, {"out", layer.out}};
    if (layer.op_type == "Conv") internal::AddConvAttributes(layer, &int8);
    *node = std::move(int8);
    if (layer.weight_input != layer.weight && graph::CountUses(*graph, layer.weight_input) == 0) {
      EraseProducer(graph, layer.weight_input);
    }
    if (graph::CountUses(*graph, layer.weight) == 0) graph->initializers.erase(layer.weight);
    if (graph::CountUses(*graph, qdq.dequantize_output) == 0) EraseProducer(graph, qdq.dequantize_output);
    rewrite.int8_layers.push_back(layer.name);
  }
  // Fuse each QuantizeLinear whose output only int8 nodes read into them:
  // they then take the float X and quantize it themselves (the generic
  // QuantizeLinear kernel costs more than the GEMM at these sizes).
  for (Node& quantize : graph->nodes) {
    if (quantize.op_type != "QuantizeLinear" || quantize.inputs.size() < 3 || quantize.outputs.size() != 1) continue;
    const std::string q = quantize.outputs[0];
    bool only_int8 = true;
    int64_t int8_uses = 0;
    for (const Node& node : graph->nodes) {
      for (size_t i = 0; i < node.inputs.size(); ++i) {
        if (node.inputs[i] != q) continue;
        const bool fusable = (node.op_type == kInt8QdqMatMulOp || node.op_type == kInt8QdqConvOp) && i == 0 &&
                             node.inputs[1] == quantize.inputs[1] &&
                             node.inputs[2] == quantize.inputs[2];
        only_int8 &= fusable;
        int8_uses += fusable;
      }
    }
    for (const auto& output : graph->outputs) only_int8 &= output.name != q;
    if (!only_int8 || int8_uses == 0) continue;
    for (Node& node : graph->nodes) {
      if ((node.op_type == kInt8QdqMatMulOp || node.op_type == kInt8QdqConvOp) && node.inputs[0] == q) {
        node.inputs[0] = quantize.inputs[0];
      }
    }
  }
  std::vector<std::string> unused;
  for (const Node& node : graph->nodes) {
    if (node.op_type == "QuantizeLinear" && node.outputs.size() == 1 && graph::CountUses(*graph, node.outputs[0]) == 0) {
      unused.push_back(node.outputs[0]);
    }
  }
  for (const std::string& value : unused) EraseProducer(graph, value);
  SQ_RETURN_IF_ERROR(graph::SortTopologically(graph));
  return rewrite;
}

std::string DescribeInt8Rewrite(const Int8Rewrite& rewrite) {
  std::string text = rewrite.int8_layers.empty()
                         ? std::string("no layer on int8 kernels")
                         : absl::StrCat("int8 kernels (W8A8, int32 accumulate): ",
                                        absl::StrJoin(rewrite.int8_layers, ", "));
  if (!rewrite.skipped.empty()) {
    std::vector<std::string> parts;
    for (const ptq::SkippedNode& layer : rewrite.skipped) parts.push_back(absl::StrCat(layer.name, " (", layer.reason, ")"));
    absl::StrAppend(&text, "; fp32: ", absl::StrJoin(parts, ", "));
  }
  return text;
}

std::shared_ptr<const runtime::KernelBackend> CreateInt8QdqBackend(std::shared_ptr<const runtime::KernelBackend> base,
                                                                   int num_threads) {
  return std::make_shared<Int8QdqBackend>(std::move(base), num_threads);
}

}  // namespace squeeze::core::quant::gemm
