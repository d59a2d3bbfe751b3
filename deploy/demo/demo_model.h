// The demo model and calibration set shipped in deploy/demo/, generated
// deterministically (see make_demo_model.cc) so that anyone can rebuild and
// check the committed files.
#ifndef SQUEEZE_DEPLOY_DEMO_DEMO_MODEL_H_
#define SQUEEZE_DEPLOY_DEMO_DEMO_MODEL_H_

#include <cstdint>

#include "core/model/safetensors.h"

namespace squeeze::deploy::demo {

inline constexpr uint64_t kDemoSeed = 20240601;
inline constexpr int64_t kImageSide = 28;
inline constexpr int64_t kCalibrationImages = 128;

// A 784 -> 256 -> 128 -> 10 MLP (layers fc1, fc2, fc3), He-initialised
// weights (N(0, 2 / in)) and small N(0, 0.01^2) biases, float32, with
// metadata squeeze.layers = "fc1,fc2,fc3".
core::model::SafetensorsFile MakeDemoModel();

// Tensor "inputs" [128, 784]: 28x28 images in [0, 1], each the clamped sum
// of one to three Gaussian blobs of random position, width and brightness.
core::model::SafetensorsFile MakeDemoCalibration();

}  // namespace squeeze::deploy::demo

#endif  // SQUEEZE_DEPLOY_DEMO_DEMO_MODEL_H_
