// End-to-end tests of the service: the real squeezed, its real worker
// processes and SQLite store, on loopback with a temporary data directory.
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <random>
#include <regex>
#include <thread>

#include "core/model/file_io.h"
#include "core/model/linear_chain.h"
#include "core/model/safetensors.h"
#include "core/quant/quantized_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "squeeze/v1/worker.grpc.pb.h"
#include "tests/test_util/daemon_process.h"
#include "tests/test_util/http_get.h"

namespace squeeze::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kDemoModel = DaemonProcess::SourcePath("deploy/demo/mlp.safetensors");
const std::string kDemoCalibration = DaemonProcess::SourcePath("deploy/demo/calibration.safetensors");

// A model big enough that a job runs for seconds: `layers` square layers.
std::string WriteBigModel(const TempDir& dir, int width, int layers) {
  core::model::LinearChain chain;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0, 1.0f / std::sqrt(static_cast<float>(width)));
  for (int l = 0; l < layers; ++l) {
    core::model::LinearLayer layer;
    layer.name = "layer" + std::to_string(100 + l);
    layer.in = layer.out = width;
    layer.weight.resize(static_cast<size_t>(width) * width);
    for (float& w : layer.weight) w = normal(rng);
    chain.layers.push_back(std::move(layer));
  }
  const std::string path = dir.Join("big.safetensors");
  EXPECT_TRUE(core::model::WriteFileAtomically(
                  path, core::model::SerializeSafetensors(
                            core::model::LinearChainToSafetensors(chain)))
                  .ok());
  return path;
}

// An evaluation set that makes a job on the big model run for seconds: the
// worker evaluates the float and the quantized model on every row.
std::string WriteEvaluationSet(const TempDir& dir, int width, int rows) {
  std::vector<float> inputs(static_cast<size_t>(width) * rows);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uniform(0, 1);
  for (float& x : inputs) x = uniform(rng);
  core::model::SafetensorsFile file;
  file.tensors["inputs"] = core::model::Tensor::FromFloats({rows, width}, inputs);
  const std::string path = dir.Join("evaluation.safetensors");
  EXPECT_TRUE(
      core::model::WriteFileAtomically(path, core::model::SerializeSafetensors(file)).ok());
  return path;
}

v1::SubmitJobRequest QuantizeRequest(const std::string& model_sha, int bits,
                                     const std::string& calibration_sha = "") {
  v1::SubmitJobRequest request;
  request.mutable_spec()->mutable_model()->set_sha256(model_sha);
  if (!calibration_sha.empty()) {
    request.mutable_spec()->mutable_calibration_dataset()->set_sha256(calibration_sha);
  }
  request.mutable_spec()->mutable_recipe()->add_passes()->mutable_quantize()->set_bits(bits);
  return request;
}

// Polls until the job is in `state` or 60 s pass.
v1::Job WaitForState(client::SqueezeClient& client, const std::string& id, v1::JobState state,
                     bool need_progress = false) {
  v1::Job job;
  for (int i = 0; i < 600; ++i) {
    auto got = client.GetJob(id);
    if (got.ok()) {
      job = *got;
      if (job.state() == state && (!need_progress || job.progress().fraction() > 0)) return job;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "job " << id << " never reached " << v1::JobState_Name(state) << "; last "
                << job.DebugString();
  return job;
}

class ServiceTest : public ::testing::Test {
 protected:
  void StartDaemon(std::vector<std::string> flags = {}) {
    daemon_ = std::make_unique<DaemonProcess>(std::move(flags));
    ASSERT_TRUE(daemon_->Start());
    alice_ = daemon_->Client(kAliceToken);
    bob_ = daemon_->Client(kBobToken);
  }

  std::string Upload(client::SqueezeClient& client, const std::string& path,
                     v1::BlobKind kind = v1::BLOB_KIND_MODEL) {
    auto uploaded = client.UploadFile(path, kind);
    EXPECT_TRUE(uploaded.ok()) << uploaded.status();
    return uploaded.ok() ? uploaded->blob().sha256() : "";
  }

  // A job that runs for a few seconds on this machine, for cancel and kill tests.
  v1::SubmitJobRequest LongJob(int bits) {
    if (long_model_.empty()) {
      long_model_ = Upload(*alice_, WriteBigModel(scratch_, 1024, 24));
      long_evaluation_ = Upload(*alice_, WriteEvaluationSet(scratch_, 1024, 1024),
                                v1::BLOB_KIND_DATASET);
    }
    v1::SubmitJobRequest request = QuantizeRequest(long_model_, bits);
    request.mutable_spec()->mutable_evaluation_dataset()->set_sha256(long_evaluation_);
    return request;
  }

  std::string long_model_;
  std::string long_evaluation_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<client::SqueezeClient> alice_;
  std::unique_ptr<client::SqueezeClient> bob_;
  TempDir scratch_;
};

TEST_F(ServiceTest, SubmitWatchSucceedDownloadAndTheArtifactLoads) {
  StartDaemon();
  const std::string model = Upload(*alice_, kDemoModel);
  const std::string calibration = Upload(*alice_, kDemoCalibration, v1::BLOB_KIND_DATASET);
  auto again = alice_->UploadFile(kDemoModel, v1::BLOB_KIND_MODEL);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->already_present());

  v1::SubmitJobRequest request = QuantizeRequest(model, 4, calibration);
  auto* quantize = request.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize();
  quantize->set_granularity(v1::QuantizePass::PER_GROUP);
  quantize->set_group_size(16);
  request.mutable_spec()->add_target_devices("jetson-agx-orin");
  request.mutable_spec()->add_target_devices("a100-80g");
  auto submitted = alice_->SubmitJob(request);
  ASSERT_TRUE(submitted.ok()) << submitted.status();

  std::vector<v1::JobState> seen;
  auto final_job = alice_->WatchJob(submitted->job().id(), [&](const v1::Job& job) {
    if (seen.empty() || seen.back() != job.state()) seen.push_back(job.state());
  });
  ASSERT_TRUE(final_job.ok()) << final_job.status();
  ASSERT_EQ(final_job->state(), v1::SUCCEEDED) << final_job->DebugString();
  EXPECT_EQ(seen.back(), v1::SUCCEEDED);
  EXPECT_EQ(final_job->attempts(), 1);
  ASSERT_EQ(final_job->variants_size(), 2);
  EXPECT_EQ(final_job->variants(0).device(), "jetson-agx-orin");
  EXPECT_GT(final_job->run_seconds(), 0);

  for (const v1::Variant& variant : final_job->variants()) {
    EXPECT_EQ(variant.technique().substr(0, 4), "int4") << variant.technique();
    EXPECT_GT(variant.accuracy().output_sqnr_db(), 5);
    EXPECT_EQ(variant.accuracy().layers_size(), 3);
    EXPECT_EQ(variant.latency().provenance(), v1::MEASURED);
    EXPECT_GT(variant.latency().p50_seconds(), 0);
    EXPECT_EQ(variant.energy().provenance(), v1::ESTIMATED);
    EXPECT_GT(variant.energy().joules_per_inference(), 0);
    EXPECT_LT(variant.energy().joules_per_inference(), variant.energy().baseline_joules_per_inference());
    EXPECT_GT(variant.size().ratio_vs_original(), 3.0);

    const std::string out = scratch_.Join(variant.device() + ".safetensors");
    auto downloaded = alice_->DownloadBlob(variant.artifact().sha256(), out);
    ASSERT_TRUE(downloaded.ok()) << downloaded.status();
    auto file = core::model::ReadSafetensorsFile(out);
    ASSERT_TRUE(file.ok()) << file.status();
    auto chain = core::quant::DequantizeChainFromSafetensors(*file);
    ASSERT_TRUE(chain.ok()) << chain.status();
    EXPECT_EQ(chain->layers.size(), 3u);
    EXPECT_LT(*downloaded, static_cast<int64_t>(*core::model::FileSize(kDemoModel)));
  }
  // Different devices price energy differently.
  EXPECT_NE(final_job->variants(0).energy().joules_per_inference(),
            final_job->variants(1).energy().joules_per_inference());
}

TEST_F(ServiceTest, CancelReachesARunningWorker) {
  StartDaemon();
  auto submitted = alice_->SubmitJob(LongJob(8));
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const std::string id = submitted->job().id();
  WaitForState(*alice_, id, v1::RUNNING, /*need_progress=*/true);
  auto cancelled = alice_->CancelJob(id);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::CANCELLED);

  // The worker stops within seconds and takes the next job.
  auto small = Upload(*alice_, kDemoModel);
  auto next = alice_->SubmitJob(QuantizeRequest(small, 8));
  ASSERT_TRUE(next.ok());
  const auto start = std::chrono::steady_clock::now();
  v1::Job done = WaitForState(*alice_, next->job().id(), v1::SUCCEEDED);
  EXPECT_EQ(done.state(), v1::SUCCEEDED);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
  EXPECT_THAT(daemon_->Log(), HasSubstr(id + " was cancelled"));

  auto again = alice_->CancelJob(id);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("CANCELLED"));
}

TEST_F(ServiceTest, KilledWorkerIsRestartedAndTheJobRetried) {
  StartDaemon();
  auto submitted = alice_->SubmitJob(LongJob(8));
  ASSERT_TRUE(submitted.ok());
  const std::string id = submitted->job().id();
  WaitForState(*alice_, id, v1::RUNNING, /*need_progress=*/true);
  std::vector<pid_t> workers = daemon_->WorkerPids();
  ASSERT_EQ(workers.size(), 1u);
  ASSERT_EQ(kill(workers[0], SIGKILL), 0);

  v1::Job job = WaitForState(*alice_, id, v1::SUCCEEDED);
  EXPECT_EQ(job.attempts(), 2);
  EXPECT_THAT(daemon_->Log(), HasSubstr("killed by signal 9"));
  std::vector<pid_t> now = daemon_->WorkerPids();
  ASSERT_EQ(now.size(), 1u);
  EXPECT_NE(now[0], workers[0]);
}

TEST_F(ServiceTest, KilledDaemonRestartsAndTheJobCompletes) {
  StartDaemon({"--lease_seconds=2", "--retry_backoff_seconds=0.2"});
  auto submitted = alice_->SubmitJob(LongJob(8));
  ASSERT_TRUE(submitted.ok());
  const std::string id = submitted->job().id();
  auto queued = alice_->SubmitJob(QuantizeRequest(long_model_, 4));  // Still QUEUED at the kill.
  ASSERT_TRUE(queued.ok());
  WaitForState(*alice_, id, v1::RUNNING, /*need_progress=*/true);

  daemon_->Kill();
  ASSERT_TRUE(daemon_->Restart());
  alice_ = daemon_->Client(kAliceToken);
  v1::Job job = WaitForState(*alice_, id, v1::SUCCEEDED);
  EXPECT_EQ(job.attempts(), 2);
  EXPECT_THAT(job.error().message(), HasSubstr("lease expired"));
  EXPECT_EQ(WaitForState(*alice_, queued->job().id(), v1::SUCCEEDED).state(), v1::SUCCEEDED);
}

TEST_F(ServiceTest, TenantsSeeOnlyTheirOwnJobsAndBlobs) {
  StartDaemon();
  const std::string model = Upload(*alice_, kDemoModel);
  auto submitted = alice_->SubmitJob(QuantizeRequest(model, 8));
  ASSERT_TRUE(submitted.ok());
  const std::string id = submitted->job().id();

  EXPECT_EQ(bob_->GetJob(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(bob_->CancelJob(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(bob_->DownloadBlob(model, scratch_.Join("stolen")).status().code(),
            absl::StatusCode::kNotFound);
  auto bob_submit = bob_->SubmitJob(QuantizeRequest(model, 8));
  EXPECT_EQ(bob_submit.status().code(), absl::StatusCode::kNotFound);
  auto bob_list = bob_->ListJobs(v1::ListJobsRequest());
  ASSERT_TRUE(bob_list.ok());
  EXPECT_EQ(bob_list->jobs_size(), 0);
  // Bob may use the same bytes once he proves he has them.
  auto bob_upload = bob_->UploadFile(kDemoModel, v1::BLOB_KIND_MODEL);
  ASSERT_TRUE(bob_upload.ok());
  EXPECT_FALSE(bob_upload->already_present());
  EXPECT_TRUE(bob_->SubmitJob(QuantizeRequest(model, 8)).ok());

  auto alice_list = alice_->ListJobs(v1::ListJobsRequest());
  ASSERT_TRUE(alice_list.ok());
  ASSERT_EQ(alice_list->jobs_size(), 1);
  EXPECT_EQ(alice_list->jobs(0).id(), id);
}

TEST_F(ServiceTest, BadInputGetsTheRightStatusAndTheDaemonSurvives) {
  StartDaemon({"--max_upload_bytes=2000000", "--cpu_workers=0"});
  auto anonymous = daemon_->Client("");
  EXPECT_EQ(anonymous->ListJobs(v1::ListJobsRequest()).status().code(),
            absl::StatusCode::kUnauthenticated);
  auto wrong = daemon_->Client("not-a-real-token-at-all");
  EXPECT_EQ(wrong->GetJob("j-1").status().code(), absl::StatusCode::kUnauthenticated);
  auto worker = daemon_->Client(kWorkerToken);
  EXPECT_EQ(worker->SubmitJob(QuantizeRequest(std::string(64, 'a'), 8)).status().code(),
            absl::StatusCode::kPermissionDenied);

  // A tenant cannot speak the worker protocol.
  {
    auto channel = grpc::CreateChannel(daemon_->address(), grpc::InsecureChannelCredentials());
    auto stub = v1::WorkerControl::NewStub(channel);
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Bearer ") + kAliceToken);
    v1::AcquireJobRequest request;
    request.set_worker_id("sneaky");
    request.set_memory_bytes(1);
    v1::AcquireJobResponse response;
    EXPECT_EQ(stub->AcquireJob(&context, request, &response).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }

  // Oversize upload.
  const std::string big = WriteBigModel(scratch_, 1024, 1);  // 4 MiB > 2 MB limit.
  auto oversize = alice_->UploadFile(big, v1::BLOB_KIND_MODEL);
  EXPECT_EQ(oversize.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(oversize.status().message()), HasSubstr("2000000"));

  // A file that is not a model.
  const std::string garbage = scratch_.Join("garbage.safetensors");
  ASSERT_TRUE(core::model::WriteFileAtomically(garbage, "\xff\xff\xff\xff\xff\xff\xff\x7fjunk").ok());
  auto bad_model = alice_->SubmitJob(QuantizeRequest(Upload(*alice_, garbage), 8));
  EXPECT_EQ(bad_model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad_model.status().message()), HasSubstr("not a valid safetensors"));

  const std::string model = Upload(*alice_, kDemoModel);
  auto bad_bits = alice_->SubmitJob(QuantizeRequest(model, 12));
  EXPECT_EQ(bad_bits.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad_bits.status().message()), HasSubstr("got 12"));

  // Group size that does not divide the 784-wide first layer.
  v1::SubmitJobRequest grouped = QuantizeRequest(model, 4);
  auto* q = grouped.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize();
  q->set_granularity(v1::QuantizePass::PER_GROUP);
  q->set_group_size(128);
  auto bad_group = alice_->SubmitJob(grouped);
  EXPECT_EQ(bad_group.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad_group.status().message()), HasSubstr("fc1"));

  v1::SubmitJobRequest unknown_technique = QuantizeRequest(model, 8);
  unknown_technique.mutable_spec()->mutable_recipe()->add_passes();
  EXPECT_EQ(alice_->SubmitJob(unknown_technique).status().code(),
            absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(alice_->GetJob("j-does-not-exist").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(alice_->DownloadBlob("../../etc/passwd", scratch_.Join("x")).status().code(),
            absl::StatusCode::kInvalidArgument);

  // Idempotency over the wire.
  v1::SubmitJobRequest keyed = QuantizeRequest(model, 8);
  keyed.set_idempotency_key("ci-build-42");
  auto first = alice_->SubmitJob(keyed);
  auto second = alice_->SubmitJob(keyed);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_TRUE(second->deduplicated());
  EXPECT_EQ(first->job().id(), second->job().id());

  EXPECT_TRUE(daemon_->Alive());
  EXPECT_TRUE(alice_->ListDeviceProfiles().ok());
}

TEST_F(ServiceTest, MetricsAreScrapedAndParsed) {
  StartDaemon();
  const std::string model = Upload(*alice_, kDemoModel);
  auto submitted = alice_->SubmitJob(QuantizeRequest(model, 8));
  ASSERT_TRUE(submitted.ok());
  WaitForState(*alice_, submitted->job().id(), v1::SUCCEEDED);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // One housekeeping round.

  auto body = HttpGet(daemon_->metrics_address(), "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  // Parse every sample line: name{labels} value.
  std::map<std::string, double> samples;
  std::regex line_re(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})?) ([-+0-9.eEinfaINF]+)$)");
  std::istringstream lines(*body);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::smatch match;
    ASSERT_TRUE(std::regex_match(line, match, line_re)) << "unparsable: " << line;
    samples[match[1]] = std::stod(match[3]);
  }
  EXPECT_EQ(samples["squeeze_jobs{state=\"SUCCEEDED\"}"], 1);
  EXPECT_EQ(samples["squeeze_queue_depth"], 0);
  EXPECT_GE(samples["squeeze_grpc_requests_total{code=\"OK\",method=\"/squeeze.v1.Squeeze/SubmitJob\"}"], 1);
  EXPECT_GE(samples["squeeze_workers{state=\"idle\"}"] + samples["squeeze_workers{state=\"busy\"}"], 1);
  EXPECT_EQ(samples["squeeze_job_run_seconds_count{state=\"SUCCEEDED\"}"], 1);
  EXPECT_EQ(samples["squeeze_job_queue_wait_seconds_count"], 1);
  bool found_axes = false;
  for (const auto& [name, value] : samples) {
    if (name.rfind("squeeze_variant_energy_joules_count{", 0) == 0) {
      found_axes = true;
      EXPECT_THAT(name, HasSubstr("device=\"local\""));
      EXPECT_THAT(name, HasSubstr("provenance=\"estimated\""));
      EXPECT_THAT(name, Not(HasSubstr(submitted->job().id())));
    }
  }
  EXPECT_TRUE(found_axes) << *body;
}

TEST_F(ServiceTest, PythonClientSubmitsAndWatches) {
  if (std::system("/usr/bin/python3 -c 'import grpc' 2>/dev/null") != 0) {
    GTEST_SKIP() << "python3-grpcio is not installed for /usr/bin/python3";
  }
  StartDaemon();
  const std::string command = "/usr/bin/python3 " + DaemonProcess::SourcePath("tests/python_client.py") +
                              " --addr " + daemon_->address() + " --token " + kAliceToken +
                              " --model " + kDemoModel + " --calibration " + kDemoCalibration +
                              " --bits 4 > " + scratch_.Join("python.log") + " 2>&1";
  int rc = std::system(command.c_str());
  EXPECT_EQ(rc, 0) << core::model::ReadFile(scratch_.Join("python.log")).value_or("");
}

}  // namespace
}  // namespace squeeze::testing
