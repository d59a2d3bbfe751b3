#include "core/quant/mixed/bit_allocator.h"

#include <cmath>
#include <limits>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace squeeze::core::quant::mixed {

absl::StatusOr<Allocation> AllocateBits(const std::vector<LayerOptions>& layers, int64_t budget_bits,
                                        int64_t max_states) {
  int64_t unit = 0;
  int64_t smallest_total = 0;
  for (const LayerOptions& layer : layers) {
    if (layer.options.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("allocate: no bit-width option (layer ", layer.name, ")"));
    }
    int64_t smallest = std::numeric_limits<int64_t>::max();
    for (const BitOption& option : layer.options) {
      if (option.size_bits <= 0) {
        return absl::InvalidArgumentError(absl::StrCat("allocate: size must be > 0, got ", option.size_bits,
                                                       " bits at ", option.bits, " bits (layer ", layer.name, ")"));
      }
      if (!std::isfinite(option.cost) || option.cost < 0) {
        return absl::InvalidArgumentError(absl::StrCat("allocate: cost must be finite and >= 0, got ", option.cost,
                                                       " at ", option.bits, " bits (layer ", layer.name, ")"));
      }
      unit = std::gcd(unit, option.size_bits);
      smallest = std::min(smallest, option.size_bits);
    }
    smallest_total += smallest;
  }
  if (smallest_total > budget_bits) {
    return absl::FailedPreconditionError(absl::StrCat("allocate: the smallest plan takes ", smallest_total,
                                                      " bits, over the budget of ", budget_bits, " by ",
                                                      smallest_total - budget_bits));
  }
  Allocation result;
  if (layers.empty()) return result;
  if (budget_bits / unit > max_states) {
    unit = (budget_bits + max_states - 1) / max_states;
    result.exact = false;
  }
  const int64_t states = budget_bits / unit + 1;
  auto units = [unit](int64_t size) { return (size + unit - 1) / unit; };
  const double kInf = std::numeric_limits<double>::infinity();
  // best[s]: least cost of the layers so far using exactly s units.
  std::vector<double> best(states, kInf), next(states);
  best[0] = 0;
  std::vector<std::vector<int8_t>> picked(layers.size(), std::vector<int8_t>(states, -1));
  for (size_t l = 0; l < layers.size(); ++l) {
    std::fill(next.begin(), next.end(), kInf);
    for (size_t o = 0; o < layers[l].options.size(); ++o) {
      const int64_t u = units(layers[l].options[o].size_bits);
      const double cost = layers[l].options[o].cost;
      for (int64_t s = u; s < states; ++s) {
        if (best[s - u] == kInf) continue;
        const double c = best[s - u] + cost;
        if (c < next[s]) {
          next[s] = c;
          picked[l][s] = static_cast<int8_t>(o);
        }
      }
    }
    best.swap(next);
  }
  int64_t at = 0;
  for (int64_t s = 1; s < states; ++s) {
    if (best[s] < best[at]) at = s;
  }
  if (best[at] == kInf) {
    return absl::FailedPreconditionError("allocate: no plan fits the budget after rounding sizes up");
  }
  result.choice.resize(layers.size());
  for (size_t l = layers.size(); l-- > 0;) {
    const int o = picked[l][at];
    result.choice[l] = o;
    result.total_cost += layers[l].options[o].cost;
    result.total_size_bits += layers[l].options[o].size_bits;
    at -= units(layers[l].options[o].size_bits);
  }
  return result;
}

}  // namespace squeeze::core::quant::mixed
