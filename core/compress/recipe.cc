#include "core/compress/recipe.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/distill/distill.h"
#include "core/kernels/backends.h"
#include "core/lora/lora.h"
#include "core/prune/nm_sparse.h"
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
  const int activation_bits = step.ptq.activations ? 8 : 32;
  for (const quant::QuantizedLinear& linear : ptq->packed) {
    const std::string& weight = weight_of.at(linear.name);
    WeightFormat& format = result->formats[weight];
    format.weight_bits = linear.bits;
    format.activation_bits = activation_bits;
    format.stored_bytes = linear.StorageBytes();
    result->packed[weight] = linear;
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
  };
  return std::visit(Visitor{}, step);
}

absl::Status ValidateRecipe(const Recipe& recipe) {
  if (recipe.steps.empty()) return absl::InvalidArgumentError("recipe has no step");
  bool pruned_weights = false;
  for (size_t i = 0; i < recipe.steps.size(); ++i) {
    if (const auto* quantize = std::get_if<QuantizeStep>(&recipe.steps[i])) {
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
      status = ApplyQuantize(*quantize, inputs, i, progress, &result);
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
