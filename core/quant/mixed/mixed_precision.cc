#include "core/quant/mixed/mixed_precision.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/model/linear_chain.h"
#include "core/quant/packed_formats.h"
#include "core/quant/rtn.h"
#include "core/status_macros.h"
#include "core/train/losses.h"

namespace squeeze::core::quant::mixed {
namespace {

constexpr int kFp16Bits = 16;
constexpr int64_t kScaleBits = 32;
constexpr int64_t kZeroPointBits = 8;

// Mean over batches of the loss gradient w.r.t. the trainable weights.
absl::StatusOr<train::TensorMap> MeanGradient(const train::GradientProgram& program,
                                              const std::vector<LossBatch>& batches, const std::string& logits,
                                              std::vector<train::TensorMap>* per_batch = nullptr) {
  train::TensorMap mean;
  for (size_t b = 0; b < batches.size(); ++b) {
    SQ_ASSIGN_OR_RETURN(train::Tape tape, program.Forward(batches[b].feeds));
    SQ_ASSIGN_OR_RETURN(const graph::Tensor* out, program.Output(tape, logits));
    SQ_ASSIGN_OR_RETURN(train::LossAndGradient loss, train::SoftmaxCrossEntropy(*out, batches[b].labels));
    SQ_ASSIGN_OR_RETURN(train::TensorMap gradients, program.Backward(tape, {{logits, loss.gradient}}));
    for (auto& [name, g] : gradients) {
      auto it = mean.find(name);
      if (it == mean.end()) {
        mean.emplace(name, g);
        continue;
      }
      float* m = it->second.data<float>();
      const float* d = g.data<float>();
      for (int64_t i = 0; i < g.num_elements(); ++i) m[i] += d[i];
    }
    if (per_batch != nullptr) per_batch->push_back(std::move(gradients));
  }
  const float inv = 1.0f / static_cast<float>(batches.size());
  for (auto& [name, g] : mean) {
    float* m = g.data<float>();
    for (int64_t i = 0; i < g.num_elements(); ++i) m[i] *= inv;
  }
  return mean;
}

// Mean over batches of the loss at the program's current parameters.
absl::StatusOr<double> MeanLoss(const train::GradientProgram& program, const std::vector<LossBatch>& batches,
                                 const std::string& logits) {
  double sum = 0;
  for (const LossBatch& batch : batches) {
    SQ_ASSIGN_OR_RETURN(train::Tape tape, program.Forward(batch.feeds));
    SQ_ASSIGN_OR_RETURN(const graph::Tensor* out, program.Output(tape, logits));
    SQ_ASSIGN_OR_RETURN(train::LossAndGradient loss, train::SoftmaxCrossEntropy(*out, batch.labels));
    sum += loss.loss;
  }
  return sum / static_cast<double>(batches.size());
}

// ||W - Q_bits(W)||^2 for symmetric per-channel RTN, or the fp16 round trip.
absl::StatusOr<std::vector<float>> QuantizedWeights(const std::string& name, const std::vector<float>& w,
                                                    int64_t out, int64_t in, int bits, bool asymmetric) {
  std::vector<float> q(w.size());
  if (bits == kFp16Bits) {
    q = w;
    CastQuantize(FloatFormat::kFloat16, &q);
    return q;
  }
  model::LinearLayer layer{name, in, out, w, {}};
  SQ_ASSIGN_OR_RETURN(QuantizedLinear packed, QuantizeRtn(layer, RtnOptions{bits, 0, asymmetric}));
  SQ_RETURN_IF_ERROR(DequantizeRtn(packed, q.data()));
  return q;
}

// Q_bits(W) of `layer` in the layout of its initializer `original` (a
// MatMul weight is stored [in, out]); `w` is its [out, in] WeightMatrix.
absl::StatusOr<graph::Tensor> QuantizedInitializer(const ptq::QuantizableLayer& layer, const graph::Tensor& original,
                                                   const std::vector<float>& w, int bits, bool asymmetric) {
  SQ_ASSIGN_OR_RETURN(std::vector<float> q, QuantizedWeights(layer.name, w, layer.out, layer.in, bits, asymmetric));
  graph::Graph scratch;
  scratch.initializers.emplace(layer.weight, original);
  ptq::SetWeightMatrix(&scratch, layer, q);
  return std::move(scratch.initializers.at(layer.weight));
}

int64_t SizeBits(const ptq::QuantizableLayer& layer, int bits, bool asymmetric) {
  const int64_t params = layer.out * layer.in;
  if (bits == kFp16Bits) return params * kFp16Bits;
  return params * bits + layer.out * (kScaleBits + (asymmetric ? kZeroPointBits : 0));
}

}  // namespace

double LayerSensitivity::Predicted(size_t candidate) const {
  if (!measured.empty()) return measured[candidate];
  return params == 0 ? 0.0 : trace / static_cast<double>(params) * error[candidate];
}

absl::StatusOr<std::vector<LayerSensitivity>> MeasureSensitivity(const graph::Graph& graph,
                                                                 const std::vector<LossBatch>& batches,
                                                                 const SensitivityOptions& options) {
  if (batches.empty()) return absl::InvalidArgumentError("sensitivity: no loss batches");
  if (options.probes < 1) {
    return absl::InvalidArgumentError(absl::StrCat("sensitivity: probes must be >= 1, got ", options.probes));
  }
  if (!(options.relative_step > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sensitivity: relative_step must be > 0, got ", options.relative_step));
  }
  for (int bits : options.candidate_bits) {
    if (bits != kFp16Bits && !IsUniformBits(bits)) {
      return absl::InvalidArgumentError(
          absl::StrCat("sensitivity: candidate bits must be one of 2, 3, 4, 8, 16, got ", bits));
    }
  }
  SQ_ASSIGN_OR_RETURN(ptq::LayerScan scan, ptq::FindQuantizableLayers(graph));
  if (scan.layers.empty()) return absl::InvalidArgumentError("sensitivity: the graph has no quantizable layer");

  std::vector<LayerSensitivity> result(scan.layers.size());
  std::set<std::string> trainable;
  for (size_t i = 0; i < scan.layers.size(); ++i) {
    const ptq::QuantizableLayer& layer = scan.layers[i];
    LayerSensitivity& s = result[i];
    s.layer = layer;
    s.params = layer.out * layer.in;
    s.asymmetric = options.asymmetric;
    trainable.insert(layer.weight);
    const std::vector<float> w = ptq::WeightMatrix(graph, layer);
    for (int bits : options.candidate_bits) {
      SQ_ASSIGN_OR_RETURN(std::vector<float> q,
                          QuantizedWeights(layer.name, w, layer.out, layer.in, bits, options.asymmetric));
      double error = 0;
      for (size_t k = 0; k < w.size(); ++k) error += (double{w[k]} - q[k]) * (double{w[k]} - q[k]);
      s.bits.push_back(bits);
      s.error.push_back(error);
      s.size_bits.push_back(SizeBits(layer, bits, options.asymmetric));
    }
  }

  SQ_ASSIGN_OR_RETURN(train::GradientProgram program,
                      train::GradientProgram::Create(graph, kernels::cpu::CreateCpuBackend(options.num_threads),
                                                     trainable));
  if (options.estimator == CurvatureEstimator::kFisher) {
    std::vector<train::TensorMap> per_batch;
    SQ_RETURN_IF_ERROR(MeanGradient(program, batches, options.logits, &per_batch).status());
    for (LayerSensitivity& s : result) {
      double sum = 0;
      for (const train::TensorMap& g : per_batch) {
        const graph::Tensor& t = g.at(s.layer.weight);
        const float* d = t.data<float>();
        for (int64_t k = 0; k < t.num_elements(); ++k) sum += double{d[k]} * d[k];
      }
      s.trace = sum / static_cast<double>(batches.size());
    }
    return result;
  }

  if (options.estimator == CurvatureEstimator::kMeasuredLoss) {
    SQ_ASSIGN_OR_RETURN(const double base_loss, MeanLoss(program, batches, options.logits));
    SQ_ASSIGN_OR_RETURN(const train::TensorMap gradient, MeanGradient(program, batches, options.logits));
    for (LayerSensitivity& s : result) {
      graph::Tensor& parameter = program.mutable_parameters().at(s.layer.weight);
      const graph::Tensor original = parameter;
      const float* g = gradient.at(s.layer.weight).data<float>();
      const std::vector<float> w = ptq::WeightMatrix(graph, s.layer);
      for (int bits : s.bits) {
        SQ_ASSIGN_OR_RETURN(parameter, QuantizedInitializer(s.layer, original, w, bits, s.asymmetric));
        SQ_ASSIGN_OR_RETURN(const double loss, MeanLoss(program, batches, options.logits));
        double first_order = 0;
        const float* quantized = parameter.data<float>();
        const float* base = original.data<float>();
        for (int64_t k = 0; k < original.num_elements(); ++k) first_order += double{g[k]} * (quantized[k] - base[k]);
        s.measured.push_back(loss - base_loss - first_order);
      }
      parameter = original;
    }
    return result;
  }

  if (options.estimator == CurvatureEstimator::kQuadraticForm) {
    for (LayerSensitivity& s : result) {
      graph::Tensor& parameter = program.mutable_parameters().at(s.layer.weight);
      const graph::Tensor original = parameter;
      const std::vector<float> w = ptq::WeightMatrix(graph, s.layer);
      double weight_norm = 0;
      for (float v : w) weight_norm += double{v} * v;
      weight_norm = std::sqrt(weight_norm);
      for (int bits : s.bits) {
        // dW in the initializer's own layout.
        SQ_ASSIGN_OR_RETURN(const graph::Tensor quantized_weight,
                            QuantizedInitializer(s.layer, original, w, bits, s.asymmetric));
        const float* quantized = quantized_weight.data<float>();
        const float* base = original.data<float>();
        std::vector<double> direction(original.num_elements());
        double norm = 0;
        for (size_t k = 0; k < direction.size(); ++k) {
          direction[k] = double{quantized[k]} - base[k];
          norm += direction[k] * direction[k];
        }
        norm = std::sqrt(norm);
        if (norm == 0 || weight_norm == 0) {
          s.measured.push_back(0);
          continue;
        }
        const double h = std::min(1.0, options.relative_step * weight_norm / norm);
        train::TensorMap sides[2];
        for (int side = 0; side < 2; ++side) {
          float* p = parameter.data<float>();
          for (size_t k = 0; k < direction.size(); ++k) {
            p[k] = static_cast<float>(base[k] + (side == 0 ? h : -h) * direction[k]);
          }
          SQ_ASSIGN_OR_RETURN(sides[side], MeanGradient(program, batches, options.logits));
        }
        const float* plus = sides[0].at(s.layer.weight).data<float>();
        const float* minus = sides[1].at(s.layer.weight).data<float>();
        double dot = 0;
        for (size_t k = 0; k < direction.size(); ++k) dot += direction[k] * (double{plus[k]} - minus[k]);
        s.measured.push_back(dot / (2 * h));
        parameter = original;
      }
      parameter = original;
    }
    return result;
  }

  std::mt19937_64 rng(options.seed);
  std::map<std::string, std::vector<float>> original;
  std::vector<double> step(result.size());
  for (size_t i = 0; i < result.size(); ++i) {
    const graph::Tensor& t = program.mutable_parameters().at(result[i].layer.weight);
    original[result[i].layer.weight] = t.ToFloats();
    double sum = 0;
    for (float v : original[result[i].layer.weight]) sum += double{v} * v;
    const double rms = std::sqrt(sum / std::max<int64_t>(1, t.num_elements()));
    step[i] = options.relative_step * (rms > 0 ? rms : 1.0);
  }
  for (int probe = 0; probe < options.probes; ++probe) {
    std::vector<std::vector<int8_t>> v(result.size());
    for (size_t i = 0; i < result.size(); ++i) {
      const std::vector<float>& w = original[result[i].layer.weight];
      v[i].resize(w.size());
      for (size_t k = 0; k < w.size(); k += 64) {
        const uint64_t r = rng();
        for (size_t j = k; j < std::min(w.size(), k + 64); ++j) v[i][j] = (r >> (j - k)) & 1 ? 1 : -1;
      }
    }
    train::TensorMap sides[2];
    for (int side = 0; side < 2; ++side) {
      const float sign = side == 0 ? 1.0f : -1.0f;
      for (size_t i = 0; i < result.size(); ++i) {
        const std::vector<float>& w = original[result[i].layer.weight];
        float* p = program.mutable_parameters().at(result[i].layer.weight).data<float>();
        const float h = static_cast<float>(step[i]) * sign;
        for (size_t k = 0; k < w.size(); ++k) p[k] = w[k] + h * v[i][k];
      }
      SQ_ASSIGN_OR_RETURN(sides[side], MeanGradient(program, batches, options.logits));
    }
    for (size_t i = 0; i < result.size(); ++i) {
      const float* plus = sides[0].at(result[i].layer.weight).data<float>();
      const float* minus = sides[1].at(result[i].layer.weight).data<float>();
      double dot = 0;
      for (size_t k = 0; k < v[i].size(); ++k) dot += v[i][k] * (double{plus[k]} - minus[k]);
      result[i].trace += dot / (2 * step[i]) / options.probes;
    }
  }
  return result;
}

absl::StatusOr<MixedPlan> PlanMixedPrecision(const std::vector<LayerSensitivity>& layers, int64_t budget_bits,
                                             const std::vector<int>& allowed_bits) {
  std::vector<LayerOptions> options(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    options[i].name = layers[i].layer.name;
    options[i].params = layers[i].params;
    for (size_t c = 0; c < layers[i].bits.size(); ++c) {
      if (!allowed_bits.empty() &&
          std::find(allowed_bits.begin(), allowed_bits.end(), layers[i].bits[c]) == allowed_bits.end()) {
        continue;
      }
      // A negative trace estimate (noise, or a non-convex point) predicts a
      // gain from quantizing; clamp to 0 so the allocator sees no benefit.
      options[i].options.push_back({layers[i].bits[c], layers[i].size_bits[c], std::max(0.0, layers[i].Predicted(c))});
    }
  }
  SQ_ASSIGN_OR_RETURN(Allocation allocation, AllocateBits(options, budget_bits));
  std::vector<int> bits(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) bits[i] = options[i].options[allocation.choice[i]].bits;
  SQ_ASSIGN_OR_RETURN(MixedPlan plan, PlanWithBits(layers, bits));
  plan.exact = allocation.exact;
  return plan;
}

absl::StatusOr<MixedPlan> PlanWithBits(const std::vector<LayerSensitivity>& layers, const std::vector<int>& bits) {
  if (bits.size() != layers.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("mixed: ", bits.size(), " widths for ", layers.size(), " layers"));
  }
  MixedPlan plan;
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerSensitivity& s = layers[i];
    auto it = std::find(s.bits.begin(), s.bits.end(), bits[i]);
    if (it == s.bits.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("mixed: ", bits[i], " bits is no candidate (layer ", s.layer.name, ")"));
    }
    const size_t c = it - s.bits.begin();
    plan.layers.push_back({s.layer.name, s.params, bits[i], s.Predicted(c), s.size_bits[c]});
    plan.predicted += s.Predicted(c);
    plan.size_bits += s.size_bits[c];
    plan.params += s.params;
  }
  return plan;
}

absl::StatusOr<MixedPlan> UniformPlan(const std::vector<LayerSensitivity>& layers, int bits) {
  return PlanWithBits(layers, std::vector<int>(layers.size(), bits));
}

absl::StatusOr<graph::Graph> ApplyPlan(const graph::Graph& graph, const std::vector<LayerSensitivity>& layers,
                                       const MixedPlan& plan) {
  graph::Graph result = graph;
  for (const LayerPlan& planned : plan.layers) {
    auto it = std::find_if(layers.begin(), layers.end(),
                           [&](const LayerSensitivity& s) { return s.layer.name == planned.name; });
    if (it == layers.end()) return absl::NotFoundError(absl::StrCat("mixed: no layer ", planned.name));
    const ptq::QuantizableLayer& layer = it->layer;
    SQ_ASSIGN_OR_RETURN(std::vector<float> q, QuantizedWeights(layer.name, ptq::WeightMatrix(graph, layer),
                                                               layer.out, layer.in, planned.bits, it->asymmetric));
    ptq::SetWeightMatrix(&result, layer, q);
  }
  return result;
}

}  // namespace squeeze::core::quant::mixed
