// Runs W8A8 layers of a simulated (fake-quant) graph on the int8 GEMM of
// int8_gemm.h instead of in fp32 (issue 4).
//
// core/quant/ptq's simulated graph holds each quantized weight as its
// dequantized floats and, with activation quantization, a QuantizeLinear ->
// DequantizeLinear pair on the layer input. UseInt8Kernels rewrites every
// Gemm (transA = 0, alpha = beta = 1, bias of [out] or none), MatMul and,
// when asked, 2-D Conv (group 1; as im2col + GEMM) layer whose input comes
// from such a DequantizeLinear (per-tensor scale and zero point, uint8 or
// int8) and whose weight has an int8 per-channel symmetric QuantizedLinear
// in `packed` into a kInt8QdqMatMulOp (kInt8QdqConvOp) node fed by the
// QuantizeLinear output (the integer activations) and the int8 weight; a
// QuantizeLinear that then feeds only such nodes is fused into them (they
// take its float input and quantize it the same way, bit for bit):
//
//   Y [..., out] = (sx * sw[n]) * float(sum_k (xq[k] - zx) * wq[n, k]) + B[n]
//
// accumulated exactly in int32 (Int8MatMulInt32Prepacked: AVX-512 VNNI,
// AVX-VNNI, AVX2 or scalar, as gemm_dispatch.h picks). The
// simulated graph computes the same product with dequantized floats, so the
// two differ only by float summation order. The float weight (and a
// Transpose feeding only the layer), and a DequantizeLinear left without
// consumers, are removed. Weight-only or int4/grouped weights and layers
// without an activation QDQ pair are left alone (listed in `skipped` with
// the reason).
#ifndef SQUEEZE_CORE_QUANT_GEMM_QDQ_RUNTIME_H_
#define SQUEEZE_CORE_QUANT_GEMM_QDQ_RUNTIME_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"
#include "core/quant/ptq/layers.h"
#include "core/quant/rtn.h"
#include "core/runtime/kernel_backend.h"

namespace squeeze::core::quant::gemm {

// Inputs (Xq [..., in] uint8 or int8, or float32 X that the node quantizes
// as QuantizeLinear would; x_scale [] float32, x_zero_point [] uint8/int8, Wq [out, in] int8, w_scales [out] float32, w_row_sums [out]
// int32, optional B [out] float32 (may be named ""), optional Wq_panels
// [Int8PanelsSize(out, in)] int8 = PackInt8Panels(Wq), which the VNNI paths
// read instead of packing Wq per call); int attributes in, out. NOT an ONNX
// operator: graphs holding it are runtime-only and never exported (export
// the simulated graph and the packed weights instead).
inline constexpr char kInt8QdqMatMulOp[] = "SqueezeInt8QdqMatMul";

// The same inputs for a 2-D Conv: X [N, c, H, W] -> Y [N, out, OH, OW], Wq
// the [out, c * kernel_h * kernel_w] OIHW weight, plus, where c is a multiple
// of 4, optional Wq_hwc: the same weight with its depth in (kernel_h,
// kernel_w, c) order, which the VNNI paths read (im2col then copies 4
// channels at a time); int attributes in, out, c,
// kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top,
// pad_left, pad_bottom, pad_right. Runtime-only as above.
inline constexpr char kInt8QdqConvOp[] = "SqueezeInt8QdqConv";

struct Int8Rewrite {
  std::vector<std::string> int8_layers;           // layer names now on the int8 kernel
  std::vector<ptq::SkippedNode> skipped;          // Gemm/MatMul/Conv layers left as they were, with why
};

// Whether Conv layers go int8 by default: where the GEMM path resolves to
// avx512vnni, or to avxvnni while the fp32 GEMM is not AVX-512 (im2col
// panels + the transposed VNNI kernel), which measured faster than the fp32
// Conv on the reference CNN; not on avxvnni against the AVX-512 fp32 Conv,
// nor on the avx2/scalar paths, where the int8 Conv (im2col rows +
// Int8MatMulInt32) measured 2-4x slower (docs/benchmarks.md).
bool Int8ConvFasterThanFp32();

struct Int8RewriteOptions {
  // Conv layers too (im2col + int8 GEMM).
  bool conv = Int8ConvFasterThanFp32();
};

// Rewrites `graph` as the file comment says. `packed` maps weight
// initializer names to their quantized form (RecipeResult::packed). A layer
// whose packed weight does not dequantize to the graph's float weight (the
// graph was changed after quantization) is skipped. Errors: those of
// FindQuantizableLayers and SortTopologically.
absl::StatusOr<Int8Rewrite> UseInt8Kernels(graph::Graph* graph,
                                           const std::map<std::string, QuantizedLinear>& packed,
                                           const Int8RewriteOptions& options = {});

// One line for reports: "int8 kernels (W8A8, int32 accumulate): fc1, fc2;
// fp32: fc3 (no activation QDQ pair)".
std::string DescribeInt8Rewrite(const Int8Rewrite& rewrite);

// A backend that runs kInt8QdqMatMulOp nodes with Int8MatMulInt32 over
// `num_threads` threads (0: hardware concurrency), the weight-only
// kLowBitMatMulOp / kLutMatMulOp / kLowBitConvOp / kLutConvOp nodes of
// weight_only_runtime.h (Int4Gemm, LutGemm), per-tensor uint8/int8
// QuantizeLinear / DequantizeLinear nodes (the pairs left in front of fp32
// layers) in plain loops with the CPU backend's results bit for bit, and
// hands every other node to `base`.
std::shared_ptr<const runtime::KernelBackend> CreateInt8QdqBackend(
    std::shared_ptr<const runtime::KernelBackend> base, int num_threads = 0);

}  // namespace squeeze::core::quant::gemm

#endif  // SQUEEZE_CORE_QUANT_GEMM_QDQ_RUNTIME_H_
