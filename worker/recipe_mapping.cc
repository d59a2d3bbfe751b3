#include "worker/recipe_mapping.h"

#include "absl/strings/str_cat.h"
#include "core/compress/search.h"
#include "server/job_spec_validation.h"

namespace squeeze::worker {
namespace {

namespace compress = core::compress;
namespace ptq = core::quant::ptq;

bool Runs(const v1::DeviceProfile& profile, const std::string& format) {
  for (const auto& f : profile.formats()) {
    if (f.format() == format) return true;
  }
  return false;
}

}  // namespace

compress::QuantizeStep QuantizeStepFromPass(const v1::QuantizePass& pass) {
  compress::QuantizeStep step;
  step.ptq = server::PtqOptionsFromPass(pass);
  switch (pass.float_format()) {
    case v1::QuantizePass::FP16: step.cast = core::quant::FloatFormat::kFloat16; break;
    case v1::QuantizePass::BF16: step.cast = core::quant::FloatFormat::kBFloat16; break;
    case v1::QuantizePass::FP8_E4M3: step.cast = core::quant::FloatFormat::kFp8E4M3; break;
    case v1::QuantizePass::FP8_E5M2: step.cast = core::quant::FloatFormat::kFp8E5M2; break;
    default: break;  // integer quantization
  }
  if (pass.method() == v1::QuantizePass::KMEANS) {
    core::quant::codebook::KmeansOptions kmeans;
    kmeans.bits = pass.bits();
    kmeans.per_row_codebook = pass.granularity() != v1::QuantizePass::PER_TENSOR;
    if (pass.kmeans_iterations() > 0) kmeans.max_iterations = pass.kmeans_iterations();
    step.kmeans = kmeans;
  } else if (pass.granularity() == v1::QuantizePass::PER_TENSOR) {
    step.per_tensor = true;
  }
  if (pass.has_mixed_precision()) {
    const v1::MixedPrecision& m = pass.mixed_precision();
    compress::MixedPrecisionOptions mixed;
    mixed.average_bits = m.average_bits();
    mixed.max_bytes = m.max_bytes();
    switch (m.sensitivity()) {
      case v1::MixedPrecision::HESSIAN:
        mixed.sensitivity.estimator = core::quant::mixed::CurvatureEstimator::kHutchinson;
        break;
      case v1::MixedPrecision::FISHER:
        mixed.sensitivity.estimator = core::quant::mixed::CurvatureEstimator::kFisher;
        break;
      default:  // MEASURED or unset
        mixed.sensitivity.estimator = core::quant::mixed::CurvatureEstimator::kMeasuredLoss;
        break;
    }
    mixed.sensitivity.asymmetric = pass.asymmetric();
    mixed.sensitivity.candidate_bits = m.candidate_bits().empty()
                                           ? std::vector<int>{2, 3, 4, 8}
                                           : std::vector<int>(m.candidate_bits().begin(), m.candidate_bits().end());
    if (m.probes() > 0) mixed.sensitivity.probes = m.probes();
    // Hessian-vector products by central differences with steps of 1e-3 x
    // each layer's weight RMS: at core's 1e-2 the trace estimate of the
    // Fashion-MNIST CNN's large Gemm came out negative (-173; ReLU patterns
    // flip), at 1e-3 and 1e-4 positive (tests/quant_service_test.cc).
    mixed.sensitivity.relative_step = 1e-3;
    step.mixed = mixed;
  }
  return step;
}

compress::TargetDevice TargetFromProfile(const v1::DeviceProfile& profile, const std::string& name, bool present) {
  compress::TargetDevice device;
  device.name = name;
  device.present = present;
  core::eval::DeviceRoofline& roofline = device.roofline;
  roofline.name = profile.name();
  roofline.kind = profile.kind();
  for (const auto& format : profile.formats()) roofline.peak_ops_per_second[format.format()] = format.peak_ops_per_second();
  roofline.memory_bandwidth_bytes_per_second = profile.memory_bandwidth_bytes_per_second();
  roofline.idle_power_watts = profile.idle_power_watts();
  roofline.sparse_2_4 = profile.sparse_2_4();
  for (const auto& [format, pj] : profile.pj_per_mac()) {
    roofline.pj_per_mac[format] = pj;
    device.energy_model.pj_per_mac[format] = pj;
  }
  roofline.pj_per_byte = profile.pj_per_byte();
  device.energy_model.pj_per_byte = profile.pj_per_byte();
  device.energy_model.source = absl::StrCat("device profile ", profile.name(), " (docs/energy.md)");
  return device;
}

v1::Recipe ResolveForDevice(const v1::Recipe& recipe, const v1::DeviceProfile& profile,
                            const ptq::LayerScan& scan) {
  v1::Recipe resolved;
  bool pruned = false;
  for (const v1::Pass& pass : recipe.passes()) {
    if (pass.has_prune() && pass.prune().per_device()) {
      if (!profile.sparse_2_4()) continue;
      *resolved.add_passes() = pass;  // per_device stays set: CoreRecipe skips layers 2:4 does not fit.
      pruned = true;
      continue;
    }
    if (pass.has_prune() && pass.prune().structure() != v1::PrunePass::CHANNELS) pruned = true;
    if (pass.has_quantize() && pass.quantize().per_device()) {
      v1::QuantizePass q = pass.quantize();
      q.set_per_device(false);
      if (Runs(profile, "int4")) {
        q.set_bits(4);
        q.set_activation_bits(0);
        const int group = compress::GroupSizeFor(scan);
        q.set_granularity(group > 0 ? v1::QuantizePass::PER_GROUP : v1::QuantizePass::PER_CHANNEL);
        q.set_group_size(group);
        q.set_method(pruned ? v1::QuantizePass::RTN : v1::QuantizePass::GPTQ);
      } else if (Runs(profile, "int8")) {
        q.set_bits(8);
        q.set_activation_bits(8);
        q.set_granularity(v1::QuantizePass::PER_CHANNEL);
        q.set_group_size(0);
        q.set_method(v1::QuantizePass::RTN);
        q.set_observer(v1::QuantizePass::MIN_MAX);
      } else {
        continue;  // The device runs no integer format: the model stays float.
      }
      *resolved.add_passes()->mutable_quantize() = q;
      continue;
    }
    *resolved.add_passes() = pass;
  }
  return resolved;
}

absl::StatusOr<compress::Recipe> CoreRecipe(const v1::Recipe& recipe, bool language_model,
                                            const ptq::LayerScan& scan) {
  compress::Recipe core_recipe;
  for (int i = 0; i < recipe.passes_size(); ++i) {
    const v1::Pass& pass = recipe.passes(i);
    switch (pass.technique_case()) {
      case v1::Pass::kQuantize:
        core_recipe.steps.push_back(QuantizeStepFromPass(pass.quantize()));
        break;
      case v1::Pass::kQat: {
        const v1::QatPass& q = pass.qat();
        compress::QatStep step;
        step.options.steps = q.steps();
        step.options.weight_bits = q.weight_bits() == 0 ? 4 : q.weight_bits();
        if (q.learning_rate() > 0) step.options.learning_rate = q.learning_rate();
        if (q.scale_learning_rate() > 0) step.options.scale_learning_rate = q.scale_learning_rate();
        if (q.batch_size() > 0) step.batch_size = q.batch_size();
        if (q.distill_from_float()) {
          core::quant::qat::Distillation distillation;
          if (q.distill_temperature() > 0) distillation.temperature = q.distill_temperature();
          if (q.distill_weight() > 0) distillation.weight = q.distill_weight();
          step.options.distillation = distillation;
        }
        core_recipe.steps.push_back(step);
        break;
      }
      case v1::Pass::kPrune: {
        const v1::PrunePass& p = pass.prune();
        compress::PruneStep step;
        step.recovery = compress::DefaultRecovery(p.recovery_steps(), language_model);
        if (p.structure() == v1::PrunePass::CHANNELS) {
          step.channels = true;
          step.structured.target = p.sparsity();
          switch (p.criterion()) {
            case v1::PrunePass::L1: step.structured.score = core::prune::StructuredScore::kL1; break;
            case v1::PrunePass::L2: step.structured.score = core::prune::StructuredScore::kL2; break;
            case v1::PrunePass::TAYLOR: step.structured.score = core::prune::StructuredScore::kTaylor; break;
            default: step.structured.score = core::prune::StructuredScore::kCombined;
          }
        } else {
          switch (p.method()) {
            case v1::PrunePass::WANDA: step.unstructured.method = core::prune::PruneMethod::kWanda; break;
            case v1::PrunePass::SPARSEGPT: step.unstructured.method = core::prune::PruneMethod::kSparseGpt; break;
            default: step.unstructured.method = core::prune::PruneMethod::kMagnitude;
          }
          if (p.structure() == v1::PrunePass::N_M) {
            step.unstructured.nm_n = p.n() == 0 ? 2 : p.n();
            step.unstructured.nm_m = p.m() == 0 ? 4 : p.m();
            if (p.per_device()) {
              for (const auto& layer : scan.layers) {
                if (layer.in % step.unstructured.nm_m != 0) step.unstructured.skip_layers.push_back(layer.name);
              }
            }
          } else {
            step.unstructured.sparsity = p.sparsity();
            if (p.global()) step.unstructured.scope = core::prune::PruneScope::kGlobal;
          }
        }
        core_recipe.steps.push_back(step);
        break;
      }
      case v1::Pass::kLowRank: {
        const v1::LowRankPass& l = pass.low_rank();
        compress::LowRankStep step;
        if (l.energy() > 0) {
          step.options.mode = core::lowrank::RankMode::kEnergy;
          step.options.energy = l.energy();
        } else {
          step.options.mode = l.by_sensitivity() ? core::lowrank::RankMode::kSensitivity
                                                 : core::lowrank::RankMode::kTargetRatio;
          step.options.target_ratio = l.target_ratio() > 0 ? l.target_ratio() : 0.25;
        }
        step.recovery = compress::DefaultRecovery(l.recovery_steps(), language_model);
        core_recipe.steps.push_back(step);
        break;
      }
      case v1::Pass::kDistill: {
        const v1::DistillPass& d = pass.distill();
        compress::DistillStep step;
        step.recovery = compress::DefaultRecovery(d.steps(), language_model);
        if (d.temperature() > 0) step.recovery.temperature = d.temperature();
        if (d.learning_rate() > 0) step.recovery.learning_rate = d.learning_rate();
        if (d.batch_size() > 0) step.recovery.batch_size = d.batch_size();
        step.recovery.lora_rank = d.lora_rank();
        core_recipe.steps.push_back(step);
        break;
      }
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("spec.recipe.passes[", i, "]: this pass cannot be part of a resolved recipe"));
    }
  }
  return core_recipe;
}

v1::Recipe PassesFromRecipe(const compress::Recipe& recipe) {
  v1::Recipe passes;
  for (const compress::RecipeStep& step : recipe.steps) {
    v1::Pass* pass = passes.add_passes();
    if (const auto* q = std::get_if<compress::QuantizeStep>(&step)) {
      v1::QuantizePass* out = pass->mutable_quantize();
      const auto& w = *q->ptq.weights;
      out->set_bits(w.format.bits);
      out->set_granularity(w.format.group_size > 0 ? v1::QuantizePass::PER_GROUP
                           : q->per_tensor         ? v1::QuantizePass::PER_TENSOR
                                                   : v1::QuantizePass::PER_CHANNEL);
      out->set_group_size(w.format.group_size);
      out->set_asymmetric(w.format.asymmetric);
      out->set_method(w.method == ptq::WeightMethod::kGptq  ? v1::QuantizePass::GPTQ
                      : w.method == ptq::WeightMethod::kAwq ? v1::QuantizePass::AWQ
                                                             : v1::QuantizePass::RTN);
      if (q->ptq.activations) {
        out->set_activation_bits(8);
        out->set_observer(v1::QuantizePass::MIN_MAX);
      }
    } else if (const auto* p = std::get_if<compress::PruneStep>(&step)) {
      v1::PrunePass* out = pass->mutable_prune();
      out->set_recovery_steps(static_cast<int32_t>(p->recovery.steps));
      if (p->channels) {
        out->set_structure(v1::PrunePass::CHANNELS);
        out->set_sparsity(p->structured.target);
        out->set_criterion(v1::PrunePass::COMBINED);
      } else {
        const auto& u = p->unstructured;
        out->set_method(u.method == core::prune::PruneMethod::kWanda       ? v1::PrunePass::WANDA
                        : u.method == core::prune::PruneMethod::kSparseGpt ? v1::PrunePass::SPARSEGPT
                                                                           : v1::PrunePass::MAGNITUDE);
        if (u.nm_m > 0) {
          out->set_structure(v1::PrunePass::N_M);
          out->set_n(u.nm_n);
          out->set_m(u.nm_m);
        } else {
          out->set_structure(v1::PrunePass::UNSTRUCTURED);
          out->set_sparsity(u.sparsity);
          out->set_global(u.scope == core::prune::PruneScope::kGlobal);
        }
      }
    } else if (const auto* l = std::get_if<compress::LowRankStep>(&step)) {
      v1::LowRankPass* out = pass->mutable_low_rank();
      if (l->options.mode == core::lowrank::RankMode::kEnergy) {
        out->set_energy(l->options.energy);
      } else {
        out->set_target_ratio(l->options.target_ratio);
        out->set_by_sensitivity(l->options.mode == core::lowrank::RankMode::kSensitivity);
      }
      out->set_recovery_steps(static_cast<int32_t>(l->recovery.steps));
    } else if (const auto* d = std::get_if<compress::DistillStep>(&step)) {
      v1::DistillPass* out = pass->mutable_distill();
      out->set_steps(static_cast<int32_t>(d->recovery.steps));
      out->set_temperature(d->recovery.temperature);
      out->set_learning_rate(d->recovery.learning_rate);
      out->set_batch_size(static_cast<int32_t>(d->recovery.batch_size));
      out->set_lora_rank(static_cast<int32_t>(d->recovery.lora_rank));
    }
  }
  return passes;
}

}  // namespace squeeze::worker
