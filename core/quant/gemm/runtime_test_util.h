// Test helpers for the runtime passes of core/quant/gemm (qdq_runtime_test,
// weight_only_runtime_test): random tensors, running a graph on a backend,
// counting ops.
#ifndef SQUEEZE_CORE_QUANT_GEMM_RUNTIME_TEST_UTIL_H_
#define SQUEEZE_CORE_QUANT_GEMM_RUNTIME_TEST_UTIL_H_

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/graph/graph.h"
#include "core/quant/ptq/calibration.h"
#include "core/quant/ptq/test_models.h"
#include "core/runtime/executor.h"
#include "gtest/gtest.h"

namespace squeeze::core::quant::gemm {

using ptq::Random;  // core/quant/ptq/test_models.h

// The first output of `graph` on `batch` as floats; test failures (and an
// empty result) when it does not run.
inline std::vector<float> RunGraph(const graph::Graph& graph, std::shared_ptr<const runtime::KernelBackend> backend,
                                   const ptq::CalibrationBatch& batch) {
  auto executor = runtime::Executor::Create(graph, std::move(backend));
  EXPECT_TRUE(executor.ok()) << executor.status();
  if (!executor.ok()) return {};
  auto outputs = executor->Run(batch);
  EXPECT_TRUE(outputs.ok()) << outputs.status();
  if (!outputs.ok()) return {};
  return outputs->at(0).ToFloats();
}

inline int CountOps(const graph::Graph& graph, const std::string& op) {
  return static_cast<int>(std::count_if(graph.nodes.begin(), graph.nodes.end(),
                                        [&](const graph::Node& node) { return node.op_type == op; }));
}

}  // namespace squeeze::core::quant::gemm

#endif  // SQUEEZE_CORE_QUANT_GEMM_RUNTIME_TEST_UTIL_H_
