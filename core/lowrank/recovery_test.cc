#include "core/lowrank/recovery.h"

#include <random>
#include <set>
#include <string>

#include "core/graph/builder.h"
#include "core/lowrank/lowrank.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::lowrank {
namespace {

using graph::DataType;
using graph::Graph;
using graph::Tensor;
using ::testing::HasSubstr;

Tensor Random(std::vector<int64_t> shape, std::mt19937* rng, float stddev = 1.0f) {
  Tensor t(DataType::kFloat32, std::move(shape));
  std::normal_distribution<float> normal(0, stddev);
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = normal(*rng);
  return t;
}

// x [N, 12] -> * input_scale (a scalar constant) -> Gemm [24, 12] -> Relu
// -> Gemm [classes, 24] -> logits.
Graph Mlp(int64_t classes, uint32_t seed) {
  std::mt19937 rng(seed);
  graph::GraphBuilder b("mlp");
  const std::string scaled = b.Add("Mul", {"x", b.FloatScalar("input_scale", 0.9f)});
  std::string x = b.Add("Relu", {b.Add("Gemm", {scaled, b.Initializer("fc1.weight", Random({24, 12}, &rng, 0.4f)),
                                                b.Initializer("fc1.bias", Random({24}, &rng, 0.1f))},
                                       {{"transB", int64_t{1}}})});
  b.Add("Gemm", {x, b.Initializer("fc2.weight", Random({classes, 24}, &rng, 0.4f)),
                 b.Initializer("fc2.bias", Random({classes}, &rng, 0.1f))},
        {{"transB", int64_t{1}}}, "logits");
  b.AddInput({"x", DataType::kFloat32, std::nullopt});
  b.AddOutput({"logits", DataType::kFloat32, std::nullopt});
  return b.Finish();
}

RecoveryBatchFn Batches() {
  return [](int64_t step, int64_t batch_size) -> absl::StatusOr<RecoveryBatch> {
    std::mt19937 rng(static_cast<uint32_t>(step % 4));  // four fixed batches
    RecoveryBatch batch;
    batch.feeds["x"] = Random({batch_size, 12}, &rng);
    for (int64_t i = 0; i < batch_size; ++i) batch.labels.push_back(i % 5);
    return batch;
  };
}

TEST(RecoveryTest, DistillationReducesTheLossOfAFactorizedStudent) {
  const Graph teacher = Mlp(5, 1);
  LowRankOptions options;
  options.target_ratio = 0.2;
  auto factorized = FactorizeGraph(teacher, options);
  ASSERT_TRUE(factorized.ok()) << factorized.status();
  Graph student = factorized->graph;
  RecoveryOptions recovery;
  recovery.steps = 60;
  recovery.batch_size = 32;
  recovery.learning_rate = 1e-2;
  recovery.hard_label_weight = 0.1;
  int64_t calls = 0;
  auto report = RecoverByDistillation(teacher, &student, recovery, Batches(),
                                      [&calls](int64_t step, int64_t steps, double loss) {
                                        EXPECT_EQ(step, calls++);
                                        EXPECT_EQ(steps, 60);
                                        EXPECT_TRUE(std::isfinite(loss));
                                        return true;
                                      });
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->steps, 60);
  EXPECT_EQ(calls, 60);
  EXPECT_LT(report->last_loss, report->first_loss);
  // Scalars are constants by default; the factors moved.
  EXPECT_EQ(student.initializers.at("input_scale").ToFloats(), std::vector<float>{0.9f});
  EXPECT_NE(student.initializers.at("fc1.weight/lowrank_a").ToFloats(),
            factorized->graph.initializers.at("fc1.weight/lowrank_a").ToFloats());
}

TEST(RecoveryTest, OnlyTheGivenParametersChange) {
  const Graph teacher = Mlp(5, 2);
  LowRankOptions options;
  options.target_ratio = 0.2;
  auto factorized = FactorizeGraph(teacher, options);
  ASSERT_TRUE(factorized.ok()) << factorized.status();
  Graph student = factorized->graph;
  RecoveryOptions recovery;
  recovery.steps = 5;
  recovery.batch_size = 8;
  for (const RankScale& scale : factorized->scales) recovery.trainable.insert(scale.scale);
  ASSERT_EQ(recovery.trainable.size(), 2u);
  auto report = RecoverByDistillation(teacher, &student, recovery, Batches());
  ASSERT_TRUE(report.ok()) << report.status();
  for (const auto& [name, tensor] : student.initializers) {
    const bool changed = tensor.ToFloats() != factorized->graph.initializers.at(name).ToFloats();
    EXPECT_EQ(changed, recovery.trainable.count(name) > 0) << name;
  }
  EXPECT_TRUE(FoldRankScales(factorized->scales, &student).ok());
}

TEST(RecoveryTest, MismatchedTeacherAndBadOptionsAreRejected) {
  Graph student = Mlp(5, 3);
  RecoveryOptions recovery;
  recovery.steps = 2;
  recovery.batch_size = 4;
  auto status = RecoverByDistillation(Mlp(6, 3), &student, recovery, Batches()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("[4, 6]"));
  recovery.temperature = 0;
  EXPECT_THAT(ValidateRecoveryOptions(recovery).message(), HasSubstr("temperature"));
  recovery = RecoveryOptions();
  recovery.hard_label_weight = 2;
  EXPECT_THAT(ValidateRecoveryOptions(recovery).message(), HasSubstr("hard_label_weight"));
  recovery = RecoveryOptions();
  recovery.steps = 0;
  EXPECT_THAT(ValidateRecoveryOptions(recovery).message(), HasSubstr("steps"));
}

}  // namespace
}  // namespace squeeze::core::lowrank
