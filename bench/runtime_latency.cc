// squeeze-bench-runtime: FP32 latency of an ONNX model on Squeeze's CPU
// runtime (LoadOnnxModel -> Executor on CreateCpuBackend), per batch size and
// thread count, as one JSON object on stdout:
//
//   {"runtime":"squeeze","model":"m.onnx","input":"image","input_shape":[64,1,28,28],
//    "seed":1,"results":[{"threads":1,"batch":1,"iterations":812,"p50_ms":..,
//    "p95_ms":..,"mean_ms":..}, ...]}
//
// "threads":0 is the backend's default (std::thread::hardware_concurrency).
// The model must have exactly one graph input, float32, whose first dimension
// is the batch and whose other dimensions are known. Its values are uniform in
// [0, 1) from --seed (core::eval::SeededNormal), drawn once for the largest
// batch; batch B uses the first B examples.
//
// --parity_dir=DIR also writes, as raw little-endian float32, the input
// (DIR/input.f32, the largest batch) and the first output of every
// configuration (DIR/output_t<threads>_b<batch>.f32), so that another runtime
// can time the same inputs and compare its outputs (bench/ort/time_ort.js).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/eval/latency.h"
#include "core/eval/seeded_normal.h"
#include "core/graph/graph.h"
#include "core/graph/tensor.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/model/file_io.h"
#include "core/model/json.h"
#include "core/onnx/onnx_model.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"

ABSL_FLAG(std::string, model, "", "ONNX model to time.");
ABSL_FLAG(std::string, batches, "1,8,64", "Comma-separated batch sizes.");
ABSL_FLAG(std::string, threads, "1,0",
          "Comma-separated CPU backend thread counts (0: the backend's default).");
ABSL_FLAG(double, seconds, 1.0, "Minimum timed seconds per configuration.");
ABSL_FLAG(int, min_iterations, 10, "Minimum timed runs per configuration.");
ABSL_FLAG(int, warmup, 5, "Untimed runs before timing each configuration.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the input values.");
ABSL_FLAG(std::string, parity_dir, "",
          "When set, write the input and every configuration's first output here.");

namespace {

using squeeze::core::graph::DataType;
using squeeze::core::graph::Graph;
using squeeze::core::graph::Tensor;
using squeeze::core::graph::ValueInfo;
using squeeze::core::runtime::Executor;

absl::StatusOr<std::vector<int>> ParsePositiveList(const std::string& flag,
                                                   const std::string& text, int min_value) {
  std::vector<int> values;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int value = 0;
    if (!absl::SimpleAtoi(part, &value) || value < min_value) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": expected integers >= ",
                                                     min_value, ", got \"", text, "\""));
    }
    values.push_back(value);
  }
  if (values.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, " is empty"));
  return values;
}

// The one fed input of `graph` (graph inputs that are initializers are
// weights, not feeds) and its per-example shape (dimensions after the first).
absl::StatusOr<std::pair<std::string, std::vector<int64_t>>> FedInput(const Graph& graph) {
  std::vector<const ValueInfo*> fed;
  for (const ValueInfo& input : graph.inputs) {
    if (graph.initializers.count(input.name) == 0) fed.push_back(&input);
  }
  if (fed.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the model has ", fed.size(), " fed inputs; this benchmark feeds exactly one"));
  }
  const ValueInfo& input = *fed[0];
  if (input.dtype != DataType::kFloat32 || !input.shape || input.shape->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("input ", input.name, ": expected float32 with a known rank >= 1, got ",
                     squeeze::core::graph::DataTypeName(input.dtype),
                     input.shape ? "" : " of unknown rank"));
  }
  std::vector<int64_t> example_shape;
  for (size_t i = 1; i < input.shape->size(); ++i) {
    const auto& dim = (*input.shape)[i];
    if (!dim.value || *dim.value <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input ", input.name, ": dimension ", i, " is not a known size (symbol \"",
          dim.symbol, "\"); only the first (batch) dimension may be symbolic"));
    }
    example_shape.push_back(*dim.value);
  }
  return std::make_pair(input.name, example_shape);
}

std::string FloatBytes(const Tensor& tensor) {
  const Tensor as_float = tensor.dtype() == DataType::kFloat32
                              ? tensor
                              : squeeze::core::graph::CastTensor(tensor, DataType::kFloat32);
  return std::string(as_float.bytes());
}

absl::Status Run() {
  const std::string model_path = absl::GetFlag(FLAGS_model);
  if (model_path.empty()) return absl::InvalidArgumentError("--model is required");
  SQ_ASSIGN_OR_RETURN(std::vector<int> batches,
                      ParsePositiveList("batches", absl::GetFlag(FLAGS_batches), 1));
  SQ_ASSIGN_OR_RETURN(std::vector<int> thread_counts,
                      ParsePositiveList("threads", absl::GetFlag(FLAGS_threads), 0));
  SQ_ASSIGN_OR_RETURN(Graph graph, squeeze::core::onnx::LoadOnnxModel(model_path));
  SQ_ASSIGN_OR_RETURN(auto fed, FedInput(graph));
  const auto& [input_name, example_shape] = fed;

  const int max_batch = *std::max_element(batches.begin(), batches.end());
  std::vector<int64_t> full_shape = {max_batch};
  full_shape.insert(full_shape.end(), example_shape.begin(), example_shape.end());
  SQ_ASSIGN_OR_RETURN(const int64_t full_count, squeeze::core::graph::CountElements(full_shape));
  const int64_t example_count = full_count / max_batch;
  std::vector<float> values(static_cast<size_t>(full_count));
  squeeze::core::eval::SeededNormal random(absl::GetFlag(FLAGS_seed));
  for (float& value : values) value = static_cast<float>(random.NextUniform());

  const std::string parity_dir = absl::GetFlag(FLAGS_parity_dir);
  if (!parity_dir.empty()) {
    SQ_RETURN_IF_ERROR(squeeze::core::model::WriteFileAtomically(
        parity_dir + "/input.f32",
        std::string_view(reinterpret_cast<const char*>(values.data()),
                         values.size() * sizeof(float))));
  }

  std::string results;
  for (const int threads : thread_counts) {
    SQ_ASSIGN_OR_RETURN(
        Executor executor,
        Executor::Create(graph, squeeze::core::kernels::cpu::CreateCpuBackend(threads)));
    for (const int batch : batches) {
      std::vector<int64_t> shape = {batch};
      shape.insert(shape.end(), example_shape.begin(), example_shape.end());
      const std::vector<float> batch_values(values.begin(),
                                            values.begin() + batch * example_count);
      const std::map<std::string, Tensor> feeds = {
          {input_name, Tensor::FromVector(DataType::kFloat32, shape, batch_values)}};

      // One checked run first: MeasureLatency's callable cannot report errors.
      SQ_ASSIGN_OR_RETURN(std::vector<Tensor> outputs, executor.Run(feeds));
      if (!parity_dir.empty() && !outputs.empty()) {
        SQ_RETURN_IF_ERROR(squeeze::core::model::WriteFileAtomically(
            absl::StrCat(parity_dir, "/output_t", threads, "_b", batch, ".f32"),
            FloatBytes(outputs[0])));
      }
      const squeeze::core::eval::LatencyStats stats = squeeze::core::eval::MeasureLatency(
          [&] { (void)executor.Run(feeds); }, absl::GetFlag(FLAGS_warmup),
          absl::GetFlag(FLAGS_min_iterations), absl::GetFlag(FLAGS_seconds));
      absl::StrAppend(&results, results.empty() ? "" : ",", "{\"threads\":", threads,
                      ",\"batch\":", batch, ",\"iterations\":", stats.iterations,
                      ",\"p50_ms\":", stats.p50 * 1e3, ",\"p95_ms\":", stats.p95 * 1e3,
                      ",\"mean_ms\":", stats.mean * 1e3, "}");
    }
  }
  std::printf("{\"runtime\":\"squeeze\",\"model\":%s,\"input\":%s,\"input_shape\":[%s],"
              "\"seed\":%llu,\"results\":[%s]}\n",
              squeeze::core::model::JsonQuote(model_path).c_str(),
              squeeze::core::model::JsonQuote(input_name).c_str(),
              absl::StrJoin(full_shape, ",").c_str(),
              static_cast<unsigned long long>(absl::GetFlag(FLAGS_seed)), results.c_str());
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (const absl::Status status = Run(); !status.ok()) {
    std::fprintf(stderr, "squeeze-bench-runtime: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
