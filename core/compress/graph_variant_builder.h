// Builds compressed variants of an ONNX model end to end: what a worker job
// does for an ONNX model, callable and testable without any service around
// it. The safetensors linear-chain models go through variant_builder.h
// instead; DetectModelFormat tells the two apart.
//
// A GraphSession loads the model and its datasets once, draws the
// calibration batches, runs the original model over the evaluation set and
// measures its latency; then Build applies a recipe (recipe.h) and reports
// the variant on the three axes against that baseline:
//   - accuracy: top-1 accuracy (labels), perplexity (token windows), or
//     fidelity to the original (top-1 agreement, KL, SQNR);
//   - latency: p50/p95/p99 at several batch sizes in our CPU runtime on the
//     worker's hardware (measured), and the target device's roofline
//     (predicted; checked against the measurement when the target is the
//     worker's own hardware);
//   - energy: measured from RAPL when the worker can read it, else
//     estimated (docs/energy.md) for the local device and predicted by the
//     roofline for devices that are not here;
//   - size: the artifact file against the ONNX file and fp32 weights.
// A search (search.h) calls Build many times on one session.
#ifndef SQUEEZE_CORE_COMPRESS_GRAPH_VARIANT_BUILDER_H_
#define SQUEEZE_CORE_COMPRESS_GRAPH_VARIANT_BUILDER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/compress/model_format.h"
#include "core/compress/recipe.h"
#include "core/compress/variant_builder.h"
#include "core/data/dataset.h"
#include "core/eval/energy.h"
#include "core/eval/latency.h"
#include "core/eval/roofline.h"
#include "core/graph/graph.h"
#include "core/quant/ptq/ptq.h"

namespace squeeze::core::compress {

// A dataset file: .npz (a zip archive, detected by its "PK\3\4" magic) or
// safetensors, holding "inputs" and optionally "labels". Errors name `path`.
absl::StatusOr<data::Dataset> ReadDatasetFile(const std::string& path);

// INVALID_ARGUMENT naming `role` ("calibration dataset"), the dataset's and
// the model's shapes when the dataset's per-example shape differs from the
// non-batch dims of the graph's first input (symbolic dims match anything),
// when its dtype is not the input's (float32, or int64 token ids), or when
// `needs_labels` and it has none.
absl::Status CheckDatasetFitsGraph(const data::Dataset& dataset, const graph::Graph& graph,
                                   bool needs_labels, const std::string& role);

inline constexpr int kDefaultCalibrationBatches = 8;
inline constexpr int kDefaultCalibrationBatchSize = 32;
// Evaluation runs on at most this many examples (the first ones), so that a
// large evaluation set cannot make a job run for hours.
inline constexpr int64_t kMaxEvaluationExamples = 2000;

enum class EvalMetric {
  kFidelity,     // "top1_agreement" with the original (baseline 1)
  kTop1Accuracy, // needs integer "labels"
  kPerplexity,   // int64 token windows [N, T]; next-token perplexity, lower is better
};

struct SessionOptions {
  std::string model_path;        // an ONNX model
  std::string calibration_path;  // required; see ReadDatasetFile
  std::string evaluation_path;   // empty: the calibration dataset
  // A seeded subset of calibration_batches * calibration_batch_size examples
  // (all of them, shuffled, when the dataset is smaller).
  int calibration_batches = kDefaultCalibrationBatches;
  int calibration_batch_size = kDefaultCalibrationBatchSize;
  EvalMetric metric = EvalMetric::kFidelity;
  uint64_t seed = 0;
  // Latency is measured at each of these batch sizes (language models: at
  // the evaluation windows' length and half of it).
  std::vector<int> latency_batch_sizes = {1, 8, 32};
  // Try RAPL for measured energy on the local device.
  bool measure_energy = true;
};

// The device a variant is built for.
struct TargetDevice {
  std::string name = "local";
  // Profile figures for the roofline; an empty peak_ops_per_second map
  // means no prediction.
  eval::DeviceRoofline roofline;
  eval::EnergyModel energy_model = eval::DefaultCpuEnergyModel();
  // The worker runs on this device's hardware: latency and energy are
  // measured for it, and the roofline is checked against the measurement.
  bool present = true;
};

struct LatencyPoint {
  int batch_size = 1;
  int sequence_length = 0;  // 0: no sequence axis
  eval::LatencyStats baseline;
  eval::LatencyStats variant;
};

// CostReport's latency fields hold the batch-1 point measured here; its
// energy fields the local figures (measured or estimated).
struct GraphVariantReport : CostReport {
  std::string technique;  // e.g. "sparsegpt 2:4 + rtn int8-pc-sym + a8 minmax"
  // "onnx-qdq" (quantized), "onnx-codebook" (k-means: uint8 indices, float
  // codebooks, Gather), "onnx-fp16" / "onnx-bf16" (float casts: 16-bit
  // initializers, Cast), "onnx-fp8-lut" (fp8 casts: uint8 codes, a 256-entry
  // float table, Gather) or "onnx"
  std::string artifact_format;
  std::vector<quant::ptq::LayerReport> layers;
  std::vector<quant::ptq::SkippedNode> skipped;
  std::vector<std::string> notes;  // one line per recipe step
  // How our runtime executed the variant: which layers ran int8, weight-only
  // low-bit (int4/3/2, codebook) or N:M kernels and which stayed fp32
  // (simulated quantization), for reports.
  std::string runtime;
  // "top1_accuracy", "perplexity" or "top1_agreement" (baseline 1).
  std::string metric;
  bool higher_is_better = true;
  double baseline_metric = 0.0;
  double metric_value = 0.0;
  // The variant's first output against the float model's, always computed.
  double output_sqnr_db = 0.0;
  double mean_kl_divergence = 0.0;
  double top1_agreement = 0.0;
  int64_t evaluation_examples = 0;
  int64_t baseline_parameters = 0;
  int64_t parameters = 0;
  // Weight bytes in memory in the variant's formats (see SizeAxis).
  int64_t baseline_memory_bytes = 0;
  int64_t memory_bytes = 0;
  std::vector<LatencyPoint> points;
  bool energy_measured = false;  // RAPL on the worker; else estimated
  // Roofline of the target device for the variant and the original
  // (absent when the device has no figures).
  std::optional<eval::RooflinePrediction> predicted;
  std::optional<eval::RooflinePrediction> predicted_baseline;
  // Compute formats the variant's layers use on the target device.
  std::vector<std::string> device_formats;

  // Loss of the metric in its units: baseline - value for accuracy and
  // agreement, value / baseline - 1 for perplexity.
  double AccuracyDrop() const;
};

class GraphSession {
 public:
  // Loads and checks the model and datasets, draws the calibration batches,
  // evaluates the original model and measures its latency. Stages "load",
  // "calibrate", "baseline". INVALID_ARGUMENT naming the file for a bad
  // model or dataset (CheckDatasetFitsGraph).
  static absl::StatusOr<std::unique_ptr<GraphSession>> Open(const SessionOptions& options,
                                                            const ProgressFn& progress);

  // Applies `recipe` to the original model (stages named after the steps),
  // evaluates ("evaluate"), measures ("measure") and writes the artifact
  // (QDQ ONNX when quantized, codebook ONNX after k-means, 16-bit or fp8-LUT
  // ONNX after a float cast, else plain ONNX)
  // to `artifact_path`. Recipe
  // errors name the step and layer; CANCELLED when `progress` returns false
  // (no artifact is written).
  absl::StatusOr<GraphVariantReport> Build(const Recipe& recipe, const TargetDevice& device,
                                           const std::string& artifact_path, const ProgressFn& progress);

  const graph::Graph& graph() const { return graph_; }
  const quant::ptq::LayerScan& scan() const { return scan_; }
  const SessionOptions& options() const { return options_; }
  const std::vector<quant::ptq::CalibrationBatch>& calibration() const { return batches_; }

 private:
  GraphSession() = default;

  SessionOptions options_;
  graph::Graph graph_;
  quant::ptq::LayerScan scan_;
  std::string input_name_;
  int64_t model_bytes_ = 0;
  int64_t fp32_weight_bytes_ = 0;
  data::Dataset calibration_set_;
  data::Dataset evaluation_;
  std::vector<quant::ptq::CalibrationBatch> batches_;
  model::Tensor baseline_outputs_;
  double baseline_metric_ = 0.0;
  std::vector<LatencyPoint> baseline_points_;  // variant fields unset
  std::vector<eval::LayerCost> baseline_costs_;  // per example, for energy and the roofline
  std::string hardware_;
};

// One variant with one quantization step: Open + Build in one call, for
// callers that build a single variant.
struct GraphVariantRequest {
  SessionOptions session;
  quant::ptq::PtqOptions ptq;  // `weights` must be set
  TargetDevice device;
  std::string artifact_path;
};
absl::StatusOr<GraphVariantReport> BuildGraphVariant(const GraphVariantRequest& request,
                                                     const ProgressFn& progress);

}  // namespace squeeze::core::compress

#endif  // SQUEEZE_CORE_COMPRESS_GRAPH_VARIANT_BUILDER_H_
