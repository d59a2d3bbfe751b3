// The IR's own shape inference (core/graph/shape_inference.h) on real
// models: the reference models, the LLaMA checkpoint and the PyTorch
// fixtures. Two checks:
//  - with concrete input shapes, every intermediate value is inferred fully
//    and equals the shape and dtype the CPU runtime produces for it;
//  - with the models' symbolic inputs, every dimension ONNX's own shape
//    inference (libonnx, kept by the importer) knows agrees with ours.
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/graph/shape_inference.h"
#include "core/hf/hf_checkpoint.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/model/file_io.h"
#include "core/onnx/onnx_model.h"
#include "core/runtime/executor.h"
#include "gtest/gtest.h"

namespace squeeze {
namespace {

namespace fs = std::filesystem;
using core::graph::DataType;
using core::graph::Dim;
using core::graph::Graph;
using core::graph::Tensor;
using core::graph::ValueInfo;

fs::path SourceDir() {
  const char* source_dir = std::getenv("SQUEEZE_SOURCE_DIR");
  return fs::path(source_dir != nullptr ? source_dir : ".");
}

Tensor ReadTensor(const fs::path& path) {
  absl::StatusOr<std::string> bytes = core::model::ReadFile(path.string());
  EXPECT_TRUE(bytes.ok()) << path << ": " << bytes.status();
  if (!bytes.ok()) return Tensor();
  absl::StatusOr<Tensor> tensor = core::onnx::ParseOnnxTensor(*bytes, path.parent_path().string());
  EXPECT_TRUE(tensor.ok()) << path << ": " << tensor.status();
  return tensor.ok() ? *std::move(tensor) : Tensor();
}

// Fixes the graph inputs to the feeds' shapes, infers, runs the graph with
// every node output as a graph output and compares each with its inference.
// Returns how many values were compared.
int CheckAgainstExecution(Graph graph, const std::map<std::string, Tensor>& feeds) {
  for (ValueInfo& input : graph.inputs) {
    auto feed = feeds.find(input.name);
    if (feed == feeds.end()) continue;
    std::vector<Dim> dims;
    for (int64_t d : feed->second.shape()) dims.push_back(Dim{d, ""});
    input.shape = dims;
  }
  graph.outputs.clear();
  graph.value_infos.clear();
  absl::StatusOr<core::graph::ShapeInferenceStats> stats = core::graph::InferShapes(&graph);
  EXPECT_TRUE(stats.ok()) << graph.name << ": " << stats.status();
  if (!stats.ok()) return 0;
  EXPECT_TRUE(stats->unknown_ops.empty()) << graph.name << ": " << stats->unknown_ops.front();
  EXPECT_EQ(stats->fully_known, stats->values) << graph.name;

  std::vector<ValueInfo> inferred = graph.value_infos;
  graph.outputs = inferred;
  for (ValueInfo& output : graph.outputs) output.shape.reset();
  auto executor = core::runtime::Executor::Create(graph, core::kernels::cpu::CreateCpuBackend(1));
  EXPECT_TRUE(executor.ok()) << executor.status();
  if (!executor.ok()) return 0;
  absl::StatusOr<std::vector<Tensor>> outputs = executor->Run(feeds);
  EXPECT_TRUE(outputs.ok()) << outputs.status();
  if (!outputs.ok()) return 0;
  int compared = 0;
  for (size_t i = 0; i < inferred.size(); ++i) {
    const Tensor& actual = (*outputs)[i];
    std::vector<int64_t> dims;
    for (const Dim& d : inferred[i].shape.value_or(std::vector<Dim>{})) dims.push_back(d.value.value_or(-1));
    EXPECT_TRUE(inferred[i].shape.has_value()) << inferred[i].name;
    EXPECT_EQ(dims, actual.shape()) << graph.name << ": " << inferred[i].name;
    EXPECT_EQ(inferred[i].dtype, actual.dtype()) << graph.name << ": " << inferred[i].name;
    ++compared;
  }
  return compared;
}

// With symbolic inputs: every dimension with a value in ONNX's inference
// has the same value in ours, and ours knows at least as many.
void CheckAgainstOnnxInference(Graph graph) {
  std::map<std::string, ValueInfo> onnx;
  for (const ValueInfo& v : graph.value_infos) onnx[v.name] = v;
  ASSERT_FALSE(onnx.empty()) << graph.name << ": ONNX inferred nothing to compare with";
  graph.value_infos.clear();
  absl::StatusOr<core::graph::ShapeInferenceStats> stats = core::graph::InferShapes(&graph);
  ASSERT_TRUE(stats.ok()) << stats.status();
  std::map<std::string, ValueInfo> ours;
  for (const ValueInfo& v : graph.value_infos) ours[v.name] = v;
  int onnx_known = 0, ours_known = 0;
  for (const auto& [name, theirs] : onnx) {
    if (!theirs.shape) continue;
    auto it = ours.find(name);
    ASSERT_NE(it, ours.end()) << graph.name << ": " << name << " not inferred";
    ASSERT_TRUE(it->second.shape.has_value()) << graph.name << ": " << name;
    const std::vector<Dim>& mine = *it->second.shape;
    ASSERT_EQ(mine.size(), theirs.shape->size())
        << graph.name << ": " << name << " ours " << core::graph::DimsToString(mine)
        << " ONNX " << core::graph::DimsToString(*theirs.shape);
    EXPECT_EQ(it->second.dtype, theirs.dtype) << graph.name << ": " << name;
    for (size_t d = 0; d < mine.size(); ++d) {
      if ((*theirs.shape)[d].value) {
        ++onnx_known;
        EXPECT_EQ(mine[d].value, (*theirs.shape)[d].value)
            << graph.name << ": " << name << " ours " << core::graph::DimsToString(mine)
            << " ONNX " << core::graph::DimsToString(*theirs.shape);
      }
      if (mine[d].value) ++ours_known;
    }
  }
  EXPECT_GE(ours_known, onnx_known) << graph.name;
  std::printf("%s: %zu values ONNX typed, dims with a value: ONNX %d, ours %d\n",
              graph.name.c_str(), onnx.size(), onnx_known, ours_known);
}

TEST(ShapeInferenceModelTest, PyTorchFixturesMatchExecutionAndOnnx) {
  for (const std::string name : {"small_cnn", "tiny_transformer", "tiny_decoder"}) {
    SCOPED_TRACE(name);
    const fs::path dir = SourceDir() / "tests/fixtures/pytorch" / name;
    absl::StatusOr<Graph> graph =
        core::onnx::LoadOnnxModel((dir / "model.onnx").string(), {/*onnx_shape_inference=*/true});
    ASSERT_TRUE(graph.ok()) << graph.status();
    graph->name = name;
    std::map<std::string, Tensor> feeds;
    int i = 0;
    for (const ValueInfo& input : graph->inputs) {
      if (graph->initializers.count(input.name)) continue;
      feeds[input.name] = ReadTensor(dir / absl::StrCat("input_", i++, ".pb"));
    }
    const int compared = CheckAgainstExecution(*graph, feeds);
    EXPECT_GT(compared, 5);
    std::printf("%s: %d intermediate shapes equal to the executed ones\n", name.c_str(), compared);
    CheckAgainstOnnxInference(*graph);
  }
}

TEST(ShapeInferenceModelTest, ReferenceCnnAndMlp) {
  for (const std::string name : {"fashion_mnist_cnn", "fashion_mnist_mlp"}) {
    SCOPED_TRACE(name);
    absl::StatusOr<Graph> graph = core::onnx::LoadOnnxModel(
        (SourceDir() / "deploy/models" / (name + ".onnx")).string());
    ASSERT_TRUE(graph.ok()) << graph.status();
    ASSERT_EQ(graph->inputs.size(), 1u);
    ASSERT_TRUE(graph->inputs[0].shape.has_value());
    const Tensor x = graph->inputs[0].shape->size() == 2
                         ? Tensor(DataType::kFloat32, {3, 784})
                         : Tensor(DataType::kFloat32, {3, 1, 28, 28});
    EXPECT_GT(CheckAgainstExecution(*graph, {{graph->inputs[0].name, x}}), 3);
  }
}

TEST(ShapeInferenceModelTest, LlamaCheckpointCarriesSymbolicShapes) {
  absl::StatusOr<core::hf::HfCheckpoint> lm =
      core::hf::LoadHfCheckpoint((SourceDir() / "deploy/models/lm").string());
  ASSERT_TRUE(lm.ok()) << lm.status();
  // BuildCausalLmGraph ran the inference: logits keep both symbols.
  std::optional<std::vector<Dim>> logits = core::graph::KnownShape(lm->graph, "logits");
  ASSERT_TRUE(logits.has_value());
  EXPECT_EQ(core::graph::DimsToString(*logits),
            absl::StrCat("[batch, sequence, ", lm->config.vocab_size, "]"));
  EXPECT_GT(lm->graph.value_infos.size(), 100u);

  std::mt19937 rng(7);
  std::vector<int64_t> ids(2 * 24);
  for (int64_t& id : ids) id = static_cast<int64_t>(rng() % lm->config.vocab_size);
  const Tensor input = Tensor::FromVector(DataType::kInt64, {2, 24}, ids);
  const int compared = CheckAgainstExecution(lm->graph, {{"input_ids", input}});
  EXPECT_GT(compared, 100);
  std::printf("LLaMA LM: %d intermediate shapes equal to the executed ones\n", compared);
}

}  // namespace
}  // namespace squeeze
