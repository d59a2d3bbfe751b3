// Latency and energy of a model on a device that is not here, predicted
// from the device profile with a roofline per layer:
//
//   time(layer)  = overhead + max(2 * MACs * density / peak(format),
//                                 bytes moved / memory bandwidth)
//   time(model)  = sum over layers
//   energy       = MACs * density * pJ/MAC(format) + bytes * pJ/byte
//                  + idle power * time(model)
//
// "format" is the format the multiplies run in: int8 for W8A8, the
// device's fastest float format (fp16/bf16) for weight-only int4/int8
// (weights are widened before the multiply), fp32 for an fp32 model.
// density is the fraction of MACs executed: 0.5 for a 2:4-sparse layer on a
// device with sparse tensor cores, 1 otherwise (unstructured zeros are not
// skipped by dense kernels). "overhead" is a fixed cost per layer (kernel
// launch on GPUs, loop setup on CPUs). docs/energy.md documents the model
// and its limits: it ignores caches, fusion and occupancy, so it ranks
// variants and devices rather than predicting a stopwatch.
#ifndef SQUEEZE_CORE_EVAL_ROOFLINE_H_
#define SQUEEZE_CORE_EVAL_ROOFLINE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace squeeze::core::eval {

// The profile fields the roofline uses (a core-level mirror of the
// service's DeviceProfile, so that core does not depend on protobuf).
struct DeviceRoofline {
  std::string name;
  std::string kind;  // "gpu", "soc" or "cpu"
  std::map<std::string, double> peak_ops_per_second;  // by format key
  double memory_bandwidth_bytes_per_second = 0.0;
  double idle_power_watts = 0.0;
  bool sparse_2_4 = false;
  std::map<std::string, double> pj_per_mac;
  double pj_per_byte = 0.0;

  bool Runs(const std::string& format) const { return peak_ops_per_second.count(format) > 0; }
  // 5 us per layer on "gpu"/"soc" (kernel launch), 1 us on "cpu".
  double PerLayerOverheadSeconds() const;
};

// One matrix layer of a variant, per example.
struct LayerCost {
  std::string name;
  int64_t macs = 0;              // multiply-adds per example, dense count
  int64_t weight_bytes = 0;      // weight (+ scales, indices) as stored
  int64_t activation_bytes = 0;  // input + output bytes per example
  int weight_bits = 32;          // 32, 16, 8, 4, ...
  int activation_bits = 32;      // 8 for W8A8, else 32
  bool sparse_2_4 = false;       // the weight is 2:4 sparse
};

struct RooflinePrediction {
  double seconds = 0.0;
  double joules = 0.0;
  // Sum over layers of the bound that won: how many were compute-bound.
  int compute_bound_layers = 0;
  int memory_bound_layers = 0;
  // Formats the multiplies ran in, e.g. "int8" or "fp16".
  std::vector<std::string> formats;
  // The inputs and the result in one line, for reports.
  std::string description;
};

// The format `layer`'s multiplies run in on `device` (see the file comment):
// "int8" when activation_bits == 8 and the device runs int8; otherwise, for
// quantized weights, the first of fp16, bf16, fp32 the device runs; "fp32"
// for fp32 weights.
std::string ComputeFormat(const LayerCost& layer, const DeviceRoofline& device);

// Predicts one batch of `batch` examples through `layers` on `device`.
RooflinePrediction PredictRoofline(const std::vector<LayerCost>& layers, const DeviceRoofline& device,
                                   int64_t batch);

}  // namespace squeeze::core::eval

#endif  // SQUEEZE_CORE_EVAL_ROOFLINE_H_
