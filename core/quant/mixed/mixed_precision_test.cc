#include "core/quant/mixed/mixed_precision.h"

#include <cmath>
#include <random>

#include "core/graph/builder.h"
#include "core/model/linear_chain.h"
#include "core/quant/rtn.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant::mixed {
namespace {

using graph::DataType;
using graph::Tensor;
using ::testing::HasSubstr;

// Every combination of options, the slow way.
void BruteForce(const std::vector<LayerOptions>& layers, int64_t budget, size_t l, int64_t size, double cost,
                double* best) {
  if (size > budget) return;
  if (l == layers.size()) {
    *best = std::min(*best, cost);
    return;
  }
  for (const BitOption& o : layers[l].options) {
    BruteForce(layers, budget, l + 1, size + o.size_bits, cost + o.cost, best);
  }
}

TEST(BitAllocatorTest, DynamicProgrammeEqualsBruteForce) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int64_t> params(20, 300);
  std::uniform_real_distribution<double> sensitivity(0.01, 10.0);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<LayerOptions> layers(5);
    int64_t total_params = 0;
    for (size_t l = 0; l < layers.size(); ++l) {
      layers[l].name = "layer" + std::to_string(l);
      layers[l].params = params(rng);
      total_params += layers[l].params;
      const double s = sensitivity(rng);
      for (int bits : {2, 3, 4, 8, 16}) {
        layers[l].options.push_back({bits, layers[l].params * bits + (bits < 16 ? 32 : 0),
                                     s * std::pow(4.0, -bits) * (1 + 0.1 * l)});
      }
    }
    for (double average : {2.5, 3.0, 4.5, 7.0}) {
      const auto budget = static_cast<int64_t>(average * total_params) + 32 * 5;
      double best = INFINITY;
      BruteForce(layers, budget, 0, 0, 0, &best);
      auto allocation = AllocateBits(layers, budget);
      ASSERT_TRUE(allocation.ok()) << allocation.status();
      EXPECT_TRUE(allocation->exact);
      EXPECT_LE(allocation->total_size_bits, budget);
      EXPECT_NEAR(allocation->total_cost, best, 1e-12 * std::max(1.0, best)) << "trial " << trial;
    }
  }
}

TEST(BitAllocatorTest, CoarseUnitsStayWithinBudget) {
  std::vector<LayerOptions> layers = {{"a", 1000, {{2, 2001, 5.0}, {4, 4003, 1.0}}},
                                      {"b", 1000, {{2, 2001, 3.0}, {4, 4003, 0.5}}}};
  auto allocation = AllocateBits(layers, 6004, /*max_states=*/16);
  ASSERT_TRUE(allocation.ok()) << allocation.status();
  EXPECT_FALSE(allocation->exact);
  EXPECT_LE(allocation->total_size_bits, 6004);
}

TEST(BitAllocatorTest, ErrorsNameTheLayer) {
  EXPECT_THAT(AllocateBits({{"fc1", 10, {}}}, 100).status().message(), HasSubstr("(layer fc1)"));
  EXPECT_THAT(AllocateBits({{"fc2", 10, {{2, 0, 1.0}}}}, 100).status().message(),
              HasSubstr("size must be > 0, got 0 bits at 2 bits (layer fc2)"));
  EXPECT_THAT(AllocateBits({{"fc3", 10, {{2, 20, NAN}}}}, 100).status().message(), HasSubstr("(layer fc3)"));
  auto too_small = AllocateBits({{"fc4", 10, {{2, 200, 1.0}}}}, 100);
  EXPECT_EQ(too_small.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(too_small.status().message(), HasSubstr("over the budget of 100 by 100"));
}

// x [N, 6] -> Gemm(W [4, 6], transB) -> logits, softmax cross-entropy.
// The Hessian of the mean loss w.r.t. W is (1/N) sum_n (diag p - p p') (x) x x',
// so tr(H) = (1/N) sum_n (sum_k p_k (1 - p_k)) ||x_n||^2.
TEST(MixedPrecisionTest, HutchinsonTraceMatchesTheClosedForm) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0, 1);
  const int64_t n = 16, d = 6, k = 4;
  Tensor w(DataType::kFloat32, {k, d}), x(DataType::kFloat32, {n, d});
  for (int64_t i = 0; i < w.num_elements(); ++i) w.data<float>()[i] = 0.5f * normal(rng);
  for (int64_t i = 0; i < x.num_elements(); ++i) x.data<float>()[i] = normal(rng);
  graph::GraphBuilder b("linear");
  b.Add("Gemm", {"x", b.Initializer("fc.weight", w)}, {{"transB", int64_t{1}}}, "logits");
  b.AddInput({"x", DataType::kFloat32, std::nullopt});
  b.AddOutput({"logits", DataType::kFloat32, std::nullopt});
  const graph::Graph graph = b.Finish();
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < n; ++i) labels.push_back(i % k);
  double expected = 0;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> z(k);
    double norm = 0, x2 = 0, zmax = -INFINITY;
    for (int64_t c = 0; c < k; ++c) {
      for (int64_t j = 0; j < d; ++j) z[c] += double{w.data<float>()[c * d + j]} * x.data<float>()[i * d + j];
      zmax = std::max(zmax, z[c]);
    }
    for (double& v : z) norm += (v = std::exp(v - zmax));
    double curvature = 0;
    for (double v : z) curvature += v / norm * (1 - v / norm);
    for (int64_t j = 0; j < d; ++j) x2 += double{x.data<float>()[i * d + j]} * x.data<float>()[i * d + j];
    expected += curvature * x2 / n;
  }
  SensitivityOptions options;
  options.probes = 400;
  options.num_threads = 1;
  auto sensitivity = MeasureSensitivity(graph, {{{{"x", x}}, labels}}, options);
  ASSERT_TRUE(sensitivity.ok()) << sensitivity.status();
  ASSERT_EQ(sensitivity->size(), 1u);
  EXPECT_NEAR((*sensitivity)[0].trace, expected, 0.1 * expected);
  EXPECT_EQ((*sensitivity)[0].bits, (std::vector<int>{2, 3, 4, 8, 16}));
  // More bits, less error.
  for (size_t c = 1; c < 5; ++c) EXPECT_LT((*sensitivity)[0].error[c], (*sensitivity)[0].error[c - 1]);

  options.estimator = CurvatureEstimator::kFisher;
  auto fisher = MeasureSensitivity(graph, {{{{"x", x}}, labels}}, options);
  ASSERT_TRUE(fisher.ok()) << fisher.status();
  EXPECT_GT((*fisher)[0].trace, 0);

  // The quadratic form along dW for a linear-softmax layer equals the
  // closed form (1/N) sum_n dz_n' (diag p - p p') dz_n, dz_n = dW x_n.
  options.estimator = CurvatureEstimator::kQuadraticForm;
  auto quadratic = MeasureSensitivity(graph, {{{{"x", x}}, labels}}, options);
  ASSERT_TRUE(quadratic.ok()) << quadratic.status();
  ASSERT_EQ((*quadratic)[0].measured.size(), 5u);
  {
    model::LinearLayer layer{"fc", d, k, w.ToFloats(), {}};
    auto q = QuantizeRtnRef(layer, RtnOptions{2, 0, false});
    ASSERT_TRUE(q.ok());
    std::vector<float> dq(k * d);
    ASSERT_TRUE(DequantizeRtn(*q, dq.data()).ok());
    double form = 0;
    for (int64_t i = 0; i < n; ++i) {
      std::vector<double> z(k), dz(k);
      double zmax = -INFINITY, norm = 0;
      for (int64_t c = 0; c < k; ++c) {
        for (int64_t j = 0; j < d; ++j) {
          z[c] += double{w.data<float>()[c * d + j]} * x.data<float>()[i * d + j];
          dz[c] += (double{dq[c * d + j]} - w.data<float>()[c * d + j]) * x.data<float>()[i * d + j];
        }
        zmax = std::max(zmax, z[c]);
      }
      for (double& v : z) norm += (v = std::exp(v - zmax));
      double mean = 0, second = 0;
      for (int64_t c = 0; c < k; ++c) {
        mean += z[c] / norm * dz[c];
        second += z[c] / norm * dz[c] * dz[c];
      }
      form += (second - mean * mean) / n;
    }
    EXPECT_NEAR((*quadratic)[0].Predicted(0), form, 0.02 * form);
  }
  // The measured loss increase equals the cross-entropy of the quantized
  // layer minus the original's, less g . dW with the cross-entropy's
  // gradient g = (1/N) sum_n (p_n - onehot_n) x_n', computed here by hand.
  options.estimator = CurvatureEstimator::kMeasuredLoss;
  auto measured = MeasureSensitivity(graph, {{{{"x", x}}, labels}}, options);
  ASSERT_TRUE(measured.ok()) << measured.status();
  ASSERT_EQ((*measured)[0].measured.size(), 5u);
  EXPECT_EQ((*measured)[0].trace, 0);
  {
    auto cross_entropy = [&](const std::vector<float>& weights) {
      double loss = 0;
      for (int64_t i = 0; i < n; ++i) {
        std::vector<double> z(k);
        double zmax = -INFINITY, norm = 0;
        for (int64_t c = 0; c < k; ++c) {
          for (int64_t j = 0; j < d; ++j) z[c] += double{weights[c * d + j]} * x.data<float>()[i * d + j];
          zmax = std::max(zmax, z[c]);
        }
        for (double v : z) norm += std::exp(v - zmax);
        loss += (zmax + std::log(norm) - z[labels[i]]) / n;
      }
      return loss;
    };
    model::LinearLayer layer{"fc", d, k, w.ToFloats(), {}};
    for (size_t c = 0; c < 4; ++c) {  // 2, 3, 4, 8 bits
      auto q = QuantizeRtnRef(layer, RtnOptions{(*measured)[0].bits[c], 0, false});
      ASSERT_TRUE(q.ok());
      std::vector<float> dq(k * d);
      ASSERT_TRUE(DequantizeRtn(*q, dq.data()).ok());
      double first_order = 0;
      for (int64_t i = 0; i < n; ++i) {
        std::vector<double> z(k);
        double zmax = -INFINITY, norm = 0;
        for (int64_t c = 0; c < k; ++c) {
          for (int64_t j = 0; j < d; ++j) z[c] += double{w.data<float>()[c * d + j]} * x.data<float>()[i * d + j];
          zmax = std::max(zmax, z[c]);
        }
        for (double v : z) norm += std::exp(v - zmax);
        for (int64_t c = 0; c < k; ++c) {
          const double residual = std::exp(z[c] - zmax) / norm - (labels[i] == c ? 1.0 : 0.0);
          for (int64_t j = 0; j < d; ++j) {
            first_order += residual * x.data<float>()[i * d + j] * (double{dq[c * d + j]} - w.data<float>()[c * d + j]) / n;
          }
        }
      }
      const double expected_increase = cross_entropy(dq) - cross_entropy(w.ToFloats()) - first_order;
      EXPECT_NEAR((*measured)[0].Predicted(c), expected_increase, 1e-5 + 1e-3 * std::fabs(expected_increase))
          << (*measured)[0].bits[c] << " bits";
    }
  }
  options.estimator = CurvatureEstimator::kHutchinson;

  auto uniform3 = UniformPlan(*sensitivity, 3);
  ASSERT_TRUE(uniform3.ok());
  EXPECT_EQ(uniform3->size_bits, k * d * 3 + k * 32);
  auto plan = PlanMixedPrecision(*sensitivity, uniform3->size_bits, {2, 3});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->layers[0].bits, 3);
  auto applied = ApplyPlan(graph, *sensitivity, *plan);
  ASSERT_TRUE(applied.ok());
  EXPECT_NE(applied->initializers.at("fc.weight").ToFloats(), w.ToFloats());

  options.asymmetric = true;
  auto asymmetric = MeasureSensitivity(graph, {{{{"x", x}}, labels}}, options);
  ASSERT_TRUE(asymmetric.ok()) << asymmetric.status();
  EXPECT_EQ((*asymmetric)[0].size_bits[1], k * d * 3 + k * (32 + 8));
  EXPECT_LT((*asymmetric)[0].error[0], (*sensitivity)[0].error[0]);  // 4 levels beat 3 at 2 bits

  options.candidate_bits = {5};
  EXPECT_THAT(MeasureSensitivity(graph, {{{{"x", x}}, labels}}, options).status().message(),
              HasSubstr("candidate bits must be one of 2, 3, 4, 8, 16, got 5"));
  EXPECT_THAT(MeasureSensitivity(graph, {}, SensitivityOptions{}).status().message(), HasSubstr("no loss batches"));
}

}  // namespace
}  // namespace squeeze::core::quant::mixed
