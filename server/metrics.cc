#include "server/metrics.h"

#include "absl/strings/str_cat.h"
#include "server/job_state.h"

namespace squeeze::server {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

// Seconds, from 100 µs to ~2 h: RPCs, queue waits and job runs share them.
Histogram::BucketBoundaries SecondsBuckets() {
  return {0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
          1,      2.5,    5,     10,     30,    60,   300,   900,  3600, 7200};
}

// Inference latency: 1 µs to 10 s.
Histogram::BucketBoundaries LatencyBuckets() {
  return {1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1, 10};
}

// Joules per inference: 1 nJ to 100 J.
Histogram::BucketBoundaries EnergyBuckets() {
  return {1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1, 10, 100};
}

// Accuracy change (variant metric minus baseline), signed.
Histogram::BucketBoundaries DeltaBuckets() {
  return {-0.1, -0.05, -0.02, -0.01, -0.005, -0.001, 0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1};
}

Histogram::BucketBoundaries RatioBuckets() { return {1, 1.5, 2, 3, 4, 6, 8, 12, 16, 32}; }

std::string ProvenanceName(v1::Provenance provenance) {
  switch (provenance) {
    case v1::MEASURED: return "measured";
    case v1::ESTIMATED: return "estimated";
    case v1::PREDICTED: return "predicted";
    default: return "unknown";
  }
}

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(BuildCounter()
                    .Name("squeeze_grpc_requests_total")
                    .Help("gRPC requests handled, by full method name and status code.")
                    .Register(*registry_)),
      request_seconds_(BuildHistogram()
                           .Name("squeeze_grpc_request_duration_seconds")
                           .Help("gRPC request handling time, by method.")
                           .Register(*registry_)),
      queue_depth_(BuildGauge()
                       .Name("squeeze_queue_depth")
                       .Help("Jobs waiting in state QUEUED.")
                       .Register(*registry_)
                       .Add({})),
      jobs_(BuildGauge()
                .Name("squeeze_jobs")
                .Help("Jobs in the store, by state.")
                .Register(*registry_)),
      transitions_(BuildCounter()
                       .Name("squeeze_job_transitions_total")
                       .Help("Committed job state changes, by destination state.")
                       .Register(*registry_)),
      queue_wait_seconds_(BuildHistogram()
                              .Name("squeeze_job_queue_wait_seconds")
                              .Help("Time a job attempt waited in QUEUED before a worker "
                                    "took it.")
                              .Register(*registry_)
                              .Add({}, SecondsBuckets())),
      run_seconds_(BuildHistogram()
                       .Name("squeeze_job_run_seconds")
                       .Help("Time a job attempt spent RUNNING, by how it ended.")
                       .Register(*registry_)),
      workers_(BuildGauge()
                   .Name("squeeze_workers")
                   .Help("Workers seen in the last 30 s, by state (idle, busy).")
                   .Register(*registry_)),
      worker_restarts_(BuildCounter()
                           .Name("squeeze_worker_restarts_total")
                           .Help("Local worker processes restarted after they exited.")
                           .Register(*registry_)
                           .Add({})),
      accuracy_delta_(BuildHistogram()
                          .Name("squeeze_variant_accuracy_delta")
                          .Help("Accuracy axis: variant metric minus baseline metric, by "
                                "device profile and technique.")
                          .Register(*registry_)),
      latency_seconds_(BuildHistogram()
                           .Name("squeeze_variant_latency_seconds")
                           .Help("Latency axis: p50 seconds per inference of each variant.")
                           .Register(*registry_)),
      energy_joules_(BuildHistogram()
                         .Name("squeeze_variant_energy_joules")
                         .Help("Energy axis: joules per inference of each variant, by how "
                               "the number was obtained.")
                         .Register(*registry_)),
      size_ratio_(BuildHistogram()
                      .Name("squeeze_variant_compression_ratio")
                      .Help("Size axis: original size over variant size.")
                      .Register(*registry_)) {}

void Metrics::RecordRequest(std::string_view method, absl::StatusCode code, double seconds) {
  std::string method_name(method);
  requests_.Add({{kLabelMethod, method_name}, {kLabelCode, absl::StatusCodeToString(code)}})
      .Increment();
  request_seconds_.Add({{kLabelMethod, method_name}}, SecondsBuckets()).Observe(seconds);
}

void Metrics::RecordTransition(const TransitionEvent& event) {
  transitions_.Add({{kLabelState, std::string(JobStateName(event.to))}}).Increment();
  if (event.from == v1::QUEUED && event.to == v1::RUNNING) {
    queue_wait_seconds_.Observe(event.queue_seconds);
  }
  if (event.from == v1::RUNNING) {
    run_seconds_.Add({{kLabelState, std::string(JobStateName(event.to))}}, SecondsBuckets())
        .Observe(event.run_seconds);
  }
  if (event.to != v1::SUCCEEDED || event.job == nullptr) return;
  for (const v1::Variant& variant : event.job->variants()) {
    prometheus::Labels labels{{kLabelDevice, variant.device()},
                              {kLabelTechnique, variant.technique()}};
    accuracy_delta_.Add(labels, DeltaBuckets()).Observe(variant.accuracy().delta());
    latency_seconds_.Add(labels, LatencyBuckets()).Observe(variant.latency().p50_seconds());
    prometheus::Labels energy_labels = labels;
    energy_labels[kLabelProvenance] = ProvenanceName(variant.energy().provenance());
    energy_joules_.Add(energy_labels, EnergyBuckets())
        .Observe(variant.energy().joules_per_inference());
    size_ratio_.Add(labels, RatioBuckets()).Observe(variant.size().ratio_vs_original());
  }
}

void Metrics::SetJobCounts(const std::map<v1::JobState, int64_t>& counts) {
  for (v1::JobState state : {v1::QUEUED, v1::RUNNING, v1::SUCCEEDED, v1::FAILED, v1::CANCELLED}) {
    auto it = counts.find(state);
    double value = it == counts.end() ? 0 : static_cast<double>(it->second);
    jobs_.Add({{kLabelState, std::string(JobStateName(state))}}).Set(value);
    if (state == v1::QUEUED) queue_depth_.Set(value);
  }
}

void Metrics::SetWorkers(int64_t idle, int64_t busy) {
  workers_.Add({{kLabelState, "idle"}}).Set(static_cast<double>(idle));
  workers_.Add({{kLabelState, "busy"}}).Set(static_cast<double>(busy));
}

void Metrics::RecordWorkerRestart() { worker_restarts_.Increment(); }

}  // namespace squeeze::server
