// Weight-only low-bit variants in our runtime (issue 4): the Fashion-MNIST
// MLP and CNN and the LLaMA LM in fp32 against their weight-only int4
// (per channel, and per group of 64 inputs) and 4-bit k-means codebook
// variants run on the low-bit kernels (quant::gemm::UseWeightOnlyKernels +
// CreateInt8QdqBackend: Int4Gemm / LutGemm decode the packed weights inside
// the GEMM), through the Executor, all on one thread, in the same run.
// Gemm/MatMul and 2-D Conv layers are quantized (RTN; k-means with uniform
// importance, one codebook per layer; with --conv=false the Convs stay fp32,
// as before the rewrite took them); weights shared with another node (the
// LM's tied embedding / head) stay fp32, as the rewrite leaves them.
// Where 64 does not divide a layer's input width the group is the largest
// power of two in [8, 64] that does (per channel when none does; printed).
// Each latency is the median over --repeats alternating rounds of the
// per-round median; ratios are fp32 / variant. Runtime weight memory is the
// bytes of all initializers of the graph the executor runs. Outputs are
// checked against the simulated graph (dequantized float weights).
//
//   build-wo/bin/squeeze-bench-weight-only-runtime [--repeats=5] [--min_seconds=0.2] [--lm=true] [--conv=true]
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
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/eval/latency.h"
#include "core/hf/hf_checkpoint.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/onnx/onnx_model.h"
#include "core/quant/codebook/kmeans_codebook.h"
#include "core/quant/gemm/qdq_runtime.h"
#include "core/quant/gemm/weight_only_runtime.h"
#include "core/quant/ptq/layers.h"
#include "core/runtime/executor.h"

ABSL_FLAG(std::string, models_dir, "deploy/models",
          "Holds fashion_mnist_mlp.onnx, fashion_mnist_cnn.onnx and lm/.");
ABSL_FLAG(int, repeats, 5, "Alternating rounds per figure (the median is reported).");
ABSL_FLAG(double, min_seconds, 0.2, "Timed seconds per round and graph (at least 10 calls).");
ABSL_FLAG(bool, lm, true, "Also the LLaMA LM (deploy/models/lm).");
ABSL_FLAG(bool, conv, true, "Quantize Conv layers too (false: they stay fp32).");

namespace {

using namespace squeeze::core;  // NOLINT: a benchmark main
namespace bench = squeeze::bench;

using bench::Check;
using bench::MedianOf;

double RoundMs(const std::function<void()>& fn) { return bench::RoundMs(fn, absl::GetFlag(FLAGS_min_seconds)); }

enum class Kind { kInt4PerChannel, kInt4Group64, kKmeans4 };

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kInt4PerChannel: return "int4 per-channel";
    case Kind::kInt4Group64: return "int4 g64";
    case Kind::kKmeans4: return "k-means 4-bit";
  }
  return "";
}

// The largest power of two in [8, 64] dividing `in`; 0 (per channel) when none does.
int GroupFor(int64_t in) {
  for (int g = 64; g >= 8; g /= 2) {
    if (in % g == 0) return g;
  }
  return 0;
}

struct Variant {
  std::string name;
  graph::Graph simulated;  // dequantized float weights
  graph::Graph runtime;    // the low-bit nodes
  std::string rewrite;     // DescribeWeightOnlyRewrite
  std::string groups;      // group sizes used, when not all the same
};

Variant MakeVariant(const graph::Graph& original, Kind kind) {
  Variant v{KindName(kind), original, {}, {}, {}};
  const quant::ptq::LayerScan scan = Check(quant::ptq::FindQuantizableLayers(original));
  std::map<std::string, quant::QuantizedLinear> packed;
  std::map<std::string, quant::gemm::CodebookLinear> codebooks;
  std::map<int, int> group_counts;
  for (const quant::ptq::QuantizableLayer& layer : scan.layers) {
    if ((layer.op_type == "Conv" && !absl::GetFlag(FLAGS_conv)) || graph::CountUses(original, layer.weight) != 1) {
      continue;
    }
    const std::vector<float> w = quant::ptq::WeightMatrix(original, layer);
    std::vector<float> dequantized(w.size());
    if (kind == Kind::kKmeans4) {
      quant::codebook::KmeansOptions options;
      options.bits = 4;
      options.activation_weighted = false;
      options.max_iterations = 25;
      quant::codebook::KmeansLayer q =
          Check(quant::codebook::QuantizeKmeans(layer.name, w, layer.out, layer.in, {}, {}, options));
      dequantized = q.dequantized;
      codebooks[layer.weight] = std::move(q.linear);
    } else {
      const int group = kind == Kind::kInt4Group64 ? GroupFor(layer.in) : 0;
      ++group_counts[group];
      const quant::QuantizedLinear q =
          Check(quant::QuantizeRtn(model::LinearLayer{layer.name, layer.in, layer.out, w, {}}, {4, group, false}));
      if (!quant::DequantizeRtn(q, dequantized.data()).ok()) std::exit(1);
      packed[layer.weight] = q;
    }
    quant::ptq::SetWeightMatrix(&v.simulated, layer, dequantized);
  }
  if (group_counts.size() > 1) {
    for (const auto& [group, count] : group_counts) {
      absl::StrAppend(&v.groups, v.groups.empty() ? "" : ", ", count, " layers ",
                      group == 0 ? std::string("per channel") : absl::StrCat("g", group));
    }
  }
  v.runtime = v.simulated;
  v.rewrite = quant::gemm::DescribeWeightOnlyRewrite(
      Check(quant::gemm::UseWeightOnlyKernels(&v.runtime, packed, codebooks)));
  return v;
}

graph::Tensor Tokens(const std::vector<int64_t>& shape, int64_t vocab, uint32_t seed) {
  graph::Tensor t(graph::DataType::kInt64, shape);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> token(0, vocab - 1);
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<int64_t>()[i] = token(rng);
  return t;
}

// One model: the memory table, then latency per input shape.
void BenchModel(const std::string& title, const graph::Graph& original,
                const std::vector<std::pair<std::string, graph::Tensor>>& inputs) {
  const std::string input_name = original.inputs.at(0).name;
  std::vector<Variant> variants;
  for (Kind kind : {Kind::kInt4PerChannel, Kind::kInt4Group64, Kind::kKmeans4}) {
    variants.push_back(MakeVariant(original, kind));
  }
  std::printf("\n### %s\n\n", title.c_str());
  const int64_t fp32_bytes = quant::gemm::InitializerBytes(original);
  std::printf("| runtime graph | weight bytes held | vs fp32 |\n| --- | --- | --- |\n| fp32 | %lld | 1.00x |\n",
              static_cast<long long>(fp32_bytes));
  for (const Variant& v : variants) {
    const int64_t bytes = quant::gemm::InitializerBytes(v.runtime);
    std::printf("| %s | %lld | %.2fx smaller |\n", v.name.c_str(), static_cast<long long>(bytes),
                static_cast<double>(fp32_bytes) / bytes);
  }
  std::printf("\n");
  for (const Variant& v : variants) {
    std::printf("- %s: %s%s%s\n", v.name.c_str(), v.rewrite.c_str(), v.groups.empty() ? "" : "; groups: ",
                v.groups.c_str());
  }
  auto cpu = kernels::cpu::CreateCpuBackend(1);
  auto low_bit_backend = quant::gemm::CreateInt8QdqBackend(cpu, 1);
  const runtime::Executor fp32 = Check(runtime::Executor::Create(original, cpu));
  std::vector<runtime::Executor> simulated, low_bit;
  for (const Variant& v : variants) {
    simulated.push_back(Check(runtime::Executor::Create(v.simulated, cpu)));
    low_bit.push_back(Check(runtime::Executor::Create(v.runtime, low_bit_backend)));
  }
  std::printf("\n| input | fp32 ms");
  for (const Variant& v : variants) std::printf(" | %s ms | fp32 / it", v.name.c_str());
  std::printf(" | max |low-bit - simulated| / max |simulated| |\n| ---");
  for (size_t i = 0; i < 2 * variants.size() + 2; ++i) std::printf(" | ---");
  std::printf(" |\n");
  for (const auto& [label, tensor] : inputs) {
    const std::map<std::string, graph::Tensor> feeds = {{input_name, tensor}};
    double worst = 0;
    for (size_t i = 0; i < variants.size(); ++i) {
      const std::vector<float> sim = Check(simulated[i].Run(feeds))[0].ToFloats();
      const std::vector<float> got = Check(low_bit[i].Run(feeds))[0].ToFloats();
      double diff = 0, scale = 0;
      for (size_t j = 0; j < sim.size(); ++j) {
        diff = std::max(diff, std::fabs(double{got[j]} - sim[j]));
        scale = std::max(scale, std::fabs(double{sim[j]}));
      }
      worst = std::max(worst, scale > 0 ? diff / scale : diff);
    }
    std::vector<double> f;
    std::vector<std::vector<double>> q(variants.size());
    for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
      f.push_back(RoundMs([&] { Check(fp32.Run(feeds)); }));
      for (size_t i = 0; i < variants.size(); ++i) q[i].push_back(RoundMs([&] { Check(low_bit[i].Run(feeds)); }));
    }
    const double fm = MedianOf(f);
    std::printf("| %s | %.4f", label.c_str(), fm);
    for (size_t i = 0; i < variants.size(); ++i) {
      const double qm = MedianOf(q[i]);
      std::printf(" | %.4f | %.2fx", qm, fm / qm);
    }
    std::printf(" | %.1e |\n", worst);
    std::fflush(stdout);
  }
}

void BenchOnnx(const std::string& file) {
  const graph::Graph original = Check(onnx::LoadOnnxModel(absl::GetFlag(FLAGS_models_dir) + "/" + file));
  const graph::ValueInfo& input = original.inputs.at(0);
  std::vector<std::pair<std::string, graph::Tensor>> inputs;
  for (int64_t batch : {1, 8, 32}) {
    std::vector<int64_t> shape;
    for (const graph::Dim& dim : *input.shape) shape.push_back(dim.value.value_or(batch));
    inputs.push_back({absl::StrCat("batch ", batch), bench::UniformTensor(shape, 100)});
  }
  BenchModel(file, original, inputs);
}

void BenchLm() {
  const hf::HfCheckpoint lm = Check(hf::LoadHfCheckpoint(absl::GetFlag(FLAGS_models_dir) + "/lm"));
  std::vector<std::pair<std::string, graph::Tensor>> inputs;
  for (auto [batch, tokens] : {std::pair<int64_t, int64_t>{1, 1}, {1, 128}, {8, 128}}) {
    inputs.push_back({absl::StrCat(batch, " x ", tokens, " tokens"),
                      Tokens({batch, tokens}, lm.config.vocab_size, 7)});
  }
  BenchModel("LLaMA LM (deploy/models/lm)", lm.graph, inputs);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  BenchOnnx("fashion_mnist_mlp.onnx");
  BenchOnnx("fashion_mnist_cnn.onnx");
  if (absl::GetFlag(FLAGS_lm)) BenchLm();
  return 0;
}
