// make_fashion_mnist_dataset: the first --count Fashion-MNIST test images as
// a Squeeze dataset file: safetensors with "inputs" F32 [N, 1, 28, 28] in
// [0, 1] and "labels" I64 [N], what ONNX jobs on the reference classifiers
// take as calibration and evaluation data.
//
//   make_fashion_mnist_dataset --out=fashion-1000.safetensors --count=1000
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "core/compress/test_util/fashion_mnist_samples.h"

ABSL_FLAG(std::string, out, "", "Output safetensors file.");
ABSL_FLAG(int64_t, count, 1000, "Test images, [1, 10000].");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string out = absl::GetFlag(FLAGS_out);
  const int64_t count = absl::GetFlag(FLAGS_count);
  if (out.empty() || count < 1 || count > 10000) {
    std::fprintf(stderr, "make_fashion_mnist_dataset: need --out and --count in [1, 10000]\n");
    return 2;
  }
  bool real = false;
  absl::Status status = squeeze::core::compress::test_util::WriteFashionMnistSamples(out, count, true, &real);
  if (status.ok() && !real) {
    status = absl::NotFoundError("Fashion-MNIST is not installed (Debian package dataset-fashion-mnist)");
  }
  if (!status.ok()) {
    std::fprintf(stderr, "make_fashion_mnist_dataset: %s\n", status.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s: %lld labelled Fashion-MNIST test images\n", out.c_str(), static_cast<long long>(count));
  return 0;
}
