// Quantization-aware training (QAT) of a float graph to W4A8 or W8A8, LSQ
// style, on a progressive schedule:
//
//   1. Activations: ptq::QuantizeGraph (activations only, min-max observer)
//      puts a QuantizeLinear -> DequantizeLinear pair (per-tensor uint8 or
//      int8) on every quantizable layer's input; its scale becomes a
//      trainable initializer.
//   2. Weights: each quantizable weight W (the float "shadow" weight, still
//      the trainable parameter) feeds its layer through
//          W + lambda * (DQ(Q(W; s)) - W)
//      with a per-output-channel scale s (trainable, initialised to
//      max|W_row| / qmax as RTN would) in an int4 (or int8) container.
//      Autograd differentiates the pairs with the straight-through estimator
//      and LSQ scale gradients (core/train/vjp.cc, fake_quant.h is the
//      oracle); scale gradients are multiplied by LSQ's 1/sqrt(N qmax)
//      (with AdamW, which normalises gradient size, this matters little;
//      scale_learning_rate is the real knob).
//   3. Schedule over `steps` optimizer steps: ramp (lambda 0 -> 1 linearly:
//      the weight quantization error is phased in), then learn (lambda 1,
//      scales and weights trained), then frozen (scales fixed, weights
//      fine-tuned), learning rate cosine-decayed over the whole run.
//   4. Loss: cross-entropy on the labels, optionally mixed with the KL
//      divergence to the float model's temperature-softened logits.
//
// The result graph has the weights baked (FakeQuantize with the learned
// scales) and the activation pairs with their learned scales: the same
// simulated form as ptq::QuantizeGraph's, so the CPU backend measures it.
// Deterministic for a given seed and batch source.
#ifndef SQUEEZE_CORE_QUANT_QAT_QAT_H_
#define SQUEEZE_CORE_QUANT_QAT_QAT_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"
#include "core/quant/ptq/calibration.h"
#include "core/quant/rtn.h"

namespace squeeze::core::quant::qat {

struct Distillation {
  double temperature = 4.0;  // > 0
  double weight = 0.5;       // loss = weight * KL + (1 - weight) * CE, in [0, 1]
};

struct QatOptions {
  int weight_bits = 4;          // 4 (int4 container, codes [-8, 7]) or 8 (int8)
  int64_t steps = 300;          // optimizer steps, >= 3
  double ramp_fraction = 1.0 / 3;    // steps ramping lambda 0 -> 1
  double frozen_fraction = 1.0 / 3;  // final steps with scales frozen
  double learning_rate = 1e-4;        // AdamW on weights and biases (peak)
  double scale_learning_rate = 1e-4;  // AdamW on the scales (peak), on LSQ-scaled gradients
  std::optional<Distillation> distillation;
};

// One training batch: the graph's inputs and a class label per row of the
// first output (logits [rows, classes]).
struct QatBatch {
  std::map<std::string, graph::Tensor> feeds;
  std::vector<int64_t> labels;
};
// Returns batch `step` (0-based); called once per step, in order.
using QatBatchSource = std::function<absl::StatusOr<QatBatch>(int64_t step)>;

struct QatStep {
  int64_t step = 0;
  std::string phase;  // "ramp", "learn" or "frozen"
  double lambda = 0;
  double loss = 0;
};
// Called after each step; returning false cancels (CANCELLED).
using QatProgressFn = std::function<bool(const QatStep&)>;

struct QatLayer {
  std::string name;    // the layer (node) name
  std::string weight;  // its weight initializer
  std::vector<float> initial_scales, scales;  // per output channel
};

struct QatResult {
  graph::Graph graph;  // simulated W?A8 model: baked weights, activation QDQ
  std::vector<QatLayer> layers;
  // Weights as RTN-format QuantizedLinear (symmetric, per channel, the
  // learned scales, codes exactly the baked ones, so int4 may hold -8),
  // keyed by initializer: ExportQdqGraph's input.
  std::map<std::string, QuantizedLinear> packed;
  // The quantized activations (values feeding QuantizeLinear) with their
  // learned scale and zero point, and the range [(qmin - z) s, (qmax - z) s]
  // they stand for (what ExportQdqGraph takes).
  struct Activation {
    std::string value;
    float scale = 0;
    int zero = 0;
    bool is_signed = false;
    float min = 0, max = 0;
  };
  std::vector<Activation> activations;
  std::vector<QatStep> history;
};

// INVALID_ARGUMENT for bad options; QuantizeGraph's errors (empty
// calibration, no quantizable layer); the batch source's errors.
absl::StatusOr<QatResult> TrainQuantizationAware(const graph::Graph& float_graph,
                                                 const std::vector<ptq::CalibrationBatch>& calibration,
                                                 const QatBatchSource& batches, const QatOptions& options,
                                                 const QatProgressFn& progress = {});

}  // namespace squeeze::core::quant::qat

#endif  // SQUEEZE_CORE_QUANT_QAT_QAT_H_
