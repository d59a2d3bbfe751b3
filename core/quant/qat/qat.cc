#include "core/quant/qat/qat.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/quant/packed_formats.h"
#include "core/quant/ptq/layers.h"
#include "core/quant/ptq/ptq.h"
#include "core/quant/qat/fake_quant.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"
#include "core/train/autograd.h"
#include "core/train/losses.h"
#include "core/train/optimizers.h"

namespace squeeze::core::quant::qat {
namespace {

using graph::DataType;
using graph::Graph;
using graph::Node;
using graph::Tensor;

constexpr char kLambda[] = "qat_lambda";
constexpr double kPi = 3.14159265358979323846;

absl::Status Validate(const QatOptions& o) {
  if (o.weight_bits != 4 && o.weight_bits != 8) {
    return absl::InvalidArgumentError(absl::StrCat("qat: weight_bits must be 4 or 8, got ", o.weight_bits));
  }
  if (o.steps < 3) return absl::InvalidArgumentError(absl::StrCat("qat: steps must be >= 3, got ", o.steps));
  if (!(o.ramp_fraction >= 0 && o.frozen_fraction >= 0 && o.ramp_fraction + o.frozen_fraction <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("qat: ramp_fraction ", o.ramp_fraction, " and frozen_fraction ",
                                                   o.frozen_fraction, " must be >= 0 and sum to <= 1"));
  }
  if (!(o.learning_rate > 0 && o.scale_learning_rate >= 0)) {
    return absl::InvalidArgumentError("qat: learning rates must be > 0 (scales: >= 0)");
  }
  if (o.distillation && !(o.distillation->temperature > 0 && o.distillation->weight >= 0 &&
                          o.distillation->weight <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("qat: distillation needs temperature > 0 and weight in [0, 1], got ",
                                                   o.distillation->temperature, ", ", o.distillation->weight));
  }
  return absl::OkStatus();
}

// A weight's fake-quant scale and what LSQ's gradient scale needs.
struct ScaleInfo {
  int64_t elements = 1;  // per scale
  float qmax = 1;
};

Node MakeNode(std::string name, std::string op, std::vector<std::string> inputs, std::string output) {
  Node node;
  node.name = std::move(name);
  node.op_type = std::move(op);
  node.inputs = std::move(inputs);
  node.outputs = {std::move(output)};
  return node;
}

// Routes `layer`'s weight W through W + lambda * (DQ(Q(W; s)) - W), per
// output channel; returns the scale initializer's name.
std::string InsertWeightFakeQuant(Graph* graph, const ptq::QuantizableLayer& layer, int bits,
                                  const std::vector<float>& scales) {
  const std::string& w = layer.weight;
  const std::string scale = w + ".qat_scale", zero = w + ".qat_zero", q = w + ".qat_q", dq = w + ".qat_dq",
                    error = w + ".qat_error", scaled = w + ".qat_scaled_error", out = w + ".qat_weight";
  for (Node& node : graph->nodes) {
    for (std::string& in : node.inputs) {
      if (in == w) in = out;
    }
  }
  const int64_t channels = static_cast<int64_t>(scales.size());
  graph->initializers[scale] = Tensor::FromVector<float>(DataType::kFloat32, {channels}, scales);
  graph->initializers[zero] = Tensor(bits == 4 ? DataType::kInt4 : DataType::kInt8, {channels});
  const int64_t axis = layer.layout == ptq::WeightLayout::kInOut ? 1 : 0;
  Node quantize = MakeNode(w + ".qat_quantize", "QuantizeLinear", {w, scale, zero}, q);
  Node dequantize = MakeNode(w + ".qat_dequantize", "DequantizeLinear", {q, scale, zero}, dq);
  quantize.attributes["axis"] = axis;
  dequantize.attributes["axis"] = axis;
  graph->nodes.push_back(std::move(quantize));
  graph->nodes.push_back(std::move(dequantize));
  graph->nodes.push_back(MakeNode(w + ".qat_sub", "Sub", {dq, w}, error));
  graph->nodes.push_back(MakeNode(w + ".qat_mul", "Mul", {error, kLambda}, scaled));
  graph->nodes.push_back(MakeNode(w + ".qat_add", "Add", {w, scaled}, out));
  return scale;
}

double LearningRate(double peak, int64_t step, int64_t steps) {
  return peak * 0.5 * (1 + std::cos(kPi * static_cast<double>(step) / static_cast<double>(steps)));
}

}  // namespace

absl::StatusOr<QatResult> TrainQuantizationAware(const Graph& float_graph,
                                                 const std::vector<ptq::CalibrationBatch>& calibration,
                                                 const QatBatchSource& batches, const QatOptions& options,
                                                 const QatProgressFn& progress) {
  SQ_RETURN_IF_ERROR(Validate(options));
  if (float_graph.outputs.empty()) return absl::InvalidArgumentError("qat: the graph has no output");
  ptq::PtqOptions activations_only;
  activations_only.activations = ptq::ActivationQuantization{ptq::Observer::kMinMax, 99.99};
  SQ_ASSIGN_OR_RETURN(ptq::PtqResult ptq_result, ptq::QuantizeGraph(float_graph, calibration, activations_only));
  const Graph base = std::move(ptq_result.graph);
  SQ_ASSIGN_OR_RETURN(ptq::LayerScan scan, ptq::FindQuantizableLayers(base));
  if (scan.layers.empty()) return absl::InvalidArgumentError("qat: the graph has no quantizable layer");

  const QuantGrid grid = SignedGrid(options.weight_bits);
  const float rtn_max = static_cast<float>(QuantMax(options.weight_bits, false));
  QatResult result;
  Graph train_graph = base;
  train_graph.initializers[kLambda] = Tensor::FromVector<float>(DataType::kFloat32, {}, {0.0f});
  std::map<std::string, ScaleInfo> scale_info;
  for (const ptq::QuantizableLayer& layer : scan.layers) {
    const std::vector<float> w = ptq::WeightMatrix(base, layer);
    std::vector<float> scales(layer.out, 1.0f);
    for (int64_t r = 0; r < layer.out; ++r) {
      float largest = 0;
      for (int64_t c = 0; c < layer.in; ++c) largest = std::max(largest, std::abs(w[r * layer.in + c]));
      if (largest > 0 && std::isfinite(largest)) scales[r] = largest / rtn_max;
    }
    const std::string scale = InsertWeightFakeQuant(&train_graph, layer, options.weight_bits, scales);
    scale_info[scale] = {layer.in, grid.qmax};
    result.layers.push_back({layer.name, layer.weight, scales, scales});
  }
  // Activation pairs from QuantizeGraph: QuantizeLinear(value, scale, zero).
  std::map<std::string, std::string> activation_scale_value;  // scale -> value
  for (const Node& node : base.nodes) {
    if (node.op_type != "QuantizeLinear" || node.inputs.size() < 3) continue;
    const bool is_signed = base.initializers.at(node.inputs[2]).dtype() == DataType::kInt8;
    scale_info[node.inputs[1]] = {1, is_signed ? 127.0f : 255.0f};
    activation_scale_value[node.inputs[1]] = node.inputs[0];
  }

  std::set<std::string> trainable;
  std::set<std::string> statistics;
  for (const Node& node : train_graph.nodes) {
    if (node.op_type != "BatchNormalization") continue;
    for (size_t i = 3; i < node.inputs.size() && i < 5; ++i) statistics.insert(node.inputs[i]);
  }
  for (const auto& [name, tensor] : train_graph.initializers) {
    if (tensor.dtype() == DataType::kFloat32 && name != kLambda && statistics.count(name) == 0) {
      trainable.insert(name);
    }
  }
  const auto backend = kernels::cpu::CreateCpuBackend();
  SQ_ASSIGN_OR_RETURN(train::GradientProgram program,
                      train::GradientProgram::Create(std::move(train_graph), backend, trainable));
  std::optional<runtime::Executor> teacher;
  if (options.distillation) {
    SQ_ASSIGN_OR_RETURN(runtime::Executor executor, runtime::Executor::Create(float_graph, backend));
    teacher.emplace(std::move(executor));
  }
  const std::string output = float_graph.outputs[0].name;
  train::AdamW weight_optimizer({options.learning_rate, 0.9, 0.999, 1e-8, 0.0});
  train::AdamW scale_optimizer({options.scale_learning_rate, 0.9, 0.999, 1e-8, 0.0});
  const int64_t ramp_steps = static_cast<int64_t>(std::llround(options.ramp_fraction * options.steps));
  const int64_t frozen_from =
      options.steps - static_cast<int64_t>(std::llround(options.frozen_fraction * options.steps));
  bool activation_sizes_known = false;
  for (int64_t step = 0; step < options.steps; ++step) {
    QatStep record;
    record.step = step;
    record.lambda = step < ramp_steps ? static_cast<double>(step + 1) / ramp_steps : 1.0;
    record.phase = step < ramp_steps ? "ramp" : step < frozen_from ? "learn" : "frozen";
    program.mutable_parameters()[kLambda].data<float>()[0] = static_cast<float>(record.lambda);
    weight_optimizer.set_learning_rate(LearningRate(options.learning_rate, step, options.steps));
    scale_optimizer.set_learning_rate(LearningRate(options.scale_learning_rate, step, options.steps));

    SQ_ASSIGN_OR_RETURN(QatBatch batch, batches(step));
    SQ_ASSIGN_OR_RETURN(train::Tape tape, program.Forward(batch.feeds));
    SQ_ASSIGN_OR_RETURN(const Tensor* logits, program.Output(tape, output));
    if (!activation_sizes_known) {
      // LSQ's N for an activation scale: the features of one example.
      const int64_t rows = std::max<int64_t>(1, logits->shape()[0]);
      for (const auto& [scale, value] : activation_scale_value) {
        scale_info[scale].elements = std::max<int64_t>(1, tape.values.at(value).num_elements() / rows);
      }
      activation_sizes_known = true;
    }
    SQ_ASSIGN_OR_RETURN(train::LossAndGradient hard, train::SoftmaxCrossEntropy(*logits, batch.labels));
    train::LossAndGradient total = std::move(hard);
    if (teacher) {
      SQ_ASSIGN_OR_RETURN(std::vector<Tensor> teacher_out, teacher->Run(batch.feeds));
      SQ_ASSIGN_OR_RETURN(train::LossAndGradient soft, train::SoftenedKlDivergence(
                                                           *logits, teacher_out[0], options.distillation->temperature));
      const float a = static_cast<float>(options.distillation->weight);
      total.loss = a * soft.loss + (1 - a) * total.loss;
      float* g = total.gradient.data<float>();
      for (int64_t i = 0; i < total.gradient.num_elements(); ++i) {
        g[i] = a * soft.gradient.data<float>()[i] + (1 - a) * g[i];
      }
    }
    record.loss = total.loss;
    SQ_ASSIGN_OR_RETURN(train::TensorMap gradients, program.Backward(tape, {{output, total.gradient}}));
    train::TensorMap weight_gradients, scale_gradients;
    for (auto& [name, gradient] : gradients) {
      auto info = scale_info.find(name);
      if (info == scale_info.end()) {
        weight_gradients.emplace(name, std::move(gradient));
        continue;
      }
      if (record.phase == "frozen") continue;
      const float g = LsqGradientScale(info->second.elements, info->second.qmax);
      for (int64_t i = 0; i < gradient.num_elements(); ++i) gradient.data<float>()[i] *= g;
      scale_gradients.emplace(name, std::move(gradient));
    }
    SQ_RETURN_IF_ERROR(weight_optimizer.Step(&program.mutable_parameters(), weight_gradients));
    if (!scale_gradients.empty()) {
      SQ_RETURN_IF_ERROR(scale_optimizer.Step(&program.mutable_parameters(), scale_gradients));
      // A step never makes a scale non-positive.
      for (const auto& [name, unused] : scale_gradients) {
        Tensor& s = program.mutable_parameters()[name];
        for (int64_t i = 0; i < s.num_elements(); ++i) s.data<float>()[i] = std::max(s.data<float>()[i], 1e-8f);
      }
    }
    result.history.push_back(record);
    if (progress && !progress(record)) return absl::CancelledError(absl::StrCat("qat: cancelled at step ", step));
  }

  // Bake: the activation-quantized base graph with the trained parameters
  // and each weight replaced by its fake-quantized value.
  result.graph = base;
  const train::TensorMap& trained = program.mutable_parameters();
  for (auto& [name, tensor] : result.graph.initializers) {
    auto it = trained.find(name);
    if (it != trained.end()) tensor = it->second;
  }
  for (size_t l = 0; l < scan.layers.size(); ++l) {
    const ptq::QuantizableLayer& layer = scan.layers[l];
    QatLayer& report = result.layers[l];
    report.scales = trained.at(layer.weight + ".qat_scale").ToFloats();
    std::vector<float> w = ptq::WeightMatrix(result.graph, layer);
    QuantizedLinear packed;
    packed.name = layer.weight;
    packed.in = layer.in;
    packed.out = layer.out;
    packed.bits = options.weight_bits;
    packed.scales = report.scales;
    const int64_t row_bytes = PackedRowBytes(packed.bits, layer.in);
    packed.packed.assign(layer.out * row_bytes, '\0');
    for (int64_t r = 0; r < layer.out; ++r) {
      auto* row = reinterpret_cast<uint8_t*>(&packed.packed[r * row_bytes]);
      for (int64_t c = 0; c < layer.in; ++c) {
        float& x = w[r * layer.in + c];
        const int code = static_cast<int>(QuantizeCode(x, report.scales[r], grid));
        x = FakeQuantize(x, report.scales[r], grid);
        if (packed.bits == 8) {
          row[c] = static_cast<uint8_t>(static_cast<int8_t>(code));
        } else {
          const uint8_t nibble = static_cast<uint8_t>(code + kInt4SymmetricOffset);
          row[c / 2] |= c % 2 == 0 ? nibble : static_cast<uint8_t>(nibble << 4);
        }
      }
    }
    ptq::SetWeightMatrix(&result.graph, layer, w);
    result.packed.emplace(layer.weight, std::move(packed));
  }
  for (const auto& [scale, value] : activation_scale_value) {
    QatResult::Activation a;
    a.value = value;
    a.scale = result.graph.initializers.at(scale).ToFloats()[0];
    for (const Node& node : result.graph.nodes) {
      if (node.op_type == "QuantizeLinear" && node.inputs[1] == scale) {
        const Tensor& zero = result.graph.initializers.at(node.inputs[2]);
        a.zero = static_cast<int>(zero.ToFloats()[0]);
        a.is_signed = zero.dtype() == DataType::kInt8;
      }
    }
    const float qmin = a.is_signed ? -128.0f : 0.0f, qmax = a.is_signed ? 127.0f : 255.0f;
    a.min = (qmin - a.zero) * a.scale;
    a.max = (qmax - a.zero) * a.scale;
    result.activations.push_back(a);
  }
  return result;
}

}  // namespace squeeze::core::quant::qat
