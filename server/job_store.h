// JobStore: the durable record of every job and blob ownership, in SQLite.
//
// Contract:
// - Every method is thread-safe. Writes are group-committed: concurrent
//   writers queue, the writer at the front runs the whole queue in one
//   transaction (each write in its own savepoint, so one failing write does
//   not undo the others) and one fsync makes them all durable. A write has
//   returned OK only once it is on disk.
// - Reads run on a pool of read connections and see the last committed state.
// - State changes follow server/job_state.h; each one is a compare-and-set on
//   (id, state, attempts) inside the transaction, so a stale worker can never
//   overwrite a job that moved on.
// - Tenant isolation: methods that take a tenant see only that tenant's jobs
//   and answer NOT_FOUND for others' (existence is not revealed). An empty
//   tenant means "any" and is used only for workers.
#ifndef SQUEEZE_SERVER_JOB_STORE_H_
#define SQUEEZE_SERVER_JOB_STORE_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/sqlite.h"
#include "squeeze/v1/squeeze.pb.h"
#include "squeeze/v1/worker.pb.h"

namespace squeeze::server {

// One state change, reported after it is committed (for metrics).
struct TransitionEvent {
  v1::JobState from = v1::JOB_STATE_UNSPECIFIED;  // UNSPECIFIED for a new job.
  v1::JobState to = v1::JOB_STATE_UNSPECIFIED;
  double queue_seconds = 0;  // Time just spent QUEUED (when leaving QUEUED).
  double run_seconds = 0;    // Time just spent RUNNING (when leaving RUNNING).
  const v1::Job* job = nullptr;  // The job after the change, when at hand.
};

struct RetryPolicy {
  // Backoff before attempt n+1 after attempt n failed: base * 2^(n-1), capped.
  int64_t base_backoff_micros = 1'000'000;
  int64_t max_backoff_micros = 60'000'000;
  int64_t BackoffMicros(int attempt) const;
};

struct JobStoreOptions {
  std::string path;  // SQLite file; created with its schema when absent.
  RetryPolicy retry;
  // Clock in microseconds since the Unix epoch; tests replace it.
  std::function<int64_t()> now_micros;
  std::function<void(const TransitionEvent&)> on_transition;  // May be empty.
};

struct NewJob {
  std::string tenant;
  v1::JobSpec spec;
  std::string idempotency_key;  // Empty: none.
  int64_t estimated_memory_bytes = 0;
  int max_attempts = 3;
};

struct SubmitResult {
  v1::Job job;
  bool deduplicated = false;
};

struct ListFilter {
  std::vector<v1::JobState> states;          // Empty: all.
  std::map<std::string, std::string> labels;  // All must match.
  int page_size = 50;
  int64_t before_seq = 0;  // Page token: only jobs older than this; 0 = newest.
};

struct ListResult {
  std::vector<v1::Job> jobs;
  int64_t next_before_seq = 0;  // 0 on the last page.
};

struct Lease {
  v1::Job job;
  int attempt = 0;
};

class JobStore {
 public:
  // Opens the database at options.path and brings its schema up to date.
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(JobStoreOptions options);
  ~JobStore();

  // Creates a QUEUED job. With an idempotency key the tenant already used,
  // returns that job with deduplicated = true and creates nothing.
  absl::StatusOr<SubmitResult> Submit(const NewJob& job);

  absl::StatusOr<v1::Job> Get(const std::string& tenant, const std::string& id);
  absl::StatusOr<ListResult> List(const std::string& tenant, const ListFilter& filter);

  // QUEUED -> CANCELLED at once; RUNNING -> CANCELLED, the worker learns it
  // from its next heartbeat. A final job: FAILED_PRECONDITION naming its state.
  absl::StatusOr<v1::Job> Cancel(const std::string& tenant, const std::string& id);

  // Leases the next job for a worker: highest priority first; within a
  // priority, the tenant with the fewest running jobs (fairness), then the
  // oldest job (FIFO). Skips jobs in retry backoff and jobs whose estimated
  // memory exceeds `memory_bytes`. nullopt when nothing is ready.
  absl::StatusOr<std::optional<Lease>> Acquire(const std::string& worker_id,
                                               int64_t memory_bytes,
                                               int64_t lease_micros);

  // Renews the lease and records progress (when given). Returns true when the
  // job was cancelled. FAILED_PRECONDITION when the worker no longer holds
  // this attempt of the job.
  absl::StatusOr<bool> Heartbeat(const std::string& worker_id, const std::string& id,
                                 int attempt, const v1::Progress* progress,
                                 int64_t lease_micros);

  absl::Status Complete(const std::string& worker_id, const std::string& id, int attempt,
                        const std::vector<v1::Variant>& variants);

  // Ends an attempt with an error: back to QUEUED after a backoff when
  // `retryable` and attempts remain, else FAILED.
  absl::Status Fail(const std::string& worker_id, const std::string& id, int attempt,
                    const v1::JobError& error, bool retryable);

  // Treats every RUNNING job whose lease ended before now as a failed
  // attempt (retryable). Returns how many jobs it moved.
  absl::StatusOr<int> ExpireLeases();
  // The same for every job leased by `worker_id`, whatever its lease: used
  // when the daemon saw that worker process die.
  absl::StatusOr<int> ReleaseWorker(const std::string& worker_id, const std::string& reason);

  // Search trials: records one (replacing the same device and trial number)
  // while the worker holds `attempt` of the RUNNING job, and lists every
  // trial of a job, by device then trial number.
  absl::Status RecordTrial(const std::string& worker_id, const std::string& id, int attempt,
                           v1::TrialRecord trial);
  absl::StatusOr<std::vector<v1::TrialRecord>> Trials(const std::string& id);
  // Job counts by state, and QUEUED jobs (the queue depth).
  absl::StatusOr<std::map<v1::JobState, int64_t>> CountByState();

  // Blob ownership: which tenant may read which content-addressed blob.
  absl::Status RecordBlob(const std::string& tenant, const std::string& sha256,
                          int64_t size_bytes, v1::BlobKind kind);
  absl::StatusOr<bool> TenantOwnsBlob(const std::string& tenant, const std::string& sha256);

  // A counter bumped after every committed write. WaitForChange blocks until
  // it differs from `seen` or `timeout_micros` passes, and returns it.
  uint64_t Version();
  uint64_t WaitForChange(uint64_t seen, int64_t timeout_micros);

 private:
  class ReadConnection;
  struct PendingWrite;
  using WriteFn = std::function<absl::Status(Database&, std::vector<TransitionEvent>*)>;

  JobStore(JobStoreOptions options, std::unique_ptr<Database> writer);
  absl::Status Migrate();
  // Runs `fn` in the next group commit and waits until it is durable.
  absl::Status Write(WriteFn fn);
  absl::StatusOr<ReadConnection> Read();

  // Shared by Fail, ExpireLeases and ReleaseWorker, inside a write.
  absl::Status EndAttempt(Database& db, int64_t seq, const v1::JobError& error,
                          bool retryable, std::vector<TransitionEvent>* events);

  JobStoreOptions options_;

  std::mutex write_mu_;
  std::deque<PendingWrite*> write_queue_;  // Guarded by write_mu_.
  std::unique_ptr<Database> writer_;       // Used only by the front writer.

  std::mutex read_mu_;
  std::vector<std::unique_ptr<Database>> idle_readers_;  // Guarded by read_mu_.

  std::mutex version_mu_;
  std::condition_variable version_cv_;
  uint64_t version_ = 0;  // Guarded by version_mu_.
};

}  // namespace squeeze::server

#endif  // SQUEEZE_SERVER_JOB_STORE_H_
