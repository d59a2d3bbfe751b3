#include "core/quant/export/onnx_qdq.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "core/kernels/cpu/cpu_backend.h"
#include "core/onnx/onnx_model.h"
#include "core/runtime/executor.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant_export {
namespace {

namespace fs = std::filesystem;
using graph::DataType;
using graph::Tensor;

Tensor Random(std::vector<int64_t> shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  Tensor t(DataType::kFloat32, std::move(shape));
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

// x [B, 16] -> Gemm(transB=1, w1 [32, 16], b1) -> Relu -> MatMul(w2 [32, 16]) -> y [B, 16]
graph::Graph Mlp() {
  graph::Graph g;
  g.name = "mlp";
  g.inputs.push_back({"x", DataType::kFloat32, std::vector<graph::Dim>{{{}, "batch"}, {16, ""}}});
  g.outputs.push_back({"y", DataType::kFloat32, std::vector<graph::Dim>{{{}, "batch"}, {16, ""}}});
  g.initializers["w1"] = Random({32, 16}, 1);
  g.initializers["b1"] = Random({32}, 2);
  g.initializers["w2"] = Random({32, 16}, 3);
  g.nodes.push_back({"fc1", "Gemm", "", {"x", "w1", "b1"}, {"h"}, {{"transB", int64_t{1}}}});
  g.nodes.push_back({"relu", "Relu", "", {"h"}, {"r"}, {}});
  g.nodes.push_back({"fc2", "MatMul", "", {"r", "w2"}, {"y"}, {}});
  return g;
}

// x [B, 2, 5, 5] -> Conv(w [4, 2, 2, 4]) -> y
graph::Graph ConvNet() {
  graph::Graph g;
  g.name = "conv";
  g.inputs.push_back({"x", DataType::kFloat32,
                      std::vector<graph::Dim>{{{}, "batch"}, {2, ""}, {5, ""}, {5, ""}}});
  g.outputs.push_back({"y", DataType::kFloat32,
                       std::vector<graph::Dim>{{{}, "batch"}, {4, ""}, {4, ""}, {2, ""}}});
  g.initializers["w"] = Random({4, 2, 2, 4}, 4);
  g.nodes.push_back({"conv", "Conv", "", {"x", "w"}, {"y"}, {}});
  return g;
}

std::vector<float> RunGraph(const graph::Graph& g, const Tensor& x) {
  auto executor = runtime::Executor::Create(g, kernels::cpu::CreateCpuBackend(1));
  EXPECT_TRUE(executor.ok()) << executor.status();
  auto outputs = executor->Run({{"x", x}});
  EXPECT_TRUE(outputs.ok()) << outputs.status();
  return (*outputs)[0].ToFloats();
}

// `g` with each quantized weight replaced by its dequantized float values.
graph::Graph Dequantized(graph::Graph g, const std::map<std::string, quant::QuantizedLinear>& q) {
  auto views = FindQuantizableWeights(g);
  EXPECT_TRUE(views.ok());
  for (const auto& [name, layer] : q) {
    std::vector<float> w(static_cast<size_t>(layer.out * layer.in));
    EXPECT_TRUE(quant::DequantizeRtn(layer, w.data()).ok());
    const WeightView& view = views->at(name);
    Tensor t(DataType::kFloat32, view.shape);
    for (int64_t r = 0; r < layer.out; ++r) {
      for (int64_t c = 0; c < layer.in; ++c) {
        const int64_t at = view.transposed ? c * layer.out + r : r * layer.in + c;
        t.data<float>()[at] = w[r * layer.in + c];
      }
    }
    g.initializers[name] = t;
  }
  return g;
}

void ExpectNear(const std::vector<float>& a, const std::vector<float>& b, float tolerance) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tolerance) << "element " << i;
}

struct Case {
  int bits;
  int group_size;
  bool asymmetric;
};

class QdqWeightTest : public ::testing::TestWithParam<Case> {};

TEST_P(QdqWeightTest, MatchesDequantizedWeightsAndPassesChecker) {
  const Case c = GetParam();
  quant::RtnOptions options;
  options.bits = c.bits;
  options.group_size = c.group_size;
  options.asymmetric = c.asymmetric;
  for (const graph::Graph& g : {Mlp(), ConvNet()}) {
    auto q = QuantizeGraphWeights(g, options);
    ASSERT_TRUE(q.ok()) << q.status();
    ASSERT_FALSE(q->empty());
    auto exported = ExportQdqGraph(g, *q);
    ASSERT_TRUE(exported.ok()) << exported.status();
    for (const auto& [name, layer] : *q) {
      const Tensor& stored = exported->initializers.at(name + ".quantized");
      EXPECT_EQ(stored.dtype(), c.asymmetric ? DataType::kUInt8 : DataType::kInt8) << name;
      EXPECT_EQ(exported->initializers.count(name), 0u) << name;
    }
    const Tensor x = g.name == "mlp" ? Random({3, 16}, 9) : Random({2, 2, 5, 5}, 9);
    const std::vector<float> expected = RunGraph(Dequantized(g, *q), x);
    const std::vector<float> ours = RunGraph(*exported, x);
    ExpectNear(ours, expected, 1e-5f);

    const fs::path dir = fs::path(::testing::TempDir()) / ("qdq_" + g.name);
    fs::create_directories(dir);
    const std::string path = (dir / "model.onnx").string();
    const absl::Status saved = onnx::SaveOnnxModel(*exported, path);
    ASSERT_TRUE(saved.ok()) << saved;
    auto loaded = onnx::LoadOnnxModel(path);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ExpectNear(RunGraph(*loaded, x), expected, 1e-5f);
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, QdqWeightTest,
                         ::testing::Values(Case{8, 0, false}, Case{8, 0, true}, Case{4, 0, false},
                                           Case{4, 8, false}, Case{4, 8, true}, Case{8, 16, false}));

TEST(QdqTest, GroupedWeightIsStoredOneScalePerRowGroup) {
  quant::RtnOptions options;
  options.bits = 4;
  options.group_size = 8;
  auto q = QuantizeGraphWeights(Mlp(), options);
  ASSERT_TRUE(q.ok());
  auto g = ExportQdqGraph(Mlp(), *q);
  ASSERT_TRUE(g.ok());
  // w1: [32, 16] -> 2 groups per row; w2 ([K=32, N=16]) -> 4 groups per output column.
  EXPECT_EQ(g->initializers.at("w1.quantized").shape(), (std::vector<int64_t>{64, 8}));
  EXPECT_EQ(g->initializers.at("w1.scale").num_elements(), 64);
  EXPECT_EQ(g->initializers.at("w2.quantized").shape(), (std::vector<int64_t>{64, 8}));
  for (const double v : g->initializers.at("w1.quantized").ToDoubles()) {
    EXPECT_GE(v, -8);
    EXPECT_LE(v, 7);
  }
}

TEST(QdqTest, StaticActivationPairsFakeQuantizeTheInput) {
  quant::RtnOptions options;  // int8 per channel
  auto q = QuantizeGraphWeights(Mlp(), options);
  ASSERT_TRUE(q.ok());
  QdqOptions qdq;
  qdq.activation_ranges["x"] = {-2.0f, 3.0f};
  auto g = ExportQdqGraph(Mlp(), *q, qdq);
  ASSERT_TRUE(g.ok()) << g.status();
  const Tensor x = Random({3, 16}, 9);
  // uint8: scale 5/255, zero round(2 / scale) = 102.
  const float scale = static_cast<float>(5.0 / 255.0);
  EXPECT_FLOAT_EQ(g->initializers.at("x.act_scale").ToFloats()[0], scale);
  EXPECT_EQ(g->initializers.at("x.act_zero_point").ToDoubles()[0], 102);
  Tensor fake = x;
  for (int64_t i = 0; i < fake.num_elements(); ++i) {
    const double qv = std::clamp(std::nearbyint(x.data<float>()[i] / scale) + 102.0, 0.0, 255.0);
    fake.data<float>()[i] = static_cast<float>(qv - 102) * scale;
  }
  ExpectNear(RunGraph(*g, x), RunGraph(Dequantized(Mlp(), *q), fake), 1e-5f);
  EXPECT_TRUE(onnx::SaveOnnxModel(*g, ::testing::TempDir() + "/qdq_act.onnx").ok());
}

TEST(QdqTest, MatMulThroughTransposeIsQuantizedInItsStoredLayout) {
  // x [B, 16] -> MatMul(Transpose(w [32, 16])) -> y [B, 32]: torch.nn.Linear as core/hf writes it.
  graph::Graph g;
  g.name = "linear";
  g.inputs.push_back({"x", DataType::kFloat32, std::vector<graph::Dim>{{{}, "batch"}, {16, ""}}});
  g.outputs.push_back({"y", DataType::kFloat32, std::vector<graph::Dim>{{{}, "batch"}, {32, ""}}});
  g.initializers["w"] = Random({32, 16}, 7);
  g.nodes.push_back({"t", "Transpose", "", {"w"}, {"wt"}, {{"perm", std::vector<int64_t>{1, 0}}}});
  g.nodes.push_back({"mm", "MatMul", "", {"x", "wt"}, {"y"}, {}});
  auto views = FindQuantizableWeights(g);
  ASSERT_TRUE(views.ok()) << views.status();
  ASSERT_EQ(views->count("w"), 1u);
  EXPECT_EQ(views->at("w").out, 32);
  EXPECT_EQ(views->at("w").in, 16);
  EXPECT_FALSE(views->at("w").transposed);
  auto q = QuantizeGraphWeights(g, {8, 0, false});
  ASSERT_TRUE(q.ok()) << q.status();
  auto exported = ExportQdqGraph(g, *q);
  ASSERT_TRUE(exported.ok()) << exported.status();
  const Tensor x = Random({3, 16}, 8);
  ExpectNear(RunGraph(*exported, x), RunGraph(Dequantized(g, *q), x), 1e-5f);
}

TEST(QdqTest, RejectsUnknownWeightsAndBadRanges) {
  quant::RtnOptions options;
  auto q = QuantizeGraphWeights(Mlp(), options);
  ASSERT_TRUE(q.ok());
  auto renamed = *q;
  renamed["b1"] = renamed.at("w1");
  EXPECT_EQ(ExportQdqGraph(Mlp(), renamed).status().code(), absl::StatusCode::kInvalidArgument);
  QdqOptions bad;
  bad.activation_ranges["x"] = {1.0f, -1.0f};
  EXPECT_EQ(ExportQdqGraph(Mlp(), *q, bad).status().code(), absl::StatusCode::kInvalidArgument);
  QdqOptions not_input;
  not_input.activation_ranges["h"] = {0.0f, 1.0f};
  EXPECT_EQ(ExportQdqGraph(Mlp(), *q, not_input).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace squeeze::core::quant_export
