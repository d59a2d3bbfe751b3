// Low-rank factorization of a graph's Linear (Gemm/MatMul) and Conv layers.
//
// Each chosen layer is replaced in the graph by two (or three) smaller ones,
// with new initializers, so the graph the runtime executes and the ONNX that
// core/onnx writes are both smaller:
//   Gemm/MatMul  W [out, in] ~= U diag(s) V'  ->  x V (r wide), * s, then U'
//                (Gemm stays Gemm with transB = 1, MatMul stays MatMul; a
//                MatMul through Transpose loses its Transpose node)
//   Conv, kSvd   W reshaped [out, c*kh*kw] ~= U diag(s) V'  ->  a kh x kw conv
//                with r filters (V' reshaped, original strides/pads), * s,
//                then a 1x1 conv with `out` filters (U, original bias)
//   Conv, kTucker2  W [out, c, kh, kw] ~= G x0 U_out x1 U_in (HOSVD of the
//                two channel modes)  ->  1x1 conv c -> r1 (U_in'), kh x kw
//                conv r1 -> r2 (core G, original strides/pads), 1x1 conv
//                r2 -> out (U_out, original bias)
// The per-rank scale s is a separate Mul node (trainable_scale, the default)
// so that recovery can fine-tune it through core/train autograd;
// FoldRankScales merges it into the first factor before export. With
// trainable_scale = false, sqrt(s) is folded into both factors at once.
//
// The layers are the ones core/quant/ptq FindQuantizableLayers finds. A
// layer whose factorization at the chosen rank would not save parameters
// is left alone and reported as such.
#ifndef SQUEEZE_CORE_LOWRANK_LOWRANK_H_
#define SQUEEZE_CORE_LOWRANK_LOWRANK_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"

namespace squeeze::core::lowrank {

enum class RankMode {
  kEnergy,       // per layer, the smallest rank keeping >= `energy` of sum sigma^2
  kTargetRatio,  // per layer, the largest rank with params after / before <= target_ratio
  kSensitivity,  // a global budget of target_ratio * (params of the candidate
                 // layers), spent greedily by least output damage per
                 // parameter saved, measured on calibration data
  kExplicit,     // only the layers named in `ranks`
};

enum class ConvMode {
  kSkip,     // convolutions are left alone
  kSvd,      // kh x kw conv with r filters + 1x1 conv
  kTucker2,  // 1x1 conv + kh x kw conv + 1x1 conv (kernels larger than 1x1 only)
};

struct LowRankOptions {
  RankMode mode = RankMode::kTargetRatio;
  double energy = 0.9;         // kEnergy: in (0, 1]
  double target_ratio = 0.25;  // kTargetRatio, kSensitivity: in (0, 1)
  // Rank per layer name; overrides `mode` for that layer (kTucker2: r1 = r2 =
  // this rank, capped at the channel counts). Must be in [1, min(out, in)].
  std::map<std::string, int64_t> ranks;
  std::set<std::string> skip;  // layer names left alone
  bool linear = true;          // factorize Gemm/MatMul layers
  ConvMode conv = ConvMode::kSkip;
  bool trainable_scale = true;  // emit the scale s as a Mul node (see above)
  // kSensitivity: the candidate ranks of each layer are the kTargetRatio
  // ranks at these parameter ratios. Each must be in (0, 1).
  std::vector<double> sensitivity_ratios = {1.0 / 32, 1.0 / 16, 1.0 / 8, 3.0 / 16, 1.0 / 4,
                                            5.0 / 16, 3.0 / 8,   1.0 / 2, 5.0 / 8,  3.0 / 4};
  int64_t sensitivity_batches = 2;  // calibration batches the damage is measured on
};

// INVALID_ARGUMENT naming the option and the bad value.
absl::Status ValidateLowRankOptions(const LowRankOptions& options);

// One input batch for the graph (graph input name -> tensor).
using CalibrationBatch = std::map<std::string, graph::Tensor>;

// Called before each layer; returning false cancels (CANCELLED).
using ProgressFn = std::function<bool(int index, int count)>;

struct LayerReport {
  std::string name;     // the node name
  std::string weight;   // the original weight initializer (removed when factorized)
  std::string op_type;  // Gemm, MatMul or Conv
  std::string form;     // "svd", "conv-svd", "tucker2"; "" when left alone
  bool factorized = false;
  std::string note;     // why the layer was left alone
  int64_t out = 0, in = 0;  // of the [out, in] weight matrix
  int64_t rank = 0;     // kept rank (tucker2: r2, the output-side rank)
  int64_t rank_in = 0;  // tucker2: r1, the input-side rank
  int64_t params_before = 0;  // weight elements (biases are unchanged and not counted)
  int64_t params_after = 0;   // factor elements plus the scale vector
  double relative_error = 0;  // ||W - W_r||_F / ||W||_F
  double retained_energy = 1;  // kept sigma^2 / all (tucker2: of the output mode)
};

// A rank scale s between two factors: Mul(mul_input, scale) -> mul_output,
// where mul_input is the output of the node whose weight is `factor`.
struct RankScale {
  std::string scale;
  std::string factor;
  int64_t factor_rank_axis = 0;  // axis of `factor` that runs over the rank
  std::string mul_input, mul_output;
};

// A Gemm/MatMul/Conv node that was no candidate, and why (a tied or
// computed weight, a grouped conv, the skip list, a layer type not asked for).
struct SkippedLayer {
  std::string name;
  std::string reason;
};

struct LowRankResult {
  graph::Graph graph;
  std::vector<LayerReport> layers;  // every candidate layer, in node order
  std::vector<SkippedLayer> skipped;
  std::vector<RankScale> scales;    // trainable scale vectors (empty when folded)
  // Of all reported layers' weights (before) and after factorization.
  int64_t params_before = 0, params_after = 0;
};

// Factorizes `graph`. `calibration` is needed by kSensitivity only (the
// graph's first output is compared against the unfactorized graph's).
// INVALID_ARGUMENT for bad options, for a rank above min(out, in) (naming
// the layer and the value) or a name in `ranks` that is no candidate layer.
absl::StatusOr<LowRankResult> FactorizeGraph(const graph::Graph& graph, const LowRankOptions& options,
                                             const std::vector<CalibrationBatch>& calibration = {},
                                             const ProgressFn& progress = {});

// Merges each scale into its factor and removes the Mul nodes, for export
// after recovery has fine-tuned the scales. NOT_FOUND naming a scale,
// factor or Mul node that is missing.
absl::Status FoldRankScales(const std::vector<RankScale>& scales, graph::Graph* graph);

}  // namespace squeeze::core::lowrank

#endif  // SQUEEZE_CORE_LOWRANK_LOWRANK_H_
