#include "server/device_profiles.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/model/file_io.h"
#include "core/status_macros.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace squeeze::server {
namespace {

// Collects the text-format parser's complaints instead of logging them.
class ErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (first_.empty()) first_ = absl::StrCat("line ", line + 1, ":", column + 1, ": ", message);
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

}  // namespace

absl::StatusOr<DeviceProfiles> DeviceProfiles::LoadDirectory(const std::string& dir) {
  std::error_code error;
  std::vector<std::string> paths;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    if (entry.path().extension() == ".textproto") paths.push_back(entry.path().string());
  }
  if (error) {
    return absl::NotFoundError(absl::StrCat("device profiles: cannot read ", dir, ": ",
                                            error.message()));
  }
  std::sort(paths.begin(), paths.end());
  DeviceProfiles result;
  std::set<std::string> names;
  for (const std::string& path : paths) {
    SQ_ASSIGN_OR_RETURN(std::string text, core::model::ReadFile(path));
    v1::DeviceProfile profile;
    google::protobuf::TextFormat::Parser parser;
    ErrorCollector errors;
    parser.RecordErrorsTo(&errors);
    if (!parser.ParseFromString(text, &profile)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", errors.first()));
    }
    if (profile.name().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": profile has no name"));
    }
    if (!names.insert(profile.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": duplicate profile name '", profile.name(), "'"));
    }
    result.profiles_.push_back(std::move(profile));
  }
  std::sort(result.profiles_.begin(), result.profiles_.end(),
            [](const auto& a, const auto& b) { return a.name() < b.name(); });
  return result;
}

const v1::DeviceProfile* DeviceProfiles::Find(const std::string& name) const {
  for (const v1::DeviceProfile& profile : profiles_) {
    if (profile.name() == name) return &profile;
  }
  return nullptr;
}

}  // namespace squeeze::server
