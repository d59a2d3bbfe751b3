// FastGemm against a float64 reference on odd shapes, and the CPU backend's
// Gemm / MatMul / Conv (which use it where the CPU has AVX2+FMA) against
// naive loops: transposes, alpha/beta, every C broadcast, batch 1, and the
// 2x2 MaxPool path.
#include "core/kernels/cpu/fast_gemm.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <random>
#include <vector>

#include "core/kernels/cpu/cpu_backend.h"
#include "gtest/gtest.h"

namespace squeeze::core::kernels::cpu {
namespace {

using graph::DataType;
using graph::Tensor;

std::vector<float> RandomFloats(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> values(count);
  for (float& v : values) v = dist(rng);
  return values;
}

Tensor RandomTensor(std::vector<int64_t> shape, uint32_t seed) {
  Tensor t(DataType::kFloat32, shape);
  const std::vector<float> values = RandomFloats(t.num_elements(), seed);
  std::copy(values.begin(), values.end(), t.data<float>());
  return t;
}

// |got - want| <= 1e-5 * (1 + sum |terms|) elementwise.
void ExpectNear(const std::vector<float>& got, const std::vector<double>& want,
                const std::vector<double>& scale, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], 1e-5 * (1.0 + scale[i])) << what << " element " << i;
  }
}

using GemmFunction = void (*)(bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                              const float*, int64_t, float*, int64_t);

void CheckOddShapes(GemmFunction gemm) {
  const std::vector<int64_t> sizes = {1, 3, 6, 7, 16, 17, 33, 65};
  uint32_t seed = 1;
  for (bool trans_b : {false, true}) {
    for (int64_t m : sizes) {
      for (int64_t n : sizes) {
        // k = 800 takes several k blocks (accumulating into C).
        for (int64_t k : {int64_t{1}, int64_t{3}, int64_t{9}, int64_t{17}, int64_t{300}, int64_t{800}}) {
          // Padded leading dimensions check the strides.
          const int64_t lda = k + 2, ldb = (trans_b ? k : n) + 3, ldc = n + 1;
          const std::vector<float> a = RandomFloats(m * lda, seed++);
          const std::vector<float> b = RandomFloats((trans_b ? n : k) * ldb, seed++);
          std::vector<float> c(m * ldc, 7.0f);
          const float alpha = k == 3 ? 0.5f : 1.0f;
          gemm(trans_b, m, n, k, alpha, a.data(), lda, b.data(), ldb, c.data(), ldc);
          std::vector<float> got;
          std::vector<double> want, scale;
          for (int64_t i = 0; i < m; ++i) {
            for (int64_t j = 0; j < n; ++j) {
              double sum = 0, abs_sum = 0;
              for (int64_t p = 0; p < k; ++p) {
                const double term =
                    double{a[i * lda + p]} * (trans_b ? b[j * ldb + p] : b[p * ldb + j]);
                sum += term;
                abs_sum += std::abs(term);
              }
              got.push_back(c[i * ldc + j]);
              want.push_back(alpha * sum);
              scale.push_back(abs_sum);
            }
            // The padding column of C is untouched.
            ASSERT_EQ(c[i * ldc + n], 7.0f);
          }
          ExpectNear(got, want, scale,
                     "m=" + std::to_string(m) + " n=" + std::to_string(n) +
                         " k=" + std::to_string(k) + " trans_b=" + std::to_string(trans_b));
        }
      }
    }
  }
}

TEST(FastGemmTest, Avx2MatchesReferenceOnOddShapes) {
  if (!internal::CpuRunsAvx2()) GTEST_SKIP() << "no AVX2+FMA";
  CheckOddShapes(internal::FastGemmAvx2);
}

TEST(FastGemmTest, Avx512MatchesReferenceOnOddShapes) {
  if (!internal::CpuRunsAvx512()) GTEST_SKIP() << "no AVX-512F";
  CheckOddShapes(internal::FastGemmAvx512);
}

TEST(FastGemmTest, ZeroInnerSizeGivesZeros) {
  if (!internal::CpuRunsAvx2()) GTEST_SKIP() << "no AVX2+FMA";
  for (GemmFunction gemm : {internal::FastGemmAvx2, internal::FastGemmAvx512}) {
    if (gemm == internal::FastGemmAvx512 && !internal::CpuRunsAvx512()) continue;
    std::vector<float> c(6, 5.0f);
    gemm(false, 2, 3, 0, 1.0f, nullptr, 0, nullptr, 3, c.data(), 3);
    EXPECT_EQ(c, std::vector<float>(6, 0.0f));
  }
}

absl::StatusOr<std::vector<Tensor>> RunNode(const graph::Node& node,
                                            const std::vector<const Tensor*>& inputs,
                                            int threads) {
  return CreateCpuBackend(threads)->Run(runtime::KernelCall{node, 17, inputs});
}

// The epilogue (bias per row, Relu) gives the bits of adding and clipping
// after the GEMM, on every k-block count, edge tile and layout.
TEST(FastGemmTest, EpilogueMatchesAPassAfterTheGemm) {
  if (!FastGemmAvailable()) GTEST_SKIP() << "no AVX2";
  uint32_t seed = 100;
  for (bool trans_b : {false, true}) {
    for (int64_t m : {1, 7, 9, 17}) {
      for (int64_t n : {5, 16, 33, 70}) {
        for (int64_t k : {3, 288, 800}) {
          const std::vector<float> a = RandomFloats(m * k, seed++), b = RandomFloats(k * n, seed++);
          const std::vector<float> bias = RandomFloats(m, seed++);
          for (bool relu : {false, true}) {
            for (bool with_bias : {false, true}) {
              std::vector<float> plain(m * n), fused(m * n);
              const int64_t ldb = trans_b ? k : n;
              FastGemm(trans_b, m, n, k, 1.0f, a.data(), k, b.data(), ldb, plain.data(), n);
              for (int64_t i = 0; i < m; ++i) {
                for (int64_t j = 0; j < n; ++j) {
                  float& v = plain[i * n + j];
                  if (with_bias) v += bias[i];
                  if (relu) v = std::max(0.0f, v);
                }
              }
              GemmEpilogue epilogue;
              epilogue.row_bias = with_bias ? bias.data() : nullptr;
              epilogue.relu = relu;
              FastGemm(trans_b, m, n, k, 1.0f, a.data(), k, b.data(), ldb, fused.data(), n, epilogue);
              ASSERT_EQ(plain, fused) << "m " << m << " n " << n << " k " << k << " relu " << relu
                                      << " bias " << with_bias << " trans_b " << trans_b;
            }
          }
        }
      }
    }
  }
}

TEST(FastGemmTest, GemmNodeMatchesNaiveLoops) {
  uint32_t seed = 100;
  for (int64_t rows : {1, 3, 8, 65}) {
    for (int64_t cols : {1, 10, 17, 130}) {
      for (int64_t inner : {1, 17, 784}) {
        for (int trans = 0; trans < 4; ++trans) {
          const bool trans_a = trans & 1, trans_b = trans & 2;
          const float alpha = trans == 3 ? 0.25f : 1.0f, beta = trans == 1 ? 2.0f : 1.0f;
          graph::Node gemm{"gemm", "Gemm", "", {"a", "b", "c"}, {"y"}, {}};
          gemm.attributes["transA"] = int64_t{trans_a};
          gemm.attributes["transB"] = int64_t{trans_b};
          gemm.attributes["alpha"] = alpha;
          gemm.attributes["beta"] = beta;
          const Tensor a = RandomTensor(trans_a ? std::vector<int64_t>{inner, rows}
                                                : std::vector<int64_t>{rows, inner}, seed++);
          const Tensor b = RandomTensor(trans_b ? std::vector<int64_t>{cols, inner}
                                                : std::vector<int64_t>{inner, cols}, seed++);
          // C as a row, a column, a matrix and a scalar in turn.
          const std::vector<std::vector<int64_t>> c_shapes = {{cols}, {rows, 1}, {rows, cols}, {}};
          const Tensor c = RandomTensor(c_shapes[(rows + cols + inner + trans) % 4], seed++);
          for (int threads : {1, 2}) {
            auto result = RunNode(gemm, {&a, &b, &c}, threads);
            ASSERT_TRUE(result.ok()) << result.status();
            const std::vector<float> got = (*result)[0].ToFloats();
            std::vector<double> want, scale;
            const float* ad = a.data<float>();
            const float* bd = b.data<float>();
            const float* cd = c.data<float>();
            for (int64_t i = 0; i < rows; ++i) {
              for (int64_t j = 0; j < cols; ++j) {
                double sum = 0, abs_sum = 0;
                for (int64_t p = 0; p < inner; ++p) {
                  const double term = double{trans_a ? ad[p * rows + i] : ad[i * inner + p]} *
                                      (trans_b ? bd[j * inner + p] : bd[p * cols + j]);
                  sum += term;
                  abs_sum += std::abs(term);
                }
                int64_t ci = 0;
                if (c.rank() == 1) ci = j;
                if (c.rank() == 2) ci = c.shape()[1] == 1 ? i : i * cols + j;
                want.push_back(alpha * sum + beta * cd[ci]);
                scale.push_back(abs_sum + 2.0);
              }
            }
            ExpectNear(got, want, scale,
                       "Gemm rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
                           " inner=" + std::to_string(inner) + " trans=" +
                           std::to_string(trans) + " threads=" + std::to_string(threads));
          }
        }
      }
    }
  }
}

TEST(FastGemmTest, BatchedMatMulMatchesNaiveLoops) {
  graph::Node matmul{"mm", "MatMul", "", {"a", "b"}, {"y"}, {}};
  const Tensor a = RandomTensor({2, 17, 65}, 7), b = RandomTensor({65, 3}, 8);
  auto mm = RunNode(matmul, {&a, &b}, 2);
  ASSERT_TRUE(mm.ok()) << mm.status();
  std::vector<double> want, scale;
  for (int64_t i = 0; i < 2 * 17; ++i) {
    for (int64_t j = 0; j < 3; ++j) {
      double sum = 0, abs_sum = 0;
      for (int64_t p = 0; p < 65; ++p) {
        const double term = double{a.data<float>()[i * 65 + p]} * b.data<float>()[p * 3 + j];
        sum += term;
        abs_sum += std::abs(term);
      }
      want.push_back(sum);
      scale.push_back(abs_sum);
    }
  }
  ExpectNear((*mm)[0].ToFloats(), want, scale, "MatMul");

}

// Conv through im2col (including its same-width stride-1 copy path, with
// symmetric and one-sided pads and tiles that start mid-row) against loops.
TEST(FastGemmTest, ConvMatchesNaiveLoops) {
  struct Case {
    int64_t kernel;
    std::vector<int64_t> pads;  // top, left, bottom, right
    int64_t stride;
  };
  const std::vector<Case> cases = {{3, {1, 1, 1, 1}, 1}, {5, {2, 2, 2, 2}, 1}, {3, {0, 0, 2, 2}, 1},
                                   {3, {2, 2, 0, 0}, 1}, {3, {0, 1, 2, 1}, 1}, {1, {0, 0, 0, 0}, 1},
                                   {3, {1, 1, 1, 1}, 2}, {3, {0, 0, 0, 0}, 1}};
  uint32_t seed = 200;
  for (const Case& cs : cases) {
    for (int64_t batch : {1, 3}) {
      const int64_t channels = 3, out_channels = 17, in_h = 7, in_w = 9, k = cs.kernel;
      graph::Node conv{"conv", "Conv", "", {"x", "w", "b"}, {"y"}, {}};
      conv.attributes["pads"] = cs.pads;
      conv.attributes["strides"] = std::vector<int64_t>{cs.stride, cs.stride};
      const Tensor x = RandomTensor({batch, channels, in_h, in_w}, seed++);
      const Tensor w = RandomTensor({out_channels, channels, k, k}, seed++);
      const Tensor bias = RandomTensor({out_channels}, seed++);
      const int64_t out_h = (in_h + cs.pads[0] + cs.pads[2] - k) / cs.stride + 1;
      const int64_t out_w = (in_w + cs.pads[1] + cs.pads[3] - k) / cs.stride + 1;
      std::vector<double> want, scale;
      for (int64_t n = 0; n < batch; ++n) {
        for (int64_t o = 0; o < out_channels; ++o) {
          for (int64_t r = 0; r < out_h; ++r) {
            for (int64_t s = 0; s < out_w; ++s) {
              double sum = bias.data<float>()[o], abs_sum = 1;
              for (int64_t ch = 0; ch < channels; ++ch) {
                for (int64_t kh = 0; kh < k; ++kh) {
                  for (int64_t kw = 0; kw < k; ++kw) {
                    const int64_t ih = r * cs.stride + kh - cs.pads[0];
                    const int64_t iw = s * cs.stride + kw - cs.pads[1];
                    if (ih < 0 || ih >= in_h || iw < 0 || iw >= in_w) continue;
                    const double term =
                        double{x.data<float>()[((n * channels + ch) * in_h + ih) * in_w + iw]} *
                        w.data<float>()[((o * channels + ch) * k + kh) * k + kw];
                    sum += term;
                    abs_sum += std::abs(term);
                  }
                }
              }
              want.push_back(sum);
              scale.push_back(abs_sum);
            }
          }
        }
      }
      for (int threads : {1, 2, 5}) {
        auto y = RunNode(conv, {&x, &w, &bias}, threads);
        ASSERT_TRUE(y.ok()) << y.status();
        EXPECT_EQ((*y)[0].shape(), (std::vector<int64_t>{batch, out_channels, out_h, out_w}));
        ExpectNear((*y)[0].ToFloats(), want, scale,
                   "Conv kernel " + std::to_string(k) + " case " +
                       std::to_string(seed) + " threads " + std::to_string(threads));
      }
    }
  }
}

TEST(FastGemmTest, MaxPoolTwoByTwoMatchesNaiveLoops) {
  graph::Node pool{"pool", "MaxPool", "", {"x"}, {"y"}, {}};
  pool.attributes["kernel_shape"] = std::vector<int64_t>{2, 2};
  pool.attributes["strides"] = std::vector<int64_t>{2, 2};
  const Tensor x = RandomTensor({2, 3, 7, 9}, 300);  // odd sizes: last row/column unused
  auto y = RunNode(pool, {&x}, 2);
  ASSERT_TRUE(y.ok()) << y.status();
  ASSERT_EQ((*y)[0].shape(), (std::vector<int64_t>{2, 3, 3, 4}));
  const std::vector<float> got = (*y)[0].ToFloats();
  size_t index = 0;
  for (int64_t plane = 0; plane < 6; ++plane) {
    for (int64_t r = 0; r < 3; ++r) {
      for (int64_t s = 0; s < 4; ++s, ++index) {
        const float* in = x.data<float>() + plane * 63;
        const float want = std::max(std::max(in[2 * r * 9 + 2 * s], in[2 * r * 9 + 2 * s + 1]),
                                    std::max(in[(2 * r + 1) * 9 + 2 * s],
                                             in[(2 * r + 1) * 9 + 2 * s + 1]));
        EXPECT_EQ(got[index], want) << index;
      }
    }
  }
}

}  // namespace
}  // namespace squeeze::core::kernels::cpu
