// W8A8 variants in our runtime (issue 4): the Fashion-MNIST MLP and CNN in
// fp32, their W8A8 PTQ variant as the simulated graph (dequantized weights,
// activation QuantizeLinear -> DequantizeLinear; what variants ran before)
// and the same variant on the int8 kernels (quant::gemm::UseInt8Kernels +
// CreateInt8QdqBackend), through the Executor at batch 1, 8 and 32, all on
// one thread, in the same run; for the CNN both with its Conv layers left
// fp32 (conv=false) and on the int8 Conv (conv=true; the default where the
// GEMM path is avx512vnni). Each figure is the median over --repeats
// alternating rounds of the per-round median latency; ratios are fp32 /
// int8 of those medians. Calibration and timing inputs are seeded uniform
// [0, 1) pixels (latency does not depend on them); the int8 outputs are
// checked against the simulated graph's.
//
//   build-vnni/bin/squeeze-bench-int8-runtime [--repeats=5] [--min_seconds=0.2]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/bench_util.h"
#include "absl/strings/str_format.h"
#include "core/eval/latency.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/onnx/onnx_model.h"
#include "core/quant/gemm/gemm_dispatch.h"
#include "core/quant/gemm/qdq_runtime.h"
#include "core/quant/ptq/ptq.h"
#include "core/runtime/executor.h"

ABSL_FLAG(std::string, models_dir, "deploy/models", "Holds fashion_mnist_mlp.onnx and fashion_mnist_cnn.onnx.");
ABSL_FLAG(int, repeats, 5, "Alternating rounds per figure (the median is reported).");
ABSL_FLAG(double, min_seconds, 0.2, "Timed seconds per round and graph (at least 10 calls).");

namespace {

using namespace squeeze::core;  // NOLINT: a benchmark main
namespace bench = squeeze::bench;

using bench::Check;
using bench::MedianOf;

double RoundMs(const std::function<void()>& fn) { return bench::RoundMs(fn, absl::GetFlag(FLAGS_min_seconds)); }

void BenchModel(const std::string& file) {
  const graph::Graph original = Check(onnx::LoadOnnxModel(absl::GetFlag(FLAGS_models_dir) + "/" + file));
  const graph::ValueInfo& input = original.inputs.at(0);
  auto shape_for = [&](int64_t batch) {
    std::vector<int64_t> shape;
    for (const graph::Dim& dim : *input.shape) shape.push_back(dim.value.value_or(batch));
    return shape;
  };
  std::vector<quant::ptq::CalibrationBatch> batches;
  for (uint32_t i = 0; i < 4; ++i) batches.push_back({{input.name, bench::UniformTensor(shape_for(32), i)}});
  quant::ptq::PtqOptions options;
  options.weights.emplace();
  options.weights->format = {8, 0, false};
  options.activations.emplace();
  const quant::ptq::PtqResult ptq = Check(quant::ptq::QuantizeGraph(original, batches, options));
  const quant::ptq::LayerScan scan = Check(quant::ptq::FindQuantizableLayers(original));
  std::map<std::string, std::string> weight_of;
  for (const auto& layer : scan.layers) weight_of[layer.name] = layer.weight;
  std::map<std::string, quant::QuantizedLinear> packed;
  for (const auto& linear : ptq.packed) packed[weight_of.at(linear.name)] = linear;
  graph::Graph runtime_graph = ptq.graph;
  const quant::gemm::Int8Rewrite rewrite =
      Check(quant::gemm::UseInt8Kernels(&runtime_graph, packed, {/*conv=*/false}));
  std::printf("\n%s (GEMM path %s, int8 Conv by default: %s)\nconv=false: %s\n", file.c_str(),
              quant::gemm::GemmPathName(Check(quant::gemm::ResolveGemmPath(quant::gemm::GemmPath::kAuto))),
              quant::gemm::Int8ConvFasterThanFp32() ? "yes" : "no",
              quant::gemm::DescribeInt8Rewrite(rewrite).c_str());
  graph::Graph conv_graph = ptq.graph;
  const quant::gemm::Int8Rewrite conv_rewrite =
      Check(quant::gemm::UseInt8Kernels(&conv_graph, packed, {/*conv=*/true}));
  const bool has_conv = conv_rewrite.int8_layers.size() > rewrite.int8_layers.size();
  if (has_conv) std::printf("conv=true: %s\n", quant::gemm::DescribeInt8Rewrite(conv_rewrite).c_str());

  auto cpu = kernels::cpu::CreateCpuBackend(1);
  const auto fp32 = Check(runtime::Executor::Create(original, cpu));
  const auto simulated = Check(runtime::Executor::Create(ptq.graph, cpu));
  auto int8_backend = quant::gemm::CreateInt8QdqBackend(cpu, 1);
  const auto int8 = Check(runtime::Executor::Create(runtime_graph, int8_backend));
  const auto int8_conv = Check(runtime::Executor::Create(conv_graph, int8_backend));
  std::printf("| batch | fp32 ms | W8A8 simulated ms | W8A8 int8, Conv fp32 ms | fp32 / it | W8A8 int8 incl. Conv ms | "
              "fp32 / it | max |int8 - sim| / max |sim| |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (int64_t batch : {1, 8, 32}) {
    const std::map<std::string, graph::Tensor> feeds = {{input.name, bench::UniformTensor(shape_for(batch), 100)}};
    const std::vector<float> sim_y = Check(simulated.Run(feeds))[0].ToFloats();
    const std::vector<float> int8_y = Check((has_conv ? int8_conv : int8).Run(feeds))[0].ToFloats();
    double diff = 0, scale = 0;
    for (size_t i = 0; i < sim_y.size(); ++i) {
      diff = std::max(diff, std::fabs(double{int8_y[i]} - sim_y[i]));
      scale = std::max(scale, std::fabs(double{sim_y[i]}));
    }
    std::vector<double> f, s, q, qc;
    for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
      f.push_back(RoundMs([&] { Check(fp32.Run(feeds)); }));
      s.push_back(RoundMs([&] { Check(simulated.Run(feeds)); }));
      q.push_back(RoundMs([&] { Check(int8.Run(feeds)); }));
      if (has_conv) qc.push_back(RoundMs([&] { Check(int8_conv.Run(feeds)); }));
    }
    const double fm = MedianOf(f), sm = MedianOf(s), qm = MedianOf(q);
    const std::string conv_cells =
        has_conv ? absl::StrFormat("%.4f | %.2fx", MedianOf(qc), fm / MedianOf(qc)) : std::string("- | -");
    std::printf("| %lld | %.4f | %.4f | %.4f | %.2fx | %s | %.1e |\n", static_cast<long long>(batch), fm, sm, qm,
                fm / qm, conv_cells.c_str(), scale > 0 ? diff / scale : diff);
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  BenchModel("fashion_mnist_mlp.onnx");
  BenchModel("fashion_mnist_cnn.onnx");
  return 0;
}
