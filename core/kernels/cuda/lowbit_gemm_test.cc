// Parity of the low-bit and N:M sparse CUDA GEMMs with their CPU oracles
// (Int8MatMulInt32Ref, Int4GemmRef / DequantizeRtn, LutGemmRef,
// NmSparseMatMulRef) on random shapes, odd sizes included. Each parity test
// runs twice: on the device (skipped where there is none) and with the
// kernels' block code emulated on the host (Target::kHostEmulation), which
// runs everywhere. The argument checks run everywhere too.
#include "core/kernels/cuda/lowbit_gemm.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/kernels/cuda/cuda_backend.h"
#include "core/quant/gemm/int4_gemm.h"
#include "core/quant/gemm/int8_gemm.h"
#include "core/quant/gemm/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::kernels::cuda {
namespace {

using quant::gemm::RandomFloats;
using quant::gemm::ReassociationTolerance;
using ::testing::HasSubstr;

// got [m, n] against want [m, n] for x [m, k] and dense weights w [n, k]:
// equal up to the float reassociation bound of the CPU kernels' headers.
void ExpectWithinReassociationBound(const std::vector<float>& x, const std::vector<float>& w,
                                    int64_t m, int64_t n, int64_t k,
                                    const std::vector<float>& want, const std::vector<float>& got) {
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double sum_abs = 0.0;
      for (int64_t kk = 0; kk < k; ++kk) sum_abs += std::fabs(double{x[r * k + kk]} * w[c * k + kk]);
      const float expected = want[r * n + c];
      ASSERT_NEAR(got[r * n + c], expected, ReassociationTolerance(k, sum_abs, expected))
          << "row " << r << " col " << c;
    }
  }
}

class CudaLowBitGemmTest : public ::testing::TestWithParam<Target> {
 protected:
  void SetUp() override {
    if (target_ == Target::kDevice && CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
  const Target target_ = GetParam();
  std::mt19937 rng_{11};
};

TEST_P(CudaLowBitGemmTest, Int8EqualsReferenceBitForBit) {
  // Odd k takes the byte-wise loads, k % 4 == 0 the word loads.
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {3, 5, 7}, {17, 33, 65},
                         {64, 64, 64}, {65, 63, 130}, {100, 37, 259}, {2, 130, 1027},
                         {129, 200, 512}, {5, 3, 4100}}) {
    SCOPED_TRACE(testing::Message() << m << "x" << n << "x" << k);
    std::uniform_int_distribution<int> u8(0, 255), s8(-127, 127);
    std::vector<uint8_t> xq(m * k);
    std::vector<int8_t> wq(n * k);
    for (uint8_t& v : xq) v = static_cast<uint8_t>(u8(rng_));
    for (int8_t& v : wq) v = static_cast<int8_t>(s8(rng_));
    std::vector<int32_t> want(m * n), got(m * n, -1);
    ASSERT_TRUE(quant::gemm::Int8MatMulInt32Ref(xq.data(), wq.data(), m, n, k, want.data()).ok());
    ASSERT_TRUE(CudaInt8MatMulInt32(xq.data(), wq.data(), m, n, k, got.data(), target_).ok());
    EXPECT_EQ(got, want);
  }
}

TEST_P(CudaLowBitGemmTest, Int8LargestSumsAtTheDepthLimit) {
  const int64_t m = 2, n = 3, k = quant::gemm::kMaxInt8GemmDepth;
  std::vector<uint8_t> xq(m * k, 255);
  std::vector<int8_t> wq(n * k, 127);
  for (int64_t kk = 0; kk < k; ++kk) wq[k + kk] = -127;  // row 1: the most negative sum
  std::vector<int32_t> got(m * n);
  ASSERT_TRUE(CudaInt8MatMulInt32(xq.data(), wq.data(), m, n, k, got.data(), target_).ok());
  for (int64_t r = 0; r < m; ++r) {
    EXPECT_EQ(got[r * n + 0], 255 * 127 * k);
    EXPECT_EQ(got[r * n + 1], -255 * 127 * k);
    EXPECT_EQ(got[r * n + 2], 255 * 127 * k);
  }
}

quant::QuantizedLinear RandomNibbleLayer(int64_t out, int64_t in, const quant::RtnOptions& options,
                                         uint32_t seed) {
  model::LinearLayer layer{"fc", in, out, RandomFloats(out * in, seed, 0.3f), RandomFloats(out, seed + 1)};
  // Skewed groups put the asymmetric zero points far from 8; row 0 all zero
  // (scale 0) checks that the output is the bias there.
  for (float& w : layer.weight) w = std::fabs(w) * (seed % 2 == 0 ? 1.0f : -0.5f) + 0.01f;
  std::fill(layer.weight.begin(), layer.weight.begin() + in, 0.0f);
  absl::StatusOr<quant::QuantizedLinear> q = quant::QuantizeRtnRef(layer, options);
  EXPECT_TRUE(q.ok()) << q.status();
  return *q;
}

TEST_P(CudaLowBitGemmTest, NibbleGemmMatchesCpuWithinReassociationBound) {
  for (auto [m, n, k, group] : {std::tuple<int64_t, int64_t, int64_t, int>{1, 1, 8, 8}, {7, 33, 37, 0},
                                {13, 17, 96, 32}, {65, 70, 128, 16}, {300, 5, 64, 0},
                                {128, 129, 192, 64}, {3, 64, 1001, 0}}) {
    for (int bits : {4, 3, 2}) {
      for (bool asymmetric : {false, true}) {
        SCOPED_TRACE(testing::Message() << m << "x" << n << "x" << k << " g" << group << " int" << bits
                                        << (asymmetric ? " asym" : " sym"));
        const quant::QuantizedLinear q = RandomNibbleLayer(
            n, k, quant::RtnOptions{bits, group, asymmetric}, static_cast<uint32_t>(n + k + bits + asymmetric));
        const std::vector<float> x = RandomFloats(m * k, static_cast<uint32_t>(m + 5));
        std::vector<float> w(n * k), want(m * n), got(m * n, NAN);
        ASSERT_TRUE(quant::DequantizeRtn(q, w.data()).ok());
        if (bits == 4) {
          ASSERT_TRUE(quant::gemm::Int4GemmRef(x.data(), m, q, want.data()).ok());
        } else {  // Int4GemmRef's arithmetic on DequantizeRtn's weights
          for (int64_t r = 0; r < m; ++r) {
            for (int64_t c = 0; c < n; ++c) {
              float sum = 0.0f;
              for (int64_t kk = 0; kk < k; ++kk) sum += x[r * k + kk] * w[c * k + kk];
              want[r * n + c] = sum + q.bias[c];
            }
          }
        }
        ASSERT_TRUE(CudaNibbleGemm(x.data(), m, q, got.data(), target_).ok());
        ExpectWithinReassociationBound(x, w, m, n, k, want, got);
        for (int64_t r = 0; r < m; ++r) EXPECT_EQ(got[r * n], q.bias[0]);
      }
    }
  }
}

TEST_P(CudaLowBitGemmTest, LutGemmMatchesLutGemmRef) {
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {5, 7, 13}, {33, 65, 67},
                         {64, 64, 64}, {130, 3, 200}, {2, 100, 515}}) {
    for (int bits : {2, 3, 4}) {
      for (bool per_row : {false, true}) {
        SCOPED_TRACE(testing::Message() << m << "x" << n << "x" << k << " " << bits << " bits"
                                        << (per_row ? " per row" : ""));
        quant::gemm::CodebookLinear layer;
        layer.name = "fc";
        layer.in = k;
        layer.out = n;
        layer.bits = bits;
        layer.per_row_codebook = per_row;
        std::uniform_int_distribution<int> index(0, (1 << bits) - 1);
        std::vector<uint8_t> indices(n * k);
        for (uint8_t& i : indices) i = static_cast<uint8_t>(index(rng_));
        absl::StatusOr<std::string> packed = quant::gemm::PackCodebookIndices(indices, bits, n, k);
        ASSERT_TRUE(packed.ok()) << packed.status();
        layer.packed = *packed;
        layer.codebook = RandomFloats((per_row ? n : 1) << bits, static_cast<uint32_t>(k));
        layer.bias = RandomFloats(n, static_cast<uint32_t>(n));
        std::vector<float> w(n * k);
        for (int64_t r = 0; r < n; ++r) {
          for (int64_t c = 0; c < k; ++c) w[r * k + c] = layer.codebook[(per_row ? r << bits : 0) + indices[r * k + c]];
        }
        const std::vector<float> x = RandomFloats(m * k, static_cast<uint32_t>(m));
        std::vector<float> want(m * n), got(m * n, NAN);
        ASSERT_TRUE(quant::gemm::LutGemmRef(x.data(), m, layer, want.data()).ok());
        ASSERT_TRUE(CudaLutGemm(x.data(), m, layer, got.data(), target_).ok());
        ExpectWithinReassociationBound(x, w, m, n, k, want, got);
      }
    }
  }
}

// A random [out, in] matrix with at most n non-zeros in every group of m
// (some groups fewer, to exercise the padded slots).
std::vector<float> RandomNmDense(int64_t out, int64_t in, int n, int m, std::mt19937* rng) {
  std::vector<float> dense = RandomFloats(out * in, (*rng)());
  std::vector<int> order(m);
  for (int64_t g = 0; g < out * in; g += m) {
    for (int j = 0; j < m; ++j) order[j] = j;
    std::shuffle(order.begin(), order.end(), *rng);
    const int keep = static_cast<int>((*rng)() % 4 == 0 ? (*rng)() % (n + 1) : n);
    for (int j = keep; j < m; ++j) dense[g + order[j]] = 0.0f;
  }
  return dense;
}

TEST_P(CudaLowBitGemmTest, NmSparseMatchesReference) {
  for (auto [n, m] : {std::pair<int, int>{2, 4}, {4, 8}, {1, 4}, {3, 8}, {2, 5}, {5, 16}, {1, 2}}) {
    for (auto [rows, out, groups] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {7, 33, 3},
                                     {64, 64, 16}, {130, 70, 9}, {2048 / 32, 192, 512 / 8}}) {
      const int64_t in = groups * m;
      SCOPED_TRACE(testing::Message() << n << ":" << m << " " << rows << "x" << out << "x" << in);
      const std::vector<float> dense = RandomNmDense(out, in, n, m, &rng_);
      absl::StatusOr<prune::NmSparseMatrix> w = prune::CompressNm(dense, out, in, n, m, "fc");
      ASSERT_TRUE(w.ok()) << w.status();
      const std::vector<float> x = RandomFloats(rows * in, static_cast<uint32_t>(rows + in));
      const std::vector<float> bias = RandomFloats(out, static_cast<uint32_t>(out));
      for (const float* b : {bias.data(), static_cast<const float*>(nullptr)}) {
        std::vector<float> want(rows * out), got(rows * out, NAN);
        prune::NmSparseMatMulRef(x.data(), rows, prune::ViewOf(*w), b, want.data());
        ASSERT_TRUE(CudaNmSparseMatMul(x.data(), rows, prune::ViewOf(*w), b, got.data(), target_).ok());
        ExpectWithinReassociationBound(x, dense, rows, out, in, want, got);
      }
    }
  }
}

// f16 operands: each product is off by up to ~2^-10 of its size, plus the
// float32 summation's reassociation bound.
TEST_P(CudaLowBitGemmTest, TwoFourOnTensorCoresMatchesReferenceAtHalfPrecision) {
  for (auto [rows, out, in] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 32}, {7, 33, 96}, {64, 64, 64},
                               {130, 70, 160}, {2048 / 32, 192, 512}, {33, 17, 1024}}) {
    SCOPED_TRACE(testing::Message() << rows << "x" << out << "x" << in);
    const std::vector<float> dense = RandomNmDense(out, in, 2, 4, &rng_);
    absl::StatusOr<prune::NmSparseMatrix> w = prune::CompressNm(dense, out, in, 2, 4, "fc");
    ASSERT_TRUE(w.ok()) << w.status();
    const std::vector<float> x = RandomFloats(rows * in, static_cast<uint32_t>(rows + in));
    const std::vector<float> bias = RandomFloats(out, static_cast<uint32_t>(out));
    std::vector<float> want(rows * out), got(rows * out, NAN);
    prune::NmSparseMatMulRef(x.data(), rows, prune::ViewOf(*w), bias.data(), want.data());
    const absl::Status status =
        CudaNmSparseMatMulTensorCores(x.data(), rows, prune::ViewOf(*w), bias.data(), got.data(), target_);
    if (status.code() == absl::StatusCode::kUnavailable) GTEST_SKIP() << status;  // before sm_80
    ASSERT_TRUE(status.ok()) << status;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < out; ++c) {
        double sum_abs = 0.0;
        for (int64_t k = 0; k < in; ++k) sum_abs += std::fabs(double{x[r * in + k]} * dense[c * in + k]);
        const float expected = want[r * out + c];
        ASSERT_NEAR(got[r * out + c], expected, 0x1p-9 * sum_abs + ReassociationTolerance(in, sum_abs, expected))
            << "row " << r << " col " << c;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, CudaLowBitGemmTest,
                         ::testing::Values(Target::kDevice, Target::kHostEmulation),
                         [](const ::testing::TestParamInfo<Target>& info) {
                           return info.param == Target::kDevice ? "Device" : "HostEmulation";
                         });

// Bad arguments are rejected on the host, with or without a device.
TEST(CudaLowBitGemmArgumentsTest, RejectsBadShapesAndLayers) {
  std::vector<uint8_t> xq(4);
  std::vector<int8_t> wq(4);
  std::vector<int32_t> acc(1);
  absl::Status status = CudaInt8MatMulInt32(xq.data(), wq.data(), 1, 1, quant::gemm::kMaxInt8GemmDepth + 1,
                                            acc.data());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("65537"));

  quant::QuantizedLinear int8_layer;
  int8_layer.name = "fc7";
  int8_layer.bits = 8;
  std::vector<float> x(8), y(8);
  status = CudaNibbleGemm(x.data(), 1, int8_layer, y.data());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("layer fc7 has 8-bit weights"));

  quant::gemm::CodebookLinear lut;
  lut.name = "fc8";
  lut.bits = 5;
  status = CudaLutGemm(x.data(), 1, lut, y.data());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("fc8"));

  prune::NmSparseView nm{1, 10, 2, 4, 1, nullptr, nullptr};
  status = CudaNmSparseMatMul(x.data(), 1, nm, nullptr, y.data());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("not a multiple of M = 4"));
  nm.in = 8;  // 2:4 over 8 inputs: 4 kept, one index byte, not 3
  nm.row_index_bytes = 3;
  status = CudaNmSparseMatMul(x.data(), 1, nm, nullptr, y.data());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("3 index bytes"));

  // The tensor-core path: 2:4 with in % 32 == 0 and increasing positions.
  std::vector<float> values(16, 1.0f);
  std::vector<uint8_t> indices(6, 0x44);  // positions 0, 1 in every group
  std::vector<float> x32(32, 1.0f);
  prune::NmSparseView four_eight{1, 32, 4, 8, 6, values.data(), indices.data()};
  status = CudaNmSparseMatMulTensorCores(x32.data(), 1, four_eight, nullptr, y.data());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("need 2:4"));
  indices[3] = 0x41;  // group 6 (low nibble of byte 3) keeps positions 1 then 0
  prune::NmSparseView two_four{1, 32, 2, 4, 4, values.data(), indices.data()};
  status = CudaNmSparseMatMulTensorCores(x32.data(), 1, two_four, nullptr, y.data());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("row 0 group 6 keeps positions 1 and 0"));
}

TEST(CudaLowBitGemmArgumentsTest, UnavailableWithoutADevice) {
  if (CudaDeviceCount() > 0) GTEST_SKIP() << "a CUDA device is present";
  const std::vector<uint8_t> xq(6, 1);
  const std::vector<int8_t> wq(6, 1);
  std::vector<int32_t> acc(4);
  const absl::Status status = CudaInt8MatMulInt32(xq.data(), wq.data(), 2, 2, 3, acc.data());
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
}

}  // namespace
}  // namespace squeeze::core::kernels::cuda
