// Datasets stored as named tensors: a safetensors file or a .npz archive
// holding an inputs tensor and, optionally, a labels tensor.
#ifndef SQUEEZE_CORE_DATA_TENSOR_COLLECTIONS_H_
#define SQUEEZE_CORE_DATA_TENSOR_COLLECTIONS_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "core/data/dataset.h"
#include "core/model/tensor.h"

namespace squeeze::core::data {

inline constexpr char kDefaultInputsName[] = "inputs";
inline constexpr char kDefaultLabelsName[] = "labels";

// The dataset made of tensors[inputs_name] and, when present,
// tensors[labels_name] (an absent labels tensor means an unlabeled dataset;
// an empty labels_name ignores labels). INVALID_ARGUMENT naming `source` and
// the names it holds when inputs_name is absent, plus MakeDataset's errors.
absl::StatusOr<Dataset> DatasetFromTensors(
    std::map<std::string, model::Tensor> tensors, const std::string& source,
    const std::string& inputs_name = kDefaultInputsName,
    const std::string& labels_name = kDefaultLabelsName);

// ReadSafetensorsFile + DatasetFromTensors.
absl::StatusOr<Dataset> ReadSafetensorsDataset(
    const std::string& path,
    const std::string& inputs_name = kDefaultInputsName,
    const std::string& labels_name = kDefaultLabelsName);

// ReadNpzFile + DatasetFromTensors (np.savez(path, inputs=x, labels=y)).
absl::StatusOr<Dataset> ReadNpzDataset(
    const std::string& path,
    const std::string& inputs_name = kDefaultInputsName,
    const std::string& labels_name = kDefaultLabelsName);

}  // namespace squeeze::core::data

#endif  // SQUEEZE_CORE_DATA_TENSOR_COLLECTIONS_H_
