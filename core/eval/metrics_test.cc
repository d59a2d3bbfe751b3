#include "core/eval/metrics.h"

#include <cmath>

#include "core/eval/fidelity.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace squeeze::core::eval {
namespace {

using ::testing::DoubleNear;
using ::testing::HasSubstr;
using model::Tensor;

TEST(MetricsTest, TopOneAndTopFiveAccuracy) {
  // Row 0: label 2 is the max. Row 1: label 0 ranks 6th of 7. Row 2: label 6
  // ranks 3rd.
  const Tensor logits = Tensor::FromFloats(
      {3, 7}, {0, 1, 9, 2, 3, 4, 5,   //
               1, 2, 3, 4, 5, 6, 0,   //
               0, 1, 2, 3, 9, 8, 7});
  absl::StatusOr<AccuracyReport> report = ComputeAccuracy(logits, {2, 0, 6});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_DOUBLE_EQ(report->top1, 1.0 / 3);
  EXPECT_DOUBLE_EQ(report->top5, 2.0 / 3);
  EXPECT_EQ(report->rows, 3);
}

TEST(MetricsTest, PerplexityOfUniformLogitsIsTheVocabularySize) {
  const Tensor uniform = Tensor::FromFloats({2, 2, 4}, std::vector<float>(16, 3.0f));
  absl::StatusOr<PerplexityReport> report = ComputePerplexity(uniform, {0, 1, 2, 3});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->perplexity, DoubleNear(4.0, 1e-9));
  EXPECT_EQ(report->tokens, 4);
  // Large logits stay finite: the log-softmax subtracts the max.
  const Tensor large = Tensor::FromFloats({1, 2}, {1000.0f, 0.0f});
  EXPECT_THAT(ComputePerplexity(large, {0})->mean_negative_log_likelihood,
              DoubleNear(0.0, 1e-12));
  EXPECT_THAT(ComputePerplexity(large, {1})->mean_negative_log_likelihood,
              DoubleNear(1000.0, 1e-9));
}

TEST(MetricsTest, ShapeAndLabelErrors) {
  const Tensor logits = Tensor::FromFloats({2, 3}, std::vector<float>(6, 0.0f));
  EXPECT_THAT(ComputeAccuracy(logits, {0}).status().message(),
              HasSubstr("shape [2, 3] have 2 rows but there are 1 labels"));
  EXPECT_THAT(ComputePerplexity(logits, {0, 3}).status().message(),
              HasSubstr("label 3 at row 1 is outside [0, 3)"));
  const Tensor ints{model::DType::kI32, {1, 1}, std::string(4, '\0')};
  EXPECT_EQ(ComputeAccuracy(ints, {0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ComputeAccuracy(Tensor::FromFloats({0, 3}, {}), {}).status().message(),
              HasSubstr("have no rows"));
  EXPECT_THAT(CompareToReference(logits, Tensor::FromFloats({3, 2}, std::vector<float>(6)))
                  .status().message(),
              HasSubstr("shapes differ, reference [2, 3] vs actual [3, 2]"));
  EXPECT_THAT(CompareOutputsToReference({logits}, {}).status().message(),
              HasSubstr("reference has 1 outputs, the model 0"));
}

TEST(MetricsTest, IdenticalOutputsAgreeFully) {
  const Tensor logits = Tensor::FromFloats({2, 3}, {1, 2, 3, -1, 0, 5});
  absl::StatusOr<OutputAgreement> agreement = CompareToReference(logits, logits);
  ASSERT_TRUE(agreement.ok()) << agreement.status();
  EXPECT_THAT(agreement->mean_kl_divergence, DoubleNear(0.0, 1e-12));
  EXPECT_EQ(agreement->top1_agreement, 1.0);
  EXPECT_THAT(agreement->cosine_similarity, DoubleNear(1.0, 1e-12));
  EXPECT_EQ(agreement->sqnr_db, kMaxSqnrDb);
}

TEST(MetricsTest, KlDivergenceMatchesHandComputation) {
  // p = softmax(0, 0) = (1/2, 1/2); q = softmax(log 3, 0) = (3/4, 1/4).
  const Tensor reference = Tensor::FromFloats({1, 2}, {0.0f, 0.0f});
  const Tensor actual =
      Tensor::FromFloats({1, 2}, {static_cast<float>(std::log(3.0)), 0.0f});
  absl::StatusOr<OutputAgreement> agreement = CompareToReference(reference, actual);
  ASSERT_TRUE(agreement.ok()) << agreement.status();
  const double expected = 0.5 * std::log(0.5 / 0.75) + 0.5 * std::log(0.5 / 0.25);
  EXPECT_THAT(agreement->mean_kl_divergence, DoubleNear(expected, 1e-7));
  EXPECT_EQ(agreement->top1_agreement, 1.0);  // ties: the first maximum
  EXPECT_EQ(agreement->cosine_similarity, 0.0);  // reference is all zero
  EXPECT_EQ(agreement->sqnr_db, -kMaxSqnrDb);

  const Tensor flipped = Tensor::FromFloats({1, 2}, {-1.0f, 2.0f});
  const Tensor original = Tensor::FromFloats({1, 2}, {2.0f, -1.0f});
  absl::StatusOr<std::vector<OutputAgreement>> per_output =
      CompareOutputsToReference({original}, {flipped});
  ASSERT_TRUE(per_output.ok());
  EXPECT_EQ((*per_output)[0].top1_agreement, 0.0);
  EXPECT_THAT((*per_output)[0].cosine_similarity, DoubleNear(-0.8, 1e-9));
}

}  // namespace
}  // namespace squeeze::core::eval
