// Scheduler: everything squeezed does with jobs, below the gRPC layer. The
// handlers in job_service.cc and worker_service.cc unpack a request, make one
// call here and map the status; validation, admission, leases, retries and
// cancellation live here and in the JobStore, and are tested without gRPC.
#ifndef SQUEEZE_SERVER_SCHEDULER_H_
#define SQUEEZE_SERVER_SCHEDULER_H_

#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/blob_store.h"
#include "server/device_profiles.h"
#include "server/job_store.h"
#include "squeeze/v1/squeeze.pb.h"
#include "squeeze/v1/worker.pb.h"

namespace squeeze::server {

struct SchedulerOptions {
  int default_max_attempts = 3;
  // A worker that misses heartbeats this long loses its job to a retry.
  int64_t lease_micros = 15'000'000;
  // The profile that describes "local" (no target device named).
  std::string local_device = "x86-avx2-server";
};

struct WorkerCounts {
  int64_t idle = 0;
  int64_t busy = 0;
};

class Scheduler {
 public:
  // Borrows everything; all must outlive the Scheduler.
  Scheduler(JobStore* store, BlobStore* blobs, const DeviceProfiles* devices,
            SchedulerOptions options);

  // --- The public API, for one tenant. ---
  // Validates (request, model header, recipe against the model), checks the
  // tenant owns every blob named, estimates memory, and stores the job.
  absl::StatusOr<SubmitResult> Submit(const std::string& tenant,
                                      const v1::SubmitJobRequest& request);
  absl::StatusOr<v1::Job> Get(const std::string& tenant, const std::string& id);
  absl::StatusOr<v1::ListJobsResponse> List(const std::string& tenant,
                                            const v1::ListJobsRequest& request);
  absl::StatusOr<v1::Job> Cancel(const std::string& tenant, const std::string& id);
  // Calls `send` with the job now and after each change of state or
  // progress, until the job is final, `send` returns false (client gone) or
  // `stopped` returns true. NOT_FOUND for an unknown job.
  absl::Status Watch(const std::string& tenant, const std::string& id,
                     const std::function<bool(const v1::Job&)>& send,
                     const std::function<bool()>& stopped);

  // --- The worker protocol. ---
  // Long-polls up to request.wait_seconds for a job.
  absl::StatusOr<v1::AcquireJobResponse> Acquire(const v1::AcquireJobRequest& request,
                                                 const std::function<bool()>& stopped);
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request);
  absl::Status Complete(const v1::CompleteJobRequest& request);
  absl::Status Fail(const v1::FailJobRequest& request);
  // Records a search trial (see JobStore::RecordTrial); its artifact, when
  // it has one, must already be uploaded.
  absl::Status ReportTrial(const v1::ReportTrialRequest& request);
  // --- Daemon housekeeping. ---
  // Expires leases; called about once a second.
  absl::Status ExpireLeases();
  // A local worker process died: its job's attempt ends now.
  absl::Status ReleaseWorker(const std::string& worker_id, const std::string& reason);
  WorkerCounts CountWorkers();

 private:
  void SeeWorker(const std::string& worker_id, bool busy);

  JobStore* store_;
  BlobStore* blobs_;
  const DeviceProfiles* devices_;
  SchedulerOptions options_;

  struct WorkerSeen {
    int64_t last_seen_micros = 0;
    bool busy = false;
  };
  std::mutex workers_mu_;
  std::map<std::string, WorkerSeen> workers_;  // Guarded by workers_mu_.
};

}  // namespace squeeze::server

#endif  // SQUEEZE_SERVER_SCHEDULER_H_
