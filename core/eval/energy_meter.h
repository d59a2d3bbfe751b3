// Measured energy: cumulative energy counters read before and after running
// a model many times.
//
//   - RAPL (Linux powercap, /sys/class/powercap/intel-rapl:N/energy_uj on
//     Intel and AMD CPUs): the package domains' counters in microjoules,
//     wrapping at max_energy_range_uj.
//   - NVML (NVIDIA GPUs, Volta and newer): nvmlDeviceGetTotalEnergyConsumption
//     in millijoules since the driver loaded. libnvidia-ml.so.1 is opened
//     with dlopen at run time; it is not a build dependency.
//
// Both count the whole package or board, so a reading includes idle power
// and anything else running; MeasureJoulesPerCall reports the total per call
// and says so in its description. Where neither exists (this is common in
// VMs and containers) the caller falls back to an estimate and labels it.
#ifndef SQUEEZE_CORE_EVAL_ENERGY_METER_H_
#define SQUEEZE_CORE_EVAL_ENERGY_METER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace squeeze::core::eval {

class EnergyCounter {
 public:
  virtual ~EnergyCounter() = default;
  // Cumulative joules since an arbitrary origin; wraparound is handled
  // between consecutive reads.
  virtual absl::StatusOr<double> ReadJoules() = 0;
  // e.g. "RAPL package-0+package-1 (/sys/class/powercap)".
  virtual std::string Source() const = 0;
};

// The RAPL package domains under `root` (directories named
// "intel-rapl:<N>" whose "name" starts with "package"). NOT_FOUND when
// there are none or `root` is missing; PERMISSION_DENIED when energy_uj is
// not readable (recent kernels make it root-only).
absl::StatusOr<std::unique_ptr<EnergyCounter>> OpenRaplCounter(
    const std::string& root = "/sys/class/powercap");

// GPU `index` through NVML. NOT_FOUND when libnvidia-ml.so.1 cannot be
// loaded; UNAVAILABLE when NVML fails to initialise or the GPU has no
// energy counter.
absl::StatusOr<std::unique_ptr<EnergyCounter>> OpenNvmlCounter(int index);

struct EnergyMeasurement {
  double joules_per_call = 0.0;
  int calls = 0;
  double seconds = 0.0;
  std::string description;  // source, calls, seconds, "whole package, includes idle"
};

// Calls `fn` repeatedly for at least `min_seconds` (and `min_calls`) and
// divides the counter's difference by the number of calls.
absl::StatusOr<EnergyMeasurement> MeasureJoulesPerCall(EnergyCounter& counter, const std::function<void()>& fn,
                                                       double min_seconds, int min_calls);

}  // namespace squeeze::core::eval

#endif  // SQUEEZE_CORE_EVAL_ENERGY_METER_H_
