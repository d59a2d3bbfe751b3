// A real Prometheus server (Debian's `prometheus`) scrapes squeezed and
// answers a query about the jobs it saw.
#include <chrono>
#include <fstream>
#include <thread>

#include "core/model/file_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util/daemon_process.h"
#include "tests/test_util/http_get.h"
#include "tests/test_util/subprocess.h"

namespace squeeze::testing {
namespace {

using ::testing::HasSubstr;

TEST(PrometheusTest, RealServerScrapesTheDaemon) {
  if (RunCommand("command -v prometheus").exit_code != 0) {
    GTEST_SKIP() << "prometheus is not installed (scripts/install-deps.sh installs it)";
  }
  DaemonProcess daemon;
  ASSERT_TRUE(daemon.Start());
  auto alice = daemon.Client(kAliceToken);
  const std::string model =
      alice->UploadFile(DaemonProcess::SourcePath("deploy/demo/mlp.safetensors"), v1::BLOB_KIND_MODEL)
          ->blob()
          .sha256();
  v1::SubmitJobRequest request;
  request.mutable_spec()->mutable_model()->set_sha256(model);
  request.mutable_spec()->mutable_recipe()->add_passes()->mutable_quantize()->set_bits(8);
  auto job = alice->WatchJob(alice->SubmitJob(request)->job().id(), [](const v1::Job&) {});
  ASSERT_TRUE(job.ok());
  ASSERT_EQ(job->state(), v1::SUCCEEDED);

  TempDir dir;
  std::ofstream(dir.Join("prometheus.yml"))
      << "global:\n  scrape_interval: 1s\n"
      << "scrape_configs:\n  - job_name: squeezed\n    static_configs:\n"
      << "      - targets: ['" << daemon.metrics_address() << "']\n";
  const std::string listen = "127.0.0.1:" + std::to_string(FreePort());
  pid_t prometheus = StartProcess(
      {"/usr/bin/prometheus", "--config.file=" + dir.Join("prometheus.yml"),
       "--storage.tsdb.path=" + dir.Join("tsdb"), "--web.listen-address=" + listen},
      {}, dir.Join("prometheus.log"));

  std::string answer;
  for (int i = 0; i < 60; ++i) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    auto body = HttpGet(listen, "/api/v1/query?query=squeeze_jobs%7Bstate%3D%22SUCCEEDED%22%7D");
    if (body.ok() && body->find("\"result\":[{") != std::string::npos) {
      answer = *body;
      break;
    }
  }
  kill(prometheus, SIGTERM);
  WaitProcess(prometheus, 10'000);
  ASSERT_FALSE(answer.empty()) << core::model::ReadFile(dir.Join("prometheus.log")).value_or("");
  EXPECT_THAT(answer, HasSubstr("\"job\":\"squeezed\""));
  EXPECT_THAT(answer, HasSubstr("\"value\":["));
  EXPECT_THAT(answer, HasSubstr(",\"1\"]"));  // One succeeded job.
}

}  // namespace
}  // namespace squeeze::testing
