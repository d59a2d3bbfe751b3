// GGUF v3, llama.cpp's model file (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):
//   uint32 magic "GGUF" (bytes 47 47 55 46), uint32 version 3,
//   uint64 tensor count, uint64 metadata count,
//   metadata: { string key, uint32 value type, value }*,
//   tensor infos: { string name, uint32 n_dims, uint64 ne[n_dims],
//                   uint32 ggml_type, uint64 offset }*,
//   padding to general.alignment (32 unless the metadata says otherwise),
//   tensor data, each tensor at its offset (a multiple of the alignment)
//   from the start of this section.
// Strings are uint64 length + bytes (no terminator); everything is
// little-endian. ne[0] is the length of a row (the fastest dimension), so
// an [out, in] matrix has ne = {in, out}.
//
// ExportLlamaGguf maps a LLaMA Hugging Face checkpoint onto llama.cpp's names
// and layout (docs/formats.md): token_embd, blk.N.{attn_norm, attn_q, attn_k,
// attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down}, output_norm,
// output (when untied). q_proj and k_proj rows are permuted as llama.cpp's
// convert_hf_to_gguf.py does (PermuteForGgufRope), because llama.cpp's LLaMA
// rotary embedding rotates adjacent pairs (2i, 2i+1) while Hugging Face's
// rotates (i, i + head_dim / 2).
#ifndef SQUEEZE_CORE_QUANT_EXPORT_GGUF_H_
#define SQUEEZE_CORE_QUANT_EXPORT_GGUF_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"
#include "core/hf/hf_checkpoint.h"
#include "core/quant/export/ggml_blocks.h"

namespace squeeze::core::quant_export {

// GGUF metadata value types.
enum class GgufType : uint32_t {
  kUInt8 = 0, kInt8 = 1, kUInt16 = 2, kInt16 = 3, kUInt32 = 4, kInt32 = 5,
  kFloat32 = 6, kBool = 7, kString = 8, kArray = 9, kUInt64 = 10, kInt64 = 11,
  kFloat64 = 12,
};

// One metadata value: a scalar (one element in the vector of its kind) or an
// array of `element_type` (arrays of arrays are rejected).
struct GgufValue {
  GgufType type = GgufType::kUInt32;
  GgufType element_type = GgufType::kUInt32;  // kArray only
  std::vector<int64_t> ints;       // integer types and bool (uint64 above
                                   // int64's range is rejected by the reader)
  std::vector<double> floats;      // float32, float64
  std::vector<std::string> strings;

  static GgufValue UInt32(uint32_t v);
  static GgufValue Float32(float v);
  static GgufValue Bool(bool v);
  static GgufValue String(std::string v);
  static GgufValue StringArray(std::vector<std::string> v);
  static GgufValue Int32Array(std::vector<int32_t> v);
};

struct GgufTensor {
  std::string name;
  std::vector<int64_t> ne;  // ne[0] = row length
  GgmlType type = GgmlType::kF32;
  std::string data;         // rows of blocks (or of f32/f16 values)
};

struct GgufFile {
  std::vector<std::pair<std::string, GgufValue>> metadata;
  std::vector<GgufTensor> tensors;

  // Null when absent.
  const GgufValue* Find(std::string_view key) const;
  const GgufTensor* FindTensor(std::string_view name) const;
};

inline constexpr uint32_t kGgufAlignment = 32;

// The file bytes (version 3, alignment 32). Precondition: each tensor's data
// size is GgufTensorBytes of its type and ne.
std::string SerializeGguf(const GgufFile& file);

// Bytes a tensor of `type` and `ne` takes. INVALID_ARGUMENT when a
// quantized type's row length is not a multiple of 32, or a dimension is
// not positive.
absl::StatusOr<int64_t> GgufTensorBytes(GgmlType type, const std::vector<int64_t>& ne);

// Parses GGUF version 2 or 3 bytes. INVALID_ARGUMENT naming the byte offset
// (and key or tensor) for a bad magic or version, a truncated or oversized
// length, an unknown value or tensor type, a misaligned or overlapping
// tensor, or data past the end.
absl::StatusOr<GgufFile> ParseGguf(std::string_view bytes);

// The tensor's values as float32, row-major (F32, F16, Q8_0, Q4_0).
absl::StatusOr<std::vector<float>> DequantizeGgufTensor(const GgufTensor& tensor);

// llama.cpp's permutation of q_proj / k_proj rows for its rotary embedding:
// within each of `heads` heads of head_dim = rows / heads rows, output row
// h * head_dim + 2 * i + j is input row h * head_dim + j * head_dim / 2 + i
// (i < head_dim / 2, j in {0, 1}). `w` is [rows, cols] row-major.
// Precondition: rows divisible by 2 * heads.
std::vector<float> PermuteForGgufRope(const std::vector<float>& w, int64_t rows, int64_t cols,
                                      int64_t heads);

// The inverse of PermuteForGgufRope: a GGUF attn_q / attn_k matrix back in
// Hugging Face's row order. Same preconditions.
std::vector<float> UnpermuteFromGgufRope(const std::vector<float>& w, int64_t rows, int64_t cols,
                                         int64_t heads);

struct GgufExportOptions {
  // Type of the 2-D weights (token_embd and the projections): kQ8_0, kQ4_0,
  // kF16 or kF32. Norm weights are always F32.
  GgmlType weight_type = GgmlType::kQ8_0;
  std::string name = "squeeze-llama";  // general.name
};

// The GGUF of a LLaMA checkpoint (`config`, float32 `graph` initializers
// under their Hugging Face names as hf::LoadHfCheckpoint gives them) with a
// byte-level BPE tokenizer: `tokens` ordered by id (vocab.json), `merges` in
// rank order (merges.txt without its "#version" line). INVALID_ARGUMENT when
// the family is not LLaMA, a tensor is missing, a row length is not a
// multiple of 32 for a quantized type, or tokens.size() != vocab_size.
absl::StatusOr<GgufFile> LlamaToGguf(const hf::HfConfig& config, const graph::Graph& graph,
                                     const std::vector<std::string>& tokens,
                                     const std::vector<std::string>& merges,
                                     const GgufExportOptions& options);

// Loads the checkpoint directory `hf_dir` (config.json, model.safetensors,
// vocab.json, merges.txt) and writes LlamaToGguf's file to `out_path`
// atomically. Errors as LoadHfCheckpoint and LlamaToGguf; NOT_FOUND or
// INVALID_ARGUMENT naming vocab.json / merges.txt when they are missing or
// malformed.
absl::Status ExportLlamaGguf(const std::string& hf_dir, const std::string& out_path,
                             const GgufExportOptions& options);

}  // namespace squeeze::core::quant_export

#endif  // SQUEEZE_CORE_QUANT_EXPORT_GGUF_H_
