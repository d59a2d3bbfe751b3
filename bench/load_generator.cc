// squeeze-loadgen: a bounded load generator for squeezed's public API, on
// loopback only. N concurrent clients (each with its own channel) first
// submit jobs for up to --seconds or --submits in total, then read them back
// with GetJob for the same bounds, and finally call ListDeviceProfiles (a
// call that touches no storage) as the in-run reference. Prints throughput
// and p50/p99 latency per method, as a table or --json.
//
// Run it against a daemon with no workers (--cpu_workers=0) so that jobs
// stay QUEUED and the daemon's CPU goes to the API: bench/run_service_bench.sh.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "client/client.h"

ABSL_FLAG(std::string, addr, "127.0.0.1:7400", "Daemon address (loopback only).");
ABSL_FLAG(std::string, token, "", "Tenant token.");
ABSL_FLAG(std::string, model, "", "SHA-256 of a model blob the tenant owns.");
ABSL_FLAG(int, clients, 32, "Concurrent clients.");
ABSL_FLAG(double, seconds, 10, "Time limit of each phase.");
ABSL_FLAG(int, requests, 50000, "Request limit of each phase.");
ABSL_FLAG(bool, json, false, "Print one JSON object instead of a table.");

namespace {

using Clock = std::chrono::steady_clock;

struct PhaseResult {
  std::string method;
  int64_t ok = 0;
  int64_t errors = 0;
  double seconds = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  double PerSecond() const { return seconds > 0 ? ok / seconds : 0; }
};

bool IsLoopback(const std::string& address) {
  return address.rfind("127.", 0) == 0 || address.rfind("localhost:", 0) == 0 ||
         address.rfind("[::1]", 0) == 0 || address.rfind("unix:", 0) == 0;
}

// Runs `call(client_index, request_index)` from every client until the
// shared request budget or the time limit runs out.
PhaseResult RunPhase(const std::string& method, int clients, double seconds, int requests,
                     const std::function<bool(int, int64_t)>& call) {
  std::atomic<int64_t> issued{0};
  std::atomic<int64_t> errors{0};
  std::mutex mu;
  std::vector<double> latencies_ms;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(seconds);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      std::vector<double> mine;
      while (Clock::now() < deadline) {
        const int64_t n = issued.fetch_add(1);
        if (n >= requests) break;
        const auto t0 = Clock::now();
        const bool ok = call(c, n);
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (ok) {
          mine.push_back(ms);
        } else {
          errors.fetch_add(1);
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      latencies_ms.insert(latencies_ms.end(), mine.begin(), mine.end());
    });
  }
  for (auto& thread : threads) thread.join();
  PhaseResult result;
  result.method = method;
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  result.ok = static_cast<int64_t>(latencies_ms.size());
  result.errors = errors.load();
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto rank = [&](double q) {
    if (latencies_ms.empty()) return 0.0;
    size_t index = static_cast<size_t>(q * (latencies_ms.size() - 1) + 0.5);
    return latencies_ms[std::min(index, latencies_ms.size() - 1)];
  };
  result.p50_ms = rank(0.50);
  result.p99_ms = rank(0.99);
  result.max_ms = latencies_ms.empty() ? 0 : latencies_ms.back();
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string address = absl::GetFlag(FLAGS_addr);
  if (!IsLoopback(address)) {
    std::fprintf(stderr, "squeeze-loadgen: only loopback addresses are allowed, got %s\n",
                 address.c_str());
    return 2;
  }
  const int clients = std::clamp(absl::GetFlag(FLAGS_clients), 1, 256);
  const double seconds = std::clamp(absl::GetFlag(FLAGS_seconds), 0.1, 120.0);
  const int requests = std::clamp(absl::GetFlag(FLAGS_requests), 1, 1'000'000);

  std::vector<std::unique_ptr<squeeze::client::SqueezeClient>> pool;
  for (int c = 0; c < clients; ++c) {
    squeeze::client::ClientOptions options;
    options.address = address;
    options.token = absl::GetFlag(FLAGS_token);
    auto client = squeeze::client::SqueezeClient::Connect(options);
    if (!client.ok()) {
      std::fprintf(stderr, "squeeze-loadgen: %s\n", client.status().ToString().c_str());
      return 1;
    }
    pool.push_back(std::move(*client));
  }

  squeeze::v1::SubmitJobRequest submit;
  submit.mutable_spec()->mutable_model()->set_sha256(absl::GetFlag(FLAGS_model));
  submit.mutable_spec()->mutable_recipe()->add_passes()->mutable_quantize()->set_bits(8);
  (*submit.mutable_spec()->mutable_labels())["source"] = "loadgen";

  std::mutex ids_mu;
  std::vector<std::string> ids;
  std::vector<PhaseResult> results;
  results.push_back(RunPhase("SubmitJob", clients, seconds, requests, [&](int c, int64_t) {
    auto response = pool[c]->SubmitJob(submit);
    if (!response.ok()) return false;
    std::lock_guard<std::mutex> lock(ids_mu);
    ids.push_back(response->job().id());
    return true;
  }));
  if (ids.empty()) {
    std::fprintf(stderr, "squeeze-loadgen: no job was submitted; is --model a blob the tenant owns?\n");
    return 1;
  }
  results.push_back(RunPhase("GetJob", clients, seconds, requests, [&](int c, int64_t n) {
    return pool[c]->GetJob(ids[static_cast<size_t>(n) % ids.size()]).ok();
  }));
  results.push_back(RunPhase("ListDeviceProfiles", clients, seconds, requests,
                             [&](int c, int64_t) { return pool[c]->ListDeviceProfiles().ok(); }));

  const double reference = results.back().PerSecond();
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("{\"clients\":%d,\"results\":[", clients);
    for (size_t i = 0; i < results.size(); ++i) {
      const PhaseResult& r = results[i];
      std::printf("%s{\"method\":\"%s\",\"ok\":%lld,\"errors\":%lld,\"seconds\":%.3f,"
                  "\"per_second\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
                  "\"vs_reference\":%.3f}",
                  i ? "," : "", r.method.c_str(), static_cast<long long>(r.ok),
                  static_cast<long long>(r.errors), r.seconds, r.PerSecond(), r.p50_ms, r.p99_ms,
                  r.max_ms, reference > 0 ? r.PerSecond() / reference : 0);
    }
    std::printf("]}\n");
    return 0;
  }
  std::printf("%-20s %9s %7s %11s %9s %9s %9s %13s\n", "METHOD", "OK", "ERRORS", "PER SECOND",
              "P50 MS", "P99 MS", "MAX MS", "VS REFERENCE");
  for (const PhaseResult& r : results) {
    std::printf("%-20s %9lld %7lld %11.1f %9.3f %9.3f %9.3f %12.2fx\n", r.method.c_str(),
                static_cast<long long>(r.ok), static_cast<long long>(r.errors), r.PerSecond(),
                r.p50_ms, r.p99_ms, r.max_ms, reference > 0 ? r.PerSecond() / reference : 0);
  }
  std::printf("(%d clients; reference = ListDeviceProfiles, an RPC that touches no storage)\n",
              clients);
  return 0;
}
