// Non-uniform weight quantization with k-means codebooks (issue 4): each
// layer's [out, in] weight becomes b-bit indices into a codebook of 2^b
// float centroids (one per layer, or one per output row), stored in the
// layout of core/quant/gemm/codebook_layout.h so that LutGemm executes it.
//
// The centroids minimise the importance-weighted squared error
//   E = sum_{r,c} importance[c] * (W[r, c] - codebook[index[r, c]])^2
// where importance[c] is the mean x_c^2 of input column c over calibration
// data (the diagonal of the layer Hessian X'X / rows, up to a factor): a
// weight that multiplies large activations costs more when it moves.
// Initialisation is weighted k-means++ (seeded; first centroid drawn with
// probability proportional to the weight, then proportional to weight times
// squared distance to the nearest chosen centroid); refinement is Lloyd
// (EM) iterations until no assignment changes or max_iterations. In 1-D the
// clusters of sorted centroids are contiguous runs of the sorted values, so
// each iteration is a binary search per centroid on prefix sums: exact Lloyd
// at O(2^b log n) per iteration after one O(n log n) sort.
//
// Deterministic for a seed: the same inputs and options give the same
// codebooks and indices bit for bit.
#ifndef SQUEEZE_CORE_QUANT_CODEBOOK_KMEANS_CODEBOOK_H_
#define SQUEEZE_CORE_QUANT_CODEBOOK_KMEANS_CODEBOOK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/graph/graph.h"
#include "core/quant/gemm/lut_gemm.h"
#include "core/quant/ptq/calibration.h"
#include "core/quant/ptq/layers.h"
#include "core/quant/quantized_model.h"

namespace squeeze::core::quant::codebook {

struct KmeansOptions {
  int bits = 4;                   // 2, 3 or 4: 2^bits centroids per codebook
  bool per_row_codebook = false;  // one codebook per output channel
  int max_iterations = 100;       // Lloyd iterations, at least 1
  uint64_t seed = 1;              // k-means++ draws
  bool activation_weighted = true;  // false: every weight counts the same

  // INVALID_ARGUMENT naming the layer: "kmeans: bits must be 2, 3 or 4, got 5
  // (layer fc1)", "kmeans: max_iterations must be >= 1, got 0 (layer fc1)".
  absl::Status Validate(const std::string& layer) const;
  // "kmeans4-layer", "kmeans3-row" (codebook per layer or per row).
  std::string TechniqueName() const;
};

struct KmeansLayer {
  gemm::CodebookLinear linear;     // what LutGemm runs
  std::vector<float> dequantized;  // [out, in]: codebook[index], for fake-quant graphs
  double weighted_error = 0;       // E above, in double
  int iterations = 0;              // Lloyd iterations, the most over the layer's codebooks
  int64_t nonfinite_weights = 0;   // NaN/inf weights, set to 0 before clustering
};

// Clusters `weights` ([out, in], row-major). `importance` is [in], >= 0 and
// finite, or empty for uniform weighting; a small floor (1e-6 of its mean)
// keeps columns whose inputs were always 0 from being ignored entirely.
// `bias` is [out] or empty and is copied into the result. INVALID_ARGUMENT
// naming `name` for bad options or sizes, or a negative / non-finite
// importance. Non-finite weights are set to 0 and counted.
absl::StatusOr<KmeansLayer> QuantizeKmeans(const std::string& name, const std::vector<float>& weights, int64_t out,
                                           int64_t in, const std::vector<double>& importance,
                                           const std::vector<float>& bias, const KmeansOptions& options);

// Bytes of the packed indices, the float32 codebook(s) and the bias: the
// counterpart of QuantizedLinear::StorageBytes for equal-storage tables.
int64_t CodebookStorageBytes(const gemm::CodebookLinear& linear);

struct CodebookGraphResult {
  graph::Graph graph;                         // weights replaced by codebook[index]
  std::vector<gemm::CodebookLinear> layers;   // in layer order
  std::vector<double> weighted_errors;        // per layer
  std::vector<ptq::SkippedNode> skipped;      // left in float, with why
  int64_t storage_bytes = 0;                  // sum of CodebookStorageBytes
};

// Quantizes every quantizable layer of `graph` (ptq/layers.h) with k-means.
// With options.activation_weighted, calibrates on `batches` first (the
// importance is the diagonal of the calibration Hessian); otherwise
// `batches` may be empty. `progress` as in QuantizeGraph. Errors: Calibrate's,
// QuantizeKmeans's, INVALID_ARGUMENT when the graph has no quantizable layer,
// CANCELLED when progress returns false.
absl::StatusOr<CodebookGraphResult> QuantizeGraphKmeans(const graph::Graph& graph,
                                                        const std::vector<ptq::CalibrationBatch>& batches,
                                                        const KmeansOptions& options,
                                                        const LayerProgressFn& progress = {});

}  // namespace squeeze::core::quant::codebook

#endif  // SQUEEZE_CORE_QUANT_CODEBOOK_KMEANS_CODEBOOK_H_
