// The GraphSession the ONNX-path unit tests share: the reference
// Fashion-MNIST MLP calibrated on 400 labelled samples (4 batches of 32),
// top-1 accuracy, latency at batch 1, no energy counters.
#ifndef SQUEEZE_CORE_COMPRESS_TEST_UTIL_MLP_SESSION_H_
#define SQUEEZE_CORE_COMPRESS_TEST_UTIL_MLP_SESSION_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/compress/graph_variant_builder.h"
#include "core/compress/test_util/fashion_mnist_samples.h"

namespace squeeze::core::compress::test_util {

// Writes the samples to `dataset_path` and opens the session on the model
// at `model_path`.
inline absl::StatusOr<std::unique_ptr<GraphSession>> OpenMlpSession(const std::string& model_path,
                                                                    const std::string& dataset_path) {
  absl::Status written = WriteFashionMnistSamples(dataset_path, 400, /*with_labels=*/true);
  if (!written.ok()) return written;
  SessionOptions options;
  options.model_path = model_path;
  options.calibration_path = dataset_path;
  options.calibration_batches = 4;
  options.calibration_batch_size = 32;
  options.metric = EvalMetric::kTop1Accuracy;
  options.latency_batch_sizes = {1};
  options.measure_energy = false;
  return GraphSession::Open(options, {});
}

}  // namespace squeeze::core::compress::test_util

#endif  // SQUEEZE_CORE_COMPRESS_TEST_UTIL_MLP_SESSION_H_
