// Low-bit GEMM speed (issue 4): our fp32 GEMM (the CPU backend's Gemm node,
// Eigen) against the int8, int4 and codebook GEMMs of core/quant/gemm at
// 1024^3 and the language model's shapes, in the same run, printing medians
// and ratios; then round-to-nearest int4 quantization of 100M weights.
//
//   build-qgemm/bin/squeeze-bench-quant-gemm [--threads=0] [--min_seconds=1]
//       [--rtn_rows=10000 --rtn_cols=10240] [--path=auto|scalar|avx2]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "core/eval/latency.h"
#include "core/graph/graph.h"
#include "core/graph/tensor.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/quant/gemm/int4_gemm.h"
#include "core/quant/gemm/int8_gemm.h"
#include "core/quant/gemm/lut_gemm.h"
#include "core/quant/rtn.h"

ABSL_FLAG(int, threads, 0, "threads for every GEMM (0: hardware concurrency)");
ABSL_FLAG(double, min_seconds, 1.0, "timed seconds per measurement (at least 5 calls)");
ABSL_FLAG(int64_t, rtn_rows, 10000, "rows of the RTN benchmark layer (0: skip)");
ABSL_FLAG(int64_t, rtn_cols, 10240, "columns of the RTN benchmark layer");
ABSL_FLAG(std::string, path, "auto", "GEMM path: auto, scalar or avx2");

namespace {

using namespace squeeze::core;  // NOLINT: a benchmark main
using quant::gemm::GemmOptions;
using quant::gemm::GemmPath;

struct Shape {
  const char* label;
  int64_t m, k, n;
};

std::vector<float> Normal(int64_t count, uint32_t seed, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(count);
  for (float& x : v) x = normal(rng);
  return v;
}

void Check(const absl::Status& status) {
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    std::exit(1);
  }
}

double MedianMs(const std::function<void()>& fn) {
  return eval::MeasureLatency(fn, /*warmup=*/2, /*min_iterations=*/5,
                              absl::GetFlag(FLAGS_min_seconds))
             .p50 * 1e3;
}

void BenchShape(const Shape& s, int threads, const GemmOptions& options) {
  const std::vector<float> x = Normal(s.m * s.k, 1, 1.0f);
  model::LinearLayer layer{"w", s.k, s.n, Normal(s.n * s.k, 2, 0.05f), Normal(s.n, 3, 0.1f)};

  // fp32: the runtime's Gemm node, Y = X * W^T + b, as an exported Linear runs.
  auto backend = kernels::cpu::CreateCpuBackend(threads);
  const graph::Tensor xt = graph::Tensor::FromVector(graph::DataType::kFloat32, {s.m, s.k}, x);
  const graph::Tensor wt =
      graph::Tensor::FromVector(graph::DataType::kFloat32, {s.n, s.k}, layer.weight);
  const graph::Tensor bt = graph::Tensor::FromVector(graph::DataType::kFloat32, {s.n}, layer.bias);
  graph::Node gemm{"gemm", "Gemm", "", {"x", "w", "b"}, {"y"}, {{"transB", int64_t{1}}}};
  const runtime::KernelCall call{gemm, 13, {&xt, &wt, &bt}};
  const double fp32 = MedianMs([&] { Check(backend->Run(call).status()); });

  std::vector<float> y(s.m * s.n);
  auto int8_layer = quant::QuantizeRtn(layer, quant::RtnOptions{8, 0, false});
  Check(int8_layer.status());
  auto w8 = quant::gemm::Int8Weights::FromQuantized(*int8_layer);
  Check(w8.status());
  auto x8 = quant::gemm::QuantizeActivationsPerRow(x.data(), s.m, s.k);
  Check(x8.status());
  const double int8 = MedianMs([&] { Check(quant::gemm::Int8Gemm(*x8, *w8, y.data(), options)); });
  const double int8_dynamic = MedianMs(
      [&] { Check(quant::gemm::Int8GemmDynamic(x.data(), s.m, *w8, y.data(), options)); });

  const int group = s.k % 64 == 0 ? 64 : 0;
  auto int4_layer = quant::QuantizeRtn(layer, quant::RtnOptions{4, group, false});
  Check(int4_layer.status());
  const double int4 = MedianMs(
      [&] { Check(quant::gemm::Int4Gemm(x.data(), s.m, *int4_layer, y.data(), options)); });

  quant::gemm::CodebookLinear lut{"w", s.k, s.n, 4, false, {}, {}, layer.bias};
  std::vector<uint8_t> indices(s.n * s.k);
  std::mt19937 rng(4);
  for (auto& i : indices) i = static_cast<uint8_t>(rng() % 16);
  auto packed = quant::gemm::PackCodebookIndices(indices, 4, s.n, s.k);
  Check(packed.status());
  lut.packed = *packed;
  lut.codebook = Normal(16, 5, 0.05f);
  const double lut4 = MedianMs(
      [&] { Check(quant::gemm::LutGemm(x.data(), s.m, lut, y.data(), options)); });

  std::printf("| %s | [%lldx%lld]x[%lldx%lld] | %.3f | %.3f | %.3f | %.3f | %.3f | %.2fx | %.2fx | %.2fx | %.2fx |\n",
              s.label, static_cast<long long>(s.m), static_cast<long long>(s.k),
              static_cast<long long>(s.k), static_cast<long long>(s.n), fp32, int8,
              int8_dynamic, int4, lut4, fp32 / int8, fp32 / int8_dynamic, fp32 / int4,
              fp32 / lut4);
  std::fflush(stdout);
}

void BenchRtn(int64_t rows, int64_t cols) {
  model::LinearLayer layer{"big", cols, rows, Normal(rows * cols, 6, 0.05f), {}};
  const quant::RtnOptions options{4, 128, false};
  std::vector<double> seconds;
  for (int run = 0; run < 3; ++run) {
    const auto start = std::chrono::steady_clock::now();
    auto q = quant::QuantizeRtn(layer, options);
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    Check(q.status());
  }
  std::sort(seconds.begin(), seconds.end());
  const auto start = std::chrono::steady_clock::now();
  Check(quant::QuantizeRtnRef(layer, options).status());
  const double ref = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("\nRTN int4-g128-sym of %lld weights ([%lld x %lld]): QuantizeRtn median of 3 "
              "%.3f s (min %.3f), QuantizeRtnRef %.3f s (%.1fx)\n",
              static_cast<long long>(rows * cols), static_cast<long long>(rows),
              static_cast<long long>(cols), seconds[1], seconds[0], ref, ref / seconds[1]);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string path_name = absl::GetFlag(FLAGS_path);
  GemmOptions options;
  options.num_threads = absl::GetFlag(FLAGS_threads);
  options.path = path_name == "scalar" ? GemmPath::kScalar
                 : path_name == "avx2" ? GemmPath::kAvx2
                                       : GemmPath::kAuto;
  auto resolved = quant::gemm::ResolveGemmPath(options.path);
  Check(resolved.status());
  const int threads = options.num_threads > 0
                          ? options.num_threads
                          : static_cast<int>(std::thread::hardware_concurrency());
  std::printf("path %s, %d threads; times are medians in ms; ratios are fp32 / low-bit "
              "(> 1: faster than fp32)\n\n",
              quant::gemm::GemmPathName(*resolved), threads);
  std::printf("| shape | X x W^T | fp32 | int8 | int8+quant X | int4 g64 | LUT 4-bit | "
              "int8 | int8+quant | int4 | LUT |\n| --- | --- | --- | --- | --- | --- | --- | "
              "--- | --- | --- | --- |\n");
  const Shape shapes[] = {
      {"square", 1024, 1024, 1024},
      {"LM up (ffn in)", 2048, 192, 512},
      {"LM down (ffn out)", 2048, 512, 192},
      {"LM head", 2048, 192, 4096},
      {"LM head, batch 1", 1, 192, 4096},
  };
  for (const Shape& s : shapes) BenchShape(s, threads, options);
  if (absl::GetFlag(FLAGS_rtn_rows) > 0) {
    BenchRtn(absl::GetFlag(FLAGS_rtn_rows), absl::GetFlag(FLAGS_rtn_cols));
  }
  return 0;
}
