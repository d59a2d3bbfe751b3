// squeezed: the Squeeze daemon. Wires the job store, blob store, scheduler,
// gRPC services, Prometheus exposer and local worker supervisor together.
// Everything it keeps lives under --data_dir:
//   jobs.db (+ WAL)   the SQLite job store
//   blobs/            content-addressed models, datasets and artifacts
//   tokens            the bearer-token file (unless --token_file says otherwise)
//   worker.sock       the unix socket local workers connect to
//   scratch/          working space of local workers
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <random>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/model/file_io.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "prometheus/exposer.h"
#include "server/auth.h"
#include "server/blob_store.h"
#include "server/device_profiles.h"
#include "server/job_service.h"
#include "server/job_store.h"
#include "server/metrics.h"
#include "server/scheduler.h"
#include "server/worker_service.h"
#include "server/worker_supervisor.h"

ABSL_FLAG(std::string, data_dir, "squeeze-data", "Directory for the job store, blobs and sockets.");
ABSL_FLAG(std::string, listen, "127.0.0.1:7400", "Public gRPC address (host:port; port 0 picks one).");
ABSL_FLAG(std::string, worker_listen, "",
          "Extra TCP address for remote workers, e.g. 0.0.0.0:7402. Empty: unix socket only.");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:7401",
          "Prometheus /metrics address (host:port; port 0 picks one). Empty disables.");
ABSL_FLAG(std::string, token_file, "", "Bearer-token file; default <data_dir>/tokens.");
ABSL_FLAG(std::string, devices_dir, SQUEEZE_DEFAULT_DEVICES_DIR,
          "Directory of device profile *.textproto files.");
ABSL_FLAG(std::string, local_device, "x86-avx2-server",
          "Device profile that describes this host for jobs that name no target device.");
ABSL_FLAG(int, cpu_workers, 1, "Local CPU worker processes when no GPU is visible.");
ABSL_FLAG(int, gpu_workers, -1,
          "Local GPU worker processes: -1 = one per visible GPU, 0 = none.");
ABSL_FLAG(std::string, worker_binary, "", "Path of squeeze-worker; default: beside squeezed.");
ABSL_FLAG(int64_t, worker_memory_bytes, 0,
          "Memory each local worker offers jobs (admission check); 0 = the worker decides.");
ABSL_FLAG(int, max_attempts, 3, "Attempts of a job before it fails, unless the job sets its own.");
ABSL_FLAG(double, lease_seconds, 15, "A worker silent this long loses its job to a retry.");
ABSL_FLAG(double, retry_backoff_seconds, 1, "First retry backoff; doubles per attempt, max 60 s.");
ABSL_FLAG(int64_t, max_upload_bytes, int64_t{2} << 30, "Largest blob an upload may declare.");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: serve the public address over TLS.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert.");
ABSL_FLAG(std::string, port_file, "",
          "When set, write 'grpc=', 'metrics=' and 'workers=' HOST:PORT lines here once serving.");

namespace squeeze::server {
namespace {

std::string RandomToken() {
  std::random_device device;
  std::string token;
  for (int i = 0; i < 4; ++i) token += absl::StrFormat("%08x", device());
  return token;
}

std::string HostOf(const std::string& address) {
  return address.substr(0, address.rfind(':'));
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "squeezed: %s\n", std::string(status.message()).c_str());
  return 1;
}

int Main() {
  namespace fs = std::filesystem;
  const std::string data_dir = fs::absolute(absl::GetFlag(FLAGS_data_dir)).string();
  std::error_code error;
  fs::create_directories(data_dir + "/scratch", error);
  if (error) return Fail(absl::UnavailableError(absl::StrCat("cannot create ", data_dir, ": ", error.message())));

  std::string token_file = absl::GetFlag(FLAGS_token_file);
  if (token_file.empty()) token_file = data_dir + "/tokens";
  absl::StatusOr<TokenAuthenticator> auth = TokenAuthenticator::LoadFile(token_file);
  if (!auth.ok()) {
    return Fail(absl::Status(auth.status().code(),
                             absl::StrCat("token file: ", auth.status().message(),
                                          " (format: deploy/tokens.example)")));
  }
  const std::string worker_token = RandomToken();
  if (absl::Status added = auth->Add(worker_token, {Principal::Kind::kWorker, "local"}); !added.ok()) {
    return Fail(added);
  }

  absl::StatusOr<DeviceProfiles> devices = DeviceProfiles::LoadDirectory(absl::GetFlag(FLAGS_devices_dir));
  if (!devices.ok()) return Fail(devices.status());
  if (devices->Find(absl::GetFlag(FLAGS_local_device)) == nullptr) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--local_device '", absl::GetFlag(FLAGS_local_device), "' is not a known profile")));
  }

  Metrics metrics;
  JobStoreOptions store_options;
  store_options.path = data_dir + "/jobs.db";
  store_options.retry.base_backoff_micros =
      static_cast<int64_t>(absl::GetFlag(FLAGS_retry_backoff_seconds) * 1e6);
  store_options.on_transition = [&metrics](const TransitionEvent& event) {
    metrics.RecordTransition(event);
  };
  absl::StatusOr<std::unique_ptr<JobStore>> store = JobStore::Open(store_options);
  if (!store.ok()) return Fail(store.status());
  absl::StatusOr<std::unique_ptr<BlobStore>> blobs = BlobStore::Open(data_dir + "/blobs");
  if (!blobs.ok()) return Fail(blobs.status());

  SchedulerOptions scheduler_options;
  scheduler_options.default_max_attempts = absl::GetFlag(FLAGS_max_attempts);
  scheduler_options.lease_micros = static_cast<int64_t>(absl::GetFlag(FLAGS_lease_seconds) * 1e6);
  scheduler_options.local_device = absl::GetFlag(FLAGS_local_device);
  Scheduler scheduler(store->get(), blobs->get(), &*devices, scheduler_options);

  std::atomic<bool> shutting_down{false};
  JobServiceOptions job_options;
  job_options.max_upload_bytes = absl::GetFlag(FLAGS_max_upload_bytes);
  JobService job_service(job_options, &*auth, &scheduler, store->get(), blobs->get(), &*devices,
                         &metrics, &shutting_down);
  WorkerService worker_service(&*auth, &scheduler, &metrics, &shutting_down);

  std::unique_ptr<prometheus::Exposer> exposer;
  std::string metrics_address;
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    try {
      exposer = std::make_unique<prometheus::Exposer>(absl::GetFlag(FLAGS_metrics_listen));
    } catch (const std::exception& e) {
      return Fail(absl::UnavailableError(absl::StrCat("metrics: cannot listen on ",
                                                      absl::GetFlag(FLAGS_metrics_listen), ": ", e.what())));
    }
    exposer->RegisterCollectable(metrics.registry());
    metrics_address = absl::StrCat(HostOf(absl::GetFlag(FLAGS_metrics_listen)), ":",
                                   exposer->GetListeningPorts().at(0));
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> public_credentials = grpc::InsecureServerCredentials();
  if (!absl::GetFlag(FLAGS_tls_cert).empty()) {
    absl::StatusOr<std::string> cert = core::model::ReadFile(absl::GetFlag(FLAGS_tls_cert));
    absl::StatusOr<std::string> key = core::model::ReadFile(absl::GetFlag(FLAGS_tls_key));
    if (!cert.ok()) return Fail(cert.status());
    if (!key.ok()) return Fail(key.status());
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    public_credentials = grpc::SslServerCredentials(ssl);
  }
  int public_port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), public_credentials, &public_port);
  const std::string socket_path = data_dir + "/worker.sock";
  fs::remove(socket_path, error);
  builder.AddListeningPort("unix:" + socket_path, grpc::InsecureServerCredentials());
  int worker_port = 0;
  if (!absl::GetFlag(FLAGS_worker_listen).empty()) {
    builder.AddListeningPort(absl::GetFlag(FLAGS_worker_listen), public_credentials, &worker_port);
  }
  builder.SetMaxReceiveMessageSize(8 << 20);
  builder.RegisterService(&job_service);
  builder.RegisterService(&worker_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || public_port == 0 ||
      (!absl::GetFlag(FLAGS_worker_listen).empty() && worker_port == 0)) {
    return Fail(absl::UnavailableError(
        absl::StrCat("cannot listen on ", absl::GetFlag(FLAGS_listen), " or unix:", socket_path)));
  }
  const std::string public_address = absl::StrCat(HostOf(absl::GetFlag(FLAGS_listen)), ":", public_port);
  std::fprintf(stderr, "squeezed: serving on %s (workers: unix:%s), metrics on %s, data in %s\n",
               public_address.c_str(), socket_path.c_str(),
               metrics_address.empty() ? "(off)" : metrics_address.c_str(), data_dir.c_str());

  std::string worker_binary = absl::GetFlag(FLAGS_worker_binary);
  if (worker_binary.empty()) {
    worker_binary = (fs::read_symlink("/proc/self/exe").parent_path() / "squeeze-worker").string();
  }
  WorkerSupervisorOptions supervisor_options;
  supervisor_options.worker_binary = worker_binary;
  supervisor_options.daemon_address = "unix:" + socket_path;
  supervisor_options.worker_token = worker_token;
  supervisor_options.scratch_dir = data_dir + "/scratch";
  const int gpu_flag = absl::GetFlag(FLAGS_gpu_workers);
  supervisor_options.gpus = gpu_flag >= 0 ? gpu_flag : CountVisibleGpus();
  supervisor_options.cpu_workers = absl::GetFlag(FLAGS_cpu_workers);
  supervisor_options.memory_bytes_per_worker = absl::GetFlag(FLAGS_worker_memory_bytes);
  supervisor_options.device_profile = absl::GetFlag(FLAGS_local_device);
  WorkerSupervisor supervisor(
      supervisor_options,
      [&scheduler](const std::string& worker_id, const std::string& reason) {
        absl::Status released = scheduler.ReleaseWorker(worker_id, reason);
        if (!released.ok()) {
          std::fprintf(stderr, "squeezed: releasing %s: %s\n", worker_id.c_str(),
                       std::string(released.message()).c_str());
        }
      },
      [&metrics] { metrics.RecordWorkerRestart(); });
  supervisor.Start();

  // Housekeeping: leases, and the gauges that are counts of stored state.
  std::mutex housekeeping_mu;
  std::condition_variable housekeeping_cv;
  std::thread housekeeping([&] {
    std::unique_lock<std::mutex> lock(housekeeping_mu);
    while (!shutting_down.load()) {
      lock.unlock();
      if (absl::Status expired = scheduler.ExpireLeases(); !expired.ok()) {
        std::fprintf(stderr, "squeezed: lease expiry: %s\n", std::string(expired.message()).c_str());
      }
      if (auto counts = (*store)->CountByState(); counts.ok()) metrics.SetJobCounts(*counts);
      WorkerCounts workers = scheduler.CountWorkers();
      metrics.SetWorkers(workers.idle, workers.busy);
      lock.lock();
      housekeeping_cv.wait_for(lock, std::chrono::seconds(1), [&] { return shutting_down.load(); });
    }
  });

  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    absl::Status written = core::model::WriteFileAtomically(
        absl::GetFlag(FLAGS_port_file),
        absl::StrCat("grpc=", public_address, "\nmetrics=", metrics_address, "\nworkers=",
                     worker_port == 0 ? std::string()
                                      : absl::StrCat(HostOf(absl::GetFlag(FLAGS_worker_listen)),
                                                     ":", worker_port),
                     "\n"));
    if (!written.ok()) std::fprintf(stderr, "squeezed: port file: %s\n", std::string(written.message()).c_str());
  }

  // Wait for SIGINT or SIGTERM (blocked in every thread since main started).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  std::fprintf(stderr, "squeezed: %s, shutting down\n", strsignal(signal_number));

  shutting_down.store(true);
  housekeeping_cv.notify_all();
  housekeeping.join();
  supervisor.Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return 0;
}

}  // namespace
}  // namespace squeeze::server

int main(int argc, char** argv) {
  // Block the shutdown signals before any thread starts, so only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  absl::SetProgramUsageMessage("squeezed: the Squeeze model-compression daemon");
  absl::ParseCommandLine(argc, argv);
  return squeeze::server::Main();
}
