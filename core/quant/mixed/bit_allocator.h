// The bit-width allocator of mixed-precision quantization (issue 4): picks
// one option (a bit width) per layer to minimise the total predicted error
// subject to a size budget, exactly, by dynamic programming over the
// budget -- not a greedy pass.
//
// Sizes are integers (bits). The DP runs over budget units of `unit` bits,
// unit = the gcd of every option's size, so when budget / unit fits
// max_states the result is the exact optimum. Otherwise every size is
// rounded UP to a coarser unit: the plan is still within the budget, and it
// is optimal among plans whose rounded-up sizes fit (it can only miss plans
// that use the last ~layers * unit bits of the budget); `exact` says which.
// Cost: O(layers * options * states) time, O(layers * states) bytes.
#ifndef SQUEEZE_CORE_QUANT_MIXED_BIT_ALLOCATOR_H_
#define SQUEEZE_CORE_QUANT_MIXED_BIT_ALLOCATOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace squeeze::core::quant::mixed {

struct BitOption {
  int bits = 0;          // the format's nominal bit width (2, 3, 4, 8 or 16)
  int64_t size_bits = 0; // storage of the layer in this format, in bits (> 0)
  double cost = 0;       // predicted error (sensitivity-weighted), finite, >= 0
};

struct LayerOptions {
  std::string name;
  int64_t params = 0;
  std::vector<BitOption> options;  // at least one
};

struct Allocation {
  std::vector<int> choice;  // per layer: index into its options
  double total_cost = 0;
  int64_t total_size_bits = 0;
  bool exact = true;        // see the header comment
};

// Minimises sum of cost subject to sum of size_bits <= budget_bits.
// INVALID_ARGUMENT naming the layer for an empty option list, a size <= 0,
// or a negative / non-finite cost; FAILED_PRECONDITION when even the
// smallest option of every layer exceeds the budget (saying by how much).
absl::StatusOr<Allocation> AllocateBits(const std::vector<LayerOptions>& layers, int64_t budget_bits,
                                        int64_t max_states = int64_t{1} << 20);

}  // namespace squeeze::core::quant::mixed

#endif  // SQUEEZE_CORE_QUANT_MIXED_BIT_ALLOCATOR_H_
