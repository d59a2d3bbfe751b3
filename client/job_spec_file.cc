#include "client/job_spec_file.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/model/file_io.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"

namespace squeeze::client {
namespace {

// Keeps TextFormat's messages for the returned status instead of the log.
class CollectingErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    errors_.push_back(absl::StrCat(line + 1, ":", column + 1, ": ", message));
  }
  void AddWarning(int line, google::protobuf::io::ColumnNumber column,
                  const std::string& message) override {
    AddError(line, column, message);
  }
  std::string Joined() const { return absl::StrJoin(errors_, "; "); }

 private:
  std::vector<std::string> errors_;
};

bool EndsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

absl::StatusOr<squeeze::v1::JobSpec> LoadJobSpecFile(const std::string& path) {
  absl::StatusOr<std::string> contents = core::model::ReadFile(path);
  if (!contents.ok()) {
    return absl::Status(contents.status().code(),
                        absl::StrCat("job spec: ", contents.status().message()));
  }

  squeeze::v1::JobSpec spec;
  if (EndsWith(path, ".json")) {
    const auto status = google::protobuf::util::JsonStringToMessage(*contents, &spec);
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("job spec ", path, ": ", std::string(status.message())));
    }
  } else if (EndsWith(path, ".textproto") || EndsWith(path, ".txtpb") ||
             EndsWith(path, ".pbtxt")) {
    CollectingErrors errors;
    google::protobuf::TextFormat::Parser parser;
    parser.RecordErrorsTo(&errors);
    if (!parser.ParseFromString(*contents, &spec)) {
      return absl::InvalidArgumentError(absl::StrCat("job spec ", path, ": ", errors.Joined()));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "job spec ", path, ": unknown extension; use .json, .textproto, .txtpb or .pbtxt"));
  }

  if (spec.has_model() || spec.has_calibration_dataset() || spec.has_evaluation_dataset()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "job spec ", path,
        ": model, calibration_dataset and evaluation_dataset come from the command line, "
        "not the file"));
  }
  return spec;
}

}  // namespace squeeze::client
