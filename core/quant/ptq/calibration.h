// Calibration: runs batches through a graph, capturing the input of every
// quantizable layer, and accumulates the per-layer statistics the PTQ
// methods need. The graph is not modified: a copy that also returns the
// layer inputs as extra graph outputs is what runs.
#ifndef SQUEEZE_CORE_QUANT_PTQ_CALIBRATION_H_
#define SQUEEZE_CORE_QUANT_PTQ_CALIBRATION_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/graph/graph.h"
#include "core/quant/ptq/layers.h"

namespace squeeze::core::quant::ptq {

// One calibration batch: a feed per graph input.
using CalibrationBatch = std::map<std::string, graph::Tensor>;

struct CalibrationOptions {
  bool hessian = false;         // accumulate H = 2 X'X / rows (GPTQ)
  int64_t max_kept_rows = 2048;  // rows of X kept per layer (AWQ's search, tests)
  int64_t max_kept_values = int64_t{1} << 20;  // |x| values kept per layer (observers)
  int num_threads = 0;          // CPU backend threads (0: all cores)
};

// Statistics of one layer's input. "Rows" are the rows of X that multiply
// the [out, in] weight matrix (im2col patches for Conv); "channels" are the
// input channels (the last axis, or axis 1 for Conv).
struct LayerStatistics {
  int64_t rows = 0;
  std::vector<double> hessian;           // [in, in] row-major, when requested
  std::vector<double> column_mean;       // [in]   E[x] per column of X
  std::vector<double> channel_abs_mean;  // [in_channels] E|x|
  std::vector<double> channel_abs_max;   // [in_channels] max |x|
  std::vector<float> kept_rows;          // [kept, in], evenly spaced rows of X
  int64_t kept = 0;
  double min = 0.0, max = 0.0;           // over every input value
  std::vector<float> abs_sample;         // evenly spaced |x| values
  int64_t nonfinite = 0;                 // NaN/inf input values seen (skipped)
};

// Runs `batches` through `graph` on the CPU backend and returns one
// LayerStatistics per entry of `layers`, in order. INVALID_ARGUMENT when
// `batches` is empty, when a batch lacks a graph input or feeds a name the
// graph does not have ("calibration batch 3: ..."), or when a captured
// input does not fit its layer (naming the layer); executor errors pass
// through prefixed with the batch index.
absl::StatusOr<std::vector<LayerStatistics>> Calibrate(const graph::Graph& graph,
                                                       const std::vector<QuantizableLayer>& layers,
                                                       const std::vector<CalibrationBatch>& batches,
                                                       const CalibrationOptions& options);

}  // namespace squeeze::core::quant::ptq

#endif  // SQUEEZE_CORE_QUANT_PTQ_CALIBRATION_H_
