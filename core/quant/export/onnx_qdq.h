// ONNX QDQ export: a graph whose quantizable weights are stored as integers
// and dequantized by DequantizeLinear in front of their consumers, the form
// that ONNX Runtime and TensorRT fuse into integer kernels. Opset 17 (what
// our libonnx checker knows) has no int4 type and no blocked
// DequantizeLinear, so:
//   * every weight is stored in an 8-bit container: int8 for symmetric
//     formats (int4 values keep their range [-8, 7]; RTN produces [-7, 7]),
//     uint8 for asymmetric ones (int4 values in [0, 15]);
//   * per-channel weights are one DequantizeLinear along the output axis;
//   * per-group weights (G groups of g inputs per output row, N rows) are
//     stored as [N * G, g] with one scale per row of that matrix, i.e.
//     scale[r * G + j] for row r group j, dequantized along axis 0, then
//     Reshape'd to the consumer's layout (and Transpose'd for [in, out]
//     weights).
// The dequantized value of every element is exactly DequantizeRtn's
// ((q - zero) * scale in float32). docs/formats.md shows the node patterns.
#ifndef SQUEEZE_CORE_QUANT_EXPORT_ONNX_QDQ_H_
#define SQUEEZE_CORE_QUANT_EXPORT_ONNX_QDQ_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"
#include "core/quant/rtn.h"

// `export` is a C++20 keyword, so the namespace of core/quant/export is
// quant_export.
namespace squeeze::core::quant_export {

// How a quantizable weight initializer maps onto QuantizedLinear's [out, in]
// view: Conv W [O, I, kh, kw] is [O, I*kh*kw]; Gemm with transB=1 W [N, K]
// is itself; MatMul and Gemm with transB=0 W [K, N] are W transposed.
struct WeightView {
  std::vector<int64_t> shape;  // the initializer's shape
  int64_t out = 0;
  int64_t in = 0;
  bool transposed = false;  // true for [in, out] weights
};

// The float32 initializers that are input 1 of a Conv, Gemm or MatMul node,
// or that reach a MatMul through Transpose(perm [1, 0]) (stored [out, in],
// the form core/hf writes), by name. A weight consumed by several nodes must
// have the same view in
// each. INVALID_ARGUMENT naming the node when it does not, or when a Gemm
// has transA set.
absl::StatusOr<std::map<std::string, WeightView>> FindQuantizableWeights(
    const graph::Graph& graph);

// RTN-quantizes every weight FindQuantizableWeights returns, skipping those
// whose input width `options` does not fit (a group size that does not
// divide it); the result is keyed by initializer name. Errors as
// QuantizeRtn, naming the initializer.
absl::StatusOr<std::map<std::string, quant::QuantizedLinear>> QuantizeGraphWeights(
    const graph::Graph& graph, const quant::RtnOptions& options);

// The observed range of an activation (the min and max over a calibration
// set); zero is always representable.
struct ActivationRange {
  float min = 0;
  float max = 0;
};

struct QdqOptions {
  // Static activation quantization: for each value named here that is the
  // data input (input 0) of a node whose weight is quantized, a
  // QuantizeLinear -> DequantizeLinear pair is inserted in front of those
  // consumers. Empty: weight-only QDQ.
  std::map<std::string, ActivationRange> activation_ranges;
  // false: uint8, asymmetric (scale = (hi - lo) / 255, zero = round(-lo /
  // scale)); true: int8, symmetric (scale = max(|lo|, |hi|) / 127, zero 0).
  bool signed_activations = false;
};

// `graph` with every weight named in `weights` replaced by its QDQ form
// (initializers "<w>.quantized", "<w>.scale", "<w>.zero_point" and the node
// "<w>.dequantize" whose output keeps the name <w>, so consumers are
// untouched). The graph's opset is raised to 13 if lower (per-axis
// DequantizeLinear). INVALID_ARGUMENT naming the weight when it is not a
// quantizable weight of `graph`, its quantized shape does not match the
// view, or the QuantizedLinear is inconsistent; naming the value when an
// activation range is not finite or min > max, or names no data input of a
// quantized node.
absl::StatusOr<graph::Graph> ExportQdqGraph(
    const graph::Graph& graph,
    const std::map<std::string, quant::QuantizedLinear>& weights,
    const QdqOptions& options = {});

}  // namespace squeeze::core::quant_export

#endif  // SQUEEZE_CORE_QUANT_EXPORT_ONNX_QDQ_H_
