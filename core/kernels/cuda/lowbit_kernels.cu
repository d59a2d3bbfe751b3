#include "core/kernels/cuda/lowbit_kernels.h"

#include <cuda_fp16.h>

#include <array>
#include <cstring>
#include <memory>
#include <vector>

#include "core/quant/gemm/codebook_layout.h"
#include "core/quant/packed_formats.h"

namespace squeeze::core::kernels::cuda {
namespace {

// Every kernel computes a kTile x kTile block of outputs with kSide x kSide
// threads, kPer x kPer outputs each, strided by kSide so that neighbouring
// threads write neighbouring columns. Depth advances through shared-memory
// tiles; the +1 column padding keeps the column reads conflict-free.
constexpr int kTile = 64;
constexpr int kSide = 16;
constexpr int kThreads = kSide * kSide;
constexpr int kPer = kTile / kSide;
constexpr int kMaxDepth = 32;     // float tiles: depth values per tile
constexpr int kInt8Words = 16;    // int8 tiles: 4-byte words (64 depths) per tile row
constexpr int64_t kMaxGridY = 65535;

// The first output row and column of a block.
struct Block {
  int64_t row0, col0;
};

using FloatTile = float[kTile][kMaxDepth + 1];

// A kernel is a "block program": per depth step k0 it runs kPhases phases,
// every thread of the block one phase at a time with a __syncthreads after
// each, then every thread stores its outputs. BlockKernel runs it on the
// device; EmulateBlocks runs the same code on the host, thread by thread
// with the phases in lockstep, which is what the tests can check without a
// GPU.
template <typename Program>
__global__ void __launch_bounds__(kThreads) BlockKernel(Program program) {
  __shared__ typename Program::Shared shared;
  const Block block{static_cast<int64_t>(blockIdx.y) * kTile, static_cast<int64_t>(blockIdx.x) * kTile};
  typename Program::Accumulators acc = {};
  for (int64_t k0 = 0; k0 < program.depth; k0 += program.step) {
    for (int phase = 0; phase < Program::kPhases; ++phase) {
      program.Phase(phase, block, k0, static_cast<int>(threadIdx.x), shared, acc);
      __syncthreads();
    }
  }
  program.Store(block, static_cast<int>(threadIdx.x), acc);
}

template <typename Program>
void EmulateBlocks(const Program& program, dim3 grid) {
  auto shared = std::make_unique<typename Program::Shared>();
  std::memset(shared.get(), 0xff, sizeof(typename Program::Shared));  // NaNs: stale reads show
  std::vector<typename Program::Accumulators> acc(kThreads);
  for (unsigned by = 0; by < grid.y; ++by) {
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      const Block block{static_cast<int64_t>(by) * kTile, static_cast<int64_t>(bx) * kTile};
      for (auto& a : acc) a = {};
      for (int64_t k0 = 0; k0 < program.depth; k0 += program.step) {
        for (int phase = 0; phase < Program::kPhases; ++phase) {
          for (int t = 0; t < kThreads; ++t) program.Phase(phase, block, k0, t, *shared, acc[t]);
        }
      }
      for (int t = 0; t < kThreads; ++t) program.Store(block, t, acc[t]);
    }
  }
}

// The grid of kTile x kTile output blocks, or false when m needs more than
// gridDim.y allows.
bool OutputGrid(int64_t m, int64_t n, dim3* grid) {
  const int64_t blocks_y = (m + kTile - 1) / kTile;
  if (blocks_y > kMaxGridY) return false;
  *grid = dim3(static_cast<unsigned>((n + kTile - 1) / kTile), static_cast<unsigned>(blocks_y));
  return true;
}

template <typename Program>
cudaError_t Run(const Program& program, int64_t m, int64_t n, Target target) {
  if (m <= 0 || n <= 0) return cudaSuccess;
  dim3 grid;
  if (!OutputGrid(m, n, &grid)) return cudaErrorInvalidConfiguration;
  if (target == Target::kHostEmulation) {
    EmulateBlocks(program, grid);
    return cudaSuccess;
  }
  BlockKernel<<<grid, kThreads>>>(program);
  return cudaGetLastError();
}

// Four bytes of row `row` starting at column `col` (zero past the matrix),
// byte b in bits 8b..8b+7 as dp4a reads them. `aligned`: cols % 4 == 0 and
// the matrix starts on 4 bytes, so one 32-bit load reads the word.
__host__ __device__ uint32_t LoadWord(const uint8_t* matrix, int64_t row, int64_t rows, int64_t cols,
                                      int64_t col, bool aligned) {
  if (row >= rows || col >= cols) return 0;
  const uint8_t* p = matrix + row * cols + col;
  if (aligned) return *reinterpret_cast<const uint32_t*>(p);
  uint32_t word = 0;
  for (int b = 0; b < 4 && col + b < cols; ++b) word |= static_cast<uint32_t>(p[b]) << (8 * b);
  return word;
}

// c + the sum of the four products of the unsigned bytes of `a` with the
// signed bytes of `b`, exact in int32: PTX dp4a with mixed signedness
// (__dp4a has no such overload); the host emulation spells it out.
__host__ __device__ int32_t Dp4aU8S8(uint32_t a, uint32_t b, int32_t c) {
#ifdef __CUDA_ARCH__
  int32_t d;
  asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
#else
  for (int i = 0; i < 4; ++i) {
    c += static_cast<int32_t>((a >> (8 * i)) & 0xff) * static_cast<int8_t>((b >> (8 * i)) & 0xff);
  }
  return c;
#endif
}

// The register-tile product of one depth tile: thread (tx, ty) of the block
// adds, for c < depth, xs[ty + kSide i][c] "times" ws[tx + kSide j][c] into
// sum[i][j] with `madd(a, b, sum)` (dp4a or fmaf).
template <typename Element, int kWidth, typename Sum, typename MultiplyAdd>
__host__ __device__ void MultiplyTiles(const Element (&xs)[kTile][kWidth], const Element (&ws)[kTile][kWidth],
                                       int depth, int thread, Sum (&sum)[kPer][kPer], MultiplyAdd madd) {
  const int tx = thread % kSide, ty = thread / kSide;
  for (int c = 0; c < depth; ++c) {
    Element a[kPer], b[kPer];
    for (int i = 0; i < kPer; ++i) a[i] = xs[ty + kSide * i][c];
    for (int j = 0; j < kPer; ++j) b[j] = ws[tx + kSide * j][c];
    for (int i = 0; i < kPer; ++i) {
      for (int j = 0; j < kPer; ++j) sum[i][j] = madd(a[i], b[j], sum[i][j]);
    }
  }
}

// Calls write(row, col, sum[i][j]) for the outputs of `thread` inside
// [rows, cols).
template <typename Sum, typename Write>
__host__ __device__ void StoreOutputs(Block block, int thread, int64_t rows, int64_t cols,
                                      const Sum (&sum)[kPer][kPer], Write write) {
  const int tx = thread % kSide, ty = thread / kSide;
  for (int i = 0; i < kPer; ++i) {
    for (int j = 0; j < kPer; ++j) {
      const int64_t row = block.row0 + ty + kSide * i, col = block.col0 + tx + kSide * j;
      if (row < rows && col < cols) write(row, col, sum[i][j]);
    }
  }
}

// acc[m, n] = sum_k xq[m, k] * wq[n, k]: phase 0 loads 64 depths of 64 rows
// of each operand as words, phase 1 runs the dp4a products.
struct Int8MatMul {
  struct Shared {
    uint32_t xs[kTile][kInt8Words + 1];
    uint32_t ws[kTile][kInt8Words + 1];
  };
  struct Accumulators {
    int32_t v[kPer][kPer];
  };
  static constexpr int kPhases = 2;

  const uint8_t* xq;
  const uint8_t* wq;
  int64_t m, n, depth, step;
  bool aligned;
  int32_t* acc;

  __host__ __device__ void Phase(int phase, Block block, int64_t k0, int thread, Shared& s,
                                 Accumulators& sum) const {
    if (phase == 0) {
      for (int t = thread; t < kTile * kInt8Words; t += kThreads) {
        const int r = t / kInt8Words, word = t % kInt8Words;
        s.xs[r][word] = LoadWord(xq, block.row0 + r, m, depth, k0 + 4 * word, aligned);
        s.ws[r][word] = LoadWord(wq, block.col0 + r, n, depth, k0 + 4 * word, aligned);
      }
      return;
    }
    MultiplyTiles(s.xs, s.ws, kInt8Words, thread, sum.v,
                  [](uint32_t a, uint32_t b, int32_t c) { return Dp4aU8S8(a, b, c); });
  }
  __host__ __device__ void Store(Block block, int thread, const Accumulators& sum) const {
    StoreOutputs(block, thread, m, n, sum.v, [this](int64_t row, int64_t col, int32_t v) { acc[row * n + col] = v; });
  }
};

// Decoders fill tile[r][c] = W[col0 + r, k0 + c] for r < kTile, c < depth,
// 0 outside W, in two phases (a __syncthreads between them).

// The fill of decoders that compute W element by element (decoder.At).
template <typename Decoder>
__host__ __device__ void FillByElement(const Decoder& decoder, int64_t out, int64_t in, FloatTile& tile,
                                       int64_t col0, int64_t k0, int depth, int thread) {
  for (int t = thread; t < kTile * depth; t += kThreads) {
    const int r = t / depth, c = t % depth;
    tile[r][c] = col0 + r < out && k0 + c < in ? decoder.At(col0 + r, k0 + c) : 0.0f;
  }
}

struct NibbleDecoder {
  DeviceNibbleWeights w;
  int64_t row_bytes;

  __host__ __device__ float At(int64_t r, int64_t c) const {
    const quant::PackedInt4Pair pair{w.packed[r * row_bytes + c / 2]};
    const int nibble = (c & 1) ? pair.High() : pair.Low();
    const int64_t g = r * w.groups + c / w.group_width;
    const int zero = w.asymmetric ? w.zero_points[g] : quant::kInt4SymmetricOffset;
    return static_cast<float>(nibble - zero) * w.scales[g];
  }
  __host__ __device__ void Fill(int phase, FloatTile& tile, int64_t col0, int64_t k0, int depth,
                                int thread) const {
    if (phase == 0) FillByElement(*this, w.out, w.in, tile, col0, k0, depth, thread);
  }
};

struct CodebookDecoder {
  DeviceCodebookWeights w;
  int64_t row_bytes;

  __host__ __device__ float At(int64_t r, int64_t c) const {
    const uint32_t index = quant::ReadCodebookIndex(w.packed + r * row_bytes, c, w.bits);
    return w.codebook[(w.per_row_codebook ? r : 0) * quant::CodebookEntries(w.bits) + index];
  }
  __host__ __device__ void Fill(int phase, FloatTile& tile, int64_t col0, int64_t k0, int depth,
                                int thread) const {
    if (phase == 0) FillByElement(*this, w.out, w.in, tile, col0, k0, depth, thread);
  }
};

// Phase 0 zeroes the tile, phase 1 scatters the kept values of whole groups
// (`depth` and k0 are multiples of m). One thread owns a (row, group) pair,
// so the += never races; an index >= m (a malformed matrix) is dropped
// rather than written outside its group.
struct NmDecoder {
  DeviceNmWeights w;

  __host__ __device__ static int PackedIndex(const uint8_t* row, int64_t slot, int bits) {
    const int64_t bit = slot * bits;
    uint32_t word = row[bit / 8];
    if (bit % 8 + bits > 8) word |= static_cast<uint32_t>(row[bit / 8 + 1]) << 8;
    return static_cast<int>((word >> (bit % 8)) & ((1u << bits) - 1));
  }
  __host__ __device__ void Fill(int phase, FloatTile& tile, int64_t col0, int64_t k0, int depth,
                                int thread) const {
    if (phase == 0) {
      for (int t = thread; t < kTile * depth; t += kThreads) tile[t / depth][t % depth] = 0.0f;
      return;
    }
    const int groups = depth / w.m;
    const int64_t kept = w.in / w.m * w.n;
    for (int t = thread; t < kTile * groups; t += kThreads) {
      const int r = t / groups, local = t % groups;
      const int64_t row = col0 + r, group = k0 / w.m + local;
      if (row >= w.out || group * w.m >= w.in) continue;
      const uint8_t* index = w.indices + row * w.row_index_bytes;
      for (int s = 0; s < w.n; ++s) {
        const int64_t slot = group * w.n + s;
        const int position = PackedIndex(index, slot, w.index_bits);
        if (position < w.m) tile[r][local * w.m + position] += w.values[row * kept + slot];
      }
    }
  }
};

// y[rows, out] = x[rows, in] * W^T (+ bias): phase 0 loads the x tile and
// starts the weight tile, phase 1 finishes it, phase 2 runs float32 FMAs in
// increasing k order per output.
template <typename Decoder>
struct DecodedGemm {
  struct Shared {
    FloatTile xs;
    FloatTile ws;
  };
  struct Accumulators {
    float v[kPer][kPer];
  };
  static constexpr int kPhases = 3;

  const float* x;
  int64_t rows, out, depth, step;  // depth = in; step = depths per tile
  Decoder decoder;
  const float* bias;
  float* y;

  __host__ __device__ void Phase(int phase, Block block, int64_t k0, int thread, Shared& s,
                                 Accumulators& acc) const {
    const int tile_depth = static_cast<int>(step);
    if (phase == 0) {
      for (int t = thread; t < kTile * tile_depth; t += kThreads) {
        const int r = t / tile_depth, c = t % tile_depth;
        s.xs[r][c] = block.row0 + r < rows && k0 + c < depth ? x[(block.row0 + r) * depth + k0 + c] : 0.0f;
      }
    }
    if (phase < 2) {
      decoder.Fill(phase, s.ws, block.col0, k0, tile_depth, thread);
      return;
    }
    MultiplyTiles(s.xs, s.ws, tile_depth, thread, acc.v, [](float a, float b, float c) { return fmaf(a, b, c); });
  }
  __host__ __device__ void Store(Block block, int thread, const Accumulators& acc) const {
    StoreOutputs(block, thread, rows, out, acc.v, [this](int64_t row, int64_t col, float v) {
      y[row * out + col] = bias ? v + bias[col] : v;
    });
  }
};

template <typename Decoder>
cudaError_t RunDecoded(const float* x, int64_t m, int64_t in, int64_t out, const Decoder& decoder,
                       int tile_depth, const float* bias, float* y, Target target) {
  return Run(DecodedGemm<Decoder>{x, m, out, in, tile_depth, decoder, bias, y}, m, out, target);
}

// ---- 2:4 on sparse tensor cores (mma.sp, sm_80 and later) ----------------
//
// Y^T [out, rows] = W [out, in] * X^T [in, rows]: the sparse operand A of
// mma.sp.m16n8k32 is W (16 output features by 32 inputs, 16 kept values),
// the dense operand B (32 x 8, column-major) is X^T, whose columns are rows
// of X, and D (16 x 8, float32) is a tile of Y^T. Operands are rounded to
// f16. The compressed form needs no reordering: the kept values of a row are
// already A's compressed row, and its 2-bit indices, LSB-first, are exactly
// the metadata's bit order, 16 bits per 16 inputs. Per lane (g = lane / 4,
// q = lane % 4), with A' the compressed 16 x 16 tile:
//   a0..a3  A'[g][2q, 2q+1], A'[g+8][2q, 2q+1], A'[g][2q+8, +9], A'[g+8][2q+8, +9]
//   e       low half: metadata of row g for inputs 16 (lane % 2) .. +15,
//           high half: the same for row g+8 (sparsity selector 0: lanes
//           with q = 0, 1 supply it)
//   b0..b3  X[row g][k 2q + 8i, +1], i = 0..3
//   d0..d3  Y^T[g][2q, 2q+1], Y^T[g+8][2q, 2q+1]
// (PTX ISA, "Sparse matrix multiply-accumulate", m16n8k32 .f16 fragments;
// LLVM's sparse-mma-2-4-f16 integration test loads the same layout.)
constexpr int kWarp = 32;
constexpr int kTcWarps = 4;                    // warps per block, along features
constexpr int kTcFeatures = 16;                // per warp (mma M)
constexpr int kTcRowTiles = 4;                 // mma N tiles of 8 rows per warp
constexpr int kTcRows = 8 * kTcRowTiles;       // rows per block
constexpr int kTcDepth = 32;                   // inputs per mma (K)
// Metadata for a row past `out` (zero values): kept positions 0 and 1.
constexpr uint32_t kTcPaddingMetadata = 0x4444;

struct SparseTcProblem {
  const float* x;
  int64_t rows;
  DeviceNmWeights w;  // 2:4, in % 32 == 0
  float* y;
};

struct TcFragments {
  uint32_t a[4];
  uint32_t e;
  uint32_t b[kTcRowTiles][4];
  float d[kTcRowTiles][4];
};

__host__ __device__ uint32_t PackHalves(float low, float high) {
  return static_cast<uint32_t>(__half_as_ushort(__float2half_rn(low))) |
         static_cast<uint32_t>(__half_as_ushort(__float2half_rn(high))) << 16;
}

__host__ __device__ float LowHalf(uint32_t v) { return __half2float(__ushort_as_half(static_cast<unsigned short>(v & 0xffff))); }
__host__ __device__ float HighHalf(uint32_t v) { return __half2float(__ushort_as_half(static_cast<unsigned short>(v >> 16))); }

// Loads lane `lane`'s A, metadata and B fragments for inputs k0 .. k0+31.
__host__ __device__ void LoadTcFragments(const SparseTcProblem& p, int64_t feature0, int64_t row0, int64_t k0,
                                         int lane, TcFragments& f) {
  const int g = lane / 4, q = lane % 4;
  const int64_t kept = p.w.in / 2;
  const int64_t kc = k0 / 2;  // compressed column of input k0
  uint32_t metadata[2];
  for (int half = 0; half < 2; ++half) {
    const int64_t feature = feature0 + g + 8 * half;
    if (feature >= p.w.out) {
      f.a[half] = f.a[half + 2] = 0;
      metadata[half] = kTcPaddingMetadata;
      continue;
    }
    const float* v = p.w.values + feature * kept + kc + 2 * q;
    f.a[half] = PackHalves(v[0], v[1]);
    f.a[half + 2] = PackHalves(v[8], v[9]);
    const uint8_t* index = p.w.indices + feature * p.w.row_index_bytes + k0 / 8 + 2 * (lane % 2);
    metadata[half] = static_cast<uint32_t>(index[0]) | static_cast<uint32_t>(index[1]) << 8;
  }
  f.e = metadata[0] | metadata[1] << 16;
  for (int t = 0; t < kTcRowTiles; ++t) {
    const int64_t row = row0 + 8 * t + g;
    for (int i = 0; i < 4; ++i) {
      const float* xr = p.x + row * p.w.in + k0 + 2 * q + 8 * i;
      f.b[t][i] = row < p.rows ? PackHalves(xr[0], xr[1]) : 0;
    }
  }
}

__host__ __device__ void StoreTcFragments(const SparseTcProblem& p, int64_t feature0, int64_t row0, int lane,
                                          const TcFragments& f) {
  const int g = lane / 4, q = lane % 4;
  for (int t = 0; t < kTcRowTiles; ++t) {
    for (int r = 0; r < 4; ++r) {
      const int64_t feature = feature0 + g + 8 * (r / 2);
      const int64_t row = row0 + 8 * t + 2 * q + r % 2;
      if (feature < p.w.out && row < p.rows) {
        p.y[row * p.w.out + feature] = p.w.bias ? f.d[t][r] + p.w.bias[feature] : f.d[t][r];
      }
    }
  }
}

__global__ void __launch_bounds__(kTcWarps * kWarp) SparseTcKernel(SparseTcProblem p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const int warp = static_cast<int>(threadIdx.x) / kWarp, lane = static_cast<int>(threadIdx.x) % kWarp;
  const int64_t feature0 = (static_cast<int64_t>(blockIdx.x) * kTcWarps + warp) * kTcFeatures;
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kTcRows;
  TcFragments f = {};
  for (int64_t k0 = 0; k0 < p.w.in; k0 += kTcDepth) {
    LoadTcFragments(p, feature0, row0, k0, lane, f);
    for (int t = 0; t < kTcRowTiles; ++t) {
      asm volatile(
          "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32 "
          "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, 0x0;\n"
          : "+f"(f.d[t][0]), "+f"(f.d[t][1]), "+f"(f.d[t][2]), "+f"(f.d[t][3])
          : "r"(f.a[0]), "r"(f.a[1]), "r"(f.a[2]), "r"(f.a[3]), "r"(f.b[t][0]), "r"(f.b[t][1]),
            "r"(f.b[t][2]), "r"(f.b[t][3]), "r"(f.e));
    }
  }
  StoreTcFragments(p, feature0, row0, lane, f);
#else
  __trap();  // launched only after a compute capability check (sm_80+)
#endif
}

// The warp-wide mma.sp of row tile t on the host, from the fragment layout
// above: rebuild A (16 x 32), B (32 x 8) and D, multiply, scatter D back.
void EmulateMmaSp(std::array<TcFragments, kWarp>& lanes, int t) {
  float a_compressed[16][16], a[16][32] = {}, b[32][8], d[16][8];
  uint32_t metadata[16][2];
  for (int lane = 0; lane < kWarp; ++lane) {
    const int g = lane / 4, q = lane % 4;
    const TcFragments& f = lanes[lane];
    for (int half = 0; half < 2; ++half) {
      a_compressed[g + 8 * half][2 * q] = LowHalf(f.a[half]);
      a_compressed[g + 8 * half][2 * q + 1] = HighHalf(f.a[half]);
      a_compressed[g + 8 * half][2 * q + 8] = LowHalf(f.a[half + 2]);
      a_compressed[g + 8 * half][2 * q + 9] = HighHalf(f.a[half + 2]);
    }
    if (q < 2) {
      metadata[g][q] = f.e & 0xffff;
      metadata[g + 8][q] = f.e >> 16;
    }
    for (int i = 0; i < 4; ++i) {
      b[2 * q + 8 * i][g] = LowHalf(f.b[t][i]);
      b[2 * q + 8 * i + 1][g] = HighHalf(f.b[t][i]);
    }
    for (int r = 0; r < 4; ++r) d[g + 8 * (r / 2)][2 * q + r % 2] = f.d[t][r];
  }
  for (int r = 0; r < 16; ++r) {
    for (int c = 0; c < 16; ++c) {
      const int position = (metadata[r][c / 8] >> (2 * (c % 8))) & 3;
      a[r][(c / 2) * 4 + position] = a_compressed[r][c];
    }
  }
  for (int r = 0; r < 16; ++r) {
    for (int n = 0; n < 8; ++n) {
      for (int k = 0; k < 32; ++k) d[r][n] += a[r][k] * b[k][n];
    }
  }
  for (int lane = 0; lane < kWarp; ++lane) {
    const int g = lane / 4, q = lane % 4;
    for (int r = 0; r < 4; ++r) lanes[lane].d[t][r] = d[g + 8 * (r / 2)][2 * q + r % 2];
  }
}

void EmulateSparseTc(const SparseTcProblem& p, dim3 grid) {
  std::array<TcFragments, kWarp> lanes;
  for (unsigned by = 0; by < grid.y; ++by) {
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      for (int warp = 0; warp < kTcWarps; ++warp) {
        const int64_t feature0 = (static_cast<int64_t>(bx) * kTcWarps + warp) * kTcFeatures;
        const int64_t row0 = static_cast<int64_t>(by) * kTcRows;
        for (TcFragments& f : lanes) f = {};
        for (int64_t k0 = 0; k0 < p.w.in; k0 += kTcDepth) {
          for (int lane = 0; lane < kWarp; ++lane) LoadTcFragments(p, feature0, row0, k0, lane, lanes[lane]);
          for (int t = 0; t < kTcRowTiles; ++t) EmulateMmaSp(lanes, t);
        }
        for (int lane = 0; lane < kWarp; ++lane) StoreTcFragments(p, feature0, row0, lane, lanes[lane]);
      }
    }
  }
}

}  // namespace

cudaError_t LaunchInt8MatMulInt32(const uint8_t* xq, const int8_t* wq, int64_t m, int64_t n,
                                  int64_t k, int32_t* acc, Target target) {
  const bool aligned = k % 4 == 0 && reinterpret_cast<uintptr_t>(xq) % 4 == 0 &&
                       reinterpret_cast<uintptr_t>(wq) % 4 == 0;
  const Int8MatMul program{xq, reinterpret_cast<const uint8_t*>(wq), m, n, k, 4 * kInt8Words, aligned, acc};
  return Run(program, m, n, target);
}

cudaError_t LaunchNibbleGemm(const float* x, int64_t m, const DeviceNibbleWeights& w, float* y,
                             Target target) {
  return RunDecoded(x, m, w.in, w.out, NibbleDecoder{w, (w.in + 1) / 2}, kMaxDepth, w.bias, y, target);
}

cudaError_t LaunchLutGemm(const float* x, int64_t m, const DeviceCodebookWeights& w, float* y,
                          Target target) {
  return RunDecoded(x, m, w.in, w.out, CodebookDecoder{w, quant::CodebookRowBytes(w.bits, w.in)},
                    kMaxDepth, w.bias, y, target);
}

cudaError_t LaunchNmSparseGemm(const float* x, int64_t m, const DeviceNmWeights& w, float* y,
                               Target target) {
  if (w.m < 1 || w.m > kMaxDepth) return cudaErrorInvalidValue;
  return RunDecoded(x, m, w.in, w.out, NmDecoder{w}, kMaxDepth / w.m * w.m, w.bias, y, target);
}

cudaError_t LaunchNmSparseGemmTensorCores(const float* x, int64_t m, const DeviceNmWeights& w, float* y,
                                          Target target) {
  if (w.n != 2 || w.m != 4 || w.in % kTcDepth != 0) return cudaErrorInvalidValue;
  if (m <= 0 || w.out <= 0) return cudaSuccess;
  const int64_t blocks_y = (m + kTcRows - 1) / kTcRows;
  if (blocks_y > kMaxGridY) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>((w.out + kTcWarps * kTcFeatures - 1) / (kTcWarps * kTcFeatures)),
                  static_cast<unsigned>(blocks_y));
  const SparseTcProblem problem{x, m, w, y};
  if (target == Target::kHostEmulation) {
    EmulateSparseTc(problem, grid);
    return cudaSuccess;
  }
  SparseTcKernel<<<grid, kTcWarps * kWarp>>>(problem);
  return cudaGetLastError();
}

}  // namespace squeeze::core::kernels::cuda
