#include "client/command_line.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace squeeze::client {

absl::StatusOr<CommandLine> CommandLine::Parse(const std::vector<std::string>& args,
                                               const std::vector<FlagSpec>& flags) {
  CommandLine parsed;
  bool flags_ended = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (flags_ended || arg.size() < 2 || arg.compare(0, 2, "--") != 0) {
      parsed.positionals_.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_ended = true;
      continue;
    }
    const size_t equals = arg.find('=');
    const std::string name = arg.substr(2, equals == std::string::npos ? std::string::npos
                                                                        : equals - 2);
    const auto spec = std::find_if(flags.begin(), flags.end(),
                                   [&](const FlagSpec& flag) { return flag.name == name; });
    if (spec == flags.end()) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    std::string value;
    if (!spec->takes_value) {
      if (equals != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " takes no value"));
      }
    } else if (equals != std::string::npos) {
      value = arg.substr(equals + 1);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
    }
    parsed.values_[name].push_back(std::move(value));
  }
  return parsed;
}

std::optional<std::string> CommandLine::Value(const std::string& name) const {
  const auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> CommandLine::Values(const std::string& name) const {
  const auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>() : it->second;
}

absl::StatusOr<int> CommandLine::IntValue(const std::string& name, int fallback, int min,
                                          int max) const {
  const std::optional<std::string> text = Value(name);
  if (!text.has_value()) return fallback;
  int value = 0;
  if (!absl::SimpleAtoi(*text, &value) || value < min || value > max) {
    return absl::InvalidArgumentError(absl::StrCat("flag --", name, " must be an integer in [",
                                                   min, ", ", max, "], got \"", *text, "\""));
  }
  return value;
}

absl::StatusOr<std::map<std::string, std::string>> CommandLine::KeyValues(
    const std::string& name) const {
  std::map<std::string, std::string> pairs;
  for (const std::string& text : Values(name)) {
    const size_t equals = text.find('=');
    if (equals == std::string::npos || equals == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", name, " wants key=value, got \"", text, "\""));
    }
    pairs[text.substr(0, equals)] = text.substr(equals + 1);
  }
  return pairs;
}

}  // namespace squeeze::client
