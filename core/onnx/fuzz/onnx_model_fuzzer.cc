// libFuzzer target for ParseOnnxModel (import, ONNX shape inference) and,
// when a graph comes back, the IR's own shape inference and Executor::Create
// on the CPU backend.
#include <cstdint>

#include "core/graph/shape_inference.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/onnx/onnx_model.h"
#include "core/runtime/executor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<squeeze::core::graph::Graph> graph =
      squeeze::core::onnx::ParseOnnxModel(bytes, "");
  if (graph.ok()) {
    squeeze::core::graph::Graph copy = *graph;
    (void)squeeze::core::graph::InferShapes(&copy);
    (void)squeeze::core::runtime::Executor::Create(
        *std::move(graph), squeeze::core::kernels::cpu::CreateCpuBackend(1));
  }
  return 0;
}
