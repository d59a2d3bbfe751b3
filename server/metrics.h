// Every Prometheus metric squeezed exports, built once, here. Names carry the
// squeeze_ prefix and base units; label values come from small fixed sets
// (RPC methods, status codes, job states, device profiles, techniques) and
// never from job ids or paths. Thread-safe.
#ifndef SQUEEZE_SERVER_METRICS_H_
#define SQUEEZE_SERVER_METRICS_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/job_store.h"

namespace squeeze::server {

// Label names, shared by every family that uses them.
inline constexpr char kLabelMethod[] = "method";
inline constexpr char kLabelCode[] = "code";
inline constexpr char kLabelState[] = "state";
inline constexpr char kLabelDevice[] = "device";
inline constexpr char kLabelTechnique[] = "technique";
inline constexpr char kLabelProvenance[] = "provenance";

class Metrics {
 public:
  Metrics();
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // One finished RPC: its full method name, status and duration.
  void RecordRequest(std::string_view method, absl::StatusCode code, double seconds);
  // One committed job state change (from the JobStore), with queue and run
  // durations and, on success, the three axes of every variant.
  void RecordTransition(const TransitionEvent& event);
  void SetJobCounts(const std::map<v1::JobState, int64_t>& counts);
  void SetWorkers(int64_t idle, int64_t busy);
  void RecordWorkerRestart();

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_seconds_;
  prometheus::Gauge& queue_depth_;
  prometheus::Family<prometheus::Gauge>& jobs_;
  prometheus::Family<prometheus::Counter>& transitions_;
  prometheus::Histogram& queue_wait_seconds_;
  prometheus::Family<prometheus::Histogram>& run_seconds_;
  prometheus::Family<prometheus::Gauge>& workers_;
  prometheus::Counter& worker_restarts_;
  prometheus::Family<prometheus::Histogram>& accuracy_delta_;
  prometheus::Family<prometheus::Histogram>& latency_seconds_;
  prometheus::Family<prometheus::Histogram>& energy_joules_;
  prometheus::Family<prometheus::Histogram>& size_ratio_;
};

}  // namespace squeeze::server

#endif  // SQUEEZE_SERVER_METRICS_H_
