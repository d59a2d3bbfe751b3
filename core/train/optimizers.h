// Optimizers that update a GradientProgram's parameters in place, and
// gradient clipping. Parameters and gradients are float32 maps keyed by
// initializer name; state (momentum, moments) is kept per name.
#ifndef SQUEEZE_CORE_TRAIN_OPTIMIZERS_H_
#define SQUEEZE_CORE_TRAIN_OPTIMIZERS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/train/autograd.h"

namespace squeeze::core::train {

// Scales every gradient by min(1, max_norm / global L2 norm) and returns the
// norm before clipping. max_norm <= 0 leaves them unchanged.
double ClipGradientNorm(TensorMap* gradients, double max_norm);

struct SgdOptions {
  double learning_rate = 0.01;
  double momentum = 0.9;
  double weight_decay = 0;  // L2 added to the gradient.
};

class Sgd {
 public:
  explicit Sgd(SgdOptions options) : options_(options) {}
  // INVALID_ARGUMENT naming a gradient whose parameter is missing or whose
  // shape differs.
  absl::Status Step(TensorMap* parameters, const TensorMap& gradients);
  void set_learning_rate(double rate) { options_.learning_rate = rate; }

 private:
  SgdOptions options_;
  std::map<std::string, std::vector<float>> velocity_;
};

struct AdamWOptions {
  double learning_rate = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
  double weight_decay = 0.01;  // Decoupled (Loshchilov & Hutter), not L2.
};

class AdamW {
 public:
  explicit AdamW(AdamWOptions options) : options_(options) {}
  absl::Status Step(TensorMap* parameters, const TensorMap& gradients);
  void set_learning_rate(double rate) { options_.learning_rate = rate; }
  int64_t steps() const { return steps_; }

 private:
  AdamWOptions options_;
  int64_t steps_ = 0;
  std::map<std::string, std::vector<float>> first_, second_;
};

}  // namespace squeeze::core::train

#endif  // SQUEEZE_CORE_TRAIN_OPTIMIZERS_H_
