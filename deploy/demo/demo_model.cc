#include "deploy/demo/demo_model.h"

#include <algorithm>
#include <cmath>

#include "core/eval/seeded_normal.h"
#include "core/model/linear_chain.h"

namespace squeeze::deploy::demo {

core::model::SafetensorsFile MakeDemoModel() {
  core::eval::SeededNormal normal(kDemoSeed);
  const int64_t widths[] = {kImageSide * kImageSide, 256, 128, 10};
  core::model::LinearChain chain;
  for (int l = 0; l < 3; ++l) {
    core::model::LinearLayer layer;
    layer.name = "fc" + std::to_string(l + 1);
    layer.in = widths[l];
    layer.out = widths[l + 1];
    const double he_std = std::sqrt(2.0 / static_cast<double>(layer.in));
    layer.weight.resize(layer.in * layer.out);
    for (float& w : layer.weight) w = static_cast<float>(he_std * normal.Next());
    layer.bias.resize(layer.out);
    for (float& b : layer.bias) b = static_cast<float>(0.01 * normal.Next());
    chain.layers.push_back(std::move(layer));
  }
  return core::model::LinearChainToSafetensors(chain);
}

core::model::SafetensorsFile MakeDemoCalibration() {
  core::eval::SeededNormal rng(kDemoSeed + 1);
  const int64_t pixels = kImageSide * kImageSide;
  std::vector<float> images(kCalibrationImages * pixels, 0.0f);
  for (int64_t n = 0; n < kCalibrationImages; ++n) {
    float* image = &images[n * pixels];
    const int blobs = 1 + static_cast<int>(rng.NextUniform() * 3);
    for (int b = 0; b < blobs; ++b) {
      const double cx = 6 + 16 * rng.NextUniform();
      const double cy = 6 + 16 * rng.NextUniform();
      const double sigma = 2 + 3 * rng.NextUniform();
      const double brightness = 0.5 + 0.5 * rng.NextUniform();
      for (int64_t y = 0; y < kImageSide; ++y) {
        for (int64_t x = 0; x < kImageSide; ++x) {
          const double d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
          image[y * kImageSide + x] += static_cast<float>(
              brightness * std::exp(-d2 / (2 * sigma * sigma)));
        }
      }
    }
    for (int64_t i = 0; i < pixels; ++i) {
      image[i] = std::min(image[i], 1.0f);
    }
  }
  core::model::SafetensorsFile file;
  file.tensors["inputs"] =
      core::model::Tensor::FromFloats({kCalibrationImages, pixels}, images);
  return file;
}

}  // namespace squeeze::deploy::demo
