#include "core/compress/graph_variant_builder.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/data/tensor_collections.h"
#include "core/eval/metrics.h"
#include "core/kernels/backends.h"
#include "core/model/file_io.h"
#include "core/onnx/onnx_model.h"
#include "core/quant/export/onnx_qdq.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"

namespace squeeze::core::compress {
namespace {

using graph::Graph;
using graph::Tensor;

constexpr int kLatencyWarmup = 3;
constexpr int kLatencyMinIterations = 10;
constexpr double kLatencyMinSeconds = 0.2;
constexpr int64_t kEvaluationChunk = 250;

absl::Status Invalid(const std::string& what) { return absl::InvalidArgumentError(what); }

absl::Status WithPrefix(const absl::Status& status, const std::string& prefix) {
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

// The first graph input that is not an initializer: the one a dataset feeds.
const graph::ValueInfo* DataInput(const Graph& graph) {
  for (const graph::ValueInfo& input : graph.inputs) {
    if (graph.initializers.count(input.name) == 0) return &input;
  }
  return nullptr;
}

std::string DescribeShape(const graph::ValueInfo& input) {
  if (!input.shape) return "[?]";
  std::vector<std::string> dims;
  for (const graph::Dim& dim : *input.shape) {
    dims.push_back(dim.value ? absl::StrCat(*dim.value) : (dim.symbol.empty() ? "?" : dim.symbol));
  }
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

absl::StatusOr<data::Dataset> Subset(const data::Dataset& dataset, std::vector<int64_t> indices) {
  return data::SelectExamples(dataset, indices);
}

absl::StatusOr<Tensor> InputsTensor(const data::Dataset& dataset) {
  return graph::FromModelTensor(dataset.inputs);
}

// Runs the first output of `executor` over every example of `inputs`, in
// chunks, and stacks the results.
absl::StatusOr<model::Tensor> RunAll(const runtime::Executor& executor, const std::string& input,
                                     const data::Dataset& inputs) {
  model::Tensor stacked;
  const int64_t n = inputs.NumExamples();
  for (int64_t begin = 0; begin < n; begin += kEvaluationChunk) {
    SQ_ASSIGN_OR_RETURN(data::Dataset chunk,
                        data::SliceExamples(inputs, begin, std::min(n, begin + kEvaluationChunk)));
    SQ_ASSIGN_OR_RETURN(Tensor feed, InputsTensor(chunk));
    SQ_ASSIGN_OR_RETURN(std::vector<Tensor> outputs, executor.Run({{input, std::move(feed)}}));
    if (outputs.empty()) return Invalid("model has no outputs");
    SQ_ASSIGN_OR_RETURN(model::Tensor out, graph::ToModelTensor(outputs[0]));
    if (begin == 0) {
      stacked = std::move(out);
    } else {
      if (out.shape.empty()) return Invalid("model output 0 is a scalar");
      stacked.shape[0] += out.shape[0];
      stacked.data += out.data;
    }
  }
  return stacked;
}

// Rows of X each example sends through every quantizable layer (1 for a
// plain Gemm, sequence length for a MatMul on [batch, seq, in], output
// positions for a Conv), from one example run through `graph`.
absl::StatusOr<std::vector<int64_t>> RowsPerExample(const Graph& graph,
                                                    const std::vector<quant::ptq::QuantizableLayer>& layers,
                                                    const std::string& input, const Tensor& one_example) {
  Graph probe = graph;
  probe.outputs.clear();
  for (const auto& layer : layers) probe.outputs.push_back({layer.input, graph::DataType::kFloat32, std::nullopt});
  SQ_ASSIGN_OR_RETURN(auto backend, kernels::CreateBackend("cpu"));
  SQ_ASSIGN_OR_RETURN(runtime::Executor executor, runtime::Executor::Create(std::move(probe), backend));
  SQ_ASSIGN_OR_RETURN(std::vector<Tensor> values, executor.Run({{input, one_example}}));
  std::vector<int64_t> rows(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    SQ_RETURN_IF_ERROR(quant::ptq::LayerInputRows(layers[i], values[i], &rows[i]).status());
  }
  return rows;
}

// Reports progress and turns a false answer into CANCELLED.
absl::Status Report(const ProgressFn& progress, const std::string& stage, int64_t step, int64_t total) {
  if (progress && !progress(stage, step, total)) {
    return absl::CancelledError(absl::StrCat("cancelled during ", stage, " (step ", step, " of ", total, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<data::Dataset> ReadDatasetFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  if (!in.read(magic, sizeof(magic))) {
    return Invalid(absl::StrCat("dataset file ", path, " is missing or shorter than 4 bytes"));
  }
  if (std::memcmp(magic, "PK\3\4", 4) == 0) return data::ReadNpzDataset(path);
  return data::ReadSafetensorsDataset(path);
}

absl::Status CheckDatasetFitsGraph(const data::Dataset& dataset, const Graph& graph, bool needs_labels,
                                   const std::string& role) {
  const graph::ValueInfo* input = DataInput(graph);
  if (input == nullptr) return Invalid("model has no input to feed a dataset into");
  const std::vector<int64_t>& shape = dataset.inputs.shape;
  const std::string mismatch =
      absl::StrCat(role, ": \"inputs\" has shape [", absl::StrJoin(shape, ", "), "] but the model input '",
                   input->name, "' is ", DescribeShape(*input));
  if (dataset.inputs.dtype != model::DType::kF32) {
    return Invalid(absl::StrCat(role, ": \"inputs\" must be F32, got ", model::DTypeName(dataset.inputs.dtype)));
  }
  if (dataset.NumExamples() <= 0) return Invalid(absl::StrCat(role, " has no examples"));
  if (input->shape) {
    if (input->shape->size() != shape.size()) return Invalid(mismatch);
    for (size_t d = 1; d < shape.size(); ++d) {
      const graph::Dim& dim = (*input->shape)[d];
      if (dim.value && *dim.value != shape[d]) return Invalid(mismatch);
    }
  }
  if (needs_labels) {
    if (!dataset.labels) {
      return Invalid(absl::StrCat(role, " has no \"labels\" tensor; TOP1_ACCURACY needs one integer label per example"));
    }
    absl::StatusOr<std::vector<int64_t>> labels = data::LabelsAsInt64(dataset);
    if (!labels.ok()) return WithPrefix(labels.status(), absl::StrCat(role, ": "));
    if (static_cast<int64_t>(labels->size()) != dataset.NumExamples()) {
      return Invalid(absl::StrCat(role, ": ", labels->size(), " labels for ", dataset.NumExamples(), " examples"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<GraphVariantReport> BuildGraphVariant(const GraphVariantRequest& request,
                                                     const ProgressFn& progress) {
  if (request.artifact_path.empty()) return Invalid("variant: artifact_path is empty");
  if (!request.ptq.weights) return Invalid("variant: no weight quantization requested");
  if (request.calibration_path.empty()) return Invalid("variant: ONNX models need a calibration dataset");
  if (request.calibration_batches < 1 || request.calibration_batch_size < 1) {
    return Invalid(absl::StrCat("variant: calibration batches and batch size must be >= 1, got ",
                                request.calibration_batches, " x ", request.calibration_batch_size));
  }
  GraphVariantReport report;

  SQ_RETURN_IF_ERROR(Report(progress, "load", 0, 1));
  SQ_ASSIGN_OR_RETURN(const uint64_t model_bytes, model::FileSize(request.model_path));
  report.baseline_bytes = static_cast<int64_t>(model_bytes);
  absl::StatusOr<Graph> loaded = onnx::LoadOnnxModel(request.model_path);
  if (!loaded.ok()) return WithPrefix(loaded.status(), absl::StrCat("model file ", request.model_path, ": "));
  const Graph graph = std::move(*loaded);
  const graph::ValueInfo* input = DataInput(graph);
  if (input == nullptr) return Invalid(absl::StrCat("model file ", request.model_path, " has no data input"));
  for (const auto& [name, tensor] : graph.initializers) {
    if (tensor.dtype() == graph::DataType::kFloat32) report.fp32_weight_bytes += tensor.byte_size();
  }
  SQ_ASSIGN_OR_RETURN(quant::ptq::LayerScan scan, quant::ptq::FindQuantizableLayers(graph));
  SQ_RETURN_IF_ERROR(request.ptq.Validate(scan.layers));

  absl::StatusOr<data::Dataset> calibration = ReadDatasetFile(request.calibration_path);
  if (!calibration.ok()) {
    return WithPrefix(calibration.status(), absl::StrCat("calibration dataset ", request.calibration_path, ": "));
  }
  data::Dataset evaluation = *calibration;
  if (!request.evaluation_path.empty()) {
    absl::StatusOr<data::Dataset> read = ReadDatasetFile(request.evaluation_path);
    if (!read.ok()) {
      return WithPrefix(read.status(), absl::StrCat("evaluation dataset ", request.evaluation_path, ": "));
    }
    evaluation = std::move(*read);
  }
  SQ_RETURN_IF_ERROR(CheckDatasetFitsGraph(*calibration, graph, false, "calibration dataset"));
  SQ_RETURN_IF_ERROR(CheckDatasetFitsGraph(evaluation, graph, request.top1_accuracy,
                                           request.evaluation_path.empty() ? "calibration dataset (used for evaluation)"
                                                                           : "evaluation dataset"));
  if (evaluation.NumExamples() > kMaxEvaluationExamples) {
    SQ_ASSIGN_OR_RETURN(evaluation, data::SliceExamples(evaluation, 0, kMaxEvaluationExamples));
  }
  SQ_RETURN_IF_ERROR(Report(progress, "load", 1, 1));

  SQ_RETURN_IF_ERROR(Report(progress, "calibrate", 0, 1));
  std::vector<int64_t> order = data::ShuffledIndices(calibration->NumExamples(), request.seed);
  const int64_t wanted = int64_t{request.calibration_batches} * request.calibration_batch_size;
  order.resize(std::min<int64_t>(order.size(), wanted));
  std::vector<quant::ptq::CalibrationBatch> batches;
  for (size_t begin = 0; begin < order.size(); begin += request.calibration_batch_size) {
    std::vector<int64_t> indices(order.begin() + begin,
                                 order.begin() + std::min(order.size(), begin + request.calibration_batch_size));
    SQ_ASSIGN_OR_RETURN(data::Dataset batch, Subset(*calibration, std::move(indices)));
    SQ_ASSIGN_OR_RETURN(Tensor feed, InputsTensor(batch));
    batches.push_back({{input->name, std::move(feed)}});
  }
  SQ_RETURN_IF_ERROR(Report(progress, "calibrate", 1, 1));

  const int layer_count = static_cast<int>(scan.layers.size());
  SQ_RETURN_IF_ERROR(Report(progress, "quantize", 0, layer_count));
  SQ_ASSIGN_OR_RETURN(quant::ptq::PtqResult ptq,
                      quant::ptq::QuantizeGraph(graph, batches, request.ptq, [&](int i, int n) {
                        return Report(progress, "quantize", i + 1, n).ok();
                      }));
  if (ptq.layers.empty()) return Invalid("model has no quantizable layer");
  report.technique = ptq.layers.front().technique;
  report.layers = ptq.layers;
  report.skipped = ptq.skipped;

  SQ_RETURN_IF_ERROR(Report(progress, "evaluate", 0, 2));
  SQ_ASSIGN_OR_RETURN(auto backend, kernels::CreateBackend("cpu"));
  SQ_ASSIGN_OR_RETURN(runtime::Executor baseline, runtime::Executor::Create(graph, backend));
  SQ_ASSIGN_OR_RETURN(runtime::Executor variant, runtime::Executor::Create(ptq.graph, backend));
  SQ_ASSIGN_OR_RETURN(model::Tensor reference_out, RunAll(baseline, input->name, evaluation));
  SQ_RETURN_IF_ERROR(Report(progress, "evaluate", 1, 2));
  SQ_ASSIGN_OR_RETURN(model::Tensor variant_out, RunAll(variant, input->name, evaluation));
  SQ_ASSIGN_OR_RETURN(eval::OutputAgreement agreement, eval::CompareToReference(reference_out, variant_out));
  report.evaluation_examples = evaluation.NumExamples();
  report.output_sqnr_db = agreement.sqnr_db;
  report.mean_kl_divergence = agreement.mean_kl_divergence;
  report.top1_agreement = agreement.top1_agreement;
  if (request.top1_accuracy) {
    SQ_ASSIGN_OR_RETURN(std::vector<int64_t> labels, data::LabelsAsInt64(evaluation));
    SQ_ASSIGN_OR_RETURN(eval::AccuracyReport base, eval::ComputeAccuracy(reference_out, labels));
    SQ_ASSIGN_OR_RETURN(eval::AccuracyReport quantized, eval::ComputeAccuracy(variant_out, labels));
    report.metric = "top1_accuracy";
    report.baseline_metric = base.top1;
    report.metric_value = quantized.top1;
  } else {
    report.metric = "top1_agreement";
    report.baseline_metric = 1.0;
    report.metric_value = agreement.top1_agreement;
  }
  SQ_RETURN_IF_ERROR(Report(progress, "evaluate", 2, 2));

  SQ_RETURN_IF_ERROR(Report(progress, "measure", 0, 2));
  SQ_ASSIGN_OR_RETURN(data::Dataset first, data::SliceExamples(evaluation, 0, 1));
  SQ_ASSIGN_OR_RETURN(const Tensor one_example, InputsTensor(first));
  const std::map<std::string, Tensor> feed = {{input->name, one_example}};
  absl::Status run_status;
  report.baseline_latency = eval::MeasureLatency([&] { run_status.Update(baseline.Run(feed).status()); },
                                                 kLatencyWarmup, kLatencyMinIterations, kLatencyMinSeconds);
  SQ_RETURN_IF_ERROR(Report(progress, "measure", 1, 2));
  report.latency = eval::MeasureLatency([&] { run_status.Update(variant.Run(feed).status()); }, kLatencyWarmup,
                                        kLatencyMinIterations, kLatencyMinSeconds);
  SQ_RETURN_IF_ERROR(run_status);

  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> rows, RowsPerExample(graph, scan.layers, input->name, one_example));
  std::map<std::string, std::string> weight_of;  // layer name -> weight initializer
  int64_t macs = 0, fp32_bytes = 0, packed_bytes = 0;
  for (size_t i = 0; i < scan.layers.size(); ++i) {
    const auto& layer = scan.layers[i];
    weight_of[layer.name] = layer.weight;
    macs += rows[i] * layer.out * layer.in;
    fp32_bytes += layer.out * layer.in * static_cast<int64_t>(sizeof(float));
  }
  std::map<std::string, quant::QuantizedLinear> packed;
  for (const quant::QuantizedLinear& linear : ptq.packed) {
    packed_bytes += linear.StorageBytes();
    packed[weight_of.at(linear.name)] = linear;
  }
  const int bits = request.ptq.weights->format.bits;
  // Weight-only: activations stay float, so the multiplies stay fp32 and
  // only the weight bytes shrink; W8A8 multiplies int8 by int8.
  const std::string variant_format = request.ptq.activations ? eval::FormatForBits(8) : eval::FormatForBits(32);
  const eval::EnergyEstimate baseline_energy =
      eval::EstimateJoules(macs, eval::FormatForBits(32), fp32_bytes, request.energy_model);
  const eval::EnergyEstimate variant_energy =
      eval::EstimateJoules(macs, variant_format, packed_bytes, request.energy_model);
  report.baseline_joules = baseline_energy.joules;
  report.joules = variant_energy.joules;
  report.energy_model_description =
      absl::StrCat(request.energy_model.Describe(), "; quantizable layers only, per example: baseline ",
                   baseline_energy.Describe(), "; variant (", bits, "-bit weights",
                   request.ptq.activations ? ", int8 activations" : ", float activations: fp32 MACs", ") ",
                   variant_energy.Describe());
  report.hardware = CpuModelName();
  SQ_RETURN_IF_ERROR(Report(progress, "measure", 2, 2));

  SQ_ASSIGN_OR_RETURN(Graph exported, quant_export::ExportQdqGraph(ptq.graph, packed));
  SQ_RETURN_IF_ERROR(onnx::SaveOnnxModel(exported, request.artifact_path));
  SQ_ASSIGN_OR_RETURN(const uint64_t artifact_bytes, model::FileSize(request.artifact_path));
  report.artifact_bytes = static_cast<int64_t>(artifact_bytes);
  return report;
}

}  // namespace squeeze::core::compress
