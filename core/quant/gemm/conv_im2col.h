// Internal to core/quant/gemm's runtime Conv nodes (the W8A8 kInt8QdqConvOp
// of qdq_runtime.h, the weight-only kLowBitConvOp / kLutConvOp of
// weight_only_runtime.h): the node attributes describing a 2-D Conv (group
// 1), the Conv node a backend runs on a weight-only node's decoded weight,
// the geometry they give for an input, and the im2col walk over an image
// (the int8 path's uint8 pixels).
#ifndef SQUEEZE_CORE_QUANT_GEMM_CONV_IM2COL_H_
#define SQUEEZE_CORE_QUANT_GEMM_CONV_IM2COL_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/graph/graph.h"
#include "core/quant/ptq/layers.h"

namespace squeeze::core::quant::gemm::internal {

// One image's Conv: c input channels of h x w pixels, a kh x kw kernel,
// strides, dilations, top/left pads and the output size oh x ow.
struct ConvGeometry {
  int64_t c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow;
};

// The attributes a runtime Conv node carries for the Conv `layer`: c,
// kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top,
// pad_left, pad_bottom, pad_right.
inline void AddConvAttributes(const ptq::QuantizableLayer& layer, graph::Node* node) {
  const ptq::ConvGeometry& g = layer.conv;
  node->attributes.insert({{"c", layer.in_channels}, {"kernel_h", g.kernel_h}, {"kernel_w", g.kernel_w},
                           {"stride_h", g.stride_h}, {"stride_w", g.stride_w}, {"dilation_h", g.dilation_h},
                           {"dilation_w", g.dilation_w}, {"pad_top", g.pad_top}, {"pad_left", g.pad_left},
                           {"pad_bottom", g.pad_bottom}, {"pad_right", g.pad_right}});
}

// The ONNX Conv (group 1) with the geometry a runtime Conv node carries
// (attributes as AddConvAttributes writes them): what a backend runs on the
// node's decoded weight, or asks whether it fuses a Relu or MaxPool.
inline graph::Node EquivalentConv(const graph::Node& node) {
  graph::Node conv;
  conv.name = node.name;
  conv.op_type = "Conv";
  conv.inputs = node.inputs;
  conv.outputs = node.outputs;
  conv.attributes = {
      {"kernel_shape", std::vector<int64_t>{node.IntAttribute("kernel_h", 0), node.IntAttribute("kernel_w", 0)}},
      {"strides", std::vector<int64_t>{node.IntAttribute("stride_h", 1), node.IntAttribute("stride_w", 1)}},
      {"dilations", std::vector<int64_t>{node.IntAttribute("dilation_h", 1), node.IntAttribute("dilation_w", 1)}},
      {"pads", std::vector<int64_t>{node.IntAttribute("pad_top", 0), node.IntAttribute("pad_left", 0),
                                    node.IntAttribute("pad_bottom", 0), node.IntAttribute("pad_right", 0)}},
      {"group", int64_t{1}}};
  return conv;
}

// The geometry of `node` (attributes as AddConvAttributes writes them) for
// its input x [N, c, H, W]; INVALID_ARGUMENT naming the node unless x is
// rank 4 with c channels, c * kernel_h * kernel_w == in, strides and
// dilations >= 1 and the output is not empty.
inline absl::StatusOr<ConvGeometry> ConvGeometryOf(const graph::Node& node, const graph::Tensor& x, int64_t in) {
  ConvGeometry g{};
  g.c = node.IntAttribute("c", 0);
  g.kh = node.IntAttribute("kernel_h", 0);
  g.kw = node.IntAttribute("kernel_w", 0);
  g.sh = node.IntAttribute("stride_h", 1);
  g.sw = node.IntAttribute("stride_w", 1);
  g.dh = node.IntAttribute("dilation_h", 1);
  g.dw = node.IntAttribute("dilation_w", 1);
  g.pt = node.IntAttribute("pad_top", 0);
  g.pl = node.IntAttribute("pad_left", 0);
  const int64_t pb = node.IntAttribute("pad_bottom", 0), pr = node.IntAttribute("pad_right", 0);
  if (x.rank() != 4 || x.shape()[1] != g.c || g.c * g.kh * g.kw != in || g.sh < 1 || g.sw < 1 || g.dh < 1 ||
      g.dw < 1) {
    return absl::InvalidArgumentError(absl::StrCat(node.name, ": ", node.op_type, " needs X [N, ", g.c,
                                                   ", H, W] and c * kernel = in, got ",
                                                   graph::ShapeToString(x.shape())));
  }
  g.h = x.shape()[2];
  g.w = x.shape()[3];
  g.oh = (g.h + g.pt + pb - g.dh * (g.kh - 1) - 1) / g.sh + 1;
  g.ow = (g.w + g.pl + pr - g.dw * (g.kw - 1) - 1) / g.sw + 1;
  if (g.oh < 1 || g.ow < 1) {
    return absl::InvalidArgumentError(absl::StrCat(node.name, ": empty output for input ",
                                                   graph::ShapeToString(x.shape())));
  }
  return g;
}

// The first and one-past-last output column whose tap `j` lands inside a
// row of width g.w.
inline void ValidColumns(const ConvGeometry& g, int64_t j, int64_t* lo, int64_t* hi) {
  *lo = 0;
  while (*lo < g.ow && *lo * g.sw - g.pl + j * g.dw < 0) ++*lo;
  *hi = g.ow;
  while (*hi > *lo && (*hi - 1) * g.sw - g.pl + j * g.dw >= g.w) --*hi;
}

// The im2col walk of one image [c, h, w]: for every depth kk (c, i, j
// order, as the OIHW weight rows) and output row yo whose tap lands inside
// the image, segment(kk, yo, lo, hi, src) where output columns [lo, hi) read
// src[xo * g.sw]. Positions never visited are padding.
template <typename T, typename Segment>
void ForEachTapSegment(const T* image, const ConvGeometry& g, Segment segment) {
  for (int64_t ch = 0; ch < g.c; ++ch) {
    const T* plane = image + ch * g.h * g.w;
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t kk = (ch * g.kh + i) * g.kw + j;
        int64_t lo = 0, hi = 0;
        ValidColumns(g, j, &lo, &hi);
        for (int64_t yo = 0; yo < g.oh; ++yo) {
          const int64_t iy = yo * g.sh - g.pt + i * g.dh;
          if (iy >= 0 && iy < g.h) segment(kk, yo, lo, hi, plane + iy * g.w - g.pl + j * g.dw);
        }
      }
    }
  }
}

// im2col rows of one image: row p = yo * ow + xo of `rows` ([oh * ow,
// c * kh * kw], filled with the padding value beforehand) gets the taps of
// output pixel p.
template <typename T>
void Im2ColRows(const T* image, const ConvGeometry& g, T* rows) {
  const int64_t depth = g.c * g.kh * g.kw;
  ForEachTapSegment(image, g, [&](int64_t kk, int64_t yo, int64_t lo, int64_t hi, const T* src) {
    T* row = rows + yo * g.ow * depth + kk;
    for (int64_t xo = lo; xo < hi; ++xo) row[xo * depth] = src[xo * g.sw];
  });
}

}  // namespace squeeze::core::quant::gemm::internal

#endif  // SQUEEZE_CORE_QUANT_GEMM_CONV_IM2COL_H_
