// squeeze-worker: pulls compression jobs from squeezed and runs them. The
// daemon starts local workers itself; remote hosts run this by hand or from
// deploy/squeeze-worker.service, pointing --daemon at the daemon's
// --worker_listen address, with a worker token in SQUEEZE_WORKER_TOKEN.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "core/compress/variant_builder.h"
#include "worker/worker.h"

ABSL_FLAG(std::string, daemon, "127.0.0.1:7402", "Daemon address: host:port or unix:/path.");
ABSL_FLAG(std::string, worker_id, "", "Unique worker name; default <hostname>-<pid>.");
ABSL_FLAG(std::string, scratch_dir, "", "Working directory; default /tmp/squeeze-worker-<id>.");
ABSL_FLAG(int64_t, memory_bytes, 0, "Memory offered to jobs; default half of physical memory.");
ABSL_FLAG(std::string, tls_ca, "", "PEM root certificate for a TLS daemon address.");
ABSL_FLAG(double, poll_seconds, 10, "How long one AcquireJob call may wait for work.");
ABSL_FLAG(int, max_jobs, 0, "Exit after this many jobs (0 = run until stopped).");
ABSL_FLAG(std::string, device_profile, "",
          "Device profile this host's hardware matches (e.g. x86-avx2-server): jobs targeting it are "
          "measured here; other targets are predicted from their profiles.");

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true); }

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("squeeze-worker: runs Squeeze compression jobs");
  absl::ParseCommandLine(argc, argv);
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);
  signal(SIGPIPE, SIG_IGN);

  squeeze::worker::WorkerOptions options;
  options.connection.address = absl::GetFlag(FLAGS_daemon);
  options.connection.tls_ca_path = absl::GetFlag(FLAGS_tls_ca);
  const char* token = std::getenv("SQUEEZE_WORKER_TOKEN");
  if (token == nullptr || *token == '\0') {
    std::fprintf(stderr, "squeeze-worker: set SQUEEZE_WORKER_TOKEN to a worker token\n");
    return 2;
  }
  options.connection.token = token;
  options.worker_id = absl::GetFlag(FLAGS_worker_id);
  if (options.worker_id.empty()) {
    char host[256] = {0};
    gethostname(host, sizeof(host) - 1);
    options.worker_id = absl::StrCat(host, "-", getpid());
  }
  options.scratch_dir = absl::GetFlag(FLAGS_scratch_dir);
  if (options.scratch_dir.empty()) options.scratch_dir = "/tmp/squeeze-worker-" + options.worker_id;
  options.memory_bytes = absl::GetFlag(FLAGS_memory_bytes);
  if (options.memory_bytes <= 0) {
    options.memory_bytes = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE) / 2;
  }
  options.hardware = squeeze::core::compress::CpuModelName();
  options.poll_seconds = absl::GetFlag(FLAGS_poll_seconds);
  options.max_jobs = absl::GetFlag(FLAGS_max_jobs);
  options.device_profile = absl::GetFlag(FLAGS_device_profile);

  auto worker = squeeze::worker::Worker::Create(options);
  if (!worker.ok()) {
    std::fprintf(stderr, "squeeze-worker: %s\n", worker.status().ToString().c_str());
    return 1;
  }
  absl::Status status = (*worker)->Run(g_stop);
  if (!status.ok()) {
    std::fprintf(stderr, "squeeze-worker: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
