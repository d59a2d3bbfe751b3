#include "deploy/demo/demo_model.h"

#include "core/model/file_io.h"
#include "core/model/linear_chain.h"
#include "core/model/sha256.h"
#include "gtest/gtest.h"

namespace squeeze::deploy::demo {
namespace {

// The committed files must be exactly what the generator makes, so that
// they can be trusted and rebuilt. (Generated with glibc's libm; another
// libm may round exp/log differently in the last bit.)
TEST(DemoModelTest, CommittedFilesMatchTheGenerator) {
  const std::string dir = SQUEEZE_DEMO_DIR;
  for (const auto& [name, file] :
       {std::pair{"mlp.safetensors", MakeDemoModel()},
        std::pair{"calibration.safetensors", MakeDemoCalibration()}}) {
    absl::StatusOr<std::string> committed =
        core::model::ReadFile(dir + "/" + name);
    ASSERT_TRUE(committed.ok()) << committed.status();
    EXPECT_EQ(core::model::Sha256Hex(*committed),
              core::model::Sha256Hex(core::model::SerializeSafetensors(file)))
        << name << " differs from make_demo_model's output";
  }
}

TEST(DemoModelTest, ModelIsAChainAndCalibrationFitsIt) {
  absl::StatusOr<core::model::LinearChain> chain =
      core::model::LinearChainFromSafetensors(MakeDemoModel());
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_EQ(chain->layers.size(), 3u);
  EXPECT_EQ(chain->InputWidth(), 784);
  EXPECT_EQ(chain->OutputWidth(), 10);
  const core::model::SafetensorsFile calibration = MakeDemoCalibration();
  const core::model::Tensor& inputs = calibration.tensors.at("inputs");
  EXPECT_EQ(inputs.shape, (std::vector<int64_t>{128, 784}));
  const std::vector<float> values = *inputs.ToFloats();
  float max_value = 0.0f;
  for (float v : values) {
    ASSERT_GE(v, 0.0f);
    ASSERT_LE(v, 1.0f);
    max_value = std::max(max_value, v);
  }
  EXPECT_GT(max_value, 0.4f);
}

}  // namespace
}  // namespace squeeze::deploy::demo
