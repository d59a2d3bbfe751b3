// The service's recipes (v1.Recipe, one pass per technique) and the core
// library's (core/compress/recipe.h), both ways, and device profiles as the
// core library sees them. Worker-side: it links the technique libraries.
//
// Passes that depend on the target device are resolved here:
//   - QuantizePass.per_device: int4 weights where the device runs int4
//     (GPTQ, groups of the largest of 128/64/32 dividing every layer, or
//     per channel; RTN when pruning came first), else static W8A8 (RTN,
//     min-max) where it runs int8, else no quantization;
//   - PrunePass.per_device: kept on devices with hardware 2:4 (where
//     CoreRecipe leaves dense the layers whose width 4 does not divide),
//     dropped elsewhere.
// A variant's manifest records the job's own recipe with the variant's one
// device as target, so re-running it resolves the same way.
#ifndef SQUEEZE_WORKER_RECIPE_MAPPING_H_
#define SQUEEZE_WORKER_RECIPE_MAPPING_H_

#include "absl/status/statusor.h"
#include "core/compress/graph_variant_builder.h"
#include "core/compress/recipe.h"
#include "core/quant/ptq/layers.h"
#include "squeeze/v1/squeeze.pb.h"

namespace squeeze::worker {

// Roofline figures and energy model of a profile.
core::compress::TargetDevice TargetFromProfile(const v1::DeviceProfile& profile, const std::string& name,
                                               bool present);

// `recipe` with its per-device passes resolved for `profile`. A search pass
// is returned unchanged.
v1::Recipe ResolveForDevice(const v1::Recipe& recipe, const v1::DeviceProfile& profile,
                            const core::quant::ptq::LayerScan& scan);

// A resolved recipe (no search pass) as core steps; `scan` is the model's
// layers. INVALID_ARGUMENT for a pass core cannot run (qat, search).
absl::StatusOr<core::compress::Recipe> CoreRecipe(const v1::Recipe& recipe, bool language_model,
                                                  const core::quant::ptq::LayerScan& scan);

// The inverse of CoreRecipe for the steps the search generates (manifests
// of search variants).
v1::Recipe PassesFromRecipe(const core::compress::Recipe& recipe);

}  // namespace squeeze::worker

#endif  // SQUEEZE_WORKER_RECIPE_MAPPING_H_
