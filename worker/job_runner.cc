#include "worker/job_runner.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "core/compress/graph_variant_builder.h"
#include "core/compress/variant_builder.h"
#include "core/model/sha256.h"
#include "core/status_macros.h"
#include "server/job_spec_validation.h"

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
  latency->set_faster_than_baseline(report.latency.p50 < report.baseline_latency.p50);
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

  SetCostAxes(report, "squeeze-cpu-eigen (dequantize, then fp32 GEMM)", &variant);
  return variant;
}

v1::Variant ToGraphVariant(const core::compress::GraphVariantReport& report, const std::string& device,
                           const v1::UploadBlobResponse& artifact) {
  v1::Variant variant;
  variant.set_device(device);
  variant.set_technique(report.technique);
  *variant.mutable_artifact() = artifact.blob();
  variant.set_artifact_format("onnx-qdq");

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

  SetCostAxes(report,
              "squeeze-cpu graph executor, simulated quantization (weights stored dequantized as fp32, "
              "fp32 GEMM; not an integer kernel)",
              &variant);
  return variant;
}

}  // namespace

absl::StatusOr<std::string> JobRunner::Fetch(const v1::BlobRef& blob) {
  const std::string path = absl::StrCat(options_.scratch_dir, "/blob-", blob.sha256());
  std::error_code error;
  if (std::filesystem::exists(path, error)) return path;  // Verified when it was downloaded.
  SQ_RETURN_IF_ERROR(blobs_->DownloadBlob(blob.sha256(), path).status());
  return path;
}

absl::StatusOr<std::vector<v1::Variant>> JobRunner::Run(
    const v1::AcquireJobResponse& lease, const std::function<void(const v1::Progress&)>& report,
    const std::function<bool()>& cancelled) {
  const v1::Job& job = lease.job();
  const v1::JobSpec& spec = job.spec();
  std::error_code error;
  std::filesystem::create_directories(options_.scratch_dir, error);
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("scratch dir ", options_.scratch_dir, ": ", error.message()));
  }

  const v1::QuantizePass* quantize = nullptr;
  for (const v1::Pass& pass : spec.recipe().passes()) {
    if (pass.has_quantize()) quantize = &pass.quantize();
  }
  if (quantize == nullptr) {
    return absl::UnimplementedError("recipe has no quantize pass; nothing this worker can run");
  }
  if (lease.devices_size() == 0) {
    return absl::FailedPreconditionError("the daemon sent no device profile for this job");
  }

  const auto start = std::chrono::steady_clock::now();
  v1::Progress progress;
  progress.set_stage("download");
  progress.set_eta_seconds(-1);
  report(progress);

  core::compress::VariantRequest request;
  SQ_ASSIGN_OR_RETURN(request.model_path, Fetch(spec.model()));
  if (!spec.calibration_dataset().sha256().empty()) {
    SQ_ASSIGN_OR_RETURN(request.calibration_path, Fetch(spec.calibration_dataset()));
  }
  if (!spec.evaluation_dataset().sha256().empty()) {
    SQ_ASSIGN_OR_RETURN(request.evaluation_path, Fetch(spec.evaluation_dataset()));
  }
  request.rtn = server::RtnOptionsFromPass(*quantize);
  request.seed = spec.seed();
  SQ_ASSIGN_OR_RETURN(const core::compress::ModelFormat format,
                      core::compress::DetectModelFormat(request.model_path));
  const bool onnx = format == core::compress::ModelFormat::kOnnx;
  core::compress::GraphVariantRequest graph_request;
  graph_request.model_path = request.model_path;
  graph_request.calibration_path = request.calibration_path;
  graph_request.evaluation_path = request.evaluation_path;
  graph_request.ptq = server::PtqOptionsFromPass(*quantize);
  if (quantize->calibration_batches() > 0) graph_request.calibration_batches = quantize->calibration_batches();
  if (quantize->calibration_batch_size() > 0) {
    graph_request.calibration_batch_size = quantize->calibration_batch_size();
  }
  graph_request.top1_accuracy = spec.eval_task() == v1::TOP1_ACCURACY;
  graph_request.seed = spec.seed();

  std::vector<v1::Variant> variants;
  const int devices = lease.devices_size();
  for (int d = 0; d < devices; ++d) {
    const v1::DeviceProfile& profile = lease.devices(d);
    const std::string device = spec.target_devices().empty() ? "local" : profile.name();
    request.energy_model = EnergyModelFor(profile);
    request.artifact_path =
        absl::StrCat(options_.scratch_dir, "/", job.id(), "-", device, onnx ? ".onnx" : ".safetensors");
    graph_request.energy_model = request.energy_model;
    graph_request.artifact_path = request.artifact_path;
    auto on_progress = [&](const std::string& stage, int64_t step, int64_t total) {
      if (cancelled()) return false;
      double within = StageStart(stage);
      auto weight = StageWeights().find(stage);
      if (weight != StageWeights().end() && total > 0) {
        within += weight->second * static_cast<double>(step) / static_cast<double>(total);
      }
      const double fraction = (d + within) / devices;
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      progress.set_stage(devices > 1 ? absl::StrCat(stage, " (", device, ")") : stage);
      progress.set_step(step);
      progress.set_total(total);
      progress.set_fraction(fraction);
      progress.set_eta_seconds(fraction > 0.02 ? elapsed / fraction * (1 - fraction) : -1);
      report(progress);
      return true;
    };
    std::optional<core::compress::VariantReport> built;
    std::optional<core::compress::GraphVariantReport> graph_built;
    if (onnx) {
      SQ_ASSIGN_OR_RETURN(graph_built, core::compress::BuildGraphVariant(graph_request, on_progress));
    } else {
      SQ_ASSIGN_OR_RETURN(built, core::compress::BuildQuantizedVariant(request, on_progress));
    }
    if (cancelled()) return absl::CancelledError("job cancelled");
    progress.set_stage("upload");
    report(progress);
    SQ_ASSIGN_OR_RETURN(v1::UploadBlobResponse artifact,
                        blobs_->UploadFile(request.artifact_path, v1::BLOB_KIND_ARTIFACT, job.id()));
    std::filesystem::remove(request.artifact_path, error);
    variants.push_back(onnx ? ToGraphVariant(*graph_built, device, artifact)
                            : ToVariant(*built, device, artifact));
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
