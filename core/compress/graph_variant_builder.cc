#include "core/compress/graph_variant_builder.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/data/tensor_collections.h"
#include "core/eval/energy_meter.h"
#include "core/eval/metrics.h"
#include "core/kernels/backends.h"
#include "core/model/file_io.h"
#include "core/onnx/onnx_model.h"
#include "core/prune/nm_sparse.h"
#include "core/quant/export/onnx_qdq.h"
#include "core/quant/gemm/codebook_layout.h"
#include "core/quant/gemm/qdq_runtime.h"
#include "core/quant/gemm/weight_only_runtime.h"
#include "core/quant/rtn.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"

namespace squeeze::core::compress {
namespace {

using graph::Graph;
using graph::Tensor;

constexpr int kLatencyWarmup = 3;
constexpr int kLatencyMinIterations = 10;
constexpr double kLatencyMinSeconds = 0.2;

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
                                     const data::Dataset& inputs, int64_t chunk) {
  model::Tensor stacked;
  const int64_t n = inputs.NumExamples();
  for (int64_t begin = 0; begin < n; begin += chunk) {
    SQ_ASSIGN_OR_RETURN(data::Dataset chunk,
                        data::SliceExamples(inputs, begin, std::min(n, begin + chunk)));
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

// Examples run through the model at once during evaluation: language models
// produce [T, vocab] logits per example, so they go a few at a time.
int64_t EvaluationChunk(EvalMetric metric) { return metric == EvalMetric::kPerplexity ? 8 : 250; }

// The first `batch` examples of `dataset` (repeated when it has fewer).
absl::StatusOr<Tensor> BatchOf(const data::Dataset& dataset, int64_t batch) {
  std::vector<int64_t> indices(batch);
  for (int64_t i = 0; i < batch; ++i) indices[i] = i % dataset.NumExamples();
  SQ_ASSIGN_OR_RETURN(data::Dataset selected, Subset(dataset, std::move(indices)));
  return InputsTensor(selected);
}

// A [N, T] token batch cut to its first `length` positions.
absl::StatusOr<Tensor> Truncate(const Tensor& tokens, int64_t length) {
  SQ_ASSIGN_OR_RETURN(model::Tensor model_tensor, graph::ToModelTensor(tokens));
  const int64_t n = model_tensor.shape[0], t = model_tensor.shape[1];
  model::Tensor cut;
  cut.dtype = model_tensor.dtype;
  cut.shape = {n, length};
  const size_t width = model_tensor.data.size() / static_cast<size_t>(n * t);
  for (int64_t row = 0; row < n; ++row) {
    cut.data.append(model_tensor.data, static_cast<size_t>(row * t) * width, static_cast<size_t>(length) * width);
  }
  return graph::FromModelTensor(cut);
}

absl::StatusOr<double> Metric(EvalMetric metric, const model::Tensor& outputs, const model::Tensor& reference,
                              const data::Dataset& evaluation) {
  switch (metric) {
    case EvalMetric::kTop1Accuracy: {
      SQ_ASSIGN_OR_RETURN(std::vector<int64_t> labels, data::LabelsAsInt64(evaluation));
      SQ_ASSIGN_OR_RETURN(eval::AccuracyReport accuracy, eval::ComputeAccuracy(outputs, labels));
      return accuracy.top1;
    }
    case EvalMetric::kPerplexity: {
      SQ_ASSIGN_OR_RETURN(std::vector<int64_t> labels, data::LabelsAsInt64(evaluation));
      SQ_ASSIGN_OR_RETURN(eval::PerplexityReport perplexity, eval::ComputePerplexity(outputs, labels));
      return perplexity.perplexity;
    }
    case EvalMetric::kFidelity: {
      SQ_ASSIGN_OR_RETURN(eval::OutputAgreement agreement, eval::CompareToReference(reference, outputs));
      return agreement.top1_agreement;
    }
  }
  return Invalid("unknown metric");
}

std::string MetricName(EvalMetric metric) {
  switch (metric) {
    case EvalMetric::kTop1Accuracy: return "top1_accuracy";
    case EvalMetric::kPerplexity: return "perplexity";
    case EvalMetric::kFidelity: return "top1_agreement";
  }
  return "";
}

// Latency of `executor` at every point of `points` (batch size and, for
// token models, sequence length), on the first examples of `evaluation`.
absl::Status MeasurePoints(const runtime::Executor& executor, const std::string& input,
                           const data::Dataset& evaluation, std::vector<LatencyPoint>* points, bool baseline,
                           const ProgressFn& progress, const std::string& stage) {
  for (size_t i = 0; i < points->size(); ++i) {
    LatencyPoint& point = (*points)[i];
    SQ_ASSIGN_OR_RETURN(Tensor feed, BatchOf(evaluation, point.batch_size));
    if (point.sequence_length > 0) {
      SQ_ASSIGN_OR_RETURN(feed, Truncate(feed, point.sequence_length));
    }
    const std::map<std::string, Tensor> feeds = {{input, std::move(feed)}};
    absl::Status run_status;
    eval::LatencyStats stats = eval::MeasureLatency([&] { run_status.Update(executor.Run(feeds).status()); },
                                                    kLatencyWarmup, kLatencyMinIterations, kLatencyMinSeconds);
    SQ_RETURN_IF_ERROR(run_status);
    (baseline ? point.baseline : point.variant) = stats;
    SQ_RETURN_IF_ERROR(Report(progress, stage, static_cast<int64_t>(i + 1), static_cast<int64_t>(points->size())));
  }
  return absl::OkStatus();
}

// Per-example cost of each matrix layer of `graph`, with the formats the
// recipe left (fp32 for layers it did not quantize).
absl::StatusOr<std::vector<eval::LayerCost>> LayerCosts(const Graph& graph, const std::string& input,
                                                        const Tensor& one_example,
                                                        const std::map<std::string, WeightFormat>& formats) {
  SQ_ASSIGN_OR_RETURN(quant::ptq::LayerScan scan, quant::ptq::FindQuantizableLayers(graph));
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> rows, RowsPerExample(graph, scan.layers, input, one_example));
  std::vector<eval::LayerCost> costs;
  for (size_t i = 0; i < scan.layers.size(); ++i) {
    const auto& layer = scan.layers[i];
    eval::LayerCost cost;
    cost.name = layer.name;
    cost.macs = rows[i] * layer.out * layer.in;
    cost.weight_bytes = layer.out * layer.in * static_cast<int64_t>(sizeof(float));
    auto format = formats.find(layer.weight);
    if (format != formats.end()) {
      cost.weight_bits = format->second.weight_bits;
      cost.activation_bits = format->second.activation_bits;
      cost.sparse_2_4 = format->second.sparse_2_4;
      if (format->second.stored_bytes > 0) cost.weight_bytes = format->second.stored_bytes;
    }
    const int64_t activation_bytes = cost.activation_bits == 8 ? 1 : 4;
    cost.activation_bytes = rows[i] * (layer.in + layer.out) * activation_bytes;
    costs.push_back(cost);
  }
  return costs;
}

// The energy model's estimate for one example through `costs`.
eval::EnergyEstimate EstimateLayers(const std::vector<eval::LayerCost>& costs, const eval::EnergyModel& model) {
  eval::EnergyEstimate total;
  std::set<std::string> formats;
  for (const eval::LayerCost& cost : costs) {
    const std::string format = cost.activation_bits == 8 ? "int8" : "fp32";
    const double density = cost.sparse_2_4 ? 0.5 : 1.0;
    const int64_t macs = static_cast<int64_t>(static_cast<double>(cost.macs) * density);
    eval::EnergyEstimate layer = eval::EstimateJoules(macs, format, cost.weight_bytes + cost.activation_bytes, model);
    total.joules += layer.joules;
    total.macs += macs;
    total.bytes_moved += layer.bytes_moved;
    formats.insert(layer.format);
  }
  total.format = absl::StrJoin(formats, "+");
  return total;
}

// Initializer bytes with each matrix layer's weight counted as stored
// (LayerCost.weight_bytes) instead of as fp32.
int64_t MemoryBytes(const Graph& graph, const std::vector<eval::LayerCost>& costs) {
  int64_t bytes = 0;
  for (const auto& [name, tensor] : graph.initializers) bytes += tensor.byte_size();
  absl::StatusOr<quant::ptq::LayerScan> scan = quant::ptq::FindQuantizableLayers(graph);
  if (!scan.ok()) return bytes;
  for (size_t i = 0; i < scan->layers.size() && i < costs.size(); ++i) {
    const auto& layer = scan->layers[i];
    bytes += costs[i].weight_bytes - layer.out * layer.in * static_cast<int64_t>(sizeof(float));
  }
  return bytes;
}

// `graph` with each codebook weight stored as one uint8 index per weight
// plus its float codebook(s), looked up by Gather:
//   W = Gather(codebook, Cast<int64>(indices) [+ row * 2^bits when per row])
// then Reshape'd (Conv) or Transpose'd ([in, out] weights) to the
// initializer's layout. Opset 17 has no 4-bit type, so an index takes a
// byte; the values are exactly the codebook entries the evaluated graph
// holds.
absl::StatusOr<Graph> ExportCodebookGraph(const Graph& graph,
                                          const std::map<std::string, quant::gemm::CodebookLinear>& codebooks) {
  SQ_ASSIGN_OR_RETURN(auto views, quant_export::FindQuantizableWeights(graph));
  Graph out = graph;
  for (const auto& [name, linear] : codebooks) {
    auto view = views.find(name);
    if (view == views.end()) return absl::InternalError(absl::StrCat("codebook export: no weight ", name));
    const int64_t entries = quant::CodebookEntries(linear.bits);
    const int64_t row_bytes = quant::CodebookRowBytes(linear.bits, linear.in);
    std::vector<uint8_t> indices(linear.out * linear.in);
    for (int64_t r = 0; r < linear.out; ++r) {
      const auto* row = reinterpret_cast<const uint8_t*>(linear.packed.data()) + r * row_bytes;
      for (int64_t c = 0; c < linear.in; ++c) {
        indices[r * linear.in + c] = static_cast<uint8_t>(quant::ReadCodebookIndex(row, c, linear.bits));
      }
    }
    out.initializers.erase(name);
    out.initializers[name + ".indices"] =
        Tensor::FromVector<uint8_t>(graph::DataType::kUInt8, {linear.out, linear.in}, indices);
    out.initializers[name + ".codebook"] = Tensor::FromVector<float>(
        graph::DataType::kFloat32, {static_cast<int64_t>(linear.codebook.size())}, linear.codebook);
    std::string index = name + ".index";
    out.nodes.push_back({name + ".cast", "Cast", "", {name + ".indices"}, {index}, {{"to", int64_t{7}}}});
    if (linear.per_row_codebook) {
      std::vector<int64_t> offsets(linear.out);
      for (int64_t r = 0; r < linear.out; ++r) offsets[r] = r * entries;
      out.initializers[name + ".row_offsets"] =
          Tensor::FromVector<int64_t>(graph::DataType::kInt64, {linear.out, 1}, offsets);
      out.nodes.push_back({name + ".offset", "Add", "", {index, name + ".row_offsets"}, {name + ".row_index"}, {}});
      index = name + ".row_index";
    }
    const bool out_in = !view->second.transposed && view->second.shape == std::vector<int64_t>{linear.out, linear.in};
    const std::string gathered = out_in ? name : name + ".out_in";
    out.nodes.push_back({name + ".lookup", "Gather", "", {name + ".codebook", index}, {gathered}, {{"axis", int64_t{0}}}});
    if (view->second.transposed) {
      out.nodes.push_back({name + ".transpose", "Transpose", "", {gathered}, {name}, {{"perm", std::vector<int64_t>{1, 0}}}});
    } else if (!out_in) {
      out.initializers[name + ".shape"] = Tensor::FromVector<int64_t>(
          graph::DataType::kInt64, {static_cast<int64_t>(view->second.shape.size())}, view->second.shape);
      out.nodes.push_back({name + ".reshape", "Reshape", "", {gathered, name + ".shape"}, {name}, {}});
    }
  }
  SQ_RETURN_IF_ERROR(graph::SortTopologically(&out));
  return out;
}

// `graph` with each float-cast weight stored in its format:
//   fp16 / bf16: a float16 / bfloat16 initializer, then Cast(to float);
//   fp8: one uint8 code per weight and the format's 256 decoded values
//        (one table per format), W = Gather(table, Cast<int64>(codes)),
//        since opset 17 has no float8 type.
// Element-wise, so every weight keeps its layout; the decoded values are
// exactly the weights the evaluated graph holds.
absl::StatusOr<Graph> ExportCastGraph(const Graph& graph, const std::map<std::string, quant::FloatFormat>& casts) {
  Graph out = graph;
  for (const auto& [name, format] : casts) {
    auto weight = graph.initializers.find(name);
    if (weight == graph.initializers.end()) return absl::InternalError(absl::StrCat("cast export: no weight ", name));
    const std::vector<float> values = weight->second.ToFloats();
    out.initializers.erase(name);
    if (quant::FloatFormatBits(format) == 16) {
      std::vector<uint16_t> codes(values.size());
      for (size_t k = 0; k < values.size(); ++k) codes[k] = quant::EncodeFloat(values[k], format);
      const graph::DataType dtype =
          format == quant::FloatFormat::kFloat16 ? graph::DataType::kFloat16 : graph::DataType::kBFloat16;
      out.initializers[name + ".stored"] = Tensor::FromVector<uint16_t>(dtype, weight->second.shape(), codes);
      out.nodes.push_back({name + ".cast", "Cast", "", {name + ".stored"}, {name}, {{"to", int64_t{1}}}});
      continue;
    }
    std::vector<uint8_t> codes(values.size());
    for (size_t k = 0; k < values.size(); ++k) codes[k] = static_cast<uint8_t>(quant::EncodeFloat(values[k], format));
    const std::string table = absl::StrCat("squeeze.", quant::FloatFormatName(format), ".table");
    if (!out.initializers.contains(table)) {
      std::vector<float> decoded(256);
      for (int code = 0; code < 256; ++code) decoded[code] = quant::DecodeFloat(static_cast<uint16_t>(code), format);
      out.initializers[table] = Tensor::FromVector<float>(graph::DataType::kFloat32, {256}, decoded);
    }
    out.initializers[name + ".codes"] = Tensor::FromVector<uint8_t>(graph::DataType::kUInt8, weight->second.shape(), codes);
    out.nodes.push_back({name + ".cast", "Cast", "", {name + ".codes"}, {name + ".index"}, {{"to", int64_t{7}}}});
    out.nodes.push_back({name + ".lookup", "Gather", "", {table, name + ".index"}, {name}, {{"axis", int64_t{0}}}});
  }
  SQ_RETURN_IF_ERROR(graph::SortTopologically(&out));
  return out;
}

// "onnx-fp16", "onnx-bf16" or "onnx-fp8-lut": the artifact format of cast
// weights (one format per recipe).
std::string CastArtifactFormat(quant::FloatFormat format) {
  switch (format) {
    case quant::FloatFormat::kFloat16: return "onnx-fp16";
    case quant::FloatFormat::kBFloat16: return "onnx-bf16";
    default: return "onnx-fp8-lut";
  }
}

}  // namespace

double GraphVariantReport::AccuracyDrop() const {
  if (!higher_is_better) return baseline_metric > 0 ? metric_value / baseline_metric - 1.0 : 0.0;
  return baseline_metric - metric_value;
}

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
  const bool tokens = input->dtype == graph::DataType::kInt64;
  const model::DType wanted = tokens ? model::DType::kI64 : model::DType::kF32;
  if (dataset.inputs.dtype != wanted) {
    return Invalid(absl::StrCat(role, ": \"inputs\" must be ", model::DTypeName(wanted), " for model input '",
                                input->name, "', got ", model::DTypeName(dataset.inputs.dtype)));
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
      return Invalid(absl::StrCat(role, " has no \"labels\" tensor; the metric needs one integer label per ",
                                  tokens ? "token (the next token)" : "example"));
    }
    absl::StatusOr<std::vector<int64_t>> labels = data::LabelsAsInt64(dataset);
    if (!labels.ok()) return WithPrefix(labels.status(), absl::StrCat(role, ": "));
    const int64_t per_example = tokens && shape.size() >= 2 ? shape[1] : 1;
    if (static_cast<int64_t>(labels->size()) != dataset.NumExamples() * per_example) {
      return Invalid(absl::StrCat(role, ": ", labels->size(), " labels for ", dataset.NumExamples(), " examples",
                                  tokens ? absl::StrCat(" of ", per_example, " tokens") : ""));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<GraphSession>> GraphSession::Open(const SessionOptions& options,
                                                                 const ProgressFn& progress) {
  if (options.calibration_path.empty()) return Invalid("variant: ONNX models need a calibration dataset");
  if (options.calibration_batches < 1 || options.calibration_batch_size < 1) {
    return Invalid(absl::StrCat("variant: calibration batches and batch size must be >= 1, got ",
                                options.calibration_batches, " x ", options.calibration_batch_size));
  }
  std::unique_ptr<GraphSession> session(new GraphSession());
  session->options_ = options;
  session->hardware_ = CpuModelName();

  SQ_RETURN_IF_ERROR(Report(progress, "load", 0, 1));
  SQ_ASSIGN_OR_RETURN(const uint64_t model_bytes, model::FileSize(options.model_path));
  session->model_bytes_ = static_cast<int64_t>(model_bytes);
  absl::StatusOr<Graph> loaded = onnx::LoadOnnxModel(options.model_path);
  if (!loaded.ok()) return WithPrefix(loaded.status(), absl::StrCat("model file ", options.model_path, ": "));
  session->graph_ = std::move(*loaded);
  const Graph& graph = session->graph_;
  const graph::ValueInfo* input = DataInput(graph);
  if (input == nullptr) return Invalid(absl::StrCat("model file ", options.model_path, " has no data input"));
  session->input_name_ = input->name;
  for (const auto& [name, tensor] : graph.initializers) {
    if (tensor.dtype() == graph::DataType::kFloat32) session->fp32_weight_bytes_ += tensor.byte_size();
  }
  SQ_ASSIGN_OR_RETURN(session->scan_, quant::ptq::FindQuantizableLayers(graph));

  absl::StatusOr<data::Dataset> calibration = ReadDatasetFile(options.calibration_path);
  if (!calibration.ok()) {
    return WithPrefix(calibration.status(), absl::StrCat("calibration dataset ", options.calibration_path, ": "));
  }
  data::Dataset evaluation = *calibration;
  if (!options.evaluation_path.empty()) {
    absl::StatusOr<data::Dataset> read = ReadDatasetFile(options.evaluation_path);
    if (!read.ok()) {
      return WithPrefix(read.status(), absl::StrCat("evaluation dataset ", options.evaluation_path, ": "));
    }
    evaluation = std::move(*read);
  }
  SQ_RETURN_IF_ERROR(CheckDatasetFitsGraph(*calibration, graph, false, "calibration dataset"));
  SQ_RETURN_IF_ERROR(CheckDatasetFitsGraph(evaluation, graph, options.metric != EvalMetric::kFidelity,
                                           options.evaluation_path.empty()
                                               ? "calibration dataset (used for evaluation)"
                                               : "evaluation dataset"));
  if (evaluation.NumExamples() > kMaxEvaluationExamples) {
    SQ_ASSIGN_OR_RETURN(evaluation, data::SliceExamples(evaluation, 0, kMaxEvaluationExamples));
  }
  session->evaluation_ = std::move(evaluation);
  SQ_RETURN_IF_ERROR(Report(progress, "load", 1, 1));

  SQ_RETURN_IF_ERROR(Report(progress, "calibrate", 0, 1));
  std::vector<int64_t> order = data::ShuffledIndices(calibration->NumExamples(), options.seed);
  const int64_t wanted = int64_t{options.calibration_batches} * options.calibration_batch_size;
  order.resize(std::min<int64_t>(order.size(), wanted));
  SQ_ASSIGN_OR_RETURN(session->calibration_set_, Subset(*calibration, order));
  for (size_t begin = 0; begin < order.size(); begin += options.calibration_batch_size) {
    std::vector<int64_t> indices(order.begin() + begin,
                                 order.begin() + std::min(order.size(), begin + options.calibration_batch_size));
    SQ_ASSIGN_OR_RETURN(data::Dataset batch, Subset(*calibration, std::move(indices)));
    SQ_ASSIGN_OR_RETURN(Tensor feed, InputsTensor(batch));
    session->batches_.push_back({{input->name, std::move(feed)}});
  }
  SQ_RETURN_IF_ERROR(Report(progress, "calibrate", 1, 1));

  // The original model, once: its outputs, metric and latency.
  const bool tokens = input->dtype == graph::DataType::kInt64;
  const int64_t window = tokens && session->evaluation_.inputs.shape.size() >= 2
                             ? session->evaluation_.inputs.shape[1] : 0;
  for (int batch : options.latency_batch_sizes) {
    if (tokens && window >= 2) {
      session->baseline_points_.push_back({batch, static_cast<int>(window / 2), {}, {}});
    }
    session->baseline_points_.push_back({batch, static_cast<int>(window), {}, {}});
  }
  if (session->baseline_points_.empty()) return Invalid("variant: no latency batch size given");
  SQ_ASSIGN_OR_RETURN(auto backend, kernels::CreateBackend("cpu"));
  SQ_ASSIGN_OR_RETURN(runtime::Executor baseline, runtime::Executor::Create(graph, backend));
  SQ_RETURN_IF_ERROR(Report(progress, "baseline", 0, 1 + session->baseline_points_.size()));
  SQ_ASSIGN_OR_RETURN(session->baseline_outputs_, RunAll(baseline, input->name, session->evaluation_,
                                                         EvaluationChunk(options.metric)));
  SQ_ASSIGN_OR_RETURN(session->baseline_metric_, Metric(options.metric, session->baseline_outputs_,
                                                        session->baseline_outputs_, session->evaluation_));
  SQ_RETURN_IF_ERROR(MeasurePoints(baseline, input->name, session->evaluation_, &session->baseline_points_,
                                   /*baseline=*/true, progress, "baseline"));
  SQ_ASSIGN_OR_RETURN(Tensor one_example, BatchOf(session->evaluation_, 1));
  SQ_ASSIGN_OR_RETURN(session->baseline_costs_, LayerCosts(graph, input->name, one_example, {}));
  return session;
}

absl::StatusOr<GraphVariantReport> GraphSession::Build(const Recipe& recipe, const TargetDevice& device,
                                                       const std::string& artifact_path,
                                                       const ProgressFn& progress) {
  if (artifact_path.empty()) return Invalid("variant: artifact_path is empty");
  GraphVariantReport report;
  report.baseline_bytes = model_bytes_;
  report.fp32_weight_bytes = fp32_weight_bytes_;
  report.hardware = hardware_;
  report.metric = MetricName(options_.metric);
  report.higher_is_better = options_.metric != EvalMetric::kPerplexity;
  report.baseline_metric = baseline_metric_;
  report.baseline_parameters = graph::CountFloatParameters(graph_);

  RecipeInputs inputs;
  inputs.batches = &batches_;
  inputs.examples = &calibration_set_;
  inputs.input_name = input_name_;
  inputs.seed = options_.seed;
  SQ_ASSIGN_OR_RETURN(RecipeResult result, ApplyRecipe(graph_, recipe, inputs, progress));
  report.technique = result.techniques.empty() ? "none" : absl::StrJoin(result.techniques, " + ");
  report.layers = result.layers;
  report.skipped = result.skipped;
  report.notes = result.notes;
  report.parameters = graph::CountFloatParameters(result.graph);

  SQ_RETURN_IF_ERROR(Report(progress, "evaluate", 0, 1));
  SQ_ASSIGN_OR_RETURN(auto backend, kernels::CreateBackend("cpu"));
  // N:M-sparse layers run the sparse kernel from their compressed form.
  std::shared_ptr<const runtime::KernelBackend> variant_backend = backend;
  if (result.runtime_graph) variant_backend = prune::CreateNmSparseBackend(backend);
  graph::Graph runtime_graph = result.runtime_graph ? *result.runtime_graph : result.graph;
  report.runtime = "squeeze-cpu graph executor";
  if (result.runtime_graph) absl::StrAppend(&report.runtime, "; N:M layers on the sparse fp32 kernel");
  if (!result.casts.empty()) absl::StrAppend(&report.runtime, "; float-cast layers multiply their decoded fp32 weights");
  // W8A8 layers run the int8 GEMM from their packed weights. A layer that is
  // N:M-sparse as well was rewritten above and keeps the sparse kernel.
  // Weight-only int4/int3/int2 and codebook layers run Int4Gemm / LutGemm
  // from their packed weights (their float weights leave the runtime graph).
  if (!result.packed.empty() || !result.codebooks.empty()) {
    quant::gemm::Int8Rewrite int8;
    if (!result.packed.empty()) {
      SQ_ASSIGN_OR_RETURN(int8, quant::gemm::UseInt8Kernels(&runtime_graph, result.packed));
    }
    SQ_ASSIGN_OR_RETURN(quant::gemm::WeightOnlyRewrite low_bit,
                        quant::gemm::UseWeightOnlyKernels(&runtime_graph, result.packed, result.codebooks));
    // A layer the weight-only pass took or listed is reported there only.
    std::set<std::string> weight_only(low_bit.low_bit_layers.begin(), low_bit.low_bit_layers.end());
    weight_only.insert(low_bit.lut_layers.begin(), low_bit.lut_layers.end());
    for (const quant::ptq::SkippedNode& layer : low_bit.skipped) weight_only.insert(layer.name);
    std::erase_if(int8.skipped, [&](const quant::ptq::SkippedNode& layer) { return weight_only.count(layer.name) > 0; });
    if (!int8.int8_layers.empty() || !int8.skipped.empty()) {
      absl::StrAppend(&report.runtime, "; ", quant::gemm::DescribeInt8Rewrite(int8),
                      int8.skipped.empty() ? "" : " (their quantized weights run dequantized to fp32, simulated)");
    }
    if (!weight_only.empty()) absl::StrAppend(&report.runtime, "; ", quant::gemm::DescribeWeightOnlyRewrite(low_bit));
    if (!int8.int8_layers.empty() || !low_bit.low_bit_layers.empty() || !low_bit.lut_layers.empty()) {
      variant_backend = quant::gemm::CreateInt8QdqBackend(variant_backend);
    }
  }
  SQ_ASSIGN_OR_RETURN(runtime::Executor variant, runtime::Executor::Create(std::move(runtime_graph), variant_backend));
  SQ_ASSIGN_OR_RETURN(model::Tensor outputs,
                      RunAll(variant, input_name_, evaluation_, EvaluationChunk(options_.metric)));
  SQ_ASSIGN_OR_RETURN(eval::OutputAgreement agreement, eval::CompareToReference(baseline_outputs_, outputs));
  report.evaluation_examples = evaluation_.NumExamples();
  report.output_sqnr_db = agreement.sqnr_db;
  report.mean_kl_divergence = agreement.mean_kl_divergence;
  report.top1_agreement = agreement.top1_agreement;
  SQ_ASSIGN_OR_RETURN(report.metric_value, Metric(options_.metric, outputs, baseline_outputs_, evaluation_));
  SQ_RETURN_IF_ERROR(Report(progress, "evaluate", 1, 1));

  report.points = baseline_points_;
  SQ_RETURN_IF_ERROR(Report(progress, "measure", 0, static_cast<int64_t>(report.points.size())));
  SQ_RETURN_IF_ERROR(MeasurePoints(variant, input_name_, evaluation_, &report.points, /*baseline=*/false,
                                   progress, "measure"));
  const LatencyPoint& first = report.points.back().batch_size == 1 ? report.points.back() : report.points.front();
  for (const LatencyPoint& point : report.points) {
    if (point.batch_size == 1) {  // The full-length batch-1 point comes last among the batch-1 ones.
      report.baseline_latency = point.baseline;
      report.latency = point.variant;
    }
  }
  if (report.latency.iterations == 0) {
    report.baseline_latency = first.baseline;
    report.latency = first.variant;
    report.batch_size = first.batch_size;
  }

  // Energy and the roofline, per example.
  SQ_ASSIGN_OR_RETURN(Tensor one_example, BatchOf(evaluation_, 1));
  const std::vector<eval::LayerCost>& baseline_costs = baseline_costs_;
  SQ_ASSIGN_OR_RETURN(std::vector<eval::LayerCost> variant_costs,
                      LayerCosts(result.graph, input_name_, one_example, result.formats));
  report.baseline_memory_bytes = MemoryBytes(graph_, baseline_costs);
  report.memory_bytes = MemoryBytes(result.graph, variant_costs);
  if (!device.roofline.peak_ops_per_second.empty()) {
    report.predicted = eval::PredictRoofline(variant_costs, device.roofline, 1);
    report.predicted_baseline = eval::PredictRoofline(baseline_costs, device.roofline, 1);
    report.device_formats = report.predicted->formats;
  }
  const eval::EnergyEstimate baseline_energy = EstimateLayers(baseline_costs, device.energy_model);
  const eval::EnergyEstimate variant_energy = EstimateLayers(variant_costs, device.energy_model);
  report.baseline_joules = baseline_energy.joules;
  report.joules = variant_energy.joules;
  report.energy_model_description =
      absl::StrCat(device.energy_model.Describe(), "; matrix layers only, per example: baseline ",
                   baseline_energy.Describe(), "; variant ", variant_energy.Describe(),
                   " (2:4-sparse layers count half their MACs; weight-only formats multiply in fp32)");
  if (device.present && options_.measure_energy) {
    absl::StatusOr<std::unique_ptr<eval::EnergyCounter>> counter = eval::OpenRaplCounter();
    if (counter.ok()) {
      SQ_ASSIGN_OR_RETURN(runtime::Executor baseline, runtime::Executor::Create(graph_, backend));
      const std::map<std::string, Tensor> feed = {{input_name_, one_example}};
      absl::Status run_status;
      SQ_ASSIGN_OR_RETURN(eval::EnergyMeasurement base_measured,
                          eval::MeasureJoulesPerCall(**counter, [&] { run_status.Update(baseline.Run(feed).status()); },
                                                     0.5, 10));
      SQ_ASSIGN_OR_RETURN(eval::EnergyMeasurement measured,
                          eval::MeasureJoulesPerCall(**counter, [&] { run_status.Update(variant.Run(feed).status()); },
                                                     0.5, 10));
      SQ_RETURN_IF_ERROR(run_status);
      report.energy_measured = true;
      report.baseline_joules = base_measured.joules_per_call;
      report.joules = measured.joules_per_call;
      report.energy_model_description = absl::StrCat("measured: baseline ", base_measured.description,
                                                     "; variant ", measured.description);
    }
  }
  SQ_RETURN_IF_ERROR(Report(progress, "measure", static_cast<int64_t>(report.points.size()),
                            static_cast<int64_t>(report.points.size())));

  if (!result.casts.empty()) {
    report.artifact_format = CastArtifactFormat(result.casts.begin()->second);
    SQ_ASSIGN_OR_RETURN(Graph exported, ExportCastGraph(result.graph, result.casts));
    SQ_RETURN_IF_ERROR(onnx::SaveOnnxModel(exported, artifact_path));
  } else if (!result.codebooks.empty()) {
    report.artifact_format = "onnx-codebook";
    SQ_ASSIGN_OR_RETURN(Graph exported, ExportCodebookGraph(result.graph, result.codebooks));
    SQ_RETURN_IF_ERROR(onnx::SaveOnnxModel(exported, artifact_path));
  } else if (result.packed.empty()) {
    report.artifact_format = "onnx";
    SQ_RETURN_IF_ERROR(onnx::SaveOnnxModel(result.graph, artifact_path));
  } else {
    report.artifact_format = "onnx-qdq";
    SQ_ASSIGN_OR_RETURN(Graph exported, quant_export::ExportQdqGraph(result.graph, result.packed));
    SQ_RETURN_IF_ERROR(onnx::SaveOnnxModel(exported, artifact_path));
  }
  SQ_ASSIGN_OR_RETURN(const uint64_t artifact_bytes, model::FileSize(artifact_path));
  report.artifact_bytes = static_cast<int64_t>(artifact_bytes);
  return report;
}

absl::StatusOr<GraphVariantReport> BuildGraphVariant(const GraphVariantRequest& request,
                                                     const ProgressFn& progress) {
  if (!request.ptq.weights) return Invalid("variant: no weight quantization requested");
  if (request.artifact_path.empty()) return Invalid("variant: artifact_path is empty");
  SQ_ASSIGN_OR_RETURN(std::unique_ptr<GraphSession> session, GraphSession::Open(request.session, progress));
  SQ_RETURN_IF_ERROR(request.ptq.Validate(session->scan().layers));
  Recipe recipe;
  QuantizeStep step;
  step.ptq = request.ptq;
  recipe.steps.push_back(step);
  return session->Build(recipe, request.device, request.artifact_path, progress);
}

}  // namespace squeeze::core::compress
