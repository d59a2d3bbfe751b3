// Worker: the loop of a squeeze-worker process. It asks the daemon for a job
// (long poll), runs it with a JobRunner while a heartbeat thread renews the
// lease once a second, reports progress and learns of cancellation, then
// completes or fails the job. A job that cannot be reported (the daemon is
// gone) is simply dropped: its lease expires and the daemon retries it.
#ifndef SQUEEZE_WORKER_WORKER_H_
#define SQUEEZE_WORKER_WORKER_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "client/client.h"
#include "squeeze/v1/worker.grpc.pb.h"
#include "worker/job_runner.h"

namespace squeeze::worker {

struct WorkerOptions {
  client::ClientOptions connection;  // Daemon address, worker token, TLS.
  std::string worker_id;
  std::string scratch_dir;
  int64_t memory_bytes = 0;
  std::string hardware;
  std::string device_profile;   // The profile of this host's hardware (see JobRunnerOptions).
  double poll_seconds = 10;     // Long-poll length of AcquireJob.
  double heartbeat_seconds = 1;
  int max_jobs = 0;             // Stop after this many jobs; 0 = never.
};

class Worker {
 public:
  static absl::StatusOr<std::unique_ptr<Worker>> Create(WorkerOptions options);

  // Runs until `stop` turns true (checked between polls and jobs) or
  // max_jobs jobs ran.
  absl::Status Run(const std::atomic<bool>& stop);

 private:
  Worker(WorkerOptions options, std::shared_ptr<grpc::Channel> channel);
  void RunOne(const v1::AcquireJobResponse& lease);
  std::unique_ptr<grpc::ClientContext> NewContext(double timeout_seconds) const;

  WorkerOptions options_;
  std::unique_ptr<client::SqueezeClient> blobs_;
  std::unique_ptr<v1::WorkerControl::Stub> control_;
  JobRunner runner_;
};

}  // namespace squeeze::worker

#endif  // SQUEEZE_WORKER_WORKER_H_
