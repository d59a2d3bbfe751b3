// WorkerSupervisor: starts the daemon's local squeeze-worker processes and
// keeps them running. Each slot runs one worker; a worker that exits (crash,
// kill -9, out of memory) has its job's attempt ended at once through
// `on_exit`, and is started again after a backoff that doubles while it keeps
// dying young (1 s up to 30 s). Slots are one per visible GPU (each worker
// sees only its GPU through CUDA_VISIBLE_DEVICES) or N CPU slots.
#ifndef SQUEEZE_SERVER_WORKER_SUPERVISOR_H_
#define SQUEEZE_SERVER_WORKER_SUPERVISOR_H_

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace squeeze::server {

struct WorkerSupervisorOptions {
  std::string worker_binary;      // Path of squeeze-worker.
  std::string daemon_address;     // e.g. "unix:/data/worker.sock".
  std::string worker_token;       // Passed in SQUEEZE_WORKER_TOKEN, not argv.
  std::string scratch_dir;        // Each worker gets <scratch_dir>/<worker id>.
  int gpus = 0;                   // Visible GPUs; one worker each when > 0.
  int cpu_workers = 1;            // Workers when there is no GPU.
  int64_t memory_bytes_per_worker = 0;  // Passed as --memory_bytes; 0 lets the worker decide.
  // The device profile of this host's hardware, passed as --device_profile:
  // jobs targeting it are measured rather than predicted.
  std::string device_profile;
};

// Counts /dev/nvidia<N> device nodes, the GPUs a worker could open.
int CountVisibleGpus();

class WorkerSupervisor {
 public:
  // `on_exit(worker_id, reason)` runs on the supervisor thread after a
  // worker process ends; `on_restart()` before each restart.
  WorkerSupervisor(WorkerSupervisorOptions options,
                   std::function<void(const std::string&, const std::string&)> on_exit,
                   std::function<void()> on_restart);
  ~WorkerSupervisor();  // Stops the workers (SIGTERM, then SIGKILL after 5 s).

  void Start();
  void Stop();
  // Worker process ids currently running, for tests and logs.
  std::vector<pid_t> Pids();

 private:
  struct Slot {
    int index = 0;
    int gpu = -1;  // -1: CPU slot.
    int generation = 0;
    pid_t pid = -1;
    std::string worker_id;
    int64_t started_micros = 0;
    int64_t restart_at_micros = 0;
    int64_t backoff_micros = 1'000'000;
  };

  void Run();
  void Spawn(Slot& slot);

  WorkerSupervisorOptions options_;
  std::function<void(const std::string&, const std::string&)> on_exit_;
  std::function<void()> on_restart_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // Guarded by mu_.
  std::vector<Slot> slots_;  // Guarded by mu_.
  std::thread thread_;
};

}  // namespace squeeze::server

#endif  // SQUEEZE_SERVER_WORKER_SUPERVISOR_H_
