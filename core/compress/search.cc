#include "core/compress/search.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/eval/latency.h"
#include "core/status_macros.h"

namespace squeeze::core::compress {
namespace {

bool DeviceRuns(const TargetDevice& device, const std::string& format) {
  // A device without figures (a bare "local") is taken to run the CPU formats.
  if (device.roofline.peak_ops_per_second.empty()) return format == "int8" || format == "fp32";
  return device.roofline.Runs(format);
}


QuantizeStep Quantize(int bits, int group_size, bool activations, quant::ptq::WeightMethod method) {
  QuantizeStep step;
  step.ptq.weights.emplace();
  step.ptq.weights->method = method;
  step.ptq.weights->format = {bits, group_size, false};
  step.ptq.calibration.hessian = method == quant::ptq::WeightMethod::kGptq;
  if (activations) step.ptq.activations.emplace();
  return step;
}

RecoveryOptions Recovery(EvalMetric metric) {
  const bool language_model = metric == EvalMetric::kPerplexity;
  return DefaultRecovery(language_model ? 20 : 100, language_model);
}

double Excess(double value, double limit) { return limit > 0 && value > limit ? value / limit - 1.0 : 0.0; }

}  // namespace

int GroupSizeFor(const quant::ptq::LayerScan& scan) {
  for (int group : {128, 64, 32}) {
    bool fits = !scan.layers.empty();
    for (const auto& layer : scan.layers) fits &= layer.in % group == 0;
    if (fits) return group;
  }
  return 0;
}

std::vector<Candidate> SearchSpace(const GraphSession& session, const TargetDevice& device) {
  const int group = GroupSizeFor(session.scan());
  const EvalMetric metric = session.options().metric;
  std::vector<Candidate> space;
  auto add = [&](const std::string& label, const std::string& family, int level, Recipe recipe,
                 std::vector<std::string> parts = {}) {
    space.push_back({label, family, level, std::move(recipe), std::move(parts)});
  };
  using quant::ptq::WeightMethod;
  const bool int8 = DeviceRuns(device, "int8");
  const bool int4 = DeviceRuns(device, "int4");
  // 2:4 needs every layer's width to be a multiple of 4 (its manifest must
  // pass the service's N:M check).
  bool fits_2_4 = true;
  for (const auto& layer : session.scan().layers) fits_2_4 &= layer.in % 4 == 0;
  const bool sparse = fits_2_4 && (device.roofline.sparse_2_4 || device.roofline.peak_ops_per_second.empty());
  if (int8) {
    add("w8 weight-only", "int8", 0, Recipe{{Quantize(8, 0, false, WeightMethod::kRtn)}});
    add("w8a8", "int8", 1, Recipe{{Quantize(8, 0, true, WeightMethod::kRtn)}});
  }
  if (int4) {
    const std::string g = group > 0 ? absl::StrCat(" g", group) : "";
    add("w4 gptq" + g, "int4", 0, Recipe{{Quantize(4, group, false, WeightMethod::kGptq)}});
    add("w4 rtn per-channel", "int4", 1, Recipe{{Quantize(4, 0, false, WeightMethod::kRtn)}});
  }
  {
    PruneStep nm;
    nm.unstructured.method = prune::PruneMethod::kSparseGpt;
    nm.unstructured.nm_n = 2;
    nm.unstructured.nm_m = 4;
    if (sparse) add("sparsegpt 2:4", "2:4", 0, Recipe{{nm}});
    PruneStep wanda;
    wanda.unstructured.method = prune::PruneMethod::kWanda;
    wanda.unstructured.sparsity = 0.5;
    add("wanda 50%", "unstructured", 0, Recipe{{wanda}});
  }
  for (double target : {0.3, 0.5}) {
    PruneStep channels;
    channels.channels = true;
    channels.structured.target = target;
    channels.recovery = Recovery(metric);
    add(absl::StrFormat("channels %.0f%% + recovery", 100 * target), "channels", target < 0.4 ? 0 : 1,
        Recipe{{channels}});
  }
  for (double ratio : {0.5, 0.25}) {
    LowRankStep low_rank;
    low_rank.options.target_ratio = ratio;
    low_rank.recovery = Recovery(metric);
    add(absl::StrFormat("low-rank %.0fx + recovery", 1 / ratio), "low-rank", ratio > 0.3 ? 0 : 1, Recipe{{low_rank}});
  }
  // Combinations of parts that each stay within the accuracy limit.
  std::vector<Candidate> singles = space;
  const std::string quant_part = int8 ? "w8a8" : (int4 ? "w4 rtn per-channel" : "");
  if (!quant_part.empty()) {
    const Candidate* quant = nullptr;
    for (const Candidate& c : singles) {
      if (c.label == quant_part) quant = &c;
    }
    QuantizeStep rtn = std::get<QuantizeStep>(quant->recipe.steps.back());
    for (const Candidate& c : singles) {
      if (c.family != "2:4" && c.family != "channels" && c.family != "low-rank") continue;
      if (c.level != 0) continue;
      Recipe recipe = c.recipe;
      recipe.steps.push_back(rtn);
      add(absl::StrCat(c.label, " + ", quant_part), "combined", 0, std::move(recipe), {c.label, quant_part});
    }
  }
  return space;
}

double DeviceLatency(const GraphVariantReport& report, const TargetDevice& device) {
  if (!device.present && report.predicted) return report.predicted->seconds;
  return report.latency.p50;
}

double DeviceBaselineLatency(const GraphVariantReport& report, const TargetDevice& device) {
  if (!device.present && report.predicted_baseline) return report.predicted_baseline->seconds;
  return report.baseline_latency.p50;
}

double DeviceEnergy(const GraphVariantReport& report, const TargetDevice& device) {
  if (!device.present && report.predicted) return report.predicted->joules;
  return report.joules;
}

Trial TrialFromReport(int index, const std::string& label, const GraphVariantReport& report,
                      const TargetDevice& device) {
  Trial trial;
  trial.index = index;
  trial.label = label;
  trial.finished = true;
  trial.accuracy_drop = report.AccuracyDrop();
  trial.latency_seconds = DeviceLatency(report, device);
  trial.energy_joules = DeviceEnergy(report, device);
  trial.size_bytes = report.artifact_bytes;
  trial.faster_than_baseline = eval::FasterThanBaseline(trial.latency_seconds, DeviceBaselineLatency(report, device));
  return trial;
}

int MarkParetoSet(std::vector<Trial>* trials, const SearchLimits& limits) {
  std::vector<Trial*> done;
  for (Trial& trial : *trials) {
    trial.meets_limits = trial.pareto_optimal = false;
    trial.notes.clear();
    if (trial.finished && trial.error.empty() && !trial.skipped) done.push_back(&trial);
  }
  for (Trial* t : done) {
    std::vector<std::string>& notes = t->notes;
    if (limits.max_accuracy_drop > 0 && t->accuracy_drop > limits.max_accuracy_drop) {
      notes.push_back(absl::StrFormat("accuracy drop %.4g > limit %.4g", t->accuracy_drop, limits.max_accuracy_drop));
    }
    if (limits.max_size_bytes > 0 && t->size_bytes > limits.max_size_bytes) {
      notes.push_back(absl::StrFormat("size %d bytes > limit %d", t->size_bytes, limits.max_size_bytes));
    }
    if (limits.max_latency_seconds > 0 && t->latency_seconds > limits.max_latency_seconds) {
      notes.push_back(absl::StrFormat("latency %.4g s > limit %.4g s", t->latency_seconds, limits.max_latency_seconds));
    }
    if (limits.max_energy_joules > 0 && t->energy_joules > limits.max_energy_joules) {
      notes.push_back(absl::StrFormat("energy %.4g J > limit %.4g J", t->energy_joules, limits.max_energy_joules));
    }
    t->meets_limits = notes.empty();
    if (!t->faster_than_baseline) notes.push_back("NOT faster than the baseline on this device");
  }
  auto dominates = [](const Trial& a, const Trial& b) {
    const bool no_worse = a.accuracy_drop <= b.accuracy_drop && a.latency_seconds <= b.latency_seconds &&
                          a.energy_joules <= b.energy_joules && a.size_bytes <= b.size_bytes;
    const bool better = a.accuracy_drop < b.accuracy_drop || a.latency_seconds < b.latency_seconds ||
                        a.energy_joules < b.energy_joules || a.size_bytes < b.size_bytes;
    return no_worse && better;
  };
  for (Trial* t : done) {
    t->pareto_optimal = std::none_of(done.begin(), done.end(), [&](const Trial* o) { return dominates(*o, *t); });
  }
  int best = -1;
  double best_key = 0, best_tie = 0;
  for (size_t i = 0; i < trials->size(); ++i) {
    const Trial& t = (*trials)[i];
    if (!t.finished || !t.error.empty() || t.skipped) continue;
    // Within the limits: smallest, then fastest. Otherwise: least excess.
    const double key = t.meets_limits ? -1.0 / (1.0 + static_cast<double>(t.size_bytes))
                                      : Excess(t.accuracy_drop, limits.max_accuracy_drop) +
                                            Excess(static_cast<double>(t.size_bytes),
                                                   static_cast<double>(limits.max_size_bytes)) +
                                            Excess(t.latency_seconds, limits.max_latency_seconds) +
                                            Excess(t.energy_joules, limits.max_energy_joules);
    const double tie = t.latency_seconds;
    if (best < 0 || key < best_key || (key == best_key && tie < best_tie)) {
      best = static_cast<int>(i);
      best_key = key;
      best_tie = tie;
    }
  }
  return best;
}

absl::StatusOr<std::vector<Trial>> RunSearch(GraphSession& session, const TargetDevice& device,
                                             const SearchOptions& options, const std::vector<Trial>& resumed,
                                             const std::string& artifact_dir, const SearchCallbacks& callbacks) {
  if (options.max_trials < 1) {
    return absl::InvalidArgumentError(absl::StrCat("search: max_trials must be >= 1, got ", options.max_trials));
  }
  const std::vector<Candidate> space = SearchSpace(session, device);
  std::map<int, Trial> trials;
  int ran = 0;
  for (const Trial& trial : resumed) {
    if (trial.index < 0 || trial.index >= static_cast<int>(space.size())) continue;
    Trial kept = trial;
    if (!kept.finished) {  // Started in an earlier attempt that died: it crashed.
      kept.finished = true;
      kept.error = "the worker died while this trial ran (an earlier attempt); not retried";
    }
    trials[kept.index] = kept;
    ++ran;
  }
  // Round-robin across families: level 0 of every family, then level 1, ...
  std::vector<int> order;
  int max_level = 0;
  for (const Candidate& c : space) max_level = std::max(max_level, c.level);
  for (int level = 0; level <= max_level; ++level) {
    for (size_t i = 0; i < space.size(); ++i) {
      if (space[i].level == level && space[i].family != "combined") order.push_back(static_cast<int>(i));
    }
  }
  for (size_t i = 0; i < space.size(); ++i) {
    if (space[i].family == "combined") order.push_back(static_cast<int>(i));
  }
  auto within_limit = [&](const Trial& t) {
    return t.finished && t.error.empty() && !t.skipped &&
           (options.limits.max_accuracy_drop <= 0 || t.accuracy_drop <= options.limits.max_accuracy_drop);
  };
  const auto start = std::chrono::steady_clock::now();
  for (int index : order) {
    if (trials.count(index) > 0) continue;
    const Candidate& candidate = space[index];
    if (callbacks.cancelled && callbacks.cancelled()) return absl::CancelledError("search cancelled");
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (ran >= options.max_trials || (options.max_seconds > 0 && elapsed >= options.max_seconds)) break;

    // Measured sensitivity cuts the space.
    std::string cut;
    for (const auto& [other_index, other] : trials) {
      const Candidate& o = space[other_index];
      if (o.family == candidate.family && o.level < candidate.level && options.limits.max_accuracy_drop > 0 &&
          other.finished && other.error.empty() && !other.skipped &&
          other.accuracy_drop > 2 * options.limits.max_accuracy_drop) {
        cut = absl::StrFormat("skipped: the milder '%s' already lost %.4g (> 2x the limit)", o.label,
                              other.accuracy_drop);
      }
    }
    for (const std::string& part : candidate.parts) {
      bool ok = false;
      for (const auto& [other_index, other] : trials) ok |= space[other_index].label == part && within_limit(other);
      if (!ok && cut.empty()) cut = absl::StrCat("skipped: part '", part, "' did not finish within the accuracy limit");
    }
    Trial trial;
    trial.index = index;
    trial.label = candidate.label;
    if (!cut.empty()) {
      trial.skipped = true;
      trial.error = cut;
      trials[index] = trial;
      continue;
    }
    if (callbacks.started) SQ_RETURN_IF_ERROR(callbacks.started(trial));
    const std::string artifact = absl::StrCat(artifact_dir, "/trial-", index, ".onnx");
    absl::StatusOr<GraphVariantReport> report =
        session.Build(candidate.recipe, device, artifact, [&](const std::string&, int64_t, int64_t) {
          return !(callbacks.cancelled && callbacks.cancelled());
        });
    ++ran;
    if (report.ok()) {
      trial = TrialFromReport(index, candidate.label, *report, device);
    } else {
      if (report.status().code() == absl::StatusCode::kCancelled) return report.status();
      trial.finished = true;
      trial.error = std::string(report.status().message());
    }
    if (callbacks.finished) {
      SQ_RETURN_IF_ERROR(callbacks.finished(trial, report.ok() ? &*report : nullptr, artifact));
    }
    trials[index] = trial;
  }
  std::vector<Trial> all;
  for (auto& [index, trial] : trials) all.push_back(std::move(trial));
  MarkParetoSet(&all, options.limits);
  return all;
}

}  // namespace squeeze::core::compress
