#include "core/quant/gemm/lut_gemm.h"

#include <cmath>
#include <random>
#include <tuple>

#include "core/quant/gemm/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant::gemm {
namespace {

using ::testing::HasSubstr;

CodebookLinear RandomCodebookLayer(int64_t out, int64_t in, int bits, bool per_row,
                                   uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  std::uniform_int_distribution<int> index(0, CodebookEntries(bits) - 1);
  CodebookLinear layer;
  layer.name = "fc";
  layer.in = in;
  layer.out = out;
  layer.bits = bits;
  layer.per_row_codebook = per_row;
  std::vector<uint8_t> indices(out * in);
  for (auto& i : indices) i = static_cast<uint8_t>(index(rng));
  layer.packed = *PackCodebookIndices(indices, bits, out, in);
  layer.codebook.resize(CodebookEntries(bits) * (per_row ? out : 1));
  for (float& c : layer.codebook) c = normal(rng);
  for (int64_t i = 0; i < out; ++i) layer.bias.push_back(normal(rng));
  return layer;
}

TEST(CodebookLayoutTest, PacksLsbFirstAndRoundTrips) {
  absl::StatusOr<std::string> packed = PackCodebookIndices({1, 2, 3, 0, 3}, 2, 1, 5);
  ASSERT_TRUE(packed.ok());
  ASSERT_EQ(packed->size(), 2u);
  EXPECT_EQ(static_cast<uint8_t>((*packed)[0]), 0b00111001);
  EXPECT_EQ(static_cast<uint8_t>((*packed)[1]), 0b11);
  std::vector<uint8_t> indices(3 * 11);
  for (size_t i = 0; i < indices.size(); ++i) indices[i] = static_cast<uint8_t>((i * 5) % 8);
  packed = PackCodebookIndices(indices, 3, 3, 11);
  ASSERT_TRUE(packed.ok());
  const auto* bytes = reinterpret_cast<const uint8_t*>(packed->data());
  for (int64_t r = 0; r < 3; ++r) {
    for (int64_t c = 0; c < 11; ++c) {
      EXPECT_EQ(ReadCodebookIndex(bytes + r * CodebookRowBytes(3, 11), c, 3),
                indices[r * 11 + c]);
    }
  }
  EXPECT_THAT(PackCodebookIndices({4}, 2, 1, 1).status().message(),
              HasSubstr("index 4 at row 0, column 0 does not fit 2 bits"));
}

TEST(LutGemmTest, MatchesReferenceWithinReassociationBound) {
  for (int bits : {2, 3, 4}) {
    for (bool per_row : {false, true}) {
      for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                             {1, 300, 192}, {37, 19, 61}, {260, 33, 16},
                             // 4 bits, even depth: the GEMV (blocks of 8 rows, up to 32), tails.
                             {8, 40, 784}, {3, 17, 36}, {6, 300, 64}, {20, 9, 64}}) {
        const CodebookLinear layer = RandomCodebookLayer(n, k, bits, per_row, bits + n);
        std::mt19937 rng(static_cast<uint32_t>(m + k));
        std::normal_distribution<float> normal;
        std::vector<float> x(m * k);
        for (float& v : x) v = normal(rng);
        std::vector<float> ref(m * n);
        ASSERT_TRUE(LutGemmRef(x.data(), m, layer, ref.data()).ok());
        const int64_t row_bytes = CodebookRowBytes(bits, k);
        for (GemmPath path : AvailablePaths()) {
          SCOPED_TRACE(testing::Message() << GemmPathName(path) << " b" << bits
                                          << (per_row ? " per-row " : " per-layer ") << m
                                          << "x" << n << "x" << k);
          std::vector<float> got(m * n, NAN);
          ASSERT_TRUE(LutGemm(x.data(), m, layer, got.data(), GemmOptions{2, path}).ok());
          for (int64_t r = 0; r < m; ++r) {
            for (int64_t c = 0; c < n; ++c) {
              const auto* row = reinterpret_cast<const uint8_t*>(layer.packed.data()) +
                                c * row_bytes;
              const float* codebook =
                  layer.codebook.data() + (per_row ? c * CodebookEntries(bits) : 0);
              double sum_abs = 0.0;
              for (int64_t kk = 0; kk < k; ++kk) {
                sum_abs += std::fabs(double{x[r * k + kk]} *
                                     codebook[ReadCodebookIndex(row, kk, bits)]);
              }
              const float want = ref[r * n + c];
              ASSERT_NEAR(got[r * n + c], want, ReassociationTolerance(k, sum_abs, want));
            }
          }
        }
      }
    }
  }
}

TEST(LutGemmTest, RejectsBadLayersNamingThem) {
  CodebookLinear layer = RandomCodebookLayer(2, 8, 3, false, 1);
  layer.name = "proj";
  std::vector<float> x(8), y(2);
  layer.codebook.pop_back();
  EXPECT_THAT(LutGemm(x.data(), 1, layer, y.data()).message(),
              HasSubstr("layer proj [2 x 8] at 3 bits"));
  layer = RandomCodebookLayer(2, 8, 3, false, 1);
  layer.bits = 5;
  EXPECT_THAT(LutGemm(x.data(), 1, layer, y.data()).message(),
              HasSubstr("bits must be in [2, 4], got 5"));
  layer = RandomCodebookLayer(2, 8, 3, false, 1);
  layer.codebook[2] = INFINITY;
  EXPECT_THAT(LutGemmRef(x.data(), 1, layer, y.data()).message(),
              HasSubstr("codebook entry 2 is inf"));
}

}  // namespace
}  // namespace squeeze::core::quant::gemm
