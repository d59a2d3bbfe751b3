#include "core/lora/lora.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "core/distill/distill.h"
#include "core/graph/builder.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/runtime/executor.h"
#include "core/train/autograd.h"
#include "core/train/losses.h"
#include "core/train/optimizers.h"
#include "gtest/gtest.h"

namespace squeeze::core::lora {
namespace {

using graph::DataType;
using graph::Graph;
using graph::Tensor;

Tensor Random(std::vector<int64_t> shape, uint64_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  Tensor t(DataType::kFloat32, std::move(shape));
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

// x [N, 6] -> Gemm (fc1.weight [4, 6], transB) -> Relu -> MatMul (fc2.weight
// [4, 3], the [in, out] layout) -> MatMul through Transpose (fc3.weight
// [5, 3], torch Linear) -> y [N, 5].
Graph SmallGraph() {
  graph::GraphBuilder b("small");
  b.AddInput({"x", DataType::kFloat32, std::vector<graph::Dim>{{std::nullopt, "n"}, {6, ""}}});
  b.Initializer("fc1.weight", Random({4, 6}, 1));
  b.Initializer("fc1.bias", Random({4}, 2));
  b.Initializer("fc2.weight", Random({4, 3}, 3));
  b.Initializer("fc3.weight", Random({5, 3}, 4));
  std::string h = b.Add("Relu", {b.Add("Gemm", {"x", "fc1.weight", "fc1.bias"}, {{"transB", int64_t{1}}})});
  h = b.Add("MatMul", {h, "fc2.weight"});
  b.Add("MatMul", {h, b.Add("Transpose", {"fc3.weight"}, {{"perm", std::vector<int64_t>{1, 0}}})}, {}, "y");
  b.AddOutput({"y", DataType::kFloat32, std::nullopt});
  return b.Finish();
}

std::vector<float> Outputs(const Graph& graph, const Tensor& x) {
  auto executor = runtime::Executor::Create(graph, kernels::cpu::CreateCpuBackend(1));
  EXPECT_TRUE(executor.ok()) << executor.status();
  auto outputs = executor->Run({{"x", x}});
  EXPECT_TRUE(outputs.ok()) << outputs.status();
  return outputs->at(0).ToFloats();
}

void ExpectNear(const std::vector<float>& a, const std::vector<float>& b, float tolerance) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], tolerance) << "element " << i;
}

TEST(LoraTest, AdaptedGraphStartsEqualAndMergesToTheSameFunction) {
  const Graph base = SmallGraph();
  const Tensor x = Random({7, 6}, 9);
  absl::StatusOr<LoraGraph> lora = AddLoraAdapters(base, {2, 8, "", 3});
  ASSERT_TRUE(lora.ok()) << lora.status();
  ASSERT_EQ(lora->adapters.size(), 3u);
  EXPECT_EQ(lora->trainable_parameters, 2 * (6 + 4) + 2 * (4 + 3) + 2 * (3 + 5));
  EXPECT_EQ(lora->trainable.count("fc1.lora_A.weight"), 1u);
  EXPECT_EQ(lora->graph.initializers.at("fc3.lora_B.weight").shape(), (std::vector<int64_t>{5, 2}));
  EXPECT_DOUBLE_EQ(lora->adapters[0].scale, 4.0);
  // B = 0: the adapters add nothing yet.
  ExpectNear(Outputs(lora->graph, x), Outputs(base, x), 0);
  // Non-zero B: the merged graph computes what the adapted one does.
  for (const LoraAdapter& adapter : lora->adapters) {
    const std::vector<int64_t> shape = lora->graph.initializers.at(adapter.b).shape();
    lora->graph.initializers[adapter.b] = Random(shape, 11);
  }
  const std::vector<float> adapted = Outputs(lora->graph, x);
  absl::StatusOr<Graph> merged = MergeLoraAdapters(lora->graph, lora->adapters);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->nodes.size(), base.nodes.size());
  EXPECT_EQ(merged->initializers.size(), base.initializers.size());
  ExpectNear(Outputs(*merged, x), adapted, 1e-4f);
  // ...and not what the base does.
  const std::vector<float> before = Outputs(base, x);
  float largest_change = 0;
  for (size_t i = 0; i < adapted.size(); ++i) largest_change = std::max(largest_change, std::abs(adapted[i] - before[i]));
  EXPECT_GT(largest_change, 0.1f);
  // Stripping gives the base graph back.
  absl::StatusOr<Graph> stripped = StripLoraAdapters(lora->graph, lora->adapters);
  ASSERT_TRUE(stripped.ok()) << stripped.status();
  ExpectNear(Outputs(*stripped, x), Outputs(base, x), 0);
}

TEST(LoraTest, MergeCanKeepZeroWeightsZero) {
  Graph base = SmallGraph();
  base.initializers["fc1.weight"].data<float>()[0] = 0;
  absl::StatusOr<LoraGraph> lora = AddLoraAdapters(base, {2, 8, "fc1", 3});
  ASSERT_TRUE(lora.ok()) << lora.status();
  ASSERT_EQ(lora->adapters.size(), 1u);
  lora->graph.initializers["fc1.lora_B.weight"] = Random({4, 2}, 12);
  auto dense = MergeLoraAdapters(lora->graph, lora->adapters);
  auto sparse = MergeLoraAdapters(lora->graph, lora->adapters, {true});
  ASSERT_TRUE(dense.ok() && sparse.ok());
  EXPECT_NE(dense->initializers.at("fc1.weight").data<float>()[0], 0.0f);
  EXPECT_EQ(sparse->initializers.at("fc1.weight").data<float>()[0], 0.0f);
  EXPECT_EQ(sparse->initializers.at("fc1.weight").data<float>()[1],
            dense->initializers.at("fc1.weight").data<float>()[1]);
}

TEST(LoraTest, TrainingChangesOnlyTheAdapters) {
  const Graph base = SmallGraph();
  absl::StatusOr<LoraGraph> lora = AddLoraAdapters(base, {2, 4, "", 5});
  ASSERT_TRUE(lora.ok()) << lora.status();
  auto program = train::GradientProgram::Create(lora->graph, kernels::cpu::CreateCpuBackend(1), lora->trainable);
  ASSERT_TRUE(program.ok()) << program.status();
  const Tensor x = Random({16, 6}, 21);
  const Tensor target = Random({16, 5}, 22);
  train::AdamW optimizer({1e-2, 0.9, 0.999, 1e-8, 0});
  double first_loss = 0, last_loss = 0;
  for (int step = 0; step < 30; ++step) {
    auto tape = program->Forward({{"x", x}});
    ASSERT_TRUE(tape.ok()) << tape.status();
    auto loss = train::MeanSquaredError(*program->Output(*tape, "y").value(), target);
    ASSERT_TRUE(loss.ok());
    if (step == 0) first_loss = loss->loss;
    last_loss = loss->loss;
    auto gradients = program->Backward(*tape, {{"y", loss->gradient}});
    ASSERT_TRUE(gradients.ok()) << gradients.status();
    EXPECT_EQ(gradients->size(), 6u);
    ASSERT_TRUE(optimizer.Step(&program->mutable_parameters(), *gradients).ok());
  }
  EXPECT_LT(last_loss, first_loss);
  const Graph& trained = program->graph();
  for (const auto& [name, tensor] : base.initializers) {
    EXPECT_EQ(trained.initializers.at(name).bytes(), tensor.bytes()) << name << " changed";
  }
  for (const std::string& name : lora->trainable) {
    EXPECT_NE(trained.initializers.at(name).bytes(), lora->graph.initializers.at(name).bytes()) << name;
  }
  // The trained adapters merge into an equal graph.
  auto merged = MergeLoraAdapters(trained, lora->adapters);
  ASSERT_TRUE(merged.ok()) << merged.status();
  ExpectNear(Outputs(*merged, x), Outputs(trained, x), 1e-4f);
}

// The recovery path: distill a damaged copy back towards the original,
// training only the adapters, then merge.
TEST(LoraTest, DistillationThroughAdaptersRecoversAndMerges) {
  const Graph original = SmallGraph();
  Graph damaged = original;
  for (int64_t i = 0; i < 24; i += 2) damaged.initializers["fc1.weight"].data<float>()[i] = 0;
  absl::StatusOr<LoraGraph> lora = AddLoraAdapters(damaged, {2, 4, "", 7});
  ASSERT_TRUE(lora.ok()) << lora.status();
  distill::DistillOptions options;
  options.output = {80, 2e-2};
  options.temperature = 1;
  options.trainable = lora->trainable;
  options.backend = kernels::cpu::CreateCpuBackend(1);
  auto batches = [](int64_t step) -> absl::StatusOr<distill::DistillBatch> {
    distill::DistillBatch batch;
    batch.feeds["x"] = Random({16, 6}, 100 + step % 4);
    return batch;
  };
  auto result = distill::Distill(original, lora->graph, batches, options);
  ASSERT_TRUE(result.ok()) << result.status();
  const std::vector<double>& losses = result->curves.at(0).losses;
  EXPECT_LT(losses.back(), 0.5 * losses.front());
  for (const auto& [name, tensor] : damaged.initializers) {
    EXPECT_EQ(result->student.initializers.at(name).bytes(), tensor.bytes()) << name << " changed";
  }
  auto merged = MergeLoraAdapters(result->student, lora->adapters);
  ASSERT_TRUE(merged.ok()) << merged.status();
  const Tensor x = Random({5, 6}, 200);
  ExpectNear(Outputs(*merged, x), Outputs(result->student, x), 1e-4f);
}

TEST(LoraTest, BadRankNamesTheLayer) {
  const Graph base = SmallGraph();
  absl::StatusOr<LoraGraph> zero = AddLoraAdapters(base, {0, 8, "", 1});
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(zero.status().message().find("Gemm_0"), std::string::npos) << zero.status();
  // 4 fits fc1 ([4, 6]) but not fc2 ([out 3, in 4]).
  absl::StatusOr<LoraGraph> big = AddLoraAdapters(base, {4, 8, "", 1});
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("MatMul_2"), std::string::npos) << big.status();
  EXPECT_NE(big.status().message().find("[1, 3]"), std::string::npos) << big.status();
  EXPECT_EQ(AddLoraAdapters(base, {2, 8, "no_such_layer", 1}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(AddLoraAdapters(base, {2, 8, "(", 1}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LoraTest, ExportsPeftNames) {
  absl::StatusOr<LoraGraph> lora = AddLoraAdapters(SmallGraph(), {2, 8, "fc3", 1});
  ASSERT_TRUE(lora.ok()) << lora.status();
  auto file = LoraAdaptersToSafetensors(lora->graph, lora->adapters, 8);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ(file->tensors.size(), 2u);
  EXPECT_EQ(file->tensors.at("base_model.model.fc3.lora_A.weight").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(file->tensors.at("base_model.model.fc3.lora_B.weight").shape, (std::vector<int64_t>{5, 2}));
  EXPECT_EQ(file->metadata.at("r"), "2");
  EXPECT_EQ(file->metadata.at("target_modules"), "fc3");
}

}  // namespace
}  // namespace squeeze::core::lora
