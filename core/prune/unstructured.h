// Unstructured and semi-structured (N:M) pruning of a graph's linear layers:
// the Gemm/MatMul/Conv layers of ptq::FindQuantizableLayers, seen as [out,
// in] weight matrices. Pruned weights are set to zero in place (same graph
// structure); nm_sparse.h turns N:M-patterned weights into the compressed
// form the runtime executes.
//
// Methods:
//   magnitude  |W_ij|; one threshold per layer, or one over all pruned
//              layers (scope kGlobal);
//   Wanda      |W_ij| * ||X_j||_2 (Sun et al., 2023), compared within each
//              output row; ||X_j||^2 is proportional to the calibration
//              Hessian's diagonal H_jj = 2 sum x_j^2 / rows;
//   SparseGPT  (Frantar & Alistarh, 2023) column sweep through the upper
//              Cholesky factor U of (H + damp I)^-1 in blocks of 128
//              columns: the mask of each block is chosen by w^2 / U_jj^2
//              (per block for unstructured, per group of M with N:M), each
//              pruned weight's error is spread over the later columns, so
//              the kept weights are reconstructed, not just kept.
// With N:M, each group of M consecutive input weights of a row keeps the N
// with the highest score. Calibration statistics come from the dense model in
// one pass (as core/quant/ptq does), or, with PruneOptions::sequential, layer
// by layer through the already pruned layers as in the papers.
//
// Gradual pruning (Zhu & Gupta, 2017): GradualPruner recomputes magnitude
// masks on a cubic schedule during fine-tuning and re-applies them after
// every optimizer step.
#ifndef SQUEEZE_CORE_PRUNE_UNSTRUCTURED_H_
#define SQUEEZE_CORE_PRUNE_UNSTRUCTURED_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"
#include "core/quant/ptq/calibration.h"
#include "core/quant/ptq/layers.h"
#include "core/quant/quantized_model.h"

namespace squeeze::core::prune {

enum class PruneMethod { kMagnitude, kWanda, kSparseGpt };
enum class PruneScope { kPerLayer, kGlobal };

// "magnitude", "wanda", "sparsegpt".
std::string PruneMethodName(PruneMethod method);

// How much of one [out, in] matrix to prune: `sparsity` of its weights, or,
// when m > 0, all but n of every group of m consecutive weights in a row.
struct SparsityTarget {
  double sparsity = 0.5;  // in [0, 1); unused when m > 0
  int n = 0, m = 0;       // N:M when m > 0: 1 <= n < m <= 16, m divides in
};

struct PruneOptions {
  PruneMethod method = PruneMethod::kMagnitude;
  // Fraction of each pruned layer's weights set to zero, in [0, 1). Not used
  // with N:M (the pattern fixes it at 1 - N/M).
  double sparsity = 0.5;
  PruneScope scope = PruneScope::kPerLayer;  // kGlobal: magnitude only, not with N:M
  int nm_n = 0, nm_m = 0;                    // N:M semi-structured when nm_m > 0
  // Layers left dense, by layer (node) name or weight initializer name.
  std::vector<std::string> skip_layers;
  // Calibrate each layer on the inputs it gets from the already-pruned
  // layers before it (the papers' sequential mode; one calibration pass per
  // layer) instead of once on the dense model.
  bool sequential = false;
  double dampening = 0.01;     // SparseGPT: fraction of mean(diag H) added to H
  int64_t block_size = 128;    // SparseGPT: columns per lazy update block
  // Calibration: Wanda and SparseGPT need it (hessian is switched on for
  // them); magnitude uses it, when batches are given, only for the report's
  // reconstruction errors.
  quant::ptq::CalibrationOptions calibration;

  // INVALID_ARGUMENT naming the option and value ("prune: sparsity must be in
  // [0, 1), got 1.5"), or the layer when N:M does not fit it, or an entry of
  // skip_layers that names no layer.
  absl::Status Validate(const std::vector<quant::ptq::QuantizableLayer>& layers) const;
};

struct PruneLayerReport {
  std::string name;
  std::string op_type;
  std::string weight;
  int64_t out = 0, in = 0;
  int64_t params = 0;      // out * in
  int64_t zeros = 0;       // zero weights after pruning (zeros already there included)
  double sparsity = 0;     // zeros / params
  // ||X W^T - X W'^T|| / ||X W^T|| on the calibration rows kept for the
  // layer (dense-model inputs; with `sequential`, the inputs the pruned
  // layers before it produce); -1 when there were none (magnitude without
  // batches).
  double relative_output_error = -1;
  // How unequal the layer's input features are: max_j ||X_j|| / median_j
  // ||X_j|| over the input columns, on the calibration rows (1 when they are
  // equal); 0 without calibration statistics. Wanda's |W| * ||X|| differs
  // from |W| only through this spread.
  double input_norm_spread = 0;
  std::vector<std::string> notes;  // e.g. SparseGPT damping retries
};

struct PruneResult {
  graph::Graph graph;                          // the pruned model (same structure)
  std::vector<PruneLayerReport> layers;        // pruned layers, in node order
  std::vector<quant::ptq::SkippedNode> skipped;  // left dense, with why
  int64_t params = 0, zeros = 0;               // over the pruned layers
};

// Prunes `graph` as `options` say. `batches` may be empty for magnitude only
// (no reconstruction errors then). `progress` (may be empty) is called after
// each layer with (i, N); returning false cancels (CANCELLED). Errors:
// Validate's; INVALID_ARGUMENT when the graph has no prunable layer or when
// Wanda/SparseGPT get no batches; Calibrate's; SparseGPT's (a Hessian that
// stays indefinite, naming the layer).
absl::StatusOr<PruneResult> PruneGraph(const graph::Graph& graph,
                                       const std::vector<quant::ptq::CalibrationBatch>& batches,
                                       const PruneOptions& options, const quant::LayerProgressFn& progress = {});

// The per-matrix methods ([out, in] row-major weights; they return the
// pruned matrix). `layer` names the matrix in errors.
// Magnitude with a per-matrix threshold (the floor(sparsity * out * in)
// smallest |w| are zeroed) or per N:M group.
absl::StatusOr<std::vector<float>> PruneMagnitude(const std::string& layer, const std::vector<float>& weight,
                                                  int64_t out, int64_t in, const SparsityTarget& target);
// Wanda: column_sq_norms[j] = sum over calibration rows of x_j^2 (or any
// positive multiple); floor(sparsity * in) weights pruned per row, or per
// N:M group.
absl::StatusOr<std::vector<float>> PruneWanda(const std::string& layer, const std::vector<float>& weight,
                                              int64_t out, int64_t in, const std::vector<double>& column_sq_norms,
                                              const SparsityTarget& target);
// SparseGPT with hessian [in, in] (2 X'X / rows). `notes` (may be null) gets
// damping retries.
absl::StatusOr<std::vector<float>> PruneSparseGpt(const std::string& layer, const std::vector<float>& weight,
                                                  int64_t out, int64_t in, const std::vector<double>& hessian,
                                                  const SparsityTarget& target, double dampening, int64_t block_size,
                                                  std::vector<std::string>* notes);

// Gradual magnitude pruning during fine-tuning.
struct GradualSchedule {
  double initial_sparsity = 0.0;  // s_i, at begin_step
  double final_sparsity = 0.5;    // s_f, from end_step on; in [0, 1)
  int64_t begin_step = 0;
  int64_t end_step = 100;         // > begin_step
  int64_t frequency = 10;         // masks are recomputed every `frequency` steps
};

// Zhu & Gupta's cubic schedule: s_t = s_f + (s_i - s_f) (1 - (t - t0) / T)^3
// for t in [t0, t0 + T], s_i before, s_f after (t0 = begin_step, T =
// end_step - begin_step).
double CubicSparsity(const GradualSchedule& schedule, int64_t step);

class GradualPruner {
 public:
  // Prunes the linear layers of `graph` (ptq::FindQuantizableLayers, minus
  // `skip_layers`) per layer by magnitude. INVALID_ARGUMENT for a schedule
  // out of range (naming the field and value) or an unknown skipped layer.
  static absl::StatusOr<GradualPruner> Create(const graph::Graph& graph, GradualSchedule schedule,
                                              std::vector<std::string> skip_layers = {});

  // Call after optimizer step `step` (0-based) with the program's
  // parameters (train::GradientProgram::mutable_parameters()): on a pruning
  // step (begin_step <= step <= end_step, step - begin_step a multiple of
  // frequency, or the first call past end_step) the masks become the
  // magnitude masks of the current weights at CubicSparsity(step), never
  // reviving a pruned weight; then the masked weights are set to zero.
  // NOT_FOUND naming a weight missing from `parameters`.
  absl::Status Apply(int64_t step, std::map<std::string, graph::Tensor>* parameters);

  // Sparsity the masks were last computed for (0 before the first).
  double current_sparsity() const { return current_sparsity_; }
  const std::vector<quant::ptq::QuantizableLayer>& layers() const { return layers_; }

 private:
  GradualPruner(GradualSchedule schedule, std::vector<quant::ptq::QuantizableLayer> layers)
      : schedule_(schedule), layers_(std::move(layers)) {}

  GradualSchedule schedule_;
  std::vector<quant::ptq::QuantizableLayer> layers_;
  std::map<std::string, std::vector<uint8_t>> masks_;  // by weight, storage order; 1 keeps
  double current_sparsity_ = 0;
  bool final_applied_ = false;
};

}  // namespace squeeze::core::prune

#endif  // SQUEEZE_CORE_PRUNE_UNSTRUCTURED_H_
