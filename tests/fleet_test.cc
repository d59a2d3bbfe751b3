// Workers on "other hosts": squeeze-worker processes started by the test,
// not by the daemon, pulling work over TCP with a worker token. Also the
// memory admission check and TLS on the public address.
#include <chrono>
#include <thread>

#include "core/model/file_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util/daemon_process.h"
#include "tests/test_util/subprocess.h"

namespace squeeze::testing {
namespace {

using ::testing::HasSubstr;

const std::string kDemoModel = DaemonProcess::SourcePath("deploy/demo/mlp.safetensors");

v1::SubmitJobRequest Int8Job(const std::string& model_sha) {
  v1::SubmitJobRequest request;
  request.mutable_spec()->mutable_model()->set_sha256(model_sha);
  request.mutable_spec()->mutable_recipe()->add_passes()->mutable_quantize()->set_bits(8);
  return request;
}

v1::Job WaitWhileQueued(client::SqueezeClient& client, const std::string& id, int timeout_ms) {
  v1::Job job;
  for (int waited = 0; waited < timeout_ms; waited += 100) {
    job = *client.GetJob(id);
    if (job.state() != v1::QUEUED && job.state() != v1::RUNNING) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return job;
}

pid_t StartRemoteWorker(const DaemonProcess& daemon, const TempDir& dir, const std::string& id,
                        const std::string& token, int64_t memory_bytes) {
  return StartProcess({DaemonProcess::BinaryPath("squeeze-worker"),
                       "--daemon=" + daemon.worker_address(), "--worker_id=" + id,
                       "--scratch_dir=" + dir.Join(id), "--max_jobs=1", "--poll_seconds=1",
                       "--memory_bytes=" + std::to_string(memory_bytes)},
                      {{"SQUEEZE_WORKER_TOKEN", token}}, dir.Join(id + ".log"));
}

TEST(FleetTest, RemoteWorkerOverTcpRunsTheJob) {
  DaemonProcess daemon({"--cpu_workers=0", "--worker_listen=127.0.0.1:0"});
  ASSERT_TRUE(daemon.Start());
  ASSERT_FALSE(daemon.worker_address().empty());
  auto alice = daemon.Client(kAliceToken);
  const std::string model = alice->UploadFile(kDemoModel, v1::BLOB_KIND_MODEL)->blob().sha256();
  auto submitted = alice->SubmitJob(Int8Job(model));
  ASSERT_TRUE(submitted.ok()) << submitted.status();

  TempDir dir;
  pid_t worker = StartRemoteWorker(daemon, dir, "gpu-host-7", kWorkerToken, int64_t{1} << 30);
  EXPECT_EQ(WaitProcess(worker, 60'000), 0) << core::model::ReadFile(dir.Join("gpu-host-7.log")).value_or("");
  v1::Job job = *alice->GetJob(submitted->job().id());
  EXPECT_EQ(job.state(), v1::SUCCEEDED) << job.DebugString();
  EXPECT_EQ(job.worker(), "gpu-host-7");
}

TEST(FleetTest, TenantTokenCannotRunAWorker) {
  DaemonProcess daemon({"--cpu_workers=0", "--worker_listen=127.0.0.1:0"});
  ASSERT_TRUE(daemon.Start());
  TempDir dir;
  pid_t worker = StartRemoteWorker(daemon, dir, "impostor", kAliceToken, int64_t{1} << 30);
  EXPECT_EQ(WaitProcess(worker, 30'000), 1);
  EXPECT_THAT(core::model::ReadFile(dir.Join("impostor.log")).value_or(""),
              HasSubstr("may not call the worker protocol"));
}

TEST(FleetTest, JobsGoOnlyToWorkersWithEnoughMemory) {
  DaemonProcess daemon({"--cpu_workers=0", "--worker_listen=127.0.0.1:0"});
  ASSERT_TRUE(daemon.Start());
  auto alice = daemon.Client(kAliceToken);
  const std::string model = alice->UploadFile(kDemoModel, v1::BLOB_KIND_MODEL)->blob().sha256();
  auto submitted = alice->SubmitJob(Int8Job(model));
  ASSERT_TRUE(submitted.ok());

  TempDir dir;
  // The demo model needs ~12 MB by the core's estimate; 1 MB is too little.
  pid_t small = StartRemoteWorker(daemon, dir, "tiny-device", kWorkerToken, 1'000'000);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(alice->GetJob(submitted->job().id())->state(), v1::QUEUED);
  pid_t big = StartRemoteWorker(daemon, dir, "big-server", kWorkerToken, int64_t{1} << 30);
  EXPECT_EQ(WaitProcess(big, 60'000), 0);
  v1::Job job = WaitWhileQueued(*alice, submitted->job().id(), 10'000);
  EXPECT_EQ(job.state(), v1::SUCCEEDED);
  EXPECT_EQ(job.worker(), "big-server");
  kill(small, SIGTERM);
  WaitProcess(small, 15'000);
}

TEST(FleetTest, PublicAddressServesTls) {
  TempDir certs;
  CommandResult made = RunCommand(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " +
      certs.Join("key.pem") + " -out " + certs.Join("cert.pem"));
  ASSERT_EQ(made.exit_code, 0) << made.output;
  DaemonProcess daemon({"--cpu_workers=0", "--tls_cert=" + certs.Join("cert.pem"),
                        "--tls_key=" + certs.Join("key.pem")});
  ASSERT_TRUE(daemon.Start());

  client::ClientOptions options;
  options.address = daemon.address();
  options.token = kAliceToken;
  options.tls_ca_path = certs.Join("cert.pem");
  auto secure = client::SqueezeClient::Connect(options);
  ASSERT_TRUE(secure.ok());
  auto profiles = (*secure)->ListDeviceProfiles();
  EXPECT_TRUE(profiles.ok()) << profiles.status();

  options.tls_ca_path.clear();
  options.call_timeout = absl::Seconds(3);
  auto plaintext = *client::SqueezeClient::Connect(options);
  EXPECT_FALSE(plaintext->ListDeviceProfiles().ok());
}

}  // namespace
}  // namespace squeeze::testing
