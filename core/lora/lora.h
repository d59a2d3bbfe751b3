// LoRA: low-rank adapters on a graph's linear layers, for a short recovery
// fine-tune of a compressed model (issue 5).
//
// AddLoraAdapters rewrites every selected Gemm/MatMul layer y = x W (found
// with quant::ptq::FindQuantizableLayers) into
//   y = x W + scale * (x A') B',   A [rank, in], B [out, rank], scale = alpha / rank
// with A Gaussian (seeded) and B zero, so the adapted graph starts equal to
// the base graph. Only A and B are trainable (LoraGraph::trainable is the
// set to give GradientProgram::Create). Afterwards MergeLoraAdapters folds
// W += scale * B A into each base weight in the layer's own layout and
// removes the adapter nodes; or, to keep them separate, StripLoraAdapters
// returns the untouched base graph and LoraAdaptersToSafetensors the
// adapters under PEFT's names.
#ifndef SQUEEZE_CORE_LORA_LORA_H_
#define SQUEEZE_CORE_LORA_LORA_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"
#include "core/model/safetensors.h"
#include "core/quant/ptq/layers.h"

namespace squeeze::core::lora {

struct LoraOptions {
  int64_t rank = 8;     // in [1, min(in, out)] for every selected layer
  double alpha = 16;    // scale = alpha / rank
  // ECMAScript regular expression searched in the layer's node name and in
  // its weight initializer's name; empty selects every Gemm/MatMul layer.
  std::string name_pattern;
  uint64_t seed = 1;    // A ~ N(0, (1 / in)) drawn in layer order from this seed
};

// One adapted layer, with every name the rewrite added.
struct LoraAdapter {
  quant::ptq::QuantizableLayer layer;  // the base layer (its weight is unchanged)
  std::string a;                       // initializer [rank, in]
  std::string b;                       // initializer [out, rank]
  std::string scale_value;             // float32 scalar initializer
  std::string base_output;             // the layer node's output, renamed
  std::string output;                  // the layer's original output value
  std::vector<std::string> nodes;      // the adapter's nodes (names)
  std::vector<std::string> initializers;  // a, b, scale_value and the helper constants
  int64_t rank = 0;
  double scale = 0;
};

struct LoraGraph {
  graph::Graph graph;
  std::vector<LoraAdapter> adapters;  // in layer order
  std::set<std::string> trainable;    // every adapter's A and B
  int64_t trainable_parameters = 0;
};

// Adds adapters to the selected layers. INVALID_ARGUMENT naming the layer
// when the rank is < 1 or > min(in, out), or for a bad pattern or alpha <= 0;
// NOT_FOUND when the pattern selects no Gemm/MatMul layer. Conv layers are
// never adapted.
absl::StatusOr<LoraGraph> AddLoraAdapters(const graph::Graph& graph, const LoraOptions& options);

struct MergeOptions {
  // Weights that are exactly zero in the base stay zero (for a pruned base
  // model: the merged model keeps its sparsity, and then differs from the
  // adapted graph by the dropped part of scale * B A).
  bool keep_zeros = false;
};

// `adapted` (typically GradientProgram::graph() after training) with every
// adapter folded into its base weight and the adapter nodes removed: the
// base graph's structure with W += scale * B A. INVALID_ARGUMENT naming the
// adapter when one of its initializers is missing or has the wrong shape.
absl::StatusOr<graph::Graph> MergeLoraAdapters(const graph::Graph& adapted, const std::vector<LoraAdapter>& adapters,
                                               const MergeOptions& options = {});

// `adapted` without the adapters and with the base weights unchanged.
absl::StatusOr<graph::Graph> StripLoraAdapters(const graph::Graph& adapted, const std::vector<LoraAdapter>& adapters);

// The adapters as a safetensors file with PEFT names:
//   base_model.model.<weight without ".weight">.lora_A.weight  [rank, in]
//   base_model.model.<weight without ".weight">.lora_B.weight  [out, rank]
// and metadata {"format": "pt", "r", "lora_alpha", "target_modules"}.
// PEFT stores A and B of torch.nn.Linear in exactly these shapes; note that
// a Gemm/MatMul with an [in, out] weight is adapted the same way (the delta
// B A is [out, in] whatever the base layout).
absl::StatusOr<model::SafetensorsFile> LoraAdaptersToSafetensors(const graph::Graph& adapted,
                                                                 const std::vector<LoraAdapter>& adapters,
                                                                 double alpha);

}  // namespace squeeze::core::lora

#endif  // SQUEEZE_CORE_LORA_LORA_H_
