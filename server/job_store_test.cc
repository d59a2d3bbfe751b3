#include "server/job_store.h"

#include <atomic>
#include <set>
#include <thread>

#include "gtest/gtest.h"
#include "tests/test_util/temp_dir.h"

namespace squeeze::server {
namespace {

constexpr int64_t kLease = 10'000'000;  // 10 s

class JobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    store_.reset();
    JobStoreOptions options;
    options.path = dir_.Join("jobs.db");
    options.retry.base_backoff_micros = 1'000'000;
    options.now_micros = [this] { return now_.load(); };
    options.on_transition = [this](const TransitionEvent& e) {
      transitions_.fetch_add(1);
      (void)e;
    };
    auto store = JobStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  NewJob MakeJob(const std::string& tenant, int priority = 0) {
    NewJob job;
    job.tenant = tenant;
    job.spec.set_priority(priority);
    job.spec.mutable_model()->set_sha256("ab");
    job.estimated_memory_bytes = 1000;
    job.max_attempts = 2;
    return job;
  }

  std::string Submit(const std::string& tenant, int priority = 0) {
    auto result = store_->Submit(MakeJob(tenant, priority));
    EXPECT_TRUE(result.ok()) << result.status();
    return result->job.id();
  }

  Lease AcquireOk(const std::string& worker = "w1") {
    auto lease = store_->Acquire(worker, 1 << 30, kLease);
    EXPECT_TRUE(lease.ok()) << lease.status();
    EXPECT_TRUE(lease->has_value());
    return lease->value_or(Lease{});
  }

  testing::TempDir dir_;
  std::atomic<int64_t> now_{1'700'000'000'000'000};
  std::atomic<int> transitions_{0};
  std::unique_ptr<JobStore> store_;
};

TEST_F(JobStoreTest, SubmitThenGetRoundTrips) {
  std::string id = Submit("alice");
  auto job = store_->Get("alice", id);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::QUEUED);
  EXPECT_EQ(job->spec().model().sha256(), "ab");
  EXPECT_EQ(transitions_.load(), 1);
}

TEST_F(JobStoreTest, OtherTenantsSeeNotFound) {
  std::string id = Submit("alice");
  EXPECT_EQ(store_->Get("bob", id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Cancel("bob", id).status().code(), absl::StatusCode::kNotFound);
  auto listed = store_->List("bob", ListFilter{});
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->jobs.empty());
}

TEST_F(JobStoreTest, IdempotencyKeyReturnsTheFirstJob) {
  NewJob job = MakeJob("alice");
  job.idempotency_key = "ci-run-7";
  auto first = store_->Submit(job);
  auto second = store_->Submit(job);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_FALSE(first->deduplicated);
  EXPECT_TRUE(second->deduplicated);
  EXPECT_EQ(first->job.id(), second->job.id());
  job.tenant = "bob";  // Keys are per tenant.
  auto third = store_->Submit(job);
  ASSERT_TRUE(third.ok());
  EXPECT_FALSE(third->deduplicated);
}

TEST_F(JobStoreTest, HigherPriorityFirstThenFifo) {
  std::string low1 = Submit("alice", 0);
  std::string low2 = Submit("alice", 0);
  std::string high = Submit("alice", 5);
  EXPECT_EQ(AcquireOk().job.id(), high);
  EXPECT_EQ(AcquireOk().job.id(), low1);
  EXPECT_EQ(AcquireOk().job.id(), low2);
  auto none = store_->Acquire("w1", 1 << 30, kLease);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(JobStoreTest, TenantWithFewerRunningJobsGoesFirst) {
  Submit("alice");
  Submit("alice");
  Submit("alice");
  std::string bob = Submit("bob");  // Newest, but bob has nothing running.
  Lease first = AcquireOk();
  EXPECT_EQ(first.job.tenant(), "alice");
  EXPECT_EQ(AcquireOk().job.id(), bob);
}

TEST_F(JobStoreTest, AdmissionSkipsJobsTooBigForTheWorker) {
  NewJob big = MakeJob("alice");
  big.estimated_memory_bytes = 5'000'000;
  ASSERT_TRUE(store_->Submit(big).ok());
  auto small_worker = store_->Acquire("w-small", 1'000'000, kLease);
  ASSERT_TRUE(small_worker.ok());
  EXPECT_FALSE(small_worker->has_value());
  auto big_worker = store_->Acquire("w-big", 10'000'000, kLease);
  ASSERT_TRUE(big_worker.ok());
  EXPECT_TRUE(big_worker->has_value());
}

TEST_F(JobStoreTest, ExpiredLeaseRetriesWithBackoffThenFails) {
  std::string id = Submit("alice");
  Lease lease = AcquireOk("w1");
  EXPECT_EQ(lease.attempt, 1);
  now_ += kLease + 1;
  auto moved = store_->ExpireLeases();
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(*moved, 1);
  auto job = store_->Get("alice", id);
  EXPECT_EQ(job->state(), v1::QUEUED);
  EXPECT_EQ(job->attempts(), 1);
  EXPECT_NE(job->error().message().find("lease expired"), std::string::npos);

  // In backoff: not handed out yet.
  auto early = store_->Acquire("w2", 1 << 30, kLease);
  ASSERT_TRUE(early.ok());
  EXPECT_FALSE(early->has_value());
  now_ += 1'000'001;
  Lease second = AcquireOk("w2");
  EXPECT_EQ(second.attempt, 2);

  // The old worker is fenced off.
  EXPECT_EQ(store_->Complete("w1", id, 1, {}).code(), absl::StatusCode::kFailedPrecondition);

  // Second and last attempt dies too: FAILED with the reason.
  ASSERT_TRUE(store_->ReleaseWorker("w2", "exit code 137").ok());
  job = store_->Get("alice", id);
  EXPECT_EQ(job->state(), v1::FAILED);
  EXPECT_NE(job->error().message().find("gave up after 2 attempts"), std::string::npos);
  EXPECT_NE(job->error().message().find("exit code 137"), std::string::npos);
}

TEST_F(JobStoreTest, NonRetryableFailureEndsTheJob) {
  std::string id = Submit("alice");
  Lease lease = AcquireOk();
  v1::JobError error;
  error.set_code(3);
  error.set_message("bad model");
  error.set_layer("fc2");
  ASSERT_TRUE(store_->Fail("w1", id, lease.attempt, error, false).ok());
  auto job = store_->Get("alice", id);
  EXPECT_EQ(job->state(), v1::FAILED);
  EXPECT_EQ(job->error().layer(), "fc2");
}

TEST_F(JobStoreTest, CompleteStoresVariantsAndTimes) {
  std::string id = Submit("alice");
  now_ += 2'000'000;
  Lease lease = AcquireOk();
  now_ += 3'000'000;
  v1::Progress progress;
  progress.set_stage("quantize");
  progress.set_step(1);
  progress.set_total(3);
  auto cancelled = store_->Heartbeat("w1", id, lease.attempt, &progress, kLease);
  ASSERT_TRUE(cancelled.ok());
  EXPECT_FALSE(*cancelled);
  EXPECT_EQ(store_->Get("alice", id)->progress().stage(), "quantize");
  v1::Variant variant;
  variant.set_device("local");
  variant.set_technique("int8");
  ASSERT_TRUE(store_->Complete("w1", id, lease.attempt, {variant}).ok());
  auto job = store_->Get("alice", id);
  EXPECT_EQ(job->state(), v1::SUCCEEDED);
  ASSERT_EQ(job->variants_size(), 1);
  EXPECT_EQ(job->variants(0).technique(), "int8");
  EXPECT_DOUBLE_EQ(job->queue_seconds(), 2.0);
  EXPECT_DOUBLE_EQ(job->run_seconds(), 3.0);
}

TEST_F(JobStoreTest, CancelQueuedRunningAndFinal) {
  std::string queued = Submit("alice");
  std::string running = Submit("alice");
  Lease lease = AcquireOk();
  ASSERT_EQ(lease.job.id(), queued);
  std::swap(queued, running);  // The first submitted is now running.

  auto cancelled = store_->Cancel("alice", queued);
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state(), v1::CANCELLED);

  ASSERT_TRUE(store_->Cancel("alice", running).ok());
  auto beat = store_->Heartbeat("w1", running, lease.attempt, nullptr, kLease);
  ASSERT_TRUE(beat.ok());
  EXPECT_TRUE(*beat);
  EXPECT_EQ(store_->Complete("w1", running, lease.attempt, {}).code(),
            absl::StatusCode::kFailedPrecondition);

  auto again = store_->Cancel("alice", running);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(again.status().message().find("CANCELLED"), std::string::npos);
}

TEST_F(JobStoreTest, ListFiltersByStateAndLabelAndPages) {
  for (int i = 0; i < 5; ++i) {
    NewJob job = MakeJob("alice");
    (*job.spec.mutable_labels())["team"] = i % 2 == 0 ? "vision" : "nlp";
    ASSERT_TRUE(store_->Submit(job).ok());
  }
  AcquireOk();  // The oldest (vision) job runs.
  ListFilter filter;
  filter.labels["team"] = "vision";
  filter.states = {v1::QUEUED};
  auto listed = store_->List("alice", filter);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->jobs.size(), 2u);

  ListFilter pages;
  pages.page_size = 2;
  std::set<std::string> seen;
  int page_count = 0;
  do {
    auto page = store_->List("alice", pages);
    ASSERT_TRUE(page.ok());
    for (const auto& job : page->jobs) seen.insert(job.id());
    pages.before_seq = page->next_before_seq;
    ++page_count;
  } while (pages.before_seq != 0);
  EXPECT_EQ(seen.size(), 5u);
  EXPECT_EQ(page_count, 3);
}

TEST_F(JobStoreTest, JobsSurviveReopen) {
  std::string id = Submit("alice");
  Lease lease = AcquireOk();
  Reopen();
  auto job = store_->Get("alice", id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state(), v1::RUNNING);
  EXPECT_EQ(job->attempts(), 1);
  now_ += kLease + 1;
  EXPECT_EQ(*store_->ExpireLeases(), 1);
}

TEST_F(JobStoreTest, ConcurrentSubmitsAreAllDurableAndUnique) {
  constexpr int kThreads = 8, kPerThread = 50;
  std::vector<std::thread> threads;
  std::mutex mu;
  std::set<std::string> ids;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto result = store_->Submit(MakeJob(t % 2 ? "alice" : "bob"));
        ASSERT_TRUE(result.ok()) << result.status();
        std::lock_guard<std::mutex> lock(mu);
        ids.insert(result->job.id());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(ids.size(), size_t{kThreads * kPerThread});
  Reopen();
  auto counts = store_->CountByState();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)[v1::QUEUED], kThreads * kPerThread);
}

TEST_F(JobStoreTest, BlobOwnershipIsPerTenant) {
  ASSERT_TRUE(store_->RecordBlob("alice", "cafe", 10, v1::BLOB_KIND_MODEL).ok());
  ASSERT_TRUE(store_->RecordBlob("alice", "cafe", 10, v1::BLOB_KIND_MODEL).ok());
  EXPECT_TRUE(*store_->TenantOwnsBlob("alice", "cafe"));
  EXPECT_FALSE(*store_->TenantOwnsBlob("bob", "cafe"));
}

}  // namespace
}  // namespace squeeze::server

namespace squeeze::server {
namespace {

TEST_F(JobStoreTest, TrialsSurviveACrashedAttemptAndAReopen) {
  std::string id = Submit("alice");
  Lease first = AcquireOk("w1");
  v1::TrialRecord started;
  started.set_device("a100-80g");
  started.set_trial(0);
  ASSERT_TRUE(store_->RecordTrial("w1", id, first.attempt, started).ok());
  v1::TrialRecord finished = started;
  finished.set_finished(true);
  finished.mutable_variant()->set_technique("rtn int8");
  ASSERT_TRUE(store_->RecordTrial("w1", id, first.attempt, finished).ok());  // Replaces trial 0.
  v1::TrialRecord crashing = started;
  crashing.set_trial(1);
  ASSERT_TRUE(store_->RecordTrial("w1", id, first.attempt, crashing).ok());
  // Another worker cannot write into this attempt.
  EXPECT_EQ(store_->RecordTrial("w2", id, first.attempt, crashing).code(), absl::StatusCode::kFailedPrecondition);

  // The worker dies; the daemon restarts; the retried attempt sees both trials.
  ASSERT_TRUE(store_->ReleaseWorker("w1", "killed").ok());
  Reopen();
  now_ += 2'000'000;
  Lease second = AcquireOk("w2");
  EXPECT_EQ(second.attempt, 2);
  auto trials = store_->Trials(id);
  ASSERT_TRUE(trials.ok()) << trials.status();
  ASSERT_EQ(trials->size(), 2u);
  EXPECT_TRUE((*trials)[0].finished());
  EXPECT_EQ((*trials)[0].variant().technique(), "rtn int8");
  EXPECT_EQ((*trials)[0].attempt(), 1);
  EXPECT_FALSE((*trials)[1].finished());  // Started, never finished: it crashed attempt 1.
  // The stale attempt is fenced off.
  EXPECT_EQ(store_->RecordTrial("w1", id, 1, crashing).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace squeeze::server
