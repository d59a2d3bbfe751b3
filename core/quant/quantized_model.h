// A whole LinearChain quantized with RTN, and its artifact format
// "safetensors-squeeze-q": a safetensors file holding, per layer <name>,
//   <name>.qweight  [out, PackedRowBytes(bits, in)]  I8 (int8 symmetric) or U8
//   <name>.scales   [out, groups]                     F32
//   <name>.zeros    [out, groups]                     U8, only when asymmetric
//   <name>.bias     [out]                             F32, when the layer has one
// with metadata
//   squeeze.format = "rtn-v1", squeeze.layers = "<name>,<name>,...",
//   squeeze.layer.<name>.bits = "4" | "8",
//   squeeze.layer.<name>.group_size = "0" (per channel) | "<n>",
//   squeeze.layer.<name>.in_features = "<in>",
//   squeeze.layer.<name>.scheme = "sym" | "asym".
// Packed layouts are in packed_formats.h.
#ifndef SQUEEZE_CORE_QUANT_QUANTIZED_MODEL_H_
#define SQUEEZE_CORE_QUANT_QUANTIZED_MODEL_H_

#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/model/linear_chain.h"
#include "core/model/safetensors.h"
#include "core/quant/rtn.h"

namespace squeeze::core::quant {

inline constexpr char kFormatMetadataKey[] = "squeeze.format";
inline constexpr char kRtnFormat[] = "rtn-v1";

struct QuantizedChain {
  std::vector<QuantizedLinear> layers;

  // Bytes of packed weights, scales, zero points and biases over all layers.
  int64_t StorageBytes() const;
};

// Called after layer `layer_index` (0-based) of `layers` is quantized;
// returning false cancels.
using LayerProgressFn = std::function<bool(int layer_index, int layers)>;

// Quantizes every layer of `chain` with QuantizeRtn. Options are validated
// for every layer before any work starts. Errors as QuantizeRtn; CANCELLED
// when `progress` (may be empty) returns false.
absl::StatusOr<QuantizedChain> QuantizeChain(const model::LinearChain& chain,
                                             const RtnOptions& options,
                                             const LayerProgressFn& progress);

// The artifact file for `chain`, in the format above.
model::SafetensorsFile QuantizedChainToSafetensors(const QuantizedChain& chain);

// Reads an artifact back. INVALID_ARGUMENT naming the layer and tensor when
// the format tag is not "rtn-v1", a tensor or metadata entry is missing or
// has the wrong dtype or shape, or a tensor belongs to no layer.
absl::StatusOr<QuantizedChain> QuantizedChainFromSafetensors(
    const model::SafetensorsFile& file);

// The float chain the quantized one stands for (weights dequantized).
// Errors as DequantizeRtn.
absl::StatusOr<model::LinearChain> DequantizeChain(const QuantizedChain& chain);

// QuantizedChainFromSafetensors + DequantizeChain.
absl::StatusOr<model::LinearChain> DequantizeChainFromSafetensors(
    const model::SafetensorsFile& file);

// Runs `chain` like model::Forward, dequantizing one layer at a time into a
// scratch buffer and multiplying in float32. No claim of speed: this is the
// honest cost of the format without integer kernels.
absl::Status QuantizedForward(const QuantizedChain& chain, const float* x,
                              int64_t rows, std::vector<float>* out);

}  // namespace squeeze::core::quant

#endif  // SQUEEZE_CORE_QUANT_QUANTIZED_MODEL_H_
