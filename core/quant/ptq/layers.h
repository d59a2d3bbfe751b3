// The quantizable layers of a graph and their weights as [out, in] matrices.
//
// A quantizable layer is a node whose weight is an initializer used by that
// node alone:
//   Gemm    C = A B' + bias, transA = 0; B [out, in] (transB = 1) or [in, out]
//   MatMul  x [..., in] times a 2-D initializer [in, out], or times
//           Transpose(perm [1, 0]) of a 2-D initializer [out, in] (the form
//           core/hf writes for torch.nn.Linear)
//   Conv    group 1, explicit pads (auto_pad NOTSET), 2-D kernel; the weight
//           [out, c, kh, kw] is the matrix [out, c * kh * kw] and the layer
//           input is seen through im2col (one row per output position)
// Everything else (a weight shared with a Gather, as a tied LM head is, a
// grouped convolution, a computed weight) is reported as skipped with why.
#ifndef SQUEEZE_CORE_QUANT_PTQ_LAYERS_H_
#define SQUEEZE_CORE_QUANT_PTQ_LAYERS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"

namespace squeeze::core::quant::ptq {

enum class WeightLayout {
  kOutIn,     // stored [out, in] (Gemm transB = 1, MatMul through Transpose)
  kInOut,     // stored [in, out] (Gemm transB = 0, plain MatMul)
  kConvOihw,  // stored [out, c, kh, kw]
};

struct ConvGeometry {
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
};

struct QuantizableLayer {
  std::string name;     // the node name (or "<op>_<index>" when unnamed)
  std::string op_type;  // Gemm, MatMul or Conv
  std::string weight;   // the weight initializer
  std::string bias;     // the bias initializer ("" when none)
  std::string input;    // the value the layer multiplies with the weight
  std::string weight_input;  // the node's second input (weight, or its Transpose)
  WeightLayout layout = WeightLayout::kOutIn;
  int64_t out = 0;
  int64_t in = 0;            // columns of the [out, in] matrix
  int64_t in_channels = 0;   // == in, except Conv: c
  int64_t kernel_size = 1;   // kh * kw for Conv, else 1 (in == in_channels * kernel_size)
  ConvGeometry conv;         // Conv only
};

struct SkippedNode {
  std::string name;
  std::string reason;
};

struct LayerScan {
  std::vector<QuantizableLayer> layers;  // in node order
  std::vector<SkippedNode> skipped;      // Gemm/MatMul/Conv nodes left alone
};

// Finds the quantizable layers of `graph`. Never fails on a well-formed
// graph; INVALID_ARGUMENT naming the node when a weight initializer has a
// rank its operator forbids.
absl::StatusOr<LayerScan> FindQuantizableLayers(const graph::Graph& graph);

// The weight of `layer` as a row-major [out, in] float matrix.
std::vector<float> WeightMatrix(const graph::Graph& graph, const QuantizableLayer& layer);

// Writes an [out, in] matrix back into the layer's initializer, in its layout.
void SetWeightMatrix(graph::Graph* graph, const QuantizableLayer& layer, const std::vector<float>& matrix);

// The rows the layer multiplies with its weight, from a captured input
// tensor: x reshaped to [rows, in] for Gemm/MatMul, im2col patches
// [N * OH * OW, c * kh * kw] for Conv. INVALID_ARGUMENT naming the layer
// when the tensor's shape does not fit.
absl::StatusOr<std::vector<float>> LayerInputRows(const QuantizableLayer& layer, const graph::Tensor& input,
                                                  int64_t* rows);

// Index of the channel axis of the layer input (1 for Conv's NCHW, the last
// axis otherwise) for a tensor of rank `rank`.
int64_t ChannelAxis(const QuantizableLayer& layer, int64_t rank);

}  // namespace squeeze::core::quant::ptq

#endif  // SQUEEZE_CORE_QUANT_PTQ_LAYERS_H_
