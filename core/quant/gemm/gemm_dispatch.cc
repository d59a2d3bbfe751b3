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

const char* GemmPathName(GemmPath path) {
  switch (path) {
    case GemmPath::kAuto: return "auto";
    case GemmPath::kScalar: return "scalar";
    case GemmPath::kAvx2: return "avx2";
  }
  return "unknown";
}

absl::StatusOr<GemmPath> ResolveGemmPath(GemmPath requested) {
  if (requested == GemmPath::kAuto) {
    const char* env = std::getenv("SQUEEZE_GEMM_PATH");
    const std::string value = env == nullptr ? "" : env;
    if (value == "scalar") {
      requested = GemmPath::kScalar;
    } else if (value == "avx2") {
      requested = GemmPath::kAvx2;
    } else if (value.empty() || value == "auto") {
      return CpuHasAvx2Fma() ? GemmPath::kAvx2 : GemmPath::kScalar;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "gemm: SQUEEZE_GEMM_PATH must be scalar, avx2 or auto, got \"", value, "\""));
    }
  }
  if (requested == GemmPath::kAvx2 && !CpuHasAvx2Fma()) {
    return absl::FailedPreconditionError(
        "gemm: the avx2 path was requested but this CPU lacks AVX2 or FMA");
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
  resolved.kernels = *path == GemmPath::kAvx2
                         ? GemmKernels{Int8TileAvx2, PanelGemmAvx2}
                         : GemmKernels{Int8TileScalar, PanelGemmScalar};
  resolved.threads = options.num_threads > 0
                         ? options.num_threads
                         : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
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

}  // namespace internal
}  // namespace squeeze::core::quant::gemm
