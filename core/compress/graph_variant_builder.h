// Builds one quantized variant of an ONNX model end to end with calibrated
// PTQ (quant/ptq): what a worker job does for an ONNX model, callable and
// testable without any service around it. The safetensors linear-chain
// models go through variant_builder.h instead; DetectModelFormat tells the
// two apart.
#ifndef SQUEEZE_CORE_COMPRESS_GRAPH_VARIANT_BUILDER_H_
#define SQUEEZE_CORE_COMPRESS_GRAPH_VARIANT_BUILDER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/compress/model_format.h"
#include "core/compress/variant_builder.h"
#include "core/data/dataset.h"
#include "core/eval/energy.h"
#include "core/eval/latency.h"
#include "core/graph/graph.h"
#include "core/quant/ptq/ptq.h"

namespace squeeze::core::compress {

// A dataset file: .npz (a zip archive, detected by its "PK\3\4" magic) or
// safetensors, holding "inputs" and optionally "labels". Errors name `path`.
absl::StatusOr<data::Dataset> ReadDatasetFile(const std::string& path);

// INVALID_ARGUMENT naming `role` ("calibration dataset"), the dataset's and
// the model's shapes when the dataset's per-example shape differs from the
// non-batch dims of the graph's first input (symbolic dims match anything),
// when its inputs are not float32, or when `needs_labels` and it has none.
absl::Status CheckDatasetFitsGraph(const data::Dataset& dataset, const graph::Graph& graph,
                                   bool needs_labels, const std::string& role);

inline constexpr int kDefaultCalibrationBatches = 8;
inline constexpr int kDefaultCalibrationBatchSize = 32;
// Evaluation runs on at most this many examples (the first ones), so that a
// large evaluation set cannot make a job run for hours.
inline constexpr int64_t kMaxEvaluationExamples = 2000;

struct GraphVariantRequest {
  std::string model_path;        // an ONNX model
  std::string calibration_path;  // required; see ReadDatasetFile
  std::string evaluation_path;   // empty: the calibration dataset
  quant::ptq::PtqOptions ptq;    // `weights` must be set
  // A seeded subset of calibration_batches * calibration_batch_size examples
  // (all of them, shuffled, when the dataset is smaller).
  int calibration_batches = kDefaultCalibrationBatches;
  int calibration_batch_size = kDefaultCalibrationBatchSize;
  // true: top-1 accuracy against the evaluation labels (required); false:
  // fidelity of the variant's outputs to the float model's.
  bool top1_accuracy = false;
  uint64_t seed = 0;
  eval::EnergyModel energy_model = eval::DefaultCpuEnergyModel();
  // Where the QDQ ONNX artifact is written, once everything else succeeded.
  std::string artifact_path;
};

// Latency here is the float graph vs the simulated (fake-quant) graph, whose
// weights are dequantized floats, in our CPU runtime. Energy counts one
// example through the quantizable layers: their MACs at fp32 vs the weight
// format, plus their weight bytes. Sizes are the ONNX file and the QDQ ONNX
// artifact.
struct GraphVariantReport : CostReport {
  std::string technique;  // e.g. "gptq int4-pc-sym"
  std::vector<quant::ptq::LayerReport> layers;
  std::vector<quant::ptq::SkippedNode> skipped;
  // "top1_accuracy" (baseline: the float model's accuracy) or
  // "top1_agreement" (baseline 1: the float model agrees with itself).
  std::string metric;
  double baseline_metric = 0.0;
  double metric_value = 0.0;
  // The variant's first output against the float model's, always computed.
  double output_sqnr_db = 0.0;
  double mean_kl_divergence = 0.0;
  double top1_agreement = 0.0;
  int64_t evaluation_examples = 0;
};

// Loads, calibrates, quantizes (stage "quantize", one step per layer),
// evaluates the float and the simulated graph on the same inputs
// ("evaluate", 2 steps), measures ("measure", 2 steps), exports QDQ and
// writes it. INVALID_ARGUMENT naming the file for a bad model or dataset
// (CheckDatasetFitsGraph), PtqOptions errors naming the layer; CANCELLED
// when `progress` returns false (no artifact is written).
absl::StatusOr<GraphVariantReport> BuildGraphVariant(const GraphVariantRequest& request,
                                                     const ProgressFn& progress);

}  // namespace squeeze::core::compress

#endif  // SQUEEZE_CORE_COMPRESS_GRAPH_VARIANT_BUILDER_H_
