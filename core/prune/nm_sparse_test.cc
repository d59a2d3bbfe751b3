#include "core/prune/nm_sparse.h"

#include <cmath>
#include <random>

#include "core/graph/builder.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/prune/unstructured.h"
#include "core/runtime/executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::prune {
namespace {

using graph::DataType;
using graph::Graph;
using graph::Tensor;
using ::testing::HasSubstr;

// Random [out, in] weights with exactly n non-zeros per group of m (n_min
// for the first group of each row, to cover padded groups).
std::vector<float> RandomNm(int64_t out, int64_t in, int n, int m, std::mt19937* rng, int n_first = -1) {
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> w(out * in, 0.0f);
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t g = 0; g < in / m; ++g) {
      std::vector<int> positions(m);
      for (int j = 0; j < m; ++j) positions[j] = j;
      std::shuffle(positions.begin(), positions.end(), *rng);
      const int keep = (g == 0 && n_first >= 0) ? n_first : n;
      for (int k = 0; k < keep; ++k) w[o * in + g * m + positions[k]] = normal(*rng) + 0.01f;
    }
  }
  return w;
}

std::vector<float> DenseProduct(const std::vector<float>& x, int64_t rows, const std::vector<float>& w, int64_t out,
                                int64_t in, const std::vector<float>& bias) {
  std::vector<float> y(rows * out);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double sum = bias.empty() ? 0.0 : bias[o];
      for (int64_t c = 0; c < in; ++c) sum += double{x[r * in + c]} * w[o * in + c];
      y[r * out + o] = static_cast<float>(sum);
    }
  }
  return y;
}

TEST(NmSparseTest, TwoFourLayoutIsValuesPlusTwoBitIndices) {
  // Row 0: groups [0 a 0 b] [c 0 d 0]; row 1: [e 0 0 0] (padded) [0 0 f g].
  const std::vector<float> dense = {0, 1, 0, 2, 3, 0, 4, 0,  //
                                    5, 0, 0, 0, 0, 0, 6, 7};
  auto w = CompressNm(dense, 2, 8, 2, 4, "fc");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->kept_per_row(), 4);
  EXPECT_EQ(w->row_index_bytes, 1);
  EXPECT_EQ(w->values, (std::vector<float>{1, 2, 3, 4, 5, 0, 6, 7}));
  // Indices LSB first: row 0: 1, 3, 0, 2 -> 0b10'00'11'01; row 1: 0, 1, 2, 3.
  EXPECT_EQ(w->indices, (std::vector<uint8_t>{0b10001101, 0b11100100}));
  EXPECT_EQ(DecompressNm(*w), dense);
}

TEST(NmSparseTest, RoundTripsAndMatchesDenseProduct) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0, 1);
  for (auto [n, m] : {std::pair{2, 4}, std::pair{1, 4}, std::pair{4, 8}, std::pair{3, 8}}) {
    const int64_t out = 23, in = 64;  // odd: the paired-output loop has a last row
    const std::vector<float> dense = RandomNm(out, in, n, m, &rng, n - 1);
    ASSERT_TRUE(HasNmPattern(dense, out, in, n, m));
    auto w = CompressNm(dense, out, in, n, m, "fc");
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_EQ(w->row_index_bytes, (in / m * n * NmIndexBits(m) + 7) / 8);
    EXPECT_EQ(DecompressNm(*w), dense) << n << ":" << m;
    std::vector<float> bias(out);
    for (float& b : bias) b = normal(rng);
    for (int64_t rows : {1, 3, 4, 5, 16, 35, 64}) {
      std::vector<float> x(rows * in);
      for (float& v : x) v = normal(rng);
      const std::vector<float> expected = DenseProduct(x, rows, dense, out, in, bias);
      std::vector<float> ref(rows * out), fast(rows * out);
      NmSparseMatMulRef(x.data(), rows, ViewOf(*w), bias.data(), ref.data());
      NmSparseMatMul(x.data(), rows, ViewOf(*w), bias.data(), fast.data());
      for (int64_t i = 0; i < rows * out; ++i) {
        ASSERT_NEAR(ref[i], expected[i], 1e-4) << n << ":" << m << " rows " << rows;
        ASSERT_NEAR(fast[i], expected[i], 1e-4) << n << ":" << m << " rows " << rows;
      }
    }
  }
}

TEST(NmSparseTest, RejectsBadPatterns) {
  EXPECT_THAT(ValidateNmPattern(4, 4, 8, "fc").message(), HasSubstr("got 4:4"));
  EXPECT_THAT(ValidateNmPattern(0, 4, 8, "fc").message(), HasSubstr("got 0:4"));
  auto status = ValidateNmPattern(2, 4, 10, "fc1");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("layer fc1 has in = 10"));
  auto dense = CompressNm({1, 1, 1, 0}, 1, 4, 2, 4, "fc2");
  ASSERT_FALSE(dense.ok());
  EXPECT_THAT(dense.status().message(), HasSubstr("fc2 row 0 group 0 has 3 non-zeros"));
}

// x [N, 16] -> Gemm(transB, bias) [24] -> Relu -> MatMul(Transpose(W)) [8].
Graph LinearModel(std::mt19937* rng) {
  std::normal_distribution<float> normal(0, 0.5f);
  auto random = [&](std::vector<int64_t> shape) {
    Tensor t(DataType::kFloat32, std::move(shape));
    for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = normal(*rng);
    return t;
  };
  graph::GraphBuilder b("linear");
  std::string x = b.Add("Gemm", {"x", b.Initializer("fc1.weight", random({24, 16})), b.Initializer("fc1.bias", random({24}))},
                        {{"transB", int64_t{1}}});
  x = b.Add("Relu", {x});
  x = b.Add("MatMul", {x, b.Add("Transpose", {b.Initializer("fc2.weight", random({8, 24}))},
                                {{"perm", std::vector<int64_t>{1, 0}}})},
            {}, "y");
  b.AddInput({"x", DataType::kFloat32, std::nullopt});
  b.AddOutput({"y", DataType::kFloat32, std::nullopt});
  return b.Finish();
}

TEST(NmSparseTest, RuntimePassRunsTheCompressedLayersWithTheDenseResult) {
  std::mt19937 rng(5);
  const Graph dense = LinearModel(&rng);
  PruneOptions options;
  options.nm_n = 2;
  options.nm_m = 4;
  auto pruned = PruneGraph(dense, {}, options);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  Graph sparse = pruned->graph;
  auto rewritten = UseNmSparseKernels(&sparse, 2, 4);
  ASSERT_TRUE(rewritten.ok()) << rewritten.status();
  EXPECT_EQ(rewritten->size(), 2u);
  int sparse_nodes = 0;
  for (const auto& node : sparse.nodes) {
    EXPECT_NE(node.op_type, "Transpose");
    sparse_nodes += node.op_type == kNmSparseMatMulOp;
  }
  EXPECT_EQ(sparse_nodes, 2);
  EXPECT_EQ(sparse.initializers.count("fc1.weight"), 0u);
  // The plain CPU backend does not know the op; the wrapped one does.
  EXPECT_FALSE(runtime::Executor::Create(sparse, kernels::cpu::CreateCpuBackend(1)).ok());
  auto reference = runtime::Executor::Create(pruned->graph, kernels::cpu::CreateCpuBackend(1));
  auto compressed = runtime::Executor::Create(sparse, CreateNmSparseBackend(kernels::cpu::CreateCpuBackend(1)));
  ASSERT_TRUE(reference.ok() && compressed.ok()) << compressed.status();
  std::normal_distribution<float> normal(0, 1);
  for (int64_t batch : {1, 7, 33}) {
    Tensor x(DataType::kFloat32, {batch, 16});
    for (int64_t i = 0; i < x.num_elements(); ++i) x.data<float>()[i] = normal(rng);
    auto expected = reference->Run({{"x", x}});
    auto actual = compressed->Run({{"x", x}});
    ASSERT_TRUE(expected.ok() && actual.ok()) << actual.status();
    const std::vector<float> e = expected->at(0).ToFloats(), a = actual->at(0).ToFloats();
    ASSERT_EQ(actual->at(0).shape(), expected->at(0).shape());
    for (size_t i = 0; i < e.size(); ++i) ASSERT_NEAR(a[i], e[i], 1e-5) << batch;
  }
}

TEST(NmSparseTest, RuntimePassLeavesDenseWeightsAlone) {
  std::mt19937 rng(6);
  Graph graph = LinearModel(&rng);
  auto rewritten = UseNmSparseKernels(&graph, 2, 4);
  ASSERT_TRUE(rewritten.ok()) << rewritten.status();
  EXPECT_TRUE(rewritten->empty());
  EXPECT_EQ(UseNmSparseKernels(&graph, 4, 4).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace squeeze::core::prune
