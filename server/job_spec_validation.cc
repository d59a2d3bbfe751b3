#include "server/job_spec_validation.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/model/linear_chain.h"
#include "core/status_macros.h"
#include "google/protobuf/reflection.h"
#include "google/protobuf/unknown_field_set.h"

namespace squeeze::server {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

constexpr int kMaxPasses = 32;
constexpr int kMaxDevices = 16;
constexpr int kMaxLabels = 16;
constexpr int kMaxPriority = 9;
constexpr int kMaxAttempts = 10;
constexpr size_t kMaxIdempotencyKey = 128;
constexpr size_t kMaxLabelValue = 255;
constexpr int kMaxCalibrationBatches = 256;
constexpr int kMaxCalibrationBatchSize = 1024;
constexpr int kMaxTrainingSteps = 100000;
constexpr int kMaxSearchTrials = 200;

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

bool IsLabelKey(const std::string& key) {
  if (key.empty() || key.size() > 63) return false;
  for (char c : key) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_' || c == '.' || c == '-')) {
      return false;
    }
  }
  return true;
}

absl::Status ValidateBlobRef(const v1::BlobRef& ref, const std::string& field, bool required) {
  if (ref.sha256().empty() && !required) return absl::OkStatus();
  if (!IsSha256Hex(ref.sha256())) {
    return Invalid(absl::StrCat(field, ".sha256 must be 64 lower-case hex characters, got '",
                                ref.sha256().substr(0, 80), "'"));
  }
  return absl::OkStatus();
}

// A float_format cast is weight-only and takes no integer-quantization
// option: the first one set is named with its value.
absl::Status ValidateFloatFormat(const v1::QuantizePass& q, const std::string& field) {
  if (q.float_format() == v1::QuantizePass::FLOAT_FORMAT_UNSPECIFIED) return absl::OkStatus();
  if (!v1::QuantizePass::FloatFormat_IsValid(q.float_format())) {
    return Invalid(absl::StrCat(field, ".quantize.float_format is unknown: ", static_cast<int>(q.float_format())));
  }
  std::string set;  // "bits 4", ...
  if (q.bits() != 0) {
    set = absl::StrCat("bits ", q.bits());
  } else if (q.granularity() != v1::QuantizePass::GRANULARITY_UNSPECIFIED) {
    set = absl::StrCat("granularity ", v1::QuantizePass::Granularity_Name(q.granularity()));
  } else if (q.group_size() != 0) {
    set = absl::StrCat("group_size ", q.group_size());
  } else if (q.method() != v1::QuantizePass::METHOD_UNSPECIFIED) {
    set = absl::StrCat("method ", v1::QuantizePass::Method_Name(q.method()));
  } else if (q.asymmetric()) {
    set = "asymmetric true";
  } else if (q.activation_bits() != 0) {
    set = absl::StrCat("activation_bits ", q.activation_bits());
  } else if (q.observer() != v1::QuantizePass::OBSERVER_UNSPECIFIED) {
    set = absl::StrCat("observer ", v1::QuantizePass::Observer_Name(q.observer()));
  } else if (q.smoothquant_alpha() != 0) {
    set = absl::StrCat("smoothquant_alpha ", q.smoothquant_alpha());
  } else if (q.bias_correction()) {
    set = "bias_correction true";
  } else if (q.kmeans_iterations() != 0) {
    set = absl::StrCat("kmeans_iterations ", q.kmeans_iterations());
  } else if (q.has_mixed_precision()) {
    set = "mixed_precision (set)";
  } else if (q.per_device()) {
    set = "per_device true";
  }
  if (set.empty()) return absl::OkStatus();
  return Invalid(absl::StrCat(field, ".quantize.float_format ", v1::QuantizePass::FloatFormat_Name(q.float_format()),
                              " is a weight-only cast and takes no integer-quantization option; got ", set));
}

// The combinations of a quantize pass's method, granularity and
// mixed-precision budget (its single fields are checked by ValidatePass).
absl::Status ValidateQuantizeMethod(const v1::QuantizePass& q, const std::string& field) {
  const bool kmeans = q.method() == v1::QuantizePass::KMEANS;
  const bool rtn = q.method() == v1::QuantizePass::METHOD_UNSPECIFIED || q.method() == v1::QuantizePass::RTN;
  if (q.granularity() == v1::QuantizePass::PER_TENSOR) {
    if (!rtn && !kmeans) {
      return Invalid(absl::StrCat(field, ".quantize.granularity PER_TENSOR needs method RTN or KMEANS, got ",
                                  v1::QuantizePass::Method_Name(q.method())));
    }
    if (q.bias_correction() || q.smoothquant_alpha() > 0) {
      return Invalid(absl::StrCat(field, ".quantize.granularity PER_TENSOR does not combine with bias_correction "
                                         "or smoothquant_alpha"));
    }
  }
  if (q.kmeans_iterations() < 0 || q.kmeans_iterations() > 1000) {
    return Invalid(absl::StrCat(field, ".quantize.kmeans_iterations must be in [1, 1000] (0: default 100), got ",
                                q.kmeans_iterations()));
  }
  if (!kmeans && q.kmeans_iterations() != 0) {
    return Invalid(absl::StrCat(field, ".quantize.kmeans_iterations applies to method KMEANS only"));
  }
  if (kmeans) {
    if (q.bits() != 2 && q.bits() != 3 && q.bits() != 4) {
      return Invalid(absl::StrCat(field, ".quantize.bits must be 2, 3 or 4 for method KMEANS (2^bits centroids), got ",
                                  q.bits()));
    }
    if (q.granularity() == v1::QuantizePass::PER_GROUP || q.asymmetric() || q.activation_bits() != 0 ||
        q.bias_correction() || q.smoothquant_alpha() > 0 || q.per_device()) {
      return Invalid(absl::StrCat(field, ".quantize.method KMEANS is weight-only with a codebook per layer "
                                         "(PER_TENSOR) or per channel: granularity PER_GROUP, asymmetric, "
                                         "activation_bits, bias_correction, smoothquant_alpha and per_device "
                                         "must keep their defaults"));
    }
  }
  if (!q.has_mixed_precision()) return absl::OkStatus();
  const v1::MixedPrecision& m = q.mixed_precision();
  if (q.bits() != 0 || !rtn || q.activation_bits() != 0 || q.bias_correction() || q.smoothquant_alpha() > 0 ||
      q.per_device() ||
      (q.granularity() != v1::QuantizePass::GRANULARITY_UNSPECIFIED &&
       q.granularity() != v1::QuantizePass::PER_CHANNEL)) {
    return Invalid(absl::StrCat(field, ".quantize.mixed_precision chooses per-channel RTN widths per layer, "
                                       "weight-only: bits must stay 0 (got ", q.bits(), "), method RTN (got ",
                                v1::QuantizePass::Method_Name(q.method()),
                                "), granularity PER_CHANNEL, and activation_bits, bias_correction, "
                                "smoothquant_alpha and per_device their defaults"));
  }
  if ((m.average_bits() != 0) == (m.max_bytes() != 0)) {
    return Invalid(absl::StrCat(field, ".quantize.mixed_precision needs exactly one of average_bits and max_bytes, "
                                       "got average_bits ", m.average_bits(), " and max_bytes ", m.max_bytes()));
  }
  if (m.average_bits() != 0 && !(m.average_bits() >= 2 && m.average_bits() <= 16)) {
    return Invalid(absl::StrCat(field, ".quantize.mixed_precision.average_bits must be in [2, 16], got ",
                                m.average_bits()));
  }
  if (m.max_bytes() < 0) {
    return Invalid(absl::StrCat(field, ".quantize.mixed_precision.max_bytes must be > 0, got ", m.max_bytes()));
  }
  if (!v1::MixedPrecision::Sensitivity_IsValid(m.sensitivity())) {
    return Invalid(absl::StrCat(field, ".quantize.mixed_precision.sensitivity is unknown: ",
                                static_cast<int>(m.sensitivity())));
  }
  std::set<int> seen;
  for (int bits : m.candidate_bits()) {
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8 && bits != 16) {
      return Invalid(absl::StrCat(field, ".quantize.mixed_precision.candidate_bits must each be 2, 3, 4, 8 or 16, got ",
                                  bits));
    }
    if (!seen.insert(bits).second) {
      return Invalid(absl::StrCat(field, ".quantize.mixed_precision.candidate_bits names ", bits, " twice"));
    }
  }
  if (m.probes() < 0 || m.probes() > 64) {
    return Invalid(absl::StrCat(field, ".quantize.mixed_precision.probes must be in [1, 64] (0: default 4), got ",
                                m.probes()));
  }
  return absl::OkStatus();
}

absl::Status ValidatePass(const v1::Pass& pass, int index) {
  const std::string field = absl::StrCat("spec.recipe.passes[", index, "]");
  switch (pass.technique_case()) {
    case v1::Pass::kQuantize: {
      const v1::QuantizePass& q = pass.quantize();
      if (q.bits() != 0 && q.bits() != 2 && q.bits() != 3 && q.bits() != 4 && q.bits() != 8) {
        return Invalid(absl::StrCat(field, ".quantize.bits must be 2, 3, 4 or 8, got ", q.bits()));
      }
      if (!v1::QuantizePass::Granularity_IsValid(q.granularity())) {
        return Invalid(absl::StrCat(field, ".quantize.granularity is unknown: ",
                                    static_cast<int>(q.granularity())));
      }
      if (q.granularity() == v1::QuantizePass::PER_GROUP && q.group_size() != 0) {
        int g = q.group_size();
        if (g < 8 || g > 4096 || (g & (g - 1)) != 0) {
          return Invalid(absl::StrCat(field,
                                      ".quantize.group_size must be a power of two in "
                                      "[8, 4096], got ",
                                      g));
        }
      }
      if (!v1::QuantizePass::Method_IsValid(q.method())) {
        return Invalid(absl::StrCat(field, ".quantize.method is unknown: ", static_cast<int>(q.method())));
      }
      if (q.activation_bits() != 0 && q.activation_bits() != 8) {
        return Invalid(absl::StrCat(field, ".quantize.activation_bits must be 0 (weight-only) or 8, got ",
                                    q.activation_bits()));
      }
      if (!v1::QuantizePass::Observer_IsValid(q.observer())) {
        return Invalid(absl::StrCat(field, ".quantize.observer is unknown: ", static_cast<int>(q.observer())));
      }
      if (!(q.smoothquant_alpha() >= 0 && q.smoothquant_alpha() <= 1)) {
        return Invalid(absl::StrCat(field, ".quantize.smoothquant_alpha must be 0 (off) or in (0, 1], got ",
                                    q.smoothquant_alpha()));
      }
      if (q.smoothquant_alpha() > 0 && q.activation_bits() != 8) {
        return Invalid(absl::StrCat(field, ".quantize.smoothquant_alpha = ", q.smoothquant_alpha(),
                                    " needs activation_bits = 8 (SmoothQuant is for W8A8)"));
      }
      SQ_RETURN_IF_ERROR(ValidateFloatFormat(q, field));
      SQ_RETURN_IF_ERROR(ValidateQuantizeMethod(q, field));
      if (q.calibration_batches() < 0 || q.calibration_batches() > kMaxCalibrationBatches) {
        return Invalid(absl::StrCat(field, ".quantize.calibration_batches must be in [1, ", kMaxCalibrationBatches,
                                    "] or 0 for the default, got ", q.calibration_batches()));
      }
      if (q.calibration_batch_size() < 0 || q.calibration_batch_size() > kMaxCalibrationBatchSize) {
        return Invalid(absl::StrCat(field, ".quantize.calibration_batch_size must be in [1, ",
                                    kMaxCalibrationBatchSize, "] or 0 for the default, got ",
                                    q.calibration_batch_size()));
      }
      return absl::OkStatus();
    }
    case v1::Pass::kPrune: {
      const v1::PrunePass& p = pass.prune();
      if (!v1::PrunePass::Structure_IsValid(p.structure()) || !v1::PrunePass::Method_IsValid(p.method()) ||
          !v1::PrunePass::Criterion_IsValid(p.criterion())) {
        return Invalid(absl::StrCat(field, ".prune: unknown structure, method or criterion value"));
      }
      if (!(p.sparsity() >= 0 && p.sparsity() < 1)) {
        return Invalid(absl::StrCat(field, ".prune.sparsity must be in [0, 1), got ", p.sparsity()));
      }
      if (p.structure() == v1::PrunePass::N_M) {
        const int n = p.n() == 0 ? 2 : p.n(), m = p.m() == 0 ? 4 : p.m();
        if (m < 2 || m > 64 || n < 1 || n >= m) {
          return Invalid(absl::StrCat(field, ".prune: N:M must have 1 <= n < m <= 64, got ", n, ":", m));
        }
        if (p.sparsity() != 0 && std::abs(p.sparsity() - (1.0 - static_cast<double>(n) / m)) > 1e-9) {
          return Invalid(absl::StrCat(field, ".prune.sparsity ", p.sparsity(), " disagrees with ", n, ":", m,
                                      " (which removes ", 1.0 - static_cast<double>(n) / m,
                                      "); leave it 0"));
        }
      } else {
        if (p.n() != 0 || p.m() != 0) {
          return Invalid(absl::StrCat(field, ".prune.n and .m apply to structure N_M only"));
        }
        if (p.sparsity() == 0) {
          return Invalid(absl::StrCat(field, ".prune.sparsity must be > 0 for ",
                                      v1::PrunePass::Structure_Name(p.structure())));
        }
      }
      if (p.structure() == v1::PrunePass::CHANNELS && p.method() != v1::PrunePass::METHOD_UNSPECIFIED) {
        return Invalid(absl::StrCat(field, ".prune.method applies to UNSTRUCTURED and N_M; CHANNELS uses criterion"));
      }
      if (p.per_device() && !(p.structure() == v1::PrunePass::N_M && (p.n() == 0 || p.n() == 2) &&
                            (p.m() == 0 || p.m() == 4))) {
        return Invalid(absl::StrCat(field, ".prune.per_device applies to 2:4 (structure N_M, n 2, m 4) only"));
      }
      if (p.recovery_steps() < 0 || p.recovery_steps() > kMaxTrainingSteps) {
        return Invalid(absl::StrCat(field, ".prune.recovery_steps must be in [0, ", kMaxTrainingSteps, "], got ",
                                    p.recovery_steps()));
      }
      return absl::OkStatus();
    }
    case v1::Pass::kLowRank: {
      const v1::LowRankPass& l = pass.low_rank();
      if (!(l.target_ratio() >= 0 && l.target_ratio() <= 1)) {
        return Invalid(absl::StrCat(field, ".low_rank.target_ratio must be in (0, 1] (0: default 0.25), got ",
                                    l.target_ratio()));
      }
      if (!(l.energy() >= 0 && l.energy() <= 1)) {
        return Invalid(absl::StrCat(field, ".low_rank.energy must be in (0, 1] (0: use target_ratio), got ",
                                    l.energy()));
      }
      if (l.recovery_steps() < 0 || l.recovery_steps() > kMaxTrainingSteps) {
        return Invalid(absl::StrCat(field, ".low_rank.recovery_steps must be in [0, ", kMaxTrainingSteps,
                                    "], got ", l.recovery_steps()));
      }
      return absl::OkStatus();
    }
    case v1::Pass::kDistill: {
      const v1::DistillPass& d = pass.distill();
      if (d.steps() < 1 || d.steps() > kMaxTrainingSteps) {
        return Invalid(absl::StrCat(field, ".distill.steps must be in [1, ", kMaxTrainingSteps, "], got ",
                                    d.steps()));
      }
      if (!(d.temperature() >= 0 && d.temperature() <= 100)) {
        return Invalid(absl::StrCat(field, ".distill.temperature must be in (0, 100] (0: default 4), got ",
                                    d.temperature()));
      }
      if (!(d.learning_rate() >= 0 && d.learning_rate() <= 1)) {
        return Invalid(absl::StrCat(field, ".distill.learning_rate must be in (0, 1] (0: default 1e-4), got ",
                                    d.learning_rate()));
      }
      if (d.lora_rank() < 0 || d.lora_rank() > 256) {
        return Invalid(absl::StrCat(field, ".distill.lora_rank must be in [0, 256] (0: off), got ", d.lora_rank()));
      }
      if (d.batch_size() < 0 || d.batch_size() > 1024) {
        return Invalid(absl::StrCat(field, ".distill.batch_size must be in [1, 1024] (0: default 32), got ",
                                    d.batch_size()));
      }
      return absl::OkStatus();
    }
    case v1::Pass::kSearch: {
      const v1::SearchPass& s = pass.search();
      if (!(s.max_accuracy_drop() >= 0 && s.max_accuracy_drop() <= 1)) {
        return Invalid(absl::StrCat(field, ".search.max_accuracy_drop must be in [0, 1], got ",
                                    s.max_accuracy_drop()));
      }
      if (s.max_size_bytes() < 0 || !(s.max_latency_seconds() >= 0) || !(s.max_energy_joules() >= 0) ||
          !(s.max_seconds() >= 0)) {
        return Invalid(absl::StrCat(field, ".search: limits must be >= 0 (0 means no limit), got size ",
                                    s.max_size_bytes(), ", latency ", s.max_latency_seconds(), ", energy ",
                                    s.max_energy_joules(), ", seconds ", s.max_seconds()));
      }
      if (s.max_trials() < 0 || s.max_trials() > kMaxSearchTrials) {
        return Invalid(absl::StrCat(field, ".search.max_trials must be in [1, ", kMaxSearchTrials,
                                    "] (0: default 12), got ", s.max_trials()));
      }
      return absl::OkStatus();
    }
    case v1::Pass::kQat: {
      const v1::QatPass& q = pass.qat();
      if (q.steps() < 3 || q.steps() > kMaxTrainingSteps) {
        return Invalid(absl::StrCat(field, ".qat.steps must be in [3, ", kMaxTrainingSteps, "], got ", q.steps()));
      }
      if (q.weight_bits() != 0 && q.weight_bits() != 4 && q.weight_bits() != 8) {
        return Invalid(absl::StrCat(field, ".qat.weight_bits must be 4 or 8 (0: default 4), got ", q.weight_bits()));
      }
      if (!(q.learning_rate() >= 0 && q.learning_rate() <= 1)) {
        return Invalid(absl::StrCat(field, ".qat.learning_rate must be in (0, 1] (0: default 1e-4), got ",
                                    q.learning_rate()));
      }
      if (!(q.scale_learning_rate() >= 0 && q.scale_learning_rate() <= 1)) {
        return Invalid(absl::StrCat(field, ".qat.scale_learning_rate must be in (0, 1] (0: default 1e-4), got ",
                                    q.scale_learning_rate()));
      }
      if (q.batch_size() < 0 || q.batch_size() > kMaxCalibrationBatchSize) {
        return Invalid(absl::StrCat(field, ".qat.batch_size must be in [1, ", kMaxCalibrationBatchSize,
                                    "] (0: default 32), got ", q.batch_size()));
      }
      if (!(q.distill_temperature() >= 0 && q.distill_temperature() <= 100)) {
        return Invalid(absl::StrCat(field, ".qat.distill_temperature must be in (0, 100] (0: default 4), got ",
                                    q.distill_temperature()));
      }
      if (!(q.distill_weight() >= 0 && q.distill_weight() <= 1)) {
        return Invalid(absl::StrCat(field, ".qat.distill_weight must be in [0, 1] (0: default 0.5), got ",
                                    q.distill_weight()));
      }
      if (!q.distill_from_float() && (q.distill_temperature() != 0 || q.distill_weight() != 0)) {
        return Invalid(absl::StrCat(field, ".qat.distill_temperature and .distill_weight need distill_from_float"));
      }
      return absl::OkStatus();
    }
    case v1::Pass::TECHNIQUE_NOT_SET:
      return Invalid(absl::StrCat(field, " names no technique (an unknown technique from a "
                                         "newer client arrives this way)"));
  }
  return Invalid(absl::StrCat(field, ": unknown technique"));
}

}  // namespace

bool IsSha256Hex(std::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

absl::Status RejectUnknownFields(const Message& message, const std::string& path) {
  const Reflection* reflection = message.GetReflection();
  const auto& unknown = reflection->GetUnknownFields(message);
  if (!unknown.empty()) {
    return Invalid(absl::StrCat(path, " has unknown field number ", unknown.field(0).number(),
                                " (is the client newer than this daemon?)"));
  }
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (field->is_map()) continue;  // string maps only: nothing unknown inside.
    const std::string child = path.empty() ? field->name() : absl::StrCat(path, ".", field->name());
    if (field->is_repeated()) {
      for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
        SQ_RETURN_IF_ERROR(RejectUnknownFields(reflection->GetRepeatedMessage(message, field, i),
                                               absl::StrCat(child, "[", i, "]")));
      }
    } else {
      SQ_RETURN_IF_ERROR(RejectUnknownFields(reflection->GetMessage(message, field), child));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSubmitRequest(const v1::SubmitJobRequest& request,
                                   const DeviceProfiles& devices) {
  SQ_RETURN_IF_ERROR(RejectUnknownFields(request, "request"));
  if (!request.has_spec()) return Invalid("spec is required");
  const v1::JobSpec& spec = request.spec();
  if (request.idempotency_key().size() > kMaxIdempotencyKey) {
    return Invalid(absl::StrCat("idempotency_key is ", request.idempotency_key().size(),
                                " bytes; at most ", kMaxIdempotencyKey, " are allowed"));
  }
  SQ_RETURN_IF_ERROR(ValidateBlobRef(spec.model(), "spec.model", /*required=*/true));
  SQ_RETURN_IF_ERROR(
      ValidateBlobRef(spec.calibration_dataset(), "spec.calibration_dataset", false));
  SQ_RETURN_IF_ERROR(
      ValidateBlobRef(spec.evaluation_dataset(), "spec.evaluation_dataset", false));

  const int passes = spec.recipe().passes_size();
  if (passes == 0) return Invalid("spec.recipe.passes is empty; at least one pass is required");
  if (passes > kMaxPasses) {
    return Invalid(absl::StrCat("spec.recipe.passes has ", passes, " passes; at most ",
                                kMaxPasses, " are allowed"));
  }
  int quantize_passes = 0;
  for (int i = 0; i < passes; ++i) {
    SQ_RETURN_IF_ERROR(ValidatePass(spec.recipe().passes(i), i));
    if (spec.recipe().passes(i).has_quantize() || spec.recipe().passes(i).has_qat()) ++quantize_passes;
  }
  for (int i = 0; i < passes; ++i) {
    if (spec.recipe().passes(i).has_search() && passes > 1) {
      return Invalid(absl::StrCat("spec.recipe.passes[", i, "]: a search pass must be the only pass of its recipe (",
                                  passes, " passes given)"));
    }
  }
  bool pruned_weights = false;
  for (int i = 0; i < passes; ++i) {
    const v1::Pass& pass = spec.recipe().passes(i);
    if ((pass.has_quantize() || pass.has_qat()) && i + 1 != passes) {
      return Invalid(absl::StrCat("spec.recipe.passes[", i, "]: ", pass.has_qat() ? "qat" : "quantize",
                                  " must be the last pass (", passes - 1 - i, " passes follow it)"));
    }
    if (pass.has_quantize() && pruned_weights && pass.quantize().method() == v1::QuantizePass::GPTQ) {
      return Invalid(absl::StrCat("spec.recipe.passes[", i, "].quantize.method GPTQ after unstructured or N:M ",
                                  "pruning would refill the pruned weights; use RTN or AWQ"));
    }
    if (pass.has_qat() && pruned_weights) {
      return Invalid(absl::StrCat("spec.recipe.passes[", i, "].qat after unstructured or N:M pruning would train ",
                                  "the pruned weights back to nonzero; quantize with RTN or AWQ instead"));
    }
    if (pass.has_prune() && pass.prune().structure() != v1::PrunePass::CHANNELS) pruned_weights = true;
  }
  if (quantize_passes > 1) {
    return Invalid(absl::StrCat("spec.recipe has ", quantize_passes,
                                " quantize or qat passes; a model is quantized once"));
  }

  if (spec.target_devices_size() > kMaxDevices) {
    return Invalid(absl::StrCat("spec.target_devices has ", spec.target_devices_size(),
                                " entries; at most ", kMaxDevices, " are allowed"));
  }
  std::set<std::string> seen;
  for (const std::string& device : spec.target_devices()) {
    if (devices.Find(device) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.target_devices: unknown device profile '", device, "' (see ListDeviceProfiles)"));
    }
    if (!seen.insert(device).second) {
      return Invalid(absl::StrCat("spec.target_devices names '", device, "' twice"));
    }
  }
  if (!v1::EvalTask_IsValid(spec.eval_task())) {
    return Invalid(absl::StrCat("spec.eval_task is unknown: ", static_cast<int>(spec.eval_task())));
  }
  if (spec.priority() < 0 || spec.priority() > kMaxPriority) {
    return Invalid(absl::StrCat("spec.priority must be in [0, ", kMaxPriority, "], got ",
                                spec.priority()));
  }
  if (spec.labels_size() > kMaxLabels) {
    return Invalid(absl::StrCat("spec.labels has ", spec.labels_size(), " labels; at most ",
                                kMaxLabels, " are allowed"));
  }
  for (const auto& [key, value] : spec.labels()) {
    if (!IsLabelKey(key)) {
      return Invalid(absl::StrCat("spec.labels key '", key.substr(0, 80),
                                  "' must match [a-z0-9_.-]{1,63}"));
    }
    if (value.size() > kMaxLabelValue) {
      return Invalid(absl::StrCat("spec.labels['", key, "'] is ", value.size(),
                                  " bytes; at most ", kMaxLabelValue, " are allowed"));
    }
  }
  if (spec.max_attempts() < 0 || spec.max_attempts() > kMaxAttempts) {
    return Invalid(absl::StrCat("spec.max_attempts must be in [1, ", kMaxAttempts,
                                "] or 0 for the default, got ", spec.max_attempts()));
  }
  return absl::OkStatus();
}

core::quant::RtnOptions RtnOptionsFromPass(const v1::QuantizePass& pass) {
  core::quant::RtnOptions options;
  options.bits = pass.bits() == 0 ? 8 : pass.bits();
  options.group_size = pass.granularity() == v1::QuantizePass::PER_GROUP
                           ? (pass.group_size() == 0 ? 128 : pass.group_size())
                           : 0;
  options.asymmetric = pass.asymmetric();
  return options;
}

absl::Status ValidateRecipeForModel(const v1::Recipe& recipe,
                                    const core::model::SafetensorsHeader& model) {
  absl::Status chain = core::model::ValidateLinearChainHeader(model);
  if (!chain.ok()) {
    return Invalid(absl::StrCat("spec.model is not a model this daemon can compress: ",
                                chain.message()));
  }
  for (int i = 0; i < recipe.passes_size(); ++i) {
    if (!recipe.passes(i).has_quantize()) {
      return Invalid(absl::StrCat("spec.recipe.passes[", i, "]: only quantize passes apply to a safetensors ",
                                  "linear-chain model; prune, low_rank, distill and search need an ONNX model"));
    }
    const v1::QuantizePass& q = recipe.passes(i).quantize();
    if (q.per_device()) {
      return Invalid(absl::StrCat("spec.recipe.passes[", i, "].quantize.per_device needs an ONNX model"));
    }
    if (q.granularity() == v1::QuantizePass::PER_TENSOR || q.has_mixed_precision()) {
      return Invalid(absl::StrCat("spec.recipe.passes[", i, "].quantize: granularity PER_TENSOR and "
                                  "mixed_precision need an ONNX model"));
    }
    if (q.float_format() != v1::QuantizePass::FLOAT_FORMAT_UNSPECIFIED) {  // the casts export ONNX only
      return Invalid(absl::StrCat("spec.recipe.passes[", i, "].quantize.float_format ",
                                  v1::QuantizePass::FloatFormat_Name(q.float_format()),
                                  " needs an ONNX model; a safetensors linear-chain model takes integer bits 4 or 8"));
    }
    if (q.bits() == 2 || q.bits() == 3) {  // safetensors-squeeze-q stores 4 and 8 bits only
      return Invalid(absl::StrCat("spec.recipe.passes[", i, "].quantize.bits ", q.bits(),
                                  " needs an ONNX model; a safetensors linear-chain model takes 4 or 8"));
    }
    if (q.method() > v1::QuantizePass::RTN || q.activation_bits() != 0 ||
        q.observer() > v1::QuantizePass::MIN_MAX || q.smoothquant_alpha() != 0 || q.bias_correction()) {
      return Invalid(absl::StrCat("spec.recipe.passes[", i, "].quantize: method ",
                                  v1::QuantizePass::Method_Name(q.method()), ", activation_bits ",
                                  q.activation_bits(), ", observer, smoothquant_alpha and bias_correction "
                                  "apply to ONNX models only; this model is safetensors (RTN weight-only)"));
    }
    core::quant::RtnOptions options = RtnOptionsFromPass(recipe.passes(i).quantize());
    for (const auto& [name, info] : model.tensors) {
      if (!absl::EndsWith(name, ".weight") || info.shape.size() != 2) continue;
      const std::string layer = name.substr(0, name.size() - 7);
      absl::Status status = options.Validate(info.shape[1], layer);
      if (!status.ok()) {
        return Invalid(absl::StrCat("spec.recipe.passes[", i, "]: ", status.message()));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace squeeze::server

namespace squeeze::server {

core::quant::ptq::PtqOptions PtqOptionsFromPass(const v1::QuantizePass& pass) {
  namespace ptq = core::quant::ptq;
  ptq::PtqOptions options;
  options.weights.emplace();
  switch (pass.method()) {
    case v1::QuantizePass::GPTQ:
      options.weights->method = ptq::WeightMethod::kGptq;
      options.calibration.hessian = true;
      break;
    case v1::QuantizePass::AWQ:
      options.weights->method = ptq::WeightMethod::kAwq;
      break;
    default:
      options.weights->method = ptq::WeightMethod::kRtn;
  }
  options.weights->format = RtnOptionsFromPass(pass);
  options.weights->bias_correction = pass.bias_correction();
  if (pass.activation_bits() == 8) {
    options.activations.emplace();
    switch (pass.observer()) {
      case v1::QuantizePass::PERCENTILE:
        options.activations->observer = ptq::Observer::kPercentile;
        break;
      case v1::QuantizePass::MSE:
        options.activations->observer = ptq::Observer::kMse;
        break;
      case v1::QuantizePass::ENTROPY:
        options.activations->observer = ptq::Observer::kEntropy;
        break;
      default:
        options.activations->observer = ptq::Observer::kMinMax;
    }
  }
  if (pass.smoothquant_alpha() > 0) {
    options.smoothquant = true;
    options.smoothquant_alpha = pass.smoothquant_alpha();
  }
  return options;
}

absl::Status ValidateRecipeForGraph(const v1::Recipe& recipe, const core::quant::ptq::LayerScan& scan) {
  if (scan.layers.empty()) {
    return Invalid("spec.model: the ONNX model has no quantizable layer (Gemm, MatMul or Conv with an "
                   "initializer weight)");
  }
  for (int i = 0; i < recipe.passes_size(); ++i) {
    if (!recipe.passes(i).has_prune() || recipe.passes(i).prune().structure() != v1::PrunePass::N_M) continue;
    if (recipe.passes(i).prune().per_device()) continue;  // Layers 2:4 does not fit stay dense.
    const v1::PrunePass& p = recipe.passes(i).prune();
    const int n = p.n() == 0 ? 2 : p.n(), m = p.m() == 0 ? 4 : p.m();
    for (const auto& layer : scan.layers) {
      if (layer.in % m != 0) {
        return Invalid(absl::StrCat("spec.recipe.passes[", i, "].prune: ", n, ":", m, " needs every layer's input width ",
                                    "to be a multiple of ", m, "; layer ", layer.name, " has ", layer.in));
      }
    }
  }
  for (int i = 0; i < recipe.passes_size(); ++i) {
    if (!recipe.passes(i).has_quantize()) continue;
    const v1::QuantizePass& q = recipe.passes(i).quantize();
    if (q.per_device()) continue;  // Resolved per device by the worker.
    absl::Status status = PtqOptionsFromPass(q).Validate(scan.layers);
    if (!status.ok()) return Invalid(absl::StrCat("spec.recipe.passes[", i, "]: ", status.message()));
    if (!q.has_mixed_precision()) continue;
    // The smallest plan: every layer at the narrowest candidate, with its
    // per-channel float32 scales and, when asymmetric, uint8 zero points (as
    // core/quant/mixed counts sizes).
    const v1::MixedPrecision& m = q.mixed_precision();
    int narrowest = m.candidate_bits().empty() ? 2 : 16;
    for (int bits : m.candidate_bits()) narrowest = std::min(narrowest, bits);
    const int64_t channel_bits = narrowest < 16 ? (q.asymmetric() ? 40 : 32) : 0;
    int64_t params = 0, smallest_bits = 0;
    for (const auto& layer : scan.layers) {
      params += layer.out * layer.in;
      smallest_bits += layer.out * layer.in * narrowest + layer.out * channel_bits;
    }
    const int64_t budget_bits =
        m.max_bytes() > 0 ? m.max_bytes() * 8 : static_cast<int64_t>(std::floor(m.average_bits() * params));
    if (budget_bits < smallest_bits) {
      return Invalid(absl::StrCat("spec.recipe.passes[", i, "].quantize.mixed_precision: the budget of ", budget_bits,
                                  " bits (", static_cast<double>(budget_bits) / params, " per weight over ", params,
                                  " weights) is below the smallest plan, every layer at ", narrowest, " bits: ",
                                  smallest_bits, " bits (", static_cast<double>(smallest_bits) / params,
                                  " per weight, per-channel scales", q.asymmetric() ? " and zero points" : "",
                                  " included)"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateDatasetHeader(const core::model::SafetensorsHeader& header,
                                   const core::graph::ValueInfo& input, bool needs_labels,
                                   const std::string& field) {
  auto inputs = header.tensors.find("inputs");
  if (inputs == header.tensors.end()) {
    return Invalid(absl::StrCat(field, " has no tensor \"inputs\""));
  }
  const std::vector<int64_t>& shape = inputs->second.shape;
  if (input.shape) {
    bool fits = input.shape->size() == shape.size();
    for (size_t d = 1; fits && d < shape.size(); ++d) {
      const auto& dim = (*input.shape)[d];
      fits = !dim.value || *dim.value == shape[d];
    }
    if (!fits) {
      std::vector<std::string> dims;
      for (const auto& dim : *input.shape) {
        dims.push_back(dim.value ? absl::StrCat(*dim.value) : (dim.symbol.empty() ? "?" : dim.symbol));
      }
      return Invalid(absl::StrCat(field, ": \"inputs\" has shape [", absl::StrJoin(shape, ", "),
                                  "] but the model input '", input.name, "' is [", absl::StrJoin(dims, ", "),
                                  "]"));
    }
  }
  if (needs_labels && header.tensors.count("labels") == 0) {
    return Invalid(absl::StrCat(field, " has no tensor \"labels\"; eval_task TOP1_ACCURACY needs one "
                                       "integer label per example"));
  }
  return absl::OkStatus();
}

}  // namespace squeeze::server
