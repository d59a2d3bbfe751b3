#include "core/eval/roofline.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace squeeze::core::eval {

double DeviceRoofline::PerLayerOverheadSeconds() const {
  return kind == "cpu" ? 1e-6 : 5e-6;
}

std::string ComputeFormat(const LayerCost& layer, const DeviceRoofline& device) {
  if (layer.activation_bits == 8 && device.Runs("int8")) return "int8";
  if (layer.weight_bits < 32) {
    for (const char* format : {"fp16", "bf16"}) {
      if (device.Runs(format)) return format;
    }
  }
  return "fp32";
}

RooflinePrediction PredictRoofline(const std::vector<LayerCost>& layers, const DeviceRoofline& device,
                                   int64_t batch) {
  RooflinePrediction prediction;
  std::set<std::string> formats;
  double dynamic_pj = 0.0;
  int64_t total_macs = 0, total_bytes = 0;
  for (const LayerCost& layer : layers) {
    const std::string format = ComputeFormat(layer, device);
    formats.insert(format);
    const double density = layer.sparse_2_4 && device.sparse_2_4 ? 0.5 : 1.0;
    const double macs = static_cast<double>(layer.macs) * static_cast<double>(batch) * density;
    const auto peak = device.peak_ops_per_second.find(format);
    const double compute_seconds =
        peak == device.peak_ops_per_second.end() || peak->second <= 0 ? 0.0 : 2.0 * macs / peak->second;
    const int64_t bytes = layer.weight_bytes + layer.activation_bytes * batch;
    const double memory_seconds = device.memory_bandwidth_bytes_per_second > 0
                                      ? static_cast<double>(bytes) / device.memory_bandwidth_bytes_per_second
                                      : 0.0;
    if (compute_seconds >= memory_seconds) {
      ++prediction.compute_bound_layers;
    } else {
      ++prediction.memory_bound_layers;
    }
    prediction.seconds += device.PerLayerOverheadSeconds() + std::max(compute_seconds, memory_seconds);
    const auto pj = device.pj_per_mac.find(format);
    dynamic_pj += macs * (pj == device.pj_per_mac.end() ? 0.0 : pj->second) +
                  static_cast<double>(bytes) * device.pj_per_byte;
    total_macs += static_cast<int64_t>(macs);
    total_bytes += bytes;
  }
  prediction.joules = dynamic_pj * 1e-12 + device.idle_power_watts * prediction.seconds;
  prediction.formats.assign(formats.begin(), formats.end());
  prediction.description = absl::StrFormat(
      "roofline on %s, batch %d: %d layers (%d compute-bound, %d memory-bound) in %s, %d MACs, %d bytes, "
      "%.3g GB/s, %.3g us overhead/layer, idle %.3g W -> %.4g s, %.4g J",
      device.name, batch, layers.size(), prediction.compute_bound_layers, prediction.memory_bound_layers,
      absl::StrJoin(prediction.formats, "+"), total_macs, total_bytes,
      device.memory_bandwidth_bytes_per_second / 1e9, device.PerLayerOverheadSeconds() * 1e6,
      device.idle_power_watts, prediction.seconds, prediction.joules);
  return prediction;
}

}  // namespace squeeze::core::eval
