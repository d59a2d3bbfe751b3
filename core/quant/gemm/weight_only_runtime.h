// Runs weight-only low-bit layers of a simulated graph on the low-bit GEMMs
// instead of fp32 with dequantized weights (issue 4).
//
// core/quant/ptq (and the recipe's k-means step) leave each quantized weight
// in the graph as its dequantized floats, so a weight-only int4 variant runs
// as fast and takes as much memory as fp32. UseWeightOnlyKernels rewrites
// every Gemm (transA = 0, alpha = beta = 1, bias of [out] or none), MatMul
// and 2-D Conv (group 1, explicit pads: the Conv layers of
// ptq::FindQuantizableLayers) layer whose weight has
//   - a 2-, 3- or 4-bit RTN/GPTQ/AWQ QuantizedLinear in `packed` (any group
//     size, symmetric or asymmetric) into a kLowBitMatMulOp (kLowBitConvOp)
//     node run by Int4Gemm (int4_gemm.h), or
//   - a k-means CodebookLinear in `codebooks` into a kLutMatMulOp
//     (kLutConvOp) node run by LutGemm (lut_gemm.h),
// fed by the layer's float input (a DequantizeLinear's output when the
// activations are quantized as well: the node computes the same product).
// The float weight initializer (and a Transpose feeding only the layer) is
// removed, so the runtime graph holds the packed weights instead:
//
//   Y [..., out] = X [..., in] * W^T + B,  W decoded inside the GEMM
//
// A Conv's W is its [out, c * kh * kw] OIHW matrix (ptq/layers.h). A Conv
// node decodes it on each call into float [out, c, kh, kw] scratch that
// lives only for that call and runs the base backend's fp32 Conv on it
// (tiled, Relu and MaxPool fused): an im2col + low-bit GEMM Conv measured
// 2x slower than that on the reference CNN. Both kernels (and the decode)
// produce exactly the weights the simulated graph holds, so the outputs
// differ from it only by float summation order (int4_gemm.h's bound). Left as they were, with the reason in `skipped`:
// int8 weights (UseInt8Kernels takes W8A8 ones; weight-only int8 has no
// float x int8 kernel here and stays fp32), layers whose packed weight does
// not dequantize to the graph's weight, Gemm forms the nodes cannot express,
// and quantized weights of Gemm/MatMul/Conv nodes FindQuantizableLayers
// does not take (grouped, 1-D or 3-D Convs, auto_pad, ...: its reason).
// Run UseInt8Kernels first: it takes the int8 layers and their QDQ pairs.
#ifndef SQUEEZE_CORE_QUANT_GEMM_WEIGHT_ONLY_RUNTIME_H_
#define SQUEEZE_CORE_QUANT_GEMM_WEIGHT_ONLY_RUNTIME_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/graph/graph.h"
#include "core/quant/gemm/lut_gemm.h"
#include "core/quant/ptq/layers.h"
#include "core/quant/rtn.h"
#include "core/runtime/kernel_backend.h"

namespace squeeze::core::quant::gemm {

// Inputs: X [..., in] float32, packed [out * PackedRowBytes(4, in)] uint8
// (the QuantizedLinear nibbles), scales [out * groups] float32, optional
// zero_points [out * groups] uint8 (asymmetric; "" when symmetric), optional
// B [out] float32 (""). Int attributes in, out, bits (2, 3 or 4),
// group_size (0: per channel), asymmetric (0/1). Runtime-only, NOT an ONNX
// operator: export the simulated graph and the packed weights instead.
inline constexpr char kLowBitMatMulOp[] = "SqueezeLowBitMatMul";

// Inputs: X [..., in] float32, indices [out * CodebookRowBytes(bits, in)]
// uint8 (codebook_layout.h), codebook [2^bits] or [out * 2^bits] float32,
// optional B [out] float32 (""). Int attributes in, out, bits (2, 3 or 4),
// per_row_codebook (0/1). Runtime-only as above.
inline constexpr char kLutMatMulOp[] = "SqueezeLutMatMul";

// The same inputs and attributes for a 2-D Conv (group 1): X [N, c, H, W]
// -> Y [N, out, OH, OW], the weight being the [out, in = c * kernel_h *
// kernel_w] OIHW matrix, plus the int attributes of kInt8QdqConvOp
// (qdq_runtime.h): c, kernel_h, kernel_w, stride_h, stride_w, dilation_h,
// dilation_w, pad_top, pad_left, pad_bottom, pad_right. Runtime-only.
inline constexpr char kLowBitConvOp[] = "SqueezeLowBitConv";
inline constexpr char kLutConvOp[] = "SqueezeLutConv";

// Whether `op_type` is one of the two weight-only Conv nodes above.
inline bool IsWeightOnlyConvOp(absl::string_view op_type) {
  return op_type == kLowBitConvOp || op_type == kLutConvOp;
}

// Whether `op_type` is one of the four weight-only nodes above.
inline bool IsWeightOnlyOp(absl::string_view op_type) {
  return op_type == kLowBitMatMulOp || op_type == kLutMatMulOp || IsWeightOnlyConvOp(op_type);
}

struct WeightOnlyRewrite {
  std::vector<std::string> low_bit_layers;  // on Int4Gemm
  std::vector<std::string> lut_layers;      // on LutGemm
  std::vector<ptq::SkippedNode> skipped;    // quantized layers left fp32, with why
};

struct WeightOnlyRewriteOptions {
  // Conv layers too (on the reference CNN they cut its runtime weight bytes
  // by another 23%, docs/benchmarks.md); false keeps them fp32 (listed in
  // `skipped`).
  bool conv = true;
};

// Rewrites `graph` as the file comment says. `packed` and `codebooks` map
// weight initializer names to their quantized forms (RecipeResult::packed,
// RecipeResult::codebooks); layers whose weight is in neither are not
// quantized and are not listed. Errors: those of FindQuantizableLayers and
// SortTopologically.
absl::StatusOr<WeightOnlyRewrite> UseWeightOnlyKernels(
    graph::Graph* graph, const std::map<std::string, QuantizedLinear>& packed,
    const std::map<std::string, CodebookLinear>& codebooks, const WeightOnlyRewriteOptions& options = {});

// One line for reports: "low-bit kernels (weight-only, dequantized inside
// the GEMM): int4/3/2 conv1, fc1; codebook fc2; fp32: conv2 (grouped
// convolution)".
std::string DescribeWeightOnlyRewrite(const WeightOnlyRewrite& rewrite);

// Bytes of all initializers of `graph`: the weights a runtime graph holds.
int64_t InitializerBytes(const graph::Graph& graph);

// Runs a weight-only node's call (IsWeightOnlyOp) over `num_threads`
// threads (0: hardware concurrency), with a fused Relu when the call has
// one; Conv nodes as `base`'s Conv on the decoded weight (with the call's
// fused Relu and MaxPool); nullopt for any other op. INVALID_ARGUMENT naming
// the node for inputs that do not match its attributes. The int8 backend
// (CreateInt8QdqBackend, qdq_runtime.h) calls this, so one backend runs
// every runtime-only low-bit node.
std::optional<absl::StatusOr<std::vector<graph::Tensor>>> RunWeightOnlyNode(const runtime::KernelCall& call,
                                                                            int num_threads,
                                                                            const runtime::KernelBackend& base);

}  // namespace squeeze::core::quant::gemm

#endif  // SQUEEZE_CORE_QUANT_GEMM_WEIGHT_ONLY_RUNTIME_H_
