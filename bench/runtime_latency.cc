// squeeze-bench-runtime: FP32 latency of an ONNX model on Squeeze's CPU
// runtime (LoadOnnxModel -> Executor on CreateCpuBackend), per batch size and
// thread count, as one JSON object on stdout:
//
//   {"runtime":"squeeze","model":"m.onnx","input":"image","input_shape":[64,1,28,28],
//    "seed":1,"results":[{"threads":1,"batch":1,"iterations":812,"p50_ms":..,
//    "p95_ms":..,"mean_ms":..}, ...]}
//
// "threads":0 is the backend's default (std::thread::hardware_concurrency).
// The model must have exactly one fed graph input, float32 or int64 (token
// ids), whose first dimension is the batch; its other dimensions must be
// known or are set by --seq_len. Float values are uniform in [0, 1), int64
// values uniform in [0, --int_high), from --seed (core::eval::SeededNormal),
// drawn once for the largest batch; batch B uses the first B examples. The
// JSON then also carries "input_dtype":"float32" or "int64".
//
// --parity_dir=DIR also writes, as raw little-endian data, the input
// (DIR/input.f32 or DIR/input.i64, the largest batch) and the first output of
// every configuration as float32 (DIR/output_t<threads>_b<batch>.f32), so
// that another runtime can time the same inputs and compare its outputs
// (bench/ort/time_ort.js).
//
// --profile prints to stderr, per configuration, the time spent in each
// operator type (a backend wrapper times every node call; "Conv+Relu" is a
// call with a fused activation), or in each node with --profile_nodes, to see
// where a model's time goes.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
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
ABSL_FLAG(int64_t, seq_len, 0,
          "Size of the input's symbolic dimensions after the first (e.g. an LM's sequence).");
ABSL_FLAG(int64_t, int_high, 0, "int64 inputs are uniform in [0, int_high) (e.g. the vocabulary).");
ABSL_FLAG(bool, profile, false, "Print the time per operator type to stderr.");
ABSL_FLAG(bool, fuse, true,
          "Let the executor fuse Relu / MaxPool into Conv, Gemm and MatMul (false: each node alone, "
          "to measure what fusion saves).");
ABSL_FLAG(bool, profile_nodes, false,
          "With --profile: time per node (name, operator, input shapes) instead of per operator.");

namespace {

using squeeze::core::graph::DataType;
using squeeze::core::graph::Graph;
using squeeze::core::graph::Tensor;
using squeeze::core::graph::ValueInfo;
using squeeze::core::runtime::Executor;
using squeeze::core::runtime::KernelBackend;
using squeeze::core::runtime::KernelCall;

// Times every node call of a wrapped backend, per operator type; passes the
// backend's fusions on only when `fuse`.
class ProfilingBackend : public KernelBackend {
 public:
  ProfilingBackend(std::shared_ptr<const KernelBackend> base, bool fuse)
      : base_(std::move(base)), fuse_(fuse) {}

  std::string name() const override { return base_->name(); }
  bool Supports(absl::string_view op_type) const override { return base_->Supports(op_type); }
  bool FusesActivation(const squeeze::core::graph::Node& node,
                       absl::string_view activation) const override {
    return fuse_ && base_->FusesActivation(node, activation);
  }
  bool FusesMaxPool(const squeeze::core::graph::Node& node,
                    const squeeze::core::graph::Node& pool) const override {
    return fuse_ && base_->FusesMaxPool(node, pool);
  }

  absl::StatusOr<std::vector<Tensor>> Run(const KernelCall& call) const override {
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<std::vector<Tensor>> result = base_->Run(call);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::string key = call.node.op_type;
    if (!call.fused_activation.empty()) absl::StrAppend(&key, "+", call.fused_activation);
    if (call.fused_pool != nullptr) absl::StrAppend(&key, "+", call.fused_pool->op_type);
    std::lock_guard<std::mutex> lock(mutex_);
    if (per_node_) {
      std::string shapes;
      for (const Tensor* input : call.inputs) {
        absl::StrAppend(&shapes, shapes.empty() ? "" : " ",
                        input ? squeeze::core::graph::ShapeToString(input->shape()) : "-");
      }
      key = absl::StrCat(call.node.name, " ", key, " ", shapes);
    }
    auto& [total, count] = totals_[key];
    total += seconds;
    ++count;
    return result;
  }

  // Whether the totals are per node (name, operator, input shapes) rather
  // than per operator type.
  void PerNode(bool on) const {
    std::lock_guard<std::mutex> lock(mutex_);
    per_node_ = on;
  }

  // Prints the totals since the last Print, largest first, and clears them.
  void Print(const std::string& title, int64_t runs) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::pair<double, std::string>> rows;
    double all = 0;
    for (const auto& [op, entry] : totals_) {
      rows.emplace_back(entry.first, op);
      all += entry.first;
    }
    std::sort(rows.rbegin(), rows.rend());
    std::fprintf(stderr, "profile %s: %.3f ms per run in kernels\n", title.c_str(),
                 all * 1e3 / std::max<int64_t>(1, runs));
    for (const auto& [seconds, op] : rows) {
      std::fprintf(stderr, "  %-32s %8.3f ms/run %5.1f%%  (%lld calls/run)\n", op.c_str(),
                   seconds * 1e3 / std::max<int64_t>(1, runs), 100.0 * seconds / std::max(all, 1e-12),
                   static_cast<long long>(totals_.at(op).second / std::max<int64_t>(1, runs)));
    }
    totals_.clear();
  }

 private:
  std::shared_ptr<const KernelBackend> base_;
  bool fuse_;
  mutable std::mutex mutex_;
  mutable std::map<std::string, std::pair<double, int64_t>> totals_;
  mutable bool per_node_ = false;
};

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

struct FedInputInfo {
  std::string name;
  DataType dtype;
  std::vector<int64_t> example_shape;  // dimensions after the first
};

// The one fed input of `graph` (graph inputs that are initializers are
// weights, not feeds); symbolic dimensions after the first become seq_len.
absl::StatusOr<FedInputInfo> FedInput(const Graph& graph, int64_t seq_len) {
  std::vector<const ValueInfo*> fed;
  for (const ValueInfo& input : graph.inputs) {
    if (graph.initializers.count(input.name) == 0) fed.push_back(&input);
  }
  if (fed.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the model has ", fed.size(), " fed inputs; this benchmark feeds exactly one"));
  }
  const ValueInfo& input = *fed[0];
  if ((input.dtype != DataType::kFloat32 && input.dtype != DataType::kInt64) || !input.shape ||
      input.shape->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("input ", input.name, ": expected float32 or int64 with a known rank >= 1, got ",
                     squeeze::core::graph::DataTypeName(input.dtype),
                     input.shape ? "" : " of unknown rank"));
  }
  std::vector<int64_t> example_shape;
  for (size_t i = 1; i < input.shape->size(); ++i) {
    const auto& dim = (*input.shape)[i];
    if (dim.value && *dim.value > 0) {
      example_shape.push_back(*dim.value);
      continue;
    }
    if (seq_len <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input ", input.name, ": dimension ", i, " is not a known size (symbol \"",
          dim.symbol, "\"); give --seq_len"));
    }
    example_shape.push_back(seq_len);
  }
  return FedInputInfo{input.name, input.dtype, example_shape};
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
  SQ_ASSIGN_OR_RETURN(const FedInputInfo fed, FedInput(graph, absl::GetFlag(FLAGS_seq_len)));
  const std::string& input_name = fed.name;
  const std::vector<int64_t>& example_shape = fed.example_shape;
  const bool int_input = fed.dtype == DataType::kInt64;
  const int64_t int_high = absl::GetFlag(FLAGS_int_high);
  if (int_input && int_high <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("input ", input_name,
                                                   " is int64: --int_high must be positive, got ",
                                                   int_high));
  }

  const int max_batch = *std::max_element(batches.begin(), batches.end());
  std::vector<int64_t> full_shape = {max_batch};
  full_shape.insert(full_shape.end(), example_shape.begin(), example_shape.end());
  SQ_ASSIGN_OR_RETURN(const int64_t full_count, squeeze::core::graph::CountElements(full_shape));
  const int64_t example_count = full_count / max_batch;
  std::vector<float> values(int_input ? 0 : static_cast<size_t>(full_count));
  std::vector<int64_t> ids(int_input ? static_cast<size_t>(full_count) : 0);
  squeeze::core::eval::SeededNormal random(absl::GetFlag(FLAGS_seed));
  for (float& value : values) value = static_cast<float>(random.NextUniform());
  for (int64_t& id : ids) {
    id = std::min(int_high - 1, static_cast<int64_t>(random.NextUniform() * int_high));
  }

  const std::string parity_dir = absl::GetFlag(FLAGS_parity_dir);
  if (!parity_dir.empty()) {
    SQ_RETURN_IF_ERROR(squeeze::core::model::WriteFileAtomically(
        parity_dir + (int_input ? "/input.i64" : "/input.f32"),
        int_input ? std::string_view(reinterpret_cast<const char*>(ids.data()),
                                     ids.size() * sizeof(int64_t))
                  : std::string_view(reinterpret_cast<const char*>(values.data()),
                                     values.size() * sizeof(float))));
  }

  std::string results;
  for (const int threads : thread_counts) {
    std::shared_ptr<const KernelBackend> backend =
        squeeze::core::kernels::cpu::CreateCpuBackend(threads);
    std::shared_ptr<const ProfilingBackend> profiler;
    if (absl::GetFlag(FLAGS_profile) || !absl::GetFlag(FLAGS_fuse)) {
      auto wrapper = std::make_shared<const ProfilingBackend>(backend, absl::GetFlag(FLAGS_fuse));
      wrapper->PerNode(absl::GetFlag(FLAGS_profile_nodes));
      backend = wrapper;
      if (absl::GetFlag(FLAGS_profile)) profiler = wrapper;
    }
    SQ_ASSIGN_OR_RETURN(Executor executor, Executor::Create(graph, backend));
    for (const int batch : batches) {
      std::vector<int64_t> shape = {batch};
      shape.insert(shape.end(), example_shape.begin(), example_shape.end());
      const std::map<std::string, Tensor> feeds = {
          {input_name,
           int_input ? Tensor::FromVector(DataType::kInt64, shape,
                                          std::vector<int64_t>(ids.begin(),
                                                               ids.begin() + batch * example_count))
                     : Tensor::FromVector(DataType::kFloat32, shape,
                                          std::vector<float>(values.begin(),
                                                             values.begin() + batch * example_count))}};

      // One checked run first: MeasureLatency's callable cannot report errors.
      SQ_ASSIGN_OR_RETURN(std::vector<Tensor> outputs, executor.Run(feeds));
      if (!parity_dir.empty() && !outputs.empty()) {
        SQ_RETURN_IF_ERROR(squeeze::core::model::WriteFileAtomically(
            absl::StrCat(parity_dir, "/output_t", threads, "_b", batch, ".f32"),
            FloatBytes(outputs[0])));
      }
      const int warmup = absl::GetFlag(FLAGS_warmup);
      if (profiler) profiler->Print("(checked run, discarded)", 1);
      const squeeze::core::eval::LatencyStats stats = squeeze::core::eval::MeasureLatency(
          [&] { (void)executor.Run(feeds); }, warmup, absl::GetFlag(FLAGS_min_iterations),
          absl::GetFlag(FLAGS_seconds));
      if (profiler) {
        profiler->Print(absl::StrCat("threads ", threads, " batch ", batch, ", p50 ",
                                     stats.p50 * 1e3, " ms"),
                        warmup + stats.iterations);
      }
      absl::StrAppend(&results, results.empty() ? "" : ",", "{\"threads\":", threads,
                      ",\"batch\":", batch, ",\"iterations\":", stats.iterations,
                      ",\"p50_ms\":", stats.p50 * 1e3, ",\"p95_ms\":", stats.p95 * 1e3,
                      ",\"mean_ms\":", stats.mean * 1e3, "}");
    }
  }
  std::printf("{\"runtime\":\"squeeze\",\"model\":%s,\"input\":%s,\"input_dtype\":\"%s\","
              "\"input_shape\":[%s],\"seed\":%llu,\"results\":[%s]}\n",
              squeeze::core::model::JsonQuote(model_path).c_str(),
              squeeze::core::model::JsonQuote(input_name).c_str(),
              int_input ? "int64" : "float32",
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
