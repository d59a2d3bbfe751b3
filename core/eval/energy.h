// A first-order energy model: joules = MACs * energy per MAC of the number
// format + bytes moved from DRAM * energy per byte. It ignores caches,
// static power and the cost of unpacking, so it compares formats rather than
// predicting a meter reading. docs/energy.md explains the default figures.
#ifndef SQUEEZE_CORE_EVAL_ENERGY_H_
#define SQUEEZE_CORE_EVAL_ENERGY_H_

#include <cstdint>
#include <map>
#include <string>

namespace squeeze::core::eval {

struct EnergyModel {
  // Picojoules per multiply-accumulate, by format key ("fp32", "fp16",
  // "int8", "int4", ...).
  std::map<std::string, double> pj_per_mac;
  // Picojoules per byte read from DRAM.
  double pj_per_byte = 0.0;
  // Where the figures come from, for reports.
  std::string source;

  // One line listing every figure and the source.
  std::string Describe() const;
};

// Horowitz, "Computing's energy problem (and what we can do about it)",
// ISSCC 2014, 45 nm, 0.9 V:
//   fp32: 3.7 pJ mul + 0.9 pJ add = 4.6 pJ/MAC
//   fp16: 1.1 pJ mul + 0.4 pJ add = 1.5 pJ/MAC
//   int8: 0.2 pJ mul + 0.03 pJ add = 0.23 pJ/MAC
//   int4: no figure in the paper; CPUs widen int4 to int8 to multiply, so
//         the int8 figure is used
//   DRAM: 1.3-2.6 nJ per 64-bit access; taken as 640 pJ per 32-bit read
//         = 20 pJ/byte
EnergyModel DefaultCpuEnergyModel();

// The format key for `bits`-bit integer weights ("int8", "int4"); "fp32"
// for 32.
std::string FormatForBits(int bits);

struct EnergyEstimate {
  double joules = 0.0;
  int64_t macs = 0;
  std::string format;       // the key whose figure was used
  double pj_per_mac = 0.0;
  int64_t bytes_moved = 0;
  double pj_per_byte = 0.0;

  // The inputs and the result in one line, e.g.
  // "203264 MACs x 0.23 pJ (int8) + 203530 bytes x 20 pJ = 4.12e-06 J".
  std::string Describe() const;
};

// Energy of `macs` multiply-accumulates in `format` plus `bytes_moved` bytes
// from DRAM. A format missing from the model falls back to "fp32" (and to 0
// if that is missing too); `format` in the result says which was used.
EnergyEstimate EstimateJoules(int64_t macs, const std::string& format,
                              int64_t bytes_moved, const EnergyModel& model);

}  // namespace squeeze::core::eval

#endif  // SQUEEZE_CORE_EVAL_ENERGY_H_
