// A recipe: an ordered list of compression steps applied to a graph, each a
// technique of core/ with typed options. The service's v1.Recipe maps onto
// this one pass for one step (server/job_spec_validation.h).
//
// Rules checked by ValidateRecipe: at most one quantize or QAT step, and it
// comes last (it writes the packed weights the export needs); GPTQ after
// unstructured or N:M pruning is refused because its error compensation
// refills pruned weights (RTN and AWQ keep zeros at zero), and so is QAT,
// which trains them.
#ifndef SQUEEZE_CORE_COMPRESS_RECIPE_H_
#define SQUEEZE_CORE_COMPRESS_RECIPE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "core/data/dataset.h"
#include "core/graph/graph.h"
#include "core/lowrank/lowrank.h"
#include "core/prune/structured.h"
#include "core/prune/unstructured.h"
#include "core/quant/codebook/kmeans_codebook.h"
#include "core/quant/mixed/mixed_precision.h"
#include "core/quant/ptq/ptq.h"
#include "core/quant/qat/qat.h"
#include "core/quant/rtn.h"

namespace squeeze::core::compress {

// Mixed precision (core/quant/mixed): per-layer sensitivity, then the
// exact bit allocator under a budget of average_bits per weight or
// max_bytes (exactly one > 0); each layer then gets per-channel RTN at its
// width (fp16 for 16), asymmetric with a uint8 zero point per channel when
// sensitivity.asymmetric, else symmetric. The loss is the cross-entropy of the
// graph's first output against the calibration labels, or the float
// model's own top-1 when the dataset has none.
struct MixedPrecisionOptions {
  quant::mixed::SensitivityOptions sensitivity;
  double average_bits = 0;
  int64_t max_bytes = 0;
};

// Weight quantization. `ptq` always holds the weight format and the
// activation options; `kmeans` or `mixed` replace its weight method, and
// `per_tensor` (RTN only, no bias correction) its per-channel scales by one
// scale per tensor. `cast` replaces all of them: every quantizable layer's
// float32 weight initializer is rounded to the float format in place
// (quant::CastQuantize; weight-only, no calibration).
struct QuantizeStep {
  quant::ptq::PtqOptions ptq;
  bool per_tensor = false;
  std::optional<quant::codebook::KmeansOptions> kmeans;
  std::optional<MixedPrecisionOptions> mixed;
  std::optional<quant::FloatFormat> cast;
};

// Quantization-aware training (core/quant/qat) on batches of batch_size
// labelled calibration examples (FAILED without labels: INVALID_ARGUMENT).
struct QatStep {
  quant::qat::QatOptions options;
  int64_t batch_size = 32;
};

// Output distillation from the original model (core/distill's output
// stage): KL on temperature-softened logits plus hard_label_weight x the
// cross-entropy when the calibration examples have labels. Batches are
// drawn from the calibration examples with the recipe's seed.
struct RecoveryOptions {
  int64_t steps = 0;  // 0: no recovery
  int64_t batch_size = 32;
  double learning_rate = 1e-4;
  double temperature = 4.0;
  double hard_label_weight = 0.5;
  // > 0: train rank-`lora_rank` LoRA adapters (core/lora, alpha = 2 x rank)
  // on the Gemm/MatMul layers instead of every weight, then merge them into
  // the weights (keeping N:M-pruned zeros at zero).
  int64_t lora_rank = 0;
};

// The recovery used when only a step count is given (service passes and the
// search): language models train on [T, vocab] logits per example, so they
// take batches of 4 windows instead of 32 images.
RecoveryOptions DefaultRecovery(int64_t steps, bool language_model);

// Unstructured or N:M pruning (core/prune/unstructured.h), or, with
// `channels`, structured pruning that removes whole units
// (core/prune/structured.h); then optional recovery.
struct PruneStep {
  bool channels = false;
  prune::PruneOptions unstructured;  // when !channels
  prune::StructuredOptions structured;  // when channels
  RecoveryOptions recovery;
};

// Low-rank factorization (core/lowrank), then optional recovery; the rank
// scales are folded into the factors before export.
struct LowRankStep {
  lowrank::LowRankOptions options;
  RecoveryOptions recovery;
};

// Distillation of the current model from the original (recovery alone).
struct DistillStep {
  RecoveryOptions recovery;
};

using RecipeStep = std::variant<QuantizeStep, PruneStep, LowRankStep, DistillStep, QatStep>;

struct Recipe {
  std::vector<RecipeStep> steps;
};

// "quantize", ...: the stage name a step reports progress under.
std::string StepStage(const RecipeStep& step);

absl::Status ValidateRecipe(const Recipe& recipe);

// How one weight is stored and multiplied once the recipe ran, for the
// energy model and the roofline.
struct WeightFormat {
  int weight_bits = 32;
  int activation_bits = 32;
  bool sparse_2_4 = false;
  int64_t stored_bytes = 0;  // 0: out * in * 4
};

// What a recipe produced. `graph` runs in our runtime (quantized weights as
// their dequantized floats, activation QDQ pairs); `packed` holds the
// quantized weights by weight initializer for the QDQ export.
struct RecipeResult {
  graph::Graph graph;
  // `graph` with N:M layers rewritten for the sparse kernels (runtime only;
  // never exported), when a step left N:M sparsity; else empty.
  std::optional<graph::Graph> runtime_graph;
  int nm_n = 0, nm_m = 0;
  std::map<std::string, quant::QuantizedLinear> packed;
  // k-means codebook weights by weight initializer (exported as indices
  // plus codebook, see GraphSession::Build); `graph` holds codebook[index].
  std::map<std::string, quant::gemm::CodebookLinear> codebooks;
  // Float-cast weights by weight initializer (exported as float16 /
  // bfloat16 initializers or fp8 codes, see GraphSession::Build); `graph`
  // holds their decoded float32 values.
  std::map<std::string, quant::FloatFormat> casts;
  std::map<std::string, WeightFormat> formats;  // by weight initializer
  std::vector<quant::ptq::LayerReport> layers;
  std::vector<quant::ptq::SkippedNode> skipped;
  std::vector<std::string> techniques;  // one short label per step
  std::vector<std::string> notes;       // one line per step
};

// What the steps may use besides the graph: the calibration batches (a
// feed per graph input) and, for training steps, the calibration examples
// with their labels when the dataset has them.
struct RecipeInputs {
  const std::vector<quant::ptq::CalibrationBatch>* batches = nullptr;
  const data::Dataset* examples = nullptr;
  std::string input_name;
  uint64_t seed = 0;
};

using StepProgressFn = std::function<bool(const std::string& stage, int64_t step, int64_t total)>;

// Applies every step of `recipe` to `graph` in order. Errors name the step
// ("step 1 (prune): ...") and keep the technique's message, which names the
// layer; CANCELLED when `progress` returns false.
absl::StatusOr<RecipeResult> ApplyRecipe(const graph::Graph& graph, const Recipe& recipe,
                                         const RecipeInputs& inputs, const StepProgressFn& progress);

}  // namespace squeeze::core::compress

#endif  // SQUEEZE_CORE_COMPRESS_RECIPE_H_
