#include "core/eval/energy_meter.h"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace squeeze::core::eval {
namespace {

absl::StatusOr<std::string> ReadLine(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) {
    std::error_code error;
    if (std::filesystem::exists(path, error)) {
      return absl::PermissionDeniedError(absl::StrCat(path.string(), " exists but cannot be read"));
    }
    return absl::NotFoundError(absl::StrCat(path.string(), " does not exist"));
  }
  std::string line;
  std::getline(in, line);
  return std::string(absl::StripAsciiWhitespace(line));
}

absl::StatusOr<double> ReadNumber(const std::filesystem::path& path) {
  absl::StatusOr<std::string> line = ReadLine(path);
  if (!line.ok()) return line.status();
  double value = 0;
  if (!absl::SimpleAtod(*line, &value)) {
    return absl::DataLossError(absl::StrCat(path.string(), " holds '", *line, "', not a number"));
  }
  return value;
}

class RaplCounter : public EnergyCounter {
 public:
  struct Domain {
    std::filesystem::path energy_file;
    std::string name;
    double range_uj = 0;
    double last_uj = -1;
    double total_uj = 0;
  };
  RaplCounter(std::vector<Domain> domains, std::string root) : domains_(std::move(domains)), root_(std::move(root)) {}

  absl::StatusOr<double> ReadJoules() override {
    double joules = 0;
    for (Domain& domain : domains_) {
      absl::StatusOr<double> now = ReadNumber(domain.energy_file);
      if (!now.ok()) return now.status();
      if (domain.last_uj >= 0) {
        double delta = *now - domain.last_uj;
        if (delta < 0) delta += domain.range_uj;  // The counter wrapped.
        domain.total_uj += delta;
      }
      domain.last_uj = *now;
      joules += domain.total_uj * 1e-6;
    }
    return joules;
  }

  std::string Source() const override {
    std::vector<std::string> names;
    for (const Domain& domain : domains_) names.push_back(domain.name);
    return absl::StrCat("RAPL ", absl::StrJoin(names, "+"), " (", root_, ")");
  }

 private:
  std::vector<Domain> domains_;
  std::string root_;
};

// The NVML entry points used, looked up by name.
using NvmlInit = int (*)();
using NvmlGetHandle = int (*)(unsigned int, void**);
using NvmlGetEnergy = int (*)(void*, unsigned long long*);

class NvmlCounter : public EnergyCounter {
 public:
  NvmlCounter(void* library, void* device, NvmlGetEnergy get_energy, int index)
      : library_(library), device_(device), get_energy_(get_energy), index_(index) {}
  ~NvmlCounter() override { dlclose(library_); }

  absl::StatusOr<double> ReadJoules() override {
    unsigned long long millijoules = 0;
    const int rc = get_energy_(device_, &millijoules);
    if (rc != 0) return absl::UnavailableError(absl::StrCat("nvmlDeviceGetTotalEnergyConsumption: error ", rc));
    return static_cast<double>(millijoules) * 1e-3;
  }
  std::string Source() const override { return absl::StrCat("NVML GPU ", index_, " total energy"); }

 private:
  void* library_;
  void* device_;
  NvmlGetEnergy get_energy_;
  int index_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<EnergyCounter>> OpenRaplCounter(const std::string& root) {
  std::error_code error;
  std::vector<RaplCounter::Domain> domains;
  for (const auto& entry : std::filesystem::directory_iterator(root, error)) {
    const std::string dir = entry.path().filename().string();
    // Top-level domains only: "intel-rapl:0", not "intel-rapl:0:0".
    if (!absl::StartsWith(dir, "intel-rapl:") || dir.find(':', 11) != std::string::npos) continue;
    absl::StatusOr<std::string> name = ReadLine(entry.path() / "name");
    if (!name.ok() || !absl::StartsWith(*name, "package")) continue;
    absl::StatusOr<double> range = ReadNumber(entry.path() / "max_energy_range_uj");
    if (!range.ok()) return range.status();
    RaplCounter::Domain domain;
    domain.energy_file = entry.path() / "energy_uj";
    domain.name = *name;
    domain.range_uj = *range;
    domains.push_back(std::move(domain));
  }
  if (error) return absl::NotFoundError(absl::StrCat("RAPL: ", root, ": ", error.message()));
  if (domains.empty()) return absl::NotFoundError(absl::StrCat("RAPL: no package domain under ", root));
  std::sort(domains.begin(), domains.end(),
            [](const auto& a, const auto& b) { return a.energy_file < b.energy_file; });
  auto counter = std::make_unique<RaplCounter>(std::move(domains), root);
  absl::StatusOr<double> first = counter->ReadJoules();  // Also checks readability.
  if (!first.ok()) return first.status();
  return std::unique_ptr<EnergyCounter>(std::move(counter));
}

absl::StatusOr<std::unique_ptr<EnergyCounter>> OpenNvmlCounter(int index) {
  void* library = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) return absl::NotFoundError("NVML: libnvidia-ml.so.1 is not installed");
  auto init = reinterpret_cast<NvmlInit>(dlsym(library, "nvmlInit_v2"));
  auto get_handle = reinterpret_cast<NvmlGetHandle>(dlsym(library, "nvmlDeviceGetHandleByIndex_v2"));
  auto get_energy = reinterpret_cast<NvmlGetEnergy>(dlsym(library, "nvmlDeviceGetTotalEnergyConsumption"));
  if (init == nullptr || get_handle == nullptr || get_energy == nullptr) {
    dlclose(library);
    return absl::UnavailableError("NVML: the library lacks nvmlInit_v2, nvmlDeviceGetHandleByIndex_v2 or "
                                  "nvmlDeviceGetTotalEnergyConsumption");
  }
  void* device = nullptr;
  int rc = init();
  if (rc == 0) rc = get_handle(static_cast<unsigned int>(index), &device);
  if (rc != 0) {
    dlclose(library);
    return absl::UnavailableError(absl::StrCat("NVML: initialisation or GPU ", index, " failed with error ", rc));
  }
  auto counter = std::make_unique<NvmlCounter>(library, device, get_energy, index);
  absl::StatusOr<double> first = counter->ReadJoules();
  if (!first.ok()) return first.status();
  return std::unique_ptr<EnergyCounter>(std::move(counter));
}

absl::StatusOr<EnergyMeasurement> MeasureJoulesPerCall(EnergyCounter& counter, const std::function<void()>& fn,
                                                       double min_seconds, int min_calls) {
  fn();  // Warm-up.
  absl::StatusOr<double> before = counter.ReadJoules();
  if (!before.ok()) return before.status();
  const auto start = std::chrono::steady_clock::now();
  EnergyMeasurement result;
  while (true) {
    fn();
    ++result.calls;
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (result.calls >= min_calls && result.seconds >= min_seconds) break;
  }
  absl::StatusOr<double> after = counter.ReadJoules();
  if (!after.ok()) return after.status();
  result.joules_per_call = (*after - *before) / result.calls;
  result.description =
      absl::StrFormat("%s: %.4g J over %d calls in %.3g s (whole package/board, includes idle and other load)",
                      counter.Source(), *after - *before, result.calls, result.seconds);
  return result;
}

}  // namespace squeeze::core::eval
