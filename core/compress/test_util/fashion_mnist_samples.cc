#include "core/compress/test_util/fashion_mnist_samples.h"

#include <vector>

#include "core/data/idx.h"
#include "core/model/file_io.h"
#include "core/model/safetensors.h"

namespace squeeze::core::compress::test_util {

absl::Status WriteFashionMnistSamples(const std::string& path, int64_t examples, bool with_labels,
                                      bool* real) {
  constexpr char kDir[] = "/usr/share/datasets/fashion-mnist";
  std::vector<float> pixels(examples * 784);
  std::vector<int64_t> labels(examples);
  absl::StatusOr<data::Dataset> test = data::ReadIdxDataset(std::string(kDir) + "/t10k-images-idx3-ubyte.gz",
                                                            std::string(kDir) + "/t10k-labels-idx1-ubyte.gz");
  const bool found = test.ok() && test->NumExamples() >= examples;
  if (found) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(test->inputs.data.data());
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = bytes[i] / 255.0f;
    const auto* y = reinterpret_cast<const uint8_t*>(test->labels->data.data());
    for (int64_t i = 0; i < examples; ++i) labels[i] = y[i];
  } else {
    uint32_t state = 12345;
    for (float& p : pixels) p = ((state = state * 1664525u + 1013904223u) >> 8) / 16777216.0f;
    for (int64_t i = 0; i < examples; ++i) labels[i] = i % 10;
  }
  if (real != nullptr) *real = found;
  model::SafetensorsFile file;
  file.tensors["inputs"] = model::Tensor::FromFloats({examples, 1, 28, 28}, pixels);
  if (with_labels) {
    model::Tensor y;
    y.dtype = model::DType::kI64;
    y.shape = {examples};
    y.data.assign(reinterpret_cast<const char*>(labels.data()), labels.size() * sizeof(int64_t));
    file.tensors["labels"] = std::move(y);
  }
  return model::WriteFileAtomically(path, model::SerializeSafetensors(file));
}

}  // namespace squeeze::core::compress::test_util
