#include "worker/job_runner.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "core/compress/graph_variant_builder.h"
#include "core/compress/search.h"
#include "core/compress/variant_builder.h"
#include "core/eval/latency.h"
#include "core/model/sha256.h"
#include "core/status_macros.h"
#include "server/job_spec_validation.h"
#include "worker/recipe_mapping.h"

namespace squeeze::worker {
namespace {

// Share of one variant's time each stage takes, for the progress fraction.
const std::map<std::string, double>& StageWeights() {
  static const auto* weights = new std::map<std::string, double>{
      {"load", 0.05}, {"calibrate", 0.10}, {"quantize", 0.45},
      {"evaluate", 0.20}, {"measure", 0.20}};
  return *weights;
}

double StageStart(const std::string& stage) {
  double start = 0;
  for (const char* name : {"load", "calibrate", "quantize", "evaluate", "measure"}) {
    if (stage == name) return start;
    start += StageWeights().at(name);
  }
  return start;
}

core::eval::EnergyModel EnergyModelFor(const v1::DeviceProfile& profile) {
  core::eval::EnergyModel model;
  for (const auto& [format, pj] : profile.pj_per_mac()) model.pj_per_mac[format] = pj;
  model.pj_per_byte = profile.pj_per_byte();
  return model;
}

// The latency, energy and size axes, from either builder's report.
void SetCostAxes(const core::compress::CostReport& report, const std::string& runtime,
                 v1::Variant* variant) {
  v1::LatencyAxis* latency = variant->mutable_latency();
  latency->set_provenance(v1::MEASURED);
  latency->set_baseline_p50_seconds(report.baseline_latency.p50);
  latency->set_p50_seconds(report.latency.p50);
  latency->set_p95_seconds(report.latency.p95);
  latency->set_p99_seconds(report.latency.p99);
  latency->set_batch_size(report.batch_size);
  latency->set_faster_than_baseline(core::eval::FasterThanBaseline(report.latency.p50, report.baseline_latency.p50));
  latency->set_runtime(runtime);
  latency->set_hardware(report.hardware);

  v1::EnergyAxis* energy = variant->mutable_energy();
  energy->set_provenance(v1::ESTIMATED);
  energy->set_baseline_joules_per_inference(report.baseline_joules);
  energy->set_joules_per_inference(report.joules);
  energy->set_model(report.energy_model_description);

  v1::SizeAxis* size = variant->mutable_size();
  size->set_baseline_bytes(report.baseline_bytes);
  size->set_bytes(report.artifact_bytes);
  if (report.artifact_bytes > 0) {
    size->set_ratio_vs_fp32(static_cast<double>(report.fp32_weight_bytes) / report.artifact_bytes);
    size->set_ratio_vs_original(static_cast<double>(report.baseline_bytes) / report.artifact_bytes);
  }
}

v1::Variant ToVariant(const core::compress::VariantReport& report, const std::string& device,
                      const v1::UploadBlobResponse& artifact) {
  v1::Variant variant;
  variant.set_device(device);
  variant.set_technique(report.technique);
  *variant.mutable_artifact() = artifact.blob();
  variant.set_artifact_format("safetensors-squeeze-q");

  v1::AccuracyAxis* accuracy = variant.mutable_accuracy();
  accuracy->set_metric("output_relative_error");
  accuracy->set_baseline(report.baseline_metric);
  accuracy->set_value(report.metric);
  accuracy->set_delta(report.metric - report.baseline_metric);
  accuracy->set_output_sqnr_db(report.output_sqnr_db);
  for (const auto& layer : report.layers) {
    v1::LayerReport* out = accuracy->add_layers();
    out->set_name(layer.name);
    out->set_bits(layer.bits);
    out->set_relative_error(layer.relative_error);
    out->set_sqnr_db(layer.sqnr_db);
    out->set_parameters(layer.parameters);
  }

  SetCostAxes(report, "squeeze-cpu-eigen (weights dequantized at load, fp32 GEMM)", &variant);
  return variant;
}

v1::Provenance LatencyProvenance(const core::compress::GraphVariantReport& report,
                                 const core::compress::TargetDevice& device) {
  return device.present || !report.predicted ? v1::MEASURED : v1::PREDICTED;
}

v1::Variant ToGraphVariant(const core::compress::GraphVariantReport& report,
                           const core::compress::TargetDevice& device, const v1::BlobRef& artifact) {
  v1::Variant variant;
  variant.set_device(device.name);
  variant.set_technique(report.technique);
  *variant.mutable_artifact() = artifact;
  variant.set_artifact_format(report.artifact_format);

  v1::AccuracyAxis* accuracy = variant.mutable_accuracy();
  accuracy->set_metric(absl::StrCat(report.metric, " (", report.evaluation_examples,
                                    " examples; output KL ", report.mean_kl_divergence,
                                    " nats, top-1 agreement ", report.top1_agreement, ")"));
  accuracy->set_baseline(report.baseline_metric);
  accuracy->set_value(report.metric_value);
  accuracy->set_delta(report.metric_value - report.baseline_metric);
  accuracy->set_output_sqnr_db(report.output_sqnr_db);
  for (const auto& layer : report.layers) {
    v1::LayerReport* out = accuracy->add_layers();
    out->set_name(layer.name);
    out->set_bits(layer.weight_bits);
    out->set_relative_error(layer.weight_relative_error);
    out->set_sqnr_db(layer.weight_relative_error > 0 ? -20 * std::log10(layer.weight_relative_error) : 0);
    out->set_parameters(layer.out * layer.in);
  }

  variant.mutable_size()->set_baseline_memory_bytes(report.baseline_memory_bytes);
  variant.mutable_size()->set_memory_bytes(report.memory_bytes);
  SetCostAxes(report, report.runtime.empty() ? "squeeze-cpu graph executor" : report.runtime, &variant);
  // On the device: measured when it is this worker's hardware, else the
  // roofline's prediction; the local measurement stays in `points`.
  v1::LatencyAxis* latency = variant.mutable_latency();
  for (const auto& point : report.points) {
    v1::LatencyPoint* out = latency->add_points();
    out->set_batch_size(point.batch_size);
    out->set_sequence_length(point.sequence_length);
    out->set_baseline_p50_seconds(point.baseline.p50);
    out->set_p50_seconds(point.variant.p50);
    out->set_p95_seconds(point.variant.p95);
    out->set_p99_seconds(point.variant.p99);
  }
  const v1::Provenance provenance = LatencyProvenance(report, device);
  latency->set_provenance(provenance);
  v1::EnergyAxis* energy = variant.mutable_energy();
  if (report.predicted) {
    latency->set_predicted_p50_seconds(report.predicted->seconds);
    latency->set_predicted_baseline_p50_seconds(report.predicted_baseline->seconds);
    latency->set_prediction_model(report.predicted->description);
    if (provenance == v1::MEASURED && report.latency.p50 > 0) {
      latency->set_prediction_error(report.predicted->seconds / report.latency.p50 - 1.0);
    }
  }
  if (provenance == v1::PREDICTED) {
    latency->set_p50_seconds(report.predicted->seconds);
    latency->set_p95_seconds(0);
    latency->set_p99_seconds(0);
    latency->set_baseline_p50_seconds(report.predicted_baseline->seconds);
    latency->set_faster_than_baseline(core::eval::FasterThanBaseline(report.predicted->seconds, report.predicted_baseline->seconds));
    energy->set_provenance(v1::PREDICTED);
    energy->set_joules_per_inference(report.predicted->joules);
    energy->set_baseline_joules_per_inference(report.predicted_baseline->joules);
    energy->set_model(absl::StrCat(report.predicted->description, "; baseline ",
                                   report.predicted_baseline->description));
  } else {
    energy->set_provenance(report.energy_measured ? v1::MEASURED : v1::ESTIMATED);
  }
  variant.add_notes(absl::StrCat("runtime formats on ", device.name, ": ",
                                 report.device_formats.empty() ? "fp32 (no device figures)"
                                                               : absl::StrJoin(report.device_formats, "+")));
  for (const std::string& note : report.notes) variant.add_notes(note);
  if (!latency->faster_than_baseline()) {
    variant.add_notes(absl::StrCat("NOT faster than the baseline on ", device.name, " (",
                                   provenance == v1::PREDICTED ? "predicted" : "measured", ")"));
  }
  return variant;
}

// What rebuilds `variant`: the job's blobs and seed, the resolved recipe.
v1::Manifest ManifestFor(const v1::JobSpec& spec, const v1::Recipe& resolved, const std::string& device,
                         const std::string& hardware, const std::string& artifact_sha256) {
  v1::Manifest manifest;
  v1::JobSpec* rebuilt = manifest.mutable_spec();
  *rebuilt->mutable_model() = spec.model();
  *rebuilt->mutable_calibration_dataset() = spec.calibration_dataset();
  *rebuilt->mutable_evaluation_dataset() = spec.evaluation_dataset();
  rebuilt->set_eval_task(spec.eval_task());
  rebuilt->set_seed(spec.seed());
  *rebuilt->mutable_recipe() = resolved;
  if (device != "local") rebuilt->add_target_devices(device);
  manifest.set_software_version(SQUEEZE_VERSION);
  manifest.set_compiler(__VERSION__);
  manifest.set_hardware(hardware);
  manifest.set_artifact_sha256(artifact_sha256);
  return manifest;
}

core::compress::EvalMetric MetricFor(v1::EvalTask task) {
  switch (task) {
    case v1::TOP1_ACCURACY: return core::compress::EvalMetric::kTop1Accuracy;
    case v1::PERPLEXITY: return core::compress::EvalMetric::kPerplexity;
    default: return core::compress::EvalMetric::kFidelity;
  }
}

// A search trial recorded by an earlier attempt, as the search sees it.
core::compress::Trial TrialFromRecord(const v1::TrialRecord& record) {
  core::compress::Trial trial;
  trial.index = record.trial();
  trial.label = record.variant().technique();
  trial.finished = record.finished();
  trial.error = record.error();
  if (record.finished() && record.error().empty()) {
    const v1::Variant& v = record.variant();
    const bool perplexity = absl::StartsWith(v.accuracy().metric(), "perplexity");
    trial.accuracy_drop = perplexity ? (v.accuracy().baseline() > 0 ? v.accuracy().value() / v.accuracy().baseline() - 1 : 0)
                                     : -v.accuracy().delta();
    trial.latency_seconds = v.latency().p50_seconds();
    trial.energy_joules = v.energy().joules_per_inference();
    trial.size_bytes = v.size().bytes();
    trial.faster_than_baseline = v.latency().faster_than_baseline();
  }
  return trial;
}

}  // namespace

absl::StatusOr<std::string> JobRunner::Fetch(const v1::BlobRef& blob) {
  const std::string path = absl::StrCat(options_.scratch_dir, "/blob-", blob.sha256());
  std::error_code error;
  if (std::filesystem::exists(path, error)) return path;  // Verified when it was downloaded.
  SQ_RETURN_IF_ERROR(blobs_->DownloadBlob(blob.sha256(), path).status());
  return path;
}

absl::StatusOr<std::vector<v1::Variant>> JobRunner::Run(const v1::AcquireJobResponse& lease,
                                                        const RunCallbacks& callbacks) {
  const v1::JobSpec& spec = lease.job().spec();
  std::error_code error;
  std::filesystem::create_directories(options_.scratch_dir, error);
  if (error) {
    return absl::UnavailableError(absl::StrCat("scratch dir ", options_.scratch_dir, ": ", error.message()));
  }
  if (lease.devices_size() == 0) {
    return absl::FailedPreconditionError("the daemon sent no device profile for this job");
  }
  v1::Progress progress;
  progress.set_stage("download");
  progress.set_eta_seconds(-1);
  callbacks.report(progress);
  SQ_ASSIGN_OR_RETURN(const std::string model_path, Fetch(spec.model()));
  SQ_ASSIGN_OR_RETURN(const core::compress::ModelFormat format, core::compress::DetectModelFormat(model_path));
  if (format == core::compress::ModelFormat::kOnnx) return RunGraph(lease, model_path, callbacks);
  return RunLinearChain(lease, model_path, callbacks);
}

absl::StatusOr<std::vector<v1::Variant>> JobRunner::RunGraph(const v1::AcquireJobResponse& lease,
                                                             const std::string& model_path,
                                                             const RunCallbacks& callbacks) {
  const v1::Job& job = lease.job();
  const v1::JobSpec& spec = job.spec();
  const auto start = std::chrono::steady_clock::now();
  v1::Progress progress;
  // Progress: the session's stages, then each device's share.
  const int devices = lease.devices_size();
  int device_index = -1;
  std::string device_name;
  auto on_progress = [&](const std::string& stage, int64_t step, int64_t total) {
    if (callbacks.cancelled()) return false;
    const double within = total > 0 ? static_cast<double>(step) / static_cast<double>(total) : 0.0;
    const double fraction = device_index < 0 ? 0.05 * within : 0.05 + 0.95 * (device_index + within) / devices;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    progress.set_stage(devices > 1 && !device_name.empty() ? absl::StrCat(stage, " (", device_name, ")") : stage);
    progress.set_step(step);
    progress.set_total(total);
    progress.set_fraction(fraction);
    progress.set_eta_seconds(fraction > 0.05 ? elapsed / fraction * (1 - fraction) : -1);
    callbacks.report(progress);
    return true;
  };

  core::compress::SessionOptions session_options;
  session_options.model_path = model_path;
  if (!spec.calibration_dataset().sha256().empty()) {
    SQ_ASSIGN_OR_RETURN(session_options.calibration_path, Fetch(spec.calibration_dataset()));
  }
  if (!spec.evaluation_dataset().sha256().empty()) {
    SQ_ASSIGN_OR_RETURN(session_options.evaluation_path, Fetch(spec.evaluation_dataset()));
  }
  session_options.metric = MetricFor(spec.eval_task());
  session_options.seed = spec.seed();
  const bool language_model = session_options.metric == core::compress::EvalMetric::kPerplexity;
  if (language_model) session_options.latency_batch_sizes = {1, 4};
  const v1::SearchPass* search = nullptr;
  for (const v1::Pass& pass : spec.recipe().passes()) {
    if (pass.has_quantize()) {
      if (pass.quantize().calibration_batches() > 0) {
        session_options.calibration_batches = pass.quantize().calibration_batches();
      }
      if (pass.quantize().calibration_batch_size() > 0) {
        session_options.calibration_batch_size = pass.quantize().calibration_batch_size();
      }
    }
    if (pass.has_search()) search = &pass.search();
  }
  SQ_ASSIGN_OR_RETURN(std::unique_ptr<core::compress::GraphSession> session,
                      core::compress::GraphSession::Open(session_options, on_progress));

  std::vector<v1::Variant> variants;
  for (device_index = 0; device_index < devices; ++device_index) {
    const v1::DeviceProfile& profile = lease.devices(device_index);
    device_name = spec.target_devices().empty() ? "local" : profile.name();
    const bool present = device_name == "local" || profile.name() == options_.device_profile;
    const core::compress::TargetDevice device = TargetFromProfile(profile, device_name, present);
    if (search != nullptr) {
      SQ_ASSIGN_OR_RETURN(std::vector<v1::Variant> found,
                          RunSearchOnDevice(lease, *search, *session, device, callbacks, on_progress));
      for (v1::Variant& variant : found) variants.push_back(std::move(variant));
      continue;
    }
    const v1::Recipe resolved = ResolveForDevice(spec.recipe(), profile, session->scan());
    SQ_ASSIGN_OR_RETURN(core::compress::Recipe recipe, CoreRecipe(resolved, language_model, session->scan()));
    const std::string artifact_path = absl::StrCat(options_.scratch_dir, "/", job.id(), "-", device_name, ".onnx");
    SQ_ASSIGN_OR_RETURN(core::compress::GraphVariantReport report,
                        session->Build(recipe, device, artifact_path, on_progress));
    if (callbacks.cancelled()) return absl::CancelledError("job cancelled");
    progress.set_stage(absl::StrCat("upload (", device_name, ")"));
    callbacks.report(progress);
    SQ_ASSIGN_OR_RETURN(v1::UploadBlobResponse artifact,
                        blobs_->UploadFile(artifact_path, v1::BLOB_KIND_ARTIFACT, job.id()));
    std::error_code error;
    std::filesystem::remove(artifact_path, error);
    v1::Variant variant = ToGraphVariant(report, device, artifact.blob());
    *variant.mutable_manifest() =
        ManifestFor(spec, spec.recipe(), device_name, options_.hardware, artifact.blob().sha256());
    variants.push_back(std::move(variant));
  }
  return variants;
}

absl::StatusOr<std::vector<v1::Variant>> JobRunner::RunSearchOnDevice(
    const v1::AcquireJobResponse& lease, const v1::SearchPass& pass, core::compress::GraphSession& session,
    const core::compress::TargetDevice& device, const RunCallbacks& callbacks,
    const core::compress::ProgressFn& on_progress) {
  const v1::Job& job = lease.job();
  core::compress::SearchOptions options;
  options.limits.max_accuracy_drop = pass.max_accuracy_drop();
  options.limits.max_size_bytes = pass.max_size_bytes();
  options.limits.max_latency_seconds = pass.max_latency_seconds();
  options.limits.max_energy_joules = pass.max_energy_joules();
  options.max_trials = pass.max_trials() > 0 ? pass.max_trials() : 12;
  options.max_seconds = pass.max_seconds();
  const bool language_model = session.options().metric == core::compress::EvalMetric::kPerplexity;
  const std::vector<core::compress::Candidate> space = core::compress::SearchSpace(session, device);

  // Trials of earlier attempts, and their variants (artifacts already uploaded).
  std::vector<core::compress::Trial> resumed;
  std::map<int, v1::Variant> variant_of;
  for (const v1::TrialRecord& record : lease.trials()) {
    if (record.device() != device.name) continue;
    resumed.push_back(TrialFromRecord(record));
    if (record.finished() && record.error().empty()) variant_of[record.trial()] = record.variant();
  }
  const std::string artifact_dir = absl::StrCat(options_.scratch_dir, "/", job.id(), "-", device.name);
  std::error_code error;
  std::filesystem::create_directories(artifact_dir, error);
  int ran = 0;
  core::compress::SearchCallbacks search_callbacks;
  search_callbacks.cancelled = callbacks.cancelled;
  search_callbacks.started = [&](const core::compress::Trial& trial) {
    on_progress(absl::StrCat("search trial ", trial.index, " ", trial.label), ran, options.max_trials);
    v1::TrialRecord record;
    record.set_device(device.name);
    record.set_trial(trial.index);
    record.mutable_variant()->set_technique(trial.label);
    return callbacks.record_trial(record);
  };
  search_callbacks.finished = [&](const core::compress::Trial& trial,
                                  const core::compress::GraphVariantReport* report,
                                  const std::string& artifact_path) -> absl::Status {
    ++ran;
    v1::TrialRecord record;
    record.set_device(device.name);
    record.set_trial(trial.index);
    record.set_finished(true);
    if (report == nullptr) {
      record.set_error(trial.error);
      record.mutable_variant()->set_technique(trial.label);
    } else {
      SQ_ASSIGN_OR_RETURN(v1::UploadBlobResponse artifact,
                          blobs_->UploadFile(artifact_path, v1::BLOB_KIND_ARTIFACT, job.id()));
      std::error_code remove_error;
      std::filesystem::remove(artifact_path, remove_error);
      v1::Variant variant = ToGraphVariant(*report, device, artifact.blob());
      variant.set_technique(trial.label);
      variant.set_trial(trial.index);
      *variant.mutable_manifest() = ManifestFor(job.spec(), PassesFromRecipe(space[trial.index].recipe),
                                                device.name, options_.hardware, artifact.blob().sha256());
      *record.mutable_variant() = variant;
      variant_of[trial.index] = std::move(variant);
    }
    return callbacks.record_trial(record);
  };
  SQ_ASSIGN_OR_RETURN(std::vector<core::compress::Trial> trials,
                      core::compress::RunSearch(session, device, options, resumed, artifact_dir, search_callbacks));
  (void)language_model;
  const int best = core::compress::MarkParetoSet(&trials, options.limits);
  std::vector<v1::Variant> returned;
  for (int i = 0; i < static_cast<int>(trials.size()); ++i) {
    const core::compress::Trial& trial = trials[i];
    auto found = variant_of.find(trial.index);
    if (found == variant_of.end() || !(trial.pareto_optimal || i == best)) continue;
    v1::Variant variant = found->second;
    variant.set_meets_limits(trial.meets_limits);
    variant.set_pareto_optimal(trial.pareto_optimal);
    std::vector<std::string> notes(variant.notes().begin(), variant.notes().end());
    variant.clear_notes();
    if (i == best) variant.add_notes(trial.meets_limits ? "best within the limits" : "best found; NO variant meets the limits");
    for (const std::string& note : trial.notes) variant.add_notes(note);
    for (const std::string& note : notes) variant.add_notes(note);
    returned.push_back(std::move(variant));
  }
  if (returned.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("search on ", device.name, ": no trial finished (",
                                                      trials.size(), " tried or skipped)"));
  }
  return returned;
}

absl::StatusOr<std::vector<v1::Variant>> JobRunner::RunLinearChain(const v1::AcquireJobResponse& lease,
                                                                   const std::string& model_path,
                                                                   const RunCallbacks& callbacks) {
  const v1::Job& job = lease.job();
  const v1::JobSpec& spec = job.spec();
  const v1::QuantizePass* quantize = nullptr;
  for (const v1::Pass& pass : spec.recipe().passes()) {
    if (pass.has_quantize()) quantize = &pass.quantize();
  }
  if (quantize == nullptr) {
    return absl::InvalidArgumentError("a safetensors linear-chain model takes only a quantize pass");
  }
  const auto start = std::chrono::steady_clock::now();
  v1::Progress progress;
  core::compress::VariantRequest request;
  request.model_path = model_path;
  if (!spec.calibration_dataset().sha256().empty()) {
    SQ_ASSIGN_OR_RETURN(request.calibration_path, Fetch(spec.calibration_dataset()));
  }
  if (!spec.evaluation_dataset().sha256().empty()) {
    SQ_ASSIGN_OR_RETURN(request.evaluation_path, Fetch(spec.evaluation_dataset()));
  }
  request.rtn = server::RtnOptionsFromPass(*quantize);
  request.seed = spec.seed();
  std::vector<v1::Variant> variants;
  const int devices = lease.devices_size();
  for (int d = 0; d < devices; ++d) {
    const v1::DeviceProfile& profile = lease.devices(d);
    const std::string device = spec.target_devices().empty() ? "local" : profile.name();
    request.energy_model = EnergyModelFor(profile);
    request.artifact_path = absl::StrCat(options_.scratch_dir, "/", job.id(), "-", device, ".safetensors");
    auto on_progress = [&](const std::string& stage, int64_t step, int64_t total) {
      if (callbacks.cancelled()) return false;
      double within = StageStart(stage);
      auto weight = StageWeights().find(stage);
      if (weight != StageWeights().end() && total > 0) {
        within += weight->second * static_cast<double>(step) / static_cast<double>(total);
      }
      const double fraction = (d + within) / devices;
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      progress.set_stage(devices > 1 ? absl::StrCat(stage, " (", device, ")") : stage);
      progress.set_step(step);
      progress.set_total(total);
      progress.set_fraction(fraction);
      progress.set_eta_seconds(fraction > 0.02 ? elapsed / fraction * (1 - fraction) : -1);
      callbacks.report(progress);
      return true;
    };
    SQ_ASSIGN_OR_RETURN(core::compress::VariantReport built,
                        core::compress::BuildQuantizedVariant(request, on_progress));
    if (callbacks.cancelled()) return absl::CancelledError("job cancelled");
    progress.set_stage("upload");
    callbacks.report(progress);
    SQ_ASSIGN_OR_RETURN(v1::UploadBlobResponse artifact,
                        blobs_->UploadFile(request.artifact_path, v1::BLOB_KIND_ARTIFACT, job.id()));
    std::error_code error;
    std::filesystem::remove(request.artifact_path, error);
    v1::Variant variant = ToVariant(built, device, artifact);
    *variant.mutable_manifest() = ManifestFor(spec, spec.recipe(), device, options_.hardware, artifact.blob().sha256());
    variants.push_back(std::move(variant));
  }
  return variants;
}

v1::JobError DescribeFailure(const absl::Status& status, bool* retryable) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
      *retryable = true;
      break;
    default:
      *retryable = false;
  }
  v1::JobError error;
  error.set_code(static_cast<int>(status.code()));
  error.set_message(std::string(status.message()));
  error.set_pass("0:quantize");
  // Core messages name the layer as "(layer NAME)".
  const std::string message(status.message());
  const size_t at = message.find("(layer ");
  if (at != std::string::npos) {
    const size_t end = message.find(')', at);
    if (end != std::string::npos) error.set_layer(message.substr(at + 7, end - at - 7));
  }
  return error;
}

}  // namespace squeeze::worker
