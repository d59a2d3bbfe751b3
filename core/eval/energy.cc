#include "core/eval/energy.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace squeeze::core::eval {
namespace {

constexpr char kFp32[] = "fp32";
constexpr double kPicojoule = 1e-12;

}  // namespace

EnergyModel DefaultCpuEnergyModel() {
  EnergyModel model;
  model.pj_per_mac = {
      {"fp32", 3.7 + 0.9},
      {"fp16", 1.1 + 0.4},
      {"int8", 0.2 + 0.03},
      {"int4", 0.2 + 0.03},
  };
  model.pj_per_byte = 640.0 / 32.0;  // 640 pJ per 32-bit read
  model.source = "Horowitz, ISSCC 2014, 45 nm";
  return model;
}

std::string EnergyModel::Describe() const {
  std::vector<std::string> parts;
  for (const auto& [format, pj] : pj_per_mac) {
    parts.push_back(absl::StrFormat("%s %g pJ/MAC", format, pj));
  }
  parts.push_back(absl::StrFormat("DRAM %g pJ/byte", pj_per_byte));
  return absl::StrCat(absl::StrJoin(parts, ", "),
                      source.empty() ? "" : absl::StrCat(" (", source, ")"));
}

std::string FormatForBits(int bits) {
  return bits == 32 ? kFp32 : absl::StrCat("int", bits);
}

std::string EnergyEstimate::Describe() const {
  return absl::StrFormat("%d MACs x %g pJ (%s) + %d bytes x %g pJ = %.3g J",
                         macs, pj_per_mac, format, bytes_moved, pj_per_byte,
                         joules);
}

EnergyEstimate EstimateJoules(int64_t macs, const std::string& format,
                              int64_t bytes_moved, const EnergyModel& model) {
  EnergyEstimate estimate;
  estimate.macs = macs;
  estimate.bytes_moved = bytes_moved;
  estimate.pj_per_byte = model.pj_per_byte;
  auto figure = model.pj_per_mac.find(format);
  if (figure == model.pj_per_mac.end()) figure = model.pj_per_mac.find(kFp32);
  if (figure != model.pj_per_mac.end()) {
    estimate.format = figure->first;
    estimate.pj_per_mac = figure->second;
  } else {
    estimate.format = format;
  }
  estimate.joules = (static_cast<double>(macs) * estimate.pj_per_mac +
                     static_cast<double>(bytes_moved) * model.pj_per_byte) *
                    kPicojoule;
  return estimate;
}

}  // namespace squeeze::core::eval
