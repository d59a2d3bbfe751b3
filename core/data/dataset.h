// A dataset in memory: an inputs tensor whose first dimension indexes the
// examples, and optionally a labels tensor with the same first dimension.
// Shuffling and splitting are deterministic for a seed on every platform:
// the permutation comes from SplitMix64 (Steele, Lea, Flood 2014) and a
// Fisher-Yates shuffle written here, with bounded draws by rejection, never
// from std::shuffle or std::uniform_int_distribution, whose outputs differ
// between standard libraries.
#ifndef SQUEEZE_CORE_DATA_DATASET_H_
#define SQUEEZE_CORE_DATA_DATASET_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model/tensor.h"

namespace squeeze::core::data {

struct Dataset {
  model::Tensor inputs;
  std::optional<model::Tensor> labels;

  // inputs.shape[0]. Precondition: the dataset came from MakeDataset or a
  // reader here (inputs has at least one dimension).
  int64_t NumExamples() const { return inputs.shape[0]; }
};

// Checks that `inputs` has at least one dimension, that each tensor's data
// size matches its shape and dtype, and that `labels` (if any) has the same
// first dimension. INVALID_ARGUMENT naming the mismatch.
absl::StatusOr<Dataset> MakeDataset(model::Tensor inputs,
                                    std::optional<model::Tensor> labels);

// The examples at `indices`, in that order (repeats allowed). OUT_OF_RANGE
// naming the first index outside [0, NumExamples()).
absl::StatusOr<Dataset> SelectExamples(const Dataset& dataset,
                                       const std::vector<int64_t>& indices);

// Examples [begin, end) of `dataset`; OUT_OF_RANGE unless
// 0 <= begin <= end <= NumExamples().
absl::StatusOr<Dataset> SliceExamples(const Dataset& dataset, int64_t begin,
                                      int64_t end);

// The labels as int64 values, for integer label tensors (U8, I8, I32, I64,
// BOOL) of any shape. INVALID_ARGUMENT for floating-point labels or none.
absl::StatusOr<std::vector<int64_t>> LabelsAsInt64(const Dataset& dataset);

// SplitMix64: a 64-bit generator whose whole state is one counter.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  // Uniform in [0, bound), bound >= 1, unbiased (rejection sampling).
  uint64_t NextBelow(uint64_t bound);

 private:
  uint64_t state_;
};

// A permutation of 0..count-1 determined by `seed` alone (Fisher-Yates from
// the last element down, j = NextBelow(i + 1)). count must be >= 0.
std::vector<int64_t> ShuffledIndices(int64_t count, uint64_t seed);

struct DatasetSplits {
  Dataset train;
  Dataset validation;
  Dataset test;
};

// Shuffles with `seed`, then takes floor(n * test_fraction) examples for
// test, the next floor(n * validation_fraction) for validation and the rest
// for train. The same seed gives the same splits. INVALID_ARGUMENT unless
// both fractions are in [0, 1] and sum to at most 1.
absl::StatusOr<DatasetSplits> SplitDataset(const Dataset& dataset,
                                           double validation_fraction,
                                           double test_fraction,
                                           uint64_t seed);

}  // namespace squeeze::core::data

#endif  // SQUEEZE_CORE_DATA_DATASET_H_
