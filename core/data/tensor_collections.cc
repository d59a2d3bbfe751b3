#include "core/data/tensor_collections.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/data/numpy_files.h"
#include "core/model/safetensors.h"
#include "core/status_macros.h"

namespace squeeze::core::data {

absl::StatusOr<Dataset> DatasetFromTensors(
    std::map<std::string, model::Tensor> tensors, const std::string& source,
    const std::string& inputs_name, const std::string& labels_name) {
  const auto inputs = tensors.find(inputs_name);
  if (inputs == tensors.end()) {
    std::vector<std::string> names;
    for (const auto& [name, tensor] : tensors) names.push_back(name);
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": no tensor named \"", inputs_name, "\" (it holds: ",
        absl::StrJoin(names, ", "), ")"));
  }
  std::optional<model::Tensor> labels;
  if (const auto it = tensors.find(labels_name);
      !labels_name.empty() && it != tensors.end()) {
    labels = std::move(it->second);
  }
  absl::StatusOr<Dataset> dataset =
      MakeDataset(std::move(inputs->second), std::move(labels));
  if (!dataset.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", dataset.status().message()));
  }
  return dataset;
}

absl::StatusOr<Dataset> ReadSafetensorsDataset(const std::string& path,
                                               const std::string& inputs_name,
                                               const std::string& labels_name) {
  SQ_ASSIGN_OR_RETURN(model::SafetensorsFile file,
                      model::ReadSafetensorsFile(path));
  return DatasetFromTensors(std::move(file.tensors), path, inputs_name,
                            labels_name);
}

absl::StatusOr<Dataset> ReadNpzDataset(const std::string& path,
                                       const std::string& inputs_name,
                                       const std::string& labels_name) {
  SQ_ASSIGN_OR_RETURN(auto tensors, ReadNpzFile(path));
  return DatasetFromTensors(std::move(tensors), path, inputs_name,
                            labels_name);
}

}  // namespace squeeze::core::data
