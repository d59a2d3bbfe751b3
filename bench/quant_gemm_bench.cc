// Low-bit GEMM speed (issue 4): our fp32 GEMM (FastGemm of
// core/kernels/cpu/fast_gemm.h, AVX-512/AVX2 FMA, rows split over the same
// thread count, + bias) against the int8, int4 and codebook GEMMs of
// core/quant/gemm at 1024^3 and the language model's shapes, in the same
// run; --runs rounds, each measuring every GEMM of a shape back to back.
// Times are medians over the rounds, ratios the median of the rounds' own
// ratios. Then round-to-nearest int4 quantization of 100M weights.
//
//   build-vnni/bin/squeeze-bench-quant-gemm [--threads=1] [--runs=3] [--min_seconds=0.3]
//       [--rtn_rows=10000 --rtn_cols=10240]
//       [--path=auto|scalar|avx2|avxvnni|avx512vnni]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "core/eval/latency.h"
#include "core/kernels/cpu/fast_gemm.h"
#include "core/kernels/cpu/kernel_util.h"
#include "core/quant/gemm/int4_gemm.h"
#include "core/quant/gemm/int8_gemm.h"
#include "core/quant/gemm/lut_gemm.h"
#include "core/quant/rtn.h"

ABSL_FLAG(int, threads, 1, "threads for every GEMM (0: hardware concurrency)");
ABSL_FLAG(int, runs, 3, "rounds per shape (medians over them are printed)");
ABSL_FLAG(double, min_seconds, 0.3, "timed seconds per measurement (at least 5 calls)");
ABSL_FLAG(int64_t, rtn_rows, 10000, "rows of the RTN benchmark layer (0: skip)");
ABSL_FLAG(int64_t, rtn_cols, 10240, "columns of the RTN benchmark layer");
ABSL_FLAG(std::string, path, "auto", "GEMM path: auto, scalar, avx2, avxvnni or avx512vnni");

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

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void BenchShape(const Shape& s, int threads, const GemmOptions& options) {
  const std::vector<float> x = Normal(s.m * s.k, 1, 1.0f);
  model::LinearLayer layer{"w", s.k, s.n, Normal(s.n * s.k, 2, 0.05f), Normal(s.n, 3, 0.1f)};
  std::vector<float> y(s.m * s.n);

  // fp32: Y = X * W^T + b on FastGemm, rows split over `threads` as the CPU
  // backend's Gemm does.
  auto fp32_gemm = [&] {
    kernels::cpu::ParallelFor(s.m, 16, threads, [&](int64_t begin, int64_t end) {
      kernels::cpu::FastGemm(/*trans_b=*/true, end - begin, s.n, s.k, 1.0f, x.data() + begin * s.k,
                             s.k, layer.weight.data(), s.k, y.data() + begin * s.n, s.n);
      for (int64_t r = begin; r < end; ++r) {
        for (int64_t c = 0; c < s.n; ++c) y[r * s.n + c] += layer.bias[c];
      }
    });
  };

  auto int8_layer = quant::QuantizeRtn(layer, quant::RtnOptions{8, 0, false});
  Check(int8_layer.status());
  auto w8 = quant::gemm::Int8Weights::FromQuantized(*int8_layer);
  Check(w8.status());
  auto x8 = quant::gemm::QuantizeActivationsPerRow(x.data(), s.m, s.k, options);
  Check(x8.status());

  const int group = s.k % 64 == 0 ? 64 : 0;
  auto int4_layer = quant::QuantizeRtn(layer, quant::RtnOptions{4, group, false});
  Check(int4_layer.status());

  quant::gemm::CodebookLinear lut{"w", s.k, s.n, 4, false, {}, {}, layer.bias};
  std::vector<uint8_t> indices(s.n * s.k);
  std::mt19937 rng(4);
  for (auto& i : indices) i = static_cast<uint8_t>(rng() % 16);
  auto packed = quant::gemm::PackCodebookIndices(indices, 4, s.n, s.k);
  Check(packed.status());
  lut.packed = *packed;
  lut.codebook = Normal(16, 5, 0.05f);

  // Per round: times of fp32, int8, int8 + quantize X, int4, LUT.
  constexpr int kKinds = 5;
  std::vector<double> times[kKinds], ratios[kKinds];
  for (int run = 0; run < absl::GetFlag(FLAGS_runs); ++run) {
    double t[kKinds];
    t[0] = MedianMs(fp32_gemm);
    t[1] = MedianMs([&] { Check(quant::gemm::Int8Gemm(*x8, *w8, y.data(), options)); });
    t[2] = MedianMs(
        [&] { Check(quant::gemm::Int8GemmDynamic(x.data(), s.m, *w8, y.data(), options)); });
    t[3] = MedianMs(
        [&] { Check(quant::gemm::Int4Gemm(x.data(), s.m, *int4_layer, y.data(), options)); });
    t[4] = MedianMs([&] { Check(quant::gemm::LutGemm(x.data(), s.m, lut, y.data(), options)); });
    for (int i = 0; i < kKinds; ++i) {
      times[i].push_back(t[i]);
      ratios[i].push_back(t[0] / t[i]);
    }
  }
  std::printf("| %s | [%lldx%lld]x[%lldx%lld] | %.3f | %.3f | %.3f | %.3f | %.3f | %.2fx | %.2fx | %.2fx | %.2fx |\n",
              s.label, static_cast<long long>(s.m), static_cast<long long>(s.k),
              static_cast<long long>(s.k), static_cast<long long>(s.n), Median(times[0]),
              Median(times[1]), Median(times[2]), Median(times[3]), Median(times[4]),
              Median(ratios[1]), Median(ratios[2]), Median(ratios[3]), Median(ratios[4]));
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
  options.path = GemmPath::kAuto;
  for (GemmPath path : {GemmPath::kScalar, GemmPath::kAvx2, GemmPath::kAvxVnni,
                        GemmPath::kAvx512Vnni}) {
    if (path_name == quant::gemm::GemmPathName(path)) options.path = path;
  }
  auto resolved = quant::gemm::ResolveGemmPath(options.path);
  Check(resolved.status());
  const int threads = options.num_threads > 0
                          ? options.num_threads
                          : static_cast<int>(std::thread::hardware_concurrency());
  if (!kernels::cpu::FastGemmAvailable()) {
    std::fprintf(stderr, "error: FastGemm needs AVX2 and FMA\n");
    return 1;
  }
  std::printf("path %s, fp32 FastGemm %s, %d threads, %d rounds; times are medians in ms; "
              "ratios are the median of each round's fp32 / low-bit (> 1: faster than fp32)\n\n",
              quant::gemm::GemmPathName(*resolved), kernels::cpu::FastGemmKernelName(), threads,
              absl::GetFlag(FLAGS_runs));
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
