#include "core/quant/codebook/kmeans_codebook.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "core/quant/gemm/codebook_layout.h"
#include "core/status_macros.h"

namespace squeeze::core::quant::codebook {
namespace {

// One codebook's data: values sorted ascending with their weights, and
// prefix sums of weight and weight * value (index i covers [0, i)).
struct SortedPoints {
  std::vector<double> value, weight;
  std::vector<double> weight_prefix, moment_prefix;

  void Finish() {
    const size_t n = value.size();
    weight_prefix.assign(n + 1, 0.0);
    moment_prefix.assign(n + 1, 0.0);
    for (size_t i = 0; i < n; ++i) {
      weight_prefix[i + 1] = weight_prefix[i] + weight[i];
      moment_prefix[i + 1] = moment_prefix[i] + weight[i] * value[i];
    }
  }
};

// Uniform double in [0, 1) from the engine's 53 high bits: the same on every
// standard library (uniform_real_distribution's algorithm is unspecified).
double Uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// Weighted k-means++ on sorted points. Returns k centroids, sorted.
std::vector<double> KmeansPlusPlus(const SortedPoints& points, int k, std::mt19937_64& rng) {
  const size_t n = points.value.size();
  std::vector<double> centroids;
  std::vector<double> distance(n, 0.0);
  auto draw = [&](const std::vector<double>& mass) {
    double total = 0;
    for (double m : mass) total += m;
    if (!(total > 0)) return static_cast<size_t>(0);
    const double target = Uniform01(rng) * total;
    double running = 0;
    for (size_t i = 0; i < n; ++i) {
      running += mass[i];
      if (running > target) return i;
    }
    return n - 1;
  };
  size_t first = draw(points.weight);
  centroids.push_back(points.value[first]);
  for (size_t i = 0; i < n; ++i) {
    const double d = points.value[i] - centroids[0];
    distance[i] = d * d;
  }
  std::vector<double> mass(n);
  while (static_cast<int>(centroids.size()) < k) {
    for (size_t i = 0; i < n; ++i) mass[i] = points.weight[i] * distance[i];
    double total = 0;
    for (double m : mass) total += m;
    // Fewer distinct weighted values than centroids: repeat the last one
    // (its cluster stays empty; indices never point at it).
    const double next = total > 0 ? points.value[draw(mass)] : centroids.back();
    centroids.push_back(next);
    for (size_t i = 0; i < n; ++i) {
      const double d = points.value[i] - next;
      distance[i] = std::min(distance[i], d * d);
    }
  }
  std::sort(centroids.begin(), centroids.end());
  return centroids;
}

// First index of the sorted values assigned to centroid j + 1 or later: the
// values below the midpoint of centroids j and j + 1 go to j (ties to the
// lower centroid, as in Assign).
std::vector<size_t> Boundaries(const SortedPoints& points, const std::vector<double>& centroids) {
  std::vector<size_t> ends(centroids.size());
  for (size_t j = 0; j + 1 < centroids.size(); ++j) {
    const double mid = 0.5 * (centroids[j] + centroids[j + 1]);
    ends[j] = static_cast<size_t>(std::upper_bound(points.value.begin(), points.value.end(), mid) -
                                  points.value.begin());
  }
  ends.back() = points.value.size();
  return ends;
}

// Lloyd iterations; returns how many ran.
int Lloyd(const SortedPoints& points, int max_iterations, std::vector<double>* centroids) {
  std::vector<size_t> ends = Boundaries(points, *centroids);
  int iteration = 0;
  while (iteration < max_iterations) {
    ++iteration;
    size_t begin = 0;
    for (size_t j = 0; j < centroids->size(); ++j) {
      const double w = points.weight_prefix[ends[j]] - points.weight_prefix[begin];
      if (w > 0) (*centroids)[j] = (points.moment_prefix[ends[j]] - points.moment_prefix[begin]) / w;
      begin = ends[j];
    }
    // Means of ordered contiguous runs stay ordered; sort guards rounding.
    std::sort(centroids->begin(), centroids->end());
    std::vector<size_t> next = Boundaries(points, *centroids);
    if (next == ends) break;
    ends = std::move(next);
  }
  return iteration;
}

// Index of the centroid nearest `w` (the lower one on a tie).
uint8_t Assign(const std::vector<float>& codebook, float w) {
  uint8_t best = 0;
  double best_distance = std::abs(static_cast<double>(w) - codebook[0]);
  for (size_t j = 1; j < codebook.size(); ++j) {
    const double d = std::abs(static_cast<double>(w) - codebook[j]);
    if (d < best_distance) {
      best_distance = d;
      best = static_cast<uint8_t>(j);
    }
  }
  return best;
}

}  // namespace

absl::Status KmeansOptions::Validate(const std::string& layer) const {
  if (bits < kMinCodebookBits || bits > kMaxCodebookBits) {
    return absl::InvalidArgumentError(
        absl::StrCat("kmeans: bits must be 2, 3 or 4, got ", bits, " (layer ", layer, ")"));
  }
  if (max_iterations < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("kmeans: max_iterations must be >= 1, got ", max_iterations, " (layer ", layer, ")"));
  }
  return absl::OkStatus();
}

std::string KmeansOptions::TechniqueName() const {
  return absl::StrCat("kmeans", bits, per_row_codebook ? "-row" : "-layer");
}

absl::StatusOr<KmeansLayer> QuantizeKmeans(const std::string& name, const std::vector<float>& weights, int64_t out,
                                           int64_t in, const std::vector<double>& importance,
                                           const std::vector<float>& bias, const KmeansOptions& options) {
  SQ_RETURN_IF_ERROR(options.Validate(name));
  if (out < 1 || in < 1 || static_cast<int64_t>(weights.size()) != out * in) {
    return absl::InvalidArgumentError(absl::StrCat("kmeans: weight has ", weights.size(), " values, expected ", out,
                                                   " x ", in, " (layer ", name, ")"));
  }
  if (!importance.empty() && static_cast<int64_t>(importance.size()) != in) {
    return absl::InvalidArgumentError(absl::StrCat("kmeans: importance has ", importance.size(),
                                                   " values, expected ", in, " (layer ", name, ")"));
  }
  if (!bias.empty() && static_cast<int64_t>(bias.size()) != out) {
    return absl::InvalidArgumentError(
        absl::StrCat("kmeans: bias has ", bias.size(), " values, expected ", out, " (layer ", name, ")"));
  }
  std::vector<double> column_weight(in, 1.0);
  if (!importance.empty()) {
    double sum = 0;
    for (int64_t c = 0; c < in; ++c) {
      if (!std::isfinite(importance[c]) || importance[c] < 0) {
        return absl::InvalidArgumentError(absl::StrCat("kmeans: importance of column ", c, " is ", importance[c],
                                                       " (layer ", name, ")"));
      }
      sum += importance[c];
    }
    const double floor = sum > 0 ? 1e-6 * sum / in : 1.0;
    for (int64_t c = 0; c < in; ++c) column_weight[c] = importance[c] + floor;
  }

  KmeansLayer result;
  std::vector<float> w = weights;
  for (float& v : w) {
    if (!std::isfinite(v)) {
      v = 0;
      ++result.nonfinite_weights;
    }
  }
  const int k = CodebookEntries(options.bits);
  gemm::CodebookLinear& linear = result.linear;
  linear.name = name;
  linear.in = in;
  linear.out = out;
  linear.bits = options.bits;
  linear.per_row_codebook = options.per_row_codebook;
  linear.bias = bias;
  const int64_t codebooks = options.per_row_codebook ? out : 1;
  const int64_t rows_per_codebook = out / codebooks;
  linear.codebook.assign(codebooks * k, 0.0f);
  std::vector<uint8_t> indices(out * in);
  result.dequantized.resize(out * in);
  for (int64_t b = 0; b < codebooks; ++b) {
    const int64_t row_begin = b * rows_per_codebook;
    const int64_t count = rows_per_codebook * in;
    std::vector<int64_t> order(count);
    std::iota(order.begin(), order.end(), 0);
    const float* base = w.data() + row_begin * in;
    // Stable order on (value, position): deterministic whatever the sort.
    std::sort(order.begin(), order.end(), [base](int64_t a, int64_t c) {
      return base[a] < base[c] || (base[a] == base[c] && a < c);
    });
    SortedPoints points;
    points.value.resize(count);
    points.weight.resize(count);
    for (int64_t i = 0; i < count; ++i) {
      points.value[i] = base[order[i]];
      points.weight[i] = column_weight[order[i] % in];
    }
    points.Finish();
    std::mt19937_64 rng(options.seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(b));
    std::vector<double> centroids = KmeansPlusPlus(points, k, rng);
    result.iterations = std::max(result.iterations, Lloyd(points, options.max_iterations, &centroids));
    std::vector<float> book(centroids.begin(), centroids.end());
    std::copy(book.begin(), book.end(), linear.codebook.begin() + b * k);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t at = row_begin * in + i;
      const uint8_t index = Assign(book, w[at]);
      indices[at] = index;
      result.dequantized[at] = book[index];
      const double d = static_cast<double>(w[at]) - book[index];
      result.weighted_error += column_weight[i % in] * d * d;
    }
  }
  SQ_ASSIGN_OR_RETURN(linear.packed, gemm::PackCodebookIndices(indices, options.bits, out, in));
  SQ_RETURN_IF_ERROR(linear.Validate());
  return result;
}

int64_t CodebookStorageBytes(const gemm::CodebookLinear& linear) {
  return static_cast<int64_t>(linear.packed.size()) +
         static_cast<int64_t>(sizeof(float) * (linear.codebook.size() + linear.bias.size()));
}

absl::StatusOr<CodebookGraphResult> QuantizeGraphKmeans(const graph::Graph& graph,
                                                        const std::vector<ptq::CalibrationBatch>& batches,
                                                        const KmeansOptions& options,
                                                        const LayerProgressFn& progress) {
  SQ_ASSIGN_OR_RETURN(ptq::LayerScan scan, ptq::FindQuantizableLayers(graph));
  if (scan.layers.empty()) {
    return absl::InvalidArgumentError("kmeans: the graph has no quantizable layer");
  }
  for (const auto& layer : scan.layers) SQ_RETURN_IF_ERROR(options.Validate(layer.name));
  std::vector<ptq::LayerStatistics> stats;
  if (options.activation_weighted) {
    ptq::CalibrationOptions calibration;
    calibration.hessian = true;
    calibration.max_kept_rows = 0;
    calibration.max_kept_values = 0;
    SQ_ASSIGN_OR_RETURN(stats, ptq::Calibrate(graph, scan.layers, batches, calibration));
  }
  CodebookGraphResult result;
  result.graph = graph;
  result.skipped = scan.skipped;
  const int n = static_cast<int>(scan.layers.size());
  for (int i = 0; i < n; ++i) {
    const ptq::QuantizableLayer& layer = scan.layers[i];
    std::vector<double> importance;
    if (options.activation_weighted) {
      // H = 2 X'X / rows, so H_cc / 2 is the mean x_c^2.
      importance.resize(layer.in);
      for (int64_t c = 0; c < layer.in; ++c) importance[c] = 0.5 * stats[i].hessian[c * layer.in + c];
    }
    std::vector<float> bias;
    if (!layer.bias.empty()) bias = graph.initializers.at(layer.bias).ToFloats();
    SQ_ASSIGN_OR_RETURN(KmeansLayer quantized,
                        QuantizeKmeans(layer.name, ptq::WeightMatrix(graph, layer), layer.out, layer.in, importance,
                                       bias, options));
    ptq::SetWeightMatrix(&result.graph, layer, quantized.dequantized);
    result.storage_bytes += CodebookStorageBytes(quantized.linear);
    result.weighted_errors.push_back(quantized.weighted_error);
    result.layers.push_back(std::move(quantized.linear));
    if (progress && !progress(i, n)) return absl::CancelledError("kmeans: cancelled");
  }
  return result;
}

}  // namespace squeeze::core::quant::codebook
