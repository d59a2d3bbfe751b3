#include "core/runtime/executor.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core/kernels/cpu/cpu_backend.h"
#include "gtest/gtest.h"

namespace squeeze::core::runtime {
namespace {

using graph::DataType;
using graph::Tensor;

// y = Relu(x @ w + b) as MatMul -> Add -> Relu, nodes listed out of order.
graph::Graph SmallMlp() {
  graph::Graph g;
  g.inputs.push_back({"x", DataType::kFloat32, std::vector<graph::Dim>{{{}, "batch"}, {2, ""}}});
  g.outputs.push_back({"y", DataType::kFloat32, std::nullopt});
  g.initializers["w"] = Tensor::FromVector<float>(DataType::kFloat32, {2, 2}, {1, -1, 2, 1});
  g.initializers["b"] = Tensor::FromVector<float>(DataType::kFloat32, {2}, {0.5f, -10});
  graph::Node relu{"relu", "Relu", "", {"h"}, {"y"}, {}};
  graph::Node add{"add", "Add", "", {"m", "b"}, {"h"}, {}};
  graph::Node matmul{"matmul", "MatMul", "", {"x", "w"}, {"m"}, {}};
  g.nodes = {relu, add, matmul};
  return g;
}

TEST(ExecutorTest, RunsBatchedGraph) {
  auto executor = Executor::Create(SmallMlp(), kernels::cpu::CreateCpuBackend(2));
  ASSERT_TRUE(executor.ok()) << executor.status();
  Tensor x = Tensor::FromVector<float>(DataType::kFloat32, {2, 2}, {1, 2, 3, 4});
  auto outputs = executor->Run({{"x", x}});
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  EXPECT_EQ((*outputs)[0].shape(), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ((*outputs)[0].ToFloats(), (std::vector<float>{5.5f, 0, 11.5f, 0}));
}

TEST(ExecutorTest, UnsupportedOperatorNamesOpAndNode) {
  graph::Graph g = SmallMlp();
  g.nodes[0].op_type = "NonMaxSuppression";
  auto executor = Executor::Create(g, kernels::cpu::CreateCpuBackend());
  ASSERT_EQ(executor.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(executor.status().message().find("NonMaxSuppression"), std::string::npos);
  EXPECT_NE(executor.status().message().find("'relu'"), std::string::npos);
}

TEST(ExecutorTest, RejectsMissingAndMistypedInputs) {
  auto executor = Executor::Create(SmallMlp(), kernels::cpu::CreateCpuBackend());
  ASSERT_TRUE(executor.ok());
  EXPECT_EQ(executor->Run({}).status().code(), absl::StatusCode::kInvalidArgument);
  Tensor wrong(DataType::kInt32, {1, 2});
  EXPECT_NE(executor->Run({{"x", wrong}}).status().message().find("int32"), std::string::npos);
}

}  // namespace
}  // namespace squeeze::core::runtime

namespace squeeze::core::runtime {
namespace {

TEST(ExecutorTest, AbsurdShapeIsAnErrorNotACrash) {
  graph::Graph g;
  g.inputs.push_back({"shape", graph::DataType::kInt64, std::nullopt});
  g.outputs.push_back({"y", graph::DataType::kFloat32, std::nullopt});
  g.nodes.push_back(graph::Node{"fill", "ConstantOfShape", "", {"shape"}, {"y"}, {}});
  auto executor = Executor::Create(g, kernels::cpu::CreateCpuBackend(1));
  ASSERT_TRUE(executor.ok());
  graph::Tensor shape = graph::Tensor::FromVector<int64_t>(
      graph::DataType::kInt64, {3}, {int64_t{1} << 20, int64_t{1} << 20, 16});
  auto outputs = executor->Run({{"shape", shape}});
  EXPECT_EQ(outputs.status().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace squeeze::core::runtime

namespace squeeze::core::runtime {
namespace {

// Passes calls to the CPU backend and records their operator types (with
// "+Relu" for a fused call); fuses activations only when `fuse`.
class RecordingBackend : public KernelBackend {
 public:
  explicit RecordingBackend(bool fuse, int threads = 1)
      : base_(kernels::cpu::CreateCpuBackend(threads)), fuse_(fuse) {}
  std::string name() const override { return "recording"; }
  bool Supports(absl::string_view op_type) const override { return base_->Supports(op_type); }
  bool FusesActivation(const graph::Node& node, absl::string_view activation) const override {
    return fuse_ && base_->FusesActivation(node, activation);
  }
  bool FusesMaxPool(const graph::Node& node, const graph::Node& pool) const override {
    return fuse_ && base_->FusesMaxPool(node, pool);
  }
  absl::StatusOr<std::vector<graph::Tensor>> Run(const KernelCall& call) const override {
    std::string name = call.node.op_type;
    if (!call.fused_activation.empty()) name += "+" + std::string(call.fused_activation);
    if (call.fused_pool != nullptr) name += "+" + call.fused_pool->op_type;
    calls_.push_back(name);
    return base_->Run(call);
  }
  mutable std::vector<std::string> calls_;

 private:
  std::shared_ptr<const KernelBackend> base_;
  bool fuse_;
};

// x [2, 1, 5, 5] -> Conv(3x3, pad 1, bias) -> Relu -> MaxPool(2x2, stride 2,
// ceil mode: 3x3) -> Flatten -> Gemm(transB, bias) -> Relu -> MatMul -> Relu
// = y, with mixed-sign weights so that every Relu clips something.
graph::Graph ConvGemmMatMulRelu() {
  graph::Graph g;
  g.opset_version = 17;
  g.inputs.push_back({"x", DataType::kFloat32, std::nullopt});
  g.outputs.push_back({"y", DataType::kFloat32, std::nullopt});
  auto values = [](int64_t count, float scale) {
    std::vector<float> v(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) v[i] = scale * static_cast<float>((i * 7) % 11 - 5);
    return v;
  };
  g.initializers["cw"] = Tensor::FromVector(DataType::kFloat32, {3, 1, 3, 3}, values(27, 0.1f));
  g.initializers["cb"] = Tensor::FromVector<float>(DataType::kFloat32, {3}, {0.5f, -0.25f, 0});
  g.initializers["gw"] = Tensor::FromVector(DataType::kFloat32, {4, 27}, values(108, 0.05f));
  g.initializers["gb"] = Tensor::FromVector<float>(DataType::kFloat32, {4}, {0.1f, -0.2f, 0.3f, 0});
  g.initializers["mw"] = Tensor::FromVector(DataType::kFloat32, {4, 3}, values(12, 0.3f));
  graph::Node conv{"conv", "Conv", "", {"x", "cw", "cb"}, {"c"}, {}};
  conv.attributes["pads"] = std::vector<int64_t>{1, 1, 1, 1};
  graph::Node gemm{"gemm", "Gemm", "", {"f", "gw", "gb"}, {"h"}, {}};
  gemm.attributes["transB"] = int64_t{1};
  graph::Node pool{"pool", "MaxPool", "", {"r"}, {"p"}, {}};
  pool.attributes["kernel_shape"] = std::vector<int64_t>{2, 2};
  pool.attributes["strides"] = std::vector<int64_t>{2, 2};
  pool.attributes["ceil_mode"] = int64_t{1};
  g.nodes = {conv,
             {"relu1", "Relu", "", {"c"}, {"r"}, {}},
             pool,
             {"flatten", "Flatten", "", {"p"}, {"f"}, {}},
             gemm,
             {"relu2", "Relu", "", {"h"}, {"s"}, {}},
             {"matmul", "MatMul", "", {"s", "mw"}, {"m"}, {}},
             {"relu3", "Relu", "", {"m"}, {"y"}, {}}};
  return g;
}

Tensor ConvInput() {
  std::vector<float> x(50);
  for (int i = 0; i < 50; ++i) x[i] = static_cast<float>((i * 13) % 17) / 8.0f - 1.0f;
  return Tensor::FromVector(DataType::kFloat32, {2, 1, 5, 5}, x);
}

TEST(ExecutorTest, FusedReluGivesTheSameOutputsAsSeparateNodes) {
  auto fused_backend = std::make_shared<RecordingBackend>(true);
  auto plain_backend = std::make_shared<RecordingBackend>(false);
  auto fused = Executor::Create(ConvGemmMatMulRelu(), fused_backend);
  auto plain = Executor::Create(ConvGemmMatMulRelu(), plain_backend);
  ASSERT_TRUE(fused.ok()) << fused.status();
  ASSERT_TRUE(plain.ok()) << plain.status();
  auto fused_out = fused->Run({{"x", ConvInput()}});
  auto plain_out = plain->Run({{"x", ConvInput()}});
  ASSERT_TRUE(fused_out.ok()) << fused_out.status();
  ASSERT_TRUE(plain_out.ok()) << plain_out.status();
  EXPECT_EQ(fused_backend->calls_, (std::vector<std::string>{"Conv+Relu+MaxPool", "Flatten",
                                                               "Gemm+Relu", "MatMul+Relu"}));
  EXPECT_EQ(plain_backend->calls_.size(), 8u);
  EXPECT_EQ((*fused_out)[0].shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ((*fused_out)[0].ToFloats(), (*plain_out)[0].ToFloats());
  // The Relus clip: some outputs are 0, some positive.
  const std::vector<float> y = (*fused_out)[0].ToFloats();
  EXPECT_NE(std::count(y.begin(), y.end(), 0.0f), 0);
  EXPECT_NE(std::count_if(y.begin(), y.end(), [](float v) { return v > 0; }), 0);
}

// With more threads than images the fused Conv+MaxPool splits the Conv over
// column tiles and pools afterwards (pooling from scratch needs whole
// images per work item); the outputs are the same.
TEST(ExecutorTest, FusedMaxPoolWithMoreThreadsThanImages) {
  const Tensor x = ConvInput();
  const Tensor one = Tensor::FromVector(DataType::kFloat32, {1, 1, 5, 5},
                                        std::vector<float>(x.data<float>(), x.data<float>() + 25));
  for (int threads : {1, 2, 4}) {
    SCOPED_TRACE(threads);
    auto fused = Executor::Create(ConvGemmMatMulRelu(), std::make_shared<RecordingBackend>(true, threads));
    auto plain = Executor::Create(ConvGemmMatMulRelu(), std::make_shared<RecordingBackend>(false, threads));
    ASSERT_TRUE(fused.ok() && plain.ok());
    for (const Tensor& input : {x, one}) {
      auto fused_out = fused->Run({{"x", input}});
      auto plain_out = plain->Run({{"x", input}});
      ASSERT_TRUE(fused_out.ok()) << fused_out.status();
      ASSERT_TRUE(plain_out.ok()) << plain_out.status();
      EXPECT_EQ((*fused_out)[0].ToFloats(), (*plain_out)[0].ToFloats());
    }
  }
}

TEST(ExecutorTest, DoesNotFuseAnIntermediateWithOtherUses) {
  graph::Graph g = ConvGemmMatMulRelu();
  // "c" also becomes a graph output, "h" feeds a second node.
  g.outputs.push_back({"c", DataType::kFloat32, std::nullopt});
  g.outputs.push_back({"h2", DataType::kFloat32, std::nullopt});
  g.nodes.push_back({"neg", "Neg", "", {"h"}, {"h2"}, {}});
  auto backend = std::make_shared<RecordingBackend>(true);
  auto executor = Executor::Create(g, backend);
  ASSERT_TRUE(executor.ok()) << executor.status();
  auto outputs = executor->Run({{"x", ConvInput()}});
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  // Conv keeps its output for the graph; its Relu and MaxPool run alone.
  EXPECT_EQ(std::count(backend->calls_.begin(), backend->calls_.end(), "Conv"), 1);
  EXPECT_EQ(std::count(backend->calls_.begin(), backend->calls_.end(), "MaxPool"), 1);
  EXPECT_EQ(std::count(backend->calls_.begin(), backend->calls_.end(), "Gemm"), 1);
  EXPECT_EQ(std::count(backend->calls_.begin(), backend->calls_.end(), "MatMul+Relu"), 1);
  ASSERT_EQ(outputs->size(), 3u);
  // The stored Conv output is before its Relu: it has negative values.
  const std::vector<float> c = (*outputs)[1].ToFloats();
  EXPECT_NE(std::count_if(c.begin(), c.end(), [](float v) { return v < 0; }), 0);
}

}  // namespace
}  // namespace squeeze::core::runtime

namespace squeeze::core::runtime {
namespace {

// y = x + Transpose(w): the Transpose of an initializer runs once, in
// Create, unless w is also a graph input (a feed may then replace it).
graph::Graph TransposedWeight(bool w_is_input) {
  graph::Graph g;
  g.inputs.push_back({"x", DataType::kFloat32, std::nullopt});
  if (w_is_input) g.inputs.push_back({"w", DataType::kFloat32, std::nullopt});
  g.outputs.push_back({"y", DataType::kFloat32, std::nullopt});
  g.initializers["w"] = Tensor::FromVector<float>(DataType::kFloat32, {2, 3}, {1, 2, 3, 4, 5, 6});
  g.nodes = {{"t", "Transpose", "", {"w"}, {"wt"}, {}}, {"add", "Add", "", {"x", "wt"}, {"y"}, {}}};
  return g;
}

TEST(ExecutorTest, FoldsNodesOfInitializersOnce) {
  auto backend = std::make_shared<RecordingBackend>(true);
  auto executor = Executor::Create(TransposedWeight(false), backend);
  ASSERT_TRUE(executor.ok()) << executor.status();
  EXPECT_EQ(backend->calls_, (std::vector<std::string>{"Transpose"}));
  const Tensor x = Tensor::FromVector<float>(DataType::kFloat32, {3, 2}, {0, 0, 10, 10, 20, 20});
  for (int run = 0; run < 2; ++run) {
    auto outputs = executor->Run({{"x", x}});
    ASSERT_TRUE(outputs.ok()) << outputs.status();
    EXPECT_EQ((*outputs)[0].ToFloats(), (std::vector<float>{1, 4, 12, 15, 23, 26}));
  }
  EXPECT_EQ(backend->calls_, (std::vector<std::string>{"Transpose", "Add", "Add"}));
  // Only the folded Transpose read w: the executor no longer holds it.
  EXPECT_EQ(executor->graph().initializers.count("w"), 0u);
}

TEST(ExecutorTest, DoesNotFoldAnInitializerThatAFeedOverrides) {
  auto backend = std::make_shared<RecordingBackend>(true);
  auto executor = Executor::Create(TransposedWeight(true), backend);
  ASSERT_TRUE(executor.ok()) << executor.status();
  EXPECT_TRUE(backend->calls_.empty());
  const Tensor x(DataType::kFloat32, {3, 2});
  const Tensor w = Tensor::FromVector<float>(DataType::kFloat32, {2, 3}, {-1, -2, -3, -4, -5, -6});
  auto outputs = executor->Run({{"x", x}, {"w", w}});
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  EXPECT_EQ((*outputs)[0].ToFloats(), (std::vector<float>{-1, -4, -2, -5, -3, -6}));
  EXPECT_EQ(executor->graph().initializers.count("w"), 1u);  // the default when not fed
}

}  // namespace
}  // namespace squeeze::core::runtime

namespace squeeze::core::runtime {
namespace {

// A 1-D Conv -> Relu -> MaxPool: fused, the Conv kernel pools through the
// MaxPool kernel (its cache path is 2-D only); the same values either way.
TEST(ExecutorTest, FusedMaxPoolAfterOneDimensionalConv) {
  graph::Graph g;
  g.opset_version = 17;
  g.inputs.push_back({"x", DataType::kFloat32, std::nullopt});
  g.outputs.push_back({"y", DataType::kFloat32, std::nullopt});
  g.initializers["w"] = Tensor::FromVector<float>(DataType::kFloat32, {2, 1, 3},
                                                  {1, -2, 0.5f, -1, 1, 1});
  graph::Node pool{"pool", "MaxPool", "", {"r"}, {"y"}, {}};
  pool.attributes["kernel_shape"] = std::vector<int64_t>{3};
  pool.attributes["strides"] = std::vector<int64_t>{2};
  g.nodes = {{"conv", "Conv", "", {"x", "w"}, {"c"}, {}},
             {"relu", "Relu", "", {"c"}, {"r"}, {}},
             pool};
  const Tensor x = Tensor::FromVector<float>(DataType::kFloat32, {1, 1, 9},
                                             {3, -1, 4, -1, 5, -9, 2, -6, 5});
  auto fused_backend = std::make_shared<RecordingBackend>(true);
  auto plain_backend = std::make_shared<RecordingBackend>(false);
  auto fused = Executor::Create(g, fused_backend);
  auto plain = Executor::Create(g, plain_backend);
  ASSERT_TRUE(fused.ok() && plain.ok());
  auto fused_out = fused->Run({{"x", x}});
  auto plain_out = plain->Run({{"x", x}});
  ASSERT_TRUE(fused_out.ok()) << fused_out.status();
  ASSERT_TRUE(plain_out.ok()) << plain_out.status();
  EXPECT_EQ(fused_backend->calls_, (std::vector<std::string>{"Conv+Relu+MaxPool"}));
  EXPECT_EQ((*fused_out)[0].shape(), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ((*fused_out)[0].ToFloats(), (*plain_out)[0].ToFloats());
}

}  // namespace
}  // namespace squeeze::core::runtime
