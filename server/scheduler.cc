#include "server/scheduler.h"

#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/compress/model_format.h"
#include "core/model/file_io.h"
#include "core/model/linear_chain.h"
#include "core/onnx/onnx_model.h"
#include "core/model/safetensors.h"
#include "core/status_macros.h"
#include "server/job_spec_validation.h"
#include "server/job_state.h"

namespace squeeze::server {
namespace {

constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 1000;
constexpr double kMaxAcquireWaitSeconds = 30;
// Workers not heard from for this long are no longer counted.
constexpr int64_t kWorkerForgetMicros = 30'000'000;
// How often a watcher re-reads its job even without a change signal.
constexpr int64_t kWatchPollMicros = 1'000'000;

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

absl::Status CheckWorkerId(const std::string& worker_id) {
  if (worker_id.empty() || worker_id.size() > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker_id must be 1 to 128 bytes, got ", worker_id.size()));
  }
  return absl::OkStatus();
}

// Whether a watcher should send: state or progress changed.
bool Changed(const v1::Job& before, const v1::Job& after) {
  return before.state() != after.state() || before.attempts() != after.attempts() ||
         before.progress().SerializeAsString() != after.progress().SerializeAsString() ||
         before.cancel_requested() != after.cancel_requested();
}

// Validates an ONNX job at submit: the model parses, the recipe fits its
// quantizable layers, and safetensors datasets fit its data input. Returns
// the estimated worker memory (the float graph, its fake-quant copy and the
// exported artifact, plus two copies of each dataset).
absl::StatusOr<int64_t> ValidateOnnxJob(const v1::JobSpec& spec, const std::string& model_path,
                                        BlobStore* blobs) {
  absl::StatusOr<core::graph::Graph> graph = core::onnx::LoadOnnxModel(model_path);
  if (!graph.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("spec.model ", spec.model().sha256(),
                                                   " is not a valid safetensors file (no safetensors header) nor a valid ONNX model: ",
                                                   graph.status().message()));
  }
  absl::StatusOr<core::quant::ptq::LayerScan> scan = core::quant::ptq::FindQuantizableLayers(*graph);
  if (!scan.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("spec.model: ", scan.status().message()));
  }
  SQ_RETURN_IF_ERROR(ValidateRecipeForGraph(spec.recipe(), *scan));
  if (spec.calibration_dataset().sha256().empty()) {
    return absl::InvalidArgumentError(
        "spec.calibration_dataset is required for ONNX models (calibrated PTQ needs real inputs)");
  }
  const core::graph::ValueInfo* input = nullptr;
  for (const core::graph::ValueInfo& value : graph->inputs) {
    if (graph->initializers.count(value.name) == 0) {
      input = &value;
      break;
    }
  }
  if (input == nullptr) return absl::InvalidArgumentError("spec.model: the ONNX model has no data input");
  SQ_ASSIGN_OR_RETURN(uint64_t model_bytes, core::model::FileSize(model_path));
  int64_t memory = 3 * static_cast<int64_t>(model_bytes);
  const bool top1 = spec.eval_task() == v1::TOP1_ACCURACY;
  const bool has_evaluation = !spec.evaluation_dataset().sha256().empty();
  for (const auto& [ref, field] : {std::pair{&spec.calibration_dataset(), "spec.calibration_dataset"},
                                   std::pair{&spec.evaluation_dataset(), "spec.evaluation_dataset"}}) {
    if (ref->sha256().empty()) continue;
    const std::string path = blobs->PathFor(ref->sha256());
    SQ_ASSIGN_OR_RETURN(uint64_t bytes, core::model::FileSize(path));
    memory += 2 * static_cast<int64_t>(bytes);
    // npz datasets are checked by the worker (the header needs the archive).
    absl::StatusOr<core::model::SafetensorsHeader> header = core::model::ReadSafetensorsHeader(path);
    if (!header.ok()) continue;
    const bool evaluated = ref == &spec.evaluation_dataset() || !has_evaluation;
    SQ_RETURN_IF_ERROR(ValidateDatasetHeader(*header, *input, top1 && evaluated, field));
    if (ref == &spec.calibration_dataset() && header->tensors.count("labels") == 0) {
      for (int i = 0; i < spec.recipe().passes_size(); ++i) {
        if (!spec.recipe().passes(i).has_qat()) continue;
        return absl::InvalidArgumentError(absl::StrCat(
            "spec.calibration_dataset has no tensor \"labels\"; spec.recipe.passes[", i,
            "].qat trains on them (one integer class per example)"));
      }
    }
  }
  return memory;
}

}  // namespace

Scheduler::Scheduler(JobStore* store, BlobStore* blobs, const DeviceProfiles* devices,
                     SchedulerOptions options)
    : store_(store), blobs_(blobs), devices_(devices), options_(std::move(options)) {}

absl::StatusOr<SubmitResult> Scheduler::Submit(const std::string& tenant,
                                               const v1::SubmitJobRequest& request) {
  SQ_RETURN_IF_ERROR(ValidateSubmitRequest(request, *devices_));
  const v1::JobSpec& spec = request.spec();
  for (const auto* ref : {&spec.model(), &spec.calibration_dataset(), &spec.evaluation_dataset()}) {
    if (ref->sha256().empty()) continue;
    SQ_ASSIGN_OR_RETURN(bool owned, store_->TenantOwnsBlob(tenant, ref->sha256()));
    if (!owned || !blobs_->Contains(ref->sha256())) {
      return absl::NotFoundError(
          absl::StrCat("blob ", ref->sha256(), " not found; upload it first"));
    }
  }
  const std::string model_path = blobs_->PathFor(spec.model().sha256());
  SQ_ASSIGN_OR_RETURN(core::compress::ModelFormat format, core::compress::DetectModelFormat(model_path));
  int64_t estimated_memory_bytes = 0;
  if (format == core::compress::ModelFormat::kOnnx) {
    SQ_ASSIGN_OR_RETURN(estimated_memory_bytes, ValidateOnnxJob(spec, model_path, blobs_));
  } else {
    absl::StatusOr<core::model::SafetensorsHeader> header = core::model::ReadSafetensorsHeader(model_path);
    if (!header.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("spec.model ", spec.model().sha256(),
                                                     " is not a valid safetensors file: ",
                                                     header.status().message()));
    }
    SQ_RETURN_IF_ERROR(ValidateRecipeForModel(spec.recipe(), *header));
    if (spec.eval_task() == v1::TOP1_ACCURACY) {
      return absl::InvalidArgumentError(
          "spec.eval_task TOP1_ACCURACY applies to ONNX models only; this model is safetensors");
    }
    estimated_memory_bytes = core::model::EstimateMemoryBytes(*header);
  }

  NewJob job;
  job.tenant = tenant;
  job.spec = spec;
  job.idempotency_key = request.idempotency_key();
  job.estimated_memory_bytes = estimated_memory_bytes;
  job.max_attempts = spec.max_attempts() == 0 ? options_.default_max_attempts : spec.max_attempts();
  return store_->Submit(job);
}

absl::StatusOr<v1::Job> Scheduler::Get(const std::string& tenant, const std::string& id) {
  SQ_ASSIGN_OR_RETURN(v1::Job job, store_->Get(tenant, id));
  SQ_ASSIGN_OR_RETURN(std::vector<v1::TrialRecord> trials, store_->Trials(id));
  for (v1::TrialRecord& trial : trials) *job.add_trials() = std::move(trial);
  return job;
}

absl::StatusOr<v1::ListJobsResponse> Scheduler::List(const std::string& tenant,
                                                     const v1::ListJobsRequest& request) {
  ListFilter filter;
  for (int state : request.states()) {
    if (!v1::JobState_IsValid(state) || state == v1::JOB_STATE_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat("states: unknown job state ", state));
    }
    filter.states.push_back(static_cast<v1::JobState>(state));
  }
  for (const auto& [key, value] : request.labels()) filter.labels[key] = value;
  if (request.page_size() < 0 || request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(absl::StrCat("page_size must be in [0, ", kMaxPageSize,
                                                   "], got ", request.page_size()));
  }
  filter.page_size = request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  if (!request.page_token().empty() &&
      (!absl::SimpleAtoi(request.page_token(), &filter.before_seq) || filter.before_seq <= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token '", request.page_token().substr(0, 40), "' is not valid"));
  }
  SQ_ASSIGN_OR_RETURN(ListResult result, store_->List(tenant, filter));
  v1::ListJobsResponse response;
  for (v1::Job& job : result.jobs) *response.add_jobs() = std::move(job);
  if (result.next_before_seq > 0) response.set_next_page_token(absl::StrCat(result.next_before_seq));
  return response;
}

absl::StatusOr<v1::Job> Scheduler::Cancel(const std::string& tenant, const std::string& id) {
  return store_->Cancel(tenant, id);
}

absl::Status Scheduler::Watch(const std::string& tenant, const std::string& id,
                              const std::function<bool(const v1::Job&)>& send,
                              const std::function<bool()>& stopped) {
  uint64_t version = store_->Version();
  SQ_ASSIGN_OR_RETURN(v1::Job job, store_->Get(tenant, id));
  if (!send(job)) return absl::OkStatus();
  while (!IsFinal(job.state()) && !stopped()) {
    version = store_->WaitForChange(version, kWatchPollMicros);
    SQ_ASSIGN_OR_RETURN(v1::Job now, store_->Get(tenant, id));
    if (!Changed(job, now)) continue;
    job = std::move(now);
    if (!send(job)) break;
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::AcquireJobResponse> Scheduler::Acquire(const v1::AcquireJobRequest& request,
                                                          const std::function<bool()>& stopped) {
  SQ_RETURN_IF_ERROR(CheckWorkerId(request.worker_id()));
  if (request.memory_bytes() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory_bytes must be > 0, got ", request.memory_bytes()));
  }
  if (request.wait_seconds() < 0 || request.wait_seconds() > kMaxAcquireWaitSeconds) {
    return absl::InvalidArgumentError(absl::StrCat("wait_seconds must be in [0, ",
                                                   kMaxAcquireWaitSeconds, "], got ",
                                                   request.wait_seconds()));
  }
  SeeWorker(request.worker_id(), false);
  const int64_t deadline = NowMicros() + static_cast<int64_t>(request.wait_seconds() * 1e6);
  uint64_t version = store_->Version();
  while (true) {
    SQ_ASSIGN_OR_RETURN(std::optional<Lease> lease,
                        store_->Acquire(request.worker_id(), request.memory_bytes(),
                                        options_.lease_micros));
    if (lease) {
      SeeWorker(request.worker_id(), true);
      v1::AcquireJobResponse response;
      *response.mutable_job() = std::move(lease->job);
      response.set_attempt(lease->attempt);
      response.set_lease_seconds(options_.lease_micros / 1e6);
      const auto& targets = response.job().spec().target_devices();
      if (targets.empty()) {
        if (const v1::DeviceProfile* local = devices_->Find(options_.local_device)) {
          *response.add_devices() = *local;
        }
      }
      for (const std::string& name : targets) {
        if (const v1::DeviceProfile* profile = devices_->Find(name)) {
          *response.add_devices() = *profile;
        }
      }
      SQ_ASSIGN_OR_RETURN(std::vector<v1::TrialRecord> trials, store_->Trials(response.job().id()));
      for (v1::TrialRecord& trial : trials) *response.add_trials() = std::move(trial);
      return response;
    }
    const int64_t now = NowMicros();
    if (now >= deadline || stopped()) return v1::AcquireJobResponse();
    // Retry backoffs end without a store write, so wake at least once a second.
    version = store_->WaitForChange(version, std::min<int64_t>(deadline - now, 1'000'000));
  }
}

absl::StatusOr<v1::HeartbeatResponse> Scheduler::Heartbeat(const v1::HeartbeatRequest& request) {
  SQ_RETURN_IF_ERROR(CheckWorkerId(request.worker_id()));
  SeeWorker(request.worker_id(), true);
  SQ_ASSIGN_OR_RETURN(bool cancelled,
                      store_->Heartbeat(request.worker_id(), request.job_id(), request.attempt(),
                                        request.has_progress() ? &request.progress() : nullptr,
                                        options_.lease_micros));
  v1::HeartbeatResponse response;
  response.set_cancelled(cancelled);
  return response;
}

absl::Status Scheduler::ReportTrial(const v1::ReportTrialRequest& request) {
  SQ_RETURN_IF_ERROR(CheckWorkerId(request.worker_id()));
  if (request.trial().trial() < 0 || request.trial().device().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("trial record needs a device and a trial number >= 0, got device '",
                                                   request.trial().device(), "' trial ", request.trial().trial()));
  }
  const v1::Variant& variant = request.trial().variant();
  if (!variant.artifact().sha256().empty() && !blobs_->Contains(variant.artifact().sha256())) {
    return absl::FailedPreconditionError(absl::StrCat("trial ", request.trial().trial(), ": artifact ",
                                                      variant.artifact().sha256(), " was not uploaded"));
  }
  return store_->RecordTrial(request.worker_id(), request.job_id(), request.attempt(), request.trial());
}

absl::Status Scheduler::Complete(const v1::CompleteJobRequest& request) {
  SQ_RETURN_IF_ERROR(CheckWorkerId(request.worker_id()));
  SQ_ASSIGN_OR_RETURN(v1::Job job, store_->Get("", request.job_id()));
  for (const v1::Variant& variant : request.variants()) {
    if (!blobs_->Contains(variant.artifact().sha256())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "variant ", variant.device(), "/", variant.technique(), ": artifact ",
          variant.artifact().sha256(), " was not uploaded"));
    }
  }
  std::vector<v1::Variant> variants(request.variants().begin(), request.variants().end());
  SQ_RETURN_IF_ERROR(
      store_->Complete(request.worker_id(), request.job_id(), request.attempt(), variants));
  SeeWorker(request.worker_id(), false);
  return absl::OkStatus();
}

absl::Status Scheduler::Fail(const v1::FailJobRequest& request) {
  SQ_RETURN_IF_ERROR(CheckWorkerId(request.worker_id()));
  SQ_RETURN_IF_ERROR(store_->Fail(request.worker_id(), request.job_id(), request.attempt(),
                                  request.error(), request.retryable()));
  SeeWorker(request.worker_id(), false);
  return absl::OkStatus();
}

absl::Status Scheduler::ExpireLeases() { return store_->ExpireLeases().status(); }

absl::Status Scheduler::ReleaseWorker(const std::string& worker_id, const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(workers_mu_);
    workers_.erase(worker_id);
  }
  return store_->ReleaseWorker(worker_id, reason).status();
}

WorkerCounts Scheduler::CountWorkers() {
  const int64_t now = NowMicros();
  WorkerCounts counts;
  std::lock_guard<std::mutex> lock(workers_mu_);
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (now - it->second.last_seen_micros > kWorkerForgetMicros) {
      it = workers_.erase(it);
      continue;
    }
    (it->second.busy ? counts.busy : counts.idle) += 1;
    ++it;
  }
  return counts;
}

void Scheduler::SeeWorker(const std::string& worker_id, bool busy) {
  std::lock_guard<std::mutex> lock(workers_mu_);
  workers_[worker_id] = WorkerSeen{NowMicros(), busy};
}

}  // namespace squeeze::server
