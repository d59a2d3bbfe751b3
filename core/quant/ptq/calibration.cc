#include "core/quant/ptq/calibration.h"

#include <Eigen/Dense>
#include <cmath>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"

namespace squeeze::core::quant::ptq {
namespace {

using graph::Tensor;

// Keeps every `stride`-th item of a stream, up to `limit` of them.
struct StrideSampler {
  int64_t stride = 1;
  int64_t seen = 0;
  int64_t limit = 0;
  int64_t kept = 0;
  bool Take() {
    const bool take = seen++ % stride == 0 && kept < limit;
    kept += take;
    return take;
  }
};

struct Accumulator {
  LayerStatistics stats;
  StrideSampler row_sampler, value_sampler;
  std::vector<double> hessian_sum;  // X'X, scaled at the end
  std::vector<int64_t> channel_count;
  bool initialized = false;
};

absl::Status CheckFeeds(const graph::Graph& graph, const CalibrationBatch& batch, size_t index) {
  std::set<std::string> inputs;
  for (const auto& input : graph.inputs) {
    inputs.insert(input.name);
    if (!graph.initializers.count(input.name) && !batch.count(input.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("calibration batch ", index, ": no feed for graph input ", input.name));
    }
  }
  for (const auto& [name, tensor] : batch) {
    if (!inputs.count(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("calibration batch ", index, ": feeds ", name, ", which is not a graph input"));
    }
  }
  return absl::OkStatus();
}

void Accumulate(const QuantizableLayer& layer, const Tensor& input, const std::vector<float>& x, int64_t rows,
                size_t batches, const CalibrationOptions& options, Accumulator* acc) {
  LayerStatistics& s = acc->stats;
  if (!acc->initialized) {
    acc->initialized = true;
    const int64_t expected_rows = rows * static_cast<int64_t>(batches);
    const int64_t expected_values = input.num_elements() * static_cast<int64_t>(batches);
    acc->row_sampler = {std::max<int64_t>(1, expected_rows / std::max<int64_t>(1, options.max_kept_rows)), 0,
                        options.max_kept_rows, 0};
    acc->value_sampler = {std::max<int64_t>(1, expected_values / std::max<int64_t>(1, options.max_kept_values)), 0,
                          options.max_kept_values, 0};
    s.column_mean.assign(layer.in, 0.0);
    s.channel_abs_mean.assign(layer.in_channels, 0.0);
    s.channel_abs_max.assign(layer.in_channels, 0.0);
    acc->channel_count.assign(layer.in_channels, 0);
    s.min = std::numeric_limits<double>::infinity();
    s.max = -std::numeric_limits<double>::infinity();
    if (options.hessian) acc->hessian_sum.assign(layer.in * layer.in, 0.0);
  }
  // Raw values: range, per-channel |x| statistics, the |x| sample.
  const float* raw = input.data<float>();
  const int64_t axis = ChannelAxis(layer, input.rank());
  int64_t inner = 1;
  for (int64_t d = axis + 1; d < input.rank(); ++d) inner *= input.shape()[d];
  for (int64_t i = 0; i < input.num_elements(); ++i) {
    const float v = raw[i];
    if (!std::isfinite(v)) {
      ++s.nonfinite;
      continue;
    }
    s.min = std::min<double>(s.min, v);
    s.max = std::max<double>(s.max, v);
    const int64_t channel = (i / inner) % layer.in_channels;
    s.channel_abs_mean[channel] += std::fabs(v);
    ++acc->channel_count[channel];
    s.channel_abs_max[channel] = std::max<double>(s.channel_abs_max[channel], std::fabs(v));
    if (acc->value_sampler.Take()) s.abs_sample.push_back(std::fabs(v));
  }
  // Rows of X: column sums, kept rows, X'X.
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x.data() + r * layer.in;
    for (int64_t c = 0; c < layer.in; ++c) s.column_mean[c] += row[c];
    if (acc->row_sampler.Take()) {
      s.kept_rows.insert(s.kept_rows.end(), row, row + layer.in);
      ++s.kept;
    }
  }
  s.rows += rows;
  if (options.hessian) {
    Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> m(x.data(), rows,
                                                                                             layer.in);
    Eigen::MatrixXf xtx = Eigen::MatrixXf::Zero(layer.in, layer.in);
    xtx.selfadjointView<Eigen::Lower>().rankUpdate(m.transpose());
    for (int64_t i = 0; i < layer.in; ++i) {
      for (int64_t j = 0; j <= i; ++j) acc->hessian_sum[i * layer.in + j] += xtx(i, j);
    }
  }
}

}  // namespace

absl::StatusOr<std::vector<LayerStatistics>> Calibrate(const graph::Graph& graph,
                                                       const std::vector<QuantizableLayer>& layers,
                                                       const std::vector<CalibrationBatch>& batches,
                                                       const CalibrationOptions& options) {
  if (batches.empty()) return absl::InvalidArgumentError("calibrate: the calibration set is empty");
  // The capturing graph: the same nodes, with every layer input that is not
  // a graph input appended to the outputs.
  graph::Graph capture = graph;
  std::set<std::string> graph_inputs;
  for (const auto& input : graph.inputs) graph_inputs.insert(input.name);
  std::map<std::string, size_t> output_index;
  for (const QuantizableLayer& layer : layers) {
    if (graph_inputs.count(layer.input) || output_index.count(layer.input)) continue;
    output_index[layer.input] = capture.outputs.size();
    capture.outputs.push_back({layer.input, graph::DataType::kFloat32, std::nullopt});
  }
  SQ_ASSIGN_OR_RETURN(auto executor,
                      runtime::Executor::Create(std::move(capture), kernels::cpu::CreateCpuBackend(options.num_threads)));
  std::vector<Accumulator> accumulators(layers.size());
  for (size_t b = 0; b < batches.size(); ++b) {
    SQ_RETURN_IF_ERROR(CheckFeeds(graph, batches[b], b));
    auto outputs = executor.Run(batches[b]);
    if (!outputs.ok()) {
      return absl::Status(outputs.status().code(),
                          absl::StrCat("calibration batch ", b, ": ", outputs.status().message()));
    }
    for (size_t l = 0; l < layers.size(); ++l) {
      const QuantizableLayer& layer = layers[l];
      const Tensor& input = graph_inputs.count(layer.input) ? batches[b].at(layer.input)
                                                            : (*outputs)[output_index.at(layer.input)];
      int64_t rows = 0;
      SQ_ASSIGN_OR_RETURN(std::vector<float> x, LayerInputRows(layer, input, &rows));
      Accumulate(layer, input, x, rows, batches.size(), options, &accumulators[l]);
    }
  }
  std::vector<LayerStatistics> result;
  for (size_t l = 0; l < layers.size(); ++l) {
    LayerStatistics s = std::move(accumulators[l].stats);
    const QuantizableLayer& layer = layers[l];
    if (s.rows == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("calibrate: layer ", layer.name, " saw no input rows (empty calibration batches?)"));
    }
    for (double& m : s.column_mean) m /= static_cast<double>(s.rows);
    for (int64_t c = 0; c < layer.in_channels; ++c) {
      s.channel_abs_mean[c] /= std::max<int64_t>(1, accumulators[l].channel_count[c]);
    }
    if (options.hessian) {
      s.hessian.assign(layer.in * layer.in, 0.0);
      const std::vector<double>& sum = accumulators[l].hessian_sum;
      for (int64_t i = 0; i < layer.in; ++i) {
        for (int64_t j = 0; j <= i; ++j) {
          const double h = 2.0 * sum[i * layer.in + j] / static_cast<double>(s.rows);
          s.hessian[i * layer.in + j] = s.hessian[j * layer.in + i] = h;
        }
      }
    }
    result.push_back(std::move(s));
  }
  return result;
}

}  // namespace squeeze::core::quant::ptq
