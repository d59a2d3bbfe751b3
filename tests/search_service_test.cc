// Issue 6 end to end through the real daemon and worker:
//   - a fleet job on the Fashion-MNIST CNN for three device profiles returns
//     three different variants, each using only its device's formats, with
//     the three axes in Prometheus;
//   - a constraint (search) job on the reference language model returns a
//     Pareto set whose points re-run from their manifests to bit-identical
//     artifacts, and `squeeze pareto` prints it as a table and as CSV;
//   - a search survives a daemon crash: the retried attempt keeps the trials
//     the first attempt finished and skips the one it died in.
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/compress/test_util/fashion_mnist_samples.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util/daemon_process.h"
#include "tests/test_util/http_get.h"
#include "tests/test_util/subprocess.h"

namespace squeeze::testing {
namespace {

using ::testing::HasSubstr;

class SearchServiceTest : public ::testing::Test {
 protected:
  void StartDaemon(std::vector<std::string> flags = {}) {
    daemon_ = std::make_unique<DaemonProcess>(std::move(flags));
    ASSERT_TRUE(daemon_->Start());
    alice_ = daemon_->Client(kAliceToken);
  }

  std::string Upload(const std::string& path, v1::BlobKind kind) {
    auto uploaded = alice_->UploadFile(path, kind);
    EXPECT_TRUE(uploaded.ok()) << uploaded.status();
    return uploaded.ok() ? uploaded->blob().sha256() : "";
  }

  absl::StatusOr<v1::Job> Run(const v1::JobSpec& spec) {
    v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    auto submitted = alice_->SubmitJob(request);
    if (!submitted.ok()) return submitted.status();
    auto watched = alice_->WatchJob(submitted->job().id(), [](const v1::Job&) {});
    if (!watched.ok()) return watched.status();
    return alice_->GetJob(submitted->job().id());
  }

  // The reference LM as ONNX with token-window datasets (make_lm_job_files).
  void WriteLmFiles() {
    const CommandResult made = RunCommand(absl::StrCat(
        DaemonProcess::BinaryPath("make_lm_job_files"), " --models_dir=", DaemonProcess::SourcePath("deploy/models"),
        " --lm_data_dir=", DaemonProcess::SourcePath("third_party/npm/node_modules/@stdlib"), " --out=",
        scratch_.path(), " --context=32 --calibration_windows=32 --evaluation_windows=32"));
    ASSERT_EQ(made.exit_code, 0) << made.output;
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<client::SqueezeClient> alice_;
  TempDir scratch_;
};

bool HasFormat(const v1::DeviceProfile& profile, const std::string& format) {
  for (const auto& f : profile.formats()) {
    if (f.format() == format) return true;
  }
  return false;
}

TEST_F(SearchServiceTest, FleetJobGivesEachDeviceItsOwnFormats) {
  StartDaemon();
  const std::string data = scratch_.Join("cnn-data.safetensors");
  ASSERT_TRUE(core::compress::test_util::WriteFashionMnistSamples(data, 256, true).ok());
  v1::JobSpec spec;
  spec.mutable_model()->set_sha256(
      Upload(DaemonProcess::SourcePath("deploy/models/fashion_mnist_cnn.onnx"), v1::BLOB_KIND_MODEL));
  spec.mutable_calibration_dataset()->set_sha256(Upload(data, v1::BLOB_KIND_DATASET));
  spec.set_eval_task(v1::TOP1_ACCURACY);
  for (const char* device : {"jetson-xavier-nx", "a100-80g", "h100-sxm"}) spec.add_target_devices(device);
  v1::PrunePass* prune = spec.mutable_recipe()->add_passes()->mutable_prune();
  prune->set_structure(v1::PrunePass::N_M);
  prune->set_method(v1::PrunePass::SPARSEGPT);
  prune->set_per_device(true);
  v1::QuantizePass* quantize = spec.mutable_recipe()->add_passes()->mutable_quantize();
  quantize->set_per_device(true);
  quantize->set_calibration_batches(4);
  auto job = Run(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->state(), v1::SUCCEEDED) << job->error().message() << "\n" << daemon_->Log();
  ASSERT_EQ(job->variants_size(), 3);

  auto profiles = alice_->ListDeviceProfiles();
  ASSERT_TRUE(profiles.ok());
  std::set<std::string> techniques;
  for (const v1::Variant& variant : job->variants()) {
    techniques.insert(variant.technique());
    const v1::DeviceProfile* profile = nullptr;
    for (const auto& p : *profiles) {
      if (p.name() == variant.device()) profile = &p;
    }
    ASSERT_NE(profile, nullptr) << variant.device();
    // Formats: 4-bit weights only where int4 runs, int8 activations only
    // where int8 runs, 2:4 only with sparse tensor cores.
    const bool w4 = absl::StrContains(variant.technique(), "int4");
    const bool a8 = absl::StrContains(variant.technique(), "a8");
    const bool sparse = absl::StrContains(variant.technique(), "2:4");
    EXPECT_TRUE(!w4 || HasFormat(*profile, "int4")) << variant.device() << ": " << variant.technique();
    EXPECT_TRUE(!a8 || HasFormat(*profile, "int8")) << variant.device() << ": " << variant.technique();
    EXPECT_EQ(sparse, profile->sparse_2_4()) << variant.device() << ": " << variant.technique();
    // Not this worker's hardware: latency and energy are predicted.
    EXPECT_EQ(variant.latency().provenance(), v1::PREDICTED) << variant.device();
    EXPECT_EQ(variant.energy().provenance(), v1::PREDICTED) << variant.device();
    EXPECT_GT(variant.latency().predicted_p50_seconds(), 0);
    EXPECT_GE(variant.latency().points_size(), 3);  // batch 1, 8, 32 measured here
    EXPECT_EQ(variant.artifact_format(), "onnx-qdq");
    EXPECT_EQ(variant.manifest().spec().target_devices(0), variant.device());
    EXPECT_EQ(variant.manifest().artifact_sha256(), variant.artifact().sha256());
    EXPECT_GT(variant.accuracy().value(), variant.accuracy().baseline() - 0.05) << variant.technique();
  }
  EXPECT_EQ(techniques.size(), 3u) << "three devices, three different variants";

  // The three axes of every device appear in Prometheus. The daemon records
  // them right after the job's row commits, so a poll that saw SUCCEEDED may
  // be a moment ahead: retry for a few seconds.
  absl::StatusOr<std::string> metrics;
  auto has_all_devices = [&metrics] {
    if (!metrics.ok()) return false;
    for (const char* device : {"jetson-xavier-nx", "a100-80g", "h100-sxm"}) {
      if (!absl::StrContains(*metrics, absl::StrCat("device=\"", device, "\""))) return false;
    }
    return true;
  };
  for (int attempt = 0; attempt < 50; ++attempt) {
    metrics = HttpGet(daemon_->metrics_address(), "/metrics");
    if (has_all_devices()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  for (const char* device : {"jetson-xavier-nx", "a100-80g", "h100-sxm"}) {
    EXPECT_THAT(*metrics, HasSubstr(absl::StrCat("device=\"", device, "\""))) << device;
  }
}

TEST_F(SearchServiceTest, LanguageModelSearchReturnsAParetoSetThatRebuildsFromItsManifests) {
  StartDaemon();
  WriteLmFiles();
  v1::JobSpec spec;
  spec.mutable_model()->set_sha256(Upload(scratch_.Join("lm.onnx"), v1::BLOB_KIND_MODEL));
  spec.mutable_calibration_dataset()->set_sha256(Upload(scratch_.Join("lm_calibration.safetensors"),
                                                        v1::BLOB_KIND_DATASET));
  spec.mutable_evaluation_dataset()->set_sha256(Upload(scratch_.Join("lm_evaluation.safetensors"),
                                                       v1::BLOB_KIND_DATASET));
  spec.set_eval_task(v1::PERPLEXITY);
  spec.set_seed(7);
  v1::SearchPass* search = spec.mutable_recipe()->add_passes()->mutable_search();
  search->set_max_accuracy_drop(0.05);  // at most 5% higher perplexity
  search->set_max_trials(4);
  auto job = Run(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->state(), v1::SUCCEEDED) << job->error().message() << "\n" << daemon_->Log();
  ASSERT_GE(job->variants_size(), 1);
  EXPECT_GE(job->trials_size(), 4);
  int pareto = 0, best = 0;
  for (const v1::Variant& variant : job->variants()) {
    pareto += variant.pareto_optimal();
    for (const std::string& note : variant.notes()) best += absl::StartsWith(note, "best ");
    EXPECT_THAT(variant.accuracy().metric(), HasSubstr("perplexity"));
    EXPECT_EQ(variant.latency().provenance(), v1::MEASURED);  // local: this worker's hardware
    EXPECT_GE(variant.latency().points_size(), 4);  // batch 1 and 4, at two sequence lengths
  }
  EXPECT_GE(pareto, 1);
  EXPECT_EQ(best, 1);

  // Every point of the set re-runs from its manifest to the same artifact.
  for (const v1::Variant& variant : job->variants()) {
    auto rerun = Run(variant.manifest().spec());
    ASSERT_TRUE(rerun.ok()) << rerun.status();
    ASSERT_EQ(rerun->state(), v1::SUCCEEDED) << rerun->error().message();
    ASSERT_EQ(rerun->variants_size(), 1);
    EXPECT_EQ(rerun->variants(0).artifact().sha256(), variant.artifact().sha256()) << variant.technique();
    EXPECT_DOUBLE_EQ(rerun->variants(0).accuracy().value(), variant.accuracy().value()) << variant.technique();
  }

  // The CLI shows the set as a table and as CSV.
  const std::string cli = absl::StrCat(DaemonProcess::BinaryPath("squeeze"), " --addr=", daemon_->address(),
                                       " --token=", kAliceToken, " pareto ", job->id());
  const CommandResult table = RunCommand(cli);
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_THAT(table.output, HasSubstr("PARETO"));
  EXPECT_THAT(table.output, HasSubstr(job->variants(0).technique()));
  const CommandResult csv = RunCommand(cli + " --csv");
  ASSERT_EQ(csv.exit_code, 0) << csv.output;
  EXPECT_THAT(csv.output, HasSubstr("device,trial,technique,metric"));
  EXPECT_THAT(csv.output, HasSubstr(job->variants(0).artifact().sha256()));
}

TEST_F(SearchServiceTest, SearchResumesAfterTheDaemonDiesMidTrial) {
  StartDaemon({"--lease_seconds=2", "--retry_backoff_seconds=0.2"});
  const std::string data = scratch_.Join("mlp-data.safetensors");
  ASSERT_TRUE(core::compress::test_util::WriteFashionMnistSamples(data, 256, true).ok());
  v1::JobSpec spec;
  spec.mutable_model()->set_sha256(
      Upload(DaemonProcess::SourcePath("deploy/models/fashion_mnist_mlp.onnx"), v1::BLOB_KIND_MODEL));
  spec.mutable_calibration_dataset()->set_sha256(Upload(data, v1::BLOB_KIND_DATASET));
  spec.set_eval_task(v1::TOP1_ACCURACY);
  v1::SearchPass* search = spec.mutable_recipe()->add_passes()->mutable_search();
  search->set_max_accuracy_drop(0.02);
  search->set_max_trials(5);
  v1::SubmitJobRequest request;
  *request.mutable_spec() = spec;
  auto submitted = alice_->SubmitJob(request);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const std::string id = submitted->job().id();

  // Wait until the first attempt finished a trial, then kill the daemon (its
  // workers die with it) in the middle of the next one.
  int finished_before = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  while (std::chrono::steady_clock::now() < deadline && finished_before == 0) {
    auto job = alice_->GetJob(id);
    ASSERT_TRUE(job.ok()) << job.status();
    for (const auto& trial : job->trials()) finished_before += trial.finished();
    if (finished_before == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_GE(finished_before, 1);
  daemon_->Kill();
  ASSERT_TRUE(daemon_->Restart());
  alice_ = daemon_->Client(kAliceToken);
  auto done = alice_->WatchJob(id, [](const v1::Job&) {});
  ASSERT_TRUE(done.ok()) << done.status();
  auto job = alice_->GetJob(id);
  ASSERT_TRUE(job.ok());
  ASSERT_EQ(job->state(), v1::SUCCEEDED) << job->error().message() << "\n" << daemon_->Log();
  EXPECT_GE(job->attempts(), 2);
  int kept_from_first = 0, run_later = 0;
  for (const auto& trial : job->trials()) {
    if (trial.attempt() == 1 && trial.finished()) ++kept_from_first;
    if (trial.attempt() >= 2) ++run_later;
  }
  EXPECT_EQ(kept_from_first, finished_before) << "finished trials of the crashed attempt are kept, not re-run";
  EXPECT_GE(run_later, 1);
  EXPECT_GE(job->variants_size(), 1);
}

}  // namespace
}  // namespace squeeze::testing
