#include "core/train/optimizers.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace squeeze::core::train {
namespace {

absl::StatusOr<Tensor*> ParameterFor(TensorMap* parameters, const std::string& name,
                                     const Tensor& gradient) {
  auto it = parameters->find(name);
  if (it == parameters->end()) {
    return absl::InvalidArgumentError(absl::StrCat("gradient for unknown parameter '", name, "'"));
  }
  if (it->second.shape() != gradient.shape() || it->second.dtype() != graph::DataType::kFloat32) {
    return absl::InvalidArgumentError(
        absl::StrCat("gradient for '", name, "' does not match the parameter's float32 shape"));
  }
  return &it->second;
}

}  // namespace

double ClipGradientNorm(TensorMap* gradients, double max_norm) {
  double sum = 0;
  for (const auto& [name, gradient] : *gradients) {
    const float* g = gradient.data<float>();
    for (int64_t i = 0; i < gradient.num_elements(); ++i) sum += static_cast<double>(g[i]) * g[i];
  }
  const double norm = std::sqrt(sum);
  if (max_norm > 0 && norm > max_norm) {
    const float scale = static_cast<float>(max_norm / norm);
    for (auto& [name, gradient] : *gradients) {
      float* g = gradient.data<float>();
      for (int64_t i = 0; i < gradient.num_elements(); ++i) g[i] *= scale;
    }
  }
  return norm;
}

absl::Status Sgd::Step(TensorMap* parameters, const TensorMap& gradients) {
  for (const auto& [name, gradient] : gradients) {
    absl::StatusOr<Tensor*> parameter = ParameterFor(parameters, name, gradient);
    if (!parameter.ok()) return parameter.status();
    float* w = (*parameter)->data<float>();
    const float* g = gradient.data<float>();
    std::vector<float>& v = velocity_[name];
    v.resize(gradient.num_elements(), 0.0f);
    for (int64_t i = 0; i < gradient.num_elements(); ++i) {
      const float step = g[i] + static_cast<float>(options_.weight_decay) * w[i];
      v[i] = static_cast<float>(options_.momentum) * v[i] + step;
      w[i] -= static_cast<float>(options_.learning_rate) * v[i];
    }
  }
  return absl::OkStatus();
}

absl::Status AdamW::Step(TensorMap* parameters, const TensorMap& gradients) {
  ++steps_;
  const double correction1 = 1 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double correction2 = 1 - std::pow(options_.beta2, static_cast<double>(steps_));
  const float lr = static_cast<float>(options_.learning_rate);
  const float decay = static_cast<float>(options_.learning_rate * options_.weight_decay);
  for (const auto& [name, gradient] : gradients) {
    absl::StatusOr<Tensor*> parameter = ParameterFor(parameters, name, gradient);
    if (!parameter.ok()) return parameter.status();
    float* w = (*parameter)->data<float>();
    const float* g = gradient.data<float>();
    std::vector<float>& m = first_[name];
    std::vector<float>& v = second_[name];
    m.resize(gradient.num_elements(), 0.0f);
    v.resize(gradient.num_elements(), 0.0f);
    for (int64_t i = 0; i < gradient.num_elements(); ++i) {
      m[i] = static_cast<float>(options_.beta1) * m[i] + static_cast<float>(1 - options_.beta1) * g[i];
      v[i] = static_cast<float>(options_.beta2) * v[i] + static_cast<float>(1 - options_.beta2) * g[i] * g[i];
      const float m_hat = static_cast<float>(m[i] / correction1);
      const float v_hat = static_cast<float>(v[i] / correction2);
      w[i] -= lr * m_hat / (std::sqrt(v_hat) + static_cast<float>(options_.epsilon)) + decay * w[i];
    }
  }
  return absl::OkStatus();
}

}  // namespace squeeze::core::train
