#include "core/compress/recipe.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/distill/distill.h"
#include "core/kernels/backends.h"
#include "core/lora/lora.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "core/prune/nm_sparse.h"
#include "core/quant/packed_formats.h"
#include "core/quant/ptq/layers.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"

namespace squeeze::core::compress {
namespace {

absl::Status StepError(size_t index, const std::string& stage, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat("step ", index, " (", stage, "): ", status.message()));
}

using graph::Graph;
using graph::Tensor;

// One label per output row: the dataset's labels for `indices` when it has
// them, else the original model's own top-1 (label-free data).
absl::StatusOr<std::vector<int64_t>> LabelsFor(const RecipeInputs& inputs, const std::vector<int64_t>& indices,
                                               const Graph& original, const Tensor& feed) {
  if (inputs.examples->labels) {
    SQ_ASSIGN_OR_RETURN(data::Dataset subset, data::SelectExamples(*inputs.examples, indices));
    return data::LabelsAsInt64(subset);
  }
  SQ_ASSIGN_OR_RETURN(auto backend, kernels::CreateBackend("cpu"));
  SQ_ASSIGN_OR_RETURN(runtime::Executor executor, runtime::Executor::Create(original, backend));
  SQ_ASSIGN_OR_RETURN(std::vector<Tensor> outputs, executor.Run({{inputs.input_name, feed}}));
  const Tensor& logits = outputs.at(0);
  const int64_t classes = logits.shape().back();
  const int64_t rows = logits.num_elements() / classes;
  const float* data = logits.data<float>();
  std::vector<int64_t> labels(rows);
  for (int64_t r = 0; r < rows; ++r) {
    labels[r] = std::max_element(data + r * classes, data + (r + 1) * classes) - (data + r * classes);
  }
  return labels;
}

// The examples of batch `step` of a seeded pass over the calibration set.
std::vector<int64_t> BatchIndices(const RecipeInputs& inputs, int64_t step, int64_t batch_size) {
  const int64_t n = inputs.examples->NumExamples();
  const int64_t epoch = (step * batch_size) / n;
  std::vector<int64_t> order = data::ShuffledIndices(n, inputs.seed + static_cast<uint64_t>(epoch));
  std::vector<int64_t> indices(batch_size);
  for (int64_t i = 0; i < batch_size; ++i) indices[i] = order[(step * batch_size + i) % n];
  return indices;
}

absl::StatusOr<Tensor> FeedFor(const RecipeInputs& inputs, const std::vector<int64_t>& indices) {
  SQ_ASSIGN_OR_RETURN(data::Dataset subset, data::SelectExamples(*inputs.examples, indices));
  return graph::FromModelTensor(subset.inputs);
}

// The calibration batches with one label per example (LabelsFor).
absl::StatusOr<std::vector<prune::LabeledBatch>> LabeledCalibration(const Graph& original, const RecipeInputs& inputs) {
  std::vector<prune::LabeledBatch> batches;
  int64_t offset = 0;
  for (const quant::ptq::CalibrationBatch& feeds : *inputs.batches) {
    const Tensor& feed = feeds.at(inputs.input_name);
    std::vector<int64_t> indices(feed.shape()[0]);
    for (auto& i : indices) i = offset++;  // the calibration set is in batch order
    prune::LabeledBatch batch;
    batch.feeds = feeds;
    SQ_ASSIGN_OR_RETURN(batch.labels, LabelsFor(inputs, indices, original, feed));
    batches.push_back(std::move(batch));
  }
  return batches;
}

// Output distillation of `student` from `original` (see RecoveryOptions).
absl::Status Recover(const Graph& original, const RecoveryOptions& options, const RecipeInputs& inputs,
                     const std::string& stage, const StepProgressFn& progress, bool keep_zeros, Graph* student,
                     std::vector<std::string>* notes) {
  if (options.steps <= 0) return absl::OkStatus();
  std::optional<lora::LoraGraph> adapted;
  if (options.lora_rank > 0) {
    lora::LoraOptions lora_options;
    lora_options.rank = options.lora_rank;
    lora_options.alpha = 2.0 * static_cast<double>(options.lora_rank);
    lora_options.seed = inputs.seed;
    SQ_ASSIGN_OR_RETURN(adapted, lora::AddLoraAdapters(*student, lora_options));
  }
  distill::DistillOptions distill_options;
  distill_options.output.steps = options.steps;
  distill_options.output.learning_rate = options.learning_rate;
  distill_options.temperature = options.temperature;
  const bool labels = inputs.examples->labels.has_value();
  distill_options.hard_label_weight = labels ? options.hard_label_weight : 0.0;
  distill_options.seed = inputs.seed;
  // Without LoRA, distill_options.trainable stays empty: core/distill's
  // default trains the model's weights only (not BatchNormalization
  // statistics, not the derived constants core/hf adds: rotary tables, the
  // causal mask).
  if (adapted) distill_options.trainable = adapted->trainable;
  auto batches = [&](int64_t step) -> absl::StatusOr<distill::DistillBatch> {
    const std::vector<int64_t> indices = BatchIndices(inputs, step, options.batch_size);
    distill::DistillBatch batch;
    SQ_ASSIGN_OR_RETURN(Tensor feed, FeedFor(inputs, indices));
    if (labels) {
      SQ_ASSIGN_OR_RETURN(batch.labels, LabelsFor(inputs, indices, original, feed));
    }
    batch.feeds[inputs.input_name] = std::move(feed);
    return batch;
  };
  const std::string recover_stage = absl::StrCat(stage, " recovery");
  SQ_ASSIGN_OR_RETURN(distill::DistillResult result,
                      distill::Distill(original, adapted ? adapted->graph : *student, batches, distill_options,
                                       [&](const distill::DistillProgress& p) {
                                         return !progress || progress(recover_stage, p.step, p.total);
                                       }));
  if (adapted) {
    lora::MergeOptions merge;
    merge.keep_zeros = keep_zeros;
    SQ_ASSIGN_OR_RETURN(*student, lora::MergeLoraAdapters(result.student, adapted->adapters, merge));
    notes->push_back(absl::StrFormat("%s: LoRA rank %d on %d layers (%d trainable parameters), merged%s",
                                     stage, options.lora_rank, adapted->adapters.size(),
                                     adapted->trainable_parameters, keep_zeros ? " keeping pruned zeros" : ""));
  } else {
    *student = std::move(result.student);
  }
  const std::vector<double>& losses = result.curves.back().losses;
  notes->push_back(absl::StrFormat("%s: %d steps of output distillation (T %g, lr %g, batch %d%s), loss %.4g -> %.4g",
                                   recover_stage, options.steps, options.temperature, options.learning_rate,
                                   options.batch_size, distill_options.hard_label_weight > 0 ? ", with hard labels" : "", losses.front(),
                                   losses.back()));
  return absl::OkStatus();
}

absl::Status ApplyPrune(const Graph& original, const PruneStep& step, const RecipeInputs& inputs, size_t index,
                        const StepProgressFn& progress, RecipeResult* result) {
  if (step.channels) {
    SQ_ASSIGN_OR_RETURN(std::vector<prune::LabeledBatch> batches, LabeledCalibration(original, inputs));
    SQ_ASSIGN_OR_RETURN(prune::StructuredResult pruned,
                        prune::PruneStructured(result->graph, batches, step.structured,
                                               [&](const std::string&, double fraction) {
                                                 return !progress || progress("prune", static_cast<int64_t>(fraction * 100), 100);
                                               }));
    result->graph = std::move(pruned.graph);
    const std::string label = absl::StrFormat("channels-%s %.0f%%", prune::StructuredScoreName(step.structured.score),
                                              100.0 * step.structured.target);
    result->techniques.push_back(label);
    result->notes.push_back(absl::StrFormat("step %d prune: %s, parameters %d -> %d, %d groups pruned", index, label,
                                            pruned.params_before, pruned.params_after, pruned.layers.size()));
  } else {
    SQ_ASSIGN_OR_RETURN(prune::PruneResult pruned,
                        prune::PruneGraph(result->graph, *inputs.batches, step.unstructured, [&](int i, int n) {
                          return !progress || progress("prune", i + 1, n);
                        }));
    result->graph = std::move(pruned.graph);
    const prune::PruneOptions& o = step.unstructured;
    std::string label = prune::PruneMethodName(o.method);
    if (o.nm_m > 0) {
      absl::StrAppend(&label, " ", o.nm_n, ":", o.nm_m);
      result->nm_n = o.nm_n;
      result->nm_m = o.nm_m;
      for (const prune::PruneLayerReport& layer : pruned.layers) {
        WeightFormat& format = result->formats[layer.weight];
        format.sparse_2_4 = o.nm_n * 2 <= o.nm_m && o.nm_m == 4;
        // Held compressed: n of every m values plus their indices.
        const int64_t groups = layer.out * (layer.in / o.nm_m);
        format.stored_bytes = groups * o.nm_n * static_cast<int64_t>(sizeof(float)) +
                              layer.out * ((layer.in / o.nm_m * o.nm_n * prune::NmIndexBits(o.nm_m) + 7) / 8);
      }
    } else {
      absl::StrAppend(&label, absl::StrFormat(" %.0f%%", 100 * o.sparsity),
                      o.scope == prune::PruneScope::kGlobal ? " global" : "");
    }
    result->techniques.push_back(label);
    result->notes.push_back(absl::StrFormat("step %d prune: %s, %d of %d weights of %d layers are zero", index, label,
                                            pruned.zeros, pruned.params, pruned.layers.size()));
  }
  return Recover(original, step.recovery, inputs, "prune", progress, /*keep_zeros=*/result->nm_m > 0, &result->graph,
                 &result->notes);
}

absl::Status ApplyLowRank(const Graph& original, const LowRankStep& step, const RecipeInputs& inputs, size_t index,
                          const StepProgressFn& progress, RecipeResult* result) {
  lowrank::LowRankOptions options = step.options;
  options.trainable_scale = step.recovery.steps > 0;
  SQ_ASSIGN_OR_RETURN(lowrank::LowRankResult factorized,
                      lowrank::FactorizeGraph(result->graph, options, *inputs.batches, [&](int i, int n) {
                        return !progress || progress("low_rank", i + 1, n);
                      }));
  result->graph = std::move(factorized.graph);
  int factorized_layers = 0;
  for (const auto& layer : factorized.layers) factorized_layers += layer.factorized ? 1 : 0;
  const std::string label = options.mode == lowrank::RankMode::kEnergy
                                ? absl::StrFormat("low-rank energy %.3g", options.energy)
                                : absl::StrFormat("low-rank %.3gx%s", 1.0 / options.target_ratio,
                                                  options.mode == lowrank::RankMode::kSensitivity ? " by sensitivity" : "");
  result->techniques.push_back(label);
  result->notes.push_back(absl::StrFormat("step %d low_rank: %s, %d layers factorized, parameters %d -> %d", index,
                                          label, factorized_layers, factorized.params_before, factorized.params_after));
  SQ_RETURN_IF_ERROR(Recover(original, step.recovery, inputs, "low_rank", progress, /*keep_zeros=*/result->nm_m > 0,
                             &result->graph, &result->notes));
  return lowrank::FoldRankScales(factorized.scales, &result->graph);
}

// ||after - before|| / ||before|| of a layer's weights (0 for zero weights).
double RelativeError(const std::vector<float>& before, const std::vector<float>& after) {
  double diff = 0, norm = 0;
  for (size_t k = 0; k < before.size(); ++k) {
    const double b = std::isfinite(before[k]) ? before[k] : 0.0;
    diff += (after[k] - b) * (after[k] - b);
    norm += b * b;
  }
  return norm > 0 ? std::sqrt(diff / norm) : 0.0;
}

// The report of `layer` quantized to `bits` as `technique`, its error
// measured between the weights in `before` and `after`.
quant::ptq::LayerReport ReportLayer(const quant::ptq::QuantizableLayer& layer, const std::string& technique, int bits,
                                    const Graph& before, const Graph& after) {
  quant::ptq::LayerReport report;
  report.name = layer.name;
  report.op_type = layer.op_type;
  report.out = layer.out;
  report.in = layer.in;
  report.technique = technique;
  report.weight_bits = bits;
  report.weight_relative_error =
      RelativeError(quant::ptq::WeightMatrix(before, layer), quant::ptq::WeightMatrix(after, layer));
  return report;
}

// The layer's [out, in] weights (non-finite ones as 0) and bias.
model::LinearLayer LinearOf(const Graph& graph, const quant::ptq::QuantizableLayer& layer) {
  model::LinearLayer linear{layer.name, layer.in, layer.out, quant::ptq::WeightMatrix(graph, layer), {}};
  for (float& w : linear.weight) {
    if (!std::isfinite(w)) w = 0.0f;
  }
  if (!layer.bias.empty()) linear.bias = graph.initializers.at(layer.bias).ToFloats();
  return linear;
}

// Per-tensor RTN: the whole [out, in] weight quantized as one row of
// out * in values (so one scale and zero point, RTN's arithmetic), then
// stored per output channel in the per-channel layout with that scale
// repeated, so that every consumer of QuantizedLinear reads it unchanged.
absl::StatusOr<quant::QuantizedLinear> QuantizePerTensor(const model::LinearLayer& layer,
                                                         const quant::RtnOptions& format) {
  const model::LinearLayer flat{layer.name, layer.out * layer.in, 1, layer.weight, {}};
  SQ_ASSIGN_OR_RETURN(quant::QuantizedLinear whole,
                      quant::QuantizeRtn(flat, quant::RtnOptions{format.bits, 0, format.asymmetric}));
  quant::QuantizedLinear q = whole;
  q.in = layer.in;
  q.out = layer.out;
  q.bias = layer.bias;
  q.scales.assign(layer.out, whole.scales[0]);
  if (format.asymmetric) q.zero_points.assign(layer.out, whole.zero_points[0]);
  if (quant::IsNibbleBits(format.bits) && layer.in % 2 == 1) {  // rows start on a byte: re-pack the nibbles
    const int64_t row_bytes = quant::PackedRowBytes(format.bits, layer.in);
    q.packed.assign(layer.out * row_bytes, '\0');
    for (int64_t r = 0; r < layer.out; ++r) {
      for (int64_t c = 0; c < layer.in; ++c) {
        const int64_t k = r * layer.in + c;
        const quant::PackedInt4Pair pair{static_cast<uint8_t>(whole.packed[k / 2])};
        const uint8_t nibble = k % 2 == 0 ? pair.Low() : pair.High();
        q.packed[r * row_bytes + c / 2] = static_cast<char>(static_cast<uint8_t>(q.packed[r * row_bytes + c / 2]) |
                                                            (c % 2 == 0 ? nibble : nibble << 4));
      }
    }
  }
  return q;
}

// Replaces the per-channel RTN weights PTQ wrote (`ptq`, quantized from
// `original`) by per-tensor ones.
absl::Status UsePerTensorScales(const Graph& original, const quant::RtnOptions& format,
                                const std::vector<quant::ptq::QuantizableLayer>& layers, quant::ptq::PtqResult* ptq) {
  for (size_t i = 0; i < ptq->packed.size(); ++i) {
    quant::QuantizedLinear& packed = ptq->packed[i];
    auto layer = std::find_if(layers.begin(), layers.end(),
                              [&](const quant::ptq::QuantizableLayer& l) { return l.name == packed.name; });
    if (layer == layers.end()) return absl::InternalError(absl::StrCat("per-tensor: no layer ", packed.name));
    SQ_ASSIGN_OR_RETURN(packed, QuantizePerTensor(LinearOf(original, *layer), format));
    std::vector<float> dequantized(layer->out * layer->in);
    SQ_RETURN_IF_ERROR(quant::DequantizeRtn(packed, dequantized.data()));
    quant::ptq::SetWeightMatrix(&ptq->graph, *layer, dequantized);
    for (quant::ptq::LayerReport& report : ptq->layers) {
      if (report.name != packed.name) continue;
      report.technique = absl::StrReplaceAll(report.technique, {{"-pc-", "-pt-"}});
      report.weight_relative_error =
          RelativeError(quant::ptq::WeightMatrix(original, *layer), dequantized);
    }
  }
  return absl::OkStatus();
}

// Records one packed layer of a quantize or QAT step.
void AddPacked(const std::string& weight, const quant::QuantizedLinear& linear, int activation_bits,
               RecipeResult* result) {
  WeightFormat& format = result->formats[weight];
  format.weight_bits = linear.bits;
  format.activation_bits = activation_bits;
  format.stored_bytes = linear.StorageBytes();
  result->packed[weight] = linear;
}

// k-means codebooks (QuantizeStep::kmeans): weight-only; the graph keeps
// the codebook values as float weights (no QuantizedLinear to export).
absl::Status ApplyKmeans(const QuantizeStep& step, const RecipeInputs& inputs, size_t index,
                         const StepProgressFn& progress, RecipeResult* result) {
  SQ_ASSIGN_OR_RETURN(quant::ptq::LayerScan scan, quant::ptq::FindQuantizableLayers(result->graph));
  SQ_ASSIGN_OR_RETURN(quant::codebook::CodebookGraphResult kmeans,
                      quant::codebook::QuantizeGraphKmeans(result->graph, *inputs.batches, *step.kmeans,
                                                           [&](int i, int n) {
                                                             return !progress || progress("quantize", i + 1, n);
                                                           }));
  const std::string technique = step.kmeans->TechniqueName();
  for (const quant::gemm::CodebookLinear& linear : kmeans.layers) {
    auto layer = std::find_if(scan.layers.begin(), scan.layers.end(),
                              [&](const quant::ptq::QuantizableLayer& l) { return l.name == linear.name; });
    if (layer == scan.layers.end()) return absl::InternalError(absl::StrCat("kmeans: no layer ", linear.name));
    WeightFormat& format = result->formats[layer->weight];
    format.weight_bits = linear.bits;
    format.stored_bytes = quant::codebook::CodebookStorageBytes(linear);
    result->codebooks[layer->weight] = linear;
    result->layers.push_back(ReportLayer(*layer, technique, linear.bits, result->graph, kmeans.graph));
  }
  if (result->layers.empty()) return absl::InvalidArgumentError("model has no quantizable layer");
  result->graph = std::move(kmeans.graph);
  result->skipped = std::move(kmeans.skipped);
  result->techniques.push_back(technique);
  result->notes.push_back(absl::StrFormat(
      "step %d quantize: %d layers, %s (%d centroids per %s codebook, at most %d Lloyd iterations%s), %d bytes "
      "packed",
      index, result->layers.size(), technique, 1 << step.kmeans->bits,
      step.kmeans->per_row_codebook ? "output-channel" : "layer", step.kmeans->max_iterations,
      step.kmeans->activation_weighted ? ", weighted by calibration x^2" : "", kmeans.storage_bytes));
  return absl::OkStatus();
}

// Mixed precision (QuantizeStep::mixed): sensitivities, the exact plan under
// the budget, then per-channel RTN (asymmetric when the sensitivity options
// say so, the same format the plan was sized and scored with) of each layer
// at its width.
absl::Status ApplyMixed(const Graph& original, const QuantizeStep& step, const RecipeInputs& inputs, size_t index,
                        const StepProgressFn& progress, RecipeResult* result) {
  const MixedPrecisionOptions& mixed = *step.mixed;
  if (result->graph.outputs.empty()) return absl::InvalidArgumentError("mixed_precision: the model has no output");
  if (progress && !progress("quantize sensitivity", 0, 1)) return absl::CancelledError("cancelled");
  SQ_ASSIGN_OR_RETURN(std::vector<prune::LabeledBatch> labeled, LabeledCalibration(original, inputs));
  std::vector<quant::mixed::LossBatch> batches;
  for (prune::LabeledBatch& batch : labeled) batches.push_back({std::move(batch.feeds), std::move(batch.labels)});
  quant::mixed::SensitivityOptions sensitivity = mixed.sensitivity;
  sensitivity.logits = result->graph.outputs.front().name;
  SQ_ASSIGN_OR_RETURN(std::vector<quant::mixed::LayerSensitivity> layers,
                      quant::mixed::MeasureSensitivity(result->graph, batches, sensitivity));
  // A Hutchinson trace <= 0 is noise of the finite-difference Hessian-vector
  // products (ReLU and max-pool patterns flip; on the Fashion-MNIST CNN the
  // conv layers' estimates changed sign with the seed even at 64 probes),
  // and the allocator would read it as "free to quantize". Then the whole
  // plan uses the Fisher estimate instead, and the notes say so.
  std::string fallback;
  if (sensitivity.estimator == quant::mixed::CurvatureEstimator::kHutchinson) {
    std::vector<std::string> unresolved;
    for (const auto& layer : layers) {
      if (!(layer.trace > 0)) unresolved.push_back(absl::StrFormat("%s %.3g", layer.layer.name, layer.trace));
    }
    if (!unresolved.empty()) {
      fallback = absl::StrCat("; the Hessian trace estimate was <= 0 for ", absl::StrJoin(unresolved, ", "),
                              " (", sensitivity.probes, " probes), so the plan uses the Fisher estimate");
      sensitivity.estimator = quant::mixed::CurvatureEstimator::kFisher;
      SQ_ASSIGN_OR_RETURN(layers, quant::mixed::MeasureSensitivity(result->graph, batches, sensitivity));
    }
  }
  int64_t params = 0;
  for (const auto& layer : layers) params += layer.params;
  const int64_t budget_bits = mixed.max_bytes > 0 ? mixed.max_bytes * 8
                                                  : static_cast<int64_t>(std::floor(mixed.average_bits * params));
  absl::StatusOr<quant::mixed::MixedPlan> plan = quant::mixed::PlanMixedPrecision(layers, budget_bits);
  if (!plan.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("mixed_precision: the budget of ", budget_bits, " bits (",
                                                   static_cast<double>(budget_bits) / params,
                                                   " per weight) fits no plan: ", plan.status().message()));
  }
  std::vector<std::string> chosen;
  for (const quant::mixed::LayerPlan& layer : plan->layers) chosen.push_back(absl::StrCat(layer.name, "=", layer.bits, "b"));
  const std::string plan_text =
      absl::StrFormat("%s (%.3f bits per weight, %s optimum)", absl::StrJoin(chosen, " "), plan->AverageBits(),
                      plan->exact ? "exact" : "near-exact");
  if (progress && !progress(absl::StrCat("quantize plan: ", plan_text), 1, 1)) return absl::CancelledError("cancelled");

  Graph quantized = result->graph;
  const int64_t total = static_cast<int64_t>(plan->layers.size());
  for (int64_t i = 0; i < total; ++i) {
    const quant::mixed::LayerPlan& planned = plan->layers[i];
    auto it = std::find_if(layers.begin(), layers.end(),
                           [&](const quant::mixed::LayerSensitivity& s) { return s.layer.name == planned.name; });
    if (it == layers.end()) return absl::InternalError(absl::StrCat("mixed_precision: no layer ", planned.name));
    const quant::ptq::QuantizableLayer& layer = it->layer;
    model::LinearLayer linear = LinearOf(result->graph, layer);
    std::string technique;
    if (planned.bits == 16) {
      quant::CastQuantize(quant::FloatFormat::kFloat16, &linear.weight);
      quant::ptq::SetWeightMatrix(&quantized, layer, linear.weight);
      WeightFormat& format = result->formats[layer.weight];
      format.weight_bits = 16;
      format.stored_bytes = layer.out * layer.in * 2 + static_cast<int64_t>(linear.bias.size()) * 4;
      technique = "mixed fp16";
    } else {
      const quant::RtnOptions format{planned.bits, 0, sensitivity.asymmetric};
      SQ_ASSIGN_OR_RETURN(quant::QuantizedLinear packed, quant::QuantizeRtn(linear, format));
      std::vector<float> dequantized(layer.out * layer.in);
      SQ_RETURN_IF_ERROR(quant::DequantizeRtn(packed, dequantized.data()));
      quant::ptq::SetWeightMatrix(&quantized, layer, dequantized);
      AddPacked(layer.weight, packed, 32, result);
      technique = absl::StrCat("mixed rtn ", format.TechniqueName());
    }
    result->layers.push_back(ReportLayer(layer, technique, planned.bits, result->graph, quantized));
    if (progress && !progress("quantize", i + 1, total)) return absl::CancelledError("cancelled");
  }
  result->graph = std::move(quantized);
  const std::string label = mixed.max_bytes > 0 ? absl::StrCat("mixed ", mixed.max_bytes, " bytes")
                                                : absl::StrFormat("mixed %.3g bits", mixed.average_bits);
  std::string estimator, per_layer;
  std::vector<std::string> values;
  switch (sensitivity.estimator) {
    case quant::mixed::CurvatureEstimator::kHutchinson:
    case quant::mixed::CurvatureEstimator::kFisher: {
      const bool fisher = sensitivity.estimator == quant::mixed::CurvatureEstimator::kFisher;
      estimator = fisher ? "fisher" : "hessian";
      per_layer = absl::StrCat(fisher ? "Fisher" : "Hessian", " trace per layer");
      for (const quant::mixed::LayerSensitivity& layer : layers) {
        values.push_back(absl::StrFormat("%s %.3g", layer.layer.name, layer.trace));
      }
      break;
    }
    case quant::mixed::CurvatureEstimator::kQuadraticForm:
    case quant::mixed::CurvatureEstimator::kMeasuredLoss: {
      // These leave the trace 0: report each layer's own predicted increase
      // at its planned width instead.
      const bool measured = sensitivity.estimator == quant::mixed::CurvatureEstimator::kMeasuredLoss;
      estimator = measured ? "measured" : "quadratic";
      per_layer = measured ? "measured loss increase per layer at its width (that layer alone quantized)"
                           : "quadratic-form loss increase per layer at its width";
      for (const quant::mixed::LayerPlan& layer : plan->layers) {
        values.push_back(absl::StrFormat("%s %db %.3g", layer.name, layer.bits, layer.predicted));
      }
      break;
    }
  }
  result->techniques.push_back(absl::StrCat(label, " ", estimator, sensitivity.asymmetric ? " asym" : ""));
  result->notes.push_back(absl::StrCat("step ", index, " quantize: mixed-precision plan ", plan_text,
                                       sensitivity.asymmetric ? ", asymmetric (uint8 zero point per channel)" : "",
                                       ", predicted loss increase ", plan->predicted, "; ", per_layer, ": ",
                                       absl::StrJoin(values, ", "), fallback));
  return absl::OkStatus();
}

// Quantization-aware training (QatStep) on labelled calibration batches.
absl::Status ApplyQat(const Graph& original, const QatStep& step, const RecipeInputs& inputs, size_t index,
                      const StepProgressFn& progress, RecipeResult* result) {
  if (!inputs.examples->labels) {
    return absl::InvalidArgumentError(
        "the calibration dataset has no \"labels\"; quantization-aware training needs one integer class per "
        "example");
  }
  auto batches = [&](int64_t s) -> absl::StatusOr<quant::qat::QatBatch> {
    const std::vector<int64_t> indices = BatchIndices(inputs, s, step.batch_size);
    quant::qat::QatBatch batch;
    SQ_ASSIGN_OR_RETURN(Tensor feed, FeedFor(inputs, indices));
    SQ_ASSIGN_OR_RETURN(batch.labels, LabelsFor(inputs, indices, original, feed));
    batch.feeds[inputs.input_name] = std::move(feed);
    return batch;
  };
  const quant::qat::QatOptions& options = step.options;
  SQ_ASSIGN_OR_RETURN(quant::ptq::LayerScan scan, quant::ptq::FindQuantizableLayers(result->graph));
  SQ_ASSIGN_OR_RETURN(quant::qat::QatResult qat,
                      quant::qat::TrainQuantizationAware(result->graph, *inputs.batches, batches, options,
                                                         [&](const quant::qat::QatStep& s) {
                                                           return !progress || progress("qat", s.step + 1, options.steps);
                                                         }));
  const std::string technique = absl::StrCat("qat w", options.weight_bits, "a8 lsq ", options.steps, " steps",
                                             options.distillation ? " + distill" : "");
  for (const quant::ptq::QuantizableLayer& layer : scan.layers) {
    auto packed = qat.packed.find(layer.weight);
    if (packed == qat.packed.end()) continue;
    AddPacked(layer.weight, packed->second, 8, result);
    result->layers.push_back(ReportLayer(layer, technique, options.weight_bits, result->graph, qat.graph));
  }
  result->graph = std::move(qat.graph);
  result->techniques.push_back(technique);
  const double first = qat.history.empty() ? 0 : qat.history.front().loss;
  const double last = qat.history.empty() ? 0 : qat.history.back().loss;
  result->notes.push_back(absl::StrFormat(
      "step %d qat: %d layers W%dA8, %d steps (ramp, learn, frozen scales), batch %d, lr %g, scale lr %g%s, loss "
      "%.4g -> %.4g",
      index, result->layers.size(), options.weight_bits, options.steps, step.batch_size, options.learning_rate,
      options.scale_learning_rate,
      options.distillation ? absl::StrFormat(", distilled from the float model (T %g, KL weight %g)",
                                             options.distillation->temperature, options.distillation->weight)
                           : "",
      first, last));
  return absl::OkStatus();
}

// Float casts (QuantizeStep::cast): each quantizable layer's weight
// initializer rounded to the format element-wise, in its own layout.
absl::Status ApplyCast(quant::FloatFormat cast, size_t index, const StepProgressFn& progress,
                       RecipeResult* result) {
  SQ_ASSIGN_OR_RETURN(quant::ptq::LayerScan scan, quant::ptq::FindQuantizableLayers(result->graph));
  if (scan.layers.empty()) return absl::InvalidArgumentError("model has no quantizable layer");
  const std::string technique = absl::StrCat("cast ", quant::FloatFormatName(cast));
  const int bits = quant::FloatFormatBits(cast);
  Graph cast_graph = result->graph;
  int64_t stored_bytes = 0;
  const int64_t total = static_cast<int64_t>(scan.layers.size());
  for (int64_t i = 0; i < total; ++i) {
    const quant::ptq::QuantizableLayer& layer = scan.layers[i];
    Tensor& weight = cast_graph.initializers.at(layer.weight);
    if (weight.dtype() != graph::DataType::kFloat32) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", layer.name, ": weight ", layer.weight, " is ",
                                                     graph::DataTypeName(weight.dtype()), ", the cast needs float32"));
    }
    std::vector<float> values = weight.ToFloats();
    quant::CastQuantize(cast, &values);
    weight = Tensor::FromVector<float>(graph::DataType::kFloat32, weight.shape(), values);
    // As the other formats count it: the stored weights plus the float bias.
    WeightFormat& format = result->formats[layer.weight];
    format.weight_bits = bits;
    format.stored_bytes = static_cast<int64_t>(values.size()) * bits / 8 +
                          (layer.bias.empty() ? 0 : result->graph.initializers.at(layer.bias).byte_size());
    stored_bytes += static_cast<int64_t>(values.size()) * bits / 8;
    result->casts[layer.weight] = cast;
    result->layers.push_back(ReportLayer(layer, technique, bits, result->graph, cast_graph));
    if (progress && !progress("quantize", i + 1, total)) return absl::CancelledError("cancelled");
  }
  result->graph = std::move(cast_graph);
  result->skipped = std::move(scan.skipped);
  result->techniques.push_back(technique);
  result->notes.push_back(absl::StrFormat(
      "step %d quantize: %d layers, %s weight-only (%d bits per weight, %d bytes stored); the runtime multiplies "
      "the decoded float32 weights",
      index, result->layers.size(), technique, bits, stored_bytes));
  return absl::OkStatus();
}

absl::Status ApplyQuantize(const QuantizeStep& step, const RecipeInputs& inputs, size_t index,
                           const StepProgressFn& progress, RecipeResult* result) {
  SQ_ASSIGN_OR_RETURN(quant::ptq::LayerScan scan, quant::ptq::FindQuantizableLayers(result->graph));
  std::map<std::string, std::string> weight_of;  // layer name -> weight initializer
  for (const auto& layer : scan.layers) weight_of[layer.name] = layer.weight;
  absl::StatusOr<quant::ptq::PtqResult> ptq =
      quant::ptq::QuantizeGraph(result->graph, *inputs.batches, step.ptq, [&](int i, int n) {
        return !progress || progress("quantize", i + 1, n);
      });
  if (!ptq.ok()) return ptq.status();
  if (ptq->layers.empty()) return absl::InvalidArgumentError("model has no quantizable layer");
  if (step.per_tensor) {
    SQ_RETURN_IF_ERROR(UsePerTensorScales(result->graph, step.ptq.weights->format, scan.layers, &*ptq));
  }
  const int activation_bits = step.ptq.activations ? 8 : 32;
  for (const quant::QuantizedLinear& linear : ptq->packed) {
    AddPacked(weight_of.at(linear.name), linear, activation_bits, result);
  }
  result->graph = std::move(ptq->graph);
  result->layers = std::move(ptq->layers);
  result->skipped = std::move(ptq->skipped);
  result->techniques.push_back(result->layers.front().technique);
  result->notes.push_back(absl::StrCat("step ", index, " quantize: ", result->layers.size(), " layers, ",
                                       result->layers.front().technique, "; ", result->skipped.size(),
                                       " matrix nodes left in float"));
  return absl::OkStatus();
}

}  // namespace

RecoveryOptions DefaultRecovery(int64_t steps, bool language_model) {
  RecoveryOptions recovery;
  recovery.steps = steps;
  recovery.batch_size = language_model ? 4 : 32;
  recovery.learning_rate = 5e-4;
  return recovery;
}

std::string StepStage(const RecipeStep& step) {
  struct Visitor {
    std::string operator()(const QuantizeStep&) const { return "quantize"; }
    std::string operator()(const PruneStep&) const { return "prune"; }
    std::string operator()(const LowRankStep&) const { return "low_rank"; }
    std::string operator()(const DistillStep&) const { return "distill"; }
    std::string operator()(const QatStep&) const { return "qat"; }
  };
  return std::visit(Visitor{}, step);
}

absl::Status ValidateRecipe(const Recipe& recipe) {
  if (recipe.steps.empty()) return absl::InvalidArgumentError("recipe has no step");
  bool pruned_weights = false;
  for (size_t i = 0; i < recipe.steps.size(); ++i) {
    if (std::holds_alternative<QatStep>(recipe.steps[i]) && i + 1 != recipe.steps.size()) {
      return absl::InvalidArgumentError(absl::StrCat("step ", i, " (qat) must be the last step; ",
                                                     recipe.steps.size() - 1 - i, " steps follow it"));
    }
    if (std::holds_alternative<QatStep>(recipe.steps[i]) && pruned_weights) {
      return absl::InvalidArgumentError(absl::StrCat(
          "step ", i, " (qat): training after unstructured or N:M pruning would make the pruned weights nonzero"));
    }
    if (const auto* quantize = std::get_if<QuantizeStep>(&recipe.steps[i])) {
      if (quantize->cast && (quantize->kmeans || quantize->mixed || quantize->per_tensor || quantize->ptq.activations ||
                             quantize->ptq.smoothquant)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "step ", i, " (quantize): a ", quant::FloatFormatName(*quantize->cast),
            " cast is weight-only and excludes kmeans, mixed precision, per-tensor scales and activation quantization"));
      }
      if (quantize->kmeans && quantize->mixed) {
        return absl::InvalidArgumentError(absl::StrCat("step ", i, " (quantize): kmeans and mixed precision exclude each other"));
      }
      if (quantize->per_tensor && (quantize->mixed || quantize->ptq.smoothquant ||
                                   (quantize->ptq.weights && (quantize->ptq.weights->method != quant::ptq::WeightMethod::kRtn ||
                                                              quantize->ptq.weights->bias_correction)))) {
        return absl::InvalidArgumentError(absl::StrCat(
            "step ", i, " (quantize): per-tensor scales need RTN without bias correction or SmoothQuant"));
      }
      if (i + 1 != recipe.steps.size()) {
        return absl::InvalidArgumentError(absl::StrCat("step ", i, " (quantize) must be the last step; ",
                                                       recipe.steps.size() - 1 - i, " steps follow it"));
      }
      if (pruned_weights && quantize->ptq.weights &&
          quantize->ptq.weights->method == quant::ptq::WeightMethod::kGptq) {
        return absl::InvalidArgumentError(absl::StrCat(
            "step ", i, " (quantize): GPTQ after unstructured or N:M pruning would refill the pruned weights; "
            "use RTN or AWQ"));
      }
    }
    if (const auto* prune = std::get_if<PruneStep>(&recipe.steps[i])) pruned_weights |= !prune->channels;
  }
  return absl::OkStatus();
}

absl::StatusOr<RecipeResult> ApplyRecipe(const graph::Graph& graph, const Recipe& recipe,
                                         const RecipeInputs& inputs, const StepProgressFn& progress) {
  SQ_RETURN_IF_ERROR(ValidateRecipe(recipe));
  RecipeResult result;
  result.graph = graph;
  for (size_t i = 0; i < recipe.steps.size(); ++i) {
    const std::string stage = StepStage(recipe.steps[i]);
    absl::Status status;
    if (const auto* quantize = std::get_if<QuantizeStep>(&recipe.steps[i])) {
      if (quantize->cast) {
        status = ApplyCast(*quantize->cast, i, progress, &result);
      } else if (quantize->kmeans) {
        status = ApplyKmeans(*quantize, inputs, i, progress, &result);
      } else if (quantize->mixed) {
        status = ApplyMixed(graph, *quantize, inputs, i, progress, &result);
      } else {
        status = ApplyQuantize(*quantize, inputs, i, progress, &result);
      }
    } else if (const auto* qat = std::get_if<QatStep>(&recipe.steps[i])) {
      status = ApplyQat(graph, *qat, inputs, i, progress, &result);
    } else if (const auto* prune = std::get_if<PruneStep>(&recipe.steps[i])) {
      status = ApplyPrune(graph, *prune, inputs, i, progress, &result);
    } else if (const auto* low_rank = std::get_if<LowRankStep>(&recipe.steps[i])) {
      status = ApplyLowRank(graph, *low_rank, inputs, i, progress, &result);
    } else if (const auto* distill_step = std::get_if<DistillStep>(&recipe.steps[i])) {
      status = Recover(graph, distill_step->recovery, inputs, "distill", progress, /*keep_zeros=*/result.nm_m > 0,
                       &result.graph, &result.notes);
      if (status.ok()) {
        result.techniques.push_back(absl::StrCat(
            "distill ", distill_step->recovery.steps, " steps",
            distill_step->recovery.lora_rank > 0 ? absl::StrCat(" (LoRA r", distill_step->recovery.lora_rank, ")") : ""));
      }
    }
    if (!status.ok()) {
      if (status.code() == absl::StatusCode::kCancelled) return status;
      return StepError(i, stage, status);
    }
  }
  if (result.nm_m > 0) {
    Graph runtime_graph = result.graph;
    SQ_ASSIGN_OR_RETURN(std::vector<std::string> rewritten,
                        prune::UseNmSparseKernels(&runtime_graph, result.nm_n, result.nm_m));
    if (!rewritten.empty()) {
      result.runtime_graph = std::move(runtime_graph);
      result.notes.push_back(absl::StrCat("runtime: ", rewritten.size(), " layers run the ", result.nm_n, ":",
                                          result.nm_m, " sparse kernel from the compressed form"));
    }
  }
  return result;
}

}  // namespace squeeze::core::compress
