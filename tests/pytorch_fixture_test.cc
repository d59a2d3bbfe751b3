// Models exported from PyTorch (tests/fixtures/pytorch/<name>/, written by
// scripts/make-pytorch-fixtures.sh) run through the ONNX importer and the
// CPU runtime and must reproduce PyTorch's own outputs (issue 3: "within
// 1e-4 relative error").
//
// Relative error of one element: |ours - torch| / max(|torch|, kMagnitudeFloor).
// Every element of every output must have a relative error <= 1e-4. The
// floor keeps elements that are (nearly) zero in PyTorch from asking for
// more than float32 can give: below |torch| = 1e-2 the bound is an absolute
// 1e-6. The worst relative error per fixture is printed.
//
// Each fixture is run twice: with its batch of BATCH samples and with the
// first sample alone (the batch axis is dynamic), which must give the first
// rows of the same outputs.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/model/file_io.h"
#include "core/onnx/onnx_model.h"
#include "core/runtime/executor.h"
#include "gtest/gtest.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
using core::graph::Tensor;

constexpr double kRelativeTolerance = 1e-4;
constexpr double kMagnitudeFloor = 1e-2;

fs::path FixtureRoot() {
  const char* source_dir = std::getenv("SQUEEZE_SOURCE_DIR");
  return fs::path(source_dir != nullptr ? source_dir : ".") / "tests/fixtures/pytorch";
}

absl::StatusOr<Tensor> ReadTensor(const fs::path& path) {
  absl::StatusOr<std::string> bytes = core::model::ReadFile(path.string());
  if (!bytes.ok()) return bytes.status();
  return core::onnx::ParseOnnxTensor(*bytes, path.parent_path().string());
}

// The tensors dir/<prefix>_0.pb, dir/<prefix>_1.pb, ... up to the first gap.
std::vector<Tensor> ReadTensors(const fs::path& dir, const std::string& prefix) {
  std::vector<Tensor> tensors;
  for (int i = 0;; ++i) {
    const fs::path path = dir / absl::StrCat(prefix, "_", i, ".pb");
    if (!fs::exists(path)) break;
    absl::StatusOr<Tensor> tensor = ReadTensor(path);
    EXPECT_TRUE(tensor.ok()) << path << ": " << tensor.status();
    if (!tensor.ok()) break;
    tensors.push_back(*std::move(tensor));
  }
  return tensors;
}

// The first `rows` entries of `tensor` along axis 0.
Tensor LeadingRows(const Tensor& tensor, int64_t rows) {
  std::vector<int64_t> shape = tensor.shape();
  const int64_t bytes = tensor.byte_size() / shape[0] * rows;
  shape[0] = rows;
  absl::StatusOr<Tensor> sliced =
      Tensor::FromBytes(tensor.dtype(), shape, tensor.bytes().substr(0, bytes));
  EXPECT_TRUE(sliced.ok()) << sliced.status();
  return sliced.ok() ? *std::move(sliced) : Tensor();
}

// Worst relative error of `actual` against `expected`; adds a test failure
// for a dtype or shape mismatch and for the first element over tolerance.
double WorstRelativeError(const Tensor& actual, const Tensor& expected,
                          const std::string& what) {
  EXPECT_EQ(actual.dtype(), expected.dtype()) << what;
  EXPECT_EQ(actual.shape(), expected.shape()) << what;
  if (actual.dtype() != expected.dtype() || actual.shape() != expected.shape()) {
    return INFINITY;
  }
  const std::vector<double> ours = actual.ToDoubles(), torch = expected.ToDoubles();
  double worst = 0;
  bool reported = false;
  for (size_t i = 0; i < ours.size(); ++i) {
    const double error =
        std::abs(ours[i] - torch[i]) / std::max(std::abs(torch[i]), kMagnitudeFloor);
    // NaN compares false both ways: count it as the worst possible.
    if (!(error <= worst)) worst = std::isnan(error) ? INFINITY : error;
    if (!(error <= kRelativeTolerance) && !reported) {
      ADD_FAILURE() << what << " element " << i << ": ours " << ours[i] << ", torch "
                    << torch[i] << ", relative error " << error;
      reported = true;
    }
  }
  return worst;
}

std::vector<std::string> FixtureNames() {
  std::vector<std::string> names;
  if (!fs::is_directory(FixtureRoot())) return names;
  for (const auto& entry : fs::directory_iterator(FixtureRoot())) {
    if (fs::exists(entry.path() / "model.onnx")) {
      names.push_back(entry.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(PytorchFixtureDataTest, FixturesArePresent) {
  EXPECT_GE(FixtureNames().size(), 2u) << "no fixtures under " << FixtureRoot();
}

class PytorchFixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PytorchFixtureTest, MatchesTorchOutputs) {
  const fs::path dir = FixtureRoot() / GetParam();
  absl::StatusOr<core::graph::Graph> graph =
      core::onnx::LoadOnnxModel((dir / "model.onnx").string());
  ASSERT_TRUE(graph.ok()) << graph.status();
  std::vector<std::string> input_names;
  for (const auto& input : graph->inputs) {
    if (!graph->initializers.count(input.name)) input_names.push_back(input.name);
  }
  auto executor =
      core::runtime::Executor::Create(*graph, core::kernels::cpu::CreateCpuBackend(1));
  ASSERT_TRUE(executor.ok()) << executor.status();

  const std::vector<Tensor> inputs = ReadTensors(dir, "input");
  const std::vector<Tensor> expected = ReadTensors(dir, "output");
  ASSERT_EQ(inputs.size(), input_names.size());
  ASSERT_EQ(expected.size(), graph->outputs.size());
  const int64_t batch = inputs[0].shape()[0];

  double worst = 0;
  for (int64_t rows : {batch, int64_t{1}}) {
    std::map<std::string, Tensor> feeds;
    for (size_t i = 0; i < inputs.size(); ++i) {
      feeds.emplace(input_names[i], LeadingRows(inputs[i], rows));
    }
    absl::StatusOr<std::vector<Tensor>> outputs = executor->Run(feeds);
    ASSERT_TRUE(outputs.ok()) << "batch " << rows << ": " << outputs.status();
    ASSERT_EQ(outputs->size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      const std::string what =
          absl::StrCat(GetParam(), " batch ", rows, " output ", graph->outputs[i].name);
      worst = std::max(worst, WorstRelativeError((*outputs)[i],
                                                 LeadingRows(expected[i], rows), what));
    }
  }
  std::printf("%s: worst relative error %.3g (tolerance %g)\n", GetParam().c_str(), worst,
              kRelativeTolerance);
}

INSTANTIATE_TEST_SUITE_P(Pytorch, PytorchFixtureTest, ::testing::ValuesIn(FixtureNames()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(PytorchFixtureTest);

}  // namespace
}  // namespace squeeze
