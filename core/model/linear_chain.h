// The v1 model format the service compresses: an MLP stored as safetensors.
//
// Each layer `<name>` is a 2-D floating-point tensor `<name>.weight` of shape
// [out, in] and an optional `<name>.bias` of shape [out]. The layer order is
// the metadata entry "squeeze.layers" (comma-separated names) or, when that
// is absent, the layer names sorted as strings. Consecutive layers chain: the
// in width of layer i+1 equals the out width of layer i. ReLU follows every
// layer but the last. A file holding any other tensor is not a linear chain.
#ifndef SQUEEZE_CORE_MODEL_LINEAR_CHAIN_H_
#define SQUEEZE_CORE_MODEL_LINEAR_CHAIN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/model/safetensors.h"

namespace squeeze::core::model {

inline constexpr char kLayersMetadataKey[] = "squeeze.layers";

struct LinearLayer {
  std::string name;
  int64_t in = 0;
  int64_t out = 0;
  std::vector<float> weight;  // [out, in], row-major
  std::vector<float> bias;    // [out], or empty for no bias

  // Weights plus biases.
  int64_t Parameters() const;
};

struct LinearChain {
  std::vector<LinearLayer> layers;

  // Width of the input rows (in of the first layer); 0 without layers.
  int64_t InputWidth() const;
  // Width of the output rows (out of the last layer); 0 without layers.
  int64_t OutputWidth() const;
  // Weights plus biases over all layers.
  int64_t Parameters() const;
  // Multiply-accumulates per input row: the sum of in * out.
  int64_t MacsPerRow() const;
};

// Builds the chain, converting F16/BF16 tensors to float. INVALID_ARGUMENT
// naming the tensor for: no layers, a missing or non-2-D weight, a bias that
// is not [out], a non-floating-point dtype, an empty dimension, a tensor that
// belongs to no listed layer, a duplicate or empty name in "squeeze.layers",
// and layers that do not chain (naming both tensors and their shapes).
absl::StatusOr<LinearChain> LinearChainFromSafetensors(
    const SafetensorsFile& file);

// The same checks from the header alone, for cheap validation at submit time.
absl::Status ValidateLinearChainHeader(const SafetensorsHeader& header);

// Bytes of memory a quantization job on this model is expected to need at
// peak: the file's data, plus three float32 copies of every tensor (the float
// chain, the dequantized chain it is compared with, and working space).
// Activations are not counted; they are small next to the weights for the
// batch sizes the service evaluates.
int64_t EstimateMemoryBytes(const SafetensorsHeader& header);

// The file for `chain`: F32 tensors, metadata "squeeze.layers" in chain order.
SafetensorsFile LinearChainToSafetensors(const LinearChain& chain);

// y = x W^T + b for one layer, on `rows` row-major rows, then ReLU when
// `relu`. `bias` may be null. `y` must hold rows * out floats and must not
// alias `x`.
void LinearForward(const float* x, int64_t rows, int64_t in, int64_t out,
                   const float* weight, const float* bias, bool relu,
                   float* y);

// Runs `chain` on `rows` rows of `x` (rows * InputWidth() floats, row-major).
// `out` receives rows * OutputWidth() floats. When `layer_inputs` is not
// null it receives, for each layer, the rows * in floats that layer saw.
// Precondition: `chain` came from LinearChainFromSafetensors or satisfies the
// same rules.
void Forward(const LinearChain& chain, const float* x, int64_t rows,
             std::vector<float>* out,
             std::vector<std::vector<float>>* layer_inputs);

}  // namespace squeeze::core::model

#endif  // SQUEEZE_CORE_MODEL_LINEAR_CHAIN_H_
