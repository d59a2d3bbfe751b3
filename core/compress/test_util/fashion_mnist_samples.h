// A small labelled image-classification dataset for tests of the ONNX path:
// the first Fashion-MNIST test images, or seeded noise when the data package
// (/usr/share/datasets/fashion-mnist) is missing.
#ifndef SQUEEZE_CORE_COMPRESS_TEST_UTIL_FASHION_MNIST_SAMPLES_H_
#define SQUEEZE_CORE_COMPRESS_TEST_UTIL_FASHION_MNIST_SAMPLES_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace squeeze::core::compress::test_util {

// Writes a safetensors dataset at `path`: "inputs" float32 [examples, 1, 28,
// 28] in [0, 1] (what deploy/models/fashion_mnist_*.onnx take) and, when
// `with_labels`, "labels" int64 [examples]. Without the data package the
// inputs are seeded uniform noise labelled i % 10, so only comparisons of
// two models on them mean anything. `*real` (may be null) says which.
absl::Status WriteFashionMnistSamples(const std::string& path, int64_t examples, bool with_labels,
                                      bool* real = nullptr);

}  // namespace squeeze::core::compress::test_util

#endif  // SQUEEZE_CORE_COMPRESS_TEST_UTIL_FASHION_MNIST_SAMPLES_H_
