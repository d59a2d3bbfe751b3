// Every differentiable operator's backward is checked against central finite
// differences of the forward kernels on small random inputs.
#include "core/train/autograd.h"

#include <cmath>
#include <random>

#include "core/kernels/cpu/cpu_backend.h"
#include "core/train/losses.h"
#include "core/train/optimizers.h"
#include "gtest/gtest.h"

namespace squeeze::core::train {
namespace {

using graph::DataType;
using graph::Node;

struct OpCase {
  Node node;
  TensorMap parameters;  // Trainable float32 inputs.
  TensorMap constants;   // Everything else the node reads.
  int64_t opset = 17;
};

Tensor Random(std::vector<int64_t> shape, std::mt19937* rng, float low = -1, float high = 1) {
  std::uniform_real_distribution<float> uniform(low, high);
  Tensor t(DataType::kFloat32, std::move(shape));
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = uniform(*rng);
  return t;
}

// Values bounded away from 0, for operators with a kink or pole there.
Tensor AwayFromZero(std::vector<int64_t> shape, std::mt19937* rng) {
  Tensor t = Random(std::move(shape), rng, 0.2f, 1.0f);
  std::bernoulli_distribution sign(0.5);
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    if (sign(*rng)) t.data<float>()[i] = -t.data<float>()[i];
  }
  return t;
}

Tensor Ints(std::vector<int64_t> shape, std::vector<int64_t> values) {
  return Tensor::FromVector(DataType::kInt64, std::move(shape), values);
}

Node MakeNode(const std::string& op, std::vector<std::string> inputs, std::vector<std::string> outputs = {"y"}) {
  Node node;
  node.name = op + "_node";
  node.op_type = op;
  node.inputs = std::move(inputs);
  node.outputs = std::move(outputs);
  return node;
}

// loss = sum over outputs of <output, weights>; checks d loss / d parameter.
void CheckGradients(const OpCase& c) {
  SCOPED_TRACE(c.node.op_type);
  graph::Graph graph;
  graph.opset_version = c.opset;
  graph.nodes = {c.node};
  std::set<std::string> trainable;
  for (const auto& [name, t] : c.parameters) {
    graph.initializers.emplace(name, t);
    trainable.insert(name);
  }
  for (const auto& [name, t] : c.constants) graph.initializers.emplace(name, t);
  for (const std::string& out : c.node.outputs) graph.outputs.push_back({out, DataType::kFloat32, std::nullopt});
  auto program = GradientProgram::Create(graph, kernels::cpu::CreateCpuBackend(1), trainable);
  ASSERT_TRUE(program.ok()) << program.status();
  auto tape = program->Forward({});
  ASSERT_TRUE(tape.ok()) << tape.status();

  std::mt19937 rng(99);
  TensorMap weights;
  for (const std::string& out : c.node.outputs) {
    weights.emplace(out, Random(tape->values.at(out).shape(), &rng));
  }
  auto loss_of = [&](const Tape& t) {
    double loss = 0;
    for (const auto& [name, w] : weights) {
      const Tensor& y = t.values.at(name);
      for (int64_t i = 0; i < y.num_elements(); ++i) loss += double{y.data<float>()[i]} * w.data<float>()[i];
    }
    return loss;
  };
  auto gradients = program->Backward(*tape, weights);
  ASSERT_TRUE(gradients.ok()) << gradients.status();

  constexpr float kStep = 1e-2f;
  for (const std::string& name : trainable) {
    const Tensor& analytic = gradients->at(name);
    const int64_t n = analytic.num_elements();
    for (int64_t i = 0; i < n; i += std::max<int64_t>(1, n / 24)) {
      Tensor& p = program->mutable_parameters().at(name);
      const float saved = p.data<float>()[i];
      p.data<float>()[i] = saved + kStep;
      const double up = loss_of(*program->Forward({}));
      p.data<float>()[i] = saved - kStep;
      const double down = loss_of(*program->Forward({}));
      p.data<float>()[i] = saved;
      const double numeric = (up - down) / (2 * kStep);
      const double got = analytic.data<float>()[i];
      EXPECT_NEAR(got, numeric, 2e-2 * std::max(1.0, std::abs(numeric)))
          << name << "[" << i << "]";
    }
  }
}

class AutogradTest : public ::testing::Test {
 protected:
  std::mt19937 rng_{1234};
};

TEST_F(AutogradTest, ElementwiseBinaryWithBroadcasting) {
  for (const char* op : {"Add", "Sub", "Mul"}) {
    CheckGradients({MakeNode(op, {"a", "b"}), {{"a", Random({2, 3}, &rng_)}, {"b", Random({3}, &rng_)}}, {}});
  }
  CheckGradients({MakeNode("Div", {"a", "b"}),
                  {{"a", Random({2, 3}, &rng_)}, {"b", AwayFromZero({2, 1}, &rng_)}}, {}});
  CheckGradients({MakeNode("Pow", {"a", "b"}),
                  {{"a", Random({4}, &rng_, 0.5f, 2.0f)}, {"b", Random({4}, &rng_, 1.0f, 3.0f)}}, {}});
}

TEST_F(AutogradTest, Activations) {
  for (const char* op : {"Relu", "Sigmoid", "Tanh", "Exp", "Erf", "Neg", "LeakyRelu", "HardSigmoid"}) {
    CheckGradients({MakeNode(op, {"x"}), {{"x", AwayFromZero({3, 4}, &rng_)}}, {}});
  }
  CheckGradients({MakeNode("HardSwish", {"x"}), {{"x", Random({3, 4}, &rng_, -2.5f, 2.5f)}}, {}});
  for (const char* op : {"Log", "Sqrt"}) {
    CheckGradients({MakeNode(op, {"x"}), {{"x", Random({5}, &rng_, 0.5f, 2.0f)}}, {}});
  }
  // Clipped and passed-through elements, none within a finite-difference step of a bound.
  CheckGradients({MakeNode("Clip", {"x", "lo", "hi"}),
                  {{"x", Tensor::FromVector(DataType::kFloat32, {6}, std::vector<float>{-0.9f, -0.3f, 0.3f, 0.9f, 0.45f, -0.45f})}},
                  {{"lo", Tensor::FromVector(DataType::kFloat32, {}, std::vector<float>{-0.6f})},
                   {"hi", Tensor::FromVector(DataType::kFloat32, {}, std::vector<float>{0.6f})}}});
}

TEST_F(AutogradTest, MatrixProducts) {
  CheckGradients({MakeNode("MatMul", {"a", "b"}), {{"a", Random({2, 3, 4}, &rng_)}, {"b", Random({4, 5}, &rng_)}}, {}});
  CheckGradients({MakeNode("MatMul", {"a", "b"}), {{"a", Random({4}, &rng_)}, {"b", Random({2, 4, 3}, &rng_)}}, {}});
  Node gemm = MakeNode("Gemm", {"a", "b", "c"});
  gemm.attributes["transA"] = int64_t{1};
  gemm.attributes["transB"] = int64_t{1};
  gemm.attributes["alpha"] = 0.5f;
  gemm.attributes["beta"] = 2.0f;
  CheckGradients({gemm, {{"a", Random({4, 3}, &rng_)}, {"b", Random({5, 4}, &rng_)}, {"c", Random({5}, &rng_)}}, {}});
}

TEST_F(AutogradTest, ConvolutionAndPooling) {
  Node conv = MakeNode("Conv", {"x", "w", "b"});
  conv.attributes["pads"] = std::vector<int64_t>{1, 1, 1, 1};
  conv.attributes["strides"] = std::vector<int64_t>{2, 1};
  conv.attributes["group"] = int64_t{2};
  CheckGradients({conv, {{"x", Random({2, 4, 5, 5}, &rng_)}, {"w", Random({6, 2, 3, 3}, &rng_)}, {"b", Random({6}, &rng_)}}, {}});

  Node max_pool = MakeNode("MaxPool", {"x"});
  max_pool.attributes["kernel_shape"] = std::vector<int64_t>{2, 2};
  max_pool.attributes["strides"] = std::vector<int64_t>{2, 2};
  CheckGradients({max_pool, {{"x", Random({1, 2, 4, 4}, &rng_)}}, {}});

  Node average = MakeNode("AveragePool", {"x"});
  average.attributes["kernel_shape"] = std::vector<int64_t>{3, 3};
  average.attributes["pads"] = std::vector<int64_t>{1, 1, 1, 1};
  CheckGradients({average, {{"x", Random({1, 2, 4, 4}, &rng_)}}, {}});
  CheckGradients({MakeNode("GlobalAveragePool", {"x"}), {{"x", Random({2, 3, 3, 2}, &rng_)}}, {}});
}

TEST_F(AutogradTest, SoftmaxAndNormalization) {
  Node softmax = MakeNode("Softmax", {"x"});
  CheckGradients({softmax, {{"x", Random({3, 5}, &rng_)}}, {}, 13});
  Node log_softmax = MakeNode("LogSoftmax", {"x"});
  log_softmax.attributes["axis"] = int64_t{1};
  CheckGradients({log_softmax, {{"x", Random({2, 3, 4}, &rng_)}}, {}, 11});

  Node layer_norm = MakeNode("LayerNormalization", {"x", "scale", "bias"});
  CheckGradients({layer_norm, {{"x", Random({3, 6}, &rng_)}, {"scale", Random({6}, &rng_)}, {"bias", Random({6}, &rng_)}}, {}});

  Node batch_norm = MakeNode("BatchNormalization", {"x", "scale", "bias", "mean", "var"});
  CheckGradients({batch_norm,
                  {{"x", Random({2, 3, 2, 2}, &rng_)}, {"scale", Random({3}, &rng_)}, {"bias", Random({3}, &rng_)}},
                  {{"mean", Random({3}, &rng_)}, {"var", Random({3}, &rng_, 0.5f, 1.5f)}}});
}

TEST_F(AutogradTest, Reductions) {
  Node mean = MakeNode("ReduceMean", {"x"});
  mean.attributes["axes"] = std::vector<int64_t>{1};
  mean.attributes["keepdims"] = int64_t{0};
  CheckGradients({mean, {{"x", Random({2, 3, 4}, &rng_)}}, {}, 13});
  CheckGradients({MakeNode("ReduceSum", {"x", "axes"}), {{"x", Random({2, 3, 4}, &rng_)}}, {{"axes", Ints({2}, {0, 2})}}, 13});
  CheckGradients({MakeNode("ReduceMax", {"x"}), {{"x", Random({3, 4}, &rng_)}}, {}, 13});
}

TEST_F(AutogradTest, DataMovement) {
  CheckGradients({MakeNode("Reshape", {"x", "shape"}), {{"x", Random({2, 6}, &rng_)}}, {{"shape", Ints({3}, {3, 2, 2})}}});
  CheckGradients({MakeNode("Flatten", {"x"}), {{"x", Random({2, 3, 2}, &rng_)}}, {}});
  Node transpose = MakeNode("Transpose", {"x"});
  transpose.attributes["perm"] = std::vector<int64_t>{2, 0, 1};
  CheckGradients({transpose, {{"x", Random({2, 3, 4}, &rng_)}}, {}});
  Node concat = MakeNode("Concat", {"a", "b"});
  concat.attributes["axis"] = int64_t{1};
  CheckGradients({concat, {{"a", Random({2, 2}, &rng_)}, {"b", Random({2, 3}, &rng_)}}, {}});
  Node split = MakeNode("Split", {"x", "sizes"}, {"y0", "y1"});
  split.attributes["axis"] = int64_t{1};
  CheckGradients({split, {{"x", Random({2, 5}, &rng_)}}, {{"sizes", Ints({2}, {2, 3})}}});
  CheckGradients({MakeNode("Slice", {"x", "starts", "ends", "axes", "steps"}), {{"x", Random({4, 6}, &rng_)}},
                  {{"starts", Ints({2}, {1, -1})}, {"ends", Ints({2}, {4, 0})}, {"axes", Ints({2}, {0, 1})},
                   {"steps", Ints({2}, {1, -2})}}});
  CheckGradients({MakeNode("Gather", {"x", "i"}), {{"x", Random({5, 3}, &rng_)}}, {{"i", Ints({2, 2}, {4, 0, 4, -1})}}});
  Tensor mask = Tensor::FromVector(DataType::kBool, {3}, std::vector<uint8_t>{1, 0, 1});
  CheckGradients({MakeNode("Where", {"c", "a", "b"}), {{"a", Random({2, 3}, &rng_)}, {"b", Random({3}, &rng_)}}, {{"c", mask}}});
  CheckGradients({MakeNode("Expand", {"x", "shape"}), {{"x", Random({3, 1}, &rng_)}}, {{"shape", Ints({2}, {3, 4})}}});
  CheckGradients({MakeNode("Unsqueeze", {"x", "axes"}), {{"x", Random({3}, &rng_)}}, {{"axes", Ints({1}, {0})}}});
}

TEST_F(AutogradTest, NonDifferentiableOperatorOnTheGradientPathIsNamed) {
  graph::Graph graph;
  graph.nodes = {MakeNode("Round", {"x"})};
  graph.initializers.emplace("x", Random({3}, &rng_));
  graph.outputs.push_back({"y", DataType::kFloat32, std::nullopt});
  auto program = GradientProgram::Create(graph, kernels::cpu::CreateCpuBackend(1));
  EXPECT_EQ(program.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(program.status().message().find("Round_node"), std::string::npos) << program.status();
}

TEST(LossTest, CrossEntropyGradientMatchesFiniteDifferences) {
  std::mt19937 rng(5);
  Tensor logits = Random({3, 4}, &rng, -2, 2);
  std::vector<int64_t> labels = {2, 0, -100};
  auto result = SoftmaxCrossEntropy(logits, labels);
  ASSERT_TRUE(result.ok());
  for (int64_t i = 0; i < logits.num_elements(); ++i) {
    Tensor up = logits, down = logits;
    up.data<float>()[i] += 1e-2f;
    down.data<float>()[i] -= 1e-2f;
    double numeric = (SoftmaxCrossEntropy(up, labels)->loss - SoftmaxCrossEntropy(down, labels)->loss) / 2e-2;
    EXPECT_NEAR(result->gradient.data<float>()[i], numeric, 1e-3) << i;
  }
  EXPECT_EQ(SoftmaxCrossEntropy(logits, {7, 0, 0}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LossTest, SoftenedKlGradientMatchesFiniteDifferences) {
  std::mt19937 rng(6);
  Tensor student = Random({2, 5}, &rng, -2, 2), teacher = Random({2, 5}, &rng, -2, 2);
  auto result = SoftenedKlDivergence(student, teacher, 2.0);
  ASSERT_TRUE(result.ok());
  EXPECT_GT(result->loss, 0);
  for (int64_t i = 0; i < student.num_elements(); ++i) {
    Tensor up = student, down = student;
    up.data<float>()[i] += 1e-2f;
    down.data<float>()[i] -= 1e-2f;
    double numeric = (SoftenedKlDivergence(up, teacher, 2.0)->loss -
                      SoftenedKlDivergence(down, teacher, 2.0)->loss) / 2e-2;
    EXPECT_NEAR(result->gradient.data<float>()[i], numeric, 1e-3) << i;
  }
  EXPECT_NEAR(SoftenedKlDivergence(teacher, teacher, 1.0)->loss, 0, 1e-9);
}

TEST(OptimizerTest, AdamWAndSgdMinimiseAQuadratic) {
  for (int which = 0; which < 2; ++which) {
    TensorMap params{{"w", Tensor::FromVector(DataType::kFloat32, {2}, std::vector<float>{3, -2})}};
    AdamW adam({0.1, 0.9, 0.999, 1e-8, 0.0});
    Sgd sgd({0.05, 0.9, 0.0});
    for (int step = 0; step < 300; ++step) {
      TensorMap grads{{"w", params.at("w")}};  // d/dw of |w|^2 / 2
      ASSERT_TRUE((which == 0 ? adam.Step(&params, grads) : sgd.Step(&params, grads)).ok());
    }
    EXPECT_NEAR(params.at("w").data<float>()[0], 0, 0.05) << which;
    EXPECT_NEAR(params.at("w").data<float>()[1], 0, 0.05) << which;
  }
}

TEST(OptimizerTest, ClipGradientNormScalesToTheLimit) {
  TensorMap grads{{"a", Tensor::FromVector(DataType::kFloat32, {2}, std::vector<float>{3, 4})}};
  EXPECT_DOUBLE_EQ(ClipGradientNorm(&grads, 1.0), 5.0);
  EXPECT_NEAR(grads.at("a").data<float>()[0], 0.6, 1e-6);
  EXPECT_NEAR(ClipGradientNorm(&grads, 10.0), 1.0, 1e-6);
  TensorMap bad{{"nope", grads.at("a")}};
  TensorMap params;
  EXPECT_EQ(Sgd({}).Step(&params, bad).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace squeeze::core::train
