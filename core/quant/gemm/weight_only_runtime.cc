#include "core/quant/gemm/weight_only_runtime.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/quant/gemm/codebook_layout.h"
#include "core/quant/gemm/conv_im2col.h"
#include "core/quant/gemm/int4_gemm.h"
#include "core/quant/gemm/layer_nodes.h"
#include "core/quant/packed_formats.h"
#include "core/status_macros.h"

namespace squeeze::core::quant::gemm {
namespace {

using graph::DataType;
using graph::Graph;
using graph::Node;
using graph::Tensor;

// Whether every decoded weight equals the graph's float weight (up to the
// float rounding of a dequantization done in another order).
bool SameWeights(const std::vector<float>& dense, const std::vector<float>& decoded) {
  if (dense.size() != decoded.size()) return false;
  for (size_t i = 0; i < dense.size(); ++i) {
    const float tolerance = 1e-5f * (std::fabs(dense[i]) + std::fabs(decoded[i])) + 1e-30f;
    if (!(std::fabs(dense[i] - decoded[i]) <= tolerance)) return false;
  }
  return true;
}

// out[c] = table[nibble c] for the `count` nibbles from `bytes`, low nibble
// first (packed_formats.h, codebook_layout.h). A group after the first
// starts on a byte: group sizes are even.
void DecodeNibbles(const uint8_t* bytes, int64_t count, const float* table, float* out) {
  for (int64_t i = 0; i < count / 2; ++i) {
    out[2 * i] = table[bytes[i] & 0x0f];
    out[2 * i + 1] = table[bytes[i] >> 4];
  }
  if (count % 2 == 1) out[count - 1] = table[bytes[count / 2] & 0x0f];
}

// Writes the float [out, in] weights a view holds to `decoded`: exactly
// what LutGemm and Int4Gemm decode. INVALID_ARGUMENT naming the layer for
// inconsistent sizes.
absl::Status DecodeWeights(const CodebookWeightsView& w, float* decoded) {
  SQ_RETURN_IF_ERROR(w.Validate());
  const int64_t row_bytes = CodebookRowBytes(w.bits, w.in);
  for (int64_t r = 0; r < w.out; ++r) {
    const uint8_t* row = w.packed + r * row_bytes;
    const float* codebook = w.codebook + (w.per_row_codebook ? r * CodebookEntries(w.bits) : 0);
    float* out = decoded + r * w.in;
    if (w.bits == 4) {
      DecodeNibbles(row, w.in, codebook, out);
      continue;
    }
    for (int64_t c = 0; c < w.in; ++c) out[c] = codebook[ReadCodebookIndex(row, c, w.bits)];
  }
  return absl::OkStatus();
}

// DequantizeRtn's values, (nibble - offset - zero) * scale, through a
// 16-entry table per group (a Conv decodes its weight on every call).
absl::Status DecodeWeights(const Int4WeightsView& w, float* decoded) {
  SQ_RETURN_IF_ERROR(CheckInt4Layer(1, w));
  const int64_t groups = w.group_size == 0 ? 1 : w.in / w.group_size;
  const int64_t width = w.in / groups;
  const int64_t row_bytes = PackedRowBytes(w.bits, w.in);
  const int offset = w.asymmetric ? 0 : kInt4SymmetricOffset;
  float table[16];
  for (int64_t r = 0; r < w.out; ++r) {
    const uint8_t* row = w.packed + r * row_bytes;
    float* out = decoded + r * w.in;
    for (int64_t g = 0; g < groups; ++g) {
      const int zero = w.asymmetric ? w.zero_points[r * groups + g] : 0;
      const float scale = w.scales[r * groups + g];
      for (int n = 0; n < 16; ++n) table[n] = static_cast<float>(n - offset - zero) * scale;
      DecodeNibbles(row + g * width / 2, width, table, out + g * width);
    }
  }
  return absl::OkStatus();
}

Tensor BytesTensor(const std::string& bytes) {
  Tensor t(DataType::kUInt8, {static_cast<int64_t>(bytes.size())});
  std::memcpy(t.data<uint8_t>(), bytes.data(), bytes.size());
  return t;
}

int64_t Attribute(const Node& node, const char* name) { return node.IntAttribute(name, -1); }

// Y's shape: X's with the last dimension `out`; INVALID_ARGUMENT unless X is
// float32 [..., in].
absl::StatusOr<Tensor> OutputFor(const runtime::KernelCall& call, int64_t in, int64_t out) {
  const Tensor* x = call.input(0);
  if (x == nullptr || x->dtype() != DataType::kFloat32 || x->rank() < 1 || x->shape().back() != in) {
    return absl::InvalidArgumentError(absl::StrCat(call.node.name, ": ", call.node.op_type, " needs float32 X [..., ",
                                                   in, "], got ",
                                                   x ? graph::ShapeToString(x->shape()) : std::string("none")));
  }
  std::vector<int64_t> shape = x->shape();
  shape.back() = out;
  return Tensor(DataType::kFloat32, shape);
}

bool IsFloat(const Tensor* t) { return t != nullptr && t->dtype() == DataType::kFloat32; }
bool IsBytes(const Tensor* t) { return t != nullptr && t->dtype() == DataType::kUInt8; }

// The attributes every weight-only node has, into an Int4WeightsView or
// CodebookWeightsView.
template <typename View>
View ViewOfNode(const Node& node) {
  View w;
  w.name = node.name;
  w.in = Attribute(node, "in");
  w.out = Attribute(node, "out");
  w.bits = static_cast<int>(Attribute(node, "bits"));
  return w;
}

// A Conv node runs as the base backend's float Conv on its weight decoded
// for this call: [out, c, kernel_h, kernel_w] floats that live only during
// the call, so the graph keeps only the packed form. The base Conv tiles,
// fuses the Relu (and a MaxPool) and threads; an im2col + Int4Gemm/LutGemm
// Conv measured 2x slower than it on the reference CNN (docs/benchmarks.md),
// and decoding 18,432 weights costs less than one image's Conv.
template <typename View>
absl::StatusOr<std::vector<Tensor>> RunConvDecoded(const runtime::KernelCall& call, const View& w, const Tensor* bias,
                                                   const runtime::KernelBackend& base) {
  const Tensor* x = call.input(0);
  if (x == nullptr || x->dtype() != DataType::kFloat32) {
    return absl::InvalidArgumentError(absl::StrCat(call.node.name, ": ", call.node.op_type, " needs float32 X"));
  }
  // The node's geometry, checked against X (channels, strides, dilations,
  // a non-empty output) before the base Conv sees it.
  SQ_ASSIGN_OR_RETURN(const internal::ConvGeometry g, internal::ConvGeometryOf(call.node, *x, w.in));
  Tensor weight(DataType::kFloat32, {w.out, g.c, g.kh, g.kw});
  SQ_RETURN_IF_ERROR(DecodeWeights(w, weight.data<float>()));
  const Node conv = internal::EquivalentConv(call.node);
  runtime::KernelCall conv_call{conv, call.opset_version, {call.input(0), &weight, bias}, call.fused_activation,
                                call.fused_pool};
  return base.Run(conv_call);
}

// Y = X [rows, in] * W^T (+ bias) with `gemm` (Int4Gemm or LutGemm) over the
// weights `w` points at; for a Conv node, RunConvDecoded on `base`.
template <typename View, typename GemmFn>
absl::StatusOr<std::vector<Tensor>> RunDecodedGemm(const runtime::KernelCall& call, View w, const Tensor* bias,
                                                   GemmFn gemm, int num_threads, const runtime::KernelBackend& base) {
  if (w.in <= 0 || w.out <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(call.node.name, ": ", call.node.op_type,
                                                   " needs attributes in and out > 0, got ", w.in, ", ", w.out));
  }
  if (bias != nullptr) {
    w.bias = bias->data<float>();
    w.num_bias = bias->num_elements();
  }
  const bool relu = call.fused_activation == "Relu";  // applied as the Relu kernel does: max(0, y)
  if (!relu && !call.fused_activation.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(call.node.name, ": ", call.node.op_type, " cannot fuse activation '",
                                                   call.fused_activation, "'"));
  }
  if (IsWeightOnlyConvOp(call.node.op_type)) return RunConvDecoded(call, w, bias, base);
  SQ_ASSIGN_OR_RETURN(Tensor y, OutputFor(call, w.in, w.out));
  const int64_t rows = y.num_elements() / w.out;
  if (rows > 0) {
    SQ_RETURN_IF_ERROR(gemm(call.input(0)->data<float>(), rows, w, y.data<float>(), GemmOptions{num_threads}));
  }
  if (relu) {
    float* out = y.data<float>();
    for (int64_t i = 0; i < y.num_elements(); ++i) out[i] = std::max(0.0f, out[i]);
  }
  return std::vector<Tensor>{std::move(y)};
}

absl::StatusOr<std::vector<Tensor>> RunLowBit(const runtime::KernelCall& call, int num_threads,
                                              const runtime::KernelBackend& base) {
  const Node& node = call.node;
  Int4WeightsView w = ViewOfNode<Int4WeightsView>(node);
  w.group_size = static_cast<int>(Attribute(node, "group_size"));
  w.asymmetric = Attribute(node, "asymmetric") == 1;
  const Tensor *packed = call.input(1), *scales = call.input(2), *zeros = call.input(3), *bias = call.input(4);
  if (!IsBytes(packed) || !IsFloat(scales) || (w.asymmetric != (zeros != nullptr)) ||
      (zeros != nullptr && !IsBytes(zeros)) || (bias != nullptr && !IsFloat(bias))) {
    return absl::InvalidArgumentError(absl::StrCat(node.name, ": ", node.op_type,
                                                   " needs uint8 packed, float32 scales, uint8 zero_points exactly "
                                                   "when asymmetric, float32 bias or none"));
  }
  w.packed = packed->data<uint8_t>();
  w.packed_bytes = packed->num_elements();
  w.scales = scales->data<float>();
  w.num_scales = scales->num_elements();
  if (zeros != nullptr) {
    w.zero_points = zeros->data<uint8_t>();
    w.num_zero_points = zeros->num_elements();
  }
  using Fn = absl::Status (*)(const float*, int64_t, const Int4WeightsView&, float*, const GemmOptions&);
  return RunDecodedGemm(call, w, bias, static_cast<Fn>(&Int4Gemm), num_threads, base);
}

absl::StatusOr<std::vector<Tensor>> RunLut(const runtime::KernelCall& call, int num_threads,
                                           const runtime::KernelBackend& base) {
  const Node& node = call.node;
  CodebookWeightsView w = ViewOfNode<CodebookWeightsView>(node);
  w.per_row_codebook = Attribute(node, "per_row_codebook") == 1;
  const Tensor *indices = call.input(1), *codebook = call.input(2), *bias = call.input(3);
  if (!IsBytes(indices) || !IsFloat(codebook) || (bias != nullptr && !IsFloat(bias))) {
    return absl::InvalidArgumentError(absl::StrCat(node.name, ": ", node.op_type,
                                                   " needs uint8 indices, float32 codebook, float32 bias or none"));
  }
  w.packed = indices->data<uint8_t>();
  w.packed_bytes = indices->num_elements();
  w.codebook = codebook->data<float>();
  w.codebook_size = codebook->num_elements();
  using Fn = absl::Status (*)(const float*, int64_t, const CodebookWeightsView&, float*, const GemmOptions&);
  return RunDecodedGemm(call, w, bias, static_cast<Fn>(&LutGemm), num_threads, base);
}

}  // namespace

absl::StatusOr<WeightOnlyRewrite> UseWeightOnlyKernels(Graph* graph,
                                                       const std::map<std::string, QuantizedLinear>& packed,
                                                       const std::map<std::string, CodebookLinear>& codebooks,
                                                       const WeightOnlyRewriteOptions& options) {
  SQ_ASSIGN_OR_RETURN(ptq::LayerScan scan, ptq::FindQuantizableLayers(*graph));
  WeightOnlyRewrite rewrite;
  // Quantized weights of the Gemm/MatMul/Conv nodes the scan does not take
  // (a grouped or 1-D Conv, ...): fp32, with the scan's reason.
  for (size_t i = 0; i < graph->nodes.size(); ++i) {
    const Node& node = graph->nodes[i];
    if (node.inputs.size() < 2 || (!packed.count(node.inputs[1]) && !codebooks.count(node.inputs[1]))) continue;
    const std::string name = node.name.empty() ? absl::StrCat(node.op_type, "_", i) : node.name;  // the scan's
    for (const ptq::SkippedNode& skipped : scan.skipped) {
      if (skipped.name == name) rewrite.skipped.push_back(skipped);
    }
  }
  for (const ptq::QuantizableLayer& layer : scan.layers) {
    const auto rtn = packed.find(layer.weight);
    const auto lut = codebooks.find(layer.weight);
    if (rtn == packed.end() && lut == codebooks.end()) continue;  // not quantized
    auto skip = [&](std::string reason) { rewrite.skipped.push_back({layer.name, std::move(reason)}); };
    if (rtn != packed.end() && rtn->second.bits == 8) continue;  // UseInt8Kernels' (or fp32), listed there
    if (layer.op_type == "Conv" && !options.conv) {
      skip("Conv kept on the fp32 kernel (conv = false)");
      continue;
    }
    Node* node = internal::FindLayerNode(graph, layer);
    if (node == nullptr) {
      skip("node not found");
      continue;
    }
    if (const std::string form = internal::UnsupportedLayerForm(*graph, layer, *node); !form.empty()) {
      skip(form);
      continue;
    }
    const std::vector<float> dense = ptq::WeightMatrix(*graph, layer);
    const std::string bias = layer.op_type != "MatMul" ? layer.bias : std::string();
    Node replacement;
    replacement.name = node->name;
    replacement.outputs = node->outputs;
    replacement.attributes = {{"in", layer.in}, {"out", layer.out}};
    const bool conv = layer.op_type == "Conv";
    if (conv) internal::AddConvAttributes(layer, &replacement);
    if (rtn != packed.end()) {
      const QuantizedLinear& q = rtn->second;
      if (!IsNibbleBits(q.bits) || q.out != layer.out || q.in != layer.in) {
        skip(absl::StrCat("packed weight is ", q.bits, "-bit [", q.out, ", ", q.in, "], the graph's [", layer.out,
                          ", ", layer.in, "]"));
        continue;
      }
      std::vector<float> decoded(q.out * q.in);
      if (!DequantizeRtn(q, decoded.data()).ok() || !SameWeights(dense, decoded)) {
        skip("packed weight does not dequantize to the graph's weight");
        continue;
      }
      const std::string base = absl::StrCat(layer.weight, ".int", q.bits);
      const std::string packed_name = graph::UniqueValueName(*graph, base + "_packed");
      graph->initializers[packed_name] = BytesTensor(q.packed);
      const std::string scales = graph::UniqueValueName(*graph, base + "_scales");
      graph->initializers[scales] =
          Tensor::FromVector<float>(DataType::kFloat32, {static_cast<int64_t>(q.scales.size())}, q.scales);
      std::string zeros;
      if (q.asymmetric) {
        zeros = graph::UniqueValueName(*graph, base + "_zero_points");
        graph->initializers[zeros] = Tensor::FromVector<uint8_t>(
            DataType::kUInt8, {static_cast<int64_t>(q.zero_points.size())}, q.zero_points);
      }
      replacement.op_type = conv ? kLowBitConvOp : kLowBitMatMulOp;
      replacement.inputs = {layer.input, packed_name, scales, zeros, bias};
      replacement.attributes.insert({{"bits", int64_t{q.bits}},
                                     {"group_size", int64_t{q.group_size}},
                                     {"asymmetric", int64_t{q.asymmetric}}});
      rewrite.low_bit_layers.push_back(layer.name);
    } else {
      const CodebookLinear& c = lut->second;
      if (!c.Validate().ok() || c.out != layer.out || c.in != layer.in) {
        skip(absl::StrCat("codebook weight [", c.out, ", ", c.in, "] is invalid or not the graph's [", layer.out, ", ",
                          layer.in, "]"));
        continue;
      }
      std::vector<float> decoded(c.out * c.in);
      if (!DecodeWeights(CodebookWeightsView::Of(c), decoded.data()).ok() || !SameWeights(dense, decoded)) {
        skip("codebook weight does not decode to the graph's weight");
        continue;
      }
      const std::string base = absl::StrCat(layer.weight, ".kmeans", c.bits);
      const std::string indices = graph::UniqueValueName(*graph, base + "_indices");
      graph->initializers[indices] = BytesTensor(c.packed);
      const std::string codebook = graph::UniqueValueName(*graph, base + "_codebook");
      graph->initializers[codebook] =
          Tensor::FromVector<float>(DataType::kFloat32, {static_cast<int64_t>(c.codebook.size())}, c.codebook);
      replacement.op_type = conv ? kLutConvOp : kLutMatMulOp;
      replacement.inputs = {layer.input, indices, codebook, bias};
      replacement.attributes.insert({{"bits", int64_t{c.bits}}, {"per_row_codebook", int64_t{c.per_row_codebook}}});
      rewrite.lut_layers.push_back(layer.name);
    }
    *node = std::move(replacement);
    if (layer.weight_input != layer.weight && graph::CountUses(*graph, layer.weight_input) == 0) {
      internal::EraseProducer(graph, layer.weight_input);
    }
    if (graph::CountUses(*graph, layer.weight) == 0) graph->initializers.erase(layer.weight);
  }
  SQ_RETURN_IF_ERROR(graph::SortTopologically(graph));
  return rewrite;
}

std::string DescribeWeightOnlyRewrite(const WeightOnlyRewrite& rewrite) {
  std::vector<std::string> parts;
  if (!rewrite.low_bit_layers.empty()) {
    parts.push_back(absl::StrCat("int4/3/2 ", absl::StrJoin(rewrite.low_bit_layers, ", ")));
  }
  if (!rewrite.lut_layers.empty()) parts.push_back(absl::StrCat("codebook ", absl::StrJoin(rewrite.lut_layers, ", ")));
  std::string text = parts.empty() ? std::string("no layer on weight-only low-bit kernels")
                                   : absl::StrCat("low-bit kernels (weight-only, dequantized inside the GEMM): ",
                                                  absl::StrJoin(parts, "; "));
  if (!rewrite.skipped.empty()) {
    std::vector<std::string> skipped;
    for (const ptq::SkippedNode& layer : rewrite.skipped) {
      skipped.push_back(absl::StrCat(layer.name, " (", layer.reason, ")"));
    }
    absl::StrAppend(&text, "; fp32: ", absl::StrJoin(skipped, ", "));
  }
  return text;
}

int64_t InitializerBytes(const Graph& graph) {
  int64_t bytes = 0;
  for (const auto& [name, tensor] : graph.initializers) bytes += tensor.byte_size();
  return bytes;
}

std::optional<absl::StatusOr<std::vector<Tensor>>> RunWeightOnlyNode(const runtime::KernelCall& call,
                                                                    int num_threads,
                                                                    const runtime::KernelBackend& base) {
  if (call.node.op_type == kLowBitMatMulOp || call.node.op_type == kLowBitConvOp) {
    return RunLowBit(call, num_threads, base);
  }
  if (call.node.op_type == kLutMatMulOp || call.node.op_type == kLutConvOp) return RunLut(call, num_threads, base);
  return std::nullopt;
}

}  // namespace squeeze::core::quant::gemm
