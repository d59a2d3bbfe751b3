// Constraint-driven recipe search for one target device.
//
// The space is technique x bits x sparsity x rank, restricted to what the
// device runs (int8 compute for W8A8, int4 for 4-bit weights, sparse tensor
// cores for 2:4): SearchSpace lists the candidates in families, each family
// ordered from mild to aggressive (e.g. low-rank 2x, then 4x). RunSearch
// runs them round-robin across families (the mildest of every family
// first) and uses the measured sensitivity to cut the space: once a member
// of a family loses more than twice the accuracy limit, the family's more
// aggressive members are skipped, and combinations are tried only from
// parts that were within the limit alone.
//
// Every trial is reported to the caller before it starts and after it ends,
// so that a service can store it durably; RunSearch takes the trials an
// earlier attempt recorded and resumes: finished trials are kept (not run
// again), a trial that started but never finished crashed that attempt and
// is skipped. MarkParetoSet then flags the variants within the limits and
// the Pareto set over accuracy drop, latency, energy and size; the best
// variant found is returned even when none meets the limits.
#ifndef SQUEEZE_CORE_COMPRESS_SEARCH_H_
#define SQUEEZE_CORE_COMPRESS_SEARCH_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/compress/graph_variant_builder.h"
#include "core/compress/recipe.h"

namespace squeeze::core::compress {

// Limits of 0 mean "no limit".
struct SearchLimits {
  double max_accuracy_drop = 0.0;  // GraphVariantReport::AccuracyDrop units
  int64_t max_size_bytes = 0;
  double max_latency_seconds = 0.0;  // batch-1 on the device (measured or predicted)
  double max_energy_joules = 0.0;    // per inference on the device
};

struct SearchOptions {
  SearchLimits limits;
  int max_trials = 12;
  double max_seconds = 0.0;  // 0: no time limit
};

// The largest group size in {128, 64, 32} dividing every layer's width; 0
// (per channel) when none does or there are no layers. The 4-bit formats
// the search and per-device fleet passes choose use it.
int GroupSizeFor(const quant::ptq::LayerScan& scan);

struct Candidate {
  std::string label;   // e.g. "wanda 50% + w8a8"
  std::string family;  // candidates of a family are ordered mild -> aggressive
  int level = 0;       // position within the family
  Recipe recipe;
  // The single-technique candidates this one combines (empty for singles);
  // it runs only if each of them finished within the accuracy limit.
  std::vector<std::string> parts;
};

// The candidates for `device` on `session`'s model, in a fixed order (trial
// numbers index this list, so resumed attempts agree on them).
std::vector<Candidate> SearchSpace(const GraphSession& session, const TargetDevice& device);

// One finished or started trial, with the axes the search compares.
struct Trial {
  int index = 0;  // into SearchSpace
  std::string label;
  bool finished = false;
  std::string error;  // finished with an error (or crashed an earlier attempt)
  bool skipped = false;  // cut by sensitivity; never ran
  double accuracy_drop = 0.0;
  double latency_seconds = 0.0;
  double energy_joules = 0.0;
  int64_t size_bytes = 0;
  bool faster_than_baseline = false;
  bool meets_limits = false;
  bool pareto_optimal = false;
  std::vector<std::string> notes;  // limit misses, the faster check
};

// Device-side axes of a report: measured when the device is present,
// else the roofline's prediction (falling back to the local measurement
// when the device has no figures).
double DeviceLatency(const GraphVariantReport& report, const TargetDevice& device);
double DeviceBaselineLatency(const GraphVariantReport& report, const TargetDevice& device);
double DeviceEnergy(const GraphVariantReport& report, const TargetDevice& device);

// Fills a trial's axes from its report.
Trial TrialFromReport(int index, const std::string& label, const GraphVariantReport& report,
                      const TargetDevice& device);

struct SearchCallbacks {
  // Before trial `index` runs; an error stops the search.
  std::function<absl::Status(const Trial&)> started;
  // After it ran, with its report and artifact (null report on error); an
  // error stops the search.
  std::function<absl::Status(const Trial&, const GraphVariantReport*, const std::string& artifact_path)> finished;
  std::function<bool()> cancelled;
};

// Runs the search on `device` (see the file comment). `resumed`: trials an
// earlier attempt recorded. `artifact_dir`: where trial artifacts are
// written ("<dir>/trial-<i>.onnx"). Returns every trial (resumed, run and
// skipped), marked by MarkParetoSet. CANCELLED when `cancelled` says so.
absl::StatusOr<std::vector<Trial>> RunSearch(GraphSession& session, const TargetDevice& device,
                                             const SearchOptions& options, const std::vector<Trial>& resumed,
                                             const std::string& artifact_dir, const SearchCallbacks& callbacks);

// Sets meets_limits, pareto_optimal and the limit notes of every finished
// trial without error. Returns the index (into `trials`) of the best one:
// within the limits, the smallest; when none is, the one whose limits are
// missed by the least (sum of relative excesses). -1 when no trial finished.
int MarkParetoSet(std::vector<Trial>* trials, const SearchLimits& limits);

}  // namespace squeeze::core::compress

#endif  // SQUEEZE_CORE_COMPRESS_SEARCH_H_
