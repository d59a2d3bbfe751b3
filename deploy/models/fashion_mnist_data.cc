#include "deploy/models/fashion_mnist_data.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

#include "core/kernels/cpu/cpu_backend.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"

namespace squeeze::deploy {

using core::graph::DataType;
using core::graph::Graph;
using core::graph::Tensor;

// Images [N, 28, 28] uint8 -> float32 [N, 1, 28, 28] in [0, 1].
Tensor ImagesToTensor(const core::model::Tensor& images, const std::vector<int64_t>& indices) {
  Tensor t(DataType::kFloat32, {static_cast<int64_t>(indices.size()), 1, 28, 28});
  const auto* pixels = reinterpret_cast<const uint8_t*>(images.data.data());
  for (size_t i = 0; i < indices.size(); ++i) {
    for (int64_t p = 0; p < 784; ++p) {
      t.data<float>()[i * 784 + p] = pixels[indices[i] * 784 + p] / 255.0f;
    }
  }
  return t;
}

absl::StatusOr<std::vector<float>> Logits(const Graph& graph, const core::data::Dataset& data) {
  SQ_ASSIGN_OR_RETURN(auto executor, core::runtime::Executor::Create(graph, core::kernels::cpu::CreateCpuBackend()));
  const int64_t n = data.NumExamples();
  std::vector<float> logits;
  logits.reserve(n * 10);
  for (int64_t begin = 0; begin < n; begin += 500) {
    std::vector<int64_t> indices;
    for (int64_t i = begin; i < std::min(n, begin + 500); ++i) indices.push_back(i);
    SQ_ASSIGN_OR_RETURN(auto outputs, executor.Run({{"image", ImagesToTensor(data.inputs, indices)}}));
    if (outputs[0].num_elements() != static_cast<int64_t>(indices.size()) * 10) {
      return absl::InvalidArgumentError(absl::StrCat("fashion-mnist: expected 10 logits per image, got ",
                                                     outputs[0].num_elements(), " for ", indices.size()));
    }
    const float* batch = outputs[0].data<float>();
    logits.insert(logits.end(), batch, batch + outputs[0].num_elements());
  }
  return logits;
}

std::vector<bool> TopOneCorrect(const std::vector<float>& logits, const std::vector<int64_t>& labels) {
  std::vector<bool> correct(labels.size());
  for (size_t i = 0; i < labels.size(); ++i) {
    const float* row = logits.data() + i * 10;
    correct[i] = std::max_element(row, row + 10) - row == labels[i];
  }
  return correct;
}

absl::StatusOr<double> Accuracy(const Graph& graph, const core::data::Dataset& data) {
  SQ_ASSIGN_OR_RETURN(std::vector<float> logits, Logits(graph, data));
  SQ_ASSIGN_OR_RETURN(std::vector<int64_t> labels, core::data::LabelsAsInt64(data));
  const std::vector<bool> correct = TopOneCorrect(logits, labels);
  return static_cast<double>(std::count(correct.begin(), correct.end(), true)) / data.NumExamples();
}

}  // namespace squeeze::deploy
