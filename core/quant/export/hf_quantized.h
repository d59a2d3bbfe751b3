// Weight-only quantized LLaMA checkpoints in Hugging Face layout, format
// "squeeze-rtn" (docs/formats.md): a directory with config.json and
// model.safetensors where every linear weight X.weight (q/k/v/o_proj,
// gate/up/down_proj, and lm_head when untied) is replaced by
//   X.qweight [out, PackedRowBytes(bits, in)]  int4: U8, two values per byte
//                                              (element 2k in the low nibble,
//                                              symmetric values stored q + 8);
//                                              int8: I8 (symmetric) or U8
//   X.scales  [out, groups]                     F32
//   X.qzeros  [out, groups]                     U8, only when asymmetric
// and w = (q - zero) * scale per group of group_size inputs (the whole row
// when group_size is 0); the packing is core/quant/packed_formats.h's. The
// other tensors (embeddings, norms) stay F32 under their names. config.json
// is the model's plus
//   "quantization_config": {"quant_method": "squeeze-rtn", "bits": 4,
//     "group_size": 128 (0: per channel), "sym": true,
//     "modules": ["model.layers.0.self_attn.q_proj", ...]}
#ifndef SQUEEZE_CORE_QUANT_EXPORT_HF_QUANTIZED_H_
#define SQUEEZE_CORE_QUANT_EXPORT_HF_QUANTIZED_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/graph/graph.h"
#include "core/hf/hf_checkpoint.h"
#include "core/quant/rtn.h"

namespace squeeze::core::quant_export {

inline constexpr char kHfQuantMethod[] = "squeeze-rtn";

// RTN-quantizes the linear weights of the LLaMA checkpoint (`config`,
// float32 `graph` as hf::LoadHfCheckpoint gives it) and writes the directory
// described above, creating it if needed. INVALID_ARGUMENT for a non-LLaMA
// config, a missing tensor, or options that do not fit a layer (naming it).
absl::Status SaveHfQuantized(const hf::HfConfig& config, const graph::Graph& graph,
                             const quant::RtnOptions& options, const std::string& dir);

// Reads such a directory back, dequantizing every X.qweight to a float32
// X.weight, and builds the graph as hf::LoadHfCheckpoint does.
// INVALID_ARGUMENT naming the file and tensor when quantization_config is
// missing or not "squeeze-rtn", or a quantized tensor is missing or has the
// wrong dtype or shape.
absl::StatusOr<hf::HfCheckpoint> LoadHfQuantized(const std::string& dir);

}  // namespace squeeze::core::quant_export

#endif  // SQUEEZE_CORE_QUANT_EXPORT_HF_QUANTIZED_H_
