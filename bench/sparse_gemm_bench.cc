// 2:4 sparse GEMM speed (issue 5): the CPU backend's dense Gemm node (Eigen,
// Y = X W^T + b) against core/prune's N:M kernel over the compressed weight
// (values [out, in/2] + 2-bit indices), on the layer shapes of the reference
// LM and the Fashion-MNIST MLP, batch 1 and 32, both on one thread, in the
// same run. Each figure is the median over --repeats alternating rounds of
// the per-round median latency; the ratio is dense / sparse (> 1: the sparse
// kernel is faster). The weights are the models' own, pruned 2:4 by
// magnitude; the two products are checked against each other. Then whole
// models in the runtime (Executor): the 2:4-pruned MLP and LM with masked
// dense weights on the CPU backend against the compressed form on the N:M
// backend (prune::UseNmSparseKernels + CreateNmSparseBackend).
//
//   build/bin/squeeze-bench-sparse [--repeats=5] [--min_seconds=0.2]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/bench_util.h"
#include "core/eval/latency.h"
#include "core/graph/passes.h"
#include "core/hf/hf_checkpoint.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/onnx/onnx_model.h"
#include "core/prune/nm_sparse.h"
#include "core/prune/unstructured.h"
#include "core/quant/ptq/layers.h"
#include "core/runtime/executor.h"

ABSL_FLAG(std::string, models_dir, "deploy/models", "The reference models (lm/ and fashion_mnist_mlp.onnx).");
ABSL_FLAG(int, repeats, 5, "Alternating rounds per figure (the median is reported).");
ABSL_FLAG(double, min_seconds, 0.2, "Timed seconds per round and kernel (at least 10 calls).");

namespace {

using namespace squeeze::core;  // NOLINT: a benchmark main
namespace bench = squeeze::bench;

using bench::Check;
using bench::MedianOf;

double RoundMs(const std::function<void()>& fn) { return bench::RoundMs(fn, absl::GetFlag(FLAGS_min_seconds)); }

struct Layer {
  std::string model, name;
  std::vector<float> weight;  // [out, in]
  int64_t out = 0, in = 0;
};

// One layer per distinct [out, in] shape of `graph`.
void CollectShapes(const std::string& model, const graph::Graph& graph, std::vector<Layer>* layers) {
  std::set<std::pair<int64_t, int64_t>> seen;
  const auto scan = Check(quant::ptq::FindQuantizableLayers(graph));
  for (const auto& layer : scan.layers) {
    if (layer.op_type == "Conv" || !seen.insert({layer.out, layer.in}).second) continue;
    layers->push_back({model, layer.name, quant::ptq::WeightMatrix(graph, layer), layer.out, layer.in});
  }
}

void Bench(const Layer& layer, int64_t batch) {
  const std::vector<float> pruned = Check(prune::PruneMagnitude(layer.name, layer.weight, layer.out, layer.in, {0, 2, 4}));
  const prune::NmSparseMatrix sparse = Check(prune::CompressNm(pruned, layer.out, layer.in, 2, 4, layer.name));
  std::vector<float> x(batch * layer.in);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
  const std::vector<float> bias(layer.out, 0.1f);

  auto backend = kernels::cpu::CreateCpuBackend(1);
  const graph::Tensor xt = graph::Tensor::FromVector(graph::DataType::kFloat32, {batch, layer.in}, x);
  const graph::Tensor wt = graph::Tensor::FromVector(graph::DataType::kFloat32, {layer.out, layer.in}, pruned);
  const graph::Tensor bt = graph::Tensor::FromVector(graph::DataType::kFloat32, {layer.out}, bias);
  graph::Node gemm{"gemm", "Gemm", "", {"x", "w", "b"}, {"y"}, {{"transB", int64_t{1}}}};
  const runtime::KernelCall call{gemm, 13, {&xt, &wt, &bt}};
  std::vector<float> y(batch * layer.out);

  const graph::Tensor dense_y = Check(backend->Run(call))[0];
  prune::NmSparseMatMul(x.data(), batch, prune::ViewOf(sparse), bias.data(), y.data());
  double max_difference = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    max_difference = std::max<double>(max_difference, std::fabs(y[i] - dense_y.data<float>()[i]));
  }

  std::vector<double> dense_ms, sparse_ms, ratios;
  for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
    const double d = RoundMs([&] { Check(backend->Run(call)); });
    const double s = RoundMs([&] { prune::NmSparseMatMul(x.data(), batch, prune::ViewOf(sparse), bias.data(), y.data()); });
    dense_ms.push_back(d);
    sparse_ms.push_back(s);
    ratios.push_back(d / s);
  }
  const double ratio = MedianOf(ratios);
  std::printf("| %s | %s [%lld x %lld] | %lld | %.4f | %.4f | %.2fx | %s | %.1e |\n", layer.model.c_str(),
              layer.name.c_str(), static_cast<long long>(layer.out), static_cast<long long>(layer.in),
              static_cast<long long>(batch), MedianOf(dense_ms), MedianOf(sparse_ms), ratio,
              ratio > 1.0 ? "faster" : "NOT faster", max_difference);
  std::fflush(stdout);
}

// Whole-model latency in the runtime: the 2:4 magnitude-pruned model
// (constants folded) as dense masked weights on the CPU backend against the
// same model rewritten by UseNmSparseKernels on the N:M backend, both one
// thread.
void BenchModel(const std::string& model, const graph::Graph& dense, const std::string& input,
                const graph::Tensor& feed) {
  prune::PruneOptions options;
  options.nm_n = 2;
  options.nm_m = 4;
  const auto scan = Check(quant::ptq::FindQuantizableLayers(dense));
  for (const auto& layer : scan.layers) {
    if (layer.in % 4 != 0) options.skip_layers.push_back(layer.name);
  }
  graph::Graph pruned = Check(prune::PruneGraph(dense, {}, options)).graph;
  auto cpu = kernels::cpu::CreateCpuBackend(1);
  // Fold the LM's weight Transposes first, so that the dense side does not
  // transpose every weight on every run (the rewrite removes them too).
  const absl::Status folded = graph::FoldConstants(&pruned, *cpu);
  if (!folded.ok()) Check(absl::StatusOr<int>(folded));
  graph::Graph compressed = pruned;
  const size_t rewritten = Check(prune::UseNmSparseKernels(&compressed, 2, 4)).size();
  const auto dense_run = Check(runtime::Executor::Create(pruned, cpu));
  const auto sparse_run = Check(runtime::Executor::Create(compressed, prune::CreateNmSparseBackend(cpu)));
  const std::map<std::string, graph::Tensor> feeds = {{input, feed}};
  std::vector<double> dense_ms, sparse_ms, ratios;
  for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
    const double d = RoundMs([&] { Check(dense_run.Run(feeds)); });
    const double s = RoundMs([&] { Check(sparse_run.Run(feeds)); });
    dense_ms.push_back(d);
    sparse_ms.push_back(s);
    ratios.push_back(d / s);
  }
  const double ratio = MedianOf(ratios);
  std::printf("| %s | %s | %zu | %.3f | %.3f | %.2fx | %s |\n", model.c_str(),
              graph::ShapeToString(feed.shape()).c_str(), rewritten, MedianOf(dense_ms), MedianOf(sparse_ms), ratio,
              ratio > 1.0 ? "faster" : "NOT faster");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string dir = absl::GetFlag(FLAGS_models_dir);
  std::vector<Layer> layers;
  CollectShapes("LLaMA LM", Check(hf::LoadHfCheckpoint(dir + "/lm")).graph, &layers);
  CollectShapes("Fashion-MNIST MLP", Check(onnx::LoadOnnxModel(dir + "/fashion_mnist_mlp.onnx")), &layers);
  std::printf("1 thread; median ms over %d rounds (each the median of >= 10 calls, >= %.2f s); ratio = dense / 2:4\n\n",
              absl::GetFlag(FLAGS_repeats), absl::GetFlag(FLAGS_min_seconds));
  std::printf("| model | layer | batch | dense Gemm ms | 2:4 kernel ms | dense / 2:4 | verdict | max |diff| |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (const Layer& layer : layers) {
    if (layer.in % 4 != 0) {
      std::printf("| %s | %s [%lld x %lld] | — | — | — | — | in not a multiple of 4 | — |\n", layer.model.c_str(),
                  layer.name.c_str(), static_cast<long long>(layer.out), static_cast<long long>(layer.in));
      continue;
    }
    for (int64_t batch : {1, 32}) Bench(layer, batch);
  }

  std::printf("\nWhole models, 2:4 magnitude-pruned: masked dense weights on the CPU backend vs the compressed form\n\n");
  std::printf("| model | input | layers compressed | dense ms | 2:4 runtime ms | dense / 2:4 | verdict |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  const graph::Graph mlp = Check(onnx::LoadOnnxModel(dir + "/fashion_mnist_mlp.onnx"));
  for (int64_t batch : {1, 32}) {
    graph::Tensor images(graph::DataType::kFloat32, {batch, 1, 28, 28});
    for (int64_t i = 0; i < images.num_elements(); ++i) images.data<float>()[i] = (i % 7) / 7.0f;
    BenchModel("Fashion-MNIST MLP", mlp, "image", images);
  }
  const graph::Graph lm = Check(hf::LoadHfCheckpoint(dir + "/lm")).graph;
  for (int64_t batch : {1, 8}) {
    graph::Tensor ids(graph::DataType::kInt64, {batch, 128});
    for (int64_t i = 0; i < ids.num_elements(); ++i) ids.data<int64_t>()[i] = (i * 37) % 1000;
    BenchModel("LLaMA LM", lm, "input_ids", ids);
  }
  return 0;
}
