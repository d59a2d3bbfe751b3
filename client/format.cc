#include "client/format.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/client.h"

namespace squeeze::client {
namespace {

using squeeze::v1::Job;

// Progress fractions are floored so that 100% means done; the epsilon keeps
// 0.29 from printing as 28% through binary rounding.
constexpr double kFractionEpsilon = 1e-9;

double ClampedFraction(const Job& job) {
  return std::clamp(job.progress().fraction(), 0.0, 1.0);
}

int PercentDone(const Job& job) {
  return static_cast<int>(std::floor(ClampedFraction(job) * 100 + kFractionEpsilon));
}

std::string LowerProvenance(squeeze::v1::Provenance provenance) {
  if (provenance == squeeze::v1::PROVENANCE_UNSPECIFIED) return "unknown";
  return absl::AsciiStrToLower(squeeze::v1::Provenance_Name(provenance));
}

// Appends "key: value" lines with the values aligned after the longest key.
std::string FormatKeyValues(const std::vector<std::pair<std::string, std::string>>& lines) {
  size_t width = 0;
  for (const auto& [key, value] : lines) width = std::max(width, key.size());
  std::string out;
  for (const auto& [key, value] : lines) {
    absl::StrAppend(&out, key, ":", std::string(width - key.size() + 1, ' '), value, "\n");
  }
  return out;
}

std::string FormatVariantTable(const Job& job) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& variant : job.variants()) {
    const auto& size = variant.size();
    const auto& accuracy = variant.accuracy();
    const auto& latency = variant.latency();
    const auto& energy = variant.energy();
    // An axis the worker did not report shows as "-", never as a zero.
    rows.push_back({
        variant.device(),
        variant.technique(),
        size.ratio_vs_original() > 0 ? absl::StrFormat("%.2fx", size.ratio_vs_original()) : "-",
        variant.has_accuracy() ? absl::StrFormat("%+.4g", accuracy.delta()) : "-",
        variant.has_accuracy() ? absl::StrFormat("%.1f dB", accuracy.output_sqnr_db()) : "-",
        variant.has_latency()
            ? absl::StrCat(FormatLatency(latency.p50_seconds()), " vs ",
                           FormatLatency(latency.baseline_p50_seconds()), " (",
                           LowerProvenance(latency.provenance()), ")")
            : "-",
        variant.has_energy() ? absl::StrFormat("%.3g J (%s)", energy.joules_per_inference(),
                                               LowerProvenance(energy.provenance()))
                             : "-",
        !variant.has_latency()               ? "-"
        : latency.faster_than_baseline() ? "faster"
                                         : "NOT faster",
    });
  }
  return FormatTable({"DEVICE", "TECHNIQUE", "SIZE RATIO", "ACC DELTA", "OUTPUT SQNR",
                      "P50 VS BASELINE", "J/INFERENCE", "SPEED"},
                     rows);
}

}  // namespace

std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(header.size(), 0);
  for (size_t i = 0; i < header.size(); ++i) widths[i] = header[i].size();
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  auto append_line = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t i = 0; i < widths.size(); ++i) {
      const std::string cell = i < cells.size() ? cells[i] : "";
      absl::StrAppend(&line, cell);
      if (i + 1 < widths.size()) line.append(widths[i] - cell.size() + 2, ' ');
    }
    absl::StrAppend(&out, absl::StripTrailingAsciiWhitespace(line), "\n");
  };
  append_line(header);
  for (const auto& row : rows) append_line(row);
  return out;
}

std::string FormatDuration(double seconds) {
  if (seconds < 0 || std::isnan(seconds)) return "?";
  const int64_t total = static_cast<int64_t>(std::llround(seconds));
  if (total < 60) return absl::StrCat(total, "s");
  if (total < 3600) return absl::StrFormat("%dm%02ds", total / 60, total % 60);
  return absl::StrFormat("%dh%02dm", total / 3600, (total % 3600) / 60);
}

std::string FormatLatency(double seconds) {
  if (!(seconds > 0)) return "-";
  if (seconds < 1e-3) return absl::StrFormat("%.0fus", seconds * 1e6);
  if (seconds < 1.0) return absl::StrFormat("%.2fms", seconds * 1e3);
  return absl::StrFormat("%.2fs", seconds);
}

std::string FormatBytes(int64_t bytes) {
  constexpr int64_t kKiB = 1024, kMiB = kKiB * 1024, kGiB = kMiB * 1024;
  if (bytes < kKiB) return absl::StrCat(bytes, " B");
  if (bytes < kMiB) return absl::StrFormat("%.1f KiB", static_cast<double>(bytes) / kKiB);
  if (bytes < kGiB) return absl::StrFormat("%.1f MiB", static_cast<double>(bytes) / kMiB);
  return absl::StrFormat("%.2f GiB", static_cast<double>(bytes) / kGiB);
}

std::string FormatTimestamp(const google::protobuf::Timestamp& timestamp) {
  if (timestamp.seconds() == 0 && timestamp.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixSeconds(timestamp.seconds()),
                          absl::UTCTimeZone());
}

std::string FormatLabels(const google::protobuf::Map<std::string, std::string>& labels) {
  if (labels.empty()) return "-";
  std::vector<std::pair<std::string, std::string>> sorted(labels.begin(), labels.end());
  std::sort(sorted.begin(), sorted.end());
  return absl::StrJoin(sorted, ",", absl::PairFormatter("="));
}

std::string FormatProgress(const Job& job, int bar_width) {
  const auto& progress = job.progress();
  const int filled =
      static_cast<int>(std::floor(ClampedFraction(job) * bar_width + kFractionEpsilon));
  std::string out = absl::StrCat("[", std::string(filled, '#'),
                                 std::string(bar_width - filled, '.'), "] ",
                                 PercentDone(job), "%");
  absl::StrAppend(&out, " ",
                  progress.stage().empty()
                      ? absl::AsciiStrToLower(squeeze::v1::JobState_Name(job.state()))
                      : progress.stage());
  if (progress.total() > 0) absl::StrAppend(&out, " ", progress.step(), "/", progress.total());
  if (progress.eta_seconds() >= 0 && !IsFinalState(job.state())) {
    absl::StrAppend(&out, " ETA ", FormatDuration(progress.eta_seconds()));
  }
  return out;
}

std::string FormatWatchLine(const Job& job) {
  return absl::StrCat(job.id(), " ", squeeze::v1::JobState_Name(job.state()), " ",
                      FormatProgress(job));
}

std::string FormatJobTable(const std::vector<Job>& jobs) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& job : jobs) {
    rows.push_back({job.id(), squeeze::v1::JobState_Name(job.state()),
                    absl::StrCat(job.spec().priority()), FormatTimestamp(job.created_at()),
                    absl::StrCat(PercentDone(job), "%"),
                    FormatLabels(job.spec().labels())});
  }
  return FormatTable({"ID", "STATE", "PRIORITY", "CREATED", "PROGRESS", "LABELS"}, rows);
}

std::string FormatJobStatus(const Job& job) {
  std::vector<std::pair<std::string, std::string>> lines = {
      {"id", job.id()},
      {"state", absl::StrCat(squeeze::v1::JobState_Name(job.state()),
                             job.cancel_requested() && !IsFinalState(job.state())
                                 ? " (cancel requested)"
                                 : "")},
      {"progress", FormatProgress(job)},
      {"priority", absl::StrCat(job.spec().priority())},
      {"labels", FormatLabels(job.spec().labels())},
      {"model", job.spec().model().sha256().empty()
                    ? "-"
                    : absl::StrCat(job.spec().model().sha256(), " (",
                                   FormatBytes(job.spec().model().size_bytes()), ")")},
      {"created", FormatTimestamp(job.created_at())},
      {"started", FormatTimestamp(job.started_at())},
      {"finished", FormatTimestamp(job.finished_at())},
      {"queued for", FormatDuration(job.queue_seconds())},
      {"ran for", FormatDuration(job.run_seconds())},
      {"attempts", absl::StrCat(job.attempts())},
      {"worker", job.worker().empty() ? "-" : job.worker()},
  };
  if (job.has_error() && (job.error().code() != 0 || !job.error().message().empty())) {
    const auto& error = job.error();
    std::string text = absl::StrCat(
        absl::StatusCodeToString(static_cast<absl::StatusCode>(error.code())), ": ",
        error.message());
    std::vector<std::string> where;
    if (!error.pass().empty()) where.push_back(absl::StrCat("pass ", error.pass()));
    if (!error.layer().empty()) where.push_back(absl::StrCat("layer ", error.layer()));
    if (!where.empty()) absl::StrAppend(&text, " (", absl::StrJoin(where, ", "), ")");
    lines.push_back({"error", std::move(text)});
  }
  std::string out = FormatKeyValues(lines);
  if (job.variants_size() > 0) absl::StrAppend(&out, "\n", FormatVariantTable(job));
  return out;
}

namespace {

std::string YesNo(bool value) { return value ? "yes" : "no"; }

std::string CsvField(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

std::string MetricName(const std::string& metric) { return metric.substr(0, metric.find(' ')); }

}  // namespace

std::string FormatParetoTable(const Job& job) {
  bool search = false;
  for (const auto& pass : job.spec().recipe().passes()) search |= pass.has_search();
  std::vector<std::vector<std::string>> rows;
  for (const auto& v : job.variants()) {
    const auto& latency = v.latency();
    std::string predicted = "-";
    if (latency.predicted_p50_seconds() > 0) {
      predicted = FormatLatency(latency.predicted_p50_seconds());
      if (latency.provenance() == squeeze::v1::MEASURED) {
        absl::StrAppend(&predicted, absl::StrFormat(" (%+.0f%%)", 100 * latency.prediction_error()));
      }
    }
    rows.push_back({
        v.device(),
        v.technique(),
        absl::StrFormat("%s %.4g -> %.4g", MetricName(v.accuracy().metric()), v.accuracy().baseline(),
                        v.accuracy().value()),
        absl::StrCat(FormatLatency(latency.p50_seconds()), " (", LowerProvenance(latency.provenance()), ")"),
        predicted,
        absl::StrFormat("%.3g J (%s)", v.energy().joules_per_inference(), LowerProvenance(v.energy().provenance())),
        FormatBytes(v.size().bytes()),
        search ? YesNo(v.meets_limits()) : "-",
        search ? YesNo(v.pareto_optimal()) : "-",
        v.notes_size() > 0 ? v.notes(0) : "",
    });
  }
  return FormatTable({"DEVICE", "TECHNIQUE", "ACCURACY", "P50", "ROOFLINE P50", "ENERGY", "SIZE", "IN LIMITS",
                      "PARETO", "NOTE"},
                     rows);
}

std::string FormatParetoCsv(const Job& job) {
  std::string out =
      "device,trial,technique,metric,baseline,value,p50_seconds,latency_provenance,joules_per_inference,"
      "energy_provenance,size_bytes,meets_limits,pareto_optimal,faster_than_baseline,artifact_sha256,notes\n";
  for (const auto& v : job.variants()) {
    std::vector<std::string> fields = {
        CsvField(v.device()),
        absl::StrCat(v.trial()),
        CsvField(v.technique()),
        CsvField(MetricName(v.accuracy().metric())),
        absl::StrFormat("%.10g", v.accuracy().baseline()),
        absl::StrFormat("%.10g", v.accuracy().value()),
        absl::StrFormat("%.6g", v.latency().p50_seconds()),
        LowerProvenance(v.latency().provenance()),
        absl::StrFormat("%.6g", v.energy().joules_per_inference()),
        LowerProvenance(v.energy().provenance()),
        absl::StrCat(v.size().bytes()),
        v.meets_limits() ? "true" : "false",
        v.pareto_optimal() ? "true" : "false",
        v.latency().faster_than_baseline() ? "true" : "false",
        v.artifact().sha256(),
        CsvField(absl::StrJoin(v.notes(), "; ")),
    };
    absl::StrAppend(&out, absl::StrJoin(fields, ","), "\n");
  }
  return out;
}

std::string FormatDeviceProfiles(const std::vector<squeeze::v1::DeviceProfile>& profiles) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& profile : profiles) {
    std::vector<std::string> formats;
    for (const auto& format : profile.formats()) formats.push_back(format.format());
    rows.push_back({profile.name(), profile.kind(), profile.display_name(),
                    FormatBytes(profile.memory_bytes()),
                    absl::StrFormat("%.0f GB/s", profile.memory_bandwidth_bytes_per_second() / 1e9),
                    absl::StrFormat("%.0f W", profile.power_watts()),
                    formats.empty() ? "-" : absl::StrJoin(formats, ",")});
  }
  return FormatTable({"NAME", "KIND", "DISPLAY NAME", "MEMORY", "BANDWIDTH", "POWER", "FORMATS"},
                     rows);
}

}  // namespace squeeze::client
