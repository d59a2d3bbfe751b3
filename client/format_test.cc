#include "client/format.h"

#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace squeeze::client {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
namespace v1 = ::squeeze::v1;

template <typename Message>
Message Parse(const std::string& text) {
  Message message;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &message)) << text;
  return message;
}

TEST(FormatTableTest, AlignsColumnsAndTrimsTrailingSpace) {
  EXPECT_EQ(FormatTable({"ID", "STATE"}, {{"job-1", "RUNNING"}, {"j2", "QUEUED"}}),
            "ID     STATE\n"
            "job-1  RUNNING\n"
            "j2     QUEUED\n");
}

TEST(FormatTableTest, PadsShortRows) {
  EXPECT_EQ(FormatTable({"A", "B", "C"}, {{"x"}}), "A  B  C\nx\n");
}

TEST(FormatDurationTest, PicksUnits) {
  EXPECT_EQ(FormatDuration(0), "0s");
  EXPECT_EQ(FormatDuration(12.4), "12s");
  EXPECT_EQ(FormatDuration(59.6), "1m00s");
  EXPECT_EQ(FormatDuration(184), "3m04s");
  EXPECT_EQ(FormatDuration(7500), "2h05m");
  EXPECT_EQ(FormatDuration(-1), "?");
}

TEST(FormatLatencyTest, PicksUnits) {
  EXPECT_EQ(FormatLatency(850e-6), "850us");
  EXPECT_EQ(FormatLatency(1.25e-3), "1.25ms");
  EXPECT_EQ(FormatLatency(2.5), "2.50s");
  EXPECT_EQ(FormatLatency(0), "-");
}

TEST(FormatBytesTest, UsesBinaryUnits) {
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(12 << 20), "12.0 MiB");
  EXPECT_EQ(FormatBytes(int64_t{2} << 30), "2.00 GiB");
}

TEST(FormatTimestampTest, PrintsUtcOrDash) {
  google::protobuf::Timestamp timestamp;
  EXPECT_EQ(FormatTimestamp(timestamp), "-");
  timestamp.set_seconds(1714568645);
  EXPECT_EQ(FormatTimestamp(timestamp), "2024-05-01 13:04:05");
}

TEST(FormatLabelsTest, SortsByKey) {
  const auto spec = Parse<v1::JobSpec>(R"pb(labels { key: "team" value: "nlp" }
                                            labels { key: "exp" value: "7" })pb");
  EXPECT_EQ(FormatLabels(spec.labels()), "exp=7,team=nlp");
  EXPECT_EQ(FormatLabels(v1::JobSpec().labels()), "-");
}

TEST(FormatProgressTest, MatchesTheDocumentedLine) {
  const auto job = Parse<v1::Job>(R"pb(
    state: RUNNING
    progress { stage: "quantize" step: 3 total: 4 eta_seconds: 12 fraction: 0.52 })pb");
  EXPECT_EQ(FormatProgress(job), "[#####.....] 52% quantize 3/4 ETA 12s");
}

TEST(FormatProgressTest, FallsBackToStateAndHidesUnknowns) {
  const auto queued = Parse<v1::Job>(R"pb(state: QUEUED progress { eta_seconds: -1 })pb");
  EXPECT_EQ(FormatProgress(queued), "[..........] 0% queued");
  const auto done = Parse<v1::Job>(
      R"pb(state: SUCCEEDED progress { stage: "evaluate" eta_seconds: 0 fraction: 1 })pb");
  EXPECT_EQ(FormatProgress(done), "[##########] 100% evaluate");
}

TEST(FormatProgressTest, ClampsAndAvoidsRoundingDown) {
  const auto over = Parse<v1::Job>(R"pb(state: RUNNING progress { fraction: 1.7 eta_seconds: -1 })pb");
  EXPECT_EQ(FormatProgress(over, 4), "[####] 100% running");
  const auto exact = Parse<v1::Job>(R"pb(state: RUNNING progress { fraction: 0.29 eta_seconds: -1 })pb");
  EXPECT_EQ(FormatProgress(exact), "[##........] 29% running");
}

TEST(FormatWatchLineTest, PrefixesIdAndState) {
  const auto job = Parse<v1::Job>(
      R"pb(id: "job-7" state: RUNNING progress { stage: "quantize" fraction: 0.5 eta_seconds: -1 })pb");
  EXPECT_EQ(FormatWatchLine(job), "job-7 RUNNING [#####.....] 50% quantize");
}

TEST(FormatJobTableTest, HasTheListColumns) {
  const auto job = Parse<v1::Job>(R"pb(
    id: "job-1" state: RUNNING spec { priority: 3 labels { key: "k" value: "v" } }
    created_at { seconds: 1714568645 } progress { fraction: 0.25 })pb");
  EXPECT_EQ(FormatJobTable({job}),
            "ID     STATE    PRIORITY  CREATED              PROGRESS  LABELS\n"
            "job-1  RUNNING  3         2024-05-01 13:04:05  25%       k=v\n");
}

TEST(FormatJobStatusTest, ShowsErrorWithPassAndLayer) {
  const auto job = Parse<v1::Job>(R"pb(
    id: "job-2" state: FAILED attempts: 3
    error { code: 3 message: "bits must be 4 or 8" pass: "0:quantize" layer: "fc1" })pb");
  const std::string text = FormatJobStatus(job);
  EXPECT_THAT(text, HasSubstr("id:         job-2\n"));
  EXPECT_THAT(text, HasSubstr("state:      FAILED\n"));
  EXPECT_THAT(text, HasSubstr("attempts:   3\n"));
  EXPECT_THAT(text, HasSubstr(
                        "error:      INVALID_ARGUMENT: bits must be 4 or 8 (pass 0:quantize, layer fc1)\n"));
  EXPECT_THAT(text, Not(HasSubstr("DEVICE")));
}

TEST(FormatJobStatusTest, TabulatesVariantsAndSaysNotFaster) {
  const auto job = Parse<v1::Job>(R"pb(
    id: "job-3" state: SUCCEEDED
    variants {
      device: "local" technique: "int4-g128"
      size { ratio_vs_original: 3.9 }
      accuracy { delta: 0.0123 output_sqnr_db: 31.25 }
      latency { provenance: MEASURED p50_seconds: 0.0012 baseline_p50_seconds: 0.001
                faster_than_baseline: false }
      energy { provenance: ESTIMATED joules_per_inference: 0.5 }
    }
    variants {
      device: "a100-80g" technique: "int8"
      latency { provenance: PREDICTED p50_seconds: 0.0005 baseline_p50_seconds: 0.001
                faster_than_baseline: true }
    })pb");
  const std::string text = FormatJobStatus(job);
  EXPECT_THAT(text, HasSubstr("DEVICE    TECHNIQUE  SIZE RATIO  ACC DELTA"));
  EXPECT_THAT(text, HasSubstr("local     int4-g128  3.90x       +0.0123    31.2 dB      "
                              "1.20ms vs 1.00ms (measured)  0.5 J (estimated)  NOT faster\n"));
  EXPECT_THAT(text, HasSubstr("a100-80g  int8       -           -          -            "
                              "500us vs 1.00ms (predicted)  -                  faster\n"));
  EXPECT_THAT(text, HasSubstr("model:      -\n"));
}

TEST(FormatDeviceProfilesTest, ListsFormats) {
  const auto profile = Parse<v1::DeviceProfile>(R"pb(
    name: "a100-80g" kind: "gpu" display_name: "NVIDIA A100 80GB"
    memory_bytes: 85899345920 memory_bandwidth_bytes_per_second: 2.039e12 power_watts: 400
    formats { format: "fp16" } formats { format: "int8" })pb");
  EXPECT_EQ(FormatDeviceProfiles({profile}),
            "NAME      KIND  DISPLAY NAME      MEMORY     BANDWIDTH  POWER  FORMATS\n"
            "a100-80g  gpu   NVIDIA A100 80GB  80.00 GiB  2039 GB/s  400 W  fp16,int8\n");
}

}  // namespace
}  // namespace squeeze::client

namespace squeeze::client {
namespace {

TEST(FormatParetoTest, TableAndCsvShowLimitsParetoAndPrediction) {
  const auto job = Parse<v1::Job>(R"pb(
    id: "job-4" state: SUCCEEDED
    spec { recipe { passes { search { max_accuracy_drop: 0.05 } } } }
    variants {
      device: "local" technique: "w8a8" trial: 1
      artifact { sha256: "abc" }
      accuracy { metric: "perplexity (64 examples)" baseline: 216 value: 217.5 }
      latency { provenance: MEASURED p50_seconds: 0.002 predicted_p50_seconds: 0.001 prediction_error: -0.5 }
      energy { provenance: ESTIMATED joules_per_inference: 0.01 }
      size { bytes: 2048 }
      meets_limits: true pareto_optimal: true
      notes: "best within the limits" notes: "x, \"quoted\""
    })pb");
  const std::string table = FormatParetoTable(job);
  EXPECT_THAT(table, HasSubstr("IN LIMITS  PARETO"));
  EXPECT_THAT(table, HasSubstr("perplexity 216 -> 217.5  2.00ms (measured)  1.00ms (-50%)"));
  EXPECT_THAT(table, HasSubstr("2.0 KiB  yes        yes     best within the limits"));
  const std::string csv = FormatParetoCsv(job);
  EXPECT_THAT(csv, HasSubstr("local,1,w8a8,perplexity,216,217.5,0.002,measured,0.01,estimated,2048,true,true,"
                             "false,abc,\"best within the limits; x, \"\"quoted\"\"\"\n"));
}

}  // namespace
}  // namespace squeeze::client
