// A small quantizable model and seeded random tensors for the tests of the
// layer techniques (ptq_test, prune's unstructured_test, the gemm runtime
// tests), so that they exercise the same graph.
#ifndef SQUEEZE_CORE_QUANT_PTQ_TEST_MODELS_H_
#define SQUEEZE_CORE_QUANT_PTQ_TEST_MODELS_H_

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/graph/builder.h"
#include "core/graph/graph.h"

namespace squeeze::core::quant::ptq {

// Normal(0, stddev) float32 values drawn from `rng`.
inline graph::Tensor Random(std::vector<int64_t> shape, std::mt19937* rng, float stddev = 1.0f) {
  graph::Tensor t(graph::DataType::kFloat32, std::move(shape));
  std::normal_distribution<float> normal(0, stddev);
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = normal(*rng);
  return t;
}

// image [N, 2, 6, 6] -> Conv 3x3 (4 channels) -> Relu -> Flatten -> Gemm
// (transB) [32] -> Relu -> MatMul(Transpose(W)) [16] = logits. With
// `tied_head`, logits = that + a tied table [16, 16] read by a Gather and a
// Transpose-MatMul (not quantizable or prunable).
inline graph::Graph SmallModel(uint32_t seed, bool tied_head = true) {
  using graph::DataType;
  std::mt19937 rng(seed);
  graph::GraphBuilder b(tied_head ? "small" : "conv_model");
  std::string x = b.Add("Conv", {"image", b.Initializer("conv.weight", Random({4, 2, 3, 3}, &rng, 0.5f)),
                                 b.Initializer("conv.bias", Random({4}, &rng, 0.1f))},
                        {{"pads", std::vector<int64_t>{1, 1, 1, 1}}, {"kernel_shape", std::vector<int64_t>{3, 3}}});
  x = b.Add("Flatten", {b.Add("Relu", {x})});
  x = b.Add("Relu", {b.Add("Gemm", {x, b.Initializer("fc1.weight", Random({32, 144}, &rng, 0.1f)),
                                    b.Initializer("fc1.bias", Random({32}, &rng, 0.1f))},
                           {{"transB", int64_t{1}}})});
  x = b.Add("MatMul", {x, b.Add("Transpose", {b.Initializer("fc2.weight", Random({16, 32}, &rng, 0.3f))},
                                {{"perm", std::vector<int64_t>{1, 0}}})},
            {}, tied_head ? "" : "logits");
  if (tied_head) {
    b.Initializer("table", Random({16, 16}, &rng));
    b.Initializer("index", graph::Tensor::FromVector<int64_t>(DataType::kInt64, {1}, {0}));
    const std::string row = b.Add("Gather", {"table", "index"});
    b.Add("Add", {b.Add("MatMul", {x, b.Add("Transpose", {"table"}, {{"perm", std::vector<int64_t>{1, 0}}})}), row},
          {}, "logits");
  }
  b.AddInput({"image", DataType::kFloat32, std::nullopt});
  b.AddOutput({"logits", DataType::kFloat32, std::nullopt});
  return b.Finish();
}

}  // namespace squeeze::core::quant::ptq

#endif  // SQUEEZE_CORE_QUANT_PTQ_TEST_MODELS_H_
