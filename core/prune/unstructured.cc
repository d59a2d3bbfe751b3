#include "core/prune/unstructured.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/prune/nm_sparse.h"
#include "core/status_macros.h"

namespace squeeze::core::prune {
namespace {

namespace ptq = quant::ptq;
using graph::Graph;
using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>;

absl::Status ValidateSparsity(double sparsity, const std::string& option) {
  if (!(sparsity >= 0.0 && sparsity < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("prune: ", option, " must be in [0, 1), got ", sparsity));
  }
  return absl::OkStatus();
}

absl::Status ValidateTarget(const std::string& layer, int64_t out, int64_t in, const std::vector<float>& weight,
                            const SparsityTarget& target) {
  if (target.m > 0 || target.n != 0) {
    SQ_RETURN_IF_ERROR(ValidateNmPattern(target.n, target.m, in, layer));
  } else {
    SQ_RETURN_IF_ERROR(ValidateSparsity(target.sparsity, "sparsity"));
  }
  if (out <= 0 || in <= 0 || static_cast<int64_t>(weight.size()) != out * in) {
    return absl::InvalidArgumentError(
        absl::StrCat("prune: layer ", layer, " is [", out, ", ", in, "] but has ", weight.size(), " weights"));
  }
  return absl::OkStatus();
}

// Sets `mask` (1 keeps) to 0 for the `count` entries of `scores[begin..end)`
// (stride `stride`) with the lowest score; ties go to the lower index.
void PruneLowest(const std::vector<double>& scores, const std::vector<int64_t>& positions, int64_t count,
                 std::vector<uint8_t>* mask) {
  if (count <= 0) return;
  std::vector<int64_t> order(positions.size());
  std::iota(order.begin(), order.end(), 0);
  auto lower = [&](int64_t a, int64_t b) {
    const double sa = scores[positions[a]], sb = scores[positions[b]];
    return sa != sb ? sa < sb : positions[a] < positions[b];
  };
  count = std::min<int64_t>(count, static_cast<int64_t>(order.size()));
  std::nth_element(order.begin(), order.begin() + (count - 1), order.end(), lower);
  for (int64_t i = 0; i < count; ++i) (*mask)[positions[order[i]]] = 0;
}

// The keep-mask of an [out, in] score matrix: per N:M group, per row
// (`per_row`), or over the whole matrix.
std::vector<uint8_t> MaskFromScores(const std::vector<double>& scores, int64_t out, int64_t in,
                                    const SparsityTarget& target, bool per_row) {
  std::vector<uint8_t> mask(out * in, 1);
  if (target.m > 0) {
    std::vector<int64_t> group(target.m);
    for (int64_t start = 0; start < out * in; start += target.m) {
      std::iota(group.begin(), group.end(), start);
      PruneLowest(scores, group, target.m - target.n, &mask);
    }
  } else if (per_row) {
    std::vector<int64_t> row(in);
    const auto count = static_cast<int64_t>(target.sparsity * in);
    for (int64_t r = 0; r < out; ++r) {
      std::iota(row.begin(), row.end(), r * in);
      PruneLowest(scores, row, count, &mask);
    }
  } else {
    std::vector<int64_t> all(out * in);
    std::iota(all.begin(), all.end(), 0);
    PruneLowest(scores, all, static_cast<int64_t>(target.sparsity * out * in), &mask);
  }
  return mask;
}

std::vector<float> ApplyMask(std::vector<float> weight, const std::vector<uint8_t>& mask) {
  for (size_t i = 0; i < weight.size(); ++i) {
    if (!mask[i]) weight[i] = 0.0f;
  }
  return weight;
}

// ||X (W - W')^T|| / ||X W^T|| over the kept rows.
double RelativeOutputError(const std::vector<float>& kept_rows, int64_t kept, int64_t out, int64_t in,
                           const std::vector<float>& original, const std::vector<float>& pruned) {
  if (kept == 0) return -1;
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const RowMajor> x(kept_rows.data(), kept, in);
  Eigen::Map<const RowMajor> w(original.data(), out, in);
  Eigen::Map<const RowMajor> p(pruned.data(), out, in);
  const RowMajor difference = w - p;
  const double reference = (x * w.transpose()).norm();
  const double error = (x * difference.transpose()).norm();
  return reference > 0 ? error / reference : (error > 0 ? 1.0 : 0.0);
}

bool Skipped(const ptq::QuantizableLayer& layer, const std::vector<std::string>& skip) {
  return std::find(skip.begin(), skip.end(), layer.name) != skip.end() ||
         std::find(skip.begin(), skip.end(), layer.weight) != skip.end();
}

absl::Status CheckSkipNames(const std::vector<ptq::QuantizableLayer>& layers, const std::vector<std::string>& skip) {
  for (const std::string& name : skip) {
    bool found = false;
    for (const auto& layer : layers) found = found || layer.name == name || layer.weight == name;
    if (!found) {
      return absl::InvalidArgumentError(
          absl::StrCat("prune: skip_layers names '", name, "', which is no prunable layer or weight"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string PruneMethodName(PruneMethod method) {
  switch (method) {
    case PruneMethod::kMagnitude: return "magnitude";
    case PruneMethod::kWanda: return "wanda";
    case PruneMethod::kSparseGpt: return "sparsegpt";
  }
  return "unknown";
}

absl::Status PruneOptions::Validate(const std::vector<ptq::QuantizableLayer>& layers) const {
  const bool nm = nm_m > 0 || nm_n != 0;
  if (nm) {
    SQ_RETURN_IF_ERROR(ValidateNmPattern(nm_n, nm_m, nm_m, "(options)"));
  } else {
    SQ_RETURN_IF_ERROR(ValidateSparsity(sparsity, "sparsity"));
  }
  if (scope == PruneScope::kGlobal && (method != PruneMethod::kMagnitude || nm)) {
    return absl::InvalidArgumentError(absl::StrCat("prune: scope global is for unstructured magnitude pruning only, got ",
                                                   PruneMethodName(method), nm ? " with N:M" : ""));
  }
  if (method == PruneMethod::kSparseGpt && (block_size <= 0 || !(dampening >= 0))) {
    return absl::InvalidArgumentError(absl::StrCat("prune: sparsegpt block_size must be > 0 and dampening >= 0, got ",
                                                   block_size, " and ", dampening));
  }
  SQ_RETURN_IF_ERROR(CheckSkipNames(layers, skip_layers));
  if (nm) {
    for (const auto& layer : layers) {
      if (!Skipped(layer, skip_layers)) SQ_RETURN_IF_ERROR(ValidateNmPattern(nm_n, nm_m, layer.in, layer.name));
    }
  }
  return absl::OkStatus();
}

namespace {

// max_j sqrt(H_jj) / median_j sqrt(H_jj): the spread of the input column
// norms (H_jj is proportional to ||X_j||^2).
double InputNormSpread(const std::vector<double>& hessian, int64_t in) {
  std::vector<double> norms(in);
  for (int64_t j = 0; j < in; ++j) norms[j] = std::sqrt(std::max(0.0, hessian[j * in + j]));
  const double max = *std::max_element(norms.begin(), norms.end());
  std::nth_element(norms.begin(), norms.begin() + in / 2, norms.end());
  const double median = norms[in / 2];
  return median > 0 ? max / median : 0.0;
}

}  // namespace

absl::StatusOr<std::vector<float>> PruneMagnitude(const std::string& layer, const std::vector<float>& weight,
                                                  int64_t out, int64_t in, const SparsityTarget& target) {
  SQ_RETURN_IF_ERROR(ValidateTarget(layer, out, in, weight, target));
  std::vector<double> scores(weight.size());
  for (size_t i = 0; i < weight.size(); ++i) scores[i] = std::fabs(weight[i]);
  return ApplyMask(weight, MaskFromScores(scores, out, in, target, /*per_row=*/false));
}

absl::StatusOr<std::vector<float>> PruneWanda(const std::string& layer, const std::vector<float>& weight,
                                              int64_t out, int64_t in, const std::vector<double>& column_sq_norms,
                                              const SparsityTarget& target) {
  SQ_RETURN_IF_ERROR(ValidateTarget(layer, out, in, weight, target));
  if (static_cast<int64_t>(column_sq_norms.size()) != in) {
    return absl::InvalidArgumentError(absl::StrCat("prune: layer ", layer, " has in = ", in, " but ",
                                                   column_sq_norms.size(), " input column norms"));
  }
  std::vector<double> scores(weight.size());
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t c = 0; c < in; ++c) {
      scores[r * in + c] = std::fabs(weight[r * in + c]) * std::sqrt(std::max(0.0, column_sq_norms[c]));
    }
  }
  return ApplyMask(weight, MaskFromScores(scores, out, in, target, /*per_row=*/true));
}

absl::StatusOr<std::vector<float>> PruneSparseGpt(const std::string& layer, const std::vector<float>& weight,
                                                  int64_t out, int64_t in, const std::vector<double>& hessian,
                                                  const SparsityTarget& target, double dampening, int64_t block_size,
                                                  std::vector<std::string>* notes) {
  SQ_RETURN_IF_ERROR(ValidateTarget(layer, out, in, weight, target));
  if (static_cast<int64_t>(hessian.size()) != in * in) {
    return absl::InvalidArgumentError(absl::StrCat("prune: layer ", layer, " has in = ", in, " but a Hessian of ",
                                                   hessian.size(), " entries"));
  }
  if (block_size <= 0 || !(dampening >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat("prune: sparsegpt block_size must be > 0 and dampening >= 0, got ",
                                                   block_size, " and ", dampening, " (layer ", layer, ")"));
  }
  for (size_t i = 0; i < weight.size(); ++i) {
    if (!std::isfinite(weight[i]) || (i < hessian.size() && !std::isfinite(hessian[i]))) {
      return absl::InvalidArgumentError(absl::StrCat("prune: layer ", layer, " has a non-finite weight or Hessian"));
    }
  }
  Matrix w(out, in);
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t c = 0; c < in; ++c) w(r, c) = weight[r * in + c];
  }
  Matrix h = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
      hessian.data(), in, in);
  int64_t dead = 0;
  for (int64_t c = 0; c < in; ++c) {
    if (h(c, c) == 0.0) {  // an input that was always zero: its weights do nothing
      h(c, c) = 1.0;
      w.col(c).setZero();
      ++dead;
    }
  }
  if (dead > 0 && notes) notes->push_back(absl::StrCat(dead, " input columns were always 0; their weights set to 0"));
  // U: the upper Cholesky factor of (H + damp I)^-1, as in gptq.cc.
  double damp = dampening * h.diagonal().mean();
  Matrix u;
  for (int attempt = 0;; ++attempt) {
    Matrix damped = h;
    damped.diagonal().array() += damp;
    Eigen::LLT<Matrix> llt(damped);
    if (llt.info() == Eigen::Success) {
      Eigen::LLT<Matrix> inverse_llt(llt.solve(Matrix::Identity(in, in)));
      if (inverse_llt.info() == Eigen::Success) {
        u = inverse_llt.matrixU();
        break;
      }
    }
    if (attempt == 4) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prune: sparsegpt Hessian is not positive definite even with damping ", damp, " (layer ", layer, ")"));
    }
    damp = damp > 0 ? damp * 10 : 1e-6 * std::max(1.0, h.diagonal().mean());
    if (notes) notes->push_back(absl::StrCat("damping raised to ", damp, " (Hessian not positive definite)"));
  }
  // With N:M, blocks must hold whole groups.
  int64_t block = block_size;
  if (target.m > 0) block = std::max<int64_t>(target.m, block - block % target.m);
  std::vector<uint8_t> mask(out * in, 1);  // 1 keeps; [out, in]
  for (int64_t i1 = 0; i1 < in; i1 += block) {
    const int64_t i2 = std::min(in, i1 + block), count = i2 - i1;
    Matrix w1 = w.middleCols(i1, count);
    Matrix err1 = Matrix::Zero(out, count);
    std::vector<uint8_t> block_mask(out * count, 1);  // [out, count]
    if (target.m == 0) {
      // OBS saliency w^2 / [H^-1]_jj = (w / U_jj)^2, one threshold per block.
      std::vector<double> scores(out * count);
      for (int64_t r = 0; r < out; ++r) {
        for (int64_t i = 0; i < count; ++i) {
          const double d = u(i1 + i, i1 + i);
          scores[r * count + i] = w1(r, i) * w1(r, i) / (d * d);
        }
      }
      block_mask = MaskFromScores(scores, out, count, target, /*per_row=*/false);
    }
    for (int64_t i = 0; i < count; ++i) {
      const int64_t k = i1 + i;
      if (target.m > 0 && i % target.m == 0) {
        // Choose the group's mask from the weights as updated so far.
        std::vector<double> scores(out * target.m);
        for (int64_t r = 0; r < out; ++r) {
          for (int j = 0; j < target.m; ++j) {
            const double d = u(k + j, k + j);
            scores[r * target.m + j] = w1(r, i + j) * w1(r, i + j) / (d * d);
          }
        }
        const std::vector<uint8_t> group_mask = MaskFromScores(scores, out, target.m, target, false);
        for (int64_t r = 0; r < out; ++r) {
          for (int j = 0; j < target.m; ++j) block_mask[r * count + i + j] = group_mask[r * target.m + j];
        }
      }
      const double d = u(k, k);
      Eigen::VectorXd error(out);
      for (int64_t r = 0; r < out; ++r) {
        const double kept = block_mask[r * count + i] ? w1(r, i) : 0.0;
        error(r) = (w1(r, i) - kept) / d;
        w1(r, i) = kept;
      }
      if (count - i > 1) w1.rightCols(count - i - 1) -= error * u.block(k, k + 1, 1, count - i - 1);
      err1.col(i) = error;
    }
    w.middleCols(i1, count) = w1;
    for (int64_t r = 0; r < out; ++r) {
      for (int64_t i = 0; i < count; ++i) mask[r * in + i1 + i] = block_mask[r * count + i];
    }
    if (i2 < in) w.rightCols(in - i2) -= err1 * u.block(i1, i2, count, in - i2);
  }
  std::vector<float> pruned(out * in);
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t c = 0; c < in; ++c) pruned[r * in + c] = mask[r * in + c] ? static_cast<float>(w(r, c)) : 0.0f;
  }
  return pruned;
}

absl::StatusOr<PruneResult> PruneGraph(const Graph& input_graph, const std::vector<ptq::CalibrationBatch>& batches,
                                       const PruneOptions& options, const quant::LayerProgressFn& progress) {
  SQ_ASSIGN_OR_RETURN(ptq::LayerScan scan, ptq::FindQuantizableLayers(input_graph));
  SQ_RETURN_IF_ERROR(options.Validate(scan.layers));
  PruneResult result;
  result.skipped = scan.skipped;
  std::vector<ptq::QuantizableLayer> layers;
  for (const auto& layer : scan.layers) {
    if (Skipped(layer, options.skip_layers)) {
      result.skipped.push_back({layer.name, "listed in skip_layers"});
    } else {
      layers.push_back(layer);
    }
  }
  if (layers.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("prune: graph ", input_graph.name, " has no prunable layer (",
                                                   result.skipped.size(), " Gemm/MatMul/Conv nodes skipped)"));
  }
  if (options.method != PruneMethod::kMagnitude && batches.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("prune: ", PruneMethodName(options.method), " needs calibration batches; got none"));
  }
  result.graph = input_graph;
  SQ_RETURN_IF_ERROR(graph::SortTopologically(&result.graph));
  std::vector<ptq::LayerStatistics> stats;
  ptq::CalibrationOptions calibration = options.calibration;
  calibration.hessian = options.method != PruneMethod::kMagnitude;
  if (!batches.empty() && !options.sequential) {
    SQ_ASSIGN_OR_RETURN(stats, ptq::Calibrate(result.graph, layers, batches, calibration));
  }
  SparsityTarget target{options.sparsity, options.nm_n, options.nm_m};
  if (options.nm_m > 0) target.sparsity = 0;

  // Global magnitude: one threshold over every pruned layer; ties at the
  // threshold are pruned in layer order until the count is reached.
  float threshold = -1;
  int64_t ties_to_prune = 0;
  if (options.scope == PruneScope::kGlobal) {
    std::vector<float> all;
    for (const auto& layer : layers) {
      for (float v : ptq::WeightMatrix(result.graph, layer)) all.push_back(std::fabs(v));
    }
    const auto count = static_cast<int64_t>(options.sparsity * static_cast<double>(all.size()));
    if (count > 0) {
      std::nth_element(all.begin(), all.begin() + (count - 1), all.end());
      threshold = all[count - 1];
      const int64_t below = std::count_if(all.begin(), all.end(), [&](float v) { return v < threshold; });
      ties_to_prune = count - below;
    }
  }

  for (size_t i = 0; i < layers.size(); ++i) {
    const ptq::QuantizableLayer& layer = layers[i];
    PruneLayerReport report;
    report.name = layer.name;
    report.op_type = layer.op_type;
    report.weight = layer.weight;
    report.out = layer.out;
    report.in = layer.in;
    report.params = layer.out * layer.in;
    const std::vector<float> original = ptq::WeightMatrix(result.graph, layer);
    if (!batches.empty() && options.sequential) {
      // This layer's inputs as the layers pruned so far produce them.
      SQ_ASSIGN_OR_RETURN(std::vector<ptq::LayerStatistics> layer_stats,
                          ptq::Calibrate(result.graph, {layer}, batches, calibration));
      stats.resize(layers.size());
      stats[i] = std::move(layer_stats[0]);
    }
    std::vector<float> pruned;
    if (options.scope == PruneScope::kGlobal) {
      pruned = original;
      for (float& v : pruned) {
        const float a = std::fabs(v);
        if (a < threshold) {
          v = 0.0f;
        } else if (a == threshold && ties_to_prune > 0) {
          v = 0.0f;
          --ties_to_prune;
        }
      }
    } else if (options.method == PruneMethod::kMagnitude) {
      SQ_ASSIGN_OR_RETURN(pruned, PruneMagnitude(layer.name, original, layer.out, layer.in, target));
    } else if (options.method == PruneMethod::kWanda) {
      std::vector<double> norms(layer.in);
      for (int64_t c = 0; c < layer.in; ++c) norms[c] = stats[i].hessian[c * layer.in + c];
      SQ_ASSIGN_OR_RETURN(pruned, PruneWanda(layer.name, original, layer.out, layer.in, norms, target));
    } else {
      SQ_ASSIGN_OR_RETURN(pruned, PruneSparseGpt(layer.name, original, layer.out, layer.in, stats[i].hessian, target,
                                                 options.dampening, options.block_size, &report.notes));
    }
    ptq::SetWeightMatrix(&result.graph, layer, pruned);
    report.zeros = std::count(pruned.begin(), pruned.end(), 0.0f);
    report.sparsity = static_cast<double>(report.zeros) / static_cast<double>(report.params);
    if (!stats.empty()) {
      report.relative_output_error =
          RelativeOutputError(stats[i].kept_rows, stats[i].kept, layer.out, layer.in, original, pruned);
      if (!stats[i].hessian.empty()) report.input_norm_spread = InputNormSpread(stats[i].hessian, layer.in);
    }
    result.params += report.params;
    result.zeros += report.zeros;
    result.layers.push_back(std::move(report));
    if (progress && !progress(static_cast<int>(i), static_cast<int>(layers.size()))) {
      return absl::CancelledError(absl::StrCat("prune: cancelled after layer ", i + 1, " of ", layers.size()));
    }
  }
  return result;
}

double CubicSparsity(const GradualSchedule& schedule, int64_t step) {
  if (step <= schedule.begin_step) return schedule.initial_sparsity;
  if (step >= schedule.end_step) return schedule.final_sparsity;
  const double progress = static_cast<double>(step - schedule.begin_step) /
                          static_cast<double>(schedule.end_step - schedule.begin_step);
  const double remaining = 1.0 - progress;
  return schedule.final_sparsity +
         (schedule.initial_sparsity - schedule.final_sparsity) * remaining * remaining * remaining;
}

absl::StatusOr<GradualPruner> GradualPruner::Create(const Graph& graph, GradualSchedule schedule,
                                                    std::vector<std::string> skip_layers) {
  SQ_RETURN_IF_ERROR(ValidateSparsity(schedule.initial_sparsity, "initial_sparsity"));
  SQ_RETURN_IF_ERROR(ValidateSparsity(schedule.final_sparsity, "final_sparsity"));
  if (schedule.begin_step < 0 || schedule.end_step <= schedule.begin_step) {
    return absl::InvalidArgumentError(absl::StrCat("prune: gradual end_step must be > begin_step >= 0, got ",
                                                   schedule.begin_step, " and ", schedule.end_step));
  }
  if (schedule.frequency <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("prune: gradual frequency must be > 0, got ", schedule.frequency));
  }
  SQ_ASSIGN_OR_RETURN(ptq::LayerScan scan, ptq::FindQuantizableLayers(graph));
  SQ_RETURN_IF_ERROR(CheckSkipNames(scan.layers, skip_layers));
  std::vector<ptq::QuantizableLayer> layers;
  for (const auto& layer : scan.layers) {
    if (!Skipped(layer, skip_layers)) layers.push_back(layer);
  }
  if (layers.empty()) return absl::InvalidArgumentError("prune: gradual pruning found no prunable layer");
  return GradualPruner(schedule, std::move(layers));
}

absl::Status GradualPruner::Apply(int64_t step, std::map<std::string, graph::Tensor>* parameters) {
  const bool in_window = step >= schedule_.begin_step && step <= schedule_.end_step &&
                         (step - schedule_.begin_step) % schedule_.frequency == 0;
  const bool recompute = in_window || (step >= schedule_.end_step && !final_applied_);
  for (const auto& layer : layers_) {
    auto it = parameters->find(layer.weight);
    if (it == parameters->end()) {
      return absl::NotFoundError(absl::StrCat("prune: weight ", layer.weight, " of layer ", layer.name,
                                              " is not among the parameters"));
    }
    float* w = it->second.data<float>();
    const int64_t size = it->second.num_elements();
    std::vector<uint8_t>& mask = masks_[layer.weight];
    if (mask.empty()) mask.assign(size, 1);
    if (recompute) {
      // Magnitude over the current weights; pruned weights score -1 so they
      // stay pruned. Layout-free: unstructured magnitude ignores positions.
      std::vector<double> scores(size);
      for (int64_t j = 0; j < size; ++j) scores[j] = mask[j] ? std::fabs(w[j]) : -1.0;
      SparsityTarget target;
      target.sparsity = CubicSparsity(schedule_, step);
      mask = MaskFromScores(scores, 1, size, target, /*per_row=*/false);
    }
    for (int64_t j = 0; j < size; ++j) {
      if (!mask[j]) w[j] = 0.0f;
    }
  }
  if (recompute) {
    current_sparsity_ = CubicSparsity(schedule_, step);
    if (step >= schedule_.end_step) final_applied_ = true;
  }
  return absl::OkStatus();
}

}  // namespace squeeze::core::prune
