#include "worker/worker.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace squeeze::worker {
namespace {

void Log(const std::string& worker_id, const std::string& message) {
  std::fprintf(stderr, "squeeze-worker %s: %s\n", worker_id.c_str(), message.c_str());
}

}  // namespace

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(WorkerOptions options) {
  SQ_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                      client::MakeChannel(options.connection));
  return std::unique_ptr<Worker>(new Worker(std::move(options), std::move(channel)));
}

Worker::Worker(WorkerOptions options, std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      blobs_(client::SqueezeClient::FromChannel(channel, options_.connection)),
      control_(v1::WorkerControl::NewStub(channel)),
      runner_(JobRunnerOptions{options_.scratch_dir, options_.device_profile, options_.hardware}, blobs_.get()) {}

std::unique_ptr<grpc::ClientContext> Worker::NewContext(double timeout_seconds) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata("authorization", absl::StrCat("Bearer ", options_.connection.token));
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000)));
  return context;
}

absl::Status Worker::Run(const std::atomic<bool>& stop) {
  int jobs = 0;
  double backoff = 0.5;
  Log(options_.worker_id, absl::StrCat("polling ", options_.connection.address));
  while (!stop.load() && (options_.max_jobs == 0 || jobs < options_.max_jobs)) {
    v1::AcquireJobRequest request;
    request.set_worker_id(options_.worker_id);
    request.set_memory_bytes(options_.memory_bytes);
    request.set_hardware(options_.hardware);
    request.set_wait_seconds(options_.poll_seconds);
    v1::AcquireJobResponse lease;
    auto context = NewContext(options_.poll_seconds + 10);
    grpc::Status status = control_->AcquireJob(context.get(), request, &lease);
    if (!status.ok()) {
      if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
          status.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
          status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
        return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                            absl::StrCat("AcquireJob: ", status.error_message()));
      }
      Log(options_.worker_id, absl::StrCat("AcquireJob: ", status.error_message(), "; retrying"));
      std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(backoff * 1000)));
      backoff = std::min(backoff * 2, 10.0);
      continue;
    }
    backoff = 0.5;
    if (!lease.has_job()) continue;
    RunOne(lease);
    ++jobs;
  }
  return absl::OkStatus();
}

void Worker::RunOne(const v1::AcquireJobResponse& lease) {
  const std::string& job_id = lease.job().id();
  Log(options_.worker_id, absl::StrCat("running ", job_id, " attempt ", lease.attempt()));

  // The heartbeat thread renews the lease and carries the latest progress.
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  v1::Progress latest;
  bool have_progress = false;
  std::atomic<bool> cancelled{false};
  std::thread heartbeat([&] {
    std::unique_lock<std::mutex> lock(mu);
    while (!done) {
      cv.wait_for(lock, std::chrono::milliseconds(
                            static_cast<int64_t>(options_.heartbeat_seconds * 1000)));
      if (done) break;
      v1::HeartbeatRequest request;
      request.set_worker_id(options_.worker_id);
      request.set_job_id(job_id);
      request.set_attempt(lease.attempt());
      if (have_progress) *request.mutable_progress() = latest;
      lock.unlock();
      v1::HeartbeatResponse response;
      auto context = NewContext(5);
      grpc::Status status = control_->Heartbeat(context.get(), request, &response);
      lock.lock();
      if (status.ok() && response.cancelled()) cancelled.store(true);
      // The daemon gave the job to someone else: stop wasting the work.
      if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) cancelled.store(true);
    }
  });

  RunCallbacks callbacks;
  callbacks.report = [&](const v1::Progress& progress) {
    std::lock_guard<std::mutex> lock(mu);
    latest = progress;
    have_progress = true;
  };
  callbacks.cancelled = [&] { return cancelled.load(); };
  callbacks.record_trial = [&](const v1::TrialRecord& trial) -> absl::Status {
    v1::ReportTrialRequest request;
    request.set_worker_id(options_.worker_id);
    request.set_job_id(job_id);
    request.set_attempt(lease.attempt());
    *request.mutable_trial() = trial;
    v1::ReportTrialResponse response;
    auto context = NewContext(30);
    grpc::Status status = control_->ReportTrial(context.get(), request, &response);
    if (!status.ok()) {
      return absl::UnavailableError(absl::StrCat("ReportTrial: ", status.error_message()));
    }
    return absl::OkStatus();
  };
  absl::StatusOr<std::vector<v1::Variant>> variants = runner_.Run(lease, callbacks);

  {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
  }
  cv.notify_all();
  heartbeat.join();

  if (cancelled.load()) {
    Log(options_.worker_id, absl::StrCat(job_id, " was cancelled; stopped"));
    return;
  }
  grpc::Status status;
  if (variants.ok()) {
    v1::CompleteJobRequest request;
    request.set_worker_id(options_.worker_id);
    request.set_job_id(job_id);
    request.set_attempt(lease.attempt());
    for (v1::Variant& variant : *variants) *request.add_variants() = std::move(variant);
    v1::CompleteJobResponse response;
    auto context = NewContext(30);
    status = control_->CompleteJob(context.get(), request, &response);
    Log(options_.worker_id, absl::StrCat(job_id, " succeeded"));
  } else {
    v1::FailJobRequest request;
    request.set_worker_id(options_.worker_id);
    request.set_job_id(job_id);
    request.set_attempt(lease.attempt());
    bool retryable = false;
    *request.mutable_error() = DescribeFailure(variants.status(), &retryable);
    request.set_retryable(retryable);
    v1::FailJobResponse response;
    auto context = NewContext(30);
    status = control_->FailJob(context.get(), request, &response);
    Log(options_.worker_id, absl::StrCat(job_id, " failed: ", variants.status().ToString()));
  }
  if (!status.ok()) {
    // Refused (the job was cancelled or moved on) or the daemon is away: in
    // both cases the daemon's record stands, and an unreported attempt is
    // retried once its lease expires.
    Log(options_.worker_id,
        absl::StrCat("reporting ", job_id, " failed: ", status.error_message()));
  }
}

}  // namespace squeeze::worker
