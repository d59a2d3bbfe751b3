// Parity of the CUDA backend with the CPU backend, operator by operator.
// Runs only where a CUDA device is present; skips itself elsewhere.
#include "core/kernels/cuda/cuda_backend.h"

#include <random>

#include "core/kernels/backends.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "gtest/gtest.h"

namespace squeeze::core::kernels::cuda {
namespace {

using graph::DataType;
using graph::Node;
using graph::Tensor;

// |gpu - cpu| <= kAbsolute + kRelative * |cpu| for every element.
constexpr float kAbsolute = 1e-5f;
constexpr float kRelative = 1e-4f;

Tensor Random(std::vector<int64_t> shape, std::mt19937* rng, float low = -1, float high = 1) {
  std::uniform_real_distribution<float> uniform(low, high);
  Tensor t(DataType::kFloat32, std::move(shape));
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = uniform(*rng);
  return t;
}

class CudaParityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
    auto backend = CreateBackend("cuda");
    ASSERT_TRUE(backend.ok()) << backend.status();
    cuda_ = *backend;
    cpu_ = cpu::CreateCpuBackend(1);
  }

  void ExpectParity(const Node& node, const std::vector<Tensor>& inputs, int64_t opset = 17) {
    SCOPED_TRACE(node.op_type);
    runtime::KernelCall call{node, opset, {}};
    for (const Tensor& t : inputs) call.inputs.push_back(&t);
    auto expected = cpu_->Run(call);
    auto actual = cuda_->Run(call);
    ASSERT_TRUE(expected.ok()) << expected.status();
    ASSERT_TRUE(actual.ok()) << actual.status();
    ASSERT_EQ((*actual)[0].shape(), (*expected)[0].shape());
    const float* e = (*expected)[0].data<float>();
    const float* a = (*actual)[0].data<float>();
    for (int64_t i = 0; i < (*expected)[0].num_elements(); ++i) {
      ASSERT_NEAR(a[i], e[i], kAbsolute + kRelative * std::abs(e[i])) << "element " << i;
    }
  }

  static Node MakeNode(const std::string& op, size_t inputs) {
    Node node;
    node.name = op;
    node.op_type = op;
    for (size_t i = 0; i < inputs; ++i) node.inputs.push_back("in" + std::to_string(i));
    node.outputs = {"y"};
    return node;
  }

  std::shared_ptr<const runtime::KernelBackend> cuda_, cpu_;
  std::mt19937 rng_{3};
};

TEST_F(CudaParityTest, Elementwise) {
  for (const char* op : {"Add", "Sub", "Mul", "Div"}) {
    ExpectParity(MakeNode(op, 2), {Random({4, 3, 5}, &rng_), Random({3, 1}, &rng_, 0.5f, 2.0f)});
  }
  ExpectParity(MakeNode("Pow", 2), {Random({64}, &rng_, 0.1f, 2.0f), Random({64}, &rng_, -2.0f, 2.0f)});
  for (const char* op : {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Exp", "Erf", "Neg"}) {
    ExpectParity(MakeNode(op, 1), {Random({1000}, &rng_, -3.0f, 3.0f)});
  }
  for (const char* op : {"Log", "Sqrt"}) ExpectParity(MakeNode(op, 1), {Random({1000}, &rng_, 0.1f, 5.0f)});
}

TEST_F(CudaParityTest, MatrixProducts) {
  ExpectParity(MakeNode("MatMul", 2), {Random({3, 17, 33}, &rng_), Random({33, 9}, &rng_)});
  ExpectParity(MakeNode("MatMul", 2), {Random({2, 1, 8, 16}, &rng_), Random({3, 16, 4}, &rng_)});
  ExpectParity(MakeNode("MatMul", 2), {Random({16}, &rng_), Random({16, 5}, &rng_)});
  for (int trans = 0; trans < 4; ++trans) {
    Node gemm = MakeNode("Gemm", 3);
    gemm.attributes["transA"] = int64_t{trans & 1};
    gemm.attributes["transB"] = int64_t{trans >> 1};
    gemm.attributes["alpha"] = 0.7f;
    gemm.attributes["beta"] = 1.3f;
    Tensor a = (trans & 1) ? Random({12, 7}, &rng_) : Random({7, 12}, &rng_);
    Tensor b = (trans >> 1) ? Random({5, 12}, &rng_) : Random({12, 5}, &rng_);
    ExpectParity(gemm, {a, b, Random({5}, &rng_)});
  }
}

TEST_F(CudaParityTest, SoftmaxAndLayerNorm) {
  Node softmax = MakeNode("Softmax", 1);
  softmax.attributes["axis"] = int64_t{1};
  ExpectParity(softmax, {Random({4, 10, 3}, &rng_, -5.0f, 5.0f)});
  ExpectParity(MakeNode("LogSoftmax", 1), {Random({4, 100}, &rng_, -5.0f, 5.0f)});
  ExpectParity(MakeNode("LayerNormalization", 3),
               {Random({6, 300}, &rng_), Random({300}, &rng_), Random({300}, &rng_)});
}

TEST_F(CudaParityTest, OtherOperatorsRunOnTheCpuThroughTheSameBackend) {
  Node transpose = MakeNode("Transpose", 1);
  ExpectParity(transpose, {Random({3, 4}, &rng_)});
}

}  // namespace
}  // namespace squeeze::core::kernels::cuda
