#include "core/lowrank/lowrank.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <tuple>
#include <utility>

#include "Eigen/Dense"
#include "Eigen/SVD"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/graph/shape_inference.h"
#include "core/kernels/cpu/cpu_backend.h"
#include "core/quant/ptq/layers.h"
#include "core/runtime/executor.h"
#include "core/status_macros.h"

namespace squeeze::core::lowrank {
namespace {

using graph::DataType;
using graph::Graph;
using graph::Node;
using graph::Tensor;
using quant::ptq::QuantizableLayer;
using quant::ptq::WeightLayout;
using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

enum class Form { kSvd, kConvSvd, kTucker2 };

const char* FormName(Form form) {
  switch (form) {
    case Form::kSvd:
      return "svd";
    case Form::kConvSvd:
      return "conv-svd";
    case Form::kTucker2:
      return "tucker2";
  }
  return "";
}

// A candidate layer with its decomposition (full, truncated when rewriting).
struct Candidate {
  QuantizableLayer layer;
  Form form = Form::kSvd;
  RowMatrix weight;  // [out, in]
  // SVD of `weight` (every form: tucker2 uses U as its output-mode basis).
  Eigen::MatrixXd u, v;
  Eigen::VectorXd sigma;
  // tucker2: left singular vectors and values of the mode-1 unfolding [c, out*k].
  Eigen::MatrixXd u_in;
  Eigen::VectorXd sigma_in;
  int64_t rank = 0, rank_in = 0;  // the chosen ranks (0: left alone)
  std::string note;
};

int64_t ParamsBefore(const QuantizableLayer& layer) { return layer.out * layer.in; }

// Factor elements plus the scale vector (svd forms) for ranks r (, r1).
int64_t ParamsAfter(const Candidate& c, int64_t rank, int64_t rank_in) {
  const QuantizableLayer& l = c.layer;
  if (c.form == Form::kTucker2) return rank_in * l.in_channels + rank * rank_in * l.kernel_size + l.out * rank;
  return rank * (l.in + l.out + 1);
}

int64_t MaxRank(const QuantizableLayer& layer) { return std::min(layer.out, layer.in); }

// The largest ranks whose parameters are at most `ratio` of the layer's
// (at least 1).
std::pair<int64_t, int64_t> RanksForRatio(const Candidate& c, double ratio) {
  const QuantizableLayer& l = c.layer;
  const double budget = ratio * static_cast<double>(ParamsBefore(l));
  if (c.form != Form::kTucker2) {
    const int64_t rank = static_cast<int64_t>(std::floor(budget / static_cast<double>(l.in + l.out + 1)));
    return {std::clamp<int64_t>(rank, 1, MaxRank(l)), 0};
  }
  // r1 = rho * c, r2 = rho * out: rho^2 (c out k) + rho (c^2 + out^2) = budget.
  const double a = static_cast<double>(l.in_channels) * l.out * l.kernel_size;
  const double b = static_cast<double>(l.in_channels) * l.in_channels + static_cast<double>(l.out) * l.out;
  const double rho = (-b + std::sqrt(b * b + 4 * a * budget)) / (2 * a);
  int64_t r1 = std::clamp<int64_t>(static_cast<int64_t>(std::floor(rho * l.in_channels)), 1, l.in_channels);
  int64_t r2 = std::clamp<int64_t>(static_cast<int64_t>(std::floor(rho * l.out)), 1, l.out);
  return {r2, r1};
}

int64_t RankForEnergy(const Eigen::VectorXd& sigma, double energy) {
  const double total = sigma.squaredNorm();
  if (total <= 0) return 1;
  double kept = 0;
  for (int64_t r = 0; r < sigma.size(); ++r) {
    kept += sigma[r] * sigma[r];
    if (kept >= energy * total * (1 - 1e-12)) return r + 1;
  }
  return sigma.size();
}

double RetainedEnergy(const Eigen::VectorXd& sigma, int64_t rank) {
  const double total = sigma.squaredNorm();
  return total <= 0 ? 1.0 : sigma.head(rank).squaredNorm() / total;
}

// The mode-1 unfolding [c, out * k] of a conv weight [out, c * k].
RowMatrix ModeOneUnfolding(const RowMatrix& w, int64_t channels, int64_t kernel) {
  const int64_t out = w.rows();
  RowMatrix m(channels, out * kernel);
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t ch = 0; ch < channels; ++ch) {
      for (int64_t j = 0; j < kernel; ++j) m(ch, o * kernel + j) = w(o, ch * kernel + j);
    }
  }
  return m;
}

// Tucker-2 core G [r2, r1 * k] = U_out' W (U_in applied to each channel block).
RowMatrix TuckerCore(const Candidate& c, int64_t r2, int64_t r1) {
  const int64_t channels = c.layer.in_channels, kernel = c.layer.kernel_size;
  const RowMatrix projected = c.u.leftCols(r2).transpose() * c.weight;  // [r2, c * k]
  RowMatrix core(r2, r1 * kernel);
  const Eigen::MatrixXd basis = c.u_in.leftCols(r1);  // [c, r1]
  for (int64_t a = 0; a < r2; ++a) {
    const Eigen::Map<const RowMatrix> block(projected.row(a).data(), channels, kernel);
    const RowMatrix g = basis.transpose() * block;  // [r1, k]
    for (int64_t b = 0; b < r1; ++b) {
      for (int64_t j = 0; j < kernel; ++j) core(a, b * kernel + j) = g(b, j);
    }
  }
  return core;
}

// The [out, in] matrix the factorized layer computes.
RowMatrix Reconstruct(const Candidate& c, int64_t rank, int64_t rank_in) {
  if (c.form != Form::kTucker2) {
    return c.u.leftCols(rank) * c.sigma.head(rank).asDiagonal() * c.v.leftCols(rank).transpose();
  }
  const int64_t channels = c.layer.in_channels, kernel = c.layer.kernel_size;
  const RowMatrix core = TuckerCore(c, rank, rank_in);
  const Eigen::MatrixXd basis = c.u_in.leftCols(rank_in);
  RowMatrix expanded(rank, channels * kernel);  // each core row with U_in applied
  for (int64_t a = 0; a < rank; ++a) {
    const Eigen::Map<const RowMatrix> g(core.row(a).data(), rank_in, kernel);
    const RowMatrix block = basis * g;  // [c, k]
    expanded.row(a) = Eigen::Map<const Eigen::RowVectorXd>(block.data(), channels * kernel);
  }
  return c.u.leftCols(rank) * expanded;
}

double RelativeError(const Candidate& c, int64_t rank, int64_t rank_in) {
  const double norm = c.weight.norm();
  if (norm <= 0) return 0;
  if (c.form != Form::kTucker2) {
    const double tail = c.sigma.squaredNorm() - c.sigma.head(rank).squaredNorm();
    return std::sqrt(std::max(0.0, tail)) / norm;
  }
  return (c.weight - Reconstruct(c, rank, rank_in)).norm() / norm;
}

std::vector<float> ToFloats(const RowMatrix& m) {
  std::vector<float> out(static_cast<size_t>(m.size()));
  for (int64_t i = 0; i < m.rows(); ++i) {
    for (int64_t j = 0; j < m.cols(); ++j) out[i * m.cols() + j] = static_cast<float>(m(i, j));
  }
  return out;
}

Tensor FloatTensor(std::vector<int64_t> shape, const RowMatrix& m) {
  return Tensor::FromVector(DataType::kFloat32, std::move(shape), ToFloats(m));
}

std::string NodeName(const Node& node, size_t index) {
  return node.name.empty() ? absl::StrCat(node.op_type, "_", index) : node.name;
}

// Nodes that replace the layer's node, adding their initializers to `graph`.
std::vector<Node> FactorNodes(const Candidate& c, const Node& original, bool trainable_scale, Graph* graph,
                              std::vector<RankScale>* scales) {
  const QuantizableLayer& l = c.layer;
  const std::string& output = original.outputs[0];
  const std::string w = l.weight;
  std::vector<Node> nodes;
  if (c.form == Form::kTucker2) {
    const int64_t r2 = c.rank, r1 = c.rank_in;
    graph->initializers[w + "/lowrank_in"] =
        FloatTensor({r1, l.in_channels, 1, 1}, c.u_in.leftCols(r1).transpose());
    graph->initializers[w + "/lowrank_core"] =
        FloatTensor({r2, r1, l.conv.kernel_h, l.conv.kernel_w}, TuckerCore(c, r2, r1));
    graph->initializers[w + "/lowrank_out"] = FloatTensor({l.out, r2, 1, 1}, c.u.leftCols(r2));
    Node in{l.name + "/lowrank_in", "Conv", "", {l.input, w + "/lowrank_in"}, {output + "/lowrank_in"}, {}};
    in.attributes["kernel_shape"] = std::vector<int64_t>{1, 1};
    Node core = original;
    core.name = l.name + "/lowrank_core";
    core.inputs = {output + "/lowrank_in", w + "/lowrank_core"};
    core.outputs = {output + "/lowrank_core"};
    Node out{l.name + "/lowrank_out", "Conv", "", {output + "/lowrank_core", w + "/lowrank_out"}, {output}, {}};
    out.attributes["kernel_shape"] = std::vector<int64_t>{1, 1};
    if (!l.bias.empty()) out.inputs.push_back(l.bias);
    return {in, core, out};
  }
  const int64_t r = c.rank;
  // first = V_r' [r, in], second = U_r [out, r]; the scale sits between them.
  RowMatrix first = c.v.leftCols(r).transpose();
  RowMatrix second = c.u.leftCols(r);
  Eigen::VectorXd scale = c.sigma.head(r);
  if (!trainable_scale) {
    const Eigen::VectorXd root = scale.cwiseSqrt();
    first = root.asDiagonal() * first;
    second = second * root.asDiagonal();
  }
  const std::string a = w + "/lowrank_a", b = w + "/lowrank_b", s = w + "/lowrank_scale";
  const std::string hidden = output + "/lowrank_h", scaled = output + "/lowrank_hs";
  const std::string second_input = trainable_scale ? scaled : hidden;
  Node first_node = original, second_node = original;
  first_node.name = l.name + "/lowrank_a";
  second_node.name = l.name + "/lowrank_b";
  first_node.outputs = {hidden};
  int64_t rank_axis = 0;
  std::vector<int64_t> scale_shape = {r};
  if (c.form == Form::kConvSvd) {
    graph->initializers[a] = FloatTensor({r, l.in_channels, l.conv.kernel_h, l.conv.kernel_w}, first);
    graph->initializers[b] = FloatTensor({l.out, r, 1, 1}, second);
    first_node.inputs = {l.input, a};
    second_node.inputs = {second_input, b};
    second_node.attributes = {{"kernel_shape", std::vector<int64_t>{1, 1}}};
    scale_shape = {r, 1, 1};
  } else if (l.op_type == "Gemm") {
    graph->initializers[a] = FloatTensor({r, l.in}, first);
    graph->initializers[b] = FloatTensor({l.out, r}, second);
    first_node.inputs = {l.input, a};
    first_node.attributes = {{"transB", int64_t{1}}};
    second_node.inputs = {second_input, b};
    second_node.attributes["transB"] = int64_t{1};  // alpha and beta stay with the bias
  } else {  // MatMul: [in, r] then [r, out]
    graph->initializers[a] = FloatTensor({l.in, r}, first.transpose());
    graph->initializers[b] = FloatTensor({r, l.out}, second.transpose());
    first_node.inputs = {l.input, a};
    second_node.inputs = {second_input, b};
    rank_axis = 1;
  }
  if (!l.bias.empty()) second_node.inputs.push_back(l.bias);
  nodes.push_back(first_node);
  if (trainable_scale) {
    graph->initializers[s] = Tensor::FromVector(DataType::kFloat32, scale_shape,
                                                std::vector<float>(scale.data(), scale.data() + r));
    nodes.push_back(Node{l.name + "/lowrank_scale", "Mul", "", {hidden, s}, {scaled}, {}});
    scales->push_back({s, a, rank_axis, hidden, scaled});
  }
  nodes.push_back(second_node);
  return nodes;
}

// Relative squared change of the first graph output on `batches`.
class OutputDamage {
 public:
  static absl::StatusOr<OutputDamage> Create(const Graph& graph, const std::vector<CalibrationBatch>& batches) {
    OutputDamage damage;
    damage.backend_ = kernels::cpu::CreateCpuBackend();
    damage.batches_ = batches;
    SQ_ASSIGN_OR_RETURN(runtime::Executor executor, runtime::Executor::Create(graph, damage.backend_));
    for (const CalibrationBatch& batch : damage.batches_) {
      SQ_ASSIGN_OR_RETURN(std::vector<Tensor> outputs, executor.Run(batch));
      damage.reference_.push_back(outputs[0].ToFloats());
      for (float y : damage.reference_.back()) damage.energy_ += static_cast<double>(y) * y;
    }
    return damage;
  }

  absl::StatusOr<double> Measure(const Graph& graph) const {
    SQ_ASSIGN_OR_RETURN(runtime::Executor executor, runtime::Executor::Create(graph, backend_));
    double change = 0;
    for (size_t i = 0; i < batches_.size(); ++i) {
      SQ_ASSIGN_OR_RETURN(std::vector<Tensor> outputs, executor.Run(batches_[i]));
      const std::vector<float> y = outputs[0].ToFloats();
      for (size_t j = 0; j < y.size(); ++j) {
        const double d = static_cast<double>(y[j]) - reference_[i][j];
        change += d * d;
      }
    }
    return energy_ > 0 ? change / energy_ : change;
  }

 private:
  std::shared_ptr<const runtime::KernelBackend> backend_;
  std::vector<CalibrationBatch> batches_;
  std::vector<std::vector<float>> reference_;
  double energy_ = 0;
};

constexpr double kDamageNoise = 1e-9;

struct Choice {
  int64_t rank = 0, rank_in = 0;  // rank 0: dense
  int64_t params = 0;
  double damage = 0;
};

// Chooses ranks for the kSensitivity layers (those with rank == 0 and no
// note): a global budget spent greedily by least damage per parameter saved.
absl::Status AllocateBySensitivity(const Graph& graph, const LowRankOptions& options,
                                   const std::vector<CalibrationBatch>& calibration,
                                   std::vector<Candidate>* candidates) {
  if (calibration.empty()) {
    return absl::InvalidArgumentError("lowrank: mode sensitivity needs calibration batches, got none");
  }
  std::vector<CalibrationBatch> batches(
      calibration.begin(),
      calibration.begin() + std::min<int64_t>(std::max<int64_t>(options.sensitivity_batches, 1), calibration.size()));
  SQ_ASSIGN_OR_RETURN(OutputDamage damage, OutputDamage::Create(graph, batches));
  int64_t before = 0, fixed = 0;
  std::vector<std::vector<Choice>> choices(candidates->size());
  Graph work = graph;
  std::vector<double> ratios = options.sensitivity_ratios;
  std::sort(ratios.rbegin(), ratios.rend());  // largest first: params decrease along each list
  for (size_t i = 0; i < candidates->size(); ++i) {
    Candidate& c = (*candidates)[i];
    before += ParamsBefore(c.layer);
    if (!c.note.empty() || c.rank > 0) {
      fixed += c.rank > 0 ? ParamsAfter(c, c.rank, c.rank_in) : ParamsBefore(c.layer);
      continue;
    }
    choices[i].push_back({0, 0, ParamsBefore(c.layer), 0});
    const std::vector<float> original = quant::ptq::WeightMatrix(work, c.layer);
    for (double ratio : ratios) {
      const auto [rank, rank_in] = RanksForRatio(c, ratio);
      const int64_t params = ParamsAfter(c, rank, rank_in);
      if (params >= choices[i].back().params) continue;
      quant::ptq::SetWeightMatrix(&work, c.layer, ToFloats(Reconstruct(c, rank, rank_in)));
      SQ_ASSIGN_OR_RETURN(double d, damage.Measure(work));
      choices[i].push_back({rank, rank_in, params, d});
    }
    quant::ptq::SetWeightMatrix(&work, c.layer, original);
  }
  const double budget = options.target_ratio * static_cast<double>(before);
  std::vector<size_t> at(candidates->size(), 0);
  auto total = [&] {
    int64_t sum = fixed;
    for (size_t i = 0; i < choices.size(); ++i) {
      if (!choices[i].empty()) sum += choices[i][at[i]].params;
    }
    return sum;
  };
  while (static_cast<double>(total()) > budget) {
    double best = std::numeric_limits<double>::infinity();
    size_t best_layer = 0, best_choice = 0;
    for (size_t i = 0; i < choices.size(); ++i) {
      for (size_t j = at[i] + 1; j < choices[i].size(); ++j) {
        const Choice& now = choices[i][at[i]];
        const double cost = (choices[i][j].damage - now.damage) / static_cast<double>(now.params - choices[i][j].params);
        if (cost < best) best = cost, best_layer = i, best_choice = j;
      }
    }
    if (!std::isfinite(best)) break;  // every layer at its smallest candidate
    at[best_layer] = best_choice;
  }
  // The last cut may overshoot: give back ranks, most damage repaired per
  // parameter first, while the total stays within the budget.
  while (true) {
    const int64_t now_total = total();
    double best = 0;
    size_t best_layer = 0, best_choice = 0;
    for (size_t i = 0; i < choices.size(); ++i) {
      for (size_t j = 0; j < at[i]; ++j) {
        const Choice& now = choices[i][at[i]];
        const int64_t extra = choices[i][j].params - now.params;
        if (static_cast<double>(now_total + extra) > budget) continue;
        // Differences below kDamageNoise are rounding, not repair.
        if (now.damage - choices[i][j].damage <= kDamageNoise) continue;
        const double gain = (now.damage - choices[i][j].damage) / static_cast<double>(extra);
        if (gain > best) best = gain, best_layer = i, best_choice = j;
      }
    }
    if (best <= 0) break;
    at[best_layer] = best_choice;
  }
  for (size_t i = 0; i < choices.size(); ++i) {
    if (choices[i].empty()) continue;
    Candidate& c = (*candidates)[i];
    c.rank = choices[i][at[i]].rank;
    c.rank_in = choices[i][at[i]].rank_in;
    if (c.rank == 0) c.note = "kept dense by the sensitivity allocation";
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateLowRankOptions(const LowRankOptions& options) {
  if (!(options.energy > 0 && options.energy <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("lowrank: energy must be in (0, 1], got ", options.energy));
  }
  if (!(options.target_ratio > 0 && options.target_ratio < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("lowrank: target_ratio must be in (0, 1), got ", options.target_ratio));
  }
  for (const auto& [name, rank] : options.ranks) {
    if (rank < 1) {
      return absl::InvalidArgumentError(absl::StrCat("lowrank: rank of layer ", name, " must be >= 1, got ", rank));
    }
  }
  for (double ratio : options.sensitivity_ratios) {
    if (!(ratio > 0 && ratio < 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("lowrank: sensitivity_ratios must be in (0, 1), got ", ratio));
    }
  }
  if (options.mode == RankMode::kSensitivity && options.sensitivity_ratios.empty()) {
    return absl::InvalidArgumentError("lowrank: sensitivity_ratios is empty");
  }
  return absl::OkStatus();
}

absl::StatusOr<LowRankResult> FactorizeGraph(const Graph& graph, const LowRankOptions& options,
                                             const std::vector<CalibrationBatch>& calibration,
                                             const ProgressFn& progress) {
  SQ_RETURN_IF_ERROR(ValidateLowRankOptions(options));
  SQ_ASSIGN_OR_RETURN(quant::ptq::LayerScan scan, quant::ptq::FindQuantizableLayers(graph));
  std::set<std::string> unused_ranks;
  for (const auto& [name, rank] : options.ranks) unused_ranks.insert(name);
  std::vector<Candidate> candidates;
  std::vector<SkippedLayer> skipped;
  for (const quant::ptq::SkippedNode& node : scan.skipped) skipped.push_back({node.name, node.reason});
  for (const QuantizableLayer& layer : scan.layers) {
    const bool conv = layer.op_type == "Conv";
    if (options.skip.count(layer.name)) {
      skipped.push_back({layer.name, "in the skip list"});
      continue;
    }
    if (conv ? options.conv == ConvMode::kSkip : !options.linear) {
      skipped.push_back({layer.name, conv ? "convolutions not asked for" : "linear layers not asked for"});
      continue;
    }
    if (options.mode == RankMode::kExplicit && !options.ranks.count(layer.name)) {
      skipped.push_back({layer.name, "no explicit rank"});
      continue;
    }
    unused_ranks.erase(layer.name);
    Candidate c;
    c.layer = layer;
    c.form = !conv ? Form::kSvd
                   : (options.conv == ConvMode::kTucker2 && layer.kernel_size > 1 ? Form::kTucker2 : Form::kConvSvd);
    auto it = options.ranks.find(layer.name);
    if (it != options.ranks.end()) {
      const int64_t limit = MaxRank(layer);
      if (it->second > limit) {
        return absl::InvalidArgumentError(absl::StrCat("lowrank: rank ", it->second, " of layer ", layer.name,
                                                       " exceeds min(out, in) = min(", layer.out, ", ", layer.in,
                                                       ") = ", limit));
      }
      c.rank = it->second;
      if (c.form == Form::kTucker2) {
        c.rank_in = std::min(it->second, layer.in_channels);
        c.rank = std::min(it->second, layer.out);
      }
    }
    candidates.push_back(std::move(c));
  }
  if (!unused_ranks.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("lowrank: ranks names layer ", *unused_ranks.begin(),
                                                   ", which is not a factorizable layer of the graph"));
  }

  // Decompositions and ranks.
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (progress && !progress(static_cast<int>(i), static_cast<int>(candidates.size()))) {
      return absl::CancelledError("lowrank: cancelled");
    }
    Candidate& c = candidates[i];
    const std::vector<float> w = quant::ptq::WeightMatrix(graph, c.layer);
    c.weight = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
                   w.data(), c.layer.out, c.layer.in)
                   .cast<double>();
    Eigen::BDCSVD<Eigen::MatrixXd> svd(c.weight, Eigen::ComputeThinU | Eigen::ComputeThinV);
    c.u = svd.matrixU();
    c.v = svd.matrixV();
    c.sigma = svd.singularValues();
    if (c.form == Form::kTucker2) {
      Eigen::BDCSVD<Eigen::MatrixXd> in_svd(ModeOneUnfolding(c.weight, c.layer.in_channels, c.layer.kernel_size),
                                            Eigen::ComputeThinU);
      c.u_in = in_svd.matrixU();
      c.sigma_in = in_svd.singularValues();
    }
    if (c.rank > 0) continue;
    if (options.mode == RankMode::kEnergy) {
      c.rank = RankForEnergy(c.sigma, options.energy);
      if (c.form == Form::kTucker2) c.rank_in = RankForEnergy(c.sigma_in, options.energy);
    } else if (options.mode == RankMode::kTargetRatio) {
      std::tie(c.rank, c.rank_in) = RanksForRatio(c, options.target_ratio);
    }
  }
  if (options.mode == RankMode::kSensitivity) {
    SQ_RETURN_IF_ERROR(AllocateBySensitivity(graph, options, calibration, &candidates));
  }

  LowRankResult result;
  result.skipped = std::move(skipped);
  std::map<size_t, const Candidate*> replaced;  // node index -> candidate
  std::set<size_t> dropped;                     // Transpose nodes feeding a replaced MatMul
  std::map<std::string, size_t> producer;
  for (size_t n = 0; n < graph.nodes.size(); ++n) {
    for (const std::string& out : graph.nodes[n].outputs) producer[out] = n;
  }
  for (Candidate& c : candidates) {
    LayerReport report;
    report.name = c.layer.name;
    report.weight = c.layer.weight;
    report.op_type = c.layer.op_type;
    report.out = c.layer.out;
    report.in = c.layer.in;
    report.params_before = ParamsBefore(c.layer);
    report.params_after = report.params_before;
    report.note = c.note;
    if (c.rank > 0) {
      const int64_t after = ParamsAfter(c, c.rank, c.rank_in);
      if (after >= report.params_before) {
        report.note = absl::StrCat("rank ", c.rank, c.form == Form::kTucker2 ? absl::StrCat("/", c.rank_in) : "",
                                   " would not save parameters (", after, " >= ", report.params_before, ")");
        c.rank = 0;
      } else {
        report.factorized = true;
        report.form = FormName(c.form);
        report.rank = c.rank;
        report.rank_in = c.rank_in;
        report.params_after = after;
        report.relative_error = RelativeError(c, c.rank, c.rank_in);
        report.retained_energy = RetainedEnergy(c.sigma, c.rank);
      }
    }
    result.params_before += report.params_before;
    result.params_after += report.params_after;
    result.layers.push_back(std::move(report));
    if (c.rank == 0) continue;
    for (size_t n = 0; n < graph.nodes.size(); ++n) {
      if (NodeName(graph.nodes[n], n) == c.layer.name) replaced[n] = &c;
    }
    if (c.layer.weight_input != c.layer.weight) dropped.insert(producer.at(c.layer.weight_input));
  }

  result.graph = graph;
  Graph& out = result.graph;
  out.nodes.clear();
  for (size_t n = 0; n < graph.nodes.size(); ++n) {
    if (dropped.count(n)) continue;
    auto it = replaced.find(n);
    if (it == replaced.end()) {
      out.nodes.push_back(graph.nodes[n]);
      continue;
    }
    const Candidate& c = *it->second;
    for (Node& node : FactorNodes(c, graph.nodes[n], options.trainable_scale, &out, &result.scales)) {
      out.nodes.push_back(std::move(node));
    }
    out.initializers.erase(c.layer.weight);
  }
  // Shapes of the new factor values (and a check of the rewiring).
  SQ_RETURN_IF_ERROR(graph::InferShapes(&out).status());
  return result;
}

absl::Status FoldRankScales(const std::vector<RankScale>& scales, Graph* graph) {
  for (const RankScale& rs : scales) {
    auto scale_it = graph->initializers.find(rs.scale);
    auto factor_it = graph->initializers.find(rs.factor);
    if (scale_it == graph->initializers.end() || factor_it == graph->initializers.end()) {
      return absl::NotFoundError(absl::StrCat("lowrank: scale ", rs.scale, " or factor ", rs.factor, " is missing"));
    }
    auto mul = std::find_if(graph->nodes.begin(), graph->nodes.end(), [&rs](const Node& node) {
      return node.op_type == "Mul" && node.outputs.size() == 1 && node.outputs[0] == rs.mul_output;
    });
    if (mul == graph->nodes.end()) {
      return absl::NotFoundError(absl::StrCat("lowrank: no Mul node produces ", rs.mul_output));
    }
    Tensor& factor = factor_it->second;
    const std::vector<float> s = scale_it->second.ToFloats();
    const std::vector<int64_t>& shape = factor.shape();
    if (rs.factor_rank_axis >= factor.rank() || shape[rs.factor_rank_axis] != static_cast<int64_t>(s.size())) {
      return absl::InvalidArgumentError(absl::StrCat("lowrank: scale ", rs.scale, " has ", s.size(),
                                                     " entries; factor ", rs.factor, " is ",
                                                     graph::ShapeToString(shape)));
    }
    int64_t stride = 1;
    for (int64_t d = rs.factor_rank_axis + 1; d < factor.rank(); ++d) stride *= shape[d];
    float* data = factor.data<float>();
    for (int64_t i = 0; i < factor.num_elements(); ++i) data[i] *= s[(i / stride) % s.size()];
    graph->nodes.erase(mul);
    graph->initializers.erase(scale_it);
    for (Node& node : graph->nodes) {
      for (std::string& input : node.inputs) {
        if (input == rs.mul_output) input = rs.mul_input;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace squeeze::core::lowrank
