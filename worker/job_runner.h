// JobRunner: runs one leased job inside a squeeze-worker process. It fetches
// the job's blobs, builds one variant per target device with the core
// library, uploads each artifact and returns the variants for CompleteJob.
// It knows nothing of leases: progress goes out through `report` and a
// cancellation comes in through `cancelled`, both owned by the Worker.
#ifndef SQUEEZE_WORKER_JOB_RUNNER_H_
#define SQUEEZE_WORKER_JOB_RUNNER_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "core/compress/graph_variant_builder.h"
#include "squeeze/v1/squeeze.pb.h"
#include "squeeze/v1/worker.pb.h"

namespace squeeze::worker {

struct JobRunnerOptions {
  std::string scratch_dir;  // Blob cache and artifacts; created if missing.
  // The device profile this worker's hardware matches (e.g.
  // "x86-avx2-server"); jobs targeting it are measured, others predicted.
  // Jobs without target devices always run on "local", which is measured.
  std::string device_profile;
  std::string hardware;  // CPU or GPU model, for manifests.
};

// How a running job talks to the Worker that owns its lease.
struct RunCallbacks {
  std::function<void(const v1::Progress&)> report;
  std::function<bool()> cancelled;
  // Search jobs: records a trial durably (WorkerControl.ReportTrial).
  std::function<absl::Status(const v1::TrialRecord&)> record_trial;
};

class JobRunner {
 public:
  // `blobs` (borrowed) downloads inputs and uploads artifacts.
  JobRunner(JobRunnerOptions options, client::SqueezeClient* blobs)
      : options_(std::move(options)), blobs_(blobs) {}

  // Runs the job. CANCELLED when `cancelled` turned true; other errors carry
  // the failing pass and layer in the JobError that Describe builds.
  absl::StatusOr<std::vector<v1::Variant>> Run(const v1::AcquireJobResponse& lease,
                                                const RunCallbacks& callbacks);

 private:
  // The local path of a blob, downloading it unless already cached.
  absl::StatusOr<std::string> Fetch(const v1::BlobRef& blob);
  absl::StatusOr<std::vector<v1::Variant>> RunLinearChain(const v1::AcquireJobResponse& lease,
                                                          const std::string& model_path,
                                                          const RunCallbacks& callbacks);
  absl::StatusOr<std::vector<v1::Variant>> RunSearchOnDevice(const v1::AcquireJobResponse& lease,
                                                             const v1::SearchPass& pass,
                                                             core::compress::GraphSession& session,
                                                             const core::compress::TargetDevice& device,
                                                             const RunCallbacks& callbacks,
                                                             const core::compress::ProgressFn& on_progress);
  absl::StatusOr<std::vector<v1::Variant>> RunGraph(const v1::AcquireJobResponse& lease,
                                                    const std::string& model_path, const RunCallbacks& callbacks);

  JobRunnerOptions options_;
  client::SqueezeClient* blobs_;
};

// The JobError for a failed run, and whether another attempt may succeed
// (I/O, unavailability, exhaustion) or not (bad input).
v1::JobError DescribeFailure(const absl::Status& status, bool* retryable);

}  // namespace squeeze::worker

#endif  // SQUEEZE_WORKER_JOB_RUNNER_H_
