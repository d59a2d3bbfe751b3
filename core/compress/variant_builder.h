// Builds one compressed variant of a model end to end: everything a worker
// job does, callable and testable without any service around it.
#ifndef SQUEEZE_CORE_COMPRESS_VARIANT_BUILDER_H_
#define SQUEEZE_CORE_COMPRESS_VARIANT_BUILDER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/eval/energy.h"
#include "core/eval/latency.h"
#include "core/quant/rtn.h"

namespace squeeze::core::compress {

// Rows drawn from N(0, 1) when no calibration file is given.
inline constexpr int64_t kGeneratedCalibrationRows = 64;

struct VariantRequest {
  // A linear-chain safetensors model (see model/linear_chain.h).
  std::string model_path;
  // Safetensors file whose tensor "inputs" is [N, input width], floating
  // point. Empty: kGeneratedCalibrationRows rows drawn from N(0, 1) with
  // `seed`.
  std::string calibration_path;
  // Same format; the inputs the output metric is measured on. Empty: the
  // calibration inputs.
  std::string evaluation_path;
  quant::RtnOptions rtn;
  uint64_t seed = 0;
  eval::EnergyModel energy_model = eval::DefaultCpuEnergyModel();
  // Where the artifact ("safetensors-squeeze-q", see quant/quantized_model.h)
  // is written, atomically, once everything else has succeeded.
  std::string artifact_path;
};

struct LayerFidelity {
  std::string name;
  int bits = 0;
  // The layer's output (before ReLU) with dequantized weights vs float
  // weights, on the float model's inputs to that layer from calibration.
  double relative_error = 0.0;
  double sqnr_db = 0.0;
  int64_t parameters = 0;
};

// The latency, energy and size axes that every variant builder measures the
// same way, for the original model and for the variant.
struct CostReport {
  // Batch-1 latency of the original and of the variant in our runtime,
  // seconds (each builder says how the variant executes).
  eval::LatencyStats baseline_latency;
  eval::LatencyStats latency;
  int batch_size = 1;
  // Estimated energy per inference (one row); see docs/energy.md.
  double baseline_joules = 0.0;
  double joules = 0.0;
  std::string energy_model_description;
  int64_t baseline_bytes = 0;     // size of the model file
  int64_t artifact_bytes = 0;     // size of the artifact file
  int64_t fp32_weight_bytes = 0;  // 4 bytes per float parameter
  std::string hardware;           // CPU model name from /proc/cpuinfo
};

// Latency here is model::Forward of the original vs of the variant's
// weights dequantized once at load (quant::DequantizeChain), as a runtime
// would hold them: the same speed unless the shapes differ.
struct VariantReport : CostReport {
  std::string technique;  // RtnOptions::TechniqueName(), e.g. "int4-g128-sym"
  std::vector<LayerFidelity> layers;
  // Output relative error of the float model against itself: always 0,
  // reported so that both columns of a comparison have a value.
  double baseline_metric = 0.0;
  // Output relative error of the variant (as read back from the artifact
  // bytes) against the float model on the evaluation inputs.
  double metric = 0.0;
  double output_sqnr_db = 0.0;
};

// Called at the start of each stage (step 0) and after each unit of work
// within it. Stages in order, with their totals: "load" (1), "calibrate" (1),
// "quantize" (one step per layer), "evaluate" (one per layer, plus one for
// the model output), "measure" (2: baseline, variant). Returning false
// cancels.
using ProgressFn =
    std::function<bool(const std::string& stage, int64_t step, int64_t total)>;

// Loads the model and inputs, quantizes with RTN, evaluates, measures, and
// writes the artifact. INVALID_ARGUMENT for a bad model, calibration or
// evaluation file (naming the file and the problem: a missing "inputs"
// tensor, a width that does not match the model's, non-finite inputs) or bad
// options; file-system errors keep their codes; CANCELLED when `progress`
// (may be empty) returns false, in which case no artifact is written.
absl::StatusOr<VariantReport> BuildQuantizedVariant(
    const VariantRequest& request, const ProgressFn& progress);

// The "model name" line of /proc/cpuinfo, or "unknown CPU".
std::string CpuModelName();

}  // namespace squeeze::core::compress

#endif  // SQUEEZE_CORE_COMPRESS_VARIANT_BUILDER_H_
