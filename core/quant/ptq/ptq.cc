#include "core/quant/ptq/ptq.h"

#include <cmath>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/quant/ptq/input_scaling.h"
#include "core/status_macros.h"

namespace squeeze::core::quant::ptq {
namespace {

using graph::DataType;
using graph::Graph;
using graph::Node;
using graph::Tensor;

// The node of `layer` (its input and weight input are unique to it).
Node* FindNode(Graph* graph, const QuantizableLayer& layer) {
  for (Node& node : graph->nodes) {
    if (node.op_type == layer.op_type && node.inputs.size() >= 2 && node.inputs[0] == layer.input &&
        node.inputs[1] == layer.weight_input) {
      return &node;
    }
  }
  return nullptr;
}

// Layer indices grouped by the value they read, in first-seen order.
std::vector<std::vector<size_t>> GroupByInput(const std::vector<QuantizableLayer>& layers) {
  std::vector<std::vector<size_t>> groups;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < layers.size(); ++i) {
    auto [it, inserted] = index.emplace(layers[i].input, groups.size());
    if (inserted) groups.emplace_back();
    groups[it->second].push_back(i);
  }
  return groups;
}

// Multiplies a group's shared input by 1/s (a new Mul node feeding every
// layer of the group) and its weights' columns by s.
absl::Status ApplyInputScales(Graph* graph, const std::vector<QuantizableLayer>& layers,
                              const std::vector<size_t>& group, const std::vector<float>& scales) {
  const QuantizableLayer& first = layers[group[0]];
  const std::string inverse = graph::UniqueValueName(*graph, absl::StrCat(first.input, ".ptq_inverse_scale"));
  const std::string scaled = graph::UniqueValueName(*graph, absl::StrCat(first.input, ".ptq_scaled"));
  std::vector<int64_t> shape = {static_cast<int64_t>(scales.size())};
  if (first.op_type == "Conv") shape = {static_cast<int64_t>(scales.size()), 1, 1};
  Tensor inv(DataType::kFloat32, shape);
  for (size_t c = 0; c < scales.size(); ++c) inv.data<float>()[c] = 1.0f / scales[c];
  graph->initializers[inverse] = std::move(inv);
  for (size_t i : group) {
    const QuantizableLayer& layer = layers[i];
    Node* node = FindNode(graph, layer);
    if (node == nullptr) return absl::InternalError(absl::StrCat("ptq: lost the node of layer ", layer.name));
    node->inputs[0] = scaled;
    SetWeightMatrix(graph, layer,
                    ScaleColumns(WeightMatrix(*graph, layer), layer.out, layer.in, layer.kernel_size, scales));
  }
  Node mul;
  mul.name = graph::UniqueValueName(*graph, absl::StrCat(first.name, ".ptq_input_scale"));
  mul.op_type = "Mul";
  mul.inputs = {first.input, inverse};
  mul.outputs = {scaled};
  graph->nodes.push_back(std::move(mul));
  return graph::SortTopologically(graph);
}

std::vector<ScaledLayerView> Views(const std::vector<QuantizableLayer>& layers, const std::vector<size_t>& group,
                                   const std::vector<std::vector<float>>& weights,
                                   const std::vector<LayerStatistics>& stats) {
  std::vector<ScaledLayerView> views;
  for (size_t i : group) {
    views.push_back({layers[i].name, layers[i].out, layers[i].in, layers[i].kernel_size, &weights[i],
                     &stats[i].kept_rows, stats[i].kept});
  }
  return views;
}

// AWQ or SmoothQuant: computes each input group's scales from a first
// calibration and rewrites the graph. Records AWQ's alpha per layer.
absl::StatusOr<Graph> ScaleInputs(const Graph& graph, const std::vector<QuantizableLayer>& layers,
                                  const std::vector<CalibrationBatch>& batches, const PtqOptions& options,
                                  std::map<std::string, double>* awq_alpha) {
  CalibrationOptions calibration = options.calibration;
  calibration.hessian = false;
  SQ_ASSIGN_OR_RETURN(std::vector<LayerStatistics> stats, Calibrate(graph, layers, batches, calibration));
  std::vector<std::vector<float>> weights;
  for (const QuantizableLayer& layer : layers) weights.push_back(WeightMatrix(graph, layer));
  Graph scaled = graph;
  for (const std::vector<size_t>& group : GroupByInput(layers)) {
    const std::vector<ScaledLayerView> views = Views(layers, group, weights, stats);
    std::vector<float> scales;
    if (options.smoothquant) {
      SQ_ASSIGN_OR_RETURN(scales, SmoothQuantScales(views, stats[group[0]].channel_abs_max, options.smoothquant_alpha));
    } else {
      SQ_ASSIGN_OR_RETURN(AwqSearchResult search, SearchAwqScales(views, stats[group[0]].channel_abs_mean,
                                                                  options.weights->format,
                                                                  options.weights->awq_alpha_step));
      for (size_t i : group) (*awq_alpha)[layers[i].weight] = search.alpha;
      if (search.alpha == 0) continue;  // s = 1: nothing to rewrite
      scales = std::move(search.channel_scales);
    }
    SQ_RETURN_IF_ERROR(ApplyInputScales(&scaled, layers, group, scales));
  }
  return scaled;
}

// Sets NaN/inf weights to 0 and reports them.
void SanitizeWeights(std::vector<float>* w, int64_t in, LayerReport* report) {
  for (size_t i = 0; i < w->size(); ++i) {
    if (std::isfinite((*w)[i])) continue;
    if (report->nonfinite_weights++ == 0) {
      report->notes.push_back(absl::StrCat("non-finite weight ", (*w)[i], " at row ", i / in, ", column ", i % in,
                                           " set to 0"));
    }
    (*w)[i] = 0.0f;
  }
}

absl::Status CorrectBias(Graph* graph, const QuantizableLayer& layer, const std::vector<float>& original,
                         const std::vector<float>& quantized, const std::vector<double>& column_mean,
                         LayerReport* report) {
  if (layer.op_type == "MatMul") {
    report->notes.push_back("bias correction skipped: MatMul has no bias input");
    return absl::OkStatus();
  }
  std::string bias = layer.bias;
  if (bias.empty()) {
    Node* node = FindNode(graph, layer);
    if (node == nullptr) return absl::InternalError(absl::StrCat("ptq: lost the node of layer ", layer.name));
    bias = graph::UniqueValueName(*graph, absl::StrCat(layer.weight, ".ptq_bias"));
    graph->initializers[bias] = Tensor(DataType::kFloat32, {layer.out});
    node->inputs.resize(3);
    node->inputs[2] = bias;
  }
  float* b = graph->initializers.at(bias).data<float>();
  for (int64_t r = 0; r < layer.out; ++r) {
    double shift = 0;
    for (int64_t c = 0; c < layer.in; ++c) {
      shift += (double{quantized[r * layer.in + c]} - original[r * layer.in + c]) * column_mean[c];
    }
    b[r] = static_cast<float>(b[r] - shift);
  }
  return absl::OkStatus();
}

// QuantizeLinear -> DequantizeLinear on `value`, rewiring the given nodes.
void InsertQdq(Graph* graph, const std::string& value, const ActivationRange& range,
               const std::vector<QuantizableLayer>& consumers) {
  const std::string scale = graph::UniqueValueName(*graph, absl::StrCat(value, ".ptq_act_scale"));
  const std::string zero = graph::UniqueValueName(*graph, absl::StrCat(value, ".ptq_act_zero"));
  const std::string q = graph::UniqueValueName(*graph, absl::StrCat(value, ".ptq_q"));
  const std::string dq = graph::UniqueValueName(*graph, absl::StrCat(value, ".ptq_dq"));
  graph->initializers[scale] = Tensor::FromVector<float>(DataType::kFloat32, {}, {range.Scale()});
  graph->initializers[zero] = Tensor(range.is_unsigned ? DataType::kUInt8 : DataType::kInt8, {});
  for (const QuantizableLayer& layer : consumers) FindNode(graph, layer)->inputs[0] = dq;
  Node quantize{graph::UniqueValueName(*graph, absl::StrCat(value, ".ptq_quantize")), "QuantizeLinear", "",
                {value, scale, zero}, {q}, {}};
  Node dequantize{graph::UniqueValueName(*graph, absl::StrCat(value, ".ptq_dequantize")), "DequantizeLinear", "",
                  {q, scale, zero}, {dq}, {}};
  graph->nodes.push_back(std::move(quantize));
  graph->nodes.push_back(std::move(dequantize));
}

double RelativeError(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += (double{a[i]} - b[i]) * (double{a[i]} - b[i]);
    norm += double{a[i]} * a[i];
  }
  return norm > 0 ? std::sqrt(diff / norm) : 0.0;
}

}  // namespace

std::string WeightMethodName(WeightMethod method) {
  switch (method) {
    case WeightMethod::kRtn: return "rtn";
    case WeightMethod::kGptq: return "gptq";
    case WeightMethod::kAwq: return "awq";
  }
  return "unknown";
}

absl::Status PtqOptions::Validate(const std::vector<QuantizableLayer>& layers) const {
  if (!weights && !activations) return absl::InvalidArgumentError("ptq: nothing to quantize (no weight or activation options)");
  if (smoothquant && !activations) return absl::InvalidArgumentError("ptq: smoothquant needs activation quantization");
  if (smoothquant && weights && weights->method == WeightMethod::kAwq) {
    return absl::InvalidArgumentError("ptq: smoothquant and awq both rescale the inputs; pick one");
  }
  if (calibration.max_kept_rows < 0 || calibration.max_kept_values <= 0) {
    return absl::InvalidArgumentError("ptq: calibration sample sizes must be positive");
  }
  if (weights) {
    for (const QuantizableLayer& layer : layers) SQ_RETURN_IF_ERROR(weights->format.Validate(layer.in, layer.name));
    if (weights->method == WeightMethod::kGptq &&
        (weights->gptq.block_size <= 0 || !(weights->gptq.dampening >= 0))) {
      return absl::InvalidArgumentError(absl::StrCat("ptq: gptq block_size must be > 0 and dampening >= 0, got ",
                                                     weights->gptq.block_size, " and ", weights->gptq.dampening));
    }
    if (weights->method == WeightMethod::kAwq && !(weights->awq_alpha_step > 0 && weights->awq_alpha_step <= 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("ptq: awq alpha step must be in (0, 1], got ", weights->awq_alpha_step));
    }
  }
  if (smoothquant && !(smoothquant_alpha >= 0 && smoothquant_alpha <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("ptq: smoothquant alpha must be in [0, 1], got ", smoothquant_alpha));
  }
  return absl::OkStatus();
}

absl::StatusOr<PtqResult> QuantizeGraph(const Graph& input_graph, const std::vector<CalibrationBatch>& batches,
                                        const PtqOptions& options, const LayerProgressFn& progress) {
  SQ_ASSIGN_OR_RETURN(LayerScan scan, FindQuantizableLayers(input_graph));
  if (scan.layers.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("ptq: graph ", input_graph.name, " has no quantizable layer (",
                                                   scan.skipped.size(), " Gemm/MatMul/Conv nodes skipped)"));
  }
  SQ_RETURN_IF_ERROR(options.Validate(scan.layers));
  if (batches.empty()) return absl::InvalidArgumentError("ptq: the calibration set is empty");
  PtqResult result;
  result.skipped = scan.skipped;
  Graph graph = input_graph;
  SQ_RETURN_IF_ERROR(graph::SortTopologically(&graph));
  // Non-finite weights would poison every statistic downstream: zero them first.
  std::vector<LayerReport> reports(scan.layers.size());
  for (size_t i = 0; i < scan.layers.size(); ++i) {
    const QuantizableLayer& layer = scan.layers[i];
    reports[i].name = layer.name;
    reports[i].op_type = layer.op_type;
    reports[i].out = layer.out;
    reports[i].in = layer.in;
    std::vector<float> w = WeightMatrix(graph, layer);
    SanitizeWeights(&w, layer.in, &reports[i]);
    if (reports[i].nonfinite_weights > 0) SetWeightMatrix(&graph, layer, w);
  }
  const bool awq = options.weights && options.weights->method == WeightMethod::kAwq;
  std::map<std::string, double> awq_alpha;
  if (awq || options.smoothquant) {
    SQ_ASSIGN_OR_RETURN(graph, ScaleInputs(graph, scan.layers, batches, options, &awq_alpha));
  }
  SQ_ASSIGN_OR_RETURN(LayerScan rescanned, FindQuantizableLayers(graph));
  std::vector<QuantizableLayer> layers = std::move(rescanned.layers);
  if (layers.size() != scan.layers.size()) return absl::InternalError("ptq: the rewrite changed the layer count");
  CalibrationOptions calibration = options.calibration;
  calibration.hessian = options.weights && options.weights->method == WeightMethod::kGptq;
  SQ_ASSIGN_OR_RETURN(std::vector<LayerStatistics> stats, Calibrate(graph, layers, batches, calibration));

  const Graph float_graph = graph;
  for (size_t i = 0; i < layers.size(); ++i) {
    const QuantizableLayer& layer = layers[i];
    LayerReport& report = reports[i];
    if (stats[i].nonfinite > 0) {
      report.notes.push_back(absl::StrCat(stats[i].nonfinite, " non-finite calibration inputs ignored"));
    }
    if (options.weights) {
      const WeightQuantization& wq = *options.weights;
      const std::vector<float> original = WeightMatrix(float_graph, layer);
      for (int64_t r = 0; r < layer.out; ++r) {
        bool zero = true;
        for (int64_t c = 0; c < layer.in && zero; ++c) zero = original[r * layer.in + c] == 0.0f;
        report.zero_rows += zero;
      }
      QuantizedLinear packed;
      if (wq.method == WeightMethod::kGptq) {
        SQ_ASSIGN_OR_RETURN(GptqResult gptq, QuantizeGptq(layer.name, original, layer.out, layer.in,
                                                          stats[i].hessian, wq.format, wq.gptq));
        packed = std::move(gptq.quantized);
        report.dead_columns = gptq.dead_columns;
        report.notes.insert(report.notes.end(), gptq.notes.begin(), gptq.notes.end());
      } else {
        model::LinearLayer linear{layer.name, layer.in, layer.out, original, {}};
        SQ_ASSIGN_OR_RETURN(packed, QuantizeRtn(linear, wq.format));
      }
      std::vector<float> dequantized(layer.out * layer.in);
      SQ_RETURN_IF_ERROR(DequantizeRtn(packed, dequantized.data()));
      SetWeightMatrix(&graph, layer, dequantized);
      if (wq.bias_correction) {
        SQ_RETURN_IF_ERROR(CorrectBias(&graph, layer, original, dequantized, stats[i].column_mean, &report));
      }
      if (!layer.bias.empty() || wq.bias_correction) {
        const std::string bias = FindNode(&graph, layer)->inputs.size() > 2 ? FindNode(&graph, layer)->inputs[2] : "";
        if (!bias.empty()) {
          const Tensor& b = graph.initializers.at(bias);
          packed.bias.assign(b.data<float>(), b.data<float>() + b.num_elements());
        }
      }
      report.weight_relative_error = RelativeError(original, dequantized);
      report.technique = absl::StrCat(WeightMethodName(wq.method), " ", wq.format.TechniqueName());
      report.weight_bits = wq.format.bits;
      if (awq) {
        auto it = awq_alpha.find(layer.weight);
        report.awq_alpha = it == awq_alpha.end() ? 0.0 : it->second;
      }
      if (wq.bias_correction) absl::StrAppend(&report.technique, " + bias correction");
      if (report.zero_rows > 0) {
        report.notes.push_back(absl::StrCat(report.zero_rows, " all-zero output channels (scale 0, stay 0)"));
      }
      if (report.dead_columns > 0) {
        report.notes.push_back(absl::StrCat(report.dead_columns, " inputs never nonzero in calibration (weight set to 0)"));
      }
      result.packed.push_back(std::move(packed));
    }
    if (options.smoothquant) absl::StrAppend(&report.technique, report.technique.empty() ? "" : " + ", "smoothquant");
    if (progress && !progress(static_cast<int>(i), static_cast<int>(layers.size()))) {
      return absl::CancelledError(absl::StrCat("ptq: cancelled after layer ", i + 1, " of ", layers.size()));
    }
  }
  if (options.activations) {
    for (const std::vector<size_t>& group : GroupByInput(layers)) {
      const size_t first = group[0];
      const LayerStatistics& s = stats[first];
      SQ_ASSIGN_OR_RETURN(ActivationRange range,
                          ObserveRange(absl::StrCat(layers[first].input, " (layer ", layers[first].name, ")"),
                                       s.abs_sample, std::max(std::fabs(s.min), std::fabs(s.max)), s.min < 0,
                                       options.activations->observer, options.activations->percentile));
      std::vector<QuantizableLayer> consumers;
      for (size_t i : group) {
        consumers.push_back(layers[i]);
        reports[i].activation_scale = range.Scale();
        absl::StrAppend(&reports[i].technique, reports[i].technique.empty() ? "" : " + ",
                        range.is_unsigned ? "a8u " : "a8 ", ObserverName(options.activations->observer));
      }
      InsertQdq(&graph, layers[first].input, range, consumers);
    }
    SQ_RETURN_IF_ERROR(graph::SortTopologically(&graph));
  }
  result.graph = std::move(graph);
  result.layers = std::move(reports);
  return result;
}

}  // namespace squeeze::core::quant::ptq
