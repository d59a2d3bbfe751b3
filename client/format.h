// Human-readable rendering of Squeeze API messages for the `squeeze` CLI.
//
// Every function is pure: it turns messages into text and does no I/O, so the
// CLI decides where the text goes (stdout, a redrawn TTY line) and tests can
// compare strings. Machine output (--json) does not come through here; it is
// the proto's own JSON mapping.
#ifndef SQUEEZE_CLIENT_FORMAT_H_
#define SQUEEZE_CLIENT_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "google/protobuf/timestamp.pb.h"
#include "squeeze/v1/squeeze.pb.h"

namespace squeeze::client {

// Left-aligned columns separated by two spaces, a header row first, one line
// per row, each line ending in '\n'. Rows shorter than the header are padded
// with empty cells; trailing spaces are trimmed.
std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows);

// Whole seconds as "45s", "3m04s", "2h05m"; fractions round to the nearest
// second. Negative (unknown) durations give "?".
std::string FormatDuration(double seconds);

// Short latencies: "850us", "1.25ms", "2.50s". Zero or negative gives "-".
std::string FormatLatency(double seconds);

// Binary units: "512 B", "1.5 KiB", "12.0 MiB", "2.00 GiB".
std::string FormatBytes(int64_t bytes);

// UTC "2024-05-01 13:04:05"; an unset timestamp (zero) gives "-".
std::string FormatTimestamp(const google::protobuf::Timestamp& timestamp);

// Labels sorted by key as "k1=v1,k2=v2"; none gives "-".
std::string FormatLabels(const google::protobuf::Map<std::string, std::string>& labels);

// The live progress line of a job, e.g.
//   "[#####.....] 52% quantize 3/4 ETA 12s"
// The bar has `bar_width` cells filled by progress.fraction (clamped to
// [0, 1]). The stage falls back to the lower-case state name when empty;
// "step/total" appears only when total > 0 and "ETA" only when eta >= 0 and
// the job is not final.
std::string FormatProgress(const squeeze::v1::Job& job, int bar_width = 10);

// One line per watch event when stdout is not a terminal:
//   "job-7 RUNNING [#####.....] 52% quantize 3/4 ETA 12s"
std::string FormatWatchLine(const squeeze::v1::Job& job);

// The `squeeze list` table: ID, STATE, PRIORITY, CREATED, PROGRESS, LABELS.
std::string FormatJobTable(const std::vector<squeeze::v1::Job>& jobs);

// The `squeeze status` report: aligned "key: value" lines (id, state,
// progress, times, attempts, worker, error when set, labels), then, when the
// job has variants, a table with device, technique, size ratio, accuracy
// delta, output SQNR, p50 latency against the baseline, joules per inference
// with its provenance, and "faster" / "NOT faster".
std::string FormatJobStatus(const squeeze::v1::Job& job);

// The `squeeze devices` table: NAME, KIND, DISPLAY NAME, MEMORY, BANDWIDTH,
// POWER, FORMATS.
// The variants of a job as the Pareto table of `squeeze pareto`: device,
// technique, accuracy (baseline -> value), latency and energy on the device
// with their provenance, size, whether within the limits and Pareto-optimal,
// and notes. FormatParetoCsv gives the same columns as RFC 4180 CSV with raw
// numbers (seconds, joules, bytes).
std::string FormatParetoTable(const squeeze::v1::Job& job);
std::string FormatParetoCsv(const squeeze::v1::Job& job);

std::string FormatDeviceProfiles(const std::vector<squeeze::v1::DeviceProfile>& profiles);

}  // namespace squeeze::client

#endif  // SQUEEZE_CLIENT_FORMAT_H_
