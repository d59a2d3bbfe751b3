// Structured pruning of a graph::Graph: whole output channels/filters of
// convolutions, output neurons of Gemm/MatMul layers (LLaMA FFN neurons
// included: gate/up rows and down columns together) and attention heads
// (q/k/v/o of a head together, grouped-query aware; GPT-2's fused c_attn
// too) are scored, chosen and
// physically removed, so the pruned graph has smaller initializers and
// shape constants and runs as a smaller dense model.
//
// Dependencies are found by tracing each layer's output channels forward
// through the graph: elementwise ops and pooling keep a channel, BatchNorm
// and per-channel constants are sliced with it, Flatten turns a channel
// into a block of columns of the next Gemm, a depthwise Conv passes it
// through, a Concat along the channel axis places it after the channels of
// the inputs before it (an offset; each input of a Concat stays its own
// group), and the next Conv/Gemm/MatMul loses the matching input columns.
// Layers whose outputs meet in a binary op (residual Add, SwiGLU's
// gate * up) share one channel set and are pruned together. A set that
// reaches the graph outputs, a Concat along another axis, a Reshape, a
// reduction or any other operator is left dense, and the reason is
// reported.
#ifndef SQUEEZE_CORE_PRUNE_STRUCTURED_H_
#define SQUEEZE_CORE_PRUNE_STRUCTURED_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"

namespace squeeze::core::prune {

// How units are ranked within a group (the lowest scores are removed).
enum class StructuredScore {
  kL1,        // sum |w| over the unit's weights
  kL2,        // sqrt(sum w^2) over the unit's weights
  kTaylor,    // first-order Taylor: |sum w * dL/dw| per batch, averaged
  kCombined,  // 0.7 * normalized Taylor + 0.3 * normalized activation variance
};
// "l1", "l2", "taylor", "combined".
std::string StructuredScoreName(StructuredScore score);
absl::StatusOr<StructuredScore> ParseStructuredScore(const std::string& name);

enum class RatioAllocation {
  kUniform,      // every group pruned by the same ratio
  kSensitivity,  // ratios inversely proportional to the measured loss increase
};

// kBlocks: one group per transformer stack, whose units are its blocks
// (attention + MLP with their residual adds); a removed block becomes the
// identity on the residual stream.
enum class GroupKind { kChannels, kHeads, kBlocks };

// One slice of an initializer owned by a group: unit u owns indices
// [offset + u * block, offset + (u + 1) * block) of `axis` (offset > 0 when
// the channels reach it through a Concat after other inputs).
struct UnitSlice {
  std::string initializer;
  int axis = 0;
  int64_t block = 1;
  int64_t offset = 0;
};

// A set of units that are removed together.
struct PruneGroup {
  // Channels: the weight initializer of the first producing layer (e.g.
  // "conv2.weight"). Heads: "<layer prefix>self_attn" (e.g.
  // "model.layers.0.self_attn"). Blocks: "model.layers".
  std::string name;
  GroupKind kind = GroupKind::kChannels;
  int64_t units = 0;
  // Names that select this group in options: `name` plus every producing
  // layer's weight initializer.
  std::vector<std::string> aliases;
  bool prunable = true;
  std::string reason;  // why not, when !prunable

  std::vector<UnitSlice> slices;
  // Depthwise Convs the channels pass through (by output value): their
  // `group` attribute becomes the kept unit count.
  std::vector<std::string> depthwise_outputs;
  // The value whose per-unit variance is the activation statistic, with the
  // unit axis counted from the end (-1: last) and the unit block.
  std::string activation;
  int activation_axis = -1;
  int64_t activation_block = 1;
  int64_t activation_offset = 0;

  // Heads only: units are query heads of `head_dim`; a key/value head is
  // removed with the last query head of its group. GPT-2's fused attention
  // (one c_attn projection for q, k and v) has no separate k/v weights: its
  // q, k and v columns are `slices` at offsets 0, d and 2d, and
  // `fused_slices` are the Slice nodes (by output) that split them.
  int64_t head_dim = 0;
  int64_t kv_heads = 0;
  std::string q_weight, k_weight, v_weight, o_weight;
  std::vector<std::string> fused_slices;
  // Outputs of the Reshape nodes that split q, k, v into heads and merge
  // the context back; of the key/value repeat (outer Reshape) and its input.
  std::string q_split, k_split, v_split, merge;
  std::string k_repeat, k_repeat_input, v_repeat, v_repeat_input;

  // Blocks only, per block: the residual stream entering it and leaving it,
  // and the prefix of its initializers ("model.layers.3.").
  std::vector<std::string> block_inputs, block_outputs, block_prefixes;
};

// Every channel group, attention-head group and transformer block stack of
// `graph`, prunable or not.
// INVALID_ARGUMENT when the graph does not sort.
absl::StatusOr<std::vector<PruneGroup>> FindPruneGroups(const graph::Graph& graph);

// Calibration data: feeds for the graph and one label per output row (the
// class for a classifier, the next token for a language model).
struct LabeledBatch {
  std::map<std::string, graph::Tensor> feeds;
  std::vector<int64_t> labels;
};

// Per-unit scores of each group (parallel to `groups`; empty for groups
// that are not prunable). Taylor and combined need `batches`; the loss is
// softmax cross-entropy of the first graph output against the labels.
// `gradient_weight` is the combined criterion's weight on the Taylor term.
absl::StatusOr<std::vector<std::vector<double>>> ScoreUnits(const graph::Graph& graph,
                                                            const std::vector<PruneGroup>& groups,
                                                            const std::vector<LabeledBatch>& batches,
                                                            StructuredScore score, double gradient_weight = 0.7);

// `graph` with the listed units removed (group name -> unit indices).
// INVALID_ARGUMENT naming the group for an unknown or unprunable group, an
// index out of range, or removing every unit.
absl::StatusOr<graph::Graph> RemoveUnits(const graph::Graph& graph, const std::vector<PruneGroup>& groups,
                                         const std::map<std::string, std::vector<int64_t>>& removed);

// Parameters of a graph: elements of float32 initializers of rank >= 1
// whose names do not start with "squeeze." (derived constants such as
// rotary tables and masks).
int64_t CountParameters(const graph::Graph& graph);

// What `target` and the sensitivity allocation count.
enum class PruneCost {
  kParameters,  // CountParameters
  // Multiply-accumulates of the layers with constant weights (Conv, Gemm,
  // MatMul by a weight), per example, measured on the first batch: weight
  // elements x output positions.
  kMacs,
};

struct StructuredOptions {
  // Fraction of the cost (`cost`: parameters by default) to remove, [0, 1).
  // Groups in `layer_ratios` count towards it; the rest is shared by the
  // other allowed groups.
  double target = 0.5;
  PruneCost cost = PruneCost::kParameters;
  StructuredScore score = StructuredScore::kCombined;
  double gradient_weight = 0.7;  // combined criterion, [0, 1]
  RatioAllocation allocation = RatioAllocation::kSensitivity;
  // Fixed ratios (fraction of a group's units removed, [0, 1)) by group
  // name or alias; these groups are not part of the allocation.
  std::map<std::string, double> layer_ratios;
  // Groups never pruned (by name or alias).
  std::set<std::string> exclude;
  // Kinds the allocation may prune (blocks only through layer_ratios by
  // default, e.g. {"model.layers", 0.25}).
  std::set<GroupKind> kinds = {GroupKind::kChannels, GroupKind::kHeads};
  // Sensitivity probe: each group alone loses this fraction of its units
  // (lowest scores) and the calibration loss increase is measured. (0, 1).
  double probe_ratio = 0.25;
  // No allocated ratio exceeds this, [0, 1).
  double max_layer_ratio = 0.9;
};

struct StructuredLayerReport {
  std::string name;
  GroupKind kind = GroupKind::kChannels;
  int64_t units_before = 0, units_after = 0;
  std::vector<int64_t> removed_units;  // ascending
  // Parameters of the initializers the group slices (shared ones, such as a
  // Gemm sliced by two groups, count in both).
  int64_t params_before = 0, params_after = 0;
  double ratio = 0;
  // Calibration loss increase at the probe ratio; < 0 when not measured.
  double probe_loss_increase = -1;
};

struct StructuredResult {
  graph::Graph graph;
  std::vector<StructuredLayerReport> layers;
  // Groups left dense and why (prunable groups not chosen are in `layers`).
  std::vector<std::pair<std::string, std::string>> skipped;
  int64_t params_before = 0, params_after = 0;
  // Layer MACs per example before and after (measured when cost is kMacs,
  // 0 otherwise).
  double macs_before = 0, macs_after = 0;
  // Mean calibration loss before and after (0 without batches).
  double loss_before = 0, loss_after = 0;
};

// Progress: a stage name ("scores", "probe <group>", "remove") and a
// fraction in [0, 1]. Returning false cancels (CANCELLED).
using StructuredProgress = std::function<bool(const std::string& stage, double fraction)>;

// Scores, allocates ratios and removes units. INVALID_ARGUMENT naming the
// option for values out of range, naming the layer for unknown or
// unprunable names in layer_ratios/exclude; FAILED_PRECONDITION when Taylor,
// combined or sensitivity allocation get no batches, or when the allowed
// groups cannot reach `target`.
absl::StatusOr<StructuredResult> PruneStructured(const graph::Graph& graph, const std::vector<LabeledBatch>& batches,
                                                 const StructuredOptions& options,
                                                 const StructuredProgress& progress = nullptr);

// Mean softmax cross-entropy of the graph's first output over `batches`
// (CPU runtime).
absl::StatusOr<double> CalibrationLoss(const graph::Graph& graph, const std::vector<LabeledBatch>& batches);

}  // namespace squeeze::core::prune

#endif  // SQUEEZE_CORE_PRUNE_STRUCTURED_H_
