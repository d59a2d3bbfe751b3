// Hessian-aware mixed-precision weight quantization (issue 4).
//
// 1. Curvature per layer (MeasureSensitivity): the trace of the Hessian
//    block of the task loss with respect to the layer's weights, by
//    Hutchinson's estimator tr(H_ii) = E[v_i' H_ii v_i] over Rademacher v.
//    One probe draws v over all layers at once and takes one Hessian-vector
//    product by central differences of autograd gradients,
//      H d ~ (g(w + d) - g(w - d)) / 2,   d_i = h_i v_i,
//    with h_i = relative_step * RMS(W_i); then v_i . (H d)_i / h_i estimates
//    tr(H_ii) (cross-layer terms vanish in expectation). The gradient g is
//    the mean over the given loss batches (softmax cross-entropy of the
//    `logits` output against the batch labels). Fisher is the cheaper
//    option: the mean over batches of ||g_b,i||^2 (batch gradients, so it
//    underestimates the per-example Fisher; it ranks layers, it is no
//    unbiased trace). kQuadraticForm drops the isotropic approximation:
//    for each layer and candidate it measures dW' H_ii dW itself, dW =
//    Q_b(W) - W, by one central-difference HVP along dW (2 gradient
//    evaluations per layer and width, so it is the costly option).
//    kMeasuredLoss drops the second-order model altogether: for each layer
//    and candidate it quantizes that layer alone and measures the increase
//    of the mean loss over the batches (one forward pass per batch, layer
//    and width), less its first-order part g . dW (g: the mean gradient
//    over the batches, one backward pass each). At a trained model the
//    expected gradient is about 0; on a few calibration batches g . dW is
//    sampling noise that can make a 2-bit layer look like a gain. It sees
//    what the quadratic model cannot: a ternary 2-bit layer far outside the
//    quadratic region (docs/quality.md). The allocator then assumes only
//    that per-layer increases add up.
// 2. Error per layer and bit width b in {2, 3, 4, 8, 16}:
//    ||W - Q_b(W)||^2 with Q_b per-channel RTN (rtn.h; symmetric unless
//    SensitivityOptions::asymmetric; 2/3-bit
//    live in nibbles) and Q_16 the fp16 round trip (CastQuantize, rtn.h). The predicted loss
//    increase is (tr(H_ii) / params_i) * ||W - Q_b(W)||^2 (second order,
//    the Hessian block approximated by its mean diagonal, as in HAWQ-v2).
// 3. Sizes count nominal bits: params * b + 32 bits per output-channel scale
//    (+ 8 per zero point when asymmetric) (b < 16); params * 16 for fp16. Biases stay float and are not counted.
// 4. PlanMixedPrecision picks one width per layer minimising the summed
//    prediction under a budget in bits, exactly (bit_allocator.h).
#ifndef SQUEEZE_CORE_QUANT_MIXED_MIXED_PRECISION_H_
#define SQUEEZE_CORE_QUANT_MIXED_MIXED_PRECISION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"
#include "core/quant/mixed/bit_allocator.h"
#include "core/quant/ptq/layers.h"
#include "core/train/autograd.h"

namespace squeeze::core::quant::mixed {

enum class CurvatureEstimator { kHutchinson, kFisher, kQuadraticForm, kMeasuredLoss };

// A batch of the task loss: graph feeds and one label per row of logits.
struct LossBatch {
  train::TensorMap feeds;
  std::vector<int64_t> labels;
};

struct SensitivityOptions {
  CurvatureEstimator estimator = CurvatureEstimator::kHutchinson;
  int probes = 4;               // Rademacher vectors (Hutchinson), >= 1
  double relative_step = 1e-2;  // finite-difference step, times each layer's weight RMS (norm for kQuadraticForm)
  uint64_t seed = 1;
  std::string logits = "logits";     // the graph output the loss reads
  std::vector<int> candidate_bits = {2, 3, 4, 8, 16};  // each in {2, 3, 4, 8, 16}
  int num_threads = 0;          // CPU backend threads (0: all cores)
  // Candidates below 16 bits as asymmetric RTN (2-bit then has 4 levels, not
  // 3), each output channel's uint8 zero point adding 8 bits to the size.
  bool asymmetric = false;
};

struct LayerSensitivity {
  ptq::QuantizableLayer layer;
  int64_t params = 0;
  bool asymmetric = false;       // as SensitivityOptions::asymmetric
  double trace = 0;              // tr(H_ii) (Hutchinson) or the Fisher trace
  std::vector<int> bits;         // the candidates, in options order
  std::vector<double> error;     // ||W - Q_b(W)||^2 per candidate
  std::vector<int64_t> size_bits;
  // kQuadraticForm: dW' H_ii dW per candidate; kMeasuredLoss: the loss
  // increase with only this layer quantized (trace stays 0 for both).
  std::vector<double> measured;
  // trace / params * error, or `measured` when measured: the predicted
  // loss increase per candidate.
  double Predicted(size_t candidate) const;
};

// Per-layer curvature and per-candidate errors of every quantizable layer.
// INVALID_ARGUMENT for empty batches, a candidate outside {2,3,4,8,16},
// probes < 1, relative_step <= 0, or a graph without quantizable layers;
// GradientProgram's errors (naming a non-differentiable node), the loss's
// (a label out of range) pass through.
absl::StatusOr<std::vector<LayerSensitivity>> MeasureSensitivity(const graph::Graph& graph,
                                                                 const std::vector<LossBatch>& batches,
                                                                 const SensitivityOptions& options);

struct LayerPlan {
  std::string name;
  int64_t params = 0;
  int bits = 0;
  double predicted = 0;  // predicted loss increase at `bits`
  int64_t size_bits = 0;
};

struct MixedPlan {
  std::vector<LayerPlan> layers;
  double predicted = 0;
  int64_t size_bits = 0;
  int64_t params = 0;
  bool exact = true;  // the allocator's optimum is exact (bit_allocator.h)
  double AverageBits() const { return params == 0 ? 0 : static_cast<double>(size_bits) / params; }
};

// The plan of least predicted increase whose size is at most budget_bits.
// `allowed_bits` (empty: all candidates) restricts the widths, e.g. {2, 4}.
// FAILED_PRECONDITION when nothing fits.
absl::StatusOr<MixedPlan> PlanMixedPrecision(const std::vector<LayerSensitivity>& layers, int64_t budget_bits,
                                             const std::vector<int>& allowed_bits = {});

// Layer i at bits[i] (each one of that layer's candidates), with the
// predictions and sizes summed. INVALID_ARGUMENT naming a layer without
// that candidate, or for a bits.size() other than layers.size().
absl::StatusOr<MixedPlan> PlanWithBits(const std::vector<LayerSensitivity>& layers, const std::vector<int>& bits);

// Every layer at `bits` (which must be a candidate): the equal-size
// reference for a uniform format.
absl::StatusOr<MixedPlan> UniformPlan(const std::vector<LayerSensitivity>& layers, int bits);

// `graph` with each planned layer's weight replaced by Q_bits(W) (fake
// quantization, for evaluation). NOT_FOUND naming a plan layer the
// sensitivities do not have.
absl::StatusOr<graph::Graph> ApplyPlan(const graph::Graph& graph, const std::vector<LayerSensitivity>& layers,
                                       const MixedPlan& plan);

}  // namespace squeeze::core::quant::mixed

#endif  // SQUEEZE_CORE_QUANT_MIXED_MIXED_PRECISION_H_
