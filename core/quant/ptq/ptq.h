// Calibrated post-training quantization of a graph: finds its quantizable
// layers (layers.h), calibrates them on a set of batches (calibration.h),
// optionally rescales input channels (input_scaling.h: AWQ, SmoothQuant),
// quantizes every weight (RTN from rtn.h, or GPTQ from gptq.h), optionally
// corrects the bias, and returns
//   - the packed weights (QuantizedLinear, the layouts of packed_formats.h),
//     for export and packed kernels, and
//   - a simulated ("fake-quant") copy of the graph: each quantized weight
//     replaced by its dequantized float values and, with activation
//     quantization, a QuantizeLinear -> DequantizeLinear pair on each
//     quantized layer's input, so that the CPU backend measures the
//     quantized model's quality.
// Statistics come from the float model in one pass (not layer by layer
// through the already-quantized layers); input scaling calibrates a second
// time, through the rescaled graph.
#ifndef SQUEEZE_CORE_QUANT_PTQ_PTQ_H_
#define SQUEEZE_CORE_QUANT_PTQ_PTQ_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"
#include "core/quant/ptq/calibration.h"
#include "core/quant/ptq/gptq.h"
#include "core/quant/ptq/layers.h"
#include "core/quant/ptq/observers.h"
#include "core/quant/quantized_model.h"
#include "core/quant/rtn.h"

namespace squeeze::core::quant::ptq {

enum class WeightMethod { kRtn, kGptq, kAwq };

// "rtn", "gptq", "awq".
std::string WeightMethodName(WeightMethod method);

struct WeightQuantization {
  WeightMethod method = WeightMethod::kRtn;
  RtnOptions format{4, 0, false};  // bits 4 or 8; group_size must divide every layer's in
  GptqOptions gptq;                // kGptq only
  double awq_alpha_step = 0.05;    // kAwq only
  bool bias_correction = false;    // b -= (W_q - W) E[x]; Gemm and Conv only
};

struct ActivationQuantization {
  Observer observer = Observer::kMinMax;
  double percentile = 99.99;  // kPercentile only
};

struct PtqOptions {
  std::optional<WeightQuantization> weights;          // absent: weights stay float
  std::optional<ActivationQuantization> activations;  // absent: activations stay float
  bool smoothquant = false;  // needs `activations`
  double smoothquant_alpha = 0.5;
  CalibrationOptions calibration;

  // INVALID_ARGUMENT naming the layer when the weight format does not fit
  // it, plus the option errors of the methods ("ptq: smoothquant needs
  // activation quantization").
  absl::Status Validate(const std::vector<QuantizableLayer>& layers) const;
};

struct LayerReport {
  std::string name;
  std::string op_type;
  int64_t out = 0, in = 0;
  std::string technique;           // e.g. "gptq int4-g64-sym", "rtn int8-pc-sym + a8 entropy"
  int weight_bits = 32;            // bits stored per weight; 32 when the weights stay float
  int64_t nonfinite_weights = 0;   // NaN/inf weights, set to 0 before quantizing
  int64_t zero_rows = 0;           // all-zero output channels (scale 0, stay 0)
  int64_t dead_columns = 0;        // GPTQ: inputs that were always 0 (weight set to 0)
  double awq_alpha = -1;           // AWQ: the chosen alpha
  float activation_scale = 0;      // with activation quantization
  double weight_relative_error = 0;  // ||W_q - W|| / ||W||
  std::vector<std::string> notes;
};

struct PtqResult {
  graph::Graph graph;                     // the simulated model
  std::vector<QuantizedLinear> packed;    // one per quantized layer, in report order
  std::vector<LayerReport> layers;
  std::vector<SkippedNode> skipped;       // matrix/conv nodes left in float, with why
};

// Quantizes `graph` as `options` say. Options are validated for every layer
// before calibration starts. `progress` (may be empty) is called after each
// layer's weights are quantized with (i, N), i 0-based; returning false
// cancels (CANCELLED). Errors: PtqOptions::Validate, Calibrate's (empty or
// mismatched calibration sets), the methods' (naming the layer);
// INVALID_ARGUMENT when the graph has no quantizable layer.
absl::StatusOr<PtqResult> QuantizeGraph(const graph::Graph& graph, const std::vector<CalibrationBatch>& batches,
                                        const PtqOptions& options, const LayerProgressFn& progress = {});

}  // namespace squeeze::core::quant::ptq

#endif  // SQUEEZE_CORE_QUANT_PTQ_PTQ_H_
