#include "server/job_spec_validation.h"

#include <cstdlib>

#include "gtest/gtest.h"

namespace squeeze::server {
namespace {

class ValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    devices_ = *DeviceProfiles::LoadDirectory(std::string(std::getenv("SQUEEZE_SOURCE_DIR")) +
                                              "/deploy/devices");
    request_.mutable_spec()->mutable_model()->set_sha256(std::string(64, 'a'));
    request_.mutable_spec()->mutable_recipe()->add_passes()->mutable_quantize()->set_bits(4);
  }

  absl::Status Check() { return ValidateSubmitRequest(request_, devices_); }

  DeviceProfiles devices_;
  v1::SubmitJobRequest request_;
};

TEST_F(ValidationTest, AcceptsAMinimalRequest) { EXPECT_TRUE(Check().ok()) << Check(); }

TEST_F(ValidationTest, NamesTheBadField) {
  request_.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize()->set_bits(12);
  absl::Status status = Check();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "spec.recipe.passes[0].quantize.bits must be 4 or 8, got 12");
}

TEST_F(ValidationTest, RejectsBadReferencesAndRanges) {
  request_.mutable_spec()->mutable_model()->set_sha256("../etc/passwd");
  EXPECT_NE(Check().message().find("spec.model.sha256"), std::string::npos);
  request_.mutable_spec()->mutable_model()->set_sha256(std::string(64, 'a'));
  request_.mutable_spec()->set_priority(42);
  EXPECT_NE(Check().message().find("got 42"), std::string::npos);
  request_.mutable_spec()->set_priority(0);
  request_.mutable_spec()->add_target_devices("toaster");
  EXPECT_NE(Check().message().find("'toaster'"), std::string::npos);
  request_.mutable_spec()->clear_target_devices();
  (*request_.mutable_spec()->mutable_labels())["Bad Key"] = "x";
  EXPECT_NE(Check().message().find("'Bad Key'"), std::string::npos);
}

TEST_F(ValidationTest, GroupSizeMustBeAPowerOfTwo) {
  auto* q = request_.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize();
  q->set_granularity(v1::QuantizePass::PER_GROUP);
  q->set_group_size(100);
  EXPECT_NE(Check().message().find("group_size must be a power of two"), std::string::npos);
}

TEST_F(ValidationTest, UnknownAndUnimplementedTechniques) {
  request_.mutable_spec()->mutable_recipe()->add_passes();  // No technique set.
  EXPECT_NE(Check().message().find("passes[1] names no technique"), std::string::npos);
  request_.mutable_spec()->mutable_recipe()->mutable_passes(1)->mutable_prune()->set_sparsity(0.5);
  EXPECT_EQ(Check().code(), absl::StatusCode::kUnimplemented);
}

TEST_F(ValidationTest, UnknownFieldsAreRejected) {
  // Field 99 of QuantizePass does not exist: as from a newer client.
  std::string bytes;
  request_.SerializeToString(&bytes);
  v1::QuantizePass pass;
  pass.GetReflection()->MutableUnknownFields(&pass)->AddVarint(99, 1);
  v1::SubmitJobRequest with_unknown = request_;
  *with_unknown.mutable_spec()->mutable_recipe()->mutable_passes(0)->mutable_quantize() = pass;
  absl::Status status = ValidateSubmitRequest(with_unknown, devices_);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("request.spec.recipe.passes[0].quantize has unknown field "
                                  "number 99"),
            std::string::npos)
      << status;
}

TEST(RtnOptionsFromPassTest, AppliesDefaults) {
  v1::QuantizePass pass;
  EXPECT_EQ(RtnOptionsFromPass(pass).bits, 8);
  EXPECT_EQ(RtnOptionsFromPass(pass).group_size, 0);
  pass.set_granularity(v1::QuantizePass::PER_GROUP);
  EXPECT_EQ(RtnOptionsFromPass(pass).group_size, 128);
}

}  // namespace
}  // namespace squeeze::server
