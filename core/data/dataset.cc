#include "core/data/dataset.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace squeeze::core::data {
namespace {

using model::DType;
using model::Tensor;

absl::Status CheckTensor(const Tensor& tensor, const std::string& role) {
  if (tensor.shape.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset: ", role, " must have an examples dimension"));
  }
  SQ_ASSIGN_OR_RETURN(const int64_t count,
                      model::CheckedNumElements(
                          tensor.shape, model::DTypeSize(tensor.dtype)));
  const int64_t bytes = count * model::DTypeSize(tensor.dtype);
  if (static_cast<uint64_t>(bytes) != tensor.data.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dataset: ", role, " of shape [", absl::StrJoin(tensor.shape, ", "),
        "] ", model::DTypeName(tensor.dtype), " needs ", bytes,
        " bytes, holds ", tensor.data.size()));
  }
  return absl::OkStatus();
}

// Bytes of one example (one index of the first dimension).
int64_t ExampleBytes(const Tensor& tensor) {
  int64_t bytes = model::DTypeSize(tensor.dtype);
  for (size_t i = 1; i < tensor.shape.size(); ++i) bytes *= tensor.shape[i];
  return bytes;
}

Tensor Gather(const Tensor& tensor, const std::vector<int64_t>& indices) {
  Tensor out;
  out.dtype = tensor.dtype;
  out.shape = tensor.shape;
  out.shape[0] = static_cast<int64_t>(indices.size());
  const int64_t row = ExampleBytes(tensor);
  out.data.reserve(indices.size() * row);
  for (int64_t index : indices) out.data.append(tensor.data, index * row, row);
  return out;
}

template <typename T>
void AppendAs(const std::string& data, std::vector<int64_t>* out) {
  const size_t count = data.size() / sizeof(T);
  for (size_t i = 0; i < count; ++i) {
    T value;
    std::memcpy(&value, data.data() + i * sizeof(T), sizeof(T));
    out->push_back(static_cast<int64_t>(value));
  }
}

}  // namespace

absl::StatusOr<Dataset> MakeDataset(Tensor inputs,
                                    std::optional<Tensor> labels) {
  SQ_RETURN_IF_ERROR(CheckTensor(inputs, "inputs"));
  if (labels.has_value()) {
    SQ_RETURN_IF_ERROR(CheckTensor(*labels, "labels"));
    if (labels->shape[0] != inputs.shape[0]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "dataset: ", inputs.shape[0], " inputs but ", labels->shape[0],
          " labels"));
    }
  }
  return Dataset{std::move(inputs), std::move(labels)};
}

absl::StatusOr<Dataset> SelectExamples(const Dataset& dataset,
                                       const std::vector<int64_t>& indices) {
  for (size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] < 0 || indices[i] >= dataset.NumExamples()) {
      return absl::OutOfRangeError(absl::StrCat(
          "dataset: index ", indices[i], " (position ", i, ") outside [0, ",
          dataset.NumExamples(), ")"));
    }
  }
  Dataset out{Gather(dataset.inputs, indices), std::nullopt};
  if (dataset.labels.has_value()) out.labels = Gather(*dataset.labels, indices);
  return out;
}

absl::StatusOr<Dataset> SliceExamples(const Dataset& dataset, int64_t begin,
                                      int64_t end) {
  if (begin < 0 || begin > end || end > dataset.NumExamples()) {
    return absl::OutOfRangeError(
        absl::StrCat("dataset: slice [", begin, ", ", end, ") outside [0, ",
                     dataset.NumExamples(), "]"));
  }
  std::vector<int64_t> indices;
  indices.reserve(end - begin);
  for (int64_t i = begin; i < end; ++i) indices.push_back(i);
  return SelectExamples(dataset, indices);
}

absl::StatusOr<std::vector<int64_t>> LabelsAsInt64(const Dataset& dataset) {
  if (!dataset.labels.has_value()) {
    return absl::InvalidArgumentError("dataset: has no labels");
  }
  const Tensor& labels = *dataset.labels;
  std::vector<int64_t> out;
  out.reserve(labels.data.size());
  switch (labels.dtype) {
    case DType::kU8: AppendAs<uint8_t>(labels.data, &out); break;
    case DType::kBool: AppendAs<uint8_t>(labels.data, &out); break;
    case DType::kI8: AppendAs<int8_t>(labels.data, &out); break;
    case DType::kI32: AppendAs<int32_t>(labels.data, &out); break;
    case DType::kI64: AppendAs<int64_t>(labels.data, &out); break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("dataset: labels are ", model::DTypeName(labels.dtype),
                       ", not an integer type"));
  }
  return out;
}

uint64_t SplitMix64::Next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::NextBelow(uint64_t bound) {
  // Reject the top partial block so every residue is equally likely.
  const uint64_t limit = std::numeric_limits<uint64_t>::max() -
                         std::numeric_limits<uint64_t>::max() % bound;
  uint64_t value;
  do {
    value = Next();
  } while (value >= limit);
  return value % bound;
}

std::vector<int64_t> ShuffledIndices(int64_t count, uint64_t seed) {
  std::vector<int64_t> indices(count);
  for (int64_t i = 0; i < count; ++i) indices[i] = i;
  SplitMix64 random(seed);
  for (int64_t i = count - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(random.NextBelow(i + 1));
    std::swap(indices[i], indices[j]);
  }
  return indices;
}

absl::StatusOr<DatasetSplits> SplitDataset(const Dataset& dataset,
                                           double validation_fraction,
                                           double test_fraction,
                                           uint64_t seed) {
  const auto in_unit = [](double f) { return f >= 0.0 && f <= 1.0; };
  if (!in_unit(validation_fraction) || !in_unit(test_fraction) ||
      validation_fraction + test_fraction > 1.0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SplitDataset: fractions must be in [0, 1] with sum <= 1, got "
        "validation ",
        validation_fraction, " and test ", test_fraction));
  }
  const int64_t n = dataset.NumExamples();
  const int64_t test_count =
      static_cast<int64_t>(std::floor(static_cast<double>(n) * test_fraction));
  const int64_t validation_count = static_cast<int64_t>(
      std::floor(static_cast<double>(n) * validation_fraction));
  const std::vector<int64_t> order = ShuffledIndices(n, seed);
  const auto part = [&](int64_t begin, int64_t end) {
    return std::vector<int64_t>(order.begin() + begin, order.begin() + end);
  };
  SQ_ASSIGN_OR_RETURN(Dataset test, SelectExamples(dataset, part(0, test_count)));
  SQ_ASSIGN_OR_RETURN(
      Dataset validation,
      SelectExamples(dataset, part(test_count, test_count + validation_count)));
  SQ_ASSIGN_OR_RETURN(
      Dataset train,
      SelectExamples(dataset, part(test_count + validation_count, n)));
  return DatasetSplits{std::move(train), std::move(validation),
                       std::move(test)};
}

}  // namespace squeeze::core::data
