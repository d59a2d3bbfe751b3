#include "core/onnx/onnx_model.h"

#include <cstdlib>
#include <filesystem>

#include "core/kernels/cpu/cpu_backend.h"
#include "core/model/file_io.h"
#include "core/runtime/executor.h"
#include "gtest/gtest.h"

namespace squeeze::core::onnx {
namespace {

namespace fs = std::filesystem;
using graph::DataType;
using graph::Tensor;

graph::Graph Linear() {
  graph::Graph g;
  g.name = "linear";
  g.opset_version = 13;
  g.inputs.push_back({"x", DataType::kFloat32, std::vector<graph::Dim>{{{}, "batch"}, {3, ""}}});
  g.outputs.push_back({"y", DataType::kFloat32, std::vector<graph::Dim>{{{}, "batch"}, {2, ""}}});
  g.initializers["w"] = Tensor::FromVector<float>(DataType::kFloat32, {2, 3}, {1, 2, 3, 4, 5, 6});
  g.initializers["b"] = Tensor::FromVector<float>(DataType::kFloat32, {2}, {0.5f, -0.5f});
  graph::Node gemm{"fc", "Gemm", "", {"x", "w", "b"}, {"y"}, {}};
  gemm.attributes["transB"] = int64_t{1};
  g.nodes.push_back(gemm);
  return g;
}

std::string TempDir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::vector<float> RunLinear(const graph::Graph& g) {
  auto executor = runtime::Executor::Create(g, kernels::cpu::CreateCpuBackend(1));
  EXPECT_TRUE(executor.ok()) << executor.status();
  Tensor x = Tensor::FromVector<float>(DataType::kFloat32, {1, 3}, {1, 1, 1});
  auto outputs = executor->Run({{"x", x}});
  EXPECT_TRUE(outputs.ok()) << outputs.status();
  return (*outputs)[0].ToFloats();
}

TEST(OnnxModelTest, ExportImportRoundTrip) {
  const std::string path = TempDir("roundtrip") + "/model.onnx";
  ASSERT_TRUE(SaveOnnxModel(Linear(), path).ok());
  absl::StatusOr<graph::Graph> loaded = LoadOnnxModel(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->opset_version, 13);
  EXPECT_EQ((*loaded->inputs[0].shape)[0].symbol, "batch");
  EXPECT_EQ(RunLinear(*loaded), (std::vector<float>{6.5f, 14.5f}));
}

TEST(OnnxModelTest, ImportInfersIntermediateShapes) {
  graph::Graph g = Linear();
  g.nodes[0].outputs[0] = "h";
  g.nodes.push_back(graph::Node{"act", "Relu", "", {"h"}, {"y"}, {}});
  const std::string path = TempDir("shapes") + "/model.onnx";
  ASSERT_TRUE(SaveOnnxModel(g, path, {16, "weights.bin"}).ok());
  absl::StatusOr<graph::Graph> loaded = LoadOnnxModel(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->value_infos.size(), 1u);
  const graph::ValueInfo& h = loaded->value_infos[0];
  EXPECT_EQ(h.name, "h");
  ASSERT_TRUE(h.shape.has_value());
  ASSERT_EQ(h.shape->size(), 2u);
  EXPECT_EQ((*h.shape)[0].symbol, "batch");
  EXPECT_EQ((*h.shape)[1].value, 2);
}

TEST(OnnxModelTest, ExternalDataRoundTrip) {
  const std::string dir = TempDir("external");
  OnnxExportOptions options;
  options.external_data_threshold_bytes = 16;
  options.external_data_file = "weights.bin";
  absl::Status saved = SaveOnnxModel(Linear(), dir + "/model.onnx", options);
  ASSERT_TRUE(saved.ok()) << saved;
  EXPECT_EQ(fs::file_size(dir + "/weights.bin"), 24u);
  absl::StatusOr<graph::Graph> loaded = LoadOnnxModel(dir + "/model.onnx");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(RunLinear(*loaded), (std::vector<float>{6.5f, 14.5f}));

  fs::resize_file(dir + "/weights.bin", 10);
  EXPECT_FALSE(LoadOnnxModel(dir + "/model.onnx").ok());
}

TEST(OnnxModelTest, TruncatedAndCorruptFilesAreErrors) {
  const std::string path = TempDir("truncated") + "/model.onnx";
  ASSERT_TRUE(SaveOnnxModel(Linear(), path).ok());
  absl::StatusOr<std::string> bytes = model::ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  for (size_t length = 0; length < bytes->size(); ++length) {
    absl::StatusOr<graph::Graph> graph = ParseOnnxModel(bytes->substr(0, length), "");
    if (graph.ok()) continue;  // some prefixes are themselves valid protos
    EXPECT_EQ(graph.status().code(), absl::StatusCode::kInvalidArgument);
  }
  std::string corrupt = *bytes;
  for (size_t i = 0; i < corrupt.size(); i += 7) corrupt[i] = static_cast<char>(corrupt[i] ^ 0x5A);
  (void)ParseOnnxModel(corrupt, "");  // must not crash
}

// A Conv whose attributes pass libonnx's checker but crash libonnx 1.12's
// shape inference (found by the fuzzer): the import never runs that code on
// user files, so this parses or fails cleanly.
TEST(OnnxModelTest, ModelThatCrashesLibonnxShapeInferenceImports) {
  const char* source_dir = std::getenv("SQUEEZE_SOURCE_DIR");
  const std::string path = std::string(source_dir != nullptr ? source_dir : ".") +
                           "/core/onnx/fuzz/onnx_model_corpus/regression_libonnx_convpool_crash.onnx";
  absl::StatusOr<std::string> bytes = model::ReadFile(path);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  absl::StatusOr<graph::Graph> graph = ParseOnnxModel(*bytes, "");
  if (!graph.ok()) EXPECT_EQ(graph.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(OnnxModelTest, RejectsUnsupportedOpsetAndOperator) {
  graph::Graph old = Linear();
  old.opset_version = 7;
  const std::string dir = TempDir("opset");
  ASSERT_TRUE(SaveOnnxModel(old, dir + "/old.onnx").ok());
  absl::StatusOr<graph::Graph> loaded = LoadOnnxModel(dir + "/old.onnx");
  EXPECT_NE(loaded.status().message().find("opset 7"), std::string::npos);

  graph::Graph unknown = Linear();
  unknown.nodes[0].op_type = "Einsum";
  unknown.nodes[0].attributes.clear();
  unknown.nodes[0].attributes["equation"] = std::string("ij,kj->ik");
  auto executor = runtime::Executor::Create(unknown, kernels::cpu::CreateCpuBackend());
  EXPECT_EQ(executor.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(executor.status().message().find("Einsum"), std::string::npos);
  EXPECT_NE(executor.status().message().find("'fc'"), std::string::npos);
}

}  // namespace
}  // namespace squeeze::core::onnx
