// DaemonProcess: a real squeezed (with its real local workers) started on
// loopback for one integration test, with a temporary data directory and a
// token file holding two tenants (alice, bob) and one remote-worker token.
// Restart() starts it again on the same data directory; Kill() sends SIGKILL.
#ifndef SQUEEZE_TESTS_TEST_UTIL_DAEMON_PROCESS_H_
#define SQUEEZE_TESTS_TEST_UTIL_DAEMON_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "client/client.h"
#include "tests/test_util/temp_dir.h"

namespace squeeze::testing {

inline constexpr char kAliceToken[] = "alice-token-0123456789";
inline constexpr char kBobToken[] = "bob-token-0123456789abc";
inline constexpr char kWorkerToken[] = "fleet-worker-token-0123456789";

class DaemonProcess {
 public:
  // `extra_flags` are passed to squeezed as they are (e.g. "--cpu_workers=2").
  explicit DaemonProcess(std::vector<std::string> extra_flags = {});
  ~DaemonProcess();  // SIGTERM, then SIGKILL; prints the log if the test failed.

  // Starts squeezed and waits until it serves. False (and the log printed)
  // when it does not come up within 30 s.
  bool Start();
  void Kill();                // SIGKILL, and reap.
  bool Restart() { return Start(); }
  bool Alive();

  pid_t pid() const { return pid_; }
  // Process ids of the daemon's children (its local workers).
  std::vector<pid_t> WorkerPids() const;

  const std::string& address() const { return grpc_address_; }
  const std::string& metrics_address() const { return metrics_address_; }
  // The --worker_listen address, when the test passed one.
  const std::string& worker_address() const { return worker_address_; }
  std::string worker_socket() const { return data_dir_.Join("worker.sock"); }
  const TempDir& data_dir() const { return data_dir_; }
  std::string Log() const;

  std::unique_ptr<client::SqueezeClient> Client(const std::string& token) const;

  // Paths in the repository and the build tree.
  static std::string SourcePath(const std::string& relative);
  static std::string BinaryPath(const std::string& name);

 private:
  std::vector<std::string> extra_flags_;
  TempDir data_dir_;
  pid_t pid_ = -1;
  std::string grpc_address_;
  std::string metrics_address_;
  std::string worker_address_;
};

}  // namespace squeeze::testing

#endif  // SQUEEZE_TESTS_TEST_UTIL_DAEMON_PROCESS_H_
