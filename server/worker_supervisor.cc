#include "server/worker_supervisor.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace squeeze::server {
namespace {

constexpr int64_t kMaxBackoffMicros = 30'000'000;
// A worker that lived this long counts as healthy: its backoff resets.
constexpr int64_t kHealthyMicros = 60'000'000;

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("killed by signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)),
                        ")");
  }
  return absl::StrCat("ended with wait status ", status);
}

}  // namespace

int CountVisibleGpus() {
  int count = 0;
  for (int i = 0; i < 64; ++i) {
    if (std::filesystem::exists(absl::StrCat("/dev/nvidia", i))) ++count;
  }
  return count;
}

WorkerSupervisor::WorkerSupervisor(
    WorkerSupervisorOptions options,
    std::function<void(const std::string&, const std::string&)> on_exit,
    std::function<void()> on_restart)
    : options_(std::move(options)), on_exit_(std::move(on_exit)),
      on_restart_(std::move(on_restart)) {
  int count = options_.gpus > 0 ? options_.gpus : options_.cpu_workers;
  for (int i = 0; i < count; ++i) {
    Slot slot;
    slot.index = i;
    slot.gpu = options_.gpus > 0 ? i : -1;
    slots_.push_back(slot);
  }
}

WorkerSupervisor::~WorkerSupervisor() { Stop(); }

void WorkerSupervisor::Start() {
  if (slots_.empty()) return;
  thread_ = std::thread([this] { Run(); });
}

void WorkerSupervisor::Spawn(Slot& slot) {
  ++slot.generation;
  slot.worker_id = absl::StrCat("local-", slot.gpu >= 0 ? "gpu" : "cpu", slot.index, "-g",
                                slot.generation, "-", getpid());
  std::string scratch = absl::StrCat(options_.scratch_dir, "/", slot.worker_id);
  std::vector<std::string> args = {
      options_.worker_binary,
      absl::StrCat("--daemon=", options_.daemon_address),
      absl::StrCat("--worker_id=", slot.worker_id),
      absl::StrCat("--scratch_dir=", scratch),
  };
  if (options_.memory_bytes_per_worker > 0) {
    args.push_back(absl::StrCat("--memory_bytes=", options_.memory_bytes_per_worker));
  }
  if (!options_.device_profile.empty()) {
    args.push_back(absl::StrCat("--device_profile=", options_.device_profile));
  }
  // Everything the child needs is built before fork: the daemon has threads,
  // so the child may only make async-signal-safe calls until exec.
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    if (entry.rfind("SQUEEZE_WORKER_TOKEN=", 0) == 0 || entry.rfind("CUDA_VISIBLE_DEVICES=", 0) == 0) {
      continue;
    }
    env.emplace_back(entry);
  }
  env.push_back("SQUEEZE_WORKER_TOKEN=" + options_.worker_token);
  if (slot.gpu >= 0) env.push_back(absl::StrCat("CUDA_VISIBLE_DEVICES=", slot.gpu));
  std::vector<char*> argv, envp;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  for (std::string& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    // A worker must not outlive its daemon: a restarted daemon hands the
    // job to new workers, and an orphan would only waste the machine.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execve(argv[0], argv.data(), envp.data());
    static const char kMessage[] = "squeezed: cannot exec squeeze-worker\n";
    (void)!write(2, kMessage, sizeof(kMessage) - 1);
    _exit(127);
  }
  if (pid < 0) {
    std::fprintf(stderr, "squeezed: fork failed: %s\n", std::strerror(errno));
    slot.restart_at_micros = NowMicros() + slot.backoff_micros;
    return;
  }
  slot.pid = pid;
  slot.started_micros = NowMicros();
  std::fprintf(stderr, "squeezed: started worker %s (pid %d)\n", slot.worker_id.c_str(), pid);
}

void WorkerSupervisor::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (Slot& slot : slots_) Spawn(slot);
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::milliseconds(100));
    if (stopping_) break;
    const int64_t now = NowMicros();
    for (Slot& slot : slots_) {
      if (slot.pid > 0) {
        int status = 0;
        if (waitpid(slot.pid, &status, WNOHANG) != slot.pid) continue;
        std::string reason = DescribeExit(status);
        std::fprintf(stderr, "squeezed: worker %s (pid %d) %s\n", slot.worker_id.c_str(),
                     slot.pid, reason.c_str());
        slot.pid = -1;
        slot.backoff_micros = now - slot.started_micros > kHealthyMicros
                                  ? 1'000'000
                                  : std::min(slot.backoff_micros * 2, kMaxBackoffMicros);
        slot.restart_at_micros = now + std::min<int64_t>(slot.backoff_micros / 2, 1'000'000);
        std::string worker_id = slot.worker_id;
        lock.unlock();
        on_exit_(worker_id, reason);
        lock.lock();
        if (stopping_) break;
      } else if (now >= slot.restart_at_micros) {
        on_restart_();
        Spawn(slot);
      }
    }
  }
}

void WorkerSupervisor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (Slot& slot : slots_) {
    if (slot.pid > 0) kill(slot.pid, SIGTERM);
  }
  const int64_t deadline = NowMicros() + 5'000'000;
  for (Slot& slot : slots_) {
    while (slot.pid > 0) {
      int status = 0;
      if (waitpid(slot.pid, &status, WNOHANG) == slot.pid) {
        slot.pid = -1;
      } else if (NowMicros() > deadline) {
        kill(slot.pid, SIGKILL);
        waitpid(slot.pid, &status, 0);
        slot.pid = -1;
      } else {
        usleep(20'000);
      }
    }
  }
}

std::vector<pid_t> WorkerSupervisor::Pids() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<pid_t> pids;
  for (const Slot& slot : slots_) {
    if (slot.pid > 0) pids.push_back(slot.pid);
  }
  return pids;
}

}  // namespace squeeze::server
