#include "core/quant/gemm/gemm_dispatch.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/kernel_util.h"
#include "core/quant/gemm/gemm_driver.h"

namespace squeeze::core::quant::gemm {

bool CpuHasAvx2Fma() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

bool CpuRunsGemmPath(GemmPath path) {
#if defined(__x86_64__) || defined(__i386__)
  switch (path) {
    case GemmPath::kAuto:
    case GemmPath::kScalar:
      return true;
    case GemmPath::kAvx2:
      return CpuHasAvx2Fma();
    case GemmPath::kAvxVnni: {
      static const bool has = CpuHasAvx2Fma() && __builtin_cpu_supports("avxvnni");
      return has;
    }
    case GemmPath::kAvx512Vnni: {
      static const bool has = CpuHasAvx2Fma() && __builtin_cpu_supports("avx512f") &&
                              __builtin_cpu_supports("avx512vnni");
      return has;
    }
  }
  return false;
#else
  return path == GemmPath::kAuto || path == GemmPath::kScalar;
#endif
}

const char* GemmPathName(GemmPath path) {
  switch (path) {
    case GemmPath::kAuto: return "auto";
    case GemmPath::kScalar: return "scalar";
    case GemmPath::kAvx2: return "avx2";
    case GemmPath::kAvxVnni: return "avxvnni";
    case GemmPath::kAvx512Vnni: return "avx512vnni";
  }
  return "unknown";
}

absl::StatusOr<GemmPath> ResolveGemmPath(GemmPath requested) {
  constexpr GemmPath kConcrete[] = {GemmPath::kAvx512Vnni, GemmPath::kAvxVnni, GemmPath::kAvx2,
                                    GemmPath::kScalar};
  if (requested == GemmPath::kAuto) {
    const char* env = std::getenv("SQUEEZE_GEMM_PATH");
    const std::string value = env == nullptr ? "" : env;
    if (value.empty() || value == "auto") {
      for (GemmPath path : kConcrete) {
        if (CpuRunsGemmPath(path)) return path;
      }
    }
    for (GemmPath path : kConcrete) {
      if (value == GemmPathName(path)) requested = path;
    }
    if (requested == GemmPath::kAuto) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gemm: SQUEEZE_GEMM_PATH must be scalar, avx2, avxvnni, avx512vnni or auto, got \"",
          value, "\""));
    }
  }
  if (!CpuRunsGemmPath(requested)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "gemm: the ", GemmPathName(requested),
        " path was requested but this CPU lacks its instructions"));
  }
  return requested;
}

namespace internal {

absl::StatusOr<ResolvedGemm> Resolve(const GemmOptions& options) {
  if (options.num_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("gemm: num_threads must be >= 0, got ", options.num_threads));
  }
  absl::StatusOr<GemmPath> path = ResolveGemmPath(options.path);
  if (!path.ok()) return path.status();
  ResolvedGemm resolved;
  resolved.path = *path;
  switch (*path) {
    case GemmPath::kAvx512Vnni:
      resolved.kernels = {Int8TileAvx2,  PanelGemmAvx512,   Int8PanelTileAvx512Vnni,
                          MinMaxAvx512,  QuantizeRowAvx512, Int8TransposedGemmAvx512Vnni,
                          Int4GemvAvx512, Int8EpilogueAvx512};
      break;
    case GemmPath::kAvxVnni:
      resolved.kernels = {Int8TileAvx2, PanelGemmAvx2,   Int8PanelTileAvxVnni,
                          MinMaxAvx2,   QuantizeRowAvx2, Int8TransposedGemmAvxVnni, nullptr,
                          nullptr};
      break;
    case GemmPath::kAvx2:
      resolved.kernels = {Int8TileAvx2, PanelGemmAvx2, nullptr, MinMaxAvx2, QuantizeRowAvx2,
                          Int8TransposedGemmScalar, nullptr, nullptr};
      break;
    default:
      resolved.kernels = {Int8TileScalar,    PanelGemmScalar, nullptr, MinMaxScalar,
                          QuantizeRowScalar, Int8TransposedGemmScalar, nullptr, nullptr};
      break;
  }
  // hardware_concurrency() reads /sys on Linux: once per process, not per call.
  static const int hardware_threads =
      std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  resolved.threads = options.num_threads > 0 ? options.num_threads : hardware_threads;
  return resolved;
}

namespace {
// Rows per block: X[block] * one panel stays in L2 while the panel (depth *
// 64 bytes) is reused for every row of the block.
constexpr int64_t kPanelRowBlock = 256;
// Multiply-adds below which a chunk of panels stays on the calling thread.
constexpr int64_t kMinMultiplyAddsPerThread = int64_t{1} << 18;
}  // namespace

void DecodedPanelGemm(const float* x, int64_t m, int64_t depth, int64_t n,
                      const RowDecoder& decode, const float* bias, float* y,
                      const ResolvedGemm& gemm) {
  const int64_t panels = (n + kPanelWidth - 1) / kPanelWidth;
  const int64_t macs_per_panel = std::max<int64_t>(1, m * depth * kPanelWidth);
  kernels::cpu::ParallelFor(
      panels, std::max<int64_t>(1, kMinMultiplyAddsPerThread / macs_per_panel),
      gemm.threads, [&](int64_t first_panel, int64_t end_panel) {
        // Zero-filled so that columns past the last decoded one stay finite.
        std::vector<float> panel(depth * kPanelWidth, 0.0f);
        for (int64_t r0 = 0; r0 < m; r0 += kPanelRowBlock) {
          const int64_t rows = std::min(kPanelRowBlock, m - r0);
          for (int64_t p = first_panel; p < end_panel; ++p) {
            const int64_t c0 = p * kPanelWidth;
            const int64_t cols = std::min<int64_t>(kPanelWidth, n - c0);
            for (int64_t c = 0; c < cols; ++c) decode(c0 + c, panel.data() + c, kPanelWidth);
            float* out = y + r0 * n + c0;
            gemm.kernels.panel_gemm(x + r0 * depth, depth, rows, panel.data(),
                                    depth, out, n, cols);
            if (bias == nullptr) continue;
            for (int64_t r = 0; r < rows; ++r) {
              for (int64_t c = 0; c < cols; ++c) out[r * n + c] += bias[c0 + c];
            }
          }
        }
      });
}

void DecodedGemv(const float* x, int64_t m, int64_t depth, int64_t n, const Int4GemvArgs& weights, float* y,
                 const ResolvedGemm& gemm) {
  const int64_t half = depth / 2;
  std::vector<float> split(m * depth);  // per row: x[0], x[2], ..., then x[1], x[3], ...
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t k = 0; k < half; ++k) {
      split[r * depth + k] = x[r * depth + 2 * k];
      split[r * depth + half + k] = x[r * depth + 2 * k + 1];
    }
  }
  kernels::cpu::ParallelFor(n, kMinGemvRowsPerThread, gemm.threads, [&](int64_t begin, int64_t end) {
    Int4GemvArgs args = weights;
    args.packed += begin * weights.row_bytes;
    if (args.scales != nullptr) args.scales += begin * weights.groups;
    if (args.zero_points != nullptr) args.zero_points += begin * weights.groups;
    if (args.codebook != nullptr) args.codebook += begin * weights.codebook_stride;
    if (args.bias != nullptr) args.bias += begin;
    args.rows = end - begin;
    args.ldx = depth;
    args.ldy = n;
    for (int64_t r0 = 0; r0 < m; r0 += kGemvBlockRows) {
      args.x_even = split.data() + r0 * depth;
      args.x_odd = args.x_even + half;
      args.x_rows = std::min<int64_t>(kGemvBlockRows, m - r0);
      args.y = y + r0 * n + begin;
      gemm.kernels.int4_gemv(args);
    }
  });
}

}  // namespace internal
}  // namespace squeeze::core::quant::gemm
