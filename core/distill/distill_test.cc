#include "core/distill/distill.h"

#include <cmath>
#include <random>

#include "core/graph/builder.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/runtime/executor.h"
#include "gtest/gtest.h"

namespace squeeze::core::distill {
namespace {

using graph::DataType;
using graph::Graph;
using graph::Tensor;

Tensor Random(std::vector<int64_t> shape, uint64_t seed, float stddev = 1) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, stddev);
  Tensor t(DataType::kFloat32, std::move(shape));
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

// x [N, 8] -> Gemm [hidden, 8] -> Relu (`hidden_name`) -> Gemm [4, hidden] -> "logits" [N, 4].
Graph Mlp(int64_t hidden, const std::string& prefix, uint64_t seed) {
  graph::GraphBuilder b(prefix);
  b.AddInput({"x", DataType::kFloat32, std::vector<graph::Dim>{{std::nullopt, "n"}, {8, ""}}});
  b.Initializer(prefix + "fc1.weight", Random({hidden, 8}, seed, 0.5f));
  b.Initializer(prefix + "fc1.bias", Random({hidden}, seed + 1, 0.1f));
  b.Initializer(prefix + "fc2.weight", Random({4, hidden}, seed + 2, 0.5f));
  b.Initializer(prefix + "fc2.bias", Random({4}, seed + 3, 0.1f));
  const std::string h =
      b.Add("Relu", {b.Add("Gemm", {"x", prefix + "fc1.weight", prefix + "fc1.bias"}, {{"transB", int64_t{1}}})}, {},
            prefix + "hidden");
  b.Add("Gemm", {h, prefix + "fc2.weight", prefix + "fc2.bias"}, {{"transB", int64_t{1}}}, "logits");
  b.AddOutput({"logits", DataType::kFloat32, std::nullopt});
  return b.Finish();
}

// x [B, 3, 5] -> MatMul [5, heads * 3] -> [B, heads, 3, 3] -> Softmax ("probs").
Graph AttentionLike(int64_t heads, uint64_t seed) {
  graph::GraphBuilder b("attention");
  b.AddInput({"x", DataType::kFloat32, std::nullopt});
  b.Initializer("w", Random({5, heads * 3}, seed));
  const std::string scores = b.Add(
      "Transpose", {b.Add("Reshape", {b.Add("MatMul", {"x", "w"}), b.Int64s("shape", {0, 0, heads, 3})})},
      {{"perm", std::vector<int64_t>{0, 2, 1, 3}}});
  b.Add("Softmax", {scores}, {{"axis", int64_t{-1}}}, "probs");
  b.AddOutput({"probs", DataType::kFloat32, std::nullopt});
  return b.Finish();
}

DistillBatchSource RandomBatches(std::vector<int64_t> shape, bool labels) {
  return [shape, labels](int64_t step) -> absl::StatusOr<DistillBatch> {
    DistillBatch batch;
    batch.feeds["x"] = Random(shape, 1000 + step % 8);
    if (labels) {
      for (int64_t i = 0; i < shape[0]; ++i) batch.labels.push_back((i + step) % 4);
    }
    return batch;
  };
}

double Mean(const std::vector<double>& v, size_t begin, size_t end) {
  double sum = 0;
  for (size_t i = begin; i < end; ++i) sum += v[i];
  return sum / static_cast<double>(end - begin);
}

// The contract distillation relies on: a gradient seeded on an intermediate
// value that later nodes also consume is added to what flows back from them.
TEST(DistillTest, BackwardAccumulatesAGradientSeededOnAConsumedIntermediate) {
  graph::GraphBuilder b("chain");
  b.AddInput({"x", DataType::kFloat32, std::nullopt});
  b.Initializer("w1", Random({3, 4}, 1, 0.5f));
  b.Initializer("w2", Random({4, 2}, 2, 0.5f));
  const std::string h = b.Add("MatMul", {"x", "w1"}, {}, "h");
  b.Add("MatMul", {b.Add("Tanh", {h}), "w2"}, {}, "y");
  b.AddOutput({"y", DataType::kFloat32, std::nullopt});
  b.AddOutput({"h", DataType::kFloat32, std::nullopt});
  const Graph graph = b.Finish();
  const Tensor x = Random({5, 3}, 3);
  const Tensor gy = Random({5, 2}, 4), gh = Random({5, 4}, 5);
  auto program = train::GradientProgram::Create(graph, kernels::cpu::CreateCpuBackend(1), {"w1"});
  ASSERT_TRUE(program.ok()) << program.status();
  // L = <y, gy> + <h, gh>.
  auto loss = [&](const Graph& g) {
    auto executor = runtime::Executor::Create(g, kernels::cpu::CreateCpuBackend(1));
    auto outputs = executor->Run({{"x", x}});
    double total = 0;
    for (int64_t i = 0; i < gy.num_elements(); ++i) total += double{(*outputs)[0].data<float>()[i]} * gy.data<float>()[i];
    for (int64_t i = 0; i < gh.num_elements(); ++i) total += double{(*outputs)[1].data<float>()[i]} * gh.data<float>()[i];
    return total;
  };
  auto tape = program->Forward({{"x", x}});
  ASSERT_TRUE(tape.ok()) << tape.status();
  auto gradients = program->Backward(*tape, {{"y", gy}, {"h", gh}});
  ASSERT_TRUE(gradients.ok()) << gradients.status();
  auto only_y = program->Backward(*tape, {{"y", gy}});
  ASSERT_TRUE(only_y.ok());
  double largest_h_part = 0;
  for (int64_t i = 0; i < 12; ++i) {
    Graph plus = graph, minus = graph;
    const float eps = 1e-3f;
    plus.initializers["w1"].data<float>()[i] += eps;
    minus.initializers["w1"].data<float>()[i] -= eps;
    const double numeric = (loss(plus) - loss(minus)) / (2 * eps);
    EXPECT_NEAR(gradients->at("w1").data<float>()[i], numeric, 2e-3) << "w1[" << i << "]";
    largest_h_part = std::max(largest_h_part, std::abs(double{gradients->at("w1").data<float>()[i]} -
                                                       only_y->at("w1").data<float>()[i]));
  }
  EXPECT_GT(largest_h_part, 0.1);  // the seed on h really contributed
}

TEST(DistillTest, AttentionKlGradientMatchesFiniteDifferences) {
  // Probabilities from softmax of random scores; teacher 4 heads.
  auto softmax = [](Tensor t) {
    const int64_t k = t.shape().back();
    for (int64_t r = 0; r < t.num_elements() / k; ++r) {
      float* row = t.data<float>() + r * k;
      double sum = 0;
      for (int64_t j = 0; j < k; ++j) sum += std::exp(row[j]);
      for (int64_t j = 0; j < k; ++j) row[j] = static_cast<float>(std::exp(row[j]) / sum);
    }
    return t;
  };
  const Tensor teacher = softmax(Random({2, 4, 3, 5}, 1));
  for (auto [student_heads, heads] : {std::pair{int64_t{4}, HeadMatching::kAverage},
                                      std::pair{int64_t{2}, HeadMatching::kAverage},
                                      std::pair{int64_t{2}, HeadMatching::kGroups},
                                      std::pair{int64_t{1}, HeadMatching::kGroups}}) {
    const Tensor student = softmax(Random({2, student_heads, 3, 5}, 2));
    auto kl = AttentionKlDivergence(student, teacher, heads);
    ASSERT_TRUE(kl.ok()) << kl.status();
    EXPECT_GT(kl->loss, 0);
    for (int64_t i = 0; i < student.num_elements(); i += 3) {
      Tensor plus = student, minus = student;
      const float eps = 1e-3f;
      plus.data<float>()[i] += eps;
      minus.data<float>()[i] -= eps;
      const double numeric = (AttentionKlDivergence(plus, teacher, heads)->loss -
                              AttentionKlDivergence(minus, teacher, heads)->loss) / (2 * eps);
      EXPECT_NEAR(kl->gradient.data<float>()[i], numeric, 2e-3 * std::max(1.0, std::abs(numeric)))
          << student_heads << " heads, element " << i;
    }
  }
  // Equal distributions: zero loss.
  EXPECT_NEAR(AttentionKlDivergence(teacher, teacher, HeadMatching::kGroups)->loss, 0, 1e-6);
  // 4 teacher heads do not split into 3 groups; other dims must match.
  EXPECT_EQ(AttentionKlDivergence(softmax(Random({2, 3, 3, 5}, 3)), teacher, HeadMatching::kGroups).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AttentionKlDivergence(softmax(Random({2, 4, 3, 4}, 3)), teacher, HeadMatching::kAverage).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DistillTest, FeatureAndOutputStagesTrainASmallerStudent) {
  const Graph teacher = Mlp(16, "t.", 10);
  const Graph student = Mlp(6, "s.", 20);
  DistillOptions options;
  options.feature_pairs = {{"t.hidden", "s.hidden"}};
  options.features = {60, 1e-2};
  options.output = {60, 1e-2};
  options.backend = kernels::cpu::CreateCpuBackend(1);
  std::vector<DistillProgress> seen;
  auto result = Distill(teacher, student, RandomBatches({16, 8}, false), options, [&](const DistillProgress& p) {
    seen.push_back(p);
    return true;
  });
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->curves.size(), 2u);
  EXPECT_EQ(result->curves[0].stage, Stage::kFeatures);
  EXPECT_EQ(result->curves[1].stage, Stage::kOutput);
  for (const StageCurve& curve : result->curves) {
    ASSERT_EQ(curve.losses.size(), 60u);
    EXPECT_LT(Mean(curve.losses, 50, 60), 0.7 * Mean(curve.losses, 0, 10)) << StageName(curve.stage);
  }
  ASSERT_EQ(seen.size(), 120u);
  EXPECT_EQ(seen[59].stage, Stage::kFeatures);
  EXPECT_EQ(seen[59].step, 60);
  EXPECT_EQ(seen[60].stage, Stage::kOutput);
  EXPECT_EQ(seen[60].step, 1);
  EXPECT_EQ(seen[60].total, 60);
  // The projection is gone; the student keeps its own structure.
  EXPECT_EQ(result->student.initializers.size(), student.initializers.size());
  EXPECT_EQ(result->student.nodes.size(), student.nodes.size());
  EXPECT_EQ(result->student.outputs.size(), 1u);
  EXPECT_NE(result->student.initializers.at("s.fc1.weight").bytes(), student.initializers.at("s.fc1.weight").bytes());
  // Deterministic.
  auto again = Distill(teacher, student, RandomBatches({16, 8}, false), options);
  ASSERT_TRUE(again.ok());
  for (const auto& [name, tensor] : result->student.initializers) {
    EXPECT_EQ(again->student.initializers.at(name).bytes(), tensor.bytes()) << name;
  }
}

TEST(DistillTest, AttentionStageAlignsHeadsOfDifferentCounts) {
  for (HeadMatching heads : {HeadMatching::kAverage, HeadMatching::kGroups}) {
    DistillOptions options;
    options.attention_pairs = {{"probs", "probs"}};
    options.attention = {80, 3e-2};
    options.backend = kernels::cpu::CreateCpuBackend(1);
    options.heads = heads;
    auto result = Distill(AttentionLike(4, 1), AttentionLike(2, 2), RandomBatches({2, 3, 5}, false), options);
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_EQ(result->curves.size(), 1u);
    const std::vector<double>& losses = result->curves[0].losses;
    EXPECT_LT(Mean(losses, 70, 80), 0.7 * Mean(losses, 0, 10));
  }
  EXPECT_EQ(AttentionProbabilityValues(AttentionLike(2, 2)), std::vector<std::string>{"probs"});
}

TEST(DistillTest, BadPairsAndShapesAreNamed) {
  const Graph teacher = Mlp(16, "t.", 10);
  const Graph student = Mlp(6, "s.", 20);
  DistillOptions options;
  options.output = {2, 1e-3};
  options.backend = kernels::cpu::CreateCpuBackend(1);
  const DistillBatchSource batches = RandomBatches({4, 8}, false);

  DistillOptions unknown = options;
  unknown.feature_pairs = {{"t.hidden", "s.nothing"}};
  auto status = Distill(teacher, student, batches, unknown).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("'s.nothing' is not a value of the student graph"), std::string::npos) << status;

  // Student logits [N, 3] against the teacher's [N, 4].
  graph::GraphBuilder b("wide");
  b.AddInput({"x", DataType::kFloat32, std::nullopt});
  b.Initializer("w", Random({8, 3}, 1));
  b.Add("MatMul", {"x", "w"}, {}, "scores");
  b.AddOutput({"scores", DataType::kFloat32, std::nullopt});
  status = Distill(teacher, b.Finish(), batches, options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("teacher output 'logits' float32 [4, 4] and student output 'scores' float32 [4, 3]"),
            std::string::npos)
      << status;

  // A feature pair on an integer value.
  Graph with_int = student;
  graph::Node cast;
  cast.name = "cast";
  cast.op_type = "Cast";
  cast.inputs = {"s.hidden"};
  cast.outputs = {"s.hidden_int"};
  cast.attributes["to"] = int64_t{7};
  with_int.nodes.push_back(cast);
  DistillOptions integer = options;
  integer.feature_pairs = {{"t.hidden", "s.hidden_int"}};
  integer.features = {1, 1e-3};
  status = Distill(teacher, with_int, batches, integer).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("float32"), std::string::npos) << status;
  EXPECT_NE(status.message().find("int64"), std::string::npos) << status;

  // Features whose non-channel dims differ.
  DistillOptions mismatch = options;
  mismatch.feature_pairs = {{"t.hidden", "x"}};
  mismatch.features = {1, 1e-3};
  Graph flat = student;
  status = Distill(AttentionLike(4, 1), flat, RandomBatches({4, 8}, false), mismatch).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);

  // Attention shapes that do not match.
  DistillOptions attention = options;
  attention.output = {0, 1e-3};
  attention.attention_pairs = {{"probs", "s.hidden"}};
  attention.attention = {1, 1e-3};
  status = Distill(AttentionLike(4, 1), student, [](int64_t step) -> absl::StatusOr<DistillBatch> {
             DistillBatch batch;
             batch.feeds["x"] = Random({4, 3, 5}, step);
             return batch;
           }, attention).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;

  DistillOptions no_pairs = options;
  no_pairs.attention = {5, 1e-3};
  EXPECT_EQ(Distill(teacher, student, batches, no_pairs).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DistillTest, OutputStageLossIsSoftenedKlPlusWeightedCrossEntropy) {
  const Graph teacher = Mlp(16, "t.", 10);
  const Graph student = Mlp(6, "s.", 20);
  DistillOptions options;
  options.output = {1, 1e-3};
  options.temperature = 2;
  options.hard_label_weight = 0.3;
  options.backend = kernels::cpu::CreateCpuBackend(1);
  const DistillBatchSource batches = RandomBatches({8, 8}, true);
  auto result = Distill(teacher, student, batches, options);
  ASSERT_TRUE(result.ok()) << result.status();
  auto logits = [&](const Graph& g) {
    auto executor = runtime::Executor::Create(g, kernels::cpu::CreateCpuBackend(1));
    return executor->Run(batches(0)->feeds)->at(0);
  };
  const Tensor s = logits(student), t = logits(teacher);
  const double expected = train::SoftenedKlDivergence(s, t, 2)->loss +
                          0.3 * train::SoftmaxCrossEntropy(s, batches(0)->labels)->loss;
  ASSERT_EQ(result->curves.size(), 1u);
  EXPECT_NEAR(result->curves[0].losses[0], expected, 1e-5 * expected);
}

TEST(DistillTest, FeatureLossIsMseOptionallyRelativeToTheTeacher) {
  // Equal widths: no projection, the loss is the plain MSE of the values.
  const Graph teacher = Mlp(6, "t.", 10);
  const Graph student = Mlp(6, "s.", 20);
  const DistillBatchSource batches = RandomBatches({8, 8}, false);
  auto value = [&](const Graph& g, const std::string& name) {
    Graph copy = g;
    copy.outputs = {{name, DataType::kFloat32, std::nullopt}};
    auto executor = runtime::Executor::Create(copy, kernels::cpu::CreateCpuBackend(1));
    return executor->Run(batches(0)->feeds)->at(0);
  };
  const Tensor t = value(teacher, "t.hidden"), s = value(student, "s.hidden");
  const double mse = train::MeanSquaredError(s, t)->loss;
  double mean_square = 0;
  for (float v : t.ToFloats()) mean_square += double{v} * v / t.num_elements();
  for (bool normalize : {false, true}) {
    DistillOptions options;
    options.feature_pairs = {{"t.hidden", "s.hidden"}};
    options.features = {1, 1e-3};
    options.normalize_features = normalize;
    options.backend = kernels::cpu::CreateCpuBackend(1);
    auto result = Distill(teacher, student, batches, options);
    ASSERT_TRUE(result.ok()) << result.status();
    const double expected = normalize ? mse / mean_square : mse;
    EXPECT_NEAR(result->curves[0].losses[0], expected, 1e-5 * expected) << normalize;
    EXPECT_EQ(result->student.initializers.size(), student.initializers.size());
  }
}

TEST(DistillTest, CallbackCancels) {
  DistillOptions options;
  options.output = {10, 1e-3};
  options.backend = kernels::cpu::CreateCpuBackend(1);
  int calls = 0;
  auto result = Distill(Mlp(16, "t.", 1), Mlp(6, "s.", 2), RandomBatches({4, 8}, true), options,
                        [&](const DistillProgress& p) { return ++calls < 3 && p.stage == Stage::kOutput; });
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 3);
}

// core/hf names its derived constants (rotary tables, the causal mask)
// "squeeze.*"; the default trainable set leaves them alone.
TEST(DistillTest, DefaultTrainableSetKeepsSqueezeConstants) {
  const Graph teacher = Mlp(16, "t.", 30);
  graph::GraphBuilder b("scaled");
  b.AddInput({"x", DataType::kFloat32, std::vector<graph::Dim>{{std::nullopt, "n"}, {8, ""}}});
  b.Initializer("squeeze.table", Random({8}, 40, 1.0f));
  b.Initializer("s.fc1.weight", Random({8, 6}, 41, 0.5f));
  b.Initializer("s.fc2.weight", Random({6, 4}, 42, 0.5f));
  const std::string scaled = b.Add("Mul", {"x", "squeeze.table"});
  const std::string h = b.Add("Relu", {b.Add("MatMul", {scaled, "s.fc1.weight"})});
  b.Add("MatMul", {h, "s.fc2.weight"}, {}, "logits");
  b.AddOutput({"logits", DataType::kFloat32, std::nullopt});
  const Graph student = b.Finish();
  DistillOptions options;
  options.output = {5, 1e-2};
  options.backend = kernels::cpu::CreateCpuBackend(1);
  auto result = Distill(teacher, student, RandomBatches({8, 8}, true), options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->student.initializers.at("squeeze.table").ToFloats(),
            student.initializers.at("squeeze.table").ToFloats());
  // The ordinary weights around it did train.
  EXPECT_NE(result->student.initializers.at("s.fc1.weight").ToFloats(),
            student.initializers.at("s.fc1.weight").ToFloats());
}

}  // namespace
}  // namespace squeeze::core::distill
