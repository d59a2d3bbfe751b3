#include "tests/test_util/daemon_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/model/file_io.h"
#include "gtest/gtest.h"

namespace squeeze::testing {
namespace {

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

}  // namespace

std::string DaemonProcess::SourcePath(const std::string& relative) {
  return EnvOr("SQUEEZE_SOURCE_DIR", ".") + "/" + relative;
}

std::string DaemonProcess::BinaryPath(const std::string& name) {
  return EnvOr("SQUEEZE_BUILD_DIR", ".") + "/bin/" + name;
}

DaemonProcess::DaemonProcess(std::vector<std::string> extra_flags)
    : extra_flags_(std::move(extra_flags)) {
  std::ofstream tokens(data_dir_.Join("tokens"));
  tokens << "# kind name token\n"
         << "tenant alice " << kAliceToken << "\n"
         << "tenant bob " << kBobToken << "\n"
         << "worker fleet " << kWorkerToken << "\n";
}

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (pid_ > 0) Kill();
  }
  if (::testing::Test::HasFailure()) std::fprintf(stderr, "--- squeezed log ---\n%s\n", Log().c_str());
}

bool DaemonProcess::Start() {
  const std::string port_file = data_dir_.Join("ports");
  std::filesystem::remove(port_file);
  std::vector<std::string> args = {
      BinaryPath("squeezed"),
      "--data_dir=" + data_dir_.path(),
      "--listen=127.0.0.1:0",
      "--metrics_listen=127.0.0.1:0",
      "--port_file=" + port_file,
      "--devices_dir=" + SourcePath("deploy/devices"),
  };
  args.insert(args.end(), extra_flags_.begin(), extra_flags_.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const std::string log = data_dir_.Join("squeezed.log");
  pid_ = fork();
  if (pid_ == 0) {
    FILE* out = std::fopen(log.c_str(), "a");
    if (out != nullptr) {
      dup2(fileno(out), 1);
      dup2(fileno(out), 2);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  for (int i = 0; i < 300; ++i) {
    absl::StatusOr<std::string> ports = core::model::ReadFile(port_file);
    if (ports.ok()) {
      std::istringstream lines(*ports);
      std::string line;
      while (std::getline(lines, line)) {
        if (line.rfind("grpc=", 0) == 0) grpc_address_ = line.substr(5);
        if (line.rfind("metrics=", 0) == 0) metrics_address_ = line.substr(8);
        if (line.rfind("workers=", 0) == 0) worker_address_ = line.substr(8);
      }
      return true;
    }
    if (!Alive()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::fprintf(stderr, "squeezed did not start:\n%s\n", Log().c_str());
  return false;
}

void DaemonProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

bool DaemonProcess::Alive() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

std::vector<pid_t> DaemonProcess::WorkerPids() const {
  std::vector<pid_t> pids;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // Fields after the ")" that ends the command name: state, then ppid.
    size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(line.substr(close + 2));
    char state;
    pid_t ppid;
    fields >> state >> ppid;
    if (ppid == pid_ && state != 'Z') pids.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return pids;
}

std::string DaemonProcess::Log() const {
  return core::model::ReadFile(data_dir_.Join("squeezed.log")).value_or("(no log)");
}

std::unique_ptr<client::SqueezeClient> DaemonProcess::Client(const std::string& token) const {
  client::ClientOptions options;
  options.address = grpc_address_;
  options.token = token;
  return std::move(client::SqueezeClient::Connect(options)).value();
}

}  // namespace squeeze::testing
