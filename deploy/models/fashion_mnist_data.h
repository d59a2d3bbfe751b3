// The reference Fashion-MNIST classifiers' input and metric, shared by
// train_fashion_mnist and squeeze-quality-report. The graphs take "image"
// float32 [N, 1, 28, 28] pixels in [0, 1] and return logits [N, 10].
#ifndef SQUEEZE_DEPLOY_MODELS_FASHION_MNIST_DATA_H_
#define SQUEEZE_DEPLOY_MODELS_FASHION_MNIST_DATA_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/data/dataset.h"
#include "core/graph/graph.h"

namespace squeeze::deploy {

// Images [N, 28, 28] uint8 at `indices` -> float32 [n, 1, 28, 28] in [0, 1].
core::graph::Tensor ImagesToTensor(const core::model::Tensor& images, const std::vector<int64_t>& indices);

// The logits of `graph` on every example of `data`, 500 at a time:
// [NumExamples, 10] row-major.
absl::StatusOr<std::vector<float>> Logits(const core::graph::Graph& graph, const core::data::Dataset& data);

// Per example, whether the largest of its 10 logits is at its label
// (logits [labels.size(), 10] row-major, as Logits returns them).
std::vector<bool> TopOneCorrect(const std::vector<float>& logits, const std::vector<int64_t>& labels);

// Top-1 accuracy of `graph` on every example of `data`.
absl::StatusOr<double> Accuracy(const core::graph::Graph& graph, const core::data::Dataset& data);

}  // namespace squeeze::deploy

#endif  // SQUEEZE_DEPLOY_MODELS_FASHION_MNIST_DATA_H_
