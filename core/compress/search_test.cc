#include "core/compress/search.h"

#include "absl/strings/str_cat.h"

#include <filesystem>
#include <string>
#include <unistd.h>

#include "core/compress/test_util/fashion_mnist_samples.h"
#include "gtest/gtest.h"

namespace squeeze::core::compress {
namespace {

Trial Done(int index, double drop, double latency, double energy, int64_t size) {
  Trial t;
  t.index = index;
  t.label = absl::StrCat("t", index);
  t.finished = true;
  t.accuracy_drop = drop;
  t.latency_seconds = latency;
  t.energy_joules = energy;
  t.size_bytes = size;
  t.faster_than_baseline = true;
  return t;
}

TEST(ParetoTest, DominatedTrialsAreNotOptimalAndTheBestMeetsTheLimits) {
  std::vector<Trial> trials = {Done(0, 0.001, 1.0, 1.0, 100), Done(1, 0.002, 2.0, 2.0, 200),  // 1 dominated by 0
                               Done(2, 0.05, 0.5, 0.5, 50), Done(3, 0.0, 3.0, 3.0, 400)};
  trials.push_back(Trial{});
  trials.back().index = 4;
  trials.back().finished = true;
  trials.back().error = "boom";
  SearchLimits limits;
  limits.max_accuracy_drop = 0.01;
  const int best = MarkParetoSet(&trials, limits);
  EXPECT_TRUE(trials[0].pareto_optimal);
  EXPECT_FALSE(trials[1].pareto_optimal);
  EXPECT_TRUE(trials[2].pareto_optimal);
  EXPECT_TRUE(trials[3].pareto_optimal);
  EXPECT_FALSE(trials[4].pareto_optimal);
  EXPECT_FALSE(trials[2].meets_limits);
  EXPECT_NE(trials[2].notes[0].find("accuracy drop 0.05 > limit 0.01"), std::string::npos);
  EXPECT_EQ(best, 0);  // The smallest within the limits.

  // Nothing meets a limit of 10 bytes: the best is the least summed relative
  // excess, still returned: t2 misses by 4 (accuracy) + 4 (size) = 8, t0 by 9.
  limits.max_size_bytes = 10;
  EXPECT_EQ(MarkParetoSet(&trials, limits), 2);
  for (const Trial& t : trials) EXPECT_FALSE(t.meets_limits);
}

TEST(ParetoTest, SlowerVariantsAreMarked) {
  std::vector<Trial> trials = {Done(0, 0, 1, 1, 1)};
  trials[0].faster_than_baseline = false;
  MarkParetoSet(&trials, {});
  ASSERT_EQ(trials[0].notes.size(), 1u);
  EXPECT_EQ(trials[0].notes[0], "NOT faster than the baseline on this device");
}

std::string TempDir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

TEST(SearchTest, RunsResumesAndSkipsTheCrashedTrial) {
  const std::string dir = TempDir("search");
  const std::string dataset = dir + "/data.safetensors";
  ASSERT_TRUE(test_util::WriteFashionMnistSamples(dataset, 300, true).ok());
  SessionOptions options;
  options.model_path = std::string(SQUEEZE_SOURCE_DIR) + "/deploy/models/fashion_mnist_mlp.onnx";
  options.calibration_path = dataset;
  options.calibration_batches = 2;
  options.metric = EvalMetric::kTop1Accuracy;
  options.latency_batch_sizes = {1};
  options.measure_energy = false;
  auto session = GraphSession::Open(options, {});
  ASSERT_TRUE(session.ok()) << session.status();
  TargetDevice device;  // local, no figures: CPU formats
  const std::vector<Candidate> space = SearchSpace(**session, device);
  ASSERT_GE(space.size(), 6u);
  EXPECT_EQ(space[0].label, "w8 weight-only");

  SearchOptions search;
  search.limits.max_accuracy_drop = 0.05;
  search.max_trials = 3;
  // An earlier attempt finished trial 0 and died during trial 1.
  Trial finished = Done(0, 0.0, 1e-3, 1e-6, 1000);
  finished.label = space[0].label;
  Trial crashed;
  crashed.index = 1;
  crashed.label = space[1].label;
  std::vector<int> started, ended;
  SearchCallbacks callbacks;
  callbacks.started = [&](const Trial& t) { started.push_back(t.index); return absl::OkStatus(); };
  callbacks.finished = [&](const Trial& t, const GraphVariantReport* report, const std::string& artifact) {
    ended.push_back(t.index);
    EXPECT_TRUE(report != nullptr) << t.error;
    EXPECT_TRUE(std::filesystem::exists(artifact));
    return absl::OkStatus();
  };
  auto trials = RunSearch(**session, device, search, {finished, crashed}, dir, callbacks);
  ASSERT_TRUE(trials.ok()) << trials.status();
  // Two resumed trials count against the budget of 3: one new trial runs.
  EXPECT_EQ(started.size(), 1u);
  EXPECT_EQ(ended, started);
  ASSERT_GE(trials->size(), 3u);
  EXPECT_EQ((*trials)[0].accuracy_drop, 0.0);  // kept as recorded, not re-run
  EXPECT_NE((*trials)[1].error.find("worker died"), std::string::npos);
  EXPECT_NE(started[0], 0);
  EXPECT_NE(started[0], 1);
}

}  // namespace
}  // namespace squeeze::core::compress
