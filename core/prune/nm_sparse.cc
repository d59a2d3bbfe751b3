#include "core/prune/nm_sparse.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/quant/ptq/layers.h"
#include "core/status_macros.h"

namespace squeeze::core::prune {
namespace {

using graph::DataType;
using graph::Graph;
using graph::Node;
using graph::Tensor;

constexpr int64_t kRowTile = 16;  // batch rows per transposed tile (4 SSE registers)

// Index k of row `row` (bits per index `bits`).
int ReadIndex(const uint8_t* row, int64_t k, int bits) {
  int value = 0;
  for (int b = 0; b < bits; ++b) {
    const int64_t bit = k * bits + b;
    value |= ((row[bit >> 3] >> (bit & 7)) & 1) << b;
  }
  return value;
}

void WriteIndex(uint8_t* row, int64_t k, int bits, int value) {
  for (int b = 0; b < bits; ++b) {
    const int64_t bit = k * bits + b;
    if ((value >> b) & 1) row[bit >> 3] |= static_cast<uint8_t>(1u << (bit & 7));
  }
}

// Absolute column of every kept value of row `o` (no division in the loop:
// it cost as much as the products).
void DecodeColumns(const NmSparseView& w, int64_t o, int32_t* columns) {
  const uint8_t* row = w.indices + o * w.row_index_bytes;
  const int64_t groups = w.in / w.m;
  int64_t k = 0;
  if (w.m == 4) {
    // Two bits per index, four per byte: the 2:4 / 1:4 / 3:4 fast path.
    for (int64_t g = 0; g < groups; ++g) {
      for (int j = 0; j < w.n; ++j, ++k) {
        columns[k] = static_cast<int32_t>(4 * g + ((row[k >> 2] >> (2 * (k & 3))) & 3));
      }
    }
    return;
  }
  const int bits = NmIndexBits(w.m);
  for (int64_t g = 0; g < groups; ++g) {
    for (int j = 0; j < w.n; ++j, ++k) columns[k] = static_cast<int32_t>(w.m * g + ReadIndex(row, k, bits));
  }
}

// y[r, o] for the `tile` rows whose transpose is xt [in, tile].
void MultiplyTile(const NmSparseView& w, const int32_t* all_columns, const float* xt, int64_t tile, const float* bias,
                  float* y) {
  const int64_t kept = w.kept_per_row();
  float acc[kRowTile];
  for (int64_t o = 0; o < w.out; ++o) {
    for (int64_t r = 0; r < tile; ++r) acc[r] = bias ? bias[o] : 0.0f;
    const float* v = w.values + o * kept;
    const int32_t* cols = all_columns + o * kept;
    for (int64_t k = 0; k < kept; ++k) {
      const float* column = xt + int64_t{cols[k]} * tile;
      for (int64_t r = 0; r < tile; ++r) acc[r] += v[k] * column[r];
    }
    for (int64_t r = 0; r < tile; ++r) y[r * w.out + o] = acc[r];
  }
}

// MultiplyTile for tile == kRowTile, written with GCC/Clang vector types
// (4 floats: SSE on x86, NEON on ARM) so that the compiler vectorizes over
// the batch rows and keeps both output rows' accumulators in registers (left
// to itself, it vectorizes the k loop with emulated gathers instead).
using Float4 = float __attribute__((vector_size(16)));
constexpr int kVectors = kRowTile / 4;

Float4 Load4(const float* p) {
  Float4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Accumulators of output rows o and o + 1 over one tile, started at the bias.
struct PairAccumulators {
  Float4 a0[kVectors], a1[kVectors];

  PairAccumulators(const float* bias, int64_t o) {
    const float b0 = bias ? bias[o] : 0.0f, b1 = bias ? bias[o + 1] : 0.0f;
    for (int j = 0; j < kVectors; ++j) {
      a0[j] = Float4{b0, b0, b0, b0};
      a1[j] = Float4{b1, b1, b1, b1};
    }
  }
  // a0 += s0 * x0[0..tile), a1 += s1 * x1[0..tile).
  void Add(float s0, const float* x0, float s1, const float* x1) {
    const Float4 w0 = {s0, s0, s0, s0}, w1 = {s1, s1, s1, s1};
    for (int j = 0; j < kVectors; ++j) {
      a0[j] += w0 * Load4(x0 + 4 * j);
      a1[j] += w1 * Load4(x1 + 4 * j);
    }
  }
  void Store(int64_t out, int64_t o, float* y) const {
    for (int j = 0; j < kVectors; ++j) {
      for (int i = 0; i < 4; ++i) {
        y[(4 * j + i) * out + o] = a0[j][i];
        y[(4 * j + i) * out + o + 1] = a1[j][i];
      }
    }
  }
};

// The last output row when `out` is odd, through the generic loop.
void MultiplyLastRow(const NmSparseView& w, const int32_t* columns, const float* xt, const float* bias, float* y) {
  const int64_t o = w.out - 1;
  NmSparseView last = w;
  last.out = 1;
  last.values = w.values + o * w.kept_per_row();
  float column[kRowTile];
  MultiplyTile(last, columns, xt, kRowTile, bias ? bias + o : nullptr, column);
  for (int64_t r = 0; r < kRowTile; ++r) y[r * w.out + o] = column[r];
}

// From decoded columns [out, kept].
void MultiplyFullTile(const NmSparseView& w, const int32_t* all_columns, const float* xt, const float* bias,
                      float* y) {
  const int64_t kept = w.kept_per_row();
  int64_t o = 0;
  for (; o + 1 < w.out; o += 2) {
    PairAccumulators acc(bias, o);
    const float* v0 = w.values + o * kept;
    const int32_t* c0 = all_columns + o * kept;
    for (int64_t k = 0; k < kept; ++k) {
      acc.Add(v0[k], xt + int64_t{c0[k]} * kRowTile, v0[kept + k], xt + int64_t{c0[kept + k]} * kRowTile);
    }
    acc.Store(w.out, o, y);
  }
  if (o < w.out) MultiplyLastRow(w, all_columns + o * kept, xt, bias, y);
}

// 2:4, decoding the packed indices in the loop: one byte holds the four
// 2-bit positions of two groups (reading it once per four values is 15%
// faster than a per-value decode).
void MultiplyFullTile24(const NmSparseView& w, const float* xt, const float* bias, float* y) {
  const int64_t kept = w.kept_per_row();
  int64_t o = 0;
  for (; o + 1 < w.out; o += 2) {
    PairAccumulators acc(bias, o);
    const float* v0 = w.values + o * kept;
    const float* v1 = v0 + kept;
    const uint8_t* i0 = w.indices + o * w.row_index_bytes;
    const uint8_t* i1 = i0 + w.row_index_bytes;
    for (int64_t b = 0; b < w.row_index_bytes; ++b) {
      const unsigned byte0 = i0[b], byte1 = i1[b];
      for (int q = 0; q < 4; ++q) {
        // Kept value 4b + q: group 2b + q / 2, position bits 2q and 2q + 1.
        const int64_t base = 8 * b + 4 * (q >> 1);
        acc.Add(v0[4 * b + q], xt + (base + ((byte0 >> (2 * q)) & 3)) * kRowTile, v1[4 * b + q],
                xt + (base + ((byte1 >> (2 * q)) & 3)) * kRowTile);
      }
    }
    acc.Store(w.out, o, y);
  }
  if (o < w.out) {
    std::vector<int32_t> columns(kept);
    DecodeColumns(w, o, columns.data());
    MultiplyLastRow(w, columns.data(), xt, bias, y);
  }
}

}  // namespace

int NmIndexBits(int m) {
  int bits = 1;
  while ((1 << bits) < m) ++bits;
  return bits;
}

absl::Status ValidateNmPattern(int n, int m, int64_t in, const std::string& layer) {
  if (m < 2 || m > 16 || n < 1 || n >= m) {
    return absl::InvalidArgumentError(
        absl::StrCat("prune: N:M needs 1 <= N < M <= 16, got ", n, ":", m, " (layer ", layer, ")"));
  }
  if (in % m != 0) {
    return absl::InvalidArgumentError(absl::StrCat("prune: layer ", layer, " has in = ", in,
                                                   ", not a multiple of M = ", m, " (", n, ":", m, ")"));
  }
  return absl::OkStatus();
}

bool HasNmPattern(const std::vector<float>& dense, int64_t out, int64_t in, int n, int m) {
  if (m <= 0 || in % m != 0 || static_cast<int64_t>(dense.size()) != out * in) return false;
  for (int64_t i = 0; i < out * in; i += m) {
    int nonzero = 0;
    for (int j = 0; j < m; ++j) nonzero += dense[i + j] != 0.0f;
    if (nonzero > n) return false;
  }
  return true;
}

absl::StatusOr<NmSparseMatrix> CompressNm(const std::vector<float>& dense, int64_t out, int64_t in, int n, int m,
                                          const std::string& layer) {
  SQ_RETURN_IF_ERROR(ValidateNmPattern(n, m, in, layer));
  if (out <= 0 || static_cast<int64_t>(dense.size()) != out * in) {
    return absl::InvalidArgumentError(absl::StrCat("prune: layer ", layer, " is [", out, ", ", in, "] but has ",
                                                   dense.size(), " weights"));
  }
  NmSparseMatrix w;
  w.out = out;
  w.in = in;
  w.n = n;
  w.m = m;
  const int bits = NmIndexBits(m);
  w.row_index_bytes = (w.kept_per_row() * bits + 7) / 8;
  w.values.assign(out * w.kept_per_row(), 0.0f);
  w.indices.assign(out * w.row_index_bytes, 0);
  for (int64_t o = 0; o < out; ++o) {
    uint8_t* row = w.indices.data() + o * w.row_index_bytes;
    for (int64_t g = 0; g < in / m; ++g) {
      const float* group = dense.data() + o * in + g * m;
      std::vector<int> kept;
      for (int j = 0; j < m; ++j) {
        if (group[j] != 0.0f) kept.push_back(j);
      }
      if (static_cast<int>(kept.size()) > n) {
        return absl::InvalidArgumentError(absl::StrCat("prune: layer ", layer, " row ", o, " group ", g, " has ",
                                                       kept.size(), " non-zeros, more than N = ", n, " (", n, ":", m,
                                                       ")"));
      }
      // Pad with zero-valued positions not already used, keeping order.
      for (int j = 0; static_cast<int>(kept.size()) < n; ++j) {
        if (std::find(kept.begin(), kept.end(), j) == kept.end()) kept.push_back(j);
      }
      std::sort(kept.begin(), kept.end());
      for (int k = 0; k < n; ++k) {
        const int64_t slot = g * n + k;
        w.values[o * w.kept_per_row() + slot] = group[kept[k]];
        WriteIndex(row, slot, bits, kept[k]);
      }
    }
  }
  return w;
}

std::vector<float> DecompressNm(const NmSparseMatrix& w) {
  std::vector<float> dense(w.out * w.in, 0.0f);
  std::vector<int32_t> columns(w.kept_per_row());
  const NmSparseView view = ViewOf(w);
  for (int64_t o = 0; o < w.out; ++o) {
    DecodeColumns(view, o, columns.data());
    for (int64_t k = 0; k < w.kept_per_row(); ++k) dense[o * w.in + columns[k]] = w.values[o * w.kept_per_row() + k];
  }
  return dense;
}

void NmSparseMatMulRef(const float* x, int64_t rows, const NmSparseView& w, const float* bias, float* y) {
  const int bits = NmIndexBits(w.m);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < w.out; ++o) {
      const uint8_t* row = w.indices + o * w.row_index_bytes;
      double sum = bias ? bias[o] : 0.0;
      for (int64_t k = 0; k < w.kept_per_row(); ++k) {
        const int64_t column = (k / w.n) * w.m + ReadIndex(row, k, bits);
        sum += double{w.values[o * w.kept_per_row() + k]} * x[r * w.in + column];
      }
      y[r * w.out + o] = static_cast<float>(sum);
    }
  }
}

void NmSparseMatMul(const float* x, int64_t rows, const NmSparseView& w, const float* bias, float* y) {
  const int64_t kept = w.kept_per_row();
  // 2:4 reads the packed indices directly (one byte: two groups); other
  // patterns use decoded columns, built on first need.
  const bool packed_24 = w.n == 2 && w.m == 4 && w.row_index_bytes * 4 == kept;
  if (rows < 4) {
    std::vector<int32_t> columns(kept);
    for (int64_t o = 0; o < w.out; ++o) {
      const float* v = w.values + o * kept;
      const uint8_t* index = w.indices + o * w.row_index_bytes;
      if (!packed_24) DecodeColumns(w, o, columns.data());
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * w.in;
        float sum0 = 0, sum1 = 0, sum2 = 0, sum3 = 0;
        if (packed_24) {
          for (int64_t b = 0; b < w.row_index_bytes; ++b) {
            const unsigned byte = index[b];
            const float* group = xr + 8 * b;
            sum0 += v[4 * b] * group[byte & 3];
            sum1 += v[4 * b + 1] * group[(byte >> 2) & 3];
            sum2 += v[4 * b + 2] * group[4 + ((byte >> 4) & 3)];
            sum3 += v[4 * b + 3] * group[4 + (byte >> 6)];
          }
        } else {
          int64_t k = 0;
          for (; k + 1 < kept; k += 2) {
            sum0 += v[k] * xr[columns[k]];
            sum1 += v[k + 1] * xr[columns[k + 1]];
          }
          if (k < kept) sum0 += v[k] * xr[columns[k]];
        }
        y[r * w.out + o] = (sum0 + sum1) + (sum2 + sum3) + (bias ? bias[o] : 0.0f);
      }
    }
    return;
  }
  // Per tile of batch rows, x^T [in, tile], so that each kept weight scales
  // one contiguous vector of the batch.
  std::vector<int32_t> all_columns;
  auto decoded = [&]() {
    if (all_columns.empty()) {
      all_columns.resize(w.out * kept);
      for (int64_t o = 0; o < w.out; ++o) DecodeColumns(w, o, all_columns.data() + o * kept);
    }
    return all_columns.data();
  };
  std::vector<float> xt(w.in * kRowTile);
  for (int64_t r0 = 0; r0 < rows; r0 += kRowTile) {
    const int64_t tile = std::min(kRowTile, rows - r0);
    for (int64_t r = 0; r < tile; ++r) {
      for (int64_t c = 0; c < w.in; ++c) xt[c * tile + r] = x[(r0 + r) * w.in + c];
    }
    if (tile == kRowTile && packed_24) {
      MultiplyFullTile24(w, xt.data(), bias, y + r0 * w.out);
    } else if (tile == kRowTile) {
      MultiplyFullTile(w, decoded(), xt.data(), bias, y + r0 * w.out);
    } else {
      MultiplyTile(w, decoded(), xt.data(), tile, bias, y + r0 * w.out);
    }
  }
}

namespace {

// The compressed weight of a kNmSparseMatMulOp node, checked against its
// attributes.
absl::StatusOr<NmSparseView> ViewOfNode(const runtime::KernelCall& call) {
  const Node& node = call.node;
  const Tensor* values = call.input(1);
  const Tensor* indices = call.input(2);
  if (call.input(0) == nullptr || values == nullptr || indices == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(node.name, ": ", kNmSparseMatMulOp, " needs X, values, indices"));
  }
  NmSparseView w;
  w.n = static_cast<int>(node.IntAttribute("n", 0));
  w.m = static_cast<int>(node.IntAttribute("m", 0));
  w.in = node.IntAttribute("in", 0);
  w.out = node.IntAttribute("out", 0);
  SQ_RETURN_IF_ERROR(ValidateNmPattern(w.n, w.m, w.in, node.name));
  w.row_index_bytes = (w.kept_per_row() * NmIndexBits(w.m) + 7) / 8;
  if (values->dtype() != DataType::kFloat32 || values->num_elements() != w.out * w.kept_per_row() ||
      indices->dtype() != DataType::kUInt8 || indices->num_elements() != w.out * w.row_index_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(node.name, ": compressed weight sizes do not match [", w.out,
                                                   ", ", w.in, "] ", w.n, ":", w.m));
  }
  w.values = values->data<float>();
  w.indices = indices->data<uint8_t>();
  return w;
}

class NmSparseBackend : public runtime::KernelBackend {
 public:
  explicit NmSparseBackend(std::shared_ptr<const runtime::KernelBackend> base) : base_(std::move(base)) {}

  std::string name() const override { return absl::StrCat(base_->name(), "+nm_sparse"); }

  bool Supports(absl::string_view op_type) const override {
    return op_type == kNmSparseMatMulOp || base_->Supports(op_type);
  }

  absl::StatusOr<std::vector<Tensor>> Run(const runtime::KernelCall& call) const override {
    if (call.node.op_type != kNmSparseMatMulOp) return base_->Run(call);
    SQ_ASSIGN_OR_RETURN(NmSparseView w, ViewOfNode(call));
    const Tensor& x = *call.input(0);
    const Tensor* bias = call.input(3);
    if (x.dtype() != DataType::kFloat32 || x.rank() < 1 || x.shape().back() != w.in) {
      return absl::InvalidArgumentError(absl::StrCat(call.node.name, ": X must be float32 [..., ", w.in, "], got ",
                                                     graph::ShapeToString(x.shape())));
    }
    if (bias != nullptr && (bias->dtype() != DataType::kFloat32 || bias->num_elements() != w.out)) {
      return absl::InvalidArgumentError(absl::StrCat(call.node.name, ": bias must be float32 [", w.out, "]"));
    }
    std::vector<int64_t> shape = x.shape();
    shape.back() = w.out;
    Tensor y(DataType::kFloat32, shape);
    NmSparseMatMul(x.data<float>(), x.num_elements() / w.in, w, bias ? bias->data<float>() : nullptr,
                   y.data<float>());
    std::vector<Tensor> outputs;
    outputs.push_back(std::move(y));
    return outputs;
  }

 private:
  std::shared_ptr<const runtime::KernelBackend> base_;
};

}  // namespace

absl::StatusOr<std::vector<std::string>> UseNmSparseKernels(Graph* graph, int n, int m) {
  SQ_RETURN_IF_ERROR(ValidateNmPattern(n, m, m, "(pattern)"));
  SQ_ASSIGN_OR_RETURN(quant::ptq::LayerScan scan, quant::ptq::FindQuantizableLayers(*graph));
  std::vector<std::string> rewritten;
  for (const quant::ptq::QuantizableLayer& layer : scan.layers) {
    if (layer.op_type == "Conv" || layer.in % m != 0) continue;
    Node* node = nullptr;
    for (Node& candidate : graph->nodes) {
      if (candidate.op_type == layer.op_type && candidate.inputs.size() >= 2 && candidate.inputs[0] == layer.input &&
          candidate.inputs[1] == layer.weight_input) {
        node = &candidate;
      }
    }
    if (node == nullptr) continue;
    if (layer.op_type == "Gemm" && (node->IntAttribute("transA", 0) != 0 || node->FloatAttribute("alpha", 1) != 1 ||
                                    (node->inputs.size() > 2 && node->FloatAttribute("beta", 1) != 1))) {
      continue;
    }
    if (layer.op_type == "Gemm" && !layer.bias.empty() &&
        graph->initializers.at(layer.bias).num_elements() != layer.out) {
      continue;  // a broadcast bias of another shape: leave the dense Gemm
    }
    const std::vector<float> dense = quant::ptq::WeightMatrix(*graph, layer);
    if (!HasNmPattern(dense, layer.out, layer.in, n, m)) continue;
    SQ_ASSIGN_OR_RETURN(NmSparseMatrix w, CompressNm(dense, layer.out, layer.in, n, m, layer.name));
    const std::string values = graph::UniqueValueName(*graph, absl::StrCat(layer.weight, ".nm_values"));
    graph->initializers[values] = Tensor::FromVector<float>(DataType::kFloat32, {w.out, w.kept_per_row()}, w.values);
    const std::string indices = graph::UniqueValueName(*graph, absl::StrCat(layer.weight, ".nm_indices"));
    Tensor index_tensor(DataType::kUInt8, {w.out, w.row_index_bytes});
    std::memcpy(index_tensor.data<uint8_t>(), w.indices.data(), w.indices.size());
    graph->initializers[indices] = std::move(index_tensor);
    Node sparse;
    sparse.name = node->name;
    sparse.op_type = kNmSparseMatMulOp;
    sparse.inputs = {layer.input, values, indices};
    if (layer.op_type == "Gemm" && !layer.bias.empty()) sparse.inputs.push_back(layer.bias);
    sparse.outputs = node->outputs;
    sparse.attributes = {{"n", int64_t{n}}, {"m", int64_t{m}}, {"in", layer.in}, {"out", layer.out}};
    *node = std::move(sparse);
    if (layer.weight_input != layer.weight && graph::CountUses(*graph, layer.weight_input) == 0) {
      graph->nodes.erase(std::remove_if(graph->nodes.begin(), graph->nodes.end(),
                                        [&](const Node& candidate) {
                                          return candidate.outputs.size() == 1 &&
                                                 candidate.outputs[0] == layer.weight_input;
                                        }),
                         graph->nodes.end());
    }
    if (graph::CountUses(*graph, layer.weight) == 0) graph->initializers.erase(layer.weight);
    rewritten.push_back(layer.name);
  }
  SQ_RETURN_IF_ERROR(graph::SortTopologically(graph));
  return rewritten;
}

std::shared_ptr<const runtime::KernelBackend> CreateNmSparseBackend(std::shared_ptr<const runtime::KernelBackend> base) {
  return std::make_shared<NmSparseBackend>(std::move(base));
}

}  // namespace squeeze::core::prune
